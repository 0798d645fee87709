"""The web page over the released store: server-rendered pages, read-only.

Routes (everything else is a 404): `/` (the tree per facet, with sort and
filters), `/cluster/<cluster_id>`, `/changes`, `/map`, `/search`, and
`/static/<name>` for a fixed set of packaged files. Every page takes
`?run=<run_id>` (default: the latest run); an unknown run or cluster id is a
404. Data comes only from `ReleasedStore`, which opens the released file
read-only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from clio.released import CONCERNING_AT, RunRow
from clio.web import model
from clio.web.released import NotAReleasedStore, ReleasedStore

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {
    "clio.css": "text/css; charset=utf-8",
    "clio.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
LOOPBACK_NAMES = ("localhost",)
TEMPLATES_DIR = Path(__file__).with_name("templates")


def is_loopback(host: str) -> bool:
    """Whether a Host header (or a bind address) names this machine's loopback interface:
    `localhost`, any address in 127.0.0.0/8, or `::1`, bracketed or not, with or without
    a port. A loopback server answers only such requests, so a page elsewhere that
    rebinds its own name to 127.0.0.1 (DNS rebinding) gets a 400, not the data."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6] or [v6]:port
        host, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not _is_port(rest)):
            return False
    elif host.count(":") == 1:  # name:port or v4:port; more colons is a bare IPv6 address
        host, _, port = host.partition(":")
        if not _is_port(":" + port):
            return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_port(text: str) -> bool:
    return len(text) > 1 and text[0] == ":" and text[1:].isdigit()


def static_file(name: str) -> bytes:
    return resources.files("clio.web").joinpath("static", name).read_bytes()


