import re

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from clio import hierarchy as hierarchy_module
from clio.cluster import unit_rows
from clio.config import (
    ClusterConfig,
    DescribeConfig,
    HierarchyConfig,
    LLMConfig,
    PrivacyConfig,
    RunConfig,
)
from clio.extractive import FacetWords, distinct_names, joined_names, name_clusters
from clio.hierarchy import (
    InheritedParents,
    TreeSettings,
    build_facet_tree,
    nested_levels,
    parent_level_sizes,
    parent_procedure,
)
from clio.hierarchy_llm import name_key
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


def _run_config(names: str = "llm", **hierarchy) -> RunConfig:
    """The tests' config; names from the LLM unless `names` says otherwise (the default
    backend, local, would name extractively)."""
    return RunConfig(
        cluster=ClusterConfig(method="kmeans", target_cluster_size=PER_TOPIC, seed=1),
        privacy=PrivacyConfig(min_users=2),
        describe=DescribeConfig(names=names),
        hierarchy=HierarchyConfig(**hierarchy),
    )


def _config(**hierarchy) -> TreeSettings:
    return TreeSettings.from_config(_run_config(**hierarchy))


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


def test_auto_names_are_extractive_on_the_local_model_and_llm_otherwise():
    local = _run_config(names="auto")
    remote = local.model_copy(update={"llm": LLMConfig(backend="anthropic", model="m")})
    assert TreeSettings.from_config(local).names == "extractive"
    assert TreeSettings.from_config(remote).names == "llm"


def test_extractive_names_come_from_member_texts_and_ask_no_llm():
    conversation_ids, texts, users, vectors = _items()
    llm, backend = _fake_llm()
    config = _config(names="extractive")
    clusters = build_facet_tree("request", conversation_ids, texts, users, vectors, llm, config)
    assert backend.calls == []
    assert {c.extra["name_source"] for c in clusters} == {"extractive"}
    member_words = {w for t in texts for w in t.lower().split()}
    for cluster in clusters:
        # a parent lists its base clusters' names: "A, b and c"
        assert set(cluster.name.lower().replace(",", " ").split()) - {"and"} <= member_words
        assert cluster.description.startswith("Requests such as")
    # a base cluster is named after its own topic word (texts: "<topic> <family> ...")
    base = [c for c in clusters if c.level == 0]
    assert all(_word(_topic_of_members(c, texts)) in c.name.lower() for c in base)
    # a parent's name starts with the name of the largest base cluster under it
    by_id = {c.cluster_id: c for c in clusters}
    for parent in (c for c in clusters if c.level == 1 and len(c.children) > 1):
        children = [by_id[k] for k in parent.children]
        most = max(c.extra["n_items"] for c in children)
        largest = [c.name.lower() for c in children if c.extra["n_items"] == most]
        assert any(parent.name.lower().startswith(name) for name in largest)


def test_joined_names_list_distinct_names_within_the_length_limit():
    assert joined_names(["Steal money", "Prank", "steal money", "Gun"]) == (
        "Steal money, prank and gun"
    )
    assert joined_names(["Kill", "Prank"]) == "Kill and prank"
    long = ["A" * 40, "B" * 15, "C" * 30]
    assert joined_names(long) == "A" * 40 + " and b" + "B" * 14


def _topic_of_members(cluster, texts) -> int:
    first = texts[cluster.extra["item_indices"][0]].split()[0]
    return int("".join(str(ord(ch) - ord("a")) for ch in first[1:]))


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
    assert parent_level_sizes(n_base, config.hierarchy) == expected


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
    levels = nested_levels(np.eye(6), np.ones(6), [3, 2, 1], HierarchyConfig(), 0)
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
    levels = nested_levels(base, np.full(144, 5), [12, 3], HierarchyConfig(grouping=grouping), 0)
    truth_topic, truth_family = np.repeat(np.arange(12), 12), np.repeat(np.arange(3), 48)
    assert adjusted_rand_score(truth_topic, levels[0]) == 1.0
    assert adjusted_rand_score(truth_family, levels[1]) == 1.0


# -- the LLM procedure (Clio's): proposals, merging, assignment, renaming -------------------

FAMILIES = ("Cooking", "Travel", "Music")


