from __future__ import annotations

import json
import time

import pytest
from pydantic import BaseModel, Field

from clio.config import LLMConfig
from clio.llm.base import Example, LLMError, LLMUnavailable, Prompt
from clio.llm.client import (
    FAILURE_KEY,
    LLMFailure,
    MemoryCache,
    RateLimiter,
    StructuredLLM,
    Usage,
    cache_key,
)
from tests.fakes.llm import FakeBackend, Sleep


class Answer(BaseModel):
    label: str = Field(max_length=10)
    score: int = Field(ge=1, le=5)


def prompt(text: str = "hello", **changes) -> Prompt:
    fields = {
        "task": "test",
        "instruction": "Label it.",
        "input": text,
        "examples": (Example("hi", {"label": "greeting", "score": 1}),),
    }
    fields.update(changes)
    return Prompt(**fields)


def config(**changes) -> LLMConfig:
    return LLMConfig(**{"max_retries": 2, **changes})


def client(backend, cache=None, **changes) -> StructuredLLM:
    return StructuredLLM(backend, config(**changes), cache, backoff_seconds=0)


GOOD = {"label": "greeting", "score": 2}


def test_valid_answer_is_returned_and_counted():
    backend = FakeBackend([GOOD], tokens=(120, 30))
    llm = client(backend)
    assert llm.ask(prompt(), Answer) == Answer(label="greeting", score=2)
    assert llm.usage == Usage(calls=1, cached_calls=0, input_tokens=120, output_tokens=30)


def test_backend_errors_are_retried_then_succeed():
    backend = FakeBackend([GOOD], fail_first=2, failure=LLMError("timed out"))
    llm = client(backend)
    assert llm.ask(prompt(), Answer) == Answer(**GOOD)
    assert len(backend.calls) == 3
    assert llm.usage.calls == 3
    assert llm.usage.failures == 0


@pytest.mark.parametrize(
    "bad_answer",
    [
        "not json at all",  # invalid JSON -> LLMError from the backend
        '{"label": "greeting"',  # cut off
        {"label": "greeting", "score": 9},  # out of range
        {"label": "far too long a label", "score": 1},  # too long
        {"score": 1},  # missing field
        ["greeting", 1],  # not an object
    ],
)
def test_bad_answers_are_retried_then_recorded_as_failure(bad_answer):
    backend = FakeBackend([bad_answer] * 3)
    llm = client(backend)
    result = llm.ask(prompt(), Answer)
    assert isinstance(result, LLMFailure)
    assert result.error.count("attempt") == 3
    assert len(backend.calls) == 3
    assert llm.usage.failures == 1


def test_bad_answer_then_good_answer_succeeds():
    backend = FakeBackend([{"label": "greeting", "score": 0}, "{oops", GOOD])
    llm = client(backend)
    assert llm.ask(prompt(), Answer) == Answer(**GOOD)
    assert llm.usage.failures == 0


def test_retries_raise_the_temperature_so_they_can_differ():
    backend = FakeBackend([{"score": 1}] * 3)
    client(backend, temperature=0.0).ask(prompt(), Answer)
    assert [round(c.temperature, 2) for c in backend.calls] == [0.0, 0.3, 0.6]


def test_zero_retries_means_one_attempt():
    backend = FakeBackend([LLMError("boom")])
    result = client(backend, max_retries=0).ask(prompt(), Answer)
    assert isinstance(result, LLMFailure)
    assert len(backend.calls) == 1


def test_failure_message_does_not_carry_the_answer_text():
    backend = FakeBackend([{"label": "SECRET-TEXT-123", "score": 1}])
    result = client(backend, max_retries=0).ask(prompt(), Answer)
    assert isinstance(result, LLMFailure)
    assert "SECRET-TEXT-123" not in result.error


def test_unavailable_backend_stops_instead_of_recording_failures():
    backend = FakeBackend([LLMUnavailable("bad api key")])
    cache = MemoryCache()
    with pytest.raises(LLMUnavailable):
        client(backend, cache).ask(prompt(), Answer)
    assert cache.entries == {}


def test_unavailable_backend_stops_ask_many_without_running_the_queue():
    backend = FakeBackend([], fail_first=100, failure=LLMUnavailable("bad api key"))
    with pytest.raises(LLMUnavailable):
        client(backend, concurrency=1).ask_many([prompt(f"p{i}") for i in range(20)], Answer)
    assert len(backend.calls) <= 2


