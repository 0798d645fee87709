"""An analyst's attack on a release, checked against the private tree it came from.

`release_violations` lists every way a release breaks the gate's invariants: a row
below the thresholds, a row without its parent, and any difference an analyst can
form from released numbers (a parent or cell minus released parts below it) that
isolates a group smaller than the thresholds. It knows nothing of the gate's code,
so a broken gate (or a release made without it) shows up here.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence

from clio.gate import GateResult
from clio.records import Cluster


def full_members(clusters: Sequence[Cluster]) -> dict[str, set[str]]:
    children: dict[str, list[str]] = defaultdict(list)
    for c in clusters:
        if c.parent_id:
            children[c.parent_id].append(c.cluster_id)
    by_id = {c.cluster_id: c for c in clusters}
    memo: dict[str, set[str]] = {}

    def members(cid: str) -> set[str]:
        if cid not in memo:
            out = set(by_id[cid].member_ids)
            for child in children[cid]:
                out |= members(child)
            memo[cid] = out
        return memo[cid]

    return {cid: members(cid) for cid in by_id}


def _labels(value: object) -> set[str]:
    items = value if isinstance(value, list | tuple) else [value]
    out = set()
    for item in items:
        if item is None:
            continue
        if isinstance(item, float):
            out.add(str(int(item)) if item.is_integer() else repr(item))
        else:
            out.add(str(item))
    return out


def _antichains(nodes: list[str], ancestors: Mapping[str, set[str]], rng: random.Random):
    """Non-empty sets of `nodes` none of which is another's ancestor: all of them for small
    sets, else a seeded sample (each random subset with its chosen nodes' descendants
    dropped), plus every single node."""
    if len(nodes) <= 10:
        for mask in range(1, 2 ** len(nodes)):
            chosen = [n for i, n in enumerate(nodes) if mask >> i & 1]
            if all(not (ancestors[a] & set(chosen)) for a in chosen):
                yield chosen
        return
    for node in nodes:
        yield [node]
    for _ in range(300):
        chosen = [n for n in nodes if rng.random() < 0.4]
        kept = [n for n in chosen if not (ancestors[n] & set(chosen))]
        if kept:
            yield kept


def release_violations(
    result: GateResult,
    clusters: Sequence[Cluster],
    users: Mapping[str, str],
    values: Mapping[str, Mapping[str, object]],
    breakdown_facets: Sequence[str],
    min_users: int,
    min_conversations: int,
    *,
    exact_numbers: bool = True,
    partition: bool = True,
) -> list[str]:
    """Every broken invariant, described without any member id. `partition`: each
    conversation sits in one base cluster and has one value per facet, so differences
    of released numbers are exact counts of the difference sets (checked over all
    antichains below a node); otherwise only direct parent/children differences are."""
    found: list[str] = []
    members = full_members(clusters)
    by_id = {c.cluster_id: c for c in clusters}
    released = {c.cluster_id: c for c in result.clusters}
    parent_of = {c.cluster_id: c.parent_id for c in clusters}
    children: dict[str | None, list[str]] = defaultdict(list)
    for c in clusters:
        children[c.parent_id].append(c.cluster_id)
    ancestors: dict[str, set[str]] = {}
    for cid in by_id:
        chain, current = set(), parent_of[cid]
        while current is not None:
            chain.add(current)
            current = parent_of[current]
        ancestors[cid] = chain

    def user_set(conversations: set[str]) -> set[str]:
        return {users[c] for c in conversations}

    def small(conversations: set[str]) -> bool:
        n_users = len(user_set(conversations))
        return len(conversations) < min_conversations or n_users < min_users

    def check_hidden(label: str, whole: set[str], shown: list[set[str]]) -> None:
        if not shown:
            return
        covered = set().union(*shown)
        hidden = whole - covered
        if hidden and small(hidden):
            found.append(f"{label}: a hidden part of {len(hidden)} conversations is derivable")
        only = user_set(whole) - user_set(covered)
        if 0 < len(only) < min_users:
            found.append(f"{label}: {len(only)} users found only in the hidden part")

    # rows and their numbers
    for c in result.clusters:
        true = members[c.cluster_id]
        if small(true):
            found.append(f"cluster {c.cluster_id} released below the thresholds")
        if c.n_users < min_users or c.n_conversations < min_conversations:
            found.append(f"cluster {c.cluster_id} released with numbers below the thresholds")
        if exact_numbers and (c.n_users, c.n_conversations) != (len(user_set(true)), len(true)):
            found.append(f"cluster {c.cluster_id} released with wrong numbers")
        if c.parent_id is not None and c.parent_id not in released:
            found.append(f"cluster {c.cluster_id} released without its parent")
    cell_sets: dict[tuple[str, str, str], set[str]] = {}
    for b in result.breakdowns:
        if b.cluster_id not in released:
            found.append(f"cells of unreleased cluster {b.cluster_id}")
            continue
        true = {m for m in members[b.cluster_id] if b.value in _labels(values[m].get(b.facet))}
        cell_sets[(b.cluster_id, b.facet, b.value)] = true
        if small(true) or b.n_users < min_users or b.n_conversations < min_conversations:
            found.append(f"a cell of {b.cluster_id} released below the thresholds")
        if exact_numbers and (b.n_users, b.n_conversations) != (len(user_set(true)), len(true)):
            found.append(f"a cell of {b.cluster_id} released with wrong numbers")

    # clusters: each released parent (and each facet's root) minus its released children
    facets = sorted({c.facet for c in clusters})
    for facet in facets:
        tops = [cid for cid in children[None] if by_id[cid].facet == facet]
        whole = set().union(*(members[cid] for cid in tops)) if tops else set()
        check_hidden(f"root of {facet}", whole, [members[c] for c in tops if c in released])
        if exact_numbers and partition and any(c in released for c in tops):
            # the analyst's arithmetic: the total (from `share`) minus released top clusters
            top = next(released[c] for c in tops if c in released)
            total = round(top.n_conversations / top.share)
            derived = total - sum(released[c].n_conversations for c in tops if c in released)
            if 0 < derived < min_conversations:
                found.append(f"root of {facet}: {derived} conversations derivable by subtraction")
    for cid in released:
        check_hidden(
            f"cluster {cid}", members[cid], [members[c] for c in children[cid] if c in released]
        )
        if exact_numbers and partition:
            shown = [released[c] for c in children[cid] if c in released]
            derived = released[cid].n_conversations - sum(c.n_conversations for c in shown)
            if shown and 0 < derived < min_conversations:
                found.append(f"cluster {cid}: {derived} conversations derivable by subtraction")

    # cells: within each released cluster, across levels, and hidden above means hidden below
    for cid in released:
        for facet in breakdown_facets:
            shown = [s for (c, f, _), s in cell_sets.items() if c == cid and f == facet]
            check_hidden(f"cells of {cid}", members[cid], shown)
    for (cid, facet, value), cell in cell_sets.items():
        parent = parent_of[cid]
        if parent is not None and (parent, facet, value) not in cell_sets:
            found.append(f"a cell of {cid} released while hidden in its parent")
        below = [
            cell_sets[(c, facet, value)] for c in children[cid] if (c, facet, value) in cell_sets
        ]
        check_hidden(f"a cell of {cid} across levels", cell, below)

    if partition:
        rng = random.Random(0)
        for top in [None, *released]:
            if top is None:
                for facet in facets:
                    tops = [c for c in children[None] if by_id[c].facet == facet]
                    whole = set().union(*(members[c] for c in tops)) if tops else set()
                    inside = [c for c in released if by_id[c].facet == facet]
                    _check_antichains(
                        f"root of {facet}", whole, inside, members, ancestors, small, rng, found
                    )
                continue
            inside = [c for c in released if top in ancestors[c]]
            _check_antichains(
                f"cluster {top}", members[top], inside, members, ancestors, small, rng, found
            )
        for (cid, facet, value), cell in cell_sets.items():
            inside = [
                c for (c, f, v) in cell_sets if f == facet and v == value and cid in ancestors[c]
            ]
            sets = {c: cell_sets[(c, facet, value)] for c in inside}
            _check_antichains(f"a cell of {cid}", cell, inside, sets, ancestors, small, rng, found)
    return sorted(set(found))


def _check_antichains(label, whole, inside, sets, ancestors, small, rng, found) -> None:
    for chosen in _antichains(sorted(inside), ancestors, rng):
        hidden = whole - set().union(*(sets[c] for c in chosen))
        if hidden and small(hidden):
            found.append(f"{label}: a difference isolates {len(hidden)} conversations")
            return


def k_support_violations(
    result: GateResult,
    clusters: Sequence[Cluster],
    users: Mapping[str, str],
    values: Mapping[str, Mapping[str, object]],
    min_users: int,
) -> list[str]:
    """Invariant 8, checked without the gate's code: "cluster: word" for every content word
    (not in `clio.naming.GENERIC_WORDS`) of a released name, description or keyword that
    1 to `min_users - 1` distinct users of the cluster (its full membership) wrote in the
    cluster's facet; for a keyword also a word no member wrote. Words are counted by
    stem: a user who wrote "word" supports "words"."""
    from clio.keywords import stem, words
    from clio.naming import content_words

    members = full_members(clusters)
    facet_of = {c.cluster_id: c.facet for c in clusters}
    found = []
    for row in result.clusters:
        writers: dict[str, set[str]] = defaultdict(set)
        for conversation in members[row.cluster_id]:
            text = values.get(conversation, {}).get(facet_of[row.cluster_id])
            for word in set(words(" ".join(sorted(_labels(text))))):
                writers[stem(word)].add(users[conversation])
        texts = [(row.name, False), (row.description, False)]
        texts += [(keyword, True) for keyword in row.keywords]
        for text, is_keyword in texts:
            for word in content_words(text):
                n = len(writers.get(stem(word), ()))
                if 0 < n < min_users or (is_keyword and n == 0):
                    found.append(f"{row.cluster_id}: {word}")
    return sorted(set(found))
