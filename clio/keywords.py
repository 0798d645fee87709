"""Cluster keywords by class-based TF-IDF (as in BERTopic), counted by distinct users.

Plain c-TF-IDF lets a word that is frequent everywhere ("good", "make", "way") lead a
cluster's keywords, because the cluster uses it often. Each score is therefore weighted
by the share of the term's texts that lie in the cluster (a class-frequency penalty): a
word spread over twenty clusters keeps a twentieth of its score, a word the cluster
owns keeps all of it.

A term is kept for a cluster only if at least `min_users` distinct users in that cluster
used it (or another word of its `stem`, which also keeps one form per stem): a rare word
can identify a person, and one heavy user repeating a word must not make it a keyword.
Scrubber placeholders (`<PERSON_1>`) never count.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import snowballstemmer
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer
from sklearn.preprocessing import normalize

# `<PERSON>`, `<EMAIL_ADDRESS_2>`, `[PHONE_NUMBER]`: typed placeholders left by the scrubber.
_PLACEHOLDER = re.compile(r"[<\[]\s*[A-Z][A-Z0-9_]*\s*[>\]]")
# Words of two or more letters: numbers are dropped (amounts, years and ids identify people).
_WORD = re.compile(r"(?u)\b[^\W\d_]{2,}\b")
# Every run of letters, whatever its length or neighbours.
_LETTERS = re.compile(r"[^\W\d_]+")


# Verbs and adjectives nearly every request uses, which say nothing of its topic ("what do
# you think", "the best way to", "can you tell me"): never a keyword, and a name made of
# them names nothing (`clio.naming.GENERIC_WORDS`).
CONVERSATIONAL_WORDS = frozenset(
    _WORD.findall(
        "think thinking thought make making way ways best good better like likes know knows "
        "tell telling say saying said want wants need needs thing things really going use "
        "using try trying lot doing did does getting got okay ok yes sure mean means"
    )
)
KEYWORD_STOP_WORDS = sorted(ENGLISH_STOP_WORDS | CONVERSATIONAL_WORDS)


def strip_placeholders(text: str) -> str:
    return _PLACEHOLDER.sub(" ", text)


def _normalise(text: str) -> str:
    """A text as it is tokenised: placeholders dropped, lower case."""
    return strip_placeholders(text).lower()


def words(text: str) -> list[str]:
    """The words of `text` as keywords are counted, in order and with repeats. Stop words
    are kept: `count_terms` drops them after this step, and the privacy gate counts a
    keyword's support and a word's rarity with this same tokenizer."""
    return _WORD.findall(_normalise(text))


_stemmers = threading.local()


@lru_cache(maxsize=1 << 17)
def stem(word: str) -> str:
    """The Snowball (Porter 2) English stem of a lower-case `word`: the unit word support is
    counted in, so "word" and "words", or "insult" and "insulting", are one word for the
    `min_users` rule. Snowball stemmers keep state while stemming, hence one per thread."""
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = snowballstemmer.stemmer("english")
    return stemmer.stemWord(word)


def stems(text: str) -> list[str]:
    """`words(text)`, each as its `stem`."""
    return [stem(w) for w in words(text)]


def letter_runs(text: str) -> list[str]:
    """Every run of letters in `text` as written (case kept, placeholders not dropped).

    Not `words`: this is for comparing one text with another (a name with its prompt, an
    answer with a few-shot example), where a one-letter word, the letters of "covid19" and
    a placeholder's type still count; `words` is what keywords and their support count."""
    return _LETTERS.findall(text)


@dataclass(frozen=True)
class TermCounts:
    """Term counts of a fixed list of texts and their users, vectorised once and scored for
    any labelling of those texts (each level of a tree labels the same items)."""

    doc_terms: sparse.csr_matrix | None  # (n, V) counts; None when the vocabulary is empty
    vocabulary: np.ndarray
    user_codes: np.ndarray  # one small integer per distinct user, per text

    @property
    def n(self) -> int:
        return len(self.user_codes)


def count_terms(texts: Sequence[str], users: Sequence[str]) -> TermCounts:
    """Vectorise `texts` once (English stop words and `CONVERSATIONAL_WORDS` left out,
    words of two or more letters, placeholders dropped) for `keywords_of`."""
    if len(texts) != len(users):
        raise ValueError(f"texts and users differ in length: {len(texts)}, {len(users)}")
    user_codes = np.unique(np.asarray(users, dtype=object), return_inverse=True)[1].ravel()
    vectorizer = CountVectorizer(
        stop_words=KEYWORD_STOP_WORDS,
        token_pattern=_WORD.pattern,
        preprocessor=_normalise,
    )
    try:
        doc_terms = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # empty vocabulary: only stop words, numbers or placeholders
        return TermCounts(None, np.array([], dtype=object), user_codes)
    return TermCounts(doc_terms, vectorizer.get_feature_names_out(), user_codes)


