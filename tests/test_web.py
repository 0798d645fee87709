"""The web page over the released store: views, run picker, 404s, read-only, headers, export."""

from __future__ import annotations

import html
import http.client
import json
import re
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from clio.cli import build_parser, main
from clio.release import write_release
from clio.released import ReleasedBreakdown, ReleasedCluster, RunRow
from clio.web import model
from clio.web.app import SECURITY_HEADERS, create_app
from clio.web.export import export_html, script_json
from clio.web.released import NotAReleasedStore, ReleasedStore
from tests.ungated import ungated_result
from tests.web_fixtures import NEW_IN_SECOND_RUN, Release, build_release, running_server

ROOT = Path(__file__).resolve().parents[1]
CANARY = "CANARY-PRIVATE-7f3a9c"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    outputs = tmp_path_factory.mktemp("outputs")
    built = build_release(outputs / "insights.duckdb")
    # A private store where the pipeline keeps it, with a canary no response may carry.
    private = outputs / "private" / "private.duckdb"
    private.parent.mkdir()
    connection = duckdb.connect(str(private))
    connection.execute("CREATE TABLE conversations (conversation_id VARCHAR, text VARCHAR)")
    connection.execute("INSERT INTO conversations VALUES ('c1', $1)", [CANARY])
    connection.close()
    return built


@pytest.fixture(scope="module")
def client(release) -> TestClient:
    return TestClient(create_app(release.path))


def esc(text: str) -> str:
    """Text as the templates escape it."""
    return str(escape(text))


def cluster_ids(page: str) -> list[str]:
    return re.findall(r'data-cluster-id="([^"]+)"', page)


def first_run(release: Release) -> str:
    return release.runs[0][0].run_id


# -- the tree -------------------------------------------------------------------------


def test_index_shows_every_cluster_of_the_latest_run_as_a_tree(client, release):
    page = client.get("/").text
    latest = release.clusters()
    assert sorted(cluster_ids(page)) == sorted(latest)
    for cluster in latest.values():
        assert esc(cluster.name) in page
    # A parent's details element contains its children's rows.
    parent = page.index('data-cluster-id="request-L1-000"')
    end = page.index("</details>", parent)
    assert 'data-cluster-id="request-L0-000"' in page[parent:end]
    assert 'data-cluster-id="request-L0-001"' in page[parent:end]


def test_tree_rows_show_sizes_share_and_concern(client, release):
    page = client.get("/").text
    cluster = release.clusters()["request-L2-002"]
    row = page[page.index('data-cluster-id="request-L2-002"') :]
    row = row[: row.index("</summary>")]
    assert f">{cluster.n_users:,}<" in row
    assert f">{cluster.n_conversations:,}<" in row
    assert f"{cluster.share * 100:.1f}%" in row
    level = model.concern_level(cluster.concern_mean)
    assert f"concern-{level}" in row
    assert model.concern_text(cluster.concern_mean) in row


def test_run_picker_selects_a_run(client, release):
    old = client.get("/", params={"run": first_run(release)}).text
    assert sorted(cluster_ids(old)) == sorted(release.clusters(0))
    assert NEW_IN_SECOND_RUN not in cluster_ids(old)
    assert NEW_IN_SECOND_RUN in cluster_ids(client.get("/").text)
    options = re.findall(r'<option value="(run-[^"]+)"( selected)?', old)
    assert options == [("run-2024-05-08", ""), ("run-2024-05-01", " selected")]


@pytest.mark.parametrize(
    ("params", "accepts"),
    [
        ({"min_concern": "4"}, lambda c: c.concern_mean is not None and c.concern_mean >= 4),
        ({"min_users": "150"}, lambda c: c.n_users >= 150),
        (
            {"min_users": "100", "min_concern": "2"},
            lambda c: c.n_users >= 100 and c.concern_mean is not None and c.concern_mean >= 2,
        ),
    ],
)
def test_filters_keep_matches_and_the_path_to_them(client, release, params, accepts):
    clusters = release.clusters()
    matching = {cid for cid, c in clusters.items() if accepts(c)}
    assert matching  # the fixture has matches for every case
    paths = set()
    for cid in matching:
        parent = clusters[cid].parent_id
        while parent is not None:
            paths.add(parent)
            parent = clusters[parent].parent_id
    page = client.get("/", params=params).text
    assert set(cluster_ids(page)) == matching | paths
    dimmed = set(
        re.findall(r'data-cluster-id="([^"]+)"[^>]*>\s*<(?:summary|div) class="row [^"]*dim', page)
    )
    assert dimmed == paths - matching


