"""Incremental runs: new conversations join the last full build's base clusters.

Unit tests cover the faiss assignment with its distance cut-off, the tree rebuilt from a
stored build, and which settings keep a build extendable. The slow test runs the real CLI
(real Presidio, embedder, Prefect flow, DuckDB) with the openai-compatible backend pointed
at a loopback server, so every LLM call is counted: an incremental run over A then A∪B
processes only B, releases what one full run over the same conversations releases, a
re-run changes nothing and asks nothing, and a rebuild clusters what was left unassigned.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from clio.cluster import build_clusterer
from clio.config import ClusterConfig, RunConfig
from clio.incremental import base_centroids, tree_digest, tree_from_build
from clio.store import BuildNode
from tests.cli_run import run_clio
from tests.fakes.loopback import LoopbackServer, Reply, Seen

# -- unit tests -------------------------------------------------------------------


def _unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


CENTROIDS = np.stack([_unit(1, 0, 0), _unit(0, 1, 0)])


@pytest.mark.parametrize(
    ("vector", "max_distance", "label", "distance"),
    [
        (_unit(1, 0, 0), 0.5, 0, 0.0),  # on the first centroid
        (_unit(0, 1, 0), 0.5, 1, 0.0),  # on the second
        (_unit(1, 1, 0), 0.5, 0, 1 - np.sqrt(0.5)),  # a tie goes to the first index
        (_unit(0.2, 1, 0), 0.5, 1, 1 - 1 / np.sqrt(1.04)),
        (_unit(0, 0, 1), 0.5, -1, 1.0),  # orthogonal to both: beyond the cut-off
        (_unit(0, 0, 1), 1.0, 0, 1.0),  # ... unless the cut-off allows it
        (_unit(-1, 0, 0.01), 1.5, 1, 1.0),  # nearest is the orthogonal one, not the opposite
    ],
)
def test_nearest_centroid_within_the_cut_off(vector, max_distance, label, distance):
    labels, distances = _loaded(CENTROIDS).predict(vector[None, :] * 3.0, max_distance)
    assert labels.tolist() == [label]
    assert distances[0] == pytest.approx(distance, abs=1e-5)


def test_nearest_centroids_without_items_or_centroids():
    labels, distances = _loaded(CENTROIDS).predict(np.zeros((0, 3), np.float32), 0.5)
    assert labels.shape == distances.shape == (0,)
    labels, _ = _loaded(np.zeros((0, 3), np.float32)).predict(np.stack([_unit(1, 0, 0)]), 2.0)
    assert labels.tolist() == [-1]


def _loaded(centroids: np.ndarray, method: str = "kmeans"):
    """A build's clusterer with its stored centroids, as an incremental run loads it."""
    clusterer = build_clusterer(ClusterConfig(method=method))
    clusterer.load(centroids)
    return clusterer


def test_either_method_assigns_increments_by_the_nearest_stored_centroid():
    vectors = np.stack([_unit(1, 0.1, 0), _unit(0, 1, 0.2), _unit(0, 0, 1)])
    for method in ("kmeans", "hdbscan"):
        labels, _ = _loaded(CENTROIDS, method).predict(vectors, 0.5)
        assert labels.tolist() == [0, 1, -1]


def test_base_centroids_are_unit_means_of_their_items():
    vectors = np.array([[2, 0], [0, 3], [1, 1]], dtype=np.float32)
    centroids = base_centroids(vectors, [[0, 1], [2], []])
    assert centroids[0] == pytest.approx([np.sqrt(0.5), np.sqrt(0.5)])
    assert centroids[1] == pytest.approx([np.sqrt(0.5), np.sqrt(0.5)])
    assert centroids[2].tolist() == [0.0, 0.0]
    assert base_centroids(vectors, []).shape == (0, 2)


def _node(cid: str, level: int, parent: str | None) -> BuildNode:
    return BuildNode("request", level, cid, parent, f"name {cid}", "", ["kw"], 0.0, 0.0, None)


def test_tree_from_build_rolls_members_up_to_the_top():
    nodes = [
        _node("top", 2, None),
        _node("mid-a", 1, "top"),
        _node("mid-b", 1, "top"),
        _node("b0", 0, "mid-a"),
        _node("b1", 0, "mid-a"),
        _node("b2", 0, "mid-b"),
    ]
    members = {"b0": {"c1", "c2"}, "b1": {"c2", "c3"}, "b2": {"c9"}}
    tree = {c.cluster_id: c for c in tree_from_build(nodes, members)}
    assert tree["b0"].member_ids == ["c1", "c2"]
    assert tree["mid-a"].member_ids == ["c1", "c2", "c3"]
    assert tree["mid-b"].member_ids == ["c9"]
    assert tree["top"].member_ids == ["c1", "c2", "c3", "c9"]
    assert tree["mid-a"].children == ["b0", "b1"]
    assert tree["top"].parent_id is None and tree["b2"].parent_id == "mid-b"
    assert [c.name for c in tree.values()] == [f"name {cid}" for cid in tree]


