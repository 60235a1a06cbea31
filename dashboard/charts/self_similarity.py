"""Figures and tables of the self-similarity page (pure: no Streamlit, no file reading).

The page (``dashboard/views/self_similarity.py``) passes the tables the pipeline wrote
(``grover_lens.analyze.self_similarity``):

- ``self_similarity``: ``layer, token_id, n_samples, self_similarity, baseline, corrected``;
- ``self_similarity_groups``: ``layer, grouping, group, n_tokens, value, mean, std, q25, median, q75``;
- ``self_similarity_baseline``: ``layer, baseline``; ``intra_window_similarity``: ``layer, mean, std,
  q25, median, q75, n_windows``.

*Raw* self-similarity is the mean cosine between different occurrences of one token in one layer;
the *baseline* is the same mean over occurrences of different tokens (anisotropy), and *corrected*
is raw minus the baseline of the layer (see ``analysis/self_similarity.py``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

# The value radio: self_similarity.parquet column -> label.
VALUES: dict[str, str] = {
    "self_similarity": "Raw self-similarity",
    "corrected": "Corrected (raw − baseline)",
}
# Groupings written by analysis.self_similarity.summarise_by_group, in the order the select shows them.
GROUPINGS: dict[str, str] = {
    "length_group": "Token length (nt)",
    "frequency_decile": "Frequency decile (1 = rarest)",
    "repeat_localised": "Repeat-localised",
}
# The spread drawn around each curve: key -> (centre column, low column, high column, label).
BANDS: dict[str, tuple[str, str, str, str]] = {
    "iqr": ("median", "q25", "q75", "median, band q25–q75"),
    "std": ("mean", "std", "std", "mean, band ± 1 std"),
}
# Heatmap row orders: key -> label (the page says which one is used).
SORTS: dict[str, str] = {
    "frequency": "Frequency (most frequent first)",
    "last_layer": "Value at the last layer (highest first)",
    "drop": "Fall from first to last compared layer (largest first)",
    "repeat_share": "Repeat share (highest first)",
    "length": "Length (longest first)",
    "token_id": "Token id",
}

LAYER_AXIS = "Layer (0 = input embeddings)"
CURVE_HEIGHT = 460  # px
HEATMAP_MAX_HEIGHT = 900  # px: 600 tokens fit as ~1.5 px rows, an overview
HEATMAP_ROW_PX = 18  # px per row while rows are labelled
HEATMAP_MAX_LABELLED_ROWS = 60  # above this, token names only on hover (they would overlap)
BAND_ALPHA = 0.15
BASELINE_COLOUR = "#555555"
INTRA_COLOUR = "#2ca02c"
TOKEN_COLOUR = "#d62728"
REPEAT_COLOURS = {"non-repeat": "#1f77b4", "repeat": "#d62728"}
GAP_MARK = "⋯"  # between context tokens that are not adjacent in the genome (an N run)

# The page's views (lazy tabs, one drawn at a time): link name -> tab label; the first is the default.
VIEWS = {"groups": "By token group", "heatmap": "Tokens × layers", "token": "One token"}


# ---------------------------------------------------------------------------------------------
# Layers compared in the findings
# ---------------------------------------------------------------------------------------------

def compared_layers(layers: Sequence[int]) -> tuple[int, int]:
    """Return ``(first, last)`` layers the findings compare.

    The first is layer 1 (the first transformer layer) when the run has a later one; layer 0 is the
    input embedding table, where a token's vectors differ only through position embeddings.

    >>> compared_layers([0, 1, 2, 3, 4])
    (1, 4)
    >>> compared_layers([0, 1])
    (0, 1)
    """
    ordered = sorted(int(layer) for layer in layers)
    if not ordered:
        raise ValueError("no layer to compare")
    last = ordered[-1]
    first = 1 if 1 in ordered and last > 1 else ordered[0]
    return first, last


def change_summary(table: pd.DataFrame, *, value: str, first: int, last: int) -> dict[str, Any]:
    """How many tokens' ``value`` falls from layer ``first`` to layer ``last``.

    Returns
    -------
    dict with ``n_tokens`` (tokens with a value at both layers), ``n_fall`` (value at ``last`` below
    ``first``), ``share_fall`` (fraction, NaN without tokens), ``mean_first``, ``mean_last``.
    """
    wide = table.pivot(index="token_id", columns="layer", values=value)
    if first not in wide.columns or last not in wide.columns:
        both = pd.DataFrame(columns=["a", "b"], dtype=float)
    else:
        both = wide[[first, last]].dropna()
        both.columns = ["a", "b"]
    n = len(both)
    n_fall = int((both["b"] < both["a"]).sum())
    return {"n_tokens": n, "n_fall": n_fall, "share_fall": n_fall / n if n else float("nan"),
            "mean_first": float(both["a"].mean()) if n else float("nan"),
            "mean_last": float(both["b"].mean()) if n else float("nan")}


def repeat_contrast(groups: pd.DataFrame, *, value: str, layer: int) -> dict[str, float] | None:
    """Mean ``value`` of repeat-localised vs other tokens at ``layer`` (None when not available).

    Returns
    -------
    dict with ``repeat``, ``non_repeat`` (group means), ``n_repeat``, ``n_non_repeat`` (tokens).
    """
    rows = groups[(groups["grouping"] == "repeat_localised") & (groups["value"] == value)
                  & (groups["layer"] == layer)].set_index("group")
    if not {"repeat", "non-repeat"} <= set(rows.index):
        return None
    return {"repeat": float(rows.at["repeat", "mean"]), "non_repeat": float(rows.at["non-repeat", "mean"]),
            "n_repeat": int(rows.at["repeat", "n_tokens"]), "n_non_repeat": int(rows.at["non-repeat", "n_tokens"])}


# ---------------------------------------------------------------------------------------------
# Curves by token group
# ---------------------------------------------------------------------------------------------

def available_groupings(groups: pd.DataFrame) -> list[str]:
    """Return the groupings present in the groups table, known ones first in ``GROUPINGS`` order."""
    present = list(dict.fromkeys(str(g) for g in groups["grouping"]))
    return [g for g in GROUPINGS if g in present] + [g for g in present if g not in GROUPINGS]


def _band(frame: pd.DataFrame, band: str) -> pd.DataFrame:
    """Return ``centre, low, high`` of a summary frame (``mean/std/q25/median/q75`` columns)."""
    centre_col, low_col, high_col, _ = BANDS[band]
    centre = frame[centre_col].astype(float)
    if band == "std":
        spread = frame["std"].astype(float).fillna(0.0)  # one token: no spread, not a hole
        low, high = centre - spread, centre + spread
    else:
        low, high = frame[low_col].astype(float), frame[high_col].astype(float)
    return pd.DataFrame({"centre": centre.to_numpy(), "low": low.to_numpy(), "high": high.to_numpy()},
                        index=frame.index)


def group_curves(groups: pd.DataFrame, *, grouping: str, value: str, band: str) -> pd.DataFrame:
    """One row per group and layer: the curve's centre and its band.

    Returns
    -------
    DataFrame ``group, layer, n_tokens, centre, low, high``; groups in the table's order (the
    analysis writes them in category order: short to long, rare to frequent), layers ascending.
    """
    rows = groups[(groups["grouping"] == grouping) & (groups["value"] == value)]
    order = list(dict.fromkeys(rows["group"].astype(str)))
    out = pd.concat([rows[["group", "layer", "n_tokens"]].astype({"group": str, "layer": int}), _band(rows, band)],
                    axis=1)
    out["_order"] = out["group"].map({g: i for i, g in enumerate(order)})
    return out.sort_values(["_order", "layer"]).drop(columns="_order").reset_index(drop=True)


def intra_window_curve(intra: pd.DataFrame, baseline: pd.DataFrame | None, *, value: str,
                       band: str) -> pd.DataFrame:
    """Intra-window similarity per layer, corrected by the layer's baseline when ``value`` is corrected.

    Returns
    -------
    DataFrame ``layer, n_windows, centre, low, high`` (NaN where a corrected value lacks its baseline).
    """
    out = pd.concat([intra[["layer", "n_windows"]].astype({"layer": int}), _band(intra, band)], axis=1)
    if value == "corrected":
        shift = out["layer"].map(baseline.set_index("layer")["baseline"]) if baseline is not None else np.nan
        for column in ("centre", "low", "high"):
            out[column] = out[column] - shift
    return out.sort_values("layer").reset_index(drop=True)


def baseline_curve(baseline: pd.DataFrame, *, value: str) -> pd.DataFrame:
    """The anisotropy baseline per layer as drawn: itself for raw values, 0 for corrected ones."""
    out = baseline[["layer", "baseline"]].astype({"layer": int}).sort_values("layer").reset_index(drop=True)
    if value == "corrected":
        out["baseline"] = 0.0
    return out


def _rgba(colour: str, alpha: float) -> str:
    """``"rgb(r, g, b)"`` or ``"#rrggbb"`` as ``"rgba(r, g, b, alpha)"``."""
    if colour.startswith("#"):
        r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    else:
        r, g, b = (int(float(v)) for v in colour[colour.index("(") + 1: colour.index(")")].split(",")[:3])
    return f"rgba({r}, {g}, {b}, {alpha})"


def group_colours(groups: Sequence[str]) -> dict[str, str]:
    """Colours per group: fixed for repeat / non-repeat, an ordered scale otherwise (groups are ordered)."""
    if set(groups) <= set(REPEAT_COLOURS):
        return {g: REPEAT_COLOURS[g] for g in groups}
    if len(groups) == 1:
        return {groups[0]: "#1f77b4"}
    scale = sample_colorscale("Plasma", list(np.linspace(0.0, 0.85, len(groups))))
    return dict(zip(groups, scale))


def _add_band(fig: go.Figure, x, low, high, *, colour: str, group: str, row=None, col=None) -> None:
    """A filled band between ``low`` and ``high`` (two traces, hidden from the legend, toggled with ``group``)."""
    where = {"row": row, "col": col} if row is not None else {}
    fig.add_trace(go.Scatter(x=x, y=high, mode="lines", line={"width": 0}, hoverinfo="skip", showlegend=False,
                             legendgroup=group), **where)
    fig.add_trace(go.Scatter(x=x, y=low, mode="lines", line={"width": 0}, fill="tonexty",
                             fillcolor=_rgba(colour, BAND_ALPHA), hoverinfo="skip", showlegend=False,
                             legendgroup=group), **where)


def group_curves_figure(curves: pd.DataFrame, *, value: str, band: str, grouping_label: str,
                        baseline: pd.DataFrame | None = None, intra: pd.DataFrame | None = None,
                        title: str = "") -> go.Figure:
    """Line chart: one line per group with its band, the baseline dashed, intra-window similarity dotted.

    ``curves`` comes from :func:`group_curves`, ``baseline`` from :func:`baseline_curve`, ``intra``
    from :func:`intra_window_curve`. Clicking a legend entry hides the line with its band.
    """
    fig = go.Figure()
    order = list(dict.fromkeys(curves["group"]))
    colours = group_colours(order)
    for group in order:
        part = curves[curves["group"] == group]
        _add_band(fig, part["layer"], part["low"], part["high"], colour=colours[group], group=group)
        fig.add_trace(go.Scatter(
            x=part["layer"], y=part["centre"], mode="lines+markers", name=group, legendgroup=group,
            line={"color": colours[group], "width": 2.5}, customdata=part[["n_tokens", "low", "high"]].to_numpy(),
            hovertemplate=f"{grouping_label}: {group}<br>layer %{{x}}<br>{BANDS[band][0]} %{{y:.3f}}"
                          "<br>band %{customdata[1]:.3f}–%{customdata[2]:.3f}<br>%{customdata[0]} tokens<extra></extra>",
        ))
    if intra is not None and not intra.empty:
        _add_band(fig, intra["layer"], intra["low"], intra["high"], colour=INTRA_COLOUR, group="intra")
        fig.add_trace(go.Scatter(
            x=intra["layer"], y=intra["centre"], mode="lines+markers", name="intra-window (different tokens, same window)",
            legendgroup="intra", line={"color": INTRA_COLOUR, "dash": "dot", "width": 2},
            customdata=intra[["n_windows"]].to_numpy(),
            hovertemplate="intra-window similarity<br>layer %{x}<br>%{y:.3f}<br>%{customdata[0]:,} windows<extra></extra>",
        ))
    if baseline is not None and not baseline.empty:
        name = "anisotropy baseline" if value != "corrected" else "anisotropy baseline (0 after correction)"
        fig.add_trace(go.Scatter(
            x=baseline["layer"], y=baseline["baseline"], mode="lines", name=name,
            line={"color": BASELINE_COLOUR, "dash": "dash", "width": 2},
            hovertemplate="baseline<br>layer %{x}<br>%{y:.3f}<extra></extra>",
        ))
    fig.update_layout(
        title=title, height=CURVE_HEIGHT, hovermode="closest", template="plotly_white",
        legend={"title": {"text": grouping_label}}, margin={"t": 60, "l": 60, "r": 20, "b": 50},
        xaxis={"title": LAYER_AXIS, "dtick": 1}, yaxis={"title": VALUES[value]},
    )
    return fig


def curves_export(curves: pd.DataFrame, *, baseline: pd.DataFrame | None = None,
                  intra: pd.DataFrame | None = None) -> pd.DataFrame:
    """The data behind :func:`group_curves_figure` as one long table (the CSV download).

    Returns
    -------
    DataFrame ``series`` (``group``, ``anisotropy baseline`` or ``intra-window``), ``group``, ``layer``,
    ``n`` (tokens or windows), ``centre``, ``low``, ``high``.
    """
    parts = [curves.rename(columns={"n_tokens": "n"}).assign(series="group")]
    if intra is not None and not intra.empty:
        parts.append(intra.rename(columns={"n_windows": "n"}).assign(series="intra-window", group=""))
    if baseline is not None and not baseline.empty:
        parts.append(pd.DataFrame({"series": "anisotropy baseline", "group": "", "layer": baseline["layer"],
                                   "centre": baseline["baseline"]}))
    columns = ["series", "group", "layer", "n", "centre", "low", "high"]
    return pd.concat([part.reindex(columns=columns) for part in parts], ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Tokens x layers heatmap
# ---------------------------------------------------------------------------------------------

def layer_column(layer: int) -> str:
    return f"layer_{layer}"


def heatmap_table(table: pd.DataFrame, tokens: pd.DataFrame, *, value: str, sort: str,
                  repeat_column: str | None, first: int, last: int) -> tuple[pd.DataFrame, list[int]]:
    """Every token with a self-similarity value as one row, its value per layer as columns, sorted.

    Parameters
    ----------
    table
        ``self_similarity.parquet``.
    tokens
        ``tokens.parquet`` (``token_id, token, length, frequency`` and ``repeat_column``).
    value
        ``"self_similarity"`` or ``"corrected"``.
    sort
        A key of ``SORTS``: descending except ``token_id``; missing values last, ties by token id.
    repeat_column
        The tokens column holding the share of occurrences in repeats (None when the run has none).
    first, last
        Layers the ``drop`` sort compares (``first - last``); ``last_layer`` sorts on ``last``.

    Returns
    -------
    ``(frame, layers)``: ``frame`` has ``token_id, token, length, frequency, repeat_share,
    n_samples`` and one ``layer_<i>`` column per layer; ``layers`` lists the layers ascending.
    """
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {list(SORTS)}, got {sort!r}")
    wide = table.pivot(index="token_id", columns="layer", values=value).sort_index(axis=1)
    layers = [int(layer) for layer in wide.columns]
    wide.columns = [layer_column(layer) for layer in layers]
    n_samples = table.groupby("token_id")["n_samples"].max()
    info = tokens.set_index("token_id")
    frame = pd.DataFrame({
        "token_id": wide.index.to_numpy(),
        "token": info["token"].reindex(wide.index).astype(str).to_numpy(),
        "length": info["length"].reindex(wide.index).to_numpy(),
        "frequency": info["frequency"].reindex(wide.index).to_numpy(),
        "repeat_share": (info[repeat_column].reindex(wide.index).to_numpy(dtype=float)
                         if repeat_column and repeat_column in info.columns else np.full(len(wide), np.nan)),
        "n_samples": n_samples.reindex(wide.index).to_numpy(),
    })
    frame = pd.concat([frame, wide.reset_index(drop=True)], axis=1)
    if sort == "token_id":
        key = frame["token_id"]
        ascending = True
    else:
        ascending = False
        if sort == "last_layer":
            key = frame[layer_column(last)]
        elif sort == "drop":
            key = frame[layer_column(first)] - frame[layer_column(last)]
        else:
            key = frame[sort]
    order = np.lexsort((frame["token_id"].to_numpy(), (key if ascending else -key).to_numpy(dtype=float)))
    # lexsort puts NaN keys last (NaN sorts after every number), so missing values end the list.
    return frame.iloc[order].reset_index(drop=True), layers


def heatmap_height(n_rows: int) -> int:
    """Figure height in px: labelled rows while few, a fixed overview height beyond."""
    if n_rows <= HEATMAP_MAX_LABELLED_ROWS:
        return max(300, 140 + HEATMAP_ROW_PX * n_rows)
    return HEATMAP_MAX_HEIGHT


def heatmap_figure(frame: pd.DataFrame, layers: Sequence[int], *, value: str, title: str = "") -> go.Figure:
    """Tokens (rows, in ``frame`` order, first at the top) x layers (columns) coloured by ``value``.

    Corrected values use a diverging scale centred on 0 (the baseline); raw ones Viridis.
    """
    columns = [layer_column(layer) for layer in layers]
    z = frame[columns].to_numpy(dtype=float)
    rows = np.arange(len(frame))
    info = np.stack([frame["token"].to_numpy(dtype=object), frame["frequency"].to_numpy(),
                     frame["repeat_share"].to_numpy(), frame["n_samples"].to_numpy()], axis=-1)
    custom = np.repeat(info[:, None, :], len(layers), axis=1)
    colour = ({"colorscale": "RdBu_r", "zmid": 0.0} if value == "corrected" else {"colorscale": "Viridis"})
    fig = go.Figure(go.Heatmap(
        z=z, x=list(layers), y=rows, customdata=custom, colorbar={"title": {"text": VALUES[value]}}, **colour,
        hovertemplate="%{customdata[0]}<br>layer %{x}<br>value %{z:.3f}<br>frequency %{customdata[1]:,}"
                      "<br>repeat share %{customdata[2]:.2f}<br>%{customdata[3]} samples<extra></extra>",
    ))
    labelled = len(frame) <= HEATMAP_MAX_LABELLED_ROWS
    fig.update_layout(
        title=title, height=heatmap_height(len(frame)), template="plotly_white",
        margin={"t": 60, "l": 120 if labelled else 40, "r": 20, "b": 50},
        xaxis={"title": LAYER_AXIS, "dtick": 1},
        yaxis={"autorange": "reversed", "title": "token" if labelled else f"{len(frame):,} tokens (hover for names)",
               "tickvals": rows if labelled else [], "ticktext": frame["token"].tolist() if labelled else [],
               "showticklabels": labelled},
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Token drill-down
# ---------------------------------------------------------------------------------------------

def token_label(token: str, token_id: int, frequency: float) -> str:
    """The select box's text for a token: ``"ACGT · id 12 · 1,234×"``."""
    freq = f"{int(frequency):,}×" if pd.notna(frequency) else "unseen"
    return f"{token} · id {token_id} · {freq}"


