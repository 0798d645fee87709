"""How informative each LLM facet's answers were over a run, and whether it degenerated.

A small model under a few-shot prompt can answer the same thing for every conversation:
the shipped sample's `task` was mostly a copied example ("declining a hurtful request"),
its `values` "kindness" in most conversations. Clustering or breaking down such a facet
releases the prompt, not the conversations, so the run measures each llm facet and the
pipeline leaves a degenerate one out of its clusters and breakdowns (`clio.pipeline.run`).

Figures, per llm facet, over the run's conversations:
- `top_share`: the share of answered conversations whose answer is the most common one
  (a list facet: whose list holds the most common item);
- `example_share`: the share of answers (a list facet: of items) equal to an answer of
  a few-shot example (`clio.facets.example_outputs`); text and list facets only, as a
  closed facet's example answers are among its few allowed values anyway;
- `distinct_ratio`: distinct answers over answers (a list facet: over items);
- `failure_rate`: failed answers over the facet's values.
Answers are compared case-folded, whitespace collapsed, trailing punctuation dropped.
They are counts over conversations, so they go to the operator manifest only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from clio.config import FacetConfig
from clio.records import FacetValue
from clio.released import CONCERN_FACET

OPEN_KINDS = ("text", "list")


@dataclass(frozen=True)
class DegeneracyThresholds:
    """When a facet counts as degenerate: the one place these numbers are set.

    No cached run of the local model over the shipped sample was at hand, so they are
    set from what was observed on it (500 conversations, the packaged 270M model): `task`
    was mostly a copied example and `values` "kindness" in most conversations, both far
    above these lines, while an informative open facet (requests, tasks of varied
    conversations) rarely repeats one answer in a tenth of them. Closed facets
    (category, number) have few allowed values, and most real traffic is ordinary
    (`concerning` 1), so only a near-constant answer counts there. Below
    `min_answers` answered conversations nothing is judged: a few answers can agree by
    chance.
    """

    top_share_open: float = 0.5  # text and list facets: one answer in half the conversations
    example_share: float = 0.3  # text and list facets: a third of answers copy an example
    top_share_closed: float = 0.95  # category and number facets: (nearly) one answer only
    min_answers: int = 20


THRESHOLDS = DegeneracyThresholds()


@dataclass(frozen=True)
class FacetQuality:
    """One llm facet's figures over a run and the verdict (`reasons` says why)."""

    facet: str
    kind: str
    n_values: int  # the facet's values in the run, answered or failed
    n_answers: int  # answered
    n_items: int  # answered items (a text, category or number answer is one item)
    failure_rate: float
    top_share: float | None
    example_share: float | None
    distinct_ratio: float | None
    degenerate: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SPACES = re.compile(r"\s+")


def normalized(answer: object) -> str:
    """An answer as compared: case-folded, whitespace collapsed, end punctuation dropped;
    numbers as `4`, not `4.0`."""
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    return _SPACES.sub(" ", str(answer).casefold()).strip().rstrip(".!?;,").strip()


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def measure_facet(
    facet: FacetConfig,
    values: Sequence[FacetValue],
    example_answers: Sequence[object] = (),
    thresholds: DegeneracyThresholds = THRESHOLDS,
) -> FacetQuality:
    """The figures of `facet` over `values` (its own are picked out) and the verdict;
    `example_answers` are the few-shot examples' answers of this facet."""
    own = [v for v in values if v.facet == facet.name]
    answered = [v.value for v in own if v.status == "ok" and v.value is not None]
    failed = sum(1 for v in own if v.status == "failed")
    # Per answered conversation, its distinct normalized items (a single answer is one).
    per_answer = [
        [normalized(item) for item in (value if isinstance(value, list) else [value])]
        for value in answered
    ]
    items = [item for answer in per_answer for item in answer]
    in_answers = Counter(item for answer in per_answer for item in set(answer))
    top = in_answers.most_common(1)[0][1] if in_answers else 0
    open_kind = facet.kind in OPEN_KINDS
    examples = {
        normalized(item)
        for answer in example_answers
        for item in (answer if isinstance(answer, list) else [answer])
    }
    copied = sum(1 for item in items if item in examples)
    top_share = _share(top, len(answered))
    example_share = _share(copied, len(items)) if open_kind else None

    reasons: list[str] = []
    if len(answered) < thresholds.min_answers:
        reasons.append(f"not judged: {len(answered)} answers, fewer than {thresholds.min_answers}")
    else:
        top_limit = thresholds.top_share_open if open_kind else thresholds.top_share_closed
        if top_share is not None and top_share >= top_limit:
            reasons.append(f"most common answer {top_share:.0%} >= {top_limit:.0%}")
        if example_share is not None and example_share >= thresholds.example_share:
            reasons.append(
                f"few-shot example copies {example_share:.0%} >= {thresholds.example_share:.0%}"
            )
    return FacetQuality(
        facet=facet.name,
        kind=facet.kind,
        n_values=len(own),
        n_answers=len(answered),
        n_items=len(items),
        failure_rate=_share(failed, len(own)) or 0.0,
        top_share=top_share,
        example_share=example_share,
        distinct_ratio=_share(len(set(items)), len(items)),
        degenerate=len(answered) >= thresholds.min_answers and bool(reasons),
        reasons=reasons,
    )


def measure_facets(
    facets: Sequence[FacetConfig],
    values: Sequence[FacetValue],
    example_answers: Mapping[str, Sequence[object]],
    thresholds: DegeneracyThresholds = THRESHOLDS,
) -> dict[str, FacetQuality]:
    """Facet name -> its figures, for every llm facet of `facets`, in config order."""
    return {
        f.name: measure_facet(f, values, example_answers.get(f.name, ()), thresholds)
        for f in facets
        if f.extractor == "llm"
    }


def withheld_uses(
    facets: Sequence[FacetConfig], quality: Mapping[str, FacetQuality]
) -> dict[str, list[str]]:
    """Per degenerate facet, what the run leaves it out of, as configured: its clustering
    (`clusters`), its breakdowns and, for the concern facet, the clusters' concern mean.
    The rule: a facet measured as degenerate is released neither as clusters nor as
    counts, rather than released with a flag a reader may miss; a facet configured with
    `keep_if_degenerate` is kept."""
    withheld: dict[str, list[str]] = {}
    for facet in facets:
        verdict = quality.get(facet.name)
        if verdict is None or not verdict.degenerate or facet.keep_if_degenerate:
            continue
        uses = ["clusters"] if facet.cluster else []
        if facet.breakdown:
            uses.append("breakdowns")
        if facet.name == CONCERN_FACET:
            uses.append("concern_mean")
        withheld[facet.name] = uses
    return withheld
