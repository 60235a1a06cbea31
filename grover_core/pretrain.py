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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
import torch.distributed as torch_distributed
from torch.nn.parallel import DistributedDataParallel
from transformers import BertForMaskedLM, PreTrainedTokenizerBase

from grover_core.checkpoint import fingerprint, latest_checkpoint, load_checkpoint, save_checkpoint
from grover_core.distributed import Distributed
from grover_core.errors import GroverInputError

from grover_core.tokenized_genome import TokenizedGenome
from grover_core.tokenizer import special_token_mask, token_strings

IGNORE_INDEX = -100  # label of positions that do not count in the loss


@dataclass(frozen=True)
class MaskingConfig:
    """GROVER's masking: select 2.2% of tokens; of those 80% become [MASK] and the rest a random token.

    (GROVER paper, Methods; BERT's usual rule keeps 10% unchanged instead: ``MaskingConfig.bert()``.)
    """

    select_fraction: float = 0.022
    mask_token_fraction: float = 0.8
    random_token_fraction: float = 0.2  # what is left after [MASK] and random stays unchanged

    @classmethod
    def bert(cls, select_fraction: float = 0.15) -> MaskingConfig:
        """BERT's rule: 15% selected; 80% [MASK], 10% random, 10% unchanged."""
        return cls(select_fraction=select_fraction, mask_token_fraction=0.8, random_token_fraction=0.1)

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
    split: str = "chromosome"  # "chromosome": held-out chromosomes; "random": the paper's random blocks
    held_out_fraction: float = 0.2  # with split="random": share of blocks held out (the paper's 80/20)
    split_block_tokens: int = 5000  # with split="random": blocks assigned to train or held-out whole
    gradient_accumulation_steps: int = 1  # micro-batches of batch_size per optimizer step
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end, when a folder is given)
    keep_checkpoints: int = 2  # newest checkpoints kept
    compile: bool = False  # torch.compile the model (GPU: faster after a minute of compiling)
    # Locality warm start (off by default): for the first ``locality_warmup_steps`` steps every
    # attention score gets an additive bias ``-locality_bias * 2**-h * |i - j|`` (head h; ALiBi's
    # shape), fading linearly to zero. It only steers training: the saved model is a plain BERT that
    # runs without it. Why: with learned absolute positions a BERT sits for thousands of steps at the
    # unigram, attending uniformly, before it finds "look at my neighbours" separately for every
    # position; the bias lets the values and feed-forward layers learn to use neighbours at once, and
    # the attention learns to reproduce the bias as it fades (see README, "Locality warm start").
    locality_warmup_steps: int = 0
    locality_bias: float = 1.0  # slope of head 0 at the start; head h gets 2**-h of it
    seed: int = 0
    log_every: int = 10


Region = tuple[str, int, int]  # chromosome, first token, end token (half-open)


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


def split_regions(genome: TokenizedGenome, config: PretrainConfig) -> tuple[list[Region], list[Region]]:
    """Return ``(train, held_out)`` token regions by the configured split.

    ``"chromosome"``: whole chromosomes (held-out ones named, or the last). ``"random"``: every
    chromosome cut into blocks of ``split_block_tokens``, each held out with probability
    ``held_out_fraction`` (seeded), as the paper's random 80/20 split of windows.
    """
    if config.split == "chromosome":
        train, held = split_chromosomes(genome, config.held_out_chromosomes)
        whole = lambda names: [(n, 0, genome.tokens_per_chromosome[n]) for n in names]  # noqa: E731
        return whole(train), whole(held)
    if config.split != "random":
        raise ValueError(f"split must be 'chromosome' or 'random', not {config.split!r}")
    rng = np.random.default_rng(config.seed + 7919)
    train, held = [], []
    for name in genome.chromosomes:
        size = genome.tokens_per_chromosome[name]
        for begin in range(0, size, config.split_block_tokens):
            region = (name, begin, min(size, begin + config.split_block_tokens))
            (held if rng.random() < config.held_out_fraction else train).append(region)
    if not train or not held:
        raise ValueError("the random split left no training or no held-out block; change held_out_fraction")
    return train, held


def _as_regions(genome: TokenizedGenome, items: Sequence[str | Region]) -> list[Region]:
    return [(item, 0, genome.tokens_per_chromosome[item]) if isinstance(item, str) else tuple(item)
            for item in items]


