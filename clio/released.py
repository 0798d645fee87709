"""The released store's contract: the rows that may leave the pipeline.

Everything written to `insights.duckdb` is one of these rows; the gate makes
cluster and breakdown rows, the flow makes the run row, `clio.release` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RunRow:
    run_id: str
    started_at: datetime
    finished_at: datetime
    config_hash: str
    min_users: int
    min_conversations: int
    n_input: int
    n_quarantined: int
    n_conversations: int
    llm_calls: int
    llm_cached_calls: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ReleasedCluster:
    facet: str
    level: int
    cluster_id: str
    parent_id: str | None
    name: str
    description: str
    keywords: list[str]
    n_users: int
    n_conversations: int
    share: float
    concern_mean: float | None
    x: float | None
    y: float | None


@dataclass(frozen=True)
class ReleasedBreakdown:
    cluster_id: str
    facet: str
    value: str
    n_users: int
    n_conversations: int
