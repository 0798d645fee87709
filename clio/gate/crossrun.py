"""Rule 6 of the gate: a figure changes between releases only by a releasable amount.

The released store keeps every run, and an incremental run re-releases a build's clusters
under the same ids with grown counts, so an analyst can subtract a cluster's figures in
one run from those in the run before (`run_changes` and the page do exactly that). The
change is a group of its own: the conversations that joined. Each figure is treated as a
cell whose difference with its previous release must be 0 or releasable:

- An item (a cluster, a breakdown cell, a facet's total behind `share`) that was
  released before keeps ("carries") its previous figures unless its change is 0 or at
  least `min_users` users and `min_conversations` conversations. A carried cluster keeps
  its previous row (texts and keywords too: a keyword appearing is a change as well).
- Containment: everything under a carried item is carried (an item without a previous
  figure there is withheld): a carried cluster is shown with its subtree and cells
  exactly as its previous release showed them (those suppressed now too), which the gate
  checked then, so it shows nothing new.
- The hidden difference: under an item whose figures change, (whole minus its shown
  parts) now minus (whole minus its shown parts) before must also be 0 or releasable,
  else the smallest changed part is carried (complementary suppression of changes), and
  with none left the whole is carried.

Lineage (`clio.lineage`) lets a new build's cluster keep its previous id, so the rule
holds across full runs and rebuilds too; there the tree around a kept cluster may change
and its members may leave. A carried cluster the new build put under another parent is
shown with its previous figures under its parent now, and two cases are withheld rather
than carried: a carried part above its whole's figure (the whole shrank), and a carried
part that leaves a new whole minus its shown parts at 1 to min - 1 (a new parent over a
kept child).
The previous release brings, beside each id's latest row, the rows its run showed with it
that this run may lack (children and the facet's tops a new build dropped), so the hidden
difference is formed as an analyst forms it.

Only ever carrying or withholding, so the passes end. The previous figure is the one the
latest earlier release of each id shows, carried figures included. A cluster's, a cell's
and a facet total's own figure is compared with every figure any earlier run released
for it, not only the latest: across builds members may leave, and two steps of opposite
sign (+6, then -5) would otherwise differ by less than the thresholds between the first
and the third release. The hidden difference (whole minus shown parts) is likewise
formed against the latest previous release and against each earlier run's own (whole
minus the parts that run showed). A cluster released before and suppressed now is simply
gone; a cell that newly appears differs from "absent" by its own thresholds.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace

from clio.config import PrivacyConfig
from clio.gate.reasons import (
    CHANGE_BELOW_THRESHOLD_CARRIED,
    CHANGE_NOT_CARRIED_WITHHELD,
    NEW_UNDER_CARRIED_WITHHELD,
)
from clio.released import PreviousRelease, ReleasedBreakdown, ReleasedCluster, facet_total

# An item: ("cluster", id), ("cell", id, facet, value) or ("total", facet).
Key = tuple[str, ...]
Figure = tuple[int | None, int]  # users (None where not released), conversations

NEW, SAME, CHANGED, CARRIED, WITHHELD = "new", "same", "changed", "carried", "withheld"


def carry_changes(
    rows: Sequence[ReleasedCluster],
    breakdowns: Sequence[ReleasedBreakdown],
    previous: PreviousRelease,
    config: PrivacyConfig,
    counts: Counter[str],
) -> tuple[list[ReleasedCluster], list[ReleasedBreakdown], dict[str, int | None]]:
    """The rows to release after rule 6, and each facet's `share` denominator."""
    by_id = {c.cluster_id: c for c in rows}
    facets = sorted({c.facet for c in rows})
    now: dict[Key, Figure] = {}
    before: dict[Key, Figure] = {}
    for c in rows:
        now[("cluster", c.cluster_id)] = (c.n_users, c.n_conversations)
        old = previous.clusters.get(c.cluster_id)
        if old is not None and old.facet == c.facet:
            before[("cluster", c.cluster_id)] = (old.n_users, old.n_conversations)
    for b in breakdowns:
        now[("cell", b.cluster_id, b.facet, b.value)] = (b.n_users, b.n_conversations)
    for (cid, facet, value), b in previous.cells.items():
        if ("cluster", cid) in before:
            before[("cell", cid, facet, value)] = (b.n_users, b.n_conversations)
    for facet in facets:
        total = facet_total(rows, facet)
        if total is not None:
            now[("total", facet)] = (None, total)
        old_total = _previous_total(previous, facet)
        if old_total is not None:
            before[("total", facet)] = (None, old_total)

    groups = _groups(rows, previous, by_id, now, before)
    earlier_runs = [_run_figures(past, cells) for past, cells in previous.runs.values()]
    earlier: dict[Key, set[Figure]] = defaultdict(set)
    for figures in earlier_runs:
        for key, figure in figures.items():
            earlier[key].add(figure)
    hidden_before = _hidden_history(previous, earlier_runs)
    # Every previous figure, also of items not in this run (a part shown with its whole
    # before, which a new build dropped or suppressed now).
    released: dict[Key, Figure] = {
        ("cluster", cid): (c.n_users, c.n_conversations) for cid, c in previous.clusters.items()
    }
    released |= {
        ("cell", *key): (b.n_users, b.n_conversations) for key, b in previous.cells.items()
    }
    status = {
        key: _own_status(now[key], before.get(key), earlier.get(key, set()), config) for key in now
    }
    final = {key: before[key] if status[key] == CARRIED else now[key] for key in now}

    def carry(key: Key) -> bool:
        target = CARRIED if key in before else WITHHELD
        if status[key] == target or status[key] == WITHHELD:
            return False
        status[key] = target
        if target == CARRIED:
            final[key] = before[key]
        return True

    def withhold(key: Key) -> bool:
        if status[key] == WITHHELD:
            return False
        status[key] = WITHHELD
        return True

    changed = True
    while changed:
        changed = False
        for whole, parts, parts_before in groups:
            if status[whole] == WITHHELD:
                for part in parts:
                    changed |= withhold(part)
                continue
            if status[whole] == CARRIED:
                for part in parts:
                    changed |= carry(part)
                continue
            for part in parts:
                if status[part] == CARRIED and _exceeds(final[part], final[whole]):
                    changed |= withhold(part)  # a carried part above its whole's figure
            carried = sorted(
                (p for p in parts if status[p] == CARRIED),
                key=lambda p: (final[p][1], final[p][0] or 0, p),
            )
            shown = [p for p in parts if status[p] != WITHHELD]
            if whole not in before:
                # Released for the first time: the single-release rules cover its current
                # figures, but beside a carried part (a new build's new parent over a kept
                # child) whole minus its shown parts must still be 0 or releasable.
                if carried and not _hidden_part_ok(whole, shown, final, config):
                    changed |= withhold(carried[0])
                continue
            shown = [p for p in parts if status[p] != WITHHELD]
            if not shown:
                continue  # nothing to subtract: the whole's own change is checked
            if not _hidden_change_ok(
                whole, shown, parts_before, final, {**released, **before}, config
            ) or not _hidden_history_ok(whole, shown, final, hidden_before, config):
                movable = sorted(
                    (p for p in shown if status[p] == CHANGED),
                    key=lambda p: (final[p][1], final[p][0] or 0, p),
                )
                changed |= carry(movable[0] if movable else whole)
            elif carried and not _hidden_part_ok(whole, shown, final, config):
                # Carried and current figures side by side (members left or moved in a new
                # build): whole minus its shown parts must still be 0 or releasable.
                changed |= withhold(carried[0])

    for key, state in status.items():
        if state == CARRIED and now[key] != before[key]:
            counts[CHANGE_BELOW_THRESHOLD_CARRIED] += 1
        elif state == WITHHELD and key in before:
            counts[CHANGE_NOT_CARRIED_WITHHELD] += 1
        elif state == WITHHELD:
            counts[NEW_UNDER_CARRIED_WITHHELD] += 1

    totals = {facet: final[("total", facet)][1] for facet in facets if ("total", facet) in final}
    shown = [c for c in rows if status[("cluster", c.cluster_id)] in (NEW, SAME, CHANGED)]
    released_cells = []
    for b in breakdowns:
        key = ("cell", b.cluster_id, b.facet, b.value)
        if status[("cluster", b.cluster_id)] in (CARRIED, WITHHELD) or status[key] == WITHHELD:
            continue
        users, conversations = final[key]
        released_cells.append(replace(b, n_users=users or 0, n_conversations=conversations))
    carried_roots = [
        c.cluster_id
        for c in rows
        if status[("cluster", c.cluster_id)] == CARRIED
        and (c.parent_id is None or status[("cluster", c.parent_id)] != CARRIED)
    ]
    now_shown = {c.cluster_id for c in rows if status[("cluster", c.cluster_id)] != CARRIED}
    past = _past_subtrees(previous, carried_roots, skip=now_shown)
    released_cells += [b for key, b in previous.cells.items() if key[0] in past]
    # A carried cluster a new build put under another parent keeps its figures, not its
    # place: it is shown under its parent now (which is shown: a carried or withheld
    # parent would have carried or withheld it too).
    roots = set(carried_roots)
    carried = [
        replace(previous.clusters[cid], parent_id=by_id[cid].parent_id)
        if cid in roots
        else previous.clusters[cid]
        for cid in sorted(past)
    ]
    return shown + carried, released_cells, totals


