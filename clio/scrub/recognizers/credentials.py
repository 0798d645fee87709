"""Secrets and keys: API keys by their published shapes, secret values in URLs, and
credentials written after their name. Matches aim at precision (random keys hold digits),
so prose that merely mentions a password or a token is left alone.
"""

from __future__ import annotations

import regex
from presidio_analyzer import Pattern, PatternRecognizer

from clio.scrub.recognizers.text import pattern_recognizer


def api_key_recognizer(language: str = "en") -> PatternRecognizer:
    # Random keys contain digits; requiring one keeps e.g. "sk-learn-..." prose out.
    has_digit = r"(?=[A-Za-z0-9_-]*\d)"
    return pattern_recognizer(
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
    return pattern_recognizer(
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
    return pattern_recognizer(
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
