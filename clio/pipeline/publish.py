"""Gate and release: the private trees become released rows, and only those are written.

`gate_clusters` prepares what the gate needs from the run (users, facet values, the
facets' totals, the scrubber re-scan, the LLM auditor) and applies it; `release_run`
does that over the private store and writes the released store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from clio.audit import KeywordRenamer, audit_texts
from clio.config import FacetConfig, LLMConfig, PrivacyConfig, RunConfig, ScrubConfig
from clio.gate import GateResult, TextCheck, apply_gate
from clio.llm.client import StructuredLLM
from clio.pipeline.components import llm_for, scrubber_for
from clio.pipeline.stages import usage_of
from clio.records import Cluster, FacetValue
from clio.release import write_release
from clio.released import CONCERN_FACET, RunRow
from clio.scrub import Scrubber
from clio.store import PrivateStore


@dataclass(frozen=True)
class ReleaseSettings:
    """The parts of a run's config the gate and the release read."""

    privacy: PrivacyConfig
    facets: list[FacetConfig]
    scrub: ScrubConfig
    llm: LLMConfig
    seed: int  # which conversations of a heavy user count under differential privacy

    @classmethod
    def of(cls, config: RunConfig) -> ReleaseSettings:
        return cls(config.privacy, config.facets, config.scrub, config.llm, config.cluster.seed)


def facet_values_by_conversation(
    conversation_ids: Iterable[str], values: Iterable[FacetValue]
) -> dict[str, dict[str, object]]:
    """conversation id -> {facet -> value} of its answered facets (every id present)."""
    by_conversation: dict[str, dict[str, object]] = {cid: {} for cid in conversation_ids}
    for value in values:
        if value.status == "ok" and value.value is not None:
            by_conversation[value.conversation_id][value.facet] = value.value
    return by_conversation


def root_totals(clusters: Sequence[Cluster]) -> dict[str, int]:
    """Per facet, the conversations its top clusters hold: the denominator of `share`."""
    totals: dict[str, int] = {}
    for node in clusters:
        if node.parent_id is None:
            totals[node.facet] = totals.get(node.facet, 0) + len(set(node.member_ids))
    return totals


def rescan_check(scrubber: Scrubber) -> TextCheck:
    """The gate's text check: a text passes when the scrubber finds nothing in it."""

    def passes(text: str) -> bool:
        return not scrubber.analyze([text])[0]

    return passes


def gate_clusters(
    clusters: Sequence[Cluster],
    users: dict[str, str],
    facet_values: dict[str, dict[str, object]],
    settings: ReleaseSettings,
    llm: StructuredLLM | None,
) -> GateResult:
    """Apply the gate with the run's checks: the re-scan when the privacy config asks for
    it, and with an `llm`, the privacy audit and keyword renaming."""
    has_concern = any(f.name == CONCERN_FACET for f in settings.facets)
    return apply_gate(
        clusters,
        users,
        facet_values,
        settings.privacy,
        breakdown_facets=[f.name for f in settings.facets if f.breakdown],
        concern_facet=CONCERN_FACET if has_concern else None,
        text_check=(
            rescan_check(scrubber_for(settings.scrub))
            if settings.privacy.rescan_released_text
            else None
        ),
        audit=partial(audit_texts, llm=llm) if llm is not None else None,
        regenerate=KeywordRenamer(llm) if llm is not None else None,
        total_conversations=root_totals(clusters),
        seed=settings.seed,
    )


def release_summary(clusters_built: int, result: GateResult) -> dict[str, Any]:
    """What the release holds and what the gate withheld, by reason (for the manifest)."""
    levels: dict[str, int] = {}
    for c in result.clusters:
        levels[f"{c.facet}/L{c.level}"] = levels.get(f"{c.facet}/L{c.level}", 0) + 1
    return {
        "clusters_built": clusters_built,
        "clusters_released": len(result.clusters),
        "clusters_released_by_level": dict(sorted(levels.items())),
        "breakdown_cells_released": len(result.breakdowns),
        "suppressed": dict(sorted(result.suppressed.items())),
        "text_checks": dict(sorted(result.text_checks.items())),
    }


@dataclass
class Released:
    summary: dict[str, Any]
    dp: dict[str, Any] | None
    usage: dict[str, int]  # the gate's own LLM use (audit, renaming)


def release_run(
    settings: ReleaseSettings,
    clusters: list[Cluster],
    conversation_ids: list[str],
    private_path: str,
    released_path: str,
    run: RunRow,
) -> Released:
    """Gate this run's trees and add the result, with `run` (plus the gate's LLM use),
    to the released store."""
    with PrivateStore(private_path) as store:
        users = store.user_pseudonyms(conversation_ids)
        facet_values = facet_values_by_conversation(users, store.get_facets(conversation_ids))
        # The auditor and the renamer share the run's LLM cache, so a re-run asks nothing again.
        llm = llm_for(settings.llm, store) if settings.privacy.audit_released_text else None
        result = gate_clusters(clusters, users, facet_values, settings, llm)
    usage = usage_of(llm)
    run = replace(
        run,
        llm_calls=run.llm_calls + usage["calls"],
        llm_cached_calls=run.llm_cached_calls + usage["cached_calls"],
        input_tokens=run.input_tokens + usage["input_tokens"],
        output_tokens=run.output_tokens + usage["output_tokens"],
    )
    write_release(Path(released_path), run, result)
    return Released(release_summary(len(clusters), result), result.dp, usage)
