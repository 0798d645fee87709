"""The gate's self-check: the release rules re-checked on the true groups at the end.

The steps before this one each enforce part of rules 1 to 3, in an order that makes
the whole hold; this check does not trust that order and verifies every rule on what
is about to be released, so a bug in a step fails the run instead of leaking a group.
"""

from __future__ import annotations

from collections.abc import Sequence

from clio.gate.state import GateState
from clio.gate.thresholds import group_whole, hidden_part_ok, meets, sibling_groups
from clio.released import ReleasedBreakdown, ReleasedCluster


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
