"""The web page in headless Chromium (Debian's package, driven by Playwright).

Browses a two-run release written by the real `write_release`: expands the
tree, opens a cluster, searches, opens the map and follows a circle, switches
runs; opens "What changed" and follows its links; then does the same in the
exported file from file://. Screenshots go to `outputs/screenshots/`. No request
may leave the server (or the file), and the page may log no error (a
Content-Security-Policy violation is logged as one).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from clio.release import write_release
from clio.released import ReleasedCluster, RunRow
from clio.web import model
from clio.web.export import export_html
from tests.ungated import ungated_result
from tests.web_fixtures import NEW_IN_SECOND_RUN, Release, build_release, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "outputs" / "screenshots"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium (make test installs it)",
)


def _run(run_id: str, day: int) -> RunRow:
    started = datetime(2024, 6, day, 1)
    return RunRow(run_id, started, started, "h", 2, 2, 10, 0, 10, 0, 0, 0, 0)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    return build_release(tmp_path_factory.mktemp("release") / "insights.duckdb")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watched:
    """A page that records every request URL and every console error or page error."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000  # a rendered page, not a blank one
        return path


@pytest.fixture
def watched(browser) -> Iterator[Watched]:
    watched = Watched(browser)
    yield watched
    watched.page.close()


def browse(watched: Watched, release: Release, start: str, prefix: str) -> None:
    """The same walk through the served page and the exported file."""
    from playwright.sync_api import expect

    page = watched.page
    clusters = release.clusters()
    page.goto(start)
    expect(page.locator("h1")).to_have_text("Cluster hierarchy")

    # The tree: top clusters visible, their children hidden until expanded.
    top = clusters["request-L2-000"]
    mid = clusters["request-L1-000"]
    mid_row = page.locator('[data-cluster-id="request-L1-000"] > summary')
    expect(page.locator('[data-cluster-id="request-L2-000"] > summary')).to_be_visible()
    expect(mid_row).to_be_hidden()
    page.locator('[data-cluster-id="request-L2-000"] > summary .twisty').click()
    expect(mid_row).to_be_visible()
    expect(mid_row).to_contain_text(f"{mid.n_users:,}")
    expect(page.locator('[data-cluster-id="request-L0-000"]')).to_be_hidden()
    mid_row.locator(".twisty").click()
    expect(page.locator('[data-cluster-id="request-L0-000"]')).to_be_visible()
    assert top.name in page.locator('[data-cluster-id="request-L2-000"] > summary').inner_text()
    watched.shot(f"{prefix}tree")

    # A cluster page, opened from the tree.
    page.get_by_role("link", name=mid.name, exact=True).click()
    expect(page.locator("#cluster-name")).to_have_text(mid.name)
    expect(page.locator(".description")).to_have_text(mid.description)
    expect(page.locator('.chart[data-facet="language"] tbody tr').first).to_contain_text(
        "English (en)"
    )
    expect(page.locator("#children tbody tr")).to_have_count(2)
    expect(page.locator("#history tbody tr")).to_have_count(2)
    watched.shot(f"{prefix}cluster")

    # Search from the top bar.
    page.fill("#search-input", "email")
    page.press("#search-input", "Enter")
    expected = [
        c for c in clusters.values()
        if "email" in " ".join([c.name, c.description, *c.keywords]).lower()
    ]  # fmt: skip
    expect(page.locator("#results > li")).to_have_count(len(expected))
    watched.shot(f"{prefix}search")

    # The map, then a click on its largest circle opens that cluster.
    page.click("text=Map")
    base = [c for c in clusters.values() if c.facet == "request" and c.level == 0]
    expect(page.locator("#cluster-map .map-point")).to_have_count(len(base))
    watched.shot(f"{prefix}map")
    biggest = max(base, key=lambda c: c.n_users)
    page.locator(f'#cluster-map [data-cluster-id="{biggest.cluster_id}"] circle').click()
    expect(page.locator("#cluster-name")).to_have_text(biggest.name)

    # The run picker: the first run lacks one cluster.
    page.click("text=Clusters")
    expect(page.locator(f'[data-cluster-id="{NEW_IN_SECOND_RUN}"]')).to_have_count(1)
    page.select_option("#run-select", release.runs[0][0].run_id)
    expect(page.locator(".eyebrow").first).to_contain_text(release.runs[0][0].run_id)
    expect(page.locator(f'[data-cluster-id="{NEW_IN_SECOND_RUN}"]')).to_have_count(0)
    assert f"run={release.runs[0][0].run_id}" in page.url

    # Filters: only the most concerning clusters and the path to them.
    page.select_option("select[name=min_concern]", "4")
    expect(page.locator(".tree .row.dim").first).to_be_visible()
    watched.shot(f"{prefix}filtered")
    assert watched.errors == []


def test_served_page_in_chromium(browser, release, watched):
    with running_server(release.path) as base:
        browse(watched, release, base + "/", "")
        # Unknown ids are a 404 page, in the browser too.
        response = watched.page.goto(base + "/cluster/request-L9-999")
        assert response is not None and response.status == 404
        assert "Nothing released here" in watched.page.inner_text("h1")
    hosts = {urlsplit(url).netloc for url in watched.requests}
    assert hosts == {urlsplit(base).netloc}  # nothing from a CDN or anywhere else


