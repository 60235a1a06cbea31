"""Compare models: two runs side by side on the same tokens (pure logic, no Streamlit here).

Two runs are compared token by token only where their vocabularies agree: tokens are matched by
string (``match_vocabularies``), so two checkpoints of one model, our model against the published
GROVER analysed on the same genome, or two vocabularies that share part of their tokens all work.

* layers: ``relative_depth`` / ``matching_layer`` put models of different depth on one axis;
* side by side: ``self_similarity_curves`` + ``self_similarity_figure`` (groups of tokens over layers),
  ``probe_rows`` + ``probe_figure``, ``evaluation_table`` + ``evaluation_figure``;
* per-token agreement: ``self_similarity_pairs`` + ``correlation_summary`` + ``self_similarity_scatter``
  (the same token's self-similarity in both runs), and ``knn_overlap`` + ``knn_heatmap`` (how many of a
  token's k nearest neighbours by cosine the two runs share, per layer pair).

Unit-tested in ``tests/dashboard/test_charts_compare.py``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots
from scipy.stats import pearsonr, spearmanr

from dashboard.figures import scatter_type

# The page's views (lazy tabs, one drawn at a time): link name -> tab label; the first is the default.
VIEWS = {"maps": "Token maps", "groups": "Self-similarity by group", "agreement": "Per-token agreement",
         "probes": "Probes and evaluation"}

K_NEIGHBOURS = 10  # nearest neighbours per token in the kNN overlap
RUN_COLOURS = ("#1f77b4", "#ff7f0e")  # run A, run B
RUN_DASHES = ("solid", "dash")
GROUPINGS = {
    "length_group": "Token length (nt)",
    "frequency_decile": "Frequency decile (1 = rarest)",
    "repeat_localised": "Repeat-localised tokens",
}
SELF_SIMILARITY_VALUES = {
    "self_similarity": "Self-similarity",
    "corrected": "Self-similarity minus the anisotropy baseline",
}
PROBE_METRICS = {"mcc": "MCC", "balanced_accuracy": "Balanced accuracy", "accuracy": "Accuracy"}
# evaluation.json fields shown, in order, with their labels.
EVALUATION_FIELDS = {
    "masked_top1_accuracy": "Masked top-1 accuracy",
    "masked_top10_accuracy": "Masked top-10 accuracy",
    "perplexity": "Perplexity (per token)",
    "perplexity_per_nucleotide": "Perplexity per nucleotide",
    "frequency_baseline_top1_accuracy": "Frequency baseline top-1",
    "frequency_baseline_top10_accuracy": "Frequency baseline top-10",
    "frequency_baseline_perplexity": "Frequency baseline perplexity",
    "frequency_baseline_perplexity_per_nucleotide": "Frequency baseline perplexity per nucleotide",
    "n_masked_tokens": "Masked tokens evaluated",
    "windows": "Windows",
    "window_tokens": "Tokens per window",
}
FIGURE_HEIGHT = 420


# ---------------------------------------------------------------------------------------------
# Vocabularies and layers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VocabularyMatch:
    """How two runs' vocabularies line up (special tokens left out).

    ``shared`` has one row per token string in both: ``token``, ``token_id_a``, ``token_id_b``, sorted
    by ``token_id_a``. ``only_a`` / ``only_b`` are the strings in one run only (sorted).
    ``same_ids`` is True when every shared token has the same id in both runs.
    """

    shared: pd.DataFrame
    n_a: int
    n_b: int
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    same_ids: bool

    @property
    def n_shared(self) -> int:
        return len(self.shared)

    @property
    def identical(self) -> bool:
        """Same strings with the same ids: the two runs number the same tokens the same way."""
        return self.n_shared == self.n_a == self.n_b and self.same_ids


def _nucleotide_tokens(tokens: pd.DataFrame) -> pd.DataFrame:
    chosen = tokens[~tokens["is_special"].astype(bool)][["token_id", "token"]]
    chosen = chosen.assign(token=chosen["token"].astype(str))
    return chosen[chosen["token"] != ""].drop_duplicates("token")


def match_vocabularies(tokens_a: pd.DataFrame, tokens_b: pd.DataFrame) -> VocabularyMatch:
    """Match two ``tokens.parquet`` tables by token string (special tokens left out)."""
    a, b = _nucleotide_tokens(tokens_a), _nucleotide_tokens(tokens_b)
    shared = a.merge(b, on="token", suffixes=("_a", "_b"))[["token", "token_id_a", "token_id_b"]]
    shared = shared.astype({"token_id_a": np.int64, "token_id_b": np.int64})
    shared = shared.sort_values("token_id_a", kind="stable").reset_index(drop=True)
    in_both = set(shared["token"])
    return VocabularyMatch(
        shared=shared, n_a=len(a), n_b=len(b),
        only_a=tuple(sorted(set(a["token"]) - in_both)), only_b=tuple(sorted(set(b["token"]) - in_both)),
        same_ids=bool((shared["token_id_a"] == shared["token_id_b"]).all()),
    )


def _examples(tokens: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(f"`{t}`" for t in tokens[:n])
    return shown + (", …" if len(tokens) > n else "")


def vocabulary_message(match: VocabularyMatch, name_a: str, name_b: str) -> tuple[str, str]:
    """Return ``(level, text)`` saying whether the runs share their vocabulary; level is success, warning or error."""
    if match.identical:
        return "success", (f"Same vocabulary: the {match.n_shared:,} nucleotide tokens of **{name_a}** and **{name_b}** "
                           "match one to one (same strings, same ids); every token is compared.")
    if match.n_shared == 0:
        return "error", (f"**{name_a}** and **{name_b}** share no token ({match.n_a:,} and {match.n_b:,} nucleotide "
                         "tokens): there is nothing to compare token by token. Pick runs over the same vocabulary.")
    if match.n_shared == match.n_a == match.n_b:
        return "warning", (f"Same {match.n_shared:,} tokens, numbered differently in the two runs: tokens are "
                           "matched by string.")
    return "warning", (
        f"The vocabularies differ: **{name_a}** has {match.n_a:,} nucleotide tokens, **{name_b}** {match.n_b:,}; "
        f"only the {match.n_shared:,} tokens in both (matched by string) are compared. "
        f"Only in {name_a}: {len(match.only_a):,}" + (f" ({_examples(match.only_a)})" if match.only_a else "")
        + f"; only in {name_b}: {len(match.only_b):,}" + (f" ({_examples(match.only_b)})" if match.only_b else "") + "."
    )


def relative_depth(layer: int, layers: Sequence[int]) -> float:
    """Return ``layer / deepest layer`` (0 = input embeddings, 1 = last layer; 0 when there is one layer)."""
    deepest = max(layers) if len(layers) else 0
    return float(layer) / deepest if deepest else 0.0


def matching_layer(layers: Sequence[int], depth: float) -> int:
    """Return the layer of ``layers`` nearest to relative ``depth`` (ties go to the shallower layer)."""
    if not len(layers):
        raise ValueError("no layers to choose from")
    return min(sorted(layers), key=lambda layer: abs(relative_depth(layer, layers) - depth))


def shared_points(points: pd.DataFrame, token_ids: Iterable[int]) -> pd.DataFrame:
    """Return the rows of ``points`` (``figures.token_points`` output) whose token is among ``token_ids``."""
    return points[points["token_id"].isin(set(int(i) for i in token_ids))].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Side by side: self-similarity by group, probes, held-out evaluation
# ---------------------------------------------------------------------------------------------


def group_order(groups: Iterable[Any]) -> list[str]:
    """Return group labels in reading order: numbers by value (``"2-3"`` by 2; deciles 1..10), then text."""
    def key(label: str):
        match = re.match(r"^\s*(\d+(?:\.\d+)?)", label)
        return (0, float(match.group(1)), label) if match else (1, 0.0, label)

    return sorted({str(g) for g in groups}, key=key)


def self_similarity_curves(groups_a: pd.DataFrame, groups_b: pd.DataFrame, *, grouping: str, value: str,
                           names: Sequence[str]) -> pd.DataFrame:
    """Return both runs' ``self_similarity_groups`` rows for one grouping and value, stacked.

    Returns
    -------
    DataFrame with columns ``run`` (the name from ``names``), ``layer``, ``depth`` (``relative_depth``),
    ``group`` (str), ``n_tokens``, ``mean``, ``std``, ``q25``, ``median``, ``q75``; sorted by run,
    group (``group_order``), layer.
    """
    frames = []
    for name, table in zip(names, (groups_a, groups_b)):
        part = table[(table["grouping"] == grouping) & (table["value"] == value)]
        layers = sorted(int(v) for v in table["layer"].unique())
        part = part.assign(run=name, group=part["group"].astype(str), layer=part["layer"].astype(int))
        part = part.assign(depth=[relative_depth(layer, layers) for layer in part["layer"]])
        frames.append(part[["run", "layer", "depth", "group", "n_tokens", "mean", "std", "q25", "median", "q75"]])
    out = pd.concat(frames, ignore_index=True)
    order = {g: i for i, g in enumerate(group_order(out["group"]))}
    runs = {n: i for i, n in enumerate(names)}
    out = out.assign(_r=out["run"].map(runs), _g=out["group"].map(order))
    return out.sort_values(["_r", "_g", "layer"], kind="stable").drop(columns=["_r", "_g"]).reset_index(drop=True)


def group_colours(groups: Sequence[str]) -> dict[str, str]:
    """Return one colour per group: a sequential scale for 4+ numeric groups (deciles), else qualitative."""
    if len(groups) >= 4 and all(re.match(r"^\d", g) for g in groups):
        return dict(zip(groups, sample_colorscale("Viridis", [i / max(len(groups) - 1, 1) for i in range(len(groups))])))
    palette = qualitative.Set1
    return {g: palette[i % len(palette)] for i, g in enumerate(groups)}


def _x_title(x: str) -> str:
    return "relative depth (0 = input embeddings, 1 = last layer)" if x == "depth" else "layer (0 = input embeddings)"


def self_similarity_figure(curves: pd.DataFrame, *, names: Sequence[str], value: str, x: str = "layer",
                           title: str | None = None) -> go.Figure:
    """Return one panel per run (shared y axis): the mean of each token group over layers.

    ``curves`` is ``self_similarity_curves`` output; ``x`` is ``"layer"`` or ``"depth"``. One trace per
    (run, group), named by the group, the same colour in both panels; hover gives n tokens and the spread.
    """
    groups = group_order(curves["group"])
    colours = group_colours(groups)
    fig = make_subplots(rows=1, cols=len(names), shared_yaxes=True, subplot_titles=list(names), horizontal_spacing=0.06)
    for column, name in enumerate(names, start=1):
        for group in groups:
            part = curves[(curves["run"] == name) & (curves["group"] == group)]
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part[x], y=part["mean"], mode="lines+markers", name=group, legendgroup=group,
                showlegend=column == 1, line=dict(color=colours[group]),
                customdata=part[["layer", "n_tokens", "q25", "q75", "std"]].to_numpy(),
                hovertemplate=(f"<b>{group}</b> · layer %{{customdata[0]}}<br>mean %{{y:.3f}} ± %{{customdata[4]:.3f}}"
                               "<br>quartiles %{customdata[2]:.3f}-%{customdata[3]:.3f}<br>"
                               "%{customdata[1]} tokens<extra></extra>"),
            ), row=1, col=column)
        fig.update_xaxes(title_text=_x_title(x), row=1, col=column)
    fig.update_yaxes(title_text=SELF_SIMILARITY_VALUES.get(value, value), row=1, col=1)
    fig.update_layout(title=title, height=FIGURE_HEIGHT, margin=dict(l=60, r=20, t=80 if title else 50, b=50),
                      legend=dict(title=dict(text="group")))
    return fig


def probe_rows(probes_a: pd.DataFrame, probes_b: pd.DataFrame, *, names: Sequence[str]) -> pd.DataFrame:
    """Return both runs' ``probe_scores`` stacked, with ``run`` and ``depth`` (NaN for the k-mer baseline, layer -1)."""
    frames = []
    for name, table in zip(names, (probes_a, probes_b)):
        layers = sorted(int(v) for v in table.loc[table["layer"] >= 0, "layer"].unique())
        depth = [relative_depth(int(layer), layers) if layer >= 0 else math.nan for layer in table["layer"]]
        frames.append(table.assign(run=name, depth=depth))
    out = pd.concat(frames, ignore_index=True)
    first = ["run", "annotation", "feature_set", "layer", "depth"]
    return out[first + [c for c in out.columns if c not in first]]


