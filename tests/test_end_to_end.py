"""The whole pipeline through the real CLI: real Presidio, real local model, real
embedder, a real Prefect flow run, real DuckDB files. Run twice: the second run
must cost zero LLM calls and release identical rows."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from clio.gate.public import keyed_ids, release_id_key
from clio.records import Cluster
from tests.cli_run import TEST_HMAC_KEY, clio_subprocess

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
N_SAMPLE = 60
MIN_USERS = 3
MIN_CONVERSATIONS = 3

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

pytestmark = pytest.mark.slow


def _write_sample(path: Path, n: int) -> None:
    sample = ROOT / "clio" / "samples" / "hh_rlhf_harmless_base_test.jsonl.gz"
    with gzip.open(sample, "rt", encoding="utf-8") as src, path.open("w") as dst:
        for i, line in enumerate(src):
            if i == n:
                break
            row = json.loads(line)
            # Two conversations per user, so distinct-user counts differ from conversation counts.
            dst.write(
                json.dumps(
                    {"id": f"s{i:03d}", "user_id": f"user{i // 2}", "transcript": row["chosen"]}
                )
                + "\n"
            )


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    sample = work / "sample.jsonl"
    _write_sample(sample, N_SAMPLE)
    config = work / "config.yaml"
    # bad_lines.jsonl's good and duplicate lines have no user id; this test checks the
    # other quarantine reasons, so it counts them per conversation (test_manifests checks
    # the default, quarantine, through the flow).
    config.write_text(
        "ingest: {missing_user_id: per_conversation}\n"
        f"privacy: {{min_users: {MIN_USERS}, min_conversations: {MIN_CONVERSATIONS}}}\n"
        "cluster: {target_cluster_size: 8}\n"
        "hierarchy: {branching: 2, top_clusters: 2}\n"
        # 64 items in clusters of 8 share few words: folding unnamed clusters would leave
        # two, and this test needs a tree with two parent levels
        "describe: {fold_unnamed: false}\n"
    )
    out = work / "out"
    args = (
        "run",
        "--config",
        str(config),
        "--input",
        str(sample),
        "--input",
        str(FIXTURES / "bad_lines.jsonl"),
        "--output-dir",
        str(out),
    )
    first = clio_subprocess(*args, cwd=work)
    assert first.returncode == 0, first.stderr[-4000:]
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as con:
        snapshot = {
            t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("clusters", "facet_breakdowns")
        }
    manifest_1 = json.loads((out / "private" / "manifest.json").read_text())
    second = clio_subprocess(*args, cwd=work)
    assert second.returncode == 0, second.stderr[-4000:]
    manifest_2 = json.loads((out / "private" / "manifest.json").read_text())
    return {
        "out": out,
        "first": first,
        "snapshot": snapshot,
        "manifest_1": manifest_1,
        "manifest_2": manifest_2,
    }


def test_released_store_has_the_contract_schema(two_runs):
    with duckdb.connect(str(two_runs["out"] / "insights.duckdb"), read_only=True) as con:
        for table, columns in CONTRACT.items():
            got = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            assert got[: len(columns)] == columns, table


def test_every_released_cluster_meets_both_thresholds_in_private_truth(two_runs):
    out = two_runs["out"]
    run_id = two_runs["manifest_2"]["run_id"]
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as con:
        released = con.execute(
            "SELECT cluster_id, level, parent_id, n_users, n_conversations FROM clusters "
            "WHERE run_id = ?",
            [run_id],
        ).fetchall()
    assert released, "the run released no cluster at all"
    assert {r[1] for r in released} >= {0, 1, 2}, "expected base clusters and two parent levels"
    # Released ids are keyed (clio.gate.public): map the private store's ids to them.
    public_id = keyed_ids(release_id_key(TEST_HMAC_KEY), two_runs["manifest_2"]["build_id"])
    with duckdb.connect(str(out / "private" / "private.duckdb"), read_only=True) as con:
        truth = {
            public_id(Cluster(facet, level, cid, None, [])): (users, convs)
            for facet, level, cid, users, convs in con.execute(
                "SELECT m.facet, m.level, m.cluster_id, count(DISTINCT c.user_pseudonym), "
                "count(DISTINCT m.conversation_id) FROM cluster_members m "
                "JOIN conversations c USING (conversation_id) WHERE m.run_id = ? "
                "GROUP BY m.facet, m.level, m.cluster_id",
                [run_id],
            ).fetchall()
        }
    released_ids = {r[0] for r in released}
    for cluster_id, _level, parent_id, n_users, n_conversations in released:
        users, convs = truth[cluster_id]
        assert users >= MIN_USERS and convs >= MIN_CONVERSATIONS, cluster_id
        assert (n_users, n_conversations) == (users, convs), cluster_id
        assert parent_id is None or parent_id in released_ids, cluster_id


def test_quarantine_holds_exactly_the_bad_lines(two_runs):
    expected = json.loads((FIXTURES / "bad_lines_expected.json").read_text())
    run_id = two_runs["manifest_2"]["run_id"]
    with duckdb.connect(str(two_runs["out"] / "private" / "private.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT location, reason FROM quarantine WHERE run_id = ? AND source = ?",
            [run_id, "bad_lines.jsonl"],
        ).fetchall()
    assert dict(rows) == expected
    assert len(rows) == len(expected)
    counts = two_runs["manifest_2"]["counts"]
    assert counts["n_quarantined"] == len(expected)
    assert counts["n_conversations"] == counts["n_input"] - len(expected)


def test_second_run_makes_no_llm_calls_and_releases_identical_rows(two_runs):
    first, second = two_runs["manifest_1"], two_runs["manifest_2"]
    assert first["llm"]["calls"] > 0
    assert second["llm"]["calls"] == 0
    assert second["llm"]["cached_calls"] > 0
    assert first["run_id"] == second["run_id"]
    with duckdb.connect(str(two_runs["out"] / "insights.duckdb"), read_only=True) as con:
        for table, rows in two_runs["snapshot"].items():
            assert con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() == rows, table
        runs = con.execute("SELECT run_id, llm_calls FROM runs").fetchall()
    assert runs == [(second["run_id"], 0)]


def test_released_store_holds_no_conversation_or_user_ids(two_runs):
    out = two_runs["out"]
    with duckdb.connect(str(out / "private" / "private.duckdb"), read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT conversation_id FROM conversations").fetchall()]
        users = [r[0] for r in con.execute("SELECT user_pseudonym FROM conversations").fetchall()]
    released = (out / "insights.duckdb").read_bytes()
    for value in ids + users:
        assert value.encode() not in released, value


def test_report_command_prints_the_last_run(two_runs):
    report = clio_subprocess("report", "--output-dir", str(two_runs["out"]), cwd=two_runs["out"])
    assert report.returncode == 0
    assert two_runs["manifest_2"]["run_id"] in report.stdout
    assert "clusters" in report.stdout


def test_sql_command_reads_and_refuses_writes(two_runs):
    db = str(two_runs["out"] / "insights.duckdb")
    ok = clio_subprocess(
        "sql", "SELECT count(*) AS n FROM runs", "--db", db, "--format", "csv", cwd=ROOT
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["n", "1"]
    refused = clio_subprocess("sql", "DELETE FROM runs", "--db", db, cwd=ROOT)
    assert refused.returncode != 0
    again = clio_subprocess(
        "sql", "SELECT count(*) FROM runs", "--db", db, "--format", "csv", cwd=ROOT
    )
    assert again.stdout.split()[-1] == "1"


def test_everything_the_run_writes_is_under_the_output_dir(two_runs):
    out = two_runs["out"]
    for name in (
        "insights.duckdb",
        "manifest.json",
        "private/manifest.json",
        "private/private.duckdb",
        "logs/clio.log",
    ):
        assert (out / name).exists(), name
    assert (out / "prefect").is_dir()


def test_safety_team_browses_the_real_release_in_chromium(two_runs):
    """Open the page over the release the real flow built: tree, cluster, search, map."""
    from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS, Watched
    from tests.web_fixtures import running_server

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    db = two_runs["out"] / "insights.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        top_id, top_name = con.execute(
            "SELECT cluster_id, name FROM clusters WHERE parent_id IS NULL "
            "ORDER BY n_users DESC, cluster_id LIMIT 1"
        ).fetchone()
        child_id, child_name = con.execute(
            "SELECT cluster_id, name FROM clusters WHERE parent_id = ? "
            "ORDER BY n_users DESC, cluster_id LIMIT 1",
            [top_id],
        ).fetchone()
        n_base = con.execute("SELECT count(*) FROM clusters WHERE level = 0").fetchone()[0]
    with sync_playwright() as playwright, running_server(db) as base:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        watched = Watched(browser)
        page = watched.page
        page.goto(base + "/")
        top_row = page.locator(f'[data-cluster-id="{top_id}"] > summary')
        expect(top_row).to_contain_text(top_name)
        child_row = page.locator(f'[data-cluster-id="{child_id}"] > summary')
        expect(child_row).to_be_hidden()
        top_row.locator(".twisty").click()
        expect(child_row).to_be_visible()
        watched.shot("real-flow-tree")
        page.goto(f"{base}/cluster/{child_id}")
        expect(page.locator("#cluster-name")).to_have_text(child_name)
        watched.shot("real-flow-cluster")
        word = child_name.split()[0]
        page.fill("#search-input", word)
        page.press("#search-input", "Enter")
        expect(page.locator("#results > li").first).to_be_visible()
        page.click("text=Map")
        expect(page.locator("#cluster-map .map-point")).to_have_count(n_base)
        watched.shot("real-flow-map")
        assert watched.errors == []
        missing = page.goto(base + "/cluster/does-not-exist")
        assert missing is not None and missing.status == 404
        browser.close()


def test_a_killed_run_resumes_from_its_caches(two_runs, tmp_path):
    """SIGKILL a run in the middle of the LLM stage, run again: it finishes, reuses the
    answers paid for before the kill, and releases the same rows as an uninterrupted run."""
    import signal
    import time

    work = two_runs["out"].parent
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "clio.cli",
        "run",
        "--config",
        str(work / "config.yaml"),
        "--input",
        str(work / "sample.jsonl"),
        "--input",
        str(FIXTURES / "bad_lines.jsonl"),
        "--output-dir",
        str(out),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["CLIO_HMAC_KEY"] = TEST_HMAC_KEY
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    log = out / "logs" / "clio.log"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if "facets:" in text and "call (" in text:  # a progress line: some answers are cached
            break
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "insights.duckdb").exists()  # nothing half-released

    resumed = clio_subprocess(*args[3:], cwd=work)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    manifest = json.loads((out / "private" / "manifest.json").read_text())
    first = two_runs["manifest_1"]["llm"]
    assert manifest["llm"]["cached_calls"] > 0
    assert manifest["llm"]["calls"] < first["calls"]
    assert manifest["run_id"] == two_runs["manifest_2"]["run_id"]
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as con:
        for table, rows in two_runs["snapshot"].items():
            assert con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() == rows, table
