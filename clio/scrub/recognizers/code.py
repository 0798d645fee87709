"""Code and numbers that cannot be a person, a place, an address or a phone: the scrub
engine drops detections of these after the recognizers and the NER model have run
(`not_pii`), so technical text keeps its identifiers, instructions and prices.
"""

from __future__ import annotations

import regex

from clio.scrub.recognizers.gazetteers import any_name

# Types the NER model and the name and place lists guess from words, which code and
# identifiers fool ("range(1", "str2", `MOV AX`); pattern types (e-mail, keys, secrets,
# numbers) are not judged here and stay replaced inside code.
WORD_TYPES = frozenset({"PERSON", "LOCATION", "NRP"})

# A call or an index, an opening bracket right after a letter ("range(1", "= len(str1"),
# which no written name, place or address holds; a bracket after a space or before a
# word ("Toni Kroos - [", "[written by Jo]") is the NER model's sloppy boundary there.
_CODE_CHARS = regex.compile(r"[^\W\d_][(\[{]")
# Signs of an identifier that a user name may also show: an underscore, a dot joining a
# word to a lower-case one ("os.path"), letters and digits in one word ("str2", "x86").
# They mark code only when no word of the value is a listed name ("john_smith", "jane93"
# stay replaced) and it holds no `@`.
_IDENTIFIER = regex.compile(r"_|[^\W\d_]{2}\.[a-z]|[^\W\d_]\d|\d[^\W\d_]")
_LETTERS = regex.compile(r"[^\W\d_]+")
# Computing terms the NER model takes for a name or a place ("in JSON format", "ai"),
# when written in capitals or lower case: "Ai" written as a name stays replaced.
TECHNICAL_TERMS = frozenset(
    {"ai", "api", "cpu", "css", "csv", "gpu", "gpt", "html", "http", "https", "json"}
    | {"llm", "pdf", "sdk", "sql", "url", "xml", "yaml"}
)
# A decimal number with one or two decimals ("164.25", "1,299.99"): a price or a measure,
# never how a phone number is written.
_DECIMAL = regex.compile(r"\d{1,3}(?:,\d{3})*\.\d{1,2}|\d+\.\d{1,2}")

# Markdown code: a fenced block (to its closing fence, or to the end of a cut message) and
# inline code between single backticks on one line.
_CODE_REGION = regex.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", regex.DOTALL)
# Inside code, the parts that hold data rather than code: quoted strings on one line and
# comments to the end of the line; a name or a place there stays replaced.
_DATA_IN_CODE = regex.compile(r"\"[^\"\n]*\"|'[^'\n]*'|(?:#|//).*$", regex.MULTILINE)


def code_regions(text: str) -> list[tuple[int, int]]:
    """The (start, end) offsets of the Markdown code in `text`, less its strings and comments."""
    regions = []
    for block in _CODE_REGION.finditer(text):
        start = block.start()
        for data in _DATA_IN_CODE.finditer(text, block.start(), block.end()):
            regions.append((start, data.start()))
            start = data.end()
        regions.append((start, block.end()))
    return [(start, end) for start, end in regions if start < end]


def not_pii(
    text: str, entity_type: str, start: int, end: int, regions: list[tuple[int, int]]
) -> bool:
    """True when the detected `text[start:end]` cannot be what `entity_type` says: a name
    or place with a call or an index in it, shaped like an identifier with no listed name
    in it, a computing term, or inside Markdown code (`regions`, from `code_regions`); a
    street address with a call or an index in it; a phone number that is a plain decimal
    number."""
    value = text[start:end]
    if entity_type in WORD_TYPES:
        return (
            _CODE_CHARS.search(value) is not None
            or _is_identifier(value)
            or _is_technical_term(value)
            or any(r_start <= start and end <= r_end for r_start, r_end in regions)
        )
    if entity_type == "STREET_ADDRESS":
        return _CODE_CHARS.search(value) is not None
    if entity_type == "PHONE_NUMBER":
        return _DECIMAL.fullmatch(value) is not None
    return False


def _is_identifier(value: str) -> bool:
    if "@" in value or _IDENTIFIER.search(value) is None:  # "@Prettyboy_flako" is a handle
        return False
    names = any_name()
    return not any(word.casefold() in names for word in _LETTERS.findall(value))


def _is_technical_term(value: str) -> bool:
    return value.casefold() in TECHNICAL_TERMS and value in (value.upper(), value.lower())
