"""The GROVER paper's experiments on a run: fine-tuning tasks and next-k-mer vocabulary selection.

Three verbs, each writing under the run's ``experiments/`` folder (layout in ``analysis.run``):

* ``build_tasks``: the fine-tuning task tables (Prom300, PromScan, CTCF from ``grover_core.tasks``;
  users' own tables) -> ``experiments/tasks/<task>.parquet`` + ``<task>.json``.
* ``finetune_tasks``: each model fine-tuned on each task and scored on its test split, beside the
  TF-IDF k-mer baseline -> ``experiments/finetune_results.parquet`` (``FINETUNE_RESULT_COLUMNS``).
* ``vocabulary_selection``: the paper's vocabulary experiment end to end. One small model per
  vocabulary (BPE at several cycle counts, fixed k-mers), all pretrained with the same budget, each
  fine-tuned to predict the next k nucleotides -> ``experiments/nextkmer_results.parquet``
  (``NEXTKMER_RESULT_COLUMNS``); the models stay under ``experiments/nextkmer/<vocabulary>/model``.

Results tables accumulate. A call replaces the rows of the same (task, model, method), or
(vocabulary, k, method), and keeps every other row, so results made elsewhere (the published
GROVER's, fine-tuned on a GPU) can sit in the same table. Rows are written as each model finishes:
an interrupted call keeps what it completed. Beside each table a JSON file of the same name holds one
record per row key: the config used, the model's path, the command, library versions and what the
table has no column for (epochs run, learning rate, class weights, pretraining loss). Every file is
written atomically (``grover_core.atomic``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import analysis.run as run_format
from grover_core.atomic import atomic_path, atomic_write_text
from grover_core.bpe import BPEConfig
from grover_core.errors import GroverInputError
from grover_core.finetune import FinetuneConfig
from grover_core.nextkmer import NextKmerConfig
from grover_core.pretrain import PretrainConfig
from grover_core.tasks import CtcfConfig, Prom300Config, PromScanConfig
from grover_lens.analyze import jsonable, library_versions

DEMO_TASKS = ("prom300", "promscan", "ctcf")  # the paper's three tasks, built from annotation files
TSS_FILE = "tss.bed"  # beside a demo genome's FASTA: TSSs (BED6) for Prom300 and PromScan
CTCF_FILE = "ctcf_sites.bed"  # beside a demo genome's FASTA: CTCF sites, 7th column bound 1 / unbound 0
CTCF_BOUND_COLUMN = 7
BASELINE_MODEL = "tf-idf k-mer"  # the model name of the TF-IDF baseline's rows
FINETUNED_DIR = "experiments/finetuned"  # <task>/<model>/: fine-tuned folders kept with keep_models
NEXTKMER_DIR = "experiments/nextkmer"  # <vocabulary>/model: the models pretrained per vocabulary
FINETUNE_KEY = ("task", "model", "method")
NEXTKMER_KEY = ("vocabulary", "k", "method")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # task names become file names
_TRUNCATION_SAMPLE = 256  # test sequences tokenized to estimate how many the model truncates


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskBuildConfig:
    """How ``build_tasks`` cuts the paper's tasks (each table's JSON records its part)."""

    prom300: Prom300Config = field(default_factory=Prom300Config)
    promscan: PromScanConfig = field(default_factory=PromScanConfig)
    # bound_column None here; build_tasks reads column 7 of the demo's ctcf_sites.bed (or ctcf_bound_column=).
    ctcf: CtcfConfig = field(default_factory=CtcfConfig)


@dataclass(frozen=True)
class FinetuneExperimentConfig:
    """One ``finetune_tasks`` call: how every model is fine-tuned, and the baseline beside it.

    Each model trains for ``finetune.epochs``, or more on a small task: enough epochs for ``min_steps``
    optimizer steps. The learning rate depends on the model's width: GROVER-sized encoders (BERT-base, the published
    GROVER) fine-tune at ``finetune.learning_rate`` (2e-5), while our small demo models (hidden size up
    to ``small_hidden_size``: grover-tiny, grover-test, grover-small) learn nothing at that rate and use
    ``small_model_learning_rate``. Set it to None to use ``finetune.learning_rate`` for every model.
    Early stopping (``finetune.early_stopping_patience``) runs only on tasks with validation rows.
    """

    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(
        epochs=4, batch_size=32, early_stopping_patience=3, log_every=0))
    # Small tasks get more epochs, up to this many optimizer steps: the demo's Prom300 (92 training rows,
    # 3 steps an epoch) learns nothing in 4 epochs and reaches MCC ~0.6 in 100 steps.
    min_steps: int = 100
    small_model_learning_rate: float | None = 1e-3  # tiny models fine-tune at about 1e-3 (grover_core.finetune)
    small_hidden_size: int = 256  # models this wide or narrower count as small
    max_train_examples: int | None = None  # subsample the train split (seeded) to this many; None: all
    keep_models: bool = False  # save each fine-tuned model under experiments/finetuned/<task>/<model>/
    baseline: bool = True  # fit the TF-IDF k-mer baseline once per task
    baseline_k_values: tuple[int, ...] = (3, 4, 5, 6)  # k-mer lengths the baseline counts
    # A task is unbalanced when its rarest class holds less than this share of the training rows
    # (PromScan and CTCF on the demo genome: about 10% positives); the baseline then weighs classes
    # inversely to their frequency (class_weight="balanced"), so it cannot score by predicting 0 only.
    unbalanced_below: float = 0.3
    seed: int = 0  # the train subsample and the baseline (fine-tuning draws from finetune.seed)

    def __post_init__(self):
        if self.min_steps < 0:
            raise GroverInputError("FinetuneExperimentConfig.min_steps must be 0 (off) or more.")
        if self.max_train_examples is not None and self.max_train_examples < 2:
            raise GroverInputError("FinetuneExperimentConfig.max_train_examples must be at least 2 (or None: all).")
        if self.small_model_learning_rate is not None and self.small_model_learning_rate <= 0:
            raise GroverInputError("FinetuneExperimentConfig.small_model_learning_rate must be positive (or None).")
        object.__setattr__(self, "baseline_k_values", tuple(self.baseline_k_values))

    @classmethod
    def tiny(cls) -> FinetuneExperimentConfig:
        """Seconds-scale settings for tests: two short epochs on at most 200 training rows."""
        return cls(finetune=FinetuneConfig(epochs=2, batch_size=16, learning_rate=3e-3, early_stopping_patience=1,
                                           log_every=0),
                   min_steps=0, small_model_learning_rate=None, max_train_examples=200, baseline_k_values=(3, 4))


@dataclass(frozen=True)
class VocabularyModel:
    """A pretrained model to score on next-k-mer prediction as it is (``vocabulary_selection(models=)``)."""

    path: str  # model folder with its tokenizer (a k-mer tokenizer needs its grover_vocabulary.json)
    kind: str = "bpe"  # "bpe" or "kmer": the vocabulary_kind column
    cycles: float = math.nan  # BPE merge cycles (NaN for k-mers)
    kmer_size: float = math.nan  # k of a fixed k-mer vocabulary (NaN for BPE)


@dataclass(frozen=True)
class VocabularySelectionConfig:
    """The paper's vocabulary experiment, CPU-sized for the demo genome: about 3 minutes per vocabulary
    on one CPU core (pretraining 2/3 of it), so some 20 minutes for the default seven vocabularies.

    Every vocabulary gets the same model shape (``model_preset`` with ``max_position_embeddings``
    fitting the pretraining window) and the same pretraining (``pretrain``: steps, batch and window
    in tokens), so each model sees the same number of tokens; the next-k-mer data (``nextkmer``) is the
    same for all. ``nextkmer.chromosomes`` is replaced by ``chromosomes``, or by the run's held-out
    chromosomes when that is empty; pretraining holds the same chromosomes out (unless
    ``pretrain.held_out_chromosomes`` names others), so no model has seen the sequences it is tested on.
    """

    cycles: tuple[int, ...] = (50, 100, 200, 400, 600)  # BPE merge cycles (the paper: 100 to 5,000; 600 chosen)
    kmers: tuple[int, ...] = (4, 6)  # fixed non-overlapping k-mer vocabularies (the paper's baselines)
    bpe: BPEConfig = field(default_factory=BPEConfig)  # learning options; cycles is set to the largest needed
    model_preset: str = "grover-tiny"
    model_overrides: dict = field(default_factory=dict)
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(
        steps=300, batch_size=32, max_window_tokens=128, learning_rate=1e-3, warmup_steps=30, log_every=20))
    nextkmer: NextKmerConfig = field(default_factory=lambda: NextKmerConfig(
        k_values=(2, 3, 4, 5, 6), n_train=2000, n_test=500,
        finetune=FinetuneConfig(epochs=2, batch_size=32, learning_rate=1e-3, log_every=0)))
    chromosomes: tuple[str, ...] = ()  # next-k-mer sequences come from these; empty: the run's held-out ones
    seed: int = 0  # model initialisation (pretraining order: pretrain.seed)

    def __post_init__(self):
        for name in ("cycles", "kmers", "chromosomes"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, (str, int)) else tuple(value))
        if any(not isinstance(c, (int, np.integer)) or c < 1 for c in self.cycles):
            raise GroverInputError(f"VocabularySelectionConfig.cycles must be positive whole numbers, "
                                   f"got {self.cycles}.")
        if any(not isinstance(k, (int, np.integer)) or not 1 <= k <= 8 for k in self.kmers):
            raise GroverInputError(f"VocabularySelectionConfig.kmers must be whole numbers from 1 to 8, "
                                   f"got {self.kmers}.")

    @classmethod
    def tiny(cls) -> VocabularySelectionConfig:
        """Seconds-scale settings for tests: grover-test models, 10 pretraining steps, k = 2 and 3."""
        return cls(cycles=(30, 60), kmers=(3,), model_preset="grover-test",
                   pretrain=PretrainConfig(steps=10, batch_size=8, max_window_tokens=64, learning_rate=2e-3,
                                           warmup_steps=2, log_every=5),
                   nextkmer=NextKmerConfig(k_values=(2, 3), n_train=200, n_test=100, block_nt=5000,
                                           finetune=FinetuneConfig(epochs=1, batch_size=32, learning_rate=3e-3,
                                                                   log_every=0)))


# ----------------------------------------------------------------------------------------------
# The run: manifest, genome, held-out chromosomes, results tables
# ----------------------------------------------------------------------------------------------

def _manifest(run_dir: Path) -> dict:
    """The run's manifest; a missing run is a ``RunNotFoundError``, an unreadable one a GroverInputError."""
    try:
        return run_format.load_manifest(run_dir)
    except run_format.RunNotFoundError:
        raise
    except (ValueError, OSError) as error:  # schema version, broken JSON
        raise GroverInputError(str(error).splitlines()[0]) from None