def probe_figure(rows: pd.DataFrame, *, names: Sequence[str], metric: str = "mcc", x: str = "layer",
                 title: str | None = None) -> go.Figure:
    """Return one panel per annotation: each run's probe score over layers, its k-mer baseline dotted.

    Lines are coloured by run (A blue, B orange); the k-mer baseline (``feature_set == "kmer_baseline"``)
    is a dotted horizontal line of the run's colour across the panel.
    """
    annotations = sorted(rows["annotation"].astype(str).unique())
    fig = make_subplots(rows=1, cols=max(len(annotations), 1), shared_yaxes=True, subplot_titles=annotations,
                        horizontal_spacing=0.04)
    span = rows.loc[rows["feature_set"] != "kmer_baseline", x]
    low, high = (float(span.min()), float(span.max())) if len(span) else (0.0, 1.0)
    for column, annotation in enumerate(annotations, start=1):
        for i, name in enumerate(names):
            mine = rows[(rows["run"] == name) & (rows["annotation"] == annotation)]
            embedded = mine[mine["feature_set"] != "kmer_baseline"].sort_values("layer")
            if len(embedded):
                fig.add_trace(go.Scatter(
                    x=embedded[x], y=embedded[metric], mode="lines+markers", name=name, legendgroup=name,
                    showlegend=column == 1, line=dict(color=RUN_COLOURS[i % 2], dash=RUN_DASHES[i % 2]),
                    customdata=embedded[["layer", "n_windows", "n_classes"]].to_numpy(),
                    hovertemplate=(f"<b>{name}</b> · layer %{{customdata[0]}}<br>{PROBE_METRICS.get(metric, metric)} "
                                   "%{y:.3f}<br>%{customdata[1]} windows, %{customdata[2]} classes<extra></extra>"),
                ), row=1, col=column)
            baseline = mine[mine["feature_set"] == "kmer_baseline"]
            if len(baseline):
                score = float(baseline[metric].iloc[0])
                fig.add_trace(go.Scatter(
                    x=[low, high], y=[score, score], mode="lines", name=f"{name}: k-mer baseline",
                    legendgroup=f"{name}_baseline", showlegend=column == 1,
                    line=dict(color=RUN_COLOURS[i % 2], dash="dot", width=1.5),
                    hovertemplate=f"<b>{name}</b> k-mer baseline<br>%{{y:.3f}}<extra></extra>",
                ), row=1, col=column)
        fig.update_xaxes(title_text=_x_title(x) if x == "layer" else "relative depth", row=1, col=column)
    fig.update_yaxes(title_text=PROBE_METRICS.get(metric, metric), row=1, col=1)
    fig.update_layout(title=title, height=FIGURE_HEIGHT, margin=dict(l=60, r=20, t=80 if title else 50, b=50))
    return fig


