"""Pure logic of the self-similarity page (dashboard/charts/self_similarity.py), on small known tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from analysis.self_similarity import summarise_by_group, token_groups
from dashboard.charts import self_similarity as charts


def sim_table(values: dict[int, list[float]], baseline: list[float], n_samples: int = 5) -> pd.DataFrame:
    """A self_similarity.parquet table: ``values`` maps token_id -> raw value per layer."""
    rows = []
    for token_id, per_layer in values.items():
        for layer, raw in enumerate(per_layer):
            rows.append({"layer": layer, "token_id": token_id, "n_samples": n_samples, "self_similarity": raw,
                         "baseline": baseline[layer], "corrected": raw - baseline[layer]})
    return pd.DataFrame(rows)


def token_frame(ids: list[int], strings: list[str], frequency: list[int], repeat: list[float],
                rc: list[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"token_id": ids, "token": strings, "is_special": [s.startswith("[") for s in strings],
                         "length": [0 if s.startswith("[") else len(s) for s in strings], "frequency": frequency,
                         "repeats.share_any": repeat,
                         "reverse_complement_id": rc if rc is not None else [-1] * len(ids)})


@pytest.mark.parametrize("layers, expected", [([0, 1, 2, 3, 4], (1, 4)), ([0, 1], (0, 1)), ([0], (0, 0)),
                                              ([3, 0, 2, 1], (1, 3))], ids=["five", "two", "one", "unsorted"])
def test_compared_layers_start_at_the_first_transformer_layer(layers, expected):
    assert charts.compared_layers(layers) == expected


def test_change_summary_counts_tokens_whose_value_falls():
    table = sim_table({5: [0.9, 0.8, 0.6], 6: [0.9, 0.7, 0.75], 7: [0.5, 0.6, 0.7]}, baseline=[0.1, 0.2, 0.3])
    raw = charts.change_summary(table, value="self_similarity", first=1, last=2)
    assert (raw["n_tokens"], raw["n_fall"]) == (3, 1)  # only token 5 falls from layer 1 to 2
    assert raw["share_fall"] == pytest.approx(1 / 3)
    assert raw["mean_first"] == pytest.approx((0.8 + 0.7 + 0.6) / 3)
    corrected = charts.change_summary(table, value="corrected", first=1, last=2)
    assert corrected["n_fall"] == 2  # the baseline rises by 0.1: token 6 (+0.05 raw) falls once corrected
    assert charts.change_summary(table, value="self_similarity", first=0, last=9)["n_tokens"] == 0


def groups_table() -> pd.DataFrame:
    """Summaries of 4 tokens (2 repeat, 2 not) over 2 layers, through the analysis' own functions."""
    table = sim_table({5: [0.9, 0.85], 6: [0.8, 0.75], 7: [0.6, 0.3], 8: [0.7, 0.5]}, baseline=[0.2, 0.4])
    tokens = token_frame([5, 6, 7, 8], ["AAAA", "TTTT", "AC", "GT"], [10, 20, 30, 40], [0.9, 0.8, 0.1, 0.0])
    return summarise_by_group(table, token_groups(tokens, repeat_share_column="repeats.share_any"))


def test_repeat_contrast_reads_the_repeat_localised_group():
    groups = groups_table()
    contrast = charts.repeat_contrast(groups, value="self_similarity", layer=1)
    assert contrast == pytest.approx({"repeat": 0.8, "non_repeat": 0.4, "n_repeat": 2, "n_non_repeat": 2})
    corrected = charts.repeat_contrast(groups, value="corrected", layer=1)
    assert corrected["repeat"] == pytest.approx(0.4)
    assert charts.repeat_contrast(groups[groups["grouping"] != "repeat_localised"], value="corrected", layer=1) is None