def run_genome(run_dir: str | Path, genome: str | Path | None = None) -> Path:
    """Return the genome FASTA of a run (``genome`` when given, else the manifest's), checked to exist."""
    run_dir = Path(run_dir)
    if genome is not None:
        path = Path(genome)
        if not path.is_file():
            raise GroverInputError(f"genome file not found: {path} (--genome). Give a FASTA or 2bit genome file.")
        return path
    fasta = (_manifest(run_dir).get("genome") or {}).get("fasta")
    if not fasta or not Path(fasta).is_file():
        raise GroverInputError(f"the genome of run {run_dir} ({fasta}) is not there any more; give its path with "
                               "--genome (Python: genome=).")
    return Path(fasta)


def _held_out_chromosomes(run_dir: Path) -> tuple[str, ...]:
    """The chromosomes the run's model never trained on (the manifest's record; else the genome's last)."""
    held = ((_manifest(run_dir).get("training") or {}).get("held_out_chromosomes")) or []
    if held:
        return tuple(held)
    from grover_core.tokenized_genome import TokenizedGenome

    return tuple(TokenizedGenome.open(run_dir / run_format.TOKENIZED_DIR).chromosomes[-1:])


def _check_name(name: str, what: str, *, strict: bool = True) -> str:
    """A task name becomes a file name (``strict``: letters, digits and ``. _ + -``); a model's or
    vocabulary's becomes a folder name at most (anything but a path)."""
    if strict and not (isinstance(name, str) and _NAME.match(name)):
        raise GroverInputError(f"{what} name {name!r} must start with a letter or digit and hold only letters, "
                               "digits and . _ + - (it becomes a file name).")
    if not strict and (not isinstance(name, str) or not name.strip() or name in (".", "..")
                       or "/" in name or "\\" in name):
        raise GroverInputError(f"{what} name {name!r} must be a non-empty name without / or \\.")
    return name


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _read_results(path: Path, columns: Sequence[str]) -> pd.DataFrame | None:
    """An existing results table (None when there is none), refused when it cannot be merged into."""
    if not path.exists():
        return None
    try:
        table = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises many types for a damaged file
        raise GroverInputError(f"{path} cannot be read ({type(error).__name__}); move it away so that a new "
                               "one can be written (its rows would be lost otherwise).") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise GroverInputError(f"{path} lacks the columns {', '.join(missing)}; move it away so that a new one can "
                               "be written.")
    return table


