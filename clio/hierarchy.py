"""One facet's cluster tree: base clusters, keywords, names, parent levels, map positions.

Parent levels are built one of two ways (`hierarchy.procedure`, looked up in
`PARENT_PROCEDURES`):
- by the LLM, the Clio way (`clio.hierarchy_llm`): level by level, neighbourhoods of
  clusters get proposed parent names, duplicates are merged, each child picks its parent
  and parents are renamed from their children, until the top has `top_clusters` nodes;
- from centroids, without relying on the LLM for structure. Every parent level is a
  partition of the base clusters made directly from their centroids (not from the level
  below, where merged centroids blur the structure): by default spectral clustering of
  the base clusters' nearest-neighbour graph, or Ward linkage. The tree must nest, so a
  level is refined by the levels above it: two base clusters share a node only if they
  share every node above it too (a level can end up with a few more nodes than asked
  for). The top level, a handful of nodes, instead groups the nodes of the level below,
  so it splits none. The LLM (if any) only names nodes.
A node the LLM fails to name gets a keyword name (`Cluster.extra["name_source"]` says which).
With extractive names (`describe.names`, the default on the embedded model) no LLM names
anything: every node gets a phrase from its members' texts (`clio.extractive`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from clio.cluster import (
    Clusterer,
    build_clusterer,
    centroids_of,
    compact_labels,
    members_by_cluster,
    unit_rows,
)
from clio.config import ClusterConfig, DescribeConfig, HierarchyConfig, RunConfig
from clio.describe import describe_clusters, parent_prompt, summarise_with_fallback
from clio.extractive import (
    FacetWords,
    Scored,
    distinct_names,
    joined_names,
    name_clusters,
    name_parent,
)
from clio.hierarchy_llm import build_parent_level
from clio.keywords import TermCounts, count_terms, keywords_of
from clio.llm.base import Prompt
from clio.mapping import map_positions
from clio.naming import keyword_description, keyword_name
from clio.records import Cluster

if TYPE_CHECKING:
    from clio.llm.client import StructuredLLM

_log = logging.getLogger("clio.hierarchy")

MAX_CHILD_NAMES_IN_PROMPT = 15  # a parent prompt lists at most this many children (largest)

Procedure = Literal["llm", "centroids"]
Naming = Literal["llm", "extractive"]


@dataclass(frozen=True)
class TreeSettings:
    """What building a facet's tree reads, and nothing else of the run config: the
    clustering, naming and hierarchy sections, the user count a keyword needs to be shown
    (the privacy threshold), the parent-level procedure and the naming, "auto" already
    resolved."""

    cluster: ClusterConfig
    describe: DescribeConfig
    hierarchy: HierarchyConfig
    min_users: int
    procedure: Procedure
    names: Naming = "llm"

    @classmethod
    def from_config(cls, config: RunConfig) -> TreeSettings:
        return cls(
            cluster=config.cluster,
            describe=config.describe,
            hierarchy=config.hierarchy,
            min_users=config.privacy.min_users,
            procedure=resolve_procedure(config.hierarchy, config.llm.backend),
            names=resolve_names(config.describe, config.llm.backend),
        )


def resolve_names(settings: DescribeConfig, llm_backend: str) -> Naming:
    """`describe.names`, where "auto" is extractive on the local model (too small to name
    clusters: its names were mostly keyword lists or placeholders) and the LLM otherwise."""
    if settings.names != "auto":
        return settings.names
    return "extractive" if llm_backend == "local" else "llm"


def resolve_procedure(settings: HierarchyConfig, llm_backend: str) -> Procedure:
    """`hierarchy.procedure`, where "auto" is the LLM procedure when parents are LLM-named
    and the backend is not the local model (too small to follow it reliably)."""
    if settings.procedure != "auto":
        return settings.procedure
    return "llm" if settings.name_parents_with_llm and llm_backend != "local" else "centroids"


@dataclass
class _Level:
    item_labels: np.ndarray  # node index at this level for every item
    centroids: np.ndarray  # (m, d), normalised
    keywords: dict[int, list[str]]
    summaries: list[tuple[str, str, str]]  # (name, description, name_source) per node
    child_to_node: np.ndarray | None = None  # node index for every node of the level below
    phrases: list[list[Scored]] | None = None  # extractive naming: ranked phrases per node
    facet_words: FacetWords | None = None  # extractive naming: the facet's texts, counted


class TreeNode(Protocol):
    """A node of a stored or built tree, as far as its place in the tree goes."""

    level: int
    cluster_id: str
    parent_id: str | None


@dataclass(frozen=True)
class InheritedParents:
    """A previous build's parent levels, for a new build of the same facet to keep: its
    base clusters' centroids (largest first) and, for each parent level (lowest first),
    the node index each base cluster sits under."""

    base_centroids: np.ndarray  # (m, d), normalised
    ancestors: list[np.ndarray]  # per parent level: (m,) node index

    @classmethod
    def of_tree(
        cls, nodes: Sequence[TreeNode], base_centroids: np.ndarray
    ) -> InheritedParents | None:
        """The parent levels of one facet's tree `nodes` (ordered by level, then id), whose
        base nodes have `base_centroids`; None for a tree of base clusters only, or one
        whose base clusters do not all have a parent at every level."""
        top = max((n.level for n in nodes), default=0)
        if top == 0:
            return None
        parent_of = {n.cluster_id: n.parent_id for n in nodes}
        index = {n.cluster_id: i for i, n in enumerate(nodes)}
        base = [n for n in nodes if n.level == 0]
        ancestors = np.zeros((top, len(base)), dtype=np.int64)
        for column, node in enumerate(base):
            current: str | None = node.cluster_id
            for level in range(top):
                current = parent_of.get(current or "")
                if current is None or current not in index:
                    return None
                ancestors[level, column] = index[current]
        return cls(np.asarray(base_centroids, dtype=np.float32), list(ancestors))

    def levels_for(self, centroids: np.ndarray, base_sizes: np.ndarray) -> list[np.ndarray]:
        """`nested_levels` for the new base clusters `centroids`: each sits under the nodes
        of the previous base cluster nearest to it, so the clusters a small change kept keep
        their parents, and a new one joins its nearest old neighbour's."""
        nearest = np.argmax(unit_rows(centroids) @ unit_rows(self.base_centroids).T, axis=1)
        weights = base_sizes.astype(np.float64)
        return [compact_labels(level[nearest], weights=weights) for level in self.ancestors]


