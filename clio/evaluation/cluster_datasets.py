"""Loaders for the labelled topic datasets in `../shared/data`, as texts with gold labels.

Which part of each dataset is used (each folder's SOURCE.md describes the files):
- `clinc150`: the test split without out-of-scope queries (4,500 texts, 150 intents), with
  the 10 domains of `domains.json` as the coarse level;
- `banking77`: the test split (3,080 texts, 77 intents);
- `arena_hard`: the 500 v0.1 prompts (first turn), 250 topic clusters of two prompts each;
- `sib200`: English (`eng_Latn`) train + dev + test (1,004 sentences, 7 topics);
- `mt_bench`: the 80 MT-Bench questions (first turn), 8 categories.

`split="dev"` gives a part to tune on, never scored in a report: clinc150's validation
split (no oos) and every third row of banking77's train split; the other datasets have
only the part above.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

NAMES = ("clinc150", "banking77", "arena_hard", "sib200", "mt_bench")


@dataclass(frozen=True)
class LabelledTexts:
    name: str
    texts: list[str]
    labels: list[str]
    coarse_labels: list[str] | None = None  # a second, coarser gold level, when there is one
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels")
        if self.coarse_labels is not None and len(self.coarse_labels) != len(self.texts):
            raise ValueError(f"{self.name}: coarse labels do not match the texts")

    def head(self, limit: int) -> LabelledTexts:
        """The first `limit` items (for quick runs)."""
        coarse = self.coarse_labels[:limit] if self.coarse_labels is not None else None
        return LabelledTexts(
            self.name, self.texts[:limit], self.labels[:limit], coarse, self.source
        )


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"dataset file not found: {path}")
    return path


SPLITS = ("test", "dev")


def load_clinc150(root: Path, split: str = "test") -> LabelledTexts:
    folder = root / "clinc150"
    data = json.loads(_require(folder / "data_full.json").read_text(encoding="utf-8"))
    rows = data["test" if split == "test" else "val"]
    domains = json.loads(_require(folder / "domains.json").read_text(encoding="utf-8"))
    domain_of = {intent: domain for domain, intents in domains.items() for intent in intents}
    missing = sorted({label for _, label in rows} - set(domain_of))
    if missing:
        raise ValueError(f"clinc150: intents without a domain: {missing[:5]}")
    return LabelledTexts(
        "clinc150",
        [text for text, _ in rows],
        [label for _, label in rows],
        [domain_of[label] for _, label in rows],
        f"clinc150/data_full.json {'test' if split == 'test' else 'val'} split (no oos), "
        "domains.json",
    )


def load_banking77(root: Path, split: str = "test") -> LabelledTexts:
    path = _require(root / "banking77" / ("test.csv" if split == "test" else "train.csv"))
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if split != "test":
        rows = rows[::3]
    return LabelledTexts(
        "banking77",
        [row["text"] for row in rows],
        [row["category"] for row in rows],
        source="banking77/test.csv" if split == "test" else "banking77/train.csv, every third row",
    )


def load_arena_hard(root: Path) -> LabelledTexts:
    path = _require(root / "arena_hard_v0.1" / "question.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return LabelledTexts(
        "arena_hard",
        [row["turns"][0]["content"] for row in rows],
        [row["cluster"] for row in rows],
        source="arena_hard_v0.1/question.jsonl (first turn)",
    )


def load_sib200(root: Path) -> LabelledTexts:
    folder = root / "sib200" / "data" / "annotated" / "eng_Latn"
    texts, labels = [], []
    for split in ("train", "dev", "test"):
        with _require(folder / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader)
            if header[:3] != ["index_id", "category", "text"]:
                raise ValueError(f"sib200 {split}.tsv: unexpected header {header}")
            for row in reader:
                labels.append(row[1])
                texts.append(row[2])
    return LabelledTexts("sib200", texts, labels, source="sib200 eng_Latn train+dev+test")


def load_mt_bench(root: Path) -> LabelledTexts:
    path = _require(root / "mt_bench_vicuna_questions" / "mt_bench_question.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return LabelledTexts(
        "mt_bench",
        [row["turns"][0] for row in rows],
        [row["category"] for row in rows],
        source="mt_bench_question.jsonl (first turn)",
    )


_LOADERS = {
    "clinc150": load_clinc150,
    "banking77": load_banking77,
    "arena_hard": load_arena_hard,
    "sib200": load_sib200,
    "mt_bench": load_mt_bench,
}


def load_dataset(name: str, data_dir: Path, split: str = "test") -> LabelledTexts:
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(NAMES)}")
    if split == "test":
        return _LOADERS[name](Path(data_dir))
    if name not in ("clinc150", "banking77"):
        raise ValueError(f"{name} has no {split!r} split: only clinc150 and banking77 do")
    return {"clinc150": load_clinc150, "banking77": load_banking77}[name](Path(data_dir), split)
