"""Pure builders of the Benchmarks page (dashboard/charts/benchmarks.py), on small results tables with known answers."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest

from analysis import run
from dashboard.charts import benchmarks as charts

NAN = float("nan")


def finetune_results() -> pd.DataFrame:
    rows = [
        # task, model, method, mcc, accuracy, macro_f1, precision, recall
        ("ctcf", "grover", "fine-tuned", 0.60, 0.81, 0.79, 0.75, 0.70),
        ("ctcf", "tfidf_4mer", "tf-idf k-mer baseline", 0.26, 0.66, 0.62, 0.55, 0.50),
        ("prom300", "grover", "fine-tuned", 0.99, 0.995, 0.995, 0.99, 1.0),
        ("prom300", "kmer_model", "fine-tuned", 0.79, 0.90, 0.89, 0.88, 0.91),
        ("prom300", "tfidf_4mer", "tf-idf k-mer baseline", 0.67, 0.83, 0.83, 0.80, 0.86),
        ("mine", "grover", "fine-tuned", NAN, 0.5, 0.33, NAN, 0.0),  # one class predicted: MCC undefined
        ("mine", "tfidf_4mer", "tf-idf k-mer baseline", -0.1, 0.45, 0.44, 0.4, 0.5),
    ]
    table = pd.DataFrame(rows, columns=["task", "model", "method", "mcc", "accuracy", "macro_f1", "precision", "recall"])
    table["n_train"], table["n_test"], table["seconds"] = 800, 100, 1.5
    return table[list(run.FINETUNE_RESULT_COLUMNS)]


def nextkmer_results() -> pd.DataFrame:
    rows = []
    for cycles, tuned in ((100, [0.10, 0.010]), (600, [0.14, 0.020]), (2000, [0.12, NAN])):
        for k, accuracy in zip((2, 6), tuned):
            rows.append((f"bpe_{cycles}", "bpe", float(cycles), NAN, k, "fine-tuned", accuracy))
            rows.append((f"bpe_{cycles}", "bpe", float(cycles), NAN, k, "frequency baseline", accuracy / 2))
            rows.append((f"bpe_{cycles}", "bpe", float(cycles), NAN, k, "chance", 4.0 ** -k))
    for size, tuned in ((4, [0.09, 0.004]), (6, [0.08, 0.003])):
        for k, accuracy in zip((2, 6), tuned):
            rows.append((f"kmer_{size}", "kmer", NAN, float(size), k, "fine-tuned", accuracy))
            rows.append((f"kmer_{size}", "kmer", NAN, float(size), k, "chance", 4.0 ** -k))
    table = pd.DataFrame(rows, columns=["vocabulary", "vocabulary_kind", "bpe_cycles", "kmer_size", "k", "method",
                                        "accuracy"])
    table["n_train"], table["n_test"], table["seconds"] = 1000, 200, 3.0
    return table[list(run.NEXTKMER_RESULT_COLUMNS)].sample(frac=1, random_state=0)  # order must not matter


def traces_by_name(fig) -> dict:
    return {t.name: t for t in fig.data}


def test_doctests_pass():
    result = doctest.testmod(charts)
    assert result.attempted >= 5 and result.failed == 0


# --- fine-tuning ----------------------------------------------------------------------------------

def test_finetune_figure_has_a_bar_per_model_and_the_baseline_beside_each():
    fig = charts.finetune_figure(finetune_results())
    traces = traces_by_name(fig)
    assert list(traces) == ["grover", "kmer_model", "tf-idf k-mer baseline"]  # baseline last: beside each group
    assert fig.layout.barmode == "group"
    for trace in fig.data:
        assert list(trace.x) == ["prom300", "ctcf", "mine"]  # the paper's tasks first, then the others
    baseline = traces["tf-idf k-mer baseline"]
    assert list(baseline.y) == pytest.approx([0.67, 0.26, -0.1])  # the baseline on every task
    assert baseline.marker.color == charts.BASELINE_COLOUR and baseline.marker.pattern.shape == charts.BASELINE_PATTERN
    assert baseline.marker.pattern.fillmode == "overlay"  # else the grey fill is dropped and the bar is invisible
    assert traces["grover"].marker.color != traces["kmer_model"].marker.color != charts.BASELINE_COLOUR
    assert tuple(fig.layout.yaxis.range) == (-1.0, 1.12)  # a negative MCC is shown


def test_finetune_nan_is_a_gap_and_missing_pairs_too():
    traces = traces_by_name(charts.finetune_figure(finetune_results()))
    grover = traces["grover"]
    assert math.isnan(grover.y[2]) and grover.text[2] == "n/a"
    kmer_model = traces["kmer_model"]  # only fine-tuned on prom300
    assert kmer_model.y[0] == pytest.approx(0.79) and np.isnan(kmer_model.y[1:]).all()
    assert list(kmer_model.text) == ["0.790", "", ""]  # not run there: no "n/a"


def test_metric_switch_changes_the_values():
    results = finetune_results()
    mcc = traces_by_name(charts.finetune_figure(results, metric="mcc"))["grover"].y
    accuracy = traces_by_name(charts.finetune_figure(results, metric="accuracy"))
    assert list(accuracy["grover"].y) == pytest.approx([0.995, 0.81, 0.5])
    assert list(mcc[:2]) == pytest.approx([0.99, 0.60])
    assert "accuracy" in accuracy["grover"].hovertemplate
    assert tuple(charts.finetune_figure(results, metric="recall").layout.yaxis.range) == (0.0, 1.12)
    with pytest.raises(ValueError, match="unknown metric"):
        charts.finetune_figure(results, metric="auc")


def test_several_baseline_models_get_their_own_names():
    results = finetune_results()
    extra = results.iloc[[1]].assign(model="tfidf_6mer", mcc=0.3)
    names = [t.name for t in charts.finetune_figure(pd.concat([results, extra])).data]
    assert names[-2:] == ["tf-idf k-mer baseline (tfidf_4mer)", "tf-idf k-mer baseline (tfidf_6mer)"]


def test_finetune_table_orders_rows_and_compares_with_the_baseline():
    table = charts.finetune_table(finetune_results(), metric="mcc")
    assert list(table.columns) == [*run.FINETUNE_RESULT_COLUMNS, "vs_baseline"]
    assert list(zip(table["task"], table["model"])) == [
        ("prom300", "grover"), ("prom300", "kmer_model"), ("prom300", "tfidf_4mer"),
        ("ctcf", "grover"), ("ctcf", "tfidf_4mer"), ("mine", "grover"), ("mine", "tfidf_4mer")]
    vs = table.set_index(["task", "model"])["vs_baseline"]
    assert vs["prom300", "grover"] == pytest.approx(0.32) and vs["ctcf", "grover"] == pytest.approx(0.34)
    assert math.isnan(vs["prom300", "tfidf_4mer"]) and math.isnan(vs["mine", "grover"])
    accuracy = charts.finetune_table(finetune_results(), metric="accuracy").set_index(["task", "model"])
    assert accuracy.at[("prom300", "grover"), "vs_baseline"] == pytest.approx(0.165)


def test_task_summary_counts_splits_and_positive_shares():
    binary = pd.DataFrame({"label": [1, 0, 1, 1, 0, 0], "chromosome": ["chr1", "chr1", "chr2", "chr21", "chr21", "chr22"],
                           "split": ["train", "train", "validation", "test", "test", "test"]})
    multi = pd.DataFrame({"label": [0, 1, 2], "chromosome": ["chr1", "chr2", "chr3"], "split": ["train", "train", "test"]})
    summary = charts.task_summary({"mine": multi, "prom300": binary}).set_index("task")
    assert list(summary.index) == ["prom300", "mine"]
    row = summary.loc["prom300"]
    assert (row["n_train"], row["n_validation"], row["n_test"], row["classes"]) == (2, 1, 3, 2)
    assert row["positive_share"] == pytest.approx(0.5) and row["test_positive_share"] == pytest.approx(1 / 3)
    assert row["test_chromosomes"] == "chr21, chr22"
    assert math.isnan(summary.at["mine", "positive_share"]) and summary.at["mine", "classes"] == 3


# --- next-k-mer -----------------------------------------------------------------------------------

def test_nextkmer_lines_per_k_and_method_with_their_styles():
    fig = charts.nextkmer_figure(nextkmer_results())
    traces = traces_by_name(fig)
    tuned = traces["k=2"]
    assert list(tuned.x) == [100, 600, 2000] and list(tuned.y) == pytest.approx([0.10, 0.14, 0.12])  # sorted by cycles
    assert tuned.line.dash == "solid"
    assert traces["k=2 · frequency baseline"].line.dash == "dash"
    chance = traces["k=6 · chance"]
    assert chance.line.dash == "dot" and list(chance.y) == pytest.approx([4.0 ** -6] * 3)
    assert tuned.line.color == traces["k=2 · chance"].line.color != traces["k=6"].line.color  # colour is k
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "linear"


def test_kmer_vocabularies_are_their_own_named_references():
    traces = traces_by_name(charts.nextkmer_figure(nextkmer_results()))
    kmer = {name: t for name, t in traces.items() if name.startswith("kmer_")}
    assert set(kmer) == {"kmer_4 · k=2", "kmer_4 · k=6", "kmer_6 · k=2", "kmer_6 · k=6"}
    ref = kmer["kmer_4 · k=6"]
    assert list(ref.x) == [100, 2000] and list(ref.y) == pytest.approx([0.004, 0.004])  # across the BPE cycle range
    assert ref.line.dash == charts.KMER_DASH and list(ref.text) == ["", "kmer_4"]
    assert ref.marker.symbol != kmer["kmer_6 · k=6"].marker.symbol
    assert ref.line.color == traces["k=6"].line.color
    assert not any("chance" in name and name.startswith("kmer_") for name in traces)  # chance: once per k, from BPE rows


def test_nextkmer_ks_filter_keeps_colours_and_nan_is_a_gap():
    results = nextkmer_results()
    all_k = traces_by_name(charts.nextkmer_figure(results))
    only_6 = traces_by_name(charts.nextkmer_figure(results, ks=[6], x_scale="linear", y_scale="log"))
    assert all(name.endswith("k=6") or "k=6 ·" in name for name in only_6), list(only_6)
    assert only_6["k=6"].line.color == all_k["k=6"].line.color
    assert only_6["k=6"].y[2] is None or math.isnan(only_6["k=6"].y[2])  # bpe_2000 has no k=6 accuracy
    assert only_6["k=6"].connectgaps is False
    fig = charts.nextkmer_figure(results, ks=[6], x_scale="linear", y_scale="log")
    assert fig.layout.xaxis.type == "linear" and fig.layout.yaxis.type == "log"
    assert not charts.nextkmer_figure(results, ks=[]).data
    with pytest.raises(ValueError, match="x_scale"):
        charts.nextkmer_figure(results, x_scale="symlog")


def test_nextkmer_without_bpe_rows_still_draws_the_kmer_references():
    results = nextkmer_results()
    fig = charts.nextkmer_figure(results[results["vocabulary_kind"] == "kmer"])
    assert {t.name for t in fig.data} == {"kmer_4 · k=2", "kmer_4 · k=6", "kmer_6 · k=2", "kmer_6 · k=6"}
    assert tuple(fig.data[0].x) == charts.DEFAULT_CYCLE_SPAN


def test_nextkmer_table_and_peaks():
    table = charts.nextkmer_table(nextkmer_results(), ks=[6])
    assert set(table["k"]) == {6}
    assert list(dict.fromkeys(table["vocabulary"])) == ["bpe_100", "bpe_600", "bpe_2000", "kmer_4", "kmer_6"]
    assert list(table.loc[table["vocabulary"] == "bpe_600", "method"]) == ["fine-tuned", "frequency baseline", "chance"]
    chance = table.loc[table["method"] == "chance", "times_chance"]
    assert np.allclose(chance, 1.0)
    peaks = charts.nextkmer_peaks(nextkmer_results()).set_index("k")
    assert list(peaks["vocabulary"]) == ["bpe_600", "bpe_600"]
    assert peaks.at[6, "accuracy"] == pytest.approx(0.02) and peaks.at[6, "baseline"] == pytest.approx(0.01)
    assert peaks.at[2, "chance"] == pytest.approx(1 / 16)
    assert charts.ks_of(nextkmer_results()) == [2, 6]
