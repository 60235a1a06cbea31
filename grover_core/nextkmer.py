"""GROVER's next-k-mer prediction: how the paper chose its vocabulary (GROVER.md "Next-k-mer prediction").

Each pretrained model is fine-tuned to read 50 nt of genome and predict the k nucleotides that follow,
a 4**k-class problem (k = 2..6), and scored by accuracy on held-out sequences. The paper drew 500,000
sequences from chromosome 21; the defaults here are small enough for a CPU. Beside each model stand a
frequency baseline (the commonest next k-mer after the same last few nucleotides in the training set)
and chance (1 / 4**k).

Train and test never share a nucleotide: the chosen chromosomes are cut into blocks of ``block_nt``,
each block belongs to one split (seeded), and every example (input plus next k-mer) lies inside one
block. Examples are drawn at distinct random positions whose input and next k-mer hold only A/C/G/T.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from grover_core.errors import GroverInputError
from grover_core.finetune import FinetuneConfig, finetune_classifier, load_classifier, predict
from grover_core.genome import NOT_ACGT, NUCLEOTIDES, encode_nucleotides, iter_fasta

# One row per example; ``end`` is the end of the input, the next k-mer is genome[end:end + k].
DATASET_COLUMNS = ("sequence", "label", "next_kmer", "chromosome", "start", "end", "split")
# The same columns as analysis.run.NEXTKMER_RESULT_COLUMNS (grover_core never imports analysis).
NEXTKMER_RESULT_COLUMNS = ("vocabulary", "vocabulary_kind", "bpe_cycles", "kmer_size", "k", "method", "accuracy",
                           "n_train", "n_test", "seconds")
# The method names of analysis.run (FINE_TUNED, FREQUENCY_BASELINE, CHANCE).
FINE_TUNED, FREQUENCY_BASELINE, CHANCE = METHODS = ("fine-tuned", "frequency baseline", "chance")
MAX_K = 8  # 4**8 = 65,536 classes; the paper stops at 6
_LETTERS = np.frombuffer(NUCLEOTIDES.encode(), dtype=np.uint8)
_EXACT_SAMPLING_LIMIT = 2_000_000  # candidate positions listed outright below this; rejection sampling above


@dataclass(frozen=True)
class NextKmerConfig:
    """One next-k-mer experiment (the same sequences for every k)."""

    sequence_nt: int = 50  # the paper's input length
    k_values: tuple[int, ...] = (2, 3, 4, 5, 6)  # nucleotides to predict: 4**k classes
    n_train: int = 5_000  # the paper: 500,000 sequences in all; these defaults fine-tune on a CPU
    n_validation: int = 0  # held out for early stopping (finetune.early_stopping_patience); 0: none
    n_test: int = 1_000
    chromosomes: tuple[str, ...] = ("chr21",)  # the paper's; the demo genome names its chr1 .. chr4
    block_nt: int = 10_000  # train/validation/test blocks: no example crosses one, no block feeds two splits
    baseline_context_nt: int = 4  # frequency baseline conditions on this many last nucleotides (256 contexts)
    seed: int = 0  # sampling, head initialisation and fine-tuning
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self):
        if not self.k_values or any(not isinstance(k, int) or not 1 <= k <= MAX_K for k in self.k_values):
            raise GroverInputError(f"NextKmerConfig.k_values must be whole numbers from 1 to {MAX_K}, "
                                   f"got {self.k_values!r}.")
        if self.n_train < 1 or self.n_test < 1 or self.n_validation < 0:
            raise GroverInputError("NextKmerConfig: n_train and n_test must be at least 1, n_validation 0 or more.")
        if isinstance(self.chromosomes, str) or not self.chromosomes:
            raise GroverInputError(f"NextKmerConfig.chromosomes must be a tuple of names, e.g. ('chr21',), "
                                   f"got {self.chromosomes!r}.")


def chance_accuracy(k: int) -> float:
    """Return the accuracy of guessing uniformly among the 4**k next k-mers."""
    return 1.0 / 4**k


def kmer_index(kmers: Sequence[str]) -> np.ndarray:
    """Return each k-mer's index in lexicographic A<C<G<T order (``AA..A`` = 0, ``TT..T`` = 4**k - 1), int64.

    Raises ``GroverInputError`` for k-mers of unequal length or holding letters other than A/C/G/T.
    """
    kmers = list(kmers)
    if not kmers:
        return np.zeros(0, dtype=np.int64)
    k = len(kmers[0])
    if k == 0 or any(len(kmer) != k for kmer in kmers):
        raise GroverInputError("k-mers must all have the same, non-zero length; truncate them to one k first.")
    codes = encode_nucleotides("".join(kmers)).reshape(len(kmers), k)
    if (codes == NOT_ACGT).any():
        raise GroverInputError("k-mers may hold only A, C, G and T; drop rows with other letters first.")
    return codes.astype(np.int64) @ (4 ** np.arange(k - 1, -1, -1, dtype=np.int64))


def truncate_next_kmer(table: pd.DataFrame, *, k: int) -> pd.DataFrame:
    """Return a copy of a next-k-mer table predicting only the first ``k`` nucleotides (label recomputed)."""
    if "next_kmer" not in table.columns:
        raise GroverInputError("the table has no next_kmer column; build it with next_kmer_dataset.")
    longest = int(table["next_kmer"].str.len().min())
    if not 1 <= k <= longest:
        raise GroverInputError(f"k={k} cannot be taken from next k-mers of {longest} nucleotides; build the table "
                               f"with k >= {k}.")
    next_kmer = table["next_kmer"].str[:k]
    return table.assign(next_kmer=next_kmer, label=kmer_index(next_kmer.tolist()))


# --- the data set --------------------------------------------------------------------------------------------

def _read_chromosomes(genome_path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the named chromosomes in the order named, joined by one non-ACGT separator, and each one's
    first position in the joined array."""
    found = {name: encode_nucleotides(letters) for name, letters in iter_fasta(genome_path, chromosomes=names)}
    parts, offsets, position = [], [], 0
    separator = np.full(1, NOT_ACGT, dtype=np.uint8)  # no window spans two chromosomes
    for name in names:
        offsets.append(position)
        parts += [found[name], separator]
        position += found[name].size + 1
    return np.concatenate(parts), np.asarray(offsets, dtype=np.int64)


