"""Unit tests of the dashboard's pure figure, selection and text logic (small inline tables)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard import figures

TOKEN_NAMES = ["[PAD]", "[CLS]", "A", "CG", "ACGT", "TTTT", "GGCGC", "TATA"]


@pytest.fixture()
def tokens() -> pd.DataFrame:
    """A tokens.parquet-like table: two special tokens then six nucleotide tokens."""
    rows = []
    for i, tok in enumerate(TOKEN_NAMES):
        special = tok.startswith("[")
        n = len(tok)
        rows.append(dict(
            token_id=i, token=tok, is_special=special, length=0 if special else n,
            frequency=0 if special else [0, 5, 50, 500, 5000, 12][i - 2],
            gc=0.0 if special else (tok.count("G") + tok.count("C")) / n,
            ag=0.0 if special else (tok.count("A") + tok.count("G")) / n,
            ac=0.0 if special else (tok.count("A") + tok.count("C")) / n,
            cpg=0 if special else tok.count("CG"), embedding_count=0,
        ))
    return pd.DataFrame(rows)


@pytest.fixture()
def projections(tokens) -> pd.DataFrame:
    """Layers 0 and 1, both methods, special tokens left out (as the pipeline writes them)."""
    ids = tokens.loc[~tokens["is_special"], "token_id"].to_numpy()
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame(dict(layer=layer, method=method, token_id=ids[::-1], x=rng.normal(size=len(ids)), y=rng.normal(size=len(ids))))
        for layer in (0, 1) for method in ("umap", "pca")
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture()
def points(tokens, projections) -> pd.DataFrame:
    return figures.token_points(tokens, projections, layer=1, method="umap")


# --- token_points --------------------------------------------------------------------------------


def test_token_points_one_row_per_projected_token_with_properties(points, projections):
    expected = projections[(projections["layer"] == 1) & (projections["method"] == "umap")]
    assert len(points) == len(expected) == 6
    assert list(points["token_id"]) == sorted(expected["token_id"])
    assert {"x", "y", "token", "frequency", "gc", "ag", "ac", "length"} <= set(points.columns)
    row = points.set_index("token_id").loc[3]
    assert row["token"] == "CG" and row["gc"] == 1.0
    source = expected.set_index("token_id").loc[3]
    assert (row["x"], row["y"]) == (source["x"], source["y"])


def test_token_points_missing_layer_names_what_exists(tokens, projections):
    with pytest.raises(ValueError, match=r"layer 7.*\(0, 'pca'\)"):
        figures.token_points(tokens, projections, layer=7, method="umap")


def test_token_points_does_not_modify_inputs(tokens, projections):
    before_t, before_p = tokens.copy(), projections.copy()
    figures.token_points(tokens, projections, layer=0, method="pca")
    pd.testing.assert_frame_equal(tokens, before_t)
    pd.testing.assert_frame_equal(projections, before_p)


# --- motif highlight -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("motif", "expected"),
    [
        ("CG", ["CG", "ACGT", "GGCGC"]),
        ("cg", ["CG", "ACGT", "GGCGC"]),
        ("  ta ", ["TATA"]),
        ("T", ["ACGT", "TTTT", "TATA"]),
        ("", []),
        (None, []),
        ("NNN", []),
    ],
    ids=["upper", "lower-case", "spaces", "single-nucleotide", "empty", "none", "absent"],
)
def test_motif_mask(points, motif, expected):
    mask = figures.motif_mask(points["token"], motif)
    assert mask.dtype == bool and mask.shape == (len(points),)
    assert sorted(points.loc[mask, "token"]) == sorted(expected)


# --- colour and size -----------------------------------------------------------------------------


def test_colour_scale_frequency_is_log_with_ticks_in_counts(points):
    scale = figures.colour_scale(points, "frequency")
    assert scale.log and scale.colorscale == "Viridis"
    np.testing.assert_allclose(scale.values, np.log10(points["frequency"].to_numpy() + 1))
    assert scale.cmin == 0 and scale.cmax == pytest.approx(math.log10(5001))  # frequencies 0..5000
    assert scale.ticktext == ("0", "1", "10", "100", "1k")
    np.testing.assert_allclose(scale.tickvals, np.log10([1, 2, 11, 101, 1001]))


def test_colour_scale_frequency_spans_only_the_frequencies_present():
    scale = figures.colour_scale(pd.DataFrame({"frequency": [150, 2000, 40_000]}), "frequency")
    assert (scale.cmin, scale.cmax) == pytest.approx((math.log10(151), math.log10(40_001)))
    assert scale.ticktext == ("200", "500", "1k", "2k", "5k", "10k", "20k")  # under three decades: 1-2-5
    flat = figures.colour_scale(pd.DataFrame({"frequency": [7, 7]}), "frequency")
    assert flat.cmax > flat.cmin


@pytest.mark.parametrize("column", ["gc", "ag", "ac"])
def test_colour_scale_fractions_share_a_fixed_diverging_range(points, column):
    scale = figures.colour_scale(points, column)
    assert (scale.cmin, scale.cmax) == (0.0, 1.0)
    assert scale.colorscale == "RdBu_r" and not scale.log
    np.testing.assert_array_equal(scale.values, points[column].to_numpy())


def test_colour_scale_length_spans_lengths_present(points):
    scale = figures.colour_scale(points, "length")
    assert (scale.cmin, scale.cmax) == (1.0, 5.0)


def test_colour_scale_rejects_unknown_column_naming_options(points):
    with pytest.raises(ValueError, match="frequency"):
        figures.colour_scale(points, "cpg_island")


def test_every_colour_option_is_a_token_column(tokens):
    assert set(figures.COLOUR_BY) <= set(tokens.columns)


def test_marker_sizes_grow_with_frequency_within_range():
    sizes = figures.marker_sizes(np.array([0, 10, 1000, 100000]))
    assert sizes[0] == figures.MARKER_SIZE_RANGE[0] and sizes[-1] == figures.MARKER_SIZE_RANGE[1]
    assert np.all(np.diff(sizes) > 0)
    assert np.all(figures.marker_sizes(np.array([7, 7, 7])) == np.mean(figures.MARKER_SIZE_RANGE))
    assert figures.marker_sizes(np.array([])).shape == (0,)


# --- figure --------------------------------------------------------------------------------------


@pytest.mark.parametrize("colour_by", list(figures.COLOUR_BY))
def test_figure_draws_every_point_in_one_webgl_trace(points, colour_by):
    fig = figures.token_map_figure(points, colour_by=colour_by)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Scattergl)
    assert figures.n_points(fig) == len(points)
    assert [row[0] for row in fig.data[0].customdata] == list(points["token_id"])


def test_figure_with_motif_dims_others_and_highlights_matches(points):
    fig = figures.token_map_figure(points, colour_by="gc", motif="cg")
    dimmed, highlighted = fig.data
    assert figures.n_points(fig) == len(points)
    assert len(highlighted.x) == 3 and highlighted.name == "contains CG"
    assert {row[1] for row in highlighted.customdata} == {"CG", "ACGT", "GGCGC"}
    assert dimmed.marker.color == figures.DIMMED_COLOUR
    assert fig.layout.showlegend


def test_figure_with_absent_motif_dims_everything(points):
    fig = figures.token_map_figure(points, motif="NNNN")
    assert len(fig.data[1].x) == 0 and len(fig.data[0].x) == len(points)


def test_svg_renderer_uses_scatter_and_pca_axes(points):
    fig = figures.token_map_figure(points, renderer="svg", method="pca", title="t")
    assert isinstance(fig.data[0], go.Scatter) and not isinstance(fig.data[0], go.Scattergl)
    assert fig.layout.xaxis.title.text == "PC1" and fig.layout.title.text == "t"


def test_export_config_sets_camera_format():
    config = figures.export_config(image_format="svg", filename="map")
    assert config["toImageButtonOptions"] == {"format": "svg", "filename": "map", "scale": 2}


# --- selection -> rows ---------------------------------------------------------------------------


def test_selected_token_ids_reads_customdata_in_order_without_duplicates():
    selection = {"points": [
        {"curve_number": 1, "point_index": 0, "customdata": [4, "ACGT", 4, 50, 0.5, 0.5]},
        {"curve_number": 0, "point_index": 2, "customdata": [2.0, "A"]},  # JSON numbers may be floats
        {"curve_number": 1, "point_index": 0, "customdata": [4, "ACGT"]},  # duplicate
        {"curve_number": 0, "point_index": 3},  # no customdata: not from the token map
        {"customdata": []},
        {"customdata": ["not-an-id"]},
    ]}
    assert figures.selected_token_ids(selection) == [4, 2]


@pytest.mark.parametrize("selection", [None, {}, {"points": []}, {"points": None, "box": []}], ids=str)
def test_selected_token_ids_empty(selection):
    assert figures.selected_token_ids(selection) == []


def test_selected_tokens_rows_in_selection_order(points):
    before = points.copy()
    rows = figures.selected_tokens(points, [6, 3, 99])
    assert list(rows["token"]) == ["GGCGC", "CG"]  # 99 is not a point: dropped
    assert list(rows.columns) == list(figures.SELECTION_COLUMNS)
    pd.testing.assert_frame_equal(points, before)
    assert figures.selected_tokens(points, []).empty


def test_selection_from_figure_maps_back_to_the_clicked_tokens(points):
    """A selection as Streamlit reports it (customdata of the picked points) gives those tokens' rows."""
    fig = figures.token_map_figure(points, motif="TA")  # two traces: indices are per trace
    picked = [(1, 0), (0, 2), (0, 0)]  # (trace, point index within the trace)
    selection = {"points": [
        {"curve_number": c, "point_index": i, "customdata": list(fig.data[c].customdata[i])} for c, i in picked
    ]}
    rows = figures.selected_tokens(points, figures.selected_token_ids(selection))
    expected = [fig.data[c].customdata[i][1] for c, i in picked]
    assert list(rows["token"]) == expected
    for _, row in rows.iterrows():
        source = points.set_index("token_id").loc[row["token_id"]]
        assert (row["x"], row["y"], row["frequency"]) == (source["x"], source["y"], source["frequency"])


