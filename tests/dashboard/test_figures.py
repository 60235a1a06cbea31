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
def test_figure_draws_every_point_in_one_svg_trace(points, colour_by):
    fig = figures.token_map_figure(points, colour_by=colour_by)
    assert len(fig.data) == 1 and type(fig.data[0]) is go.Scatter  # a small map: SVG
    assert figures.n_points(fig) == len(points)
    assert [row[0] for row in fig.data[0].customdata] == list(points["token_id"])


def test_figure_with_motif_dims_others_and_highlights_matches(points):
    fig = figures.token_map_figure(points, colour_by="gc", motif="cg")
    dimmed, highlighted = fig.data
    assert figures.n_points(fig) == len(points)
    assert len(highlighted.x) == 3 and highlighted.name == "contains CG"
    assert set(highlighted.text) == {"CG", "ACGT", "GGCGC"}
    assert dimmed.marker.color == figures.DIMMED_COLOUR
    assert fig.layout.showlegend


def test_figure_with_absent_motif_dims_everything(points):
    fig = figures.token_map_figure(points, motif="NNNN")
    assert len(fig.data[1].x) == 0 and len(fig.data[0].x) == len(points)


def test_map_uses_webgl_beyond_svg_max_points_or_when_asked(points):
    n = figures.SVG_MAX_POINTS + 1
    rng = np.random.default_rng(0)
    large = points.sample(n, replace=True, random_state=0).assign(
        token_id=np.arange(n), x=rng.random(n), y=rng.random(n))
    fig = figures.token_map_figure(large, colour_by="gc")
    assert [type(t) for t in fig.data] == [go.Scattergl] and figures.n_points(fig) == n
    at_threshold = figures.token_map_figure(large.iloc[:-1], colour_by="gc")
    assert [type(t) for t in at_threshold.data] == [go.Scatter]
    assert [type(t) for t in figures.token_map_figure(points, renderer="webgl").data] == [go.Scattergl]
    assert [type(t) for t in figures.token_map_figure(large, renderer="svg").data] == [go.Scatter]


def test_svg_renderer_uses_scatter_and_pca_axes(points):
    fig = figures.token_map_figure(points, renderer="svg", method="pca", title="t")
    assert isinstance(fig.data[0], go.Scatter) and not isinstance(fig.data[0], go.Scattergl)
    assert fig.layout.xaxis.title.text == "PC1" and fig.layout.title.text == "t"


def test_export_config_sets_camera_format():
    config = figures.export_config(image_format="svg", filename="map")
    assert config["toImageButtonOptions"] == {"format": "svg", "filename": "map", "scale": 2}


# --- colour options: clusters and annotation shares ------------------------------------------------


@pytest.fixture()
def annotated(points) -> pd.DataFrame:
    """Points with two annotations' share columns (one NaN) and k-means clusters at layer 1."""
    out = points.copy()
    out["chromatin_states.share_TssA"] = np.linspace(0.0, 0.4, len(out))
    out["repeats.share_SINE/Alu_plus"] = [0.1, np.nan, 0.3, 0.0, 0.2, 0.05]
    out["chromatin_states.share_any"] = 1.0
    return out


@pytest.fixture()
def token_clusters(points) -> pd.DataFrame:
    ids = list(points["token_id"])
    rows = [dict(layer=1, method="kmeans", token_id=i, cluster=i % 2) for i in ids[:-1]]  # the last token: no cluster
    rows += [dict(layer=1, method="hierarchical", token_id=i, cluster=i % 3) for i in ids]
    rows += [dict(layer=0, method="kmeans", token_id=i, cluster=7) for i in ids]
    return pd.DataFrame(rows)


def test_share_columns_grouped_by_annotation_in_first_seen_order():
    columns = ["token_id", "repeats.share_LINE/L1_plus", "chromatin_states.share_TssA", "repeats.share_any",
               "chromatin_states.share_any", "gc"]
    assert figures.share_columns(columns) == ["repeats.share_LINE/L1_plus", "repeats.share_any",
                                              "chromatin_states.share_TssA", "chromatin_states.share_any"]


