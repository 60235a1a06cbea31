"""The paper's experiments on a copy of the tiny run: task tables, fine-tuning beside the baseline, and
next-k-mer prediction across vocabularies (grover_lens.experiments), with seconds-scale configs."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import run as run_format
from analysis.baselines import BASELINE_NAME
from grover_core.errors import GroverInputError
from grover_lens.experiments import (BASELINE_MODEL, FINETUNED_DIR, NEXTKMER_DIR, FinetuneExperimentConfig,
                                     VocabularySelectionConfig, build_tasks, finetune_tasks, merge_results,
                                     vocabulary_selection)

TASKS = ("prom300", "promscan", "ctcf", "mine")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine's cores are shared; tiny models gain nothing from more
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run (the session's run stays as built)."""
    dest = tmp_path_factory.mktemp("experiments") / "tiny"
    shutil.copytree(tiny_run, dest)
    return dest


def user_csv(folder: Path) -> Path:
    """A user's task table: text labels, no split column (a seeded stratified split is made)."""
    rng = np.random.default_rng(5)
    sequences = ["".join(rng.choice(list("ACGT"), size=60)) for _ in range(60)]
    labels = ["enhancer" if i % 3 else "silencer" for i in range(60)]
    path = folder / "mine.csv"
    pd.DataFrame({"sequence": sequences, "label": labels}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def tasks(run, tmp_path_factory) -> dict[str, Path]:
    return build_tasks(run, user_tables={"mine": user_csv(tmp_path_factory.mktemp("table"))}, command="test")


@pytest.fixture(scope="module")
def finetuned(run, tasks) -> pd.DataFrame:
    return finetune_tasks(run, config=FinetuneExperimentConfig.tiny())


def records(path: Path) -> list[dict]:
    return json.loads(path.with_suffix(".json").read_text())["records"]


# --- task tables ---------------------------------------------------------------------------------------------

def test_build_tasks_writes_every_table_with_its_record(run, tasks):
    assert set(tasks) == set(TASKS)
    for name, path in tasks.items():
        assert path == run / run_format.TASKS_DIR / f"{name}.parquet"
        table = pd.read_parquet(path)
        assert tuple(table.columns[:6]) == run_format.TASK_COLUMNS, name
        assert set(table["split"]) <= {"train", "validation", "test"}
        assert (table["split"] == "train").any() and (table["split"] == "test").any(), name
        assert table["sequence"].str.fullmatch("[ACGTN]+").all()
        record = json.loads(path.with_suffix(".json").read_text())
        assert record["task"] == name and record["rows"] == len(table)
        assert record["produced_by"] == "grover_lens.experiments.build_tasks" and record["command"] == "test"
    # The tiny genome has two chromosomes: train on chr1, test on chr2, no window on both sides.
    ctcf = pd.read_parquet(tasks["ctcf"])
    assert set(ctcf.loc[ctcf["split"] == "train", "chromosome"]) == {"chr1"}
    assert set(ctcf.loc[ctcf["split"] == "test", "chromosome"]) == {"chr2"}


def test_prom300_negatives_shuffle_the_run_tokenizers_tokens(run, tasks):
    table = pd.read_parquet(tasks["prom300"])
    record = json.loads(tasks["prom300"].with_suffix(".json").read_text())
    assert record["inputs"]["shuffle_tokenizer"] == str(run / run_format.TOKENIZER_DIR)
    assert table["label"].value_counts().to_dict() == {1: len(table) // 2, 0: len(table) // 2}
    for _, pair in table.groupby(["chromosome", "start"]):
        assert sorted(pair["label"]) == [0, 1]
        positive, negative = (pair.loc[pair["label"] == v, "sequence"].iloc[0] for v in (1, 0))
        assert positive != negative and sorted(positive) == sorted(negative)  # same letters, new order


def test_ctcf_reads_the_bound_column_of_the_demo_sites(tasks):
    table = pd.read_parquet(tasks["ctcf"])
    record = json.loads(tasks["ctcf"].with_suffix(".json").read_text())
    assert record["config"]["bound_column"] == 7 and record["inputs"]["bound_column"] == 7
    assert 0 < table["label"].mean() < 0.5  # every site counted as a peak would label them all 1


def test_user_table_goes_through(tasks):
    table = pd.read_parquet(tasks["mine"])
    assert len(table) == 60 and set(table["label"]) == {0, 1}
    assert (table["label"] == 1).sum() == 20  # "silencer" sorts second: label 1
    assert json.loads(tasks["mine"].with_suffix(".json").read_text())["label_names"] == ["enhancer", "silencer"]


def test_missing_inputs_name_the_option_and_write_nothing(run, tasks, tmp_path):
    bare = tmp_path / "genome.fa"
    shutil.copy(json.loads((run / run_format.MANIFEST).read_text())["genome"]["fasta"], bare)  # no tss.bed beside
    with pytest.raises(GroverInputError, match="--tss"):
        build_tasks(run, tasks=("prom300",), genome=bare)
    with pytest.raises(GroverInputError, match="--peaks"):
        build_tasks(run, tasks=("ctcf",), genome=bare)
    with pytest.raises(GroverInputError, match=r"missing\.bed \(--tss\)"):
        build_tasks(run, tasks=("promscan",), tss_bed=tmp_path / "missing.bed")
    with pytest.raises(GroverInputError, match="unknown task"):
        build_tasks(run, tasks=("enhancers",))
    before = tasks["promscan"].stat().st_mtime_ns
    with pytest.raises(GroverInputError, match="does not exist"):
        build_tasks(run, tasks=("promscan",), user_tables={"bad": tmp_path / "missing.csv"})
    assert tasks["promscan"].stat().st_mtime_ns == before  # built first, written only when all are good


# --- fine-tuning ---------------------------------------------------------------------------------------------

def test_finetune_writes_a_model_row_and_a_baseline_row_per_task(run, tasks, finetuned):
    table = pd.read_parquet(run / run_format.FINETUNE_RESULTS)
    assert tuple(table.columns) == run_format.FINETUNE_RESULT_COLUMNS
    pd.testing.assert_frame_equal(table, finetuned)
    assert set(zip(table["task"], table["model"], table["method"])) == (
        {(t, "tiny", "fine-tuned") for t in TASKS} | {(t, BASELINE_MODEL, BASELINE_NAME) for t in TASKS})
    assert len(table) == 2 * len(TASKS)
    assert table["mcc"].between(-1, 1).all()
    assert table[["accuracy", "macro_f1", "precision", "recall"]].stack().between(0, 1).all()
    for task, path in tasks.items():
        splits = pd.read_parquet(path)["split"].value_counts()
        rows = table[table["task"] == task]
        assert (rows["n_train"] == min(200, splits["train"])).all() and (rows["n_test"] == splits["test"]).all()
    assert (table["seconds"] > 0).all()


def test_finetune_records_the_config_and_balances_the_baseline_on_unbalanced_tasks(run, finetuned):
    by_key = {(r["task"], r["model"]): r for r in records(run / run_format.FINETUNE_RESULTS)}
    assert by_key[("prom300", BASELINE_MODEL)]["class_weight"] is None  # balanced by design
    assert by_key[("promscan", BASELINE_MODEL)]["class_weight"] == "balanced"  # ~10% positives
    assert by_key[("ctcf", BASELINE_MODEL)]["class_weight"] == "balanced"
    tuned = by_key[("ctcf", "tiny")]
    assert tuned["model_path"] == str(run / run_format.MODEL_DIR)
    assert tuned["experiment"]["max_train_examples"] == 200 and tuned["finetune"]["learning_rate"] == 3e-3
    assert tuned["finetune"]["early_stopping_patience"] == 0  # the tiny genome's tasks have no validation rows
    assert tuned["epochs_run"] == 2 and tuned["truncated_fraction"] == 1.0  # 200 bp > grover-test's 64 tokens


def test_rerun_replaces_its_rows_and_keeps_the_others(run, finetuned):
    path = run / run_format.FINETUNE_RESULTS
    published = finetuned.iloc[:1].assign(task="prom300", model="GROVER", mcc=0.996)  # e.g. the paper's number
    pd.concat([pd.read_parquet(path), published], ignore_index=True).to_parquet(path)
    config = dataclasses.replace(FinetuneExperimentConfig.tiny(), keep_models=True,
                                 finetune=dataclasses.replace(FinetuneExperimentConfig.tiny().finetune, epochs=1))
    again = finetune_tasks(run, tasks=["prom300"], config=config)
    assert len(again) == 2
    table = pd.read_parquet(path)
    assert len(table) == 2 * len(TASKS) + 1 and not table.duplicated(["task", "model", "method"]).any()
    assert table.loc[table["model"] == "GROVER", "mcc"].tolist() == [0.996]
    by_key = {(r["task"], r["model"]): r for r in records(path)}
    assert by_key[("prom300", "tiny")]["epochs_run"] == 1 and by_key[("ctcf", "tiny")]["epochs_run"] == 2

    from grover_core.finetune import load_classifier

    kept = run / FINETUNED_DIR / "prom300" / "tiny"
    assert by_key[("prom300", "tiny")]["finetuned_model"] == str(kept)
    model, _ = load_classifier(kept, num_labels=2)  # the trained head loads back
    assert model.config.num_labels == 2
    row = table[(table["task"] == "prom300") & (table["model"] == "tiny")]
    assert json.loads((kept / "metrics.json").read_text())["mcc"] == pytest.approx(row["mcc"].iloc[0])


def test_finetune_refuses_unknown_tasks_bad_models_and_runs_without_tasks(run, tasks, tmp_path):
    with pytest.raises(GroverInputError, match="no task table enhancers"):
        finetune_tasks(run, tasks=["enhancers"])
    with pytest.raises(GroverInputError, match="not a model folder"):
        finetune_tasks(run, models={"other": tmp_path})
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / run_format.MANIFEST, bare / run_format.MANIFEST)
    with pytest.raises(GroverInputError, match=f"grover task build --run {bare}"):
        finetune_tasks(bare)
    with pytest.raises(FileNotFoundError, match="not a GROVER Lens run"):
        finetune_tasks(tmp_path / "nowhere")


def test_merge_results_replaces_by_key_and_refuses_a_damaged_table(tmp_path):
    columns = ("vocabulary", "k", "method", "accuracy")
    first = pd.DataFrame({"vocabulary": ["a", "a", "b"], "k": [2, 3, 2], "method": ["m"] * 3, "accuracy": [.1, .2, .3]})
    merge_results(tmp_path, "r.parquet", first, key=("vocabulary", "k", "method"), columns=columns,
                  records=[{"vocabulary": "a", "note": 1}], record_key=("vocabulary",))
    update = pd.DataFrame({"vocabulary": ["a"], "k": [3], "method": ["m"], "accuracy": [.9]})
    merge_results(tmp_path, "r.parquet", update, key=("vocabulary", "k", "method"), columns=columns,
                  records=[{"vocabulary": "a", "note": 2}], record_key=("vocabulary",))
    table = pd.read_parquet(tmp_path / "r.parquet")
    assert list(zip(table["vocabulary"], table["k"], table["accuracy"])) == [("a", 2, .1), ("b", 2, .3), ("a", 3, .9)]
    assert records(tmp_path / "r.parquet") == [{"vocabulary": "a", "note": 2}]
    (tmp_path / "r.parquet").write_bytes(b"not parquet")
    with pytest.raises(GroverInputError, match="cannot be read"):
        merge_results(tmp_path, "r.parquet", update, key=("vocabulary", "k", "method"), columns=columns)


# --- next-k-mer prediction across vocabularies ---------------------------------------------------------------

def test_vocabulary_selection_pretrains_and_scores_each_vocabulary(run):
    from grover_core.model import load_model_and_tokenizer

    config = VocabularySelectionConfig.tiny()  # BPE 30 (learned here) and 60 (the run's), 3-mers; k = 2, 3
    made = vocabulary_selection(run, config=config)
    table = pd.read_parquet(run / run_format.NEXTKMER_RESULTS)
    assert tuple(table.columns) == run_format.NEXTKMER_RESULT_COLUMNS
    pd.testing.assert_frame_equal(table, made)
    assert len(table) == 3 * 2 * 3 and not table.duplicated(["vocabulary", "k", "method"]).any()
    assert set(table["vocabulary"]) == {"bpe_30", "bpe_60", "kmer_3"}
    kmer, bpe = table[table["vocabulary_kind"] == "kmer"], table[table["vocabulary_kind"] == "bpe"]
    assert kmer["bpe_cycles"].isna().all() and (kmer["kmer_size"] == 3).all()
    assert bpe["kmer_size"].isna().all() and set(bpe["bpe_cycles"]) == {30.0, 60.0}
    assert table["accuracy"].between(0, 1).all()
    chance = table[table["method"] == "chance"]
    assert np.allclose(chance["accuracy"], 4.0 ** -chance["k"])
    assert (table["n_train"] == 200).all() and (table["n_test"] == 100).all()

    sizes = {"bpe_30": 5 + 4 + 30, "bpe_60": 5 + 4 + 60, "kmer_3": 5 + 64 + 4 + 16}
    for name, size in sizes.items():
        model, tokenizer = load_model_and_tokenizer(run / NEXTKMER_DIR / name / "model")
        assert len(tokenizer) == size and model.config.vocab_size == size
        assert model.config.max_position_embeddings == 66  # grover-test: 64-token windows + [CLS], [SEP]
    by_vocabulary = {r["vocabulary"]: r for r in records(run / run_format.NEXTKMER_RESULTS)}
    assert by_vocabulary["bpe_60"]["tokenizer_source"] == "the run's tokenizer"
    assert by_vocabulary["bpe_30"]["tokenizer_source"].startswith("learned here")
    assert by_vocabulary["kmer_3"]["nucleotides_per_token"] == pytest.approx(3, abs=0.01)
    assert {r["pretrain_steps"] for r in by_vocabulary.values()} == {10}
    assert by_vocabulary["kmer_3"]["nextkmer"]["chromosomes"] == ["chr2"]  # the run's held-out chromosome
    assert not list((run / NEXTKMER_DIR).glob(".scratch-*"))

    # Given models are scored as they are; the rows made before stay.
    tiny = dataclasses.replace(config, nextkmer=dataclasses.replace(config.nextkmer, k_values=(2,)))
    given = vocabulary_selection(run, config=tiny, models={"run_model": run / run_format.MODEL_DIR})
    assert len(given) == 3 and set(given["bpe_cycles"]) == {60.0} and given["kmer_size"].isna().all()
    assert len(pd.read_parquet(run / run_format.NEXTKMER_RESULTS)) == 18 + 3


def test_vocabulary_selection_config_checks_its_fields():
    with pytest.raises(GroverInputError, match="kmers"):
        VocabularySelectionConfig(kmers=(12,))
    with pytest.raises(GroverInputError, match="cycles"):
        VocabularySelectionConfig(cycles=(0, 100))
    assert math.isclose(FinetuneExperimentConfig().small_model_learning_rate, 1e-3)
