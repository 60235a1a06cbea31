"""Embedding extraction: speed against the naive way and a bare forward pass, memory, self-similarity, GPU.

    python benchmarks/embedding_extraction.py                  # grover-tiny (4,096 windows) and grover-small (256)
    python benchmarks/embedding_extraction.py --preset grover-small --windows 256
    python benchmarks/embedding_extraction.py --quick          # a smoke test on small sizes; prints, writes nothing

Data: the demo genome (``write_demo_genome``, 5.6 Mbp), a 600-cycle BPE learned on it and its tokenized
genome, built as ``grover_lens.pipeline.build_run`` builds them (cached under ``--cache``). Models are
randomly initialised (``build_model(model_config(preset), tokenizer)``): speed and memory do not depend
on training. Every method runs on the same windows, the extractor's own list
(``grover_core.extract.window_table`` with ``max_windows``: evenly spread over the genome).

1. Speed, CPU (``torch.set_num_threads(2)``), per preset, on one model:

   * extraction: ``extract_embeddings(..., config=ExtractionConfig(max_windows=N, window_tokens=W,
     batch_size=B))`` into a fresh folder, the whole call (set-up and final writes included), in the
     dtype ``ExtractionConfig.dtype="auto"`` picks here (``resolve_dtype``: bf16 autocast on a CPU with
     native bf16, else float32);
   * extraction, genome-scale sampling: the same call with a smaller reservoir K
     (``genome_scale_sampling``): a run this short is in the reservoir's fill phase and copies nearly
     every occurrence's vectors into ``samples.npy``, which a genome-scale run does for a fraction of a
     percent of its occurrences; with this K these windows still write at least the share hg19 would
     at K = 500 (``expected_sampled_share``), so it measures the rate of a long run, conservatively;
   * bare: batches of B pre-made windows through ``model(input_ids, attention_mask,
     output_hidden_states=True)`` under ``torch.inference_mode()``, nothing kept, in the extraction's
     dtype (the 90% target compares like with like);
   * bare, encoder only: the same through ``model.base_model`` (no MLM head: what the extractor runs);
   * naive: one window at a time through ``model(..., output_hidden_states=True)`` under
     ``torch.no_grad()`` in float32, every layer's hidden states of every window kept as numpy arrays in
     a list, per-token means of every layer computed from them at the end (the 3x target's baseline);
   * with ``--also-float32`` (when the extraction's dtype is not float32 already): extraction and bare
     in float32 too, for contrast.

   Each is warmed up once. Every repeat runs each bare pass, then the extractions (their order
   rotating), then each bare pass again, then the naive way; a repeat's bare time is the mean of its
   two runs around the extractions, since this VM's speed drifts by 10-30% within seconds. Medians are
   reported; ratios are medians of per-repeat ratios. Targets: extraction >= 3x naive, extraction >= 90%
   of bare. One more extraction runs with timers around each of its parts (wrapped functions and
   forward hooks, exclusive times) to show where its time goes; it checkpoints once, half-way (the
   default cadence, every 60 s, never fires in calls this short).
2. Memory: the extraction (as is and with ``mapped_memory_mb=LIMITED_MB``; for contrast, the naive way)
   in a fresh process for N and 10N windows of the first preset; the peak RSS (VmHWM) and, polled every
   few ms from outside, the peaks of RssAnon (the process's own heap) and RssFile (file pages mapped,
   ``samples.npy`` among them). Target: peak at 10N <= 1.2x the peak at N.
3. Whole-genome memory: every window of tiled demo genomes of 10 and 100 Mbp (``--genome-mbp``,
   ``bpe_scaling.make_genome``, tokenized with the same tokenizer) extracted by the first preset with the
   default settings, each in a fresh process, and the same with the streamed files' pages kept mapped
   (the genome's tokens and the window arrays; ``_MappedPages.release_streamed`` a no-op). Target: peak
   at 100 Mbp <= 1.2x the peak at 10 Mbp.
4. Self-similarity (``analysis.self_similarity.self_similarity_table``) on a float16 memmap
   ``[13, 601, 500, 768]`` of random normal values (6 GB, written to ``--scratch``, deleted afterwards), every
   slot filled, page cache warm. Target: under 60 s.
5. GPU (only when ``torch.cuda.is_available()``; ``--gpu-only`` runs this part alone): extraction,
   genome-scale sampling and bare windows/s for grover-base at 510 tokens (bf16 autocast, as
   ``extract_embeddings`` runs on a GPU), where a call's time goes, and the projected time for hg19
   (1.4 M windows of 510 tokens; target: under 30 minutes on one H100). Without a GPU this part is
   reported as not measured (and a section with GPU figures is left as it is).

Figures are printed and written to the "## Embedding extraction" and "## Embedding extraction on a GPU"
sections of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grover_core.extract as extract_module  # noqa: E402
from grover_core.extract import (ExtractionConfig, expected_sampled_share, extract_embeddings,  # noqa: E402
                                 resolve_dtype, window_table)
from grover_core.extract import _autocast  # noqa: E402  (the bare passes autocast as the extractor does)
from grover_core.model import build_model, count_parameters, model_config  # noqa: E402
from grover_core.pretrain import collate_windows  # noqa: E402
from grover_core.tokenized_genome import TokenizedGenome  # noqa: E402
from grover_core.tokenizer import load_tokenizer, special_token_mask  # noqa: E402

from _markdown import write_section  # noqa: E402 (benchmarks/ is on sys.path when a script runs)

SECTION = "## Embedding extraction"
GPU_SECTION = "## Embedding extraction on a GPU"
HG19_TARGET_H = 0.5  # the whole of hg19 projected to take under 30 minutes on one H100
NAIVE_TARGET = 3.0  # extraction windows/s over the naive way's
BARE_TARGET = 0.90  # extraction windows/s as a fraction of a bare batched forward pass
MEMORY_TARGET = 1.2  # peak RSS with 10x the windows over the peak with 1x
SELF_SIMILARITY_TARGET_S = 60.0
SELF_SIMILARITY_SHAPE = (13, 601, 500, 768)  # layers, vocabulary, K, hidden: grover-base's summaries
HG19_WINDOWS = 1.4e6  # windows of 510 tokens in hg19, about
HG19_TOKENS = HG19_WINDOWS * 510
DEFAULT_K = ExtractionConfig().reservoir_size  # the reservoir every "extraction" row runs with
THREADS = 2
HIGH_SPREAD = 0.10  # (max - min) / median of a measurement's repeats above this: flagged as noisy
POOL_VALUES = 64 * 2**20  # random normal values drawn for the self-similarity input (128 MB as float16)
POLL_S = 0.005  # how often the parent reads a memory child's /proc/<pid>/status
LIMITED_MB = 128.0  # the memory test's second extraction: ExtractionConfig(mapped_memory_mb=LIMITED_MB)
MEMORY_KINDS = {"extraction": "extraction", "limited": f"extraction, `mapped_memory_mb={LIMITED_MB:g}`",
                "naive": "naive"}
# The whole-genome memory test: the extraction as it is, and with the streamed files' pages kept mapped
# (``_MappedPages.release_streamed`` a no-op, as before 2026-12-06).
GENOME_KINDS = {"genome": "extraction", "genome_kept": "extraction, streamed pages kept mapped"}
DEFAULT_WINDOWS = {"grover-small": 256, "grover-tiny": 4096, "grover-test": 512, "grover-base": 16}
DEFAULT_BATCH = {"grover-small": 16, "grover-tiny": 32, "grover-test": 32, "grover-base": 8}
# Parts of an extraction whose cost does not grow with the windows streamed (per call).
ONE_OFF_PARTS = ("fingerprint_model", "window_table", "open/create .npy", "_create_window_arrays", "_finish",
                 "_sort_slots_by_key", "flush in _sort_slots_by_key", "flush in _finish", "_write_token_means",
                 "_save_npy", "_expected_held", "_prefault", "other")
# Which dtype each method runs in; "bare" and "bare_encoder" follow the extraction's.
METHODS = ("extraction", "extraction_genome_scale", "bare", "bare_encoder", "naive", "extraction_float32",
           "bare_float32")
LABELS = {"extraction": "extraction", "extraction_genome_scale": "extraction, genome-scale sampling", "bare": "bare",
          "bare_encoder": "bare, encoder only", "naive": "naive", "extraction_float32": "extraction, float32",
          "bare_float32": "bare, float32"}


# --------------------------------------------------------------------------------------------- data

def prepare_data(cache: Path, log=print) -> tuple[Path, Path]:
    """Build (once) the demo genome, its 600-cycle BPE tokenizer and tokenized genome as ``build_run`` does.

    Returns ``(tokenizer_dir, tokenized_dir)``.
    """
    tokenizer_dir, tokenized_dir = cache / "tokenizer", cache / "tokenized"
    if (tokenized_dir / "index.json").is_file() and tokenizer_dir.is_dir():
        return tokenizer_dir, tokenized_dir
    from grover_core.bpe import BPEConfig, BPELearner
    from grover_core.demo_genome import DemoGenomeConfig, write_demo_genome
    from grover_core.genome import iter_segments
    from grover_core.tokenized_genome import write_tokenized_chromosomes
    from grover_core.tokenizer import SPECIAL_TOKENS, build_bpe_tokenizer, save_tokenizer

    started = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    fasta = write_demo_genome(cache / "genome", config=DemoGenomeConfig())["fasta"]
    learner = BPELearner.from_segments(iter_segments(fasta), max_cycles=600)
    vocabulary = learner.learn(BPEConfig(cycles=600))
    tokenizer = build_bpe_tokenizer(vocabulary)
    save_tokenizer(tokenizer, tokenizer_dir)
    write_tokenized_chromosomes(tokenized_dir, learner.iter_chromosomes(), id_offset=len(SPECIAL_TOKENS),
                                vocab_size=len(tokenizer))
    log(f"data built in {time.perf_counter() - started:.0f} s under {cache}")
    return tokenizer_dir, tokenized_dir


def load_data(cache: Path, log=print):
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    tokenizer_dir, tokenized_dir = prepare_data(cache, log)
    return load_tokenizer(tokenizer_dir), TokenizedGenome.open(tokenized_dir)


def window_tokens_for(model, requested: int | None) -> int:
    """The window length the extractor uses for this model (its rule, repeated here)."""
    return min(requested or 10**9, model.config.max_position_embeddings - 2)


def extraction_windows(genome: TokenizedGenome, window_tokens: int, count: int) -> list[np.ndarray]:
    """The token ids of the windows ``extract_embeddings`` streams with ``max_windows=count``, in its order."""
    table = window_table(genome, window_tokens=window_tokens, max_windows=count)
    return [np.asarray(genome.ids(name)[first:first + n], dtype=np.int64)
            for name, first, n in zip(table["chromosome"], table["first_token"], table["n_tokens"])]


# ------------------------------------------------------------------------------------------ methods

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def bare_pass(model, batches, device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """Seconds for a batched forward pass with every hidden state and nothing kept (autocast to ``dtype``)."""
    moved = [(ids.to(device), mask.to(device)) for ids, mask in batches]
    _sync(device)
    started = time.perf_counter()
    with torch.inference_mode(), _autocast(device, dtype):
        for input_ids, attention_mask in moved:
            model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    _sync(device)
    return time.perf_counter() - started


def naive_extraction(model, tokenizer, windows: list[np.ndarray], device: torch.device) -> np.ndarray:
    """One window at a time, every layer's hidden states kept in a list; per-token means at the end.

    Returns the means ``[layers, vocab, hidden]`` (float32).
    """
    kept = []  # (input ids [length], hidden states [layers, length, hidden]) per window
    with torch.no_grad():
        for ids in windows:
            batch = collate_windows([ids], tokenizer)
            out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                        output_hidden_states=True)
            kept.append((batch["input_ids"][0].numpy(),
                         np.stack([h[0].float().cpu().numpy() for h in out.hidden_states])))
    tokens = torch.from_numpy(np.concatenate([ids for ids, _ in kept]))
    vocab, layers = model.config.vocab_size, len(kept[0][1])
    counts = torch.bincount(tokens, minlength=vocab).clamp(min=1).unsqueeze(1)
    means = []
    for layer in range(layers):
        hidden = torch.from_numpy(np.concatenate([h[layer] for _, h in kept]))
        sums = torch.zeros((vocab, hidden.shape[1]), dtype=torch.float64).index_add_(0, tokens, hidden.double())
        means.append((sums / counts).float().numpy())
    return np.stack(means)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def timed_extraction(model, tokenizer, genome, config: ExtractionConfig, scratch: Path) -> float:
    """Seconds for one ``extract_embeddings`` call into a fresh folder (removed afterwards, untimed)."""
    out_dir = Path(tempfile.mkdtemp(prefix="extract_", dir=scratch))
    try:
        device = next(model.parameters()).device
        _sync(device)
        started = time.perf_counter()
        extract_embeddings(model, tokenizer, genome, out_dir, config=config)
        _sync(device)
        seconds = time.perf_counter() - started
        if not json.loads((out_dir / extract_module.EXTRACTION_JSON).read_text()).get("complete"):
            raise RuntimeError(f"extraction in {out_dir} did not complete")
        return seconds
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


@contextlib.contextmanager
def extraction_part_timers(model: torch.nn.Module, parts: dict[str, float]):
    """Add the exclusive seconds of each part of ``extract_embeddings`` to ``parts`` while inside.

    Wraps the module-level functions the extractor looks up at call time, ``np.lib.format.open_memmap``
    (creating and opening the .npy files) and ``np.memmap.flush`` (named after its caller), and hooks the
    forward of ``model.base_model`` (the encoder the extractor runs). A nested part's time is taken out of
    the part around it. On a GPU every timer waits for the queued kernels (so the call runs slower than
    untimed: no overlap of host work and kernels).
    """
    stack: list[list] = []  # [name, start, seconds of nested parts]
    device = next(model.parameters()).device

    def enter(name: str) -> None:
        _sync(device)  # on a GPU, what was queued before belongs to the part around this one
        stack.append([name, time.perf_counter(), 0.0])

    def leave() -> None:
        _sync(device)  # and a part's own kernels to it (the calls return before they run)
        name, start, nested = stack.pop()
        elapsed = time.perf_counter() - start
        parts[name] += elapsed - nested
        if stack:
            stack[-1][2] += elapsed

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            enter(name(stack) if callable(name) else name)
            try:
                return fn(*args, **kwargs)
            finally:
                leave()
        return wrapper

    targets = [(extract_module, fn, fn) for fn in (
        "fingerprint_model", "window_table", "collate_windows", "_stream_batch", "_write_pending", "bottom_k_update",
        "_checkpoint", "_finish", "_sort_slots_by_key", "_write_token_means", "_save_npy", "_create_window_arrays",
        "_expected_held", "_prefault")
        if hasattr(extract_module, fn)]
    targets += [(np.lib.format, "open_memmap", "open/create .npy"),
                (np.memmap, "flush", lambda s: f"flush in {s[-1][0] if s else 'extract_embeddings'}")]
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in targets]
    encoder = model.base_model  # what the extractor runs (the MLM head is never called)
    handles = [encoder.register_forward_pre_hook(lambda *args: enter("forward")),
               encoder.register_forward_hook(lambda *args: leave())]
    try:
        for owner, attr, name in targets:
            setattr(owner, attr, timed(name, getattr(owner, attr)))
        yield parts
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)
        for handle in handles:
            handle.remove()


def extraction_breakdown(model, tokenizer, genome, config: ExtractionConfig, scratch: Path) -> dict[str, float]:
    """Seconds per part of one more extraction call; "other" is the call's time no timer saw."""
    parts: dict[str, float] = defaultdict(float)
    with extraction_part_timers(model, parts):
        total = timed_extraction(model, tokenizer, genome, config, scratch)
    parts["other"] = total - sum(parts.values())
    parts["total"] = total
    return dict(parts)


