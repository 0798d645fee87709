"""The released store over many runs: differencing across runs, means, shares, ids, map.

Each test runs the attack an analyst with SQL over every past release would run, on a
real DuckDB release written by `write_release`, and checks what it recovers; the
controls run it on what the gate released without the rule (no previous release, the
exact mean, the sum of top sizes, the private positions and ids) and recover the group.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from clio.config import PrivacyConfig
from clio.gate import CHANGE_BELOW_THRESHOLD_CARRIED, GateResult, apply_gate
from clio.gate.public import keyed_ids, released_positions
from clio.pipeline.publish import protect_run_row, root_totals
from clio.records import Cluster
from clio.release import write_release
from clio.release_audit import audit_release
from clio.released import (
    PreviousRelease,
    ReleasedCluster,
    RunRow,
    previous_release,
    read_only_connect,
)

MIN = 5


def _cluster(cid: str, level: int, parent: str | None, members: list[str], **extra) -> Cluster:
    return Cluster(
        facet="request",
        level=level,
        cluster_id=cid,
        parent_id=parent,
        member_ids=members,
        name=f"name {cid}",
        description=f"about {cid}",
        **extra,
    )


def _run(run_id: str, minute: int, n_conversations: int = 20) -> RunRow:
    at = datetime(2024, 1, 1, 0, minute)
    return RunRow(run_id, at, at, "cfg", MIN, MIN, 0, 0, n_conversations, 0, 0, 0, 0)


def _release(
    store: Path, run_id: str, minute: int, members: dict[str, list[str]], users, values
) -> GateResult:
    """One run over the tree P > (A, B): gate it against the store's earlier runs, write it."""
    clusters = [
        _cluster("P", 1, None, []),
        _cluster("A", 0, "P", members["A"], x=0.0, y=0.0),
        _cluster("B", 0, "P", members["B"], x=1.0, y=1.0),
    ]
    ids = [c.cluster_id for c in clusters]
    result = apply_gate(
        clusters,
        users,
        values,
        PrivacyConfig(min_users=MIN, min_conversations=MIN, audit_released_text=False),
        breakdown_facets=["concerning"],
        previous=previous_release(store, ids, run_id),
    )
    write_release(store, _run(run_id, minute, len(users)), result)
    return result


def _changes(store: Path) -> dict[str, tuple[int, int]]:
    connection = read_only_connect(store)
    try:
        return {
            cid: (users, conversations)
            for cid, users, conversations in connection.execute(
                "SELECT cluster_id, n_users_change, n_conversations_change FROM run_changes"
            ).fetchall()
        }
    finally:
        connection.close()


def _first_run():
    members = {"A": [f"a{i}" for i in range(10)], "B": [f"b{i}" for i in range(10)]}
    users = {c: f"user-{c}" for ids in members.values() for c in ids}
    values = {c: {"concerning": 1 + i % 2} for i, c in enumerate(sorted(users))}
    return members, users, values


def _add(members, users, values, cluster: str, n: int, score: int, tag: str) -> None:
    for i in range(n):
        cid = f"new-{tag}{i}"
        members[cluster] = [*members[cluster], cid]
        users[cid] = f"user-{cid}"
        values[cid] = {"concerning": score}


def test_one_new_user_changes_nothing_across_runs(tmp_path: Path):
    store = tmp_path / "insights.duckdb"
    members, users, values = _first_run()
    _release(store, "r1", 1, members, users, values)
    _add(members, users, values, "A", 1, 5, "x")
    second = _release(store, "r2", 2, members, users, values)
    # The attack: run_changes shows +1 for the new user's branch, and the means differ.
    assert set(_changes(store).values()) == {(0, 0)}
    assert second.suppressed[CHANGE_BELOW_THRESHOLD_CARRIED] >= 2
    connection = read_only_connect(store)
    try:
        means = connection.execute(
            "SELECT cluster_id, count(DISTINCT concern_mean) FROM clusters GROUP BY ALL"
        ).fetchall()
        cells = connection.execute(
            "SELECT count(*) FROM (SELECT cluster_id, facet, value, n_users, n_conversations "
            "FROM facet_breakdowns WHERE run_id = 'r2' EXCEPT SELECT cluster_id, facet, value, "
            "n_users, n_conversations FROM facet_breakdowns WHERE run_id = 'r1')"
        ).fetchone()
    finally:
        connection.close()
    assert {n for _, n in means} == {1}  # concern_mean * n differences decode nothing
    assert cells == (0,)  # and no breakdown cell moved


