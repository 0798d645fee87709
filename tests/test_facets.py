from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from clio.concern import concern_level
from clio.config import FacetConfig, LLMConfig, RunConfig, builtin_facets
from clio.facets import (
    cross_checked,
    extract_facets,
    facet_examples,
    facet_output_model,
    facet_prompt,
    metadata_value,
    render_conversation,
    user_turns_text,
)
from clio.language import reconcile_language
from clio.llm.base import LLMError, Prompt
from clio.llm.budget import CUT_MARKER
from clio.llm.client import MemoryCache, StructuredLLM
from clio.records import Message, ScrubbedConversation
from tests.fakes.llm import FakeBackend

SAMPLE = Path(__file__).resolve().parents[1] / "clio" / "samples"
SAMPLE = SAMPLE / "hh_rlhf_harmless_base_test.jsonl.gz"


def conversation(cid: str, *turns: tuple[str, str]) -> ScrubbedConversation:
    return ScrubbedConversation(
        conversation_id=cid,
        user_pseudonym=f"user-{cid}",
        timestamp=None,
        messages=tuple(Message(role=r, content=c) for r, c in turns),  # type: ignore[arg-type]
        source="test",
        content_hash=f"hash-{cid}",
    )


def sample_conversations(n: int) -> list[ScrubbedConversation]:
    out = []
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
        for i, line in zip(range(n), f, strict=False):
            parts = re.split(r"\n\n(Human|Assistant): ", json.loads(line)["chosen"])
            turns = [
                ("user" if role == "Human" else "assistant", text.strip())
                for role, text in zip(parts[1::2], parts[2::2], strict=True)
            ]
            out.append(conversation(f"s{i}", *turns))
    return out


DEFAULT_FACETS = builtin_facets("llm")  # the built-in facets with request from the LLM
LLM_FACETS = [f for f in DEFAULT_FACETS if f.extractor == "llm"]
VALID = {
    "request": "Asked for help.",
    "task": "advice",
    "values": ["care"],
    "concerning": 2,
    "language": "en",
}

# --- the answer model's validators -----------------------------------------------------

CATEGORY = FacetConfig(name="mood", kind="category", question="Mood?", values=["calm", "angry"])
NUMBER = FacetConfig(name="score", kind="number", question="Score?", minimum=1, maximum=5)
FRACTION = FacetConfig(name="share", kind="number", question="Share?", minimum=0, maximum=0.5)
TEXT = FacetConfig(name="topic", kind="text", question="Topic?", max_chars=10)
LIST = FacetConfig(name="tags", kind="list", question="Tags?", max_chars=8, max_items=2)


@pytest.mark.parametrize(
    "facet,value",
    [
        (NUMBER, 0),
        (NUMBER, 6),
        (NUMBER, 2.5),
        (NUMBER, "three"),
        (FRACTION, 0.75),
        (FRACTION, -0.1),
        (CATEGORY, "happy"),
        (CATEGORY, ""),
        (TEXT, "x" * 11),
        (TEXT, "   "),
        (TEXT, None),
        (LIST, ["a", "b", "c"]),
        (LIST, ["far too long"]),
        (LIST, [""]),
        (LIST, "a"),
    ],
)
def test_validators_reject_bad_values(facet, value):
    model = facet_output_model([facet])
    with pytest.raises(ValidationError):
        model.model_validate({facet.name: value})


@pytest.mark.parametrize(
    "facet,value,expected",
    [
        (NUMBER, 1, 1),
        (NUMBER, 5, 5),
        (FRACTION, 0.25, 0.25),
        (CATEGORY, "calm", "calm"),
        (CATEGORY, " Angry ", "angry"),
        (TEXT, "  cooking ", "cooking"),
        (LIST, ["a", " eight ch "], ["a", "eight ch"]),
        (LIST, [], []),
    ],
)
def test_validators_accept_good_values(facet, value, expected):
    model = facet_output_model([facet])
    answer = model.model_validate({facet.name: value})
    assert answer.model_dump(by_alias=True) == {facet.name: expected}


