"""The dashboard run headless with Streamlit's AppTest, from the entry point, on a real pipeline run.

``runs_dir`` / ``tiny_run`` come from tests/conftest.py (a run the pipeline builds on a tiny genome).
This file checks the router (run picker, links, bad folders); each page has its own
test_page_<page>.py. AppTest cannot see inside plotly charts beyond their spec; what they draw is
checked through the pages' captions, in test_figures.py (pure logic) and in test_browser.py (a real browser).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

from analysis import run

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
TOKEN_MAP = "views/token_map.py"  # relative to app.py, as AppTest.switch_page wants
TIMEOUT = 60  # s per script run: the first run imports pandas, plotly and pyarrow


def open_app(monkeypatch, runs_dir: Path, **query: str) -> AppTest:
    """Run the app with ``GROVER_RUNS_DIR=runs_dir`` and the given link query (``run=...``)."""
    monkeypatch.setenv("GROVER_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def points_drawn(at: AppTest) -> tuple[int, str]:
    """Return (count, caption) of the token map's 'N points drawn' caption."""
    captions = [c.value for c in at.caption if "points drawn" in c.value]
    assert len(captions) == 1, [c.value for c in at.caption]
    return int(re.match(r"([\d,]+) points drawn", captions[0]).group(1).replace(",", "")), captions[0]


def expected_points(tiny_run: Path, layer: int, method: str) -> int:
    projections = run.load_token_projections(tiny_run)
    return int(((projections["layer"] == layer) & (projections["method"] == method)).sum())


def evaluation_of(tiny_run: Path, manifest: dict) -> dict:
    return manifest.get("evaluation") or run.load_evaluation(tiny_run)


def test_link_names_a_run_in_the_runs_folder(monkeypatch, tmp_path, tiny_run):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "a_first").symlink_to(tiny_run, target_is_directory=True)
    (runs / "tiny").symlink_to(tiny_run, target_is_directory=True)
    at = open_app(monkeypatch, runs, run="tiny")
    assert at.selectbox(key="run_choice").value == "tiny"
    assert at.selectbox(key="run_choice").options[:2] == ["a_first", "tiny"]
    assert not at.info


def test_link_with_a_folder_path_opens_it(monkeypatch, tmp_path, tiny_run):
    empty = tmp_path / "empty"
    empty.mkdir()
    at = open_app(monkeypatch, empty, run=str(tiny_run))
    assert at.text_input(key="run_path").value == str(tiny_run)
    assert not at.info
    assert {m.label for m in at.metric} >= {"Vocabulary size", "Masked top-1 accuracy"}
    at.switch_page(TOKEN_MAP).run()  # the choice is shared across pages
    assert not at.exception and points_drawn(at)[0] > 0


def test_no_run_says_which_command_builds_one(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    at = open_app(monkeypatch, empty)
    message = at.info[0].value
    assert "make dashboard" in message and f"grover demo --out {empty / 'demo'}" in message
    assert not at.metric
    at.switch_page(TOKEN_MAP).run()
    assert not at.exception
    assert "grover demo --out" in at.info[0].value
    assert not [c for c in at.caption if "points drawn" in c.value]


def test_folder_that_is_not_a_run(monkeypatch, tmp_path):
    at = open_app(monkeypatch, tmp_path, run=str(tmp_path / "nowhere"))
    assert "is not a GROVER Lens run" in at.info[0].value
    assert f"grover demo --out {tmp_path / 'nowhere'}" in at.info[0].value


def test_missing_artifact_names_the_fix(monkeypatch, tmp_path, tiny_run):
    broken = tmp_path / "runs" / "broken"
    broken.mkdir(parents=True)
    for name in (run.MANIFEST, run.TOKENS):
        shutil.copy(tiny_run / name, broken / name)
    at = open_app(monkeypatch, broken.parent)
    artifacts = next(df.value for df in at.dataframe if "produced_by" in df.value.columns)
    assert not artifacts["present"].all()  # the overview shows what is missing
    at.switch_page(TOKEN_MAP).run()
    assert not at.exception
    assert run.TOKEN_PROJECTIONS in at.info[0].value and "grover analyze" in at.info[0].value
