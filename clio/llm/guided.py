"""Schema-guided decoding: the local model writes only the values of a JSON answer.

For a flat object schema (strings, string enums, small integer ranges, numbers, booleans,
lists of strings, which is every answer clio asks for) the JSON structure is known in
advance: `{"request": "`, `", "task": "`, ... So the structure is fed to the model as
text (a batch of tokens evaluated at once, like the prompt) and only the values are
sampled, one decode per token. On the packaged Gemma 3 270M one decode costs about as
much as evaluating eight prompt tokens (its 262k-entry output layer dominates), and
about half the tokens of a free answer are structure, so this halves the decodes.

Constraints are checked lazily: the best token is taken unless it breaks the value
(a newline or a control token inside a string), then the next best. Enums and integer
ranges are chosen among their allowed tokens only. llama.cpp's grammar sampler would
check every one of the 262k tokens at every step, which is what made constrained
decoding slow; here a check touches one token. A schema outside this shape gives
`None` from `plan`, and the backend falls back to free decoding plus llama.cpp's grammar.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from clio.llm.base import LLMError

# Integer ranges up to this size are chosen like an enum (one token per digit).
MAX_CHOICE_RANGE = 100
# Small models fall into loops ("car", "car", ...) in greedy decoding; a mild penalty on
# tokens already written in this answer stops them (the same rule as llama.cpp's).
REPEAT_PENALTY = 1.15
REPEAT_WINDOW = 64
TOP_K = 40  # candidates kept when sampling above temperature 0
_MAX_REJECTED = 64  # tokens skipped for one pick before giving up
_NUMBER_CHARS = frozenset(b"0123456789+-.eE")

Kind = Literal["string", "choice", "number", "string_list"]


@dataclass(frozen=True)
class FieldPlan:
    name: str
    kind: Kind
    max_chars: int | None = None  # strings and list items
    min_chars: int = 0
    options: tuple[Any, ...] = ()  # choice: the allowed JSON values
    max_items: int | None = None
    min_items: int = 0
    integer: bool = False  # number: no fraction


def plan(schema: dict[str, Any]) -> tuple[FieldPlan, ...] | None:
    """The fields of a flat object schema in order, or None when it is not that shape."""
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, dict) or not properties:
        return None
    fields = []
    for name, spec in properties.items():
        planned = _plan_field(name, spec)
        if planned is None:
            return None
        fields.append(planned)
    return tuple(fields)


def _plan_field(name: str, spec: Any) -> FieldPlan | None:
    if not isinstance(spec, dict) or any(k in spec for k in ("$ref", "anyOf", "oneOf", "allOf")):
        return None
    kind = spec.get("type")
    if "enum" in spec:
        options = tuple(spec["enum"])
        if options and all(isinstance(o, str | bool | int) for o in options):
            return FieldPlan(name, "choice", options=options)
        return None
    if kind == "string":
        return FieldPlan(
            name, "string", max_chars=spec.get("maxLength"), min_chars=spec.get("minLength", 0)
        )
    if kind == "boolean":
        return FieldPlan(name, "choice", options=(True, False))
    if kind == "integer":
        low, high = spec.get("minimum"), spec.get("maximum")
        if isinstance(low, int) and isinstance(high, int) and 0 <= high - low <= MAX_CHOICE_RANGE:
            return FieldPlan(name, "choice", options=tuple(range(low, high + 1)))
        return FieldPlan(name, "number", integer=True)
    if kind == "number":
        return FieldPlan(name, "number")
    if kind == "array":
        items = spec.get("items")
        if isinstance(items, dict) and items.get("type") == "string" and "enum" not in items:
            return FieldPlan(
                name,
                "string_list",
                max_chars=items.get("maxLength"),
                min_chars=items.get("minLength", 0),
                max_items=spec.get("maxItems"),
                min_items=spec.get("minItems", 0),
            )
    return None


class TokenModel(Protocol):
    """What guided decoding needs from a model (llama.cpp in `clio.llm.local`)."""

    def tokenize(self, text: bytes, *, bos: bool) -> list[int]: ...

    def piece(self, token: int) -> bytes:
        """The bytes of one token."""
        ...

    def is_control(self, token: int) -> bool:
        """End-of-generation and other special tokens, never part of JSON text."""
        ...

    def begin(self, shared: list[int], own: list[int]) -> np.ndarray:
        """Start over with the prompt `shared + own`; the logits after its last token.

        `shared` (the part every prompt of a task has) may be reused from the previous
        call, `own` is always evaluated anew: so an answer never depends on which call
        came before (llama.cpp's numbers vary slightly with how tokens are batched)."""
        ...

    def feed(self, tokens: list[int]) -> np.ndarray:
        """Append `tokens`; the logits after the last one."""
        ...


@dataclass
class GuidedResult:
    data: dict[str, Any]
    input_tokens: int  # prompt tokens plus structure fed as text
    output_tokens: int  # tokens sampled (or chosen among an enum's options)


@dataclass
class _Decoder:
    model: TokenModel
    shared: bytes
    prompt: bytes
    temperature: float
    max_tokens: int
    rng: np.random.Generator
    pending: bytearray = field(default_factory=bytearray)
    started: bool = False
    n_in: int = 0
    n_out: int = 0
    history: list[int] = field(default_factory=list)

    # -- feeding ---------------------------------------------------------------
    def logits(self) -> np.ndarray:
        """Feed the pending text and return the logits after it."""
        if not self.started:
            shared = self.model.tokenize(self.shared, bos=True)
            tokens = self.model.tokenize(self.prompt + bytes(self.pending), bos=not shared)
            self.started = True
            logits = self.model.begin(shared, tokens)
            tokens = shared + tokens
        else:
            tokens = self.model.tokenize(bytes(self.pending), bos=False)
            logits = self.model.feed(tokens)
        self.n_in += len(tokens)
        self.pending.clear()
        return logits

    def sampled(self, token: int | None) -> None:
        """Count one sampled token (None: a choice that wrote no token, such as stopping)."""
        self.n_out += 1
        if token is not None:
            self.history.append(token)
        if self.n_out > self.max_tokens:
            raise LLMError(f"answer longer than {self.max_tokens} tokens")

    # -- picking tokens --------------------------------------------------------
    def pick(self, logits: np.ndarray, acceptable: Callable[[int], bool]) -> int:
        scores = np.array(logits, dtype=np.float32)  # a copy: the view belongs to llama.cpp
        recent = set(self.history[-REPEAT_WINDOW:])
        if recent and REPEAT_PENALTY != 1.0:
            idx = np.fromiter(recent, dtype=np.int64)
            values = scores[idx]
            scores[idx] = np.where(values > 0, values / REPEAT_PENALTY, values * REPEAT_PENALTY)
        if self.temperature > 0:
            top = np.argpartition(scores, -TOP_K)[-TOP_K:]
            top = np.array([t for t in top if acceptable(int(t))], dtype=np.int64)
            if len(top):
                return int(top[self.sample_index(scores[top])])
        # Greedy (or nothing acceptable among the top candidates): the best acceptable token.
        for _ in range(_MAX_REJECTED):
            token = int(np.argmax(scores))
            if acceptable(token):
                return token
            scores[token] = -np.inf
        raise LLMError("no acceptable token among the most likely ones")

    def sample_index(self, scores: np.ndarray) -> int:
        if self.temperature <= 0:
            return int(np.argmax(scores))
        z = (scores - scores.max()) / self.temperature
        p = np.exp(z)
        return int(self.rng.choice(len(p), p=p / p.sum()))

    # -- values ----------------------------------------------------------------
    def string(self, plan: FieldPlan) -> tuple[str, bytes]:
        """Sample a string's content after an opening quote already pending; returns the
        value and whatever the closing token carried after the quote (e.g. `,` or `]`)."""
        content = bytearray()
        logits = self.logits()

        def acceptable(token: int) -> bool:
            if self.model.is_control(token):
                return False
            piece = self.model.piece(token)
            end = _closing_quote(content, piece)
            body = piece if end < 0 else piece[:end]
            if b"\n" in body or b"\r" in body:
                return False
            # An empty value is not an answer: do not close the string at once.
            return not (end >= 0 and not content and not body and plan.min_chars > 0)

        while True:
            token = self.pick(logits, acceptable)
            self.sampled(token)
            piece = self.model.piece(token)
            end = _closing_quote(content, piece)
            if end < 0:
                content += piece
                self._check_length(content, plan)
                logits = self.model.feed([token])
                continue
            content += piece[:end]
            self._check_length(content, plan)
            # The closing token is not fed as sampled: its text up to the quote is fed with
            # the structure that follows, so the model sees naturally merged tokens.
            self.pending += piece[:end] + b'"'
            return _json_string(bytes(content)), piece[end + 1 :]

    def _check_length(self, content: bytearray, plan: FieldPlan) -> None:
        if plan.max_chars is not None:
            text = content.decode("utf-8", errors="ignore")
            if len(text) > plan.max_chars:
                raise LLMError(f"{plan.name}: longer than {plan.max_chars} characters")

    def choice(self, plan: FieldPlan) -> Any:
        """One of the allowed values, choosing among their tokens only."""
        texts = {_json_text(o): o for o in plan.options}
        strings = all(isinstance(o, str) for o in plan.options)
        if strings:
            self.pending += b'"'
            sequences = {t: self.model.tokenize(t[1:-1].encode(), bos=False) for t in texts}
            closers = self._first_tokens([b'"', b'",', b'"}'])
        else:
            sequences = {t: self.model.tokenize(t.encode(), bos=False) for t in texts}
            closers = self._first_tokens([b",", b"}", b", "])
        chosen: list[int] = []
        while True:
            depth = len(chosen)
            live = [t for t, seq in sequences.items() if seq[:depth] == chosen]
            complete = [t for t in live if len(sequences[t]) == depth]
            following = sorted({sequences[t][depth] for t in live if len(sequences[t]) > depth})
            if not following:
                text = complete[0]
                break
            if not complete and len(following) == 1:
                token = following[0]  # forced: no decode needed
            else:
                logits = self.logits()
                scores = [float(logits[t]) for t in following]
                if complete:  # stopping here is an option too
                    scores.append(max(float(logits[c]) for c in closers))
                index = self.sample_index(np.array(scores))
                self.sampled(None)
                if index == len(following):
                    text = complete[0]
                    break
                token = following[index]
            chosen.append(token)
            self.pending += self.model.piece(token)
        if strings:
            self.pending += b'"'
        return texts[text]

    def number(self, plan: FieldPlan) -> int | float:
        """Number characters until a token that ends the number (`,` `}` or a space)."""
        text = bytearray()
        logits = self.logits()

        def split(piece: bytes) -> tuple[bytes, bool]:
            """(number characters at the start of `piece`, whether the number ends in it)."""
            lead = piece if text else piece.lstrip(b" ")
            end = 0
            while end < len(lead) and lead[end] in _NUMBER_CHARS:
                end += 1
            return lead[:end], end < len(lead)

        def acceptable(token: int) -> bool:
            if self.model.is_control(token):
                return False
            body, ends = split(self.model.piece(token))
            return bool(body) if not text else bool(body) or ends

        while True:
            token = self.pick(logits, acceptable)
            self.sampled(token)
            body, ends = split(self.model.piece(token))
            text += body
            if ends:
                self.pending += body
                break
            logits = self.model.feed([token])
        try:
            value = json.loads(bytes(text))
        except ValueError:
            raise LLMError(f"{plan.name}: {bytes(text)!r} is not a number") from None
        if not isinstance(value, int | float) or plan.integer and not float(value).is_integer():
            raise LLMError(f"{plan.name}: {bytes(text)!r} is not a valid number")
        return int(value) if plan.integer else value

    def string_list(self, plan: FieldPlan) -> list[str]:
        items: list[str] = []
        if plan.min_items == 0:
            logits = self.logits()
            empty, item = self._first_tokens([b" []"])[0], self._first_tokens([b' ["'])[0]
            if empty != item and logits[empty] > logits[item]:
                self.pending += b" []"
                self.sampled(empty)
                return items
        self.pending += b' ["'
        while True:
            value, after = self.string(plan)
            items.append(value)
            if plan.max_items is not None and len(items) >= plan.max_items:
                break
            if after[:1] == b",":
                more = True
            elif after[:1] == b"]":
                more = False
            else:  # the quote came alone: ask the model whether the list goes on
                logits = self.logits()
                go_on = self._first_tokens([b",", b", "])
                stop = self._first_tokens([b"]", b"],", b"]}"])
                more = max(logits[t] for t in go_on) > max(logits[t] for t in stop)
            if not more:
                break
            self.pending += b', "'
        self.pending += b"]"
        return items

    def _first_tokens(self, texts: Sequence[bytes]) -> list[int]:
        out: list[int] = []
        for text in texts:
            tokens = self.model.tokenize(text, bos=False)
            if tokens and tokens[0] not in out:
                out.append(tokens[0])
        return out


def decode(
    model: TokenModel,
    prompt: str,
    fields: Sequence[FieldPlan],
    *,
    temperature: float,
    max_tokens: int,
    seed: int = 0,
    shared: str = "",
) -> GuidedResult:
    """Write the answer object for `fields` after `shared + prompt` (`shared`: the part of
    the prompt every call of a task has, see `TokenModel.begin`); raises LLMError when
    the model cannot produce a valid value (too long, not a number, ...)."""
    decoder = _Decoder(
        model=model,
        shared=shared.encode("utf-8"),
        prompt=prompt.encode("utf-8"),
        temperature=temperature,
        max_tokens=max_tokens,
        rng=np.random.default_rng(seed),
    )
    data: dict[str, Any] = {}
    for index, spec in enumerate(fields):
        decoder.pending += (b"{" if index == 0 else b", ") + _json_text(spec.name).encode() + b":"
        if spec.kind == "string":
            decoder.pending += b' "'
            data[spec.name], _ = decoder.string(spec)
        elif spec.kind == "string_list":
            data[spec.name] = decoder.string_list(spec)
        else:
            decoder.pending += b" "
            if spec.kind == "choice":
                data[spec.name] = decoder.choice(spec)
            else:
                data[spec.name] = decoder.number(spec)
    return GuidedResult(data=data, input_tokens=decoder.n_in, output_tokens=decoder.n_out)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _closing_quote(content: bytes | bytearray, piece: bytes) -> int:
    """Index in `piece` of the first quote that is not escaped, or -1."""
    backslashes = len(content) - len(content.rstrip(b"\\"))
    for i, byte in enumerate(piece):
        if byte == ord('"') and backslashes % 2 == 0:
            return i
        backslashes = backslashes + 1 if byte == ord("\\") else 0
    return -1


def _json_string(content: bytes) -> str:
    try:
        return json.loads(b'"' + content + b'"', strict=False)
    except ValueError:
        # A stray backslash: keep the text as written rather than fail the whole answer.
        return content.decode("utf-8", errors="replace")
