"""Base clustering time at scale: k-means at k from n (and the merge step) on random unit vectors.

Random unit vectors are a worst case for k-means time (no structure to converge to) and
carry no quality signal; quality is measured by `bench/eval_clusters.py`.
Usage: `python bench/cluster_scale.py [--n 100000] [--dim 384] [--k 2000] [--iterations 50,20]`.
Prints the k-means++ seeding time, then per iteration count the k-means time (seeding
included, as `spherical_kmeans` runs it) and the merge step's time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clio.cluster import (  # noqa: E402
    compact_labels,
    kmeans_plus_plus_seeds,
    merge_unseparated,
    spherical_kmeans,
)
from clio.config import ClusterConfig  # noqa: E402


def random_unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=2000)
    parser.add_argument("--iterations", default="50,20")
    args = parser.parse_args()
    vectors = random_unit_vectors(args.n, args.dim, 0)
    start = time.perf_counter()
    kmeans_plus_plus_seeds(vectors, args.k, 0)
    seeding = time.perf_counter() - start
    print(f"n {args.n} dim {args.dim} k {args.k}: k-means++ seeding {seeding:.1f} s")
    for iterations in (int(i) for i in args.iterations.split(",")):
        config = ClusterConfig(kmeans_iterations=iterations)
        start = time.perf_counter()
        labels = compact_labels(
            spherical_kmeans(
                vectors, args.k, config.seed, config.kmeans_iterations, config.kmeans_restarts
            )
        )
        kmeans_seconds = time.perf_counter() - start
        start = time.perf_counter()
        merged = merge_unseparated(vectors, labels, config.merge_ratio)
        merge_seconds = time.perf_counter() - start
        print(
            f"iterations {iterations:>3}: k-means {kmeans_seconds:.1f} s, "
            f"merge {merge_seconds:.1f} s ({labels.max() + 1} -> {merged.max() + 1} clusters)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
