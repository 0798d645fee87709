"""The Prefect flow: clio's run with each stage a Prefect task.

`clio.pipeline.run_pipeline` composes the stages; this module only gives it a
`StageRunner` whose calls are Prefect tasks, and defines the flow, the Dask task
runner and (through `clio schedule`) the served deployment. No task result is persisted
and no task is cached by Prefect: stages pass ids, paths and counts, and the private
store is the cache, so Prefect's result storage and database never hold conversation
text. Flow parameters are paths and numbers only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast, get_args

from prefect import Flow, Task, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner

from clio.config import RunConfig, RunnerConfig, load_config
from clio.incremental import Mode
from clio.pipeline import run_pipeline
from clio.pipeline.plan import plan_input
from clio.pipeline.publish import release_run
from clio.pipeline.stages import (
    assign_increment,
    build_trees,
    embed_slice,
    extract_facets_slice,
    measure_facet_quality,
    scrub_slice,
)

T = TypeVar("T")


def _as_task(stage: Callable[..., Any], name: str, retries: int = 0) -> Task:
    return task(stage, name=name, persist_result=False, cache_policy=NO_CACHE, retries=retries)


# The stage functions and the task each runs as; the release retries once on I/O errors.
TASKS: dict[Callable[..., Any], Task] = {
    plan_input: _as_task(plan_input, "plan-input"),
    scrub_slice: _as_task(scrub_slice, "scrub-partition"),
    extract_facets_slice: _as_task(extract_facets_slice, "facet-partition"),
    measure_facet_quality: _as_task(measure_facet_quality, "facet-quality"),
    embed_slice: _as_task(embed_slice, "embed-partition"),
    build_trees: _as_task(build_trees, "cluster-facets"),
    assign_increment: _as_task(assign_increment, "assign-to-build"),
    release_run: _as_task(release_run, "gate-and-release", retries=1),
}


class PrefectTasks:
    """Each stage call is a task run: submitted together when the flow runs on Dask,
    else run one after another in this process (models load once per process)."""

    def __init__(self) -> None:
        context = FlowRunContext.get()
        self.kind = (
            "dask"
            if context is not None and type(context.task_runner).__name__ == "DaskTaskRunner"
            else "default"
        )
        self.concurrent = self.kind == "dask"

    def run(self, stage: Callable[..., T], **kwargs: Any) -> T:
        return cast(T, TASKS[stage](**kwargs))

    def map(self, stage: Callable[..., T], calls: list[dict[str, Any]]) -> list[T]:
        if self.concurrent:
            futures = [TASKS[stage].submit(**kwargs) for kwargs in calls]
            return [cast(T, future.result()) for future in futures]
        return [cast(T, TASKS[stage](**kwargs)) for kwargs in calls]


def dask_task_runner(runner: RunnerConfig) -> TaskRunner:
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
    # A plain `str` parameter: a served flow is loaded from its entrypoint, where Prefect
    # cannot resolve the `Mode` alias to validate it.
    if mode not in get_args(Mode):
        raise ValueError(f"mode must be one of {', '.join(get_args(Mode))}, not {mode!r}")
    return run_pipeline(
        load_config(config_path),
        input_paths,
        Path(output_dir),
        limit,
        config_path,
        mode=cast(Mode, mode),
        runner=PrefectTasks(),
    )
