import numpy as np
import pandas as pd
import pytest

from analysis import self_similarity as ss
from analysis.self_similarity import (anisotropy_baseline, intra_window_summary, self_similarity,
                                      self_similarity_table, summarise_by_group, token_groups)


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x)
    return x / norm if norm > 0 else np.zeros_like(x)


def _brute_force(samples: np.ndarray, filled: np.ndarray, *, min_samples: int = 2):
    """Explicit pairwise loops: ({(layer, token): self-similarity}, {layer: baseline})."""
    kept = [t for t in range(samples.shape[1]) if min(filled[t], samples.shape[2]) >= min_samples]
    selfsim, baseline = {}, {}
    for layer in range(samples.shape[0]):
        vectors = {t: [_unit(samples[layer, t, k].astype(np.float64)) for k in range(filled[t])] for t in kept}
        for t in kept:
            cos = [a @ b for i, a in enumerate(vectors[t]) for j, b in enumerate(vectors[t]) if i != j]
            selfsim[layer, t] = np.mean(cos)
        cross = [a @ b for t in kept for s in kept if s != t for a in vectors[t] for b in vectors[s]]
        baseline[layer] = np.mean(cross)
    return selfsim, baseline


@pytest.fixture
def random_case():
    """3 layers, 6 tokens, K=7, hidden 5; uneven filled with a 0- and a 1-sample token; huge garbage."""
    rng = np.random.default_rng(0)
    n_layers, vocab, k, hidden = 3, 6, 7, 5
    # A shared offset makes cosines clearly non-zero, as in a real anisotropic layer.
    samples = rng.normal(size=(n_layers, vocab, k, hidden)) + rng.normal(size=(n_layers, 1, 1, hidden))
    filled = np.array([7, 0, 3, 1, 5, 2])
    for t, n in enumerate(filled):
        samples[:, t, n:] = 6.0e4  # garbage beyond filled, near float16's maximum
    return samples.astype(np.float32), filled


def test_identical_directions_give_self_similarity_one():
    direction = np.array([1.0, -2.0, 0.5, 3.0])
    samples = np.zeros((1, 2, 4, 4), dtype=np.float32)
    samples[0, 0] = direction * np.array([1.0, 2.0, 0.1, 7.0])[:, None]  # positive rescalings
    samples[0, 1] = np.eye(4)
    table = self_similarity(samples, np.array([4, 4]))
    assert table["self_similarity"].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert table.columns.tolist() == ["layer", "token_id", "n_samples", "self_similarity"]


def test_orthogonal_tokens_give_baseline_zero():
    samples = np.zeros((2, 2, 3, 4), dtype=np.float32)
    samples[:, 0, :, 0] = [[1.0, 2.0, 3.0]] * 2  # token 0 along axis 0
    samples[:, 1, :, 1] = [[0.5, 4.0, 1.0]] * 2  # token 1 along axis 1
    base = anisotropy_baseline(samples, np.array([3, 3]))
    assert base["layer"].tolist() == [0, 1]
    assert base["baseline"].tolist() == pytest.approx([0.0, 0.0], abs=1e-7)
    assert base["n_pairs"].tolist() == [9, 9]  # 3 x 3 unordered cross-token pairs


