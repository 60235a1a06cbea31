import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.probes import (
    PROBE_COLUMNS,
    chromosome_folds,
    kmer_count_features,
    kmer_names,
    probe_layers,
    probe_scores,
)

CHROMOSOMES = np.array(["chr1", "chr2", "chr3", "chr4"])


def brute_force_kmer_frequencies(sequence: str, k: int) -> np.ndarray:
    """Count k-mers one position at a time: the slow, obviously right answer."""
    names = ["".join(kmer) for kmer in itertools.product("ACGT", repeat=k)]
    counts = np.zeros(len(names))
    upper = sequence.upper()
    for i in range(len(upper) - k + 1):
        kmer = upper[i: i + k]
        if set(kmer) <= set("ACGT"):
            counts[names.index(kmer)] += 1
    return counts / counts.sum() if counts.sum() else counts


def planted_windows(n: int = 800, *, dims: int = 10, seed: int = 0):
    """Features, their chromosome and a random generator: windows spread evenly over 4 chromosomes."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dims)), CHROMOSOMES[np.arange(n) % 4], rng


def test_kmer_names_are_lexicographic():
    assert kmer_names(1) == ["A", "C", "G", "T"]
    names = kmer_names(4)
    assert len(names) == 256 and names[0] == "AAAA" and names[-1] == "TTTT" and names == sorted(names)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_kmer_count_features_match_a_brute_force_count(k):
    rng = np.random.default_rng(k)
    letters = list("ACGTacgtNNn")
    sequences = ["".join(rng.choice(letters, size=rng.integers(0, 60))) for _ in range(12)]
    sequences += ["NNNN", "", "AC", "acgtRYacgt", "ACGTé"[: 5]]
    features = kmer_count_features(sequences, k=k)
    assert features.shape == (len(sequences), 4 ** k)
    expected = np.array([brute_force_kmer_frequencies(sequence, k) for sequence in sequences])
    assert np.allclose(features, expected)
    nonempty = features.sum(axis=1) > 0
    assert np.allclose(features[nonempty].sum(axis=1), 1.0)


def test_kmer_count_features_never_count_across_sequences():
    features = kmer_count_features(["AA", "CC"], k=2)
    assert features[0, kmer_names(2).index("AA")] == 1 and features[1, kmer_names(2).index("CC")] == 1
    assert features[:, kmer_names(2).index("AC")].sum() == 0


def test_kmer_count_features_edge_cases():
    assert kmer_count_features([], k=2).shape == (0, 16)
    assert np.array_equal(kmer_count_features(["A"], k=3), np.zeros((1, 64)))
    with pytest.raises(ValueError, match="k must be"):
        kmer_count_features(["ACGT"], k=0)


@pytest.mark.parametrize("n_folds", [2, 3, 5, 10])
def test_chromosome_folds_hold_out_whole_chromosomes(n_folds):
    groups = np.array(["chr1"] * 7 + ["chr2"] * 3 + ["chr3"] * 11 + ["chr4"] * 5 + ["chrX"] * 4)
    folds = chromosome_folds(groups, n_folds=n_folds)
    assert len(folds) == min(n_folds, 5)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(groups)))  # every window tested once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == len(groups)


def test_chromosome_folds_need_two_chromosomes():
    with pytest.raises(ValueError, match="at least 2 chromosomes"):
        chromosome_folds(np.array(["chr1"] * 10))


def test_probe_recovers_a_linearly_planted_label():
    features, groups, rng = planted_windows()
    labels = np.where(features[:, 3] + rng.normal(size=len(features)) * 0.2 > 0, "TssA", "Quies")
    scores = probe_scores(features, labels, groups)
    assert scores["mcc"] > 0.8 and scores["balanced_accuracy"] > 0.9 and scores["accuracy"] > 0.9
    assert scores["n_windows"] == 800 and scores["n_classes"] == 2 and scores["n_folds"] == 4
    assert scores["classes"] == ["Quies", "TssA"] and scores["dropped_classes"] == []
    assert len(scores["mcc_per_fold"]) == 4 and min(scores["mcc_per_fold"]) > 0.7


def test_probe_on_random_labels_scores_near_zero():
    features, groups, rng = planted_windows(seed=1)
    labels = rng.integers(0, 2, size=len(features))
    scores = probe_scores(features, labels, groups)
    assert abs(scores["mcc"]) < 0.15
    assert scores["classes"] == [0, 1]


def test_probe_handles_three_classes():
    features, groups, _ = planted_windows(seed=2)
    labels = np.array(["E", "P", "R"])[np.argmax(features[:, :3], axis=1)]
    scores = probe_scores(features, labels, groups, n_folds=3)
    assert scores["n_classes"] == 3 and scores["n_folds"] == 3
    assert scores["mcc"] > 0.8


def test_rare_classes_are_dropped_and_reported():
    features, groups, _ = planted_windows(seed=3)
    labels = np.where(features[:, 0] > 0, "A", "B").astype(object)
    labels[:5] = "rare"
    scores = probe_scores(features, labels, groups, min_class_count=10)
    assert scores["dropped_classes"] == ["rare"]
    assert scores["classes"] == ["A", "B"] and scores["n_windows"] == 795


def test_a_class_missing_from_a_training_fold_still_works():
    features, groups, _ = planted_windows(seed=4)
    labels = np.where(features[:, 0] > 0, "A", "B").astype(object)
    only_on_chr4 = np.flatnonzero(groups == "chr4")[:20]
    labels[only_on_chr4] = "C"  # its fold trains without C, so it can never predict C there
    scores = probe_scores(features, labels, groups)
    assert scores["n_classes"] == 3 and np.isfinite(scores["mcc"])


def test_a_training_fold_with_one_class_predicts_it():
    features, _, _ = planted_windows(n=40, seed=5)
    groups = np.repeat(["chr1", "chr2"], 20)
    labels = np.repeat(["A", "B"], 20)  # each chromosome holds one class
    scores = probe_scores(features, labels, groups)
    assert scores["accuracy"] == 0.0 and scores["mcc_per_fold"] == [0.0, 0.0]


def test_probe_needs_two_classes():
    features, groups, _ = planted_windows(seed=6)
    labels = np.array(["A"] * 795 + ["B"] * 5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        probe_scores(features, labels, groups)


def test_probe_layers_table_with_a_baseline_row():
    features, groups, rng = planted_windows(n=400, dims=8, seed=7)
    labels = np.where(features[:, 0] > 0, "in", "out")
    noise = rng.normal(size=(400, 3, 8))
    noise[:, 2, :] = features  # only the last layer knows the label
    embeddings = noise.astype(np.float16)
    baseline = rng.random((400, 16))
    table = probe_layers(embeddings, labels, groups, baseline_features=baseline, annotation="TssA", n_folds=4)
    assert list(table.columns) == PROBE_COLUMNS
    assert table.shape == (4, len(PROBE_COLUMNS))
    assert table["layer"].tolist() == [0, 1, 2, -1]
    assert table["feature_set"].tolist() == ["embedding"] * 3 + ["kmer_baseline"]
    assert (table["annotation"] == "TssA").all() and (table["n_windows"] == 400).all()
    assert (table["n_folds"] == 4).all() and (table["n_classes"] == 2).all()
    mcc = table.set_index("layer")["mcc"]
    assert mcc[2] > 0.8 and abs(mcc[0]) < 0.2 and abs(mcc[-1]) < 0.2


def test_probe_layers_without_baseline_and_bad_shape():
    features, groups, _ = planted_windows(n=200, dims=4, seed=8)
    labels = features[:, 0] > 0
    table = probe_layers(features[:, None, :], labels, groups)
    assert isinstance(table, pd.DataFrame) and table["layer"].tolist() == [0]
    with pytest.raises(ValueError, match="n_windows, n_layers, hidden"):
        probe_layers(features, labels, groups)


def test_ridge_and_logistic_probes_agree_on_a_planted_label():
    features, groups, rng = planted_windows(n=600)
    labels = np.where(features[:, 1] - features[:, 4] + rng.normal(size=len(features)) * 0.3 > 0, "a", "b")
    ridge = probe_scores(features, labels, groups, classifier="ridge")
    logistic = probe_scores(features, labels, groups, classifier="logistic")
    assert ridge["mcc"] > 0.8 and logistic["mcc"] > 0.8
    assert abs(ridge["mcc"] - logistic["mcc"]) < 0.05
    with pytest.raises(ValueError, match="unknown probe classifier 'svm'"):
        probe_scores(features, labels, groups, classifier="svm")
