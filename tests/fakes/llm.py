"""A scripted `LLMBackend` for unit tests and fault injection.

Answers come from a queue (one per call, in order) or from a function of the call.
An answer can be:
- any JSON-like value (dict, list, number ...): returned as the parsed answer;
- a `str`: treated as the model's raw text and parsed like the real backends do, so
  invalid JSON raises `LLMError`;
- an exception instance: raised (e.g. `LLMError("timeout")`);
- `Sleep(seconds, then)`: waits, then answers `then`.
`fail_first=N` raises `failure` on the first N calls before consulting the script.

`OracleTokens` is a token-level fake for schema-guided decoding (`clio.llm.guided`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from clio.llm.base import Completion, Example, LLMError, Prompt
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


class OracleTokens:
    """A `guided.TokenModel` whose "model" wants to write `target` after its prompt.

    Tokens are the given vocabulary (plus every single byte), tokenized greedily by
    longest match. The logits favour the longest token that continues `target` from
    everything fed so far; tokens listed in `boost` get a bonus (to make the model want
    something the schema forbids). Every other token scores 0, ties go to lower ids;
    `sharpness` scales the preference (for sampling above temperature 0).
    """

    def __init__(
        self,
        target: str,
        vocabulary: Iterable[str] = (),
        *,
        boost: dict[str, float] | None = None,
        sharpness: float = 1.0,
    ):
        pieces = [bytes([b]) for b in range(256)]
        pieces += [w.encode() for w in vocabulary if len(w.encode()) > 1]
        self.pieces: list[bytes] = list(dict.fromkeys(pieces))
        self.ids = {p: i for i, p in enumerate(self.pieces)}
        self.eos = len(self.pieces)  # a control token with an empty piece
        self.target = target.encode()
        self.boost = {self.ids[w.encode()]: v for w, v in (boost or {}).items()}
        self.sharpness = sharpness
        self.fed = bytearray()
        self.begins: list[tuple[int, int]] = []  # (shared, own) tokens passed to `begin`
        self.feeds: list[int] = []  # tokens passed to each `feed`

    def tokenize(self, text: bytes, *, bos: bool) -> list[int]:
        out, i = [], 0
        while i < len(text):
            piece = max(
                (p for p in self.pieces if text.startswith(p, i)), key=len
            )  # every single byte is a piece, so one always matches
            out.append(self.ids[piece])
            i += len(piece)
        return out

    def piece(self, token: int) -> bytes:
        return b"" if token == self.eos else self.pieces[token]

    def is_control(self, token: int) -> bool:
        return token == self.eos

    def begin(self, shared: list[int], own: list[int]) -> Any:
        self.fed.clear()
        self.begins.append((len(shared), len(own)))
        return self._after(shared + own)

    def feed(self, tokens: list[int]) -> Any:
        self.feeds.append(len(tokens))
        return self._after(tokens)

    def _after(self, tokens: list[int]) -> Any:
        import numpy as np

        for token in tokens:
            self.fed += self.piece(token)
        logits = np.zeros(len(self.pieces) + 1, dtype=np.float32)
        logits -= np.arange(len(logits), dtype=np.float32) * 1e-6
        if self.target.startswith(bytes(self.fed)):
            rest = self.target[len(self.fed) :]
            for token, piece in enumerate(self.pieces):
                if rest.startswith(piece):
                    logits[token] += len(piece) * self.sharpness
            if not rest:
                logits[self.eos] += 100
        for token, bonus in self.boost.items():
            logits[token] += bonus
        return logits


# A tiny schema and prompt for backend tests.


class Answer(BaseModel):
    label: str = Field(max_length=10)
    score: int = Field(ge=1, le=5)


SCHEMA = Answer.model_json_schema()
GOOD = {"label": "greeting", "score": 2}
PROMPT = Prompt(
    task="label",
    instruction="Label it.",
    input="hello",
    examples=(Example("hi", {"label": "greeting", "score": 1}),),
)
