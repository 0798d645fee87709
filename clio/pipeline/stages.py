"""The run's stages over the private store, as plain functions.

Partition stages (`scrub_slice`, `extract_facets_slice`, `embed_slice`) open the main
store read-only and write what they make to their own shard file, so any number can run
at once (the store takes one writer); the caller merges the shards. The other stages run
in the one process that writes the store. Each takes the config sections it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from clio.cluster import build_clusterer
from clio.config import (
    ClusterConfig,
    EmbedConfig,
    FacetConfig,
    IngestConfig,
    LineageConfig,
    LLMConfig,
    ScrubConfig,
)
from clio.embed import embed_texts
from clio.facet_quality import FacetQuality, measure_facets
from clio.facets import example_outputs, extract_facets
from clio.hierarchy import (
    InheritedParents,
    TreeSettings,
    base_cluster_of_items,
    build_facet_tree,
)
from clio.incremental import base_centroids, tree_from_build
from clio.ingest import ingest
from clio.lineage import LineageNode, inherited_roots, match_builds, same_names
from clio.llm.client import StructuredLLM
from clio.llm.client import Usage as LLMUsage
from clio.pipeline.components import embedder_for, hmac_key, key_fingerprint, llm_for, scrubber_for
from clio.records import Cluster, FacetValue, QuarantineRecord
from clio.scrub import scrub_conversations, scrub_workers
from clio.store import BuildLineage, BuildNode, LayeredCache, PrivateStore

log = logging.getLogger("clio.flow")

Usage = dict[str, int]


@dataclass
class ScrubbedPart:
    conversation_ids: list[str]
    quarantine: list[QuarantineRecord]
    n_pii_spans: int


@dataclass
class FacetsPart:
    usage: Usage
    failed: dict[str, int]  # failures by facet


@dataclass
class FacetItems:
    """One facet's texts to embed and cluster: a list facet gives one item per entry,
    with id `<conversation id>#<entry>`."""

    item_ids: list[str] = field(default_factory=list)
    conversation_ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


@dataclass
class FacetTree:
    clusters: list[Cluster]
    nodes: list[BuildNode]  # the same tree as the private store keeps it
    usage: Usage
    seeds: dict[str, np.ndarray] = field(default_factory=dict)  # facet -> clusterer seeds


@dataclass(frozen=True)
class PreviousFacet:
    """What a new build of a facet takes from the previous build: the seeds its base
    clustering ended on, the number of facet texts it clustered, and its parent levels."""

    seeds: np.ndarray
    n_items: int
    parents: InheritedParents | None


def usage_of(llm: StructuredLLM | None) -> Usage:
    return (llm.usage if llm is not None else LLMUsage()).as_dict()


def add_usage(total: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value


def facet_items(values: Sequence[FacetValue], facet: str) -> FacetItems:
    """The clusterable texts of `facet` among `values` (answers that failed are left out)."""
    items = FacetItems()
    for value in values:
        if value.facet != facet or value.status != "ok" or value.value is None:
            continue
        entries = value.value if isinstance(value.value, list) else [value.value]
        for index, entry in enumerate(entries):
            text = str(entry).strip()
            if text:
                items.item_ids.append(f"{value.conversation_id}#{index}")
                items.conversation_ids.append(value.conversation_id)
                items.texts.append(text)
    return items


def canonical_order(items: FacetItems, content_hashes: Mapping[str, str]) -> FacetItems:
    """The same items ordered by their conversation's content hash, then entry: the order
    a build clusters in, so the same conversations read in another order (or from another
    file, under other ids) give the same seeds and so the same tree."""

    def key(i: int) -> tuple[str, int, str]:
        conversation = items.conversation_ids[i]
        entry = int(items.item_ids[i].rpartition("#")[2] or 0)
        return (content_hashes.get(conversation, ""), entry, conversation)

    order = sorted(range(len(items.texts)), key=key)
    return FacetItems(
        item_ids=[items.item_ids[i] for i in order],
        conversation_ids=[items.conversation_ids[i] for i in order],
        texts=[items.texts[i] for i in order],
    )


# -- partition stages: read the main store read-only, write their own shard -------


def scrub_slice(
    ingest_config: IngestConfig,
    scrub_config: ScrubConfig,
    input_paths: list[str],
    limit: int | None,
    indices: list[int],
    private_path: str,
    shard_path: str,
    run_id: str,
    fingerprint: str,
) -> ScrubbedPart:
    """Ingest and scrub the accepted conversations at `indices` (input order) into a shard;
    raw text stays inside this call."""
    wanted = set(indices)
    result = ingest(input_paths, ingest_config, limit=limit, keep=lambda i, _: i in wanted)
    with PrivateStore(private_path, read_only=True) as main:
        key = hmac_key(scrub_config, main)
    if key_fingerprint(key) != fingerprint:
        raise RuntimeError(
            "this worker sees another user-pseudonym key than the flow: set "
            f"{scrub_config.hmac_key_env} the same on every worker, or on none"
        )
    # Each batch is committed to the shard as it is done: a killed run loses only the
    # batches in flight, and the next run merges the shard and skips what it holds.
    with PrivateStore(shard_path) as shard:
        scrubbed, quarantine = scrub_conversations(
            result.conversations,
            scrubber_for(scrub_config),
            key,
            progress_label=f"scrub {len(wanted)}",
            workers=scrub_workers(scrub_config),
            on_batch=lambda outcome: shard.put_conversations(outcome[0], run_id),
        )
    return ScrubbedPart(
        conversation_ids=[c.conversation_id for c in scrubbed],
        quarantine=list(quarantine),
        n_pii_spans=sum(c.n_pii_spans for c in scrubbed),
    )


def extract_facets_slice(
    facets: list[FacetConfig],
    llm_config: LLMConfig,
    conversation_ids: list[str],
    private_path: str,
    shard_path: str,
) -> FacetsPart:
    """Extract every facet of `conversation_ids` into a shard."""
    with (
        PrivateStore(private_path, read_only=True) as main,
        PrivateStore(shard_path) as shard,
    ):
        conversations = main.get_conversations(conversation_ids)
        needs_llm = any(f.extractor == "llm" for f in facets)
        llm = llm_for(llm_config, LayeredCache(shard, main)) if needs_llm else None
        values = extract_facets(
            conversations, facets, llm, max_input_chars=llm_config.max_input_chars
        )
        shard.put_facets(values)
    failed: dict[str, int] = {}
    for v in values:
        if v.status == "failed":
            failed[v.facet] = failed.get(v.facet, 0) + 1
    return FacetsPart(usage_of(llm), failed)


def measure_facet_quality(
    facets: list[FacetConfig], conversation_ids: list[str], private_path: str
) -> dict[str, FacetQuality]:
    """Each llm facet's degeneracy figures over `conversation_ids` (`clio.facet_quality`),
    from the private store's answers; names and numbers only leave this call."""
    with PrivateStore(private_path, read_only=True) as store:
        values = store.get_facets(conversation_ids)
    answers: dict[str, list[object]] = {}
    for output in example_outputs(facets):
        for name, answer in output.items():
            answers.setdefault(name, []).append(answer)
    return measure_facets(facets, values, answers)


