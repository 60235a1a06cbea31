"""Pure builders of the chromatin and annotations page (dashboard/charts/annotations.py), with known answers."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard.charts import annotations as charts


def window_table() -> pd.DataFrame:
    return pd.DataFrame({
        "window_index": [0, 1, 2, 3],
        "chromosome": ["chr1", "chr1", "chr2", "chr2"],
        "first_token": [0, 10, 0, 10], "n_tokens": [10, 10, 10, 10],
        "start": [0, 100, 0, 100], "end": [100, 200, 100, 200],
        "chromatin_states": ["Quies", "TssA", "none", "Quies"],
        "chromatin_states.covered_fraction": [1.0, 1.0, 0.0, 1.0],
        "chromatin_states.frac_TssA": [0.0, 1.0, 0.0, 0.0],
        "chromatin_states.frac_Quies": [1.0, 0.0, 0.0, 1.0],
        "repeats": ["none", "SINE/Alu", "LINE/L1", "SINE/Alu"],
        "repeats.covered_fraction": [0.0, 0.6, 0.7, 0.8],
        "repeats.frac_LINE/L1": [0.0, 0.0, 0.7, 0.0],
        "repeats.frac_SINE/Alu": [0.0, 0.6, 0.0, 0.8],
        "replication_timing.mean": [1.5, -0.5, np.nan, 0.2],
        "replication_timing": ["early", "late", "none", "early"],
    })


def test_label_colours_keep_conventions_and_give_the_rest_the_palette_in_order():
    colours = charts.label_colours(["TssA", "none", "SINE/Alu", "late", "LINE/L1"])
    assert colours["TssA"] == charts.CHROMHMM_COLOURS["TssA"]
    assert colours["none"] == charts.NO_LABEL_COLOUR
    assert colours["late"] == charts.TIMING_COLOURS["late"]
    assert (colours["SINE/Alu"], colours["LINE/L1"]) == charts.LABEL_PALETTE[:2]


def test_window_label_order_follows_the_fraction_columns_with_none_last():
    windows = window_table()
    assert charts.window_label_order(windows, "chromatin_states") == ["TssA", "Quies", "none"]
    assert charts.window_label_order(windows, "repeats") == ["LINE/L1", "SINE/Alu", "none"]
    assert charts.window_label_order(windows, "replication_timing") == ["early", "late", "none"]


def test_colour_options_list_labels_timing_bins_signal_means_and_chromosome():
    options = charts.colour_options(window_table())
    assert list(options) == ["chromatin_states", "repeats", "replication_timing", "replication_timing.mean", "chromosome"]
    assert options["chromatin_states"] == "chromatin states (majority label)"
    assert options["replication_timing"] == "replication timing (early / late)"
    assert options["replication_timing.mean"] == "replication timing (mean signal)"
    assert charts.is_continuous("replication_timing.mean") and not charts.is_continuous("repeats")


def projections() -> pd.DataFrame:
    return pd.DataFrame({"layer": [2, 2, 2, 0], "method": ["umap", "umap", "umap", "pca"],
                         "window_index": [3, 0, 2, 0], "x": [1.0, 2.0, 3.0, 4.0], "y": [5.0, 6.0, 7.0, 8.0]})


def test_window_points_join_projection_and_annotations():
    points = charts.window_points(projections(), window_table(), layer=2, method="umap")
    assert points["window_index"].tolist() == [0, 2, 3]
    assert points["chromatin_states"].tolist() == ["Quies", "none", "Quies"]
    assert points.loc[points["window_index"] == 3, "x"].item() == 1.0
    with pytest.raises(ValueError, match=r"No 'pca' window projection at layer 2.*\(0, 'pca'\)"):
        charts.window_points(projections(), window_table(), layer=2, method="pca")


def test_sampling_note_says_when_windows_are_sampled():
    assert charts.sampling_note(10, 10) == "10 windows drawn: every window of the run, no subsampling."
    note = charts.sampling_note(5_000, 10_040, cap=5_000)
    assert note.startswith("5,000 of 10,040 windows drawn (50 %)") and "at most 5,000 windows per layer" in note


def test_window_map_by_label_draws_none_first_and_counts_in_the_legend():
    points = charts.window_points(projections(), window_table(), layer=2, method="umap")
    fig = charts.window_map_figure(points, "chromatin_states", method="umap")
    assert all(isinstance(t, go.Scatter) for t in fig.data)  # SVG: a small map
    assert [t.name for t in fig.data] == ["none (1)", "Quies (2)"]
    assert fig.data[1].marker.color == charts.CHROMHMM_COLOURS["Quies"]
    assert list(fig.data[0].customdata[0][:4]) == [2, "chr2", 0, 100]
    assert fig.data[0].customdata[0][4] == "chromatin states: none"


def test_window_map_by_signal_uses_a_colour_scale_and_greys_missing_values():
    points = charts.window_points(projections(), window_table(), layer=2, method="umap")
    fig = charts.window_map_figure(points, "replication_timing.mean", method="umap")
    assert [t.name for t in fig.data] == ["no value (1)", "replication timing"]
    assert list(fig.data[1].marker.color) == [1.5, 0.2] and fig.data[1].marker.showscale


def test_window_map_takes_100k_points():
    n = 100_000
    rng = np.random.default_rng(1)
    points = pd.DataFrame({"window_index": np.arange(n), "chromosome": "chr1", "start": np.arange(n) * 100,
                           "end": np.arange(n) * 100 + 100, "x": rng.random(n), "y": rng.random(n),
                           "chromatin_states": rng.choice(["Quies", "TssA", "Tx"], n)})
    started = time.perf_counter()
    fig = charts.window_map_figure(points, "chromatin_states", method="umap")
    assert sum(len(t.x) for t in fig.data) == n
    assert all(isinstance(t, go.Scattergl) for t in fig.data)  # WebGL beyond SVG_MAX_POINTS
    assert time.perf_counter() - started < 10


def test_a_click_on_a_window_gives_its_interval():
    selection = {"points": [{"curve_number": 0, "point_index": 4, "customdata": [7, "chr2", 700, 812, "x"]}]}
    assert charts.clicked_window(selection) == ("chr2", 700, 812)
    assert charts.clicked_window({"points": [{"x": 1}]}) is None and charts.clicked_window(None) is None


def member_table() -> pd.DataFrame:
    return pd.DataFrame({
        "token_id": [5, 6, 7, 8], "cluster": [0, 0, 1, 1],
        "chromatin_states.share_TssA": [0.2, 0.4, 0.0, np.nan],
        "chromatin_states.share_Quies": [0.8, 0.6, 1.0, np.nan],
        "chromatin_states.share_any": [1.0, 1.0, 1.0, np.nan],
        "repeats.share_SINE/Alu_plus": [0.1, 0.3, 0.0, 0.0],
        "repeats.share_SINE/Alu_minus": [0.0, 0.1, 0.5, 0.1],
        "repeats.share_any": [0.1, 0.4, 0.5, 0.1],
    })


def test_share_annotations_and_columns():
    members = member_table()
    assert charts.share_annotations(members) == ["chromatin_states", "repeats"]
    assert charts.share_columns(members, "chromatin_states") == ["chromatin_states.share_TssA",
                                                                "chromatin_states.share_Quies"]


def test_label_composition_means_shares_per_cluster_skipping_unseen_tokens():
    composition = charts.label_composition(member_table(), "chromatin_states")
    means = composition.set_index(["group", "label"])["mean_share"]
    assert means[("cluster 0", "TssA")] == pytest.approx(0.3)
    assert means[("cluster 1", "TssA")] == pytest.approx(0.0)  # token 8 (NaN) left out
    assert means[("all tokens", "Quies")] == pytest.approx(0.8)
    assert list(dict.fromkeys(composition["group"])) == ["cluster 0", "cluster 1", "all tokens"]
    assert composition.loc[composition["group"] == "all tokens", "n_tokens"].iloc[0] == 4

    repeats = charts.label_composition(member_table(), "repeats")
    minus = repeats[(repeats["group"] == "cluster 1") & (repeats["label"] == "SINE/Alu_minus")].iloc[0]
    assert (minus["label_class"], minus["strand"], minus["mean_share"]) == ("SINE/Alu", "-", pytest.approx(0.3))
    assert charts.label_composition(member_table(), "gc_domains").empty


def test_composition_bars_stack_and_hatch_the_minus_strand():
    fig = charts.composition_figure(charts.label_composition(member_table(), "repeats"), annotation="repeats")
    assert fig.layout.barmode == "stack"
    assert [t.name for t in fig.data] == ["SINE/Alu (+)", "SINE/Alu (−)"]
    assert fig.data[0].marker.color == fig.data[1].marker.color  # one colour per class
    assert (fig.data[0].marker.pattern.shape, fig.data[1].marker.pattern.shape) == ("", charts.MINUS_PATTERN)
    assert list(fig.data[0].x) == ["cluster 0", "cluster 1", "all tokens"]


def probe_rows() -> pd.DataFrame:
    rows = []
    for annotation, values, baseline in (("chromatin_states", [0.1, 0.3, 0.2], 0.25), ("repeats", [0.5, 0.4, 0.6], 0.7)):
        for layer, value in enumerate(values):
            rows.append({"annotation": annotation, "feature_set": "embedding", "layer": layer, "mcc": value,
                         "balanced_accuracy": value + 0.1, "accuracy": value + 0.2, "n_windows": 100,
                         "n_classes": 8, "n_folds": 2})
        rows.append({"annotation": annotation, "feature_set": "kmer_baseline", "layer": -1, "mcc": baseline,
                     "balanced_accuracy": baseline + 0.1, "accuracy": 0.0, "n_windows": 100, "n_classes": 8,
                     "n_folds": 2})
    return pd.DataFrame(rows)


def test_probe_table_gives_layers_baseline_and_best_layer():
    table = charts.probe_table(probe_rows(), metric="mcc")
    assert table["annotation"].tolist() == ["chromatin_states", "repeats"]
    assert list(table.columns[:5]) == ["annotation", "layer 0", "layer 1", "layer 2", "k-mer baseline"]
    assert table["best layer"].tolist() == [1, 2]
    assert table["best - baseline"].tolist() == pytest.approx([0.05, -0.1])
    assert table["windows"].tolist() == [100, 100]
    balanced = charts.probe_table(probe_rows(), metric="balanced_accuracy")
    assert balanced["k-mer baseline"].tolist() == pytest.approx([0.35, 0.8])


def test_probe_figure_draws_a_line_per_annotation_beside_its_dashed_baseline():
    fig = charts.probe_figure(probe_rows(), metric="mcc", current_layer=1)
    names = [t.name for t in fig.data]
    assert names == ["chromatin states", "chromatin states · k-mer baseline", "repeats", "repeats · k-mer baseline"]
    assert list(fig.data[0].y) == [0.1, 0.3, 0.2]
    assert list(fig.data[1].y) == [0.25, 0.25] and list(fig.data[1].x) == [0, 2]
    assert fig.data[1].line.dash == "dash" and fig.data[1].line.color == fig.data[0].line.color
    assert fig.layout.yaxis.title.text == "MCC"


def test_default_interval_starts_at_the_first_token():
    assert charts.default_interval(100_000, 2_000) == (2_000, 7_000)
    assert charts.default_interval(3_000, 2_000) == (0, 3_000)  # short chromosome: all of it


@pytest.mark.parametrize("start, end, expected, note", [
    (100, 600, (100, 600), None),
    (600, 100, (100, 600), "swapped"),
    (-5, 2_000_000, (0, 50_000), "capped at 50,000 bp"),
    (900_000, 1_500_000, (900_000, 950_000), "capped"),
    (1_000_000, 1_000_000, (999_999, 1_000_000), "widened to 1 bp"),
], ids=["fine", "swapped", "clipped-and-capped", "capped", "empty-at-the-end"])
def test_clamp_interval(start, end, expected, note):
    interval = charts.clamp_interval(start, end, 1_000_000)
    assert (interval.start, interval.end) == expected
    assert (not interval.notes) if note is None else any(note in n for n in interval.notes)


def test_tokens_in_interval_include_one_straddling_the_start():
    ids = np.array([5, 6, 7, 5, 8], dtype=np.uint16)
    starts = np.array([0, 2, 4, 8, 20], dtype=np.uint32)  # a gap (N run) between 10 and 20
    lengths = np.zeros(10, dtype=np.int64)
    lengths[[5, 6, 7, 8]] = [2, 2, 4, 3]
    found = charts.tokens_in_interval(ids, starts, lengths, 5, 21)
    assert found["token_id"].tolist() == [7, 5, 8]
    assert found[["start", "end"]].to_numpy().tolist() == [[4, 8], [8, 10], [20, 23]]
    assert found["index"].tolist() == [2, 3, 4]
    assert charts.tokens_in_interval(ids, starts, lengths, 11, 19).empty  # inside the gap


def test_features_in_interval_keep_overlapping_rows():
    features = pd.DataFrame({"Chromosome": ["chr1", "chr1", "chr2", "chr1"], "Start": [0, 50, 0, 200],
                             "End": [60, 120, 500, 300], "Label": ["A", "B", "C", "D"]})
    assert charts.features_in_interval(features, "chr1", 55, 150)["Label"].tolist() == ["A", "B"]
    assert charts.features_in_interval(features, "chr2", 600, 700).empty


def test_region_figure_lays_tokens_under_the_annotation_lanes():
    labels = pd.DataFrame({"Start": [0, 500], "End": [500, 1000], "Label": ["Quies", "TssA"]})
    repeats = pd.DataFrame({"Start": [100, 300], "End": [200, 400], "Label": ["SINE/Alu", "SINE/Alu"],
                            "Strand": ["+", "-"]})
    signal = pd.DataFrame({"Start": [0], "End": [2000], "Value": [0.7]})
    tracks = [charts.Track("chromatin_states", "labels", labels, ("TssA", "Quies")),
              charts.Track("repeats", "labels", repeats, ("SINE/Alu",)),
              charts.Track("replication_timing", "signal", signal)]
    interval_tokens = pd.DataFrame({"index": [0, 1, 2], "token_id": [5, 6, 9], "start": [90, 95, 100],
                                    "end": [95, 100, 104]})
    tokens = pd.DataFrame({"token_id": [5, 6, 9], "token": ["AAAAA", "CGCGC", "TTTT"]})
    members = pd.DataFrame({"token_id": [5, 6], "cluster": [1, 0]})
    region = charts.region_tokens(interval_tokens, tokens, members)
    assert region["cluster"].tolist() == [1, 0, charts.UNCLUSTERED]

    fig = charts.region_figure(tracks, region, chromosome="chr1", start=95, end=1000)
    lanes = fig.layout.yaxis2.ticktext  # row 1 is the signal, row 2 the lanes
    assert list(lanes) == ["chromatin states", "repeats (+)", "repeats (−)", "tokens"]
    token_bars = [t for t in fig.data if isinstance(t, go.Bar) and t.legendgroup == "tokens"]
    assert [t.name for t in token_bars] == ["cluster 0 (1)", "cluster 1 (1)", "no cluster (1)"]
    cluster1 = token_bars[1]
    assert list(cluster1.base) == [95] and list(cluster1.x) == [0]  # clipped to the interval start
    state_bars = [t for t in fig.data if isinstance(t, go.Bar) and t.legendgroup == "chromatin_states"]
    assert [t.name for t in state_bars] == ["TssA", "Quies"]
    signal_trace = next(t for t in fig.data if isinstance(t, go.Scatter))
    assert list(signal_trace.x[:2]) == [95, 1000]  # clipped
    assert tuple(fig.layout.xaxis2.range) == (95, 1000)
    assert charts.region_tokens(interval_tokens, tokens, None)["cluster"].eq(charts.UNCLUSTERED).all()


def test_region_tokens_carry_text_only_in_short_intervals():
    tokens = pd.DataFrame({"index": [0, 1, 2], "token_id": [5, 6, 7], "start": [0, 4, 8], "end": [4, 8, 12],
                           "token": ["AAAA", "CCCC", "GGGG"], "cluster": [0, 0, 1]})
    labelled = charts.region_figure([], tokens, chromosome="chr1", start=0, end=12)
    assert sorted(t for trace in labelled.data for t in trace.text) == ["AAAA", "CCCC", "GGGG"]
    bare = charts.region_figure([], tokens, chromosome="chr1", start=0, end=12, text_max=2)
    assert all(trace.text is None for trace in bare.data)
