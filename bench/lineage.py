"""Cluster identity across builds: how many released clusters keep their ids.

Runs the real pipeline (`run_pipeline`, in this process: ingest, Presidio scrub, facets,
embeddings, k-means, hierarchy, gate, release) over HH-RLHF harmless-base test
conversations from the shared data, with non-LLM facets only (`request` = the user's
first turn, `language`; extractive names), and measures from the private store:

1. reorder: A, then the same conversations in reverse order as a full run (they are
   scrubbed again under new conversation ids; `incremental.max_distance`, which shapes no
   tree, differs so the second run is a run of its own): share of the released clusters
   (every level) whose id is released again.
2. growth: A, then a rebuild with B (fresh conversations, 5% and 20% of A) into the same
   output directory, with and without warm start, and a control with lineage off: share
   of A's released base clusters, by users, whose id is released again with the same
   members (Jaccard overlap of A's conversations, by content hash, at least 0.6).
3. incremental then rebuild: A, an incremental run with B (5%), then a rebuild with no
   new input: share of the clusters the rebuild left unchanged (same members by content
   hash) that keep their id, and share of the incremental release's clusters released
   again under their id with overlap at least 0.6.
4. the attack suite (`audit_release`) on every store above: findings (expected 0).

Nothing here was tuned on these conversations: `lineage.min_overlap` is 0.5 by default
and the 0.6 survival cut is the issue's.

Usage: `python bench/lineage.py [--n 600] [--json] [--work-dir DIR]`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clio.config import FacetConfig, RunConfig  # noqa: E402
from clio.gate.public import keyed_ids, release_id_key  # noqa: E402
from clio.incremental import Mode  # noqa: E402
from clio.pipeline.components import hmac_key  # noqa: E402
from clio.pipeline.paths import RunPaths  # noqa: E402
from clio.pipeline.run import run_pipeline  # noqa: E402
from clio.pipeline.stages import extended_build  # noqa: E402
from clio.release_audit import audit_release  # noqa: E402
from clio.released import LANGUAGE_FACET, released_sizes  # noqa: E402
from clio.store import PrivateStore  # noqa: E402

DATA = Path("/work/shared/data/hh_rlhf_harmless_base_test/harmless-base_test.jsonl.gz")
SURVIVAL_OVERLAP = 0.6


def config(warm_start: bool = True, lineage: bool = True, max_distance: float = 0.5) -> RunConfig:
    return RunConfig.model_validate(
        {
            "ingest": {"missing_user_id": "per_conversation"},
            "llm": {"backend": "local"},
            "facets": [
                FacetConfig(
                    name="request", kind="text", extractor="user_text", max_chars=160, cluster=True
                ).model_dump(),
                FacetConfig(
                    name=LANGUAGE_FACET, kind="category", extractor="language_id", breakdown=True
                ).model_dump(),
            ],
            "privacy": {"min_users": 5, "min_conversations": 5, "audit_released_text": False},
            "cluster": {"target_cluster_size": 20, "warm_start": warm_start},
            "hierarchy": {"branching": 3, "top_clusters": 4},
            "describe": {"names": "extractive"},
            "lineage": {"enabled": lineage},
            "incremental": {"max_distance": max_distance},
        }
    )


def write_rows(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(rows))
    return path


def run(cfg: RunConfig, inputs: list[Path], out: Path, mode: Mode) -> dict[str, Any]:
    return run_pipeline(cfg, [str(p) for p in inputs], out, None, None, mode=mode)


def released(out: Path, run_id: str) -> dict[str, tuple[int, int]]:
    """Released id -> (level, n_users) of the run."""
    return released_sizes(RunPaths(out).released, run_id)


def members_by_released_id(out: Path, build_id: str) -> dict[str, frozenset[str]]:
    """Released id -> the cluster's members (content hashes) in the build, with every
    conversation incremental runs added to it."""
    with PrivateStore(RunPaths(out).private) as store:
        tree, _ = extended_build(store.path, build_id, ["request"], store)
        lineage = store.build_lineage(build_id)
        key = release_id_key(hmac_key(config().scrub, store))
        public_id = keyed_ids(key, build_id, lineage.roots if lineage else None)
        hashes = store.content_hashes(sorted({m for c in tree for m in c.member_ids}))
    return {public_id(c): frozenset(hashes[m] for m in c.member_ids) for c in tree}


def findings(out: Path) -> int:
    return len(audit_release(RunPaths(out).released))


def reorder(work: Path, rows: list[str]) -> dict[str, Any]:
    out = work / "reorder"
    first = run(config(), [write_rows(work / "a.jsonl", rows)], out, "full")
    again = run(
        config(max_distance=0.51), [write_rows(work / "a-reversed.jsonl", rows[::-1])], out, "full"
    )
    before, after = released(out, first["run_id"]), released(out, again["run_id"])
    return {
        "released_before": len(before),
        "released_after": len(after),
        "share_keeping_id": round(len(before.keys() & after.keys()) / len(before), 4),
        "audit_findings": findings(out),
    }


def survival(base: Path, out: Path, first_run: str, second: dict[str, Any]) -> dict[str, Any]:
    """A's released base clusters, by users, released again with overlap >= 0.6 over A."""
    before = members_by_released_id(base, first_run)
    after = members_by_released_id(out, second["run_id"])
    then = {cid: users for cid, (level, users) in released(out, first_run).items() if level == 0}
    now = released(out, second["run_id"])
    a = frozenset(m for members in before.values() for m in members)
    kept = 0
    for cid, users in then.items():
        if cid not in now or cid not in after:
            continue  # not released again, or only as part of a carried parent's past rows
        old, new = before[cid], after[cid] & a
        if len(old & new) / len(old | new) >= SURVIVAL_OVERLAP:
            kept += users
    return {
        "share_by_users": round(kept / sum(then.values()), 4),
        "base_clusters": len(then),
        "lineage": second["release"].get("lineage"),
        "audit_findings": findings(out),
    }


