"""`clio run --estimate` against the run it estimates: calls, tokens and seconds, both ways.

Runs `clio run --estimate --json` and then `clio run` with the same arguments into a
fresh output directory, and prints one JSON object: the estimate's figures, the run's
(its operator manifest, its log's LLM timings, the process's wall time) and the error of
each. Facet and gate figures are split by the answers the private store cached. With
`--oasst N`, the input is the first N Chinese conversations of the shared
`oasst1_zh_llamafactory` set, written as `messages` with a user id each (the held-out
check in docs/SCALE.md); otherwise the shipped sample, `--limit N`.

Usage (heavy: wrap in `flock /work/heavy.lock`):
`python bench/estimate_check.py --out DIR [--limit 20 | --oasst 100] [--config FILE]
[--data ../shared/data]`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
OASST = Path("oasst1_zh_llamafactory") / "oaast_sft_zh.json"  # under --data
DONE = re.compile(r"clio\.llm: (.+): done, \d+/\d+ call in ([\d.]+)s")


def write_oasst(path: Path, data: Path, n: int) -> None:
    rows = json.loads((data / OASST).read_text(encoding="utf-8"))[:n]
    with path.open("w", encoding="utf-8") as out:
        for i, row in enumerate(rows):
            messages = []
            for user, assistant in row.get("history") or []:
                messages += [{"role": "user", "content": user}]
                messages += [{"role": "assistant", "content": assistant}]
            question = row["instruction"] + (f"\n{row['input']}" if row["input"] else "")
            messages += [{"role": "user", "content": question}]
            messages += [{"role": "assistant", "content": row["output"]}]
            record = {"id": f"z{i:03d}", "user_id": f"zu{i}", "messages": messages}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def clio(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "clio.cli", *args], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return done.stdout


def cached_split(private: Path) -> dict[str, dict[str, int]]:
    """Answers, input and output tokens in the store's LLM cache, by kind of answer."""
    split: dict[str, dict[str, int]] = {}
    with duckdb.connect(str(private), read_only=True) as con:
        rows = con.execute("SELECT response, input_tokens, output_tokens FROM llm_cache")
        for response, n_in, n_out in rows.fetchall():
            answer = json.loads(response)
            kind = "facets" if "task" in answer else "gate" if "score" in answer else "names"
            entry = split.setdefault(kind, {"answers": 0, "input_tokens": 0, "output_tokens": 0})
            entry["answers"] += 1
            entry["input_tokens"] += n_in
            entry["output_tokens"] += n_out
    return split


def error(estimated: float, measured: float) -> float | None:
    return round((estimated - measured) / measured, 3) if measured else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="a new output directory")
    parser.add_argument("--config", default=str(ROOT / "configs" / "sample.yaml"))
    parser.add_argument("--limit", default="20")
    parser.add_argument("--oasst", type=int, default=None)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: give a new output directory")
    inputs: list[str] = ["--limit", args.limit]
    if args.oasst:
        path = args.out.parent / f"{args.out.name}-oasst{args.oasst}.jsonl"
        write_oasst(path, args.data, args.oasst)
        inputs = ["--input", str(path)]
    common = ["--config", args.config, *inputs, "--output-dir", str(args.out)]

    estimate = json.loads(clio("run", "--estimate", "--json", *common))
    start = time.perf_counter()
    clio("run", *common)
    wall = time.perf_counter() - start

    manifest = json.loads((args.out / "private" / "manifest.json").read_text())
    llm_seconds = sum(
        float(m.group(2)) for m in DONE.finditer((args.out / "logs" / "clio.log").read_text())
    )
    run_seconds = (
        datetime.fromisoformat(manifest["finished_at"])
        - datetime.fromisoformat(manifest["started_at"])
    ).total_seconds()
    split = cached_split(args.out / "private" / "private.duckdb")
    facets = next(s for s in estimate["steps"] if s["name"].startswith("facets"))
    total = estimate["total"]
    pairs = {
        "llm_calls": (total["calls"], manifest["llm"]["calls"]),
        "input_tokens": (total["input_tokens"], manifest["llm"]["input_tokens"]),
        "output_tokens": (total["output_tokens"], manifest["llm"]["output_tokens"]),
        "facet_input_tokens": (facets["input_tokens"], split["facets"]["input_tokens"]),
        "facet_output_tokens": (facets["output_tokens"], split["facets"]["output_tokens"]),
        "llm_seconds": (total["llm_seconds"], round(llm_seconds, 1)),
        "other_stages_seconds": (
            total["other_stages_seconds"],
            round(run_seconds - llm_seconds, 1),
        ),
        "whole_run_seconds": (total["seconds"], round(wall, 1)),
    }
    report = {
        "args": common,
        "figures": {
            name: {"estimated": e, "measured": m, "error": error(e, m)}
            for name, (e, m) in pairs.items()
        },
        "cached_answers_by_kind": split,
        "clusters_built": manifest["release"]["clusters_built"],
        "texts_audited": manifest["release"]["text_checks"].get("texts_audited", 0),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
