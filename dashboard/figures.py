"""Pure figure builders and table logic of the Runs page and the token map.

No Streamlit here, so all of it is unit-tested.

Views call these with tables the loaders return; nothing here reads files or computes embeddings
beyond small numpy on the token-mean matrix (nearest tokens of a selection).

Sections: token map (points, colour options, motif highlight, figure), the map's selection
(chart -> ids, the link, nearest tokens by cosine, CSV/FASTA), PC-property table, and the text
and tables of the Runs page (runs found, analyses present, provenance).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from analysis import run

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
# Cluster colours: option "cluster_<method>" reads token_clusters.parquet rows of that method.
CLUSTER_COLOUR_PREFIX = "cluster_"
CLUSTER_METHODS: dict[str, str] = {"kmeans": "k-means", "hierarchical": "hierarchical"}
# Annotation shares: tokens.parquet columns "<annotation>.share_<label>" (see grover_lens.analyze).
SHARE_MARKER = ".share_"
SHARE_COLOURSCALE = "Cividis"
SHARE_SCALE_QUANTILE = 0.99  # the share scale tops out here: a few rare tokens at share 1 would flatten the rest

# Token properties carried by every point (customdata, numbers only so plotly sends them as binary
# arrays), in this order; the token text travels in ``text``. The colour value, when it is not one
# of these, is appended as the last column.
HOVER_COLUMNS = ("token_id", "length", "frequency", "gc", "ag", "ac", "cpg")
SELECTION_COLUMNS = ("token_id", "token", "length", "frequency", "gc", "ag", "ac", "cpg", "x", "y")

MARKER_SIZE_RANGE = (4.0, 12.0)  # px, smallest and largest point; area grows with log frequency
DIMMED_COLOUR = "rgba(150, 150, 150, 0.25)"  # tokens without the searched motif
NO_VALUE_COLOUR = "rgba(60, 60, 60, 0.55)"  # tokens without a value for the colour (e.g. no cluster)
SELECTED_RING = dict(color="black", width=1.5)  # the overlay that marks the selection on a redrawn map
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
            f"Remake the projections with `grover analyze <run> --only token_projections`."
        )
    points = at[["token_id", "x", "y"]].merge(tokens, on="token_id", how="left", validate="one_to_one")
    return points.sort_values("token_id", kind="stable").reset_index(drop=True)


def cluster_methods_in(token_clusters: pd.DataFrame | None) -> list[str]:
    """Return the clustering methods of ``token_clusters.parquet`` (k-means, hierarchical, then others)."""
    if token_clusters is None or token_clusters.empty:
        return []
    present = set(token_clusters["method"].astype(str))
    return [m for m in CLUSTER_METHODS if m in present] + sorted(present - set(CLUSTER_METHODS))


def with_clusters(points: pd.DataFrame, token_clusters: pd.DataFrame | None, *, layer: int) -> pd.DataFrame:
    """Return ``points`` with one column ``cluster_<method>`` per clustering method at ``layer``.

    Values are the cluster numbers (nullable integers: missing where a token has no cluster at
    that layer). The input is not modified; without clusters it is returned unchanged (a copy).
    """
    out = points.copy()
    if token_clusters is None or token_clusters.empty:
        return out
    at = token_clusters[token_clusters["layer"] == layer]
    for method in cluster_methods_in(token_clusters):
        labels = at[at["method"].astype(str) == method].drop_duplicates("token_id").set_index("token_id")["cluster"]
        out[CLUSTER_COLOUR_PREFIX + method] = out["token_id"].map(labels).astype("Int64")
    return out


def is_cluster_colour(column: str) -> bool:
    """True for a cluster colour option (``cluster_kmeans``...)."""
    return column.startswith(CLUSTER_COLOUR_PREFIX)


def is_share_column(column: str) -> bool:
    """True for an annotation share column of tokens.parquet (``repeats.share_SINE/Alu_plus``)."""
    return SHARE_MARKER in column


def share_columns(columns: Iterable[str]) -> list[str]:
    """Return the ``<annotation>.share_<label>`` columns, grouped by annotation (first-seen order)."""
    shares = [c for c in columns if is_share_column(c)]
    annotations = list(dict.fromkeys(c.split(SHARE_MARKER, 1)[0] for c in shares))
    return [c for a in annotations for c in shares if c.split(SHARE_MARKER, 1)[0] == a]


def _pretty_annotation(name: str) -> str:
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _pretty_share_label(label: str) -> str:
    if label == "any":
        return "any label"
    for suffix, strand in (("_plus", "+"), ("_minus", "−")):
        if label.endswith(suffix):
            return f"{label[: -len(suffix)]} ({strand} strand)"
    return label


def colour_label(column: str) -> str:
    """Return what the select box shows for a colour option.

    ``"gc"`` -> ``"GC content"``, ``"cluster_kmeans"`` -> ``"Cluster (k-means)"``,
    ``"repeats.share_SINE/Alu_plus"`` -> ``"Repeats · share in SINE/Alu (+ strand)"``.
    """
    if column in COLOUR_BY:
        return COLOUR_BY[column]
    if is_cluster_colour(column):
        method = column[len(CLUSTER_COLOUR_PREFIX):]
        return f"Cluster ({CLUSTER_METHODS.get(method, method)})"
    if is_share_column(column):
        annotation, label = column.split(SHARE_MARKER, 1)
        return f"{_pretty_annotation(annotation)} · share in {_pretty_share_label(label)}"
    return column


def _short_colour_title(column: str) -> str:
    """Colour-bar / hover name of a colour option."""
    if is_share_column(column):
        return f"{_pretty_share_label(column.split(SHARE_MARKER, 1)[1])} share"
    if is_cluster_colour(column):
        return "cluster"
    return {"frequency": "frequency", "length": "length (nt)"}.get(column, column.upper())


def colour_options(columns: Iterable[str], cluster_methods: Sequence[str] = ()) -> list[str]:
    """Return the token map's colour options for a run, in select-box order.

    The token properties of ``COLOUR_BY`` present in ``columns``, then one cluster option per
    clustering method, then every annotation share column grouped by annotation.
    """
    columns = list(columns)
    return ([c for c in COLOUR_BY if c in columns]
            + [CLUSTER_COLOUR_PREFIX + m for m in cluster_methods]
            + share_columns(columns))


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
    """Return the continuous colour mapping of ``column`` for these points.

    Frequency is drawn on a log scale (``log10(frequency + 1)``, so unseen tokens stay finite) over
    the range present, with the colour bar labelled in occurrences; GC/AG/AC use a diverging scale
    fixed to [0, 1] with 0.5 in the middle; length uses a sequential scale over the lengths present;
    an annotation share (``<annotation>.share_<label>``) a sequential scale from 0 to the
    ``SHARE_SCALE_QUANTILE`` quantile of the shares present (shares are mostly small; larger ones
    take the top colour; NaN values stay NaN: the figure greys them).

    Raises
    ------
    ValueError
        For a column that is not a continuous colour option (clusters are categorical, see
        ``category_colours``; the message lists the options).
    """
    if column not in COLOUR_BY and not is_share_column(column):
        raise ValueError(f"Cannot colour by {column!r} on a continuous scale; choose one of {sorted(COLOUR_BY)} "
                         "or an annotation share column '<annotation>.share_<label>'.")
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
    if is_share_column(column):
        finite = raw[np.isfinite(raw)]
        high = float(np.quantile(finite, SHARE_SCALE_QUANTILE)) if len(finite) else 1.0
        return ColourScale(column, _short_colour_title(column), raw, SHARE_COLOURSCALE, 0.0, max(high, 1e-3))
    low, high = (float(raw.min()), float(raw.max())) if len(raw) else (0.0, 1.0)
    return ColourScale(column, "length (nt)", raw, "Plasma", low, high if high > low else low + 1)


def category_colours(values: Iterable[Any]) -> dict[Any, str]:
    """Return one distinct colour per category (sorted), from plotly's qualitative palettes.

    Missing values (NaN / NA) get no colour: the figure draws them grey as "no value".
    """
    categories = sorted({v for v in values if not pd.isna(v)})
    palette = plotly.colors.qualitative.Plotly if len(categories) <= 10 else plotly.colors.qualitative.Dark24
    if len(categories) > 24:
        palette = plotly.colors.qualitative.Alphabet + plotly.colors.qualitative.Dark24
    return {c: palette[i % len(palette)] for i, c in enumerate(categories)}


# Up to this many points a scatter is drawn as SVG (go.Scatter), beyond it with WebGL (go.Scattergl). In headless
# Chromium without a GPU, starting a WebGL context costs about half a second: a thousand points draw faster as
# SVG, while several thousand draw faster with WebGL (each SVG point is an element, which plotly and Streamlit
# draw more than once).
SVG_MAX_POINTS = 2_000
# Margins are sized from text lengths so that plotly draws a figure once: when axis titles, tick labels or a
# legend need more room than the margin gives, it draws the whole figure again.
CHAR_PX = 6.5  # width of a character of the 12 px legend and tick font, rounded up


def scatter_type(n_points: int, webgl: bool | None = None) -> type[go.Scatter] | type[go.Scattergl]:
    """Return ``go.Scattergl`` when ``webgl`` is True, ``go.Scatter`` (SVG) when False; by default
    WebGL only for more than ``SVG_MAX_POINTS`` points."""
    return go.Scattergl if (n_points > SVG_MAX_POINTS if webgl is None else webgl) else go.Scatter


def marker_sizes(frequency: pd.Series | np.ndarray, size_range: tuple[float, float] = MARKER_SIZE_RANGE) -> np.ndarray:
    """Return one marker size per token, growing linearly with ``log10(frequency + 1)``."""
    logf = np.log10(np.clip(np.asarray(frequency, dtype=float), 0, None) + 1)
    small, large = size_range
    if len(logf) == 0 or logf.max() == logf.min():
        return np.full(len(logf), (small + large) / 2)
    return small + (large - small) * (logf - logf.min()) / (logf.max() - logf.min())


def hover_columns(colour_by: str) -> tuple[str, ...]:
    """Return the columns each point carries as ``customdata`` (``HOVER_COLUMNS`` + the colour value)."""
    return HOVER_COLUMNS if colour_by in HOVER_COLUMNS else (*HOVER_COLUMNS, colour_by)


def hover_data(points: pd.DataFrame, colour_by: str = "frequency") -> np.ndarray:
    """Return the ``customdata`` matrix of the points: float64, one row per point, ``hover_columns`` order.

    The token id comes first, which is how ``selected_token_ids`` maps a selection back to tokens.
    Missing values are NaN.
    """
    return np.column_stack([
        pd.to_numeric(points[c], errors="coerce").astype("float64").to_numpy(dtype=float, na_value=np.nan)
        for c in hover_columns(colour_by)
    ]) if len(points) else np.empty((0, len(hover_columns(colour_by))))


def hover_template(colour_by: str = "frequency") -> str:
    """Return the hover text: the token (``text``), its id, length, frequency, GC/AG/AC, CpG, the colour value."""
    template = (
        "<b>%{text}</b><br>"
        "id %{customdata[0]} · length %{customdata[1]} nt<br>"
        "frequency %{customdata[2]:,}<br>"
        "GC %{customdata[3]:.2f} · AG %{customdata[4]:.2f} · AC %{customdata[5]:.2f} · CpG %{customdata[6]}"
    )
    if colour_by not in HOVER_COLUMNS:
        last = len(HOVER_COLUMNS)
        if is_cluster_colour(colour_by):
            template += f"<br>{colour_label(colour_by).lower()}: %{{customdata[{last}]}}"
        else:
            template += f"<br>{_short_colour_title(colour_by)} %{{customdata[{last}]:.3f}}"
    return template + "<extra></extra>"


def token_map_figure(
    points: pd.DataFrame,
    *,
    colour_by: str = "frequency",
    motif: str | None = None,
    method: str = "umap",
    title: str | None = None,
    renderer: Renderer | None = None,
    selected_ids: Sequence[int] = (),
) -> go.Figure:
    """Return the token embedding map: one marker per row of ``points`` (all of them).

    Parameters
    ----------
    points
        ``token_points(...)`` output (``with_clusters`` added for cluster colours).
    colour_by
        A continuous option (``COLOUR_BY`` key or an annotation share column: one trace with a
        colour bar) or a cluster option ``cluster_<method>`` (one trace and legend entry per cluster).
    motif
        When not empty, tokens containing it are drawn in colour on top and the others first in
        dimmed grey (trace ``"other tokens"``); the coloured traces then hold only the matches.
    method
        Names the axes (``"umap"`` -> UMAP 1/2, ``"pca"`` -> PC1/PC2).
    renderer
        ``"webgl"`` (``Scattergl``: fast with many thousands of points, exported images are raster),
        ``"svg"`` (``Scatter``: an exported SVG is vector, slow with many thousands of points), or
        None (default): SVG up to ``SVG_MAX_POINTS`` points, WebGL beyond (``scatter_type``).
    selected_ids
        Tokens to mark with a black ring, drawn as a last trace ``"selected (N)"`` (a selection
        carried over from the link or another layer; absent when empty).

    Returns
    -------
    plotly.graph_objects.Figure
        Trace order: ``"other tokens"`` (motif given), ``"no value"`` (points whose colour value is
        missing, when any), the coloured trace(s), ``"selected (N)"``. Each point of the first three
        kinds appears exactly once. Every trace carries ``customdata`` rows of
        ``hover_columns(colour_by)`` (token id first) and the token as ``text``.
    """
    trace_type = scatter_type(len(points), None if renderer is None else renderer == "webgl")
    categorical = is_cluster_colour(colour_by)
    sizes = marker_sizes(points["frequency"])
    customdata = hover_data(points, colour_by)
    text = points["token"].astype(str).to_numpy()
    template = hover_template(colour_by)

    def trace(mask: np.ndarray, name: str, marker: dict, **extra) -> go.Scatter:
        return trace_type(
            x=points["x"].to_numpy()[mask], y=points["y"].to_numpy()[mask], mode="markers", name=name,
            customdata=customdata[mask], text=text[mask], hovertemplate=template,
            marker=dict(size=sizes[mask], **marker), **extra,
        )

    motif = normalise_motif(motif)
    focus = motif_mask(points["token"], motif) if motif else np.ones(len(points), dtype=bool)
    if categorical:
        missing = points[colour_by].isna().to_numpy(dtype=bool)
    else:
        scale = colour_scale(points, colour_by)
        missing = ~np.isfinite(scale.values)
    outline = dict(width=1, color="black") if motif else dict(width=0)

    traces = []
    if motif:
        traces.append(trace(~focus, "other tokens", dict(color=DIMMED_COLOUR, line=dict(width=0))))
    if (focus & missing).any():
        traces.append(trace(focus & missing, "no value", dict(color=NO_VALUE_COLOUR, line=dict(width=0))))
    coloured = focus & ~missing
    if categorical:
        for category, colour in category_colours(points.loc[coloured, colour_by]).items():
            in_category = points[colour_by].eq(category).fillna(False).to_numpy(dtype=bool)
            traces.append(trace(coloured & in_category, f"cluster {category}",
                                dict(color=colour, opacity=0.85, line=outline)))
    else:
        colorbar = dict(title=dict(text=scale.title), thickness=14)
        if scale.tickvals is not None:
            colorbar.update(tickvals=list(scale.tickvals), ticktext=list(scale.ticktext))
        traces.append(trace(
            coloured, f"contains {motif}" if motif else "tokens",
            dict(color=scale.values[coloured], colorscale=scale.colorscale, cmin=scale.cmin, cmax=scale.cmax,
                 colorbar=colorbar, showscale=True, opacity=0.85, line=outline),
        ))
    chosen = points["token_id"].isin(list(selected_ids)).to_numpy(dtype=bool)
    if chosen.any():
        ring = dict(symbol="circle-open", color=SELECTED_RING["color"], line=dict(width=SELECTED_RING["width"]))
        traces.append(trace(chosen, f"selected ({int(chosen.sum()):,})", ring))
        traces[-1].marker.size = sizes[chosen] + 4

    axis_names = ("PC1", "PC2") if method == "pca" else (f"{method.upper()} 1", f"{method.upper()} 2")
    show_legend = len(traces) > 1 or categorical
    if categorical:  # one entry per cluster: a column on the right, where no colour bar is
        legend = dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.02, itemsizing="constant")
    else:  # a few entries in one row between the title and the plot (the colour bar is on the right)
        legend = dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0, itemsizing="constant")
    top = (40 if title else 10) + (30 if show_legend and not categorical else 0)
    fig = go.Figure(traces)
    fig.update_layout(
        title=dict(text=title, y=1.0, yref="container", yanchor="top", pad=dict(t=12)) if title else None,
        height=FIGURE_HEIGHT,
        margin=dict(l=10, r=10, t=top, b=10),
        showlegend=show_legend,
        legend=legend,
        dragmode="select",  # dragging box-selects; lasso, zoom and pan are in the modebar
        hovermode="closest",
        xaxis=dict(title=dict(text=axis_names[0]), showticklabels=method == "pca", zeroline=False),
        yaxis=dict(title=dict(text=axis_names[1]), showticklabels=method == "pca", zeroline=False),
    )
    return fig


def n_points(fig: go.Figure, *, exclude: Sequence[str] = ()) -> int:
    """Return the number of markers a figure draws, summed over its traces.

    Traces whose name starts with one of ``exclude`` (e.g. the ``"selected"`` overlay) are not counted.
    """
    return sum(len(t.x) if t.x is not None else 0 for t in fig.data
               if not any(str(t.name or "").startswith(e) for e in exclude))


def export_config(*, image_format: Literal["png", "svg"], filename: str, scale: int = 2) -> dict[str, Any]:
    """Return the plotly ``config`` whose modebar camera button saves the figure as ``image_format``.

    ``scale`` multiplies the PNG resolution (2: sharp on slides). Streamlit adds the box and lasso
    buttons itself when the chart takes selections.
    """
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": image_format, "filename": filename, "scale": scale},
    }


# ---------------------------------------------------------------------------------------------
# The map's selection: chart -> ids, the link, nearest tokens, CSV / FASTA
# ---------------------------------------------------------------------------------------------

MAX_LINK_SELECTION = 2000  # ids kept in ?sel= (about 12 kB of link); larger selections say so
NEIGHBOURS_K = 5  # nearest other tokens listed per selected token
MAX_NEIGHBOUR_QUERIES = 100  # selected tokens whose neighbours are computed (the page says when it stops)


def selected_token_ids(selection: Mapping[str, Any] | None) -> list[int]:
    """Return the token ids of a plotly selection, in selection order, without duplicates.

    ``selection`` is Streamlit's ``event.selection`` (or a plain dict) with ``points``: each point's
    ``customdata`` starts with the token id (see ``token_map_figure``). The browser sends a row of
    binary customdata as an object keyed by position (``{"0": 12, "1": 4, ...}``); both forms are
    read. Points without customdata (not from the token map) are ignored.
    """
    if not selection:
        return []
    ids: list[int] = []
    seen: set[int] = set()
    for point in selection.get("points") or ():
        data = point.get("customdata")
        if isinstance(data, Mapping):  # a typed-array row, JSON-encoded by the browser
            data = [data[key] for key in ("0", 0) if key in data][:1]
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


def parse_id_list(text: str) -> list[int]:
    """Parse ``?sel=`` (``"12,40, 7"``) into token ids, in order, without duplicates.

    Raises
    ------
    ValueError
        When an item is not an integer (the link is then ignored).
    """
    ids: list[int] = []
    for item in str(text).split(","):
        item = item.strip()
        if item and int(item) not in ids:
            ids.append(int(item))
    return ids


def format_id_list(ids: Sequence[int]) -> str:
    """Return token ids as the link writes them: ``"12,40,7"``."""
    return ",".join(str(int(i)) for i in ids)


@dataclass(frozen=True)
class MapSelection:
    """The token map's selection across reruns (the page keeps one per run in session state).

    A selection made on the chart lives in the chart; the chart is redrawn (a new chart, which
    forgets it) whenever its figure changes. So the page holds the selection itself and draws it
    on a new chart as a ring overlay, but leaves a chart the user is selecting on untouched.

    Attributes
    ----------
    held
        Token ids the page lists (selection table, nearest tokens, ``?sel=``).
    drawn
        Token ids the figure marks with the overlay (empty: no overlay).
    chart
        The chart's selection ids as they stood at the end of the last run.
    view
        What the figure was last drawn for (layer, method, colour, motif...).
    """

    held: tuple[int, ...] = ()
    drawn: tuple[int, ...] = ()
    chart: tuple[int, ...] = ()
    view: tuple = ()

    def before_drawing(self, *, chart_ids: Sequence[int] | None, view: tuple) -> MapSelection:
        """Return the state for this run, given the chart's selection before it is drawn again.

        ``chart_ids`` is None when there is no chart yet (first draw, or back from another page).
        A change the chart reports becomes the held selection (an empty one clears it and the
        overlay); a new chart (new view, or no chart) draws the held selection as the overlay.
        """
        held, drawn = self.held, self.drawn
        if chart_ids is not None and tuple(chart_ids) != self.chart:
            held = tuple(chart_ids)
            if not held:
                drawn = ()
        if chart_ids is None or view != self.view:
            drawn = held
        return replace(self, held=held, drawn=drawn, view=view)

    def after_drawing(self, chart_ids: Sequence[int] | None) -> MapSelection:
        """Return the state with the chart's selection as it stands after drawing (``None``: none)."""
        return replace(self, chart=tuple(chart_ids or ()))

    def select(self, ids: Sequence[int]) -> MapSelection:
        """Return the state holding ``ids`` chosen outside the chart (the link, a clear button): drawn as overlay."""
        return replace(self, held=tuple(ids), drawn=tuple(ids))