def _past_subtrees(previous: PreviousRelease, roots: Sequence[str], skip: set[str]) -> set[str]:
    """The ids of each root's subtree as the root's previous release showed it: a carried
    cluster is shown exactly as then, with its children and cells of that run (also those
    suppressed now: a cell or child vanishing would show that the cluster changed), but
    for the children in `skip` (this run's clusters that are not carried: a child a new
    build moved elsewhere, or withheld) and theirs."""
    children: dict[str, list[str]] = defaultdict(list)
    for cid, c in previous.clusters.items():
        if c.parent_id is not None:
            children[c.parent_id].append(cid)
    subtree: set[str] = set()
    todo = list(roots)
    while todo:
        cid = todo.pop()
        subtree.add(cid)
        run = previous.run_of[cid]
        todo += [k for k in children[cid] if previous.run_of[k] == run and k not in skip]
    return subtree


def _previous_total(previous: PreviousRelease, facet: str) -> int | None:
    """The facet's total in the latest earlier run that released its top clusters."""
    tops = [
        (previous.run_of[c.cluster_id], c)
        for c in previous.clusters.values()
        if c.facet == facet and c.parent_id is None
    ]
    if not tops:
        return None
    latest = max(run for run, _ in tops)
    return facet_total([c for run, c in tops if run == latest], facet)


