from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import logging
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clio.config import IngestConfig, RunConfig, load_config
from clio.ingest import IngestError, IngestResult, ingest, sample_path
from clio.records import Message

FIXTURES = Path(__file__).parent / "fixtures"
MARKER = "ZEBRA-7f3a"  # planted in inputs; must never reach a quarantine detail or a log line


# Most records here have no user id: these tests are about reading, so they count each
# conversation as its own user. The default, quarantine, has tests of its own.
READING: dict[str, Any] = {"missing_user_id": "per_conversation"}
ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CONFIG = ROOT / "configs" / "sample.yaml"


def _write_jsonl(path: Path, lines: list[bytes | dict[str, Any] | list[Any]]) -> Path:
    with path.open("wb") as handle:
        for line in lines:
            data = line if isinstance(line, bytes) else json.dumps(line).encode()
            handle.write(data + b"\n")
    return path


def _ingest_lines(
    tmp_path: Path, lines: list[bytes | dict[str, Any] | list[Any]], **config: Any
) -> IngestResult:
    path = _write_jsonl(tmp_path / "input.jsonl", lines)
    return ingest([path], IngestConfig(**{**READING, **config}))


def _assert_nothing_lost(result: IngestResult) -> None:
    assert result.n_input == len(result.conversations) + len(result.quarantine)


def _chat(conversation_id: str, user: str = "hello", assistant: str = "hi there") -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ],
    }


U, A, S = "user", "assistant", "system"

SHAPES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    (
        "openai",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ]
        },
        [(S, "Be brief."), (U, "Hi")],
    ),
    (
        "openai role aliases",
        {
            "messages": [
                {"role": "Human", "content": "a"},
                {"role": "gpt", "content": "b"},
                {"role": "human", "content": "c"},
                {"role": "bot", "content": "d"},
                {"role": "user", "content": "e"},
                {"role": "model", "content": "f"},
                {"role": "developer", "content": "g"},
            ]
        },
        [(U, "a"), (A, "b"), (U, "c"), (A, "d"), (U, "e"), (A, "f"), (S, "g")],
    ),
    (
        "openai text parts",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
                },
                {"role": "assistant", "content": "ok"},
            ]
        },
        [(U, "one\ntwo"), (A, "ok")],
    ),
    (
        "openai messages as JSON text",
        {"messages": json.dumps([{"role": "user", "content": "q"}])},
        [(U, "q")],
    ),
    (
        "lmsys conversation",
        {"conversation": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]},
        [(U, "q"), (A, "r")],
    ),
    (
        "sharegpt",
        {
            "conversations": [
                {"from": "system", "value": "sys"},
                {"from": "human", "value": "q"},
                {"from": "gpt", "value": "r"},
            ]
        },
        [(S, "sys"), (U, "q"), (A, "r")],
    ),
    (
        "transcript",
        {"transcript": "\n\nHuman: q1\n\nAssistant: r1\n\nHuman: q2\n\nAssistant: r2"},
        [(U, "q1"), (A, "r1"), (U, "q2"), (A, "r2")],
    ),
    (
        "transcript under text with User/AI, no leading newlines",
        {"text": "User: q\n\nAI: r"},
        [(U, "q"), (A, "r")],
    ),
    (
        "hh-rlhf chosen, not rejected",
        {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad"},
        [(U, "q"), (A, "good")],
    ),
    (
        "preference data with a message list under chosen",
        {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]},
        [(U, "q"), (A, "r")],
    ),
    (
        "alpaca with history and system",
        {
            "system": "sys",
            "instruction": "q2",
            "input": "context",
            "output": "r2",
            "history": [["q1", "r1"]],
        },
        [(S, "sys"), (U, "q1"), (A, "r1"), (U, "q2\n\ncontext"), (A, "r2")],
    ),
]


