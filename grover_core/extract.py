"""Genome-wide embedding extraction into bounded summaries (``grover embed``).

Windows of the tokenized genome stream through the model with every layer's hidden states
(layer 0 = input embeddings .. layer L = last encoder layer). Nothing per occurrence is kept except
what fits a fixed budget, so memory depends on the vocabulary, the layers, the hidden size and K,
never on how many windows are streamed:

* per token and layer: the sum of its contextual embeddings and its occurrence count (-> means);
* per token: a uniform sample of up to K occurrences (all layers of each), with genome positions;
* per window (optional): the [CLS] vector and the mask-aware mean of its tokens per layer, and its
  intra-window similarity (mean cosine between its tokens' embeddings, self pairs excluded).

The occurrence sample is a bottom-K sample: each occurrence gets a pseudo-random priority hashed
from ``(seed, chromosome, start)`` and a token keeps the K occurrences of smallest priority. That
is a uniform sample without replacement, and it depends only on which occurrences were seen, not
on their order, the batch size, how the windows were split across processes, or where a run was
killed and resumed. Two partial samples merge exactly (keep the K smallest of the union). A
finished extraction stores each token's samples in ascending priority, so its first k samples are
a uniform sample of k, and the files do not depend on how the work was split.

Folder written (``EXTRACTION_FILES``); arrays are ``.npy`` (memory-mappable), tables Parquet::

    extraction.json            config, fingerprints, chromosomes, progress; "complete": true at the end
    windows.parquet            window_index, chromosome, first_token, n_tokens, start, end
    window_cls.npy             [windows, layers, hidden] float16   (when window embeddings are on)
    window_mean.npy            [windows, layers, hidden] float16
    window_similarity.npy      [windows, layers] float32
    token_means.safetensors    layer_<i>: [vocab, hidden] float32 mean; count: [vocab] int64
    samples.npy                [layers, vocab, K, hidden] float16: sampled occurrence embeddings
    sample_keys.npy            [vocab, K] uint64 priorities, ascending per token (EMPTY_KEY: unused)
    sample_chromosome.npy      [vocab, K] int32 index into extraction.json "chromosomes" (-1: unused)
    sample_start.npy           [vocab, K] int64 nucleotide start of the sampled occurrence
    checkpoint.npz             while running: the state to resume from (removed when complete)

Resuming after a kill: sums, counts and sample bookkeeping live in memory and are checkpointed
(``checkpoint.npz``, one atomic file) every ``checkpoint_seconds`` of wall time and/or every
``checkpoint_every`` windows: the memory-mapped arrays are flushed, then the checkpoint is written.
Sample embeddings go straight into ``samples.npy`` as they are chosen, so it may hold samples
chosen after the last checkpoint. That is harmless: which slot an occurrence takes depends only on
the bookkeeping and the batches (priorities, never embedding values), and a resumed run replays
the same batches from the checkpoint, so it writes every such slot again, with the same occurrence,
before it finishes. A finished extraction therefore equals one never killed.

A kill while the run finishes (sorting the samples, writing the final files) is not covered: rerun
from scratch then.

Speed: the model runs without its MLM head (``model.base_model``: only the hidden states are
used), in ``ExtractionConfig.dtype`` (``resolve_dtype``: bf16 autocast on a GPU and on a CPU with
native bf16). On the CPU, compiled passes (numba) read each layer's hidden states once per batch
and add them up in float64; on a GPU, torch operations do (float32 within a batch, float64 across
batches), and a batch's results come back in one copy per kind that the host writes while the
device already runs the next batch. ``checkpoint_seconds`` (60 s) keeps checkpoints rare.

Memory: the heap holds the sums (float64, vocabulary x layers x hidden), the sample bookkeeping and
one batch. The files are memory-mapped; the pages of the genome's tokens and of the window arrays are
let go after every batch, so they do not pile up in the RSS as the genome streams. ``samples.npy``
stays mapped as it fills (at most its size, vocabulary x K x layers x hidden), unless
``mapped_memory_mb`` caps what mapped files may add to the RSS (``_MappedPages``; slower, since
pages let go are faulted in again).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from grover_core.atomic import atomic_path, atomic_write_text
from grover_core.errors import GroverInputError
from grover_core.pretrain import collate_windows
from grover_core.tokenized_genome import TokenizedGenome
from grover_core.tokenizer import special_token_mask, token_strings

FORMAT_VERSION = 1
EMPTY_KEY = np.iinfo(np.uint64).max
EXTRACTION_JSON = "extraction.json"
WINDOWS = "windows.parquet"
WINDOW_CLS = "window_cls.npy"
WINDOW_MEAN = "window_mean.npy"
WINDOW_SIMILARITY = "window_similarity.npy"
TOKEN_MEANS = "token_means.safetensors"
SAMPLES = "samples.npy"
SAMPLE_KEYS = "sample_keys.npy"
SAMPLE_CHROMOSOME = "sample_chromosome.npy"
SAMPLE_START = "sample_start.npy"
CHECKPOINT = "checkpoint.npz"
EXTRACTION_FILES = (EXTRACTION_JSON, WINDOWS, WINDOW_CLS, WINDOW_MEAN, WINDOW_SIMILARITY, TOKEN_MEANS, SAMPLES,
                    SAMPLE_KEYS, SAMPLE_CHROMOSOME, SAMPLE_START)


@dataclass(frozen=True)
class ExtractionConfig:
    """What ``extract_embeddings`` streams and keeps."""

    window_tokens: int | None = None  # None: the model's longest window (max_position_embeddings - 2)
    max_windows: int | None = None  # None: tile every chromosome whole; else evenly spread over the genome
    chromosomes: tuple[str, ...] = ()  # empty: all
    regions: str | None = None  # a BED file: embed only these intervals (each cut into windows)
    batch_size: int = 32
    reservoir_size: int = 500  # K occurrences sampled per token (each with every layer)
    window_embeddings: bool = True  # keep [CLS] / mean / similarity per window (grows with windows, on disk)
    seed: int = 0  # occurrence priorities; the same seed samples the same occurrences
    checkpoint_every: int | None = None  # windows between checkpoints (None: by time only)
    checkpoint_seconds: float | None = 60.0  # wall-clock seconds between checkpoints (None: by windows only)
    dtype: str = "auto"  # the forward pass: "float32", "bfloat16", or "auto" (see resolve_dtype)
    # Most MB that memory-mapped files (samples.npy above all) may add to this process's RSS; past it
    # their pages are handed back to the page cache, to be faulted in again (see _MappedPages). None: no
    # limit; the genome's tokens and the window arrays are let go after every batch anyway.
    mapped_memory_mb: float | None = None

    def __post_init__(self):
        for name in ("batch_size", "reservoir_size", "checkpoint_every", "checkpoint_seconds", "mapped_memory_mb"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise GroverInputError(f"extraction setting {name} = {value!r}: it must be positive"
                                       + ("." if name in ("batch_size", "reservoir_size") else " (or None: off)."))


# Settings that change when state is saved or how much of the files stays mapped, never the result:
# a resumed run may change them.
NEUTRAL_FIELDS = ("checkpoint_every", "checkpoint_seconds", "mapped_memory_mb")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX-BF16 or AVX512-BF16), where bf16 beats float32.

    From the CPU flags in ``/proc/cpuinfo`` (Linux), else torch's own checks.
    """
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), None)
        if flags is not None:
            return "amx_bf16" in flags or "avx512_bf16" in flags
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    with contextlib.suppress(Exception):
        return any(check() for check in checks if check is not None)
    return False


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The forward pass's dtype for ``ExtractionConfig.dtype`` on ``device``.

    ``"auto"``: bfloat16 on a GPU, and on a CPU that has native bf16 (``cpu_has_native_bf16``: there
    bf16 autocast runs the model much faster; elsewhere bf16 is emulated and slower than float32);
    float32 otherwise.
    """
    if name == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
        return torch.bfloat16 if native else torch.float32
    if name not in DTYPES:
        raise GroverInputError(f"unknown extraction dtype {name!r}; choose auto, float32 or bfloat16.")
    return DTYPES[name]


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class ExtractionShard:
    """Which windows this process takes: every ``count``-th window starting at ``index`` (torchrun ranks)."""

    index: int = 0
    count: int = 1


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash of each value (SplitMix64 finaliser); uint64 arithmetic wraps on purpose."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def occurrence_priority(chromosome_index: int, starts: np.ndarray, *, seed: int) -> np.ndarray:
    """Return the sampling priority of occurrences at ``starts`` on a chromosome (smaller = kept first).

    A pure function of (seed, chromosome, start), so any process computes the same priority for the
    same occurrence. Never equals ``EMPTY_KEY``.
    """
    salt = _splitmix64(np.array([seed * 1_000_003 + chromosome_index], dtype=np.uint64))[0]
    keys = _splitmix64(np.asarray(starts, dtype=np.uint64) ^ salt)
    return np.minimum(keys, EMPTY_KEY - np.uint64(1))


def bottom_k_update(keys: np.ndarray, tokens: np.ndarray, candidate_keys: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offer occurrences to per-token bottom-K samples; update ``keys`` ``[vocab, K]`` in place.

    ``tokens[i]`` / ``candidate_keys[i]`` describe occurrence i. A token keeps the K smallest keys
    of what it held and what is offered (``EMPTY_KEY`` marks a free slot; on equal keys the held
    one stays). A token's filled slots are always ``0 .. filled - 1``: its offers, smallest first,
    take its lowest free slots, then (once it is full) the slot of its largest key while smaller.
    Compiled (``_bottom_k``, numba).

    Returns
    -------
    (accepted, token, slot): indices into the offered occurrences that were taken, and the token row
    and slot each now occupies. Every slot appears at most once.
    """
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    candidate_keys = np.ascontiguousarray(candidate_keys, dtype=np.uint64)
    out = np.empty((3, tokens.size), dtype=np.int64)
    taken = _compiled_kernels()["bottom_k"](keys, tokens, candidate_keys, out[0], out[1], out[2])
    return out[0, :taken], out[1, :taken], out[2, :taken]


