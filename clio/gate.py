"""The privacy gate: the single choke point between private clusters and the release.

`apply_gate` turns the private cluster trees (which hold conversation ids) into
aggregate rows that may leave the pipeline (`GateResult`), and `write_release`
accepts nothing else. The rules, in order:

1. Thresholds. Every cluster, at every level of every facet's tree, needs at
   least `min_users` DISTINCT user pseudonyms and `min_conversations`
   conversations, counted over its full membership (its own members plus all
   descendants', so suppressed children roll up into their parent). One heavy
   user can never make a cluster releasable.
2. A cluster whose parent is suppressed is suppressed too (nothing is ever
   re-parented), so every released cluster's parent is released.
3. Subtraction protection, simple form: when a released parent has exactly one
   suppressed child and at least one released child, parent minus siblings
   would reveal the suppressed child's counts, so the smallest released
   sibling is suppressed too (complementary suppression), repeated until no
   released parent has exactly one suppressed child. The facet's root counts
   as a released parent of the top-level clusters, because `share` reveals the
   facet's total. Breakdown cells of one cluster x facet get the same rule.
   Not yet covered (full complementary suppression, later): differences
   across levels of breakdown cells (a parent's cell minus its released
   children's cells) and overlaps between distinct-user counts. The pair-wise
   rule lives in `_complementary_pick` so a full solver can replace it.
4. Text. Every released name, description and keyword passes `text_check`; a
   failing name becomes "(withheld)", a failing description "", a failing
   keyword is dropped, and a breakdown value that fails suppresses its cell.

The result carries suppression counts by reason only, never names or ids.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from clio.config import PrivacyConfig
from clio.records import Cluster

log = logging.getLogger("clio.gate")

TextCheck = Callable[[str], bool]  # True when a text is safe to release

WITHHELD_NAME = "(withheld)"

# Suppression reasons (keys of `GateResult.suppressed`).
CLUSTER_BELOW_MIN_USERS = "cluster_below_min_users"
CLUSTER_BELOW_MIN_CONVERSATIONS = "cluster_below_min_conversations"
PARENT_SUPPRESSED = "parent_suppressed"
COMPLEMENTARY_SUPPRESSION = "complementary_suppression"
CELL_BELOW_THRESHOLD = "cell_below_threshold"
CELL_VALUE_WITHHELD_PII = "cell_value_withheld_pii"
CELL_COMPLEMENTARY_SUPPRESSION = "cell_complementary_suppression"
TEXT_WITHHELD_PII = "text_withheld_pii"
KEYWORD_WITHHELD_PII = "keyword_withheld_pii"


@dataclass(frozen=True)
class ReleasedCluster:
    facet: str
    level: int
    cluster_id: str
    parent_id: str | None
    name: str
    description: str
    keywords: list[str]
    n_users: int
    n_conversations: int
    share: float
    concern_mean: float | None
    x: float | None
    y: float | None


@dataclass(frozen=True)
class ReleasedBreakdown:
    cluster_id: str
    facet: str
    value: str
    n_users: int
    n_conversations: int


@dataclass
class GateResult:
    clusters: list[ReleasedCluster]
    breakdowns: list[ReleasedBreakdown]
    suppressed: dict[str, int] = field(default_factory=dict)  # counts by reason, only > 0


@dataclass
class _Node:
    cluster: Cluster
    members: set[str]  # full membership: own members and every descendant's
    n_users: int
    children: list[str] = field(default_factory=list)
    suppressed: bool = False

    @property
    def size(self) -> tuple[int, int, str]:
        return (self.n_conversations, self.n_users, self.cluster.cluster_id)

    @property
    def n_conversations(self) -> int:
        return len(self.members)


@dataclass
class _Cell:
    value: str
    users: set[str] = field(default_factory=set)
    conversations: set[str] = field(default_factory=set)
    suppressed: bool = False

    @property
    def size(self) -> tuple[int, int, str]:
        return (len(self.conversations), len(self.users), self.value)


T = TypeVar("T")


def apply_gate(
    clusters: Sequence[Cluster],
    conversation_users: Mapping[str, str],
    facet_values: Mapping[str, Mapping[str, object]],
    config: PrivacyConfig,
    *,
    breakdown_facets: Sequence[str],
    concern_facet: str | None = "concerning",
    text_check: TextCheck | None = None,
    total_conversations: Mapping[str, int] | None = None,
) -> GateResult:
    """Decide what of `clusters` may be released, and compute the released rows.

    `conversation_users` maps conversation id -> user pseudonym (every member
    must have one); `facet_values` maps conversation id -> {facet -> value}.
    `total_conversations` gives, per clustered facet, the run's conversations
    with that facet (the denominator of `share`); when absent it is the number
    of conversations with a value for the facet, and never less than the
    facet's clustered conversations.
    """
    nodes = _build_nodes(clusters, conversation_users)
    text_check = _remembered(text_check) if text_check is not None else None
    suppressed: Counter[str] = Counter()
    min_users, min_conversations = config.min_users, config.min_conversations

    for node in nodes.values():
        if node.n_users < min_users:
            _suppress(node, CLUSTER_BELOW_MIN_USERS, suppressed)
        elif node.n_conversations < min_conversations:
            _suppress(node, CLUSTER_BELOW_MIN_CONVERSATIONS, suppressed)
    # A child's membership is a subset of its parent's, so the children of a
    # suppressed cluster are suppressed already; `_check_invariants` asserts it.
    _complementary_suppression(nodes, suppressed)

    totals = _facet_totals(nodes, facet_values, total_conversations)
    scores = {} if concern_facet is None else _scores(facet_values, concern_facet)
    released = [
        _release_cluster(node, totals, scores, text_check, suppressed)
        for node in nodes.values()
        if not node.suppressed
    ]
    released.sort(key=lambda c: (c.facet, c.level, c.cluster_id))

    breakdowns: list[ReleasedBreakdown] = []
    for facet in breakdown_facets:
        labels = _labels(facet_values, facet)
        for cluster in released:
            breakdowns.extend(
                _release_cells(
                    nodes[cluster.cluster_id],
                    facet,
                    labels,
                    conversation_users,
                    config,
                    text_check,
                    suppressed,
                )
            )
    breakdowns.sort(key=lambda b: (b.cluster_id, b.facet, b.value))

    _check_invariants(nodes, released, breakdowns, config)
    result = GateResult(released, breakdowns, {k: v for k, v in sorted(suppressed.items()) if v})
    log.info(
        f"gate: released {len(released)} of {len(nodes)} clusters and "
        f"{len(breakdowns)} breakdown cells; suppressed {result.suppressed}"
    )
    return result


# -- the tree -----------------------------------------------------------------


def _build_nodes(
    clusters: Sequence[Cluster], conversation_users: Mapping[str, str]
) -> dict[str, _Node]:
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

    nodes: dict[str, _Node] = {}
    n_without_user = 0
    for cid, cluster in by_id.items():
        users = {conversation_users[m] for m in members[cid] if m in conversation_users}
        n_without_user += sum(1 for m in members[cid] if m not in conversation_users)
        nodes[cid] = _Node(cluster, members[cid], len(users), sorted(children[cid]))
    if n_without_user:
        raise ValueError(
            f"{n_without_user} cluster memberships refer to conversations without a user "
            "pseudonym in `conversation_users`; every member needs one to count distinct users"
        )
    return nodes


def _top_down(nodes: Mapping[str, _Node]) -> list[_Node]:
    return sorted(
        nodes.values(), key=lambda n: (n.cluster.facet, -n.cluster.level, n.cluster.cluster_id)
    )


def _suppress(node: _Node, reason: str, counts: Counter[str]) -> None:
    if not node.suppressed:
        node.suppressed = True
        counts[reason] += 1


def _suppress_descendants(node: _Node, nodes: Mapping[str, _Node], counts: Counter[str]) -> None:
    for child_id in node.children:
        child = nodes[child_id]
        _suppress(child, PARENT_SUPPRESSED, counts)
        _suppress_descendants(child, nodes, counts)


def _complementary_pick(
    items: Sequence[T], is_suppressed: Callable[[T], bool], size: Callable[[T], tuple]
) -> T | None:
    """The item to suppress so that a lone suppressed item cannot be found by subtraction.

    Exactly one suppressed item beside released ones: the released total minus
    the released items would reveal it, so the smallest released item goes too.
    """
    hidden = [item for item in items if is_suppressed(item)]
    shown = [item for item in items if not is_suppressed(item)]
    if len(hidden) != 1 or not shown:
        return None
    return min(shown, key=size)


def _sibling_groups(nodes: Mapping[str, _Node]) -> list[tuple[_Node | None, list[_Node]]]:
    """(parent, children) for every parent, and (None, top level) for every facet's root."""
    roots: dict[str, list[_Node]] = defaultdict(list)
    for node in nodes.values():
        if node.cluster.parent_id is None:
            roots[node.cluster.facet].append(node)
    groups: list[tuple[_Node | None, list[_Node]]] = [
        (None, sorted(roots[facet], key=lambda n: n.cluster.cluster_id)) for facet in sorted(roots)
    ]
    for node in _top_down(nodes):
        if node.children:
            groups.append((node, [nodes[c] for c in node.children]))
    return groups


