"""Figures and tables of the chromatin and annotations page (no Streamlit here, so all of it is unit-tested).

Four views of how the model's embeddings relate to genome annotations:

- the window map: ``window_projections`` joined with ``window_annotations``, coloured by one
  annotation (majority label, timing bin or mean signal);
- label composition per token cluster: mean ``<annotation>.share_<label>`` of each cluster's tokens;
- probe scores per layer beside the k-mer-count baseline;
- the region view: annotation intervals above the tokens of a genome interval, coloured by cluster.

Label colours are fixed per annotation label (ChromHMM states keep the Roadmap colours), so a label
has one colour on the window map, in the composition bars and in the region view.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures import CHAR_PX, scatter_type
from dashboard.charts.clusters import (NOISE_COLOUR, annotation_title, cluster_colour, cluster_name, selection_signature,
                                       share_label, split_share_column)

__all__ = ["selection_signature"]  # re-exported: the page remembers which click it acted on

NO_LABEL = "none"  # analysis.annotations.NO_LABEL: a window no label covers, or a NaN signal
WINDOW_COLUMNS = ("window_index", "chromosome", "first_token", "n_tokens", "start", "end")
MEAN_SUFFIX = ".mean"  # window_annotations: <signal>.mean
FRACTION_MARKER = ".frac_"  # window_annotations: <annotation>.frac_<label>
CHROMOSOME_OPTION = "chromosome"

# Roadmap Epigenomics colours of ChromHMM states (15/18-state models; the demo's TssFlnk included).
# Quiescent is light grey rather than white so it shows on a white page.
CHROMHMM_COLOURS = {
    "TssA": "#FF0000", "TssAFlnk": "#FF4500", "TssFlnk": "#FF4500", "TssFlnkU": "#FF4500", "TssFlnkD": "#FF4500",
    "TxFlnk": "#32CD32", "Tx": "#008000", "TxWk": "#006400", "EnhG": "#C2E105", "EnhG1": "#C2E105",
    "EnhG2": "#C2E105", "Enh": "#FFC34D", "EnhA1": "#FFC34D", "EnhA2": "#FFC34D", "EnhWk": "#FFFF00",
    "ZNF/Rpts": "#66CDAA", "Het": "#8A91D0", "TssBiv": "#CD5C5C", "BivFlnk": "#E9967A", "EnhBiv": "#BDB76B",
    "ReprPC": "#808080", "ReprPCWk": "#C0C0C0", "Quies": "#CFCFCF",
}
TIMING_COLOURS = {"early": "#D1495B", "mid": "#EDAE49", "late": "#00798C"}
LABEL_PALETTE = (  # carto "Bold", for labels without a conventional colour
    "#7F3C8D", "#11A579", "#3969AC", "#F2B701", "#E73F74", "#80BA5A", "#E68310", "#008695", "#CF1C90",
    "#F97B72", "#4B4B8F", "#A5AA99",
)
NO_LABEL_COLOUR = "#E6E6E6"
MINUS_PATTERN = "/"  # composition bars: minus-strand shares hatched, plus solid
WINDOW_MAP_HEIGHT = 600  # px
WINDOW_POINT_SIZE = 5  # px
PROBE_METRICS = {"mcc": "MCC", "balanced_accuracy": "balanced accuracy", "accuracy": "accuracy"}
BASELINE_LAYER = -1  # probe_scores: the k-mer-count baseline's layer
BASELINE_FEATURES = "kmer_baseline"

REGION_DEFAULT_SPAN = 5_000  # bp shown when the region view opens
REGION_MAX_SPAN = 50_000  # bp drawn at most (tokens become bars; beyond this the browser slows down)
CLICK_PADDING = 2_000  # bp on each side of a window clicked on the map
LANE_HEIGHT = 34  # px per track lane in the region view
SIGNAL_HEIGHT = 90  # px of a signal row
REGION_MIN_HEIGHT = 540  # px: room for the legend (labels and clusters)
TOKEN_STAGGER = 0.14  # lane units: neighbouring tokens sit alternately higher and lower, so boundaries show
TOKEN_TEXT_MAX = 2_000  # tokens: above this the blocks carry no text (writing it costs the browser seconds)
# tokens: up to this the region view writes the sequences in the blocks unless asked not to; above it (the
# default 5 kb holds about 1,000) only when asked (a toggle), since each written block costs a browser about
# half a millisecond on opening the page, before a zoom shows any text
TOKEN_TEXT_DEFAULT_MAX = 250
UNCLUSTERED = -2  # region view: a token with no cluster at the chosen layer (special or never embedded)

# The page's views (lazy tabs, one drawn at a time): link name -> tab label; the first is the default.
VIEWS = {"windows": "Window map", "composition": "Label composition", "probes": "Probe scores",
         "region": "Region view"}


# ---------------------------------------------------------------------------------------------
# Labels and their colours
# ---------------------------------------------------------------------------------------------


def label_colours(labels: Sequence[str]) -> dict[str, str]:
    """Return a colour per label: ChromHMM states and timing bins their conventional colour, ``none``
    light grey, the others ``LABEL_PALETTE`` in the order given."""
    colours: dict[str, str] = {}
    next_colour = 0
    for label in labels:
        if label in colours:
            continue
        if label == NO_LABEL:
            colours[label] = NO_LABEL_COLOUR
        elif label in CHROMHMM_COLOURS:
            colours[label] = CHROMHMM_COLOURS[label]
        elif label in TIMING_COLOURS:
            colours[label] = TIMING_COLOURS[label]
        else:
            colours[label] = LABEL_PALETTE[next_colour % len(LABEL_PALETTE)]
            next_colour += 1
    return colours


# Margins wide enough for what plotly pushes into them (figures.CHAR_PX): too narrow an estimate brings plotly's
# second drawing back (for the window map's thousands of points, a few hundred milliseconds more per page); too
# wide leaves some white space.
LEGEND_SYMBOL_PX = 45  # a legend item's symbol and gaps


def legend_margin(entries: Sequence[str], title: str = "") -> int:
    """Return the right margin (px) a vertical legend of ``entries`` under ``title`` takes, beside the plot."""
    widths = [len(str(entry)) * CHAR_PX + LEGEND_SYMBOL_PX for entry in entries] + [len(str(title)) * CHAR_PX + 20]
    return int(max(widths) + 30)  # the legend starts 2 % of the plot's width to its right


def window_label_order(window_annotations: pd.DataFrame, column: str) -> list[str]:
    """Return the labels of a majority-label column in the annotation's own order.

    That order is the one of the ``<column>.frac_<label>`` columns (the file's order of first
    appearance); labels only found in the column follow by count; timing bins run early, mid, late;
    ``none`` comes last.
    """
    values = window_annotations[column].astype(str)
    present = list(values.value_counts().index)
    prefix = f"{column}{FRACTION_MARKER}"
    order = [c[len(prefix):] for c in window_annotations.columns if c.startswith(prefix)]
    if not order and set(present) <= set(TIMING_COLOURS) | {NO_LABEL}:
        order = [label for label in TIMING_COLOURS if label in present]
    order += [label for label in present if label not in order and label != NO_LABEL]
    return order + ([NO_LABEL] if NO_LABEL in present else [])


def colour_options(window_annotations: pd.DataFrame) -> dict[str, str]:
    """Return what the window map can be coloured by: column -> label shown in the select box.

    Every majority-label column (``chromatin_states`` -> "chromatin states (majority label)"), each
    signal's bin and its mean (``replication_timing`` -> "... (early / late)",
    ``replication_timing.mean`` -> "... (mean signal)"), then the chromosome.
    """
    columns = list(window_annotations.columns)
    options: dict[str, str] = {}
    for column in columns:
        if column in WINDOW_COLUMNS or "." in column:
            continue
        title = annotation_title(column)
        if f"{column}{MEAN_SUFFIX}" in columns:
            present = {str(value) for value in window_annotations[column].unique()}
            bins = " / ".join(label for label in TIMING_COLOURS if label in present)
            options[column] = f"{title} ({bins or 'bins'})"
            options[f"{column}{MEAN_SUFFIX}"] = f"{title} (mean signal)"
        else:
            options[column] = f"{title} (majority label)"
    for column in columns:  # a signal mean without its bin column
        if column.endswith(MEAN_SUFFIX) and column not in options:
            options[column] = f"{annotation_title(column[: -len(MEAN_SUFFIX)])} (mean signal)"
    if "chromosome" in columns:
        options[CHROMOSOME_OPTION] = "chromosome"
    return options


def is_continuous(column: str) -> bool:
    """Return True when a colour option is a numeric signal (drawn with a colour scale)."""
    return column.endswith(MEAN_SUFFIX)


# ---------------------------------------------------------------------------------------------
# Window map
# ---------------------------------------------------------------------------------------------


def window_points(window_projections: pd.DataFrame, window_annotations: pd.DataFrame, *, layer: int,
                  method: str) -> pd.DataFrame:
    """Return one row per projected window at ``layer`` / ``method``: ``x``, ``y`` and its annotations.

    Raises
    ------
    ValueError
        When the projections hold no row for that layer and method (the message lists what exists).
    """
    at = window_projections[(window_projections["layer"] == layer) & (window_projections["method"] == method)]
    if at.empty:
        present = sorted({(int(l), str(m)) for l, m in zip(window_projections["layer"], window_projections["method"])})
        raise ValueError(f"No {method!r} window projection at layer {layer}; the run has (layer, method) {present}.")
    points = at[["window_index", "x", "y"]].merge(window_annotations, on="window_index", how="inner",
                                                  validate="one_to_one")
    return points.sort_values("window_index", kind="stable").reset_index(drop=True)


def sampling_note(n_drawn: int, n_windows: int, *, cap: int | None = None) -> str:
    """Return the caption that says how many windows the map draws, and why not all when it samples."""
    if n_drawn >= n_windows:
        return f"{n_drawn:,} windows drawn: every window of the run, no subsampling."
    why = (f"the pipeline projects at most {cap:,} windows per layer" if cap else "the pipeline projected a subset")
    return (f"{n_drawn:,} of {n_windows:,} windows drawn ({100 * n_drawn / n_windows:.0f} %): {why}, evenly "
            "spread along the genome (`window_projection_max` in the analysis config).")


_WINDOW_HOVER = ("<b>%{customdata[1]}:%{customdata[2]:,}-%{customdata[3]:,}</b><br>window %{customdata[0]}<br>"
                 "%{customdata[4]}<extra></extra>")


def _window_customdata(points: pd.DataFrame, column: str, title: str) -> np.ndarray:
    values = points[column]
    shown = values.map(lambda v: f"{v:.3g}") if is_continuous(column) else values.astype(str)
    return np.column_stack([points["window_index"].to_numpy(), points["chromosome"].astype(str).to_numpy(),
                            points["start"].to_numpy(), points["end"].to_numpy(),
                            (f"{title}: " + shown).to_numpy()]).astype(object)


def window_map_figure(points: pd.DataFrame, colour_by: str, *, method: str, colour_title: str | None = None,
                      order: Sequence[str] | None = None, title: str | None = None,
                      webgl: bool | None = None) -> go.Figure:
    """Return the window map (every row of ``points`` drawn) coloured by ``colour_by``.

    Labels: one trace per label in ``order`` (default ``window_label_order``), legend ``label (n)``,
    ``none`` drawn first, underneath. Signal means (``*.mean``): one trace on a colour scale, windows
    without a value in grey. Each point's ``customdata`` is ``[window_index, chromosome, start, end, text]``.
    Traces are ``Scattergl`` when ``webgl`` is True, ``Scatter`` (SVG) when False; by default WebGL
    only for more than ``figures.SVG_MAX_POINTS`` points.
    """
    colour_title = colour_title or annotation_title(colour_by.removesuffix(MEAN_SUFFIX))
    customdata = _window_customdata(points, colour_by, colour_title)
    x, y = points["x"].to_numpy(), points["y"].to_numpy()
    scatter = scatter_type(len(points), webgl)
    traces = []
    if is_continuous(colour_by):
        values = points[colour_by].to_numpy(dtype=float)
        known = np.isfinite(values)
        if (~known).any():
            traces.append(scatter(x=x[~known], y=y[~known], mode="markers", name=f"no value ({int((~known).sum()):,})",
                                  customdata=customdata[~known], hovertemplate=_WINDOW_HOVER,
                                  marker=dict(size=WINDOW_POINT_SIZE, color=NO_LABEL_COLOUR)))
        traces.append(scatter(
            x=x[known], y=y[known], mode="markers", name=colour_title, customdata=customdata[known],
            hovertemplate=_WINDOW_HOVER, showlegend=False,
            marker=dict(size=WINDOW_POINT_SIZE, color=values[known], colorscale="Viridis", showscale=True,
                        colorbar=dict(title=dict(text=colour_title), thickness=14), opacity=0.85),
        ))
    else:
        labels = points[colour_by].astype(str).to_numpy()
        order = list(order) if order is not None else (
            window_label_order(points, colour_by) if colour_by != CHROMOSOME_OPTION else list(dict.fromkeys(labels)))
        order += [label for label in dict.fromkeys(labels) if label not in order]
        colours = label_colours(order)
        drawing = ([NO_LABEL] if NO_LABEL in order else []) + [label for label in order if label != NO_LABEL]
        legend_rank = {label: rank for rank, label in enumerate(order)}
        for label in drawing:
            mask = labels == label
            if not mask.any():
                continue
            traces.append(scatter(
                x=x[mask], y=y[mask], mode="markers", name=f"{share_label(label)} ({int(mask.sum()):,})",
                legendrank=legend_rank[label] + 1, customdata=customdata[mask], hovertemplate=_WINDOW_HOVER,
                marker=dict(size=WINDOW_POINT_SIZE, color=colours[label], opacity=0.85, line=dict(width=0)),
            ))
    fig = go.Figure(traces)
    names = ("PC1", "PC2") if method == "pca" else (f"{method.upper()} 1", f"{method.upper()} 2")
    ticks = method == "pca"  # PCA axes are read, UMAP/t-SNE ones are not
    right = legend_margin([t.name for t in traces if t.showlegend is not False], colour_title)
    if is_continuous(colour_by):
        right = max(right, legend_margin([], colour_title) + 40)  # the colour bar, its ticks and title
    fig.update_layout(
        title=dict(text=title) if title else None, height=WINDOW_MAP_HEIGHT, hovermode="closest",
        margin=dict(l=90 if ticks else 55, r=right, t=50 if title else 10, b=75 if ticks else 45),
        legend=dict(title=dict(text=colour_title), itemsizing="constant"),
        xaxis=dict(title=dict(text=names[0]), showticklabels=method == "pca", zeroline=False),
        yaxis=dict(title=dict(text=names[1]), showticklabels=method == "pca", zeroline=False),
    )
    return fig


def clicked_window(selection: Mapping[str, Any] | None) -> tuple[str, int, int] | None:
    """Return ``(chromosome, start, end)`` of the first selected window (from its customdata), or None."""
    for point in (selection or {}).get("points") or ():
        data = point.get("customdata")
        if isinstance(data, Sequence) and not isinstance(data, str) and len(data) >= 4:
            try:
                return str(data[1]), int(data[2]), int(data[3])
            except (TypeError, ValueError):
                continue
    return None


# ---------------------------------------------------------------------------------------------
# Label composition per token cluster
# ---------------------------------------------------------------------------------------------


def share_annotations(tokens: pd.DataFrame) -> list[str]:
    """Return the annotations with per-label share columns in ``tokens.parquet``, in column order."""
    names = [split_share_column(c)[0] for c in tokens.columns if ".share_" in c]
    return [name for name in dict.fromkeys(names) if name]


def share_columns(tokens: pd.DataFrame, annotation: str) -> list[str]:
    """Return ``<annotation>.share_<label>`` columns in order, without ``share_any``."""
    prefix = f"{annotation}.share_"
    return [c for c in tokens.columns if c.startswith(prefix) and c != f"{prefix}any"]


def _strand_of(label: str) -> tuple[str, str]:
    """``"SINE/Alu_plus"`` -> ``("SINE/Alu", "+")``; an unstranded label -> ``(label, "")``."""
    for suffix, strand in (("_plus", "+"), ("_minus", "-")):
        if label.endswith(suffix):
            return label[: -len(suffix)], strand
    return label, ""


ALL_TOKENS = "all tokens"


def label_composition(members: pd.DataFrame, annotation: str) -> pd.DataFrame:
    """Return the mean share of each label among each cluster's tokens, and among all of them.

    ``members`` is ``clusters.clustered_tokens(...)`` (``cluster`` plus tokens.parquet columns).
    Tokens never seen in the genome (NaN shares) are left out of the means.

    Returns
    -------
    pandas.DataFrame
        Long, one row per (group, label): ``group`` (``"cluster k"`` ..., then ``"all tokens"``),
        ``cluster`` (int; -1 noise; None for all tokens), ``n_tokens``, ``label`` (column label,
        ``SINE/Alu_plus``), ``label_class`` (``SINE/Alu``), ``strand`` (``+``, ``-`` or empty),
        ``mean_share``. Empty when the annotation has no share columns.
    """
    columns = share_columns(members, annotation)
    out_columns = ["group", "cluster", "n_tokens", "label", "label_class", "strand", "mean_share"]
    if not columns:
        return pd.DataFrame(columns=out_columns)
    rows = []
    groups = [(int(c), members[members["cluster"] == c]) for c in sorted(members["cluster"].unique())]
    groups.append((None, members))
    for cluster, part in groups:
        for column in columns:
            label = split_share_column(column)[1]
            label_class, strand = _strand_of(label)
            values = part[column].to_numpy(dtype=float)
            rows.append({"group": ALL_TOKENS if cluster is None else cluster_name(cluster), "cluster": cluster,
                         "n_tokens": len(part), "label": label, "label_class": label_class, "strand": strand,
                         "mean_share": float(np.nanmean(values)) if np.isfinite(values).any() else np.nan})
    return pd.DataFrame(rows, columns=out_columns)


def composition_figure(composition: pd.DataFrame, *, annotation: str, title: str | None = None) -> go.Figure:
    """Return stacked bars, one per cluster (and all tokens), of the mean label shares.

    Each label class has one colour; for stranded annotations the minus-strand share is hatched.
    A bar sums to the share of the tokens' occurrences inside any label.
    """
    classes = list(dict.fromkeys(composition["label_class"]))
    colours = label_colours(classes)
    groups = list(dict.fromkeys(composition["group"]))
    fig = go.Figure()
    for label in dict.fromkeys(composition["label"]):
        rows = composition[composition["label"] == label].set_index("group").reindex(groups)
        label_class, strand = _strand_of(label)
        fig.add_trace(go.Bar(
            x=groups, y=rows["mean_share"], name=share_label(label), legendgroup=label_class,
            marker=dict(color=colours[label_class], line=dict(width=0.5, color="white"),
                        pattern=dict(shape=MINUS_PATTERN if strand == "-" else "", fillmode="overlay", size=6)),
            customdata=rows["n_tokens"].to_numpy(),
            hovertemplate=f"%{{x}} (%{{customdata:,}} tokens)<br>{share_label(label)}: mean share %{{y:.3f}}<extra></extra>",
        ))
    fig.update_layout(
        title=dict(text=title) if title else None, barmode="stack", height=420,
        margin=dict(l=75, r=legend_margin([t.name for t in fig.data], annotation_title(annotation)),
                    t=50 if title else 10, b=max(45, int(max(map(len, groups), default=0) * CHAR_PX * 0.8) + 20)),
        yaxis=dict(title=dict(text=f"mean share of occurrences ({annotation_title(annotation)})"), rangemode="tozero"),
        legend=dict(title=dict(text=annotation_title(annotation)), traceorder="normal"),
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Probe scores
# ---------------------------------------------------------------------------------------------


def probe_figure(scores: pd.DataFrame, *, metric: str = "mcc", current_layer: int | None = None,
                 title: str | None = None) -> go.Figure:
    """Return the probe score per layer, one line per annotation, its k-mer baseline dashed in the same colour.

    ``current_layer`` (the layer the rest of the page shows) is marked by a dotted vertical line.
    """
    label = PROBE_METRICS.get(metric, metric)
    embedding = scores[scores["layer"] != BASELINE_LAYER]
    baseline = scores[scores["layer"] == BASELINE_LAYER]
    layers = sorted(int(v) for v in embedding["layer"].unique()) or [0]
    fig = go.Figure()
    for index, annotation in enumerate(dict.fromkeys(scores["annotation"].astype(str))):
        colour = LABEL_PALETTE[index % len(LABEL_PALETTE)]
        rows = embedding[embedding["annotation"] == annotation].sort_values("layer")
        if not rows.empty:
            fig.add_trace(go.Scatter(
                x=rows["layer"], y=rows[metric], mode="lines+markers", name=annotation_title(annotation),
                legendgroup=annotation, line=dict(color=colour, width=2.5),
                hovertemplate=f"{annotation_title(annotation)} · layer %{{x}}<br>{label} %{{y:.3f}}<extra></extra>",
            ))
        base = baseline[baseline["annotation"] == annotation]
        if not base.empty:
            value = float(base[metric].iloc[0])
            fig.add_trace(go.Scatter(
                x=[layers[0], layers[-1]], y=[value, value], mode="lines", legendgroup=annotation,
                name=f"{annotation_title(annotation)} · k-mer baseline", line=dict(color=colour, dash="dash", width=1.5),
                hovertemplate=f"{annotation_title(annotation)} · k-mer baseline<br>{label} {value:.3f}<extra></extra>",
            ))
    if current_layer is not None:
        fig.add_vline(x=current_layer, line=dict(color="grey", width=1, dash="dot"))
    fig.update_layout(
        title=dict(text=title) if title else None, height=420,
        margin=dict(l=75, r=legend_margin([t.name for t in fig.data]), t=50 if title else 10, b=70),
        xaxis=dict(title=dict(text="layer (0 = input embeddings)"), tickmode="array", tickvals=layers),
        yaxis=dict(title=dict(text=label)), hovermode="closest",
    )
    return fig


def probe_table(scores: pd.DataFrame, *, metric: str = "mcc") -> pd.DataFrame:
    """Return one row per annotation: the metric at each layer, the k-mer baseline, the best layer and its gain.

    Columns: ``annotation``, ``layer 0`` ... ``layer L``, ``k-mer baseline``, ``best layer``,
    ``best - baseline``, ``windows``, ``classes``, ``folds``.
    """
    embedding = scores[scores["layer"] != BASELINE_LAYER]
    baseline = scores[scores["layer"] == BASELINE_LAYER].groupby("annotation")[metric].first()
    wide = embedding.pivot_table(index="annotation", columns="layer", values=metric, aggfunc="first")
    order = list(dict.fromkeys(scores["annotation"].astype(str)))
    wide = wide.reindex([a for a in order if a in wide.index or a in baseline.index])
    table = pd.DataFrame({"annotation": wide.index})
    for layer in wide.columns:
        table[f"layer {int(layer)}"] = wide[layer].to_numpy()
    table["k-mer baseline"] = baseline.reindex(wide.index).to_numpy()
    layer_values = wide.to_numpy(dtype=float)
    has_value = np.isfinite(layer_values).any(axis=1)
    best = np.where(has_value, np.nanargmax(np.where(np.isfinite(layer_values), layer_values, -np.inf), axis=1), -1)
    table["best layer"] = [int(wide.columns[b]) if b >= 0 else None for b in best]
    table["best - baseline"] = [layer_values[i, b] - table["k-mer baseline"].iloc[i] if b >= 0 else np.nan
                                for i, b in enumerate(best)]
    counts = scores.groupby("annotation")[["n_windows", "n_classes", "n_folds"]].first().reindex(wide.index)
    table["windows"] = counts["n_windows"].to_numpy()
    table["classes"] = counts["n_classes"].to_numpy()
    table["folds"] = counts["n_folds"].to_numpy()
    return table


# ---------------------------------------------------------------------------------------------
# Region view
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A genome interval as drawn (0-based half-open) and what was changed to make it drawable."""

    start: int
    end: int
    notes: tuple[str, ...] = ()

    @property
    def span(self) -> int:
        return self.end - self.start


