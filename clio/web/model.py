"""What the pages show, computed from released rows: trees, filters, search, charts, map.

Plain functions over `clio.released` rows, shared by the server's pages
and the exported file's data. `clio/web/static/export.js` mirrors `build_forest` and
`search_clusters` for the exported file; keep them in step.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from clio.released import (
    CONCERN_FACET,
    LANGUAGE_FACET,
    ReleasedBreakdown,
    ReleasedCluster,
)
from clio.web.released import Change

SortKey = Literal["users", "conversations", "concern", "name"]
SORT_KEYS: tuple[SortKey, ...] = ("users", "conversations", "concern", "name")
SORT_LABELS = {
    "users": "Distinct users",
    "conversations": "Conversations",
    "concern": "Concern",
    "name": "Name",
}

CONCERN_LABELS = {1: "minimal", 2: "low", 3: "moderate", 4: "high", 5: "severe"}


def concern_level(mean: float | None) -> int | None:
    """The 1-5 level a mean concern score rounds to (half up), or None if unscored."""
    if mean is None or math.isnan(mean):
        return None
    return min(5, max(1, math.floor(mean + 0.5)))


def format_when(moment: datetime | None) -> str:
    """Release times are naive UTC."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "–"


def concern_text(mean: float | None) -> str:
    level = concern_level(mean)
    if level is None or mean is None:
        return "not scored"
    return f"{mean:.1f} · {CONCERN_LABELS[level]}"


# -- the tree -------------------------------------------------------------------------


@dataclass
class TreeNode:
    cluster: ReleasedCluster
    depth: int
    matches: bool = True  # False: shown only because a descendant matches the filter
    children: list[TreeNode] = field(default_factory=list)


@dataclass(frozen=True)
class TreeFilter:
    sort: SortKey = "users"
    min_users: int = 0
    min_concern: float | None = None

    @property
    def active(self) -> bool:
        return self.min_users > 0 or self.min_concern is not None

    def accepts(self, cluster: ReleasedCluster) -> bool:
        if cluster.n_users < self.min_users:
            return False
        if self.min_concern is None:
            return True
        return cluster.concern_mean is not None and cluster.concern_mean >= self.min_concern


def sort_clusters(clusters: Iterable[ReleasedCluster], key: SortKey) -> list[ReleasedCluster]:
    """Largest (or most concerning) first; name ascending; ties by id so order is stable."""
    if key == "name":
        return sorted(clusters, key=lambda c: (c.name.casefold(), c.cluster_id))
    if key == "conversations":
        return sorted(clusters, key=lambda c: (-c.n_conversations, -c.n_users, c.cluster_id))
    if key == "concern":
        return sorted(
            clusters,
            key=lambda c: (
                c.concern_mean is None,
                -(c.concern_mean or 0.0),
                -c.n_users,
                c.cluster_id,
            ),
        )
    return sorted(clusters, key=lambda c: (-c.n_users, -c.n_conversations, c.cluster_id))


def build_forest(
    clusters: Sequence[ReleasedCluster], tree_filter: TreeFilter = TreeFilter()
) -> dict[str, list[TreeNode]]:
    """One tree per facet (facets by name). With a filter, a cluster is kept if it or
    any descendant passes; kept clusters that fail it themselves have `matches=False`."""
    by_parent: dict[str | None, list[ReleasedCluster]] = defaultdict(list)
    ids = {c.cluster_id for c in clusters}
    for cluster in clusters:
        # A parent missing from the release cannot happen (the gate releases parents
        # first); if it did, the cluster is shown at the top rather than lost.
        parent = cluster.parent_id if cluster.parent_id in ids else None
        by_parent[parent].append(cluster)

    def grow(cluster: ReleasedCluster, depth: int) -> TreeNode | None:
        children = [
            node
            for child in sort_clusters(by_parent.get(cluster.cluster_id, []), tree_filter.sort)
            if (node := grow(child, depth + 1)) is not None
        ]
        matches = tree_filter.accepts(cluster)
        if not matches and not children:
            return None
        return TreeNode(cluster, depth, matches, children)

    forest: dict[str, list[TreeNode]] = {}
    for root in sort_clusters(by_parent.get(None, []), tree_filter.sort):
        node = grow(root, 0)
        if node is not None:
            forest.setdefault(root.facet, []).append(node)
    return dict(sorted(forest.items()))


def ancestors(cluster: ReleasedCluster, by_id: dict[str, ReleasedCluster]) -> list[ReleasedCluster]:
    """Parent chain, top first."""
    chain: list[ReleasedCluster] = []
    seen = {cluster.cluster_id}
    parent_id = cluster.parent_id
    while parent_id is not None and parent_id in by_id and parent_id not in seen:
        seen.add(parent_id)
        parent = by_id[parent_id]
        chain.append(parent)
        parent_id = parent.parent_id
    return list(reversed(chain))


