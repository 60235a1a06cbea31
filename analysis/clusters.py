"""Clusters of token embeddings and what the tokens in each cluster have in common.

The GROVER paper found that token embeddings cluster by GC/AG content and by frequency; these
functions find the clusters (k-means, Ward hierarchical, HDBSCAN), describe each cluster by its
tokens' properties, and test which annotation classes a cluster's tokens are enriched in.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, mannwhitneyu
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans

CLUSTER_METHODS = ("kmeans", "hierarchical", "hdbscan")
NOISE = -1  # HDBSCAN's label for points in no cluster
ENRICHMENT_PSEUDOCOUNT = 1e-3  # added to both shares so an empty class gives a finite log2 ratio
N_EXAMPLE_TOKENS = 5

PROFILE_COLUMNS = ["cluster", "n_tokens", "gc_mean", "ag_mean", "ac_mean", "length_mean", "length_median",
                   "log10_frequency_mean", "example_tokens"]
ENRICHMENT_COLUMNS = ["cluster", "annotation", "n_tokens", "mean_share", "background_share", "log2_enrichment",
                      "p_value", "q_value"]
CLUSTER_TABLE_COLUMNS = ["layer", "method", "token_id", "cluster"]


def normalize_rows(embeddings: np.ndarray) -> np.ndarray:
    """Return float64 rows scaled to unit L2 norm (all-zero rows stay zero)."""
    rows = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Return labels renumbered so cluster 0 is the largest, 1 the next (ties: first seen first); noise stays -1.

    Clustering methods number clusters arbitrarily; a fixed order makes tables comparable across methods.
    """
    labels = np.asarray(labels)
    clusters, first_seen, sizes = np.unique(labels[labels != NOISE], return_index=True, return_counts=True)
    order = np.lexsort((first_seen, -sizes))  # primary key: size descending
    mapping = dict(zip(clusters[order].tolist(), range(len(clusters))))
    mapping[NOISE] = NOISE
    return np.array([mapping[label] for label in labels.tolist()], dtype=np.int64)


def cluster_embeddings(embeddings: np.ndarray, *, method: str = "kmeans", n_clusters: int = 8, seed: int = 0,
                       min_cluster_size: int = 5) -> np.ndarray:
    """Cluster the rows (tokens) of ``embeddings`` and return one int64 label per row.

    Rows are L2-normalized first, so clusters follow cosine geometry (the direction of an embedding,
    not its length, which mostly tracks token frequency). Methods:

    - ``"kmeans"``: k-means with ``n_clusters``, 10 seeded restarts.
    - ``"hierarchical"``: agglomerative clustering with Ward linkage into ``n_clusters``.
    - ``"hdbscan"``: density clusters of at least ``min_cluster_size`` rows; ``n_clusters`` is ignored
      and rows in no cluster get label -1.

    Clusters are renumbered by decreasing size (0 is the largest), so labels are comparable across methods.
    """
    if method not in CLUSTER_METHODS:
        raise ValueError(f"Unknown clustering method {method!r}; choose one of {', '.join(CLUSTER_METHODS)}.")
    rows = normalize_rows(embeddings)
    n_rows = rows.shape[0]
    if method == "hdbscan":
        if min_cluster_size > n_rows:
            raise ValueError(f"min_cluster_size={min_cluster_size} exceeds the {n_rows} rows; lower min_cluster_size.")
        model = HDBSCAN(min_cluster_size=min_cluster_size, copy=True)
    else:
        if not 1 <= n_clusters <= n_rows:
            raise ValueError(f"n_clusters={n_clusters} must be between 1 and the number of rows ({n_rows}); "
                             "lower n_clusters.")
        if method == "kmeans":
            model = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
        else:
            model = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
    return relabel_by_size(model.fit_predict(rows))


def example_tokens(tokens: pd.DataFrame, *, n: int = N_EXAMPLE_TOKENS) -> str:
    """Return the ``n`` most frequent tokens of ``tokens`` joined by spaces (ties: table order)."""
    top = tokens.sort_values("frequency", ascending=False, kind="stable").head(n)
    return " ".join(top["token"].astype(str))


def cluster_profiles(labels: np.ndarray, tokens: pd.DataFrame) -> pd.DataFrame:
    """Describe each cluster by the properties of its tokens.

    ``tokens`` rows align with ``labels`` and hold at least ``token, length, frequency, gc, ag, ac``.
    Means skip missing values (special tokens have no composition). Noise (-1) is reported as a cluster.

    Returns
    -------
    DataFrame sorted by cluster with columns ``cluster``, ``n_tokens``, ``gc_mean``, ``ag_mean``,
    ``ac_mean``, ``length_mean``, ``length_median``, ``log10_frequency_mean`` (mean of
    log10(1 + frequency), so unseen tokens count as 0), ``example_tokens`` (the 5 most frequent
    tokens joined by spaces).
    """
    labels = np.asarray(labels)
    if len(labels) != len(tokens):
        raise ValueError(f"{len(labels)} labels but {len(tokens)} token rows; they must align.")
    table = tokens.reset_index(drop=True).assign(
        cluster=labels, log10_frequency=np.log10(1.0 + tokens["frequency"].to_numpy(dtype=np.float64)))
    rows = []
    for cluster, members in table.groupby("cluster", sort=True):
        rows.append({
            "cluster": int(cluster),
            "n_tokens": len(members),
            "gc_mean": members["gc"].mean(),
            "ag_mean": members["ag"].mean(),
            "ac_mean": members["ac"].mean(),
            "length_mean": members["length"].mean(),
            "length_median": members["length"].median(),
            "log10_frequency_mean": members["log10_frequency"].mean(),
            "example_tokens": example_tokens(members),
        })
    return pd.DataFrame(rows, columns=PROFILE_COLUMNS)