def test_colour_options_properties_then_clusters_then_shares(annotated):
    options = figures.colour_options(annotated.columns, ["kmeans", "hierarchical"])
    assert options == [*figures.COLOUR_BY, "cluster_kmeans", "cluster_hierarchical", "chromatin_states.share_TssA",
                       "chromatin_states.share_any", "repeats.share_SINE/Alu_plus"]
    assert figures.colour_options(["frequency", "gc"]) == ["frequency", "gc"]


@pytest.mark.parametrize(
    ("column", "label"),
    [("gc", "GC content"), ("cluster_kmeans", "Cluster (k-means)"), ("cluster_spectral", "Cluster (spectral)"),
     ("repeats.share_SINE/Alu_plus", "Repeats · share in SINE/Alu (+ strand)"),
     ("repeats.share_LINE/L1_minus", "Repeats · share in LINE/L1 (− strand)"),
     ("chromatin_states.share_TssA", "Chromatin states · share in TssA"),
     ("chromatin_states.share_any", "Chromatin states · share in any label")],
    ids=["property", "kmeans", "other-method", "plus", "minus", "state", "any"],
)
def test_colour_label(column, label):
    assert figures.colour_label(column) == label


def test_cluster_methods_in_orders_known_methods_first(token_clusters):
    extra = pd.concat([token_clusters, pd.DataFrame([dict(layer=1, method="agglo", token_id=2, cluster=0)])])
    assert figures.cluster_methods_in(extra) == ["kmeans", "hierarchical", "agglo"]
    assert figures.cluster_methods_in(None) == [] and figures.cluster_methods_in(token_clusters.iloc[:0]) == []


def test_with_clusters_adds_one_column_per_method_at_the_layer(points, token_clusters):
    before = points.copy()
    out = figures.with_clusters(points, token_clusters, layer=1)
    pd.testing.assert_frame_equal(points, before)
    assert list(out["cluster_hierarchical"]) == [i % 3 for i in points["token_id"]]
    kmeans = out["cluster_kmeans"]
    assert kmeans.isna().tolist() == [False] * 5 + [True]  # the last token has no k-means cluster
    assert list(kmeans.iloc[:5]) == [i % 2 for i in points["token_id"].iloc[:5]]
    assert set(figures.with_clusters(points, token_clusters, layer=0)["cluster_kmeans"]) == {7}
    pd.testing.assert_frame_equal(figures.with_clusters(points, None, layer=1), points)


def test_colour_scale_share_runs_from_zero_to_a_high_quantile(annotated):
    scale = figures.colour_scale(annotated, "repeats.share_SINE/Alu_plus")
    shares = [0.1, 0.3, 0.0, 0.2, 0.05]  # NaN left out
    assert (scale.cmin, scale.cmax) == (0.0, pytest.approx(np.quantile(shares, figures.SHARE_SCALE_QUANTILE)))
    assert 0.29 < scale.cmax < 0.3
    many = pd.DataFrame({"a.share_x": [0.01] * 995 + [1.0] * 5})  # a few rare tokens at share 1
    assert figures.colour_scale(many, "a.share_x").cmax == pytest.approx(0.01)
    assert figures.colour_scale(pd.DataFrame({"a.share_x": [0.0, np.nan]}), "a.share_x").cmax == 1e-3
    assert np.isnan(scale.values[1]) and scale.colorscale == figures.SHARE_COLOURSCALE
    assert scale.title == "SINE/Alu (+ strand) share"


def test_colour_scale_rejects_clusters(annotated, token_clusters):
    with pytest.raises(ValueError, match="continuous"):
        figures.colour_scale(figures.with_clusters(annotated, token_clusters, layer=1), "cluster_kmeans")


def test_category_colours_distinct_and_skip_missing():
    colours = figures.category_colours(pd.Series([3, 1, None, 3, 0], dtype="Int64"))
    assert list(colours) == [0, 1, 3] and len(set(colours.values())) == 3
    assert len(set(figures.category_colours(range(30)).values())) == 30


