"""GROVER's model: a BERT masked language model (transformers ``BertForMaskedLM``).

Presets name the shapes we use; any field can be overridden. ``grover-base`` is the paper's model.
Models are saved and loaded as Hugging Face folders (config.json + model.safetensors + tokenizer).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerBase

from grover_core.errors import GroverInputError


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a BERT MLM; the vocabulary size comes from the tokenizer."""

    num_hidden_layers: int = 12
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512  # 510 tokens + [CLS] + [SEP]
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    attn_implementation: str = "sdpa"  # fused attention; "eager" when attention maps are wanted

    @property
    def max_window_tokens(self) -> int:
        """Longest window of genome tokens the model takes (positions minus [CLS] and [SEP])."""
        return self.max_position_embeddings - 2


PRESETS: dict[str, ModelConfig] = {
    # The paper's model: BERT-base, about 87M parameters.
    "grover-base": ModelConfig(),
    # A model a workstation CPU trains in an hour.
    "grover-small": ModelConfig(num_hidden_layers=6, hidden_size=256, num_attention_heads=4,
                                intermediate_size=1024, max_position_embeddings=512),
    # The built-in demo: trains in minutes on 2 CPU cores.
    "grover-tiny": ModelConfig(num_hidden_layers=4, hidden_size=128, num_attention_heads=4,
                               intermediate_size=512, max_position_embeddings=130,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    # Tests: a save-load round trip in seconds.
    "grover-test": ModelConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=66,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
}


def model_config(preset: str = "grover-base", **overrides) -> ModelConfig:
    """Return a preset's ``ModelConfig`` with fields overridden."""
    if preset not in PRESETS:
        raise GroverInputError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    return dataclasses.replace(PRESETS[preset], **overrides)


def build_model(config: ModelConfig, tokenizer: PreTrainedTokenizerBase, *, seed: int = 0) -> BertForMaskedLM:
    """Return a freshly initialised ``BertForMaskedLM`` sized for ``tokenizer``'s vocabulary."""
    torch.manual_seed(seed)
    fields = dataclasses.asdict(config)
    attn_implementation = fields.pop("attn_implementation")
    bert_config = BertConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        type_vocab_size=1,
        **fields,
    )
    return BertForMaskedLM._from_config(bert_config, attn_implementation=attn_implementation)


def count_parameters(model: torch.nn.Module) -> int:
    """Return the number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def load_model(path: str | os.PathLike, *, tokenizer: PreTrainedTokenizerBase | None = None,
               attn_implementation: str = "sdpa") -> BertForMaskedLM:
    """Load a BERT MLM folder from disk (safetensors); check it against ``tokenizer`` when given.

    Raises ``GroverInputError`` when the folder has no model or when the tokenizer holds ids the
    model has no embedding for.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise GroverInputError(f"no config.json in {path}: not a Hugging Face model folder.")
    model = BertForMaskedLM.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                            attn_implementation=attn_implementation)
    if tokenizer is not None:
        check_vocab_sizes(model, tokenizer)
    return model


def check_vocab_sizes(model: BertForMaskedLM, tokenizer: PreTrainedTokenizerBase) -> None:
    """Raise ``GroverInputError`` when the tokenizer can emit an id beyond the model's embeddings."""
    rows = model.get_input_embeddings().num_embeddings
    largest_id = max(tokenizer.get_vocab().values())
    if largest_id >= rows:
        raise GroverInputError(
            f"tokenizer and model disagree: the tokenizer has ids up to {largest_id} but the model has "
            f"{rows} embedding rows. Load the tokenizer that was saved with this model."
        )
