"""Unit tests of the model comparison's pure logic (small inline tables with known answers)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard.charts import compare as charts


def tokens_table(strings: list[str]) -> pd.DataFrame:
    """A tokens.parquet-like table: ids in list order, names in brackets are special."""
    return pd.DataFrame({"token_id": np.arange(len(strings)), "token": strings,
                         "is_special": [s.startswith("[") for s in strings]})


# --- vocabularies and layers ----------------------------------------------------------------------


def test_identical_vocabularies_match_one_to_one():
    a = tokens_table(["[PAD]", "[MASK]", "A", "C", "GT"])
    match = charts.match_vocabularies(a, a.copy())
    assert match.identical and match.same_ids and match.n_shared == match.n_a == match.n_b == 3
    assert match.shared["token"].tolist() == ["A", "C", "GT"]
    assert match.only_a == match.only_b == ()
    level, text = charts.vocabulary_message(match, "run1", "run2")
    assert level == "success" and "Same vocabulary" in text and "3 nucleotide tokens" in text


def test_same_tokens_numbered_differently_are_matched_by_string():
    a = tokens_table(["[PAD]", "A", "C", "GT"])
    b = tokens_table(["[PAD]", "[MASK]", "GT", "C", "A"])
    match = charts.match_vocabularies(a, b)
    assert not match.identical and not match.same_ids and match.n_shared == 3
    assert match.shared.to_dict("list") == {"token": ["A", "C", "GT"], "token_id_a": [1, 2, 3], "token_id_b": [4, 3, 2]}
    level, text = charts.vocabulary_message(match, "a", "b")
    assert level == "warning" and "numbered differently" in text


def test_different_vocabularies_compare_the_shared_tokens():
    a = tokens_table(["[UNK]", "A", "C", "GT", "TTA"])
    b = tokens_table(["[UNK]", "A", "C", "GG", "TTAA", "CCC"])
    match = charts.match_vocabularies(a, b)
    assert (match.n_a, match.n_b, match.n_shared) == (4, 5, 2)
    assert match.only_a == ("GT", "TTA") and match.only_b == ("CCC", "GG", "TTAA")
    level, text = charts.vocabulary_message(match, "ours", "grover")
    assert level == "warning"
    assert "The vocabularies differ" in text and "**ours** has 4" in text and "**grover** 5" in text
    assert "only the 2 tokens in both" in text and "Only in ours: 2 (`GT`, `TTA`)" in text
    nothing = charts.match_vocabularies(tokens_table(["A"]), tokens_table(["C"]))
    assert charts.vocabulary_message(nothing, "x", "y")[0] == "error"


@pytest.mark.parametrize("layers, depth, expected", [
    ([0, 1, 2, 3, 4], 0.5, 2),
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 0.5, 6),
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 0.75, 9),
    ([0, 1, 2], 0.25, 0),  # a tie between 0 and 1 goes to the shallower layer
    ([0, 1, 2, 3, 4], 1.0, 4),
], ids=["4-layers-half", "12-layers-half", "12-layers-three-quarters", "tie", "last"])
def test_matching_layer_lines_up_depths(layers, depth, expected):
    assert charts.matching_layer(layers, depth) == expected


def test_relative_depth():
    assert charts.relative_depth(2, [0, 1, 2, 3, 4]) == 0.5
    assert charts.relative_depth(0, [0]) == 0.0
    with pytest.raises(ValueError):
        charts.matching_layer([], 0.5)


def test_shared_points_keeps_the_given_tokens():
    points = pd.DataFrame({"token_id": [3, 4, 5, 6], "x": [0, 1, 2, 3]})
    assert charts.shared_points(points, np.array([6, 4, 9]))["token_id"].tolist() == [4, 6]


# --- side by side ---------------------------------------------------------------------------------


def test_group_order_reads_numbers_as_numbers():
    assert charts.group_order(["4-7", "1", "16+", "2-3", "8-15"]) == ["1", "2-3", "4-7", "8-15", "16+"]
    assert charts.group_order([str(i) for i in range(10, 0, -1)]) == [str(i) for i in range(1, 11)]
    assert charts.group_order(["repeat", "non-repeat"]) == ["non-repeat", "repeat"]


def groups_table(layers: list[int], offset: float) -> pd.DataFrame:
    rows = []
    for layer in layers:
        for grouping, groups in (("length_group", ["1", "2-3"]), ("repeat_localised", ["non-repeat", "repeat"])):
            for value in ("self_similarity", "corrected"):
                for g, group in enumerate(groups):
                    rows.append(dict(layer=layer, grouping=grouping, group=group, n_tokens=10 + g, value=value,
                                     mean=offset + 0.1 * layer + g, std=0.01, q25=0.0, median=0.5, q75=1.0))
    return pd.DataFrame(rows)


def test_self_similarity_curves_and_figure():
    names = ("A: x", "B: y")
    curves = charts.self_similarity_curves(groups_table([0, 1, 2], 0.0), groups_table([0, 1, 2, 3, 4], 10.0),
                                           grouping="length_group", value="corrected", names=names)
    assert len(curves) == 2 * 3 + 2 * 5
    a = curves[(curves["run"] == names[0]) & (curves["group"] == "2-3")]
    assert a["layer"].tolist() == [0, 1, 2] and a["mean"].tolist() == pytest.approx([1.0, 1.1, 1.2])
    b = curves[(curves["run"] == names[1]) & (curves["group"] == "1")]
    assert b["depth"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and b["mean"].iloc[0] == 10.0
    fig = charts.self_similarity_figure(curves, names=names, value="corrected", x="depth")
    assert len(fig.data) == 4  # 2 runs x 2 groups
    assert [t.showlegend for t in fig.data] == [True, True, False, False]
    assert fig.data[0].line.color == fig.data[2].line.color  # a group keeps its colour in both panels
    assert list(fig.data[3].x) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert fig.layout.annotations[0].text == names[0]


def probes_table(layers: list[int], score: float) -> pd.DataFrame:
    rows = [dict(annotation=a, feature_set="embedding", layer=layer, mcc=score + 0.01 * layer,
                 balanced_accuracy=0.5, accuracy=0.6, n_windows=100, n_classes=3, n_folds=2)
            for a in ("repeats", "chromatin_states") for layer in layers]
    rows += [dict(annotation=a, feature_set="kmer_baseline", layer=-1, mcc=0.3, balanced_accuracy=0.4,
                  accuracy=0.5, n_windows=100, n_classes=3, n_folds=2) for a in ("repeats", "chromatin_states")]
    return pd.DataFrame(rows)


def test_probe_rows_and_figure():
    names = ("A", "B")
    rows = charts.probe_rows(probes_table([0, 1, 2], 0.5), probes_table([0, 1, 2, 3, 4], 0.2), names=names)
    assert len(rows) == 2 * 3 + 2 + 2 * 5 + 2
    assert math.isnan(rows.loc[rows["feature_set"] == "kmer_baseline", "depth"].iloc[0])
    assert rows.loc[(rows["run"] == "B") & (rows["layer"] == 1), "depth"].iloc[0] == 0.25
    fig = charts.probe_figure(rows, names=names, metric="mcc")
    assert [a.text for a in fig.layout.annotations] == ["chromatin_states", "repeats"]
    assert len(fig.data) == 2 * 2 * 2  # annotations x runs x (scores, baseline)
    baseline = [t for t in fig.data if t.name == "A: k-mer baseline"][0]
    assert list(baseline.y) == [0.3, 0.3] and list(baseline.x) == [0.0, 4.0]
    line_b = [t for t in fig.data if t.name == "B"][0]
    assert list(line_b.y) == pytest.approx([0.2, 0.21, 0.22, 0.23, 0.24])


def test_evaluation_table_and_figure():
    names = ("A", "B")
    a = {"masked_top1_accuracy": 0.2, "masked_top10_accuracy": 0.7, "frequency_baseline_top1_accuracy": 0.05,
         "frequency_baseline_top10_accuracy": 0.3, "perplexity": 50.0}
    b = {"masked_top1_accuracy": 0.1, "masked_top10_accuracy": 0.5}
    table = charts.evaluation_table(a, b, names=names)
    assert table["field"].tolist() == ["masked_top1_accuracy", "masked_top10_accuracy", "perplexity",
                                       "frequency_baseline_top1_accuracy", "frequency_baseline_top10_accuracy"]
    assert table.loc[0, "A"] == 0.2 and table.loc[0, "B"] == 0.1 and math.isnan(table.loc[2, "B"])
    assert charts.evaluation_table({}, {}, names=names).empty
    fig = charts.evaluation_figure(table, names=names)
    assert [t.name for t in fig.data] == ["A: model", "A: frequency baseline", "B: model", "B: frequency baseline"]
    assert list(fig.data[0].y) == [0.2, 0.7] and all(math.isnan(v) for v in fig.data[3].y)


# --- per-token agreement --------------------------------------------------------------------------


def test_self_similarity_pairs_follow_the_string_match():
    shared = pd.DataFrame({"token": ["A", "C", "GT"], "token_id_a": [1, 2, 3], "token_id_b": [7, 5, 6]})
    a = pd.DataFrame({"layer": [2, 2, 2, 1], "token_id": [1, 2, 3, 1], "self_similarity": [0.1, 0.2, 0.3, 0.9]})
    b = pd.DataFrame({"layer": [4, 4, 4], "token_id": [7, 5, 6], "self_similarity": [0.2, 0.4, 0.6]})
    pairs = charts.self_similarity_pairs(a, b, shared, layer_a=2, layer_b=4)
    assert pairs[["token", "a", "b"]].to_dict("list") == {"token": ["A", "C", "GT"], "a": [0.1, 0.2, 0.3],
                                                          "b": [0.2, 0.4, 0.6]}
    stats = charts.correlation_summary(pairs)
    assert stats["n"] == 3 and stats["pearson"] == pytest.approx(1.0) and stats["spearman"] == pytest.approx(1.0)
    reversed_ = pairs.assign(b=pairs["b"].to_numpy()[::-1])
    assert charts.correlation_summary(reversed_)["spearman"] == pytest.approx(-1.0)
    assert math.isnan(charts.correlation_summary(pairs.iloc[:2])["pearson"])
    fig = charts.self_similarity_scatter(pairs, names=("A", "B"), layers=(2, 4))
    assert type(fig.data[1]) is go.Scatter and list(fig.data[1].x) == [0.1, 0.2, 0.3]  # few tokens: SVG
    assert "layer 4" in fig.layout.yaxis.title.text
    n = 3_000  # beyond figures.SVG_MAX_POINTS: WebGL
    many = pd.DataFrame({"token": ["A"] * n, "a": np.linspace(0, 1, n), "b": np.linspace(1, 0, n)})
    large = charts.self_similarity_scatter(many, names=("A", "B"), layers=(2, 4))
    assert type(large.data[1]) is go.Scattergl and len(large.data[1].x) == n


def test_cosine_knn_on_known_angles():
    angles = np.deg2rad([0, 10, 30, 100, 180])
    matrix = np.column_stack([np.cos(angles), np.sin(angles)]) * np.array([[1], [5], [2], [1], [3]])  # lengths do not matter
    knn = charts.cosine_knn(matrix, 2)
    assert knn.tolist() == [[1, 2], [0, 2], [1, 0], [2, 4], [3, 2]]  # 100°: 30° (70° away), then 180° (80°)
    with_zero = np.vstack([matrix, np.zeros(2)])
    assert charts.cosine_knn(with_zero, 1)[:, 0].tolist()[:5] == [1, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="k must lie"):
        charts.cosine_knn(matrix, 5)


def test_knn_jaccard_and_chance():
    a = np.array([[1, 2, 3], [4, 5, 6]])
    b = np.array([[3, 2, 9], [7, 8, 0]])
    assert charts.knn_jaccard(a, b).tolist() == pytest.approx([2 / 4, 0.0])
    assert charts.knn_jaccard(a, a).tolist() == [1.0, 1.0]
    assert charts.chance_jaccard(11, 10) == pytest.approx(1.0)  # every other token is a neighbour
    assert charts.chance_jaccard(101, 10) == pytest.approx(1 / 19)
    assert math.isnan(charts.chance_jaccard(1, 1))


def test_knn_overlap_per_layer_pair():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 16))
    other = rng.normal(size=(200, 16))
    matrices_a = {0: base, 1: other}
    matrices_b = {0: 3.0 * base, 1: base + 0.01 * rng.normal(size=base.shape), 2: rng.normal(size=(200, 16))}
    table = charts.knn_overlap(matrices_a, matrices_b, k=10)
    assert table.columns.tolist() == ["layer_a", "layer_b", "mean_jaccard", "median_jaccard", "n_tokens", "k", "chance"]
    assert len(table) == 6 and (table["n_tokens"] == 200).all() and (table["k"] == 10).all()
    cell = table.set_index(["layer_a", "layer_b"])["mean_jaccard"]
    assert cell[(0, 0)] == pytest.approx(1.0)  # scaling does not change cosine neighbours
    assert cell[(0, 1)] > 0.8
    assert cell[(1, 2)] < 0.2 and cell[(1, 2)] == pytest.approx(charts.chance_jaccard(200, 10), abs=0.05)
    small = charts.knn_overlap({0: base[:5]}, {0: base[:5]}, k=10)
    assert small["k"].iloc[0] == 4 and small["mean_jaccard"].iloc[0] == 1.0
    assert charts.knn_overlap({}, {}).empty
    fig = charts.knn_heatmap(table, names=("A", "B"))
    assert np.asarray(fig.data[0].z).shape == (2, 3) and list(fig.data[0].y) == ["0", "1"]


def test_layer_matrices_pick_rows():
    means = {"layer_0": np.arange(12, dtype=np.float32).reshape(4, 3), "layer_1": np.ones((4, 3)), "count": np.ones(4)}
    matrices = charts.layer_matrices(means, [3, 1])
    assert sorted(matrices) == [0, 1] and matrices[0].tolist() == [[9, 10, 11], [3, 4, 5]]
