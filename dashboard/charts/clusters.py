"""Figures and tables of the GC/AG content clusters page (no Streamlit here, so all of it is unit-tested).

The page reads ``token_clusters``, ``cluster_profiles`` and ``cluster_enrichment`` (written by
``grover analyze --only clusters``) with ``tokens`` and ``token_projections``; these builders only
select, join and draw them. Cluster colours are fixed per cluster number (``cluster_colour``), so a
cluster keeps its colour across the map, the GC-AG scatter, the profile bars and the annotations page.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures import marker_sizes, scatter_type

# Categorical palette: plotly's D3 then Dark24 beyond ten clusters (k-means default is 8).
CLUSTER_PALETTE = (
    "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F", "#BCBD22", "#17BECF",
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B", "#511CFB",
)
NOISE = -1  # HDBSCAN's label for tokens in no cluster
NOISE_COLOUR = "#B0B0B0"
DIMMED_OPACITY = 0.12  # clusters other than the chosen one
POINT_OPACITY = 0.85
Q_THRESHOLD = 0.05  # heatmap cells with q below it are marked significant
SIGNIFICANT_MARK = "*"
FIGURE_HEIGHT = 600  # px, the map and the GC-AG scatter

# Per token: hover (the first three are read back by ``clicked_cluster``) and the member table.
HOVER_COLUMNS = ("token_id", "token", "cluster", "length", "frequency", "gc", "ag")
MEMBER_COLUMNS = ("token_id", "token", "cluster", "length", "frequency", "gc", "ag", "ac", "cpg")
PROFILE_COLUMNS = ("cluster", "n_tokens", "gc_mean", "ag_mean", "ac_mean", "length_mean", "length_median",
                   "log10_frequency_mean", "example_tokens")
SHARE_MARKER = ".share_"  # tokens.parquet: <annotation>.share_<label>
STRAND_LABELS = {"_plus": " (+)", "_minus": " (−)"}

_HOVER_TEMPLATE = (
    "<b>%{customdata[1]}</b> · cluster %{customdata[2]}<br>"
    "id %{customdata[0]} · length %{customdata[3]} nt<br>"
    "frequency %{customdata[4]:,}<br>"
    "GC %{customdata[5]:.2f} · AG %{customdata[6]:.2f}"
    "<extra></extra>"
)

# The page's views (lazy tabs, one drawn at a time): link name -> tab label; the first is the default.
VIEWS = {"map": "Cluster map and GC against AG", "profiles": "Cluster and annotation profiles"}


def cluster_colour(cluster: int) -> str:
    """Return the fixed colour of a cluster number (grey for noise, -1)."""
    cluster = int(cluster)
    return NOISE_COLOUR if cluster == NOISE else CLUSTER_PALETTE[cluster % len(CLUSTER_PALETTE)]


def cluster_name(cluster: int) -> str:
    """Return how a cluster is named on screen: ``"cluster 3"`` (``"noise"`` for -1)."""
    return "noise" if int(cluster) == NOISE else f"cluster {int(cluster)}"


def _present(table: pd.DataFrame) -> list[tuple[int, str]]:
    return sorted({(int(l), str(m)) for l, m in zip(table["layer"], table["method"])})


def clustered_tokens(tokens: pd.DataFrame, clusters: pd.DataFrame, *, layer: int, method: str) -> pd.DataFrame:
    """Return the tokens clustered at ``layer`` with ``method``, with their properties.

    Parameters
    ----------
    tokens
        ``tokens.parquet``.
    clusters
        ``token_clusters.parquet`` (``layer``, ``method``, ``token_id``, ``cluster``).

    Returns
    -------
    pandas.DataFrame
        ``token_id``, ``cluster`` and every column of ``tokens``; one row per clustered token, sorted
        by ``token_id``.

    Raises
    ------
    ValueError
        When the clusters hold no row for that layer and method (the message lists what exists).
    """
    at = clusters[(clusters["layer"] == layer) & (clusters["method"] == method)]
    if at.empty:
        raise ValueError(f"No {method!r} clusters at layer {layer}; the run has (layer, method) {_present(clusters)}.")
    members = at[["token_id", "cluster"]].merge(tokens, on="token_id", how="left", validate="one_to_one")
    return members.sort_values("token_id", kind="stable").reset_index(drop=True)


def cluster_points(members: pd.DataFrame, projections: pd.DataFrame, *, layer: int, method: str) -> pd.DataFrame:
    """Return ``members`` (``clustered_tokens``) with ``x``, ``y`` of the token map at ``layer`` / ``method``.

    Tokens without a projection are left out (the caller compares the counts).

    Raises
    ------
    ValueError
        When the projections hold no row for that layer and method.
    """
    at = projections[(projections["layer"] == layer) & (projections["method"] == method)]
    if at.empty:
        raise ValueError(f"No {method!r} projection at layer {layer}; the run has (layer, method) {_present(projections)}.")
    return members.merge(at[["token_id", "x", "y"]], on="token_id", how="inner", validate="one_to_one")


def _scatter_traces(frame: pd.DataFrame, x: str, y: str, *, selected: int | None) -> list[go.Scatter]:
    """One trace per cluster (legend entry ``cluster k (n)``); clusters other than ``selected`` dimmed.

    SVG ``Scatter`` traces up to ``SVG_MAX_POINTS`` rows in all, WebGL ``Scattergl`` beyond (``scatter_type``).
    """
    trace_type = scatter_type(len(frame))
    sizes = marker_sizes(frame["frequency"])
    customdata = frame[list(HOVER_COLUMNS)].to_numpy(dtype=object)
    labels = frame["cluster"].to_numpy()
    traces = []
    for cluster in sorted(np.unique(labels).tolist()):
        mask = labels == cluster
        traces.append(trace_type(
            x=frame[x].to_numpy()[mask], y=frame[y].to_numpy()[mask], mode="markers",
            name=f"{cluster_name(cluster)} ({int(mask.sum()):,})", legendgroup=str(cluster),
            customdata=customdata[mask], hovertemplate=_HOVER_TEMPLATE,
            marker=dict(size=sizes[mask], color=cluster_colour(cluster), line=dict(width=0),
                        opacity=POINT_OPACITY if selected is None or cluster == selected else DIMMED_OPACITY),
        ))
    return traces


def _scatter_layout(fig: go.Figure, title: str | None) -> None:
    fig.update_layout(
        title=dict(text=title) if title else None, height=FIGURE_HEIGHT,
        margin=dict(l=10, r=10, t=50 if title else 10, b=10), hovermode="closest",
        legend=dict(title=dict(text="cluster (tokens)"), itemsizing="constant"),
    )


def cluster_map_figure(points: pd.DataFrame, *, method: str, selected: int | None = None,
                       title: str | None = None) -> go.Figure:
    """Return the token map coloured by cluster: one trace per cluster (WebGL beyond ``SVG_MAX_POINTS``), every row drawn.

    ``points`` is ``cluster_points(...)``; marker size grows with log frequency; ``selected`` (a
    cluster number) dims the other clusters. Each point's ``customdata`` is ``HOVER_COLUMNS``.
    """
    fig = go.Figure(_scatter_traces(points, "x", "y", selected=selected))
    _scatter_layout(fig, title)
    names = ("PC1", "PC2") if method == "pca" else (f"{method.upper()} 1", f"{method.upper()} 2")
    fig.update_xaxes(title=dict(text=names[0]), showticklabels=method == "pca", zeroline=False)
    fig.update_yaxes(title=dict(text=names[1]), showticklabels=method == "pca", zeroline=False)
    return fig


def gc_ag_figure(members: pd.DataFrame, *, selected: int | None = None, title: str | None = None) -> go.Figure:
    """Return GC content (x) against AG content (y) of every clustered token, coloured by cluster.

    Size grows with log frequency; dotted lines mark 0.5. Tokens of equal composition overlap
    (short tokens take few distinct values), which the hover and the member table resolve.
    """
    drawn = members[members["gc"].notna() & members["ag"].notna()]
    fig = go.Figure(_scatter_traces(drawn, "gc", "ag", selected=selected))
    _scatter_layout(fig, title)
    fig.update_xaxes(title=dict(text="GC content"), range=[-0.03, 1.03], zeroline=False)
    fig.update_yaxes(title=dict(text="AG content (strand signal)"), range=[-0.03, 1.03], zeroline=False)
    for line in (dict(x0=0.5, x1=0.5, y0=0, y1=1), dict(x0=0, x1=1, y0=0.5, y1=0.5)):
        fig.add_shape(type="line", line=dict(color="grey", width=1, dash="dot"), layer="below", **line)
    return fig


def profile_table(profiles: pd.DataFrame, *, layer: int, method: str) -> pd.DataFrame:
    """Return the profile rows of one layer and method (``PROFILE_COLUMNS``), sorted by cluster.

    Empty (with those columns) when the layer and method are absent.
    """
    at = profiles[(profiles["layer"] == layer) & (profiles["method"] == method)]
    columns = [c for c in PROFILE_COLUMNS if c in at.columns]
    return at.sort_values("cluster", kind="stable")[columns].reset_index(drop=True)


def profile_figure(profile: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Return four bar panels per cluster: tokens, GC/AG/AC means, length (mean bar, median dot), log10 frequency."""
    names = [cluster_name(c) for c in profile["cluster"]]
    colours = [cluster_colour(c) for c in profile["cluster"]]
    fig = make_subplots(rows=1, cols=4, horizontal_spacing=0.06, subplot_titles=(
        "tokens", "mean GC / AG / AC", "length (nt): mean, median ◆", "mean log10(1 + frequency)"))
    fig.add_trace(go.Bar(x=names, y=profile["n_tokens"], marker_color=colours, showlegend=False,
                         hovertemplate="%{x}: %{y:,} tokens<extra></extra>"), row=1, col=1)
    for column, label, colour in (("gc_mean", "GC", "#3B6FB6"), ("ag_mean", "AG", "#D1495B"), ("ac_mean", "AC", "#8F8F8F")):
        fig.add_trace(go.Bar(x=names, y=profile[column], name=label, marker_color=colour, legendgroup="composition",
                             hovertemplate=f"%{{x}}: mean {label} %{{y:.3f}}<extra></extra>"), row=1, col=2)
    fig.add_hline(y=0.5, line=dict(color="grey", width=1, dash="dot"), row=1, col=2)
    fig.add_trace(go.Bar(x=names, y=profile["length_mean"], marker_color=colours, showlegend=False,
                         hovertemplate="%{x}: mean length %{y:.2f} nt<extra></extra>"), row=1, col=3)
    fig.add_trace(go.Scatter(x=names, y=profile["length_median"], mode="markers", name="median length",
                             marker=dict(symbol="diamond", size=9, color="black"),
                             hovertemplate="%{x}: median length %{y:g} nt<extra></extra>"), row=1, col=3)
    fig.add_trace(go.Bar(x=names, y=profile["log10_frequency_mean"], marker_color=colours, showlegend=False,
                         hovertemplate="%{x}: mean log10(1 + frequency) %{y:.2f}<extra></extra>"), row=1, col=4)
    fig.update_layout(title=dict(text=title) if title else None, height=400, barmode="group",
                      margin=dict(l=10, r=10, t=90 if title else 50, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.12, xanchor="right", x=1.0))
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    return fig


