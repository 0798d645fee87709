"""The LLM privacy auditor, and renaming a cluster from its keywords alone.

`audit_texts` asks the LLM to rate each distinct text on a 1-5 scale where higher is
safer (5: nothing about any person; 1: identifies someone). A call that fails after
the client's retries gives `None`, which the gate treats as failing: an audit that did
not happen never lets a text through.

`rename_from_keywords` is the gate's "regenerate once from less specific input": a
cluster whose name or description failed is renamed from its (already vetted)
keywords only, with no member texts, by the LLM when there is one, otherwise from
the keywords themselves.

The prompts are completion-friendly few-shot prompts (see `clio.llm.render`), so the
packaged base model can follow them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from clio.describe import ClusterSummary, clean_summary
from clio.gate import WITHHELD_NAME
from clio.llm.base import Example, Prompt
from clio.naming import NAME_INSTRUCTION, keyword_description, keyword_name

if TYPE_CHECKING:
    from clio.llm.client import StructuredLLM

_log = logging.getLogger("clio.audit")

MAX_AUDITED_CHARS = 400  # longer texts are cut before the audit (released texts are short)
MAX_REASON_CHARS = 100


class PrivacyAudit(BaseModel):
    """The auditor's answer for one text."""

    score: int = Field(
        ge=1, le=5, description="1 = identifies a person, 5 = nothing private at all."
    )
    reason: str = Field(max_length=MAX_REASON_CHARS, description="A few words why.")


AUDIT_INSTRUCTION = (
    "Rate how safe each text is to publish in a summary of many people's conversations. "
    "Judge privacy only: a harmful or offensive topic is not private. "
    "Score 5: a general topic, nothing about any particular person. "
    "Score 4: a specific topic, but nothing that points to a person. "
    "Score 3: a narrow detail (a rare place, organisation or event) that names no one. "
    "Score 2: details that could identify a person or a small group. "
    "Score 1: a name, contact detail, address, account or id number of someone."
)

AUDIT_EXAMPLES = (
    Example(
        input="Help with cover letters for jobs",
        output={"score": 5, "reason": "general task, no person"},
    ),
    Example(
        input="Write to john.miller@acme-corp.com about the unpaid invoice",
        output={"score": 1, "reason": "an email address of a person"},
    ),
    Example(input="de", output={"score": 5, "reason": "a language code"}),
    Example(
        input="Complaints about the night-shift manager at the Springfield Walmart",
        output={"score": 2, "reason": "points to one person at one store"},
    ),
    Example(input="4", output={"score": 5, "reason": "a number"}),
    Example(input="request cluster 12", output={"score": 5, "reason": "a generic label"}),
    Example(
        input="Plan a party for Sarah Connor at 14 Elm Street",
        output={"score": 1, "reason": "a name and a home address"},
    ),
    Example(
        input="Most distinctive words in this group: garden, soil, plants.",
        output={"score": 5, "reason": "general words"},
    ),
    Example(
        input="Call Peter Novak on 07700 900123 about his loan",
        output={"score": 1, "reason": "a name and a phone number"},
    ),
    Example(
        input="Questions about treating a rare bone disease",
        output={"score": 4, "reason": "medical topic, no person"},
    ),
    Example(
        input="Ways to steal a car",
        output={"score": 5, "reason": "harmful topic, but about no person"},
    ),
)


def audit_prompt(text: str) -> Prompt:
    return Prompt(
        task="privacy_audit",
        instruction=AUDIT_INSTRUCTION,
        input=" ".join(text.split())[:MAX_AUDITED_CHARS],
        examples=AUDIT_EXAMPLES,
        input_label="Text",
    )


def audit_texts(texts: Sequence[str], llm: StructuredLLM) -> dict[str, int | None]:
    """Privacy score (1-5, higher is safer) of each distinct text; None where the call failed."""
    distinct = list(dict.fromkeys(texts))
    if not distinct:
        return {}
    answers = llm.ask_many(
        [audit_prompt(text) for text in distinct], PrivacyAudit, label="privacy audit"
    )
    scores: dict[str, int | None] = {}
    for text, answer in zip(distinct, answers, strict=True):
        scores[text] = answer.score if isinstance(answer, PrivacyAudit) else None
    n_failed = sum(1 for score in scores.values() if score is None)
    _log.info(f"privacy audit: {len(distinct)} texts, {n_failed} calls failed")
    return scores


# -- renaming from keywords only ------------------------------------------------------------


def keywords_text(keywords: Sequence[str]) -> str:
    return "Distinctive words: " + ", ".join(keywords)


# The same topics as the naming examples in `clio.describe`, so `clean_summary` rejects a
# name copied from them.
RENAME_EXAMPLES = (
    Example(
        input=keywords_text(["cover", "letter", "job"]),
        output={
            "name": "Help with cover letters for jobs",
            "description": "Users ask for help writing cover letters for job applications.",
        },
    ),
    Example(
        input=keywords_text(["pasta", "sauce", "spaghetti"]),
        output={
            "name": "Cook pasta and sauce",
            "description": "Users ask how to cook pasta. Some also ask about sauces.",
        },
    ),
)


def rename_prompt(keywords: Sequence[str]) -> Prompt:
    return Prompt(
        task="rename_from_keywords",
        instruction=NAME_INSTRUCTION,
        input=keywords_text(keywords),
        examples=RENAME_EXAMPLES,
        input_label="Group",
    )


class KeywordRenamer:
    """Callable for `apply_gate(regenerate=...)`: cluster id -> keywords in, cluster id ->
    (name, description) out. With an LLM, one batch of keyword-only prompts; a cluster
    without keywords, or whose answer is unusable, gets a keyword name (or `fallback_name`)."""

    def __init__(self, llm: StructuredLLM | None, fallback_name: str = WITHHELD_NAME):
        self.llm = llm
        self.fallback_name = fallback_name

    def __call__(self, keywords: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, str]]:
        ids = sorted(keywords)
        asked = [cid for cid in ids if keywords[cid]] if self.llm is not None else []
        answers: dict[str, object] = {}
        if self.llm is not None and asked:
            prompts = [rename_prompt(keywords[cid]) for cid in asked]
            replies = self.llm.ask_many(prompts, ClusterSummary, label="rename from keywords")
            answers = dict(zip(asked, replies, strict=True))
        renamed: dict[str, tuple[str, str]] = {}
        for cid in ids:
            words = list(keywords[cid])
            cleaned = clean_summary(answers[cid], keywords_text(words)) if cid in answers else None
            if cleaned is None:
                renamed[cid] = (keyword_name(words, self.fallback_name), keyword_description(words))
            else:
                name, description = cleaned
                renamed[cid] = (name, description or keyword_description(words))
        return renamed
