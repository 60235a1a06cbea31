"""Fine-tuning a pretrained BERT MLM (ours or the published GROVER) for sequence classification.

GROVER's fine-tuning tasks (Prom300, PromScan, CTCF; GROVER.md "Fine-tuning tasks") and its next-k-mer
vocabulary test put ``AutoModelForSequenceClassification`` on the pretrained encoder: the encoder's
weights come from the MLM folder, the pooler and classifier head are new (seeded), and the whole model
trains with AdamW. The loop is lean, in the spirit of ``pretrain.py``: tokenise once, dynamic padding,
seeded shuffling, linear warm-up and decay, gradient clipping, fp32 on the CPU and bf16 autocast on a GPU.

Tables are pandas DataFrames with at least ``sequence`` (upper-case DNA) and ``label`` (int class
index); task tables (``TASK_COLUMNS``) also carry chromosome, start, end and split.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, precision_score, recall_score
from transformers import (BertForSequenceClassification, PreTrainedModel,
                          PreTrainedTokenizerBase)
from transformers.utils import logging as hf_logging

from grover_core.atomic import atomic_path
from grover_core.errors import GroverInputError
from grover_core.model import load_bert_folder, resolve_model_folder
from grover_core.pretrain import autocast_for, resolve_device
from grover_core.tokenizer_folder import TokenizerFolder, load_any_tokenizer

FINETUNE_CONFIG_JSON = "finetune_config.json"
METRICS_JSON = "metrics.json"
VOCABULARY_JSON = "grover_vocabulary.json"  # what load_any_tokenizer needs to read a k-mer folder back
METRIC_KEYS = ("mcc", "accuracy", "macro_f1", "precision", "recall")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run (saved beside the fine-tuned model as ``finetune_config.json``)."""

    epochs: int = 3
    batch_size: int = 32
    # 2e-5 suits base-size encoders (GROVER, BERT-base); GROVER's tutorial used 1e-6 for 4 epochs at batch 8.
    # Tiny test models learn nothing at these rates: they need about 1e-3, as does a linear probe.
    learning_rate: float = 2e-5
    warmup_fraction: float = 0.1  # share of all steps spent warming up linearly; then linear decay to 0
    weight_decay: float = 0.01  # AdamW; biases and LayerNorm weights are not decayed (as in BERT)
    grad_clip: float = 1.0  # max gradient norm
    max_tokens: int = 512  # tokens per sequence incl. [CLS]/[SEP] (GROVER: 512); longer ones are truncated
    seed: int = 0  # head initialisation (in load_classifier), dropout and shuffling
    early_stopping_patience: int = 0  # 0: off; else stop after this many epochs without a better validation MCC
    freeze_encoder: bool = False  # linear probe: only the classifier head trains (encoder and pooler frozen)
    device: str = "auto"  # "auto": cuda when available (bf16 autocast), else cpu (fp32); or "cpu", "cuda", ...
    log_every: int = 50  # optimizer steps between log entries (0: only epoch ends)
    eval_batch_size: int = 64  # prediction batch for validation and test

    def __post_init__(self):
        checks = [(self.epochs >= 1, "epochs must be at least 1"),
                  (self.batch_size >= 1, "batch_size must be at least 1"),
                  (self.learning_rate > 0, "learning_rate must be positive"),
                  (0 <= self.warmup_fraction < 1, "warmup_fraction must be in [0, 1)"),
                  (self.max_tokens >= 3, "max_tokens must be at least 3 ([CLS], one token, [SEP])"),
                  (self.early_stopping_patience >= 0, "early_stopping_patience must be 0 (off) or more")]
        for ok, message in checks:
            if not ok:
                raise GroverInputError(f"FinetuneConfig: {message}.")


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning run did.

    Attributes
    ----------
    steps
        Optimizer steps taken.
    epochs_run
        Epochs completed (fewer than configured when early stopping ended the run).
    seconds
        Wall time of the loop (tokenisation included).
    final_loss
        Mean training loss over the last epoch.
    best_epoch
        Epoch (1-based) whose weights the model holds when early stopping ran; else the last epoch.
    best_validation_mcc
        Validation MCC of ``best_epoch`` (NaN without a validation table).
    log
        One dict per logged step (``step``, ``epoch``, ``loss`` of that batch, ``learning_rate``,
        ``epoch_end`` False) and per epoch (the same keys; ``loss`` the epoch's mean, ``epoch_end`` True).
    validation
        One dict per epoch with validation metrics (``epoch`` + ``classification_metrics`` keys).
    """

    steps: int
    epochs_run: int
    seconds: float
    final_loss: float
    best_epoch: int
    best_validation_mcc: float
    log: list[dict] = field(default_factory=list)
    validation: list[dict] = field(default_factory=list)


# --- tables and metrics ------------------------------------------------------------------------------------

def check_task_table(table: pd.DataFrame, *, what: str = "table", num_labels: int | None = None) -> None:
    """Raise ``GroverInputError`` unless ``table`` has ``sequence`` (str) and ``label`` (int) rows.

    With ``num_labels`` the labels must lie in ``0 .. num_labels - 1``.
    """
    if not isinstance(table, pd.DataFrame):
        raise GroverInputError(f"{what} must be a pandas DataFrame with columns sequence and label, "
                               f"got {type(table).__name__}.")
    missing = [column for column in ("sequence", "label") if column not in table.columns]
    if missing:
        raise GroverInputError(f"{what} lacks column(s) {', '.join(missing)}; give a task table with sequence "
                               "(DNA text) and label (int class index).")
    if len(table) == 0:
        raise GroverInputError(f"{what} has no rows; give at least one labelled sequence.")
    if not all(isinstance(s, str) for s in table["sequence"]):
        raise GroverInputError(f"{what}: every sequence must be a str of nucleotides; convert the column first.")
    labels = table["label"].to_numpy()
    if not np.issubdtype(labels.dtype, np.integer):
        raise GroverInputError(f"{what}: label must be an int column (class index), got dtype {labels.dtype}; "
                               "map the classes to 0, 1, ... first.")
    if num_labels is not None and (labels.min() < 0 or labels.max() >= num_labels):
        raise GroverInputError(f"{what}: labels span {labels.min()}..{labels.max()} but the classifier has "
                               f"{num_labels} classes (0..{num_labels - 1}); load it with num_labels= covering them.")


def split_rows(table: pd.DataFrame, split: str) -> pd.DataFrame:
    """Return the rows of ``table`` whose ``split`` column equals ``split`` (a new frame)."""
    if "split" not in table.columns:
        raise GroverInputError(f"the table has no split column; give a task table (train/validation/test rows) "
                               f"or pass the {split} rows directly.")
    rows = table[table["split"] == split]
    if rows.empty:
        found = ", ".join(sorted(map(str, table["split"].unique())))
        raise GroverInputError(f"the table has no {split!r} rows (splits present: {found}); choose one of those.")
    return rows.reset_index(drop=True)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Return ``mcc``, ``accuracy``, ``macro_f1``, ``precision`` and ``recall`` of predicted class indices.

    When every label seen (in either argument) is 0 or 1, precision and recall are binary ones of class 1
    (the positive class of GROVER's tasks); with more classes they are macro averages, like ``macro_f1``.
    Macro averages run over the classes present in ``y_true`` or ``y_pred``. A class never predicted
    counts as precision 0 (no warning).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise GroverInputError(f"y_true and y_pred must be two equally long, non-empty 1-d label arrays, "
                               f"got shapes {y_true.shape} and {y_pred.shape}.")
    binary = set(np.unique(np.concatenate([y_true, y_pred])).tolist()) <= {0, 1}
    average = "binary" if binary else "macro"
    return {
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "precision": float(precision_score(y_true, y_pred, average=average, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, average=average, zero_division=0)),
    }


# --- loading -------------------------------------------------------------------------------------------------

def _hf_tokenizer(tokenizer) -> PreTrainedTokenizerBase:
    if isinstance(tokenizer, TokenizerFolder):
        return tokenizer.tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        return load_any_tokenizer(tokenizer).tokenizer
    return tokenizer


def load_classifier(model_path: str | os.PathLike, *, num_labels: int,
                    tokenizer: PreTrainedTokenizerBase | TokenizerFolder | str | os.PathLike | None = None,
                    seed: int = 0, attn_implementation: str = "sdpa"
                    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a BERT MLM folder (ours or the published GROVER's) as a sequence classifier, in train mode.

    The encoder's weights come from the folder, read as ``grover_core.model`` reads them (safetensors,
    or ``pytorch_model.bin`` with ``torch.load(weights_only=True)``; a hub id only when no such local
    path exists). The masked-LM head is dropped; the pooler (which MLM checkpoints lack) and the
    ``num_labels``-way classifier are initialised fresh from ``seed``. A folder written by
    ``save_finetuned`` loads with its trained head (``num_labels`` must match it).

    ``tokenizer``: a Hugging Face tokenizer, a ``TokenizerFolder``, or a tokenizer folder path; ``None``
    reads the model folder's own.

    Returns
    -------
    model
        A ``BertForSequenceClassification`` (``config.num_labels == num_labels``).
    tokenizer
        The Hugging Face tokenizer, checked against the model's embedding rows.

    Raises
    ------
    GroverInputError
        Everything ``grover_core.model.load_model`` raises for a bad folder; ``num_labels`` below 2; no
        tokenizer; a tokenizer that can emit ids beyond the model's rows; encoder weights missing.
    """
    if not isinstance(num_labels, (int, np.integer)) or num_labels < 2:
        raise GroverInputError(f"num_labels must be a whole number of at least 2 classes, got {num_labels!r}.")
    folder = resolve_model_folder(model_path)
    if tokenizer is None:
        if not (folder / "tokenizer.json").is_file():
            raise GroverInputError(f"{folder} holds a model but no tokenizer.json. Pass tokenizer= (the folder of "
                                   "the tokenizer this model was trained with).")
        tokenizer = folder
    hf_tokenizer = _hf_tokenizer(tokenizer)
    torch.manual_seed(seed)  # the fresh pooler and head draw from the global generator
    # transformers prints a load report listing the MLM head as unused and the pooler and classifier as
    # new: exactly what is expected here (missing weights are checked), so only errors are let through.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = load_bert_folder(
            folder, model_class=BertForSequenceClassification, tokenizer=hf_tokenizer,
            # num_labels also resets id2label / label2id to LABEL_0 ..
            config_changes={"num_labels": int(num_labels), "problem_type": "single_label_classification"},
            attn_implementation=attn_implementation, loaded_as=f"a {num_labels}-class classifier (check num_labels)",
            fresh=("classifier.", "bert.pooler."))
    finally:
        hf_logging.set_verbosity(verbosity)
    return model.train(), hf_tokenizer


