"""The ``grover`` command.

    grover demo-genome --out data/demo_genome      write the synthetic demo genome and annotations
    grover demo --out runs/demo                    build the built-in demo run (genome if missing)
    grover build genome.fa --out runs/mine         build a run from any FASTA or 2bit genome
    grover build genome.fa --model M --out runs/m  analyse an existing model (ours, GROVER's) on a genome
                                                   (--untrained: its architecture at random init, a baseline)
    grover vocab learn genome.fa --cycles 100 600 --out vocabularies/ [--tokenized]
                                                   learn BPE once, export each cycle count
    grover vocab kmer --k 4 5 6 [--overlapping] --out vocabularies/
                                                   fixed k-mer vocabularies (the paper's baselines)
    grover tokenize genome.2bit vocabularies/bpe_600 --out tokenized/
                                                   any tokenizer folder over a genome, streaming
    grover pretrain --tokenized T --tokenizer V --out runs/m [--preset grover-base] [--steps N]
                                                   pretrain (resumes from runs/m/checkpoints; torchrun for DDP)
    grover eval runs/m/model --tokenized T         held-out masked-token accuracy vs frequency baseline
    grover vocab report runs/demo/tokenizer runs/demo/tokenized [--out report/]
                                                   vocabulary summary and per-token table
    grover vocab compare bpe100=V1 bpe600=V2 kmer6=V3 --fasta genome.fa --out cmp/
                                                   how vocabularies cut the same regions
    grover vocab compare --run runs/demo           the run's vocabularies/ folder (Vocabularies page)
    grover embed runs/demo                         genome-wide extraction into runs/demo/embeddings
                                                   (resumable; torchrun splits windows across ranks)
    grover embed --model M --tokenized T --out E   the same for any model folder and tokenized genome
    grover embed-sequences MODEL --fasta seqs.fa --out emb.safetensors
                                                   every layer's embedding of every token of given sequences
    grover analyze runs/demo [--only probes] [--annotation states=states.bed ...]
                                                   the registered analyses (``grover analyze --list``)
    grover task build --run runs/demo [--tss BED] [--peaks BED] [--table NAME=PATH ...]
                                                   fine-tuning task tables (Prom300, PromScan, CTCF, yours)
    grover finetune --run runs/demo [--model NAME=PATH ...] [--task NAME ...]
                                                   fine-tune on every task beside the TF-IDF baseline
                                                   (builds the demo tasks first when the run has none)
    grover nextkmer --run runs/demo [--cycles 100 600] [--kmers 4 6] [--steps N]
                                                   next-k-mer prediction across vocabularies (the paper's
                                                   vocabulary choice): pretrain a small model per vocabulary

Bad input ends with one line naming the problem (exit status 2), not a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from grover_core.errors import GroverInputError

DEFAULT_GENOME_DIR = Path("data/demo_genome")


def _cmd_demo_genome(args) -> None:
    from grover_core.demo_genome import DemoGenomeConfig, write_demo_genome

    config = DemoGenomeConfig.tiny(seed=args.seed) if args.tiny else DemoGenomeConfig(seed=args.seed)
    paths = write_demo_genome(args.out, config=config)
    for kind, path in paths.items():
        print(f"{kind:20s} {path}")


def _cmd_demo(args) -> None:
    from grover_lens.pipeline import DemoConfig, build_demo

    config = DemoConfig.tiny() if args.tiny else DemoConfig()
    if args.seed is not None:
        config = dataclasses.replace(config, genome=dataclasses.replace(config.genome, seed=args.seed))
    out = build_demo(args.out, genome_dir=args.genome_dir, config=config, progress=not args.quiet)
    print(f"demo run written to {out}")


def _cmd_build(args) -> None:
    from grover_lens.pipeline import RunConfig, build_run

    _require_file(args.fasta)
    config = RunConfig.tiny() if args.tiny else RunConfig()
    if args.cycles is not None:
        config = dataclasses.replace(config, bpe=dataclasses.replace(config.bpe, cycles=args.cycles))
    annotations = tuple(_parse_annotation(a) for a in args.annotation or ())
    if args.model is not None:
        from grover_lens.pipeline import build_run_from_model

        out = build_run_from_model(args.model, args.fasta, args.out, config=config, annotations=annotations,
                                   untrained=args.untrained, progress=not args.quiet)
    else:
        if args.untrained:
            raise GroverInputError("--untrained re-initialises a given model: use it with --model.")
        out = build_run(args.fasta, args.out, config=config, annotations=annotations, progress=not args.quiet)
    print(f"run written to {out}")


def _cmd_vocab_learn(args) -> None:
    from grover_core.bpe import BPEConfig, BPELearner
    from grover_core.genome import GenomeStats, iter_segments
    from grover_core.tokenized_genome import write_tokenized_chromosomes
    from grover_core.tokenizer import SPECIAL_TOKENS, build_bpe_tokenizer, save_tokenizer

    _require_file(args.fasta)
    cycles = sorted(set(args.cycles))
    if cycles[0] < 1:
        raise GroverInputError(f"--cycles must be positive whole numbers, got {cycles[0]}.")
    stats = GenomeStats()
    chromosomes = set(args.chromosomes) if args.chromosomes else None
    # Learn once up to the largest count: a smaller vocabulary is a prefix of a larger one.
    learner = BPELearner.from_segments(iter_segments(args.fasta, chromosomes=chromosomes, stats=stats),
                                       max_cycles=cycles[-1])
    vocabulary = learner.learn(BPEConfig(cycles=cycles[-1], min_pair_count=args.min_pair_count),
                               progress=not args.quiet)
    print(f"genome: {stats.acgt_nucleotides:,} A/C/G/T nucleotides in {stats.segments:,} runs, "
          f"{stats.other_nucleotides:,} other letters (boundaries)")
    for count in cycles:
        if count > vocabulary.cycles:
            print(f"only {vocabulary.cycles} merges were possible; skipping {count} cycles", file=sys.stderr)
            continue
        prefix = vocabulary.prefix(count)
        tokenizer = build_bpe_tokenizer(prefix)
        out = save_tokenizer(tokenizer, Path(args.out) / f"bpe_{count}", extra={
            "kind": "bpe", "cycles": count, "merges": [list(m) for m in prefix.merges],
            "merge_counts": prefix.merge_counts, "genome": str(args.fasta), "genome_stats": stats.as_dict()})
        print(f"bpe {count:>5} cycles -> {out}")
        if args.tokenized and count == vocabulary.cycles:
            # The learner ends with the genome segmented by the largest vocabulary: write it as is.
            tokenized = write_tokenized_chromosomes(out / "tokenized", learner.iter_chromosomes(),
                                                    id_offset=len(SPECIAL_TOKENS), vocab_size=len(tokenizer))
            print(f"tokenized genome ({learner.total_tokens:,} tokens) -> {tokenized}")


def _cmd_vocab_kmer(args) -> None:
    from grover_core.kmer import write_kmer_tokenizer

    for k in sorted(set(args.k)):
        name = f"kmer_{k}{'_overlapping' if args.overlapping else ''}"
        out = write_kmer_tokenizer(Path(args.out) / name, k, overlapping=args.overlapping)
        print(f"{k}-mer {'overlapping' if args.overlapping else 'non-overlapping'} -> {out}")


def _cmd_tokenize(args) -> None:
    from grover_core.tokenize_genome import tokenize_genome

    _require_file(args.genome)
    out = tokenize_genome(args.genome, args.tokenizer, args.out,
                          chromosomes=set(args.chromosomes) if args.chromosomes else None, progress=not args.quiet)
    print(f"tokenized genome -> {out}")


def _open_tokenized(path: str):
    from grover_core.tokenized_genome import INDEX, TokenizedGenome

    if not (Path(path) / INDEX).is_file():
        raise GroverInputError(
            f"no tokenized genome in {path}. Make one with `grover tokenize GENOME TOKENIZER --out {path}` "
            "or `grover vocab learn GENOME --tokenized`.")
    return TokenizedGenome.open(path)


def _parse_overrides(pairs: list[str]) -> dict:
    """``["hidden_size=256", "num_hidden_layers=6"]`` -> dict with numbers parsed."""
    overrides = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise GroverInputError(f"--set takes FIELD=VALUE, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def _cmd_pretrain(args) -> None:
    from grover_core.distributed import setup_distributed, teardown_distributed
    from grover_core.model import build_model, count_parameters, model_config
    from grover_core.pretrain import PretrainConfig, pretrain
    from grover_core.tokenizer import load_tokenizer

    genome = _open_tokenized(args.tokenized)
    tokenizer = load_tokenizer(args.tokenizer)
    shape = model_config(args.preset, **_parse_overrides(args.set))
    config = PretrainConfig(
        steps=args.steps, batch_size=args.batch_size, gradient_accumulation_steps=args.accumulation,
        max_window_tokens=min(args.window, shape.max_window_tokens), learning_rate=args.lr,
        warmup_steps=args.warmup, held_out_chromosomes=tuple(args.held_out or ()), split=args.split,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep, compile=args.compile,
        seed=args.seed, log_every=args.log_every, locality_warmup_steps=args.locality_warmup,
        locality_bias=args.locality_bias, masking=_masking(args))
    dist = setup_distributed()
    try:
        out = Path(args.out)
        model = build_model(shape, tokenizer, seed=args.seed)
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "pretrain_config.json").write_text(json.dumps(
                {"preset": args.preset, "model": dataclasses.asdict(shape), "pretrain": dataclasses.asdict(config),
                 "tokenized": str(args.tokenized), "tokenizer": str(args.tokenizer),
                 "world_size": dist.world_size, "parameters": count_parameters(model)}, indent=2))
        result = pretrain(model, tokenizer, genome, config=config, log_path=out / "training_log.jsonl",
                          checkpoint_dir=out / "checkpoints", progress=not args.quiet, dist=dist)
        if dist.is_main:
            from grover_core.atomic import atomic_path

            with atomic_path(out / "model", is_dir=True) as tmp:
                model.save_pretrained(str(tmp), safe_serialization=True)
                tokenizer.save_pretrained(str(tmp))
            resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
            print(f"trained {result.steps} steps{resumed}, {result.tokens_seen:,} tokens, final loss "
                  f"{result.final_loss:.4f} -> {out / 'model'}")
    finally:
        teardown_distributed(dist)


def _cmd_eval(args) -> None:
    from grover_core.model import load_model
    from grover_core.pretrain import PretrainConfig, evaluate_masked_lm, split_regions
    from grover_core.tokenizer import load_tokenizer

    genome = _open_tokenized(args.tokenized)
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    model = load_model(args.model, tokenizer=tokenizer)
    split = PretrainConfig(held_out_chromosomes=tuple(args.held_out or ()), split=args.split, seed=args.seed)
    train, held = split_regions(genome, split)
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    for name, begin, end in train:
        counts += np.bincount(np.asarray(genome.ids(name)[begin:end]), minlength=len(tokenizer))[: len(tokenizer)]
    result = evaluate_masked_lm(model, tokenizer, genome, chromosomes=held, baseline_counts=counts,
                                windows=args.windows, masking=_masking(args),
                                seed=args.seed + 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from grover_core.atomic import atomic_write_text

        atomic_write_text(args.out, text)


def _cmd_vocab_report(args) -> None:
    from analysis.vocabulary import format_vocabulary_report, vocabulary_report_for, write_vocabulary_report

    tokenizer_dir, tokenized_dir = Path(args.tokenizer), Path(args.tokenized)
    for path in (tokenizer_dir, tokenized_dir):
        if not path.is_dir():
            raise GroverInputError(f"folder not found: {path}. Give a tokenizer folder and a tokenized-genome folder "
                                   "(`grover vocab learn --tokenized` or `grover tokenize` writes one).")
    table, summary = vocabulary_report_for(tokenizer_dir, tokenized_dir, name=args.name)
    print(format_vocabulary_report(summary))
    if args.out:
        paths = write_vocabulary_report(table, summary, args.out)
        print("written: " + ", ".join(str(p) for p in paths.values()))


def _extraction_config(args):
    from grover_core.extract import ExtractionConfig

    return ExtractionConfig(window_tokens=args.window_tokens, max_windows=args.max_windows,
                            chromosomes=tuple(args.chromosomes or ()),
                            regions=str(Path(args.regions).resolve()) if args.regions else None,
                            batch_size=args.batch_size,
                            reservoir_size=args.reservoir_size, window_embeddings=not args.no_window_embeddings,
                            seed=args.seed, checkpoint_every=args.checkpoint_every,
                            checkpoint_seconds=args.checkpoint_seconds, dtype=args.dtype,
                            mapped_memory_mb=args.mapped_memory_mb)


def _cmd_embed(args) -> None:
    import shutil

    import analysis.run as run_format
    from grover_core.distributed import setup_distributed, teardown_distributed
    from grover_core.extract import ExtractionShard, extract_embeddings, merge_extractions
    from grover_core.model import load_model
    from grover_core.tokenizer import load_tokenizer

    if args.run_dir is not None:
        run_dir = Path(args.run_dir)
        if not run_format.is_run(run_dir):
            raise GroverInputError(f"{run_dir} is not a run folder (no manifest.json); give --model, --tokenized "
                                   "and --out instead, or build a run with `grover build`.")
        defaults = (run_dir / run_format.MODEL_DIR, run_dir / run_format.TOKENIZED_DIR, run_dir / run_format.EMBEDDINGS_DIR)
    elif not (args.model and args.tokenized and args.out):
        raise GroverInputError("give a run folder (`grover embed runs/demo`) or all of --model, --tokenized, --out.")
    else:
        defaults = (None, None, None)
    # Explicit options override the run folder's own parts.
    model_dir, tokenized, out = (Path(given or default) for given, default in
                                 zip((args.model, args.tokenized, args.out), defaults))
    genome = _open_tokenized(str(tokenized))
    tokenizer = load_tokenizer(args.tokenizer or model_dir)
    dist = setup_distributed()
    try:
        model = load_model(model_dir, tokenizer=tokenizer).to(dist.device)
        config = _extraction_config(args)
        if not dist.enabled:
            extract_embeddings(model, tokenizer, genome, out, config=config, progress=not args.quiet)
        else:
            # Each rank streams every world_size-th window into its own folder; rank 0 merges them exactly.
            shards = out.parent / f".{out.name}.shards"
            mine = shards / f"rank-{dist.rank}-of-{dist.world_size}"
            extract_embeddings(model, tokenizer, genome, mine, config=config,
                               shard=ExtractionShard(dist.rank, dist.world_size), progress=not args.quiet and dist.is_main)
            dist.barrier()
            if dist.is_main:
                merge_extractions([shards / f"rank-{r}-of-{dist.world_size}" for r in range(dist.world_size)], out)
                shutil.rmtree(shards, ignore_errors=True)
            dist.barrier()
    finally:
        teardown_distributed(dist)
    if dist.is_main:
        print(f"embeddings -> {out}")


def _parse_annotation(text: str):
    """``NAME=PATH[,column=N][,stranded][,signal]`` -> ``AnnotationSpec`` (bedGraph/bigWig are signals)."""
    from grover_lens.analyze import AnnotationSpec

    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise GroverInputError(f"--annotation takes NAME=PATH[,column=N][,stranded], got {text!r}")
    path, *options = rest.split(",")
    kind = "signal" if path.lower().endswith((".bedgraph", ".bg", ".bw", ".bigwig", ".bedgraph.gz")) else "labels"
    column, stranded = 3, False
    for option in options:
        key, _, value = option.partition("=")
        if key == "column" and value.isdigit():
            column = int(value)
        elif key == "stranded":
            stranded = True
        elif key == "signal":
            kind = "signal"
        else:
            raise GroverInputError(f"unknown --annotation option {option!r} in {text!r}; use column=N (0-based BED "
                                   "column of the label), stranded, or signal.")
    if not Path(path).is_file():
        raise GroverInputError(f"annotation file not found: {path} (from --annotation {text}).")
    return AnnotationSpec(name, path, kind=kind, label_column=column, strand_aware=stranded)


def _cmd_analyze(args) -> None:
    import analysis.run as run_format
    from grover_lens.analyze import ANALYSES, analysis_config_from_manifest, run_analyses

    if args.list:
        for analysis in ANALYSES:
            print(f"{analysis.name:20s} {analysis.description}\n{'':20s} -> {', '.join(analysis.outputs)}")
        return
    if args.run_dir is None:
        raise GroverInputError("give the run folder to analyse, e.g. `grover analyze runs/demo`.")
    manifest = run_format.load_manifest(args.run_dir)
    config = analysis_config_from_manifest(manifest)
    if args.annotation:
        config = dataclasses.replace(config, annotations=tuple(_parse_annotation(a) for a in args.annotation))
    records = run_analyses(args.run_dir, config=config, only=tuple(args.only or ()), progress=not args.quiet,
                           command=args.command_line)
    for name, record in records.items():
        status = record.get("skipped") or f"{record['seconds']:.1f} s -> {', '.join(record['outputs'])}"
        print(f"{name:20s} {status}")


def _read_sequences(args) -> list[tuple[str, str]]:
    from grover_core.genome import iter_fasta

    sequences = [(f"sequence_{i + 1}", s) for i, s in enumerate(args.sequence or [])]
    if args.fasta:
        _require_file(args.fasta)
        sequences += [(name, letters.decode() if isinstance(letters, bytes) else str(letters))
                      for name, letters in iter_fasta(args.fasta)]
    if not sequences:
        raise GroverInputError("give sequences with --sequence ACGT... or --fasta FILE.")
    return sequences


def _cmd_embed_sequences(args) -> None:
    from safetensors.numpy import save_file

    from grover_core.atomic import atomic_path
    from grover_core.embed import embed_sequences
    from grover_core.model import load_model_and_tokenizer
    from grover_core.pretrain import resolve_device

    device = resolve_device(args.device)
    sequences = _read_sequences(args)
    model, tokenizer = load_model_and_tokenizer(args.model)
    model.to(device)
    results = embed_sequences(model, tokenizer, [s for _, s in sequences], stride=args.stride,
                              batch_size=args.batch_size)
    tensors, names = {}, []
    for index, ((name, _), result) in enumerate(zip(sequences, results)):
        key = f"s{index}"
        names.append({"key": key, "name": name, "tokens": result.tokens})
        tensors.update({f"{key}.hidden": result.hidden, f"{key}.ids": result.ids, f"{key}.spans": result.spans,
                        f"{key}.mean": result.mean, f"{key}.cls": result.cls})
    with atomic_path(args.out) as tmp:
        save_file(tensors, str(tmp), metadata={"sequences": json.dumps(names), "model": str(args.model),
                                               "layout": "hidden [layers, tokens, hidden]; spans [tokens, 2]"})
    for entry, result in zip(names, results):
        print(f"{entry['name']}: {len(result.tokens)} tokens, {result.hidden.shape[0]} layers x "
              f"{result.hidden.shape[2]} -> {args.out} [{entry['key']}.*]")


def _cmd_vocab_compare(args) -> None:
    from analysis.segmentation import compare_vocabulary_folders
    from grover_core.atomic import atomic_path

    if args.run_dir is not None:
        _vocabularies_of_run(args)
        return
    if args.fasta is None:
        raise GroverInputError("give --fasta (the genome the regions are drawn from), or --run RUN.")
    folders = {}
    for item in args.vocabularies:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).name, item
        if not Path(path).is_dir():
            raise GroverInputError(f"tokenizer folder not found: {path}")
        folders[name] = path
    if len(folders) < 2:
        raise GroverInputError("compare needs at least two vocabularies (NAME=FOLDER ...).")
    _require_file(args.fasta)
    tables = compare_vocabulary_folders(folders, fasta=args.fasta, n_regions=args.regions,
                                        region_length=args.length, seed=args.seed)
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(tables["summary"].to_string(index=False))
        print()
        print(tables["agreement"].to_string(index=False))
        print()
        print(tables["shared"].to_string(index=False))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            with atomic_path(out / f"{name}.parquet") as tmp:
                table.to_parquet(tmp, index=False)
        print(f"written: {', '.join(f'{name}.parquet' for name in tables)} in {out}")


def _vocabularies_of_run(args) -> None:
    """(Re)write a run's vocabularies/ folder: other BPE cycle counts and k-mers of its genome, compared."""
    import analysis.run as run_format
    from grover_lens.pipeline import RunConfig, compare_vocabularies_stage

    manifest = run_format.load_manifest(args.run_dir)
    fasta = manifest["genome"]["fasta"]
    _require_file(fasta)
    config = RunConfig()
    config = dataclasses.replace(config, compare_cycles=tuple(args.cycles or config.compare_cycles),
                                 compare_kmers=tuple(args.kmers or config.compare_kmers),
                                 compare_regions=args.regions, seed=args.seed)
    cycles = (manifest.get("vocabulary") or {}).get("cycles")
    if not isinstance(cycles, int):
        raise GroverInputError(f"{args.run_dir} was not built with a BPE vocabulary of ours; compare tokenizer "
                               "folders with `grover vocab compare NAME=FOLDER ... --fasta GENOME` instead.")
    run_dir = Path(args.run_dir)
    names = compare_vocabularies_stage(fasta, run_dir / run_format.VOCABULARIES_DIR,
                                       run_tokenizer=run_dir / run_format.TOKENIZER_DIR, run_cycles=cycles,
                                       config=config, progress=True)
    print(f"vocabularies {', '.join(names)} -> {run_dir / run_format.VOCABULARIES_DIR}")


