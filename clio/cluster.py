"""Base clusters over L2-normalised vectors: faiss k-means (default), or UMAP + HDBSCAN.

k-means (default) is deterministic for a seed and needs no n×n matrix:
1. spherical k-means at k from n (`choose_k`: n / target_cluster_size, clipped), k-means++
   seeds, the tightest of `kmeans_restarts` runs. That k is a ceiling, not the answer: it
   suits many tight intents (CLINC150: 150 clusters for 150 intents) but cuts a few broad
   topics into arbitrary pieces (SIB-200: 33 clusters for 7 topics).
2. `merge_unseparated`: average linkage on the ≤ max_k centroids, merging two groups while
   their centroids are closer (by `merge_ratio`) than a typical member is to its own
   centroid. Pieces of one blob lie inside each other's spread and merge; distinct intents
   do not. The threshold is read from the data (the mean member-to-centroid distance), so
   it is the same rule on any embedding model. Its limit: broad topics with sub-topics of
   their own (SIB-200) come out as those sub-topics, which are separated by this measure.

HDBSCAN (option) finds the number of clusters from the data after UMAP, and every outlier
joins its nearest cluster, so no item is left unclustered. It meets the quality targets
on CLINC150, Banking77 and SIB-200 but collapses varied data (Arena-Hard, MT-Bench) into 2
clusters and is brittle in its minimum cluster size, so it is not the default.

Labels come back compact (0..k-1, every label used) and ordered by cluster size,
largest first, so cluster ids read naturally and empty clusters never reach the tree.

Each method is a `Clusterer` owning its parameters (`build_clusterer` reads them from the
config): `fit` clusters a full build, and the same object, fitted or loaded with a stored
build's centroids, `predict`s the cluster of new vectors for an incremental run.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Protocol, runtime_checkable

import numpy as np

from clio.config import ClusterConfig
from clio.embed import normalise_rows

_log = logging.getLogger("clio.cluster")

SEEDING_SAMPLE_PER_CLUSTER = 20  # k-means++ seeds k centroids from this many rows per centroid
# ...but from no more rows than this: seeding costs O(k · rows · d), which at k = 2,000
# from 40,000 rows took minutes; from 10,000 rows it takes about 12 s on 2 cores.
SEEDING_SAMPLE_MAX_ROWS = 10_000
# k-means runs on after faiss's iterations until no label changes, but no longer than this
# (a bound for data that keeps trading a few boundary rows back and forth).
SETTLE_MAX_ROUNDS = 100


@runtime_checkable
class Clusterer(Protocol):
    """Base clustering as one fitted object, as a scikit-learn estimator: `fit` on a full
    build's vectors (or `load` a stored build's centroids), then `predict` assigns new
    vectors to those clusters."""

    @property
    def identifier(self) -> str:
        """Stable id of the method and its parameters."""
        ...

    def fit(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels in 0..k-1 per row, largest cluster first; (k, d) unit centroids)."""
        ...

    def load(self, centroids: np.ndarray) -> None:
        """Take the clusters of an earlier fit, by their centroids, without refitting."""
        ...

    def warm_start(self, centroids: np.ndarray, n_before: int) -> None:
        """Start the next `fit` from an earlier build's centroids (of `n_before` rows) where
        the method can (k-means); a method that cannot ignores them."""
        ...

    def predict(self, vectors: np.ndarray, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
        """(label of each row's nearest cluster, or -1 when its cosine distance is beyond
        `max_distance`; that distance)."""
        ...

    @property
    def seeds(self) -> np.ndarray | None:
        """What the last `fit` would `warm_start` the next one from (k-means: its centroids
        before merging, largest first), or None for a method without seeds."""
        ...


@dataclass
class _CentroidClusterer:
    """What the methods share: the fit's input checks and compact output, and prediction
    by the nearest centroid (HDBSCAN's outliers join their nearest cluster the same way).
    A method adds its parameters as fields, its `name`, and how it labels rows."""

    name = ""
    _centroids: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def identifier(self) -> str:
        """The method's name and every parameter, in field order."""
        params = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.init)
        return f"{self.name}({params})"

    def _labels(self, vectors: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels, centroids = _fit(vectors, self._labels, self.name)
        self._centroids = centroids
        return labels, centroids

    def load(self, centroids: np.ndarray) -> None:
        self._centroids = np.asarray(centroids, dtype=np.float32)

    def warm_start(self, centroids: np.ndarray, n_before: int) -> None:
        """Ignored unless the method overrides it (HDBSCAN has no seeds)."""

    @property
    def seeds(self) -> np.ndarray | None:
        return None

    def predict(self, vectors: np.ndarray, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
        if self._centroids is None:
            raise RuntimeError(f"{self.name}: fit or load the clusters before predicting")
        return nearest_centroids(vectors, self._centroids, max_distance)


@dataclass
class KMeansClusterer(_CentroidClusterer):
    """Spherical k-means at k from n, then unseparated clusters merged (see above)."""

    target_cluster_size: int
    min_k: int
    max_k: int
    merge_unseparated: bool
    merge_ratio: float
    seed: int
    iterations: int
    restarts: int
    name = "kmeans"
    _warm: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _n_before: int = field(default=0, init=False, repr=False, compare=False)
    _seeds: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def warm_start(self, centroids: np.ndarray, n_before: int) -> None:
        """Seed the next fit with `centroids` (an earlier fit's `seeds` over `n_before`
        rows, largest first): one k-means run from them, no restarts, and k is their number
        plus the clusters the growth in rows adds (k from n minus k from `n_before`). k-means
        runs until no label changes, so its centroids are a fixed point: on the same rows a
        warm start gives the same clusters, merged the same way, and a small change in the
        rows moves only the clusters it touches."""
        self._warm = np.asarray(centroids, dtype=np.float32) if len(centroids) else None
        self._n_before = n_before

    @property
    def seeds(self) -> np.ndarray | None:
        return self._seeds

    def _labels(self, vectors: np.ndarray) -> np.ndarray:
        n = vectors.shape[0]
        k = choose_k(n, self.target_cluster_size, self.min_k, self.max_k)
        if self._warm is not None:
            before = choose_k(self._n_before, self.target_cluster_size, self.min_k, self.max_k)
            k = max(1, min(n, self.max_k, len(self._warm) + max(0, k - before)))
        warm = "" if self._warm is None else f", warm-started from {len(self._warm)} centroids"
        _log.info(f"cluster: k-means with k = {k} (from n) for {n} vectors{warm}")
        labels = compact_labels(
            spherical_kmeans(vectors, k, self.seed, self.iterations, self.restarts, self._warm)
        )
        self._seeds = centroids_of(vectors, labels, int(labels.max()) + 1).astype(np.float32)
        if self.merge_unseparated:
            labels = merge_unseparated(vectors, labels, self.merge_ratio, self.min_k)
            _log.info(f"cluster: merging unseparated clusters left {int(labels.max()) + 1} of {k}")
        return labels


@dataclass
class HdbscanClusterer(_CentroidClusterer):
    """UMAP to a few dimensions (HDBSCAN is slow on 384-d), HDBSCAN there, then every
    outlier (-1) joins the cluster whose centroid (in the original space) is nearest."""

    min_cluster_size: int
    umap_components: int
    umap_neighbors: int
    seed: int
    name = "hdbscan"

    def _labels(self, vectors: np.ndarray) -> np.ndarray:
        import hdbscan
        import umap

        n = vectors.shape[0]
        if n < 4:
            return np.zeros(n, dtype=np.int64)
        n_components = max(2, min(self.umap_components, n - 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" and the like
            reduced = umap.UMAP(
                n_neighbors=max(2, min(self.umap_neighbors, n - 1)),
                n_components=n_components,
                min_dist=0.0,
                metric="cosine",
                random_state=self.seed,
                init="spectral" if n > n_components + 1 else "random",
            ).fit_transform(vectors)
        min_cluster_size = max(2, min(self.min_cluster_size, n // 2))
        labels = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size).fit_predict(reduced)
        _log.info(f"cluster: hdbscan left {int((labels < 0).sum())} of {n} vectors as outliers")
        return reassign_outliers(vectors, labels)


def build_clusterer(config: ClusterConfig) -> Clusterer:
    """The configured method with its parameters, unfitted."""
    if config.method == "hdbscan":
        return HdbscanClusterer(
            min_cluster_size=config.min_cluster_size or config.target_cluster_size // 2,
            umap_components=config.umap_components,
            umap_neighbors=config.umap_neighbors,
            seed=config.seed,
        )
    return KMeansClusterer(
        target_cluster_size=config.target_cluster_size,
        min_k=config.min_k,
        max_k=config.max_k,
        merge_unseparated=config.merge_unseparated,
        merge_ratio=config.merge_ratio,
        seed=config.seed,
        iterations=config.kmeans_iterations,
        restarts=config.kmeans_restarts,
    )


def cluster_vectors(vectors: np.ndarray, config: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    """(labels in 0..k-1 per row, (k, d) normalised centroids) of the configured method."""
    return build_clusterer(config).fit(vectors)


def _fit(
    vectors: np.ndarray, labels_of: Callable[[np.ndarray], np.ndarray], method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows in; compact labels and their centroids out, whatever `labels_of` does."""
    vectors = np.ascontiguousarray(unit_rows(vectors))
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array, got shape {vectors.shape}")
    n = vectors.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, vectors.shape[1]), dtype=np.float32)
    labels = np.zeros(n, dtype=np.int64) if n < 2 else labels_of(vectors)
    labels = compact_labels(labels)
    centroids = centroids_of(vectors, labels, int(labels.max()) + 1)
    _log.info(f"cluster: {n} vectors -> {centroids.shape[0]} clusters ({method})")
    return labels, centroids


def choose_k(n: int, target_cluster_size: int, min_k: int, max_k: int) -> int:
    """k = round(n / target_cluster_size), clipped to [min_k, max_k] and to at most n."""
    if n <= 0:
        return 0
    k = round(n / target_cluster_size)
    k = max(min_k, min(max_k, k))
    return max(1, min(k, n))


def nearest_centroids(
    vectors: np.ndarray, centroids: np.ndarray, max_distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `vectors`: the index of the nearest centroid by cosine distance
    (faiss, inner product of unit vectors), or -1 when even that one is farther than
    `max_distance`; and that distance."""
    import faiss

    if len(vectors) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    if len(centroids) == 0:
        return np.full(len(vectors), -1, dtype=np.int64), np.full(len(vectors), 2.0)
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(unit_rows(centroids), dtype=np.float32))
    similarity, nearest = index.search(
        np.ascontiguousarray(unit_rows(vectors), dtype=np.float32), 1
    )
    # Clipped: rounding can put the inner product of unit vectors a hair outside [-1, 1].
    distance = 1.0 - np.clip(similarity[:, 0].astype(np.float64), -1.0, 1.0)
    labels = np.where(distance <= max_distance, nearest[:, 0], -1).astype(np.int64)
    return labels, distance


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 rows of unit length. Unlike `normalise_rows`, rows already of unit length
    (within float32 rounding) are left bit for bit as they are, so normalising twice gives
    the same array: UMAP turns last-bit differences into different clusters."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.size == 0:
        return vectors
    norms = np.linalg.norm(vectors, axis=1)
    if np.all(np.abs(norms - 1.0) < 1e-5):
        return vectors
    return normalise_rows(vectors)


def compact_labels(labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Relabel to 0..k'-1 with no gaps, largest first (size = count of rows, or the sum of
    `weights` per label when given), ties broken by the lower old label."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return labels
    used, inverse = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inverse, weights=weights)
    order = np.lexsort((used, -sizes))
    rank = np.empty(len(used), dtype=np.int64)
    rank[order] = np.arange(len(used))
    return rank[inverse]


def members_by_cluster(labels: np.ndarray, k: int) -> list[np.ndarray]:
    """Row indices of each label 0..k-1 in one pass (O(n log n), not O(n·k))."""
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(k)]


def centroids_of(vectors: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Normalised mean vector of each label's rows (O(n·d), no n×n)."""
    sums = np.zeros((k, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, vectors)
    return normalise_rows(sums)


def spherical_kmeans(
    vectors: np.ndarray,
    k: int,
    seed: int,
    iterations: int,
    restarts: int,
    warm: np.ndarray | None = None,
) -> np.ndarray:
    """faiss spherical k-means from k-means++ seeds; with several restarts, the run with
    the lowest objective wins. With `warm` centroids, one run from `warm_seeds`. The winner
    then runs on (`settle`) until no label changes, so its centroids are a fixed point."""
    if k <= 1:
        return np.zeros(vectors.shape[0], dtype=np.int64)
    import faiss

    best: tuple[float, np.ndarray] | None = None
    for restart in range(1 if warm is not None else restarts):
        restart_seed = seed + restart
        kmeans = faiss.Kmeans(
            vectors.shape[1],
            k,
            niter=iterations,
            seed=restart_seed,
            spherical=True,
            verbose=False,
        )
        # faiss warns when there are fewer than 39 points per centroid; that is expected here.
        kmeans.cp.min_points_per_centroid = 1
        seeds = (
            kmeans_plus_plus_seeds(vectors, k, restart_seed)
            if warm is None
            else warm_seeds(vectors, warm, k, restart_seed)
        )
        kmeans.train(vectors, init_centroids=seeds)
        objective = float(kmeans.obj[-1])
        if best is None or objective < best[0]:
            _, assigned = kmeans.index.search(vectors, 1)
            best = (objective, assigned[:, 0].astype(np.int64))
    assert best is not None
    return settle(vectors, best[1], k, SETTLE_MAX_ROUNDS)


def settle(vectors: np.ndarray, labels: np.ndarray, k: int, max_rounds: int) -> np.ndarray:
    """Lloyd steps of spherical k-means (centroids of the labels, then each row to its
    nearest centroid) until no label changes, at most `max_rounds`: faiss stops after a
    fixed number of iterations, where a restart from its centroids would still move rows.
    A label left empty keeps no centroid, so its rows never come back to it."""
    for _ in range(max_rounds):
        used = np.bincount(labels, minlength=k) > 0
        centroids = centroids_of(vectors, labels, k)[used]
        nearest, _ = nearest_centroids(vectors, centroids, max_distance=2.0)  # every row
        moved = np.flatnonzero(used)[nearest]
        if np.array_equal(moved, labels):
            break
        labels = moved
    return labels


def merge_unseparated(
    vectors: np.ndarray, labels: np.ndarray, ratio: float = 1.0, min_k: int = 1
) -> np.ndarray:
    """Merge clusters that are not separated from each other (labels 0..k-1 over unit rows).

    A member's cosine distance to its own centroid is on average `spread` (1 - the mean
    cosine of every row to its cluster's centroid). Two groups whose centroids are closer
    than that lie inside each other's spread, like two pieces of one broad topic, so
    average linkage on the centroids merges them and stops at the first merge farther
    apart than `spread / ratio`. The threshold is read from the data, not set on a distance
    scale; a ratio above 1 asks for a margin. Costs O(k²) for k centroids (k ≤ max_k),
    never O(n²); keeps at least `min_k` clusters where there are that many."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if len(labels) else 0
    if k < 2:
        return labels
    sums = np.zeros((k, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, vectors)
    # |sum of a cluster's unit rows| = sum of their cosines to its centroid
    spread = 1.0 - float(np.linalg.norm(sums, axis=1).sum() / len(labels))
    centroids = normalise_rows(sums)
    distances = np.clip(1.0 - centroids @ centroids.T, 0.0, 2.0)
    tree = linkage(squareform(distances, checks=False), method="average")
    groups = fcluster(tree, t=spread / ratio, criterion="distance")
    if int(groups.max()) < min(min_k, k):
        groups = fcluster(tree, t=min(min_k, k), criterion="maxclust")
    return compact_labels(np.asarray(groups, dtype=np.int64)[labels])


def kmeans_plus_plus_seeds(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ seeds (scikit-learn's) drawn from a seeded sample of SEEDING_SAMPLE_PER_CLUSTER
    rows per centroid, at most SEEDING_SAMPLE_MAX_ROWS (and at least k): faiss only seeds at
    random, which leaves merged and split topics behind (CLINC150 test, k = 150: ARI 0.62
    random, 0.68 k-means++). The sample goes in as float64 because scikit-learn computes
    float32 distances through a chunked float64 copy, about 8 times slower."""
    from sklearn.cluster import kmeans_plusplus

    rng = np.random.default_rng(seed)
    size = min(len(vectors), max(k, min(SEEDING_SAMPLE_PER_CLUSTER * k, SEEDING_SAMPLE_MAX_ROWS)))
    sample = vectors if size == len(vectors) else vectors[rng.choice(len(vectors), size, False)]
    seeds, _ = kmeans_plusplus(np.asarray(sample, dtype=np.float64), k, random_state=seed)
    return np.ascontiguousarray(seeds, dtype=np.float32)


def warm_seeds(vectors: np.ndarray, warm: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k seeds: the first k of `warm` (largest clusters first), and with fewer than k, the
    rest by k-means++ continued from them (each drawn from a seeded sample of rows with
    probability proportional to its squared distance to the nearest seed so far)."""
    seeds = [row for row in unit_rows(np.asarray(warm, dtype=np.float32))[:k]]
    missing = k - len(seeds)
    if missing > 0:
        rng = np.random.default_rng(seed)
        size = min(
            len(vectors), max(k, min(SEEDING_SAMPLE_PER_CLUSTER * k, SEEDING_SAMPLE_MAX_ROWS))
        )
        sample = vectors if size == len(vectors) else vectors[rng.choice(len(vectors), size, False)]
        distance = 1.0 - (sample @ np.stack(seeds).T).max(axis=1)
        for _ in range(missing):
            weights = np.clip(distance, 0.0, None) ** 2
            total = float(weights.sum())
            pick = int(rng.choice(len(sample), p=weights / total)) if total > 0 else 0
            seeds.append(sample[pick])
            distance = np.minimum(distance, 1.0 - sample @ sample[pick])
    return np.ascontiguousarray(np.stack(seeds), dtype=np.float32)


def reassign_outliers(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Give every outlier (label -1) the cluster whose centroid, computed over the
    clustered rows in the original space, is most similar; all outliers -> one cluster."""
    labels = np.array(labels, dtype=np.int64)
    outliers = labels < 0
    if outliers.all():
        _log.info("cluster: no clusters found; one cluster holds everything")
        return np.zeros(len(labels), dtype=np.int64)
    if outliers.any():
        inliers = ~outliers
        centroids = centroids_of(vectors[inliers], labels[inliers], int(labels.max()) + 1)
        labels[outliers] = np.argmax(vectors[outliers] @ centroids.T, axis=1)
        _log.info(f"cluster: reassigned {int(outliers.sum())} outliers to their nearest cluster")
    return labels