def selected_tokens(points: pd.DataFrame, token_ids: Sequence[int], *, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Return the rows of ``points`` for ``token_ids`` (in that order), columns ``SELECTION_COLUMNS`` + ``extra``.

    Ids not in ``points`` are dropped; the input is not modified.
    """
    wanted = [*SELECTION_COLUMNS, *(c for c in extra if c not in SELECTION_COLUMNS)]
    columns = [c for c in wanted if c in points.columns]
    by_id = points.set_index("token_id", drop=False)
    keep = [i for i in token_ids if i in by_id.index]
    return by_id.loc[keep, columns].reset_index(drop=True)


def nearest_tokens(
    embeddings: np.ndarray, query_ids: Sequence[int], candidate_ids: Sequence[int], *, k: int = NEIGHBOURS_K,
) -> pd.DataFrame:
    """Return the ``k`` nearest other tokens by cosine similarity of each query token.

    Parameters
    ----------
    embeddings
        ``[vocab, hidden]`` token means of one layer (row = token id).
    query_ids
        Tokens whose neighbours are wanted (rows with a zero vector are left out).
    candidate_ids
        Tokens that may be neighbours (those on the map); a query is never its own neighbour.
    k
        Neighbours per query (fewer when there are fewer candidates).

    Returns
    -------
    pandas.DataFrame
        Columns ``token_id``, ``rank`` (1 = nearest), ``neighbour_id``, ``cosine``: ``k`` rows per
        query, queries in the given order, neighbours by decreasing cosine (equal cosines by id).
    """
    columns = ["token_id", "rank", "neighbour_id", "cosine"]
    matrix = np.asarray(embeddings)
    candidates = np.unique(np.asarray(list(candidate_ids), dtype=np.int64))  # sorted: ties go to the lower id
    vectors = matrix[candidates].astype(np.float32, copy=False)
    norms = np.linalg.norm(vectors, axis=1)
    keep = norms > 0
    candidates, vectors, norms = candidates[keep], vectors[keep], norms[keep]
    queries = [int(q) for q in query_ids if 0 <= int(q) < len(matrix) and np.any(matrix[int(q)])]
    if not queries or len(candidates) == 0:
        empty = pd.DataFrame(columns=columns)
        return empty.astype({"token_id": int, "rank": int, "neighbour_id": int, "cosine": float})
    rows = []
    chunk = max(1, 2**22 // len(candidates))  # at most ~16 MB of similarities at a time
    for start in range(0, len(queries), chunk):
        block = np.asarray(queries[start:start + chunk])
        q = matrix[block].astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        sims = (q @ vectors.T) / norms
        sims[block[:, None] == candidates[None, :]] = -np.inf  # not its own neighbour
        n_take = min(k, int(np.isfinite(sims).sum(axis=1).min()))
        if n_take == 0:
            continue
        top = np.argpartition(-sims, n_take - 1, axis=1)[:, :n_take] if n_take < sims.shape[1] else \
            np.tile(np.arange(sims.shape[1]), (len(block), 1))
        for row, query in enumerate(block):
            best = top[row][np.lexsort((candidates[top[row]], -sims[row, top[row]]))]  # cosine down, then id
            rows += [(int(query), rank + 1, int(candidates[j]), float(sims[row, j])) for rank, j in enumerate(best)]
    return pd.DataFrame(rows, columns=columns)


def neighbour_table(neighbours: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Return ``nearest_tokens`` output with the tokens' text.

    Columns ``token_id``, ``token``, ``rank``, ``neighbour_id``, ``neighbour``, ``cosine``.
    """
    names = points.set_index("token_id")["token"]
    out = neighbours.assign(token=neighbours["token_id"].map(names), neighbour=neighbours["neighbour_id"].map(names))
    return out[["token_id", "token", "rank", "neighbour_id", "neighbour", "cosine"]]


def selection_fasta(rows: pd.DataFrame) -> str:
    """Return the selected tokens as FASTA: one record per token, its id, frequency and GC in the header.

    ``>token_12 id=12 frequency=3400 gc=0.500`` then the token's nucleotides.
    """
    records = []
    for row in rows.itertuples(index=False):
        gc = getattr(row, "gc", float("nan"))
        gc_text = "NA" if gc is None or pd.isna(gc) else f"{float(gc):.3f}"
        token_id = int(row.token_id)
        records.append(f">token_{token_id} id={token_id} frequency={int(row.frequency)} gc={gc_text}\n{row.token}\n")
    return "".join(records)


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
# Run details: numbers as text, provenance tables
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


# ---------------------------------------------------------------------------------------------
# Runs page: the runs found, their provenance, the analyses each holds
# ---------------------------------------------------------------------------------------------

# Analyses a run can hold, in the order `grover analyze` runs them, with the files each writes (the
# first one always; the others when there is something to write). A mirror of
# grover_lens.analyze.ANALYSES, which imports torch; tests/dashboard/test_figures.py keeps them equal.
ANALYSIS_OUTPUTS: dict[str, tuple[str, ...]] = {
    "tokens": (run.TOKENS,),
    "token_projections": (run.TOKEN_PROJECTIONS, run.PC_CORRELATIONS),
    "self_similarity": (run.SELF_SIMILARITY, run.SELF_SIMILARITY_BASELINE, run.SELF_SIMILARITY_GROUPS,
                        run.INTRA_WINDOW_SIMILARITY),
    "clusters": (run.TOKEN_CLUSTERS, run.CLUSTER_PROFILES, run.CLUSTER_ENRICHMENT),
    "window_projections": (run.WINDOW_PROJECTIONS,),
    "window_annotations": (run.WINDOW_ANNOTATIONS,),
    "probes": (run.PROBE_SCORES,),
}
PRESENT = "present"


def analyze_command(run_dir: str | Path, name: str) -> str:
    """Return the command that makes analysis ``name`` of a run: ``grover analyze RUN --only NAME``."""
    return f"grover analyze {run_dir} --only {name}"


def manifest_problem(manifest: Any, run_dir: str | Path) -> str | None:
    """Return why a run's manifest cannot be shown (not an object, another schema version), or None.

    The text names the fix, as ``analysis.run.load_manifest`` does.
    """
    if not isinstance(manifest, Mapping):
        return (f"{run.MANIFEST} is not a JSON object. Rebuild the run with `grover demo --out {run_dir}` "
                "(or `grover build`).")
    version = manifest.get("schema_version")
    if version == run.SCHEMA_VERSION:
        return None
    if isinstance(version, int) and version > run.SCHEMA_VERSION:
        return (f"schema version {version}, newer than this GROVER Lens reads ({run.SCHEMA_VERSION}): "
                "upgrade GROVER Lens.")
    return (f"schema version {version!r}; this GROVER Lens reads version {run.SCHEMA_VERSION}. "
            f"Rebuild it with `grover demo --out {run_dir}` (or `grover build`).")


def analysis_table(manifest: Mapping[str, Any], run_dir: str | Path, exists: Callable[[str], bool]) -> pd.DataFrame:
    """Return one row per analysis: whether the run holds it, how it was made, and how to make it.

    Parameters
    ----------
    manifest
        The run's manifest; its ``analyses`` records say what ran (outputs, params, seconds, command)
        or why it was skipped.
    run_dir
        Named in the commands.
    exists
        ``exists(file)`` is True when the run folder holds that artifact (the files on disk decide).

    Returns
    -------
    pandas.DataFrame
        Columns ``analysis``; ``status``: ``"present"``, ``"present (not recorded in the manifest)"``,
        ``"incomplete (missing a, b)"``, ``"skipped: <reason>"`` or ``"missing"``; ``seconds``
        (float or NaN); ``command`` (the recorded one); ``produced_by``; ``params`` (compact JSON);
        ``outputs`` (files); ``make`` (``grover analyze RUN --only NAME`` unless present, else "").
        The registered analyses in ``ANALYSIS_OUTPUTS`` order, then any other recorded one.
    """
    records = manifest.get("analyses") or {}
    names = [*ANALYSIS_OUTPUTS, *(n for n in records if n not in ANALYSIS_OUTPUTS)]
    rows = []
    for name in names:
        record = records.get(name) or {}
        recorded = bool(record) and "skipped" not in record
        outputs = tuple(record.get("outputs") or ()) if recorded else ()
        outputs = outputs or ANALYSIS_OUTPUTS.get(name, ())
        if recorded:
            absent = [f for f in outputs if not exists(f)]
        else:  # judge by the files: the first output is always written
            absent = [f for f in outputs[:1] if not exists(f)]
        if recorded and not absent:
            status = PRESENT
        elif recorded:
            status = f"incomplete (missing {', '.join(absent)})"
        elif outputs and not absent:
            status = f"{PRESENT} (not recorded in the manifest)"
        elif "skipped" in record:
            status = f"skipped: {record['skipped']}"
        else:
            status = "missing"
        seconds = record.get("seconds")
        rows.append({
            "analysis": name,
            "status": status,
            "seconds": float(seconds) if isinstance(seconds, (int, float)) else float("nan"),
            "command": str(record.get("command") or ""),
            "produced_by": str(record.get("produced_by") or ""),
            "params": _compact_json(record.get("params")),
            "outputs": ", ".join(outputs),
            "make": "" if status.startswith(PRESENT) else analyze_command(run_dir, name),
        })
    columns = ["analysis", "status", "seconds", "command", "produced_by", "params", "outputs", "make"]
    return pd.DataFrame(rows, columns=columns)


def annotation_names(manifest: Mapping[str, Any]) -> list[str]:
    """Return the annotations a run names: the genome's annotation files, else the analysis config's."""
    genome = manifest.get("genome") or {}
    names = list((genome.get("annotations") or {}) if isinstance(genome, Mapping) else {})
    if not names:
        specs = (manifest.get("analysis_config") or {}).get("annotations") or []
        names = [str(s.get("name")) for s in specs if isinstance(s, Mapping) and s.get("name")]
    return names


def _model_text(model: Mapping[str, Any]) -> str:
    if not model:
        return ""
    shape = f"{model.get('num_layers', '?')} layers × {model.get('hidden_size', '?')}"
    return f"{model['preset']} · {shape}" if model.get("preset") else shape


def _vocabulary_text(vocabulary: Mapping[str, Any]) -> str:
    if not vocabulary:
        return ""
    parts = [str(vocabulary.get("kind", "?")).upper()]
    if vocabulary.get("cycles") is not None:
        parts.append(f"{vocabulary['cycles']} cycles")
    if vocabulary.get("k") is not None:
        parts.append(f"k={vocabulary['k']}")
    parts.append(f"{vocabulary.get('vocab_size', '?')} tokens")
    return " · ".join(parts)


def genome_size(genome: Mapping[str, Any]) -> int | None:
    """Return the genome's length in nucleotides (sum of chromosome lengths, else ACGT + other), or None."""
    chromosomes = genome.get("chromosomes") or {}
    if chromosomes:
        return int(sum(int(v) for v in chromosomes.values()))
    parts = [genome.get("acgt_nucleotides"), genome.get("other_nucleotides")]
    return int(sum(p for p in parts if p is not None)) if any(p is not None for p in parts) else None


RUN_TABLE_COLUMNS = ["run", "problem", "created", "model", "vocabulary", "genome FASTA", "genome (nt)",
                     "annotations", "held-out top-1", "baseline top-1", "analyses", *ANALYSIS_OUTPUTS,
                     "to make missing analyses", "folder"]


def run_row(name: str, run_dir: str | Path, manifest: Any, *, problem: str | None = None,
            evaluation: Mapping[str, Any] | None = None, exists: Callable[[str], bool] = lambda f: False
            ) -> dict[str, Any]:
    """Return one row of the runs table (columns ``RUN_TABLE_COLUMNS``).

    Parameters
    ----------
    name, run_dir
        How the run is listed, and its folder.
    manifest
        The parsed manifest (any schema), or None when it could not be read.
    problem
        Why the run cannot be opened (read error); a manifest of another schema adds its own.
    evaluation
        Held-out metrics when the manifest holds none (``evaluation.json``).
    exists
        ``exists(file)``: the run folder holds that artifact.

    Returns
    -------
    dict
        ``problem`` is "" for a readable run of this schema; one boolean column per analysis
        (present or not; None for a run with a problem); ``analyses`` counts them (``"5/7"``);
        ``to make missing analyses`` joins their ``grover analyze RUN --only NAME`` commands.
    """
    row: dict[str, Any] = {c: None for c in RUN_TABLE_COLUMNS}
    row.update({c: "" for c in ("created", "model", "vocabulary", "genome FASTA", "annotations")})
    row.update(run=name, folder=str(run_dir))
    problem = problem or (manifest_problem(manifest, run_dir) if manifest is not None else None)
    row["problem"] = problem or ""
    if not isinstance(manifest, Mapping):
        row.update({a: None for a in ANALYSIS_OUTPUTS}, analyses="", **{"to make missing analyses": ""})
        return row
    section = lambda key: manifest.get(key) if isinstance(manifest.get(key), Mapping) else {}  # noqa: E731
    genome = section("genome")
    evaluation = section("evaluation") or evaluation or {}
    row.update({
        "created": str(manifest.get("created_utc") or ""),
        "model": _model_text(section("model")),
        "vocabulary": _vocabulary_text(section("vocabulary")),
        "genome FASTA": str(genome.get("fasta") or ""),
        "genome (nt)": genome_size(genome),
        "annotations": ", ".join(annotation_names(manifest)),
        "held-out top-1": evaluation.get("masked_top1_accuracy"),
        "baseline top-1": evaluation.get("frequency_baseline_top1_accuracy"),
    })
    if problem:  # another schema: its files mean other things; the fix is in the problem column
        row.update({a: None for a in ANALYSIS_OUTPUTS}, analyses="", **{"to make missing analyses": ""})
        return row
    analyses = analysis_table(manifest, run_dir, exists)
    registered = analyses[analyses["analysis"].isin(list(ANALYSIS_OUTPUTS))]
    present = registered["status"].str.startswith(PRESENT)
    row.update(dict(zip(registered["analysis"], present)))
    row["analyses"] = f"{int(present.sum())}/{len(registered)}"
    row["to make missing analyses"] = "; ".join(registered.loc[~present, "make"])
    return row


def runs_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Return the runs table from ``run_row`` rows (columns ``RUN_TABLE_COLUMNS``, the given order)."""
    return pd.DataFrame(list(rows), columns=RUN_TABLE_COLUMNS)
