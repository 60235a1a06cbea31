"""Figures and tables of the Benchmarks page: the paper's experiments (no Streamlit here, so all of it is unit-tested).

Inputs are the run's ``experiments/`` tables (``analysis.run``): ``finetune_results.parquet``
(``FINETUNE_RESULT_COLUMNS``: one row per task, model and method), ``nextkmer_results.parquet``
(``NEXTKMER_RESULT_COLUMNS``: one row per vocabulary, k and method) and the task tables
``tasks/<task>.parquet`` (``TASK_COLUMNS``). Every fine-tuned score is drawn beside its simple
baseline (TF-IDF k-mers for the tasks, next-k-mer frequencies and chance for next-k-mer prediction),
like the GROVER paper's fine-tuning table and its Fig. 1 (vocabulary selection by next-k-mer accuracy).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from analysis.run import CHANCE, FINE_TUNED, FREQUENCY_BASELINE  # the method names the pipeline writes

# Fine-tuning metrics (all on the held-out test split) -> label shown.
METRICS: dict[str, str] = {"mcc": "MCC", "accuracy": "accuracy", "macro_f1": "macro F1",
                           "precision": "precision", "recall": "recall"}
PAPER_TASKS = ("prom300", "promscan", "ctcf")  # drawn first, in the paper's order; other tasks follow by name
MODEL_PALETTE = [c for c in qualitative.D3 if c != "#7F7F7F"]  # fine-tuned models; grey is for baselines
BASELINE_COLOUR = "#9E9E9E"
BASELINE_PATTERN = "/"  # hatched bars: the baseline reads as "not a model" in print too

# Next-k-mer lines: colour per k, dash per method (the fine-tuned model solid).
K_PALETTE = qualitative.Set1
METHOD_DASH: dict[str, str] = {FINE_TUNED: "solid", FREQUENCY_BASELINE: "dash", CHANCE: "dot"}
METHOD_ORDER = (FINE_TUNED, FREQUENCY_BASELINE, CHANCE)
KMER_DASH = "dashdot"  # k-mer vocabularies: a horizontal reference per k (they have no cycle count)
KMER_SYMBOLS = ("diamond", "square", "triangle-up", "cross", "star", "x")
DEFAULT_CYCLE_SPAN = (10.0, 1000.0)  # x range of the k-mer references when the table holds no BPE vocabulary
SCALES = ("log", "linear")


# ---------------------------------------------------------------------------------------------
# Fine-tuning tasks
# ---------------------------------------------------------------------------------------------

def task_order(tasks: Sequence[str]) -> list[str]:
    """Return the distinct task names, the paper's three first, then the others by name.

    >>> task_order(["mine", "ctcf", "prom300", "ctcf"])
    ['prom300', 'ctcf', 'mine']
    """
    present = list(dict.fromkeys(str(t) for t in tasks))
    return [t for t in PAPER_TASKS if t in present] + sorted(t for t in present if t not in PAPER_TASKS)


def bar_label(model: str, method: str, *, several_baselines: bool = False) -> str:
    """Return the legend name of one (model, method): the model's name when fine-tuned, else the method
    (with the baseline's own name when a method has several).

    >>> bar_label("grover_tiny", "fine-tuned")
    'grover_tiny'
    >>> bar_label("tfidf_4mer", "tf-idf k-mer baseline")
    'tf-idf k-mer baseline'
    >>> bar_label("tfidf_4mer", "tf-idf k-mer baseline", several_baselines=True)
    'tf-idf k-mer baseline (tfidf_4mer)'
    """
    if method == FINE_TUNED:
        return str(model)
    return f"{method} ({model})" if several_baselines and str(model) != str(method) else str(method)


def finetune_bars(results: pd.DataFrame, *, metric: str = "mcc") -> pd.DataFrame:
    """Return one row per (task, model, method) with the chosen metric as ``value``, in drawing order.

    Columns: ``task``, ``model``, ``method``, ``label`` (legend name, ``bar_label``), ``is_baseline``,
    ``value`` (NaN where the metric is undefined), ``n_test``. Fine-tuned models come first (in the
    order they appear), baselines last, so each task's group of bars ends with its baseline.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    table = results.assign(model=results["model"].astype(str), method=results["method"].astype(str),
                           task=results["task"].astype(str))
    baselines = table.loc[table["method"] != FINE_TUNED]
    several = baselines.groupby("method")["model"].nunique().gt(1).to_dict()
    labels = [bar_label(m, k, several_baselines=several.get(k, False)) for m, k in zip(table["model"], table["method"])]
    bars = pd.DataFrame({
        "task": table["task"].to_numpy(), "model": table["model"].to_numpy(), "method": table["method"].to_numpy(),
        "label": labels, "is_baseline": (table["method"] != FINE_TUNED).to_numpy(),
        "value": pd.to_numeric(table[metric], errors="coerce").astype(float).to_numpy(),
        "n_test": table["n_test"].to_numpy() if "n_test" in table else np.nan,
    })
    label_rank = {label: i for i, label in enumerate(dict.fromkeys(
        list(bars.loc[~bars["is_baseline"], "label"]) + list(bars.loc[bars["is_baseline"], "label"])))}
    task_rank = {task: i for i, task in enumerate(task_order(bars["task"]))}
    order = np.lexsort((bars["label"].map(label_rank).to_numpy(), bars["task"].map(task_rank).to_numpy()))
    return bars.iloc[order].reset_index(drop=True)