def test_group_curves_median_iqr_and_mean_std():
    groups = groups_table()
    assert charts.available_groupings(groups) == ["length_group", "frequency_decile", "repeat_localised"]
    iqr = charts.group_curves(groups, grouping="repeat_localised", value="self_similarity", band="iqr")
    assert list(iqr["group"]) == ["non-repeat", "non-repeat", "repeat", "repeat"]  # category order
    assert list(iqr["layer"]) == [0, 1, 0, 1]
    repeat_1 = iqr[(iqr["group"] == "repeat") & (iqr["layer"] == 1)].iloc[0]
    # values 0.85 and 0.75: median 0.8, q25 0.775, q75 0.825 (linear interpolation)
    assert (repeat_1["centre"], repeat_1["low"], repeat_1["high"]) == pytest.approx((0.8, 0.775, 0.825))
    std = charts.group_curves(groups, grouping="repeat_localised", value="self_similarity", band="std")
    repeat_1 = std[(std["group"] == "repeat") & (std["layer"] == 1)].iloc[0]
    spread = np.std([0.85, 0.75], ddof=1)
    assert (repeat_1["low"], repeat_1["high"]) == pytest.approx((0.8 - spread, 0.8 + spread))
    assert repeat_1["n_tokens"] == 2


def test_std_band_of_a_lone_token_is_its_value():
    groups = pd.DataFrame({"layer": [0], "grouping": ["length_group"], "group": ["32+"], "n_tokens": [1],
                           "value": ["self_similarity"], "mean": [0.7], "std": [np.nan], "q25": [0.7],
                           "median": [0.7], "q75": [0.7]})
    curve = charts.group_curves(groups, grouping="length_group", value="self_similarity", band="std")
    assert (curve.at[0, "low"], curve.at[0, "high"]) == (0.7, 0.7)


def test_intra_window_curve_subtracts_the_baseline_when_corrected():
    intra = pd.DataFrame({"layer": [0, 1], "mean": [0.5, 0.6], "std": [0.1, 0.1], "q25": [0.45, 0.55],
                          "median": [0.5, 0.6], "q75": [0.55, 0.65], "n_windows": [10, 10]})
    baseline = pd.DataFrame({"layer": [0, 1], "baseline": [0.2, 0.4]})
    raw = charts.intra_window_curve(intra, baseline, value="self_similarity", band="iqr")
    assert list(raw["centre"]) == pytest.approx([0.5, 0.6])
    corrected = charts.intra_window_curve(intra, baseline, value="corrected", band="iqr")
    assert list(corrected["centre"]) == pytest.approx([0.3, 0.2])
    assert list(corrected["low"]) == pytest.approx([0.25, 0.15])
    assert list(charts.baseline_curve(baseline, value="corrected")["baseline"]) == [0.0, 0.0]
    assert list(charts.baseline_curve(baseline, value="self_similarity")["baseline"]) == [0.2, 0.4]


def test_group_curves_figure_draws_groups_bands_baseline_and_intra():
    groups = groups_table()
    curves = charts.group_curves(groups, grouping="repeat_localised", value="self_similarity", band="iqr")
    baseline = pd.DataFrame({"layer": [0, 1], "baseline": [0.2, 0.4]})
    intra = charts.intra_window_curve(
        pd.DataFrame({"layer": [0, 1], "mean": [0.5, 0.6], "std": [0.1, 0.1], "q25": [0.4, 0.5], "median": [0.5, 0.6],
                      "q75": [0.6, 0.7], "n_windows": [9, 9]}), baseline, value="self_similarity", band="iqr")
    fig = charts.group_curves_figure(curves, value="self_similarity", band="iqr", grouping_label="Repeat",
                                     baseline=charts.baseline_curve(baseline, value="self_similarity"), intra=intra)
    named = [t.name for t in fig.data if t.showlegend is not False]
    assert named == ["non-repeat", "repeat", "intra-window (different tokens, same window)", "anisotropy baseline"]
    assert sum(1 for t in fig.data if t.fill == "tonexty") == 3  # one band per group and intra
    baseline_trace = next(t for t in fig.data if t.name == "anisotropy baseline")
    assert baseline_trace.line.dash == "dash" and list(baseline_trace.y) == [0.2, 0.4]
    export = charts.curves_export(curves, baseline=baseline, intra=intra)
    assert list(export["series"].value_counts().sort_index()) == [2, 4, 2]  # baseline, group, intra rows
    assert set(export.columns) == {"series", "group", "layer", "n", "centre", "low", "high"}


