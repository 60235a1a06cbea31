"""Pure figure builders and table logic for the dashboard (no Streamlit here, so all of it is unit-tested).

Views call these with tables the loaders return; nothing here reads files or computes embeddings.

Sections: token map (points, colour, motif highlight, figure, selection -> rows),
PC-property table, and the text and tables of the run overview.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# ---------------------------------------------------------------------------------------------
# Token map
# ---------------------------------------------------------------------------------------------

# Colour options of the token map: tokens.parquet column -> label shown in the select box.
COLOUR_BY: dict[str, str] = {
    "frequency": "Frequency (log scale)",
    "length": "Length (nt)",
    "gc": "GC content",
    "ag": "AG content (strand signal)",
    "ac": "AC content",
}
# Fraction columns share one fixed range so colours compare across layers and runs.
_FRACTION_COLUMNS = ("gc", "ag", "ac")

# Token properties shown on hover and in the selection table, in this order.
HOVER_COLUMNS = ("token_id", "token", "length", "frequency", "gc", "ag")
SELECTION_COLUMNS = ("token_id", "token", "length", "frequency", "gc", "ag", "ac", "cpg", "x", "y")

MARKER_SIZE_RANGE = (4.0, 12.0)  # px, smallest and largest point; area grows with log frequency
DIMMED_COLOUR = "rgba(150, 150, 150, 0.25)"  # tokens without the searched motif
FIGURE_HEIGHT = 650  # px: tall enough to lasso comfortably on a laptop screen

Renderer = Literal["webgl", "svg"]


def token_points(
    tokens: pd.DataFrame, projections: pd.DataFrame, *, layer: int, method: str
) -> pd.DataFrame:
    """Return one row per projected token at ``layer`` / ``method``, with its properties.

    Parameters
    ----------
    tokens
        ``tokens.parquet`` (one row per vocabulary token).
    projections
        ``token_projections.parquet`` (``layer``, ``method``, ``token_id``, ``x``, ``y``).
    layer, method
        Which map: 0 = input embeddings; ``"umap"`` or ``"pca"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``token_id``, ``x``, ``y`` and every column of ``tokens``, sorted by ``token_id``,
        one row per projected token (all of them: nothing is sampled).

    Raises
    ------
    ValueError
        When the projections hold no row for that layer and method (the message lists what exists).
    """
    at = projections[(projections["layer"] == layer) & (projections["method"] == method)]
    if at.empty:
        present = sorted({(int(l), str(m)) for l, m in zip(projections["layer"], projections["method"])})
        raise ValueError(
            f"No {method!r} projection at layer {layer}; the run has (layer, method) {present}. "
            "Rebuild the run's projections with `grover demo --out <run>`."
        )
    points = at[["token_id", "x", "y"]].merge(tokens, on="token_id", how="left", validate="one_to_one")
    return points.sort_values("token_id", kind="stable").reset_index(drop=True)


def normalise_motif(motif: str | None) -> str:
    """Return the motif as searched: surrounding spaces dropped, upper case (tokens are upper case)."""
    return (motif or "").strip().upper()


def motif_mask(tokens: pd.Series, motif: str | None) -> np.ndarray:
    """Return a boolean array: True where the token contains ``motif`` (case-insensitive).

    An empty motif matches nothing (no highlight).
    """
    motif = normalise_motif(motif)
    if not motif:
        return np.zeros(len(tokens), dtype=bool)
    return tokens.astype(str).str.upper().str.contains(motif, regex=False).to_numpy(dtype=bool)


@dataclass(frozen=True)
class ColourScale:
    """How one token property becomes point colours.

    ``values`` are what plotly maps through ``colorscale`` between ``cmin`` and ``cmax``;
    ``tickvals``/``ticktext`` (when set) label the colour bar in the property's own units.
    """

    column: str
    title: str
    values: np.ndarray
    colorscale: str
    cmin: float
    cmax: float
    log: bool = False
    tickvals: tuple[float, ...] | None = None
    ticktext: tuple[str, ...] | None = None


def colour_scale(points: pd.DataFrame, column: str) -> ColourScale:
    """Return the colour mapping of ``column`` (a key of ``COLOUR_BY``) for these points.

    Frequency is drawn on a log scale (``log10(frequency + 1)``, so unseen tokens stay finite) over
    the range present, with the colour bar labelled in occurrences; GC/AG/AC use a diverging scale fixed to [0, 1] with 0.5
    in the middle; length uses a sequential scale over the lengths present.

    Raises
    ------
    ValueError
        For a column that is not a colour option (the message lists them).
    """
    if column not in COLOUR_BY:
        raise ValueError(f"Cannot colour by {column!r}; choose one of {sorted(COLOUR_BY)}.")
    raw = points[column].to_numpy(dtype=float)
    if column == "frequency":
        values = np.log10(np.clip(raw, 0, None) + 1)
        low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
        high = max(high, low + 0.1)  # one frequency for every token: keep a usable range
        # Colour-bar ticks in occurrences, placed at log10(count + 1): 0, 1, 10, 100, ... in range,
        # or 1-2-5 steps when the range spans fewer than three decades.
        def in_range(counts):
            return [(math.log10(c + 1), format_count(c)) for c in counts if low - 1e-9 <= math.log10(c + 1) <= high + 1e-9]

        decades = range(math.ceil(high) + 1)
        ticks = in_range([0] + [10**k for k in decades])
        if len(ticks) < 3:
            ticks = in_range([0] + [m * 10**k for k in decades for m in (1, 2, 5)])
        return ColourScale(
            column, "frequency", values, "Viridis", low, high, log=True,
            tickvals=tuple(v for v, _ in ticks), ticktext=tuple(t for _, t in ticks),
        )
    if column in _FRACTION_COLUMNS:
        return ColourScale(column, column.upper(), raw, "RdBu_r", 0.0, 1.0)
    low, high = (float(raw.min()), float(raw.max())) if len(raw) else (0.0, 1.0)
    return ColourScale(column, "length (nt)", raw, "Plasma", low, high if high > low else low + 1)


def marker_sizes(frequency: pd.Series | np.ndarray, size_range: tuple[float, float] = MARKER_SIZE_RANGE) -> np.ndarray:
    """Return one marker size per token, growing linearly with ``log10(frequency + 1)``."""
    logf = np.log10(np.clip(np.asarray(frequency, dtype=float), 0, None) + 1)
    small, large = size_range
    if len(logf) == 0 or logf.max() == logf.min():
        return np.full(len(logf), (small + large) / 2)
    return small + (large - small) * (logf - logf.min()) / (logf.max() - logf.min())


def _hover_data(points: pd.DataFrame) -> np.ndarray:
    return points[list(HOVER_COLUMNS)].to_numpy(dtype=object)


_HOVER_TEMPLATE = (
    "<b>%{customdata[1]}</b><br>"
    "id %{customdata[0]} · length %{customdata[2]} nt<br>"
    "frequency %{customdata[3]:,}<br>"
    "GC %{customdata[4]:.2f} · AG %{customdata[5]:.2f}"
    "<extra></extra>"
)


def token_map_figure(
    points: pd.DataFrame,
    *,
    colour_by: str = "frequency",
    motif: str | None = None,
    method: str = "umap",
    title: str | None = None,
    renderer: Renderer = "webgl",
) -> go.Figure:
    """Return the token embedding map: one marker per row of ``points`` (all of them).

    Parameters
    ----------
    points
        ``token_points(...)`` output.
    colour_by
        A key of ``COLOUR_BY``.
    motif
        When not empty, tokens containing it are drawn in colour on top, the others dimmed grey
        (two traces: ``"other tokens"`` then ``"contains <motif>"``); otherwise one trace.
    method
        Names the axes (``"umap"`` -> UMAP 1/2, ``"pca"`` -> PC1/PC2).
    renderer
        ``"webgl"`` (``Scattergl``: fast, exported images are raster) or ``"svg"`` (``Scatter``:
        exported SVG is vector, slower with many thousands of points).

    Returns
    -------
    plotly.graph_objects.Figure
        Every trace carries ``customdata`` rows of ``HOVER_COLUMNS`` (token id first), which is how
        ``selected_token_ids`` maps a selection back to tokens.
    """
    trace_type = go.Scattergl if renderer == "webgl" else go.Scatter
    scale = colour_scale(points, colour_by)
    sizes = marker_sizes(points["frequency"])
    customdata = _hover_data(points)
    colorbar = dict(title=dict(text=scale.title), thickness=14)
    if scale.tickvals is not None:
        colorbar.update(tickvals=list(scale.tickvals), ticktext=list(scale.ticktext))
    coloured_marker = dict(
        color=scale.values, colorscale=scale.colorscale, cmin=scale.cmin, cmax=scale.cmax,
        colorbar=colorbar, showscale=True, opacity=0.85, line=dict(width=0),
    )

    motif = normalise_motif(motif)
    mask = motif_mask(points["token"], motif)
    traces = []
    if not motif:
        traces.append(trace_type(
            x=points["x"], y=points["y"], mode="markers", name="tokens", customdata=customdata,
            hovertemplate=_HOVER_TEMPLATE, marker=dict(size=sizes, **coloured_marker),
        ))
    else:
        other = ~mask
        traces.append(trace_type(
            x=points["x"][other], y=points["y"][other], mode="markers", name="other tokens",
            customdata=customdata[other], hovertemplate=_HOVER_TEMPLATE,
            marker=dict(size=sizes[other], color=DIMMED_COLOUR, line=dict(width=0)),
        ))
        highlighted = dict(coloured_marker, color=scale.values[mask], line=dict(width=1, color="black"))
        traces.append(trace_type(
            x=points["x"][mask], y=points["y"][mask], mode="markers", name=f"contains {motif}",
            customdata=customdata[mask], hovertemplate=_HOVER_TEMPLATE,
            marker=dict(size=sizes[mask], **highlighted),
        ))

    axis_names = ("PC1", "PC2") if method == "pca" else (f"{method.upper()} 1", f"{method.upper()} 2")
    fig = go.Figure(traces)
    fig.update_layout(
        title=dict(text=title) if title else None,
        height=FIGURE_HEIGHT,
        margin=dict(l=10, r=10, t=50 if title else 10, b=10),
        showlegend=bool(motif),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
        dragmode="select",  # dragging box-selects; lasso, zoom and pan are in the modebar
        hovermode="closest",
        xaxis=dict(title=dict(text=axis_names[0]), showticklabels=method == "pca", zeroline=False),
        yaxis=dict(title=dict(text=axis_names[1]), showticklabels=method == "pca", zeroline=False),
    )
    return fig


def n_points(fig: go.Figure) -> int:
    """Return the number of markers a figure draws, summed over its traces."""
    return sum(len(t.x) if t.x is not None else 0 for t in fig.data)


def export_config(*, image_format: Literal["png", "svg"], filename: str, scale: int = 2) -> dict[str, Any]:
    """Return the plotly ``config`` whose modebar camera button saves the figure as ``image_format``.

    ``scale`` multiplies the PNG resolution (2: sharp on slides). Streamlit adds the box and lasso
    buttons itself when the chart takes selections.
    """
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": image_format, "filename": filename, "scale": scale},
    }


def selected_token_ids(selection: Mapping[str, Any] | None) -> list[int]:
    """Return the token ids of a plotly selection, in selection order, without duplicates.

    ``selection`` is Streamlit's ``event.selection`` (or a plain dict) with ``points``: each point's
    ``customdata`` starts with the token id (see ``token_map_figure``). Points without customdata
    (not from the token map) are ignored.
    """
    if not selection:
        return []
    ids: list[int] = []
    seen: set[int] = set()
    for point in selection.get("points") or ():
        data = point.get("customdata")
        if data is None or (isinstance(data, Sequence) and not isinstance(data, str) and len(data) == 0):
            continue
        first = data[0] if isinstance(data, Sequence) and not isinstance(data, str) else data
        try:
            token_id = int(first)
        except (TypeError, ValueError):
            continue
        if token_id not in seen:
            seen.add(token_id)
            ids.append(token_id)
    return ids


def selected_tokens(points: pd.DataFrame, token_ids: Sequence[int]) -> pd.DataFrame:
    """Return the rows of ``points`` for ``token_ids`` (in that order), columns ``SELECTION_COLUMNS``.

    Ids not in ``points`` are dropped; the input is not modified.
    """
    columns = [c for c in SELECTION_COLUMNS if c in points.columns]
    by_id = points.set_index("token_id", drop=False)
    keep = [i for i in token_ids if i in by_id.index]
    return by_id.loc[keep, columns].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# PC-property correlations
# ---------------------------------------------------------------------------------------------


def pc_property_table(pc_correlations: pd.DataFrame, layer: int) -> pd.DataFrame:
    """Return the Spearman table of one layer: one row per component, one column per property.

    Returns
    -------
    pandas.DataFrame
        Index ``component`` (PC1, PC2, ... in numeric order); columns ``explained variance`` then
        each property (frequency, length, gc, ag, ac as present). Empty when the layer is absent.
    """
    at = pc_correlations[pc_correlations["layer"] == layer]
    if at.empty:
        return pd.DataFrame()
    table = at.pivot_table(index="component", columns="property", values="spearman", aggfunc="first")
    order = sorted(table.index, key=lambda c: (len(c), c))  # PC2 before PC10
    preferred = [p for p in ("frequency", "length", "gc", "ag", "ac") if p in table.columns]
    table = table.loc[order, preferred + [c for c in table.columns if c not in preferred]]
    variance = at.groupby("component")["explained_variance_ratio"].first()
    table.insert(0, "explained variance", variance.reindex(order))
    table.columns.name = None
    return table


# ---------------------------------------------------------------------------------------------
# Run overview: numbers as text, provenance tables
# ---------------------------------------------------------------------------------------------


def format_count(n: float | int | None) -> str:
    """Return a count for people: 309, 12.3k, 2.0M, 1.5G (``"—"`` when missing)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "—"
    n = float(n)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            value = n / size
            return f"{value:.0f}{suffix}" if value == int(value) else f"{value:.1f}{suffix}"
    return f"{n:.0f}" if n == int(n) else f"{n:.3g}"


