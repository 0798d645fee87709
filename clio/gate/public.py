"""Rule 7 of the gate: released ids and map positions tell nothing about what was withheld.

Ids. The private trees number their nodes by position (`<facet>-L<level>-<NNN>`), so
released ids with gaps would show how many clusters were suppressed and where. Released
ids are `<facet>-L<level>-<HMAC(key, root build id, root node id)>`: the key is a secret of
the private store, so the ids can neither be enumerated nor ordered. The root is the
node the cluster descends from (`clio.lineage`): the same node of the same build keeps its
id across the build's incremental runs, and a cluster of a new build matched one-to-one
to a cluster of the previous build inherits that cluster's root, so `run_changes` and the
page's history follow it across full runs and rebuilds; an unmatched cluster is its own
root, with a new id. Rule 6 then compares each id's figures across rebuilds too.

Positions. The private map is centred on, and scaled by, all base clusters, and a parent
sits at the mean of all its base clusters, so one suppressed cluster's position would be
minus the sum of the released ones. Released positions are re-centred on, and scaled by,
the released base clusters of each facet only (the layout's own offset and scale cancel
out), and a parent sits at the mean of its released base clusters weighted by their
released `n_conversations`: a function of released rows alone. A parent with no released
base cluster has no position. The layout itself (UMAP over all centroids) still depends
on every centroid, but not linearly: nothing subtracts out of it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from clio.config import PrivacyConfig
from clio.lineage import KEPT, Root
from clio.records import Cluster
from clio.released import ReleasedBreakdown, ReleasedCluster, ReleasedLineage

PublicId = Callable[[Cluster], str]


def release_id_key(pseudonym_key: str) -> bytes:
    """The key of released ids, derived from the pseudonym key (the store's secret, or the
    configured one): the ids are as private as the pseudonyms and stable wherever they are."""
    return hmac.new(pseudonym_key.encode(), b"release ids", "sha256").digest()


def keyed_ids(key: bytes, build_id: str, roots: Mapping[str, Root] | None = None) -> PublicId:
    """Released id of a node of the build `build_id`, keyed by the private store's `key`:
    a hash of the node's lineage root in `roots` (node id -> (build id, node id)), the
    node itself when it has none."""
    known = dict(roots or {})

    def public_id(cluster: Cluster) -> str:
        root_build, root_node = known.get(cluster.cluster_id, (build_id, cluster.cluster_id))
        message = f"{root_build}\x1f{root_node}".encode()
        digest = hmac.new(key, message, hashlib.sha256).hexdigest()[:12]
        return f"{cluster.facet}-L{cluster.level}-{digest}"

    return public_id


@dataclass(frozen=True)
class LineageCandidate:
    """A link the gate may release: a cluster of this run (its private id) and a cluster
    the previous run released, with how many users and conversations the two share
    (0 for `kept`: the same id, whose figures rule 6 already compares)."""

    cluster_id: str
    previous_run_id: str
    previous_cluster_id: str  # released id
    relation: str
    n_shared_users: int = 0
    n_shared_conversations: int = 0


def released_lineage(
    candidates: Sequence[LineageCandidate],
    clusters: Sequence[Cluster],
    rows: Sequence[ReleasedCluster],
    public_id: PublicId | None,
    config: PrivacyConfig,
) -> list[ReleasedLineage]:
    """The `cluster_lineage` rows: candidates whose cluster is released now (its final
    row), and for a split or merge, whose shared part reaches the thresholds (a smaller
    one would say a small group moved between the two)."""
    private = {c.cluster_id: c for c in clusters}
    released = {c.cluster_id for c in rows}
    out: dict[tuple[str, str], ReleasedLineage] = {}
    for k in candidates:
        if k.cluster_id not in private:
            continue
        cid = public_id(private[k.cluster_id]) if public_id is not None else k.cluster_id
        if cid not in released:
            continue
        if k.relation == KEPT:
            if cid != k.previous_cluster_id:
                continue
        elif cid == k.previous_cluster_id or (
            k.n_shared_users < config.min_users
            or k.n_shared_conversations < config.min_conversations
        ):
            continue
        out.setdefault(
            (cid, k.previous_cluster_id),
            ReleasedLineage(cid, k.previous_run_id, k.previous_cluster_id, k.relation),
        )
    return [out[key] for key in sorted(out)]


def rename_ids(
    clusters: Sequence[Cluster],
    rows: Sequence[ReleasedCluster],
    breakdowns: Sequence[ReleasedBreakdown],
    public_id: PublicId,
) -> tuple[list[ReleasedCluster], list[ReleasedBreakdown]]:
    """The rows with every cluster id (and parent id) replaced by its released id."""
    ids = {c.cluster_id: public_id(c) for c in clusters}
    if len(set(ids.values())) != len(ids):
        raise ValueError("two clusters got the same released id")
    renamed = [
        replace(
            c,
            cluster_id=ids[c.cluster_id],
            parent_id=ids[c.parent_id] if c.parent_id is not None else None,
        )
        for c in rows
    ]
    cells = [replace(b, cluster_id=ids[b.cluster_id]) for b in breakdowns]
    return renamed, cells


def released_positions(
    rows: Sequence[ReleasedCluster], base_positions: Mapping[str, tuple[float, float]]
) -> list[ReleasedCluster]:
    """`rows` with positions from the released base clusters only (see the module doc).
    `base_positions` maps a level-0 cluster's released id to its private map position."""
    by_facet: dict[str, list[ReleasedCluster]] = defaultdict(list)
    for c in rows:
        if c.level == 0 and c.cluster_id in base_positions:
            by_facet[c.facet].append(c)
    placed: dict[str, tuple[float, float]] = {}
    for bases in by_facet.values():
        points = [base_positions[c.cluster_id] for c in bases]
        mx = sum(p[0] for p in points) / len(points)
        my = sum(p[1] for p in points) / len(points)
        extent = max(max(abs(p[0] - mx), abs(p[1] - my)) for p in points)
        scale = 1.0 / extent if extent > 0 else 0.0
        for c, p in zip(bases, points, strict=True):
            placed[c.cluster_id] = ((p[0] - mx) * scale, (p[1] - my) * scale)
    parent_of = {c.cluster_id: c.parent_id for c in rows}
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for c in rows:
        if c.cluster_id not in placed:
            continue
        x, y = placed[c.cluster_id]
        above = c.parent_id
        while above is not None:
            total = sums[above]
            total[0] += x * c.n_conversations
            total[1] += y * c.n_conversations
            total[2] += c.n_conversations
            above = parent_of.get(above)
    for cid, (sx, sy, weight) in sums.items():
        if weight > 0:
            placed[cid] = (sx / weight, sy / weight)
    return [
        replace(c, x=placed[c.cluster_id][0], y=placed[c.cluster_id][1])
        if c.cluster_id in placed
        else replace(c, x=None, y=None)
        for c in rows
    ]
