"""The main Prefect flow: clio's stages wrapped as tasks.

The stages themselves are plain functions in `clio/`; this module only wires
them, times them and records the run. Privacy rules for the wiring:
- raw text never crosses a task boundary: tasks pass ids, paths and counts. A
  scrub partition reads its own slice of the input and scrubs it in one task;
- no task result is persisted (`persist_result=False`), and flow parameters
  are paths and numbers only, so Prefect's result storage and database never
  hold conversation text;
- log lines carry counts only.

Partitions and the one-writer store. Scrub, facets and embeddings run in
partitions over slices of conversation ids (`runner.partition_size`); with the
Dask runner they run concurrently on the cluster's workers. The private DuckDB
store takes one writer, so a partition never writes it: it opens the store
read-only, writes what it makes (scrubbed conversations, facets, LLM answers,
vectors) to its own shard file under `private/shards/`, and returns counts. The
flow, the only writer, merges the shards between stages (each merge is one
transaction of upserts, then the shard is deleted; shards a killed run left are
merged when the next run starts, so their work is not lost). Text therefore
stays on disk in the output directory; with a remote Dask cluster that
directory must be on a filesystem the workers share, at the same path.
Clustering, naming and the gate run in the flow's process: clustering needs
every vector of a facet at once, and nothing else there needs conversation text.

Modes. `full` (the default, as before) builds the clusters over this run's
input. `rebuild` builds them over every conversation of the last build (with
those incremental runs added or left unassigned) plus the input. `incremental`
scrubs, extracts and embeds only conversations the store has not seen (by
content hash) and assigns them to the last full build's base clusters
(`clio.incremental`); without a usable build it does a full build and says so.
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
from typing import Any, cast, get_args

import numpy as np
from prefect import Flow, flow, task
from prefect.cache_policies import NO_CACHE

import clio
from clio.config import RunConfig, RunnerConfig, config_hash, load_config
from clio.incremental import Mode, tree_digest
from clio.llm.client import Usage
from clio.records import Cluster, QuarantineRecord
from clio.store import BuildNode, LayeredCache, PrivateStore

log = logging.getLogger("clio.flow")

PRIVATE_STORE = "private.duckdb"
RELEASED_STORE = "insights.duckdb"
MANIFEST = "manifest.json"
HMAC_SECRET = "user_pseudonym_hmac_key"


@dataclass
class RunPaths:
    output_dir: Path

    @property
    def private(self) -> Path:
        return self.output_dir / "private" / PRIVATE_STORE

    @property
    def shards(self) -> Path:
        return self.output_dir / "private" / "shards"

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
class InputPlan:
    """What the input holds, without its text: accepted conversations in input order."""

    conversation_ids: list[str]
    content_hashes: list[str]
    quarantine: list[QuarantineRecord]
    n_input: int
    n_truncated: int
    n_missing_user: int
    sources: list[str]


@dataclass
class ScrubbedPart:
    conversation_ids: list[str]
    quarantine: list[QuarantineRecord]
    n_pii_spans: int


def _run_id(config_digest: str, content_hashes: Sequence[str], quarantine: Sequence[str]) -> str:
    """Same input and config give the same run id, so a re-run replaces its own rows."""
    digest = hashlib.sha256(config_digest.encode())
    for value in sorted(content_hashes):
        digest.update(value.encode())
    digest.update(b"|")
    for value in sorted(quarantine):
        digest.update(value.encode())
    return "run-" + digest.hexdigest()[:12]


def _quarantine_key(q: QuarantineRecord) -> str:
    return f"{q.source}:{q.location}:{q.reason}"


def _slices(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


# -- components built once per process ---------------------------------------


def _hmac_key(config: RunConfig, store: PrivateStore) -> str:
    import os

    from_env = os.environ.get(config.scrub.hmac_key_env)
    return from_env if from_env else store.get_or_create_secret(HMAC_SECRET)


def _fingerprint(key: str) -> str:
    return hashlib.sha256(("clio-key-check:" + key).encode()).hexdigest()[:16]


_SCRUBBERS: dict[str, Any] = {}


def _scrubber(config: RunConfig) -> Any:
    from clio.scrub import build_scrubber

    key = config.scrub.model_dump_json()
    if key not in _SCRUBBERS:
        _SCRUBBERS[key] = build_scrubber(config.scrub)
    return _SCRUBBERS[key]


def _llm(config: RunConfig, cache: Any) -> Any:
    from clio.llm.client import StructuredLLM
    from clio.llm.factory import build_backend

    return StructuredLLM(build_backend(config.llm), config.llm, cache=cache)


def _facet_items(
    store: PrivateStore, facet: str, conversation_ids: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    """(item ids, their conversation ids, texts) of one facet: a list facet gives one item
    per entry, `<conversation id>#<entry>`."""
    item_ids, item_convs, texts = [], [], []
    for value in store.get_facets(conversation_ids):
        if value.facet != facet or value.status != "ok" or value.value is None:
            continue
        items = value.value if isinstance(value.value, list) else [value.value]
        for index, item in enumerate(items):
            text = str(item).strip()
            if text:
                item_ids.append(f"{value.conversation_id}#{index}")
                item_convs.append(value.conversation_id)
                texts.append(text)
    return item_ids, item_convs, texts


def _embedder(config: RunConfig) -> Any:
    from clio.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(config.embed.model, config.embed.batch_size)


# -- partition tasks: read the main store read-only, write their own shard ------


@task(name="plan-input", persist_result=False, cache_policy=NO_CACHE)
def plan_input(config: RunConfig, input_paths: list[str], limit: int | None) -> InputPlan:
    """Read the input once for its ids, content hashes and quarantine; keeps no text."""
    from clio.ingest import ingest

    ids: list[str] = []
    hashes: list[str] = []
    sources: set[str] = set()

    def note(_: int, conversation: Any) -> bool:
        ids.append(conversation.conversation_id)
        hashes.append(conversation.content_hash())
        sources.add(conversation.source)
        return False

    result = ingest(input_paths, config.ingest, limit=limit, keep=note)
    sources |= {q.source for q in result.quarantine}
    return InputPlan(
        conversation_ids=ids,
        content_hashes=hashes,
        quarantine=list(result.quarantine),
        n_input=result.n_input,
        n_truncated=result.n_truncated,
        n_missing_user=result.n_missing_user,
        sources=sorted(sources),
    )


@task(name="scrub-partition", persist_result=False, cache_policy=NO_CACHE)
def scrub_partition(
    config: RunConfig,
    input_paths: list[str],
    limit: int | None,
    indices: list[int],
    private_path: str,
    shard_path: str,
    run_id: str,
    key_fingerprint: str,
) -> ScrubbedPart:
    """Ingest and scrub the accepted conversations at `indices` (input order) into a shard."""
    from clio.ingest import ingest
    from clio.scrub import scrub_conversations, scrub_workers

    wanted = set(indices)
    result = ingest(input_paths, config.ingest, limit=limit, keep=lambda i, _: i in wanted)
    with PrivateStore(private_path, read_only=True) as main:
        key = _hmac_key(config, main)
    if _fingerprint(key) != key_fingerprint:
        raise RuntimeError(
            "this worker sees another user-pseudonym key than the flow: set "
            f"{config.scrub.hmac_key_env} the same on every worker, or on none"
        )
    scrubbed, quarantine = scrub_conversations(
        result.conversations,
        _scrubber(config),
        key,
        progress_label=f"scrub {len(wanted)}",
        workers=scrub_workers(config.scrub),
    )
    with PrivateStore(shard_path) as shard:
        shard.put_conversations(scrubbed, run_id)
    return ScrubbedPart(
        conversation_ids=[c.conversation_id for c in scrubbed],
        quarantine=list(quarantine),
        n_pii_spans=sum(c.n_pii_spans for c in scrubbed),
    )


@task(name="facet-partition", persist_result=False, cache_policy=NO_CACHE)
def facet_partition(
    config: RunConfig, conversation_ids: list[str], private_path: str, shard_path: str
) -> tuple[dict[str, int], dict[str, int]]:
    """Extract every facet of `conversation_ids` into a shard; (LLM usage, failures by facet)."""
    from clio.facets import extract_facets

    with (
        PrivateStore(private_path, read_only=True) as main,
        PrivateStore(shard_path) as shard,
    ):
        conversations = main.get_conversations(conversation_ids)
        needs_llm = any(f.extractor == "llm" for f in config.facets)
        llm = _llm(config, LayeredCache(shard, main)) if needs_llm else None
        values = extract_facets(
            conversations, config.facets, llm, max_input_chars=config.llm.max_input_chars
        )
        shard.put_facets(values)
    failed: dict[str, int] = {}
    for v in values:
        if v.status == "failed":
            failed[v.facet] = failed.get(v.facet, 0) + 1
    return _usage_dict(llm), failed


@task(name="embed-partition", persist_result=False, cache_policy=NO_CACHE)
def embed_partition(
    config: RunConfig, conversation_ids: list[str], private_path: str, shard_path: str
) -> int:
    """Embed the clustered facets' texts of `conversation_ids` into a shard; texts embedded."""
    from clio.embed import embed_texts

    texts: list[str] = []
    with (
        PrivateStore(private_path, read_only=True) as main,
        PrivateStore(shard_path) as shard,
    ):
        for facet in [f.name for f in config.facets if f.cluster]:
            texts.extend(_facet_items(main, facet, conversation_ids)[2])
        if texts:
            embed_texts(texts, _embedder(config), LayeredCache(shard, main))
    return len(texts)


