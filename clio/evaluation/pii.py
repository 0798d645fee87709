"""`clio eval pii`: span-level precision, recall and F2 of the scrubber per entity type.

A gold span is found when one detected span of a compatible type overlaps it by at least
half of the gold span's length; a detected span is correct when it finds some gold span
that way. Detections are scored as the scrubber replaces them: a value found once is also
found where it recurs in the text, and overlapping detections are merged. Compatibility
and the dataset's own type names come from `clio.evaluation.pii_datasets`. `overall`
sums the dataset types the scrubber is meant to replace (the primary counterpart of the
type is replaced under the scrub config); the others (for example DATE_TIME, which clio
leaves in place by default, or TITLE, which no recognizer covers) are still reported per
type, with `in_scope: false`. A gold span whose value the scrubber's keep policy leaves in
place on purpose (`scrub.keep_public_places`: "Spain", "Philadelphia") is out of scope by
policy: not counted as gold, counted in `out_of_scope_by_policy`, and a detection that
finds only such spans counts neither as right nor wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clio.config import ScrubConfig, load_config
from clio.evaluation.data_dir import add_data_dir_argument, default_data_dir
from clio.evaluation.pii_datasets import NAMES, Example, PiiDataset, load_dataset
from clio.progress import Progress

if TYPE_CHECKING:  # clio.scrub loads Presidio: imported where a scrub runs, not by `clio --help`
    from clio.scrub import Scrubber

TEXTS_PER_BATCH = 256
MIN_GOLD_OVERLAP = 0.5


@dataclass
class Counts:
    found_gold: int = 0  # gold spans found
    gold: int = 0
    correct_predictions: int = 0
    predictions: int = 0
    out_of_scope_by_policy: int = 0  # gold spans the keep policy leaves in place

    def add(self, other: Counts) -> None:
        self.found_gold += other.found_gold
        self.gold += other.gold
        self.correct_predictions += other.correct_predictions
        self.predictions += other.predictions
        self.out_of_scope_by_policy += other.out_of_scope_by_policy

    def scores(self) -> dict[str, float | int]:
        precision = self.correct_predictions / self.predictions if self.predictions else 0.0
        recall = self.found_gold / self.gold if self.gold else 0.0
        f2 = 5 * precision * recall / (4 * precision + recall) if precision + recall else 0.0
        return {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f2": round(f2, 4),
            "support": self.gold,
            "out_of_scope_by_policy": self.out_of_scope_by_policy,
        }


def _finds(start: int, end: int, gold_start: int, gold_end: int) -> bool:
    overlap = min(end, gold_end) - max(start, gold_start)
    return overlap > 0 and overlap >= MIN_GOLD_OVERLAP * (gold_end - gold_start)


def miss_owners(compatible: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Scrubber type -> the dataset type charged when such a prediction matches nothing:
    the type it is the primary counterpart of, else the first it is compatible with."""
    owners: dict[str, str] = {}
    for entity, types in compatible.items():
        if types:
            owners.setdefault(types[0], entity)
    for entity, types in compatible.items():
        for scrubber_type in types[1:]:
            owners.setdefault(scrubber_type, entity)
    return owners


def count_spans(
    gold: Sequence[tuple[str, int, int]],
    predicted: Sequence[tuple[str, int, int]],
    compatible: dict[str, tuple[str, ...]],
    kept: Sequence[tuple[str, int, int]] = (),
) -> dict[str, Counts]:
    """Counts per dataset type for one text. `gold` uses the dataset's types, `predicted`
    the scrubber's; gold types missing from `compatible` and predictions compatible with
    no dataset type are ignored. `kept` are the gold spans out of scope by policy: counted
    apart, and a prediction that finds only them is ignored."""
    counts = {entity: Counts() for entity in compatible}
    owners = miss_owners(compatible)
    policy = set(kept)
    out_of_scope = [g for g in gold if g[0] in compatible and g in policy]
    scored_gold = [g for g in gold if g[0] in compatible and g not in policy]
    for entity, _, _ in out_of_scope:
        counts[entity].out_of_scope_by_policy += 1
    for entity, start, end in scored_gold:
        counts[entity].gold += 1
        if any(
            p_type in compatible[entity] and _finds(p_start, p_end, start, end)
            for p_type, p_start, p_end in predicted
        ):
            counts[entity].found_gold += 1
    for p_type, p_start, p_end in predicted:
        if p_type not in owners:
            continue
        matched = next(
            (
                entity
                for entity, start, end in scored_gold
                if p_type in compatible[entity] and _finds(p_start, p_end, start, end)
            ),
            None,
        )
        if matched is None and any(
            p_type in compatible[entity] and _finds(p_start, p_end, start, end)
            for entity, start, end in out_of_scope
        ):
            continue
        charged = counts[matched or owners[p_type]]
        charged.predictions += 1
        charged.correct_predictions += matched is not None
    return counts


@dataclass
class PiiReport:
    dataset: str
    per_entity: dict[str, Counts]
    in_scope: list[str]
    n_texts: int
    seconds: float
    scrubber: str

    def to_json(self) -> dict[str, Any]:
        overall, everything = Counts(), Counts()
        for entity, counts in self.per_entity.items():
            everything.add(counts)
            if entity in self.in_scope:
                overall.add(counts)
        return {
            "dataset": self.dataset,
            "overall": overall.scores(),
            "per_entity": {
                entity: {**counts.scores(), "in_scope": entity in self.in_scope}
                for entity, counts in sorted(self.per_entity.items())
            },
            "overall_all_types": everything.scores(),
            "n_texts": self.n_texts,
            "seconds": round(self.seconds, 1),
            "scrubber": self.scrubber,
        }


