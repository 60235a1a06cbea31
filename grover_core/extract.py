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
every ``checkpoint_every`` windows as one atomic file that also carries the sample embeddings
chosen since the last checkpoint; only then are those written into ``samples.npy``. A resumed run
re-applies the last checkpoint's embeddings (idempotent) and goes on from its window, so the
memory-mapped array never holds a sample that the bookkeeping does not describe.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from grover_core.atomic import atomic_path, atomic_write_text
from grover_core.errors import GroverInputError
from grover_core.pretrain import autocast_for, collate_windows
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
    checkpoint_every: int = 2000  # windows between checkpoints (and at most max_pending_mb of new samples)
    max_pending_mb: int = 128  # new samples held in memory between checkpoints (about twice this at a flush)


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
    of what it held and what is offered (``EMPTY_KEY`` marks a free slot).

    Returns
    -------
    (accepted, token, slot): indices into the offered occurrences that were taken, and the token row
    and slot each now occupies. Every slot appears at most once.
    """
    capacity = keys.shape[1]
    if tokens.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    # Only occurrences below the token's current K-th key can enter.
    threshold = keys.max(axis=1)
    offered = np.flatnonzero(candidate_keys < threshold[tokens])
    if offered.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    order = offered[np.lexsort((candidate_keys[offered], tokens[offered]))]
    rows, first = np.unique(tokens[order], return_index=True)
    rank = np.arange(order.size) - np.repeat(first, np.diff(np.append(first, order.size)))
    keep = rank < capacity
    order, rank = order[keep], rank[keep]
    row_of = np.searchsorted(rows, tokens[order])
    offer_matrix = np.full((rows.size, capacity), EMPTY_KEY, dtype=np.uint64)
    offer_matrix[row_of, rank] = candidate_keys[order]
    index_matrix = np.full((rows.size, capacity), -1, dtype=np.int64)
    index_matrix[row_of, rank] = order
    held = keys[rows]
    merged = np.concatenate([held, offer_matrix], axis=1)
    # Stable: on equal keys (free slots) the held entry wins, so padding never displaces anything.
    chosen = np.zeros(merged.shape, dtype=bool)
    best = np.argsort(merged, axis=1, kind="stable")[:, :capacity]
    np.put_along_axis(chosen, best, True, axis=1)
    taken_row, taken_col = np.nonzero(chosen[:, capacity:])
    n_taken = np.bincount(taken_row, minlength=rows.size)
    # Slots to write: every evicted entry first, then the lowest free slots, so a token's samples
    # always fill slots 0..filled-1 (readers take a prefix).
    slot_index = np.broadcast_to(np.arange(capacity), held.shape)
    evicted = ~chosen[:, :capacity] & (held != EMPTY_KEY)
    score = np.where(evicted, -1.0, np.where(held == EMPTY_KEY, slot_index, np.inf))
    ranked = np.argsort(score, axis=1, kind="stable")
    use = np.arange(capacity)[None, :] < n_taken[:, None]
    target_row, target_rank = np.nonzero(use)
    freed_slot = ranked[target_row, target_rank]
    # Row-major order pairs the i-th target slot of a row with the i-th accepted offer of that row.
    assert np.array_equal(target_row, taken_row)
    accepted = index_matrix[taken_row, taken_col]
    token_rows = rows[taken_row]
    keys[token_rows, freed_slot] = offer_matrix[taken_row, taken_col]
    return accepted, token_rows.astype(np.int64), freed_slot.astype(np.int64)


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
        windows = _region_windows(genome, regions, window_tokens)
    else:
        windows = [(name, first, min(window_tokens, genome.tokens_per_chromosome[name] - first))
                   for name in (chromosomes or genome.chromosomes)
                   for first in range(0, genome.tokens_per_chromosome[name], window_tokens)]
    if max_windows is not None and len(windows) > max_windows:
        keep = np.unique(np.linspace(0, len(windows) - 1, max_windows).round().astype(int))
        windows = [windows[i] for i in keep]
    if not windows:
        raise GroverInputError(f"no windows to embed in {genome.path}: the chosen chromosomes or regions hold "
                               "no tokens.")
    rows = []
    for index, (name, first, count) in enumerate(windows):
        starts, ids = genome.starts(name), genome.ids(name)
        last = first + count - 1
        length = int(token_lengths[ids[last]]) if token_lengths is not None else 1
        rows.append((index, name, first, count, int(starts[first]), int(starts[last]) + max(length, 1)))
    return pd.DataFrame(rows, columns=["window_index", "chromosome", "first_token", "n_tokens", "start", "end"])


@dataclass
class _State:
    """Everything in memory that a checkpoint saves."""

    sums: torch.Tensor  # [vocab, layers * hidden] float64 on the model's device (one index_add per batch)
    counts: np.ndarray  # [vocab] int64
    keys: np.ndarray  # [vocab, K] uint64
    sample_chromosome: np.ndarray  # [vocab, K] int32
    sample_start: np.ndarray  # [vocab, K] int64
    windows_done: int  # this shard's windows processed, in its own order
    pending_flat: list[np.ndarray]  # token * K + slot of samples chosen since the last checkpoint
    pending_embeddings: list[np.ndarray]  # [n, layers, hidden] float16 each

    def pending_bytes(self) -> int:
        return sum(e.nbytes for e in self.pending_embeddings)


def _config_json(config: ExtractionConfig, window_tokens: int, shard: ExtractionShard, model_fp: str, tokenizer_fp: str,
                 chromosomes: list[str], n_windows: int, layers: int, hidden: int, vocab: int) -> dict:
    return {"format_version": FORMAT_VERSION, "config": asdict(config), "window_tokens": window_tokens,
            "shard": asdict(shard), "model_fingerprint": model_fp, "tokenizer_fingerprint": tokenizer_fp,
            "chromosomes": chromosomes, "n_windows": n_windows, "layers": layers, "hidden_size": hidden,
            "vocab_size": vocab}


def _same_job(previous: dict, current: dict) -> bool:
    return all(previous.get(key) == current[key] for key in current)


@torch.inference_mode()
def extract_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, genome: TokenizedGenome,
                       out_dir: str | os.PathLike, *, config: ExtractionConfig = ExtractionConfig(),
                       shard: ExtractionShard | None = None, progress: bool = False,
                       stop_after_windows: int | None = None) -> Path:
    """Stream the genome's windows through ``model`` and write the bounded summaries into ``out_dir``.

    Resumes when ``out_dir`` holds an unfinished extraction of the same job (same model, tokenizer,
    config and shard); starts over when the job differs. With ``shard`` the process takes every
    ``shard.count``-th window (see ``merge_extractions``). ``stop_after_windows`` stops early
    without finishing (for tests of resuming; a real kill works the same way).

    Returns ``out_dir``; ``extraction.json`` says ``"complete": true`` once everything is written.
    """
    shard = shard or ExtractionShard()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    model.eval()
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
                       genome.chromosomes, len(windows), layers, hidden, vocab)

    previous = _read_json(out_dir / EXTRACTION_JSON)
    resume = previous is not None and _same_job(previous, job) and (out_dir / CHECKPOINT).is_file()
    if previous is not None and previous.get("complete") and _same_job(previous, job):
        return out_dir  # already done
    my_windows = windows.iloc[shard.index::shard.count]
    if not resume:
        for name in EXTRACTION_FILES + (CHECKPOINT,):
            (out_dir / name).unlink(missing_ok=True)
        atomic_write_text(out_dir / EXTRACTION_JSON, json.dumps({**job, "complete": False, "windows_done": 0}, indent=2))
        with atomic_path(out_dir / WINDOWS) as tmp:
            windows.to_parquet(tmp, index=False)
        np.lib.format.open_memmap(out_dir / SAMPLES, mode="w+", dtype=np.float16, shape=(layers, vocab, capacity, hidden))
        if config.window_embeddings:  # full size in every shard: sparse files, each shard fills its rows
            _create_window_arrays(out_dir, len(windows), layers, hidden)
    samples = _open_for_scattered_writes(out_dir / SAMPLES)
    window_arrays = _open_window_arrays(out_dir) if config.window_embeddings else None
    if resume:
        state = _load_checkpoint(out_dir / CHECKPOINT, device)
        _apply_pending(samples, state, capacity)  # idempotent: a kill may have come before or after it
        state.pending_flat, state.pending_embeddings = [], []
    else:
        state = _State(sums=torch.zeros((vocab, layers * hidden), dtype=torch.float64, device=device),
                       counts=np.zeros(vocab, dtype=np.int64),
                       keys=np.full((vocab, capacity), EMPTY_KEY, dtype=np.uint64),
                       sample_chromosome=np.full((vocab, capacity), -1, dtype=np.int32),
                       sample_start=np.zeros((vocab, capacity), dtype=np.int64),
                       windows_done=0, pending_flat=[], pending_embeddings=[])

    skip = np.zeros(vocab, dtype=bool)
    special = special_token_mask(tokenizer)
    skip[: min(vocab, special.size)] = special[:vocab]
    skip_device = torch.from_numpy(skip).to(device)
    arrays = {name: (genome.ids(name), genome.starts(name)) for name in chromosomes}
    todo = my_windows.iloc[state.windows_done:]
    bar = tqdm(total=len(my_windows), initial=state.windows_done, desc="embedding windows", unit="window",
               disable=not progress)
    processed_now = 0
    for begin in range(0, len(todo), config.batch_size):
        chunk = todo.iloc[begin:begin + config.batch_size]
        ids_list, starts_list, chrom_list = [], [], []
        for name, first, count in zip(chunk["chromosome"], chunk["first_token"], chunk["n_tokens"]):
            ids, starts = arrays[name]
            ids_list.append(np.asarray(ids[first:first + count], dtype=np.int64))
            starts_list.append(np.asarray(starts[first:first + count], dtype=np.int64))
            chrom_list.append(chromosome_index[name])
        batch = collate_windows(ids_list, tokenizer)
        input_ids = batch["input_ids"].to(device, non_blocking=True)
        attention = batch["attention_mask"].to(device, non_blocking=True)
        with autocast_for(device):
            out = model(input_ids=input_ids, attention_mask=attention, output_hidden_states=True)
        # One [batch, length, layers, hidden] float32 tensor: every later step reads it in one pass.
        stacked = torch.stack(out.hidden_states, dim=2).float()
        del out
        _accumulate(state, stacked, input_ids, attention, skip_device, ids_list, starts_list, chrom_list,
                    config=config, capacity=capacity, layers=layers, skip=skip)
        if window_arrays is not None:
            _write_window_rows(window_arrays, chunk["window_index"].to_numpy(), stacked, input_ids,
                               attention, skip_device)
        state.windows_done += len(chunk)
        processed_now += len(chunk)
        bar.update(len(chunk))
        due = (state.windows_done % config.checkpoint_every < len(chunk)
               or state.pending_bytes() > config.max_pending_mb * 2**20)
        if due and state.windows_done < len(my_windows):
            _checkpoint(out_dir, state, samples, window_arrays, capacity, job)
        if stop_after_windows is not None and processed_now >= stop_after_windows:
            _checkpoint(out_dir, state, samples, window_arrays, capacity, job)
            bar.close()
            return out_dir
    bar.close()
    _finish(out_dir, state, samples, window_arrays, capacity, job)
    return out_dir


def _accumulate(state: _State, stacked: torch.Tensor, input_ids: torch.Tensor, attention: torch.Tensor,
                skip_device: torch.Tensor, ids_list, starts_list, chrom_list, *, config: ExtractionConfig,
                capacity: int, layers: int, skip: np.ndarray) -> None:
    """Add one batch (``stacked``: [batch, length, layers, hidden]) to the sums, counts and samples."""
    keep = (~skip_device[input_ids]) & attention.bool()  # [batch, length]
    flat = stacked.reshape(-1, stacked.shape[2] * stacked.shape[3])[keep.flatten()]  # [kept, layers * hidden]
    kept_ids = input_ids.flatten()[keep.flatten()]
    # Sum in float32 within the batch (a few thousand vectors), accumulate across batches in float64.
    batch_sums = torch.zeros(state.sums.shape, dtype=torch.float32, device=flat.device)
    batch_sums.index_add_(0, kept_ids, flat)
    state.sums += batch_sums
    # Host-side bookkeeping, in the order of the kept positions (row-major over [batch, length]).
    tokens = np.concatenate(ids_list)
    starts = np.concatenate(starts_list)
    chrom = np.concatenate([np.full(ids.size, c, dtype=np.int32) for ids, c in zip(ids_list, chrom_list)])
    host_keep = ~skip[tokens]
    tokens, starts, chrom = tokens[host_keep], starts[host_keep], chrom[host_keep]
    state.counts += np.bincount(tokens, minlength=state.counts.size)
    keys = np.empty(tokens.size, dtype=np.uint64)
    for c in np.unique(chrom):
        where = chrom == c
        keys[where] = occurrence_priority(int(c), starts[where], seed=config.seed)
    accepted, rows, slots = bottom_k_update(state.keys, tokens, keys)
    if accepted.size == 0:
        return
    state.sample_chromosome[rows, slots] = chrom[accepted]
    state.sample_start[rows, slots] = starts[accepted]
    # The kept device positions are in the same order as the host arrays (both row-major, specials out).
    picked = flat[torch.from_numpy(accepted).to(flat.device)].view(-1, layers, stacked.shape[3])
    state.pending_flat.append(rows * capacity + slots)
    state.pending_embeddings.append(picked.to(torch.float16).cpu().numpy())


def _window_vectors(stacked: torch.Tensor, input_ids: torch.Tensor, attention: torch.Tensor,
                    skip_device: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per window and layer: the [CLS] vector, the mean of its tokens, the mean pairwise cosine of its tokens.

    ``stacked`` is [batch, length, layers, hidden]; returns [batch, layers, hidden] x2 and [batch, layers].
    """
    tokens = ((~skip_device[input_ids]) & attention.bool()).float()  # [batch, length]
    n = tokens.sum(dim=1)[:, None]  # [batch, 1]
    mean = torch.einsum("bt,btlh->blh", tokens, stacked) / n.clamp(min=1)[..., None]
    # Sum of unit vectors: weight each token by mask / norm instead of building a normalised copy.
    weights = tokens[:, :, None] / stacked.norm(dim=-1).clamp(min=1e-12)  # [batch, length, layers]
    total = torch.einsum("btl,btlh->blh", weights, stacked)
    pairs = n * (n - 1)
    similarity = ((total * total).sum(dim=-1) - n) / pairs.clamp(min=1)
    similarity = torch.where(pairs > 0, similarity, torch.full_like(similarity, float("nan")))
    return stacked[:, 0], mean, similarity


