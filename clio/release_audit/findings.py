"""What an attack recovers: a figure about a group smaller than the thresholds.

A finding names the attack, the runs and clusters it combined, the figure it
recovered and the size of the group that figure describes. It never holds text
from conversations: the released store has none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One sub-threshold group an attack recovered from the released store."""

    attack: str
    run_ids: tuple[str, ...]
    cluster_ids: tuple[str, ...]
    recovered: str  # what the figure is, in words
    figure: float
    group_size: int | None  # None: a suppressed group, below the thresholds, size not recovered

    @classmethod
    def difference(
        cls,
        attack: str,
        run_ids: tuple[str, ...],
        cluster_ids: tuple[str, ...],
        recovered: str,
        change: int,
    ) -> Finding:
        """A finding whose figure is a difference of counts: the group is its size."""
        return cls(attack, run_ids, cluster_ids, recovered, change, abs(change))

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["run_ids"], out["cluster_ids"] = list(self.run_ids), list(self.cluster_ids)
        return out


def below(change: float, threshold: int) -> bool:
    """Whether a difference describes a group of 1 to `threshold - 1` members (either sign)."""
    return 1 <= abs(change) <= threshold - 1
