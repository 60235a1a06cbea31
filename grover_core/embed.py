"""Embedding extraction: every layer's hidden states, reduced to bounded per-token summaries.

Layer 0 is the input embedding output (token + position embeddings after LayerNorm), layer L the
last encoder layer, as ``output_hidden_states=True`` numbers them. Memory depends on the vocabulary,
the layers and the hidden size, never on how many windows are streamed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import BertForMaskedLM, PreTrainedTokenizerBase

from grover_core.pretrain import autocast_for, collate_windows
from grover_core.tokenized_genome import TokenizedGenome
from grover_core.tokenizer import special_token_mask


@dataclass(frozen=True)
class TokenEmbeddingConfig:
    """Which windows feed the per-token mean embeddings."""

    window_tokens: int | None = None  # None: the model's longest window
    max_windows: int | None = 2000  # evenly spread over the genome; None: tile every chromosome whole
    batch_size: int = 32
    chromosomes: tuple[str, ...] = ()  # empty: all


def tile_windows(genome: TokenizedGenome, *, window_tokens: int, max_windows: int | None,
                 chromosomes: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """Return non-overlapping windows ``(chromosome, first token)``; evenly thinned to ``max_windows``."""
    names = list(chromosomes) or genome.chromosomes
    windows = [(name, first) for name in names
               for first in range(0, max(genome.tokens_per_chromosome[name] - window_tokens + 1, 1), window_tokens)]
    if max_windows is not None and len(windows) > max_windows:
        keep = np.linspace(0, len(windows) - 1, max_windows).round().astype(int)
        windows = [windows[i] for i in np.unique(keep)]
    return windows


@torch.inference_mode()
def token_embedding_means(model: BertForMaskedLM, tokenizer: PreTrainedTokenizerBase, genome: TokenizedGenome, *,
                          config: TokenEmbeddingConfig = TokenEmbeddingConfig(),
                          progress: bool = False) -> dict[str, np.ndarray]:
    """Return each token's mean contextual embedding at every layer.

    Returns
    -------
    dict
        ``layer_<i>``: float32 ``[vocab_size, hidden]`` for i = 0 (input embeddings) .. num_layers;
        rows of tokens never seen are zero. ``count``: int64 ``[vocab_size]`` occurrences averaged.
    """
    device = next(model.parameters()).device
    model.eval()
    window_tokens = min(config.window_tokens or 10**9, model.config.max_position_embeddings - 2)
    windows = tile_windows(genome, window_tokens=window_tokens, max_windows=config.max_windows,
                           chromosomes=config.chromosomes)
    vocab_size = model.config.vocab_size
    layers = model.config.num_hidden_layers + 1
    sums = torch.zeros((layers, vocab_size, model.config.hidden_size), dtype=torch.float64)
    counts = torch.zeros(vocab_size, dtype=torch.long)
    skip = torch.from_numpy(special_token_mask(tokenizer))
    skip = torch.cat([skip, torch.ones(max(0, vocab_size - skip.numel()), dtype=torch.bool)])[:vocab_size]
    arrays = {name: genome.ids(name) for name in {name for name, _ in windows}}
    for begin in tqdm(range(0, len(windows), config.batch_size), desc="token embeddings", unit="batch",
                      disable=not progress):
        chunk = windows[begin:begin + config.batch_size]
        batch = collate_windows([np.asarray(arrays[name][first:first + window_tokens], dtype=np.int64)
                                 for name, first in chunk], tokenizer)
        with autocast_for(device):
            out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                        output_hidden_states=True)
        ids = batch["input_ids"].flatten()
        keep = ~skip[ids] & batch["attention_mask"].flatten().bool()
        ids = ids[keep]
        counts += torch.bincount(ids, minlength=vocab_size)
        for layer, hidden in enumerate(out.hidden_states):
            flat = hidden.float().cpu().reshape(-1, hidden.shape[-1])[keep]
            sums[layer].index_add_(0, ids, flat.double())
    means = sums / counts.clamp(min=1)[None, :, None]
    result = {f"layer_{i}": means[i].float().numpy() for i in range(layers)}
    result["count"] = counts.numpy()
    return result
