"""`clio eval clusters`: clio's clustering against plain k-means and BERTopic on labelled topics.

The texts are embedded once (cached as .npy under `outputs/eval_cache/`), and every method
clusters the same vectors in the same run:
- `clio`: `cluster_vectors` with the run config's `cluster` section (its own k or density;
  with k-means, `k_from_n` is the ceiling it started from and `n_clusters` what is left
  after unseparated clusters merged);
- `clio_kmeans`, `clio_hdbscan` (on request): the same with that `cluster.method`;
- `kmeans`: plain faiss k-means (L2, random init, one run) with k = the true number of labels;
- `bertopic`: BERTopic with its default UMAP (5-d, 15 neighbours, cosine) and HDBSCAN
  (min_cluster_size 10), given the precomputed vectors; UMAP's seed is fixed, so a re-run
  gives the same topics. Its outliers (topic -1) are reported as unclustered.

Where the dataset has a coarse label level (clinc150's 10 domains), clio's hierarchy (for
each clio method asked for) is built without the LLM (keyword names) unless `--llm` is
given, and the level whose node count is closest to the number of coarse labels is scored
against k-means with that many clusters and against Ward linkage on clio's base-cluster
centroids cut at that count.
Metric definitions are in `clio.evaluation.metrics`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clio.cluster import centroids_of, choose_k, cluster_vectors
from clio.config import PrivacyConfig, RunConfig, load_config
from clio.embed import Embedder, build_embedder, embed_texts, normalise_rows
from clio.evaluation.cluster_datasets import NAMES, LabelledTexts, load_dataset
from clio.evaluation.data_dir import add_data_dir_argument, default_data_dir
from clio.evaluation.metrics import score_clustering

if TYPE_CHECKING:
    from clio.llm.client import StructuredLLM

_log = logging.getLogger("clio.evaluation.clusters")

METHODS = ("clio", "kmeans", "bertopic")
CLIO_VARIANTS = {"clio_kmeans": "kmeans", "clio_hdbscan": "hdbscan"}  # forced cluster.method
ALL_METHODS = (*METHODS, *CLIO_VARIANTS)
BERTOPIC_MIN_TOPIC_SIZE = 10  # BERTopic's default; also its HDBSCAN min_cluster_size
# The datasets carry no users: each item is its own user, and a keyword needs two of them.
EVAL_MIN_USERS = 2
# A dataset with at most this many labels and no coarse level of its own (SIB-200's 7
# topics) is also scored at the hierarchy level whose node count is nearest its labels.
COARSE_LABELS_AT_MOST = 12


# -- embedding -----------------------------------------------------------------------------


def embed_cached(texts: Sequence[str], embedder: Embedder, cache_dir: Path | None) -> np.ndarray:
    """Vectors for `texts`, read from / written to `cache_dir` as one .npy file keyed by
    the embedder and the exact texts (so a changed dataset or model never hits it)."""
    if cache_dir is None:
        return embed_texts(texts, embedder)
    digest = hashlib.sha256(embedder.identifier.encode("utf-8"))
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    path = Path(cache_dir) / f"{digest.hexdigest()[:24]}.npy"
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    vectors = embed_texts(texts, embedder)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


# -- methods -------------------------------------------------------------------------------


def kmeans_labels(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Plain faiss k-means: L2 on the vectors as given, random init, one run, faiss's
    default 25 iterations."""
    import faiss

    data = np.ascontiguousarray(vectors, dtype=np.float32)
    k = max(1, min(k, len(data)))
    kmeans = faiss.Kmeans(data.shape[1], k, seed=seed, verbose=False)
    kmeans.cp.min_points_per_centroid = 1  # silences faiss's "too few points" warning
    kmeans.train(data)
    return kmeans.index.search(data, 1)[1][:, 0].astype(np.int64)


