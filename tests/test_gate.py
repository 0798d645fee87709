"""The privacy gate: thresholds on distinct users, roll-up, complementary suppression, text."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clio.config import PrivacyConfig
from clio.gate import GateResult, ReleasedBreakdown, ReleasedCluster, apply_gate
from clio.records import Cluster


def node(
    cluster_id: str,
    level: int,
    parent: str | None,
    members: list[str] | None = None,
    facet: str = "request",
    **fields,
) -> Cluster:
    return Cluster(
        facet=facet,
        level=level,
        cluster_id=cluster_id,
        parent_id=parent,
        member_ids=list(members or []),
        name=fields.pop("name", f"name {cluster_id}"),
        description=fields.pop("description", f"about {cluster_id}"),
        **fields,
    )


def conversations(prefix: str, n: int, n_users: int) -> dict[str, str]:
    """`n` conversations `<prefix>0..` spread round-robin over `n_users` users."""
    return {f"{prefix}{i}": f"user-{prefix}{i % n_users}" for i in range(n)}


def gate(
    clusters: list[Cluster],
    users: dict[str, str],
    min_users: int,
    min_conversations: int,
    facet_values: dict[str, dict[str, object]] | None = None,
    **options,
) -> GateResult:
    options.setdefault("breakdown_facets", [])
    return apply_gate(
        clusters,
        users,
        facet_values or {},
        PrivacyConfig(min_users=min_users, min_conversations=min_conversations),
        **options,
    )


def released_ids(result: GateResult) -> set[str]:
    return {c.cluster_id for c in result.clusters}


@pytest.mark.parametrize(
    ("n_conversations", "n_users", "min_users", "min_conversations", "released", "reason"),
    [
        (40, 1, 2, 2, False, "cluster_below_min_users"),  # one heavy user is never enough
        (40, 2, 2, 2, True, None),
        (4, 4, 5, 1, False, "cluster_below_min_users"),
        (5, 5, 5, 1, True, None),  # exactly at the threshold
        (5, 5, 1, 6, False, "cluster_below_min_conversations"),
        (6, 3, 3, 6, True, None),
        (3, 1, 2, 4, False, "cluster_below_min_users"),  # below both: one reason, counted once
    ],
)
def test_single_cluster_thresholds_count_distinct_users(
    n_conversations, n_users, min_users, min_conversations, released, reason
):
    users = conversations("c", n_conversations, n_users)
    result = gate([node("a", 0, None, list(users))], users, min_users, min_conversations)

    assert released_ids(result) == ({"a"} if released else set())
    assert result.suppressed == ({} if released else {reason: 1})
    if released:
        assert (result.clusters[0].n_users, result.clusters[0].n_conversations) == (
            n_users,
            n_conversations,
        )


def test_repeated_member_ids_count_once():
    users = conversations("c", 3, 3)
    # A list facet can put one conversation into a cluster several times.
    members = ["c0", "c0", "c1", "c1", "c2", "c2"]
    result = gate([node("a", 0, None, members)], users, 3, 4)
    assert result.clusters == []
    assert result.suppressed == {"cluster_below_min_conversations": 1}


def test_parent_released_with_suppressed_children_counts_full_membership():
    users = {
        **conversations("a", 10, 5),
        **conversations("b", 10, 5),
        **conversations("c", 2, 1),
        **conversations("d", 2, 1),
    }
    users["b0"] = "user-a0"  # one user in two children is one distinct user of the parent
    clusters = [
        node("p", 1, None),
        node("A", 0, "p", [f"a{i}" for i in range(10)]),
        node("B", 0, "p", [f"b{i}" for i in range(10)]),
        node("C", 0, "p", ["c0", "c1"]),
        node("D", 0, "p", ["d0", "d1"]),
    ]
    result = gate(clusters, users, 3, 3)

    assert released_ids(result) == {"p", "A", "B"}
    parent = next(c for c in result.clusters if c.cluster_id == "p")
    assert parent.n_conversations == 24
    # children have 5 + 6 + 1 + 1 users, but user-a0 is in A and B: 12 distinct
    assert parent.n_users == len(set(users.values())) == 12
    assert result.suppressed == {"cluster_below_min_users": 2}


def test_parent_with_own_members_and_children_counts_their_union():
    users = conversations("c", 12, 12)
    clusters = [
        node("p", 1, None, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]),  # overlaps child x
        node("x", 0, "p", ["c4", "c5", "c6", "c7"]),
        node("y", 0, "p", ["c8", "c9", "c10", "c11"]),
    ]
    result = gate(clusters, users, 1, 1)
    parent = next(c for c in result.clusters if c.cluster_id == "p")
    assert (parent.n_users, parent.n_conversations) == (12, 12)


@pytest.mark.parametrize(
    ("sizes", "expected_released", "expected_suppressed"),
    [
        # child sizes (conversations, each its own user) under one parent; min 3/3
        (
            {"A": 10, "B": 8, "C": 2},
            {"p", "A"},
            {"cluster_below_min_users": 1, "complementary_suppression": 1},
        ),
        ({"A": 10, "B": 8, "C": 2, "D": 1}, {"p", "A", "B"}, {"cluster_below_min_users": 2}),
        ({"A": 10, "B": 8, "C": 9}, {"p", "A", "B", "C"}, {}),
        ({"A": 2, "B": 1}, {"p"}, {"cluster_below_min_users": 2}),
        (
            {"A": 10, "B": 4, "C": 5, "D": 2},
            {"p", "A", "C"},
            {"cluster_below_min_users": 1, "complementary_suppression": 1},
        ),
    ],
)
def test_complementary_suppression_under_a_released_parent(
    sizes, expected_released, expected_suppressed
):
    users: dict[str, str] = {}
    clusters = [node("p", 1, None)]
    for child, size in sizes.items():
        members = conversations(child, size, size)
        users.update(members)
        clusters.append(node(child, 0, "p", list(members)))
    result = gate(clusters, users, 3, 3)

    assert released_ids(result) == expected_released
    assert result.suppressed == expected_suppressed


def test_complementary_suppression_at_the_root_cascades_to_children():
    users = {
        **conversations("big", 20, 20),
        **conversations("mid", 8, 8),
        **conversations("tiny", 2, 2),
    }
    clusters = [
        node("T1", 1, None, [f"big{i}" for i in range(20)]),
        node("T2", 1, None),
        node("m1", 0, "T2", [f"mid{i}" for i in range(4)]),
        node("m2", 0, "T2", [f"mid{i}" for i in range(4, 8)]),
        node("T3", 1, None, ["tiny0", "tiny1"]),
    ]
    result = gate(clusters, users, 3, 3)

    # T3 is too small; T2 (smaller than T1) goes with it so the facet total minus
    # T1 cannot reveal T3; T2's children go with their parent.
    assert released_ids(result) == {"T1"}
    assert result.suppressed == {
        "cluster_below_min_users": 1,
        "complementary_suppression": 1,
        "parent_suppressed": 2,
    }


def test_facets_are_separate_trees():
    users = {**conversations("r", 6, 6), **conversations("t", 6, 6)}
    clusters = [
        node("r-big", 0, None, [f"r{i}" for i in range(6)], facet="request"),
        node("t-a", 0, None, ["t0", "t1", "t2"], facet="task"),
        node("t-b", 0, None, ["t3", "t4", "t5"], facet="task"),
    ]
    result = gate(clusters, users, 3, 3)
    assert [(c.facet, c.cluster_id, c.share) for c in result.clusters] == [
        ("request", "r-big", 1.0),
        ("task", "t-a", 0.5),
        ("task", "t-b", 0.5),
    ]


@pytest.mark.parametrize(
    ("cells", "expected", "expected_suppressed"),
    [
        # value -> (conversations, distinct users); min 3/3
        (
            {"en": (8, 8), "fr": (3, 3), "de": (1, 1)},
            {"en"},
            {"cell_below_threshold": 1, "cell_complementary_suppression": 1},
        ),
        ({"en": (8, 8), "fr": (4, 1), "de": (1, 1)}, {"en"}, {"cell_below_threshold": 2}),
        ({"en": (8, 8), "fr": (3, 3)}, {"en", "fr"}, {}),
        (
            {"en": (8, 8), "fr": (5, 5), "es": (4, 4), "de": (2, 2)},
            {"en", "fr"},
            {"cell_below_threshold": 1, "cell_complementary_suppression": 1},
        ),
        (
            {"en": (3, 1), "fr": (3, 3)},
            set(),
            {"cell_below_threshold": 1, "cell_complementary_suppression": 1},
        ),
    ],
)
def test_breakdown_cells_are_suppressed_like_clusters(cells, expected, expected_suppressed):
    users: dict[str, str] = {}
    values: dict[str, dict[str, object]] = {}
    for language, (n, n_users) in cells.items():
        for conversation, user in conversations(language, n, n_users).items():
            users[conversation] = user
            values[conversation] = {"language": language}
    result = gate(
        [node("a", 0, None, list(users))], users, 3, 3, values, breakdown_facets=["language"]
    )

    assert {b.value for b in result.breakdowns} == expected
    for b in result.breakdowns:
        assert (b.n_conversations, b.n_users) == cells[b.value]
    assert result.suppressed == expected_suppressed


def test_breakdown_values_are_stringified_and_only_for_released_clusters():
    users = {**conversations("c", 9, 9), **conversations("s", 2, 2)}
    values: dict[str, dict[str, object]] = {
        **{f"c{i}": {"concerning": 2.0} for i in range(3)},
        **{f"c{i}": {"concerning": 4} for i in range(3, 6)},
        **{f"c{i}": {"concerning": 2.5} for i in range(6, 9)},
        "s0": {"concerning": 5.0},
        "s1": {"concerning": 5.0},
    }
    clusters = [
        node("p", 1, None),
        node("a", 0, "p", [f"c{i}" for i in range(6)]),
        node("b", 0, "p", [f"c{i}" for i in range(6, 9)]),
        node("small", 0, "p", ["s0", "s1"]),
        node("a2", 0, "p", ["s0", "s1", "c0"]),  # as small as b, first by id
    ]
    result = gate(clusters, users, 3, 3, values, breakdown_facets=["concerning"])

    # "small" is below the thresholds and "a2" goes with it (complementary)
    assert released_ids(result) == {"p", "a", "b"}
    # p's cell "5" (2 conversations) is too small, so its smallest released cell "2" goes too
    assert [(b.cluster_id, b.value, b.n_conversations) for b in result.breakdowns] == [
        ("a", "2", 3),
        ("a", "4", 3),
        ("b", "2.5", 3),
        ("p", "2.5", 3),
        ("p", "4", 3),
    ]


def test_list_valued_breakdown_counts_each_item_once_per_conversation():
    users = conversations("c", 4, 4)
    values = {c: {"values": ["honesty", "care", "honesty"]} for c in users}
    result = gate(
        [node("a", 0, None, list(users))], users, 4, 4, values, breakdown_facets=["values"]
    )
    assert [(b.value, b.n_users, b.n_conversations) for b in result.breakdowns] == [
        ("care", 4, 4),
        ("honesty", 4, 4),
    ]


def test_concern_mean_over_valid_values_and_share():
    users = {**conversations("c", 6, 6), **conversations("d", 4, 4)}
    values: dict[str, dict[str, object]] = {
        "c0": {"concerning": 1.0},
        "c1": {"concerning": 5},
        "c2": {"concerning": None},
        "c3": {"concerning": "not a number"},
        "c4": {"concerning": float("nan")},
        "c5": {},
    }
    clusters = [
        node("scored", 0, None, [f"c{i}" for i in range(6)]),
        node("unscored", 0, None, [f"d{i}" for i in range(4)]),
    ]
    result = gate(clusters, users, 1, 1, values, total_conversations={"request": 20})
    by_id = {c.cluster_id: c for c in result.clusters}
    assert by_id["scored"].concern_mean == 3.0
    assert by_id["unscored"].concern_mean is None
    assert by_id["scored"].share == 6 / 20
    assert by_id["unscored"].share == 4 / 20

    no_concern = gate(clusters, users, 1, 1, values, concern_facet=None)
    assert [c.concern_mean for c in no_concern.clusters] == [None, None]
    # Without totals: the conversations with a value for the facet, at least the clustered ones.
    assert [c.share for c in no_concern.clusters] == [0.6, 0.4]


def test_total_smaller_than_clustered_conversations_is_an_error():
    users = conversations("c", 4, 4)
    with pytest.raises(ValueError, match="less than the 4 conversations"):
        gate([node("a", 0, None, list(users))], users, 1, 1, total_conversations={"request": 3})


def test_text_check_withholds_names_descriptions_keywords_and_values():
    users = conversations("c", 6, 6)
    values = {c: {"language": "en" if i < 3 else "mail@example.com"} for i, c in enumerate(users)}
    clusters = [
        node("safe", 0, None, ["c0", "c1", "c2"], keywords=["travel", "call bob@x.io", "visa"]),
        node(
            "leaky",
            0,
            None,
            ["c3", "c4", "c5"],
            name="help for ann@example.com",
            description="writes to ann@example.com",
            keywords=["email"],
        ),
    ]
    checked: list[str] = []

    def no_at_sign(text: str) -> bool:
        checked.append(text)
        return "@" not in text

    result = gate(
        clusters, users, 3, 3, values, breakdown_facets=["language"], text_check=no_at_sign
    )
    by_id = {c.cluster_id: c for c in result.clusters}

    assert (by_id["leaky"].name, by_id["leaky"].description) == ("(withheld)", "")
    assert by_id["leaky"].keywords == ["email"]
    assert (by_id["safe"].name, by_id["safe"].description) == ("name safe", "about safe")
    assert by_id["safe"].keywords == ["travel", "visa"]
    assert [(b.cluster_id, b.value) for b in result.breakdowns] == [("safe", "en")]
    assert result.suppressed == {
        "cell_value_withheld_pii": 1,
        "keyword_withheld_pii": 1,
        "text_withheld_pii": 2,
    }
    assert "help for ann@example.com" in checked


def test_suppressed_cluster_texts_are_never_checked_or_released():
    users = conversations("c", 2, 1)
    seen: list[str] = []
    result = gate(
        [node("a", 0, None, list(users), name="secret name")],
        users,
        2,
        1,
        text_check=lambda text: seen.append(text) or True,
    )
    assert result.clusters == [] and seen == []


def test_output_order_is_deterministic():
    users = conversations("c", 30, 30)
    values = {c: {"language": ["en", "fr", "de"][i % 3]} for i, c in enumerate(users)}
    clusters = [node("r", 1, None)] + [
        node(f"k{i}", 0, "r", [f"c{j}" for j in range(i * 6, i * 6 + 6)]) for i in range(5)
    ]
    shuffled = clusters[:]
    random.Random(3).shuffle(shuffled)
    first = gate(clusters, users, 2, 2, values, breakdown_facets=["language"])
    second = gate(shuffled, users, 2, 2, values, breakdown_facets=["language"])

    assert first == second
    assert [c.cluster_id for c in first.clusters] == ["k0", "k1", "k2", "k3", "k4", "r"]
    keys = [(b.cluster_id, b.facet, b.value) for b in first.breakdowns]
    assert keys == sorted(keys) and len(keys) == 18


@pytest.mark.parametrize(
    ("clusters", "users", "message"),
    [
        (
            [node("a", 0, None, ["c0"]), node("a", 0, None, ["c0"], facet="task")],
            {"c0": "u"},
            "appears twice",
        ),
        ([node("a", 0, "missing", ["c0"])], {"c0": "u"}, "not among the clusters"),
        ([node("p", 0, None), node("a", 0, "p", ["c0"])], {"c0": "u"}, "a parent must be higher"),
        (
            [node("p", 1, None, facet="task"), node("a", 0, "p", ["c0"])],
            {"c0": "u"},
            "in another facet",
        ),
        ([node("a", 0, None, ["c0", "c1"])], {"c0": "u"}, "1 cluster memberships"),
    ],
)
def test_invalid_trees_are_clear_errors(clusters, users, message):
    with pytest.raises(ValueError, match=message):
        gate(clusters, users, 1, 1)


# -- property: whatever the tree, the release keeps the invariants --------------


@st.composite
def trees(draw):
    n_conversations = draw(st.integers(1, 40))
    n_users = draw(st.integers(1, 12))
    user_of = draw(
        st.lists(st.integers(0, n_users - 1), min_size=n_conversations, max_size=n_conversations)
    )
    users = {f"c{i}": f"u{u}" for i, u in enumerate(user_of)}
    n_base = draw(st.integers(1, 8))
    base_of = draw(
        st.lists(st.integers(0, n_base - 1), min_size=n_conversations, max_size=n_conversations)
    )
    clusters = [
        node(f"L0-{b}", 0, None, [f"c{i}" for i, x in enumerate(base_of) if x == b])
        for b in range(n_base)
    ]
    current, level = clusters[:], 1
    while len(current) > 1 and draw(st.booleans()):
        n_parents = draw(st.integers(1, len(current) - 1))
        parent_of = draw(
            st.lists(st.integers(0, n_parents - 1), min_size=len(current), max_size=len(current))
        )
        parents = [node(f"L{level}-{p}", level, None) for p in sorted(set(parent_of))]
        by_index = {p: parents[i] for i, p in enumerate(sorted(set(parent_of)))}
        for child, p in zip(current, parent_of, strict=True):
            child.parent_id = by_index[p].cluster_id
        clusters.extend(parents)
        current, level = parents, level + 1
    languages = draw(
        st.lists(
            st.sampled_from(["en", "fr", "de", None]),
            min_size=n_conversations,
            max_size=n_conversations,
        )
    )
    values = {f"c{i}": {"language": lang} for i, lang in enumerate(languages)}
    min_users = draw(st.integers(1, 5))
    min_conversations = draw(st.integers(1, 8))
    return clusters, users, values, min_users, min_conversations


def _full_members(clusters: list[Cluster]) -> dict[str, set[str]]:
    children = defaultdict(list)
    for c in clusters:
        if c.parent_id:
            children[c.parent_id].append(c.cluster_id)
    by_id = {c.cluster_id: c for c in clusters}

    def members(cid: str) -> set[str]:
        out = set(by_id[cid].member_ids)
        for child in children[cid]:
            out |= members(child)
        return out

    return {cid: members(cid) for cid in by_id}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_every_release_meets_thresholds_and_keeps_the_tree(tree):
    clusters, users, values, min_users, min_conversations = tree
    result = gate(
        clusters, users, min_users, min_conversations, values, breakdown_facets=["language"]
    )
    members = _full_members(clusters)
    released = {c.cluster_id: c for c in result.clusters}

    for c in result.clusters:
        assert isinstance(c, ReleasedCluster)
        assert c.n_conversations == len(members[c.cluster_id]) >= min_conversations
        assert c.n_users == len({users[m] for m in members[c.cluster_id]}) >= min_users
        assert c.parent_id is None or c.parent_id in released

    groups = defaultdict(list)
    for c in clusters:
        groups[c.parent_id].append(c.cluster_id)
    for parent, children in groups.items():
        if parent is not None and parent not in released:
            continue
        hidden = [child for child in children if child not in released]
        assert len(hidden) != 1 or len(children) == 1

    cells = defaultdict(list)
    for b in result.breakdowns:
        assert isinstance(b, ReleasedBreakdown)
        assert b.cluster_id in released
        in_cell = [m for m in members[b.cluster_id] if values[m]["language"] == b.value]
        assert b.n_conversations == len(in_cell) >= min_conversations
        assert b.n_users == len({users[m] for m in in_cell}) >= min_users
        cells[b.cluster_id].append(b.value)
    for cid in released:
        present = {values[m]["language"] for m in members[cid]} - {None}
        assert len(present - set(cells[cid])) != 1 or len(present) == 1

    assert all(isinstance(v, int) and v > 0 for v in result.suppressed.values())


def test_each_distinct_text_is_checked_once():
    users = conversations("c", 6, 6)
    values = {c: {"language": "en"} for c in users}
    clusters = [
        node("a", 0, None, ["c0", "c1", "c2"], keywords=["travel"]),
        node("b", 0, None, ["c3", "c4", "c5"], keywords=["travel"]),
    ]
    checked: list[str] = []
    result = gate(clusters, users, 3, 3, values, breakdown_facets=["language"],
                  text_check=lambda text: checked.append(text) or True)  # fmt: skip
    assert len(result.breakdowns) == 2
    assert sorted(checked) == sorted(["name a", "about a", "name b", "about b", "travel", "en"])
