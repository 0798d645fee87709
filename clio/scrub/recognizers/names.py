"""Name helpers shared beyond the person-name recognizer: the scrub engine uses them to
check and correct the NER model's PERSON spans and to find a name's parts elsewhere in a
conversation.
"""

from __future__ import annotations

from clio.scrub.recognizers.gazetteers import any_name, common_words, is_english_word
from clio.scrub.recognizers.text import STREET_TYPE_RE, WORDS, fold_word, is_capitalised


def is_wordlike_name(value: str) -> bool:
    """True when every word of a supposed name is an ordinary English word that is in no
    name list at all ("Guilty Pleasures", "Salesperson"): the NER model's guess is then
    more likely a capitalised phrase than a person."""
    words = WORDS.findall(value)
    listed = any_name()
    return bool(words) and all(is_english_word(w) and fold_word(w) not in listed for w in words)


_UNIT_WORDS = frozenset(["apt", "apartment", "suite", "unit", "flat", "box"])


def ner_person_label(value: str) -> tuple[str, int] | None:
    """Corrections to an English NER person ending in an address word: ("PERSON", length)
    for a name followed by a flat or suite ("Barbara Yudina Apt" -> "Barbara Yudina"),
    ("STREET_ADDRESS", length) for a street named after a person ("Marina Fort Street");
    None when nothing needs correcting."""
    words = list(WORDS.finditer(value))
    if len(words) < 2:
        return None
    last = words[-1].group().casefold()
    if last in _UNIT_WORDS:
        return "PERSON", words[-2].end()
    if STREET_TYPE_RE.fullmatch(last):
        return "STREET_ADDRESS", len(value)
    return None


def name_parts(value: str) -> list[str]:
    """The words of a multi-word name that identify on their own ("Adamska" of "Wacława
    Adamska"): capitalised, at least four letters, no ordinary English word."""
    words = WORDS.findall(value)
    if len(words) < 2:
        return []
    common = common_words()
    return [
        w
        for w in (word[:-2] if word[-2:] in ("'s", "’s") else word for word in words)
        if len(w) >= MIN_NAME_PART_CHARS and is_capitalised(w) and w.casefold() not in common
    ]


MIN_NAME_PART_CHARS = 4
