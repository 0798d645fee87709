"""Canary generation, the leak checker, and the canaries through scrub and the whole flow."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from presidio_analyzer.predefined_recognizers import CryptoRecognizer, UsSsnRecognizer

from clio.config import ScrubConfig
from clio.records import Conversation, Message
from clio.scrub import CHUNK_CHARS, build_scrubber, scrub_conversations
from tests.canary import (
    CANARY_KINDS,
    MIN_CANARY_CONVERSATIONS,
    Canary,
    CanaryMatcher,
    make_canary_conversations,
    scan_paths,
    scan_run_outputs,
    scan_texts,
    write_jsonl,
)
from tests.cli_run import run_clio

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def canary_set():
    return make_canary_conversations(24, seed=7)


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _luhn_ok(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


# --- generation ---------------------------------------------------------------------------


def test_every_kind_is_planted_in_user_and_assistant_turns(canary_set):
    kinds = {c.kind for c in canary_set.canaries}
    assert kinds == set(CANARY_KINDS)
    for kind in CANARY_KINDS:
        values = [c.value for c in canary_set.canaries if c.kind == kind]
        roles = {
            m["role"]
            for r in canary_set.records
            for m in r["messages"]
            if any(v in m["content"] for v in values)
        }
        assert roles == {"user", "assistant"} or kind in ("PERSON", "CREDIT_CARD", "US_SSN"), kind


def test_canary_values_are_unique_and_deterministic(canary_set):
    values = [c.value for c in canary_set.canaries]
    assert len(values) == len(set(values))
    assert make_canary_conversations(24, seed=7) == canary_set
    assert make_canary_conversations(24, seed=8).canaries != canary_set.canaries


def test_canary_values_are_well_formed(canary_set):
    by_kind: dict[str, list[str]] = {}
    for canary in canary_set.canaries:
        by_kind.setdefault(canary.kind, []).append(canary.value)
    assert all(_luhn_ok(_digits(v)) for v in by_kind["CREDIT_CARD"])
    assert all(_iban_ok(v) for v in by_kind["IBAN_CODE"])
    ssn = UsSsnRecognizer()
    assert not any(ssn.invalidate_result(v) for v in by_kind["US_SSN"])
    crypto = CryptoRecognizer()
    assert all(crypto.validate_result(v) for v in by_kind["BITCOIN_WALLET"])
    assert all(len(v) == 42 and v.startswith("0x") for v in by_kind["ETHEREUM_WALLET"])


def test_awkward_inputs_are_included(canary_set):
    by_id = {r["conversation_id"]: r for r in canary_set.records}
    long_text = by_id["canary-long"]["messages"][0]["content"]
    assert len(long_text) > CHUNK_CHARS
    late = [c for c in canary_set.canaries if c.value in long_text[CHUNK_CHARS:]]
    assert late, "a canary must sit past the first analyzer chunk"
    assert any(m["content"] == "" for m in by_id["canary-all-pii"]["messages"])  # empty turns
    assert any("请" in m["content"] for m in by_id["canary-mixed"]["messages"])


def test_too_few_conversations_is_a_clear_error():
    with pytest.raises(ValueError, match=str(MIN_CANARY_CONVERSATIONS)):
        make_canary_conversations(MIN_CANARY_CONVERSATIONS - 1)


# --- matching -------------------------------------------------------------------------------

PHONE = Canary("PHONE_NUMBER", "(415) 867-5309", variants=("+1 415 867 5309",))
CARD = Canary("CREDIT_CARD", "4111 1111 1111 1111")
NAME = Canary("PERSON", "Theodora Lindqvist")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call 415.867.5309 now", [("PHONE_NUMBER", "no_separators")]),
        ("call 4158675309", [("PHONE_NUMBER", "no_separators")]),
        ("call +1-415-867-5309", [("PHONE_NUMBER", "no_separators")]),
        ("card 4111-1111-1111-1111", [("CREDIT_CARD", "no_separators")]),
        ("card 4111/1111/1111/1111", [("CREDIT_CARD", "digits")]),
        ("THEODORA   LINDQVIST was here", [("PERSON", "text")]),
        ("theodora\nlindqvist", [("PERSON", "text")]),
        ("Theodora met Lindqvist", []),
        ("call 415 867 5300", []),
        ("<PERSON_1> <PHONE_NUMBER_1> <CREDIT_CARD_1>", []),
        ("", []),
    ],
)
def test_matcher_normalises(text, expected):
    found = CanaryMatcher([PHONE, CARD, NAME]).find(text)
    assert [(c.kind, form) for c, form in found] == expected


def test_matcher_needs_canaries():
    with pytest.raises(ValueError):
        CanaryMatcher([])


def test_checker_finds_every_canary_in_the_raw_input(canary_set, tmp_path):
    raw = write_jsonl(canary_set.records, tmp_path / "input.jsonl")
    report = scan_paths([raw], canary_set.canaries)
    assert report.scanned == [str(raw)]
    # every planted kind is found: the checker can fail
    assert {leak.kind for leak in report.leaks} == set(CANARY_KINDS)


def _fake_run_outputs(root: Path, leak: str | None, where: str) -> None:
    """A run directory shaped like clio's, with `leak` planted at `where`."""
    text = leak or "nothing to see"
    (root / "private").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "runs").mkdir()
    (root / "prefect" / "storage").mkdir(parents=True)
    with duckdb.connect(str(root / "insights.duckdb")) as con:
        con.execute("CREATE TABLE clusters (name VARCHAR, keywords VARCHAR[], n_users INTEGER)")
        name = text if where == "released" else "Cooking"
        con.execute("INSERT INTO clusters VALUES (?, ?, 30)", [name, ["a", "b"]])
    with duckdb.connect(str(root / "private" / "private.duckdb")) as con:
        con.execute("CREATE TABLE conversations (conversation_id VARCHAR, messages JSON)")
        con.execute("CREATE TABLE facets (conversation_id VARCHAR, value JSON)")
        con.execute("CREATE TABLE quarantine (reason VARCHAR)")
        messages = json.dumps([{"role": "user", "content": text if where == "private" else "hi"}])
        con.execute("INSERT INTO conversations VALUES ('c1', ?)", [messages])
        con.execute("INSERT INTO facets VALUES ('c1', ?)", [json.dumps("summary")])
    (root / "logs" / "clio.log").write_text(
        f"INFO scrub: {text if where == 'logs' else '3 spans'}\n", encoding="utf-8"
    )
    (root / "manifest.json").write_text(
        json.dumps({"note": text if where == "manifest" else "ok"}), encoding="utf-8"
    )
    (root / "runs" / "run-1.json").write_text("{}", encoding="utf-8")
    (root / "private" / "manifest.json").write_text(
        json.dumps({"note": text if where == "operator_manifest" else "ok"}), encoding="utf-8"
    )
    db = sqlite3.connect(root / "prefect" / "prefect.db")
    db.execute("CREATE TABLE task_run (name TEXT, parameters TEXT)")
    db.execute(
        "INSERT INTO task_run VALUES ('scrub', ?)",
        ["x" * 5000 + text if where == "prefect_db" else "{}"],
    )
    db.commit()
    db.close()
    result = text.encode() if where == "prefect_result" else b"\x80\x04N."
    (root / "prefect" / "storage" / "abc123").write_bytes(b"\x80\x04\x95" + result)


