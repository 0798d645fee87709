"""Rule 4 of the gate: every released text is vetted, and keywords need support.

Words are counted with `clio.keywords.words`, the tokenizer the keywords themselves
were chosen with, so "a keyword is used by `min_users` distinct users" means the same
thing in both places. The fixed list of function and generic words
(`clio.naming.GENERIC_WORDS`: English stop words and the words clio itself writes)
never counts as rare.

Support is counted per word stem (`clio.keywords.stem`): "words" is supported by users
who wrote "word" or "words". Stems differ from words only in inflection and derivation
suffixes, which carry nothing about a person. Stemming can join unrelated words that
share a prefix (Porter's "university" and "universe"); those are common words, and what
is counted is still `min_users` distinct people writing the released stem.

Word support is counted twice. Over the whole facet (`WordSupport`): a word that only 1
to `min_users - 1` users wrote anywhere fails every text. And per cluster
(`ClusterSupport`, the k-support invariant): a content word of a cluster's name or
description that some of its members wrote needs `min_users` of them; otherwise a few
members' word would describe the whole cluster, even if other clusters' users made it
common over the facet. A word no member wrote came from the namer (or a contrast text
of another cluster) and tells nothing about the members; the facet-wide rule and the
audit vet it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from clio.config import PrivacyConfig
from clio.gate.reasons import (
    AUDIT,
    AUDIT_ERROR,
    KEYWORD_BELOW_MIN_USERS,
    PII,
    RARE_IN_CLUSTER,
    RARE_WORD,
    WITHHELD_NAME,
)
from clio.gate.thresholds import Cells, Node, all_cells
from clio.gate.values import FacetValues, value_text
from clio.keywords import stems
from clio.naming import content_stems

log = logging.getLogger("clio.gate")

TextCheck = Callable[[str], bool]  # True when a text is safe to release
Audit = Callable[[Sequence[str]], Mapping[str, int | None]]  # text -> score 1-5, None = failed
# cluster id -> its vetted keywords, in; cluster id -> (name, description), out
Regenerate = Callable[[Mapping[str, Sequence[str]]], Mapping[str, tuple[str, str]]]


class WordSupport:
    """Distinct users (counted up to `min_users`) who wrote each word in any facet text."""

    def __init__(self, facet_values: FacetValues, user_of: Mapping[str, str], min_users: int):
        self._facet_values = facet_values
        self._user_of = user_of
        self._min_users = min_users
        self._support: dict[str, int] = {}
        self._tokens: list[tuple[str, frozenset[str]]] | None = None

    def prepare(self, texts: Iterable[str]) -> None:
        """Count the words of all `texts` in one pass over the facet texts."""
        self._count({w for text in texts for w in content_stems(text)})

    def rare_words(self, text: str) -> list[str]:
        """The content stems of `text` that 1 to `min_users - 1` distinct users wrote. A
        word no user wrote is not rare: it came from the namer, not from a person."""
        found = content_stems(text)
        self._count(found)
        return sorted(w for w in found if 0 < self._support[w] < self._min_users)

    def _count(self, wanted: set[str]) -> None:
        missing = wanted - self._support.keys()
        if not missing:
            return
        if self._tokens is None:
            self._tokens = [
                (
                    self._user_of[conversation],
                    frozenset(stems(" ".join(value_text(v) for v in values.values()))),
                )  # fmt: skip
                for conversation, values in self._facet_values.items()
                if conversation in self._user_of
            ]
        users: dict[str, set[str]] = {w: set() for w in missing}
        for user, tokens in self._tokens:
            for word in tokens & missing:
                if len(users[word]) < self._min_users:
                    users[word].add(user)
        self._support.update({w: len(u) for w, u in users.items()})


def cluster_rare_words(
    text: str, node: Node, tokens: FacetTokens, user_of: Mapping[str, str], min_users: int
) -> list[str]:
    """The content stems of `text` that 1 to `min_users - 1` distinct users of `node`'s
    cluster (its full membership) wrote in the cluster's facet."""
    found = content_stems(text)
    if not found:
        return []
    users: dict[str, set[str]] = {w: set() for w in found}
    for conversation in node.conversations:
        for word in found.intersection(tokens(conversation, node.cluster.facet)):
            users[word].add(user_of[conversation])
    return sorted(w for w in found if 0 < len(users[w]) < min_users)


