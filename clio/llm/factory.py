"""Builds the configured backend. API keys are read here, and only here."""

from __future__ import annotations

import os
from typing import Literal

from clio.config import LLMConfig
from clio.llm.base import LLMBackend, LLMUnavailable, TokenCounter

DEFAULT_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai-compatible": "OPENAI_API_KEY"}


def prompt_style(config: LLMConfig) -> Literal["completion", "chat"]:
    """`auto`: completion for the packaged base model, chat for everything else."""
    if config.prompt_style != "auto":
        return config.prompt_style
    return "completion" if config.backend == "local" and config.model_path is None else "chat"


def _api_key(config: LLMConfig) -> str | None:
    name = config.api_key_env or DEFAULT_KEY_ENV[config.backend]
    return os.environ.get(name) or None


def build_backend(config: LLMConfig) -> LLMBackend:
    if config.backend == "local":
        from clio.llm.local import LocalBackend

        return LocalBackend(
            config.model_path,
            context_tokens=config.context_tokens,
            threads=config.threads,
            contexts=config.local_contexts,
            prompt_style=prompt_style(config),
        )
    if config.backend == "openai-compatible":
        from clio.llm.openai_compat import OpenAICompatibleBackend

        if not config.base_url:
            raise LLMUnavailable("llm.base_url is required for the openai-compatible backend")
        return OpenAICompatibleBackend(
            config.base_url,
            config.model,
            api_key=_api_key(config),  # optional: local servers need none
            prompt_style=prompt_style(config),
            timeout_seconds=config.timeout_seconds,
        )
    if config.backend == "anthropic":
        from clio.llm.anthropic_backend import AnthropicBackend

        key = _api_key(config)
        if key is None:
            name = config.api_key_env or DEFAULT_KEY_ENV["anthropic"]
            raise LLMUnavailable(f"the anthropic backend needs an API key in ${name}")
        if prompt_style(config) != "chat":
            raise LLMUnavailable("the anthropic backend only supports chat prompts")
        return AnthropicBackend(
            config.model,
            api_key=key,
            base_url=config.base_url,
            timeout_seconds=config.timeout_seconds,
        )
    raise LLMUnavailable(f"unknown llm backend {config.backend!r}")


def token_counter(config: LLMConfig) -> TokenCounter | None:
    """The backend's own tokenizer where it is at hand offline: for `local`, its GGUF
    file's vocabulary (no weights loaded); None for the HTTP backends."""
    if config.backend != "local":
        return None
    from clio.llm.local import Vocabulary, model_file

    return Vocabulary(model_file(config.model_path))
