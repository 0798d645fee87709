"""The privacy auditor inside the real flow: a text the auditor fails is renamed once from
keywords, re-audited, and withheld when it fails again; the withheld count is in the
manifest, the audit calls are in the runs table, and no failed text is released.

The LLM is the openai-compatible backend pointed at a loopback server: facet and naming
prompts get fixed answers, audit prompts get the score under test. The control run
(every audit passes) releases the same names, so the test can fail."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from clio.gate import WITHHELD_NAME
from tests.cli_run import run_clio
from tests.fakes.chats import CLUSTER_NAME, scripted_answers, two_per_user
from tests.fakes.loopback import LoopbackServer, Seen

pytestmark = pytest.mark.slow


CONFIG = """
llm:
  backend: openai-compatible
  base_url: {url}/v1
  model: loopback-model
  concurrency: 2
privacy: {{min_users: 2, min_conversations: 2, audit_min_score: 3}}
cluster: {{target_cluster_size: 30}}
hierarchy: {{branching: 2, top_clusters: 1}}
facets:
  - name: request
    kind: text
    question: What did the user ask for?
    cluster: true
"""


def _run(tmp_path: Path, audit_score: int) -> tuple[Path, list[Seen]]:
    data = tmp_path / "conversations.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in two_per_user(12)))
    out = tmp_path / f"out-{audit_score}"
    with LoopbackServer(scripted_answers(audit_score)) as server:
        config = tmp_path / "audit.yaml"
        config.write_text(CONFIG.format(url=server.url))
        run_clio(config, data, out, cwd=tmp_path)
    return out, server.requests


def _released(out: Path) -> tuple[set[str], int]:
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as con:
        names = {row[0] for row in con.execute("SELECT name FROM clusters").fetchall()}
        calls = con.execute("SELECT llm_calls FROM runs").fetchone()[0]
    return names, calls


def _audits(requests: list[Seen]) -> int:
    return sum(
        "score" in s.body["response_format"]["json_schema"]["schema"]["properties"]
        for s in requests
    )


def test_texts_failing_the_audit_are_withheld_and_counted(tmp_path):
    out, requests = _run(tmp_path, audit_score=1)
    names, calls = _released(out)
    assert names == {WITHHELD_NAME}
    manifest = json.loads((out / "private" / "manifest.json").read_text())
    checks = manifest["release"]["text_checks"]
    assert checks["clusters_text_withheld"] >= 1
    assert _audits(requests) >= 2  # the first texts and the renamed ones
    assert calls == len(requests) == manifest["llm"]["calls"]


def test_control_texts_passing_the_audit_are_released(tmp_path):
    out, requests = _run(tmp_path, audit_score=5)
    names, calls = _released(out)
    assert CLUSTER_NAME in names
    assert WITHHELD_NAME not in names
    assert _audits(requests) >= 1
    assert calls == len(requests)
