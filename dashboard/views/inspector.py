"""Sequence inspector: one short sequence through the run's model: its tokens, masked predictions, map positions.

The one page that runs the model: a forward pass per masked token of one sequence of at most
``MAX_NUCLEOTIDES`` nt (batched), on the model loaded once per server (``loaders.load_model_and_tokenizer``).
Pure logic lives in ``dashboard/charts/inspector.py``.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from analysis import run
from analysis.segmentation import segment
from dashboard import exports, figures, loaders, state, widgets
from dashboard.charts import inspector as charts
from grover_core.errors import GroverInputError
from grover_core.tokenizer import special_token_mask, token_strings

TEXT_KEY = "insp_text"  # ?seq=: the pasted sequence (plain letters), so a link reopens it
UPLOAD_KEY = "insp_upload"
K_KEY = "insp_k"  # ?k=
FIRST_KEY = "insp_first"  # first token predicted, when the sequence has more tokens than one view predicts
LAYER_KEY = "insp_layer"  # ?layer=
METHOD_KEY = "insp_method"  # ?method=
SHOW_TOKENS_KEY = "insp_token_table"


@st.cache_data(show_spinner="Predicting every masked token…", max_entries=16)
def masked_probabilities(_model, model_key: str, token_ids: tuple[int, ...], positions: tuple[int, ...],
                         cls_id: int, sep_id: int, mask_id: int, _special: np.ndarray) -> np.ndarray:
    """The model's probabilities at each masked position (cached per model and sequence; ``_`` args unhashed)."""
    return charts.masked_token_probabilities(_model, token_ids, positions, cls_id=cls_id, sep_id=sep_id,
                                             mask_id=mask_id, special=_special)


@st.cache_data(show_spinner=False, max_entries=8)
def example_sequence(run_dir: str) -> tuple[str, str, str]:
    """``(sequence, "chrom:start-end", description)`` of a stretch of the run's tokenized genome; empty without one."""
    from grover_core.tokenized_genome import TokenizedGenome

    try:
        genome = TokenizedGenome.open(run.artifact_path(run_dir, run.TOKENIZED_DIR))
        strings = loaders.load_tokens(run_dir).sort_values("token_id")["token"].astype(str).tolist()
        # A held-out chromosome when the run has one: predictions there are not on training data.
        held_out = (loaders.load_manifest(run_dir).get("training") or {}).get("held_out_chromosomes") or []
        chromosome = next((c for c in held_out if c in genome.chromosomes), genome.chromosomes[0])
        sequence, start = charts.example_region(genome.ids(chromosome), genome.starts(chromosome), strings)
    except Exception:  # noqa: BLE001 - the example is a convenience; the page works without it
        return "", "", ""
    if not sequence:
        return "", "", ""
    where = "a held-out chromosome (not trained on)" if chromosome in held_out else "the run's genome"
    return sequence, f"{chromosome}:{start + 1:,}-{start + len(sequence):,}", f"{len(sequence):,} nt of {where}."


def use_example(sequence: str) -> None:
    """Button callback: put the example region in the text box (before the widget is drawn)."""
    st.session_state[TEXT_KEY] = sequence


run_dir = loaders.require_run()
st.title("Sequence inspector")
st.caption(
    f"Paste or upload one DNA sequence (at most {charts.MAX_NUCLEOTIDES:,} nt): see how the run's tokenizer cuts it, "
    "what the model predicts when each token is masked in turn, and where its tokens lie on the embedding map."
)

# --- input ------------------------------------------------------------------------------------
state.from_link(TEXT_KEY, "seq", valid=lambda v: 0 < len(v) <= charts.MAX_NUCLEOTIDES)
example, example_label, example_help = example_sequence(str(run_dir))
text_col, upload_col = st.columns([3, 2])
with upload_col:
    uploaded = st.file_uploader(
        "…or upload a FASTA / text file", type=["fa", "fasta", "fna", "fas", "txt", "seq"], key=UPLOAD_KEY,
        max_upload_size=charts.MAX_UPLOAD_MB,
        help=f"Files up to {charts.MAX_UPLOAD_MB} MB; the first FASTA record is used. Clear the file to use the text box.",
    )
    if example:
        st.button(f"Use an example: {example_label}", key="insp_example", help=example_help,
                  on_click=use_example, args=(example,))
