"""Per-layer embeddings of given sequences, token by token with nucleotide spans (``embed_sequences``).

Layer 0 is the input embedding output (token + position embeddings after LayerNorm), layer L the
last encoder layer, as ``output_hidden_states=True`` numbers them. Genome-wide extraction into
bounded summaries is ``grover_core.extract``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import BertForMaskedLM, PreTrainedTokenizerBase

from grover_core.pretrain import autocast_for, collate_windows


@dataclass
class SequenceEmbedding:
    """Per-layer embeddings of one sequence, token by token, with each token's nucleotide span.

    ``tokens[i]`` covers ``sequence[spans[i, 0]:spans[i, 1]]``; ``hidden[layer, i]`` is its embedding at
    ``layer`` (0 = input embeddings .. num_layers). ``mean[layer]`` averages the sequence's tokens
    ([CLS], [SEP] and padding excluded); ``cls[layer]`` is the [CLS] vector (from the first window
    when the sequence was cut into several).
    """

    tokens: list[str]
    ids: np.ndarray  # [n_tokens]
    spans: np.ndarray  # [n_tokens, 2] nucleotide start, end
    hidden: np.ndarray  # [num_layers + 1, n_tokens, hidden_size] float32
    mean: np.ndarray  # [num_layers + 1, hidden_size]
    cls: np.ndarray  # [num_layers + 1, hidden_size]


def window_starts(n_tokens: int, *, window: int, stride: int) -> list[int]:
    """First token of each window covering ``n_tokens`` tokens: every ``stride`` tokens, the last flush.

    >>> window_starts(10, window=4, stride=3)
    [0, 3, 6]
    >>> window_starts(3, window=4, stride=3)
    [0]
    """
    if n_tokens <= window:
        return [0]
    starts = list(range(0, n_tokens - window + 1, stride))
    if starts[-1] + window < n_tokens:
        starts.append(n_tokens - window)
    return starts


@torch.inference_mode()
def embed_sequences(model: BertForMaskedLM, tokenizer: PreTrainedTokenizerBase, sequences: list[str], *,
                    stride: int | None = None, batch_size: int = 16) -> list[SequenceEmbedding]:
    """Return every layer's embedding of every token of each sequence, padding masked out.

    Sequences longer than the model's window (``max_position_embeddings - 2`` tokens) are cut into
    windows starting every ``stride`` tokens (default: half a window); a token seen in several
    windows takes its embedding from the window where it sits furthest from an edge, so each token
    keeps context on both sides. Tokenization is the tokenizer's own (the same segmentation as the
    genome-wide one for BPE vocabularies learned here, except at the sequence's ends).
    """
    device = next(model.parameters()).device
    model.eval()
    window = model.config.max_position_embeddings - 2
    stride = stride or max(1, window // 2)
    special = tokenizer.all_special_ids
    results = []
    for sequence in sequences:
        encoded = tokenizer(sequence, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(encoded["input_ids"], dtype=np.int64)
        spans = np.asarray(encoded["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        starts = window_starts(ids.size, window=window, stride=stride)
        layers = model.config.num_hidden_layers + 1
        hidden = np.zeros((layers, ids.size, model.config.hidden_size), dtype=np.float32)
        best_margin = np.full(ids.size, -1)
        cls = None
        for begin in range(0, len(starts), batch_size):
            chunk = starts[begin:begin + batch_size]
            batch = collate_windows([ids[s:s + window] for s in chunk], tokenizer)
            with autocast_for(device):
                out = model(input_ids=batch["input_ids"].to(device),
                            attention_mask=batch["attention_mask"].to(device), output_hidden_states=True)
            states = torch.stack(out.hidden_states, dim=1).float().cpu().numpy()  # [batch, layers, len, hidden]
            if cls is None:
                cls = states[0, :, 0]
            for row, first in enumerate(chunk):
                count = min(window, ids.size - first)
                positions = np.arange(first, first + count)
                margin = np.minimum(positions - first, first + count - 1 - positions)
                take = margin > best_margin[positions]
                hidden[:, positions[take]] = states[row, :, 1:count + 1][:, take]
                best_margin[positions[take]] = margin[take]
        keep = ~np.isin(ids, special)  # an [UNK] (N) keeps its place; nothing else special occurs
        mean = hidden[:, keep].mean(axis=1) if keep.any() else np.zeros((layers, model.config.hidden_size), np.float32)
        results.append(SequenceEmbedding(tokenizer.convert_ids_to_tokens(ids.tolist()), ids, spans, hidden, mean,
                                         cls if cls is not None else np.zeros_like(mean)))
    return results