def bertopic_labels(
    texts: Sequence[str], vectors: np.ndarray, seed: int, nr_topics: int | None = None
) -> np.ndarray:
    """BERTopic's default pipeline on precomputed vectors, with UMAP's random_state fixed
    (BERTopic's own default UMAP, seeded), its topics reduced to `nr_topics` when given.
    Outliers come back as -1."""
    from bertopic import BERTopic
    from umap import UMAP

    umap_model = UMAP(
        n_neighbors=15,
        n_components=5,
        min_dist=0.0,
        metric="cosine",
        low_memory=False,
        random_state=seed,
    )
    model = BERTopic(
        umap_model=umap_model,
        min_topic_size=BERTOPIC_MIN_TOPIC_SIZE,
        embedding_model=None,
        nr_topics=nr_topics,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        topics, _ = model.fit_transform(list(texts), embeddings=np.asarray(vectors))
    return np.asarray(topics, dtype=np.int64)


def ward_labels(base_centroids: np.ndarray, base_labels: np.ndarray, n_groups: int) -> np.ndarray:
    """Ward linkage on base-cluster centroids cut at `n_groups`; items follow their cluster."""
    from sklearn.cluster import AgglomerativeClustering

    if n_groups <= 1 or len(base_centroids) <= n_groups:
        groups = np.arange(len(base_centroids)) if n_groups > 1 else np.zeros(len(base_centroids))
        return np.asarray(groups, dtype=np.int64)[base_labels]
    groups = AgglomerativeClustering(n_clusters=n_groups, linkage="ward").fit_predict(
        base_centroids
    )
    return np.asarray(groups, dtype=np.int64)[base_labels]


def best_grouping_labels(coarse_labels: Sequence[str], base_labels: np.ndarray) -> np.ndarray:
    """Every base cluster given to its own majority coarse label, items following their
    cluster: the best any grouping of these base clusters can score, its ceiling."""
    coarse = np.unique(np.asarray(coarse_labels), return_inverse=True)[1].ravel()
    majority = {
        int(c): int(np.bincount(coarse[base_labels == c]).argmax()) for c in np.unique(base_labels)
    }
    return np.array([majority[int(c)] for c in base_labels], dtype=np.int64)


def _timed(function: Callable[..., np.ndarray], *args: Any) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    labels = function(*args)
    return labels, time.perf_counter() - start


def _clio_labels(vectors: np.ndarray, config: RunConfig) -> np.ndarray:
    return cluster_vectors(vectors, config.cluster)[0]


def _rounded(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


# -- hierarchy -----------------------------------------------------------------------------


def tree_level_labels(tree: Sequence[Any], n_items: int) -> dict[int, np.ndarray]:
    """Node index (per level) of every item, from a `build_facet_tree` result."""
    base_of_item = np.full(n_items, -1, dtype=np.int64)
    index_of: dict[str, tuple[int, int]] = {}
    parent_of: dict[str, str | None] = {}
    counters: dict[int, int] = {}
    for node in tree:
        index = counters.get(node.level, 0)
        counters[node.level] = index + 1
        index_of[node.cluster_id] = (node.level, index)
        parent_of[node.cluster_id] = node.parent_id
        if node.level == 0:
            base_of_item[node.extra["item_indices"]] = index
    if (base_of_item < 0).any():
        raise ValueError("the tree's base clusters do not cover every item")
    base_ids = [node.cluster_id for node in tree if node.level == 0]
    levels = {0: base_of_item}
    for level in range(1, max(counters) + 1):
        mapping = np.zeros(len(base_ids), dtype=np.int64)
        for base_index, base_id in enumerate(base_ids):
            node_id: str | None = base_id
            for _ in range(level):
                assert node_id is not None
                node_id = parent_of[node_id]
            assert node_id is not None
            mapping[base_index] = index_of[node_id][1]
        levels[level] = mapping[base_of_item]
    return levels


def evaluate_hierarchy(
    dataset: LabelledTexts,
    vectors: np.ndarray,
    config: RunConfig,
    llm: StructuredLLM | None,
) -> dict[str, Any]:
    from clio.hierarchy import TreeSettings, build_facet_tree

    assert dataset.coarse_labels is not None
    n = len(dataset.texts)
    ids = [f"item-{i}" for i in range(n)]
    start = time.perf_counter()
    settings = TreeSettings.from_config(config)
    tree = build_facet_tree("topic", ids, dataset.texts, ids, vectors, llm, settings)
    seconds = time.perf_counter() - start
    levels = tree_level_labels(tree, n)
    n_coarse = len(set(dataset.coarse_labels))
    sizes = {level: int(labels.max()) + 1 for level, labels in levels.items() if level > 0}
    if not sizes:
        return {"skipped": "the tree has no level above the base clusters"}
    level = min(sizes, key=lambda lv: (abs(sizes[lv] - n_coarse), lv))
    n_nodes = sizes[level]
    base = levels[0]
    base_centroids = centroids_of(normalise_rows(vectors), base, int(base.max()) + 1)
    ours = score_clustering(dataset.coarse_labels, levels[level])
    kmeans = score_clustering(
        dataset.coarse_labels, kmeans_labels(vectors, n_nodes, config.cluster.seed)
    )
    ward = score_clustering(dataset.coarse_labels, ward_labels(base_centroids, base, n_nodes))
    ceiling = score_clustering(
        dataset.coarse_labels, best_grouping_labels(dataset.coarse_labels, base)
    )
    try:
        # BERTopic counts its outlier topic (-1) among `nr_topics`
        reduced = bertopic_labels(dataset.texts, vectors, config.cluster.seed, n_nodes + 1)
        bertopic: dict[str, Any] = score_clustering(dataset.coarse_labels, reduced)
    except ImportError:
        bertopic = {"skipped": "bertopic is not installed (pip install 'clio[bench]')"}

    def pick(scores: dict[str, Any]) -> dict[str, Any]:
        if "skipped" in scores:
            return scores
        return _rounded(
            {k: scores[k] for k in ("nmi", "ari", "reconstruction")} | {"k": scores["n_clusters"]}
        )

    return {
        "level": level,
        "n_nodes": n_nodes,
        "n_coarse_labels": n_coarse,
        "level_sizes": [int(levels[0].max()) + 1] + [sizes[lv] for lv in sorted(sizes)],
        **pick(ours),
        "ari": round(ours["ari"], 4),
        "kmeans": pick(kmeans),
        "ward": pick(ward),
        "base_ceiling": pick(ceiling),
        "bertopic": pick(bertopic),
        "named_with": "llm" if llm is not None else "keywords",
        "seconds": round(seconds, 2),
    }


# -- the evaluation ------------------------------------------------------------------------


def evaluate(
    dataset: LabelledTexts,
    vectors: np.ndarray,
    config: RunConfig,
    *,
    methods: Sequence[str] = METHODS,
    llm: StructuredLLM | None = None,
    with_hierarchy: bool = True,
) -> dict[str, Any]:
    """Scores of each method on the same vectors (one JSON-ready dict)."""
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}: choose from {', '.join(ALL_METHODS)}")
    if len(vectors) != len(dataset.texts):
        raise ValueError(f"{len(dataset.texts)} texts but {len(vectors)} vectors")
    seed = config.cluster.seed
    n_labels = len(set(dataset.labels))
    results: dict[str, Any] = {}
    clio_configs = {"clio": config} | {
        name: _with_method(config, method)
        for name, method in CLIO_VARIANTS.items()
        if name in methods
    }
    for method in methods:
        if method in clio_configs:
            labels, seconds = _timed(_clio_labels, vectors, clio_configs[method])
        elif method == "kmeans":
            labels, seconds = _timed(kmeans_labels, vectors, n_labels, seed)
        else:
            try:
                import bertopic  # noqa: F401
            except ImportError:
                results[method] = {
                    "skipped": "bertopic is not installed (pip install 'clio[bench]')"
                }
                continue
            labels, seconds = _timed(bertopic_labels, dataset.texts, vectors, seed)
        results[method] = _rounded({**score_clustering(dataset.labels, labels), "seconds": seconds})
        if method in clio_configs and clio_configs[method].cluster.method == "kmeans":
            # the k-means ceiling; n_clusters is what is left after unseparated ones merged
            c = clio_configs[method].cluster
            results[method]["k_from_n"] = choose_k(
                len(vectors), c.target_cluster_size, c.min_k, c.max_k
            )
        _log.info(f"eval clusters {dataset.name}: {method} done in {seconds:.1f} s")
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "n": len(dataset.texts),
        "n_labels": n_labels,
        "methods": results,
        "clio_config": config.cluster.model_dump(),
        "seed": seed,
        "bertopic_seed": seed,
    }
    coarse = dataset
    if dataset.coarse_labels is None and n_labels <= COARSE_LABELS_AT_MOST:
        # few, broad labels (SIB-200's 7 topics): scored at the level nearest their count
        coarse = replace(dataset, coarse_labels=list(dataset.labels))
    if with_hierarchy and coarse.coarse_labels is not None:
        for name, variant in clio_configs.items():
            if name in methods:
                key = "hierarchy" if name == "clio" else f"hierarchy_{name}"
                report[key] = evaluate_hierarchy(coarse, vectors, variant, llm)
    return report


