"""Scale-up input for benchmarks: N conversations mixed from real texts, in clio's input format.

Every text comes from a real data set (the shipped HH-RLHF sample and `../shared/data`, each
with its licence in its SOURCE.md); only the way they are put together is generated:

- a conversation's first user turn is an opener from one source (HH-RLHF, CLINC150,
  Banking77, Arena-Hard, MT-Bench/Vicuna), sometimes followed by a sentence from another
  source, and sometimes with a greeting in front or typed in lower case; later user turns
  are follow-ups from other conversations, and assistant turns are real assistant replies;
- some turns carry a sentence of Presidio's synthetic PII set, so scrubbing has work to do;
- about 5% are Chinese (OpenAssistant turns spliced across conversations) and 10% are in
  one of SIB-200's other languages (its sentences in that language);
- user ids follow a heavy tail (Zipf: two thirds of users have one conversation, a few
  have hundreds), and a user keeps to a favourite source for most of their conversations;
- no two conversations share their messages, nor the first 160 characters of their first
  user turn (what the benchmark's request stand-in clusters).

Deterministic for a seed. Usage:
`python bench/scale_data.py --n 10000 [--seed 0] [--out outputs/bench/data/scale-10000.jsonl]`.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clio.evaluation.data_dir import add_data_dir_argument, default_data_dir  # noqa: E402

SAMPLE = ROOT / "clio" / "samples" / "hh_rlhf_harmless_base_test.jsonl.gz"
REQUEST_KEY_CHARS = 160  # the request stand-in's cut: first user turns differ within it

# Share of conversations by language group; the rest is English.
CHINESE_SHARE = 0.05
OTHER_LANGUAGE_SHARE = 0.10
# User turns per conversation (HH-RLHF averages 2.5).
TURN_COUNTS = (1, 2, 3, 4)
TURN_WEIGHTS = (0.40, 0.27, 0.19, 0.14)
# English openers by source; a user draws from a favourite source this often.
OPENER_WEIGHTS = {
    "hh_rlhf": 0.30,
    "clinc150": 0.28,
    "banking77": 0.20,
    "arena_hard": 0.12,
    "mt_bench": 0.10,
}
FAVOURITE_SOURCE_SHARE = 0.6
APPEND_OTHER_SHARE = 0.30  # a second sentence from another source after the opener
PII_SHARE = 0.06  # a turn gets a sentence of Presidio's synthetic PII set
GREETING_SHARE = 0.25
LOWER_CASE_SHARE = 0.15
# Conversations per user: Zipf with this exponent, capped at n / 200 (at least 5, at most
# 400), so that no single user holds a large share of a small run: at n = 100k about
# 34k users, two thirds of them with one conversation; at n = 1k about 540 users.
ZIPF_EXPONENT = 2.2
MAX_CONVERSATIONS_PER_USER = 400
MIN_CAP = 5
GREETINGS = (
    "Hi,",
    "Hello!",
    "Hey there.",
    "Quick question:",
    "Can you help me?",
    "I have a question.",
    "Good morning.",
    "Please help:",
    "Hi assistant,",
    "One more thing:",
    "Sorry to bother you,",
    "I was wondering,",
)
START = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_SECONDS = 60 * 24 * 3600


@dataclass
class Pools:
    """Real texts to draw from, each list in a fixed order (so output depends on the seed)."""

    openers: dict[str, list[str]] = field(default_factory=dict)  # English, by source
    follow_ups: list[str] = field(default_factory=list)  # English later user turns
    replies: list[str] = field(default_factory=list)  # English assistant turns
    zh_users: list[str] = field(default_factory=list)
    zh_replies: list[str] = field(default_factory=list)
    other_languages: dict[str, list[str]] = field(default_factory=dict)  # code -> sentences
    pii: list[str] = field(default_factory=list)


def _transcript_turns(text: str) -> list[tuple[str, str]]:
    import re

    parts = re.split(r"\n\n(Human|Assistant): ", "\n\n" + text.lstrip("\n"))
    return [(who, body.strip()) for who, body in zip(parts[1::2], parts[2::2], strict=True)]


def load_pools(data_dir: Path) -> Pools:
    """Read every source found; the shipped sample is always there, the shared data sets
    are used when `data_dir` has them."""
    pools = Pools(openers={name: [] for name in OPENER_WEIGHTS})
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        for line in handle:
            turns = _transcript_turns(json.loads(line)["chosen"])
            humans = [body for who, body in turns if who == "Human" and body]
            if humans:
                pools.openers["hh_rlhf"].append(humans[0])
                pools.follow_ups.extend(humans[1:])
            pools.replies.extend(body for who, body in turns if who == "Assistant" and body)

    clinc = data_dir / "clinc150" / "data_full.json"
    if clinc.is_file():
        splits = json.loads(clinc.read_text(encoding="utf-8"))
        for split in sorted(splits):
            pools.openers["clinc150"].extend(text for text, _ in splits[split])
    for name in ("train.csv", "test.csv"):
        path = data_dir / "banking77" / name
        if path.is_file():
            with path.open(encoding="utf-8", newline="") as handle:
                pools.openers["banking77"].extend(row["text"] for row in csv.DictReader(handle))
    arena = data_dir / "arena_hard_v0.1" / "question.jsonl"
    if arena.is_file():
        for line in arena.read_text(encoding="utf-8").splitlines():
            pools.openers["arena_hard"].append(json.loads(line)["turns"][0]["content"])
    mt_dir = data_dir / "mt_bench_vicuna_questions"
    if (mt_dir / "mt_bench_question.jsonl").is_file():
        for line in (mt_dir / "mt_bench_question.jsonl").read_text(encoding="utf-8").splitlines():
            turns = json.loads(line)["turns"]
            pools.openers["mt_bench"].append(turns[0])
            pools.follow_ups.extend(turns[1:])
    if (mt_dir / "vicuna80_question.jsonl").is_file():
        for line in (mt_dir / "vicuna80_question.jsonl").read_text(encoding="utf-8").splitlines():
            pools.openers["mt_bench"].append(json.loads(line)["text"])
    # Intent utterances also make natural follow-ups ("and how do I ...").
    pools.follow_ups += pools.openers["clinc150"][::3] + pools.openers["banking77"][::3]

    oasst = data_dir / "oasst1_zh_llamafactory" / "oaast_sft_zh.json"
    if oasst.is_file():
        for record in json.loads(oasst.read_text(encoding="utf-8")):
            turns = [*record.get("history", []), [record["instruction"], record["output"]]]
            for user, reply in turns:
                if user.strip() and reply.strip():
                    pools.zh_users.append(user.strip())
                    pools.zh_replies.append(reply.strip())
    sib = data_dir / "sib200" / "data" / "annotated"
    if sib.is_dir():
        for folder in sorted(sib.iterdir()):
            if folder.name.startswith(("eng_", "zho_")) or not folder.is_dir():
                continue
            sentences = []
            for split in ("train.tsv", "dev.tsv", "test.tsv"):
                path = folder / split
                if path.is_file():
                    with path.open(encoding="utf-8", newline="") as handle:
                        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
                        sentences += [row[2] for row in list(rows)[1:] if len(row) > 2]
            if sentences:
                pools.other_languages[folder.name] = sentences
    pii = data_dir / "presidio_synth_pii" / "synth_dataset_v2.json"
    if pii.is_file():
        pools.pii = [r["full_text"].strip() for r in json.loads(pii.read_text(encoding="utf-8"))]
    pools.openers = {name: texts for name, texts in pools.openers.items() if texts}
    return pools


def conversations_per_user(n: int, rng: np.random.Generator) -> list[int]:
    """Heavy-tailed counts summing to n: Zipf draws, capped, the last one cut to fit."""
    cap = max(MIN_CAP, min(MAX_CONVERSATIONS_PER_USER, n // 200))
    counts: list[int] = []
    total = 0
    while total < n:
        count = int(min(rng.zipf(ZIPF_EXPONENT), cap, n - total))
        counts.append(count)
        total += count
    return counts


class _Builder:
    def __init__(self, pools: Pools, rng: np.random.Generator):
        self.pools = pools
        self.rng = rng
        self.sources = list(pools.openers)
        weights = np.array([OPENER_WEIGHTS[s] for s in self.sources])
        self.source_weights = weights / weights.sum()
        self.languages = sorted(pools.other_languages)
        self.seen_keys: set[str] = set()

    def pick(self, texts: list[str]) -> str:
        return texts[int(self.rng.integers(len(texts)))]

    def chance(self, share: float) -> bool:
        return bool(self.rng.random() < share)

    def source(self, favourite: str) -> str:
        if self.chance(FAVOURITE_SOURCE_SHARE):
            return favourite
        return self.sources[int(self.rng.choice(len(self.sources), p=self.source_weights))]

    def with_pii(self, text: str) -> str:
        if self.pools.pii and self.chance(PII_SHARE):
            return f"{text} {self.pick(self.pools.pii)}"
        return text

    def english_opener(self, favourite: str) -> str:
        source = self.source(favourite)
        text = self.pick(self.pools.openers[source])
        if self.chance(APPEND_OTHER_SHARE):
            other = self.pick(self.pools.openers[self.source(favourite)])
            text = f"{text.rstrip()} {other}"
        if self.chance(GREETING_SHARE):
            text = f"{self.pick(list(GREETINGS))} {text}"
        if self.chance(LOWER_CASE_SHARE):
            text = text.lower()
        return self.with_pii(text)

    def messages(self, group: str, favourite: str) -> list[dict[str, str]]:
        turns = TURN_COUNTS[int(self.rng.choice(len(TURN_COUNTS), p=TURN_WEIGHTS))]
        if group == "zh":
            users = [self.pick(self.pools.zh_users) for _ in range(turns)]
            replies = [self.pick(self.pools.zh_replies) for _ in range(turns)]
        elif group in self.pools.other_languages:
            sentences = self.pools.other_languages[group]
            users = [self.pick(sentences) for _ in range(turns)]
            if self.chance(0.5):
                users[0] = f"{users[0]} {self.pick(sentences)}"
            replies = [f"{self.pick(sentences)} {self.pick(sentences)}" for _ in range(turns)]
        else:
            users = [self.english_opener(favourite)]
            users += [self.with_pii(self.pick(self.pools.follow_ups)) for _ in range(turns - 1)]
            replies = [self.pick(self.pools.replies) for _ in range(turns)]
        messages = []
        for user, reply in zip(users, replies, strict=True):
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        return messages

    def unique_messages(self, group: str, favourite: str) -> list[dict[str, str]]:
        """Messages whose first user turn (to the request cut) no conversation had yet; after
        a few collisions the turn gets a greeting or a second sentence until it is new."""
        messages = self.messages(group, favourite)
        for attempt in range(1000):
            key = messages[0]["content"][:REQUEST_KEY_CHARS]
            if key not in self.seen_keys:
                self.seen_keys.add(key)
                return messages
            if attempt < 5:
                messages = self.messages(group, favourite)
                continue
            first = messages[0]["content"]
            if group == "en" and attempt % 2:
                first = f"{self.pick(list(GREETINGS))} {first}"
            else:
                pool = self.pools.other_languages.get(group) or (
                    self.pools.zh_users if group == "zh" else self.pools.follow_ups
                )
                first = f"{self.pick(pool)} {first}"
            messages[0] = {"role": "user", "content": first}
        raise RuntimeError("could not make a new first user turn in 1000 attempts")


def generate(n: int, seed: int = 0, data_dir: Path | None = None) -> Iterator[dict]:
    """`n` conversations as records in the OpenAI-style `messages` shape clio ingests."""
    if n < 0:
        raise ValueError(f"n must be zero or more, not {n}")
    pools = load_pools(data_dir or default_data_dir())
    rng = np.random.default_rng(seed)
    builder = _Builder(pools, rng)
    counts = conversations_per_user(n, rng)
    # Who owns each conversation, in a shuffled order so heavy users are spread out.
    owners = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    groups = ["en"] * len(counts)
    favourites = [
        builder.sources[int(rng.choice(len(builder.sources), p=builder.source_weights))]
        for _ in counts
    ]
    for user in range(len(counts)):
        draw = rng.random()
        if pools.zh_users and draw < CHINESE_SHARE:
            groups[user] = "zh"
        elif builder.languages and draw < CHINESE_SHARE + OTHER_LANGUAGE_SHARE:
            groups[user] = builder.languages[int(rng.integers(len(builder.languages)))]
    for index, owner in enumerate(owners):
        owner = int(owner)
        moment = START + timedelta(seconds=int(rng.integers(SPAN_SECONDS)))
        yield {
            "conversation_id": f"scale-{seed}-{index:07d}",
            "user_id": f"user-{seed}-{owner:07d}",
            "timestamp": moment.isoformat().replace("+00:00", "Z"),
            "messages": builder.unique_messages(groups[owner], favourites[owner]),
        }


def write_jsonl(path: Path, n: int, seed: int = 0, data_dir: Path | None = None) -> Path:
    """Write the conversations to `path` (JSON Lines) atomically; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    with temp.open("w", encoding="utf-8") as handle:
        for record in generate(n, seed, data_dir):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    temp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, required=True, help="conversations to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="default: outputs/bench/data/scale-N-sSEED.jsonl")
    add_data_dir_argument(parser)
    args = parser.parse_args(argv)
    out = args.out or ROOT / "outputs" / "bench" / "data" / f"scale-{args.n}-s{args.seed}.jsonl"
    write_jsonl(out, args.n, args.seed, args.data_dir)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
