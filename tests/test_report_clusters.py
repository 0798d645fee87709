"""The run report's top clusters by name, read from the released store alone."""

from __future__ import annotations

from pathlib import Path

import duckdb

from clio.released import create_tables, create_views
from clio.run_report import render_report


def _store(path: Path, rows: list[tuple[str, int, str, str | None, str, int]]) -> None:
    with duckdb.connect(str(path)) as con:
        create_tables(con)
        create_views(con)
        for facet, level, cluster_id, parent, name, users in rows:
            con.execute(
                "INSERT INTO clusters VALUES ('run-1', ?, ?, ?, ?, ?, '', [], ?, ?, 0.5, "
                "NULL, NULL, NULL)",
                [facet, level, cluster_id, parent, name, users, users],
            )
        con.execute(
            "INSERT INTO clusters VALUES ('run-0', 'request', 1, 'old', NULL, 'Last run', '', "
            "[], 99, 99, 1.0, NULL, NULL, NULL)"
        )


def test_top_clusters_with_their_largest_children(tmp_path):
    store = tmp_path / "insights.duckdb"
    _store(
        store,
        [
            ("request", 1, "r1", None, "Cooking at home", 40),
            ("request", 0, "a", "r1", "Baking bread", 9),
            ("request", 0, "b", "r1", "Vegetarian lasagna", 12),
            ("request", 0, "c", "r1", "Soups", 7),
            ("request", 0, "d", "r1", "Knife skills", 5),
            ("request", 1, "r2", None, "Debugging code", 55),
            ("request", 0, "e", "gone", "Orphan whose parent was suppressed", 6),
            ("values", 0, "v", None, "Honesty", 8),
        ],
    )
    manifest = {
        "audience": "public",
        "run_id": "run-1",
        "config_hash": "h",
        "mode": "full",
        "mode_reason": "full build",
        "llm": {"backend": "local", "model": "m"},
        "release": {
            "clusters_built": 9,
            "clusters_released": 8,
            "clusters_released_by_level": {},
            "breakdown_cells_released": 0,
            "suppressed": {},
        },
        "withheld": "counts are in the operator manifest",
    }
    lines = render_report(manifest, store).splitlines()
    start = lines.index("  top clusters       request (3 at the top; distinct users)")
    assert lines[start + 1 :] == [
        "    Debugging code (55)",
        "    Cooking at home (40)",
        "      Vegetarian lasagna (12); Baking bread (9); Soups (7)",  # the largest 3
        "    Orphan whose parent was suppressed (6)",
        "  top clusters       values (1 at the top; distinct users)",
        "    Honesty (8)",
    ]
    assert "Last run" not in "\n".join(lines)  # this run's clusters only
    assert "top clusters" not in render_report(manifest, tmp_path / "missing.duckdb")
