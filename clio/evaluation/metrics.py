"""Agreement between a clustering and gold labels.

ARI, NMI and V-measure come from scikit-learn (NMI with its default arithmetic
normalisation, which makes it equal to the V-measure with beta = 1; both are reported
because the harness's schema names both). Items left unclustered carry the label
`UNCLUSTERED` (-1): for ARI, NMI and V-measure they form one group (as BERTopic's topic
-1 does), and for reconstruction they count as wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, v_measure_score
from sklearn.metrics.cluster import contingency_matrix

UNCLUSTERED = -1


def encode_labels(labels: Sequence[Any]) -> np.ndarray:
    """Gold labels of any hashable type -> integers 0..m-1 (in order of first appearance)."""
    index: dict[Any, int] = {}
    return np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.int64)


def reconstruction(gold: Sequence[Any], predicted: np.ndarray) -> float:
    """Share of items whose cluster's majority gold label is their own gold label
    (cluster purity); unclustered items count as not reconstructed."""
    predicted = np.asarray(predicted, dtype=np.int64)
    if len(predicted) != len(gold):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predicted")
    if len(predicted) == 0:
        return 0.0
    clustered = predicted != UNCLUSTERED
    if not clustered.any():
        return 0.0
    table = contingency_matrix(encode_labels(gold)[clustered], predicted[clustered])
    return float(table.max(axis=0).sum() / len(predicted))


def score_clustering(gold: Sequence[Any], predicted: np.ndarray) -> dict[str, float | int]:
    """ARI, NMI, V-measure, reconstruction, number of clusters and the unclustered share."""
    predicted = np.asarray(predicted, dtype=np.int64)
    if len(predicted) != len(gold):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predicted")
    truth = encode_labels(gold)
    clustered = predicted != UNCLUSTERED
    n = len(predicted)
    return {
        "ari": float(adjusted_rand_score(truth, predicted)),
        "nmi": float(normalized_mutual_info_score(truth, predicted)),
        "v_measure": float(v_measure_score(truth, predicted)),
        "reconstruction": reconstruction(gold, predicted),
        "n_clusters": int(len(np.unique(predicted[clustered]))),
        "unclustered": float((~clustered).sum() / n) if n else 0.0,
    }