def _split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    counts = {name: int(round(n * fraction)) for name, fraction in fractions.items()}
    counts["train"] = n - sum(counts.values())
    for name, fraction in fractions.items():
        if fraction > 0 and counts[name] == 0:
            counts[name] = 1
            counts["train"] -= 1
    if counts["train"] < 1:
        raise GroverInputError(f"n={n} leaves no training examples after the test/validation fractions; "
                               "raise n or lower the fractions.")
    return counts


def _sample_positions(mask: np.ndarray, n: int, rng: np.random.Generator, *, split: str) -> np.ndarray:
    """``n`` distinct positions where ``mask`` is True, sorted; uniform over them."""
    available = int(np.count_nonzero(mask))
    if available < n:
        raise GroverInputError(f"only {available} {split} positions hold a clean example (no N, inside one block), "
                               f"but {n} were asked for; lower n, or draw from more chromosomes.")
    if available <= max(_EXACT_SAMPLING_LIMIT, 8 * n):
        return np.sort(rng.choice(np.flatnonzero(mask), size=n, replace=False))
    # A chromosome's worth of candidates is too many to list (chr21: 40M): draw uniformly and keep the
    # clean ones. At most 1 in 8 of them is wanted, so few rounds are needed.
    chosen = np.zeros(0, dtype=np.int64)
    while chosen.size < n:
        candidates = rng.integers(0, mask.size, size=2 * (n - chosen.size))
        candidates = candidates[mask[candidates]]
        _, first = np.unique(candidates, return_index=True)
        candidates = candidates[np.sort(first)]  # distinct, in draw order
        chosen = np.concatenate([chosen, candidates[~np.isin(candidates, chosen)]])
    return np.sort(chosen[:n])


