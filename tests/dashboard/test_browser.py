"""The dashboard served by `streamlit run` and driven in headless Chromium (what AppTest cannot see).

Checks that the plotly map renders in a real browser with every token drawn (SVG markers for a
vocabulary's worth of tokens, a WebGL canvas for a map beyond ``figures.SVG_MAX_POINTS``), that a
box selection reaches the server and lists the selected tokens, and that no page raises. Uses
Debian's /usr/bin/chromium (`make test` installs it); never `playwright install`.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from analysis import run

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
SERVER_START_S = 90  # streamlit imports pandas, plotly and pyarrow before answering
RENDER_MS = 60_000  # first page load compiles the frontend bundle in a cold browser
SCREENSHOT_COPY = Path("/tmp/dashboard_token_map.png")  # a copy to look at after the run
LARGE_MAP_POINTS = 100_000  # the issue: maps take 100,000 points with WebGL
LARGE_MAP_SCREENSHOT = Path("/tmp/dashboard_token_map_100k.png")
VIEWPORT = {"width": 1600, "height": 1100}

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: `make test` installs Debian's chromium before the tests "
        "(or `apt-get install chromium`).",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-test.txt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(runs_dir, tmp_path_factory):
    """Serve the app on a free port with GROVER_RUNS_DIR=runs_dir; yield its URL; stop it after."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]
    env = dict(os.environ, GROVER_RUNS_DIR=str(runs_dir))
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer on {url}/_stcore/health:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


def _expected_points(run_dir: Path) -> int:
    projections = run.load_token_projections(run_dir)
    last = run.layers_in(projections)[-1]
    return int(((projections["layer"] == last) & (projections["method"] == "umap")).sum())


def _open_token_map(page, server: str, run_dir: Path, *, by_path: bool = False):
    page.goto(f"{server}/token-map?run={run_dir if by_path else run_dir.name}")
    page.get_by_text("points drawn").wait_for(timeout=RENDER_MS)
    page.wait_for_selector('[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg', timeout=RENDER_MS)


def _map_traces(page) -> list[list]:
    """``[type, points]`` of each trace of the first chart, as plotly.js decoded them (``_fullData``; ``data``
    holds the base64 arrays as sent)."""
    return page.evaluate(
        "() => document.querySelector('.js-plotly-plot')._fullData.map(t => [t.type, t._length])"
    )


def _no_exception(page) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.all_inner_texts()