def split_share_column(column: str) -> tuple[str, str]:
    """Split a tokens.parquet share column: ``"repeats.share_SINE/Alu_plus"`` -> ``("repeats", "SINE/Alu_plus")``.

    A column without ``.share_`` gives ``("", column)``.
    """
    annotation, marker, label = column.partition(SHARE_MARKER)
    return (annotation, label) if marker else ("", column)


def share_label(label: str) -> str:
    """Return a share label as shown: strand suffixes become ``(+)`` / ``(−)``.

    ``"SINE/Alu_minus"`` -> ``"SINE/Alu (−)"``; a label without a strand is unchanged.
    """
    for suffix, shown in STRAND_LABELS.items():
        if label.endswith(suffix):
            return label[: -len(suffix)] + shown
    return label


def annotation_title(name: str) -> str:
    """Return an annotation name as a title: ``"chromatin_states"`` -> ``"chromatin states"``."""
    return name.replace("_", " ")


@dataclass(frozen=True)
class EnrichmentMatrix:
    """Cluster x annotation-column tables of one layer and method, columns grouped by annotation.

    Each table has one row per cluster (ascending) and one column per ``cluster_enrichment``
    annotation column, in ``columns`` order; ``groups`` lists ``(annotation, its columns)`` in order
    of first appearance, with the ``any`` column last in its group.
    """

    log2: pd.DataFrame
    q_value: pd.DataFrame
    mean_share: pd.DataFrame
    background_share: pd.DataFrame
    groups: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def columns(self) -> list[str]:
        return [c for _, cols in self.groups for c in cols]

    def significant(self, q_threshold: float = Q_THRESHOLD) -> pd.DataFrame:
        """Boolean table: True where q < ``q_threshold`` (NaN q is never significant)."""
        return self.q_value.lt(q_threshold)