class ClusterSupport:
    """Whether a text is k-supported in its cluster (`cluster_rare_words` finds nothing),
    each (cluster, text) checked once; failures are counted in `counts`."""

    def __init__(
        self,
        tokens: FacetTokens,
        user_of: Mapping[str, str],
        min_users: int,
        counts: Counter[str],
    ):
        self._tokens, self._user_of, self._min_users = tokens, user_of, min_users
        self._counts = counts
        self._verdicts: dict[tuple[str, str], bool] = {}

    def ok(self, node: Node, text: str) -> bool:
        key = (node.cluster.cluster_id, text)
        if key not in self._verdicts:
            rare = bool(text) and bool(
                cluster_rare_words(text, node, self._tokens, self._user_of, self._min_users)
            )
            self._verdicts[key] = not rare
            if rare:
                self._counts[f"failed_{RARE_IN_CLUSTER}"] += 1
        return self._verdicts[key]


class TextVetter:
    """Each distinct text checked once: rare words, then the scrubber, then the LLM audit
    (one batch). `verdicts[text]` is None when the text may be released, else the reason."""

    def __init__(
        self,
        words: WordSupport,
        text_check: TextCheck | None,
        audit: Audit | None,
        config: PrivacyConfig,
        *,
        audit_requested: bool,
    ):
        self.words = words
        self.text_check = text_check
        self.audit = audit
        self.min_score = config.audit_min_score
        self.verdicts: dict[str, str | None] = {}
        self.counts: Counter[str] = Counter(
            {"scrubber_rescan": int(text_check is not None), "llm_audit": int(audit is not None)}
        )
        if audit is None and audit_requested:
            log.warning("gate: the config asks for an LLM privacy audit but none was given")

    def vet(self, texts: Iterable[str]) -> None:
        new = [t for t in dict.fromkeys(texts) if t and t not in self.verdicts]
        self.words.prepare(new)
        pending = []
        for text in new:
            if self.words.rare_words(text):
                self.verdicts[text] = RARE_WORD
            elif self.text_check is not None and not self.text_check(text):
                self.verdicts[text] = PII
            else:
                pending.append(text)
        scores: Mapping[str, int | None] = {}
        if self.audit is not None and pending:
            scores = self.audit(pending)
        for text in pending:
            if self.audit is None:
                self.verdicts[text] = None
                continue
            score = scores.get(text)
            if score is None:
                self.verdicts[text] = AUDIT_ERROR
            else:
                self.verdicts[text] = AUDIT if score < self.min_score else None
        self.counts["texts_checked"] += len(new)
        self.counts["texts_audited"] += len(pending) if self.audit is not None else 0
        for text in new:
            if self.verdicts[text] is not None:
                self.counts[f"failed_{self.verdicts[text]}"] += 1

    def ok(self, text: str) -> bool:
        return not text or self.verdicts[text] is None

    def reason(self, text: str) -> str:
        return self.verdicts[text] or ""


class FacetTokens:
    """The word stems of one conversation's value of one facet, tokenised once."""

    def __init__(self, facet_values: FacetValues):
        self._facet_values = facet_values
        self._cache: dict[tuple[str, str], tuple[str, ...]] = {}

    def __call__(self, conversation: str, facet: str) -> tuple[str, ...]:
        key = (conversation, facet)
        if key not in self._cache:
            value = self._facet_values.get(conversation, {}).get(facet)
            self._cache[key] = tuple(stems(value_text(value)))
        return self._cache[key]


def supported_keywords(
    node: Node,
    tokens: FacetTokens,
    user_of: Mapping[str, str],
    config: PrivacyConfig,
    counts: Counter[str],
) -> list[str]:
    """The cluster's keywords that at least `min_users` distinct members wrote."""
    candidates = [k for k in dict.fromkeys(k.strip() for k in node.cluster.keywords) if k]
    if not candidates:
        return []
    support = keyword_users(candidates, node.conversations, node.cluster.facet, tokens, user_of)
    kept = []
    for keyword in candidates:
        if len(support[keyword]) >= config.min_users:
            kept.append(keyword)
        else:
            counts[KEYWORD_BELOW_MIN_USERS] += 1
    return kept


