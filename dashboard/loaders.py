"""Cached readers of run artifacts, and the run the pages share.

Each loader wraps a reader from ``analysis.run`` in ``st.cache_data`` keyed on the folder and the
file's modification time, so a rebuilt run is read again while an unchanged one is read once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from analysis import run

RUNS_DIR_ENV = "GROVER_RUNS_DIR"  # where the sidebar looks for runs
DEFAULT_RUNS_DIR = "runs"  # relative to the folder the app is started from (what `make dashboard` uses)
RUN_KEY = "run_dir"  # session state: str path of the chosen run, or None
RUN_PROBLEM_KEY = "run_problem"  # session state: why there is no run (text naming the fix), or None

_CACHE_ENTRIES = 16  # a few runs x a few artifacts


def runs_dir() -> Path:
    """Return the folder the sidebar lists runs from (``$GROVER_RUNS_DIR``, default ``runs``)."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def build_command(folder: Path | str | None = None) -> str:
    """Return the shell command that builds a demo run into ``folder`` (default: ``<runs dir>/demo``)."""
    return f"grover demo --out {folder if folder is not None else runs_dir() / 'demo'}"


def _mtime_ns(path: Path) -> int:
    return path.stat().st_mtime_ns


@st.cache_data(show_spinner=False, max_entries=_CACHE_ENTRIES)
def _manifest(run_dir: str, mtime_ns: int) -> dict[str, Any]:
    return run.load_manifest(run_dir)


@st.cache_data(show_spinner=False, max_entries=_CACHE_ENTRIES)
def _tokens(run_dir: str, mtime_ns: int) -> pd.DataFrame:
    return run.load_tokens(run_dir)


@st.cache_data(show_spinner=False, max_entries=_CACHE_ENTRIES)
def _token_projections(run_dir: str, mtime_ns: int) -> pd.DataFrame:
    return run.load_token_projections(run_dir)


@st.cache_data(show_spinner=False, max_entries=_CACHE_ENTRIES)
def _pc_correlations(run_dir: str, mtime_ns: int) -> pd.DataFrame:
    return run.load_pc_correlations(run_dir)


@st.cache_data(show_spinner=False, max_entries=_CACHE_ENTRIES)
def _evaluation(run_dir: str, mtime_ns: int) -> dict[str, Any]:
    return run.load_evaluation(run_dir)


def load_manifest(run_dir: Path | str) -> dict[str, Any]:
    """Return the run's manifest (cached). Raises ``RunNotFoundError`` naming the fix when absent."""
    path = Path(run_dir) / run.MANIFEST
    if not path.is_file():
        return run.load_manifest(run_dir)  # raises RunNotFoundError with the build command
    return _manifest(str(run_dir), _mtime_ns(path))


def load_tokens(run_dir: Path | str) -> pd.DataFrame:
    """Return ``tokens.parquet`` (cached)."""
    return _tokens(str(run_dir), _mtime_ns(run.artifact_path(run_dir, run.TOKENS)))


def load_token_projections(run_dir: Path | str) -> pd.DataFrame:
    """Return ``token_projections.parquet`` (cached)."""
    return _token_projections(str(run_dir), _mtime_ns(run.artifact_path(run_dir, run.TOKEN_PROJECTIONS)))


def load_pc_correlations(run_dir: Path | str) -> pd.DataFrame:
    """Return ``pc_correlations.parquet`` (cached)."""
    return _pc_correlations(str(run_dir), _mtime_ns(run.artifact_path(run_dir, run.PC_CORRELATIONS)))


def load_evaluation(run_dir: Path | str) -> dict[str, Any]:
    """Return ``evaluation.json`` (cached)."""
    return _evaluation(str(run_dir), _mtime_ns(run.artifact_path(run_dir, run.EVALUATION)))


@st.cache_data(show_spinner=False, max_entries=64)
def _table(run_dir: str, name: str, mtime_ns: int) -> pd.DataFrame:
    return run.load_table(run_dir, name)


@st.cache_data(show_spinner=False, max_entries=_CACHE_ENTRIES)
def _token_means(run_dir: str, mtime_ns: int) -> dict[str, Any]:
    return run.load_token_embeddings(run_dir)


@st.cache_data(show_spinner=False, max_entries=_CACHE_ENTRIES)
def _extraction(run_dir: str, mtime_ns: int) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    from grover_core.extract import Extraction

    extraction = Extraction.open(Path(run_dir) / run.EMBEDDINGS_DIR)
    return extraction.info, extraction.windows, extraction.sample_positions()


def load_table(run_dir: Path | str, name: str) -> pd.DataFrame:
    """Return any Parquet artifact of the run (cached on its modification time).

    Raises ``RunNotFoundError`` naming the command that makes it when missing.
    """
    return _table(str(run_dir), name, _mtime_ns(run.artifact_path(run_dir, name)))


def load_token_means(run_dir: Path | str) -> dict[str, Any]:
    """Return ``{"layer_<i>": [vocab, hidden], "count": [vocab]}`` mean token embeddings (cached)."""
    return _token_means(str(run_dir), _mtime_ns(run.artifact_path(run_dir, run.TOKEN_EMBEDDINGS)))


def load_extraction(run_dir: Path | str) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Return ``(extraction.json, windows table, sampled occurrence positions)`` of the run (cached)."""
    marker = run.artifact_path(run_dir, f"{run.EMBEDDINGS_DIR}/extraction.json")
    return _extraction(str(run_dir), _mtime_ns(marker))


def table_or_stop(run_dir: Path | str, name: str) -> pd.DataFrame:
    """Return an artifact table; when it is missing or unreadable, say why and how to fix it, and stop the page.

    A missing file names the command that makes it; a corrupted one says so (the app stays up).
    """
    try:
        return load_table(run_dir, name)
    except run.RunNotFoundError as error:
        st.info(str(error))
    except Exception as error:  # a damaged Parquet file: pyarrow raises many types
        st.error(f"`{name}` in `{run_dir}` could not be read ({type(error).__name__}: {error}). "
                 f"Remake it with `{run.command_for(run_dir, name)}`.")
    st.stop()


def current_run() -> Path | None:
    """Return the run chosen in the sidebar (shared by every page), or None."""
    chosen = st.session_state.get(RUN_KEY)
    return Path(chosen) if chosen else None


def require_run() -> Path:
    """Return the chosen run; without one, say how to build one (``st.info``) and stop the page."""
    chosen = current_run()
    if chosen is None:
        st.info(
            st.session_state.get(RUN_PROBLEM_KEY)
            or f"No GROVER Lens run chosen. `make dashboard` builds the demo run; "
            f"or run `{build_command()}`."
        )
        st.stop()
    return chosen
