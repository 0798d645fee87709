"""`StructuredLLM`: the one client every stage uses, whatever the backend.

It validates each answer against a pydantic model, retries (bounded) on backend errors
and invalid answers, caches final results (successes and failures) so a re-run of the
same input costs no calls, runs several calls at once under a rate limit, and counts
usage. After the last attempt it returns `LLMFailure`; it never invents a value.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from clio.config import LLMConfig
from clio.llm.base import LLMBackend, LLMError, Prompt
from clio.progress import Progress

T = TypeVar("T", bound=BaseModel)

_log = logging.getLogger("clio.llm")

FAILURE_KEY = "__failure__"
# A retry at the same temperature would give the same answer (temperature 0 is greedy),
# so each retry samples a little hotter.
RETRY_TEMPERATURE_STEP = 0.3
MAX_TEMPERATURE = 1.5
MAX_RETRY_AFTER = 120.0  # seconds; a server asking for longer is not waited for longer


def prices(config: LLMConfig) -> tuple[float, float]:
    """(input, output) price per million tokens: the model's entry in `price_table`, else
    the two price fields."""
    return config.price_table.get(
        config.model,
        (config.price_per_million_input_tokens, config.price_per_million_output_tokens),
    )


@dataclass
class Usage:
    calls: int = 0  # backend attempts, including retries and failed ones
    cached_calls: int = 0  # answers served from the cache (no tokens counted)
    input_tokens: int = 0
    output_tokens: int = 0
    failures: int = 0  # prompts answered with LLMFailure (fresh or from the cache)

    def cost(self, config: LLMConfig) -> float:
        """Estimated cost at the model's `prices`."""
        price_in, price_out = prices(config)
        return (self.input_tokens * price_in + self.output_tokens * price_out) / 1_000_000

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def report(self, config: LLMConfig) -> dict[str, int | float]:
        """Counts plus `estimated_cost`, as recorded in a run's manifest."""
        return {**self.as_dict(), "estimated_cost": round(self.cost(config), 6)}


@dataclass(frozen=True)
class LLMFailure:
    """Returned instead of a model when every attempt failed."""

    error: str


class ResponseCache(Protocol):
    """Persistent answers by cache key; `clio.store.PrivateStore` implements it."""

    def get_llm_response(self, key: str) -> tuple[Any, int, int] | None: ...

    def put_llm_response(
        self, key: str, backend: str, model: str, response: Any, n_in: int, n_out: int
    ) -> None: ...


class MemoryCache:
    """A `ResponseCache` in a dict, for tests and runs without a private store."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[Any, int, int]] = {}
        self._lock = threading.Lock()

    def get_llm_response(self, key: str) -> tuple[Any, int, int] | None:
        with self._lock:
            return self.entries.get(key)

    def put_llm_response(
        self, key: str, backend: str, model: str, response: Any, n_in: int, n_out: int
    ) -> None:
        # Round-trip through JSON like a real store, so cached answers look the same.
        with self._lock:
            self.entries[key] = (json.loads(json.dumps(response)), n_in, n_out)


class RateLimiter:
    """Spaces call starts at least 60/requests_per_minute seconds apart (thread-safe)."""

    def __init__(self, requests_per_minute: int | None):
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._next_start = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
        if start > now:
            time.sleep(start - now)


class TokenRateLimiter:
    """Keeps the tokens of calls started in any 60-second window under `tokens_per_minute`.

    A call reserves an estimate before it starts and settles its real usage after; a call
    larger than the whole budget still runs, alone in its window.
    """

    WINDOW = 60.0

    def __init__(self, tokens_per_minute: int | None, *, clock: Any = time.monotonic):
        self._limit = tokens_per_minute
        self._clock = clock
        self._entries: dict[int, tuple[float, int]] = {}  # id -> (start, tokens)
        self._next_id = 0
        self._lock = threading.Lock()

    def acquire(self, estimate: int) -> int | None:
        if not self._limit:
            return None
        while True:
            with self._lock:
                now = self._clock()
                self._entries = {
                    k: (t, n) for k, (t, n) in self._entries.items() if now - t < self.WINDOW
                }
                used = sum(n for _, n in self._entries.values())
                if not self._entries or used + estimate <= self._limit:
                    self._next_id += 1
                    self._entries[self._next_id] = (now, estimate)
                    return self._next_id
                wait = min(t for t, _ in self._entries.values()) + self.WINDOW - now
            time.sleep(max(wait, 0.01))

    def settle(self, handle: int | None, tokens: int) -> None:
        if handle is None:
            return
        with self._lock:
            if handle in self._entries:
                self._entries[handle] = (self._entries[handle][0], tokens)


def estimated_tokens(prompt: Prompt, max_output_tokens: int) -> int:
    """A rough upper estimate of a call's tokens (4 characters per token) for rate limits."""
    chars = len(prompt.instruction) + len(prompt.input)
    chars += sum(len(e.input) + len(json.dumps(e.output)) for e in prompt.examples)
    return chars // 4 + max_output_tokens