def _exceeds(part: Figure, whole: Figure) -> bool:
    """Whether a part's figure is above its whole's (possible once a part is carried while
    its whole shrank, as memberships can in a new build)."""
    users = part[0] is not None and whole[0] is not None and part[0] > whole[0]
    return users or part[1] > whole[1]


def _own_status(
    now: Figure, before: Figure | None, earlier: set[Figure], config: PrivacyConfig
) -> str:
    """NEW without a previous figure, SAME if unchanged, CHANGED if the figure differs from
    the previous one and from every earlier one (`earlier`, each figure any earlier run
    released) by 0 or by at least the thresholds, else CARRIED."""
    if before is None:
        return NEW
    if now == before:
        return SAME
    if all(_releasable_change(now, old, config) for old in {before, *earlier}):
        return CHANGED
    return CARRIED


def _releasable_change(now: Figure, old: Figure, config: PrivacyConfig) -> bool:
    if now == old:
        return True
    users = now[0] is None or old[0] is None or abs(now[0] - old[0]) >= config.min_users
    return users and abs(now[1] - old[1]) >= config.min_conversations


def _groups(
    rows: Sequence[ReleasedCluster],
    previous: PreviousRelease,
    by_id: dict[str, ReleasedCluster],
    now: dict[Key, Figure],
    before: dict[Key, Figure],
) -> list[tuple[Key, list[Key], list[Key]]]:
    """(whole, its parts shown now, its parts shown in the whole's previous release), for
    every facet's total, cluster, (cluster, facet) and cell: the differences an analyst
    can form by subtraction within one release."""
    children: dict[str | None, list[str]] = defaultdict(list)
    for c in rows:
        children[c.parent_id].append(c.cluster_id)
    old_children: dict[str | None, list[str]] = defaultdict(list)
    for cid, c in previous.clusters.items():
        old_children[c.parent_id].append(cid)
    cells_now: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key in now:
        if key[0] == "cell":
            cells_now[(key[1], key[2])].append(key[3])
    cells_before: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key in before:
        if key[0] == "cell":
            cells_before[(key[1], key[2])].append(key[3])

    def shown_with(cid: str | None, child: str) -> bool:
        """Whether `child`'s previous row is from the same run as its parent's."""
        return cid is None or previous.run_of.get(child) == previous.run_of.get(cid)

    groups: list[tuple[Key, list[Key], list[Key]]] = []
    for facet in sorted({c.facet for c in rows}):
        whole = ("total", facet)
        if whole not in now:
            continue
        tops = [("cluster", c) for c in children[None] if by_id[c].facet == facet]
        old_tops = [c for c in old_children[None] if previous.clusters[c].facet == facet]
        latest = max((previous.run_of[c] for c in old_tops), default=None)
        groups.append(
            (whole, tops, [("cluster", c) for c in old_tops if previous.run_of[c] == latest])
        )
    # Top-down, so a carried whole reaches its parts in one pass.
    for c in sorted(rows, key=lambda r: (r.facet, -r.level, r.cluster_id)):
        cid = c.cluster_id
        groups.append(
            (
                ("cluster", cid),
                [("cluster", k) for k in children[cid]],
                [("cluster", k) for k in old_children[cid] if shown_with(cid, k)],
            )
        )
        for (owner, facet), values in sorted(cells_now.items()):
            if owner != cid:
                continue
            groups.append(
                (
                    ("cluster", cid),
                    [("cell", cid, facet, v) for v in values],
                    [("cell", cid, facet, v) for v in cells_before.get((cid, facet), [])],
                )
            )
            for value in values:
                groups.append(
                    (
                        ("cell", cid, facet, value),
                        [
                            ("cell", k, facet, value)
                            for k in children[cid]
                            if ("cell", k, facet, value) in now
                        ],
                        [
                            ("cell", k, facet, value)
                            for k in old_children[cid]
                            if ("cell", k, facet, value) in before and shown_with(cid, k)
                        ],
                    )
                )
    return groups


