"""Runs: every run in the runs folder (and a folder typed in the sidebar) with its provenance and the
analyses it holds, then the chosen run's details, all read from manifest.json and the files on disk."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from analysis import run
from dashboard import figures, loaders

TYPED_LABEL = "(typed path)"  # the run column of a folder typed in the sidebar, outside the runs folder


def manifest_or_problem(run_dir: Path) -> tuple[Any, str | None]:
    """Return (parsed manifest.json of any schema or None, why it cannot be read or None)."""
    try:
        return loaders.load_manifest_json(run_dir), None
    except run.RunNotFoundError as error:
        return None, str(error)
    except (ValueError, OSError) as error:  # truncated or garbage JSON (or bytes), unreadable file
        return None, (f"{run.MANIFEST} could not be read ({type(error).__name__}: {error}). "
                      f"Rebuild the run with `{loaders.build_command(run_dir)}`.")


def stored_evaluation(run_dir: Path, manifest: Any) -> dict[str, Any] | None:
    """evaluation.json, for manifests that do not carry the evaluation themselves (None when absent or unreadable)."""
    if isinstance(manifest, dict) and manifest.get("evaluation"):
        return None
    if not run.has_artifact(run_dir, run.EVALUATION):
        return None
    try:
        return loaders.load_evaluation(run_dir)
    except (ValueError, OSError):  # a damaged evaluation.json leaves the cells empty
        return None


def label_of(path: Path, root: Path) -> str:
    """How the sidebar names a run (app.py): its folder name, or the runs folder's own name."""
    return path.name if path != root else (path.resolve().name or str(path))


# --- every run found ---------------------------------------------------------------------------------

st.title("Runs")
root = loaders.runs_dir()
found = run.find_runs(root)
listed = [(label_of(p, root), p) for p in found]
chosen = loaders.current_run()
if chosen is not None and all(p.resolve() != chosen.resolve() for p in found):
    listed.append((f"{chosen.name} {TYPED_LABEL}", chosen))

rows = []
for label, path in listed:
    manifest, problem = manifest_or_problem(path)
    rows.append(figures.run_row(
        label, path, manifest, problem=problem, evaluation=stored_evaluation(path, manifest),
        exists=lambda name, path=path: run.has_artifact(path, name),
    ))
table = figures.runs_table(rows)

typed = " and the folder typed in the sidebar" if any(TYPED_LABEL in label for label, _ in listed) else ""
st.caption(f"{len(found):,} run{'s' if len(found) != 1 else ''} found in the runs folder `{root}`{typed}. "
           f"Pick one in the sidebar (or type a folder) to see its details below.")
if not table.empty:
    st.dataframe(
        table, hide_index=True, key="runs_table",
        column_order=[c for c in figures.RUN_TABLE_COLUMNS if c != "problem" or table["problem"].astype(bool).any()],
        column_config={
            "run": st.column_config.TextColumn("run", pinned=True),
            "problem": st.column_config.TextColumn("problem", help="Why the run cannot be opened, and the fix."),
            "created": st.column_config.TextColumn("created (UTC)"),
            "model": st.column_config.TextColumn("model", help="Preset · layers × hidden size"),
            "vocabulary": st.column_config.TextColumn("vocabulary", help="Kind · merge cycles · vocabulary size"),
            "genome (nt)": st.column_config.NumberColumn("genome (nt)", format="compact",
                                                         help="Sum of the chromosome lengths"),
            "held-out top-1": st.column_config.NumberColumn(
                "held-out top-1", format="percent",
                help="Masked tokens of held-out chromosomes the model predicts exactly"),
            "baseline top-1": st.column_config.NumberColumn(
                "baseline top-1", format="percent", help="Always predicting the most frequent token"),
            "analyses": st.column_config.TextColumn("analyses", help="Analyses present / registered"),
            **{name: st.column_config.CheckboxColumn(name, help=f"Writes {', '.join(outputs)}")
               for name, outputs in figures.ANALYSIS_OUTPUTS.items()},
            "to make missing analyses": st.column_config.TextColumn(
                "to make missing analyses", help="Run these commands, then reload the page."),
        },
    )
    broken = table[table["problem"].astype(bool)]
    if len(broken):
        st.warning(f"{len(broken):,} of {len(table):,} runs cannot be opened:\n"
                   + "\n".join(f"- **{r.run}**: {r.problem}" for r in broken.itertuples()))