# --- the paper's experiments (grover_lens.experiments) ---------------------------------------------------

def _run_folder(path: str) -> Path:
    import analysis.run as run_format

    run_dir = Path(path)
    if not run_format.is_run(run_dir):
        raise GroverInputError(f"{run_dir} is not a GROVER Lens run (no manifest.json). Build one with "
                               f"`grover demo --out {run_dir}` or `grover build GENOME --out {run_dir}`.")
    return run_dir


def _name_path_pairs(items: list[str] | None, option: str) -> dict[str, str]:
    """``["a=x", "y/b"]`` -> ``{"a": "x", "b": "y/b"}`` (a bare path is named after its last part)."""
    pairs = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item.rstrip("/")).name, item
        if not name or not path:
            raise GroverInputError(f"{option} takes NAME=PATH, got {item!r}.")
        if name in pairs:
            raise GroverInputError(f"{option}: the name {name!r} is given twice.")
        pairs[name] = path
    return pairs


def _print_table(table, title: str) -> None:
    import pandas as pd

    print(f"\n{title}")
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


def _cmd_task_build(args) -> None:
    import pandas as pd

    import analysis.run as run_format
    from grover_core.tasks import task_summary
    from grover_lens.experiments import DEMO_TASKS, build_tasks

    run_dir = _run_folder(args.run_dir)
    tables = _name_path_pairs(args.table, "--table")
    tasks = DEMO_TASKS if args.tasks is None else tuple(args.tasks)
    written = build_tasks(run_dir, tasks=tasks, genome=args.genome, tss_bed=args.tss, ctcf_peaks=args.peaks,
                          ctcf_bound_column=args.bound_column, user_tables=tables, command=args.command_line,
                          progress=not args.quiet)
    rows = []
    for name, path in written.items():
        summary = task_summary(pd.read_parquet(path, columns=["label", "chromosome", "split"])).set_index("split")
        rows.append({"task": name, **{f"n_{s}": int(summary.loc[s, "n"]) for s in summary.index},
                     "positive_fraction": float(summary["positives"].sum() / max(1, summary["n"].sum()))})
    _print_table(pd.DataFrame(rows), "task tables (examples per split)")
    print(f"\nwritten: {', '.join(p.name for p in written.values())} (+ .json) in {run_dir / run_format.TASKS_DIR}")


