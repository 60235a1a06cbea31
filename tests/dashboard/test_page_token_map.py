"""The token embedding map (dashboard/views/token_map.py) with AppTest, on the session's tiny run.

The chart's spec is read back (traces, token ids in customdata) to check what the map draws; a box
or lasso selection needs a browser (test_browser.py), so selections here come from the link
(``?sel=``), which the page treats like one made on the chart.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import run
from dashboard import figures
from tests.dashboard.test_app import TOKEN_MAP, expected_points, open_app, points_drawn
from tests.dashboard.test_page_runs import copy_run


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def open_map(monkeypatch, runs_dir: Path, **query: str):
    at = open_app(monkeypatch, runs_dir, **query)
    at.switch_page(TOKEN_MAP).run()
    no_exception(at)
    return at


def _array(value) -> np.ndarray:
    """A plotly array as sent to the browser: a list, or ``{"dtype", "bdata", "shape"}`` (binary)."""
    if isinstance(value, dict):
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        if "shape" in value:
            array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
        return array
    return np.asarray(value)


def chart_traces(at) -> dict[str, list[int]]:
    """Return ``{trace name: token ids it draws}`` of the map (ids from the first customdata column)."""
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    traces = {}
    for trace in spec["data"]:
        data = _array(trace["customdata"]) if "customdata" in trace else np.empty((0, 1))
        traces[trace["name"]] = [int(i) for i in data.reshape(len(_array(trace["x"])), -1)[:, 0]] if len(data) else []
    n_drawn = sum(len(ids) for name, ids in traces.items() if not name.startswith("selected"))
    # One renderer for the whole map, whatever the colour: SVG for a vocabulary's worth of tokens, WebGL beyond.
    expected = "scattergl" if n_drawn > figures.SVG_MAX_POINTS else "scatter"
    assert {trace["type"] for trace in spec["data"]} == {expected}
    return traces


def drawn_ids(at) -> list[int]:
    """Every token the map draws once (the selection overlay left out)."""
    return sorted(i for name, ids in chart_traces(at).items() if not name.startswith("selected") for i in ids)


def projected_ids(tiny_run: Path, layer: int, method: str) -> list[int]:
    projections = run.load_token_projections(tiny_run)
    return sorted(projections.loc[(projections["layer"] == layer) & (projections["method"] == method), "token_id"])


def table_with(at, column: str) -> pd.DataFrame:
    return next(df.value for df in at.dataframe if column in df.value.columns)


def test_map_follows_layer_method_colour_and_motif(monkeypatch, runs_dir, tiny_run):
    projections = run.load_token_projections(tiny_run)
    layers = run.layers_in(projections)
    methods = sorted(set(projections["method"]))

    at = open_map(monkeypatch, runs_dir)
    assert at.title[0].value == "Token embedding map"
    n, caption = points_drawn(at)
    assert n == expected_points(tiny_run, layers[-1], "umap")  # opens on the last layer, UMAP
    assert "no subsampling" in caption
    assert drawn_ids(at) == projected_ids(tiny_run, layers[-1], "umap")
    assert list(chart_traces(at)) == ["tokens"]
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels[:3] == ["PNG", "SVG", "CSV"] and "Interactive HTML" in labels

    slider = at.select_slider(key="map_layer")
    assert slider.options == [str(layer) for layer in layers]
    for layer in (layers[0], layers[len(layers) // 2]):
        at.select_slider(key="map_layer").set_value(layer).run()
        no_exception(at)
        n, caption = points_drawn(at)
        assert n == expected_points(tiny_run, layer, "umap") and f"layer {layer} " in caption
        pc_table = table_with(at, "explained variance")
        assert list(pc_table.index)[0] == "PC1"
        assert at.query_params["layer"] in (str(layer), [str(layer)])

    for method in methods:
        at.radio(key="map_method").set_value(method).run()
        assert points_drawn(at)[0] == expected_points(tiny_run, layers[len(layers) // 2], method)
        assert drawn_ids(at) == projected_ids(tiny_run, layers[len(layers) // 2], method)

    for colour in figures.COLOUR_BY:
        at.selectbox(key="map_colour").set_value(colour).run()
        no_exception(at)
        assert at.query_params["colour"] in (colour, [colour])

    tokens = run.load_tokens(tiny_run)
    drawn = projections[(projections["layer"] == layers[len(layers) // 2]) & (projections["method"] == methods[-1])]
    shown = tokens[tokens["token_id"].isin(drawn["token_id"])]
    motif = "CG"
    n_match = int(shown["token"].str.contains(motif, regex=False).sum())
    at.text_input(key="map_motif").set_value(motif.lower()).run()
    no_exception(at)
    if n_match:
        assert any(m.value.startswith(f"**{n_match:,}** of {len(drawn):,} tokens contain `{motif}`") for m in at.markdown)
        assert len(chart_traces(at)[f"contains {motif}"]) == n_match
    assert at.query_params["motif"] in (motif, [motif])
    at.text_input(key="map_motif").set_value("NNNNNNNNNNNNNNNNNNNN").run()
    assert "No token contains" in at.warning[0].value
    assert points_drawn(at)[0] == len(drawn)  # dimmed, not dropped


def test_colour_by_cluster_and_annotation_share(monkeypatch, runs_dir, tiny_run):
    tokens = run.load_tokens(tiny_run)
    clusters = run.load_table(tiny_run, run.TOKEN_CLUSTERS)
    at = open_map(monkeypatch, runs_dir)
    options = at.selectbox(key="map_colour").options
    shares = [c for c in tokens.columns if ".share_" in c]
    assert len(shares) > 0
    assert options[len(figures.COLOUR_BY):len(figures.COLOUR_BY) + 2] == ["Cluster (k-means)", "Cluster (hierarchical)"]
    assert options[len(figures.COLOUR_BY) + 2:] == [figures.colour_label(c) for c in figures.share_columns(shares)]

    layer = run.layers_in(run.load_token_projections(tiny_run))[-1]
    for method in ("kmeans", "hierarchical"):
        at.selectbox(key="map_colour").set_value(f"cluster_{method}").run()
        no_exception(at)
        at_layer = clusters[(clusters["layer"] == layer) & (clusters["method"] == method)]
        traces = chart_traces(at)
        assert list(traces) == [f"cluster {c}" for c in sorted(at_layer["cluster"].unique())]
        by_token = at_layer.set_index("token_id")["cluster"]
        for name, ids in traces.items():
            assert set(by_token.loc[ids]) == {int(name.split()[-1])}
        assert any(f"{at_layer['cluster'].nunique()} " in c.value and "clusters of the token embeddings" in c.value
                   for c in at.caption)
        assert table_with(at, "explained variance") is not None  # the PC table stays beside the map

    share = "repeats.share_SINE/Alu_plus" if "repeats.share_SINE/Alu_plus" in shares else shares[0]
    at.selectbox(key="map_colour").set_value(share).run()
    no_exception(at)
    annotation, label = share.split(".share_", 1)
    assert any(f"inside `{label}` of the `{annotation}` annotation" in c.value for c in at.caption)
    assert drawn_ids(at) == projected_ids(tiny_run, layer, "umap")
    assert at.query_params["colour"] in (share, [share])


def test_link_seeds_the_view_and_its_selection(monkeypatch, runs_dir, tiny_run):
    tokens = run.load_tokens(tiny_run).set_index("token_id")
    ids = projected_ids(tiny_run, 0, "pca")
    chosen = [ids[5], ids[0], ids[-1]]
    at = open_map(monkeypatch, runs_dir, layer="0", method="pca", colour="gc", motif="cg",
                  sel=",".join(map(str, chosen)))
    assert at.select_slider(key="map_layer").value == 0
    assert at.radio(key="map_method").value == "pca"
    assert at.selectbox(key="map_colour").value == "gc"
    assert at.text_input(key="map_motif").value == "cg"
    assert "layer 0 (PCA)" in points_drawn(at)[1]

    assert at.subheader[0].value == f"Selected tokens ({len(chosen)})"
    selected = table_with(at, "cpg")
    assert list(selected["token_id"]) == chosen
    assert list(selected["token"]) == [tokens.loc[i, "token"] for i in chosen]
    assert sorted(chart_traces(at)[f"selected ({len(chosen)})"]) == sorted(chosen)  # ringed on the map
    assert any("black rings" in c.value for c in at.caption)

    # Nearest tokens at layer 0, by cosine of the token means, among the tokens on the map.
    neighbours = table_with(at, "neighbour")
    assert list(neighbours.columns) == ["token_id", "token", "rank", "neighbour_id", "neighbour", "cosine"]
    means = run.load_token_embeddings(tiny_run)["layer_0"].astype(np.float64)
    unit = means / np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)
    for token_id in chosen:
        mine = neighbours[neighbours["token_id"] == token_id]
        others = [i for i in ids if i != token_id]
        cosines = unit[others] @ unit[token_id]
        expected = [others[j] for j in np.argsort(-cosines, kind="stable")[: figures.NEIGHBOURS_K]]
        assert list(mine["rank"]) == list(range(1, figures.NEIGHBOURS_K + 1))
        assert list(mine["neighbour_id"]) == expected
        np.testing.assert_allclose(mine["cosine"], np.sort(cosines)[::-1][: figures.NEIGHBOURS_K], atol=1e-5)
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"Selected tokens (CSV)", "Selected tokens (FASTA)", "Nearest tokens (CSV)"} <= set(labels)

    for param, value in (("layer", "0"), ("method", "pca"), ("colour", "gc"), ("motif", "CG"),
                         ("sel", ",".join(map(str, chosen)))):
        assert at.query_params[param] in (value, [value])

    # The selection follows the layer slider (same tokens, another layer).
    at.select_slider(key="map_layer").set_value(run.layers_in(run.load_token_projections(tiny_run))[-1]).run()
    no_exception(at)
    assert list(table_with(at, "cpg")["token_id"]) == chosen


def test_invalid_link_values_fall_back_to_defaults(monkeypatch, runs_dir, tiny_run):
    layers = run.layers_in(run.load_token_projections(tiny_run))
    at = open_map(monkeypatch, runs_dir, layer="99", method="tsne", colour="nope", sel="12,ACGT")
    assert at.select_slider(key="map_layer").value == layers[-1]
    assert at.radio(key="map_method").value == "umap"
    assert at.selectbox(key="map_colour").value == "frequency"
    assert not [s for s in at.subheader if s.value.startswith("Selected tokens")]
    assert any("Select points on the map" in c.value for c in at.caption)
    assert "sel" not in at.query_params


def test_clear_selection_forgets_it_and_the_link(monkeypatch, runs_dir, tiny_run):
    ids = projected_ids(tiny_run, 1, "umap")[:4]
    at = open_map(monkeypatch, runs_dir, sel=",".join(map(str, ids)))
    assert at.subheader[0].value == "Selected tokens (4)"
    at.button(key="map_clear_selection").click().run()
    no_exception(at)
    assert not [s for s in at.subheader if s.value.startswith("Selected tokens")]
    assert "sel" not in at.query_params
    assert not [name for name in chart_traces(at) if name.startswith("selected")]


def test_map_choices_and_selection_survive_a_visit_to_another_page(monkeypatch, runs_dir, tiny_run):
    layers = run.layers_in(run.load_token_projections(tiny_run))
    ids = projected_ids(tiny_run, layers[0], "umap")[:3]
    at = open_map(monkeypatch, runs_dir, sel=",".join(map(str, ids)))
    at.select_slider(key="map_layer").set_value(layers[0]).run()
    at.selectbox(key="map_colour").set_value("gc").run()
    at.text_input(key="map_motif").set_value("CG").run()
    at.switch_page("views/home.py").run()
    no_exception(at)
    assert at.metric
    at.switch_page(TOKEN_MAP).run()
    no_exception(at)
    assert at.select_slider(key="map_layer").value == layers[0]
    assert at.selectbox(key="map_colour").value == "gc"
    assert at.text_input(key="map_motif").value == "CG"
    assert f"layer {layers[0]} " in points_drawn(at)[1]
    assert list(table_with(at, "cpg")["token_id"]) == ids
    assert sorted(chart_traces(at)["selected (3)"]) == sorted(ids)  # a new chart: the selection is ringed


def test_missing_clusters_and_token_means_name_their_commands(monkeypatch, tmp_path, tiny_run):
    folder = copy_run(tiny_run, tmp_path / "runs" / "lean", without=(run.TOKEN_CLUSTERS, run.EMBEDDINGS_DIR))
    ids = projected_ids(tiny_run, 1, "umap")[:2]
    at = open_map(monkeypatch, folder.parent, colour="cluster_kmeans", sel=",".join(map(str, ids)))
    assert at.selectbox(key="map_colour").value == "frequency"  # no cluster option
    assert not [o for o in at.selectbox(key="map_colour").options if o.startswith("Cluster")]
    assert any(f"grover analyze {folder} --only clusters" in c.value for c in at.caption)
    assert at.subheader[0].value == "Selected tokens (2)"  # the selection table needs no embeddings ...
    assert any(f"grover embed {folder}" in i.value for i in at.info)  # ... its nearest tokens do
    assert points_drawn(at)[0] > 0


def test_missing_projections_name_the_command(monkeypatch, tmp_path, tiny_run):
    folder = copy_run(tiny_run, tmp_path / "runs" / "noproj", without=(run.TOKEN_PROJECTIONS,))
    at = open_map(monkeypatch, folder.parent)
    assert f"grover analyze {folder} --only token_projections" in at.info[0].value
    assert not at.get("plotly_chart")


@pytest.mark.parametrize("name", [run.TOKENS, run.TOKEN_PROJECTIONS], ids=["tokens", "projections"])
def test_corrupted_artifact_shows_an_error_not_a_traceback(monkeypatch, tmp_path, tiny_run, name):
    folder = copy_run(tiny_run, tmp_path / "runs" / "damaged", without=(name,))
    (folder / name).write_bytes(b"PAR1 this is not parquet")
    at = open_map(monkeypatch, folder.parent)
    assert any(name in e.value and "could not be read" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("plotly_chart")


def test_corrupted_clusters_leave_the_map_working(monkeypatch, tmp_path, tiny_run):
    folder = copy_run(tiny_run, tmp_path / "runs" / "damaged", without=(run.TOKEN_CLUSTERS,))
    (folder / run.TOKEN_CLUSTERS).write_bytes(b"garbage")
    at = open_map(monkeypatch, folder.parent)
    assert any(run.TOKEN_CLUSTERS in c.value and "could not be read" in c.value for c in at.caption)
    assert points_drawn(at)[0] > 0 and drawn_ids(at)
