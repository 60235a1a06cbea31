"""The chromatin and annotations page run headless (AppTest) on the tiny pipeline run, from the app's entry point.

AppTest sees a plotly chart as its JSON spec: traces and point counts are checked from it and from
the captions; what the figures look like is covered by test_charts_annotations.py (pure builders).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from analysis import run
from dashboard import figures
from dashboard.charts import annotations as charts
from tests.dashboard import apptest
from tests.dashboard.apptest import caption, chart_specs, copy_run, param

PAGE = "views/annotations.py"


def open_page(monkeypatch, runs_dir: Path, **query: str) -> AppTest:
    return apptest.open_page(monkeypatch, runs_dir, PAGE, **query)
VIEW_KEY = "an_view"  # the tabs: one view drawn at a time
SECTIONS = {"windows": "Window map", "composition": "Label composition per token cluster",
            "probes": "Probe scores per layer", "region": "Region view"}  # each tab's heading


def open_view(at: AppTest, view: str) -> AppTest:
    """Click the tab of ``view``; its heading is the only one drawn."""
    apptest.open_tab(at, VIEW_KEY, charts.VIEWS[view])
    assert [s.value for s in at.subheader] == [SECTIONS[view]]
    return at


def chart_titled(at: AppTest, text: str) -> dict:
    found = [s for s in chart_specs(at) if text in ((s["layout"].get("title") or {}).get("text") or "")]
    assert len(found) == 1, [(s["layout"].get("title") or {}).get("text") for s in chart_specs(at)]
    return found[0]


def probe_table(at: AppTest):
    found = [df.value for df in at.dataframe if "k-mer baseline" in df.value.columns]
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def tables(tiny_run):
    names = (run.WINDOW_PROJECTIONS, run.WINDOW_ANNOTATIONS, run.TOKEN_CLUSTERS, run.PROBE_SCORES, run.TOKENS)
    return {name: run.load_table(tiny_run, name) for name in names}


def tokens_overlapping(tiny_run: Path, tokens, chrom: str, start: int, end: int) -> int:
    """Count the tokens of ``chrom`` overlapping [start, end), straight from the tokenized genome."""
    starts = np.load(tiny_run / run.TOKENIZED_DIR / f"{chrom}.starts.npy").astype(np.int64)
    ids = np.load(tiny_run / run.TOKENIZED_DIR / f"{chrom}.ids.npy").astype(np.int64)
    lengths = tokens.set_index("token_id")["length"].reindex(ids).to_numpy()
    return int(((starts < end) & (starts + lengths > start)).sum())


def region_caption(at: AppTest) -> tuple[str, int, int, int]:
    text = caption(at, "bp): ")
    found = re.match(r"(\w+):([\d,]+)-([\d,]+) \([\d,]+ bp\): ([\d,]+) tokens", text)
    assert found, text
    chrom, start, end, n = found.groups()
    return chrom, int(start.replace(",", "")), int(end.replace(",", "")), int(n.replace(",", ""))


def test_page_shows_window_map_composition_probes_and_region(monkeypatch, runs_dir, tiny_run, tables):
    projections, windows = tables[run.WINDOW_PROJECTIONS], tables[run.WINDOW_ANNOTATIONS]
    last = int(projections["layer"].max())
    n_drawn = int(((projections["layer"] == last) & (projections["method"] == "umap")).sum())

    at = open_page(monkeypatch, runs_dir)

    assert at.title[0].value == "Chromatin and annotations"
    assert [tab.label for tab in at.tabs] == list(charts.VIEWS.values())
    assert [s.value for s in at.subheader] == [SECTIONS["windows"]]  # only the open tab is drawn
    assert len(at.get("plotly_chart")) == 1
    window_map = chart_titled(at, "windows")
    assert sum(len(t["customdata"]) for t in window_map["data"]) == n_drawn
    expected_type = "scattergl" if n_drawn > figures.SVG_MAX_POINTS else "scatter"  # WebGL only for big maps
    assert all(t["type"] == expected_type for t in window_map["data"])
    assert {t["name"].rsplit(" (", 1)[0] for t in window_map["data"]} == set(windows["chromatin_states"])
    note = caption(at, "windows drawn")
    if n_drawn < len(windows):
        assert note.startswith(f"{n_drawn:,} of {len(windows):,} windows drawn")
    else:
        assert "no subsampling" in note

    open_view(at, "composition")
    assert param(at, "view") == "composition" and len(at.get("plotly_chart")) == 1
    clusters = tables[run.TOKEN_CLUSTERS]
    chosen = clusters[(clusters["layer"] == last) & (clusters["method"] == "kmeans")]
    assert caption(at, "tokens in").startswith(f"{len(chosen):,} tokens in {chosen['cluster'].nunique()} kmeans clusters "
                                               f"at layer {last}")
    composition = chart_titled(at, "per kmeans cluster")
    assert composition["layout"]["barmode"] == "stack"
    assert len(composition["data"][0]["x"]) == chosen["cluster"].nunique() + 1  # each cluster and all tokens

    open_view(at, "probes")
    scores = tables[run.PROBE_SCORES]
    table = probe_table(at)
    assert table["annotation"].tolist() == list(dict.fromkeys(scores["annotation"]))
    baseline = scores[scores["layer"] == -1].set_index("annotation")["mcc"]
    assert table["k-mer baseline"].tolist() == pytest.approx(baseline.reindex(table["annotation"]).tolist())
    assert table[f"layer {last}"].notna().all()

    open_view(at, "region")
    chrom, start, end, n_tokens = region_caption(at)
    assert end - start == 5_000
    assert n_tokens == tokens_overlapping(tiny_run, tables[run.TOKENS], chrom, start, end)
    assert (param(at, "chrom"), param(at, "start"), param(at, "end")) == (chrom, str(start), str(end))
    region = chart_titled(at, f"{chrom}:{start:,}-{end:,}")
    token_bars = [t for t in region["data"] if t.get("legendgroup") == "tokens"]
    assert sum(len(t["customdata"]) for t in token_bars) == n_tokens
    assert {t.get("legendgroup") for t in region["data"]} >= {"chromatin_states", "repeats", "tokens"}


def test_widgets_change_what_is_shown(monkeypatch, runs_dir, tiny_run, tables):
    at = open_page(monkeypatch, runs_dir)

    at.selectbox(key="an_colour").set_value("replication_timing.mean").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(t["marker"].get("showscale") for t in chart_titled(at, "windows")["data"])
    at.selectbox(key="an_colour").set_value("repeats").run()
    assert "majority repeat class" in caption(at, "windows drawn") and param(at, "colour") == "repeats"

    at.select_slider(key="an_layer").set_value(0).run()
    at.radio(key="an_method").set_value("pca").run()
    at.radio(key="an_cluster_method").set_value("hierarchical").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "layer 0" in caption(at, "windows drawn") and "PCA" in chart_titled(at, "windows")["layout"]["title"]["text"]
    assert (param(at, "layer"), param(at, "method"), param(at, "cmethod")) == ("0", "pca", "hierarchical")

    open_view(at, "composition")
    assert "hierarchical clusters at layer 0" in caption(at, "tokens in")
    at.selectbox(key="an_composition").set_value("repeats").run()
    patterns = {t["marker"]["pattern"]["shape"] for t in chart_titled(at, "repeats per")["data"]}
    assert patterns == {"", "/"}  # plus solid, minus hatched

    open_view(at, "probes")
    at.radio(key="an_metric").set_value("balanced_accuracy").run()
    scores = tables[run.PROBE_SCORES]
    baseline = scores[scores["layer"] == -1].set_index("annotation")["balanced_accuracy"]
    table = probe_table(at)
    assert table["k-mer baseline"].tolist() == pytest.approx(baseline.reindex(table["annotation"]).tolist())
    assert param(at, "metric") == "balanced_accuracy"

    open_view(at, "region")
    at.selectbox(key="an_chrom").set_value("chr2").run()
    at.number_input(key="an_start").set_value(3_000).run()
    at.number_input(key="an_end").set_value(4_000).run()
    assert not at.exception, [e.value for e in at.exception]
    chrom, start, end, n_tokens = region_caption(at)
    assert (chrom, start, end) == ("chr2", 3_000, 4_000)
    assert n_tokens == tokens_overlapping(tiny_run, tables[run.TOKENS], "chr2", 3_000, 4_000)
    assert (param(at, "chrom"), param(at, "start"), param(at, "end")) == ("chr2", "3000", "4000")

    open_view(at, "windows")  # the closed tabs' choices were kept
    assert (at.selectbox(key="an_colour").value, at.radio(key="an_method").value) == ("repeats", "pca")
    open_view(at, "composition")
    assert at.selectbox(key="an_composition").value == "repeats"


def test_token_sequences_are_written_in_short_intervals_or_when_asked(monkeypatch, runs_dir, tiny_run, tables):
    def token_texts(at):
        bars = [t for t in chart_titled(at, "tokens by")["data"] if t.get("legendgroup") == "tokens"]
        return [text for t in bars for text in (t.get("text") or [])]

    at = open_page(monkeypatch, runs_dir, view="region")  # the default 5 kb: more tokens than written by default
    n_tokens = region_caption(at)[3]
    assert n_tokens > charts.TOKEN_TEXT_DEFAULT_MAX
    assert at.toggle(key="an_token_text").value is False and not token_texts(at)
    assert "Token sequences are not written in the blocks" in caption(at, "bp): ")

    at.toggle(key="an_token_text").set_value(True).run()
    assert len(token_texts(at)) == n_tokens and "Zoom in" in caption(at, "bp): ")

    at.number_input(key="an_end").set_value(region_caption(at)[1] + 200).run()  # a short interval: on by default
    assert region_caption(at)[3] <= charts.TOKEN_TEXT_DEFAULT_MAX
    assert at.toggle(key="an_token_text").value is True and len(token_texts(at)) == region_caption(at)[3]
    at.toggle(key="an_token_text").set_value(False).run()
    assert not token_texts(at)


def test_a_long_interval_is_capped_and_says_so(monkeypatch, runs_dir, tiny_run, tables):
    at = open_page(monkeypatch, runs_dir, chrom="chr1", start="0", end="150000", view="region")
    assert "capped at 50,000 bp" in at.warning[0].value
    chrom, start, end, _ = region_caption(at)
    assert (chrom, start, end) == ("chr1", 0, 50_000)


def test_clicking_a_window_opens_it_in_the_region_view(monkeypatch, runs_dir, tiny_run, tables):
    at = open_page(monkeypatch, runs_dir)
    trace = chart_titled(at, "windows")["data"][-1]
    index, chrom, start, end = trace["customdata"][0][:4]
    at.session_state["an_window_map"] = {"selection": {
        "points": [{"curve_number": 0, "point_index": 0, "customdata": trace["customdata"][0]}],
        "point_indices": [0], "box": [], "lasso": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state[VIEW_KEY] == charts.VIEWS["region"]  # the click opened the region tab
    assert [s.value for s in at.subheader] == [SECTIONS["region"]] and param(at, "view") == "region"
    shown = region_caption(at)[:3]
    assert shown == (chrom, max(0, start - 2_000), min(end + 2_000, 160_000 if chrom == "chr1" else 140_000))
    at.number_input(key="an_start").set_value(shown[1] + 100).run()  # the click is applied once
    assert region_caption(at)[1] == shown[1] + 100


def test_link_seeds_the_widgets(monkeypatch, runs_dir, tiny_run, tables):
    link = dict(layer="0", colour="repeats", method="pca", cmethod="hierarchical", comp="repeats",
                metric="balanced_accuracy", chrom="chr2", start="1000", end="2500")
    at = open_page(monkeypatch, runs_dir, **link)
    assert at.select_slider(key="an_layer").value == 0
    assert at.selectbox(key="an_colour").value == "repeats"
    assert at.radio(key="an_method").value == "pca"
    assert at.radio(key="an_cluster_method").value == "hierarchical"
    assert open_page(monkeypatch, runs_dir, view="composition", **link).selectbox(key="an_composition").value == "repeats"
    assert open_page(monkeypatch, runs_dir, view="probes", **link).radio(key="an_metric").value == "balanced_accuracy"
    assert region_caption(open_page(monkeypatch, runs_dir, view="region", **link))[:3] == ("chr2", 1_000, 2_500)


def test_bad_link_values_fall_back_to_defaults(monkeypatch, runs_dir, tiny_run, tables):
    link = dict(layer="9", colour="nonsense", metric="auc", chrom="chrZ", start="-4", view="nonsense")
    at = open_page(monkeypatch, runs_dir, **link)
    assert at.session_state[VIEW_KEY] == charts.VIEWS["windows"]
    assert at.select_slider(key="an_layer").value == int(tables[run.WINDOW_PROJECTIONS]["layer"].max())
    assert at.selectbox(key="an_colour").value == "chromatin_states"
    assert open_view(at, "probes").radio(key="an_metric").value == "mcc"
    assert region_caption(open_view(at, "region"))[0] == "chr1"


@pytest.mark.parametrize("name, command, view", [
    (run.WINDOW_PROJECTIONS, "--only window_projections", "windows"),
    (run.WINDOW_ANNOTATIONS, "--only window_annotations", "windows"),
    (run.TOKEN_CLUSTERS, "--only clusters", "composition"),
    (run.PROBE_SCORES, "--only probes", "probes"),
], ids=["window-projections", "window-annotations", "clusters", "probes"])
def test_missing_artifact_names_the_command_and_keeps_the_other_sections(monkeypatch, tmp_path, tiny_run, name,
                                                                          command, view):
    at = open_page(monkeypatch, copy_run(tiny_run, tmp_path, drop=(name,)), view=view)
    assert any(name in i.value and command in i.value for i in at.info), [i.value for i in at.info]
    assert [s.value for s in at.subheader] == [SECTIONS[view]]
    assert len(at.get("plotly_chart")) == 0
    open_view(at, "region")
    assert region_caption(at) and len(at.get("plotly_chart")) == 1  # the region view still draws


def test_missing_tokenized_genome_names_the_command(monkeypatch, tmp_path, tiny_run):
    at = open_page(monkeypatch, copy_run(tiny_run, tmp_path, drop=(run.TOKENIZED_DIR,)), view="region")
    assert any(run.TOKENIZED_DIR in i.value and "grover demo" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 0
    assert len(open_view(at, "windows").get("plotly_chart")) == 1  # the other views still draw


def test_missing_annotation_file_leaves_its_track_out(monkeypatch, tmp_path, tiny_run):
    runs = copy_run(tiny_run, tmp_path)
    manifest_path = runs / "tiny" / run.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    missing = tmp_path / "gone" / "repeats.bed"
    for spec in manifest["analysis_config"]["annotations"]:
        if spec["name"] == "repeats":
            spec["path"] = str(missing)
    manifest_path.write_text(json.dumps(manifest))
    at = open_page(monkeypatch, runs, view="region")
    assert any(i.value.startswith("Track not drawn: repeats") and str(missing) in i.value for i in at.info)
    region = chart_specs(at)[-1]
    assert "repeats" not in {t.get("legendgroup") for t in region["data"]}
    assert "chromatin_states" in {t.get("legendgroup") for t in region["data"]}


@pytest.mark.parametrize("name, view, region_charts", [
    (run.WINDOW_ANNOTATIONS, "windows", 1), (run.PROBE_SCORES, "probes", 1), (run.TOKENS, "composition", 0),
], ids=["window-annotations", "probes", "tokens"])
def test_corrupted_artifact_shows_an_error_not_a_traceback(monkeypatch, tmp_path, tiny_run, name, view, region_charts):
    at = open_page(monkeypatch, copy_run(tiny_run, tmp_path, corrupt=(name,)), view=view)
    assert any(name in e.value and "could not be read" in e.value for e in at.error), [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 0
    open_view(at, "region")  # draws without the damaged table, or says it needs the token table
    assert len(at.get("plotly_chart")) == region_charts