def cluster_id(facet: str, level: int, index: int) -> str:
    return f"{facet}-L{level}-{index:03d}"


def parent_level_sizes(n_base: int, settings: HierarchyConfig) -> list[int]:
    """Node counts of the levels above the base: each about 1/branching of the one below,
    until a level has at most `top_clusters` nodes (but at least two levels above the base
    when there are more than `top_clusters` base clusters), never more than `max_levels`."""
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


def partition_base_clusters(
    centroids: np.ndarray, n_groups: int, settings: HierarchyConfig, seed: int
) -> np.ndarray:
    """Group index (not compacted) of every base cluster, from their normalised centroids."""
    k = len(centroids)
    if n_groups <= 1:
        return np.zeros(k, dtype=np.int64)
    if n_groups >= k:
        return np.arange(k, dtype=np.int64)
    # On a few points a nearest-neighbour graph is nearly complete and says nothing: Ward.
    if settings.grouping == "ward" or k <= 2 * settings.grouping_neighbors:
        from sklearn.cluster import AgglomerativeClustering

        ward = AgglomerativeClustering(n_clusters=n_groups, linkage="ward")
        return ward.fit_predict(centroids).astype(np.int64)
    from sklearn.cluster import SpectralClustering

    spectral = SpectralClustering(
        n_clusters=n_groups,
        affinity="nearest_neighbors",
        n_neighbors=graph_neighbors(centroids, n_groups, settings.grouping_neighbors),
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "graph is not fully connected"
        return spectral.fit_predict(centroids).astype(np.int64)


def graph_neighbors(centroids: np.ndarray, n_groups: int, wanted: int) -> int:
    """Neighbours per point for the spectral graph: `wanted`, doubled until the graph has
    at most `n_groups` connected components (pieces it cannot see between cannot be
    grouped sensibly: tight topics with no edges between them would be paired at random)."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import kneighbors_graph

    k = len(centroids)
    neighbors = min(wanted, k - 1)
    while neighbors < k - 1:
        graph = kneighbors_graph(centroids, neighbors, include_self=False)
        n_components, _ = connected_components(graph, directed=False)
        if n_components <= n_groups:
            break
        neighbors = min(2 * neighbors, k - 1)
    return neighbors


def nested_levels(
    centroids: np.ndarray,
    base_sizes: np.ndarray,
    level_sizes: Sequence[int],
    settings: HierarchyConfig,
    seed: int,
) -> list[np.ndarray]:
    """For each parent level (lowest first), the node of every base cluster, numbered
    largest first. Each level but the top is partitioned on its own and refined by the
    levels above, so the tree nests; the top level (the coarsest, a handful of nodes)
    groups the nodes of the level below it, so it never splits them."""
    weights = base_sizes.astype(np.float64)
    if not level_sizes:
        return []
    nested: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(level_sizes)
    above: np.ndarray | None = None
    n_partitioned = max(1, len(level_sizes) - 1)  # every level but the top, if there are two
    for index in range(n_partitioned - 1, -1, -1):
        own = partition_base_clusters(centroids, level_sizes[index], settings, seed)
        if above is not None:
            # a node is one (own group, node above) pair
            _, own = np.unique(np.stack([own, above], axis=1), axis=0, return_inverse=True)
        nested[index] = compact_labels(own.reshape(-1), weights=weights)
        above = nested[index]
    if len(level_sizes) > 1:
        below = nested[-2]
        node_centroids = centroids_of(centroids * weights[:, None], below, int(below.max()) + 1)
        top = partition_base_clusters(node_centroids, level_sizes[-1], settings, seed)
        nested[-1] = compact_labels(top[below], weights=weights)
    return nested


def build_facet_tree(
    facet: str,
    item_conversation_ids: Sequence[str],
    texts: Sequence[str],
    users: Sequence[str],
    vectors: np.ndarray,
    llm: StructuredLLM | None,
    settings: TreeSettings,
    clusterer: Clusterer | None = None,
    inherited: InheritedParents | None = None,
) -> list[Cluster]:
    """Every node of the facet's tree, level 0 (base) first. One item is one facet text
    (a list facet gives several items per conversation); `users` are pseudonyms.
    `clusterer` makes the base clusters (the configured one when None; pass one to
    warm-start it or to read its seeds after); with `inherited`, parent levels built from
    centroids keep a previous build's (`InheritedParents.levels_for`)."""
    n = len(texts)
    if not (len(item_conversation_ids) == n == len(users) == len(vectors)):
        raise ValueError(
            "item_conversation_ids, texts, users and vectors must have one entry per item: "
            f"{len(item_conversation_ids)}, {n}, {len(users)}, {len(vectors)}"
        )
    if n == 0:
        return []
    vectors = unit_rows(vectors)

    clusterer = clusterer or build_clusterer(settings.cluster)
    labels, centroids = clusterer.fit(vectors)
    terms = count_terms(texts, users)  # counted once, scored for every level's labels
    keywords = _keywords(terms, labels, settings)
    if settings.names == "extractive":
        facet_words = FacetWords.of(texts, users)
        named = name_clusters(facet_words, labels, vectors, centroids, keywords, settings.min_users)
        unnamed = [c for c, (_, found) in enumerate(named) if found is None]
        if settings.describe.fold_unnamed and 0 < len(unnamed) < len(centroids):
            labels, centroids = fold_clusters(vectors, labels, centroids, unnamed)
            _log.info(f"hierarchy {facet}: {len(unnamed)} base clusters without a supported "
                      "word folded into their nearest named ones")  # fmt: skip
            keywords = _keywords(terms, labels, settings)
            named = name_clusters(
                facet_words, labels, vectors, centroids, keywords, settings.min_users
            )
        named = distinct_names(named, keywords)
        summaries = [
            _extractive_summary(found, keywords.get(c, []), f"{facet} cluster {c}")
            for c, (_, found) in enumerate(named)
        ]
        phrases = [ranked for ranked, _ in named]
        levels = [
            _Level(labels, centroids, keywords, summaries, phrases=phrases, facet_words=facet_words)
        ]
        llm = None  # parents are named extractively too, and built from centroids
    else:
        summaries = describe_clusters(
            facet,
            texts,
            labels,
            vectors,
            centroids,
            keywords,
            llm,
            settings.describe,
            settings.cluster.seed,
        )
        levels = [_Level(labels, centroids, keywords, summaries)]
    add_levels = PARENT_PROCEDURES[parent_procedure(llm, settings)]
    add_levels(facet, levels, terms, vectors, llm, settings, inherited)

    clusters = _to_clusters(facet, levels, item_conversation_ids, settings.cluster.seed)
    _log.info(
        f"hierarchy {facet}: {n} items, levels "
        + " > ".join(str(len(level.centroids)) for level in levels)
    )
    return clusters


def fold_clusters(
    vectors: np.ndarray, labels: np.ndarray, centroids: np.ndarray, folded: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, centroids) with the clusters `folded` removed: each of their items joins
    the remaining cluster whose centroid is nearest. The others keep their order (largest
    first again after compacting) and get the centroids of their new members."""
    keep = np.setdiff1d(np.arange(len(centroids)), np.asarray(folded, dtype=np.int64))
    moved = np.isin(labels, folded)
    labels = labels.copy()
    labels[moved] = keep[np.argmax(vectors[moved] @ centroids[keep].T, axis=1)]
    labels = compact_labels(labels)
    return labels, centroids_of(vectors, labels, len(keep)).astype(np.float32)


def base_cluster_of_items(tree: Sequence[Cluster]) -> dict[int, str]:
    """Item index -> id of its base (level 0) cluster, from the tree's `item_indices`."""
    return {
        member: node.cluster_id
        for node in tree
        if node.level == 0
        for member in node.extra.get("item_indices", [])
    }


def parent_procedure(llm: StructuredLLM | None, settings: TreeSettings) -> Procedure:
    """How parent levels are built: the configured procedure, or from centroids when there
    is no LLM to follow the LLM procedure."""
    return settings.procedure if llm is not None else "centroids"


def _keywords(
    terms: TermCounts, labels: np.ndarray, settings: TreeSettings
) -> dict[int, list[str]]:
    """Each node's keywords, each used by at least `min_users` users."""
    return keywords_of(
        terms, labels, n_keywords=settings.describe.n_keywords, min_users=settings.min_users
    )


def next_level_size(n_children: int, settings: HierarchyConfig) -> int:
    """Parents wanted above `n_children`: about 1/branching of them, but not below
    `top_clusters` (the last level is the top), and always fewer than the children."""
    wanted = max(settings.top_clusters, round(n_children / settings.branching))
    return max(1, min(n_children - 1, wanted))


def _add_llm_levels(
    facet: str,
    levels: list[_Level],
    terms: TermCounts,
    vectors: np.ndarray,
    llm: StructuredLLM | None,
    tree_settings: TreeSettings,
    inherited: InheritedParents | None = None,
) -> None:
    """Parent levels by the Clio procedure (`clio.hierarchy_llm`) until the top has at most
    `top_clusters` nodes, `max_levels` are built, or a level would not shrink. It builds
    them anew each time (`inherited` is not used: the LLM proposes the parents)."""
    if llm is None:
        raise ValueError("the llm hierarchy procedure needs an LLM")
    settings = tree_settings.hierarchy
    while len(levels) - 1 < settings.max_levels:
        below = levels[-1]
        n_children = len(below.centroids)
        if n_children <= settings.top_clusters or n_children < 2:
            break
        sizes = np.bincount(below.item_labels, minlength=n_children)
        built = build_parent_level(
            below.summaries,
            below.centroids,
            sizes,
            [below.keywords.get(c, []) for c in range(n_children)],
            next_level_size(n_children, settings),
            llm,
            settings,
            tree_settings.cluster.seed,
            label=f"hierarchy {facet} L{len(levels)}",
        )
        n_parents = len(built.summaries)
        if n_parents >= n_children:
            _log.info(f"hierarchy {facet}: the LLM merged no clusters; no more levels")
            break
        item_labels = built.child_to_parent[below.item_labels]
        levels.append(
            _Level(
                item_labels=item_labels,
                centroids=centroids_of(vectors, item_labels, n_parents),
                keywords=_keywords(terms, item_labels, tree_settings),
                summaries=built.summaries,
                child_to_node=built.child_to_parent,
            )
        )


def _add_centroid_levels(
    facet: str,
    levels: list[_Level],
    terms: TermCounts,
    vectors: np.ndarray,
    llm: StructuredLLM | None,
    settings: TreeSettings,
    inherited: InheritedParents | None = None,
) -> None:
    """Parent levels by grouping base-cluster centroids (`nested_levels`), or those of a
    previous build (`inherited`), LLM- or keyword-named."""
    base = levels[0]
    labels, centroids = base.item_labels, base.centroids
    base_sizes = np.bincount(labels, minlength=len(centroids))
    base_to_below = np.arange(len(centroids))
    if inherited is not None:
        nested = inherited.levels_for(centroids, base_sizes)
    else:
        level_sizes = parent_level_sizes(len(centroids), settings.hierarchy)
        nested = nested_levels(
            centroids, base_sizes, level_sizes, settings.hierarchy, settings.cluster.seed
        )
    for base_to_node in nested:
        below = levels[-1]
        n_parents = int(base_to_node.max()) + 1
        if n_parents == len(below.centroids):
            continue  # refining made it the level below again: nothing to add
        child_to_node = np.zeros(len(below.centroids), dtype=np.int64)
        child_to_node[base_to_below] = base_to_node
        item_labels = base_to_node[labels]
        level = _Level(
            item_labels=item_labels,
            centroids=centroids_of(vectors, item_labels, n_parents),
            keywords=_keywords(terms, item_labels, settings),
            summaries=[],
            child_to_node=child_to_node,
        )
        if base.facet_words is not None:
            _name_parents_extractively(facet, len(levels), level, below, base, settings)
        else:
            level.summaries = _name_parents(
                facet, len(levels), level, below, llm, settings.hierarchy
            )
        levels.append(level)
        base_to_below = base_to_node


def _name_parents(
    facet: str,
    level_number: int,
    level: _Level,
    below: _Level,
    llm: StructuredLLM | None,
    settings: HierarchyConfig,
) -> list[tuple[str, str, str]]:
    assert level.child_to_node is not None
    n_nodes = len(level.centroids)
    children = members_by_cluster(level.child_to_node, n_nodes)  # children are size-ordered
    use_llm = llm if settings.name_parents_with_llm else None
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


def _extractive_summary(
    found: tuple[str, str] | None, keywords: list[str], fallback: str
) -> tuple[str, str, str]:
    """(name, description, name_source): the phrase, else the keyword name and description."""
    if found is not None:
        return (*found, "extractive")
    return keyword_name(keywords, fallback), keyword_description(keywords), "keywords"


def _name_parents_extractively(
    facet: str,
    level_number: int,
    level: _Level,
    below: _Level,
    base: _Level,
    settings: TreeSettings,
) -> None:
    """Each parent's phrases from its children's, supported over its own members; its name
    lists the names of the largest extractively named base clusters under it (each
    supported in its base cluster, so in the parent too), else its best phrase."""
    assert level.child_to_node is not None and below.phrases is not None
    assert base.facet_words is not None
    n_nodes = len(level.centroids)
    children = members_by_cluster(level.child_to_node, n_nodes)
    items = members_by_cluster(level.item_labels, n_nodes)
    level.phrases, level.summaries = [], []
    for node in range(n_nodes):
        keywords = level.keywords.get(node, [])
        ranked, found = name_parent(
            base.facet_words,
            items[node].tolist(),
            [below.phrases[int(c)] for c in children[node]],
            keywords,
            settings.min_users,
        )
        level.phrases.append(ranked)
        under = np.bincount(base.item_labels[items[node]], minlength=len(base.centroids))
        largest = [int(b) for b in np.argsort(-under, kind="stable") if under[b] > 0]
        named = [base.summaries[b][0] for b in largest if base.summaries[b][2] == "extractive"]
        if found is not None and len(named) > 1:
            found = (joined_names(named), found[1])
        fallback = f"{facet} group L{level_number}-{node}"
        level.summaries.append(_extractive_summary(found, keywords, fallback))


# A procedure appending the parent levels above `levels[0]` (the base clusters), given the
# facet, the levels, the term counts, the item vectors, the LLM (if any), the settings and
# a previous build's parents to keep (a procedure that cannot keep them ignores them).
ParentLevels = Callable[
    [
        str,
        list[_Level],
        TermCounts,
        np.ndarray,
        "StructuredLLM | None",
        TreeSettings,
        "InheritedParents | None",
    ],
    None,
]

# `hierarchy.procedure` -> how its parent levels are built; a new procedure registers here.
PARENT_PROCEDURES: dict[Procedure, ParentLevels] = {
    "llm": _add_llm_levels,
    "centroids": _add_centroid_levels,
}


def _to_clusters(
    facet: str, levels: list[_Level], item_conversation_ids: Sequence[str], seed: int
) -> list[Cluster]:
    clusters: list[Cluster] = []
    base = levels[0]
    # One map per tree: base clusters placed by UMAP (or PCA) over their centroids, and each
    # parent at the item-weighted mean of its base clusters, so parents sit among children.
    base_positions = map_positions(base.centroids, seed)
    base_sizes = np.bincount(base.item_labels, minlength=len(base.centroids)).astype(np.float64)
    for number, level in enumerate(levels):
        n_nodes = len(level.centroids)
        above = levels[number + 1] if number + 1 < len(levels) else None
        children = (
            members_by_cluster(level.child_to_node, n_nodes)
            if level.child_to_node is not None
            else None
        )
        positions = _parent_positions(base_positions, base_sizes, base.item_labels, level)
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


def _parent_positions(
    base_positions: np.ndarray, base_sizes: np.ndarray, base_labels: np.ndarray, level: _Level
) -> np.ndarray:
    n_nodes = len(level.centroids)
    base_to_node = np.zeros(len(base_positions), dtype=np.int64)
    base_to_node[base_labels] = level.item_labels
    sums = np.zeros((n_nodes, 2), dtype=np.float64)
    np.add.at(sums, base_to_node, base_positions * base_sizes[:, None])
    weights = np.bincount(base_to_node, weights=base_sizes, minlength=n_nodes)
    return sums / np.where(weights > 0, weights, 1.0)[:, None]