def embed_slice(
    clustered: list[str],
    embed_config: EmbedConfig,
    conversation_ids: list[str],
    private_path: str,
    shard_path: str,
) -> int:
    """Embed the clustered facets' texts of `conversation_ids` into a shard (the embedding
    cache, which the single-process cluster stage then reads); texts embedded."""
    texts: list[str] = []
    with (
        PrivateStore(private_path, read_only=True) as main,
        PrivateStore(shard_path) as shard,
    ):
        values = main.get_facets(conversation_ids)
        for facet in clustered:
            texts.extend(facet_items(values, facet).texts)
        if texts:
            embed_texts(
                texts,
                embedder_for(embed_config),
                LayeredCache(shard, main),
                chunk_size=embed_config.chunk_size,
            )
    return len(texts)


def merge_shards(private: Path, shards: Sequence[Path]) -> None:
    """Fold shard files into the private store (each merge one transaction, then deleted)."""
    present = [s for s in shards if s.exists()]
    if present:
        with PrivateStore(private) as store:
            for shard in present:
                store.merge_shard(shard)


# -- stages in the writing process ------------------------------------------------


def build_trees(
    settings: TreeSettings,
    embed_config: EmbedConfig,
    llm_config: LLMConfig,
    clustered: list[str],
    conversation_ids: list[str],
    private_path: str,
    run_id: str,
    shape_digest: str,
    lineage_config: LineageConfig | None = None,
) -> FacetTree:
    """Cluster, name and arrange every clustered facet of `conversation_ids` into a tree,
    and keep the trees in the private store as this run's build, with its lineage to the
    previous build (`clio.lineage`; none when `lineage_config` is off or absent). With
    `settings.cluster.warm_start`, k-means starts from the previous build's centroids."""
    clusters: list[Cluster] = []
    nodes: list[BuildNode] = []
    usage: Usage = {}
    seeds: dict[str, np.ndarray] = {}
    with PrivateStore(private_path) as store:
        build = store.current_build()
        previous = build[0] if build is not None else None
        values = store.get_facets(conversation_ids)
        warm = previous_facets(store, previous) if settings.cluster.warm_start else {}
        for facet in clustered:
            items = facet_items(values, facet)
            tree = _facet_tree(
                settings, embed_config, llm_config, facet, items, store, run_id, warm.get(facet)
            )
            clusters.extend(tree.clusters)
            nodes.extend(tree.nodes)
            add_usage(usage, tree.usage)
            seeds.update(tree.seeds)
        lineage = None
        if lineage_config is not None and lineage_config.enabled:
            lineage = build_lineage(store, previous, clustered, clusters, run_id, lineage_config)
            clusters, nodes = _keep_names(store, previous, lineage, clusters, nodes, lineage_config)
        store.put_build(run_id, shape_digest, nodes, conversation_ids, lineage, seeds)
    return FacetTree(clusters, nodes, usage, seeds)


