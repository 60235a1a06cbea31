"""Cached readers of run artifacts, and the run the pages share.

Each loader wraps a reader from ``analysis.run`` in ``st.cache_data`` keyed on the folder and the
file's modification time, so a rebuilt run is read again while an unchanged one is read once.
``built_once`` keeps what a page builds from them (its figures) the same way, keyed on ``stamp``.
"""
from __future__ import annotations

import os
from collections.abc import Callable
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


def stamp(run_dir: Path | str, *names: str) -> tuple[int, ...]:
    """Return the modification times of files in a run folder (-1 for a missing one): a cache key part
    that changes when any of them is rewritten."""
    return tuple(file_stamp(Path(run_dir) / name) for name in names)


def file_stamp(path: Path | str) -> int:
    """Return the modification time of any file (-1 when missing)."""
    path = Path(path)
    return _mtime_ns(path) if path.exists() else -1


@st.cache_resource(show_spinner=False, max_entries=64)
def _built(kind: str, key: tuple, _build: Callable[[], Any]) -> Any:
    return _build()


def built_once(kind: str, key: tuple, build: Callable[[], Any]) -> Any:
    """Return ``build()``, computed once per ``(kind, key)`` and shared by every session (figures of a page).

    ``key`` must name everything the result depends on: the run folder, the ``stamp`` of each file it
    reads and every widget value. Unlike ``st.cache_data`` the object itself comes back, not a copy
    (a plotly figure is rebuilt and validated again when unpickled, which costs as much as building
    it): never modify what this returns. An exception is raised again and nothing is kept.
    """
    return _built(kind, key, build)


def table_or_none(run_dir: Path | str, name: str) -> pd.DataFrame | None:
    """Return an artifact table, or None after saying why not, so the rest of the page goes on.

    A missing file gets an info naming the command that makes it; a corrupted one an error (the app
    stays up).
    """
    try:
        return load_table(run_dir, name)
    except run.RunNotFoundError as error:
        st.info(str(error))
    except Exception as error:  # a damaged Parquet file: pyarrow raises many types
        st.error(f"`{name}` in `{run_dir}` could not be read ({type(error).__name__}: {error}). "
                 f"Remake it with `{run.command_for(run_dir, name)}`.")
    return None


def table_or_stop(run_dir: Path | str, name: str) -> pd.DataFrame:
    """Return an artifact table; when it is missing or unreadable, say why (``table_or_none``) and stop the page."""
    table = table_or_none(run_dir, name)
    if table is None:
        st.stop()
    return table


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


# The sample positions are read straight from the files (layout documented in grover_core.extract):
# importing that module pulls in torch, seconds on a first page visit, for a few array rows.
_SAMPLE_CHROMOSOME = "sample_chromosome.npy"  # [vocab, K] int32 index into extraction.json "chromosomes"; -1 unused
_SAMPLE_START = "sample_start.npy"  # [vocab, K] int64 0-based start of each sampled occurrence


@st.cache_data(show_spinner=False, max_entries=256)
def _occurrence_contexts(run_dir: str, token_id: int, n: int, width: int, mtime_ns: tuple[int, int]) -> pd.DataFrame:
    import json

    import numpy as np

    from grover_core.tokenized_genome import TokenizedGenome

    embeddings = Path(run_dir) / run.EMBEDDINGS_DIR
    names = json.loads((embeddings / "extraction.json").read_text())["chromosomes"]
    chromosome = np.load(embeddings / _SAMPLE_CHROMOSOME, mmap_mode="r")[token_id]
    start = np.load(embeddings / _SAMPLE_START, mmap_mode="r")[token_id]
    slots = np.flatnonzero(chromosome >= 0)[:n]  # slots are in sampling order: the first n are a uniform sample
    genome = TokenizedGenome.open(Path(run_dir) / run.TOKENIZED_DIR)
    rows = []
    for slot in slots:
        name, position = names[int(chromosome[slot])], int(start[slot])
        ids, starts = genome.ids(name), genome.starts(name)  # memory-mapped
        at = int(np.searchsorted(starts, position))
        found = at < len(starts) and int(starts[at]) == position and int(ids[at]) == token_id
        low, high = max(0, at - width), min(len(ids), at + width + 1)
        rows.append({"slot": int(slot), "chromosome": name, "start": position,
                     "ids": [int(v) for v in ids[low:high]] if found else [],
                     "starts": [int(v) for v in starts[low:high]] if found else [],
                     "centre": at - low if found else -1})
    return pd.DataFrame(rows, columns=["slot", "chromosome", "start", "ids", "starts", "centre"])


