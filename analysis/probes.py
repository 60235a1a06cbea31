"""Linear probes: how much each layer's window embeddings say about an annotation, in numbers.

A probe is a cross-validated linear classifier from a window's embedding to the window's annotation
class. Folds hold out whole chromosomes, so neighbouring, overlapping windows never sit on both
sides of a split. A k-mer count baseline says how much of the score the sequence alone explains.
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score, matthews_corrcoef
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

BASES = "ACGT"
INVALID = 4  # code of any letter that is not A, C, G or T
BASELINE_LAYER = -1  # the layer value of the k-mer baseline row in probe_layers
PROBE_COLUMNS = ["annotation", "feature_set", "layer", "mcc", "balanced_accuracy", "accuracy", "n_windows",
                 "n_classes", "n_folds"]

_BASE_CODES = np.full(256, INVALID, dtype=np.int64)
for _code, _base in enumerate(BASES):
    _BASE_CODES[ord(_base)] = _code
    _BASE_CODES[ord(_base.lower())] = _code


def kmer_names(k: int) -> list[str]:
    """Return the 4**k k-mers over ACGT in lexicographic order (the columns of ``kmer_count_features``).

    >>> kmer_names(1)
    ['A', 'C', 'G', 'T']
    """
    return ["".join(kmer) for kmer in itertools.product(BASES, repeat=k)]


def encode_bases(text: str) -> np.ndarray:
    """Return int64 codes A=0, C=1, G=2, T=3 (either case), 4 for any other character."""
    return _BASE_CODES[np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)]


def kmer_count_features(sequences: Sequence[str], *, k: int = 4) -> np.ndarray:
    """Return ``[n_sequences, 4**k]`` k-mer frequencies: counts divided by the sequence's valid k-mers.

    Case is ignored; k-mers holding N or any other non-ACGT letter are skipped. A sequence without a
    valid k-mer gives a row of zeros. Columns follow ``kmer_names(k)``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    n_kmers = 4 ** k
    if len(sequences) == 0:
        return np.zeros((0, n_kmers), dtype=np.float64)
    # One pass over all sequences: a separator (an invalid letter) ends every sequence, so no valid
    # k-mer spans two sequences.
    codes = encode_bases("|".join(sequences) + "|")
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int64)
    n_starts = max(len(codes) - k + 1, 0)
    index = np.zeros(n_starts, dtype=np.int64)
    invalid = np.zeros(n_starts, dtype=bool)
    for offset in range(k):  # a loop over the k letters of a k-mer, vectorized over positions
        window = codes[offset: offset + n_starts]
        index = index * 4 + np.minimum(window, 3)
        invalid |= window == INVALID
    starts = np.flatnonzero(~invalid)
    sequence_ends = np.cumsum(lengths + 1)  # first position after each sequence's separator
    owner = np.searchsorted(sequence_ends, starts, side="right")
    counts = np.bincount(owner * n_kmers + index[starts], minlength=len(sequences) * n_kmers)
    counts = counts.reshape(len(sequences), n_kmers).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return counts / np.where(totals > 0, totals, 1.0)


