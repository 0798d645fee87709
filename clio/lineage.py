"""Lineage between builds: which cluster of a new build is which cluster of the previous one.

A full run or a rebuild makes a new tree, numbered by position, so without lineage its
clusters would all be new. `match_builds` compares the two builds' clusters of each facet
and level by their members (conversations by content hash, so the same conversation read
again in another order or from another file is the same member):

- `kept`: one-to-one, the assignment that maximises the total Jaccard overlap
  (`scipy.optimize.linear_sum_assignment`), keeping the pairs whose overlap is at least
  `min_overlap`. A kept cluster inherits its previous cluster's lineage root, and so its
  released id (`clio.gate.public.keyed_ids`).
- `split`: a new cluster left unmatched that holds at least `min_overlap` of its members
  from one previous cluster (it split off that one).
- `merged`: a previous cluster left unmatched with at least `min_overlap` of its members
  in one new cluster (it merged into that one).
- New clusters with no link are new; previous ones with none are gone.

A root is the (build id, node id) a cluster descends from through `kept` links: the
first build where its line began. Released ids are a keyed hash of the root, so they stay
across builds for kept clusters and, being hashes, show nothing about what was withheld.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

KEPT, SPLIT, MERGED = "kept", "split", "merged"
RELATIONS = (KEPT, SPLIT, MERGED)

Root = tuple[str, str]  # (build id, node id) a cluster's released id derives from


@dataclass(frozen=True)
class LineageNode:
    """A cluster of a build as lineage sees it: where it sits and who is in it."""

    facet: str
    level: int
    cluster_id: str
    members: frozenset[str]  # conversations by content hash


@dataclass(frozen=True)
class Link:
    """A cluster of the new build and one of the previous build it descends from."""

    facet: str
    level: int
    cluster_id: str
    previous_cluster_id: str
    relation: str  # one of RELATIONS
    overlap: float  # Jaccard overlap of the two clusters' members
    n_shared_conversations: int
    n_shared_users: int


def match_builds(
    previous: Sequence[LineageNode],
    current: Sequence[LineageNode],
    min_overlap: float,
    user_of: Mapping[str, str] | None = None,
) -> list[Link]:
    """Every link from `current` to `previous` (see the module doc), in a stable order.
    `user_of` maps a member to its user, for each link's shared users (0 without it)."""
    groups: dict[tuple[str, int], tuple[list[LineageNode], list[LineageNode]]] = defaultdict(
        lambda: ([], [])
    )
    for node in previous:
        groups[(node.facet, node.level)][0].append(node)
    for node in current:
        groups[(node.facet, node.level)][1].append(node)
    links: list[Link] = []
    for key in sorted(groups):
        before, now = groups[key]
        if before and now:
            links += _match_level(before, now, min_overlap, user_of or {})
    return sorted(links, key=lambda k: (k.facet, k.level, k.cluster_id, k.previous_cluster_id))


def _match_level(
    before: Sequence[LineageNode],
    now: Sequence[LineageNode],
    min_overlap: float,
    user_of: Mapping[str, str],
) -> list[Link]:
    shared = _intersections(before, now)
    sizes_before = np.array([len(n.members) for n in before], dtype=float)
    sizes_now = np.array([len(n.members) for n in now], dtype=float)
    union = sizes_now[:, None] + sizes_before[None, :] - shared
    jaccard = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    rows, columns = linear_sum_assignment(jaccard, maximize=True)
    kept = {(int(r), int(c)) for r, c in zip(rows, columns, strict=True)}
    kept = {(r, c) for r, c in kept if jaccard[r, c] >= min_overlap}
    matched_now = {r for r, _ in kept}
    matched_before = {c for _, c in kept}

    relations: dict[tuple[int, int], str] = {pair: KEPT for pair in kept}
    from_before = np.divide(
        shared, sizes_now[:, None], out=np.zeros_like(shared), where=sizes_now[:, None] > 0
    )
    into_now = np.divide(
        shared, sizes_before[None, :], out=np.zeros_like(shared), where=sizes_before[None, :] > 0
    )
    for r in range(len(now)):
        if r in matched_now:
            continue
        c = int(np.argmax(from_before[r]))
        if from_before[r, c] >= min_overlap:
            relations.setdefault((r, c), SPLIT)
    for c in range(len(before)):
        if c in matched_before:
            continue
        r = int(np.argmax(into_now[:, c]))
        if into_now[r, c] >= min_overlap:
            relations.setdefault((r, c), MERGED)

    links = []
    for (r, c), relation in relations.items():
        common = now[r].members & before[c].members
        links.append(
            Link(
                facet=now[r].facet,
                level=now[r].level,
                cluster_id=now[r].cluster_id,
                previous_cluster_id=before[c].cluster_id,
                relation=relation,
                overlap=float(jaccard[r, c]),
                n_shared_conversations=len(common),
                n_shared_users=len({user_of[m] for m in common if m in user_of}),
            )
        )
    return links


def _intersections(before: Sequence[LineageNode], now: Sequence[LineageNode]) -> np.ndarray:
    """shared[i, j] = members of now[i] also in before[j], by a sparse count over members."""
    where_before: dict[str, list[int]] = defaultdict(list)
    for j, node in enumerate(before):
        for member in node.members:
            where_before[member].append(j)
    counts: Counter[tuple[int, int]] = Counter()
    for i, node in enumerate(now):
        for member in node.members:
            for j in where_before.get(member, ()):
                counts[(i, j)] += 1
    shared = np.zeros((len(now), len(before)), dtype=float)
    for (i, j), n in counts.items():
        shared[i, j] = n
    return shared


def inherited_roots(
    links: Iterable[Link],
    previous_build: str,
    previous_roots: Mapping[str, Root],
    build_id: str,
    cluster_ids: Iterable[str],
) -> dict[str, Root]:
    """Each cluster of the build `build_id`'s root: its kept cluster's in the previous build
    (that cluster's own node when it has no recorded root), else itself."""
    kept = {k.cluster_id: k.previous_cluster_id for k in links if k.relation == KEPT}
    roots = {}
    for cid in cluster_ids:
        if cid in kept:
            before = kept[cid]
            roots[cid] = previous_roots.get(before, (previous_build, before))
        else:
            roots[cid] = (build_id, cid)
    return roots


def same_names(links: Iterable[Link], name_overlap: float) -> dict[str, str]:
    """New cluster id -> the previous cluster whose name it keeps: kept links whose members
    barely changed (overlap at least `name_overlap`)."""
    return {
        k.cluster_id: k.previous_cluster_id
        for k in links
        if k.relation == KEPT and k.overlap >= name_overlap
    }
