"""Cluster evaluation of all five labelled datasets in one process, with the total wall time.

For each dataset it runs what `clio eval clusters --dataset NAME` runs (the embedding model
is loaded once and UMAP is compiled once), and by default also `clio_hdbscan` (clio with
`cluster.method: hdbscan`) beside the configured clio, so both are measured on the same
vectors in the same run. Embeddings are cached under `outputs/eval_cache/embeddings`;
`--fresh` ignores that cache, so the wall time includes embedding. Each report carries
`wall_seconds` (embedding plus every method and the hierarchy) for its dataset.

Usage: `python bench/eval_clusters.py [--methods ...] [--seed N] [--json] [--fresh]`.
Writes every report to `outputs/cluster_eval.json` and the tables to `cluster_eval.txt`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clio.config import load_config  # noqa: E402
from clio.embed import build_embedder  # noqa: E402
from clio.evaluation.cluster_datasets import NAMES, load_dataset  # noqa: E402
from clio.evaluation.clusters import (  # noqa: E402
    ALL_METHODS,
    embed_cached,
    eval_config,
    evaluate,
    format_table,
)
from clio.evaluation.data_dir import default_data_dir  # noqa: E402

# The configured clio is k-means by default, so the forced variant beside it is HDBSCAN
# (a forced `clio_kmeans` would repeat the same clustering).
DEFAULT_METHODS = "clio,clio_hdbscan,kmeans,bertopic"


def summary_line(report: dict) -> str:
    parts = []
    for method, scores in report["methods"].items():
        if "skipped" in scores:
            parts.append(f"{method}: skipped")
        else:
            ceiling = f" of {scores['k_from_n']}" if "k_from_n" in scores else ""
            parts.append(
                f"{method}: ARI {scores['ari']:.3f} NMI {scores['nmi']:.3f} "
                f"k {scores['n_clusters']}{ceiling}"
            )
    return f"{report['dataset']:<11} {report['wall_seconds']:>6.1f} s  " + " | ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(NAMES))
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=",".join(ALL_METHODS))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--config", default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs"))
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument("--fresh", action="store_true", help="embed without the cache")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")

    start = time.perf_counter()
    config = eval_config(load_config(args.config), args.seed)
    methods = [m for m in args.methods.split(",") if m]
    embedder = build_embedder(config.embed)
    data_dir = args.data_dir or default_data_dir()
    with tempfile.TemporaryDirectory(prefix="clio-eval-") as scratch:
        cache_dir = Path(scratch) if args.fresh else args.output_dir / "eval_cache" / "embeddings"
        reports = []
        for name in args.datasets.split(","):
            dataset = load_dataset(name, data_dir)
            dataset_start = time.perf_counter()
            vectors = embed_cached(dataset.texts, embedder, cache_dir)
            embed_seconds = time.perf_counter() - dataset_start
            report = evaluate(dataset, vectors, config, methods=methods)
            report["embedding_model"] = embedder.identifier
            report["embed_seconds"] = round(embed_seconds, 1)
            report["wall_seconds"] = round(time.perf_counter() - dataset_start, 1)
            reports.append(report)
            if not args.json:
                print(format_table(report) + "\n", flush=True)
    total = time.perf_counter() - start
    tables = "\n\n".join(format_table(r) for r in reports)
    summary = "\n".join(summary_line(r) for r in reports)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    result = {"reports": reports, "total_seconds": round(total, 1), "fresh_embeddings": args.fresh}
    (args.output_dir / "cluster_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.output_dir / "cluster_eval.txt").write_text(
        f"{tables}\n\n{summary}\ntotal wall time: {total:.0f} s\n"
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(summary)
        print(f"total wall time: {total:.0f} s (embeddings {'fresh' if args.fresh else 'cached'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
