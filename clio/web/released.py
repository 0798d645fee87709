"""The web page's reader of the released store (`insights.duckdb`).

This is the only module under `clio/web` that opens a database, and it opens
only the file it is given, through `clio.released.read_only_connect`
(read-only, DuckDB's file access disabled), which refuses any file without
the released store's tables or with the private store's. It reads the
contract tables `runs`, `clusters` and `facet_breakdowns` into the contract's row
types, and the contract view `run_changes` (which reads `cluster_lineage`).

One short-lived connection per call: DuckDB shares an open database between
connections of a process, and a long-lived connection would keep reading a
file that a later release replaced (`clio.release` swaps the file atomically).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

import duckdb

from clio.released import (
    BREAKDOWNS_COLUMNS,
    CLUSTERS_COLUMNS,
    RUNS_COLUMNS,
    NotAReleasedStore,
    ReleasedBreakdown,
    ReleasedCluster,
    RunRow,
    read_only_connect,
)

__all__ = ["Change", "HistoryPoint", "NotAReleasedStore", "ReleasedStore"]

# The row types' columns: a cluster or breakdown row is read for one run, so without run_id.
_RUN_COLUMNS = ", ".join(RUNS_COLUMNS)
_CLUSTER_COLUMNS = ", ".join(CLUSTERS_COLUMNS[1:])
_BREAKDOWN_COLUMNS = ", ".join(BREAKDOWNS_COLUMNS[1:])


@dataclass(frozen=True)
class HistoryPoint:
    """One run's figures for a cluster id (ids can recur across runs)."""

    run_id: str
    finished_at: datetime
    name: str
    n_users: int
    n_conversations: int
    share: float
    concern_mean: float | None


@dataclass(frozen=True)
class Change:
    """A row of `run_changes`: one cluster of a run against the run before it."""

    facet: str
    level: int
    cluster_id: str
    status: str  # kept, new, split, gone, merged
    related_cluster_id: str | None
    name: str | None
    previous_name: str | None
    n_users: int | None
    previous_n_users: int | None
    n_users_change: int
    concern_mean: float | None
    concern_change: float | None


_CHANGE_COLUMNS = ", ".join(f.name for f in fields(Change))


class ReleasedStore:
    """The released store at `path`, read on demand (never written).

    Raises `NotAReleasedStore` (from `clio.released`) when the file is missing,
    unreadable or not a released store."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_file():
            raise NotAReleasedStore(f"no released store at {self.path}")
        with self._connect():  # refuses a file that is not a released store, now
            pass

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            connection = read_only_connect(self.path)
        except (duckdb.Error, FileNotFoundError) as exc:
            raise NotAReleasedStore(f"cannot open {self.path} read-only: {exc}") from exc
        try:
            yield connection
        finally:
            connection.close()

    def runs(self) -> list[RunRow]:
        """Every released run, the latest first (the order `latest_run_clusters` uses)."""
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY finished_at DESC, run_id DESC"
            ).fetchall()
        return [RunRow(*row) for row in rows]

    def clusters(self, run_id: str) -> list[ReleasedCluster]:
        """Every released cluster of one run, by facet, level and id."""
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {_CLUSTER_COLUMNS} FROM clusters WHERE run_id = $1 "
                "ORDER BY facet, level, cluster_id",
                [run_id],
            ).fetchall()
        return [ReleasedCluster(*row) for row in rows]

    def breakdowns(self, run_id: str, cluster_id: str | None = None) -> list[ReleasedBreakdown]:
        """Breakdown cells of one run (of one cluster if given), largest first."""
        sql = f"SELECT {_BREAKDOWN_COLUMNS} FROM facet_breakdowns WHERE run_id = $1"
        params: list[str] = [run_id]
        if cluster_id is not None:
            sql += " AND cluster_id = $2"
            params.append(cluster_id)
        sql += " ORDER BY cluster_id, facet, n_conversations DESC, n_users DESC, value"
        with self._connect() as connection:
            rows = connection.execute(sql, params).fetchall()
        return [ReleasedBreakdown(*row) for row in rows]

    def history(self, cluster_id: str | None = None) -> dict[str, list[HistoryPoint]]:
        """Per cluster id (or just the one given), its figures in every run, oldest run first."""
        sql = (
            "SELECT c.cluster_id, c.run_id, r.finished_at, c.name, c.n_users, "
            "c.n_conversations, c.share, c.concern_mean "
            "FROM clusters AS c JOIN runs AS r USING (run_id)"
        )
        params: list[str] = []
        if cluster_id is not None:
            sql += " WHERE c.cluster_id = $1"
            params.append(cluster_id)
        sql += " ORDER BY c.cluster_id, r.finished_at, c.run_id"
        history: dict[str, list[HistoryPoint]] = {}
        with self._connect() as connection:
            for row in connection.execute(sql, params).fetchall():
                history.setdefault(row[0], []).append(HistoryPoint(*row[1:]))
        return history

    def changes(self, run_id: str) -> tuple[str | None, list[Change]]:
        """The run against the run that finished before it (`run_changes`): that run's id
        (None for the first run) and a row per cluster released in either."""
        with self._connect() as connection:
            previous = connection.execute(
                "SELECT previous_run_id FROM run_changes WHERE run_id = $1 LIMIT 1", [run_id]
            ).fetchone()
            rows = connection.execute(
                f"SELECT {_CHANGE_COLUMNS} FROM run_changes WHERE run_id = $1 "
                "ORDER BY facet, level, abs(n_users_change) DESC, cluster_id",
                [run_id],
            ).fetchall()
        return (previous[0] if previous else None), [Change(*row) for row in rows]
