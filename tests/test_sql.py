"""`clio sql`: read-only queries over the released store, and their formats."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from clio.release import write_release
from clio.released import ReleasedBreakdown, ReleasedCluster, RunRow
from clio.sql import ReadOnlyError, format_rows, run_query
from tests.ungated import ungated_result


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("release") / "insights.duckdb"
    clusters = [
        ReleasedCluster(
            facet="request",
            level=0,
            cluster_id=cluster_id,
            parent_id=None,
            name=name,
            description="",
            keywords=keywords,
            n_users=n,
            n_conversations=n,
            share=n / 15,
            concern_mean=None,
            x=None,
            y=None,
        )
        for cluster_id, name, keywords, n in [
            ("k1", "Travel plans", ["visa", "hotel"], 10),
            ("k2", "Debugging code", [], 5),
        ]
    ]
    run = RunRow("r1", datetime(2024, 5, 1), datetime(2024, 5, 1, 1), "h", 2, 2, 15, 0, 15,
                 0, 0, 0, 0)  # fmt: skip
    cells = [ReleasedBreakdown("k1", "language", "en", 10, 10)]
    write_release(path, run, ungated_result(clusters, cells))
    return path


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("INSERT INTO runs (run_id) VALUES ('x')", "INSERT"),
        ("UPDATE clusters SET name = 'x'", "UPDATE"),
        ("DELETE FROM clusters", "DELETE"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("CREATE VIEW v AS SELECT 1", "CREATE"),
        ("ATTACH 'other.duckdb' AS other", "ATTACH"),
        ("COPY clusters TO 'out.csv'", "COPY"),
        ("COPY clusters FROM 'in.csv'", "COPY"),
        ("DROP TABLE clusters", "DROP"),
        ("ALTER TABLE clusters ADD COLUMN z INTEGER", "ALTER"),
        ("WITH x AS (SELECT 1 AS a) INSERT INTO runs (run_id) SELECT a FROM x", "INSERT"),
        ("-- a comment first\n  delete from runs", "DELETE"),
        ("SELECT 1; DELETE FROM runs", "DELETE"),
        ("CHECKPOINT", "CALL"),
        ("EXPORT DATABASE 'dump'", "EXPORT"),
        ("INSTALL httpfs", "LOAD"),
        ("SET threads = 1", "SET"),
        ("PRAGMA threads = 1", "SET"),
        ("PRAGMA enable_profiling", "PRAGMA"),
    ],
)
def test_statements_that_write_are_refused(store, sql, refused):
    before = store.read_bytes()
    with pytest.raises(ReadOnlyError, match="read-only") as error:
        run_query(store, sql)
    assert refused in str(error.value)
    assert store.read_bytes() == before


@pytest.mark.parametrize(
    ("sql", "columns", "first_row"),
    [
        ("SELECT cluster_id, n_users FROM clusters ORDER BY n_users DESC",
         ["cluster_id", "n_users"], ("k1", 10)),
        ("WITH big AS (SELECT * FROM clusters WHERE n_users > 6) SELECT count(*) AS n FROM big",
         ["n"], (1,)),
        ("FROM facet_breakdowns SELECT value", ["value"], ("en",)),
        ("DESCRIBE runs", None, ("run_id", "VARCHAR")),
        ("SHOW TABLES", ["name"], ("cluster_languages",)),  # views too
        ("PRAGMA table_info('facet_breakdowns')", None, (0, "run_id")),
        ("SELECT keywords FROM clusters ORDER BY cluster_id;", ["keywords"], (["visa", "hotel"],)),
    ],
)  # fmt: skip
def test_reading_statements_run(store, sql, columns, first_row):
    found_columns, rows = run_query(store, sql)
    if columns is not None:
        assert found_columns == columns
    assert rows[0][: len(first_row)] == first_row


def test_one_statement_at_a_time(store):
    with pytest.raises(ValueError, match="one statement at a time; got 2"):
        run_query(store, "SELECT 1; SELECT 2")


def test_the_connection_itself_refuses_files_outside_the_store(store, tmp_path):
    outside = tmp_path / "private.csv"
    outside.write_text("secret\n1\n")
    with pytest.raises(duckdb.PermissionException):
        run_query(store, f"SELECT * FROM read_csv('{outside}')")


COLUMNS = ["name", "n_users", "share", "keywords", "concern_mean"]
ROWS = [
    ("travel", 12, 0.5, ["visa", "hotel"], None),
    ("code, tests", 3, 0.125, [], 4.0),
]


def test_table_format():
    assert format_rows(COLUMNS, ROWS, "table") == (
        "name        | n_users | share | keywords      | concern_mean\n"
        "------------+---------+-------+---------------+-------------\n"
        "travel      |      12 |   0.5 | [visa, hotel] |         NULL\n"
        "code, tests |       3 | 0.125 | []            |          4.0\n"
        "(2 rows)"
    )


def test_table_format_edge_cases():
    assert format_rows(["n"], [], "table") == "n\n-\n(0 rows)"
    assert format_rows(["nothing", "n"], [(None, 1), (None, 10)], "table") == (
        "nothing | n\n--------+---\nNULL    |  1\nNULL    | 10\n(2 rows)"
    )
    assert format_rows(["text", "flag"], [("two\nlines", True)], "table") == (
        "text       | flag\n-----------+-----\ntwo\\nlines | true\n(1 row)"
    )


def test_csv_format():
    assert format_rows(COLUMNS, ROWS, "csv") == (
        "name,n_users,share,keywords,concern_mean\n"
        'travel,12,0.5,"[""visa"", ""hotel""]",\n'
        '"code, tests",3,0.125,[],4.0'
    )


def test_json_format():
    assert format_rows(COLUMNS, ROWS[:1], "json") == (
        "[\n"
        "  {\n"
        '    "name": "travel",\n'
        '    "n_users": 12,\n'
        '    "share": 0.5,\n'
        '    "keywords": [\n'
        '      "visa",\n'
        '      "hotel"\n'
        "    ],\n"
        '    "concern_mean": null\n'
        "  }\n"
        "]"
    )
    assert format_rows(["a"], [], "json") == "[]"


def test_json_format_converts_duckdb_types():
    columns = ["d", "t", "day", "nan", "a", "a"]
    row = (Decimal("1.50"), datetime(2024, 5, 1, 8, 30), date(2024, 5, 1), float("nan"), 1, 2)
    assert format_rows(columns, [row], "json").replace("\n", "").replace(" ", "") == (
        '[{"d":1.5,"t":"2024-05-01T08:30:00","day":"2024-05-01","nan":null,"a":1,"a_2":2}]'
    )


def test_query_to_formats_end_to_end(store):
    columns, rows = run_query(store, "SELECT cluster_id, name, n_users FROM clusters ORDER BY 1")
    assert format_rows(columns, rows, "csv") == (
        "cluster_id,name,n_users\nk1,Travel plans,10\nk2,Debugging code,5"
    )


def test_unknown_format_is_an_error():
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        format_rows(["a"], [(1,)], "xml")  # type: ignore[arg-type]
