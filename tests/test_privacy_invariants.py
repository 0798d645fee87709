"""The privacy invariants through the real stages: hierarchy -> gate -> released store.

Each scenario builds a facet tree with `build_facet_tree` (real k-means, keywords and
hierarchy; a deterministic hashed bag-of-words embedding; a fake LLM at the I/O
boundary that names clusters by repeating the words it is shown, i.e. the leakiest
namer possible), passes it through `apply_gate`, writes the store with
`write_release`, and then reads every column of every table of the file. Each test
has a control that runs the same checker on a release made with the gate opened up
(thresholds of 1) or the check removed, and shows that the checker fails there.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer

from clio.audit import KeywordRenamer, audit_texts
from clio.config import LLMConfig, RunConfig, ScrubConfig
from clio.gate import GateResult, apply_gate
from clio.hierarchy import TreeSettings, build_facet_tree
from clio.llm.base import LLMError
from clio.llm.client import StructuredLLM
from clio.records import Cluster
from clio.release import write_release
from clio.released import ReleasedCluster, RunRow
from tests.canary import CANARY_KINDS, duckdb_texts, make_canary_conversations, scan_texts
from tests.fakes.llm import Call, FakeBackend
from tests.privacy_checks import full_members, k_support_violations

MIN_USERS = MIN_CONVERSATIONS = 5  # the shipped sample's setting (configs/sample.yaml)

TOPICS = {
    "garden": ["garden", "soil", "tomato", "compost", "seedlings", "watering"],
    "taxes": ["taxes", "deduction", "refund", "filing", "income", "receipts"],
    "python": ["python", "function", "loop", "error", "script", "list"],
    "travel": ["flight", "hotel", "passport", "luggage", "airport", "booking"],
    "fitness": ["workout", "running", "muscles", "stretching", "squats", "cardio"],
    "music": ["guitar", "chords", "piano", "melody", "practice", "scales"],
    "car": ["tyres", "engine", "brakes", "mechanic", "battery", "insurance"],
    "writing": ["essay", "paragraph", "thesis", "grammar", "citation", "draft"],
}
HEAVY_WORDS = ["zundapp", "moped", "carburetor", "sparkplug", "jets"]
RARE_WORDS = ["axolotl", "gills", "fungus", "terrarium"]
FILLER = ["please", "quick", "question", "need", "advice", "today", "simple", "way"]


def _text(rng: random.Random, words: list[str]) -> str:
    return " ".join(rng.sample(words, 4) + rng.sample(FILLER, 2))


def make_corpus(heavy: bool = True, rare: bool = True) -> list[tuple[str, str, str]]:
    """(conversation id, user, request text): eight common topics of 30 conversations from
    20 users each; one heavy user with 40 conversations on a narrow topic; a rare topic of
    3 conversations from 2 users."""
    rng = random.Random(5)
    rows = []
    for topic, words in TOPICS.items():
        for i in range(30):
            rows.append((f"{topic}-{i}", f"{topic}-user-{i % 20}", _text(rng, words)))
    if heavy:
        rows += [(f"heavy-{i}", "heavy-user", _text(rng, HEAVY_WORDS)) for i in range(40)]
    if rare:
        rows += [(f"rare-{i}", f"rare-user-{min(i, 1)}", _text(rng, RARE_WORDS)) for i in range(3)]
    return rows


def embed(texts: list[str]) -> np.ndarray:
    """Deterministic embedding: hashed word counts, L2-normalised."""
    hashed = HashingVectorizer(n_features=512, alternate_sign=False, norm="l2")
    return hashed.transform(texts).toarray().astype(np.float32)


_STRUCTURE = {"distinctive", "words", "statements", "group", "groups", "help", "related"}


def _content_words(text: str) -> list[str]:
    words = re.findall(r"[a-z]{2,}", text.lower())
    return [w for w in words if w not in ENGLISH_STOP_WORDS and w not in _STRUCTURE]


def leaky_namer(audit_score: int | Exception = 5):
    """A fake LLM: names and describes a group with the words it is shown (most frequent
    first), so anything shown to it reaches its answer; the audit scores every text
    `audit_score` (or raises it)."""

    def answer(call: Call):
        if call.prompt.task == "privacy_audit":
            if isinstance(audit_score, Exception):
                raise audit_score
            return {"score": audit_score, "reason": "scripted"}
        counts = Counter(_content_words(call.prompt.input))
        ranked = [w for w, _ in counts.most_common()]
        name = "Help with " + " ".join(ranked[:2]) if ranked else "Help"
        description = "Users ask about " + ", ".join(ranked)
        return {"name": name[:60], "description": description[:299]}

    return answer


def llm_for(backend: FakeBackend) -> StructuredLLM:
    return StructuredLLM(backend, LLMConfig(max_retries=0), backoff_seconds=0)


def run_stages(
    tmp_path: Path,
    corpus: list[tuple[str, str, str]],
    threshold: int = MIN_USERS,
    audit_score: int | Exception = 5,
    names: str = "llm",
) -> tuple[Path, list[Cluster], dict[str, str], GateResult]:
    """hierarchy -> gate (rare words, audit, renaming) -> write_release: the store's path,
    the private tree, the users and the gate's result. Names from the leaky LLM namer,
    unless `names` is "extractive"."""
    config = RunConfig(
        privacy={"min_users": threshold, "min_conversations": threshold},
        cluster={"target_cluster_size": 30, "seed": 0},
        hierarchy={"branching": 3, "top_clusters": 3},
        describe={"samples_inside": 60, "samples_outside": 4, "names": names},
    )
    ids = [c for c, _, _ in corpus]
    users = {c: u for c, u, _ in corpus}
    texts = [t for _, _, t in corpus]
    llm = llm_for(FakeBackend(leaky_namer(audit_score)))
    settings = TreeSettings.from_config(config)
    tree = build_facet_tree(
        "request", ids, texts, [users[c] for c in ids], embed(texts), llm, settings
    )
    values = {c: {"request": t} for c, _, t in corpus}
    result = apply_gate(
        tree, users, values, config.privacy, breakdown_facets=[],
        audit=partial(audit_texts, llm=llm), regenerate=KeywordRenamer(llm),
    )  # fmt: skip
    store = tmp_path / f"insights-{threshold}.duckdb"
    write_release(store, _run_row(threshold), result)
    return store, tree, users, result


def _run_row(threshold: int) -> RunRow:
    moment = datetime(2024, 6, 1, 12, 0, 0)
    return RunRow("run-test", moment, moment, "cfg", threshold, threshold, 1, 0, 1, 0, 0, 0, 0)


def released_text(store: Path) -> str:
    """Every value of every column of every table of the released store, lower-cased."""
    return "\n".join(text for _, text in duckdb_texts(store)).lower()


def leaked(store: Path, words: list[str]) -> list[str]:
    text = released_text(store)
    return [w for w in words if w in text]


def released_ids(store: Path) -> list[str]:
    text = dict(duckdb_texts(store, tables=("clusters",)))
    return text[f"{store.name}:clusters.cluster_id"].split("\n")


def heavy_clusters(store: Path, tree: list[Cluster], users: dict[str, str]) -> list[str]:
    """Released clusters made by the heavy user: most of their conversations are the heavy
    user's, and the other users alone would not meet the thresholds."""
    members = full_members(tree)
    found = []
    for cid in released_ids(store):
        heavy = [m for m in members[cid] if users[m] == "heavy-user"]
        others = {users[m] for m in members[cid]} - {"heavy-user"}
        if 2 * len(heavy) > len(members[cid]) and len(others) < MIN_USERS:
            found.append(cid)
    return found


