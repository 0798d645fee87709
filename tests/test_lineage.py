"""Lineage between builds: matching, relations, roots and the released ids they give."""

from __future__ import annotations

from clio.gate.public import keyed_ids
from clio.lineage import (
    KEPT,
    MERGED,
    SPLIT,
    LineageNode,
    inherited_roots,
    match_builds,
    same_names,
)
from clio.records import Cluster


def node(cluster_id: str, members: range | list[int], level: int = 0) -> LineageNode:
    return LineageNode("request", level, cluster_id, frozenset(f"h{m}" for m in members))


def relations(links) -> set[tuple[str, str, str]]:
    return {(k.cluster_id, k.previous_cluster_id, k.relation) for k in links}


def test_the_same_members_in_another_order_are_all_kept():
    before = [node("request-L0-000", range(0, 10)), node("request-L0-001", range(10, 16))]
    # positions swapped, as a rebuild over reordered input numbers them
    now = [node("request-L0-000", range(10, 16)), node("request-L0-001", range(0, 10))]
    links = match_builds(before, now, 0.5)
    assert relations(links) == {
        ("request-L0-000", "request-L0-001", KEPT),
        ("request-L0-001", "request-L0-000", KEPT),
    }
    assert all(k.overlap == 1.0 for k in links)


def test_a_split_keeps_the_larger_part_and_links_the_other():
    before = [node("a", range(0, 10))]
    now = [node("b1", range(0, 6)), node("b2", range(6, 10))]
    assert relations(match_builds(before, now, 0.5)) == {("b1", "a", KEPT), ("b2", "a", SPLIT)}


def test_a_merge_keeps_one_and_links_the_other():
    before = [node("a1", range(0, 6)), node("a2", range(6, 10))]
    now = [node("b", range(0, 10))]
    assert relations(match_builds(before, now, 0.5)) == {("b", "a1", KEPT), ("b", "a2", MERGED)}


def test_unrelated_clusters_are_new_and_gone_and_levels_are_matched_apart():
    before = [node("a", range(0, 10)), node("p", range(0, 10), level=1)]
    now = [node("b", range(20, 30)), node("q", range(0, 10), level=1)]
    assert relations(match_builds(before, now, 0.5)) == {("q", "p", KEPT)}


def test_overlap_below_the_threshold_is_not_kept():
    before = [node("a", range(0, 10))]
    now = [node("b", range(5, 15))]  # Jaccard 5/15
    assert [k.relation for k in match_builds(before, now, 0.5)] != [KEPT]
    assert [k.relation for k in match_builds(before, now, 0.3)] == [KEPT]


def test_shared_counts_and_users():
    before = [node("a", range(0, 10))]
    now = [node("b", range(0, 8))]
    users = {f"h{m}": f"u{m % 3}" for m in range(10)}
    (link,) = match_builds(before, now, 0.5, users)
    assert (link.n_shared_conversations, link.n_shared_users) == (8, 3)


def test_roots_follow_kept_links_back_to_the_first_build():
    first = [node("x0", range(0, 10)), node("x1", range(10, 20))]
    second = [node("y0", range(10, 20)), node("y1", range(0, 10)), node("y2", range(30, 40))]
    third = [node("z0", range(0, 11)), node("z1", range(30, 40))]
    roots1 = inherited_roots([], "", {}, "b1", ["x0", "x1"])
    links2 = match_builds(first, second, 0.5)
    roots2 = inherited_roots(links2, "b1", roots1, "b2", ["y0", "y1", "y2"])
    assert roots2 == {"y0": ("b1", "x1"), "y1": ("b1", "x0"), "y2": ("b2", "y2")}
    roots3 = inherited_roots(match_builds(second, third, 0.5), "b2", roots2, "b3", ["z0", "z1"])
    assert roots3 == {"z0": ("b1", "x0"), "z1": ("b2", "y2")}


def test_names_kept_only_where_members_barely_changed():
    before = [node("a", range(0, 10)), node("c", range(20, 30))]
    now = [node("b", range(0, 10)), node("d", range(20, 27))]
    assert same_names(match_builds(before, now, 0.5), 0.9) == {"b": "a"}


def _cluster(cluster_id: str) -> Cluster:
    return Cluster("request", 0, cluster_id, None, [])


def test_released_ids_follow_the_root_and_change_without_it():
    key = b"k" * 32
    first = keyed_ids(key, "b1")
    kept = keyed_ids(key, "b2", {"request-L0-004": ("b1", "request-L0-000")})
    assert kept(_cluster("request-L0-004")) == first(_cluster("request-L0-000"))
    # control: the same node without lineage gets a new id
    assert keyed_ids(key, "b2")(_cluster("request-L0-004")) != first(_cluster("request-L0-000"))
    assert kept(_cluster("request-L0-000")).startswith("request-L0-")
