"""`clio export-html`: one self-contained HTML file of the web page's views.

The released data (every run's clusters, breakdown charts, history and map
layout, computed by the same `clio.web.model` functions as the server's pages)
is embedded as JSON in a `<script type="application/json">` block; inline CSS
(the served stylesheet) and inline JS (`static/export.js`) render the tree,
cluster pages, map and search from it, from file:// with no server and no
network.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from clio.released import CONCERNING_AT, ReleasedCluster
from clio.web import model
from clio.web.app import TEMPLATES_DIR, static_file
from clio.web.released import ReleasedStore


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    n_runs: int
    n_clusters: int  # rows over all runs
    n_bytes: int


def export_html(db_path: Path | str, out_path: Path | str) -> ExportSummary:
    """Write the released store at `db_path` as one HTML file at `out_path` (atomically)."""
    store = ReleasedStore(db_path)
    data = export_data(store)
    html = render_export(data)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        temp.write_text(html, encoding="utf-8")
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    n_clusters = sum(len(clusters) for clusters in data["clusters"].values())
    return ExportSummary(out, len(data["runs"]), n_clusters, out.stat().st_size)


def export_data(store: ReleasedStore) -> dict[str, Any]:
    """Everything the exported page shows, as plain JSON-able data."""
    runs = store.runs()
    clusters: dict[str, list[dict[str, Any]]] = {}
    charts: dict[str, dict[str, list[dict[str, Any]]]] = {}
    maps: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    for run in runs:
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


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
