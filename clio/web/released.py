"""Read-only access to the released store (`insights.duckdb`) for the web page.

This is the only module under `clio/web` that opens a database, and it opens
only the file it is given, read-only, with DuckDB's file access disabled, and
only after checking that the file has the released store's tables. It reads
the contract tables `runs`, `clusters` and `facet_breakdowns`, nothing else.

One short-lived connection per call: DuckDB shares an open database between
connections of a process, and a long-lived connection would keep reading a
file that a later release replaced (`clio.release` swaps the file atomically).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

RELEASED_TABLES = ("runs", "clusters", "facet_breakdowns")
# The private store's raw-text table: a file that has it is never served.
_PRIVATE_MARKER_TABLE = "conversations"


class NotAReleasedStore(ValueError):
    """The file is missing, unreadable, or not a released store."""


@dataclass(frozen=True)
class Run:
    run_id: str
    started_at: datetime
    finished_at: datetime
    config_hash: str
    min_users: int
    min_conversations: int
    n_input: int
    n_quarantined: int
    n_conversations: int


@dataclass(frozen=True)
class ClusterRow:
    run_id: str
    facet: str
    level: int
    cluster_id: str
    parent_id: str | None
    name: str
    description: str
    keywords: tuple[str, ...]
    n_users: int
    n_conversations: int
    share: float
    concern_mean: float | None
    x: float | None
    y: float | None


@dataclass(frozen=True)
class BreakdownRow:
    cluster_id: str
    facet: str
    value: str
    n_users: int
    n_conversations: int


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


_RUN_COLUMNS = (
    "run_id, started_at, finished_at, config_hash, min_users, min_conversations, "
    "n_input, n_quarantined, n_conversations"
)
_CLUSTER_COLUMNS = (
    "run_id, facet, level, cluster_id, parent_id, name, description, keywords, "
    "n_users, n_conversations, share, concern_mean, x, y"
)
_BREAKDOWN_COLUMNS = "cluster_id, facet, value, n_users, n_conversations"


class ReleasedStore:
    """The released store at `path`, read on demand (never written)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_file():
            raise NotAReleasedStore(f"no released store at {self.path}")
        with self._connect() as connection:
            tables = {
                name
                for (name,) in connection.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
                ).fetchall()
            }
        missing = [t for t in RELEASED_TABLES if t not in tables]
        if missing or _PRIVATE_MARKER_TABLE in tables:
            raise NotAReleasedStore(
                f"{self.path} is not a released store (expected the tables "
                f"{', '.join(RELEASED_TABLES)}; found {', '.join(sorted(tables)) or 'none'})"
            )

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            connection = duckdb.connect(
                str(self.path), read_only=True, config={"enable_external_access": False}
            )
        except duckdb.Error as exc:
            raise NotAReleasedStore(f"cannot open {self.path} read-only: {exc}") from exc
        try:
            yield connection
        finally:
            connection.close()

    def runs(self) -> list[Run]:
        """Every released run, the latest first (the order `latest_run_clusters` uses)."""
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY finished_at DESC, run_id DESC"
            ).fetchall()
        return [Run(*row) for row in rows]

    def clusters(self, run_id: str) -> list[ClusterRow]:
        """Every released cluster of one run, by facet, level and id."""
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {_CLUSTER_COLUMNS} FROM clusters WHERE run_id = $1 "
                "ORDER BY facet, level, cluster_id",
                [run_id],
            ).fetchall()
        return [_cluster(row) for row in rows]

    def breakdowns(self, run_id: str, cluster_id: str | None = None) -> list[BreakdownRow]:
        """Breakdown cells of one run (of one cluster if given), largest first."""
        sql = f"SELECT {_BREAKDOWN_COLUMNS} FROM facet_breakdowns WHERE run_id = $1"
        params: list[str] = [run_id]
        if cluster_id is not None:
            sql += " AND cluster_id = $2"
            params.append(cluster_id)
        sql += " ORDER BY cluster_id, facet, n_conversations DESC, n_users DESC, value"
        with self._connect() as connection:
            rows = connection.execute(sql, params).fetchall()
        return [BreakdownRow(*row) for row in rows]

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


def _cluster(row: tuple) -> ClusterRow:
    values = list(row)
    values[7] = tuple(values[7] or ())
    return ClusterRow(*values)
