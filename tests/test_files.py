"""The commands and files an analyst or another local user can reach: `clio sql` refuses
the private store and runs within limits, the private directory is its owner's only,
and `clio export-html` writes nothing but its own page."""

from __future__ import annotations

import os
import stat
import tempfile
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from clio.cli import build_parser, main
from clio.pipeline.paths import RunPaths
from clio.records import Message, ScrubbedConversation
from clio.released import PRIVATE_TABLES, NotAReleasedStore, read_only_connect
from clio.sql import DEFAULT_LIMITS, LimitExceeded, QueryLimits, run_query, write_parquet
from clio.store import PrivateStore, make_private_dir
from clio.web.export import OutputRefused, export_html
from clio.web.released import ReleasedStore
from tests.cli_run import clio_subprocess
from tests.web_fixtures import Release, build_release

SECRET_TEXT = "my card is 4111 and I live at Elm Street"
# A query no limit lets finish: 10^12 rows joined (it ran until killed without limits).
CROSS_JOIN = "SELECT count(*) FROM range(1000000) a, range(1000000) b WHERE a.range + b.range = -1"
# A full sort of 2*10^7 strings: more than a small memory limit holds.
BIG_SORT = (
    "SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY range::VARCHAR DESC) AS r "
    "FROM range(20000000))"
)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    return build_release(tmp_path_factory.mktemp("outputs") / "insights.duckdb")


@pytest.fixture(scope="module")
def private(release: Release) -> Path:
    """A real private store, where a run keeps it: beside the release, under private/."""
    path = RunPaths(release.path.parent).private
    conversation = ScrubbedConversation(
        conversation_id="c1",
        user_pseudonym="u1",
        timestamp=datetime(2024, 5, 1),
        messages=(Message("user", SECRET_TEXT),),
        source="in.jsonl",
        content_hash="h1",
        n_pii_spans=0,
    )
    with PrivateStore(path) as store:
        store.put_conversations([conversation], "run-1")
        store.get_or_create_secret("hmac_key")
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- clio sql refuses anything but a released store -------------------------------------