@pytest.mark.parametrize(
    ("record", "expected"), [(r, e) for _, r, e in SHAPES], ids=[n for n, _, _ in SHAPES]
)
def test_each_record_shape_becomes_canonical_messages(
    tmp_path: Path, record: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    result = _ingest_lines(tmp_path, [record])
    assert result.quarantine == []
    [conversation] = result.conversations
    assert conversation.messages == tuple(Message(role, text) for role, text in expected)
    assert conversation.source == "input.jsonl"
    assert conversation.truncated is False


# (case id, line, expected reason, expected conversation_id, config overrides)
REASONS: list[tuple[str, bytes | dict[str, Any] | list[Any], str, str | None, dict[str, Any]]] = [
    ("bad bytes", b'{"id": "x", "text": "' + MARKER.encode() + b'\xff"}', "invalid_utf8", None, {}),
    ("truncated json", b'{"id": "' + MARKER.encode(), "invalid_json", None, {}),
    ("array", [MARKER, 1], "not_an_object", None, {}),
    ("string", MARKER.encode().join([b'"', b'"']), "not_an_object", None, {}),
    ("no known field", {"id": "c", "prompt": MARKER}, "no_messages", "c", {}),
    ("text without turns", {"id": "c", "text": MARKER}, "no_messages", "c", {}),
    ("messages not a list", {"id": "c", "messages": {"role": MARKER}}, "no_messages", "c", {}),
    ("empty list", {"id": "c", "messages": []}, "empty_messages", "c", {}),
    (
        "blank contents",
        {
            "id": "c",
            "messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": ""}],
        },
        "empty_messages",
        "c",
        {},
    ),
    (
        "tool role",
        {
            "id": "c",
            "messages": [{"role": "user", "content": "q"}, {"role": MARKER, "content": "x"}],
        },
        "unknown_role",
        "c",
        {},
    ),
    ("missing role", {"id": "c", "messages": [{"content": MARKER}]}, "unknown_role", "c", {}),
    (
        "transcript preamble",
        {"id": "c", "text": f"{MARKER}\n\nHuman: q\n\nAssistant: r"},
        "unknown_role",
        "c",
        {},
    ),
    (
        "number content",
        {"id": "c", "messages": [{"role": "user", "content": 7}]},
        "non_string_content",
        "c",
        {},
    ),
    (
        "null content",
        {"id": "c", "messages": [{"role": "user", "content": None}]},
        "non_string_content",
        "c",
        {},
    ),
    (
        "image part",
        {
            "id": "c",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": MARKER}]}],
        },
        "non_string_content",
        "c",
        {},
    ),
    (
        "NUL in content",
        {"id": "c", "messages": [{"role": "user", "content": f"{MARKER}\x00"}]},
        "control_characters",
        "c",
        {},
    ),
    (
        "C1 in content",
        {"id": "c", "messages": [{"role": "user", "content": f"{MARKER}\x85"}]},
        "control_characters",
        "c",
        {},
    ),
    (
        "lone surrogate escape",
        b'{"id": "c", "messages": [{"role": "user", "content": "'
        + MARKER.encode()
        + b'\\ud800"}]}',
        "invalid_utf8",
        "c",
        {},
    ),
    (
        "assistant only",
        {"id": "c", "messages": [{"role": "assistant", "content": MARKER}]},
        "no_user_turn",
        "c",
        {},
    ),
    (
        "no user id when required",
        {**_chat("c", MARKER)},
        "missing_user_id",
        "c",
        {"missing_user_id": "quarantine"},
    ),
    ("bad timestamp", {**_chat("c"), "timestamp": MARKER}, "invalid_timestamp", "c", {}),
    ("bad created_at", {**_chat("c"), "created_at": "2024-13-45"}, "invalid_timestamp", "c", {}),
    ("timestamp out of range", {**_chat("c"), "timestamp": 1e15}, "invalid_timestamp", "c", {}),
    ("boolean id", {**_chat("x", MARKER), "conversation_id": True}, "invalid_id", None, {}),
    ("object user", {**_chat("c"), "user": {"name": MARKER}}, "invalid_id", "c", {}),
    ("message not an object", {"id": "c", "messages": [MARKER]}, "invalid_message", "c", {}),
    ("messages JSON text broken", {"id": "c", "messages": f"[{MARKER}"}, "invalid_json", "c", {}),
]


