"""The compare-models page run headless (AppTest) on the tiny pipeline run and perturbed copies of it.

A second run over the same vocabulary is made here by copying ``tiny_run`` and perturbing it (token
means rescaled plus noise, projections redone by PCA, self-similarity jittered); ``tiny_run`` itself is
never touched. Numbers on the page are checked against values computed here from the artifacts.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file, save_file

from analysis import run
from analysis.projections import pca_projection
from dashboard import figures
from dashboard.charts import compare as charts
from tests.dashboard.apptest import open_tab
from tests.dashboard.test_app import open_app

PAGE = "views/compare.py"
VIEW_KEY = "cmp_view"  # the tabs: one view drawn at a time


def perturbed_copy(source: Path, target: Path, *, seed: int = 1, noise: float = 0.5) -> Path:
    """Copy a run and perturb what the comparison reads, so its numbers differ from the source's."""
    shutil.copytree(source, target)
    rng = np.random.default_rng(seed)
    means = load_file(str(target / run.TOKEN_EMBEDDINGS))
    for key in [k for k in means if k.startswith("layer_")]:
        matrix = means[key]
        means[key] = (2.0 * matrix + noise * matrix.std() * rng.normal(size=matrix.shape)).astype(np.float32)
    save_file(means, str(target / run.TOKEN_EMBEDDINGS))
    projections = pd.read_parquet(target / run.TOKEN_PROJECTIONS)
    parts = []
    for (layer, _method), part in projections.groupby(["layer", "method"], sort=False):
        xy, _ = pca_projection(means[f"layer_{layer}"][part["token_id"].to_numpy()], seed=seed)
        parts.append(part.assign(x=xy[:, 0].astype(np.float32), y=xy[:, 1].astype(np.float32)))
    pd.concat(parts, ignore_index=True).to_parquet(target / run.TOKEN_PROJECTIONS)
    similarity = pd.read_parquet(target / run.SELF_SIMILARITY)
    similarity["self_similarity"] += rng.normal(0, 0.02, len(similarity))
    similarity.to_parquet(target / run.SELF_SIMILARITY)
    manifest = json.loads((target / run.MANIFEST).read_text())
    manifest["name"] = target.name
    (target / run.MANIFEST).write_text(json.dumps(manifest))
    return target


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_run) -> Path:
    """A runs folder: ``tiny`` (a link to the fixture run) and ``tiny_b`` (a perturbed copy)."""
    runs = tmp_path_factory.mktemp("compare_runs")
    (runs / "tiny").symlink_to(tiny_run, target_is_directory=True)
    perturbed_copy(tiny_run, runs / "tiny_b")
    return runs


def compare(monkeypatch, runs_dir: Path, **query: str):
    at = open_app(monkeypatch, runs_dir, **query)
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_view(at, view: str):
    return open_tab(at, VIEW_KEY, charts.VIEWS[view])


def caption(at, fragment: str) -> str:
    found = [c.value for c in at.caption if fragment in c.value]
    assert len(found) == 1, [c.value for c in at.caption]
    return found[0]


def chart_titles(at) -> list[str]:
    return [json.loads(chart.proto.spec)["layout"].get("title", {}).get("text", "") for chart in at.get("plotly_chart")]


def expected_knn_last_layers(run_a: Path, run_b: Path, k: int = 10) -> float:
    """Mean Jaccard of the 10 nearest neighbours at both runs' last layers, computed the plain way (sets)."""
    tokens = run.load_tokens(run_a)
    means_a, means_b = run.load_token_embeddings(run_a), run.load_token_embeddings(run_b)
    ids = tokens.loc[~tokens["is_special"], "token_id"].to_numpy()
    ids = ids[(means_a["count"][ids] > 0) & (means_b["count"][ids] > 0)]
    last = max(int(key.split("_")[1]) for key in means_a if key.startswith("layer_"))

    def neighbours(matrix):
        unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        similarity = unit @ unit.T
        return [set(np.argsort(-np.where(np.arange(len(row)) == i, -np.inf, row), kind="stable")[:k])
                for i, row in enumerate(similarity)]

    a, b = neighbours(means_a[f"layer_{last}"][ids]), neighbours(means_b[f"layer_{last}"][ids])
    return float(np.mean([len(x & y) / len(x | y) for x, y in zip(a, b)]))


