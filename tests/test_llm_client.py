from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

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
    TokenRateLimiter,
    Usage,
    cache_key,
    estimated_tokens,
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


def test_cost_prefers_the_price_table_entry_of_the_configured_model():
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    table = {"claude-test": (1.0, 5.0), "other": (9.0, 9.0)}
    cfg = config(model="claude-test", price_table=table, price_per_million_input_tokens=100.0)
    assert usage.cost(cfg) == pytest.approx(6.0)
    assert usage.report(cfg) == {**usage.as_dict(), "estimated_cost": 6.0}
    unlisted = config(model="m", price_table=table, price_per_million_output_tokens=2.0)
    assert usage.cost(unlisted) == pytest.approx(2.0)


def test_server_retry_after_replaces_the_backoff():
    backend = FakeBackend([LLMError("HTTP 429", retry_after=0.3), GOOD])
    llm = StructuredLLM(backend, config(), backoff_seconds=5.0)  # backoff would wait 5 s
    start = time.monotonic()
    assert llm.ask(prompt(), Answer) == Answer(**GOOD)
    assert 0.3 <= time.monotonic() - start < 2.0


def test_timeouts_are_retried_and_then_recorded_as_failure():
    backend = FakeBackend([], fail_first=3, failure=LLMError("chat/completions: timed out"))
    result = client(backend).ask(prompt(), Answer)
    assert isinstance(result, LLMFailure)
    assert result.error.count("timed out") == 3
    assert len(backend.calls) == 3


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_rate_limiter_waits_for_the_window_to_free_room(monkeypatch):
    clock = FakeClock()
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    monkeypatch.setattr("clio.llm.client.time.sleep", fake_sleep)
    limiter = TokenRateLimiter(1000, clock=clock)
    first = limiter.acquire(600)
    limiter.settle(first, 700)  # the real usage was higher than estimated
    clock.now = 10.0
    limiter.acquire(300)  # 700 + 300 fits
    assert sleeps == []
    limiter.acquire(100)  # 1100 does not: wait until the first call leaves the window
    assert sleeps == [pytest.approx(50.0)]
    assert clock.now == pytest.approx(60.0)
    limiter.acquire(5000)  # larger than the budget: runs alone, once both calls have left
    assert clock.now == pytest.approx(120.0)


def test_tokens_per_minute_is_applied_to_calls(monkeypatch):
    waits: list[int] = []
    monkeypatch.setattr(TokenRateLimiter, "acquire", lambda self, n: waits.append(n) or None)
    client(FakeBackend([GOOD]), tokens_per_minute=10_000).ask(prompt(), Answer)
    assert waits == [estimated_tokens(prompt(), 256)]


def test_client_keeps_as_many_calls_in_flight_as_the_backend_answers_at_once():
    backend = FakeBackend(echo_answer, delay=0.05)
    backend.parallel_calls = 3  # type: ignore[attr-defined]
    client(backend, concurrency=1).ask_many([prompt(f"p{i}") for i in range(6)], Answer)
    assert backend.max_in_flight == 3


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


def test_a_prompt_asked_twice_in_one_batch_reaches_the_backend_once():
    """Two copies in flight at once would both be asked; one after the other, the second
    would be a cache hit: the batch asks once whatever the timing, and counts the copy as
    answered from the cache, as a sequential run does."""
    prompts = [prompt("a"), prompt("b"), prompt("a"), prompt("a")]
    backend = FakeBackend(echo_answer, delay=0.05)
    llm = client(backend, MemoryCache(), concurrency=4)
    results = llm.ask_many(prompts, Answer)
    assert [r.label for r in results] == ["a", "b", "a", "a"]
    assert sorted(c.prompt.input for c in backend.calls) == ["a", "b"]
    assert (llm.usage.calls, llm.usage.cached_calls) == (2, 2)

    # control: the same prompts asked concurrently one by one reach the backend each time
    backend = FakeBackend(echo_answer, delay=0.05)
    llm = client(backend, MemoryCache(), concurrency=4)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda p: llm.ask(p, Answer), prompts))
    assert len(backend.calls) == 4
