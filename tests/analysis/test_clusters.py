import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from analysis.clusters import (
    CLUSTER_METHODS,
    ENRICHMENT_COLUMNS,
    PROFILE_COLUMNS,
    cluster_embeddings,
    cluster_enrichment,
    cluster_profiles,
    cluster_table,
    normalize_rows,
    relabel_by_size,
)


@pytest.fixture(scope="module")
def blobs():
    """Three planted directions in 16 dimensions, 40 points each, with varying lengths and small noise.

    Lengths vary tenfold so only the cosine geometry (normalized rows) sees three tight groups.
    """
    rng = np.random.default_rng(0)
    directions = np.linalg.qr(rng.normal(size=(16, 3)))[0].T  # orthonormal: far apart in angle
    truth = np.repeat([0, 1, 2], 40)
    lengths = rng.uniform(1.0, 10.0, size=(120, 1))
    points = (directions[truth] + rng.normal(size=(120, 16)) * 0.05) * lengths
    return points, truth


@pytest.fixture(scope="module")
def tokens():
    rng = np.random.default_rng(1)
    n = 30
    strings = ["".join(rng.choice(list("ACGT"), size=rng.integers(2, 7))) for _ in range(n)]
    return pd.DataFrame({
        "token_id": np.arange(n) + 5,
        "token": strings,
        "length": [len(s) for s in strings],
        "frequency": rng.integers(0, 1000, size=n),
        "gc": [(s.count("G") + s.count("C")) / len(s) for s in strings],
        "ag": [(s.count("A") + s.count("G")) / len(s) for s in strings],
        "ac": [(s.count("A") + s.count("C")) / len(s) for s in strings],
        "cpg": [s.count("CG") for s in strings],
    })


@pytest.mark.parametrize("method", ["kmeans", "hierarchical"])
def test_planted_blobs_are_recovered_exactly(blobs, method):
    points, truth = blobs
    labels = cluster_embeddings(points, method=method, n_clusters=3, seed=0)
    assert labels.dtype == np.int64 and labels.shape == (120,)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_hdbscan_finds_the_blobs_allowing_noise(blobs):
    points, truth = blobs
    labels = cluster_embeddings(points, method="hdbscan", min_cluster_size=5)
    clustered = labels != -1
    assert clustered.mean() > 0.8
    assert len(np.unique(labels[clustered])) == 3
    assert adjusted_rand_score(truth[clustered], labels[clustered]) == 1.0


def test_kmeans_is_seeded_and_clusters_are_numbered_by_size():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(80, 8))
    first = cluster_embeddings(points, n_clusters=4, seed=7)
    assert np.array_equal(first, cluster_embeddings(points, n_clusters=4, seed=7))
    sizes = np.bincount(first)
    assert list(sizes) == sorted(sizes, reverse=True)


def test_relabel_by_size_keeps_noise_and_orders_by_size():
    labels = np.array([5, 5, -1, 2, 2, 2, 9])
    assert relabel_by_size(labels).tolist() == [1, 1, -1, 0, 0, 0, 2]


def test_normalize_rows_gives_unit_rows_and_keeps_zero_rows():
    rows = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float16))
    assert np.allclose(rows, [[0.6, 0.8], [0.0, 0.0]])


@pytest.mark.parametrize(("options", "match"), [
    ({"method": "spectral"}, "kmeans, hierarchical, hdbscan"),
    ({"method": "kmeans", "n_clusters": 11}, "n_clusters=11"),
    ({"method": "hierarchical", "n_clusters": 11}, "n_clusters=11"),
    ({"method": "hdbscan", "min_cluster_size": 11}, "min_cluster_size=11"),
], ids=["unknown-method", "kmeans-too-many", "hierarchical-too-many", "hdbscan-too-large"])
def test_bad_options_raise_clear_errors(options, match):
    with pytest.raises(ValueError, match=match):
        cluster_embeddings(np.random.default_rng(0).normal(size=(10, 4)), **options)


def test_cluster_profiles_match_direct_pandas(tokens):
    labels = np.array([0, 1, 2] * 10)
    profiles = cluster_profiles(labels, tokens)
    assert list(profiles.columns) == PROFILE_COLUMNS
    assert profiles["cluster"].tolist() == [0, 1, 2]
    for row in profiles.itertuples():
        members = tokens[labels == row.cluster]
        assert row.n_tokens == len(members)
        assert row.gc_mean == pytest.approx(members["gc"].mean())
        assert row.ag_mean == pytest.approx(members["ag"].mean())
        assert row.ac_mean == pytest.approx(members["ac"].mean())
        assert row.length_mean == pytest.approx(members["length"].mean())
        assert row.length_median == pytest.approx(members["length"].median())
        assert row.log10_frequency_mean == pytest.approx(np.log10(1 + members["frequency"]).mean())
        top = members.nlargest(5, "frequency", keep="first")["token"]
        assert row.example_tokens == " ".join(top)


