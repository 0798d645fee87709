"""Each llm facet's degeneracy figures, the verdict, and what a degenerate facet is left
out of (`clio.facet_quality`)."""

from __future__ import annotations

import pytest

from clio.config import FacetConfig
from clio.facet_quality import (
    THRESHOLDS,
    DegeneracyThresholds,
    measure_facet,
    measure_facets,
    normalized,
    withheld_uses,
)
from clio.records import FacetValue

TASK = FacetConfig(name="task", kind="text", question="What task?", max_chars=80)
VALUES = FacetConfig(name="values", kind="list", question="Which values?", max_chars=40)
MOOD = FacetConfig(
    name="mood", kind="category", question="Mood?", values=["calm", "upset"], breakdown=True
)


def _values(facet: str, answers: list[object], failed: int = 0) -> list[FacetValue]:
    values = [FacetValue(f"c{i}", facet, a) for i, a in enumerate(answers)]
    values += [
        FacetValue(f"f{i}", facet, None, status="failed", error="no answer") for i in range(failed)
    ]
    return values


def test_figures_of_a_text_facet_that_copies_an_example():
    answers = ["Declining a hurtful request."] * 12 + [f"task number {i}" for i in range(8)]
    values = _values("task", answers, failed=2) + _values("other", ["x"] * 5)
    quality = measure_facet(TASK, values, ["declining a hurtful request", "cooking advice"])
    assert (quality.n_values, quality.n_answers, quality.n_items) == (22, 20, 20)
    assert quality.top_share == 0.6
    assert quality.example_share == 0.6  # case and the full stop do not hide the copy
    assert quality.distinct_ratio == 0.45  # 9 distinct of 20
    assert quality.failure_rate == round(2 / 22, 4)
    assert quality.degenerate
    assert len(quality.reasons) == 2


def test_figures_of_a_list_facet_are_over_items_and_conversations():
    # "kindness" in 15 of 20 conversations; 35 items, 22 distinct.
    answers: list[object] = [["kindness", f"value {i}"] for i in range(15)]
    answers += [[f"other {i}"] for i in range(5)]
    quality = measure_facet(VALUES, _values("values", answers), ["kindness", "respect"])
    assert quality.n_items == 35
    assert quality.top_share == 0.75  # of conversations whose list holds it
    assert quality.example_share == round(15 / 35, 4)  # of items
    assert quality.distinct_ratio == round(21 / 35, 4)
    assert quality.degenerate


def test_varied_answers_are_not_degenerate():
    answers = [f"helping with topic {i % 10}" for i in range(40)]  # each answer 10%
    quality = measure_facet(TASK, _values("task", answers), ["cooking advice"])
    assert quality.top_share == 0.1
    assert quality.example_share == 0.0
    assert not quality.degenerate and quality.reasons == []


def test_each_limit_alone_flags_the_facet():
    limits = THRESHOLDS
    # One answer at the limit, no copies.
    common = ["same thing"] * 10 + [f"answer {i}" for i in range(10)]
    assert measure_facet(TASK, _values("task", common), ["cooking advice"]).degenerate
    # Copies at the limit, spread over several examples so no answer is common.
    copies = ["cooking advice"] * 3 + ["debugging code"] * 3 + [f"answer {i}" for i in range(14)]
    quality = measure_facet(TASK, _values("task", copies), ["cooking advice", "debugging code"])
    assert quality.top_share is not None and quality.top_share < limits.top_share_open
    assert quality.example_share == limits.example_share
    assert quality.degenerate
    # Just under both limits.
    fine = ["same thing"] * 9 + ["cooking advice"] * 5 + [f"answer {i}" for i in range(6)]
    assert not measure_facet(TASK, _values("task", fine), ["cooking advice"]).degenerate


def test_closed_facets_are_judged_on_a_near_constant_answer_only():
    mostly = _values("mood", ["calm"] * 18 + ["upset"] * 2)  # 90%: ordinary traffic
    quality = measure_facet(MOOD, mostly, ["calm"])
    assert quality.top_share == 0.9 and quality.example_share is None
    assert not quality.degenerate
    assert measure_facet(MOOD, _values("mood", ["calm"] * 20), ["calm"]).degenerate


def test_too_few_answers_are_not_judged():
    quality = measure_facet(TASK, _values("task", ["same"] * 19, failed=30))
    assert quality.top_share == 1.0 and quality.failure_rate == round(30 / 49, 4)
    assert not quality.degenerate
    assert quality.reasons and quality.reasons[0].startswith("not judged")
    strict = DegeneracyThresholds(min_answers=5)
    assert measure_facet(TASK, _values("task", ["same"] * 5), thresholds=strict).degenerate


def test_only_llm_facets_are_measured_and_numbers_compare_as_numbers():
    language = FacetConfig(name="language", kind="category", extractor="language_id")
    concern = FacetConfig(
        name="concerning", kind="number", question="How?", minimum=1, maximum=5, breakdown=True
    )
    values = _values("concerning", [1.0] * 10 + [1] * 10) + _values("language", ["en"] * 30)
    quality = measure_facets([language, concern], values, {"concerning": [4, 1]})
    assert list(quality) == ["concerning"]
    assert quality["concerning"].distinct_ratio == 0.05  # 1.0 and 1 are one answer
    assert normalized(4.0) == normalized(4) == "4"
    assert normalized("  Cooking   Advice! ") == "cooking advice"


@pytest.mark.parametrize(
    ("facet", "uses"),
    [
        (FacetConfig(name="task", kind="text", question="q", cluster=True), ["clusters"]),
        (MOOD, ["breakdowns"]),
        (
            FacetConfig(
                name="concerning",
                kind="number",
                question="q",
                minimum=1,
                maximum=5,
                breakdown=True,
            ),
            ["breakdowns", "concern_mean"],
        ),
    ],
)
def test_a_degenerate_facet_is_left_out_of_what_it_was_configured_for(facet, uses):
    values = _values(facet.name, ["same"] * 25)
    quality = measure_facets([facet, VALUES], values, {})
    assert withheld_uses([facet, VALUES], quality) == {facet.name: uses}
    varied = measure_facets([facet], _values(facet.name, [str(i) for i in range(25)]), {})
    assert withheld_uses([facet], varied) == {}


def test_a_facet_configured_to_be_kept_stays_in_though_degenerate():
    kept = FacetConfig(
        name="task", kind="text", question="q", cluster=True, keep_if_degenerate=True
    )
    values = _values(kept.name, ["same"] * 25)
    quality = measure_facets([kept], values, {})
    assert quality[kept.name].degenerate  # still measured and reported
    assert withheld_uses([kept], quality) == {}