@pytest.mark.parametrize(
    ("line", "reason", "conversation_id", "config"),
    [case[1:] for case in REASONS],
    ids=[case[0] for case in REASONS],
)
def test_each_bad_record_is_quarantined_with_its_reason(
    tmp_path: Path,
    line: bytes | dict[str, Any] | list[Any],
    reason: str,
    conversation_id: str | None,
    config: dict[str, Any],
) -> None:
    result = _ingest_lines(tmp_path, [line], **config)
    assert result.conversations == []
    [record] = result.quarantine
    assert (record.reason, record.location, record.source) == (reason, "line 1", "input.jsonl")
    assert record.conversation_id == conversation_id
    assert record.stage == "ingest"
    assert record.detail and MARKER not in record.detail
    raw = line if isinstance(line, bytes) else json.dumps(line).encode()
    assert record.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert result.n_input == 1


def _load_fixture_generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_bad_lines", FIXTURES / "make_bad_lines.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_lines_fixture_is_what_its_generator_writes() -> None:
    generator = _load_fixture_generator()
    expected_bytes = b"".join(line + b"\n" for line, _ in generator.LINES)
    assert (FIXTURES / "bad_lines.jsonl").read_bytes() == expected_bytes
    assert json.loads((FIXTURES / "bad_lines_expected.json").read_text()) == generator.EXPECTED


def test_bad_lines_fixture_quarantines_exactly_the_expected_lines() -> None:
    expected = json.loads((FIXTURES / "bad_lines_expected.json").read_text())
    result = ingest([FIXTURES / "bad_lines.jsonl"], IngestConfig(**READING))
    assert {q.location: q.reason for q in result.quarantine} == expected
    assert len(result.quarantine) == len(expected)
    assert sorted(set(expected.values())) == sorted(
        [
            "control_characters",
            "duplicate_content",
            "duplicate_id",
            "empty_messages",
            "invalid_json",
            "invalid_utf8",
            "no_messages",
            "non_string_content",
            "not_an_object",
            "unknown_role",
        ]
    )
    assert [c.conversation_id for c in result.conversations] == [
        "good-1",
        "good-2",
        "good-3",
        "long",
    ]
    assert result.n_input == 14
    _assert_nothing_lost(result)
    long = result.conversations[-1]
    raw_long = json.loads((FIXTURES / "bad_lines.jsonl").read_bytes().splitlines()[-1])
    assert len(raw_long["messages"][0]["content"]) >= 200_000
    assert long.truncated is True
    assert long.messages[0].content == raw_long["messages"][0]["content"][:8000]
    assert (result.n_truncated, result.n_missing_user) == (1, 1)  # good-3 has no user
    by_location = {q.location: q for q in result.quarantine}
    assert by_location["line 12"].conversation_id == "good-1"
    assert by_location["line 13"].conversation_id == "copy-of-good-1"


def test_quarantine_details_and_logs_never_carry_input_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [case[1] for case in REASONS if not case[4]]
    with caplog.at_level(logging.DEBUG):
        result = _ingest_lines(tmp_path, [_chat("ok", MARKER), *lines])
    assert len(result.conversations) == 1
    assert len(result.quarantine) == len(lines)
    assert caplog.records, "ingest logged nothing"
    assert MARKER not in caplog.text
    assert all(MARKER not in q.detail for q in result.quarantine)


def test_ids_users_and_timestamps(tmp_path: Path) -> None:
    records = [
        {**_chat("a"), "user_id": 17, "timestamp": "2024-03-01T09:30:00Z"},
        {**_chat("b", "q2"), "conversation_id": None, "id": 42, "user": "u-9", "created_at": 0},
        {**_chat("c", "q3"), "timestamp": "2024-03-01T10:30:00+01:00"},
        {**_chat("d", "q4"), "timestamp": "2024-03-01 09:30:00"},
        {**_chat("e", "q5"), "timestamp": "1709285400"},
        {"messages": _chat("")["messages"][:1] + [{"role": "assistant", "content": "other"}]},
        {**_chat("  ", "q7"), "user_id": ""},
    ]
    result = _ingest_lines(tmp_path, records)
    march = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    got = [(c.conversation_id, c.user_id, c.timestamp) for c in result.conversations]
    assert got == [
        ("a", "17", march),
        ("42", "u-9", datetime(1970, 1, 1, tzinfo=UTC)),
        ("c", "conv:c", march),
        ("d", "conv:d", march),
        ("e", "conv:e", march),
        ("input:000006", "conv:input:000006", None),
        ("input:000007", "conv:input:000007", None),
    ]
    assert result.n_missing_user == 5
    assert result.quarantine == []