def cache_key(
    backend_identifier: str,
    prompt: Prompt,
    schema: dict[str, Any],
    temperature: float,
    max_output_tokens: int,
) -> str:
    payload = {
        "backend": backend_identifier,
        "task": prompt.task,
        "instruction": prompt.instruction,
        "examples": [[e.input, e.output] for e in prompt.examples],
        "input_label": prompt.input_label,
        "input": prompt.input,
        "schema": schema,
        "temperature": temperature,
        "max_output_tokens": max_output_tokens,
    }
    # Keys are not sorted: the order of schema properties and example fields changes the
    # prompt (and the local grammar), so it must change the key too.
    canonical = json.dumps(payload, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def fitted_prompt(
    backend: LLMBackend, prompt: Prompt, schema: dict[str, Any], *, max_tokens: int
) -> Prompt:
    """The prompt as `backend` takes it: a backend with a `fit` method (the local one)
    cuts an input too long for its context, so the cache key, the answer's validation and
    the call all see the text the model sees."""
    fit = getattr(backend, "fit", None)
    if fit is None:
        return prompt
    return fit(prompt, schema, max_tokens=max_tokens)


class StructuredLLM:
    """Structured answers with retries, validation, a cache and usage counts. Output models'
    validators get the prompt as validation context (`info.context["prompt"]`), so an answer
    can be checked against what was asked."""

    def __init__(
        self,
        backend: LLMBackend,
        config: LLMConfig,
        cache: ResponseCache | None = None,
        *,
        backoff_seconds: float = 1.0,
        retry_cached_failures: bool = False,
    ):
        self.backend = backend
        self.config = config
        self.cache = cache
        self.usage = Usage()
        self._backoff_seconds = backoff_seconds
        self._retry_cached_failures = retry_cached_failures
        self._usage_lock = threading.Lock()
        self._rate_limiter = RateLimiter(config.requests_per_minute)
        self._token_limiter = TokenRateLimiter(config.tokens_per_minute)

    # -- one prompt --------------------------------------------------------
    def ask(self, prompt: Prompt, output: type[T]) -> T | LLMFailure:
        schema = output.model_json_schema()
        prompt = self._fitted(prompt, schema)
        key = cache_key(
            self.backend.identifier,
            prompt,
            schema,
            self.config.temperature,
            self.config.max_output_tokens,
        )
        cached = self._from_cache(key, prompt, output)
        if cached is not None:
            return cached

        errors: list[str] = []
        n_in = n_out = 0
        for attempt in range(self.config.max_retries + 1):
            temperature = min(
                MAX_TEMPERATURE, self.config.temperature + RETRY_TEMPERATURE_STEP * attempt
            )
            self._rate_limiter.wait()
            reservation = self._token_limiter.acquire(
                estimated_tokens(prompt, self.config.max_output_tokens)
            )
            self._count(calls=1)
            try:
                completion = self.backend.generate(
                    prompt,
                    schema,
                    max_tokens=self.config.max_output_tokens,
                    temperature=temperature,
                )
            except LLMError as exc:
                errors.append(f"attempt {attempt + 1}: backend error: {exc}")
                if attempt < self.config.max_retries:
                    time.sleep(self._retry_delay(attempt, exc))
                continue
            self._token_limiter.settle(
                reservation, completion.input_tokens + completion.output_tokens
            )
            n_in += completion.input_tokens
            n_out += completion.output_tokens
            self._count(
                input_tokens=completion.input_tokens, output_tokens=completion.output_tokens
            )
            try:
                value = output.model_validate(completion.data, context={"prompt": prompt})
            except ValidationError as exc:
                # Retried at once: a bad answer is not a load problem, waiting does not help.
                errors.append(f"attempt {attempt + 1}: invalid answer: {_short(exc)}")
                continue
            self._to_cache(key, value.model_dump(mode="json", by_alias=True), n_in, n_out)
            return value

        failure = LLMFailure(error="; ".join(errors))
        self._count(failures=1)
        self._to_cache(key, {FAILURE_KEY: failure.error}, n_in, n_out)
        return failure

    @property
    def parallel_calls(self) -> int:
        return max(self.config.concurrency, getattr(self.backend, "parallel_calls", 1))

    # -- many prompts ------------------------------------------------------
    def ask_many(
        self, prompts: Sequence[Prompt], output: type[T], *, label: str = "llm"
    ) -> list[T | LLMFailure]:
        """Answers in the order of `prompts`, `config.concurrency` calls in flight at once
        (or as many as the backend answers in parallel, when it says so)."""
        results: list[T | LLMFailure | None] = [None] * len(prompts)
        # A prompt asked twice is asked once: two copies in flight at once would both
        # reach the backend, one after the other would find the first's answer cached, so
        # the calls made (and the usage figures) would depend on timing.
        copies: dict[str, list[int]] = {}
        for i, prompt in enumerate(prompts):
            copies.setdefault(_prompt_identity(prompt), []).append(i)
        with (
            Progress(label, total=len(prompts), unit="call", logger=_log) as progress,
            ThreadPoolExecutor(max_workers=self.parallel_calls) as pool,
        ):
            futures = {
                pool.submit(self.ask, prompts[indices[0]], output): indices
                for indices in copies.values()
            }
            try:
                for future in as_completed(futures):
                    indices = futures[future]
                    result = future.result()
                    for i in indices:
                        results[i] = result
                    if len(indices) > 1:  # the copies count as answers from the cache
                        failed = isinstance(result, LLMFailure)
                        self._count(
                            cached_calls=len(indices) - 1,
                            failures=(len(indices) - 1) * int(failed),
                        )
                    progress.update(len(indices))
            except BaseException:
                # e.g. LLMUnavailable: do not start the calls still queued.
                for future in futures:
                    future.cancel()
                raise
        _log.info(
            "%s: %d prompts, %d backend calls, %d cached, %d failed so far",
            label,
            len(prompts),
            self.usage.calls,
            self.usage.cached_calls,
            self.usage.failures,
        )
        return results  # type: ignore[return-value]  # every slot is filled above

    # -- helpers -----------------------------------------------------------
    def _fitted(self, prompt: Prompt, schema: dict[str, Any]) -> Prompt:
        return fitted_prompt(self.backend, prompt, schema, max_tokens=self.config.max_output_tokens)

    def _retry_delay(self, attempt: int, error: LLMError) -> float:
        """Exponential backoff, or what the server asked for (`retry-after`), capped."""
        backoff = self._backoff_seconds * 2**attempt
        if error.retry_after is not None:
            return min(max(error.retry_after, 0.0), MAX_RETRY_AFTER)
        return backoff

    def _from_cache(self, key: str, prompt: Prompt, output: type[T]) -> T | LLMFailure | None:
        if self.cache is None:
            return None
        hit = self.cache.get_llm_response(key)
        if hit is None:
            return None
        response, _, _ = hit
        if isinstance(response, dict) and set(response) == {FAILURE_KEY}:
            if self._retry_cached_failures:
                return None
            self._count(cached_calls=1, failures=1)
            return LLMFailure(error=str(response[FAILURE_KEY]))
        try:
            value = output.model_validate(response, context={"prompt": prompt})
        except ValidationError:
            # Stricter validators than when it was cached: ask again.
            return None
        self._count(cached_calls=1)
        return value

    def _to_cache(self, key: str, response: Any, n_in: int, n_out: int) -> None:
        if self.cache is not None:
            self.cache.put_llm_response(
                key, self.config.backend, self.backend.identifier, response, n_in, n_out
            )

    def _count(self, **deltas: int) -> None:
        with self._usage_lock:
            for name, delta in deltas.items():
                setattr(self.usage, name, getattr(self.usage, name) + delta)


def _prompt_identity(prompt: Prompt) -> str:
    """Equal for equal prompts (their examples hold dicts, so a prompt is not hashable)."""
    return json.dumps(asdict(prompt), ensure_ascii=False, sort_keys=True, default=str)


def _short(exc: ValidationError) -> str:
    """Validation errors without the offending input (it may hold conversation text)."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    ]
    return "; ".join(parts[:5])
