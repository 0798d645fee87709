"""The PII evaluation harness: span matching, dataset loaders, the `clio eval pii` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from clio.evaluation import pii
from clio.evaluation.pii_datasets import (
    ECHR_COMPATIBLE,
    PRESIDIO_SYNTH_COMPATIBLE,
    WNUT17_COMPATIBLE,
    Example,
    GoldSpan,
    PiiDataset,
    detokenize,
    load_dataset,
    read_conll,
)
from clio.scrub import Span

COMPATIBLE = {"PER": ("PERSON",), "ADDR": ("STREET_ADDRESS", "LOCATION"), "CITY": ("LOCATION",)}


def counts(gold, predicted, compatible=COMPATIBLE):
    result = pii.count_spans(gold, predicted, compatible)
    return {
        entity: (c.found_gold, c.gold, c.correct_predictions, c.predictions)
        for entity, c in result.items()
        if c.gold or c.predictions
    }


@pytest.mark.parametrize(
    ("gold", "predicted", "expected"),
    [
        # exact match
        ([("PER", 0, 10)], [("PERSON", 0, 10)], {"PER": (1, 1, 1, 1)}),
        # half of the gold span is enough, less is not
        ([("PER", 0, 10)], [("PERSON", 5, 12)], {"PER": (1, 1, 1, 1)}),
        ([("PER", 0, 10)], [("PERSON", 6, 12)], {"PER": (0, 1, 0, 1)}),
        # incompatible type: the gold is missed, the prediction charged to its own type
        ([("PER", 0, 10)], [("LOCATION", 0, 10)], {"PER": (0, 1, 0, 0), "CITY": (0, 0, 0, 1)}),
        # a secondary compatible type finds the gold
        ([("ADDR", 0, 20)], [("LOCATION", 0, 15)], {"ADDR": (1, 1, 1, 1)}),
        # a miss of a secondary type is charged to the type it is primary for
        ([], [("STREET_ADDRESS", 0, 5)], {"ADDR": (0, 0, 0, 1)}),
        # predictions of types the dataset does not know are ignored
        ([("PER", 0, 4)], [("API_KEY", 0, 4)], {"PER": (0, 1, 0, 0)}),
        # gold types the mapping does not list are ignored
        ([("MISC", 0, 4)], [], {}),
        # two predictions on one gold: found once, both correct
        ([("PER", 0, 10)], [("PERSON", 0, 6), ("PERSON", 4, 10)], {"PER": (1, 1, 2, 2)}),
    ],
)
def test_count_spans(gold, predicted, expected):
    assert counts(gold, predicted) == expected


def test_gold_spans_kept_by_policy_are_out_of_scope():
    compatible = {"PER": ("PERSON",), "CITY": ("LOCATION",)}
    gold = [("CITY", 0, 5), ("CITY", 10, 16), ("PER", 20, 24)]
    kept = [("CITY", 0, 5)]
    # the kept city is neither a miss nor gold; a detection of it counts neither way
    result = pii.count_spans(gold, [("LOCATION", 0, 5), ("PERSON", 20, 24)], compatible, kept)
    assert (result["CITY"].gold, result["CITY"].found_gold) == (1, 0)
    assert (result["CITY"].predictions, result["CITY"].out_of_scope_by_policy) == (0, 1)
    assert (result["PER"].found_gold, result["PER"].predictions) == (1, 1)
    # without the policy the same detections score as before
    plain = pii.count_spans(gold, [("LOCATION", 0, 5)], compatible)
    assert (plain["CITY"].gold, plain["CITY"].found_gold, plain["CITY"].predictions) == (2, 1, 1)
    # a detection that is wrong stays wrong, whatever was kept
    wrong = pii.count_spans(gold, [("LOCATION", 30, 34)], compatible, kept)
    assert (wrong["CITY"].predictions, wrong["CITY"].correct_predictions) == (1, 0)


def test_scores_and_f2():
    c = pii.Counts(found_gold=8, gold=10, correct_predictions=8, predictions=16)
    scores = c.scores()
    assert (scores["precision"], scores["recall"], scores["support"]) == (0.5, 0.8, 10)
    assert scores["f2"] == round(5 * 0.5 * 0.8 / (4 * 0.5 + 0.8), 4)
    assert pii.Counts().scores() == {
        "precision": 0.0,
        "recall": 0.0,
        "f2": 0.0,
        "support": 0,
        "out_of_scope_by_policy": 0,
    }


def test_miss_owners_prefers_primary_types():
    owners = pii.miss_owners(PRESIDIO_SYNTH_COMPATIBLE)
    assert owners["LOCATION"] == "GPE"
    assert owners["STREET_ADDRESS"] == "STREET_ADDRESS"
    assert owners["POSTCODE"] == "ZIP_CODE"


@pytest.mark.parametrize(
    ("tokens", "text"),
    [
        (["l", "'", "origine", "(", "no", "74025", "/", "01", ")"], "l'origine (no 74025/01)"),
        (["RT", "@", "jane", "_", "doe", ":", "hi", "!"], "RT @jane_doe: hi!"),
        (["Hello", ",", "world", "."], "Hello, world."),
        ([], ""),
    ],
)
def test_detokenize(tokens, text):
    joined, offsets = detokenize(tokens)
    assert joined == text
    assert [joined[start:end] for start, end in offsets] == tokens


def test_read_conll_builds_spans(tmp_path):
    path = tmp_path / "x.conll"
    path.write_text(
        "Marie B-PER\nCurie I-PER\nvit O\nà O\nParis B-LOC\n\nBob B-PER\nI-PER I-LOC\nx O\n \n",
        encoding="utf-8",
    )
    first, second = list(read_conll(path, " "))
    assert first.text == "Marie Curie vit à Paris"
    assert [(s.entity_type, first.text[s.start : s.end]) for s in first.spans] == [
        ("PER", "Marie Curie"),
        ("LOC", "Paris"),
    ]
    # an I- tag of another type starts a new span
    assert [(s.entity_type, second.text[s.start : s.end]) for s in second.spans] == [
        ("PER", "Bob"),
        ("LOC", "I-PER"),
    ]


def test_unknown_dataset_and_split_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("nope", tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_dataset("wnut17", tmp_path, split="validation")
    with pytest.raises(FileNotFoundError):
        load_dataset("echr_fr", tmp_path)


# --- real datasets -----------------------------------------------------------------------------


def test_presidio_synth_loads_with_its_published_counts(shared_data):
    dataset = load_dataset("presidio_synth", shared_data)
    assert len(dataset.examples) == 1500
    spans = [s for e in dataset.examples for s in e.spans]
    by_type = {t: sum(s.entity_type == t for s in spans) for t in PRESIDIO_SYNTH_COMPATIBLE}
    assert (by_type["PERSON"], by_type["IBAN_CODE"], by_type["US_SSN"]) == (857, 21, 16)
    assert set(by_type) == {s.entity_type for s in spans}
    example = dataset.examples[0]
    assert all(0 <= s.start < s.end <= len(example.text) for s in example.spans)


def test_wnut17_and_echr_load(shared_data):
    wnut = load_dataset("wnut17", shared_data)
    assert len(wnut.examples) == 1287
    persons = [s for e in wnut.examples for s in e.spans if s.entity_type == "person"]
    assert len(persons) == 429
    assert wnut.compatible is WNUT17_COMPATIBLE
    for name, language in (("echr_fr", "fr"), ("echr_es", "es")):
        echr = load_dataset(name, shared_data, split="train")
        assert echr.language == language
        assert echr.compatible is ECHR_COMPATIBLE
        types = {s.entity_type for e in echr.examples for s in e.spans}
        assert {"PER", "LOC", "ORG", "CODE", "DATETIME"} <= types


class FirstMentionScrubber:
    """Finds only the first mention of "Adamska" (as a full name), like an analyzer that
    needs the given name beside the surname."""

    identifier = "first-mention"
    entities = ["PERSON"]

    def keeps(self, entity_type, value):
        return False

    def analyze(self, texts):
        return [
            [Span("PERSON", t.index("Wacława"), t.index("Adamska") + 7, 0.9)] if "Wacława" in t
            else []
            for t in texts
        ]  # fmt: skip


def test_evaluate_scores_what_is_replaced():
    text = "directed by Wacława Adamska and starring Adamska"
    second = text.rindex("Adamska")
    example = Example(
        text, (GoldSpan("PER", 12, 27), GoldSpan("PER", second, second + 7))
    )  # fmt: skip
    dataset = PiiDataset("tiny", "en", [example], {"PER": ("PERSON",)})
    result = pii.evaluate(dataset, FirstMentionScrubber(), progress=False).to_json()
    # the surname alone is replaced too (values recur within a conversation)
    assert result["per_entity"]["PER"]["recall"] == 1.0
    assert result["per_entity"]["PER"]["precision"] == 1.0


class PlaceKeepingScrubber:
    """Detects "Spain" and "Bjert" as places and, like the keep policy, leaves "Spain" in
    place."""

    identifier = "place-keeping"
    entities = ["LOCATION"]

    def keeps(self, entity_type, value):
        return entity_type == "LOCATION" and value == "Spain"

    def analyze(self, texts):
        return [
            [Span("LOCATION", t.index("Bjert"), t.index("Bjert") + 5, 0.9)] if "Bjert" in t
            else []
            for t in texts
        ]  # fmt: skip


def test_evaluate_reports_gold_spans_kept_by_policy():
    text = "from Spain to Bjert"
    example = Example(text, (GoldSpan("GPE", 5, 10), GoldSpan("GPE", 14, 19)))
    dataset = PiiDataset("tiny", "en", [example], {"GPE": ("LOCATION",)})
    result = pii.evaluate(dataset, PlaceKeepingScrubber(), progress=False).to_json()
    assert result["per_entity"]["GPE"]["support"] == 1
    assert result["per_entity"]["GPE"]["recall"] == 1.0
    assert result["per_entity"]["GPE"]["out_of_scope_by_policy"] == 1
    assert result["overall"]["out_of_scope_by_policy"] == 1
    assert "kept" in pii.format_table(result)


# --- command ----------------------------------------------------------------------------------


def _synthetic_dataset(path: Path) -> Path:
    records = [
        {
            "full_text": "My name is John Smith and my email is john@example.com",
            "spans": [
                {"entity_type": "PERSON", "start_position": 11, "end_position": 21},
                {"entity_type": "EMAIL_ADDRESS", "start_position": 38, "end_position": 54},
            ],
        },
        {
            "full_text": "Call me at (415) 867-5309 on Monday",
            "spans": [
                {"entity_type": "PHONE_NUMBER", "start_position": 11, "end_position": 25},
                {"entity_type": "DATE_TIME", "start_position": 29, "end_position": 35},
            ],
        },
        {"full_text": "Nothing private here.", "spans": []},
    ]
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _args(parser_args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    pii.add_arguments(parser)
    return parser.parse_args(parser_args)


def test_command_prints_json_and_writes_the_table(tmp_path, capsys):
    dataset = _synthetic_dataset(tmp_path / "tiny.json")
    out = tmp_path / "out"
    code = pii.run(_args(["--dataset", str(dataset), "--json", "--output-dir", str(out)]))
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "presidio_synth"
    assert set(result["overall"]) == {
        "precision",
        "recall",
        "f2",
        "support",
        "out_of_scope_by_policy",
    }
    assert result["overall"]["support"] == 3  # DATE_TIME is out of scope: left in place
    assert result["overall"]["recall"] == 1.0
    assert result["per_entity"]["DATE_TIME"]["in_scope"] is False
    assert result["per_entity"]["PERSON"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f2": 1.0,
        "support": 1,
        "out_of_scope_by_policy": 0,
        "in_scope": True,
    }
    table = (out / "pii_eval_presidio_synth.txt").read_text(encoding="utf-8")
    assert "overall (in scope)" in table and "PHONE_NUMBER" in table
    assert json.loads((out / "pii_eval_presidio_synth.json").read_text()) == result


def test_command_limit_and_errors(tmp_path, capsys):
    dataset = _synthetic_dataset(tmp_path / "tiny.json")
    code = pii.run(
        _args(["--dataset", str(dataset), "--json", "--limit", "1", "--output-dir", str(tmp_path)])
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["n_texts"] == 1
    assert pii.run(_args(["--dataset", "nope", "--output-dir", str(tmp_path)])) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert pii.run(_args(["--dataset", str(dataset), "--limit", "0"])) == 2
