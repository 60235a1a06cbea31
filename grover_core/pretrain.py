"""Masked-language-model pretraining on the tokenized genome, with GROVER's masking.

A lean loop in the spirit of nanoGPT: windows of the tokenized genome -> GROVER masking -> forward,
backward, AdamW step. fp32 on CPU, bf16 autocast on a GPU. Evaluation reports held-out masked-token
accuracy and perplexity beside a frequency-only baseline (always predict the commonest tokens).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import BertForMaskedLM, PreTrainedTokenizerBase

from grover_core.tokenized_genome import TokenizedGenome
from grover_core.tokenizer import special_token_mask, token_strings

IGNORE_INDEX = -100  # label of positions that do not count in the loss


@dataclass(frozen=True)
class MaskingConfig:
    """GROVER's masking: select 2.2% of tokens; of those 80% [MASK], 10% a random token, 10% unchanged."""

    select_fraction: float = 0.022
    mask_token_fraction: float = 0.8
    random_token_fraction: float = 0.1  # the rest stay unchanged

    def __post_init__(self):
        if not 0 < self.select_fraction <= 1:
            raise ValueError("select_fraction must be in (0, 1]")
        if self.mask_token_fraction + self.random_token_fraction > 1:
            raise ValueError("mask_token_fraction + random_token_fraction must be at most 1")


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run (saved with the model)."""

    steps: int = 1000
    batch_size: int = 64  # the paper's batch size
    min_window_tokens: int = 20  # GROVER: windows of 20 to 510 tokens ...
    max_window_tokens: int = 510
    full_window_fraction: float = 0.5  # ... half of them full length
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    learning_rate: float = 4e-4  # the paper's Adam learning rate
    warmup_steps: int = 100
    min_learning_rate_ratio: float = 0.1  # cosine decay ends at this fraction of the peak
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    held_out_chromosomes: tuple[str, ...] = ()  # empty: the last chromosome of the genome
    seed: int = 0
    log_every: int = 10


def split_chromosomes(genome: TokenizedGenome, held_out: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Return ``(train, held_out)`` chromosome lists; with none named, the last chromosome is held out."""
    names = genome.chromosomes
    held = list(held_out) if held_out else names[-1:]
    unknown = sorted(set(held) - set(names))
    if unknown:
        raise ValueError(f"held-out chromosomes {unknown} are not in the genome ({', '.join(names)})")
    train = [name for name in names if name not in held]
    if not train:
        raise ValueError("every chromosome is held out: keep at least one for training")
    return train, held


class WindowSampler:
    """Draws windows of tokens from chosen chromosomes in a seeded, reproducible order.

    A chromosome is picked with probability proportional to its tokens, then a start uniformly.
    Window lengths: ``full_window_fraction`` of them ``max_tokens``, the rest uniform in
    ``[min_tokens, max_tokens]``.
    """

    def __init__(self, genome: TokenizedGenome, chromosomes: Sequence[str], *, min_tokens: int, max_tokens: int,
                 full_window_fraction: float, seed: int):
        self.arrays = [genome.ids(name) for name in chromosomes]
        self.names = list(chromosomes)
        sizes = np.array([a.size for a in self.arrays], dtype=np.float64)
        if sizes.sum() == 0:
            raise ValueError("no tokens in the chosen chromosomes")
        self.weights = sizes / sizes.sum()
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.full_window_fraction = full_window_fraction
        self.rng = np.random.default_rng(seed)

    def sample(self, count: int) -> list[tuple[int, int, np.ndarray]]:
        """Return ``count`` windows as ``(chromosome index, first token index, token ids)``."""
        windows = []
        for _ in range(count):
            which = int(self.rng.choice(len(self.arrays), p=self.weights))
            tokens = self.arrays[which]
            full = self.rng.random() < self.full_window_fraction
            length = self.max_tokens if full else int(self.rng.integers(self.min_tokens, self.max_tokens + 1))
            length = min(length, tokens.size)
            first = int(self.rng.integers(0, tokens.size - length + 1))
            windows.append((which, first, np.asarray(tokens[first:first + length], dtype=np.int64)))
        return windows


