"""The private store: scrubbed conversations, facets, caches, quarantine.

One DuckDB file per output directory (`DIR/private.duckdb`). It is never
served or exported. One process writes it (the run); every write is a small
transaction, so a killed run leaves whole rows only and a re-run resumes from
the caches.

Only its owner can read it: its directory is 0700 and its files 0600. The
directory is what protects the files DuckDB creates on its own (the WAL, a
temporary spill directory) with the process umask, and shards that worker
processes write; the store's own file, and the WAL when present, are also
chmod'ed 0600 on open and close. No process umask is set, since the released
store and manifest written by the same process must stay readable.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np

from clio.lineage import Link, Root
from clio.records import Cluster, FacetValue, Message, QuarantineRecord, ScrubbedConversation
from clio.released import ClusterNode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id VARCHAR PRIMARY KEY,
    user_pseudonym VARCHAR NOT NULL,
    timestamp TIMESTAMP,
    source VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    messages JSON NOT NULL,
    n_pii_spans INTEGER NOT NULL,
    truncated BOOLEAN NOT NULL,
    first_run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    run_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    location VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    raw_sha256 VARCHAR NOT NULL,
    conversation_id VARCHAR
);
CREATE TABLE IF NOT EXISTS facets (
    conversation_id VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    value JSON,
    status VARCHAR NOT NULL,
    error VARCHAR,
    PRIMARY KEY (conversation_id, facet)
);
CREATE TABLE IF NOT EXISTS embedding_cache (
    model VARCHAR NOT NULL,
    text_sha256 VARCHAR NOT NULL,
    vector FLOAT[] NOT NULL,
    PRIMARY KEY (model, text_sha256)
);
CREATE TABLE IF NOT EXISTS llm_cache (
    cache_key VARCHAR PRIMARY KEY,
    backend VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    response JSON NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS assignments (
    run_id VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    conversation_id VARCHAR NOT NULL,
    cluster_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_members (
    run_id VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    level INTEGER NOT NULL,
    cluster_id VARCHAR NOT NULL,
    conversation_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
    name VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS dp_ledger (
    run_id VARCHAR PRIMARY KEY,
    epsilon DOUBLE NOT NULL,
    delta DOUBLE NOT NULL,
    recorded_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS builds (
    build_id VARCHAR PRIMARY KEY,
    tree_digest VARCHAR NOT NULL,
    built_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS build_nodes (
    build_id VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    level INTEGER NOT NULL,
    cluster_id VARCHAR NOT NULL,
    parent_id VARCHAR,
    name VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    keywords JSON NOT NULL,
    x DOUBLE,
    y DOUBLE,
    centroid FLOAT[],
    PRIMARY KEY (build_id, cluster_id)
);
CREATE TABLE IF NOT EXISTS build_seeds (
    build_id VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    seed_index INTEGER NOT NULL,
    centroid FLOAT[] NOT NULL,
    PRIMARY KEY (build_id, facet, seed_index)
);
CREATE TABLE IF NOT EXISTS build_conversations (
    build_id VARCHAR NOT NULL,
    conversation_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (build_id, conversation_id)
);
CREATE TABLE IF NOT EXISTS lineage (
    build_id VARCHAR NOT NULL,
    previous_build_id VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    level INTEGER NOT NULL,
    cluster_id VARCHAR NOT NULL,
    previous_cluster_id VARCHAR NOT NULL,
    relation VARCHAR NOT NULL,
    overlap DOUBLE NOT NULL,
    n_shared_conversations INTEGER NOT NULL,
    n_shared_users INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lineage_roots (
    build_id VARCHAR NOT NULL,
    cluster_id VARCHAR NOT NULL,
    root_build_id VARCHAR NOT NULL,
    root_cluster_id VARCHAR NOT NULL,
    previous_build_id VARCHAR,
    PRIMARY KEY (build_id, cluster_id)
);
CREATE TABLE IF NOT EXISTS unassigned (
    build_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    conversation_id VARCHAR NOT NULL,
    distance DOUBLE NOT NULL
);
"""