# -- invariant 2: one heavy user never makes a cluster ----------------------------------------


def test_a_heavy_user_never_yields_a_released_cluster_about_their_topic(tmp_path):
    store, tree, users, result = run_stages(tmp_path, make_corpus())

    # the private tree does have a cluster of the heavy user's conversations, named after it
    members = full_members(tree)
    own = [
        c
        for c in tree
        if c.level == 0 and all(users[m] == "heavy-user" for m in members[c.cluster_id])
    ]
    assert own and "zundapp" in own[0].name.lower()
    assert heavy_clusters(store, tree, users) == []
    assert leaked(store, HEAVY_WORDS) == []
    assert result.suppressed["cluster_below_min_users"] >= 1


def test_control_an_open_gate_lets_the_heavy_user_cluster_through(tmp_path):
    store, tree, users, _ = run_stages(tmp_path, make_corpus(), threshold=1)
    assert heavy_clusters(store, tree, users) != []
    assert "zundapp" in leaked(store, HEAVY_WORDS)


# -- invariants 2 and 4: a rare topic never reaches a released text --------------------------


def test_a_rare_topic_of_two_users_never_appears_in_any_released_text(tmp_path):
    store, tree, users, result = run_stages(tmp_path, make_corpus(heavy=False))

    # the rare conversations sit in a released cluster whose private name or description
    # (from the leaky namer) mentions them: the text checks, not the thresholds, stop it
    members = full_members(tree)
    carrying = [c for c in tree if members[c.cluster_id] & {"rare-0", "rare-1", "rare-2"}]
    mentioning = [c for c in carrying if "axolotl" in f"{c.name} {c.description}".lower()]
    assert {c.cluster_id for c in mentioning} & set(released_ids(store))
    assert leaked(store, RARE_WORDS) == []
    assert result.text_checks["failed_rare_word"] >= 1
    assert result.text_checks["clusters_renamed"] >= 1