def collate_windows(windows: Sequence[np.ndarray], tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
    """Wrap each window as ``[CLS] ... [SEP]``, pad to the longest, and return ids and attention mask."""
    longest = max(w.size for w in windows) + 2
    input_ids = torch.full((len(windows), longest), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(windows), longest), dtype=torch.long)
    for row, window in enumerate(windows):
        input_ids[row, 0] = tokenizer.cls_token_id
        input_ids[row, 1:window.size + 1] = torch.from_numpy(window)
        input_ids[row, window.size + 1] = tokenizer.sep_token_id
        attention_mask[row, :window.size + 2] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def mask_tokens(input_ids: torch.Tensor, *, special: torch.Tensor, mask_token_id: int, config: MaskingConfig,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply GROVER masking; return ``(masked_input_ids, labels)`` as new tensors.

    ``special`` is a bool tensor over the vocabulary (True: never selected, never a random
    replacement). Labels hold the original id at selected positions and ``IGNORE_INDEX`` elsewhere.
    At least one token per batch is selected, so the loss is always defined.
    """
    maskable = ~special[input_ids]
    draw = torch.rand(input_ids.shape, generator=generator)
    selected = (draw < config.select_fraction) & maskable
    if not selected.any():
        candidates = maskable.flatten().nonzero().flatten()
        pick = candidates[torch.randint(candidates.numel(), (1,), generator=generator)]
        selected.view(-1)[pick] = True
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    how = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (how < config.mask_token_fraction)
    to_random = selected & (how >= config.mask_token_fraction) & (
        how < config.mask_token_fraction + config.random_token_fraction)
    ordinary = (~special).nonzero().flatten()
    random_ids = ordinary[torch.randint(ordinary.numel(), input_ids.shape, generator=generator)]
    masked = input_ids.clone()
    masked[to_mask] = mask_token_id
    masked[to_random] = random_ids[to_random]
    return masked, labels


def learning_rate_at(step: int, config: PretrainConfig) -> float:
    """Linear warm-up to the peak, then cosine decay to ``min_learning_rate_ratio`` of it."""
    peak = config.learning_rate
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    floor = peak * config.min_learning_rate_ratio
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_for(device: torch.device):
    """bf16 autocast on a GPU; plain fp32 on the CPU (CPU bf16 is slower than fp32 on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class PretrainResult:
    steps: int
    tokens_seen: int
    seconds: float
    final_loss: float
    log: list[dict]


def pretrain(model: BertForMaskedLM, tokenizer: PreTrainedTokenizerBase, genome: TokenizedGenome, *,
             config: PretrainConfig, log_path=None, progress: bool = False) -> PretrainResult:
    """Train ``model`` in place on windows of the training chromosomes; return what happened.

    Each logged step is also appended to ``log_path`` (JSON lines) when given.
    """
    device = pick_device()
    model.to(device).train()
    train_chromosomes, _ = split_chromosomes(genome, config.held_out_chromosomes)
    max_tokens = min(config.max_window_tokens, model.config.max_position_embeddings - 2)
    sampler = WindowSampler(genome, train_chromosomes, min_tokens=min(config.min_window_tokens, max_tokens),
                            max_tokens=max_tokens, full_window_fraction=config.full_window_fraction,
                            seed=config.seed)
    special = torch.from_numpy(special_token_mask(tokenizer))
    generator = torch.Generator().manual_seed(config.seed)
    # No decay on biases and LayerNorm weights, as in BERT.
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6,
                                  fused=device.type == "cuda")
    log: list[dict] = []
    log_file = open(log_path, "a") if log_path else None
    tokens_seen, started, loss_value = 0, time.perf_counter(), float("nan")
    bar = tqdm(range(config.steps), desc="pretraining", unit="step", disable=not progress)
    try:
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config)
            batch = collate_windows([w for _, _, w in sampler.sample(config.batch_size)], tokenizer)
            input_ids, labels = mask_tokens(batch["input_ids"], special=special, mask_token_id=tokenizer.mask_token_id,
                                            config=config.masking, generator=generator)
            with autocast_for(device):
                out = model(input_ids=input_ids.to(device), attention_mask=batch["attention_mask"].to(device),
                            labels=labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            tokens_seen += int(batch["attention_mask"].sum())
            if step % config.log_every == 0 or step == config.steps - 1:
                loss_value = out.loss.item()
                elapsed = time.perf_counter() - started
                record = {"step": step, "loss": round(loss_value, 5), "lr": optimizer.param_groups[0]["lr"],
                          "tokens_seen": tokens_seen, "seconds": round(elapsed, 3),
                          "tokens_per_second": round(tokens_seen / max(elapsed, 1e-9), 1)}
                log.append(record)
                if log_file:
                    log_file.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{record['tokens_per_second']:.0f}")
    finally:
        if log_file:
            log_file.close()
    model.eval()
    return PretrainResult(config.steps, tokens_seen, time.perf_counter() - started, loss_value, log)


@torch.inference_mode()
def evaluate_masked_lm(model: BertForMaskedLM, tokenizer: PreTrainedTokenizerBase, genome: TokenizedGenome, *,
                       chromosomes: Sequence[str], baseline_counts: np.ndarray, windows: int = 512,
                       window_tokens: int | None = None, batch_size: int = 64,
                       masking: MaskingConfig = MaskingConfig(), top_k: int = 10, seed: int = 1234) -> dict:
    """Masked-token accuracy and perplexity on windows of ``chromosomes``, beside the frequency baseline.

    The baseline predicts tokens by their frequency in ``baseline_counts`` (the training chromosomes):
    top-1 is the commonest token, its perplexity that of the unigram distribution.

    Returns
    -------
    dict with ``masked_top1_accuracy``, ``masked_top{k}_accuracy``, ``perplexity``,
    ``perplexity_per_nucleotide``, the same for the frequency baseline
    (``frequency_baseline_*``), ``n_masked_tokens`` and ``windows``.
    """
    device = next(model.parameters()).device
    model.eval()
    max_tokens = model.config.max_position_embeddings - 2
    window_tokens = min(window_tokens or max_tokens, max_tokens)
    sampler = WindowSampler(genome, chromosomes, min_tokens=window_tokens, max_tokens=window_tokens,
                            full_window_fraction=1.0, seed=seed)
    special_np = special_token_mask(tokenizer)
    special = torch.from_numpy(special_np)
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([len(s) for s in token_strings(tokenizer)], dtype=torch.float64)

    counts = np.where(special_np, 0, baseline_counts[: special_np.size]).astype(np.float64)
    # Add-one smoothing keeps the baseline's perplexity finite for tokens unseen in training.
    unigram = torch.from_numpy((counts + ~special_np) / (counts + ~special_np).sum())
    baseline_rank = torch.argsort(unigram, descending=True)[:top_k]

    n, hits1, hitsk, base1, basek = 0, 0, 0, 0, 0
    nll, base_nll, nucleotides = 0.0, 0.0, 0.0
    remaining = windows
    while remaining > 0:
        take = min(batch_size, remaining)
        remaining -= take
        batch = collate_windows([w for _, _, w in sampler.sample(take)], tokenizer)
        input_ids, labels = mask_tokens(batch["input_ids"], special=special, mask_token_id=tokenizer.mask_token_id,
                                        config=masking, generator=generator)
        with autocast_for(device):
            logits = model(input_ids=input_ids.to(device), attention_mask=batch["attention_mask"].to(device)).logits
        chosen = labels != IGNORE_INDEX
        target = labels[chosen]
        scores = logits.float().cpu()[chosen]
        scores[:, special] = -torch.inf  # a special token is never the answer
        log_probs = torch.log_softmax(scores, dim=-1)
        top = scores.topk(top_k, dim=-1).indices
        n += target.numel()
        hits1 += int((top[:, 0] == target).sum())
        hitsk += int((top == target[:, None]).any(dim=1).sum())
        base1 += int((target == baseline_rank[0]).sum())
        basek += int(torch.isin(target, baseline_rank).sum())
        nll += float(-log_probs[torch.arange(target.numel()), target].sum())
        base_nll += float(-torch.log(unigram[target]).sum())
        nucleotides += float(lengths[target].sum())
    return {
        "windows": windows,
        "window_tokens": window_tokens,
        "chromosomes": list(chromosomes),
        "n_masked_tokens": n,
        "masked_top1_accuracy": hits1 / n,
        f"masked_top{top_k}_accuracy": hitsk / n,
        "perplexity": math.exp(nll / n),
        "perplexity_per_nucleotide": math.exp(nll / nucleotides),
        "frequency_baseline_top1_accuracy": base1 / n,
        f"frequency_baseline_top{top_k}_accuracy": basek / n,
        "frequency_baseline_perplexity": math.exp(base_nll / n),
        "frequency_baseline_perplexity_per_nucleotide": math.exp(base_nll / nucleotides),
        "masking": asdict(masking),
    }
