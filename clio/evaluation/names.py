"""`clio eval names`: do cluster names say what their clusters are about?

The texts are clustered with clio's base clustering (the run config's `cluster` section),
and every method names the same clusters in the same run:
- `bertopic`: BERTopic's default label, its top 4 c-TF-IDF words (BERTopic with the
  clusters given as its topics, its default vectorizer; clio's plain c-TF-IDF without it);
- `keywords`: the names clio gave before extractive naming: its 3 top c-TF-IDF keywords
  (`clio.naming.keyword_name` over plain c-TF-IDF);
- `distinctive`: the same over today's keywords (weighted against words common
  everywhere);
- `extractive`: `clio.extractive`, the default on the embedded model.
Every name then passes the same support rule the gate applies (each content word used by
`--min-users` distinct users of the cluster; each item is its own user): a word without
that support is dropped from a keyword list, and a name left with nothing is a
placeholder, which scores as wrong.

Scores per method, over the base clusters: `top1`, the share whose name's embedding is
nearest the label name (`book_flight` -> "book flight") of the cluster's majority label;
`retrieval_at_1`, the share whose name's embedding is nearer its own cluster's centroid
than any other's; `placeholder`, the share of placeholder names.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clio.cluster import cluster_vectors, members_by_cluster
from clio.config import PrivacyConfig, RunConfig, load_config
from clio.embed import build_embedder, embed_texts, normalise_rows
from clio.evaluation.cluster_datasets import NAMES, SPLITS, LabelledTexts, load_dataset
from clio.evaluation.clusters import embed_cached
from clio.evaluation.data_dir import add_data_dir_argument, default_data_dir
from clio.extractive import FacetWords, name_clusters
from clio.keywords import count_terms, keywords_of, words
from clio.naming import content_stems, keyword_name

METHODS = ("bertopic", "keywords", "distinctive", "extractive")
PLACEHOLDER = ""  # a name with nothing left after the support rule
DEFAULT_MIN_USERS = 5
N_EXAMPLES = 8


def bertopic_words(
    texts: Sequence[str], labels: np.ndarray, vectors: np.ndarray
) -> list[list[str]]:
    """BERTopic's top words per cluster, the clusters given as its topics (no UMAP, no
    HDBSCAN), with its default vectorizer and c-TF-IDF."""
    from bertopic import BERTopic
    from bertopic.cluster import BaseCluster
    from bertopic.dimensionality import BaseDimensionalityReduction

    model = BERTopic(
        umap_model=BaseDimensionalityReduction(), hdbscan_model=BaseCluster(), embedding_model=None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit_transform(list(texts), embeddings=np.asarray(vectors), y=labels)
    topic_of = np.asarray(model.topics_)
    out = []
    for c in range(int(labels.max()) + 1):
        topic = Counter(topic_of[labels == c].tolist()).most_common(1)[0][0]
        out.append([w for w, _ in (model.get_topic(topic) or [])])
    return out


def supported_in(members: np.ndarray, tokens: Sequence[set[str]], min_users: int) -> set[str]:
    """Content stems used by at least `min_users` of `members` (each item its own user)."""
    counts: Counter[str] = Counter()
    for i in members:
        counts.update(tokens[i])
    return {w for w, n in counts.items() if n >= min_users}


def gated_words(candidates: Sequence[str], supported: set[str], n: int) -> str:
    """The first `n` of `candidates` whose content words all have support, joined; the
    placeholder if none of those has a content word (function words say nothing)."""
    kept = [w for w in candidates if content_stems(w) <= supported and words(w)]
    has_content = any(content_stems(w) for w in kept[:n])
    return ", ".join(kept[:n]) if has_content else PLACEHOLDER


def gated_name(name: str, supported: set[str]) -> str:
    """`name`, or the placeholder if a content word of it lacks support."""
    content = content_stems(name)
    return name if content and content <= supported else PLACEHOLDER


def method_names(
    dataset: LabelledTexts, vectors: np.ndarray, labels: np.ndarray, centroids: np.ndarray,
    min_users: int, methods: Sequence[str],
) -> dict[str, list[str]]:  # fmt: skip
    """Every method's gated name for each base cluster 0..k-1."""
    k = len(centroids)
    users = [str(i) for i in range(len(dataset.texts))]
    tokens = [content_stems(t) for t in dataset.texts]
    members = members_by_cluster(labels, k)
    supported = [supported_in(m, tokens, min_users) for m in members]
    terms = count_terms(dataset.texts, users)
    names: dict[str, list[str]] = {}
    for method in methods:
        if method == "bertopic":
            try:
                top = bertopic_words(dataset.texts, labels, vectors)
            except ImportError:
                plain = keywords_of(terms, labels, n_keywords=20, min_users=1,
                                    frequency_penalty=False)  # fmt: skip
                top = [plain[c] for c in range(k)]
            names[method] = [gated_words(top[c], supported[c], 4) for c in range(k)]
        elif method in ("keywords", "distinctive"):
            found = keywords_of(terms, labels, n_keywords=8, min_users=min_users,
                                frequency_penalty=method == "distinctive")  # fmt: skip
            names[method] = [gated_name(keyword_name(found[c], ""), supported[c]) for c in range(k)]
        elif method == "extractive":
            keywords = keywords_of(terms, labels, n_keywords=8, min_users=min_users)
            named = name_clusters(
                FacetWords.of(dataset.texts, users), labels, vectors, centroids, keywords, min_users
            )
            names[method] = [
                gated_name(found[0], supported[c]) if found is not None else PLACEHOLDER
                for c, (_, found) in enumerate(named)
            ]
    return names


