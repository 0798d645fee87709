"""The released store's contract (`insights.duckdb`): what may leave the pipeline.

Everything in the released store is one of the rows below; the gate makes
cluster and breakdown rows, the flow makes the run row, `clio.release` writes
them (atomically, through `create_tables` and `create_views`), and `clio sql`
and `clio.web` read them (through `read_only_connect`). Analysts' SQL depends
on these names.

Tables (the contract; columns may be added, never renamed or dropped):
- `runs(run_id, started_at, finished_at, config_hash, min_users, min_conversations,
  n_input, n_quarantined, n_conversations, llm_calls, llm_cached_calls,
  input_tokens, output_tokens)` — times in UTC.
- `clusters(run_id, facet, level, cluster_id, parent_id, name, description,
  keywords, n_users, n_conversations, share, concern_mean, x, y)` — level 0 are
  base clusters, `parent_id` is NULL at the top, `keywords` is VARCHAR[].
- `facet_breakdowns(run_id, cluster_id, facet, value, n_users, n_conversations)`.
- `cluster_lineage(run_id, cluster_id, previous_run_id, previous_cluster_id, relation)` —
  each released cluster of a run and the released cluster of the run before it that it
  descends from: `kept` (the same id), `split` (split off it) or `merged` (it merged
  into this one). Written by the gate; both sides are released clusters.

Views: `top_clusters`, `cluster_languages`, `concerning_clusters`,
`latest_run_clusters`, `run_changes` (see `_VIEWS`; each carries a COMMENT,
readable with `SELECT view_name, comment FROM duckdb_views()`).

A row type holds its table's columns in the table's order, but for the
`run_id` of clusters and breakdowns: those rows are made, written and read one
run at a time, so their run is the context (the run row's `run_id` when
written, the query's when read), not a field of each row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class RunRow:
    """A row of `runs`: one released run."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    config_hash: str
    min_users: int
    min_conversations: int
    n_input: int
    n_quarantined: int
    n_conversations: int
    llm_calls: int
    llm_cached_calls: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ClusterNode:
    """A described node of a facet's cluster tree: what a released cluster row begins with.

    The private store keeps the same node with a centroid (`clio.store.BuildNode`)
    so an incremental run can extend a built tree. A field added here is added
    to both, and is a new column of `clusters` (which may gain columns, never
    lose or rename them).
    """

    facet: str
    level: int
    cluster_id: str
    parent_id: str | None
    name: str
    description: str
    keywords: list[str]


@dataclass(frozen=True)
class ReleasedCluster(ClusterNode):
    """A row of `clusters` without its `run_id`: the node, its counts and its map position."""

    n_users: int
    n_conversations: int
    share: float
    concern_mean: float | None
    x: float | None
    y: float | None


@dataclass(frozen=True)
class ReleasedBreakdown:
    """A row of `facet_breakdowns` without its `run_id`."""

    cluster_id: str
    facet: str
    value: str
    n_users: int
    n_conversations: int


@dataclass(frozen=True)
class ReleasedLineage:
    """A row of `cluster_lineage` without its `run_id`."""

    cluster_id: str
    previous_run_id: str
    previous_cluster_id: str
    relation: str  # kept, split or merged (`clio.lineage.RELATIONS`)


def _columns(row_type: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(row_type))


# Facets the released store gives a meaning of their own: `concern_mean` is the mean
# of CONCERN_FACET's 1-5 scores, and a cluster is "concerning" from CONCERNING_AT up.
CONCERN_FACET = "concerning"
LANGUAGE_FACET = "language"
CONCERNING_AT = 3.0

