"""The Runs page (dashboard/views/home.py) with AppTest: every run of a runs folder, then the chosen run.

The runs folder is made in tmp_path from the session's tiny run: the run itself, a copy missing two
analyses, a run of an older schema and one whose manifest is garbage.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analysis import run
from dashboard import figures
from tests.dashboard.test_app import evaluation_of, open_app

RUNS_PAGE = "views/home.py"
MISSING = (run.PROBE_SCORES, run.WINDOW_ANNOTATIONS)  # removed from the partial copy


def copy_run(source: Path, dest: Path, *, without: tuple[str, ...] = ()) -> Path:
    """Copy a run's files (folders linked, to stay small), leaving out ``without``."""
    dest.mkdir(parents=True)
    for item in source.iterdir():
        if item.name in without:
            continue
        if item.is_dir():
            (dest / item.name).symlink_to(item.resolve(), target_is_directory=True)
        else:
            shutil.copy(item, dest / item.name)
    return dest


@pytest.fixture()
def runs(tmp_path, tiny_run) -> Path:
    """a_tiny (the run), b_partial (no probes, no window annotations), c_old (schema 1), d_broken (garbage)."""
    root = tmp_path / "runs"
    root.mkdir()
    (root / "a_tiny").symlink_to(tiny_run, target_is_directory=True)
    copy_run(tiny_run, root / "b_partial", without=MISSING)
    old = root / "c_old"
    old.mkdir()
    (old / run.MANIFEST).write_text(json.dumps({"schema_version": 1, "name": "old", "created_utc": "2025-01-01"}))
    broken = root / "d_broken"
    broken.mkdir()
    (broken / run.MANIFEST).write_bytes(b"\x00\xffnot json{")
    return root


def runs_table(at) -> pd.DataFrame:
    return next(df.value for df in at.dataframe if "to make missing analyses" in df.value.columns)


def analyses_table(at) -> pd.DataFrame:
    return next(df.value for df in at.dataframe if "make" in df.value.columns and "status" in df.value.columns)


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_runs_table_lists_every_run_with_provenance_and_analyses(monkeypatch, runs, tiny_run):
    manifest = json.loads((tiny_run / run.MANIFEST).read_text())
    evaluation = evaluation_of(tiny_run, manifest)
    at = open_app(monkeypatch, runs, run="a_tiny")

    assert at.title[0].value == "Runs"
    assert "4 runs found in the runs folder" in at.caption[0].value
    table = runs_table(at).set_index("run")
    assert list(table.index) == ["a_tiny", "b_partial", "c_old", "d_broken"]
    tiny = table.loc["a_tiny"]
    assert tiny["problem"] == ""
    assert tiny["created"] == manifest["created_utc"]
    model = manifest["model"]
    assert tiny["model"] == f"{model['preset']} · {model['num_layers']} layers × {model['hidden_size']}"
    vocabulary = manifest["vocabulary"]
    assert tiny["vocabulary"] == f"BPE · {vocabulary['cycles']} cycles · {vocabulary['vocab_size']} tokens"
    assert tiny["genome FASTA"] == manifest["genome"]["fasta"]
    assert tiny["genome (nt)"] == sum(manifest["genome"]["chromosomes"].values())
    assert tiny["annotations"] == ", ".join(manifest["genome"]["annotations"])
    assert tiny["held-out top-1"] == pytest.approx(evaluation["masked_top1_accuracy"])
    assert tiny["baseline top-1"] == pytest.approx(evaluation["frequency_baseline_top1_accuracy"])
    assert tiny["analyses"] == f"{len(figures.ANALYSIS_OUTPUTS)}/{len(figures.ANALYSIS_OUTPUTS)}"
    assert all(tiny[name] for name in figures.ANALYSIS_OUTPUTS) and tiny["to make missing analyses"] == ""

    partial = table.loc["b_partial"]
    assert not partial["probes"] and not partial["window_annotations"] and partial["clusters"]
    assert partial["analyses"] == f"{len(figures.ANALYSIS_OUTPUTS) - 2}/{len(figures.ANALYSIS_OUTPUTS)}"
    for name in ("window_annotations", "probes"):
        assert f"grover analyze {runs / 'b_partial'} --only {name}" in partial["to make missing analyses"]

    assert "schema version 1" in table.loc["c_old", "problem"] and table.loc["c_old", "created"] == "2025-01-01"
    assert "could not be read" in table.loc["d_broken", "problem"]
    warning = at.warning[0].value
    assert "2 of 4 runs cannot be opened" in warning and "c_old" in warning and "d_broken" in warning
    no_exception(at)