def score_names(
    names: Sequence[str],
    name_vectors: np.ndarray,
    label_vectors: np.ndarray,
    centroids: np.ndarray,
    majority: Sequence[int],
) -> dict[str, float]:
    """top1, retrieval@1 and placeholder share of one method's names (placeholders wrong)."""
    real = np.array([bool(n) for n in names])
    nearest_label = np.argmax(name_vectors @ label_vectors.T, axis=1)
    nearest_cluster = np.argmax(name_vectors @ centroids.T, axis=1)
    top1 = real & (nearest_label == np.asarray(majority))
    retrieved = real & (nearest_cluster == np.arange(len(names)))
    return {
        "top1": round(float(top1.mean()), 4),
        "retrieval_at_1": round(float(retrieved.mean()), 4),
        "placeholder": round(float(1 - real.mean()), 4),
    }


def evaluate_names(
    dataset: LabelledTexts,
    vectors: np.ndarray,
    config: RunConfig,
    embed: Any,
    *,
    min_users: int = DEFAULT_MIN_USERS,
    methods: Sequence[str] = METHODS,
) -> dict[str, Any]:
    """Each method's scores on the same base clusters; `embed(texts)` gives unit vectors
    in the space of `vectors` (names and label names are embedded with it)."""
    vectors = normalise_rows(np.asarray(vectors, dtype=np.float32))
    labels, centroids = cluster_vectors(vectors, config.cluster)
    centroids = normalise_rows(np.asarray(centroids, dtype=np.float32))
    label_names = sorted(set(dataset.labels))
    label_index = {name: i for i, name in enumerate(label_names)}
    label_vectors = normalise_rows(embed([n.replace("_", " ") for n in label_names]))
    majority = [
        Counter(label_index[dataset.labels[i]] for i in m).most_common(1)[0][0]
        for m in members_by_cluster(labels, len(centroids))
    ]
    names = method_names(dataset, vectors, labels, centroids, min_users, methods)
    scores = {}
    for method, method_names_ in names.items():
        name_vectors = normalise_rows(embed([n or "-" for n in method_names_]))
        scores[method] = score_names(
            method_names_, name_vectors, label_vectors, centroids, majority
        )
    sizes = np.bincount(labels, minlength=len(centroids))
    examples = [
        {"label": label_names[majority[c]], "size": int(sizes[c])} | {m: names[m][c] for m in names}
        for c in np.argsort(-sizes, kind="stable")[:N_EXAMPLES]
    ]
    return {
        "dataset": dataset.name,
        "source": dataset.source,
        "n": len(dataset.texts),
        "n_labels": len(label_names),
        "n_clusters": len(centroids),
        "min_users": min_users,
        "methods": scores,
        "examples": examples,
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"Name evaluation: {report['dataset']} ({report['source']}; {report['n']} items, "
        f"{report['n_labels']} labels, {report['n_clusters']} clusters, "
        f"min_users {report['min_users']})",
        f"{'method':<12} {'top1':>6} {'ret@1':>6} {'placeholder':>11}",
    ]
    for method, s in report["methods"].items():
        lines.append(
            f"{method:<12} {s['top1']:>6.3f} {s['retrieval_at_1']:>6.3f} {s['placeholder']:>11.3f}"
        )
    lines.append("Largest clusters:")
    for example in report["examples"]:
        named = "; ".join(f"{m}: {example[m] or '(placeholder)'}" for m in report["methods"])
        lines.append(f"  {example['label']} ({example['size']}): {named}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=NAMES, help="labelled dataset")
    parser.add_argument("--split", choices=SPLITS, default="test", help="test, or dev to tune on")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_dir_argument(parser)
    parser.add_argument(
        "--min-users", type=int, default=DEFAULT_MIN_USERS, help="support every name word needs"
    )
    parser.add_argument("--config", default=None, help="run config whose clustering is used")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("outputs") / "eval_cache" / "embeddings",
        help="where embeddings are cached as .npy files",
    )


def run(args: argparse.Namespace) -> int:
    try:
        dataset = load_dataset(args.dataset, args.data_dir or default_data_dir(), args.split)
        base = load_config(args.config)
    except (ValueError, OSError) as exc:
        print(f"clio eval names: {exc}", file=sys.stderr)
        return 2
    config = base.model_copy(
        update={"privacy": PrivacyConfig(min_users=args.min_users, min_conversations=1)}
    )
    embedder = build_embedder(config.embed)
    vectors = embed_cached(dataset.texts, embedder, args.cache_dir)
    report = evaluate_names(
        dataset,
        vectors,
        config,
        lambda texts: embed_texts(texts, embedder),
        min_users=args.min_users,
    )
    report["embedding_model"] = embedder.identifier
    print(json.dumps(report) if args.json else format_table(report))
    return 0
