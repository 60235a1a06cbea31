"""Compare models: two runs over the same vocabulary, side by side on the same tokens.

Run A is the run chosen in the sidebar (``?run=``); run B is chosen here (``?run_b=``). The views sit in
lazy tabs (``?view=``; only the open one is drawn: seven charts at once take the browser over 3 s). Everything
drawn is read from the two runs' artifacts; the one computation is the k-nearest-neighbour overlap
of the shared tokens' mean embeddings (a few thousand rows at most), cached. Pure logic lives in
``dashboard/charts/compare.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from analysis import run
from dashboard import exports, figures, loaders, state, widgets
from dashboard.charts import compare as charts

SIDEBAR_RUN_KEY = "run_choice"  # app.py's run select box (CHOICE_KEY): run A follows it both ways
A_KEY = "cmp_run_a"
B_KEY = "cmp_run_b"  # ?run_b=
LAYER_A_KEY = "cmp_layer_a"  # ?layer_a=
LAYER_B_KEY = "cmp_layer_b"  # ?layer_b= (when not matched by depth)
MATCH_KEY = "cmp_match_depth"  # ?match=0 to choose run B's layer freely
METHOD_KEY = "cmp_method"  # ?method=
COLOUR_KEY = "cmp_colour"  # ?colour=
X_KEY = "cmp_x"  # ?x=layer|depth
GROUPING_KEY = "cmp_grouping"  # ?grouping=
VALUE_KEY = "cmp_value"  # ?value=
METRIC_KEY = "cmp_metric"  # ?metric=
VIEW_KEY = "cmp_view"  # tabs: the view drawn; ?view=<name> (maps, the first, is left out of the link)
X_AXES = {"layer": "Layer", "depth": "Relative depth"}


def run_label(path: Path, root: Path) -> str:
    """The name the sidebar shows for a run folder (app.py's labels)."""
    return path.name if path != root else (path.resolve().name or str(path))


def pick_run_a(found: dict[str, Path]) -> None:
    """Run A select callback: make the sidebar follow, so the whole app (and ``?run=``) shows run A."""
    chosen = st.session_state[A_KEY]
    if chosen in found:
        st.session_state[SIDEBAR_RUN_KEY] = chosen


def swap_runs(label_a: str, label_b: str) -> None:
    """Swap button callback: B becomes the sidebar's run, A becomes run B."""
    st.session_state[SIDEBAR_RUN_KEY] = label_b
    st.session_state[B_KEY] = label_a


def token_means_or_none(run_dir: Path) -> dict | None:
    """The run's mean token embeddings, or None after saying what is missing or broken."""
    try:
        return loaders.load_token_means(run_dir)
    except run.RunNotFoundError as error:
        st.info(str(error))
    except Exception as error:  # noqa: BLE001 - a damaged safetensors file
        st.error(f"`{run.TOKEN_EMBEDDINGS}` in `{run_dir}` could not be read ({type(error).__name__}). "
                 f"Remake it with `{run.command_for(run_dir, run.TOKEN_EMBEDDINGS)}`.")
    return None


def evaluation_of(run_dir: Path, manifest: dict) -> dict:
    """The run's held-out evaluation (manifest first, else evaluation.json; {} when neither)."""
    if manifest.get("evaluation"):
        return manifest["evaluation"]
    try:
        return loaders.load_evaluation(run_dir)
    except (run.RunNotFoundError, ValueError, OSError):
        return {}


def model_line(manifest: dict) -> str:
    model, vocabulary = manifest.get("model") or {}, manifest.get("vocabulary") or {}
    return (f"{model.get('num_layers', '?')} layers × {model.get('hidden_size', '?')}, "
            f"{figures.format_count(model.get('n_parameters'))} parameters; "
            f"{str(vocabulary.get('kind', '?')).upper()} vocabulary of {vocabulary.get('vocab_size', '?')} tokens; "
            f"genome `{Path(str((manifest.get('genome') or {}).get('fasta', '?'))).name}`")


@st.cache_data(show_spinner="Comparing nearest neighbours…", max_entries=16)
def knn_table(run_a: str, run_b: str, ids_a: tuple[int, ...], ids_b: tuple[int, ...], k: int,
              stamp: tuple[int, int]) -> pd.DataFrame:
    """``charts.knn_overlap`` of the shared tokens' mean embeddings (cached on both runs' files)."""
    matrices_a = charts.layer_matrices(loaders.load_token_means(run_a), ids_a)
    matrices_b = charts.layer_matrices(loaders.load_token_means(run_b), ids_b)
    return charts.knn_overlap(matrices_a, matrices_b, k=k)


current = loaders.require_run()
st.title("Compare models")
st.caption("Two runs side by side on the same tokens: two checkpoints, our model against the published GROVER "
           "analysed on the same genome, or a trained model against its untrained twin.")

root = loaders.runs_dir()
found = {run_label(p, root): p for p in run.find_runs(root)}
label_a = next((label for label, path in found.items() if path.resolve() == current.resolve()), str(current))
paths = dict(found)
paths.setdefault(label_a, current)
wanted_b = st.query_params.get("run_b")
if wanted_b and wanted_b not in paths and run.is_run(wanted_b):  # a run folder outside the runs folder
    paths[wanted_b] = Path(wanted_b)
options_b = [label for label in paths if label != label_a]
if not options_b:
    try:
        fasta = (loaders.load_manifest(current).get("genome") or {}).get("fasta") or "genome.fa"
    except (run.RunNotFoundError, ValueError):
        fasta = "genome.fa"
    st.info(
        f"Comparing needs a second run in `{root}`; only `{label_a}` is there. Analyse another model on the same "
        f"genome into it, e.g. the published GROVER (`grover build {fasta} --model <GROVER folder> --out "
        f"{root / 'grover'}`) or this model's untrained twin (`grover build {fasta} --model {current / run.MODEL_DIR} "
        f"--untrained --out {root / 'untrained'}`), then reload this page."
    )
    st.stop()

# Run A mirrors the sidebar; run B comes from the link the first time, then from its select box.
st.session_state[A_KEY] = label_a
state.from_link(B_KEY, "run_b", valid=lambda v: v in options_b)
if st.session_state.get(B_KEY) not in options_b:
    st.session_state[B_KEY] = options_b[0]
col_a, col_swap, col_b = st.columns([5, 1, 5], vertical_alignment="bottom")
with col_a:
    st.selectbox("Run A (the sidebar's run)", list(paths), key=A_KEY, on_change=pick_run_a, args=(found,),
                 help="Changing it changes the run the sidebar (and every page) shows.")
with col_b:
    label_b = st.selectbox("Run B", options_b, key=B_KEY)
with col_swap:
    st.button("⇄", key="cmp_swap", on_click=swap_runs, args=(label_a, label_b), help="Swap A and B.",
              disabled=label_a not in found or label_b not in found)
state.to_link("run_b", label_b)
run_a, run_b = paths[label_a], paths[label_b]
names = (f"A: {label_a}", f"B: {label_b}")

try:
    manifests = (loaders.load_manifest(run_a), loaders.load_manifest(run_b))
except (run.RunNotFoundError, ValueError) as error:
    st.info(str(error))
    st.stop()
st.caption(f"**{names[0]}**: {model_line(manifests[0])}  \n**{names[1]}**: {model_line(manifests[1])}")

tokens_a = loaders.table_or_stop(run_a, run.TOKENS)
tokens_b = loaders.table_or_stop(run_b, run.TOKENS)
match = charts.match_vocabularies(tokens_a, tokens_b)
level, message = charts.vocabulary_message(match, label_a, label_b)
getattr(st, level)(message)
if match.n_shared == 0:
    st.stop()
if not match.identical:
    with st.expander(f"Tokens in one run only ({len(match.only_a):,} in A, {len(match.only_b):,} in B)"):
        st.dataframe(pd.DataFrame({"token": [*match.only_a, *match.only_b],
                                   "only in": [label_a] * len(match.only_a) + [label_b] * len(match.only_b)}),
                     hide_index=True, key="cmp_only")
shared = match.shared

# The projections give every view the layers of each run (and the maps their points).
projections_a = loaders.table_or_stop(run_a, run.TOKEN_PROJECTIONS)
projections_b = loaders.table_or_stop(run_b, run.TOKEN_PROJECTIONS)
if projections_a.empty or projections_b.empty:
    st.info(f"A run's `{run.TOKEN_PROJECTIONS}` is empty. Remake it with "
            f"`{run.command_for(run_a if projections_a.empty else run_b, run.TOKEN_PROJECTIONS)}`.")
    st.stop()
layers_a, layers_b = run.layers_in(projections_a), run.layers_in(projections_b)


def show_maps() -> None:
    """The two token maps at matching layers (same tokens, same colouring) with their PC tables."""
    st.subheader("Token maps")
    methods = [m for m in run.PROJECTION_METHODS
               if m in set(projections_a["method"].astype(str)) & set(projections_b["method"].astype(str))]
    if not methods:
        st.info("The two runs share no projection method (UMAP or PCA). Remake their projections with "
                f"`{run.command_for(run_b, run.TOKEN_PROJECTIONS)}`.")
        return

    state.from_link(LAYER_A_KEY, "layer_a", parse=int, valid=lambda v: v in layers_a)
    state.from_link(MATCH_KEY, "match", parse=lambda v: v != "0", valid=lambda v: isinstance(v, bool))
    state.from_link(LAYER_B_KEY, "layer_b", parse=int, valid=lambda v: v in layers_b)
    state.from_link(METHOD_KEY, "method", valid=lambda v: v in methods)
    state.from_link(COLOUR_KEY, "colour", valid=lambda v: v in figures.COLOUR_BY)
    if st.session_state.get(LAYER_A_KEY) not in layers_a:
        st.session_state[LAYER_A_KEY] = layers_a[-1]
    if st.session_state.get(METHOD_KEY) not in methods:
        st.session_state[METHOD_KEY] = methods[0]
    st.session_state.setdefault(MATCH_KEY, True)
    st.session_state.setdefault(COLOUR_KEY, "gc")

    controls = st.columns([3, 1.4, 2.6, 1.2, 1.6])
    with controls[0]:
        layer_a = widgets.layer_choice(f"Layer of A (0 = input embeddings; {layers_a[-1]} = last)", layers_a,
                                       key=LAYER_A_KEY, single_note="the only layer of A projected")
    with controls[1]:
        match_depth = st.toggle("Same depth", key=MATCH_KEY,
                                help="Run B's layer at the same relative depth as A's (layer / number of layers), "
                                "so models of different depth line up. Off: choose B's layer yourself.")
    with controls[2]:
        depth_a = charts.relative_depth(layer_a, layers_a)
        if match_depth:
            layer_b = charts.matching_layer(layers_b, depth_a)
            st.markdown(f"**Layer of B: {layer_b}** of {layers_b[-1]} (depth "
                        f"{charts.relative_depth(layer_b, layers_b):.2f}, A's is {depth_a:.2f})")
        else:
            if st.session_state.get(LAYER_B_KEY) not in layers_b:
                st.session_state[LAYER_B_KEY] = charts.matching_layer(layers_b, depth_a)
            layer_b = widgets.layer_choice(f"Layer of B ({layers_b[-1]} = last)", layers_b, key=LAYER_B_KEY,
                                           single_note="the only layer of B projected")
    with controls[3]:
        method = st.radio("Projection", methods, format_func=str.upper, key=METHOD_KEY)
    with controls[4]:
        colour_by = st.selectbox("Colour by", list(figures.COLOUR_BY), format_func=figures.COLOUR_BY.get,
                                 key=COLOUR_KEY)
    state.to_link("layer_a", layer_a)
    state.to_link("match", None if match_depth else "0")
    state.to_link("layer_b", None if match_depth else layer_b)
    state.to_link("method", method)
    state.to_link("colour", colour_by)

    map_columns = st.columns(2)
    drawn = []
    for side, column, run_dir, tokens, projections, layer, ids, name in (
        ("a", map_columns[0], run_a, tokens_a, projections_a, layer_a, shared["token_id_a"], names[0]),
        ("b", map_columns[1], run_b, tokens_b, projections_b, layer_b, shared["token_id_b"], names[1]),
    ):
        with column:
            points = charts.shared_points(figures.token_points(tokens, projections, layer=layer, method=method), ids)
            drawn.append(len(points))
            fig = figures.token_map_figure(points, colour_by=colour_by, method=method,
                                           title=f"{name} · layer {layer} · {method.upper()}")
            exports.show_figure(fig, stem=f"compare_{Path(run_dir).name}_layer{layer}_{method}_{colour_by}",
                                key=f"cmp_map_{side}", data=points)
            st.markdown(f"**Leading PCs at layer {layer} vs token properties** (Spearman)")
            correlations = loaders.table_or_none(run_dir, run.PC_CORRELATIONS)
            pc = figures.pc_property_table(correlations, layer) if correlations is not None else None
            if pc is not None and pc.empty:
                st.info(f"`{run.PC_CORRELATIONS}` of {name} holds no row for layer {layer}.")
            elif pc is not None:
                st.table(pc.style.format("{:.2f}"))
    st.caption(
        f"{drawn[0]:,} tokens drawn for A and {drawn[1]:,} for B (every projected token among the {match.n_shared:,} "
        "shared ones, no subsampling; tokens never seen in a run's genome have no point). Both maps use the same "
        "colouring; frequency is each run's own genome count."
    )


def show_groups() -> None:
    """Self-similarity curves by token group, A beside B."""
    st.subheader("Self-similarity by token group")
    groups_a = loaders.table_or_none(run_a, run.SELF_SIMILARITY_GROUPS)
    groups_b = loaders.table_or_none(run_b, run.SELF_SIMILARITY_GROUPS)
    if groups_a is not None and groups_b is not None:
        groupings = [g for g in charts.GROUPINGS if g in set(groups_a["grouping"]) & set(groups_b["grouping"])]
        if not groupings:
            st.info("The two runs share no token grouping in their self-similarity summaries.")
        else:
            state.from_link(GROUPING_KEY, "grouping", valid=lambda v: v in groupings)
            state.from_link(VALUE_KEY, "value", valid=lambda v: v in charts.SELF_SIMILARITY_VALUES)
            if st.session_state.get(GROUPING_KEY) not in groupings:
                st.session_state[GROUPING_KEY] = groupings[0]
            st.session_state.setdefault(VALUE_KEY, "self_similarity")
            left, middle, right = st.columns(3)
            grouping = left.selectbox("Group tokens by", groupings, format_func=charts.GROUPINGS.get, key=GROUPING_KEY)
            value = middle.radio("Value", list(charts.SELF_SIMILARITY_VALUES),
                                 format_func=charts.SELF_SIMILARITY_VALUES.get, key=VALUE_KEY, horizontal=True)
            x_axis = right.radio("x axis", list(X_AXES), format_func=X_AXES.get, key=X_KEY, horizontal=True,
                                 help="Relative depth (layer / last layer) lines up models of different depth.")
            state.to_link("grouping", grouping)
            state.to_link("value", value)
            state.to_link("x", x_axis)
            curves = charts.self_similarity_curves(groups_a, groups_b, grouping=grouping, value=value, names=names)
            title = f"{charts.SELF_SIMILARITY_VALUES[value]} by {charts.GROUPINGS[grouping].lower()}"
            fig = charts.self_similarity_figure(curves, names=names, value=value, x=x_axis, title=title)
            exports.show_figure(fig, stem=f"compare_{label_a}_{label_b}_self_similarity_{grouping}_{value}",
                                key="cmp_self_similarity", data=curves)
            st.caption("Mean over each group's tokens (hover for quartiles and counts). Groups are each run's own: "
                       "frequency deciles and repeat shares come from its genome.")


def show_agreement() -> None:
    """Per-token agreement: self-similarity of each shared token, and shared nearest neighbours per layer pair."""
    st.subheader("Per-token agreement")
    left, right = st.columns(2)
    with left:
        similarity_a = loaders.table_or_none(run_a, run.SELF_SIMILARITY)
        similarity_b = loaders.table_or_none(run_b, run.SELF_SIMILARITY)
        if similarity_a is not None and similarity_b is not None and len(similarity_a) and len(similarity_b):
            last = (int(similarity_a["layer"].max()), int(similarity_b["layer"].max()))
            pairs = charts.self_similarity_pairs(similarity_a, similarity_b, shared, layer_a=last[0], layer_b=last[1])
            stats = charts.correlation_summary(pairs)
            fig = charts.self_similarity_scatter(pairs, names=names, layers=last,
                                                 title="Self-similarity of each shared token at the last layer")
            exports.show_figure(fig, stem=f"compare_{label_a}_{label_b}_self_similarity_tokens", key="cmp_ss_scatter",
                                data=pairs)
            st.caption(f"Pearson r = {stats['pearson']:.3f}, Spearman ρ = {stats['spearman']:.3f} over "
                       f"{stats['n']:,} shared tokens with a self-similarity in both runs (layer {last[0]} of A, "
                       f"layer {last[1]} of B).")
    with right:
        means_a, means_b = token_means_or_none(run_a), token_means_or_none(run_b)
        if means_a is not None and means_b is not None:
            count_a, count_b = np.asarray(means_a["count"]), np.asarray(means_b["count"])
            ids_a, ids_b = shared["token_id_a"].to_numpy(), shared["token_id_b"].to_numpy()
            inside = (ids_a < len(count_a)) & (ids_b < len(count_b))
            seen = inside.copy()
            seen[inside] = (count_a[ids_a[inside]] > 0) & (count_b[ids_b[inside]] > 0)
            if seen.sum() < 2:
                st.info("Fewer than two shared tokens were seen by both runs' embedding extraction: no neighbours "
                        "to compare.")
            else:
                stamp = (run.artifact_path(run_a, run.TOKEN_EMBEDDINGS).stat().st_mtime_ns,
                         run.artifact_path(run_b, run.TOKEN_EMBEDDINGS).stat().st_mtime_ns)
                knn = knn_table(str(run_a), str(run_b), tuple(int(i) for i in ids_a[seen]),
                                tuple(int(i) for i in ids_b[seen]), charts.K_NEIGHBOURS, stamp)
                k, n = int(knn["k"].iloc[0]), int(knn["n_tokens"].iloc[0])
                fig = charts.knn_heatmap(knn, names=names, title=f"Shared nearest neighbours (k = {k}, cosine)")
                exports.show_figure(fig, stem=f"compare_{label_a}_{label_b}_knn_overlap", key="cmp_knn", data=knn)
                best = knn.loc[knn["mean_jaccard"].idxmax()]
                at_last = knn[(knn["layer_a"] == layers_a[-1]) & (knn["layer_b"] == layers_b[-1])]
                st.caption(
                    f"Mean Jaccard index of each token's {k} nearest neighbours (cosine of mean embeddings) in A's "
                    f"layer vs B's, over {n:,} shared tokens seen by both runs; chance is about "
                    f"{knn['chance'].iloc[0]:.3f}. "
                    + (f"Last layers: {float(at_last['mean_jaccard'].iloc[0]):.3f}. " if len(at_last) else "")
                    + f"Highest: {float(best['mean_jaccard']):.3f} (A layer {int(best['layer_a'])}, "
                    f"B layer {int(best['layer_b'])})."
                )


def show_probes() -> None:
    """Probe scores per layer and the held-out masked-token evaluation of both runs."""
    st.subheader("Probe scores")
    probes_a = loaders.table_or_none(run_a, run.PROBE_SCORES)
    probes_b = loaders.table_or_none(run_b, run.PROBE_SCORES)
    if probes_a is not None and probes_b is not None:
        state.from_link(METRIC_KEY, "metric", valid=lambda v: v in charts.PROBE_METRICS)
        st.session_state.setdefault(METRIC_KEY, "mcc")
        metric = st.radio("Score", list(charts.PROBE_METRICS), format_func=charts.PROBE_METRICS.get, key=METRIC_KEY,
                          horizontal=True)
        state.to_link("metric", metric)
        rows = charts.probe_rows(probes_a, probes_b, names=names)
        x_axis = st.session_state.get(X_KEY, "layer")
        fig = charts.probe_figure(rows, names=names, metric=metric, x=x_axis,
                                  title=f"Linear probes on window embeddings: {charts.PROBE_METRICS[metric]}")
        exports.show_figure(fig, stem=f"compare_{label_a}_{label_b}_probes_{metric}", key="cmp_probes", data=rows)
        st.caption("Cross-validated linear probes predicting each annotation from window embeddings, per layer; "
                   "dotted: each run's k-mer count baseline. The x axis follows the self-similarity choice.")

    # --- held-out evaluation ----------------------------------------------------------------------
    st.subheader("Held-out masked-token evaluation")
    evaluations = (evaluation_of(run_a, manifests[0]), evaluation_of(run_b, manifests[1]))
    table = charts.evaluation_table(*evaluations, names=names)
    if table.empty:
        st.info(f"Neither run has a held-out evaluation. Make one with `grover eval {run_a}`.")
    else:
        left, right = st.columns(2)
        with left:
            fig = charts.evaluation_figure(table, names=names, title="Masked-token accuracy on held-out chromosomes")
            exports.show_figure(fig, stem=f"compare_{label_a}_{label_b}_evaluation", key="cmp_evaluation", data=table)
        with right:
            st.dataframe(table.drop(columns="field"), hide_index=True, key="cmp_evaluation_table",
                         column_config={n: st.column_config.NumberColumn(n, format="%.4g") for n in names})
            st.caption("Perplexity per token depends on the vocabulary; compare per-nucleotide perplexity across "
                       "vocabularies. Each run is evaluated on its own held-out windows.")


# --- The views: lazy tabs, one drawn at a time (?view=) ------------------------------------------
# The probes' x axis follows the self-similarity choice (?x=), whichever tab is open.
state.from_link(X_KEY, "x", valid=lambda v: v in X_AXES)
st.session_state.setdefault(X_KEY, "layer" if layers_a[-1] == layers_b[-1] else "depth")
state.keep(LAYER_A_KEY, LAYER_B_KEY, MATCH_KEY, METHOD_KEY, COLOUR_KEY, X_KEY, GROUPING_KEY, VALUE_KEY,
           METRIC_KEY)  # the closed tabs' choices
view, tabs = state.view_tabs(VIEW_KEY, charts.VIEWS)
with tabs[view]:
    {"maps": show_maps, "groups": show_groups, "agreement": show_agreement, "probes": show_probes}[view]()
