"""The real Prefect flow, in process, against a stored golden release.

60 conversations of the shipped sample go through the whole flow (real Presidio, real
embedder, real clustering, a real DuckDB release) with the openai-compatible backend
pointed at a loopback server whose answers are a pure function of the prompt. Then 20
more arrive as an incremental run. Every released row and the manifest's counts are
compared with `tests/fixtures/golden/`, so a change that alters what a run releases
fails here. After a change that is meant to alter it, regenerate the files with
`CLIO_UPDATE_GOLDEN=1 python -m pytest tests/test_golden_flow.py` and review the diff.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.fakes.loopback import LoopbackServer, Reply, Seen

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
SAMPLE = ROOT / "clio" / "samples" / "hh_rlhf_harmless_base_test.jsonl.gz"
N_FIRST, N_MORE = 60, 20

CONFIG = """
llm:
  backend: openai-compatible
  base_url: {url}/v1
  model: golden-model
  concurrency: 2
privacy: {{min_users: 3, min_conversations: 3}}
cluster: {{target_cluster_size: 8}}
hierarchy: {{branching: 3, top_clusters: 2}}
"""

_WORD = re.compile(r"[A-Za-z][A-Za-z']*")


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _fill(schema: dict[str, Any], name: str, text: str) -> Any:
    """A valid value for `schema`, taken from the words of `text` (the prompt's input)."""
    words = _WORD.findall(text) or ["general"]
    seed = _digest(name + text)
    if "enum" in schema:
        return schema["enum"][seed % len(schema["enum"])]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: _fill(sub, key, text) for key, sub in properties.items()}
    if kind == "array":
        return [_fill(schema.get("items", {}), name, text)]
    if kind in ("integer", "number"):
        if name == "score":  # the privacy audit: every text passes
            return 5
        low, high = int(schema.get("minimum", 1)), int(schema.get("maximum", 5))
        return low + seed % (high - low + 1)
    start = 1 if words[0] in ("User", "Conversation", "Cluster") else 0
    phrase = " ".join(words[start : start + 10])
    return phrase[: int(schema.get("maxLength", 160))].strip() or "general"


def _answer(seen: Seen) -> Reply:
    schema = seen.body["response_format"]["json_schema"]["schema"]
    text = seen.body["messages"][-1]["content"]
    message = {"content": json.dumps(_fill(schema, "", text))}
    usage = {"prompt_tokens": len(text) // 4, "completion_tokens": 8}
    return Reply(200, {"choices": [{"message": message}], "usage": usage})


def _write_sample(path: Path, start: int, stop: int) -> None:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as src, path.open("w") as dst:
        for i, line in enumerate(src):
            if start <= i < stop:
                row = json.loads(line)
                record = {
                    "id": f"s{i:03d}",
                    "user_id": f"user{i // 2}",
                    "transcript": row["chosen"],
                }
                dst.write(json.dumps(record) + "\n")


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _released(out: Path) -> dict[str, list[list[Any]]]:
    queries = {
        "runs": "SELECT * EXCLUDE (started_at, finished_at) FROM runs ORDER BY run_id",
        "clusters": "SELECT * FROM clusters ORDER BY run_id, facet, level, cluster_id",
        "facet_breakdowns": "SELECT * FROM facet_breakdowns "
        "ORDER BY run_id, cluster_id, facet, value",
        "cluster_lineage": "SELECT * FROM cluster_lineage "
        "ORDER BY run_id, cluster_id, previous_cluster_id",
    }
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as con:
        return {
            table: [[_round(v) for v in row] for row in con.execute(sql).fetchall()]
            for table, sql in queries.items()
        }


def _manifest_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    release = {k: v for k, v in manifest["release"].items() if k != "path"}
    return {
        "mode": manifest["mode"],
        "counts": manifest["counts"],
        "incremental": manifest["incremental"],
        "release": release,
        "llm_calls": manifest["llm"]["calls"],
        "llm_cached_calls": manifest["llm"]["cached_calls"],
    }


def _snapshot(out: Path, manifest: dict[str, Any], run_ids: list[str]) -> dict[str, Any]:
    """Released rows and manifest facts, with run ids and the config hash (which holds the
    loopback server's port) replaced by stable placeholders, and so the released cluster
    ids (a keyed hash of the build, whose id is the full run's): each becomes
    `<facet>-L<level>-#<n>`, numbered in the order of its first row's content."""
    released = _released(out)
    text = json.dumps(
        {"released": released, "manifest": _manifest_facts(manifest)},
        indent=1,
        sort_keys=True,
        default=str,
    )
    first_rows = sorted(
        released["clusters"], key=lambda r: json.dumps([r[1], r[2], *r[5:]], default=str)
    )
    placeholders: dict[str, str] = {}
    for row in first_rows:
        placeholders.setdefault(row[3], f"{row[1]}-L{row[2]}-#{len(placeholders)}")
    for cluster_id, placeholder in placeholders.items():
        text = text.replace(cluster_id, placeholder)
    for n, run_id in enumerate(run_ids):
        text = text.replace(run_id, f"<run {n}>")
    text = text.replace(manifest["config_hash"], "<config hash>")
    snapshot = json.loads(text)
    # Run ids hold the port, so their order differs between runs: sort on the placeholders.
    for table, rows in snapshot["released"].items():
        snapshot["released"][table] = sorted(rows, key=json.dumps)
    return snapshot


def _check(name: str, snapshot: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.json"
    if os.environ.get("CLIO_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    for table in ("runs", "clusters", "facet_breakdowns"):
        got, want = snapshot["released"][table], expected["released"][table]
        for n, (row, golden_row) in enumerate(zip(got, want, strict=False)):
            assert row == golden_row, f"{name}: {table} row {n} differs"
        assert len(got) == len(want), f"{name}: {table} has {len(got)} rows, golden {len(want)}"
    assert snapshot["manifest"] == expected["manifest"]


@pytest.fixture(scope="module")
def golden_runs(tmp_path_factory, prefect_harness):
    from flows.pipeline import clio_run

    tmp = tmp_path_factory.mktemp("golden")
    first, more = tmp / "first.jsonl", tmp / "more.jsonl"
    _write_sample(first, 0, N_FIRST)
    _write_sample(more, N_FIRST, N_FIRST + N_MORE)
    out = tmp / "out"
    os.environ["CLIO_HMAC_KEY"] = "golden-key-not-secret"
    try:
        with LoopbackServer(_answer) as server:
            config = tmp / "golden.yaml"
            config.write_text(CONFIG.format(url=server.url))
            full = clio_run(input_paths=[str(first)], output_dir=str(out), config_path=str(config))
            full_snapshot = _snapshot(out, full, [full["run_id"]])
            added = clio_run(
                input_paths=[str(more)],
                output_dir=str(out),
                config_path=str(config),
                mode="incremental",
            )
            added_snapshot = _snapshot(out, added, [full["run_id"], added["run_id"]])
    finally:
        del os.environ["CLIO_HMAC_KEY"]
    return full, full_snapshot, added, added_snapshot


def test_a_full_run_releases_the_golden_rows(golden_runs):
    full, snapshot, _, _ = golden_runs
    assert full["mode"] == "full"
    assert snapshot["released"]["clusters"], "the golden run must release clusters"
    _check("flow_full", snapshot)


def test_an_incremental_run_releases_the_golden_rows(golden_runs):
    _, _, added, snapshot = golden_runs
    assert added["mode"] == "incremental"
    assert added["incremental"]["new_conversations"] == N_MORE
    _check("flow_incremental", snapshot)