def heat_inputs():
    table = sim_table({5: [0.9, 0.8, 0.5], 6: [0.7, 0.7, 0.7], 7: [0.6, 0.65, 0.9]}, baseline=[0.1, 0.2, 0.3])
    tokens = token_frame([0, 5, 6, 7, 8], ["[PAD]", "A", "CC", "GTA", "TTTT"], [0, 30, 10, 20, 5],
                         [np.nan, 0.1, np.nan, 0.7, 0.2])
    return table, tokens


@pytest.mark.parametrize("sort, expected", [
    ("frequency", [5, 7, 6]), ("last_layer", [7, 6, 5]), ("drop", [5, 6, 7]),
    ("repeat_share", [7, 5, 6]),  # token 6 has no share: last
    ("length", [7, 6, 5]), ("token_id", [5, 6, 7]),
], ids=lambda v: str(v))
def test_heatmap_table_sorts_rows(sort, expected):
    table, tokens = heat_inputs()
    frame, layers = charts.heatmap_table(table, tokens, value="self_similarity", sort=sort,
                                         repeat_column="repeats.share_any", first=1, last=2)
    assert layers == [0, 1, 2]
    assert list(frame["token_id"]) == expected
    assert list(frame.columns) == ["token_id", "token", "length", "frequency", "repeat_share", "n_samples",
                                   "layer_0", "layer_1", "layer_2"]


def test_heatmap_table_holds_corrected_values_and_every_token():
    table, tokens = heat_inputs()
    frame, _ = charts.heatmap_table(table, tokens, value="corrected", sort="token_id",
                                    repeat_column=None, first=1, last=2)
    assert len(frame) == 3 and frame["repeat_share"].isna().all()
    assert frame.loc[frame["token_id"] == 5, "layer_2"].item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="sort must be one of"):
        charts.heatmap_table(table, tokens, value="corrected", sort="colour", repeat_column=None, first=1, last=2)


def test_heatmap_figure_one_row_per_token_top_down():
    table, tokens = heat_inputs()
    frame, layers = charts.heatmap_table(table, tokens, value="corrected", sort="frequency",
                                         repeat_column="repeats.share_any", first=1, last=2)
    fig = charts.heatmap_figure(frame, layers, value="corrected")
    heat = fig.data[0]
    assert isinstance(heat, go.Heatmap) and np.asarray(heat.z).shape == (3, 3)
    assert heat.zmid == 0.0  # corrected: diverging around the baseline
    assert fig.layout.yaxis.autorange == "reversed"
    assert list(fig.layout.yaxis.ticktext) == ["A", "GTA", "CC"]
    assert np.asarray(heat.customdata)[1, 2, 0] == "GTA"
    many = pd.concat([frame] * 40, ignore_index=True)
    big = charts.heatmap_figure(many, layers, value="self_similarity")
    assert big.layout.height == charts.HEATMAP_MAX_HEIGHT and not big.layout.yaxis.showticklabels
    assert big.data[0].zmid is None


def test_token_curve_group_and_figure():
    table, tokens = heat_inputs()
    curve = charts.token_curve(table, 5)
    assert list(curve["self_similarity"]) == [0.9, 0.8, 0.5] and list(curve["layer"]) == [0, 1, 2]
    assert charts.token_curve(table, 99).empty
    memberships = token_groups(tokens, repeat_share_column="repeats.share_any")
    assert charts.token_group(memberships, 7, "length_group") == "2-3"
    assert charts.token_group(memberships, 7, "repeat_localised") == "repeat"
    assert charts.token_group(memberships, 6, "repeat_localised") is None  # never seen in the annotation
    assert charts.token_group(memberships, 7, "nonexistent") is None
    group = pd.DataFrame({"group": "1", "layer": [0, 1, 2], "n_tokens": 4, "centre": [0.8, 0.7, 0.6],
                          "low": [0.7, 0.6, 0.5], "high": [0.9, 0.8, 0.7]})
    fig = charts.token_curve_figure(curve, token="A", group_label="1", group_raw=group, group_corrected=group,
                                    marked_layer=1)
    token_traces = [t for t in fig.data if t.name == "A"]
    assert len(token_traces) == 2
    assert list(token_traces[1].y) == pytest.approx([0.8, 0.6, 0.2])  # corrected panel
    assert any(t.name == "anisotropy baseline" for t in fig.data)
    assert len(fig.layout.shapes) == 2  # the marked layer in both panels


