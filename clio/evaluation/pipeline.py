"""`clio eval pipeline`: labelled conversations through the real `clio run`, scored on the
released tree.

Each labelled text (`clio.evaluation.cluster_datasets`) becomes a one-turn conversation
of its own user: the text is the user's turn, the assistant answers with one fixed
sentence. `--labels` labels are drawn at random (seeded) with `--per-label` texts each,
so every label can reach `min_users` users. For every clustering input in
`--extractors` (the `request` facet from the scrubbed user turn, `user_text`, or from
the LLM's summary, `llm`) the same conversations go through `clio run` in a subprocess
(ingest, scrub, facets with the configured backend, embed, cluster, hierarchy, gate,
release) into a directory of their own, and the run is scored:

- purity, NMI and ARI of the base clusters against the labels (all clustered
  conversations), and k-means over the same conversations' scrubbed user turn at the
  same cluster count (the clustering the facet step must not lose to);
- coverage: the share of conversations in a released base cluster, and the purity of
  the released ones;
- name->label top-1 of the released base names (the nearest label name, embedded,
  is the cluster's majority label; a withheld name counts as wrong), against BERTopic's
  top-4 c-TF-IDF words for the same clusters under the same word-support rule.

`--split dev` draws from the part to tune on; reports use `test`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import yaml

from clio.config import RunConfig, builtin_facets, load_config
from clio.embed import build_embedder, embed_texts, normalise_rows
from clio.evaluation.cluster_datasets import NAMES, SPLITS, LabelledTexts, load_dataset
from clio.evaluation.clusters import kmeans_labels
from clio.evaluation.data_dir import add_data_dir_argument, default_data_dir
from clio.evaluation.metrics import score_clustering
from clio.evaluation.names import PLACEHOLDER, gated_words, score_names, supported_in
from clio.naming import content_stems
from clio.records import Cluster

FACET = "request"
EXTRACTORS = ("user_text", "llm")
ASSISTANT_REPLY = "Sure, I can help with that."
DEFAULT_CONFIG = "configs/sample.yaml"


def sample_items(dataset: LabelledTexts, n_labels: int, per_label: int, seed: int) -> list[int]:
    """Indices of `per_label` texts of each of `n_labels` labels drawn at random (seeded),
    among the labels that have that many texts."""
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(dataset.labels):
        by_label.setdefault(label, []).append(i)
    rng = random.Random(seed)
    eligible = sorted(label for label, items in by_label.items() if len(items) >= per_label)
    if not eligible:
        raise ValueError(f"{dataset.name}: no label has {per_label} texts")
    picked = rng.sample(eligible, min(n_labels, len(eligible)))
    return sorted(i for label in picked for i in rng.sample(by_label[label], per_label))


def conversation_rows(dataset: LabelledTexts, items: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "conversation_id": f"eval-{i}",
            "user_id": f"user-{i}",
            "messages": [
                {"role": "user", "content": dataset.texts[i]},
                {"role": "assistant", "content": ASSISTANT_REPLY},
            ],
        }
        for i in items
    ]


def run_config(base: dict[str, Any], extractor: str) -> dict[str, Any]:
    """`base` (a config as YAML data) with the one clustered `request` facet from
    `extractor`: only the facet being measured, so the user_text run asks no LLM."""
    request = builtin_facets(extractor)[0]
    facet = request.model_dump(include={"name", "kind", "extractor", "max_chars", "cluster"})
    if extractor == "llm":
        facet["question"] = request.question
    return {**base, "facets": [facet]}


def run_clio(config_path: Path, input_path: Path, output_dir: Path) -> str:
    """`clio run` in a subprocess (the real flow); the run id from its manifest."""
    command = [sys.executable, "-m", "clio.cli", "run", "--config", str(config_path),
               "--input", str(input_path), "--output-dir", str(output_dir)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"clio run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads((output_dir / "manifest.json").read_text())["run_id"]


def _private_tree(output_dir: Path, run_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """(conversation id -> private base cluster id, conversation id -> scrubbed user turn)
    of the run's build, read-only."""
    connection = duckdb.connect(str(output_dir / "private" / "private.duckdb"), read_only=True)
    try:
        members = connection.execute(
            "SELECT conversation_id, cluster_id FROM cluster_members "
            "WHERE run_id = ? AND facet = ? AND level = 0",
            [run_id, FACET],
        ).fetchall()
        turns = connection.execute(
            "SELECT conversation_id, messages->>'$[0][1]' FROM conversations"
        ).fetchall()
    finally:
        connection.close()
    return dict(members), dict(turns)


