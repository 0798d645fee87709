"""The gate's self-check: the release rules re-checked on the true groups at the end.

The steps before this one each enforce part of rules 1 to 3, in an order that makes
the whole hold; this check does not trust that order and verifies every rule on what
is about to be released, so a bug in a step fails the run instead of leaking a group.
"""

from __future__ import annotations

from collections.abc import Sequence

from clio.config import PrivacyConfig
from clio.gate.state import GateState
from clio.gate.text import cluster_rare_words, keyword_users
from clio.gate.thresholds import group_whole, hidden_part_ok, meets, sibling_groups
from clio.released import PreviousRelease, ReleasedBreakdown, ReleasedCluster


def check_invariants(
    state: GateState,
    clusters: Sequence[ReleasedCluster],
    breakdowns: Sequence[ReleasedBreakdown],
) -> None:
    """Re-check the release rules on the true groups; a failure is a bug in the gate."""
    nodes, cells, user_of, config = state.nodes, state.cells, state.user_of, state.config
    released_ids = {c.cluster_id for c in clusters}
    for c in clusters:
        node = nodes[c.cluster_id]
        if node.suppressed or not meets(node.conversations, node.users, config):
            raise AssertionError(f"gate would release cluster {c.cluster_id!r} below thresholds")
        if c.n_users < config.min_users or c.n_conversations < config.min_conversations:
            raise AssertionError(f"gate would release numbers of {c.cluster_id!r} below thresholds")
        if c.parent_id is not None and c.parent_id not in released_ids:
            raise AssertionError(
                f"gate would release cluster {c.cluster_id!r} without its parent {c.parent_id!r}"
            )
        check_k_supported(state, c)
    for b in breakdowns:
        if b.cluster_id not in released_ids:
            raise AssertionError(f"gate would release cells of unreleased {b.cluster_id!r}")
        cell = cells[(b.cluster_id, b.facet)][b.value]
        if not meets(cell.conversations, cell.users, config) or (
            b.n_users < config.min_users or b.n_conversations < config.min_conversations
        ):
            raise AssertionError(f"gate would release a cell of {b.cluster_id!r} below thresholds")
    for parent, children in sibling_groups(nodes):
        if parent is not None and parent.suppressed:
            continue
        whole, whole_users = group_whole(parent, children)
        shown = [c for c in children if not c.suppressed]
        if not hidden_part_ok(whole, whole_users, shown, user_of, config):
            name = "a facet root" if parent is None else repr(parent.cluster.cluster_id)
            raise AssertionError(f"gate would reveal a suppressed part under {name}")
    for (cid, facet), by_value in cells.items():
        node = nodes[cid]
        shown = [c for c in by_value.values() if not c.suppressed]
        if not hidden_part_ok(node.conversations, node.users, shown, user_of, config):
            raise AssertionError(f"gate would reveal suppressed cells of {cid!r}")
        for value, cell in by_value.items():
            if cell.suppressed:
                continue
            parent_id = node.cluster.parent_id
            if parent_id is not None:
                above = cells[(parent_id, facet)].get(value)
                if above is None or above.suppressed:
                    raise AssertionError(f"gate would release a cell of {cid!r} hidden above")
            below = [
                cells[(child, facet)][value]
                for child in node.children
                if (child, facet) in cells and value in cells[(child, facet)]
                and not cells[(child, facet)][value].suppressed
            ]  # fmt: skip
            if not hidden_part_ok(cell.conversations, cell.users, below, user_of, config):
                raise AssertionError(f"gate would reveal suppressed cells below {cid!r}")


def check_released_numbers(
    clusters: Sequence[ReleasedCluster],
    breakdowns: Sequence[ReleasedBreakdown],
    previous: PreviousRelease | None,
    config: PrivacyConfig,
    *,
    exact: bool,
) -> None:
    """Re-check the final figures (after rule 6 carried some): every figure at the
    thresholds, with `exact` (true, not noisy, numbers) a parent at least its children and
    a cluster at least its cells, and every change from the previous release 0 or
    releasable; a failure is a bug in the gate."""
    by_id = {c.cluster_id: c for c in clusters}

    def small(users: int, conversations: int) -> bool:
        return users < config.min_users or conversations < config.min_conversations

    def small_change(now: tuple[int, int], before: tuple[int, int]) -> bool:
        users, conversations = abs(now[0] - before[0]), abs(now[1] - before[1])
        return (users, conversations) != (0, 0) and small(users, conversations)

    for c in clusters:
        if small(c.n_users, c.n_conversations):
            raise AssertionError(f"gate would release {c.cluster_id!r} below thresholds")
        if c.parent_id is not None:
            parent = by_id.get(c.parent_id)
            if parent is None:
                raise AssertionError(f"gate would release {c.cluster_id!r} without its parent")
            if exact and (parent.n_users < c.n_users or parent.n_conversations < c.n_conversations):
                raise AssertionError(f"gate would release {c.cluster_id!r} above its parent")
        old = previous.clusters.get(c.cluster_id) if previous is not None else None
        if old is not None and small_change(
            (c.n_users, c.n_conversations), (old.n_users, old.n_conversations)
        ):
            raise AssertionError(f"gate would release a small change of {c.cluster_id!r}")
    for b in breakdowns:
        cluster = by_id.get(b.cluster_id)
        if cluster is None or small(b.n_users, b.n_conversations):
            raise AssertionError(f"gate would release a cell of {b.cluster_id!r} below thresholds")
        if exact and (cluster.n_users < b.n_users or cluster.n_conversations < b.n_conversations):
            raise AssertionError(f"gate would release a cell of {b.cluster_id!r} above it")
        old_cell = (
            previous.cells.get((b.cluster_id, b.facet, b.value)) if previous is not None else None
        )
        if old_cell is not None and small_change(
            (b.n_users, b.n_conversations), (old_cell.n_users, old_cell.n_conversations)
        ):
            raise AssertionError(f"gate would release a small change of a cell of {b.cluster_id!r}")


def check_k_supported(state: GateState, cluster: ReleasedCluster) -> None:
    """Invariant 8: no word of the name or description was written by only 1 to
    `min_users - 1` users of the cluster, and every keyword by at least `min_users`."""
    node, k = state.nodes[cluster.cluster_id], state.config.min_users
    for text in (cluster.name, cluster.description):
        if cluster_rare_words(text, node, state.tokens, state.user_of, k):
            raise AssertionError(
                f"gate would release a text of {cluster.cluster_id!r} "
                "with a word too few of its users wrote"
            )
    support = keyword_users(
        cluster.keywords, node.conversations, cluster.facet, state.tokens, state.user_of
    )
    if any(len(users) < k for users in support.values()):
        raise AssertionError(
            f"gate would release a keyword of {cluster.cluster_id!r} too few of its users wrote"
        )