def _complementary_suppression(nodes: Mapping[str, _Node], counts: Counter[str]) -> None:
    groups = _sibling_groups(nodes)
    changed = True
    while changed:
        changed = False
        for parent, children in groups:
            if parent is not None and parent.suppressed:
                continue
            pick = _complementary_pick(children, lambda n: n.suppressed, lambda n: n.size)
            if pick is not None:
                _suppress(pick, COMPLEMENTARY_SUPPRESSION, counts)
                _suppress_descendants(pick, nodes, counts)
                changed = True


# -- released rows ------------------------------------------------------------


def _facet_totals(
    nodes: Mapping[str, _Node],
    facet_values: Mapping[str, Mapping[str, object]],
    given: Mapping[str, int] | None,
) -> dict[str, int]:
    clustered: dict[str, set[str]] = defaultdict(set)
    for node in nodes.values():
        if node.cluster.parent_id is None:
            clustered[node.cluster.facet] |= node.members
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
            with_value = sum(1 for values in facet_values.values() if _present(values.get(facet)))
            total = max(with_value, len(members))
        totals[facet] = total
    return totals


def _release_cluster(
    node: _Node,
    totals: Mapping[str, int],
    scores: Mapping[str, float],
    text_check: TextCheck | None,
    counts: Counter[str],
) -> ReleasedCluster:
    cluster = node.cluster
    name, description = cluster.name, cluster.description
    if not _safe(name, text_check):
        name = WITHHELD_NAME
        counts[TEXT_WITHHELD_PII] += 1
    if not _safe(description, text_check):
        description = ""
        counts[TEXT_WITHHELD_PII] += 1
    keywords: list[str] = []
    for keyword in dict.fromkeys(k.strip() for k in cluster.keywords):
        if not keyword:
            continue
        if _safe(keyword, text_check):
            keywords.append(keyword)
        else:
            counts[KEYWORD_WITHHELD_PII] += 1

    member_scores = [scores[m] for m in node.members if m in scores]
    concern_mean = sum(member_scores) / len(member_scores) if member_scores else None

    total = totals[cluster.facet]
    return ReleasedCluster(
        facet=cluster.facet,
        level=cluster.level,
        cluster_id=cluster.cluster_id,
        parent_id=cluster.parent_id,
        name=name,
        description=description,
        keywords=keywords,
        n_users=node.n_users,
        n_conversations=node.n_conversations,
        share=node.n_conversations / total if total else 0.0,
        concern_mean=concern_mean,
        x=cluster.x,
        y=cluster.y,
    )


