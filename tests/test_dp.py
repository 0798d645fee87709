"""Optional differential privacy: contribution bounds, OpenDP mechanisms, the gate with DP."""

from __future__ import annotations

import json
import statistics
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clio.gate.numbers
from clio.config import PrivacyConfig
from clio.dp import (
    DPConfig,
    Spent,
    bounded_conversations,
    concern_sensitivity,
    count_sensitivity,
    noisy_counts,
    noisy_sums,
    rows_per_user,
    select_keys,
)
from clio.gate import apply_gate
from clio.manifest import write_manifest
from clio.records import Cluster


def test_off_by_default_and_read_from_the_config():
    assert PrivacyConfig().dp_enabled is False
    assert DPConfig.from_privacy(PrivacyConfig()) is None
    config = PrivacyConfig(
        dp_enabled=True,
        dp_epsilon=2.0,
        dp_delta=1e-7,
        dp_max_conversations_per_user=3,
        dp_max_values_per_conversation=2,
    )
    assert DPConfig.from_privacy(config, seed=9) == DPConfig(2.0, 1e-7, 3, 2, 9)


@pytest.mark.parametrize(
    "fields",
    [
        {"epsilon": 0.0, "delta": 1e-6},
        {"epsilon": 1.0, "delta": 0.0},
        {"epsilon": 1.0, "delta": 1.0},
        {"epsilon": 1.0, "delta": 1e-6, "max_conversations_per_user": 0},
        {"epsilon": 1.0, "delta": 1e-6, "concern_range": (5.0, 1.0)},
    ],
)
def test_invalid_settings_are_refused(fields):
    with pytest.raises(ValueError):
        DPConfig(**fields)


def test_contributions_are_bounded_per_user_and_independent_of_others():
    users = {f"h{i}": "heavy" for i in range(40)} | {"l0": "light", "l1": "light"}
    kept = bounded_conversations(users, 3, seed=0)
    assert len([c for c in kept if users[c] == "heavy"]) == 3
    assert {"l0", "l1"} <= kept
    # another user's data does not change which of heavy's conversations count
    more = users | {f"x{i}": "other" for i in range(10)}
    assert {c for c in bounded_conversations(more, 3, seed=0) if more[c] == "heavy"} == {
        c for c in kept if users[c] == "heavy"
    }
    assert bounded_conversations(users, 3, seed=0) == kept
    assert bounded_conversations(users, 3, seed=1) != kept


@pytest.mark.parametrize(
    ("bounds", "shape", "expected"),
    [
        # (conversations per user, values per conversation), (levels, breakdowns, facets)
        ((1, 1), (1, 0, 1), 3),  # 2 * 1 cluster row + 1 total
        ((4, 1), (3, 2, 1), 76),  # rows 12, cells 24: 2 * 36 + 4
        ((2, 2), (2, 1, 2), 52),  # rows 8, cells 16: 2 * 24 + 2 * 2
    ],
)
def test_count_sensitivity(bounds, shape, expected):
    config = DPConfig(1.0, 1e-6, *bounds)
    assert count_sensitivity(config, *shape) == expected
    assert rows_per_user(config, shape[0]) == bounds[0] * bounds[1] * shape[0]
    assert concern_sensitivity(config, shape[0]) == rows_per_user(config, shape[0]) * 6.0


def test_noisy_counts_spend_what_opendp_reports_and_are_unbiased():
    values = {i: 0 for i in range(4000)}
    noisy, spent = noisy_counts(values, sensitivity=1, epsilon=1.0)
    assert set(noisy) == set(values)
    assert spent.epsilon == pytest.approx(1.0) and spent.epsilon <= 1.0 + 1e-9
    assert spent.scale == pytest.approx(1.0) and spent.delta == 0.0
    draws = list(noisy.values())
    assert all(isinstance(d, int) for d in draws)
    assert abs(statistics.fmean(draws)) < 0.2
    # discrete Laplace with scale 1: variance 2e^-1 / (1 - e^-1)^2 = 1.84
    assert 1.4 < statistics.pvariance(draws) < 2.4

    _, spent = noisy_counts({"a": 5}, sensitivity=18, epsilon=0.5)
    assert spent.scale == pytest.approx(36.0)


def test_noisy_sums_are_floats_with_the_right_scale():
    noisy, spent = noisy_sums({"s": 10.0, "n": 2.0}, sensitivity=12.0, epsilon=0.2)
    assert set(noisy) == {"s", "n"} and all(isinstance(v, float) for v in noisy.values())
    assert spent.scale == pytest.approx(60.0)
    assert spent.epsilon <= 0.2 + 1e-9


@pytest.mark.parametrize("sensitivity", [0, 4])
def test_nothing_to_release_spends_nothing(sensitivity):
    """A run whose facets were all withheld releases no numbers: sensitivity 0 made
    OpenDP's search for a scale fail before."""
    for mechanism in (noisy_counts, noisy_sums):
        noisy, spent = mechanism({}, sensitivity=sensitivity, epsilon=1.0)
        assert noisy == {} and spent.epsilon == 0.0 and spent.n_values == 0