def test_tree_from_build_refuses_a_missing_parent():
    with pytest.raises(ValueError, match="missing parent"):
        tree_from_build([_node("b0", 0, "gone")], {"b0": {"c1"}})


@pytest.mark.parametrize(
    ("change", "keeps_build"),
    [
        ({"privacy": {"min_users": 50}}, True),
        ({"runner": {"kind": "dask", "n_workers": 4}}, True),
        ({"incremental": {"max_distance": 0.3}}, True),
        ({"llm": {"concurrency": 8, "base_url": "http://127.0.0.1:9/v1"}}, True),
        ({"cluster": {"target_cluster_size": 50}}, False),
        ({"llm": {"model": "another-model"}}, False),
        ({"embed": {"model": "/models/other"}}, False),
        ({"hierarchy": {"branching": 3}}, False),
    ],
)
def test_which_settings_keep_a_build_extendable(change, keeps_build):
    changed = tree_digest(RunConfig.model_validate(change)) == tree_digest(RunConfig())
    assert changed is keeps_build


# -- the flow through the CLI -------------------------------------------------------

TOPICS = {
    # marker in the conversation -> (facet answer, cluster name)
    "cooking round": ("Help with cooking recipes", "Cooking questions"),
    "coding round": ("Help with code errors", "Coding questions"),
    "chess round": ("Explain the rules of chess openings", "Chess questions"),
}
QUESTIONS = {
    "cooking round": [
        "How long should I roast a chicken for a family dinner?",
        "Can I bake bread without yeast for a picnic?",
        "What spices go well in a vegetable curry?",
        "How do I make a soup thicker without cream?",
    ],
    "coding round": [
        "Why does my Python loop never stop when I read the file?",
        "How do I sort a list of numbers in JavaScript?",
    ],
    "chess round": ["Which opening should a beginner learn first?"],
}

CONFIG = """
llm:
  backend: openai-compatible
  base_url: {url}/v1
  model: loopback-model
  concurrency: 2
privacy: {{min_users: 2, min_conversations: 2, audit_min_score: 3}}
cluster: {{method: kmeans, min_k: 2, max_k: 2}}
describe: {{samples_outside: 0}}
hierarchy: {{top_clusters: 2}}
runner: {{kind: {runner}, n_workers: 2, partition_size: {partition_size}}}
facets:
  - name: request
    kind: text
    question: What did the user ask for?
    cluster: true
    keep_if_degenerate: true  # the scripted LLM answers one sentence per topic
  - name: language
    kind: category
    extractor: language_id
    llm_check: false
    breakdown: true
"""


def conversations(topic: str, rounds: range, first_user: int) -> list[dict]:
    """Two conversations per user; ids and texts unique per (topic, round, question)."""
    rows = []
    for round_ in rounds:
        for q, question in enumerate(QUESTIONS[topic]):
            rows.append(
                {
                    "conversation_id": f"{topic.split()[0]}-{round_}-{q}",
                    "messages": [
                        {"role": "user", "content": f"{question} ({topic} {round_})"},
                        {"role": "assistant", "content": "Here is a short answer."},
                    ],
                }
            )
    for n, row in enumerate(rows):
        row["user_id"] = f"user-{first_user + n // 2}"
    return rows


def answer(seen: Seen) -> Reply:
    """Facet prompts get the topic's answer, naming prompts the topic's name, audits 5."""
    properties = seen.body["response_format"]["json_schema"]["schema"]["properties"]
    text = seen.body["messages"][-1]["content"]
    if "score" in properties:
        content: dict = {"score": 5, "reason": "nothing private"}
    elif "name" in properties:
        names = [name for facet_text, name in TOPICS.values() if facet_text in text]
        name = names[0] if len(names) == 1 else "Mixed questions"
        content = {"name": name, "description": f"People ask about {name.lower()}."}
    else:
        topics = [value for marker, value in TOPICS.items() if marker in text]
        assert len(topics) == 1, "a facet prompt shows one conversation"
        content = {"request": topics[0][0]}
    usage = {"prompt_tokens": 10, "completion_tokens": 5}
    return Reply(200, {"choices": [{"message": {"content": json.dumps(content)}}], "usage": usage})


