"""`clio sql --format parquet`: `write_parquet` exports a read-only query's result as Parquet."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from clio.sql import ReadOnlyError, run_query, write_parquet
from tests.web_fixtures import Release, build_release


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    return build_release(tmp_path_factory.mktemp("release") / "insights.duckdb")


def read_parquet(path: Path) -> tuple[list[str], list[tuple]]:
    connection = duckdb.connect()
    try:
        cursor = connection.execute("SELECT * FROM read_parquet($1)", [str(path)])
        return [c[0] for c in cursor.description], cursor.fetchall()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT cluster_id, name, keywords, n_users, share, concern_mean FROM clusters "
        "ORDER BY run_id, cluster_id",
        "WITH big AS (SELECT * FROM clusters WHERE n_users > 100) "
        "SELECT facet, count(*) AS n FROM big GROUP BY facet ORDER BY facet;",
        "FROM top_clusters SELECT run_id, cluster_id, rank ORDER BY ALL -- a trailing comment",
        "SELECT * FROM runs ORDER BY run_id",
    ],
)
def test_parquet_holds_exactly_the_query_result(release, tmp_path, sql):
    out = tmp_path / "result.parquet"
    count = write_parquet(release.path, sql, out)
    columns, rows = read_parquet(out)
    expected_columns, expected_rows = run_query(release.path, sql)
    assert columns == expected_columns
    assert rows == expected_rows
    assert count == len(expected_rows) > 0
    assert list(tmp_path.iterdir()) == [out]  # no temp file left beside it


def test_the_store_is_not_changed_and_an_existing_file_is_replaced(release, tmp_path):
    before = release.path.read_bytes()
    out = tmp_path / "out.parquet"
    out.write_text("old")
    assert write_parquet(release.path, "SELECT 1 AS one", out) == 1
    assert read_parquet(out) == (["one"], [(1,)])
    assert release.path.read_bytes() == before


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("DELETE FROM clusters", ReadOnlyError),
        ("COPY clusters TO 'x.parquet'", ReadOnlyError),
        ("SELECT 1; SELECT 2", ValueError),
        ("PRAGMA table_info('runs')", ValueError),
    ],
)
def test_writes_and_non_queries_are_refused(release, tmp_path, sql, error):
    out = tmp_path / "out.parquet"
    with pytest.raises(error):
        write_parquet(release.path, sql, out)
    assert not out.exists()


def test_the_query_still_sees_only_the_store(release, tmp_path):
    outside = tmp_path / "secret.csv"
    outside.write_text("secret\n42\n")
    out = tmp_path / "out.parquet"
    with pytest.raises(duckdb.PermissionException):
        write_parquet(release.path, f"SELECT * FROM read_csv('{outside}')", out)
    with pytest.raises(duckdb.Error):
        # The closing parenthesis cannot be smuggled in to write a second file.
        write_parquet(release.path, f"SELECT 1) TO '{tmp_path / 'x.csv'}' (FORMAT csv", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.csv"]


def test_the_store_itself_cannot_be_the_output(release):
    with pytest.raises(ValueError, match="cannot replace the released store"):
        write_parquet(release.path, "SELECT 1", release.path)
