"""The released store: contract schema, accumulated runs, atomic writes; the run manifest."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from clio.config import PrivacyConfig
from clio.gate import GateResult, UnsealedGateResult, apply_gate
from clio.manifest import write_manifest
from clio.records import Cluster
from clio.release import write_release
from clio.released import ReleasedBreakdown, ReleasedCluster, RunRow, read_only_connect
from tests.ungated import ungated_result

REPO = Path(__file__).resolve().parents[1]

CONTRACT = {
    "runs": [
        "run_id",
        "started_at",
        "finished_at",
        "config_hash",
        "min_users",
        "min_conversations",
        "n_input",
        "n_quarantined",
        "n_conversations",
        "llm_calls",
        "llm_cached_calls",
        "input_tokens",
        "output_tokens",
    ],
    "clusters": [
        "run_id",
        "facet",
        "level",
        "cluster_id",
        "parent_id",
        "name",
        "description",
        "keywords",
        "n_users",
        "n_conversations",
        "share",
        "concern_mean",
        "x",
        "y",
    ],
    "facet_breakdowns": ["run_id", "cluster_id", "facet", "value", "n_users", "n_conversations"],
}
VIEWS = [
    "cluster_languages",
    "concerning_clusters",
    "latest_run_clusters",
    "run_changes",
    "top_clusters",
]


def run_row(run_id: str, day: int = 1, min_users: int = 2, min_conversations: int = 2) -> RunRow:
    started = datetime(2024, 5, day, 8, 0, 0)
    return RunRow(
        run_id=run_id,
        started_at=started,
        finished_at=started + timedelta(minutes=5),
        config_hash="cfg" + run_id,
        min_users=min_users,
        min_conversations=min_conversations,
        n_input=100 + day,
        n_quarantined=day,
        n_conversations=99,
        llm_calls=10,
        llm_cached_calls=4,
        input_tokens=1000,
        output_tokens=200,
    )


def cluster(cluster_id: str, n: int = 5, **fields) -> ReleasedCluster:
    values = dict(
        facet="request",
        level=0,
        cluster_id=cluster_id,
        parent_id=None,
        name=f"name {cluster_id}",
        description=f"about {cluster_id}",
        keywords=["alpha", "beta"],
        n_users=n,
        n_conversations=n + 1,
        share=0.25,
        concern_mean=None,
        x=0.5,
        y=-1.5,
    )
    values.update(fields)
    return ReleasedCluster(**values)


def gate_result(*clusters: ReleasedCluster, breakdowns=()) -> GateResult:
    return ungated_result(clusters, breakdowns)


def rows(path: Path, sql: str) -> list[tuple]:
    connection = read_only_connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def test_schema_and_views_match_the_contract(tmp_path):
    store = tmp_path / "insights.duckdb"
    write_release(store, run_row("r1"), gate_result(cluster("k1")))

    for table, columns in CONTRACT.items():
        found = rows(
            store,
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_name = '{table}' ORDER BY ordinal_position",
        )
        assert [c for (c,) in found] == columns
    assert rows(
        store,
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'clusters' AND column_name = 'keywords'",
    ) == [("VARCHAR[]",)]
    views = rows(store, "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal")
    assert sorted(name for name, _ in views) == VIEWS
    assert all(comment for _, comment in views)


def test_rows_round_trip(tmp_path):
    store = tmp_path / "insights.duckdb"
    parent = cluster("p", n=9, level=1, keywords=[], concern_mean=3.5, x=None, y=None)
    child = cluster("c", n=4, parent_id="p", share=0.125)
    cell = ReleasedBreakdown("p", "language", "en", 3, 4)
    write_release(store, run_row("r1"), gate_result(child, parent, breakdowns=[cell]))

    assert rows(store, "SELECT * FROM clusters ORDER BY cluster_id") == [
        ("r1", "request", 0, "c", "p", "name c", "about c", ["alpha", "beta"], 4, 5, 0.125,
         None, 0.5, -1.5),
        ("r1", "request", 1, "p", None, "name p", "about p", [], 9, 10, 0.25, 3.5, None, None),
    ]  # fmt: skip
    assert rows(store, "SELECT * FROM facet_breakdowns") == [("r1", "p", "language", "en", 3, 4)]
    assert rows(store, "SELECT * FROM runs") == [
        ("r1", datetime(2024, 5, 1, 8), datetime(2024, 5, 1, 8, 5), "cfgr1", 2, 2, 101, 1, 99,
         10, 4, 1000, 200)
    ]  # fmt: skip


def test_aware_times_are_stored_as_utc(tmp_path):
    store = tmp_path / "insights.duckdb"
    plus_two = timezone(timedelta(hours=2))
    run = RunRow(
        **{
            **run_row("r1").__dict__,
            "started_at": datetime(2024, 5, 1, 10, 0, tzinfo=plus_two),
            "finished_at": datetime(2024, 5, 1, 8, 30, tzinfo=UTC),
        }
    )
    write_release(store, run, gate_result(cluster("k1")))
    assert rows(store, "SELECT started_at, finished_at FROM runs") == [
        (datetime(2024, 5, 1, 8, 0), datetime(2024, 5, 1, 8, 30))
    ]


def test_runs_accumulate_and_a_rerun_replaces_its_own_rows(tmp_path):
    store = tmp_path / "insights.duckdb"
    write_release(store, run_row("r1", day=1), gate_result(cluster("a"), cluster("b")))
    write_release(store, run_row("r2", day=2), gate_result(cluster("c")))
    snapshot = rows(store, "SELECT * FROM clusters ORDER BY run_id, cluster_id")

    write_release(store, run_row("r2", day=2), gate_result(cluster("c")))
    assert rows(store, "SELECT * FROM clusters ORDER BY run_id, cluster_id") == snapshot

    cell = ReleasedBreakdown("d", "language", "fr", 2, 2)
    write_release(store, run_row("r2", day=3), gate_result(cluster("d"), breakdowns=[cell]))
    assert rows(store, "SELECT run_id, cluster_id FROM clusters ORDER BY 1, 2") == [
        ("r1", "a"),
        ("r1", "b"),
        ("r2", "d"),
    ]
    assert rows(store, "SELECT run_id, n_input FROM runs ORDER BY 1") == [("r1", 101), ("r2", 103)]
    assert rows(store, "SELECT run_id, cluster_id, value FROM facet_breakdowns") == [
        ("r2", "d", "fr")
    ]
    assert rows(store, "SELECT run_id, cluster_id FROM latest_run_clusters") == [("r2", "d")]


def test_views_answer_their_questions(tmp_path):
    store = tmp_path / "insights.duckdb"
    clusters = [
        cluster("big", n=20, concern_mean=1.5),
        cluster("mid", n=10, concern_mean=3.0),
        cluster("small", n=3, concern_mean=4.5),
        cluster("other-facet", n=7, facet="task", concern_mean=None),
    ]
    cells = [
        ReleasedBreakdown("big", "language", "en", 15, 16),
        ReleasedBreakdown("big", "language", "fr", 5, 5),
        ReleasedBreakdown("big", "concerning", "1", 20, 21),
    ]
    write_release(store, run_row("r1"), gate_result(*clusters, breakdowns=cells))

    assert rows(store, "SELECT facet, cluster_id, rank FROM top_clusters") == [
        ("request", "big", 1),
        ("request", "mid", 2),
        ("request", "small", 3),
        ("task", "other-facet", 1),
    ]
    assert rows(
        store,
        "SELECT cluster_id, cluster_name, language, n_users, share_of_cluster "
        "FROM cluster_languages",
    ) == [("big", "name big", "en", 15, 16 / 21), ("big", "name big", "fr", 5, 5 / 21)]
    assert rows(store, "SELECT cluster_id, concern_mean FROM concerning_clusters") == [
        ("small", 4.5),
        ("mid", 3.0),
    ]


@pytest.mark.parametrize(
    "not_a_gate_result",
    [
        {"clusters": [], "breakdowns": []},
        [cluster("k1")],
        None,
    ],
)
def test_only_a_gate_result_is_accepted(tmp_path, not_a_gate_result):
    store = tmp_path / "insights.duckdb"
    with pytest.raises(TypeError, match="only a GateResult"):
        write_release(store, run_row("r1"), not_a_gate_result)
    assert not store.exists()


def _gated() -> GateResult:
    """A real gate result: one base cluster of 5 users."""
    members = [f"c{i}" for i in range(5)]
    return apply_gate(
        [Cluster("request", 0, "k1", None, members, name="Travel", description="Trips")],
        {m: f"user-{m}" for m in members},
        {m: {"language": "en"} for m in members},
        PrivacyConfig(min_users=2, min_conversations=2, audit_released_text=False),
        breakdown_facets=["language"],
    )


def test_a_result_of_the_gate_is_written(tmp_path):
    store = tmp_path / "insights.duckdb"
    write_release(store, run_row("r1"), _gated())
    assert rows(store, "SELECT cluster_id, n_users FROM clusters") == [("k1", 5)]


def _edited_in_place(result: GateResult) -> GateResult:
    result.clusters[0].keywords.append("added")
    return result


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: GateResult(r.clusters, r.breakdowns, r.suppressed), "carries no seal"),
        (lambda r: replace(r, clusters=[replace(r.clusters[0], n_users=9)]), "does not match"),
        (lambda r: replace(r, breakdowns=[]), "does not match"),
        (lambda r: replace(r, suppressed={"below_min_users": 1}), "does not match"),
        (_edited_in_place, "does not match"),
    ],
    ids=["built by hand", "a figure edited", "cells dropped", "report edited", "list mutated"],
)
def test_a_result_the_gate_did_not_seal_is_refused(tmp_path, change, message):
    store = tmp_path / "insights.duckdb"
    with pytest.raises(UnsealedGateResult, match=message):
        write_release(store, run_row("r1"), change(_gated()))
    assert not store.exists()


SEAL_IN_A_CHILD = """
import pickle
import sys