def test_backoff_grows_between_backend_errors():
    backend = FakeBackend([GOOD], fail_first=2)
    llm = StructuredLLM(backend, config(), backoff_seconds=0.05)
    start = time.monotonic()
    llm.ask(prompt(), Answer)
    assert time.monotonic() - start >= 0.05 + 0.10


# --- cache ---------------------------------------------------------------------


def echo_answer(call):
    return {"label": call.prompt.input[:10], "score": 3}


def test_second_run_makes_no_backend_calls_and_gives_equal_results():
    cache = MemoryCache()
    prompts = [prompt(f"text {i}") for i in range(5)]
    first_backend = FakeBackend(echo_answer)
    first = client(first_backend, cache).ask_many(prompts, Answer)
    second_backend = FakeBackend(echo_answer)
    second_llm = client(second_backend, cache)
    second = second_llm.ask_many(prompts, Answer)
    assert len(first_backend.calls) == 5
    assert second_backend.calls == []
    assert second == first
    assert second_llm.usage == Usage(calls=0, cached_calls=5, input_tokens=0, output_tokens=0)


def test_failures_are_cached_too():
    cache = MemoryCache()
    first = client(FakeBackend(["nope"] * 3), cache).ask(prompt(), Answer)
    again_backend = FakeBackend([GOOD])
    again_llm = client(again_backend, cache)
    again = again_llm.ask(prompt(), Answer)
    assert isinstance(first, LLMFailure)
    assert again == first
    assert again_backend.calls == []
    assert again_llm.usage == Usage(
        calls=0, cached_calls=1, input_tokens=0, output_tokens=0, failures=1
    )
    (stored,) = cache.entries.values()
    assert stored[0] == {FAILURE_KEY: first.error}


def test_cached_failures_can_be_asked_again_on_request():
    cache = MemoryCache()
    client(FakeBackend(["nope"] * 3), cache).ask(prompt(), Answer)
    llm = StructuredLLM(FakeBackend([GOOD]), config(), cache, retry_cached_failures=True)
    assert llm.ask(prompt(), Answer) == Answer(**GOOD)


def test_changed_prompt_or_model_invalidates_only_what_changed():
    cache = MemoryCache()
    prompts = [prompt("a"), prompt("b"), prompt("c")]
    client(FakeBackend(echo_answer), cache).ask_many(prompts, Answer)

    changed_input = FakeBackend(echo_answer)
    client(changed_input, cache).ask_many([prompt("a"), prompt("b"), prompt("C")], Answer)
    assert [c.prompt.input for c in changed_input.calls] == ["C"]

    other_model = FakeBackend(echo_answer, identifier="fake:model-b")
    client(other_model, cache).ask_many(prompts, Answer)
    assert len(other_model.calls) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"instruction": "Label it, briefly."},
        {"examples": ()},
        {"task": "other"},
        {"input_label": "Text"},
    ],
)
def test_cache_key_changes_with_every_part_of_the_prompt(change):
    schema = Answer.model_json_schema()
    base = cache_key("fake", prompt(), schema, 0.0, 256)
    assert cache_key("fake", prompt(**change), schema, 0.0, 256) != base


def test_cache_key_changes_with_schema_and_parameters():
    schema = Answer.model_json_schema()
    base = cache_key("fake", prompt(), schema, 0.0, 256)
    assert cache_key("fake", prompt(), {**schema, "title": "Other"}, 0.0, 256) != base
    assert cache_key("fake", prompt(), schema, 0.5, 256) != base
    assert cache_key("fake", prompt(), schema, 0.0, 128) != base
    assert cache_key("fake", prompt(), schema, 0.0, 256) == base
    reordered = {**schema, "properties": dict(reversed(schema["properties"].items()))}
    assert cache_key("fake", prompt(), reordered, 0.0, 256) != base


def test_cached_answer_failing_stricter_validation_is_asked_again():
    class Strict(BaseModel):
        label: str = Field(max_length=10)
        score: int = Field(ge=1, le=5)

    cache = MemoryCache()
    client(FakeBackend([{"label": "x", "score": 5}]), cache).ask(prompt(), Answer)
    key = next(iter(cache.entries))
    cache.entries[key] = ({"label": "x", "score": 7}, 1, 1)  # stale entry
    backend = FakeBackend([{"label": "x", "score": 4}])
    assert client(backend, cache).ask(prompt(), Strict) == Strict(label="x", score=4)


