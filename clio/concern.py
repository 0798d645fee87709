"""A harm-cue lexicon for the `concerning` facet (1-5), over the user's turns.

Why a lexicon: the packaged 270M model cannot rate safety. Measured on 30 sample
conversations rated by hand, its probability of each score 1-5 hardly moves between a
recipe question and a poisoning request (it answers 3 for 37 of 40), and a yes/no
"harmful?" field did no better (Spearman -0.16 against the hand ratings). The lexicon
gives a transparent, cheap signal that a capable model's rubric answer is cross-checked
with (`FacetConfig.lexicon`). No library covers harm intent (profanity filters only
cover swearing), hence the hand-written patterns. English only: other languages get 1.

Levels follow the rubric of the default `concerning` question:
1 ordinary; 2 sensitive topic (insults, sex, alcohol, pranks, protected groups);
3 dishonest or risky (lying, cheating, drugs, minor law-breaking, hate);
4 harm to others or their privacy (theft, weapons, hacking, stalking, a person's address);
5 clear intent of violence, sexual abuse or self-harm.
"""

from __future__ import annotations

import re

_PERSON = (
    r"(?:some ?one|some ?body|him|her|them|people|a (?:person|man|woman|kid|child)"
    r"|my \w+|\w+ who)"
)

_PATTERNS: dict[int, tuple[str, ...]] = {
    5: (
        rf"\b(?:kill|murder|stab|shoot|strangle|choke|poison|torture|behead)\w* {_PERSON}",
        r"\bkill (?:all|every)\b",
        r"\b(?:make|build|plant) (?:a |an )?(?:bomb|explosive|pipe bomb)",
        r"\b(?:mass shooting|terroris[mt]|genocide|ethnic cleansing)\b",
        r"\b(?:rape|raping|molest\w*|child porn\w*|pedophil\w*|traffick\w*)\b",
        r"\bsex\w* (?:\w+ )?(?:with |to )?(?:a |an |my )?"
        r"(?:child|minor|kid|pet|animal|dog|cat)s?\b",
        r"\b(?:kill (?:myself|me)|suicide|end my life|self[- ]harm|cut myself)\b",
        r"\bwho would you kill\b",
    ),
    4: (
        r"\b(?:steal\w*|stole|rob|robb\w*|burglar\w*|shoplift\w*|loot\w*|mug(?:ging)? )",
        r"\b(?:kidnap\w*|blackmail\w*|extort\w*|ransom|launder\w*|counterfeit\w*|forg(?:e|ery|ed))\b",
        r"\b(?:scam|defraud|fraud)\w*\b",
        r"\bbreak(?:ing)? into\b|\bhack\w* (?:into|someone|my \w+'s)|\bhack\w* (?:a |their |the )",
        r"\b(?:spy on|stalk\w*|keep tabs on|track (?:my|someone|him|her))",
        r"\bwithout (?:them|him|her|their|anyone|my \w+) (?:knowing|noticing|consent|finding)",
        r"\b(?:home|residential|house) address\b|\bsocial security number"
        r"|\bcredit card (?:number|info)",
        r"\b(?:gun|rifle|firearm|weapon|knife|ammo)s?\b",
        r"\b(?:hurt|harm|beat up|attack|assault|punch|poison)\w* ",
        r"\b(?:drug (?:him|her|someone|my)|roofie|date rape)",
        r"\bget away with\b|\bhide (?:a|the) body\b|\bfake (?:id|passport|documents?)\b",
        r"\btake advantage of\b|\bthrow (?:a|the) (?:\w+ )?(?:game|match)\b",
    ),
    3: (
        r"\b(?:lie|lies|lying|cheat\w*|deceiv\w*|trick (?:them|him|her|someone|my))\b",
        r"\b(?:cocaine|heroin|meth|marijuana|weed|lsd|ecstasy|mdma|opioids?|drugs)\b",
        r"\b(?:illegal\w*|dark ?web|pick (?:a|the) lock|lock ?pick\w*|pirat\w*|torrent\w*)\b",
        r"\b(?:racist|racism|nazi\w*|white power|supremac\w*|14 words|slur\w*)\b",
        r"\b(?:revenge|get back at|tarnish|humiliate|bully\w*|harass\w*)\b",
        r"\b(?:booze|sneak \w+ (?:into|past)|get past security|evade|felony|prison)\b",
        r"\bkeep (?:\w+ )?(?:mexicans|immigrants|blacks|jews|muslims|gays) (?:out|away|from)\b",
    ),
    2: (
        r"\b(?:insult\w*|prank\w*|idiot\w*|stupid|dumb|loser|ugly|fat)\b",
        r"\b(?:fuck\w*|fyck|shit\w*|bitch\w*|damn|ass(?:hole)?|cunt|dick)\b",
        r"\b(?:sex\w*|porn\w*|virgin\w*|stripper\w*|dirty joke|orgasm\w*|nude\w*|pee(?:d)? on)\b",
        r"\b(?:alcohol|drunk|beer|vodka|whiskey|smoke|smoking|vape|gambl\w*)\b",
        r"\b(?:black people|blacks|mexicans|immigrants|jews|muslims|gays?|lesbians?|trans\w*|"
        r"mormon\w*|christians|atheists|blm|black lives matter)\b",
        r"\b(?:cult|gang\w*|hate|angry|worst person)\b",
    ),
}

_COMPILED = [
    (level, re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE))
    for level, patterns in sorted(_PATTERNS.items(), reverse=True)
]

LOWEST, HIGHEST = 1, 5


def concern_level(text: str) -> int:
    """1-5: the highest rubric level whose cues occur in `text` (1 when none does)."""
    for level, pattern in _COMPILED:
        if pattern.search(text):
            return level
    return LOWEST
