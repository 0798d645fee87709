"""Gate and release: the private trees become released rows, and only those are written.

`gate_clusters` prepares what the gate needs from the run (users, facet values, the
facets' totals, the scrubber re-scan, the LLM auditor) and applies it; `release_run`
does that over the private store and writes the released store.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from clio.audit import KeywordRenamer, audit_texts
from clio.config import FacetConfig, LLMConfig, PrivacyConfig, RunConfig, ScrubConfig
from clio.dp_ledger import record_spend
from clio.gate import GateResult, TextCheck, apply_gate
from clio.gate.public import LineageCandidate, PublicId, keyed_ids, release_id_key
from clio.hierarchy import resolve_names
from clio.lineage import KEPT, MERGED, RELATIONS
from clio.llm.client import StructuredLLM
from clio.pipeline.components import hmac_key, llm_for, scrubber_for
from clio.pipeline.stages import usage_of
from clio.records import Cluster, FacetValue
from clio.release import write_release
from clio.released import (
    CONCERN_FACET,
    PreviousRelease,
    RunRow,
    earlier_run_sizes,
    previous_release,
    previous_run,
    released_sizes,
)
from clio.scrub import Scrubber
from clio.store import BuildLineage, PrivateStore


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
        """The settings of `config`, the LLM audit and the re-scan left out where every
        released text is extractive and `privacy.audit_extractive_text` (or
        `rescan_extractive_text`) is off."""
        privacy = config.privacy
        if resolve_names(config.describe, config.llm.backend) == "extractive":
            privacy = privacy.model_copy(
                update={
                    "audit_released_text": privacy.audit_released_text
                    and privacy.audit_extractive_text,
                    "rescan_released_text": privacy.rescan_released_text
                    and privacy.rescan_extractive_text,
                }
            )
        return cls(privacy, config.facets, config.scrub, config.llm, config.cluster.seed)

    def without(self, facet_names: Collection[str]) -> ReleaseSettings:
        """These settings with `facet_names` left out: the gate then releases no breakdown
        of them (nor, for the concern facet, a concern mean). For facets the run measured
        as degenerate, whose breakdowns would show the prompt, not the conversations."""
        return replace(self, facets=[f for f in self.facets if f.name not in facet_names])


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
    """Per facet, the distinct conversations of its top clusters: the denominator of
    `share`. A set union, not the sum of the tops' sizes: a list facet puts a conversation
    in several tops, and with that multiplicity in the denominator, n / share minus the
    released tops would give the size of a suppressed top."""
    members: dict[str, set[str]] = {}
    for node in clusters:
        if node.parent_id is None:
            members.setdefault(node.facet, set()).update(node.member_ids)
    return {facet: len(ids) for facet, ids in members.items()}


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
    public_id: PublicId | None = None,
    previous: PreviousRelease | None = None,
    lineage: Sequence[LineageCandidate] = (),
) -> GateResult:
    """Apply the gate with the run's checks: the re-scan when the privacy config asks for
    it, and with an `llm`, the privacy audit and keyword renaming; `public_id`,
    `previous` and `lineage` as `apply_gate` takes them."""
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
        regenerate=KeywordRenamer(llm),
        total_conversations=root_totals(clusters),
        seed=settings.seed,
        public_id=public_id,
        previous=previous,
        lineage=lineage,
    )


def lineage_candidates(
    clusters: Sequence[Cluster],
    public_id: PublicId,
    lineage: BuildLineage | None,
    previous_public_id: PublicId | None,
    previous_run_id: str | None,
    previously_released: Collection[str],
) -> list[LineageCandidate]:
    """The links this run may release to the run before it: `kept` for every cluster
    whose id that run released, and the build's `split` and `merged` links to clusters
    it released (with the previous build's ids, `previous_public_id`)."""
    if previous_run_id is None:
        return []
    out = [
        LineageCandidate(c.cluster_id, previous_run_id, public_id(c), KEPT)
        for c in clusters
        if public_id(c) in previously_released
    ]
    if lineage is None or previous_public_id is None:
        return out
    for link in lineage.links:
        if link.relation == KEPT:
            continue
        node = Cluster(link.facet, link.level, link.previous_cluster_id, None, [])
        before = previous_public_id(node)
        if before in previously_released:
            out.append(
                LineageCandidate(
                    link.cluster_id,
                    previous_run_id,
                    before,
                    link.relation,
                    link.n_shared_users,
                    link.n_shared_conversations,
                )
            )
    return out


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


def lineage_summary(
    result: GateResult, previous_run_id: str | None, sizes_before: dict[str, tuple[int, int]]
) -> dict[str, Any] | None:
    """The release against the run before it, from released rows only: clusters by
    relation (`kept`, `split`, `merged` links, `new` and `gone` clusters) and survival,
    the share of the previous release's base clusters, weighted by their released users,
    whose id is released again. None for a store's first run."""
    if previous_run_id is None:
        return None
    now = {c.cluster_id for c in result.clusters}
    linked = {k.cluster_id for k in result.lineage}
    merged = {k.previous_cluster_id for k in result.lineage if k.relation == MERGED}
    relations = {r: sum(1 for k in result.lineage if k.relation == r) for r in RELATIONS}
    base = {cid: users for cid, (level, users) in sizes_before.items() if level == 0}
    total = sum(base.values())
    return {
        "previous_run_id": previous_run_id,
        "clusters_by_relation": {
            **relations,
            "new": len(now - linked),
            "gone": len(set(sizes_before) - now - merged),
        },
        "survival_by_users": (
            round(sum(u for cid, u in base.items() if cid in now) / total, 4) if total else None
        ),
    }


@dataclass
class Released:
    summary: dict[str, Any]
    dp: dict[str, Any] | None
    usage: dict[str, int]  # the gate's own LLM use (audit, renaming)


def protect_run_row(
    run: RunRow, previous: RunRow | None, n_processed: int, earlier: Iterable[int] = ()
) -> RunRow:
    """The run row under rule 6: its figures describe the run's conversations too.

    `n_conversations` is the release's total, so its change from the previous run is the
    number that joined: a change of 1 to `min_conversations - 1` from the previous run's,
    or from any of `earlier` (every earlier run's `n_conversations`), keeps the previous
    figure. The LLM calls and tokens describe the conversations this run processed: with
    fewer than `min_conversations` of them (one new conversation's token counts measure
    its length) they are released as 0 (not rounded: any rounding still gives a range of
    one conversation's length)."""
    if previous is not None:
        changes = {abs(run.n_conversations - n) for n in {previous.n_conversations, *earlier}}
        if any(0 < change < run.min_conversations for change in changes):
            run = replace(run, n_conversations=previous.n_conversations)
    if n_processed < run.min_conversations:
        run = replace(run, llm_calls=0, llm_cached_calls=0, input_tokens=0, output_tokens=0)
    return run


def public_ids(store: PrivateStore, scrub: ScrubConfig, build: str) -> PublicId:
    """The released id of each node of the build `build` in `store` (rule 7)."""
    lineage = store.build_lineage(build)
    key = release_id_key(hmac_key(scrub, store))
    return keyed_ids(key, build, lineage.roots if lineage is not None else None)


def release_run(
    settings: ReleaseSettings,
    clusters: list[Cluster],
    conversation_ids: list[str],
    private_path: str,
    released_path: str,
    run: RunRow,
    build_id: str | None = None,
    n_processed: int | None = None,
) -> Released:
    """Gate this run's trees and add the result, with `run` (plus the gate's LLM use),
    to the released store.

    Released ids are a keyed hash (the key derived from the pseudonym key) of each
    cluster's lineage root in the build `build_id` (the build the trees belong to: this
    run's id for a full build; `clio.lineage`), and the gate
    carries every change below the thresholds against the latest earlier release of
    these ids in the released store (rules 6 and 7 of `clio.gate`). `n_processed` is the
    number of conversations this run processed (all of them when not given)."""
    with PrivateStore(private_path) as store:
        key = release_id_key(hmac_key(settings.scrub, store))
        build = build_id if build_id is not None else run.run_id
        lineage = store.build_lineage(build)
        public_id = public_ids(store, settings.scrub, build)
        ids = [public_id(c) for c in clusters]
        previous = previous_release(Path(released_path), ids, run.run_id)
        before = previous_run(Path(released_path), run.run_id)
        previous_public_id = None
        if build == run.run_id and lineage is not None and lineage.previous_build_id:
            earlier = store.build_lineage(lineage.previous_build_id)
            previous_public_id = keyed_ids(
                key, lineage.previous_build_id, earlier.roots if earlier is not None else None
            )
        sizes_before = (
            released_sizes(Path(released_path), before.run_id) if before is not None else {}
        )
        candidates = lineage_candidates(
            clusters,
            public_id,
            lineage if build == run.run_id else None,
            previous_public_id,
            before.run_id if before is not None else None,
            sizes_before,
        )
        users = store.user_pseudonyms(conversation_ids)
        facet_values = facet_values_by_conversation(users, store.get_facets(conversation_ids))
        # The auditor and the renamer share the run's LLM cache, so a re-run asks nothing again.
        llm = llm_for(settings.llm, store) if settings.privacy.audit_released_text else None
        result = gate_clusters(
            clusters, users, facet_values, settings, llm, public_id, previous, candidates
        )
    usage = usage_of(llm)
    run = replace(
        run,
        llm_calls=run.llm_calls + usage["calls"],
        llm_cached_calls=run.llm_cached_calls + usage["cached_calls"],
        input_tokens=run.input_tokens + usage["input_tokens"],
        output_tokens=run.output_tokens + usage["output_tokens"],
    )
    processed = n_processed if n_processed is not None else len(conversation_ids)
    run = protect_run_row(
        run, before, processed, earlier_run_sizes(Path(released_path), run.run_id)
    )
    dp = result.dp
    if dp is not None:
        with PrivateStore(private_path) as store:
            dp = {**dp, **record_spend(store, run.run_id, dp).as_manifest(settings.privacy)}
    write_release(Path(released_path), run, result)
    summary = release_summary(len(clusters), result)
    summary["lineage"] = lineage_summary(
        result, before.run_id if before is not None else None, sizes_before
    )
    return Released(summary, dp, usage)