with text_col:
    text = st.text_area(
        "Paste a DNA sequence (plain letters or FASTA)", key=TEXT_KEY, height=140,
        placeholder=">my_region\nACGTTGCA…", help="A, C, G, T and N; lower case is fine. White space is ignored; "
        "from FASTA text the first record is used.",
    )

source = "the text box"
if uploaded is not None:
    problem = charts.upload_problem(uploaded.size)
    if problem:  # refused before reading it
        st.error(problem)
        st.stop()
    raw = uploaded.getvalue()
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError:
        st.error(f"`{uploaded.name}` is not a text file (not UTF-8). Upload a FASTA or plain-text sequence.")
        st.stop()
    source = f"the uploaded file `{uploaded.name}`"
else:
    content = text or ""
parsed = charts.parse_sequence_text(content)

if not content.strip():
    state.to_link("seq", None)
    st.info("Paste a sequence in the text box, upload a FASTA file"
            + (", or use the example from the run's genome." if example else "."))
    st.stop()
problems = charts.sequence_problems(parsed.sequence)
if problems:
    st.error("This sequence cannot be inspected:\n\n" + "\n\n".join(f"- {p}" for p in problems))
    st.stop()
# The link reopens a pasted sequence (not an uploaded file: the link would hold its whole record).
state.to_link("seq", parsed.sequence if uploaded is None else None)

try:
    model, tokenizer = loaders.load_model_and_tokenizer(run_dir)
except run.RunNotFoundError as error:
    st.info(str(error))
    st.stop()
except GroverInputError as error:
    st.error(f"The run's model cannot be loaded: {error}")
    st.stop()

sequence = parsed.sequence
try:
    segments = segment(tokenizer, sequence)
except GroverInputError as error:  # a tokenizer that does not read raw sequence (overlapping k-mers)
    st.error(f"The run's tokenizer cannot cut this sequence: {error}")
    st.stop()
strings = token_strings(tokenizer)
special = special_token_mask(tokenizer)
n_tokens = len(segments)
is_special = special[segments["token_id"].to_numpy()]
n_unk = int(is_special.sum())

read_from = source
if parsed.is_fasta:
    read_from += f", FASTA record `{parsed.name or '(no name)'}`"
    if parsed.n_records > 1:
        read_from += f" (the first of {parsed.n_records:,} records; the others are ignored)"
cols = st.columns(4)
cols[0].metric("Nucleotides", f"{len(sequence):,}")
cols[1].metric("Tokens", f"{n_tokens:,}")
cols[2].metric("Nucleotides per token", f"{len(sequence) / max(n_tokens, 1):.2f}")
cols[3].metric("[UNK] tokens (N)", f"{n_unk:,}")
st.caption(
    f"Read from {read_from}. Tokenized by the run's tokenizer (`{run_dir / run.MODEL_DIR}`). Near the ends of a "
    "short sequence the cut can differ from the genome-wide one (GROVER's model card: under ~50 nt it changes "
    "a lot; give ~100 nt of flank)."
)

# --- tokens -----------------------------------------------------------------------------------
st.subheader("Tokens")
st.markdown(charts.tokens_html(segments, sequence), unsafe_allow_html=True)
st.caption("Each block is one token (alternating colours; [UNK] in red). Hover a block for its number and span.")
try:
    genome_tokens = loaders.load_tokens(run_dir)[["token_id", "frequency"]]
except Exception:  # noqa: BLE001 - the column is a convenience; the map section reports a broken file
    genome_tokens = None
token_table = segments.assign(position=np.arange(1, n_tokens + 1))[["position", "token", "token_id", "start", "end", "length"]]
if genome_tokens is not None:
    token_table = token_table.merge(genome_tokens.rename(columns={"frequency": "genome_frequency"}), on="token_id",
                                    how="left")