@pytest.mark.parametrize(
    ("sort", "key"),
    [
        ("users", lambda c: (-c.n_users, -c.n_conversations, c.cluster_id)),
        ("conversations", lambda c: (-c.n_conversations, -c.n_users, c.cluster_id)),
        ("concern", lambda c: (-(c.concern_mean or 0), -c.n_users, c.cluster_id)),
        ("name", lambda c: (c.name.casefold(), c.cluster_id)),
    ],
)
def test_sort_orders_siblings(client, release, sort, key):
    page = client.get("/", params={"sort": sort}).text
    order = cluster_ids(page)
    roots = [c for c in release.clusters().values() if c.parent_id is None and c.facet == "request"]
    found = [cid for cid in order if cid in {c.cluster_id for c in roots}]
    assert found == [c.cluster_id for c in sorted(roots, key=key)]


@pytest.mark.parametrize(
    "params",
    [{"sort": "bogus"}, {"min_users": "many"}, {"min_concern": "9"}, {"min_concern": "x"}],
)
def test_bad_filter_values_are_a_clear_400(client, params):
    response = client.get("/", params=params)
    assert response.status_code == 400
    assert "text/html" in response.headers["content-type"]
    assert response.headers["X-Frame-Options"] == "DENY"


# -- the cluster page -----------------------------------------------------------------


def test_cluster_page_shows_what_was_released(client, release):
    cluster = release.clusters()["request-L1-004"]
    page = client.get("/cluster/request-L1-004").text
    assert f'<h1 id="cluster-name">{esc(cluster.name)}</h1>' in page
    assert esc(cluster.description) in page
    for keyword in cluster.keywords:
        assert f"<li>{esc(keyword)}</li>" in page
    children = [c for c in release.clusters().values() if c.parent_id == "request-L1-004"]
    children_table = page[
        page.index('id="children"') : page.index("</table>", page.index('id="children"'))
    ]
    assert re.findall(r'href="/cluster/([^"?]+)', children_table) == [
        c.cluster_id for c in sorted(children, key=lambda c: -c.n_users)
    ]
    # Breadcrumb: facet, then the top cluster.
    assert esc(release.clusters()["request-L2-002"].name) in page[: page.index("<h1")]


def test_cluster_page_breakdowns_are_bar_charts(client, release):
    cluster = release.clusters()["request-L0-000"]
    cells = release.breakdowns("request-L0-000")
    page = client.get("/cluster/request-L0-000").text
    languages = sorted(
        (c for c in cells if c.facet == "language"), key=lambda c: (-c.n_conversations, c.value)
    )
    chart = page[
        page.index('data-facet="language"') : page.index(
            "</section>", page.index('data-facet="language"')
        )
    ]
    assert re.findall(r'<th scope="row">([^<]+)</th>', chart) == [
        model.language_name(c.value) for c in languages
    ]
    widths = [float(w) for w in re.findall(r'class="bar-fill" width="([\d.]+)"', chart)]
    assert widths == [
        round(c.n_conversations / cluster.n_conversations * 100, 2) for c in languages
    ]
    concern = page[page.index('data-facet="concerning"') :]
    levels = re.findall(r'<th scope="row">(\d) · ', concern)
    assert levels == sorted(c.value for c in cells if c.facet == "concerning")


def test_cluster_page_shows_changes_across_runs(client, release):
    page = client.get("/cluster/request-L0-000").text
    table = page[page.index('id="history"') :]
    table = table[: table.index("</table>")]
    before, now = release.clusters(0)["request-L0-000"], release.clusters()["request-L0-000"]
    assert re.findall(r"(run-2024-05-0\d)</(?:a|strong)>", table) == [
        "run-2024-05-01",
        "run-2024-05-08",
    ]
    assert f">{before.n_users:,}<" in table
    assert f">{now.n_users:,}<" in table
    assert f"{before.share * 100:.1f}%" in table


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/cluster/request-L9-999", "no released cluster with this id"),
        ("/cluster/request-L0-000?run=run-1999-01-01", "no released run with this id"),
        (f"/cluster/{NEW_IN_SECOND_RUN}?run=run-2024-05-01", "not released in run run-2024-05-01"),
        ("/?run=nope", "no released run with this id"),
        ("/map?run=nope", "no released run"),
        ("/search?q=x&run=nope", "no released run"),
        ("/map?facet=values", "No cluster of this facet"),
        ("/map?facet=request&level=7", "No cluster of this level"),
    ],
)
def test_unknown_ids_and_runs_are_404(client, url, message):
    response = client.get(url)
    assert response.status_code == 404
    assert message in html.unescape(response.text)