def finetune_figure(results: pd.DataFrame, *, metric: str = "mcc", title: str = "") -> go.Figure:
    """Return grouped bars of ``metric`` per task: one bar per fine-tuned model beside the TF-IDF baseline.

    One trace per legend name (``bar_label``): fine-tuned models in colour, baselines grey and hatched.
    A missing value (NaN) leaves a gap with "n/a" written at the axis; a model not run on a task, a
    gap without text. The y axis spans [-1, 1] for
    MCC when any value is negative, [0, 1] otherwise.
    """
    bars = finetune_bars(results, metric=metric)
    tasks = task_order(bars["task"])
    label = METRICS[metric]
    fig = go.Figure()
    colour_index = 0
    for name, part in bars.groupby("label", sort=False):
        baseline = bool(part["is_baseline"].iloc[0])
        by_task = part.drop_duplicates("task").set_index("task").reindex(tasks)
        if baseline:
            # "overlay": the grey fill stays under the white hatching; plotly's default ("replace")
            # draws the hatching alone on a transparent bar, which is invisible on a white page.
            marker = {"color": BASELINE_COLOUR,
                      "pattern": {"shape": BASELINE_PATTERN, "fgcolor": "#FFFFFF", "fillmode": "overlay"}}
        else:
            marker = {"color": MODEL_PALETTE[colour_index % len(MODEL_PALETTE)]}
            colour_index += 1
        values = by_task["value"].to_numpy(dtype=float)
        scored = by_task["method"].notna().to_numpy()  # False: this model was not run on the task (no bar, no text)
        fig.add_trace(go.Bar(
            x=tasks, y=values, name=str(name), marker=marker, textposition="outside",
            text=[("n/a" if math.isnan(v) else f"{v:.3f}") if ran else "" for v, ran in zip(values, scored)],
            customdata=np.column_stack([by_task["method"].fillna("").to_numpy(dtype=object),
                                        by_task["n_test"].to_numpy(dtype=float)]),
            hovertemplate=(f"<b>%{{x}}</b> · {name}<br>%{{customdata[0]}}<br>{label} %{{y:.3f}}"
                           "<br>%{customdata[1]:,.0f} test examples<extra></extra>"),
        ))
    low = -1.0 if metric == "mcc" and (bars["value"] < 0).any() else 0.0
    fig.update_layout(barmode="group", height=440, title=title or None, legend={"orientation": "h", "y": -0.18},
                      uniformtext={"minsize": 9, "mode": "hide"})
    fig.update_xaxes(title_text="task")
    fig.update_yaxes(title_text=f"{label} (held-out test split)", range=[low, 1.12])  # headroom for the labels above 1
    return fig


