"""Extractive names: a short phrase taken from a cluster's own member texts.

The packaged 270M model cannot name clusters, and keyword lists ("card, new, arrive")
read badly. So on the embedded path a cluster is named by a phrase of 1 to
`MAX_PHRASE_WORDS` words cut from its members' texts, whose every content word (a word
not in `clio.naming.GENERIC_WORDS`) was written by at least `min_users` distinct users
of that cluster: the gate's word-support rule (`clio.gate.text`) holds by construction.

A phrase is scored by coverage times distinctiveness: the share of the cluster's texts
that contain all its content words (to the power `COVERAGE_EXPONENT`), times the sum over
those words of how much more often the cluster uses the word than the whole facet does
(log lift, never below 0), each weighted by the share of the cluster's texts using it (to
the power `WORD_SHARE_EXPONENT`: c-TF-IDF's term frequency times inverse frequency, so a
rare word with a high lift, "fred" in "change your name to fred", adds little). A
word frequent everywhere ("good", "make") adds nothing, a second distinctive word adds
as long as most members still use both, and a phrase that several users wrote verbatim
gets a small bonus (it reads as people write it). Parents are named the same way from
their children's phrases and the sub-phrases of those, scored over the parent's members.
Words are those of `clio.keywords.words` (two or more letters, no digits, placeholders
dropped), and support, coverage and lift are counted on their stems
(`clio.keywords.stem`): the same units the gate counts, so a number or an id never
reaches a name and "insult" and "insults" count as one word.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from clio.keywords import stem, words
from clio.naming import GENERIC_WORDS, MAX_NAME_CHARS, extractive_description

MAX_PHRASE_WORDS = 6  # longest phrase, function words included
MINED_TEXTS = 200  # phrases are mined from at most this many texts of a cluster (central first)
VERBATIM_BONUS = 0.25  # score bonus for a phrase written verbatim by at least two users
COVERAGE_EXPONENT = 0.25  # below 1, a longer phrase fewer texts contain can win (tuned on dev)
WORD_SHARE_EXPONENT = 0.25  # weight of a word's share of the group's texts (tuned on dev)

Phrase = tuple[str, ...]


@dataclass(frozen=True)
class FacetWords:
    """The facet's texts tokenised once, with who wrote each, the content stems of each,
    and how many texts of the whole facet use each content stem (the baseline a cluster's
    words are compared with)."""

    tokens: list[Phrase]
    content: list[frozenset[str]]  # per text, the stems of its content words
    users: np.ndarray  # one small integer per distinct user, per text
    document_frequency: Counter[str]

    @classmethod
    def of(cls, texts: Sequence[str], users: Sequence[str]) -> FacetWords:
        tokens = [tuple(words(t)) for t in texts]
        content = [frozenset(stem(w) for w in t if w not in GENERIC_WORDS) for t in tokens]
        codes = np.unique(np.asarray(users, dtype=object), return_inverse=True)[1].ravel()
        frequency: Counter[str] = Counter()
        for c in content:
            frequency.update(c)
        return cls(tokens, content, codes, frequency)

    @property
    def n(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Scored:
    phrase: Phrase
    content: frozenset[str]  # stems
    score: float

    @property
    def text(self) -> str:
        return " ".join(self.phrase)


def trimmed(phrase: Phrase) -> Phrase:
    """`phrase` without the function words at either end ("to book a flight" -> "book
    flight"); empty if it has no content word."""
    content = [i for i, w in enumerate(phrase) if w not in GENERIC_WORDS]
    return phrase[content[0] : content[-1] + 1] if content else ()


def sub_phrases(tokens: Phrase, supported: set[str]) -> set[Phrase]:
    """Every trimmed run of at most `MAX_PHRASE_WORDS` words of `tokens` whose content
    words' stems are all in `supported`."""
    found: set[Phrase] = set()
    for start in range(len(tokens)):
        if tokens[start] in GENERIC_WORDS:
            continue
        for end in range(start + 1, min(len(tokens), start + MAX_PHRASE_WORDS) + 1):
            word = tokens[end - 1]
            if word not in GENERIC_WORDS and stem(word) not in supported:
                break
            phrase = trimmed(tokens[start:end])
            if phrase and len(" ".join(phrase)) <= MAX_NAME_CHARS:
                found.add(phrase)
    return found


class GroupWords:
    """One cluster's (or parent's) member texts, counted for scoring phrases."""

    def __init__(self, facet: FacetWords, members: Sequence[int], min_users: int):
        self.facet = facet
        self.members = list(members)
        self.min_users = min_users
        self.items_with: dict[str, set[int]] = {}
        users_with: dict[str, set[int]] = {}
        for i in self.members:
            for w in facet.content[i]:
                self.items_with.setdefault(w, set()).add(i)
                users_with.setdefault(w, set()).add(int(facet.users[i]))
        self.supported = {w for w, u in users_with.items() if len(u) >= min_users}

    def lift(self, word: str) -> float:
        """log(how much more often the group's texts use `word` than the facet's), >= 0."""
        inside = len(self.items_with.get(word, ())) / max(len(self.members), 1)
        overall = self.facet.document_frequency.get(word, 0) / max(self.facet.n, 1)
        return max(0.0, math.log(inside / overall)) if inside > 0 and overall > 0 else 0.0

    def share(self, word: str) -> float:
        """Share of the group's texts that use `word`."""
        return len(self.items_with.get(word, ())) / max(len(self.members), 1)

    def coverage(self, content: Iterable[str]) -> float:
        """Share of the group's texts that contain every word of `content`."""
        sets = [self.items_with.get(w, set()) for w in content]
        if not sets or not self.members:
            return 0.0
        return len(set.intersection(*sets)) / len(self.members)

    def verbatim_users(self, phrase: Phrase) -> int:
        """Distinct users of the group who wrote `phrase` word for word."""
        n = len(phrase)
        users = set()
        candidates = set.intersection(
            *(self.items_with.get(w, set()) for w in phrase_content(phrase))
        )
        for i in candidates:
            t = self.facet.tokens[i]
            if any(t[j : j + n] == phrase for j in range(len(t) - n + 1)):
                users.add(int(self.facet.users[i]))
        return len(users)

    def score(self, phrase: Phrase) -> Scored | None:
        """The phrase scored for this group, or None if a content word lacks support."""
        content = phrase_content(phrase)
        if not content or not content <= self.supported:
            return None
        value = self.coverage(content) ** COVERAGE_EXPONENT * sum(
            self.share(w) ** WORD_SHARE_EXPONENT * self.lift(w) for w in content
        )
        if self.verbatim_users(phrase) >= 2:
            value *= 1.0 + VERBATIM_BONUS
        return Scored(phrase, content, value)

    def ranked(self, candidates: Iterable[Phrase]) -> list[Scored]:
        """`candidates` that pass the support rule, best first (ties: shorter, then
        alphabetical, so names are reproducible)."""
        scored = [s for s in (self.score(p) for p in set(candidates)) if s is not None]
        return sorted(scored, key=lambda s: (-s.score, len(s.phrase), s.phrase))


def phrase_content(phrase: Phrase) -> frozenset[str]:
    """The stems of the phrase's content words."""
    return frozenset(stem(w) for w in phrase if w not in GENERIC_WORDS)


def mined_candidates(group: GroupWords, order: Sequence[int]) -> set[Phrase]:
    """Sub-phrases of the group's texts (the first `MINED_TEXTS` of `order`, which lists
    its members most central first) whose content words all have support."""
    found: set[Phrase] = set()
    for i in order[:MINED_TEXTS]:
        found |= sub_phrases(group.facet.tokens[i], group.supported)
    return found


def best_two(ranked: Sequence[Scored]) -> list[Scored]:
    """The best phrase and the best one that adds a content word it lacks."""
    if not ranked:
        return []
    first = ranked[0]
    second = next((s for s in ranked[1:] if not s.content <= first.content), None)
    return [first] if second is None else [first, second]


def summary(picked: Sequence[Scored], keywords: Sequence[str]) -> tuple[str, str] | None:
    """(name, description) from the chosen phrases, or None when there is none."""
    if not picked:
        return None
    name = picked[0].text
    return name[:1].upper() + name[1:], extractive_description([s.text for s in picked], keywords)


def name_clusters(
    facet: FacetWords,
    labels: np.ndarray,
    vectors: np.ndarray,
    centroids: np.ndarray,
    keywords: dict[int, list[str]],
    min_users: int,
) -> list[tuple[list[Scored], tuple[str, str] | None]]:
    """Per base cluster 0..k-1: its ranked phrases (best first) and (name, description)."""
    out = []
    for c in range(len(centroids)):
        members = np.flatnonzero(labels == c)
        order = members[np.argsort(-(vectors[members] @ centroids[c]), kind="stable")]
        group = GroupWords(facet, members.tolist(), min_users)
        ranked = group.ranked(mined_candidates(group, order.tolist()))
        out.append((ranked, summary(best_two(ranked), keywords.get(c, []))))
    return out


def distinct_names(
    named: Sequence[tuple[list[Scored], tuple[str, str] | None]],
    keywords: dict[int, list[str]],
) -> list[tuple[list[Scored], tuple[str, str] | None]]:
    """`name_clusters`' result with no two clusters under one name: taken in the order of
    their best phrase's score, a cluster whose best phrase an earlier one already holds is
    named by its best phrase no other cluster holds (still supported in its own members).
    Two sibling clusters called "People" tell a reader nothing about either; a cluster
    with no phrase left keeps the shared name."""
    order = sorted(
        (c for c, (ranked, found) in enumerate(named) if found is not None and ranked),
        key=lambda c: (-named[c][0][0].score, c),
    )
    taken = {named[c][0][0].text.lower() for c in order}
    held: set[str] = set()
    out = list(named)
    for c in order:
        ranked = named[c][0]
        if ranked[0].text.lower() not in held:
            held.add(ranked[0].text.lower())
            continue
        free = [s for s in ranked if s.text.lower() not in held | taken]
        if not free:
            continue
        rest = [free[0], *(s for s in ranked if s is not free[0])]
        out[c] = (rest, summary(best_two(rest), keywords.get(c, [])))
        held.add(free[0].text.lower())
    return out


def name_parent(
    facet: FacetWords,
    members: Sequence[int],
    child_phrases: Sequence[Sequence[Scored]],
    keywords: Sequence[str],
    min_users: int,
) -> tuple[list[Scored], tuple[str, str] | None]:
    """A parent's ranked phrases and (name, description), chosen among its children's
    phrases and their sub-phrases, scored and supported over the parent's members."""
    group = GroupWords(facet, members, min_users)
    candidates: set[Phrase] = set()
    for phrases in child_phrases:
        for s in phrases[:5]:
            candidates |= sub_phrases(s.phrase, group.supported)
    ranked = group.ranked(candidates)
    return ranked, summary(best_two(ranked), keywords)


def joined_names(names: Sequence[str]) -> str:
    """The `names` distinct regardless of case (the first of each kept), in order, joined
    as "A, b and c" while the whole fits in `MAX_NAME_CHARS` (the first always)."""
    distinct: list[str] = []
    for name in names:
        if name and name.lower() not in {d.lower() for d in distinct}:
            distinct.append(name)
    picked = distinct[:1]
    for name in distinct[1:]:
        if len(_joined([*picked, name])) > MAX_NAME_CHARS:
            break
        picked.append(name)
    return _joined(picked)


def _joined(names: Sequence[str]) -> str:
    parts = [names[0], *(n[:1].lower() + n[1:] for n in names[1:])]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
