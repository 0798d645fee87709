"""Rules 1 to 3 of the gate: thresholds, complementary suppression, breakdown cells.

The private cluster tree becomes `Node`s whose membership is rolled up from their
descendants, so a cluster's counts are those an analyst sees; breakdown cells (cluster
x facet value) become `Cell`s. Everything here only ever suppresses (never
un-suppresses), so each pass ends, and the order of passes (top-down) makes a
suppression affect only groups visited later.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from clio.config import PrivacyConfig
from clio.gate.reasons import (
    CELL_BELOW_THRESHOLD,
    CELL_COMPLEMENTARY_SUPPRESSION,
    CELL_HIDDEN_ABOVE,
    CLUSTER_BELOW_MIN_CONVERSATIONS,
    CLUSTER_BELOW_MIN_USERS,
    COMPLEMENTARY_SUPPRESSION,
    PARENT_SUPPRESSED,
)
from clio.gate.values import FacetValues, facet_labels
from clio.records import Cluster


@dataclass
class Node:
    """One private cluster with its full membership: own members and every descendant's."""

    cluster: Cluster
    conversations: set[str]
    users: set[str]
    children: list[str] = field(default_factory=list)
    suppressed: bool = False

    @property
    def size(self) -> tuple[int, int, str]:
        return (len(self.conversations), len(self.users), self.cluster.cluster_id)


@dataclass
class Cell:
    """One breakdown cell: the members of a released cluster with one value of a facet."""

    cluster_id: str
    facet: str
    value: str
    conversations: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    suppressed: bool = False

    @property
    def size(self) -> tuple[int, int, str]:
        return (len(self.conversations), len(self.users), self.value)


# (cluster id, facet) -> value -> cell, for every released cluster
Cells = Mapping[tuple[str, str], Mapping[str, Cell]]


def meets(conversations: set[str], users: set[str], config: PrivacyConfig) -> bool:
    """Whether a group is large enough to release: distinct users and conversations."""
    return len(users) >= config.min_users and len(conversations) >= config.min_conversations


def _sum_difference_ok(
    whole: set[str],
    whole_users: set[str],
    shown: Sequence[Node] | Sequence[Cell],
    config: PrivacyConfig,
) -> bool:
    """What an analyst computes from the released figures alone: the whole's count minus
    the sum of the shown groups' counts. Users in two shown groups (and, with overlapping
    memberships, conversations) make it differ from the hidden part, e.g. two siblings
    sharing 2 users give -2: its size must be 0 or releasable, whatever its sign."""
    pairs = (
        (len(whole_users), sum(len(g.users) for g in shown), config.min_users),
        (len(whole), sum(len(g.conversations) for g in shown), config.min_conversations),
    )
    return all(not 0 < abs(total - parts) < threshold for total, parts, threshold in pairs)


def hidden_part_ok(
    whole: set[str],
    whole_users: set[str],
    shown: Sequence[Node] | Sequence[Cell],
    user_of: Mapping[str, str],
    config: PrivacyConfig,
) -> bool:
    """Whether `whole` minus the `shown` groups is empty or a releasable group. With
    nothing shown there is no difference to take."""
    if not shown:
        return True
    if not _sum_difference_ok(whole, whole_users, shown, config):
        return False
    covered: set[str] = set()
    covered_users: set[str] = set()
    for group in shown:
        covered |= group.conversations
        covered_users |= group.users
    hidden = whole - covered
    if not hidden:
        return True
    hidden_users = {user_of[c] for c in hidden}
    if not meets(hidden, hidden_users, config):
        return False
    only_hidden = len(whole_users - covered_users)
    return only_hidden == 0 or only_hidden >= config.min_users


def _protect(
    whole: set[str],
    whole_users: set[str],
    items: Sequence[Node] | Sequence[Cell],
    user_of: Mapping[str, str],
    config: PrivacyConfig,
) -> list:
    """The released items to suppress, smallest first, so that the hidden part is safe."""
    shown = sorted((i for i in items if not i.suppressed), key=lambda i: i.size)
    picks = []
    while shown and not hidden_part_ok(whole, whole_users, shown, user_of, config):
        picks.append(shown.pop(0))
    return picks


# -- the tree -----------------------------------------------------------------