def test_cluster_colours_one_trace_per_cluster_and_grey_for_no_cluster(points, token_clusters):
    clustered = figures.with_clusters(points, token_clusters, layer=1)
    fig = figures.token_map_figure(clustered, colour_by="cluster_kmeans")
    assert [t.name for t in fig.data] == ["no value", "cluster 0", "cluster 1"]
    assert figures.n_points(fig) == len(points)
    assert all(type(t) is go.Scatter for t in fig.data) and fig.layout.showlegend
    for trace in fig.data[1:]:
        cluster = int(trace.name.split()[-1])
        assert {int(row[0]) % 2 for row in trace.customdata} == {cluster}
        assert {row[-1] for row in trace.customdata} == {cluster}  # the cluster is on hover
    assert fig.data[0].marker.color == figures.NO_VALUE_COLOUR
    assert "cluster (k-means): %{customdata[7]}" in fig.data[1].hovertemplate


def test_cluster_colours_with_motif_colour_only_the_matches(points, token_clusters):
    clustered = figures.with_clusters(points, token_clusters, layer=1)
    fig = figures.token_map_figure(clustered, colour_by="cluster_hierarchical", motif="CG")
    assert fig.data[0].name == "other tokens" and len(fig.data[0].x) == 3
    assert sorted(t for trace in fig.data[1:] for t in trace.text) == ["ACGT", "CG", "GGCGC"]
    assert figures.n_points(fig) == len(points)


def test_share_colour_greys_missing_values_and_hovers_the_share(annotated):
    fig = figures.token_map_figure(annotated, colour_by="repeats.share_SINE/Alu_plus")
    assert [t.name for t in fig.data] == ["no value", "tokens"]
    assert list(fig.data[0].text) == [annotated["token"].iloc[1]]
    assert figures.n_points(fig) == len(annotated)
    assert "SINE/Alu (+ strand) share %{customdata[7]:.3f}" in fig.data[1].hovertemplate
    np.testing.assert_allclose([row[7] for row in fig.data[1].customdata],
                               annotated["repeats.share_SINE/Alu_plus"].dropna())


def test_hover_data_numbers_with_token_id_first(points):
    data = figures.hover_data(points, "gc")
    assert data.dtype == np.float64 and data.shape == (len(points), len(figures.HOVER_COLUMNS))
    assert list(data[:, 0]) == list(points["token_id"])
    assert figures.hover_columns("repeats.share_any") == (*figures.HOVER_COLUMNS, "repeats.share_any")
    template = figures.hover_template("frequency")
    assert "%{text}" in template and "CpG %{customdata[6]}" in template and "customdata[7]" not in template


def test_selected_overlay_rings_the_selected_tokens_on_top(points):
    fig = figures.token_map_figure(points, selected_ids=[6, 3, 99])
    assert [t.name for t in fig.data] == ["tokens", "selected (2)"]
    ring = fig.data[-1]
    assert sorted(ring.text) == ["CG", "GGCGC"] and ring.marker.symbol == "circle-open"
    assert figures.n_points(fig, exclude=("selected",)) == len(points)
    assert len(figures.token_map_figure(points, selected_ids=[]).data) == 1


# --- selection -> rows ---------------------------------------------------------------------------


def test_selected_token_ids_reads_customdata_in_order_without_duplicates():
    selection = {"points": [
        {"curve_number": 1, "point_index": 0, "customdata": [4, "ACGT", 4, 50, 0.5, 0.5]},
        {"curve_number": 0, "point_index": 2, "customdata": [2.0, "A"]},  # JSON numbers may be floats
        {"curve_number": 1, "point_index": 0, "customdata": [4, "ACGT"]},  # duplicate
        {"curve_number": 0, "point_index": 3},  # no customdata: not from the token map
        {"customdata": []},
        {"customdata": ["not-an-id"]},
        {"customdata": {"0": 9, "1": 4, "2": 1273}},  # a binary customdata row as the browser sends it
        {"customdata": {"1": 4}},
    ]}
    assert figures.selected_token_ids(selection) == [4, 2, 9]


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
    expected = [fig.data[c].text[i] for c, i in picked]
    assert list(rows["token"]) == expected
    for _, row in rows.iterrows():
        source = points.set_index("token_id").loc[row["token_id"]]
        assert (row["x"], row["y"], row["frequency"]) == (source["x"], source["y"], source["frequency"])


