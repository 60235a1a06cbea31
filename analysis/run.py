"""The run folder: where the pipeline writes its artifacts and the dashboard reads them.

A run folder holds one model's analyses. Its ``manifest.json`` says what each file is, which
function produced it and with which parameters (provenance), so a figure can say how it was made.

Layout (schema version 2)::

    manifest.json                  what is here (see ``MANIFEST``): artifacts and analyses with provenance
    tokenizer/                     Hugging Face tokenizer folder (vocabulary stage)
    model/                         Hugging Face model folder (config, safetensors, tokenizer)
    tokenized/                     the tokenized genome: <chrom>.ids.npy, <chrom>.starts.npy
    training_log.jsonl             one JSON object per logged training step
    evaluation.json                held-out masked-token accuracy of the model and baselines
    embeddings/                    the genome-wide extraction (``grover_core.extract``): token means,
                                   sampled occurrences per token, window [CLS]/mean embeddings
    tokens.parquet                 one row per vocabulary token (TOKEN_COLUMNS + annotation shares)
    token_projections.parquet      one row per (layer, method, token): x, y (PROJECTION_COLUMNS)
    pc_correlations.parquet        Spearman of leading PCs with token properties, per layer
    window_projections.parquet     one row per (layer, method, window): x, y
    self_similarity*.parquet       per token and layer; the anisotropy baseline; by token group
    intra_window_similarity.parquet
    token_clusters.parquet         layer, method, token_id, cluster; cluster_profiles / cluster_enrichment
    window_annotations.parquet     windows with majority label and label fractions per annotation
    probe_scores.parquet           probe MCC / balanced accuracy per annotation and layer, k-mer baseline
    experiments/                   the paper's experiments (``grover_lens.experiments``): tasks/<task>.parquet
                                   (fine-tuning sets), finetune_results.parquet, nextkmer_results.parquet
    vocabularies/                  bpe_<n>/, kmer_<k>/ (tokenizer, vocabulary_tokens.parquet, summary);
                                   comparison/<table>.parquet (how they segment the same regions)

Schema 1 (before the extraction folder) is not read: such runs are rebuilt.

Functions here only read; writing belongs to the pipeline (``grover_lens.pipeline``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SCHEMA_VERSION = 2

MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"
MODEL_DIR = "model"
TOKENIZED_DIR = "tokenized"
TRAINING_LOG = "training_log.jsonl"
EVALUATION = "evaluation.json"
TOKENS = "tokens.parquet"
EMBEDDINGS_DIR = "embeddings"
TOKEN_EMBEDDINGS = "embeddings/token_means.safetensors"
TOKEN_PROJECTIONS = "token_projections.parquet"
PC_CORRELATIONS = "pc_correlations.parquet"
WINDOW_PROJECTIONS = "window_projections.parquet"
SELF_SIMILARITY = "self_similarity.parquet"
SELF_SIMILARITY_BASELINE = "self_similarity_baseline.parquet"
SELF_SIMILARITY_GROUPS = "self_similarity_groups.parquet"
INTRA_WINDOW_SIMILARITY = "intra_window_similarity.parquet"
TOKEN_CLUSTERS = "token_clusters.parquet"
CLUSTER_PROFILES = "cluster_profiles.parquet"
CLUSTER_ENRICHMENT = "cluster_enrichment.parquet"
WINDOW_ANNOTATIONS = "window_annotations.parquet"
VOCABULARIES_DIR = "vocabularies"  # other vocabularies of the genome: <name>/ reports, comparison/ tables
VOCABULARY_COMPARISON_TABLES = ("summary", "agreement", "shared", "lengths", "regions")
PROBE_SCORES = "probe_scores.parquet"
EXPERIMENTS_DIR = "experiments"
TASKS_DIR = "experiments/tasks"  # <task>.parquet: TASK_COLUMNS, one table per fine-tuning task
FINETUNE_RESULTS = "experiments/finetune_results.parquet"  # FINETUNE_RESULT_COLUMNS
NEXTKMER_RESULTS = "experiments/nextkmer_results.parquet"  # NEXTKMER_RESULT_COLUMNS

# tokens.parquet: one row per vocabulary entry, special tokens included (is_special=True).
TOKEN_COLUMNS = (
    "token_id",    # int: id in the tokenizer
    "token",       # str: nucleotides (or the special token's name)
    "is_special",  # bool
    "length",      # int: nucleotides
    "frequency",   # int: occurrences in the tokenized genome
    "gc",          # float in [0, 1]: (G + C) / length
    "ag",          # float in [0, 1]: (A + G) / length (a strand signal)
    "ac",          # float in [0, 1]: (A + C) / length
    "cpg",         # int: number of CG dinucleotides inside the token
    "embedding_count",  # int: occurrences seen by embedding extraction
)
# experiments/tasks/<task>.parquet: one row per example (extra columns allowed, e.g. strand, score).
TASK_COLUMNS = (
    "sequence",    # str: upper-case nucleotides
    "label",       # int: class index
    "chromosome",  # str
    "start",       # int: 0-based, half-open
    "end",         # int
    "split",       # str: "train", "validation" or "test" (by chromosome)
)
# The method column of the results tables.
FINE_TUNED = "fine-tuned"
TFIDF_BASELINE = "tf-idf k-mer baseline"
FREQUENCY_BASELINE = "frequency baseline"
CHANCE = "chance"
# experiments/finetune_results.parquet: one row per (task, model, method).
FINETUNE_RESULT_COLUMNS = (
    "task",       # str: "prom300", "promscan", "ctcf" or a user table's name
    "model",      # str: the model's name (run or folder name); the baseline's own name for baselines
    "method",     # str: "fine-tuned" or "tf-idf k-mer baseline"
    "mcc", "accuracy", "macro_f1", "precision", "recall",  # float: on the held-out (test) split
    "n_train", "n_test",  # int
    "seconds",    # float: wall time of fitting and scoring
)
# experiments/nextkmer_results.parquet: one row per (vocabulary, k, method).
NEXTKMER_RESULT_COLUMNS = (
    "vocabulary",       # str: e.g. "bpe_600", "kmer_4"
    "vocabulary_kind",  # str: "bpe" or "kmer"
    "bpe_cycles",       # float: BPE merge cycles (NaN for k-mer vocabularies)
    "kmer_size",        # float: k of a fixed k-mer vocabulary (NaN for BPE)
    "k",                # int: nucleotides to predict (a 4**k-class problem)
    "method",           # str: "fine-tuned", "frequency baseline" or "chance"
    "accuracy",         # float: on the held-out sequences
    "n_train", "n_test",  # int
    "seconds",          # float
)

# token_projections.parquet
PROJECTION_COLUMNS = ("layer", "method", "token_id", "x", "y")
PROJECTION_METHODS = ("umap", "pca")
# pc_correlations.parquet
PC_CORRELATION_COLUMNS = ("layer", "component", "property", "spearman", "explained_variance_ratio")
TOKEN_PROPERTIES = ("frequency", "length", "gc", "ag", "ac")


class RunNotFoundError(FileNotFoundError):
    """The folder is not a run (no manifest), or a file the manifest names is missing."""


def is_run(path: str | os.PathLike) -> bool:
    """Return True when ``path`` is a folder holding a ``manifest.json``."""
    return (Path(path) / MANIFEST).is_file()


def find_runs(runs_dir: str | os.PathLike) -> list[Path]:
    """Return the run folders directly inside ``runs_dir`` (and ``runs_dir`` itself if it is one), sorted by name."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    found = [root] if is_run(root) else []
    found += sorted(p for p in root.iterdir() if p.is_dir() and is_run(p))
    return found


