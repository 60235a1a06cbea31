"""The sequence inspector page run headless (AppTest) on the tiny pipeline run: input, predictions, map, bad states.

What the page draws inside its plotly charts is read from each chart's JSON spec; the numbers in its
captions and tables are checked against the run's own tokenizer and artifacts.
"""
from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis import run
from analysis.segmentation import segment
from dashboard.charts import inspector as charts
from tests.dashboard.test_app import open_app

PAGE = "views/inspector.py"
SEQUENCE = ("TTGACCGGTAACGTTAGCATGCAAATTTGGGCCCATATATCGCGATTACAGGATCCTTGAAGGCTAGCTAGGATCCAAGCTT"
            "GCATGCCTGCAGGTCGACTCTAGAGGATCCCCGGGTACCGAGCTCGAATTCACTGGCCGTCGTTTTACAACGTCGTGACTGG")


def inspector(monkeypatch, runs_dir: Path, **query: str):
    at = open_app(monkeypatch, runs_dir, **query)
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def enter(at, text: str):
    at.text_area(key="insp_text").set_value(text).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def caption(at, fragment: str) -> str:
    found = [c.value for c in at.caption if fragment in c.value]
    assert len(found) == 1, [c.value for c in at.caption]
    return found[0]


def chart_specs(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def values(data) -> np.ndarray:
    """A trace's array from the chart's JSON (plotly writes numpy arrays as base64 typed arrays)."""
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
    return np.asarray(data)


def table_with(at, column: str):
    return next(df.value for df in at.dataframe if column in df.value.columns)


@pytest.fixture(scope="module")
def tokenizer(tiny_run):
    from grover_core.model import load_model_and_tokenizer

    return load_model_and_tokenizer(tiny_run / run.MODEL_DIR)[1]


def test_empty_page_asks_for_a_sequence(monkeypatch, runs_dir):
    at = inspector(monkeypatch, runs_dir)
    assert at.title[0].value == "Sequence inspector"
    assert "Paste a sequence" in at.info[0].value
    assert at.text_area(key="insp_text").value == ""
    assert not at.get("plotly_chart")


def test_a_sequence_shows_tokens_predictions_and_the_map(monkeypatch, runs_dir, tiny_run, tokenizer):
    at = enter(inspector(monkeypatch, runs_dir), "  " + SEQUENCE.lower()[:80] + "\n" + SEQUENCE[80:] + "\n")
    expected = segment(tokenizer, SEQUENCE)
    shown = metrics(at)
    assert shown["Nucleotides"] == f"{len(SEQUENCE):,}" and shown["Tokens"] == f"{len(expected):,}"
    assert shown["[UNK] tokens (N)"] == "0"
    tokens = table_with(at, "length")
    assert tokens["token"].tolist() == expected["token"].tolist()
    assert tokens["start"].tolist() == expected["start"].tolist() and tokens["end"].tolist() == expected["end"].tolist()
    assert "genome_frequency" in tokens.columns

    predictions = table_with(at, "p_true")
    assert len(predictions) == len(expected)  # every token masked in turn
    assert predictions["position"].tolist() == list(range(1, len(expected) + 1))
    assert [f"prediction_{j}" for j in range(1, 6)] == [c for c in predictions.columns if c.startswith("prediction_")]
    assert predictions["in_top_k"].tolist() == (predictions["rank"] <= 5).tolist()
    assert shown["True token in the top 5"] == f"{100 * (predictions['rank'] <= 5).mean():.1f} %"
    assert "each masked token sees a 64-token window" in caption(at, "Each token masked in turn")

    strip, token_map = chart_specs(at)
    assert sum(len(values(trace["x"])) for trace in strip["data"][:2]) == len(expected)  # one bar per token
    projections = run.load_token_projections(tiny_run)
    last = run.layers_in(projections)[-1]
    n_points = int(((projections["layer"] == last) & (projections["method"] == "umap")).sum())
    assert len(values(token_map["data"][0]["x"])) == n_points
    distinct = expected["token_id"].nunique()
    assert len(values(token_map["data"][1]["x"])) == distinct
    assert caption(at, "vocabulary tokens drawn").startswith(f"{n_points:,} vocabulary tokens drawn in grey")
    assert f"of the sequence's {distinct:,} distinct" in caption(at, "vocabulary tokens drawn")
    assert at.query_params["seq"] in (SEQUENCE, [SEQUENCE])  # the link reopens the sequence


def test_widgets_change_what_is_shown(monkeypatch, runs_dir, tiny_run):
    at = enter(inspector(monkeypatch, runs_dir), SEQUENCE)
    at.slider(key="insp_k").set_value(2).run()
    predictions = table_with(at, "p_true")
    assert [c for c in predictions.columns if c.startswith("prediction_")] == ["prediction_1", "prediction_2"]
    assert "True token in the top 2" in metrics(at)
    assert at.query_params["k"] in ("2", ["2"])

    layers = run.layers_in(run.load_token_projections(tiny_run))
    at.select_slider(key="insp_layer").set_value(layers[0]).run()
    at.radio(key="insp_method").set_value("pca").run()
    assert not at.exception
    assert chart_specs(at)[1]["layout"]["title"]["text"].endswith(f"layer {layers[0]} · PCA · the sequence's tokens")
    assert f"at layer {layers[0]}," in caption(at, "vocabulary tokens drawn")


def test_link_parameters_seed_the_widgets(monkeypatch, runs_dir, tiny_run):
    layers = run.layers_in(run.load_token_projections(tiny_run))
    at = inspector(monkeypatch, runs_dir, seq=SEQUENCE[:60], k="3", layer=str(layers[0]), method="pca")
    assert at.text_area(key="insp_text").value == SEQUENCE[:60]
    assert at.slider(key="insp_k").value == 3
    assert at.select_slider(key="insp_layer").value == layers[0]
    assert at.radio(key="insp_method").value == "pca"
    assert metrics(at)["Nucleotides"] == "60"
    assert "the whole sequence is the context" in caption(at, "Each token masked in turn")


def test_example_button_fills_in_a_region_of_the_genome(monkeypatch, runs_dir):
    at = inspector(monkeypatch, runs_dir)
    button = at.button(key="insp_example")
    assert button.label.startswith("Use an example: chr") and "held-out chromosome" in button.help
    button.click().run()
    assert not at.exception
    assert len(at.text_area(key="insp_text").value) >= charts.EXAMPLE_NUCLEOTIDES
    assert len(at.get("plotly_chart")) == 2


def test_bad_sequences_are_refused_with_the_reason(monkeypatch, runs_dir):
    at = enter(inspector(monkeypatch, runs_dir), ">x\nACGTRRGT1ACGT\n")
    message = at.error[0].value
    assert "`R` at 5, 6" in message and "`1` at 9" in message
    assert not at.get("plotly_chart") and "seq" not in at.query_params
    enter(at, "A" * 2_001)
    assert "2,001 nucleotides" in at.error[0].value and "at most 2,000" in at.error[0].value
    assert not at.get("plotly_chart")


def test_fasta_uses_the_first_record_and_n_becomes_unk(monkeypatch, runs_dir):
    at = enter(inspector(monkeypatch, runs_dir), ">first region\nACGTTGCANNACGGT\nTTAGC\n>second\nGGGGGG\n")
    assert metrics(at)["Nucleotides"] == "20" and metrics(at)["[UNK] tokens (N)"] == "2"
    read = caption(at, "Read from")
    assert "FASTA record `first region`" in read and "the first of 2 records" in read
    assert "2 [UNK] positions are not predicted" in caption(at, "Each token masked in turn")
    predictions = table_with(at, "p_true")
    assert "[UNK]" not in set(predictions["token"])


def test_long_sequences_predict_a_movable_range(monkeypatch, runs_dir, tokenizer):
    long = (SEQUENCE * 12)[: charts.MAX_NUCLEOTIDES]
    n_tokens = len(segment(tokenizer, long))
    assert n_tokens > charts.MAX_PREDICTED_TOKENS
    at = enter(inspector(monkeypatch, runs_dir), long)
    predictions = table_with(at, "p_true")
    assert len(predictions) == charts.MAX_PREDICTED_TOKENS and predictions["position"].iloc[0] == 1
    assert f"tokens 1-400 of {n_tokens:,}" in caption(at, "Each token masked in turn")
    at.number_input(key="insp_first").set_value(n_tokens - charts.MAX_PREDICTED_TOKENS + 1).run()
    predictions = table_with(at, "p_true")
    assert predictions["position"].iloc[-1] == n_tokens and len(predictions) == charts.MAX_PREDICTED_TOKENS
    enter(at, long[:1_500])  # fewer tokens than the chosen start allows: it falls back to the first token
    assert table_with(at, "p_true")["position"].iloc[0] == 1


def test_uploaded_fasta_is_read_and_oversized_files_refused(monkeypatch, runs_dir):
    at = inspector(monkeypatch, runs_dir)
    at.file_uploader(key="insp_upload").set_value(("region.fa", b">up\nACGTACGTAC\n>two\nTT\n", "text/plain")).run()
    assert not at.exception
    assert metrics(at)["Nucleotides"] == "10"
    assert "the uploaded file `region.fa`, FASTA record `up`" in caption(at, "Read from")
    big = b">big\n" + b"A" * (charts.MAX_UPLOAD_MB * 1024 * 1024 + 10)
    at.file_uploader(key="insp_upload").set_value(("big.fa", big, "text/plain")).run()
    assert not at.exception
    assert f"up to {charts.MAX_UPLOAD_MB} MB" in at.error[0].value


def copy_run(tiny_run: Path, tmp_path: Path, *, without: tuple[str, ...] = (), garbage: tuple[str, ...] = ()) -> Path:
    runs = tmp_path / "runs"
    target = runs / "damaged"
    shutil.copytree(tiny_run, target, ignore=shutil.ignore_patterns("tokenized", "vocabularies"))
    for name in without:
        path = target / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in garbage:
        (target / name).write_bytes(b"this is not a parquet file")
    return runs


def test_missing_projections_name_the_command(monkeypatch, tmp_path, tiny_run):
    runs = copy_run(tiny_run, tmp_path, without=(run.TOKEN_PROJECTIONS,))
    at = enter(inspector(monkeypatch, runs), SEQUENCE)
    message = at.info[-1].value
    assert run.TOKEN_PROJECTIONS in message and "grover analyze" in message and "--only token_projections" in message
    assert len(at.get("plotly_chart")) == 1  # the predictions still show
    assert not at.button  # no tokenized genome in this copy: no example offered


def test_missing_model_names_the_command(monkeypatch, tmp_path, tiny_run):
    runs = copy_run(tiny_run, tmp_path, without=(run.MODEL_DIR,))
    at = enter(inspector(monkeypatch, runs), SEQUENCE)
    assert "model" in at.info[0].value and "grover demo --out" in at.info[0].value
    assert not at.get("plotly_chart")


def test_corrupted_projections_show_an_error(monkeypatch, tmp_path, tiny_run):
    runs = copy_run(tiny_run, tmp_path, garbage=(run.TOKEN_PROJECTIONS,))
    at = enter(inspector(monkeypatch, runs), SEQUENCE)
    assert any(run.TOKEN_PROJECTIONS in e.value and "could not be read" in e.value for e in at.error)
    assert re.search(r"grover analyze .* --only token_projections", at.error[-1].value)
