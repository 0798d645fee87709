"""Scrub throughput on the shipped sample, in conversations per second.

Runs `scrub_conversations` (batch analysis through Presidio's BatchAnalyzerEngine, i.e.
spaCy's `nlp.pipe`) over the first N conversations of the HH-RLHF sample, in the modes
a 2-core machine can use:

- `1 process`: one process, spaCy single-process;
- `nlp.pipe x2`: one process, spaCy `n_process=2` (the NER runs in two workers; the
  recognizers still run in the parent);
- `workers=2`: `scrub_conversations(..., workers=2)`, the default on 2 cores: this
  process and one spawned worker take batches from either end. The worker's start-up
  (loading spaCy and the name lists, a few seconds) is inside the timing, as in a run.

Wall time depends on what else the machine runs, so CPU time (user + system, children
included) is reported beside it, with the conversations per CPU-second and the load
average at the start. Usage: `python bench/scrub_throughput.py [--limit 500] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEY = "bench-key"


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _reap_workers(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)


def _measure(name: str, run, n: int) -> dict[str, float | str | int]:
    """`run` returns (conversations done, CPU seconds spent outside this process)."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    done, worker_cpu = run()
    wall = time.perf_counter() - wall
    _reap_workers()  # a worker's CPU time counts once it has exited
    cpu = _cpu_seconds() - cpu + worker_cpu
    assert done == n, f"{name}: scrubbed {done} of {n}"
    return {
        "mode": name,
        "conversations": n,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "conversations_per_second": round(n / wall, 1),
        "conversations_per_cpu_second": round(n / cpu, 1) if cpu else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=500, help="conversations from the sample")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    # Imported here, not at the top: a spawned scrub worker imports this script again, and
    # should not load Presidio before it has set itself up (see
    # clio.scrub.parallel._WORKER_START).
    from clio.config import IngestConfig, ScrubConfig
    from clio.ingest import ingest, sample_path
    from clio.scrub import build_scrubber, scrub_conversations

    # The sample has no user ids: count each conversation as its own user, as
    # configs/sample.yaml does (the default would quarantine them all).
    sample_ingest = IngestConfig(missing_user_id="per_conversation")
    conversations = ingest([sample_path()], sample_ingest, limit=args.limit).conversations
    n = len(conversations)
    n_messages = sum(len(c.messages) for c in conversations)
    n_chars = sum(len(m.content) for c in conversations for m in c.messages)
    load = os.getloadavg()[0]

    # Warm-up outside the timings: model loading takes seconds and is paid once per process.
    single = build_scrubber(ScrubConfig())
    piped = build_scrubber(ScrubConfig(n_process=2))
    scrub_conversations(conversations[:5], single, KEY, progress_label="warm-up")

    def in_process(scrubber, workers: int = 1) -> tuple[int, float]:
        done = scrub_conversations(conversations, scrubber, KEY, workers=workers)
        return sum(map(len, done)), 0.0

    results = [
        _measure("1 process", lambda: in_process(single), n),
        _measure("nlp.pipe x2", lambda: in_process(piped), n),
        _measure("workers=2", lambda: in_process(single, workers=2), n),
    ]

    report = {
        "sample": sample_path().name,
        "conversations": n,
        "messages": n_messages,
        "characters": n_chars,
        "cpus": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "scrubber": single.identifier,
        "results": results,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"scrub throughput on {n} conversations ({n_messages} messages, {n_chars} chars), "
            f"{os.cpu_count()} CPUs, load average {load:.2f} at start"
        )
        print(f"{'mode':<12} {'wall s':>8} {'CPU s':>8} {'conv/s':>8} {'conv/CPU-s':>11}")
        for r in results:
            print(
                f"{r['mode']:<12} {r['wall_seconds']:>8} {r['cpu_seconds']:>8} "
                f"{r['conversations_per_second']:>8} {r['conversations_per_cpu_second']:>11}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
