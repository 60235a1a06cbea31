"""The run pipeline: genome -> BPE vocabulary -> pretrained model -> embeddings -> analyses.

``build_run`` turns any FASTA into a run folder (layout in ``analysis.run``); ``build_demo`` does the
same for the built-in synthetic demo genome, generating it first when missing. A run is built in a
temporary folder and renamed at the end, so a killed build never leaves half a run behind.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import save_file

import analysis.run as run_format
from analysis.projections import pc_property_correlations, pca_projection, umap_projection
from analysis.token_properties import token_property_table
from grover_core.atomic import atomic_path
from grover_core.bpe import BPEConfig, BPELearner
from grover_core.demo_genome import DemoGenomeConfig, write_demo_genome
from grover_core.embed import TokenEmbeddingConfig, token_embedding_means
from grover_core.genome import GenomeStats, iter_segments
from grover_core.model import build_model, count_parameters, model_config
from grover_core.pretrain import PretrainConfig, evaluate_masked_lm, pretrain, split_chromosomes
from grover_core.tokenized_genome import TokenizedGenome, write_tokenized_chromosomes
from grover_core.tokenizer import SPECIAL_TOKENS, build_bpe_tokenizer, save_tokenizer, special_token_mask, token_strings


@dataclass(frozen=True)
class RunConfig:
    """Everything a run does, with the built-in demo's settings as defaults (about 5 min on 2 cores)."""

    bpe: BPEConfig = field(default_factory=lambda: BPEConfig(cycles=600))  # GROVER's 600 cycles
    model_preset: str = "grover-tiny"
    model_overrides: dict = field(default_factory=dict)
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(
        steps=1000, batch_size=32, max_window_tokens=128, learning_rate=1e-3, warmup_steps=60))
    evaluation_windows: int = 1024  # held-out windows scored for masked-token accuracy
    embeddings: TokenEmbeddingConfig = field(default_factory=lambda: TokenEmbeddingConfig(max_windows=3000))
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    pc_components: int = 5  # leading PCs correlated with token properties (the paper's table)
    seed: int = 0

    @classmethod
    def tiny(cls) -> RunConfig:
        """Seconds-scale settings for tests: same stages, a small vocabulary and model."""
        return cls(bpe=BPEConfig(cycles=60), model_preset="grover-test",
                   pretrain=PretrainConfig(steps=30, batch_size=8, max_window_tokens=64, learning_rate=2e-3,
                                           warmup_steps=5, log_every=5),
                   evaluation_windows=64, embeddings=TokenEmbeddingConfig(max_windows=200), umap_n_neighbors=10)


@dataclass(frozen=True)
class DemoConfig:
    """The built-in demo: a synthetic genome and the run built on it."""

    genome: DemoGenomeConfig = field(default_factory=DemoGenomeConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def tiny(cls) -> DemoConfig:
        return cls(genome=DemoGenomeConfig.tiny(), run=RunConfig.tiny())


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("grover-lens", "torch", "transformers", "tokenizers", "numpy", "scikit-learn", "umap-learn"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda o: asdict(o) if dataclasses.is_dataclass(o) else str(o)))


class _Stages:
    """Prints one line per stage and records how long each took."""

    def __init__(self, names: list[str], progress: bool):
        self.names, self.progress, self.seconds = names, progress, {}

    def start(self, name: str):
        self._name, self._started = name, time.perf_counter()
        if self.progress:
            print(f"[{self.names.index(name) + 1}/{len(self.names)}] {name}", flush=True)

    def done(self):
        self.seconds[self._name] = round(time.perf_counter() - self._started, 2)


