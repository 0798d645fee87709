"""The openai-compatible backend: error paths against a loopback server, and facet
extraction against llama.cpp's own OpenAI-compatible server running the packaged model."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from email.utils import format_datetime

import httpx
import pytest

from clio.config import LLMConfig, builtin_facets
from clio.facets import extract_facets
from clio.llm.base import LLMError, LLMUnavailable, Prompt
from clio.llm.client import LLMFailure, MemoryCache, StructuredLLM
from clio.llm.factory import build_backend
from clio.llm.openai_compat import OpenAICompatibleBackend, retry_after_seconds
from tests.fakes.llm import GOOD, PROMPT, SCHEMA, Answer
from tests.fakes.loopback import LoopbackServer, Reply
from tests.test_facets import sample_conversations


def chat_reply(content: str, usage: dict | None = None) -> Reply:
    usage = usage or {"prompt_tokens": 42, "completion_tokens": 7}
    return Reply(200, {"choices": [{"message": {"content": content}}], "usage": usage})


def llm_for(server: LoopbackServer, **changes) -> StructuredLLM:
    config = LLMConfig(
        backend="openai-compatible", base_url=f"{server.url}/v1", model="tiny", **changes
    )
    return StructuredLLM(build_backend(config), config, MemoryCache(), backoff_seconds=0)


# --- error paths against a loopback server ---------------------------------------------------


def test_chat_request_carries_the_schema_and_the_answer_is_parsed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k-1")
    with LoopbackServer([chat_reply(json.dumps(GOOD))]) as server:
        llm = llm_for(server)
        assert llm.ask(PROMPT, Answer) == Answer(**GOOD)
    (seen,) = server.requests
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == "Bearer k-1"
    assert seen.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "label", "schema": SCHEMA},
    }
    assert [m["role"] for m in seen.body["messages"]] == ["system", "user", "assistant", "user"]
    assert (seen.body["model"], seen.body["max_tokens"], seen.body["temperature"]) == (
        "tiny",
        256,
        0.0,
    )
    assert (llm.usage.input_tokens, llm.usage.output_tokens) == (42, 7)


def test_429_and_503_are_retried_waiting_what_the_server_asks():
    replies = [
        Reply(429, {"error": "slow down"}, {"retry-after": "1"}),
        Reply(503, {"error": "busy"}, {"retry-after-ms": "200"}),
        chat_reply(json.dumps(GOOD)),
    ]
    with LoopbackServer(replies) as server:
        llm = llm_for(server)
        assert llm.ask(PROMPT, Answer) == Answer(**GOOD)
    first, second, third = server.requests
    assert second.at - first.at >= 1.0
    assert 0.2 <= third.at - second.at < 0.9
    assert llm.usage.calls == 3


def test_server_that_rejects_json_schema_format_is_asked_with_json_object_from_then_on():
    rejection = Reply(500, {"error": {"message": "response_format: Input should be 'text'"}})
    replies = [rejection, chat_reply(json.dumps(GOOD)), chat_reply(json.dumps(GOOD))]
    with LoopbackServer(replies) as server:
        llm = llm_for(server)
        llm.ask(PROMPT, Answer)
        llm.ask(Prompt(**{**PROMPT.__dict__, "input": "other"}), Answer)
    formats = [s.body["response_format"]["type"] for s in server.requests]
    assert formats == ["json_schema", "json_object", "json_object"]
    assert server.requests[1].body["response_format"]["schema"] == SCHEMA
    assert llm.backend.schema_format == "json_object"
    assert llm.usage.calls == 2  # the rejected format is not an attempt of its own


def test_server_that_rejects_every_schema_format_is_asked_without_one():
    rejection = Reply(422, {"detail": "response_format: unknown field"})
    replies = [rejection, rejection, chat_reply(json.dumps(GOOD)), chat_reply(json.dumps(GOOD))]
    with LoopbackServer(replies) as server:
        llm = llm_for(server)
        llm.ask(PROMPT, Answer)
        llm.ask(Prompt(**{**PROMPT.__dict__, "input": "other"}), Answer)
    assert ["response_format" in s.body for s in server.requests] == [True, True, False, False]
    assert llm.backend.schema_format is None
    assert llm.usage.calls == 2


def test_invalid_json_and_bad_shapes_are_retried_then_recorded():
    replies = [
        chat_reply("Sure! Here is the label: greeting"),
        Reply(200, {"choices": []}),
        chat_reply('{"label": "greeting", "score": 9}'),  # valid JSON, invalid answer
    ]
    with LoopbackServer(replies) as server:
        result = llm_for(server).ask(PROMPT, Answer)
    assert isinstance(result, LLMFailure)
    assert "not valid JSON" in result.error
    assert "unexpected response shape" in result.error
    assert "score" in result.error
    assert len(server.requests) == 3


def test_timeouts_are_retryable_errors():
    with LoopbackServer([Reply(200, {}, delay=1.0)]) as server:
        backend = OpenAICompatibleBackend(f"{server.url}/v1", "tiny", timeout_seconds=0.2)
        with pytest.raises(LLMError, match="timed out"):
            backend.generate(PROMPT, SCHEMA, max_tokens=16, temperature=0.0)


def test_refused_connection_is_a_retryable_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the call: nothing listens
    backend = OpenAICompatibleBackend(f"http://127.0.0.1:{port}/v1", "tiny")
    with pytest.raises(LLMError, match="ConnectError"):
        backend.generate(PROMPT, SCHEMA, max_tokens=16, temperature=0.0)


@pytest.mark.parametrize("status", [401, 403, 404])
def test_rejected_key_or_unknown_model_stops_the_run(status):
    replies = [Reply(status, {"error": "no"})] * 3
    with LoopbackServer(replies) as server, pytest.raises(LLMUnavailable, match=f"HTTP {status}"):
        llm_for(server).ask(PROMPT, Answer)
    assert len(server.requests) == 1


def test_completion_style_posts_the_few_shot_text_and_stops_at_the_line_end():
    reply = Reply(200, {"choices": [{"text": ' {"label": "hi", "score": 1}'}]})
    with LoopbackServer([reply]) as server:
        assert llm_for(server, prompt_style="completion").ask(PROMPT, Answer) == Answer(
            label="hi", score=1
        )
    (seen,) = server.requests
    assert seen.path == "/v1/completions"
    assert seen.body["prompt"].endswith("### Conversation\nhello\n### JSON\n")
    assert seen.body["stop"] == ["\n"]


@pytest.mark.parametrize(
    "headers,expected",
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_header_forms(headers, expected):
    assert retry_after_seconds(httpx.Headers(headers)) == expected


def test_retry_after_as_an_http_date():
    from datetime import UTC, datetime, timedelta

    when = datetime.now(UTC) + timedelta(seconds=30)
    seconds = retry_after_seconds(httpx.Headers({"retry-after": format_datetime(when, True)}))
    assert seconds is not None and 25 <= seconds <= 31


# --- llama.cpp's own OpenAI-compatible server with the packaged model -------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    from clio.llm.local import default_model_path

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(default_model_path()),
        "--model_alias",
        "gemma3-270m",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chat_format",
        "gemma",
        "--n_ctx",
        "4096",
        "--n_threads",
        "1",
    ]
    # The server logs a lot: to a file, never to a pipe nobody reads (it would block).
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"llama_cpp.server exited: {tail}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.mark.slow
def test_facet_extraction_through_llama_cpp_server(llama_server):
    models = httpx.get(f"{llama_server}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["gemma3-270m"]
    config = LLMConfig(
        backend="openai-compatible",
        base_url=llama_server,
        model="gemma3-270m",
        prompt_style="completion",
        max_output_tokens=96,
        max_retries=1,
    )
    facets = [f for f in builtin_facets("llm") if f.extractor == "llm"]
    conversations = sample_conversations(3)
    cache = MemoryCache()
    llm = StructuredLLM(build_backend(config), config, cache)
    values = extract_facets(conversations, facets, llm, max_input_chars=1200)
    assert len(values) == 3 * len(facets)
    ok = [v for v in values if v.status == "ok"]
    assert {v.facet for v in ok} == {f.name for f in facets}, "no conversation got an answer"
    for v in values:
        if v.facet == "concerning" and v.status == "ok":
            assert v.value in {1, 2, 3, 4, 5}
        if v.facet == "request" and v.status == "ok":
            assert isinstance(v.value, str) and 0 < len(v.value) <= 160
    assert llm.usage.calls >= 3 and llm.usage.input_tokens > 3 * 500
    # A second run answers from the cache without touching the server.
    again = StructuredLLM(build_backend(config), config, cache)
    assert extract_facets(conversations, facets, again, max_input_chars=1200) == values
    assert (again.usage.calls, again.usage.cached_calls) == (0, 3)


@pytest.mark.slow
def test_chat_style_sends_the_schema_as_json_object_to_llama_cpp_server(llama_server):
    backend = OpenAICompatibleBackend(llama_server, "gemma3-270m", timeout_seconds=120)
    config = LLMConfig(max_output_tokens=96, max_retries=0)
    llm = StructuredLLM(backend, config)
    result = llm.ask(PROMPT, Answer)
    # llama-cpp-python's server only knows "text" and "json_object" formats; with the schema
    # in the latter it decodes under a grammar, so the base model answers the schema's JSON
    # and stops instead of writing to max_tokens.
    assert backend.schema_format == "json_object"
    assert isinstance(result, Answer), result
    assert llm.usage.output_tokens < config.max_output_tokens
