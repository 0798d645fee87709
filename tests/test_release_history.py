"""Random histories of runs, judged by the attack suite: every release audits clean.

A history is a sequence of runs over one growing population: full runs (a new build: a
new random tree, new ids), incremental runs (conversations join the current build's
base clusters; often a single new user with one conversation) and rebuilds (a new tree
over the same conversations). Each run goes through what `clio.pipeline.publish`
does between the private trees and the store: `apply_gate` with keyed ids and the
previous release of those ids, the share denominators of `root_totals`, the run row
through `protect_run_row`, then `write_release` into a real DuckDB file. After every
release `audit_release` (the attack suite, which reads the store alone) must find
nothing.

The controls switch one rule off each (cross-run carrying, means from released cells,
shares from set unions, positions centred on the released, keyed ids) in a history
built to show its leak, and the suite must find it there: the property can fail.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clio.gate.apply
import clio.gate.thresholds
from clio.config import PrivacyConfig
from clio.gate import apply_gate
from clio.gate.public import keyed_ids
from clio.lineage import LineageNode, Root, inherited_roots, match_builds
from clio.pipeline.publish import (
    lineage_candidates,
    lineage_summary,
    protect_run_row,
    root_totals,
)
from clio.records import Cluster
from clio.release import write_release
from clio.release_audit import Finding, audit_release
from clio.released import (
    CONCERN_FACET,
    LANGUAGE_FACET,
    ReleasedCluster,
    RunRow,
    previous_release,
    previous_run,
    released_sizes,
)
from clio.store import BuildLineage

MIN = 3  # min_users and min_conversations: small, so small histories cross them
FACET = "request"
KEY = b"k" * 32
LANGUAGES = ("en", "fr", "de")


@dataclass(frozen=True)
class Conversation:
    user: str
    concern: int  # 1-5
    language: str
    bases: tuple[int, ...]  # base clusters it belongs to in the current build (list facet)


@dataclass(frozen=True)
class Tree:
    """A build's tree: base `i` sits under top `tops[i]`; with `root`, one level-2 root
    sits above every top. Positions are the private map's, per base."""

    tops: tuple[int, ...]
    positions: tuple[tuple[float, float], ...]
    root: bool


@dataclass(frozen=True)
class Step:
    """One run. `kind` is "full" (new build over everyone, the new conversations
    included), "incremental" (the new conversations join the current build) or "rebuild"
    (new build, no new conversations); `tree` and `bases` are the new build's."""

    kind: str
    new: tuple[Conversation, ...] = ()
    tree: Tree | None = None
    bases: tuple[tuple[int, ...], ...] = ()  # a new build: each conversation's bases, in order


@dataclass(frozen=True)
class Rules:
    """Which rules are on; a control turns one off."""

    carry: bool = True  # rule 6: changes below the thresholds carried across runs
    released_means: bool = True  # concern_mean from the released cells
    union_shares: bool = True  # share over the set union of the top clusters
    released_centring: bool = True  # positions centred on the released base clusters
    keyed_ids: bool = True  # ids a keyed hash, not positional
    sum_differences: bool = True  # whole minus the sum of released parts: 0 or releasable
    lineage: bool = True  # a new build's clusters matched to the last build's keep their ids


@dataclass
class History:
    """The population and the current build, as the runs go."""

    conversations: list[Conversation] = field(default_factory=list)
    tree: Tree | None = None
    build: str = ""
    runs: int = 0
    roots: dict[str, Root] = field(default_factory=dict)  # the current build's lineage roots
    summaries: list[dict | None] = field(default_factory=list)  # each run's lineage summary


