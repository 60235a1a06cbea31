"""Benchmarks: the paper's experiments, each fine-tuned score beside its simple baseline.

Reads ``experiments/finetune_results.parquet`` (``grover finetune --run``), the task tables
``experiments/tasks/*.parquet`` (label, chromosome and split only) and
``experiments/nextkmer_results.parquet`` (``grover nextkmer --run``); computes nothing but tables
for display. Each section stands alone: a missing file says which command makes it and the other
section still draws. Link parameters: ``metric``, ``k`` (comma-separated), ``xscale``, ``yscale``.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis import run
from dashboard import exports, loaders, state
from dashboard.charts import benchmarks as charts

# Widget keys (prefixed "bench_") and the link parameters that reopen the view.
METRIC_KEY, METRIC_PARAM = "bench_metric", "metric"
K_KEY, K_PARAM = "bench_k", "k"
XSCALE_KEY, XSCALE_PARAM = "bench_xscale", "xscale"
YSCALE_KEY, YSCALE_PARAM = "bench_yscale", "yscale"

COUNT = st.column_config.NumberColumn(format="localized")


def results_or_none(name: str, columns: tuple[str, ...]) -> pd.DataFrame | None:
    """A results table with its schema's columns and at least one row, or None after saying what to run."""
    table = loaders.table_or_none(run_dir, name)
    if table is None:
        return None
    remake = run.command_for(run_dir, name)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        st.error(f"`{name}` in `{run_dir}` lacks the columns {', '.join(f'`{c}`' for c in missing)} "
                 f"(written by an older GROVER Lens?). Remake it with `{remake}`.")
        return None
    if table.empty:
        st.info(f"`{name}` in `{run_dir}` holds no results. Make them with `{remake}`.")
        return None
    return table


def parse_ks(text: str) -> list[int]:
    """``?k=2,4,6``: the ks shown."""
    return [int(part) for part in text.split(",") if part.strip()]


run_dir = loaders.require_run()
run_name = run_dir.name
st.title("Benchmarks")
st.caption("The GROVER paper's experiments on this run's model: fine-tuning tasks scored by MCC, and next-k-mer "
           "prediction across vocabularies (the paper's Fig. 1). Every fine-tuned score stands beside a simple "
           "baseline.")

# --- Fine-tuning tasks ---------------------------------------------------------------------------
st.subheader("Fine-tuning tasks")
finetune = results_or_none(run.FINETUNE_RESULTS, run.FINETUNE_RESULT_COLUMNS)
try:
    task_tables = loaders.load_task_tables(run_dir)
except Exception as error:  # a damaged task table: pyarrow raises many types
    st.error(f"A task table in `{run_dir / run.TASKS_DIR}` could not be read ({type(error).__name__}: {error}). "
             f"Remake them with `{run.command_for(run_dir, run.TASKS_DIR)}`.")
    task_tables = {}
tasks = charts.task_summary(task_tables) if task_tables else None