with st.expander(f"Token table ({n_tokens:,} tokens, 0-based half-open spans)"):
    st.dataframe(token_table, hide_index=True, key=SHOW_TOKENS_KEY)

# --- masked predictions -----------------------------------------------------------------------
st.subheader("Masked-token predictions")
state.from_link(K_KEY, "k", parse=int, valid=lambda v: 1 <= v <= charts.MAX_TOP_K)
st.session_state.setdefault(K_KEY, charts.DEFAULT_TOP_K)
k = st.slider("Top k", 1, charts.MAX_TOP_K, key=K_KEY,
              help="How many of the model's best guesses to list at each position.")
state.to_link("k", k)

window_tokens = int(model.config.max_position_embeddings) - 2
per_view = charts.tokens_per_view(sum(p.numel() for p in model.parameters()), min(n_tokens, window_tokens) + 2)
first = 0
if n_tokens > per_view:
    if not 1 <= st.session_state.get(FIRST_KEY, 1) <= n_tokens - per_view + 1:  # a shorter sequence than before
        st.session_state[FIRST_KEY] = 1
    st.session_state.setdefault(FIRST_KEY, 1)
    first = int(st.number_input(
        f"First token predicted ({per_view} per view)", min_value=1, max_value=n_tokens - per_view + 1,
        step=max(1, per_view // 2), key=FIRST_KEY,
        help=f"Each view masks at most {charts.MAX_PREDICTED_TOKENS} tokens, fewer for large models (each token is "
        "one forward pass of the model over its context).",
    )) - 1
last = min(n_tokens, first + per_view)
positions = [i for i in range(first, last) if not is_special[i]]
probabilities = masked_probabilities(
    model, f"{run_dir}:{id(model)}", tuple(int(v) for v in segments["token_id"]), tuple(positions),
    int(tokenizer.cls_token_id), int(tokenizer.sep_token_id), int(tokenizer.mask_token_id), special,
)
table = charts.top_k_table(segments, positions, probabilities, strings, k=k)
summary = charts.prediction_summary(table, k)

range_note = (f"tokens {first + 1:,}-{last:,} of {n_tokens:,} ({per_view} per view for this model: "
              "move the first token to see the others)" if n_tokens > per_view
              else f"all {n_tokens:,} tokens")
context_note = ("the whole sequence is the context" if n_tokens <= window_tokens else
                f"each masked token sees a {window_tokens}-token window centred on it (the model's window)")
skipped = sum(1 for i in range(first, last) if is_special[i])
st.caption(
    f"Each token masked in turn ({range_note}; {context_note}): one copy of the sequence per token, batched. "
    "Special tokens are never predicted, as in the held-out evaluation"
    + (f"; {skipped:,} [UNK] positions are not predicted." if skipped else ".")
)
if summary["n"]:
    try:  # evaluation.json carries the masking rule; the manifest's copy may not
        evaluation = loaders.load_evaluation(run_dir)
    except (run.RunNotFoundError, ValueError, OSError):
        evaluation = {}
    cols = st.columns(3)
    cols[0].metric("True token ranked first", figures.format_percent(summary["top1"]))
    cols[1].metric(f"True token in the top {k}", figures.format_percent(summary["top_k"]))
    cols[2].metric("Mean probability of the true token", f"{summary['mean_p_true']:.3f}")
    held_out = ""
    if evaluation.get("masked_top1_accuracy") is not None:
        masking = evaluation.get("masking") or {}
        kept = 1 - masking.get("mask_token_fraction", 0.8) - masking.get("random_token_fraction", 0.1)
        held_out = (
            f" The run's held-out evaluation scored top-1 {figures.format_percent(evaluation.get('masked_top1_accuracy'))}"
            f" and top-10 {figures.format_percent(evaluation.get('masked_top10_accuracy'))} with BERT's masking rule, "
            f"which leaves {figures.format_percent(kept, 0)} of its targets visible (the model mostly gets those right): "
            "expect it above what a sequence scores here, where every target is [MASK]."
        )
    st.caption(f"Over {summary['n']:,} predicted positions.{held_out}")
    stem = f"{run_dir.name}_inspector_masked_top{k}"
    fig = charts.true_token_figure(table, k=k, n_nucleotides=len(sequence),
                                   title=f"{run_dir.name} · probability of the true token when masked")
    exports.show_figure(fig, stem=stem, key="insp_strip", data=table)
    column_config = {
        "p_true": st.column_config.ProgressColumn("p(true)", min_value=0.0, max_value=1.0, format="%.3f"),
        "in_top_k": st.column_config.CheckboxColumn(f"in top {k}"),
        **{f"p_{j}": st.column_config.NumberColumn(f"p {j}", format="%.3f") for j in range(1, k + 1)},
    }
    st.dataframe(table, hide_index=True, key="insp_predictions", column_config=column_config)
else:
    st.info("No nucleotide token to predict in this range (only [UNK] tokens).")

# --- on the embedding map ---------------------------------------------------------------------
st.subheader("Where its tokens lie on the embedding map")
projections = loaders.table_or_stop(run_dir, run.TOKEN_PROJECTIONS)
try:
    vocabulary = loaders.load_tokens(run_dir)
except run.RunNotFoundError as error:
    st.info(str(error))
    st.stop()
except Exception as error:  # noqa: BLE001 - a damaged Parquet file: pyarrow raises many types
    st.error(f"`{run.TOKENS}` in `{run_dir}` could not be read ({type(error).__name__}). "
             f"Remake it with `{run.command_for(run_dir, run.TOKENS)}`.")
    st.stop()
if projections.empty:
    st.info(f"`{run.TOKEN_PROJECTIONS}` in `{run_dir}` is empty. Remake it with "
            f"`{run.command_for(run_dir, run.TOKEN_PROJECTIONS)}`.")
    st.stop()
layers = run.layers_in(projections)
present = set(projections["method"].astype(str))
methods = [m for m in run.PROJECTION_METHODS if m in present] + sorted(present - set(run.PROJECTION_METHODS))
state.from_link(LAYER_KEY, "layer", parse=int, valid=lambda v: v in layers)
state.from_link(METHOD_KEY, "method", valid=lambda v: v in methods)
if st.session_state.get(LAYER_KEY) not in layers:
    st.session_state[LAYER_KEY] = layers[-1]
if st.session_state.get(METHOD_KEY) not in methods:
    st.session_state[METHOD_KEY] = methods[0]
layer_col, method_col = st.columns([3, 1])
with layer_col:
    layer = widgets.layer_choice("Layer (0 = input embeddings)", layers, key=LAYER_KEY,
                                 single_note="the only layer projected in this run")
with method_col:
    method = st.radio("Projection", methods, format_func=str.upper, horizontal=True, key=METHOD_KEY)
state.to_link("layer", layer)
state.to_link("method", method)

points = figures.token_points(vocabulary, projections, layer=layer, method=method)
counts = charts.sequence_token_counts(segments)
rows = charts.map_rows(points, counts)
on_map = int((rows["count_in_sequence"] > 0).sum())
n_distinct = int((~special[counts["token_id"].to_numpy()]).sum()) if len(counts) else 0
fig = charts.sequence_map_figure(rows, method=method,
                                 title=f"{run_dir.name} · layer {layer} · {method.upper()} · the sequence's tokens")
exports.show_figure(fig, stem=f"{run_dir.name}_inspector_map_layer{layer}_{method}", key="insp_map", data=rows)
st.caption(
    f"{len(rows):,} vocabulary tokens drawn in grey (every projected token at layer {layer}, no subsampling); "
    f"{on_map:,} of the sequence's {n_distinct:,} distinct nucleotide tokens highlighted, sized by how often they "
    "occur in the sequence (mean genome-wide embeddings, as on the token map; not this sequence's contextual ones)."
    + (" [UNK] and other special tokens are not projected." if n_unk else "")
    + (f" {n_distinct - on_map:,} of its tokens were never seen in the genome, so they have no point."
       if n_distinct > on_map else "")
)
with st.expander("The sequence's distinct tokens"):
    st.dataframe(counts.merge(points[["token_id", "x", "y"]], on="token_id", how="left"), hide_index=True,
                 key="insp_counts")
