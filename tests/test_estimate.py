"""`clio run --estimate`: a run's LLM calls, tokens, time and cost, predicted without it.

The estimate goes through the real command line over real sample conversations; the
openai-compatible backend points at a loopback server, which must see no request (the
control shows the same config does reach it), and the output directory must be left as
it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clio.cli import main
from clio.config import load_config
from clio.facets import facet_call
from clio.llm.base import LLMError, Prompt
from clio.llm.client import cache_key
from clio.llm.factory import build_backend
from clio.records import ScrubbedConversation
from clio.store import PrivateStore
from tests.cli_run import clio_subprocess
from tests.fakes.loopback import LoopbackServer, Reply
from tests.test_golden_flow import GOLDEN, N_FIRST, _write_sample

CONFIG = """
llm:
  backend: openai-compatible
  base_url: {url}/v1
  model: estimate-model
  concurrency: 2
privacy: {{min_users: 3, min_conversations: 3}}
cluster: {{target_cluster_size: 8}}
hierarchy: {{branching: 3, top_clusters: 2}}
"""
# Facets that need no LLM, and names taken from the members' texts (else an HTTP
# backend names the clusters with the LLM).
NON_LLM = """
describe: {names: extractive}
facets:
  - {name: request, kind: text, extractor: user_text, cluster: true}
  - {name: language, kind: category, extractor: language_id, breakdown: true}
  - {name: turns, kind: number, extractor: metadata}