@pytest.mark.parametrize("query", ["SELECT * FROM conversations", "SELECT * FROM secrets"])
def test_clio_sql_refuses_the_private_store(private, query, tmp_path):
    done = clio_subprocess("sql", query, "--db", str(private), "--format", "json", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "is not a released store" in done.stderr
    assert "Traceback" not in done.stderr
    assert SECRET_TEXT not in done.stdout + done.stderr
    assert done.stdout == ""


def test_every_reader_refuses_a_shard_or_a_file_with_private_tables(private, release, tmp_path):
    shard = tmp_path / "private" / "shards" / "scrub-0000.duckdb"
    PrivateStore(shard).close()
    mixed = tmp_path / "mixed.duckdb"  # the released tables, and one private table too
    connection = duckdb.connect(str(mixed))
    for table in ("runs", "clusters", "facet_breakdowns", "secrets"):
        connection.execute(f"CREATE TABLE {table} (a INTEGER)")
    connection.close()
    other = tmp_path / "other.duckdb"  # any other database: not a release either
    duckdb.connect(str(other)).close()
    for path in (private, shard, mixed, other):
        with pytest.raises(NotAReleasedStore, match="is not a released store"):
            read_only_connect(path)
        with pytest.raises(NotAReleasedStore, match="is not a released store"):
            run_query(path, "SELECT 1")
        with pytest.raises(NotAReleasedStore, match="is not a released store"):
            write_parquet(path, "SELECT 1", tmp_path / "out.parquet")
        with pytest.raises(NotAReleasedStore, match="is not a released store"):
            ReleasedStore(path)
    assert not (tmp_path / "out.parquet").exists()
    assert run_query(release.path, "SELECT count(*) FROM runs")[1] == [(2,)]


def test_the_private_tables_named_by_the_check_are_the_private_stores(private):
    connection = duckdb.connect(str(private), read_only=True)
    try:
        found = connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        tables = {name for (name,) in found}
    finally:
        connection.close()
    assert set(PRIVATE_TABLES) <= tables


# -- clio sql limits --------------------------------------------------------------------


def test_a_query_past_the_timeout_is_stopped_with_a_clear_error(release, tmp_path):
    done = clio_subprocess(
        "sql", CROSS_JOIN, "--db", str(release.path), "--timeout", "1", cwd=tmp_path
    )
    assert done.returncode == 3, done.stderr
    assert "stopped after 1 s (--timeout)" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_query_past_the_memory_limit_fails_and_spills_nothing_beside_the_store(release, tmp_path):
    before = set(release.path.parent.iterdir())
    done = clio_subprocess(
        "sql", BIG_SORT, "--db", str(release.path), "--memory-limit", "64MB", cwd=tmp_path
    )
    assert done.returncode == 3, done.stderr
    assert "needs more than --memory-limit 64MB (no spilling to disk)" in done.stderr
    assert "Traceback" not in done.stderr
    assert set(release.path.parent.iterdir()) == before


def test_spilling_is_capped_and_goes_to_a_private_directory_removed_afterwards(release):
    limits = QueryLimits(memory_limit="64MB", threads=1, max_temp_size="16MB")
    with pytest.raises(LimitExceeded, match="--max-temp-size 16MB"):
        run_query(release.path, BIG_SORT, limits)
    roomy = QueryLimits(memory_limit="64MB", threads=1, max_temp_size="2GB")
    columns, rows = run_query(
        release.path,
        "SELECT current_setting('temp_directory'), current_setting('threads'), "
        "current_setting('memory_limit')",
        roomy,
    )
    spill, threads, memory = rows[0]
    assert Path(spill).name.startswith("clio-sql-")
    assert Path(spill).parent == Path(tempfile.gettempdir())  # not beside the store
    assert not Path(spill).exists()  # removed with the connection
    assert threads == 1 and memory.startswith("61")  # 64 MB in MiB


def test_limits_are_locked_against_the_query(release):
    connection = read_only_connect(release.path, settings={"threads": 1})
    try:
        with pytest.raises(duckdb.Error, match="locked"):
            connection.execute("SET threads = 8")
        with pytest.raises(duckdb.Error, match="locked"):
            connection.execute("SET memory_limit = '100GB'")
    finally:
        connection.close()


def test_sql_limit_flags_default_to_the_query_limits(capsys):
    args = build_parser().parse_args(["sql", "SELECT 1"])
    assert QueryLimits(args.memory_limit, args.threads, args.max_temp_size, args.timeout) == (
        DEFAULT_LIMITS
    )
    with pytest.raises(SystemExit):
        main(["sql", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--memory-limit", "--threads", "--max-temp-size", "--timeout", "3 stopped"):
        assert flag in text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sql", "SELECT 1", "--threads", "0"])


# -- file modes -------------------------------------------------------------------------


def test_the_private_directory_and_its_files_are_the_owners_only(tmp_path):
    paths = RunPaths(tmp_path / "outputs")
    make_private_dir(paths.private.parent)
    make_private_dir(paths.shards)
    shard = paths.shard("scrub", 0)
    with PrivateStore(paths.private) as store:
        store.get_or_create_secret("hmac_key")
        with PrivateStore(shard) as part:
            part.put_llm_response("k", "fake", "m", {"a": 1}, 1, 1)
    assert _mode(paths.private.parent) == 0o700
    assert _mode(paths.shards) == 0o700
    files = [p for p in paths.private.parent.rglob("*") if p.is_file()]
    assert paths.private in files and shard in files
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_a_loose_private_directory_left_by_an_older_run_is_tightened(tmp_path):
    paths = RunPaths(tmp_path / "outputs")
    paths.private.parent.mkdir(parents=True)
    os.chmod(paths.private.parent, 0o755)
    PrivateStore(paths.private).close()
    os.chmod(paths.private, 0o644)
    with PrivateStore(paths.private) as store:
        assert _mode(paths.private) == 0o600
        store.get_or_create_secret("hmac_key")
    assert _mode(paths.private.parent) == 0o700
    assert _mode(paths.private) == 0o600


def test_a_wal_left_by_a_killed_run_is_made_private(tmp_path):
    path = tmp_path / "private" / "private.duckdb"
    PrivateStore(path).close()
    wal = path.with_name(path.name + ".wal")
    connection = duckdb.connect(str(path))
    connection.execute("SET checkpoint_threshold = '1TB'")
    connection.execute("INSERT INTO secrets VALUES ('k', 'v')")
    connection.execute("CREATE TABLE keep_wal AS SELECT 1")
    os.chmod(wal, 0o644)  # a WAL DuckDB made with the umask, before the process died
    os.rename(path, path.with_suffix(".copy"))  # keep it from the checkpoint on close
    os.rename(wal, wal.with_suffix(".copy"))
    connection.close()
    os.rename(path.with_suffix(".copy"), path)
    os.rename(wal.with_suffix(".copy"), wal)
    store = PrivateStore(path)
    try:
        assert not wal.exists() or _mode(wal) == 0o600
        assert _mode(path) == 0o600
    finally:
        store.close()


def test_the_run_log_is_the_owners_only(tmp_path):
    from clio.cli import _log_to_file

    path = _log_to_file(tmp_path)
    assert _mode(path.parent) == 0o700
    assert _mode(path) == 0o600


# -- export-html ------------------------------------------------------------------------


def test_export_never_follows_a_planted_temporary_symlink(release, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "page.html"
    # The name the export used to write through: `.<name>.tmp-<pid>`.
    planted = tmp_path / f".{out.name}.tmp-{os.getpid()}"
    planted.symlink_to(victim)
    export_html(release.path, out)
    assert victim.read_text() == "keep me"
    assert not out.is_symlink() and out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert planted.is_symlink()  # untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_export_replaces_a_symlink_at_out_instead_of_writing_through_it(release, tmp_path):
    victim = tmp_path / "victim.html"
    victim.write_text("keep me")
    out = tmp_path / "page.html"
    out.symlink_to(victim)
    export_html(release.path, out)
    assert victim.read_text() == "keep me"
    assert not out.is_symlink() and _mode(out) == 0o644


def test_cli_export_refuses_to_overwrite_the_store(release, tmp_path):
    before = release.path.read_bytes()
    done = clio_subprocess(
        "export-html", "--db", str(release.path), "--out", str(release.path), cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert "is the store being exported" in done.stderr
    assert release.path.read_bytes() == before


def test_export_refuses_a_link_to_the_store_and_other_files_that_are_not_html(release, tmp_path):
    before = release.path.read_bytes()
    link = tmp_path / "link.html"
    link.symlink_to(release.path)
    hard = tmp_path / "hard.html"
    os.link(release.path, hard)
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    for out in (link, hard, manifest, tmp_path):
        with pytest.raises(OutputRefused):
            export_html(release.path, out)
    assert release.path.read_bytes() == before and manifest.read_text() == "{}"