# -- map and search -------------------------------------------------------------------


def test_map_draws_clusters_sized_by_users_and_linked(client, release):
    page = client.get("/map").text
    base = [c for c in release.clusters().values() if c.facet == "request" and c.level == 0]
    links = re.findall(r'<a href="/cluster/([^"?]+)\?run=run-2024-05-08" class="map-point"', page)
    assert sorted(links) == sorted(c.cluster_id for c in base)
    radii = dict(
        re.findall(
            r'data-cluster-id="([^"]+)">\s*<title>[^<]*</title>\s*<circle [^>]*r="([\d.]+)"', page
        )
    )
    biggest = max(base, key=lambda c: c.n_users)
    smallest = min(base, key=lambda c: c.n_users)
    assert float(radii[biggest.cluster_id]) == model.MAX_RADIUS
    assert float(radii[smallest.cluster_id]) < float(radii[biggest.cluster_id])
    top_level = client.get("/map", params={"facet": "task", "level": "1"}).text
    assert len(re.findall(r'class="map-point"', top_level)) == 2


def test_map_points_fit_the_box_and_labels_do_not_overlap(release):
    rows = list(release.clusters().values())
    points = model.map_points(rows, "request", 0)
    for p in points:
        assert p.r <= p.cx <= model.MAP_WIDTH - p.r
        assert p.r <= p.cy <= model.MAP_HEIGHT - p.r
    boxes = []
    for p in points:
        if p.label:
            half = len(p.label) * model.LABEL_CHAR_WIDTH / 2
            box = (
                p.label_x - half,
                p.label_y - model.LABEL_HEIGHT + 3,
                p.label_x + half,
                p.label_y + 3,
            )
            assert all(not model._overlap(box, other) for other in boxes)
            boxes.append(box)
    assert len(boxes) >= len(points) // 2


def test_search_route_finds_by_name_keyword_and_description(client, release):
    page = client.get("/search", params={"q": "PANDAS"}).text
    assert re.findall(r'class="result-name" href="/cluster/([^"?]+)', page) == ["request-L0-000"]
    by_description = client.get("/search", params={"q": "revenge"}).text  # a keyword
    assert "request-L0-008" in by_description
    nothing = client.get("/search", params={"q": "zebra crossing"}).text
    assert "0 clusters match" in html.unescape(nothing)


def _made(
    cid: str, name: str, keywords=(), description="", users=10, concern=None
) -> ReleasedCluster:
    return ReleasedCluster("request", 0, cid, None, name, description, list(keywords), users,
                           users, 0.1, concern, None, None)  # fmt: skip


SEARCHABLE = [
    _made("a", "Travel visas", ["passport"], "Questions about entering a country", users=5),
    _made("b", "Hotel bookings", ["visa", "travel"], "Rooms and prices", users=9),
    _made("c", "Cooking pasta", [], "Recipes for travel meals", users=20),
    _made("d", "Travel insurance", [], "", users=7),
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("travel", ["d", "a", "b", "c"]),  # names (by users), then keyword, then description
        ("VISA", ["a", "b"]),
        ("travel visa", ["a", "b"]),
        ("pasta recipes", ["c"]),
        ("", []),
        ("   ", []),
        ("submarine", []),
    ],
)
def test_search_ranks_name_then_keyword_then_description(query, expected):
    assert [c.cluster_id for c in model.search_clusters(SEARCHABLE, query)] == expected


@pytest.mark.parametrize(
    ("mean", "level"),
    [(None, None), (float("nan"), None), (1.0, 1), (1.49, 1), (1.5, 2), (2.5, 3), (4.49, 4),
     (5.0, 5), (0.2, 1), (7, 5)],
)  # fmt: skip
def test_concern_level_rounds_half_up_within_1_to_5(mean, level):
    assert model.concern_level(mean) == level