def build_run(fasta: str | Path, out_dir: str | Path, *, config: RunConfig = RunConfig(), name: str | None = None,
              annotations: dict[str, str] | None = None, progress: bool = True) -> Path:
    """Build a run folder from a FASTA genome and return its path.

    Stages: vocabulary (BPE + tokenized genome), pretraining, evaluation, embeddings, analysis.
    ``annotations`` (name -> file) are recorded in the manifest for later analyses.
    """
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our stage lines say what happens; no shard bars
    out_dir = Path(out_dir)
    stages = _Stages(["vocabulary", "pretraining", "evaluation", "embeddings", "analysis"], progress)
    torch.manual_seed(config.seed)
    artifacts: dict[str, dict] = {}
    with atomic_path(out_dir, is_dir=True) as tmp:
        # 1. Vocabulary: exact BPE over the whole genome; its final segmentation is the tokenized genome.
        stages.start("vocabulary")
        stats = GenomeStats()
        learner = BPELearner.from_segments(iter_segments(fasta, stats=stats), max_cycles=config.bpe.cycles)
        vocabulary = learner.learn(config.bpe, progress=progress)
        tokenizer = build_bpe_tokenizer(vocabulary)
        save_tokenizer(tokenizer, tmp / run_format.TOKENIZER_DIR, extra={
            "kind": "bpe", "config": asdict(config.bpe), "cycles": vocabulary.cycles,
            "merges": [list(m) for m in vocabulary.merges], "merge_counts": vocabulary.merge_counts,
            "genome": str(fasta)})
        write_tokenized_chromosomes(tmp / run_format.TOKENIZED_DIR, learner.iter_chromosomes(),
                                    id_offset=len(SPECIAL_TOKENS), vocab_size=len(tokenizer))
        del learner
        genome = TokenizedGenome.open(tmp / run_format.TOKENIZED_DIR)
        artifacts["tokenizer"] = {"path": run_format.TOKENIZER_DIR, "produced_by": "grover_core.bpe.BPELearner",
                                  "params": asdict(config.bpe),
                                  "description": "Hugging Face BPE tokenizer (AutoTokenizer.from_pretrained)"}
        artifacts["tokenized_genome"] = {"path": run_format.TOKENIZED_DIR, "produced_by": "grover_core.bpe.BPELearner",
                                         "params": {}, "description": "token ids and starts per chromosome (.npy)"}
        stages.done()

        # 2. Pretraining with GROVER's masking on the training chromosomes.
        stages.start("pretraining")
        shape = model_config(config.model_preset, **config.model_overrides)
        model = build_model(shape, tokenizer, seed=config.seed)
        result = pretrain(model, tokenizer, genome, config=config.pretrain,
                          log_path=tmp / run_format.TRAINING_LOG, progress=progress)
        model_dir = tmp / run_format.MODEL_DIR
        model.save_pretrained(str(model_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(model_dir))  # one folder: config, weights and tokenizer
        (model_dir / "grover_pretrain.json").write_text(json.dumps(
            {"preset": config.model_preset, "model": asdict(shape), "pretrain": asdict(config.pretrain)}, indent=2))
        artifacts["model"] = {"path": run_format.MODEL_DIR, "produced_by": "grover_core.pretrain.pretrain",
                              "params": _jsonable({"preset": config.model_preset, **asdict(config.pretrain)}),
                              "description": "BertForMaskedLM folder (AutoModelForMaskedLM.from_pretrained)"}
        artifacts["training_log"] = {"path": run_format.TRAINING_LOG, "produced_by": "grover_core.pretrain.pretrain",
                                     "params": {}, "description": "loss, learning rate, tokens/s per logged step"}
        stages.done()

        # 3. Held-out masked-token accuracy against the frequency-only baseline.
        stages.start("evaluation")
        train_chromosomes, held_out = split_chromosomes(genome, config.pretrain.held_out_chromosomes)
        evaluation = evaluate_masked_lm(
            model, tokenizer, genome, chromosomes=held_out,
            baseline_counts=genome.token_counts(chromosomes=train_chromosomes),
            windows=config.evaluation_windows, window_tokens=config.pretrain.max_window_tokens,
            masking=config.pretrain.masking, seed=config.seed + 1)
        (tmp / run_format.EVALUATION).write_text(json.dumps(evaluation, indent=2))
        artifacts["evaluation"] = {"path": run_format.EVALUATION,
                                   "produced_by": "grover_core.pretrain.evaluate_masked_lm",
                                   "params": {"windows": config.evaluation_windows, "chromosomes": held_out},
                                   "description": "held-out masked-token accuracy and perplexity vs frequency baseline"}
        stages.done()

        # 4. Per-token mean contextual embeddings at every layer.
        stages.start("embeddings")
        embeddings = token_embedding_means(model, tokenizer, genome, config=config.embeddings, progress=progress)
        save_file(embeddings, str(tmp / run_format.TOKEN_EMBEDDINGS))
        artifacts["token_embeddings"] = {"path": run_format.TOKEN_EMBEDDINGS,
                                         "produced_by": "grover_core.embed.token_embedding_means",
                                         "params": asdict(config.embeddings),
                                         "description": "layer_<i>: mean embedding per token id; count"}
        stages.done()

        # 5. Token properties, projections and the PC-property table.
        stages.start("analysis")
        strings = token_strings(tokenizer)
        special = special_token_mask(tokenizer)
        tokens = token_property_table(strings, frequencies=genome.token_counts(), special=special,
                                      embedding_counts=embeddings["count"])
        tokens.to_parquet(tmp / run_format.TOKENS, index=False)
        projections, correlations = project_tokens(tokens, embeddings, config=config, progress=progress)
        projections.to_parquet(tmp / run_format.TOKEN_PROJECTIONS, index=False)
        correlations.to_parquet(tmp / run_format.PC_CORRELATIONS, index=False)
        artifacts["tokens"] = {"path": run_format.TOKENS,
                               "produced_by": "analysis.token_properties.token_property_table",
                               "params": {}, "description": "one row per token: length, frequency, GC, AG, AC, CpG"}
        artifacts["token_projections"] = {"path": run_format.TOKEN_PROJECTIONS,
                                          "produced_by": "analysis.projections.umap_projection / pca_projection",
                                          "params": {"umap_n_neighbors": config.umap_n_neighbors,
                                                     "umap_min_dist": config.umap_min_dist, "umap_metric": "cosine",
                                                     "seed": config.seed},
                                          "description": "2-D token maps per layer and method"}
        artifacts["pc_correlations"] = {"path": run_format.PC_CORRELATIONS,
                                        "produced_by": "analysis.projections.pc_property_correlations",
                                        "params": {"n_components": config.pc_components},
                                        "description": "Spearman of leading PCs with token properties per layer"}
        stages.done()

        manifest = {
            "schema_version": run_format.SCHEMA_VERSION,
            "name": name or out_dir.name,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "producer": "grover_lens.pipeline.build_run",
            "versions": _versions(),
            "genome": {"fasta": str(fasta), **stats.as_dict(), "annotations": dict(annotations or {})},
            "vocabulary": {"kind": "bpe", "cycles": vocabulary.cycles, "vocab_size": len(tokenizer),
                           "mean_token_length": float(np.average(tokens["length"][~special],
                                                                 weights=tokens["frequency"][~special]))},
            "model": {"architecture": "BertForMaskedLM", "preset": config.model_preset,
                      "num_layers": shape.num_hidden_layers, "hidden_size": shape.hidden_size,
                      "num_attention_heads": shape.num_attention_heads, "n_parameters": count_parameters(model),
                      "max_window_tokens": shape.max_window_tokens},
            "training": {"steps": result.steps, "tokens_seen": result.tokens_seen,
                         "seconds": round(result.seconds, 1), "final_loss": result.final_loss,
                         "train_chromosomes": train_chromosomes, "held_out_chromosomes": held_out},
            "evaluation": {k: v for k, v in evaluation.items() if isinstance(v, (int, float))},
            "artifacts": artifacts,
            "stages": {stage: {"seconds": seconds} for stage, seconds in stages.seconds.items()},
            "config": _jsonable(config),
        }
        (tmp / run_format.MANIFEST).write_text(json.dumps(_jsonable(manifest), indent=2))
    return out_dir


def project_tokens(tokens: pd.DataFrame, embeddings: dict[str, np.ndarray], *, config: RunConfig,
                   progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(projections, pc_correlations)`` for every layer, over the tokens seen in context.

    Special tokens and tokens never seen by the embedding pass are left out of both tables.
    """
    from tqdm.auto import tqdm

    seen = tokens[(~tokens["is_special"]) & (tokens["embedding_count"] > 0)]
    ids = seen["token_id"].to_numpy()
    properties = seen.assign(frequency=np.log10(seen["frequency"].clip(lower=1)))
    layers = sorted(int(key.split("_")[1]) for key in embeddings if key.startswith("layer_"))
    projection_parts, correlation_parts = [], []
    for layer in tqdm(layers, desc="projections", unit="layer", disable=not progress):
        matrix = embeddings[f"layer_{layer}"][ids]
        pca_xy, _ = pca_projection(matrix, n_components=2, seed=config.seed)
        umap_xy = umap_projection(matrix, n_neighbors=config.umap_n_neighbors, min_dist=config.umap_min_dist,
                                  seed=config.seed)
        for method, xy in (("pca", pca_xy), ("umap", umap_xy)):
            projection_parts.append(pd.DataFrame({"layer": layer, "method": method, "token_id": ids,
                                                  "x": xy[:, 0].astype(np.float32), "y": xy[:, 1].astype(np.float32)}))
        table = pc_property_correlations(matrix, properties, columns=run_format.TOKEN_PROPERTIES,
                                         n_components=config.pc_components, seed=config.seed)
        correlation_parts.append(table.assign(layer=layer))
    correlations = pd.concat(correlation_parts, ignore_index=True)[list(run_format.PC_CORRELATION_COLUMNS)]
    return pd.concat(projection_parts, ignore_index=True), correlations


def build_demo(out_dir: str | Path, *, genome_dir: str | Path, config: DemoConfig = DemoConfig(),
               progress: bool = True) -> Path:
    """Build the built-in demo run: write the demo genome into ``genome_dir`` if missing, then ``build_run``."""
    genome_dir = Path(genome_dir)
    fasta = genome_dir / "genome.fa"
    config_file = genome_dir / "demo_genome.json"
    if not fasta.is_file() or not _same_genome_config(config_file, config.genome):
        if progress:
            print(f"writing the demo genome into {genome_dir}", flush=True)
        write_demo_genome(genome_dir, config=config.genome)
    annotations = {name: str(genome_dir / file) for name, file in (
        ("chromatin_states", "chromatin_states.bed"), ("repeats", "repeats.bed"),
        ("replication_timing", "replication_timing.bedGraph"), ("genes", "genes.bed"), ("tss", "tss.bed"),
        ("ctcf_sites", "ctcf_sites.bed"))}
    return build_run(fasta, out_dir, config=config.run, name=Path(out_dir).name, annotations=annotations,
                     progress=progress)


def _same_genome_config(config_file: Path, config: DemoGenomeConfig) -> bool:
    """True when the demo genome on disk was written with ``config`` (so it can be reused)."""
    if not config_file.is_file():
        return False
    written = json.loads(config_file.read_text())
    wanted = _jsonable(asdict(config))
    return all(written.get(key) == value for key, value in wanted.items())
