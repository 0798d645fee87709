import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from clio import cluster as cluster_module
from clio.cluster import (
    Clusterer,
    HdbscanClusterer,
    KMeansClusterer,
    build_clusterer,
    centroids_of,
    choose_k,
    cluster_vectors,
    compact_labels,
    kmeans_plus_plus_seeds,
    members_by_cluster,
    merge_unseparated,
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
    assert choose_k(n, target, min_k, max_k) == expected


def test_the_factory_builds_the_configured_method_with_its_parameters():
    kmeans = build_clusterer(ClusterConfig(target_cluster_size=12, seed=3))
    assert isinstance(kmeans, KMeansClusterer) and isinstance(kmeans, Clusterer)
    assert (
        kmeans.identifier
        == build_clusterer(ClusterConfig(target_cluster_size=12, seed=3)).identifier
    )
    assert kmeans.identifier.startswith("kmeans(target_cluster_size=12, ")
    assert kmeans.identifier != build_clusterer(ClusterConfig(seed=4)).identifier
    hdbscan = build_clusterer(ClusterConfig(method="hdbscan", target_cluster_size=20))
    assert isinstance(hdbscan, HdbscanClusterer) and isinstance(hdbscan, Clusterer)
    assert hdbscan.identifier == (
        "hdbscan(min_cluster_size=10, umap_components=10, umap_neighbors=15, seed=0)"
    )


def test_a_fitted_clusterer_predicts_its_own_clusters_and_refuses_before_fitting():
    points, truth, _ = blobs(4, 25)
    clusterer = build_clusterer(ClusterConfig(target_cluster_size=25))
    with pytest.raises(RuntimeError, match="fit or load"):
        clusterer.predict(points, 0.5)
    labels, centroids = clusterer.fit(points)
    predicted, distances = clusterer.predict(points, 0.5)
    assert predicted.tolist() == labels.tolist()
    assert (distances < 0.5).all()
    far, _ = clusterer.predict(-centroids[:1], 0.5)  # opposite a centroid: no cluster
    assert far.tolist() == [-1]


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
    assert choose_k(30, config.target_cluster_size, config.min_k, config.max_k) == 15
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
    # At this spread UMAP's layout (and so the cluster count) depends on the CPU's float
    # arithmetic for some seeds (seed 5 gave two clusters on an AVX-512 machine, three on
    # another); seed 3 gives three clusters with outliers.
    points, truth, _ = blobs(3, 40, noise=0.3, seed=3)
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


def test_pieces_of_one_blob_merge_back_while_k_from_n_is_the_ceiling(caplog):
    # 3 blobs of 100 items: k from n cuts them into 15 pieces, and the pieces of one blob
    # are not separated from each other.
    points, truth, _ = blobs(3, 100, noise=0.06, seed=1)
    unmerged, _ = cluster_vectors(
        points, ClusterConfig(target_cluster_size=20, merge_unseparated=False)
    )
    assert int(unmerged.max()) + 1 == 15
    assert adjusted_rand_score(truth, unmerged) < 0.5
    with caplog.at_level("INFO", logger="clio.cluster"):
        labels, centroids = cluster_vectors(
            points, ClusterConfig(target_cluster_size=20, merge_ratio=1.0)
        )
    assert len(centroids) == 3
    assert adjusted_rand_score(truth, labels) == 1.0
    assert "k-means with k = 15 (from n) for 300 vectors" in caplog.text
    assert "merging unseparated clusters left 3 of 15" in caplog.text
    # the default asks for a margin, so it merges less, never below the true count here
    default_labels, _ = cluster_vectors(points, ClusterConfig(target_cluster_size=20))
    assert 3 <= int(default_labels.max()) + 1 < 15


def test_separated_tight_clusters_are_not_merged():
    # 40 tight blobs: their centroids are far less similar than members to their own.
    points, truth, _ = blobs(40, 10, seed=0)
    merged = merge_unseparated(points, truth, ratio=1.0)
    assert int(merged.max()) + 1 == 40
    assert adjusted_rand_score(truth, merged) == 1.0


def _two_pairs_of_pieces() -> tuple[np.ndarray, np.ndarray]:
    """4 clusters of 2 unit vectors ±20° around 0°, 10°, 60° and 70°: members are at cosine
    distance 1 - cos 20° = 0.0603 from their centroid; centroids 0°/10° and 60°/70° at
    1 - cos 10° = 0.0152, and the two pairs on average at
    1 - (cos 60° + cos 70° + cos 50° + cos 60°) / 4 = 0.504."""
    centres = np.radians([0.0, 10.0, 60.0, 70.0])
    angles = np.concatenate([[c - np.radians(20), c + np.radians(20)] for c in centres])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    return vectors, np.repeat(np.arange(4), 2)


@pytest.mark.parametrize(
    ("ratio", "min_k", "expected_groups"),
    [
        (1.0, 1, [{0, 1}, {2, 3}]),  # 0.0152 < 0.0603 merges each pair; 0.504 does not
        (3.9, 1, [{0, 1}, {2, 3}]),  # 0.0152 < 0.0155
        (4.1, 1, [{0}, {1}, {2}, {3}]),  # 0.0152 > 0.0147: nothing merges
        (0.1, 1, [{0, 1, 2, 3}]),  # 0.504 < 0.603
        (0.1, 2, [{0, 1}, {2, 3}]),  # ... but min_k keeps two
    ],
)
def test_merge_unseparated_follows_the_ratio_of_member_to_centroid_distance(
    ratio, min_k, expected_groups
):
    vectors, labels = _two_pairs_of_pieces()
    merged = merge_unseparated(vectors, labels, ratio=ratio, min_k=min_k)
    groups = [set(labels[merged == g].tolist()) for g in set(merged.tolist())]
    assert sorted(groups, key=min) == expected_groups
    assert set(merged.tolist()) == set(range(len(expected_groups)))  # compact labels


def test_merge_unseparated_copes_with_zero_rows_and_a_single_cluster():
    vectors = np.array([[0, 0], [0, 0], [1, 0], [1, 0]], dtype=np.float32)
    assert merge_unseparated(vectors, np.array([0, 0, 1, 1])).tolist() == [0, 0, 1, 1]
    assert merge_unseparated(vectors, np.zeros(4, dtype=np.int64)).tolist() == [0] * 4


def test_kmeans_plus_plus_seeding_sample_is_capped_and_float64(monkeypatch):
    import sklearn.cluster

    seen = []
    real = sklearn.cluster.kmeans_plusplus

    def spy(sample, k, **kwargs):
        seen.append((sample.shape[0], sample.dtype))
        return real(sample, k, **kwargs)

    monkeypatch.setattr(sklearn.cluster, "kmeans_plusplus", spy)
    monkeypatch.setattr(cluster_module, "SEEDING_SAMPLE_MAX_ROWS", 50)
    points, _, _ = blobs(10, 30, noise=0.3, seed=1)
    kmeans_plus_plus_seeds(points, 2, seed=0)  # 20 rows per centroid: 40
    kmeans_plus_plus_seeds(points, 10, seed=0)  # 200 rows, capped at 50
    kmeans_plus_plus_seeds(points, 60, seed=0)  # never fewer rows than centroids
    assert seen == [(40, np.float64), (50, np.float64), (60, np.float64)]


def test_warm_start_from_a_fit_keeps_its_partition_where_another_seed_does_not():
    """Unstructured data, where k-means' answer depends on its seeds: started from an
    earlier fit's centroids, a fit with another seed (and the rows in another order)
    lands on the same partition; the control without warm start does not."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(600, 16)).astype(np.float32)
    config = ClusterConfig(target_cluster_size=30, merge_unseparated=False, seed=0)
    labels, centroids = build_clusterer(config).fit(vectors)
    order = rng.permutation(len(vectors))

    def same_partition(other: np.ndarray) -> bool:
        pairs = {(int(a), int(b)) for a, b in zip(labels[order], other, strict=True)}
        return len(pairs) == len(set(labels.tolist())) == len(set(other.tolist()))

    other_seed = config.model_copy(update={"seed": 7})
    warm = build_clusterer(other_seed)
    warm.warm_start(centroids, len(vectors))
    warm_labels, _ = warm.fit(vectors[order])
    assert same_partition(warm_labels)
    cold_labels, _ = build_clusterer(other_seed).fit(vectors[order])
    assert not same_partition(cold_labels)


def test_warm_start_adds_the_clusters_growth_asks_for():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    config = ClusterConfig(target_cluster_size=30, merge_unseparated=False)
    _, centroids = build_clusterer(config).fit(vectors[:240])
    warm = build_clusterer(config)
    warm.warm_start(centroids, 240)
    labels, _ = warm.fit(vectors)
    assert int(labels.max()) + 1 == len(centroids) + 2  # k from 300 (10) minus from 240 (8)


def _lloyd_step_moves(vectors: np.ndarray, labels: np.ndarray) -> int:
    """Rows a further step of spherical k-means would move from the given labels."""
    centroids = centroids_of(vectors, labels, int(labels.max()) + 1)
    return int((np.argmax(vectors @ centroids.T, axis=1) != labels).sum())


def test_kmeans_ends_on_a_fixed_point():
    """k-means runs on until no label changes, so a warm start from its seeds (the next
    build over the same rows) has nothing left to move; the control, faiss stopped after
    its fixed iterations, would still move rows."""
    rng = np.random.default_rng(3)
    vectors = unit_rows(rng.normal(size=(800, 12)).astype(np.float32))
    labels = cluster_module.spherical_kmeans(vectors, 25, seed=0, iterations=2, restarts=1)
    assert _lloyd_step_moves(vectors, labels) == 0

    import faiss

    unsettled = faiss.Kmeans(12, 25, niter=2, seed=0, spherical=True, verbose=False)
    unsettled.cp.min_points_per_centroid = 1
    unsettled.train(vectors, init_centroids=kmeans_plus_plus_seeds(vectors, 25, 0))
    _, assigned = unsettled.index.search(vectors, 1)
    assert _lloyd_step_moves(vectors, assigned[:, 0].astype(np.int64)) > 0


def test_warm_start_from_seeds_rebuilds_the_same_clusters_after_merging():
    """A fit's `seeds` (k-means before merging) warm-start a fit over the same rows to the
    same labels, merges included; the merged centroids (what a build's base clusters are)
    would start k-means at a smaller k and lose clusters the merge had kept apart."""
    vectors, _, _ = blobs(6, 100, dim=32, noise=0.1, seed=4)
    config = ClusterConfig(target_cluster_size=20, merge_unseparated=True, seed=0)
    first = build_clusterer(config)
    labels, merged = first.fit(vectors)
    assert first.seeds is not None and len(first.seeds) > len(merged)
    again = build_clusterer(config.model_copy(update={"seed": 9}))
    again.warm_start(first.seeds, len(vectors))
    assert np.array_equal(again.fit(vectors)[0], labels)
    from_merged = build_clusterer(config.model_copy(update={"seed": 9}))
    from_merged.warm_start(merged, len(vectors))
    assert not np.array_equal(from_merged.fit(vectors)[0], labels)


def test_hdbscan_has_no_seeds():
    assert build_clusterer(ClusterConfig(method="hdbscan")).seeds is None