# -- search ---------------------------------------------------------------------------


def search_clusters(clusters: Iterable[ReleasedCluster], query: str) -> list[ReleasedCluster]:
    """Clusters whose name, keywords or description contain every word of `query`
    (case-insensitive); name matches first, then keyword, then description matches,
    each by distinct users."""
    words = query.casefold().split()
    if not words:
        return []
    ranked: list[tuple[int, int, str, ReleasedCluster]] = []
    for cluster in clusters:
        name = cluster.name.casefold()
        keywords = " ".join(cluster.keywords).casefold()
        haystack = " ".join((name, keywords, cluster.description.casefold()))
        if not all(word in haystack for word in words):
            continue
        if all(word in name for word in words):
            rank = 0
        elif all(word in name or word in keywords for word in words):
            rank = 1
        else:
            rank = 2
        ranked.append((rank, -cluster.n_users, cluster.cluster_id, cluster))
    return [cluster for *_, cluster in sorted(ranked, key=lambda item: item[:3])]


# -- breakdown charts -----------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    n_users: int
    n_conversations: int
    fraction: float  # of the cluster's conversations


@dataclass(frozen=True)
class Chart:
    facet: str
    title: str
    bars: list[Bar]


def language_name(code: str) -> str:
    """'fr' -> 'French (fr)'; anything lingua does not know stays as it is."""
    from lingua import IsoCode639_1, Language

    try:
        language = Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
    except (ValueError, AttributeError, KeyError):
        return code
    return f"{language.name.title()} ({code})"


def breakdown_charts(cluster: ReleasedCluster, cells: Iterable[ReleasedBreakdown]) -> list[Chart]:
    """One bar chart per breakdown facet: language first, concern next, then by name.
    Concern levels run 1 to 5; other values largest first."""
    by_facet: dict[str, list[ReleasedBreakdown]] = defaultdict(list)
    for cell in cells:
        by_facet[cell.facet].append(cell)
    order = {LANGUAGE_FACET: 0, CONCERN_FACET: 1}
    charts = []
    for facet in sorted(by_facet, key=lambda f: (order.get(f, 2), f)):
        facet_cells = by_facet[facet]
        if facet == CONCERN_FACET:
            facet_cells.sort(key=lambda c: _numeric_or_text(c.value))
        else:
            facet_cells.sort(key=lambda c: (-c.n_conversations, -c.n_users, c.value))
        bars = [
            Bar(
                label=_value_label(facet, cell.value),
                n_users=cell.n_users,
                n_conversations=cell.n_conversations,
                fraction=cell.n_conversations / cluster.n_conversations
                if cluster.n_conversations
                else 0.0,
            )
            for cell in facet_cells
        ]
        charts.append(Chart(facet, _facet_title(facet), bars))
    return charts


def _facet_title(facet: str) -> str:
    if facet == CONCERN_FACET:
        return "Concern level"
    return facet.replace("_", " ").capitalize()


def _value_label(facet: str, value: str) -> str:
    if facet == LANGUAGE_FACET:
        return language_name(value)
    if facet == CONCERN_FACET and value.isdigit() and int(value) in CONCERN_LABELS:
        return f"{value} · {CONCERN_LABELS[int(value)]}"
    return value