def _with_method(config: RunConfig, method: str) -> RunConfig:
    cluster = config.cluster.model_copy(update={"method": method})
    return config.model_copy(update={"cluster": cluster})


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"Cluster evaluation: {report['dataset']} ({report['n']} items, "
        f"{report['n_labels']} labels; seed {report['seed']}, BERTopic seeded too)",
        f"{'method':<10} {'ARI':>6} {'NMI':>6} {'V':>6} {'recon':>6} {'k':>5} "
        f"{'unclust':>7} {'seconds':>8}",
    ]
    for method, scores in report["methods"].items():
        if "skipped" in scores:
            lines.append(f"{method:<10} skipped: {scores['skipped']}")
            continue
        lines.append(
            f"{method:<10} {scores['ari']:>6.3f} {scores['nmi']:>6.3f} "
            f"{scores['v_measure']:>6.3f} {scores['reconstruction']:>6.3f} "
            f"{scores['n_clusters']:>5} {scores['unclustered']:>7.3f} {scores['seconds']:>8.1f}"
            + (f"  (k from n {scores['k_from_n']})" if "k_from_n" in scores else "")
        )
    for key in (k for k in report if k.startswith("hierarchy")):
        lines.extend(_hierarchy_lines(key, report[key]))
    return "\n".join(lines)