def clusters_of(history: History) -> list[Cluster]:
    """The current build's private tree; a parent's members are its bases' (a set union,
    as the hierarchy builds them)."""
    tree = history.tree
    assert tree is not None
    members: dict[int, list[str]] = {i: [] for i in range(len(tree.tops))}
    for n, conversation in enumerate(history.conversations):
        for base in conversation.bases:
            members[base].append(f"c{n}")

    def union(bases: Sequence[int]) -> list[str]:
        return sorted({m for i in bases for m in members[i]})

    root = f"{FACET}-L2-000" if tree.root else None
    everything = range(len(tree.tops))
    out = [Cluster(FACET, 2, root, None, union(everything), name="all")] if root else []
    for top in sorted(set(tree.tops)):
        under = [i for i, t in enumerate(tree.tops) if t == top]
        out.append(Cluster(FACET, 1, f"{FACET}-L1-{top:03d}", root, union(under), name="top"))
    for i, top in enumerate(tree.tops):
        x, y = tree.positions[i]
        out.append(
            Cluster(FACET, 0, f"{FACET}-L0-{i:03d}", f"{FACET}-L1-{top:03d}", members[i],
                    name="base", x=x, y=y)
        )  # fmt: skip
    return out


def release(store: Path, history: History, step: Step, rules: Rules) -> None:
    """Apply `step` to `history` and release the run as `release_run` does."""
    history.runs += 1
    run_id = f"run-{history.runs}"
    lineage: BuildLineage | None = None
    previous_public_id = None
    if step.kind == "incremental":
        history.conversations += step.new
        processed = len(step.new)
        clusters = clusters_of(history)
    else:
        if history.tree is not None and rules.keyed_ids:
            previous_public_id = keyed_ids(KEY, history.build, history.roots)
        before = clusters_of(history) if history.tree is not None else []
        previous_build = history.build
        history.conversations += step.new
        history.conversations = [
            Conversation(c.user, c.concern, c.language, bases)
            for c, bases in zip(history.conversations, step.bases, strict=True)
        ]
        history.tree, history.build = step.tree, run_id
        processed = len(history.conversations)
        clusters = clusters_of(history)
        # As `clio.pipeline.stages.build_lineage` does (conversation ids stand for hashes).
        user_of = {f"c{n}": c.user for n, c in enumerate(history.conversations)}
        links = match_builds(lineage_nodes(before), lineage_nodes(clusters), 0.5, user_of)
        history.roots = (
            inherited_roots(links, previous_build, history.roots, run_id,
                            [c.cluster_id for c in clusters])
            if rules.lineage
            else {}
        )  # fmt: skip
        if rules.lineage:
            lineage = BuildLineage(previous_build, links, history.roots)
    users = {f"c{n}": c.user for n, c in enumerate(history.conversations)}
    values: dict[str, dict[str, object]] = {
        f"c{n}": {CONCERN_FACET: c.concern, LANGUAGE_FACET: c.language}
        for n, c in enumerate(history.conversations)
    }
    public_id = keyed_ids(KEY, history.build, history.roots) if rules.keyed_ids else None
    ids = [public_id(c) if public_id else c.cluster_id for c in clusters]
    previous = previous_release(store, ids, run_id) if rules.carry else None
    before_run = previous_run(store, run_id)
    sizes_before = released_sizes(store, before_run.run_id) if before_run is not None else {}
    candidates = (
        lineage_candidates(clusters, public_id, lineage, previous_public_id,
                           before_run.run_id if before_run else None, sizes_before)
        if public_id is not None
        else []
    )  # fmt: skip
    totals = root_totals(clusters) if rules.union_shares else top_size_sums(clusters)
    with rules_off(rules, clusters, values, public_id):
        result = apply_gate(
            clusters,
            users,
            values,
            PrivacyConfig(min_users=MIN, min_conversations=MIN, audit_released_text=False),
            breakdown_facets=[LANGUAGE_FACET, CONCERN_FACET],
            total_conversations=totals,
            public_id=public_id,
            previous=previous,
            lineage=candidates,
        )
    history.summaries.append(
        lineage_summary(result, before_run.run_id if before_run else None, sizes_before)
    )
    at = datetime(2024, 1, 1) + timedelta(hours=history.runs)
    n = len(users)
    tokens = 100 * processed
    run = RunRow(run_id, at, at + timedelta(minutes=1), "cfg", MIN, MIN, n, 0, n,
                 processed, 0, tokens, tokens // 10)  # fmt: skip
    if rules.carry:
        run = protect_run_row(run, previous_run(store, run_id), processed)
    write_release(store, run, result)


def lineage_nodes(clusters: Sequence[Cluster]) -> list[LineageNode]:
    return [LineageNode(c.facet, c.level, c.cluster_id, frozenset(c.member_ids)) for c in clusters]


def top_size_sums(clusters: Sequence[Cluster]) -> dict[str, int]:
    """The share denominator without the union rule: the sum of the tops' sizes."""
    return {FACET: sum(len(c.member_ids) for c in clusters if c.parent_id is None)}


@contextmanager
def rules_off(
    rules: Rules,
    clusters: Sequence[Cluster],
    values: Mapping[str, Mapping[str, object]],
    public_id: Callable[[Cluster], str] | None,
) -> Iterator[None]:
    """Swap the gate's mean or positions for the ones without the rule, for one call."""
    saved = clio.gate.apply.released_concern, clio.gate.apply.released_positions
    saved_sums = clio.gate.thresholds._sum_difference_ok
    if not rules.sum_differences:
        clio.gate.thresholds._sum_difference_ok = lambda *_: True
    if not rules.released_means:
        exact = exact_means(clusters, values, public_id)
        clio.gate.apply.released_concern = lambda _cells, _facet: exact
    if not rules.released_centring:
        clio.gate.apply.released_positions = centred_on_all
    try:
        yield
    finally:
        clio.gate.apply.released_concern, clio.gate.apply.released_positions = saved
        clio.gate.thresholds._sum_difference_ok = saved_sums


def exact_means(
    clusters: Sequence[Cluster],
    values: Mapping[str, Mapping[str, object]],
    public_id: Callable[[Cluster], str] | None,
) -> dict[str, float | None]:
    """Released id -> the mean concern over all the cluster's members (no rule)."""
    out: dict[str, float | None] = {}
    for c in clusters:
        scores = [float(values[m][CONCERN_FACET]) for m in c.member_ids]  # type: ignore[arg-type]
        out[public_id(c) if public_id else c.cluster_id] = (
            sum(scores) / len(scores) if scores else None
        )
    return out


def centred_on_all(
    rows: Sequence[ReleasedCluster], base_positions: Mapping[str, tuple[float, float]]
) -> list[ReleasedCluster]:
    """Positions centred on every base cluster, suppressed ones included (no rule)."""
    points = list(base_positions.values())
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    return [
        replace(c, x=base_positions[c.cluster_id][0] - mx, y=base_positions[c.cluster_id][1] - my)
        if c.cluster_id in base_positions
        else c
        for c in rows
    ]


def audit_history(steps: Sequence[Step], rules: Rules = Rules()) -> list[list[Finding]]:
    """Release every step into a fresh store; the audit's findings after each release."""
    history = History()
    found = []
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "insights.duckdb"
        for step in steps:
            release(store, history, step, rules)
            found.append(audit_release(store))
    return found


# -- the random histories ----------------------------------------------------------------

conversations_st = st.builds(
    lambda user, concern, language: (user, concern, language),
    st.integers(0, 30),
    st.integers(1, 5),
    st.sampled_from(LANGUAGES),
)


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    n_bases = draw(st.integers(2, 5))
    n_tops = draw(st.integers(1, min(3, n_bases)))
    tops = tuple(i if i < n_tops else draw(st.integers(0, n_tops - 1)) for i in range(n_bases))
    coordinate = st.integers(-4, 4).map(lambda v: v / 2)
    positions = tuple((draw(coordinate), draw(coordinate)) for _ in range(n_bases))
    return Tree(tops, positions, draw(st.booleans()))


def homes(
    draw: st.DrawFn, tree: Tree, users: Sequence[str], home: dict[str, int], spread: bool
) -> tuple:
    """Each conversation's base: its user's, drawn once per build (see `histories`), or
    with `spread` one per conversation, so a user can be in several siblings."""
    if spread:
        return tuple((draw(st.integers(0, len(tree.tops) - 1)),) for _ in users)
    for user in users:
        if user not in home:
            home[user] = draw(st.integers(0, len(tree.tops) - 1))
    return tuple((home[user],) for user in users)


@st.composite
def histories(draw: st.DrawFn) -> list[Step]:
    """A full run, then up to three runs of any kind (half the incremental ones a single
    new user with one conversation).

    Half the histories keep each user's conversations in one base cluster of a build;
    the others spread them, so users are shared by siblings. A later full run may add a
    single conversation: lineage keeps the ids of the clusters it matches, so rule 6
    carries their figures across builds."""
    n_users = 0
    users: list[str] = []  # each conversation's user, in order
    tree: Tree | None = None
    home: dict[str, int] = {}
    spread = draw(st.booleans())
    steps = []
    kinds = ["full", *draw(st.lists(st.sampled_from(["full", "incremental", "rebuild"]),
                                    min_size=1, max_size=3))]  # fmt: skip
    for index, kind in enumerate(kinds):
        if kind == "incremental" and draw(st.booleans()):
            raw = [(n_users, draw(st.integers(1, 5)), draw(st.sampled_from(LANGUAGES)))]
        elif kind == "rebuild":
            raw = []
        else:
            low = 8 if index == 0 else 1
            raw = draw(st.lists(conversations_st, min_size=low, max_size=low + 10))
            raw = [(user % (n_users + 12), c, lang) for user, c, lang in raw]
        n_users = max(n_users, max((u for u, _, _ in raw), default=-1) + 1)
        new_users = [f"u{u}" for u, _, _ in raw]
        users += new_users
        if kind == "incremental":
            assert tree is not None
            bases = homes(draw, tree, new_users, home, spread)
            new = tuple(
                Conversation(f"u{u}", c, lang, b)
                for (u, c, lang), b in zip(raw, bases, strict=True)
            )
            steps.append(Step(kind, new))
        else:
            tree, home = draw(trees()), {}
            new = tuple(Conversation(f"u{u}", c, lang, ()) for u, c, lang in raw)
            steps.append(Step(kind, new, tree, homes(draw, tree, users, home, spread)))
    return steps


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(histories())
def test_every_release_of_a_random_history_audits_clean(steps: list[Step]):
    for run, findings in enumerate(audit_history(steps), start=1):
        assert findings == [], f"after run {run} of {[s.kind for s in steps]}"


# -- known leaks: minimal histories the gate does not yet protect -------------------------


def full(tree: Tree, people: Sequence[tuple[str, int, str]], bases: Sequence[tuple[int, ...]]):
    """A full run over `people` (user, concern, language), conversation i in `bases[i]`."""
    new = tuple(Conversation(u, c, lang, ()) for u, c, lang in people)
    return Step("full", new, tree, tuple(bases))


def one_base(n_bases: int = 1, root: bool = False, tops: tuple[int, ...] = ()) -> Tree:
    return Tree(tops or (0,) * n_bases, tuple((float(i), 0.0) for i in range(n_bases)), root)


def test_a_new_build_with_one_more_conversation_leaks():
    """Fixed by lineage: the new build's cluster keeps the old id, so rule 6 carries its
    figures. The control without lineage (new ids) shows the one conversation."""
    people = [("u0", 1, "en")] * 6 + [("u1", 1, "en"), ("u2", 1, "en")]
    first = full(one_base(), people, [(0,)] * 8)
    again = full(one_base(), [("u0", 1, "en")], [(0,)] * 9)
    assert audit_history([first, again]) == [[], []]
    assert attacks(audit_history([first, again], Rules(lineage=False))) != set()


def test_users_shared_by_sibling_clusters_do_not_show():
    """Two of eight users have a conversation in each of two siblings: children's n_users
    minus the parent's would be 2. The gate suppresses a sibling instead (control: with
    the sum-difference rule off, parent_children finds the 2)."""
    people = [(f"u{i}", 1, "en") for i in range(8)] + [("u0", 1, "en"), ("u1", 1, "en")]
    bases = [(0,)] * 4 + [(1,)] * 4 + [(1,), (0,)]
    tree = Tree((0, 1), ((0.0, 0.0), (1.0, 0.0)), root=True)
    assert audit_history([full(tree, people, bases)]) == [[]]
    off = audit_history([full(tree, people, bases)], Rules(sum_differences=False))
    assert "parent_children" in attacks(off)


# -- controls: each rule off, in a history built to show its leak -------------------------


def attacks(findings: Sequence[Sequence[Finding]]) -> set[str]:
    return {f.attack for run in findings for f in run}


def test_control_without_carrying_one_new_user_shows_across_runs():
    people = [(f"u{i}", 1 + i % 2, "en") for i in range(9)]
    first = full(one_base(2), people, [(0,)] * 5 + [(1,)] * 4)
    one_more = Step("incremental", (Conversation("u9", 5, "fr", (0,)),))
    assert attacks(audit_history([first, one_more])) == set()
    assert {"run_counts", "run_cells", "run_concern", "run_totals"} <= attacks(
        audit_history([first, one_more], Rules(carry=False))
    )


def test_control_without_means_from_released_cells_one_score_decodes():
    people = [(f"u{i}", 1, "en") for i in range(5)] + [("u5", 2, "en")]
    history = [full(one_base(), people, [(0,)] * 6)]
    assert attacks(audit_history(history)) == set()
    assert "mean_decoding" in attacks(audit_history(history, Rules(released_means=False)))


def test_control_without_union_shares_a_suppressed_top_shows():
    people = [(f"a{i}", 1, "en") for i in range(10)] + [(f"b{i}", 1, "en") for i in range(5)]
    bases = [(0, 1, 2)] * 2 + [(0, 1)] * 3 + [(0,)] * 5 + [(1,)] * 5
    tree = Tree((0, 1, 2), ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)), root=False)
    history = [full(tree, people, bases)]
    assert "share_algebra" not in attacks(audit_history(history))
    assert "share_algebra" in attacks(audit_history(history, Rules(union_shares=False)))