def _same_key(table: pd.DataFrame, rows: pd.DataFrame, key: Sequence[str]) -> np.ndarray:
    """True for the rows of ``table`` whose key occurs in ``rows``."""
    wanted = set(rows[list(key)].itertuples(index=False, name=None))
    return np.array([tuple(r) in wanted for r in table[list(key)].itertuples(index=False, name=None)], dtype=bool)


def merge_results(run_dir: str | Path, name: str, rows: pd.DataFrame, *, key: Sequence[str],
                  columns: Sequence[str], records: Sequence[dict] = (), record_key: Sequence[str] | None = None
                  ) -> Path:
    """Write ``rows`` into the run's results table ``name``: rows with the same ``key`` are replaced, the
    others kept (old rows first, new rows after). Return the table's path.

    ``records`` (dicts holding the ``record_key`` fields; default ``key``) replace the records of the same
    key in the JSON beside the table (``<name>.json``: ``{"key": [...], "records": [...]}``). Both files
    are written atomically.
    """
    path = Path(run_dir) / name
    rows = rows[list(columns)]
    old = _read_results(path, columns)
    if old is not None and len(old):
        kept = old[~_same_key(old, rows, key)]
        table = pd.concat([kept, rows], ignore_index=True) if len(kept) else rows.reset_index(drop=True)
    else:
        table = rows.reset_index(drop=True)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    json_path = path.with_suffix(".json")
    kept_records = []
    if json_path.is_file():
        try:
            kept_records = json.loads(json_path.read_text()).get("records", [])
        except (json.JSONDecodeError, AttributeError):
            kept_records = []  # provenance only: a damaged record file is rewritten
    record_key = list(record_key or key)
    new_keys = {tuple(r.get(k) for k in record_key) for r in records}
    kept_records = [r for r in kept_records if tuple(r.get(k) for k in record_key) not in new_keys]
    atomic_write_text(json_path, json.dumps({"table": path.name, "key": record_key,
                                             "records": kept_records + [_plain(r) for r in records]}, indent=2) + "\n")
    return path


def _plain(value):
    """``value`` as JSON types (``jsonable``), with NaN as null: strict JSON readers refuse NaN."""
    def nan_to_none(v):
        if isinstance(v, dict):
            return {k: nan_to_none(x) for k, x in v.items()}
        if isinstance(v, list):
            return [nan_to_none(x) for x in v]
        return None if isinstance(v, float) and math.isnan(v) else v

    return nan_to_none(jsonable(value))


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


def _quiet_transformers() -> None:
    """Our lines say what happens: no weight-loading and shard-writing bars from transformers."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


# ----------------------------------------------------------------------------------------------
# 1. Task tables
# ----------------------------------------------------------------------------------------------

def demo_task_inputs(run_dir: str | Path, genome: str | Path | None = None) -> dict[str, Path]:
    """Return the annotation files found beside the run's genome: ``{"tss": ..., "ctcf": ...}`` (those present)."""
    folder = run_genome(run_dir, genome).parent
    found = {"tss": folder / TSS_FILE, "ctcf": folder / CTCF_FILE}
    return {kind: path for kind, path in found.items() if path.is_file()}


def available_demo_tasks(run_dir: str | Path) -> tuple[str, ...]:
    """Return the paper's tasks ``build_tasks`` can make from the files beside the run's genome alone
    (none when the genome itself is gone)."""
    try:
        inputs = demo_task_inputs(run_dir)
    except GroverInputError:
        return ()
    return tuple(t for t in DEMO_TASKS if ("ctcf" if t == "ctcf" else "tss") in inputs)


