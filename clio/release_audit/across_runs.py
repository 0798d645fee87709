"""Attacks that difference runs of the same store.

Runs accumulate and re-release the same cluster ids, so any figure that moves
between two runs (ordered as `run_changes` orders them) by less than the thresholds
describes the small group that was added or removed: the users of a one-conversation
incremental run, their language, their concern score, their LLM token counts.
Thresholds are the later run's: it released the change. A cluster's or cell's counts
are differenced between every two runs, not only consecutive ones (a cluster that
grew by 6 and then shrank by 5 differs by 1 from two runs back); the other attacks
difference consecutive runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

from clio.release_audit.findings import Finding, below
from clio.release_audit.history import Run
from clio.released import ReleasedCluster


def _kept(before: Run, now: Run) -> list[tuple[ReleasedCluster, ReleasedCluster]]:
    """Clusters released in both runs under the same id and facet: (before, now)."""
    return [
        (before.clusters[cid], cluster)
        for cid, cluster in now.clusters.items()
        if cid in before.clusters and before.clusters[cid].facet == cluster.facet
    ]


def _pairs(runs: Sequence[Run]) -> list[tuple[Run, Run]]:
    return list(zip(runs, runs[1:], strict=False))


def _all_pairs(runs: Sequence[Run]) -> list[tuple[Run, Run]]:
    """Every (earlier, later) pair of runs."""
    return list(combinations(runs, 2))


def count_changes(runs: Sequence[Run]) -> list[Finding]:
    """A kept cluster whose `n_users` or `n_conversations` changed by 1 to min - 1: the
    change is the number of users (conversations) added or removed, a group that small."""
    findings = []
    for before, now in _all_pairs(runs):
        for old, new in _kept(before, now):
            for column, threshold in (
                ("n_users", now.min_users),
                ("n_conversations", now.min_conversations),
            ):
                change = getattr(new, column) - getattr(old, column)
                if below(change, threshold):
                    findings.append(
                        Finding.difference(
                            "run_counts",
                            (before.row.run_id, now.row.run_id),
                            (new.cluster_id,),
                            f"{column} changed by {change:+d}",
                            change,
                        )
                    )
    return findings


def cell_changes(runs: Sequence[Run]) -> list[Finding]:
    """Breakdown cells of a kept cluster across two runs.

    A cell released in both runs (any two) whose users or conversations changed by 1 to
    min - 1 gives the added group's value directly. A cell that appears (or disappears)
    was hidden on one side, so below the thresholds there; when the cluster itself
    changed between consecutive runs by 1 to min - 1 users (or conversations), the
    crossing is that small group's doing,
    and at least (cell - (min - 1)) of them have the value (issue example: 4 -> 5 users
    of a language after one user was added gives that user's language).
    """
    findings = []
    consecutive = set(map(id_pair, _pairs(runs)))
    for before, now in _all_pairs(runs):
        run_ids = (before.row.run_id, now.row.run_id)
        for old, new in _kept(before, now):
            old_cells = {(c.facet, c.value): c for c in before.cells.get(old.cluster_id, [])}
            new_cells = {(c.facet, c.value): c for c in now.cells.get(new.cluster_id, [])}
            cluster_change = _sub_threshold_change(old, new, now)
            for key in sorted(old_cells.keys() | new_cells.keys()):
                label = f"{key[0]}={key[1]}"
                if key in old_cells and key in new_cells:
                    for column, threshold in (
                        ("n_users", now.min_users),
                        ("n_conversations", now.min_conversations),
                    ):
                        change = getattr(new_cells[key], column) - getattr(old_cells[key], column)
                        if below(change, threshold):
                            findings.append(
                                Finding.difference(
                                    "run_cells",
                                    run_ids,
                                    (new.cluster_id,),
                                    f"cell {label}: {column} changed by {change:+d}",
                                    change,
                                )
                            )
                elif cluster_change is not None and id_pair((before, now)) in consecutive:
                    cell = new_cells.get(key) or old_cells[key]
                    status = "appeared" if key in new_cells else "disappeared"
                    findings.append(
                        Finding(
                            "run_cells",
                            run_ids,
                            (new.cluster_id,),
                            f"cell {label} {status} ({cell.n_users} users) while the cluster "
                            f"changed by {cluster_change:+d}: the changed group holds the value",
                            cell.n_users,
                            abs(cluster_change),
                        )
                    )
    return findings


def id_pair(pair: tuple[Run, Run]) -> tuple[str, str]:
    return pair[0].row.run_id, pair[1].row.run_id


def _sub_threshold_change(old: ReleasedCluster, new: ReleasedCluster, now: Run) -> int | None:
    """The cluster's change in users (else conversations) when it is 1 to min - 1."""
    users = new.n_users - old.n_users
    if below(users, now.min_users):
        return users
    conversations = new.n_conversations - old.n_conversations
    return conversations if below(conversations, now.min_conversations) else None


def concern_changes(runs: Sequence[Run]) -> list[Finding]:
    """`concern_mean_new * n_new - concern_mean_old * n_old` over a kept cluster whose
    conversations changed by 1 to min - 1: the sum of the added (removed) conversations'
    concern scores (issue example: 1.346939 * 49 - 1.354167 * 48 = 1.0). Treats every
    member as scored (the mean is over members with a valid score)."""
    findings = []
    for before, now in _pairs(runs):
        for old, new in _kept(before, now):
            change = new.n_conversations - old.n_conversations
            if old.concern_mean is None or new.concern_mean is None:
                continue
            if below(change, now.min_conversations):
                total = new.concern_mean * new.n_conversations
                decoded = total - old.concern_mean * old.n_conversations
                findings.append(
                    Finding(
                        "run_concern",
                        (before.row.run_id, now.row.run_id),
                        (new.cluster_id,),
                        f"concern scores of the {abs(change)} "
                        f"{'added' if change > 0 else 'removed'} conversations sum to "
                        f"{decoded:.4f}",
                        round(decoded, 6),
                        abs(change),
                    )
                )
    return findings


def run_totals(runs: Sequence[Run]) -> list[Finding]:
    """A run whose `n_conversations` differs from the previous run's by 1 to min - 1 (an
    incremental run that added that few): its `runs` row (LLM calls and tokens, which
    count only the calls this run made) describes those conversations alone."""
    findings = []
    for before, now in _pairs(runs):
        change = now.row.n_conversations - before.row.n_conversations
        if below(change, now.min_conversations):
            row = now.row
            findings.append(
                Finding(
                    "run_totals",
                    (before.row.run_id, row.run_id),
                    (),
                    f"the run {'adds' if change > 0 else 'removes'} {abs(change)} conversations: "
                    f"llm_calls {row.llm_calls}, input_tokens {row.input_tokens}, "
                    f"output_tokens {row.output_tokens}",
                    row.input_tokens,
                    abs(change),
                )
            )
    return findings
