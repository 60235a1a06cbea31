"""GROVER Lens dashboard: the router. Serve with ``make dashboard`` (or ``streamlit run dashboard/app.py``).

This file sets the page config, lets the sidebar choose the run every page shows (kept in session
state and in the link as ``?run=<name>``), and hands over to the page chosen in the navigation.
Pages live one per file in ``dashboard/views/``; they only read artifacts the pipeline wrote.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repository root; the root is
# only importable after `pip install -e .`. Add it so a plain checkout runs too.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from analysis import run  # noqa: E402
from dashboard import exports, loaders, state  # noqa: E402

OTHER_FOLDER = "Other folder…"  # the run select's last option: type a path instead
CHOICE_KEY = "run_choice"  # widget: run select box
PATH_KEY = "run_path"  # widget: run folder text box
QUERY_PARAM = "run"  # ?run=<name in the runs folder, or a path>
# Widget values of pages other than the one shown are dropped at the end of each run; re-assigning
# them here (this file runs on every page) keeps the token map's choices while the user looks elsewhere.
KEPT_ACROSS_PAGES = ("map_layer", "map_method", "map_colour", "map_motif")  # views/token_map.py


def _label(path: Path, root: Path) -> str:
    return path.name if path != root else (path.resolve().name or str(path))


def choose_run() -> None:
    """Draw the run picker in the sidebar and store the chosen run in session state."""
    root = loaders.runs_dir()
    by_label = {_label(p, root): p for p in run.find_runs(root)}
    options = [*by_label, OTHER_FOLDER]

    if CHOICE_KEY not in st.session_state:
        # First run of this session: open the run the link names, if any.
        wanted = st.query_params.get(QUERY_PARAM)
        if wanted in by_label:
            st.session_state[CHOICE_KEY] = wanted
        elif wanted:
            st.session_state[CHOICE_KEY] = OTHER_FOLDER
            st.session_state[PATH_KEY] = wanted
    elif st.session_state[CHOICE_KEY] not in options:  # that run folder disappeared
        del st.session_state[CHOICE_KEY]

    with st.sidebar:
        st.caption(f"Runs folder: `{root}` (set `{loaders.RUNS_DIR_ENV}` to change)")
        choice = st.selectbox("Run", options, key=CHOICE_KEY, help="Run folders found in the runs folder.")
        if choice == OTHER_FOLDER:
            typed = st.text_input("Run folder", key=PATH_KEY, placeholder="path/to/run")
            chosen = Path(typed.strip()).expanduser() if typed and typed.strip() else None
        else:
            chosen = by_label[choice]

    problem = None
    if chosen is None:
        if by_label:
            problem = "Type the path of a run folder in the sidebar."
        else:
            problem = (
                f"No GROVER Lens run found in `{root}`. `make dashboard` builds the demo run there "
                f"and serves this app; or build it yourself with `{loaders.build_command(root / 'demo')}`, "
                "then reload this page."
            )
    elif not run.is_run(chosen):
        problem = (
            f"`{chosen}` is not a GROVER Lens run (no `{run.MANIFEST}`). "
            f"Build one with `{loaders.build_command(chosen)}`, or pick a run in the sidebar."
        )

    st.session_state[loaders.RUN_KEY] = None if problem else str(chosen)
    st.session_state[loaders.RUN_PROBLEM_KEY] = problem
    if not problem:
        # Reflect the choice in the link so it reopens this run.
        st.query_params[QUERY_PARAM] = choice if choice != OTHER_FOLDER else str(chosen)


def presentation_toggle() -> None:
    """Presentation mode (large fonts, no sidebar, one figure per screen); ``?present=1`` opens it."""
    if exports.PRESENT_KEY not in st.session_state:
        st.session_state[exports.PRESENT_KEY] = st.query_params.get("present") == "1"
    with st.sidebar:
        st.toggle("Presentation mode", key=exports.PRESENT_KEY,
                  help="Large fonts, no sidebar, one figure per screen. Leave it by removing `present=1` "
                  "from the link (or press the toggle before hiding the sidebar).")
    if st.session_state[exports.PRESENT_KEY]:
        st.query_params["present"] = "1"
    elif "present" in st.query_params:
        del st.query_params["present"]
    exports.apply_presentation_mode()


st.set_page_config(page_title="GROVER Lens", page_icon=":material/genetics:", layout="wide")

# One file per page in views/; the url_path is what a shared link names.
PAGES = [
    st.Page("views/home.py", title="Runs", icon=":material/folder_open:", default=True),
    st.Page("views/token_map.py", title="Token embedding map", icon=":material/scatter_plot:", url_path="token-map"),
    st.Page("views/self_similarity.py", title="Self-similarity", icon=":material/stacked_line_chart:",
            url_path="self-similarity"),
    st.Page("views/clusters.py", title="GC/AG content clusters", icon=":material/bubble_chart:", url_path="clusters"),
    st.Page("views/annotations.py", title="Chromatin and annotations", icon=":material/map:",
            url_path="annotations"),
    st.Page("views/vocabularies.py", title="Vocabularies", icon=":material/compare_arrows:", url_path="vocabularies"),
    st.Page("views/inspector.py", title="Sequence inspector", icon=":material/search:", url_path="inspector"),
    st.Page("views/compare.py", title="Compare models", icon=":material/difference:", url_path="compare"),
    st.Page("views/benchmarks.py", title="Benchmarks", icon=":material/leaderboard:", url_path="benchmarks"),
]
page = st.navigation(PAGES)
state.keep(*KEPT_ACROSS_PAGES)
choose_run()
presentation_toggle()
page.run()