# --- the chosen run --------------------------------------------------------------------------------------

st.divider()
run_dir = loaders.require_run()
manifest, problem = manifest_or_problem(run_dir)
problem = problem or figures.manifest_problem(manifest, run_dir)
name = manifest.get("name") if isinstance(manifest, dict) and manifest.get("name") else run_dir.name
st.header(f"Run · {name}")
if problem:
    (st.error if manifest is None else st.warning)(f"`{run_dir}` cannot be opened: {problem}")
    st.stop()

vocabulary = manifest.get("vocabulary") or {}
model = manifest.get("model") or {}
genome = manifest.get("genome") or {}
training = manifest.get("training") or {}
evaluation = manifest.get("evaluation") or stored_evaluation(run_dir, manifest) or {}

st.caption(
    f"Run folder `{run_dir}` · created {manifest.get('created_utc', '—')} "
    f"by `{manifest.get('producer', '—')}` · schema {manifest.get('schema_version', '—')}"
)

# Headline numbers.
cols = st.columns(5)
cols[0].metric(
    "Vocabulary size", str(vocabulary.get("vocab_size", "—")),
    help=f"{str(vocabulary.get('kind', '?')).upper()} vocabulary, {vocabulary.get('cycles', '?')} merge cycles",
)
cols[1].metric(
    "Layers × hidden size", f"{model.get('num_layers', '—')} × {model.get('hidden_size', '—')}",
    help=f"{model.get('architecture', '?')}, {model.get('num_attention_heads', '?')} attention heads",
)
cols[2].metric("Parameters", figures.format_count(model.get("n_parameters")))
cols[3].metric(
    "Masked top-1 accuracy", figures.format_percent(evaluation.get("masked_top1_accuracy")),
    delta=figures.accuracy_delta(evaluation),
    help=(
        "Held-out masked tokens the model predicts exactly; the delta compares it with always "
        "predicting the most frequent token "
        f"({figures.format_percent(evaluation.get('frequency_baseline_top1_accuracy'))}). "
        f"{figures.format_count(evaluation.get('n_masked_tokens'))} masked tokens."
    ),
)
cols[4].metric("Frequency baseline top-1", figures.format_percent(evaluation.get("frequency_baseline_top1_accuracy")))

final_loss = training.get("final_loss")
perplexity, baseline_perplexity = evaluation.get("perplexity"), evaluation.get("frequency_baseline_perplexity")
chromosomes = figures.chromosome_table(genome)
annotation_files = genome.get("annotations") or {}

left, middle, right = st.columns(3)
with left:
    st.subheader("Vocabulary and model")
    st.markdown(figures.markdown_list({
        "Vocabulary": f"{str(vocabulary.get('kind', '—')).upper()}, {vocabulary.get('cycles', '—')} merge cycles, "
        f"{vocabulary.get('vocab_size', '—')} tokens",
        "Model": f"{model.get('architecture', '—')}"
        + (f" (preset `{model['preset']}`)" if model.get("preset") else "")
        + f", {model.get('num_layers', '—')} layers, hidden size "
        f"{model.get('hidden_size', '—')}, {model.get('num_attention_heads', '—')} heads, "
        f"{figures.format_count(model.get('n_parameters'))} parameters",
        "Window": f"{model.get('max_window_tokens', '—')} tokens",
        "Masked top-10 accuracy": f"{figures.format_percent(evaluation.get('masked_top10_accuracy'))} (frequency "
        f"baseline {figures.format_percent(evaluation.get('frequency_baseline_top10_accuracy'))})",
        "Masked-token perplexity": "" if perplexity is None else f"{perplexity:.1f}"
        + ("" if baseline_perplexity is None else f" (frequency baseline {baseline_perplexity:.1f})"),
        # Scored on positions shown as [MASK] only: nothing to copy from the input.
        "Hidden ([MASK]) tokens only": "not in this run's evaluation"
        if evaluation.get("mask_only_top1_accuracy") is None else
        f"top-1 {figures.format_percent(evaluation.get('mask_only_top1_accuracy'))} (baseline "
        f"{figures.format_percent(evaluation.get('frequency_baseline_mask_only_top1_accuracy'))}), perplexity "
        f"{evaluation.get('mask_only_perplexity', float('nan')):.1f} (baseline "
        f"{evaluation.get('frequency_baseline_mask_only_perplexity', float('nan')):.1f})",
    }))