def _topic_of(text: str) -> int:
    word = re.search(r"\bz([a-j]{3})\b", text).group(1)
    return int("".join(str(ord(c) - ord("a")) for c in word))


def _family_of(text: str) -> str:
    return FAMILIES[_topic_of(text) % len(FAMILIES)]


def _llm_config(**hierarchy) -> TreeSettings:
    settings = {"procedure": "llm", "neighbourhood_size": 20, **hierarchy}
    return _config(**settings)


def _procedure_llm(*, propose=None, merge=None, assign=None) -> tuple[StructuredLLM, FakeBackend]:
    """Base clusters are named after their topic word and described by their family; the
    proposals are the families present (the second neighbourhood writes them in lower case
    with a dot, and calls music "Songs and music"); the merge answer lists the families."""

    def groups(call) -> list[str]:
        lines = call.prompt.input.split("Nearby groups elsewhere:")[0].splitlines()
        return [line[2:] for line in lines if line.startswith("- ")]

    def answer(call):
        task, text = call.prompt.task, call.prompt.input
        if task == "name_cluster":
            family = _family_of(text)
            return {
                "name": f"Ask about z{re.search(r'z([a-j]{3})', text).group(1)}",
                "description": f"Requests about {family.lower()}.",
            }
        if task == "propose_parents":
            if propose is not None:
                return propose(call)
            names = sorted({_family_of(group) for group in groups(call)})
            if "zaaa" in text:  # one neighbourhood words its proposals differently
                names = [n.lower() + "." if n != "Music" else "Songs and music" for n in names]
            return {"names": names}
        if task == "merge_parents":
            return merge(call) if merge is not None else {"names": list(FAMILIES)}
        if task == "assign_parent":
            if assign is not None:
                return assign(call)
            return {"category": _family_of(text.splitlines()[0])}
        if task == "name_parent_cluster":
            keyword = re.search(r"Distinctive words: (\w+)", text).group(1)
            return {"name": f"All about {keyword}", "description": f"Groups on {keyword}."}
        raise AssertionError(f"unexpected task {task}")

    backend = FakeBackend(answer)
    return StructuredLLM(backend, LLMConfig(max_retries=0), backoff_seconds=0.0), backend


def _llm_tree(config=None, **fakes):
    conversation_ids, texts, users, vectors = _items()
    llm, backend = _procedure_llm(**fakes)
    clusters = build_facet_tree(
        "request", conversation_ids, texts, users, vectors, llm, config or _llm_config()
    )
    return clusters, backend


def _family_of_base(cluster) -> str:
    return FAMILIES[_topic_of(cluster.name) % len(FAMILIES)]


def test_llm_procedure_proposes_merges_assigns_and_renames():
    clusters, backend = _llm_tree()
    by_id = {c.cluster_id: c for c in clusters}
    tasks = [call.prompt.task for call in backend.calls]
    assert tasks.count("name_cluster") == N_TOPICS
    assert tasks.count("propose_parents") == 3  # 60 children in neighbourhoods of ~20
    assert tasks.count("merge_parents") == 1  # all proposals fit one merge call
    assert tasks.count("assign_parent") == N_TOPICS  # every child picks its parent
    assert tasks.count("name_parent_cluster") == 3  # every parent renamed
    # the three families are the top level: the merged duplicates made no extra parents
    assert sorted({c.level for c in clusters}) == [0, 1]
    parents = [c for c in clusters if c.level == 1]
    assert sorted(p.name for p in parents) == sorted(f"All about {f}" for f in FAMILIES)
    for parent in parents:
        family = parent.name.removeprefix("All about ")
        assert parent.description == f"Groups on {family}."
        assert parent.extra["name_source"] == "llm"
        assert {_family_of_base(by_id[c]) for c in parent.children} == {family}
    assert sum(len(p.children) for p in parents) == N_TOPICS