def _write_window_rows(window_arrays, rows: np.ndarray, stacked, input_ids, attention, skip_device) -> None:
    cls_out, mean_out, similarity_out = window_arrays
    cls, mean, similarity = _window_vectors(stacked, input_ids, attention, skip_device)
    cls_out[rows] = cls.to(torch.float16).cpu().numpy()
    mean_out[rows] = mean.to(torch.float16).cpu().numpy()
    similarity_out[rows] = similarity.cpu().numpy()


def _open_for_scattered_writes(path: Path) -> np.memmap:
    """Memory-map an .npy for writing scattered rows; tell the kernel not to read ahead.

    Samples land in scattered slots; with the default read-ahead every page fault pulls megabytes of
    the (sparse) file in, which made writing the samples slower than the model's forward pass.
    """
    array = np.load(path, mmap_mode="r+")
    mapping = getattr(array, "_mmap", None)
    if mapping is not None and hasattr(mapping, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        mapping.madvise(mmap.MADV_RANDOM)
    return array


def _create_window_arrays(out_dir: Path, n_windows: int, layers: int, hidden: int) -> None:
    for name in (WINDOW_CLS, WINDOW_MEAN):
        np.lib.format.open_memmap(out_dir / name, mode="w+", dtype=np.float16, shape=(n_windows, layers, hidden))
    similarity = np.lib.format.open_memmap(out_dir / WINDOW_SIMILARITY, mode="w+", dtype=np.float32,
                                           shape=(n_windows, layers))
    similarity[:] = np.nan


def _open_window_arrays(out_dir: Path):
    return tuple(np.load(out_dir / name, mmap_mode="r+") for name in (WINDOW_CLS, WINDOW_MEAN, WINDOW_SIMILARITY))


def _apply_pending(samples: np.memmap, state: _State, capacity: int) -> None:
    """Write the samples chosen since the last checkpoint into ``samples.npy`` (last choice per slot wins)."""
    if not state.pending_flat:
        return
    flat = np.concatenate(state.pending_flat)
    embeddings = state.pending_embeddings[0] if len(state.pending_embeddings) == 1 else \
        np.concatenate(state.pending_embeddings)
    # A slot refilled twice keeps its latest sample: take the last occurrence of each slot, in slot order.
    last = flat.size - 1 - np.unique(flat[::-1], return_index=True)[1]
    rows, slots = np.divmod(flat[last], capacity)
    for layer in range(samples.shape[0]):  # one layer at a time: no second full copy of the pending samples
        samples[layer, rows, slots] = embeddings[last, layer]
    samples.flush()


def _checkpoint(out_dir: Path, state: _State, samples, window_arrays, capacity: int, job: dict) -> None:
    """Save the in-memory state atomically, then write the pending samples into the memory-mapped array."""
    if window_arrays is not None:
        for array in window_arrays:
            array.flush()
    flat = np.concatenate(state.pending_flat) if state.pending_flat else np.zeros(0, dtype=np.int64)
    embeddings = (np.concatenate(state.pending_embeddings) if state.pending_embeddings
                  else np.zeros((0, samples.shape[0], samples.shape[3]), dtype=np.float16))
    with atomic_path(out_dir / CHECKPOINT) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, sums=state.sums.cpu().numpy(), counts=state.counts, keys=state.keys,
                     sample_chromosome=state.sample_chromosome, sample_start=state.sample_start,
                     windows_done=np.array(state.windows_done), pending_flat=flat, pending_embeddings=embeddings)
    _apply_pending(samples, state, capacity)
    state.pending_flat, state.pending_embeddings = [], []
    atomic_write_text(out_dir / EXTRACTION_JSON,
                      json.dumps({**job, "complete": False, "windows_done": state.windows_done}, indent=2))


