"""Pure builders of the GC/AG content clusters page (dashboard/charts/clusters.py), on small tables with known answers."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard.charts import clusters as charts


def tokens_table() -> pd.DataFrame:
    return pd.DataFrame({
        "token_id": [0, 5, 6, 7, 8],
        "token": ["[PAD]", "AA", "GC", "AAGT", "CG"],
        "is_special": [True, False, False, False, False],
        "length": [0, 2, 2, 4, 2],
        "frequency": [0, 100, 10, 50, 1],
        "gc": [np.nan, 0.0, 1.0, 0.25, 1.0],
        "ag": [np.nan, 1.0, 0.5, 0.75, 0.5],
        "ac": [np.nan, 1.0, 0.5, 0.5, 0.5],
        "cpg": [0, 0, 0, 0, 1],
        "chromatin_states.share_TssA": [np.nan, 0.1, 0.9, 0.2, 0.8],
    })


def cluster_table() -> pd.DataFrame:
    rows = []
    for layer, labels in ((0, [0, 1, 0, 1]), (1, [0, 0, 1, 2])):
        for method in ("kmeans", "hierarchical"):
            rows += [{"layer": layer, "method": method, "token_id": t, "cluster": c} for t, c in zip((8, 5, 6, 7), labels)]
    return pd.DataFrame(rows)


def projection_table() -> pd.DataFrame:
    return pd.DataFrame({"layer": [1, 1, 1], "method": ["umap"] * 3, "token_id": [5, 6, 7],
                         "x": [0.0, 1.0, 2.0], "y": [3.0, 4.0, 5.0]})


def test_cluster_colours_are_fixed_per_cluster_and_noise_is_grey():
    assert charts.cluster_colour(0) == charts.CLUSTER_PALETTE[0]
    assert charts.cluster_colour(3) == charts.cluster_colour(3 + len(charts.CLUSTER_PALETTE))
    assert charts.cluster_colour(-1) == charts.NOISE_COLOUR
    assert (charts.cluster_name(2), charts.cluster_name(-1)) == ("cluster 2", "noise")


def test_clustered_tokens_joins_properties_for_one_layer_and_method():
    members = charts.clustered_tokens(tokens_table(), cluster_table(), layer=1, method="kmeans")
    assert members["token_id"].tolist() == [5, 6, 7, 8]  # sorted by id
    assert members["cluster"].tolist() == [0, 1, 2, 0]
    assert members.loc[members["token_id"] == 7, "token"].item() == "AAGT"
    with pytest.raises(ValueError, match=r"No 'kmeans' clusters at layer 9.*\(0, 'hierarchical'\)"):
        charts.clustered_tokens(tokens_table(), cluster_table(), layer=9, method="kmeans")


def test_cluster_points_keeps_projected_tokens_only():
    members = charts.clustered_tokens(tokens_table(), cluster_table(), layer=1, method="kmeans")
    points = charts.cluster_points(members, projection_table(), layer=1, method="umap")
    assert points["token_id"].tolist() == [5, 6, 7]  # token 8 has no projection
    assert points.loc[points["token_id"] == 6, ["x", "y"]].to_numpy().tolist() == [[1.0, 4.0]]
    with pytest.raises(ValueError, match="No 'pca' projection at layer 1"):
        charts.cluster_points(members, projection_table(), layer=1, method="pca")


def test_cluster_map_draws_one_trace_per_cluster_and_dims_the_others():
    members = charts.clustered_tokens(tokens_table(), cluster_table(), layer=1, method="kmeans")
    points = members.assign(x=np.arange(4.0), y=np.arange(4.0))
    fig = charts.cluster_map_figure(points, method="umap")
    assert all(type(t) is go.Scatter for t in fig.data)  # a few points: SVG
    assert [t.name for t in fig.data] == ["cluster 0 (2)", "cluster 1 (1)", "cluster 2 (1)"]
    assert sum(len(t.x) for t in fig.data) == 4
    assert fig.data[0].customdata[:, 0].tolist() == [5, 8] and fig.data[0].customdata[0, 2] == 0
    assert {t.marker.opacity for t in fig.data} == {charts.POINT_OPACITY}
    assert fig.data[1].marker.color == charts.cluster_colour(1)

    dimmed = charts.cluster_map_figure(points, method="pca", selected=1)
    assert [t.marker.opacity for t in dimmed.data] == [charts.DIMMED_OPACITY, charts.POINT_OPACITY, charts.DIMMED_OPACITY]
    assert dimmed.layout.xaxis.title.text == "PC1"


def test_cluster_map_takes_100k_points():
    n = 100_000
    rng = np.random.default_rng(0)
    points = pd.DataFrame({"token_id": np.arange(n), "token": "ACGT", "cluster": rng.integers(0, 8, n),
                           "length": 4, "frequency": rng.integers(1, 1000, n), "gc": rng.random(n), "ag": rng.random(n),
                           "x": rng.random(n), "y": rng.random(n)})
    started = time.perf_counter()
    fig = charts.cluster_map_figure(points, method="umap")
    assert sum(len(t.x) for t in fig.data) == n  # nothing subsampled
    assert all(type(t) is go.Scattergl for t in fig.data)  # WebGL beyond SVG_MAX_POINTS
    assert time.perf_counter() - started < 10


def test_gc_ag_scatter_puts_gc_on_x_and_ag_on_y():
    members = charts.clustered_tokens(tokens_table(), cluster_table(), layer=1, method="kmeans")
    fig = charts.gc_ag_figure(members)
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["cluster 2 (1)"].x) == [0.25] and list(by_name["cluster 2 (1)"].y) == [0.75]
    assert sum(len(t.x) for t in fig.data) == 4
    assert fig.layout.xaxis.title.text == "GC content"
    assert all(len(t.marker.size) == len(t.x) for t in fig.data)  # size by log frequency


def profile_rows() -> pd.DataFrame:
    return pd.DataFrame({
        "cluster": [1, 0, 0], "n_tokens": [3, 5, 7], "gc_mean": [0.2, 0.6, 0.5], "ag_mean": [0.5, 0.4, 0.5],
        "ac_mean": [0.5, 0.5, 0.5], "length_mean": [3.0, 4.5, 5.0], "length_median": [3.0, 4.0, 5.0],
        "log10_frequency_mean": [2.0, 1.5, 1.0], "example_tokens": ["AA TT", "GC CG", "A"],
        "layer": [1, 1, 2], "method": ["kmeans"] * 3,
    })


def test_profile_table_selects_one_layer_and_sorts_by_cluster():
    table = charts.profile_table(profile_rows(), layer=1, method="kmeans")
    assert table["cluster"].tolist() == [0, 1]
    assert list(table.columns) == list(charts.PROFILE_COLUMNS)
    assert charts.profile_table(profile_rows(), layer=1, method="hierarchical").empty


def test_profile_figure_has_a_bar_per_cluster_in_each_panel():
    table = charts.profile_table(profile_rows(), layer=1, method="kmeans")
    fig = charts.profile_figure(table)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 6  # tokens, GC, AG, AC, length, frequency
    assert list(bars[0].x) == ["cluster 0", "cluster 1"] and list(bars[0].y) == [5, 3]
    median = next(t for t in fig.data if t.name == "median length")
    assert list(median.y) == [4.0, 3.0]


@pytest.mark.parametrize("column, expected", [
    ("chromatin_states.share_TssA", ("chromatin_states", "TssA")),
    ("repeats.share_SINE/Alu_plus", ("repeats", "SINE/Alu_plus")),
    ("gc", ("", "gc")),
], ids=["state", "stranded-repeat", "not-a-share"])
def test_split_share_column(column, expected):
    assert charts.split_share_column(column) == expected


def test_share_label_shows_strand():
    assert charts.share_label("SINE/Alu_plus") == "SINE/Alu (+)"
    assert charts.share_label("LINE/L1_minus") == "LINE/L1 (−)"
    assert charts.share_label("TssA") == "TssA"
    assert charts.annotation_title("chromatin_states") == "chromatin states"


def enrichment_rows() -> pd.DataFrame:
    columns = ["chromatin_states.share_any", "chromatin_states.share_TssA", "repeats.share_SINE/Alu_plus",
               "chromatin_states.share_Quies"]
    rows = []
    for cluster in (1, 0):
        for i, column in enumerate(columns):
            rows.append({"cluster": cluster, "annotation": column, "n_tokens": 3, "mean_share": 0.1 * i,
                         "background_share": 0.2, "log2_enrichment": cluster + i, "p_value": 0.01,
                         "q_value": 0.01 if (cluster, i) == (1, 1) else 0.5, "layer": 1, "method": "kmeans"})
    return pd.DataFrame(rows)


def test_enrichment_matrix_groups_columns_by_annotation_with_any_last():
    matrix = charts.enrichment_matrix(enrichment_rows(), layer=1, method="kmeans")
    assert matrix.groups == (
        ("chromatin_states", ("chromatin_states.share_TssA", "chromatin_states.share_Quies", "chromatin_states.share_any")),
        ("repeats", ("repeats.share_SINE/Alu_plus",)),
    )
    assert matrix.log2.index.tolist() == [0, 1]
    assert matrix.log2.loc[1, "chromatin_states.share_TssA"] == 2  # cluster 1 + column index 1
    assert matrix.significant().to_numpy().sum() == 1
    assert bool(matrix.significant().loc[1, "chromatin_states.share_TssA"])
    assert charts.enrichment_matrix(enrichment_rows(), layer=0, method="kmeans") is None


def test_enrichment_heatmap_marks_significant_cells_on_a_shared_symmetric_scale():
    matrix = charts.enrichment_matrix(enrichment_rows(), layer=1, method="kmeans")
    fig = charts.enrichment_figure(matrix)
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 2  # one panel per annotation
    assert list(heatmaps[0].x) == ["TssA", "Quies", "any"] and list(heatmaps[1].x) == ["SINE/Alu (+)"]
    assert list(heatmaps[0].y) == ["cluster 0", "cluster 1"]
    marks = np.asarray(heatmaps[0].text)
    assert marks[1, 0] == charts.SIGNIFICANT_MARK and (marks == charts.SIGNIFICANT_MARK).sum() == 1
    assert fig.layout.coloraxis.cmin == -fig.layout.coloraxis.cmax == -4  # largest |log2| is 1 + 3
    assert {a.text for a in fig.layout.annotations} >= {"chromatin states", "repeats"}


def test_cluster_members_lists_one_cluster_most_frequent_first():
    members = charts.clustered_tokens(tokens_table(), cluster_table(), layer=1, method="kmeans")
    listed = charts.cluster_members(members, 0)
    assert listed["token"].tolist() == ["AA", "CG"]  # frequency 100 then 1
    assert list(listed.columns) == list(charts.MEMBER_COLUMNS)
    assert charts.cluster_members(members, 7).empty


def test_a_click_gives_the_cluster_of_the_point():
    selection = {"points": [{"curve_number": 2, "point_index": 0, "customdata": [7, "AAGT", 2, 4, 50, 0.25, 0.75]}]}
    assert charts.clicked_cluster(selection) == 2
    assert charts.selection_signature(selection) == ((2, 0),)
    assert charts.clicked_cluster({"points": [{"x": 1}]}) is None  # not one of these figures
    assert charts.clicked_cluster(None) is None and charts.selection_signature({"points": []}) is None