def previous_facets(store: PrivateStore, build_id: str | None) -> dict[str, PreviousFacet]:
    """facet -> what a warm-started build takes from the build `build_id`: its stored
    seeds (its base centroids for a build recorded before seeds were kept), its number of
    clustered facet texts, and its parent levels (none for a tree of base clusters only)."""
    if build_id is None:
        return {}
    stored_seeds = store.build_seeds(build_id)
    items = store.build_item_counts(build_id)
    by_facet: dict[str, list[BuildNode]] = {}
    for node in store.build_nodes(build_id):  # in (facet, level, cluster id) order
        by_facet.setdefault(node.facet, []).append(node)
    previous = {}
    for facet, facet_nodes in by_facet.items():
        base = [n.centroid for n in facet_nodes if n.level == 0]
        if not base or any(c is None for c in base):
            continue  # every build stores each base cluster's centroid
        centroids = np.stack(base)
        previous[facet] = PreviousFacet(
            seeds=stored_seeds.get(facet, centroids),
            n_items=int(items.get(facet, 0)),
            parents=InheritedParents.of_tree(facet_nodes, centroids),
        )
    return previous


def build_lineage(
    store: PrivateStore,
    previous: str | None,
    clustered: Sequence[str],
    clusters: Sequence[Cluster],
    run_id: str,
    config: LineageConfig,
) -> BuildLineage:
    """The new build's links to the `previous` build (its tree with every conversation
    incremental runs added) and each node's root, members compared by content hash."""
    ids = [c.cluster_id for c in clusters]
    if previous is None:
        return BuildLineage(None, [], inherited_roots([], "", {}, run_id, ids))
    before, _ = extended_build(store.path, previous, clustered, store)
    members = sorted({m for c in [*before, *clusters] for m in c.member_ids})
    hashes = store.content_hashes(members)
    users = store.user_pseudonyms(members)
    user_of = {hashes[m]: users[m] for m in members if m in hashes and m in users}

    def as_nodes(tree: Sequence[Cluster]) -> list[LineageNode]:
        return [
            LineageNode(
                c.facet,
                c.level,
                c.cluster_id,
                frozenset(hashes[m] for m in c.member_ids if m in hashes),
            )
            for c in tree
        ]

    links = match_builds(as_nodes(before), as_nodes(clusters), config.min_overlap, user_of)
    earlier = store.build_lineage(previous)
    roots = inherited_roots(links, previous, earlier.roots if earlier else {}, run_id, ids)
    return BuildLineage(previous, links, roots)


def _keep_names(
    store: PrivateStore,
    previous: str | None,
    lineage: BuildLineage,
    clusters: list[Cluster],
    nodes: list[BuildNode],
    config: LineageConfig,
) -> tuple[list[Cluster], list[BuildNode]]:
    """Clusters whose members barely changed keep the previous build's name and
    description (the gate vets them again, as any name)."""
    keep = same_names(lineage.links, config.name_overlap)
    if previous is None or not keep:
        return clusters, nodes
    old = {n.cluster_id: n for n in store.build_nodes(previous)}
    texts = {cid: (old[p].name, old[p].description) for cid, p in keep.items() if p in old}
    for cluster in clusters:
        if cluster.cluster_id in texts:
            cluster.name, cluster.description = texts[cluster.cluster_id]
    renamed = [
        replace(n, name=texts[n.cluster_id][0], description=texts[n.cluster_id][1])
        if n.cluster_id in texts
        else n
        for n in nodes
    ]
    return clusters, renamed