def default_interval(chromosome_length: int, first_position: int = 0, *, span: int = REGION_DEFAULT_SPAN) -> tuple[int, int]:
    """Return ``(start, end)``: ``span`` bp from the first sequenced position (the start of the first token)."""
    start = max(0, min(int(first_position), max(0, chromosome_length - span)))
    return start, min(chromosome_length, start + span)


def clamp_interval(start: int, end: int, chromosome_length: int, *, max_span: int = REGION_MAX_SPAN) -> Interval:
    """Return the interval to draw: inside the chromosome, end after start, at most ``max_span`` bp.

    Each change is described in ``notes`` (shown on the page).
    """
    notes = []
    start, end = int(start), int(end)
    if start > end:
        start, end = end, start
        notes.append("start and end were swapped")
    if start < 0 or end > chromosome_length:
        start, end = max(0, start), min(chromosome_length, end)
        notes.append(f"clipped to the chromosome (0-{chromosome_length:,})")
    if end <= start:
        end = min(chromosome_length, start + 1)
        start = end - 1
        notes.append("widened to 1 bp")
    if end - start > max_span:
        end = start + max_span
        notes.append(f"capped at {max_span:,} bp: showing {start:,}-{end:,}")
    return Interval(start, end, tuple(notes))


def tokens_in_interval(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, start: int, end: int) -> pd.DataFrame:
    """Return the tokens of one chromosome that overlap ``[start, end)``, in genome order.

    ``ids`` and ``starts`` are the tokenized chromosome (memory-mapped arrays are fine: only the
    interval's slice is read); ``lengths[token_id]`` gives each token's nucleotides.

    Returns
    -------
    pandas.DataFrame
        ``index`` (position in the chromosome's token array), ``token_id``, ``start``, ``end``.
    """
    first = max(int(np.searchsorted(starts, start, side="right")) - 1, 0)  # a token may begin before start
    last = int(np.searchsorted(starts, end, side="left"))
    chunk_ids = np.asarray(ids[first:last], dtype=np.int64)
    chunk_starts = np.asarray(starts[first:last], dtype=np.int64)
    chunk_ends = chunk_starts + np.asarray(lengths, dtype=np.int64)[chunk_ids]
    keep = chunk_ends > start
    return pd.DataFrame({"index": np.arange(first, last, dtype=np.int64)[keep], "token_id": chunk_ids[keep],
                         "start": chunk_starts[keep], "end": chunk_ends[keep]})


