"""Embedding backends compared: `torch` against `onnx-int8` (`embed.backend`).

- Speed: `embed_texts` (length-sorted chunks, no cache) over N real texts, half from
  CLINC150's test split and half from Banking77's, interleaved; texts per second of wall
  time and per CPU-second (this process, ONNX Runtime's and torch's threads included),
  best of `--repeats`, the backends taking turns. Loading (and, on first use, the ONNX
  export) is timed apart.
- Agreement: the cosine of each text's onnx-int8 vector to its torch vector (min, 1st
  percentile, mean).
- Clustering: what `clio eval clusters` scores (`clio.evaluation.clusters.evaluate`, the
  configured clio and plain k-means, no hierarchy) on the whole CLINC150 and Banking77
  test splits, embedded by each backend, for each seed of `--seeds`; NMI and ARI per
  seed and their mean, and the onnx-int8 minus torch difference of the means.

Usage: `python bench/embed_backends.py [--n 2000] [--seeds 0,1,2,3,4] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clio.config import EmbedConfig, load_config  # noqa: E402
from clio.embed import Embedder, build_embedder, embed_texts  # noqa: E402
from clio.evaluation.cluster_datasets import load_dataset  # noqa: E402
from clio.evaluation.clusters import eval_config, evaluate  # noqa: E402
from clio.evaluation.data_dir import default_data_dir  # noqa: E402

BACKENDS = ("torch", "onnx-int8")
DATASETS = ("clinc150", "banking77")
METHODS = ("clio", "kmeans")


def speed_texts(data_dir: Path, n: int) -> list[str]:
    """N texts, alternating between CLINC150 and Banking77 test texts."""
    clinc, banking = (load_dataset(name, data_dir).texts for name in DATASETS)
    mixed = [text for pair in zip(clinc, banking, strict=False) for text in pair]
    if n > len(mixed):
        raise ValueError(f"--n at most {len(mixed)}")
    return mixed[:n]


def timed_embeds(
    texts: list[str], embedders: dict[str, Embedder], repeats: int
) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Each backend's vectors and speed, best of `repeats`. The backends take turns in
    each repeat, so a load from elsewhere on the machine falls on both alike."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in embedders}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, embedder in embedders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            vectors[name] = embed_texts(texts, embedder, None)
            runs[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    figures = {
        name: {
            "texts_per_second": round(len(texts) / min(w for w, _ in timings), 1),
            "texts_per_cpu_second": round(len(texts) / min(c for _, c in timings), 1),
            "wall_seconds": [round(w, 2) for w, _ in timings],
        }
        for name, timings in runs.items()
    }
    return vectors, figures


def cosine_summary(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cosine = np.sum(a * b, axis=1)
    return {
        "min": round(float(cosine.min()), 4),
        "p1": round(float(np.percentile(cosine, 1)), 4),
        "mean": round(float(cosine.mean()), 4),
    }


def cluster_scores(
    vectors: dict[str, np.ndarray], dataset: Any, seeds: list[int], config_path: str | None
) -> dict[str, Any]:
    """NMI/ARI per backend, method and seed, with means and the onnx - torch differences."""
    out: dict[str, Any] = {}
    for backend, rows in vectors.items():
        per_method: dict[str, Any] = {}
        for seed in seeds:
            config = eval_config(load_config(config_path), seed)
            report = evaluate(dataset, rows, config, methods=METHODS, with_hierarchy=False)
            for method in METHODS:
                scores = report["methods"][method]
                entry = per_method.setdefault(method, {"nmi": [], "ari": [], "k": []})
                entry["nmi"].append(scores["nmi"])
                entry["ari"].append(scores["ari"])
                entry["k"].append(scores["n_clusters"])
        for entry in per_method.values():
            entry["nmi_mean"] = round(float(np.mean(entry["nmi"])), 4)
            entry["ari_mean"] = round(float(np.mean(entry["ari"])), 4)
        out[backend] = per_method
    out["difference"] = {
        method: {
            metric: round(out["onnx-int8"][method][metric] - out["torch"][method][metric], 4)
            for metric in ("nmi_mean", "ari_mean")
        }
        for method in METHODS
    }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = args.data_dir or default_data_dir()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    texts = speed_texts(data_dir, args.n)
    embedders: dict[str, Embedder] = {}
    report: dict[str, Any] = {
        "n": len(texts),
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "speed": {},
    }
    for backend in BACKENDS:
        embedder = build_embedder(EmbedConfig(backend=backend, batch_size=args.batch_size))
        start = time.perf_counter()
        embedder.encode(texts[:8])  # loads the model (and exports it on first use)
        report["speed"][backend] = {"identifier": embedder.identifier}
        report["speed"][backend]["load_seconds"] = round(time.perf_counter() - start, 2)
        embedders[backend] = embedder
    speed_vectors, figures = timed_embeds(texts, embedders, args.repeats)
    for backend, backend_figures in figures.items():
        report["speed"][backend].update(backend_figures)
    report["speedup"] = round(
        report["speed"]["onnx-int8"]["texts_per_second"]
        / report["speed"]["torch"]["texts_per_second"],
        2,
    )
    report["cosine"] = cosine_summary(speed_vectors["onnx-int8"], speed_vectors["torch"])
    report["clusters"] = {}
    for name in DATASETS:
        dataset = load_dataset(name, data_dir)
        vectors = {b: embed_texts(dataset.texts, e, None) for b, e in embedders.items()}
        report["clusters"][name] = {
            "n": len(dataset.texts),
            "cosine": cosine_summary(vectors["onnx-int8"], vectors["torch"]),
            **cluster_scores(vectors, dataset, seeds, args.config),
        }
    report["seeds"] = seeds
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"Embedding backends on {report['n']} texts (CLINC150 + Banking77 test)"]
    for backend, s in report["speed"].items():
        lines.append(
            f"  {backend:<10} {s['texts_per_second']:>7.1f} texts/s "
            f"{s['texts_per_cpu_second']:>7.1f} texts/CPU-s  load {s['load_seconds']:.1f} s"
            f"  ({s['identifier']})"
        )
    c = report["cosine"]
    lines.append(
        f"  speed-up {report['speedup']:.2f}x; cosine onnx-int8 to torch: "
        f"min {c['min']:.4f}, 1st percentile {c['p1']:.4f}, mean {c['mean']:.4f}"
    )
    lines.append(f"Clustering (seeds {','.join(map(str, report['seeds']))}; mean NMI / ARI)")
    for name, d in report["clusters"].items():
        lines.append(
            f"  {name} ({d['n']} texts; cosine min {d['cosine']['min']:.4f}, "
            f"mean {d['cosine']['mean']:.4f})"
        )
        for method in METHODS:
            t, o = d["torch"][method], d["onnx-int8"][method]
            diff = d["difference"][method]
            lines.append(
                f"    {method:<7} torch {t['nmi_mean']:.4f} / {t['ari_mean']:.4f}   "
                f"onnx-int8 {o['nmi_mean']:.4f} / {o['ari_mean']:.4f}   "
                f"difference {diff['nmi_mean']:+.4f} / {diff['ari_mean']:+.4f}"
            )
    lines.append(
        f"load average at the start {report['load_average_start']}, "
        f"at the end {report['load_average']}"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="texts timed and compared")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="clustering seeds, comma-separated")
    parser.add_argument(
        "--batch-size", type=int, default=EmbedConfig.model_fields["batch_size"].default
    )
    parser.add_argument("--config", default=None, help="run config whose clustering is used")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("clio.embed.onnx").setLevel(logging.INFO)
    report = run(args)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
