"""Prompt templates, one per backend style.

- completion style (base models such as the packaged Gemma 3 270M): the instruction, then
  few-shot blocks `### <label>` / `### JSON`, then the input last with an open `### JSON`
  block for the model to fill. The prefix up to the input is identical across calls, so
  llama.cpp reuses its KV cache for it.
- chat style (instruction-tuned models): a system text with the instruction and the JSON
  schema, the examples as user/assistant turns, the input as the last user turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from clio.llm.base import Prompt

ANSWER_LABEL = "JSON"
# Where a completion-style answer ends when no grammar stops the model.
COMPLETION_STOP = ("\n###", "\n\n\n")
# Free (unconstrained) completion answers are one line of JSON, like the few-shot examples;
# stopping at the line's end saves the tokens a base model writes after it.
ONE_LINE_STOP = ("\n",)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def completion_text(prompt: Prompt) -> str:
    """Few-shot completion prompt; the model continues after the final `### JSON` line."""
    shared, own = completion_parts(prompt)
    return shared + own


def completion_parts(prompt: Prompt) -> tuple[str, str]:
    """`completion_text` in two parts: the text every input shares (instruction and
    examples, ending with the blank line before the input's block) and the input's own."""
    blocks = [prompt.instruction.strip()]
    for example in prompt.examples:
        blocks.append(
            f"### {prompt.input_label}\n{example.input.strip()}\n"
            f"### {ANSWER_LABEL}\n{_dump(example.output)}"
        )
    own = f"### {prompt.input_label}\n{prompt.input.strip()}\n### {ANSWER_LABEL}\n"
    return "\n\n".join(blocks) + "\n\n", own


@dataclass(frozen=True)
class ChatPrompt:
    system: str
    messages: list[dict[str, str]]  # alternating user/assistant, ending with user

    def with_system_in_first_turn(self) -> list[dict[str, str]]:
        """For chat templates without a system role (Gemma's drops it silently)."""
        first = dict(self.messages[0])
        first["content"] = f"{self.system}\n\n{first['content']}"
        return [first, *self.messages[1:]]

    def with_system_message(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, *self.messages]


def chat_prompt(prompt: Prompt, schema: dict[str, Any]) -> ChatPrompt:
    system = (
        f"{prompt.instruction.strip()}\n\n"
        "Answer with one JSON object and nothing else. It must match this JSON schema:\n"
        f"{_dump(schema)}"
    )
    messages: list[dict[str, str]] = []
    for example in prompt.examples:
        messages.append(
            {"role": "user", "content": f"{prompt.input_label}:\n{example.input.strip()}"}
        )
        messages.append({"role": "assistant", "content": _dump(example.output)})
    messages.append({"role": "user", "content": f"{prompt.input_label}:\n{prompt.input.strip()}"})
    return ChatPrompt(system=system, messages=messages)


def parse_json_answer(text: str) -> Any:
    """The first JSON value in `text` (a model may add text after it).

    Raises ValueError when there is none. `strict=False` accepts raw control characters
    (newlines, tabs) inside strings, which small models emit.
    """
    decoder = json.JSONDecoder(strict=False)
    stripped = text.lstrip()
    start = min((i for i in (stripped.find("{"), stripped.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON object in the answer")
    value, _ = decoder.raw_decode(stripped, start)
    return value
