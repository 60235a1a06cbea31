"""Dashboard render time per page, measured in a real headless browser on a run (the demo by default).

    python benchmarks/dashboard_render.py --runs runs --run demo [--repeats 5]

Serves the app with ``streamlit run`` on a free port (or ``--port``), opens every page (or those of
``--pages``) in Debian's Chromium (Playwright, ``/usr/bin/chromium``; never ``playwright install``),
waits until the script has finished and every plotly chart on the page has drawn, and times:

* first load: a cold page (data read from disk, caches empty for that page);
* cached load: the same URL opened again (a full browser navigation, the data cached on the
  server) — the issue's target: under 2 s per page once its data is cached;
* in-app switch: going to the page from another one through the sidebar navigation (no reload of
  the frontend), which is what a user does most;
* tab switch: on pages whose views sit in tabs (only the open tab is drawn), clicking each other tab
  until its view has drawn (the slowest tab's median is reported).

Prints the table and writes the "## Dashboard render time" section of BENCHMARKS.md; screenshots go
to ``--screenshots`` (default /tmp/grover_lens_benchmark_screenshots).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _markdown import write_section  # benchmarks/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Dashboard render time"
# url path -> (title in the navigation, charts the page draws on the demo run at least)
PAGES = {
    "": ("Runs", 0), "token-map": ("Token embedding map", 1), "self-similarity": ("Self-similarity", 1),
    "clusters": ("GC/AG content clusters", 2), "annotations": ("Chromatin and annotations", 1),
    "vocabularies": ("Vocabularies", 2), "inspector": ("Sequence inspector", 0), "compare": ("Compare models", 0),
    "benchmarks": ("Benchmarks", 0),
}
# Rendered: the script has finished (no running icon, no skeleton, nothing left over from the page before)
# and every plotly chart on the page has
# drawn (each draws several .main-svg layers, so counting those would pass with a third of the charts drawn),
# at least n of them.
SETTLED_JS = """(n) => {
    const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
    return charts.length >= n && [...charts].every((chart) => chart.querySelector('.js-plotly-plot .main-svg'))
        && !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')
        && !document.querySelector('[data-stale="true"]')
        && !document.querySelector('[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]')
        && document.querySelector('[data-testid="stMain"] [data-testid="stHeading"]'); }"""


# Installed in every full page load: records (ms after navigation) when the page's script had finished
# with its widgets drawn, and when the first chart had drawn, so a reload's time splits into the
# server/script part and the frontend's chart part.
PHASES_INIT_JS = """(() => {
    const phases = window.__grover_phases = {};
    const timer = setInterval(() => {
        const now = Math.round(performance.now());
        if (!('script' in phases) && document.querySelector('[data-testid="stMain"] [data-testid="stHeading"]')
                && !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')) phases.script = now;
        if (!('chart' in phases) && document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg'))
            phases.chart = now;
        if ('script' in phases && 'chart' in phases) clearInterval(timer);
    }, 20);
})();"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(runs: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "streamlit", "run", str(REPO / "dashboard" / "app.py"), "--server.address",
               "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, GROVER_RUNS_DIR=str(runs)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("streamlit did not start")


def _path_of(url: str) -> str:
    """The page part of an app URL: ``http://host:port/token-map?run=x`` -> ``token-map``."""
    return url.split("?", 1)[0].split("/", 3)[-1].strip("/") if url.count("/") >= 3 else ""


def settle(page, n_charts: int) -> None:
    page.wait_for_selector('[data-testid="stMain"]', timeout=120_000)
    page.wait_for_function(SETTLED_JS, arg=n_charts, timeout=120_000, polling=50)


def tab_switches(page) -> dict[str, float]:
    """Click each tab of the page after the first (then the first again); seconds until each view has drawn.

    A tab click reruns the page, which writes the view into the link (``?view=``): the rerun has begun once
    the URL changes, and the view has drawn once the page settles again.
    """
    tabs = page.locator('[data-testid="stMain"] [role="tab"]')
    names = [tabs.nth(i).inner_text().strip() for i in range(tabs.count())]
    times = {}
    for name in [*names[1:], *names[:1]] if len(names) > 1 else []:
        before = page.evaluate("() => location.search")
        started = time.perf_counter()
        page.get_by_role("tab", name=name, exact=True).click()
        page.wait_for_function("(search) => location.search !== search", arg=before, timeout=60_000, polling=20)
        settle(page, 0)
        times[name] = time.perf_counter() - started
    return times


def measure(runs: Path, run_name: str, *, repeats: int, screenshots: Path, port: int | None = None,
            pages: list[str] | None = None) -> dict[str, dict]:
    from playwright.sync_api import sync_playwright

    port = port or _free_port()
    server = serve(runs, port)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, dict] = {}
    screenshots.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=["--no-sandbox", "--disable-gpu"])
            context = browser.new_context(viewport={"width": 1600, "height": 1100})
            context.add_init_script(PHASES_INIT_JS)
            page = context.new_page()
            for path, (title, n_charts) in PAGES.items():
                if pages is not None and (path or "runs") not in pages:
                    continue
                url = f"{base}/{path}?run={run_name}"
                started = time.perf_counter()
                page.goto(url)
                settle(page, n_charts)
                first = time.perf_counter() - started
                cached, switched, script_at, chart_at, tabbed = [], [], [], [], {}
                for _ in range(repeats):
                    started = time.perf_counter()
                    page.goto(url)
                    settle(page, n_charts)
                    cached.append(time.perf_counter() - started)
                    phases = page.evaluate("() => window.__grover_phases || {}")
                    script_at += [phases["script"] / 1000] if "script" in phases else []
                    chart_at += [phases["chart"] / 1000] if "chart" in phases else []
                    # In-app navigation: to another page and back through the sidebar link.
                    other_path, (other_title, other_charts) = next((p, v) for p, v in PAGES.items() if p != path)
                    page.get_by_role("link", name=other_title).first.click()
                    page.wait_for_url(lambda u, p=other_path: _path_of(u) == p, timeout=60_000, wait_until="commit")
                    settle(page, other_charts)
                    started = time.perf_counter()
                    page.get_by_role("link", name=title).first.click()
                    page.wait_for_url(lambda u, p=path: _path_of(u) == p, timeout=60_000, wait_until="commit")
                    settle(page, n_charts)
                    switched.append(time.perf_counter() - started)
                    for name, seconds in tab_switches(page).items():
                        tabbed.setdefault(name, []).append(seconds)
                tab_medians = {name: statistics.median(times) for name, times in tabbed.items()}
                slowest_tab = max(tab_medians, key=tab_medians.get) if tab_medians else None
                errors = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').count()
                page.screenshot(path=str(screenshots / f"{path or 'runs'}.png"), full_page=True)
                results[path or "runs"] = {"title": title, "first_s": first, "cached_s": statistics.median(cached),
                                           "cached_max_s": max(cached), "switch_s": statistics.median(switched),
                                           "script_s": statistics.median(script_at) if script_at else None,
                                           "first_chart_s": statistics.median(chart_at) if chart_at else None,
                                           "charts": page.locator(".js-plotly-plot").count(), "errors": errors,
                                           "tabs": tab_medians, "slowest_tab": slowest_tab}
                print(f"{title:28s} first {first:5.2f} s  cached {statistics.median(cached):5.2f} s  "
                      f"in-app {statistics.median(switched):5.2f} s  charts {results[path or 'runs']['charts']}"
                      f"  errors {errors}"
                      + (f"  tabs {', '.join(f'{n} {t:.2f} s' for n, t in tab_medians.items())}" if tab_medians else ""),
                      flush=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def report(results: dict[str, dict], *, command: str, load: float, screenshots: Path) -> str:
    rows = ["| page | first load (s) | cached load, median (s) | cached, max (s) | cached: script done at (s) | "
            "cached: first chart at (s) | in-app switch, median (s) | tab switch, slowest tab's median (s) | "
            "charts (open tab) | error boxes | under 2 s cached |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    at = lambda value: "" if value is None else f"{value:.2f}"  # noqa: E731

    def tab_cell(result: dict) -> str:
        slowest = result.get("slowest_tab")
        return "" if slowest is None else f"{result['tabs'][slowest]:.2f} ({slowest}; {len(result['tabs'])} tabs)"
    for result in results.values():
        rows.append(f"| {result['title']} | {result['first_s']:.2f} | {result['cached_s']:.2f} | "
                    f"{result['cached_max_s']:.2f} | {at(result.get('script_s'))} | {at(result.get('first_chart_s'))} | "
                    f"{result['switch_s']:.2f} | {tab_cell(result)} | {result['charts']} | "
                    f"{result['errors']} | {'yes' if result['cached_s'] < 2 else 'NO'} |")
    niceness = os.nice(0)
    return "\n".join([
        SECTION, "",
        f"Measured {dt.date.today().isoformat()} on {os.cpu_count()} CPU cores (load average {load:.1f} at the "
        "start" + (f"; server and browser at niceness {niceness} against the other jobs on the machine"
                   if niceness else "") + "), headless Debian Chromium through Playwright, `streamlit run` on "
        "127.0.0.1. A page counts as rendered when the script has finished and every chart on it has drawn "
        "(each plotly chart has its SVG layers); before 2026-12-06 this script counted SVG layers, three per "
        "chart, so a page with several charts was timed once about a third of them had drawn.",
        "", f"Command: `{command}`", "", *rows, "",
        "First load: a cold page. Cached load: the same URL opened again (full browser navigation; the server's "
        "data caches warm). Script done at / first chart at: on those cached loads, the medians of when (after "
        "navigation, polled every 20 ms in the page) the page's script had finished with its widgets drawn, and "
        "when its first chart had drawn: what lies between is the browser loading plotly.js (Streamlit's "
        "`PlotlyChart` chunk, about 4.7 MB) and drawing. In-app switch: clicking the page in the sidebar from "
        "the Runs page (the Runs page: from the token map; no frontend reload). Tab switch: on pages whose views "
        "sit in lazy tabs (only the open tab is drawn), clicking a tab until its view has drawn, each tab once per "
        f"repeat. Screenshots: `{screenshots}`.", ""])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs", help="runs folder the app lists")
    parser.add_argument("--run", default="demo", help="run to open on every page")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshots", default="/tmp/grover_lens_benchmark_screenshots")
    parser.add_argument("--port", type=int, default=None, help="port to serve the app on (default: a free one)")
    parser.add_argument("--pages", nargs="+", default=None, metavar="PATH",
                        help="only these pages (url paths; 'runs' for the first page); implies --no-write")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    results = measure(Path(args.runs), args.run, repeats=args.repeats, screenshots=Path(args.screenshots),
                      port=args.port, pages=args.pages)
    (Path(args.screenshots) / "timings.json").write_text(json.dumps(results, indent=2))
    command = "python benchmarks/dashboard_render.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = report(results, command=command.strip(), load=load, screenshots=Path(args.screenshots))
    print(section)
    if not args.no_write and args.pages is None:
        write_section(REPO / "BENCHMARKS.md", section)
    return results


if __name__ == "__main__":
    main()