def evaluation_table(evaluation_a: Mapping[str, Any], evaluation_b: Mapping[str, Any], *,
                     names: Sequence[str]) -> pd.DataFrame:
    """Return the held-out evaluation of both runs: ``metric`` (label), ``field``, one column per run name.

    Rows follow ``EVALUATION_FIELDS`` and keep only fields at least one run has; missing values are NaN.
    """
    rows = []
    for field, label in EVALUATION_FIELDS.items():
        values = [(evaluation or {}).get(field) for evaluation in (evaluation_a, evaluation_b)]
        if all(v is None for v in values):
            continue
        rows.append({"metric": label, "field": field,
                     **{name: (math.nan if v is None else float(v)) for name, v in zip(names, values)}})
    return pd.DataFrame(rows, columns=["metric", "field", *names])


def evaluation_figure(table: pd.DataFrame, *, names: Sequence[str], title: str | None = None) -> go.Figure:
    """Return grouped bars of masked top-1 / top-10 accuracy: each run's model and its frequency baseline."""
    bars = [("model", "masked_top1_accuracy", "masked_top10_accuracy", None),
            ("frequency baseline", "frequency_baseline_top1_accuracy", "frequency_baseline_top10_accuracy", "/")]
    values = table.set_index("field")
    fig = go.Figure()
    for i, name in enumerate(names):
        for label, top1, top10, pattern in bars:
            y = [values[name].get(top1, math.nan) if name in values else math.nan,
                 values[name].get(top10, math.nan) if name in values else math.nan]
            fig.add_trace(go.Bar(
                x=["top-1", "top-10"], y=y, name=f"{name}: {label}",
                marker=dict(color=RUN_COLOURS[i % 2], pattern_shape=pattern, opacity=1.0 if pattern is None else 0.55),
                hovertemplate=f"<b>{name}</b> {label}<br>%{{x}}: %{{y:.1%}}<extra></extra>",
            ))
    fig.update_layout(title=title, barmode="group", height=FIGURE_HEIGHT, yaxis=dict(title="held-out masked accuracy",
                      tickformat=".0%", rangemode="tozero"), margin=dict(l=60, r=20, t=60 if title else 20, b=40))
    return fig