def test_private_store_works_as_the_cache(tmp_path):
    from clio.store import PrivateStore

    with PrivateStore(tmp_path / "private.duckdb") as store:
        first = client(FakeBackend([GOOD, "bad", "bad", "bad"]), store)
        first.ask_many([prompt("a"), prompt("b")], Answer)
        backend = FakeBackend([])
        second = client(backend, store).ask_many([prompt("a"), prompt("b")], Answer)
    assert backend.calls == []
    assert second[0] == Answer(**GOOD)
    assert isinstance(second[1], LLMFailure)


# --- concurrency, rate limit, usage ----------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_limit_is_respected(concurrency):
    backend = FakeBackend(echo_answer, delay=0.05)
    llm = client(backend, concurrency=concurrency)
    results = llm.ask_many([prompt(f"p{i}") for i in range(9)], Answer)
    assert backend.max_in_flight == concurrency
    assert [r.label for r in results] == [f"p{i}" for i in range(9)]


def test_ask_many_keeps_order_when_answers_finish_out_of_order():
    def slow_first(call):
        delay = 0.1 if call.prompt.input == "p0" else 0.0
        return Sleep(delay, {"label": call.prompt.input, "score": 1})

    results = client(FakeBackend(slow_first), concurrency=4).ask_many(
        [prompt(f"p{i}") for i in range(4)], Answer
    )
    assert [r.label for r in results] == ["p0", "p1", "p2", "p3"]


def test_rate_limit_spaces_calls():
    backend = FakeBackend(echo_answer)
    llm = client(backend, concurrency=3, requests_per_minute=600)  # one per 0.1 s
    start = time.monotonic()
    llm.ask_many([prompt(f"p{i}") for i in range(4)], Answer)
    assert time.monotonic() - start >= 0.3


def test_rate_limiter_without_limit_does_not_wait():
    limiter = RateLimiter(None)
    start = time.monotonic()
    for _ in range(100):
        limiter.wait()
    assert time.monotonic() - start < 0.05


def test_usage_is_counted_exactly_across_threads():
    backend = FakeBackend(echo_answer, tokens=(7, 3), delay=0.001)
    llm = client(backend, concurrency=4)
    llm.ask_many([prompt(f"p{i}") for i in range(40)], Answer)
    assert llm.usage == Usage(calls=40, cached_calls=0, input_tokens=280, output_tokens=120)


def test_cost_uses_configured_prices():
    usage = Usage(calls=2, cached_calls=0, input_tokens=2_000_000, output_tokens=500_000)
    cfg = config(price_per_million_input_tokens=3.0, price_per_million_output_tokens=15.0)
    assert usage.cost(cfg) == pytest.approx(6.0 + 7.5)


# --- HTTP backends (mock transports) -----------------------------------------------------------

SCHEMA = Answer.model_json_schema()


def test_openai_compatible_chat_sends_the_schema_and_parses_the_answer():
    import httpx

    from clio.llm.openai_compat import OpenAICompatibleBackend

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": '{"label": "greeting", "score": 2}'}}],
                "usage": {"prompt_tokens": 42, "completion_tokens": 7},
            },
        )

    backend = OpenAICompatibleBackend(
        "http://llm.test/v1", "tiny", api_key="k-1", transport=httpx.MockTransport(handler)
    )
    completion = backend.generate(prompt(), SCHEMA, max_tokens=64, temperature=0.0)
    assert (completion.data, completion.input_tokens, completion.output_tokens) == (GOOD, 42, 7)
    (request,) = seen
    body = json.loads(request.content)
    assert str(request.url) == "http://llm.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer k-1"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "test", "schema": SCHEMA},
    }
    assert body["messages"][0]["role"] == "system" and body["messages"][-1]["role"] == "user"
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("tiny", 64, 0.0)