def test_missing_field_is_rejected():
    model = facet_output_model(LLM_FACETS)
    with pytest.raises(ValidationError):
        model.model_validate({k: v for k, v in VALID.items() if k != "task"})


def test_schema_carries_the_constraints_for_grammars_and_servers():
    schema = facet_output_model([CATEGORY, NUMBER, TEXT, LIST]).model_json_schema()
    props = schema["properties"]
    assert list(props) == ["mood", "score", "topic", "tags"]
    assert props["mood"]["enum"] == ["calm", "angry"]
    assert (props["score"]["type"], props["score"]["minimum"], props["score"]["maximum"]) == (
        "integer",
        1,
        5,
    )
    assert props["topic"]["maxLength"] == 10
    assert (props["tags"]["maxItems"], props["tags"]["items"]["maxLength"]) == (2, 8)
    assert schema["required"] == ["mood", "score", "topic", "tags"]


@pytest.mark.parametrize("name", ["copy", "json", "schema", "model_config", "values"])
def test_facet_names_that_shadow_pydantic_attributes_work(name):
    facet = FacetConfig(name=name, kind="text", question="?")
    answer = facet_output_model([facet]).model_validate({name: "ok"})
    assert answer.model_dump(by_alias=True) == {name: "ok"}


@pytest.mark.parametrize(
    "request_text",
    [
        "A good insult for someone who is really short.",
        "What's a good insult for someone who is really short?",
        "  a GOOD insult for someone who is REALLY short ",
    ],
)
def test_answer_copying_a_few_shot_example_is_rejected(request_text):
    examples = facet_examples(LLM_FACETS, 2400)
    copied = {**VALID, "request": request_text}
    with pytest.raises(ValidationError, match="request repeats a few-shot example"):
        facet_output_model(LLM_FACETS, examples=examples).model_validate(copied)
    facet_output_model(LLM_FACETS).model_validate(copied)  # valid without the examples


@pytest.mark.parametrize(
    "answer",
    [
        {**VALID, "request": "A good joke for someone who is very tall."},
        {**VALID, "task": "debugging code"},  # short example values may be right answers
    ],
)
def test_answers_near_but_not_copies_are_accepted(answer):
    examples = facet_examples(LLM_FACETS, 2400)
    facet_output_model(LLM_FACETS, examples=examples).model_validate(answer)


TEMPLATE_COPY = "What to put in a teacher's barking dog's food."


@pytest.mark.parametrize(
    ("conversation_text", "rejected"),
    [
        ("How do I get my students to pay attention?", True),  # the example's dog and food
        ("My neighbor's dog keeps barking; what can I put in its food?", False),  # its own
        ("My teacher's dog barks all day.", True),  # "food" and "put" are still borrowed
    ],
)
def test_answer_with_an_examples_words_its_conversation_lacks_is_rejected(
    conversation_text, rejected
):
    model = facet_output_model(LLM_FACETS, examples=facet_examples(LLM_FACETS, 2400))
    answer = {**VALID, "request": TEMPLATE_COPY}
    prompt = Prompt(task="facets", instruction="", input=f"User: {conversation_text}")
    if rejected:
        with pytest.raises(ValidationError, match="takes words from a few-shot example"):
            model.model_validate(answer, context={"prompt": prompt})
    else:
        model.model_validate(answer, context={"prompt": prompt})
    model.model_validate(answer)  # without a prompt only the near-repeat check applies


def test_template_copy_is_retried_with_the_conversation_as_context():
    backend = FakeBackend([{**VALID, "request": TEMPLATE_COPY}, VALID])
    values = extract_facets(
        [conversation("c", ("user", "How do I get my students to pay attention?"))],
        LLM_FACETS,
        llm_with(backend),
        max_input_chars=500,
    )
    assert len(backend.calls) == 2
    assert {v.facet: v.value for v in values}["request"] == VALID["request"]


def test_copied_example_is_retried_in_the_stage():
    examples = facet_examples(LLM_FACETS, 2400)
    backend = FakeBackend([examples[0].output, VALID])
    values = extract_facets(
        [conversation("c", ("user", "Tell me about tides"))],
        LLM_FACETS,
        llm_with(backend),
        max_input_chars=500,
    )
    assert len(backend.calls) == 2
    assert values[0].value == VALID["request"]