def next_kmer_dataset(genome_path, *, chromosome: str | Sequence[str], k: int, n: int, sequence_nt: int = 50,
                      seed: int = 0, test_fraction: float = 0.2, validation_fraction: float = 0.0,
                      block_nt: int = 10_000) -> pd.DataFrame:
    """Return ``n`` next-k-mer examples drawn from the named chromosome(s) of a FASTA or .2bit genome.

    Only the named chromosomes are read. Blocks of ``block_nt`` are dealt to test, validation and train
    (seeded; as many blocks as each fraction of ``n``); each split's examples are then drawn at distinct
    random positions of its blocks. The same arguments give the same table.

    Returns
    -------
    pandas.DataFrame
        ``DATASET_COLUMNS``, train rows first, then validation, then test, by position within each:
        ``sequence`` (``sequence_nt`` upper-case nucleotides), ``label`` (index of the next k-mer in
        lexicographic ACGT order, 0 .. 4**k - 1), ``next_kmer`` (the k nucleotides after the sequence),
        ``chromosome``, ``start``/``end`` (0-based, half-open, of ``sequence``; the next k-mer is at
        ``end .. end + k``), ``split``.

    Raises
    ------
    GroverInputError
        Bad sizes or fractions; a missing chromosome or unreadable genome (from ``iter_fasta``); too few
        clean positions for a split.
    """
    names = [chromosome] if isinstance(chromosome, str) else list(chromosome)
    if not names or len(set(names)) != len(names):
        raise GroverInputError(f"chromosome must name one or more distinct chromosomes, got {chromosome!r}.")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise GroverInputError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}.")
    if n < 1 or sequence_nt < 1:
        raise GroverInputError(f"n and sequence_nt must be at least 1, got n={n}, sequence_nt={sequence_nt}.")
    if test_fraction < 0 or validation_fraction < 0 or test_fraction + validation_fraction >= 1:
        raise GroverInputError("test_fraction and validation_fraction must be 0 or more and sum to less than 1, "
                               f"got {test_fraction} and {validation_fraction}.")
    span = sequence_nt + k
    if block_nt < span:
        raise GroverInputError(f"block_nt={block_nt} cannot hold one example of {span} nt; raise block_nt.")
    counts = _split_counts(n, {"validation": validation_fraction, "test": test_fraction})
    rng = np.random.default_rng(seed)

    codes, offsets = _read_chromosomes(genome_path, names)
    starts = codes.size - span + 1  # positions where a whole example fits
    if starts < 1:
        raise GroverInputError(f"chromosome(s) {', '.join(names)} are shorter than one example ({span} nt).")
    # Running count of non-ACGT letters: a window is clean when the count does not rise across it.
    not_acgt = np.zeros(codes.size + 1, dtype=np.int32 if codes.size < 2**31 - 1 else np.int64)
    np.cumsum(codes == NOT_ACGT, out=not_acgt[1:])
    clean = (not_acgt[span:] - not_acgt[:-span]) == 0
    del not_acgt
    n_blocks = math.ceil(codes.size / block_nt)
    inside_block = np.tile(np.arange(block_nt) + span <= block_nt, n_blocks)[:starts]
    block_split = np.zeros(n_blocks, dtype=np.int8)  # 0 train, 1 validation, 2 test
    order = rng.permutation(n_blocks)
    taken = 0
    for value, name in ((2, "test"), (1, "validation")):
        if counts.get(name, 0):
            share = max(1, int(round(n_blocks * counts[name] / n)))
            block_split[order[taken:taken + share]] = value
            taken += share
    if taken >= n_blocks:
        raise GroverInputError(f"{n_blocks} blocks of {block_nt} nt are too few to split; lower block_nt or draw "
                               "from more chromosomes.")
    split_of_start = np.repeat(block_split, block_nt)[:starts]

    tables = []
    for value, name in ((0, "train"), (1, "validation"), (2, "test")):
        if not counts.get(name, 0):
            continue
        positions = _sample_positions(clean & inside_block & (split_of_start == value), counts[name], rng, split=name)
        tables.append(_examples(codes, offsets, names, positions, sequence_nt=sequence_nt, k=k, split=name))
    return pd.concat(tables, ignore_index=True)