@pytest.mark.parametrize(
    ("where", "location"),
    [
        ("released", "insights.duckdb:clusters.name"),
        ("private", "private.duckdb:conversations.messages"),
        ("logs", "logs/clio.log"),
        ("manifest", "manifest.json"),
        ("operator_manifest", "private/manifest.json"),
        ("prefect_db", "prefect.db:task_run"),
        ("prefect_result", "prefect/storage/abc123"),
    ],
)
def test_run_scan_finds_a_leak_wherever_it_is(tmp_path, where, location):
    _fake_run_outputs(tmp_path, "Mail theodora.lindqvist481@example.org now", where)
    canary = Canary("EMAIL_ADDRESS", "theodora.lindqvist481@example.org")
    report = scan_run_outputs(tmp_path, [canary])
    assert len(report.leaks) >= 1
    assert all(leak.kind == "EMAIL_ADDRESS" for leak in report.leaks)
    assert any(leak.location.endswith(location) for leak in report.leaks), report.leaks


def test_run_scan_of_clean_outputs_reports_what_it_read(tmp_path):
    _fake_run_outputs(tmp_path, None, "")
    report = scan_run_outputs(tmp_path, [Canary("EMAIL_ADDRESS", "nobody123@example.org")])
    assert report.leaks == []
    for expected in (
        "insights.duckdb:clusters.name",
        "insights.duckdb:clusters.keywords",
        "private.duckdb:conversations.messages",
        "private.duckdb:facets.value",
        "prefect.db:task_run",
    ):
        assert expected in report.scanned
    for path in (
        "logs/clio.log",
        "manifest.json",
        "runs/run-1.json",
        "private/manifest.json",
        "prefect/prefect.db",
    ):
        assert any(s.endswith(path) for s in report.scanned), path