RUNS_COLUMNS = _columns(RunRow)
CLUSTERS_COLUMNS = ("run_id", *_columns(ReleasedCluster))
BREAKDOWNS_COLUMNS = ("run_id", *_columns(ReleasedBreakdown))
LINEAGE_COLUMNS = ("run_id", *_columns(ReleasedLineage))
TABLE_COLUMNS = {
    "runs": RUNS_COLUMNS,
    "clusters": CLUSTERS_COLUMNS,
    "facet_breakdowns": BREAKDOWNS_COLUMNS,
    "cluster_lineage": LINEAGE_COLUMNS,
}
TABLES = tuple(TABLE_COLUMNS)
# What a file needs to be read as a release: a store written before `cluster_lineage`
# existed is still one (it gains the table at its next release).
REQUIRED_TABLES = ("runs", "clusters", "facet_breakdowns")
VIEWS = (
    "top_clusters",
    "cluster_languages",
    "concerning_clusters",
    "latest_run_clusters",
    "run_changes",
)

_TABLES = """
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    config_hash VARCHAR NOT NULL,
    min_users INTEGER NOT NULL,
    min_conversations INTEGER NOT NULL,
    n_input BIGINT NOT NULL,
    n_quarantined BIGINT NOT NULL,
    n_conversations BIGINT NOT NULL,
    llm_calls BIGINT NOT NULL,
    llm_cached_calls BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL
);
CREATE TABLE clusters (
    run_id VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    level INTEGER NOT NULL,
    cluster_id VARCHAR NOT NULL,
    parent_id VARCHAR,
    name VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    keywords VARCHAR[] NOT NULL,
    n_users BIGINT NOT NULL,
    n_conversations BIGINT NOT NULL,
    share DOUBLE NOT NULL,
    concern_mean DOUBLE,
    x DOUBLE,
    y DOUBLE,
    PRIMARY KEY (run_id, cluster_id)
);
CREATE TABLE facet_breakdowns (
    run_id VARCHAR NOT NULL,
    cluster_id VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    n_users BIGINT NOT NULL,
    n_conversations BIGINT NOT NULL,
    PRIMARY KEY (run_id, cluster_id, facet, value)
);
CREATE TABLE cluster_lineage (
    run_id VARCHAR NOT NULL,
    cluster_id VARCHAR NOT NULL,
    previous_run_id VARCHAR NOT NULL,
    previous_cluster_id VARCHAR NOT NULL,
    relation VARCHAR NOT NULL,
    PRIMARY KEY (run_id, cluster_id, previous_cluster_id)
);
"""

