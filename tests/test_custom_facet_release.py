"""A facet declared only in YAML flows through extraction, clustering, the gate and the
released store. The real CLI runs the real flow; the LLM is the openai-compatible backend
pointed at a loopback server that answers every prompt deterministically from the JSON
schema in the request (so the whole HTTP path is exercised too)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.cli_run import run_clio
from tests.fakes.loopback import LoopbackServer, Reply, Seen

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ["web", "mobile", "api"]
TOPICS = {
    "cooking": [
        "How long should I roast a chicken for a family dinner?",
        "Can I bake bread without yeast for a picnic?",
        "What spices go well in a vegetable curry?",
        "How do I make a soup thicker without cream?",
    ],
    "code": [
        "Why does my Python loop never stop when I read the file?",
        "How do I sort a list of numbers in JavaScript?",
        "What does a null pointer exception mean in Java code?",
        "How can I speed up a slow SQL query with an index?",
    ],
}


def _conversations() -> list[dict]:
    rows = []
    for topic, questions in TOPICS.items():
        for round_ in range(3):
            for q, question in enumerate(questions):
                n = len(rows)
                rows.append(
                    {
                        "conversation_id": f"{topic}-{round_}-{q}",
                        "user_id": f"user-{n // 2}",  # two conversations per user
                        "messages": [
                            {"role": "user", "content": f"{question} (round {round_})"},
                            {"role": "assistant", "content": "Here is a short answer."},
                        ],
                    }
                )
    return rows


def _value_for(name: str, spec: dict, conversation: str) -> object:
    """A deterministic valid value for one schema property."""
    topic = "cooking" if any(q[:20] in conversation for q in TOPICS["cooking"]) else "code"
    if name == "request":
        return f"Help with {topic}" + (" recipes" if topic == "cooking" else " errors")
    if name == "channel":
        return CHANNELS[sum(map(ord, conversation)) % len(CHANNELS)]
    if name == "topics":
        return [topic, "learning"]
    if "enum" in spec:
        return spec["enum"][0]
    if spec.get("type") == "integer":
        return spec.get("maximum", 1)  # privacy audit: 5 = nothing private
    if spec.get("type") == "number":
        return spec.get("minimum", 0)
    if spec.get("type") == "array":
        return ["general help"]
    text = "General help with everyday questions"
    return text[: spec.get("maxLength", len(text))]


def _answer(seen: Seen) -> Reply:
    assert seen.path == "/v1/chat/completions", seen.path
    schema = seen.body["response_format"]["json_schema"]["schema"]
    conversation = seen.body["messages"][-1]["content"]
    answer = {
        name: _value_for(name, spec, conversation)
        for name, spec in schema.get("properties", {}).items()
    }
    usage = {"prompt_tokens": 100, "completion_tokens": 20}
    return Reply(200, {"choices": [{"message": {"content": json.dumps(answer)}}], "usage": usage})


CONFIG = """
llm:
  backend: openai-compatible
  base_url: {url}/v1
  model: loopback-model
  concurrency: 4
privacy: {{min_users: 2, min_conversations: 2, audit_min_score: 3}}
cluster: {{target_cluster_size: 8}}
hierarchy: {{branching: 2, top_clusters: 2}}
facets:
  - name: request
    kind: text
    question: What did the user ask for?
    cluster: true
    keep_if_degenerate: true  # the scripted LLM answers one sentence per topic
  - name: channel
    kind: category
    question: Through which channel does the user seem to write?
    values: [web, mobile, api]
    breakdown: true
  - name: topics
    kind: list
    question: Which topics come up? Short phrases.
    max_items: 3
    cluster: true
    keep_if_degenerate: true  # every scripted answer holds "learning"
  - name: language
    kind: category
    extractor: language_id
    breakdown: true
"""


def test_custom_yaml_facets_reach_the_released_store(tmp_path):
    data = tmp_path / "conversations.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in _conversations()))
    out = tmp_path / "out"
    with LoopbackServer(_answer) as server:
        config = tmp_path / "custom.yaml"
        config.write_text(CONFIG.format(url=server.url))
        run_clio(config, data, out, cwd=tmp_path)
    facet_prompts = [
        s
        for s in server.requests
        if "channel" in s.body["response_format"]["json_schema"]["schema"].get("properties", {})
    ]
    assert len(facet_prompts) == 24  # one combined facet call per conversation

    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as con:
        breakdown = con.execute(
            "SELECT value, sum(n_conversations) FROM facet_breakdowns WHERE facet = 'channel' "
            "GROUP BY value ORDER BY value"
        ).fetchall()
        clustered = {
            row[0] for row in con.execute("SELECT DISTINCT facet FROM clusters").fetchall()
        }
        topic_names = con.execute(
            "SELECT count(*) FROM clusters WHERE facet = 'topics'"
        ).fetchone()[0]
    # The custom category facet is released under its own name with only allowed values.
    assert breakdown, "no channel breakdown released"
    assert {value for value, _ in breakdown} <= set(CHANNELS)
    assert len(breakdown) >= 2
    # The custom list facet is clustered as items, next to the request facet.
    assert clustered == {"request", "topics"}
    assert topic_names >= 1

    with duckdb.connect(str(out / "private" / "private.duckdb"), read_only=True) as con:
        stored = con.execute(
            "SELECT count(*), count(DISTINCT value) FROM facets WHERE facet = 'channel'"
        ).fetchone()
    assert stored[0] == 24
