"""The main Prefect flow: clio's stages wrapped as tasks.

The stages themselves are plain functions in `clio/`; this module only wires
them, times them and records the run. Privacy rules for the wiring:
- raw text never crosses a task boundary: ingest and scrub run in one task;
- no task result is persisted (`persist_result=False`), and flow parameters
  are paths and numbers only, so Prefect's result storage and database never
  hold conversation text;
- log lines carry counts only.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

import clio
from clio.config import RunConfig, config_hash, load_config
from clio.llm.client import Usage
from clio.records import Cluster
from clio.store import PrivateStore

log = logging.getLogger("clio.flow")

PRIVATE_STORE = "private.duckdb"
RELEASED_STORE = "insights.duckdb"
MANIFEST = "manifest.json"


@dataclass
class RunPaths:
    output_dir: Path

    @property
    def private(self) -> Path:
        return self.output_dir / "private" / PRIVATE_STORE

    @property
    def released(self) -> Path:
        return self.output_dir / RELEASED_STORE

    @property
    def manifest(self) -> Path:
        return self.output_dir / MANIFEST

    @property
    def run_manifests(self) -> Path:
        return self.output_dir / "runs"


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


@dataclass
class IngestSummary:
    run_id: str
    conversation_ids: list[str]
    n_input: int
    n_quarantined: int
    quarantine_reasons: dict[str, int]
    n_truncated: int
    n_missing_user: int
    n_pii_spans: int
    sources: list[str]


def _run_id(config_digest: str, content_hashes: Sequence[str], quarantine: Sequence[str]) -> str:
    """Same input and config give the same run id, so a re-run replaces its own rows."""
    digest = hashlib.sha256(config_digest.encode())
    for value in sorted(content_hashes):
        digest.update(value.encode())
    digest.update(b"|")
    for value in sorted(quarantine):
        digest.update(value.encode())
    return "run-" + digest.hexdigest()[:12]


# -- components built once per process ---------------------------------------


def _hmac_key(config: RunConfig, store: PrivateStore) -> str:
    import os

    from_env = os.environ.get(config.scrub.hmac_key_env)
    return from_env if from_env else store.get_or_create_secret("user_pseudonym_hmac_key")


_SCRUBBERS: dict[str, Any] = {}


def _scrubber(config: RunConfig) -> Any:
    from clio.scrub import build_scrubber

    key = config.scrub.model_dump_json()
    if key not in _SCRUBBERS:
        _SCRUBBERS[key] = build_scrubber(config.scrub)
    return _SCRUBBERS[key]


def _llm(config: RunConfig, store: PrivateStore) -> Any:
    from clio.llm.client import StructuredLLM
    from clio.llm.factory import build_backend

    return StructuredLLM(build_backend(config.llm), config.llm, cache=store)


# -- tasks --------------------------------------------------------------------


@task(name="ingest-and-scrub", persist_result=False, cache_policy=NO_CACHE)
def ingest_and_scrub(
    config: RunConfig, input_paths: list[str], limit: int | None, private_path: str, digest: str
) -> IngestSummary:
    from clio.ingest import ingest
    from clio.scrub import scrub_conversations

    result = ingest(input_paths, config.ingest, limit=limit)
    log.info(
        f"ingest: {result.n_input} records read, {len(result.conversations)} accepted, "
        f"{len(result.quarantine)} quarantined, {result.n_truncated} truncated"
    )
    with PrivateStore(private_path) as store:
        scrubbed, scrub_quarantine = scrub_conversations(
            result.conversations, _scrubber(config), _hmac_key(config, store)
        )
        quarantine = list(result.quarantine) + list(scrub_quarantine)
        run_id = _run_id(
            digest,
            [c.content_hash for c in scrubbed],
            [f"{q.source}:{q.location}:{q.reason}" for q in quarantine],
        )
        store.execute("DELETE FROM quarantine WHERE run_id = ?", [run_id])
        store.put_quarantine(quarantine, run_id)
        store.put_conversations(scrubbed, run_id)
    reasons: dict[str, int] = {}
    for q in quarantine:
        reasons[q.reason] = reasons.get(q.reason, 0) + 1
    return IngestSummary(
        run_id=run_id,
        conversation_ids=[c.conversation_id for c in scrubbed],
        n_input=result.n_input,
        n_quarantined=len(quarantine),
        quarantine_reasons=dict(sorted(reasons.items())),
        n_truncated=result.n_truncated,
        n_missing_user=result.n_missing_user,
        n_pii_spans=sum(c.n_pii_spans for c in scrubbed),
        sources=sorted({c.source for c in scrubbed} | {q.source for q in quarantine}),
    )


@task(name="extract-facets", persist_result=False, cache_policy=NO_CACHE)
def extract_facets_task(
    config: RunConfig, conversation_ids: list[str], private_path: str
) -> tuple[dict[str, int], dict[str, int]]:
    from clio.facets import extract_facets

    with PrivateStore(private_path) as store:
        conversations = store.get_conversations(conversation_ids)
        needs_llm = any(f.extractor == "llm" for f in config.facets)
        llm = _llm(config, store) if needs_llm else None
        values = extract_facets(
            conversations, config.facets, llm, max_input_chars=config.llm.max_input_chars
        )
        store.put_facets(values)
    failed: dict[str, int] = {}
    for v in values:
        if v.status == "failed":
            failed[v.facet] = failed.get(v.facet, 0) + 1
    usage = _usage_dict(llm)
    return usage, failed


@task(name="cluster-facet", persist_result=False, cache_policy=NO_CACHE)
def cluster_facet_task(
    config: RunConfig, facet: str, conversation_ids: list[str], private_path: str, run_id: str
) -> tuple[list[Cluster], dict[str, int]]:
    from clio.embed import SentenceTransformerEmbedder, embed_texts
    from clio.hierarchy import build_facet_tree

    with PrivateStore(private_path) as store:
        users = {
            c.conversation_id: c.user_pseudonym for c in store.get_conversations(conversation_ids)
        }
        item_ids, item_convs, texts, item_users = [], [], [], []
        for value in store.get_facets(conversation_ids):
            if value.facet != facet or value.status != "ok" or value.value is None:
                continue
            items = value.value if isinstance(value.value, list) else [value.value]
            for index, item in enumerate(items):
                text = str(item).strip()
                if not text:
                    continue
                item_ids.append(f"{value.conversation_id}#{index}")
                item_convs.append(value.conversation_id)
                texts.append(text)
                item_users.append(users[value.conversation_id])
        if not texts:
            log.info(f"cluster {facet}: no values to cluster")
            return [], {}
        embedder = SentenceTransformerEmbedder(config.embed.model, config.embed.batch_size)
        vectors = embed_texts(texts, embedder, store)
        llm = _llm(config, store)
        tree = build_facet_tree(facet, item_convs, texts, item_users, vectors, llm, config)
        base_of_item = {}
        for node in tree:
            if node.level == 0:
                for member in node.extra.get("item_indices", []):
                    base_of_item[member] = node.cluster_id
        store.put_cluster_members(run_id, facet, tree)
        store.put_assignments(
            run_id,
            facet,
            [
                (item_ids[i], item_convs[i], base_of_item[i])
                for i in range(len(item_ids))
                if i in base_of_item
            ],
        )
    return tree, _usage_dict(llm)


@task(name="gate-and-release", persist_result=False, cache_policy=NO_CACHE, retries=1)
def gate_and_release(
    config: RunConfig,
    clusters: list[Cluster],
    conversation_ids: list[str],
    private_path: str,
    released_path: str,
    run_row: dict[str, Any],
) -> dict[str, Any]:
    from clio.audit import KeywordRenamer, audit_texts
    from clio.gate import apply_gate
    from clio.release import RunRow, write_release

    breakdown_facets = [f.name for f in config.facets if f.breakdown]
    with PrivateStore(private_path) as store:
        conversations = store.get_conversations(conversation_ids)
        users = {c.conversation_id: c.user_pseudonym for c in conversations}
        facet_values: dict[str, dict[str, object]] = {cid: {} for cid in users}
        for value in store.get_facets(conversation_ids):
            if value.status == "ok" and value.value is not None:
                facet_values[value.conversation_id][value.facet] = value.value
    totals: dict[str, int] = {}
    for node in clusters:
        if node.parent_id is None:
            totals[node.facet] = totals.get(node.facet, 0) + len(set(node.member_ids))
    text_check = None
    if config.privacy.rescan_released_text:
        scrubber = _scrubber(config)

        def text_check(text: str) -> bool:
            return not scrubber.analyze([text])[0]

    has_concern = any(f.name == "concerning" for f in config.facets)
    with PrivateStore(private_path) as store:
        # The auditor and the renamer share the run's LLM cache, so a re-run asks nothing again.
        llm = _llm(config, store) if config.privacy.audit_released_text else None
        result = apply_gate(
            clusters,
            users,
            facet_values,
            config.privacy,
            breakdown_facets=breakdown_facets,
            concern_facet="concerning" if has_concern else None,
            text_check=text_check,
            audit=partial(audit_texts, llm=llm) if llm is not None else None,
            regenerate=KeywordRenamer(llm) if llm is not None else None,
            total_conversations=totals,
            seed=config.cluster.seed,
        )
    gate_usage = _usage_dict(llm)
    run_row = {
        **run_row,
        "llm_calls": run_row["llm_calls"] + gate_usage["calls"],
        "llm_cached_calls": run_row["llm_cached_calls"] + gate_usage["cached_calls"],
        "input_tokens": run_row["input_tokens"] + gate_usage["input_tokens"],
        "output_tokens": run_row["output_tokens"] + gate_usage["output_tokens"],
    }
    write_release(Path(released_path), RunRow(**run_row), result)
    levels: dict[str, int] = {}
    for c in result.clusters:
        levels[f"{c.facet}/L{c.level}"] = levels.get(f"{c.facet}/L{c.level}", 0) + 1
    return {
        "clusters_built": len(clusters),
        "clusters_released": len(result.clusters),
        "clusters_released_by_level": dict(sorted(levels.items())),
        "breakdown_cells_released": len(result.breakdowns),
        "suppressed": dict(sorted(result.suppressed.items())),
        "text_checks": dict(sorted(result.text_checks.items())),
        "differential_privacy": result.dp,
        "llm_usage": gate_usage,
    }


def _usage_dict(llm: Any) -> dict[str, int]:
    if llm is None:
        return {"calls": 0, "cached_calls": 0, "input_tokens": 0, "output_tokens": 0, "failures": 0}
    u = llm.usage
    return {
        "calls": u.calls,
        "cached_calls": u.cached_calls,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "failures": u.failures,
    }


def _add_usage(total: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value


def _versions() -> dict[str, str]:
    names = [
        "prefect",
        "duckdb",
        "presidio-analyzer",
        "sentence-transformers",
        "faiss-cpu",
        "llama_cpp_python",
        "torch",
    ]
    out = {"clio": clio.__version__, "python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# -- the flow -----------------------------------------------------------------


@flow(name="clio-run", persist_result=False, log_prints=False, validate_parameters=True)
def clio_run(
    input_paths: list[str],
    output_dir: str,
    config_path: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Run every stage over `input_paths` and release aggregates to `output_dir`."""
    from clio.manifest import write_manifest

    config = load_config(config_path)
    return run_pipeline(config, input_paths, Path(output_dir), limit, config_path, write_manifest)


