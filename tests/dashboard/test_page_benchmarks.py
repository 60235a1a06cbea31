"""The Benchmarks page run headless (AppTest) on a copy of the tiny run with synthetic experiment results.

The pipeline's experiments are not run here: small results tables with the schema of ``analysis.run``
are written into the copy's ``experiments/`` folder. What the figures draw is checked in
test_charts_benchmarks.py; here, that the page shows both sections and that its widgets reach the charts.
"""
from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis import run
from tests.dashboard import apptest
from tests.dashboard.apptest import caption, chart_specs, copy_run, param
from tests.dashboard.test_charts_benchmarks import finetune_results, nextkmer_results

PAGE = "views/benchmarks.py"


def open_page(monkeypatch, runs_dir: Path, **query: str) -> AppTest:
    return apptest.open_page(monkeypatch, runs_dir, PAGE, **query)


def task_table() -> pd.DataFrame:
    return pd.DataFrame({
        "sequence": ["ACGT", "TTTT", "GGCC", "AAAA", "CCCC"], "label": [1, 0, 1, 0, 1],
        "chromosome": ["chr1", "chr1", "chr2", "chr3", "chr3"], "start": [0, 10, 20, 30, 40],
        "end": [4, 14, 24, 34, 44], "split": ["train", "train", "validation", "test", "test"],
    })


def experiments_run(tiny_run: Path, dest: Path, *, finetune: bool = True, nextkmer: bool = True,
                    tasks: bool = True) -> Path:
    """A copy of the tiny run whose ``experiments/`` holds only the files asked for; returns the runs folder."""
    runs = copy_run(tiny_run, dest)
    folder = runs / "tiny" / run.EXPERIMENTS_DIR
    shutil.rmtree(folder, ignore_errors=True)  # whatever the pipeline may write there one day
    (runs / "tiny" / run.TASKS_DIR).mkdir(parents=True)
    if finetune:
        finetune_results().to_parquet(runs / "tiny" / run.FINETUNE_RESULTS)
    if nextkmer:
        nextkmer_results().to_parquet(runs / "tiny" / run.NEXTKMER_RESULTS)
    if tasks:
        task_table().to_parquet(runs / "tiny" / run.TASKS_DIR / "prom300.parquet")
    return runs


def values(data) -> np.ndarray:
    """A plotly array as sent to the browser: a list, or ``{"dtype", "bdata"}`` (binary)."""
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
    return np.asarray(data, dtype=float)


def trace_names(spec: dict) -> list[str]:
    return [trace.get("name") for trace in spec["data"]]


@pytest.fixture
def runs(tiny_run, tmp_path) -> Path:
    return experiments_run(tiny_run, tmp_path)


def test_page_shows_both_sections(monkeypatch, runs):
    at = open_page(monkeypatch, runs)
    assert at.title[0].value == "Benchmarks"
    assert [s.value for s in at.subheader] == ["Fine-tuning tasks", "Next-k-mer prediction across vocabularies"]
    assert not at.info and not at.error
    finetune, nextkmer = chart_specs(at)
    assert trace_names(finetune) == ["grover", "kmer_model", "tf-idf k-mer baseline"]
    assert {"k=2", "k=6", "k=6 · frequency baseline", "k=6 · chance", "kmer_4 · k=6"} <= set(trace_names(nextkmer))

    results, tasks, kmers = (at.dataframe[i].value for i in range(3))
    assert len(results) == len(finetune_results()) and "vs_baseline" in results.columns
    assert tasks.iloc[0][["task", "n_train", "n_test", "test_chromosomes"]].tolist() == ["prom300", 2, 2, "chr3"]
    assert len(kmers) == len(nextkmer_results())
    split = caption(at, "held-out test split")
    assert "by chromosome" in split and "prom300: chr3" in split
    assert "Best BPE vocabulary per k: k=2: 14% at 600 cycles" in caption(at, "Best BPE vocabulary")
    assert param(at, "metric") == "mcc" and param(at, "k") == "2,6"


