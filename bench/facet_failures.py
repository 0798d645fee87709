"""Facet failures on long real conversations, by conversation length.

Takes the longest tenth (by rendered characters, before any cut) of the HH-RLHF
harmless-base test conversations and of the OpenAssistant oasst1 Chinese conversations in
the shared data, and extracts their facets (the config's facets, default
configs/default.yaml: the packaged local model) through the client the flow uses, without
a cache and without scrubbing (the scrubber only swaps a few spans for placeholders).
`--limit N` keeps N of them, evenly spaced by length, so every length stays represented.

Prints the share of conversations whose LLM facets failed: overall, by source and by
length quartile, with each failure's cause (the prompt overflowing the context, an answer
longer than allowed, an invalid answer), and per group the prompt tokens the character
cut (`llm.max_input_chars`) leaves, counted with the model's vocabulary (median and
maximum), how many of those prompts plus `max_output_tokens` exceed the context ("over
ctx"), and how many prompts the backend cut further to fit its context ("cut"; `-` where
the backend has no token budget).

Offline. Usage (heavy: wrap in `flock /work/heavy.lock`):
`python bench/facet_failures.py [--limit 160] [--context-tokens 2048]
[--max-input-chars 16000] [--config configs/default.yaml] [--data ../shared/data] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clio.config import IngestConfig, RunConfig, load_config  # noqa: E402
from clio.facets import extract_facets, facet_call, render_conversation  # noqa: E402
from clio.ingest import ingest  # noqa: E402
from clio.llm.client import StructuredLLM  # noqa: E402
from clio.llm.factory import build_backend, prompt_style, token_counter  # noqa: E402
from clio.llm.render import completion_parts  # noqa: E402
from clio.records import Conversation, ScrubbedConversation  # noqa: E402

SOURCES = {
    "hh_rlhf": Path("hh_rlhf_harmless_base_test") / "harmless-base_test.jsonl.gz",
    "oasst_zh": Path("oasst1_zh_llamafactory") / "oaast_sft_zh.json",
}
UNCUT = 10**9  # characters: render a conversation whole
# The cause of a failure, from its last attempt's error (first match wins).
CAUSES = (
    ("context", ("does not fit the context", "exceed context window")),
    ("answer_too_long", ("longer than",)),
    ("invalid_answer", ("invalid answer",)),
)
BUCKETS = 4


@dataclass
class Case:
    source: str
    conversation: ScrubbedConversation
    chars: int  # rendered, uncut


def scrubbed(conversation: Conversation) -> ScrubbedConversation:
    return ScrubbedConversation(
        conversation_id=conversation.conversation_id,
        user_pseudonym=conversation.user_id,
        timestamp=conversation.timestamp,
        messages=conversation.messages,
        source=conversation.source,
        content_hash=conversation.content_hash(),
    )


def longest_tenth(source: str, path: Path) -> list[Case]:
    """The longest tenth of a file's conversations by rendered characters (ties by id)."""
    read = ingest([path], IngestConfig(missing_user_id="per_conversation"))
    cases = [
        Case(source, scrubbed(c), len(render_conversation(c.messages, UNCUT)))
        for c in read.conversations
    ]
    cases.sort(key=lambda c: (-c.chars, c.conversation.conversation_id))
    return cases[: -(-len(cases) // 10)]


def evenly_spaced(cases: list[Case], limit: int | None) -> list[Case]:
    """`limit` cases spread over the length order (all of them without a limit)."""
    ordered = sorted(cases, key=lambda c: (c.chars, c.conversation.conversation_id))
    if limit is None or limit >= len(ordered):
        return ordered
    return [ordered[i * len(ordered) // limit] for i in range(limit)]


def cause(error: str) -> str:
    last = error.rsplit("attempt ", 1)[-1]
    for name, needles in CAUSES:
        if any(n in last for n in needles):
            return name
    return "other"


def rate(failed: int, n: int) -> float | None:
    return round(failed / n, 4) if n else None


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r for r in rows if r["failed"]]
    tokens = [r["prompt_tokens"] for r in rows if r["prompt_tokens"] is not None]
    cut = [r["token_cut"] for r in rows if r["token_cut"] is not None]
    return {
        "conversations": len(rows),
        "chars_min": min((r["chars"] for r in rows), default=None),
        "chars_max": max((r["chars"] for r in rows), default=None),
        "failed": len(failed),
        "failure_rate": rate(len(failed), len(rows)),
        "causes": dict(sorted(Counter(r["cause"] for r in failed).items())),
        "prompt_tokens_median": round(statistics.median(tokens)) if tokens else None,
        "prompt_tokens_max": max(tokens, default=None),
        "over_context": sum(r["over_context"] for r in rows),
        "cut_to_fit": sum(cut) if cut else None,
    }


def measure(config: RunConfig, cases: list[Case]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    llm_config = config.llm
    backend = build_backend(llm_config)
    llm = StructuredLLM(backend, llm_config, cache=None)
    call = facet_call(config.facets, llm_config.max_input_chars)
    if call is None:
        raise SystemExit("the config asks no facet of the LLM")
    counter = token_counter(llm_config) if prompt_style(llm_config) == "completion" else None
    fit = getattr(backend, "fit", None)  # the token budget, where the backend has one
    schema = call.model.model_json_schema()
    llm_names = {f.name for f in config.facets if f.extractor == "llm"}

    conversations = [c.conversation for c in cases]
    wall = time.perf_counter()
    values = extract_facets(
        conversations, config.facets, llm, max_input_chars=llm_config.max_input_chars
    )
    wall = time.perf_counter() - wall
    errors = {
        v.conversation_id: v.error or ""
        for v in values
        if v.facet in llm_names and v.status == "failed"
    }

    rows = []
    for case in cases:
        prompt = call.prompt(case.conversation.messages)
        tokens = None
        if counter is not None:
            shared, own = completion_parts(prompt)
            tokens = counter.count(shared, bos=True) + counter.count(own)
        cid = case.conversation.conversation_id
        rows.append(
            {
                "source": case.source,
                "conversation_id": cid,
                "chars": case.chars,
                "prompt_tokens": tokens,
                "over_context": tokens is not None
                and tokens + llm_config.max_output_tokens > llm_config.context_tokens,
                "token_cut": (
                    fit(prompt, schema, max_tokens=llm_config.max_output_tokens).input
                    != prompt.input
                    if fit is not None
                    else None
                ),
                "failed": cid in errors,
                "cause": cause(errors[cid]) if cid in errors else None,
            }
        )
    run = {"wall_seconds": round(wall, 1), "llm_usage": llm.usage.as_dict()}
    return rows, run


def report(args: argparse.Namespace, config: RunConfig, rows: list[dict[str, Any]]) -> dict:
    ordered = sorted(rows, key=lambda r: (r["chars"], r["conversation_id"]))
    buckets = [
        summary([r for i, r in enumerate(ordered) if i * BUCKETS // len(ordered) == b])
        for b in range(BUCKETS)
    ]
    return {
        "context_tokens": config.llm.context_tokens,
        "max_input_chars": config.llm.max_input_chars,
        "max_output_tokens": config.llm.max_output_tokens,
        "config": str(args.config),
        "overall": summary(rows),
        "by_source": {s: summary([r for r in rows if r["source"] == s]) for s in SOURCES},
        "by_length_quartile": buckets,
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"facet failures, longest tenth of HH-RLHF and oasst1-zh: context_tokens "
        f"{result['context_tokens']}, max_input_chars {result['max_input_chars']}, "
        f"max_output_tokens {result['max_output_tokens']}; "
        f"{result['wall_seconds']} s, {result['cpus']} CPUs"
    )
    header = (
        f"  {'group':<14} {'n':>4} {'chars':>13} {'failed':>6} {'rate':>7} "
        f"{'tokens p50/max':>15} {'over ctx':>8} {'cut':>5}  causes"
    )
    print(header)
    groups = [("all", result["overall"])]
    groups += list(result["by_source"].items())
    groups += [(f"quartile {i + 1}", b) for i, b in enumerate(result["by_length_quartile"])]
    for name, g in groups:
        chars = f"{g['chars_min']}-{g['chars_max']}"
        tokens = f"{g['prompt_tokens_median']}/{g['prompt_tokens_max']}"
        failure_rate = "-" if g["failure_rate"] is None else f"{g['failure_rate']:.1%}"
        cut = "-" if g["cut_to_fit"] is None else g["cut_to_fit"]
        print(
            f"  {name:<14} {g['conversations']:>4} {chars:>13} {g['failed']:>6} "
            f"{failure_rate:>7} {tokens:>15} {g['over_context']:>8} {cut:>5}  {g['causes']}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="conversations measured")
    parser.add_argument("--context-tokens", type=int, default=None)
    parser.add_argument("--max-input-chars", type=int, default=None)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    config = load_config(args.config)
    changes = {
        k: v
        for k, v in {
            "context_tokens": args.context_tokens,
            "max_input_chars": args.max_input_chars,
        }.items()
        if v is not None
    }
    llm = type(config.llm).model_validate({**config.llm.model_dump(), **changes})
    config = config.model_copy(update={"llm": llm})
    cases = [c for s, p in SOURCES.items() for c in longest_tenth(s, args.data / p)]
    cases = evenly_spaced(cases, args.limit)

    rows, run = measure(config, cases)
    result = {**report(args, config, rows), **run, "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