if finetune is not None:
    metrics = list(charts.METRICS)
    state.seed_choice(METRIC_KEY, METRIC_PARAM, metrics, "mcc")
    metric = st.radio("Metric", metrics, format_func=charts.METRICS.get, horizontal=True, key=METRIC_KEY,
                      help="Scored on the held-out test split of each task.")
    state.to_link(METRIC_PARAM, metric)
    label = charts.METRICS[metric]
    table = charts.finetune_table(finetune, metric=metric)
    fig = charts.finetune_figure(finetune, metric=metric, title=f"{run_name} · fine-tuning · {label}")
    exports.show_figure(fig, stem=f"{run_name}_finetune_{metric}", key="bench_finetune", data=table)

    split = "the held-out test split, chosen by chromosome (no test chromosome is seen in training)"
    if tasks is not None:
        held_out = [f"{r.task}: {r.test_chromosomes}" for r in tasks.itertuples() if r.test_chromosomes]
        if held_out:
            split += f"; test chromosomes {'; '.join(held_out)}"
    st.caption(f"{label} on {split}. Colour: fine-tuned models; grey hatched: the TF-IDF k-mer baseline (a linear "
               "model on k-mer counts) on the same split. The GROVER paper: MCC 0.996 / 0.63 / 0.60 on "
               "Prom300 / PromScan / CTCF, TF-IDF baselines 0.67 / 0.39 / 0.26.")
    st.dataframe(
        table, hide_index=True, key="bench_finetune_table",
        column_config={
            **{m: st.column_config.NumberColumn(charts.METRICS[m], format="%.3f") for m in charts.METRICS},
            "vs_baseline": st.column_config.NumberColumn(f"{label} − baseline", format="%+.3f",
                                                         help="Minus the best baseline on the same task."),
            "n_train": COUNT, "n_test": COUNT, "seconds": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    st.caption(f"{finetune['task'].nunique()} tasks, {len(finetune)} results; seconds are the wall time of "
               f"fitting and scoring ({finetune['seconds'].sum():,.0f} s in all).")

if tasks is not None:
    st.markdown("**Task tables**")
    st.dataframe(tasks, hide_index=True, key="bench_tasks_table",
                 column_config={"n_train": COUNT, "n_validation": COUNT, "n_test": COUNT,
                                "positive_share": st.column_config.NumberColumn("positive share", format="percent"),
                                "test_positive_share": st.column_config.NumberColumn("positive share (test)",
                                                                                     format="percent"),
                                "test_chromosomes": st.column_config.TextColumn("test chromosomes")})
    st.caption(f"Examples per split of each task in `{run.TASKS_DIR}/`; splits are by chromosome. Positive share: "
               "the fraction with label 1 (binary tasks only).")

# --- Next-k-mer prediction -----------------------------------------------------------------------
st.subheader("Next-k-mer prediction across vocabularies")
nextkmer = results_or_none(run.NEXTKMER_RESULTS, run.NEXTKMER_RESULT_COLUMNS)
if nextkmer is not None:
    ks = charts.ks_of(nextkmer)
    state.from_link(K_KEY, K_PARAM, parse=parse_ks, valid=lambda v: bool(v) and set(v) <= set(ks))
    if st.session_state.get(K_KEY) is None or not set(st.session_state[K_KEY]) <= set(ks):
        st.session_state[K_KEY] = ks  # first visit, or ks of another run
    state.seed_choice(XSCALE_KEY, XSCALE_PARAM, list(charts.SCALES), "log")
    state.seed_choice(YSCALE_KEY, YSCALE_PARAM, list(charts.SCALES), "linear")
    k_col, x_col, y_col = st.columns([3, 1, 1])
    with k_col:
        chosen_ks = st.multiselect("k (nucleotides predicted)", ks, key=K_KEY,
                                   help="Each k is a 4^k-class problem: predict the next k nucleotides.")
    with x_col:
        x_scale = st.radio("Cycles axis", charts.SCALES, horizontal=True, key=XSCALE_KEY)
    with y_col:
        y_scale = st.radio("Accuracy axis", charts.SCALES, horizontal=True, key=YSCALE_KEY)
    chosen_ks = sorted(chosen_ks)
    state.to_link(K_PARAM, ",".join(str(k) for k in chosen_ks))
    state.to_link(XSCALE_PARAM, x_scale)
    state.to_link(YSCALE_PARAM, y_scale)

    if not chosen_ks:
        st.info("Choose at least one k above.")
    else:
        fig = charts.nextkmer_figure(nextkmer, ks=chosen_ks, x_scale=x_scale, y_scale=y_scale,
                                     title=f"{run_name} · next-k-mer accuracy against BPE cycles")
        shown = charts.nextkmer_table(nextkmer, ks=chosen_ks)
        exports.show_figure(fig, stem=f"{run_name}_nextkmer_{'-'.join(map(str, chosen_ks))}", key="bench_nextkmer",
                            data=shown)
        peaks = charts.nextkmer_peaks(nextkmer, ks=chosen_ks)
        best = "; ".join(f"k={r.k}: {charts.percent(r.accuracy)} at {r.bpe_cycles:,.0f} cycles ({r.vocabulary}; "
                         f"frequency baseline {charts.percent(r.baseline)}, chance {charts.percent(r.chance)})"
                         for r in peaks.itertuples())
        st.caption("Held-out accuracy of predicting the next k nucleotides. Solid: fine-tuned; dashed: frequency "
                   "baseline; dotted: chance (1/4^k); dash-dotted horizontal references with a marker: fixed k-mer "
                   "vocabularies (no cycle count). "
                   + (f"Best BPE vocabulary per k: {best}. " if best else "")
                   + "The GROVER paper: accuracy peaked between 400 and 800 cycles; next-6-mer 2% for GROVER, "
                   "1.1% for the frequency baseline, 0.024% chance.")
        st.dataframe(
            shown, hide_index=True, key="bench_nextkmer_table",
            column_config={
                "bpe_cycles": st.column_config.NumberColumn("BPE cycles", format="%d"),
                "kmer_size": st.column_config.NumberColumn("k-mer size", format="%d"),
                "accuracy": st.column_config.NumberColumn(format="%.4f"),
                "times_chance": st.column_config.NumberColumn("× chance", format="%.1f",
                                                              help="Accuracy × 4^k: how many times chance."),
                "n_train": COUNT, "n_test": COUNT, "seconds": st.column_config.NumberColumn(format="%.1f"),
            },
        )
