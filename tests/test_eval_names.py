"""`clio eval names` on a small fixture: every method names the same clusters and is
scored; the extractive names are phrases of the members that pass the support rule."""

import numpy as np

from clio.config import ClusterConfig, RunConfig
from clio.evaluation.cluster_datasets import LabelledTexts
from clio.evaluation.names import METHODS, evaluate_names

TOPICS = {
    "book_flight": ["please book a flight to rome", "i need to book a flight"],
    "pasta_recipe": ["good pasta recipe please", "what is a good recipe for pasta"],
    "guitar_chords": ["teach me guitar chords", "which guitar chords are easy"],
}
PER_TOPIC = 10


def _fixture() -> tuple[LabelledTexts, np.ndarray, RunConfig]:
    texts, labels = [], []
    for label, variants in TOPICS.items():
        for i in range(PER_TOPIC):
            texts.append(variants[i % 2])
            labels.append(label)
    topic = np.repeat(np.arange(len(TOPICS)), PER_TOPIC)
    vectors = np.eye(8, dtype=np.float32)[topic]
    config = RunConfig(cluster=ClusterConfig(method="kmeans", target_cluster_size=PER_TOPIC))
    return LabelledTexts("fixture", texts, labels), vectors, config


def _embed(texts):
    """Bag of the fixture's topic words: a name embeds near the label it shares words with."""
    vocab = ["book", "flight", "pasta", "recipe", "guitar", "chords"]
    rows = np.array([[float(w in t.lower()) for w in vocab] + [0.01, 0.0] for t in texts])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_every_method_is_scored_and_extractive_names_find_their_labels():
    dataset, vectors, config = _fixture()
    report = evaluate_names(dataset, vectors, config, _embed, min_users=3)
    assert set(report["methods"]) == set(METHODS)
    assert report["n_clusters"] == 3
    assert report["methods"]["extractive"] == {
        "top1": 1.0,
        "retrieval_at_1": 0.0,
        "placeholder": 0.0,
    }  # fmt: skip (the fixture's centroids are not in the names' space: retrieval is 0)
    names = {e["label"]: e["extractive"].lower() for e in report["examples"]}
    assert names["book_flight"].startswith("book flight")


def test_a_word_without_support_makes_a_placeholder():
    dataset, vectors, config = _fixture()
    report = evaluate_names(dataset, vectors, config, _embed, min_users=PER_TOPIC + 1)
    assert all(s["placeholder"] == 1.0 for s in report["methods"].values())