from clio.released import ReleasedCluster
from tests.ungated import ungated_result

row = ReleasedCluster("request", 0, "k1", None, "n", "d", [], 5, 5, 1.0, None, None, None)
sys.stdout.buffer.write(pickle.dumps(ungated_result([row])))
"""


def test_a_result_sealed_by_another_process_is_refused(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.run(
        [sys.executable, "-c", SEAL_IN_A_CHILD], env=env, capture_output=True, check=True
    )
    result = pickle.loads(child.stdout)
    assert result.seal  # sealed, with the child's key
    with pytest.raises(UnsealedGateResult, match="another process"):
        write_release(tmp_path / "insights.duckdb", run_row("r1"), result)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (gate_result(cluster("k1", n=1)), "below the run's thresholds"),
        (gate_result(cluster("k1", parent_id="gone")), "without its parent"),
        (gate_result(cluster("k1"), cluster("k1")), "appears twice"),
        (
            gate_result(
                cluster("k1"), breakdowns=[ReleasedBreakdown("k2", "language", "en", 5, 5)]
            ),
            "unreleased cluster",
        ),
        (
            gate_result(
                cluster("k1"), breakdowns=[ReleasedBreakdown("k1", "language", "en", 1, 5)]
            ),
            "below the thresholds",
        ),
    ],
)
def test_rows_the_gate_could_not_have_produced_are_refused(tmp_path, result, message):
    store = tmp_path / "insights.duckdb"
    write_release(store, run_row("r0"), gate_result(cluster("k0")))
    before = store.read_bytes()
    with pytest.raises(ValueError, match=message):
        write_release(store, run_row("r1"), result)
    assert store.read_bytes() == before


def test_a_failure_mid_write_leaves_the_previous_release_untouched(tmp_path):
    store = tmp_path / "insights.duckdb"
    write_release(store, run_row("r1"), gate_result(cluster("a")))
    before = store.read_bytes()
    duplicate_cell = ReleasedBreakdown("b", "language", "en", 3, 3)
    with pytest.raises(duckdb.ConstraintException):
        write_release(
            store, run_row("r2"), gate_result(cluster("b"), breakdowns=[duplicate_cell] * 2)
        )
    assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["insights.duckdb", "insights.duckdb.lock"]


def test_an_unreadable_previous_release_is_a_clear_error(tmp_path):
    store = tmp_path / "insights.duckdb"
    store.write_bytes(b"not a database")
    with pytest.raises(RuntimeError, match="cannot open the previous release"):
        write_release(store, run_row("r1"), gate_result(cluster("a")))
    assert store.read_bytes() == b"not a database"
    assert not list(tmp_path.glob("insights.duckdb.tmp-*"))


def test_read_only_connect_refuses_writes_and_files(tmp_path):
    store = tmp_path / "insights.duckdb"
    write_release(store, run_row("r1"), gate_result(cluster("a")))
    (tmp_path / "outside.csv").write_text("secret\n1\n")
    connection = read_only_connect(store)
    try:
        with pytest.raises(duckdb.Error, match="read-only"):
            connection.execute("DELETE FROM clusters")
        with pytest.raises(duckdb.PermissionException):
            connection.execute(f"SELECT * FROM read_csv('{tmp_path / 'outside.csv'}')")
    finally:
        connection.close()
    assert rows(store, "SELECT count(*) FROM clusters") == [(1,)]
    with pytest.raises(FileNotFoundError, match="no released store"):
        read_only_connect(tmp_path / "missing.duckdb")


def test_no_member_ids_or_user_ids_reach_the_store(tmp_path):
    users = {f"conv-{i:03d}": f"pseudonym-{i % 7:03d}" for i in range(30)}
    values = {c: {"language": "en", "concerning": 2.0} for c in users}
    tree = [
        Cluster("request", 1, "top", None, [], name="Top", keywords=["k"]),
        Cluster("request", 0, "a", "top", [f"conv-{i:03d}" for i in range(15)], name="A"),
        Cluster("request", 0, "b", "top", [f"conv-{i:03d}" for i in range(15, 30)], name="B"),
    ]
    result = apply_gate(
        tree,
        users,
        values,
        PrivacyConfig(min_users=2, min_conversations=2),
        breakdown_facets=["language", "concerning"],
    )
    store = tmp_path / "insights.duckdb"
    write_release(store, run_row("r1"), result)

    everything = []
    for table in CONTRACT:
        for row in rows(store, f"SELECT * FROM {table}"):
            everything.extend(str(value) for value in row)
    assert len(rows(store, "SELECT * FROM facet_breakdowns")) == 6
    assert not [v for v in everything if "conv-" in v or "pseudonym-" in v]
    assert "conv-" not in store.read_bytes().decode("latin-1")


CHILD_WRITER = """
import sys
from datetime import datetime
from pathlib import Path