def _annotation_file(given, found: Path | None, *, task: str, what: str, option: str, argument: str,
                     default_name: str, fasta: Path) -> Path:
    """The annotation file a task reads: the one given (checked), else the demo file beside the genome."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise GroverInputError(f"{what} file not found: {path} ({option}). Give the path of a BED file.")
        return path
    if found is None:
        raise GroverInputError(f"{task} needs a {what} file: none given and no {default_name} beside the genome "
                               f"{fasta}. Give one with {option} BED (Python: {argument}=), or leave {task} out.")
    return found


def build_tasks(run_dir: str | Path, *, tasks: Sequence[str] = DEMO_TASKS, genome: str | Path | None = None,
                tss_bed: str | Path | None = None, ctcf_peaks: str | Path | None = None,
                ctcf_bound_column: int | None = None, config: TaskBuildConfig = TaskBuildConfig(),
                user_tables: Mapping[str, str | Path] | None = None, command: str | None = None,
                progress: bool = False) -> dict[str, Path]:
    """Build the fine-tuning task tables of a run and write them into ``experiments/tasks/``.

    Inputs default to the run's: the genome is the manifest's FASTA; the TSS BED (Prom300, PromScan)
    and the CTCF peaks (``ctcf_sites.bed``, whose 7th column flags bound sites) are the demo genome's
    files beside it. Peaks given with ``ctcf_peaks`` use ``ctcf_bound_column`` (1-based), else
    ``config.ctcf.bound_column`` (None: every row is a peak). Prom300's negatives shuffle the tokens of
    the run's own tokenizer. ``user_tables`` (name -> CSV/TSV/Parquet, read by
    ``grover_core.tasks.read_task_table``) are copied in under their names. Every table is built before
    any is written, so bad input leaves the folder as it was.

    Returns
    -------
    dict
        Task name -> path of its ``<task>.parquet`` (``TASK_COLUMNS`` and the builder's extra columns;
        ``<task>.json`` beside it records the config, inputs, skipped windows and split sizes).

    Raises
    ------
    GroverInputError
        An unknown task, a bad table name, a missing input file (the message names ``--tss``,
        ``--peaks`` or ``--genome``), anything the builders refuse.
    RunNotFoundError
        ``run_dir`` is not a run.
    """
    from grover_core import tasks as task_builders
    from grover_core.tokenizer import load_tokenizer

    run_dir = Path(run_dir)
    _manifest(run_dir)
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    user_tables = dict(user_tables or {})
    unknown = sorted(set(tasks) - set(DEMO_TASKS))
    if unknown:
        raise GroverInputError(f"unknown task(s) {', '.join(unknown)}: the built-in tasks are {', '.join(DEMO_TASKS)}; "
                               "give other tables as user tables (--table NAME=PATH).")
    for name in user_tables:
        _check_name(name, "task")
    if not tasks and not user_tables:
        raise GroverInputError("no tasks to build: name some of prom300 promscan ctcf, or give tables "
                               "(--table NAME=PATH).")
    fasta = run_genome(run_dir, genome) if tasks else None
    found = demo_task_inputs(run_dir, genome) if tasks else {}
    provenance = {"produced_by": "grover_lens.experiments.build_tasks", "command": command, "created_utc": _now()}
    built: dict[str, tuple[pd.DataFrame, object, dict]] = {}  # name -> (table, config, inputs)
    for task in tasks:
        _say(progress, f"building {task}")
        if task in ("prom300", "promscan"):
            tss = _annotation_file(tss_bed, found.get("tss"), task=task, what="TSS BED", option="--tss",
                                   argument="tss_bed", default_name=TSS_FILE, fasta=fasta)
            if task == "prom300":
                tokenizer_dir = run_dir / run_format.TOKENIZER_DIR
                df = task_builders.build_prom300(fasta, tss, config=config.prom300,
                                                 tokenizer=load_tokenizer(tokenizer_dir))
                inputs = {"genome": str(fasta), "tss_bed": str(tss), "shuffle_tokenizer": str(tokenizer_dir)}
            else:
                df = task_builders.build_promscan(fasta, tss, config=config.promscan)
                inputs = {"genome": str(fasta), "tss_bed": str(tss)}
            built[task] = (df, getattr(config, task), inputs)
        else:
            peaks = _annotation_file(ctcf_peaks, found.get("ctcf"), task=task, what="CTCF peaks BED",
                                     option="--peaks", argument="ctcf_peaks", default_name=CTCF_FILE, fasta=fasta)
            bound = ctcf_bound_column
            if bound is None:
                bound = CTCF_BOUND_COLUMN if ctcf_peaks is None else config.ctcf.bound_column
            ctcf_config = dataclasses.replace(config.ctcf, bound_column=bound)
            df = task_builders.build_ctcf(fasta, peaks, config=ctcf_config)
            built[task] = (df, ctcf_config, {"genome": str(fasta), "peaks_bed": str(peaks), "bound_column": bound})
    for name, path in user_tables.items():
        _say(progress, f"reading {name} from {path}")
        df = task_builders.read_task_table(path)
        built[name] = (df, None, {"table": str(path)})
    written = {}
    for name, (df, task_config, inputs) in built.items():
        df.attrs.update(task=name, inputs=inputs, **provenance)
        written[name] = task_builders.write_task_table(df, run_dir / run_format.TASKS_DIR / f"{name}.parquet",
                                                       config=task_config)
    return written


def task_names(run_dir: str | Path) -> list[str]:
    """Return the names of the run's task tables (``experiments/tasks/<name>.parquet``), sorted."""
    folder = Path(run_dir) / run_format.TASKS_DIR
    return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []


# ----------------------------------------------------------------------------------------------
# 2. Fine-tuning
# ----------------------------------------------------------------------------------------------

def default_model_name(run_dir: str | Path) -> str:
    """The name the run's own model gets in results tables: the run's name."""
    return str(_manifest(Path(run_dir)).get("name") or Path(run_dir).resolve().name)


def _models_of(run_dir: Path, models: Mapping[str, str | Path] | None) -> dict[str, Path]:
    if models is None:
        models = {default_model_name(run_dir): run_dir / run_format.MODEL_DIR}
    if not models:
        raise GroverInputError("no models given: pass models={name: folder}, or None for the run's own model.")
    resolved = {}
    for name, path in models.items():
        _check_name(name, "model", strict=False)
        if name == BASELINE_MODEL:
            raise GroverInputError(f"model name {name!r} is the baseline's; choose another.")
        path = Path(path)
        if not (path / "config.json").is_file():
            raise GroverInputError(f"model {name}: {path} is not a model folder (no config.json). Give a BERT MLM "
                                   "folder with its tokenizer: a run's model/, or the published GROVER's.")
        resolved[name] = path
    return resolved


