"""The GC/AG content clusters page run headless (AppTest) on the tiny pipeline run, from the app's entry point.

AppTest sees a plotly chart as its JSON spec: the number of traces and points is checked from it;
what the figures look like is covered by test_charts_clusters.py (pure builders).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analysis import run
from dashboard.charts import clusters as charts
from dashboard.figures import SVG_MAX_POINTS
from tests.dashboard import apptest
from tests.dashboard.apptest import caption, chart_specs, copy_run, param

PAGE = "views/clusters.py"


def open_page(monkeypatch, runs_dir: Path, **query: str) -> AppTest:
    return apptest.open_page(monkeypatch, runs_dir, PAGE, **query)


def points_in(spec: dict) -> int:
    return sum(len(trace.get("customdata") or []) for trace in spec["data"])


def open_view(at: AppTest, view: str) -> AppTest:
    return apptest.open_tab(at, "cl_view", charts.VIEWS[view])


def frame(at: AppTest, column: str):
    found = [df.value for df in at.dataframe if column in df.value.columns]
    assert len(found) == 1, [list(df.value.columns) for df in at.dataframe]
    return found[0]


@pytest.fixture(scope="module")
def tables(tiny_run):
    return {name: run.load_table(tiny_run, name) for name in
            (run.TOKEN_CLUSTERS, run.CLUSTER_PROFILES, run.CLUSTER_ENRICHMENT, run.TOKEN_PROJECTIONS)}


def at_layer(table, layer: int, method: str):
    return table[(table["layer"] == layer) & (table["method"] == method)]


def test_page_shows_map_gc_ag_profiles_and_enrichment(monkeypatch, runs_dir, tiny_run, tables):
    clusters = tables[run.TOKEN_CLUSTERS]
    last = int(clusters["layer"].max())
    chosen = at_layer(clusters, last, "kmeans")
    projected = at_layer(tables[run.TOKEN_PROJECTIONS], last, "umap")
    n_drawn = int(chosen["token_id"].isin(projected["token_id"]).sum())

    at = open_page(monkeypatch, runs_dir)

    assert at.title[0].value == "GC/AG content clusters"
    assert [tab.label for tab in at.tabs] == list(charts.VIEWS.values())
    assert [s.value for s in at.subheader] == ["Cluster map", "GC against AG"]  # the first tab only
    assert at.select_slider(key="cl_layer").value == last and at.radio(key="cl_method").value == "kmeans"
    specs = chart_specs(at)
    assert len(specs) == 2  # map, GC-AG
    assert points_in(specs[0]) == n_drawn and len(specs[0]["data"]) == chosen["cluster"].nunique()
    for spec in specs[:2]:  # the map and GC against AG: SVG for a vocabulary's worth of tokens, WebGL beyond
        expected_type = "scattergl" if points_in(spec) > SVG_MAX_POINTS else "scatter"
        assert {trace["type"] for trace in spec["data"]} == {expected_type}
    assert caption(at, "tokens drawn: every").startswith(f"{n_drawn:,} tokens drawn: every clustered token at layer {last}")
    assert "no subsampling" in caption(at, "tokens drawn: every")

    assert "Choose a cluster above" in caption(at, "Choose a cluster")

    open_view(at, "profiles")
    assert [s.value for s in at.subheader] == ["Cluster profiles", "Annotation profile"]
    specs = chart_specs(at)
    assert len(specs) == 2 and param(at, "view") == "profiles"  # profiles, enrichment heatmap
    profile = frame(at, "example_tokens")
    expected = at_layer(tables[run.CLUSTER_PROFILES], last, "kmeans")
    assert profile["cluster"].tolist() == sorted(expected["cluster"])
    assert int(profile["n_tokens"].sum()) == len(chosen)

    enrichment = at_layer(tables[run.CLUSTER_ENRICHMENT], last, "kmeans")
    significant = int((enrichment["q_value"] < 0.05).sum())
    assert f"{significant} of {len(enrichment)} cells" in caption(at, "Benjamini-Hochberg")
    heatmaps = [t for t in specs[1]["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 2  # chromatin states, repeats
    assert sum(len(t["x"]) for t in heatmaps) == enrichment["annotation"].nunique()
    assert "Choose a cluster above" in caption(at, "Choose a cluster")


def test_widgets_change_what_is_shown(monkeypatch, runs_dir, tiny_run, tables):
    clusters = tables[run.TOKEN_CLUSTERS]
    at = open_page(monkeypatch, runs_dir)

    at.select_slider(key="cl_layer").set_value(0).run()
    at.radio(key="cl_method").set_value("hierarchical").run()
    at.radio(key="cl_projection").set_value("pca").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "at layer 0 on the PCA token map" in caption(at, "tokens drawn: every")
    assert (param(at, "layer"), param(at, "method"), param(at, "proj")) == ("0", "hierarchical", "pca")
    expected = at_layer(tables[run.CLUSTER_PROFILES], 0, "hierarchical").sort_values("cluster")
    open_view(at, "profiles")
    assert frame(at, "example_tokens")["example_tokens"].tolist() == expected["example_tokens"].tolist()
    open_view(at, "map")

    chosen = at_layer(clusters, 0, "hierarchical")
    cluster = int(chosen["cluster"].max())
    at.selectbox(key="cl_cluster").set_value(cluster).run()
    assert not at.exception, [e.value for e in at.exception]
    members = frame(at, "cpg")
    assert set(members["token_id"]) == set(chosen.loc[chosen["cluster"] == cluster, "token_id"])
    assert members["frequency"].is_monotonic_decreasing
    assert at.subheader[-1].value == f"Tokens of cluster {cluster} ({len(members):,})"
    assert param(at, "cluster") == str(cluster)
    assert at.get("download_button")  # the members' CSV among the downloads
    opacities = [t["marker"]["opacity"] for t in chart_specs(at)[0]["data"]]
    assert opacities.count(0.85) == 1  # the chosen cluster stands out, the others are dimmed

    open_view(at, "profiles")  # the chosen cluster's tokens are listed under either tab
    assert set(frame(at, "cpg")["token_id"]) == set(members["token_id"])

    at.selectbox(key="cl_cluster").set_value(None).run()
    assert "cluster" not in at.query_params and "Choose a cluster above" in caption(at, "Choose a cluster")


def test_clicking_a_token_chooses_its_cluster(monkeypatch, runs_dir, tiny_run, tables):
    at = open_page(monkeypatch, runs_dir)
    trace = chart_specs(at)[0]["data"][-1]
    clicked = trace["customdata"][0]  # token id, token, cluster, ...
    at.session_state["cl_map"] = {"selection": {"points": [{"curve_number": 0, "point_index": 0, "customdata": clicked}],
                                                "point_indices": [0], "box": [], "lasso": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="cl_cluster").value == clicked[2]
    assert clicked[0] in set(frame(at, "cpg")["token_id"])

    at.selectbox(key="cl_cluster").set_value(None).run()  # the same click is not applied twice
    assert at.selectbox(key="cl_cluster").value is None


def test_link_seeds_the_widgets(monkeypatch, runs_dir, tiny_run, tables):
    at = open_page(monkeypatch, runs_dir, layer="0", method="hierarchical", proj="pca", cluster="1")
    assert at.select_slider(key="cl_layer").value == 0
    assert at.radio(key="cl_method").value == "hierarchical"
    assert at.radio(key="cl_projection").value == "pca"
    assert at.selectbox(key="cl_cluster").value == 1
    expected = at_layer(tables[run.TOKEN_CLUSTERS], 0, "hierarchical")
    assert len(frame(at, "cpg")) == int((expected["cluster"] == 1).sum())


def test_bad_link_values_fall_back_to_defaults(monkeypatch, runs_dir, tiny_run, tables):
    at = open_page(monkeypatch, runs_dir, layer="99", method="nonsense", proj="tsne", cluster="x")
    assert at.select_slider(key="cl_layer").value == int(tables[run.TOKEN_CLUSTERS]["layer"].max())
    assert at.radio(key="cl_method").value == "kmeans" and at.radio(key="cl_projection").value == "umap"
    assert at.selectbox(key="cl_cluster").value is None


@pytest.mark.parametrize("name", [run.TOKEN_CLUSTERS, run.CLUSTER_PROFILES, run.TOKEN_PROJECTIONS])
def test_missing_artifact_names_the_command(monkeypatch, tmp_path, tiny_run, name):
    at = open_page(monkeypatch, copy_run(tiny_run, tmp_path, drop=(name,)))
    assert any(name in i.value and "grover analyze" in i.value for i in at.info), [i.value for i in at.info]
    assert not at.get("plotly_chart")


def test_missing_enrichment_keeps_the_rest_of_the_page(monkeypatch, tmp_path, tiny_run):
    at = open_page(monkeypatch, copy_run(tiny_run, tmp_path, drop=(run.CLUSTER_ENRICHMENT,)), view="profiles")
    message = next(i.value for i in at.info if run.CLUSTER_ENRICHMENT in i.value)
    assert "grover analyze" in message and "--only clusters" in message
    assert len(at.get("plotly_chart")) == 1 and frame(at, "example_tokens") is not None
    assert len(open_view(at, "map").get("plotly_chart")) == 2


@pytest.mark.parametrize("name, charts_left", [(run.TOKEN_CLUSTERS, 0), (run.CLUSTER_ENRICHMENT, 1)],
                         ids=["clusters", "enrichment"])
def test_corrupted_artifact_shows_an_error_not_a_traceback(monkeypatch, tmp_path, tiny_run, name, charts_left):
    at = open_page(monkeypatch, copy_run(tiny_run, tmp_path, corrupt=(name,)), view="profiles")
    assert any(name in e.value and "could not be read" in e.value for e in at.error), [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == charts_left
