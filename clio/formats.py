"""Input sources: find the files to read and turn each line or row into a raw record.

A raw record is a parsed value (usually a dict) or, when the bytes could not be decoded, the
reason why; turning values into conversations is `clio.ingest`'s job. Problems with a whole
source (missing file, unknown extension, unreadable header) raise `IngestError` before any
record is read; problems with one line or row become a raw record with an error instead.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

from clio.records import raw_hash

Format = Literal["jsonl", "jsonl.gz", "json", "csv", "parquet", "duckdb"]

# Longest suffixes first so `.jsonl.gz` wins over `.gz`.
FILE_FORMATS: dict[str, Format] = {
    ".jsonl.gz": "jsonl.gz",
    ".ndjson.gz": "jsonl.gz",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
DUCKDB_SUFFIX = ".duckdb"
TABLE_SEPARATOR = "::"
_FETCH_ROWS = 1024
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class IngestError(ValueError):
    """An input that cannot be read at all (raised before any record is read)."""


@dataclass(frozen=True)
class Source:
    path: Path
    format: Format
    table: str | None = None  # only for DuckDB databases

    @property
    def name(self) -> str:
        """What records say they came from: the file name (plus `::table` for DuckDB)."""
        return f"{self.path.name}{TABLE_SEPARATOR}{self.table}" if self.table else self.path.name

    @property
    def stem(self) -> str:
        """The file name without its format suffix, used in default conversation ids."""
        suffix = _matching_suffix(self.path.name) or DUCKDB_SUFFIX
        stem = self.path.name[: -len(suffix)]
        return f"{stem}.{self.table}" if self.table else stem


@dataclass(frozen=True)
class RawRecord:
    location: str  # "line 17", "item 3", "row 5" or "file"
    number: int  # the line/item/row number, used in default conversation ids
    raw_sha256: str
    value: Any = None
    error: tuple[str, str] | None = None  # (reason, detail) when the bytes did not decode


def resolve_sources(paths: Sequence[str | Path] | str | Path) -> list[Source]:
    """Every source named by `paths`, checked and in reading order; raises `IngestError`.

    A directory contributes the supported files below it, sorted by path; hidden files and
    other extensions are skipped. The same file named twice is read once.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    sources: list[Source] = []
    for given in paths:
        sources.extend(_sources_for(str(given)))
    if not sources:
        raise IngestError("no input given")
    unique: dict[tuple[Path, str | None], Source] = {}
    for source in sources:
        unique.setdefault((source.path.resolve(), source.table), source)
    return list(unique.values())


def read_records(source: Source) -> Iterator[RawRecord]:
    """Yield one raw record per line (JSONL, CSV), item (JSON) or row (Parquet, DuckDB)."""
    if source.format in ("jsonl", "jsonl.gz"):
        yield from _read_jsonl(source)
    elif source.format == "json":
        yield from _read_json(source)
    elif source.format == "csv":
        yield from _read_csv(source)
    else:
        yield from _read_duckdb(source)


def _matching_suffix(name: str) -> str | None:
    lowered = name.lower()
    return next((s for s in FILE_FORMATS if lowered.endswith(s)), None)


def _sources_for(given: str) -> list[Source]:
    if TABLE_SEPARATOR in given:
        db_path, _, table = given.rpartition(TABLE_SEPARATOR)
        return [_duckdb_source(Path(db_path), table)]
    path = Path(given)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and _matching_suffix(p.name)
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise IngestError(
                f"directory {path} holds no readable files ({', '.join(FILE_FORMATS)})"
            )
        return [_file_source(p) for p in files]
    if path.name.lower().endswith(DUCKDB_SUFFIX):
        raise IngestError(f"name the table to read: {path}{TABLE_SEPARATOR}TABLE_NAME")
    return [_file_source(path)]


def _file_source(path: Path) -> Source:
    suffix = _matching_suffix(path.name)
    if suffix is None:
        raise IngestError(
            f"unsupported input {path}: expected one of {', '.join(FILE_FORMATS)} "
            f"or a DuckDB table as FILE{DUCKDB_SUFFIX}{TABLE_SEPARATOR}TABLE"
        )
    if not path.is_file():
        raise IngestError(f"input file not found: {path}")
    source = Source(path, FILE_FORMATS[suffix])
    if source.format == "jsonl.gz":
        with path.open("rb") as handle:
            if handle.read(2) not in (b"", b"\x1f\x8b"):
                raise IngestError(f"{path} is not gzip-compressed")
    elif source.format == "csv":
        _csv_header(path)
    elif source.format == "parquet":
        try:
            with duckdb.connect() as con:
                con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)])
        except duckdb.Error as exc:
            raise IngestError(f"cannot read Parquet file {path}: {exc}") from exc
    return source


def _duckdb_source(path: Path, table: str) -> Source:
    if not path.name.lower().endswith(DUCKDB_SUFFIX):
        raise IngestError(f"a table can only be read from a {DUCKDB_SUFFIX} file, not {path}")
    if not table:
        raise IngestError(f"empty table name in {path}{TABLE_SEPARATOR}")
    if not path.is_file():
        raise IngestError(f"DuckDB file not found: {path}")
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            con.execute(f"DESCRIBE SELECT * FROM {_quote_table(table)}")
    except duckdb.Error as exc:
        raise IngestError(f"cannot read table {table!r} from {path}: {exc}") from exc
    return Source(path, "duckdb", table)


