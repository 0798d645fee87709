"""Attacks on one run's rows: subtraction across levels, means, shares, the map, ids.

Each function looks at every run of the store separately, with that run's
thresholds (`runs.min_users`, `runs.min_conversations`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

from clio.release_audit.findings import Finding, below
from clio.release_audit.history import Run
from clio.released import CONCERN_FACET, ReleasedCluster

CONCERN_LEVELS = (1, 2, 3, 4, 5)
MAP_TOLERANCE = 1e-6  # positions are stored as full doubles
SCORE_TOLERANCE = 1e-6
MAX_ENUMERATED = 2000  # hidden conversations up to which score mixes are enumerated
_ID = re.compile(r"^(?P<facet>.+)-L(?P<level>\d+)-(?P<number>\d+)$")


def parent_children(runs: Sequence[Run]) -> list[Finding]:
    """Parent minus the sum of its released children, for the counts and for every
    breakdown cell the parent releases (minus the same value's cells of its children).

    A positive remainder of 1 to min - 1 is a suppressed group; a negative one is the
    size of the children's intersection (with overlapping memberships, or users in two
    children), so |remainder| in 1 to min - 1 is a finding either way.
    """
    findings = []
    for run in runs:
        for parent_id, children in sorted(run.children().items()):
            parent = run.clusters[parent_id]
            ids = (parent_id, *sorted(c.cluster_id for c in children))
            groups = [("cluster", parent, children)]
            child_cells: dict[tuple[str, str], list] = defaultdict(list)
            for child in children:
                for cell in run.cells.get(child.cluster_id, []):
                    child_cells[(cell.facet, cell.value)].append(cell)
            groups += [
                (f"cell {cell.facet}={cell.value}", cell, child_cells[(cell.facet, cell.value)])
                for cell in run.cells.get(parent_id, [])
            ]
            for label, whole, parts in groups:
                for column, threshold in (
                    ("n_users", run.min_users),
                    ("n_conversations", run.min_conversations),
                ):
                    remainder = getattr(whole, column) - sum(getattr(p, column) for p in parts)
                    if parts and below(remainder, threshold):
                        findings.append(
                            Finding.difference(
                                "parent_children",
                                (run.row.run_id,),
                                ids,
                                f"{label}: parent minus released children = {remainder:+d} "
                                f"{column}",
                                remainder,
                            )
                        )
    return findings


def mean_decoding(runs: Sequence[Run]) -> list[Finding]:
    """`concern_mean * n_conversations` minus the released `concerning` cells' scores.

    What is left is the sum of the hidden conversations' scores, their number being
    `n_conversations` minus the released cells' conversations. A hidden number of 1 to
    min - 1 is a finding. Whatever the number, when only one mix of the unreleased
    levels (1-5 minus those with a released cell) gives that sum, the mix is known, and
    each level held by 1 to min - 1 hidden conversations is a finding (issue example:
    cells 1:12, 2:8, 3:5 and a mean of 2.1333 over 30 leave 5 conversations scoring 21,
    so one scored 5). Treats every member as scored. A mean equal to the released cells'
    own mean (how `clusters.concern_mean` is defined) says nothing more than the cells.
    """
    findings = []
    for run in runs:
        for cluster in run.clusters.values():
            if cluster.concern_mean is None:
                continue
            cells = [c for c in run.cells.get(cluster.cluster_id, []) if c.facet == CONCERN_FACET]
            scores = {_level(c.value): c.n_conversations for c in cells}
            if None in scores:
                continue  # not the 1-5 scale
            released = sum(scores.values())
            if (
                released
                and abs(
                    cluster.concern_mean - sum(level * n for level, n in scores.items()) / released
                )
                <= SCORE_TOLERANCE
            ):
                continue  # the mean of the released cells, as the contract defines it: no more
            hidden = cluster.n_conversations - released
            hidden_sum = cluster.concern_mean * cluster.n_conversations - sum(
                level * n for level, n in scores.items()
            )
            if hidden <= 0:
                continue
            levels = [level for level in CONCERN_LEVELS if level not in scores]
            mixes = (
                _score_mixes(levels, hidden, round(hidden_sum))
                if abs(hidden_sum - round(hidden_sum)) <= SCORE_TOLERANCE
                and hidden <= MAX_ENUMERATED
                else []
            )
            base = ((run.row.run_id,), (cluster.cluster_id,))
            if len(mixes) == 1:
                findings += [
                    Finding(
                        "mean_decoding",
                        *base,
                        f"{count} hidden conversations scored {level} (the only mix of "
                        f"{hidden} hidden scores summing to {round(hidden_sum)})",
                        level,
                        count,
                    )
                    for level, count in zip(levels, mixes[0], strict=True)
                    if below(count, run.min_conversations)
                ]
            elif below(hidden, run.min_conversations):
                findings.append(
                    Finding(
                        "mean_decoding",
                        *base,
                        f"the {hidden} conversations outside released concern cells "
                        f"score {hidden_sum:.4f} in all",
                        round(hidden_sum, 6),
                        hidden,
                    )
                )
    return findings


def _level(value: str) -> int | None:
    try:
        level = float(value)
    except ValueError:
        return None
    return int(level) if level in CONCERN_LEVELS else None


def _score_mixes(levels: Sequence[int], count: int, total: int) -> list[tuple[int, ...]]:
    """Up to two ways `count` scores drawn from `levels` (ascending) sum to `total`:
    how many of each level. Two are enough to know the mix is not unique."""
    found: list[tuple[int, ...]] = []

    def walk(index: int, left: int, rest: int, chosen: tuple[int, ...]) -> None:
        if len(found) >= 2:
            return
        if index == len(levels) - 1:
            if left * levels[index] == rest:
                found.append((*chosen, left))
            return
        later = levels[index + 1 :]
        for n in range(left + 1):
            remaining, still = left - n, rest - n * levels[index]
            if remaining * later[0] <= still <= remaining * later[-1]:
                walk(index + 1, remaining, still, (*chosen, n))

    if levels:
        walk(0, count, total, ())
    return found


def share_algebra(runs: Sequence[Run]) -> list[Finding]:
    """A facet's denominator from `n_conversations / share` (of its largest cluster), and
    the run's `n_conversations`, each minus the facet's released top clusters'
    conversations: a remainder of 1 to min - 1 is the size of suppressed top clusters
    (or conversations without a top cluster); a negative one, of top clusters' overlap."""
    findings = []
    for run in runs:
        by_facet: dict[str, list[ReleasedCluster]] = defaultdict(list)
        for cluster in run.clusters.values():
            by_facet[cluster.facet].append(cluster)
        for facet, clusters in sorted(by_facet.items()):
            tops = sorted(c.cluster_id for c in clusters if c.parent_id is None)
            released = sum(run.clusters[c].n_conversations for c in tops)
            totals = [("the run's n_conversations", run.row.n_conversations)]
            shared = [c for c in clusters if c.share > 0]
            if shared:
                largest = max(shared, key=lambda c: c.n_conversations)
                totals.insert(
                    0, ("share denominator", round(largest.n_conversations / largest.share))
                )
            for label, total in totals:
                remainder = total - released
                if below(remainder, run.min_conversations):
                    findings.append(
                        Finding.difference(
                            "share_algebra",
                            (run.row.run_id,),
                            tuple(tops),
                            f"{facet}: {label} {total} minus released top clusters "
                            f"{released} = {remainder:+d} conversations",
                            remainder,
                        )
                    )
    return findings


