"""Figures and tables of the Vocabularies page (no Streamlit here, so all of it is unit-tested).

The page reads, per vocabulary stored in a run (``vocabularies/<name>/``), the token table
(``analysis.vocabulary.VOCABULARY_COLUMNS``) and the summary (``SUMMARY_FIELDS``), and the
``vocabularies/comparison/`` tables (``analysis.segmentation``). The builders here put two or more
vocabularies side by side: the GROVER-paper numbers, token lengths, frequency against length, GC,
shared and unique tokens of a pair, nucleotides per token across BPE cycle counts, and one sequence
segmented by each vocabulary as coloured blocks aligned on the nucleotides.

Every function takes vocabulary names in the order they should appear; colours come from
``vocabulary_colours`` (one colour per vocabulary of the run, the same in every figure).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from analysis.segmentation import boundary_agreement, length_distribution
from analysis.vocabulary import shared_tokens
from dashboard.figures import CHAR_PX, scatter_type

PALETTE = [c for c in qualitative.D3 if c != "#7F7F7F"]  # per vocabulary, in the run's order; grey means "shared"
TINT = 0.55  # share of white mixed into a vocabulary's colour for every other token block
NUCLEOTIDE_COLOURS = {"A": "#2CA02C", "C": "#1F77B4", "G": "#FF9F1C", "T": "#D62728"}  # others grey
OTHER_COLOUR = "#BBBBBB"  # N, IUPAC letters and [UNK] blocks
SEQUENCE_ROW = "sequence"  # the top row of the segmentation figure: one block per nucleotide
MAX_PASTED = 5_000  # nt: a pasted sequence is segmented live, by every chosen vocabulary
DEFAULT_WINDOW = 100  # nt shown at first in the segmentation figure (the slider moves it)
ALLOWED_LETTERS = frozenset("ACGTN")
GOLDEN = 0.6180339887  # spreads tokens of one length across the jitter band, deterministically
DODGE = 0.7  # share of a length unit the vocabularies' point columns span in the scatter
MAX_GROUPED_BARS = 3  # more vocabularies than this draw the length histograms as lines (bars get too thin)
UNIT_TICKS_UP_TO = 20  # nt: longer length axes get automatic ticks instead of one per length
# Margins wide enough for the axis titles, tick labels and a one-row legend below the plot, so that plotly
# draws a figure once (when they need more room than the margin gives, it draws the whole figure again).
AXIS_MARGINS = {"l": 80, "b": 100}

# The GROVER paper's 600-cycle vocabulary on hg19 (/work/shared/reference/GROVER.md). Its "mean
# length 4.07 nt" is read as nucleotides per token (analysis.vocabulary explains why).
PAPER_LABEL = "GROVER paper (hg19, 600 cycles)"
PAPER_ROW: dict[str, Any] = {
    "vocabulary": PAPER_LABEL, "tokens": 601, "nt_per_token": 4.07, "nt_per_token_regions": math.nan,
    "mean_length": math.nan, "length_range": "1–16", "kmers_5": 213, "kmers_6": 224, "starts_with_at": 0.97,
    "cg_token": False, "frequency_balance": math.nan, "spearman_length_frequency": math.nan,
    "unused_tokens": math.nan,
}
# Summary table: column -> label shown on the page (and in the CSV header of the page's table).
SUMMARY_LABELS: dict[str, str] = {
    "vocabulary": "vocabulary",
    "tokens": "tokens",
    "nt_per_token": "nt per token (genome)",
    "nt_per_token_regions": "nt per token (1-kb regions)",
    "mean_length": "mean length (nt)",
    "length_range": "length range (nt)",
    "kmers_5": "5-mers",
    "kmers_6": "6-mers",
    "starts_with_at": "start with A/T",
    "cg_token": "CG is a token",
    "frequency_balance": "frequency balance",
    "spearman_length_frequency": "Spearman length~frequency",
    "unused_tokens": "unused tokens",
}
MEMBERSHIP = ("shared", "only in A", "only in B")  # pair_tokens' ``membership`` values, in this order

# The page's views (lazy tabs, one drawn at a time): link name -> tab label; the first is the default.
VIEWS = {"lengths": "Lengths and frequency", "gc": "GC content", "cycles": "Merge cycles",
         "pair": "Shared and unique tokens", "segmentation": "One sequence segmented"}


# ---------------------------------------------------------------------------------------------
# Names, selection and colours
# ---------------------------------------------------------------------------------------------

def own_vocabulary(manifest: Mapping[str, Any]) -> str | None:
    """Return the name the run's own vocabulary has under ``vocabularies/`` (``bpe_<cycles>``), or None.

    >>> own_vocabulary({"vocabulary": {"kind": "bpe", "cycles": 600}})
    'bpe_600'
    """
    vocabulary = manifest.get("vocabulary") or {}
    cycles = vocabulary.get("cycles")
    return f"bpe_{int(cycles)}" if cycles is not None and vocabulary.get("kind", "bpe") == "bpe" else None


def kind_and_size(name: str) -> tuple[str, int | None]:
    """Split a vocabulary name into its kind and number: ``bpe_600`` -> ("bpe", 600), ``kmer_6`` -> ("kmer", 6).

    >>> kind_and_size("kmer_6"), kind_and_size("grover")
    (('kmer', 6), ('grover', None))
    """
    kind, _, number = name.rpartition("_")
    return (kind, int(number)) if kind and number.isdigit() else (name, None)


def default_selection(names: Sequence[str], own: str | None) -> list[str]:
    """Return the vocabularies the page opens with: the run's own and one other, in the run's order.

    The other is the BPE vocabulary with the most cycles below the run's (the paper's comparison of
    cycle counts), else the next BPE above it, else the first k-mer vocabulary.

    >>> default_selection(["bpe_100", "bpe_600", "bpe_1000", "kmer_6"], "bpe_600")
    ['bpe_100', 'bpe_600']
    >>> default_selection(["bpe_600", "kmer_4"], "bpe_600")
    ['bpe_600', 'kmer_4']
    """
    names = list(names)
    if not names:
        return []
    own = own if own in names else names[0]
    bpe = [n for n in names if kind_and_size(n)[0] == "bpe" and n != own]
    own_size = kind_and_size(own)[1] or 0
    below = [n for n in bpe if (kind_and_size(n)[1] or 0) < own_size]
    others = below[-1:] or bpe[:1] or [n for n in names if n != own][:1]
    chosen = {own, *others}
    return [n for n in names if n in chosen]


def parse_names(text: str) -> list[str]:
    """Return the names in a comma-separated link value (``bpe_100,bpe_600``), blanks and repeats dropped.

    >>> parse_names(" bpe_100, bpe_600,,bpe_100 ")
    ['bpe_100', 'bpe_600']
    """
    return list(dict.fromkeys(part.strip() for part in str(text).split(",") if part.strip()))


def in_run_order(chosen: Sequence[str], names: Sequence[str]) -> list[str]:
    """Return the chosen names that the run holds, in the run's order (BPE by cycles, then k-mers)."""
    wanted = set(chosen)
    return [n for n in names if n in wanted]


