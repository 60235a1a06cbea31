"""Token properties: what each vocabulary token is made of and how common it is."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def composition(token: str) -> dict[str, float]:
    """Return the GC, AG and AC fractions and the CpG count of one nucleotide token.

    >>> composition("ACGT")
    {'gc': 0.5, 'ag': 0.5, 'ac': 0.5, 'cpg': 1}
    """
    if not token:
        return {"gc": np.nan, "ag": np.nan, "ac": np.nan, "cpg": 0}
    n = len(token)
    return {
        "gc": (token.count("G") + token.count("C")) / n,
        "ag": (token.count("A") + token.count("G")) / n,
        "ac": (token.count("A") + token.count("C")) / n,
        "cpg": token.count("CG"),
    }


def token_property_table(tokens: Sequence[str], *, frequencies: np.ndarray, special: np.ndarray,
                         embedding_counts: np.ndarray | None = None) -> pd.DataFrame:
    """Return one row per token id: token, is_special, length, frequency, gc, ag, ac, cpg, embedding_count.

    ``tokens[i]`` is the string of id i; ``special[i]`` marks special tokens, whose length is 0 and
    composition NaN. ``frequencies`` counts occurrences in the tokenized genome.
    """
    rows = []
    for token_id, token in enumerate(tokens):
        is_special = bool(special[token_id])
        props = composition("" if is_special else token)
        rows.append({"token_id": token_id, "token": token, "is_special": is_special,
                     "length": 0 if is_special else len(token), **props})
    table = pd.DataFrame(rows)
    table["frequency"] = np.asarray(frequencies[: len(tokens)], dtype=np.int64)
    counts = np.zeros(len(tokens), dtype=np.int64) if embedding_counts is None else embedding_counts[: len(tokens)]
    table["embedding_count"] = np.asarray(counts, dtype=np.int64)
    return table[["token_id", "token", "is_special", "length", "frequency", "gc", "ag", "ac", "cpg",
                  "embedding_count"]]