def _task_paths(run_dir: Path, tasks: Sequence[str] | None) -> dict[str, Path]:
    have = task_names(run_dir)
    if not have:
        raise GroverInputError(f"run {run_dir} has no task tables in {run_format.TASKS_DIR}/; make them with "
                               f"`grover task build --run {run_dir}`.")
    wanted = list(have) if tasks is None else list(dict.fromkeys(tasks))
    missing = [t for t in wanted if t not in have]
    if missing:
        raise GroverInputError(f"run {run_dir} has no task table {', '.join(missing)} (it has {', '.join(have)}); "
                               f"make it with `grover task build --run {run_dir}`.")
    return {t: run_dir / run_format.TASKS_DIR / f"{t}.parquet" for t in wanted}


@dataclass
class _Splits:
    train: pd.DataFrame
    validation: pd.DataFrame | None
    test: pd.DataFrame
    num_labels: int


def _task_splits(task: str, path: Path, config: FinetuneExperimentConfig) -> _Splits:
    """The task's train (subsampled when configured), validation (None when empty) and test rows."""
    table = pd.read_parquet(path)
    missing = [c for c in ("sequence", "label", "split") if c not in table.columns]
    if missing:
        raise GroverInputError(f"task table {path} lacks {', '.join(missing)}; rebuild it with `grover task build`.")
    part = {s: table[table["split"] == s].reset_index(drop=True) for s in ("train", "validation", "test")}
    for split in ("train", "test"):
        if part[split].empty:
            raise GroverInputError(f"task {task} ({path}) has no {split} rows; rebuild it with {split} chromosomes "
                                   "(TaskBuildConfig) or give a table whose split column has them.")
    train = part["train"]
    if config.max_train_examples is not None and len(train) > config.max_train_examples:
        rng = np.random.default_rng(config.seed)
        train = train.iloc[np.sort(rng.choice(len(train), config.max_train_examples, replace=False))]
        train = train.reset_index(drop=True)
    if train["label"].nunique() < 2:
        raise GroverInputError(f"task {task}: the training rows hold one class only ({train['label'].iloc[0]}); "
                               "a classifier needs two. Check the task's labels and split.")
    num_labels = max(2, int(table["label"].max()) + 1)
    return _Splits(train, part["validation"] if len(part["validation"]) else None, part["test"], num_labels)


def _learning_rate(config: FinetuneExperimentConfig, hidden_size: int) -> float:
    small = config.small_model_learning_rate is not None and hidden_size <= config.small_hidden_size
    return config.small_model_learning_rate if small else config.finetune.learning_rate


def _truncated_fraction(tokenizer, sequences: Sequence[str], max_length: int, seed: int) -> float:
    """Share of (a sample of) sequences longer than the model reads: the rest of them is cut off."""
    sequences = list(sequences)
    if len(sequences) > _TRUNCATION_SAMPLE:
        picked = np.random.default_rng(seed).choice(len(sequences), _TRUNCATION_SAMPLE, replace=False)
        sequences = [sequences[i] for i in picked]
    lengths = [len(ids) for ids in tokenizer(sequences, add_special_tokens=True)["input_ids"]]
    return float(np.mean(np.asarray(lengths) > max_length))


def _finetune_model(run_dir: Path, task: str, splits: _Splits, model_name: str, model_path: Path, *,
                    config: FinetuneExperimentConfig, progress: bool) -> tuple[dict, dict]:
    """Fine-tune one model on one task and score it on the test rows: (results row, JSON record)."""
    from grover_core.finetune import evaluate_classifier, finetune_classifier, load_classifier, save_finetuned
    from grover_core.tokenizer_folder import load_any_tokenizer

    started = time.perf_counter()
    folder = load_any_tokenizer(model_path)
    model, tokenizer = load_classifier(model_path, num_labels=splits.num_labels, tokenizer=folder,
                                       seed=config.finetune.seed)
    steps_per_epoch = math.ceil(len(splits.train) / config.finetune.batch_size)
    finetune = dataclasses.replace(
        config.finetune, learning_rate=_learning_rate(config, model.config.hidden_size),
        epochs=max(config.finetune.epochs, math.ceil(config.min_steps / steps_per_epoch)),
        early_stopping_patience=config.finetune.early_stopping_patience if splits.validation is not None else 0)
    max_length = min(finetune.max_tokens, model.config.max_position_embeddings)
    truncated = _truncated_fraction(tokenizer, splits.test["sequence"], max_length, config.seed)
    _say(progress, f"  {model_name}: {len(splits.train):,} train rows"
                   f"{f', {len(splits.validation):,} validation' if splits.validation is not None else ''}, "
                   f"{finetune.epochs} epochs at lr {finetune.learning_rate:g}"
                   + (f"; {truncated:.0%} of sequences are longer than the model's {max_length} tokens "
                      "(cut off)" if truncated else ""))
    result = finetune_classifier(model, tokenizer, splits.train, splits.validation, config=finetune, progress=progress)
    metrics = evaluate_classifier(model, tokenizer, splits.test, split=None, batch_size=finetune.eval_batch_size,
                                  max_tokens=finetune.max_tokens)
    seconds = time.perf_counter() - started
    kept = None
    if config.keep_models:
        kept = save_finetuned(model, folder, Path(run_dir) / FINETUNED_DIR / task / model_name, config=finetune,
                              metrics={**metrics, "task": task, "model_path": str(model_path)})
    row = {"task": task, "model": model_name, "method": run_format.FINE_TUNED,
           **{k: metrics[k] for k in ("mcc", "accuracy", "macro_f1", "precision", "recall")},
           "n_train": len(splits.train), "n_test": len(splits.test), "seconds": seconds}
    record = {"task": task, "model": model_name, "method": run_format.FINE_TUNED, "model_path": str(model_path),
              "finetune": finetune, "experiment": config, "num_labels": splits.num_labels,
              "n_validation": 0 if splits.validation is None else len(splits.validation),
              "steps": result.steps, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
              "best_validation_mcc": result.best_validation_mcc, "final_loss": result.final_loss,
              "truncated_fraction": truncated, "model_max_tokens": max_length,
              "finetuned_model": str(kept) if kept else None}
    return row, record


