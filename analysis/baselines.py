"""The simple baseline every fine-tuning result stands beside: TF-IDF of k-mers + logistic regression.

GROVER reports TF-IDF baselines for its tasks (MCC 0.67 / 0.39 / 0.26 on Prom300 / PromScan / CTCF) and
for next-k-mer prediction (1.1% next-6-mer accuracy). A model that does not beat this has learned
nothing the k-mer composition of the sequence does not already say.

Overlapping k-mers of a sequence are its character n-grams, so scikit-learn's ``TfidfVectorizer`` with
``analyzer="char"`` and ``ngram_range=(k_min, k_max)`` counts every k-mer of every length in the range.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from analysis.run import TFIDF_BASELINE
from grover_core.errors import GroverInputError

BASELINE_NAME = TFIDF_BASELINE  # the method name in finetune_results.parquet


def tfidf_kmer_pipeline(*, k_values: Sequence[int] = (3, 4, 5, 6), max_features: int | None = None, C: float = 1.0,
                        class_weight: str | None = None, max_iter: int = 1000, seed: int = 0) -> Pipeline:
    """Return an unfitted ``Pipeline(tfidf, logistic)`` over the k-mers (char n-grams) of lengths ``k_values``.

    ``k_values`` must be consecutive (the vectorizer counts a range of lengths). ``max_features=None``
    keeps every k-mer: 5,440 over A/C/G/T for 3..6, so a 4096-class next-6-mer problem stays tractable.
    ``class_weight="balanced"`` weighs classes inversely to their frequency (unbalanced tasks, PromScan).
    """
    ks = sorted(int(k) for k in k_values)
    if not ks or ks[0] < 1 or ks != list(range(ks[0], ks[-1] + 1)):
        raise GroverInputError(f"k_values must be consecutive k-mer lengths of at least 1 (e.g. (3, 4, 5, 6)), "
                               f"got {tuple(k_values)!r}.")
    if class_weight not in (None, "balanced"):
        raise GroverInputError(f"class_weight must be None or 'balanced', got {class_weight!r}.")
    # lowercase=False: sequences are upper case already, and soft-masking must not split one k-mer in two.
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(ks[0], ks[-1]), lowercase=False,
                                 max_features=max_features, dtype=np.float32)
    classifier = LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter, random_state=seed)
    return Pipeline([("tfidf", vectorizer), ("logistic", classifier)])


def tfidf_kmer_baseline(train: pd.DataFrame, test: pd.DataFrame, *, k_values: Sequence[int] = (3, 4, 5, 6),
                        max_features: int | None = None, C: float = 1.0, class_weight: str | None = None,
                        max_iter: int = 1000, seed: int = 0, return_predictions: bool = False) -> dict:
    """Fit the TF-IDF k-mer baseline on ``train`` and score it on ``test`` (both with sequence and label).

    Works for two classes and more (next-k-mer prediction too); options as ``tfidf_kmer_pipeline``.

    Returns
    -------
    dict
        ``mcc``, ``accuracy``, ``macro_f1``, ``precision``, ``recall`` on ``test`` (as
        ``grover_core.finetune.classification_metrics``: binary precision/recall of class 1 for two
        classes, macro averages for more), ``seconds`` (fitting and scoring), ``n_train``, ``n_test``;
        with ``return_predictions`` also ``predictions`` (int array of test labels predicted).

    Raises
    ------
    GroverInputError
        Tables without sequence/label rows, a training table with a single class, bad options.
    """
    # Imported here: grover_core.finetune brings torch and transformers, which importing analysis should not.
    from grover_core.finetune import check_task_table, classification_metrics

    check_task_table(train, what="train table")
    check_task_table(test, what="test table")
    if train["label"].nunique() < 2:
        raise GroverInputError(f"the train table holds one class only ({train['label'].iloc[0]}); a classifier needs "
                               "at least two. Check the task's labels and split.")
    pipeline = tfidf_kmer_pipeline(k_values=k_values, max_features=max_features, C=C, class_weight=class_weight,
                                   max_iter=max_iter, seed=seed)
    started = time.perf_counter()
    pipeline.fit(train["sequence"].tolist(), train["label"].to_numpy())
    predictions = pipeline.predict(test["sequence"].tolist()).astype(np.int64)
    seconds = time.perf_counter() - started
    result = {**classification_metrics(test["label"].to_numpy(), predictions), "seconds": seconds,
              "n_train": int(len(train)), "n_test": int(len(test))}
    if return_predictions:
        result["predictions"] = predictions
    return result
