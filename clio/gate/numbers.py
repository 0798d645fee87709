"""The numbers the gate releases: true counts, or under rule 5 differentially private ones.

Rules 1 to 3 decide which groups are released on their true counts; this module only
computes what is shown for them. Without DP that is the true number of users and
conversations, the share of the facet's conversations and the mean concern score.
With DP (`clio.dp`) each conversation's contribution is bounded first, the counts and
concern sums get OpenDP noise calibrated to those bounds, the results are clamped to
the thresholds (post-processing, free under DP), and keywords must also pass OpenDP's
noisy selection.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from clio.dp import (
    CONCERN_SHARE,
    COUNTS_SHARE,
    KEYWORDS_SHARE,
    DPConfig,
    DPReport,
    bounded_conversations,
    concern_sensitivity,
    count_sensitivity,
    noisy_counts,
    noisy_sums,
    rows_per_user,
    select_keys,
)
from clio.gate.reasons import KEYWORD_NOT_SELECTED_DP
from clio.gate.state import GateState
from clio.gate.text import keyword_users
from clio.gate.thresholds import Cells, Node, all_cells
from clio.gate.values import FacetValues, as_number, facet_labels, is_present
from clio.released import ReleasedBreakdown


@dataclass
class Numbers:
    """The released numbers of every released cluster and open cell."""

    # cluster id -> users, conversations, share, concern
    clusters: dict[str, tuple[int, int, float, float | None]]
    cells: dict[int, tuple[int, int]]  # id(cell) -> users, conversations


def facet_totals(
    nodes: Mapping[str, Node], facet_values: FacetValues, given: Mapping[str, int] | None
) -> dict[str, int]:
    """Facet -> the conversations `share` is a part of: `given`, else those with a value
    for the facet, and never fewer than the facet's clustered conversations."""
    clustered: dict[str, set[str]] = defaultdict(set)
    for node in nodes.values():
        if node.cluster.parent_id is None:
            clustered[node.cluster.facet] |= node.conversations
    totals: dict[str, int] = {}
    for facet, members in clustered.items():
        if given is not None and facet in given:
            total = given[facet]
            if total < len(members):
                raise ValueError(
                    f"total_conversations[{facet!r}] = {total} is less than the "
                    f"{len(members)} conversations in the facet's clusters"
                )
        else:
            with_value = sum(1 for values in facet_values.values() if is_present(values.get(facet)))
            total = max(with_value, len(members))
        totals[facet] = total
    return totals


def true_numbers(released: Sequence[Node], cells: Cells, totals: Mapping[str, int]) -> Numbers:
    """The exact numbers of the released groups (DP off)."""
    clusters = {}
    for node in released:
        total = totals[node.cluster.facet]
        n = len(node.conversations)
        clusters[node.cluster.cluster_id] = (
            len(node.users),
            n,
            n / total if total else 0.0,
            None,  # from the released cells, once they are final (`released_concern`)
        )
    cell_numbers = {
        id(c): (len(c.users), len(c.conversations)) for c in all_cells(cells) if not c.suppressed
    }
    return Numbers(clusters, cell_numbers)