# `run_changes` compares each run with the run that finished before it, cluster
# id by cluster id (ids recur across runs; a name may differ between runs, so
# both names are given).
_VIEWS = f"""
CREATE VIEW top_clusters AS
SELECT run_id, facet, level, cluster_id, parent_id, name, description, keywords,
       n_users, n_conversations, share, concern_mean,
       row_number() OVER (
           PARTITION BY run_id, facet, level ORDER BY n_users DESC, n_conversations DESC, cluster_id
       ) AS rank
FROM clusters
ORDER BY run_id, facet, level, rank;

CREATE VIEW cluster_languages AS
SELECT b.run_id, c.facet AS cluster_facet, c.level, b.cluster_id, c.name AS cluster_name,
       b.value AS language, b.n_users, b.n_conversations,
       b.n_conversations / c.n_conversations AS share_of_cluster
FROM facet_breakdowns AS b
JOIN clusters AS c ON c.run_id = b.run_id AND c.cluster_id = b.cluster_id
WHERE b.facet = '{LANGUAGE_FACET}'
ORDER BY b.run_id, b.cluster_id, b.n_conversations DESC, language;

CREATE VIEW concerning_clusters AS
SELECT run_id, facet, level, cluster_id, parent_id, name, description, keywords,
       n_users, n_conversations, share, concern_mean
FROM clusters
WHERE concern_mean >= {CONCERNING_AT:g}
ORDER BY concern_mean DESC, n_users DESC, run_id, cluster_id;

CREATE VIEW latest_run_clusters AS
SELECT run_id, facet, level, cluster_id, parent_id, name, description, keywords,
       n_users, n_conversations, share, concern_mean, x, y
FROM clusters
WHERE run_id = (SELECT run_id FROM runs ORDER BY finished_at DESC, run_id DESC LIMIT 1)
ORDER BY facet, level, cluster_id;

CREATE VIEW run_changes AS
WITH ordered AS (
    SELECT run_id, lag(run_id) OVER (ORDER BY finished_at, run_id) AS previous_run_id
    FROM runs
),
pairs AS (
    SELECT run_id, previous_run_id FROM ordered WHERE previous_run_id IS NOT NULL
),
now AS (
    SELECT p.run_id, p.previous_run_id, c.facet, c.level, c.cluster_id, c.name,
           c.n_users, c.n_conversations, c.share, c.concern_mean
    FROM pairs AS p JOIN clusters AS c ON c.run_id = p.run_id
),
before AS (
    SELECT p.run_id, p.previous_run_id, c.facet, c.level, c.cluster_id, c.name,
           c.n_users, c.n_conversations, c.share, c.concern_mean
    FROM pairs AS p JOIN clusters AS c ON c.run_id = p.previous_run_id
)
SELECT coalesce(now.run_id, before.run_id) AS run_id,
       coalesce(now.previous_run_id, before.previous_run_id) AS previous_run_id,
       coalesce(now.facet, before.facet) AS facet,
       coalesce(now.level, before.level) AS level,
       coalesce(now.cluster_id, before.cluster_id) AS cluster_id,
       CASE WHEN before.cluster_id IS NULL AND split.cluster_id IS NOT NULL THEN 'split'
            WHEN before.cluster_id IS NULL THEN 'new'
            WHEN now.cluster_id IS NULL AND merged.cluster_id IS NOT NULL THEN 'merged'
            WHEN now.cluster_id IS NULL THEN 'gone'
            ELSE 'kept' END AS status,
       CASE WHEN before.cluster_id IS NULL THEN split.previous_cluster_id
            WHEN now.cluster_id IS NULL THEN merged.cluster_id END AS related_cluster_id,
       now.name AS name,
       before.name AS previous_name,
       now.n_users AS n_users,
       before.n_users AS previous_n_users,
       coalesce(now.n_users, 0) - coalesce(before.n_users, 0) AS n_users_change,
       now.n_conversations AS n_conversations,
       before.n_conversations AS previous_n_conversations,
       coalesce(now.n_conversations, 0) - coalesce(before.n_conversations, 0)
           AS n_conversations_change,
       now.share AS share,
       before.share AS previous_share,
       coalesce(now.share, 0) - coalesce(before.share, 0) AS share_change,
       now.concern_mean AS concern_mean,
       before.concern_mean AS previous_concern_mean,
       now.concern_mean - before.concern_mean AS concern_change
FROM now
FULL OUTER JOIN before
    ON now.run_id = before.run_id AND now.cluster_id = before.cluster_id
       AND now.facet = before.facet
LEFT JOIN (
    SELECT run_id, cluster_id, min(previous_cluster_id) AS previous_cluster_id
    FROM cluster_lineage WHERE relation = 'split' GROUP BY run_id, cluster_id
) AS split ON split.run_id = now.run_id AND split.cluster_id = now.cluster_id
LEFT JOIN (
    SELECT run_id, previous_cluster_id, min(cluster_id) AS cluster_id
    FROM cluster_lineage WHERE relation = 'merged' GROUP BY run_id, previous_cluster_id
) AS merged ON merged.run_id = before.run_id AND merged.previous_cluster_id = before.cluster_id
ORDER BY run_id, facet, level, abs(n_users_change) DESC, cluster_id
"""

