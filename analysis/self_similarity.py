"""Self-similarity of contextual token embeddings, per layer, and its anisotropy baseline.

Quantities
----------
*Self-similarity* (Ethayarajh 2019, "How contextual are contextualized word representations?";
the GROVER paper applies it per layer to its BPE tokens): for one token and one layer, the mean
cosine similarity over all pairs of *different* occurrences of that token in the genome. A value
near 1 means the layer gives the token (almost) the same vector wherever it occurs (little
context); a low value means the representation depends strongly on the surrounding sequence.

*Anisotropy baseline*: the mean cosine similarity over all pairs of occurrences that belong to
*different* tokens, in the same layer. Transformer layers tend to squeeze all vectors into a
narrow cone, so even unrelated vectors have a high cosine; a raw self-similarity of 0.6 means
little if random pairs of different tokens already reach 0.5. The *corrected* self-similarity,
``self_similarity - baseline`` of the layer, is what can be compared across layers. Ethayarajh
estimates the baseline from sampled random pairs; here it is computed exactly over every
cross-token pair of the stored samples.

Both are computed without any pairwise matrix. With unit vectors ``u_i`` and their sum
``S = sum_i u_i``, the sum of ``u_i . u_j`` over ordered pairs ``i != j`` is
``||S||^2 - sum_i ||u_i||^2``; for a token the mean is that over ``n (n - 1)``. Over all kept
samples (``S``, ``N`` of them) and per token (``S_t``, ``n_t``), the cross-token sum is
``||S||^2 - sum_t ||S_t||^2`` over ``N^2 - sum_t n_t^2`` ordered pairs. So one pass that sums
normalised rows per token and layer gives both, reading the data once.

Zero vectors: a sample whose norm is below ``ZERO_NORM`` is normalised to the zero vector, so its
cosine with anything counts as 0 while it still counts as a sample (it adds to the pair counts).
This is why ``sum_i ||u_i||^2`` (the number of non-zero samples) is subtracted instead of ``n``.

Input layout (written by the embedding extractor): ``samples[layer, token_id, slot, hidden]``
holds up to K sampled occurrences per token, ``filled[token_id]`` says how many leading slots are
valid; the remaining slots are ignored whatever they hold.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ZERO_NORM = 1e-12  # samples with a smaller norm are treated as zero vectors (cosine 0 with anything)
BLOCK_BYTES = 64 * 2**20  # float32 working block per read: large enough for BLAS, small next to RAM
QUANTILES = {"q25": 0.25, "median": 0.5, "q75": 0.75}


@dataclass(frozen=True)
class _TokenSums:
    """What one pass over the samples leaves: enough to compute every mean cosine exactly."""

    token_ids: np.ndarray  # [n_tokens] kept token ids, ascending
    n_samples: np.ndarray  # [n_tokens] valid samples per token
    nonzero: np.ndarray  # [n_layers, n_tokens] samples with a non-zero vector (sum of ||u_i||^2)
    token_sq: np.ndarray  # [n_layers, n_tokens] ||S_t||^2, S_t the sum of a token's unit vectors
    total_sq: np.ndarray  # [n_layers] ||S||^2, S the sum over all kept tokens' unit vectors


def _kept_tokens(filled: np.ndarray, *, vocab_size: int, n_slots: int, min_samples: int,
                 token_ids: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(token_ids, n_samples)`` of the tokens to analyse: ascending ids with ``>= min_samples`` samples."""
    if min_samples < 2:
        raise ValueError(f"min_samples must be at least 2 (a pair is needed), got {min_samples}")
    filled = np.asarray(filled)
    if filled.shape != (vocab_size,):
        raise ValueError(f"filled must have shape ({vocab_size},) to match samples, got {filled.shape}")
    # A count above K cannot be honoured: only K slots exist.
    counts = np.clip(filled.astype(np.int64), 0, n_slots)
    if token_ids is None:
        ids = np.arange(vocab_size)
    else:
        ids = np.unique(np.asarray(token_ids, dtype=np.int64))
        if ids.size and (ids[0] < 0 or ids[-1] >= vocab_size):
            raise ValueError(f"token_ids must lie in [0, {vocab_size}), got {ids[0]}..{ids[-1]}")
    ids = ids[counts[ids] >= min_samples]
    return ids, counts[ids]


