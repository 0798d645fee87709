"""OpenAI-compatible HTTP backend (vLLM, Ollama, llama.cpp's server, hosted APIs).

Chat style posts `/chat/completions` with the schema as `response_format`, trying the
forms servers know in turn: OpenAI's `{"type": "json_schema", ...}` (vLLM, hosted APIs),
then `{"type": "json_object", "schema": ...}` (llama-cpp-python's server and llama.cpp's
`llama-server`, which turn it into a grammar), then none. A form the server rejects (HTTP
400/422/500 naming `response_format`) is not sent again. Without a schema the model is
unconstrained: a base model then writes to `max_tokens` and the answer is only validated
(by the client, as always) — that was 40 s a conversation through llama-cpp-python's
server before the `json_object` form was tried. Completion style posts
`/completions` with the few-shot text and stops at the end of the answer's line.

Errors: transport errors, timeouts, 408/409/429 and 5xx raise `LLMError` (the client
retries, waiting what a `retry-after` header asks); a rejected key or unknown model
raises `LLMUnavailable` (the run stops).
"""

from __future__ import annotations

import email.utils
import threading
import time
from typing import Any, Literal

import httpx

from clio.llm.base import Completion, LLMError, LLMUnavailable, Prompt
from clio.llm.render import ONE_LINE_STOP, chat_prompt, completion_text, parse_json_answer

_FATAL_STATUS = {401, 403, 404}
# llama.cpp's Python server answers 500 to a `response_format` it does not know.
_SCHEMA_REJECTED_STATUS = {400, 422, 500}
SchemaFormat = Literal["json_schema", "json_object"]
# The `response_format` forms tried in order (see the module's docstring).
SCHEMA_FORMATS: tuple[SchemaFormat, ...] = ("json_schema", "json_object")


def response_format(form: SchemaFormat, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    if form == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    return {"type": "json_object", "schema": schema}


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """`retry-after-ms`, or `retry-after` as seconds or an HTTP date; None if absent."""
    if (value := headers.get("retry-after-ms")) is not None:
        try:
            return float(value) / 1000
        except ValueError:
            return None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


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
        # The `response_format` forms not yet rejected by the server, in the order tried;
        # the first is sent.
        self.schema_formats: list[SchemaFormat] = list(SCHEMA_FORMATS)
        self._lock = threading.Lock()

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
            payload = self._post_chat(body, prompt.task, schema)
        else:
            path = "completions"
            body["prompt"] = completion_text(prompt)
            body["stop"] = list(ONE_LINE_STOP)
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

    @property
    def schema_format(self) -> SchemaFormat | None:
        """The `response_format` form sent now; None once the server rejected every one."""
        formats = self.schema_formats
        return formats[0] if formats else None

    def _post_chat(self, body: dict[str, Any], name: str, schema: dict[str, Any]) -> dict[str, Any]:
        while (form := self.schema_format) is not None:
            with_schema = {**body, "response_format": response_format(form, name, schema)}
            response = self._send("chat/completions", with_schema)
            rejected = (
                response.status_code in _SCHEMA_REJECTED_STATUS
                and "response_format" in response.text
            )
            if not rejected:
                return self._checked("chat/completions", response)
            with self._lock:
                if form in self.schema_formats:
                    self.schema_formats.remove(form)
        return self._post("chat/completions", body)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._checked(path, self._send(path, body))

    def _send(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return self._http.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise LLMError(f"{path}: timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise LLMError(f"{path}: {type(exc).__name__}: {exc}") from None

    def _checked(self, path: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status in _FATAL_STATUS:
            raise LLMUnavailable(f"{path}: HTTP {status} (check key and model)")
        if status >= 400:
            wait = retry_after_seconds(response.headers)
            raise LLMError(f"{path}: HTTP {status}", retry_after=wait)
        try:
            return response.json()
        except ValueError:
            raise LLMError(f"{path}: response is not JSON") from None

    def close(self) -> None:
        self._http.close()