class WindowSampler:
    """Draws windows of tokens from chosen chromosomes or regions in a seeded, resumable order.

    A region is picked with probability proportional to its tokens, then a start uniformly.
    Window lengths: ``full_window_fraction`` of them ``max_tokens``, the rest uniform in
    ``[min_tokens, max_tokens]``. ``state()``/``set_state()`` save and restore the order exactly.
    """

    def __init__(self, genome: TokenizedGenome, regions: Sequence[str | Region], *, min_tokens: int,
                 max_tokens: int, full_window_fraction: float, seed: int):
        self.regions = _as_regions(genome, regions)
        self.arrays = {name: genome.ids(name) for name, _, _ in self.regions}
        sizes = np.array([end - begin for _, begin, end in self.regions], dtype=np.float64)
        if sizes.sum() == 0:
            raise ValueError("no tokens in the chosen chromosomes")
        self.weights = sizes / sizes.sum()
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.full_window_fraction = full_window_fraction
        self.rng = np.random.default_rng(seed)

    def sample(self, count: int) -> list[tuple[int, int, np.ndarray]]:
        """Return ``count`` windows as ``(region index, first token index, token ids)``."""
        # One draw per quantity for the whole batch: the loader must stay far ahead of the model.
        which = self.rng.choice(len(self.regions), size=count, p=self.weights)
        full = self.rng.random(count) < self.full_window_fraction
        lengths = np.where(full, self.max_tokens, self.rng.integers(self.min_tokens, self.max_tokens + 1, size=count))
        offsets = self.rng.random(count)
        windows = []
        for region, length, offset in zip(which.tolist(), lengths.tolist(), offsets.tolist()):
            name, begin, end = self.regions[region]
            length = min(length, end - begin)
            first = begin + int(offset * (end - begin - length + 1))
            windows.append((region, first, np.asarray(self.arrays[name][first:first + length], dtype=np.int64)))
        return windows

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def collate_windows(windows: Sequence[np.ndarray], tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
    """Wrap each window as ``[CLS] ... [SEP]``, pad to the longest, and return ids and attention mask."""
    pad, cls, sep = tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id
    longest = max(w.size for w in windows) + 2
    input_ids = np.full((len(windows), longest), pad, dtype=np.int64)
    attention_mask = np.zeros((len(windows), longest), dtype=np.int64)
    for row, window in enumerate(windows):
        input_ids[row, 0] = cls
        input_ids[row, 1:window.size + 1] = window
        input_ids[row, window.size + 1] = sep
        attention_mask[row, :window.size + 2] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}


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


def locality_strength_at(step: int, config: PretrainConfig) -> float:
    """The locality warm start's slope for head 0 at ``step``: ``locality_bias`` fading linearly to 0."""
    if config.locality_warmup_steps <= 0 or step >= config.locality_warmup_steps:
        return 0.0
    return config.locality_bias * (1 - step / config.locality_warmup_steps)


