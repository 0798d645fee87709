"""The differential-privacy budget across runs.

Each run's DP release is an OpenDP mechanism over the same users as every earlier one, so
the losses add up: sequential composition, the sum of the runs' epsilons and deltas, is
the privacy loss of the whole released history (a bound; carried figures spend nothing
new, but are counted). The private store keeps one ledger row per run (`dp_ledger`); a
re-run of the same run replaces its row. A run that would take the sum over the
configured lifetime budget is refused before it processes anything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clio.config import PrivacyConfig
from clio.store import PrivateStore


class DPBudgetSpent(RuntimeError):
    """This run's epsilon or delta would take the lifetime total over its budget."""


@dataclass(frozen=True)
class Cumulative:
    epsilon: float
    delta: float
    runs: int

    def as_manifest(self, privacy: PrivacyConfig) -> dict[str, Any]:
        return {
            "cumulative_epsilon": self.epsilon,
            "cumulative_delta": self.delta,
            "runs_in_ledger": self.runs,
            "composition": "sequential (sum over the output directory's DP releases)",
            "budget_epsilon": privacy.dp_budget_epsilon,
            "budget_delta": privacy.dp_budget_delta,
        }


def check_budget(store: PrivateStore, run_id: str, privacy: PrivacyConfig) -> None:
    """Refuse the run when its planned `dp_epsilon` / `dp_delta` would exceed a budget."""
    if not privacy.dp_enabled:
        return
    epsilon, delta, runs = store.dp_spent(excluding_run=run_id)
    over = []
    budget_epsilon, budget_delta = privacy.dp_budget_epsilon, privacy.dp_budget_delta
    if budget_epsilon is not None and epsilon + privacy.dp_epsilon > budget_epsilon:
        over.append(
            f"epsilon {epsilon:g} spent by {runs} earlier run(s) + {privacy.dp_epsilon:g} "
            f"> privacy.dp_budget_epsilon {budget_epsilon:g}"
        )
    if budget_delta is not None and delta + privacy.dp_delta > budget_delta:
        over.append(
            f"delta {delta:g} spent by {runs} earlier run(s) + {privacy.dp_delta:g} "
            f"> privacy.dp_budget_delta {budget_delta:g}"
        )
    if over:
        raise DPBudgetSpent(
            "the differential-privacy budget of this output directory is spent: "
            + "; ".join(over)
            + ". Nothing was processed or released; raise the budget deliberately or "
            "release into a new output directory with new users."
        )


def record_spend(store: PrivateStore, run_id: str, dp: dict[str, Any]) -> Cumulative:
    """Record this run's spend (`dp` as `DPReport.as_manifest` gives it) and return the
    lifetime totals including it. Called before the release is written: a run killed in
    between has its budget counted, never the other way round."""
    store.record_dp_spend(run_id, dp["epsilon_spent"], dp["delta_spent"])
    epsilon, delta, runs = store.dp_spent()
    return Cumulative(epsilon, delta, runs)