def enrichment_matrix(enrichment: pd.DataFrame, *, layer: int, method: str) -> EnrichmentMatrix | None:
    """Return the enrichment of one layer and method as cluster x column tables; None when absent."""
    at = enrichment[(enrichment["layer"] == layer) & (enrichment["method"] == method)]
    if at.empty:
        return None
    grouped: dict[str, list[str]] = {}
    for column in dict.fromkeys(at["annotation"].astype(str)):
        grouped.setdefault(split_share_column(column)[0], []).append(column)
    groups = tuple(
        (name, tuple(sorted(cols, key=lambda c: split_share_column(c)[1] == "any")))  # stable: "any" last
        for name, cols in grouped.items()
    )
    order = [c for _, cols in groups for c in cols]
    clusters = sorted(int(c) for c in at["cluster"].unique())

    def table(value: str) -> pd.DataFrame:
        wide = at.pivot_table(index="cluster", columns="annotation", values=value, aggfunc="first", dropna=False)
        wide = wide.reindex(index=clusters, columns=order)
        wide.columns.name = None
        return wide

    return EnrichmentMatrix(table("log2_enrichment"), table("q_value"), table("mean_share"),
                            table("background_share"), groups)


def enrichment_figure(matrix: EnrichmentMatrix, *, q_threshold: float = Q_THRESHOLD,
                      title: str | None = None) -> go.Figure:
    """Return the heatmap of log2 enrichment, cluster (rows) x annotation label (columns), one panel per annotation.

    One diverging colour scale centred on 0 (symmetric range) is shared by every panel; cells with
    q < ``q_threshold`` carry ``SIGNIFICANT_MARK``. Hover gives the shares and q.
    """
    groups = matrix.groups
    fig = make_subplots(rows=1, cols=len(groups), shared_yaxes=True, horizontal_spacing=0.03,
                        column_widths=[len(cols) for _, cols in groups],
                        subplot_titles=[annotation_title(name) or "other" for name, _ in groups])
    names = [cluster_name(c) for c in matrix.log2.index]
    significant = matrix.significant(q_threshold)
    finite = matrix.log2.to_numpy(dtype=float)
    limit = float(np.nanmax(np.abs(finite))) if np.isfinite(finite).any() else 1.0
    limit = max(limit, 0.5)  # a flat matrix still gets a readable scale
    for index, (_, columns) in enumerate(groups, start=1):
        cols = list(columns)
        labels = [share_label(split_share_column(c)[1]) for c in cols]
        text = np.where(significant[cols].to_numpy(), SIGNIFICANT_MARK, "")
        customdata = np.stack([matrix.mean_share[cols].to_numpy(dtype=float),
                               matrix.background_share[cols].to_numpy(dtype=float),
                               matrix.q_value[cols].to_numpy(dtype=float)], axis=-1)
        fig.add_trace(go.Heatmap(
            z=matrix.log2[cols].to_numpy(dtype=float), x=labels, y=names, text=text, texttemplate="%{text}",
            textfont=dict(size=16), coloraxis="coloraxis", customdata=customdata, xgap=1, ygap=1,
            hovertemplate="%{y} · %{x}<br>log2 enrichment %{z:.2f}<br>mean share %{customdata[0]:.3f} "
            "(all tokens %{customdata[1]:.3f})<br>q %{customdata[2]:.2g}<extra></extra>",
        ), row=1, col=index)
    fig.update_layout(
        title=dict(text=title) if title else None, height=max(380, 190 + 34 * len(names)),
        margin=dict(l=10, r=10, t=80 if title else 40, b=10),
        coloraxis=dict(colorscale="RdBu_r", cmin=-limit, cmax=limit,
                       colorbar=dict(title=dict(text="log2 enrichment", side="right"), thickness=14, len=1.0)),
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=-45)
    return fig