def test_control_an_open_gate_releases_the_rare_topic(tmp_path):
    store, _, _, _ = run_stages(tmp_path, make_corpus(heavy=False), threshold=1)
    assert "axolotl" in leaked(store, RARE_WORDS)


# -- invariant 8: k-supported text ----------------------------------------------------------


def test_extractive_names_are_k_supported_by_construction(tmp_path):
    corpus = make_corpus()
    store, tree, users, result = run_stages(tmp_path, corpus, names="extractive")
    values = {c: {"request": t} for c, _, t in corpus}
    # before the gate: every node with enough users named from its members (the heavy
    # user's own cluster has no word of MIN_USERS users: a placeholder), k-supported
    members = full_members(tree)
    for c in tree:
        enough = len({users[m] for m in members[c.cluster_id]}) >= MIN_USERS
        assert c.extra["name_source"] == ("extractive" if enough else "keywords")
    assert k_support_violations(_as_released(tree), tree, users, values, MIN_USERS) == []
    # so the gate withholds none of them for support, and the release holds the invariant
    assert result.text_checks.get("failed_rare_in_cluster", 0) == 0
    assert result.text_checks.get("failed_rare_word", 0) == 0
    assert k_support_violations(result, tree, users, values, MIN_USERS) == []
    assert leaked(store, RARE_WORDS + HEAVY_WORDS) == []


def test_control_a_leaky_namer_breaks_k_support_before_the_gate(tmp_path):
    corpus = make_corpus(heavy=False)
    _, tree, users, result = run_stages(tmp_path, corpus)
    values = {c: {"request": t} for c, _, t in corpus}
    assert k_support_violations(_as_released(tree), tree, users, values, MIN_USERS) != []
    assert k_support_violations(result, tree, users, values, MIN_USERS) == []


def _as_released(tree: list[Cluster]) -> GateResult:
    """The private tree's texts as if released unchanged (for checking them)."""
    rows = [
        ReleasedCluster(c.facet, c.level, c.cluster_id, c.parent_id, c.name, c.description,
                        list(c.keywords), 0, 0, 0.0, None, None, None)
        for c in tree
    ]  # fmt: skip
    return GateResult(rows, [])