def chromosome_folds(groups: np.ndarray, *, n_folds: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return ``(train_indices, test_indices)`` pairs whose test parts hold whole chromosomes.

    ``groups[i]`` is window i's chromosome. There are ``min(n_folds, number of chromosomes)`` folds
    (sklearn ``GroupKFold``); every chromosome is tested exactly once.
    """
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"Held-out-chromosome folds need windows from at least 2 chromosomes, got {n_groups}; "
                         "sample windows from more chromosomes.")
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}.")
    splitter = GroupKFold(n_splits=min(n_folds, n_groups))
    return list(splitter.split(np.zeros((len(groups), 1)), groups=groups))


def drop_rare_classes(labels: np.ndarray, *, min_class_count: int) -> tuple[np.ndarray, list]:
    """Return ``(keep mask, dropped classes)``: classes with fewer than ``min_class_count`` windows are dropped."""
    classes, counts = np.unique(labels, return_counts=True)
    dropped = classes[counts < min_class_count]
    return ~np.isin(labels, dropped), dropped.tolist()


CLASSIFIERS = ("ridge", "logistic")


def fit_predict_fold(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, *,
                     C: float, max_iter: int, seed: int, classifier: str = "ridge") -> np.ndarray:
    """Fit a standardized, class-balanced linear classifier on one fold and return its test predictions.

    ``classifier``: "ridge" (least-squares, one-vs-rest, penalty 1/C; solved in closed form, so a
    probe over 10,000 windows takes about a second) or "logistic" (multinomial logistic regression,
    lbfgs; often 50x slower on embeddings, where it needs many iterations to converge, and scored
    the same on the demo). A training part with one class only predicts that class.
    """
    seen = np.unique(train_labels)
    if len(seen) == 1:
        return np.full(len(test_features), seen[0], dtype=train_labels.dtype)
    if classifier == "ridge":
        estimator = RidgeClassifier(alpha=1.0 / C, class_weight="balanced")
    elif classifier == "logistic":
        # lbfgs fits a multinomial model when there are more than two classes.
        estimator = LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced", random_state=seed)
    else:
        raise ValueError(f"unknown probe classifier {classifier!r}; choose one of {', '.join(CLASSIFIERS)}.")
    model = make_pipeline(StandardScaler(), estimator)
    model.fit(train_features, train_labels)
    return model.predict(test_features)


def probe_scores(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, n_folds: int = 5,
                 C: float = 1.0, max_iter: int = 1000, seed: int = 0, min_class_count: int = 10,
                 classifier: str = "ridge") -> dict:
    """Cross-validate a linear probe from ``features`` to ``labels`` over held-out chromosomes.

    Each fold trains StandardScaler + a class-balanced linear classifier (``fit_predict_fold``:
    ridge by default, or multinomial logistic regression) on the other chromosomes and predicts the held-out ones; scores are computed on the
    pooled out-of-fold predictions. Classes with fewer than ``min_class_count`` windows are dropped
    first, as a few examples cannot be both learned and tested.

    Returns
    -------
    dict with ``mcc`` (Matthews correlation, multiclass), ``balanced_accuracy``, ``accuracy``,
    ``n_windows`` (after dropping), ``n_classes``, ``n_folds``, ``classes`` (kept, sorted),
    ``mcc_per_fold`` (one per fold, on its test part), ``dropped_classes``.
    """
    features = np.asarray(features)
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if not len(features) == len(labels) == len(groups):
        raise ValueError(f"features ({len(features)}), labels ({len(labels)}) and groups ({len(groups)}) "
                         "must have one row per window.")
    keep, dropped = drop_rare_classes(labels, min_class_count=min_class_count)
    features = features[keep].reshape(int(keep.sum()), -1).astype(np.float64)
    labels, groups = labels[keep], groups[keep]
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"A probe needs at least 2 classes with {min_class_count} or more windows; "
                         f"{len(classes)} remain (dropped: {dropped}). Lower min_class_count or use more windows.")
    folds = chromosome_folds(groups, n_folds=n_folds)
    predictions = np.empty_like(labels)
    mcc_per_fold = []
    for train, test in folds:
        predictions[test] = fit_predict_fold(features[train], labels[train], features[test],
                                             C=C, max_iter=max_iter, seed=seed, classifier=classifier)
        with warnings.catch_warnings():  # a fold whose test part has one class has an undefined MCC, reported as 0
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            mcc_per_fold.append(float(matthews_corrcoef(labels[test], predictions[test])))
    return {
        "mcc": float(matthews_corrcoef(labels, predictions)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "n_windows": int(len(labels)),
        "n_classes": int(len(classes)),
        "n_folds": len(folds),
        "classes": classes.tolist(),
        "mcc_per_fold": mcc_per_fold,
        "dropped_classes": dropped,
    }


def probe_row(scores: dict, *, annotation: str, feature_set: str, layer: int) -> dict:
    """Return one ``PROBE_COLUMNS`` row from a ``probe_scores`` result."""
    return {"annotation": annotation, "feature_set": feature_set, "layer": int(layer),
            **{column: scores[column] for column in PROBE_COLUMNS[3:]}}


def probe_layers(window_embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray, *,
                 baseline_features: np.ndarray | None = None, annotation: str = "label",
                 **probe_options) -> pd.DataFrame:
    """Probe every layer of ``window_embeddings`` ``[n_windows, n_layers, hidden]`` (and a baseline).

    Each layer is cast to float64 on its own, so a float16 array is never copied whole.
    ``probe_options`` go to ``probe_scores`` (``n_folds``, ``C``, ``max_iter``, ``seed``, ``min_class_count``,
    ``classifier``).

    Returns
    -------
    DataFrame with columns ``annotation``, ``feature_set`` ("embedding", or "kmer_baseline" for
    ``baseline_features``), ``layer`` (-1 for the baseline), ``mcc``, ``balanced_accuracy``,
    ``accuracy``, ``n_windows``, ``n_classes``, ``n_folds``: one row per layer, then the baseline.
    """
    if window_embeddings.ndim != 3:
        raise ValueError(f"window_embeddings must be [n_windows, n_layers, hidden], got shape "
                         f"{window_embeddings.shape}.")
    rows = []
    for layer in range(window_embeddings.shape[1]):
        features = np.asarray(window_embeddings[:, layer, :], dtype=np.float64)
        scores = probe_scores(features, labels, groups, **probe_options)
        rows.append(probe_row(scores, annotation=annotation, feature_set="embedding", layer=layer))
    if baseline_features is not None:
        scores = probe_scores(baseline_features, labels, groups, **probe_options)
        rows.append(probe_row(scores, annotation=annotation, feature_set="kmer_baseline", layer=BASELINE_LAYER))
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)
