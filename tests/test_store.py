from datetime import datetime

import numpy as np

from clio.records import FacetValue, Message, QuarantineRecord, ScrubbedConversation
from clio.store import PrivateStore


def _conv(cid: str, text: str = "hello") -> ScrubbedConversation:
    return ScrubbedConversation(
        conversation_id=cid,
        user_pseudonym="u_" + cid,
        timestamp=datetime(2026, 1, 2, 3, 4, 5),
        messages=(Message("user", text), Message("assistant", "hi <PERSON_1>")),
        source="a.jsonl",
        content_hash="h" + cid,
        n_pii_spans=1,
    )


def test_conversations_round_trip_and_upsert(tmp_path):
    with PrivateStore(tmp_path / "p.duckdb") as store:
        store.put_conversations([_conv("b"), _conv("a")], "run-1")
        store.put_conversations([_conv("a", "changed")], "run-2")
        got = store.get_conversations()
        assert [c.conversation_id for c in got] == ["a", "b"]
        assert got[0] == _conv("a", "changed")
        assert store.get_conversations(["b"]) == [_conv("b")]
        assert store.known_content_hashes() == {"ha", "hb"}


def test_store_survives_reopen(tmp_path):
    path = tmp_path / "p.duckdb"
    with PrivateStore(path) as store:
        store.put_conversations([_conv("a")], "run-1")
        secret = store.get_or_create_secret("k")
    with PrivateStore(path) as store:
        assert store.get_conversations() == [_conv("a")]
        assert store.get_or_create_secret("k") == secret
        assert len(secret) == 64


def test_quarantine_is_per_run(tmp_path):
    record = QuarantineRecord("f.jsonl", "line 3", "invalid_json", "bad", "abc")
    with PrivateStore(tmp_path / "p.duckdb") as store:
        store.put_quarantine([record], "run-1")
        store.put_quarantine([record, record], "run-2")
        assert store.quarantine_for_run("run-1") == [record]
        assert len(store.quarantine_for_run("run-2")) == 2


def test_facets_replace_per_conversation_and_facet(tmp_path):
    with PrivateStore(tmp_path / "p.duckdb") as store:
        store.put_facets([FacetValue("a", "request", "x"), FacetValue("a", "values", ["p", "q"])])
        store.put_facets([FacetValue("a", "request", None, "failed", "timeout")])
        assert store.get_facets(["a"]) == [
            FacetValue("a", "request", None, "failed", "timeout"),
            FacetValue("a", "values", ["p", "q"]),
        ]


def test_embedding_and_llm_caches(tmp_path):
    with PrivateStore(tmp_path / "p.duckdb") as store:
        vec = np.array([0.5, -0.25], dtype=np.float32)
        store.put_embeddings("m", {"h1": vec})
        got = store.get_embeddings("m", ["h1", "h2"])
        assert list(got) == ["h1"]
        np.testing.assert_array_equal(got["h1"], vec)
        assert store.get_embeddings("other", ["h1"]) == {}
        assert store.get_llm_response("k") is None
        store.put_llm_response("k", "local", "m", {"name": "x"}, 10, 3)
        assert store.get_llm_response("k") == ({"name": "x"}, 10, 3)


def test_cluster_members_replace_per_run_and_facet(tmp_path):
    from clio.records import Cluster

    tree = [
        Cluster("request", 0, "request-L0-000", "request-L1-000", ["a", "b", "a"]),
        Cluster("request", 1, "request-L1-000", None, ["a", "b"]),
    ]
    with PrivateStore(tmp_path / "p.duckdb") as store:
        store.put_cluster_members("run-1", "request", tree)
        store.put_cluster_members("run-1", "request", tree[:1])
        rows = store.execute(
            "SELECT level, cluster_id, conversation_id FROM cluster_members ORDER BY ALL"
        )
        assert rows == [(0, "request-L0-000", "a"), (0, "request-L0-000", "b")]