def test_metric_selector_changes_the_chart(monkeypatch, runs):
    at = open_page(monkeypatch, runs)
    before = values(chart_specs(at)[0]["data"][0]["y"])
    at.radio(key="bench_metric").set_value("accuracy").run()
    assert not at.exception
    after = chart_specs(at)[0]["data"][0]
    assert after["name"] == "grover"
    assert values(after["y"]) == pytest.approx([0.995, 0.81, 0.5]) and before[:2] == pytest.approx([0.99, 0.60])
    assert caption(at, "held-out test split").startswith("accuracy on")
    assert param(at, "metric") == "accuracy"


def test_k_selector_filters_the_lines(monkeypatch, runs):
    at = open_page(monkeypatch, runs)
    at.multiselect(key="bench_k").set_value([6]).run()
    assert not at.exception
    names = trace_names(chart_specs(at)[1])
    assert names and all("k=6" in name for name in names) and "kmer_6 · k=6" in names
    assert set(at.dataframe[2].value["k"]) == {6}
    assert param(at, "k") == "6"
    at.radio(key="bench_xscale").set_value("linear").run()
    assert chart_specs(at)[1]["layout"]["xaxis"]["type"] == "linear"
    at.multiselect(key="bench_k").set_value([]).run()
    assert not at.exception and len(chart_specs(at)) == 1
    assert "Choose at least one k" in at.info[0].value


def test_link_seeds_the_widgets(monkeypatch, runs):
    at = open_page(monkeypatch, runs, metric="recall", k="2", xscale="linear", yscale="log")
    assert at.radio(key="bench_metric").value == "recall"
    assert at.multiselect(key="bench_k").value == [2]
    assert chart_specs(at)[1]["layout"]["yaxis"]["type"] == "log"
    at = open_page(monkeypatch, runs, metric="auc", k="7")  # not in this run: defaults
    assert at.radio(key="bench_metric").value == "mcc" and at.multiselect(key="bench_k").value == [2, 6]


def test_missing_results_name_their_commands(monkeypatch, tiny_run, tmp_path):
    runs = experiments_run(tiny_run, tmp_path, finetune=False, nextkmer=False, tasks=False)
    at = open_page(monkeypatch, runs)
    messages = [i.value for i in at.info]
    assert any(f"grover finetune --run {runs / 'tiny'}" in m for m in messages), messages
    assert any(f"grover nextkmer --run {runs / 'tiny'}" in m for m in messages), messages
    assert not at.get("plotly_chart") and not at.error


@pytest.mark.parametrize("present", ["finetune", "nextkmer"])
def test_one_section_missing_keeps_the_other(monkeypatch, tiny_run, tmp_path, present):
    runs = experiments_run(tiny_run, tmp_path, finetune=present == "finetune", nextkmer=present == "nextkmer")
    at = open_page(monkeypatch, runs)
    missing = "nextkmer" if present == "finetune" else "finetune"
    assert [f"grover {missing} --run" in i.value for i in at.info] == [True]
    assert len(at.get("plotly_chart")) == 1


def test_damaged_or_empty_results_show_a_message_not_a_traceback(monkeypatch, tiny_run, tmp_path):
    runs = experiments_run(tiny_run, tmp_path)
    (runs / "tiny" / run.FINETUNE_RESULTS).write_bytes(b"this is not a parquet file \x00\xff" * 10)
    nextkmer_results().iloc[:0].to_parquet(runs / "tiny" / run.NEXTKMER_RESULTS)
    at = open_page(monkeypatch, runs)
    assert any("finetune_results.parquet" in e.value and "could not be read" in e.value for e in at.error)
    assert any("holds no results" in i.value and "grover nextkmer --run" in i.value for i in at.info)
    assert not at.get("plotly_chart")
    assert at.dataframe[0].value["task"].tolist() == ["prom300"]  # the task tables are still summarised