def _ensure_tasks(run_dir: Path, args) -> None:
    """A run without task tables gets the demo tasks its genome's annotation files allow, saying so."""
    from grover_lens.experiments import available_demo_tasks, build_tasks, task_names

    if task_names(run_dir):
        return
    tasks = available_demo_tasks(run_dir)
    if not tasks:
        raise GroverInputError(f"{run_dir} has no task tables, and no tss.bed or ctcf_sites.bed lies beside its "
                               f"genome: make tables with `grover task build --run {run_dir} --tss BED --peaks BED` "
                               "(or --table NAME=PATH).")
    print(f"{run_dir} has no task tables yet: building {', '.join(tasks)} from the files beside its genome "
          f"(as `grover task build --run {run_dir}` does)", flush=True)
    build_tasks(run_dir, tasks=tasks, command=args.command_line)


def _cmd_finetune(args) -> None:
    import analysis.run as run_format
    from grover_lens.experiments import FINETUNED_DIR, FinetuneExperimentConfig, finetune_tasks

    run_dir = _run_folder(args.run_dir)
    models = _name_path_pairs(args.model, "--model") or None
    config = FinetuneExperimentConfig()
    changes = {name: value for name, value in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                                ("learning_rate", args.learning_rate)) if value is not None}
    finetune = dataclasses.replace(config.finetune, **changes)
    config = dataclasses.replace(
        config, finetune=finetune, max_train_examples=args.max_train, keep_models=args.keep_models,
        min_steps=0 if args.epochs is not None else config.min_steps,  # an explicit --epochs is what runs
        # An explicit --learning-rate is used for every model, small or not.
        small_model_learning_rate=None if args.learning_rate is not None else config.small_model_learning_rate)
    _ensure_tasks(run_dir, args)
    results = finetune_tasks(run_dir, models=models, tasks=args.task, config=config, command=args.command_line,
                             progress=not args.quiet)
    _print_table(results[["task", "model", "method", "mcc", "accuracy", "macro_f1", "n_train", "n_test", "seconds"]],
                 "fine-tuning results (test split)")
    print(f"\nwritten: {run_dir / run_format.FINETUNE_RESULTS} (+ .json; rows of other models kept)")
    if args.keep_models:
        print(f"fine-tuned models: {run_dir / FINETUNED_DIR}/<task>/<model>")


