import json

import numpy as np
import pytest

import analysis.run as run_format
from analysis.run import (RunNotFoundError, find_runs, layers_in, load_evaluation, load_manifest,
                          load_pc_correlations, load_token_embeddings, load_token_projections, load_tokens)


def test_find_runs_lists_run_folders(runs_dir, tiny_run, tmp_path):
    assert find_runs(runs_dir) == [tiny_run]
    assert find_runs(tiny_run) == [tiny_run]
    assert find_runs(tmp_path / "nowhere") == []


def test_tables_follow_the_schema(tiny_run):
    manifest = load_manifest(tiny_run)
    tokens = load_tokens(tiny_run)
    assert tuple(tokens.columns[:len(run_format.TOKEN_COLUMNS)]) == run_format.TOKEN_COLUMNS
    # Then the annotation shares: <annotation>.share_<label>, each a share in [0, 1] (NaN: never seen).
    shares = [c for c in tokens.columns if ".share_" in c]
    assert {c.split(".")[0] for c in shares} == {"chromatin_states", "repeats"}
    values = tokens[shares].to_numpy()
    never_seen = (tokens["frequency"] == 0).to_numpy()
    assert np.isnan(values[never_seen]).all() and not np.isnan(values[~never_seen]).any()
    assert ((values[~never_seen] >= 0) & (values[~never_seen] <= 1)).all()
    assert len(tokens) == manifest["vocabulary"]["vocab_size"]
    projections = load_token_projections(tiny_run)
    assert tuple(projections.columns) == run_format.PROJECTION_COLUMNS
    layers = layers_in(projections)
    assert layers == list(range(manifest["model"]["num_layers"] + 1))
    seen = tokens[(~tokens.is_special) & (tokens.embedding_count > 0)]
    for (layer, method), group in projections.groupby(["layer", "method"]):
        assert method in run_format.PROJECTION_METHODS
        assert sorted(group.token_id) == sorted(seen.token_id)
    correlations = load_pc_correlations(tiny_run)
    assert tuple(correlations.columns) == run_format.PC_CORRELATION_COLUMNS
    assert correlations["spearman"].between(-1, 1).all()
    embeddings = load_token_embeddings(tiny_run)
    assert embeddings["layer_0"].shape == (len(tokens), manifest["model"]["hidden_size"])
    assert (embeddings["count"] == tokens["embedding_count"].to_numpy()).all()
    assert 0 <= load_evaluation(tiny_run)["masked_top1_accuracy"] <= 1


def test_not_a_run_names_the_command(tmp_path):
    with pytest.raises(RunNotFoundError, match="grover demo"):
        load_manifest(tmp_path)
    with pytest.raises(RunNotFoundError, match="Did not find tokens.parquet"):
        load_tokens(tmp_path)


def test_newer_schema_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": run_format.SCHEMA_VERSION + 1}))
    with pytest.raises(ValueError, match="Upgrade GROVER Lens"):
        load_manifest(tmp_path)


def test_older_schema_names_the_rebuild_command(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(ValueError, match="schema version 1.*Rebuild it with `grover demo"):
        load_manifest(tmp_path)


def test_a_missing_analysis_artifact_names_its_command(tiny_run, tmp_path):
    with pytest.raises(RunNotFoundError, match=f"grover analyze {tmp_path} --only probes"):
        run_format.load_table(tmp_path, run_format.PROBE_SCORES)
    with pytest.raises(RunNotFoundError, match="grover embed"):
        run_format.artifact_path(tmp_path, run_format.TOKEN_EMBEDDINGS)