def is_facet_prompt(seen: Seen) -> bool:
    return "request" in seen.body["response_format"]["json_schema"]["schema"]["properties"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_config(path: Path, url: str, runner: str = "default", partition_size: int = 2000) -> Path:
    path.write_text(CONFIG.format(url=url, runner=runner, partition_size=partition_size))
    return path


def released(out: Path) -> tuple[list[tuple], list[tuple]]:
    """The latest run's clusters and breakdowns, keyed by names rather than ids (two
    builds may number the same clusters differently)."""
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as con:
        run = con.execute("SELECT run_id FROM runs ORDER BY finished_at DESC LIMIT 1").fetchone()
        clusters = con.execute(
            "SELECT facet, level, name, description, keywords, n_users, n_conversations, "
            "round(share, 9) FROM clusters WHERE run_id = ? ORDER BY ALL",
            [run[0]],
        ).fetchall()
        breakdowns = con.execute(
            "SELECT c.name, b.facet, b.value, b.n_users, b.n_conversations "
            "FROM facet_breakdowns b JOIN clusters c USING (run_id, cluster_id) "
            "WHERE run_id = ? ORDER BY ALL",
            [run[0]],
        ).fetchall()
    return clusters, breakdowns


def manifest(out: Path) -> dict:
    """The operator manifest: the counts are there, not in the public one."""
    return json.loads((out / "private" / "manifest.json").read_text())


A = conversations("cooking round", range(4), 0) + conversations("coding round", range(4), 100)
B_ON_TOPIC = conversations("cooking round", range(4, 5), 200) + conversations(
    "coding round", range(4, 8), 300
)
B_OFF_TOPIC = conversations("chess round", range(4), 400)  # far from every centroid


@pytest.mark.slow
def test_incremental_runs_process_only_new_conversations(tmp_path):
    out, full_out = tmp_path / "out", tmp_path / "full"
    a = write_jsonl(tmp_path / "a.jsonl", A)
    grown = write_jsonl(tmp_path / "a_and_b.jsonl", A + B_ON_TOPIC + B_OFF_TOPIC)
    union = write_jsonl(tmp_path / "a_and_b_on_topic.jsonl", A + B_ON_TOPIC)
    with LoopbackServer(answer) as server:
        config = write_config(tmp_path / "clio.yaml", server.url)

        def run(inputs: Path, target: Path, *flags: str) -> list[Seen]:
            before = len(server.requests)
            run_clio(config, inputs, target, cwd=tmp_path, extra_args=list(flags))
            return server.requests[before:]

        # 1. No build yet: --incremental makes a full build and says so.
        first = run(a, out, "--incremental")
        assert manifest(out)["mode"] == "full"
        assert "no full build" in manifest(out)["mode_reason"]
        assert sum(map(is_facet_prompt, first)) == len(A)
        clusters_a, _ = released(out)

        # 2. The input grew by B: only B is scrubbed, extracted and embedded; A is skipped by
        # content hash; names come from the build, so the only LLM calls are B's facets.
        second = run(grown, out, "--incremental")
        m = manifest(out)
        new = len(B_ON_TOPIC) + len(B_OFF_TOPIC)
        assert m["mode"] == "incremental"
        assert m["counts"]["n_already_processed"] == len(A)
        assert m["counts"]["n_scrubbed"] == new
        assert m["counts"]["n_processed"] == new
        assert len(second) == sum(map(is_facet_prompt, second)) == new
        assert m["llm"]["calls"] == new
        assert m["incremental"]["items_assigned"] == len(B_ON_TOPIC)
        assert m["incremental"]["items_unassigned"] == len(B_OFF_TOPIC)
        assert m["incremental"]["unassigned_conversations_waiting"] == len(B_OFF_TOPIC)
        clusters_ab, breakdowns_ab = released(out)
        assert {c[2] for c in clusters_ab} == {c[2] for c in clusters_a}
        assert sum(c[6] for c in clusters_ab if c[1] == 0) == len(A) + len(B_ON_TOPIC)
        for cluster in clusters_ab:  # thresholds hold on the grown counts
            assert cluster[5] >= 2 and cluster[6] >= 2

        # 3. The same incremental input again: nothing changes, nothing is asked.
        third = run(grown, out, "--incremental")
        assert third == []
        assert manifest(out)["counts"]["n_processed"] == 0
        assert released(out) == (clusters_ab, breakdowns_ab)

        # 4. One full run over the conversations the incremental release covers releases
        # the same clusters, counts, shares and breakdowns.
        run(union, full_out)
        assert manifest(full_out)["mode"] == "full"
        assert released(full_out) == (clusters_ab, breakdowns_ab)

        # 5. A rebuild clusters everything, the chess conversations included.
        run(grown, out, "--rebuild")
        m = manifest(out)
        assert m["mode"] == "rebuild" and m["incremental"] is None
        assert m["counts"]["n_already_processed"] == len(A) + new
        assert m["counts"]["n_scrubbed"] == 0
        clusters_rebuilt, _ = released(out)
        assert sum(c[6] for c in clusters_rebuilt if c[1] == 0) == len(A) + new
    with duckdb.connect(str(out / "private" / "private.duckdb"), read_only=True) as con:
        builds = con.execute("SELECT count(*) FROM builds").fetchone()[0]
        waiting = con.execute(
            "SELECT count(*) FROM unassigned WHERE build_id = ?", [m["run_id"]]
        ).fetchone()[0]
    assert (builds, waiting) == (2, 0)