def test_matches_brute_force_and_ignores_garbage(random_case):
    samples, filled = random_case
    expected_self, expected_base = _brute_force(samples, filled)
    table = self_similarity_table(samples, filled)
    assert sorted(table["token_id"].unique()) == [0, 2, 4, 5]  # tokens with 0 and 1 samples left out
    assert table["n_samples"].tolist() == [7, 3, 5, 2] * 3
    for row in table.itertuples():
        assert row.self_similarity == pytest.approx(expected_self[row.layer, row.token_id], abs=1e-5)
        assert row.baseline == pytest.approx(expected_base[row.layer], abs=1e-5)
        assert row.corrected == pytest.approx(row.self_similarity - row.baseline, abs=1e-12)
    base = anisotropy_baseline(samples, filled)
    n = np.array([7, 3, 5, 2])
    assert base["n_pairs"].tolist() == [(n.sum() ** 2 - (n ** 2).sum()) // 2] * 3
    assert base["baseline"].to_numpy() == pytest.approx([expected_base[layer] for layer in range(3)], abs=1e-5)


def test_nan_garbage_and_filled_above_k_are_harmless(random_case):
    samples, filled = random_case
    reference = self_similarity_table(samples, filled)
    dirty = samples.copy()
    for t, n in enumerate(filled):
        dirty[:, t, n:] = np.nan
    pd.testing.assert_frame_equal(self_similarity_table(dirty, filled), reference)
    clipped = self_similarity(samples, np.where(filled == 7, 100, filled))  # more than K slots claimed
    assert clipped["n_samples"].tolist()[0] == 7
    assert clipped["self_similarity"].to_numpy() == pytest.approx(reference["self_similarity"].to_numpy())


def test_small_blocks_give_the_same_result(random_case, monkeypatch):
    samples, filled = random_case
    reference = self_similarity_table(samples, filled)
    monkeypatch.setattr(ss, "BLOCK_BYTES", 1)  # one token per block
    pd.testing.assert_frame_equal(self_similarity_table(samples, filled), reference, atol=1e-6, rtol=0)


def test_zero_vectors_count_as_cosine_zero():
    samples = np.zeros((1, 2, 3, 2), dtype=np.float32)
    samples[0, 0] = [[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]  # two equal directions and a zero vector
    samples[0, 1, :2] = [[1.0, 0.0], [1.0, 0.0]]
    table = self_similarity_table(samples, np.array([3, 2]))
    # Token 0: 6 ordered pairs, only the 2 between the non-zero samples have cosine 1.
    assert table["self_similarity"].tolist() == pytest.approx([2 / 6, 1.0])
    # Cross pairs: 3 x 2 unordered, 2 x 2 of them between non-zero parallel vectors.
    assert table["baseline"].iloc[0] == pytest.approx(4 / 6)


def test_float16_memmap_matches_float32(random_case, tmp_path):
    samples, filled = random_case
    path = tmp_path / "samples.npy"
    np.save(path, samples.astype(np.float16))
    mapped = np.load(path, mmap_mode="r")
    pd.testing.assert_frame_equal(self_similarity_table(mapped, filled), self_similarity_table(samples, filled),
                                  atol=2e-3, rtol=0)


def test_token_ids_subset(random_case):
    samples, filled = random_case
    subset = [5, 0, 3, 5]  # unsorted, duplicated, and with a 1-sample token that is left out
    table = self_similarity_table(samples, filled, token_ids=subset)
    assert table["token_id"].tolist() == [0, 5] * 3
    full = self_similarity(samples, filled).set_index(["layer", "token_id"])["self_similarity"]
    picked = table.set_index(["layer", "token_id"])["self_similarity"]
    assert picked.to_numpy() == pytest.approx(full.loc[picked.index].to_numpy(), abs=1e-6)
    # The baseline only pairs the kept tokens.
    only = samples[:, [0, 5]]
    expected = anisotropy_baseline(only, filled[[0, 5]])["baseline"].to_numpy()
    assert table.drop_duplicates("layer")["baseline"].to_numpy() == pytest.approx(expected, abs=1e-6)


def test_min_samples_filter_and_validation(random_case):
    samples, filled = random_case
    assert self_similarity(samples, filled, min_samples=5)["token_id"].unique().tolist() == [0, 4]
    with pytest.raises(ValueError, match="min_samples"):
        self_similarity(samples, filled, min_samples=1)
    with pytest.raises(ValueError, match="filled"):
        self_similarity(samples, filled[:-1])
    empty = anisotropy_baseline(samples, filled, min_samples=7)  # one token left: no cross pairs
    assert empty["baseline"].isna().all() and empty["n_pairs"].tolist() == [0, 0, 0]


def test_intra_window_summary_ignores_nan():
    values = np.array([[0.1, np.nan], [0.3, 0.5], [0.5, np.nan], [np.nan, 0.7]])
    summary = intra_window_summary(values)
    assert summary.columns.tolist() == ["layer", "mean", "std", "q25", "median", "q75", "n_windows"]
    assert summary["n_windows"].tolist() == [3, 2]
    assert summary["mean"].tolist() == pytest.approx([0.3, 0.6])
    assert summary["std"].tolist() == pytest.approx([0.2, np.std([0.5, 0.7], ddof=1)])
    assert summary.loc[0, ["q25", "median", "q75"]].tolist() == pytest.approx([0.2, 0.3, 0.4])
    all_nan = intra_window_summary(np.full((2, 1), np.nan))
    assert all_nan["n_windows"].tolist() == [0] and all_nan["mean"].isna().all()


def _token_table(n: int = 25) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({
        "token_id": np.arange(n),
        "length": [0, 0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 60] + list(rng.integers(1, 40, n - 13)),
        "frequency": [10 ** 9, 10 ** 9] + list(rng.permutation(np.arange(n - 2) * 3)),
        "is_special": [True, True] + [False] * (n - 2),
        "share_repeat": np.linspace(0.0, 1.0, n),
    })


def test_token_groups_labels():
    tokens = _token_table()
    groups = token_groups(tokens)
    assert groups["token_id"].tolist() == list(range(2, 25))  # specials dropped
    assert groups.columns.tolist() == ["token_id", "length_group", "frequency_decile", "repeat_localised"]
    assert list(groups["length_group"].cat.categories) == ["1", "2-3", "4-7", "8-15", "16-31", "32+"]
    assert groups["length_group"].astype(str).tolist()[:11] == ["1", "2-3", "2-3", "4-7", "4-7", "8-15",
                                                                "8-15", "16-31", "16-31", "32+", "32+"]
    merged = groups.merge(tokens, on="token_id").sort_values("frequency")
    deciles = merged["frequency_decile"].astype(int).to_numpy()
    assert deciles[0] == 1 and deciles[-1] == 10 and np.all(np.diff(deciles) >= 0)  # monotone in frequency
    share = merged.sort_values("token_id")["share_repeat"].to_numpy()
    assert (groups["repeat_localised"].astype(str) == np.where(share >= 0.5, "repeat", "non-repeat")).all()
    assert "repeat_localised" not in token_groups(tokens.drop(columns="share_repeat")).columns


def test_token_groups_deciles_survive_ties_and_custom_bins():
    tokens = pd.DataFrame({"token_id": range(30), "length": [1, 5, 9] * 10, "frequency": [4] * 30,
                           "is_special": [False] * 30})
    groups = token_groups(tokens, length_bins=(1, 5))
    assert sorted(groups["frequency_decile"].astype(int).unique()) == list(range(1, 11))
    assert groups["length_group"].astype(str).tolist()[:3] == ["1-4", "5+", "5+"]


def test_summarise_by_group_matches_groupby(random_case):
    samples, filled = random_case
    table = self_similarity_table(samples, filled)
    groups = pd.DataFrame({"token_id": [0, 2, 4, 5],
                           "kind": pd.Categorical(["b", "a", "b", "b"], categories=["b", "a"], ordered=True)})
    summary = summarise_by_group(table, groups)
    assert summary.columns.tolist() == ["layer", "grouping", "group", "n_tokens", "value", "mean", "std",
                                        "q25", "median", "q75"]
    assert len(summary) == 3 * 2 * 2  # layers x groups x value columns
    merged = table.merge(groups, on="token_id")
    for value in ("self_similarity", "corrected"):
        expected = merged.groupby(["layer", "kind"], observed=True)[value]
        got = summary[summary["value"] == value].set_index(["layer", "group"])
        for (layer, kind), values in expected:
            row = got.loc[(layer, kind)]
            assert row["n_tokens"] == len(values)
            assert row["mean"] == pytest.approx(values.mean())
            assert row["median"] == pytest.approx(values.median())
            assert row["q75"] == pytest.approx(values.quantile(0.75))
            assert row["std"] == pytest.approx(values.std()) if len(values) > 1 else np.isnan(row["std"])
    # Groups follow category order ("b" before "a").
    assert summary["group"].tolist()[:2] == ["b", "b"]


def test_summarise_by_group_names_the_fix():
    table = pd.DataFrame({"layer": [0], "token_id": [0], "self_similarity": [0.5]})
    with pytest.raises(ValueError, match="self_similarity_table"):
        summarise_by_group(table, pd.DataFrame({"token_id": [0], "g": ["x"]}))