def load_occurrence_contexts(run_dir: Path | str, token_id: int, n: int, *, width: int = 5) -> pd.DataFrame:
    """Return the genomic context of the first ``n`` sampled occurrences of a token (cached; memmap reads only).

    The occurrences are the extraction's sample slots of the token (the positions of
    ``load_extraction(run_dir)[2]``), in sampling order: the first ``n`` are a uniform sample of its
    occurrences. Each row: ``slot, chromosome, start`` (0-based), ``ids`` / ``starts`` (token ids and
    starts of up to ``width`` tokens either side and the token itself, from the tokenized genome) and
    ``centre`` (the occurrence's index in them; -1 with empty lists when the tokenized genome holds
    no such token there). Raises ``RunNotFoundError`` naming the fix when a file is missing.
    """
    index = run.artifact_path(run_dir, f"{run.TOKENIZED_DIR}/index.json")
    marker = run.artifact_path(run_dir, f"{run.EMBEDDINGS_DIR}/extraction.json")
    return _occurrence_contexts(str(run_dir), int(token_id), int(n), int(width),
                                (_mtime_ns(index), _mtime_ns(marker)))


# --- Annotations page: the annotation files a run names, read once per file version ---

@st.cache_data(show_spinner=False, max_entries=_CACHE_ENTRIES)
def _annotation_file(path: str, mtime_ns: int, kind: str, label_column: int | None, strand: bool) -> pd.DataFrame:
    from analysis.annotations import read_bed, read_signal

    return read_signal(path) if kind == "signal" else read_bed(path, label_column=label_column, strand=strand)


def load_annotation_file(path: Path | str, *, kind: str = "labels", label_column: int | None = 3,
                         strand: bool = False) -> pd.DataFrame:
    """Return an annotation file as intervals (cached on its path and modification time).

    ``kind="labels"``: ``read_bed`` (``Chromosome, Start, End, Label[, Strand]``); ``"signal"``:
    ``read_signal`` (``Chromosome, Start, End, Value``). Arguments as in the run's
    ``manifest["analysis_config"]["annotations"]``. Raises ``GroverInputError`` naming the file and
    the fix when it is missing or unreadable.
    """
    path = Path(path)
    mtime_ns = _mtime_ns(path) if path.is_file() else -1  # a missing file: the reader raises, naming it
    return _annotation_file(str(path), mtime_ns, kind, label_column, bool(strand))


# --- Runs page: every run's manifest as written (any schema), read once per file version ---

@st.cache_data(show_spinner=False, max_entries=64)
def _manifest_json(run_dir: str, mtime_ns: int) -> Any:
    import json

    return json.loads((Path(run_dir) / run.MANIFEST).read_text())


def load_manifest_json(run_dir: Path | str) -> Any:
    """Return a run's ``manifest.json`` as parsed JSON, without the schema check of ``load_manifest`` (cached).

    For listing runs of any schema. Raises ``RunNotFoundError`` when the file is missing, and
    ``ValueError`` / ``OSError`` when it cannot be read or parsed.
    """
    path = Path(run_dir) / run.MANIFEST
    if not path.is_file():
        return run.load_manifest(run_dir)  # raises RunNotFoundError with the build command
    return _manifest_json(str(run_dir), _mtime_ns(path))


def _folder_mtime_ns(folder: Path) -> int:
    """Newest modification time of the files directly in ``folder`` (a rewritten model reloads)."""
    return max((p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()), default=_mtime_ns(folder))


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def _model_and_tokenizer(model_dir: str, mtime_ns: int):
    from grover_core.model import load_model_and_tokenizer as load

    return load(Path(model_dir))


def load_model_and_tokenizer(run_dir: Path | str):
    """Return ``(model, tokenizer)`` of the run's ``model/`` folder, loaded once per process (cached resource).

    The model is in eval mode and shared by every session: never train or modify it. Raises
    ``RunNotFoundError`` naming the fix when the folder is missing, ``GroverInputError`` when it
    cannot be loaded (the message says why).
    """
    folder = run.artifact_path(run_dir, run.MODEL_DIR)
    return _model_and_tokenizer(str(folder), _folder_mtime_ns(folder))