def test_llm_procedure_prompts_show_their_neighbourhood_and_nearby_outside_clusters():
    _, backend = _llm_tree()
    proposals = [
        call.prompt.input for call in backend.calls if call.prompt.task == "propose_parents"
    ]
    listed = []
    for text in proposals:
        inside, outside = text.split("Nearby groups elsewhere:")
        inside_names = {line[2:].split(":")[0] for line in inside.splitlines() if line[:2] == "- "}
        outside_names = {line[2:] for line in outside.splitlines() if line[:2] == "- "}
        assert len(outside_names) == 5 and not inside_names & outside_names
        # 15 parents wanted for 60 children: one per four children of the neighbourhood
        assert inside.startswith(f"Wanted: about {round(len(inside_names) / 4)} categories")
        listed += sorted(inside_names)
    assert len(listed) == len(set(listed)) == N_TOPICS  # every child in one neighbourhood
    merge = next(c.prompt.input for c in backend.calls if c.prompt.task == "merge_parents")
    # "cooking." and "Cooking" are one proposal before the LLM merges the rest
    proposed = [line[2:] for line in merge.splitlines() if line.startswith("- ")]
    assert sorted(map(name_key, proposed)) == ["cooking", "music", "music song", "travel"]


def test_unmatched_choices_fall_back_to_the_category_sharing_most_words():
    # The model answers nonsense for every child: each falls back by words, and its
    # description ("Requests about cooking.") names its family.
    clusters, _ = _llm_tree(assign=lambda call: {"category": "Something else entirely"})
    by_id = {c.cluster_id: c for c in clusters}
    parents = [c for c in clusters if c.level == 1]
    assert len(parents) == 3
    for parent in parents:
        assert len({_family_of_base(by_id[c]) for c in parent.children}) == 1


def _listed(call) -> list[str]:
    return [line[2:] for line in call.prompt.input.splitlines() if line.startswith("- ")]


def test_llm_procedure_stops_when_the_model_merges_nothing():
    # one proposal per child, nothing merged: a level would not shrink, so none is added
    def one_per_child(call):
        return {"names": [line.split(":")[0] for line in _listed(call) if ":" in line]}

    def echo(call):
        return {"category": call.prompt.input.splitlines()[0].split(": ")[1]}

    config = _llm_config(neighbourhood_size=10)
    clusters, backend = _llm_tree(
        config, propose=one_per_child, merge=lambda call: {"names": _listed(call)}, assign=echo
    )
    assert {c.level for c in clusters} == {0}
    assert all(c.parent_id is None for c in clusters)
    tasks = [call.prompt.task for call in backend.calls]
    assert tasks.count("propose_parents") == 6 and tasks.count("merge_parents") == 2


def test_llm_procedure_repeats_until_the_top_is_small_enough():
    # The first level splits each family in two ("Cooking east", "Cooking west"); the second
    # merges them, so the tree has two parent levels and a top of three.
    def half(text: str) -> str:
        return f"{_family_of(text)} {('east', 'west')[_topic_of(text) % 2]}"

    def propose(call):
        groups = [g for g in _listed(call) if g.startswith("Ask about")]
        return {"names": sorted({half(g) for g in groups})} if groups else {"names": FAMILIES}

    def merge(call):
        return {"names": sorted(set(_listed(call)))}

    def assign(call):
        child = call.prompt.input.splitlines()[0]
        if "Ask about" in child:
            return {"category": half(child)}
        return {"category": next(f for f in FAMILIES if f in child)}

    clusters, backend = _llm_tree(
        _llm_config(top_clusters=3), propose=propose, merge=merge, assign=assign
    )
    counts = [sum(c.level == level for c in clusters) for level in (0, 1, 2)]
    assert counts == [N_TOPICS, 6, 3]
    assert max(c.level for c in clusters) == 2


def test_auto_procedure_uses_the_llm_only_with_a_capable_backend():
    llm, _ = _procedure_llm()
    local = _run_config()
    remote = local.model_copy(update={"llm": LLMConfig(backend="anthropic", model="m")})
    kept = remote.model_copy(update={"hierarchy": HierarchyConfig(procedure="centroids")})
    keywords = remote.model_copy(update={"hierarchy": HierarchyConfig(name_parents_with_llm=False)})

    def procedure(llm, config: RunConfig) -> str:
        return parent_procedure(llm, TreeSettings.from_config(config))

    assert procedure(llm, local) == "centroids"
    assert procedure(llm, remote) == "llm"
    assert procedure(None, remote) == "centroids"
    assert procedure(llm, _run_config(procedure="llm")) == "llm"
    assert procedure(llm, kept) == "centroids"
    assert procedure(llm, keywords) == "centroids"