"""


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _estimate(config: Path, inputs: Path, out: Path, capsys: Any, *extra: str) -> dict[str, Any]:
    args = ["run", "--estimate", "--json", "--config", str(config), "--input", str(inputs)]
    assert main([*args, "--output-dir", str(out), *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def server():
    with LoopbackServer([Reply(500, {"error": "the estimate must not call the LLM"})]) as s:
        yield s


@pytest.fixture
def inputs(tmp_path):
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    _write_sample(small, 0, 30)
    _write_sample(large, 0, 60)
    return small, large


def test_the_estimate_calls_no_llm_and_writes_nothing(tmp_path, server, inputs):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(url=server.url))
    out = tmp_path / "out"
    args = ["run", "--estimate", "--config", str(config), "--input", str(inputs[0])]
    done = clio_subprocess(*args, "--output-dir", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the LLM was not called" in done.stdout and "facets" in done.stdout
    assert server.requests == []
    assert not out.exists()
    # Control: the same config does reach the server when a call is made.
    backend = build_backend(load_config(config).llm)
    with pytest.raises(LLMError):  # the scripted reply is an error
        backend.generate(
            Prompt("t", "Say hi.", "hi"), {"type": "object"}, max_tokens=8, temperature=0
        )
    assert len(server.requests) >= 1


def test_figures_scale_with_the_input(tmp_path, server, inputs, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(url=server.url))
    small = _estimate(config, inputs[0], tmp_path / "out", capsys)
    large = _estimate(config, inputs[1], tmp_path / "out", capsys)
    assert small["input"]["conversations"] == 30 and large["input"]["conversations"] == 60
    facets = [next(s for s in e["steps"] if s["name"].startswith("facets")) for e in (small, large)]
    assert [f["prompts"] for f in facets] == [30, 60]
    assert large["total"]["calls"] / small["total"]["calls"] == pytest.approx(2, rel=0.15)
    tokens = [e["total"]["input_tokens"] for e in (small, large)]
    assert tokens[1] / tokens[0] == pytest.approx(2, rel=0.15)
    assert large["total"]["llm_seconds"] > 1.5 * small["total"]["llm_seconds"]
    assert server.requests == []


def test_the_estimate_is_near_the_golden_runs_recorded_calls(tmp_path, server, capsys):
    """The golden flow test's run (60 conversations, this config) recorded 105 calls. Its
    scripted answers put all its base clusters under one parent, where the estimate assumes
    the 3 parents asked for and a level above them, so the estimate is higher (137, 30%
    more), within a third of the recorded count."""
    recorded = json.loads((GOLDEN / "flow_full.json").read_text())["manifest"]["llm_calls"]
    inputs = tmp_path / "first.jsonl"
    _write_sample(inputs, 0, N_FIRST)
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(url=server.url))
    estimate = _estimate(config, inputs, tmp_path / "out", capsys)
    assert recorded <= estimate["total"]["calls"] <= 4 / 3 * recorded


@pytest.mark.parametrize("audit", [False, True])
def test_only_non_llm_facets_need_no_call(tmp_path, server, inputs, capsys, audit):
    config = tmp_path / "c.yaml"
    privacy = (
        f"privacy: {{min_users: 3, min_conversations: 3, audit_released_text: {audit}, "
        f"audit_extractive_text: {audit}}}\n"
    )
    config.write_text(
        CONFIG.format(url=server.url).replace("privacy: {min_users: 3, min_conversations: 3}\n", "")
        + privacy
        + NON_LLM
    )
    estimate = _estimate(config, inputs[0], tmp_path / "out", capsys)
    names = [s["name"] for s in estimate["steps"]]
    assert not any(n.startswith("facets") for n in names)
    if audit:  # control: the released texts' privacy audit still asks the LLM
        assert names[-1] == "privacy audit" and estimate["total"]["calls"] > 0
    else:
        assert estimate["total"]["calls"] == 0 and estimate["cost"]["estimated_cost"] == 0


@pytest.mark.parametrize("listed", [True, False])
def test_cost_uses_the_price_table(tmp_path, server, inputs, capsys, listed):
    config = tmp_path / "c.yaml"
    model = "estimate-model" if listed else "another-model"
    config.write_text(
        CONFIG.format(url=server.url).replace(
            "  concurrency: 2\n",
            "  concurrency: 2\n  price_per_million_input_tokens: 100\n"
            f"  price_per_million_output_tokens: 100\n  price_table: {{{model}: [1, 5]}}\n",
        )
    )
    estimate = _estimate(config, inputs[0], tmp_path / "out", capsys)
    price_in, price_out = (1, 5) if listed else (100, 100)
    total = estimate["total"]
    expected = (total["input_tokens"] * price_in + total["output_tokens"] * price_out) / 1e6
    assert estimate["cost"]["estimated_cost"] == pytest.approx(expected, abs=1e-6)
    assert estimate["cost"]["price_per_million_input_tokens"] == price_in


def test_answers_in_the_private_store_are_counted_as_cached(tmp_path, server, inputs, capsys):
    """A conversation the store holds (by content hash) with its facet answer cached costs
    no call; the store is read, not written."""
    from clio.ingest import ingest

    config_path = tmp_path / "c.yaml"
    config_path.write_text(CONFIG.format(url=server.url))
    config = load_config(config_path)
    conversations = ingest([inputs[0]], config.ingest).conversations[:5]
    call = facet_call(config.facets, config.llm.max_input_chars)
    assert call is not None
    identifier = build_backend(config.llm).identifier
    out = tmp_path / "out"
    private = out / "private" / "private.duckdb"
    with PrivateStore(private) as store:
        stored = [
            ScrubbedConversation(
                conversation_id=c.conversation_id,
                user_pseudonym="u",
                timestamp=None,
                messages=c.messages,
                source=c.source,
                content_hash=c.content_hash(),
            )
            for c in conversations
        ]
        store.put_conversations(stored, "run-0")
        for c in stored[:3]:
            key = cache_key(
                identifier,
                call.prompt(c.messages),
                call.model.model_json_schema(),
                config.llm.temperature,
                config.llm.max_output_tokens,
            )
            store.put_llm_response(key, "openai-compatible", identifier, {}, 10, 5)
    before = _files(out)
    estimate = _estimate(config_path, inputs[0], out, capsys)
    facets = next(s for s in estimate["steps"] if s["name"].startswith("facets"))
    assert (facets["prompts"], facets["cached"]) == (30, 3)
    assert facets["calls"] == pytest.approx(27)
    assert _files(out) == before
    assert server.requests == []


def test_estimate_takes_no_incremental_mode(tmp_path, capsys):
    assert main(["run", "--estimate", "--incremental", "--output-dir", str(tmp_path)]) == 2
    assert "full build" in capsys.readouterr().err


def test_json_goes_with_estimate(tmp_path, capsys):
    assert main(["run", "--json", "--output-dir", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_a_local_prompt_too_long_for_the_context_is_counted_as_the_model_takes_it(tmp_path, capsys):
    """The local backend cuts an input that does not fit its context (`clio.llm.budget`);
    the estimate counts the cut prompt, as the run sends it."""
    turn = "Here is my Python code, why does it fail? " + "value = compute(x) + 1\n" * 900
    conversation = {
        "conversation_id": "long-1",
        "user_id": "u1",
        "messages": [{"role": "user", "content": turn}, {"role": "assistant", "content": "ok"}],
    }
    inputs = tmp_path / "long.jsonl"
    inputs.write_text(json.dumps(conversation) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text("llm: {backend: local, context_tokens: 1024, max_input_chars: 30000}\n")
    estimate = _estimate(config, inputs, tmp_path / "out", capsys)
    facets = next(s for s in estimate["steps"] if s["name"].startswith("facets"))
    assert facets["prompts"] == 1
    per_call = facets["input_tokens"] / facets["calls"]
    assert per_call <= 1024

    # control: the conversation alone, uncut, is far longer than the context
    from clio.llm.local import model_file, vocabulary

    assert vocabulary(model_file(None)).count(turn) > 2 * 1024