def cluster_members(members: pd.DataFrame, cluster: int) -> pd.DataFrame:
    """Return the tokens of one cluster (``MEMBER_COLUMNS``), most frequent first."""
    columns = [c for c in MEMBER_COLUMNS if c in members.columns]
    chosen = members[members["cluster"] == cluster]
    return chosen.sort_values(["frequency", "token_id"], ascending=[False, True], kind="stable")[columns].reset_index(drop=True)


def selection_signature(selection: Mapping[str, Any] | None) -> tuple | None:
    """Return a hashable summary of a plotly selection (which points), or None when nothing is selected.

    The page applies a click once: it remembers the signature it acted on.
    """
    points = (selection or {}).get("points") or ()
    if not points:
        return None
    return tuple((p.get("curve_number"), p.get("point_index", p.get("point_number"))) for p in points)


def clicked_cluster(selection: Mapping[str, Any] | None) -> int | None:
    """Return the cluster of the first selected point (its ``customdata[2]``), or None.

    Points without that customdata (not from these figures) are skipped.
    """
    for point in (selection or {}).get("points") or ():
        data = point.get("customdata")
        if isinstance(data, Sequence) and not isinstance(data, str) and len(data) > 2:
            try:
                return int(data[2])
            except (TypeError, ValueError):
                continue
    return None
