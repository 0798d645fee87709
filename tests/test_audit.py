"""The LLM privacy auditor, renaming from keywords, and the gate's use of both."""

from __future__ import annotations

import pytest

from clio.audit import (
    AUDIT_EXAMPLES,
    KeywordRenamer,
    PrivacyAudit,
    audit_prompt,
    audit_texts,
    rename_prompt,
)
from clio.config import LLMConfig, PrivacyConfig
from clio.gate import apply_gate
from clio.llm.base import LLMError
from clio.llm.client import StructuredLLM
from clio.llm.render import completion_text
from clio.records import Cluster
from tests.fakes.llm import Call, FakeBackend


def client(backend: FakeBackend, retries: int = 1) -> StructuredLLM:
    return StructuredLLM(backend, LLMConfig(max_retries=retries), backoff_seconds=0)


def scored(scores: dict[str, object]):
    """A fake auditor model: the score scripted for the text in the prompt."""

    def answer(call: Call):
        value = scores[call.prompt.input]
        return value if isinstance(value, Exception) else {"score": value, "reason": "scripted"}

    return answer


def test_each_distinct_text_is_rated_once_and_failures_are_none():
    backend = FakeBackend(
        scored({"Cooking at home": 5, "Mail ann@x.io": 1, "Broken": LLMError("timed out")})
    )
    scores = audit_texts(
        ["Cooking at home", "Mail ann@x.io", "Cooking at home", "Broken"], client(backend)
    )

    assert scores == {"Cooking at home": 5, "Mail ann@x.io": 1, "Broken": None}
    # one call per distinct text, plus the retry of the failing one
    assert sorted(c.prompt.input for c in backend.calls) == [
        "Broken", "Broken", "Cooking at home", "Mail ann@x.io",
    ]  # fmt: skip


@pytest.mark.parametrize("answer", [{"score": 0, "reason": "x"}, {"score": 6, "reason": "x"},
                                    {"score": 3}, {"reason": "no score"}, "not json"])  # fmt: skip
def test_an_invalid_answer_is_a_failed_audit(answer):
    backend = FakeBackend(lambda call: answer)
    assert audit_texts(["Some topic"], client(backend)) == {"Some topic": None}


def test_nothing_to_audit_makes_no_call():
    backend = FakeBackend([])
    assert audit_texts([], client(backend)) == {}
    assert backend.calls == []


def test_the_prompt_is_few_shot_completion_friendly():
    prompt = audit_prompt("  Help   with\ntaxes ")
    assert (prompt.task, prompt.input, prompt.input_label) == (
        "privacy_audit",
        "Help with taxes",
        "Text",
    )
    assert prompt.examples == AUDIT_EXAMPLES
    scores = [e.output["score"] for e in AUDIT_EXAMPLES]
    assert min(scores) == 1 and max(scores) == 5  # both ends of the scale are shown
    for example in AUDIT_EXAMPLES:
        PrivacyAudit.model_validate(example.output)
    text = completion_text(prompt)
    assert text.endswith("### Text\nHelp with taxes\n### JSON\n")
    assert text.count("### JSON") == len(AUDIT_EXAMPLES) + 1
    assert audit_prompt("x" * 1000).input == "x" * 400


# -- renaming from keywords ---------------------------------------------------------------


def test_renamer_without_llm_names_from_keywords():
    renamed = KeywordRenamer(None)({"a": ["train", "ticket", "refund", "delay"], "b": []})
    assert renamed["a"][0] == "train, ticket, refund"
    assert "train, ticket, refund, delay" in renamed["a"][1]
    assert renamed["b"][0] == "(withheld)"