def finetune_table(results: pd.DataFrame, *, metric: str = "mcc") -> pd.DataFrame:
    """Return the results ordered as in the figure, with ``<metric> − baseline``.

    Columns: ``FINETUNE_RESULT_COLUMNS`` present in ``results`` (task, model, method, metrics, sizes,
    seconds), then ``vs_baseline``: the row's metric minus the best baseline's on the same task (NaN
    for baselines and tasks without one).
    """
    bars = finetune_bars(results, metric=metric)
    keyed = results.assign(task=results["task"].astype(str), model=results["model"].astype(str),
                           method=results["method"].astype(str))
    table = bars[["task", "model", "method"]].merge(keyed, on=["task", "model", "method"], how="left")
    table = table.drop_duplicates(["task", "model", "method"]).reset_index(drop=True)
    values = pd.to_numeric(table[metric], errors="coerce").astype(float)
    is_baseline = table["method"] != FINE_TUNED
    best_baseline = values.where(is_baseline).groupby(table["task"]).transform("max")
    table["vs_baseline"] = (values - best_baseline).where(~is_baseline)
    return table


def task_summary(tasks: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Return one row per task table: its size per split, classes, positive share and test chromosomes.

    Columns: ``task``, ``n_train``, ``n_validation``, ``n_test``, ``classes``, ``positive_share``
    (share of label 1 over all rows; NaN unless the labels are 0/1), ``test_positive_share``,
    ``test_chromosomes`` (comma-separated, in name order). Only ``label``, ``chromosome`` and ``split``
    are read.

    >>> t = pd.DataFrame({"label": [0, 1, 1, 0], "chromosome": ["chr1", "chr1", "chr2", "chr2"],
    ...                   "split": ["train", "train", "test", "test"]})
    >>> task_summary({"x": t})[["n_train", "n_test", "positive_share", "test_chromosomes"]].values.tolist()
    [[2, 2, 0.5, 'chr2']]
    """
    rows = []
    for name in task_order(list(tasks)):
        table = tasks[name]
        split = table["split"].astype(str)
        labels = pd.to_numeric(table["label"], errors="coerce")
        binary = len(labels) > 0 and set(labels.dropna().unique()) <= {0, 1}
        test = split == "test"
        rows.append({
            "task": name,
            "n_train": int((split == "train").sum()), "n_validation": int((split == "validation").sum()),
            "n_test": int(test.sum()), "classes": int(labels.nunique()),
            "positive_share": float((labels == 1).mean()) if binary else math.nan,
            "test_positive_share": float((labels[test] == 1).mean()) if binary and test.any() else math.nan,
            "test_chromosomes": ", ".join(sorted(table.loc[test, "chromosome"].astype(str).unique())),
        })
    return pd.DataFrame(rows, columns=["task", "n_train", "n_validation", "n_test", "classes", "positive_share",
                                       "test_positive_share", "test_chromosomes"])


# ---------------------------------------------------------------------------------------------
# Next-k-mer prediction (the paper's Fig. 1: accuracy against BPE cycles)
# ---------------------------------------------------------------------------------------------

def ks_of(results: pd.DataFrame) -> list[int]:
    """Return the k values of a next-k-mer table, ascending."""
    return sorted(int(k) for k in pd.to_numeric(results["k"], errors="coerce").dropna().unique())


def k_colour(k: int, ks: Sequence[int]) -> str:
    """Return the colour of k (by its place among all ks of the table, so a filter keeps colours)."""
    ks = list(ks)
    return K_PALETTE[(ks.index(k) if k in ks else int(k)) % len(K_PALETTE)]


def _bpe_rows(results: pd.DataFrame) -> pd.DataFrame:
    cycles = pd.to_numeric(results["bpe_cycles"], errors="coerce")
    return results.loc[(results["vocabulary_kind"].astype(str) == "bpe") & cycles.notna()]


def _kmer_rows(results: pd.DataFrame) -> pd.DataFrame:
    return results.loc[results["vocabulary_kind"].astype(str) == "kmer"]


def nextkmer_traces(results: pd.DataFrame, *, ks: Sequence[int] | None = None) -> pd.DataFrame:
    """Return the lines of ``nextkmer_figure``: one row per (k, method) over BPE vocabularies.

    Columns: ``k``, ``method``, ``bpe_cycles`` (sorted list), ``accuracy`` (list, NaN kept as a gap),
    ``vocabulary`` (list). BPE rows without a cycle count are left out; methods in ``METHOD_ORDER``.
    """
    wanted = set(ks_of(results) if ks is None else (int(k) for k in ks))
    bpe = _bpe_rows(results)
    rows = []
    for k in sorted(wanted):
        for method in METHOD_ORDER:
            part = bpe.loc[(pd.to_numeric(bpe["k"]) == k) & (bpe["method"].astype(str) == method)]
            if part.empty:
                continue
            part = part.assign(_c=pd.to_numeric(part["bpe_cycles"]).astype(float)).sort_values("_c")
            rows.append({"k": k, "method": method, "bpe_cycles": part["_c"].tolist(),
                         "accuracy": pd.to_numeric(part["accuracy"], errors="coerce").astype(float).tolist(),
                         "vocabulary": part["vocabulary"].astype(str).tolist()})
    return pd.DataFrame(rows, columns=["k", "method", "bpe_cycles", "accuracy", "vocabulary"])


def percent(value: float) -> str:
    """Format an accuracy as a percentage with 3 significant digits ("n/a" for NaN).

    >>> percent(0.02), percent(1 / 4096), percent(float("nan"))
    ('2%', '0.0244%', 'n/a')
    """
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.3g}%"


def nextkmer_figure(results: pd.DataFrame, *, ks: Sequence[int] | None = None, x_scale: str = "log",
                    y_scale: str = "linear", title: str = "") -> go.Figure:
    """Return next-k-mer accuracy against BPE merge cycles: one colour per k, the method in the dash.

    Fine-tuned lines are solid, the frequency baseline dashed, chance dotted (``METHOD_DASH``). Each
    fine-tuned k-mer vocabulary (no cycle count) is its own trace per k: a dash-dotted horizontal
    reference across the cycle range with a marker and its name at the right end. NaN accuracies leave
    gaps. ``x_scale`` / ``y_scale``: "log" or "linear".
    """
    for name, scale in (("x_scale", x_scale), ("y_scale", y_scale)):
        if scale not in SCALES:
            raise ValueError(f"{name} must be one of {SCALES}, not {scale!r}")
    all_ks = ks_of(results)
    chosen = all_ks if ks is None else [k for k in all_ks if k in {int(v) for v in ks}]
    lines = nextkmer_traces(results, ks=chosen)
    fig = go.Figure()
    for line in lines.itertuples(index=False):
        colour = k_colour(line.k, all_ks)
        name = f"k={line.k}" if line.method == FINE_TUNED else f"k={line.k} · {line.method}"
        fig.add_trace(go.Scatter(
            x=line.bpe_cycles, y=line.accuracy, mode="lines+markers", name=name, legendgroup=f"k{line.k}",
            line={"color": colour, "dash": METHOD_DASH[line.method], "width": 2.5 if line.method == FINE_TUNED else 1.5},
            marker={"size": 7 if line.method == FINE_TUNED else 4, "color": colour},
            customdata=line.vocabulary, connectgaps=False,
            hovertemplate=(f"<b>%{{customdata}}</b> · {line.method}<br>next {line.k}-mer accuracy %{{y:.3%}}"
                           "<br>%{x:,.0f} BPE cycles<extra></extra>"),
        ))
    bpe_cycles = pd.to_numeric(_bpe_rows(results)["bpe_cycles"]).astype(float)
    span = (float(bpe_cycles.min()), float(bpe_cycles.max())) if len(bpe_cycles) else DEFAULT_CYCLE_SPAN
    kmer = _kmer_rows(results)
    kmer = kmer.loc[(kmer["method"].astype(str) == FINE_TUNED) & pd.to_numeric(kmer["k"]).isin(chosen)]
    kmer = kmer.assign(_size=pd.to_numeric(kmer["kmer_size"], errors="coerce")).sort_values(["_size", "vocabulary", "k"])
    symbols = {v: KMER_SYMBOLS[i % len(KMER_SYMBOLS)] for i, v in enumerate(dict.fromkeys(kmer["vocabulary"].astype(str)))}
    for row in kmer.itertuples(index=False):
        k, vocabulary, accuracy = int(row.k), str(row.vocabulary), float(row.accuracy)
        if math.isnan(accuracy):
            continue
        colour = k_colour(k, all_ks)
        fig.add_trace(go.Scatter(
            x=list(span), y=[accuracy, accuracy], mode="lines+markers+text", name=f"{vocabulary} · k={k}",
            cliponaxis=False,
            legendgroup=vocabulary, line={"color": colour, "dash": KMER_DASH, "width": 1.2},
            marker={"symbol": symbols[vocabulary], "size": [0, 10], "color": colour},
            text=["", vocabulary], textposition="middle right",
            hovertemplate=(f"<b>{vocabulary}</b> (fixed k-mers, no cycle count)<br>next {k}-mer accuracy "
                           f"{percent(accuracy)}<extra></extra>"),
        ))
    fig.update_layout(height=480, title=title or None, legend={"orientation": "h", "y": -0.2},
                      margin={"r": 90})  # room for the k-mer vocabularies' names right of the plot
    fig.update_xaxes(title_text="BPE merge cycles", type=x_scale)
    fig.update_yaxes(title_text="next-k-mer accuracy (held-out)", type=y_scale, tickformat=".2~%")
    return fig


def nextkmer_table(results: pd.DataFrame, *, ks: Sequence[int] | None = None) -> pd.DataFrame:
    """Return the next-k-mer rows for ``ks``: BPE vocabularies by cycles, then k-mer vocabularies by k,
    then k and method, with ``times_chance`` (accuracy × 4^k, the accuracy over chance for a 4^k-class problem).
    """
    chosen = set(ks_of(results) if ks is None else (int(k) for k in ks))
    table = results.loc[pd.to_numeric(results["k"], errors="coerce").isin(chosen)].copy()
    kind_rank = table["vocabulary_kind"].astype(str).map({"bpe": 0, "kmer": 1}).fillna(2)
    size = pd.to_numeric(table["bpe_cycles"], errors="coerce").fillna(pd.to_numeric(table["kmer_size"], errors="coerce"))
    method_rank = table["method"].astype(str).map({m: i for i, m in enumerate(METHOD_ORDER)}).fillna(len(METHOD_ORDER))
    order = np.lexsort((method_rank.to_numpy(), pd.to_numeric(table["k"]).to_numpy(),
                        table["vocabulary"].astype(str).to_numpy(), size.fillna(np.inf).to_numpy(), kind_rank.to_numpy()))
    table = table.iloc[order].reset_index(drop=True)
    table["times_chance"] = pd.to_numeric(table["accuracy"], errors="coerce") * 4.0 ** pd.to_numeric(table["k"])
    return table


def nextkmer_peaks(results: pd.DataFrame, *, ks: Sequence[int] | None = None) -> pd.DataFrame:
    """Return per k the BPE vocabulary with the best fine-tuned accuracy, beside its baseline and chance.

    Columns: ``k``, ``vocabulary``, ``bpe_cycles``, ``accuracy``, ``baseline`` (the frequency baseline on
    that vocabulary; NaN when absent), ``chance`` (1 / 4^k). ks without a fine-tuned BPE accuracy are left out.

    >>> t = pd.DataFrame({"vocabulary": ["bpe_100", "bpe_600", "bpe_600"], "vocabulary_kind": ["bpe"] * 3,
    ...                   "bpe_cycles": [100.0, 600.0, 600.0], "kmer_size": [float("nan")] * 3, "k": [2, 2, 2],
    ...                   "method": ["fine-tuned", "fine-tuned", "frequency baseline"], "accuracy": [0.1, 0.2, 0.08]})
    >>> nextkmer_peaks(t)[["k", "vocabulary", "accuracy", "baseline", "chance"]].values.tolist()
    [[2, 'bpe_600', 0.2, 0.08, 0.0625]]
    """
    bpe = _bpe_rows(results)
    bpe = bpe.assign(_acc=pd.to_numeric(bpe["accuracy"], errors="coerce"), _k=pd.to_numeric(bpe["k"]).astype(int))
    rows = []
    for k in (ks_of(results) if ks is None else sorted(int(v) for v in ks)):
        tuned = bpe.loc[(bpe["_k"] == k) & (bpe["method"].astype(str) == FINE_TUNED) & bpe["_acc"].notna()]
        if tuned.empty:
            continue
        best = tuned.loc[tuned["_acc"].idxmax()]
        base = bpe.loc[(bpe["_k"] == k) & (bpe["method"].astype(str) == FREQUENCY_BASELINE)
                       & (bpe["vocabulary"] == best["vocabulary"]), "_acc"]
        rows.append({"k": k, "vocabulary": str(best["vocabulary"]), "bpe_cycles": float(best["bpe_cycles"]),
                     "accuracy": float(best["_acc"]), "baseline": float(base.iloc[0]) if len(base) else math.nan,
                     "chance": 4.0 ** -k})
    return pd.DataFrame(rows, columns=["k", "vocabulary", "bpe_cycles", "accuracy", "baseline", "chance"])