def _load_checkpoint(path: Path, device: torch.device) -> _State:
    with np.load(path, allow_pickle=False) as saved:
        return _State(sums=torch.from_numpy(saved["sums"]).to(device), counts=saved["counts"].copy(),
                      keys=saved["keys"].copy(), sample_chromosome=saved["sample_chromosome"].copy(),
                      sample_start=saved["sample_start"].copy(), windows_done=int(saved["windows_done"]),
                      pending_flat=[saved["pending_flat"].copy()],
                      pending_embeddings=[saved["pending_embeddings"].copy()])


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


def _finish(out_dir: Path, state: _State, samples, window_arrays, capacity: int, job: dict) -> None:
    """Write the final summaries; mark the extraction complete last."""
    from safetensors.numpy import save_file

    _apply_pending(samples, state, capacity)
    _sort_slots_by_key(samples, state)
    if window_arrays is not None:
        for array in window_arrays:
            array.flush()
    vocab = state.sums.shape[0]
    sums = state.sums.cpu().numpy().reshape(vocab, samples.shape[0], -1).transpose(1, 0, 2)  # [layers, vocab, hidden]
    _write_token_means(out_dir, sums, state.counts, save_file)
    _save_npy(out_dir / SAMPLE_KEYS, state.keys)
    _save_npy(out_dir / SAMPLE_CHROMOSOME, state.sample_chromosome)
    _save_npy(out_dir / SAMPLE_START, state.sample_start)
    atomic_write_text(out_dir / EXTRACTION_JSON,
                      json.dumps({**job, "complete": True, "windows_done": state.windows_done}, indent=2))
    (out_dir / CHECKPOINT).unlink(missing_ok=True)


