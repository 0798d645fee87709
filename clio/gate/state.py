"""What one run of the gate shares between its steps.

The gate's steps (numbers, the self-check) all read the same inputs and groups; passing
them one by one gave a step a dozen parameters that every caller had to spell in the
same order. `GateState` is built once the groups exist and handed to those steps whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clio.config import PrivacyConfig
from clio.gate.text import FacetTokens
from clio.gate.thresholds import Cell, Node
from clio.gate.values import FacetValues


@dataclass(frozen=True)
class GateState:
    """The gate's inputs, the groups built from them, and the suppression counts.

    The fields never change once set; the groups in them are marked suppressed in place
    as the steps go, and `suppressed` counts why."""

    user_of: Mapping[str, str]  # conversation id -> user pseudonym
    facet_values: FacetValues
    breakdown_facets: Sequence[str]
    config: PrivacyConfig
    nodes: Mapping[str, Node]  # every cluster, by id
    released: Sequence[Node]  # the clusters that passed rules 1 and 2, top-down
    cells: Mapping[tuple[str, str], Mapping[str, Cell]]  # of the released clusters
    tokens: FacetTokens  # words of each conversation's facet text, tokenised once
    suppressed: Counter[str]  # counts by reason