def vocabulary_colours(names: Sequence[str]) -> dict[str, str]:
    """Return one colour per vocabulary of the run (by its place in the run's list, so stable across selections)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def tint(colour: str, amount: float = TINT) -> str:
    """Return ``#rrggbb`` mixed with ``amount`` of white (0 = unchanged, 1 = white).

    >>> tint("#000000", 0.5)
    'rgb(128,128,128)'
    """
    colour = colour.lstrip("#")
    rgb = [int(colour[i:i + 2], 16) for i in (0, 2, 4)]
    mixed = [round(c + (255 - c) * amount) for c in rgb]
    return f"rgb({mixed[0]},{mixed[1]},{mixed[2]})"


def _colour(colours: Mapping[str, str] | None, name: str, index: int) -> str:
    return (colours or {}).get(name) or PALETTE[index % len(PALETTE)]


def _tokens_only(table: pd.DataFrame) -> pd.DataFrame:
    return table.loc[~table["is_special"].to_numpy(dtype=bool)]


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


# ---------------------------------------------------------------------------------------------
# Summary table (the GROVER-paper numbers)
# ---------------------------------------------------------------------------------------------

def summary_table(summaries: Mapping[str, Mapping[str, Any]], *, segmentation: pd.DataFrame | None = None,
                  include_paper: bool = False) -> pd.DataFrame:
    """Return one row per vocabulary with the numbers the GROVER paper gives for its vocabulary.

    Parameters
    ----------
    summaries
        Name -> ``vocabulary_summary.json`` (``analysis.vocabulary.SUMMARY_FIELDS``), in display order.
    segmentation
        ``vocabularies/comparison/summary.parquet`` (``vocabulary``, ``nucleotides_per_token``), or None.
    include_paper
        Append the paper's 600-cycle vocabulary (``PAPER_ROW``; NaN where the paper gives no number).

    Returns
    -------
    DataFrame with the columns of ``SUMMARY_LABELS`` (internal names): ``vocabulary``, ``tokens``
    (non-special), ``nt_per_token`` (frequency-weighted mean length over the genome),
    ``nt_per_token_regions`` (the same over the 1-kb comparison regions; NaN without the table),
    ``mean_length`` (unweighted), ``length_range`` ("min–max"), ``kmers_5``, ``kmers_6``,
    ``starts_with_at`` (share), ``cg_token`` (bool), ``frequency_balance``,
    ``spearman_length_frequency``, ``unused_tokens``.
    """
    regions = {}
    if segmentation is not None and len(segmentation):
        regions = dict(zip(segmentation["vocabulary"].astype(str), segmentation["nucleotides_per_token"].astype(float)))
    rows = []
    for name, s in summaries.items():
        rows.append({
            "vocabulary": name, "tokens": int(s["vocab_size"]), "nt_per_token": _nan(s.get("nucleotides_per_token")),
            "nt_per_token_regions": regions.get(name, math.nan), "mean_length": _nan(s.get("mean_length")),
            "length_range": f"{s.get('min_length', '?')}–{s.get('max_length', '?')}",
            "kmers_5": int(s.get("kmers_5", 0)), "kmers_6": int(s.get("kmers_6", 0)),
            "starts_with_at": _nan(s.get("share_starting_with_at")), "cg_token": bool(s.get("has_cg_token")),
            "frequency_balance": _nan(s.get("frequency_balance")),
            "spearman_length_frequency": _nan(s.get("spearman_length_frequency")),
            "unused_tokens": _nan(s.get("unused_tokens")),
        })
    if include_paper:
        rows.append(dict(PAPER_ROW))
    return pd.DataFrame(rows, columns=list(SUMMARY_LABELS))


# ---------------------------------------------------------------------------------------------
# Token lengths
# ---------------------------------------------------------------------------------------------

def length_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Return tokens per length per vocabulary (``analysis.segmentation.length_distribution``).

    Columns ``vocabulary``, ``length``, ``n_tokens``, ``token_share`` (of the vocabulary's tokens)
    and ``occurrence_share`` (of the genome's token occurrences); special tokens left out.
    """
    return length_distribution(tables)


