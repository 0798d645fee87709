"""The run manifest's content: what a run did, in counts and settings only."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any

import clio
from clio.config import RunConfig
from clio.incremental import Mode
from clio.llm.client import Usage
from clio.pipeline.paths import RunPaths
from clio.pipeline.plan import InputPlan
from clio.records import QuarantineRecord

_VERSIONED = (
    "prefect",
    "duckdb",
    "presidio-analyzer",
    "sentence-transformers",
    "faiss-cpu",
    "llama_cpp_python",
    "torch",
)


@dataclass
class StageTimes:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def versions() -> dict[str, str]:
    out = {"clio": clio.__version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass
class RunFacts:
    """Everything the manifest reports of one run, gathered as the run goes."""

    run_id: str
    mode: Mode
    mode_requested: str
    mode_reason: str
    build_id: str
    started_at: datetime
    config_path: str | None
    config_hash: str
    plan: InputPlan
    n_conversations: int
    n_input_conversations: int
    n_already_processed: int
    n_scrubbed: int
    n_processed: int
    quarantine: list[QuarantineRecord]
    n_pii_spans: int
    facet_failures: dict[str, int]
    incremental: dict[str, Any] | None
    runner_kind: str
    partitions: dict[str, int]
    usage: dict[str, int]
    release: dict[str, Any]
    differential_privacy: dict[str, Any] | None
    stage_seconds: dict[str, float]


def build_manifest(
    facts: RunFacts, config: RunConfig, paths: RunPaths, finished_at: datetime
) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for q in facts.quarantine:
        reasons[q.reason] = reasons.get(q.reason, 0) + 1
    return {
        "run_id": facts.run_id,
        "mode": facts.mode,
        "mode_requested": facts.mode_requested,
        "mode_reason": facts.mode_reason,
        "build_id": facts.build_id,
        "started_at": facts.started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "config_path": facts.config_path,
        "config_hash": facts.config_hash,
        "config": config.model_dump(mode="json"),
        "versions": versions(),
        "inputs": facts.plan.sources,
        "counts": {
            "n_input": facts.plan.n_input,
            "n_conversations": facts.n_conversations,
            "n_input_conversations": facts.n_input_conversations,
            "n_already_processed": facts.n_already_processed,
            "n_scrubbed": facts.n_scrubbed,
            "n_processed": facts.n_processed,
            "n_quarantined": len(facts.quarantine),
            "quarantine_reasons": dict(sorted(reasons.items())),
            "n_truncated": facts.plan.n_truncated,
            "n_missing_user_id_treated_per_conversation": facts.plan.n_missing_user,
            "n_pii_spans_replaced": facts.n_pii_spans,
            "facet_failures": dict(sorted(facts.facet_failures.items())),
        },
        "incremental": facts.incremental,
        "runner": {
            "kind": facts.runner_kind,
            "partition_size": config.runner.partition_size,
            "partitions": facts.partitions,
        },
        "llm": {
            "backend": config.llm.backend,
            "model": config.llm.model,
            **facts.usage,
            "estimated_cost": round(Usage(**facts.usage).cost(config.llm), 6),
        },
        "release": {"path": str(paths.released), **facts.release},
        "privacy": {
            "min_users": config.privacy.min_users,
            "min_conversations": config.privacy.min_conversations,
            "differential_privacy": facts.differential_privacy,
        },
        "stage_seconds": facts.stage_seconds,
        "outputs": {
            "released_store": str(paths.released),
            "private_store": str(paths.private),
            "manifest": str(paths.manifest),
        },
    }
