import numpy as np
import pytest

from clio.keywords import (
    KEYWORD_STOP_WORDS,
    cluster_keywords,
    count_terms,
    strip_placeholders,
    words,
)


def test_a_word_from_one_heavy_user_is_never_a_keyword():
    texts = ["zebra zebra zebra"] * 10 + ["python code"] * 3 + ["python"]
    users = ["heavy"] * 10 + ["a", "b", "c", "d"]
    labels = np.zeros(len(texts), dtype=np.int64)
    keywords = cluster_keywords(texts, labels, users, n_keywords=10, min_users=3)
    assert keywords == {0: ["python", "code"]}
    # with a threshold of one user the heavy user's word wins on frequency
    assert cluster_keywords(texts, labels, users, n_keywords=10, min_users=1)[0][0] == "zebra"


@pytest.mark.parametrize(
    ("min_users", "expected_0", "expected_1"),
    [(1, ["tax", "garden"], ["garden"]), (2, ["tax"], ["garden"]), (3, ["tax"], []), (4, [], [])],
)
def test_distinct_users_are_counted_per_cluster(min_users, expected_0, expected_1):
    # "tax": 3 users in cluster 0. "garden": 3 users overall, but 1 in cluster 0, 2 in cluster 1.
    texts = ["tax", "tax", "tax", "garden", "garden", "garden"]
    users = ["a", "b", "c", "a", "b", "c"]
    labels = np.array([0, 0, 0, 0, 1, 1])
    keywords = cluster_keywords(texts, labels, users, n_keywords=5, min_users=min_users)
    assert keywords[0] == expected_0
    assert keywords[1] == expected_1


def test_distinctive_words_rank_above_words_shared_by_every_cluster():
    texts = ["python code help"] * 4 + ["cake recipe help"] * 4
    users = [f"u{i}" for i in range(8)]
    labels = np.array([0] * 4 + [1] * 4)
    keywords = cluster_keywords(texts, labels, users, n_keywords=3, min_users=2)
    assert keywords == {0: ["code", "python", "help"], 1: ["cake", "recipe", "help"]}
    assert cluster_keywords(texts, labels, users, n_keywords=1, min_users=2) == {
        0: ["code"],
        1: ["cake"],
    }


def test_placeholders_stop_words_and_numbers_are_skipped():
    texts = [
        "email <EMAIL_ADDRESS> to <PERSON_1> about the 2024 invoice",
        "send <PERSON> the invoice [PHONE_NUMBER] 555",
        "the invoice for <PERSON_2> and <EMAIL_ADDRESS_3>",
    ]
    users = ["a", "b", "c"]
    keywords = cluster_keywords(
        texts, np.zeros(3, dtype=np.int64), users, n_keywords=10, min_users=1
    )
    assert set(keywords[0]) == {"email", "invoice", "send"}
    assert keywords[0][0] == "invoice"
    assert strip_placeholders("hi <PERSON_12>!") == "hi  !"


def test_every_cluster_gets_a_key_even_without_terms():
    texts = ["the and of", "<PERSON>", "12 34"]
    keywords = cluster_keywords(
        texts, np.array([0, 1, 2]), ["a", "b", "c"], n_keywords=3, min_users=1
    )
    assert keywords == {0: [], 1: [], 2: []}
    assert cluster_keywords([], np.array([], dtype=np.int64), [], n_keywords=3, min_users=1) == {}


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        cluster_keywords(["a b"], np.array([0, 0]), ["u"], n_keywords=3, min_users=1)


@pytest.mark.parametrize(
    "text",
    [
        "Email <EMAIL_ADDRESS> to <PERSON_1> about the 2024 invoice invoice",
        "Ça coûte 12€ à Zürich: naïve café_au_lait x y ab [PHONE_NUMBER]",
        "don't re-use it's B2B e-mail",
    ],
)
def test_words_are_the_tokens_the_keywords_are_counted_from(text):
    """`words` (which the gate counts keyword support and rare words with) splits a text
    as `count_terms` does, before it drops stop words."""
    counts = count_terms([text], ["u"])
    expected = [w for w in words(text) if w not in KEYWORD_STOP_WORDS]
    assert sorted(counts.vocabulary) == sorted(set(expected))
    assert counts.doc_terms.sum() == len(expected)


def _common_word_corpus() -> tuple[list[str], np.ndarray, list[str]]:
    """Two clusters of 6 users; every text says "great" twice, half of each cluster's texts
    name its own topic word (so 3 users: enough support)."""
    topics = ["flight", "pasta"]
    texts = [f"great great {topic if i % 2 else ''}" for topic in topics for i in range(6)]
    labels = np.repeat(np.arange(2), 6)
    return texts, labels, [f"user-{i}" for i in range(len(texts))]


def test_a_word_common_across_the_facet_does_not_lead_a_clusters_keywords():
    texts, labels, users = _common_word_corpus()
    found = cluster_keywords(texts, labels, users, n_keywords=2, min_users=3)
    assert [found[c][0] for c in range(2)] == ["flight", "pasta"]


def test_control_plain_ctfidf_lets_the_common_word_lead():
    texts, labels, users = _common_word_corpus()
    found = cluster_keywords(
        texts, labels, users, n_keywords=2, min_users=3, frequency_penalty=False
    )
    assert [found[c][0] for c in range(2)] == ["great", "great"]