def _hierarchy_lines(key: str, hierarchy: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if "skipped" not in hierarchy:
        lines.append(
            f"{key} (coarse labels: {hierarchy['n_coarse_labels']}; levels "
            f"{' > '.join(map(str, hierarchy['level_sizes']))}; names: {hierarchy['named_with']}):"
            f" level {hierarchy['level']} with {hierarchy['n_nodes']} nodes"
        )
        for name, scores in (
            ("clio", hierarchy),
            ("kmeans", hierarchy["kmeans"]),
            ("ward", hierarchy["ward"]),
            ("ceiling", hierarchy.get("base_ceiling", {"skipped": "not run"})),
            ("bertopic", hierarchy.get("bertopic", {"skipped": "not run"})),
        ):
            if "skipped" in scores:
                lines.append(f"  {name:<8} skipped: {scores['skipped']}")
                continue
            lines.append(
                f"  {name:<8} NMI {scores['nmi']:.3f}  ARI {scores.get('ari', 0.0):.3f}  "
                f"reconstruction {scores['reconstruction']:.3f}"
            )
    else:
        lines.append(f"{key} skipped: {hierarchy['skipped']}")
    return lines


# -- command line --------------------------------------------------------------------------


def eval_config(base: RunConfig, seed: int | None) -> RunConfig:
    """The run config as evaluated: the given seed, and keywords that need two items."""
    cluster = base.cluster if seed is None else base.cluster.model_copy(update={"seed": seed})
    privacy = PrivacyConfig(min_users=EVAL_MIN_USERS, min_conversations=1)
    return base.model_copy(update={"cluster": cluster, "privacy": privacy})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=NAMES, help="labelled dataset")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_dir_argument(parser)
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(ALL_METHODS)} (default: {','.join(METHODS)})",
    )
    parser.add_argument(
        "--cluster-method",
        choices=("kmeans", "hdbscan"),
        default=None,
        help="clio's base clustering (default: the config's cluster.method)",
    )
    parser.add_argument("--limit", type=int, default=None, help="use the first N items only")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the config's)")
    parser.add_argument("--config", default=None, help="run config whose clustering is evaluated")
    parser.add_argument(
        "--llm", action="store_true", help="name the hierarchy with the configured LLM"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("outputs") / "eval_cache" / "embeddings",
        help="where embeddings are cached as .npy files",
    )


def build_llm(config: RunConfig) -> StructuredLLM:
    from clio.llm.client import StructuredLLM
    from clio.llm.factory import build_backend

    return StructuredLLM(build_backend(config.llm), config.llm)


def run(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.limit is not None and args.limit < 2:
        print("--limit must be at least 2", file=sys.stderr)
        return 2
    try:
        if not methods or set(methods) - set(ALL_METHODS):
            raise ValueError(f"--methods must be a subset of {','.join(ALL_METHODS)}")
        dataset = load_dataset(args.dataset, args.data_dir or default_data_dir())
        config = eval_config(load_config(args.config), args.seed)
        if args.cluster_method is not None:
            config = _with_method(config, args.cluster_method)
    except (ValueError, OSError) as exc:
        print(f"clio eval clusters: {exc}", file=sys.stderr)
        return 2
    if args.limit is not None:
        dataset = dataset.head(args.limit)
    embedder = build_embedder(config.embed)
    vectors = embed_cached(dataset.texts, embedder, args.cache_dir)
    llm = build_llm(config) if args.llm else None
    report = evaluate(dataset, vectors, config, methods=methods, llm=llm)
    report["embedding_model"] = embedder.identifier
    print(json.dumps(report) if args.json else format_table(report))
    return 0