# --- through the scrubber ---------------------------------------------------------------------


def _conversations(records) -> list[Conversation]:
    return [
        Conversation(
            conversation_id=r["conversation_id"],
            user_id=r["user_id"],
            timestamp=datetime(2024, 6, 1, tzinfo=UTC),
            messages=tuple(Message(m["role"], m["content"]) for m in r["messages"]),
            source="canary.jsonl",
        )
        for r in records
    ]


@pytest.mark.parametrize("keep_public_places", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scrubbing_removes_every_canary(seed, keep_public_places):
    canary_set = make_canary_conversations(24, seed=seed)
    config = ScrubConfig(keep_public_places=keep_public_places)
    scrubbed, quarantined = scrub_conversations(
        _conversations(canary_set.records), build_scrubber(config), "key"
    )
    assert quarantined == []
    assert len(scrubbed) == len(canary_set.records)
    texts = [(c.conversation_id, "\n".join(m.content for m in c.messages)) for c in scrubbed]
    assert scan_texts(texts, canary_set.canaries) == []
    # and the same check on the unscrubbed text finds them all
    raw = [(r["conversation_id"], json.dumps(r, ensure_ascii=False)) for r in canary_set.records]
    assert {leak.kind for leak in scan_texts(raw, canary_set.canaries)} == set(CANARY_KINDS)


# --- the whole flow ---------------------------------------------------------------------------

N_FLOW_CONVERSATIONS = 40


@pytest.mark.slow
def test_no_canary_leaves_the_whole_flow(tmp_path):
    """Planted canaries of every kind through `clio run` (real scrubber, local model,
    Prefect): none appears in anything the run writes, while the raw input holds them all."""
    canary_set = make_canary_conversations(N_FLOW_CONVERSATIONS, seed=11)
    raw = write_jsonl(canary_set.records, tmp_path / "canaries.jsonl")
    config = tmp_path / "config.yaml"
    config.write_text(
        "privacy: {min_users: 2, min_conversations: 2}\n"
        "cluster: {target_cluster_size: 8}\n"
        "hierarchy: {branching: 2, top_clusters: 2}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    done = run_clio(config, raw, out, cwd=tmp_path, hmac_key="canary-test-key")
    report = scan_run_outputs(out, canary_set.canaries)
    assert report.leaks == []
    for expected in (
        "insights.duckdb:clusters.name",
        "private.duckdb:conversations.messages",
        "private.duckdb:facets.value",
    ):
        assert expected in report.scanned
    assert any("/logs/" in s for s in report.scanned)
    assert any(s.endswith("manifest.json") for s in report.scanned)
    assert any("/prefect/" in s for s in report.scanned)
    # The run's own console output carries no canary either.
    assert scan_texts([("stdout", done.stdout), ("stderr", done.stderr)], canary_set.canaries) == []
    # The same checker finds every kind in the raw input.
    raw_report = scan_paths([raw], canary_set.canaries)
    assert {leak.kind for leak in raw_report.leaks} == set(CANARY_KINDS)