def token_counts(windows: list[np.ndarray], tokenizer, vocab: int) -> np.ndarray:
    """Occurrences per token id in ``windows``, special tokens left out (the extractor samples none)."""
    counts = np.bincount(np.concatenate(windows), minlength=vocab)[:vocab]
    special = special_token_mask(tokenizer)[:vocab]
    counts[: special.size][special] = 0
    return counts


def genome_scale_sampling(counts: np.ndarray, *, capacity: int, genome_tokens: float = HG19_TOKENS) -> dict:
    """A reservoir size under which these windows write at least the share of occurrences a genome run would.

    A short run sits in the reservoir's fill phase: nearly every occurrence is copied into
    ``samples.npy``. A genome-scale run (``genome_tokens`` occurrences with these windows' token
    frequencies) at ``capacity`` writes a far smaller share (``expected_sampled_share``). Returns the
    smallest K >= 1 whose expected share in these windows is still at least that (K = 1 when every K
    writes more), with the shares: ``{"k", "share", "default_share", "genome_share"}``.
    """
    genome_share = expected_sampled_share(counts / max(counts.sum(), 1) * genome_tokens, capacity)
    k = 1
    while k < capacity and expected_sampled_share(counts, k) < genome_share:
        k += 1
    return {"k": k, "share": expected_sampled_share(counts, k),
            "default_share": expected_sampled_share(counts, capacity), "genome_share": genome_share}


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