def test_cluster_profiles_sorts_clusters_and_keeps_noise(tokens):
    labels = np.array([3] * 10 + [-1] * 10 + [0] * 10)
    profiles = cluster_profiles(labels, tokens)
    assert profiles["cluster"].tolist() == [-1, 0, 3]
    assert profiles["n_tokens"].tolist() == [10, 10, 10]


def test_cluster_profiles_reject_misaligned_rows(tokens):
    with pytest.raises(ValueError, match="align"):
        cluster_profiles(np.zeros(3, dtype=int), tokens)


@pytest.fixture(scope="module")
def shares():
    """Cluster 0 (20 tokens) sits in SINE (share 0.9 vs 0.1); the null column is the same noise everywhere."""
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2], 20)
    sine = np.where(labels == 0, 0.9, 0.1) + rng.uniform(-0.05, 0.05, size=60)
    null = rng.uniform(0, 1, size=60)
    return labels, pd.DataFrame({"share_SINE": sine, "share_null": null, "token": ["x"] * 60})


def test_enriched_cluster_has_positive_log2_and_small_p(shares):
    labels, table = shares
    enrichment = cluster_enrichment(labels, table)
    assert list(enrichment.columns) == ENRICHMENT_COLUMNS
    assert len(enrichment) == 3 * 2  # numeric columns only: the token column is skipped
    sine0 = enrichment.query("cluster == 0 and annotation == 'share_SINE'").iloc[0]
    assert sine0.n_tokens == 20
    assert sine0.mean_share == pytest.approx(table["share_SINE"][:20].mean())
    assert sine0.background_share == pytest.approx(table["share_SINE"].mean())
    expected = np.log2((sine0.mean_share + 1e-3) / (sine0.background_share + 1e-3))
    assert sine0.log2_enrichment == pytest.approx(expected) and sine0.log2_enrichment > 0.5
    assert sine0.p_value < 1e-6 and sine0.q_value < 1e-5
    sine1 = enrichment.query("cluster == 1 and annotation == 'share_SINE'").iloc[0]
    assert sine1.log2_enrichment < 0
    null = enrichment.query("annotation == 'share_null'")
    assert (null["p_value"] > 0.01).all()


def test_enrichment_q_values_are_benjamini_hochberg_over_the_table(shares):
    labels, table = shares
    enrichment = cluster_enrichment(labels, table, columns=["share_SINE", "share_null"])
    p = enrichment["p_value"].to_numpy()
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    expected = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1)
    assert np.allclose(enrichment["q_value"].to_numpy()[order], expected)
    assert (enrichment["q_value"] >= enrichment["p_value"] - 1e-12).all()


def test_enrichment_skips_missing_shares_and_handles_a_single_cluster():
    table = pd.DataFrame({"share_A": [0.5, np.nan, 0.7, 0.1]})
    enrichment = cluster_enrichment(np.zeros(4, dtype=int), table)
    row = enrichment.iloc[0]
    assert row.mean_share == pytest.approx(13 / 30) and row.background_share == pytest.approx(13 / 30)
    assert np.isnan(row.p_value) and np.isnan(row.q_value)  # no other tokens to compare with


def test_cluster_table_covers_every_layer_method_and_token(blobs):
    points, truth = blobs
    tokens = pd.DataFrame({"token_id": np.arange(120) + 100})
    table = cluster_table({1: points, 0: points[:, ::-1]}, tokens, n_clusters=3)
    assert list(table.columns) == ["layer", "method", "token_id", "cluster"]
    assert len(table) == 2 * 2 * 120
    assert table["layer"].drop_duplicates().tolist() == [0, 1]
    assert table["method"].drop_duplicates().tolist() == ["kmeans", "hierarchical"]
    for (_, _), part in table.groupby(["layer", "method"]):
        assert part["token_id"].tolist() == tokens["token_id"].tolist()
        assert adjusted_rand_score(truth, part["cluster"]) == 1.0


def test_cluster_table_rejects_misaligned_layers(blobs):
    points, _ = blobs
    with pytest.raises(ValueError, match="align"):
        cluster_table({0: points[:10]}, pd.DataFrame({"token_id": np.arange(120)}))


def test_all_methods_are_listed():
    assert CLUSTER_METHODS == ("kmeans", "hierarchical", "hdbscan")