def test_renamer_asks_the_llm_with_keywords_only():
    def answer(call: Call):
        if "refund" in call.prompt.input:
            return {"name": "Train ticket refunds", "description": "Users ask for refunds."}
        return {"name": "Cover letters", "description": "Copied from the example."}

    backend = FakeBackend(answer)
    renamed = KeywordRenamer(client(backend))(
        {"a": ["train", "ticket", "refund"], "b": ["garden", "soil"], "c": []}
    )

    assert renamed["a"] == ("Train ticket refunds", "Users ask for refunds.")
    # a name borrowed from the few-shot examples is not used: keyword name instead
    assert renamed["b"][0] == "garden, soil"
    assert renamed["c"][0] == "(withheld)"
    assert sorted((c.prompt for c in backend.calls), key=lambda p: p.input) == [
        rename_prompt(["garden", "soil"]),
        rename_prompt(["train", "ticket", "refund"]),
    ]
    assert backend.calls[0].prompt.input.startswith("Distinctive words: ")


# -- the gate with an auditor ----------------------------------------------------------------


def _tree() -> tuple[list[Cluster], dict[str, str], dict[str, dict[str, object]]]:
    users = {f"c{i}": f"u{i}" for i in range(6)}
    values = {c: {"request": "plan a train trip", "language": "en"} for c in users}
    clusters = [
        Cluster("request", 0, "a", None, ["c0", "c1", "c2"], "Train trips", "Users plan trips.",
                ["train"]),
        Cluster("request", 0, "b", None, ["c3", "c4", "c5"], "Trips of Ann Lee", "Ann's trips.",
                ["trip"]),
    ]  # fmt: skip
    return clusters, users, values


@pytest.mark.parametrize(
    ("min_score", "expected_names"),
    [
        (3, ["Train trips", "(withheld)"]),
        (5, ["(withheld)", "(withheld)"]),
        (1, ["Train trips", "Trips of Ann Lee"]),
    ],
)
def test_gate_withholds_texts_below_the_cut_off(min_score, expected_names):
    clusters, users, values = _tree()
    scores = {"Train trips": 4, "Users plan trips.": 5, "train": 5, "trip": 5, "en": 5,
              "Trips of Ann Lee": 1, "Ann's trips.": 2}  # fmt: skip
    audited: list[list[str]] = []

    def audit(texts):
        audited.append(list(texts))
        return {t: scores[t] for t in texts}

    config = PrivacyConfig(min_users=3, min_conversations=3, audit_min_score=min_score)
    result = apply_gate(clusters, users, values, config, breakdown_facets=["language"], audit=audit)

    assert [c.name for c in result.clusters] == expected_names
    assert len(audited) == 1  # one batch
    assert sorted(audited[0]) == sorted(scores)
    failed = sum(1 for s in scores.values() if s < min_score)
    assert result.text_checks.get("failed_audit", 0) == failed
    assert result.text_checks["texts_audited"] == len(scores)


def test_a_failed_audit_call_never_passes_a_text():
    clusters, users, values = _tree()
    config = PrivacyConfig(min_users=3, min_conversations=3)
    result = apply_gate(
        clusters, users, values, config, breakdown_facets=["language"], audit=lambda texts: {}
    )
    assert [(c.name, c.description, c.keywords) for c in result.clusters] == [
        ("(withheld)", "", []),
        ("(withheld)", "", []),
    ]
    assert result.breakdowns == []
    assert result.text_checks["failed_audit_error"] == 7
    assert result.suppressed == {
        "cell_value_withheld_audit_error": 2,
        "keyword_withheld_audit_error": 2,
        "text_withheld_audit_error": 4,
    }


def test_only_texts_that_passed_the_cheaper_checks_are_audited():
    clusters, users, values = _tree()
    clusters[1].name = "Mail ann@x.io"
    audited: list[str] = []

    def audit(texts):
        audited.extend(texts)
        return dict.fromkeys(texts, 5)

    config = PrivacyConfig(min_users=3, min_conversations=3)
    apply_gate(
        clusters, users, values, config, breakdown_facets=[], audit=audit,
        text_check=lambda text: "@" not in text,
    )  # fmt: skip
    assert "Mail ann@x.io" not in audited
    assert "Train trips" in audited
