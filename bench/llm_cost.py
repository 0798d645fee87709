"""CPU-seconds per conversation of the LLM facet step on the local model, by length.

Extracts the config's facets (default configs/default.yaml: the packaged Gemma 3 270M)
through the client the flow uses, without a cache and without scrubbing, for
- `sample`: the first `--sample` conversations of the shipped sample (short turns);
- `long q1`..`long q4`: `--long` conversations from the longest tenth of HH-RLHF
  harmless-base test and OpenAssistant oasst1-zh (`bench/facet_failures.py`'s choice,
  evenly spaced by length), in four length quartiles.

Each group runs on its own, and its cost is this process's CPU time (all threads,
`resource.getrusage`) over the group, divided by its conversations: not wall time, which
depends on what else the machine runs. Beside it, per conversation: backend calls (over 1
means retries), prompt tokens, tokens evaluated (prefill, after the cached shared prefix),
evaluation steps after the prompt (one per sampled token or fed JSON structure), tokens
sampled, and the CPU split into llama.cpp's prompt evaluation (`prefill`), its evaluation
steps (`steps`) and the rest (`other`: sampling, constraint checks, tokenizing, Python).
The first call of each context (loading the model, evaluating the shared prefix) runs
before the timing, as a long run pays it once.

`--answers FILE` writes every facet value (JSON lines), to compare two versions' answers
with `--compare FILE`: the share of identical values per facet.

Offline. Usage (heavy: wrap in `flock /work/heavy.lock`):
`python bench/llm_cost.py [--sample 40] [--long 32] [--config configs/default.yaml]
[--answers FILE] [--compare FILE] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from facet_failures import SOURCES, evenly_spaced, longest_tenth, scrubbed  # noqa: E402

from clio.config import IngestConfig, load_config  # noqa: E402
from clio.facets import extract_facets, render_conversation  # noqa: E402
from clio.ingest import ingest, sample_path  # noqa: E402
from clio.llm.client import StructuredLLM  # noqa: E402
from clio.llm.factory import build_backend  # noqa: E402
from clio.records import ScrubbedConversation  # noqa: E402

UNCUT = 10**9


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def sample(n: int) -> list[ScrubbedConversation]:
    read = ingest([sample_path()], IngestConfig(missing_user_id="per_conversation"), limit=n)
    return [scrubbed(c) for c in read.conversations]


def groups(args: argparse.Namespace) -> list[tuple[str, list[ScrubbedConversation]]]:
    out = [("sample", sample(args.sample))]
    cases = [c for s, p in SOURCES.items() for c in longest_tenth(s, args.data / p)]
    cases = evenly_spaced(cases, args.long)  # in length order
    for q in range(4):
        part = [c.conversation for i, c in enumerate(cases) if i * 4 // len(cases) == q]
        out.append((f"long q{q + 1}", part))
    return out


def measure(
    name: str, conversations: list[ScrubbedConversation], config: Any, llm: StructuredLLM
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    stats = getattr(llm.backend, "pool", None)
    stats = stats.stats if stats is not None else None
    before_stats = stats.as_dict() if stats is not None else {}
    before_usage = llm.usage.as_dict()
    wall, cpu = time.perf_counter(), cpu_seconds()
    values = extract_facets(
        conversations, config.facets, llm, max_input_chars=config.llm.max_input_chars
    )
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    n = len(conversations)
    usage = {k: v - before_usage[k] for k, v in llm.usage.as_dict().items()}
    row: dict[str, Any] = {
        "group": name,
        "conversations": n,
        "chars_median": round(
            statistics.median(len(render_conversation(c.messages, UNCUT)) for c in conversations)
        ),
        "cpu_seconds_per_conversation": round(cpu / n, 3),
        "wall_seconds": round(wall, 1),
        "calls_per_conversation": round(usage["calls"] / n, 2),
        "failed": usage["failures"],
    }
    if stats is not None:
        after = stats.as_dict()
        d = {k: after[k] - before_stats[k] for k in after}
        llama_cpu = d["prefill_seconds"] + d["step_seconds"]
        row.update(
            prompt_tokens=round(d["prompt_tokens"] / n, 1),
            evaluated_tokens=round(d["evaluated_tokens"] / n, 1),
            steps=round(d["steps"] / n, 1),
            sampled_tokens=round(d["sampled_tokens"] / n, 1),
            prefill_cpu=round(d["prefill_seconds"] / n, 3),
            steps_cpu=round(d["step_seconds"] / n, 3),
            other_cpu=round((cpu - llama_cpu) / n, 3),
        )
    answers = [
        {"conversation_id": v.conversation_id, "facet": v.facet, "value": v.value}
        for v in values
        if v.facet in {f.name for f in config.facets if f.extractor != "metadata"}
    ]
    return row, answers


def compare(answers: list[dict[str, Any]], path: Path) -> dict[str, float]:
    other = {
        (a["conversation_id"], a["facet"]): a["value"]
        for a in map(json.loads, path.read_text().splitlines())
    }
    same: dict[str, list[bool]] = {}
    for a in answers:
        key = (a["conversation_id"], a["facet"])
        if key in other:
            same.setdefault(a["facet"], []).append(other[key] == a["value"])
    return {facet: round(sum(s) / len(s), 3) for facet, s in same.items()}


COLUMNS = (
    ("group", 8),
    ("conversations", 4),
    ("chars_median", 6),
    ("cpu_seconds_per_conversation", 7),
    ("prefill_cpu", 7),
    ("steps_cpu", 7),
    ("other_cpu", 7),
    ("calls_per_conversation", 5),
    ("evaluated_tokens", 7),
    ("steps", 6),
    ("sampled_tokens", 6),
    ("failed", 4),
    ("wall_seconds", 6),
)
HEADERS = (
    "group", "n", "chars", "cpu s", "prefill", "steps", "other",
    "calls", "eval t", "steps", "sampl", "fail", "wall s",
)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=40, help="sample conversations")
    parser.add_argument("--long", type=int, default=32, help="long conversations")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--answers", type=Path, help="write every facet value here")
    parser.add_argument("--compare", type=Path, help="answers of another run to compare")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    config = load_config(args.config)
    backend = build_backend(config.llm)
    llm = StructuredLLM(backend, config.llm, cache=None)
    todo = groups(args)
    warm = sample(args.sample + llm.parallel_calls)[args.sample :]
    extract_facets(warm, config.facets, llm, max_input_chars=config.llm.max_input_chars)

    rows, answers = [], []
    for name, conversations in todo:
        row, group_answers = measure(name, conversations, config, llm)
        rows.append(row)
        answers += group_answers
    result: dict[str, Any] = {
        "config": str(args.config),
        "cpus": os.cpu_count(),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "groups": rows,
    }
    if args.answers:
        args.answers.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers))
    if args.compare:
        result["same_as_compared"] = compare(answers, args.compare)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"LLM facet step, CPU-seconds per conversation ({result['config']}, "
        f"{result['cpus']} CPUs, load average {result['load_average_at_end']} at end)"
    )
    print("  " + " ".join(f"{h:>{w}}" for h, (_, w) in zip(HEADERS, COLUMNS, strict=True)))
    for row in rows:
        print("  " + " ".join(f"{row.get(k, '-')!s:>{w}}" for k, w in COLUMNS))
    if "same_as_compared" in result:
        print(f"  identical values per facet vs {args.compare}: {result['same_as_compared']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