def keyword_users(
    keywords: Sequence[str],
    conversations: Iterable[str],
    facet: str,
    tokens: FacetTokens,
    user_of: Mapping[str, str],
) -> dict[str, set[str]]:
    """keyword -> distinct users whose `facet` text (among `conversations`) contains it,
    stem for stem."""
    phrases = {k: tuple(stems(k)) for k in keywords}
    users: dict[str, set[str]] = {k: set() for k in keywords}
    for conversation in conversations:
        found = tokens(conversation, facet)
        if not found:
            continue
        present = set(found)
        for keyword, phrase in phrases.items():
            if phrase and set(phrase) <= present and _contains(found, phrase):
                users[keyword].add(user_of[conversation])
    return users


def _contains(tokens: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i : i + n]) == tuple(phrase) for i in range(len(tokens) - n + 1))


def suppress_failing_cells(cells: Cells, vetter: TextVetter, counts: Counter[str]) -> None:
    """A breakdown value that fails its check suppresses its cell."""
    for cell in all_cells(cells):
        if not cell.suppressed and not vetter.ok(cell.value):
            cell.suppressed = True
            counts[f"cell_value_withheld_{vetter.reason(cell.value)}"] += 1


def vetted_keywords(
    keywords: Mapping[str, list[str]], vetter: TextVetter, counts: Counter[str]
) -> dict[str, list[str]]:
    """cluster id -> its keywords that passed their check, in order."""
    kept_of: dict[str, list[str]] = {}
    for cid, words_of_cluster in keywords.items():
        kept = [k for k in words_of_cluster if vetter.ok(k)]
        for k in words_of_cluster:
            if not vetter.ok(k):
                counts[f"keyword_withheld_{vetter.reason(k)}"] += 1
        kept_of[cid] = kept
    return kept_of


def final_texts(
    released: Sequence[Node],
    keywords: Mapping[str, list[str]],
    vetter: TextVetter,
    support: ClusterSupport,
    regenerate: Regenerate | None,
    counts: Counter[str],
) -> dict[str, tuple[str, str]]:
    """cluster id -> (name, description) to release: as named, or renamed once from the
    vetted keywords where either failed (its vetting or its support in the cluster), or
    withheld."""

    def check(node: Node) -> _Check:
        return _Check(node, vetter, support)

    failing = {
        n.cluster.cluster_id: n.cluster
        for n in released
        if not check(n).ok(n.cluster.name) or not check(n).ok(n.cluster.description)
    }
    renamed: Mapping[str, tuple[str, str]] = {}
    if failing and regenerate is not None:
        renamed = regenerate({cid: list(keywords[cid]) for cid in sorted(failing)})
        vetter.vet(
            [t for cid in sorted(renamed) if cid in failing for t in renamed[cid]
             if t != WITHHELD_NAME]
        )  # fmt: skip
        vetter.counts["clusters_regenerated"] += len(failing)
    texts: dict[str, tuple[str, str]] = {}
    for node in released:
        cluster = node.cluster
        name, description = cluster.name, cluster.description
        if cluster.cluster_id in failing:
            new_name, new_description = renamed.get(cluster.cluster_id, ("", ""))
            name = _replace(name, new_name, WITHHELD_NAME, check(node), counts)
            description = _replace(description, new_description, "", check(node), counts)
            complete = name != WITHHELD_NAME and (description or not cluster.description)
            vetter.counts["clusters_renamed" if complete else "clusters_text_withheld"] += 1
        texts[cluster.cluster_id] = (name, description)
    return texts


class _Check:
    """One cluster's texts judged by the vetter and by their support in that cluster."""

    def __init__(self, node: Node, vetter: TextVetter, support: ClusterSupport):
        self.node, self.vetter, self.support = node, vetter, support

    def ok(self, text: str) -> bool:
        return self.vetter.ok(text) and self.support.ok(self.node, text)

    def reason(self, text: str) -> str:
        return self.vetter.reason(text) or RARE_IN_CLUSTER


def _replace(text: str, renamed: str, withheld: str, check: _Check, counts: Counter[str]) -> str:
    """`text` if it passed, else its renamed version if that passed, else `withheld`."""
    if check.ok(text):
        return text
    renamed = "" if renamed == withheld else renamed
    if renamed and check.ok(renamed):
        return renamed
    counts[f"text_withheld_{check.reason(renamed) if renamed else check.reason(text)}"] += 1
    return withheld
