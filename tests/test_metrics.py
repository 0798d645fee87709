import math

import numpy as np
import pytest

from clio.evaluation.metrics import encode_labels, reconstruction, score_clustering


def test_encode_labels_numbers_in_order_of_first_appearance():
    assert encode_labels(["b", "a", "b", "c"]).tolist() == [0, 1, 0, 2]
    assert encode_labels([]).tolist() == []


@pytest.mark.parametrize(
    ("gold", "predicted", "expected"),
    [
        # cluster 0 = {a, a, b} -> a (2 right); cluster 1 = {b, b} -> b (2 right)
        (["a", "a", "b", "b", "b"], [0, 0, 0, 1, 1], 4 / 5),
        # unclustered items count as wrong, and the rest are pure
        (["a", "a", "b", "b", "b"], [0, 0, -1, 1, 1], 4 / 5),
        # one cluster per item reconstructs everything
        (["a", "b", "c", "a"], [0, 1, 2, 3], 1.0),
        # one cluster for everything: only the majority label is right
        (["a", "b", "b", "c"], [7, 7, 7, 7], 2 / 4),
        (["a", "b"], [-1, -1], 0.0),
        ([], [], 0.0),
    ],
)
def test_reconstruction_hand_cases(gold, predicted, expected):
    assert reconstruction(gold, np.array(predicted, dtype=np.int64)) == pytest.approx(expected)


def test_ari_nmi_and_v_measure_on_a_hand_computed_case():
    # gold {0,0,1,1}, predicted {0,0,0,1}:
    # pairs together in both: C(2,2) = 1; gold rows C(2,2)+C(2,2) = 2; predicted C(3,2) = 3;
    # expected index 2*3/6 = 1, max index (2+3)/2 = 2.5 -> ARI (1-1)/(2.5-1) = 0.
    scores = score_clustering([0, 0, 1, 1], np.array([0, 0, 0, 1]))
    assert scores["ari"] == pytest.approx(0.0, abs=1e-12)
    h_gold = math.log(2)
    h_pred = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mutual = 0.5 * math.log(0.5 / (0.5 * 0.75)) + 0.25 * math.log(0.25 / (0.5 * 0.75))
    mutual += 0.25 * math.log(0.25 / (0.5 * 0.25))
    nmi = mutual / ((h_gold + h_pred) / 2)
    assert scores["nmi"] == pytest.approx(nmi, rel=1e-9)
    assert scores["v_measure"] == pytest.approx(nmi, rel=1e-9)  # V (beta 1) = arithmetic NMI
    assert scores["reconstruction"] == pytest.approx(3 / 4)
    assert scores["n_clusters"] == 2
    assert scores["unclustered"] == 0.0


@pytest.mark.parametrize(
    ("predicted", "ari", "nmi"),
    [
        ([5, 5, 9, 9], 1.0, 1.0),  # the same partition under other names
        ([0, 1, 0, 1], -0.5, 0.0),  # independent of the gold labels
    ],
)
def test_perfect_and_independent_partitions(predicted, ari, nmi):
    scores = score_clustering(["x", "x", "y", "y"], np.array(predicted))
    assert scores["ari"] == pytest.approx(ari)
    assert scores["nmi"] == pytest.approx(nmi, abs=1e-12)


def test_unclustered_items_are_one_group_for_ari_and_counted_apart():
    scores = score_clustering(["a", "a", "b", "b", "b"], np.array([0, 0, -1, 1, 1]))
    assert scores["n_clusters"] == 2
    assert scores["unclustered"] == pytest.approx(1 / 5)
    assert scores["reconstruction"] == pytest.approx(4 / 5)
    # -1 as a third group: the same partition as [0, 0, 2, 1, 1]
    same = score_clustering(["a", "a", "b", "b", "b"], np.array([0, 0, 2, 1, 1]))
    assert scores["ari"] == pytest.approx(same["ari"])
    assert scores["nmi"] == pytest.approx(same["nmi"])


def test_lengths_must_match():
    with pytest.raises(ValueError, match="2 gold labels but 3 predicted"):
        score_clustering(["a", "b"], np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="2 gold labels but 1 predicted"):
        reconstruction(["a", "b"], np.array([0]))