def _cmd_nextkmer(args) -> None:
    import pandas as pd

    import analysis.run as run_format
    from grover_lens.experiments import NEXTKMER_DIR, VocabularySelectionConfig, vocabulary_selection

    run_dir = _run_folder(args.run_dir)
    config = VocabularySelectionConfig()
    nextkmer = config.nextkmer
    nextkmer = dataclasses.replace(nextkmer, **{name: value for name, value in (
        ("k_values", tuple(args.k) if args.k else None), ("n_train", args.n_train), ("n_test", args.n_test))
        if value is not None})
    if args.epochs is not None:
        nextkmer = dataclasses.replace(nextkmer, finetune=dataclasses.replace(nextkmer.finetune, epochs=args.epochs))
    pretrain = config.pretrain if args.steps is None else dataclasses.replace(
        config.pretrain, steps=args.steps, warmup_steps=min(config.pretrain.warmup_steps, max(1, args.steps // 10)))
    config = dataclasses.replace(
        config, cycles=tuple(config.cycles if args.cycles is None else args.cycles),
        kmers=tuple(config.kmers if args.kmers is None else args.kmers),
        model_preset=args.preset or config.model_preset,
        pretrain=pretrain, nextkmer=nextkmer, chromosomes=tuple(args.chromosomes or ()))
    given = _name_path_pairs(args.model, "--model")  # kind and size are read from each model's tokenizer
    results = vocabulary_selection(run_dir, config=config, models=given or None, genome=args.genome,
                                   command=args.command_line, progress=not args.quiet)
    shown = results.assign(accuracy=results["accuracy"] * 100)
    tuned = shown[shown["method"] == run_format.FINE_TUNED].pivot_table(index="vocabulary", columns="k", values="accuracy",
                                                               sort=False)
    reference = (shown[shown["method"] != run_format.FINE_TUNED].drop_duplicates(["method", "k"])
                 .pivot_table(index="method", columns="k", values="accuracy", sort=False))
    table = tuned.reset_index().rename(columns={"vocabulary": "model"})
    table = pd.concat([table, reference.reset_index().rename(columns={"method": "model"})], ignore_index=True)
    table.columns = [c if isinstance(c, str) else f"k={c}" for c in table.columns]
    _print_table(table, "next-k-mer accuracy (%) on held-out sequences")
    print(f"\nwritten: {run_dir / run_format.NEXTKMER_RESULTS} (+ .json; rows of other vocabularies kept)")
    if not given:
        print(f"models: {run_dir / NEXTKMER_DIR}/<vocabulary>/model")


def _masking(args):
    from grover_core.pretrain import MaskingConfig

    if args.masking == "bert":
        return MaskingConfig.bert(args.mask_fraction)
    return MaskingConfig(select_fraction=args.mask_fraction)


def _require_file(path: str) -> None:
    if not Path(path).is_file():
        raise GroverInputError(f"genome file not found: {path}. Give the path of a FASTA (.fa, .fa.gz) or 2bit genome file.")


def _add_masking_and_split_options(p: argparse.ArgumentParser) -> None:
    """Options `pretrain` and `eval` share: `eval` must see the split and masking training used."""
    p.add_argument("--mask-fraction", type=float, default=0.022, help="share of tokens selected (GROVER: 0.022)")
    p.add_argument("--masking", choices=["grover", "bert"], default="grover",
                   help="what a selected token becomes: grover = 80%% [MASK] / 20%% random; "
                   "bert = 80%% [MASK] / 10%% random / 10%% unchanged")
    p.add_argument("--split", choices=["chromosome", "random"], default="chromosome")
    p.add_argument("--held-out", nargs="*", default=None, help="held-out chromosomes (default: the last)")
    p.add_argument("--seed", type=int, default=0, help="seeds the sampling order and the random split")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grover", description="GROVER Lens: DNA language models, looked inside.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-genome", help="write the synthetic demo genome and its annotations")
    p.add_argument("--out", default=str(DEFAULT_GENOME_DIR), help="folder to write (default %(default)s)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--tiny", action="store_true", help="a ~300 kb genome for tests")
    p.set_defaults(run=_cmd_demo_genome)

    p = sub.add_parser("demo", help="build the built-in demo run (vocabulary, model, analyses)")
    p.add_argument("--out", default="runs/demo", help="run folder to write (default %(default)s)")
    p.add_argument("--genome-dir", default=str(DEFAULT_GENOME_DIR),
                   help="where the demo genome lives; written there when missing (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="demo genome seed")
    p.add_argument("--tiny", action="store_true", help="seconds-scale settings (tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_cmd_demo)

    p = sub.add_parser("build", help="build a run from a FASTA genome (learn, pretrain, analyse; or analyse --model)")
    p.add_argument("fasta")
    p.add_argument("--out", required=True)
    p.add_argument("--cycles", type=int, default=None, help="BPE cycles (default 600)")
    p.add_argument("--model", default=None,
                   help="an existing model folder (ours, a checkpoint, the published GROVER's): tokenize the genome "
                   "with its tokenizer and analyse it instead of learning and pretraining")
    p.add_argument("--untrained", action="store_true",
                   help="with --model: the same architecture and vocabulary at random initialisation (a baseline)")
    p.add_argument("--annotation", action="append", default=None, metavar="NAME=PATH[,column=N][,stranded]",
                   help="annotation files for the analyses (BED labels; bedGraph/bigWig signals)")
    p.add_argument("--tiny", action="store_true", help="seconds-scale settings")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_build)

    p = sub.add_parser("pretrain", help="pretrain a BERT MLM on a tokenized genome (resumable; torchrun for many GPUs)")
    p.add_argument("--tokenized", required=True, help="tokenized-genome folder")
    p.add_argument("--tokenizer", required=True, help="the tokenizer folder that made it")
    p.add_argument("--out", required=True, help="run folder: model/, checkpoints/, training_log.jsonl")
    p.add_argument("--preset", default="grover-small", help="grover-base (the paper), grover-small, grover-tiny, grover-demo, grover-test")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override model fields, e.g. hidden_size=256")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64, help="windows per micro-batch, all processes together")
    p.add_argument("--accumulation", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--window", type=int, default=510, help="longest window in tokens (capped by the model)")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--locality-warmup", type=int, default=0, metavar="STEPS",
                   help="locality warm start: an ALiBi-shaped attention bias for the first STEPS steps, fading "
                   "to zero (the saved model is a plain BERT); the demo uses half its steps")
    p.add_argument("--locality-bias", type=float, default=1.0, help="the warm start's slope for head 0 at step 0")
    _add_masking_and_split_options(p)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--keep", type=int, default=2, help="checkpoints kept")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_pretrain)

    p = sub.add_parser("eval", help="held-out masked-token accuracy and perplexity against the frequency baseline")
    p.add_argument("model", help="model folder (ours or the published GROVER's, local)")
    p.add_argument("--tokenized", required=True)
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model folder)")
    p.add_argument("--windows", type=int, default=1024)
    _add_masking_and_split_options(p)
    p.add_argument("--out", default=None, help="write the metrics JSON here too")
    p.set_defaults(run=_cmd_eval)

    vocab = sub.add_parser("vocab", help="vocabularies").add_subparsers(dest="vocab_command", required=True)
    p = vocab.add_parser("learn", help="learn BPE once and export a tokenizer per cycle count")
    p.add_argument("fasta")
    p.add_argument("--cycles", type=int, nargs="+", default=[600])
    p.add_argument("--chromosomes", nargs="+", default=None, help="only these records of the FASTA")
    p.add_argument("--min-pair-count", type=int, default=2, help="stop when the best pair is rarer (default 2)")
    p.add_argument("--out", default="vocabularies")
    p.add_argument("--tokenized", action="store_true",
                   help="also write the genome tokenized by the largest vocabulary into <out>/bpe_<max>/tokenized")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_vocab_learn)

    p = vocab.add_parser("kmer", help="fixed k-mer vocabularies (the paper's baselines) as tokenizer folders")
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    p.add_argument("--overlapping", action="store_true", help="DNABERT-style overlapping k-mers (stride 1)")
    p.add_argument("--out", default="vocabularies")
    p.set_defaults(run=_cmd_vocab_kmer)

    p = sub.add_parser("tokenize", help="tokenize a genome (FASTA/2bit) with any tokenizer folder, streaming")
    p.add_argument("genome", help="FASTA, FASTA.gz or .2bit")
    p.add_argument("tokenizer", help="tokenizer folder: ours (BPE or k-mer) or the published GROVER's")
    p.add_argument("--out", required=True, help="tokenized-genome folder to write")
    p.add_argument("--chromosomes", nargs="+", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_tokenize)

    p = vocab.add_parser("report", help="token table and vocabulary summary (printed; Parquet + JSON with --out)")
    p.add_argument("tokenizer", help="tokenizer folder")
    p.add_argument("tokenized", help="tokenized-genome folder made with that tokenizer")
    p.add_argument("--name", default=None, help="name shown in the report")
    p.add_argument("--out", default=None, help="folder for vocabulary_tokens.parquet and vocabulary_summary.json")
    p.set_defaults(run=_cmd_vocab_report)

    p = vocab.add_parser("compare", help="how several vocabularies cut the same genome regions")
    p.add_argument("vocabularies", nargs="*", metavar="NAME=FOLDER", help="tokenizer folders (BPE, k-mer, GROVER's)")
    p.add_argument("--fasta", default=None, help="genome the regions are drawn from")
    p.add_argument("--run", dest="run_dir", default=None,
                   help="instead: (re)write RUN/vocabularies (other cycle counts and k-mers of the run's genome)")
    p.add_argument("--cycles", type=int, nargs="+", default=None, help="with --run: BPE cycle counts")
    p.add_argument("--kmers", type=int, nargs="+", default=None, help="with --run: k of the k-mer vocabularies")
    p.add_argument("--regions", type=int, default=100)
    p.add_argument("--length", type=int, default=1000, help="nucleotides per region")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for summary/agreement/shared/regions .parquet")
    p.set_defaults(run=_cmd_vocab_compare)

    p = sub.add_parser("embed", help="genome-wide embedding extraction into bounded summaries (resumable; torchrun)")
    p.add_argument("run_dir", nargs="?", default=None, metavar="RUN",
                   help="a run folder (uses its model/, tokenized/, writes embeddings/)")
    p.add_argument("--model", default=None, help="model folder (ours or the published GROVER's, local)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model folder)")
    p.add_argument("--tokenized", default=None, help="tokenized-genome folder made with that tokenizer")
    p.add_argument("--out", default=None, help="extraction folder to write")
    p.add_argument("--max-windows", type=int, default=None, help="evenly spread windows (default: the whole genome)")
    p.add_argument("--window-tokens", type=int, default=None, help="tokens per window (default: the model's longest)")
    p.add_argument("--chromosomes", nargs="+", default=None)
    p.add_argument("--regions", default=None, help="BED of intervals to embed instead of whole chromosomes")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--reservoir-size", type=int, default=500, help="occurrences sampled per token (K)")
    p.add_argument("--no-window-embeddings", action="store_true", help="keep no per-window vectors")
    p.add_argument("--checkpoint-every", type=int, default=None, help="windows between checkpoints (default: by time)")
    p.add_argument("--checkpoint-seconds", type=float, default=60.0, help="wall-clock seconds between checkpoints")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="the model's forward pass (auto: bf16 on a GPU or a CPU with native bf16, else float32)")
    p.add_argument("--mapped-memory-mb", type=float, default=None,
                   help="most MB the memory-mapped sample store may add to the process's RSS (for RSS-based job "
                        "limits); past it pages go back to the page cache and are faulted in again: slower "
                        "(default: no limit)")
    p.add_argument("--seed", type=int, default=0, help="which occurrences are sampled")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_embed)

    p = sub.add_parser("embed-sequences", help="every layer's embedding of every token of given sequences")
    p.add_argument("model", help="model folder with its tokenizer (ours or the published GROVER's)")
    p.add_argument("--sequence", nargs="+", default=None, help="DNA sequences")
    p.add_argument("--fasta", default=None, help="a FASTA of sequences")
    p.add_argument("--out", required=True, help="safetensors file: s<i>.hidden [layers, tokens, hidden], s<i>.spans ...")
    p.add_argument("--stride", type=int, default=None, help="window step for long sequences (default: half a window)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto",
                   help="auto (a GPU when torch sees one, bf16 autocast there; else the CPU), cpu or cuda")
    p.set_defaults(run=_cmd_embed_sequences)

    p = sub.add_parser("analyze", help="run the registered analyses on a run folder")
    p.add_argument("run_dir", nargs="?", default=None, metavar="RUN")
    p.add_argument("--only", nargs="+", default=None, help="these analyses only (see --list)")
    p.add_argument("--annotation", action="append", default=None, metavar="NAME=PATH[,column=N][,stranded]",
                   help="annotation files (BED labels; bedGraph/bigWig signals); default: the run's own")
    p.add_argument("--list", action="store_true", help="list the analyses and their outputs")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_analyze)

    task = sub.add_parser("task", help="fine-tuning task tables").add_subparsers(dest="task_command", required=True)
    p = task.add_parser("build", help="build Prom300, PromScan, CTCF (and your tables) into RUN/experiments/tasks")
    p.add_argument("--run", dest="run_dir", required=True, metavar="RUN", help="run folder")
    p.add_argument("--tasks", nargs="*", default=None, metavar="TASK",
                   help="of prom300 promscan ctcf (default: all three; nothing after --tasks: only --table ones)")
    p.add_argument("--genome", default=None, help="genome FASTA (default: the run's)")
    p.add_argument("--tss", default=None, metavar="BED",
                   help="TSSs (BED6, strand needed) for prom300 and promscan (default: tss.bed beside the genome)")
    p.add_argument("--peaks", default=None, metavar="BED",
                   help="CTCF ChIP-seq peaks for ctcf (default: ctcf_sites.bed beside the genome, bound = column 7)")
    p.add_argument("--bound-column", type=int, default=None, metavar="N",
                   help="1-based column of --peaks flagging bound rows (1/0); default: every row is a peak")
    p.add_argument("--table", nargs="+", action="extend", default=None, metavar="NAME=PATH",
                   help="your own tasks: CSV/TSV/Parquet with sequence and label (and optionally split) columns")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_task_build)

    p = sub.add_parser("finetune", help="fine-tune models on the run's tasks beside the TF-IDF k-mer baseline")
    p.add_argument("--run", dest="run_dir", required=True, metavar="RUN", help="run folder")
    p.add_argument("--task", nargs="+", default=None, metavar="NAME", help="these task tables only (default: all)")
    p.add_argument("--model", nargs="+", action="extend", default=None, metavar="NAME=PATH",
                   help="model folders to fine-tune (default: the run's model, named after the run); rows of "
                   "other models already in the results are kept")
    p.add_argument("--epochs", type=int, default=None,
                   help="default 4, more on small tasks (at least 100 optimizer steps); early stopping on "
                   "validation rows")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="for every model (default: 1e-3 for small models, hidden size <= 256; 2e-5 for larger)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32")
    p.add_argument("--max-train", type=int, default=None, metavar="N", help="subsample training rows (seeded)")
    p.add_argument("--keep-models", action="store_true", help="save fine-tuned models in RUN/experiments/finetuned")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_finetune)

    p = sub.add_parser("nextkmer", help="next-k-mer prediction across vocabularies (how the paper chose BPE 600)")
    p.add_argument("--run", dest="run_dir", required=True, metavar="RUN", help="run folder")
    p.add_argument("--cycles", type=int, nargs="*", default=None, help="BPE cycle counts (default 50 100 200 400 600)")
    p.add_argument("--kmers", type=int, nargs="*", default=None, help="fixed k-mer vocabularies (default 4 6)")
    p.add_argument("--k", type=int, nargs="+", default=None, help="nucleotides to predict (default 2 3 4 5 6)")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps per vocabulary (default 300)")
    p.add_argument("--preset", default=None, help="model shape for every vocabulary (default grover-tiny)")
    p.add_argument("--n-train", type=int, default=None, help="next-k-mer training sequences (default 2000)")
    p.add_argument("--n-test", type=int, default=None, help="next-k-mer test sequences (default 500)")
    p.add_argument("--epochs", type=int, default=None, help="next-k-mer fine-tuning epochs (default 2)")
    p.add_argument("--chromosomes", nargs="+", default=None, help="draw sequences here (default: the run's held-out)")
    p.add_argument("--genome", default=None, help="genome FASTA (default: the run's)")
    p.add_argument("--model", nargs="+", action="extend", default=None, metavar="NAME=PATH",
                   help="score these pretrained models instead of pretraining (e.g. grover=path/to/GROVER; "
                   "BPE cycles or k read from their tokenizers)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_nextkmer)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = " ".join(["grover", *(sys.argv[1:] if argv is None else argv)])  # provenance
    try:
        args.run(args)
    except (GroverInputError, FileNotFoundError, NotADirectoryError, PermissionError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"grover: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("grover: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