_COMMENTS = {
    ("VIEW", "run_changes"): "Each run against the run that finished before it, per cluster "
    "id (ids follow a cluster across rebuilds, see cluster_lineage): status 'kept' (released "
    "in both), 'new' (released now, not before), 'split' (new, split off the previous run's "
    "related_cluster_id), 'gone' (released before, not now: dropped by a rebuild or below "
    "the thresholds), 'merged' (gone, merged into this run's related_cluster_id); the "
    "figures of both runs and their change (now minus before; a missing side counts as 0 "
    "for sizes and NULL for concern). The first run has no rows.",
    ("TABLE", "cluster_lineage"): "Per run, each released cluster and the released cluster "
    "of the run before it that it descends from: relation 'kept' (the same cluster, same "
    "id: an incremental run, or a rebuild that matched it), 'split' (this cluster split off "
    "the previous one) or 'merged' (the previous one merged into this one). Both sides are "
    "released clusters; a split or merge is shown only when the conversations the two "
    "share reach the thresholds.",
    ("TABLE", "runs"): "One row per released run: when, with which config and thresholds, "
    "input counts and LLM usage. Times are UTC.",
    ("TABLE", "clusters"): "Released clusters of every run: one tree per facet (level 0 = base "
    "clusters, parent_id NULL at the top). Every row has at least min_users distinct users and "
    "min_conversations conversations.",
    ("TABLE", "facet_breakdowns"): "Per released cluster, counts of a facet's values (e.g. "
    "language, concern level); small cells are suppressed.",
    ("COLUMN", "clusters.keywords"): "Distinctive keywords (class-based TF-IDF, counted by "
    "distinct users).",
    ("COLUMN", "clusters.share"): "n_conversations / the distinct conversations of the facet's "
    "top clusters (a set union: a list facet's conversation counts once).",
    ("COLUMN", "clusters.concern_mean"): "Mean of the `concerning` facet (1-5) over the "
    "cluster's RELEASED `concerning` breakdown cells (each cell's value weighted by its "
    "n_conversations), so it never reveals a suppressed cell; NULL when no cell is released. "
    "Under differential privacy, the noisy mean over members.",
    ("COLUMN", "clusters.x"): "2-D map position: base clusters by UMAP of their centroids, "
    "centred and scaled on the released base clusters of the facet; a parent at the mean of "
    "its released base clusters weighted by their n_conversations (NULL when none is released).",
    ("COLUMN", "clusters.y"): "2-D map position (see x).",
    ("COLUMN", "clusters.cluster_id"): "<facet>-L<level>-<keyed hash of the cluster's lineage "
    "root>: stable across the incremental runs of one build and across the full runs and "
    "rebuilds that match the cluster to the previous build's, new otherwise, and without "
    "positional numbers (so no gaps show what was suppressed).",
    ("COLUMN", "clusters.n_users"): "Distinct users. A figure changes between runs only by at "
    "least min_users users and min_conversations conversations; a smaller change keeps the "
    "previous release's figure.",
    ("VIEW", "top_clusters"): "Clusters per run, facet and level, largest first by distinct "
    "users; `rank` is 1 for the largest.",
    ("VIEW", "cluster_languages"): "Language breakdown of each cluster (facet_breakdowns where "
    "facet = 'language'), with the cluster's name and the language's share of it.",
    ("VIEW", "concerning_clusters"): "Clusters whose mean concern score is 3 or more, most "
    "concerning first.",
    ("VIEW", "latest_run_clusters"): "Clusters of the most recently finished run.",
}


@dataclass(frozen=True)
class PreviousRelease:
    """What earlier runs released of one run's clusters: for each cluster id, its row in
    the latest earlier run that released it, and that run's breakdown cells of it."""

    clusters: dict[str, ReleasedCluster]  # cluster id -> its latest earlier row
    run_of: dict[str, str]  # cluster id -> the run that row is from
    cells: dict[tuple[str, str, str], ReleasedBreakdown]  # (cluster id, facet, value)
    # earlier run id -> the rows and cells it released of these ids, their children and
    # the facets' top clusters: the wholes and parts an analyst subtracts in that run
    runs: dict[str, tuple[list[ReleasedCluster], list[ReleasedBreakdown]]] = field(
        default_factory=dict
    )

    @classmethod
    def empty(cls) -> PreviousRelease:
        return cls({}, {}, {})


def facet_total(rows: Sequence[ReleasedCluster], facet: str) -> int | None:
    """The denominator of the facet's `share`, as an analyst recovers it (n / share)."""
    totals = [round(c.n_conversations / c.share) for c in rows if c.facet == facet and c.share]
    return max(totals) if totals else None