def measure_speed(preset: str, n_windows: int, batch_size: int, *, tokenizer, genome, repeats: int, scratch: Path,
                  device: torch.device, naive: bool = True, also_float32: bool = False,
                  checkpoint_in_breakdown: bool = True, log=print) -> dict:
    """Extraction, bare (full model and encoder only), naive windows/s on one model and the same windows.

    Medians over repeats; in every repeat each bare pass runs before and after the extractions (the
    mean is its time), the naive way last. The call timed part by part checkpoints once, half-way,
    with ``checkpoint_in_breakdown`` (else at the default cadence, which a call this short never reaches).
    """
    model = build_model(model_config(preset), tokenizer, seed=0).to(device).eval()
    window = window_tokens_for(model, None)
    windows = extraction_windows(genome, window, n_windows)
    n_windows = len(windows)
    batches = [tuple(collate_windows(windows[i:i + batch_size], tokenizer).values())
               for i in range(0, n_windows, batch_size)]
    config = ExtractionConfig(max_windows=n_windows, window_tokens=window, batch_size=batch_size)
    dtype = resolve_dtype(config.dtype, device)
    float32 = torch.float32
    tokens = sum(int(w.size) for w in windows)
    sampling = genome_scale_sampling(token_counts(windows, tokenizer, model.config.vocab_size),
                                     capacity=config.reservoir_size)
    genome_scale = dataclasses.replace(config, reservoir_size=sampling["k"])
    runs = {
        "extraction": lambda: timed_extraction(model, tokenizer, genome, config, scratch),
        "extraction_genome_scale": lambda: timed_extraction(model, tokenizer, genome, genome_scale, scratch),
        "bare": lambda: bare_pass(model, batches, device, dtype),
        "bare_encoder": lambda: bare_pass(model.base_model, batches, device, dtype),
        "naive": lambda: _timed(lambda: naive_extraction(model, tokenizer, windows, device)),
        "extraction_float32": lambda: timed_extraction(model, tokenizer, genome,
                                                       dataclasses.replace(config, dtype="float32"), scratch),
        "bare_float32": lambda: bare_pass(model, batches, device, float32),
    }
    methods = [m for m in METHODS if (m != "naive" or naive) and
               (not m.endswith("_float32") or (also_float32 and dtype != float32))]
    dtypes = {m: _dtype_name(float32 if m in ("naive", "extraction_float32", "bare_float32") else dtype)
              for m in methods}

    # Warm-up, once each: first-call costs (allocations, kernel choice, lazy imports) out of the timings.
    small = ExtractionConfig(max_windows=batch_size, window_tokens=window, batch_size=batch_size)
    for d in {dtype, float32}:
        bare_pass(model, batches[:1], device, d)
        bare_pass(model.base_model, batches[:1], device, d)
        timed_extraction(model, tokenizer, genome, dataclasses.replace(small, dtype=_dtype_name(d)), scratch)
    if naive:
        naive_extraction(model, tokenizer, windows[:2], device)

    seconds: dict[str, list[float]] = {m: [] for m in methods}
    loads = []
    # This VM's speed drifts by 10-30% within seconds. So each repeat sandwiches the extractions between
    # two runs of each bare pass (their mean is the repeat's bare time: a ratio of neighbours), the
    # extractions' order rotating; the naive way, slower by far, runs last.
    sandwich = [m for m in methods if m.startswith("bare")]
    middle = [m for m in methods if m.startswith("extraction")]
    for repeat in range(repeats):
        before = {m: runs[m]() for m in sandwich}
        for method in middle[repeat % len(middle):] + middle[:repeat % len(middle)]:
            seconds[method].append(runs[method]())
        after = {m: runs[m]() for m in reversed(sandwich)}
        for m in sandwich:
            seconds[m].append((before[m] + after[m]) / 2)
        if naive:
            seconds["naive"].append(runs["naive"]())
        loads.append(os.getloadavg()[0])
        log(f"  {preset} repeat {repeat + 1}/{repeats}: " + ", ".join(
            f"{m} {n_windows / seconds[m][-1]:.2f}" for m in methods) + f" windows/s (load {loads[-1]:.2f})")
    # The breakdown call between two bare passes over the same batches: a ratio under the same load. It
    # checkpoints once, half-way, to show what a checkpoint costs.
    bare_around = [bare_pass(model, batches, device, dtype)]
    timed = config if not checkpoint_in_breakdown else dataclasses.replace(
        config, checkpoint_seconds=None, checkpoint_every=max(batch_size, n_windows // 2 // batch_size * batch_size))
    breakdown = extraction_breakdown(model, tokenizer, genome, timed, scratch)
    bare_around.append(bare_pass(model, batches, device, dtype))
    rate = {m: [n_windows / s for s in seconds[m]] for m in methods}

    def ratio(a: str, b: str) -> float:
        return statistics.median([x / y for x, y in zip(rate[a], rate[b])])

    figures = {
        "preset": preset, "device": str(device), "parameters": count_parameters(model),
        "layers": model.config.num_hidden_layers + 1, "hidden": model.config.hidden_size,
        "vocab": model.config.vocab_size, "window_tokens": window, "windows": n_windows, "tokens": tokens,
        "batch_size": batch_size, "repeats": repeats, "dtype": _dtype_name(dtype), "dtypes": dtypes,
        "windows_per_s": {m: statistics.median(r) for m, r in rate.items()},
        "best_windows_per_s": {m: max(r) for m, r in rate.items()},
        "spread": {m: _spread(r) for m, r in rate.items()},
        "extraction_over_bare": ratio("extraction", "bare"),
        "genome_scale": {**sampling, "over_bare": ratio("extraction_genome_scale", "bare"),
                         "over_bare_encoder": ratio("extraction_genome_scale", "bare_encoder")},
        "extraction_over_bare_encoder": ratio("extraction", "bare_encoder"),
        "repeats_windows_per_s": rate, "repeats_load": loads, "breakdown_s": breakdown,
        "breakdown_checkpoints": checkpoint_in_breakdown,
        "breakdown_bare_s": bare_around,
    }
    if naive:
        figures["extraction_over_naive"] = ratio("extraction", "naive")
        figures["genome_scale"]["over_naive"] = ratio("extraction_genome_scale", "naive")
    if "extraction_float32" in rate:
        figures["extraction_float32_over_bare_float32"] = ratio("extraction_float32", "bare_float32")
        figures["bare_over_bare_float32"] = ratio("bare", "bare_float32")
    one_off = sum(v for k, v in breakdown.items() if k in ONE_OFF_PARTS)
    streaming = breakdown["total"] - one_off
    figures["streaming_windows_per_s"] = n_windows / streaming
    figures["streaming_over_bare"] = statistics.mean(bare_around) / streaming
    figures["call_over_bare"] = statistics.mean(bare_around) / breakdown["total"]
    figures["one_off_s"] = one_off
    return figures


# ------------------------------------------------------------------------------------------- memory

def _status_kb(pid: int | str = "self") -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0])
    return fields