# --- the selection across reruns, the link, nearest tokens, FASTA --------------------------------------


@pytest.mark.parametrize(
    ("text", "ids"),
    [("12,40,7", [12, 40, 7]), (" 12, 40 ,12,", [12, 40]), ("", []), ("5", [5])],
    ids=["plain", "spaces-duplicates", "empty", "one"],
)
def test_parse_id_list(text, ids):
    assert figures.parse_id_list(text) == ids
    assert figures.parse_id_list(figures.format_id_list(ids)) == ids


def test_parse_id_list_rejects_non_integers():
    with pytest.raises(ValueError):
        figures.parse_id_list("12,ACGT")


VIEW_A, VIEW_B = (1, "umap", "gc", ""), (2, "umap", "gc", "")


def test_selection_made_on_the_chart_is_held_without_redrawing_the_chart():
    state = figures.MapSelection().before_drawing(chart_ids=None, view=VIEW_A)  # first draw
    assert state.held == state.drawn == ()
    state = state.after_drawing([])
    state = state.before_drawing(chart_ids=[4, 2], view=VIEW_A)  # the user box-selected
    assert state.held == (4, 2) and state.drawn == ()  # the figure stays as the user selected on it
    state = state.after_drawing([4, 2])
    assert state.before_drawing(chart_ids=[4, 2], view=VIEW_A) == state  # nothing new: unchanged


def test_selection_follows_a_new_view_as_an_overlay_then_a_new_chart_selection_replaces_it():
    state = figures.MapSelection(held=(4, 2), chart=(4, 2), view=VIEW_A)
    state = state.before_drawing(chart_ids=[4, 2], view=VIEW_B)  # layer slider moved: a new chart
    assert state.held == (4, 2) and state.drawn == (4, 2)
    state = state.after_drawing([])  # the new chart starts empty
    assert state.before_drawing(chart_ids=[], view=VIEW_B).held == (4, 2)  # ... which does not clear it
    state = state.before_drawing(chart_ids=[7], view=VIEW_B)  # selected on the new chart
    assert state.held == (7,) and state.drawn == (4, 2)  # the figure is left as it was


def test_selection_cleared_on_the_chart_drops_the_overlay():
    state = figures.MapSelection(held=(7,), drawn=(4, 2), chart=(7,), view=VIEW_B)
    state = state.before_drawing(chart_ids=[], view=VIEW_B)
    assert state.held == () and state.drawn == ()


def test_selection_from_the_link_or_back_from_another_page_is_drawn():
    state = figures.MapSelection().select([12, 40])
    assert state.held == state.drawn == (12, 40)
    assert state.before_drawing(chart_ids=None, view=VIEW_A).drawn == (12, 40)
    chart_made = figures.MapSelection(held=(3,), chart=(3,), view=VIEW_A)
    assert chart_made.before_drawing(chart_ids=None, view=VIEW_A).drawn == (3,)  # no chart: a new one
    assert figures.MapSelection(held=(3,), drawn=(3,)).select(()).drawn == ()


@pytest.fixture()
def embeddings() -> np.ndarray:
    """Token means of 6 tokens: 0 is a zero vector; 1, 2, 3 near the x axis, 4 and 5 near y."""
    return np.array([[0, 0], [1, 0], [1, 0.1], [1, -0.3], [0, 1], [0.1, 1]], dtype=np.float32)


