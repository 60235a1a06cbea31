import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

import analysis.run as run_format
import grover_lens.pipeline as pipeline
from grover_core.genome import iter_segments
from grover_core.tokenized_genome import TokenizedGenome


def test_manifest_records_provenance(tiny_run):
    manifest = run_format.load_manifest(tiny_run)
    assert manifest["schema_version"] == run_format.SCHEMA_VERSION
    assert set(manifest["stages"]) == {"vocabulary", "pretraining", "evaluation", "embeddings", "analysis",
                                       "vocabularies"}
    for name, artifact in manifest["artifacts"].items():
        assert (tiny_run / artifact["path"]).exists(), name
        assert artifact["produced_by"]
    assert manifest["versions"]["torch"] == torch.__version__
    assert set(manifest["genome"]["annotations"]) >= {"chromatin_states", "repeats", "replication_timing"}
    assert manifest["config"]["bpe"]["cycles"] == pipeline.RunConfig.tiny().bpe.cycles
    assert manifest["training"]["held_out_chromosomes"] == ["chr2"]
    # Every registered analysis ran and recorded its outputs, parameters and the model it describes.
    from grover_lens.analyze import ANALYSIS_NAMES

    assert set(manifest["analyses"]) == set(ANALYSIS_NAMES)
    fingerprint = manifest["analyses"]["tokens"]["model_fingerprint"]
    for name, record in manifest["analyses"].items():
        assert record["model_fingerprint"] == fingerprint and record["params"]["annotations"], name
        assert all((tiny_run / output).is_file() for output in record["outputs"]), name


def test_model_folder_loads_with_auto_classes(tiny_run):
    model_dir = tiny_run / run_format.MODEL_DIR
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForMaskedLM.from_pretrained(str(model_dir), local_files_only=True)
    assert (model_dir / "model.safetensors").is_file()
    assert model.config.vocab_size == len(tokenizer)
    out = model(**tokenizer(["ACGTACGTTTGACA"], return_tensors="pt"), output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1


def test_tokenized_genome_is_what_the_tokenizer_gives(tiny_run):
    manifest = run_format.load_manifest(tiny_run)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_run / run_format.TOKENIZER_DIR), local_files_only=True)
    genome = TokenizedGenome.open(tiny_run / run_format.TOKENIZED_DIR)
    checked = 0
    for segment in iter_segments(manifest["genome"]["fasta"]):
        ids, starts = genome.ids(segment.chromosome), np.asarray(genome.starts(segment.chromosome))
        first = int(np.searchsorted(starts, segment.start))
        last = int(np.searchsorted(starts, segment.start + segment.codes.size))
        sequence = "".join("ACGT"[c] for c in segment.codes)
        assert tokenizer(sequence, add_special_tokens=False)["input_ids"] == ids[first:last].tolist()
        checked += 1
        if checked == 6:
            break
    assert checked == 6


def test_token_table_counts_match_the_tokenized_genome(tiny_run):
    tokens = run_format.load_tokens(tiny_run)
    genome = TokenizedGenome.open(tiny_run / run_format.TOKENIZED_DIR)
    assert (tokens["frequency"].to_numpy() == genome.token_counts()).all()
    assert tokens.loc[~tokens.is_special, "token"].str.fullmatch("[ACGT]+").all()


def test_a_failed_build_leaves_nothing_behind(tiny_genome_dir, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("killed during embeddings")

    monkeypatch.setattr(pipeline, "extract_embeddings", explode)
    out = tmp_path / "runs" / "broken"
    with pytest.raises(RuntimeError, match="killed"):
        pipeline.build_run(tiny_genome_dir / "genome.fa", out, config=pipeline.RunConfig.tiny(), progress=False)
    assert not out.exists()
    assert list((tmp_path / "runs").iterdir()) == []