# ---------------------------------------------------------------------------------------------
# Per-token agreement
# ---------------------------------------------------------------------------------------------


def self_similarity_pairs(self_similarity_a: pd.DataFrame, self_similarity_b: pd.DataFrame, shared: pd.DataFrame, *,
                          layer_a: int, layer_b: int, value: str = "self_similarity") -> pd.DataFrame:
    """Return one row per shared token with a self-similarity in both runs at the given layers.

    Columns ``token``, ``token_id_a``, ``token_id_b``, ``a``, ``b`` (the ``value`` column of each
    run's ``self_similarity`` table), in ``shared``'s order.
    """
    a = self_similarity_a[self_similarity_a["layer"] == layer_a][["token_id", value]].rename(
        columns={"token_id": "token_id_a", value: "a"})
    b = self_similarity_b[self_similarity_b["layer"] == layer_b][["token_id", value]].rename(
        columns={"token_id": "token_id_b", value: "b"})
    pairs = shared[["token", "token_id_a", "token_id_b"]].merge(a, on="token_id_a").merge(b, on="token_id_b")
    return pairs.dropna(subset=["a", "b"]).reset_index(drop=True)


def correlation_summary(pairs: pd.DataFrame) -> dict[str, float | int]:
    """Return ``{"n", "pearson", "spearman"}`` of columns ``a`` and ``b`` (NaN below 3 pairs or without spread)."""
    n = len(pairs)
    if n < 3 or pairs["a"].nunique() < 2 or pairs["b"].nunique() < 2:
        return {"n": n, "pearson": math.nan, "spearman": math.nan}
    return {"n": n, "pearson": float(pearsonr(pairs["a"], pairs["b"])[0]),
            "spearman": float(spearmanr(pairs["a"], pairs["b"])[0])}


