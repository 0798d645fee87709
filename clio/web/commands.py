"""`clio serve` and `clio export-html` (argparse wiring only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DB = str(Path("outputs") / "insights.duckdb")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def add_web_commands(sub: argparse._SubParsersAction) -> None:
    """Register the web subcommands on the main parser."""
    serve = sub.add_parser(
        "serve",
        help="browse the released store in a web page (read-only, local by default)",
        description="Serve the safety team's web page over the released store: the cluster "
        "tree per facet with sizes and concern levels, cluster pages with breakdowns and "
        "their history across runs, a 2-D map, search, and a run picker (?run=<run_id>). "
        "The store is opened read-only; nothing but released aggregates can be shown. "
        "Everything is served locally (no CDN). Binds 127.0.0.1 unless --host says otherwise.",
    )
    serve.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH",
        help=f"released store to serve (default: {DEFAULT_DB})",
    )
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default: {DEFAULT_HOST}, this machine only); another "
        "address, e.g. 0.0.0.0, makes the page reachable from other hosts",
    )
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})"
    )
    serve.set_defaults(func=cmd_serve)

    export = sub.add_parser(
        "export-html",
        help="write the web page's views as one self-contained HTML file",
        description="Write one HTML file with the same views as `clio serve` (tree, cluster "
        "pages, map, search, every released run) for sharing where no server can run. The "
        "released data is embedded in the file; it opens from disk with no server and no "
        "network.",
    )
    export.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH",
        help=f"released store to export (default: {DEFAULT_DB})",
    )
    export.add_argument("--out", required=True, metavar="FILE", help="HTML file to write")
    export.set_defaults(func=cmd_export_html)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from clio.web.app import create_app, is_loopback
    from clio.web.released import NotAReleasedStore

    try:
        # A loopback server only answers requests addressed to a loopback name or
        # address, so a web page elsewhere cannot reach it by DNS rebinding.
        app = create_app(Path(args.db), loopback_only=is_loopback(args.host))
    except NotAReleasedStore as exc:
        print(f"clio serve: {exc}", file=sys.stderr)
        return 1
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"clio serve: http://{shown_host}:{args.port}/  (released store {args.db}; Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_export_html(args: argparse.Namespace) -> int:
    from clio.web.export import OutputRefused, export_html
    from clio.web.released import NotAReleasedStore

    try:
        summary = export_html(Path(args.db), Path(args.out))
    except NotAReleasedStore as exc:
        print(f"clio export-html: {exc}", file=sys.stderr)
        return 1
    except OutputRefused as exc:
        print(f"clio export-html: {exc}", file=sys.stderr)
        return 2
    print(
        f"clio export-html: wrote {summary.path} ({summary.n_bytes:,} bytes; "
        f"{summary.n_runs} runs, {summary.n_clusters} cluster rows)"
    )
    return 0