def test_openai_compatible_completion_style_and_errors():
    import httpx

    from clio.llm.openai_compat import OpenAICompatibleBackend

    replies = iter(
        [
            httpx.Response(503),
            httpx.Response(200, json={"choices": [{"text": "sorry, no json"}], "usage": {}}),
            httpx.Response(200, json={"choices": [{"text": ' {"label": "hi", "score": 1}\n'}]}),
            httpx.Response(401),
        ]
    )
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return next(replies)

    backend = OpenAICompatibleBackend(
        "http://llm.test/v1/",
        "tiny",
        prompt_style="completion",
        transport=httpx.MockTransport(handler),
    )
    llm = StructuredLLM(backend, config(), MemoryCache(), backoff_seconds=0)
    assert llm.ask(prompt(), Answer) == Answer(label="hi", score=1)
    assert paths == ["/v1/completions"] * 3
    assert llm.usage.calls == 3
    with pytest.raises(LLMUnavailable):
        llm.ask(prompt("other"), Answer)


def test_openai_compatible_timeout_is_a_retryable_error():
    import httpx

    from clio.llm.openai_compat import OpenAICompatibleBackend

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    backend = OpenAICompatibleBackend("http://x/v1", "m", transport=httpx.MockTransport(handler))
    with pytest.raises(LLMError, match="timed out"):
        backend.generate(prompt(), SCHEMA, max_tokens=16, temperature=0.0)


def anthropic_client(handler):
    # The anthropic SDK ships its own fork of httpx (`httpx2`) and only accepts its clients.
    import anthropic
    import httpx2

    return anthropic.Anthropic(
        api_key="test-key",
        max_retries=2,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def anthropic_message(data: dict) -> dict:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "tool_use", "id": "tu_1", "name": "record_answer", "input": data}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 55, "output_tokens": 9},
    }


def test_anthropic_forces_the_tool_and_retries_overload_honouring_retry_after():
    import httpx2

    from clio.llm.anthropic_backend import AnthropicBackend

    bodies: list[dict] = []
    replies = iter(
        [
            httpx2.Response(529, headers={"retry-after-ms": "10"}, json={"type": "error"}),
            httpx2.Response(429, headers={"retry-after": "0.01"}, json={"type": "error"}),
            httpx2.Response(200, json=anthropic_message(GOOD)),
        ]
    )

    def handler(request):
        bodies.append(json.loads(request.content))
        return next(replies)

    backend = AnthropicBackend("claude-test", client=anthropic_client(handler))
    completion = backend.generate(prompt(), SCHEMA, max_tokens=100, temperature=0.6)
    assert (completion.data, completion.input_tokens, completion.output_tokens) == (GOOD, 55, 9)
    assert len(bodies) == 3
    body = bodies[-1]
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "record_answer"}
    assert "Label it." in body["system"]
    assert body["messages"][-1] == {"role": "user", "content": "Conversation:\nhello"}
    assert (body["model"], body["max_tokens"]) == ("claude-test", 100)


@pytest.mark.parametrize("status,error", [(500, LLMError), (401, LLMUnavailable)])
def test_anthropic_errors_map_to_retryable_or_fatal(status, error):
    import httpx2

    from clio.llm.anthropic_backend import AnthropicBackend

    def handler(request):
        return httpx2.Response(status, headers={"retry-after-ms": "1"}, json={"type": "error"})

    backend = AnthropicBackend("claude-test", client=anthropic_client(handler))
    with pytest.raises(error):
        backend.generate(prompt(), SCHEMA, max_tokens=100, temperature=0.0)


def test_build_backend_reads_keys_from_the_environment(monkeypatch):
    from clio.llm.anthropic_backend import AnthropicBackend
    from clio.llm.factory import build_backend
    from clio.llm.openai_compat import OpenAICompatibleBackend

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(LLMUnavailable, match="ANTHROPIC_API_KEY"):
        build_backend(LLMConfig(backend="anthropic", model="claude-test"))
    monkeypatch.setenv("MY_KEY", "secret")
    backend = build_backend(
        LLMConfig(backend="anthropic", model="claude-test", api_key_env="MY_KEY")
    )
    assert isinstance(backend, AnthropicBackend)
    assert backend.identifier == "anthropic:claude-test"

    with pytest.raises(LLMUnavailable, match="base_url"):
        build_backend(LLMConfig(backend="openai-compatible"))
    compat = build_backend(
        LLMConfig(backend="openai-compatible", base_url="http://127.0.0.1:1/v1", model="m")
    )
    assert isinstance(compat, OpenAICompatibleBackend)
    assert compat.identifier == "openai-compatible:m:chat"