def test_by_default_records_without_a_user_id_are_quarantined_not_counted_as_users(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One person's three id-less conversations must not pass as three users."""
    records = [{**_chat("known", "q0"), "user_id": "u-1"}] + [
        _chat(f"anon-{n}", f"q{n}") for n in range(1, 4)
    ]
    path = _write_jsonl(tmp_path / "input.jsonl", records)
    with caplog.at_level(logging.WARNING, logger="clio.ingest"):
        result = ingest([path], IngestConfig())
    assert "3 records without a user id quarantined" in caplog.text
    assert [(c.conversation_id, c.user_id) for c in result.conversations] == [("known", "u-1")]
    assert result.quarantine_counts() == {"missing_user_id": 3}
    assert [q.conversation_id for q in result.quarantine] == ["anon-1", "anon-2", "anon-3"]
    assert result.n_missing_user == 0
    _assert_nothing_lost(result)
    # control: counted per conversation, the three become three distinct users
    opted_in = ingest([path], IngestConfig(missing_user_id="per_conversation"))
    assert len({c.user_id for c in opted_in.conversations}) == 4
    assert opted_in.n_missing_user == 3


def test_the_production_default_quarantines_and_the_sample_config_opts_out() -> None:
    assert RunConfig().ingest.missing_user_id == "quarantine"
    assert load_config(ROOT / "configs" / "default.yaml").ingest.missing_user_id == "quarantine"
    assert load_config(SAMPLE_CONFIG).ingest.missing_user_id == "per_conversation"


def test_default_ids_use_the_line_number_and_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "chats.v2.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\n" + json.dumps({"text": "Human: q\n\nAssistant: r"}).encode() + b"\n")
    [conversation] = ingest([path], IngestConfig(**READING)).conversations
    assert conversation.conversation_id == "chats.v2:000002"
    assert conversation.source == "chats.v2.jsonl.gz"


def test_duplicates_are_found_across_files(tmp_path: Path) -> None:
    first = _write_jsonl(tmp_path / "a.jsonl", [_chat("x", "one")])
    second = _write_jsonl(tmp_path / "b.jsonl", [_chat("x", "two"), _chat("y", "one")])
    result = ingest([first, second], IngestConfig(**READING))
    assert [c.conversation_id for c in result.conversations] == ["x"]
    got = [(q.source, q.location, q.reason, q.conversation_id) for q in result.quarantine]
    assert got == [
        ("b.jsonl", "line 1", "duplicate_id", "x"),
        ("b.jsonl", "line 2", "duplicate_content", "y"),
    ]


@pytest.mark.parametrize(
    ("config", "expected_lengths", "truncated"),
    [
        ({}, [300, 5, 5], False),
        ({"max_message_chars": 200}, [200, 5, 5], True),
        ({"max_messages": 2}, [300, 5], True),
        ({"max_messages": 3, "max_message_chars": 300}, [300, 5, 5], False),
    ],
)
def test_long_conversations_are_cut_and_flagged(
    tmp_path: Path, config: dict[str, Any], expected_lengths: list[int], truncated: bool
) -> None:
    record = {
        "messages": [
            {"role": "user", "content": "x" * 300},
            {"role": "assistant", "content": "yyyyy"},
            {"role": "user", "content": "zzzzz"},
        ]
    }
    result = _ingest_lines(tmp_path, [record], **config)
    [conversation] = result.conversations
    assert [len(m.content) for m in conversation.messages] == expected_lengths
    assert conversation.truncated is truncated
    assert result.n_truncated == int(truncated)
    assert result.quarantine == []