@pytest.fixture(scope="module")
def large_map_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run whose vocabulary holds 100,000 tokens (random 10-mers) with random projections at
    every layer and method: the issue's WebGL size, far beyond ``figures.SVG_MAX_POINTS``; opened by path
    (``?run=<path>``)."""
    import numpy as np
    import pandas as pd

    from dashboard.figures import SVG_MAX_POINTS

    out = tmp_path_factory.mktemp("large_map") / "large_map"
    shutil.copytree(tiny_run, out)
    n = LARGE_MAP_POINTS
    assert n > SVG_MAX_POINTS
    rng = np.random.default_rng(0)
    tokens = run.load_tokens(out)
    tokens = tokens.iloc[rng.integers(0, len(tokens), n)].reset_index(drop=True)
    letters = np.array(list("ACGT"))[rng.integers(0, 4, (2 * n, 10))]
    kmers = pd.unique(pd.Series(["".join(row) for row in letters]))[:n]
    tokens = tokens.assign(token_id=np.arange(n), token=kmers, frequency=rng.integers(1, 10_000, n))
    projections = run.load_token_projections(out)
    grid = projections[["layer", "method"]].drop_duplicates()
    projections = pd.concat([
        pd.DataFrame({"layer": layer, "method": method, "token_id": np.arange(n),
                      "x": rng.normal(size=n), "y": rng.normal(size=n)})
        for layer, method in grid.itertuples(index=False)
    ], ignore_index=True).astype(projections.dtypes.to_dict())
    tokens.to_parquet(out / run.TOKENS, index=False)
    projections.to_parquet(out / run.TOKEN_PROJECTIONS, index=False)
    return out


def test_token_map_draws_every_token_as_svg(page, server, tiny_run, tmp_path):
    _open_token_map(page, server, tiny_run)
    expected = _expected_points(tiny_run)

    assert _map_traces(page) == [["scatter", expected]]  # a vocabulary's worth of tokens: SVG, no WebGL
    chart = page.locator(".js-plotly-plot").first
    assert chart.locator(".scatterlayer .point").count() == expected  # every marker is in the page
    assert chart.locator("canvas").count() == 0
    assert f"{expected:,} points drawn" in page.get_by_text("points drawn").inner_text()
    modebar = page.eval_on_selector_all(".modebar-btn", "els => els.map(e => e.getAttribute('data-title'))")
    assert {"Download plot as a PNG", "Box Select", "Lasso Select"} <= set(modebar)
    _no_exception(page)

    screenshot = tmp_path / "token_map.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    shutil.copy(screenshot, SCREENSHOT_COPY)


def test_large_token_map_draws_every_token_with_webgl(page, server, large_map_run, capsys):
    started = time.perf_counter()
    _open_token_map(page, server, large_map_run, by_path=True)
    page.wait_for_selector(".js-plotly-plot canvas", timeout=RENDER_MS)  # scattergl draws on canvas
    seconds = time.perf_counter() - started
    expected = _expected_points(large_map_run)
    assert expected == LARGE_MAP_POINTS

    assert _map_traces(page) == [["scattergl", expected]]  # every point, nothing sampled
    assert page.locator(".js-plotly-plot").first.locator(".scatterlayer .point").count() == 0  # no SVG markers
    assert f"{expected:,} points drawn" in page.get_by_text("points drawn").inner_text()
    _no_exception(page)
    page.screenshot(path=str(LARGE_MAP_SCREENSHOT), full_page=True)
    with capsys.disabled():
        print(f"\n{expected:,}-point token map drawn with WebGL in {seconds:.1f} s (cold page); "
              f"screenshot {LARGE_MAP_SCREENSHOT}")


def test_box_selection_lists_the_selected_tokens(page, server, tiny_run):
    _open_token_map(page, server, tiny_run)
    page.wait_for_timeout(1000)  # the chart settles its layout after the first paint
    area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    # Dragging box-selects (the figure's dragmode): sweep most of the plot area.
    page.mouse.move(area["x"] + 0.05 * area["width"], area["y"] + 0.05 * area["height"])
    page.mouse.down()
    page.mouse.move(area["x"] + 0.5 * area["width"], area["y"] + 0.5 * area["height"], steps=8)
    page.mouse.move(area["x"] + 0.95 * area["width"], area["y"] + 0.95 * area["height"], steps=8)
    page.mouse.up()

    heading = page.get_by_role("heading", name="Selected tokens (")
    heading.wait_for(timeout=RENDER_MS)
    n_selected = int(heading.inner_text().split("(")[1].rstrip(")").replace(",", ""))
    assert 0 < n_selected <= _expected_points(tiny_run)
    # Streamlit streams the elements one by one: wait for the button rather than count at once.
    download = page.get_by_role("button", name="Selected tokens (CSV)")
    download.wait_for(timeout=RENDER_MS)
    assert download.count() == 1
    _no_exception(page)


def test_home_shows_the_run(page, server, tiny_run):
    page.goto(f"{server}/?run={tiny_run.name}")
    page.get_by_text("Vocabulary size").wait_for(timeout=RENDER_MS)
    page.get_by_text("Masked top-1 accuracy").wait_for(timeout=RENDER_MS)
    artifacts = page.get_by_role("heading", name="Artifacts")
    artifacts.wait_for(timeout=RENDER_MS)  # elements stream in one by one
    assert artifacts.count() == 1
    _no_exception(page)


# Every page of the app, as a user opens it from a link: (url path, charts it must draw on the tiny run).
# The inspector draws its charts once a sequence is given; Compare models needs a second run.
PAGES = {
    "": 0, "token-map": 1, "self-similarity": 1, "clusters": 2, "annotations": 1, "vocabularies": 2,
    "inspector": 0, "compare": 0, "benchmarks": 0,
}
SCREENSHOTS = Path("/tmp/grover_lens_screenshots")


def _settled(page, n_charts: int) -> None:
    """Wait until the script has finished (no 'running' widget) and at least ``n_charts`` charts drew.

    Every chart element on the page must hold a drawn plot: counting plotly's SVG layers instead (three
    per chart) would pass with a third of the charts drawn.
    """
    page.wait_for_selector('[data-testid="stMain"]', timeout=RENDER_MS)
    page.wait_for_function(
        """(n) => {
            const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
            return charts.length >= n && [...charts].every((chart) => chart.querySelector('.js-plotly-plot .main-svg'))
                && !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')
                && !document.querySelector('[data-stale="true"]')
                && !document.querySelector('[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]')
                && document.querySelector('[data-testid="stMain"] [data-testid="stHeading"]'); }""",
        arg=n_charts, timeout=RENDER_MS, polling=100)
    page.wait_for_timeout(300)  # a last element may still be streaming in


def test_every_page_renders_without_an_error_box(page, server, tiny_run, capsys):
    SCREENSHOTS.mkdir(exist_ok=True)
    timings = {}
    for path, n_charts in PAGES.items():
        url = f"{server}/{path}?run={tiny_run.name}"
        page.goto(url)
        _settled(page, n_charts)
        # Second visit: the data is cached now; this is the time a user waits when coming back.
        started = time.perf_counter()
        page.goto(url)
        _settled(page, n_charts)
        timings[path or "runs"] = round(time.perf_counter() - started, 2)
        _no_exception(page)
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0, path
        assert page.locator(".js-plotly-plot").count() >= n_charts, path
        page.screenshot(path=str(SCREENSHOTS / f"{path or 'runs'}.png"), full_page=True)
    (SCREENSHOTS / "timings.json").write_text(json.dumps(timings, indent=2))
    with capsys.disabled():
        print(f"\nscreenshots of every page in {SCREENSHOTS}; seconds per cached page load: {timings}")
    assert all((SCREENSHOTS / f"{p or 'runs'}.png").stat().st_size > 10_000 for p in PAGES)


def test_presentation_mode_hides_the_sidebar(page, server, tiny_run):
    page.goto(f"{server}/self-similarity?run={tiny_run.name}&present=1")
    _settled(page, PAGES["self-similarity"])
    assert not page.locator('[data-testid="stSidebar"]').is_visible()
    page.goto(f"{server}/self-similarity?run={tiny_run.name}")
    _settled(page, PAGES["self-similarity"])
    assert page.locator('[data-testid="stSidebar"]').is_visible()
    _no_exception(page)


def test_figure_downloads_give_png_svg_and_csv(page, server, tiny_run, tmp_path):
    page.goto(f"{server}/clusters?run={tiny_run.name}")
    _settled(page, PAGES["clusters"])
    sizes = {}
    for label, suffix in (("PNG", ".png"), ("SVG", ".svg"), ("CSV", ".csv")):
        with page.expect_download(timeout=RENDER_MS) as info:
            page.get_by_role("button", name=label).first.click()
        target = tmp_path / f"figure{suffix}"
        info.value.save_as(target)
        sizes[suffix] = target.stat().st_size
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "figure.svg").read_bytes()[:2000]
    assert (tmp_path / "figure.csv").read_text().count("\n") > 5
    _no_exception(page)


def test_every_tab_renders_without_an_error_box(page, server, tiny_run, capsys):
    """Click through every tab of every page that has tabs: each view draws, writes itself into the link, and
    shows no error box."""
    timings = {}
    for path in PAGES:
        page.goto(f"{server}/{path}?run={tiny_run.name}")
        _settled(page, PAGES[path])
        tabs = page.locator('[data-testid="stMain"] [role="tab"]')
        names = [tabs.nth(i).inner_text().strip() for i in range(tabs.count())]
        for name in names[1:]:
            before = page.evaluate("() => location.search")
            started = time.perf_counter()
            page.get_by_role("tab", name=name, exact=True).click()
            page.wait_for_function("(search) => location.search !== search", arg=before, timeout=RENDER_MS)
            _settled(page, 0)
            timings[f"{path}: {name}"] = round(time.perf_counter() - started, 2)
            assert "view=" in page.url, (path, name)
            assert page.get_by_role("tab", name=name, exact=True).get_attribute("aria-selected") == "true"
            _no_exception(page)
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0, (path, name)
    assert len(timings) == 10  # other tabs: self-similarity 2, clusters 1, annotations 3, vocabularies 4; compare
    # has no tabs with a single run
    with capsys.disabled():
        print(f"\nseconds per tab switch: {timings}")


def test_tabs_draw_only_the_open_view_and_keep_it_in_the_link(page, server, tiny_run):
    page.goto(f"{server}/vocabularies?run={tiny_run.name}")
    _settled(page, PAGES["vocabularies"])
    assert page.locator('[data-testid="stPlotlyChart"]').count() == PAGES["vocabularies"]  # lengths + frequency
    page.get_by_role("tab", name="GC content").click()
    page.wait_for_function("() => location.search.includes('view=gc')", timeout=RENDER_MS)
    _settled(page, 1)
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 1  # the GC figure alone
    assert page.get_by_role("heading", name="GC content of the tokens").count() == 1
    page.reload()  # the link reopens the view
    _settled(page, 1)
    assert page.get_by_role("tab", name="GC content").get_attribute("aria-selected") == "true"
    _no_exception(page)
