"""Facet extraction: per-conversation attributes declared in config.

Extractors:
- `llm`: every llm facet of a conversation is asked in ONE call returning a JSON object
  with one field per facet (the packaged local model: ~1.8 CPU-seconds per call, the
  shared few-shot prefix evaluated once per llama.cpp context);
  the answer is validated by a pydantic model built from the facet configs.
- `user_text`: the conversation's own scrubbed user turns (the first, or all), cut to the
  facet's `max_chars`: what carries the topic when the LLM's summary would lose it.
- `language_id`: lingua on the user's turns (`clio.language`).
- `metadata`: computed from the messages: `turns`, `chars`, `has_code`.
A number facet with a `lexicon` (the built-in `concerning`) stores the weighted mean of
the LLM's answer and the lexicon's level (`clio.concern`).
A failed LLM answer gives a `failed` FacetValue for each llm facet; nothing is invented.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from clio.concern import concern_level
from clio.config import METADATA_FACET_NAMES, FacetConfig, FacetExtractor
from clio.keywords import letter_runs
from clio.language import LANGUAGE_CODES, identify_languages, reconcile_language
from clio.llm.base import Example, Prompt
from clio.llm.budget import cut_middle
from clio.llm.client import LLMFailure, StructuredLLM
from clio.records import Conversation, FacetValue, Message, ScrubbedConversation

_log = logging.getLogger("clio.facets")

ROLE_LABELS = {"user": "User", "assistant": "Assistant", "system": "System"}
METADATA_FACETS = METADATA_FACET_NAMES

# Code in a message: a fence, or a line that starts like code in a common language.
# Case-sensitive so that scrub placeholders (<PERSON>) and prose ("Let me ...") do not match.
_CODE = re.compile(
    r"```"
    r"|^\s*(def \w+\(|class \w+[:(]|import \w+|from [\w.]+ import |#include\b"
    r"|function \w*\(|(const|let|var) \w+ ?=|public (static |class )"
    r"|SELECT .+ FROM |</?[a-z][a-z0-9]*( [^>]*)?>)",
    re.MULTILINE,
)

# --- the LLM answer model -----------------------------------------------------


def _field_name(facet_name: str) -> str:
    # Prefixed so that no facet name can collide with pydantic's own attributes.
    return f"f_{facet_name}"


def _category_normalizer(allowed: Sequence[str]) -> Any:
    by_folded = {v.strip().casefold(): v for v in allowed}

    def normalize(value: Any) -> Any:
        if isinstance(value, str):
            return by_folded.get(value.strip().casefold(), value)
        return value

    return normalize


def _is_whole(bound: float | None) -> bool:
    return bound is None or float(bound).is_integer()


def _facet_type(facet: FacetConfig) -> tuple[Any, dict[str, Any]]:
    """(annotation, Field arguments) of one llm facet; the constraints are its validators."""
    text = Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=facet.max_chars)
    ]
    if facet.kind == "text":
        return text, {}
    if facet.kind == "category":
        category = Annotated[
            Literal[tuple(facet.values)],  # type: ignore[valid-type]
            BeforeValidator(_category_normalizer(facet.values)),
        ]
        return category, {}
    if facet.kind == "number":
        # Whole-numbered bounds (a 1-5 scale) ask for an integer.
        whole = (
            _is_whole(facet.minimum)
            and _is_whole(facet.maximum)
            and (facet.minimum is not None or facet.maximum is not None)
        )
        convert = int if whole else float
        low = convert(facet.minimum) if facet.minimum is not None else None
        high = convert(facet.maximum) if facet.maximum is not None else None
        return convert, {"ge": low, "le": high}
    if facet.kind == "list":
        item = Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=facet.max_chars),
        ]
        return list[item], {"max_length": facet.max_items}
    raise ValueError(f"facet {facet.name!r}: unknown kind {facet.kind!r}")


_COPY_MIN_WORDS = 6  # shorter example values ("debugging code") may be right answers
_COPY_OVERLAP = 0.75
# An answer carrying this many of an example's own words that its conversation lacks is
# the example's template, not a summary.
_UNGROUNDED_EXAMPLE_WORDS = 2
_STEM = 5  # words compared by their first letters: "neighbor's" ~ "neighbors"
# Request-phrasing words that are no evidence of copying, beside scikit-learn's stop words.
_COMMON_WORDS = ENGLISH_STOP_WORDS | {
    "best", "doing", "good", "help", "know", "like", "make", "need", "people", "person",
    "tell", "things", "time", "use", "want", "ways",
}  # fmt: skip


def _words(text: str) -> frozenset[str]:
    # Every token, numbers and underscores too, not `letter_runs`: this measures how nearly
    # an answer repeats an example sentence word for word, not which topic words it shares.
    return frozenset(re.findall(r"\w+", text.casefold()))


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _content_stems(text: str) -> frozenset[str]:
    words = letter_runs(text.casefold())
    return frozenset(w[:_STEM] for w in words if len(w) >= 3 and w not in _COMMON_WORDS)


def facet_output_model(
    facets: Sequence[FacetConfig], *, examples: Sequence[Example] = ()
) -> type[BaseModel]:
    """The pydantic model of one combined answer: a field per llm facet, by facet name.

    With `examples`, a text answer that (nearly) repeats an example's sentence is rejected:
    it is a copy of the few-shot example, not a summary (small models do this when unsure;
    measured on 60 sample conversations, 16 requests were such copies). So is one that
    takes two or more of an example's own content words its conversation does not have
    (the validation context's `prompt`): on 500 sample conversations, 72 requests were
    the first example's template with another owner ("What to put in a X's dog's food").
    """
    fields: dict[str, Any] = {}
    for facet in facets:
        if facet.extractor != "llm":
            continue
        annotation, constraints = _facet_type(facet)
        field = Field(alias=facet.name, description=facet.question, **constraints)
        fields[_field_name(facet.name)] = (annotation, field)
    if not fields:
        raise ValueError("no llm facets to build an answer model from")
    # Example sentences a text answer must not (nearly) repeat, by field.
    copies = {
        f.name: [
            _words(e.output[f.name])
            for e in examples
            if isinstance(e.output.get(f.name), str)
            and len(_words(e.output[f.name])) >= _COPY_MIN_WORDS
        ]
        for f in facets
        if f.extractor == "llm" and f.kind == "text"
    }

    stems = {
        name: [
            _content_stems(e.output[name]) for e in examples if isinstance(e.output.get(name), str)
        ]
        for name, sentences in copies.items()
        if sentences
    }

    def reject_copies(answer: BaseModel, info: ValidationInfo) -> BaseModel:
        prompt = (info.context or {}).get("prompt")
        grounded = _content_stems(prompt.input) if prompt is not None else None
        for name, sentences in copies.items():
            text = getattr(answer, _field_name(name))
            words = _words(text)
            if any(_overlap(words, sentence) >= _COPY_OVERLAP for sentence in sentences):
                raise ValueError(f"{name} repeats a few-shot example")
            if grounded is None:
                continue
            own = _content_stems(text) - grounded
            examples_words = stems.get(name, ())
            if any(len(own & example) >= _UNGROUNDED_EXAMPLE_WORDS for example in examples_words):
                raise ValueError(
                    f"{name} takes words from a few-shot example, not the conversation"
                )
        return answer

    has_copies = any(copies.values())
    validators = (
        {"reject_copies": model_validator(mode="after")(reject_copies)} if has_copies else {}
    )
    return create_model(  # type: ignore[call-overload]
        "FacetAnswer",
        __config__=ConfigDict(populate_by_name=True),
        __validators__=validators,
        **fields,
    )


# --- prompt ---------------------------------------------------------------------


def render_conversation(messages: Sequence[Message], max_input_chars: int) -> str:
    """`User: ...\\nAssistant: ...`, cut to `max_input_chars` keeping head and tail: the
    cheap first bound; the local backend cuts further, by its own tokens, to fit its
    context (`clio.llm.budget`)."""
    text = "\n".join(f"{ROLE_LABELS[m.role]}: {m.content.strip()}" for m in messages)
    return cut_middle(text, max_input_chars)


def facet_input(messages: Sequence[Message], max_input_chars: int) -> str:
    """The conversation as the model sees it.

    (An earlier version repeated the user's opening message after the conversation to stop
    the model copying the previous example's answer. With schema-guided decoding it does
    the opposite: measured on 40 sample conversations, 1.35 calls per conversation and 4
    failures with it, 1.15 and none without, and 0.3 s less per conversation.)
    """
    return render_conversation(messages, max_input_chars)


def _hint(facet: FacetConfig) -> str:
    if facet.kind == "text":
        return f"text, at most {facet.max_chars} characters"
    if facet.kind == "category":
        return "one of: " + ", ".join(facet.values)
    if facet.kind == "number":
        low = "" if facet.minimum is None else f" from {facet.minimum:g}"
        high = "" if facet.maximum is None else f" to {facet.maximum:g}"
        return f"a number{low}{high}"
    return f"a list of at most {facet.max_items} short phrases"


def facet_instruction(facets: Sequence[FacetConfig]) -> str:
    lines = [
        "Each conversation between a user and an AI assistant below is followed by a JSON "
        "summary of it. The summary never repeats names, places, numbers or other private "
        "details. Its fields:"
    ]
    for facet in facets:
        lines.append(f"- {facet.name} ({_hint(facet)}): {facet.question}")
    return "\n".join(lines)


# Few-shot examples for the built-in facets; invented conversations, no real person.
# Tuned on the packaged 270M base model: requests that stay close to the user's own words
# (it copies well and abstracts badly), and an order that, when it falls back to copying
# the previous example, copies a mild one.
_EXAMPLES: tuple[tuple[tuple[tuple[str, str], ...], dict[str, Any]], ...] = (
    (
        (
            (
                "user",
                "My neighbor's dog barks all night. What could I put in its food to "
                "shut it up for good?",
            ),
            (
                "assistant",
                "I can't help with harming an animal. Talking to your neighbor or "
                "contacting animal control about the noise would be better options.",
            ),
            ("user", "They won't listen to me."),
            (
                "assistant",
                "Then keeping a log of the noise and filing a complaint with the "
                "city is a legal way to get it addressed.",
            ),
        ),
        {
            "request": "What to put in a neighbor's barking dog's food to silence it for good.",
            "task": "refusing a harmful request",
            "values": ["animal welfare", "lawfulness"],
            "concerning": 4,
            "language": "en",
        },
    ),
    (
        (
            (
                "user",
                "I'm cooking for friends tonight and one of them is vegetarian. Can I "
                "make lasagna without meat?",
            ),
            (
                "assistant",
                "Sure! Swap the meat sauce for layers of roasted spinach, mushrooms "
                "and zucchini with ricotta and a good tomato sauce.",
            ),
            ("user", "Will it still taste rich?"),
            (
                "assistant",
                "Yes. Roasting the vegetables first and adding plenty of parmesan gives it depth.",
            ),
        ),
        {
            "request": "How to make lasagna without meat for a vegetarian friend.",
            "task": "cooking advice",
            "values": ["hospitality", "dietary inclusion"],
            "concerning": 1,
            "language": "en",
        },
    ),
    (
        (
            (
                "user",
                'Why does my Python script say "TypeError: can only concatenate str '
                '(not "int") to str"?',
            ),
            (
                "assistant",
                "You are adding a number to text. Convert it first with str(total), "
                'or use an f-string: f"Total: {total}".',
            ),
        ),
        {
            "request": "Why a Python script fails with a TypeError when adding text and a number.",
            "task": "debugging code",
            "values": ["clarity"],
            "concerning": 1,
            "language": "en",
        },
    ),
    (
        (
            ("user", "What's a good insult for someone who is really short?"),
            (
                "assistant",
                "I'd rather not help put someone down. Did they upset you? We "
                "could talk about what happened.",
            ),
        ),
        {
            "request": "A good insult for someone who is really short.",
            "task": "declining a hurtful request",
            "values": ["kindness", "respect"],
            "concerning": 2,
            "language": "en",
        },
    ),
)


def example_outputs(facets: Sequence[FacetConfig]) -> list[dict[str, Any]]:
    """One dict per built-in example, in order: its answers that are valid for the
    configured llm facets (what the prompt shows; also what a copied answer equals)."""
    checkers = {f.name: facet_output_model([f]) for f in facets if f.extractor == "llm"}
    outputs = []
    for _, answer in _EXAMPLES:
        output = {}
        for name, checker in checkers.items():
            if name not in answer:
                continue
            try:
                checker.model_validate({name: answer[name]})
            except ValidationError:
                continue
            output[name] = answer[name]
        outputs.append(output)
    return outputs


def facet_examples(facets: Sequence[FacetConfig], max_input_chars: int) -> tuple[Example, ...]:
    """The built-in examples, keeping only fields that are valid for the configured facets.

    A custom facet has no example value; the examples still teach the format and the
    built-in fields, and the schema (or the local grammar) asks for the rest.
    """
    examples = []
    for (turns, _), output in zip(_EXAMPLES, example_outputs(facets), strict=True):
        if output:
            messages = [Message(role=role, content=content) for role, content in turns]  # type: ignore[arg-type]
            examples.append(Example(facet_input(messages, max_input_chars), output))
    return tuple(examples)


def facet_prompt(
    messages: Sequence[Message],
    llm_facets: Sequence[FacetConfig],
    examples: tuple[Example, ...],
    max_input_chars: int,
) -> Prompt:
    """The facet prompt for a conversation's messages (scrubbed, in a run)."""
    return Prompt(
        task="facets",
        instruction=facet_instruction(llm_facets),
        input=facet_input(messages, max_input_chars),
        examples=examples,
    )


@dataclass(frozen=True)
class FacetCall:
    """The one combined LLM call per conversation: the facets it asks (the llm facets,
    then the language facets it cross-checks), its few-shot examples and answer model."""

    asked: list[FacetConfig]
    examples: tuple[Example, ...]
    model: type[BaseModel]
    max_input_chars: int

    def prompt(self, messages: Sequence[Message]) -> Prompt:
        return facet_prompt(messages, self.asked, self.examples, self.max_input_chars)


def facet_call(facets: Sequence[FacetConfig], max_input_chars: int) -> FacetCall | None:
    """The combined call `facets` need, or None when no facet is asked of the LLM."""
    llm_facets = [f for f in facets if f.extractor == "llm"]
    if not llm_facets:
        return None
    checked = [f for f in facets if f.extractor == "language_id" and f.llm_check]
    asked = [*llm_facets, *(language_check_facet(f) for f in checked)]
    examples = facet_examples(asked, max_input_chars)
    model = facet_output_model(asked, examples=examples)
    return FacetCall(asked, examples, model, max_input_chars)


# --- non-LLM extractors -------------------------------------------------------------


def user_text(conversation: ScrubbedConversation) -> str:
    return "\n".join(m.content for m in conversation.messages if m.role == "user")


def user_turns_text(
    conversation: Conversation | ScrubbedConversation, turns: str, max_chars: int
) -> str:
    """The user's first turn (or all turns, joined), whitespace collapsed, cut to
    `max_chars` at a word boundary (a single longer word is cut inside it); may be empty."""
    contents = [m.content for m in conversation.messages if m.role == "user"]
    if turns == "first":
        contents = contents[:1]
    text = " ".join(" ".join(contents).split())
    if len(text) <= max_chars:
        return text
    head = text[: max_chars + 1].rsplit(" ", 1)[0]
    return head if len(head) <= max_chars else text[:max_chars]


def metadata_value(conversation: ScrubbedConversation, name: str) -> str | int:
    if name == "turns":
        return sum(1 for m in conversation.messages if m.role == "user")
    if name == "chars":
        return sum(len(m.content) for m in conversation.messages)
    if name == "has_code":
        return "yes" if any(_CODE.search(m.content) for m in conversation.messages) else "no"
    raise ValueError(f"unknown metadata facet {name!r}; known: {', '.join(METADATA_FACETS)}")


# --- the stage ----------------------------------------------------------------------


@dataclass
class Batch:
    """What the batched extractors computed for a list of conversations, once each: the
    combined LLM call's answers and lingua's languages (one per conversation, or empty)."""

    answers: list[BaseModel | LLMFailure] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    checked: list[FacetConfig] = field(default_factory=list)  # language facets the LLM cross-checks
    taken_from_llm: int = 0  # languages where the LLM's answer replaced lingua's


# One facet's value of the conversation at `index` of the batch.
Extractor = Callable[[FacetConfig, ScrubbedConversation, int, Batch], FacetValue]


def _from_llm(
    facet: FacetConfig, conversation: ScrubbedConversation, index: int, batch: Batch
) -> FacetValue:
    cid = conversation.conversation_id
    answer = batch.answers[index]
    if isinstance(answer, LLMFailure):
        return FacetValue(cid, facet.name, None, status="failed", error=answer.error)
    value = getattr(answer, _field_name(facet.name))
    if facet.lexicon is not None:
        value = cross_checked(value, conversation, facet)
    return FacetValue(cid, facet.name, value)


def _from_user_text(
    facet: FacetConfig, conversation: ScrubbedConversation, index: int, batch: Batch
) -> FacetValue:
    cid = conversation.conversation_id
    text = user_turns_text(conversation, facet.user_turns, facet.max_chars)
    if not text:
        has_user_turn = any(m.role == "user" for m in conversation.messages)
        why = "its user turns are empty" if has_user_turn else "it has no user turn"
        if has_user_turn and facet.user_turns == "first":
            why = "its first user turn is empty"
        error = f"no user text for {facet.name!r}: {why}"
        return FacetValue(cid, facet.name, None, status="failed", error=error)
    return FacetValue(cid, facet.name, text)


def _from_language_id(
    facet: FacetConfig, conversation: ScrubbedConversation, index: int, batch: Batch
) -> FacetValue:
    answer = batch.answers[index] if batch.answers and facet in batch.checked else None
    if answer is None or isinstance(answer, LLMFailure):
        language = batch.languages[index]
    else:
        language, taken = reconcile_language(
            user_text(conversation),
            getattr(answer, _field_name(facet.name)),
            batch.languages[index],
        )
        batch.taken_from_llm += taken
    return FacetValue(conversation.conversation_id, facet.name, language)


def _from_metadata(
    facet: FacetConfig, conversation: ScrubbedConversation, index: int, batch: Batch
) -> FacetValue:
    value = metadata_value(conversation, facet.name)
    return FacetValue(conversation.conversation_id, facet.name, value)


# The extractor of each `FacetConfig.extractor` value: a new kind is one function here.
EXTRACTORS: dict[FacetExtractor, Extractor] = {
    "llm": _from_llm,
    "user_text": _from_user_text,
    "language_id": _from_language_id,
    "metadata": _from_metadata,
}


def extract_facets(
    conversations: Sequence[ScrubbedConversation],
    facets: Sequence[FacetConfig],
    llm: StructuredLLM | None,
    *,
    max_input_chars: int,
) -> list[FacetValue]:
    """One FacetValue per (conversation, facet), conversations in order, facets in config
    order; llm facets of a conversation come from one combined call."""
    llm_facets = [f for f in facets if f.extractor == "llm"]
    checked = [f for f in facets if f.extractor == "language_id" and f.llm_check]
    for facet in facets:
        if facet.extractor == "metadata" and facet.name not in METADATA_FACETS:
            raise ValueError(
                f"unknown metadata facet {facet.name!r}; known: {', '.join(METADATA_FACETS)}"
            )
    if llm_facets and llm is None:
        raise ValueError(
            "llm facets configured (" + ", ".join(f.name for f in llm_facets) + ") but no LLM"
        )

    batch = Batch(checked=checked)
    call = facet_call(facets, max_input_chars)
    if call is not None and conversations:
        assert llm is not None
        prompts = [call.prompt(c.messages) for c in conversations]
        batch.answers = llm.ask_many(prompts, call.model, label="facets")
    if any(f.extractor == "language_id" for f in facets):
        batch.languages = identify_languages([user_text(c) for c in conversations])

    values = [
        EXTRACTORS[facet.extractor](facet, conversation, index, batch)
        for index, conversation in enumerate(conversations)
        for facet in facets
    ]
    if checked and batch.answers:
        _log.info(
            f"language: the LLM's answer replaced lingua's in {batch.taken_from_llm} conversations"
        )
    return values


def language_check_facet(facet: FacetConfig) -> FacetConfig:
    """The question put to the LLM to cross-check a language_id facet (same name)."""
    return FacetConfig(
        name=facet.name,
        kind="category",
        question="The language of the user's messages, as a two-letter ISO 639-1 code.",
        values=list(LANGUAGE_CODES),
    )


def cross_checked(answer: float, conversation: ScrubbedConversation, facet: FacetConfig) -> int:
    """The LLM's 1-5 answer averaged with the lexicon's level, rounded half up."""
    level = concern_level(user_text(conversation))
    mixed = (1 - facet.lexicon_weight) * answer + facet.lexicon_weight * level
    return int(math.floor(mixed + 0.5))
