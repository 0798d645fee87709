"""`clio export-html`: one self-contained HTML file of the web page's views.

The released data (every run's clusters, breakdown charts, history, map
layout and "What changed" sections, computed by the same `clio.web.model`
functions as the server's pages) is embedded as JSON in a
`<script type="application/json">` block; inline CSS (the served stylesheet)
and inline JS (`static/export.js`) render the tree, cluster pages, what
changed, map and search from it, from file:// with no server and no network.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from clio.released import CONCERNING_AT, ReleasedCluster
from clio.web import model
from clio.web.app import TEMPLATES_DIR, static_file
from clio.web.released import Change, ReleasedStore

# The exported page is meant to be shared: readable by all, as the released store is.
EXPORT_MODE = 0o644
HTML_SUFFIXES = (".html", ".htm")


class OutputRefused(ValueError):
    """`--out` names a file the export must not replace (the store, or a file that is
    not HTML)."""


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    n_runs: int
    n_clusters: int  # rows over all runs
    n_bytes: int


def export_html(db_path: Path | str, out_path: Path | str) -> ExportSummary:
    """Write the released store at `db_path` as one HTML file at `out_path` (atomically).

    The page is written to a new file that `mkstemp` creates in the target
    directory (exclusively, so a symlink planted at a guessable temporary name is
    never followed), then renamed over `out_path`, which replaces a symlink there
    rather than writing through it.
    """
    out = Path(out_path)
    check_output(Path(db_path), out)
    store = ReleasedStore(db_path)
    data = export_data(store)
    html = render_export(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(html)
            os.fchmod(handle.fileno(), EXPORT_MODE)
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    n_clusters = sum(len(clusters) for clusters in data["clusters"].values())
    return ExportSummary(out, len(data["runs"]), n_clusters, out.stat().st_size)


def check_output(db: Path, out: Path) -> None:
    """Refuse an `out` that would replace the store being exported or any existing file
    that is not an HTML page (a typo must not turn a database or manifest into HTML)."""
    if out.resolve() == db.resolve() or (
        out.exists() and db.exists() and os.path.samefile(out, db)
    ):
        raise OutputRefused(f"--out {out} is the store being exported; choose another file")
    if out.is_dir():
        raise OutputRefused(f"--out {out} is a directory; give a file name")
    if out.exists() and out.suffix.lower() not in HTML_SUFFIXES:
        raise OutputRefused(
            f"--out {out} exists and is not an HTML file; it is left as it is "
            "(remove it or choose a name ending in .html)"
        )


def export_data(store: ReleasedStore) -> dict[str, Any]:
    """Everything the exported page shows, as plain JSON-able data."""
    runs = store.runs()
    clusters: dict[str, list[dict[str, Any]]] = {}
    charts: dict[str, dict[str, list[dict[str, Any]]]] = {}
    maps: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    changes: dict[str, dict[str, Any]] = {}
    for run in runs:
        changes[run.run_id] = _changes(store, run.run_id)
        rows = store.clusters(run.run_id)
        by_id = {c.cluster_id: c for c in rows}
        clusters[run.run_id] = [_cluster(c) for c in rows]
        cells: dict[str, list] = {}
        for cell in store.breakdowns(run.run_id):
            cells.setdefault(cell.cluster_id, []).append(cell)
        charts[run.run_id] = {
            cluster_id: [
                {
                    "facet": chart.facet,
                    "title": chart.title,
                    "bars": [bar.__dict__ for bar in chart.bars],
                }
                for chart in model.breakdown_charts(by_id[cluster_id], cluster_cells)
            ]
            for cluster_id, cluster_cells in cells.items()
            if cluster_id in by_id
        }
        maps[run.run_id] = {
            facet: {
                str(level): [
                    {
                        "id": p.cluster.cluster_id,
                        "cx": p.cx,
                        "cy": p.cy,
                        "r": p.r,
                        "label": p.label,
                        "lx": p.label_x,
                        "ly": p.label_y,
                    }
                    for p in model.map_points(rows, facet, level)
                ]
                for level in levels
            }
            for facet, levels in model.map_levels(rows).items()
        }
    history = {
        cluster_id: [
            {
                "run_id": p.run_id,
                "finished": model.format_when(p.finished_at),
                "name": p.name,
                "n_users": p.n_users,
                "n_conversations": p.n_conversations,
                "share": p.share,
                "concern_mean": _finite(p.concern_mean),
            }
            for p in points
        ]
        for cluster_id, points in store.history().items()
    }
    return {
        "source": store.path.name,
        "exported_at": model.format_when(datetime.now(UTC).replace(tzinfo=None)),
        "runs": [
            {
                "run_id": r.run_id,
                "finished": model.format_when(r.finished_at),
                "config_hash": r.config_hash,
                "min_users": r.min_users,
                "min_conversations": r.min_conversations,
                "n_conversations": r.n_conversations,
            }
            for r in runs
        ],
        "clusters": clusters,
        "charts": charts,
        "maps": maps,
        "history": history,
        "changes": changes,
        "changes_note": model.CHANGES_NOTE,
        "no_previous_run": model.NO_PREVIOUS_RUN,
        "map_size": [model.MAP_WIDTH, model.MAP_HEIGHT],
        "concern_labels": {str(k): v for k, v in model.CONCERN_LABELS.items()},
        "concerning_at": CONCERNING_AT,
    }


def render_export(data: dict[str, Any]) -> str:
    css = static_file("clio.css").decode("utf-8")
    script = static_file("export.js").decode("utf-8")
    favicon = static_file("favicon.svg").decode("utf-8")
    for name, text, closing in (("clio.css", css, "</style"), ("export.js", script, "</script")):
        if closing in text.lower():
            raise ValueError(f"{name} cannot be inlined: it contains {closing}")
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=select_autoescape(["html"])
    )
    return env.get_template("export.html").render(
        css=css,
        script=script,
        favicon=favicon,
        data_json=script_json(data),
        source=data["source"],
        exported_at=data["exported_at"],
    )


def script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` can end it or open a comment."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _cluster(c: ReleasedCluster) -> dict[str, Any]:
    return {
        "id": c.cluster_id,
        "facet": c.facet,
        "level": c.level,
        "parent_id": c.parent_id,
        "name": c.name,
        "description": c.description,
        "keywords": list(c.keywords),
        "n_users": c.n_users,
        "n_conversations": c.n_conversations,
        "share": c.share,
        "concern_mean": _finite(c.concern_mean),
    }


def _changes(store: ReleasedStore, run_id: str) -> dict[str, Any]:
    """The run's "What changed" sections, as the server's `/changes` page shows them."""
    previous, changes = store.changes(run_id)
    return {
        "previous_run_id": previous,
        "groups": [
            {
                "key": group.key,
                "title": group.title,
                "note": group.note,
                "rows": [_change(c) for c in group.rows],
            }
            for group in model.change_groups(changes)
        ],
    }


def _change(c: Change) -> dict[str, Any]:
    return {
        **asdict(c),
        "concern_mean": _finite(c.concern_mean),
        "concern_change": _finite(c.concern_change),
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
