"""Fitting a prompt to a model's context window, counted with the model's own tokenizer.

A prompt's input is first cut to a number of characters (`llm.max_input_chars`: cheap,
no tokenizer needed). Characters are not tokens: on the packaged Gemma vocabulary the
HH-RLHF conversations take 4.1 characters per token, Python code 3.7 and the oasst1
Chinese ones 1.8, so that bound alone lets a long chat overflow the context.
`fit_prompt` then cuts the input further, head and tail kept, until the whole prompt plus
the room its answer may take fits the context.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Literal

from clio.llm.base import Prompt, TokenCounter
from clio.llm.render import chat_prompt, completion_parts

CUT_MARKER = "\n[...]\n"
# Tokens left free beyond the counted prompt and answer: a prompt tokenized in one piece
# (free decoding) can split differently from its two parts, and so can the answer's
# structure fed between sampled values.
MARGIN_TOKENS = 16
# A chat template's tokens around each message (role markers, turn ends): an allowance,
# as the template is not rendered here.
CHAT_TOKENS_PER_MESSAGE = 8

Style = Literal["completion", "chat"]


def cut_middle(text: str, max_chars: int) -> str:
    """`text` cut to `max_chars` characters around `CUT_MARKER`: its head (two thirds of
    the room) and its tail kept. Cutting a cut text again gives what cutting the
    original to the new length gives, so the bounds can be applied one after another."""
    if len(text) <= max_chars:
        return text
    room = max(max_chars - len(CUT_MARKER), 0)
    head = room * 2 // 3  # the opening says most of what a conversation is about
    tail = room - head
    return text[:head] + CUT_MARKER + (text[-tail:] if tail else "")


def _fixed_and_own(prompt: Prompt, schema: dict[str, Any], style: Style) -> tuple[str, str, int]:
    """(the text that does not hold the input, the text that does, template allowance):
    the completion text's shared and own parts, or the chat messages before the last and
    the last one."""
    if style == "completion":
        shared, own = completion_parts(prompt)
        return shared, own, 0
    chat = chat_prompt(prompt, schema)
    fixed = "\n".join([chat.system, *(m["content"] for m in chat.messages[:-1])])
    return fixed, chat.messages[-1]["content"], CHAT_TOKENS_PER_MESSAGE * len(chat.messages)


def prompt_tokens(
    prompt: Prompt, schema: dict[str, Any], counter: TokenCounter, style: Style
) -> int:
    """The tokens of `prompt` as the backend feeds it (for chat, with an allowance for
    the template)."""
    fixed, own, template = _fixed_and_own(prompt, schema, style)
    return counter.count(fixed, bos=True) + counter.count(own) + template


def answer_tokens(schema: dict[str, Any], counter: TokenCounter, max_tokens: int) -> int:
    """Room for the answer: the sampled tokens (at most `max_tokens`) and its JSON
    structure, which schema-guided decoding feeds as text beside them."""
    return max_tokens + counter.count(json.dumps(_skeleton(schema), ensure_ascii=False))


def _skeleton(schema: dict[str, Any]) -> dict[str, Any]:
    """The answer object at its widest structure without sampled text: empty strings,
    the longest allowed choice, a full list of empty items."""
    out: dict[str, Any] = {}
    for name, spec in (schema.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        if spec.get("enum"):
            out[name] = max(spec["enum"], key=lambda v: len(json.dumps(v, ensure_ascii=False)))
        elif spec.get("type") == "array":
            out[name] = [""] * int(spec.get("maxItems", 1))
        elif spec.get("type") in ("integer", "number"):
            out[name] = 0
        else:
            out[name] = ""
    return out


def fit_prompt(
    prompt: Prompt,
    schema: dict[str, Any],
    *,
    counter: TokenCounter,
    style: Style,
    context_tokens: int,
    max_tokens: int,
) -> Prompt:
    """`prompt` when it and its answer fit `context_tokens`, else a copy whose input is
    cut (`cut_middle`) to the most characters that fit.

    The length is found by bisection over characters, each candidate's tokens counted,
    so the result always fits and is the same for the same prompt. When even an input
    cut to the marker alone does not fit (the instruction and examples take the whole
    context), that shortest prompt is returned and the backend reports it does not fit.
    """
    fixed, _, template = _fixed_and_own(prompt, schema, style)
    room = (
        context_tokens
        - answer_tokens(schema, counter, max_tokens)
        - MARGIN_TOKENS
        - template
        - counter.count(fixed, bos=True)
    )

    def cut(chars: int) -> Prompt:
        return replace(prompt, input=cut_middle(prompt.input, chars))

    def fits(candidate: Prompt) -> bool:
        return counter.count(_fixed_and_own(candidate, schema, style)[1]) <= room

    if fits(prompt):
        return prompt
    low, high = 0, len(prompt.input) - 1
    if not fits(cut(low)):
        return cut(low)
    while low < high:  # invariant: `low` fits
        middle = (low + high + 1) // 2
        if fits(cut(middle)):
            low = middle
        else:
            high = middle - 1
    return cut(low)
