"""The privacy gate: the single choke point between private clusters and the release.

`apply_gate` turns the private cluster trees (which hold conversation ids) into
aggregate rows that may leave the pipeline (`GateResult`), and `write_release`
accepts nothing else. The rules, in order:

1. Thresholds. Every cluster, at every level of every facet's tree, needs at
   least `min_users` DISTINCT user pseudonyms and `min_conversations`
   conversations, counted over its full membership (its own members plus all
   descendants', so suppressed children roll up into their parent). One heavy
   user can never make a cluster releasable. A cluster whose parent is
   suppressed is suppressed too, so every released cluster's parent is released.
2. The hidden part. Under every released parent, and under each facet's root
   (`share` reveals the facet's total), parent minus released children is
   derivable by subtraction. That hidden part must be empty or itself a
   releasable group: at least `min_users` distinct users and `min_conversations`
   conversations, and the users found in it but in no released child (what
   parent users minus children users reveals when the children share no user)
   must be none or at least `min_users`. Otherwise the smallest released child
   is suppressed too (complementary suppression), until the rule holds. A
   suppressed child's counts can therefore never be derived, and the implied
   "other / suppressed" total is always itself releasable.
3. Breakdown cells (cluster x facet value) pass the same thresholds, and the
   same hidden-part rule twice: within a cluster (cluster minus its released
   cells, which includes members without a value), and across levels (a
   parent's cell minus its released children's cells of that value). A value
   hidden in a cluster is hidden in all its descendants, so every difference an
   analyst can form is a union of hidden parts, each empty or releasable.
4. Text. Every released text (name, description, keyword, breakdown value) is
   checked: a word that only 1 to `min_users - 1` distinct users ever wrote
   fails ("rare word"), then `text_check` (the scrubber re-scan), then the LLM
   privacy `audit` (score below `audit_min_score`, or a failed call, fails). A
   keyword also needs `min_users` distinct users in its cluster who used it. A
   cluster whose name or description fails is renamed once by `regenerate` from
   its vetted keywords only, re-checked, and what still fails is withheld
   ("(withheld)" / ""). A failing breakdown value suppresses its cell.
5. Optional differential privacy (`config.dp_enabled`, see `clio.dp`): released
   numbers get OpenDP noise (then are clamped to the thresholds), and keywords
   need a noisy count above OpenDP's threshold. The budget is in `GateResult.dp`.

Differences between released numbers that involve no hidden part (for example
the number of users two released siblings share, |A| + |B| - |parent|) are not
suppressed: both groups are releasable; the DP option noises them.

The result carries counts by reason only, never names or ids of what was withheld.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from clio.config import PrivacyConfig
from clio.describe import NAME_INSTRUCTION, PARENT_INSTRUCTION, keyword_description
from clio.dp import (
    CONCERN_SHARE,
    COUNTS_SHARE,
    KEYWORDS_SHARE,
    DPConfig,
    DPReport,
    bounded_conversations,
    concern_sensitivity,
    count_sensitivity,
    noisy_counts,
    noisy_sums,
    rows_per_user,
    select_keys,
)
from clio.keywords import strip_placeholders
from clio.records import Cluster
from clio.released import ReleasedBreakdown, ReleasedCluster

log = logging.getLogger("clio.gate")

TextCheck = Callable[[str], bool]  # True when a text is safe to release
Audit = Callable[[Sequence[str]], Mapping[str, int | None]]  # text -> score 1-5, None = failed
# cluster id -> its vetted keywords, in; cluster id -> (name, description), out
Regenerate = Callable[[Mapping[str, Sequence[str]]], Mapping[str, tuple[str, str]]]

WITHHELD_NAME = "(withheld)"

# Suppression reasons (keys of `GateResult.suppressed`).
CLUSTER_BELOW_MIN_USERS = "cluster_below_min_users"
CLUSTER_BELOW_MIN_CONVERSATIONS = "cluster_below_min_conversations"
PARENT_SUPPRESSED = "parent_suppressed"
COMPLEMENTARY_SUPPRESSION = "complementary_suppression"
CELL_BELOW_THRESHOLD = "cell_below_threshold"
CELL_COMPLEMENTARY_SUPPRESSION = "cell_complementary_suppression"
CELL_HIDDEN_ABOVE = "cell_hidden_in_parent"
KEYWORD_BELOW_MIN_USERS = "keyword_below_min_users"
KEYWORD_NOT_SELECTED_DP = "keyword_not_selected_dp"
# Text failures: f"{kind}_withheld_{reason}" with kind in text, keyword, cell_value.
PII, RARE_WORD, AUDIT, AUDIT_ERROR = "pii", "rare_word", "audit", "audit_error"
TEXT_WITHHELD_PII = "text_withheld_pii"
KEYWORD_WITHHELD_PII = "keyword_withheld_pii"
CELL_VALUE_WITHHELD_PII = "cell_value_withheld_pii"

# Words as `clio.keywords` counts them: two or more letters, numbers dropped.
_WORD = re.compile(r"(?u)\b[^\W\d_]{2,}\b")
# Words of the naming prompts' own instructions and templates, and the verbs any summary
# of requests uses: they come from clio, not from a user, so they are never "rare".
_DESCRIBING_WORDS = frozenset(
    _WORD.findall(
        " ".join(
            [
                NAME_INSTRUCTION,
                PARENT_INSTRUCTION,
                keyword_description([]),
                keyword_description(["x"]),
                "users user ask asks asking asked help helps want wants wanting know learn "
                "request requests requesting question questions advice information tips",
            ]
        ).lower()
    )
)


@dataclass
class GateResult:
    clusters: list[ReleasedCluster]
    breakdowns: list[ReleasedBreakdown]
    suppressed: dict[str, int] = field(default_factory=dict)  # counts by reason, only > 0
    text_checks: dict[str, int] = field(default_factory=dict)  # what the text checks did
    dp: dict[str, Any] | None = None  # the DP budget and mechanisms, when DP is on


# -- groups of conversations ----------------------------------------------------


@dataclass
class _Node:
    cluster: Cluster
    conversations: set[str]  # full membership: own members and every descendant's
    users: set[str]
    children: list[str] = field(default_factory=list)
    suppressed: bool = False

    @property
    def size(self) -> tuple[int, int, str]:
        return (len(self.conversations), len(self.users), self.cluster.cluster_id)


@dataclass
class _Cell:
    cluster_id: str
    facet: str
    value: str
    conversations: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    suppressed: bool = False

    @property
    def size(self) -> tuple[int, int, str]:
        return (len(self.conversations), len(self.users), self.value)


def _meets(conversations: set[str], users: set[str], config: PrivacyConfig) -> bool:
    return len(users) >= config.min_users and len(conversations) >= config.min_conversations


def _hidden_part_ok(
    whole: set[str],
    whole_users: set[str],
    shown: Sequence[_Node] | Sequence[_Cell],
    user_of: Mapping[str, str],
    config: PrivacyConfig,
) -> bool:
    """Whether `whole` minus the `shown` groups is empty or a releasable group. With
    nothing shown there is no difference to take."""
    if not shown:
        return True
    covered: set[str] = set()
    covered_users: set[str] = set()
    for group in shown:
        covered |= group.conversations
        covered_users |= group.users
    hidden = whole - covered
    if not hidden:
        return True
    hidden_users = {user_of[c] for c in hidden}
    if not _meets(hidden, hidden_users, config):
        return False
    only_hidden = len(whole_users - covered_users)
    return only_hidden == 0 or only_hidden >= config.min_users


def _protect(
    whole: set[str],
    whole_users: set[str],
    items: Sequence[_Node] | Sequence[_Cell],
    user_of: Mapping[str, str],
    config: PrivacyConfig,
) -> list:
    """The released items to suppress, smallest first, so that the hidden part is safe."""
    shown = sorted((i for i in items if not i.suppressed), key=lambda i: i.size)
    picks = []
    while shown and not _hidden_part_ok(whole, whole_users, shown, user_of, config):
        picks.append(shown.pop(0))
    return picks


# -- the gate -------------------------------------------------------------------


def apply_gate(
    clusters: Sequence[Cluster],
    conversation_users: Mapping[str, str],
    facet_values: Mapping[str, Mapping[str, object]],
    config: PrivacyConfig,
    *,
    breakdown_facets: Sequence[str],
    concern_facet: str | None = "concerning",
    text_check: TextCheck | None = None,
    audit: Audit | None = None,
    regenerate: Regenerate | None = None,
    total_conversations: Mapping[str, int] | None = None,
    seed: int = 0,
) -> GateResult:
    """Decide what of `clusters` may be released, and compute the released rows.

    `conversation_users` maps conversation id -> user pseudonym (every member
    must have one); `facet_values` maps conversation id -> {facet -> value}; its
    texts are what keywords and rare words are counted in. `text_check` is the
    scrubber re-scan, `audit` the LLM privacy auditor (`clio.audit.audit_texts`),
    `regenerate` renames clusters from keywords (`clio.audit.KeywordRenamer`);
    any of them may be None (that check is skipped; `text_checks` records it).
    `total_conversations` gives, per clustered facet, the run's conversations
    with that facet (the denominator of `share`); when absent it is the number
    of conversations with a value for the facet, and never less than the
    facet's clustered conversations. `seed` picks which conversations of a
    heavy user count under differential privacy.
    """
    nodes = _build_nodes(clusters, conversation_users)
    suppressed: Counter[str] = Counter()

    for node in nodes.values():
        if len(node.users) < config.min_users:
            _suppress(node, CLUSTER_BELOW_MIN_USERS, suppressed)
        elif len(node.conversations) < config.min_conversations:
            _suppress(node, CLUSTER_BELOW_MIN_CONVERSATIONS, suppressed)
    # A child's membership is a subset of its parent's, so the children of a
    # suppressed cluster are below the thresholds already; `_check_invariants` asserts it.
    _protect_clusters(nodes, conversation_users, config, suppressed)
    released = [n for n in _top_down(nodes) if not n.suppressed]

    cells = _build_cells(released, breakdown_facets, facet_values, conversation_users)
    for cell in _all_cells(cells):
        if not _meets(cell.conversations, cell.users, config):
            cell.suppressed = True
            suppressed[CELL_BELOW_THRESHOLD] += 1

    words = _WordSupport(facet_values, conversation_users, config.min_users)
    vetter = _TextVetter(
        words, text_check, audit, config, audit_requested=config.audit_released_text
    )
    tokens = _FacetTokens(facet_values)
    keywords = {
        n.cluster.cluster_id: _supported_keywords(n, tokens, conversation_users, config, suppressed)
        for n in released
    }
    vetter.vet(
        [t for n in released for t in (n.cluster.name, n.cluster.description)]
        + [k for kws in keywords.values() for k in kws]
        + [c.value for c in _all_cells(cells) if not c.suppressed]
    )
    for cell in _all_cells(cells):
        if not cell.suppressed and not vetter.ok(cell.value):
            cell.suppressed = True
            suppressed[f"cell_value_withheld_{vetter.reason(cell.value)}"] += 1
    _protect_cells(nodes, released, cells, conversation_users, config, suppressed)

    for cid, words_of_cluster in keywords.items():
        kept = [k for k in words_of_cluster if vetter.ok(k)]
        for k in words_of_cluster:
            if not vetter.ok(k):
                suppressed[f"keyword_withheld_{vetter.reason(k)}"] += 1
        keywords[cid] = kept
    texts = _final_texts(released, keywords, vetter, regenerate, suppressed)

    totals = _facet_totals(nodes, facet_values, total_conversations)
    scores = {} if concern_facet is None else _scores(facet_values, concern_facet)
    dp_config = DPConfig.from_privacy(config, seed)
    numbers = _true_numbers(released, cells, scores, totals)
    dp_report = None
    if dp_config is not None:
        numbers, keywords, dp_report = _noisy_numbers(
            nodes, released, cells, keywords, scores, facet_values, tokens, conversation_users,
            breakdown_facets, dp_config, config, suppressed,
        )  # fmt: skip

    rows = [_cluster_row(n, texts, keywords, numbers) for n in released]
    rows.sort(key=lambda c: (c.facet, c.level, c.cluster_id))
    breakdowns = [
        ReleasedBreakdown(c.cluster_id, c.facet, c.value, *numbers.cells[id(c)])
        for c in _all_cells(cells)
        if not c.suppressed
    ]
    breakdowns.sort(key=lambda b: (b.cluster_id, b.facet, b.value))

    _check_invariants(nodes, cells, rows, breakdowns, conversation_users, config)
    result = GateResult(
        rows,
        breakdowns,
        {k: v for k, v in sorted(suppressed.items()) if v},
        dict(sorted(vetter.counts.items())),
        dp_report.as_manifest() if dp_report is not None else None,
    )
    log.info(
        f"gate: released {len(rows)} of {len(nodes)} clusters and {len(breakdowns)} breakdown "
        f"cells; suppressed {result.suppressed}; text checks {result.text_checks}"
    )
    return result


# -- the tree -----------------------------------------------------------------


def _build_nodes(
    clusters: Sequence[Cluster], conversation_users: Mapping[str, str]
) -> dict[str, _Node]:
    """Index the clusters by id, validate the tree, and roll memberships up to the parents."""
    by_id: dict[str, Cluster] = {}
    for cluster in clusters:
        if cluster.cluster_id in by_id:
            raise ValueError(
                f"cluster id {cluster.cluster_id!r} appears twice; cluster ids must be unique "
                "within a run (across facets), since breakdowns refer to clusters by id alone"
            )
        by_id[cluster.cluster_id] = cluster
    for cluster in clusters:
        if cluster.parent_id is None:
            continue
        parent = by_id.get(cluster.parent_id)
        if parent is None:
            raise ValueError(
                f"cluster {cluster.cluster_id!r} names parent {cluster.parent_id!r}, "
                "which is not among the clusters"
            )
        if parent.facet != cluster.facet:
            raise ValueError(
                f"cluster {cluster.cluster_id!r} (facet {cluster.facet!r}) has parent "
                f"{parent.cluster_id!r} in another facet ({parent.facet!r})"
            )
        if parent.level <= cluster.level:
            raise ValueError(
                f"cluster {cluster.cluster_id!r} (level {cluster.level}) has parent "
                f"{parent.cluster_id!r} at level {parent.level}; a parent must be higher"
            )

    members: dict[str, set[str]] = {cid: set(c.member_ids) for cid, c in by_id.items()}
    children: dict[str, list[str]] = defaultdict(list)
    # Lowest levels first, so a child's membership is complete before it rolls up.
    for cluster in sorted(clusters, key=lambda c: (c.level, c.facet, c.cluster_id)):
        if cluster.parent_id is not None:
            members[cluster.parent_id] |= members[cluster.cluster_id]
            children[cluster.parent_id].append(cluster.cluster_id)

    nodes: dict[str, _Node] = {}
    n_without_user = 0
    for cid, cluster in by_id.items():
        users = {conversation_users[m] for m in members[cid] if m in conversation_users}
        n_without_user += sum(1 for m in members[cid] if m not in conversation_users)
        nodes[cid] = _Node(cluster, members[cid], users, sorted(children[cid]))
    if n_without_user:
        raise ValueError(
            f"{n_without_user} cluster memberships refer to conversations without a user "
            "pseudonym in `conversation_users`; every member needs one to count distinct users"
        )
    return nodes


def _top_down(nodes: Mapping[str, _Node]) -> list[_Node]:
    return sorted(
        nodes.values(), key=lambda n: (n.cluster.facet, -n.cluster.level, n.cluster.cluster_id)
    )


def _suppress(node: _Node, reason: str, counts: Counter[str]) -> None:
    if not node.suppressed:
        node.suppressed = True
        counts[reason] += 1


def _suppress_descendants(node: _Node, nodes: Mapping[str, _Node], counts: Counter[str]) -> None:
    for child_id in node.children:
        child = nodes[child_id]
        _suppress(child, PARENT_SUPPRESSED, counts)
        _suppress_descendants(child, nodes, counts)


def _sibling_groups(nodes: Mapping[str, _Node]) -> list[tuple[_Node | None, list[_Node]]]:
    """(parent, children) for every parent, and (None, top level) for every facet's root,
    top-down."""
    roots: dict[str, list[_Node]] = defaultdict(list)
    for node in nodes.values():
        if node.cluster.parent_id is None:
            roots[node.cluster.facet].append(node)
    groups: list[tuple[_Node | None, list[_Node]]] = [
        (None, sorted(roots[facet], key=lambda n: n.cluster.cluster_id)) for facet in sorted(roots)
    ]
    for node in _top_down(nodes):
        if node.children:
            groups.append((node, [nodes[c] for c in node.children]))
    return groups


def _group_whole(parent: _Node | None, children: Sequence[_Node]) -> tuple[set[str], set[str]]:
    if parent is not None:
        return parent.conversations, parent.users
    whole: set[str] = set()
    users: set[str] = set()
    for child in children:
        whole |= child.conversations
        users |= child.users
    return whole, users


def _protect_clusters(
    nodes: Mapping[str, _Node],
    user_of: Mapping[str, str],
    config: PrivacyConfig,
    counts: Counter[str],
) -> None:
    # Top-down: a suppression only ever affects the groups below it, visited later.
    for parent, children in _sibling_groups(nodes):
        if parent is not None and parent.suppressed:
            continue
        whole, whole_users = _group_whole(parent, children)
        for pick in _protect(whole, whole_users, children, user_of, config):
            _suppress(pick, COMPLEMENTARY_SUPPRESSION, counts)
            _suppress_descendants(pick, nodes, counts)


# -- breakdown cells --------------------------------------------------------------


def _build_cells(
    released: Sequence[_Node],
    breakdown_facets: Sequence[str],
    facet_values: Mapping[str, Mapping[str, object]],
    user_of: Mapping[str, str],
) -> dict[tuple[str, str], dict[str, _Cell]]:
    """(cluster id, facet) -> value -> cell, for every released cluster."""
    cells: dict[tuple[str, str], dict[str, _Cell]] = {}
    for facet in breakdown_facets:
        labels = _labels(facet_values, facet)
        for node in released:
            cid = node.cluster.cluster_id
            by_value: dict[str, _Cell] = {}
            for member in node.conversations:
                for value in labels.get(member, ()):
                    cell = by_value.get(value) or by_value.setdefault(
                        value, _Cell(cid, facet, value)
                    )
                    cell.conversations.add(member)
                    cell.users.add(user_of[member])
            cells[(cid, facet)] = dict(sorted(by_value.items()))
    return cells


def _all_cells(cells: Mapping[tuple[str, str], Mapping[str, _Cell]]) -> list[_Cell]:
    return [cell for key in sorted(cells) for cell in cells[key].values()]


def _protect_cells(
    nodes: Mapping[str, _Node],
    released: Sequence[_Node],
    cells: Mapping[tuple[str, str], Mapping[str, _Cell]],
    user_of: Mapping[str, str],
    config: PrivacyConfig,
    counts: Counter[str],
) -> None:
    """Suppress cells until, for every released cluster and facet, the hidden part within
    the cluster and every parent cell's hidden part across levels is safe, and a value
    hidden in a cluster is hidden below it. Suppressing only, so this ends."""
    facets = sorted({facet for _, facet in cells})
    changed = True
    while changed:
        changed = False
        for facet in facets:
            for node in released:  # top-down
                cid = node.cluster.cluster_id
                own = cells[(cid, facet)]
                parent_id = node.cluster.parent_id
                if parent_id is not None:
                    above = cells[(parent_id, facet)]
                    for value, cell in own.items():
                        hidden_above = value not in above or above[value].suppressed
                        if not cell.suppressed and hidden_above:
                            cell.suppressed = True
                            counts[CELL_HIDDEN_ABOVE] += 1
                            changed = True
                for pick in _protect(
                    node.conversations, node.users, list(own.values()), user_of, config
                ):
                    pick.suppressed = True
                    counts[CELL_COMPLEMENTARY_SUPPRESSION] += 1
                    changed = True
                children = [nodes[c] for c in node.children if not nodes[c].suppressed]
                for value, cell in own.items():
                    if cell.suppressed:
                        continue
                    below = [
                        cells[(child.cluster.cluster_id, facet)].get(value) for child in children
                    ]
                    below_cells = [c for c in below if c is not None]
                    for pick in _protect(
                        cell.conversations, cell.users, below_cells, user_of, config
                    ):
                        pick.suppressed = True
                        counts[CELL_COMPLEMENTARY_SUPPRESSION] += 1
                        changed = True


# -- text ---------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return _WORD.findall(strip_placeholders(text).lower())


def _content_words(text: str) -> set[str]:
    return {w for w in _words(text) if w not in ENGLISH_STOP_WORDS and w not in _DESCRIBING_WORDS}


def _value_text(value: object) -> str:
    if isinstance(value, list | tuple):
        return "\n".join(str(item) for item in value if item is not None)
    return "" if value is None else str(value)


class _WordSupport:
    """Distinct users (counted up to `min_users`) who wrote each word in any facet text."""

    def __init__(
        self,
        facet_values: Mapping[str, Mapping[str, object]],
        user_of: Mapping[str, str],
        min_users: int,
    ):
        self._facet_values = facet_values
        self._user_of = user_of
        self._min_users = min_users
        self._support: dict[str, int] = {}
        self._tokens: list[tuple[str, frozenset[str]]] | None = None

    def prepare(self, texts: Iterable[str]) -> None:
        """Count the words of all `texts` in one pass over the facet texts."""
        self._count({w for text in texts for w in _content_words(text)})

    def rare_words(self, text: str) -> list[str]:
        words = _content_words(text)
        self._count(words)
        return sorted(w for w in words if 0 < self._support[w] < self._min_users)

    def _count(self, words: set[str]) -> None:
        missing = words - self._support.keys()
        if not missing:
            return
        if self._tokens is None:
            self._tokens = [
                (
                    self._user_of[conversation],
                    frozenset(_words(" ".join(_value_text(v) for v in values.values()))),
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


class _TextVetter:
    """Each distinct text checked once: rare words, then the scrubber, then the LLM audit
    (one batch). `verdicts[text]` is None when the text may be released, else the reason."""

    def __init__(
        self,
        words: _WordSupport,
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


class _FacetTokens:
    """The words of one conversation's value of one facet, tokenised once."""

    def __init__(self, facet_values: Mapping[str, Mapping[str, object]]):
        self._facet_values = facet_values
        self._cache: dict[tuple[str, str], tuple[str, ...]] = {}

    def __call__(self, conversation: str, facet: str) -> tuple[str, ...]:
        key = (conversation, facet)
        if key not in self._cache:
            value = self._facet_values.get(conversation, {}).get(facet)
            self._cache[key] = tuple(_words(_value_text(value)))
        return self._cache[key]