def previous_release(path: Path, cluster_ids: Sequence[str], run_id: str) -> PreviousRelease:
    """The latest earlier release of each of `cluster_ids` (runs other than `run_id`, by
    `finished_at`) from the released store at `path`, read-only; empty when there is none.
    With them come the rows their runs showed beside them that this run may not have (a
    new build can drop a cluster): the children of each and the facet's top clusters."""
    if not Path(path).is_file() or not cluster_ids:
        return PreviousRelease.empty()
    names = ", ".join(f"c.{c}" for c in CLUSTERS_COLUMNS[1:])
    connection = read_only_connect(Path(path))
    try:
        rows = connection.execute(
            f"SELECT c.run_id, {names} FROM clusters AS c JOIN runs AS r USING (run_id) "
            "WHERE c.run_id <> $1 AND c.cluster_id IN (SELECT unnest($2::VARCHAR[])) "
            "QUALIFY row_number() OVER (PARTITION BY c.cluster_id "
            "ORDER BY r.finished_at DESC, r.run_id DESC) = 1",
            [run_id, list(cluster_ids)],
        ).fetchall()
        run_of = {row[3]: row[0] for row in rows}
        beside = connection.execute(
            f"SELECT c.run_id, {names} FROM clusters AS c "
            "JOIN (SELECT unnest($1::VARCHAR[]) AS run_id, unnest($2::VARCHAR[]) AS parent) AS f "
            "ON c.run_id = f.run_id AND (c.parent_id = f.parent OR c.parent_id IS NULL)",
            [list(run_of.values()), list(run_of)],
        ).fetchall()
        for row in beside:
            if row[3] not in run_of:
                rows.append(row)
                run_of[row[3]] = row[0]
        cells = connection.execute(
            f"SELECT run_id, {', '.join(BREAKDOWNS_COLUMNS[1:])} FROM facet_breakdowns "
            "WHERE run_id <> $1 AND cluster_id IN (SELECT unnest($2::VARCHAR[]))",
            [run_id, list(run_of)],
        ).fetchall()
        past_rows = connection.execute(
            f"SELECT run_id, {names.replace('c.', '')} FROM clusters WHERE run_id <> $1 AND "
            "(cluster_id IN (SELECT unnest($2::VARCHAR[])) "
            "OR parent_id IN (SELECT unnest($2::VARCHAR[])) OR parent_id IS NULL)",
            [run_id, list(run_of)],
        ).fetchall()
        past_cells = connection.execute(
            f"SELECT run_id, {', '.join(BREAKDOWNS_COLUMNS[1:])} FROM facet_breakdowns "
            "WHERE run_id <> $1 AND cluster_id IN (SELECT unnest($2::VARCHAR[]))",
            [run_id, sorted({row[3] for row in past_rows})],
        ).fetchall()
    finally:
        connection.close()
    clusters = {row[3]: ReleasedCluster(*row[1:]) for row in rows}
    runs: dict[str, tuple[list[ReleasedCluster], list[ReleasedBreakdown]]] = {}
    for row in past_rows:
        runs.setdefault(row[0], ([], []))[0].append(ReleasedCluster(*row[1:]))
    for row in past_cells:
        runs.setdefault(row[0], ([], []))[1].append(ReleasedBreakdown(*row[1:]))
    return PreviousRelease(
        clusters,
        run_of,
        {(c[1], c[2], c[3]): ReleasedBreakdown(*c[1:]) for c in cells if run_of.get(c[1]) == c[0]},
        runs,
    )


def released_sizes(path: Path, run_id: str) -> dict[str, tuple[int, int]]:
    """Cluster id -> (level, n_users) of each cluster the run `run_id` released in the
    store at `path`."""
    if not Path(path).is_file():
        return {}
    connection = read_only_connect(Path(path))
    try:
        rows = connection.execute(
            "SELECT cluster_id, level, n_users FROM clusters WHERE run_id = ?", [run_id]
        ).fetchall()
    finally:
        connection.close()
    return {cid: (int(level), int(users)) for cid, level, users in rows}