def cluster_keywords(
    texts: Sequence[str],
    labels: np.ndarray,
    users: Sequence[str],
    *,
    n_keywords: int,
    min_users: int,
    frequency_penalty: bool = True,
) -> dict[int, list[str]]:
    """Top `n_keywords` c-TF-IDF terms per label (every label 0..max present as a key),
    keeping only terms used by at least `min_users` distinct users of that cluster."""
    labels = np.asarray(labels, dtype=np.int64)
    if not (len(texts) == len(labels) == len(users)):
        raise ValueError(
            f"texts, labels and users differ in length: {len(texts)}, {len(labels)}, {len(users)}"
        )
    if len(labels) == 0:
        return {}
    return keywords_of(
        count_terms(texts, users),
        labels,
        n_keywords=n_keywords,
        min_users=min_users,
        frequency_penalty=frequency_penalty,
    )


def keywords_of(
    counts: TermCounts,
    labels: np.ndarray,
    *,
    n_keywords: int,
    min_users: int,
    frequency_penalty: bool = True,
) -> dict[int, list[str]]:
    """`cluster_keywords` for texts already counted by `count_terms`. Without
    `frequency_penalty` the scores are plain c-TF-IDF, as BERTopic computes them (kept so
    `clio eval names` can compare today's keyword names with the distinctive ones)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != counts.n:
        raise ValueError(f"labels and counted texts differ in length: {len(labels)}, {counts.n}")
    k = int(labels.max()) + 1 if len(labels) else 0
    result: dict[int, list[str]] = {c: [] for c in range(k)}
    if k == 0 or counts.doc_terms is None:
        return result
    doc_terms, vocabulary, user_codes = counts.doc_terms, counts.vocabulary, counts.user_codes
    n = doc_terms.shape[0]

    # Class-based TF-IDF: one "document" per cluster, tf normalised per cluster,
    # idf = log(1 + average words per cluster / frequency of the term over all clusters).
    doc_to_cluster = sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
    cluster_terms = (doc_to_cluster @ doc_terms).tocsr()
    term_frequency = np.asarray(cluster_terms.sum(axis=0)).ravel()
    average_words = cluster_terms.sum(axis=1).mean()
    idf = np.log(1.0 + average_words / np.maximum(term_frequency, 1))
    scores = (normalize(cluster_terms, norm="l1", axis=1) @ sparse.diags(idf)).tocsr()
    if frequency_penalty:
        # share of the term's texts that are in the cluster: 1 for a word the cluster owns
        present = doc_terms.copy()
        present.data[:] = 1.0
        cluster_df = (doc_to_cluster @ present).tocsr()
        total_df = np.asarray(present.sum(axis=0)).ravel()
        share = cluster_df @ sparse.diags(1.0 / np.maximum(total_df, 1))
        scores = scores.multiply(share).tocsr()

    # Distinct users per (cluster, term): collapse documents to (cluster, user) pairs,
    # mark which terms each pair used at all, then count pairs per cluster.
    pair_keys = labels * (int(user_codes.max()) + 1) + user_codes
    pair_codes = np.unique(pair_keys, return_inverse=True)[1]
    n_pairs = int(pair_codes.max()) + 1
    doc_to_pair = sparse.csr_matrix((np.ones(n), (pair_codes, np.arange(n))), shape=(n_pairs, n))
    pair_used = (doc_to_pair @ doc_terms).tocsr()
    pair_used.data[:] = 1.0
    pair_cluster = np.zeros(n_pairs, dtype=np.int64)
    pair_cluster[pair_codes] = labels
    pair_to_cluster = sparse.csr_matrix(
        (np.ones(n_pairs), (pair_cluster, np.arange(n_pairs))), shape=(k, n_pairs)
    )
    # Support is counted per stem ("word" and "words" together), as the gate counts it.
    stem_codes = np.unique([stem(str(t)) for t in vocabulary], return_inverse=True)[1].ravel()
    term_to_stem = sparse.csr_matrix(
        (np.ones(len(vocabulary)), (np.arange(len(vocabulary)), stem_codes)),
        shape=(len(vocabulary), int(stem_codes.max()) + 1),
    )
    pair_stem_used = (pair_used @ term_to_stem).tocsr()
    pair_stem_used.data[:] = 1.0
    distinct_users = (pair_to_cluster @ pair_stem_used).tocsr()

    for cluster in range(k):
        row = scores.getrow(cluster)
        terms, values = row.indices, row.data
        user_counts = np.asarray(distinct_users[cluster, stem_codes[terms]].todense()).ravel()
        keep = (user_counts >= min_users) & (values > 0)
        terms, values = terms[keep], values[keep]
        # Highest score first; ties broken alphabetically so results are reproducible.
        order = sorted(range(len(terms)), key=lambda i: (-values[i], vocabulary[terms[i]]))
        seen: set[int] = set()
        chosen = []
        for i in order:  # one form per stem: the best-scoring
            if stem_codes[terms[i]] not in seen:
                seen.add(int(stem_codes[terms[i]]))
                chosen.append(str(vocabulary[terms[i]]))
        result[cluster] = chosen[:n_keywords]
    return result
