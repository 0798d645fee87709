"""OpenAI-compatible HTTP backend (vLLM, Ollama, llama.cpp's server, hosted APIs).

Chat style posts `/chat/completions` with a JSON-schema `response_format`; completion
style posts `/completions` with the few-shot text and stops at the next block. Transport
errors, timeouts, 429 and 5xx raise `LLMError` (the client retries with backoff); a
rejected key or unknown model raises `LLMUnavailable` (the run stops).
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from clio.llm.base import Completion, LLMError, LLMUnavailable, Prompt
from clio.llm.render import COMPLETION_STOP, chat_prompt, completion_text, parse_json_answer

_FATAL_STATUS = {401, 403, 404}


class OpenAICompatibleBackend:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        prompt_style: Literal["chat", "completion"] = "chat",
        timeout_seconds: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.model = model
        self.prompt_style = prompt_style
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout_seconds,
            transport=transport,
        )

    @property
    def identifier(self) -> str:
        # The server address is left out: the same model behind another URL answers alike.
        return f"openai-compatible:{self.model}:{self.prompt_style}"

    def generate(
        self, prompt: Prompt, schema: dict[str, Any], *, max_tokens: int, temperature: float
    ) -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if self.prompt_style == "chat":
            path = "chat/completions"
            body["messages"] = chat_prompt(prompt, schema).with_system_message()
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": prompt.task, "schema": schema},
            }
        else:
            path = "completions"
            body["prompt"] = completion_text(prompt)
            body["stop"] = list(COMPLETION_STOP)
        payload = self._post(path, body)
        try:
            choice = payload["choices"][0]
            text = choice["message"]["content"] if self.prompt_style == "chat" else choice["text"]
            usage = payload.get("usage") or {}
            n_in, n_out = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LLMError(f"unexpected response shape from {path}: {exc!r}") from None
        try:
            data = parse_json_answer(text or "")
        except ValueError as exc:
            raise LLMError(f"answer is not valid JSON ({n_out} tokens): {exc}") from None
        return Completion(data=data, input_tokens=n_in, output_tokens=n_out, raw=text)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise LLMError(f"{path}: timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise LLMError(f"{path}: {type(exc).__name__}: {exc}") from None
        if response.status_code in _FATAL_STATUS:
            raise LLMUnavailable(f"{path}: HTTP {response.status_code} (check key and model)")
        if response.status_code >= 400:
            raise LLMError(f"{path}: HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise LLMError(f"{path}: response is not JSON") from None

    def close(self) -> None:
        self._http.close()