def test_nearest_tokens_by_cosine():
    means = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [-1, 0], [2, 0.1], [0, 0]], dtype=np.float32)
    nearest = charts.nearest_tokens(means, 1, candidates=range(7), k=3)
    assert list(nearest["token_id"]) == [5, 2, 3]  # the token itself and zero vectors left out
    assert nearest["cosine"].iloc[1] == pytest.approx(1 / np.sqrt(2))
    assert list(nearest["rank"]) == [1, 2, 3]
    assert charts.nearest_tokens(means, 0, candidates=range(7), k=3).empty  # zero query vector
    assert list(charts.nearest_tokens(means, 1, candidates=[4, 3], k=5)["token_id"]) == [3, 4]


def test_nearest_table_marks_the_reverse_complement():
    table, _ = heat_inputs()
    tokens = token_frame([5, 6, 7], ["AC", "GT", "CC"], [3, 4, 5], [0.1, 0.2, 0.3], rc=[6, 5, 7])
    nearest = pd.DataFrame({"rank": [1, 2], "token_id": [6, 7], "cosine": [0.9, 0.8]})
    near = charts.nearest_table(nearest, tokens, table, layer=2, token_id=5, repeat_column="repeats.share_any")
    assert list(near["token"]) == ["GT", "CC"]
    assert list(near["reverse_complement"]) == [True, False]
    assert list(near["self_similarity"]) == [0.7, 0.9]
    assert list(near["repeat_share"]) == [0.2, 0.3]


def test_context_table_highlights_the_token_and_marks_gaps():
    strings = ["[PAD]", "A", "CC", "GTA", "T"]
    contexts = pd.DataFrame({
        "slot": [0, 1, 2], "chromosome": ["chr1", "chr2", "chr1"], "start": [3, 0, 50],
        # chr1: A@0 CC@1 GTA@3 T@6 | gap | A@20 ; chr2: GTA@0 A@3 (left edge of the chromosome)
        "ids": [[1, 2, 3, 4, 1], [3, 1], []], "starts": [[0, 1, 3, 6, 20], [0, 3], []], "centre": [2, 0, -1],
    })
    shown = charts.context_table(contexts, strings)
    assert list(shown.columns) == ["chromosome", "start", "end", "left", "token", "right"]
    first = shown.iloc[0]
    assert (first["left"], first["token"], first["right"], first["end"]) == ("A CC", "GTA", f"T {charts.GAP_MARK} A", 6)
    second = shown.iloc[1]
    assert (second["left"], second["token"], second["right"]) == ("", "GTA", "A")
    assert "not found" in shown.iloc[2]["token"]


def test_context_table_marks_a_gap_right_beside_the_token():
    contexts = pd.DataFrame({"slot": [0], "chromosome": ["chr1"], "start": [10], "ids": [[1, 2, 1]],
                             "starts": [[5, 10, 40]], "centre": [1]})
    shown = charts.context_table(contexts, ["", "A", "CC"]).iloc[0]
    assert (shown["left"], shown["right"]) == (f"A {charts.GAP_MARK}", f"{charts.GAP_MARK} A")


def test_token_label():
    assert charts.token_label("ACGT", 12, 1234) == "ACGT · id 12 · 1,234×"
    assert charts.token_label("ACGT", 12, np.nan) == "ACGT · id 12 · unseen"
