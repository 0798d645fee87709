"""Identifiers of a person: e-mail addresses (validated offline), social-media handles,
dates of birth, passport, national-ID and card numbers, and phone numbers in the shapes
Presidio's own recognizer rejects. Weak shapes count only when a context word is part of
the match's lookbehind, so the decision does not depend on the score threshold.
"""

from __future__ import annotations

import tldextract
from presidio_analyzer import Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import EmailRecognizer

from clio.scrub.recognizers.text import pattern_recognizer

# Snapshot-only suffix list, no cache directory: never touches the network or disk.
_OFFLINE_TLD_EXTRACT = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, validating domains against the bundled suffix list."""

    def __init__(self, supported_language: str = "en"):
        super().__init__(supported_language=supported_language, name="OfflineEmailRecognizer")

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD_EXTRACT(pattern_text).fqdn != ""


def username_recognizer(language: str = "en") -> PatternRecognizer:
    """Social-media handles (`@name`); an e-mail's `@domain` is not one."""
    return pattern_recognizer(
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
    return pattern_recognizer(
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
    return pattern_recognizer(
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
    return pattern_recognizer(
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
    return pattern_recognizer(
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
    return pattern_recognizer(
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