# -- tasks in the flow's process: the one writer of the private store ------------


@task(name="cluster-facet", persist_result=False, cache_policy=NO_CACHE)
def cluster_facet_task(
    config: RunConfig, facet: str, conversation_ids: list[str], private_path: str, run_id: str
) -> tuple[list[Cluster], dict[str, int], list[BuildNode]]:
    from clio.embed import embed_texts
    from clio.hierarchy import base_cluster_of_items, build_facet_tree
    from clio.incremental import base_centroids

    with PrivateStore(private_path) as store:
        item_ids, item_convs, texts = _facet_items(store, facet, conversation_ids)
        if not texts:
            log.info(f"cluster {facet}: no values to cluster")
            return [], {}, []
        users = store.user_pseudonyms(sorted(set(item_convs)))
        item_users = [users[c] for c in item_convs]
        vectors = embed_texts(texts, _embedder(config), store)
        llm = _llm(config, store)
        tree = build_facet_tree(facet, item_convs, texts, item_users, vectors, llm, config)
        base = [node for node in tree if node.level == 0]
        base_of_item = base_cluster_of_items(tree)
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
    centroids = base_centroids(vectors, [node.extra.get("item_indices", []) for node in base])
    centroid_of = {node.cluster_id: centroids[i] for i, node in enumerate(base)}
    nodes = [
        BuildNode(
            facet=c.facet,
            level=c.level,
            cluster_id=c.cluster_id,
            parent_id=c.parent_id,
            name=c.name,
            description=c.description,
            keywords=list(c.keywords),
            x=c.x,
            y=c.y,
            centroid=centroid_of.get(c.cluster_id),
        )
        for c in tree
    ]
    return tree, _usage_dict(llm), nodes