def token_curve(table: pd.DataFrame, token_id: int) -> pd.DataFrame:
    """One token's ``layer, n_samples, self_similarity, baseline, corrected`` across layers (empty if absent)."""
    rows = table[table["token_id"] == token_id]
    return rows[["layer", "n_samples", "self_similarity", "baseline", "corrected"]].sort_values("layer").reset_index(
        drop=True)


def token_group(memberships: pd.DataFrame, token_id: int, grouping: str) -> str | None:
    """The token's group label in ``grouping`` (from ``analysis.self_similarity.token_groups``), or None."""
    if grouping not in memberships.columns:
        return None
    found = memberships.loc[memberships["token_id"] == token_id, grouping]
    if found.empty or pd.isna(found.iloc[0]):
        return None
    return str(found.iloc[0])


def token_curve_figure(curve: pd.DataFrame, *, token: str, group_label: str | None,
                       group_raw: pd.DataFrame | None = None, group_corrected: pd.DataFrame | None = None,
                       band: str = "iqr", marked_layer: int | None = None, title: str = "") -> go.Figure:
    """Two panels (raw, corrected): the token's curve against its group's curve with band.

    ``group_raw`` / ``group_corrected`` are one group's rows of :func:`group_curves` (or None). The raw
    panel draws the anisotropy baseline dashed; ``marked_layer`` gets a vertical line.
    """
    fig = make_subplots(rows=1, cols=2, shared_xaxes=True, horizontal_spacing=0.1,
                        subplot_titles=(VALUES["self_similarity"], VALUES["corrected"]))
    group_name = f"group {group_label} ({BANDS[band][3]})" if group_label else "group"
    for col, column, group in ((1, "self_similarity", group_raw), (2, "corrected", group_corrected)):
        first = col == 1
        if group is not None and not group.empty:
            _add_band(fig, group["layer"], group["low"], group["high"], colour="#1f77b4", group="group", row=1, col=col)
            fig.add_trace(go.Scatter(
                x=group["layer"], y=group["centre"], mode="lines", name=group_name, legendgroup="group",
                showlegend=first, line={"color": "#1f77b4", "dash": "dash", "width": 2},
                hovertemplate=f"{group_name}<br>layer %{{x}}<br>%{{y:.3f}}<extra></extra>",
            ), row=1, col=col)
        if first and "baseline" in curve:
            fig.add_trace(go.Scatter(
                x=curve["layer"], y=curve["baseline"], mode="lines", name="anisotropy baseline",
                line={"color": BASELINE_COLOUR, "dash": "dot", "width": 2},
                hovertemplate="baseline<br>layer %{x}<br>%{y:.3f}<extra></extra>",
            ), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=curve["layer"], y=curve[column], mode="lines+markers", name=token, legendgroup="token",
            showlegend=first, line={"color": TOKEN_COLOUR, "width": 3},
            hovertemplate=f"{token}<br>layer %{{x}}<br>%{{y:.3f}}<extra></extra>",
        ), row=1, col=col)
        fig.update_xaxes(title_text=LAYER_AXIS, dtick=1, row=1, col=col)
    if marked_layer is not None:
        for col in (1, 2):
            fig.add_vline(x=marked_layer, line={"color": "#999999", "width": 1, "dash": "dot"}, row=1, col=col)
    fig.update_layout(title=title, height=CURVE_HEIGHT, template="plotly_white", hovermode="closest",
                      margin={"t": 80, "l": 60, "r": 20, "b": 50},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def nearest_tokens(means: np.ndarray, token_id: int, *, candidates: Sequence[int], k: int) -> pd.DataFrame:
    """The ``k`` candidate tokens whose mean embedding is closest by cosine to ``token_id``'s.

    Parameters
    ----------
    means
        ``[vocab, hidden]`` mean token embeddings of one layer.
    candidates
        Token ids allowed as neighbours (the token itself and zero vectors are left out).

    Returns
    -------
    DataFrame ``rank`` (1 = nearest), ``token_id``, ``cosine``; empty when the token's vector is zero.
    """
    means = np.asarray(means, dtype=np.float64)
    ids = np.asarray([c for c in candidates if c != token_id], dtype=np.int64)
    query = means[token_id]
    query_norm = np.linalg.norm(query)
    if query_norm == 0 or ids.size == 0:
        return pd.DataFrame({"rank": pd.Series(dtype=int), "token_id": pd.Series(dtype=int),
                             "cosine": pd.Series(dtype=float)})
    vectors = means[ids]
    norms = np.linalg.norm(vectors, axis=1)
    keep = norms > 0
    ids, vectors, norms = ids[keep], vectors[keep], norms[keep]
    cosine = vectors @ query / (norms * query_norm)
    order = np.lexsort((ids, -cosine))[:k]
    return pd.DataFrame({"rank": np.arange(1, len(order) + 1), "token_id": ids[order], "cosine": cosine[order]})


def nearest_table(nearest: pd.DataFrame, tokens: pd.DataFrame, table: pd.DataFrame, *, layer: int,
                  token_id: int, repeat_column: str | None) -> pd.DataFrame:
    """The neighbours with their properties and self-similarity at ``layer``.

    Returns
    -------
    DataFrame ``rank, token, cosine, reverse_complement`` (True for the query token's reverse
    complement), ``length, frequency, repeat_share, self_similarity, corrected, token_id``.
    """
    info = tokens.set_index("token_id")
    at_layer = table[table["layer"] == layer].set_index("token_id")
    ids = nearest["token_id"]
    rc = info["reverse_complement_id"].get(token_id) if "reverse_complement_id" in info.columns else None
    return pd.DataFrame({
        "rank": nearest["rank"].to_numpy(),
        "token": info["token"].reindex(ids).astype(str).to_numpy(),
        "cosine": nearest["cosine"].to_numpy(),
        "reverse_complement": (ids == rc).to_numpy() if rc is not None and pd.notna(rc) else np.zeros(len(ids), bool),
        "length": info["length"].reindex(ids).to_numpy(),
        "frequency": info["frequency"].reindex(ids).to_numpy(),
        "repeat_share": (info[repeat_column].reindex(ids).to_numpy(dtype=float)
                         if repeat_column and repeat_column in info.columns else np.full(len(ids), np.nan)),
        "self_similarity": at_layer["self_similarity"].reindex(ids).to_numpy(),
        "corrected": at_layer["corrected"].reindex(ids).to_numpy(),
        "token_id": ids.to_numpy(),
    })


def _join(ids: Sequence[int], starts: Sequence[int], strings: Sequence[str]) -> str:
    """Token strings separated by spaces, with ``GAP_MARK`` where the next token does not start at the end."""
    parts: list[str] = []
    for i, (token_id, start) in enumerate(zip(ids, starts)):
        if i and int(starts[i - 1]) + len(strings[ids[i - 1]]) != int(start):
            parts.append(GAP_MARK)
        parts.append(strings[token_id])
    return " ".join(parts)


def context_table(contexts: pd.DataFrame, strings: Sequence[str]) -> pd.DataFrame:
    """Readable genomic contexts: the tokens left and right of each sampled occurrence.

    Parameters
    ----------
    contexts
        From ``loaders.load_occurrence_contexts``: ``slot, chromosome, start, ids, starts, centre``
        (``ids`` / ``starts`` the token ids and 0-based starts around the occurrence, ``centre`` its
        index in them, -1 when the occurrence was not found in the tokenized genome).
    strings
        Token string per id.

    Returns
    -------
    DataFrame ``chromosome, start, end`` (0-based, end exclusive), ``left``, ``token``, ``right``
    (tokens joined by spaces; ``⋯`` marks a jump in the genome, e.g. an N run). Rows not found keep
    their position with empty context.
    """
    rows = []
    for item in contexts.itertuples(index=False):
        ids, starts, centre = list(item.ids), list(item.starts), int(item.centre)
        if centre < 0:
            rows.append({"chromosome": item.chromosome, "start": int(item.start), "end": None,
                         "left": "", "token": "(not found in the tokenized genome)", "right": ""})
            continue
        token = strings[ids[centre]]
        left_gap = centre > 0 and int(starts[centre - 1]) + len(strings[ids[centre - 1]]) != int(starts[centre])
        right_gap = (centre + 1 < len(ids)
                     and int(starts[centre]) + len(token) != int(starts[centre + 1]))
        left = _join(ids[:centre], starts[:centre], strings) + (f" {GAP_MARK}" if left_gap else "")
        right = (f"{GAP_MARK} " if right_gap else "") + _join(ids[centre + 1:], starts[centre + 1:], strings)
        rows.append({"chromosome": item.chromosome, "start": int(item.start), "end": int(item.start) + len(token),
                     "left": left.strip(), "token": token, "right": right.strip()})
    return pd.DataFrame(rows, columns=["chromosome", "start", "end", "left", "token", "right"])
