"""LOCATION from the place list (countries, US states, cities over 15,000 people) and
from travel or origin phrases, which name towns too small for any list.
"""

from __future__ import annotations

from collections.abc import Iterator

from presidio_analyzer import LocalRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from clio.scrub.recognizers.gazetteers import is_english_word, is_place, place_names
from clio.scrub.recognizers.text import FLAGS, WORDS, fold_word


class PlaceNameRecognizer(LocalRecognizer):
    """LOCATION for capitalised (or all-capital) countries, US states and cities over
    15,000 people, longest name first."""

    def __init__(self, supported_language: str = "en"):
        super().__init__(
            supported_entities=["LOCATION"],
            name="PlaceNameRecognizer",
            supported_language=supported_language,
        )

    def load(self) -> None:
        place_names()

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if "LOCATION" not in entities:
            return []
        return [RecognizerResult("LOCATION", start, end, 0.5) for start, end in find_places(text)]


def find_places(text: str) -> Iterator[tuple[int, int]]:
    places = place_names()
    words = list(WORDS.finditer(text))
    folded = [w.group().casefold() for w in words]
    index = 0
    while index < len(words):
        word = words[index].group()
        candidates = places.get(folded[index]) if word[0].isupper() else None
        best = 0
        for name in candidates or ():
            n = len(name)
            if (
                n > best
                and tuple(folded[index : index + n]) == name
                and all(
                    words[k].group()[0].isupper() or len(words[k].group()) <= 3
                    for k in range(index, index + n)
                )
            ):
                best = n
        if best:
            yield words[index].start(), words[index + best - 1].end()
            index += best
        else:
            index += 1


_PLACE_CONTEXT = (
    r"\b(?i:flew\s+to|fly(?:ing)?\s+to|moved\s+(?:here\s+|back\s+)?(?:from|to)|"
    r"originally\s+from|grew\s+up\s+in|i\s+am\s+in|i'm\s+in|returned\s+to|"
    r"arrived\s+(?:at|in)|home\s+(?:city|town)|born\s+in|lives?\s+in|living\s+in|"
    r"based\s+in|travell?ed\s+to|trip\s+to|city\s+of|town\s+of|village\s+of|"
    r"university\s+of|coming\s+to|year\s+in|where:)\s+"
)
_NOT_PLACE = (
    r"(?!(?:The|A|An|My|Our|Your|His|Her|Their|This|That|It|Monday|Tuesday|Wednesday|"
    r"Thursday|Friday|Saturday|Sunday|January|February|March|April|May|June|July|August|"
    r"September|October|November|December)\b)"
)


# Above the NER model's 0.85: "flew to X" makes X a place whatever the model guessed.
PLACE_CONTEXT_SCORE = 0.86


class PlaceContextRecognizer(PatternRecognizer):
    """Capitalised (or all-capital) words after a travel or origin phrase ("flew to
    LEPPEN", "originally from Tjæreborg"): towns too small for the place list. One
    ordinary English word that is no listed place ("I am in Love") is not taken."""

    def __init__(self, supported_language: str = "en"):
        word = r"\p{Lu}[\p{L}'’-]*"
        joiner = r"(?i:de|del|da|do|dos|nad|la|le|sur|am|an|upon|of)"
        super().__init__(
            supported_entity="LOCATION",
            name="PlaceContextRecognizer",
            supported_language=supported_language,
            patterns=[
                Pattern(
                    "place_after_context",
                    rf"(?<={_PLACE_CONTEXT}){_NOT_PLACE}{word}"
                    rf"(?:[ \t]+(?:{joiner}[ \t]+)?{word}){{0,3}}\b",
                    PLACE_CONTEXT_SCORE,
                )
            ],
            global_regex_flags=FLAGS,
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        words = WORDS.findall(pattern_text)
        return len(words) == 1 and is_english_word(words[0]) and not is_place(fold_word(words[0]))
