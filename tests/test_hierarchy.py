import re

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from clio import hierarchy as hierarchy_module
from clio.config import (
    ClusterConfig,
    HierarchyConfig,
    LLMConfig,
    PrivacyConfig,
    RunConfig,
)
from clio.hierarchy import build_facet_tree, nested_levels, parent_level_sizes
from clio.llm.client import StructuredLLM
from clio.mapping import map_positions
from tests.fakes.llm import FakeBackend

N_TOPICS, PER_TOPIC, DIM = 60, 8, 48


def _word(i: int) -> str:
    return "z" + "".join(chr(ord("a") + int(d)) for d in f"{i:03d}")


def _items(seed: int = 0):
    """N_TOPICS tight topics; two items per conversation (like a list facet)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_TOPICS, DIM))
    topics = np.repeat(np.arange(N_TOPICS), PER_TOPIC)
    vectors = centres[topics] + 0.05 * rng.normal(size=(len(topics), DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    texts = [f"{_word(t)} {_word(100 + t % 7)} request about <PERSON_1>" for t in topics]
    users = [f"user-{i % 40}" for i in range(len(topics))]
    conversation_ids = [f"conv-{i // 2:04d}" for i in range(len(topics))]
    return conversation_ids, texts, users, vectors


def _config(**hierarchy) -> RunConfig:
    return RunConfig(
        cluster=ClusterConfig(target_cluster_size=PER_TOPIC, seed=1),
        privacy=PrivacyConfig(min_users=2),
        hierarchy=HierarchyConfig(**hierarchy),
    )


def _fake_llm() -> tuple[StructuredLLM, FakeBackend]:
    def answer(call):
        words = re.search(r"Distinctive words: (\w+)", call.prompt.input)
        topic = words.group(1) if words else "things"
        if call.prompt.task == "name_parent_cluster":
            return {"name": f"Broad {topic}", "description": "Several related groups."}
        return {"name": f"Ask about {topic}", "description": "Requests on one topic."}

    backend = FakeBackend(answer)
    return StructuredLLM(backend, LLMConfig(max_retries=0), backoff_seconds=0.0), backend


@pytest.fixture(scope="module")
def tree():
    conversation_ids, texts, users, vectors = _items()
    llm, backend = _fake_llm()
    clusters = build_facet_tree("request", conversation_ids, texts, users, vectors, llm, _config())
    return clusters, backend, conversation_ids


def test_tree_has_a_base_and_at_least_two_parent_levels(tree):
    clusters, _, _ = tree
    levels = sorted({c.level for c in clusters})
    assert levels == list(range(len(levels)))
    assert len(levels) >= 3
    assert sum(c.level == 0 for c in clusters) == N_TOPICS
    top = max(levels)
    assert sum(c.level == top for c in clusters) <= 5


def test_ids_are_unique_readable_and_compact_per_level(tree):
    clusters, _, _ = tree
    ids = [c.cluster_id for c in clusters]
    assert len(ids) == len(set(ids))
    for level in {c.level for c in clusters}:
        at_level = [c.cluster_id for c in clusters if c.level == level]
        assert at_level == [f"request-L{level}-{i:03d}" for i in range(len(at_level))]


def test_parents_exist_one_level_up_and_hold_the_union_of_their_children(tree):
    clusters, _, _ = tree
    by_id = {c.cluster_id: c for c in clusters}
    top = max(c.level for c in clusters)
    for cluster in clusters:
        if cluster.level == top:
            assert cluster.parent_id is None
            continue
        parent = by_id[cluster.parent_id]
        assert parent.level == cluster.level + 1
        assert cluster.cluster_id in parent.children
    for parent in (c for c in clusters if c.level > 0):
        children = [by_id[i] for i in parent.children]
        assert children and all(child.parent_id == parent.cluster_id for child in children)
        union = sorted(set().union(*(child.member_ids for child in children)))
        assert parent.member_ids == union
        assert parent.extra["n_items"] == sum(child.extra["n_items"] for child in children)


def test_base_clusters_partition_the_items(tree):
    clusters, _, conversation_ids = tree
    base = [c for c in clusters if c.level == 0]
    indices = sorted(i for c in base for i in c.extra["item_indices"])
    assert indices == list(range(len(conversation_ids)))
    for cluster in base:
        expected = sorted({conversation_ids[i] for i in cluster.extra["item_indices"]})
        assert cluster.member_ids == expected
        assert cluster.children == []


def test_names_keywords_and_positions(tree):
    clusters, backend, _ = tree
    by_id = {c.cluster_id: c for c in clusters}
    for cluster in clusters:
        assert cluster.extra["name_source"] == "llm"
        assert "person" not in cluster.keywords
        assert np.isfinite([cluster.x, cluster.y]).all()
        assert -1.0 <= cluster.x <= 1.0 and -1.0 <= cluster.y <= 1.0
    # k-means can split a topic into a one-user cluster: it has no keyword shared by
    # min_users users, so only the tiny clusters may lack keywords.
    assert all(c.keywords for c in clusters if len(set(c.member_ids)) >= 2)
    assert sum(bool(c.keywords) for c in clusters if c.level == 0) >= N_TOPICS - 3
    for cluster in clusters:
        topic = cluster.keywords[0] if cluster.keywords else "things"
        if cluster.level == 0:
            assert cluster.name == f"Ask about {topic}"
        elif len(cluster.children) > 1:
            assert cluster.name == f"Broad {topic}"
        else:  # a single child is the same group seen from higher up
            assert cluster.name == by_id[cluster.children[0]].name
    multi_child_parents = sum(len(c.children) > 1 for c in clusters)
    tasks = [call.prompt.task for call in backend.calls]
    assert tasks.count("name_cluster") == N_TOPICS
    assert tasks.count("name_parent_cluster") == multi_child_parents


def _summary(clusters):
    return [
        (c.cluster_id, c.parent_id, tuple(c.member_ids), c.name, tuple(c.keywords), c.x, c.y)
        for c in clusters
    ]


def test_the_tree_is_deterministic(tree):
    clusters, _, _ = tree
    conversation_ids, texts, users, vectors = _items()
    llm, _ = _fake_llm()
    again = build_facet_tree("request", conversation_ids, texts, users, vectors, llm, _config())
    assert _summary(again) == _summary(clusters)


def test_without_an_llm_every_name_comes_from_keywords():
    conversation_ids, texts, users, vectors = _items()
    clusters = build_facet_tree("request", conversation_ids, texts, users, vectors, None, _config())
    assert {c.extra["name_source"] for c in clusters} == {"keywords"}
    for cluster in clusters:
        index = int(cluster.cluster_id.rsplit("-", 1)[1])
        fallback = (
            f"request cluster {index}"
            if cluster.level == 0
            else f"request group L{cluster.level}-{index}"
        )
        assert cluster.name == (", ".join(cluster.keywords[:3]) or fallback)


def test_parents_can_be_named_from_keywords_while_base_clusters_use_the_llm():
    conversation_ids, texts, users, vectors = _items()
    llm, backend = _fake_llm()
    config = _config(name_parents_with_llm=False)
    clusters = build_facet_tree("request", conversation_ids, texts, users, vectors, llm, config)
    assert {c.extra["name_source"] for c in clusters if c.level == 0} == {"llm"}
    assert {call.prompt.task for call in backend.calls} == {"name_cluster"}
    for parent in (c for c in clusters if c.level > 0 and len(c.children) > 1):
        assert parent.extra["name_source"] == "keywords"


def test_few_base_clusters_make_a_single_level():
    conversation_ids, texts, users, vectors = _items()
    keep = slice(0, 4 * PER_TOPIC)  # four topics, fewer than top_clusters
    clusters = build_facet_tree(
        "request",
        conversation_ids[keep],
        texts[keep],
        users[keep],
        vectors[keep],
        None,
        _config(),
    )
    assert [(c.level, c.parent_id) for c in clusters] == [(0, None)] * 4


def test_empty_and_mismatched_inputs():
    assert build_facet_tree("request", [], [], [], np.zeros((0, 4)), None, _config()) == []
    with pytest.raises(ValueError, match="one entry per item"):
        build_facet_tree("request", ["c"], ["t", "u"], ["u"], np.ones((1, 4)), None, _config())


@pytest.mark.parametrize(
    ("n_base", "branching", "top", "max_levels", "expected"),
    [
        (60, 4, 5, 4, [15, 4]),
        (1000, 4, 5, 4, [250, 62, 16, 4]),
        (1000, 4, 5, 2, [250, 62]),  # max_levels wins
        (6, 4, 5, 4, [2, 1]),  # two levels above the base even when the first is small
        (7, 2, 5, 4, [4, 2]),
        (5, 4, 5, 4, []),  # already at most top_clusters
        (1, 4, 5, 4, []),
        (3, 2, 1, 4, [2, 1]),
    ],
)
def test_parent_level_sizes(n_base, branching, top, max_levels, expected):
    config = _config(branching=branching, top_clusters=top, max_levels=max_levels)
    assert parent_level_sizes(n_base, config) == expected


@pytest.mark.parametrize("k", [0, 1, 2, 5, 40])
def test_map_positions_are_finite_scaled_and_deterministic(k):
    rng = np.random.default_rng(k)
    centroids = rng.normal(size=(k, 16)).astype(np.float32)
    positions = map_positions(centroids, seed=3)
    assert positions.shape == (k, 2)
    assert np.isfinite(positions).all()
    np.testing.assert_array_equal(positions, map_positions(centroids, seed=3))
    if k >= 2:
        assert np.abs(positions).max() == pytest.approx(1.0)
        assert len({tuple(p) for p in positions.round(6)}) == k


def test_parents_sit_at_the_item_weighted_mean_of_their_base_clusters(tree):
    clusters, _, _ = tree
    by_id = {c.cluster_id: c for c in clusters}
    for parent in (c for c in clusters if c.level == 1):
        children = [by_id[i] for i in parent.children]
        weights = np.array([child.extra["n_items"] for child in children], dtype=float)
        expected_x = float(np.dot(weights, [child.x for child in children]) / weights.sum())
        expected_y = float(np.dot(weights, [child.y for child in children]) / weights.sum())
        assert parent.x == pytest.approx(expected_x) and parent.y == pytest.approx(expected_y)


def test_nested_levels_refine_each_partition_by_the_levels_above(monkeypatch):
    calls = []

    def fake_partition(centroids, size, settings, seed):
        calls.append((len(centroids), size))
        return {
            (6, 3): np.array([0, 0, 1, 1, 2, 2]),
            (6, 2): np.array([0, 0, 0, 1, 1, 1]),
            (2, 1): np.array([0, 0]),
        }[(len(centroids), size)]

    monkeypatch.setattr(hierarchy_module, "partition_base_clusters", fake_partition)
    levels = nested_levels(np.eye(6), np.ones(6), [3, 2, 1], RunConfig())
    # the levels below the top are partitioned from the base clusters, highest first; the
    # top groups the 2 nodes of the level below it
    assert calls == [(6, 2), (6, 3), (2, 1)]
    # level 1: (own group, node above) pairs (0,0) (0,0) (1,0) (1,1) (2,1) (2,1) -> four
    # nodes, numbered largest first (ties: the lower pair first)
    assert levels[0].tolist() == [0, 0, 2, 3, 1, 1]
    assert levels[1].tolist() == [0, 0, 0, 1, 1, 1]
    assert levels[2].tolist() == [0] * 6


@pytest.mark.parametrize("grouping", ["spectral", "ward"])
def test_grouping_recovers_nested_topic_families(grouping):
    # 3 families x 4 topics x 12 base clusters: base clusters of one topic are closest,
    # then topics of one family (a topic has more base clusters than the graph's neighbours).
    rng = np.random.default_rng(4)
    family = 4.0 * rng.normal(size=(3, DIM))
    topic = np.repeat(family, 4, axis=0) + 1.0 * rng.normal(size=(12, DIM))
    base = np.repeat(topic, 12, axis=0) + 0.1 * rng.normal(size=(144, DIM))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    config = RunConfig(hierarchy=HierarchyConfig(grouping=grouping))
    levels = nested_levels(base, np.full(144, 5), [12, 3], config)
    truth_topic, truth_family = np.repeat(np.arange(12), 12), np.repeat(np.arange(3), 48)
    assert adjusted_rand_score(truth_topic, levels[0]) == 1.0
    assert adjusted_rand_score(truth_family, levels[1]) == 1.0