def _facet_tree(
    settings: TreeSettings,
    embed_config: EmbedConfig,
    llm_config: LLMConfig,
    facet: str,
    items: FacetItems,
    store: PrivateStore,
    run_id: str,
    previous: PreviousFacet | None = None,
) -> FacetTree:
    if not items.texts:
        log.info(f"cluster {facet}: no values to cluster")
        return FacetTree([], [], {})
    conversations = sorted(set(items.conversation_ids))
    items = canonical_order(items, store.content_hashes(conversations))
    users = store.user_pseudonyms(conversations)
    item_users = [users[c] for c in items.conversation_ids]
    vectors = embed_texts(items.texts, embedder_for(embed_config), store)
    llm = llm_for(llm_config, store)
    clusterer = build_clusterer(settings.cluster)
    if previous is not None and len(previous.seeds):
        clusterer.warm_start(previous.seeds, previous.n_items)
    tree = build_facet_tree(
        facet,
        items.conversation_ids,
        items.texts,
        item_users,
        vectors,
        llm,
        settings,
        clusterer,
        previous.parents if previous is not None else None,
    )
    base = [node for node in tree if node.level == 0]
    base_of_item = base_cluster_of_items(tree)
    store.put_cluster_members(run_id, facet, tree)
    store.put_assignments(
        run_id,
        facet,
        [
            (items.item_ids[i], items.conversation_ids[i], base_of_item[i])
            for i in range(len(items.item_ids))
            if i in base_of_item
        ],
    )
    centroids = base_centroids(vectors, [node.extra.get("item_indices", []) for node in base])
    centroid_of = {node.cluster_id: centroids[i] for i, node in enumerate(base)}
    nodes = [
        BuildNode(
            facet=c.facet,
            level=c.level,
            cluster_id=c.cluster_id,
            parent_id=c.parent_id,
            name=c.name,
            description=c.description,
            keywords=list(c.keywords),
            x=c.x,
            y=c.y,
            centroid=centroid_of.get(c.cluster_id),
        )
        for c in tree
    ]
    seeds = clusterer.seeds
    return FacetTree(tree, nodes, usage_of(llm), {} if seeds is None else {facet: seeds})


def assign_increment(
    clustered: list[str],
    embed_config: EmbedConfig,
    cluster_config: ClusterConfig,
    max_distance: float,
    build_id: str,
    run_id: str,
    conversation_ids: list[str],
    private_path: str,
) -> dict[str, int]:
    """Assign the facet texts of `conversation_ids` to the build's nearest base clusters;
    a text farther than `max_distance` from every centroid waits for the next build."""
    assigned: list[tuple[str, str, str, str]] = []
    waiting: list[tuple[str, str, str, float]] = []
    with PrivateStore(private_path) as store:
        nodes = store.build_nodes(build_id)
        values = store.get_facets(conversation_ids)
        for facet in clustered:
            base = [
                n for n in nodes if n.facet == facet and n.level == 0 and n.centroid is not None
            ]
            items = facet_items(values, facet)
            if not items.texts:
                continue
            vectors = embed_texts(items.texts, embedder_for(embed_config), store)
            centroids = (
                np.stack([n.centroid for n in base])
                if base
                else np.zeros((0, vectors.shape[1]), dtype=np.float32)
            )
            clusterer = build_clusterer(cluster_config)
            clusterer.load(centroids)
            labels, distances = clusterer.predict(vectors, max_distance)
            for item, conversation, label, distance in zip(
                items.item_ids, items.conversation_ids, labels, distances, strict=True
            ):
                if label >= 0:
                    assigned.append((facet, item, conversation, base[int(label)].cluster_id))
                else:
                    waiting.append((facet, item, conversation, float(distance)))
        store.add_to_build(build_id, run_id, conversation_ids, assigned, waiting)
    log.info(
        f"incremental: {len(conversation_ids)} conversations added to build {build_id}: "
        f"{len(assigned)} facet texts assigned, {len(waiting)} beyond the distance cut-off"
    )
    return {
        "items_assigned": len(assigned),
        "items_unassigned": len(waiting),
        "conversations_with_unassigned": len({w[2] for w in waiting}),
    }


def extended_build(
    private: Path, build_id: str, clustered: Sequence[str], store: PrivateStore | None = None
) -> tuple[list[Cluster], dict[str, Any]]:
    """The build's tree with every conversation assigned to it so far, and what waits
    (read through `store` when the caller has it open)."""
    if store is None:
        with PrivateStore(private) as opened:
            return extended_build(private, build_id, clustered, opened)
    members: dict[str, set[str]] = {}
    for facet in clustered:
        members.update(store.base_members(build_id, facet))
    nodes = [n for n in store.build_nodes(build_id) if n.facet in clustered]
    items, conversations = store.unassigned_counts(build_id)
    summary = {
        "build_id": build_id,
        "unassigned_items_waiting": items,
        "unassigned_conversations_waiting": conversations,
    }
    return tree_from_build(nodes, members), summary
