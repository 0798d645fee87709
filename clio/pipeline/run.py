"""One run of the pipeline, composed from the stages, with no scheduler inside.

`run_pipeline` is what `clio run` does: plan the input, scrub and extract facets in
partitions, embed, build each clustered facet's tree (or assign an increment to the
last build), gate and release, write the manifest. Where partitions run is the
`StageRunner`'s business: `InProcess` calls them one after another; the Prefect flow
(`flows/pipeline.py`) runs each as a task, concurrently on a Dask cluster.

Privacy rules for the composition:
- raw text never crosses a stage boundary: stages pass ids, paths and counts. A scrub
  partition reads its own slice of the input and scrubs it in one call;
- results and parameters are paths and numbers only, so a scheduler's result storage
  and database never hold conversation text;
- log lines carry counts only.

Partitions and the one-writer store. Scrub, facets and embeddings run in partitions
over slices of conversation ids (`runner.partition_size`). The private DuckDB store takes
one writer, so a partition never writes it: it opens the store read-only, writes what it
makes to its own shard file under `private/shards/`, and returns counts. This process,
the only writer, merges the shards between stages (each merge is one transaction of
upserts, then the shard is deleted; shards a killed run left are merged when the next run
starts, so their work is not lost). With a remote Dask cluster the output directory must
be on a filesystem the workers share, at the same path. Clustering, naming and the gate
run here: clustering needs every vector of a facet at once.

Modes. `full` builds the clusters over this run's input. `rebuild` builds them over
every conversation of the last build (with those incremental runs added or left
unassigned) plus the input. `incremental` scrubs, extracts and embeds only conversations
the store has not seen (by content hash) and assigns them to the last full build's base
clusters (`clio.incremental`); without a usable build it does a full build and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from clio.config import RunConfig, config_hash
from clio.dp_ledger import check_budget
from clio.facet_quality import withheld_uses
from clio.hierarchy import TreeSettings
from clio.incremental import Mode, tree_digest
from clio.manifest import write_manifest
from clio.pipeline.components import hmac_key, key_fingerprint
from clio.pipeline.paths import RunPaths
from clio.pipeline.plan import InputPlan, plan_input, quarantine_key, resolve_mode, run_id_of
from clio.pipeline.plan import slices as slices_of
from clio.pipeline.publish import ReleaseSettings, release_run
from clio.pipeline.report import RunFacts, StageTimes, build_manifest, public_manifest
from clio.pipeline.stages import (
    FacetsPart,
    ScrubbedPart,
    add_usage,
    assign_increment,
    build_trees,
    embed_slice,
    extended_build,
    extract_facets_slice,
    measure_facet_quality,
    merge_shards,
    scrub_slice,
)
from clio.records import Cluster
from clio.release_audit import audit_release, verdict
from clio.released import RunRow
from clio.scrub import scrub_code_version
from clio.store import PrivateStore, make_private_dir

log = logging.getLogger("clio.flow")

T = TypeVar("T")


class StageRunner(Protocol):
    """Runs stage calls: one at a time, or partitions side by side."""

    @property
    def kind(self) -> str:
        """Recorded in the manifest: `default` (this process) or `dask`."""
        ...

    @property
    def concurrent(self) -> bool:
        """Whether `map`'s calls run at the same time (then scrubbing is partitioned too)."""
        ...

    def run(self, stage: Callable[..., T], **kwargs: Any) -> T: ...

    def map(self, stage: Callable[..., T], calls: list[dict[str, Any]]) -> list[T]: ...


class InProcess:
    """Every stage call in this process, one after another (models load once)."""

    kind = "default"
    concurrent = False

    def run(self, stage: Callable[..., T], **kwargs: Any) -> T:
        return stage(**kwargs)

    def map(self, stage: Callable[..., T], calls: list[dict[str, Any]]) -> list[T]:
        return [stage(**kwargs) for kwargs in calls]


def _partitioned(
    runner: StageRunner,
    stage: Callable[..., T],
    slice_key: str,
    ids: Sequence[Any],
    size: int,
    paths: RunPaths,
    shard_prefix: str,
    **kwargs: Any,
) -> list[T]:
    """Run `stage` over slices of `ids` (passed as `slice_key`), each writing its own shard
    `<shard_prefix>-NNNN.duckdb`, then merge the shards into the private store."""
    calls = [
        {
            **kwargs,
            slice_key: part,
            "private_path": str(paths.private),
            "shard_path": str(paths.shard(shard_prefix, n)),
        }
        for n, part in enumerate(slices_of(ids, size))
    ]
    results = runner.map(stage, calls)
    merge_shards(paths.private, [Path(c["shard_path"]) for c in calls])
    return results