# --- batches -------------------------------------------------------------------------------------------------

def _max_length(model: PreTrainedModel, max_tokens: int) -> int:
    return min(int(max_tokens), int(model.config.max_position_embeddings))


def tokenize_sequences(tokenizer: PreTrainedTokenizerBase, sequences: Sequence[str], *,
                       max_length: int) -> list[list[int]]:
    """Return each sequence's token ids with [CLS]/[SEP], truncated to ``max_length`` tokens.

    Raises ``GroverInputError`` when the tokenizer turns the sequences into nothing but [UNK]: an
    overlapping k-mer tokenizer reads ``kmer_text`` output, not raw sequence.
    """
    ids = tokenizer(list(sequences), truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    content = [i for row in ids[:256] for i in row if i not in special]
    if content and all(i == tokenizer.unk_token_id for i in content):
        raise GroverInputError("the tokenizer turns these sequences into [UNK] only. An overlapping k-mer "
                               "tokenizer reads k-mers written out (grover_core.kmer.kmer_text); convert the "
                               "sequences first, or use a BPE or non-overlapping tokenizer.")
    return ids


def collate_ids(rows: Sequence[Sequence[int]], *, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad token id lists to the longest one (dynamic padding); return ``input_ids`` and ``attention_mask``."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
        attention_mask[i, :len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


# --- prediction ----------------------------------------------------------------------------------------------

@torch.inference_mode()
def _predict_ids(model: PreTrainedModel, ids: list[list[int]], *, pad_token_id: int, batch_size: int) -> np.ndarray:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # Longest first, then back to the input order: batches of similar length waste little on padding.
    order = np.argsort([-len(row) for row in ids], kind="stable")
    probabilities = np.zeros((len(ids), model.config.num_labels), dtype=np.float32)
    for begin in range(0, len(ids), batch_size):
        chunk = order[begin:begin + batch_size]
        batch = {name: t.to(device) for name, t in
                 collate_ids([ids[i] for i in chunk], pad_token_id=pad_token_id).items()}
        with autocast_for(device):
            logits = model(**batch).logits
        probabilities[chunk] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    model.train(was_training)
    return probabilities


def predict(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sequences: Sequence[str], *,
            batch_size: int = 64, max_tokens: int = 512) -> np.ndarray:
    """Return class probabilities, ``[len(sequences), num_labels]`` float32 rows summing to 1.

    Sequences are truncated to ``max_tokens`` (and the model's positions) as in training. The model's
    train/eval mode is restored afterwards.
    """
    sequences = list(sequences)
    if not sequences:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    ids = tokenize_sequences(tokenizer, sequences, max_length=_max_length(model, max_tokens))
    return _predict_ids(model, ids, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size)


def evaluate_classifier(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, table: pd.DataFrame,
                        split: str | None = "test", *, batch_size: int = 64, max_tokens: int = 512) -> dict:
    """Return ``classification_metrics`` of the model on ``table``'s ``split`` rows, plus ``n`` (rows scored).

    ``split=None`` scores every row (a table without a split column).
    """
    rows = table if split is None else split_rows(table, split)
    check_task_table(rows, what=f"{split or 'evaluation'} table", num_labels=model.config.num_labels)
    probabilities = predict(model, tokenizer, rows["sequence"].tolist(), batch_size=batch_size, max_tokens=max_tokens)
    metrics = classification_metrics(rows["label"].to_numpy(), probabilities.argmax(axis=1))
    return {**metrics, "n": int(len(rows))}


# --- training ------------------------------------------------------------------------------------------------

def learning_rate_at(step: int, *, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    return peak * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def _trainable_parameters(model: PreTrainedModel, freeze_encoder: bool) -> list[torch.nn.Parameter]:
    base = model.base_model
    for parameter in base.parameters():
        parameter.requires_grad_(not freeze_encoder)
    return [p for p in model.parameters() if p.requires_grad]


def _optimizer(parameters: list[torch.nn.Parameter], config: FinetuneConfig, device: torch.device):
    # No decay on biases and LayerNorm weights, as in BERT.
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config.learning_rate, fused=device.type == "cuda")


def finetune_classifier(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, train: pd.DataFrame,
                        validation: pd.DataFrame | None = None, *, config: FinetuneConfig = FinetuneConfig(),
                        progress: bool = False) -> FinetuneResult:
    """Fine-tune ``model`` in place on ``train`` (sequence, label rows); return what happened.

    Each epoch visits the training rows once in a seeded random order, in batches padded to their
    longest sequence. With ``validation`` the model is scored after every epoch (``result.validation``);
    with ``config.early_stopping_patience`` too, training stops after that many epochs without a better
    validation MCC and the best epoch's weights are put back. The model is left in eval mode, on the
    configured device (its parameters stay fp32; bf16 is autocast only).

    Raises
    ------
    GroverInputError
        A table without sequence/label columns, with labels outside the model's classes, or empty.
    """
    num_labels = model.config.num_labels
    check_task_table(train, what="train table", num_labels=num_labels)
    if validation is not None:
        check_task_table(validation, what="validation table", num_labels=num_labels)
    if config.early_stopping_patience and validation is None:
        raise GroverInputError("early_stopping_patience is set but no validation table was given; pass "
                               "validation= or set early_stopping_patience=0.")
    start_time = time.perf_counter()
    device = resolve_device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)  # dropout
    rng = np.random.default_rng(config.seed)  # shuffling
    max_length = _max_length(model, config.max_tokens)
    train_ids = tokenize_sequences(tokenizer, train["sequence"].tolist(), max_length=max_length)
    train_labels = torch.tensor(train["label"].to_numpy(), dtype=torch.long)  # a copy: pandas arrays may be read-only
    validation_ids = (tokenize_sequences(tokenizer, validation["sequence"].tolist(), max_length=max_length)
                      if validation is not None else None)

    parameters = _trainable_parameters(model, config.freeze_encoder)
    optimizer = _optimizer(parameters, config, device)
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(config.warmup_fraction * total_steps)

    step, log, history = 0, [], []
    best_mcc, best_epoch, best_state, stale = -math.inf, config.epochs, None, 0
    epoch_loss, epochs_run = math.nan, 0
    epochs = range(1, config.epochs + 1)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc="fine-tuning", unit="epoch")
    for epoch in epochs:
        model.train()
        if config.freeze_encoder:
            model.base_model.eval()  # a probe reads fixed features: no dropout inside the frozen encoder
        losses = []
        for batch_rows in np.array_split(rng.permutation(len(train_ids)), steps_per_epoch):
            batch = {name: t.to(device) for name, t in
                     collate_ids([train_ids[i] for i in batch_rows], pad_token_id=tokenizer.pad_token_id).items()}
            labels = train_labels[batch_rows].to(device)
            learning_rate = learning_rate_at(step, total_steps=total_steps, warmup_steps=warmup_steps,
                                             peak=config.learning_rate)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
            with autocast_for(device):
                logits = model(**batch).logits
            loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
            optimizer.step()
            step += 1
            losses.append(loss.item())
            if config.log_every and step % config.log_every == 0:
                log.append({"step": step, "epoch": epoch, "loss": losses[-1], "learning_rate": learning_rate,
                            "epoch_end": False})
        epoch_loss, epochs_run = float(np.mean(losses)), epoch
        log.append({"step": step, "epoch": epoch, "loss": epoch_loss, "learning_rate": learning_rate,
                    "epoch_end": True})
        if validation_ids is None:
            continue
        probabilities = _predict_ids(model, validation_ids, pad_token_id=tokenizer.pad_token_id,
                                     batch_size=config.eval_batch_size)
        metrics = classification_metrics(validation["label"].to_numpy(), probabilities.argmax(axis=1))
        history.append({"epoch": epoch, **metrics})
        if metrics["mcc"] > best_mcc:
            best_mcc, best_epoch, stale = metrics["mcc"], epoch, 0
            if config.early_stopping_patience:
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            stale += 1
            if config.early_stopping_patience and stale >= config.early_stopping_patience:
                break
    if best_state is not None and best_epoch != epochs_run:
        model.load_state_dict(best_state)
    if not config.early_stopping_patience:
        # Without early stopping the model holds the last epoch's weights, whatever validation said.
        best_epoch = epochs_run
        best_mcc = history[-1]["mcc"] if history else math.nan
    model.eval()
    return FinetuneResult(steps=step, epochs_run=epochs_run, seconds=time.perf_counter() - start_time,
                          final_loss=epoch_loss, best_epoch=best_epoch,
                          best_validation_mcc=float(best_mcc) if history else math.nan, log=log, validation=history)


# --- saving --------------------------------------------------------------------------------------------------

def save_finetuned(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | TokenizerFolder,
                   out_dir: str | os.PathLike, *, config: FinetuneConfig, metrics: dict,
                   vocabulary_info: dict | None = None) -> Path:
    """Write the fine-tuned model folder atomically; return its path.

    The folder holds ``config.json`` + ``model.safetensors`` (``save_pretrained``), the tokenizer files,
    ``finetune_config.json`` (the ``FinetuneConfig``) and ``metrics.json`` (``metrics`` as given). Our
    k-mer tokenizers are read back only with their ``grover_vocabulary.json``: pass ``vocabulary_info``
    (e.g. ``kmer_vocabulary_info(k)``) or a ``TokenizerFolder``, whose info is copied. ``load_classifier``
    loads the folder with its trained head.
    """
    if vocabulary_info is None and isinstance(tokenizer, TokenizerFolder) and tokenizer.info:
        vocabulary_info = tokenizer.info
    hf_tokenizer = _hf_tokenizer(tokenizer)
    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(str(tmp))  # safetensors (transformers 5 writes nothing else)
        hf_tokenizer.save_pretrained(str(tmp))
        if vocabulary_info:
            (tmp / VOCABULARY_JSON).write_text(json.dumps(vocabulary_info, indent=2))
        (tmp / FINETUNE_CONFIG_JSON).write_text(json.dumps(dataclasses.asdict(config), indent=2))
        (tmp / METRICS_JSON).write_text(json.dumps(_plain(metrics), indent=2))
    return out_dir


def _plain(value):
    """``value`` with numpy scalars and arrays turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
