"""The Vocabularies page run headless (AppTest) on the tiny pipeline run, from the app's entry point.

Plotly charts are opaque to AppTest: what they draw is checked here through the page's tables,
metrics and captions (against the run's artifacts), and in test_charts_vocabularies.py (pure builders).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis import run
from tests.dashboard import apptest
from tests.dashboard.apptest import caption
from analysis.vocabulary import read_vocabulary_report
from dashboard.charts import vocabularies as charts

PAGE = "views/vocabularies.py"


def open_page(monkeypatch, runs_dir: Path, **query: str) -> AppTest:
    return apptest.open_page(monkeypatch, runs_dir, PAGE, **query)
COMPARISON = Path(run.VOCABULARIES_DIR) / "comparison"
SUMMARY_COLUMN = charts.SUMMARY_LABELS["nt_per_token"]  # identifies the summary table
VIEW_KEY = "voc_view"  # the tabs: one view drawn at a time
# Charts per view (tab) on the tiny run: lengths + frequency; GC; cycles; the pair; the segmented sequence.
N_CHARTS = {"lengths": 2, "gc": 1, "cycles": 1, "pair": 1, "segmentation": 1}


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    found = [df.value for df in at.dataframe if column in df.value.columns]
    assert len(found) == 1, [list(df.value.columns) for df in at.dataframe]
    return found[0]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def open_view(at: AppTest, view: str) -> AppTest:
    return apptest.open_tab(at, VIEW_KEY, charts.VIEWS[view])


def n_charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def param(at: AppTest, name: str) -> str | None:
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def drawn_count(at: AppTest) -> int:
    return int(re.match(r"([\d,]+) tokens drawn", caption(at, "tokens drawn")).group(1).replace(",", ""))


def copy_run(tiny_run: Path, dest: Path, *, drop: tuple[str, ...] = (), corrupt: tuple[str, ...] = ()) -> Path:
    """A runs folder holding ``tiny``: the tiny run's manifest and vocabularies (all this page reads), less
    ``drop``, with garbage in ``corrupt``."""
    out = dest / "tiny"
    out.mkdir(parents=True)
    shutil.copy(tiny_run / run.MANIFEST, out / run.MANIFEST)
    shutil.copytree(tiny_run / run.VOCABULARIES_DIR, out / run.VOCABULARIES_DIR)
    for name in drop:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in corrupt:
        (out / name).write_bytes(b"this is not a valid file \x00\xff" * 10)
    return dest


@pytest.fixture(scope="module")
def vocab(tiny_run):
    """What the page should show, read straight from the run."""
    names = run.vocabulary_names(tiny_run)
    reports = {name: read_vocabulary_report(tiny_run / run.VOCABULARIES_DIR / name) for name in names}
    comparison = {t: pd.read_parquet(tiny_run / COMPARISON / f"{t}.parquet") for t in run.VOCABULARY_COMPARISON_TABLES}
    manifest = json.loads((tiny_run / run.MANIFEST).read_text())
    return {"names": names, "reports": reports, **comparison, "own": f"bpe_{manifest['vocabulary']['cycles']}"}


def expected_drawn(vocab, chosen) -> int:
    return sum(int(((~t["is_special"]) & (t["frequency"] > 0)).sum()) for t in (vocab["reports"][n][0] for n in chosen))


def shared_row(vocab, a: str, b: str) -> dict:
    table = vocab["shared"]
    row = table[(table["vocabulary_a"] == a) & (table["vocabulary_b"] == b)]
    if len(row):
        return row.iloc[0].to_dict()
    row = table[(table["vocabulary_a"] == b) & (table["vocabulary_b"] == a)].iloc[0].to_dict()
    row["only_in_a"], row["only_in_b"] = row["only_in_b"], row["only_in_a"]
    return row


def test_page_opens_on_the_runs_vocabulary_and_one_other(monkeypatch, runs_dir, vocab):
    names, own = vocab["names"], vocab["own"]
    expected = charts.default_selection(names, own)
    assert own in expected and len(expected) == 2
    at = open_page(monkeypatch, runs_dir)

    assert at.title[0].value == "Vocabularies side by side"
    assert [tab.label for tab in at.tabs] == list(charts.VIEWS.values())
    assert n_charts(at) == N_CHARTS["lengths"]  # only the open tab is drawn
    assert [s.value for s in at.subheader][-2:] == ["Token lengths", "Frequency against length"]
    assert param(at, "view") is None  # the first view is the default: not in the link
    assert not at.info and not at.error and not at.warning
    assert at.multiselect(key="voc_names").value == expected
    assert param(at, "vocabs") == ",".join(expected)
    assert f"{len(names)} vocabularies in this run" in caption(at, "vocabularies in this run")

    # The paper's numbers: one row per chosen vocabulary (from its summary), then the paper's.
    summary = table_with(at, SUMMARY_COLUMN)
    assert summary["vocabulary"].tolist() == [*expected, charts.PAPER_LABEL]
    for name, row in zip(expected, summary.itertuples()):
        s = vocab["reports"][name][1]
        assert row.tokens == s["vocab_size"]
        assert getattr(row, "_3") == pytest.approx(s["nucleotides_per_token"])  # nt per token (genome)
    regions_npt = vocab["summary"].set_index("vocabulary")["nucleotides_per_token"]
    assert summary[charts.SUMMARY_LABELS["nt_per_token_regions"]].iloc[0] == pytest.approx(regions_npt[expected[0]])

    assert drawn_count(at) == expected_drawn(vocab, expected)

    open_view(at, "gc")
    assert n_charts(at) == N_CHARTS["gc"] and param(at, "view") == "gc"
    assert "Token lengths" not in [s.value for s in at.subheader]
    assert all(f"{name}: " in caption(at, "Violins: GC") for name in expected)
    open_view(at, "cycles")
    assert n_charts(at) == N_CHARTS["cycles"] and param(at, "view") == "cycles"

    # The pair: counts as in comparison/shared.parquet, boundary agreement as in agreement.parquet.
    open_view(at, "pair")
    assert n_charts(at) == N_CHARTS["pair"] and param(at, "view") == "pair"
    a, b = at.selectbox(key="voc_pair_a").value, at.selectbox(key="voc_pair_b").value
    assert (a, b) == (expected[0], expected[1]) and param(at, "pair") == f"{a},{b}"
    shown, row = metrics(at), shared_row(vocab, a, b)
    assert shown["Shared tokens"] == f"{row['shared']:,}"
    assert shown[f"Only in {a}"] == f"{row['only_in_a']:,}" and shown[f"Only in {b}"] == f"{row['only_in_b']:,}"
    assert shown["Token Jaccard"] == f"{row['jaccard']:.3f}"
    agreement = vocab["agreement"]
    jaccard = agreement[(agreement["vocabulary_a"] == a) & (agreement["vocabulary_b"] == b)]["jaccard"].iloc[0]
    assert shown["Boundary agreement"] == f"{jaccard:.3f}"
    lists = [df.value for df in at.dataframe if f"frequency in {a}" in df.value.columns]  # shared, only A, only B
    assert [len(tokens) for tokens in lists] == [row["shared"], row["only_in_a"], row["only_in_b"]]

    # The first comparison region, segmented by each chosen vocabulary.
    open_view(at, "segmentation")
    assert n_charts(at) == N_CHARTS["segmentation"] and not metrics(at)  # the pair's metrics are gone
    first = vocab["regions"].iloc[0]
    label = charts.region_label(first["chromosome"], first["start"], first["end"])
    assert at.radio(key="voc_source").value == "region"
    assert at.selectbox(key="voc_region").value == 0
    assert f"1,000 nt ({label})" in caption(at, "top row: the nucleotides")
    stats = table_with(at, "cut_jaccard_with_first")
    assert stats["vocabulary"].tolist() == expected and (stats["nucleotides"] == 1000).all()
    assert at.slider(key="voc_window").value == (0, charts.DEFAULT_WINDOW)
    assert (param(at, "seq"), param(at, "region"), param(at, "span")) == ("region", "0", f"0-{charts.DEFAULT_WINDOW}")


def test_widgets_change_what_is_shown(monkeypatch, runs_dir, vocab):
    names = vocab["names"]
    at = open_page(monkeypatch, runs_dir)
    before = drawn_count(at)

    at.multiselect(key="voc_names").set_value(list(reversed(names)))
    rerun(at)
    assert param(at, "vocabs") == ",".join(names)  # kept in the run's order
    assert drawn_count(at) == expected_drawn(vocab, names) != before
    assert table_with(at, SUMMARY_COLUMN)["vocabulary"].tolist() == [*names, charts.PAPER_LABEL]
    open_view(at, "segmentation")
    assert table_with(at, "cut_jaccard_with_first")["vocabulary"].tolist() == names
    open_view(at, "lengths")
    assert "Left out (never used" in caption(at, "tokens drawn") or expected_drawn(vocab, names) == sum(
        int((~vocab["reports"][n][0]["is_special"]).sum()) for n in names)

    at.checkbox(key="voc_paper").uncheck()
    rerun(at)
    assert table_with(at, SUMMARY_COLUMN)["vocabulary"].tolist() == names

    a, b = names[-1], names[0]
    open_view(at, "pair")
    at.selectbox(key="voc_pair_a").set_value(a)
    at.selectbox(key="voc_pair_b").set_value(b)
    rerun(at)
    row, shown = shared_row(vocab, a, b), metrics(at)
    assert shown[f"Only in {a}"] == f"{row['only_in_a']:,}" and shown[f"Only in {b}"] == f"{row['only_in_b']:,}"
    assert param(at, "pair") == f"{a},{b}"

    third = vocab["regions"].iloc[2]
    open_view(at, "segmentation")
    assert param(at, "pair") == f"{a},{b}"  # a closed tab's choices stay in the link
    at.selectbox(key="voc_region").set_value(2)
    rerun(at)
    assert charts.region_label(third["chromosome"], third["start"], third["end"]) in caption(at, "top row")
    assert param(at, "region") == "2"
    at.slider(key="voc_window").set_range(40, 90)
    rerun(at)
    assert param(at, "span") == "40-90"

    open_view(at, "pair")  # back on the pair: its choice was kept
    assert (at.selectbox(key="voc_pair_a").value, at.selectbox(key="voc_pair_b").value) == (a, b)
    at.multiselect(key="voc_names").set_value([names[0]])
    rerun(at)
    assert "Choose two or more vocabularies" in at.info[0].value
    assert param(at, "pair") is None and param(at, "vocabs") == names[0]
    assert n_charts(at) == 0  # no pair chart
    assert not at.exception


def test_link_seeds_the_widgets(monkeypatch, runs_dir, vocab):
    names = vocab["names"]
    chosen = [names[-2], names[-1]]
    link = dict(vocabs=",".join(chosen), pair=f"{chosen[1]},{chosen[0]}", region="3", span="10-60")
    at = open_page(monkeypatch, runs_dir, view="pair", **link)
    assert at.multiselect(key="voc_names").value == chosen
    assert at.session_state[VIEW_KEY] == charts.VIEWS["pair"] and n_charts(at) == N_CHARTS["pair"]
    assert (at.selectbox(key="voc_pair_a").value, at.selectbox(key="voc_pair_b").value) == (chosen[1], chosen[0])
    at = open_page(monkeypatch, runs_dir, view="segmentation", **link)
    assert at.selectbox(key="voc_region").value == 3
    assert at.slider(key="voc_window").value == (10, 60)
    assert table_with(at, "cut_jaccard_with_first")["vocabulary"].tolist() == chosen

    # Values the run does not have fall back to the defaults.
    at = open_page(monkeypatch, runs_dir, vocabs="bpe_99999", pair="x,y", region="999", span="50-10", seq="nope",
                   view="nope")
    assert at.session_state[VIEW_KEY] == charts.VIEWS["lengths"] and param(at, "view") is None
    open_view(at, "segmentation")
    assert at.multiselect(key="voc_names").value == charts.default_selection(names, vocab["own"])
    assert at.selectbox(key="voc_region").value == 0
    assert at.slider(key="voc_window").value == (0, charts.DEFAULT_WINDOW)
    assert at.radio(key="voc_source").value == "region"


def test_pasted_sequence_is_segmented_or_refused_with_a_reason(monkeypatch, runs_dir, vocab):
    at = open_page(monkeypatch, runs_dir, seq="pasted", view="segmentation")
    assert at.radio(key="voc_source").value == "pasted"
    assert n_charts(at) == 0  # nothing pasted yet
    assert "Paste a DNA sequence" in caption(at, "Paste a DNA sequence")

    at.text_area(key="voc_paste").input(">mine\nacgtnnACGTTTGACC\nAAA")
    rerun(at)
    stats = table_with(at, "cut_jaccard_with_first")
    assert (stats["nucleotides"] == 19).all() and (stats["unk_tokens"] >= 2).all()
    assert n_charts(at) == N_CHARTS["segmentation"]
    assert "19 nt (pasted sequence)" in caption(at, "top row")
    open_view(at, "gc")
    open_view(at, "segmentation")  # the pasted sequence is still there
    assert "19 nt (pasted sequence)" in caption(at, "top row") and n_charts(at) == N_CHARTS["segmentation"]

    at.text_area(key="voc_paste").input("ACGTXACGT")
    rerun(at)
    assert "holds X (first at position 5)" in at.warning[0].value
    assert not [df for df in at.dataframe if "cut_jaccard_with_first" in df.value.columns]

    at.text_area(key="voc_paste").input("A" * (charts.MAX_PASTED + 1))
    rerun(at)
    assert f"paste at most {charts.MAX_PASTED:,} nt" in at.warning[0].value


def test_run_without_vocabularies_names_the_command(monkeypatch, tmp_path, tiny_run):
    runs = copy_run(tiny_run, tmp_path, drop=(run.VOCABULARIES_DIR,))
    at = open_page(monkeypatch, runs)
    assert "no vocabularies to compare" in at.info[0].value
    assert f"grover vocab compare --run {runs / 'tiny'}" in at.info[0].value
    assert not at.get("plotly_chart") and not at.tabs


@pytest.mark.parametrize(("missing", "view", "charts_left"), [
    ("agreement", "pair", 1),  # the pair shows without its boundary agreement
    ("summary", "cycles", 1),  # the 1-kb column and line stay empty
    ("regions", "segmentation", 0),  # no region to segment: the page asks for a pasted sequence
], ids=["agreement", "summary", "regions"])
def test_missing_comparison_table_is_named_and_the_page_goes_on(monkeypatch, tmp_path, tiny_run, missing, view,
                                                                 charts_left):
    name = f"{COMPARISON}/{missing}.parquet"
    runs = copy_run(tiny_run, tmp_path, drop=(name,))
    at = open_page(monkeypatch, runs, view=view)
    assert any(f"Did not find {name}" in i.value and "grover vocab compare --run" in i.value for i in at.info)
    assert n_charts(at) == charts_left
    if missing == "agreement":
        assert "Boundary agreement" not in metrics(at)
    if missing == "regions":
        assert at.radio(key="voc_source").value == "pasted"


def test_corrupted_artifacts_show_an_error_not_a_traceback(monkeypatch, tmp_path, tiny_run, vocab):
    names, own = vocab["names"], vocab["own"]
    runs = copy_run(tiny_run, tmp_path, corrupt=(f"{run.VOCABULARIES_DIR}/{own}/vocabulary_tokens.parquet",
                                                 f"{COMPARISON}/summary.parquet"))
    at = open_page(monkeypatch, runs)
    errors = [e.value for e in at.error]
    assert any(f"vocabularies/{own}" in e and "could not be read" in e for e in errors)
    assert any("comparison/summary.parquet" in e and "could not be read" in e for e in errors)
    left = [n for n in charts.default_selection(names, own) if n != own]
    assert table_with(at, SUMMARY_COLUMN)["vocabulary"].tolist() == [*left, charts.PAPER_LABEL]


def test_genome_that_moved_leaves_the_pasted_sequence(monkeypatch, tmp_path, tiny_run):
    runs = copy_run(tiny_run, tmp_path)
    manifest_path = runs / "tiny" / run.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["genome"]["fasta"] = str(tmp_path / "gone.fa")
    manifest_path.write_text(json.dumps(manifest))
    at = open_page(monkeypatch, runs, view="segmentation")
    assert any("is not here any more" in i.value and "gone.fa" in i.value for i in at.info)
    assert n_charts(at) == 0
    assert at.radio(key="voc_source").value == "pasted"
    at.text_area(key="voc_paste").input("ACGTACGTAC")
    rerun(at)
    assert n_charts(at) == N_CHARTS["segmentation"]