def _small_middle_base() -> list[Step]:
    """Bases of 1, 5 and 5 conversations: the first is suppressed, and with it (the hidden
    part of 1) one of the others."""
    people = [(f"u{i}", 1, "en") for i in range(11)]
    tree = Tree((0, 0, 0), ((2.0, 2.0), (1.0, 0.0), (-1.0, 1.0)), root=False)
    return [full(tree, people, [(0,)] + [(1,)] * 5 + [(2,)] * 5)]


def test_control_without_centring_on_the_released_the_map_shows_the_suppressed():
    assert attacks(audit_history(_small_middle_base())) == set()
    off = Rules(released_centring=False)
    assert "map_centring" in attacks(audit_history(_small_middle_base(), off))


def test_control_without_keyed_ids_the_gaps_show():
    assert attacks(audit_history(_small_middle_base())) == set()
    assert "id_gaps" in attacks(audit_history(_small_middle_base(), Rules(keyed_ids=False)))


# -- rebuilds that keep ids: the tree around a kept cluster may change ---------------------


def test_a_rebuild_that_drops_the_root_level_releases_and_audits_clean():
    people = [("u0", 1, "en")] * 3 + [("u2", 2, "en"), ("u8", 1, "en"), ("u1", 2, "en"),
                                      ("u4", 1, "en"), ("u7", 2, "en")]  # fmt: skip
    first = full(Tree((0, 0), ((0.0, 0.0), (1.0, 0.0)), root=True), people,
                 [(0,), (0,), (0,), (1,), (0,), (0,), (0,), (1,)])  # fmt: skip
    again = full(Tree((0, 0), ((0.0, 0.0), (1.0, 0.5)), root=False), [("u0", 1, "fr")] * 3,
                 [(0,)] * 11)  # fmt: skip
    assert audit_history([first, again]) == [[], []]