def locality_attention_mask(attention_mask: torch.Tensor, *, heads: int, strength: float,
                            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return an additive attention mask ``[batch, heads, length, length]`` for BERT's ``attention_mask``.

    Query i of head h scores key j with ``-strength * 2**-h * |i - j|`` added; padded keys (0 in the
    2-D ``attention_mask``) get the dtype's minimum, as BERT's own padding mask gives them.
    Transformers passes a 4-D float mask to the attention as it is.
    """
    length = attention_mask.shape[1]
    positions = torch.arange(length, device=attention_mask.device)
    distance = (positions[:, None] - positions[None, :]).abs().to(torch.float32)
    slopes = strength * 2.0 ** -torch.arange(heads, device=attention_mask.device, dtype=torch.float32)
    bias = -(slopes[:, None, None] * distance)[None]  # [1, heads, length, length]
    padded = (attention_mask == 0)[:, None, None, :]  # [batch, 1, 1, length]
    return bias.masked_fill(padded, torch.finfo(dtype).min).to(dtype)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device called ``name``: ``"auto"`` is a GPU when torch sees one, else the CPU.

    A name torch does not know, or ``"cuda"`` where torch sees no GPU, is refused with a message
    naming the choices.
    """
    if name == "auto":
        return pick_device()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise GroverInputError(f"device {name!r} is not a torch device; use 'auto', 'cpu' or 'cuda'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GroverInputError(f"device {name!r} was asked for but torch sees no GPU here; use 'auto' or 'cpu'.")
    return device


def compute_dtype(device: torch.device) -> torch.dtype:
    """What training computes in: bf16 on a GPU; fp32 on the CPU (CPU bf16 is slower than fp32 on most CPUs)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def autocast_for(device: torch.device):
    """Autocast to ``compute_dtype`` on a GPU; nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=compute_dtype(device))
    return contextlib.nullcontext()


@dataclass
class PretrainResult:
    steps: int
    tokens_seen: int
    seconds: float
    final_loss: float
    log: list[dict]
    resumed_from: int = 0  # the step a checkpoint was resumed at (0: a fresh start)


def _training_fingerprint(model: BertForMaskedLM, tokenizer: PreTrainedTokenizerBase, genome: TokenizedGenome,
                          config: PretrainConfig, world_size: int) -> tuple[str, list[str]]:
    """What must not change for a resume to continue the same run (steps and checkpointing may)."""
    settings = {k: v for k, v in asdict(config).items()
                if k not in ("steps", "checkpoint_every", "keep_checkpoints", "log_every", "compile")}
    if not config.locality_warmup_steps:  # off: checkpoints from before the option existed still resume
        for name in ("locality_warmup_steps", "locality_bias"):
            settings.pop(name)
    fields = {
        "model": {k: v for k, v in model.config.to_dict().items()
                  if k not in ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype")},
        "vocabulary": sorted(tokenizer.get_vocab().items()),
        "genome": genome.tokens_per_chromosome,
        "training": settings,
        "world_size": world_size,
    }
    return fingerprint(fields), sorted(fields)


FROZEN_PARAMETERS = ("bert.embeddings.token_type_embeddings.weight",)


def trained_parameters(model: BertForMaskedLM) -> list[tuple[str, torch.nn.Parameter]]:
    """Return the ``(name, parameter)`` pairs pretraining updates: all but ``FROZEN_PARAMETERS``.

    GROVER has one segment, so BERT's token-type embedding is a single vector added to every
    position. Trained, it is a free bias that grows to carry the unigram prediction and drowns the
    position embeddings in the embedding LayerNorm: a 4-layer 128-wide model then never learns to
    attend to its neighbours (it cannot learn to copy the token to its left in 1,500 steps; with the
    vector frozen it learns that in 300; ``benchmarks/mlm_learning.py``). The LayerNorm bias
    already is that bias, so the vector stays as built (zero for our models, see ``build_model``).
    """
    return [(name, p) for name, p in model.named_parameters() if name not in FROZEN_PARAMETERS]


def _make_optimizer(model: BertForMaskedLM, config: PretrainConfig, device: torch.device) -> torch.optim.Optimizer:
    # No decay on biases and LayerNorm weights, as in BERT.
    trained = [p for _, p in trained_parameters(model)]
    decay = [p for p in trained if p.ndim >= 2]
    no_decay = [p for p in trained if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6, fused=device.type == "cuda")


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    state = {"masking": generator.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _tensorboard(log_dir):
    """A TensorBoard writer when tensorboard is installed, else None (the JSON-lines log always exists)."""
    if log_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))


def pretrain(model: BertForMaskedLM, tokenizer: PreTrainedTokenizerBase, genome: TokenizedGenome, *,
             config: PretrainConfig, log_path=None, checkpoint_dir=None, progress: bool = False,
             dist: Distributed | None = None, on_step: Callable[[int], None] | None = None) -> PretrainResult:
    """Train ``model`` in place on windows of the training regions; return what happened.

    Each optimizer step sees ``batch_size x gradient_accumulation_steps`` windows. With
    ``checkpoint_dir`` a checkpoint is written every ``checkpoint_every`` steps and at the end, and
    a run finding a checkpoint there resumes from it exactly (same weights, optimizer, data order and
    random state); one made for another model, vocabulary or data is refused. Under ``torchrun``
    (``dist`` from ``setup_distributed``) each process trains on its slice of the same global batch.
    Logged steps go to ``log_path`` (JSON lines) and to TensorBoard when installed. ``on_step(step)``
    runs after each completed step.
    """
    dist = dist or Distributed(device=pick_device())
    device = dist.device
    model.to(device).train()
    train_regions, _ = split_regions(genome, config)
    max_tokens = min(config.max_window_tokens, model.config.max_position_embeddings - 2)
    sampler = WindowSampler(genome, train_regions, min_tokens=min(config.min_window_tokens, max_tokens),
                            max_tokens=max_tokens, full_window_fraction=config.full_window_fraction,
                            seed=config.seed)
    share = dist.slice_of(config.batch_size)
    special = torch.from_numpy(special_token_mask(tokenizer))
    generator = torch.Generator().manual_seed(config.seed)
    for name, parameter in model.named_parameters():
        if name in FROZEN_PARAMETERS:
            parameter.requires_grad_(False)  # no gradient at all: it must not count in the clipped norm
    optimizer = _make_optimizer(model, config, device)
    run_fingerprint, fingerprint_fields = _training_fingerprint(model, tokenizer, genome, config, dist.world_size)

    start_step, tokens_seen = 0, 0
    checkpoint = latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if checkpoint is not None:
        state, rng = load_checkpoint(checkpoint, model=model, optimizer=optimizer,
                                     expected_fingerprint=run_fingerprint)
        start_step, tokens_seen = state["step"], state["tokens_seen"]
        sampler.set_state(state["sampler"])
        generator.set_state(rng["masking"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], device)
    train_model = model
    if dist.enabled:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        train_model = torch.compile(train_model)

    log: list[dict] = []
    log_file = open(log_path, "a") if (log_path and dist.is_main) else None
    board = _tensorboard(Path(log_path).parent / "tensorboard" if (log_path and dist.is_main) else None)
    started, loss_value = time.perf_counter(), float("nan")
    tokens_at_start = tokens_seen
    bar = tqdm(range(start_step, config.steps), desc="pretraining", unit="step", initial=start_step,
               total=config.steps, disable=not (progress and dist.is_main))
    accumulation = max(1, config.gradient_accumulation_steps)
    try:
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config)
            optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), device=device)
            for micro in range(accumulation):
                # Every rank draws and masks the whole global batch, then keeps its slice: the same
                # batches as one process, whatever the number of processes.
                batch = collate_windows([w for _, _, w in sampler.sample(config.batch_size)], tokenizer)
                input_ids, labels = mask_tokens(batch["input_ids"], special=special,
                                                mask_token_id=tokenizer.mask_token_id, config=config.masking,
                                                generator=generator)
                selected_in_batch = int((labels != IGNORE_INDEX).sum())
                tokens_seen += int(batch["attention_mask"].sum())
                input_ids, labels = input_ids[share].to(device), labels[share].to(device)
                attention_mask = batch["attention_mask"][share].to(device)
                if (strength := locality_strength_at(step, config)) > 0:
                    # In the dtype the attention computes in (SDPA wants the mask's dtype to match).
                    attention_mask = locality_attention_mask(
                        attention_mask, heads=model.config.num_attention_heads, strength=strength,
                        dtype=compute_dtype(device))
                syncing = micro == accumulation - 1 or not dist.enabled
                with (contextlib.nullcontext() if syncing else train_model.no_sync()), autocast_for(device):
                    logits = train_model(input_ids=input_ids, attention_mask=attention_mask).logits
                    chosen = labels != IGNORE_INDEX
                    # Sum over this rank's selected tokens / all selected in the global batch; DDP
                    # averages over ranks, hence x world size: the gradient of the global mean loss.
                    loss_sum = torch.nn.functional.cross_entropy(logits[chosen].float(), labels[chosen],
                                                                 reduction="sum")
                    loss = loss_sum * (dist.world_size / (selected_in_batch * accumulation))
                loss.backward()
                step_loss += loss_sum.detach() / (selected_in_batch * accumulation)
            torch.nn.utils.clip_grad_norm_([p for _, p in trained_parameters(model)], config.grad_clip)
            optimizer.step()
            done = step + 1
            if step % config.log_every == 0 or done == config.steps:
                if dist.enabled:
                    torch_distributed.all_reduce(step_loss)
                loss_value = step_loss.item()
                elapsed = time.perf_counter() - started
                rate = (tokens_seen - tokens_at_start) / max(elapsed, 1e-9)
                record = {"step": step, "loss": round(loss_value, 5), "lr": optimizer.param_groups[0]["lr"],
                          "tokens_seen": tokens_seen, "seconds": round(elapsed, 3),
                          "tokens_per_second": round(rate, 1)}
                log.append(record)
                if log_file:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                if board:
                    board.add_scalar("train/loss", loss_value, step)
                    board.add_scalar("train/lr", record["lr"], step)
                    board.add_scalar("train/tokens_per_second", rate, step)
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{rate:.0f}")
            at_checkpoint = config.checkpoint_every and done % config.checkpoint_every == 0
            if checkpoint_dir and (at_checkpoint or done == config.steps):
                if dist.is_main:
                    save_checkpoint(checkpoint_dir, step=done, model=model, optimizer=optimizer,
                                    rng=_rng_state(generator, device), keep=config.keep_checkpoints,
                                    state={"tokens_seen": tokens_seen, "sampler": sampler.state(),
                                           "fingerprint": run_fingerprint,
                                           "fingerprint_fields": fingerprint_fields})
                dist.barrier()
            if on_step is not None:
                on_step(step)
    except torch.OutOfMemoryError as error:
        raise GroverInputError(
            f"out of GPU memory at batch size {config.batch_size} x {max_tokens + 2} tokens: lower the batch size "
            "and raise gradient_accumulation_steps to keep the same effective batch."
        ) from error
    finally:
        if log_file:
            log_file.close()
        if board:
            board.close()
    model.eval()
    return PretrainResult(config.steps, tokens_seen, time.perf_counter() - started, loss_value, log,
                          resumed_from=start_step)


