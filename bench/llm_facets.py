"""The facet step with the local model: conversations per second and tokens per facet.

Runs `extract_facets` with the default facets over the first N conversations of the
shipped sample (not scrubbed: the scrubber only swaps a few names for placeholders) with
the packaged Gemma 3 270M, through the same client the flow uses, without a cache.

Modes (`--decoding`): `guided` (the default: structure fed, values sampled, see
`clio.llm.guided`) and `free` (the earlier way: the whole JSON sampled, the grammar only
as fallback), to compare. The first call of each llama.cpp context evaluates the shared
prompt prefix and is left out of the timing (`--warm`), as a long run pays it once.

Wall time depends on what else the machine runs, so CPU time (this process, all threads)
is reported beside it with the load average; on an idle machine with one one-thread
context per core, wall time is about CPU time / contexts.

Tokens per conversation: prompt tokens (all, and those actually evaluated after the
cached prefix), sampled tokens, and per facet the tokens of its value in the answer and
of its share of the shared prefix (its instruction line and example values).

Usage: `python bench/llm_facets.py [--limit 40] [--contexts N] [--decoding free] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clio.config import IngestConfig, LLMConfig, builtin_facets  # noqa: E402
from clio.facets import extract_facets, facet_examples, facet_instruction  # noqa: E402
from clio.ingest import ingest, sample_path  # noqa: E402
from clio.llm.client import StructuredLLM  # noqa: E402
from clio.llm.local import LocalBackend  # noqa: E402
from clio.records import ScrubbedConversation  # noqa: E402


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def sample_conversations(limit: int) -> list[ScrubbedConversation]:
    # The sample has no user ids: count each conversation as its own user, as
    # configs/sample.yaml does (the default would quarantine them all).
    sample_ingest = IngestConfig(missing_user_id="per_conversation")
    raw = ingest([sample_path()], sample_ingest, limit=limit).conversations
    return [
        ScrubbedConversation(
            conversation_id=c.conversation_id,
            user_pseudonym=c.user_id,
            timestamp=c.timestamp,
            messages=c.messages,
            source=c.source,
            content_hash=c.content_hash(),
        )
        for c in raw
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=40, help="timed conversations")
    parser.add_argument("--contexts", type=int, default=None, help="llama.cpp contexts")
    parser.add_argument("--threads", type=int, default=None, help="threads per context")
    parser.add_argument("--decoding", choices=["guided", "free"], default="guided")
    parser.add_argument("--max-input-chars", type=int, default=LLMConfig().max_input_chars)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    config = LLMConfig(max_input_chars=args.max_input_chars)
    facets = [f for f in builtin_facets("llm") if f.extractor == "llm"]
    backend = LocalBackend(
        threads=args.threads,
        contexts=args.contexts,
        grammar="guided" if args.decoding == "guided" else "fallback",
    )
    llm = StructuredLLM(backend, config, cache=None)
    warm = backend.contexts
    conversations = sample_conversations(args.limit + warm)
    load = os.getloadavg()[0]

    # Warm-up: one call per context loads the model and evaluates the shared prefix.
    extract_facets(conversations[:warm], facets, llm, max_input_chars=config.max_input_chars)
    timed = conversations[warm:]
    usage_before = llm.usage.as_dict()
    stats = backend.pool.stats
    evaluated_before = stats.evaluated_tokens
    wall, cpu = time.perf_counter(), _cpu_seconds()
    values = extract_facets(timed, facets, llm, max_input_chars=config.max_input_chars)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    usage = {k: v - usage_before[k] for k, v in llm.usage.as_dict().items()}

    n = len(timed)
    with backend.pool.context() as context:
        count = context.tokenize
        per_facet: dict[str, dict[str, float]] = {}
        examples = facet_examples(facets, config.max_input_chars)
        instruction_lines = facet_instruction(facets).splitlines()
        for facet in facets:
            answers = [v.value for v in values if v.facet == facet.name and v.status == "ok"]
            value_tokens = [len(count(json.dumps(a).encode(), bos=False)) for a in answers]
            line = next(x for x in instruction_lines if x.startswith(f"- {facet.name} "))
            prefix = len(count(line.encode(), bos=False)) + sum(
                len(count(json.dumps(e.output[facet.name]).encode(), bos=False))
                for e in examples
                if facet.name in e.output
            )
            per_facet[facet.name] = {
                "value_tokens_per_conversation": round(sum(value_tokens) / max(len(answers), 1), 1),
                "shared_prefix_tokens": prefix,
                "failed": sum(1 for v in values if v.facet == facet.name and v.status != "ok"),
            }
    concern = Counter(v.value for v in values if v.facet == "concerning")
    report = {
        "sample": sample_path().name,
        "conversations": n,
        "decoding": args.decoding,
        "contexts": backend.contexts,
        "threads_per_context": backend.threads,
        "cpus": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "conversations_per_second": round(n / wall, 3),
        "seconds_per_conversation": round(wall / n, 2),
        "cpu_seconds_per_conversation": round(cpu / n, 2),
        "backend_calls_per_conversation": round(usage["calls"] / n, 2),
        "prompt_tokens_per_conversation": round(usage["input_tokens"] / n, 1),
        "evaluated_prompt_tokens_per_conversation": (
            round((stats.evaluated_tokens - evaluated_before) / n, 1)
            if args.decoding == "guided"
            else None
        ),
        "sampled_tokens_per_conversation": round(usage["output_tokens"] / n, 1),
        "failed_conversations": usage["failures"],
        "facets": per_facet,
        "concerning_distribution": {str(k): v for k, v in sorted(concern.items(), key=str)},
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"facet step, {n} conversations, {args.decoding} decoding, {backend.contexts} "
            f"context(s) x {backend.threads} thread(s), {os.cpu_count()} CPUs, "
            f"load average {load:.2f} at start"
        )
        for key in (
            "wall_seconds",
            "cpu_seconds",
            "conversations_per_second",
            "seconds_per_conversation",
            "cpu_seconds_per_conversation",
            "backend_calls_per_conversation",
            "prompt_tokens_per_conversation",
            "evaluated_prompt_tokens_per_conversation",
            "sampled_tokens_per_conversation",
            "failed_conversations",
            "concerning_distribution",
        ):
            print(f"  {key:<42} {report[key]}")
        print(
            f"  {'facet':<12} {'value tokens/conv':>18} {'shared prefix tokens':>21} {'failed':>7}"
        )
        for name, row in per_facet.items():
            print(
                f"  {name:<12} {row['value_tokens_per_conversation']:>18} "
                f"{row['shared_prefix_tokens']:>21} {row['failed']:>7}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