def _release_cells(
    node: _Node,
    facet: str,
    labels: Mapping[str, list[str]],
    conversation_users: Mapping[str, str],
    config: PrivacyConfig,
    text_check: TextCheck | None,
    counts: Counter[str],
) -> list[ReleasedBreakdown]:
    cells: dict[str, _Cell] = {}
    for member in node.members:
        for value in labels.get(member, ()):
            cell = cells.get(value) or cells.setdefault(value, _Cell(value))
            cell.users.add(conversation_users[member])
            cell.conversations.add(member)
    ordered = [cells[v] for v in sorted(cells)]
    for cell in ordered:
        if len(cell.users) < config.min_users or len(cell.conversations) < config.min_conversations:
            cell.suppressed = True
            counts[CELL_BELOW_THRESHOLD] += 1
        elif not _safe(cell.value, text_check):
            cell.suppressed = True
            counts[CELL_VALUE_WITHHELD_PII] += 1
    pick = _complementary_pick(ordered, lambda c: c.suppressed, lambda c: c.size)
    if pick is not None:
        pick.suppressed = True
        counts[CELL_COMPLEMENTARY_SUPPRESSION] += 1
    return [
        ReleasedBreakdown(
            cluster_id=node.cluster.cluster_id,
            facet=facet,
            value=cell.value,
            n_users=len(cell.users),
            n_conversations=len(cell.conversations),
        )
        for cell in ordered
        if not cell.suppressed
    ]


