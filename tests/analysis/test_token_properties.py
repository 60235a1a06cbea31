import numpy as np
import pytest

from analysis.token_properties import composition, token_property_table


@pytest.mark.parametrize("token, expected", [
    ("ACGT", {"gc": 0.5, "ag": 0.5, "ac": 0.5, "cpg": 1}),
    ("AAAA", {"gc": 0.0, "ag": 1.0, "ac": 1.0, "cpg": 0}),
    ("CGCG", {"gc": 1.0, "ag": 0.5, "ac": 0.5, "cpg": 2}),
    ("T", {"gc": 0.0, "ag": 0.0, "ac": 0.0, "cpg": 0}),
], ids=["acgt", "polyA", "cpg", "single"])
def test_composition(token, expected):
    assert composition(token) == expected


def test_property_table_marks_specials_and_keeps_ids():
    tokens = ["[PAD]", "A", "GC", "TTA"]
    table = token_property_table(tokens, frequencies=np.array([0, 10, 5, 2]), special=np.array([1, 0, 0, 0], bool),
                                 embedding_counts=np.array([0, 3, 2, 1]))
    assert table["token_id"].tolist() == [0, 1, 2, 3]
    assert table["length"].tolist() == [0, 1, 2, 3]
    assert table.loc[0, "is_special"] and np.isnan(table.loc[0, "gc"])
    assert table.loc[2, "gc"] == 1.0 and table.loc[3, "ag"] == pytest.approx(1 / 3)
    assert table["frequency"].tolist() == [0, 10, 5, 2]
    assert table["embedding_count"].tolist() == [0, 3, 2, 1]
