"""Hugging Face tokenizers for DNA: a learned BPE vocabulary as a ``tokenizer.json`` folder.

Layout of our vocabularies: ids 0-4 are the special tokens [PAD] [UNK] [CLS] [SEP] [MASK], then A,
C, G, T, then one token per BPE merge in the order learned. Lower case is read as upper case; any
other letter (N, IUPAC) becomes [UNK]. Sequences are wrapped as ``[CLS] ... [SEP]``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, processors
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from grover_core.atomic import atomic_path
from grover_core.bpe import BPEVocabulary

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MODEL_MAX_LENGTH = 512  # GROVER: 510 tokens plus [CLS] and [SEP]


def build_bpe_tokenizer(vocabulary: BPEVocabulary, *, model_max_length: int = MODEL_MAX_LENGTH) -> PreTrainedTokenizerFast:
    """Return a ``PreTrainedTokenizerFast`` that segments DNA exactly as ``grover_core.bpe`` does."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for token in vocabulary.tokens:
        vocab[token] = len(vocab)
    # ignore_merges=False: a whole input that happens to be a token must still go through the merges,
    # or short sequences would segment differently from the genome.
    bpe = models.BPE(vocab=vocab, merges=list(vocabulary.merges), unk_token="[UNK]", ignore_merges=False)
    tokenizer = Tokenizer(bpe)
    tokenizer.normalizer = dna_normalizer()
    return wrap_dna_tokenizer(tokenizer, model_max_length=model_max_length)


def dna_normalizer(*, drop_whitespace: bool = True) -> normalizers.Normalizer:
    """Soft-masked (lower-case) sequence counts as upper case; white space and line breaks are dropped."""
    upper_case = [normalizers.Replace(letter.lower(), letter) for letter in "ACGTN"]
    return normalizers.Sequence(([normalizers.Replace(Regex(r"\s+"), "")] if drop_whitespace else []) + upper_case)


def wrap_dna_tokenizer(tokenizer: Tokenizer, *, model_max_length: int = MODEL_MAX_LENGTH) -> PreTrainedTokenizerFast:
    """Add ``[CLS] ... [SEP]`` wrapping to a ``tokenizers`` model holding our special tokens; return the
    ``PreTrainedTokenizerFast`` every GROVER Lens vocabulary (BPE or k-mer) is saved as."""
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        do_lower_case=False,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write a tokenizer folder atomically (``tokenizer.json`` and friends); return its path.

    ``extra`` (e.g. the BPE config and merge counts) goes into ``grover_vocabulary.json`` beside it.
    """
    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        tokenizer.save_pretrained(str(tmp))
        if extra is not None:
            (tmp / "grover_vocabulary.json").write_text(json.dumps(extra, indent=2))
    return out_dir


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Load a tokenizer folder (ours, a k-mer one, or the published GROVER's) from disk, never the network.

    The one loading path for every folder: ``grover_core.tokenizer_folder.load_any_tokenizer``, which
    also copes with the published GROVER files' quirks.
    """
    from grover_core.tokenizer_folder import load_any_tokenizer  # it builds on this module

    return load_any_tokenizer(path).tokenizer


def token_strings(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Return the token string of every id ``0 .. len(tokenizer) - 1`` (empty string for gaps)."""
    strings = [""] * len(tokenizer)
    for token, index in tokenizer.get_vocab().items():
        if index < len(strings):
            strings[index] = token
    return strings


def special_token_mask(tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
    """Return a bool array over ids, True for special tokens and for ids that are not nucleotides."""
    strings = token_strings(tokenizer)
    special = set(tokenizer.all_special_tokens)
    return np.array([s in special or not s or set(s) - set("ACGT") != set() for s in strings], dtype=bool)