def load_manifest(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Return the parsed manifest of a run.

    Raises
    ------
    RunNotFoundError
        When the folder holds no manifest (with the command that builds one).
    ValueError
        When the manifest's schema version is newer than this code reads.
    """
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise RunNotFoundError(
            f"{run_dir} is not a GROVER Lens run (no {MANIFEST}). Build one with `grover demo --out {run_dir}`."
        )
    manifest = json.loads(path.read_text())
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        fix = ("Upgrade GROVER Lens to read it." if newer else
               f"Rebuild it with `grover demo --out {run_dir}` (or `grover build`).")
        raise ValueError(f"{path} has schema version {version!r}; this GROVER Lens reads version "
                         f"{SCHEMA_VERSION}. {fix}")
    return manifest


# Which command writes each artifact (for messages that name the fix).
_MADE_BY_ANALYSIS = {
    TOKENS: "tokens", TOKEN_PROJECTIONS: "token_projections", PC_CORRELATIONS: "token_projections",
    WINDOW_PROJECTIONS: "window_projections", SELF_SIMILARITY: "self_similarity",
    SELF_SIMILARITY_BASELINE: "self_similarity", SELF_SIMILARITY_GROUPS: "self_similarity",
    INTRA_WINDOW_SIMILARITY: "self_similarity", TOKEN_CLUSTERS: "clusters", CLUSTER_PROFILES: "clusters",
    CLUSTER_ENRICHMENT: "clusters", WINDOW_ANNOTATIONS: "window_annotations", PROBE_SCORES: "probes",
}


def command_for(run_dir: str | os.PathLike, name: str) -> str:
    """Return the command that (re)makes artifact ``name`` of a run."""
    if name in _MADE_BY_ANALYSIS:
        return f"grover analyze {run_dir} --only {_MADE_BY_ANALYSIS[name]}"
    if name == EMBEDDINGS_DIR or name.startswith(EMBEDDINGS_DIR + "/"):
        return f"grover embed {run_dir}"
    if name == FINETUNE_RESULTS or name.startswith(TASKS_DIR):
        return f"grover finetune --run {run_dir}"
    if name == NEXTKMER_RESULTS:
        return f"grover nextkmer --run {run_dir}"
    if name == VOCABULARIES_DIR or name.startswith(VOCABULARIES_DIR + "/"):
        return f"grover vocab compare --run {run_dir}"
    return f"grover demo --out {run_dir}"


def artifact_path(run_dir: str | os.PathLike, name: str) -> Path:
    """Return the path of a run artifact, raising ``RunNotFoundError`` naming the fix when it is missing."""
    path = Path(run_dir) / name
    if not path.exists():
        raise RunNotFoundError(f"Did not find {name} in {run_dir}. Make it with `{command_for(run_dir, name)}`.")
    return path


def has_artifact(run_dir: str | os.PathLike, name: str) -> bool:
    """Return True when the run holds artifact ``name``."""
    return (Path(run_dir) / name).exists()


def vocabulary_names(run_dir: str | os.PathLike) -> list[str]:
    """Return the vocabularies stored under ``vocabularies/`` (BPE by cycles, then k-mers by k)."""
    root = Path(run_dir) / VOCABULARIES_DIR
    if not root.is_dir():
        return []
    names = [p.name for p in root.iterdir() if (p / "vocabulary_tokens.parquet").is_file()]
    return sorted(names, key=lambda n: (n.startswith("kmer"), int(n.split("_")[-1]) if n.split("_")[-1].isdigit() else 0, n))


def load_table(run_dir: str | os.PathLike, name: str) -> pd.DataFrame:
    """Return any Parquet artifact of the run (``SELF_SIMILARITY``, ``PROBE_SCORES`` ...)."""
    return pd.read_parquet(artifact_path(run_dir, name))


def load_tokens(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Return ``tokens.parquet``: one row per vocabulary token with the columns in ``TOKEN_COLUMNS``."""
    return pd.read_parquet(artifact_path(run_dir, TOKENS))


def load_token_projections(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Return ``token_projections.parquet`` with the columns in ``PROJECTION_COLUMNS``."""
    return pd.read_parquet(artifact_path(run_dir, TOKEN_PROJECTIONS))


def load_pc_correlations(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Return ``pc_correlations.parquet`` with the columns in ``PC_CORRELATION_COLUMNS``."""
    return pd.read_parquet(artifact_path(run_dir, PC_CORRELATIONS))


def load_evaluation(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Return ``evaluation.json``: held-out masked-token metrics of the model and its baseline."""
    return json.loads(artifact_path(run_dir, EVALUATION).read_text())


def load_token_embeddings(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Return ``{"layer_0": [vocab, hidden], ..., "count": [vocab]}`` from the safetensors file."""
    from safetensors.numpy import load_file

    return load_file(str(artifact_path(run_dir, TOKEN_EMBEDDINGS)))


def layers_in(projections: pd.DataFrame) -> list[int]:
    """Return the sorted layer indices present in a projections table (0 = input embeddings)."""
    return sorted(int(v) for v in projections["layer"].unique())