def build_nodes(
    clusters: Sequence[Cluster], conversation_users: Mapping[str, str]
) -> dict[str, Node]:
    """Index the clusters by id, validate the tree, and roll memberships up to the parents."""
    by_id: dict[str, Cluster] = {}
    for cluster in clusters:
        if cluster.cluster_id in by_id:
            raise ValueError(
                f"cluster id {cluster.cluster_id!r} appears twice; cluster ids must be unique "
                "within a run (across facets), since breakdowns refer to clusters by id alone"
            )
        by_id[cluster.cluster_id] = cluster
    for cluster in clusters:
        if cluster.parent_id is None:
            continue
        parent = by_id.get(cluster.parent_id)
        if parent is None:
            raise ValueError(
                f"cluster {cluster.cluster_id!r} names parent {cluster.parent_id!r}, "
                "which is not among the clusters"
            )
        if parent.facet != cluster.facet:
            raise ValueError(
                f"cluster {cluster.cluster_id!r} (facet {cluster.facet!r}) has parent "
                f"{parent.cluster_id!r} in another facet ({parent.facet!r})"
            )
        if parent.level <= cluster.level:
            raise ValueError(
                f"cluster {cluster.cluster_id!r} (level {cluster.level}) has parent "
                f"{parent.cluster_id!r} at level {parent.level}; a parent must be higher"
            )

    members: dict[str, set[str]] = {cid: set(c.member_ids) for cid, c in by_id.items()}
    children: dict[str, list[str]] = defaultdict(list)
    # Lowest levels first, so a child's membership is complete before it rolls up.
    for cluster in sorted(clusters, key=lambda c: (c.level, c.facet, c.cluster_id)):
        if cluster.parent_id is not None:
            members[cluster.parent_id] |= members[cluster.cluster_id]
            children[cluster.parent_id].append(cluster.cluster_id)

    nodes: dict[str, Node] = {}
    n_without_user = 0
    for cid, cluster in by_id.items():
        users = {conversation_users[m] for m in members[cid] if m in conversation_users}
        n_without_user += sum(1 for m in members[cid] if m not in conversation_users)
        nodes[cid] = Node(cluster, members[cid], users, sorted(children[cid]))
    if n_without_user:
        raise ValueError(
            f"{n_without_user} cluster memberships refer to conversations without a user "
            "pseudonym in `conversation_users`; every member needs one to count distinct users"
        )
    return nodes


def top_down(nodes: Mapping[str, Node]) -> list[Node]:
    """The nodes by facet, highest level first: parents before their children."""
    return sorted(
        nodes.values(), key=lambda n: (n.cluster.facet, -n.cluster.level, n.cluster.cluster_id)
    )


def _suppress(node: Node, reason: str, counts: Counter[str]) -> None:
    if not node.suppressed:
        node.suppressed = True
        counts[reason] += 1


def _suppress_descendants(node: Node, nodes: Mapping[str, Node], counts: Counter[str]) -> None:
    for child_id in node.children:
        child = nodes[child_id]
        _suppress(child, PARENT_SUPPRESSED, counts)
        _suppress_descendants(child, nodes, counts)


def sibling_groups(nodes: Mapping[str, Node]) -> list[tuple[Node | None, list[Node]]]:
    """(parent, children) for every parent, and (None, top level) for every facet's root,
    top-down."""
    roots: dict[str, list[Node]] = defaultdict(list)
    for node in nodes.values():
        if node.cluster.parent_id is None:
            roots[node.cluster.facet].append(node)
    groups: list[tuple[Node | None, list[Node]]] = [
        (None, sorted(roots[facet], key=lambda n: n.cluster.cluster_id)) for facet in sorted(roots)
    ]
    for node in top_down(nodes):
        if node.children:
            groups.append((node, [nodes[c] for c in node.children]))
    return groups


def group_whole(parent: Node | None, children: Sequence[Node]) -> tuple[set[str], set[str]]:
    """The conversations and users the children are part of: the parent's, or for a facet's
    root (whose total `share` reveals) the union of the top level."""
    if parent is not None:
        return parent.conversations, parent.users
    whole: set[str] = set()
    users: set[str] = set()
    for child in children:
        whole |= child.conversations
        users |= child.users
    return whole, users