def run_pipeline(
    config: RunConfig,
    input_paths: list[str],
    output_dir: Path,
    limit: int | None,
    config_path: str | None,
    mode: Mode = "full",
    runner: StageRunner | None = None,
) -> dict[str, Any]:
    """Run every stage over `input_paths`, release to `output_dir`; the operator manifest
    (everything; the public one written beside the release is a part of it)."""
    runner = runner if runner is not None else InProcess()
    paths = RunPaths(output_dir)
    make_private_dir(paths.private.parent)  # private/ and shards/: the owner's only (0700)
    make_private_dir(paths.shards)
    digest = config_hash(config)
    shape = tree_digest(config)
    started_at = datetime.now(UTC).replace(tzinfo=None)
    times = StageTimes()
    usage: dict[str, int] = {}
    size = config.runner.partition_size
    partitions: dict[str, int] = {"scrub": 0, "facets": 0, "embed": 0}

    with PrivateStore(paths.private) as store:
        merge_shards_left_by_a_killed_run(store, paths)
        fingerprint = key_fingerprint(hmac_key(config.scrub, store))
        build = store.current_build()
        effective, reason = resolve_mode(mode, build, shape)
        previous_ids = (
            store.build_conversation_ids(build[0]) if build and effective != "full" else []
        )
    log.info(f"mode {effective}: {reason}")

    with times.stage("ingest+scrub"):
        plan = (
            runner.run(plan_input, config=config.ingest, input_paths=input_paths, limit=limit)
            if input_paths
            else InputPlan()
        )
        qkeys = [quarantine_key(q) for q in plan.quarantine]
        # What decides the scrubbed text and pseudonyms is part of the run id, so the same
        # id means the same scrub output.
        scrubbed_by = f"{digest}+{fingerprint}+{scrub_code_version(config.scrub)}"
        if effective == "incremental":
            assert build is not None
            run_id = run_id_of(f"{scrubbed_by}+{build[0]}", plan.content_hashes, qkeys)
        else:
            run_id = run_id_of(scrubbed_by, plan.content_hashes + previous_ids, qkeys)
        with PrivateStore(paths.private) as store:
            check_budget(store, run_id, config.privacy)  # before any work is spent on it
            # A full run scrubs its whole input, except what this same run (killed before
            # it ended) has scrubbed already.
            known = store.conversation_ids_by_hash(
                plan.content_hashes, run_id=run_id if mode == "full" else None
            )
        to_scrub = [i for i, h in enumerate(plan.content_hashes) if h not in known]
        scrub_size = size if runner.concurrent else max(1, len(to_scrub))
        parts: list[ScrubbedPart] = _partitioned(
            runner,
            scrub_slice,
            "indices",
            to_scrub,
            scrub_size,
            paths,
            f"scrub-{run_id}",
            ingest_config=config.ingest,
            scrub_config=config.scrub,
            input_paths=input_paths,
            limit=limit,
            run_id=run_id,
            fingerprint=fingerprint,
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
        facet_parts: list[FacetsPart] = _partitioned(
            runner,
            extract_facets_slice,
            "conversation_ids",
            new_ids,
            size,
            paths,
            f"facets-{run_id}",
            facets=config.facets,
            llm_config=config.llm,
        )
        partitions["facets"] = len(facet_parts)
        for part in facet_parts:
            add_usage(usage, part.usage)
            add_usage(failed_facets, part.failed)
        # Over every conversation the release covers: a degenerate facet is neither
        # clustered nor broken down in this release (`clio.facet_quality`).
        quality = runner.run(
            measure_facet_quality,
            facets=config.facets,
            conversation_ids=ids,
            private_path=str(paths.private),
        )
    withheld = withheld_uses(config.facets, quality)
    for name, uses in withheld.items():
        left_out = f"left out of {', '.join(uses)}" if uses else "not clustered or broken down"
        log.warning(f"facet {name} is degenerate: {left_out}")

    clusters: list[Cluster] = []
    incremental: dict[str, Any] | None = None
    clustered = [f.name for f in config.facets if f.cluster and f.name not in withheld]
    with times.stage("embed+cluster+describe+hierarchy"):
        if clustered:
            partitions["embed"] = len(
                _partitioned(
                    runner,
                    embed_slice,
                    "conversation_ids",
                    new_ids,
                    size,
                    paths,
                    f"embed-{run_id}",
                    clustered=clustered,
                    embed_config=config.embed,
                )
            )
        if effective == "incremental":
            assert build is not None
            assignment = (
                runner.run(
                    assign_increment,
                    clustered=clustered,
                    embed_config=config.embed,
                    cluster_config=config.cluster,
                    max_distance=config.incremental.max_distance,
                    build_id=build[0],
                    run_id=run_id,
                    conversation_ids=new_ids,
                    private_path=str(paths.private),
                )
                if new_ids
                else {
                    "items_assigned": 0,
                    "items_unassigned": 0,
                    "conversations_with_unassigned": 0,
                }
            )
            clusters, incremental = extended_build(paths.private, build[0], clustered)
            incremental.update(
                new_conversations=len(new_ids),
                max_distance=config.incremental.max_distance,
                **assignment,
            )
        else:
            trees = runner.run(
                build_trees,
                settings=TreeSettings.from_config(config),
                embed_config=config.embed,
                llm_config=config.llm,
                clustered=clustered,
                conversation_ids=ids,
                private_path=str(paths.private),
                run_id=run_id,
                shape_digest=shape,
                lineage_config=config.lineage,
            )
            clusters = trees.clusters
            add_usage(usage, trees.usage)

    run_row = RunRow(
        run_id=run_id,
        started_at=started_at,
        finished_at=datetime.now(UTC).replace(tzinfo=None),
        config_hash=digest,
        min_users=config.privacy.min_users,
        min_conversations=config.privacy.min_conversations,
        n_input=plan.n_input,
        n_quarantined=len(quarantine),
        n_conversations=len(ids),
        llm_calls=usage.get("calls", 0),
        llm_cached_calls=usage.get("cached_calls", 0),
        input_tokens=usage.get("input_tokens", 0),
        output_tokens=usage.get("output_tokens", 0),
    )
    with times.stage("gate+release"):
        released = runner.run(
            release_run,
            settings=ReleaseSettings.of(config).without(withheld),
            clusters=clusters,
            conversation_ids=ids,
            private_path=str(paths.private),
            released_path=str(paths.released),
            run=run_row,
            build_id=build[0] if effective == "incremental" and build else run_id,
            n_processed=len(new_ids),
        )
    add_usage(usage, released.usage)
    # The attack suite on the store as it now stands: reported, never a reason to fail.
    with times.stage("release audit"):
        audit = verdict(audit_release(paths.released))
    log.info(f"release audit: {audit['findings']} findings {audit['by_attack']}")

    facts = RunFacts(
        run_id=run_id,
        mode=effective,
        mode_requested=mode,
        mode_reason=reason,
        build_id=build[0] if effective == "incremental" and build else run_id,
        started_at=started_at,
        config_path=config_path,
        config_hash=digest,
        plan=plan,
        n_conversations=len(ids),
        n_input_conversations=len(input_ids),
        n_already_processed=len(known),
        n_scrubbed=len(to_scrub),
        n_processed=len(new_ids),
        quarantine=quarantine,
        n_pii_spans=sum(p.n_pii_spans for p in parts),
        facet_failures=failed_facets,
        facet_quality=quality,
        withheld_facets=withheld,
        incremental=incremental,
        runner_kind=runner.kind,
        partitions=partitions,
        usage=usage,
        release={**released.summary, "audit": audit},
        differential_privacy=released.dp,
        stage_seconds=times.seconds,
    )
    manifest = build_manifest(facts, config, paths, datetime.now(UTC).replace(tzinfo=None))
    write_manifests(paths, manifest)
    return manifest


def write_manifests(paths: RunPaths, operator: dict[str, Any]) -> None:
    """The operator manifest under `private/` (0600), then the public one beside the
    release; each also kept per run. Written operator first, so a public manifest never
    names a run whose full record is missing."""
    run_id = operator["run_id"]
    write_manifest(paths.operator_run_manifests / f"{run_id}.json", operator, mode=0o600)
    write_manifest(paths.operator_manifest, operator, mode=0o600)
    public = public_manifest(operator)
    write_manifest(paths.run_manifests / f"{run_id}.json", public)
    write_manifest(paths.manifest, public)


def merge_shards_left_by_a_killed_run(store: PrivateStore, paths: RunPaths) -> None:
    """Shards a killed run left hold finished partitions: their work is kept."""
    for shard in sorted(paths.shards.glob("*.duckdb")):
        store.merge_shard(shard)