def _hidden_part_ok(
    whole: Key, shown: Sequence[Key], final: dict[Key, Figure], config: PrivacyConfig
) -> bool:
    """Whether whole minus its shown parts is 0 or releasable in this release's figures."""
    conversations = final[whole][1] - sum(final[p][1] for p in shown)
    if conversations != 0 and abs(conversations) < config.min_conversations:
        return False
    if final[whole][0] is None:
        return True
    users = final[whole][0] - sum(final[p][0] or 0 for p in shown)
    return users == 0 or abs(users) >= config.min_users


def _run_figures(
    rows: Sequence[ReleasedCluster], cells: Sequence[ReleasedBreakdown]
) -> dict[Key, Figure]:
    """Every figure one earlier run released: its clusters, cells and facet totals."""
    figures: dict[Key, Figure] = {
        ("cluster", c.cluster_id): (c.n_users, c.n_conversations) for c in rows
    }
    figures |= {
        ("cell", b.cluster_id, b.facet, b.value): (b.n_users, b.n_conversations) for b in cells
    }
    for facet in {c.facet for c in rows}:
        total = facet_total([c for c in rows if c.parent_id is None], facet)
        if total is not None:
            figures[("total", facet)] = (None, total)
    return figures


def _hidden_history(
    previous: PreviousRelease, earlier_runs: Sequence[dict[Key, Figure]]
) -> dict[Key, set[Figure]]:
    """Every earlier run's (whole minus its parts) for each whole it released, each run's
    figures (`earlier_runs`, in the order of `previous.runs`) with the parts it showed
    beside that whole (`_release_groups`)."""
    found: dict[Key, set[Figure]] = defaultdict(set)
    for (rows, _), figures in zip(previous.runs.values(), earlier_runs, strict=True):
        for whole, parts in _release_groups(rows, figures):
            if whole in figures:
                found[whole].add(_hidden(whole, parts, figures))
    return found


