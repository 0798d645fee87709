from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import BaseModel, Field

from clio.config import LLMConfig, RunConfig
from clio.facets import extract_facets, facet_call, render_conversation
from clio.llm import guided
from clio.llm.base import Example, LLMError, Prompt
from clio.llm.budget import (
    CUT_MARKER,
    MARGIN_TOKENS,
    answer_tokens,
    cut_middle,
    fit_prompt,
    prompt_tokens,
)
from clio.llm.client import MemoryCache, StructuredLLM, cache_key
from clio.llm.factory import build_backend
from clio.llm.local import LocalBackend
from clio.llm.render import completion_parts
from clio.records import Message, ScrubbedConversation
from tests.fakes.llm import FakeBackend


class WideCounter:
    """One token per non-ASCII character, one per four ASCII ones: like a real vocabulary,
    Chinese text takes far more tokens per character than English."""

    name = "wide characters"

    def count(self, text: str, *, bos: bool = False) -> int:
        wide = sum(1 for ch in text if ord(ch) > 127)
        return wide + math.ceil((len(text) - wide) / 4) + int(bos)


class Answer(BaseModel):
    task: str = Field(min_length=1, max_length=80)
    values: list[str] = Field(max_length=4)


SCHEMA = Answer.model_json_schema()
COUNTER = WideCounter()
HEAD, TAIL = "User: 开头的问题 START ", " 结尾的回答 END"