@torch.inference_mode()
def evaluate_masked_lm(model: BertForMaskedLM, tokenizer: PreTrainedTokenizerBase, genome: TokenizedGenome, *,
                       chromosomes: Sequence[str | Region], baseline_counts: np.ndarray, windows: int = 512,
                       window_tokens: int | None = None, batch_size: int = 64,
                       masking: MaskingConfig = MaskingConfig(), top_k: int = 10, seed: int = 1234) -> dict:
    """Masked-token accuracy and perplexity on windows of ``chromosomes``, beside the frequency baseline.

    The baseline predicts tokens by their frequency in ``baseline_counts`` (the training chromosomes):
    top-1 is the commonest token, its perplexity that of the unigram distribution.

    Two scorings: ``masked_*`` over every selected position (the MLM convention; under BERT's rule
    10% of them stay unchanged and are easy to "predict"), and ``mask_only_*`` over the positions the
    model saw as [MASK] only, the plain "predict a hidden token" number.

    Returns
    -------
    dict with ``masked_top1_accuracy``, ``masked_top{k}_accuracy``, ``perplexity``,
    ``perplexity_per_nucleotide``, ``mask_only_top1_accuracy``, ``mask_only_top{k}_accuracy``,
    ``mask_only_perplexity``, the same for the frequency baseline (``frequency_baseline_*``),
    ``n_masked_tokens``, ``n_mask_only_tokens`` and ``windows``.
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
    hidden = {"n": 0, "hits1": 0, "hitsk": 0, "base1": 0, "basek": 0, "nll": 0.0, "base_nll": 0.0}
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
        shown_as_mask = input_ids[chosen] == tokenizer.mask_token_id
        t = target[shown_as_mask]
        hidden["n"] += t.numel()
        hidden["hits1"] += int((top[shown_as_mask, 0] == t).sum())
        hidden["hitsk"] += int((top[shown_as_mask] == t[:, None]).any(dim=1).sum())
        hidden["base1"] += int((t == baseline_rank[0]).sum())
        hidden["basek"] += int(torch.isin(t, baseline_rank).sum())
        hidden["nll"] += float(-log_probs[shown_as_mask][torch.arange(t.numel()), t].sum())
        hidden["base_nll"] += float(-torch.log(unigram[t]).sum())
    m = max(hidden["n"], 1)
    return {
        "windows": windows,
        "window_tokens": window_tokens,
        "chromosomes": sorted({c if isinstance(c, str) else c[0] for c in chromosomes}),
        "n_masked_tokens": n,
        "masked_top1_accuracy": hits1 / n,
        f"masked_top{top_k}_accuracy": hitsk / n,
        "perplexity": math.exp(nll / n),
        "perplexity_per_nucleotide": math.exp(nll / nucleotides),
        "frequency_baseline_top1_accuracy": base1 / n,
        f"frequency_baseline_top{top_k}_accuracy": basek / n,
        "frequency_baseline_perplexity": math.exp(base_nll / n),
        "frequency_baseline_perplexity_per_nucleotide": math.exp(base_nll / nucleotides),
        "n_mask_only_tokens": hidden["n"],
        "mask_only_top1_accuracy": hidden["hits1"] / m,
        f"mask_only_top{top_k}_accuracy": hidden["hitsk"] / m,
        "mask_only_perplexity": math.exp(hidden["nll"] / m),
        "frequency_baseline_mask_only_top1_accuracy": hidden["base1"] / m,
        f"frequency_baseline_mask_only_top{top_k}_accuracy": hidden["basek"] / m,
        "frequency_baseline_mask_only_perplexity": math.exp(hidden["base_nll"] / m),
        "masking": asdict(masking),
    }
