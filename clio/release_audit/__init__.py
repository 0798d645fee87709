"""The attack suite on a released store (`clio audit-release`).

An analyst can read `insights.duckdb` with every past run. Each attack here is one
way such an analyst combines released figures (across runs, across levels, with
means, shares, map positions and ids) to learn a figure about a group smaller than
the thresholds of the run that released it (`runs.min_users`,
`runs.min_conversations`). The suite works from the released store alone, read-only,
so it judges any store, whoever wrote it; the gate is not consulted.

A finding is a recovered sub-threshold group (`Finding`); the expected result is
none. `clio run` runs the suite after writing its release and records the verdict
(`verdict`) in the manifest under `release.audit`; findings are reported, they do not
fail the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clio.release_audit.across_runs import cell_changes, concern_changes, count_changes, run_totals
from clio.release_audit.findings import Finding
from clio.release_audit.history import NotAReleasedStore, Run, load_history
from clio.release_audit.within_run import (
    id_gaps,
    map_centring,
    mean_decoding,
    parent_children,
    share_algebra,
)

Attack = Callable[[Sequence[Run]], list[Finding]]

# name -> (attack, one line for `clio audit-release --help`)
ATTACKS: dict[str, tuple[Attack, str]] = {
    "run_counts": (
        count_changes,
        "a cluster's n_users or n_conversations changing between consecutive runs by "
        "1..min-1 (the added or removed members)",
    ),
    "run_cells": (
        cell_changes,
        "a breakdown cell changing by 1..min-1 between runs, or appearing/disappearing while "
        "its cluster changed by 1..min-1 (the changed members' value)",
    ),
    "run_concern": (
        concern_changes,
        "concern_mean_new*n_new - concern_mean_old*n_old over a change of 1..min-1 "
        "conversations (their concern scores)",
    ),
    "run_totals": (
        run_totals,
        "the runs row (LLM calls, tokens) of a run whose n_conversations moved by 1..min-1",
    ),
    "parent_children": (
        parent_children,
        "a parent's counts and breakdown cells minus its released children's: "
        "|remainder| in 1..min-1 (a suppressed group, or an intersection)",
    ),
    "mean_decoding": (
        mean_decoding,
        "concern_mean*n minus the released concern cells: hidden conversations 1..min-1, or "
        "a hidden sum only one mix of scores gives",
    ),
    "share_algebra": (
        share_algebra,
        "n_conversations/share (and the run's n_conversations) minus the released top "
        "clusters: a remainder of 1..min-1",
    ),
    "map_centring": (
        map_centring,
        "released base positions not centred on (0, 0): the suppressed ones sum to minus "
        "theirs (one suppressed: its position)",
    ),
    "id_gaps": (
        id_gaps,
        "missing numbers in <facet>-L<level>-<NNN> ids: which clusters were suppressed",
    ),
}

__all__ = [
    "ATTACKS",
    "Finding",
    "NotAReleasedStore",
    "audit_release",
    "findings_json",
    "format_findings",
    "verdict",
]


def audit_release(path: Path) -> list[Finding]:
    """Every finding of every attack on the released store at `path`.

    Raises `NotAReleasedStore` when `path` is missing or not a released store."""
    runs = load_history(path)
    return [finding for attack, _ in ATTACKS.values() for finding in attack(runs)]


def verdict(findings: Sequence[Finding]) -> dict[str, Any]:
    """The manifest's `release.audit`: how many findings, by attack (every attack named)."""
    by_attack = {name: 0 for name in ATTACKS}
    for finding in findings:
        by_attack[finding.attack] += 1
    return {"findings": len(findings), "by_attack": by_attack}


def findings_json(findings: Sequence[Finding]) -> dict[str, Any]:
    """`clio audit-release --json`: the verdict and every finding."""
    return {**verdict(findings), "list": [f.as_json() for f in findings]}


def format_findings(findings: Sequence[Finding]) -> str:
    """A table, one finding a row; `no findings` when there are none."""
    if not findings:
        return "no findings"
    header = ("attack", "runs", "clusters", "group", "recovered")
    rows = [
        (
            f.attack,
            ",".join(f.run_ids),
            ",".join(f.cluster_ids) or "-",
            "<min" if f.group_size is None else str(f.group_size),
            f.recovered,
        )
        for f in findings
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in [header, *rows]
    ]
    return "\n".join([*lines, f"{len(findings)} findings"])
