"""Run overview: what this run is and how it was made (its provenance), read from manifest.json."""
from __future__ import annotations

import json

import streamlit as st

from analysis import run
from dashboard import figures, loaders

run_dir = loaders.require_run()
try:
    manifest = loaders.load_manifest(run_dir)
except (run.RunNotFoundError, ValueError) as error:  # no manifest, or a newer schema
    st.info(str(error))
    st.stop()

vocabulary = manifest.get("vocabulary") or {}
model = manifest.get("model") or {}
genome = manifest.get("genome") or {}
training = manifest.get("training") or {}
evaluation = manifest.get("evaluation") or {}
if not evaluation and (run_dir / run.EVALUATION).is_file():
    evaluation = loaders.load_evaluation(run_dir)

st.title(f"GROVER Lens · {manifest.get('name') or run_dir.name}")
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

left, middle, right = st.columns(3)
with left:
    st.subheader("Vocabulary and model")
    st.markdown(figures.markdown_list({
        "Vocabulary": f"{str(vocabulary.get('kind', '—')).upper()}, {vocabulary.get('cycles', '—')} merge cycles, "
        f"{vocabulary.get('vocab_size', '—')} tokens",
        "Model": f"{model.get('architecture', '—')}, {model.get('num_layers', '—')} layers, hidden size "
        f"{model.get('hidden_size', '—')}, {model.get('num_attention_heads', '—')} heads, "
        f"{figures.format_count(model.get('n_parameters'))} parameters",
        "Window": f"{model.get('max_window_tokens', '—')} tokens",
        "Masked top-10 accuracy": f"{figures.format_percent(evaluation.get('masked_top10_accuracy'))} (frequency "
        f"baseline {figures.format_percent(evaluation.get('frequency_baseline_top10_accuracy'))})",
        "Masked-token perplexity": "" if perplexity is None else f"{perplexity:.1f}"
        + ("" if baseline_perplexity is None else f" (frequency baseline {baseline_perplexity:.1f})"),
    }))
with middle:
    st.subheader("Genome")
    st.markdown(figures.markdown_list({
        "FASTA": f"`{genome.get('fasta', '—')}`",
        "Chromosomes": str(len(chromosomes)),
        "Nucleotides": f"{figures.format_count(genome.get('acgt_nucleotides'))} ACGT, "
        f"{figures.format_count(genome.get('other_nucleotides'))} other (N…)",
        "GC": figures.format_percent(genome.get("gc_fraction")),
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
    artifacts.insert(2, "present", [(run_dir / p).exists() if p else False for p in artifacts["path"]])
    st.dataframe(artifacts, hide_index=True, key="home_artifacts")

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
