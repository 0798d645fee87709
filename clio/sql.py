"""Read-only SQL over the released store (`clio sql`).

The real guard is the connection: `clio.released.read_only_connect` opens the
store with `read_only=True` and file access disabled, so DuckDB itself refuses
writes, ATTACH, COPY and file functions. `write_parquet` allows exactly one
file, its output. The statement check below only gives a clear
message before DuckDB would refuse, using DuckDB's own parser.

Every query also runs within `QueryLimits` (memory, threads, spill disk, wall
time), set on the connection before its configuration is locked: a query that
would take the machine (a cross join of two large ranges, a huge sort) fails
with `LimitExceeded` instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb

from clio.released import read_only_connect, sql_string

Format = Literal["table", "csv", "json"]

# PRAGMAs that only read (DuckDB parses assignments such as `PRAGMA threads=4` as SET).
READ_PRAGMAS = frozenset(
    {
        "collations",
        "database_list",
        "database_size",
        "functions",
        "metadata_info",
        "platform",
        "show",
        "show_databases",
        "show_tables",
        "show_tables_expanded",
        "storage_info",
        "table_info",
        "user_agent",
        "version",
    }
)
_PRAGMA_NAME = re.compile(r"^\s*pragma\s+(\w+)", re.IGNORECASE)


class ReadOnlyError(ValueError):
    """A statement that could change the store (or reach outside it)."""


class LimitExceeded(RuntimeError):
    """A query stopped because it reached one of its `QueryLimits`."""


@dataclass(frozen=True)
class QueryLimits:
    """What one query may use, so a slow or hostile query fails rather than taking the
    machine: DuckDB's `memory_limit` and `threads`, the disk it may spill to, and the
    wall-clock time after which the query is interrupted.

    `max_temp_size` None means no spilling at all: DuckDB would otherwise write
    temporary files beside the store. With a size, it spills into a fresh private
    directory in the system's temporary directory (mode 0700), removed afterwards.
    """

    memory_limit: str = "1GB"
    threads: int = 2
    max_temp_size: str | None = None
    timeout_seconds: float = 60.0


DEFAULT_LIMITS = QueryLimits()


@contextmanager
def limited_connection(
    db: Path, limits: QueryLimits, writable: Path | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the released store bounded by `limits`; a query that
    reaches one raises `LimitExceeded`."""
    spill = None if limits.max_temp_size is None else tempfile.mkdtemp(prefix="clio-sql-")
    settings: dict[str, str | int] = {
        "memory_limit": limits.memory_limit,
        "threads": limits.threads,
        "temp_directory": spill or "",
        "max_temp_directory_size": limits.max_temp_size or "0B",
    }
    try:
        connection = read_only_connect(db, writable=writable, settings=settings)
    except BaseException:
        if spill:
            shutil.rmtree(spill, ignore_errors=True)
        raise
    # DuckDB stops a running query (and its fetch) on interrupt(), from any thread.
    timer = threading.Timer(limits.timeout_seconds, connection.interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield connection
    except duckdb.InterruptException as exc:
        raise LimitExceeded(
            f"the query was stopped after {limits.timeout_seconds:g} s (--timeout)"
        ) from exc
    except duckdb.OutOfMemoryException as exc:
        disk = f"--max-temp-size {limits.max_temp_size}" if spill else "no spilling to disk"
        raise LimitExceeded(
            f"the query needs more than --memory-limit {limits.memory_limit} ({disk}): "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    finally:
        timer.cancel()
        timer.join()
        connection.close()
        if spill:
            shutil.rmtree(spill, ignore_errors=True)


def check_read_only(sql: str) -> None:
    """Raise ReadOnlyError unless `sql` is one SELECT/WITH/DESCRIBE/SHOW/read-PRAGMA statement."""
    statements = duckdb.extract_statements(sql)
    if not statements:
        raise ValueError("empty query")
    for statement in statements:
        _check_statement(statement)
    if len(statements) > 1:
        raise ValueError(f"clio sql runs one statement at a time; got {len(statements)}")


def _check_statement(statement: duckdb.Statement) -> None:
    if statement.type == duckdb.StatementType.SELECT:  # also WITH, DESCRIBE, SHOW, SUMMARIZE
        return
    if statement.type == duckdb.StatementType.PRAGMA:
        match = _PRAGMA_NAME.match(statement.query)
        if match and match.group(1).lower() in READ_PRAGMAS:
            return
        raise ReadOnlyError(
            "the released store is read-only: only PRAGMAs that read are allowed "
            f"({', '.join(sorted(READ_PRAGMAS))})"
        )
    raise ReadOnlyError(
        f"the released store is read-only: {statement.type.name} statements are refused; "
        "use SELECT, WITH, DESCRIBE, SHOW or a PRAGMA that reads"
    )


def run_query(
    db: Path, sql: str, limits: QueryLimits = DEFAULT_LIMITS
) -> tuple[list[str], list[tuple]]:
    """Run one read-only statement against the released store; return (columns, rows)."""
    check_read_only(sql)
    with limited_connection(Path(db), limits) as connection:
        cursor = connection.execute(sql)
        columns = [column[0] for column in cursor.description or []]
        rows = cursor.fetchall()
    return columns, rows


def write_parquet(db: Path, sql: str, out_path: Path, limits: QueryLimits = DEFAULT_LIMITS) -> int:
    """Run one read-only query and write its result to `out_path` as Parquet; return the row count.

    DuckDB writes the file itself (`COPY (query) TO ... (FORMAT parquet)`, which a
    read-only database allows). The connection may write only a temp file beside
    `out_path` (`allowed_paths`), and file access is disabled before the query
    runs, so the query still sees this store and nothing else. The temp file is
    renamed onto `out_path` only when complete.
    """
    check_read_only(sql)
    (statement,) = duckdb.extract_statements(sql)
    if statement.type != duckdb.StatementType.SELECT:
        raise ValueError("--format parquet takes a query (SELECT, WITH, FROM, DESCRIBE, SHOW)")
    db, out_path = Path(db), Path(out_path)
    if not db.is_file():
        raise FileNotFoundError(f"no released store at {db}")
    if out_path.resolve() == db.resolve():
        raise ValueError("the Parquet file cannot replace the released store")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    query = statement.query.strip().rstrip(";")
    try:
        with limited_connection(db, limits, writable=temp) as connection:
            # The newline ends a trailing `--` comment inside the query.
            (count,) = connection.execute(
                f"COPY (\n{query}\n) TO {sql_string(str(temp))} (FORMAT parquet)"
            ).fetchone() or (0,)
        os.replace(temp, out_path)
    finally:
        temp.unlink(missing_ok=True)
    return int(count)


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: Format) -> str:
    """Render a result as an aligned text table, CSV (with header) or a JSON array of objects.

    NULL is `NULL` in a table, an empty field in CSV and `null` in JSON. No
    trailing newline.
    """
    if fmt == "table":
        return _table(columns, rows)
    if fmt == "csv":
        return _csv(columns, rows)
    if fmt == "json":
        return _json(columns, rows)
    raise ValueError(f"unknown format {fmt!r}; use table, csv or json")


# A small hand-written table: the venv has no tabulate-like package, and rich's
# tables wrap to the terminal width, which breaks exact, pipe-able output.
def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    header = [_one_line(str(c)) for c in columns]
    cells = [[_one_line(_text(v)) for v in row] for row in rows]
    widths = [max([len(header[i])] + [len(row[i]) for row in cells]) for i in range(len(header))]
    # Numbers align right, like psql; a column of NULLs only stays left-aligned.
    present = [[row[i] for row in rows if row[i] is not None] for i in range(len(header))]
    numeric = [bool(values) and all(_is_number(v) for v in values) for values in present]

    def line(values: Sequence[str], align: Sequence[bool]) -> str:
        padded = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, align, strict=True)
        ]
        return " | ".join(padded).rstrip()

    lines = [line(header, [False] * len(header)), "-+-".join("-" * w for w in widths)]
    lines += [line(row, numeric) for row in cells]
    lines.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(lines)


def _csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else _csv_text(v) for v in row])
    return buffer.getvalue().rstrip("\n")


def _json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    keys = _unique_names(columns)
    records = [
        {key: _jsonable(value) for key, value in zip(keys, row, strict=True)} for row in rows
    ]
    return json.dumps(records, ensure_ascii=False, indent=2, allow_nan=False)


def _text(value: Any) -> str:
    """A value as DuckDB's own CLI would show it, roughly."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _csv_text(value: Any) -> str:
    if isinstance(value, list | tuple | dict):
        return json.dumps(_jsonable(value), ensure_ascii=False)
    return _text(value)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _unique_names(columns: Sequence[str]) -> list[str]:
    """Column names as JSON keys; a repeated name gets `_2`, `_3`, … so no value is lost."""
    seen: dict[str, int] = {}
    names = []
    for column in columns:
        seen[column] = seen.get(column, 0) + 1
        names.append(column if seen[column] == 1 else f"{column}_{seen[column]}")
    return names