def _supported_keywords(
    node: _Node,
    tokens: _FacetTokens,
    user_of: Mapping[str, str],
    config: PrivacyConfig,
    counts: Counter[str],
) -> list[str]:
    """The cluster's keywords that at least `min_users` distinct members wrote."""
    candidates = [k for k in dict.fromkeys(k.strip() for k in node.cluster.keywords) if k]
    if not candidates:
        return []
    support = _keyword_users(candidates, node.conversations, node.cluster.facet, tokens, user_of)
    kept = []
    for keyword in candidates:
        if len(support[keyword]) >= config.min_users:
            kept.append(keyword)
        else:
            counts[KEYWORD_BELOW_MIN_USERS] += 1
    return kept


def _keyword_users(
    keywords: Sequence[str],
    conversations: Iterable[str],
    facet: str,
    tokens: _FacetTokens,
    user_of: Mapping[str, str],
) -> dict[str, set[str]]:
    """keyword -> distinct users whose `facet` text (among `conversations`) contains it."""
    phrases = {k: tuple(_words(k)) for k in keywords}
    users: dict[str, set[str]] = {k: set() for k in keywords}
    for conversation in conversations:
        words = tokens(conversation, facet)
        if not words:
            continue
        present = set(words)
        for keyword, phrase in phrases.items():
            if phrase and set(phrase) <= present and _contains(words, phrase):
                users[keyword].add(user_of[conversation])
    return users


