"""Does a small BertForMaskedLM learn to use its context? The token-type vector, frozen against trained.

    python benchmarks/mlm_learning.py                  # grover-tiny, 600 steps per arm
    python benchmarks/mlm_learning.py --steps 1500 --preset grover-small

The task is the simplest use of context there is: a window of random tokens, 15% of them shown as
[MASK], and the label at each [MASK] is the token to its left. A model that attends to its left
neighbour solves it (loss falls towards 0.15 x ln(vocab) for masks whose neighbour is masked too);
one that does not stays at ln(vocab). Both arms run the same model shape, initial weights, batches,
AdamW settings and steps; they differ only in whether BERT's token-type embedding (one vector added
to every position, since GROVER has one segment) is trained, as plain transformers code does, or
zero and frozen, as ``grover_core.pretrain`` does (``trained_parameters``).

Printed: the loss every 100 steps per arm and the first step at which the smoothed loss falls below
half of ln(vocab). Written to the "## MLM learning: token-type vector" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch

from _markdown import write_section  # benchmarks/ is on sys.path when a script runs
from grover_core.kmer import build_kmer_tokenizer
from grover_core.model import build_model, model_config
from grover_core.pretrain import FROZEN_PARAMETERS

SECTION = "## MLM learning: token-type vector"


def copy_left_batch(generator: torch.Generator, *, vocab: int, first_ordinary: int, mask_id: int, batch: int,
                    length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(input_ids, labels)``: random tokens, 15% masked, each mask labelled with its left token."""
    tokens = torch.randint(first_ordinary, vocab, (batch, length), generator=generator)
    chosen = torch.rand(tokens.shape, generator=generator) < 0.15
    chosen[:, 0] = False
    labels = torch.where(chosen, tokens.roll(1, dims=1), torch.full_like(tokens, -100))
    inputs = tokens.masked_fill(chosen, mask_id)
    return inputs, labels


def train_arm(*, preset: str, freeze_token_type: bool, steps: int, batch: int, length: int, lr: float,
              seed: int) -> list[float]:
    """Train one arm; return the loss of every step."""
    tokenizer = build_kmer_tokenizer(4)  # 256 k-mers + 5 specials: a DNA-sized vocabulary
    model = build_model(model_config(preset), tokenizer, seed=seed)
    token_type = model.bert.embeddings.token_type_embeddings.weight
    if not freeze_token_type:
        # What a model built by plain transformers code has: BERT's random token-type vector, trained.
        torch.manual_seed(seed + 1)
        with torch.no_grad():
            token_type.normal_(0.0, model.config.initializer_range)
    trained = [p for name, p in model.named_parameters() if not (freeze_token_type and name in FROZEN_PARAMETERS)]
    token_type.requires_grad_(not freeze_token_type)
    optimizer = torch.optim.AdamW(trained, lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    vocab = len(tokenizer)
    losses = []
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 30)
        inputs, labels = copy_left_batch(generator, vocab=vocab, first_ordinary=5, mask_id=tokenizer.mask_token_id,
                                         batch=batch, length=length)
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, vocab), labels.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        losses.append(loss.item())
    return losses


def first_step_below(losses: list[float], threshold: float, *, window: int = 20) -> int | None:
    """Return the first step whose trailing mean loss (``window`` steps) is below ``threshold``."""
    for step in range(window, len(losses) + 1):
        if sum(losses[step - window:step]) / window < threshold:
            return step
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--preset", default="grover-tiny")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--length", type=int, default=32, help="tokens per window")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()

    vocab = len(build_kmer_tokenizer(4))
    threshold = 0.5 * math.log(vocab)
    rows = []
    for freeze in (False, True):
        started = time.perf_counter()
        losses = train_arm(preset=args.preset, freeze_token_type=freeze, steps=args.steps, batch=args.batch_size,
                           length=args.length, lr=args.learning_rate, seed=args.seed)
        seconds = time.perf_counter() - started
        name = "frozen at zero (grover_core.pretrain)" if freeze else "trained (plain BERT)"
        learned = first_step_below(losses, threshold)
        final = sum(losses[-20:]) / min(20, len(losses))
        print(f"token-type vector {name}: loss every 100 steps "
              f"{[round(losses[i], 2) for i in range(0, len(losses), 100)]}, final {final:.3f}, "
              f"below {threshold:.2f} at step {learned}, {seconds:.0f} s")
        rows.append((name, final, learned, seconds))

    lines = [SECTION, "",
             f"`python benchmarks/mlm_learning.py --preset {args.preset} --steps {args.steps}` "
             f"({platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads). "
             f"Task: predict the left neighbour of each [MASK] in windows of {args.length} random tokens "
             f"(vocabulary {vocab}, batch {args.batch_size}, AdamW lr {args.learning_rate}); ln(vocab) = "
             f"{math.log(vocab):.2f}. Same model, initial weights and batches in both arms.", "",
             "| token-type vector | final loss (mean of last 20 steps) | first step with loss < ln(V)/2 | seconds |",
             "|---|---|---|---|"]
    for name, final, learned, seconds in rows:
        lines.append(f"| {name} | {final:.3f} | {learned if learned is not None else f'not in {args.steps}'} | "
                     f"{seconds:.0f} |")
    write_section(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