def _baseline(task: str, splits: _Splits, config: FinetuneExperimentConfig) -> tuple[dict, dict]:
    """The TF-IDF k-mer baseline on the same train and test rows: (results row, JSON record)."""
    from analysis.baselines import BASELINE_NAME, tfidf_kmer_baseline

    shares = splits.train["label"].value_counts(normalize=True)
    class_weight = "balanced" if shares.min() < config.unbalanced_below else None
    result = tfidf_kmer_baseline(splits.train, splits.test, k_values=config.baseline_k_values,
                                 class_weight=class_weight, seed=config.seed)
    row = {"task": task, "model": BASELINE_MODEL, "method": BASELINE_NAME,
           **{k: result[k] for k in ("mcc", "accuracy", "macro_f1", "precision", "recall", "n_train", "n_test",
                                     "seconds")}}
    record = {"task": task, "model": BASELINE_MODEL, "method": BASELINE_NAME, "experiment": config,
              "k_values": list(config.baseline_k_values), "class_weight": class_weight,
              "rarest_class_share": float(shares.min())}
    return row, record


def finetune_tasks(run_dir: str | Path, *, models: Mapping[str, str | Path] | None = None,
                   tasks: Sequence[str] | None = None, config: FinetuneExperimentConfig = FinetuneExperimentConfig(),
                   command: str | None = None, progress: bool = False) -> pd.DataFrame:
    """Fine-tune each model on each task table of the run, beside the TF-IDF k-mer baseline.

    For every task (default: every table in ``experiments/tasks``) and model (default: the run's
    ``model/``, named after the run): a fresh classifier head on the pretrained encoder
    (``grover_core.finetune.load_classifier``), fine-tuned on the train rows (early stopping on the
    validation rows when the task has any), scored on the test rows. Then the baseline, once per task,
    on the same train and test rows (class-balanced on unbalanced tasks: see
    ``FinetuneExperimentConfig``). Rows are merged into ``experiments/finetune_results.parquet`` as
    each finishes (``merge_results``); with ``config.keep_models`` the fine-tuned models are saved
    under ``experiments/finetuned/<task>/<model>/``. ``progress`` prints a line per task and model.

    Returns
    -------
    pandas.DataFrame
        The rows this call made, ``FINETUNE_RESULT_COLUMNS``: per task one ``"fine-tuned"`` row per
        model and one baseline row (``model`` "tf-idf k-mer", ``method`` "tf-idf k-mer baseline");
        ``mcc``, ``accuracy``, ``macro_f1``, ``precision``, ``recall`` on the test rows (binary tasks:
        precision and recall of class 1), ``n_train`` (after subsampling), ``n_test``, ``seconds``
        (loading, fine-tuning and scoring).

    Raises
    ------
    GroverInputError
        No task tables (the message gives ``grover task build``), an unknown task or a bad model folder,
        a task without train or test rows or with one class, a results table that cannot be merged into.
    """
    run_dir = Path(run_dir)
    _manifest(run_dir)
    _quiet_transformers()
    paths = _task_paths(run_dir, tasks)
    models = _models_of(run_dir, models)
    _read_results(run_dir / run_format.FINETUNE_RESULTS, run_format.FINETUNE_RESULT_COLUMNS)  # fail before working
    common = {"command": command, "created_utc": _now(), "versions": library_versions()}
    made = []
    for number, (task, path) in enumerate(paths.items(), 1):
        splits = _task_splits(task, path, config)
        _say(progress, f"[{number}/{len(paths)}] {task}: {splits.num_labels} classes, {len(splits.test):,} test rows")
        jobs = list(models.items()) + ([(BASELINE_MODEL, None)] if config.baseline else [])
        for name, model_path in jobs:
            if model_path is None:
                row, record = _baseline(task, splits, config)
            else:
                row, record = _finetune_model(run_dir, task, splits, name, model_path, config=config, progress=progress)
            _say(progress, f"  {name}: MCC {row['mcc']:.3f}, accuracy {row['accuracy']:.3f} ({row['seconds']:.0f} s)")
            merge_results(run_dir, run_format.FINETUNE_RESULTS, pd.DataFrame([row]), key=FINETUNE_KEY,
                          columns=run_format.FINETUNE_RESULT_COLUMNS, records=[{**record, **common}])
            made.append(row)
    return pd.DataFrame(made, columns=list(run_format.FINETUNE_RESULT_COLUMNS))


# ----------------------------------------------------------------------------------------------
# 3. Vocabulary selection (next-k-mer prediction)
# ----------------------------------------------------------------------------------------------

@dataclass
class _Vocabulary:
    """One vocabulary to pretrain: its name, kind, size and tokenizer folder (and where that came from)."""

    name: str
    kind: str
    cycles: float
    kmer_size: float
    tokenizer_dir: Path
    source: str


def _bpe_folder_of(path: Path, cycles: int) -> bool:
    """True when ``path`` is our BPE tokenizer folder of exactly ``cycles`` merges."""
    info_file = path / "grover_vocabulary.json"
    if not (path / "tokenizer.json").is_file() or not info_file.is_file():
        return False
    info = json.loads(info_file.read_text())
    return info.get("kind") == "bpe" and info.get("cycles") == cycles