def test_two_runs_side_by_side(monkeypatch, two_runs, tiny_run):
    at = compare(monkeypatch, two_runs)
    assert at.title[0].value == "Compare models"
    assert at.selectbox(key="cmp_run_a").value == "tiny" and at.selectbox(key="cmp_run_b").value == "tiny_b"
    tokens = run.load_tokens(tiny_run)
    n_tokens = int((~tokens["is_special"]).sum())
    assert at.success[0].value.startswith(f"Same vocabulary: the {n_tokens:,} nucleotide tokens")

    projections = run.load_token_projections(tiny_run)
    last = run.layers_in(projections)[-1]
    n_points = int(((projections["layer"] == last) & (projections["method"] == "umap")).sum())
    assert caption(at, "tokens drawn").startswith(f"{n_points:,} tokens drawn for A and {n_points:,} for B")
    assert [tab.label for tab in at.tabs] == list(charts.VIEWS.values())
    titles = chart_titles(at)
    assert titles == [f"A: tiny · layer {last} · UMAP", f"B: tiny_b · layer {last} · UMAP"]  # the maps' tab only
    pc_tables = [t.value for t in at.table if "explained variance" in t.value.columns]  # static tables
    assert len(pc_tables) == 2 and list(pc_tables[0].index)[0] == "PC1"
    expected_pc = figures.pc_property_table(run.load_table(tiny_run, run.PC_CORRELATIONS), last)
    shown_pc = pc_tables[0].astype(float)
    assert list(shown_pc.columns) == list(expected_pc.columns) and len(shown_pc) == len(expected_pc)
    assert np.allclose(shown_pc.to_numpy(), expected_pc.to_numpy(), atol=0.005)  # drawn with 2 decimals

    open_view(at, "groups")
    assert len(chart_titles(at)) == 1 and "by token length" in chart_titles(at)[0].lower()
    assert at.query_params["view"] in ("groups", ["groups"])

    # Self-similarity agreement at the last layer, from the two artifacts.
    open_view(at, "agreement")
    assert len(chart_titles(at)) == 2  # the scatter and the kNN heatmap
    a, b = run.load_table(tiny_run, run.SELF_SIMILARITY), run.load_table(two_runs / "tiny_b", run.SELF_SIMILARITY)
    top = int(a["layer"].max())
    pairs = a[a["layer"] == top].merge(b[b["layer"] == top], on="token_id", suffixes=("_a", "_b"))
    r = np.corrcoef(pairs["self_similarity_a"], pairs["self_similarity_b"])[0, 1]
    assert caption(at, "Pearson r").startswith(f"Pearson r = {r:.3f}") and f"over {len(pairs):,} shared" in caption(at, "Pearson r")

    expected = expected_knn_last_layers(tiny_run, two_runs / "tiny_b")
    assert f"Last layers: {expected:.3f}." in caption(at, "Mean Jaccard")

    open_view(at, "probes")
    assert len(chart_titles(at)) == 2  # probes and the evaluation
    evaluation = next(df.value for df in at.dataframe if "metric" in df.value.columns)
    top1 = json.loads((tiny_run / run.MANIFEST).read_text())["evaluation"]["masked_top1_accuracy"]
    assert evaluation.set_index("metric").loc["Masked top-1 accuracy", "A: tiny"] == pytest.approx(top1)
    assert at.query_params["run_b"] in ("tiny_b", ["tiny_b"])