@task(name="assign-to-build", persist_result=False, cache_policy=NO_CACHE)
def assign_to_build(
    config: RunConfig, build_id: str, run_id: str, conversation_ids: list[str], private_path: str
) -> dict[str, int]:
    """Assign the facet texts of `conversation_ids` to the build's nearest base clusters."""
    from clio.embed import embed_texts
    from clio.incremental import nearest_centroids

    assigned: list[tuple[str, str, str, str]] = []
    waiting: list[tuple[str, str, str, float]] = []
    with PrivateStore(private_path) as store:
        nodes = store.build_nodes(build_id)
        for facet in [f.name for f in config.facets if f.cluster]:
            base = [
                n for n in nodes if n.facet == facet and n.level == 0 and n.centroid is not None
            ]
            item_ids, item_convs, texts = _facet_items(store, facet, conversation_ids)
            if not texts:
                continue
            vectors = embed_texts(texts, _embedder(config), store)
            centroids = (
                np.stack([n.centroid for n in base])
                if base
                else np.zeros((0, vectors.shape[1]), dtype=np.float32)
            )
            labels, distances = nearest_centroids(
                vectors, centroids, config.incremental.max_distance
            )
            for item, conversation, label, distance in zip(
                item_ids, item_convs, labels, distances, strict=True
            ):
                if label >= 0:
                    assigned.append((facet, item, conversation, base[int(label)].cluster_id))
                else:
                    waiting.append((facet, item, conversation, float(distance)))
        store.add_to_build(build_id, run_id, conversation_ids, assigned, waiting)
    log.info(
        f"incremental: {len(conversation_ids)} conversations added to build {build_id}: "
        f"{len(assigned)} facet texts assigned, {len(waiting)} beyond the distance cut-off"
    )
    return {
        "items_assigned": len(assigned),
        "items_unassigned": len(waiting),
        "conversations_with_unassigned": len({w[2] for w in waiting}),
    }


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
    from clio.release import write_release
    from clio.released import RunRow

    breakdown_facets = [f.name for f in config.facets if f.breakdown]
    with PrivateStore(private_path) as store:
        users = store.user_pseudonyms(conversation_ids)
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
    return (llm.usage if llm is not None else Usage()).as_dict()


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