# -- safety: read-only, 404 for everything else, headers, no private data ------------------


def test_only_the_documented_routes_exist(release):
    app = create_app(release.path)
    assert sorted(route.path for route in app.routes) == [
        "/",
        "/changes",
        "/cluster/{cluster_id}",
        "/map",
        "/search",
        "/static/{name}",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/docs",
        "/openapi.json",
        "/redoc",
        "/private/private.duckdb",
        "/insights.duckdb",
        "/static/private.duckdb",
        "/static/app.py",
        "/static/",
        "/static/clio.css.bak",
        "/cluster/",
        "/cluster/request-L0-000/children",
        "/favicon.ico",
    ],
)
def test_other_paths_are_404_with_headers(client, path):
    response = client.get(path)
    assert response.status_code == 404
    for header, value in SECURITY_HEADERS.items():
        assert response.headers[header] == value
    assert CANARY not in response.text


CRAFTED = [
    "/../private/private.duckdb",
    "/../../private/private.duckdb",
    "/static/../../private/private.duckdb",
    "/static/../private/private.duckdb",
    "/static/..%2f..%2fprivate%2fprivate.duckdb",
    "/static/%2e%2e/%2e%2e/private/private.duckdb",
    "/%2e%2e/private/private.duckdb",
    "/static/..%5c..%5cprivate%5cprivate.duckdb",
    "/static//etc/passwd",
    "//etc/passwd",
    "/cluster/..%2f..%2fprivate%2fprivate.duckdb",
    "/cluster/%2e%2e",
    "/cluster/request-L0-000/../../private/private.duckdb",
    "/static/clio.css/../../../private/private.duckdb",
    "/static/%252e%252e%252fprivate.duckdb",
    "/?run=../private/private.duckdb",
]


def test_crafted_paths_over_real_http_are_404_and_never_private_data(release):
    with running_server(release.path) as base:
        netloc = urlsplit(base).netloc
        for path in CRAFTED:
            # http.client sends the path as written (no normalisation of `..`).
            connection = http.client.HTTPConnection(netloc, timeout=10)
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            connection.close()
            assert response.status == 404, path
            assert CANARY.encode() not in body, path
            assert b"DUCK" not in body and b"root:" not in body, path
            assert response.getheader("X-Content-Type-Options") == "nosniff", path


def test_pages_and_assets_carry_security_headers_and_nothing_external(client):
    for url in ["/", "/cluster/request-L0-000", "/map", "/search?q=code", "/static/clio.css"]:
        response = client.get(url)
        assert response.status_code == 200, url
        for header, value in SECURITY_HEADERS.items():
            assert response.headers[header] == value, (url, header)
        if url.startswith("/static"):
            continue
        page = response.text
        refs = re.findall(r'(?:src|href|action)="([^"]*)"', page)
        assert refs and all(ref.startswith(("/", "#")) for ref in refs), url
        assert "<script>" not in page and " on" + "click=" not in page and "style=" not in page
    for name in ("clio.css", "clio.js", "export.js"):
        text = (ROOT / "clio" / "web" / "static" / name).read_text()
        assert "@import" not in text and "url(" not in text and "https://" not in text
        assert re.findall(r"https?://[^\s\"')]+", text) in ([], ["http://www.w3.org/2000/svg"])


def test_the_store_is_opened_read_only_and_without_file_access(release, tmp_path):
    before = release.path.read_bytes()
    store = ReleasedStore(release.path)
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    with store._connect() as connection:
        with pytest.raises(duckdb.Error, match="read-only"):
            connection.execute("CREATE TABLE stolen (a INTEGER)")
        with pytest.raises(duckdb.PermissionException):
            connection.execute(f"SELECT * FROM read_csv('{outside}')")
    client = TestClient(create_app(release.path))
    for url in ["/", "/cluster/request-L0-000", "/map", "/search?q=a", "/nope"]:
        client.get(url)
    assert release.path.read_bytes() == before


