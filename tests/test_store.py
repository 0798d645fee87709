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


# -- shards, builds and incremental additions ------------------------------------


def test_a_shard_merges_once_and_is_deleted(tmp_path):
    from clio.store import LayeredCache

    main_path, shard_path = tmp_path / "p.duckdb", tmp_path / "shard-0.duckdb"
    with PrivateStore(main_path) as main:
        main.put_conversations([_conv("a", "old")], "run-1")
        main.put_llm_response("k-main", "b", "m", {"x": 1}, 1, 1)
    with (
        PrivateStore(main_path, read_only=True) as main,
        PrivateStore(shard_path) as shard,
    ):
        cache = LayeredCache(shard, main)
        assert cache.get_llm_response("k-main") == ({"x": 1}, 1, 1)  # read from the main store
        cache.put_llm_response("k-new", "b", "m", {"y": 2}, 3, 4)
        cache.put_embeddings("st", {"t1": np.ones(2, np.float32)})
        assert set(cache.get_embeddings("st", ["t1", "t2"])) == {"t1"}
        assert main.get_llm_response("k-new") is None  # writes go to the shard only
        shard.put_conversations([_conv("a", "new"), _conv("b")], "run-2")
        shard.put_facets([FacetValue("b", "request", "x")])
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(shard_path.read_bytes())
    with PrivateStore(main_path) as main:
        main.merge_shard(shard_path)
        main.merge_shard(copy)  # the same rows again change nothing
        assert not shard_path.exists() and not copy.exists()
        assert main.get_conversations() == [_conv("a", "new"), _conv("b")]
        first_runs = main.execute("SELECT first_run_id FROM conversations ORDER BY ALL")
        assert first_runs == [("run-1",), ("run-2",)]
        assert main.get_facets(["b"]) == [FacetValue("b", "request", "x")]
        assert main.get_llm_response("k-new") == ({"y": 2}, 3, 4)
        assert list(main.get_embeddings("st", ["t1"])) == ["t1"]


def _nodes() -> list:
    from clio.store import BuildNode

    return [
        BuildNode("request", 1, "r-1-0", None, "Top", "d", ["a"], 0.0, 0.0, None),
        BuildNode("request", 0, "r-0-0", "r-1-0", "Base", "d", ["b"], 0.5, -0.5, np.ones(3)),
    ]


def test_builds_and_incremental_additions(tmp_path):
    with PrivateStore(tmp_path / "p.duckdb") as store:
        store.put_conversations([_conv("a"), _conv("b"), _conv("c")], "build-1")
        assert store.current_build() is None
        store.put_assignments("build-1", "request", [("a#0", "a", "r-0-0")])
        store.put_build("build-1", "shape", _nodes(), ["a", "b"])
        assert store.current_build() == ("build-1", "shape")
        nodes = store.build_nodes("build-1")
        assert [n.cluster_id for n in nodes] == ["r-0-0", "r-1-0"]
        assert nodes[0].centroid.tolist() == [1.0, 1.0, 1.0] and nodes[1].centroid is None
        assert nodes[0].keywords == ["b"] and nodes[0].parent_id == "r-1-0"

        store.add_to_build("build-1", "inc-1", ["c"], [("request", "c#0", "c", "r-0-0")], [])
        store.add_to_build("build-1", "inc-1", ["c"], [("request", "c#0", "c", "r-0-0")], [])
        assert store.base_members("build-1", "request") == {"r-0-0": {"a", "c"}}
        assert store.execute("SELECT count(*) FROM assignments WHERE run_id = 'inc-1'") == [(1,)]
        store.add_to_build("build-1", "inc-2", ["d"], [], [("request", "d#0", "d", 0.9)])
        assert store.build_conversation_ids("build-1") == ["a", "b", "c", "d"]
        assert store.unassigned_counts("build-1") == (1, 1)
        assert store.conversation_ids_by_hash(["ha", "hc", "hzz"]) == {"ha": "a", "hc": "c"}
        assert store.user_pseudonyms(["a", "zz"]) == {"a": "u_a"}

        # Recording the build again forgets what incremental runs added to it.
        store.put_build("build-1", "shape", _nodes(), ["a", "b"])
        assert store.build_conversation_ids("build-1") == ["a", "b"]
        assert store.unassigned_counts("build-1") == (0, 0)
        assert store.base_members("build-1", "request") == {"r-0-0": {"a"}}