def test_nearest_tokens_by_cosine(embeddings):
    table = figures.nearest_tokens(embeddings, [1, 4], [1, 2, 3, 4, 5], k=2)
    assert list(table.columns) == ["token_id", "rank", "neighbour_id", "cosine"]
    assert table[["token_id", "rank", "neighbour_id"]].values.tolist() == [[1, 1, 2], [1, 2, 3], [4, 1, 5], [4, 2, 2]]
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    assert table["cosine"].iloc[0] == pytest.approx(float(unit[1] @ unit[2]), abs=1e-6)
    assert (table.groupby("token_id")["cosine"].diff().dropna() <= 0).all()


def test_nearest_tokens_skips_zero_vectors_and_fewer_candidates(embeddings):
    table = figures.nearest_tokens(embeddings, [0, 2], [0, 1, 2], k=5)
    assert table["token_id"].unique().tolist() == [2]  # token 0 has no direction
    assert table["neighbour_id"].tolist() == [1]  # 0 is no candidate, 2 is not its own neighbour
    assert figures.nearest_tokens(embeddings, [], [1, 2]).empty


def test_neighbour_table_names_tokens(embeddings, points):
    table = figures.neighbour_table(figures.nearest_tokens(embeddings, [2], [2, 3, 4, 5], k=1), points)
    names = points.set_index("token_id")["token"]
    assert table.iloc[0].tolist()[:5] == [2, names[2], 1, 3, names[3]]


def test_selection_fasta_one_record_per_token(points):
    rows = figures.selected_tokens(points, [3, 4])
    assert figures.selection_fasta(rows) == (
        ">token_3 id=3 frequency=5 gc=1.000\nCG\n>token_4 id=4 frequency=50 gc=0.500\nACGT\n")
    assert figures.selection_fasta(rows.assign(gc=np.nan)).startswith(">token_3 id=3 frequency=5 gc=NA\n")


def test_selected_tokens_extra_columns(points):
    rows = figures.selected_tokens(points.assign(cluster_kmeans=1), [3], extra=["cluster_kmeans", "gc"])
    assert list(rows.columns) == [*figures.SELECTION_COLUMNS, "cluster_kmeans"]


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


# --- Runs page -----------------------------------------------------------------------------------


def test_analysis_outputs_mirror_the_registry():
    """``ANALYSIS_OUTPUTS`` copies grover_lens.analyze.ANALYSES (which imports torch) for the dashboard."""
    from grover_lens.analyze import ANALYSES

    assert figures.ANALYSIS_OUTPUTS == {a.name: a.outputs for a in ANALYSES}


MANIFEST = {
    "schema_version": 2, "name": "r", "created_utc": "2026-01-02T03:04:05+00:00",
    "model": {"preset": "grover-test", "num_layers": 2, "hidden_size": 32},
    "vocabulary": {"kind": "bpe", "cycles": 60, "vocab_size": 69},
    "genome": {"fasta": "/g/genome.fa", "chromosomes": {"chr1": 1000, "chr2": 500},
               "annotations": {"chromatin_states": "/g/s.bed", "repeats": "/g/r.bed"}},
    "evaluation": {"masked_top1_accuracy": 0.2, "frequency_baseline_top1_accuracy": 0.05},
    "analyses": {
        "tokens": {"outputs": ["tokens.parquet"], "seconds": 2.0, "command": "grover analyze r",
                   "produced_by": "grover_lens.analyze.token_table", "params": {"seed": 0}},
        "self_similarity": {"outputs": ["self_similarity.parquet", "self_similarity_groups.parquet"], "seconds": 1},
        "window_annotations": {"skipped": "no annotations given (--annotation NAME=PATH)"},
        "custom": {"outputs": ["custom.parquet"], "seconds": 3},
    },
}
ON_DISK = {"tokens.parquet", "self_similarity.parquet", "token_projections.parquet", "pc_correlations.parquet",
           "custom.parquet"}