# --- prompt ------------------------------------------------------------------------------


def test_render_conversation_labels_roles():
    conv = conversation("c", ("user", "Hi there"), ("assistant", "Hello!"), ("user", "Bye"))
    assert (
        render_conversation(conv.messages, 1000) == "User: Hi there\nAssistant: Hello!\nUser: Bye"
    )


def test_render_conversation_keeps_head_and_tail_within_the_limit():
    conv = conversation("c", ("user", "START " + "a" * 3000), ("assistant", "b" * 3000 + " END"))
    text = render_conversation(conv.messages, 600)
    assert len(text) == 600
    assert text.startswith("User: START ")
    assert text.endswith(" END")
    assert CUT_MARKER in text


def test_prompt_puts_the_conversation_last_after_a_fixed_prefix():
    examples = facet_examples(LLM_FACETS, 2400)
    trip = conversation("a", ("user", "Plan a trip"))
    bike = conversation("b", ("user", "Fix my bike"))
    a = facet_prompt(trip.messages, LLM_FACETS, examples, 2400)
    b = facet_prompt(bike.messages, LLM_FACETS, examples, 2400)
    assert (a.instruction, a.examples) == (b.instruction, b.examples)
    assert a.input.startswith("User: Plan a trip")
    for facet in LLM_FACETS:
        assert facet.question in a.instruction


def test_examples_are_valid_answers_for_the_default_facets():
    examples = facet_examples(LLM_FACETS, 2400)
    model = facet_output_model(LLM_FACETS)
    assert len(examples) >= 2
    for example in examples:
        model.model_validate(example.output)


def test_examples_keep_only_fields_valid_for_custom_facets():
    facets = [
        FacetConfig(name="request", kind="text", question="Request?", max_chars=20),
        CATEGORY,
        FacetConfig(name="concerning", kind="number", question="?", minimum=1, maximum=3),
    ]
    examples = facet_examples(facets, 2400)
    fields = [set(e.output) for e in examples]
    assert all("mood" not in f and "request" not in f for f in fields)  # unknown / too long
    assert sorted(e.output["concerning"] for e in examples) == [1, 1, 2]  # 4 is out of range


# --- non-LLM extractors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "turns,expected",
    [
        ((("user", "hi"), ("assistant", "hello")), {"turns": 1, "chars": 7, "has_code": "no"}),
        (
            (("user", "a"), ("assistant", "b"), ("user", "c"), ("system", "d")),
            {"turns": 2, "chars": 4, "has_code": "no"},
        ),
        ((("user", "run this:\n```\nls\n```"),), {"has_code": "yes"}),
        ((("user", "def add(a, b):\n    return a + b"),), {"has_code": "yes"}),
        ((("user", "SELECT name FROM users"),), {"has_code": "yes"}),
        ((("user", "import numpy as np"),), {"has_code": "yes"}),
        ((("user", "Let me know.\nClass was fun"),), {"has_code": "no"}),
        ((("user", "I am <PERSON> from <LOCATION>"),), {"has_code": "no"}),
    ],
)
def test_metadata_facets(turns, expected):
    conv = conversation("c", *turns)
    assert {name: metadata_value(conv, name) for name in expected} == expected


TWO_TURNS = (
    ("user", "  How do I\n\nreset my   router?  "),
    ("assistant", "Hold the reset button."),
    ("user", "It still blinks red."),
)


@pytest.mark.parametrize(
    ("turns", "max_chars", "expected"),
    [
        ("first", 160, "How do I reset my router?"),
        ("all", 160, "How do I reset my router? It still blinks red."),
        ("all", 30, "How do I reset my router? It"),  # cut before the word "still"
        ("all", 31, "How do I reset my router? It"),  # "still" would end past 31
        ("first", 14, "How do I reset"),  # a cut that falls on a space keeps the word
        ("first", 15, "How do I reset"),
        ("first", 13, "How do I"),
    ],
)
def test_user_text_takes_the_user_turns_cut_at_a_word(turns, max_chars, expected):
    assert user_turns_text(conversation("c", *TWO_TURNS), turns, max_chars) == expected


