"""The run report: what `clio run` prints at its end and `clio report` prints again.

Rendered from a manifest (the operator one has every count, the public one only what
it holds) and, for cluster names, from the released store read through
`clio.released`: the terminal shows the insight, not only counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def render_report(manifest: dict[str, Any], released: Path | None = None) -> str:
    """The run report from the operator manifest, or from a public one (which has no
    input counts, LLM usage or timings), and the run's top clusters by name from the
    released store at `released` (by default the one the manifest names)."""
    if released is None and "released_store" in manifest.get("outputs", {}):
        released = Path(manifest["outputs"]["released_store"])
    clusters = _top_cluster_lines(released, manifest["run_id"]) if released is not None else []
    if manifest.get("audience") == "public":
        return "\n".join([_render_public_report(manifest), *clusters])
    counts = manifest["counts"]
    llm = manifest["llm"]
    release = manifest["release"]
    lines = [
        f"clio run {manifest['run_id']}  (config {manifest['config_hash']})",
        f"  mode               {manifest.get('mode', 'full')}: {manifest.get('mode_reason', '')}",
        f"  input records      {counts['n_input']}",
        f"  conversations      {counts['n_conversations']}",
        f"  quarantined        {counts['n_quarantined']}  {counts['quarantine_reasons'] or ''}",
        f"  truncated          {counts['n_truncated']}",
        f"  PII spans replaced {counts['n_pii_spans_replaced']}",
        f"  facet failures     {counts['facet_failures'] or 0}",
        *_facet_quality_lines(manifest.get("facet_quality")),
        f"  LLM ({llm['backend']}: {llm['model']})  calls {llm.get('calls', 0)}, "
        f"cached {llm.get('cached_calls', 0)}, tokens in {llm.get('input_tokens', 0)} "
        f"out {llm.get('output_tokens', 0)}, failures {llm.get('failures', 0)}",
        f"  clusters           built {release['clusters_built']}, "
        f"released {release['clusters_released']} {release['clusters_released_by_level']}",
        f"  breakdown cells    released {release['breakdown_cells_released']}",
        *_incremental_lines(manifest.get("incremental"), counts),
        f"  suppressed         {release['suppressed'] or 'nothing'}",
        *_lineage_lines(release.get("lineage")),
        *_audit_lines(release.get("audit")),
        *_dp_lines(manifest.get("privacy", {}).get("differential_privacy")),
        "  stage seconds      "
        + ", ".join(f"{k} {v:.1f}" for k, v in manifest["stage_seconds"].items()),
        f"  released store     {manifest['outputs']['released_store']}",
        f"  manifest           {manifest['outputs']['manifest']}",
    ]
    if "operator_manifest" in manifest["outputs"]:
        lines.append(f"  operator manifest  {manifest['outputs']['operator_manifest']}")
    return "\n".join([*lines, *clusters])


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


# A degenerate facet with no use to leave it out of: not clustered, no breakdown, not the
# concern facet, or configured with `keep_if_degenerate`.
NOTHING_WITHHELD = "nothing withheld (not clustered or broken down, or kept on purpose)"


def _facet_quality_lines(quality: dict[str, Any] | None) -> list[str]:
    """Each llm facet's degeneracy figures (`clio.facet_quality`) and what a degenerate
    one was left out of; nothing for a manifest from before they were measured."""
    if not quality or not quality.get("facets"):
        return []
    lines = [
        "  facet quality      (llm facets: most common answer, answers copying a "
        "few-shot example, distinct answers, failed)"
    ]
    for name, q in quality["facets"].items():
        distinct = "-" if q["distinct_ratio"] is None else f"{q['distinct_ratio']:.2f}"
        line = (
            f"    {name:<16} top {_percent(q['top_share'])}, example "
            f"{_percent(q['example_share'])}, distinct {distinct}, failed "
            f"{_percent(q['failure_rate'])}"
        )
        if q["degenerate"]:
            left_out = ", ".join(q["withheld_from"])
            verdict = f"left out of {left_out}" if left_out else NOTHING_WITHHELD
            line += f"  DEGENERATE ({', '.join(q['reasons'])}): {verdict}"
        elif q["reasons"]:
            line += f"  ({', '.join(q['reasons'])})"
        lines.append(line)
    return lines


TOP_CLUSTERS_SHOWN = 5  # top-level clusters per facet in the report
CHILDREN_SHOWN = 3  # largest children of each


def _top_cluster_lines(released: Path, run_id: str) -> list[str]:
    """Per clustered facet, the run's released top-level clusters by distinct users, each
    with its largest children: names and counts read from the released store alone (what
    anyone with the release sees), so the report shows the insight, not only counts. A
    cluster whose parent was not released counts as top-level."""
    from clio.released import NotAReleasedStore, read_only_connect

    if not released.is_file():
        return []
    try:
        connection = read_only_connect(released)
    except NotAReleasedStore:
        return []
    try:
        rows = connection.execute(
            "SELECT facet, cluster_id, parent_id, name, n_users FROM clusters "
            "WHERE run_id = $1 ORDER BY facet, n_users DESC, n_conversations DESC, cluster_id",
            [run_id],
        ).fetchall()
    finally:
        connection.close()
    ids = {row[1] for row in rows}
    children: dict[str, list[tuple[str, int]]] = {}
    for _, _, parent, name, users in rows:
        if parent in ids:
            children.setdefault(parent, []).append((name, users))
    lines: list[str] = []
    for facet in sorted({row[0] for row in rows}):
        tops = [r for r in rows if r[0] == facet and r[2] not in ids]
        lines.append(f"  top clusters       {facet} ({len(tops)} at the top; distinct users)")
        for _, cluster_id, _, name, users in tops[:TOP_CLUSTERS_SHOWN]:
            lines.append(f"    {name} ({users})")
            largest = children.get(cluster_id, [])[:CHILDREN_SHOWN]
            if largest:
                lines.append("      " + "; ".join(f"{n} ({u})" for n, u in largest))
    return lines


def _render_public_report(manifest: dict[str, Any]) -> str:
    release = manifest["release"]
    llm = manifest["llm"]
    return "\n".join(
        [
            f"clio run {manifest['run_id']}  (config {manifest['config_hash']})",
            f"  mode               {manifest['mode']}: {manifest['mode_reason']}",
            f"  LLM                {llm['backend']}: {llm['model']}",
            f"  clusters           built {release['clusters_built']}, "
            f"released {release['clusters_released']} {release['clusters_released_by_level']}",
            f"  breakdown cells    released {release['breakdown_cells_released']}",
            f"  suppressed         {release['suppressed'] or 'nothing'}",
            *_lineage_lines(release.get("lineage")),
            *_audit_lines(release.get("audit")),
            *_dp_lines(manifest.get("privacy", {}).get("differential_privacy")),
            f"  (public manifest: {manifest['withheld']})",
        ]
    )


def _dp_lines(dp: dict[str, Any] | None) -> list[str]:
    """This run's epsilon and the lifetime total over the output directory's ledger."""
    if not dp:
        return []
    budget = dp.get("budget_epsilon")
    of_budget = f" of budget {budget:g}" if budget is not None else " (no budget set)"
    return [
        f"  differential privacy epsilon {dp['epsilon_spent']:g} this run, "
        f"{dp.get('cumulative_epsilon', dp['epsilon_spent']):g} over "
        f"{dp.get('runs_in_ledger', 1)} run(s){of_budget}"
    ]


def _lineage_lines(lineage: dict[str, Any] | None) -> list[str]:
    """Against the run before: survival and clusters by relation (`run_changes`)."""
    if not lineage:
        return []
    survival = lineage["survival_by_users"]
    share = "n/a" if survival is None else f"{survival:.0%}"
    relations = ", ".join(f"{k} {v}" for k, v in lineage["clusters_by_relation"].items())
    return [
        f"  since {lineage['previous_run_id']}  base clusters keeping their id {share} "
        f"(by users); {relations}"
    ]


def _audit_lines(audit: dict[str, Any] | None) -> list[str]:
    """The attack suite's verdict on the store after this run (`clio audit-release`)."""
    if audit is None:
        return []
    found = {name: n for name, n in audit["by_attack"].items() if n}
    verdict = f"{audit['findings']} findings {found}" if found else "no findings"
    return [f"  release audit      {verdict}  (details: clio audit-release --db <store>)"]


def _incremental_lines(incremental: dict[str, Any] | None, counts: dict[str, Any]) -> list[str]:
    if not incremental:
        return []
    return [
        f"  incremental        {counts.get('n_already_processed', 0)} already processed, "
        f"{incremental['new_conversations']} new; facet texts assigned "
        f"{incremental['items_assigned']}, beyond the cut-off {incremental['items_unassigned']} "
        f"(max distance {incremental['max_distance']})",
        f"  waiting            {incremental['unassigned_conversations_waiting']} conversations "
        "with unassigned texts, until the next full build (clio run --rebuild)",
    ]


# -- parser -------------------------------------------------------------------