# -- running partitions ---------------------------------------------------------


def dask_task_runner(runner: RunnerConfig) -> Any:
    """Prefect's Dask task runner: connect to `runner.address`, or start a local cluster."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise RuntimeError(
            "runner.kind 'dask' needs prefect-dask: pip install 'clio[dask]'"
        ) from exc
    if runner.address:
        return DaskTaskRunner(address=runner.address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": runner.n_workers,
            "threads_per_worker": runner.threads_per_worker,
            "processes": True,
            "dashboard_address": None,
        },
    )


def flow_for(config: RunConfig) -> Flow:
    """The flow on the task runner `config.runner` asks for."""
    if config.runner.kind == "dask":
        return clio_run.with_options(task_runner=dask_task_runner(config.runner))
    return clio_run


def _uses_dask() -> bool:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context is not None and type(context.task_runner).__name__ == "DaskTaskRunner"


def _in_partitions(task_fn: Any, calls: list[dict[str, Any]]) -> list[Any]:
    """One task run per call: submitted together when the flow runs on Dask, else run one
    after another in this process (models are loaded once per process either way)."""
    if _uses_dask():
        futures = [task_fn.submit(**kwargs) for kwargs in calls]
        return [future.result() for future in futures]
    return [task_fn(**kwargs) for kwargs in calls]


def _merge_shards(private: Path, shards: Sequence[Path]) -> None:
    present = [s for s in shards if s.exists()]
    if present:
        with PrivateStore(private) as store:
            for shard in present:
                store.merge_shard(shard)


def _partitioned(
    task_fn: Any,
    ids: Sequence[Any],
    size: int,
    paths: RunPaths,
    shard_prefix: str,
    **kwargs: Any,
) -> list[Any]:
    """Run `task_fn` over slices of `ids` (as `conversation_ids`, or `indices` for scrub),
    each writing its own shard `<shard_prefix>-NNNN.duckdb`, and merge the shards into the
    private store."""
    key = "indices" if task_fn is scrub_partition else "conversation_ids"
    calls = [
        {
            **kwargs,
            key: part,
            "private_path": str(paths.private),
            "shard_path": str(paths.shards / f"{shard_prefix}-{n:04d}.duckdb"),
        }
        for n, part in enumerate(_slices(ids, size))
    ]
    results = _in_partitions(task_fn, calls)
    _merge_shards(paths.private, [Path(c["shard_path"]) for c in calls])
    return results


def _resolve_mode(requested: Mode, build: tuple[str, str] | None, digest: str) -> tuple[Mode, str]:
    """The mode this run takes, and why (said in the report and the manifest)."""
    if requested == "incremental":
        if build is None:
            return "full", "no full build in this output directory yet, so a full build was made"
        if build[1] != digest:
            return "rebuild", (
                "settings that shape the clusters changed since the last full build, "
                "so it was rebuilt"
            )
        return "incremental", f"added to the full build {build[0]}"
    if requested == "rebuild":
        return "rebuild", "full build over the last build's conversations and the input"
    return "full", "full build over the input"


# -- the flow -----------------------------------------------------------------


@flow(name="clio-run", persist_result=False, log_prints=False, validate_parameters=True)
def clio_run(
    input_paths: list[str],
    output_dir: str,
    config_path: str | None = None,
    limit: int | None = None,
    mode: str = "full",
) -> dict[str, Any]:
    """Run every stage over `input_paths` and release aggregates to `output_dir`; `mode` is
    full, incremental or rebuild."""
    from clio.manifest import write_manifest

    # A plain `str` parameter: a served flow is loaded from its entrypoint, where Prefect
    # cannot resolve the `Mode` alias to validate it.
    if mode not in get_args(Mode):
        raise ValueError(f"mode must be one of {', '.join(get_args(Mode))}, not {mode!r}")
    config = load_config(config_path)
    return run_pipeline(
        config,
        input_paths,
        Path(output_dir),
        limit,
        config_path,
        write_manifest,
        mode=cast(Mode, mode),
    )


def run_pipeline(
    config: RunConfig,
    input_paths: list[str],
    output_dir: Path,
    limit: int | None,
    config_path: str | None,
    write_manifest: Any,
    mode: Mode = "full",
) -> dict[str, Any]:
    paths = RunPaths(output_dir)
    paths.shards.mkdir(parents=True, exist_ok=True)
    digest = config_hash(config)
    shape = tree_digest(config)
    started_at = datetime.now(UTC).replace(tzinfo=None)
    times = StageTimes()
    usage: dict[str, int] = {}
    size = config.runner.partition_size
    partitions: dict[str, int] = {"scrub": 0, "facets": 0, "embed": 0}

    with PrivateStore(paths.private) as store:
        for shard in sorted(paths.shards.glob("*.duckdb")):
            store.merge_shard(shard)  # left by a killed run: its work is kept
        fingerprint = _fingerprint(_hmac_key(config, store))
        build = store.current_build()
        effective, reason = _resolve_mode(mode, build, shape)
        previous_ids = (
            store.build_conversation_ids(build[0]) if build and effective != "full" else []
        )
    log.info(f"mode {effective}: {reason}")

    with times.stage("ingest+scrub"):
        plan = (
            plan_input(config, input_paths, limit)
            if input_paths
            else InputPlan([], [], [], 0, 0, 0, [])
        )
        with PrivateStore(paths.private) as store:
            known = {} if mode == "full" else store.conversation_ids_by_hash(plan.content_hashes)
        qkeys = [_quarantine_key(q) for q in plan.quarantine]
        if effective == "incremental":
            assert build is not None
            run_id = _run_id(f"{digest}+{build[0]}", plan.content_hashes, qkeys)
        else:
            run_id = _run_id(digest, plan.content_hashes + previous_ids, qkeys)
        to_scrub = [i for i, h in enumerate(plan.content_hashes) if h not in known]
        scrub_size = size if _uses_dask() else max(1, len(to_scrub))
        parts: list[ScrubbedPart] = _partitioned(
            scrub_partition,
            to_scrub,
            scrub_size,
            paths,
            f"scrub-{run_id}",
            config=config,
            input_paths=input_paths,
            limit=limit,
            run_id=run_id,
            key_fingerprint=fingerprint,
        )
        partitions["scrub"] = len(parts)
        quarantine = plan.quarantine + [q for p in parts for q in p.quarantine]
        with PrivateStore(paths.private) as store:
            store.execute("DELETE FROM quarantine WHERE run_id = ?", [run_id])
            store.put_quarantine(quarantine, run_id)
    input_ids = sorted(
        {known[h] for h in plan.content_hashes if h in known}
        | {cid for p in parts for cid in p.conversation_ids}
    )
    ids = sorted(set(input_ids) | set(previous_ids))  # the conversations this release covers
    new_ids = sorted(set(input_ids) - set(previous_ids)) if effective == "incremental" else ids
    log.info(
        f"input: {len(plan.conversation_ids)} conversations, {len(known)} already processed, "
        f"{len(to_scrub)} scrubbed; {len(new_ids)} to process"
    )

    failed_facets: dict[str, int] = {}
    with times.stage("facets"):
        facet_parts = _partitioned(
            facet_partition,
            new_ids,
            size,
            paths,
            f"facets-{run_id}",
            config=config,
        )
        partitions["facets"] = len(facet_parts)
        for part_usage, part_failed in facet_parts:
            _add_usage(usage, part_usage)
            _add_usage(failed_facets, part_failed)

    clusters: list[Cluster] = []
    incremental: dict[str, Any] | None = None
    clustered = [f.name for f in config.facets if f.cluster]
    with times.stage("embed+cluster+describe+hierarchy"):
        if clustered:
            partitions["embed"] = len(
                _partitioned(
                    embed_partition,
                    new_ids,
                    size,
                    paths,
                    f"embed-{run_id}",
                    config=config,
                )
            )
        if effective == "incremental":
            assert build is not None
            assignment = (
                assign_to_build(config, build[0], run_id, new_ids, str(paths.private))
                if new_ids
                else {
                    "items_assigned": 0,
                    "items_unassigned": 0,
                    "conversations_with_unassigned": 0,
                }
            )
            clusters, incremental = _extended_build(config, paths.private, build[0], clustered)
            incremental.update(
                new_conversations=len(new_ids),
                max_distance=config.incremental.max_distance,
                **assignment,
            )
        else:
            nodes: list[BuildNode] = []
            for facet in clustered:
                tree, tree_usage, facet_nodes = cluster_facet_task(
                    config, facet, ids, str(paths.private), run_id
                )
                clusters.extend(tree)
                nodes.extend(facet_nodes)
                _add_usage(usage, tree_usage)
            with PrivateStore(paths.private) as store:
                store.put_build(run_id, shape, nodes, ids)

    finished_at = datetime.now(UTC).replace(tzinfo=None)
    run_row = {
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "config_hash": digest,
        "min_users": config.privacy.min_users,
        "min_conversations": config.privacy.min_conversations,
        "n_input": plan.n_input,
        "n_quarantined": len(quarantine),
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
    reasons: dict[str, int] = {}
    for q in quarantine:
        reasons[q.reason] = reasons.get(q.reason, 0) + 1
    manifest = {
        "run_id": run_id,
        "mode": effective,
        "mode_requested": mode,
        "mode_reason": reason,
        "build_id": build[0] if effective == "incremental" and build else run_id,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
        "config_path": config_path,
        "config_hash": digest,
        "config": config.model_dump(mode="json"),
        "versions": _versions(),
        "inputs": plan.sources,
        "counts": {
            "n_input": plan.n_input,
            "n_conversations": len(ids),
            "n_input_conversations": len(input_ids),
            "n_already_processed": len(known),
            "n_scrubbed": len(to_scrub),
            "n_processed": len(new_ids),
            "n_quarantined": len(quarantine),
            "quarantine_reasons": dict(sorted(reasons.items())),
            "n_truncated": plan.n_truncated,
            "n_missing_user_id_treated_per_conversation": plan.n_missing_user,
            "n_pii_spans_replaced": sum(p.n_pii_spans for p in parts),
            "facet_failures": dict(sorted(failed_facets.items())),
        },
        "incremental": incremental,
        "runner": {
            "kind": "dask" if _uses_dask() else "default",
            "partition_size": size,
            "partitions": partitions,
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
    write_manifest(paths.run_manifests / f"{run_id}.json", manifest)
    write_manifest(paths.manifest, manifest)
    return manifest


def _extended_build(
    config: RunConfig, private: Path, build_id: str, clustered: Sequence[str]
) -> tuple[list[Cluster], dict[str, Any]]:
    """The build's tree with every conversation assigned to it so far, and what waits."""
    from clio.incremental import tree_from_build

    with PrivateStore(private) as store:
        members: dict[str, set[str]] = {}
        for facet in clustered:
            members.update(store.base_members(build_id, facet))
        nodes = [n for n in store.build_nodes(build_id) if n.facet in clustered]
        items, conversations = store.unassigned_counts(build_id)
    summary = {
        "build_id": build_id,
        "unassigned_items_waiting": items,
        "unassigned_conversations_waiting": conversations,
    }
    return tree_from_build(nodes, members), summary
