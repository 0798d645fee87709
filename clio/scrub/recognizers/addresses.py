"""Postcodes and street addresses in the common Western shapes: English number-name-type,
European name-number, street types as prefixes or suffixes, units, corners, PO boxes and
military mail. Weak shapes (a bare zip code) count only after a context word.
"""

from __future__ import annotations

from presidio_analyzer import Pattern, PatternRecognizer

from clio.scrub.recognizers.gazetteers import is_english_word
from clio.scrub.recognizers.text import FLAGS, STREET_TYPES, WORDS, pattern_recognizer

_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|"
    "NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_POSTCODE_CONTEXT = (
    r"\b(?i:post\s?code|postal\s+code|zip\s?code|zip|code\s+postal|c[oó]digo\s+postal|c\.p\.)"
    r"\s*(?:(?i:is|was|of|est|es)\s+)?[:#=-]?\s*"
)


def postcode_recognizer(language: str = "en") -> PatternRecognizer:
    return pattern_recognizer(
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
        rf"(?i:{STREET_TYPES})\b\.?"
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
    return pattern_recognizer(
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
            global_regex_flags=FLAGS,
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        return all(is_english_word(word) for word in WORDS.findall(pattern_text))