def test_keys_are_selected_by_a_noisy_threshold():
    counts = {"big": 10_000, "small": 3}
    selected, spent = select_keys(counts, max_keys_per_user=4, epsilon=0.5, delta=1e-6)
    assert set(selected) == {"big"}
    assert spent.delta <= 1e-6 and spent.epsilon <= 0.5 + 1e-9
    assert spent.threshold is not None and 3 < spent.threshold < 10_000
    assert (spent.n_values, spent.n_released) == (2, 1)
    # more keys per user means more noise and a higher threshold
    _, wider = select_keys(counts, max_keys_per_user=40, epsilon=0.5, delta=1e-6)
    assert wider.threshold > spent.threshold


# -- the gate with DP on ------------------------------------------------------------------


def _tree(n_a: int, n_b: int):
    users, values = {}, {}
    for prefix, n, text in (("a", n_a, "train tickets"), ("b", n_b, "bus tickets")):
        for i in range(n):
            users[f"{prefix}{i}"] = f"user-{prefix}{i}"
            rare = " refund" if i < 10 else ""  # written by ten users of each
            values[f"{prefix}{i}"] = {
                "request": text + rare,
                "language": "en" if i % 2 else "fr",
                "concerning": 1 + i % 5,
            }
    clusters = [
        Cluster("request", 1, "p", None, [], "Tickets", "Buying tickets.", ["tickets"]),
        Cluster("request", 0, "A", "p", [c for c in users if c[0] == "a"], "Trains", "Trains.",
                ["train", "refund"]),
        Cluster("request", 0, "B", "p", [c for c in users if c[0] == "b"], "Buses", "Buses.",
                ["bus", "refund"]),
    ]  # fmt: skip
    return clusters, users, values


def _dp_gate(epsilon: float, n_a: int = 100, n_b: int = 100, **privacy):
    clusters, users, values = _tree(n_a, n_b)
    config = PrivacyConfig(
        min_users=5, min_conversations=5, dp_enabled=True, dp_epsilon=epsilon, **privacy
    )
    return apply_gate(clusters, users, values, config, breakdown_facets=["language"]), (
        clusters,
        users,
        values,
    )


def test_gate_with_dp_releases_noisy_numbers_within_the_budget(tmp_path):
    result, _ = _dp_gate(epsilon=1.0)
    plain = apply_gate(
        *_tree(100, 100), PrivacyConfig(min_users=5, min_conversations=5),
        breakdown_facets=["language"],
    )  # fmt: skip

    assert [c.cluster_id for c in result.clusters] == [c.cluster_id for c in plain.clusters]
    assert len(result.breakdowns) == len(plain.breakdowns) == 6
    exact = [(c.n_users, c.n_conversations) for c in plain.clusters]
    exact += [(b.n_users, b.n_conversations) for b in plain.breakdowns]
    noisy = [(c.n_users, c.n_conversations) for c in result.clusters]
    noisy += [(b.n_users, b.n_conversations) for b in result.breakdowns]
    assert noisy != exact  # scale 76 / 0.5: some number moved
    for users, conversations in noisy:  # clamped to the thresholds, consistent
        assert users >= 5 and conversations >= max(5, users)
    for c in result.clusters:
        assert 0.0 < c.share <= 1.0
        assert c.concern_mean is None or 1.0 <= c.concern_mean <= 5.0

    dp = result.dp
    assert dp is not None and dp["enabled"] is True
    assert [m["name"] for m in dp["mechanisms"]] == ["counts", "concern", "keywords"]
    assert dp["epsilon_spent"] <= 1.0 + 1e-9 and dp["delta_spent"] <= 1e-6
    counts = dp["mechanisms"][0]
    # 2 levels, 1 breakdown facet, 1 facet, 4 conversations per user
    assert counts["sensitivity"] == count_sensitivity(DPConfig(1.0, 1e-6), 2, 1, 1) == 36
    assert dp["library"].startswith("opendp ")
    write_manifest(tmp_path / "m.json", {"privacy": {"differential_privacy": dp}})
    assert json.loads((tmp_path / "m.json").read_text())["privacy"]["differential_privacy"] == dp
    assert plain.dp is None


def test_dp_keyword_selection_keeps_only_widely_used_keywords():
    generous, _ = _dp_gate(epsilon=40.0)
    by_id = {c.cluster_id: c for c in generous.clusters}
    # "train"/"bus" (100 users each) clear the threshold; "refund" (10 users) does not,
    # though it passes the plain threshold of 5 users
    assert by_id["A"].keywords == ["train"] and by_id["B"].keywords == ["bus"]
    assert by_id["p"].keywords == ["tickets"]
    assert generous.suppressed["keyword_not_selected_dp"] == 2
    threshold = generous.dp["mechanisms"][2]["threshold"]
    assert 10 < threshold < 100

    strict, _ = _dp_gate(epsilon=0.5)  # the threshold is then far above 200 users
    assert all(c.keywords == [] for c in strict.clusters)
    assert strict.dp["mechanisms"][2]["threshold"] > 200


