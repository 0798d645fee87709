"""The one small LLM protocol: structured generation against a JSON schema.

A backend turns a `Prompt` into a JSON object (parsed, not yet validated) plus
token usage. Validation, retries, caching, concurrency and usage accounting live
in `clio.llm.client.StructuredLLM`, the same for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Example:
    """One few-shot example: an input text and the object the model should answer."""

    input: str
    output: dict[str, Any]


@dataclass(frozen=True)
class Prompt:
    """A backend-neutral prompt. Each backend style renders it its own way
    (completion-style few-shot text for base models, chat messages otherwise)."""

    task: str  # short stable name, e.g. "facets", "name_cluster", "privacy_audit"
    instruction: str  # what to do, in plain words
    input: str  # the material to work on (already scrubbed)
    examples: tuple[Example, ...] = ()
    input_label: str = "Conversation"


@dataclass(frozen=True)
class Completion:
    data: Any  # the parsed JSON answer (validated later by the client)
    input_tokens: int
    output_tokens: int
    raw: str = field(default="", repr=False)


class LLMError(RuntimeError):
    """A backend call failed in a way worth retrying (timeout, 429, 5xx, bad JSON).

    `retry_after`: seconds the server asked to wait before the next attempt, if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class LLMUnavailable(RuntimeError):
    """The backend cannot answer at all (bad API key, unknown model, missing model file).

    Not an `LLMError`: retrying would not help, and recording a failure per item would
    cache the outage as if it were the model's answer, so the run should stop instead.
    """


@runtime_checkable
class LLMBackend(Protocol):
    """A backend may also have `parallel_calls: int`, the calls it answers at once (the local
    backend's contexts); the client then keeps at least that many in flight. And it may
    have `fit(prompt, schema, *, max_tokens) -> Prompt`, the prompt cut to fit its context
    (the local backend, which counts its own tokens); the client asks with that prompt."""

    @property
    def identifier(self) -> str:
        """Stable id (backend + model + anything that changes answers); part of cache keys."""
        ...

    def generate(
        self,
        prompt: Prompt,
        schema: dict[str, Any],
        *,
        max_tokens: int,
        temperature: float,
    ) -> Completion:
        """Answer `prompt` with one JSON value matching `schema`; raise LLMError on failure."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """Counts a text's tokens the way a backend's model would (`name` says whose)."""

    name: str

    def count(self, text: str, *, bos: bool = False) -> int:
        """Tokens of `text`; `bos` adds the beginning-of-sequence token a prompt starts with."""
        ...