def child_main(kind: str, preset: str, n_windows: int, batch_size: int, cache: Path, scratch: Path,
               tokenized: Path | None = None) -> dict:
    """In a fresh process: build the model, then extract (or the naive way) ``n_windows``; return figures.

    ``tokenized``: stream that tokenized genome (made with the cached tokenizer) instead of the cached one;
    ``n_windows`` 0: all of its windows.
    """
    torch.set_num_threads(THREADS)
    tokenizer, genome = load_data(cache)
    if tokenized is not None:
        genome = TokenizedGenome.open(tokenized)
    if kind == "genome_kept":
        extract_module._MappedPages.release_streamed = lambda self: None
    model = build_model(model_config(preset), tokenizer, seed=0).eval()
    window = window_tokens_for(model, None)
    before = _status_kb()
    started = time.perf_counter()
    if kind != "naive":
        out_dir = Path(tempfile.mkdtemp(prefix="extract_mem_", dir=scratch))
        try:
            extract_embeddings(model, tokenizer, genome, out_dir,
                               config=ExtractionConfig(max_windows=n_windows or None, window_tokens=window,
                                                       batch_size=batch_size,
                                                       mapped_memory_mb=LIMITED_MB if kind == "limited" else None))
            seconds = time.perf_counter() - started
            end = _status_kb()
            samples_mb = (out_dir / extract_module.SAMPLES).stat().st_size / 2**20
            windows_done = json.loads((out_dir / extract_module.EXTRACTION_JSON).read_text())["windows_done"]
            window_mb = sum((out_dir / name).stat().st_size for name in
                            (extract_module.WINDOW_CLS, extract_module.WINDOW_MEAN,
                             extract_module.WINDOW_SIMILARITY)) / 2**20
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
    else:
        windows = extraction_windows(genome, window, n_windows)
        naive_extraction(model, tokenizer, windows, torch.device("cpu"))
        seconds = time.perf_counter() - started
        end = _status_kb()
        samples_mb, windows_done, window_mb = None, len(windows), None
    return {"kind": kind, "windows": n_windows, "windows_done": windows_done, "seconds": seconds,
            "before_kb": before, "end_kb": end, "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "samples_file_mb": samples_mb, "window_arrays_mb": window_mb,
            "genome_tokens": genome.total_tokens}


def run_memory_child(kind: str, preset: str, n_windows: int, batch_size: int, cache: Path, scratch: Path,
                     timeout_s: float, tokenized: Path | None = None) -> dict:
    """Run ``child_main`` in a fresh process, polling its RssAnon / RssFile / VmRSS from outside."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--preset", preset,
               "--windows", str(n_windows), "--batch-size", str(batch_size), "--cache", str(cache),
               "--scratch", str(scratch), *(["--child-tokenized", str(tokenized)] if tokenized else [])]
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    peaks = defaultdict(int)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        started = time.perf_counter()
        while proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                for key, value in _status_kb(proc.pid).items():
                    peaks[key] = max(peaks[key], value)
            if time.perf_counter() - started > timeout_s:
                proc.kill()
                proc.wait()
                return {"failed": f"stopped: not finished after {timeout_s:.0f} s", "polled_peak_kb": dict(peaks)}
            time.sleep(POLL_S)
        out.seek(0)
        err.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("RESULT")]
        if proc.returncode != 0 or not lines:
            tail = (err.read().strip().splitlines() or ["(no message)"])[-1]
            return {"failed": f"exit {proc.returncode}: {tail[:200]}"}
    result = json.loads(lines[-1][len("RESULT"):])
    result["polled_peak_kb"] = dict(peaks)
    return result


def measure_memory(preset: str, n_windows: int, batch_size: int, *, cache: Path, scratch: Path, naive: bool,
                   timeout_s: float, rates: dict[str, float] | None = None, log=print) -> dict:
    """Peak memory of the extraction (and the naive way) for N and 10N windows, each in a fresh process.

    A run is stopped after ``timeout_s``; an extraction run only after three times what ``rates["extraction"]``
    (windows/s measured before) predicts plus two minutes, when that is longer. A stopped naive run still
    shows how far its memory had grown.
    """
    results = {}
    for kind in ("extraction", "limited", "naive") if naive else ("extraction", "limited"):
        for count in (n_windows, 10 * n_windows):
            rate = (rates or {}).get("extraction") if kind != "naive" else None
            limit = max(timeout_s, 3 * count / rate + 120) if rate else timeout_s
            results[f"{kind}_{count}"] = run_memory_child(kind, preset, count, batch_size, cache, scratch, limit)
            _log_memory_run(log, kind, results[f"{kind}_{count}"])
    return {"preset": preset, "windows": n_windows, "batch_size": batch_size, "runs": results}


def _log_memory_run(log, what: str, result: dict) -> None:
    if "failed" in result:
        log(f"  memory, {what}: {result['failed']}")
        return
    polled = result["polled_peak_kb"]
    log(f"  memory, {what}: {result['windows_done']:,} windows done, peak RSS "
        f"{result['end_kb']['VmHWM'] / 2**10:,.0f} MB, peak RssAnon {polled.get('RssAnon', 0) / 2**10:,.0f} MB, "
        f"peak RssFile {polled.get('RssFile', 0) / 2**10:,.0f} MB ({result['seconds']:.0f} s)")


def prepare_genome(cache: Path, mbp: int, log=print) -> Path:
    """A tokenized genome of about ``mbp`` Mbp (tiled demo genomes, ``bpe_scaling.make_genome``), tokenized
    with the cached tokenizer; built once under ``cache``. Returns its folder."""
    from bpe_scaling import make_genome

    from grover_core.tokenize_genome import tokenize_genome

    tokenizer_dir, _ = prepare_data(cache, log)
    tokenized = cache / f"tokenized_{mbp}mbp"
    if not (tokenized / "index.json").is_file():
        started = time.perf_counter()
        fasta = make_genome(cache / f"genome_{mbp}mbp.fa", mbp)
        tokenize_genome(fasta, tokenizer_dir, tokenized)
        log(f"  {mbp} Mbp genome generated and tokenized in {time.perf_counter() - started:.0f} s")
    return tokenized


def measure_genome_memory(preset: str, sizes: list[int], batch_size: int, *, cache: Path, scratch: Path,
                          timeout_s: float, log=print) -> dict:
    """Peak memory of extracting whole genomes of each size in ``sizes`` (Mbp), as is and with the streamed
    files' pages kept mapped (as before 2026-12-06), each in a fresh process."""
    results = {}
    for mbp in sizes:
        tokenized = prepare_genome(cache, mbp, log)
        for kind in GENOME_KINDS:
            results[f"{kind}_{mbp}"] = run_memory_child(kind, preset, 0, batch_size, cache, scratch, timeout_s,
                                                        tokenized=tokenized)
            _log_memory_run(log, f"{mbp} Mbp, {kind}", results[f"{kind}_{mbp}"])
    return {"preset": preset, "sizes": sizes, "batch_size": batch_size, "runs": results}


# ---------------------------------------------------------------------------------- self-similarity

