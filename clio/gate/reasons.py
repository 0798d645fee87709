"""What the gate reports: the keys of `GateResult.suppressed`, and the withheld name.

The result carries counts by reason only, never names or ids of what was withheld.
"""

from __future__ import annotations

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
# Rule 6 (across runs): a figure kept from the previous release, a new item under one.
CHANGE_BELOW_THRESHOLD_CARRIED = "change_below_threshold_carried"
NEW_UNDER_CARRIED_WITHHELD = "new_under_carried_withheld"
# Rule 6 across builds: a kept cluster whose previous figures no longer fit the new tree.
CHANGE_NOT_CARRIED_WITHHELD = "change_not_carryable_withheld"
# Text failures: f"{kind}_withheld_{reason}" with kind in text, keyword, cell_value.
PII, RARE_WORD, AUDIT, AUDIT_ERROR = "pii", "rare_word", "audit", "audit_error"
# A name or description with a word that 1 to min_users - 1 users of its cluster wrote.
RARE_IN_CLUSTER = "rare_in_cluster"
TEXT_WITHHELD_PII = "text_withheld_pii"
KEYWORD_WITHHELD_PII = "keyword_withheld_pii"
CELL_VALUE_WITHHELD_PII = "cell_value_withheld_pii"
