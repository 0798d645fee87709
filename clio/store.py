"""The private store: scrubbed conversations, facets, caches, quarantine.

One DuckDB file per output directory (`DIR/private.duckdb`). It is never
served or exported. One process writes it (the run); every write is a small
transaction, so a killed run leaves whole rows only and a re-run resumes from
the caches.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from clio.records import Cluster, FacetValue, Message, QuarantineRecord, ScrubbedConversation

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
"""


class PrivateStore:
    """Thread-safe wrapper over the private DuckDB file (one connection, one lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._con = duckdb.connect(str(self.path))
        self._con.execute(_SCHEMA)

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._con.close()

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
        with self._lock:
            self._con.execute("BEGIN")
            self._con.executemany(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (conversation_id) DO UPDATE SET "
                "user_pseudonym = excluded.user_pseudonym, timestamp = excluded.timestamp, "
                "source = excluded.source, content_hash = excluded.content_hash, "
                "messages = excluded.messages, n_pii_spans = excluded.n_pii_spans, "
                "truncated = excluded.truncated",
                rows,
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
            with self._lock:
                self._con.execute("BEGIN")
                self._con.executemany("INSERT OR REPLACE INTO facets VALUES (?, ?, ?, ?, ?)", rows)
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

    # -- assignments -----------------------------------------------------
    def put_assignments(
        self, run_id: str, facet: str, rows: Iterable[tuple[str, str, str]]
    ) -> None:
        """rows: (item_id, conversation_id, base cluster_id)."""
        data = [(run_id, facet, i, c, k) for i, c, k in rows]
        with self._lock:
            self._con.execute("BEGIN")
            self._con.execute(
                "DELETE FROM assignments WHERE run_id = ? AND facet = ?", [run_id, facet]
            )
            if data:
                self._con.executemany("INSERT INTO assignments VALUES (?, ?, ?, ?, ?)", data)
            self._con.execute("COMMIT")

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
            if data:
                self._con.executemany("INSERT INTO cluster_members VALUES (?, ?, ?, ?, ?)", data)
            self._con.execute("COMMIT")