def log2_enrichment(share: float, background: float, *, pseudocount: float = ENRICHMENT_PSEUDOCOUNT) -> float:
    """Return log2((share + pseudocount) / (background + pseudocount))."""
    return float(np.log2((share + pseudocount) / (background + pseudocount)))


def two_sided_mann_whitney(inside: np.ndarray, outside: np.ndarray) -> float:
    """Return the two-sided Mann-Whitney U p-value of ``inside`` vs ``outside``; NaN when either is empty."""
    if len(inside) == 0 or len(outside) == 0:
        return np.nan
    return float(mannwhitneyu(inside, outside, alternative="two-sided").pvalue)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Return Benjamini-Hochberg q-values over the finite p-values; NaN p-values stay NaN."""
    p_values = np.asarray(p_values, dtype=np.float64)
    q_values = np.full_like(p_values, np.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        q_values[finite] = false_discovery_control(p_values[finite], method="bh")
    return q_values


def cluster_enrichment(labels: np.ndarray, shares: pd.DataFrame, *,
                       columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Test, for each cluster and annotation column, whether the cluster's tokens fall in that class more often.

    ``shares`` rows align with ``labels``; each column is, per token, the share of its occurrences that
    lie inside one annotation class (0..1, e.g. ``share_SINE``). ``columns`` defaults to every numeric
    column. Tokens with a missing share (never seen) are left out of that column's numbers.

    Returns
    -------
    DataFrame with one row per (cluster, annotation), sorted by cluster then column order:
    ``cluster``; ``annotation`` (the column name); ``n_tokens`` (tokens in the cluster);
    ``mean_share`` (mean over the cluster's tokens); ``background_share`` (mean over all tokens);
    ``log2_enrichment`` = log2((mean_share + 1e-3) / (background_share + 1e-3)), the pseudocount
    keeping empty classes finite; ``p_value``, two-sided Mann-Whitney U of the cluster's shares
    against the other tokens' shares (NaN when either side is empty); ``q_value``,
    Benjamini-Hochberg over the whole table.
    """
    labels = np.asarray(labels)
    if len(labels) != len(shares):
        raise ValueError(f"{len(labels)} labels but {len(shares)} share rows; they must align.")
    if columns is None:
        columns = list(shares.select_dtypes("number").columns)
    rows = []
    for cluster in np.unique(labels).tolist():
        inside = labels == cluster
        for column in columns:
            values = shares[column].to_numpy(dtype=np.float64)
            known = np.isfinite(values)
            cluster_values, other_values = values[inside & known], values[~inside & known]
            mean_share = float(cluster_values.mean()) if len(cluster_values) else np.nan
            background = float(values[known].mean()) if known.any() else np.nan
            rows.append({
                "cluster": int(cluster),
                "annotation": column,
                "n_tokens": int(inside.sum()),
                "mean_share": mean_share,
                "background_share": background,
                "log2_enrichment": log2_enrichment(mean_share, background),
                "p_value": two_sided_mann_whitney(cluster_values, other_values),
            })
    table = pd.DataFrame(rows, columns=ENRICHMENT_COLUMNS[:-1])
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
    return table


def cluster_table(embeddings_by_layer: dict[int, np.ndarray], tokens: pd.DataFrame, *,
                  methods: Sequence[str] = ("kmeans", "hierarchical"), n_clusters: int = 8, seed: int = 0,
                  min_cluster_size: int = 5) -> pd.DataFrame:
    """Cluster every layer's token embeddings with every method (the artifact the dashboard reads).

    ``tokens`` rows align with the rows of each layer's embeddings and give their ``token_id``.

    Returns
    -------
    Long DataFrame with columns ``layer``, ``method``, ``token_id``, ``cluster``: one row per
    (layer, method, token), layers ascending, methods in the order given.
    """
    token_ids = tokens["token_id"].to_numpy(dtype=np.int64)
    parts = []
    for layer in sorted(embeddings_by_layer):
        embeddings = embeddings_by_layer[layer]
        if len(embeddings) != len(token_ids):
            raise ValueError(f"Layer {layer} has {len(embeddings)} rows but tokens has {len(token_ids)}; "
                             "they must align.")
        for method in methods:
            labels = cluster_embeddings(embeddings, method=method, n_clusters=n_clusters, seed=seed,
                                        min_cluster_size=min_cluster_size)
            parts.append(pd.DataFrame({"layer": np.full(len(token_ids), int(layer), dtype=np.int64),
                                       "method": method, "token_id": token_ids, "cluster": labels}))
    if not parts:
        return pd.DataFrame({"layer": pd.Series(dtype=np.int64), "method": pd.Series(dtype=object),
                             "token_id": pd.Series(dtype=np.int64), "cluster": pd.Series(dtype=np.int64)})
    return pd.concat(parts, ignore_index=True)[CLUSTER_TABLE_COLUMNS]