def kept_by_policy(
    example: Example, compatible: dict[str, tuple[str, ...]], scrubber: Scrubber
) -> list[tuple[str, int, int]]:
    """The example's gold spans whose value the scrubber leaves in place on purpose, judged
    as a detection of the type's primary counterpart (a GPE as a LOCATION)."""
    return [
        (g.entity_type, g.start, g.end)
        for g in example.spans
        if compatible.get(g.entity_type)
        and scrubber.keeps(compatible[g.entity_type][0], example.text[g.start : g.end])
    ]


def evaluate(
    dataset: PiiDataset, scrubber: Scrubber, *, limit: int | None = None, progress: bool = True
) -> PiiReport:
    """Run `scrubber.analyze` over the dataset and score it."""
    from clio.scrub import propagate_values, resolve_overlaps

    examples = dataset.examples[:limit] if limit is not None else dataset.examples
    replaced = set(scrubber.entities)
    in_scope = [
        entity for entity, types in dataset.compatible.items() if types and types[0] in replaced
    ]
    totals = {entity: Counts() for entity in dataset.compatible}
    start = time.perf_counter()
    with Progress(f"eval pii {dataset.name}", total=len(examples), unit="text") as bar:
        for offset in range(0, len(examples), TEXTS_PER_BATCH):
            batch = examples[offset : offset + TEXTS_PER_BATCH]
            texts = [e.text for e in batch]
            # Scored as replaced: values recur where found once, overlapping detections
            # become one region (each text is scored as a conversation of its own).
            spans = [
                resolve_overlaps(propagate_values([text], [found])[0])
                for text, found in zip(texts, scrubber.analyze(texts), strict=True)
            ]
            for example, found in zip(batch, spans, strict=True):
                counts = count_spans(
                    [(g.entity_type, g.start, g.end) for g in example.spans],
                    [(s.entity_type, s.start, s.end) for s in found],
                    dataset.compatible,
                    kept_by_policy(example, dataset.compatible, scrubber),
                )
                for entity, entity_counts in counts.items():
                    totals[entity].add(entity_counts)
            if progress:
                bar.update(len(batch))
    return PiiReport(
        dataset=dataset.name,
        per_entity=totals,
        in_scope=in_scope,
        n_texts=len(examples),
        seconds=time.perf_counter() - start,
        scrubber=scrubber.identifier,
    )


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"PII evaluation: {result['dataset']} ({result['n_texts']} texts, {result['seconds']} s)",
        f"scrubber: {result['scrubber']}",
        "",
        f"{'entity':<20} {'precision':>9} {'recall':>7} {'F2':>7} {'support':>8} "
        f"{'kept':>6}  scope",
    ]

    def row(name: str, scores: dict[str, Any], scope: str) -> str:
        return (
            f"{name:<20} {scores['precision']:>9.3f} {scores['recall']:>7.3f} "
            f"{scores['f2']:>7.3f} {scores['support']:>8} {scores['out_of_scope_by_policy']:>6}"
            f"  {scope}"
        )

    for entity, scores in result["per_entity"].items():
        lines.append(row(entity, scores, "in" if scores["in_scope"] else "out"))
    lines.append("-" * 71)
    lines.append(row("overall (in scope)", result["overall"], ""))
    lines.append(row("all scored types", result["overall_all_types"], ""))
    lines.append("kept: gold spans out of scope by policy (left in place on purpose)")
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="NAME|PATH",
        help=f"one of {', '.join(NAMES)}, or a Presidio-style JSON file",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--limit", type=int, default=None, help="score the first N texts only")
    parser.add_argument(
        "--split",
        default=None,
        help="wnut17/echr_*: train, dev or test (default test); presidio_synth: all "
        "(default), first_half or second_half",
    )
    add_data_dir_argument(parser)
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs"), help="where the table is written"
    )
    parser.add_argument(
        "--config", default=None, help="run config whose `scrub` section is evaluated"
    )


def _select_split(dataset: PiiDataset, split: str | None) -> PiiDataset:
    if dataset.name != "presidio_synth" or split in (None, "all"):
        return dataset
    half = len(dataset.examples) // 2
    halves = {"first_half": dataset.examples[:half], "second_half": dataset.examples[half:]}
    if split not in halves:
        raise ValueError(f"presidio_synth split must be all, first_half or second_half: {split}")
    return PiiDataset(
        f"{dataset.name}-{split}", dataset.language, halves[split], dataset.compatible,
        dataset.source,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from clio.scrub import build_scrubber

    if args.limit is not None and args.limit < 1:
        print("--limit must be a positive number", file=sys.stderr)
        return 2
    data_dir = args.data_dir or default_data_dir()
    try:
        split = args.split
        named_split = split if args.dataset in ("wnut17", "echr_fr", "echr_es") else None
        dataset = load_dataset(args.dataset, data_dir, split=named_split or "test")
        dataset = _select_split(dataset, split)
        scrub_config: ScrubConfig = load_config(args.config).scrub
    except (ValueError, OSError) as exc:
        print(f"clio eval pii: {exc}", file=sys.stderr)
        return 2
    config = scrub_config.model_copy(update={"language": dataset.language})
    report = evaluate(dataset, build_scrubber(config), limit=args.limit)
    result = report.to_json()
    table = format_table(result)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / f"pii_eval_{result['dataset']}"
    stem.with_suffix(".txt").write_text(table + "\n", encoding="utf-8")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result) if args.json else table)
    return 0
