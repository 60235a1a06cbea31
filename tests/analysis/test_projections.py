import numpy as np
import pandas as pd
import pytest

from analysis.projections import pc_property_correlations, pca_projection, umap_projection


@pytest.fixture(scope="module")
def clusters():
    """Three well separated groups of 40 points in 16 dimensions."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 10
    labels = np.repeat([0, 1, 2], 40)
    return centres[labels] + rng.normal(size=(120, 16)), labels


def test_pca_explains_the_dominant_direction():
    rng = np.random.default_rng(1)
    direction = rng.normal(size=8)
    points = np.outer(rng.normal(size=200) * 10, direction) + rng.normal(size=(200, 8)) * 0.1
    coordinates, explained = pca_projection(points, n_components=2)
    assert coordinates.shape == (200, 2)
    assert explained[0] > 0.99


def test_umap_separates_clusters_and_is_seeded(clusters, tiny_run):
    # tiny_run first: the pipeline has compiled UMAP already, so this stays fast.
    points, labels = clusters
    first = umap_projection(points, n_neighbors=10, seed=3)
    again = umap_projection(points, n_neighbors=10, seed=3)
    assert np.allclose(first, again)
    centroids = np.array([first[labels == k].mean(0) for k in range(3)])
    spread = max(np.linalg.norm(first[labels == k] - centroids[k], axis=1).mean() for k in range(3))
    gaps = min(np.linalg.norm(centroids[a] - centroids[b]) for a in range(3) for b in range(a + 1, 3))
    assert gaps > 3 * spread


def test_pc_property_correlations_find_the_planted_property():
    rng = np.random.default_rng(2)
    gc = rng.random(300)
    embeddings = np.column_stack([gc * 10, rng.normal(size=(300, 5))])  # PC1 is GC
    table = pc_property_correlations(embeddings, pd.DataFrame({"gc": gc, "noise": rng.random(300)}),
                                     columns=["gc", "noise"], n_components=3)
    assert set(table.columns) == {"component", "property", "spearman", "explained_variance_ratio"}
    assert len(table) == 6
    pc1 = table[table.component == "PC1"].set_index("property")["spearman"]
    assert abs(pc1["gc"]) > 0.99 and abs(pc1["noise"]) < 0.2
