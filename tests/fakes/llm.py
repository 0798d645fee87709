"""A scripted `LLMBackend` for unit tests and fault injection.

Answers come from a queue (one per call, in order) or from a function of the call.
An answer can be:
- any JSON-like value (dict, list, number ...): returned as the parsed answer;
- a `str`: treated as the model's raw text and parsed like the real backends do, so
  invalid JSON raises `LLMError`;
- an exception instance: raised (e.g. `LLMError("timeout")`);
- `Sleep(seconds, then)`: waits, then answers `then`.
`fail_first=N` raises `failure` on the first N calls before consulting the script.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from clio.llm.base import Completion, LLMError, Prompt
from clio.llm.render import parse_json_answer


@dataclass(frozen=True)
class Sleep:
    seconds: float
    then: Any


@dataclass(frozen=True)
class Call:
    prompt: Prompt
    schema: dict[str, Any]
    max_tokens: int
    temperature: float


AnswerFn = Callable[[Call], Any]


class FakeBackend:
    def __init__(
        self,
        answers: Iterable[Any] | AnswerFn = (),
        *,
        identifier: str = "fake:model-a",
        fail_first: int = 0,
        failure: Exception | None = None,
        delay: float = 0.0,
        tokens: tuple[int, int] = (100, 20),
    ):
        self._identifier = identifier
        self._function: AnswerFn | None = answers if callable(answers) else None
        self._queue: deque[Any] = deque() if callable(answers) else deque(answers)
        self._fail_first = fail_first
        self._failure = failure or LLMError("timed out")
        self._delay = delay
        self._tokens = tokens
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def identifier(self) -> str:
        return self._identifier

    def generate(
        self, prompt: Prompt, schema: dict[str, Any], *, max_tokens: int, temperature: float
    ) -> Completion:
        call = Call(prompt, schema, max_tokens, temperature)
        with self._lock:
            self.calls.append(call)
            n = len(self.calls)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._delay:
                time.sleep(self._delay)
            if n <= self._fail_first:
                raise self._failure
            return self._answer(self._next(call))
        finally:
            with self._lock:
                self.in_flight -= 1

    def _next(self, call: Call) -> Any:
        if self._function is not None:
            return self._function(call)
        with self._lock:
            if not self._queue:
                raise AssertionError("FakeBackend: no scripted answer left")
            return self._queue.popleft()

    def _answer(self, answer: Any) -> Completion:
        while isinstance(answer, Sleep):
            time.sleep(answer.seconds)
            answer = answer.then
        if isinstance(answer, BaseException):
            raise answer
        n_in, n_out = self._tokens
        if isinstance(answer, str):
            try:
                data = parse_json_answer(answer)
            except ValueError as exc:
                raise LLMError(f"answer is not valid JSON: {exc}") from None
            return Completion(data=data, input_tokens=n_in, output_tokens=n_out, raw=answer)
        return Completion(data=answer, input_tokens=n_in, output_tokens=n_out)