def test_widgets_change_what_is_shown(monkeypatch, two_runs, tiny_run):
    layers = run.layers_in(run.load_token_projections(tiny_run))
    at = compare(monkeypatch, two_runs)
    at.select_slider(key="cmp_layer_a").set_value(layers[0]).run()
    assert chart_titles(at)[:2] == [f"A: tiny · layer {layers[0]} · UMAP", f"B: tiny_b · layer {layers[0]} · UMAP"]
    at.toggle(key="cmp_match_depth").set_value(False).run()
    at.select_slider(key="cmp_layer_b").set_value(layers[-1]).run()
    at.radio(key="cmp_method").set_value("pca").run()
    assert not at.exception, [e.value for e in at.exception]
    assert chart_titles(at)[:2] == [f"A: tiny · layer {layers[0]} · PCA", f"B: tiny_b · layer {layers[-1]} · PCA"]
    assert at.query_params["layer_b"] in (str(layers[-1]), [str(layers[-1])])

    open_view(at, "groups")
    at.selectbox(key="cmp_grouping").set_value("frequency_decile").run()
    at.radio(key="cmp_value").set_value("corrected").run()
    assert "Self-similarity minus the anisotropy baseline by frequency decile" in chart_titles(at)[0]
    at.radio(key="cmp_x").set_value("depth").run()
    open_view(at, "probes")
    at.radio(key="cmp_metric").set_value("balanced_accuracy").run()
    assert chart_titles(at)[0].endswith("Balanced accuracy")
    probes = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert probes["layout"]["xaxis"]["title"]["text"].lower().startswith("relative depth")  # follows the groups' x
    open_view(at, "groups")  # the closed tab's choices were kept
    assert (at.selectbox(key="cmp_grouping").value, at.radio(key="cmp_value").value,
            at.radio(key="cmp_x").value) == ("frequency_decile", "corrected", "depth")

    open_view(at, "maps")  # the maps' choices were kept
    assert chart_titles(at) == [f"A: tiny · layer {layers[0]} · PCA", f"B: tiny_b · layer {layers[-1]} · PCA"]
    at.button(key="cmp_swap").click().run()  # B becomes the sidebar's run
    assert not at.exception
    assert at.selectbox(key="run_choice").value == "tiny_b" and at.selectbox(key="cmp_run_b").value == "tiny"
    assert chart_titles(at)[0].startswith("A: tiny_b")


def test_link_parameters_seed_the_widgets(monkeypatch, two_runs, tiny_run):
    layers = run.layers_in(run.load_token_projections(tiny_run))
    at = compare(monkeypatch, two_runs, run="tiny_b", run_b="tiny", layer_a=str(layers[0]), match="0",
                 layer_b=str(layers[1]), method="pca", colour="length", grouping="repeat_localised",
                 value="corrected", x="depth", metric="accuracy")
    assert at.selectbox(key="cmp_run_a").value == "tiny_b" and at.selectbox(key="cmp_run_b").value == "tiny"
    assert at.select_slider(key="cmp_layer_a").value == layers[0]
    assert at.toggle(key="cmp_match_depth").value is False
    assert at.select_slider(key="cmp_layer_b").value == layers[1]
    assert at.radio(key="cmp_method").value == "pca" and at.selectbox(key="cmp_colour").value == "length"
    link = dict(run="tiny_b", run_b="tiny", grouping="repeat_localised", value="corrected", x="depth", metric="accuracy")
    at = compare(monkeypatch, two_runs, view="groups", **link)
    assert at.selectbox(key="cmp_grouping").value == "repeat_localised" and at.radio(key="cmp_value").value == "corrected"
    assert at.radio(key="cmp_x").value == "depth"
    at = compare(monkeypatch, two_runs, view="probes", **link)
    assert at.radio(key="cmp_metric").value == "accuracy"