def long_prompt(chars: int) -> Prompt:
    return Prompt(
        task="facets",
        instruction="Summarise the conversation.",
        input=HEAD + "这是一段很长的对话。" * (chars // 10) + TAIL,
        examples=(Example("User: hi\nAssistant: hello", {"task": "greeting", "values": []}),),
    )


def fitted(prompt: Prompt, context_tokens: int = 1024, **kwargs: Any) -> Prompt:
    return fit_prompt(
        prompt,
        SCHEMA,
        counter=COUNTER,
        style=kwargs.get("style", "completion"),
        context_tokens=context_tokens,
        max_tokens=kwargs.get("max_tokens", 64),
    )


def total(prompt: Prompt, style: str = "completion", max_tokens: int = 64) -> int:
    used = prompt_tokens(prompt, SCHEMA, COUNTER, style)  # type: ignore[arg-type]
    return used + answer_tokens(SCHEMA, COUNTER, max_tokens) + MARGIN_TOKENS


# --- cutting ------------------------------------------------------------------------------


def test_cut_middle_keeps_head_and_tail_around_the_marker():
    text = "a" * 500 + "b" * 500
    cut = cut_middle(text, 100)
    assert len(cut) == 100 and CUT_MARKER in cut
    assert cut.startswith("a" * 62) and cut.endswith("b" * 31)
    assert cut_middle(text, 2000) == text


@pytest.mark.parametrize(("first", "second"), [(600, 200), (200, 199), (57, 8), (9, 0)])
def test_cutting_a_cut_text_is_cutting_the_original(first, second):
    text = "".join(chr(0x4E00 + i % 500) for i in range(1000))
    assert cut_middle(cut_middle(text, first), second) == cut_middle(text, second)


# --- fitting ------------------------------------------------------------------------------


def test_a_prompt_that_fits_is_left_alone():
    prompt = long_prompt(100)
    assert fitted(prompt) is prompt


def test_a_long_input_is_cut_to_the_most_that_fits_its_context():
    prompt = long_prompt(5000)
    assert total(prompt) > 1024
    result = fitted(prompt)
    assert total(result) <= 1024
    assert result.input.startswith(HEAD) and result.input.endswith(TAIL)
    assert CUT_MARKER in result.input
    one_more = cut_middle(prompt.input, len(result.input) + 1)
    assert total(Prompt(**{**prompt.__dict__, "input": one_more})) > 1024
    assert fitted(prompt) == result  # deterministic
    assert fitted(result) is result  # fitting a fitted prompt changes nothing


def test_the_answer_room_grows_with_max_tokens():
    prompt = long_prompt(5000)
    small, large = fitted(prompt, max_tokens=32), fitted(prompt, max_tokens=256)
    assert len(large.input) < len(small.input)
    assert total(large, max_tokens=256) <= 1024


def test_chat_prompts_fit_with_an_allowance_for_the_template():
    result = fitted(long_prompt(5000), style="chat")
    assert total(result, style="chat") <= 1024 and CUT_MARKER in result.input


def test_the_character_cut_is_only_a_first_bound():
    messages = [Message("user", "问题" * 2000), Message("assistant", "回答" * 2000)]
    whole = render_conversation(messages, 10**9)
    prompt = long_prompt(0)
    by_tokens = fitted(Prompt(**{**prompt.__dict__, "input": whole}))
    after_chars = fitted(
        Prompt(**{**prompt.__dict__, "input": render_conversation(messages, 3000)})
    )
    assert len(by_tokens.input) < 3000
    assert after_chars == by_tokens


def test_an_instruction_larger_than_the_context_leaves_the_marker_alone():
    prompt = Prompt(**{**long_prompt(5000).__dict__, "instruction": "说明" * 2000})
    assert fitted(prompt).input == CUT_MARKER


# --- the client asks with the fitted prompt ---------------------------------------------


class FittingBackend(FakeBackend):
    def fit(self, prompt: Prompt, schema: dict[str, Any], *, max_tokens: int) -> Prompt:
        return fit_prompt(
            prompt,
            schema,
            counter=COUNTER,
            style="completion",
            context_tokens=1024,
            max_tokens=max_tokens,
        )


def test_the_client_asks_validates_and_caches_the_fitted_prompt():
    config = LLMConfig(max_output_tokens=64)
    backend = FittingBackend([{"task": "chatting", "values": []}])
    cache = MemoryCache()
    prompt = long_prompt(5000)
    answer = StructuredLLM(backend, config, cache).ask(prompt, Answer)
    assert isinstance(answer, Answer)
    sent = backend.calls[0].prompt
    assert sent == backend.fit(prompt, SCHEMA, max_tokens=64) and sent != prompt
    key = cache_key(backend.identifier, sent, SCHEMA, config.temperature, 64)
    assert set(cache.entries) == {key}


# --- the real model -----------------------------------------------------------------------

CONTEXT = 2048
TURNS = (
    ("user", "我的Python脚本读取CSV文件时总是报错，能帮我看看吗？"),
    (
        "assistant",
        "当然可以。请试试下面的写法：\n```python\nimport csv\n\n"
        "def read_rows(path):\n    with open(path, encoding='utf-8') as f:\n"
        "        return list(csv.DictReader(f))\n```\n编码不对时会出现UnicodeDecodeError。",
    ),
)


@pytest.fixture(scope="module")
def long_chat() -> ScrubbedConversation:
    """A Chinese conversation about code, about 50,000 characters: far beyond 2,048 tokens."""
    messages = tuple(Message(role, text) for _ in range(200) for role, text in TURNS)
    return ScrubbedConversation(
        conversation_id="long",
        user_pseudonym="u",
        timestamp=None,
        messages=messages,
        source="test",
        content_hash="long",
    )


@pytest.fixture(scope="module")
def small_context() -> LLMConfig:
    # The character cut alone would let the whole conversation through.
    return LLMConfig(context_tokens=CONTEXT, max_input_chars=100_000, local_contexts=1)


@pytest.mark.slow
def test_real_model_gives_facets_of_a_chat_far_longer_than_its_context(long_chat, small_context):
    assert len(render_conversation(long_chat.messages, 10**9)) > 40_000
    facets = RunConfig().facets
    llm = StructuredLLM(build_backend(small_context), small_context, MemoryCache())
    values = extract_facets([long_chat], facets, llm, max_input_chars=small_context.max_input_chars)
    assert [v.facet for v in values if v.status != "ok"] == []
    assert llm.usage.failures == 0


@pytest.mark.slow
def test_real_model_without_the_budget_overflows_its_context(long_chat, small_context):
    """The control: the same prompt, fed as the character cut leaves it, does not fit."""
    call = facet_call(RunConfig().facets, small_context.max_input_chars)
    assert call is not None
    prompt = call.prompt(long_chat.messages)
    schema = call.model.model_json_schema()
    backend = build_backend(small_context)
    assert isinstance(backend, LocalBackend)
    shared, own = completion_parts(prompt)
    overflow = pytest.raises(LLMError, match="does not fit the context")
    with backend.pool.context() as context, overflow:
        guided.decode(
            context,
            own,
            guided.plan(schema),
            shared=shared,
            temperature=0.0,
            max_tokens=small_context.max_output_tokens,
        )
    cut = backend.fit(prompt, schema, max_tokens=small_context.max_output_tokens)
    assert CUT_MARKER in cut.input and len(cut.input) < 5000
