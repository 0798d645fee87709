"""The anthropic backend (official SDK) against a loopback server speaking the Messages API."""

from __future__ import annotations

import pytest

from clio.config import LLMConfig
from clio.llm.anthropic_backend import TOOL_NAME, AnthropicBackend
from clio.llm.base import LLMError, LLMUnavailable
from clio.llm.client import MemoryCache, StructuredLLM
from clio.llm.factory import build_backend
from tests.fakes.llm import GOOD, PROMPT, SCHEMA, Answer
from tests.fakes.loopback import LoopbackServer, Reply


def message(data: dict, *, stop_reason: str = "tool_use", name: str = TOOL_NAME) -> dict:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "tool_use", "id": "tu_1", "name": name, "input": data}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 55, "output_tokens": 9},
    }


def error(kind: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": kind}}


def backend(server: LoopbackServer, **kwargs) -> AnthropicBackend:
    options = {"api_key": "test-key", "base_url": server.url, "timeout_seconds": 10, **kwargs}
    return AnthropicBackend("claude-test", **options)


def test_request_shape_and_retries_on_429_and_529_honouring_retry_after():
    replies = [
        Reply(429, error("rate_limit_error"), {"retry-after": "1"}),
        Reply(529, error("overloaded_error"), {"retry-after-ms": "50"}),
        Reply(200, message(GOOD)),
    ]
    with LoopbackServer(replies) as server:
        completion = backend(server, sdk_max_retries=3).generate(
            PROMPT, SCHEMA, max_tokens=100, temperature=0.0
        )
    assert (completion.data, completion.input_tokens, completion.output_tokens) == (GOOD, 55, 9)
    first, second, third = server.requests
    # Waited what each answer asked: 1 s, then 50 ms (the SDK's own backoff would be
    # 0.375-0.5 s, then 0.75-1 s).
    assert second.at - first.at >= 1.0
    assert third.at - second.at < 0.3
    for seen in server.requests:
        assert (seen.method, seen.path) == ("POST", "/v1/messages")
        assert seen.headers["authorization"] == "Bearer test-key"  # this SDK sends the key so
        assert seen.headers["anthropic-version"]
        assert seen.body == third.body  # the same request each time
    body = third.body
    assert (body["model"], body["max_tokens"]) == ("claude-test", 100)
    assert body["tools"] == [
        {"name": TOOL_NAME, "description": "Record the answer.", "input_schema": SCHEMA}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert body["system"].startswith("Label it.")
    assert body["messages"] == [
        {"role": "user", "content": "Conversation:\nhi"},
        {"role": "assistant", "content": '{"label": "greeting", "score": 1}'},
        {"role": "user", "content": "Conversation:\nhello"},
    ]


def test_persistent_overload_becomes_a_retryable_error_after_the_sdk_retries():
    replies = [Reply(529, error("overloaded_error"), {"retry-after-ms": "10"})] * 3
    with LoopbackServer(replies) as server, pytest.raises(LLMError, match="HTTP 529") as raised:
        backend(server, sdk_max_retries=2).generate(PROMPT, SCHEMA, max_tokens=100, temperature=0.0)
    assert len(server.requests) == 3  # one attempt and two SDK retries
    assert raised.value.retry_after == pytest.approx(0.01)


@pytest.mark.parametrize("status", [401, 403, 404])
def test_rejected_key_or_model_is_unavailable_without_retries(status):
    replies = [Reply(status, error("authentication_error"))] * 5
    with LoopbackServer(replies) as server, pytest.raises(LLMUnavailable, match=f"HTTP {status}"):
        backend(server).generate(PROMPT, SCHEMA, max_tokens=100, temperature=0.0)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "reply,match",
    [
        (message(GOOD, stop_reason="max_tokens"), "cut off"),
        (message(GOOD, name="something_else"), "no record_answer call"),
    ],
)
def test_unusable_answers_are_retryable_errors(reply, match):
    with LoopbackServer([Reply(200, reply)]) as server, pytest.raises(LLMError, match=match):
        backend(server).generate(PROMPT, SCHEMA, max_tokens=100, temperature=0.0)


def test_configured_backend_through_the_client_validates_retries_and_caches(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "key-from-env")
    replies = [
        Reply(200, message({"label": "far too long a label", "score": 2})),  # invalid
        Reply(200, message(GOOD)),
    ]
    with LoopbackServer(replies) as server:
        config = LLMConfig(backend="anthropic", model="claude-test", base_url=server.url)
        cache = MemoryCache()
        llm = StructuredLLM(build_backend(config), config, cache, backoff_seconds=0)
        assert llm.ask(PROMPT, Answer) == Answer(**GOOD)
        again = StructuredLLM(build_backend(config), config, cache)
        assert again.ask(PROMPT, Answer) == Answer(**GOOD)
    assert len(server.requests) == 2
    assert server.requests[0].headers["authorization"] == "Bearer key-from-env"
    assert (llm.usage.calls, llm.usage.input_tokens, llm.usage.output_tokens) == (2, 110, 18)
    assert (again.usage.calls, again.usage.cached_calls) == (0, 1)