def test_user_text_cuts_a_single_long_word_inside_it():
    conv = conversation("c", ("user", "x" * 50))
    assert user_turns_text(conv, "first", 20) == "x" * 20


def test_user_text_facet_needs_no_llm_and_fails_when_there_is_no_user_text():
    request = FacetConfig(name="request", extractor="user_text", max_chars=40)
    everything = request.model_copy(update={"user_turns": "all"})
    convs = [
        conversation("ok", ("user", "Plan a trip to the coast"), ("assistant", "Sure.")),
        conversation("blank", ("user", "  \n "), ("assistant", "Hello?"), ("user", "hi")),
        conversation("none", ("assistant", "Hello, how can I help?")),
    ]
    first = extract_facets(convs, [request], None, max_input_chars=500)
    assert [(v.conversation_id, v.status, v.value) for v in first] == [
        ("ok", "ok", "Plan a trip to the coast"),
        ("blank", "failed", None),
        ("none", "failed", None),
    ]
    assert "first user turn is empty" in first[1].error
    assert "no user turn" in first[2].error
    # All turns: the second user turn carries text, so only the assistant-only one fails.
    both = extract_facets(convs, [everything], None, max_input_chars=500)
    assert [v.value for v in both] == ["Plan a trip to the coast", "hi", None]


def test_user_text_request_is_not_asked_of_the_llm():
    """With request from user_text, the combined call asks only the other llm facets."""
    facets = builtin_facets("user_text")
    backend = FakeBackend(lambda call: {k: v for k, v in VALID.items() if k != "request"})
    values = extract_facets(
        [conversation("c", ("user", "How do I bake bread?"))],
        facets,
        llm_with(backend),
        max_input_chars=500,
    )
    (call,) = backend.calls
    assert "- request" not in call.prompt.instruction
    assert "- task" in call.prompt.instruction
    by_facet = {v.facet: v.value for v in values}
    assert (by_facet["request"], by_facet["task"]) == ("How do I bake bread?", "advice")


# --- the stage with a fake LLM ----------------------------------------------------------


def llm_with(backend, **config) -> StructuredLLM:
    return StructuredLLM(backend, LLMConfig(**config), MemoryCache(), backoff_seconds=0)


def test_one_combined_call_per_conversation_and_values_in_config_order():
    def answer(call):
        first = call.prompt.input.splitlines()[0].removeprefix("User: ")
        return {**VALID, "request": f"Asked: {first}"}

    backend = FakeBackend(answer)
    convs = [
        conversation("c1", ("user", "How do I bake bread?"), ("assistant", "Use flour.")),
        conversation("c2", ("user", "Wie spät ist es in Berlin, bitte?"), ("assistant", "Zehn.")),
    ]
    facets = [*DEFAULT_FACETS, FacetConfig(name="turns", kind="number", extractor="metadata")]
    values = extract_facets(convs, facets, llm_with(backend), max_input_chars=2400)

    assert len(backend.calls) == 2
    assert [(v.conversation_id, v.facet) for v in values] == [
        (c, f.name) for c in ("c1", "c2") for f in facets
    ]
    by_key = {(v.conversation_id, v.facet): v.value for v in values}
    assert by_key["c1", "request"] == "Asked: How do I bake bread?"
    assert by_key["c2", "request"] == "Asked: Wie spät ist es in Berlin, bitte?"
    assert by_key["c1", "values"] == ["care"]
    assert by_key["c1", "concerning"] == 2
    assert (by_key["c1", "language"], by_key["c2", "language"]) == ("en", "de")
    assert by_key["c1", "turns"] == 1
    assert all(v.status == "ok" and v.error is None for v in values)


def test_failed_answer_gives_one_failed_value_per_llm_facet():
    def answer(call):
        if "broken" in call.prompt.input:
            return {**VALID, "concerning": 9}
        return VALID

    convs = [
        conversation("ok", ("user", "Tell me a joke about cats")),
        conversation("bad", ("user", "This one is broken, sadly")),
    ]
    values = extract_facets(
        convs, DEFAULT_FACETS, llm_with(FakeBackend(answer)), max_input_chars=500
    )
    failed = [(v.conversation_id, v.facet) for v in values if v.status == "failed"]
    assert failed == [("bad", f.name) for f in LLM_FACETS]
    for v in values:
        if v.status == "failed":
            assert v.value is None
            assert "concerning" in v.error
    assert {v.facet: v.value for v in values if v.conversation_id == "bad"}["language"] == "en"