def _examples(codes: np.ndarray, offsets: np.ndarray, names: list[str], positions: np.ndarray, *,
              sequence_nt: int, k: int, split: str) -> pd.DataFrame:
    windows = codes[positions[:, None] + np.arange(sequence_nt + k)]
    letters = _LETTERS[windows]
    text = lambda part: np.ascontiguousarray(part).view(f"S{part.shape[1]}")[:, 0].astype(str)  # noqa: E731
    which = np.searchsorted(offsets, positions, side="right") - 1
    start = positions - offsets[which]
    return pd.DataFrame({
        "sequence": text(letters[:, :sequence_nt]),
        "label": windows[:, sequence_nt:].astype(np.int64) @ (4 ** np.arange(k - 1, -1, -1, dtype=np.int64)),
        "next_kmer": text(letters[:, sequence_nt:]),
        "chromosome": np.asarray(names, dtype=object)[which],
        "start": start,
        "end": start + sequence_nt,
        "split": split,
    }, columns=list(DATASET_COLUMNS))


# --- baselines -----------------------------------------------------------------------------------------------

def _check_next_kmer_table(table: pd.DataFrame, what: str, k: int) -> None:
    missing = [c for c in ("sequence", "next_kmer") if c not in table.columns]
    if missing:
        raise GroverInputError(f"{what} lacks column(s) {', '.join(missing)}; build it with next_kmer_dataset.")
    if len(table) == 0:
        raise GroverInputError(f"{what} has no rows.")
    if int(table["next_kmer"].str.len().min()) < k:
        raise GroverInputError(f"{what} holds next k-mers shorter than k={k}; build it with k >= {k}.")


def frequency_baseline_predict(train: pd.DataFrame, test: pd.DataFrame, *, k: int, context_nt: int) -> np.ndarray:
    """Return, for each test row, the label of the next k-mer that most often followed its last ``context_nt``
    nucleotides in ``train`` (ties: the lexicographically first k-mer); contexts never seen in training,
    and ``context_nt=0``, get the commonest next k-mer overall.

    Tables are ``next_kmer_dataset`` outputs; the target is the first ``k`` letters of ``next_kmer``.
    """
    _check_next_kmer_table(train, "train table", k)
    _check_next_kmer_table(test, "test table", k)
    if context_nt < 0:
        raise GroverInputError(f"context_nt must be 0 or more, got {context_nt}.")
    labels = kmer_index(train["next_kmer"].str[:k].tolist())
    counts = np.bincount(labels, minlength=4**k)
    overall = int(counts.argmax())  # argmax takes the first (lexicographically smallest) of tied k-mers
    if context_nt == 0:
        return np.full(len(test), overall, dtype=np.int64)
    context = lambda table: table["sequence"].str[-context_nt:]  # noqa: E731
    frequencies = (pd.DataFrame({"context": context(train).to_numpy(), "label": labels})
                   .groupby(["context", "label"]).size().rename("count").reset_index())
    # groupby sorts by (context, label); a stable sort on count keeps the smaller label first among ties.
    best = (frequencies.sort_values("count", ascending=False, kind="stable")
            .drop_duplicates("context").set_index("context")["label"])
    return context(test).map(best).fillna(overall).to_numpy(dtype=np.int64)


