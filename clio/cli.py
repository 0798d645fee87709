"""The `clio` command line.

`clio run` runs the Prefect flow; every file a run writes (both stores, logs,
manifests, Prefect's home) goes under `--output-dir`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clio.run_report import render_report

if TYPE_CHECKING:
    from clio.config import RunConfig

DEFAULT_OUTPUT_DIR = "outputs"
SAMPLE_DEFAULT_LIMIT = 500


def _prepare_environment(output_dir: Path) -> None:
    """Offline, private Prefect and model settings; must run before Prefect is imported."""
    output_dir.mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str((output_dir / "prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "clio",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key, value in defaults.items():
        if key == "PREFECT_HOME" or key not in os.environ:
            os.environ[key] = value


def _log_to_file(output_dir: Path) -> Path:
    """The run's log file, for its owner only: a log line may quote anything."""
    from clio.store import PRIVATE_FILE_MODE, make_private_dir

    log_dir = output_dir / "logs"
    make_private_dir(log_dir)
    path = log_dir / "clio.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    os.chmod(path, PRIVATE_FILE_MODE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("clio", "prefect"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if name == "clio":
            logger.setLevel(logging.INFO)
    return path


ALL = "all"


def _limit(value: str) -> int | str:
    """`--limit N` or `--limit all` (0 also means all)."""
    if value.lower() in (ALL, "0"):
        return ALL
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"--limit takes a positive number or 'all', not {value!r}")
    return number


def _resolve_limit(limit: int | str | None, has_input: bool) -> int | None:
    if limit is None:
        return None if has_input else SAMPLE_DEFAULT_LIMIT
    return None if limit == ALL else int(limit)


# -- commands -----------------------------------------------------------------


