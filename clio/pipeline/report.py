"""The run manifests' content: what a run did, in counts and settings only.

A run writes two manifests. The operator manifest (`build_manifest`, under `private/`,
mode 0600) holds everything: inputs, paths, the whole config, every count, LLM usage and
timings; `run_pipeline` returns it and `clio report` reads it. The public manifest
(`public_manifest`, `<output>/manifest.json` and `runs/<run_id>.json`) holds what anyone
may read: see `public_manifest` for what it keeps and why the rest stays private.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any

import clio
from clio.config import RunConfig
from clio.facet_quality import THRESHOLDS, FacetQuality
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
    facet_quality: dict[str, FacetQuality] = field(default_factory=dict)
    withheld_facets: dict[str, list[str]] = field(default_factory=dict)  # facet -> uses


def build_manifest(
    facts: RunFacts, config: RunConfig, paths: RunPaths, finished_at: datetime
) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for q in facts.quarantine:
        reasons[q.reason] = reasons.get(q.reason, 0) + 1
    return {
        "audience": "operator",
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
        "facet_quality": {
            "thresholds": asdict(THRESHOLDS),
            "facets": {
                name: {**q.as_dict(), "withheld_from": facts.withheld_facets.get(name, [])}
                for name, q in facts.facet_quality.items()
            },
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
            "operator_manifest": str(paths.operator_manifest),
        },
    }


# Where the public manifest sends a reader for what it leaves out (relative to the output).
OPERATOR_MANIFEST_NOTE = (
    "input and record counts, LLM usage, timings, inputs, paths and the config are in the "
    "operator manifest (private/manifest.json), which is not shared"
)


def public_manifest(operator: dict[str, Any]) -> dict[str, Any]:
    """The part of the operator manifest anyone may read, picked key by key.

    An allow-list, so a key added to the operator manifest stays private until someone
    decides otherwise. Kept: run and build ids, mode and why, start and finish times,
    the config hash, package versions, the LLM backend and model name (what wrote the
    released texts), the thresholds and the DP budget spent, and the release summary:
    clusters built and released (by level), breakdown cells released, what the gate
    suppressed by reason and the text checks. Those are counts of clusters, cells and
    texts, never of people, so they describe no person.

    Left out, and why:
    - every input-side count (records read, conversations, already processed, scrubbed,
      quarantined and by reason, truncated, without a user id, PII spans replaced,
      facet failures, the facets' degeneracy figures and verdicts, the incremental run's
      new and unassigned conversations): for a small run, or as the difference between
      two runs, these describe one person (one new conversation's PII spans, its
      quarantine reason, its answer tipping a facet's verdict). Rounding does not help: a
      rounded count still moves when one record crosses a boundary. The released
      `runs` table carries the run totals the release stands behind;
    - LLM calls, tokens and cost, partitions and stage seconds: they grow with the
      input, so they measure a one-conversation increment's length;
    - input file names, the store paths and the whole config (`llm.base_url`,
      `runner.address`, `scrub.allow_list`, facet questions): they name internal hosts,
      files and strings an operator chose to keep as they are.
    """
    llm = operator["llm"]
    release = {k: v for k, v in operator["release"].items() if k != "path"}
    privacy = operator["privacy"]
    return {
        "audience": "public",
        "run_id": operator["run_id"],
        "mode": operator["mode"],
        "mode_requested": operator["mode_requested"],
        "mode_reason": operator["mode_reason"],
        "build_id": operator["build_id"],
        "started_at": operator["started_at"],
        "finished_at": operator["finished_at"],
        "config_hash": operator["config_hash"],
        "versions": operator["versions"],
        "llm": {"backend": llm["backend"], "model": llm["model"]},
        "release": release,
        "privacy": {
            "min_users": privacy["min_users"],
            "min_conversations": privacy["min_conversations"],
            "differential_privacy": privacy["differential_privacy"],
        },
        "withheld": OPERATOR_MANIFEST_NOTE,
    }
