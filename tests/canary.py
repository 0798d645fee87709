"""Canary PII: plant unique fake PII in generated conversations, then look for it everywhere.

`make_canary_conversations` writes conversations (OpenAI `messages` shape, ready for
`clio run --input`) with one unique, well-formed fake value of every PII type clio scrubs,
in user and assistant turns, plus the awkward inputs (a text longer than one analyzer
chunk, mixed scripts, a turn that is all PII, empty turns).

`scan_run_outputs` looks for those values in everything a run writes; `scan_texts` and
`scan_paths` do the same for any text or file (the raw input must be found, which proves
the checker can fail). Matching is forgiving on purpose, so a reformatted value still
counts as a leak: text is case-folded with whitespace collapsed; for values with digits,
spaces, dashes, dots and parentheses are removed on both sides; numbers are also compared
by their digits alone.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sqlite3
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

CANARY_KINDS = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "API_KEY",
    "BEARER_TOKEN",
    "AWS_ACCESS_KEY",
    "URL_QUERY_SECRET",
    "URL_BASIC_AUTH",
    "STREET_ADDRESS",
    "POSTCODE",
    "DATE_OF_BIRTH",
    "PASSPORT",
    "NATIONAL_ID",
    "MAC_ADDRESS",
    "BITCOIN_WALLET",
    "ETHEREUM_WALLET",
)

# Digit-only comparison is for numbers long enough not to turn up by chance in a database
# file full of timestamps and counters.
MIN_DIGITS_FOR_DIGIT_MATCH = 8
_SEPARATORS = re.compile(r"[\s\-.()]+")
_WHITESPACE = re.compile(r"\s+")
_NON_DIGITS = re.compile(r"\D+")
_PUNCTUATION = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Canary:
    kind: str
    value: str
    variants: tuple[str, ...] = ()  # other spellings of the same value to look for

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.value, *self.variants)


@dataclass(frozen=True)
class Leak:
    kind: str
    location: str  # e.g. "insights.duckdb:clusters.name" or "logs/clio.log"
    form: str  # "text", "no_separators" or "digits": which normalisation matched


@dataclass(frozen=True)
class ScanReport:
    leaks: list[Leak]
    scanned: list[str]  # every location read, so an empty scan cannot pass unnoticed


# -- matching -----------------------------------------------------------------------------


def _text_form(text: str) -> str:
    return _WHITESPACE.sub(" ", text.casefold())


def _no_separators_form(text: str) -> str:
    return _SEPARATORS.sub("", text.casefold())


def _digits(text: str) -> str:
    return _NON_DIGITS.sub("", text)


class CanaryMatcher:
    """Finds canaries in text under the normalisations described in the module docstring."""

    def __init__(self, canaries: Sequence[Canary]):
        if not canaries:
            raise ValueError("no canaries to look for")
        self._needles: list[tuple[Canary, str, str]] = []
        for canary in canaries:
            for spelling in canary.spellings:
                self._needles.append((canary, "text", _text_form(spelling)))
                if any(ch.isdigit() for ch in spelling):
                    self._needles.append((canary, "no_separators", _no_separators_form(spelling)))
                    digits = _digits(spelling)
                    if len(digits) >= MIN_DIGITS_FOR_DIGIT_MATCH:
                        self._needles.append((canary, "digits", digits))

    def find(self, text: str) -> list[tuple[Canary, str]]:
        """Each canary found in `text` once, with the first form that matched."""
        if not text:
            return []
        forms = {"text": _text_form(text), "no_separators": _no_separators_form(text)}
        # Long numbers are looked for with every punctuation mark removed:
        # "(415) 867-5309" and "415/867/5309" both hold 4158675309 then.
        forms["digits"] = _PUNCTUATION.sub("", forms["no_separators"])
        found: dict[Canary, str] = {}
        for canary, form, needle in self._needles:
            if canary not in found and needle and needle in forms[form]:
                found[canary] = form
        return list(found.items())


def scan_texts(
    texts: Iterable[tuple[str, str]], canaries: Sequence[Canary] | CanaryMatcher
) -> list[Leak]:
    """Leaks in `(location, text)` pairs."""
    matcher = canaries if isinstance(canaries, CanaryMatcher) else CanaryMatcher(canaries)
    leaks = []
    for location, text in texts:
        for canary, form in matcher.find(text):
            leaks.append(Leak(canary.kind, location, form))
    return leaks


def _file_text(path: Path) -> str:
    # Binary files (SQLite pages, pickles) are read as UTF-8 with the rest ignored: stored
    # strings survive as runs of text.
    return path.read_bytes().decode("utf-8", errors="ignore")


def scan_paths(paths: Iterable[Path], canaries: Sequence[Canary] | CanaryMatcher) -> ScanReport:
    """Leaks in the bytes of files (directories are walked)."""
    matcher = canaries if isinstance(canaries, CanaryMatcher) else CanaryMatcher(canaries)
    files = sorted(_walk(paths))
    texts = ((str(path), _file_text(path)) for path in files)
    return ScanReport(scan_texts(texts, matcher), [str(path) for path in files])


def _walk(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path


def duckdb_texts(path: Path, tables: Sequence[str] | None = None) -> Iterator[tuple[str, str]]:
    """`(file:table.column, all values joined)` for every column of every base table (or of
    `tables`), each value cast to text."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = [
            row[0]
            for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY table_name"
            ).fetchall()
        ]
        for table in names if tables is None else [t for t in names if t in tables]:
            columns = con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                "ORDER BY column_index",
                [table],
            ).fetchall()
            for (column,) in columns:
                values = con.execute(
                    f'SELECT CAST("{column}" AS VARCHAR) FROM "{table}" '
                    f'WHERE "{column}" IS NOT NULL'
                ).fetchall()
                yield f"{path.name}:{table}.{column}", "\n".join(v for (v,) in values)