def features_in_interval(features: pd.DataFrame, chromosome: str, start: int, end: int) -> pd.DataFrame:
    """Return the rows of an annotation table (``Chromosome, Start, End, ...``) overlapping ``[start, end)``, by start."""
    hit = (features["Chromosome"].astype(str) == str(chromosome)) & (features["Start"] < end) & (features["End"] > start)
    return features[hit].sort_values(["Start", "End"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Track:
    """One annotation in the region view: intervals with labels (``kind="labels"``) or a signal."""

    name: str
    kind: str  # "labels" or "signal"
    features: pd.DataFrame  # Start, End and Label[, Strand] (labels) or Value (signal)
    label_order: tuple[str, ...] = ()  # colour order of the labels (the annotation's own order)


STRAND_LANES = {"+": " (+)", "-": " (−)", ".": " (·)"}


def _lanes(tracks: Sequence[Track]) -> list[tuple[str, Track, str | None]]:
    """Return the lanes of the label tracks, top to bottom: ``(lane name, track, strand or None)``."""
    lanes = []
    for track in tracks:
        if track.kind != "labels":
            continue
        if "Strand" in track.features.columns:
            strands = ["+", "-"] + (["."] if (track.features["Strand"] == ".").any() else [])
            lanes += [(annotation_title(track.name) + STRAND_LANES[s], track, s) for s in strands]
        else:
            lanes.append((annotation_title(track.name), track, None))
    return lanes


def region_figure(tracks: Sequence[Track], tokens: pd.DataFrame, *, chromosome: str, start: int, end: int,
                  title: str | None = None, text_max: int = TOKEN_TEXT_MAX) -> go.Figure:
    """Return a small genome browser of ``[start, end)``: signals on top, label lanes, then the tokens.

    ``tokens`` has ``start``, ``end``, ``token``, ``token_id``, ``cluster`` (``UNCLUSTERED`` when
    none); each token is a block coloured by its cluster, labelled with its sequence when zoomed in
    far enough (only when the interval holds at most ``text_max`` tokens). Label intervals are blocks
    coloured by label (stranded annotations get one lane per strand). Everything is clipped to the interval.
    """
    signals = [t for t in tracks if t.kind == "signal"]
    lanes = _lanes(tracks)
    lane_names = [name for name, _, _ in lanes] + ["tokens"]
    n_lanes = len(lane_names)
    rows = len(signals) + 1
    heights = [SIGNAL_HEIGHT] * len(signals) + [LANE_HEIGHT * n_lanes + 20]
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[h / sum(heights) for h in heights],
                        subplot_titles=[annotation_title(t.name) for t in signals] + [""])
    for row, track in enumerate(signals, start=1):
        f = track.features
        clipped_start, clipped_end = np.maximum(f["Start"].to_numpy(), start), np.minimum(f["End"].to_numpy(), end)
        xs = np.column_stack([clipped_start, clipped_end, np.full(len(f), np.nan)]).ravel()
        ys = np.column_stack([f["Value"].to_numpy(float), f["Value"].to_numpy(float), np.full(len(f), np.nan)]).ravel()
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=annotation_title(track.name), showlegend=False,
                                 line=dict(color="#3B6FB6", width=2), connectgaps=False,
                                 hovertemplate=f"{annotation_title(track.name)} %{{y:.3g}}<extra></extra>"), row=row, col=1)
        fig.add_hline(y=0, line=dict(color="grey", width=1, dash="dot"), row=row, col=1)

    lane_row = rows
    lane_y = {name: n_lanes - 1 - i for i, name in enumerate(lane_names)}  # first lane on top
    in_legend: set[tuple[str, str]] = set()
    for lane_name, track, strand in lanes:
        features = track.features if strand is None else track.features[track.features["Strand"] == strand]
        labels = features["Label"].astype(str).to_numpy()
        order = list(track.label_order) + [l for l in dict.fromkeys(labels) if l not in track.label_order]
        colours = label_colours(order)
        for label in order:
            part = features[labels == label]
            if part.empty:
                continue
            s, e = np.maximum(part["Start"].to_numpy(), start), np.minimum(part["End"].to_numpy(), end)
            raw = np.column_stack([part["Start"].to_numpy(), part["End"].to_numpy()])
            fig.add_trace(go.Bar(
                x=e - s, base=s, y=np.full(len(part), lane_y[lane_name]), orientation="h", width=0.8,
                name=share_label(label), legendgroup=track.name,
                legendgrouptitle=dict(text=annotation_title(track.name)), marker=dict(color=colours[label], line=dict(width=0)),
                customdata=raw, showlegend=(track.name, label) not in in_legend,
                hovertemplate=(f"{lane_name}: <b>{label}</b><br>"
                               f"{chromosome}:%{{customdata[0]:,}}-%{{customdata[1]:,}}<extra></extra>"),
            ), row=lane_row, col=1)
            in_legend.add((track.name, label))

    clusters = tokens["cluster"].to_numpy() if len(tokens) else np.array([], dtype=int)
    with_text = len(tokens) <= text_max
    for cluster in sorted(set(clusters.tolist()), key=lambda c: (c == UNCLUSTERED, c)):  # "no cluster" last
        part = tokens[clusters == cluster]
        s, e = np.maximum(part["start"].to_numpy(), start), np.minimum(part["end"].to_numpy(), end)
        name = "no cluster" if cluster == UNCLUSTERED else cluster_name(cluster)
        stagger = np.where(part["index"].to_numpy() % 2 == 0, TOKEN_STAGGER, -TOKEN_STAGGER) if "index" in part else 0
        fig.add_trace(go.Bar(
            x=e - s, base=s, y=lane_y["tokens"] + stagger + np.zeros(len(part)), orientation="h", width=0.6,
            name=f"{name} ({len(part):,})", legendgroup="tokens", legendgrouptitle=dict(text="token cluster"),
            marker=dict(color=NOISE_COLOUR if cluster == UNCLUSTERED else cluster_colour(cluster), line=dict(width=0)),
            text=part["token"].astype(str).to_numpy() if with_text else None,
            textposition="inside", insidetextanchor="middle", textangle=0,
            textfont=dict(color="white"),
            customdata=np.column_stack([part["token"].astype(str), part["token_id"], part["start"], part["end"]]).astype(object),
            hovertemplate=(f"<b>%{{customdata[0]}}</b> (id %{{customdata[1]}}) · {name}<br>"
                           f"{chromosome}:%{{customdata[2]:,}}-%{{customdata[3]:,}}<extra></extra>"),
        ), row=lane_row, col=1)

    fig.update_layout(
        title=dict(text=title) if title else None, barmode="overlay", bargap=0,
        height=max(REGION_MIN_HEIGHT, 60 + (50 if title else 0) + sum(heights)),
        margin=dict(l=int(max(map(len, lane_names)) * CHAR_PX) + 30,
                    r=legend_margin([t.name for t in fig.data if t.showlegend is not False],
                                    max([t.legendgrouptitle.text or "" for t in fig.data], key=len, default="")),
                    t=60 if title else 30, b=70),
        uniformtext=dict(minsize=8, mode="hide"), hovermode="closest",
        legend=dict(groupclick="toggleitem"),
    )
    fig.update_xaxes(range=[start, end], tickformat=",d", showgrid=False)
    fig.update_xaxes(title=dict(text=f"{chromosome} position (bp)"), row=rows, col=1)
    fig.update_yaxes(tickmode="array", tickvals=list(lane_y.values()), ticktext=list(lane_y),
                     range=[-0.6, n_lanes - 0.4], showgrid=False, zeroline=False, fixedrange=True, row=lane_row, col=1)
    return fig


def region_tokens(interval_tokens: pd.DataFrame, tokens: pd.DataFrame, members: pd.DataFrame | None) -> pd.DataFrame:
    """Return the interval's tokens with ``token`` (sequence) and ``cluster`` (``UNCLUSTERED`` when none).

    ``members`` is ``clusters.clustered_tokens(...)`` at the chosen layer and method, or None.
    """
    out = interval_tokens.merge(tokens[["token_id", "token"]], on="token_id", how="left")
    if members is None:
        out["cluster"] = UNCLUSTERED
    else:
        by_id = members.set_index("token_id")["cluster"]
        out["cluster"] = out["token_id"].map(by_id).fillna(UNCLUSTERED).astype(np.int64)
    return out