def _bottom_k(keys, tokens, candidate, accepted, rows, slots):
    """``bottom_k_update``'s work (compiled by ``_compiled_kernels``); returns how many were taken.

    Groups the occurrences by token (a counting sort). Per token, offers that cannot all fit are
    sorted by key, after dropping those not below its largest key when it is full. Taken in
    ascending order, no slot is written twice: a later offer is larger than every earlier one.
    """
    vocab, capacity = keys.shape
    empty = np.uint64(0xFFFFFFFFFFFFFFFF)
    starts = np.zeros(vocab + 1, np.int64)
    for i in range(tokens.shape[0]):
        starts[tokens[i] + 1] += 1
    for t in range(vocab):
        starts[t + 1] += starts[t]
    order = np.empty(tokens.shape[0], np.int64)
    fill = starts[:-1].copy()
    for i in range(tokens.shape[0]):
        order[fill[tokens[i]]] = i
        fill[tokens[i]] += 1
    taken = 0
    for t in range(vocab):
        if starts[t] == starts[t + 1]:
            continue
        group = order[starts[t]:starts[t + 1]]
        row = keys[t]
        low, high = 0, capacity  # filled slots are a prefix: bisect for the first free one
        while low < high:
            middle = (low + high) // 2
            if row[middle] != empty:
                low = middle + 1
            else:
                high = middle
        filled = low
        top = -1  # the slot of the largest key, once full (-1: to be found)
        if filled + group.shape[0] > capacity:
            if filled == capacity:  # only keys below the largest held can enter
                top = 0
                for slot in range(1, capacity):
                    if row[slot] > row[top]:
                        top = slot
                kept = 0
                for g in range(group.shape[0]):
                    if candidate[group[g]] < row[top]:
                        group[kept] = group[g]
                        kept += 1
                group = group[:kept]
            group = group[np.argsort(candidate[group], kind="mergesort")]
        for g in range(group.shape[0]):
            i = group[g]
            if filled < capacity:
                slot = filled
                filled += 1
            else:
                if top < 0:
                    top = 0
                    for s in range(1, capacity):
                        if row[s] > row[top]:
                            top = s
                if candidate[i] >= row[top]:
                    break  # the rest of the group is larger still
                slot = top
                top = -1
            row[slot] = candidate[i]
            accepted[taken] = i
            rows[taken] = t
            slots[taken] = slot
            taken += 1
    return taken


def expected_sampled_share(counts: np.ndarray, capacity: int) -> float:
    """The expected share of occurrences a bottom-``capacity`` sample writes over a whole stream.

    ``counts``: occurrences per token. The i-th occurrence of a token (in any order: priorities are
    random) enters its sample with probability min(1, K / i), so a token seen n times writes
    min(n, K) + K (H(n) - H(K)) samples in expectation (H: harmonic numbers). Each write copies the
    occurrence's vectors of every layer into ``samples.npy``: this says how much of a run that work is
    (nearly all of a short run; a fraction of a percent of a genome-scale one). Exact for occurrences
    offered one at a time; in batches an offer beaten within its own batch is never written, so a
    run writes a little less.
    """
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0]
    if counts.size == 0:
        return 0.0
    k = float(capacity)
    harmonic = _harmonic(counts) - _harmonic(np.full_like(counts, k))
    written = np.where(counts <= k, counts, k + k * harmonic)
    return float(written.sum() / counts.sum())


def _harmonic(n: np.ndarray) -> np.ndarray:
    """H(n) = 1 + 1/2 + ... + 1/n: exact below 64, the asymptotic series (error < 1e-9) from there."""
    small = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, 64))])
    exact = small[np.minimum(n, 63).astype(np.int64)]
    safe = np.maximum(n, 1.0)
    series = np.log(safe) + np.euler_gamma + 1 / (2 * safe) - 1 / (12 * safe**2) + 1 / (120 * safe**4)
    return np.where(n < 64, exact, series)


