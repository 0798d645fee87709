"""Every run of a released store, as an analyst with read access sees it.

The attacks work from the released store alone: this module reads its three tables
through `clio.released.read_only_connect` (read-only, no file access) into plain
rows, runs ordered as `run_changes` orders them (by `finished_at`, then `run_id`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from clio.released import (
    BREAKDOWNS_COLUMNS,
    CLUSTERS_COLUMNS,
    REQUIRED_TABLES,
    RUNS_COLUMNS,
    TABLE_COLUMNS,
    NotAReleasedStore,
    ReleasedBreakdown,
    ReleasedCluster,
    RunRow,
    read_only_connect,
)


@dataclass(frozen=True)
class Run:
    """One released run: its `runs` row, its clusters by id and their breakdown cells."""

    row: RunRow
    clusters: dict[str, ReleasedCluster] = field(default_factory=dict)
    cells: dict[str, list[ReleasedBreakdown]] = field(default_factory=dict)

    @property
    def min_users(self) -> int:
        return self.row.min_users

    @property
    def min_conversations(self) -> int:
        return self.row.min_conversations

    def children(self) -> dict[str, list[ReleasedCluster]]:
        """Parent id -> its released children (every released cluster's parent is released)."""
        out: dict[str, list[ReleasedCluster]] = defaultdict(list)
        for cluster in self.clusters.values():
            if cluster.parent_id is not None:
                out[cluster.parent_id].append(cluster)
        return out


def load_history(path: Path) -> list[Run]:
    """Every run of the released store at `path`, oldest first."""
    try:
        connection = read_only_connect(Path(path))
    except (FileNotFoundError, duckdb.Error) as exc:
        raise NotAReleasedStore(f"cannot open a released store at {path}: {exc}") from exc
    try:
        _check_contract(connection, path)
        runs = {
            row[0]: Run(RunRow(*row))
            for row in connection.execute(
                f"SELECT {', '.join(RUNS_COLUMNS)} FROM runs ORDER BY finished_at, run_id"
            ).fetchall()
        }
        for row in connection.execute(
            f"SELECT {', '.join(CLUSTERS_COLUMNS)} FROM clusters ORDER BY run_id, cluster_id"
        ).fetchall():
            cluster = ReleasedCluster(**dict(zip(CLUSTERS_COLUMNS[1:], row[1:], strict=True)))
            runs[row[0]].clusters[cluster.cluster_id] = cluster
        for row in connection.execute(
            f"SELECT {', '.join(BREAKDOWNS_COLUMNS)} FROM facet_breakdowns "
            "ORDER BY run_id, cluster_id, facet, value"
        ).fetchall():
            cell = ReleasedBreakdown(*row[1:])
            runs[row[0]].cells.setdefault(cell.cluster_id, []).append(cell)
    finally:
        connection.close()
    return list(runs.values())


def _check_contract(connection: duckdb.DuckDBPyConnection, path: Path) -> None:
    found: dict[str, set[str]] = defaultdict(set)
    for table, column in connection.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'main'"
    ).fetchall():
        found[table].add(column)
    for table in REQUIRED_TABLES:
        columns = TABLE_COLUMNS[table]
        missing = [c for c in columns if c not in found.get(table, set())]
        if missing:
            raise NotAReleasedStore(
                f"{path} is not a released store: table {table!r} lacks {', '.join(missing)}"
            )