def released_concern(
    breakdowns: Sequence[ReleasedBreakdown], concern_facet: str
) -> dict[str, float | None]:
    """Cluster id -> mean concern over its RELEASED cells of `concern_facet`, each cell's
    score weighted by its conversations (None without a released, numeric cell).

    The exact mean over all members, released beside a breakdown whose small cells are
    suppressed, gives the suppressed cells' sum (30 conversations, cells 1:12, 2:8, 3:5
    released, mean 2.1333: the hidden 5 sum to 21, so one of them is a 5). A mean of the
    released cells is a function of released rows, so it reveals nothing they do not."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for cell in breakdowns:
        score = as_number(cell.value) if cell.facet == concern_facet else None
        if score is None:
            continue
        total = sums[cell.cluster_id]
        total[0] += score * cell.n_conversations
        total[1] += cell.n_conversations
    return {cid: s / n for cid, (s, n) in sums.items() if n > 0}


def noisy_numbers(
    state: GateState,
    keywords: Mapping[str, list[str]],
    scores: Mapping[str, float],
    dp: DPConfig,
) -> tuple[Numbers, dict[str, list[str]], DPReport]:
    """Released numbers and keywords under differential privacy (see `clio.dp`)."""
    nodes, released, user_of, config = state.nodes, state.released, state.user_of, state.config
    report = DPReport(dp)
    kept = bounded_conversations(user_of, dp.max_conversations_per_user, dp.seed)
    bound = dp.max_values_per_conversation
    # Each bounded conversation counts in at most `bound` clusters per (facet, level).
    in_clusters: dict[tuple[str, int, str], list[str]] = defaultdict(list)
    for node in sorted(nodes.values(), key=lambda n: n.cluster.cluster_id):
        for member in node.conversations & kept:
            in_clusters[(node.cluster.facet, node.cluster.level, member)].append(
                node.cluster.cluster_id
            )
    members: dict[str, set[str]] = defaultdict(set)
    for (_, _, member), cluster_ids in in_clusters.items():
        for cid in cluster_ids[:bound]:
            members[cid].add(member)
    n_levels = len({(n.cluster.facet, n.cluster.level) for n in nodes.values()})
    facets = sorted({n.cluster.facet for n in nodes.values()})

    def users(conversations: Iterable[str]) -> int:
        return len({user_of[c] for c in conversations})

    open_cells = [c for c in all_cells(state.cells) if not c.suppressed]
    labels = {facet: facet_labels(state.facet_values, facet) for facet in state.breakdown_facets}
    exact: dict[tuple[str, ...], int] = {}
    for node in released:
        cid = node.cluster.cluster_id
        exact[("cluster", cid, "users")] = users(members[cid])
        exact[("cluster", cid, "conversations")] = len(members[cid])
    for cell in open_cells:
        inside = {
            m
            for m in members[cell.cluster_id]
            if cell.value in labels[cell.facet].get(m, [])[:bound]
        }
        exact[("cell", cell.cluster_id, cell.facet, cell.value, "users")] = users(inside)
        exact[("cell", cell.cluster_id, cell.facet, cell.value, "conversations")] = len(inside)
    for facet in facets:
        tops = [
            n for n in nodes.values() if n.cluster.facet == facet and n.cluster.parent_id is None
        ]
        exact[("total", facet)] = len(set().union(*(members[n.cluster.cluster_id] for n in tops)))
    sensitivity = count_sensitivity(dp, n_levels, len(state.breakdown_facets), len(facets))
    noisy, spent = noisy_counts(exact, sensitivity, dp.epsilon * COUNTS_SHARE)
    report.spent.append(spent)

    low, high = dp.concern_range
    sums: dict[tuple[str, ...], float] = {}
    for node in released:
        cid = node.cluster.cluster_id
        clamped = [min(high, max(low, scores[m])) for m in members[cid] if m in scores]
        sums[("concern", cid, "sum")] = sum(clamped)
        sums[("concern", cid, "count")] = float(len(clamped))
    noisy_concern: dict[tuple[str, ...], float] = {}
    if scores:
        noisy_concern, spent = noisy_sums(
            sums, concern_sensitivity(dp, n_levels), dp.epsilon * CONCERN_SHARE
        )
        report.spent.append(spent)

    # Post-processing (free under DP): clamp to the thresholds and to consistent values.
    clusters = {}
    for node in released:
        cid = node.cluster.cluster_id
        n_users = max(noisy[("cluster", cid, "users")], config.min_users)
        n_conversations = max(
            noisy[("cluster", cid, "conversations")], n_users, config.min_conversations
        )
        total = max(noisy[("total", node.cluster.facet)], n_conversations)
        concern = None
        if noisy_concern and noisy_concern[("concern", cid, "count")] >= 1:
            mean = noisy_concern[("concern", cid, "sum")] / noisy_concern[("concern", cid, "count")]
            concern = min(high, max(low, mean))
        clusters[cid] = (n_users, n_conversations, n_conversations / total, concern)
    cell_numbers = {}
    for cell in open_cells:
        key = ("cell", cell.cluster_id, cell.facet, cell.value)
        n_users = max(noisy[(*key, "users")], config.min_users)
        n_conversations = max(noisy[(*key, "conversations")], n_users, config.min_conversations)
        cell_numbers[id(cell)] = (n_users, n_conversations)

    candidates: dict[str, int] = {}
    for node in released:
        cid = node.cluster.cluster_id
        support = keyword_users(
            keywords[cid], members[cid], node.cluster.facet, state.tokens, user_of
        )
        for keyword in keywords[cid]:
            candidates[f"{cid}\x1f{keyword}"] = len(support[keyword])
    selected_keywords: dict[str, list[str]] = {cid: [] for cid in keywords}
    if candidates:
        most = max(len(k) for k in keywords.values())
        selected, spent = select_keys(
            candidates, rows_per_user(dp, n_levels) * most, dp.epsilon * KEYWORDS_SHARE, dp.delta
        )
        report.spent.append(spent)
        for cid, words_of_cluster in keywords.items():
            for keyword in words_of_cluster:
                if f"{cid}\x1f{keyword}" in selected:
                    selected_keywords[cid].append(keyword)
                else:
                    state.suppressed[KEYWORD_NOT_SELECTED_DP] += 1
    return Numbers(clusters, cell_numbers), selected_keywords, report