from clio.release import write_release
from clio.released import ReleasedBreakdown, ReleasedCluster, RunRow
from tests.ungated import ungated_result

n_cells = int(sys.argv[2])
clusters = [
    ReleasedCluster("request", 0, f"k{i}", None, "n", "d", ["w"], 5, 5, 0.1, None, 0.0, 0.0)
    for i in range(1000)
]
cells = [ReleasedBreakdown(f"k{i % 1000}", "language", f"v{i}", 5, 5) for i in range(n_cells)]
run = RunRow("big", datetime(2024, 6, 1), datetime(2024, 6, 1, 1), "h", 2, 2, 1, 0, 1, 0, 0, 0, 0)
write_release(Path(sys.argv[1]), run, ungated_result(clusters, cells))
print("finished")
"""


def test_a_writer_killed_mid_write_leaves_the_previous_release(tmp_path):
    store = tmp_path / "insights.duckdb"
    write_release(store, run_row("r1"), gate_result(cluster("a"), cluster("b")))
    previous = {table: rows(store, f"SELECT * FROM {table} ORDER BY ALL") for table in CONTRACT}

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_WRITER, str(store), "400000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Kill once the temp file has a write-ahead log: the new store is being written.
    writing = tmp_path / f"insights.duckdb.tmp-{child.pid}.wal"
    deadline = time.monotonic() + 120
    while not writing.exists() and child.poll() is None:
        assert time.monotonic() < deadline, "the writer never started writing its temp file"
        time.sleep(0.001)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()

    assert list(tmp_path.glob(f"insights.duckdb.tmp-{child.pid}*"))  # killed mid-write
    assert {table: rows(store, f"SELECT * FROM {table} ORDER BY ALL") for table in CONTRACT} == (
        previous
    )

    write_release(store, run_row("r2", day=2), gate_result(cluster("c")))
    assert rows(store, "SELECT run_id, cluster_id FROM clusters ORDER BY ALL") == [
        ("r1", "a"),
        ("r1", "b"),
        ("r2", "c"),
    ]
    assert not list(tmp_path.glob("insights.duckdb.tmp-*"))


# -- the manifest -----------------------------------------------------------------


def test_manifest_is_sorted_json_and_replaced_atomically(tmp_path):
    path = tmp_path / "runs" / "manifest.json"
    write_manifest(path, {"b": 1, "a": {"z": [1, 2], "y": datetime(2024, 5, 1, 8)}, "p": path})
    text = path.read_text(encoding="utf-8")
    assert text == (
        "{\n"
        '  "a": {\n'
        '    "y": "2024-05-01T08:00:00",\n'
        '    "z": [\n'
        "      1,\n"
        "      2\n"
        "    ]\n"
        "  },\n"
        '  "b": 1,\n'
        f'  "p": "{path}"\n'
        "}\n"
    )
    write_manifest(path, {"run_id": "r2"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"run_id": "r2"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": object()}, {"x": {1, 2}}])
def test_a_manifest_that_is_not_json_leaves_the_old_one(tmp_path, bad):
    path = tmp_path / "manifest.json"
    write_manifest(path, {"run_id": "r1"})
    before = path.read_bytes()
    with pytest.raises((TypeError, ValueError)):
        write_manifest(path, bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_a_manifest_with_a_mode_has_exactly_that_mode_whatever_the_umask(tmp_path):
    path = tmp_path / "manifest.json"
    write_manifest(path, {"run_id": "r1"})  # an older file, readable by others
    os.chmod(path, 0o644)
    old_umask = os.umask(0)
    try:
        write_manifest(path, {"run_id": "r2"}, mode=0o600)
    finally:
        os.umask(old_umask)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert json.loads(path.read_text(encoding="utf-8")) == {"run_id": "r2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