# Tables a partition shard may hold, merged into the main store by the one writer.
_SHARD_MERGE = {
    "conversations": "INSERT INTO conversations SELECT * FROM shard.conversations "
    "ON CONFLICT (conversation_id) DO UPDATE SET "
    "user_pseudonym = excluded.user_pseudonym, timestamp = excluded.timestamp, "
    "source = excluded.source, content_hash = excluded.content_hash, "
    "messages = excluded.messages, n_pii_spans = excluded.n_pii_spans, "
    "truncated = excluded.truncated",
    "facets": "INSERT OR REPLACE INTO facets SELECT * FROM shard.facets",
    "embedding_cache": "INSERT OR IGNORE INTO embedding_cache SELECT * FROM shard.embedding_cache",
    "llm_cache": "INSERT OR REPLACE INTO llm_cache SELECT * FROM shard.llm_cache",
}


@dataclass(frozen=True)
class BuildNode(ClusterNode):
    """One node of a full build's tree, kept so incremental runs can extend it."""

    x: float | None
    y: float | None
    centroid: np.ndarray | None  # base clusters only: unit-length mean of member vectors


@dataclass(frozen=True)
class BuildLineage:
    """A build's lineage: its links to the previous build and every node's root."""

    previous_build_id: str | None  # None: the first build, nothing to match
    links: list[Link]
    roots: dict[str, Root]


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create the directory `path` for its owner only (0700), tightening it if it exists
    (a directory an older version made 0755)."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)


