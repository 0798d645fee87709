"""Run `bench/scale.py` at several sizes, each in its own process, and report the growth.

Each run's JSON object is appended to `outputs/bench/scale.jsonl` (with the time it was
taken) as soon as it finishes, so a long series keeps what it measured if it is stopped;
its stderr goes to `outputs/bench/scale-N.log`.
Then the table of the latest run at each n is printed and a log-log plot of per-stage
time and peak memory against n is written to `outputs/bench/scale.png`; with
`--plot-only` nothing is run, the plot and table are made from the file as it is.

Usage: `python bench/scale_report.py [--sizes 1000,10000,100000] [--plot-only]
[-- extra arguments for scale.py]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "outputs" / "bench"
RESULTS = OUT_DIR / "scale.jsonl"
PLOT = OUT_DIR / "scale.png"
DEFAULT_SIZES = (1000, 10_000, 100_000)
STAGES = ("ingest", "scrub", "facets", "store", "embed", "cluster", "hierarchy", "gate", "release")


def run_one(n: int, extra: Sequence[str], results: Path) -> dict[str, Any]:
    """One `scale.py --n N --json` in a fresh process; its report, appended to `results`."""
    command = [sys.executable, str(ROOT / "bench" / "scale.py"), "--n", str(n), "--json", *extra]
    log = results.parent / f"scale-{n}.log"  # the run's stderr (counts only, no text)
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as stderr:
        done = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, check=False
        )
    if done.returncode != 0:
        sys.stderr.write(log.read_text(encoding="utf-8")[-4000:])
        raise SystemExit(f"scale.py --n {n} failed with exit code {done.returncode}; log: {log}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    report["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(report) + "\n")
    return report


def latest_by_n(results: Path) -> list[dict[str, Any]]:
    """The last report for each n in the results file, smallest n first."""
    latest: dict[int, dict[str, Any]] = {}
    if results.is_file():
        for line in results.read_text(encoding="utf-8").splitlines():
            if line.strip():
                report = json.loads(line)
                latest[int(report["n"])] = report
    return [latest[n] for n in sorted(latest)]


def table(reports: Sequence[dict[str, Any]]) -> str:
    """Seconds per stage (and peak RSS in MB) by n, one column per n."""
    if not reports:
        return "no results yet"
    header = f"{'':<22}" + "".join(f"{'n=' + str(r['n']):>14}" for r in reports)
    lines = [header]
    for stage in STAGES:
        if any(stage in r["stages"] for r in reports):
            cells = [r["stages"].get(stage) for r in reports]
            lines.append(f"{stage + ' s':<22}" + "".join(_cell(c) for c in cells))
    lines.append(f"{'non-LLM s':<22}" + "".join(_cell(r["non_llm_seconds"]) for r in reports))
    lines.append(
        f"{'LLM s (extrapolated)':<22}" + "".join(_cell(r.get("llm_seconds")) for r in reports)
    )
    lines.append(f"{'peak RSS MB (run)':<22}" + "".join(_cell(r["peak_rss_mb"]) for r in reports))
    lines.append(
        f"{'peak RSS MB (non-LLM)':<22}" + "".join(_cell(non_llm_peak(r)) for r in reports)
    )
    for stage in STAGES:
        if any(stage in r.get("stage_peak_rss_mb", {}) for r in reports):
            cells = [r.get("stage_peak_rss_mb", {}).get(stage) for r in reports]
            lines.append(f"{'  ' + stage + ' peak MB':<22}" + "".join(_cell(c) for c in cells))
    shares = [r.get("embedding", {}).get("share_of_raw") for r in reports]
    lines.append(
        f"{'embed % of raw model':<22}"
        + "".join(_cell(None if s is None else 100 * s) for s in shares)
    )
    lines.append(
        f"{'load avg at start':<22}"
        + "".join(_cell(r["load_average_at_start"][0]) for r in reports)
    )
    return "\n".join(lines)


def non_llm_peak(report: dict[str, Any]) -> float:
    """Peak RSS (MB) over the non-LLM stages (older reports have only the stage peaks)."""
    if "non_llm_peak_rss_mb" in report:
        return float(report["non_llm_peak_rss_mb"])
    return max(report.get("stage_peak_rss_mb", {}).values(), default=0.0)


def _cell(value: float | None) -> str:
    if value is None:
        return f"{'-':>14}"
    return f"{value:>14.1f}" if value < 1000 else f"{value:>14.0f}"


def plot(reports: Sequence[dict[str, Any]], path: Path) -> None:
    """Log-log plot: seconds per stage and in total (left), peak RSS (right), against n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in reports]
    fig, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(13, 5.5))
    for stage in STAGES:
        points = [(r["n"], r["stages"][stage]) for r in reports if r["stages"].get(stage)]
        if points:
            time_axis.plot(*zip(*points, strict=True), marker="o", label=stage)
    time_axis.plot(
        ns, [r["non_llm_seconds"] for r in reports], "k-", marker="s", lw=2.5, label="non-LLM total"
    )
    llm = [(r["n"], r["llm_seconds"]) for r in reports if r.get("llm_seconds")]
    if llm:
        time_axis.plot(*zip(*llm, strict=True), "k--", marker="^", label="LLM (extrapolated)")
    linear = [ns[0], ns[-1]]
    base = reports[0]["non_llm_seconds"]
    time_axis.plot(linear, [base, base * ns[-1] / ns[0]], ":", color="grey", label="linear in n")
    time_axis.axhline(45 * 60, color="red", lw=0.8, ls="--", label="45 min target")
    time_axis.set(xscale="log", yscale="log", xlabel="conversations (n)", ylabel="seconds")
    time_axis.set_title("Time per stage")
    time_axis.legend(fontsize=7, ncol=2)
    time_axis.grid(True, which="both", alpha=0.3)

    memory_axis.plot(
        ns, [non_llm_peak(r) for r in reports], "k-", marker="s", lw=2.5, label="non-LLM peak"
    )
    memory_axis.plot(
        ns, [r["peak_rss_mb"] for r in reports], "k--", marker="^", label="run peak (with LLM)"
    )
    for stage in STAGES:
        points = [
            (r["n"], r["stage_peak_rss_mb"][stage])
            for r in reports
            if r.get("stage_peak_rss_mb", {}).get(stage)
        ]
        if points:
            memory_axis.plot(*zip(*points, strict=True), marker=".", lw=0.8, label=stage)
    memory_axis.axhline(6 * 1024, color="red", lw=0.8, ls="--", label="6 GiB target")
    memory_axis.set(xscale="log", yscale="log", xlabel="conversations (n)", ylabel="peak RSS (MB)")
    memory_axis.set_title("Peak memory (process and its children)")
    memory_axis.legend(fontsize=7, ncol=2)
    memory_axis.grid(True, which="both", alpha=0.3)
    fig.suptitle("clio non-LLM stages against n (log-log)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=",".join(str(n) for n in DEFAULT_SIZES), help="comma-separated n"
    )
    parser.add_argument("--plot-only", action="store_true", help="only table and plot the file")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if not args.plot_only:
        for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
            report = run_one(n, extra, args.results)
            print(
                f"n={n}: non-LLM {report['non_llm_seconds']:.0f} s, "
                f"peak {report['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    reports = latest_by_n(args.results)
    print(table(reports))
    if reports:
        plot(reports, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