with middle:
    st.subheader("Genome")
    st.markdown(figures.markdown_list({
        "FASTA": f"`{genome.get('fasta', '—')}`",
        "Chromosomes": str(len(chromosomes)),
        "Nucleotides": f"{figures.format_count(genome.get('acgt_nucleotides'))} ACGT, "
        f"{figures.format_count(genome.get('other_nucleotides'))} other (N…)",
        "GC": figures.format_percent(genome.get("gc_fraction")),
        "Annotations": ", ".join(f"{name} (`{path}`)" for name, path in annotation_files.items())
        or ", ".join(figures.annotation_names(manifest)),
    }))
    if len(chromosomes):
        with st.expander("Chromosome lengths"):
            st.dataframe(chromosomes, hide_index=True, key="home_chromosomes")
with right:
    st.subheader("Training")
    st.markdown(figures.markdown_list({
        "Steps": figures.format_count(training.get("steps")),
        "Tokens seen": figures.format_count(training.get("tokens_seen")),
        "Time": figures.format_seconds(training.get("seconds")),
        "Final loss": f"{final_loss:.3f}" if isinstance(final_loss, (int, float)) else "—",
        "Trained on": ", ".join(map(str, training.get("train_chromosomes") or [])),
        "Held out": ", ".join(map(str, training.get("held_out_chromosomes") or [])),
    }))

st.subheader("Artifacts")
artifacts = figures.artifact_table(manifest)
if artifacts.empty:
    st.caption("The manifest lists no artifacts.")
else:
    artifacts.insert(2, "present", [run.has_artifact(run_dir, p) if p else False for p in artifacts["path"]])
    st.dataframe(artifacts, hide_index=True, key="home_artifacts")

st.subheader("Analyses")
analyses = figures.analysis_table(manifest, run_dir, lambda name: run.has_artifact(run_dir, name))
n_present = int(analyses["status"].str.startswith(figures.PRESENT).sum())
st.caption(f"{n_present} of {len(analyses)} analyses present (the files on disk decide; the manifest records how "
           "each was made). `grover analyze --list` describes them.")
st.dataframe(
    analyses, hide_index=True, key="home_analyses",
    column_config={
        "seconds": st.column_config.NumberColumn("seconds", format="%.1f"),
        "command": st.column_config.TextColumn("command", help="The command line that made it (recorded)"),
        "params": st.column_config.TextColumn("params", help="The analysis configuration it ran with (JSON)"),
        "make": st.column_config.TextColumn("to make it", help="Run this to make (or complete) the analysis"),
    },
)

stages = figures.stage_table(manifest)
versions = manifest.get("versions") or {}
left, right = st.columns([2, 1])
with left:
    st.subheader("Pipeline stages")
    if stages.empty:
        st.caption("The manifest lists no stages.")
    else:
        st.dataframe(stages, hide_index=True, key="home_stages")
with right:
    st.subheader("Versions")
    st.dataframe(
        {"package": list(versions), "version": [str(v) for v in versions.values()]},
        hide_index=True, key="home_versions",
    )

st.download_button(
    "Download manifest.json", json.dumps(manifest, indent=2), file_name=f"{run_dir.name}_manifest.json",
    mime="application/json", key="home_manifest_download", on_click="ignore",
)
