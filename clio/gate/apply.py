"""`apply_gate`: the gate's steps in order, from private clusters to released rows.

The rules are in the package docstring (`clio.gate`); each step lives in its own
module: `thresholds` (rules 1 to 3), `text` (rule 4), `numbers` (the released numbers
and rule 5), `invariants` (the final self-check); `result` seals what it returns.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

from clio.config import PrivacyConfig
from clio.dp import DPConfig
from clio.gate.crossrun import carry_changes
from clio.gate.invariants import check_invariants, check_released_numbers
from clio.gate.numbers import (
    Numbers,
    facet_totals,
    noisy_numbers,
    released_concern,
    true_numbers,
)
from clio.gate.public import (
    LineageCandidate,
    PublicId,
    released_lineage,
    released_positions,
    rename_ids,
)
from clio.gate.result import GateResult, _seal
from clio.gate.state import GateState
from clio.gate.text import (
    Audit,
    ClusterSupport,
    FacetTokens,
    Regenerate,
    TextCheck,
    TextVetter,
    WordSupport,
    final_texts,
    supported_keywords,
    suppress_failing_cells,
    vetted_keywords,
)
from clio.gate.thresholds import (
    Node,
    all_cells,
    build_cells,
    build_nodes,
    protect_cells,
    suppress_clusters,
    suppress_small_cells,
    top_down,
)
from clio.gate.values import FacetValues, facet_scores
from clio.records import Cluster
from clio.released import (
    CONCERN_FACET,
    PreviousRelease,
    ReleasedBreakdown,
    ReleasedCluster,
    facet_total,
)

log = logging.getLogger("clio.gate")


def apply_gate(
    clusters: Sequence[Cluster],
    conversation_users: Mapping[str, str],
    facet_values: FacetValues,
    config: PrivacyConfig,
    *,
    breakdown_facets: Sequence[str],
    concern_facet: str | None = CONCERN_FACET,
    text_check: TextCheck | None = None,
    audit: Audit | None = None,
    regenerate: Regenerate | None = None,
    total_conversations: Mapping[str, int] | None = None,
    seed: int = 0,
    public_id: PublicId | None = None,
    previous: PreviousRelease | None = None,
    lineage: Sequence[LineageCandidate] = (),
) -> GateResult:
    """Decide what of `clusters` may be released, and compute the released rows.

    `conversation_users` maps conversation id -> user pseudonym (every member
    must have one); `facet_values` maps conversation id -> {facet -> value}; its
    texts are what keywords and rare words are counted in. `text_check` is the
    scrubber re-scan, `audit` the LLM privacy auditor (`clio.audit.audit_texts`),
    `regenerate` renames clusters from keywords (`clio.audit.KeywordRenamer`);
    any of them may be None (that check is skipped; `text_checks` records it).
    `total_conversations` gives, per clustered facet, the run's conversations
    with that facet (the denominator of `share`); when absent it is the number
    of conversations with a value for the facet, and never less than the
    facet's clustered conversations. `seed` picks which conversations of a
    heavy user count under differential privacy. `public_id` gives each cluster its
    released id (rule 7; `clio.gate.public.keyed_ids`; without it the private ids are
    kept, which only tests do). `previous` is what earlier runs released of these ids
    (rule 6, `clio.released.previous_release`); without it there is nothing to carry.
    `lineage` are the links to the previous run's released clusters that may be released
    (`clio.gate.public.released_lineage`: only links of clusters released now).
    """
    nodes = build_nodes(clusters, conversation_users)
    suppressed: Counter[str] = Counter()
    suppress_clusters(nodes, conversation_users, config, suppressed)
    released = [n for n in top_down(nodes) if not n.suppressed]
    cells = build_cells(released, breakdown_facets, facet_values, conversation_users)
    suppress_small_cells(cells, config, suppressed)
    state = GateState(
        user_of=conversation_users,
        facet_values=facet_values,
        breakdown_facets=breakdown_facets,
        config=config,
        nodes=nodes,
        released=released,
        cells=cells,
        tokens=FacetTokens(facet_values),
        suppressed=suppressed,
    )

    words = WordSupport(facet_values, conversation_users, config.min_users)
    vetter = TextVetter(
        words, text_check, audit, config, audit_requested=config.audit_released_text
    )
    keywords = {
        n.cluster.cluster_id: supported_keywords(
            n, state.tokens, conversation_users, config, suppressed
        )
        for n in released
    }
    vetter.vet(
        [t for n in released for t in (n.cluster.name, n.cluster.description)]
        + [k for kws in keywords.values() for k in kws]
        + [c.value for c in all_cells(cells) if not c.suppressed]
    )
    suppress_failing_cells(cells, vetter, suppressed)
    protect_cells(nodes, released, cells, conversation_users, config, suppressed)
    keywords = vetted_keywords(keywords, vetter, suppressed)
    support = ClusterSupport(state.tokens, conversation_users, config.min_users, vetter.counts)
    texts = final_texts(released, keywords, vetter, support, regenerate, suppressed)

    totals = facet_totals(nodes, facet_values, total_conversations)
    scores = {} if concern_facet is None else facet_scores(facet_values, concern_facet)
    dp_config = DPConfig.from_privacy(config, seed)
    numbers = true_numbers(released, cells, totals)
    dp_report = None
    if dp_config is not None:
        numbers, keywords, dp_report = noisy_numbers(state, keywords, scores, dp_config)

    rows = [_cluster_row(n, texts, keywords, numbers) for n in released]
    rows.sort(key=lambda c: (c.facet, c.level, c.cluster_id))
    breakdowns = [
        ReleasedBreakdown(c.cluster_id, c.facet, c.value, *numbers.cells[id(c)])
        for c in all_cells(cells)
        if not c.suppressed
    ]
    breakdowns.sort(key=lambda b: (b.cluster_id, b.facet, b.value))

    check_invariants(state, rows, breakdowns)
    base_positions = {
        n.cluster.cluster_id: (n.cluster.x, n.cluster.y)
        for n in nodes.values()
        if n.cluster.level == 0 and n.cluster.x is not None and n.cluster.y is not None
    }
    if public_id is not None:
        private = [n.cluster for n in nodes.values()]
        ids = {c.cluster_id: public_id(c) for c in private}
        base_positions = {ids[cid]: p for cid, p in base_positions.items()}
        rows, breakdowns = rename_ids(private, rows, breakdowns, public_id)
    rows, breakdowns = _final_rows(
        rows, breakdowns, previous, config, suppressed, base_positions,
        concern_facet if dp_report is None else None,
    )  # fmt: skip
    check_released_numbers(rows, breakdowns, previous, config, exact=dp_report is None)
    links = released_lineage(lineage, [n.cluster for n in nodes.values()], rows, public_id, config)
    result = _seal(
        GateResult(
            rows,
            breakdowns,
            {k: v for k, v in sorted(suppressed.items()) if v},
            dict(sorted(vetter.counts.items())),
            dp_report.as_manifest() if dp_report is not None else None,
            links,
        )
    )
    log.info(
        f"gate: released {len(rows)} of {len(nodes)} clusters and {len(breakdowns)} breakdown "
        f"cells; suppressed {result.suppressed}; text checks {result.text_checks}"
    )
    return result


def _final_rows(
    rows: list[ReleasedCluster],
    breakdowns: list[ReleasedBreakdown],
    previous: PreviousRelease | None,
    config: PrivacyConfig,
    suppressed: Counter[str],
    base_positions: Mapping[str, tuple[float, float]],
    concern_facet: str | None,
) -> tuple[list[ReleasedCluster], list[ReleasedBreakdown]]:
    """Rules 6 and 7 and the numbers derived from the final figures: the changes carried
    (`clio.gate.crossrun`), `share` over the facet's total (carried with it), the mean
    concern from the released cells (unless DP noised it), and positions from the
    released clusters (`clio.gate.public`)."""
    if previous is not None:
        rows, breakdowns, totals = carry_changes(rows, breakdowns, previous, config, suppressed)
    else:
        totals = {c.facet: facet_total(rows, c.facet) for c in rows}
    concern = released_concern(breakdowns, concern_facet) if concern_facet is not None else None
    final = []
    for c in rows:
        total = totals.get(c.facet)
        share = min(1.0, c.n_conversations / total) if total else c.share
        mean = c.concern_mean if concern is None else concern.get(c.cluster_id)
        final.append(replace(c, share=share, concern_mean=mean))
    final = released_positions(final, base_positions)
    final.sort(key=lambda c: (c.facet, c.level, c.cluster_id))
    breakdowns.sort(key=lambda b: (b.cluster_id, b.facet, b.value))
    return final, breakdowns


def _cluster_row(
    node: Node,
    texts: Mapping[str, tuple[str, str]],
    keywords: Mapping[str, list[str]],
    numbers: Numbers,
) -> ReleasedCluster:
    cluster = node.cluster
    name, description = texts[cluster.cluster_id]
    n_users, n_conversations, share, concern_mean = numbers.clusters[cluster.cluster_id]
    return ReleasedCluster(
        facet=cluster.facet,
        level=cluster.level,
        cluster_id=cluster.cluster_id,
        parent_id=cluster.parent_id,
        name=name,
        description=description,
        keywords=list(keywords[cluster.cluster_id]),
        n_users=n_users,
        n_conversations=n_conversations,
        share=share,
        concern_mean=concern_mean,
        x=cluster.x,
        y=cluster.y,
    )