def create_app(db_path: Path | str, loopback_only: bool = False) -> FastAPI:
    """The web app over the released store at `db_path` (checked now, read per request).

    `loopback_only` (for a server bound to a loopback address) answers only requests
    whose Host header `is_loopback`, which guards against DNS rebinding; otherwise
    any Host is accepted.
    """
    store = ReleasedStore(db_path)
    # The only files served: read once, looked up by exact name, so no request
    # path can reach the file system.
    static = {name: static_file(name) for name in STATIC_TYPES}
    templates = _templates()
    app = FastAPI(
        title="clio insights", docs_url=None, redoc_url=None, openapi_url=None
    )  # no API docs: they load scripts from a CDN

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if loopback_only and not is_loopback(request.headers.get("host", "")):
            response: Response = PlainTextResponse("Invalid host header", status_code=400)
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if exc.status_code in (400, 404) else "That did not work."
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = "There is no such page."
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": exc.status_code, "message": message, "runs": [], "run": None},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    # Starlette answers unhandled errors outside the middleware: add the headers here.
    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        unreadable = isinstance(exc, NotAReleasedStore)
        status = 503 if unreadable else 500
        return templates.TemplateResponse(
            request,
            "error.html",
            {
                "status": status,
                "message": "The released store cannot be read right now."
                if unreadable
                else "Something went wrong on the server.",
                "runs": [],
                "run": None,
            },
            status_code=status,
            headers=SECURITY_HEADERS,
        )

    def get(path: str, **kwargs: Any) -> Callable:
        # HEAD too, as any web server answers it (FastAPI's get() does not).
        return app.api_route(path, methods=["GET", "HEAD"], **kwargs)

    def page(request: Request, name: str, context: dict[str, Any]) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context)

    @get("/", response_class=HTMLResponse)
    def index(
        request: Request,
        run: str | None = None,
        sort: str | None = None,
        min_users: str | None = None,
        min_concern: str | None = None,
    ) -> HTMLResponse:
        picked = _pick_run(store, run)
        tree_filter = _tree_filter(sort, min_users, min_concern)
        clusters = store.clusters(picked.run.run_id) if picked.run else []
        forest = model.build_forest(clusters, tree_filter)
        facet_sizes = {facet: sum(1 for c in clusters if c.facet == facet) for facet in forest}
        # Bars are relative to the facet's largest top cluster, filtered or not.
        top_share = {
            facet: max(
                (c.share for c in clusters if c.facet == facet and c.parent_id is None), default=0.0
            )
            for facet in forest
        }
        concerning = model.sort_clusters(
            [c for c in clusters if c.concern_mean is not None and c.concern_mean >= CONCERNING_AT],
            "concern",
        )
        return page(
            request,
            "index.html",
            {
                **picked.context("/", _filter_params(tree_filter)),
                "nav": "tree",
                "clusters": clusters,
                "forest": forest,
                "facet_sizes": facet_sizes,
                "top_share": top_share,
                "filter": tree_filter,
                "concerning": concerning[:8],
                "n_concerning": len(concerning),
            },
        )

    @get("/cluster/{cluster_id}", response_class=HTMLResponse)
    def cluster_page(request: Request, cluster_id: str, run: str | None = None) -> HTMLResponse:
        picked = _pick_run(store, run)
        if picked.run is None:
            raise HTTPException(404, "No run has been released yet.")
        clusters = store.clusters(picked.run.run_id)
        by_id = {c.cluster_id: c for c in clusters}
        cluster = by_id.get(cluster_id)
        history = store.history(cluster_id).get(cluster_id, [])
        if cluster is None:
            if history:
                runs = ", ".join(point.run_id for point in history)
                raise HTTPException(
                    404,
                    f"This cluster was not released in run {picked.run.run_id} "
                    f"(it was in: {runs}).",
                )
            raise HTTPException(404, "There is no released cluster with this id.")
        children = model.sort_clusters(
            [c for c in clusters if c.parent_id == cluster.cluster_id], "users"
        )
        cells = store.breakdowns(picked.run.run_id, cluster.cluster_id)
        return page(
            request,
            "cluster.html",
            {
                **picked.context(f"/cluster/{quote(cluster.cluster_id, safe='')}", {}),
                "nav": "tree",
                "cluster": cluster,
                "ancestors": model.ancestors(cluster, by_id),
                "children": children,
                "top_child_share": max((c.share for c in children), default=0.0),
                "charts": model.breakdown_charts(cluster, cells),
                "history": history,
                "history_max_users": max((p.n_users for p in history), default=0),
            },
        )

    @get("/changes", response_class=HTMLResponse)
    def changes_page(request: Request, run: str | None = None) -> HTMLResponse:
        picked = _pick_run(store, run)
        if picked.run is None:
            raise HTTPException(404, "No run has been released yet.")
        previous, changes = store.changes(picked.run.run_id)
        return page(
            request,
            "changes.html",
            {
                **picked.context("/changes", {}),
                "nav": "changes",
                "previous_run_id": previous,
                "groups": model.change_groups(changes),
                "changes_note": model.CHANGES_NOTE,
                "no_previous_run": model.NO_PREVIOUS_RUN,
            },
        )

    @get("/map", response_class=HTMLResponse)
    def map_page(
        request: Request,
        run: str | None = None,
        facet: str | None = None,
        level: str | None = None,
    ) -> HTMLResponse:
        picked = _pick_run(store, run)
        clusters = store.clusters(picked.run.run_id) if picked.run else []
        levels = model.map_levels(clusters)
        chosen_facet = facet if facet is not None else _default_facet(levels)
        if chosen_facet is not None and chosen_facet not in levels:
            raise HTTPException(404, "No cluster of this facet has a map position in this run.")
        chosen_level = None
        if chosen_facet is not None:
            chosen_level = _parse_int(level, "level") if level else levels[chosen_facet][0]
            if chosen_level not in levels[chosen_facet]:
                raise HTTPException(404, "No cluster of this level has a map position.")
        points = (
            model.map_points(clusters, chosen_facet, chosen_level)
            if chosen_facet is not None and chosen_level is not None
            else []
        )
        keep = {"facet": chosen_facet, "level": chosen_level} if chosen_facet else {}
        return page(
            request,
            "map.html",
            {
                **picked.context("/map", keep),
                "nav": "map",
                "levels": levels,
                "facet": chosen_facet,
                "level": chosen_level,
                "points": points,
                "width": model.MAP_WIDTH,
                "height": model.MAP_HEIGHT,
            },
        )

    @get("/search", response_class=HTMLResponse)
    def search_page(request: Request, q: str = "", run: str | None = None) -> HTMLResponse:
        picked = _pick_run(store, run)
        clusters = store.clusters(picked.run.run_id) if picked.run else []
        results = model.search_clusters(clusters, q)
        by_id = {c.cluster_id: c for c in clusters}
        return page(
            request,
            "search.html",
            {
                **picked.context("/search", {"q": q} if q else {}),
                "nav": "search",
                "q": q,
                "results": results,
                "paths": {c.cluster_id: model.ancestors(c, by_id) for c in results},
            },
        )

    @get("/static/{name}")
    def static_asset(name: str) -> Response:
        if name not in static:
            raise HTTPException(404, "There is no such page.")
        return Response(
            static[name],
            media_type=STATIC_TYPES[name],
            headers={"Cache-Control": "public, max-age=3600"},
        )

    return app