def growth(work: Path, base: Path, first_run: str, extra: list[str], name: str) -> dict:
    b = write_rows(work / f"b-{name}.jsonl", extra)
    figures = {}
    for label, cfg in (
        ("warm_start", config()),
        ("cold_start", config(warm_start=False)),
        ("lineage_off", config(lineage=False)),
    ):
        out = work / f"growth-{name}-{label}"
        shutil.copytree(base, out)
        second = run(cfg, [b], out, "rebuild")
        figures[label] = survival(base, out, first_run, second)
    return figures


def incremental_then_rebuild(work: Path, base: Path, extra: list[str]) -> dict[str, Any]:
    out = work / "incremental"
    shutil.copytree(base, out)
    step = run(config(), [write_rows(work / "b-incr.jsonl", extra)], out, "incremental")
    build = step["build_id"]
    rebuilt = run(config(max_distance=0.51), [], out, "rebuild")
    before = members_by_released_id(out, build)
    after = members_by_released_id(out, rebuilt["run_id"])
    then = released(out, step["run_id"])
    now = released(out, rebuilt["run_id"])
    level = {cid: int(cid.split("-L")[1].split("-")[0]) for cid in {*before, *after}}
    by_members = {(level[cid], members): cid for cid, members in after.items()}
    unchanged = [cid for cid in then if (level[cid], before[cid]) in by_members]
    kept = [cid for cid in unchanged if by_members[(level[cid], before[cid])] == cid]
    # Most clusters gain or lose a boundary member when the rebuild re-clusters the
    # increment, so also: the incremental release's clusters released again under the same
    # id with nearly the same members.
    similar = [
        cid
        for cid in then
        if cid in now and cid in after and jaccard(before[cid], after[cid]) >= SURVIVAL_OVERLAP
    ]
    return {
        "released_incremental": len(then),
        "unchanged_by_the_rebuild": len(unchanged),
        "share_keeping_id": round(len(kept) / len(unchanged), 4) if unchanged else None,
        "share_keeping_id_with_overlap_0.6": round(len(similar) / len(then), 4) if then else None,
        "audit_findings": findings(out),
    }


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="conversations in A")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with gzip.open(DATA, "rt", encoding="utf-8") as handle:
        rows = [line if line.endswith("\n") else line + "\n" for line in handle]
    a, fresh = rows[: args.n], rows[args.n :]
    b5, b20 = fresh[: args.n // 20], fresh[args.n // 20 : args.n // 20 + args.n // 5]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="clio-lineage-"))
    work.mkdir(parents=True, exist_ok=True)
    base = work / "base"
    first = run(config(), [write_rows(work / "a.jsonl", a)], base, "full")
    figures = {
        "data": f"{DATA.name}: A = first {len(a)} rows, B = the next rows",
        "reorder": reorder(work, a),
        "growth_5pct": growth(work, base, first["run_id"], b5, "5"),
        "growth_20pct": growth(work, base, first["run_id"], b20, "20"),
        "incremental_then_rebuild": incremental_then_rebuild(work, base, b5),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for name, value in figures.items():
            print(f"{name}: {json.dumps(value)}")
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
