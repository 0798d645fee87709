"""2-D map positions of clusters (from their centroids) for the web page's map."""

from __future__ import annotations

import warnings

import numpy as np

UMAP_NEIGHBOURS = 15


def map_positions(centroids: np.ndarray, seed: int) -> np.ndarray:
    """(k, 2) positions scaled into [-1, 1]: UMAP (cosine) when k > UMAP_NEIGHBOURS,
    else PCA, which is exact and stable for a handful of points. Deterministic for a seed."""
    centroids = np.asarray(centroids, dtype=np.float32)
    k = centroids.shape[0]
    if k <= 1:
        return np.zeros((k, 2), dtype=np.float64)
    if k > UMAP_NEIGHBOURS:
        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" and the like
            positions = umap.UMAP(
                n_neighbors=UMAP_NEIGHBOURS,
                n_components=2,
                metric="cosine",
                random_state=seed,
            ).fit_transform(centroids)
    else:
        from sklearn.decomposition import PCA

        n_components = min(2, centroids.shape[1])
        positions = PCA(n_components=n_components, random_state=seed).fit_transform(centroids)
        if n_components < 2:
            positions = np.pad(positions, ((0, 0), (0, 2 - n_components)))
    return _scale(np.asarray(positions, dtype=np.float64))


def _scale(positions: np.ndarray) -> np.ndarray:
    """Centre on the origin and scale the largest coordinate to 1 (keeps the aspect ratio)."""
    positions = positions - positions.mean(axis=0)
    extent = float(np.abs(positions).max())
    if not np.isfinite(extent) or extent == 0.0:
        return np.zeros_like(positions)
    return positions / extent
