"""Lineage through the real pipeline (`run_pipeline` in this process: ingest, Presidio,
non-LLM facets, the embedder, k-means, hierarchy, gate, DuckDB release): the same
conversations in another order, run again into the same output directory, keep every
released id; with lineage off (the control) none is kept."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import pytest

from clio.config import RunConfig
from clio.pipeline.run import run_pipeline

SAMPLE = Path(__file__).resolve().parents[1] / "clio" / "samples"
N = 80


def config(lineage: bool, max_distance: float) -> RunConfig:
    # incremental.max_distance shapes no full build: it only makes the second run a run of
    # its own (the run id is the config and the set of conversations, not their order)
    return RunConfig.model_validate(
        {
            "ingest": {"missing_user_id": "per_conversation"},
            "llm": {"backend": "local"},
            "facets": [
                {"name": "request", "kind": "text", "extractor": "user_text", "cluster": True},
                {
                    "name": "language",
                    "kind": "category",
                    "extractor": "language_id",
                    "breakdown": True,
                },
            ],  # fmt: skip
            "privacy": {"min_users": 3, "min_conversations": 3, "audit_released_text": False},
            "cluster": {"target_cluster_size": 10},
            "hierarchy": {"branching": 3, "top_clusters": 3},
            # 80 items share few words: folding unnamed clusters would leave too few ids
            "describe": {"names": "extractive", "fold_unnamed": False},
            "lineage": {"enabled": lineage},
            "incremental": {"max_distance": max_distance},
        }
    )


def released_ids(out: Path, run_id: str) -> set[str]:
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            "SELECT cluster_id FROM clusters WHERE run_id = ?", [run_id]
        ).fetchall()
    return {r[0] for r in rows}


def twice(tmp: Path, lineage: bool) -> tuple[set[str], set[str], list[tuple]]:
    with gzip.open(next(SAMPLE.glob("*.jsonl.gz")), "rt", encoding="utf-8") as handle:
        rows = [next(handle) for _ in range(N)]
    first, second = tmp / "a.jsonl", tmp / "a-reversed.jsonl"
    first.write_text("".join(rows))
    second.write_text("".join(reversed(rows)))
    out = tmp / "out"
    one = run_pipeline(config(lineage, 0.5), [str(first)], out, None, None)
    two = run_pipeline(config(lineage, 0.51), [str(second)], out, None, None)
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as connection:
        statuses = connection.execute(
            "SELECT status, count(*) FROM run_changes GROUP BY status ORDER BY status"
        ).fetchall()
    return released_ids(out, one["run_id"]), released_ids(out, two["run_id"]), statuses


@pytest.mark.slow
def test_a_reordered_rebuild_keeps_every_released_id(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIO_HMAC_KEY", "lineage-test-key")
    before, after, statuses = twice(tmp_path, lineage=True)
    assert len(before) >= 4
    assert before == after
    assert statuses == [("kept", len(before))]


@pytest.mark.slow
def test_control_without_lineage_a_reordered_rebuild_changes_every_id(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIO_HMAC_KEY", "lineage-test-key")
    before, after, statuses = twice(tmp_path, lineage=False)
    assert before and after and not before & after
    assert {s for s, _ in statuses} == {"new", "gone"}