def run_pipeline(
    config: RunConfig,
    input_paths: list[str],
    output_dir: Path,
    limit: int | None,
    config_path: str | None,
    write_manifest: Any,
) -> dict[str, Any]:
    paths = RunPaths(output_dir)
    paths.private.parent.mkdir(parents=True, exist_ok=True)
    digest = config_hash(config)
    started_at = datetime.now(UTC).replace(tzinfo=None)
    times = StageTimes()
    usage: dict[str, int] = {}

    with times.stage("ingest+scrub"):
        summary = ingest_and_scrub(config, input_paths, limit, str(paths.private), digest)
    ids = summary.conversation_ids

    with times.stage("facets"):
        facet_usage, failed_facets = extract_facets_task(config, ids, str(paths.private))
    _add_usage(usage, facet_usage)

    clusters: list[Cluster] = []
    with times.stage("embed+cluster+describe+hierarchy"):
        for facet in [f.name for f in config.facets if f.cluster]:
            tree, tree_usage = cluster_facet_task(
                config, facet, ids, str(paths.private), summary.run_id
            )
            clusters.extend(tree)
            _add_usage(usage, tree_usage)

    finished_at = datetime.now(UTC).replace(tzinfo=None)
    run_row = {
        "run_id": summary.run_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "config_hash": digest,
        "min_users": config.privacy.min_users,
        "min_conversations": config.privacy.min_conversations,
        "n_input": summary.n_input,
        "n_quarantined": summary.n_quarantined,
        "n_conversations": len(ids),
        "llm_calls": usage.get("calls", 0),
        "llm_cached_calls": usage.get("cached_calls", 0),
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
    }
    with times.stage("gate+release"):
        gate_summary = gate_and_release(
            config, clusters, ids, str(paths.private), str(paths.released), run_row
        )

    differential_privacy = gate_summary.pop("differential_privacy")
    _add_usage(usage, gate_summary.pop("llm_usage"))
    manifest = {
        "run_id": summary.run_id,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
        "config_path": config_path,
        "config_hash": digest,
        "config": config.model_dump(mode="json"),
        "versions": _versions(),
        "inputs": summary.sources,
        "counts": {
            "n_input": summary.n_input,
            "n_conversations": len(ids),
            "n_quarantined": summary.n_quarantined,
            "quarantine_reasons": summary.quarantine_reasons,
            "n_truncated": summary.n_truncated,
            "n_missing_user_id_treated_per_conversation": summary.n_missing_user,
            "n_pii_spans_replaced": summary.n_pii_spans,
            "facet_failures": dict(sorted(failed_facets.items())),
        },
        "llm": {
            "backend": config.llm.backend,
            "model": config.llm.model,
            **usage,
            "estimated_cost": round(Usage(**usage).cost(config.llm), 6),
        },
        "release": {"path": str(paths.released), **gate_summary},
        "privacy": {
            "min_users": config.privacy.min_users,
            "min_conversations": config.privacy.min_conversations,
            "differential_privacy": differential_privacy,
        },
        "stage_seconds": times.seconds,
        "outputs": {
            "released_store": str(paths.released),
            "private_store": str(paths.private),
            "manifest": str(paths.manifest),
        },
    }
    paths.run_manifests.mkdir(parents=True, exist_ok=True)
    write_manifest(paths.run_manifests / f"{summary.run_id}.json", manifest)
    write_manifest(paths.manifest, manifest)
    return manifest