def _blocks(n_samples: np.ndarray, *, n_slots: int, hidden: int) -> list[slice]:
    """Return slices of consecutive kept tokens whose float32 blocks stay near ``BLOCK_BYTES``."""
    per_token = max(1, n_slots * hidden * 4)
    size = max(1, BLOCK_BYTES // per_token)
    return [slice(start, min(start + size, len(n_samples))) for start in range(0, len(n_samples), size)]


def _read_block(samples: np.ndarray, layer: int, ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Return a float32 copy ``[b, k, hidden]`` of the tokens' slots, invalid slots set to 0.

    Only the first ``max(counts)`` slots are read; contiguous ids are read as one slice, which a
    memmap serves sequentially.
    """
    k = int(counts.max())
    if ids[-1] - ids[0] + 1 == len(ids):
        raw = samples[layer, ids[0]: ids[-1] + 1, :k]
    else:
        raw = samples[layer, ids, :k]
    block = np.array(raw, dtype=np.float32, copy=True)
    # Zeroing (not masking by weight) also neutralises NaN or inf garbage beyond ``filled``.
    for row, n in enumerate(counts):
        block[row, n:] = 0.0
    return block


def _token_sums(samples: np.ndarray, filled: np.ndarray, *, min_samples: int,
                token_ids: Sequence[int] | None) -> _TokenSums:
    """One chunked pass: per layer and kept token, the squared norm of its summed unit vectors.

    Returns a ``_TokenSums``; the data is read once, one layer and one block of tokens at a time.
    """
    if samples.ndim != 4:
        raise ValueError(f"samples must be [n_layers, vocab_size, K, hidden], got shape {samples.shape}")
    n_layers, vocab_size, n_slots, hidden = samples.shape
    ids, counts = _kept_tokens(filled, vocab_size=vocab_size, n_slots=n_slots, min_samples=min_samples,
                               token_ids=token_ids)
    nonzero = np.zeros((n_layers, len(ids)), dtype=np.int64)
    token_sq = np.zeros((n_layers, len(ids)), dtype=np.float64)
    total_sq = np.zeros(n_layers, dtype=np.float64)
    blocks = _blocks(counts, n_slots=n_slots, hidden=hidden)
    for layer in range(n_layers):
        total = np.zeros(hidden, dtype=np.float64)
        for part in blocks:
            block = _read_block(samples, layer, ids[part], counts[part])
            norms = np.sqrt(np.einsum("bkh,bkh->bk", block, block))
            is_nonzero = norms > ZERO_NORM
            weights = np.where(is_nonzero, 1.0 / np.maximum(norms, ZERO_NORM), 0.0).astype(np.float32)
            # sum_k x_k / ||x_k|| as a batched matrix-vector product: no normalised copy is written.
            sums = np.matmul(weights[:, None, :], block)[:, 0, :].astype(np.float64)
            nonzero[layer, part] = is_nonzero.sum(axis=1)
            token_sq[layer, part] = np.einsum("bh,bh->b", sums, sums)
            total += sums.sum(axis=0)
        total_sq[layer] = total @ total
    return _TokenSums(token_ids=ids, n_samples=counts, nonzero=nonzero, token_sq=token_sq, total_sq=total_sq)


def _self_similarity_frame(sums: _TokenSums) -> pd.DataFrame:
    """Return ``layer, token_id, n_samples, self_similarity`` from the pass's sums."""
    n = sums.n_samples.astype(np.float64)
    values = (sums.token_sq - sums.nonzero) / (n * (n - 1))
    n_layers, n_tokens = values.shape
    return pd.DataFrame({
        "layer": np.repeat(np.arange(n_layers), n_tokens),
        "token_id": np.tile(sums.token_ids, n_layers),
        "n_samples": np.tile(sums.n_samples, n_layers),
        "self_similarity": values.ravel(),
    })


def _baseline_frame(sums: _TokenSums) -> pd.DataFrame:
    """Return ``layer, baseline, n_pairs`` from the pass's sums (NaN baseline when no cross-token pair)."""
    n = sums.n_samples.astype(np.float64)
    ordered_pairs = n.sum() ** 2 - (n ** 2).sum()
    cross = sums.total_sq - sums.token_sq.sum(axis=1)
    baseline = cross / ordered_pairs if ordered_pairs > 0 else np.full(len(cross), np.nan)
    return pd.DataFrame({
        "layer": np.arange(len(cross)),
        "baseline": baseline,
        "n_pairs": np.full(len(cross), int(ordered_pairs) // 2, dtype=np.int64),
    })


def self_similarity(samples: np.ndarray, filled: np.ndarray, *, min_samples: int = 2,
                    token_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Mean cosine similarity between different occurrences of each token, per layer.

    Parameters
    ----------
    samples
        ``[n_layers, vocab_size, K, hidden]`` sampled contextual embeddings (any float dtype; a
        memmap is read in blocks, never loaded whole).
    filled
        ``[vocab_size]`` number of valid leading slots per token.
    min_samples
        Tokens with fewer valid samples are left out (at least 2).
    token_ids
        Analyse only these tokens (default: all).

    Returns
    -------
    DataFrame with one row per layer and kept token, sorted by layer then token_id:
    ``layer`` (0-based index into ``samples``), ``token_id``, ``n_samples`` (valid samples used),
    ``self_similarity`` (mean cosine over pairs of different samples; zero vectors count as cosine 0).
    """
    return _self_similarity_frame(_token_sums(samples, filled, min_samples=min_samples, token_ids=token_ids))


def anisotropy_baseline(samples: np.ndarray, filled: np.ndarray, *, min_samples: int = 2,
                        token_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Mean cosine similarity over every pair of samples of different tokens, per layer (exact).

    Takes the same inputs and token filter as :func:`self_similarity`.

    Returns
    -------
    DataFrame with one row per layer: ``layer``, ``baseline`` (mean cosine over all cross-token
    pairs of kept samples; NaN when fewer than two tokens are kept), ``n_pairs`` (number of
    unordered cross-token pairs averaged over).
    """
    return _baseline_frame(_token_sums(samples, filled, min_samples=min_samples, token_ids=token_ids))


def self_similarity_table(samples: np.ndarray, filled: np.ndarray, *, min_samples: int = 2,
                          token_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Self-similarity, the layer's anisotropy baseline and their difference, from one pass over the data.

    Takes the same inputs as :func:`self_similarity`.

    Returns
    -------
    DataFrame with one row per layer and kept token, sorted by layer then token_id: ``layer``,
    ``token_id``, ``n_samples``, ``self_similarity``, ``baseline`` (of that layer, see
    :func:`anisotropy_baseline`), ``corrected`` (``self_similarity - baseline``).
    """
    sums = _token_sums(samples, filled, min_samples=min_samples, token_ids=token_ids)
    table = _self_similarity_frame(sums)
    baseline = _baseline_frame(sums).set_index("layer")["baseline"]
    table["baseline"] = table["layer"].map(baseline).to_numpy(dtype=np.float64)
    table["corrected"] = table["self_similarity"] - table["baseline"]
    return table


def _describe(values: pd.Series) -> dict[str, float]:
    """Return ``mean, std, q25, median, q75`` of the non-NaN values (NaN when there are none)."""
    values = values.dropna()
    stats = {"mean": values.mean(), "std": values.std()}
    stats.update({name: values.quantile(q) if len(values) else np.nan for name, q in QUANTILES.items()})
    return {name: float(value) for name, value in stats.items()}


def intra_window_summary(window_similarity: np.ndarray) -> pd.DataFrame:
    """Summarise per-window mean pairwise cosine (``[n_windows, n_layers]``) per layer, ignoring NaN.

    Returns
    -------
    DataFrame with one row per layer: ``layer``, ``mean``, ``std`` (sample std, ddof 1), ``q25``,
    ``median``, ``q75``, ``n_windows`` (windows with a non-NaN value in that layer).
    """
    values = np.asarray(window_similarity, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"window_similarity must be [n_windows, n_layers], got shape {values.shape}")
    rows = []
    for layer in range(values.shape[1]):
        column = pd.Series(values[:, layer])
        rows.append({"layer": layer, **_describe(column), "n_windows": int(column.notna().sum())})
    return pd.DataFrame(rows, columns=["layer", "mean", "std", *QUANTILES, "n_windows"])


def _length_labels(length_bins: Sequence[int]) -> list[str]:
    """Return one label per bin ``[b_i, b_{i+1})``, the last open-ended: (1, 2, 4) -> "1", "2-3", "4+"."""
    labels = []
    for low, high in zip(length_bins[:-1], length_bins[1:]):
        labels.append(str(low) if high - low == 1 else f"{low}-{high - 1}")
    labels.append(f"{length_bins[-1]}+")
    return labels


def _frequency_deciles(frequency: pd.Series) -> pd.Categorical:
    """Return ordered deciles 1 (rarest) .. 10 of ``frequency`` by rank; a lone token is decile 10."""
    # Ranking first (ties by order of appearance) keeps qcut's edges distinct whatever the ties.
    ranks = frequency.rank(method="first").to_numpy()
    if len(ranks) < 2:  # qcut cannot place one value between distinct edges
        return pd.Categorical([10] * len(ranks), categories=range(1, 11), ordered=True)
    return pd.qcut(ranks, 10, labels=range(1, 11))


def token_groups(tokens: pd.DataFrame, *, repeat_share_column: str = "share_repeat",
                 repeat_threshold: float = 0.5,
                 length_bins: Sequence[int] = (1, 2, 4, 8, 16, 32)) -> pd.DataFrame:
    """Assign each non-special token to a length group, a frequency decile and (optionally) a repeat group.

    Parameters
    ----------
    tokens
        One row per token with ``token_id``, ``length``, ``frequency``, ``is_special`` and
        optionally ``repeat_share_column`` (share of the token's occurrences inside repeats, 0..1).
    repeat_share_column, repeat_threshold
        A token is "repeat" when its share is ``>= repeat_threshold``, "non-repeat" otherwise.
    length_bins
        Ascending lower edges; bin i holds lengths ``[b_i, b_{i+1})`` and the last ``[b_last, inf)``.

    Returns
    -------
    DataFrame of the non-special tokens, sorted by token_id, with ordered categorical columns:
    ``token_id``; ``length_group`` (labels such as "1", "2-3", "4-7", "8-15", "16-31", "32+"; missing
    for lengths below the first edge); ``frequency_decile`` (1 = rarest .. 10 = most frequent, by
    rank among non-special tokens; equal frequencies are ranked by order of appearance so the ten
    bins stay well defined); ``repeat_localised`` ("non-repeat" / "repeat"; missing where the share
    is NaN; only present when ``repeat_share_column`` is a column of ``tokens``).
    """
    edges = [int(b) for b in length_bins]
    if not edges or any(b >= c for b, c in zip(edges[:-1], edges[1:])):
        raise ValueError(f"length_bins must be strictly ascending and non-empty, got {tuple(length_bins)}")
    kept = tokens.loc[~tokens["is_special"].astype(bool)].sort_values("token_id")
    out = pd.DataFrame({"token_id": kept["token_id"].to_numpy()})
    labels = _length_labels(edges)
    out["length_group"] = pd.cut(kept["length"].to_numpy(), bins=[*edges, np.inf], right=False,
                                 labels=labels, ordered=True)
    out["frequency_decile"] = _frequency_deciles(kept["frequency"])
    if repeat_share_column in tokens.columns:
        share = kept[repeat_share_column].to_numpy(dtype=np.float64)
        groups = np.where(share >= repeat_threshold, "repeat", "non-repeat").astype(object)
        groups[np.isnan(share)] = None
        out["repeat_localised"] = pd.Categorical(groups, categories=["non-repeat", "repeat"], ordered=True)
    return out


def summarise_by_group(table: pd.DataFrame, groups: pd.DataFrame, *,
                       value_columns: Sequence[str] = ("self_similarity", "corrected")) -> pd.DataFrame:
    """Per layer and token group, the distribution of per-token values (for curves with spread).

    Parameters
    ----------
    table
        Per layer and token values, e.g. from :func:`self_similarity_table`.
    groups
        ``token_id`` plus one column per grouping, e.g. from :func:`token_groups`.
    value_columns
        Columns of ``table`` to summarise.

    Returns
    -------
    Long DataFrame, one row per grouping column x group x value column x layer (in that order,
    groups in category order, empty groups left out): ``layer``, ``grouping`` (the group column's
    name), ``group`` (the group label as text), ``n_tokens`` (tokens with a non-NaN value),
    ``value`` (the value column's name), ``mean``, ``std`` (ddof 1), ``q25``, ``median``, ``q75``.
    """
    missing = [c for c in value_columns if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks {missing}; build it with self_similarity_table, which adds "
                         "'baseline' and 'corrected'")
    groupings = [c for c in groups.columns if c != "token_id"]
    merged = table[["layer", "token_id", *value_columns]].merge(groups, on="token_id", how="inner")
    columns = ["layer", "grouping", "group", "n_tokens", "value", "mean", "std", *QUANTILES]
    rows = []
    for grouping in groupings:
        for value in value_columns:
            grouped = merged.groupby([grouping, "layer"], observed=True, sort=True)[value]
            for (group, layer), values in grouped:
                rows.append({"layer": int(layer), "grouping": grouping, "group": str(group),
                             "n_tokens": int(values.notna().sum()), "value": value, **_describe(values)})
    return pd.DataFrame(rows, columns=columns)
