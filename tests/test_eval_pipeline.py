"""`clio eval pipeline`: labelled conversations through a real `clio run` subprocess,
scored on the released tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clio.evaluation.cluster_datasets import LabelledTexts
from clio.evaluation.pipeline import conversation_rows, run_config, sample_items

ROOT = Path(__file__).resolve().parents[1]


def _dataset() -> LabelledTexts:
    texts = [f"text {i}" for i in range(30)]
    labels = ["a"] * 12 + ["b"] * 10 + ["c"] * 8
    return LabelledTexts("toy", texts, labels)


def test_the_draw_takes_per_label_texts_of_labels_that_have_them_and_is_seeded():
    dataset = _dataset()
    items = sample_items(dataset, n_labels=2, per_label=9, seed=1)
    assert len(items) == 18
    assert {dataset.labels[i] for i in items} == {"a", "b"}  # "c" has only 8
    assert items == sample_items(dataset, n_labels=2, per_label=9, seed=1)
    rows = conversation_rows(dataset, items)
    assert len({r["user_id"] for r in rows}) == 18  # each conversation its own user
    assert rows[0]["messages"][0] == {"role": "user", "content": dataset.texts[items[0]]}


def test_the_measured_facet_replaces_the_configured_ones():
    config = run_config({"facets": [{"name": "task"}], "privacy": {"min_users": 3}}, "user_text")
    assert config["privacy"] == {"min_users": 3}
    assert [f["extractor"] for f in config["facets"]] == ["user_text"]
    asked = run_config({}, "llm")["facets"][0]
    assert asked["extractor"] == "llm" and asked["question"]


@pytest.mark.slow
def test_a_real_run_is_scored_on_its_released_tree(tmp_path):
    command = [
        sys.executable, "-m", "clio.cli", "eval", "pipeline", "--dataset", "clinc150",
        "--split", "dev", "--labels", "4", "--per-label", "10", "--extractors", "user_text",
        "--work-dir", str(tmp_path), "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout)["runs"]["user_text"]
    assert run["n_clustered"] == 40 and run["n_released_base"] >= 1
    assert 0 < run["coverage"] <= 1
    assert 0 <= run["clio"]["nmi"] <= 1 and 0 <= run["kmeans_user_text"]["nmi"] <= 1
    assert set(run["names"]) == {"clio", "bertopic"}
    assert all(e["clio"] for e in run["examples"])  # released names, none empty
