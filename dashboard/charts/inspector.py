"""Sequence inspector: reading a user's sequence, masked-token predictions along it, and its tokens on the map.

Pure logic (no Streamlit here), unit-tested in ``tests/dashboard/test_charts_inspector.py``:

* input: ``parse_sequence_text`` (FASTA or plain text; the first record is used), ``sequence_problems``
  (refuses what the inspector does not read, naming the reason and the limit), ``upload_problem``;
* ``example_region``: a stretch of the run's own tokenized genome, as a ready-made example;
* masked predictions: ``context_starts`` / ``masked_copies`` (one copy of the sequence per predicted
  token, that token replaced by [MASK]), ``masked_token_probabilities`` (the batched forward passes),
  ``top_k_table`` (top-k predictions and where the true token ranks) and ``true_token_figure``;
* the map: ``sequence_token_counts`` and ``sequence_map_figure`` (every token grey, the sequence's tokens
  highlighted, sized by how often they occur in it), ``tokens_html`` (the sequence cut into its tokens).

Positions shown to people are 1-based (token #1, nucleotide 1); spans in tables are the 0-based
half-open ``start``/``end`` of ``analysis.segmentation.segment``.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures import scatter_type

MAX_NUCLEOTIDES = 2_000  # longest sequence inspected: a few model windows of light CPU inference
MAX_UPLOAD_MB = 1  # uploads above this are refused before they are read (a FASTA of one region is far smaller)
MAX_PREDICTED_TOKENS = 400  # masked copies per view: each is one sequence in the forward passes
# Forward-pass budget of one view, in FLOPs (about 2 x parameters per token of every copy): a few
# seconds on a laptop CPU. The demo model predicts all 400 tokens; BERT-base (GROVER) about 20 per view.
PREDICTION_FLOPS_PER_VIEW = 2e12
TOKENS_PER_PASS = 16_384  # tokens in one forward pass (copies x window): bounds the attention's memory
MAX_TOP_K = 10
DEFAULT_TOP_K = 5
EXAMPLE_NUCLEOTIDES = 600  # length of the example region taken from the run's genome

ACGTN = frozenset("ACGTN")
IUPAC_AMBIGUITY = frozenset("RYSWKMBDHVU")  # read as DNA by other tools, not by these tokenizers
_POSITIONS_SHOWN = 5  # positions listed per offending letter

IN_TOP_K_COLOUR = "#2a9d8f"
NOT_IN_TOP_K_COLOUR = "#e76f51"
MAP_BACKGROUND_COLOUR = "rgba(160, 160, 160, 0.35)"
MAP_HIGHLIGHT_COLOUR = "#d62728"
HIGHLIGHT_SIZE_RANGE = (8.0, 24.0)  # px: a token seen once, the most frequent token of the sequence
FIGURE_HEIGHT = 600


# ---------------------------------------------------------------------------------------------
# Reading the input
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedSequence:
    """A sequence as the inspector reads it.

    ``sequence`` has white space dropped and is upper case; ``name`` is the FASTA header of the record
    used (empty for plain text); ``n_records`` is how many FASTA records the text held (0 for plain text).
    """

    sequence: str
    name: str = ""
    n_records: int = 0

    @property
    def is_fasta(self) -> bool:
        return self.n_records > 0


def parse_sequence_text(text: str | None) -> ParsedSequence:
    """Return the sequence of a pasted or uploaded text: FASTA (first record only) or plain letters.

    The text is FASTA when its first non-blank line starts with ``>``; lines starting with ``;`` are
    comments. White space (line breaks, spaces, tabs) is dropped and letters are upper-cased; nothing
    else is changed, so ``sequence_problems`` can name any non-DNA character with its position.

    >>> parse_sequence_text(">chr1:1-8 test\\nacgt\\nACGN\\n>second\\nTTTT").sequence
    'ACGTACGN'
    >>> parse_sequence_text("ac gt\\n").n_records
    0
    """
    lines = (text or "").splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    if not first.startswith(">"):
        return ParsedSequence("".join("".join(lines).split()).upper())
    name, body, n_records = "", [], 0
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(">"):
            n_records += 1
            if n_records == 1:
                name = stripped[1:].strip()
            continue
        if n_records == 1 and not stripped.startswith(";"):
            body.append(stripped)
    return ParsedSequence("".join("".join(body).split()).upper(), name=name, n_records=n_records)


def invalid_letters(sequence: str) -> dict[str, list[int]]:
    """Return ``{character: [1-based positions]}`` of every character other than A, C, G, T, N (any case)."""
    found: dict[str, list[int]] = {}
    for position, letter in enumerate(sequence, start=1):
        if letter.upper() not in ACGTN:
            found.setdefault(letter, []).append(position)
    return found


def _positions(positions: Sequence[int]) -> str:
    shown = ", ".join(f"{p:,}" for p in positions[:_POSITIONS_SHOWN])
    more = len(positions) - _POSITIONS_SHOWN
    return shown + (f" and {more:,} more" if more > 0 else "")


def sequence_problems(sequence: str, *, max_nucleotides: int = MAX_NUCLEOTIDES) -> list[str]:
    """Return why the inspector cannot read ``sequence`` (empty list when it can).

    Refused: an empty sequence; one longer than ``max_nucleotides`` (the message gives the length and
    the limit); characters other than A/C/G/T/N (lower case is fine), listed with their 1-based
    positions, IUPAC ambiguity codes told apart from characters that are not nucleotides at all.
    """
    if not sequence:
        return ["No sequence: paste DNA letters (plain or FASTA) or upload a FASTA file."]
    problems = []
    if len(sequence) > max_nucleotides:
        problems.append(
            f"The sequence has {len(sequence):,} nucleotides; the inspector reads at most {max_nucleotides:,} "
            "(it runs the model on the server for every token). Paste a shorter region, or use "
            "`grover embed-sequences` for long ones."
        )
    bad = invalid_letters(sequence)
    ambiguity = {k: v for k, v in bad.items() if k.upper() in IUPAC_AMBIGUITY}
    other = {k: v for k, v in bad.items() if k.upper() not in IUPAC_AMBIGUITY}
    if ambiguity:
        listed = "; ".join(f"`{k}` at {_positions(v)}" for k, v in ambiguity.items())
        problems.append(
            f"IUPAC ambiguity codes other than N are not read: {listed} (1-based positions after dropping "
            "white space and the FASTA header). Replace them by N or by a base."
        )
    if other:
        listed = "; ".join(f"`{k if k.isprintable() else repr(k)}` at {_positions(v)}" for k, v in other.items())
        problems.append(
            f"Characters that are not nucleotides: {listed} (1-based positions after dropping white space and "
            "the FASTA header). Only A, C, G, T and N are read; lower case is fine."
        )
    return problems


def upload_problem(size_bytes: int, *, max_mb: int = MAX_UPLOAD_MB) -> str | None:
    """Return why an uploaded file of ``size_bytes`` is refused before reading it (None when it is small enough)."""
    limit = max_mb * 1024 * 1024
    if size_bytes > limit:
        return (f"The uploaded file has {size_bytes / 1024 / 1024:.1f} MB; the inspector reads files up to "
                f"{max_mb} MB (and sequences up to {MAX_NUCLEOTIDES:,} nt). Upload a FASTA of the region only.")
    return None


def example_region(ids: np.ndarray, starts: np.ndarray, strings: Sequence[str], *,
                   length: int = EXAMPLE_NUCLEOTIDES) -> tuple[str, int]:
    """Return ``(sequence, start)``: at least ``length`` contiguous nucleotides from the middle of a tokenized chromosome.

    ``ids`` / ``starts`` are one chromosome of the run's tokenized genome (token ids and 0-based
    positions). The region starts at the token nearest the middle and takes whole tokens while they
    follow each other without a gap (an N run is a gap); it restarts after a gap. Returns ``("", 0)``
    when the chromosome has no such stretch.
    """
    if len(ids) == 0:
        return "", 0
    # Token by token (the arrays may be memory-mapped chromosomes of millions of tokens: read only what is used).
    for first in (len(ids) // 2, 0):  # the middle, then the whole chromosome
        text, region_start, expected = [], None, None
        for i in range(first, len(ids)):
            token, start = strings[int(ids[i])], int(starts[i])
            if expected is not None and start != expected:
                text, region_start = [], None  # a gap: start again after it
            if region_start is None:
                region_start = start
            text.append(token)
            expected = start + len(token)
            if expected - region_start >= length:
                return "".join(text), region_start
    return "", 0


# ---------------------------------------------------------------------------------------------
# Masked-token predictions
# ---------------------------------------------------------------------------------------------


def context_starts(n_tokens: int, positions: Sequence[int], window_tokens: int) -> np.ndarray:
    """Return, for each predicted position, the first token of the context window the model sees.

    When the sequence fits in the model's window (``n_tokens <= window_tokens``) every copy is the whole
    sequence (start 0). Otherwise each position gets a window of ``window_tokens`` tokens centred on it,
    shifted inwards at the sequence's ends, so every masked token has as much context as the model takes.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if n_tokens <= window_tokens:
        return np.zeros(len(positions), dtype=np.int64)
    return np.clip(positions - window_tokens // 2, 0, n_tokens - window_tokens)


def tokens_per_view(n_parameters: int, copy_length: int, *, max_tokens: int = MAX_PREDICTED_TOKENS,
                    flops: float = PREDICTION_FLOPS_PER_VIEW) -> int:
    """Return how many tokens one view predicts: ``max_tokens``, fewer when the model is large.

    Each predicted token costs one copy of ``copy_length`` tokens through a model of ``n_parameters``
    (about ``2 * n_parameters`` FLOPs per token); the view stays within ``flops``. At least 1.
    """
    affordable = int(flops // (2 * max(n_parameters, 1) * max(copy_length, 1)))
    return max(1, min(max_tokens, affordable))


def masked_copies(token_ids: Sequence[int], positions: Sequence[int], *, window_tokens: int, cls_id: int,
                  sep_id: int, mask_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(input_ids [m, L], mask_columns [m])``: one model input per predicted position.

    Copy ``j`` is ``[CLS] + context window + [SEP]`` (``context_starts``) with the token at
    ``positions[j]`` replaced by ``mask_id``; ``mask_columns[j]`` is the column of that [MASK] in the
    copy. All copies have the same length ``L = min(n_tokens, window_tokens) + 2`` (no padding).
    """
    ids = np.asarray(token_ids, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size and (positions.min() < 0 or positions.max() >= ids.size):
        raise ValueError(f"positions must lie in 0..{ids.size - 1}")
    width = min(ids.size, window_tokens)
    starts = context_starts(ids.size, positions, window_tokens)
    columns = np.arange(width)[None, :] + starts[:, None]
    body = ids[columns]
    mask_columns = positions - starts
    body[np.arange(positions.size), mask_columns] = mask_id
    copies = np.concatenate([np.full((positions.size, 1), cls_id), body, np.full((positions.size, 1), sep_id)], axis=1)
    return copies.astype(np.int64), mask_columns + 1  # +1: the [CLS] column


def masked_token_probabilities(model, token_ids: Sequence[int], positions: Sequence[int], *, cls_id: int,
                               sep_id: int, mask_id: int, special: np.ndarray,
                               tokens_per_pass: int = TOKENS_PER_PASS) -> np.ndarray:
    """Return ``[len(positions), vocab]`` probabilities the model gives each token at each masked position.

    Every position is masked in its own copy (``masked_copies``); copies go through the model in batches
    of about ``tokens_per_pass`` tokens under ``torch.inference_mode()``. As in the held-out evaluation
    (``grover_core.pretrain.evaluate_masked_lm``), special tokens (``special``: bool per id) are never the
    answer: their probability is 0 and the rest sums to 1.
    """
    import torch

    window_tokens = int(model.config.max_position_embeddings) - 2
    copies, columns = masked_copies(token_ids, positions, window_tokens=window_tokens, cls_id=cls_id,
                                    sep_id=sep_id, mask_id=mask_id)
    vocab = int(model.config.vocab_size)
    out = np.zeros((len(copies), vocab), dtype=np.float32)
    if not len(copies):
        return out
    excluded = torch.zeros(vocab, dtype=torch.bool)
    excluded[: min(vocab, len(special))] = torch.from_numpy(np.asarray(special[:vocab], dtype=bool))
    batch = max(1, tokens_per_pass // copies.shape[1])
    device = next(model.parameters()).device
    with torch.inference_mode():
        for first in range(0, len(copies), batch):
            ids = torch.from_numpy(copies[first:first + batch]).to(device)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            scores = logits[torch.arange(ids.shape[0], device=device), torch.from_numpy(columns[first:first + batch]).to(device)]
            scores = scores.float().cpu()
            scores[:, excluded] = -torch.inf
            out[first:first + batch] = torch.softmax(scores, dim=-1).numpy()
    return out


def top_k_table(segments: pd.DataFrame, positions: Sequence[int], probabilities: np.ndarray,
                token_strings: Sequence[str], *, k: int) -> pd.DataFrame:
    """Return one row per predicted position: the true token, its probability and rank, and the top-k predictions.

    Parameters
    ----------
    segments
        ``analysis.segmentation.segment`` of the sequence (``token``, ``token_id``, ``start``, ``end``).
    positions, probabilities
        The 0-based token indices predicted and ``masked_token_probabilities`` for them.
    token_strings
        Token string of every id.
    k
        How many predictions to list (1..``MAX_TOP_K``).

    Returns
    -------
    DataFrame with columns ``position`` (1-based token number), ``token``, ``token_id``, ``start``,
    ``end`` (0-based half-open nucleotide span), ``p_true`` (probability of the true token), ``rank``
    (1 = the model's first choice), ``in_top_k`` (bool), then ``prediction_1``, ``p_1``, ...,
    ``prediction_k``, ``p_k`` (best first; ties broken by token id).
    """
    if not 1 <= k <= probabilities.shape[1]:
        raise ValueError(f"k must lie in 1..{probabilities.shape[1]}, not {k}")
    positions = np.asarray(positions, dtype=np.int64)
    rows = segments.iloc[positions]
    true_ids = rows["token_id"].to_numpy(dtype=np.int64)
    p_true = probabilities[np.arange(len(positions)), true_ids] if len(positions) else np.zeros(0)
    # Rank: tokens strictly more probable, plus those as probable with a smaller id (the same tie rule as the order).
    ids = np.arange(probabilities.shape[1])
    better = (probabilities > p_true[:, None]) | ((probabilities == p_true[:, None]) & (ids[None, :] < true_ids[:, None]))
    rank = better.sum(axis=1) + 1
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]  # stable: ties keep id order
    table = pd.DataFrame({
        "position": positions + 1,
        "token": rows["token"].astype(str).to_numpy(),
        "token_id": true_ids,
        "start": rows["start"].to_numpy(dtype=np.int64),
        "end": rows["end"].to_numpy(dtype=np.int64),
        "p_true": p_true.astype(float),
        "rank": rank.astype(np.int64),
        "in_top_k": rank <= k,
    })
    for j in range(k):
        chosen = order[:, j]
        table[f"prediction_{j + 1}"] = [token_strings[i] for i in chosen]
        table[f"p_{j + 1}"] = probabilities[np.arange(len(positions)), chosen].astype(float)
    return table


def prediction_summary(table: pd.DataFrame, k: int) -> dict[str, float | int]:
    """Return ``{"n": positions, "top1": share ranked first, "top_k": share in the top k, "mean_p_true": ...}``."""
    n = len(table)
    if n == 0:
        return {"n": 0, "top1": math.nan, "top_k": math.nan, "mean_p_true": math.nan}
    return {"n": n, "top1": float((table["rank"] == 1).mean()), "top_k": float((table["rank"] <= k).mean()),
            "mean_p_true": float(table["p_true"].mean())}


def true_token_figure(table: pd.DataFrame, *, k: int, n_nucleotides: int, title: str | None = None) -> go.Figure:
    """Return the strip chart: one bar per predicted token over its nucleotide span, as high as ``p_true``.

    Bars are green when the true token is in the top k, orange otherwise (two traces, named so); a
    third trace marks the probability of the model's first choice over each token (grey ticks), so a
    low bar reads against what the model preferred. Hover shows the token, its span, rank and first
    choice. The y axis starts at 0 and fits the values (probabilities of a weak model are small).
    """
    fig = go.Figure()
    hover = ("token #%{customdata[0]} <b>%{customdata[1]}</b> (nt %{customdata[2]}-%{customdata[3]})<br>"
             "p(true) %{customdata[7]:.3f} · rank %{customdata[4]}<br>"
             "first choice %{customdata[5]} (%{customdata[6]:.3f})<extra></extra>")

    def customdata(part: pd.DataFrame):
        if part.empty:
            return None
        return np.column_stack([part["position"], part["token"], part["start"] + 1, part["end"], part["rank"],
                                part["prediction_1"], part["p_1"], part["p_true"]])

    for in_top, name, colour in ((True, f"true token in top {k}", IN_TOP_K_COLOUR),
                                 (False, f"not in top {k}", NOT_IN_TOP_K_COLOUR)):
        part = table[table["in_top_k"] == in_top]
        fig.add_trace(go.Bar(
            x=(part["start"] + part["end"]) / 2, y=part["p_true"], width=(part["end"] - part["start"]) * 0.95,
            name=name, marker_color=colour, customdata=customdata(part), hovertemplate=hover,
        ))
    fig.add_trace(go.Scatter(
        x=(table["start"] + table["end"]) / 2, y=table["p_1"], mode="markers", name="model's first choice",
        marker=dict(symbol="line-ew-open", size=10, color="rgba(80, 80, 80, 0.8)", line=dict(width=2)),
        customdata=customdata(table), hovertemplate=hover,
    ))
    fig.update_layout(
        title=title, barmode="overlay", bargap=0, height=340, margin=dict(l=60, r=20, t=70 if title else 30, b=50),
        xaxis=dict(title="nucleotide position in the sequence", range=[0, max(n_nucleotides, 1)]),
        yaxis=dict(title="probability", rangemode="tozero"),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
    )
    return fig


# ---------------------------------------------------------------------------------------------
# The sequence's tokens: as text and on the embedding map
# ---------------------------------------------------------------------------------------------


def sequence_token_counts(segments: pd.DataFrame) -> pd.DataFrame:
    """Return one row per distinct token of the sequence: ``token_id``, ``token``, ``count``, ``first_position``.

    ``first_position`` is the 1-based number of the token's first occurrence; rows are in that order.
    """
    if segments.empty:
        return pd.DataFrame({"token_id": pd.Series(dtype=np.int64), "token": pd.Series(dtype=object),
                             "count": pd.Series(dtype=np.int64), "first_position": pd.Series(dtype=np.int64)})
    numbered = segments.assign(position=np.arange(1, len(segments) + 1))
    counts = numbered.groupby("token_id", sort=False).agg(
        token=("token", "first"), count=("token", "size"), first_position=("position", "min")).reset_index()
    counts = counts.astype({"token_id": np.int64, "count": np.int64, "first_position": np.int64})
    return counts.sort_values("first_position", kind="stable").reset_index(drop=True)


def map_rows(points: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """Return the map's points (``token_points`` output) with ``count_in_sequence`` (0 for tokens not in it)."""
    merged = points.merge(counts[["token_id", "count"]], on="token_id", how="left")
    return merged.assign(count_in_sequence=merged.pop("count").fillna(0).astype(np.int64))


def highlight_sizes(counts: np.ndarray, size_range: tuple[float, float] = HIGHLIGHT_SIZE_RANGE) -> np.ndarray:
    """Return marker sizes growing with the square root of the count (area ~ count), within ``size_range``."""
    counts = np.asarray(counts, dtype=float)
    small, large = size_range
    if counts.size == 0 or counts.max() <= 1:
        return np.full(counts.size, small)
    return small + (large - small) * (np.sqrt(counts) - 1) / (np.sqrt(counts.max()) - 1)


def sequence_map_figure(rows: pd.DataFrame, *, method: str = "umap", title: str | None = None) -> go.Figure:
    """Return the token map with every token grey and the sequence's tokens highlighted on top.

    ``rows`` is ``map_rows`` output (all projected tokens, nothing sampled). Two traces (SVG ``Scatter``
    up to ``SVG_MAX_POINTS`` tokens, WebGL ``Scattergl`` beyond):
    ``"vocabulary"`` (every token, grey, small) and ``"in the sequence"`` (tokens with
    ``count_in_sequence > 0``, sized by that count). ``customdata`` rows are ``token_id, token,
    count_in_sequence`` in both.
    """
    axis = "UMAP" if method == "umap" else "PC" if method == "pca" else method.upper()
    fig = go.Figure()
    hover = ("<b>%{customdata[1]}</b> (id %{customdata[0]})<br>%{customdata[2]} times in the sequence"
             "<extra></extra>")
    trace_type = scatter_type(len(rows))
    fig.add_trace(trace_type(
        x=rows["x"], y=rows["y"], mode="markers", name="vocabulary",
        marker=dict(color=MAP_BACKGROUND_COLOUR, size=5, line=dict(width=0)),
        customdata=rows[["token_id", "token", "count_in_sequence"]].to_numpy(dtype=object), hovertemplate=hover,
    ))
    seen = rows[rows["count_in_sequence"] > 0].sort_values("count_in_sequence", ascending=False, kind="stable")
    fig.add_trace(trace_type(
        x=seen["x"], y=seen["y"], mode="markers", name="in the sequence",
        marker=dict(color=MAP_HIGHLIGHT_COLOUR, size=highlight_sizes(seen["count_in_sequence"].to_numpy()),
                    opacity=0.8, line=dict(width=1, color="white")),
        customdata=seen[["token_id", "token", "count_in_sequence"]].to_numpy(dtype=object), hovertemplate=hover,
    ))
    fig.update_layout(
        title=title, height=FIGURE_HEIGHT, margin=dict(l=40, r=20, t=60 if title else 20, b=40),
        xaxis=dict(title=f"{axis} 1", showgrid=False, zeroline=False),
        yaxis=dict(title=f"{axis} 2", showgrid=False, zeroline=False),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0), plot_bgcolor="white",
    )
    return fig


_BLOCK_COLOURS = ("#e3f2fd", "#fff3e0")  # alternating token backgrounds
_SPECIAL_COLOUR = "#ffcdd2"


def tokens_html(segments: pd.DataFrame, sequence: str) -> str:
    """Return the sequence as HTML, cut into its tokens: alternating backgrounds, a tooltip per token.

    Each token is a ``<span>`` whose ``title`` gives its number, string and 1-based nucleotide span;
    special tokens ([UNK] for N) are drawn in red. Text is escaped.
    """
    parts = []
    for number, (token, start, end) in enumerate(zip(segments["token"], segments["start"], segments["end"]), start=1):
        special = not (token and set(str(token)) <= set("ACGT"))
        colour = _SPECIAL_COLOUR if special else _BLOCK_COLOURS[number % 2]
        letters = html.escape(sequence[int(start):int(end)])
        tip = html.escape(f"#{number} {token} · nt {int(start) + 1}-{int(end)}")
        parts.append(f'<span title="{tip}" style="background:{colour};border-right:1px solid #999">{letters}</span>')
    return ('<div style="font-family:monospace;font-size:0.95rem;line-height:1.9;word-break:break-all;'
            'max-height:14rem;overflow-y:auto;padding:0.4rem;border:1px solid #ddd;border-radius:0.3rem">'
            + "".join(parts) + "</div>")
