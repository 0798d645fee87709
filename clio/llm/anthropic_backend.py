"""Anthropic Messages API backend (the official SDK).

JSON comes back through a forced tool call whose `input_schema` is the answer schema.
The SDK itself retries 408/409/429/5xx/529 (overloaded) with exponential backoff and
honours `retry-after` / `retry-after-ms` (`sdk_max_retries`); what still fails after that
becomes `LLMError` for the client (with the server's `retry-after`), and a rejected key or
unknown model becomes `LLMUnavailable`. The API key comes from the environment through
`clio.llm.factory`; `base_url` points the SDK at a proxy or a test server.
"""

from __future__ import annotations

from typing import Any

import anthropic

from clio.llm.base import Completion, LLMError, LLMUnavailable, Prompt
from clio.llm.openai_compat import retry_after_seconds
from clio.llm.render import chat_prompt

TOOL_NAME = "record_answer"
_FATAL = (
    anthropic.AuthenticationError,
    anthropic.PermissionDeniedError,
    anthropic.NotFoundError,
)


class AnthropicBackend:
    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_seconds: float = 120.0,
        sdk_max_retries: int = 4,
        client: anthropic.Anthropic | None = None,
    ):
        self.model = model
        self._client = client or anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=sdk_max_retries,
        )

    @property
    def identifier(self) -> str:
        return f"anthropic:{self.model}"

    def generate(
        self, prompt: Prompt, schema: dict[str, Any], *, max_tokens: int, temperature: float
    ) -> Completion:
        # `temperature` is not sent: the Messages API of this SDK generation takes no sampling
        # parameters, and its answers vary between attempts without it.
        chat = chat_prompt(prompt, schema)
        try:
            message = self._client.messages.create(
                model=self.model,
                max_tokens=max_tokens,
                system=chat.system,
                messages=chat.messages,
                tools=[
                    {
                        "name": TOOL_NAME,
                        "description": "Record the answer.",
                        "input_schema": schema,
                    }
                ],
                tool_choice={"type": "tool", "name": TOOL_NAME},
            )
        except _FATAL as exc:
            raise LLMUnavailable(
                f"anthropic: HTTP {exc.status_code} (check key and model)"
            ) from None
        except anthropic.APIStatusError as exc:
            # The SDK has already retried (honouring retry-after); the client may try again.
            raise LLMError(
                f"anthropic: HTTP {exc.status_code}",
                retry_after=retry_after_seconds(exc.response.headers),
            ) from None
        except anthropic.APIConnectionError as exc:  # includes timeouts
            raise LLMError(f"anthropic: {type(exc).__name__}") from None
        n_in, n_out = message.usage.input_tokens, message.usage.output_tokens
        if message.stop_reason == "max_tokens":
            raise LLMError(f"anthropic: answer cut off at {max_tokens} tokens")
        for block in message.content:
            if block.type == "tool_use" and block.name == TOOL_NAME:
                return Completion(data=block.input, input_tokens=n_in, output_tokens=n_out)
        raise LLMError(f"anthropic: no {TOOL_NAME} call in the answer ({message.stop_reason})")