def sqlite_texts(path: Path) -> Iterator[tuple[str, str]]:
    """`(file:table, all text)` for every table of a SQLite database, read-only. Long values
    span overflow pages, so reading the file's bytes alone could miss them."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for table in tables:
            rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
            text = "\n".join(
                value.decode("utf-8", errors="ignore") if isinstance(value, bytes) else str(value)
                for row in rows
                for value in row
                if value is not None
            )
            yield f"{path.name}:{table}", text
    finally:
        con.close()


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def scan_run_outputs(output_dir: Path, canaries: Sequence[Canary]) -> ScanReport:
    """Leaks anywhere a run under `output_dir` writes: the released store (every column of
    every table), the private store's scrubbed conversations, facets and quarantine, logs,
    the manifests, and Prefect's home (every file's bytes, SQLite databases also by table)."""
    matcher = CanaryMatcher(canaries)
    leaks: list[Leak] = []
    scanned: list[str] = []

    def scan(texts: Iterable[tuple[str, str]]) -> None:
        for location, text in texts:
            scanned.append(location)
            leaks.extend(scan_texts([(location, text)], matcher))

    released = output_dir / "insights.duckdb"
    if released.exists():
        scan(duckdb_texts(released))
    private = output_dir / "private" / "private.duckdb"
    if private.exists():
        scan(duckdb_texts(private, tables=("conversations", "facets", "quarantine")))
    files = [output_dir / "logs", output_dir / "manifest.json", output_dir / "runs"]
    files += [output_dir / "private" / "manifest.json", output_dir / "private" / "runs"]
    prefect_home = output_dir / "prefect"
    files.append(prefect_home)
    file_report = scan_paths(files, matcher)
    leaks.extend(file_report.leaks)
    scanned.extend(file_report.scanned)
    for path in sorted(_walk([prefect_home])):
        if _is_sqlite(path):
            scan(sqlite_texts(path))
    return ScanReport(leaks, scanned)


# -- generation ---------------------------------------------------------------------------

_FIRST_NAMES = (
    "Theodora", "Casimir", "Rosalind", "Evander", "Philippa", "Leopold", "Octavia", "Benedikt",
    "Marisol", "Ignatius", "Griselda", "Anselm", "Perpetua", "Lucius", "Henrietta", "Fabian",
)  # fmt: skip
_LAST_NAMES = (
    "Lindqvist", "Abernathy", "Castellanos", "Pellegrini", "Szymanski", "Haverford",
    "Okonkwo", "Vandermeer", "Thistlewood", "Marchetti", "Kowalczyk", "Fairweather",
    "Ravensworth", "Delacroix", "Brannigan", "Achterberg",
)  # fmt: skip
_STREET_NAMES = (
    "Quillfeather", "Brackenridge", "Mossgiel", "Thornbury", "Ashcombe", "Wrenfield",
    "Larkspur", "Cobblestone", "Hollowmere", "Fernleigh",
)  # fmt: skip
_STREET_TYPES = ("Lane", "Street", "Avenue", "Road", "Drive")
_EMAIL_DOMAINS = ("example.org", "mailbox.example.com", "post.example.net")
_AREA_CODES = ("212", "312", "415", "503", "617", "646", "720", "917")
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_ALNUM = string.ascii_letters + string.digits
_NINO_PREFIXES = ("AB", "CE", "JH", "KL", "MW", "PR", "SN", "TW", "WP", "ZE")


def _luhn_complete(partial: str) -> str:
    """`partial` plus the check digit that makes it pass the Luhn test."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return partial + str((10 - total % 10) % 10)


