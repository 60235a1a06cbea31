"""Projections of embeddings to two dimensions (PCA, UMAP) and the paper's PC-property table."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.decomposition import PCA


def pca_projection(embeddings: np.ndarray, *, n_components: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(coordinates [n, n_components], explained_variance_ratio [n_components])`` of centred PCA."""
    n_components = min(n_components, *embeddings.shape)
    pca = PCA(n_components=n_components, random_state=seed)
    coordinates = pca.fit_transform(np.asarray(embeddings, dtype=np.float64))
    return coordinates, pca.explained_variance_ratio_


def umap_projection(embeddings: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1,
                    metric: str = "cosine", seed: int = 0) -> np.ndarray:
    """Return seeded 2-D UMAP coordinates ``[n, 2]`` (cosine metric by default, as embeddings are compared).

    Seeding makes UMAP single-threaded and reproducible; fitting is for the pipeline, never a page.
    """
    import umap  # imported here: its numba compilation costs tens of seconds

    n_neighbors = max(2, min(n_neighbors, embeddings.shape[0] - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                        random_state=seed, n_jobs=1, init="spectral" if embeddings.shape[0] > n_neighbors + 2 else "random")
    return reducer.fit_transform(np.asarray(embeddings, dtype=np.float32))


def pc_property_correlations(embeddings: np.ndarray, properties: pd.DataFrame, *, columns: Sequence[str],
                             n_components: int = 5, seed: int = 0) -> pd.DataFrame:
    """Spearman correlation of each leading principal component with each token property.

    Returns
    -------
    DataFrame with columns ``component`` ("PC1" ...), ``property``, ``spearman``,
    ``explained_variance_ratio`` (of that component); one row per component and property.
    """
    coordinates, explained = pca_projection(embeddings, n_components=n_components, seed=seed)
    rows = []
    for k in range(coordinates.shape[1]):
        for column in columns:
            rho = spearmanr(coordinates[:, k], properties[column].to_numpy()).statistic
            rows.append({"component": f"PC{k + 1}", "property": column, "spearman": float(rho),
                         "explained_variance_ratio": float(explained[k])})
    return pd.DataFrame(rows)
