"""Loaders for the labelled PII datasets in `../shared/data`, as texts with gold spans.

Each dataset also says which scrubber types are compatible with each of its own entity
types (the mapping is part of the harness, so scores use the dataset's names):
`compatible[TYPE]` lists scrubber types; the first is the type's primary counterpart,
and a prediction that matches nothing is charged to the dataset type whose primary
counterpart it is. Dataset types not listed are not scored at all. A place or postcode
inside a detected street address counts as found: the address placeholder hides it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class GoldSpan:
    entity_type: str
    start: int
    end: int


@dataclass(frozen=True)
class Example:
    text: str
    spans: tuple[GoldSpan, ...]


@dataclass(frozen=True)
class PiiDataset:
    name: str
    language: str
    examples: list[Example]
    compatible: dict[str, tuple[str, ...]]
    source: str = ""
    notes: list[str] = field(default_factory=list)


PRESIDIO_SYNTH_COMPATIBLE: dict[str, tuple[str, ...]] = {
    "PERSON": ("PERSON",),
    "STREET_ADDRESS": ("STREET_ADDRESS", "LOCATION", "POSTCODE"),
    "GPE": ("LOCATION", "STREET_ADDRESS"),
    "ORGANIZATION": ("ORGANIZATION",),
    "CREDIT_CARD": ("CREDIT_CARD",),
    "DATE_TIME": ("DATE_TIME", "DATE_OF_BIRTH"),
    "TITLE": (),
    "PHONE_NUMBER": ("PHONE_NUMBER",),
    "AGE": (),
    "NRP": ("NRP",),
    "EMAIL_ADDRESS": ("EMAIL_ADDRESS",),
    "ZIP_CODE": ("POSTCODE", "STREET_ADDRESS"),
    "DOMAIN_NAME": ("URL",),
    "IBAN_CODE": ("IBAN_CODE",),
    "US_SSN": ("US_SSN",),
    "IP_ADDRESS": ("IP_ADDRESS",),
    "US_DRIVER_LICENSE": ("US_DRIVER_LICENSE",),
}
WNUT17_COMPATIBLE: dict[str, tuple[str, ...]] = {
    "person": ("PERSON", "USERNAME"),
    "location": ("LOCATION", "STREET_ADDRESS"),
}
ECHR_COMPATIBLE: dict[str, tuple[str, ...]] = {
    "PER": ("PERSON", "USERNAME"),
    "LOC": ("LOCATION", "STREET_ADDRESS", "POSTCODE"),
    "ORG": ("ORGANIZATION",),
    "CODE": (
        "NATIONAL_ID",
        "PASSPORT",
        "IBAN_CODE",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "US_SSN",
        "ES_NIF",
        "ES_NIE",
    ),
    "DATETIME": ("DATE_TIME", "DATE_OF_BIRTH"),
}

NAMES = ("presidio_synth", "wnut17", "echr_fr", "echr_es")
_SPLIT_FILES = {
    "wnut17": {
        "train": "wnut17train.conll",
        "dev": "emerging.dev.conll",
        "test": "emerging.test.annotated",
    },
    "echr_fr": {s: f"FR-all-{s}.tsv" for s in ("train", "dev", "test")},
    "echr_es": {s: f"ES-all-{s}.tsv" for s in ("train", "dev", "test")},
}


def load_dataset(name_or_path: str, data_dir: Path, split: str = "test") -> PiiDataset:
    """A dataset by name (`NAMES`), or a Presidio-style JSON file by path."""
    if name_or_path == "presidio_synth":
        return load_presidio_json(data_dir / "presidio_synth_pii" / "synth_dataset_v2.json")
    if name_or_path in _SPLIT_FILES:
        files = _SPLIT_FILES[name_or_path]
        if split not in files:
            raise ValueError(f"split {split!r} not in {sorted(files)}")
        if name_or_path == "wnut17":
            path = data_dir / "wnut17" / files[split]
            return PiiDataset(
                f"wnut17-{split}", "en", list(read_conll(path, "\t")), WNUT17_COMPATIBLE, str(path)
            )
        language = name_or_path.split("_")[1]
        path = data_dir / "echr_fr_es_anonymization" / files[split]
        return PiiDataset(
            f"{name_or_path}-{split}", language, list(read_conll(path, " ")), ECHR_COMPATIBLE,
            str(path),
        )  # fmt: skip
    path = Path(name_or_path)
    if path.is_file():
        return load_presidio_json(path)
    raise ValueError(
        f"unknown dataset {name_or_path!r}: use one of {list(NAMES)} or a path to a "
        "Presidio-style JSON file"
    )


def load_presidio_json(path: Path) -> PiiDataset:
    """Presidio-research's format: `[{"full_text", "spans": [{"entity_type",
    "start_position", "end_position"}]}]`."""
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    records = json.loads(path.read_text(encoding="utf-8"))
    examples = []
    for record in records:
        spans = tuple(
            GoldSpan(s["entity_type"], int(s["start_position"]), int(s["end_position"]))
            for s in record["spans"]
        )
        examples.append(Example(record["full_text"], spans))
    return PiiDataset("presidio_synth", "en", examples, PRESIDIO_SYNTH_COMPATIBLE, str(path))


# Pre-tokenised text is joined back with these spacing rules, so the analyzer sees
# "l'origine (no 74025/01)" rather than "l ' origine ( no 74025 / 01 )".
_NO_SPACE_BEFORE = {".", ",", ";", ":", ")", "]", "}", "%", "'", "’", "»", "!", "?", "/", "_"}
_NO_SPACE_AFTER = {"(", "[", "{", "'", "’", "«", "/", "¿", "¡", "@", "#", "_"}


def detokenize(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Text and each token's (start, end) in it."""
    pieces: list[str] = []
    offsets = []
    cursor = 0
    previous = ""
    for token in tokens:
        if pieces and token not in _NO_SPACE_BEFORE and previous not in _NO_SPACE_AFTER:
            pieces.append(" ")
            cursor += 1
        offsets.append((cursor, cursor + len(token)))
        pieces.append(token)
        cursor += len(token)
        previous = token
    return "".join(pieces), offsets


def read_conll(path: Path, separator: str) -> Iterator[Example]:
    """BIO-tagged `token<separator>tag` lines, sentences split by blank lines."""
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    tokens: list[str] = []
    tags: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                if tokens:
                    yield _bio_example(tokens, tags)
                tokens, tags = [], []
                continue
            token, _, tag = line.rstrip("\n").rpartition(separator)
            tokens.append(token.strip())
            tags.append(tag.strip() or "O")
    if tokens:
        yield _bio_example(tokens, tags)


def _bio_example(tokens: list[str], tags: list[str]) -> Example:
    text, offsets = detokenize(tokens)
    spans: list[GoldSpan] = []
    current: tuple[str, int, int] | None = None
    for (start, end), tag in zip(offsets, tags, strict=True):
        prefix, _, entity = tag.partition("-")
        if prefix == "I" and current is not None and current[0] == entity:
            current = (entity, current[1], end)
            continue
        if current is not None:
            spans.append(GoldSpan(*current))
            current = None
        if prefix in ("B", "I") and entity:
            current = (entity, start, end)
    if current is not None:
        spans.append(GoldSpan(*current))
    return Example(text, tuple(spans))
