"""Per-stream speed of the local model: prompt tokens evaluated and tokens decoded per second.

The figures `clio run --estimate` times the local backend with (`estimate.*`, defaults in
`clio.pipeline.estimate.BACKEND_SPEEDS`, recorded in docs/SCALE.md). Each stream is one
one-thread llama.cpp context over the packaged Gemma 3 270M, as the local backend runs
them, all streams at once (one per core by default) so that they share the machine as
in a run. A stream keeps the shared facet prefix of a real sample prompt cached and then,
per round, evaluates the conversation's own part in one batch (prompt speed) and decodes
`--decode` tokens one at a time, each fed back like a sampled value token (decode speed).

Usage: `python bench/llm_speed.py [--rounds 20] [--decode 24] [--streams N] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clio.config import IngestConfig, LLMConfig, builtin_facets  # noqa: E402
from clio.facets import facet_call  # noqa: E402
from clio.ingest import ingest, sample_path  # noqa: E402
from clio.llm.local import context_pool, default_contexts, default_model_path  # noqa: E402
from clio.llm.render import completion_parts  # noqa: E402


def prompts(n: int) -> list[tuple[str, str]]:
    """(shared, own) facet prompt parts of the sample's first `n` conversations."""
    call = facet_call(builtin_facets("user_text"), LLMConfig().max_input_chars)
    assert call is not None
    sample = IngestConfig(missing_user_id="per_conversation")
    conversations = ingest([sample_path()], sample, limit=n).conversations
    return [completion_parts(call.prompt(c.messages)) for c in conversations]


def stream(parts: list[tuple[str, str]], decode: int, pool: object, out: dict) -> None:
    evaluated = decoded = 0
    eval_seconds = decode_seconds = 0.0
    with pool.context() as context:  # type: ignore[attr-defined]
        shared = context.tokenize(parts[0][0].encode(), bos=True)
        context.begin(shared, [])
        for _, own in parts:
            tokens = context.tokenize(own.encode(), bos=False)
            context.llama.n_tokens = len(shared)
            start = time.perf_counter()
            logits = context.feed(tokens)
            eval_seconds += time.perf_counter() - start
            evaluated += len(tokens)
            start = time.perf_counter()
            for _ in range(decode):
                token = int(np.argmax(np.array(logits, dtype=np.float32)))
                logits = context.feed([token])
            decode_seconds += time.perf_counter() - start
            decoded += decode
    out.update(
        evaluated=evaluated,
        eval_seconds=eval_seconds,
        decoded=decoded,
        decode_seconds=decode_seconds,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="prompts per stream")
    parser.add_argument("--decode", type=int, default=24, help="tokens decoded per prompt")
    parser.add_argument("--streams", type=int, default=default_contexts(1))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    parts = prompts(args.rounds * args.streams + 1)
    pool = context_pool(default_model_path(), size=args.streams, threads=1, context_tokens=4096)
    with pool.context():  # load the model once before timing
        pass
    load = os.getloadavg()[0]
    results: list[dict] = [{} for _ in range(args.streams)]
    threads = [
        threading.Thread(
            target=stream,
            args=(parts[1 + i * args.rounds : 1 + (i + 1) * args.rounds], args.decode, pool, r),
        )
        for i, r in enumerate(results)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    evaluated = sum(r["evaluated"] for r in results)
    decoded = sum(r["decoded"] for r in results)
    report = {
        "streams": args.streams,
        "cpus": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "prompts_per_stream": args.rounds,
        "own_tokens_per_prompt": round(evaluated / (args.rounds * args.streams), 1),
        "prompt_tokens_per_second_per_stream": round(
            evaluated / sum(r["eval_seconds"] for r in results), 1
        ),
        "output_tokens_per_second_per_stream": round(
            decoded / sum(r["decode_seconds"] for r in results), 1
        ),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:40} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
