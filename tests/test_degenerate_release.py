"""A facet the run measures as degenerate is released neither as clusters nor as
breakdowns, and the report says so; informative facets of the same run are released.

The whole pipeline runs in process (real Presidio, embedder, clustering and DuckDB
release) with the openai-compatible backend pointed at a loopback server that answers
the same `task` (a few-shot example's answer) and the same `channel` for every
conversation, while `request` and `mood` vary with the conversation.
"""

from __future__ import annotations

import json
import re
from typing import Any

import duckdb
import pytest

from clio.config import load_config
from clio.pipeline.run import run_pipeline
from clio.run_report import render_report
from tests.fakes.chats import QUESTIONS, two_per_user
from tests.fakes.loopback import LoopbackServer, Reply, Seen
from tests.test_golden_flow import _fill

COPIED_TASK = "declining a hurtful request"  # the fourth few-shot example's answer
CONFIG = """
llm:
  backend: openai-compatible
  base_url: {url}/v1
  model: loopback-model
  concurrency: 2
privacy: {{min_users: 2, min_conversations: 2, audit_released_text: false}}
cluster: {{target_cluster_size: 6}}
hierarchy: {{branching: 2, top_clusters: 2}}
facets:
  - {{name: request, kind: text, question: "What did the user ask for?", cluster: true}}
  - {{name: task, kind: text, question: "What task?", max_chars: 80, cluster: true}}
  - {{name: channel, kind: category, question: "Which channel?", values: [web, mobile, api],
      breakdown: true}}
  - {{name: mood, kind: category, question: "Which mood?", values: [calm, upset],
      breakdown: true}}
"""
N = 40


def _answer(seen: Seen) -> Reply:
    """Facet answers as above; anything else (names, parents) from the prompt's words."""
    schema = seen.body["response_format"]["json_schema"]["schema"]
    properties = schema["properties"]
    prompt = seen.body["messages"][-1]["content"]
    if "request" not in properties:
        content = _fill(schema, "", prompt)
    else:
        number = int(re.findall(r"\((\d+)\)", prompt)[-1])
        content = {
            "request": QUESTIONS[number % len(QUESTIONS)],
            "task": COPIED_TASK,
            "channel": "web",
            "mood": ["calm", "upset"][number % 2],
        }
        content = {k: v for k, v in content.items() if k in properties}
    message = {"content": json.dumps(content)}
    usage = {"prompt_tokens": 10, "completion_tokens": 5}
    return Reply(200, {"choices": [{"message": message}], "usage": usage})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("degenerate")
    data = tmp / "chats.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in two_per_user(N)))
    out = tmp / "out"
    with pytest.MonkeyPatch.context() as patch, LoopbackServer(_answer) as server:
        patch.setenv("CLIO_HMAC_KEY", "degenerate-test-key")
        config_path = tmp / "config.yaml"
        config_path.write_text(CONFIG.format(url=server.url))
        manifest = run_pipeline(
            load_config(config_path), [str(data)], out, limit=None, config_path=str(config_path)
        )
    return {"out": out, "manifest": manifest}


def _released(run: dict[str, Any], sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(run["out"] / "insights.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_the_operator_manifest_measures_each_llm_facet(run):
    quality = run["manifest"]["facet_quality"]
    facets = quality["facets"]
    assert list(facets) == ["request", "task", "channel", "mood"]
    task = facets["task"]
    assert (task["n_answers"], task["top_share"], task["example_share"]) == (N, 1.0, 1.0)
    assert task["degenerate"] and task["withheld_from"] == ["clusters"]
    assert facets["channel"]["degenerate"] and facets["channel"]["withheld_from"] == ["breakdowns"]
    assert not facets["request"]["degenerate"] and not facets["mood"]["degenerate"]
    assert facets["mood"]["top_share"] == 0.5
    assert quality["thresholds"]["top_share_open"] == 0.5
    public = json.loads((run["out"] / "manifest.json").read_text())
    assert "facet_quality" not in public  # counts over conversations: operator only


def test_a_degenerate_facet_is_neither_clustered_nor_broken_down(run):
    released_facets = {row[0] for row in _released(run, "SELECT DISTINCT facet FROM clusters")}
    assert released_facets == {"request"}  # `task` all one answer: one cluster, withheld
    cells = {row[0] for row in _released(run, "SELECT DISTINCT facet FROM facet_breakdowns")}
    assert "mood" in cells  # the informative category of the same run is released
    assert "channel" not in cells


def test_the_report_shows_the_verdicts_and_the_top_clusters_by_name(run):
    text = render_report(run["manifest"])
    lines = text.splitlines()
    task = next(line for line in lines if line.strip().startswith("task "))
    assert "top 100%, example 100%" in task
    assert "DEGENERATE" in task and "left out of clusters" in task
    assert "left out of breakdowns" in next(line for line in lines if "channel " in line)
    mood = next(line for line in lines if line.strip().startswith("mood "))
    assert "top 50%" in mood and "DEGENERATE" not in mood
    assert any(line.startswith("  top clusters       request") for line in lines)
    assert not any(line.startswith("  top clusters       task") for line in lines)
    names = {row[0] for row in _released(run, "SELECT name FROM clusters WHERE level > 0")}
    assert any(line.strip().split(" (")[0] in names for line in lines)


def test_a_degenerate_facet_with_nothing_to_leave_out_says_so():
    from clio.run_report import NOTHING_WITHHELD, _facet_quality_lines

    figures = {"top_share": 0.9, "example_share": 0.0, "distinct_ratio": 0.1,
               "failure_rate": 0.0, "degenerate": True, "reasons": ["top_answer"]}  # fmt: skip
    quality = {"facets": {"values": {**figures, "withheld_from": []},
                          "task": {**figures, "withheld_from": ["clusters"]}}}  # fmt: skip
    lines = _facet_quality_lines(quality)
    assert lines[1].endswith(NOTHING_WITHHELD) and "left out of" not in lines[1]
    assert lines[2].endswith("left out of clusters")