def test_control_without_the_previous_release_the_new_user_shows(tmp_path: Path):
    store = tmp_path / "insights.duckdb"
    members, users, values = _first_run()
    _release(store, "r1", 1, members, users, values)
    _add(members, users, values, "A", 1, 5, "x")
    clusters = [
        _cluster("P", 1, None, []),
        _cluster("A", 0, "P", members["A"]),
        _cluster("B", 0, "P", members["B"]),
    ]
    config = PrivacyConfig(min_users=MIN, min_conversations=MIN, audit_released_text=False)
    result = apply_gate(clusters, users, values, config, breakdown_facets=["concerning"])
    write_release(store, _run("r2", 2, len(users)), result)
    changes = _changes(store)
    assert changes["A"] == (1, 1) and changes["P"] == (1, 1)  # the leak the rule closes


def test_a_change_of_the_thresholds_shows(tmp_path: Path):
    store = tmp_path / "insights.duckdb"
    members, users, values = _first_run()
    _release(store, "r1", 1, members, users, values)
    _add(members, users, values, "A", MIN, 2, "x")
    _release(store, "r2", 2, members, users, values)
    changes = _changes(store)
    assert changes["A"] == (MIN, MIN) and changes["P"] == (MIN, MIN) and changes["B"] == (0, 0)


def test_a_small_change_hidden_between_two_large_ones_is_carried(tmp_path: Path):
    """P grows by 6 and A by 5: P - A - B would show B's one new conversation."""
    store = tmp_path / "insights.duckdb"
    members, users, values = _first_run()
    _release(store, "r1", 1, members, users, values)
    _add(members, users, values, "A", MIN, 2, "x")
    _add(members, users, values, "B", 1, 5, "y")
    _release(store, "r2", 2, members, users, values)
    changes = _changes(store)
    hidden = changes["P"][1] - changes["A"][1] - changes["B"][1]
    assert hidden == 0 or hidden >= MIN
    assert changes["P"] == (MIN + 1, MIN + 1)  # the parent's large change still shows


def test_chains_of_small_changes_show_once_they_add_up(tmp_path: Path):
    """Carried figures are what the next run is compared with: three one-user runs stay
    carried until the change since the last released figure reaches the thresholds."""
    store = tmp_path / "insights.duckdb"
    members, users, values = _first_run()
    _release(store, "r1", 1, members, users, values)
    released = []
    for run in range(2, 2 + MIN):
        _add(members, users, values, "A", 1, 2, f"r{run}-")
        result = _release(store, f"r{run}", run, members, users, values)
        released.append(next(c.n_users for c in result.clusters if c.cluster_id == "A"))
    assert released == [10] * (MIN - 1) + [10 + MIN]


def _release_up_then_down(store: Path, *, whole_history: bool) -> list[int]:
    """A grows by 6 conversations, then 5 of them leave (a rebuild moved them): the third
    release differs from the first by 1. Returns A's released n_users per run."""
    members, users, values = _first_run()
    sizes = [_release(store, "r1", 1, members, users, values)]
    _add(members, users, values, "A", MIN + 1, 2, "x")
    sizes.append(_release(store, "r2", 2, members, users, values))
    members["A"] = members["A"][: 10 + 1]
    previous = previous_release(store, ["P", "A", "B"], "r3")
    if not whole_history:
        previous = replace(previous, runs={})
    clusters = [
        _cluster("P", 1, None, []),
        _cluster("A", 0, "P", members["A"], x=0.0, y=0.0),
        _cluster("B", 0, "P", members["B"], x=1.0, y=1.0),
    ]
    config = PrivacyConfig(min_users=MIN, min_conversations=MIN, audit_released_text=False)
    sizes.append(
        apply_gate(
            clusters, users, values, config, breakdown_facets=["concerning"], previous=previous
        )  # fmt: skip
    )
    write_release(store, _run("r3", 3, len(users)), sizes[-1])
    return [next(c.n_users for c in r.clusters if c.cluster_id == "A") for r in sizes]