def _check_invariants(
    nodes: Mapping[str, _Node],
    clusters: Sequence[ReleasedCluster],
    breakdowns: Sequence[ReleasedBreakdown],
    config: PrivacyConfig,
) -> None:
    """Re-check the release rules on the output; a failure is a bug in this module."""
    released_ids = {c.cluster_id for c in clusters}
    for c in clusters:
        if c.n_users < config.min_users or c.n_conversations < config.min_conversations:
            raise AssertionError(f"gate would release cluster {c.cluster_id!r} below thresholds")
        if c.parent_id is not None and c.parent_id not in released_ids:
            raise AssertionError(
                f"gate would release cluster {c.cluster_id!r} without its parent {c.parent_id!r}"
            )
    for b in breakdowns:
        if b.cluster_id not in released_ids:
            raise AssertionError(f"gate would release cells of unreleased {b.cluster_id!r}")
        if b.n_users < config.min_users or b.n_conversations < config.min_conversations:
            raise AssertionError(f"gate would release a cell of {b.cluster_id!r} below thresholds")
    for parent, children in _sibling_groups(nodes):
        if parent is not None and parent.suppressed:
            continue
        n_hidden = sum(1 for child in children if child.suppressed)
        if n_hidden == 1 and len(children) > 1:
            name = "the root" if parent is None else repr(parent.cluster.cluster_id)
            raise AssertionError(f"gate would leave exactly one suppressed child under {name}")


# -- values -------------------------------------------------------------------


def _remembered(text_check: TextCheck) -> TextCheck:
    """Check each distinct text once: breakdown values such as "en" repeat in every cluster."""
    verdicts: dict[str, bool] = {}

    def check(text: str) -> bool:
        if text not in verdicts:
            verdicts[text] = bool(text_check(text))
        return verdicts[text]

    return check


def _safe(text: str, text_check: TextCheck | None) -> bool:
    return text_check is None or not text or bool(text_check(text))


def _scores(facet_values: Mapping[str, Mapping[str, object]], facet: str) -> dict[str, float]:
    """Conversation id -> valid numeric value of `facet` (conversations without one left out)."""
    scores = {}
    for conversation, values in facet_values.items():
        score = _number(values.get(facet))
        if score is not None:
            scores[conversation] = score
    return scores


def _labels(facet_values: Mapping[str, Mapping[str, object]], facet: str) -> dict[str, list[str]]:
    """Conversation id -> breakdown labels of its value of `facet`."""
    labels = {}
    for conversation, values in facet_values.items():
        found = _value_labels(values.get(facet))
        if found:
            labels[conversation] = found
    return labels


def _present(value: object) -> bool:
    return value is not None and value != "" and value != []


def _number(value: object) -> float | None:
    """A valid numeric facet value (numbers, or numeric strings), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _value_labels(value: object) -> list[str]:
    """The breakdown labels of one facet value: a list gives one label per distinct item."""
    items = value if isinstance(value, list | tuple) else [value]
    labels = []
    for item in items:
        label = _label(item)
        if label and label not in labels:
            labels.append(label)
    return labels


def _label(item: object) -> str | None:
    """A value as released text: 2.0 -> "2", 2.5 -> "2.5", True -> "true"; None when missing."""
    if item is None:
        return None
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, float):
        if not math.isfinite(item):
            return None
        return str(int(item)) if item.is_integer() else repr(item)
    return str(item).strip() or None