def suppress_clusters(
    nodes: Mapping[str, Node],
    user_of: Mapping[str, str],
    config: PrivacyConfig,
    counts: Counter[str],
) -> None:
    """Rules 1 and 2: suppress the clusters below the thresholds, then, top-down, the
    smallest released children until every hidden part is safe, with their descendants."""
    for node in nodes.values():
        if len(node.users) < config.min_users:
            _suppress(node, CLUSTER_BELOW_MIN_USERS, counts)
        elif len(node.conversations) < config.min_conversations:
            _suppress(node, CLUSTER_BELOW_MIN_CONVERSATIONS, counts)
    # A child's membership is a subset of its parent's, so the children of a
    # suppressed cluster are below the thresholds already; `check_invariants` asserts it.
    # Top-down: a suppression only ever affects the groups below it, visited later.
    for parent, children in sibling_groups(nodes):
        if parent is not None and parent.suppressed:
            continue
        whole, whole_users = group_whole(parent, children)
        for pick in _protect(whole, whole_users, children, user_of, config):
            _suppress(pick, COMPLEMENTARY_SUPPRESSION, counts)
            _suppress_descendants(pick, nodes, counts)


# -- breakdown cells --------------------------------------------------------------


def build_cells(
    released: Sequence[Node],
    breakdown_facets: Sequence[str],
    facet_values: FacetValues,
    user_of: Mapping[str, str],
) -> dict[tuple[str, str], dict[str, Cell]]:
    """(cluster id, facet) -> value -> cell, for every released cluster."""
    cells: dict[tuple[str, str], dict[str, Cell]] = {}
    for facet in breakdown_facets:
        labels = facet_labels(facet_values, facet)
        for node in released:
            cid = node.cluster.cluster_id
            by_value: dict[str, Cell] = {}
            for member in node.conversations:
                for value in labels.get(member, ()):
                    cell = by_value.get(value) or by_value.setdefault(
                        value, Cell(cid, facet, value)
                    )
                    cell.conversations.add(member)
                    cell.users.add(user_of[member])
            cells[(cid, facet)] = dict(sorted(by_value.items()))
    return cells


def all_cells(cells: Cells) -> list[Cell]:
    """Every cell in a fixed order: by cluster id and facet, then by value."""
    return [cell for key in sorted(cells) for cell in cells[key].values()]


def suppress_small_cells(cells: Cells, config: PrivacyConfig, counts: Counter[str]) -> None:
    """Rule 3's thresholds: a cell needs as many users and conversations as a cluster."""
    for cell in all_cells(cells):
        if not meets(cell.conversations, cell.users, config):
            cell.suppressed = True
            counts[CELL_BELOW_THRESHOLD] += 1


def protect_cells(
    nodes: Mapping[str, Node],
    released: Sequence[Node],
    cells: Cells,
    user_of: Mapping[str, str],
    config: PrivacyConfig,
    counts: Counter[str],
) -> None:
    """Suppress cells until, for every released cluster and facet, the hidden part within
    the cluster and every parent cell's hidden part across levels is safe, and a value
    hidden in a cluster is hidden below it. Suppressing only, so this ends."""
    facets = sorted({facet for _, facet in cells})
    changed = True
    while changed:
        changed = False
        for facet in facets:
            for node in released:  # top-down
                cid = node.cluster.cluster_id
                own = cells[(cid, facet)]
                parent_id = node.cluster.parent_id
                if parent_id is not None:
                    above = cells[(parent_id, facet)]
                    for value, cell in own.items():
                        hidden_above = value not in above or above[value].suppressed
                        if not cell.suppressed and hidden_above:
                            cell.suppressed = True
                            counts[CELL_HIDDEN_ABOVE] += 1
                            changed = True
                for pick in _protect(
                    node.conversations, node.users, list(own.values()), user_of, config
                ):
                    pick.suppressed = True
                    counts[CELL_COMPLEMENTARY_SUPPRESSION] += 1
                    changed = True
                children = [nodes[c] for c in node.children if not nodes[c].suppressed]
                for value, cell in own.items():
                    if cell.suppressed:
                        continue
                    below = [
                        cells[(child.cluster.cluster_id, facet)].get(value) for child in children
                    ]
                    below_cells = [c for c in below if c is not None]
                    for pick in _protect(
                        cell.conversations, cell.users, below_cells, user_of, config
                    ):
                        pick.suppressed = True
                        counts[CELL_COMPLEMENTARY_SUPPRESSION] += 1
                        changed = True
