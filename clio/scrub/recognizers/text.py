"""Text helpers every recognizer family shares: the word tokenizer, case and list-look-up
forms of a word, the text between two words, the street-type words, and the pattern
recognizer factory with clio's regex flags.

They sit below the gazetteers and every family module and import none of them, so the
families can import each other's helpers without a cycle.
"""

from __future__ import annotations

import regex
from presidio_analyzer import Pattern, PatternRecognizer

# Case-sensitive by default (Presidio's default adds IGNORECASE); patterns opt into
# case-insensitivity locally with `(?i:...)` where it is wanted.
FLAGS = regex.MULTILINE


def pattern_recognizer(
    entity: str, name: str, patterns: list[Pattern], language: str
) -> PatternRecognizer:
    """A Presidio pattern recognizer with clio's flags (case-sensitive unless a pattern
    says otherwise), so every family's patterns are compiled alike."""
    return PatternRecognizer(
        supported_entity=entity,
        name=name,
        supported_language=language,
        patterns=patterns,
        global_regex_flags=FLAGS,
    )


# A word: letters, with inner apostrophes or hyphens ("O'Neil", "Jean-Luc"); no digits.
WORDS = regex.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def is_capitalised(word: str) -> bool:
    """Capitalised and not all capitals ("Anna", "A"; not "NASA"): how names are written."""
    return word[0].isupper() and (len(word) == 1 or not word.isupper())


def fold_word(word: str) -> str:
    """The word for list look-ups: case-folded, without a possessive 's."""
    folded = word.casefold()
    return folded[:-2] if folded[-2:] in ("'s", "’s") else folded


def gap_after(text: str, words: list[regex.Match], k: int) -> str:
    """The text between words[k] and words[k + 1]."""
    return text[words[k].end() : words[k + 1].start()]


STREET_TYPES = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|"
    "terrace|close|crescent|parkway|pkwy|highway|hwy|square|sq|circle|cir|trail|row|gardens|"
    "mall|bypass|forges?|landing|manor|mews|park|ridge|view|walk|loop|pike|plaza|alley|"
    "heights|hills?|estates?|grove|green|vista|crossing|junction|expressway|freeway|str"
)
STREET_TYPE_RE = regex.compile(rf"(?i:{STREET_TYPES})")
