"""Training checkpoints: written atomically, kept to the last K, resumed exactly.

A checkpoint is a folder ``step_<n>/`` holding the model (Hugging Face folder, safetensors), the
optimizer state (``optimizer.pt``, read back with ``torch.load(weights_only=True)``), random
number generator states (``rng.safetensors``) and ``trainer_state.json`` (step, tokens seen, the
window sampler's state and a fingerprint of what was trained). A checkpoint appears under its final
name only when complete, so a process killed while writing leaves the previous one to resume from.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from grover_core.atomic import atomic_path
from grover_core.errors import GroverInputError

TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
RNG = "rng.safetensors"
MODEL_DIR = "model"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def fingerprint(payload: dict) -> str:
    """A short stable hash of a JSON-able description (model shape, vocabulary, data, schedule)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int

    @property
    def state(self) -> dict:
        return json.loads((self.path / TRAINER_STATE).read_text())


def list_checkpoints(directory: str | os.PathLike) -> list[Checkpoint]:
    """Complete checkpoints in ``directory``, oldest first (temporary, half-written folders are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / TRAINER_STATE).is_file():
            found.append(Checkpoint(child, int(match.group(1))))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(directory: str | os.PathLike) -> Checkpoint | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def save_checkpoint(directory: str | os.PathLike, *, step: int, model, optimizer, rng: dict[str, torch.Tensor],
                    state: dict, keep: int) -> Path:
    """Write checkpoint ``step_<step>`` atomically, then delete all but the newest ``keep``; return its path."""
    directory = Path(directory)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no "Writing model shards" bar every checkpoint
    target = directory / f"step_{step:08d}"
    with atomic_path(target, is_dir=True) as tmp:
        model.save_pretrained(str(tmp / MODEL_DIR), safe_serialization=True)
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
        save_file({name: tensor.contiguous() for name, tensor in rng.items()}, str(tmp / RNG))
        (tmp / TRAINER_STATE).write_text(json.dumps({**state, "step": step}, indent=2))
    for old in list_checkpoints(directory)[:-max(keep, 1)]:
        shutil.rmtree(old.path, ignore_errors=True)
    return target


def load_checkpoint(checkpoint: Checkpoint, *, model, optimizer, expected_fingerprint: str) -> tuple[dict, dict]:
    """Load weights and optimizer state into ``model``/``optimizer``; return ``(trainer_state, rng)``.

    Raises ``GroverInputError`` when the checkpoint was made for another model, vocabulary or data.
    """
    state = checkpoint.state
    if state.get("fingerprint") != expected_fingerprint:
        raise GroverInputError(
            f"cannot resume from {checkpoint.path}: it was made with a different model, vocabulary, data or "
            f"training setup ({state.get('fingerprint_fields', 'unknown')}). Use a new output folder, or "
            "the settings that made it."
        )
    # The Hugging Face loader knows which weights are tied (decoder = word embeddings); take the
    # state from a model it loaded, so tying and names stay its business.
    saved = type(model).from_pretrained(str(checkpoint.path / MODEL_DIR), local_files_only=True,
                                        use_safetensors=True)
    try:
        model.load_state_dict(saved.state_dict())
    except RuntimeError as error:
        raise GroverInputError(f"checkpoint {checkpoint.path} does not fit the model: {str(error).splitlines()[0]}")
    optimizer.load_state_dict(torch.load(checkpoint.path / OPTIMIZER, weights_only=True, map_location="cpu"))
    return state, load_file(str(checkpoint.path / RNG))
