"""Pattern recognizers clio adds to Presidio's defaults, and the offline e-mail recognizer.

Each recognizer aims at precision: secrets are matched by their published shapes, and
weak shapes (postcodes, dates of birth, passport numbers) only count when their context
word is part of the match's lookbehind, so the decision does not depend on the score
threshold. Presidio compiles patterns with the `regex` module, which allows the
variable-length lookbehinds used here; only the value after the context is replaced.

Bump `RECOGNIZERS_VERSION` whenever a pattern changes: it is part of the scrubber's
identifier and therefore of every cache key downstream.
"""

from __future__ import annotations

import regex
import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerRegistry
from presidio_analyzer.predefined_recognizers import CryptoRecognizer, EmailRecognizer

RECOGNIZERS_VERSION = "1"

# Case-sensitive by default (Presidio's default adds IGNORECASE); patterns opt into
# case-insensitivity locally with `(?i:...)` where it is wanted.
_FLAGS = regex.MULTILINE

# Built-in recognizers clio replaces: e-mail (tldextract would fetch the public suffix
# list) and crypto (renamed to CRYPTO_WALLET, with Ethereum added).
REPLACED_BUILTINS = ("EmailRecognizer", "CryptoRecognizer")

# Snapshot-only suffix list, no cache directory: never touches the network or disk.
_OFFLINE_TLD_EXTRACT = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())


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
    r"\b(?i:post\s?code|postal\s+code|zip\s?code|zip)\s*(?:(?i:is|was|of)\s+)?[:#=-]?\s*"
)


def postcode_recognizer(language: str = "en") -> PatternRecognizer:
    return _pattern_recognizer(
        "POSTCODE",
        "PostcodeRecognizer",
        [
            Pattern(
                "us_zip_after_context", rf"(?<={_POSTCODE_CONTEXT})\d{{5}}(?:-\d{{4}})?\b", 0.7
            ),
            Pattern(
                "us_zip_after_state", rf"(?<=\b(?:{_US_STATES}),?\s)\d{{5}}(?:-\d{{4}})?\b", 0.6
            ),
            Pattern(
                "uk_postcode_after_context",
                rf"(?<={_POSTCODE_CONTEXT})(?i:[A-Z]{{1,2}}\d[A-Z\d]?\s?\d[A-Z]{{2}})\b",
                0.7,
            ),
        ],
        language,
    )


_STREET_TYPES = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|"
    "terrace|close|crescent|parkway|pkwy|highway|hwy|square|sq|circle|cir|trail|row|gardens"
)


def street_address_recognizer(language: str = "en") -> PatternRecognizer:
    # A house number, one to three capitalised name words, then a street type:
    # "221B Baker Street", "1600 Pennsylvania Avenue". Lower-case names are not taken
    # ("3 cars in the street" would be).
    name_word = r"(?!The\b)[A-Z][A-Za-z'-]+"
    return _pattern_recognizer(
        "STREET_ADDRESS",
        "StreetAddressRecognizer",
        [
            Pattern(
                "number_name_type",
                rf"\b\d{{1,5}}[A-Za-z]?(?:\s+{name_word}){{1,3}}\s+(?i:{_STREET_TYPES})\b\.?",
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
    r"\b(?i:born(?:\s+on)?|date\s+of\s+birth|d\.?o\.?b\.?|birth\s?date|birthday)"
    r"\s*(?:(?i:is|was)\s+)?[:=-]?\s*"
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
    context = r"\b(?i:passport)(?:\s+(?i:number|num|no\.?|#))?\s*(?:(?i:is|was)\s+)?[:#=-]?\s*"
    return _pattern_recognizer(
        "PASSPORT",
        "PassportRecognizer",
        [Pattern("id_after_context", rf"(?<={context})(?=[A-Z0-9]*\d)[A-Z0-9]{{6,9}}\b", 0.7)],
        language,
    )


def extra_recognizers(language: str = "en") -> list[EntityRecognizer]:
    return [
        OfflineEmailRecognizer(language),
        BitcoinWalletRecognizer(language),
        ethereum_wallet_recognizer(language),
        api_key_recognizer(language),
        url_secret_recognizer(language),
        postcode_recognizer(language),
        street_address_recognizer(language),
        date_of_birth_recognizer(language),
        passport_recognizer(language),
    ]


def install_recognizers(registry: RecognizerRegistry, language: str = "en") -> None:
    """Swap the built-ins clio replaces for its own and add the extra recognizers."""
    for name in REPLACED_BUILTINS:
        registry.remove_recognizer(name)
    for recognizer in extra_recognizers(language):
        registry.add_recognizer(recognizer)