def map_centring(runs: Sequence[Run]) -> list[Finding]:
    """Whether the released base positions are centred on themselves.

    The test: per run and facet, the mean of the released level-0 (x, y). Centred on
    the released clusters it is (0, 0) to within 1e-6; otherwise the map was centred on
    a set that includes unreleased base clusters, and (assuming centring on the mean of
    all of them) their positions sum to minus the released ones' sum. When the id gaps
    at level 0 show exactly one missing base cluster, that is its position.
    """
    findings = []
    for run in runs:
        by_facet: dict[str, list[ReleasedCluster]] = defaultdict(list)
        for cluster in run.clusters.values():
            if cluster.level == 0 and cluster.x is not None and cluster.y is not None:
                by_facet[cluster.facet].append(cluster)
        for facet, bases in sorted(by_facet.items()):
            sx, sy = sum(c.x or 0.0 for c in bases), sum(c.y or 0.0 for c in bases)
            if max(abs(sx), abs(sy)) / len(bases) <= MAP_TOLERANCE:
                continue
            missing = _missing_ids(run, facet, 0)
            where = (
                f"the suppressed base cluster {missing[0]} sits at"
                if len(missing) == 1
                else "the suppressed base clusters' positions sum to"
            )
            findings.append(
                Finding(
                    "map_centring",
                    (run.row.run_id,),
                    tuple(missing),
                    f"{facet}: released base positions average ({sx / len(bases):.4f}, "
                    f"{sy / len(bases):.4f}), not (0, 0); {where} ({-sx:.4f}, {-sy:.4f})",
                    round(-sx, 6),
                    None,
                )
            )
    return findings


# Positional numbers are written with at most this many digits (`NNN`, up to a million
# clusters a level); a keyed id is 12 hex digits, which may all be decimal ones by chance
# (then it is no position, and counting the numbers below it would take forever).
POSITIONAL_DIGITS = 6


def id_gaps(runs: Sequence[Run]) -> list[Finding]:
    """Positional ids `<facet>-L<level>-<NNN>` with numbers missing below a run's
    largest at that facet and level: each gap is a suppressed cluster, by its id."""
    findings = []
    for run in runs:
        levels = sorted({(c.facet, c.level) for c in run.clusters.values()})
        for facet, level in levels:
            missing = _missing_ids(run, facet, level)
            if missing:
                findings.append(
                    Finding(
                        "id_gaps",
                        (run.row.run_id,),
                        tuple(missing),
                        f"{facet} L{level}: {len(missing)} ids missing below the largest "
                        "released one (suppressed clusters)",
                        len(missing),
                        None,
                    )
                )
    return findings


def _missing_ids(run: Run, facet: str, level: int) -> list[str]:
    numbers: dict[int, int] = {}  # number -> digits written
    for cluster in run.clusters.values():
        match = _ID.match(cluster.cluster_id)
        if (
            match
            and cluster.facet == facet
            and cluster.level == level
            and match["facet"] == facet
            and int(match["level"]) == level
            and len(match["number"]) <= POSITIONAL_DIGITS
        ):
            numbers[int(match["number"])] = len(match["number"])
    if not numbers:
        return []
    width = min(numbers.values())
    return [f"{facet}-L{level}-{n:0{width}d}" for n in range(max(numbers)) if n not in numbers]