def test_different_vocabularies_compare_shared_tokens(monkeypatch, tmp_path, tiny_run):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "tiny").symlink_to(tiny_run, target_is_directory=True)
    other = runs / "renamed"
    shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("tokenized", "vocabularies"))
    tokens = pd.read_parquet(other / run.TOKENS)
    nucleotide = tokens.index[~tokens["is_special"]]
    renamed = nucleotide[-3:]
    tokens.loc[renamed, "token"] = ["ACGTACGTAC", "TTTTGGGGCC", "CACACACAGT"]
    tokens.to_parquet(other / run.TOKENS)
    at = compare(monkeypatch, runs, run_b="renamed")
    message = at.warning[0].value
    n = len(nucleotide)
    assert "The vocabularies differ" in message and f"only the {n - 3:,} tokens in both" in message
    projections = run.load_token_projections(tiny_run)
    last = run.layers_in(projections)[-1]
    drawn = projections[(projections["layer"] == last) & (projections["method"] == "umap")]
    kept = int((~drawn["token_id"].isin(tokens.loc[renamed, "token_id"])).sum())
    assert caption(at, "tokens drawn").startswith(f"{kept:,} tokens drawn for A and {kept:,} for B")
    assert f"among the {n - 3:,} shared ones" in caption(at, "tokens drawn")
    open_view(at, "agreement")
    assert f"over {n - 3:,} shared tokens seen by both runs" in caption(at, "Mean Jaccard")


def test_a_single_run_says_how_to_get_a_second(monkeypatch, tmp_path, tiny_run):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "tiny").symlink_to(tiny_run, target_is_directory=True)
    at = compare(monkeypatch, runs)
    message = at.info[0].value
    assert "needs a second run" in message and "grover build" in message and "--untrained" in message
    assert not at.get("plotly_chart")


def damaged_copy(two_runs: Path, tmp_path: Path, tiny_run: Path) -> tuple[Path, Path]:
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "tiny").symlink_to(tiny_run, target_is_directory=True)
    target = runs / "tiny_b"
    shutil.copytree(two_runs / "tiny_b", target, ignore=shutil.ignore_patterns("tokenized", "vocabularies"))
    return runs, target


def test_missing_artifact_names_the_command_and_the_rest_still_shows(monkeypatch, tmp_path, two_runs, tiny_run):
    runs, target = damaged_copy(two_runs, tmp_path, tiny_run)
    (target / run.SELF_SIMILARITY_GROUPS).unlink()
    at = compare(monkeypatch, runs, view="groups")
    message = at.info[0].value
    assert run.SELF_SIMILARITY_GROUPS in message and f"grover analyze {target} --only self_similarity" in message
    assert len(at.get("plotly_chart")) == 0  # no group curves
    assert len(open_view(at, "agreement").get("plotly_chart")) == 2  # the rest still shows
    assert len(open_view(at, "maps").get("plotly_chart")) == 2


def test_missing_tokens_stop_the_page_with_the_command(monkeypatch, tmp_path, two_runs, tiny_run):
    runs, target = damaged_copy(two_runs, tmp_path, tiny_run)
    (target / run.TOKENS).unlink()
    at = compare(monkeypatch, runs)
    assert run.TOKENS in at.info[0].value and f"grover analyze {target} --only tokens" in at.info[0].value
    assert not at.get("plotly_chart")


def test_corrupted_artifact_shows_an_error(monkeypatch, tmp_path, two_runs, tiny_run):
    runs, target = damaged_copy(two_runs, tmp_path, tiny_run)
    (target / run.PROBE_SCORES).write_bytes(b"not parquet at all")
    (target / run.TOKEN_EMBEDDINGS).write_bytes(b"not safetensors either")
    at = compare(monkeypatch, runs, view="probes")
    errors = [e.value for e in at.error]
    assert any(run.PROBE_SCORES in e and "could not be read" in e and "--only probes" in e for e in errors)
    assert len(at.get("plotly_chart")) == 1 and re.search(r"held-out", chart_titles(at)[-1])  # the evaluation
    open_view(at, "agreement")
    errors = [e.value for e in at.error]
    assert any(run.TOKEN_EMBEDDINGS in e and "could not be read" in e and f"grover embed {target}" in e for e in errors)
    assert len(at.get("plotly_chart")) == 1  # the self-similarity scatter; no kNN heatmap
