"""The two manifests of a real run: the public one holds only what anyone may read, the
operator one under `private/` holds everything, 0600, and `clio report` reads it.

The whole pipeline runs in process (real Presidio, embedder, clustering and DuckDB
release) with the openai-compatible backend pointed at a loopback server. The config
and the input carry strings a public manifest must not show (the backend's address, a
Dask scheduler address, an allow-list entry, the input file's name); the operator
manifest shows them, so the checks can fail.
"""

from __future__ import annotations

import json
import stat
from typing import Any

import duckdb
import pytest

from clio.cli import main
from clio.config import load_config
from clio.pipeline.report import public_manifest
from clio.pipeline.run import run_pipeline
from tests.fakes.chats import scripted_answers, two_per_user
from tests.fakes.loopback import LoopbackServer

SCHEDULER = "tcp://10.99.1.7:8786"
ALLOWED = "Quillfeather Analytics"
INPUT_NAME = "acme-support-export-2024.jsonl"
CONFIG = """
llm:
  backend: openai-compatible
  base_url: {url}/v1
  model: loopback-model
  concurrency: 2
scrub: {{allow_list: ["{allowed}"]}}
runner: {{address: "{scheduler}"}}
privacy: {{min_users: 2, min_conversations: 2, audit_released_text: false}}
cluster: {{target_cluster_size: 30}}
hierarchy: {{branching: 2, top_clusters: 1}}
facets:
  - name: request
    kind: text
    question: What did the user ask for?
    cluster: true
"""
PUBLIC_KEYS = {
    "audience",
    "run_id",
    "mode",
    "mode_requested",
    "mode_reason",
    "build_id",
    "started_at",
    "finished_at",
    "config_hash",
    "versions",
    "llm",
    "release",
    "privacy",
    "withheld",
}


def _id_less() -> list[dict[str, Any]]:
    """Three conversations without a user id, as one person's would be."""
    return [
        {**row, "conversation_id": f"anon-{n}", "user_id": None}
        for n, row in enumerate(two_per_user(3, ["Where can I buy a cheap bicycle?"]))
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("manifests")
    data = tmp / INPUT_NAME
    data.write_text("".join(json.dumps(row) + "\n" for row in two_per_user(12) + _id_less()))
    out = tmp / "out"
    with pytest.MonkeyPatch.context() as patch, LoopbackServer(scripted_answers(5)) as server:
        patch.setenv("CLIO_HMAC_KEY", "manifest-test-key")
        config_path = tmp / "config.yaml"
        config_path.write_text(CONFIG.format(url=server.url, allowed=ALLOWED, scheduler=SCHEDULER))
        manifest = run_pipeline(
            load_config(config_path), [str(data)], out, limit=None, config_path=str(config_path)
        )
        url = server.url
    return {"out": out, "manifest": manifest, "url": url, "input": data}


def _private_strings(run: dict[str, Any]) -> list[str]:
    """What the public manifest must not contain: addresses, names and paths."""
    return [run["url"], SCHEDULER, ALLOWED, INPUT_NAME, str(run["out"]), "private.duckdb"]


def test_the_operator_manifest_holds_everything_and_is_0600(run):
    out, manifest = run["out"], run["manifest"]
    operator = out / "private" / "manifest.json"
    per_run = out / "private" / "runs" / f"{manifest['run_id']}.json"
    for path in (operator, per_run):
        assert json.loads(path.read_text()) == manifest
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert manifest["audience"] == "operator"
    assert manifest["counts"]["n_conversations"] == 12  # the id-less three quarantined
    text = operator.read_text()
    for value in _private_strings(run):
        assert value in text, value  # the operator has them: the public check can fail


def test_the_public_manifest_holds_only_what_anyone_may_read(run):
    out, manifest = run["out"], run["manifest"]
    public = json.loads((out / "manifest.json").read_text())
    assert public == json.loads((out / "runs" / f"{manifest['run_id']}.json").read_text())
    assert public == json.loads(json.dumps(public_manifest(manifest)))
    assert set(public) == PUBLIC_KEYS
    assert public["audience"] == "public"
    assert public["run_id"] == manifest["run_id"]
    assert public["config_hash"] == manifest["config_hash"]
    assert public["privacy"]["min_users"] == 2
    assert public["release"]["clusters_released"] == manifest["release"]["clusters_released"]
    assert set(public["llm"]) == {"backend", "model"}
    text = (out / "manifest.json").read_text()
    for value in _private_strings(run):
        assert value not in text, value


def test_report_reads_the_operator_manifest_else_the_public_one(run, tmp_path, capsys):
    out = run["out"]
    assert main(["report", "--output-dir", str(out)]) == 0
    operator_report = capsys.readouterr().out
    assert "input records      15" in operator_report
    assert "operator manifest" in operator_report

    shared = tmp_path / "shared"  # what an operator may hand on: no private/
    shared.mkdir()
    (shared / "manifest.json").write_bytes((out / "manifest.json").read_bytes())
    assert main(["report", "--output-dir", str(shared)]) == 0
    public_report = capsys.readouterr().out
    assert run["manifest"]["run_id"] in public_report
    assert "public manifest" in public_report
    assert "input records" not in public_report


def test_the_released_runs_row_is_the_run_in_the_manifests(run):
    with duckdb.connect(str(run["out"] / "insights.duckdb"), read_only=True) as con:
        [(run_id, config_hash)] = con.execute("SELECT run_id, config_hash FROM runs").fetchall()
    assert (run_id, config_hash) == (run["manifest"]["run_id"], run["manifest"]["config_hash"])


def test_records_without_a_user_id_are_quarantined_and_not_counted_as_users(run):
    counts = run["manifest"]["counts"]
    assert counts["quarantine_reasons"] == {"missing_user_id": 3}
    assert counts["n_missing_user_id_treated_per_conversation"] == 0
    with duckdb.connect(str(run["out"] / "private" / "private.duckdb"), read_only=True) as con:
        quarantined = con.execute("SELECT conversation_id, reason FROM quarantine").fetchall()
    assert sorted(quarantined) == [(f"anon-{n}", "missing_user_id") for n in range(3)]
    with duckdb.connect(str(run["out"] / "insights.duckdb"), read_only=True) as con:
        [(users, conversations)] = con.execute(
            "SELECT n_users, n_conversations FROM clusters WHERE parent_id IS NULL"
        ).fetchall()
    # six users with ids; counted per conversation, the id-less three would make nine
    assert (users, conversations) == (6, 12)
