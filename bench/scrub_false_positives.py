"""Over-scrubbing on text that holds little PII: how much the scrubber replaces there.

Datasets (from `../shared/data`, or `--data-dir`; one missing is skipped with a note):
- `clinc150`: the 4,500 in-scope test utterances (each a conversation of one text);
- `banking77`: the 3,080 test queries;
- `mt_bench`: the 80 MT-Bench questions, both turns (each question a conversation);
- `sample`: the HH-RLHF sample shipped in `clio/samples`, every message (first `--limit`
  conversations; all by default).

Spans are counted as the scrub stage replaces them: `analyze` over the texts, then each
conversation's values propagated and overlapping detections merged (`apply_placeholders`
after `propagate_values`, as `clio.scrub.batch` does). Printed per dataset: replacements
per 1,000 characters, the share of texts altered, and the most replaced strings (case
folded) per entity type. Almost none of these texts carry a user's private details, so
nearly every replacement here is a false positive.

Usage: `python bench/scrub_false_positives.py [--config FILE] [--datasets clinc150,...]
[--top 8] [--limit N] [--json]`; `--config` takes a run config whose `scrub:` section is
used (e.g. the keep policy switched off).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clio.config import IngestConfig, load_config  # noqa: E402
from clio.evaluation.cluster_datasets import load_banking77, load_clinc150  # noqa: E402
from clio.evaluation.data_dir import default_data_dir  # noqa: E402
from clio.ingest import ingest, sample_path  # noqa: E402
from clio.scrub import Scrubber, apply_placeholders, build_scrubber, propagate_values  # noqa: E402

DATASETS = ("clinc150", "banking77", "mt_bench", "sample")
TEXTS_PER_BATCH = 512


def load_conversations(name: str, data_dir: Path, limit: int | None) -> list[list[str]]:
    """The dataset as conversations, each a list of texts scrubbed together."""
    if name == "clinc150":
        return [[text] for text in load_clinc150(data_dir).texts]
    if name == "banking77":
        return [[text] for text in load_banking77(data_dir).texts]
    if name == "mt_bench":
        path = data_dir / "mt_bench_vicuna_questions" / "mt_bench_question.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"dataset file not found: {path}")
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return [list(row["turns"]) for row in rows if row]
    if name == "sample":
        # The sample has no user ids; each conversation counts as its own user here.
        config = IngestConfig(missing_user_id="per_conversation")
        found = ingest([sample_path()], config, limit=limit).conversations
        return [[m.content for m in c.messages] for c in found]
    raise ValueError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")


def replaced_spans(
    scrubber: Scrubber, conversations: Sequence[list[str]]
) -> list[list[list[tuple[str, str]]]]:
    """Per conversation, per text: (entity type, replaced string) of each replacement."""
    result: list[list[list[tuple[str, str]]]] = []
    for offset in range(0, len(conversations), TEXTS_PER_BATCH):
        batch = conversations[offset : offset + TEXTS_PER_BATCH]
        flat = scrubber.analyze([text for texts in batch for text in texts])
        cursor = 0
        for texts in batch:
            spans = flat[cursor : cursor + len(texts)]
            cursor += len(texts)
            replaced = apply_placeholders(texts, propagate_values(texts, spans))
            result.append(
                [
                    [(r.entity_type, text[r.start : r.end]) for r in regions]
                    for text, (_, regions) in zip(texts, replaced, strict=True)
                ]
            )
    return result


def measure(
    name: str, scrubber: Scrubber, conversations: Sequence[list[str]], top: int
) -> dict[str, Any]:
    start = time.perf_counter()
    found = replaced_spans(scrubber, conversations)
    texts = [text for texts in conversations for text in texts]
    per_text = [spans for conversation in found for spans in conversation]
    chars = sum(len(text) for text in texts)
    n_spans = sum(len(spans) for spans in per_text)
    by_type: dict[str, Counter[str]] = {}
    for spans in per_text:
        for entity_type, value in spans:
            folded = " ".join(value.split()).casefold()
            by_type.setdefault(entity_type, Counter())[folded] += 1
    return {
        "dataset": name,
        "conversations": len(conversations),
        "texts": len(texts),
        "characters": chars,
        "replacements": n_spans,
        "replacements_per_1000_chars": round(1000 * n_spans / chars, 3) if chars else 0.0,
        "texts_altered": sum(1 for spans in per_text if spans),
        "share_of_texts_altered": round(sum(1 for s in per_text if s) / len(texts), 4)
        if texts
        else 0.0,
        "by_type": {
            entity_type: {"replacements": sum(counts.values()), "top": counts.most_common(top)}
            for entity_type, counts in sorted(
                by_type.items(), key=lambda item: -sum(item[1].values())
            )
        },
        "seconds": round(time.perf_counter() - start, 1),
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"scrubber: {report['scrubber']}", ""]
    header = f"{'dataset':<10} {'texts':>6} {'chars':>9} {'spans':>6} {'per 1k':>7} {'altered':>8}"
    lines.append(header)
    for r in report["datasets"]:
        lines.append(
            f"{r['dataset']:<10} {r['texts']:>6} {r['characters']:>9} {r['replacements']:>6} "
            f"{r['replacements_per_1000_chars']:>7.2f} {100 * r['share_of_texts_altered']:>7.1f}%"
        )
    for r in report["datasets"]:
        lines += ["", f"{r['dataset']}: most replaced strings by type"]
        for entity_type, entry in r["by_type"].items():
            shown = ", ".join(f"{value!r} {n}" for value, n in entry["top"])
            lines.append(f"  {entity_type} ({entry['replacements']}): {shown}")
    for name, reason in report["skipped"].items():
        lines.append(f"skipped {name}: {reason}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="run config whose `scrub:` is used")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated names")
    parser.add_argument("--data-dir", type=Path, default=None, help="default ../shared/data")
    parser.add_argument("--limit", type=int, default=None, help="sample conversations to read")
    parser.add_argument("--top", type=int, default=8, help="strings shown per entity type")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    scrubber = build_scrubber(load_config(args.config).scrub)
    report: dict[str, Any] = {"scrubber": scrubber.identifier, "datasets": [], "skipped": {}}
    for name in [n.strip() for n in args.datasets.split(",") if n.strip()]:
        try:
            conversations = load_conversations(name, data_dir, args.limit)
        except (FileNotFoundError, ValueError) as exc:
            report["skipped"][name] = str(exc)
            continue
        report["datasets"].append(measure(name, scrubber, conversations, args.top))
    print(json.dumps(report) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