def _plan_vocabularies(run_dir: Path, fasta: Path, config: VocabularySelectionConfig, scratch: Path,
                       progress: bool) -> tuple[list[_Vocabulary], list[str]]:
    """The vocabularies to pretrain, reusing the run's tokenizer folders and learning BPE once for the
    rest; also the notes on counts left out (a genome can run out of pairs to merge)."""
    from grover_core.bpe import BPELearner
    from grover_core.genome import iter_segments
    from grover_core.kmer import write_kmer_tokenizer
    from grover_core.tokenizer import build_bpe_tokenizer, save_tokenizer

    plan, notes, to_learn = [], [], []
    existing = [run_dir / run_format.TOKENIZER_DIR]
    for cycles in sorted(set(config.cycles)):
        reuse = [p for p in existing + [run_dir / run_format.VOCABULARIES_DIR / f"bpe_{cycles}"]
                 if _bpe_folder_of(p, cycles)]
        if reuse:
            plan.append(_Vocabulary(f"bpe_{cycles}", "bpe", float(cycles), math.nan, reuse[0],
                                    f"the run's {reuse[0].relative_to(run_dir)}"))
        else:
            to_learn.append(cycles)
    if to_learn:
        _say(progress, f"learning BPE up to {max(to_learn)} cycles on {fasta}")
        learner = BPELearner.from_segments(iter_segments(fasta), max_cycles=max(to_learn))
        learned = learner.learn(dataclasses.replace(config.bpe, cycles=max(to_learn)), progress=progress)
        del learner
        for cycles in to_learn:
            if cycles > learned.cycles:
                notes.append(f"bpe_{cycles} left out: only {learned.cycles} merges were possible on this genome")
                continue
            prefix = learned.prefix(cycles)
            folder = save_tokenizer(build_bpe_tokenizer(prefix), scratch / f"bpe_{cycles}", extra={
                "kind": "bpe", "cycles": cycles, "merges": [list(m) for m in prefix.merges],
                "merge_counts": prefix.merge_counts, "genome": str(fasta)})
            plan.append(_Vocabulary(f"bpe_{cycles}", "bpe", float(cycles), math.nan, folder,
                                    f"learned here ({max(to_learn)} cycles, prefix {cycles})"))
    plan.sort(key=lambda v: v.cycles)
    for k in sorted(set(config.kmers)):
        folder = write_kmer_tokenizer(scratch / f"kmer_{k}", k)
        plan.append(_Vocabulary(f"kmer_{k}", "kmer", math.nan, float(k), folder, "fixed non-overlapping k-mers"))
    return plan, notes


def _pretrain_vocabulary(run_dir: Path, fasta: Path, vocabulary: _Vocabulary, *, config: VocabularySelectionConfig,
                         held_out: tuple[str, ...], scratch: Path, progress: bool) -> tuple[Path, dict]:
    """Tokenize the genome with the vocabulary, pretrain a model on it and save the model folder
    (tokenizer and ``grover_vocabulary.json`` included) under ``experiments/nextkmer/<name>/``;
    return the model folder and what pretraining did."""
    from grover_core.model import build_model, count_parameters, model_config
    from grover_core.pretrain import pretrain
    from grover_core.tokenize_genome import tokenize_genome
    from grover_core.tokenized_genome import TokenizedGenome
    from grover_core.tokenizer_folder import VOCABULARY_JSON, load_any_tokenizer

    folder = load_any_tokenizer(vocabulary.tokenizer_dir)
    tokenized = tokenize_genome(fasta, vocabulary.tokenizer_dir, scratch / f"{vocabulary.name}.tokenized")
    genome = TokenizedGenome.open(tokenized)
    positions = max(config.pretrain.max_window_tokens, config.nextkmer.sequence_nt) + 2  # + [CLS], [SEP]
    shape = model_config(config.model_preset, **{"max_position_embeddings": positions, **config.model_overrides})
    pretrain_config = dataclasses.replace(
        config.pretrain, max_window_tokens=min(config.pretrain.max_window_tokens, shape.max_window_tokens),
        held_out_chromosomes=tuple(config.pretrain.held_out_chromosomes) or held_out)
    model = build_model(shape, folder.tokenizer, seed=config.seed)
    out = run_dir / NEXTKMER_DIR / vocabulary.name
    with atomic_path(out, is_dir=True) as tmp:
        result = pretrain(model, folder.tokenizer, genome, config=pretrain_config,
                          log_path=tmp / run_format.TRAINING_LOG, progress=progress)
        model_dir = tmp / run_format.MODEL_DIR
        model.save_pretrained(str(model_dir), safe_serialization=True)
        folder.tokenizer.save_pretrained(str(model_dir))
        if folder.info:  # a k-mer folder is read back only with it
            (model_dir / VOCABULARY_JSON).write_text(json.dumps(folder.info, indent=2))
        (model_dir / "grover_pretrain.json").write_text(json.dumps(_plain(
            {"preset": config.model_preset, "model": shape, "pretrain": pretrain_config}), indent=2))
    record = {"tokenizer_source": vocabulary.source, "genome_tokens": genome.total_tokens,
              "nucleotides_per_token": _nucleotides_per_token(tokenized, genome.total_tokens),
              "parameters": count_parameters(model), "pretrain_steps": result.steps,
              "pretrain_tokens_seen": result.tokens_seen, "pretrain_final_loss": result.final_loss,
              "pretrain_seconds": result.seconds, "pretrain": pretrain_config, "model_preset": config.model_preset,
              "model_shape": shape}
    del genome
    shutil.rmtree(tokenized, ignore_errors=True)
    return out / run_format.MODEL_DIR, record


def _nucleotides_per_token(tokenized: Path, tokens: int) -> float:
    stats = json.loads((tokenized / "index.json").read_text()).get("genome_stats", {})
    acgt = stats.get("acgt_nucleotides")
    return float(acgt / tokens) if acgt and tokens else math.nan


def vocabulary_model(path: str | Path) -> VocabularyModel:
    """Return a ``VocabularyModel`` for a model folder, its kind and size read from its tokenizer: a BPE's
    cycles are its merges (the published GROVER's: 600), a k-mer folder's k its ``grover_vocabulary.json``'s."""
    from grover_core.tokenizer_folder import load_any_tokenizer

    if not (Path(path) / "config.json").is_file():
        raise GroverInputError(f"{path} is not a model folder (no config.json): give a BERT MLM folder with its "
                               "tokenizer.")
    folder = load_any_tokenizer(path)
    if folder.kind == "kmer":
        return VocabularyModel(str(path), "kmer", kmer_size=float(folder.k))
    return VocabularyModel(str(path), "bpe", cycles=float(len(folder.merges)))


