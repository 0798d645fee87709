"""The text clio itself writes about clusters, shared by the namer and the privacy gate.

`clio.describe` and `clio.audit` build their LLM prompts from the instructions here and
fall back to the keyword name and description; the gate (`clio.gate.text`) needs the
same text for the opposite reason: a released name repeats words of these
instructions and templates, and those words come from clio, not from a user, so they
must never count as a user's rare word. Keeping both here means a new template's words
reach the gate without the gate importing the namer. The two namers (`clio.describe`,
`clio.hierarchy_llm`) also share here how they cut a text for a prompt, clean a model's
name and compare names.
"""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from clio.keywords import CONVERSATIONAL_WORDS, letter_runs, stem, words

MAX_NAME_CHARS = 60
MAX_DESCRIPTION_CHARS = 300

NAME_INSTRUCTION = (
    "Name each group of user requests with a short task title built from its distinctive "
    "words, and describe the group in two sentences. Use general terms only: no names, "
    "places, numbers or other private details."
)
PARENT_INSTRUCTION = (
    "Give each list of related groups one broader name, a short task title built from the "
    "distinctive words, and describe it in two sentences. Use general terms only: no names, "
    "places, numbers or other private details."
)


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with "..." where it is longer."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clean_name(name: str) -> str:
    """A model's name on one line, without the quotes and punctuation it wraps names in."""
    return " ".join(name.split()).strip(" \"'`.:;-")


def name_stems(text: str) -> set[str]:
    """Lower-case words with a plural "s" dropped: enough to compare names with names and
    with the texts they were made from."""
    return {w.lower().removesuffix("s") for w in letter_runs(text)}


def extractive_description(phrases: Sequence[str], keywords: Sequence[str]) -> str:
    """The description of an extractively named cluster: its best phrases and keywords,
    all words its members wrote (no numbers: the page shows the released counts)."""
    if not phrases:
        return keyword_description(keywords)
    quoted = " and ".join(f'"{p}"' for p in phrases[:2])
    text = f"Requests such as {quoted}."
    extra = [k for k in keywords if not any(k in words(p) for p in phrases[:2])][:4]
    if extra:
        text += " Other common words: " + ", ".join(extra) + "."
    return shorten(text, MAX_DESCRIPTION_CHARS)


def keyword_name(keywords: Sequence[str], fallback: str) -> str:
    name = ", ".join(keywords[:3])
    return name[:MAX_NAME_CHARS].rstrip(", ") if name else fallback


def keyword_description(keywords: Sequence[str]) -> str:
    if not keywords:
        return "No description: the group has no keywords shared by enough distinct users."
    text = "Most distinctive words in this group: " + ", ".join(keywords) + "."
    return text if len(text) <= MAX_DESCRIPTION_CHARS else text[: MAX_DESCRIPTION_CHARS - 3] + "..."


# Words of the naming prompts' own instructions and templates, and the verbs any summary
# of requests uses: they come from clio, not from a user, so they are never "rare".
DESCRIBING_WORDS = frozenset(
    words(
        " ".join(
            [
                NAME_INSTRUCTION,
                PARENT_INSTRUCTION,
                keyword_description([]),
                keyword_description(["x"]),
                extractive_description(["x"], ["y"]),
                "users user ask asks asking asked help helps want wants wanting know learn "
                "request requests requesting question questions advice information tips",
            ]
        )
    )
)


# The fixed list of function and generic words: English stop words, the words clio
# writes itself and conversational words. Only the other, content, words of a released
# text need support, and only they make a phrase a name.
GENERIC_WORDS = frozenset(ENGLISH_STOP_WORDS) | DESCRIBING_WORDS | CONVERSATIONAL_WORDS


def content_words(text: str) -> list[str]:
    """The words of `text` (as `clio.keywords.words` counts them) that are not in
    `GENERIC_WORDS`, in order: the words a released text needs `min_users` users for."""
    return [w for w in words(text) if w not in GENERIC_WORDS]


def content_stems(text: str) -> set[str]:
    """The stems of `content_words(text)`: what a released text's support is counted on."""
    return {stem(w) for w in content_words(text)}
