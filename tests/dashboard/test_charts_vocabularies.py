"""Pure figure and table builders of the Vocabularies page, on small inline vocabularies with known answers."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from analysis.vocabulary import vocabulary_summary, vocabulary_token_table
from dashboard import figures
from dashboard.charts import vocabularies as charts


def _table(tokens: list[str], frequencies: list[int]) -> pd.DataFrame:
    return vocabulary_token_table(tokens, frequencies=frequencies)


@pytest.fixture
def small() -> pd.DataFrame:
    return _table(["A", "C", "G", "T", "AA", "TT"], [5, 1, 1, 5, 3, 3])


@pytest.fixture
def large() -> pd.DataFrame:
    return _table(["A", "C", "G", "T", "AA", "AAT", "CG"], [2, 1, 1, 2, 1, 4, 0])


def test_doctests_pass():
    result = doctest.testmod(charts)
    assert result.attempted > 10 and result.failed == 0


# --- names and selection ------------------------------------------------------------------------

@pytest.mark.parametrize(("names", "own", "expected"), [
    (["bpe_100", "bpe_200", "bpe_600", "bpe_1000", "kmer_4"], "bpe_600", ["bpe_200", "bpe_600"]),
    (["bpe_600", "bpe_1000", "kmer_4"], "bpe_600", ["bpe_600", "bpe_1000"]),
    (["bpe_600", "kmer_4", "kmer_6"], "bpe_600", ["bpe_600", "kmer_4"]),
    (["bpe_600"], "bpe_600", ["bpe_600"]),
    (["bpe_20", "kmer_3"], "bpe_999", ["bpe_20", "kmer_3"]),  # the run's own is missing: first and one other
    ([], "bpe_600", []),
], ids=["lower-cycles", "higher-cycles", "kmer", "alone", "own-missing", "none"])
def test_default_selection(names, own, expected):
    assert charts.default_selection(names, own) == expected


def test_own_vocabulary_and_names():
    assert charts.own_vocabulary({"vocabulary": {"kind": "bpe", "cycles": 60}}) == "bpe_60"
    assert charts.own_vocabulary({}) is None
    assert charts.own_vocabulary({"vocabulary": {"kind": "kmer", "cycles": 6}}) is None
    assert charts.kind_and_size("bpe_1000") == ("bpe", 1000)
    assert charts.parse_names("kmer_3,bpe_20, kmer_3") == ["kmer_3", "bpe_20"]
    assert charts.in_run_order(["kmer_3", "bpe_20", "nope"], ["bpe_20", "bpe_60", "kmer_3"]) == ["bpe_20", "kmer_3"]


def test_colours_are_stable_per_run_and_tints_lighter():
    colours = charts.vocabulary_colours(["bpe_20", "bpe_60", "kmer_3"])
    assert colours["bpe_60"] == charts.PALETTE[1]
    assert len(set(colours.values())) == 3
    assert charts.tint("#1F77B4", 0.0) == "rgb(31,119,180)"
    assert charts.tint("#1F77B4", 1.0) == "rgb(255,255,255)"


# --- summary --------------------------------------------------------------------------------------

def test_summary_table_takes_the_summaries_and_the_paper_row(small, large):
    summaries = {"small": vocabulary_summary(small, name="small"), "large": vocabulary_summary(large, name="large")}
    regions = pd.DataFrame({"vocabulary": ["large", "small"], "nucleotides_per_token": [1.5, 1.25]})
    table = charts.summary_table(summaries, segmentation=regions, include_paper=True)
    assert list(table.columns) == list(charts.SUMMARY_LABELS)
    assert list(table["vocabulary"]) == ["small", "large", charts.PAPER_LABEL]
    small_row = table.iloc[0]
    assert small_row["tokens"] == 6 and small_row["length_range"] == "1–2"
    assert small_row["nt_per_token"] == pytest.approx((5 + 1 + 1 + 5 + 6 + 6) / 18)
    assert small_row["nt_per_token_regions"] == 1.25
    assert small_row["starts_with_at"] == pytest.approx(4 / 6)
    assert not small_row["cg_token"] and table.iloc[1]["cg_token"]
    assert table.iloc[1]["unused_tokens"] == 1
    paper = table.iloc[2]
    assert (paper["tokens"], paper["kmers_5"], paper["kmers_6"], paper["nt_per_token"]) == (601, 213, 224, 4.07)
    assert charts.summary_table(summaries)["nt_per_token_regions"].isna().all()
    assert len(charts.summary_table(summaries)) == 2


# --- lengths, frequency, GC -----------------------------------------------------------------------

def test_length_histogram_has_two_panels_per_vocabulary(small, large):
    lengths = charts.length_table({"small": small, "large": large})
    small_rows = lengths[lengths["vocabulary"] == "small"]
    assert list(small_rows["n_tokens"]) == [4, 2]
    assert small_rows["occurrence_share"].tolist() == pytest.approx([12 / 18, 6 / 18])
    fig = charts.length_histogram_figure(lengths, colours={"small": "#111111", "large": "#222222"})
    assert len(fig.data) == 4
    assert [t.name for t in fig.data if t.showlegend] == ["small", "large"]
    assert fig.data[0].marker.color == "#111111"
    assert list(fig.data[1].y) == pytest.approx([12 / 18, 6 / 18])  # second panel: occurrences


def test_frequency_points_dodge_vocabularies_and_leave_zeros_off(small, large):
    points = charts.frequency_length_points({"small": small, "large": large})
    assert len(points) == 13  # special rows left out
    assert int((~points["drawn"]).sum()) == 1  # CG never occurs
    offset = points["x"] - points["length"]
    assert (offset[points["vocabulary"] == "small"] < 0).all() and (offset[points["vocabulary"] == "large"] > 0).all()
    assert offset.abs().max() < charts.DODGE / 2
    again = charts.frequency_length_points({"small": small, "large": large})
    assert np.array_equal(points["x"], again["x"])  # deterministic
    fig = charts.frequency_length_figure(points, {"small": {"spearman_length_frequency": 0.5}})
    scatter = [t for t in fig.data if isinstance(t, go.Scatter) and t.mode == "markers"]  # SVG: few points
    assert [len(t.x) for t in scatter] == [6, 6]
    assert scatter[0].name == "small (Spearman +0.50)" and scatter[1].name == "large"
    assert fig.layout.yaxis.type == "log"
    assert not [t for t in fig.data if isinstance(t, go.Scattergl)]
    webgl = charts.frequency_length_figure(points, webgl=True)
    assert [len(t.x) for t in webgl.data if isinstance(t, go.Scattergl)] == [6, 6]


def test_frequency_figure_uses_webgl_beyond_svg_max_points():
    n = figures.SVG_MAX_POINTS + 1
    table = pd.DataFrame({"token_id": np.arange(n), "token": ["A"] * n, "length": np.ones(n, dtype=np.int64),
                          "frequency": np.ones(n, dtype=np.int64), "is_special": np.zeros(n, dtype=bool)})
    fig = charts.frequency_length_figure(charts.frequency_length_points({"big": table}))
    assert [type(t).__name__ for t in fig.data] == ["Scattergl", "Scatter"]  # the tokens, then the medians
    assert len(fig.data[0].x) == n


def test_gc_summary_and_figure(small):
    points = charts.gc_points({"small": small})
    summary = charts.gc_summary(points).iloc[0]
    assert summary["mean_gc"] == pytest.approx(2 / 6)  # C and G only
    assert summary["occurrence_gc"] == pytest.approx(2 / 18)
    fig = charts.gc_figure(points, genome_gc=0.41)
    assert isinstance(fig.data[0], go.Violin) and len(fig.data[0].y) == 6
    assert fig.data[1].y[0] == pytest.approx(2 / 18)
    assert any(shape.y0 == 0.41 for shape in fig.layout.shapes)


# --- pair -----------------------------------------------------------------------------------------

def test_pair_tokens_lists_shared_and_unique(small, large):
    tokens, counts = charts.pair_tokens(small, large)
    assert counts == {"shared": 5, "only_in_a": 1, "only_in_b": 2, "jaccard": 5 / 8}
    assert tokens.loc[tokens["membership"] == "only in A", "token"].tolist() == ["TT"]
    assert tokens.loc[tokens["membership"] == "only in B", "token"].tolist() == ["CG", "AAT"]
    aa = tokens.set_index("token").loc["AA"]
    assert (aa["frequency_a"], aa["frequency_b"]) == (3, 1)
    assert math.isnan(tokens.set_index("token").loc["TT", "frequency_b"])
    by_length = charts.pair_by_length(tokens)
    assert by_length.to_dict("list") == {"length": [1, 2, 3], "shared": [4, 1, 0], "only in A": [0, 1, 0],
                                         "only in B": [0, 1, 1]}
    fig = charts.pair_figure(by_length, "small", "large")
    assert [t.name for t in fig.data] == ["shared", "only in small", "only in large"]
    assert fig.layout.barmode == "stack"


def test_pair_agreement_is_oriented_as_asked():
    agreement = pd.DataFrame([{"vocabulary_a": "x", "vocabulary_b": "y", "jaccard": 0.25, "share_of_a_in_b": 0.5,
                               "share_of_b_in_a": 0.3, "boundaries_a": 10, "boundaries_b": 17, "shared": 5}])
    assert charts.pair_agreement(agreement, "x", "y")["share_of_a_in_b"] == 0.5
    swapped = charts.pair_agreement(agreement, "y", "x")
    assert (swapped["share_of_a_in_b"], swapped["share_of_b_in_a"]) == (0.3, 0.5)
    assert (swapped["boundaries_a"], swapped["boundaries_b"], swapped["jaccard"]) == (17, 10, 0.25)
    assert charts.pair_agreement(agreement, "x", "z") is None
    assert charts.pair_agreement(None, "x", "y") is None


# --- cycles ---------------------------------------------------------------------------------------

def test_cycles_table_and_figure():
    summaries = {name: {"vocab_size": size, "nucleotides_per_token": npt, "mean_length": mean}
                 for name, size, npt, mean in [("kmer_4", 340, 4.0, 3.8), ("bpe_600", 601, 4.1, 4.9),
                                               ("bpe_100", 101, 2.9, 3.1)]}
    regions = pd.DataFrame({"vocabulary": ["bpe_100"], "nucleotides_per_token": [2.8]})
    table = charts.cycles_table(summaries, segmentation=regions)
    assert table["vocabulary"].tolist() == ["bpe_100", "bpe_600", "kmer_4"]
    assert table["size"].tolist() == [100, 600, 4]
    assert table["nt_per_token_regions"].iloc[0] == 2.8 and math.isnan(table["nt_per_token_regions"].iloc[1])
    fig = charts.cycles_figure(table, selected=["bpe_600"], own="bpe_600")
    genome = fig.data[0]
    assert list(genome.x) == [100, 600] and list(genome.y) == [2.9, 4.1]
    assert list(genome.marker.size) == [7, 13]  # the chosen one is larger
    assert len(fig.data) == 3
    assert [shape.y0 for shape in fig.layout.shapes] == [4.0]  # one k-mer reference line
    assert any("this run" in a.text for a in fig.layout.annotations)


# --- sequence and segmentation --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "sequence", "problem"), [
    (">seq1 test\nacgt\nNN ac\n", "ACGTNNAC", None),
    ("ACGRTY", "", "holds R, Y (first at position 4)"),
    ("", "", "Paste a DNA sequence"),
    ("A" * 11, "", "has 11 nt; paste at most 10 nt"),
], ids=["fasta", "iupac", "empty", "too-long"])
def test_clean_sequence(text, sequence, problem):
    got, why = charts.clean_sequence(text, max_length=10)
    assert got == sequence
    assert (why is None) if problem is None else (problem in why)


@pytest.mark.parametrize("text", ["", "5", "10-5", "-3-4", "a-b"])
def test_parse_span_refuses_bad_values(text):
    with pytest.raises(ValueError):
        charts.parse_span(text)


def _blocks() -> pd.DataFrame:
    rows = [("one", 0, "ACG", 5, 0, 3), ("one", 1, "TA", 6, 3, 5), ("one", 2, "[UNK]", 1, 5, 6),
            ("two", 0, "AC", 7, 0, 2), ("two", 1, "GTA", 8, 2, 5), ("two", 2, "[UNK]", 1, 5, 6)]
    table = pd.DataFrame(rows, columns=["vocabulary", "block", "token", "token_id", "start", "end"])
    return table.assign(length=table["end"] - table["start"])


def test_segmentation_stats():
    stats = charts.segmentation_stats(_blocks()).set_index("vocabulary")
    assert stats.loc["one", "tokens"] == 3 and stats.loc["one", "nucleotides"] == 6
    assert stats.loc["one", "nt_per_token"] == 2.0 and stats.loc["one", "unk_tokens"] == 1
    assert stats.loc["one", "cut_jaccard_with_first"] == 1.0
    # one cuts at {3, 5}, two at {2, 5}: one shared of three
    assert stats.loc["two", "cuts"] == 2 and stats.loc["two", "cut_jaccard_with_first"] == pytest.approx(1 / 3)


def test_segmentation_figure_aligns_blocks_on_the_nucleotides():
    fig = charts.segmentation_figure(_blocks(), "ACGTAN", colours={"one": "#000000", "two": "#FFFFFF"},
                                     offset=100, window=(1, 4), axis_title="chr1 position")
    sequence, one, two = fig.data
    assert list(sequence.base) == [100, 101, 102, 103, 104, 105] and list(sequence.text) == list("ACGTAN")
    assert sequence.marker.color[-1] == charts.OTHER_COLOUR  # N
    assert list(one.base) == [100, 103, 105] and list(one.x) == [3, 2, 1]
    assert list(one.text) == ["ACG", "TA", "[UNK]"]
    assert list(one.marker.color) == ["#000000", charts.tint("#000000"), charts.OTHER_COLOUR]  # alternating, UNK grey
    assert list(fig.layout.yaxis.categoryarray) == ["two", "one", charts.SEQUENCE_ROW]  # sequence on top
    assert list(fig.layout.xaxis.range) == [101, 104]
    assert fig.layout.xaxis.title.text == "chr1 position"


def test_segmentation_figure_takes_the_longest_pasted_sequence():
    sequence = "ACGT" * (charts.MAX_PASTED // 4)
    starts = np.arange(0, len(sequence), 2)
    blocks = pd.DataFrame({"vocabulary": "pairs", "block": np.arange(len(starts)), "token": "AC",
                           "token_id": 5, "start": starts, "end": starts + 2, "length": 2})
    fig = charts.segmentation_figure(blocks, sequence)
    assert len(fig.data[0].base) == charts.MAX_PASTED and len(fig.data[1].base) == charts.MAX_PASTED // 2
    assert fig.layout.xaxis.range is None  # no window: the whole sequence


def test_segmentation_figure_labels_only_blocks_near_the_window():
    fig = charts.segmentation_figure(_blocks(), "ACGTAN", window=(0, 1))  # labelled: positions -1 to 2
    sequence, one, two = fig.data
    assert list(sequence.text) == ["A", "C", "", "", "", ""]
    assert list(one.text) == ["ACG", "", ""] and list(two.text) == ["AC", "", ""]  # GTA starts at 2
    assert len(one.customdata) == 3  # every block keeps its hover


def test_length_histogram_draws_lines_for_many_vocabularies_and_drops_to_zero_in_gaps():
    gap = _table(["A", "C", "G", "T", "AAAA"], [1, 1, 1, 1, 1])  # no token of length 2 or 3
    tables = {f"v{i}": gap for i in range(charts.MAX_GROUPED_BARS + 1)}
    fig = charts.length_histogram_figure(charts.length_table(tables))
    assert all(isinstance(trace, go.Scatter) for trace in fig.data)
    assert list(fig.data[0].x) == [1, 2, 3, 4] and list(fig.data[0].y) == pytest.approx([0.8, 0, 0, 0.2])
    few = charts.length_histogram_figure(charts.length_table({"v0": gap}))
    assert all(isinstance(trace, go.Bar) for trace in few.data) and list(few.data[0].x) == [1, 4]