def test_shipped_sample_reads_as_conversations() -> None:
    path = sample_path()
    assert path.name == "hh_rlhf_harmless_base_test.jsonl.gz" and path.is_file()
    result = ingest([path], load_config(SAMPLE_CONFIG).ingest, limit=500)
    assert len(result.conversations) == 500
    assert result.n_input == 500 and result.quarantine == []
    for conversation in result.conversations:
        roles = {m.role for m in conversation.messages}
        assert roles == {"user", "assistant"}
        assert conversation.messages[0].role == "user"
        assert conversation.source == path.name
    assert len({c.conversation_id for c in result.conversations}) == 500
    assert result.n_missing_user == 500


def test_limit_counts_accepted_conversations_and_reports_earlier_quarantine(
    tmp_path: Path,
) -> None:
    first = _write_jsonl(
        tmp_path / "a.jsonl", [b"not json", _chat("a", "1"), b"[]", _chat("b", "2"), b"{"]
    )
    second = _write_jsonl(tmp_path / "b.jsonl", [_chat("c", "3")])
    result = ingest([first, second], IngestConfig(**READING), limit=2)
    assert [c.conversation_id for c in result.conversations] == ["a", "b"]
    assert [q.location for q in result.quarantine] == ["line 1", "line 3"]
    assert result.n_input == 4

    result = ingest([first, second], IngestConfig(**READING), limit=3)
    assert [c.conversation_id for c in result.conversations] == ["a", "b", "c"]
    assert len(result.quarantine) == 3
    _assert_nothing_lost(result)

    empty = ingest([first], IngestConfig(**READING), limit=0)
    assert (empty.n_input, empty.conversations, empty.quarantine) == (0, [], [])
    with pytest.raises(IngestError, match="limit"):
        ingest([first], IngestConfig(**READING), limit=-1)


RECORDS = [
    {
        "conversation_id": "r1",
        "user_id": "u1",
        "timestamp": "2024-05-01T12:00:00Z",
        "messages": [
            {"role": "user", "content": 'Hi, "quoted",\nmulti-line'},
            {"role": "assistant", "content": "Hello"},
        ],
    },
    {
        "conversation_id": "r2",
        "user_id": "u2",
        "timestamp": None,
        "messages": [
            {"role": "user", "content": "Second"},
            {"role": "assistant", "content": "Reply"},
        ],
    },
]


def _write_jsonl_gz(directory: Path) -> str:
    path = directory / "chats.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in RECORDS)
    return str(path)


def _write_json(directory: Path) -> str:
    path = directory / "chats.json"
    path.write_text(json.dumps(RECORDS, indent=2))
    return str(path)


def _records_relation(con: duckdb.DuckDBPyConnection, messages_as_json: bool) -> str:
    """Create table `chats` from RECORDS, messages as JSON text or as a list of structs."""
    con.execute(
        "CREATE TABLE chats (conversation_id VARCHAR, user_id VARCHAR, timestamp TIMESTAMPTZ, "
        + (
            "messages VARCHAR)"
            if messages_as_json
            else "messages STRUCT(role VARCHAR, content VARCHAR)[])"
        )
    )
    for r in RECORDS:
        messages = json.dumps(r["messages"]) if messages_as_json else r["messages"]
        con.execute(
            "INSERT INTO chats VALUES (?, ?, ?, ?)",
            [r["conversation_id"], r["user_id"], r["timestamp"], messages],
        )
    return "chats"


def _write_csv(directory: Path) -> str:
    path = directory / "chats.csv"
    with duckdb.connect() as con:
        table = _records_relation(con, messages_as_json=True)
        con.execute(f"COPY {table} TO '{path}' (HEADER, DELIMITER ',')")
    return str(path)


def _write_parquet(directory: Path) -> str:
    path = directory / "chats.parquet"
    with duckdb.connect() as con:
        table = _records_relation(con, messages_as_json=False)
        con.execute(f"COPY {table} TO '{path}' (FORMAT parquet)")
    return str(path)


def _write_duckdb(directory: Path) -> str:
    path = directory / "chats.duckdb"
    with duckdb.connect(str(path)) as con:
        _records_relation(con, messages_as_json=False)
    return f"{path}::chats"