def _iban(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    number = int("".join(str(int(ch, 36)) for ch in rearranged))
    return f"{country}{98 - number % 97:02d}{bban}"


def _base58check(payload: bytes) -> str:
    checksum = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    data = payload + checksum
    number = int.from_bytes(data, "big")
    encoded = ""
    while number:
        number, remainder = divmod(number, 58)
        encoded = _BASE58[remainder] + encoded
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading_zeros + encoded


def _grouped(text: str, size: int = 4) -> str:
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


class _Factory:
    """Unique well-formed fake values, deterministic for a seed."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.used: set[str] = set()

    def _digits(self, n: int, first: str = "123456789") -> str:
        return self.rng.choice(first) + "".join(
            self.rng.choice(string.digits) for _ in range(n - 1)
        )

    def _token(self, n: int, alphabet: str = _ALNUM) -> str:
        while True:
            token = "".join(self.rng.choice(alphabet) for _ in range(n))
            if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
                return token

    def make(self, kind: str) -> Canary:
        for _ in range(1000):
            canary = getattr(self, kind.lower())()
            if canary.value not in self.used:
                self.used.add(canary.value)
                return canary
        raise RuntimeError(f"could not make a unique {kind}")

    def person(self) -> Canary:
        return Canary("PERSON", f"{self.rng.choice(_FIRST_NAMES)} {self.rng.choice(_LAST_NAMES)}")

    def email_address(self) -> Canary:
        local = f"{self.rng.choice(_FIRST_NAMES).lower()}.{self.rng.choice(_LAST_NAMES).lower()}"
        return Canary(
            "EMAIL_ADDRESS", f"{local}{self._digits(3)}@{self.rng.choice(_EMAIL_DOMAINS)}"
        )

    def phone_number(self) -> Canary:
        area = self.rng.choice(_AREA_CODES)
        exchange, line = self._digits(3, "2346789"), self._digits(4)
        return Canary(
            "PHONE_NUMBER",
            f"({area}) {exchange}-{line}",
            variants=(f"+1 {area} {exchange} {line}",),
        )

    def credit_card(self) -> Canary:
        number = _luhn_complete("4" + self._digits(14, string.digits))
        return Canary("CREDIT_CARD", _grouped(number))

    def iban_code(self) -> Canary:
        iban = _iban("DE", self._digits(18, string.digits))
        return Canary("IBAN_CODE", _grouped(iban), variants=(iban,))

    def ip_address(self) -> Canary:
        octets = [str(self.rng.randint(100, 223)) for _ in range(4)]
        return Canary("IP_ADDRESS", ".".join(octets))

    def us_ssn(self) -> Canary:
        area = str(self.rng.randint(101, 665))
        return Canary("US_SSN", f"{area}-{self._digits(2)}-{self._digits(4)}")

    def api_key(self) -> Canary:
        return Canary("API_KEY", f"sk-proj-{self._token(40)}")

    def bearer_token(self) -> Canary:
        header = "eyJhbGciOiJIUzI1NiJ9"
        return Canary("BEARER_TOKEN", f"{header}.{self._token(24)}.{self._token(32)}")

    def aws_access_key(self) -> Canary:
        return Canary(
            "AWS_ACCESS_KEY", "AKIA" + self._token(16, string.ascii_uppercase + string.digits)
        )

    def url_query_secret(self) -> Canary:
        return Canary("URL_QUERY_SECRET", self._token(28))

    def url_basic_auth(self) -> Canary:
        return Canary("URL_BASIC_AUTH", self._token(18))

    def street_address(self) -> Canary:
        return Canary(
            "STREET_ADDRESS",
            f"{self._digits(4)} {self.rng.choice(_STREET_NAMES)} {self.rng.choice(_STREET_TYPES)}",
        )

    def postcode(self) -> Canary:
        letters = "ABDEFGHJLNPQRSTUWXYZ"
        area = self.rng.choice("BDHKLMNPSW") + self.rng.choice("ACDEHLMNRTW")
        value = (
            f"{area}{self.rng.randint(10, 99)} "
            f"{self.rng.randint(1, 9)}{self.rng.choice(letters)}{self.rng.choice(letters)}"
        )
        return Canary("POSTCODE", value)

    def date_of_birth(self) -> Canary:
        day = datetime(1931, 1, 1, tzinfo=UTC) + timedelta(days=self.rng.randint(0, 68 * 365))
        return Canary(
            "DATE_OF_BIRTH",
            day.strftime("%d/%m/%Y"),
            variants=(day.strftime("%Y-%m-%d"), day.strftime("%Y%m%d")),
        )

    def passport(self) -> Canary:
        return Canary("PASSPORT", self.rng.choice("CKLMNPX") + self._digits(8))

    def national_id(self) -> Canary:
        digits = self._digits(6)
        prefix, suffix = self.rng.choice(_NINO_PREFIXES), self.rng.choice("ABCD")
        return Canary(
            "NATIONAL_ID",
            f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}",
            variants=(f"{prefix}{digits}{suffix}",),
        )

    def mac_address(self) -> Canary:
        octets = [f"{self.rng.randint(16, 255):02X}" for _ in range(6)]
        return Canary("MAC_ADDRESS", ":".join(octets), variants=("-".join(octets),))

    def bitcoin_wallet(self) -> Canary:
        payload = b"\0" + bytes(self.rng.randrange(256) for _ in range(20))
        return Canary("BITCOIN_WALLET", _base58check(payload))

    def ethereum_wallet(self) -> Canary:
        return Canary("ETHEREUM_WALLET", "0x" + self._token(40, "0123456789abcdef"))


# What a user says to plant each kind: context words as people write them.
_USER_LINES = {
    "PERSON": "Hi, my name is {v} and I need help writing a cover letter.",
    "EMAIL_ADDRESS": "You can reach me at {v} if the form needs an email.",
    "PHONE_NUMBER": "My phone number is {v}, call after six.",
    "CREDIT_CARD": "The charge went to my credit card {v} twice this month.",
    "IBAN_CODE": "Please refund to my IBAN {v} instead.",
    "IP_ADDRESS": "My server at {v} keeps refusing SSH connections.",
    "US_SSN": "The form asks for my social security number, which is {v}.",
    "API_KEY": "My code sets OPENAI_API_KEY={v} but I still get 401 errors.",
    "BEARER_TOKEN": "I send the header Authorization: Bearer {v} and it fails.",
    "AWS_ACCESS_KEY": "In ~/.aws/credentials I have aws_access_key_id = {v} for the bot.",
    "URL_QUERY_SECRET": "Why does https://api.example.com/v1/export?user=7&access_token={v} "
    "return 403?",
    "URL_BASIC_AUTH": "My connection string is postgres://dbadmin:{v}@db.example.internal:5432/app",
    "STREET_ADDRESS": "Ship it to {v}, Springfield please.",
    "POSTCODE": "Our postcode is {v}, is that in the delivery area?",
    "DATE_OF_BIRTH": "I was born on {v}, am I old enough for the senior discount?",
    "PASSPORT": "My passport number is {v}, do I need a visa?",
    "NATIONAL_ID": "My national insurance number is {v} for the tax form.",
    "MAC_ADDRESS": "The router lists a device with MAC address {v} that I don't know.",
    "BITCOIN_WALLET": "Send the payment to my bitcoin wallet {v} please.",
    "ETHEREUM_WALLET": "My ethereum address is {v} for the refund.",
}
# What the assistant says back: assistants repeat details.
_ASSISTANT_LINES = {
    "PERSON": "Nice to meet you, {v}! Let's start with your experience.",
    "EMAIL_ADDRESS": "Thanks, I will use {v} as the contact address.",
    "PHONE_NUMBER": "Noted: {v}. Evenings it is.",
    "CREDIT_CARD": "If the card {v} was charged twice, ask your bank for a chargeback.",
    "IBAN_CODE": "A refund to IBAN {v} usually takes three working days.",
    "IP_ADDRESS": "Check that sshd listens on {v} and that port 22 is open.",
    "US_SSN": "Please do not share an SSN like {v} in chat; enter it only on the official form.",
    "API_KEY": "The key {v} may have been revoked; create a new one.",
    "BEARER_TOKEN": "A 401 for Bearer {v} usually means the token expired.",
    "AWS_ACCESS_KEY": "Rotate {v} right away, since it was shared here.",
    "URL_QUERY_SECRET": "The access_token={v} in that URL is probably expired.",
    "URL_BASIC_AUTH": "Do not paste the password {v} in chat; rotate it.",
    "STREET_ADDRESS": "I will note {v} as the delivery address.",
    "POSTCODE": "Postcode {v} is inside the delivery area.",
    "DATE_OF_BIRTH": "Born on {v}, you qualify for the discount.",
    "PASSPORT": "With passport number {v} you can check visa rules online.",
    "NATIONAL_ID": "Enter national insurance number {v} in box 3.",
    "MAC_ADDRESS": "You can block MAC address {v} in the router settings.",
    "BITCOIN_WALLET": "Double-check the wallet {v} before sending anything.",
    "ETHEREUM_WALLET": "The address {v} looks like a valid Ethereum address.",
}
# Two kinds per regular conversation, plus the three conversations of awkward input.
MIN_CANARY_CONVERSATIONS = (len(CANARY_KINDS) + 1) // 2 + 3
_FILLER = (
    "The weather stayed calm all week and the garden needed watering every second day, "
    "so I kept notes about which plants did well in the shade. "
)


@dataclass(frozen=True)
class CanarySet:
    records: list[dict[str, Any]]  # input records, OpenAI `messages` shape
    canaries: list[Canary]


def make_canary_conversations(
    n_conversations: int = 24, seed: int = 0, long_text_chars: int = 6500
) -> CanarySet:
    """Conversations with planted canaries: every kind at least once, in user and assistant
    turns, plus a long text (canary past the first analyzer chunk), mixed scripts, a turn
    that is all PII and empty turns."""
    if n_conversations < MIN_CANARY_CONVERSATIONS:
        raise ValueError(
            f"at least {MIN_CANARY_CONVERSATIONS} conversations are needed to plant every kind"
        )
    factory = _Factory(seed)
    canaries: list[Canary] = []

    def plant(kind: str) -> Canary:
        canary = factory.make(kind)
        canaries.append(canary)
        return canary

    kinds = list(CANARY_KINDS)
    regular = n_conversations - 3
    records = []
    for index in range(regular):
        first = plant(kinds[(2 * index) % len(kinds)])
        second = plant(kinds[(2 * index + 1) % len(kinds)])
        messages = [
            ("user", _USER_LINES[first.kind].format(v=first.value)),
            ("assistant", _ASSISTANT_LINES[first.kind].format(v=first.value)),
            ("user", _USER_LINES[second.kind].format(v=second.value)),
            ("assistant", _ASSISTANT_LINES[second.kind].format(v=second.value)),
        ]
        records.append(_record(f"canary-{index:03d}", index, messages))
    # A text longer than an analyzer chunk, with canaries near both ends.
    early, late = plant("EMAIL_ADDRESS"), plant("PERSON")
    body = _FILLER * (long_text_chars // len(_FILLER) + 1)
    long_text = (
        _USER_LINES["EMAIL_ADDRESS"].format(v=early.value)
        + " "
        + body[:long_text_chars]
        + " "
        + _USER_LINES["PERSON"].format(v=late.value)
    )
    records.append(_record("canary-long", regular, [("user", long_text), ("assistant", "Thanks.")]))
    # Mixed scripts around canaries.
    email, phone = plant("EMAIL_ADDRESS"), plant("PHONE_NUMBER")
    mixed = (
        f"请帮我写一封邮件给 {email.value}。Привет! Позвоните мне: {phone.value}. "
        f"مرحبا، شكرا جزيلا."
    )
    records.append(
        _record(
            "canary-mixed",
            regular + 1,
            [("user", mixed), ("assistant", f"好的，我会写给 {email.value}。")],
        )
    )
    # Turns that are nothing but PII, and empty turns.
    card, ssn, person = plant("CREDIT_CARD"), plant("US_SSN"), plant("PERSON")
    records.append(
        _record(
            "canary-all-pii",
            regular + 2,
            [
                ("user", card.value),
                ("assistant", ""),
                ("user", f"{person.value}\n{ssn.value}"),
                ("assistant", ""),
            ],
        )
    )
    return CanarySet(records, canaries)


def _record(conversation_id: str, index: int, messages: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "user_id": f"canary-user-{index:03d}",
        "timestamp": f"2024-06-{1 + index % 28:02d}T12:00:00Z",
        "messages": [{"role": role, "content": content} for role, content in messages],
    }


def write_jsonl(records: Sequence[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