def _sort_slots_by_key(samples: np.memmap, state: _State, *, block: int = 64) -> None:
    """Put each token's samples in ascending priority: a canonical layout (a merge of shards gives the
    same file as one process) in which the first k samples are themselves a uniform sample of k."""
    order = np.argsort(state.keys, axis=1, kind="stable")
    moved = np.flatnonzero((order != np.arange(order.shape[1])).any(axis=1))
    filled = (state.keys != EMPTY_KEY).sum(axis=1)
    for begin in range(0, moved.size, block):
        rows = moved[begin:begin + block]
        k = int(filled[rows].max())  # free slots sit after the filled ones and stay put: move only 0..k-1
        for layer in range(samples.shape[0]):
            samples[layer, rows, :k] = samples[layer, rows[:, None], order[rows, :k]]
    samples.flush()
    state.keys = np.take_along_axis(state.keys, order, axis=1)
    state.sample_chromosome = np.take_along_axis(state.sample_chromosome, order, axis=1)
    state.sample_start = np.take_along_axis(state.sample_start, order, axis=1)


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
            for layer in range(shape[0]):
                out[layer, rows, dest] = part_samples[index][layer, rows, src]
        out.flush()
        del out
    _save_npy(out_dir / SAMPLE_KEYS, merged)
    _save_npy(out_dir / SAMPLE_CHROMOSOME, chromosome)
    _save_npy(out_dir / SAMPLE_START, start)
    first = part_dirs[shards[0][1]]
    if (first / WINDOWS).exists() and first.resolve() != out_dir.resolve():
        windows = pd.read_parquet(first / WINDOWS)
        with atomic_path(out_dir / WINDOWS) as tmp:
            windows.to_parquet(tmp, index=False)
    if infos[0]["config"]["window_embeddings"]:
        _merge_window_arrays(part_dirs, [info["shard"] for info in infos], out_dir)
    summary = {**infos[0], "shard": {"index": 0, "count": 1}, "merged_from": count,
               "windows_done": sum(info["windows_done"] for info in infos), "complete": True}
    atomic_write_text(out_dir / EXTRACTION_JSON, json.dumps(summary, indent=2))
    return out_dir


def _merge_window_arrays(part_dirs: list[Path], shards: list[dict], out_dir: Path) -> None:
    """Collect each shard's window rows (shard i wrote rows i, i + n, ...) into one set of arrays."""
    for name in (WINDOW_CLS, WINDOW_MEAN, WINDOW_SIMILARITY):
        source0 = np.load(part_dirs[0] / name, mmap_mode="r")
        with atomic_path(out_dir / name) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=source0.dtype, shape=source0.shape)
            for path, shard in zip(part_dirs, shards):
                rows = np.arange(shard["index"], source0.shape[0], shard["count"])
                out[rows] = np.load(path / name, mmap_mode="r")[rows]
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
