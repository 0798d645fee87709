"""The DP budget across runs: each DP release's epsilon is recorded in the private store,
the manifest reports the lifetime sum, a re-run of the same run is not counted twice, and
a run that would exceed `privacy.dp_budget_epsilon` is refused before it processes or
releases anything. The real pipeline runs in process against a loopback LLM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from clio.cli import main
from clio.config import load_config
from clio.dp_ledger import DPBudgetSpent
from clio.pipeline.run import run_pipeline
from tests.fakes.chats import scripted_answers, two_per_user
from tests.fakes.loopback import LoopbackServer

CONFIG = """
llm: {{backend: openai-compatible, base_url: "{url}/v1", model: loopback-model}}
privacy:
  min_users: 2
  min_conversations: 2
  audit_released_text: false
  dp_enabled: true
  dp_epsilon: 1.0
  dp_budget_epsilon: 2.5
cluster: {{target_cluster_size: 30}}
hierarchy: {{branching: 2, top_clusters: 1}}
facets:
  - {{name: request, kind: text, question: "What did the user ask for?", cluster: true,
      keep_if_degenerate: true}}
"""


def _write(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _released_runs(out: Path) -> int:
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM runs").fetchone()[0]


def _stored_conversations(out: Path) -> int:
    with duckdb.connect(str(out / "private" / "private.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM conversations").fetchone()[0]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("ledger")
    out = tmp / "out"
    rows = two_per_user(30)
    first, second, third = (
        _write(tmp / f"{n}.jsonl", rows[:size]) for n, size in ((1, 20), (2, 24), (3, 30))
    )
    with pytest.MonkeyPatch.context() as patch, LoopbackServer(scripted_answers(5)) as server:
        patch.setenv("CLIO_HMAC_KEY", "ledger-test-key")
        config_path = tmp / "config.yaml"
        config_path.write_text(CONFIG.format(url=server.url))
        config = load_config(config_path)

        def run(path: str) -> dict[str, Any]:
            return run_pipeline(config, [path], out, limit=None, config_path=str(config_path))

        manifests = [run(first), run(first), run(second)]
        before = (_released_runs(out), _stored_conversations(out))
        with pytest.raises(DPBudgetSpent) as refused:
            run(third)
        after = (_released_runs(out), _stored_conversations(out))
        code = main(["run", "--config", str(config_path), "--input", third, "--output-dir",
                     str(out)])  # fmt: skip
    return {"manifests": manifests, "refused": str(refused.value), "before": before,
            "after": after, "code": code, "out": out}  # fmt: skip


def _dp(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["privacy"]["differential_privacy"]


def test_each_release_adds_its_epsilon_to_the_lifetime_total(history):
    first, _, second = history["manifests"]
    assert _dp(first)["cumulative_epsilon"] == pytest.approx(_dp(first)["epsilon_spent"])
    total = _dp(first)["epsilon_spent"] + _dp(second)["epsilon_spent"]
    assert _dp(second)["cumulative_epsilon"] == pytest.approx(total)
    assert _dp(second)["runs_in_ledger"] == 2
    assert _dp(second)["budget_epsilon"] == 2.5


def test_a_rerun_of_the_same_run_is_not_counted_twice(history):
    first, again, _ = history["manifests"]
    assert again["run_id"] == first["run_id"]
    assert _dp(again)["cumulative_epsilon"] == pytest.approx(_dp(first)["cumulative_epsilon"])
    assert _dp(again)["runs_in_ledger"] == 1


def test_the_public_manifest_reports_the_lifetime_total(history):
    public = json.loads((history["out"] / "manifest.json").read_text())
    assert _dp(public)["cumulative_epsilon"] == _dp(history["manifests"][2])["cumulative_epsilon"]


def test_a_run_over_the_budget_is_refused_before_any_work(history):
    assert "dp_budget_epsilon 2.5" in history["refused"]
    assert history["after"] == history["before"]  # nothing released, nothing scrubbed
    assert history["code"] == 2


def test_the_report_shows_this_runs_and_the_lifetime_epsilon(history):
    from clio.run_report import render_report

    second = history["manifests"][2]
    line = next(x for x in render_report(second).splitlines() if "differential privacy" in x)
    assert f"{_dp(second)['cumulative_epsilon']:g} over 2 run(s) of budget 2.5" in line