def test_analysis_table_statuses_from_manifest_and_files():
    table = figures.analysis_table(MANIFEST, "runs/r", ON_DISK.__contains__).set_index("analysis")
    assert list(table.index) == [*figures.ANALYSIS_OUTPUTS, "custom"]
    assert table.loc["tokens", "status"] == "present" and table.loc["tokens", "make"] == ""
    assert table.loc["tokens", "seconds"] == 2.0 and table.loc["tokens", "command"] == "grover analyze r"
    assert table.loc["tokens", "params"] == '{"seed": 0}'
    assert table.loc["token_projections", "status"] == "present (not recorded in the manifest)"
    assert table.loc["self_similarity", "status"] == "incomplete (missing self_similarity_groups.parquet)"
    assert table.loc["self_similarity", "make"] == "grover analyze runs/r --only self_similarity"
    assert table.loc["window_annotations", "status"].startswith("skipped: no annotations given")
    assert table.loc["probes", "status"] == "missing" and math.isnan(table.loc["probes", "seconds"])
    assert table.loc["probes", "make"] == "grover analyze runs/r --only probes"
    assert table.loc["custom", "status"] == "present"


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [({"schema_version": 2}, None), ({"schema_version": 1}, "schema version 1; this GROVER Lens reads version 2"),
     ({}, "schema version None"), ({"schema_version": 9}, "newer than this GROVER Lens"), ([1, 2], "not a JSON object")],
    ids=["current", "older", "unversioned", "newer", "not-an-object"],
)
def test_manifest_problem(manifest, expected):
    problem = figures.manifest_problem(manifest, "runs/r")
    assert problem is None if expected is None else expected in problem
    if expected and "newer" not in expected:
        assert "grover demo --out runs/r" in problem


def test_run_row_summarises_provenance_and_analyses():
    row = figures.run_row("r", "runs/r", MANIFEST, exists=ON_DISK.__contains__)
    assert set(row) == set(figures.RUN_TABLE_COLUMNS)
    assert row["problem"] == "" and row["created"] == MANIFEST["created_utc"]
    assert row["model"] == "grover-test · 2 layers × 32" and row["vocabulary"] == "BPE · 60 cycles · 69 tokens"
    assert row["genome FASTA"] == "/g/genome.fa" and row["genome (nt)"] == 1500
    assert row["annotations"] == "chromatin_states, repeats"
    assert (row["held-out top-1"], row["baseline top-1"]) == (0.2, 0.05)
    assert row["tokens"] and row["token_projections"] and not row["self_similarity"] and not row["probes"]
    assert row["analyses"] == "2/7"
    assert "grover analyze runs/r --only probes" in row["to make missing analyses"]
    assert "--only tokens" not in row["to make missing analyses"]


def test_run_row_takes_evaluation_json_when_the_manifest_has_none():
    manifest = {k: v for k, v in MANIFEST.items() if k != "evaluation"}
    row = figures.run_row("r", "runs/r", manifest, evaluation={"masked_top1_accuracy": 0.3})
    assert row["held-out top-1"] == 0.3 and row["baseline top-1"] is None


def test_run_row_of_broken_and_old_runs_names_the_problem():
    broken = figures.run_row("b", "runs/b", None, problem="manifest.json could not be read")
    assert broken["problem"] == "manifest.json could not be read" and broken["analyses"] == ""
    assert broken["model"] == broken["created"] == "" and broken["held-out top-1"] is None
    assert not any(broken[a] for a in figures.ANALYSIS_OUTPUTS) and broken["to make missing analyses"] == ""
    old = figures.run_row("o", "runs/o", {"schema_version": 1, "created_utc": "2025", "model": "odd"})
    assert "schema version 1" in old["problem"] and old["created"] == "2025" and old["model"] == ""
    assert old["analyses"] == old["to make missing analyses"] == "" and old["tokens"] is None
    table = figures.runs_table([broken, old])
    assert list(table.columns) == figures.RUN_TABLE_COLUMNS and list(table["run"]) == ["b", "o"]


def test_genome_size_and_annotation_names():
    assert figures.genome_size({"acgt_nucleotides": 90, "other_nucleotides": 10}) == 100
    assert figures.genome_size({}) is None
    config_only = {"analysis_config": {"annotations": [{"name": "states", "path": "s.bed"}]}}
    assert figures.annotation_names(config_only) == ["states"]
    assert figures.annotation_names({}) == []