def earlier_run_sizes(path: Path, run_id: str) -> set[int]:
    """The `n_conversations` of every run other than `run_id` in the released store."""
    if not Path(path).is_file():
        return set()
    connection = read_only_connect(Path(path))
    try:
        rows = connection.execute(
            "SELECT DISTINCT n_conversations FROM runs WHERE run_id <> ?", [run_id]
        ).fetchall()
    finally:
        connection.close()
    return {int(n) for (n,) in rows}


def previous_run(path: Path, run_id: str) -> RunRow | None:
    """The latest run other than `run_id` in the released store at `path`, if any."""
    if not Path(path).is_file():
        return None
    connection = read_only_connect(Path(path))
    try:
        row = connection.execute(
            f"SELECT {', '.join(RUNS_COLUMNS)} FROM runs WHERE run_id <> $1 "
            "ORDER BY finished_at DESC, run_id DESC LIMIT 1",
            [run_id],
        ).fetchone()
    finally:
        connection.close()
    return RunRow(*row) if row is not None else None


def create_tables(connection: duckdb.DuckDBPyConnection) -> None:
    """Create the three contract tables, empty, in a new database."""
    connection.execute(_TABLES)


def create_views(connection: duckdb.DuckDBPyConnection) -> None:
    """Create the views over the tables, then COMMENT every table, column and view."""
    connection.execute(_VIEWS)
    for (kind, name), text in _COMMENTS.items():
        connection.execute(f"COMMENT ON {kind} {name} IS {sql_string(text)}")


# Tables only the private store has (scrubbed conversations, the HMAC key): a file that has
# any of them is never read as a release, whichever command is given its path.
PRIVATE_TABLES = ("conversations", "secrets")


class NotAReleasedStore(ValueError):
    """The file is not a released store: the contract's tables are missing, or private ones
    are present."""


def read_only_connect(
    path: Path, writable: Path | None = None, settings: Mapping[str, str | int] | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the released store read-only, with file access disabled and the settings locked.

    This is the one way `clio sql`, `clio serve` and `clio export-html` open a store,
    so its check is the one that refuses the private store (or any file that is not a
    release) for all three: `NotAReleasedStore` unless the file has the contract's
    tables and none of `PRIVATE_TABLES`.

    `enable_external_access=false` refuses file functions (`read_csv`, …),
    ATTACH and COPY, so a query sees this store and nothing else on disk.
    `writable` names the one file a `COPY … TO` may still write (DuckDB's
    `allowed_paths`, which can only be set before file access is disabled).
    `settings` (e.g. `memory_limit`, `threads`) are applied before the
    configuration is locked, so no statement can change them afterwards.
    Open one connection per use and close it: DuckDB shares an open database
    between connections of one process, and a long-lived connection would keep
    reading the file that a later release replaced.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no released store at {path}")
    connection = duckdb.connect(str(path), read_only=True)
    try:
        _check_released(connection, path)
        statements = ["SET enable_progress_bar = false"]
        for name, value in (settings or {}).items():
            statements.append(f"SET {name} = {_setting(value)}")
        if writable is not None:
            statements.append(f"SET allowed_paths = [{sql_string(str(writable))}]")
        statements += ["SET enable_external_access = false", "SET lock_configuration = true"]
        for statement in statements:
            connection.execute(statement)
    except BaseException:
        connection.close()
        raise
    return connection


def _check_released(connection: duckdb.DuckDBPyConnection, path: Path) -> None:
    found = connection.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
    private = sorted({table for _, table in found if table in PRIVATE_TABLES})
    missing = [t for t in REQUIRED_TABLES if ("main", t) not in found]
    if private or missing:
        reason = (
            f"it holds private tables ({', '.join(private)})"
            if private
            else f"the tables {', '.join(missing)} are missing"
        )
        raise NotAReleasedStore(
            f"{path} is not a released store: {reason}; give the released store "
            "(insights.duckdb), never the private one"
        )


def _setting(value: str | int) -> str:
    return str(value) if isinstance(value, int) else sql_string(value)


def sql_string(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
