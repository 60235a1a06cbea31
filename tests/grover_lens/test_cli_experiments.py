"""`grover task build`, `grover finetune` and `grover nextkmer` end to end on a copy of the tiny run, and their
one-line errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from analysis import run as run_format
from grover_lens.cli import main

FAST_FINETUNE = ["--epochs", "1", "--max-train", "100", "--batch-size", "16", "--learning-rate", "3e-3", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("cli") / "tiny"
    shutil.copytree(tiny_run, dest)
    return dest


def test_finetune_builds_the_demo_tasks_then_task_build_adds_a_table(run, tmp_path, capsys):
    assert not (run / run_format.TASKS_DIR).exists()
    assert main(["finetune", "--run", str(run), "--task", "prom300", *FAST_FINETUNE]) == 0
    out = capsys.readouterr().out
    assert f"{run} has no task tables yet: building prom300, promscan, ctcf" in out
    assert "fine-tuning results (test split)" in out and str(run / run_format.FINETUNE_RESULTS) in out
    assert sorted(p.name for p in (run / run_format.TASKS_DIR).glob("*.parquet")) == [
        "ctcf.parquet", "prom300.parquet", "promscan.parquet"]

    table = tmp_path / "mine.tsv"
    pd.DataFrame({"sequence": ["ACGTACGTAA", "TTGACCAGTA"] * 15, "label": [0, 1] * 15}).to_csv(table, sep="\t",
                                                                                                   index=False)
    assert main(["task", "build", "--run", str(run), "--tasks", "--table", f"mine={table}", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mine.parquet" in out and str(run / run_format.TASKS_DIR) in out
    assert main(["finetune", "--run", str(run), "--task", "mine", "--model", f"other={run / 'model'}",
                 *FAST_FINETUNE]) == 0
    results = pd.read_parquet(run / run_format.FINETUNE_RESULTS)
    assert set(zip(results["task"], results["model"])) == {
        ("prom300", "tiny"), ("prom300", "tf-idf k-mer"), ("mine", "other"), ("mine", "tf-idf k-mer")}
    assert (results.loc[results["task"] == "mine", "n_train"] <= 100).all()


def test_task_build_prints_the_tables(run, capsys):
    assert main(["task", "build", "--run", str(run), "--tasks", "ctcf", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "task tables" in out and "ctcf" in out and "n_train" in out
    assert "written: ctcf.parquet (+ .json)" in out


def test_nextkmer_pretrains_and_scores(run, capsys):
    argv = ["nextkmer", "--run", str(run), "--cycles", "60", "--kmers", "--k", "2", "--steps", "3", "--n-train",
            "100", "--n-test", "50", "--preset", "grover-test", "--epochs", "1", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "next-k-mer accuracy (%)" in out and "bpe_60" in out and "chance" in out
    assert str(run / run_format.NEXTKMER_RESULTS) in out
    results = pd.read_parquet(run / run_format.NEXTKMER_RESULTS)
    assert sorted(results["method"]) == ["chance", "fine-tuned", "frequency baseline"]
    assert (results["vocabulary"] == "bpe_60").all() and (results["k"] == 2).all()
    assert (run / "experiments" / "nextkmer" / "bpe_60" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("argv, fragment", [
    (["finetune", "--run", "{missing}"], "is not a GROVER Lens run"),
    (["nextkmer", "--run", "{missing}"], "is not a GROVER Lens run"),
    (["task", "build", "--run", "{missing}"], "is not a GROVER Lens run"),
    (["task", "build", "--run", "{run}", "--tasks", "prom300", "--tss", "{missing}.bed"], "(--tss)"),
    (["task", "build", "--run", "{run}", "--tasks", "enhancers"], "unknown task(s) enhancers"),
    (["task", "build", "--run", "{run}", "--table", "=x.csv"], "--table takes NAME=PATH"),
    (["finetune", "--run", "{run}", "--task", "prom300", "--model", "x={missing}"], "not a model folder"),
    (["nextkmer", "--run", "{run}", "--kmers", "12"], "kmers must be whole numbers"),
], ids=["finetune-no-run", "nextkmer-no-run", "task-no-run", "missing-tss", "unknown-task", "bad-table",
        "bad-model", "bad-kmer"])
def test_bad_input_ends_with_one_line(run, tmp_path, capsys, argv, fragment):
    argv = [a.format(missing=tmp_path / "missing", run=run) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grover: error:") and fragment in err[0], err