# --- PC table ------------------------------------------------------------------------------------


def test_pc_property_table_one_row_per_component_in_numeric_order():
    rows = [
        dict(layer=layer, component=f"PC{c}", property=p, spearman=c / 10 + layer, explained_variance_ratio=1 / c)
        for layer in (0, 1) for c in (1, 2, 10) for p in ("gc", "frequency", "length")
    ]
    table = figures.pc_property_table(pd.DataFrame(rows), 1)
    assert list(table.index) == ["PC1", "PC2", "PC10"]
    assert list(table.columns) == ["explained variance", "frequency", "length", "gc"]
    assert table.loc["PC2", "gc"] == pytest.approx(1.2)
    assert table.loc["PC10", "explained variance"] == pytest.approx(0.1)
    assert figures.pc_property_table(pd.DataFrame(rows), 5).empty


# --- text and provenance tables ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(309, "309"), (999, "999"), (1000, "1k"), (12_345, "12.3k"), (2_000_000, "2M"), (1.5e9, "1.5G"), (None, "—"), (0.5, "0.5")],
    ids=["small", "hundreds", "thousand", "k", "M", "G", "missing", "fraction"],
)
def test_format_count(value, text):
    assert figures.format_count(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.3, "4.3 s"), (45, "45 s"), (200, "3 min 20 s"), (7500, "2 h 05 min"), (None, "—")],
    ids=["short", "seconds", "minutes", "hours", "missing"],
)
def test_format_seconds(seconds, text):
    assert figures.format_seconds(seconds) == text