def test_backend_errors_become_failed_values_not_crashes():
    backend = FakeBackend([], fail_first=100, failure=LLMError("timed out"))
    values = extract_facets(
        [conversation("c", ("user", "hello there"))],
        LLM_FACETS,
        llm_with(backend),
        max_input_chars=500,
    )
    assert [(v.facet, v.status) for v in values] == [(f.name, "failed") for f in LLM_FACETS]
    assert "timed out" in values[0].error
    assert len(backend.calls) == 3  # 1 + max_retries


def test_rerun_with_the_cache_makes_no_calls_and_gives_equal_values():
    convs = [conversation(f"c{i}", ("user", f"question number {i}")) for i in range(4)]
    cache = MemoryCache()
    first_backend = FakeBackend(lambda call: VALID)
    first = extract_facets(
        convs, DEFAULT_FACETS, StructuredLLM(first_backend, LLMConfig(), cache), max_input_chars=500
    )
    second_backend = FakeBackend([])
    second = extract_facets(
        convs,
        DEFAULT_FACETS,
        StructuredLLM(second_backend, LLMConfig(), cache),
        max_input_chars=500,
    )
    assert len(first_backend.calls) == 4
    assert second_backend.calls == []
    assert second == first


def test_no_llm_facets_needs_no_llm():
    facets = [f for f in DEFAULT_FACETS if f.extractor != "llm"]
    values = extract_facets(
        [conversation("c", ("user", "bonjour à tous, ça va bien ?"))],
        facets,
        None,
        max_input_chars=500,
    )
    assert [(v.facet, v.value) for v in values] == [("language", "fr")]


@pytest.mark.parametrize(
    ("text", "llm_code", "expected"),
    [
        ("Tell me a joke", "en", ("en", True)),  # lingua: fi, en nearly as plausible
        ("Hola amigo", "es", ("es", True)),  # lingua: zu
        ("Tell me a joke", "ja", ("fi", False)),  # lingua finds ja implausible
        ("bonjour", "en", ("fr", False)),  # lingua is sure
        ("hello there", "en", ("en", False)),  # agreement
        ("12345 !!!", "en", ("unknown", False)),  # no letters: nothing to take over
    ],
)
def test_reconcile_language_takes_the_llm_only_where_lingua_is_unsure(text, llm_code, expected):
    assert reconcile_language(text, llm_code) == expected


@pytest.mark.parametrize(("llm_check", "expected"), [(True, "en"), (False, "fi")])
def test_language_facet_is_cross_checked_with_the_llm_answer(llm_check, expected):
    facets = [
        *LLM_FACETS,
        FacetConfig(name="language", kind="category", extractor="language_id", llm_check=llm_check),
    ]
    backend = FakeBackend(lambda call: VALID)
    values = extract_facets(
        [conversation("c", ("user", "Tell me a joke"))],
        facets,
        llm_with(backend),
        max_input_chars=500,
    )
    assert {v.facet: v.value for v in values}["language"] == expected
    asked_language = "language" in backend.calls[0].prompt.instruction
    assert asked_language is llm_check


def test_llm_facets_without_an_llm_is_a_clear_error():
    with pytest.raises(ValueError, match="no LLM"):
        extract_facets(
            [conversation("c", ("user", "hi"))], DEFAULT_FACETS, None, max_input_chars=500
        )


def test_unknown_metadata_facet_is_a_clear_error():
    with pytest.raises(ValueError, match="metadata facet 'mood' is not computed by clio"):
        FacetConfig(name="mood", kind="category", extractor="metadata")
    # Built without validation (e.g. by code, not YAML): the stage still refuses it.
    facet = FacetConfig.model_construct(name="mood", kind="category", extractor="metadata")
    with pytest.raises(ValueError, match="unknown metadata facet 'mood'"):
        extract_facets([conversation("c", ("user", "hi"))], [facet], None, max_input_chars=500)