def test_details_of_the_chosen_run(monkeypatch, runs_dir, tiny_run):
    manifest = json.loads((tiny_run / run.MANIFEST).read_text())
    evaluation = evaluation_of(tiny_run, manifest)
    at = open_app(monkeypatch, runs_dir)

    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Vocabulary size"] == str(manifest["vocabulary"]["vocab_size"])
    assert metrics["Masked top-1 accuracy"] == f"{100 * evaluation['masked_top1_accuracy']:.1f} %"
    assert metrics["Frequency baseline top-1"] == f"{100 * evaluation['frequency_baseline_top1_accuracy']:.1f} %"
    assert str(manifest["model"]["num_layers"]) in metrics["Layers × hidden size"]
    assert at.header[0].value == f"Run · {manifest.get('name', tiny_run.name)}"
    artifacts = next(df.value for df in at.dataframe if "produced_by" in df.value.columns)
    assert set(artifacts["artifact"]) == set(manifest["artifacts"])
    assert artifacts["present"].all()

    analyses = analyses_table(at).set_index("analysis")
    assert list(analyses.index) == list(figures.ANALYSIS_OUTPUTS)
    assert (analyses["status"] == "present").all() and (analyses["make"] == "").all()
    for name, record in manifest["analyses"].items():
        assert analyses.loc[name, "seconds"] == pytest.approx(record["seconds"])
        assert analyses.loc[name, "command"] == record["command"]
        assert analyses.loc[name, "produced_by"] == record["produced_by"]
        assert json.loads(analyses.loc[name, "params"]) == record["params"]
    assert any(f"{len(analyses)} of {len(analyses)} analyses present" in c.value for c in at.caption)
    assert {s.value for s in at.subheader} >= {"Artifacts", "Analyses", "Pipeline stages", "Versions"}
    assert [b.proto.label for b in at.get("download_button")] == ["Download manifest.json"]
    assert at.selectbox(key="run_choice").value == tiny_run.name
    assert at.query_params["run"] in (tiny_run.name, [tiny_run.name])  # the link reopens this run
    no_exception(at)


def test_choosing_another_run_shows_its_details_and_the_commands_for_what_it_lacks(monkeypatch, runs):
    at = open_app(monkeypatch, runs, run="a_tiny")
    assert (analyses_table(at)["status"] == "present").all()
    at.selectbox(key="run_choice").set_value("b_partial").run()
    no_exception(at)
    assert any(f"Run folder `{runs / 'b_partial'}`" in c.value for c in at.caption)
    analyses = analyses_table(at).set_index("analysis")
    for name in ("window_annotations", "probes"):
        assert analyses.loc[name, "status"] == "incomplete (missing " + dict(
            window_annotations=run.WINDOW_ANNOTATIONS, probes=run.PROBE_SCORES)[name] + ")"
        assert analyses.loc[name, "make"] == f"grover analyze {runs / 'b_partial'} --only {name}"
    assert analyses.loc["tokens", "status"] == "present"
    artifacts = next(df.value for df in at.dataframe if "produced_by" in df.value.columns)
    assert artifacts["present"].all()  # the pipeline's artifacts are all there; the analyses are not
    assert at.query_params["run"] in ("b_partial", ["b_partial"])


@pytest.mark.parametrize(
    ("name", "kind", "text"),
    [("c_old", "warning", "schema version 1"), ("d_broken", "error", "could not be read")],
    ids=["older-schema", "garbage-manifest"],
)
def test_a_run_that_cannot_be_opened_shows_the_problem_not_a_crash(monkeypatch, runs, name, kind, text):
    at = open_app(monkeypatch, runs, run=name)
    no_exception(at)
    messages = [m.value for m in getattr(at, kind)]
    assert any(f"`{runs / name}` cannot be opened" in m and text in m for m in messages), messages
    assert len(runs_table(at)) == 4  # the other runs are still listed
    assert not at.metric


def test_a_folder_typed_in_the_sidebar_is_listed(monkeypatch, tmp_path, tiny_run):
    empty = tmp_path / "empty"
    empty.mkdir()
    at = open_app(monkeypatch, empty, run=str(tiny_run))
    table = runs_table(at)
    assert list(table["run"]) == [f"{tiny_run.name} (typed path)"] and table["folder"][0] == str(tiny_run)
    assert "0 runs found" in at.caption[0].value and "typed in the sidebar" in at.caption[0].value
    assert {m.label for m in at.metric} >= {"Vocabulary size"}


def test_evaluation_json_fills_the_table_when_the_manifest_has_none_and_a_damaged_one_does_not_crash(
        monkeypatch, tmp_path, tiny_run):
    root = tmp_path / "runs"
    manifest = json.loads((tiny_run / run.MANIFEST).read_text())
    evaluation = manifest.pop("evaluation", None) or run.load_evaluation(tiny_run)
    for name, evaluation_bytes in (("good", json.dumps(evaluation).encode()), ("bad", b"\x00garbage")):
        folder = copy_run(tiny_run, root / name, without=(run.MANIFEST, run.EVALUATION))
        (folder / run.MANIFEST).write_text(json.dumps(manifest))
        (folder / run.EVALUATION).write_bytes(evaluation_bytes)
    at = open_app(monkeypatch, root, run="bad")
    no_exception(at)
    table = runs_table(at).set_index("run")
    assert table.loc["good", "held-out top-1"] == pytest.approx(evaluation["masked_top1_accuracy"])
    assert pd.isna(table.loc["bad", "held-out top-1"])
    assert {m.label: m.value for m in at.metric}["Masked top-1 accuracy"] == "—"


def test_details_show_the_accuracy_on_hidden_tokens_beside_its_baseline(monkeypatch, runs_dir, tiny_run):
    evaluation = run.load_evaluation(tiny_run)
    at = open_app(monkeypatch, runs_dir)
    text = "\n".join(m.value for m in at.markdown)
    expected = (f"top-1 {figures.format_percent(evaluation['mask_only_top1_accuracy'])} (baseline "
                f"{figures.format_percent(evaluation['frequency_baseline_mask_only_top1_accuracy'])})")
    assert "Hidden ([MASK]) tokens only" in text and expected in text