def test_a_private_store_is_refused(release, tmp_path):
    private = release.path.parent / "private" / "private.duckdb"
    with pytest.raises(NotAReleasedStore, match="not a released store"):
        create_app(private)
    with pytest.raises(NotAReleasedStore, match="no released store"):
        create_app(tmp_path / "missing.duckdb")
    # Even with the released tables, a file holding conversations is not served.
    mixed = tmp_path / "mixed.duckdb"
    connection = duckdb.connect(str(mixed))
    for table in ("runs", "clusters", "facet_breakdowns", "conversations"):
        connection.execute(f"CREATE TABLE {table} (a INTEGER)")
    connection.close()
    with pytest.raises(NotAReleasedStore, match="not a released store"):
        create_app(mixed)


def test_no_code_under_clio_web_can_reach_the_private_store():
    sources = sorted((ROOT / "clio" / "web").rglob("*"))
    assert any(p.suffix == ".py" for p in sources)
    forbidden = re.compile(
        r"clio\.store|from clio import store|PrivateStore|private\.duckdb|private_store|"
        r"import_module|__import__",
        re.IGNORECASE,
    )
    for path in sources:
        if path.is_file() and path.suffix in {".py", ".html", ".js", ".css"}:
            assert not forbidden.search(path.read_text(encoding="utf-8")), path
    # And at run time: loading the web modules loads no private-store code.
    code = (
        "import sys, clio.web.app, clio.web.export, clio.web.commands; "
        "assert 'clio.store' not in sys.modules, 'clio.store was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


LOOPBACK_HOST_HEADERS = [
    "127.0.0.1",
    "127.0.0.1:8000",
    "127.0.0.2",
    "127.255.255.254:9",
    "localhost",
    "LOCALHOST:8000",
    "[::1]",
    "[::1]:8000",
    "::1",
]
FOREIGN_HOST_HEADERS = [
    "attacker.example",
    "attacker.example:8000",
    "127.0.0.1.attacker.example",
    "localhost.attacker.example",
    "10.0.0.1",
    "0.0.0.0:8000",
    "[::2]:8000",
    "[::1",
    "[::1]x",
    "127.0.0.1:port",
    "",
]


@pytest.mark.parametrize("host", LOOPBACK_HOST_HEADERS)
def test_a_loopback_server_answers_every_loopback_host(release, host):
    client = TestClient(create_app(release.path, loopback_only=True))
    assert client.get("/", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", FOREIGN_HOST_HEADERS)
def test_a_loopback_server_refuses_other_host_names(release, host):
    client = TestClient(create_app(release.path, loopback_only=True))
    response = client.get("/", headers={"host": host})
    assert response.status_code == 400
    assert response.headers["x-frame-options"] == "DENY"
    assert "request-L0" not in response.text


def test_serve_guards_every_loopback_bind_address_and_only_those(release, monkeypatch):
    made: list[bool] = []

    def fake_create_app(db, loopback_only=False):
        made.append(loopback_only)
        return object()

    monkeypatch.setattr("clio.web.app.create_app", fake_create_app)
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: None)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "0.0.0.0", "192.168.1.5", "::"):
        args = build_parser().parse_args(["serve", "--db", str(release.path), "--host", host])
        assert args.func(args) == 0
    assert made == [True, True, True, True, False, False, False]


def test_released_text_is_escaped_everywhere(tmp_path):
    store = tmp_path / "insights.duckdb"
    name = '<img src=x onerror="alert(1)"></script>'
    cluster = ReleasedCluster("request", 0, "request-L0-000", None, name, "a & b", ["<b>kw</b>"],
                              9, 9, 1.0, 2.0, 0.0, 0.0)  # fmt: skip
    write_release(store, _run("r1", 1), ungated_result([cluster]))
    # A second run where the cluster grew, so "What changed" shows its name too.
    grown = replace(cluster, n_users=14, n_conversations=14)
    write_release(store, _run("r2", 2), ungated_result([grown]))
    client = TestClient(create_app(store))
    assert esc(name) in client.get("/changes").text
    for url in ["/", "/cluster/request-L0-000", "/changes", "/map", "/search?q=img"]:
        page = client.get(url).text
        assert "<img src=x" not in page and "<b>kw</b>" not in page, url
    exported = tmp_path / "out.html"
    export_html(store, exported)
    text = exported.read_text()
    assert text.count("</script>") == 2  # the data block's and the code's own closing tags
    assert "<img src=x" not in text


