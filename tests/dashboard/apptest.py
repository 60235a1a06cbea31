"""What the page tests share: opening one page of the app under AppTest, reading what it shows, and
copies of the tiny run with files missing or damaged."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
TIMEOUT = 60  # s per script run: the first imports pandas, plotly and pyarrow


def open_page(monkeypatch, runs_dir: Path, page: str, **query: str) -> AppTest:
    """The app with ``GROVER_RUNS_DIR=runs_dir`` and the link ``query``, switched to ``page`` (views/<file>.py)."""
    monkeypatch.setenv("GROVER_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_tab(at: AppTest, key: str, label: str) -> AppTest:
    """Click the tab ``label`` of the tabs with widget ``key`` (lazy tabs keep their label in session state)."""
    at.session_state[key] = label
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def caption(at: AppTest, text: str) -> str:
    """The one caption containing ``text``."""
    found = [c.value for c in at.caption if text in c.value]
    assert len(found) == 1, [c.value for c in at.caption]
    return found[0]


def param(at: AppTest, name: str) -> str:
    """A link parameter's value."""
    value = at.query_params[name]
    return value[0] if isinstance(value, list) else value


def chart_specs(at: AppTest) -> list[dict]:
    """The plotly figures of the page, as the JSON the browser gets."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def copy_run(tiny_run: Path, dest: Path, *, drop: tuple[str, ...] = (), corrupt: tuple[str, ...] = ()) -> Path:
    """A copy of the tiny run in ``dest/tiny`` without the ``drop`` paths and with garbage in ``corrupt``;
    returns ``dest`` (a runs folder)."""
    out = dest / "tiny"
    shutil.copytree(tiny_run, out)
    for name in drop:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in corrupt:
        (out / name).write_bytes(b"this is not a valid file \x00\xff" * 10)
    return dest
