import argparse
import json
import sys

import numpy as np
import pytest

from clio.cli import main as clio_main
from clio.config import ClusterConfig, RunConfig
from clio.evaluation import clusters as harness
from clio.evaluation.cluster_datasets import NAMES, LabelledTexts, load_dataset
from clio.evaluation.clusters import eval_config, evaluate, tree_level_labels
from clio.records import Cluster

N_GROUPS, TOPICS_PER_GROUP, PER_TOPIC, DIM = 2, 4, 25, 32


def _fixture(seed: int = 0) -> tuple[LabelledTexts, np.ndarray]:
    """8 tight topics in 2 well separated groups: the right answer is obvious at both levels."""
    rng = np.random.default_rng(seed)
    group_centres = 3.0 * rng.normal(size=(N_GROUPS, DIM))
    topic_centres = np.repeat(group_centres, TOPICS_PER_GROUP, axis=0)
    topic_centres += rng.normal(size=topic_centres.shape)
    topics = np.repeat(np.arange(N_GROUPS * TOPICS_PER_GROUP), PER_TOPIC)
    vectors = topic_centres[topics] + 0.05 * rng.normal(size=(len(topics), DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    words = [f"w{chr(ord('a') + t)}{chr(ord('a') + t)}" for t in range(N_GROUPS * TOPICS_PER_GROUP)]
    texts = [f"question about {words[t]} number {i}" for i, t in enumerate(topics)]
    dataset = LabelledTexts(
        "fixture",
        texts,
        [f"topic-{t}" for t in topics],
        [f"group-{t // TOPICS_PER_GROUP}" for t in topics],
    )
    return dataset, vectors


def _config() -> RunConfig:
    base = RunConfig(cluster=ClusterConfig(method="kmeans", target_cluster_size=PER_TOPIC, seed=3))
    return eval_config(base, seed=None)


def _without_seconds(report):
    report = json.loads(json.dumps(report))
    for scores in report["methods"].values():
        scores.pop("seconds", None)
    report.get("hierarchy", {}).pop("seconds", None)
    return report


@pytest.fixture(scope="module")
def fixture_report():
    dataset, vectors = _fixture()
    return evaluate(dataset, vectors, _config(), methods=["clio", "kmeans"])


def test_the_obvious_answer_scores_perfectly(fixture_report):
    n_topics = N_GROUPS * TOPICS_PER_GROUP
    scores = fixture_report["methods"]["clio"]
    assert scores["ari"] == 1.0
    assert scores["nmi"] == 1.0
    assert scores["v_measure"] == 1.0
    assert scores["reconstruction"] == 1.0
    assert scores["n_clusters"] == n_topics
    assert scores["k_from_n"] == n_topics  # 200 items / 25; no topic merged away
    assert f"(k from n {n_topics})" in harness.format_table(fixture_report)
    assert scores["unclustered"] == 0.0
    assert scores["seconds"] >= 0.0
    # plain k-means (random seeds) is given the true k but merges neighbouring topics here
    assert fixture_report["methods"]["kmeans"]["n_clusters"] == n_topics
    assert fixture_report["methods"]["kmeans"]["ari"] < 1.0
    assert fixture_report["dataset"] == "fixture"
    assert fixture_report["n"] == n_topics * PER_TOPIC
    assert fixture_report["n_labels"] == n_topics


def test_the_hierarchy_level_nearest_the_coarse_labels_is_scored(fixture_report):
    hierarchy = fixture_report["hierarchy"]
    assert hierarchy["n_nodes"] == N_GROUPS
    assert hierarchy["level_sizes"][0] == N_GROUPS * TOPICS_PER_GROUP
    assert hierarchy["level_sizes"][hierarchy["level"]] == N_GROUPS
    assert hierarchy["nmi"] == 1.0
    assert hierarchy["reconstruction"] == 1.0
    assert hierarchy["ward"] == {"nmi": 1.0, "ari": 1.0, "reconstruction": 1.0, "k": N_GROUPS}
    assert hierarchy["base_ceiling"]["nmi"] == 1.0
    assert set(hierarchy["kmeans"]) == {"nmi", "ari", "reconstruction", "k"}
    assert hierarchy["named_with"] == "keywords"


def test_few_broad_labels_without_a_coarse_level_are_scored_at_the_nearest_level(monkeypatch):
    """SIB-200's case: its 7 topics are the only labels; the fixture's 2 groups stand in."""
    dataset, vectors = _fixture()
    broad = LabelledTexts("broad", dataset.texts, list(dataset.coarse_labels))
    report = evaluate(broad, vectors, _config(), methods=["clio"])
    assert report["hierarchy"]["n_coarse_labels"] == N_GROUPS
    assert report["hierarchy"]["nmi"] == 1.0
    # control: over the limit of labels, no hierarchy level is scored
    monkeypatch.setattr(harness, "COARSE_LABELS_AT_MOST", N_GROUPS - 1)
    assert "hierarchy" not in evaluate(broad, vectors, _config(), methods=["clio"])


def test_shuffled_labels_score_near_zero():
    dataset, vectors = _fixture()
    rng = np.random.default_rng(11)
    order = rng.permutation(len(dataset.labels))
    shuffled = LabelledTexts(
        "shuffled",
        dataset.texts,
        [dataset.labels[i] for i in order],
        [dataset.coarse_labels[i] for i in order],
    )
    report = evaluate(shuffled, vectors, _config(), methods=["clio", "kmeans"])
    for method in ("clio", "kmeans"):
        scores = report["methods"][method]
        assert abs(scores["ari"]) < 0.03
        # NMI is not adjusted for chance: 8 x 8 labels over 200 items give about 0.07
        assert scores["nmi"] < 0.1
        assert scores["reconstruction"] < 0.25  # chance is 1/8 per cluster plus noise
    assert report["hierarchy"]["nmi"] < 0.05


def test_the_same_seed_gives_the_same_report(fixture_report):
    dataset, vectors = _fixture()
    again = evaluate(dataset, vectors, _config(), methods=["clio", "kmeans"])
    assert _without_seconds(again) == _without_seconds(fixture_report)


def test_bertopic_is_reported_as_skipped_when_it_is_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "bertopic", None)  # makes `import bertopic` fail
    dataset, vectors = _fixture()
    report = evaluate(dataset, vectors, _config(), methods=["bertopic"], with_hierarchy=False)
    assert report["methods"] == {
        "bertopic": {"skipped": "bertopic is not installed (pip install 'clio[bench]')"}
    }
    assert "hierarchy" not in report
    assert "bertopic" in harness.format_table(report)


def test_clio_variants_force_their_cluster_method(monkeypatch):
    seen = []

    def fake_cluster_vectors(vectors, config):
        seen.append(config.method)
        return np.zeros(len(vectors), dtype=np.int64), np.zeros((1, vectors.shape[1]))

    monkeypatch.setattr(harness, "cluster_vectors", fake_cluster_vectors)
    dataset, vectors = _fixture()
    report = evaluate(
        dataset, vectors, _config(), methods=["clio", "clio_hdbscan"], with_hierarchy=False
    )
    assert seen == ["kmeans", "hdbscan"]
    assert report["methods"]["clio_hdbscan"]["n_clusters"] == 1
    assert report["methods"]["clio"]["k_from_n"] == N_GROUPS * TOPICS_PER_GROUP
    assert "k_from_n" not in report["methods"]["clio_hdbscan"]  # HDBSCAN has no ceiling


def test_unknown_methods_and_mismatched_vectors_are_refused():
    dataset, vectors = _fixture()
    with pytest.raises(ValueError, match="unknown methods"):
        evaluate(dataset, vectors, _config(), methods=["clio", "lda"])
    with pytest.raises(ValueError, match="texts but"):
        evaluate(dataset, vectors[:-1], _config(), methods=["kmeans"])


def _node(level, index, parent=None, items=None):
    return Cluster(
        facet="f",
        level=level,
        cluster_id=f"f-L{level}-{index:03d}",
        parent_id=parent,
        member_ids=[],
        name="",
        description="",
        keywords=[],
        extra={"item_indices": items} if items is not None else {},
    )


def test_tree_level_labels_follow_parents_up_the_tree():
    tree = [
        _node(0, 0, "f-L1-001", [0, 3]),
        _node(0, 1, "f-L1-000", [1]),
        _node(0, 2, "f-L1-000", [2, 4]),
        _node(1, 0, "f-L2-000"),
        _node(1, 1, "f-L2-000"),
        _node(2, 0),
    ]
    levels = tree_level_labels(tree, 5)
    assert levels[0].tolist() == [0, 1, 2, 0, 2]
    assert levels[1].tolist() == [1, 0, 0, 1, 0]
    assert levels[2].tolist() == [0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="do not cover"):
        tree_level_labels(tree, 6)


def test_embeddings_are_cached_by_model_and_texts(tmp_path):
    class CountingEmbedder:
        identifier = "counting"
        calls = 0

        def encode(self, texts):
            CountingEmbedder.calls += 1
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    first = harness.embed_cached(["ab", "abc"], CountingEmbedder(), tmp_path)
    again = harness.embed_cached(["ab", "abc"], CountingEmbedder(), tmp_path)
    other = harness.embed_cached(["ab", "abcd"], CountingEmbedder(), tmp_path)
    np.testing.assert_array_equal(first, again)
    assert CountingEmbedder.calls == 2  # the second call was read from the cache
    assert other.shape == (2, 2) and len(list(tmp_path.glob("*.npy"))) == 2


@pytest.mark.parametrize(
    ("name", "n", "n_labels", "n_coarse"),
    [
        ("clinc150", 4500, 150, 10),
        ("banking77", 3080, 77, None),
        ("arena_hard", 500, 250, None),
        ("sib200", 1004, 7, None),
        ("mt_bench", 80, 8, None),
    ],
)
def test_dataset_loaders(shared_data, name, n, n_labels, n_coarse):
    dataset = load_dataset(name, shared_data)
    assert len(dataset.texts) == n
    assert len(set(dataset.labels)) == n_labels
    assert all(text.strip() for text in dataset.texts)
    if n_coarse is None:
        assert dataset.coarse_labels is None
    else:
        assert len(set(dataset.coarse_labels)) == n_coarse
    assert set(NAMES) >= {name}


def test_unknown_dataset_is_a_clear_error(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    harness.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset", "nope"])
    args = parser.parse_args(["--dataset", "mt_bench", "--data-dir", str(tmp_path)])
    assert harness.run(args) == 2
    assert "dataset file not found" in capsys.readouterr().err


class HashEmbedder:
    """Stands in for the sentence-transformers model: a fixed pseudo-random unit vector
    per text (the real model takes longer to load than the rest of the test)."""

    identifier = "hash"

    def __init__(self, *args, **kwargs):
        pass

    def encode(self, texts):
        rows = [
            np.random.default_rng(len(t) * 7919 + sum(map(ord, t))).normal(size=8) for t in texts
        ]
        return np.array(rows, dtype=np.float32)


def test_run_prints_one_json_object_with_hierarchy(shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(harness, "build_embedder", HashEmbedder)
    parser = argparse.ArgumentParser()  # `clio eval clusters` without loading the CLI
    harness.add_arguments(parser)
    args = ["--dataset", "clinc150", "--json", "--limit", "300"]
    args += ["--methods", "clio,kmeans", "--seed", "5", "--cluster-method", "kmeans"]
    args += ["--data-dir", str(shared_data), "--cache-dir", str(tmp_path)]
    assert harness.run(parser.parse_args(args)) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["dataset"], report["n"], report["seed"]) == ("clinc150", 300, 5)
    assert report["embedding_model"] == "hash"
    assert set(report["methods"]) == {"clio", "kmeans"}
    assert report["methods"]["kmeans"]["n_clusters"] == report["n_labels"]
    hierarchy = report["hierarchy"]
    assert {"level", "n_nodes", "nmi", "reconstruction", "kmeans", "ward"} <= set(hierarchy)
    assert (
        set(hierarchy["kmeans"]) == set(hierarchy["ward"]) == {"nmi", "ari", "reconstruction", "k"}
    )


@pytest.mark.slow
def test_cli_prints_one_json_object(shared_data, tmp_path, capsys):
    code = clio_main(
        [
            "eval",
            "clusters",
            "--dataset",
            "mt_bench",
            "--json",
            "--methods",
            "clio,kmeans",
            "--data-dir",
            str(shared_data),
            "--cache-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "mt_bench" and report["n"] == 80
    assert set(report["methods"]) == {"clio", "kmeans"}
    schema = {"ari", "nmi", "v_measure", "reconstruction", "n_clusters", "unclustered", "seconds"}
    assert set(report["methods"]["kmeans"]) == schema
    assert set(report["methods"]["clio"]) == schema | {"k_from_n"}
    assert report["methods"]["clio"]["k_from_n"] == 3  # round(80 / 30)
    assert report["methods"]["clio"]["n_clusters"] <= 3
    assert report["methods"]["kmeans"]["n_clusters"] == 8
    # its 8 categories are few and broad: scored at the level nearest them, if there is one
    hierarchy = report["hierarchy"]
    assert "skipped" in hierarchy or hierarchy["n_coarse_labels"] == 8


@pytest.mark.slow
def test_bertopic_runs_on_precomputed_vectors_with_a_fixed_seed():
    pytest.importorskip("bertopic")
    dataset, vectors = _fixture()
    first = harness.bertopic_labels(dataset.texts, vectors, seed=0)
    second = harness.bertopic_labels(dataset.texts, vectors, seed=0)
    np.testing.assert_array_equal(first, second)
    assert len(first) == len(dataset.texts)
    report = evaluate(dataset, vectors, _config(), methods=["bertopic"], with_hierarchy=False)
    assert report["methods"]["bertopic"]["nmi"] > 0.9


def test_the_base_ceiling_gives_each_base_cluster_its_majority_coarse_label():
    # base cluster 1 straddles two topics: 3 items of "b", 1 of "a"
    coarse = ["a", "a", "b", "b", "b", "a", "c", "c"]
    base = np.array([0, 0, 1, 1, 1, 1, 2, 2])
    ceiling = harness.best_grouping_labels(coarse, base)
    assert ceiling.tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
    scores = harness.score_clustering(coarse, ceiling)
    assert scores["ari"] < 1.0  # no grouping of these base clusters recovers item 5's topic
    # control: base clusters that each hold one topic reach 1.0
    pure = harness.best_grouping_labels(coarse, np.array([0, 0, 1, 1, 1, 3, 2, 2]))
    assert harness.score_clustering(coarse, pure)["ari"] == 1.0
