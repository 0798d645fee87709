"""The released store (`insights.duckdb`): aggregates only, written atomically.

`write_release` is the only code that writes it, and it accepts only a
`GateResult` sealed by `clio.gate.apply_gate` (privacy invariant 1; see `clio.gate.result`
for what the seal does and does not protect against). The store accumulates runs so a reader can
compare them; re-releasing a `run_id` replaces that run's rows.

The tables, views and row types are the contract in `clio.released`; this
module only builds a new file from them.

Atomicity: the new store is built in `insights.duckdb.tmp-<pid>` next to the
final path (previous runs copied in, this run added, views created,
CHECKPOINT, close, fsync), then `os.replace`d onto the final path. Readers see
either the previous file or the new one; a crash leaves the previous one
untouched. An exclusive lock (`insights.duckdb.lock`) serialises writers, so
any temp file found while holding it is left by a killed writer and removed.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from clio.gate import GateResult, check_seal
from clio.released import (
    REQUIRED_TABLES,
    RUNS_COLUMNS,
    TABLE_COLUMNS,
    ReleasedBreakdown,
    ReleasedCluster,
    ReleasedLineage,
    RunRow,
    create_tables,
    create_views,
    sql_string,
)


def write_release(path: Path, run: RunRow, gate: GateResult) -> None:
    """Add `run` and the gate's rows to the released store at `path`, atomically.

    Earlier runs are kept; rows of the same `run_id` are replaced. On any
    failure the temp file is removed and the previous store is untouched.
    Raises `clio.gate.UnsealedGateResult` for a result the gate did not seal, or whose
    rows changed since, before anything is written.
    """
    if not isinstance(gate, GateResult):
        raise TypeError(
            f"write_release accepts only a GateResult from clio.gate.apply_gate, "
            f"not {type(gate).__name__}"
        )
    check_seal(gate)
    if not isinstance(run, RunRow):
        raise TypeError(f"write_release needs a RunRow, not {type(run).__name__}")
    _validate(run, gate)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(path):
        _remove_stale_temp_files(path)
        temp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            connection = duckdb.connect(str(temp))
            try:
                connection.execute("SET enable_progress_bar = false")
                _build(connection, path, run, gate)
            finally:
                connection.close()
            _fsync(temp)
            os.replace(temp, path)
            _fsync(path.parent)
        except BaseException:
            _remove_temp(temp)
            raise


# -- building the new file ------------------------------------------------------


def _build(
    connection: duckdb.DuckDBPyConnection, previous: Path, run: RunRow, gate: GateResult
) -> None:
    create_tables(connection)
    if previous.exists():
        _copy_previous_runs(connection, previous, run.run_id)
    _insert_run(connection, run)
    _insert_rows(connection, "clusters", run.run_id, gate.clusters)
    _insert_rows(connection, "facet_breakdowns", run.run_id, gate.breakdowns)
    _insert_rows(connection, "cluster_lineage", run.run_id, gate.lineage)
    create_views(connection)
    connection.execute("CHECKPOINT")


def _copy_previous_runs(connection: duckdb.DuckDBPyConnection, previous: Path, run_id: str) -> None:
    try:
        connection.execute(f"ATTACH {sql_string(str(previous))} AS previous (READ_ONLY)")
    except duckdb.Error as exc:
        raise RuntimeError(f"cannot open the previous release {previous}: {exc}") from exc
    try:
        present = {
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'previous'"
            ).fetchall()
        }
        for table, columns in TABLE_COLUMNS.items():
            if table not in present and table not in REQUIRED_TABLES:
                continue  # a store written before the table existed
            names = ", ".join(columns)
            connection.execute(
                f"INSERT INTO main.{table} ({names}) SELECT {names} FROM previous.{table} "
                "WHERE run_id <> $1",
                [run_id],
            )
    except duckdb.Error as exc:
        raise RuntimeError(
            f"the previous release {previous} does not have the expected tables: {exc}"
        ) from exc
    finally:
        connection.execute("DETACH previous")


def _insert_run(connection: duckdb.DuckDBPyConnection, run: RunRow) -> None:
    values = [getattr(run, column) for column in RUNS_COLUMNS]
    values[1], values[2] = _utc(run.started_at), _utc(run.finished_at)
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    connection.execute(
        f"INSERT INTO runs ({', '.join(RUNS_COLUMNS)}) VALUES ({placeholders})", values
    )


# Rows go in column-wise through `unnest` of list parameters: DuckDB's
# executemany inserts one row per statement (~1,000 rows/s measured here).
def _insert_rows(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    run_id: str,
    rows: Sequence[ReleasedCluster] | Sequence[ReleasedBreakdown] | Sequence[ReleasedLineage],
) -> None:
    """Insert one run's rows into `table`: its run_id, then one list per contract column."""
    columns = TABLE_COLUMNS[table][1:]
    types = dict(
        connection.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND table_name = $1",
            [table],
        ).fetchall()
    )
    casts = ", ".join(f"unnest(${i}::{types[c]}[])" for i, c in enumerate(columns, start=2))
    values = [[_column_value(getattr(row, c)) for row in rows] for c in columns]
    connection.execute(f"INSERT INTO {table} SELECT $1, {casts}", [run_id, *values])


def _column_value(value: object) -> object:
    """A list column (keywords) goes in as a list, whatever sequence the row holds."""
    return list(value) if isinstance(value, tuple) else value


def _validate(run: RunRow, gate: GateResult) -> None:
    """Refuse rows the gate could not have produced for this run's thresholds."""
    ids: set[str] = set()
    for cluster in gate.clusters:
        if not isinstance(cluster, ReleasedCluster):
            raise TypeError(f"GateResult.clusters holds a {type(cluster).__name__}")
        if cluster.cluster_id in ids:
            raise ValueError(f"cluster {cluster.cluster_id!r} appears twice in the release")
        ids.add(cluster.cluster_id)
        if cluster.n_users < run.min_users or cluster.n_conversations < run.min_conversations:
            raise ValueError(
                f"cluster {cluster.cluster_id!r} is below the run's thresholds "
                f"(min_users={run.min_users}, min_conversations={run.min_conversations})"
            )
    for cluster in gate.clusters:
        if cluster.parent_id is not None and cluster.parent_id not in ids:
            raise ValueError(f"cluster {cluster.cluster_id!r} is released without its parent")
    for cell in gate.breakdowns:
        if not isinstance(cell, ReleasedBreakdown):
            raise TypeError(f"GateResult.breakdowns holds a {type(cell).__name__}")
        if cell.cluster_id not in ids:
            raise ValueError(f"breakdown of unreleased cluster {cell.cluster_id!r}")
        if cell.n_users < run.min_users or cell.n_conversations < run.min_conversations:
            raise ValueError(f"a breakdown cell of {cell.cluster_id!r} is below the thresholds")
    for link in gate.lineage:
        if not isinstance(link, ReleasedLineage):
            raise TypeError(f"GateResult.lineage holds a {type(link).__name__}")
        if link.cluster_id not in ids:
            raise ValueError(f"lineage of unreleased cluster {link.cluster_id!r}")


# -- files ------------------------------------------------------------------------


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path.with_name(f"{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_stale_temp_files(path: Path) -> None:
    """Temp files of writers that were killed; only called while holding the lock."""
    for stale in path.parent.glob(f"{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)


def _remove_temp(temp: Path) -> None:
    temp.unlink(missing_ok=True)
    temp.with_name(f"{temp.name}.wal").unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _utc(moment: datetime) -> datetime:
    """Naive UTC (the column type); a naive input is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