def self_similarity_scatter(pairs: pd.DataFrame, *, names: Sequence[str], layers: Sequence[int],
                            value: str = "self_similarity", title: str | None = None) -> go.Figure:
    """Return the scatter of each shared token's self-similarity in run A (x) against run B (y), with y = x dashed."""
    fig = go.Figure()
    if len(pairs):
        low = float(min(pairs["a"].min(), pairs["b"].min()))
        high = float(max(pairs["a"].max(), pairs["b"].max()))
        fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x",
                                 line=dict(color="grey", dash="dash", width=1), hoverinfo="skip"))
    fig.add_trace(scatter_type(len(pairs))(  # SVG up to SVG_MAX_POINTS tokens, WebGL beyond
        x=pairs["a"], y=pairs["b"], mode="markers", name="shared tokens",
        marker=dict(color=RUN_COLOURS[0], size=6, opacity=0.7), customdata=pairs[["token"]].to_numpy(dtype=object),
        hovertemplate="<b>%{customdata[0]}</b><br>A %{x:.3f} · B %{y:.3f}<extra></extra>",
    ))
    label = SELF_SIMILARITY_VALUES.get(value, value).lower()
    fig.update_layout(
        title=title, height=FIGURE_HEIGHT, margin=dict(l=60, r=20, t=60 if title else 20, b=50), showlegend=False,
        xaxis=dict(title=f"{names[0]}: {label}, layer {layers[0]}"),
        yaxis=dict(title=f"{names[1]}: {label}, layer {layers[1]}"),
    )
    return fig