WRITERS: dict[str, tuple[Callable[[Path], str], str, list[str]]] = {
    "jsonl": (
        lambda d: str(_write_jsonl(d / "chats.jsonl", list(RECORDS))),
        "chats.jsonl",
        ["line 1", "line 2"],
    ),
    "jsonl.gz": (_write_jsonl_gz, "chats.jsonl.gz", ["line 1", "line 2"]),
    "json": (_write_json, "chats.json", ["item 1", "item 2"]),
    "csv": (_write_csv, "chats.csv", ["line 2", "line 3"]),
    "parquet": (_write_parquet, "chats.parquet", ["row 1", "row 2"]),
    "duckdb": (_write_duckdb, "chats.duckdb::chats", ["row 1", "row 2"]),
}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_file_format_gives_the_same_conversations(tmp_path: Path, fmt: str) -> None:
    write, source_name, _ = WRITERS[fmt]
    result = ingest([write(tmp_path)], IngestConfig(**READING))
    assert result.quarantine == []
    got = [
        (c.conversation_id, c.user_id, c.timestamp, c.messages, c.source)
        for c in result.conversations
    ]
    assert got == [
        (
            r["conversation_id"],
            r["user_id"],
            datetime.fromisoformat(r["timestamp"]) if r["timestamp"] else None,
            tuple(Message(m["role"], m["content"]) for m in r["messages"]),
            source_name,
        )
        for r in RECORDS
    ]


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_format_reports_where_a_record_is(tmp_path: Path, fmt: str) -> None:
    write, source_name, locations = WRITERS[fmt]
    written = write(tmp_path)
    once = ingest([written], IngestConfig(**READING))
    twice = ingest([written, written], IngestConfig(**READING))
    assert once.n_input == twice.n_input == 2  # the same input named twice is read once
    # A copy of the input in another folder: every record is a duplicate, reported where it is.
    copy = tmp_path / "copy"
    copy.mkdir()
    second = write(copy)
    both = ingest([written, second], IngestConfig(**READING))
    assert [(q.source, q.location, q.reason) for q in both.quarantine] == [
        (source_name, location, "duplicate_id") for location in locations
    ]


def test_csv_bad_rows_are_quarantined_and_good_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"id,user_id,text\n"
        b'1,u1,"Human: q1\n\nAssistant: r1"\n'
        b"2,u2,Human: q2\n"
        b"3,u3,Human: \xff\n"
        b'4,u4,"Human: q4"x\n'
        b"5,u5,Human: q5\n"
        b"6,u6,Human: q6,extra\n"
        b"\n"
        b"7,,Human: q7\n"
    )
    result = ingest([path], IngestConfig(**READING))
    assert [(c.conversation_id, c.user_id) for c in result.conversations] == [
        ("1", "u1"),
        ("2", "u2"),
        ("5", "u5"),
        ("7", "conv:7"),
    ]
    assert [(q.location, q.reason) for q in result.quarantine] == [
        ("line 6", "invalid_utf8"),  # row 1 spans lines 2-4
        ("line 7", "invalid_csv"),
        ("line 9", "invalid_csv"),
    ]
    assert result.conversations[0].messages == (Message("user", "q1"), Message("assistant", "r1"))
    _assert_nothing_lost(result)


