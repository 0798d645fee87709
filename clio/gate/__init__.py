"""The privacy gate: the single choke point between private clusters and the release.

`apply_gate` turns the private cluster trees (which hold conversation ids) into
aggregate rows that may leave the pipeline (`GateResult`), and `write_release`
accepts nothing else: `apply_gate` seals its result (`result`: an HMAC, under a random
key of this process that never leaves `clio.gate`, over a canonical serialisation of
every row and report), and `write_release` refuses a result without that seal or whose
rows changed since (`check_seal`, `UnsealedGateResult`). The seal guards against code
that bypasses the gate by mistake (rows built by hand, or edited after the gate); it is
no defence against an attacker who can run code in the process, who can read the key
or call the private `result._seal` as `apply_gate` does. The rules, in order:

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

6. Across runs (`crossrun`). The released store keeps every run and an incremental run
   re-releases a build's ids with grown counts, so each change (users, conversations,
   every breakdown cell, the facet's total behind `share`) is a cell too: against the
   latest earlier release of each id (`clio.released.previous_release`), a figure changes
   only by 0 or at least `min_users` users and `min_conversations` conversations, and
   (whole minus shown parts) likewise; otherwise the previous figure is carried
   (`change_below_threshold_carried`), a carried cluster with its subtree and cells as
   then. Lineage keeps ids across rebuilds, so the rule holds there too; a kept cluster
   whose previous figures no longer fit the new tree is withheld
   (`change_not_carryable_withheld`). The run row's totals follow the same rule
   (`clio.pipeline.publish`). `cluster_lineage` links a split or merge only where the two
   clusters share at least the thresholds.
7. Derived numbers, ids and the map (`numbers`, `public`). `concern_mean` is the mean of
   the released `concerning` cells (DP off), `share`'s denominator the distinct
   conversations of the facet's top clusters, positions are centred on, and parents
   placed among, released clusters only, and released ids are a keyed hash of the
   cluster's lineage root (the build and node it descends from, `clio.lineage`), so none
   of them reveals a suppressed group or where one was.

The hidden-part rule (2 and 3) also checks what the released figures alone give: the
whole's count minus the sum of the released parts' counts, users and conversations. Users
in two released siblings make it differ from the hidden part (two siblings sharing 2
users: |A| + |B| - |parent| = 2), so it too must be 0 or at least the threshold, else the
smallest part is suppressed.

The result carries counts by reason only, never names or ids of what was withheld.

The package, one module a job: `thresholds` (rules 1 to 3), `text` (rule 4), `numbers`
(the released numbers, and rule 5), `crossrun` (rule 6), `public` (ids and positions,
rule 7), `invariants` (the rules re-checked on what is about to be released), `values`
(how facet values are read), `reasons` (the suppression reasons), `state` (what the
steps share), `apply` (`apply_gate`, the steps in order), `result` (`GateResult` and its
seal).
"""

from clio.gate.apply import apply_gate
from clio.gate.reasons import (
    AUDIT,
    AUDIT_ERROR,
    CELL_BELOW_THRESHOLD,
    CELL_COMPLEMENTARY_SUPPRESSION,
    CELL_HIDDEN_ABOVE,
    CELL_VALUE_WITHHELD_PII,
    CHANGE_BELOW_THRESHOLD_CARRIED,
    CLUSTER_BELOW_MIN_CONVERSATIONS,
    CLUSTER_BELOW_MIN_USERS,
    COMPLEMENTARY_SUPPRESSION,
    KEYWORD_BELOW_MIN_USERS,
    KEYWORD_NOT_SELECTED_DP,
    KEYWORD_WITHHELD_PII,
    NEW_UNDER_CARRIED_WITHHELD,
    PARENT_SUPPRESSED,
    PII,
    RARE_WORD,
    TEXT_WITHHELD_PII,
    WITHHELD_NAME,
)
from clio.gate.result import GateResult, UnsealedGateResult, check_seal
from clio.gate.text import Audit, Regenerate, TextCheck

__all__ = [
    "AUDIT",
    "AUDIT_ERROR",
    "CELL_BELOW_THRESHOLD",
    "CHANGE_BELOW_THRESHOLD_CARRIED",
    "CELL_COMPLEMENTARY_SUPPRESSION",
    "CELL_HIDDEN_ABOVE",
    "CELL_VALUE_WITHHELD_PII",
    "CLUSTER_BELOW_MIN_CONVERSATIONS",
    "CLUSTER_BELOW_MIN_USERS",
    "COMPLEMENTARY_SUPPRESSION",
    "KEYWORD_BELOW_MIN_USERS",
    "KEYWORD_NOT_SELECTED_DP",
    "KEYWORD_WITHHELD_PII",
    "NEW_UNDER_CARRIED_WITHHELD",
    "PARENT_SUPPRESSED",
    "PII",
    "RARE_WORD",
    "TEXT_WITHHELD_PII",
    "WITHHELD_NAME",
    "Audit",
    "GateResult",
    "Regenerate",
    "TextCheck",
    "UnsealedGateResult",
    "apply_gate",
    "check_seal",
]