def test_format_percent_and_accuracy_delta():
    assert figures.format_percent(0.11) == "11.0 %"
    assert figures.format_percent(None) == "—"
    evaluation = {"masked_top1_accuracy": 0.11, "frequency_baseline_top1_accuracy": 0.04}
    assert figures.accuracy_delta(evaluation) == "+7.0 pts vs frequency baseline"
    assert figures.accuracy_delta({"masked_top1_accuracy": 0.11}) is None


def test_artifact_and_stage_tables():
    manifest = {
        "artifacts": {
            "tokens": {"path": "tokens.parquet", "produced_by": "analysis.token_properties.token_property_table",
                       "params": {"b": 2, "a": 1}, "description": "one row per token"},
            "bare": {},
        },
        "stages": {"pretraining": {"seconds": 200.0, "config": {"steps": 1000}}},
    }
    artifacts = figures.artifact_table(manifest)
    assert list(artifacts.columns) == ["artifact", "path", "produced_by", "params", "description"]
    assert artifacts.loc[0, "params"] == '{"a": 1, "b": 2}'
    assert artifacts.loc[1].tolist() == ["bare", "", "", "", ""]
    stages = figures.stage_table(manifest)
    assert stages.loc[0].tolist() == ["pretraining", "3 min 20 s", '{"steps": 1000}']
    assert figures.artifact_table({}).empty and figures.stage_table({}).empty


def test_chromosome_table():
    table = figures.chromosome_table({"chromosomes": {"chr1": 2000, "chr2": 10}})
    assert table.to_dict("list") == {"chromosome": ["chr1", "chr2"], "length (nt)": [2000, 10]}
    assert figures.chromosome_table({}).empty


def test_artifact_provenance_names_function_and_params():
    manifest = {"artifacts": {"proj": {"path": "p.parquet", "produced_by": "analysis.projections.project", "params": {"seed": 0, "n_neighbors": 15}}}}
    assert figures.artifact_provenance(manifest, "p.parquet") == "analysis.projections.project(n_neighbors=15, seed=0)"
    assert figures.artifact_provenance(manifest, "other.parquet") is None
    assert figures.artifact_provenance({}, "p.parquet") is None


def test_markdown_list_leaves_out_empty_items():
    assert figures.markdown_list({"Steps": "1k", "Held out": "", "GC": "42.0 %"}) == "- **Steps**: 1k\n- **GC**: 42.0 %"