def test_csv_fields_longer_than_the_csv_module_default_are_read(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("text\n" + '"Human: ' + "w" * 200_000 + '"\n')
    [conversation] = ingest([path], IngestConfig(**READING)).conversations
    assert len(conversation.messages[0].content) == 8000 and conversation.truncated


def test_json_file_with_one_object_and_broken_json_file(tmp_path: Path) -> None:
    single = tmp_path / "one.json"
    single.write_text(json.dumps(_chat("solo")))
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    result = ingest([single, broken], IngestConfig(**READING))
    assert [c.conversation_id for c in result.conversations] == ["solo"]
    assert [(q.source, q.location, q.reason) for q in result.quarantine] == [
        ("broken.json", "file", "invalid_json")
    ]
    _assert_nothing_lost(result)


def test_damaged_gzip_keeps_lines_before_the_damage(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.gz"
    lines = [json.dumps(_chat(f"c{i}", f"question {i}")) for i in range(200)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path.write_bytes(data[: len(data) // 2])
    result = ingest([path], IngestConfig(**READING))
    assert 0 < len(result.conversations) < 200
    [damage] = result.quarantine
    assert damage.reason == "unreadable_file"
    assert damage.location == f"line {len(result.conversations) + 1}"
    _assert_nothing_lost(result)


def test_directories_read_supported_files_sorted(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / ".hidden").mkdir()
    _write_jsonl(tmp_path / "b.jsonl", [_chat("from-b", "b")])
    _write_jsonl(tmp_path / "nested" / "a.jsonl", [_chat("from-nested-a", "na")])
    _write_jsonl(tmp_path / "a.jsonl", [_chat("from-a", "a")])
    _write_jsonl(tmp_path / ".hidden" / "c.jsonl", [_chat("hidden", "h")])
    (tmp_path / "README.md").write_text("not data")
    result = ingest([tmp_path], IngestConfig(**READING))
    assert [c.conversation_id for c in result.conversations] == [
        "from-a",
        "from-b",
        "from-nested-a",
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"hello", "unsupported input"),
        ("data.jsonl.bz2", b"", "unsupported input"),
        ("missing.jsonl", None, "not found"),
        ("plain.jsonl.gz", b'{"text": "x"}\n', "not gzip"),
        ("fake.parquet", b"not parquet", "cannot read Parquet"),
        ("dup.csv", b"text,text\na,b\n", "repeats a column"),
        ("store.duckdb", None, "name the table"),
        ("store.duckdb::nope", None, "not found"),
        ("empty_dir", "dir", "no readable files"),
    ],
)
def test_unreadable_inputs_raise_before_anything_is_read(
    tmp_path: Path, name: str, content: bytes | str | None, message: str
) -> None:
    good = _write_jsonl(tmp_path / "good.jsonl", [_chat("a")])
    target = tmp_path / name
    if content == "dir":
        target.mkdir()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    with pytest.raises(IngestError, match=message):
        ingest([good, target], IngestConfig(**READING))


def test_missing_duckdb_table_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE present (text VARCHAR)")
    with pytest.raises(IngestError, match="absent"):
        ingest([f"{path}::absent"], IngestConfig(**READING))
    assert ingest([f"{path}::present"], IngestConfig(**READING)).n_input == 0
    assert issubclass(IngestError, ValueError)


_line = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "messages": st.lists(
                st.fixed_dictionaries(
                    {
                        "role": st.sampled_from(["user", "assistant", "gpt", "tool", ""]),
                        "content": st.one_of(st.text(max_size=20), st.integers(), st.none()),
                    }
                ),
                max_size=3,
            )
        },
        optional={
            "id": st.one_of(st.integers(0, 3), st.text(max_size=2)),
            "user_id": st.one_of(st.integers(), st.booleans(), st.text(max_size=3)),
            "timestamp": st.one_of(st.floats(allow_nan=True), st.text(max_size=5)),
        },
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_line, max_size=12))
def test_nothing_is_dropped_and_nothing_crashes(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.jsonl"
        # One record per line: keep newlines out of the raw bytes.
        path.write_bytes(
            b"".join(line.replace(b"\n", b" ").replace(b"\r", b" ") + b"\n" for line in lines)
        )
        result = ingest([path], IngestConfig(**READING))
    cleaned = [line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines]
    if cleaned:
        cleaned[0] = cleaned[0].removeprefix(b"\xef\xbb\xbf")  # a byte order mark is not data
    n_records = sum(1 for line in cleaned if line.strip())
    assert result.n_input == n_records
    _assert_nothing_lost(result)
    for conversation in result.conversations:
        assert any(m.role == "user" for m in conversation.messages)
        conversation.content_hash()  # encodable as UTF-8


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("bom.jsonl", b'\xef\xbb\xbf{"id": "b", "text": "Human: q"}\n'),
        ("bom.csv", b"\xef\xbb\xbfid,text\nb,Human: q\n"),
        ("bom.json", b'\xef\xbb\xbf[{"id": "b", "text": "Human: q"}]'),
    ],
)
def test_a_utf8_byte_order_mark_is_not_part_of_the_data(
    tmp_path: Path, name: str, data: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    result = ingest([path], IngestConfig(**READING))
    assert [(c.conversation_id, c.messages) for c in result.conversations] == [
        ("b", (Message("user", "q"),))
    ]
