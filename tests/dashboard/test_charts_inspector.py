"""Unit tests of the sequence inspector's pure logic: input, masked copies, predictions, map (known answers).

The masked-prediction tests run a tiny real BERT (the ``grover-test`` preset) on a BPE tokenizer
learnt here from a few kilobases, so they take seconds and need no pipeline run.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from analysis.segmentation import segment
from dashboard.charts import inspector as charts


# --- reading the input ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, sequence, name, n_records", [
    (">chr1:1-8 my region\nacgt\nACGN\n>second\nTTTT\n", "ACGTACGN", "chr1:1-8 my region", 2),
    ("\n\n>only\n; a comment line\nAC GT\n", "ACGT", "only", 1),
    ("acgt tt\nGG\n", "ACGTTTGG", "", 0),
    ("", "", "", 0),
    (">empty header\n", "", "empty header", 1),
], ids=["fasta-two-records", "fasta-comment", "plain", "empty", "header-only"])
def test_parse_sequence_text(text, sequence, name, n_records):
    parsed = charts.parse_sequence_text(text)
    assert (parsed.sequence, parsed.name, parsed.n_records) == (sequence, name, n_records)
    assert parsed.is_fasta == (n_records > 0)


def test_invalid_letters_are_listed_with_one_based_positions():
    assert charts.invalid_letters("ACGTNacgtn") == {}
    assert charts.invalid_letters("ACRTY1R") == {"R": [3, 7], "Y": [5], "1": [6]}


def test_sequence_problems_name_the_reason_and_the_limit():
    assert charts.sequence_problems("ACGTN" * 10) == []
    assert "No sequence" in charts.sequence_problems("")[0]
    too_long = charts.sequence_problems("A" * 2_001)
    assert len(too_long) == 1 and "2,001 nucleotides" in too_long[0] and "at most 2,000" in too_long[0]
    assert charts.sequence_problems("A" * 11, max_nucleotides=10)[0].startswith("The sequence has 11 nucleotides")
    ambiguity, other = charts.sequence_problems("ACGRTT-Y")
    assert "`R` at 4" in ambiguity and "`Y` at 8" in ambiguity and "Replace them by N" in ambiguity
    assert "`-` at 7" in other and "not nucleotides" in other
    many = charts.sequence_problems("R" * 8)[0]
    assert "1, 2, 3, 4, 5 and 3 more" in many


def test_upload_problem_refuses_large_files_before_reading():
    assert charts.upload_problem(1024) is None
    assert charts.upload_problem(charts.MAX_UPLOAD_MB * 1024 * 1024) is None
    message = charts.upload_problem(3 * 1024 * 1024)
    assert "3.0 MB" in message and f"up to {charts.MAX_UPLOAD_MB} MB" in message


def test_example_region_takes_contiguous_tokens_from_the_middle():
    strings = ["[PAD]", "A", "CC", "GGG"]
    ids = np.array([1, 2, 3, 1, 2, 3, 1])
    starts = np.array([0, 1, 3, 6, 7, 20, 23])  # a gap (N run) between position 9 and 20
    sequence, start = charts.example_region(ids, starts, strings, length=4)
    assert (sequence, start) == ("GGGA", 20)  # from the middle (token 3): the gap restarts it at 20
    sequence, start = charts.example_region(ids, starts, strings, length=6)
    assert (sequence, start) == ("ACCGGG", 0)  # nothing long enough after the middle: from the start
    assert charts.example_region(ids, starts, strings, length=100) == ("", 0)
    assert charts.example_region(np.array([], dtype=int), np.array([], dtype=int), strings) == ("", 0)


# --- masked copies --------------------------------------------------------------------------------


def test_context_starts_centre_each_token_within_the_window():
    assert charts.context_starts(5, [0, 4], window_tokens=8).tolist() == [0, 0]
    # 10 tokens, window 4: centred (i - 2), kept inside 0..6.
    assert charts.context_starts(10, [0, 1, 2, 5, 8, 9], window_tokens=4).tolist() == [0, 0, 0, 3, 6, 6]


def test_tokens_per_view_shrinks_for_large_models():
    assert charts.tokens_per_view(900_000, 130) == charts.MAX_PREDICTED_TOKENS  # the demo model
    assert charts.tokens_per_view(87_000_000, 512) == 22  # BERT-base (GROVER) over full windows
    assert charts.tokens_per_view(87_000_000, 512, flops=1.0) == 1
    assert charts.tokens_per_view(10, 10, max_tokens=7) == 7


def test_masked_copies_mask_one_token_each():
    ids = [10, 11, 12, 13, 14, 15]
    copies, columns = charts.masked_copies(ids, [0, 3, 5], window_tokens=4, cls_id=2, sep_id=3, mask_id=4)
    assert copies.shape == (3, 6)  # window of 4 + [CLS] + [SEP]
    assert copies.tolist() == [[2, 4, 11, 12, 13, 3], [2, 11, 12, 4, 14, 3], [2, 12, 13, 14, 4, 3]]
    assert columns.tolist() == [1, 3, 4]
    assert all(copies[j, c] == 4 for j, c in enumerate(columns))
    short, columns = charts.masked_copies([10, 11], [1], window_tokens=8, cls_id=2, sep_id=3, mask_id=4)
    assert short.tolist() == [[2, 10, 4, 3]] and columns.tolist() == [2]
    with pytest.raises(ValueError, match="positions"):
        charts.masked_copies(ids, [6], window_tokens=4, cls_id=2, sep_id=3, mask_id=4)


@pytest.fixture(scope="module")
def tiny_model():
    """A BPE tokenizer learnt on a repetitive sequence and a fresh ``grover-test`` BERT (window 64 tokens)."""
    from grover_core.bpe import BPEConfig, learn_bpe
    from grover_core.genome import Segment, encode_nucleotides
    from grover_core.model import build_model, model_config
    from grover_core.tokenizer import build_bpe_tokenizer

    rng = np.random.default_rng(0)
    units = ["".join(rng.choice(list("ACGT"), size=23)) for _ in range(3)]
    text = "".join(units[j] for j in rng.integers(0, 3, size=200))
    vocabulary, _ = learn_bpe([Segment("chr1", 0, encode_nucleotides(text))], config=BPEConfig(cycles=20))
    tokenizer = build_bpe_tokenizer(vocabulary)
    model = build_model(model_config("grover-test"), tokenizer, seed=0).eval()
    return model, tokenizer, text


def _special(tokenizer) -> np.ndarray:
    from grover_core.tokenizer import special_token_mask

    return special_token_mask(tokenizer)


def test_masked_probabilities_match_one_copy_at_a_time(tiny_model):
    model, tokenizer, text = tiny_model
    segments = segment(tokenizer, text[:400])
    ids = segments["token_id"].tolist()
    assert len(ids) > 64  # longer than the window: centred contexts
    positions = [0, 1, 30, len(ids) - 1]
    special = _special(tokenizer)
    ids_kw = dict(cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, mask_id=tokenizer.mask_token_id)
    batched = charts.masked_token_probabilities(model, ids, positions, special=special, **ids_kw)
    one_by_one = charts.masked_token_probabilities(model, ids, positions, special=special, tokens_per_pass=1, **ids_kw)
    assert batched.shape == (4, len(tokenizer))
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-5)
    assert (batched[:, special] == 0).all()

    # Against a direct forward pass of the copy for position 30.
    copies, columns = charts.masked_copies(ids, [30], window_tokens=64, **ids_kw)
    with torch.inference_mode():
        logits = model(input_ids=torch.from_numpy(copies)).logits[0, columns[0]].float()
        logits[torch.from_numpy(special)] = -torch.inf
    np.testing.assert_allclose(batched[2], torch.softmax(logits, -1).numpy(), atol=1e-5)
    assert charts.masked_token_probabilities(model, ids, [], special=special, **ids_kw).shape == (0, len(tokenizer))


def test_top_k_table_ranks_the_true_token():
    segments = pd.DataFrame({"token": ["A", "CC", "G"], "token_id": [1, 2, 3], "start": [0, 1, 3], "end": [1, 3, 4]})
    strings = ["[MASK]", "A", "CC", "G"]
    probabilities = np.array([
        [0.0, 0.6, 0.3, 0.1],   # true A: rank 1
        [0.0, 0.5, 0.2, 0.3],   # true CC: rank 3
        [0.0, 0.4, 0.2, 0.4],   # true G ties with A (smaller id first): rank 2
    ])
    table = charts.top_k_table(segments, [0, 1, 2], probabilities, strings, k=2)
    assert table["position"].tolist() == [1, 2, 3]
    assert table["rank"].tolist() == [1, 3, 2]
    assert table["in_top_k"].tolist() == [True, False, True]
    assert table["p_true"].tolist() == pytest.approx([0.6, 0.2, 0.4])
    assert table["prediction_1"].tolist() == ["A", "A", "A"]
    assert table["prediction_2"].tolist() == ["CC", "G", "G"]
    assert table["p_2"].tolist() == pytest.approx([0.3, 0.3, 0.4])
    assert "prediction_3" not in table
    only_second = charts.top_k_table(segments, [1], probabilities[[1]], strings, k=1)
    assert only_second[["position", "token", "start", "end"]].iloc[0].tolist() == [2, "CC", 1, 3]
    summary = charts.prediction_summary(table, 2)
    assert summary == pytest.approx({"n": 3, "top1": 1 / 3, "top_k": 2 / 3, "mean_p_true": 0.4})
    assert charts.prediction_summary(table.iloc[:0], 2)["n"] == 0
    with pytest.raises(ValueError, match="k must lie"):
        charts.top_k_table(segments, [0], probabilities[[0]], strings, k=5)


def test_true_token_figure_draws_one_bar_per_token_over_its_span():
    table = pd.DataFrame({"position": [1, 2, 3], "token": ["A", "CC", "G"], "start": [0, 1, 3], "end": [1, 3, 4],
                          "p_true": [0.6, 0.2, 0.4], "rank": [1, 3, 2], "in_top_k": [True, False, True],
                          "prediction_1": ["A", "A", "A"], "p_1": [0.6, 0.5, 0.4]})
    fig = charts.true_token_figure(table, k=2, n_nucleotides=4)
    hits, misses, first = fig.data
    assert hits.name == "true token in top 2" and misses.name == "not in top 2"
    assert list(hits.x) == [0.5, 3.5] and list(hits.y) == [0.6, 0.4]
    assert list(misses.x) == [2.0] and list(misses.width) == pytest.approx([1.9])
    assert first.name == "model's first choice" and list(first.y) == [0.6, 0.5, 0.4]
    assert tuple(fig.layout.xaxis.range) == (0, 4)


# --- the sequence's tokens ------------------------------------------------------------------------


def test_sequence_token_counts_and_map_rows():
    segments = pd.DataFrame({"token": ["AT", "G", "AT", "[UNK]", "AT"], "token_id": [7, 5, 7, 1, 7]})
    counts = charts.sequence_token_counts(segments)
    assert counts.to_dict("list") == {"token_id": [7, 5, 1], "token": ["AT", "G", "[UNK]"], "count": [3, 1, 1],
                                      "first_position": [1, 2, 4]}
    points = pd.DataFrame({"token_id": [5, 6, 7], "token": ["G", "C", "AT"], "x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 2.0]})
    rows = charts.map_rows(points, counts)
    assert rows["count_in_sequence"].tolist() == [1, 0, 3]
    assert charts.sequence_token_counts(segments.iloc[:0]).empty


def test_highlight_sizes_grow_with_the_count():
    small, large = charts.HIGHLIGHT_SIZE_RANGE
    assert charts.highlight_sizes(np.array([1, 4, 9])).tolist() == pytest.approx([small, (small + large) / 2, large])
    assert charts.highlight_sizes(np.array([1, 1])).tolist() == [small, small]
    assert charts.highlight_sizes(np.array([])).size == 0


def test_sequence_map_figure_takes_100k_points():
    n = 100_000
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"token_id": np.arange(n), "token": ["A"] * n, "x": rng.normal(size=n), "y": rng.normal(size=n),
                         "count_in_sequence": np.where(np.arange(n) % 1000 == 0, 2, 0)})
    started = time.perf_counter()
    fig = charts.sequence_map_figure(rows, method="pca", title="t")
    assert time.perf_counter() - started < 5
    background, highlighted = fig.data
    assert type(background) is go.Scattergl and type(highlighted) is go.Scattergl  # WebGL for a large map
    assert len(background.x) == n and len(highlighted.x) == 100  # nothing sampled
    assert highlighted.name == "in the sequence" and fig.layout.xaxis.title.text == "PC 1"

    small = charts.sequence_map_figure(rows.iloc[:600], method="umap")
    assert [type(t) for t in small.data] == [go.Scatter, go.Scatter]  # a vocabulary's worth of points: SVG
    assert len(small.data[0].x) == 600 and len(small.data[1].x) == 1


def test_tokens_html_marks_each_token_and_escapes():
    segments = pd.DataFrame({"token": ["AC", "[UNK]", "G"], "start": [0, 2, 3], "end": [2, 3, 4]})
    text = charts.tokens_html(segments, "ACNG")
    assert text.count("<span") == 3
    assert 'title="#1 AC · nt 1-2"' in text and 'title="#2 [UNK] · nt 3-3"' in text
    assert ">AC</span>" in text and ">N</span>" in text and ">G</span>" in text
    assert "<script" not in charts.tokens_html(pd.DataFrame({"token": ["<script>"], "start": [0], "end": [8]}),
                                               "<script>")