def layer_matrices(token_means: Mapping[str, np.ndarray], token_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Return ``{layer: [len(token_ids), hidden] float32}`` from ``load_token_means`` output (``layer_<i>`` keys)."""
    ids = np.asarray(token_ids, dtype=np.int64)
    layers = sorted(int(key.split("_", 1)[1]) for key in token_means if key.startswith("layer_"))
    return {layer: np.asarray(token_means[f"layer_{layer}"], dtype=np.float32)[ids] for layer in layers}


def cosine_knn(matrix: np.ndarray, k: int) -> np.ndarray:
    """Return ``[n, k]`` row indices of each row's ``k`` nearest other rows by cosine similarity.

    The row itself is left out; ties go to the smaller index. Rows of zeros are similar to nothing
    (cosine 0). Requires ``k < n``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k must lie in 1..{n - 1} for {n} rows, not {k}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def knn_jaccard(knn_a: np.ndarray, knn_b: np.ndarray) -> np.ndarray:
    """Return the Jaccard index of row ``i``'s neighbour sets in ``knn_a`` and ``knn_b`` (``[n, k]`` each)."""
    both = np.sort(np.concatenate([knn_a, knn_b], axis=1), axis=1)
    shared = (both[:, 1:] == both[:, :-1]).sum(axis=1)  # each index appears at most once per set
    union = knn_a.shape[1] + knn_b.shape[1] - shared
    return shared / union


def chance_jaccard(n: int, k: int) -> float:
    """Return about the Jaccard index of two random ``k``-sets among ``n - 1`` other tokens (the chance level)."""
    if n <= 1:
        return math.nan
    shared = k * k / (n - 1)
    return shared / (2 * k - shared)


def knn_overlap(matrices_a: Mapping[int, np.ndarray], matrices_b: Mapping[int, np.ndarray], *,
                k: int = K_NEIGHBOURS) -> pd.DataFrame:
    """Return the mean Jaccard of each token's k nearest neighbours (cosine) in run A's layer vs run B's layer.

    Parameters
    ----------
    matrices_a, matrices_b
        ``{layer: [n, hidden]}`` with the same ``n`` tokens in the same row order in both runs
        (``layer_matrices`` of the shared tokens).
    k
        Neighbours per token (lowered to ``n - 1`` for tiny vocabularies).

    Returns
    -------
    DataFrame with one row per (layer_a, layer_b): ``layer_a``, ``layer_b``, ``mean_jaccard``,
    ``median_jaccard``, ``n_tokens``, ``k``, ``chance`` (``chance_jaccard``).
    """
    n = next(iter(matrices_a.values())).shape[0] if matrices_a else 0
    columns = ["layer_a", "layer_b", "mean_jaccard", "median_jaccard", "n_tokens", "k", "chance"]
    if n < 2 or not matrices_b:
        return pd.DataFrame(columns=columns)
    k = min(k, n - 1)
    knn_a = {layer: cosine_knn(m, k) for layer, m in matrices_a.items()}
    knn_b = {layer: cosine_knn(m, k) for layer, m in matrices_b.items()}
    rows = []
    for layer_a, a in sorted(knn_a.items()):
        for layer_b, b in sorted(knn_b.items()):
            jaccard = knn_jaccard(a, b)
            rows.append({"layer_a": layer_a, "layer_b": layer_b, "mean_jaccard": float(jaccard.mean()),
                         "median_jaccard": float(np.median(jaccard)), "n_tokens": n, "k": k,
                         "chance": chance_jaccard(n, k)})
    return pd.DataFrame(rows, columns=columns)


def knn_heatmap(table: pd.DataFrame, *, names: Sequence[str], title: str | None = None) -> go.Figure:
    """Return the heatmap of ``knn_overlap``: run A's layers down, run B's layers across, mean Jaccard in each cell."""
    grid = table.pivot(index="layer_a", columns="layer_b", values="mean_jaccard").sort_index().sort_index(axis=1)
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index],
        colorscale="Viridis", zmin=0, zmax=1, colorbar=dict(title=dict(text="mean Jaccard")),
        text=np.vectorize(lambda v: f"{v:.2f}")(grid.to_numpy()) if grid.size else None, texttemplate="%{text}",
        hovertemplate=f"{names[0]} layer %{{y}} · {names[1]} layer %{{x}}<br>mean Jaccard %{{z:.3f}}<extra></extra>",
    ))
    fig.update_layout(title=title, height=FIGURE_HEIGHT, margin=dict(l=60, r=20, t=60 if title else 20, b=50),
                      xaxis=dict(title=f"{names[1]}: layer", type="category"),
                      yaxis=dict(title=f"{names[0]}: layer", type="category", autorange="reversed"))
    return fig
