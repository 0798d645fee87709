"""Optional differential privacy for the released numbers, with OpenDP.

The privacy unit is one user (pseudonym). Each user's contribution is bounded first:
at most `max_conversations_per_user` of their conversations count (a seeded choice), and
a conversation counts in at most `max_values_per_conversation` clusters per level and
breakdown values per facet. With those bounds the L1 sensitivity of every released
number is known from the shape of the release alone (`count_sensitivity`), and OpenDP's
mechanisms add the noise and report the privacy loss they spend:

- counts (clusters' and cells' distinct users and conversations, each facet's total):
  one vector through the discrete Laplace mechanism (pure epsilon);
- concern means: sums and counts of clamped scores through the Laplace mechanism;
- keywords: the Laplace threshold mechanism over (cluster, keyword) -> distinct users,
  which keeps a keyword only when its noisy count clears a threshold set by delta.

Scope, stated plainly: which clusters exist and what they are called comes from the
clustering, the thresholds on true counts and the text checks, not from a DP mechanism;
epsilon bounds what the released *numbers* and the *keyword selection* reveal about
any one user, given the released rows.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata
from typing import Any, TypeVar

from clio.config import PrivacyConfig

# How one run's epsilon is split between the released quantities; delta goes to keywords.
COUNTS_SHARE = 0.5
CONCERN_SHARE = 0.2
KEYWORDS_SHARE = 0.3


@dataclass(frozen=True)
class DPConfig:
    epsilon: float
    delta: float
    max_conversations_per_user: int = 4
    max_values_per_conversation: int = 1
    seed: int = 0
    concern_range: tuple[float, float] = (1.0, 5.0)  # scores are clamped to this range

    def __post_init__(self) -> None:
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be positive, not {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), not {self.delta}")
        if self.max_conversations_per_user < 1 or self.max_values_per_conversation < 1:
            raise ValueError("contribution bounds must be at least 1")
        low, high = self.concern_range
        if not 0 <= low < high:
            raise ValueError(f"concern_range must be 0 <= low < high, not {self.concern_range}")

    @classmethod
    def from_privacy(cls, config: PrivacyConfig, seed: int = 0) -> DPConfig | None:
        """The DP settings of `config`, or None when differential privacy is off."""
        if not config.dp_enabled:
            return None
        return cls(
            epsilon=config.dp_epsilon,
            delta=config.dp_delta,
            max_conversations_per_user=config.dp_max_conversations_per_user,
            max_values_per_conversation=config.dp_max_values_per_conversation,
            seed=seed,
        )


@dataclass(frozen=True)
class Spent:
    """One mechanism's use of the budget, as OpenDP's privacy map reports it."""

    name: str
    mechanism: str
    epsilon: float
    delta: float
    sensitivity: int | float  # L1 (for the threshold mechanism: most keys one user touches)
    scale: float
    n_values: int
    threshold: int | None = None
    n_released: int | None = None


@dataclass
class DPReport:
    """What the manifest records under `privacy.differential_privacy`."""

    config: DPConfig
    spent: list[Spent] = field(default_factory=list)

    def as_manifest(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "library": f"opendp {metadata.version('opendp')}",
            "privacy_unit": "one user (pseudonym)",
            "epsilon": self.config.epsilon,
            "delta": self.config.delta,
            "epsilon_spent": sum(s.epsilon for s in self.spent),
            "delta_spent": sum(s.delta for s in self.spent),
            "max_conversations_per_user": self.config.max_conversations_per_user,
            "max_values_per_conversation": self.config.max_values_per_conversation,
            "concern_range": list(self.config.concern_range),
            "budget_shares": {
                "counts": COUNTS_SHARE,
                "concern": CONCERN_SHARE,
                "keywords": KEYWORDS_SHARE,
            },
            "mechanisms": [asdict(s) for s in self.spent],
        }


@cache
def _opendp() -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


# -- contribution bounds ------------------------------------------------------------------


def bounded_conversations(
    conversation_users: Mapping[str, str], max_per_user: int, seed: int
) -> set[str]:
    """At most `max_per_user` conversations of each user: those first in a seeded hash order
    (reproducible, and independent of the other users' data)."""
    by_user: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for conversation, user in conversation_users.items():
        digest = hashlib.sha256(f"{seed}\x1f{conversation}".encode()).hexdigest()
        by_user[user].append((digest, conversation))
    kept: set[str] = set()
    for entries in by_user.values():
        entries.sort()
        kept.update(conversation for _, conversation in entries[:max_per_user])
    return kept


def rows_per_user(config: DPConfig, n_levels: int) -> int:
    """Most cluster rows one user's bounded conversations can be in; `n_levels` counts the
    (facet, level) pairs of the release."""
    return config.max_conversations_per_user * config.max_values_per_conversation * n_levels


def count_sensitivity(
    config: DPConfig, n_levels: int, n_breakdown_facets: int, n_facets: int
) -> int:
    """L1 sensitivity of the count vector: per cluster row a user touches, its user and
    conversation counts and those of its breakdown cells; plus each facet's total."""
    rows = rows_per_user(config, n_levels)
    cells = rows * config.max_values_per_conversation * n_breakdown_facets
    return 2 * (rows + cells) + config.max_conversations_per_user * n_facets


def concern_sensitivity(config: DPConfig, n_levels: int) -> float:
    """L1 sensitivity of the (sum, count) pairs of clamped concern scores."""
    return rows_per_user(config, n_levels) * (config.concern_range[1] + 1.0)


# -- mechanisms -----------------------------------------------------------------------------


K = TypeVar("K", bound=Hashable)


def noisy_counts(
    values: Mapping[K, int], sensitivity: int, epsilon: float, name: str = "counts"
) -> tuple[dict[K, int], Spent]:
    """`values` plus discrete Laplace noise calibrated by OpenDP to (sensitivity, epsilon).
    Nothing to release (a run whose facets were all withheld) spends nothing."""
    if not values:
        return {}, Spent(name, "discrete laplace", 0.0, 0.0, sensitivity, 0.0, 0)
    dp = _opendp()

    def make(scale: float) -> Any:
        return dp.m.make_laplace(
            dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale
        )

    scale = dp.binary_search_param(make, d_in=int(sensitivity), d_out=float(epsilon))
    measurement = make(scale)
    spent = float(measurement.map(int(sensitivity)))
    keys = list(values)
    noisy = measurement([int(values[k]) for k in keys])
    spent_record = Spent(name, "discrete laplace", spent, 0.0, sensitivity, scale, len(keys))
    return dict(zip(keys, noisy, strict=True)), spent_record


def noisy_sums(
    values: Mapping[K, float], sensitivity: float, epsilon: float, name: str = "concern"
) -> tuple[dict[K, float], Spent]:
    """`values` plus Laplace noise calibrated by OpenDP to (sensitivity, epsilon); nothing
    to release spends nothing."""
    if not values:
        return {}, Spent(name, "laplace", 0.0, 0.0, sensitivity, 0.0, 0)
    dp = _opendp()
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)

    def make(scale: float) -> Any:
        return dp.m.make_laplace(*space, scale)

    scale = dp.binary_search_param(make, d_in=float(sensitivity), d_out=float(epsilon))
    measurement = make(scale)
    spent = float(measurement.map(float(sensitivity)))
    keys = list(values)
    noisy = measurement([float(values[k]) for k in keys])
    spent_record = Spent(name, "laplace", spent, 0.0, sensitivity, scale, len(keys))
    return dict(zip(keys, noisy, strict=True)), spent_record


