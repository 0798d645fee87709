import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from clio import cluster as cluster_module
from clio.cluster import (
    centroids_of,
    choose_k,
    cluster_vectors,
    compact_labels,
    kmeans_plus_plus_seeds,
    members_by_cluster,
    reassign_outliers,
    unit_rows,
)
from clio.config import ClusterConfig


def blobs(n_blobs: int, per_blob: int, *, dim: int = 32, noise: float = 0.05, seed: int = 0):
    """Well separated groups of unit vectors around random directions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(n_blobs), per_blob)
    points = centres[truth] + noise * rng.normal(size=(len(truth), dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), truth, centres


@pytest.mark.parametrize(
    ("n", "target", "min_k", "max_k", "expected"),
    [
        (0, 30, 2, 2000, 0),
        (1, 30, 2, 2000, 1),  # min_k is clipped to n
        (10, 30, 2, 2000, 2),  # round(0.33) = 0 -> min_k
        (100, 30, 2, 2000, 3),  # round(3.33)
        (110, 30, 2, 2000, 4),  # round(3.67)
        (3000, 30, 2, 2000, 100),
        (100_000, 30, 2, 2000, 2000),  # max_k
        (3, 2, 5, 10, 3),  # min_k larger than n
        (50, 10, 1, 3, 3),
    ],
)
def test_choose_k(n, target, min_k, max_k, expected):
    config = ClusterConfig(target_cluster_size=target, min_k=min_k, max_k=max_k)
    assert choose_k(n, config) == expected


def test_kmeans_recovers_separated_blobs_with_normalised_centroids():
    points, truth, _ = blobs(4, 25)
    labels, centroids = cluster_vectors(
        points, ClusterConfig(method="kmeans", target_cluster_size=25)
    )
    assert centroids.shape == (4, 32)
    assert adjusted_rand_score(truth, labels) == 1.0
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)


def test_kmeans_is_deterministic_for_a_seed():
    points, _, _ = blobs(12, 20, noise=0.6, seed=3)
    config = ClusterConfig(method="kmeans", target_cluster_size=10, seed=7)
    first = cluster_vectors(points, config)
    second = cluster_vectors(points, config)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_kmeans_labels_are_compact_when_clusters_come_out_empty():
    # 30 points but only 3 distinct ones, while choose_k asks for 15 clusters.
    distinct, _, _ = blobs(3, 1)
    points = np.repeat(distinct, 10, axis=0)
    config = ClusterConfig(method="kmeans", target_cluster_size=2)
    assert choose_k(30, config) == 15
    labels, centroids = cluster_vectors(points, config)
    k = len(centroids)
    assert k <= 3
    assert sorted(set(labels.tolist())) == list(range(k))
    # identical points share a label
    assert len({(tuple(p), int(c)) for p, c in zip(points.round(6), labels, strict=True)}) == 3


def test_labels_are_ordered_largest_cluster_first():
    points = np.concatenate([blobs(1, 5, seed=1)[0], blobs(1, 20, seed=2)[0]])
    labels, _ = cluster_vectors(points, ClusterConfig(method="kmeans", target_cluster_size=12))
    assert labels.tolist() == [1] * 5 + [0] * 20


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_inputs(n):
    points = blobs(1, 1)[0][:n]
    labels, centroids = cluster_vectors(points, ClusterConfig())
    assert labels.tolist() == [0] * n
    assert centroids.shape == (n, 32)


def test_hdbscan_path_labels_every_vector_and_reassigns_its_outliers(monkeypatch):
    # Spread-out blobs plus scattered background points: HDBSCAN calls some of them noise.
    points, truth, _ = blobs(3, 40, noise=0.3, seed=5)
    rng = np.random.default_rng(1)
    background = rng.normal(size=(10, points.shape[1]))
    background /= np.linalg.norm(background, axis=1, keepdims=True)
    vectors = np.concatenate([points, background]).astype(np.float32)
    seen_outliers = []

    def spy(vectors, labels):
        seen_outliers.append(int((labels < 0).sum()))
        return reassign_outliers(vectors, labels)

    monkeypatch.setattr(cluster_module, "reassign_outliers", spy)
    labels, centroids = cluster_vectors(vectors, ClusterConfig(method="hdbscan", seed=0))
    assert seen_outliers and seen_outliers[0] > 0
    assert len(labels) == len(vectors)
    assert sorted(set(labels.tolist())) == list(range(len(centroids)))
    assert len(centroids) == 3
    assert adjusted_rand_score(truth, labels[: len(points)]) > 0.9


def test_reassign_outliers_picks_the_nearest_inlier_centroid():
    vectors = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1], [0.9, 0.2], [0.3, 1]], np.float32)
    labels = np.array([0, 0, 1, 1, -1, -1])
    assert reassign_outliers(vectors, labels).tolist() == [0, 0, 1, 1, 0, 1]
    assert reassign_outliers(vectors, np.full(6, -1)).tolist() == [0] * 6


def test_compact_labels_orders_by_size_or_weight():
    assert compact_labels(np.array([5, 5, 2, 9, 9, 9])).tolist() == [1, 1, 2, 0, 0, 0]
    weighted = compact_labels(np.array([0, 0, 1]), weights=np.array([1.0, 1.0, 5.0]))
    assert weighted.tolist() == [1, 1, 0]


def test_members_by_cluster_and_centroids():
    labels = np.array([2, 0, 2, 1, 0])
    assert [m.tolist() for m in members_by_cluster(labels, 4)] == [[1, 4], [3], [0, 2], []]
    vectors = np.array([[1, 0], [0, 1], [1, 1], [3, 0], [0, 2]], dtype=np.float32)
    np.testing.assert_allclose(
        centroids_of(vectors, labels[:5], 3), [[0, 1], [1, 0], [0.8944272, 0.4472136]], rtol=1e-6
    )


def test_kmeans_plus_plus_seeding_recovers_many_separated_blobs():
    # faiss's own random seeding merges and splits some of these 40 blobs.
    points, truth, _ = blobs(40, 10, seed=0)
    labels, centroids = cluster_vectors(
        points, ClusterConfig(method="kmeans", target_cluster_size=10, seed=0)
    )
    assert len(centroids) == 40
    assert adjusted_rand_score(truth, labels) == 1.0


def test_kmeans_plus_plus_seeds_are_seeded_rows_of_the_input():
    points, _, _ = blobs(5, 40, noise=0.3, seed=2)
    seeds = kmeans_plus_plus_seeds(points, 6, seed=4)
    assert seeds.shape == (6, points.shape[1]) and seeds.dtype == np.float32
    rows = {tuple(row) for row in points}
    assert all(tuple(row) in rows for row in seeds)
    np.testing.assert_array_equal(seeds, kmeans_plus_plus_seeds(points, 6, seed=4))
    assert not np.array_equal(seeds, kmeans_plus_plus_seeds(points, 6, seed=5))


def test_unit_rows_leaves_unit_rows_bit_for_bit_alone():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(50, 16)).astype(np.float32)
    once = unit_rows(raw)
    np.testing.assert_allclose(np.linalg.norm(once, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(unit_rows(once), once)
    assert unit_rows(np.zeros((2, 3))).tolist() == [[0.0] * 3] * 2  # zero rows stay zero


def test_hdbscan_path_is_deterministic_and_uses_the_configured_sizes(monkeypatch):
    import hdbscan

    points, _, _ = blobs(4, 30, noise=0.2, seed=6)
    seen = []
    real = hdbscan.HDBSCAN

    def spy(**kwargs):
        seen.append(kwargs["min_cluster_size"])
        return real(**kwargs)

    monkeypatch.setattr(hdbscan, "HDBSCAN", spy)
    config = ClusterConfig(method="hdbscan", seed=2, min_cluster_size=12, umap_components=4)
    first = cluster_vectors(points, config)
    second = cluster_vectors(points, config)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert seen == [12, 12]
    cluster_vectors(points, ClusterConfig(method="hdbscan", target_cluster_size=20))
    assert seen[-1] == 10  # half the target size when min_cluster_size is not set


def test_kmeans_is_the_default_base_clustering():
    assert ClusterConfig().method == "kmeans"