def measure_self_similarity(scratch: Path, shape: tuple[int, int, int, int], log=print) -> dict:
    """Seconds of ``self_similarity_table`` on a random float16 memmap of ``shape``, page cache warm."""
    from analysis.self_similarity import self_similarity_table

    layers, vocab, k, hidden = shape
    size = int(np.prod(shape)) * 2
    free = shutil.disk_usage(scratch).free
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    figures = {"shape": list(shape), "bytes": size, "disk_free": free, "memory_available": available}
    if free < size + 2 * 2**30:
        figures["skipped"] = (f"not measured: {free / 2**30:.1f} GB free in {scratch}, "
                              f"{size / 2**30:.1f} GB + 2 GB needed")
        return figures
    path = scratch / f"self_similarity_bench_{os.getpid()}.npy"
    try:
        started = time.perf_counter()
        samples = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
        rng = np.random.default_rng(0)
        # Chunks are slices at random offsets of a pool of random normal values (drawing 3 G values one by
        # one would take minutes; the timing does not depend on the values).
        pool = rng.standard_normal(POOL_VALUES, dtype=np.float32).astype(np.float16)
        step = max(1, POOL_VALUES // 2 // (k * hidden))
        for layer in range(layers):
            for first in range(0, vocab, step):
                count = min(step, vocab - first)
                offset = int(rng.integers(0, POOL_VALUES - count * k * hidden + 1))
                samples[layer, first:first + count] = pool[offset:offset + count * k * hidden].reshape(count, k, hidden)
        samples.flush()
        del samples
        figures["write_s"] = time.perf_counter() - started
        # Warm the page cache: read the whole file once (it was just written, so most of it is there already).
        started = time.perf_counter()
        buffer = bytearray(64 * 2**20)
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass
        figures["warm_read_gb_per_s"] = size / 2**30 / (time.perf_counter() - started)
        log(f"  self-similarity input written ({figures['write_s']:.0f} s) and read once "
            f"({figures['warm_read_gb_per_s']:.1f} GB/s)")
        samples = np.load(path, mmap_mode="r")
        filled = np.full(vocab, k, dtype=np.int64)
        started = time.perf_counter()
        table = self_similarity_table(samples, filled)
        figures["seconds"] = time.perf_counter() - started
        figures["rows"] = len(table)
        del samples
    finally:
        path.unlink(missing_ok=True)
    return figures


# -------------------------------------------------------------------------------------------- GPU

def measure_gpu(*, tokenizer, genome, cache: Path, genome_mbp: int | None, scratch: Path, n_windows: int,
                batch_size: int, repeats: int, log=print) -> dict:
    """grover-base at 510 tokens on the GPU (bf16 autocast): extraction and bare windows/s; hg19 projection.

    The windows come from a tiled genome of ``genome_mbp`` Mbp (``prepare_genome``; 10 Mbp: 4,678
    windows of 510 tokens) or, with None, from ``genome`` (the demo genome: 2,522).

    The projection adds the call's one-off parts (set-up, prefault, final sort and writes: paid once
    per genome, about as much for hg19, whose samples fill the same file) to hg19's windows at the
    streaming loop's rate (the timed call's time less its one-off parts; timers that wait for the GPU and
    the reservoir's fill phase make that rate a conservative one).
    """
    if not torch.cuda.is_available():
        return {"measured": False, "reason": "no GPU on this machine: torch.cuda.is_available() is False"}
    try:
        described = "the demo genome (5.6 Mbp)"
        if genome_mbp:
            genome = TokenizedGenome.open(prepare_genome(cache, genome_mbp, log))
            described = f"{genome_mbp} Mbp tiled demo genome"
        log(f"grover-base on {torch.cuda.get_device_name(0)}: {n_windows} windows of {described}, batch {batch_size}")
        figures = measure_speed("grover-base", n_windows, batch_size, tokenizer=tokenizer, genome=genome,
                                repeats=repeats, scratch=scratch, device=torch.device("cuda"), naive=False,
                                checkpoint_in_breakdown=False, log=log)
    except Exception as error:  # a failure is reported, never a number
        return {"measured": False, "reason": f"GPU measurement failed: {type(error).__name__}: {error}"}
    figures["measured"] = True
    figures["genome"] = described
    figures["gpu"] = torch.cuda.get_device_name(0)
    figures["hg19_hours"] = (figures["one_off_s"] + HG19_WINDOWS / figures["streaming_windows_per_s"]) / 3600
    figures["hg19_hours_whole_calls"] = HG19_WINDOWS / figures["windows_per_s"]["extraction"] / 3600
    figures["hg19_hours_genome_scale"] = HG19_WINDOWS / figures["windows_per_s"]["extraction_genome_scale"] / 3600
    return figures


# ------------------------------------------------------------------------------------------- report

def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _table_head(*columns: str) -> list[str]:
    """A Markdown table's header and separator rows."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _against_targets(bare: float | None = None, *, naive: float | None = None) -> str:
    """A table cell: a ratio to the bare pass ("91.2% PASS") or to the naive way ("3.10x PASS"); "n/a" if not run."""
    if bare is not None:
        return f"{bare:.1%} {_verdict(bare >= BARE_TARGET)}"
    return "n/a" if naive is None else f"{naive:.2f}x {_verdict(naive >= NAIVE_TARGET)}"


def _mb(kb: float | None) -> str:
    return "n/a" if kb is None else f"{kb / 2**10:,.0f}"


def _memory_lines(memory: dict) -> list[str]:
    runs, n = memory["runs"], memory["windows"]
    lines = [f"Peak memory, `{memory['preset']}`, batch {memory['batch_size']}, each run in a fresh process that "
             "loads the data and builds the model first (all figures in MB, nothing subtracted). Peak RSS is the "
             "child's own VmHWM; RssAnon (its heap: tensors, numpy arrays) and RssFile (file pages mapped into "
             f"it: shared libraries, the memory-mapped `samples.npy` and window arrays) are peaks polled from "
             f"outside every {POLL_S * 1e3:.0f} ms, so a peak shorter than that can be missed; \"before\" is RSS "
             "after the model was built:", "",
             *_table_head("method", "windows", "seconds", "RSS before", "peak RSS (VmHWM)", "peak RssAnon",
                          "peak RssFile", "RssAnon at the end", "samples.npy size")]
    for kind, label in MEMORY_KINDS.items():
        for count in (n, 10 * n):
            r = runs.get(f"{kind}_{count}")
            if r is None:
                continue
            if "failed" in r:
                polled = r.get("polled_peak_kb") or {}
                lines.append(f"| {label} | {count} | {r['failed']} | | | {_mb(polled.get('RssAnon'))} so far | "
                             f"{_mb(polled.get('RssFile'))} so far | | |")
                continue
            polled = r["polled_peak_kb"]
            size = "" if r["samples_file_mb"] is None else f"{r['samples_file_mb']:,.0f} (sparse)"
            lines.append(f"| {label} | {count} | {r['seconds']:.0f} | {_mb(r['before_kb']['VmRSS'])} | "
                         f"{_mb(r['end_kb']['VmHWM'])} | {_mb(polled.get('RssAnon'))} | {_mb(polled.get('RssFile'))} | "
                         f"{_mb(r['end_kb']['RssAnon'])} | {size} |")
    lines.append("")
    for kind in MEMORY_KINDS:
        small, large = runs.get(f"{kind}_{n}"), runs.get(f"{kind}_{10 * n}")
        if (kind == "naive" and small and large and "failed" not in small and "failed" in large
                and large.get("polled_peak_kb", {}).get("RssAnon")):
            anon = large["polled_peak_kb"]["RssAnon"] / max(small["polled_peak_kb"].get("RssAnon", 1), 1)
            lines.append(f"- Naive way, for contrast: the {10 * n}-window run was {large['failed']}; its heap "
                         f"(RssAnon) had already reached {anon:.2f}x the {n}-window run's peak; it keeps every hidden "
                         "state, so it grows with the windows.")
            continue
        if not small or not large or "failed" in small or "failed" in large:
            if kind != "naive":
                lines.append(f"- {MEMORY_KINDS[kind].capitalize()}, memory ratio: not measured (a run failed). "
                             f"Target <= {MEMORY_TARGET:g}x: FAIL")
            continue
        rss = large["end_kb"]["VmHWM"] / small["end_kb"]["VmHWM"]
        anon = large["polled_peak_kb"].get("RssAnon", 0) / max(small["polled_peak_kb"].get("RssAnon", 1), 1)
        if kind == "extraction":
            lines.append(f"- Extraction, peak RSS at {10 * n} windows / at {n}: **{rss:.2f}x** "
                         f"(target <= {MEMORY_TARGET:g}x: {_verdict(rss <= MEMORY_TARGET)}); peak RssAnon "
                         f"{anon:.2f}x ({_verdict(anon <= MEMORY_TARGET)} on the heap alone).")
            file_growth = large["polled_peak_kb"].get("RssFile", 0) - small["polled_peak_kb"].get("RssFile", 0)
            if rss > MEMORY_TARGET and file_growth <= (large["samples_file_mb"] or 0) * 2**10:
                lines.append(f"  What grew is mapped pages of `samples.npy` ({_mb(file_growth)} MB more): a run faults "
                             "in only the sample slots its windows will fill, which grow with the windows until every "
                             f"token's K slots are used and then stop, at the file's fixed size "
                             f"({large['samples_file_mb']:,.0f} MB here: vocabulary x K x layers x hidden, not "
                             "windows). They are page cache of the output file, which the kernel can write back and "
                             "drop; `mapped_memory_mb` keeps them out of the RSS (next line).")
            for r in (small, large):
                polled = r["polled_peak_kb"]
                lines.append(f"  - {r['windows']} windows: of the {_mb(r['end_kb']['VmHWM'])} MB peak, mapped file "
                             f"pages (RssFile) reached {_mb(polled.get('RssFile'))} MB (shared libraries about "
                             f"{_mb(r['before_kb'].get('RssFile'))} MB before the call; the rest is `samples.npy`, "
                             f"{r['samples_file_mb']:,.0f} MB, and the window arrays) and the heap (RssAnon) "
                             f"{_mb(polled.get('RssAnon'))} MB ({_mb(r['before_kb'].get('RssAnon'))} MB before the "
                             "call).")
        elif kind == "limited":
            default = runs.get(f"extraction_{10 * n}") or {}
            cost = (f"; its {10 * n}-window run took {large['seconds']:.1f} s against {default['seconds']:.1f} s "
                    f"without the limit ({large['seconds'] / default['seconds']:.2f}x, one run each): pages of "
                    "`samples.npy` let go are faulted in again when samples land on them"
                    if "seconds" in default else "")
            lines.append(f"- Extraction with `mapped_memory_mb={LIMITED_MB:g}` (past {LIMITED_MB:g} MB of mapped file "
                         f"pages, those of `samples.npy` go back to the page cache), peak RSS at {10 * n} windows / "
                         f"at {n}: **{rss:.2f}x** (target <= {MEMORY_TARGET:g}x: {_verdict(rss <= MEMORY_TARGET)})"
                         f"{cost}.")
        else:
            lines.append(f"- Naive way, for contrast: peak RSS at {10 * n} windows / at {n}: {rss:.2f}x "
                         f"(peak RssAnon {anon:.2f}x): it keeps every hidden state, so it grows with the windows.")
    return lines


def _genome_memory_lines(memory: dict) -> list[str]:
    runs, sizes = memory["runs"], memory["sizes"]
    lines = [f"Peak memory over whole genomes, `{memory['preset']}`, batch {memory['batch_size']}: tiled demo "
             f"genomes of {' and '.join(f'{mbp} Mbp' for mbp in sizes)} (`bpe_scaling.make_genome`), tokenized with "
             "the same tokenizer, every window of the genome extracted with the default settings (K = 500, window "
             "embeddings on), each run in a fresh process; \"streamed pages kept mapped\" is the same run with "
             "`_MappedPages.release_streamed` a no-op (the genome's tokens and the window arrays stay mapped once "
             "touched, as before 2026-12-06; all figures in MB):",
             "", *_table_head("method", "genome", "tokens", "windows", "seconds", "RSS before", "peak RSS (VmHWM)",
                              "peak RssAnon", "peak RssFile", "samples.npy size", "window arrays size")]
    for kind, label in GENOME_KINDS.items():
        for mbp in sizes:
            r = runs.get(f"{kind}_{mbp}")
            if r is None:
                continue
            if "failed" in r:
                lines.append(f"| {label} | {mbp} Mbp | | | {r['failed']} | | | | | | |")
                continue
            polled = r["polled_peak_kb"]
            lines.append(f"| {label} | {mbp} Mbp | {r['genome_tokens']:,} | {r['windows_done']:,} | {r['seconds']:.0f} | "
                         f"{_mb(r['before_kb']['VmRSS'])} | {_mb(r['end_kb']['VmHWM'])} | "
                         f"{_mb(polled.get('RssAnon'))} | {_mb(polled.get('RssFile'))} | "
                         f"{r['samples_file_mb']:,.0f} (sparse) | {r['window_arrays_mb']:,.0f} |")
    lines.append("")
    small, large = sizes[0], sizes[-1]
    for kind, label in GENOME_KINDS.items():
        a, b = runs.get(f"{kind}_{small}"), runs.get(f"{kind}_{large}")
        if not a or not b or "failed" in a or "failed" in b:
            lines.append(f"- {label.capitalize()}: not measured (a run failed).")
            continue
        rss = b["end_kb"]["VmHWM"] / a["end_kb"]["VmHWM"]
        grew = (b["polled_peak_kb"].get("RssFile", 0) - a["polled_peak_kb"].get("RssFile", 0))
        verdict = f" (target <= {MEMORY_TARGET:g}x: {_verdict(rss <= MEMORY_TARGET)})" if kind == "genome" else ""
        lines.append(f"- {label.capitalize()}: peak RSS at {large} Mbp ({b['windows_done']:,} windows) / at {small} Mbp "
                     f"({a['windows_done']:,}): **{rss:.2f}x**{verdict}; peak RssFile {_mb(grew)} MB more.")
    return lines


def _where_time_goes(f: dict) -> list[str]:
    bd = f["breakdown_s"]
    total = bd["total"]
    names = sorted((k for k in bd if k != "total"), key=lambda k: -bd[k])
    lines = [f"Where one extraction call's time goes (`{f['preset']}`, {f['windows']} windows, {f['dtype']}, one more "
             "call with timers: wrapped functions of `grover_core.extract` and forward hooks on `model.base_model`, "
             "exclusive seconds; \"flush in X\" is `np.memmap.flush` called from X; \"other\" is what no timer saw; "
             f"{'this call checkpoints once, half-way' if f.get('breakdown_checkpoints', True) else 'no checkpoint'}"
             "). Parts marked one-off do not grow with the windows streamed:", "",
             *_table_head("part", "seconds", "share", "one-off")]
    for name in names:
        if bd[name] < 0.0005 * total and name != "forward":
            continue
        lines.append(f"| {name} | {bd[name]:.3f} | {bd[name] / total:.1%} | "
                     f"{'yes' if name in ONE_OFF_PARTS else ''} |")
    lines.append(f"| **total** | {total:.3f} | 100% | |")
    bare = statistics.mean(f["breakdown_bare_s"])
    around = " and ".join(f"{b:.2f}" for b in f["breakdown_bare_s"])
    lines += ["", f"A bare pass ({f['dtype']}, full model) over the same batches just before and just after this call "
              f"took {around} s; the encoder's forward inside the call "
              f"took {bd.get('forward', 0):.2f} s, so the rest of the call ({total - bd.get('forward', 0):.2f} s) is "
              f"the extractor's own work. This call ran at {f['call_over_bare']:.1%} of the bare pass's speed; without "
              f"the one-off parts ({f['one_off_s']:.2f} s) the streaming loop ran {f['streaming_windows_per_s']:.2f} "
              f"windows/s = {f['streaming_over_bare']:.1%} of the bare pass ({bare:.2f} s on average; one call, so "
              "read it as rough)."]
    return lines


def report(speed: list[dict], memory: dict | None, self_sim: dict | None, *, command: str,
           started: dict, ended: dict, genome_memory: dict | None = None) -> str:
    """The BENCHMARKS.md section (Markdown) for these results."""
    cpu = started["cpu"]
    dtype_note = ", ".join(f"{f['preset']}: {f['dtype']}" for f in speed)
    lines = [SECTION, "",
             f"`{command}` on this machine ({os.cpu_count()} cores{', ' + cpu if cpu else ''}, "
             f"{started['memory_gb']:.0f} GB RAM), {started['date']}; torch {torch.__version__}, "
             f"{torch.get_num_threads()} intra-op threads, numpy {np.__version__}, Python "
             f"{platform.python_version()}. Load average (1 min) {started['load']:.2f} at the start and "
             f"{ended['load']:.2f} at the end (the benchmark alone adds about 2). This VM's speed drifts by 10-30% "
             "within seconds, so every repeat runs each bare pass before and after the extractions (its bare time is "
             "the mean of the two) and the ratios are per repeat.", "",
             "Data: the demo genome (5.6 Mbp), a 600-cycle BPE learned on it and its tokenized genome, built as "
             "`build_run` builds them; randomly initialised models (`build_model(model_config(preset), tokenizer)`). "
             "All methods take the same windows: the extractor's own list (`window_table` with `max_windows`, "
             "evenly spread, full length). Extraction: one `extract_embeddings` call with `ExtractionConfig("
             f"max_windows=N, window_tokens=W, batch_size=B)` (defaults otherwise: K = {DEFAULT_K}, window "
             "embeddings on, `dtype=\"auto\"`, a checkpoint every 60 s) into a fresh folder, set-up and final writes "
             "included; it runs the encoder (`model.base_model`: the MLM head's logits are never needed) in the dtype "
             f"`auto` picks on this CPU ({dtype_note}: bf16 autocast where the CPU has native bf16, AMX / "
             "AVX512-BF16). Bare: "
             "batches of B pre-made windows through `model(input_ids, attention_mask, output_hidden_states=True)` "
             "(the full model, MLM head included) under `torch.inference_mode()`, nothing kept, in the extraction's "
             "dtype; \"bare, encoder only\" is the same through `model.base_model`. Naive: one window at a time "
             "through `model(..., output_hidden_states=True)` under `torch.no_grad()` in float32, every layer's hidden "
             "states kept as numpy arrays in a list, per-token means of every layer at the end. Each method warmed up "
             "once; medians of the repeats (a bare pass's repeat: the mean of its two runs); ratios are medians of "
             "per-repeat ratios. Targets: extraction >= "
             f"{BARE_TARGET:.0%} of bare (same dtype), extraction >= {NAIVE_TARGET:g}x naive (float32).", "",
             *_table_head("preset", "parameters", "layers x hidden", "window (tokens)", "windows", "batch", "repeats",
                          "dtype: extraction and bare / naive", "extraction windows/s", "bare windows/s",
                          "bare, encoder only windows/s", "naive windows/s", "extraction / bare (target >= 90%)",
                          "extraction / bare, encoder only", "extraction / naive (target >= 3x)",
                          "spread (extraction / bare / encoder only / naive)")]
    for f in speed:
        w, s = f["windows_per_s"], f["spread"]
        spread = " / ".join(f"{s[m]:.0%}" if m in s else "n/a" for m in ("extraction", "bare", "bare_encoder", "naive"))
        if max(s.values()) > HIGH_SPREAD:
            spread += " (high)"
        naive = f"{w['naive']:.2f}" if "naive" in w else "not run"
        lines.append(f"| {f['preset']} | {f['parameters'] / 1e6:.2f}M | {f['layers']} x {f['hidden']} | "
                     f"{f['window_tokens']} | {f['windows']} | {f['batch_size']} | {f['repeats']} | "
                     f"{f['dtype']} / {f['dtypes'].get('naive', 'n/a')} | {w['extraction']:.2f} | {w['bare']:.2f} | "
                     f"{w['bare_encoder']:.2f} | {naive} | {_against_targets(f['extraction_over_bare'])} | "
                     f"{f['extraction_over_bare_encoder']:.1%} | "
                     f"{_against_targets(naive=f.get('extraction_over_naive'))} | {spread} |")
    lines += ["", "A run this short sits in the reservoir's fill phase: nearly every occurrence's vectors, every "
              "layer, are copied into `samples.npy`, a write a genome-scale run makes for a fraction of a percent of "
              "its occurrences (the i-th occurrence of a token enters its bottom-K sample with probability "
              "min(1, K / i): `expected_sampled_share`; for hg19, these windows' token frequencies scaled to "
              f"{HG19_WINDOWS / 1e6:.1f} M windows of 510 tokens). \"Genome-scale sampling\" is the same extraction "
              "call, in the same repeats, with the smallest K under which these windows still write at least the "
              f"share hg19 would at K = {DEFAULT_K} (so it copies more than a genome run, not less); everything "
              "else (window embeddings, priorities, offers to the reservoir, the final writes) is unchanged:", "",
              *_table_head("preset", "K", f"occurrences written at K = {DEFAULT_K}, these windows",
                           "at that K, these windows", f"hg19 at K = {DEFAULT_K} (projected)",
                           "extraction, genome-scale sampling windows/s",
                           "/ bare (target >= 90%)", "/ bare, encoder only", "/ naive (target >= 3x)")]
    for f in speed:
        g, w = f["genome_scale"], f["windows_per_s"]
        lines.append(f"| {f['preset']} | {g['k']} | {g['default_share']:.1%} | {g['share']:.2%} | "
                     f"{g['genome_share']:.2%} | {w['extraction_genome_scale']:.2f} | "
                     f"{_against_targets(g['over_bare'])} | {g['over_bare_encoder']:.1%} | "
                     f"{_against_targets(naive=g.get('over_naive'))} |")
    contrast = [f for f in speed if "extraction_float32" in f["windows_per_s"]]
    if contrast:
        lines += ["", "For contrast, the same windows in float32 (extraction with `dtype=\"float32\"`, bare without "
                  "autocast), in the same repeats:", "",
                  *_table_head("preset", "extraction, float32 windows/s", "bare, float32 windows/s",
                               "extraction / bare, both float32", "bare in the extraction's dtype / bare in float32")]
        for f in contrast:
            w = f["windows_per_s"]
            lines.append(f"| {f['preset']} | {w['extraction_float32']:.2f} | {w['bare_float32']:.2f} | "
                         f"{f['extraction_float32_over_bare_float32']:.1%} | {f['bare_over_bare_float32']:.2f}x |")
    best = []
    for f in speed:
        b = f["best_windows_per_s"]
        naive = f", {b['extraction'] / b['naive']:.2f}x naive" if "naive" in b else ""
        best.append(f"{f['preset']}: extraction {b['extraction']:.2f}, bare {b['bare']:.2f}, encoder only "
                    f"{b['bare_encoder']:.2f}" + (f", naive {b['naive']:.2f}" if "naive" in b else "") +
                    f" windows/s, so extraction at {b['extraction'] / b['bare']:.1%} of bare{naive}")
    lines += ["", "Fastest repeat of each method (the least disturbed by other jobs; not from one repeat): " +
              "; ".join(best) + "."]
    noisy = [f["preset"] for f in speed if max(f["spread"].values()) > HIGH_SPREAD]
    if noisy:
        lines += ["", f"High variance (a method's repeats spread more than {HIGH_SPREAD:.0%} of their median) for "
                  f"{', '.join(noisy)}: other jobs shared the cores; the per-repeat ratios are the fairer figures."]
    shown = [m for m in METHODS if any(m in f["repeats_windows_per_s"] for f in speed)]
    lines += ["", "Every repeat (windows/s; load average at its end):", "",
              *_table_head("preset", "repeat", "load", *(LABELS[m] for m in shown), "extraction / bare",
                           "extraction / naive")]
    for f in speed:
        r = f["repeats_windows_per_s"]
        for i in range(f["repeats"]):
            cells = [f"{r[m][i]:.2f}" if m in r else "" for m in shown]
            e, b = r["extraction"][i], r["bare"][i]
            nv = r["naive"][i] if "naive" in r else None
            lines.append(f"| {f['preset']} | {i + 1} | {f['repeats_load'][i]:.1f} | " + " | ".join(cells) +
                         f" | {e / b:.1%} | {'' if nv is None else f'{e / nv:.2f}x'} |")
    for f in speed:
        lines += [""] + _where_time_goes(f)
    if memory:
        lines += [""] + _memory_lines(memory)
    if genome_memory:
        lines += [""] + _genome_memory_lines(genome_memory)
    lines.append("")
    if self_sim is None:
        lines.append("Self-similarity: not measured (skipped).")
    elif "skipped" in self_sim:
        lines.append(f"Self-similarity: {self_sim['skipped']}.")
    else:
        shape = " x ".join(str(d) for d in self_sim["shape"])
        ok = self_sim["seconds"] < SELF_SIMILARITY_TARGET_S
        lines.append(f"Self-similarity: `self_similarity_table(samples, filled)` on a float16 memmap [{shape}] "
                     f"(layers, vocabulary, K, hidden; {self_sim['bytes'] / 2**30:.1f} GB of random normal values, "
                     "slices at random offsets of a 128 MB pool, in a .npy file, every slot filled) with the page "
                     "cache warm (the file was written just before and then read once in full, at "
                     f"{self_sim['warm_read_gb_per_s']:.1f} GB/s; "
                     f"{self_sim['memory_available'] / 2**30:.0f} GB RAM were available), {THREADS} cores: "
                     f"**{self_sim['seconds']:.1f} s** for {self_sim['rows']:,} rows (target < "
                     f"{SELF_SIMILARITY_TARGET_S:.0f} s: {_verdict(ok)}). Not measured: a cold page cache.")
    lines += ["", f"GPU figures: the section \"{GPU_SECTION[3:]}\" (`--gpu-only` runs that part alone)."]
    return "\n".join(lines) + "\n"


def gpu_report(gpu: dict, *, command: str, started: dict) -> str:
    """The BENCHMARKS.md section for the GPU part (``measure_gpu``'s figures, or why there are none)."""
    lines = [GPU_SECTION, ""]
    if not gpu.get("measured"):
        lines.append(f"`{command}`, {started['date']}: not measured ({gpu['reason']}). No windows/s for "
                     "`grover-base` on a GPU and no projected time for hg19 are given.")
        return "\n".join(lines) + "\n"
    w, g = gpu["windows_per_s"], gpu["genome_scale"]
    h100 = "H100" in gpu["gpu"]
    verdict = _verdict(gpu["hg19_hours"] < HG19_TARGET_H) if h100 else f"target set for an H100, this is {gpu['gpu']}"
    lines += [f"`{command}` on {gpu['gpu']} ({started['date']}; torch {torch.__version__}, host: {os.cpu_count()} "
              f"cores): `{gpu['preset']}` ({gpu['parameters'] / 1e6:.1f}M parameters), randomly initialised, "
              f"{gpu['window_tokens']}-token windows of the {gpu['genome']}, {gpu['windows']} windows, batch "
              f"{gpu['batch_size']}, {gpu['dtype']} autocast (what `dtype=\"auto\"` picks on a GPU), {gpu['repeats']} "
              "repeats as on the CPU (each bare pass before and after the extractions), medians; the extraction "
              f"call as on the CPU, K = {DEFAULT_K}, window embeddings on, set-up and final writes included. The "
              "extraction leaves the attention mask out of batches without padding (most of them); the bare passes "
              "pass it, as a plain loop would.", "",
              *_table_head("method", "windows/s", "/ bare", "spread")]
    rows = [("extraction", LABELS["extraction"], f"{gpu['extraction_over_bare']:.1%}"),
            ("extraction_genome_scale", f"{LABELS['extraction_genome_scale']} (K = {g['k']})", f"{g['over_bare']:.1%}"),
            ("bare", LABELS["bare"], ""), ("bare_encoder", LABELS["bare_encoder"], "")]
    for method, label, ratio in rows:
        lines.append(f"| {label} | {w[method]:.1f} | {ratio} | {gpu['spread'][method]:.0%} |")
    lines += ["", f"Projected time for hg19 ({HG19_WINDOWS / 1e6:.1f} M windows of 510 tokens): the timed call's "
              f"one-off parts ({gpu['one_off_s']:.1f} s: set-up, prefault, the final sort and writes, paid once per "
              f"genome) + {HG19_WINDOWS:.1e} windows at its streaming loop's {gpu['streaming_windows_per_s']:.1f} "
              f"windows/s (timers that wait for the GPU, K = {DEFAULT_K} in its fill phase: conservative) = "
              f"**{gpu['hg19_hours'] * 60:.0f} min** (target < {HG19_TARGET_H * 60:.0f} min on one H100: {verdict}). "
              f"At the whole calls' rates, as if every {gpu['windows']} windows paid the one-off parts again: "
              f"{gpu['hg19_hours_whole_calls'] * 60:.0f} min (K = {DEFAULT_K}), "
              f"{gpu['hg19_hours_genome_scale'] * 60:.0f} min (genome-scale sampling). A projection from "
              f"{gpu['windows']} windows, not a whole-genome run.", "", *_where_time_goes(gpu)]
    return "\n".join(lines) + "\n"


def _machine_state() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    return {"date": dt.date.today().isoformat(), "load": os.getloadavg()[0], "cpu": cpu or platform.processor(),
            "memory_gb": memory}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", nargs="+", default=["grover-tiny", "grover-small"],
                        choices=list(DEFAULT_WINDOWS), help="model presets (the first one also gets the memory test)")
    parser.add_argument("--windows", type=int, nargs="+",
                        help="windows per preset (default: 4096 for grover-tiny, 256 for grover-small)")
    parser.add_argument("--batch-size", type=int, nargs="+", help="batch per preset (default: 32 / 16)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each speed measurement; medians reported")
    parser.add_argument("--memory-windows", type=int, default=1000, help="N of the memory test (10N is run too)")
    parser.add_argument("--also-float32", action="store_true",
                        help="also time extraction and bare in float32 when the extraction's dtype is not float32")
    parser.add_argument("--memory-timeout-s", type=float, default=300.0,
                        help="stop a memory run after this long (longer when the measured speed predicts it)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--genome-mbp", type=int, nargs="+", default=[10, 100],
                        help="genome sizes (Mbp) of the whole-genome memory test (first preset)")
    parser.add_argument("--skip-genome-memory", action="store_true")
    parser.add_argument("--skip-self-similarity", action="store_true")
    parser.add_argument("--gpu-windows", type=int, default=4096)
    parser.add_argument("--gpu-genome-mbp", type=int, default=10,
                        help="the GPU part's windows come from a tiled genome of this size (0: the demo genome)")
    parser.add_argument("--gpu-batch-size", type=int, default=64)
    parser.add_argument("--gpu-only", action="store_true",
                        help="only the GPU part (on a machine with a GPU); writes only its section")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (16 windows, 1 repeat, N = 8, self-similarity with K = 25), a smoke test; "
                             "prints only, BENCHMARKS.md is left alone")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "grover_extract_bench"),
                        help="where the demo genome, tokenizer and tokenized genome are built once")
    parser.add_argument("--scratch", default=tempfile.gettempdir(),
                        help="where extraction folders and the 6 GB self-similarity input go (deleted afterwards)")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument("--child", choices=[*MEMORY_KINDS, *GENOME_KINDS], help=argparse.SUPPRESS)
    parser.add_argument("--child-tokenized", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cache, scratch = Path(args.cache), Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)

    if args.child:  # a memory run: one preset, one window count
        result = child_main(args.child, args.preset[0], args.windows[0], args.batch_size[0], cache, scratch,
                            Path(args.child_tokenized) if args.child_tokenized else None)
        print("RESULT" + json.dumps(result), flush=True)
        return result

    command = " ".join(["python benchmarks/embedding_extraction.py", *(sys.argv[1:] if argv is None else argv)])
    torch.set_num_threads(THREADS)
    presets = args.preset
    windows = args.windows or [16 if args.quick else DEFAULT_WINDOWS[p] for p in presets]
    batches = args.batch_size or [DEFAULT_BATCH[p] for p in presets]
    if len(windows) != len(presets) or len(batches) != len(presets):
        parser.error("give one --windows and one --batch-size value per --preset (or none)")
    repeats = 1 if args.quick else args.repeats
    memory_windows = 8 if args.quick else args.memory_windows
    shape = (13, 601, 25, 768) if args.quick else SELF_SIMILARITY_SHAPE

    started, t0 = _machine_state(), time.perf_counter()
    print(f"{command}\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {started['load']:.2f}", flush=True)
    tokenizer, genome = load_data(cache)
    log = functools.partial(print, flush=True)
    gpu = functools.partial(measure_gpu, tokenizer=tokenizer, genome=genome, cache=cache,
                            genome_mbp=None if args.quick else args.gpu_genome_mbp or None, scratch=scratch,
                            n_windows=64 if args.quick else args.gpu_windows, batch_size=args.gpu_batch_size,
                            repeats=repeats, log=log)
    if args.gpu_only:
        results = {"gpu": gpu()}
        section = gpu_report(results["gpu"], command=command, started=started)
        print(f"\n{section}\n({time.perf_counter() - t0:.0f} s)")
        _write_results(args, results, [section] if results["gpu"].get("measured") else [])
        return results
    results: dict = {"speed": []}
    for preset, n, batch in zip(presets, windows, batches):
        log(f"{preset}: {n} windows, batch {batch}")
        results["speed"].append(measure_speed(preset, n, batch, tokenizer=tokenizer, genome=genome, repeats=repeats,
                                              scratch=scratch, device=torch.device("cpu"),
                                              also_float32=args.also_float32, log=log))
    results["memory"] = None if args.skip_memory else measure_memory(
        presets[0], memory_windows, batches[0], cache=cache, scratch=scratch, naive=True,
        timeout_s=args.memory_timeout_s, rates=results["speed"][0]["windows_per_s"], log=log)
    results["genome_memory"] = None if args.skip_genome_memory else measure_genome_memory(
        presets[0], [1, 2] if args.quick else args.genome_mbp, batches[0], cache=cache, scratch=scratch,
        timeout_s=max(args.memory_timeout_s, 1800.0), log=log)
    log(f"self-similarity on [{', '.join(map(str, shape))}]")
    results["self_similarity"] = None if args.skip_self_similarity else measure_self_similarity(scratch, shape, log)
    if results["self_similarity"] and "seconds" in results["self_similarity"]:
        log(f"  {results['self_similarity']['seconds']:.1f} s")
    results["gpu"] = gpu()
    ended = _machine_state()
    section = report(results["speed"], results["memory"], results["self_similarity"], command=command,
                     started=started, ended=ended, genome_memory=results["genome_memory"])
    gpu_section = gpu_report(results["gpu"], command=command, started=started)
    print(f"\n{section}\n{gpu_section}\n({time.perf_counter() - t0:.0f} s)")
    # A run without a GPU says so in the GPU section only where there are no GPU figures to keep.
    out = Path(args.out)
    keep_gpu = not results["gpu"].get("measured") and out.is_file() and f"\n{GPU_SECTION}\n" in out.read_text()
    _write_results(args, results, [section] + ([] if keep_gpu else [gpu_section]))
    return results


def _write_results(args, results: dict, sections: list[str]) -> None:
    """The raw figures to ``--json``; ``sections`` into ``--out`` (not with ``--no-write`` or ``--quick``)."""
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    if not args.no_write and not args.quick:
        for section in sections:
            write_section(Path(args.out), section)


if __name__ == "__main__":
    main()