def test_a_figure_is_compared_with_every_earlier_release_not_only_the_latest(tmp_path: Path):
    store = tmp_path / "insights.duckdb"
    assert _release_up_then_down(store, whole_history=True) == [10, 16, 16]  # carried
    assert [f for f in audit_release(store) if f.attack == "run_counts"] == []


def test_control_compared_with_the_latest_release_only_two_runs_back_shows_one(tmp_path: Path):
    store = tmp_path / "insights.duckdb"
    assert _release_up_then_down(store, whole_history=False) == [10, 16, 11]  # 11 - 10 = 1
    found = [f for f in audit_release(store) if f.attack == "run_counts"]
    assert ("r1", "r3") in {f.run_ids for f in found}


def _past_row(cid: str, level: int, parent: str | None, n: int) -> ReleasedCluster:
    return ReleasedCluster("request", level, cid, parent, f"name {cid}", "", [], n, n,
                           0.0, None, None, None)  # fmt: skip


def _hidden_part_history(*, whole_history: bool) -> dict[str, int]:
    """P over A, B and two small clusters C, D. Run 1 hid C and D (3 + 3 = 6 behind P),
    run 2 showed all (A 10, B 10, C 6, D 5: 0 hidden); now A has 16 and C, D (2 + 3) are
    hidden again: 5 against run 2, but 1 against run 1 (P's own 31 equals run 2's and is
    5 above run 1's). Returns the released n_users by id."""
    sizes_then = {1: {"A": 10, "B": 10}, 2: {"A": 10, "B": 10, "C": 6, "D": 5}}
    runs = {}
    for run, sizes in sizes_then.items():
        total = 26 if run == 1 else 31
        rows = [_past_row("P", 1, None, total)]
        rows += [_past_row(c, 0, "P", n) for c, n in sizes.items()]
        runs[f"r{run}"] = (rows, [])
    latest = {c.cluster_id: c for c in runs["r2"][0]}
    previous = PreviousRelease(
        latest, dict.fromkeys(latest, "r2"), {}, runs if whole_history else {}
    )
    sizes_now = {"A": 16, "B": 10, "C": 2, "D": 3}
    members = {c: [f"{c}{i}" for i in range(n)] for c, n in sizes_now.items()}
    users = {m: f"user-{m}" for ms in members.values() for m in ms}
    clusters = [_cluster("P", 1, None, [])] + [
        _cluster(c, 0, "P", ms, x=0.0, y=0.0) for c, ms in members.items()
    ]
    config = PrivacyConfig(min_users=MIN, min_conversations=MIN, audit_released_text=False)
    result = apply_gate(clusters, users, {}, config, breakdown_facets=[], previous=previous)
    return {c.cluster_id: c.n_users for c in result.clusters}


def test_a_hidden_part_is_compared_with_every_earlier_runs_hidden_part():
    released = _hidden_part_history(whole_history=True)
    assert released["A"] == 10  # carried: P - A - B would be 11, 5 from both runs
    assert released["P"] - released["A"] - released["B"] == 11


def test_control_compared_with_the_latest_run_only_the_hidden_part_is_one_from_run_one():
    released = _hidden_part_history(whole_history=False)
    assert released["P"] - released["A"] - released["B"] == 5  # run 1 hid 6: 1 left


