"""Regression floors for the quality figures docs/PII.md and docs/QUALITY.md report.

Each floor is the figure measured on the committed code minus NOISE, so a change that
lowers a figure by more than that fails here. The evaluations run in-process, as the
`clio eval pii` and `clio eval clusters` commands run them (default config, no cache),
sharing one scrubber and one embedder across the datasets.

PII types: every in-scope type of the Presidio synthetic set's unseen half with at least
MIN_SUPPORT gold spans has a recall floor, and with at least MIN_SUPPORT predictions a
precision floor. Below that one span moves the figure by more than 0.1, so it tells
nothing about quality; those types (IP_ADDRESS 8, US_SSN 7, US_DRIVER_LICENSE 2 spans;
ZIP_CODE's 9 predictions) still count in the overall in-scope floors. Out-of-scope types
(DATE_TIME, TITLE, ...) are left in place by design and have no floor.

The scoring and the clustering are deterministic: repeated runs, also with one thread,
gave the same figures to the fourth decimal, so NOISE only absorbs rounding and small
numerical differences between machines. To re-measure after an intended change, run the
commands in the comments and set each floor to the new figure minus NOISE.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest

NOISE = 0.005
MIN_SUPPORT = 10

# (dataset, split, type or method, metric) -> floor; the comment gives the figure measured.
FLOORS: dict[tuple[str, str, str, str], float] = {
    # presidio_synth, second half (750 texts, not tuned on), default scrub config:
    # clio eval pii --dataset presidio_synth --split second_half --json
    ("presidio_synth", "second_half", "PERSON", "precision"): 0.8342,  # 0.8392 (454 predicted)
    ("presidio_synth", "second_half", "PERSON", "recall"): 0.8964,  # 0.9014 (426 gold)
    ("presidio_synth", "second_half", "STREET_ADDRESS", "precision"): 0.9769,  # 0.9819 (166)
    ("presidio_synth", "second_half", "STREET_ADDRESS", "recall"): 0.8557,  # 0.8607 (323)
    ("presidio_synth", "second_half", "GPE", "precision"): 0.8347,  # 0.8397 (156)
    ("presidio_synth", "second_half", "GPE", "recall"): 0.8515,  # 0.8565 (216)
    ("presidio_synth", "second_half", "CREDIT_CARD", "precision"): 0.995,  # 1.0000 (64)
    ("presidio_synth", "second_half", "CREDIT_CARD", "recall"): 0.9796,  # 0.9846 (65)
    ("presidio_synth", "second_half", "PHONE_NUMBER", "precision"): 0.9717,  # 0.9767 (43)
    ("presidio_synth", "second_half", "PHONE_NUMBER", "recall"): 0.9717,  # 0.9767 (43)
    ("presidio_synth", "second_half", "EMAIL_ADDRESS", "precision"): 0.995,  # 1.0000 (24)
    ("presidio_synth", "second_half", "EMAIL_ADDRESS", "recall"): 0.995,  # 1.0000 (24)
    ("presidio_synth", "second_half", "DOMAIN_NAME", "precision"): 0.995,  # 1.0000 (16)
    ("presidio_synth", "second_half", "DOMAIN_NAME", "recall"): 0.9362,  # 0.9412 (17)
    ("presidio_synth", "second_half", "ZIP_CODE", "recall"): 0.5575,  # 0.5625 (16)
    ("presidio_synth", "second_half", "IBAN_CODE", "precision"): 0.995,  # 1.0000 (10)
    ("presidio_synth", "second_half", "IBAN_CODE", "recall"): 0.995,  # 1.0000 (10)
    ("presidio_synth", "second_half", "overall", "precision"): 0.8886,  # 0.8936 (in scope)
    ("presidio_synth", "second_half", "overall", "recall"): 0.8844,  # 0.8894 (1,157 gold)
    # wnut17 test (1,287 texts), default scrub config:
    # clio eval pii --dataset wnut17 --split test --json
    ("wnut17", "test", "person", "recall"): 0.7199,  # 0.7249 (429 gold)
    # clinc150 test without oos (4,500 texts, 150 intents), default config (k-means, seed 0),
    # all-MiniLM-L6-v2: clio eval clusters --dataset clinc150 --methods clio --json
    ("clinc150", "test", "clio", "ari"): 0.6752,  # 0.6802 (148 clusters)
    ("clinc150", "test", "clio", "nmi"): 0.8894,  # 0.8944
    # banking77 test (3,080 texts, 77 intents), same config and model:
    # clio eval clusters --dataset banking77 --methods clio --json
    ("banking77", "test", "clio", "ari"): 0.5117,  # 0.5167 (99 clusters)
    ("banking77", "test", "clio", "nmi"): 0.7957,  # 0.8007
}

PII_DATASETS = {"presidio_synth", "wnut17"}


class Measure:
    """The reports behind the floors, each computed once per test module."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    @cache  # noqa: B019 (one instance per module)
    def _scrubber(self, language: str) -> Any:
        from clio.config import load_config
        from clio.scrub import build_scrubber

        config = load_config(None).scrub.model_copy(update={"language": language})
        return build_scrubber(config)

    @cache  # noqa: B019
    def pii(self, dataset: str, split: str) -> Any:
        """The `PiiReport` of `clio eval pii --dataset DATASET --split SPLIT`."""
        from clio.evaluation import pii
        from clio.evaluation.pii_datasets import load_dataset

        named_split = split if dataset in ("wnut17", "echr_fr", "echr_es") else "test"
        loaded = pii._select_split(load_dataset(dataset, self.data_dir, split=named_split), split)
        return pii.evaluate(loaded, self._scrubber(loaded.language), progress=False)

    @cache  # noqa: B019
    def _embedder(self) -> Any:
        from clio.embed import SentenceTransformerEmbedder

        config = self._cluster_config()
        return SentenceTransformerEmbedder(config.embed.model, config.embed.batch_size)

    def _cluster_config(self) -> Any:
        from clio.config import load_config
        from clio.evaluation.clusters import eval_config

        return eval_config(load_config(None), None)

    @cache  # noqa: B019
    def clusters(self, dataset: str) -> dict[str, Any]:
        """The report of `clio eval clusters --dataset DATASET --methods clio`."""
        from clio.evaluation import clusters
        from clio.evaluation.cluster_datasets import load_dataset

        loaded = load_dataset(dataset, self.data_dir)
        vectors = clusters.embed_cached(loaded.texts, self._embedder(), None)
        return clusters.evaluate(
            loaded, vectors, self._cluster_config(), methods=["clio"], with_hierarchy=False
        )

    def figure(self, dataset: str, split: str, name: str, metric: str) -> float:
        if dataset in PII_DATASETS:
            result = self.pii(dataset, split).to_json()
            scores = result["overall"] if name == "overall" else result["per_entity"][name]
            return scores[metric]
        return self.clusters(dataset)["methods"][name][metric]


@pytest.fixture(scope="module")
def measure(shared_data) -> Measure:
    return Measure(shared_data)


@pytest.mark.parametrize(
    ("key", "floor"), list(FLOORS.items()), ids=["-".join(key) for key in FLOORS]
)
def test_figure_is_not_below_its_floor(measure, key, floor):
    figure = measure.figure(*key)
    assert figure >= floor, f"{' '.join(key)}: {figure:.4f} is below its floor {floor:.4f}"


def test_every_well_supported_presidio_type_has_its_floors(measure):
    """The table follows the MIN_SUPPORT rule on the figures measured now."""
    report = measure.pii("presidio_synth", "second_half")
    expected = set()
    for name, counts in report.per_entity.items():
        if name not in report.in_scope:
            continue
        if counts.gold >= MIN_SUPPORT:
            expected.add(("presidio_synth", "second_half", name, "recall"))
        if counts.predictions >= MIN_SUPPORT:
            expected.add(("presidio_synth", "second_half", name, "precision"))
    listed = {key for key in FLOORS if key[:2] == ("presidio_synth", "second_half")}
    assert listed - {k for k in listed if k[2] == "overall"} == expected