def test_llm_procedure_is_deterministic():
    first, _ = _llm_tree()
    again, _ = _llm_tree()
    assert _summary(first) == _summary(again)


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("Cooking", "cooking.", True),
        ("Help with job applications", "Job application", True),
        ("Travel and music", "Music and travel", True),
        ("Travel", "Music", False),
        ("Write poems", "Write poem stories", False),
    ],
)
def test_name_key_merges_only_names_of_the_same_words(first, second, same):
    assert (name_key(first) == name_key(second)) is same


@pytest.mark.parametrize(
    ("n_children", "branching", "top", "expected"),
    [(150, 4, 5, 38), (38, 4, 5, 10), (10, 4, 5, 5), (6, 4, 5, 5), (2, 4, 5, 1), (40, 2, 3, 20)],
)
def test_next_level_size(n_children, branching, top, expected):
    settings = HierarchyConfig(branching=branching, top_clusters=top)
    assert hierarchy_module.next_level_size(n_children, settings) == expected


def _base_groups(clusters, level: int) -> set[frozenset[frozenset[str]]]:
    """The parents at `level` as sets of their base clusters (each a set of members)."""
    by_id = {c.cluster_id: c for c in clusters}
    groups: dict[str, set[frozenset[str]]] = {}
    for base in (c for c in clusters if c.level == 0):
        node = base
        while node.level < level:
            node = by_id[node.parent_id]
        groups.setdefault(node.cluster_id, set()).add(frozenset(base.member_ids))
    return {frozenset(g) for g in groups.values()}


def test_inherited_parents_keep_the_previous_grouping():
    """A build given a previous tree's parents groups its base clusters as that tree did,
    whatever its own grouping settings; the control, grouped anew with other settings,
    groups them differently."""
    conversation_ids, texts, users, vectors = _items()
    settings = _config(names="extractive")
    first = build_facet_tree("request", conversation_ids, texts, users, vectors, None, settings)
    base = [c for c in first if c.level == 0]
    centroids = unit_rows(np.stack([vectors[c.extra["item_indices"]].sum(axis=0) for c in base]))
    ordered = sorted(first, key=lambda c: (c.level, c.cluster_id))
    inherited = InheritedParents.of_tree(ordered, centroids)
    assert inherited is not None and len(inherited.ancestors) >= 1

    regrouped = _config(names="extractive", grouping="ward", branching=4)
    kept = build_facet_tree(
        "request", conversation_ids, texts, users, vectors, None, regrouped, inherited=inherited
    )
    anew = build_facet_tree("request", conversation_ids, texts, users, vectors, None, regrouped)
    assert _base_groups(kept, 1) == _base_groups(first, 1)
    assert _base_groups(anew, 1) != _base_groups(first, 1)


def test_sibling_base_clusters_get_distinct_names():
    """Two clusters whose best phrase is the same word: the one it fits best keeps it, the
    other takes its next supported phrase; the control, `name_clusters` alone, names both
    "People"."""
    texts = (
        [f"people thing{i}" for i in range(6)]
        + [f"people thing{i + 10}" for i in range(10)]
        + [f"women thing{i + 20}" for i in range(2)]
        + [f"cars engine{i}" for i in range(60)]
    )
    users = [f"u{i}" for i in range(len(texts))]
    labels = np.array([0] * 6 + [1] * 12 + [2] * 60)
    rng = np.random.default_rng(0)
    vectors = unit_rows(rng.normal(size=(len(texts), 8)).astype(np.float32))
    centroids = unit_rows(np.stack([vectors[labels == c].sum(axis=0) for c in range(3)]))
    named = name_clusters(FacetWords.of(texts, users), labels, vectors, centroids, {}, 2)
    assert [found[0] for _, found in named] == ["People", "People", "Cars"]
    renamed = distinct_names(named, {})
    assert [found[0] for _, found in renamed] == ["People", "Women", "Cars"]
    assert renamed[1][0][0].text == "women"  # its ranked phrases now lead with its name
