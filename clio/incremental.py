"""Incremental runs: add new conversations to the last full build without re-clustering.

A full build keeps its tree in the private store (`builds`, `build_nodes` with the base
clusters' centroids, `build_conversations`). An incremental run embeds the new
conversations' facet texts and assigns each to the nearest base centroid of that build
(`Clusterer.predict` of the build's clusterer loaded with those centroids) when its cosine
distance is at most `incremental.max_distance`; the others wait, recorded in `unassigned`,
for the next full build. Names, descriptions, keywords, map positions and the hierarchy
stay the build's; only the counts grow, and they go through the gate like any release.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from clio.cluster import unit_rows
from clio.config import RunConfig
from clio.records import Cluster
from clio.store import BuildNode

Mode = Literal["full", "incremental", "rebuild"]

# LLM settings that change how fast or where answers come, never which answers: a change
# of these keeps the last build extendable.
_OPERATIONAL_LLM_FIELDS = {
    "base_url",
    "api_key_env",
    "timeout_seconds",
    "max_retries",
    "concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "threads",
    "local_contexts",
    "price_per_million_input_tokens",
    "price_per_million_output_tokens",
    "price_table",
}


def tree_digest(config: RunConfig) -> str:
    """Hash of the settings that shape a build's tree (scrubbing, facets, embedding,
    clustering, naming). An incremental run extends a build only when they are unchanged;
    privacy thresholds, runner and incremental settings may change freely."""
    shaping = config.model_dump(
        mode="json",
        include={"ingest", "scrub", "llm", "facets", "embed", "cluster", "describe", "hierarchy"},
        exclude={"llm": _OPERATIONAL_LLM_FIELDS},
    )
    canonical = json.dumps(shaping, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def base_centroids(vectors: np.ndarray, item_indices: Sequence[Sequence[int]]) -> np.ndarray:
    """Unit-length mean vector of each base cluster's items (one row per cluster)."""
    unit = unit_rows(vectors)
    if not item_indices:
        return np.zeros((0, unit.shape[1]), dtype=np.float32)
    empty = np.zeros(unit.shape[1], dtype=np.float32)  # no items: a centroid nothing is near
    means = np.stack([unit[list(items)].mean(axis=0) if items else empty for items in item_indices])
    return unit_rows(means)


def tree_from_build(
    nodes: Sequence[BuildNode], base_members: Mapping[str, set[str]]
) -> list[Cluster]:
    """The build's tree with today's membership: base clusters hold `base_members`, and a
    parent holds every conversation of its children (as a full build's tree does)."""
    clusters = {
        n.cluster_id: Cluster(
            facet=n.facet,
            level=n.level,
            cluster_id=n.cluster_id,
            parent_id=n.parent_id,
            member_ids=sorted(base_members.get(n.cluster_id, set())) if n.level == 0 else [],
            name=n.name,
            description=n.description,
            keywords=list(n.keywords),
            x=n.x,
            y=n.y,
        )
        for n in nodes
    }
    members = {cid: set(c.member_ids) for cid, c in clusters.items()}
    for node in sorted(nodes, key=lambda n: (n.level, n.cluster_id)):
        if node.parent_id is None:
            continue
        if node.parent_id not in clusters:
            raise ValueError(f"build node {node.cluster_id} names a missing parent")
        clusters[node.parent_id].children.append(node.cluster_id)
        members[node.parent_id] |= members[node.cluster_id]
    for cid, cluster in clusters.items():
        cluster.member_ids = sorted(members[cid])
        cluster.children.sort()
    return sorted(clusters.values(), key=lambda c: (c.facet, c.level, c.cluster_id))