def format_percent(fraction: float | None, digits: int = 1) -> str:
    """Return a fraction as a percentage, ``0.1234`` -> ``"12.3 %"`` (``"—"`` when missing)."""
    if fraction is None:
        return "—"
    return f"{100 * float(fraction):.{digits}f} %"


def format_seconds(seconds: float | None) -> str:
    """Return a duration: ``"45 s"``, ``"3 min 20 s"``, ``"2 h 05 min"`` (``"—"`` when missing)."""
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def accuracy_delta(evaluation: Mapping[str, Any]) -> str | None:
    """Return the model's masked top-1 accuracy minus the frequency baseline, in percentage points."""
    model = evaluation.get("masked_top1_accuracy")
    baseline = evaluation.get("frequency_baseline_top1_accuracy")
    if model is None or baseline is None:
        return None
    return f"{100 * (float(model) - float(baseline)):+.1f} pts vs frequency baseline"


def markdown_list(items: Mapping[str, str]) -> str:
    """Return a Markdown list of ``**label**: text`` lines, leaving out empty texts."""
    return "\n".join(f"- **{label}**: {text}" for label, text in items.items() if text)


def _compact_json(value: Any) -> str:
    if value in (None, {}, []):
        return ""
    return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)


def artifact_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """Return the manifest's artifacts: columns ``artifact``, ``path``, ``produced_by``, ``params``, ``description``.

    ``params`` is compact JSON text so the table shows it in one cell. Empty frame with those
    columns when the manifest lists none.
    """
    columns = ["artifact", "path", "produced_by", "params", "description"]
    rows = [
        {
            "artifact": name,
            "path": (entry or {}).get("path", ""),
            "produced_by": (entry or {}).get("produced_by", ""),
            "params": _compact_json((entry or {}).get("params")),
            "description": (entry or {}).get("description", ""),
        }
        for name, entry in (manifest.get("artifacts") or {}).items()
    ]
    return pd.DataFrame(rows, columns=columns)


def artifact_provenance(manifest: Mapping[str, Any], path: str) -> str | None:
    """Return how the artifact at ``path`` was made, ``"func(a=1, b=2)"``, from the manifest; None if unlisted."""
    for entry in (manifest.get("artifacts") or {}).values():
        if (entry or {}).get("path") == path:
            params = entry.get("params") or {}
            args = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
            return f"{entry.get('produced_by') or '?'}({args})"
    return None


def stage_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """Return the pipeline stages: columns ``stage``, ``time``, ``config`` (compact JSON)."""
    rows = [
        {
            "stage": name,
            "time": format_seconds((entry or {}).get("seconds")),
            "config": _compact_json((entry or {}).get("config")),
        }
        for name, entry in (manifest.get("stages") or {}).items()
    ]
    return pd.DataFrame(rows, columns=["stage", "time", "config"])


def chromosome_table(genome: Mapping[str, Any]) -> pd.DataFrame:
    """Return ``genome["chromosomes"]`` as columns ``chromosome``, ``length (nt)``."""
    chromosomes = genome.get("chromosomes") or {}
    return pd.DataFrame(
        {"chromosome": list(chromosomes), "length (nt)": [int(v) for v in chromosomes.values()]}
    )