def _contains(tokens: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i : i + n]) == tuple(phrase) for i in range(len(tokens) - n + 1))


def _final_texts(
    released: Sequence[_Node],
    keywords: Mapping[str, list[str]],
    vetter: _TextVetter,
    regenerate: Regenerate | None,
    counts: Counter[str],
) -> dict[str, tuple[str, str]]:
    """cluster id -> (name, description) to release: as named, or renamed once from the
    vetted keywords where either failed, or withheld."""
    failing = {
        n.cluster.cluster_id: n.cluster
        for n in released
        if not vetter.ok(n.cluster.name) or not vetter.ok(n.cluster.description)
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
            name = _replace(name, new_name, WITHHELD_NAME, vetter, counts)
            description = _replace(description, new_description, "", vetter, counts)
            complete = name != WITHHELD_NAME and (description or not cluster.description)
            vetter.counts["clusters_renamed" if complete else "clusters_text_withheld"] += 1
        texts[cluster.cluster_id] = (name, description)
    return texts


def _replace(
    text: str, renamed: str, withheld: str, vetter: _TextVetter, counts: Counter[str]
) -> str:
    """`text` if it passed, else its renamed version if that passed, else `withheld`."""
    if vetter.ok(text):
        return text
    renamed = "" if renamed == withheld else renamed
    if renamed and vetter.ok(renamed):
        return renamed
    counts[f"text_withheld_{vetter.reason(renamed) if renamed else vetter.reason(text)}"] += 1
    return withheld


# -- numbers ------------------------------------------------------------------------


@dataclass
class _Numbers:
    clusters: dict[
        str, tuple[int, int, float, float | None]
    ]  # users, conversations, share, concern
    cells: dict[int, tuple[int, int]]  # id(cell) -> users, conversations


def _true_numbers(
    released: Sequence[_Node],
    cells: Mapping[tuple[str, str], Mapping[str, _Cell]],
    scores: Mapping[str, float],
    totals: Mapping[str, int],
) -> _Numbers:
    clusters = {}
    for node in released:
        member_scores = [scores[m] for m in node.conversations if m in scores]
        concern = sum(member_scores) / len(member_scores) if member_scores else None
        total = totals[node.cluster.facet]
        n = len(node.conversations)
        clusters[node.cluster.cluster_id] = (
            len(node.users),
            n,
            n / total if total else 0.0,
            concern,
        )
    cell_numbers = {
        id(c): (len(c.users), len(c.conversations)) for c in _all_cells(cells) if not c.suppressed
    }
    return _Numbers(clusters, cell_numbers)


def _noisy_numbers(
    nodes: Mapping[str, _Node],
    released: Sequence[_Node],
    cells: Mapping[tuple[str, str], Mapping[str, _Cell]],
    keywords: Mapping[str, list[str]],
    scores: Mapping[str, float],
    facet_values: Mapping[str, Mapping[str, object]],
    tokens: _FacetTokens,
    user_of: Mapping[str, str],
    breakdown_facets: Sequence[str],
    dp: DPConfig,
    config: PrivacyConfig,
    counts: Counter[str],
) -> tuple[_Numbers, dict[str, list[str]], DPReport]:
    """Released numbers and keywords under differential privacy (see `clio.dp`)."""
    report = DPReport(dp)
    kept = bounded_conversations(user_of, dp.max_conversations_per_user, dp.seed)
    bound = dp.max_values_per_conversation
    # Each bounded conversation counts in at most `bound` clusters per (facet, level).
    in_clusters: dict[tuple[str, int, str], list[str]] = defaultdict(list)
    for node in sorted(nodes.values(), key=lambda n: n.cluster.cluster_id):
        for member in node.conversations & kept:
            in_clusters[(node.cluster.facet, node.cluster.level, member)].append(
                node.cluster.cluster_id
            )
    members: dict[str, set[str]] = defaultdict(set)
    for (_, _, member), cluster_ids in in_clusters.items():
        for cid in cluster_ids[:bound]:
            members[cid].add(member)
    n_levels = len({(n.cluster.facet, n.cluster.level) for n in nodes.values()})
    facets = sorted({n.cluster.facet for n in nodes.values()})

    def users(conversations: Iterable[str]) -> int:
        return len({user_of[c] for c in conversations})

    open_cells = [c for c in _all_cells(cells) if not c.suppressed]
    labels = {facet: _labels(facet_values, facet) for facet in breakdown_facets}
    exact: dict[tuple[str, ...], int] = {}
    for node in released:
        cid = node.cluster.cluster_id
        exact[("cluster", cid, "users")] = users(members[cid])
        exact[("cluster", cid, "conversations")] = len(members[cid])
    for cell in open_cells:
        inside = {
            m
            for m in members[cell.cluster_id]
            if cell.value in labels[cell.facet].get(m, [])[:bound]
        }
        exact[("cell", cell.cluster_id, cell.facet, cell.value, "users")] = users(inside)
        exact[("cell", cell.cluster_id, cell.facet, cell.value, "conversations")] = len(inside)
    for facet in facets:
        tops = [
            n for n in nodes.values() if n.cluster.facet == facet and n.cluster.parent_id is None
        ]
        exact[("total", facet)] = len(set().union(*(members[n.cluster.cluster_id] for n in tops)))
    sensitivity = count_sensitivity(dp, n_levels, len(breakdown_facets), len(facets))
    noisy, spent = noisy_counts(exact, sensitivity, dp.epsilon * COUNTS_SHARE)
    report.spent.append(spent)

    low, high = dp.concern_range
    sums: dict[tuple[str, ...], float] = {}
    for node in released:
        cid = node.cluster.cluster_id
        clamped = [min(high, max(low, scores[m])) for m in members[cid] if m in scores]
        sums[("concern", cid, "sum")] = sum(clamped)
        sums[("concern", cid, "count")] = float(len(clamped))
    noisy_concern: dict[tuple[str, ...], float] = {}
    if scores:
        noisy_concern, spent = noisy_sums(
            sums, concern_sensitivity(dp, n_levels), dp.epsilon * CONCERN_SHARE
        )
        report.spent.append(spent)

    # Post-processing (free under DP): clamp to the thresholds and to consistent values.
    clusters = {}
    for node in released:
        cid = node.cluster.cluster_id
        n_users = max(noisy[("cluster", cid, "users")], config.min_users)
        n_conversations = max(
            noisy[("cluster", cid, "conversations")], n_users, config.min_conversations
        )
        total = max(noisy[("total", node.cluster.facet)], n_conversations)
        concern = None
        if noisy_concern and noisy_concern[("concern", cid, "count")] >= 1:
            mean = noisy_concern[("concern", cid, "sum")] / noisy_concern[("concern", cid, "count")]
            concern = min(high, max(low, mean))
        clusters[cid] = (n_users, n_conversations, n_conversations / total, concern)
    cell_numbers = {}
    for cell in open_cells:
        key = ("cell", cell.cluster_id, cell.facet, cell.value)
        n_users = max(noisy[(*key, "users")], config.min_users)
        n_conversations = max(noisy[(*key, "conversations")], n_users, config.min_conversations)
        cell_numbers[id(cell)] = (n_users, n_conversations)

    candidates: dict[str, int] = {}
    for node in released:
        cid = node.cluster.cluster_id
        support = _keyword_users(keywords[cid], members[cid], node.cluster.facet, tokens, user_of)
        for keyword in keywords[cid]:
            candidates[f"{cid}\x1f{keyword}"] = len(support[keyword])
    selected_keywords: dict[str, list[str]] = {cid: [] for cid in keywords}
    if candidates:
        most = max(len(k) for k in keywords.values())
        selected, spent = select_keys(
            candidates, rows_per_user(dp, n_levels) * most, dp.epsilon * KEYWORDS_SHARE, dp.delta
        )
        report.spent.append(spent)
        for cid, words_of_cluster in keywords.items():
            for keyword in words_of_cluster:
                if f"{cid}\x1f{keyword}" in selected:
                    selected_keywords[cid].append(keyword)
                else:
                    counts[KEYWORD_NOT_SELECTED_DP] += 1
    return _Numbers(clusters, cell_numbers), selected_keywords, report


def _facet_totals(
    nodes: Mapping[str, _Node],
    facet_values: Mapping[str, Mapping[str, object]],
    given: Mapping[str, int] | None,
) -> dict[str, int]:
    clustered: dict[str, set[str]] = defaultdict(set)
    for node in nodes.values():
        if node.cluster.parent_id is None:
            clustered[node.cluster.facet] |= node.conversations
    totals: dict[str, int] = {}
    for facet, members in clustered.items():
        if given is not None and facet in given:
            total = given[facet]
            if total < len(members):
                raise ValueError(
                    f"total_conversations[{facet!r}] = {total} is less than the "
                    f"{len(members)} conversations in the facet's clusters"
                )
        else:
            with_value = sum(1 for values in facet_values.values() if _present(values.get(facet)))
            total = max(with_value, len(members))
        totals[facet] = total
    return totals


def _cluster_row(
    node: _Node,
    texts: Mapping[str, tuple[str, str]],
    keywords: Mapping[str, list[str]],
    numbers: _Numbers,
) -> ReleasedCluster:
    cluster = node.cluster
    name, description = texts[cluster.cluster_id]
    n_users, n_conversations, share, concern_mean = numbers.clusters[cluster.cluster_id]
    return ReleasedCluster(
        facet=cluster.facet,
        level=cluster.level,
        cluster_id=cluster.cluster_id,
        parent_id=cluster.parent_id,
        name=name,
        description=description,
        keywords=list(keywords[cluster.cluster_id]),
        n_users=n_users,
        n_conversations=n_conversations,
        share=share,
        concern_mean=concern_mean,
        x=cluster.x,
        y=cluster.y,
    )


# -- self-check ---------------------------------------------------------------------


def _check_invariants(
    nodes: Mapping[str, _Node],
    cells: Mapping[tuple[str, str], Mapping[str, _Cell]],
    clusters: Sequence[ReleasedCluster],
    breakdowns: Sequence[ReleasedBreakdown],
    user_of: Mapping[str, str],
    config: PrivacyConfig,
) -> None:
    """Re-check the release rules on the true groups; a failure is a bug in this module."""
    released_ids = {c.cluster_id for c in clusters}
    for c in clusters:
        node = nodes[c.cluster_id]
        if node.suppressed or not _meets(node.conversations, node.users, config):
            raise AssertionError(f"gate would release cluster {c.cluster_id!r} below thresholds")
        if c.n_users < config.min_users or c.n_conversations < config.min_conversations:
            raise AssertionError(f"gate would release numbers of {c.cluster_id!r} below thresholds")
        if c.parent_id is not None and c.parent_id not in released_ids:
            raise AssertionError(
                f"gate would release cluster {c.cluster_id!r} without its parent {c.parent_id!r}"
            )
    for b in breakdowns:
        if b.cluster_id not in released_ids:
            raise AssertionError(f"gate would release cells of unreleased {b.cluster_id!r}")
        cell = cells[(b.cluster_id, b.facet)][b.value]
        if not _meets(cell.conversations, cell.users, config) or (
            b.n_users < config.min_users or b.n_conversations < config.min_conversations
        ):
            raise AssertionError(f"gate would release a cell of {b.cluster_id!r} below thresholds")
    for parent, children in _sibling_groups(nodes):
        if parent is not None and parent.suppressed:
            continue
        whole, whole_users = _group_whole(parent, children)
        shown = [c for c in children if not c.suppressed]
        if not _hidden_part_ok(whole, whole_users, shown, user_of, config):
            name = "a facet root" if parent is None else repr(parent.cluster.cluster_id)
            raise AssertionError(f"gate would reveal a suppressed part under {name}")
    for (cid, _facet), by_value in cells.items():
        node = nodes[cid]
        shown = [c for c in by_value.values() if not c.suppressed]
        if not _hidden_part_ok(node.conversations, node.users, shown, user_of, config):
            raise AssertionError(f"gate would reveal suppressed cells of {cid!r}")
        for value, cell in by_value.items():
            if cell.suppressed:
                continue
            parent_id = node.cluster.parent_id
            if parent_id is not None:
                above = cells[(parent_id, _facet)].get(value)
                if above is None or above.suppressed:
                    raise AssertionError(f"gate would release a cell of {cid!r} hidden above")
            below = [
                cells[(child, _facet)][value]
                for child in node.children
                if (child, _facet) in cells and value in cells[(child, _facet)]
                and not cells[(child, _facet)][value].suppressed
            ]  # fmt: skip
            if not _hidden_part_ok(cell.conversations, cell.users, below, user_of, config):
                raise AssertionError(f"gate would reveal suppressed cells below {cid!r}")


# -- values -------------------------------------------------------------------


def _scores(facet_values: Mapping[str, Mapping[str, object]], facet: str) -> dict[str, float]:
    """Conversation id -> valid numeric value of `facet` (conversations without one left out)."""
    scores = {}
    for conversation, values in facet_values.items():
        score = _number(values.get(facet))
        if score is not None:
            scores[conversation] = score
    return scores


def _labels(facet_values: Mapping[str, Mapping[str, object]], facet: str) -> dict[str, list[str]]:
    """Conversation id -> breakdown labels of its value of `facet`."""
    labels = {}
    for conversation, values in facet_values.items():
        found = _value_labels(values.get(facet))
        if found:
            labels[conversation] = found
    return labels


def _present(value: object) -> bool:
    return value is not None and value != "" and value != []


def _number(value: object) -> float | None:
    """A valid numeric facet value (numbers, or numeric strings), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _value_labels(value: object) -> list[str]:
    """The breakdown labels of one facet value: a list gives one label per distinct item."""
    items = value if isinstance(value, list | tuple) else [value]
    labels = []
    for item in items:
        label = _label(item)
        if label and label not in labels:
            labels.append(label)
    return labels


def _label(item: object) -> str | None:
    """A value as released text: 2.0 -> "2", 2.5 -> "2.5", True -> "true"; None when missing."""
    if item is None:
        return None
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, float):
        if not math.isfinite(item):
            return None
        return str(int(item)) if item.is_integer() else repr(item)
    return str(item).strip() or None