def _checked_run_config(args: argparse.Namespace) -> RunConfig | None:
    """`clio run`'s config, or None after saying why the run cannot start (the config does
    not load, `CLIO_PROGRESS_SECONDS` is not a number of seconds, or an `--input` file is
    missing)."""
    from clio.config import ConfigError, load_config
    from clio.progress import progress_interval

    try:
        config = load_config(args.config)
        progress_interval()
    except (ConfigError, ValueError) as exc:
        print(f"clio run: {exc}", file=sys.stderr)
        return None
    for path in args.input or []:
        if not Path(path.split("::")[0]).exists():
            print(f"clio run: input not found: {path}", file=sys.stderr)
            return None
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from clio.ingest import sample_path

    if args.estimate:
        return cmd_estimate(args)
    if args.json:
        print("clio run: --json goes with --estimate", file=sys.stderr)
        return 2
    output_dir = Path(args.output_dir)
    _prepare_environment(output_dir)
    config = _checked_run_config(args)  # fail fast with a clear message, before Prefect
    if config is None:
        return 2
    mode = _mode(args)
    if args.input:
        inputs = [str(Path(p)) for p in args.input]
    else:  # a rebuild needs no new input: it re-clusters what the private store holds
        inputs = [] if mode == "rebuild" else [str(sample_path())]
    limit = _resolve_limit(args.limit, bool(args.input))
    log_path = _log_to_file(output_dir)

    from clio.dp_ledger import DPBudgetSpent

    try:
        with _prefect_api(output_dir):
            from flows.pipeline import flow_for

            manifest = flow_for(config)(
                input_paths=inputs,
                output_dir=str(output_dir),
                config_path=args.config,
                limit=limit,
                mode=mode,
            )
    except DPBudgetSpent as exc:
        print(f"clio run: {exc}", file=sys.stderr)
        return 2
    print(render_report(manifest))
    print(f"\nlog: {log_path}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    """`clio run --estimate`: the run's expected LLM calls, tokens, time and cost, from the
    input and config alone. No LLM call, no scrubbing, nothing written (not even the
    output directory, whose private store is only read, for cached answers)."""
    from clio.ingest import IngestError, sample_path
    from clio.pipeline.estimate import estimate_run, render_estimate

    if _mode(args) != "full":
        print(
            "clio run --estimate: estimates a full build; drop --incremental/--rebuild",
            file=sys.stderr,
        )
        return 2
    config = _checked_run_config(args)
    if config is None:
        return 2
    inputs = [str(Path(p)) for p in args.input] if args.input else [str(sample_path())]
    limit = _resolve_limit(args.limit, bool(args.input))
    try:
        estimate = estimate_run(config, inputs, limit, Path(args.output_dir))
    except IngestError as exc:
        print(f"clio run --estimate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(estimate.as_dict(), indent=2) if args.json else render_estimate(estimate))
    return 0


@contextmanager
def _prefect_api(output_dir: Path) -> Iterator[None]:
    """The Prefect API a run reports to: the configured one (PREFECT_API_URL, or a test
    harness's), else a server of its own for this run (no services), which ends with this
    process even when the process is killed. Prefect's ephemeral server would not."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from clio.prefect_server import local_prefect_server

    log_path = output_dir / "logs" / "prefect-server.log"
    with (
        local_prefect_server(log_path, services=False) as url,
        temporary_settings(updates={PREFECT_API_URL: url}),
    ):
        # Prefect read its settings at import; worker processes (Dask) read them here.
        os.environ["PREFECT_API_URL"] = url
        try:
            yield
        finally:
            del os.environ["PREFECT_API_URL"]
            _drain_prefect_clients()


def _drain_prefect_clients(timeout_seconds: float = 10.0) -> None:
    """Send Prefect's queued logs and events while this run's server still listens:
    drained at exit instead, they retry against a stopped server for about a minute."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=timeout_seconds, at_exit=False)


def cmd_report(args: argparse.Namespace) -> int:
    """The operator runs `clio report`, so it reads the operator manifest under `private/`;
    where only the public one is at hand (an output directory shared without `private/`)
    it reports that one's shorter account."""
    from clio.pipeline.paths import RunPaths

    paths = RunPaths(Path(args.output_dir))
    path = paths.operator_manifest if paths.operator_manifest.exists() else paths.manifest
    if not path.exists():
        print(f"clio report: no run found ({paths.manifest} does not exist)", file=sys.stderr)
        return 1
    manifest = json.loads(path.read_text(encoding="utf-8"))
    print(json.dumps(manifest, indent=2) if args.json else render_report(manifest, paths.released))
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from clio.released import NotAReleasedStore
    from clio.sql import (
        LimitExceeded,
        QueryLimits,
        ReadOnlyError,
        format_rows,
        run_query,
        write_parquet,
    )

    db = Path(args.db)
    if not db.exists():
        print(f"clio sql: no released store at {db}", file=sys.stderr)
        return 1
    if args.format == "parquet" and not args.out:
        print("clio sql: --format parquet needs --out FILE", file=sys.stderr)
        return 2
    limits = QueryLimits(args.memory_limit, args.threads, args.max_temp_size, args.timeout)
    try:
        if args.format == "parquet":
            n = write_parquet(db, args.query, Path(args.out), limits)
            print(f"wrote {n} rows to {args.out}")
            return 0
        columns, rows = run_query(db, args.query, limits)
    except (ReadOnlyError, NotAReleasedStore) as exc:
        print(f"clio sql: {exc}", file=sys.stderr)
        return 2
    except LimitExceeded as exc:
        print(f"clio sql: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # a SQL error is the user's to fix: show it, no traceback
        print(f"clio sql: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    try:
        print(format_rows(columns, rows, args.format))
    except BrokenPipeError:  # e.g. `clio sql ... | head`
        sys.stderr.close()
    return 0


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            number = 0
        if number <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, not {value!r}")
        return number

    return parse


def cmd_audit_release(args: argparse.Namespace) -> int:
    from clio.release_audit import NotAReleasedStore, audit_release, findings_json, format_findings

    try:
        findings = audit_release(Path(args.db))
    except NotAReleasedStore as exc:
        print(f"clio audit-release: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(findings_json(findings), indent=2) if args.json else format_findings(findings))
    return 1 if findings else 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from clio.ingest import sample_path
    from clio.prefect_server import local_prefect_server

    output_dir = Path(args.output_dir)
    _prepare_environment(output_dir)
    _log_to_file(output_dir)
    if args.input:
        inputs = [str(Path(p).resolve()) for p in args.input]
    else:
        inputs = [] if _mode(args) == "rebuild" else [str(sample_path())]
    parameters = {
        "input_paths": inputs,
        "output_dir": str(output_dir.resolve()),
        "config_path": str(Path(args.config).resolve()) if args.config else None,
        "limit": _resolve_limit(args.limit, bool(args.input)),
        "mode": _mode(args),
    }
    own_server = "PREFECT_API_URL" not in os.environ
    server = (
        local_prefect_server(output_dir / "logs" / "prefect-server.log")
        if own_server
        else nullcontext(os.environ["PREFECT_API_URL"])
    )
    with server as api_url:
        os.environ["PREFECT_API_URL"] = api_url
        print(f"Prefect API: {api_url}  (schedule: {args.cron}; Ctrl-C stops)", flush=True)
        from flows.pipeline import clio_run

        # One run at a time: the private store takes one writer, so a run that comes due
        # while the last is still going waits for it.
        clio_run.serve(name=args.name, cron=args.cron, parameters=parameters, limit=1)
    return 0


def _mode(args: argparse.Namespace) -> str:
    if getattr(args, "incremental", False):
        return "incremental"
    return "rebuild" if getattr(args, "rebuild", False) else "full"


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from clio.config import ConfigError, RunConfig, load_config
    from clio.config_docs import render_config_docs

    if args.docs:
        print(render_config_docs(RunConfig))
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"clio config: {exc}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    return 0


# -- report -------------------------------------------------------------------


def _add_mode_arguments(command: argparse.ArgumentParser) -> None:
    modes = command.add_mutually_exclusive_group()
    modes.add_argument(
        "--incremental",
        action="store_true",
        help="add the input's new conversations to the last full build in --output-dir: "
        "conversations already processed (same content) are skipped, new ones are assigned "
        "to the nearest existing base cluster (within incremental.max_distance) and the "
        "counts re-released through the gate; without a previous build, a full build",
    )
    modes.add_argument(
        "--rebuild",
        action="store_true",
        help="full build over every conversation of the last build (with those added "
        "incrementally and those left unassigned) plus any --input (default: no new input)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clio",
        description="Privacy-preserving conversation insights: scrub personal data, extract "
        "facets with an LLM, cluster them into a named hierarchy and release only aggregates "
        "that pass the privacy gate.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the whole pipeline (Prefect flow) and write the released store",
        description="Run ingest → scrub → facets → embed → cluster → describe → hierarchy → "
        "gate → release: a full build over the input, or with --incremental an addition to "
        "the last full build. Everything the run writes goes under --output-dir: "
        "private/private.duckdb and private/manifest.json (never share), insights.duckdb "
        "(the release), manifest.json (the public manifest), logs/ and prefect/ (Prefect's "
        "home).",
    )
    run.add_argument(
        "--config",
        metavar="FILE",
        help="YAML config (default: built-in defaults, as in configs/default.yaml)",
    )
    run.add_argument(
        "--input",
        metavar="PATH",
        action="append",
        help="input file or folder (.jsonl, .jsonl.gz, .json, .csv, .parquet, or "
        "FILE.duckdb::TABLE); repeat for several. Default: the HH-RLHF sample shipped with clio "
        "(it has no user ids, which the default config quarantines: run it with "
        "--config configs/sample.yaml)",
    )
    run.add_argument(
        "--limit",
        type=_limit,
        default=None,
        metavar="N",
        help=f"process at most N conversations; 'all' for no limit (default: "
        f"{SAMPLE_DEFAULT_LIMIT} for the shipped sample, all for --input)",
    )
    run.add_argument(
        "--output-dir",
        default=DEFAULT_OUTPUT_DIR,
        metavar="DIR",
        help="where the run writes everything (default: outputs/)",
    )
    _add_mode_arguments(run)
    run.add_argument(
        "--estimate",
        action="store_true",
        help="print the run's expected LLM calls, tokens, time on this backend and cost "
        "(llm.price_table) without running it: no LLM call, no scrubbing, nothing written; "
        "answers already cached in --output-dir's private store are counted as such",
    )
    run.add_argument("--json", action="store_true", help="with --estimate: print it as JSON")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser(
        "report",
        help="print the last run's report",
        description="Print the report of the last run in --output-dir. It reads the operator "
        "manifest, DIR/private/manifest.json (every count, LLM usage, timings, inputs and the "
        "config; never share it); without one, the public DIR/manifest.json, which holds "
        "only versions, thresholds and what was released and suppressed.",
    )
    report.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, metavar="DIR")
    report.add_argument(
        "--json", action="store_true", help="print the whole manifest it read as JSON"
    )
    report.set_defaults(func=cmd_report)

    sql = sub.add_parser(
        "sql",
        help="run a read-only SQL query against the released store",
        description="Run one read-only query (SELECT/WITH/DESCRIBE/SHOW) against the released "
        "store. Tables: runs, clusters, facet_breakdowns; see README for views and examples. "
        "The private store is refused. Each query runs within limits on memory, threads, "
        "spill disk and time.",
        epilog="Exit codes: 0 done; 1 no store or a SQL error; 2 refused (a statement that "
        "writes, a file that is not a released store, bad flags); 3 stopped by a limit.",
    )
    sql.add_argument("query", help='e.g. "SELECT name, n_users FROM clusters ORDER BY 2 DESC"')
    sql.add_argument(
        "--db",
        default=str(Path(DEFAULT_OUTPUT_DIR) / "insights.duckdb"),
        metavar="PATH",
        help="released store (default: outputs/insights.duckdb)",
    )
    sql.add_argument(
        "--format",
        choices=["table", "csv", "json", "parquet"],
        default="table",
        help="output format (parquet writes --out FILE)",
    )
    sql.add_argument("--out", metavar="FILE", help="file to write with --format parquet")
    sql.add_argument(
        "--memory-limit",
        default="1GB",
        metavar="SIZE",
        help="memory DuckDB may use for the query, e.g. 512MB, 4GB (default: 1GB)",
    )
    sql.add_argument(
        "--threads",
        type=_positive(int),
        default=2,
        metavar="N",
        help="threads DuckDB may use (default: 2)",
    )
    sql.add_argument(
        "--max-temp-size",
        default=None,
        metavar="SIZE",
        help="let a query larger than --memory-limit spill up to SIZE to a private temporary "
        "directory (removed afterwards), e.g. 2GB (default: no spilling; such a query fails)",
    )
    sql.add_argument(
        "--timeout",
        type=_positive(float),
        default=60.0,
        metavar="SECONDS",
        help="stop the query after this many seconds (default: 60)",
    )
    sql.set_defaults(func=cmd_sql)

    from clio.release_audit import ATTACKS

    audit = sub.add_parser(
        "audit-release",
        help="run the attack suite on a released store; exit 1 if it recovers a small group",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Attack a released store (every run in it) the way an analyst with SQL "
        "could,\nand list every figure recovered about a group smaller than the thresholds "
        "of\nthe run that released it (runs.min_users, runs.min_conversations). Attacks:\n\n"
        + "\n".join(
            textwrap.fill(text, 88, initial_indent=f"  {name:16} ", subsequent_indent=" " * 19)
            for name, (_, text) in ATTACKS.items()
        )
        + "\n\nExit 0: no findings; 1: findings (listed); 2: no released store at --db.",
    )
    audit.add_argument(
        "--db",
        default=str(Path(DEFAULT_OUTPUT_DIR) / "insights.duckdb"),
        metavar="PATH",
        help="released store (default: outputs/insights.duckdb)",
    )
    audit.add_argument("--json", action="store_true", help="the verdict and findings as JSON")
    audit.set_defaults(func=cmd_audit_release)

    schedule = sub.add_parser(
        "schedule",
        help="serve the flow on a cron schedule (Prefect deployment)",
        description="Create a Prefect deployment of the clio flow and serve it on a cron "
        "schedule in this process (Ctrl-C stops it). Without PREFECT_API_URL it starts a "
        "local Prefect server on 127.0.0.1 with its database under --output-dir/prefect. "
        "Runs are resumable and idempotent.",
    )
    schedule.add_argument("--cron", required=True, help='cron expression, e.g. "0 3 * * *"')
    schedule.add_argument("--name", default="clio-scheduled", help="deployment name")
    schedule.add_argument("--config", metavar="FILE", help="YAML config")
    schedule.add_argument("--input", metavar="PATH", action="append", help="input path(s)")
    schedule.add_argument("--limit", type=_limit, default=None, metavar="N")
    schedule.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, metavar="DIR")
    _add_mode_arguments(schedule)
    schedule.set_defaults(func=cmd_schedule)

    config = sub.add_parser(
        "config",
        help="print the effective config, or the documentation of every setting",
        description="Validate a config and print it with every default filled in.",
    )
    config.add_argument("--config", metavar="FILE", help="YAML config to validate")
    config.add_argument("--docs", action="store_true", help="print every setting's documentation")
    config.set_defaults(func=cmd_config)

    from clio.web.commands import add_web_commands

    add_web_commands(sub)
    from clio.evaluation.commands import add_eval_commands

    add_eval_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("clio").setLevel(logging.INFO)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
