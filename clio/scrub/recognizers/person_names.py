"""PERSON from given names, surnames, titles, naming phrases, lists and transcripts: the
rules that fill the small spaCy NER model's gaps (names from many countries, lower-case
names in chat). Each rule is small and tested by its spans in tests/test_recognizers.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import regex
from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.lang.en.stop_words import STOP_WORDS

from clio.scrub.recognizers.gazetteers import (
    ORGANISATION_WORDS,
    common_words,
    everyday_words,
    given_name_frequencies,
    given_names,
    is_english_word,
    is_place,
    lowercase_given_names,
    place_names,
    surnames_list,
)
from clio.scrub.recognizers.text import STREET_TYPE_RE, WORDS, fold_word, gap_after, is_capitalised

_TITLES = regex.compile(
    r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Madame|Mme|Mlle|Monsieur|MM|Messieurs|Herr|"
    r"Frau|Sr|Sra|Sres|Sras|Señor|Señora|Don|Doña)\.?[ \t]+$"
)
_NAME_CONTEXT = regex.compile(
    r"(?i:\b(?:my|his|her|their|your|the)\s+(?:full\s+|first\s+|last\s+|maiden\s+|sur)?"
    r"name\s+(?:is|was)|\bname's|\bnamed|\bcalled|\b(?:last|first|maiden|full)\s+name|"
    r"\bsurname|\bcalls?\s+me|\bknown\s+as|\bje\s+m'appelle|\bme\s+llamo|"
    r"\bmi\s+nombre\s+es)[\s:?,.\"']*$"
)


class PersonNameRecognizer(LocalRecognizer):
    """PERSON from given names, titles and naming phrases, where the small NER model is weak
    (names from many countries, lower-case names in chat).

    - a capitalised known given name, with up to three following capitalised words or
      initials ("Tomomi Nishiyama", "Ella H. Snider");
    - any capitalised words after a title ("Mrs. Fairweather");
    - one or two words after a naming phrase, lower case too ("my name is vitoria",
      "last name? Turgeon"), unless the word is an ordinary English word;
    - a capitalised surname (US Census list), with the capitalised unknown word before it
      as its given name ("Tristan Dennis");
    - unknown capitalised words listed with a found name ("Kónya, Becker and Vasquez");
    - English only: a common given name in lower case ("i wish im ryan") and two
      capitalised words in a row that are neither English words nor places ("Irenke
      Sörös"). In other languages these would take ordinary words ("pierre", "Conseil
      Constitutionnel"), so they are left out there.
    """

    def __init__(self, supported_language: str = "en"):
        super().__init__(
            supported_entities=["PERSON"],
            name="PersonNameRecognizer",
            supported_language=supported_language,
        )

    def load(self) -> None:
        given_names()
        lowercase_given_names()
        surnames_list()
        place_names()

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if "PERSON" not in entities:
            return []
        return [
            RecognizerResult("PERSON", start, end, score)
            for start, end, score in find_person_names(text, self.supported_language)
        ]


def find_person_names(text: str, language: str = "en") -> Iterator[tuple[int, int, float]]:
    """(start, end, score) of names found by `PersonNameRecognizer`'s rules in a text in
    `language` (the English-only rules run for "en" alone)."""
    words = list(WORDS.finditer(text))
    spans = _coordinated_names(text, words, _listed_names(text, words, language == "en"))
    for first, last, score in sorted(spans):
        if _names_organisation(words, first, last) or _HOUSE_NUMBER_BEFORE.search(
            text, 0, words[first].start()
        ):
            continue
        end = words[last].end()
        if words[last].group()[-2:] in ("'s", "’s"):
            end -= 2  # possessive
        elif end < len(text) and text[end] == "." and len(words[last].group()) == 1:
            end += 1
        yield words[first].start(), end, score


def _listed_names(
    text: str, words: list[regex.Match], english: bool
) -> list[tuple[int, int, float]]:
    """(first word, last word, score) of names from the lists, titles and naming phrases."""
    names, surnames, common = given_names(), surnames_list(), common_words()
    lower_names = lowercase_given_names()
    spans = []
    index = free = 0  # words before `free` belong to a name already
    while index < len(words):
        word = words[index].group()
        before = text[max(0, words[index].start() - 60) : words[index].start()]
        folded = fold_word(word)
        capitalised = is_capitalised(word)
        shouted = (
            english
            and word.isupper()
            and len(word) >= MIN_SHOUTED_NAME_CHARS
            and folded not in common
            and _shouting_before(text, words, index)
        )
        known = (capitalised or shouted) and folded in names
        titled = capitalised and _TITLES.search(before) is not None
        first = index
        if titled or known:
            first = _extend_back(text, words, index, common, free) if known else index
            last = _extend_name(text, words, index, common)
            # A title, a naming phrase ("my name is Chad"), or a given name followed by a
            # surname or that is no place name, is stronger evidence than the NER model's
            # guess of a place for the same words.
            strong = (
                titled
                or _NAME_CONTEXT.search(before) is not None
                or (last > index or not is_place(folded))
            )
            score = STRONG_NAME_SCORE if strong else 0.6
        elif (
            _NAME_CONTEXT.search(before)
            and folded not in STOP_WORDS
            and len(word) > 1
            and (capitalised or folded in names or folded not in common)
        ):
            last = _extend_name(text, words, index, common, lower_ok=not capitalised)
            score = STRONG_NAME_SCORE  # "last name? Arcuri": a name, whatever NER guessed
        elif (
            capitalised and folded in surnames and (english or _after_lowercase(text, words, index))
        ):
            first = _extend_back(text, words, index, common, free)
            last = _extend_name(text, words, index, common)
            # A lone surname that is also a place ("Torres") stays below the place list.
            score = 0.45 if first == last and is_place(folded) else 0.6
        elif english and word.islower() and folded in lower_names:
            last = _extend_name(text, words, index, common, lower_ok=True)
            score = 0.5
        elif english and word.islower() and _lowercase_name_with_initial(text, words, index):
            last = index + 2
            score = 0.5
        elif english and _name_shaped_pair(text, words, index):
            last = _extend_name(text, words, index, common)
            score = 0.6
        elif english and _addressed_or_speaker(text, words, index):
            last = index
            score = STRONG_NAME_SCORE
        else:
            index += 1
            continue
        spans.append((first, last, score))
        index = free = last + 1
    return spans


# A given name in capitals ("THANK YOU JINX") counts from this length on, unless it is a
# word, and only after a capitalised English word: "IBAN" in "mon IBAN" is no name.
MIN_SHOUTED_NAME_CHARS = 4


def _shouting_before(text: str, words: list[regex.Match], index: int) -> bool:
    if index == 0 or gap_after(text, words, index - 1) != " ":
        return False
    previous = words[index - 1].group()
    return previous.isupper() and len(previous) >= 3 and is_english_word(previous)


# Above the NER model's 0.85: a word listed with names is a name, whatever the model guessed.
COORDINATED_SCORE = 0.9
STRONG_NAME_SCORE = 0.9


def _unknown_capitalised(word: str) -> bool:
    """A capitalised word that is no English word and no listed place."""
    folded = fold_word(word)
    return (
        is_capitalised(word)
        and len(word) > 1
        and folded.isalpha()
        and not is_english_word(word)
        and not is_place(folded)
    )


def _name_shaped_pair(text: str, words: list[regex.Match], index: int) -> bool:
    """Two capitalised words in a row that are neither English words nor places
    ("Wisława Szczepańska", "Bekbolat Musliyevich"), maybe with a middle initial between
    them ("Mijail C Adomo"): in chat, mostly a person's name."""
    if index + 1 >= len(words) or gap_after(text, words, index) != " ":
        return False
    second = index + 1
    initial = words[second].group()
    if len(initial) == 1 and initial.isupper() and _initial_before_name(text, words, index):
        second += 1
    return _unknown_capitalised(words[index].group()) and _unknown_capitalised(
        words[second].group()
    )


# Name particles between a given name and a surname.
_PARTICLES_TEXT = "van von der den ten ter de del della di da dos du le la bin ibn"
_PARTICLES = frozenset(_PARTICLES_TEXT.split())


def _particle_before_name(text: str, words: list[regex.Match], index: int) -> bool:
    """Whether words[index] is a lower-case particle followed by a capitalised word."""
    if index + 1 >= len(words) or words[index].group() not in _PARTICLES:
        return False
    gaps = (gap_after(text, words, k) for k in (index - 1, index))
    return all(gap == " " for gap in gaps) and is_capitalised(words[index + 1].group())


def _lowercase_name_with_initial(text: str, words: list[regex.Match], index: int) -> bool:
    """A lower-case given name, a middle initial and a surname: "benjamin a seiler",
    "codey m ross". After "a" the surname must be no English word ("emily a call")."""
    if index + 2 >= len(words) or fold_word(words[index].group()) not in given_name_frequencies():
        return False
    initial, surname = words[index + 1].group(), words[index + 2].group()
    gaps = (gap_after(text, words, k) for k in (index, index + 1))
    if not all(gap in (" ", ". ") for gap in gaps) or len(initial) != 1 or initial == "i":
        return False
    if initial == "a":
        return (
            surname.islower()
            and fold_word(surname) in surnames_list()
            and not is_english_word(surname)
        )
    return surname.islower() and fold_word(surname) in surnames_list()


# A vocative or a speaker label at the start of a line: "Warrane, can I please ...".
_ADDRESSING_AFTER = regex.compile(
    r",[ \t]+(?:can|could|would|will|please|do|did|are|have|i|you|we|thank|thanks)\b"
)
_SPEAKER_LABEL = regex.compile(r"^[ \t>]*(\p{Lu}[^\W\d_]+):[ \t]", regex.MULTILINE)


def _line_start(text: str, position: int) -> bool:
    line = text[text.rfind("\n", 0, position) + 1 : position]
    return line.strip(" \t>") == ""


def _addressed_or_speaker(text: str, words: list[regex.Match], index: int) -> bool:
    """An unknown capitalised word at the start of a line, addressed ("Vide, can I
    ...") or as a speaker's label in a transcript whose other labels include a known
    given name ("Ubul: ...\nNicole: ...")."""
    word = words[index]
    if not _unknown_capitalised(word.group()) or not _line_start(text, word.start()):
        return False
    if _ADDRESSING_AFTER.match(text, word.end()):
        return True
    if not text.startswith(":", word.end()):
        return False
    labels = {fold_word(m.group(1)) for m in _SPEAKER_LABEL.finditer(text)}
    return any(label in given_names() for label in labels)


def _names_organisation(words: list[regex.Match], first: int, last: int) -> bool:
    """Whether the name is part of a company's ("Loveland Technologies") or a street's
    ("Marina Fort Street") name."""
    following = [fold_word(w.group()).rstrip(".") for w in words[first + 1 : last + 2]]
    return any(w in ORGANISATION_WORDS for w in following) or (
        last + 1 < len(words) and STREET_TYPE_RE.fullmatch(following[-1]) is not None
    )


# A number right after a word, or a house number (3+ digits) right before a name: a street.
_HOUSE_NUMBER_AFTER = regex.compile(r"[ \t]+\d")
_HOUSE_NUMBER_BEFORE = regex.compile(r"\b\d{3,}[ \t]+$")
_CONJUNCTIONS = ("and", "et", "y", "e", "und")  # English, French, Spanish, Italian, German


# Articles before a capitalised word make it a thing or an office in French and Spanish
# ("la Sala", "el Tribunal", "le Conseil"), not a person.
_ARTICLES_TEXT = "el la los las del al le les du des un una une lo"
_ARTICLES = frozenset(_ARTICLES_TEXT.split())


def _after_lowercase(text: str, words: list[regex.Match], index: int) -> bool:
    """In a language without an English word list, a surname counts only inside a
    sentence, after a lower-case word that is no article (sentence-initial "Sala",
    "Los", "Esta" are ordinary words)."""
    if index == 0:
        return False
    previous = words[index - 1].group()
    gap = gap_after(text, words, index - 1)
    return previous.islower() and previous not in _ARTICLES and gap.strip() in ("", ",")


def _list_neighbour(text: str, words: list[regex.Match], index: int, step: int) -> int | None:
    """The word listed next to `index` ("A, B and C", "A & B") in direction `step`."""
    k = index + step
    if not 0 <= k < len(words):
        return None
    left = k if step < 0 else index  # the gap is after the left one of the two
    gap = gap_after(text, words, left)
    if gap in (", ", " & "):
        return k
    if gap in (" ", ", ") and words[k].group() in _CONJUNCTIONS:
        k += step
        if 0 <= k < len(words):
            left = k if step < 0 else k - step
            if gap_after(text, words, left) == " ":
                return k
    return None


def _coordinated_names(
    text: str, words: list[regex.Match], spans: list[tuple[int, int, float]]
) -> list[tuple[int, int, float]]:
    """Add the unknown capitalised words listed with a found name ("Kónya, Becker and
    Vasquez"): members of one list are of one kind, so a listed word that is also a place
    ("Torres") is taken as a name at the list's score."""
    everyday, common, surnames = everyday_words(), common_words(), surnames_list()
    any_given_name = given_name_frequencies()
    by_first = {first: (first, last, score) for first, last, score in spans}
    taken = {k: first for first, last, _ in spans for k in range(first, last + 1)}

    def candidate(k: int | None) -> bool:
        if k is None:
            return False
        if k in taken:  # a weaker single-word name is upgraded
            first, last, score = by_first[taken[k]]
            return first == last == k and score < COORDINATED_SCORE
        word = words[k].group()
        folded = fold_word(word)
        return (
            is_capitalised(word)
            and len(word) > 1
            and folded.isalpha()
            and not _HOUSE_NUMBER_AFTER.match(text, words[k].end())  # "Eyrarodda 66": a street
            and folded not in everyday
            and (folded not in common or folded in any_given_name or folded in surnames)
        )

    queue = list(spans)
    while queue:
        first, last, _ = queue.pop()
        for k in (_list_neighbour(text, words, last, 1), _list_neighbour(text, words, first, -1)):
            if candidate(k):
                assert k is not None
                new_last = _extend_name(text, words, k, common) if k > last else k
                if k in taken:
                    new_last = k
                added = (k, new_last, COORDINATED_SCORE)
                by_first[k] = added
                taken.update(dict.fromkeys(range(k, new_last + 1), k))
                queue.append(added)
    return list(by_first.values())


def _extend_back(
    text: str, words: list[regex.Match], index: int, common: frozenset[str], free: int
) -> int:
    """One capitalised unknown word right before a name (not before `free`) is its
    given name."""
    if index <= free or gap_after(text, words, index - 1) != " ":
        return index
    word = words[index - 1].group()
    folded = fold_word(word)
    if (
        is_capitalised(word)
        and len(word) > 1
        and folded.isalpha()
        and (
            folded not in common
            or (folded in given_name_frequencies() and folded not in everyday_words())
        )
    ):
        return index - 1
    return index


# Capitalised words that end a name: what follows a name on an address label.
_NOT_NAME_PARTS = frozenset(
    ["apt", "apartment", "suite", "unit", "flat", "box", "street", "st", "avenue", "ave"]
    + ["road", "rd", "lane", "drive", "boulevard", "address", "phone", "email", "mobile"]
)


def _initial_before_name(text: str, words: list[regex.Match], last: int) -> bool:
    """Whether words[last + 1] is a middle initial: a capitalised word follows it."""
    if last + 2 >= len(words):
        return False
    gap = gap_after(text, words, last + 1)
    return gap in (" ", ". ") and is_capitalised(words[last + 2].group())


def _extend_name(
    text: str, words: list[regex.Match], index: int, common: frozenset[str], lower_ok=False
) -> int:
    last = index
    surnames = surnames_list()
    while last + 1 < len(words) and last - index < 3:
        if words[last].group()[-2:] in ("'s", "’s"):
            break
        gap = gap_after(text, words, last)
        following = words[last + 1].group()
        initial = len(words[last].group()) == 1
        if gap not in (" ", ". " if initial else " "):
            break
        if following.casefold().rstrip(".") in _NOT_NAME_PARTS:
            break
        if len(following) == 1 and following.isupper() and _initial_before_name(text, words, last):
            last += 1
            continue
        if lower_ok:  # a lower-case name goes on over unknown words, surnames and initials
            # a listed surname that is also a noun ("ross") still belongs to the name
            word_not_name = is_english_word(following) and fold_word(following) not in surnames
            if len(following) == 2 or (len(following) > 1 and word_not_name):
                break
        elif _particle_before_name(text, words, last + 1):
            last += 2  # "Anna van Dijk", "Ludwig van Beethoven"
            continue
        elif not is_capitalised(following) or following.casefold() in STOP_WORDS:
            break
        last += 1
    if lower_ok and last > index and len(words[last].group()) == 1:
        last -= 1  # "emily a call": an initial needs a name after it
    return last