# -- invariant 4: a failing audit withholds, counts, never releases ---------------------------


@pytest.mark.parametrize("audit_score", [1, LLMError("audit model down")])
def test_texts_that_fail_the_audit_are_withheld_and_counted(tmp_path, audit_score):
    store, tree, _, result = run_stages(tmp_path, make_corpus(), audit_score=audit_score)
    n_released = len(result.clusters)
    assert n_released >= 3

    reason = "audit" if audit_score == 1 else "audit_error"
    # every name and description failed, was renamed once, failed again: withheld
    assert result.suppressed[f"text_withheld_{reason}"] == 2 * n_released
    assert result.text_checks["clusters_regenerated"] == n_released
    assert result.text_checks["clusters_text_withheld"] == n_released
    assert result.suppressed[f"keyword_withheld_{reason}"] >= 1
    assert all(
        (c.name, c.description, c.keywords) == ("(withheld)", "", []) for c in result.clusters
    )
    text = released_text(store)
    for cluster in tree:
        for private in (cluster.name, cluster.description, *cluster.keywords):
            assert private.lower() not in text


def test_control_a_passing_audit_releases_the_names(tmp_path):
    store, tree, _, result = run_stages(tmp_path, make_corpus(), audit_score=5)
    names = {
        c.name.lower() for c in tree if c.cluster_id in {r.cluster_id for r in result.clusters}
    }
    assert any(name in released_text(store) for name in names)


# -- invariant 5 at the gate: planted canary PII never passes the re-scan ---------------------


@pytest.fixture(scope="module")
def scrubber():
    from clio.scrub import build_scrubber

    return build_scrubber(ScrubConfig())


def _canary_tree():
    """Clusters whose names, descriptions, keywords and breakdown values carry canaries,
    as if the naming model had copied PII from the conversations."""
    canaries = make_canary_conversations(24, seed=3).canaries
    values = [c.value for c in canaries]
    users = {f"c{i}": f"u{i}" for i in range(40)}
    facet_values = {}
    for i, conversation in enumerate(users):
        # a canary value written by every member, so neither thresholds nor rare words stop it
        facet_values[conversation] = {"request": f"ask {values[i % 4]}", "language": values[4]}
    clusters = [
        Cluster("request", 0, f"k{j}", None, [f"c{i}" for i in range(j * 10, j * 10 + 10)],
                f"Help {values[j]}", f"Users mention {values[j + 4]}.", [values[j % 4]])
        for j in range(4)
    ]  # fmt: skip
    return canaries, clusters, users, facet_values


def _release_canaries(tmp_path: Path, text_check) -> Path:
    canaries, clusters, users, facet_values = _canary_tree()
    config = RunConfig(privacy={"min_users": 5, "min_conversations": 5}).privacy
    result = apply_gate(
        clusters, users, facet_values, config, breakdown_facets=["language"],
        text_check=text_check, regenerate=KeywordRenamer(None),
    )  # fmt: skip
    store = tmp_path / "insights.duckdb"
    write_release(store, _run_row(5), result)
    return store


def test_canary_pii_in_released_texts_is_withheld(tmp_path, scrubber):
    canaries = _canary_tree()[0]
    store = _release_canaries(tmp_path, lambda text: not scrubber.analyze([text])[0])
    assert scan_texts(duckdb_texts(store), canaries) == []
    assert len(released_ids(store)) == 4


def test_control_without_the_rescan_canaries_reach_the_store(tmp_path):
    canaries = _canary_tree()[0]
    store = _release_canaries(tmp_path, None)
    kinds = {leak.kind for leak in scan_texts(duckdb_texts(store), canaries)}
    assert len(kinds) >= 5 and kinds <= set(CANARY_KINDS)