def _released_names(output_dir: Path, run_id: str) -> dict[str, str]:
    """Released base cluster id -> name."""
    connection = duckdb.connect(str(output_dir / "insights.duckdb"), read_only=True)
    try:
        rows = connection.execute(
            "SELECT cluster_id, name FROM clusters WHERE run_id = ? AND facet = ? AND level = 0",
            [run_id, FACET],
        ).fetchall()
    finally:
        connection.close()
    return dict(rows)


def _public_ids(output_dir: Path, config: RunConfig, run_id: str, private: list[str]) -> dict:
    from clio.pipeline.publish import public_ids
    from clio.store import PrivateStore

    with PrivateStore(str(output_dir / "private" / "private.duckdb")) as store:
        public_id = public_ids(store, config.scrub, run_id)
        return {c: public_id(Cluster(FACET, 0, c, None, [])) for c in private}


def score_run(
    dataset: LabelledTexts,
    items: list[int],
    output_dir: Path,
    config: RunConfig,
    run_id: str,
    embed: Any,
) -> dict[str, Any]:
    members, turns = _private_tree(output_dir, run_id)
    conversations = [f"eval-{i}" for i in items if f"eval-{i}" in members]
    gold = [dataset.labels[int(c.removeprefix("eval-"))] for c in conversations]
    private_ids = sorted(set(members.values()))
    index = {c: k for k, c in enumerate(private_ids)}
    predicted = np.array([index[members[c]] for c in conversations], dtype=np.int64)
    texts = [turns[c] for c in conversations]
    vectors = normalise_rows(embed(texts))
    baseline = kmeans_labels(vectors, len(private_ids), config.cluster.seed)

    names = _released_names(output_dir, run_id)
    public = _public_ids(output_dir, config, run_id, private_ids)
    released = [k for k, c in enumerate(private_ids) if public[c] in names]
    in_released = np.isin(predicted, released)
    label_names = sorted(set(gold))
    label_vectors = normalise_rows(embed([n.replace("_", " ") for n in label_names]))
    majority, centroids, bertopic = [], [], []
    tokens = [content_stems(t) for t in texts]
    top_words = _bertopic_words(texts, predicted, vectors)
    for k in released:
        rows = np.flatnonzero(predicted == k)
        majority.append(label_names.index(Counter(gold[r] for r in rows).most_common(1)[0][0]))
        centroids.append(vectors[rows].mean(axis=0))
        words = top_words.get(k, [])
        bertopic.append(gated_words(words, supported_in(rows, tokens, config.privacy.min_users), 4))
    released_names = [names[public[private_ids[k]]] for k in released]
    scores: dict[str, Any] = {
        "n_conversations": len(items),
        "n_clustered": len(conversations),
        "n_base_clusters": len(private_ids),
        "n_released_base": len(released),
        "coverage": round(float(in_released.mean()), 4) if len(in_released) else 0.0,
        "clio": score_clustering(gold, predicted)
        | {"purity": _purity(np.asarray(gold), predicted)},
        "kmeans_user_text": score_clustering(gold, baseline)
        | {"purity": _purity(np.asarray(gold), baseline)},
        "released_purity": _purity(np.asarray(gold)[in_released], predicted[in_released]),
        "names": {},
        "examples": [],
    }
    if released:
        centroid_rows = normalise_rows(np.asarray(centroids, dtype=np.float32))
        for method, method_names in (("clio", released_names), ("bertopic", bertopic)):
            shown = ["" if n in (PLACEHOLDER, "(withheld)") else n for n in method_names]
            scores["names"][method] = score_names(
                shown, normalise_rows(embed([n or "-" for n in shown])), label_vectors,
                centroid_rows, majority,
            )  # fmt: skip
        scores["examples"] = [
            {"label": label_names[m], "clio": n, "bertopic": b}
            for m, n, b in zip(majority, released_names, bertopic, strict=True)
        ][:12]
    return scores