def _as_vocabulary_model(name: str, value) -> VocabularyModel:
    _check_name(name, "vocabulary", strict=False)
    if isinstance(value, (str, Path)):
        return vocabulary_model(value)
    model = value if isinstance(value, VocabularyModel) else VocabularyModel(*value)
    if not (Path(model.path) / "config.json").is_file():
        raise GroverInputError(f"vocabulary {name}: {model.path} is not a model folder (no config.json).")
    return model


def vocabulary_selection(run_dir: str | Path, *, config: VocabularySelectionConfig = VocabularySelectionConfig(),
                         models: Mapping[str, VocabularyModel | tuple | str | Path] | None = None,
                         genome: str | Path | None = None, command: str | None = None,
                         progress: bool = False) -> pd.DataFrame:
    """Score vocabularies by next-k-mer prediction, as the paper chose its own (GROVER.md).

    Without ``models``: for every BPE cycle count of ``config.cycles`` (the run's own tokenizer and its
    ``vocabularies/bpe_<n>`` folders are reused; other counts come from one BPE learned up to the largest
    count on the run's genome; counts the genome cannot reach are left out) and every k of
    ``config.kmers``, the genome is tokenized, a ``config.model_preset`` model pretrained with
    ``config.pretrain`` (the same for every vocabulary) and saved as
    ``experiments/nextkmer/<vocabulary>/model`` (with ``training_log.jsonl`` beside it). With ``models``
    (name -> ``VocabularyModel``, a ``(path, kind, cycles, kmer_size)`` tuple, or a model folder whose
    vocabulary ``vocabulary_model`` reads) nothing is pretrained: those models are scored as they are.
    ``genome`` replaces the manifest's FASTA (when that has moved).
    Each model is then fine-tuned and scored by ``grover_core.nextkmer.run_next_kmer`` on sequences of
    the held-out chromosomes, and its rows merged into ``experiments/nextkmer_results.parquet``
    (``merge_results``) before the next vocabulary starts.

    Returns
    -------
    pandas.DataFrame
        The rows this call made, ``NEXTKMER_RESULT_COLUMNS``: per vocabulary and k, ``method``
        "fine-tuned", "frequency baseline" and "chance"; ``vocabulary`` (``bpe_<n>``, ``kmer_<k>`` or the
        given name), ``vocabulary_kind``, ``bpe_cycles`` (NaN for k-mers), ``kmer_size`` (NaN for BPE),
        ``accuracy`` on the test sequences, ``n_train``, ``n_test``, ``seconds``.

    Raises
    ------
    GroverInputError
        A missing genome, a bad model folder or config, too few clean positions on the held-out
        chromosomes, a results table that cannot be merged into.
    """
    from grover_core.nextkmer import run_next_kmer

    run_dir = Path(run_dir)
    _manifest(run_dir)
    _quiet_transformers()
    fasta = run_genome(run_dir, genome)
    held_out = tuple(config.chromosomes) or _held_out_chromosomes(run_dir)
    nextkmer = dataclasses.replace(config.nextkmer, chromosomes=held_out)
    _read_results(run_dir / run_format.NEXTKMER_RESULTS, run_format.NEXTKMER_RESULT_COLUMNS)  # fail before working
    given = {name: _as_vocabulary_model(name, value) for name, value in (models or {}).items()}
    if not given and not config.cycles and not config.kmers:
        raise GroverInputError("no vocabulary to score: give BPE cycles or k-mer sizes (or models=).")
    common = {"command": command, "created_utc": _now(), "versions": library_versions(), "genome": str(fasta),
              "nextkmer": nextkmer, "experiment": config}
    made = []
    (run_dir / NEXTKMER_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=run_dir / NEXTKMER_DIR, prefix=".scratch-") as scratch:
        scratch = Path(scratch)
        if given:
            plan, notes = list(given.items()), []
        else:
            vocabularies, notes = _plan_vocabularies(run_dir, fasta, config, scratch, progress)
            plan = [(v.name, v) for v in vocabularies]
        for note in notes:
            _say(progress, note)
        for number, (name, item) in enumerate(plan, 1):
            started = time.perf_counter()
            if isinstance(item, VocabularyModel):
                _say(progress, f"[{number}/{len(plan)}] {name}: scoring {item.path}")
                model_dir, record = Path(item.path), {"source": "given"}
                kind, cycles, kmer_size = item.kind, item.cycles, item.kmer_size
            else:
                _say(progress, f"[{number}/{len(plan)}] {name}: tokenizing and pretraining ({item.source})")
                model_dir, record = _pretrain_vocabulary(run_dir, fasta, item, config=config, held_out=held_out,
                                                         scratch=scratch, progress=progress)
                record["source"] = "pretrained here"
                kind, cycles, kmer_size = item.kind, item.cycles, item.kmer_size
            rows = run_next_kmer(model_dir, fasta, config=nextkmer, vocabulary=name, vocabulary_kind=kind,
                                 bpe_cycles=cycles, kmer_size=kmer_size)
            tuned = rows[rows["method"] == run_format.FINE_TUNED]
            _say(progress, "  next-k-mer accuracy " + ", ".join(
                f"k={k}: {a:.2%}" for k, a in zip(tuned["k"], tuned["accuracy"])) +
                f" ({time.perf_counter() - started:.0f} s)")
            record = {"vocabulary": name, "vocabulary_kind": kind, "bpe_cycles": cycles, "kmer_size": kmer_size,
                      "model_path": str(model_dir), **record, **common}
            merge_results(run_dir, run_format.NEXTKMER_RESULTS, rows, key=NEXTKMER_KEY,
                          columns=run_format.NEXTKMER_RESULT_COLUMNS, records=[record], record_key=("vocabulary",))
            made.append(rows)
    if not made:
        raise GroverInputError(f"no vocabulary could be made: {'; '.join(notes)}.")
    return pd.concat(made, ignore_index=True)