def test_concern_mean_comes_from_released_cells_only():
    """30 conversations rated 1:12, 2:8, 3:5, 4:4, 5:1; cells 4 and 5 suppressed."""
    scores = [1] * 12 + [2] * 8 + [3] * 5 + [4] * 4 + [5]
    values = {f"c{i}": {"concerning": s} for i, s in enumerate(scores)}
    users = {c: f"user-{c}" for c in values}
    result = apply_gate(
        [_cluster("A", 0, None, list(values))],
        users,
        values,
        PrivacyConfig(min_users=5, min_conversations=5, audit_released_text=False),
        breakdown_facets=["concerning"],
    )
    (row,) = result.clusters
    cells = {b.value: b.n_conversations for b in result.breakdowns}
    assert cells == {"1": 12, "2": 8, "3": 5}
    # The attack: mean x n minus the released cells' sum is the hidden cells' sum.
    hidden_sum = row.concern_mean * row.n_conversations - (12 * 1 + 8 * 2 + 5 * 3)
    assert row.concern_mean == pytest.approx(43 / 25)
    # With the exact mean (64 / 30) it was 21 = 4 x 4 + 5: one conversation rated 5.
    assert hidden_sum == pytest.approx(43 / 25 * 30 - 43) and round(hidden_sum) != 21


def test_share_denominator_is_the_union_of_the_top_clusters():
    """A list facet puts a conversation in several tops; a suppressed top C of 2."""
    a = [f"a{i}" for i in range(10)]
    b = a[:5] + [f"b{i}" for i in range(5)]
    c = a[:2]
    tops = [_cluster("A", 0, None, a), _cluster("B", 0, None, b), _cluster("C", 0, None, c)]
    users = {m: f"user-{m}" for m in set(a) | set(b)}
    totals = root_totals(tops)
    assert totals == {"request": 15}
    result = apply_gate(
        tops,
        users,
        {},
        PrivacyConfig(min_users=5, min_conversations=5, audit_released_text=False),
        breakdown_facets=[],
        total_conversations=totals,
    )
    released = {r.cluster_id: r for r in result.clusters}
    assert set(released) == {"A", "B"}
    recovered = released["A"].n_conversations / released["A"].share - 20
    assert round(recovered) != len(c)  # with the sum of sizes (22) it was 2, C's size
    assert len(c) == 10 + 10 + 2 - 20


def test_released_ids_are_keyed_and_stable_within_a_build():
    node = _cluster("request-L0-007", 0, None, [])
    same = keyed_ids(b"k" * 32, "build-1")
    assert same(node) == keyed_ids(b"k" * 32, "build-1")(node)
    assert same(node) != keyed_ids(b"k" * 32, "build-2")(node)
    assert same(node) != keyed_ids(b"j" * 32, "build-1")(node)
    assert same(node).startswith("request-L0-") and "007" not in same(node)


def test_released_ids_do_not_show_gaps(tmp_path: Path):
    sizes = [6, 1, 1, 6]  # the two of one conversation are suppressed, hidden part of 2
    members = {f"L0-{i:03d}": [f"m{i}-{j}" for j in range(n)] for i, n in enumerate(sizes)}
    clusters = [_cluster(f"request-{k}", 0, None, v) for k, v in members.items()]
    users = {m: f"user-{m}" for v in members.values() for m in v}
    result = apply_gate(
        clusters,
        users,
        {},
        PrivacyConfig(min_users=2, min_conversations=2, audit_released_text=False),
        breakdown_facets=[],
        public_id=keyed_ids(b"k" * 32, "b"),
    )
    ids = [c.cluster_id for c in result.clusters]
    assert len(ids) == 2 and not any(i.endswith(("000", "003")) for i in ids)