def what_changed(watched: Watched, release: Release, start: str, prefix: str) -> None:
    """The "What changed" view, the latest run against the one before, in the served page
    and the exported file alike: reached from the top bar, a cluster's history and the
    tree; the run picker's first run has nothing to compare with."""
    from playwright.sync_api import expect

    page = watched.page
    nav = page.get_by_role("navigation", name="Views")
    before, now = release.clusters(0), release.clusters(-1)
    first_run = release.runs[0][0].run_id
    grown = sorted(
        (c for cid, c in now.items() if cid in before and c.n_users > before[cid].n_users),
        key=lambda c: (before[c.cluster_id].n_users - c.n_users, c.cluster_id),
    )
    page.goto(start)
    nav.get_by_role("link", name="What changed").click()
    expect(page.locator("h1")).to_have_text("What changed")
    expect(page.locator("#changes-against")).to_contain_text(f"Against run {first_run}")
    new_rows = page.locator("#changes-new tbody tr")
    expect(new_rows).to_have_count(len(now.keys() - before.keys()))
    expect(page.locator(f'#changes-new [data-cluster-id="{NEW_IN_SECOND_RUN}"]')).to_have_count(1)
    expect(new_rows.first).to_contain_text(now[NEW_IN_SECOND_RUN].name)
    first_grown = page.locator("#changes-grown tbody tr").first
    expect(first_grown).to_have_attribute("data-cluster-id", grown[0].cluster_id)
    expect(first_grown).to_contain_text(
        f"+{grown[0].n_users - before[grown[0].cluster_id].n_users}"
    )
    expect(first_grown).to_contain_text(f"{before[grown[0].cluster_id].n_users:,}")
    watched.shot(f"{prefix}changes")

    # From a cluster's history and from the tree.
    first_grown.get_by_role("link").click()
    expect(page.locator("#cluster-name")).to_have_text(grown[0].name)
    page.click("#what-changed")
    expect(page.locator("h1")).to_have_text("What changed")
    nav.get_by_role("link", name="Clusters").click()
    expect(page.locator("h1")).to_have_text("Cluster hierarchy")
    page.click("#what-changed")
    expect(page.locator("#changes-grown tbody tr").first).to_have_attribute(
        "data-cluster-id", grown[0].cluster_id
    )

    # The first run has nothing to compare with.
    page.select_option("#run-select", first_run)
    expect(page.locator("#changes-against")).to_have_text(model.NO_PREVIOUS_RUN)
    expect(page.locator("h1")).to_have_text("What changed")
    expect(page.locator("#changes-new")).to_have_count(0)
    assert f"run={first_run}" in page.url
    assert watched.errors == []


def test_what_changed_in_chromium(browser, release, watched):
    with running_server(release.path) as base:
        what_changed(watched, release, base + "/", "")
    assert {urlsplit(url).netloc for url in watched.requests} == {urlsplit(base).netloc}


def test_exported_what_changed_in_chromium(browser, release, watched, tmp_path):
    exported = export_html(release.path, tmp_path / "clio-insights.html").path
    what_changed(watched, release, exported.as_uri(), "export-")
    assert {urlsplit(url).scheme for url in watched.requests} <= {"file", "data"}


def test_exported_what_changed_of_a_single_run_in_chromium(browser, watched, tmp_path):
    """The control: a store with one run has no run to compare with, and shows no section."""
    from playwright.sync_api import expect

    single = build_release(tmp_path / "insights.duckdb", n_runs=1)
    exported = export_html(single.path, tmp_path / "clio-insights.html").path
    page = watched.page
    page.goto(exported.as_uri())
    page.get_by_role("navigation", name="Views").get_by_role("link", name="What changed").click()
    expect(page.locator("h1")).to_have_text("What changed")
    expect(page.locator("#changes-against")).to_have_text(model.NO_PREVIOUS_RUN)
    expect(page.locator('section[id^="changes-"]')).to_have_count(0)
    expect(page.locator("[data-cluster-id]")).to_have_count(0)
    assert watched.errors == []
    assert {urlsplit(url).scheme for url in watched.requests} <= {"file", "data"}


def test_exported_what_changed_shows_released_text_as_text(browser, watched, tmp_path):
    """A name that is markup stays text in the exported "What changed" view."""
    from playwright.sync_api import expect

    store = tmp_path / "insights.duckdb"
    name = "<img src=x onerror=\"document.title='leaked'\"></td></script>"
    plain = ReleasedCluster("request", 0, "request-L0-000", None, "Plain", "", [], 9, 9, 1.0,
                            2.0, None, None)  # fmt: skip
    marked = replace(plain, cluster_id="request-L0-001", name=name, n_users=7, n_conversations=7)
    write_release(store, _run("r1", 1), ungated_result([plain]))
    write_release(store, _run("r2", 2), ungated_result([plain, marked]))
    exported = export_html(store, tmp_path / "clio-insights.html").path
    page = watched.page
    page.goto(exported.as_uri() + "#/changes")
    row = page.locator('#changes-new [data-cluster-id="request-L0-001"]')
    expect(row.get_by_role("link")).to_have_text(name)
    expect(page.locator("#app img")).to_have_count(0)
    assert page.title() != "leaked"
    assert watched.errors == []


def test_exported_file_in_chromium(browser, release, watched, tmp_path):
    exported = export_html(release.path, tmp_path / "clio-insights.html").path
    browse(watched, release, exported.as_uri(), "export-")
    watched.page.goto(exported.as_uri() + "#/cluster/request-L9-999")
    assert "Nothing released here" in watched.page.inner_text("h1")
    assert {urlsplit(url).scheme for url in watched.requests} <= {"file", "data"}