def _quote_table(table: str) -> str:
    """`schema.table` -> `"schema"."table"`, so any name is safe to put in SQL."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in table.split("."))


def _canonical_hash(value: Any) -> str:
    """Hash of a row that has no raw bytes of its own (CSV, Parquet, DuckDB, JSON items)."""
    return raw_hash(json.dumps(value, ensure_ascii=False, sort_keys=True, default=str))


def _read_jsonl(source: Source) -> Iterator[RawRecord]:
    opener = gzip.open if source.format == "jsonl.gz" else open
    number = 0
    # Read bytes and decode per line, so one bad line costs one record, not the file.
    with opener(source.path, "rb") as handle:
        try:
            for number, line in enumerate(handle, 1):
                if number == 1:
                    line = line.removeprefix(b"\xef\xbb\xbf")  # UTF-8 byte order mark
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue  # blank lines separate records; they are not records
                yield _decode_json_line(line, number)
        except (OSError, EOFError, zlib.error) as exc:
            # A damaged gzip stream: the lines after `number` cannot be read.
            yield RawRecord(
                location=f"line {number + 1}",
                number=number + 1,
                raw_sha256=raw_hash(b""),
                error=(
                    "unreadable_file",
                    f"the rest of the file cannot be read ({type(exc).__name__})",
                ),
            )


def _decode_json_line(line: bytes, number: int) -> RawRecord:
    location, digest = f"line {number}", raw_hash(line)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f"not valid UTF-8 (first bad byte at offset {exc.start})"
        return RawRecord(location, number, digest, error=("invalid_utf8", detail))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"not valid JSON: {exc.msg} at column {exc.colno}"
        return RawRecord(location, number, digest, error=("invalid_json", detail))
    return RawRecord(location, number, digest, value=value)


def _read_json(source: Source) -> Iterator[RawRecord]:
    data = source.path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        detail = f"file is not valid UTF-8 (first bad byte at offset {exc.start})"
        yield RawRecord("file", 0, raw_hash(data), error=("invalid_utf8", detail))
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"file is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        yield RawRecord("file", 0, raw_hash(data), error=("invalid_json", detail))
        return
    if not isinstance(value, list):
        value = [value]  # a file holding one conversation object
    for number, item in enumerate(value, 1):
        yield RawRecord(f"item {number}", number, _canonical_hash(item), value=item)


def _open_csv(path: Path) -> io.TextIOWrapper:
    # Undecodable bytes become lone surrogates, found per row below (reason `invalid_utf8`).
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _csv_header(path: Path) -> list[str] | None:
    """The CSV header, checked; None for an empty file."""
    with _open_csv(path) as handle:
        try:
            header = next(csv.reader(handle, strict=True), None)
        except csv.Error as exc:
            raise IngestError(f"cannot read the CSV header of {path}: {exc}") from exc
    if header is None:
        return None
    if any(not name.strip() or _SURROGATE.search(name) for name in header):
        raise IngestError(f"CSV header of {path} has an empty or non-UTF-8 column name")
    if len(set(header)) != len(header):
        raise IngestError(f"CSV header of {path} repeats a column name")
    return header


def _read_csv(source: Source) -> Iterator[RawRecord]:
    """CSV with the standard library: duckdb's reader either fails on the whole file when one
    row is malformed (strict mode) or silently drops rows (strict_mode=false), and we need a
    quarantine record per bad row. Every value stays text; an empty field is read as null."""
    header = _csv_header(source.path)
    if header is None:
        return
    # Fields may hold whole conversations, longer than csv's default limit of 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    with _open_csv(source.path) as handle:
        reader = csv.reader(handle, strict=True)
        next(reader)
        while True:
            start = reader.line_num + 1
            location = f"line {start}"
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                error = ("invalid_csv", f"bad CSV: {exc}")
                yield RawRecord(location, start, raw_hash(b""), error=error)
                continue
            if not row:
                continue  # blank line
            digest = raw_hash(json.dumps(row, ensure_ascii=False))
            if len(row) != len(header):
                detail = f"row has {len(row)} fields, the header has {len(header)}"
                yield RawRecord(location, start, digest, error=("invalid_csv", detail))
            elif any(_SURROGATE.search(field) for field in row):
                detail = "row is not valid UTF-8"
                yield RawRecord(location, start, digest, error=("invalid_utf8", detail))
            else:
                value = {name: field or None for name, field in zip(header, row, strict=True)}
                yield RawRecord(location, start, digest, value=value)


def _read_duckdb(source: Source) -> Iterator[RawRecord]:
    """Parquet files and DuckDB tables, streamed in batches; each row becomes a dict."""
    if source.format == "parquet":
        con = duckdb.connect()
        query, params = "SELECT * FROM read_parquet(?)", [str(source.path)]
    else:
        con = duckdb.connect(str(source.path), read_only=True)
        query, params = f"SELECT * FROM {_quote_table(source.table or '')}", []
    number = 0
    with con:
        try:
            result = con.execute(query, params)
            columns = [column[0] for column in result.description or []]
            while batch := result.fetchmany(_FETCH_ROWS):
                for values in batch:
                    number += 1
                    row = dict(zip(columns, values, strict=True))
                    yield RawRecord(f"row {number}", number, _canonical_hash(row), value=row)
        except duckdb.Error as exc:
            yield RawRecord(
                location=f"row {number + 1}",
                number=number + 1,
                raw_sha256=raw_hash(b""),
                error=(
                    "unreadable_file",
                    f"the rest of the input cannot be read ({type(exc).__name__})",
                ),
            )