# -- the sensitivity holds: removing one user moves the counts by at most it ----------------


@st.composite
def dp_trees(draw):
    n = draw(st.integers(2, 30))
    n_users = draw(st.integers(2, 8))
    user_of = draw(st.lists(st.integers(0, n_users - 1), min_size=n, max_size=n))
    users = {f"c{i}": f"u{u}" for i, u in enumerate(user_of)}
    n_base = draw(st.integers(1, 5))
    homes = draw(st.lists(st.sets(st.integers(0, n_base - 1), min_size=1, max_size=2),
                          min_size=n, max_size=n))  # fmt: skip
    words = draw(st.lists(st.sets(st.sampled_from(["train", "bus", "plane"])), min_size=n,
                          max_size=n))  # fmt: skip
    concern = draw(st.lists(st.one_of(st.none(), st.integers(1, 5)), min_size=n, max_size=n))
    language = draw(st.lists(st.lists(st.sampled_from(["en", "fr"]), max_size=2), min_size=n,
                             max_size=n))  # fmt: skip
    values = {
        f"c{i}": {"request": " ".join(sorted(words[i])) or "hello", "concerning": concern[i],
                  "language": language[i]}
        for i in range(n)
    }  # fmt: skip
    clusters = [
        Cluster("request", 0, f"b{k}", "top" if k % 2 else None,
                [f"c{i}" for i in range(n) if k in homes[i]], f"n{k}", "", ["train", "bus"])
        for k in range(n_base)
    ]  # fmt: skip
    clusters.append(Cluster("request", 1, "top", None, [], "top", "", ["plane"]))
    bounds = draw(st.tuples(st.integers(1, 3), st.integers(1, 2)))
    removed = draw(st.sampled_from(sorted(set(users.values()))))
    return clusters, users, values, bounds, removed


def _captured(clusters, users, values, bounds):
    seen: dict[str, object] = {}

    def counts(exact, sensitivity, epsilon, name="counts"):
        seen["counts"], seen["count_sensitivity"] = dict(exact), sensitivity
        return dict(exact), Spent(name, "none", 0.0, 0.0, sensitivity, 0.0, len(exact))

    def sums(exact, sensitivity, epsilon, name="concern"):
        seen["sums"], seen["sum_sensitivity"] = dict(exact), sensitivity
        return dict(exact), Spent(name, "none", 0.0, 0.0, sensitivity, 0.0, len(exact))

    def keys(exact, max_keys_per_user, epsilon, delta, name="keywords"):
        seen["keys"], seen["max_keys"] = dict(exact), max_keys_per_user
        return dict(exact), Spent(name, "none", 0.0, 0.0, max_keys_per_user, 0.0, len(exact))

    config = PrivacyConfig(
        min_users=1, min_conversations=1, dp_enabled=True,
        dp_max_conversations_per_user=bounds[0], dp_max_values_per_conversation=bounds[1],
    )  # fmt: skip
    with (
        mock.patch.object(clio.gate.numbers, "noisy_counts", counts),
        mock.patch.object(clio.gate.numbers, "noisy_sums", sums),
        mock.patch.object(clio.gate.numbers, "select_keys", keys),
    ):
        apply_gate(clusters, users, values, config, breakdown_facets=["language"])
    return seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dp_trees())
def test_one_user_moves_the_exact_values_by_at_most_the_sensitivity(tree):
    """Given the released rows (keys present with and without the user), removing every
    conversation of one user changes the pre-noise counts by at most the L1 sensitivity
    the noise is calibrated to, the concern sums likewise, and at most `max_keys` keyword
    counts by at most 1 each."""
    clusters, users, values, bounds, removed = tree
    with_user = _captured(clusters, users, values, bounds)
    gone = {c for c, u in users.items() if u == removed}
    without = _captured(
        [Cluster(c.facet, c.level, c.cluster_id, c.parent_id,
                 [m for m in c.member_ids if m not in gone], c.name, c.description, c.keywords)
         for c in clusters],
        {c: u for c, u in users.items() if c not in gone},
        {c: v for c, v in values.items() if c not in gone},
        bounds,
    )  # fmt: skip

    def l1(name: str) -> float:
        a, b = with_user.get(name, {}), without.get(name, {})
        return sum(abs(a[k] - b[k]) for k in a.keys() & b.keys())

    assert l1("counts") <= with_user["count_sensitivity"]
    if "sums" in with_user:
        assert l1("sums") <= with_user["sum_sensitivity"] + 1e-9
    if "keys" in with_user and "keys" in without:
        a, b = with_user["keys"], without["keys"]
        changed = [k for k in a.keys() & b.keys() if a[k] != b[k]]
        assert len(changed) <= with_user["max_keys"]
        assert all(abs(a[k] - b[k]) <= 1 for k in changed)