def _numeric_or_text(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


# -- the map --------------------------------------------------------------------------

MAP_WIDTH = 960
MAP_HEIGHT = 600
MAP_PADDING = 56
MIN_RADIUS = 5.0
MAX_RADIUS = 34.0
LABEL_CHARS = 34
# Label boxes are estimated (12px semi-bold system font): no text metrics on the server.
LABEL_CHAR_WIDTH = 7.3
LABEL_HEIGHT = 14.0


@dataclass(frozen=True)
class MapPoint:
    cluster: ReleasedCluster
    cx: float
    cy: float
    r: float
    label: str | None = None  # only the largest clusters whose label has room
    label_x: float = 0.0
    label_y: float = 0.0


def map_levels(clusters: Iterable[ReleasedCluster]) -> dict[str, list[int]]:
    """Per facet, the levels whose clusters have map positions."""
    levels: dict[str, set[int]] = defaultdict(set)
    for cluster in clusters:
        if cluster.x is not None and cluster.y is not None:
            levels[cluster.facet].add(cluster.level)
    return {facet: sorted(found) for facet, found in sorted(levels.items())}


def map_points(
    clusters: Iterable[ReleasedCluster], facet: str, level: int, n_labels: int = 14
) -> list[MapPoint]:
    """Positions scaled into the SVG box (y up), radius by sqrt of distinct users,
    largest drawn first so small circles stay clickable. Up to `n_labels` of the
    largest clusters get a label above (or else below) their circle where it does
    not overlap a label already placed."""
    placed = [
        c
        for c in clusters
        if c.facet == facet and c.level == level and c.x is not None and c.y is not None
    ]
    if not placed:
        return []
    xs = [c.x for c in placed if c.x is not None]
    ys = [c.y for c in placed if c.y is not None]
    x_min, x_span = min(xs), (max(xs) - min(xs)) or 1.0
    y_min, y_span = min(ys), (max(ys) - min(ys)) or 1.0
    most_users = max(c.n_users for c in placed)
    width = MAP_WIDTH - 2 * MAP_PADDING
    height = MAP_HEIGHT - 2 * MAP_PADDING
    circles = [
        (
            c,
            round(MAP_PADDING + ((c.x or 0.0) - x_min) / x_span * width, 1),
            round(MAP_PADDING + (1 - ((c.y or 0.0) - y_min) / y_span) * height, 1),
            round(MIN_RADIUS + (MAX_RADIUS - MIN_RADIUS) * math.sqrt(c.n_users / most_users), 1),
        )
        for c in sorted(placed, key=lambda c: (-c.n_users, c.cluster_id))
    ]
    # Labels avoid every circle's box and the labels placed before them.
    boxes = [(cx - r, cy - r, cx + r, cy + r) for _, cx, cy, r in circles]
    points = []
    for rank, (c, cx, cy, r) in enumerate(circles):
        label = _place_label(c.name, cx, cy, r, boxes) if rank < n_labels else None
        if label is None:
            points.append(MapPoint(c, cx, cy, r))
        else:
            points.append(MapPoint(c, cx, cy, r, label[0], label[1], label[2]))
    return points


def _place_label(
    name: str, cx: float, cy: float, r: float, boxes: list[tuple[float, float, float, float]]
) -> tuple[str, float, float] | None:
    text = name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1].rstrip() + "…"
    half = len(text) * LABEL_CHAR_WIDTH / 2
    x = min(max(cx, half + 4), MAP_WIDTH - half - 4)
    for baseline in (cy - r - 6, cy + r + LABEL_HEIGHT + 2):
        box = (x - half, baseline - LABEL_HEIGHT + 3, x + half, baseline + 3)
        if box[1] < 0 or box[3] > MAP_HEIGHT:
            continue
        if not any(_overlap(box, other) for other in boxes):
            boxes.append(box)
            return text, round(x, 1), round(baseline, 1)
    return None


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass(frozen=True)
class ChangeGroup:
    """One section of the "What changed" page."""

    key: str
    title: str
    note: str
    rows: list[Change]


CHANGES_SHOWN = 10  # per section: the largest first
# The "What changed" page's words around its sections, the same on the server's page and
# in the exported file.
CHANGES_NOTE = (
    "A cluster keeps its id across runs, rebuilds too, where its conversations mostly stay; "
    "every change shown is at least the release thresholds."
)
NO_PREVIOUS_RUN = "This is the first released run: there is nothing to compare it with."


def change_groups(changes: Sequence[Change]) -> list[ChangeGroup]:
    """The run against the run before it, in sections: new clusters (split ones too), the
    largest growth and shrinkage, concern going up, clusters gone (merged ones too). Every
    change shown is one the gate released, so 0 or at least the thresholds (rule 6)."""
    kept = [c for c in changes if c.status == "kept"]
    return [
        ChangeGroup(
            "new", "New clusters", "released now, not in the run before (split: split off one)",
            sorted((c for c in changes if c.status in ("new", "split")),
                   key=lambda c: (-(c.n_users or 0), c.cluster_id))[:CHANGES_SHOWN],
        ),
        ChangeGroup(
            "grown", "Largest growth", "more distinct users than in the run before",
            sorted((c for c in kept if c.n_users_change > 0),
                   key=lambda c: (-c.n_users_change, c.cluster_id))[:CHANGES_SHOWN],
        ),
        ChangeGroup(
            "shrunk", "Largest shrinkage", "fewer distinct users than in the run before",
            sorted((c for c in kept if c.n_users_change < 0),
                   key=lambda c: (c.n_users_change, c.cluster_id))[:CHANGES_SHOWN],
        ),
        ChangeGroup(
            "concern", "Concern going up", "mean concern score higher than in the run before",
            sorted((c for c in kept if c.concern_change is not None and c.concern_change > 0),
                   key=lambda c: (-(c.concern_change or 0), c.cluster_id))[:CHANGES_SHOWN],
        ),
        ChangeGroup(
            "gone", "Gone", "released in the run before, not now (merged: into another one)",
            sorted((c for c in changes if c.status in ("gone", "merged")),
                   key=lambda c: (-(c.previous_n_users or 0), c.cluster_id))[:CHANGES_SHOWN],
        ),
    ]  # fmt: skip