def _purity(gold: np.ndarray, predicted: np.ndarray) -> float:
    if len(gold) == 0:
        return 0.0
    agree = sum(Counter(gold[predicted == k]).most_common(1)[0][1] for k in set(predicted))
    return round(agree / len(gold), 4)


def _bertopic_words(texts: list[str], labels: np.ndarray, vectors: np.ndarray) -> dict:
    """Cluster index -> BERTopic's words for the same clusters (plain c-TF-IDF where
    BERTopic is not installed)."""
    from clio.evaluation.names import bertopic_words
    from clio.keywords import count_terms, keywords_of

    k = int(labels.max()) + 1 if len(labels) else 0
    try:
        found = bertopic_words(texts, labels, vectors)
        return dict(enumerate(found))
    except ImportError:
        terms = count_terms(texts, [str(i) for i in range(len(texts))])
        plain = keywords_of(terms, labels, n_keywords=20, min_users=1, frequency_penalty=False)
        return {c: plain[c] for c in range(k)}


def evaluate_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    dataset = load_dataset(args.dataset, Path(args.data_dir), args.split)
    items = sample_items(dataset, args.labels, args.per_label, args.seed)
    base = yaml.safe_load(Path(args.config).read_text()) or {}
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="clio-eval-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    input_path = work / "conversations.jsonl"
    input_path.write_text(
        "".join(json.dumps(r) + "\n" for r in conversation_rows(dataset, items)), "utf-8"
    )
    embedder = build_embedder(load_config(args.config).embed)

    def embed(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, embedder)

    report: dict[str, Any] = {
        "dataset": dataset.name,
        "split": args.split,
        "source": dataset.source,
        "labels": len({dataset.labels[i] for i in items}),
        "per_label": args.per_label,
        "work_dir": str(work),
        "runs": {},
    }
    for extractor in args.extractors:
        folder = work / extractor
        folder.mkdir(exist_ok=True)
        config_path = folder / "config.yaml"
        config_path.write_text(yaml.safe_dump(run_config(base, extractor)))
        config = load_config(str(config_path))
        run_id = run_clio(config_path, input_path, folder / "out")
        report["runs"][extractor] = score_run(dataset, items, folder / "out", config, run_id, embed)
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"Pipeline evaluation: {report['dataset']} ({report['split']} split; "
        f"{report['labels']} labels x {report['per_label']} conversations; {report['source']})",
        "input      clusters released coverage | NMI    ARI    purity released | "
        "k-means NMI ARI    purity | name top-1 (BERTopic)",
    ]
    for extractor, run in report["runs"].items():
        clio, km = run["clio"], run["kmeans_user_text"]
        names = run["names"]
        top1 = names.get("clio", {}).get("top1", 0.0)
        bertopic = names.get("bertopic", {}).get("top1", 0.0)
        lines.append(
            f"{extractor:<10} {run['n_base_clusters']:>8} {run['n_released_base']:>8} "
            f"{run['coverage']:>8.3f} | {clio['nmi']:.3f}  {clio['ari']:.3f}  "
            f"{clio['purity']:.3f}  {run['released_purity']:.3f}    | {km['nmi']:.3f}     "
            f"{km['ari']:.3f}  {km['purity']:.3f}  | {top1:.3f} ({bertopic:.3f})"
        )
    for extractor, run in report["runs"].items():
        lines.append(f"Released base names ({extractor}): label -> clio | bertopic")
        lines += [f"  {e['label']}: {e['clio']} | {e['bertopic']}" for e in run["examples"]]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=NAMES, required=True, help="Labelled dataset.")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="test (reported) or dev (to tune on).")  # fmt: skip
    parser.add_argument("--labels", type=int, default=12, help="Labels drawn (default 12).")
    parser.add_argument("--per-label", type=int, default=20,
                        help="Conversations per label, each its own user.")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="Seed of the draw (default 0).")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"Run config to start from (default {DEFAULT_CONFIG}); its "
                        "facets are replaced by the one measured.")  # fmt: skip
    parser.add_argument("--extractors", nargs="+", choices=EXTRACTORS, default=list(EXTRACTORS),
                        help="Clustering inputs to compare (default both).")  # fmt: skip
    parser.add_argument("--work-dir", help="Where the runs go (default a new temp dir).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    add_data_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    args.data_dir = args.data_dir or str(default_data_dir())
    try:
        report = evaluate_pipeline(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"clio eval pipeline: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0
