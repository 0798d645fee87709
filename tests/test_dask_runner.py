"""The flow on Prefect's Dask task runner (a local cluster of 2 worker processes) releases
exactly what the default runner releases: every row of every released table, run
timestamps aside. Scrub, facets and embeddings run there in several partitions, each
writing its own shard that the flow merges, and no shard is left behind."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.cli_run import run_clio
from tests.fakes.loopback import LoopbackServer
from tests.test_incremental import B_ON_TOPIC, A, answer, write_config, write_jsonl

pytestmark = pytest.mark.slow

QUERIES = {
    "runs": "SELECT * EXCLUDE (started_at, finished_at) FROM runs ORDER BY ALL",
    "clusters": "SELECT * EXCLUDE (share, x, y), round(share, 9), round(x, 6), round(y, 6) "
    "FROM clusters ORDER BY ALL",
    "facet_breakdowns": "SELECT * FROM facet_breakdowns ORDER BY ALL",
}


def _released(out: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as con:
        return {table: con.execute(sql).fetchall() for table, sql in QUERIES.items()}


def test_dask_runner_releases_what_the_default_runner_releases(tmp_path):
    data = write_jsonl(tmp_path / "chats.jsonl", A + B_ON_TOPIC)
    with LoopbackServer(answer) as server:
        default_config = write_config(tmp_path / "default.yaml", server.url)
        dask_config = write_config(tmp_path / "dask.yaml", server.url, "dask", partition_size=10)
        run_clio(default_config, data, tmp_path / "default", cwd=tmp_path)
        run_clio(dask_config, data, tmp_path / "dask", cwd=tmp_path)

    default_manifest = json.loads((tmp_path / "default" / "private" / "manifest.json").read_text())
    dask_manifest = json.loads((tmp_path / "dask" / "private" / "manifest.json").read_text())
    n = len(A) + len(B_ON_TOPIC)
    assert default_manifest["runner"]["kind"] == "default"
    assert dask_manifest["runner"]["kind"] == "dask"
    # 10 conversations a partition: every partitioned stage ran in several tasks.
    expected = -(-n // 10)
    assert dask_manifest["runner"]["partitions"] == {
        "scrub": expected,
        "facets": expected,
        "embed": expected,
    }
    assert default_manifest["runner"]["partitions"]["scrub"] == 1
    assert dask_manifest["counts"]["n_conversations"] == n

    default_rows, dask_rows = _released(tmp_path / "default"), _released(tmp_path / "dask")
    assert all(default_rows[table] for table in QUERIES), default_rows
    assert dask_rows == default_rows
    assert list((tmp_path / "dask" / "private" / "shards").iterdir()) == []