def _release_groups(
    rows: Sequence[ReleasedCluster], figures: dict[Key, Figure]
) -> list[tuple[Key, list[Key]]]:
    """(whole, its parts) within one release whose figures are `figures`: a facet's total
    and its top clusters, a cluster and its children, a cluster and its cells of a facet,
    a cluster's cell and its children's cells of that value."""
    children: dict[str | None, list[str]] = defaultdict(list)
    for c in rows:
        children[c.parent_id].append(c.cluster_id)
    cells: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for key in figures:
        if key[0] == "cell":
            cells[key[1]][key[2]].append(key[3])
    groups: list[tuple[Key, list[Key]]] = []
    for facet in sorted({c.facet for c in rows}):
        tops = [("cluster", c.cluster_id) for c in rows if c.parent_id is None and c.facet == facet]
        groups.append((("total", facet), tops))
    for c in rows:
        cid = c.cluster_id
        groups.append((("cluster", cid), [("cluster", k) for k in children[cid]]))
        for facet, values in cells[cid].items():
            groups.append((("cluster", cid), [("cell", cid, facet, v) for v in values]))
            for value in values:
                parts = [("cell", k, facet, value) for k in children[cid]]
                groups.append((("cell", cid, facet, value), [p for p in parts if p in figures]))
    return groups


def _hidden(whole: Key, parts: Sequence[Key], figures: dict[Key, Figure]) -> Figure:
    users = figures[whole][0]
    hidden_users = None if users is None else users - sum(figures[p][0] or 0 for p in parts)
    return hidden_users, figures[whole][1] - sum(figures[p][1] for p in parts)


def _hidden_history_ok(
    whole: Key,
    shown: Sequence[Key],
    final: dict[Key, Figure],
    history: dict[Key, set[Figure]],
    config: PrivacyConfig,
) -> bool:
    """Whether (whole minus its shown parts) now differs from that of every earlier run
    that released the whole by 0 or a releasable amount."""
    if whole not in history:
        return True
    now = _hidden(whole, shown, final)
    return all(_difference_ok(now, old, config) for old in history[whole])


def _hidden_change_ok(
    whole: Key,
    shown: Sequence[Key],
    shown_before: Sequence[Key],
    final: dict[Key, Figure],
    before: dict[Key, Figure],
    config: PrivacyConfig,
) -> bool:
    """Whether (whole minus its shown parts) changed by 0 or a releasable amount."""
    return _difference_ok(
        _hidden(whole, shown, final), _hidden(whole, shown_before, before), config
    )


def _difference_ok(now: Figure, old: Figure, config: PrivacyConfig) -> bool:
    """Whether two hidden parts differ by 0 or a releasable amount, users and
    conversations each."""
    conversations = now[1] - old[1]
    if conversations != 0 and abs(conversations) < config.min_conversations:
        return False
    if now[0] is None or old[0] is None:
        return True
    users = now[0] - old[0]
    return users == 0 or abs(users) >= config.min_users
