"""The self-similarity page run headless (AppTest) on the tiny pipeline run, from the app's entry point.

Plotly charts are opaque to AppTest: what they draw is checked through the page's metrics and
captions here, and in test_charts_self_similarity.py (pure builders).
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis import run
from tests.dashboard import apptest
from tests.dashboard.apptest import caption, param, copy_run
from dashboard.charts import self_similarity as charts

PAGE = "views/self_similarity.py"


def open_page(monkeypatch, runs_dir: Path, **query: str) -> AppTest:
    return apptest.open_page(monkeypatch, runs_dir, PAGE, **query)


VIEW_KEY = "ss_view"  # the tabs: one view drawn at a time


def open_view(at: AppTest, view: str) -> AppTest:
    return apptest.open_tab(at, VIEW_KEY, charts.VIEWS[view])


def metric(at: AppTest, prefix: str):
    found = [m for m in at.metric if m.label.startswith(prefix)]
    assert len(found) == 1, [m.label for m in at.metric]
    return found[0]


@pytest.fixture(scope="module")
def tables(tiny_run):
    table = run.load_table(tiny_run, run.SELF_SIMILARITY)
    return table, run.load_tokens(tiny_run), run.load_table(tiny_run, run.SELF_SIMILARITY_GROUPS)


def test_page_shows_findings_curves_heatmap_and_drill_down(monkeypatch, runs_dir, tiny_run, tables):
    table, tokens, groups = tables
    layers = sorted(table["layer"].unique())
    first, last = charts.compared_layers(layers)
    at = open_page(monkeypatch, runs_dir)

    assert at.title[0].value == "Self-similarity"
    assert [tab.label for tab in at.tabs] == list(charts.VIEWS.values())
    assert len(at.get("plotly_chart")) == 1  # the group curves: only the open tab is drawn
    assert not at.info and not at.error

    wide = table.pivot(index="token_id", columns="layer", values="self_similarity")
    n_fall = int((wide[last] < wide[first]).sum())
    assert metric(at, f"Raw falls, layer {first} → {last}").value == f"{n_fall:,} / {len(wide):,} tokens"
    corrected = table.pivot(index="token_id", columns="layer", values="corrected")
    assert metric(at, "Corrected falls").value.startswith(f"{int((corrected[last] < corrected[first]).sum()):,} / ")
    repeat = groups[(groups["grouping"] == "repeat_localised") & (groups["value"] == "self_similarity")
                    & (groups["layer"] == last)].set_index("group")
    assert metric(at, "Repeat tokens").value == f"{repeat.at['repeat', 'mean']:.3f}"

    curves = caption(at, "over the tokens of each group")
    lengths = groups[(groups["grouping"] == "length_group") & (groups["value"] == "self_similarity")]
    assert f"{lengths['group'].nunique()} groups" in curves and "median, band q25–q75" in curves
    n_windows = int(run.load_table(tiny_run, run.INTRA_WINDOW_SIMILARITY)["n_windows"].max())
    assert f"{n_windows:,} windows" in curves

    open_view(at, "heatmap")
    assert len(at.get("plotly_chart")) == 1 and param(at, "view") == "heatmap"
    heat = caption(at, "tokens ×")
    assert heat.startswith(f"{table['token_id'].nunique():,} tokens × {len(layers)} layers")
    assert "none subsampled" in heat and "frequency" in heat

    # The drill-down opens on the most frequent token.
    open_view(at, "token")
    assert len(at.get("plotly_chart")) == 1
    top = tokens[tokens["token_id"].isin(table["token_id"])].sort_values(["frequency", "token_id"],
                                                                          ascending=[False, True]).iloc[0]
    assert at.selectbox(key="ss_token").value == top["token_id"]
    n_samples = int(table.loc[table["token_id"] == top["token_id"], "n_samples"].max())
    assert metric(at, "Sampled occurrences").value == f"{n_samples:,}"
    own = table[table["token_id"] == top["token_id"]].set_index("layer")["self_similarity"]
    raw = metric(at, f"Raw, layer {last}")
    assert raw.value == f"{own[last]:.3f}" and raw.delta == f"{own[last] - own[first]:+.3f} since layer {first}"
    near, contexts = at.dataframe[0].value, at.dataframe[1].value
    assert len(near) == 10 and top["token"] not in set(near["token"])
    assert near["cosine"].is_monotonic_decreasing
    assert len(contexts) == min(10, n_samples) and set(contexts["token"]) == {top["token"]}
    assert caption(at, "a uniform random sample").startswith(f"{len(contexts)} of the {n_samples}")

    # The link holds the page's choices.
    assert param(at, "grouping") == "length_group" and param(at, "value") == "self_similarity"
    assert param(at, "token") == top["token"] and param(at, "layer") == str(last)


def test_widgets_change_what_is_shown(monkeypatch, runs_dir, tiny_run, tables):
    table, tokens, groups = tables
    layers = sorted(table["layer"].unique())
    at = open_page(monkeypatch, runs_dir)

    at.selectbox(key="ss_grouping").set_value("repeat_localised").run()
    curves = caption(at, "over the tokens of each group")
    n_repeat = groups[(groups["grouping"] == "repeat_localised") & (groups["value"] == "self_similarity")
                      ].groupby("group")["n_tokens"].max()
    assert f"repeat: {n_repeat['repeat']:,}" in curves and "Repeat: ≥ 50%" in curves
    assert param(at, "grouping") == "repeat_localised"

    at.radio(key="ss_value").set_value("corrected").run()
    assert not at.exception
    assert "Corrected (raw − baseline) per layer" in caption(at, "over the tokens of each group")
    assert "0 after correction" in caption(at, "over the tokens of each group")
    repeat = groups[(groups["grouping"] == "repeat_localised") & (groups["value"] == "corrected")
                    & (groups["layer"] == layers[-1])].set_index("group")
    assert metric(at, "Repeat tokens").value == f"{repeat.at['repeat', 'mean']:.3f}"
    at.radio(key="ss_band").set_value("std").run()
    assert "mean, band ± 1 std" in caption(at, "over the tokens of each group")
    assert param(at, "band") == "std"

    open_view(at, "heatmap")
    assert "corrected (raw − baseline)" in caption(at, "tokens ×")
    at.selectbox(key="ss_sort").set_value("repeat_share").run()
    assert "sorted by repeat share" in caption(at, "tokens ×")

    open_view(at, "token")
    rare = int(tokens[tokens["token_id"].isin(table["token_id"])].sort_values("frequency").iloc[0]["token_id"])
    rare_token = tokens.set_index("token_id").at[rare, "token"]
    at.selectbox(key="ss_token").set_value(rare).run()
    assert not at.exception
    n_samples = int(table.loc[table["token_id"] == rare, "n_samples"].max())
    assert metric(at, "Sampled occurrences").value == f"{n_samples:,}"
    assert set(at.dataframe[1].value["token"]) == {rare_token}
    assert param(at, "token") == rare_token

    at.select_slider(key="ss_layer").set_value(layers[0]).run()
    assert any(f"Nearest tokens to {rare_token} at layer {layers[0]}" in m.value for m in at.markdown)
    assert param(at, "layer") == str(layers[0])

    at.number_input(key="ss_neighbours").set_value(3).run()
    assert len(at.dataframe[0].value) == 3
    at.number_input(key="ss_contexts").set_value(2).run()
    assert len(at.dataframe[1].value) == min(2, n_samples)

    open_view(at, "heatmap")  # the closed tabs' choices were kept
    assert at.selectbox(key="ss_sort").value == "repeat_share"
    open_view(at, "token")
    assert at.selectbox(key="ss_token").value == rare and len(at.dataframe[0].value) == 3


def test_link_seeds_the_widgets(monkeypatch, runs_dir, tiny_run, tables):
    table, tokens, _ = tables
    layers = sorted(table["layer"].unique())
    pick = tokens[tokens["token_id"].isin(table["token_id"])].iloc[3]
    link = dict(run="tiny", grouping="frequency_decile", value="corrected", band="std", sort="length",
                layer=str(layers[0]))
    at = open_page(monkeypatch, runs_dir, view="heatmap", **link)
    assert at.selectbox(key="ss_grouping").value == "frequency_decile"
    assert at.radio(key="ss_value").value == "corrected"
    assert at.radio(key="ss_band").value == "std"
    assert at.selectbox(key="ss_sort").value == "length"
    at = open_page(monkeypatch, runs_dir, token=pick["token"].lower(), **link)  # a token and no view: its drill-down
    assert at.session_state[VIEW_KEY] == charts.VIEWS["token"]
    assert at.selectbox(key="ss_token").value == pick["token_id"]
    assert at.select_slider(key="ss_layer").value == layers[0]
    assert param(at, "token") == pick["token"]  # written back in canonical case


def test_bad_link_values_fall_back_to_defaults(monkeypatch, runs_dir, tiny_run, tables):
    table, _, _ = tables
    at = open_page(monkeypatch, runs_dir, grouping="colour", value="x", token="NOTATOKEN", layer="99", sort="?")
    assert at.selectbox(key="ss_grouping").value == "length_group"
    assert at.radio(key="ss_value").value == "self_similarity"
    assert at.select_slider(key="ss_layer").value == int(table["layer"].max())
    assert "`NOTATOKEN` (from the link) is not a token of this run" in at.warning[0].value
    at.run()
    assert not at.warning  # said once, on arrival
    assert open_view(at, "heatmap").selectbox(key="ss_sort").value == "frequency"
    at = open_page(monkeypatch, runs_dir, view="nonsense")
    assert at.session_state[VIEW_KEY] == charts.VIEWS["groups"]


@pytest.mark.parametrize("name", [run.SELF_SIMILARITY, run.TOKENS], ids=["self_similarity", "tokens"])
def test_missing_required_artifact_names_the_command(monkeypatch, tmp_path, tiny_run, name):
    runs = copy_run(tiny_run, tmp_path, drop=(name,))
    at = open_page(monkeypatch, runs)
    assert any(run.command_for(runs / "tiny", name) in i.value for i in at.info), [i.value for i in at.info]
    assert not at.get("plotly_chart")


def test_missing_group_summaries_keep_the_rest_of_the_page(monkeypatch, tmp_path, tiny_run):
    runs = copy_run(tiny_run, tmp_path, drop=(run.SELF_SIMILARITY_GROUPS, run.INTRA_WINDOW_SIMILARITY))
    at = open_page(monkeypatch, runs)
    assert any(f"grover analyze {runs / 'tiny'} --only self_similarity" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 0  # no group curves
    assert metric(at, "Repeat tokens").value == "–"
    assert len(open_view(at, "heatmap").get("plotly_chart")) == 1  # the heatmap and token curve still drawn
    assert len(open_view(at, "token").get("plotly_chart")) == 1


def test_missing_tokenized_genome_and_token_means_are_reported_in_their_sections(monkeypatch, tmp_path, tiny_run):
    runs = copy_run(tiny_run, tmp_path, drop=(run.TOKENIZED_DIR, run.TOKEN_EMBEDDINGS))
    at = open_page(monkeypatch, runs, view="token")
    messages = [i.value for i in at.info]
    assert any("token_means.safetensors" in m and "grover embed" in m for m in messages), messages
    assert any("tokenized/index.json" in m and "grover demo --out" in m for m in messages), messages
    assert len(at.get("plotly_chart")) == 1


@pytest.mark.parametrize("name, view, stops", [
    (run.SELF_SIMILARITY, "groups", True), (run.SELF_SIMILARITY_GROUPS, "heatmap", False),
    (run.SELF_SIMILARITY_BASELINE, "groups", False), (run.TOKEN_EMBEDDINGS, "token", False),
], ids=["self_similarity", "groups", "baseline", "token_means"])
def test_corrupted_artifact_shows_an_error_not_a_traceback(monkeypatch, tmp_path, tiny_run, name, view, stops):
    runs = copy_run(tiny_run, tmp_path, corrupt=(name,))
    at = open_page(monkeypatch, runs, view=view)
    assert any(Path(name).name in e.value and "could not be read" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert bool(at.get("plotly_chart")) is not stops


def test_heatmap_counts_match_the_artifact_for_every_sort(monkeypatch, runs_dir, tiny_run, tables):
    table, tokens, _ = tables
    at = open_page(monkeypatch, runs_dir, view="heatmap")
    n_special = int(tokens["is_special"].sum())
    for sort in charts.SORTS:
        at.selectbox(key="ss_sort").set_value(sort).run()
        assert not at.exception
        text = caption(at, "tokens ×")
        count = int(re.match(r"([\d,]+) tokens ×", text).group(1).replace(",", ""))
        assert count == table["token_id"].nunique()
        assert f"{n_special} special tokens" in text
    assert isinstance(table, pd.DataFrame)
