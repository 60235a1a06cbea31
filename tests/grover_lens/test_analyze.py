"""The analysis registry and runner on runs whose right answers are planted, and the commands around it."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

import analysis.run as run_format
from grover_core.bpe import BPEConfig, learn_bpe
from grover_core.extract import Extraction, ExtractionConfig, extract_embeddings
from grover_core.genome import Segment, encode_nucleotides
from grover_core.model import build_model, model_config
from grover_core.tokenized_genome import TokenizedGenome, write_tokenized_genome
from grover_core.tokenizer import SPECIAL_TOKENS, build_bpe_tokenizer, save_tokenizer
from grover_lens.analyze import (ANALYSIS_NAMES, AnalysisConfig, AnnotationSpec, analysis_config_from_manifest,
                                 run_analyses)
from grover_lens.cli import _parse_annotation, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """A run folder on a genome of random background with identical copies of one 60-nt repeat unit.

    The repeat copies are annotated in a BED (with strand) and the GC-rich half of each chromosome in a
    chromatin-like BED; a random (untrained) model embeds it: tokens inside identical copies see
    identical contexts, so their occurrences agree far more than background tokens' do.
    """
    root = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(5)
    unit = "".join(rng.choice(list("ACGT"), size=60))
    sequences, repeats, states = {}, [], []
    for chromosome in ("chr1", "chr2", "chr3", "chr4"):
        parts, position = [], 0
        for block in range(40):
            gc_rich = block < 20
            p = [0.15, 0.35, 0.35, 0.15] if gc_rich else [0.35, 0.15, 0.15, 0.35]
            background = "".join(rng.choice(list("ACGT"), size=150, p=p))
            parts.append(background)
            states.append((chromosome, position, position + 150, "GCrich" if gc_rich else "ATrich"))
            position += 150
            parts.append(unit)
            repeats.append((chromosome, position, position + 60, "unit", 0, "+", "Planted"))
            states.append((chromosome, position, position + 60, "Rpts"))
            position += 60
        sequences[chromosome] = "".join(parts)
    segments = [Segment(name, 0, encode_nucleotides(seq)) for name, seq in sequences.items()]
    vocabulary, tokenized = learn_bpe(segments, config=BPEConfig(cycles=40))
    tokenizer = build_bpe_tokenizer(vocabulary)
    run_dir = root / "run"
    save_tokenizer(tokenizer, run_dir / run_format.TOKENIZER_DIR)
    write_tokenized_genome(run_dir / run_format.TOKENIZED_DIR, tokenized, id_offset=len(SPECIAL_TOKENS),
                           vocab_size=len(tokenizer))
    model = build_model(model_config("grover-test"), tokenizer, seed=0).eval()
    model.save_pretrained(str(run_dir / run_format.MODEL_DIR))
    tokenizer.save_pretrained(str(run_dir / run_format.MODEL_DIR))
    genome = TokenizedGenome.open(run_dir / run_format.TOKENIZED_DIR)
    extract_embeddings(model, tokenizer, genome, run_dir / run_format.EMBEDDINGS_DIR,
                       config=ExtractionConfig(window_tokens=32, batch_size=16, reservoir_size=40))
    pd.DataFrame(repeats).to_csv(root / "repeats.bed", sep="\t", header=False, index=False)
    pd.DataFrame(states).to_csv(root / "states.bed", sep="\t", header=False, index=False)
    config = AnalysisConfig(umap_n_neighbors=8, n_clusters=4, window_projection_max=200, probe_folds=4,
                            probe_min_class_count=5, annotations=(
                                AnnotationSpec("states", str(root / "states.bed")),
                                AnnotationSpec("repeats", str(root / "repeats.bed"), label_column=6,
                                               strand_aware=True)))
    (run_dir / run_format.MANIFEST).write_text(json.dumps({"schema_version": run_format.SCHEMA_VERSION,
                                                           "name": "planted", "artifacts": {}}))
    records = run_analyses(run_dir, config=config)
    return run_dir, records, sequences, unit


def test_every_analysis_writes_its_outputs_and_records_them(planted_run):
    run_dir, records, _, _ = planted_run
    assert set(records) == set(ANALYSIS_NAMES)
    manifest = run_format.load_manifest(run_dir)
    for name, record in manifest["analyses"].items():
        assert record["seconds"] >= 0 and record["produced_by"].startswith("grover_lens.analyze.")
        for output in record["outputs"]:
            assert (run_dir / output).is_file(), output
    # The manifest remembers the annotations, so `grover analyze RUN` reruns with the same ones.
    again = analysis_config_from_manifest(manifest)
    assert [a.name for a in again.annotations] == ["states", "repeats"]
    assert again.annotations[1].strand_aware and again.annotations[1].label_column == 6


def test_tokens_inside_the_planted_repeat_have_full_repeat_share(planted_run):
    run_dir, _, sequences, unit = planted_run
    tokens = run_format.load_tokens(run_dir)
    # The unit sits on + strands only: no token has a share on the minus side.
    assert tokens["repeats.share_Planted_minus"].fillna(0).eq(0).all()
    in_repeat = tokens[tokens["repeats.share_any"] >= 0.99]
    assert len(in_repeat) >= 2
    assert all(token in unit for token in in_repeat["token"])


def test_self_similarity_groups_put_the_planted_repeat_tokens_in_the_repeat_group(planted_run):
    run_dir, _, _, unit = planted_run
    tokens = run_format.load_tokens(run_dir).set_index("token_id")
    table = run_format.load_table(run_dir, run_format.SELF_SIMILARITY)
    groups = run_format.load_table(run_dir, run_format.SELF_SIMILARITY_GROUPS)
    last = int(table["layer"].max())
    repeat = groups[(groups.grouping == "repeat_localised") & (groups.value == "corrected") & (groups.layer == last)]
    in_repeat = tokens.index[tokens["repeats.share_any"] >= 0.5]
    assert all(tokens.loc[i, "token"] in unit for i in in_repeat)
    direct = table[(table.layer == last) & table.token_id.isin(in_repeat)]["corrected"]
    row = repeat.set_index("group").loc["repeat"]
    assert row["n_tokens"] == len(direct) >= 2 and row["mean"] == pytest.approx(direct.mean())
    baseline = run_format.load_table(run_dir, run_format.SELF_SIMILARITY_BASELINE)
    assert baseline["layer"].tolist() == sorted(table["layer"].unique())
    merged = table.merge(baseline, on="layer", suffixes=("", "_layer"))
    assert np.allclose(merged["corrected"], merged["self_similarity"] - merged["baseline_layer"])


def test_window_annotations_and_probes_see_the_planted_states(planted_run):
    run_dir, _, _, _ = planted_run
    windows = run_format.load_table(run_dir, run_format.WINDOW_ANNOTATIONS)
    assert set(windows["states"]) <= {"GCrich", "ATrich", "Rpts"}
    fractions = windows[[c for c in windows.columns if c.startswith("states.frac_")]].sum(axis=1)
    assert np.allclose(fractions, 1.0)  # the states tile the planted genome
    probes = run_format.load_table(run_dir, run_format.PROBE_SCORES)
    states = probes[probes.annotation == "states"]
    assert set(states.feature_set) == {"embedding", "kmer_baseline"}
    # GC-rich and AT-rich windows differ in composition: the k-mer baseline must separate them well.
    assert states[states.feature_set == "kmer_baseline"]["mcc"].iloc[0] > 0.5
    assert states["n_folds"].eq(4).all()


def test_clusters_profiles_and_enrichment_are_consistent(planted_run):
    run_dir, _, _, _ = planted_run
    clusters = run_format.load_table(run_dir, run_format.TOKEN_CLUSTERS)
    profiles = run_format.load_table(run_dir, run_format.CLUSTER_PROFILES)
    for (layer, method), part in clusters.groupby(["layer", "method"]):
        sizes = part["cluster"].value_counts().sort_index()
        mine = profiles[(profiles.layer == layer) & (profiles.method == method)].set_index("cluster")["n_tokens"]
        assert mine.sort_index().tolist() == sizes.tolist()
    enrichment = run_format.load_table(run_dir, run_format.CLUSTER_ENRICHMENT)
    assert enrichment["q_value"].dropna().between(0, 1).all()
    assert set(enrichment["annotation"]) >= {"repeats.share_any", "states.share_GCrich"}


def test_window_projections_cover_the_kept_windows(planted_run):
    run_dir, _, _, _ = planted_run
    projections = run_format.load_table(run_dir, run_format.WINDOW_PROJECTIONS)
    n_windows = len(Extraction.open(run_dir / run_format.EMBEDDINGS_DIR).windows)
    for (_, _), part in projections.groupby(["layer", "method"]):
        assert len(part) == min(n_windows, 200) and part["window_index"].is_unique
        assert np.isfinite(part[["x", "y"]].to_numpy()).all()


def test_analyses_without_annotations_are_skipped_with_a_reason(planted_run, tmp_path):
    run_dir, _, _, _ = planted_run
    records = run_analyses(run_dir, config=AnalysisConfig(), only=("window_annotations",))
    assert "no annotations" in records["window_annotations"]["skipped"]
    with pytest.raises(Exception, match="unknown analyses nope"):
        run_analyses(run_dir, config=AnalysisConfig(), only=("nope",))


def test_annotation_option_parsing(tmp_path):
    bed, signal = tmp_path / "r.bed", tmp_path / "t.bigWig"
    bed.write_text("chr1\t0\t10\tx\t0\t+\tSINE\n")
    signal.write_bytes(b"")
    spec = _parse_annotation(f"repeats={bed},column=6,stranded")
    assert (spec.name, spec.kind, spec.label_column, spec.strand_aware) == ("repeats", "labels", 6, True)
    assert _parse_annotation(f"timing={signal}").kind == "signal"
    with pytest.raises(Exception, match="unknown --annotation option"):
        _parse_annotation(f"x={bed},colour=red")
    with pytest.raises(Exception, match="annotation file not found"):
        _parse_annotation(f"x={tmp_path / 'missing.bed'}")


def test_analyze_command_reruns_one_analysis_with_the_runs_annotations(planted_run, capsys):
    run_dir, _, _, _ = planted_run
    before = run_format.load_table(run_dir, run_format.PROBE_SCORES)
    assert main(["analyze", str(run_dir), "--only", "probes", "--quiet"]) == 0
    assert "probe_scores.parquet" in capsys.readouterr().out
    pd.testing.assert_frame_equal(run_format.load_table(run_dir, run_format.PROBE_SCORES), before)
    assert main(["analyze", str(run_dir.parent / "not-a-run")]) == 2
    assert "grover demo" in capsys.readouterr().err


def test_embed_sequences_command_writes_spans_and_every_layer(planted_run, tmp_path, capsys):
    run_dir, _, sequences, unit = planted_run
    out = tmp_path / "emb.safetensors"
    sequence = sequences["chr1"][:300]
    assert main(["embed-sequences", str(run_dir / run_format.MODEL_DIR), "--sequence", sequence, unit,
                 "--out", str(out)]) == 0
    tensors = load_file(str(out))
    spans, hidden = tensors["s0.spans"], tensors["s0.hidden"]
    assert spans[0, 0] == 0 and spans[-1, 1] == 300 and (spans[1:, 0] == spans[:-1, 1]).all()
    assert hidden.shape[0] == 3 and hidden.shape[1] == spans.shape[0]
    assert tensors["s1.hidden"].shape[1] == tensors["s1.spans"].shape[0]
    assert main(["embed-sequences", str(run_dir / run_format.MODEL_DIR), "--out", str(out)]) == 2
    # The device: "auto" took the GPU where there is one; a named one is checked before anything is read.
    on_cpu = tmp_path / "cpu.safetensors"
    assert main(["embed-sequences", str(run_dir / run_format.MODEL_DIR), "--sequence", sequence, unit,
                 "--out", str(on_cpu), "--device", "cpu"]) == 0
    gpu = torch.cuda.is_available()  # then the first call ran in bf16 on it
    assert np.abs(load_file(str(on_cpu))["s0.hidden"] - hidden).max() <= (3e-2 * np.abs(hidden).max() if gpu else 1e-5)
    capsys.readouterr()
    assert main(["embed-sequences", str(run_dir / run_format.MODEL_DIR), "--sequence", sequence,
                 "--out", str(tmp_path / "x.safetensors"), "--device", "tpu"]) == 2
    assert "not a torch device" in capsys.readouterr().err


def test_vocab_compare_command_writes_its_tables(planted_run, tmp_path):
    run_dir, _, sequences, _ = planted_run
    fasta = tmp_path / "g.fa"
    fasta.write_text("".join(f">{name}\n{seq}\n" for name, seq in sequences.items()))
    assert main(["vocab", "kmer", "--k", "3", "--out", str(tmp_path / "v")]) == 0
    assert main(["vocab", "compare", f"bpe={run_dir / run_format.TOKENIZER_DIR}", f"k3={tmp_path / 'v' / 'kmer_3'}",
                 "--fasta", str(fasta), "--regions", "10", "--length", "300", "--out", str(tmp_path / "cmp")]) == 0
    summary = pd.read_parquet(tmp_path / "cmp" / "summary.parquet").set_index("vocabulary")
    assert summary.loc["k3", "nucleotides_per_token"] == pytest.approx(3.0)
    assert (tmp_path / "cmp" / "agreement.parquet").is_file() and (tmp_path / "cmp" / "shared.parquet").is_file()


def _cli(*args, torchrun=0):
    prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"] \
        if torchrun else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(prefix + ["-m", "grover_lens.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=REPO)


def test_embed_under_torchrun_merges_to_the_one_process_result(planted_run, tmp_path):
    run_dir, _, _, _ = planted_run
    common = ["embed", "--model", run_dir / run_format.MODEL_DIR, "--tokenized", run_dir / run_format.TOKENIZED_DIR,
              "--window-tokens", "32", "--batch-size", "8", "--reservoir-size", "40", "--quiet"]
    # The shards also hand their mapped pages back after every batch (a limit far below what they map).
    two = _cli(*common, "--mapped-memory-mb", "0.25", "--out", tmp_path / "two", torchrun=2)
    assert two.returncode == 0, two.stderr[-3000:]
    one = Extraction.open(run_dir / run_format.EMBEDDINGS_DIR)
    merged = Extraction.open(tmp_path / "two")
    assert merged.info["merged_from"] == 2 and merged.info["config"]["mapped_memory_mb"] == 0.25
    assert not (tmp_path / ".two.shards").exists()
    assert np.array_equal(merged.sample_keys(), one.sample_keys())
    assert np.array_equal(merged.samples(), one.samples())
    means_one, means_two = one.token_means(), merged.token_means()
    assert np.array_equal(means_one["count"], means_two["count"])
    assert np.allclose(means_one["layer_2"], means_two["layer_2"], atol=1e-5)
    assert np.allclose(np.asarray(one.window_arrays()[1], np.float32), np.asarray(merged.window_arrays()[1], np.float32),
                       atol=1e-3)


def test_build_from_an_existing_model_and_its_untrained_baseline(planted_run, tmp_path):
    from grover_lens.pipeline import RunConfig, build_run_from_model

    run_dir, _, sequences, _ = planted_run
    fasta = tmp_path / "g.fa"
    fasta.write_text("".join(f">{name}\n{seq}\n" for name, seq in sequences.items()))
    config = dataclasses.replace(RunConfig.tiny(), seed=3)  # the planted model is a seed-0 initialisation
    loaded = build_run_from_model(run_dir / run_format.MODEL_DIR, fasta, tmp_path / "runs" / "loaded", config=config,
                                  progress=False)
    baseline = build_run_from_model(run_dir / run_format.MODEL_DIR, fasta, tmp_path / "runs" / "random",
                                    config=config, untrained=True, progress=False)
    source = load_file(str(run_dir / run_format.MODEL_DIR / "model.safetensors"))
    same = load_file(str(loaded / run_format.MODEL_DIR / "model.safetensors"))
    other = load_file(str(baseline / run_format.MODEL_DIR / "model.safetensors"))
    name = "bert.embeddings.word_embeddings.weight"
    assert np.array_equal(same[name], source[name]) and not np.allclose(other[name], source[name])
    manifest = run_format.load_manifest(baseline)
    assert manifest["training"]["untrained"] and manifest["model"]["num_layers"] == 2
    skipped = {name for name, record in manifest["analyses"].items() if "skipped" in record}
    assert set(manifest["analyses"]) == set(ANALYSIS_NAMES) and skipped == {"window_annotations", "probes"}
    # The genome was tokenized by the model's own tokenizer: the same segmentation as the source run's.
    source_genome = TokenizedGenome.open(run_dir / run_format.TOKENIZED_DIR)
    genome = TokenizedGenome.open(loaded / run_format.TOKENIZED_DIR)
    assert np.array_equal(np.asarray(genome.ids("chr3")), np.asarray(source_genome.ids("chr3")))
    tokens = run_format.load_tokens(loaded)
    assert tokens["token"].tolist() == run_format.load_tokens(baseline)["token"].tolist()