def select_keys(
    counts: Mapping[str, int],
    max_keys_per_user: int,
    epsilon: float,
    delta: float,
    name: str = "keywords",
) -> tuple[dict[str, int], Spent]:
    """The keys whose count plus Laplace noise clears OpenDP's threshold for (epsilon,
    delta), with their noisy counts. Each user adds at most 1 to at most
    `max_keys_per_user` keys."""
    dp = _opendp()
    domain = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int))
    metric = dp.l01inf_distance(dp.absolute_distance(T=int))
    d_in = (int(max_keys_per_user), int(max_keys_per_user), 1)

    def make(scale: float, threshold: int) -> Any:
        return dp.m.make_laplace_threshold(domain, metric, scale=scale, threshold=threshold)

    # The scale sets epsilon; the threshold then sets delta (a higher threshold, less delta).
    ceiling = 2**30
    scale = dp.binary_search(lambda s: make(s, ceiling).map(d_in)[0] <= epsilon, T=float)
    threshold = dp.binary_search(lambda t: make(scale, t).map(d_in)[1] <= delta, T=int)
    measurement = make(scale, threshold)
    spent_epsilon, spent_delta = measurement.map(d_in)
    released = dict(measurement(dict(counts))) if counts else {}
    spent = Spent(
        name,
        "laplace threshold",
        float(spent_epsilon),
        float(spent_delta),
        max_keys_per_user,
        scale,
        len(counts),
        threshold=int(threshold),
        n_released=len(released),
    )
    return released, spent