def frequency_baseline_accuracy(train: pd.DataFrame, test: pd.DataFrame, *, k: int, context_nt: int) -> float:
    """Return the accuracy on ``test`` of ``frequency_baseline_predict`` (see there)."""
    predicted = frequency_baseline_predict(train, test, k=k, context_nt=context_nt)
    return float(np.mean(predicted == kmer_index(test["next_kmer"].str[:k].tolist())))


# --- the experiment ------------------------------------------------------------------------------------------

def run_next_kmer(model_path, genome_path, *, config: NextKmerConfig = NextKmerConfig(), vocabulary: str,
                  vocabulary_kind: str, bpe_cycles: float = math.nan, kmer_size: float = math.nan,
                  tokenizer=None, progress: bool = False) -> pd.DataFrame:
    """Fine-tune the model at ``model_path`` to predict the next k nucleotides, for every k of the config.

    One table of examples is drawn for the largest k and cut down for smaller ones, so every k sees the
    same sequences. For each k a fresh ``4**k``-class head goes on the pretrained encoder
    (``load_classifier``; ``tokenizer`` as it takes), is fine-tuned on the train rows (validation rows
    for early stopping when ``n_validation`` > 0) and scored on the test rows.

    Returns
    -------
    pandas.DataFrame
        ``NEXTKMER_RESULT_COLUMNS``, three rows per k: ``method`` "fine-tuned", "frequency baseline"
        (``baseline_context_nt`` nucleotides of context) and "chance"; ``vocabulary``,
        ``vocabulary_kind``, ``bpe_cycles`` and ``kmer_size`` as given; ``accuracy`` on the test rows;
        ``seconds`` of fitting and scoring (0 for chance).
    """
    finetune_config = config.finetune
    if not config.n_validation and finetune_config.early_stopping_patience:
        raise GroverInputError("finetune.early_stopping_patience needs validation rows; set n_validation > 0.")
    n_total = config.n_train + config.n_validation + config.n_test
    table = next_kmer_dataset(genome_path, chromosome=list(config.chromosomes), k=max(config.k_values), n=n_total,
                              sequence_nt=config.sequence_nt, seed=config.seed,
                              test_fraction=config.n_test / n_total,
                              validation_fraction=config.n_validation / n_total, block_nt=config.block_nt)
    common = {"vocabulary": vocabulary, "vocabulary_kind": vocabulary_kind, "bpe_cycles": float(bpe_cycles),
              "kmer_size": float(kmer_size), "n_train": config.n_train, "n_test": config.n_test}
    rows = []
    for k in config.k_values:
        data = truncate_next_kmer(table, k=k)
        train, test = data[data["split"] == "train"], data[data["split"] == "test"]
        validation = data[data["split"] == "validation"] if config.n_validation else None

        started = time.perf_counter()
        model, tokenizer = load_classifier(model_path, num_labels=4**k, tokenizer=tokenizer, seed=config.seed)
        finetune_classifier(model, tokenizer, train, validation, config=finetune_config, progress=progress)
        probabilities = predict(model, tokenizer, test["sequence"].tolist(), batch_size=finetune_config.eval_batch_size,
                                max_tokens=finetune_config.max_tokens)
        accuracy = float(np.mean(probabilities.argmax(axis=1) == test["label"].to_numpy()))
        rows.append({**common, "k": k, "method": FINE_TUNED, "accuracy": accuracy,
                     "seconds": time.perf_counter() - started})
        del model  # one 4**k head at a time

        started = time.perf_counter()
        accuracy = frequency_baseline_accuracy(train, test, k=k, context_nt=config.baseline_context_nt)
        rows.append({**common, "k": k, "method": FREQUENCY_BASELINE, "accuracy": accuracy,
                     "seconds": time.perf_counter() - started})
        rows.append({**common, "k": k, "method": CHANCE, "accuracy": chance_accuracy(k), "seconds": 0.0})
    return pd.DataFrame(rows, columns=list(NEXTKMER_RESULT_COLUMNS))
