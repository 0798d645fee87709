"""One facet's cluster tree: base clusters, keywords, names, parent levels, map positions.

Structure never depends on the LLM: parents are Ward agglomerative clusters of
their children's centroids. The LLM only names nodes, and a node it fails to name
gets a keyword name (`Cluster.extra["name_source"]` says which).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clio.cluster import centroids_of, cluster_vectors, compact_labels, members_by_cluster
from clio.config import RunConfig
from clio.describe import describe_clusters, parent_prompt, summarise_with_fallback
from clio.embed import normalise_rows
from clio.keywords import cluster_keywords
from clio.llm.base import Prompt
from clio.mapping import map_positions
from clio.records import Cluster

if TYPE_CHECKING:
    from clio.llm.client import StructuredLLM

_log = logging.getLogger("clio.hierarchy")

MAX_CHILD_NAMES_IN_PROMPT = 15  # a parent prompt lists at most this many children (largest)


@dataclass
class _Level:
    item_labels: np.ndarray  # node index at this level for every item
    centroids: np.ndarray  # (m, d), normalised
    keywords: dict[int, list[str]]
    summaries: list[tuple[str, str, str]]  # (name, description, name_source) per node
    child_to_node: np.ndarray | None = None  # node index for every node of the level below


def cluster_id(facet: str, level: int, index: int) -> str:
    return f"{facet}-L{level}-{index:03d}"


def parent_level_sizes(n_base: int, config: RunConfig) -> list[int]:
    """Node counts of the levels above the base: each about 1/branching of the one below,
    until a level has at most `top_clusters` nodes (but at least two levels above the base
    when there are more than `top_clusters` base clusters), never more than `max_levels`."""
    settings = config.hierarchy
    sizes: list[int] = []
    current = n_base
    while len(sizes) < settings.max_levels and current > 1:
        needs_more = current > settings.top_clusters or (
            n_base > settings.top_clusters and len(sizes) < 2
        )
        if not needs_more:
            break
        current = min(current - 1, max(1, round(current / settings.branching)))
        sizes.append(current)
    return sizes


def group_children(
    child_centroids: np.ndarray, child_sizes: np.ndarray, n_parents: int
) -> np.ndarray:
    """Parent index for every child: Ward linkage on the child centroids (k×k, fine),
    parents numbered largest first by the number of items under them."""
    if n_parents <= 1:
        return np.zeros(len(child_centroids), dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    raw = AgglomerativeClustering(n_clusters=n_parents, linkage="ward").fit_predict(child_centroids)
    return compact_labels(raw, weights=child_sizes.astype(np.float64))


def build_facet_tree(
    facet: str,
    item_conversation_ids: Sequence[str],
    texts: Sequence[str],
    users: Sequence[str],
    vectors: np.ndarray,
    llm: StructuredLLM | None,
    config: RunConfig,
) -> list[Cluster]:
    """Every node of the facet's tree, level 0 (base) first. One item is one facet text
    (a list facet gives several items per conversation); `users` are pseudonyms."""
    n = len(texts)
    if not (len(item_conversation_ids) == n == len(users) == len(vectors)):
        raise ValueError(
            "item_conversation_ids, texts, users and vectors must have one entry per item: "
            f"{len(item_conversation_ids)}, {n}, {len(users)}, {len(vectors)}"
        )
    if n == 0:
        return []
    vectors = normalise_rows(vectors)
    n_keywords, min_users = config.describe.n_keywords, config.privacy.min_users

    labels, centroids = cluster_vectors(vectors, config.cluster)
    keywords = cluster_keywords(texts, labels, users, n_keywords=n_keywords, min_users=min_users)
    summaries = describe_clusters(
        facet,
        texts,
        labels,
        vectors,
        centroids,
        keywords,
        llm,
        config.describe,
        config.cluster.seed,
    )
    levels = [_Level(labels, centroids, keywords, summaries)]

    for n_parents in parent_level_sizes(len(centroids), config):
        below = levels[-1]
        child_sizes = np.bincount(below.item_labels, minlength=len(below.centroids))
        child_to_node = group_children(below.centroids, child_sizes, n_parents)
        item_labels = child_to_node[below.item_labels]
        parent_keywords = cluster_keywords(
            texts, item_labels, users, n_keywords=n_keywords, min_users=min_users
        )
        level = _Level(
            item_labels=item_labels,
            centroids=centroids_of(vectors, item_labels, n_parents),
            keywords=parent_keywords,
            summaries=[],
            child_to_node=child_to_node,
        )
        level.summaries = _name_parents(facet, len(levels), level, below, llm, config)
        levels.append(level)

    clusters = _to_clusters(facet, levels, item_conversation_ids, config.cluster.seed)
    _log.info(
        f"hierarchy {facet}: {n} items, levels "
        + " > ".join(str(len(level.centroids)) for level in levels)
    )
    return clusters


def _name_parents(
    facet: str,
    level_number: int,
    level: _Level,
    below: _Level,
    llm: StructuredLLM | None,
    config: RunConfig,
) -> list[tuple[str, str, str]]:
    assert level.child_to_node is not None
    n_nodes = len(level.centroids)
    children = members_by_cluster(level.child_to_node, n_nodes)  # children are size-ordered
    use_llm = llm if config.hierarchy.name_parents_with_llm else None
    prompts: list[Prompt | None] = []
    for node in range(n_nodes):
        if use_llm is None or len(children[node]) < 2:
            prompts.append(None)
            continue
        names = [below.summaries[c][0] for c in children[node][:MAX_CHILD_NAMES_IN_PROMPT]]
        prompts.append(parent_prompt(names, level.keywords.get(node, [])))
    summaries = summarise_with_fallback(
        prompts,
        [level.keywords.get(node, []) for node in range(n_nodes)],
        [f"{facet} group L{level_number}-{node}" for node in range(n_nodes)],
        use_llm,
        label=f"name {facet} L{level_number}",
    )
    # A parent with a single child is that child seen from higher up: when parents are
    # LLM-named, it reuses the child's summary instead of asking again.
    if use_llm is not None:
        for node in range(n_nodes):
            if len(children[node]) == 1:
                summaries[node] = below.summaries[int(children[node][0])]
    return list(summaries)


def _to_clusters(
    facet: str, levels: list[_Level], item_conversation_ids: Sequence[str], seed: int
) -> list[Cluster]:
    clusters: list[Cluster] = []
    for number, level in enumerate(levels):
        n_nodes = len(level.centroids)
        above = levels[number + 1] if number + 1 < len(levels) else None
        children = (
            members_by_cluster(level.child_to_node, n_nodes)
            if level.child_to_node is not None
            else None
        )
        positions = map_positions(level.centroids, seed)
        for node, items in enumerate(members_by_cluster(level.item_labels, n_nodes)):
            name, description, source = level.summaries[node]
            parent = None
            if above is not None:
                assert above.child_to_node is not None
                parent = cluster_id(facet, number + 1, int(above.child_to_node[node]))
            extra: dict[str, object] = {"name_source": source, "n_items": len(items)}
            if number == 0:
                extra["item_indices"] = sorted(int(i) for i in items)
            clusters.append(
                Cluster(
                    facet=facet,
                    level=number,
                    cluster_id=cluster_id(facet, number, node),
                    parent_id=parent,
                    member_ids=sorted({item_conversation_ids[i] for i in items}),
                    name=name,
                    description=description,
                    keywords=list(level.keywords.get(node, [])),
                    x=float(positions[node, 0]),
                    y=float(positions[node, 1]),
                    children=(
                        [cluster_id(facet, number - 1, int(c)) for c in children[node]]
                        if children is not None
                        else []
                    ),
                    extra=extra,
                )
            )
    return clusters
