"""The released lineage: `cluster_lineage` rows and `run_changes` statuses across rebuilds,
and the run's survival figure, over the same release path the random histories use
(`tests.test_release_history.release`: the gate with keyed ids, lineage and the previous
release, then `write_release` into a real DuckDB file)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from clio.config import PrivacyConfig
from clio.gate.public import LineageCandidate, released_lineage
from clio.lineage import KEPT, MERGED, SPLIT
from clio.records import Cluster
from clio.release_audit import audit_release
from clio.released import ReleasedCluster, read_only_connect
from tests.test_release_history import History, Rules, Tree, full, one_base, release

TEN = [(f"u{i}", 1 + i % 2, "en") for i in range(10)]
TWO_BASES = Tree((0, 0), ((0.0, 0.0), (1.0, 0.0)), root=False)


def released_history(steps, rules: Rules | None = None) -> dict[str, Any]:
    history = History()
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "insights.duckdb"
        for step in steps:
            release(store, history, step, rules or Rules())
        connection = read_only_connect(store)
        try:
            changes = connection.execute(
                "SELECT level, status, cluster_id, related_cluster_id FROM run_changes "
                "WHERE run_id = 'run-2' ORDER BY level, status"
            ).fetchall()
            links = connection.execute(
                "SELECT cluster_id, previous_run_id, previous_cluster_id, relation "
                "FROM cluster_lineage WHERE run_id = 'run-2'"
            ).fetchall()
            first = {r[0] for r in connection.execute(
                "SELECT cluster_id FROM clusters WHERE run_id = 'run-1'").fetchall()}  # fmt: skip
        finally:
            connection.close()
        findings = audit_release(store)
    return {"changes": changes, "links": links, "first": first, "findings": findings,
            "summary": history.summaries[-1]}  # fmt: skip


def split_history():
    before = full(one_base(), TEN, [(0,)] * 10)
    after = full(TWO_BASES, [], [(0,)] * 6 + [(1,)] * 4)
    return [before, after]


def test_a_split_keeps_the_larger_part_and_shows_the_other_as_split():
    got = released_history(split_history())
    statuses = [(level, status) for level, status, _, _ in got["changes"]]
    assert statuses == [(0, "kept"), (0, "split"), (1, "kept")]
    (old_base,) = [c for c in got["first"] if "-L0-" in c]
    kept, split = got["changes"][0], got["changes"][1]
    assert kept[2] == old_base and split[3] == old_base
    assert sorted(r[3] for r in got["links"]) == ["kept", "kept", "split"]
    assert all(r[1] == "run-1" and r[2] in got["first"] for r in got["links"])
    assert got["summary"]["survival_by_users"] == 1.0
    assert got["summary"]["clusters_by_relation"] == {
        "kept": 2, "split": 1, "merged": 0, "new": 0, "gone": 0}  # fmt: skip
    assert got["findings"] == []


def test_a_merge_shows_the_absorbed_cluster_as_merged():
    before = full(TWO_BASES, TEN, [(0,)] * 6 + [(1,)] * 4)
    after = full(one_base(), [], [(0,)] * 10)
    got = released_history([before, after])
    statuses = [(level, status) for level, status, _, _ in got["changes"]]
    assert statuses == [(0, "kept"), (0, "merged"), (1, "kept")]
    kept, merged = got["changes"][0], got["changes"][1]
    assert merged[3] == kept[2]  # merged into the kept one
    assert got["summary"]["clusters_by_relation"]["merged"] == 1
    assert got["findings"] == []


def test_control_without_lineage_every_cluster_of_a_rebuild_is_new():
    got = released_history(split_history(), Rules(lineage=False))
    assert {status for _, status, _, _ in got["changes"]} == {"new", "gone"}
    assert got["links"] == []
    assert got["summary"]["survival_by_users"] == 0.0
    assert got["summary"]["clusters_by_relation"]["new"] == 3


def test_the_gate_releases_a_split_only_with_enough_shared_and_only_for_released_clusters():
    config = PrivacyConfig(min_users=3, min_conversations=3)
    clusters = [Cluster("request", 0, "a", None, []), Cluster("request", 0, "b", None, [])]
    rows = [row("a")]
    candidates = [
        LineageCandidate("a", "run-1", "old", SPLIT, 3, 3),
        LineageCandidate("a", "run-1", "older", SPLIT, 2, 5),  # 2 users shared: too few
        LineageCandidate("b", "run-1", "old", MERGED, 9, 9),  # b is not released
        LineageCandidate("a", "run-1", "a", KEPT),
        LineageCandidate("a", "run-1", "other", KEPT),  # kept means the same id
    ]
    links = released_lineage(candidates, clusters, rows, None, config)
    assert [(k.cluster_id, k.previous_cluster_id, k.relation) for k in links] == [
        ("a", "a", KEPT), ("a", "old", SPLIT)]  # fmt: skip


def row(cluster_id: str) -> ReleasedCluster:
    return ReleasedCluster("request", 0, cluster_id, None, "n", "d", [], 5, 5, 1.0, None, 0, 0)