def test_script_json_cannot_close_its_element():
    text = script_json({"a": "</script><!-- & >"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & >"}


# -- export-html ------------------------------------------------------------------------


def exported_data(text: str) -> dict:
    """The JSON block of an exported page."""
    block = re.search(r'<script type="application/json" id="clio-data">(.*?)</script>', text, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_export_html_embeds_every_run_and_loads_nothing(release, tmp_path):
    out = tmp_path / "share" / "clio.html"
    summary = export_html(release.path, out)
    text = out.read_text(encoding="utf-8")
    assert summary.n_runs == 2
    assert summary.n_clusters == sum(len(gate.clusters) for _, gate in release.runs)
    assert summary.n_bytes == len(text.encode("utf-8"))
    data = exported_data(text)
    for run, gate in release.runs:
        assert sorted(c["id"] for c in data["clusters"][run.run_id]) == sorted(
            c.cluster_id for c in gate.clusters
        )
    assert [r["run_id"] for r in data["runs"]] == ["run-2024-05-08", "run-2024-05-01"]
    assert [p["run_id"] for p in data["history"][NEW_IN_SECOND_RUN]] == ["run-2024-05-08"]
    # Self-contained: no file or URL is loaded (the favicon is a data: URL).
    assert not re.search(r'\s(?:src|href)="(?!#|data:)', text)
    assert '<link rel="stylesheet"' not in text


def test_export_embeds_what_changed_as_the_served_page_shows_it(client, release, tmp_path):
    out = tmp_path / "clio.html"
    export_html(release.path, out)
    data = exported_data(out.read_text(encoding="utf-8"))
    first, latest = (run.run_id for run, _ in release.runs)
    assert set(data["changes"]) == {first, latest}
    assert (data["changes_note"], data["no_previous_run"]) == (
        model.CHANGES_NOTE,
        model.NO_PREVIOUS_RUN,
    )

    exported = data["changes"][latest]
    assert exported["previous_run_id"] == first
    page = client.get("/changes").text
    assert f'<a href="/?run={first}">{first}</a>' in page and esc(model.CHANGES_NOTE) in page
    groups = {g["key"]: g for g in exported["groups"]}
    assert list(groups) == ["new", "grown", "shrunk", "concern", "gone"]
    for key, group in groups.items():
        section = page[page.index(f'id="changes-{key}"') :]
        section = section[: section.index("</section>")]
        assert esc(group["title"]) in section and esc(group["note"]) in section
        assert [row["cluster_id"] for row in group["rows"]] == cluster_ids(section), key
    before, now = release.clusters(0), release.clusters()
    assert [row["cluster_id"] for row in groups["new"]["rows"]] == [NEW_IN_SECOND_RUN]
    grown = groups["grown"]["rows"]
    assert grown and all(
        row["n_users_change"]
        == now[row["cluster_id"]].n_users - before[row["cluster_id"]].n_users
        > 0
        for row in grown
    )

    # The first run has no run before it, on the served page and in the file.
    assert data["changes"][first]["previous_run_id"] is None
    first_page = client.get(f"/changes?run={first}").text
    assert esc(model.NO_PREVIOUS_RUN) in first_page and 'id="changes-new"' not in first_page


def test_cli_export_html_and_serve_arguments(release, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["export-html", "--db", str(release.path), "--out", str(out)]) == 0
    assert out.is_file()
    assert "wrote" in capsys.readouterr().out
    assert main(["export-html", "--db", str(tmp_path / "none.duckdb"), "--out", str(out)]) == 1
    assert "no released store" in capsys.readouterr().err
    assert main(["serve", "--db", str(tmp_path / "none.duckdb")]) == 1
    args = build_parser().parse_args(["serve", "--db", "x.duckdb"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    args = build_parser().parse_args(["serve", "--db", "x", "--host", "0.0.0.0", "--port", "9"])
    assert (args.host, args.port) == ("0.0.0.0", 9)


@pytest.mark.parametrize("command", ["serve", "export-html"])
def test_web_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--db" in text
    assert ("--host" in text and "127.0.0.1" in text) if command == "serve" else "--out" in text


# -- the run_changes view ------------------------------------------------------------------


def _run(run_id: str, day: int) -> RunRow:
    started = datetime(2024, 6, day, 1)
    return RunRow(run_id, started, started, "h", 2, 2, 10, 0, 10, 0, 0, 0, 0)


def _small(cid: str, users: int, concern: float | None = None) -> ReleasedCluster:
    return ReleasedCluster("request", 0, cid, None, f"name {cid}", "", [], users, users + 1,
                           users / 100, concern, None, None)  # fmt: skip


def test_run_changes_compares_each_run_with_the_one_before(tmp_path):
    store = tmp_path / "insights.duckdb"
    write_release(store, _run("r1", 1), ungated_result([_small("a", 10, 2.0), _small("b", 5)]))
    write_release(store, _run("r2", 2), ungated_result([_small("a", 14, 3.5), _small("c", 6)]))
    write_release(store, _run("r3", 3), ungated_result([_small("a", 9, 3.5)]))
    connection = duckdb.connect(str(store), read_only=True)
    rows = connection.execute(
        "SELECT run_id, previous_run_id, cluster_id, status, n_users, previous_n_users, "
        "n_users_change, n_conversations_change, concern_change FROM run_changes"
    ).fetchall()
    connection.close()
    assert rows == [
        ("r2", "r1", "c", "new", 6, None, 6, 7, None),
        ("r2", "r1", "b", "gone", None, 5, -5, -6, None),
        ("r2", "r1", "a", "kept", 14, 10, 4, 4, 1.5),
        ("r3", "r2", "c", "gone", None, 6, -6, -7, None),
        ("r3", "r2", "a", "kept", 9, 14, -5, -5, 0.0),
    ]


def test_breakdown_cells_of_a_cluster_become_ordered_charts():
    cluster = _made("k", "K", users=20)
    cells = [
        ReleasedBreakdown("k", "concerning", "3", 5, 5),
        ReleasedBreakdown("k", "concerning", "1", 9, 10),
        ReleasedBreakdown("k", "language", "fr", 6, 6),
        ReleasedBreakdown("k", "language", "en", 12, 12),
        ReleasedBreakdown("k", "task_type", "code", 7, 8),
    ]
    charts = model.breakdown_charts(cluster, cells)
    assert [(chart.facet, chart.title) for chart in charts] == [
        ("language", "Language"),
        ("concerning", "Concern level"),
        ("task_type", "Task type"),
    ]
    assert [(b.label, b.fraction) for b in charts[0].bars] == [
        ("English (en)", 0.6),
        ("French (fr)", 0.3),
    ]
    assert [b.label for b in charts[1].bars] == ["1 · minimal", "3 · moderate"]
    assert charts[2].bars[0].n_conversations == 8


def test_head_is_answered_and_other_methods_refused(client):
    assert client.head("/cluster/request-L0-000").status_code == 200
    assert client.head("/static/clio.css").status_code == 200
    response = client.post("/")
    assert response.status_code == 405
    assert response.headers["X-Frame-Options"] == "DENY"


def test_a_sparse_release_renders_every_view(tmp_path):
    """No positions, no concern scores, no breakdowns, no keywords or description."""
    store = tmp_path / "insights.duckdb"
    parent = ReleasedCluster("values", 1, "values-L1-000", None, "Honesty", "", [], 8, 9, 1.0,
                             None, None, None)  # fmt: skip
    child = ReleasedCluster("values", 0, "values-L0-000", "values-L1-000", "Telling the truth",
                            "", [], 8, 9, 1.0, None, None, None)  # fmt: skip
    write_release(store, _run("r1", 1), ungated_result([parent, child]))
    client = TestClient(create_app(store))
    assert "not scored" in client.get("/").text
    cluster_page = client.get("/cluster/values-L0-000").text
    assert "No breakdown cell of this cluster passed" in cluster_page
    assert "No description was released" in cluster_page
    assert "No cluster in this run has a map position" in client.get("/map").text
    export_html(store, tmp_path / "out.html")


def test_a_store_that_disappears_is_a_503_page_with_headers(tmp_path):
    store = tmp_path / "insights.duckdb"
    write_release(store, _run("r1", 1), ungated_result([_small("a", 5)]))
    client = TestClient(create_app(store), raise_server_exceptions=False)
    store.unlink()
    response = client.get("/")
    assert response.status_code == 503
    assert "cannot be read right now" in response.text
    csp = "Content-Security-Policy"
    assert response.headers[csp] == SECURITY_HEADERS[csp]
