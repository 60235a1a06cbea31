"""The TF-IDF k-mer baseline: it finds a planted motif, finds nothing in shuffled labels, handles several
classes and unbalanced ones, and refuses what it cannot fit."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_score

from analysis.baselines import tfidf_kmer_baseline, tfidf_kmer_pipeline
from grover_core.errors import GroverInputError

METRIC_KEYS = {"mcc", "accuracy", "macro_f1", "precision", "recall", "seconds", "n_train", "n_test"}


def motif_table(n, seed, *, motifs=("CGCGCGCGCGCG",), length=60, positive=None):
    """Random sequences; class i > 0 carries ``motifs[i - 1]`` at a random place, class 0 none.

    ``positive``: the share of rows in class 1 (two classes); else classes are equally likely.
    """
    rng = np.random.default_rng(seed)
    if positive is None:
        labels = rng.integers(0, len(motifs) + 1, n)
    else:
        labels = (rng.random(n) < positive).astype(np.int64)
    sequences = []
    for label in labels:
        sequence = "".join(rng.choice(list("ACGT"), length))
        if label:
            motif = motifs[label - 1]
            at = int(rng.integers(0, length - len(motif)))
            sequence = sequence[:at] + motif + sequence[at + len(motif):]
        sequences.append(sequence)
    return pd.DataFrame({"sequence": sequences, "label": labels.astype(np.int64)})


def test_separates_a_motif_task():
    result = tfidf_kmer_baseline(motif_table(400, 1), motif_table(300, 2))
    assert set(result) == METRIC_KEYS
    assert result["mcc"] > 0.9 and result["accuracy"] > 0.95
    assert (result["n_train"], result["n_test"]) == (400, 300) and result["seconds"] > 0


def test_shuffled_labels_stay_near_chance():
    # Labels shuffled in train and test alike: nothing links sequence and label, so no score may appear.
    # (Shuffling train alone is no clean control here: a chance tilt towards the motif in 400 shuffled
    # labels is amplified on a test set whose labels the motif decides.)
    rng = np.random.default_rng(0)
    shuffled = [table.assign(label=rng.permutation(table["label"].to_numpy()))
                for table in (motif_table(400, 1), motif_table(400, 2))]
    result = tfidf_kmer_baseline(*shuffled)
    assert abs(result["mcc"]) < 0.15 and abs(result["accuracy"] - 0.5) < 0.08


def test_several_classes_use_macro_averages():
    motifs = ("CGCGCGCGCGCG", "TATATATATATA", "GGGGGGGGGGGG")
    train, test = motif_table(600, 3, motifs=motifs), motif_table(300, 4, motifs=motifs)
    result = tfidf_kmer_baseline(train, test, k_values=(3, 4), return_predictions=True)
    predictions = result["predictions"]
    assert predictions.shape == (300,) and set(np.unique(predictions)) == {0, 1, 2, 3}
    assert result["accuracy"] == pytest.approx(np.mean(predictions == test["label"].to_numpy()))
    assert result["accuracy"] > 0.85
    assert result["precision"] == pytest.approx(precision_score(test["label"], predictions, average="macro"))


def test_balanced_class_weights_find_a_rare_class():
    # A weak motif in 8% of rows: unweighted, the fit predicts the majority class for everything.
    train, test = (motif_table(600, seed, motifs=("GATA",), positive=0.08) for seed in (3, 4))
    plain = tfidf_kmer_baseline(train, test)
    balanced = tfidf_kmer_baseline(train, test, class_weight="balanced")
    assert balanced["recall"] > plain["recall"] and balanced["mcc"] > plain["mcc"]


def test_kmer_lengths_are_char_ngrams():
    pipeline = tfidf_kmer_pipeline(k_values=(2, 3))
    features = pipeline.named_steps["tfidf"].fit(["ACGTA"]).get_feature_names_out().tolist()
    assert sorted(features) == ["AC", "ACG", "CG", "CGT", "GT", "GTA", "TA"]  # overlapping, upper case kept


def test_bad_input_names_the_fix():
    train, test = motif_table(50, 1), motif_table(20, 2)
    with pytest.raises(GroverInputError, match="consecutive"):
        tfidf_kmer_baseline(train, test, k_values=(3, 5))
    with pytest.raises(GroverInputError, match="one class only"):
        tfidf_kmer_baseline(train.assign(label=1), test)
    with pytest.raises(GroverInputError, match="lacks column"):
        tfidf_kmer_baseline(train[["label"]], test)
    with pytest.raises(GroverInputError, match="class_weight"):
        tfidf_kmer_baseline(train, test, class_weight="even")