def length_histogram_figure(lengths: pd.DataFrame, *, colours: Mapping[str, str] | None = None,
                            title: str = "") -> go.Figure:
    """Return two histograms side by side: tokens per length, and genome occurrences per length.

    ``lengths`` is ``length_table`` output; bars are grouped by vocabulary in the order they appear
    (lines with markers instead when there are more than ``MAX_GROUPED_BARS`` vocabularies).
    Shares (not counts) make vocabularies of different sizes comparable; counts are on hover.
    """
    as_lines = lengths["vocabulary"].nunique() > MAX_GROUPED_BARS
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=(
        "Tokens per length (share of the vocabulary)", "Genome occurrences per token length (share)"))
    for i, (name, rows) in enumerate(lengths.groupby("vocabulary", sort=False)):
        colour = _colour(colours, str(name), i)
        if as_lines:  # a line must drop to zero at lengths without tokens, not jump over them
            every = pd.RangeIndex(int(rows["length"].min()), int(rows["length"].max()) + 1, name="length")
            rows = rows.set_index("length").reindex(every).fillna({"n_tokens": 0, "token_share": 0.0,
                                                                   "occurrence_share": 0.0}).reset_index()
        custom = rows["n_tokens"].to_numpy(dtype=np.int64)
        for col, column in ((1, "token_share"), (2, "occurrence_share")):
            style = ({"mode": "lines+markers", "line": {"color": colour, "width": 2}, "marker": {"size": 5}}
                     if as_lines else {"marker_color": colour})
            fig.add_trace((go.Scatter if as_lines else go.Bar)(
                x=rows["length"], y=rows[column], name=str(name), legendgroup=str(name), showlegend=col == 1,
                customdata=custom, **style,
                hovertemplate=(f"<b>{name}</b><br>length %{{x}} nt<br>%{{customdata:,}} tokens"
                               "<br>share: %{y:.1%}<extra></extra>"),
            ), row=1, col=col)
    fig.update_layout(barmode="group", bargap=0.15, height=420, title=title or None,
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 70, **AXIS_MARGINS})
    short = len(lengths) and lengths["length"].max() <= UNIT_TICKS_UP_TO
    fig.update_xaxes(title_text="token length (nt)", dtick=1 if short else None)
    fig.update_yaxes(tickformat=".0%")
    return fig


# ---------------------------------------------------------------------------------------------
# Frequency against length
# ---------------------------------------------------------------------------------------------

