"""Fixed k-mer vocabularies (the baselines GROVER is compared with), as Hugging Face tokenizers.

Id layout, the same special tokens as our BPE vocabularies::

    0..4                [PAD] [UNK] [CLS] [SEP] [MASK]
    5 .. 5+4^k-1        every k-mer, in lexicographic order (AA..A, AA..C, ..., TT..T)
    then, for k > 1     every 1-mer, then every 2-mer, ..., every (k-1)-mer, each in lexicographic order

Segmentation rules (our ``encode_kmers`` and the Hugging Face tokenizer agree exactly):

* Every A/C/G/T run is cut on its own; any other letter is a boundary and becomes [UNK].
* Non-overlapping (``overlapping=False``): the run is cut into consecutive k-mers from its start; the
  remainder (fewer than k nucleotides) becomes one shorter token. ``ACGTACG`` with k=3: ACG TAC G.
* Overlapping (``overlapping=True``, DNABERT style, stride 1): every k-mer starting at positions
  0 .. n-k of the run; a run shorter than k becomes one shorter token. ``ACGTA`` with k=3: ACG CGT GTA.

A ``tokenizers`` pipeline cannot emit overlapping tokens (its tokens partition the input text), so
the overlapping tokenizer works as DNABERT's did: its input is the k-mers already written out and
separated by spaces (``kmer_text``); given a raw sequence it returns [UNK]. The non-overlapping
tokenizer takes raw sequence (spaces in it are dropped, so ``kmer_text`` output works too).
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from grover_core.errors import GroverInputError
from grover_core.genome import NUCLEOTIDES, acgt_runs, encode_nucleotides
from grover_core.tokenizer import MODEL_MAX_LENGTH, SPECIAL_TOKENS, dna_normalizer, save_tokenizer, wrap_dna_tokenizer

MAX_K = 8  # 4^8 = 65,536 k-mers; beyond that the embedding matrix dwarfs the model


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise GroverInputError(f"k-mer length must be a whole number from 1 to {MAX_K}, got {k!r}.")


def kmer_tokens(k: int) -> list[str]:
    """Token strings in id order after the special tokens: all k-mers, then the 1..k-1-mers."""
    _check_k(k)
    lengths = [k] + list(range(1, k))
    return ["".join(letters) for length in lengths for letters in itertools.product(NUCLEOTIDES, repeat=length)]


def _short_offsets(k: int) -> np.ndarray:
    """``offsets[L]`` is the tokenizer id of the all-A token of length L < k."""
    offsets = np.zeros(k + 1, dtype=np.int64)
    first = len(SPECIAL_TOKENS) + 4**k
    for length in range(1, k):
        offsets[length] = first
        first += 4**length
    offsets[k] = len(SPECIAL_TOKENS)
    return offsets


def _values(codes: np.ndarray, k: int, step: int) -> np.ndarray:
    """Base-4 value of the k-mers starting at 0, step, 2*step, ... (only those that fit)."""
    count = (codes.size - k) // step + 1 if codes.size >= k else 0
    values = np.zeros(count, dtype=np.int32)
    if not count:
        return values
    stop = (count - 1) * step + 1
    for j in range(k):  # in place: one int32 array, not k temporaries, for a 250 Mb run
        values *= 4
        values += codes[j:j + stop:step]
    return values


def encode_kmers(codes: np.ndarray, k: int, *, overlapping: bool = False) -> np.ndarray:
    """Return the tokenizer ids (int32) of one A/C/G/T run (codes 0..3) cut into k-mers.

    See the module docstring for the rules; the Hugging Face tokenizer of ``build_kmer_tokenizer``
    gives the same ids.
    """
    _check_k(k)
    codes = np.asarray(codes)
    if codes.size and int(codes.max()) > 3:
        raise ValueError("encode_kmers takes one A/C/G/T run (codes 0..3); split at other letters first")
    offsets = _short_offsets(k)
    n = codes.size
    if n < k:
        if n == 0:
            return np.zeros(0, dtype=np.int32)
        return np.array([offsets[n] + _values(codes, n, 1)[0]], dtype=np.int32)
    ids = _values(codes, k, 1 if overlapping else k)
    ids += len(SPECIAL_TOKENS)
    tail = 0 if overlapping else n % k
    if tail:
        ids = np.append(ids, np.int32(offsets[tail] + _values(codes[n - tail:], tail, 1)[0]))
    return ids


def kmer_starts(length: int, k: int, *, overlapping: bool = False) -> np.ndarray:
    """Start (0-based, within the run) of each token ``encode_kmers`` makes from a run of ``length``."""
    if length < k:
        return np.zeros(1 if length else 0, dtype=np.int64)
    if overlapping:
        return np.arange(length - k + 1, dtype=np.int64)
    return np.arange(0, length, k, dtype=np.int64)


def kmer_text(sequence: str, k: int, *, overlapping: bool = False) -> str:
    """Write a sequence as its k-mer tokens separated by spaces (DNABERT-style tokenizer input).

    Each A/C/G/T run is cut by the rules of ``encode_kmers``; every other letter stands alone.
    """
    _check_k(k)
    codes = encode_nucleotides(sequence)
    words: list[str] = []
    position = 0
    for start, end in acgt_runs(codes) + [(len(sequence), len(sequence))]:
        words += list(sequence[position:start])  # boundary letters, one word each
        for first in kmer_starts(end - start, k, overlapping=overlapping).tolist():
            words.append(sequence[start + first:start + min(first + k, end - start)])
        position = end
    return " ".join(words)


def build_kmer_tokenizer(k: int, *, overlapping: bool = False,
                         model_max_length: int = MODEL_MAX_LENGTH) -> PreTrainedTokenizerFast:
    """Return a ``PreTrainedTokenizerFast`` for the fixed k-mer vocabulary (layout in the module docstring).

    The non-overlapping tokenizer reads raw sequence; the overlapping one reads ``kmer_text`` output.
    Lower case counts as upper case; other letters become [UNK] (one per letter).
    """
    _check_k(k)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for token in kmer_tokens(k):
        vocab[token] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    if overlapping:
        # Words are the k-mers written out by kmer_text.
        tokenizer.normalizer = dna_normalizer(drop_whitespace=False)
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    else:
        # Greedy {1,k}: k letters at a time, the shorter tail of a run last; a non-ACGT letter alone.
        tokenizer.normalizer = dna_normalizer()
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(f"[ACGT]{{1,{k}}}|[^ACGT]"), behavior="isolated")
    return wrap_dna_tokenizer(tokenizer, model_max_length=model_max_length)


def kmer_vocabulary_info(k: int, *, overlapping: bool = False) -> dict:
    """What ``grover_vocabulary.json`` records for a k-mer tokenizer folder."""
    _check_k(k)
    return {"kind": "kmer", "k": int(k), "overlapping": bool(overlapping),
            "input": "kmer_text (space-separated k-mers)" if overlapping else "raw sequence"}


def write_kmer_tokenizer(out_dir: str | os.PathLike, k: int, *, overlapping: bool = False,
                         model_max_length: int = MODEL_MAX_LENGTH) -> Path:
    """Build the k-mer tokenizer and save it as a tokenizer folder (atomically); return the folder."""
    tokenizer = build_kmer_tokenizer(k, overlapping=overlapping, model_max_length=model_max_length)
    return save_tokenizer(tokenizer, out_dir, extra=kmer_vocabulary_info(k, overlapping=overlapping))
