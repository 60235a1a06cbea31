"""The run pipeline: genome -> BPE vocabulary -> pretrained model -> embeddings -> analyses.

``build_run`` turns any FASTA into a run folder (layout in ``analysis.run``); ``build_demo`` does the
same for the built-in synthetic demo genome, generating it first when missing. A run is built in a
temporary folder and renamed at the end, so a killed build never leaves half a run behind.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import analysis.run as run_format
from grover_lens.analyze import (AnalysisConfig, AnnotationSpec, demo_annotations, jsonable, library_versions,
                                 run_analyses)
from grover_core.atomic import atomic_path
from grover_core.bpe import BPEConfig, BPELearner
from grover_core.demo_genome import DemoGenomeConfig, write_demo_genome
from grover_core.extract import ExtractionConfig, extract_embeddings
from grover_core.genome import GenomeStats, iter_segments
from grover_core.model import build_model, count_parameters, model_config
from grover_core.pretrain import MaskingConfig, PretrainConfig, evaluate_masked_lm, pretrain, split_chromosomes
from grover_core.tokenized_genome import TokenizedGenome, write_tokenized_chromosomes
from grover_core.tokenizer import SPECIAL_TOKENS, build_bpe_tokenizer, save_tokenizer


@dataclass(frozen=True)
class RunConfig:
    """Everything a run does, with the built-in demo's settings as defaults (about 5 min on 2 cores)."""

    bpe: BPEConfig = field(default_factory=lambda: BPEConfig(cycles=600))  # GROVER's 600 cycles
    model_preset: str = "grover-demo"
    model_overrides: dict = field(default_factory=dict)
    # Five minutes on 2 cores. Not GROVER's 2.2% masking (still ``grover pretrain``'s default): at 32
    # windows a step it labels about 90 tokens, too few for minutes of training to learn even the
    # unigram; BERT's 15% labels about 600. The locality warm start (first half of the steps) gets the
    # model attending to its neighbours within the budget. benchmarks/demo_pretraining.py compares.
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(
        steps=2400, batch_size=32, max_window_tokens=128, learning_rate=2e-3, warmup_steps=60,
        masking=MaskingConfig.bert(), locality_warmup_steps=1200))
    evaluation_windows: int = 1024  # held-out windows scored for masked-token accuracy
    # The demo genome is small enough to embed whole: every token occurrence, about 41k windows.
    embeddings: ExtractionConfig = field(default_factory=lambda: ExtractionConfig(
        max_windows=None, batch_size=64, reservoir_size=500))
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    # Vocabularies set beside the run's own on the Vocabularies page: BPE at other cycle counts (the
    # paper compared 100 to 5,000) and fixed non-overlapping k-mers (its baselines).
    compare_cycles: tuple[int, ...] = (100, 200, 400, 800, 1000)
    compare_kmers: tuple[int, ...] = (4, 6)
    compare_regions: int = 100  # genome regions of 1 kb each vocabulary segments
    seed: int = 0

    @classmethod
    def tiny(cls) -> RunConfig:
        """Seconds-scale settings for tests: same stages, a small vocabulary and model."""
        return cls(bpe=BPEConfig(cycles=60), model_preset="grover-test",
                   pretrain=PretrainConfig(steps=30, batch_size=8, max_window_tokens=64, learning_rate=2e-3,
                                           warmup_steps=5, log_every=5, masking=MaskingConfig.bert(),
                                           locality_warmup_steps=15),
                   evaluation_windows=64,
                   embeddings=ExtractionConfig(max_windows=None, batch_size=32, reservoir_size=50),
                   analysis=AnalysisConfig(umap_n_neighbors=10, n_clusters=5, window_projection_max=400,
                                           probe_folds=3, probe_min_class_count=5),
                   compare_cycles=(20, 120), compare_kmers=(3,), compare_regions=20)