def merge_bottom_k(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-token bottom-K samples of several processes exactly.

    ``parts`` holds ``(keys [vocab, K], _)`` per part (the second item is unused here; kept so callers
    pass their bookkeeping together). Returns ``(keys, part, slot)``, each ``[vocab, K]``: the merged
    keys, sorted ascending per token, and which part and slot each merged entry comes from
    (-1 for free slots).
    """
    stacked = np.concatenate([keys for keys, _ in parts], axis=1)  # [vocab, parts * K]
    capacity = parts[0][0].shape[1]
    best = np.argsort(stacked, axis=1, kind="stable")[:, :capacity]
    merged = np.take_along_axis(stacked, best, axis=1)
    part, slot = np.divmod(best, capacity)
    free = merged == EMPTY_KEY
    part[free], slot[free] = -1, -1
    return merged, part, slot


def fingerprint_model(model: PreTrainedModel) -> str:
    """Short content hash of a model's weights (which model produced an artifact)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes()[:1 << 16])  # a prefix per tensor is enough
    return digest.hexdigest()[:16]


def fingerprint_tokenizer(tokenizer: PreTrainedTokenizerBase) -> str:
    """Short hash of a tokenizer's vocabulary (token -> id)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


def read_regions(path: str | os.PathLike) -> list[tuple[str, int, int]]:
    """Read ``chrom start end`` from the first three columns of a BED file (headers skipped)."""
    path = Path(path)
    if not path.is_file():
        raise GroverInputError(f"regions file not found: {path}. Give a BED file (chrom, start, end).")
    regions = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        try:
            chromosome, start, end = fields[0], int(fields[1]), int(fields[2])
        except (IndexError, ValueError):
            raise GroverInputError(f"{path}, line {number}: expected 'chrom<TAB>start<TAB>end' with whole numbers; "
                                   f"got {line[:80]!r}.") from None
        if end <= start or start < 0:
            raise GroverInputError(f"{path}, line {number}: the interval {start}-{end} is empty or negative.")
        regions.append((chromosome, start, end))
    if not regions:
        raise GroverInputError(f"{path} holds no intervals.")
    return regions


def _region_windows(genome: TokenizedGenome, regions: list[tuple[str, int, int]], window_tokens: int
                    ) -> list[tuple[str, int, int]]:
    """Windows ``(chromosome, first token, n tokens)`` over the tokens starting inside each region."""
    missing = sorted({c for c, _, _ in regions} - set(genome.chromosomes))
    if missing:
        raise GroverInputError(f"the regions name chromosomes the tokenized genome {genome.path} lacks: "
                               f"{', '.join(missing[:5])}.")
    windows = []
    for chromosome, start, end in regions:
        starts = genome.starts(chromosome)
        first, stop = int(np.searchsorted(starts, start)), int(np.searchsorted(starts, end))
        windows += [(chromosome, f, min(window_tokens, stop - f)) for f in range(first, stop, window_tokens)]
    return windows


def window_table(genome: TokenizedGenome, *, window_tokens: int, max_windows: int | None,
                 chromosomes: tuple[str, ...] = (), token_lengths: np.ndarray | None = None,
                 regions: list[tuple[str, int, int]] | None = None) -> pd.DataFrame:
    """Return the windows an extraction streams: one row each with nucleotide coordinates.

    Windows tile each chromosome's tokens without overlap, the last one shorter, so a whole-genome
    extraction sees every token once; with ``regions`` they tile the tokens starting inside each
    region instead. ``max_windows`` keeps that many, evenly spread.

    Columns: ``window_index, chromosome, first_token, n_tokens, start, end`` (``end`` exclusive, the
    last token's start plus its length from ``token_lengths``; a window may span an N gap between two
    ACGT runs, as the tokens on both sides are adjacent in the tokenized genome).
    """
    missing = [name for name in chromosomes if name not in genome.tokens_per_chromosome]
    if missing:
        raise GroverInputError(
            f"chromosomes {', '.join(missing)} are not in the tokenized genome {genome.path}; "
            f"it holds {', '.join(genome.chromosomes)}.")
    if regions is not None:
        listed = _region_windows(genome, regions, window_tokens)
        names = np.array([name for name, _, _ in listed], dtype=object)
        firsts = np.array([first for _, first, _ in listed], dtype=np.int64)
        counts = np.array([count for _, _, count in listed], dtype=np.int64)
    else:  # as arrays, not a row per window in Python: hg19 has 1.4 M windows
        chosen = chromosomes or genome.chromosomes
        tiles = [np.arange(0, genome.tokens_per_chromosome[name], window_tokens, dtype=np.int64) for name in chosen]
        names = np.repeat(np.array(chosen, dtype=object), [tile.size for tile in tiles])
        firsts = np.concatenate(tiles) if tiles else np.zeros(0, dtype=np.int64)
        totals = np.repeat([genome.tokens_per_chromosome[name] for name in chosen], [tile.size for tile in tiles])
        counts = np.minimum(window_tokens, totals - firsts).astype(np.int64)
    if max_windows is not None and names.size > max_windows:
        keep = np.unique(np.linspace(0, names.size - 1, max_windows).round().astype(int))
        names, firsts, counts = names[keep], firsts[keep], counts[keep]
    if not names.size:
        raise GroverInputError(f"no windows to embed in {genome.path}: the chosen chromosomes or regions hold "
                               "no tokens.")
    starts, ends = np.zeros(names.size, dtype=np.int64), np.zeros(names.size, dtype=np.int64)
    for name in dict.fromkeys(names):
        rows = np.flatnonzero(names == name)
        last = firsts[rows] + counts[rows] - 1
        token_starts = genome.starts(name)
        starts[rows] = token_starts[firsts[rows]]
        lengths = token_lengths[genome.ids(name)[last]] if token_lengths is not None else np.ones(rows.size, int)
        ends[rows] = token_starts[last].astype(np.int64) + np.maximum(lengths, 1)
    return pd.DataFrame({"window_index": np.arange(names.size), "chromosome": names, "first_token": firsts,
                         "n_tokens": counts, "start": starts, "end": ends})


@dataclass
class _State:
    """Everything in memory that a checkpoint saves."""

    sums: torch.Tensor  # [layers, vocab, hidden] float64 on the model's device
    counts: np.ndarray  # [vocab] int64
    keys: np.ndarray  # [vocab, K] uint64
    sample_chromosome: np.ndarray  # [vocab, K] int32
    sample_start: np.ndarray  # [vocab, K] int64
    windows_done: int  # this shard's windows processed, in its own order


def _config_json(config: ExtractionConfig, window_tokens: int, shard: ExtractionShard, model_fp: str, tokenizer_fp: str,
                 chromosomes: list[str], n_windows: int, layers: int, hidden: int, vocab: int,
                 dtype: torch.dtype) -> dict:
    return {"format_version": FORMAT_VERSION, "config": asdict(config), "window_tokens": window_tokens,
            "shard": asdict(shard), "model_fingerprint": model_fp, "tokenizer_fingerprint": tokenizer_fp,
            "chromosomes": chromosomes, "n_windows": n_windows, "layers": layers, "hidden_size": hidden,
            "vocab_size": vocab, "dtype": str(dtype).removeprefix("torch.")}


def _job_identity(job: dict) -> dict:
    """What must match for a run to resume (or reuse) another's folder: all but the checkpoint cadence.

    Compared as JSON (as ``extraction.json`` stores it), so a tuple and the list it was saved as are equal.
    """
    job = json.loads(json.dumps(job))
    job["config"] = {k: v for k, v in (job.get("config") or {}).items() if k not in NEUTRAL_FIELDS}
    return job


def _same_job(previous: dict, current: dict) -> bool:
    previous, current = _job_identity(previous), _job_identity(current)
    return all(previous.get(key) == current[key] for key in current)


@torch.inference_mode()
def extract_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, genome: TokenizedGenome,
                       out_dir: str | os.PathLike, *, config: ExtractionConfig = ExtractionConfig(),
                       shard: ExtractionShard | None = None, progress: bool = False,
                       stop_after_windows: int | None = None) -> Path:
    """Stream the genome's windows through ``model`` and write the bounded summaries into ``out_dir``.

    Resumes when ``out_dir`` holds an unfinished extraction of the same job (same model, tokenizer,
    config and shard; the checkpoint cadence may differ); starts over when the job differs. With
    ``shard`` the process takes every ``shard.count``-th window (see ``merge_extractions``).
    ``stop_after_windows`` stops early after a checkpoint, without finishing (for tests of resuming;
    a real kill works the same way, minus that last checkpoint).

    Returns ``out_dir``; ``extraction.json`` says ``"complete": true`` once everything is written.
    """
    shard = shard or ExtractionShard()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    model.eval()
    dtype = resolve_dtype(config.dtype, device)
    encoder = model.base_model  # the hidden states are all we use: the MLM head's logits are never computed
    window_tokens = min(config.window_tokens or 10**9, model.config.max_position_embeddings - 2)
    token_lengths = np.array([0 if special else len(token) for token, special in
                              zip(token_strings(tokenizer), special_token_mask(tokenizer))], dtype=np.int64)
    windows = window_table(genome, window_tokens=window_tokens, max_windows=config.max_windows,
                           chromosomes=config.chromosomes, token_lengths=token_lengths,
                           regions=read_regions(config.regions) if config.regions else None)
    chromosomes = list(dict.fromkeys(windows["chromosome"]))
    chromosome_index = {name: i for i, name in enumerate(genome.chromosomes)}
    layers = model.config.num_hidden_layers + 1
    hidden = model.config.hidden_size
    vocab = model.config.vocab_size
    capacity = config.reservoir_size
    job = _config_json(config, window_tokens, shard, fingerprint_model(model), fingerprint_tokenizer(tokenizer),
                       genome.chromosomes, len(windows), layers, hidden, vocab, dtype)

    previous = _read_json(out_dir / EXTRACTION_JSON)
    resume = previous is not None and _same_job(previous, job) and (out_dir / CHECKPOINT).is_file()
    if previous is not None and previous.get("complete") and _same_job(previous, job):
        return out_dir  # already done
    my_windows = windows.iloc[shard.index::shard.count]
    if not resume:
        for name in EXTRACTION_FILES + (CHECKPOINT,):
            (out_dir / name).unlink(missing_ok=True)
        atomic_write_text(out_dir / EXTRACTION_JSON, json.dumps({**job, "complete": False, "windows_done": 0}, indent=2))
        _write_windows(windows, out_dir / WINDOWS)
        np.lib.format.open_memmap(out_dir / SAMPLES, mode="w+", dtype=np.float16, shape=(layers, vocab, capacity, hidden))
        if config.window_embeddings:  # full size in every shard: sparse files, each shard fills its rows
            _create_window_arrays(out_dir, len(windows), layers, hidden)
        state = _State(sums=torch.zeros((layers, vocab, hidden), dtype=torch.float64, device=device),
                       counts=np.zeros(vocab, dtype=np.int64),
                       keys=np.full((vocab, capacity), EMPTY_KEY, dtype=np.uint64),
                       sample_chromosome=np.full((vocab, capacity), -1, dtype=np.int32),
                       sample_start=np.zeros((vocab, capacity), dtype=np.int64),
                       windows_done=0)
    else:
        state = _load_checkpoint(out_dir / CHECKPOINT, device)
        # This run's cadence (it may differ) and the rest of the job as it is now.
        atomic_write_text(out_dir / EXTRACTION_JSON,
                          json.dumps({**job, "complete": False, "windows_done": state.windows_done}, indent=2))
    todo = my_windows.iloc[state.windows_done:]
    skip = np.zeros(vocab, dtype=bool)
    special = special_token_mask(tokenizer)
    skip[: min(vocab, special.size)] = special[:vocab]
    arrays = {name: (genome.ids(name), genome.starts(name)) for name in chromosomes}
    samples = np.load(out_dir / SAMPLES, mmap_mode="r+")
    window_arrays = _open_window_arrays(out_dir) if config.window_embeddings else None
    mapped = _MappedPages(streamed=[*(window_arrays or ()), *(a for pair in arrays.values() for a in pair)],
                          store=[samples], limit_mb=config.mapped_memory_mb)
    held = _expected_held(todo, arrays, state.keys, skip, after_chromosome=mapped.release_streamed)
    _prefault(samples, held, mapped)
    bar = tqdm(total=len(my_windows), initial=state.windows_done, desc="embedding windows", unit="window",
               disable=not progress)
    todo_chromosome, todo_first, todo_tokens, todo_index = (
        todo[column].to_numpy() for column in ("chromosome", "first_token", "n_tokens", "window_index"))
    processed_now, stop = 0, False
    pending = None  # the previous batch's writes, when its results are still on their way from the device
    last_checkpoint = time.monotonic()
    # One autocast region for the whole stream, so the weights are cast to bf16 once, not once per
    # batch; the extractor's own arithmetic runs outside it, in float32.
    with _autocast(device, dtype):
        for begin in range(0, len(todo), config.batch_size):
            chunk = slice(begin, begin + config.batch_size)
            ids_list, starts_list, chrom_list = [], [], []
            for name, first, count in zip(todo_chromosome[chunk], todo_first[chunk], todo_tokens[chunk]):
                ids, starts = arrays[name]
                ids_list.append(np.asarray(ids[first:first + count], dtype=np.int64))
                starts_list.append(np.asarray(starts[first:first + count], dtype=np.int64))
                chrom_list.append(chromosome_index[name])
            batch = collate_windows(ids_list, tokenizer)
            input_ids = batch["input_ids"].to(device, non_blocking=True)
            attention = batch["attention_mask"]
            # Without padding (most batches: full windows) the mask says nothing, and leaving it out spares
            # the encoder a look at its values on the device, which waits for the device to catch up.
            attention = None if bool(attention.all()) else attention.to(device, non_blocking=True)
            hidden_states = encoder(input_ids=input_ids, attention_mask=attention,
                                    output_hidden_states=True).hidden_states
            with torch.autocast(device_type=device.type, enabled=False):
                writes = _stream_batch(state, hidden_states, ids_list, starts_list, chrom_list, skip=skip,
                                       seed=config.seed, samples=samples, window_arrays=window_arrays,
                                       window_rows=todo_index[chunk])
            del hidden_states
            # The batch before this one writes its results now, while the device runs this one.
            pending = _write_pending(pending, writes)
            mapped.check()
            state.windows_done += len(ids_list)
            processed_now += len(ids_list)
            bar.update(len(ids_list))
            stop = stop_after_windows is not None and processed_now >= stop_after_windows
            every, seconds = config.checkpoint_every, config.checkpoint_seconds
            due = (every is not None and state.windows_done % every < len(ids_list)) or \
                (seconds is not None and time.monotonic() - last_checkpoint >= seconds)
            if stop or (due and state.windows_done < len(my_windows)):
                pending = _write_pending(pending)  # the files hold every batch the checkpoint counts
                _checkpoint(out_dir, state, samples, window_arrays, job)
                last_checkpoint = time.monotonic()
            if stop:
                break
    _write_pending(pending)
    bar.close()
    if stop:
        return out_dir
    _finish(out_dir, state, samples, job, mapped)
    return out_dir


def _offsets_within(sizes: np.ndarray) -> np.ndarray:
    """``0 .. n - 1`` for each ``n`` in ``sizes``, concatenated: each item's place inside its group."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.arange(sizes.sum(), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def _blocks(sizes: np.ndarray, budget: int) -> list[slice]:
    """Consecutive items cut into blocks of about ``budget`` (their ``sizes`` summed): a block starts at
    the first item past each multiple of ``budget``, so it holds at most ``budget`` plus its last item."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if not sizes.size:
        return []
    block = (np.cumsum(sizes) - sizes) // max(int(budget), 1)
    edges = [0, *(np.flatnonzero(np.diff(block)) + 1).tolist(), sizes.size]
    return [slice(begin, end) for begin, end in zip(edges[:-1], edges[1:])]


def _kept_occurrences(ids_list: list[np.ndarray], skip: np.ndarray, length: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a batch's non-special window tokens sit: ``(keep, positions, window)``.

    ``keep`` masks the concatenated window tokens; ``positions`` (flat index ``b * length + t`` into
    the padded ``[batch, length]`` input, after [CLS]) and ``window`` (b) describe the kept ones, in
    row-major order.
    """
    sizes = np.array([ids.size for ids in ids_list], dtype=np.int64)
    window = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
    keep = ~skip[np.concatenate(ids_list)]
    return keep, (window * length + 1 + _offsets_within(sizes))[keep], window[keep]


def _csr(crow: torch.Tensor, columns: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A sparse CSR matrix built from indices this module made (valid by construction: no checks)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, columns, values, size=size, check_invariants=False)


def _stream_batch(state: _State, hidden_states: tuple[torch.Tensor, ...], ids_list, starts_list, chrom_list, *,
                  skip: np.ndarray, seed: int, samples: np.memmap, window_arrays, window_rows: np.ndarray):
    """Add one batch to the sums, counts and sample bookkeeping; write its chosen samples and window vectors.

    ``hidden_states``: one ``[batch, length, hidden]`` tensor per layer (layer 0 = input embeddings).
    On the CPU, compiled passes (``_layer_sums``, ``_copy_rows``) read each layer once, spread over
    torch's threads (a layer each), the sums while this thread updates the samples' bookkeeping, and
    everything is written before this returns None. Elsewhere (a GPU; ``FUSED_CPU_PASS`` off) the work
    is queued on the device and its results start on their way to the host; this returns the function
    that waits for them and writes them (``_write_pending`` calls it once the next batch is queued, so
    the device does not wait for the host's writes).
    """
    n_batch, length, hidden = hidden_states[0].shape
    layers = len(hidden_states)
    vocab = state.sums.shape[1]
    keep, positions, window = _kept_occurrences(ids_list, skip, length)
    tokens = np.concatenate(ids_list)[keep]
    starts = np.concatenate(starts_list)[keep]
    chrom = np.repeat(np.asarray(chrom_list, dtype=np.int32), [ids.size for ids in ids_list])[keep]
    n_windows = n_batch if window_arrays is not None else 0
    fused = hidden_states[0].device.type == "cpu" and FUSED_CPU_PASS
    if fused:
        window_sum = np.zeros((layers, n_windows, hidden), dtype=np.float64)  # per layer and window: sum of
        unit_sum = np.zeros_like(window_sum)  # its tokens' vectors, and of their unit vectors
        kernels = _compiled_kernels()
        flats = [states.reshape(-1, hidden).float().contiguous() for states in hidden_states]  # float32 and up
        running = [_run(kernels["layer_sums"], flat.numpy(), positions, tokens, window, state.sums[layer].numpy(),
                        window_sum[layer], unit_sum[layer]) for layer, flat in enumerate(flats)]

    # Host-side bookkeeping, in the order of the kept positions (row-major over [batch, length]).
    state.counts += np.bincount(tokens, minlength=vocab)
    keys = np.empty(tokens.size, dtype=np.uint64)
    for c in np.unique(chrom):
        where = chrom == c
        keys[where] = occurrence_priority(int(c), starts[where], seed=seed)
    accepted, rows, slots = bottom_k_update(state.keys, tokens, keys)
    if accepted.size:
        capacity = state.keys.shape[1]
        ascending = np.argsort(rows * capacity + slots)  # write samples.npy front to back, page after page
        accepted, rows, slots = accepted[ascending], rows[ascending], slots[ascending]
        state.sample_chromosome[rows, slots] = chrom[accepted]
        state.sample_start[rows, slots] = starts[accepted]
    picked = positions[accepted]

    if fused:
        cls = np.zeros((n_windows, layers, hidden), dtype=np.float32)
        for job in running:
            job()
        if picked.size:
            # Float16 copies of the chosen vectors: convert the whole layer when most are chosen (one pass).
            whole = 4 * picked.size >= positions.size
            source = picked if whole else np.arange(picked.size)
            chosen = torch.from_numpy(picked)
            halves = [flat.half() if whole else flat.index_select(0, chosen).half() for flat in flats]
            _in_parallel(lambda layer: kernels["copy_rows"](halves[layer].numpy().view(np.uint16), source, rows, slots,
                                                            np.asarray(samples[layer]).view(np.uint16)),
                         list(range(layers)))
        if n_windows:
            for layer, flat in enumerate(flats):
                cls[:, layer] = flat[::length].numpy()
        _write_window_arrays(window_arrays, window_rows, window, window_sum, unit_sum, cls)
        return None
    results = _torch_layer_passes(state, hidden_states, positions, tokens, n_windows, picked)

    def write() -> None:
        chosen, window_sum, unit_sum, cls = results()
        for layer in range(len(chosen)):
            samples[layer, rows, slots] = chosen[layer]
        _write_window_arrays(window_arrays, window_rows, window, window_sum, unit_sum, cls)
    return write


def _write_pending(pending, writes=None):
    """Run ``pending`` (a batch's writes that ``_stream_batch`` left to do, or None); returns ``writes``."""
    if pending is not None:
        pending()
    return writes


def _write_window_arrays(window_arrays, window_rows, window, window_sum, unit_sum, cls) -> None:
    """Write a batch's rows of the window arrays (None: window embeddings off).

    ``window``: the window of each kept position; ``window_sum`` / ``unit_sum`` ``[layers, windows,
    hidden]``: each window's sum of its vectors and of their unit vectors; ``cls`` ``[windows, layers, hidden]``.
    """
    if window_arrays is None:
        return
    cls_out, mean_out, similarity_out = window_arrays
    n = np.bincount(window, minlength=len(window_rows)).astype(np.float64)
    # Mean pairwise cosine without self pairs: (|sum of unit vectors|^2 - n) / (n (n - 1)).
    pairs = (n * (n - 1))[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = np.where(pairs > 0, ((unit_sum * unit_sum).sum(axis=-1) - n[None, :]) / pairs, np.nan)
    cls_out[window_rows] = cls.astype(np.float16)
    mean_out[window_rows] = (window_sum / np.maximum(n, 1)[None, :, None]).transpose(1, 0, 2).astype(np.float16)
    similarity_out[window_rows] = similarity.T.astype(np.float32)


# The CPU path runs compiled passes over each layer (``_layer_sums``, ``_copy_rows``); False: the
# torch path that GPUs take, on the CPU too (tests compare the two).
FUSED_CPU_PASS = True


def _layer_sums(states, positions, tokens, window, sums, window_sum, unit_sum):
    """One layer of one batch, its hidden states read once (compiled by ``_compiled_kernels``).

    ``states`` ``[batch * length, hidden]`` float32: adds each kept position's vector to its token's
    row of ``sums`` (float64) and, when ``window_sum`` has rows, to its window's row of
    ``window_sum`` and its unit vector to ``unit_sum`` (float64).
    """
    hidden = states.shape[1]
    windows = window_sum.shape[0] > 0
    for i in range(positions.shape[0]):
        p, t, w = positions[i], tokens[i], window[i]
        norm2 = 0.0
        for h in range(hidden):
            x = states[p, h]
            sums[t, h] += x
            norm2 += x * x
        if windows:
            inverse = 1.0 / max(np.sqrt(norm2), 1e-12)
            for h in range(hidden):
                x = states[p, h]
                window_sum[w, h] += x
                unit_sum[w, h] += x * inverse


def _copy_rows(half, source, rows, slots, out):
    """Copy the float16 vectors ``half[source[j]]`` (as uint16 bits) to ``out[rows[j], slots[j]]``."""
    for j in range(source.shape[0]):
        q, r, s = source[j], rows[j], slots[j]
        for h in range(half.shape[1]):
            out[r, s, h] = half[q, h]


_KERNELS: dict = {}
_POOLS: dict = {}


def _compiled_kernels() -> dict:
    """``_layer_sums``, ``_copy_rows``, ``_bottom_k`` and ``_permute_slots`` compiled with numba (imported here:
    reading extractions must stay light). Reassociation lets the compiler vectorise the norm's sum (in a
    fixed order still: deterministic); no assumption about NaN or infinity is made. They release the GIL."""
    if not _KERNELS:
        import numba

        flags = {"reassoc", "contract", "nsz", "arcp"}
        _KERNELS["layer_sums"] = numba.njit(cache=True, nogil=True, fastmath=flags)(_layer_sums)
        _KERNELS["copy_rows"] = numba.njit(cache=True, nogil=True)(_copy_rows)
        _KERNELS["bottom_k"] = numba.njit(cache=True, nogil=True)(_bottom_k)
        _KERNELS["permute_slots"] = numba.njit(cache=True, nogil=True)(_permute_slots)
    return _KERNELS


def _in_parallel(function, items: list) -> None:
    """``function(item)`` for every item, spread over as many threads as torch uses.

    One pool job per thread (every n-th item), not one per item: thousands of small items (the
    prefault's ranges) would otherwise cost a hand-over each.
    """
    workers = max(1, torch.get_num_threads())

    def share(first: int) -> None:
        for item in items[first::workers]:
            function(item)

    waits = [_run(share, first) for first in range(min(workers, len(items)))]
    for wait in waits:
        wait()


def _run(kernel, *args):
    """Start ``kernel(*args)`` on a pool of as many threads as torch uses; returns a wait function."""
    workers = max(1, torch.get_num_threads())
    if workers == 1:
        kernel(*args)
        return lambda: None
    if workers not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grover-extract")
    return _POOLS[workers].submit(kernel, *args).result


def _torch_layer_passes(state: _State, hidden_states, positions, tokens, n_windows: int, picked):
    """``_layer_sums`` and ``_copy_rows``'s work with torch operations, on the hidden states' device (a GPU).

    Per layer: a sparse ``[vocab, batch * length]`` matrix (1 at each token's kept positions) times the
    hidden states gives the token sums (float32, added to the float64 totals on the device); with
    ``n_windows``, one batched product of ``[batch, 2, length]`` weights (1 and 1 / norm at the kept
    positions) gives each window's sum of vectors and of unit vectors. The results of every layer go
    to the host in one copy per kind (``_to_host_later``).

    Returns a function that waits for them: ``(chosen, window_sum, unit_sum, cls)`` as numpy arrays:
    the float16 vectors at ``picked`` ``[layers, picked, hidden]``, the window sums and sums of unit
    vectors ``[layers, n_windows, hidden]`` (float64) and the [CLS] vectors ``[n_windows, layers, hidden]``.
    """
    n_batch, length, hidden = hidden_states[0].shape
    layers = len(hidden_states)
    device = hidden_states[0].device
    vocab = state.sums.shape[1]
    per_token = np.bincount(tokens, minlength=vocab)
    crow = torch.from_numpy(np.concatenate([[0], np.cumsum(per_token)])).to(device)
    columns = torch.from_numpy(positions[np.argsort(tokens, kind="stable")]).to(device)
    by_token = _csr(crow, columns, torch.ones(tokens.size, dtype=torch.float32, device=device),
                    (vocab, n_batch * length))
    windows = n_windows > 0
    both = torch.empty((layers, n_windows, 2, hidden), dtype=torch.float32, device=device)
    cls = torch.empty((layers, n_windows, hidden), dtype=torch.float32, device=device)
    if windows:
        mask = np.zeros(n_batch * length, dtype=np.float32)
        mask[positions] = 1
        mask = torch.from_numpy(mask).to(device).view(n_batch, length)
        weights = torch.empty((n_batch, 2, length), dtype=torch.float32, device=device)
        weights[:, 0] = mask
    picked_t = torch.from_numpy(picked).to(device)
    chosen = torch.empty((layers, picked.size, hidden), dtype=torch.float16, device=device)
    for layer, states in enumerate(hidden_states):
        states = states.float()
        flat = states.view(-1, hidden)
        state.sums[layer] += by_token @ flat
        if windows:
            # The device runs these in order: the next layer's division waits for this layer's product.
            torch.div(mask, torch.linalg.vector_norm(states, dim=2).clamp_(min=1e-12), out=weights[:, 1])
            torch.bmm(weights, states, out=both[layer])
            cls[layer] = states[:, 0]
        if picked.size:
            chosen[layer] = flat.index_select(0, picked_t)
    fetch = _to_host_later([chosen, both, cls])

    def results():
        chosen_host, both_host, cls_host = fetch()
        # float32 sums to float64 on the host: exact, as on the device.
        return (chosen_host, both_host[:, :, 0].astype(np.float64), both_host[:, :, 1].astype(np.float64),
                cls_host.transpose(1, 0, 2))
    return results


def _to_host_later(tensors: list[torch.Tensor]):
    """Start copying ``tensors`` to the host; returns a function that waits for the copies: numpy arrays.

    From a CUDA device the copies go into pinned memory behind the work queued so far, and an event
    marks their end, so the host can queue the next batch and write this one's results meanwhile, and
    waits for these copies only. Elsewhere the copy is made now (on the CPU there is none).
    """
    if tensors and tensors[0].device.type == "cuda":
        host = [tensor.to("cpu", non_blocking=True) for tensor in tensors]  # pinned: non_blocking from CUDA
        copied = torch.cuda.Event()
        copied.record()

        def wait() -> list[np.ndarray]:
            copied.synchronize()
            return [tensor.numpy() for tensor in host]
        return wait
    arrays = [tensor.cpu().numpy() for tensor in tensors]
    return lambda: arrays


def _physical_memory() -> int:
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return 0


def _mapped_file_bytes() -> int | None:
    """Bytes of file pages mapped into this process now (``/proc/self/statm``'s shared: RssFile +
    RssShmem); None where there is no such file (not Linux)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[2]) * mmap.PAGESIZE
    except (OSError, IndexError, ValueError):
        return None


class _MappedPages:
    """Keeps the memory-mapped files an extraction goes through from piling up in this process's RSS.

    Once touched, a page of a memory-mapped file stays mapped until the file is closed: without this
    the RSS would grow with the windows streamed (``streamed``: the tokenized genome read, the window
    arrays written: about 60 GB for hg19 with grover-base) and, up to the file's size, with the sample store
    (``store``: ``samples.npy``, vocabulary x K x layers x hidden: 6 GB for grover-base at K = 500,
    41 GB for a 6-mer vocabulary). Those pages are the kernel's to reclaim, but RSS-based job limits
    (SLURM, PBS) and ``top`` count them.

    ``check`` (after every batch) unmaps the streamed arrays (``MADV_DONTNEED``): each batch reads and
    writes pages after the last one's, so nothing is touched twice (about 10 us a call, however large
    the file). The store is written at random, so unmapping it costs: its pages are faulted in again
    (thousands a batch in the reservoir's fill phase). It is unmapped only past ``limit_mb`` (None:
    never): when the process's mapped file pages grew more than that since the last release (or the
    start), less the largest growth between two checks. Nothing is lost: the data stays in the
    kernel's page cache (a shared mapping's dirty pages are written back as usual, and ``msync`` at a
    checkpoint still flushes them), and the next access maps the cached page again without reading
    the disk.
    """

    def __init__(self, *, streamed=(), store=(), limit_mb: float | None = None):
        self._streamed, self._store = _mappings(streamed), _mappings(store)
        self.limit = None if limit_mb is None else int(limit_mb * 2**20)
        self._baseline = self._previous = _mapped_file_bytes()
        self._step = 0  # the most the mapped pages grew from one check to the next
        self.releases = 0  # of the store

    def check(self) -> None:
        """Unmap the streamed arrays; unmap the store too if the limit could be passed before the next check."""
        self.release_streamed()
        if self.limit is None or self._baseline is None:
            return
        now = _mapped_file_bytes()
        if now is None:
            return
        self._step = max(self._step, now - self._previous)
        self._previous = now
        if now - self._baseline + self._step > self.limit:
            self.release()

    def release_streamed(self) -> None:
        _dont_need(self._streamed)

    def release(self) -> None:
        """Unmap everything."""
        _dont_need(self._streamed + self._store)
        self.releases += 1
        # What is still mapped now (other files, e.g. libraries loaded meanwhile) is the new floor.
        self._baseline = self._previous = _mapped_file_bytes()


def _mappings(arrays) -> list[mmap.mmap]:
    """The distinct ``mmap`` objects behind memory-mapped numpy arrays (others are left out)."""
    maps = (getattr(array, "_mmap", None) for array in arrays)
    return list({id(m): m for m in maps if m is not None}.values())


def _dont_need(maps: list[mmap.mmap]) -> None:
    for mapping in maps:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed; no madvise (not Linux)
            mapping.madvise(mmap.MADV_DONTNEED)


def _expected_held(todo: pd.DataFrame, arrays: dict, keys: np.ndarray, skip: np.ndarray, *,
                   after_chromosome=lambda: None, chunk_tokens: int = 1 << 19) -> np.ndarray:
    """How many sample slots each token will hold once ``todo`` is streamed: ``[vocab]``.

    A token holds its occurrences up to K: min(held + occurrences to come, K); its filled slots are
    always a prefix (see ``bottom_k_update``). The token ids are read at most ``chunk_tokens`` at a
    time (windows that follow each other read as one run), so the memory this takes does not grow
    with the chromosomes. ``after_chromosome()`` runs once each chromosome's tokens were read
    (``_MappedPages.release_streamed``: reading them all maps the whole tokenized genome).
    """
    vocab, capacity = keys.shape
    held = (keys != EMPTY_KEY).sum(axis=1)
    counts = np.zeros(vocab, dtype=np.int64)
    for name, group in todo.groupby("chromosome", sort=False):
        ids = arrays[name][0]
        firsts, lengths = group["first_token"].to_numpy(), group["n_tokens"].to_numpy()
        # Runs of windows each starting where the one before ended (a tiled chromosome: one run).
        starts_run = np.ones(firsts.size, dtype=bool)
        starts_run[1:] = firsts[1:] != firsts[:-1] + lengths[:-1]
        run = np.cumsum(starts_run) - 1
        run_first, run_length = firsts[starts_run], np.bincount(run, weights=lengths).astype(np.int64)
        # Pieces of at most chunk_tokens: long runs cut, short ones gathered together.
        n_pieces = -(-run_length // chunk_tokens)
        piece_first = np.repeat(run_first, n_pieces) + _offsets_within(n_pieces) * chunk_tokens
        piece_length = np.minimum(chunk_tokens, np.repeat(run_first + run_length, n_pieces) - piece_first)
        for block in _blocks(piece_length, chunk_tokens):
            first, length = piece_first[block], piece_length[block]
            if first.size == 1:
                chunk = ids[first[0]:first[0] + length[0]]
            else:
                chunk = ids[np.repeat(first, length) + _offsets_within(length)]
            counts += np.bincount(chunk, minlength=vocab)[:vocab]
        after_chromosome()
    counts[skip] = 0
    return np.minimum(held + counts, capacity)


# Ranges shorter than this are populated without read-ahead (``MADV_RANDOM``): the kernel would
# otherwise page in and zero up to ``read_ahead_kb`` (8 MB on this machine) of the sparse file around
# each one, so a run that fills a little of every token's rows would pay as if it filled the file.
SHORT_RANGE_BYTES = 2 * 2**20


def _prefault(samples: np.memmap, held: np.ndarray, mapped: _MappedPages | None = None) -> None:
    """Fault in (Linux, ``MADV_POPULATE_WRITE``) the part of ``samples.npy`` the slots in ``held`` will use.

    Pages of the sparse file faulted in one at a time, as samples land, cost about 1.5 s per GB
    touched, more than writing the samples; populating them up front is cheaper (spread over torch's
    threads). A token's filled slots are a prefix of its row, so per layer and token exactly slots
    ``0 .. held - 1`` are populated, and nothing else: a short run maps only what it fills.
    Consecutive full rows make one long range, which the kernel populates with large pages and
    read-ahead (a whole 1.1 GB file: about 0.25 s); short ranges go with read-ahead off
    (``MADV_RANDOM``), since it would page in and zero megabytes around each (grover-base after 32
    windows: 7,384 ranges, 318 MB, 0.15 s instead of 1.17 s).

    When that is more than ``mapped``'s limit, it is populated in rounds under the limit, each
    released (``_MappedPages.release``) before the next: the pages stay in the page cache, where
    the stream's writes find them (mapping a cached page again: about 0.07 s per GB).
    """
    layers, vocab, capacity, hidden = samples.shape
    slot_bytes = hidden * samples.itemsize
    if not held.any() or 4 * int(held.sum()) * layers * slot_bytes > _physical_memory() \
            or not sys.platform.startswith("linux") or getattr(samples, "_mmap", None) is None:
        return
    try:
        import ctypes

        madvise = ctypes.CDLL(None, use_errno=True).madvise  # through ctypes: the GIL is let go meanwhile
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (OSError, AttributeError):
        return
    populate = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux >= 5.14; older kernels refuse it (harmless)
    # Byte ranges [row start, row start + held) of every (layer, token) row, joined where they touch.
    row_start = samples.ctypes.data + np.arange(layers * vocab, dtype=np.int64) * capacity * slot_bytes
    row_end = row_start + np.tile(held, layers) * slot_bytes
    used = row_end > row_start
    row_start, row_end = row_start[used], row_end[used]
    joins = np.flatnonzero(row_end[:-1] != row_start[1:])  # a gap after these rows
    starts = np.concatenate([row_start[:1], row_start[joins + 1]])
    ends = np.concatenate([row_end[joins], row_end[-1:]])
    page = mmap.PAGESIZE
    starts -= starts % page  # madvise wants a page-aligned start
    limit = mapped.limit if mapped is not None else None
    piece = 64 * 2**20 if limit is None else max(min(64 * 2**20, limit // 2 // page * page), page)  # for the threads
    ranges = [(begin, min(begin + piece, end)) for start, end in zip(starts.tolist(), ends.tolist())
              for begin in range(start, end, piece)]

    def populate_range(begin_end: tuple[int, int]) -> None:
        madvise(begin_end[0], begin_end[1] - begin_end[0], populate)

    def populate_ranges(some: list[tuple[int, int]]) -> None:
        # The short ones with read-ahead off for the whole mapping, then back on for the long ones.
        # Advising each short range alone split the mapping into one kernel area (VMA) per range, and
        # was no faster (grover-base after 32 windows: 14,769 areas, 0.19 s against 0.15 s), and a 6-mer
        # vocabulary could pass vm.max_map_count (65,530). This way it stays one.
        short = [r for r in some if r[1] - r[0] < SHORT_RANGE_BYTES]
        if short:
            samples._mmap.madvise(mmap.MADV_RANDOM)
            try:
                _in_parallel(populate_range, short)
            finally:
                samples._mmap.madvise(mmap.MADV_NORMAL)
        _in_parallel(populate_range, [r for r in some if r[1] - r[0] >= SHORT_RANGE_BYTES])

    lengths = np.array([end - begin for begin, end in ranges], dtype=np.int64)
    if limit is None or lengths.sum() <= limit:
        populate_ranges(ranges)
        return
    for round_ in _blocks(lengths, max(limit // 2, page)):  # at most half the limit, plus a piece
        populate_ranges(ranges[round_])
        mapped.release()


def _create_window_arrays(out_dir: Path, n_windows: int, layers: int, hidden: int) -> None:
    for name in (WINDOW_CLS, WINDOW_MEAN):
        np.lib.format.open_memmap(out_dir / name, mode="w+", dtype=np.float16, shape=(n_windows, layers, hidden))
    similarity = np.lib.format.open_memmap(out_dir / WINDOW_SIMILARITY, mode="w+", dtype=np.float32,
                                           shape=(n_windows, layers))
    similarity[:] = np.nan


def _open_window_arrays(out_dir: Path):
    return tuple(np.load(out_dir / name, mmap_mode="r+") for name in (WINDOW_CLS, WINDOW_MEAN, WINDOW_SIMILARITY))


def _checkpoint(out_dir: Path, state: _State, samples, window_arrays, job: dict) -> None:
    """Flush the memory-mapped arrays, then save the bookkeeping atomically.

    The arrays then hold everything the checkpoint describes (and perhaps later writes, which a
    resumed run repeats); the checkpoint carries no embeddings.
    """
    samples.flush()
    if window_arrays is not None:
        for array in window_arrays:
            array.flush()
    with atomic_path(out_dir / CHECKPOINT) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, sums=state.sums.cpu().numpy(), counts=state.counts, keys=state.keys,
                     sample_chromosome=state.sample_chromosome, sample_start=state.sample_start,
                     windows_done=np.array(state.windows_done))
    atomic_write_text(out_dir / EXTRACTION_JSON,
                      json.dumps({**job, "complete": False, "windows_done": state.windows_done}, indent=2))


def _load_checkpoint(path: Path, device: torch.device) -> _State:
    with np.load(path, allow_pickle=False) as saved:
        return _State(sums=torch.from_numpy(saved["sums"]).to(device), counts=saved["counts"].copy(),
                      keys=saved["keys"].copy(), sample_chromosome=saved["sample_chromosome"].copy(),
                      sample_start=saved["sample_start"].copy(), windows_done=int(saved["windows_done"]))


def _write_windows(windows: pd.DataFrame, path: Path) -> None:
    """Write the window table atomically, then hand Arrow's freed buffers back: its allocator keeps
    them otherwise for the whole run (about 70 MB for 185,000 windows; hg19 has 1.4 M)."""
    import pyarrow

    with atomic_path(path) as tmp:
        windows.to_parquet(tmp, index=False)
    pyarrow.default_memory_pool().release_unused()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


def _finish(out_dir: Path, state: _State, samples, job: dict, mapped: _MappedPages | None = None) -> None:
    """Write the final summaries; mark the extraction complete last.

    The memory-mapped arrays are not flushed (msync'ed) here: like every file this package writes,
    they are safe against a killed process (the pages are in the kernel's page cache), not against a
    power cut, and the kernel writes them back on its own.
    """
    from safetensors.numpy import save_file

    _sort_slots_by_key(samples, state, mapped)
    _write_token_means(out_dir, state.sums.cpu().numpy(), state.counts, save_file)
    _save_npy(out_dir / SAMPLE_KEYS, state.keys)
    _save_npy(out_dir / SAMPLE_CHROMOSOME, state.sample_chromosome)
    _save_npy(out_dir / SAMPLE_START, state.sample_start)
    atomic_write_text(out_dir / EXTRACTION_JSON,
                      json.dumps({**job, "complete": True, "windows_done": state.windows_done}, indent=2))
    (out_dir / CHECKPOINT).unlink(missing_ok=True)


def _sort_slots_by_key(samples: np.memmap, state: _State, mapped: _MappedPages | None = None) -> None:
    """Put each token's samples in ascending priority: a canonical layout (a merge of shards gives the
    same file as one process) in which the first k samples are themselves a uniform sample of k.

    Each layer is permuted in place by a compiled pass (``_permute_slots``, the layers spread over
    torch's threads) that reads and writes only each token's filled slots: the free ones may be
    holes of the sparse file, which touching would fault in. Under ``mapped``'s limit, the tokens go
    in blocks of at most half the limit (all layers), each released once sorted.
    """
    layers, _, capacity, hidden = samples.shape
    order = np.argsort(state.keys, axis=1, kind="stable")
    filled = (state.keys != EMPTY_KEY).sum(axis=1)
    moved = (order != np.arange(capacity)).any(axis=1)
    if moved.any():
        permute = _compiled_kernels()["permute_slots"]
        rows = np.flatnonzero(moved)
        limited = mapped is not None and mapped.limit is not None
        blocks = [rows]
        if limited:
            blocks = [rows[block] for block in _blocks(filled[rows] * layers * hidden * samples.itemsize,
                                                       mapped.limit // 2)]
            mapped.release()
        for part in blocks:
            _in_parallel(lambda layer: permute(np.asarray(samples[layer]).view(np.uint16), order, filled, part),
                         list(range(layers)))
            if limited:
                mapped.release()
    state.keys = np.take_along_axis(state.keys, order, axis=1)
    state.sample_chromosome = np.take_along_axis(state.sample_chromosome, order, axis=1)
    state.sample_start = np.take_along_axis(state.sample_start, order, axis=1)


def _permute_slots(layer, order, filled, rows):
    """For each token row ``t`` in ``rows``: ``layer[t, j] = old layer[t, order[t, j]]`` for its filled slots
    (compiled by ``_compiled_kernels``; ``layer`` ``[vocab, K, hidden]`` as uint16 bits)."""
    scratch = np.empty((layer.shape[1], layer.shape[2]), dtype=layer.dtype)
    for t in rows:
        k = filled[t]
        for j in range(k):
            scratch[j] = layer[t, order[t, j]]
        for j in range(k):
            layer[t, j] = scratch[j]


def _write_token_means(out_dir: Path, sums: np.ndarray, counts: np.ndarray, save_file) -> None:
    means = sums / np.maximum(counts, 1)[None, :, None]
    tensors = {f"layer_{i}": means[i].astype(np.float32) for i in range(means.shape[0])}
    tensors["count"] = counts.astype(np.int64)
    with atomic_path(out_dir / TOKEN_MEANS) as tmp:
        save_file(tensors, str(tmp))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# How much of the shards' arrays a merge copies at a time (its heap and mapped pages stay about this size).
MERGE_BLOCK_BYTES = 64 * 2**20


def merge_extractions(part_dirs: list[str | os.PathLike], out_dir: str | os.PathLike) -> Path:
    """Merge the shards of one extraction (``ExtractionShard(i, n)`` for i < n) into ``out_dir`` exactly.

    Sums and counts add; occurrence samples keep the K smallest priorities of the union, so the
    result equals a single-process extraction's. Window arrays: each shard's rows are taken from
    the shard that wrote them (shards may share one folder's window files; see ``grover embed``).
    """
    from safetensors.numpy import load_file, save_file

    part_dirs = [Path(p) for p in part_dirs]
    out_dir = Path(out_dir)
    infos = [_read_json(p / EXTRACTION_JSON) for p in part_dirs]
    for path, info in zip(part_dirs, infos):
        if not info or not info.get("complete"):
            raise GroverInputError(f"{path} is not a complete extraction; finish it (rerun the same command) first.")
    shards = sorted((info["shard"]["index"], i) for i, info in enumerate(infos))
    count = infos[0]["shard"]["count"]
    if [s for s, _ in shards] != list(range(count)) or any(info["shard"]["count"] != count for info in infos):
        raise GroverInputError(f"merging needs shards 0..{count - 1} of one extraction exactly once; got "
                               f"{[info['shard'] for info in infos]}.")
    keys_fields = ("model_fingerprint", "tokenizer_fingerprint", "window_tokens", "n_windows", "chromosomes")
    if any(info[f] != infos[0][f] for info in infos for f in keys_fields):
        raise GroverInputError("the shards come from different models, tokenizers or window settings; "
                               "they cannot be merged.")
    out_dir.mkdir(parents=True, exist_ok=True)
    means = [load_file(str(p / TOKEN_MEANS)) for p in part_dirs]
    counts = sum(m["count"] for m in means)
    layers = infos[0]["layers"]
    sums = np.stack([sum(m[f"layer_{i}"].astype(np.float64) * m["count"][:, None] for m in means)
                     for i in range(layers)])
    _write_token_means(out_dir, sums, counts, save_file)
    parts = [(np.load(p / SAMPLE_KEYS), None) for p in part_dirs]
    merged, part, slot = merge_bottom_k(parts)
    chromosome = np.full(merged.shape, -1, dtype=np.int32)
    start = np.zeros(merged.shape, dtype=np.int64)
    part_samples = [np.load(p / SAMPLES, mmap_mode="r") for p in part_dirs]
    shape = part_samples[0].shape
    target = out_dir / SAMPLES
    with atomic_path(target) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        for index, path in enumerate(part_dirs):
            rows, dest = np.nonzero(part == index)
            src = slot[rows, dest]
            chromosome[rows, dest] = np.load(path / SAMPLE_CHROMOSOME)[rows, src]
            start[rows, dest] = np.load(path / SAMPLE_START)[rows, src]
            # In blocks (every layer of some samples), the pages let go after each: a whole layer at once
            # would gather vocabulary x K x hidden values on the heap (460 MB for grover-base).
            mapped = _MappedPages(streamed=[out, part_samples[index]])
            per_block = max(1, MERGE_BLOCK_BYTES // (shape[0] * shape[3] * out.itemsize))
            for begin in range(0, rows.size, per_block):
                block = slice(begin, begin + per_block)
                for layer in range(shape[0]):
                    out[layer, rows[block], dest[block]] = part_samples[index][layer, rows[block], src[block]]
                mapped.check()
        out.flush()
        del out
    _save_npy(out_dir / SAMPLE_KEYS, merged)
    _save_npy(out_dir / SAMPLE_CHROMOSOME, chromosome)
    _save_npy(out_dir / SAMPLE_START, start)
    first = part_dirs[shards[0][1]]
    if (first / WINDOWS).exists() and first.resolve() != out_dir.resolve():
        _write_windows(pd.read_parquet(first / WINDOWS), out_dir / WINDOWS)
    if infos[0]["config"]["window_embeddings"]:
        _merge_window_arrays(part_dirs, [info["shard"] for info in infos], out_dir)
    summary = {**infos[0], "shard": {"index": 0, "count": 1}, "merged_from": count,
               "windows_done": sum(info["windows_done"] for info in infos), "complete": True}
    atomic_write_text(out_dir / EXTRACTION_JSON, json.dumps(summary, indent=2))
    return out_dir


def _merge_window_arrays(part_dirs: list[Path], shards: list[dict], out_dir: Path) -> None:
    """Collect each shard's window rows (shard i wrote rows i, i + n, ...) into one set of arrays.

    Copied as strided views (no copy on the heap), ``MERGE_BLOCK_BYTES`` of a shard's rows at a time,
    the pages let go after each block: hg19's window arrays are about 56 GB with grover-base.
    """
    for name in (WINDOW_CLS, WINDOW_MEAN, WINDOW_SIMILARITY):
        source0 = np.load(part_dirs[0] / name, mmap_mode="r")
        with atomic_path(out_dir / name) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=source0.dtype, shape=source0.shape)
            for path, shard in zip(part_dirs, shards):
                source = np.load(path / name, mmap_mode="r")
                mapped = _MappedPages(streamed=[out, source])
                step = shard["count"]
                span = max(1, MERGE_BLOCK_BYTES // max(source[:1].nbytes, 1)) * step  # rows of the file per block
                for begin in range(shard["index"], source.shape[0], span):
                    out[begin:begin + span:step] = source[begin:begin + span:step]
                    mapped.check()
            out.flush()
            del out


@dataclass
class Extraction:
    """A finished extraction folder opened for reading (arrays memory-mapped)."""

    path: Path
    info: dict
    windows: pd.DataFrame

    @classmethod
    def open(cls, path: str | os.PathLike) -> Extraction:
        """Open ``path``; raise ``GroverInputError`` naming the fix when it is missing or unfinished."""
        path = Path(path)
        info = _read_json(path / EXTRACTION_JSON)
        if info is None:
            raise GroverInputError(f"{path} holds no embedding extraction; make one with `grover embed`.")
        if info.get("format_version") != FORMAT_VERSION:
            raise GroverInputError(f"{path} was written in extraction format {info.get('format_version')!r}; this "
                                   f"GROVER Lens reads format {FORMAT_VERSION}. Rerun `grover embed`.")
        if not info.get("complete"):
            raise GroverInputError(f"the extraction in {path} is unfinished ({info.get('windows_done')} windows "
                                   "done); rerun the same `grover embed` command to resume it.")
        return cls(path, info, pd.read_parquet(path / WINDOWS))

    @property
    def chromosomes(self) -> list[str]:
        return list(self.info["chromosomes"])

    def token_means(self) -> dict[str, np.ndarray]:
        from safetensors.numpy import load_file

        return load_file(str(self.path / TOKEN_MEANS))

    def samples(self) -> np.ndarray:
        """``[layers, vocab, K, hidden]`` float16, memory-mapped; valid slots per token in ``filled()``."""
        return np.load(self.path / SAMPLES, mmap_mode="r")

    def sample_keys(self) -> np.ndarray:
        return np.load(self.path / SAMPLE_KEYS)

    def filled(self) -> np.ndarray:
        """Number of valid sample slots per token; a token's samples sit in slots ``0 .. filled - 1``."""
        return (self.sample_keys() != EMPTY_KEY).sum(axis=1)

    def sample_positions(self) -> pd.DataFrame:
        """One row per filled sample slot: ``token_id, slot, chromosome, start``."""
        keys = self.sample_keys()
        rows, slots = np.nonzero(keys != EMPTY_KEY)
        chromosome = np.load(self.path / SAMPLE_CHROMOSOME)[rows, slots]
        names = np.asarray(self.chromosomes, dtype=object)
        return pd.DataFrame({"token_id": rows, "slot": slots, "chromosome": names[chromosome],
                             "start": np.load(self.path / SAMPLE_START)[rows, slots]})

    def has_window_embeddings(self) -> bool:
        return (self.path / WINDOW_MEAN).exists()

    def window_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cls, mean, similarity)``: ``[windows, layers, hidden]`` x2 float16 and ``[windows, layers]``."""
        if not self.has_window_embeddings():
            raise GroverInputError(f"{self.path} has no window embeddings; rerun `grover embed` without "
                                   "--no-window-embeddings.")
        return tuple(np.load(self.path / name, mmap_mode="r") for name in (WINDOW_CLS, WINDOW_MEAN, WINDOW_SIMILARITY))