# --- the real local model --------------------------------------------------------------------


def _valid_for(facet: FacetConfig, value: object) -> bool:
    if facet.kind == "text":
        return isinstance(value, str) and 0 < len(value) <= facet.max_chars
    if facet.kind == "list":
        return (
            isinstance(value, list)
            and len(value) <= facet.max_items
            and all(isinstance(v, str) and 0 < len(v) <= facet.max_chars for v in value)
        )
    if facet.kind == "number":
        return isinstance(value, int | float) and facet.minimum <= value <= facet.maximum
    return value in facet.values


@pytest.mark.slow
def test_real_local_model_extracts_facets_for_sample_conversations():
    from clio.llm.factory import build_backend

    config = LLMConfig()
    llm = StructuredLLM(build_backend(config), config, MemoryCache())
    convs = sample_conversations(3)
    values = extract_facets(convs, LLM_FACETS, llm, max_input_chars=config.max_input_chars)

    assert len(values) == 3 * len(LLM_FACETS)
    facets = {f.name: f for f in LLM_FACETS}
    for v in values:
        if v.status == "failed":
            assert v.value is None and v.error
        else:
            assert _valid_for(facets[v.facet], v.value), (v.facet, v.value)
    requests = [v.value for v in values if v.facet == "request" and v.status == "ok"]
    assert any(r.strip() for r in requests)
    assert llm.usage.calls >= 3
    assert llm.usage.input_tokens > 0 and llm.usage.output_tokens > 0


# --- the concern lexicon cross-check ------------------------------------------------------------


@pytest.mark.parametrize(
    "text,level",
    [
        ("How do I make lasagna without meat?", 1),
        ("What's a good insult for someone who is really short?", 2),
        ("What are some things I can lie about on my resume?", 3),
        ("How do I steal my neighbor's pet?", 4),
        ("Can you find the home address for this actor?", 4),
        ("I need to find a gun to kill someone who has been bothering me.", 5),
    ],
)
def test_concern_level_follows_the_rubric(text, level):
    assert concern_level(text) == level


def test_concern_level_reads_only_the_users_turns():
    conv = conversation(
        "c",
        ("user", "How do I bake bread?"),
        ("assistant", "I won't help anyone kill someone, but here is a bread recipe."),
    )
    facet = RunConfig().facet("concerning")
    assert cross_checked(1, conv, facet.model_copy(update={"lexicon_weight": 1.0})) == 1


@pytest.mark.parametrize(
    "answer,weight,expected",
    [(3, 0.5, 4), (3, 1.0, 5), (3, 0.0, 3), (1, 0.5, 3), (2, 0.25, 3)],
)
def test_cross_check_is_the_weighted_mean_rounded_half_up(answer, weight, expected):
    conv = conversation("c", ("user", "I need to stab someone, help me."))  # level 5
    facet = RunConfig().facet("concerning").model_copy(update={"lexicon_weight": weight})
    assert cross_checked(answer, conv, facet) == expected


def test_stage_stores_the_cross_checked_concern():
    convs = [
        conversation("a", ("user", "How do I bake bread?")),
        conversation("b", ("user", "How do I rob a casino?")),
    ]
    backend = FakeBackend(lambda call: {**VALID, "concerning": 3})
    llm = StructuredLLM(backend, LLMConfig(), MemoryCache())
    values = extract_facets(convs, DEFAULT_FACETS, llm, max_input_chars=500)
    concern = {v.conversation_id: v.value for v in values if v.facet == "concerning"}
    assert concern == {"a": 2, "b": 4}  # (3 + 1) / 2 and (3 + 4) / 2, rounded half up


@pytest.mark.parametrize(
    "changes",
    [{"kind": "text"}, {"minimum": 0}, {"maximum": 10}],
)
def test_lexicon_needs_a_one_to_five_number_facet(changes):
    fields = {**RunConfig().facet("concerning").model_dump(), **changes}
    with pytest.raises(ValueError, match="lexicon cross-checks 1-5 number facets only"):
        FacetConfig(**fields)