def frequency_length_points(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Return one row per non-special token of every vocabulary, with its dodged and jittered x position.

    Returns
    -------
    DataFrame with ``vocabulary``, ``token``, ``length``, ``frequency``, ``x`` (length, moved by the
    vocabulary's place so the vocabularies stand side by side within ``DODGE`` of a length unit, and
    spread within that column by the token id's golden-ratio fraction: deterministic) and
    ``drawn`` (frequency > 0: a zero has no place on the log axis).
    """
    n = max(len(tables), 1)
    width = DODGE / n
    frames = []
    for i, (name, table) in enumerate(tables.items()):
        tokens = _tokens_only(table)
        ids = tokens["token_id"].to_numpy(dtype=np.int64)
        spread = (np.mod(ids * GOLDEN, 1.0) - 0.5) * width * 0.8
        centre = (i - (n - 1) / 2) * width
        frames.append(pd.DataFrame({
            "vocabulary": str(name), "token": tokens["token"].to_numpy(dtype=object),
            "length": tokens["length"].to_numpy(dtype=np.int64),
            "frequency": tokens["frequency"].to_numpy(dtype=np.int64),
            "x": tokens["length"].to_numpy(dtype=float) + centre + spread,
        }))
    if not frames:
        return pd.DataFrame(columns=["vocabulary", "token", "length", "frequency", "x", "drawn"])
    points = pd.concat(frames, ignore_index=True)
    points["drawn"] = points["frequency"] > 0
    return points


def frequency_length_figure(points: pd.DataFrame, summaries: Mapping[str, Mapping[str, Any]] | None = None, *,
                            colours: Mapping[str, str] | None = None, title: str = "",
                            webgl: bool | None = None) -> go.Figure:
    """Return the frequency-against-length scatter (log y), one trace per vocabulary, with medians.

    ``points`` is ``frequency_length_points`` output; only ``drawn`` rows are plotted. The legend
    names each vocabulary's Spearman rho of length against frequency (from its summary). The token
    traces are ``Scattergl`` when ``webgl`` is True, SVG ``Scatter`` when False; by default WebGL only
    for more than ``figures.SVG_MAX_POINTS`` drawn tokens.
    """
    n_drawn = int(points["drawn"].sum()) if len(points) else 0
    scatter = scatter_type(n_drawn, webgl)
    fig = go.Figure()
    for i, (name, rows) in enumerate(points.groupby("vocabulary", sort=False)):
        name = str(name)
        colour = _colour(colours, name, i)
        rho = _nan(((summaries or {}).get(name) or {}).get("spearman_length_frequency"))
        label = name if math.isnan(rho) else f"{name} (Spearman {rho:+.2f})"
        drawn = rows.loc[rows["drawn"]]
        fig.add_trace(scatter(
            x=drawn["x"], y=drawn["frequency"], mode="markers", name=label, legendgroup=name,
            marker={"color": colour, "size": 5, "opacity": 0.6},
            customdata=np.column_stack([drawn["token"].to_numpy(dtype=object), drawn["length"].to_numpy()]),
            hovertemplate=f"<b>%{{customdata[0]}}</b> ({name})<br>length %{{customdata[1]}} nt"
                          "<br>frequency %{y:,}<extra></extra>",
        ))
        medians = drawn.groupby("length")["frequency"].median()
        fig.add_trace(go.Scatter(
            x=medians.index.to_numpy(dtype=float), y=medians.to_numpy(), mode="lines+markers",
            name=f"{name} median", legendgroup=name, showlegend=False,
            line={"color": colour, "width": 2}, marker={"symbol": "diamond", "size": 8, "color": colour},
            hovertemplate=f"{name}: median frequency %{{y:,.0f}} at length %{{x}} nt<extra></extra>",
        ))
    fig.update_layout(height=460, title=title or None, legend={"orientation": "h", "y": -0.18},
                      margin={**AXIS_MARGINS, "b": 115})  # longer legend entries (Spearman rho)
    short = len(points) and points["length"].max() <= UNIT_TICKS_UP_TO
    fig.update_xaxes(title_text="token length (nt); vocabularies side by side within each length",
                     dtick=1 if short else None, rangemode="nonnegative")
    fig.update_yaxes(title_text="frequency in the genome (log)", type="log", dtick=1)
    return fig


# ---------------------------------------------------------------------------------------------
# GC content
# ---------------------------------------------------------------------------------------------

def gc_points(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Return ``vocabulary``, ``token``, ``length``, ``frequency``, ``gc`` for every non-special token."""
    frames = [_tokens_only(table)[["token", "length", "frequency", "gc"]].assign(vocabulary=str(name))
              for name, table in tables.items()]
    if not frames:
        return pd.DataFrame(columns=["vocabulary", "token", "length", "frequency", "gc"])
    return pd.concat(frames, ignore_index=True)[["vocabulary", "token", "length", "frequency", "gc"]]


def gc_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Return per vocabulary the mean GC of its tokens, and of its token occurrences in the genome.

    Columns ``vocabulary``, ``tokens``, ``mean_gc`` (each token once) and ``occurrence_gc``
    (weighted by frequency; NaN when no token occurs).

    >>> gc_summary(pd.DataFrame({"vocabulary": ["a", "a"], "gc": [0.0, 1.0], "frequency": [3, 1]}))
      vocabulary  tokens  mean_gc  occurrence_gc
    0          a       2      0.5           0.25
    """
    rows = []
    for name, group in points.groupby("vocabulary", sort=False):
        weights = group["frequency"].to_numpy(dtype=float)
        gc = group["gc"].to_numpy(dtype=float)
        rows.append({"vocabulary": str(name), "tokens": len(group),
                     "mean_gc": float(np.mean(gc)) if len(gc) else math.nan,
                     "occurrence_gc": float(np.average(gc, weights=weights)) if weights.sum() > 0 else math.nan})
    return pd.DataFrame(rows, columns=["vocabulary", "tokens", "mean_gc", "occurrence_gc"])


def gc_figure(points: pd.DataFrame, *, genome_gc: float | None = None, colours: Mapping[str, str] | None = None,
              title: str = "") -> go.Figure:
    """Return one violin of token GC content per vocabulary (box and mean inside), side by side.

    A diamond marks the occurrence-weighted mean GC (tokens as the genome uses them); a dashed line
    the genome's GC content when ``genome_gc`` is given.
    """
    fig = go.Figure()
    summary = gc_summary(points).set_index("vocabulary")
    for i, (name, rows) in enumerate(points.groupby("vocabulary", sort=False)):
        name = str(name)
        colour = _colour(colours, name, i)
        fig.add_trace(go.Violin(
            x=[name] * len(rows), y=rows["gc"], name=name, legendgroup=name, line_color=colour,
            fillcolor=tint(colour, 0.6),
            box_visible=True, meanline_visible=True, points=False, spanmode="hard", scalemode="width",
            hoverinfo="y+name",
        ))
        weighted = summary.loc[name, "occurrence_gc"]
        if not math.isnan(weighted):
            fig.add_trace(go.Scatter(
                x=[name], y=[weighted], mode="markers", name=f"{name}: occurrence-weighted mean",
                legendgroup=name, showlegend=False, marker={"symbol": "diamond", "size": 12, "color": "black"},
                hovertemplate=f"{name}: GC of token occurrences %{{y:.3f}}<extra></extra>",
            ))
    if genome_gc is not None and not math.isnan(genome_gc):
        fig.add_hline(y=genome_gc, line_dash="dash", line_color="grey",
                      annotation_text=f"genome GC {genome_gc:.3f}", annotation_position="top left")
    fig.update_layout(height=420, title=title or None, showlegend=False, violinmode="overlay", margin=AXIS_MARGINS)
    fig.update_yaxes(title_text="GC content of the token", range=[-0.02, 1.02])
    return fig


# ---------------------------------------------------------------------------------------------
# Shared and unique tokens of a pair
# ---------------------------------------------------------------------------------------------

def pair_tokens(table_a: pd.DataFrame, table_b: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return every token of two vocabularies with where it is found, and the counts.

    Returns
    -------
    tokens
        DataFrame with ``token``, ``length``, ``membership`` (``MEMBERSHIP``: "shared", "only in A",
        "only in B"), ``frequency_a``, ``frequency_b`` (genome occurrences in each segmentation; NaN
        where the vocabulary lacks the token), ``gc``; ordered by membership, length, token.
    counts
        ``analysis.vocabulary.shared_tokens`` counts: ``shared``, ``only_in_a``, ``only_in_b``, ``jaccard``.
    """
    a, b = _tokens_only(table_a), _tokens_only(table_b)
    result = shared_tokens(a, b)
    freq_a = dict(zip(a["token"], a["frequency"]))
    freq_b = dict(zip(b["token"], b["frequency"]))
    gc = {**dict(zip(b["token"], b["gc"])), **dict(zip(a["token"], a["gc"]))}
    rows = []
    for membership, key in zip(MEMBERSHIP, ("shared_tokens", "only_in_a_tokens", "only_in_b_tokens")):
        for token in result[key]:
            rows.append((token, len(token), membership, freq_a.get(token, math.nan), freq_b.get(token, math.nan),
                         gc.get(token, math.nan)))
    tokens = pd.DataFrame(rows, columns=["token", "length", "membership", "frequency_a", "frequency_b", "gc"])
    tokens["length"] = tokens["length"].astype(np.int64)
    counts = {key: result[key] for key in ("shared", "only_in_a", "only_in_b", "jaccard")}
    return tokens, counts


def pair_by_length(tokens: pd.DataFrame) -> pd.DataFrame:
    """Return tokens per length and membership of a ``pair_tokens`` table (``length`` x ``MEMBERSHIP`` counts).

    >>> pair_by_length(pd.DataFrame({"length": [1, 1, 2], "membership": ["shared", "only in B", "shared"]}))
       length  shared  only in A  only in B
    0       1       1          0          1
    1       2       1          0          0
    """
    counts = pd.crosstab(tokens["length"], tokens["membership"]).reindex(columns=list(MEMBERSHIP), fill_value=0)
    counts.columns.name = None
    return counts.reset_index().astype(np.int64)


def pair_figure(by_length: pd.DataFrame, name_a: str, name_b: str, *, colours: Mapping[str, str] | None = None,
                title: str = "") -> go.Figure:
    """Return stacked bars of tokens per length: shared (grey), only in A, only in B (their colours)."""
    fill = {"shared": "#9E9E9E", "only in A": _colour(colours, name_a, 0), "only in B": _colour(colours, name_b, 1)}
    label = {"shared": "shared", "only in A": f"only in {name_a}", "only in B": f"only in {name_b}"}
    fig = go.Figure()
    for membership in MEMBERSHIP:
        fig.add_trace(go.Bar(
            x=by_length["length"], y=by_length[membership], name=label[membership], marker_color=fill[membership],
            hovertemplate=f"{label[membership]}<br>length %{{x}} nt: %{{y:,}} tokens<extra></extra>",
        ))
    fig.update_layout(barmode="stack", height=380, title=title or None,
                      legend={"orientation": "h", "y": -0.22, "traceorder": "normal"}, margin=AXIS_MARGINS)
    short = len(by_length) and by_length["length"].max() <= UNIT_TICKS_UP_TO
    fig.update_xaxes(title_text="token length (nt)", dtick=1 if short else None)
    fig.update_yaxes(title_text="tokens")
    return fig


def pair_agreement(agreement: pd.DataFrame | None, name_a: str, name_b: str) -> dict[str, Any] | None:
    """Return the boundary agreement of a pair from ``comparison/agreement.parquet``, oriented as (a, b).

    The table holds each unordered pair once; a row stored as (b, a) comes back with its
    ``share_of_a_in_b`` / ``share_of_b_in_a`` and ``boundaries_a`` / ``boundaries_b`` swapped.
    None when the table or the pair is missing.
    """
    if agreement is None or name_a == name_b:
        return None
    for first, second, swap in ((name_a, name_b, False), (name_b, name_a, True)):
        rows = agreement.loc[(agreement["vocabulary_a"] == first) & (agreement["vocabulary_b"] == second)]
        if len(rows):
            row = rows.iloc[0].to_dict()
            if swap:
                row["share_of_a_in_b"], row["share_of_b_in_a"] = row["share_of_b_in_a"], row["share_of_a_in_b"]
                row["boundaries_a"], row["boundaries_b"] = row["boundaries_b"], row["boundaries_a"]
                row["vocabulary_a"], row["vocabulary_b"] = name_a, name_b
            return row
    return None


# ---------------------------------------------------------------------------------------------
# Nucleotides per token across BPE cycle counts
# ---------------------------------------------------------------------------------------------

def cycles_table(summaries: Mapping[str, Mapping[str, Any]], *,
                 segmentation: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return one row per vocabulary: ``vocabulary``, ``kind`` (bpe / kmer / ...), ``size`` (cycles or k),
    ``tokens``, ``nt_per_token`` (genome), ``nt_per_token_regions`` (1-kb comparison regions; NaN
    without them) and ``mean_length`` (unweighted); BPE rows sorted by cycles, then the others.
    """
    regions = {}
    if segmentation is not None and len(segmentation):
        regions = dict(zip(segmentation["vocabulary"].astype(str), segmentation["nucleotides_per_token"].astype(float)))
    rows = []
    for name, s in summaries.items():
        kind, size = kind_and_size(name)
        rows.append({"vocabulary": name, "kind": kind, "size": size, "tokens": int(s["vocab_size"]),
                     "nt_per_token": _nan(s.get("nucleotides_per_token")),
                     "nt_per_token_regions": regions.get(name, math.nan), "mean_length": _nan(s.get("mean_length"))})
    table = pd.DataFrame(rows, columns=["vocabulary", "kind", "size", "tokens", "nt_per_token",
                                        "nt_per_token_regions", "mean_length"])
    order = table["kind"].ne("bpe").astype(int) * 10**9 + table["size"].fillna(0).astype(np.int64)
    return table.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def cycles_figure(table: pd.DataFrame, *, selected: Sequence[str] = (), own: str | None = None,
                  title: str = "") -> go.Figure:
    """Return nucleotides per token against BPE merge cycles, with k-mer vocabularies as reference lines.

    Lines: genome-wide nucleotides per token (solid), the same over the 1-kb comparison regions
    (dashed, when known) and the unweighted mean token length (dotted). Selected vocabularies get
    larger markers; the run's own is labelled.
    """
    bpe = table.loc[table["kind"] == "bpe"]
    fig = go.Figure()
    sizes = [13 if name in set(selected) else 7 for name in bpe["vocabulary"]]
    custom = np.column_stack([bpe["vocabulary"].to_numpy(dtype=object), bpe["tokens"].to_numpy()]) if len(bpe) else None
    line_colours = {"nt_per_token": "#1F77B4", "nt_per_token_regions": "#2CA02C", "mean_length": "#7F7F7F"}
    lines = (("nt_per_token", "nucleotides per token (genome)", "solid"),
             ("nt_per_token_regions", "nucleotides per token (1-kb regions)", "dash"),
             ("mean_length", "mean token length (unweighted)", "dot"))
    for column, label, dash in lines:
        if not len(bpe) or bpe[column].isna().all():
            continue
        fig.add_trace(go.Scatter(
            x=bpe["size"], y=bpe[column], mode="lines+markers", name=label, customdata=custom,
            line={"dash": dash, "color": line_colours[column]}, marker={"size": sizes, "color": line_colours[column]},
            hovertemplate=(f"<b>%{{customdata[0]}}</b> (%{{customdata[1]:,}} tokens)<br>{label}: %{{y:.2f}}"
                           "<extra></extra>"),
        ))
    if own is not None and own in set(bpe["vocabulary"]):
        row = bpe.loc[bpe["vocabulary"] == own].iloc[0]
        fig.add_annotation(x=row["size"], y=row["nt_per_token"], text=f"this run ({own})", showarrow=True, arrowhead=2,
                           ay=-35)
    for _, row in table.loc[table["kind"] == "kmer"].iterrows():
        if not math.isnan(row["nt_per_token"]):
            fig.add_hline(y=row["nt_per_token"], line_dash="dashdot", line_color="#D62728",
                          annotation_text=f"{row['vocabulary']}: {row['nt_per_token']:.2f}",
                          annotation_position="bottom right")
    fig.update_layout(height=420, title=title or None, legend={"orientation": "h", "y": -0.22}, margin=AXIS_MARGINS)
    fig.update_xaxes(title_text="BPE merge cycles")
    fig.update_yaxes(title_text="nucleotides per token")
    return fig


# ---------------------------------------------------------------------------------------------
# One sequence segmented by each vocabulary
# ---------------------------------------------------------------------------------------------

def clean_sequence(text: str, *, max_length: int = MAX_PASTED) -> tuple[str, str | None]:
    """Return ``(sequence, problem)`` for pasted text: FASTA header lines and white space dropped, upper case.

    ``problem`` is None when the sequence can be segmented, else why not (empty, letters other than
    A/C/G/T/N with the first position of one, or longer than ``max_length``); the sequence is then "".

    >>> clean_sequence(">chr1\\nacgt\\nNNac")
    ('ACGTNNAC', None)
    >>> clean_sequence("ACGRT")[1]
    'Only A, C, G, T and N are read; the sequence holds R (first at position 4).'
    """
    lines = [line for line in str(text).splitlines() if not line.lstrip().startswith(">")]
    sequence = "".join("".join(lines).split()).upper()
    if not sequence:
        return "", "Paste a DNA sequence (A, C, G, T or N; FASTA header lines are skipped)."
    bad = sorted(set(sequence) - ALLOWED_LETTERS)
    if bad:
        first = min(sequence.index(letter) for letter in bad)
        shown = ", ".join(bad[:10]) + (" …" if len(bad) > 10 else "")
        return "", f"Only A, C, G, T and N are read; the sequence holds {shown} (first at position {first + 1})."
    if len(sequence) > max_length:
        return "", (f"The sequence has {len(sequence):,} nt; paste at most {max_length:,} nt "
                    "(each vocabulary segments it live).")
    return sequence, None


def region_label(chromosome: str, start: int, end: int) -> str:
    """Return ``chr1:4,926-5,925`` (1-based, inclusive: how genome browsers write a 0-based half-open span).

    >>> region_label("chr1", 4925, 5925)
    'chr1:4,926-5,925'
    """
    return f"{chromosome}:{int(start) + 1:,}-{int(end):,}"


def parse_span(text: str) -> tuple[int, int]:
    """Parse a ``?span=`` link value ``"0-200"`` into ``(0, 200)``; raises ValueError when malformed.

    >>> parse_span("10-250")
    (10, 250)
    """
    low, _, high = str(text).partition("-")
    low_i, high_i = int(low), int(high)
    if low_i < 0 or high_i <= low_i:
        raise ValueError(f"bad span {text!r}")
    return low_i, high_i


def segmentation_stats(blocks: pd.DataFrame) -> pd.DataFrame:
    """Return per vocabulary how it cut the sequence, and how its cuts agree with the first vocabulary's.

    ``blocks`` is ``analysis.segmentation.segment_with_each`` output. Columns: ``vocabulary``,
    ``tokens``, ``nucleotides``, ``nt_per_token``, ``unk_tokens`` (tokens that are not A/C/G/T
    strings: [UNK] for N), ``cuts`` (internal boundaries), ``cut_jaccard_with_first`` (boundary
    Jaccard with the first vocabulary; 1 for the first itself, NaN when a ratio has no denominator).
    """
    rows = []
    groups = list(blocks.groupby("vocabulary", sort=False))
    first = groups[0][1] if groups else None
    for name, table in groups:
        agreement = boundary_agreement(first, table) if len(table) else {"jaccard": math.nan, "boundaries_b": 0}
        nucleotides = int(table["end"].max()) if len(table) else 0
        unk = int((~table["token"].map(lambda t: bool(t) and set(t) <= set("ACGT"))).sum())
        rows.append({"vocabulary": str(name), "tokens": len(table), "nucleotides": nucleotides,
                     "nt_per_token": nucleotides / len(table) if len(table) else math.nan, "unk_tokens": unk,
                     "cuts": int(agreement["boundaries_b"]), "cut_jaccard_with_first": float(agreement["jaccard"])})
    return pd.DataFrame(rows, columns=["vocabulary", "tokens", "nucleotides", "nt_per_token", "unk_tokens", "cuts",
                                       "cut_jaccard_with_first"])


def segmentation_figure(blocks: pd.DataFrame, sequence: str, *, colours: Mapping[str, str] | None = None,
                        offset: int = 0, window: tuple[int, int] | None = None, axis_title: str = "",
                        title: str = "") -> go.Figure:
    """Return the sequence as one row of coloured token blocks per vocabulary, aligned on the nucleotides.

    Parameters
    ----------
    blocks
        ``analysis.segmentation.segment_with_each`` output (``vocabulary``, ``block``, ``token``,
        ``token_id``, ``start``, ``end``, ``length``); rows drawn top to bottom in its order.
    sequence
        The segmented sequence (cleaned): the top row draws one block per nucleotide, coloured by letter.
    offset
        Added to every position, so the x axis reads genome coordinates (0-based) for a genome region.
    window
        ``(start, end)`` positions of the sequence (before ``offset``) shown at first; the whole
        sequence is drawn and can be panned or zoomed.

    Every other token of a vocabulary takes a lighter tint of its colour ([UNK] blocks grey). Every
    block has its token (or letter) on hover with its span and id; the text inside blocks, which
    shows when it fits, is given only to blocks within the window and one window's width either
    side (text is what makes a browser slow with thousands of blocks).
    """
    fig = go.Figure()
    letters = np.array(list(sequence), dtype=object)
    positions = np.arange(len(sequence), dtype=np.int64) + offset
    low, high = (0, len(sequence)) if window is None else (2 * window[0] - window[1], 2 * window[1] - window[0])

    def labels(text: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return np.where((ends > low) & (starts < high), text, "")

    fig.add_trace(go.Bar(
        orientation="h", y=[SEQUENCE_ROW] * len(sequence), x=np.ones(len(sequence)), base=positions,
        width=0.8, text=labels(letters, positions - offset, positions - offset + 1), textposition="inside",
        insidetextanchor="middle", textangle=0,
        marker={"color": [NUCLEOTIDE_COLOURS.get(letter, OTHER_COLOUR) for letter in letters], "line": {"width": 0}},
        customdata=np.column_stack([letters, positions]) if len(sequence) else None, name=SEQUENCE_ROW,
        hovertemplate="%{customdata[0]} at %{customdata[1]:,}<extra></extra>", showlegend=False,
    ))
    rows = [SEQUENCE_ROW]
    for i, (name, table) in enumerate(blocks.groupby("vocabulary", sort=False)):
        name = str(name)
        colour = _colour(colours, name, i)
        acgt = table["token"].map(lambda t: bool(t) and set(t) <= set("ACGT")).to_numpy(dtype=bool)
        fill = np.where(table["block"].to_numpy() % 2 == 0, colour, tint(colour))
        fill = np.where(acgt, fill, OTHER_COLOUR)
        starts = table["start"].to_numpy(dtype=np.int64) + offset
        ends = table["end"].to_numpy(dtype=np.int64) + offset
        fig.add_trace(go.Bar(
            orientation="h", y=[name] * len(table), x=table["length"].to_numpy(dtype=float), base=starts,
            width=0.8, text=labels(table["token"].to_numpy(dtype=object), starts - offset, ends - offset),
            textposition="inside", insidetextanchor="middle", textangle=0,
            marker={"color": fill, "line": {"color": "white", "width": 0.5}}, name=name, showlegend=False,
            customdata=np.column_stack([table["token"].to_numpy(dtype=object), starts, ends,
                                        table["length"].to_numpy(), table["token_id"].to_numpy(),
                                        table["block"].to_numpy() + 1]) if len(table) else None,
            hovertemplate=(f"<b>%{{customdata[0]}}</b> ({name}, token %{{customdata[5]:,}})<br>"
                           "positions %{customdata[1]:,}–%{customdata[2]:,} (%{customdata[3]} nt)"
                           "<br>id %{customdata[4]}<extra></extra>"),
        ))
        rows.append(name)
    fig.update_layout(
        barmode="overlay", height=110 + 55 * len(rows), title=title or None, showlegend=False,
        uniformtext={"minsize": 8, "mode": "hide"},
        margin={"l": int(max(map(len, rows)) * CHAR_PX) + 30, "r": 10, "t": 50 if title else 20, "b": 70},
        dragmode="pan",
    )
    fig.update_yaxes(categoryorder="array", categoryarray=rows[::-1], title_text=None, fixedrange=True)
    x_range = None
    if window is not None:
        x_range = [window[0] + offset, window[1] + offset]
    fig.update_xaxes(title_text=axis_title or "position in the sequence (nt, 0-based)", range=x_range,
                     tickformat=",d", showgrid=False)
    return fig