# --- Vocabularies page: other vocabularies of the run, their tokenizers, and a slice of the genome ---

def vocabulary_path(name: str) -> str:
    """Return the artifact name of vocabulary ``name``'s folder in a run (``vocabularies/<name>``)."""
    return f"{run.VOCABULARIES_DIR}/{name}"


@st.cache_data(show_spinner=False, max_entries=32)
def _vocabulary(folder: str, mtime_ns: tuple[int, int]) -> tuple[pd.DataFrame, dict[str, Any]]:
    from analysis.vocabulary import read_vocabulary_report

    return read_vocabulary_report(folder)


def load_vocabulary(run_dir: Path | str, name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return ``(vocabulary_tokens.parquet, vocabulary_summary.json)`` of vocabulary ``name`` (cached).

    Raises ``RunNotFoundError`` naming the fix when a file is missing; a damaged file raises what its
    reader raises (pyarrow or json errors).
    """
    from analysis.vocabulary import VOCABULARY_SUMMARY, VOCABULARY_TOKENS

    folder = vocabulary_path(name)
    tokens = run.artifact_path(run_dir, f"{folder}/{VOCABULARY_TOKENS}")
    summary = run.artifact_path(run_dir, f"{folder}/{VOCABULARY_SUMMARY}")
    return _vocabulary(str(Path(run_dir) / folder), (_mtime_ns(tokens), _mtime_ns(summary)))


@st.cache_resource(show_spinner=False, max_entries=16)
def _tokenizer(folder: str, mtime_ns: int):
    from grover_core.tokenizer import load_tokenizer

    return load_tokenizer(folder)


def load_vocabulary_tokenizer(run_dir: Path | str, name: str):
    """Return the tokenizer of vocabulary ``name`` (cached resource, shared by sessions: never modify it).

    Raises ``RunNotFoundError`` naming the fix when ``tokenizer.json`` is missing.
    """
    marker = run.artifact_path(run_dir, f"{vocabulary_path(name)}/tokenizer.json")
    return _tokenizer(str(marker.parent), _mtime_ns(marker))


@st.cache_data(show_spinner=False, max_entries=64)
def _genome_slice(fasta: str, mtime_ns: int, chromosome: str, start: int, end: int) -> str:
    from grover_core.genome import iter_fasta

    for _, letters in iter_fasta(fasta, chromosomes=[chromosome]):
        return letters[start:end].decode("ascii", errors="replace").upper()
    return ""


def load_genome_slice(fasta: Path | str, chromosome: str, start: int, end: int) -> str:
    """Return the upper-case letters ``[start, end)`` (0-based) of one chromosome of a FASTA/.2bit (cached).

    Reads only that chromosome. Raises ``FileNotFoundError`` when the file is gone and
    ``GroverInputError`` when it cannot be read or lacks the chromosome.
    """
    path = Path(fasta)
    if not path.is_file():
        raise FileNotFoundError(f"the genome {path} is not there any more")
    return _genome_slice(str(path), _mtime_ns(path), str(chromosome), int(start), int(end))


# --- Benchmarks page: the run's fine-tuning task tables, without their sequences ---

TASK_SUMMARY_COLUMNS = ["label", "chromosome", "split"]  # enough for sizes per split and positive shares


@st.cache_data(show_spinner=False, max_entries=_CACHE_ENTRIES)
def _task_tables(folder: str, files: tuple[tuple[str, int], ...]) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(Path(folder) / f"{name}.parquet", columns=TASK_SUMMARY_COLUMNS) for name, _ in files}


def load_task_tables(run_dir: Path | str) -> dict[str, pd.DataFrame]:
    """Return ``{task: table}`` of the run's ``experiments/tasks/*.parquet``, only ``label, chromosome, split`` (cached).

    Empty when the run has no task tables; a damaged file raises what pyarrow raises.
    """
    folder = Path(run_dir) / run.TASKS_DIR
    if not folder.is_dir():
        return {}
    files = tuple(sorted((p.stem, _mtime_ns(p)) for p in folder.glob("*.parquet") if p.is_file()))
    return _task_tables(str(folder), files) if files else {}