def test_positions_are_centred_on_released_clusters_only():
    """The private map is centred on all base clusters: minus the sum of the released ones
    is the suppressed one's position. Released positions are centred on the released."""
    rows = apply_gate(
        [
            _cluster("P", 1, None, []),
            _cluster("A", 0, "P", [f"a{i}" for i in range(6)], x=-1.0, y=0.0),
            _cluster("B", 0, "P", [f"b{i}" for i in range(9)], x=0.5, y=0.5),
            _cluster("C", 0, "P", ["c0", "c1", "c2"], x=0.5, y=-0.5),
            _cluster("D", 0, "P", ["d0", "d1", "d2"], x=0.0, y=0.0),
        ],
        {m: f"user-{m}" for m in [*(f"a{i}" for i in range(6)), *(f"b{i}" for i in range(9))]}
        | {f"{k}{i}": f"user-{k}{i}" for k in "cd" for i in range(3)},
        {},
        PrivacyConfig(min_users=5, min_conversations=5, audit_released_text=False),
        breakdown_facets=[],
    ).clusters
    by_id = {r.cluster_id: r for r in rows}
    assert set(by_id) == {"P", "A", "B"}
    base = [by_id["A"], by_id["B"]]
    assert sum(r.x for r in base) == pytest.approx(0.0) and sum(r.y for r in base) == 0.0
    # The private positions sum to 0 over all four: minus the released ones was C + D.
    assert (-(-1.0 + 0.5), -(0.0 + 0.5)) == (0.5 + 0.0, -0.5 + 0.0)
    assert (by_id["A"].x, by_id["A"].y) == pytest.approx((-1.0, -1 / 3))
    weights = sum(r.n_conversations for r in base)
    assert by_id["P"].x == pytest.approx(sum(r.x * r.n_conversations for r in base) / weights)


def test_a_parent_without_released_base_clusters_has_no_position():
    rows = released_positions(
        [
            _row("P", 1, None, 10),
            _row("Q", 1, None, 10),
            _row("A", 0, "P", 10),
        ],
        {"A": (0.3, 0.2)},
    )
    assert [(r.cluster_id, r.x, r.y) for r in rows] == [
        ("P", 0.0, 0.0),
        ("Q", None, None),
        ("A", 0.0, 0.0),
    ]


def _row(cid: str, level: int, parent: str | None, n: int):
    from clio.released import ReleasedCluster

    return ReleasedCluster("request", level, cid, parent, cid, "", [], n, n, 0.5, None, 0, 0)


def test_run_row_of_a_tiny_run_withholds_its_usage_and_carries_its_total():
    run = _run("r2", 2, 21)
    run = RunRow(**{**run.__dict__, "input_tokens": 1234, "output_tokens": 56, "llm_calls": 1})
    previous = _run("r1", 1, 20)
    protected = protect_run_row(run, previous, n_processed=1)
    assert (protected.n_conversations, protected.input_tokens, protected.llm_calls) == (20, 0, 0)
    big = protect_run_row(replace_n(run, 25), previous, n_processed=MIN)
    assert (big.n_conversations, big.input_tokens) == (25, 1234)


def test_a_run_total_one_from_a_run_two_back_keeps_the_previous_total():
    """20, then 26 (a release that grew by 6), then 21: 5 below the previous run's total
    but 1 above the first run's."""
    previous = _run("r2", 2, 26)
    now = _run("r3", 3, 21)
    assert protect_run_row(now, previous, MIN, earlier=[20, 26]).n_conversations == 26
    assert protect_run_row(now, previous, MIN).n_conversations == 21  # control: latest only


def replace_n(run: RunRow, n: int) -> RunRow:
    return RunRow(**{**run.__dict__, "n_conversations": n})


def test_previous_release_is_the_latest_earlier_release_of_each_id(tmp_path: Path):
    store = tmp_path / "insights.duckdb"
    members, users, values = _first_run()
    _release(store, "r1", 1, members, users, values)
    _add(members, users, values, "A", MIN, 2, "x")
    _release(store, "r2", 2, members, users, values)
    previous = previous_release(store, ["P", "A", "B", "missing"], "r3")
    assert previous.run_of == {"P": "r2", "A": "r2", "B": "r2"}
    assert previous.clusters["A"].n_users == 10 + MIN
    assert previous_release(store, ["A"], "r2").clusters["A"].n_users == 10
    assert previous_release(tmp_path / "none.duckdb", ["A"], "r1") == PreviousRelease.empty()
    assert Counter(k[1] for k in previous.cells)["concerning"] >= 1