# -- helpers -----------------------------------------------------------------------


@dataclass(frozen=True)
class PickedRun:
    runs: list[RunRow]
    run: RunRow | None

    def context(self, path: str, keep: dict[str, Any]) -> dict[str, Any]:
        """What the layout needs: the run picker (which stays on `path` with `keep`)."""
        return {
            "runs": self.runs,
            "run": self.run,
            "latest": self.runs[0] if self.runs else None,
            "picker_action": path,
            "keep": {k: v for k, v in keep.items() if v not in (None, "")},
        }


def _pick_run(store: ReleasedStore, run_id: str | None) -> PickedRun:
    runs = store.runs()
    if not run_id:
        return PickedRun(runs, runs[0] if runs else None)
    for run in runs:
        if run.run_id == run_id:
            return PickedRun(runs, run)
    raise HTTPException(404, "There is no released run with this id.")


def _tree_filter(
    sort: str | None, min_users: str | None, min_concern: str | None
) -> model.TreeFilter:
    if sort and sort not in model.SORT_KEYS:
        raise HTTPException(400, f"sort must be one of {', '.join(model.SORT_KEYS)}.")
    users = _parse_int(min_users, "min_users") if min_users else 0
    concern = None
    if min_concern:
        try:
            concern = float(min_concern)
        except ValueError:
            raise HTTPException(400, "min_concern must be a number from 1 to 5.") from None
        if not 1 <= concern <= 5:
            raise HTTPException(400, "min_concern must be a number from 1 to 5.")
    return model.TreeFilter(sort=sort or "users", min_users=max(0, users), min_concern=concern)  # type: ignore[arg-type]


def _filter_params(tree_filter: model.TreeFilter) -> dict[str, Any]:
    return {
        "sort": tree_filter.sort if tree_filter.sort != "users" else None,
        "min_users": tree_filter.min_users or None,
        "min_concern": _number(tree_filter.min_concern) if tree_filter.min_concern else None,
    }


def _parse_int(value: str | None, name: str) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number.") from None


def _default_facet(levels: dict[str, list[int]]) -> str | None:
    if not levels:
        return None
    return "request" if "request" in levels else next(iter(levels))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def link(path: str, **params: Any) -> str:
    """`path?query` with the given parameters (None and "" left out)."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def cluster_link(cluster_id: str, run_id: str | None = None) -> str:
    return link(f"/cluster/{quote(cluster_id, safe='')}", run=run_id)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.globals.update(
        link=link,
        cluster_link=cluster_link,
        concern_level=model.concern_level,
        concern_text=model.concern_text,
        concern_labels=model.CONCERN_LABELS,
        sort_labels=model.SORT_LABELS,
    )
    env.filters.update(pct=_pct, count=_count, when=model.format_when, bar=_bar)
    return templates


def _pct(value: float | None) -> str:
    if value is None:
        return "–"
    percent = value * 100
    if 0 < percent < 0.1:
        return "<0.1%"
    return f"{percent:.1f}%"


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _bar(value: float | None, top: float | None = 1.0) -> float:
    """Bar width in 0-100 for an SVG rect, relative to `top`."""
    if not value or not top:
        return 0.0
    return round(min(1.0, value / top) * 100, 2)