@dataclass(frozen=True)
class DemoConfig:
    """The built-in demo: a synthetic genome and the run built on it."""

    genome: DemoGenomeConfig = field(default_factory=DemoGenomeConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def tiny(cls) -> DemoConfig:
        return cls(genome=DemoGenomeConfig.tiny(), run=RunConfig.tiny())


@dataclass
class _Analysed:
    """What the shared stages (evaluation, embeddings, analysis) return for the manifest."""

    train_chromosomes: list[str]
    held_out: list[str]
    evaluation: dict
    analyses: dict
    analysis_config: AnalysisConfig
    tokens: pd.DataFrame


def _evaluate_embed_analyse(tmp: Path, model, tokenizer, genome: TokenizedGenome, *, config: RunConfig,
                            annotations: tuple[AnnotationSpec, ...], stages: _Stages, artifacts: dict,
                            progress: bool) -> _Analysed:
    """The stages every run shares, whatever made its model: held-out masked-token evaluation beside
    the frequency baseline, the genome-wide extraction, and every registered analysis."""
    stages.start("evaluation")
    train_chromosomes, held_out = split_chromosomes(genome, config.pretrain.held_out_chromosomes)
    evaluation = evaluate_masked_lm(
        model, tokenizer, genome, chromosomes=held_out,
        baseline_counts=genome.token_counts(chromosomes=train_chromosomes), windows=config.evaluation_windows,
        window_tokens=min(config.pretrain.max_window_tokens, model.config.max_position_embeddings - 2),
        masking=config.pretrain.masking, seed=config.seed + 1)
    (tmp / run_format.EVALUATION).write_text(json.dumps(evaluation, indent=2))
    artifacts["evaluation"] = {"path": run_format.EVALUATION, "produced_by": "grover_core.pretrain.evaluate_masked_lm",
                               "params": {"windows": config.evaluation_windows, "chromosomes": held_out},
                               "description": "held-out masked-token accuracy and perplexity vs frequency baseline"}
    stages.done()

    stages.start("embeddings")
    extract_embeddings(model, tokenizer, genome, tmp / run_format.EMBEDDINGS_DIR, config=config.embeddings,
                       progress=progress)
    artifacts["embeddings"] = {"path": run_format.EMBEDDINGS_DIR, "produced_by": "grover_core.extract.extract_embeddings",
                               "params": asdict(config.embeddings),
                               "description": "token means, sampled occurrences per token, window embeddings"}
    stages.done()

    stages.start("analysis")
    analysis_config = dataclasses.replace(config.analysis, annotations=tuple(annotations), seed=config.seed)
    analyses = run_analyses(tmp, config=analysis_config, progress=progress)
    stages.done()
    return _Analysed(train_chromosomes, held_out, evaluation, analyses, analysis_config,
                     pd.read_parquet(tmp / run_format.TOKENS))


def _manifest(*, name: str, producer: str, fasta, genome_stats: dict, annotations, vocabulary: dict, model: dict,
              training: dict, done: _Analysed, artifacts: dict, stages: _Stages, config: RunConfig) -> dict:
    """The run's manifest.json: provenance of everything in the folder (layout: analysis.run)."""
    tokens = done.tokens
    ordinary = ~tokens["is_special"].to_numpy()
    return jsonable({
        "schema_version": run_format.SCHEMA_VERSION,
        "name": name,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "producer": producer,
        "versions": library_versions(),
        "genome": {"fasta": str(fasta), **genome_stats, "annotations": {spec.name: spec.path for spec in annotations}},
        "vocabulary": {**vocabulary, "mean_token_length": float(np.average(
            tokens["length"][ordinary], weights=tokens["frequency"][ordinary]))},
        "model": model,
        "training": {**training, "train_chromosomes": done.train_chromosomes, "held_out_chromosomes": done.held_out},
        "evaluation": {k: v for k, v in done.evaluation.items() if isinstance(v, (int, float))},
        "artifacts": artifacts,
        "analyses": done.analyses,
        "analysis_config": done.analysis_config,
        "stages": {stage: {"seconds": seconds} for stage, seconds in stages.seconds.items()},
        "config": config,
    })


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
              annotations: tuple[AnnotationSpec, ...] = (), progress: bool = True) -> Path:
    """Build a run folder from a FASTA genome and return its path.

    Stages: vocabulary (BPE + tokenized genome), pretraining, evaluation, embeddings (the
    genome-wide extraction), analysis (every registered analysis; those on annotations use
    ``annotations``).
    """
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our stage lines say what happens; no shard bars
    out_dir = Path(out_dir)
    stages = _Stages(["vocabulary", "pretraining", "evaluation", "embeddings", "analysis", "vocabularies"], progress)
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
                              "params": jsonable({"preset": config.model_preset, **asdict(config.pretrain)}),
                              "description": "BertForMaskedLM folder (AutoModelForMaskedLM.from_pretrained)"}
        artifacts["training_log"] = {"path": run_format.TRAINING_LOG, "produced_by": "grover_core.pretrain.pretrain",
                                     "params": {}, "description": "loss, learning rate, tokens/s per logged step"}
        stages.done()

        # 3-5. Held-out evaluation, the genome-wide extraction, every analysis.
        done = _evaluate_embed_analyse(tmp, model, tokenizer, genome, config=config, annotations=annotations,
                                       stages=stages, artifacts=artifacts, progress=progress)

        # 6. Other vocabularies of the same genome, for the side-by-side comparison.
        stages.start("vocabularies")
        compared = compare_vocabularies_stage(fasta, tmp / run_format.VOCABULARIES_DIR, run_tokenizer=tmp / run_format.TOKENIZER_DIR,
                                              run_cycles=vocabulary.cycles, config=config, progress=progress)
        artifacts["vocabularies"] = {"path": run_format.VOCABULARIES_DIR,
                                     "produced_by": "grover_lens.pipeline.compare_vocabularies_stage",
                                     "params": {"cycles": list(config.compare_cycles), "kmers": list(config.compare_kmers),
                                                "regions": config.compare_regions, "vocabularies": compared},
                                     "description": "per vocabulary: token table and summary; comparison tables"}
        stages.done()

        manifest = _manifest(
            name=name or out_dir.name, producer="grover_lens.pipeline.build_run", fasta=fasta, genome_stats=stats.as_dict(),
            annotations=annotations, vocabulary={"kind": "bpe", "cycles": vocabulary.cycles, "vocab_size": len(tokenizer)},
            model={"architecture": "BertForMaskedLM", "preset": config.model_preset,
                   "num_layers": shape.num_hidden_layers, "hidden_size": shape.hidden_size,
                   "num_attention_heads": shape.num_attention_heads, "n_parameters": count_parameters(model),
                   "max_window_tokens": shape.max_window_tokens},
            training={"steps": result.steps, "tokens_seen": result.tokens_seen, "seconds": round(result.seconds, 1),
                      "final_loss": result.final_loss},
            done=done, artifacts=artifacts, stages=stages, config=config)
        (tmp / run_format.MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out_dir


def build_run_from_model(model_path: str | Path, fasta: str | Path, out_dir: str | Path, *,
                         config: RunConfig = RunConfig(), annotations: tuple[AnnotationSpec, ...] = (),
                         untrained: bool = False, name: str | None = None, progress: bool = True) -> Path:
    """Build a run for an existing model (ours, a checkpoint, or the published GROVER from a local folder).

    Stages: tokenize the genome with the model's own tokenizer, evaluate on the held-out
    chromosomes, extract embeddings, run the analyses. With ``untrained=True`` the model's
    architecture is re-initialised at random (same vocabulary and shape): the baseline that shows
    what pretraining added, side by side on the Compare models page.
    """
    from transformers.utils import logging as transformers_logging

    from grover_core.model import load_model_and_tokenizer, model_config_from_bert
    from grover_core.tokenize_genome import tokenize_genome

    transformers_logging.disable_progress_bar()
    out_dir = Path(out_dir)
    stages = _Stages(["tokenize", "evaluation", "embeddings", "analysis"], progress)
    model, tokenizer = load_model_and_tokenizer(model_path)
    if untrained:
        model = build_model(model_config_from_bert(model.config), tokenizer, seed=config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    artifacts: dict[str, dict] = {}
    with atomic_path(out_dir, is_dir=True) as tmp:
        stages.start("tokenize")
        tokenizer.save_pretrained(str(tmp / run_format.TOKENIZER_DIR))
        tokenize_genome(fasta, tmp / run_format.TOKENIZER_DIR, tmp / run_format.TOKENIZED_DIR, progress=progress)
        genome = TokenizedGenome.open(tmp / run_format.TOKENIZED_DIR)
        # The genome's statistics were counted while tokenizing (no second pass over the FASTA).
        genome_stats = json.loads((tmp / run_format.TOKENIZED_DIR / "index.json").read_text())["genome_stats"]
        model.save_pretrained(str(tmp / run_format.MODEL_DIR), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp / run_format.MODEL_DIR))
        source = {"source_model": str(model_path), "untrained": untrained}
        artifacts["tokenizer"] = {"path": run_format.TOKENIZER_DIR, "produced_by": "the model's tokenizer",
                                  "params": source, "description": "the model's tokenizer, as saved by transformers"}
        artifacts["tokenized_genome"] = {"path": run_format.TOKENIZED_DIR,
                                         "produced_by": "grover_core.tokenize_genome.tokenize_genome",
                                         "params": {}, "description": "token ids and starts per chromosome (.npy)"}
        artifacts["model"] = {"path": run_format.MODEL_DIR, "produced_by": "grover_lens.pipeline.build_run_from_model",
                              "params": source, "description": "BertForMaskedLM folder"
                              + (" (random initialisation of the source's architecture)" if untrained else "")}
        stages.done()

        done = _evaluate_embed_analyse(tmp, model, tokenizer, genome, config=config, annotations=annotations,
                                       stages=stages, artifacts=artifacts, progress=progress)
        bert = model.config
        manifest = _manifest(
            name=name or out_dir.name, producer="grover_lens.pipeline.build_run_from_model", fasta=fasta,
            genome_stats=genome_stats,
            annotations=annotations, vocabulary={"kind": "from model", "vocab_size": len(tokenizer)},
            model={"architecture": "BertForMaskedLM", "preset": "untrained" if untrained else "loaded",
                   "source": str(model_path), "num_layers": bert.num_hidden_layers, "hidden_size": bert.hidden_size,
                   "num_attention_heads": bert.num_attention_heads, "n_parameters": count_parameters(model),
                   "max_window_tokens": bert.max_position_embeddings - 2},
            training={"steps": 0 if untrained else None, "source_model": str(model_path), "untrained": untrained},
            done=done, artifacts=artifacts, stages=stages, config=config)
        (tmp / run_format.MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out_dir


def compare_vocabularies_stage(fasta: str | Path, out_dir: Path, *, run_tokenizer: Path, run_cycles: int,
                               config: RunConfig, progress: bool = False) -> list[str]:
    """Write other vocabularies of the genome beside the run's, each with its report, and their comparison.

    Layout (``analysis.run.VOCABULARIES_DIR``)::

        bpe_<n>/ kmer_<k>/         tokenizer folder + vocabulary_tokens.parquet + vocabulary_summary.json
        comparison/<table>.parquet summary, agreement, shared, lengths, regions (analysis.segmentation)

    The run's own vocabulary is ``bpe_<run_cycles>`` (a copy of its tokenizer). Returns the names.
    """
    import shutil
    import tempfile

    from analysis.segmentation import compare_vocabulary_folders
    from analysis.vocabulary import vocabulary_report_for, write_vocabulary_report
    from grover_core.kmer import write_kmer_tokenizer
    from grover_core.tokenize_genome import tokenize_genome

    out_dir.mkdir(parents=True, exist_ok=True)
    folders: dict[str, Path] = {}
    cycles = sorted(set(config.compare_cycles) - {run_cycles})
    if cycles:
        learner = BPELearner.from_segments(iter_segments(fasta), max_cycles=max(cycles))
        learned = learner.learn(dataclasses.replace(config.bpe, cycles=max(cycles)), progress=False)
        del learner
        for count in cycles:
            if count > learned.cycles:
                continue  # the genome ran out of pairs to merge
            prefix = learned.prefix(count)
            folders[f"bpe_{count}"] = save_tokenizer(build_bpe_tokenizer(prefix), out_dir / f"bpe_{count}", extra={
                "kind": "bpe", "cycles": count, "merges": [list(m) for m in prefix.merges]})
    folders[f"bpe_{run_cycles}"] = out_dir / f"bpe_{run_cycles}"
    shutil.copytree(run_tokenizer, folders[f"bpe_{run_cycles}"], dirs_exist_ok=True)
    for k in config.compare_kmers:
        folders[f"kmer_{k}"] = write_kmer_tokenizer(out_dir / f"kmer_{k}", k)
    order = sorted(folders, key=lambda n: (n.startswith("kmer"), int(n.split("_")[1])))
    for name in order:
        if progress:
            print(f"  vocabulary: {name}", flush=True)
        with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
            tokenized = tokenize_genome(fasta, folders[name], Path(scratch) / "tokenized")
            table, summary = vocabulary_report_for(folders[name], tokenized, name=name)
        write_vocabulary_report(table, summary, folders[name])
    tables = compare_vocabulary_folders({n: folders[n] for n in order}, fasta=fasta,
                                        n_regions=config.compare_regions, region_length=1000, seed=config.seed)
    (out_dir / "comparison").mkdir(exist_ok=True)
    for table_name, table in tables.items():
        with atomic_path(out_dir / "comparison" / f"{table_name}.parquet") as tmp_file:
            table.to_parquet(tmp_file, index=False)
    return order


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
    return build_run(fasta, out_dir, config=config.run, name=Path(out_dir).name,
                     annotations=demo_annotations(genome_dir), progress=progress)


def _same_genome_config(config_file: Path, config: DemoGenomeConfig) -> bool:
    """True when the demo genome on disk was written with ``config`` (so it can be reused)."""
    if not config_file.is_file():
        return False
    written = json.loads(config_file.read_text())
    wanted = jsonable(asdict(config))
    return all(written.get(key) == value for key, value in wanted.items())