class PrivateStore:
    """Thread-safe wrapper over the private DuckDB file (one connection, one lock)."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        """`read_only` opens an existing store for reading; several processes may do so at
        once (partition tasks), but none while a process holds it open for writing."""
        self.path = Path(path)
        self._lock = threading.RLock()
        self._writable = not read_only
        if read_only:
            self._con = duckdb.connect(str(self.path), read_only=True)
            return
        make_private_dir(self.path.parent)
        self._con = duckdb.connect(str(self.path))
        self._con.execute(_SCHEMA)
        self._restrict_files()

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._con.close()
            if self._writable:
                self._restrict_files()

    def _restrict_files(self) -> None:
        """The store's file and its WAL (DuckDB creates both with the process umask) 0600."""
        for path in (self.path, self.path.with_name(self.path.name + ".wal")):
            if path.exists():
                os.chmod(path, PRIVATE_FILE_MODE)

    def __enter__(self) -> PrivateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self._lock:
            return self._con.execute(sql, params or []).fetchall()

    # -- secrets ---------------------------------------------------------
    def get_or_create_secret(self, name: str) -> str:
        """A random secret created once and kept in the private store."""
        with self._lock:
            row = self._con.execute("SELECT value FROM secrets WHERE name = ?", [name]).fetchone()
            if row:
                return row[0]
            value = secrets.token_hex(32)
            self._con.execute("INSERT INTO secrets VALUES (?, ?)", [name, value])
            return value

    # -- conversations ---------------------------------------------------
    def known_content_hashes(self) -> set[str]:
        return {r[0] for r in self.execute("SELECT content_hash FROM conversations")}

    def put_conversations(self, conversations: Iterable[ScrubbedConversation], run_id: str) -> int:
        rows = [
            (
                c.conversation_id,
                c.user_pseudonym,
                c.timestamp,
                c.source,
                c.content_hash,
                json.dumps([[m.role, m.content] for m in c.messages], ensure_ascii=False),
                c.n_pii_spans,
                c.truncated,
                run_id,
            )
            for c in conversations
        ]
        if not rows:
            return 0
        # One set-based statement (executemany costs ~2.5 ms a row here); an id given twice
        # keeps its last row, as row-by-row upserts would.
        columns = [list(c) for c in zip(*_last_per_key(rows, 1), strict=True)]
        with self._lock:
            self._con.execute("BEGIN")
            self._con.execute(
                "INSERT INTO conversations SELECT unnest($1::VARCHAR[]), unnest($2::VARCHAR[]), "
                "unnest($3::TIMESTAMP[]), unnest($4::VARCHAR[]), unnest($5::VARCHAR[]), "
                "unnest($6::VARCHAR[])::JSON, unnest($7::INTEGER[]), unnest($8::BOOLEAN[]), "
                "unnest($9::VARCHAR[]) "
                "ON CONFLICT (conversation_id) DO UPDATE SET "
                "user_pseudonym = excluded.user_pseudonym, timestamp = excluded.timestamp, "
                "source = excluded.source, content_hash = excluded.content_hash, "
                "messages = excluded.messages, n_pii_spans = excluded.n_pii_spans, "
                "truncated = excluded.truncated",
                columns,
            )
            self._con.execute("COMMIT")
        return len(rows)

    def get_conversations(self, ids: Sequence[str] | None = None) -> list[ScrubbedConversation]:
        sql = (
            "SELECT conversation_id, user_pseudonym, timestamp, messages, source, content_hash, "
            "n_pii_spans, truncated FROM conversations"
        )
        params: list[Any] = []
        if ids is not None:
            sql += " WHERE conversation_id IN (SELECT unnest(?))"
            params = [list(ids)]
        sql += " ORDER BY conversation_id"
        out = []
        for cid, user, ts, messages, source, chash, n_spans, truncated in self.execute(sql, params):
            msgs = tuple(Message(role=r, content=c) for r, c in json.loads(messages))
            out.append(
                ScrubbedConversation(
                    conversation_id=cid,
                    user_pseudonym=user,
                    timestamp=ts if isinstance(ts, datetime) or ts is None else None,
                    messages=msgs,
                    source=source,
                    content_hash=chash,
                    n_pii_spans=n_spans,
                    truncated=truncated,
                )
            )
        return out

    # -- quarantine ------------------------------------------------------
    def put_quarantine(self, records: Iterable[QuarantineRecord], run_id: str) -> int:
        rows = [
            (
                run_id,
                q.stage,
                q.source,
                q.location,
                q.reason,
                q.detail,
                q.raw_sha256,
                q.conversation_id,
            )
            for q in records
        ]
        if rows:
            with self._lock:
                self._con.executemany(
                    "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
        return len(rows)

    def quarantine_for_run(self, run_id: str) -> list[QuarantineRecord]:
        rows = self.execute(
            "SELECT source, location, reason, detail, raw_sha256, conversation_id, stage "
            "FROM quarantine WHERE run_id = ? ORDER BY stage, source, location",
            [run_id],
        )
        return [
            QuarantineRecord(
                source=r[0],
                location=r[1],
                reason=r[2],
                detail=r[3],
                raw_sha256=r[4],
                conversation_id=r[5],
                stage=r[6],
            )
            for r in rows
        ]

    # -- facets ----------------------------------------------------------
    def put_facets(self, values: Iterable[FacetValue]) -> int:
        rows = [
            (v.conversation_id, v.facet, json.dumps(v.value, ensure_ascii=False), v.status, v.error)
            for v in values
        ]
        if rows:
            # One set-based statement (executemany costs ~1.5 ms a row here); a
            # (conversation, facet) given twice keeps its last row, as INSERT OR REPLACE would.
            columns = [list(c) for c in zip(*_last_per_key(rows, 2), strict=True)]
            with self._lock:
                self._con.execute("BEGIN")
                self._con.execute(
                    "INSERT OR REPLACE INTO facets SELECT unnest($1::VARCHAR[]), "
                    "unnest($2::VARCHAR[]), unnest($3::VARCHAR[])::JSON, unnest($4::VARCHAR[]), "
                    "unnest($5::VARCHAR[])",
                    columns,
                )
                self._con.execute("COMMIT")
        return len(rows)

    def get_facets(self, conversation_ids: Sequence[str]) -> list[FacetValue]:
        rows = self.execute(
            "SELECT conversation_id, facet, value, status, error FROM facets "
            "WHERE conversation_id IN (SELECT unnest(?)) ORDER BY conversation_id, facet",
            [list(conversation_ids)],
        )
        return [
            FacetValue(
                conversation_id=r[0],
                facet=r[1],
                value=json.loads(r[2]) if r[2] is not None else None,
                status=r[3],
                error=r[4],
            )
            for r in rows
        ]

    # -- embedding cache -------------------------------------------------
    def get_embeddings(self, model: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        if not text_hashes:
            return {}
        rows = self.execute(
            "SELECT text_sha256, vector FROM embedding_cache WHERE model = ? "
            "AND text_sha256 IN (SELECT unnest(?))",
            [model, list(set(text_hashes))],
        )
        return {h: np.asarray(v, dtype=np.float32) for h, v in rows}

    def put_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        if not vectors:
            return
        hashes = list(vectors)
        matrix = [vectors[h].astype(np.float32).tolist() for h in hashes]
        # One set-based statement: executemany costs ~2 ms a row here.
        with self._lock:
            self._con.execute(
                "INSERT OR IGNORE INTO embedding_cache "
                "SELECT ?, unnest(?::VARCHAR[]), unnest(?::FLOAT[][])",
                [model, hashes, matrix],
            )

    # -- LLM cache -------------------------------------------------------
    def get_llm_response(self, key: str) -> tuple[Any, int, int] | None:
        row = self.execute(
            "SELECT response, input_tokens, output_tokens FROM llm_cache WHERE cache_key = ?",
            [key],
        )
        if not row:
            return None
        response, n_in, n_out = row[0]
        return json.loads(response), n_in, n_out

    def put_llm_response(
        self, key: str, backend: str, model: str, response: Any, n_in: int, n_out: int
    ) -> None:
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO llm_cache "
                "(cache_key, backend, model, response, input_tokens, output_tokens) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [key, backend, model, json.dumps(response, ensure_ascii=False), n_in, n_out],
            )

    # -- differential-privacy ledger -------------------------------------
    def dp_spent(self, excluding_run: str | None = None) -> tuple[float, float, int]:
        """Epsilon and delta recorded by the DP releases (but `excluding_run`'s), and how many."""
        row = self.execute(
            "SELECT coalesce(sum(epsilon), 0), coalesce(sum(delta), 0), count(*) "
            "FROM dp_ledger WHERE run_id IS DISTINCT FROM ?",
            [excluding_run],
        )[0]
        return float(row[0]), float(row[1]), int(row[2])

    def record_dp_spend(self, run_id: str, epsilon: float, delta: float) -> None:
        """A run's DP release; a re-run of the same run replaces its entry, not adds one."""
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO dp_ledger VALUES (?, ?, ?, now()::TIMESTAMP)",
                [run_id, epsilon, delta],
            )

    # -- assignments -----------------------------------------------------
    def put_assignments(
        self, run_id: str, facet: str, rows: Iterable[tuple[str, str, str]]
    ) -> None:
        """rows: (item_id, conversation_id, base cluster_id)."""
        data = [(facet, i, c, k) for i, c, k in rows]
        with self._lock:
            self._con.execute("BEGIN")
            self._con.execute(
                "DELETE FROM assignments WHERE run_id = ? AND facet = ?", [run_id, facet]
            )
            self._insert_assignments(run_id, data)
            self._con.execute("COMMIT")

    def _insert_assignments(self, run_id: str, rows: list[tuple[str, str, str, str]]) -> None:
        """rows: (facet, item_id, conversation_id, base cluster_id); the caller holds the lock
        and the transaction. One set-based statement: executemany costs ~0.2 ms a row here."""
        if rows:
            self._con.execute(
                "INSERT INTO assignments SELECT $1, unnest($2::VARCHAR[]), unnest($3::VARCHAR[]), "
                "unnest($4::VARCHAR[]), unnest($5::VARCHAR[])",
                [run_id, *[list(c) for c in zip(*rows, strict=True)]],
            )

    # -- cluster trees (private: who is in which cluster) ----------------
    def put_cluster_members(self, run_id: str, facet: str, clusters: Iterable[Cluster]) -> None:
        data = [
            (run_id, facet, c.level, c.cluster_id, member)
            for c in clusters
            for member in sorted(set(c.member_ids))
        ]
        with self._lock:
            self._con.execute("BEGIN")
            self._con.execute(
                "DELETE FROM cluster_members WHERE run_id = ? AND facet = ?", [run_id, facet]
            )
            if data:  # one set-based statement: executemany costs ~0.2 ms a row here
                self._con.execute(
                    "INSERT INTO cluster_members SELECT $1, $2, unnest($3::INTEGER[]), "
                    "unnest($4::VARCHAR[]), unnest($5::VARCHAR[])",
                    [run_id, facet, *([list(c) for c in zip(*data, strict=True)][2:])],
                )
            self._con.execute("COMMIT")

    # -- incremental runs (additions) ------------------------------------
    def conversation_ids_by_hash(
        self, hashes: Sequence[str], run_id: str | None = None
    ) -> dict[str, str]:
        """content hash -> the stored conversation id, for the hashes already stored (first
        stored by the run `run_id` only, when given)."""
        rows = self.execute(
            "SELECT content_hash, min(conversation_id) FROM conversations "
            "WHERE content_hash IN (SELECT unnest(?)) AND (? IS NULL OR first_run_id = ?) "
            "GROUP BY content_hash",
            [list(set(hashes)), run_id, run_id],
        )
        return dict(rows)

    def user_pseudonyms(self, ids: Sequence[str]) -> dict[str, str]:
        """conversation id -> user pseudonym, without loading any text."""
        return self._conversation_column(ids, "user_pseudonym")

    def _conversation_column(
        self, ids: Sequence[str], column: Literal["user_pseudonym", "content_hash"]
    ) -> dict[str, str]:
        """conversation id -> one column of its stored row."""
        rows = self.execute(
            f"SELECT conversation_id, {column} FROM conversations "
            "WHERE conversation_id IN (SELECT unnest(?))",
            [list(ids)],
        )
        return dict(rows)

    def merge_shard(self, shard: Path) -> None:
        """Copy a partition's shard into this store in one transaction, then delete it.
        Every statement is an upsert, so merging a shard twice changes nothing."""
        with self._lock:
            quoted = str(shard).replace("'", "''")
            self._con.execute(f"ATTACH '{quoted}' AS shard (READ_ONLY)")
            try:
                self._con.execute("BEGIN")
                for statement in _SHARD_MERGE.values():
                    self._con.execute(statement)
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            finally:
                self._con.execute("DETACH shard")
        shard.unlink()
        shard.with_name(shard.name + ".wal").unlink(missing_ok=True)

    def put_build(
        self,
        build_id: str,
        tree_digest: str,
        nodes: Sequence[BuildNode],
        conversation_ids: list,
        lineage: BuildLineage | None = None,
        seeds: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Record a full build: its tree, the conversations it released from, its lineage
        to the previous build (`clio.lineage`) and, per facet, the seeds its clustering
        ended on (what the next build warm-starts from). Replaces an earlier record of the
        same build (and what incremental runs added to it)."""
        node_rows = [
            (
                build_id,
                n.facet,
                n.level,
                n.cluster_id,
                n.parent_id,
                n.name,
                n.description,
                json.dumps(n.keywords, ensure_ascii=False),
                n.x,
                n.y,
                None if n.centroid is None else n.centroid.astype(np.float32).tolist(),
            )
            for n in nodes
        ]
        with self._lock:
            self._con.execute("BEGIN")
            for table in (
                "build_nodes",
                "build_seeds",
                "build_conversations",
                "unassigned",
                "lineage",
                "lineage_roots",
            ):
                self._con.execute(f"DELETE FROM {table} WHERE build_id = ?", [build_id])
            if lineage is not None:
                self._insert_lineage(build_id, lineage)
            if node_rows:
                self._con.executemany(
                    "INSERT INTO build_nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", node_rows
                )
            seed_rows = [
                (build_id, facet, i, row.astype(np.float32).tolist())
                for facet, rows in sorted((seeds or {}).items())
                for i, row in enumerate(rows)
            ]
            if seed_rows:
                self._con.executemany("INSERT INTO build_seeds VALUES (?, ?, ?, ?)", seed_rows)
            self._con.execute(
                "INSERT INTO build_conversations SELECT ?, unnest(?::VARCHAR[]), ?",
                [build_id, list(conversation_ids), build_id],
            )
            self._con.execute(
                "INSERT OR REPLACE INTO builds VALUES (?, ?, current_timestamp)",
                [build_id, tree_digest],
            )
            self._con.execute("COMMIT")

    def _insert_lineage(self, build_id: str, lineage: BuildLineage) -> None:
        links = [
            (build_id, lineage.previous_build_id, k.facet, k.level, k.cluster_id,
             k.previous_cluster_id, k.relation, k.overlap, k.n_shared_conversations,
             k.n_shared_users)
            for k in lineage.links
        ]  # fmt: skip
        if links:
            self._con.executemany(
                "INSERT INTO lineage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", links
            )
        previous = lineage.previous_build_id
        roots = [(build_id, cid, rb, rn, previous) for cid, (rb, rn) in lineage.roots.items()]
        if roots:
            self._con.executemany("INSERT INTO lineage_roots VALUES (?, ?, ?, ?, ?)", roots)

    def build_lineage(self, build_id: str) -> BuildLineage | None:
        """The build's links to the build before it and every node's root (None for a
        build recorded without lineage)."""
        root_rows = self.execute(
            "SELECT cluster_id, root_build_id, root_cluster_id, previous_build_id "
            "FROM lineage_roots WHERE build_id = ?",
            [build_id],
        )
        if not root_rows:
            return None
        rows = self.execute(
            "SELECT facet, level, cluster_id, previous_cluster_id, relation, overlap, "
            "n_shared_conversations, n_shared_users FROM lineage WHERE build_id = ? "
            "ORDER BY facet, level, cluster_id, previous_cluster_id",
            [build_id],
        )
        return BuildLineage(
            root_rows[0][3],
            [Link(*r) for r in rows],
            {cid: (rb, rn) for cid, rb, rn, _ in root_rows},
        )

    def build_seeds(self, build_id: str) -> dict[str, np.ndarray]:
        """facet -> the (k, d) seeds the build's clustering ended on, in order."""
        rows = self.execute(
            "SELECT facet, centroid FROM build_seeds WHERE build_id = ? ORDER BY facet, seed_index",
            [build_id],
        )
        by_facet: dict[str, list[list[float]]] = {}
        for facet, centroid in rows:
            by_facet.setdefault(facet, []).append(centroid)
        return {f: np.asarray(r, dtype=np.float32) for f, r in by_facet.items()}

    def build_item_counts(self, build_id: str) -> dict[str, int]:
        """facet -> facet texts the full build itself clustered (its own assignments)."""
        rows = self.execute(
            "SELECT facet, count(*) FROM assignments WHERE run_id = ? GROUP BY facet", [build_id]
        )
        return {facet: int(n) for facet, n in rows}

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """conversation id -> content hash, without loading any text."""
        return self._conversation_column(ids, "content_hash")

    def current_build(self) -> tuple[str, str] | None:
        """(build_id, tree_digest) of the most recent full build, if any."""
        rows = self.execute(
            "SELECT build_id, tree_digest FROM builds ORDER BY built_at DESC, build_id LIMIT 1"
        )
        return rows[0] if rows else None

    def build_nodes(self, build_id: str) -> list[BuildNode]:
        rows = self.execute(
            "SELECT facet, level, cluster_id, parent_id, name, description, keywords, x, y, "
            "centroid FROM build_nodes WHERE build_id = ? ORDER BY facet, level, cluster_id",
            [build_id],
        )
        return [
            BuildNode(
                facet=r[0],
                level=r[1],
                cluster_id=r[2],
                parent_id=r[3],
                name=r[4],
                description=r[5],
                keywords=json.loads(r[6]),
                x=r[7],
                y=r[8],
                centroid=None if r[9] is None else np.asarray(r[9], dtype=np.float32),
            )
            for r in rows
        ]

    def build_conversation_ids(self, build_id: str) -> list[str]:
        rows = self.execute(
            "SELECT conversation_id FROM build_conversations WHERE build_id = ? "
            "ORDER BY conversation_id",
            [build_id],
        )
        return [r[0] for r in rows]

    def base_members(self, build_id: str, facet: str) -> dict[str, set[str]]:
        """Base cluster id -> conversations in it: the build's own assignments and those
        of the incremental runs added to it."""
        rows = self.execute(
            "SELECT cluster_id, conversation_id FROM assignments WHERE facet = ? AND run_id IN "
            "(SELECT DISTINCT run_id FROM build_conversations WHERE build_id = ?)",
            [facet, build_id],
        )
        members: dict[str, set[str]] = {}
        for cluster, conversation in rows:
            members.setdefault(cluster, set()).add(conversation)
        return members

    def add_to_build(
        self,
        build_id: str,
        run_id: str,
        conversation_ids: Sequence[str],
        assignments: Iterable[tuple[str, str, str, str]],
        unassigned: Iterable[tuple[str, str, str, float]],
    ) -> None:
        """An incremental run's additions, in one transaction: assignments rows
        (facet, item_id, conversation_id, cluster_id), unassigned items (facet, item_id,
        conversation_id, distance) and the conversations now part of the build."""
        ids = list(conversation_ids)
        assigned = list(assignments)
        waiting = [(build_id, run_id, f, i, c, d) for f, i, c, d in unassigned]
        with self._lock:
            self._con.execute("BEGIN")
            for table in ("assignments", "unassigned"):
                self._con.execute(
                    f"DELETE FROM {table} WHERE run_id = ? "
                    "AND conversation_id IN (SELECT unnest(?::VARCHAR[]))",
                    [run_id, ids],
                )
            self._insert_assignments(run_id, assigned)
            if waiting:
                self._con.executemany("INSERT INTO unassigned VALUES (?, ?, ?, ?, ?, ?)", waiting)
            self._con.execute(
                "INSERT OR IGNORE INTO build_conversations SELECT ?, unnest(?::VARCHAR[]), ?",
                [build_id, ids, run_id],
            )
            self._con.execute("COMMIT")

    def unassigned_counts(self, build_id: str) -> tuple[int, int]:
        """(items, conversations) waiting for the next full build."""
        row = self.execute(
            "SELECT count(*), count(DISTINCT conversation_id) FROM unassigned WHERE build_id = ?",
            [build_id],
        )[0]
        return int(row[0]), int(row[1])


class LayeredCache:
    """The LLM and embedding caches of a partition task: reads its own shard first, then the
    main store (opened read-only); writes go to the shard only, merged later by the flow."""

    def __init__(self, shard: PrivateStore, main: PrivateStore | None):
        self.shard = shard
        self.main = main

    def get_llm_response(self, key: str) -> tuple[Any, int, int] | None:
        hit = self.shard.get_llm_response(key)
        if hit is None and self.main is not None:
            hit = self.main.get_llm_response(key)
        return hit

    def put_llm_response(
        self, key: str, backend: str, model: str, response: Any, n_in: int, n_out: int
    ) -> None:
        self.shard.put_llm_response(key, backend, model, response, n_in, n_out)

    def get_embeddings(self, model: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found = self.main.get_embeddings(model, text_hashes) if self.main is not None else {}
        missing = [h for h in text_hashes if h not in found]
        found.update(self.shard.get_embeddings(model, missing))
        return found

    def put_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        self.shard.put_embeddings(model, vectors)


def _last_per_key(rows: list[tuple], key_columns: int) -> list[tuple]:
    """`rows` with only the last row of each key (its first `key_columns` values), in order."""
    last = {row[:key_columns]: index for index, row in enumerate(rows)}
    return rows if len(last) == len(rows) else [rows[i] for i in sorted(last.values())]
