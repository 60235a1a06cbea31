"""Self-similarity: how context-dependent each token's embedding is, layer by layer.

Sections: findings (how many tokens' self-similarity falls from first to last layer; repeat tokens vs
the rest), curves by token group with spread and the anisotropy baseline (raw or corrected) and the
intra-window similarity, a tokens x layers heatmap, and a token drill-down (its curves against its
group, its nearest tokens at a chosen layer, sample genomic contexts of its occurrences).
The three views below the findings sit in lazy tabs (``?view=``; only the open one is drawn; a link with
``?token=`` and no view opens the drill-down). Reads ``self_similarity*.parquet``,
``intra_window_similarity.parquet``, ``tokens.parquet``, the token means and the sampled occurrence
positions; computes nothing heavier than a 600-row cosine.
"""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from analysis import run
from analysis.self_similarity import token_groups
from dashboard import exports, loaders, state, widgets
from dashboard.charts import self_similarity as charts

# Widget keys (page prefix "ss_") and the link parameter each is mirrored to.
GROUPING_KEY, GROUPING_PARAM = "ss_grouping", "grouping"
VALUE_KEY, VALUE_PARAM = "ss_value", "value"
BAND_KEY, BAND_PARAM = "ss_band", "band"
SORT_KEY, SORT_PARAM = "ss_sort", "sort"
TOKEN_KEY, TOKEN_PARAM = "ss_token", "token"
LAYER_KEY, LAYER_PARAM = "ss_layer", "layer"
NEIGHBOURS_KEY = "ss_neighbours"
CONTEXTS_KEY = "ss_contexts"
VIEW_KEY = "ss_view"  # tabs: the view drawn; ?view=<name> (groups, the first, is left out of the link)

DEFAULT_NEIGHBOURS = 10
DEFAULT_CONTEXTS = 10
CONTEXT_WIDTH = 5  # tokens shown either side of an occurrence
# Used when the manifest lacks the analysis parameters (grover_lens.analyze.AnalysisConfig defaults).
DEFAULT_PARAMS = {"repeat_annotation": "repeats", "repeat_threshold": 0.5, "self_similarity_min_samples": 2}


def analysis_params(manifest: dict) -> dict:
    """The self-similarity analysis parameters the run recorded (defaults for what it lacks)."""
    recorded = (manifest.get("analyses", {}).get("self_similarity", {}).get("params")
                or manifest.get("analysis_config") or {})
    return {name: recorded.get(name, default) for name, default in DEFAULT_PARAMS.items()}


def titled_count(title: str, label: str, *, maximum: int, default: int, key: str) -> int:
    """A table's title (Markdown) with a number input on its right: how many rows the table shows."""
    title_col, input_col = st.columns([4, 1], vertical_alignment="bottom")
    title_col.markdown(title)
    return input_col.number_input(label, min_value=1, max_value=maximum, value=default, step=5, key=key)


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


run_dir = loaders.require_run()
st.title("Self-similarity")
st.caption(
    "**Self-similarity** of a token in a layer: the mean cosine similarity between its contextual "
    "embeddings at different occurrences in the genome (Ethayarajh 2019; the GROVER paper). Near 1: the "
    "layer gives the token the same vector wherever it occurs; lower: its vector depends on the context. "
    "The **anisotropy baseline** is the same mean over occurrences of *different* tokens (all vectors of "
    "a layer share a cone); **corrected** = raw − baseline is what compares across layers."
)
try:
    manifest = loaders.load_manifest(run_dir)
except (run.RunNotFoundError, ValueError) as error:  # missing manifest or newer schema: the message names the fix
    st.info(str(error))
    st.stop()
tokens = loaders.table_or_stop(run_dir, run.TOKENS)
table = loaders.table_or_stop(run_dir, run.SELF_SIMILARITY)
if table.empty:
    st.info(f"`{run.SELF_SIMILARITY}` in `{run_dir}` holds no token (no token had enough sampled occurrences). "
            f"Remake it with `{run.command_for(run_dir, run.SELF_SIMILARITY)}`.")
    st.stop()

params = analysis_params(manifest)
repeat_column = f"{params['repeat_annotation']}.share_any"
if repeat_column not in tokens.columns:
    repeat_column = None
layers = sorted(int(layer) for layer in table["layer"].unique())
first, last = charts.compared_layers(layers)
strings = tokens.set_index("token_id")["token"].astype(str)
run_name = run_dir.name

# --- The page's main choices --------------------------------------------------------------------
groups = loaders.table_or_none(run_dir, run.SELF_SIMILARITY_GROUPS)
groupings = charts.available_groupings(groups) if groups is not None else list(charts.GROUPINGS)
state.seed_choice(GROUPING_KEY, GROUPING_PARAM, groupings, groupings[0])
state.seed_choice(VALUE_KEY, VALUE_PARAM, list(charts.VALUES), "self_similarity")
state.seed_choice(BAND_KEY, BAND_PARAM, list(charts.BANDS), "iqr")

grouping_col, value_col, band_col = st.columns([1.4, 1.6, 1.4])
with grouping_col:
    grouping = st.selectbox("Group tokens by", groupings, format_func=lambda g: charts.GROUPINGS.get(g, g),
                            key=GROUPING_KEY,
                            help=f"Repeat-localised: at least {params['repeat_threshold']:.0%} of the token's "
                            f"genome occurrences lie inside `{params['repeat_annotation']}` intervals.")
with value_col:
    value = st.radio("Value", list(charts.VALUES), format_func=charts.VALUES.get, key=VALUE_KEY, horizontal=True,
                     help="Raw: mean cosine between occurrences (baseline drawn dashed). Corrected: raw minus the "
                     "layer's anisotropy baseline.")
with band_col:
    band = st.radio("Line and band", list(charts.BANDS), format_func=lambda b: charts.BANDS[b][3], key=BAND_KEY,
                    horizontal=True, help="Over the tokens of each group, per layer.")
state.to_link(GROUPING_PARAM, grouping)
state.to_link(VALUE_PARAM, value)
state.to_link(BAND_PARAM, band)
grouping_label = charts.GROUPINGS.get(grouping, grouping)

# --- Findings -------------------------------------------------------------------------------------
raw_change = charts.change_summary(table, value="self_similarity", first=first, last=last)
corrected_change = charts.change_summary(table, value="corrected", first=first, last=last)
contrast = charts.repeat_contrast(groups, value=value, layer=last) if groups is not None else None
baseline_by_layer = table.groupby("layer")["baseline"].first()
metric_cols = st.columns(4)
metric_cols[0].metric(
    f"Raw falls, layer {first} → {last}", f"{raw_change['n_fall']:,} / {raw_change['n_tokens']:,} tokens",
    help=f"Tokens whose raw self-similarity at layer {last} is below that at layer {first} "
    f"(mean {fmt(raw_change['mean_first'])} → {fmt(raw_change['mean_last'])}). Layer 0 is the input embedding table.")
metric_cols[1].metric(
    f"Corrected falls, layer {first} → {last}",
    f"{corrected_change['n_fall']:,} / {corrected_change['n_tokens']:,} tokens",
    help=f"Same, after subtracting each layer's anisotropy baseline "
    f"(mean {fmt(corrected_change['mean_first'])} → {fmt(corrected_change['mean_last'])}).")
metric_cols[2].metric(
    f"Anisotropy baseline, layer {first} → {last}",
    f"{fmt(baseline_by_layer.get(first))} → {fmt(baseline_by_layer.get(last))}",
    help="Mean cosine between occurrences of different tokens: what a raw value is compared against.")
if contrast:
    metric_cols[3].metric(
        f"Repeat tokens, layer {last} (mean)",
        fmt(contrast["repeat"]), delta=f"{contrast['repeat'] - contrast['non_repeat']:+.3f} vs other tokens",
        delta_color="off",
        help=f"{contrast['n_repeat']:,} repeat-localised tokens vs {contrast['n_non_repeat']:,} others "
        f"(mean {fmt(contrast['non_repeat'])}).")
else:
    metric_cols[3].metric(f"Repeat tokens, layer {last}", "–",
                          help="This run has no repeat-localised grouping (no repeat annotation).")
share = raw_change["share_fall"]
summary = (f"Raw self-similarity falls from layer {first} to layer {last} for **{raw_change['n_fall']:,} of "
           f"{raw_change['n_tokens']:,} tokens** ({share:.0%}); corrected for **{corrected_change['n_fall']:,}**."
           if raw_change["n_tokens"] else "")
if contrast:
    higher = "higher" if contrast["repeat"] > contrast["non_repeat"] else "lower"
    summary += (f" At layer {last}, the {contrast['n_repeat']:,} repeat-localised tokens are {higher} "
                f"({fmt(contrast['repeat'])} vs {fmt(contrast['non_repeat'])}, {charts.VALUES[value].lower()}).")
if summary:
    st.markdown(summary + " The GROVER paper: it falls for most tokens and stays high for tokens found mostly "
                "in repeats.")


def show_groups() -> None:
    """Self-similarity per layer by token group, with spread, the anisotropy baseline and intra-window similarity."""
    st.subheader("Self-similarity per layer by token group")
    baseline = loaders.table_or_none(run_dir, run.SELF_SIMILARITY_BASELINE)
    intra = None
    if run.has_artifact(run_dir, run.INTRA_WINDOW_SIMILARITY):
        intra = loaders.table_or_none(run_dir, run.INTRA_WINDOW_SIMILARITY)
    if groups is not None:
        curves = charts.group_curves(groups, grouping=grouping, value=value, band=band)
        baseline_line = charts.baseline_curve(baseline, value=value) if baseline is not None else None
        intra_line = charts.intra_window_curve(intra, baseline, value=value, band=band) if intra is not None else None
        if curves.empty:
            st.info(f"`{run.SELF_SIMILARITY_GROUPS}` holds no `{grouping}` group.")
        else:
            fig = charts.group_curves_figure(
                curves, value=value, band=band, grouping_label=grouping_label, baseline=baseline_line, intra=intra_line,
                title=f"{run_name} · {charts.VALUES[value]} by {grouping_label.lower()} · {charts.BANDS[band][3]}")
            exports.show_figure(
                fig, stem=f"{run_name}_self_similarity_{grouping}_{value}_{band}", key="ss_curves",
                data_fn=lambda: charts.curves_export(curves, baseline=baseline_line, intra=intra_line))
            sizes = curves.groupby("group", sort=False)["n_tokens"].max()
            note = (f"{charts.VALUES[value]} per layer, {charts.BANDS[band][3]} over the tokens of each group; "
                    f"{len(sizes)} groups ({', '.join(f'{g}: {n:,}' for g, n in sizes.items())} tokens). Tokens with "
                    f"at least {params['self_similarity_min_samples']} sampled occurrences count. Dashed grey: "
                    "anisotropy baseline" + (" (0 after correction)" if value == "corrected" else "") + ".")
            if intra_line is not None:
                note += (" Dotted green: intra-window similarity, the mean cosine between the tokens of one window "
                         f"({int(intra_line['n_windows'].max()):,} windows)"
                         + (", minus the baseline" if value == "corrected" else "") + ".")
            else:
                note += (f" No intra-window similarity in this run (`{run.INTRA_WINDOW_SIMILARITY}`; make it with "
                         f"`{run.command_for(run_dir, run.INTRA_WINDOW_SIMILARITY)}` after embedding windows).")
            if grouping == "repeat_localised":
                note += (f" Repeat: ≥ {params['repeat_threshold']:.0%} of occurrences inside "
                         f"`{params['repeat_annotation']}`; tokens never seen in the genome have no group.")
            st.caption(note + " Click a legend entry to hide a line.")


def show_heatmap() -> None:
    """Every token's self-similarity at every layer, rows sorted as chosen."""
    st.subheader("Tokens × layers")
    sorts = list(charts.SORTS) if repeat_column else [s for s in charts.SORTS if s != "repeat_share"]
    state.seed_choice(SORT_KEY, SORT_PARAM, sorts, "frequency")
    sort = st.selectbox("Sort rows by", sorts, key=SORT_KEY,
                        format_func=lambda s: charts.SORTS[s].replace("the last layer", f"layer {last}")
                        .replace("first to last compared layer", f"layer {first} to {last}"))
    state.to_link(SORT_PARAM, sort)
    heat, heat_layers = charts.heatmap_table(table, tokens, value=value, sort=sort, repeat_column=repeat_column,
                                             first=first, last=last)
    sort_text = charts.SORTS[sort].replace("the last layer", f"layer {last}").replace(
        "first to last compared layer", f"layer {first} to {last}").lower()
    heat_fig = charts.heatmap_figure(heat, heat_layers, value=value,
                                     title=f"{run_name} · {charts.VALUES[value]} · {len(heat):,} tokens × "
                                     f"{len(heat_layers)} layers · sorted by {sort_text}")
    exports.show_figure(heat_fig, stem=f"{run_name}_self_similarity_heatmap_{value}_{sort}", key="ss_heatmap",
                        data=heat)
    n_special = int(tokens["is_special"].astype(bool).sum())
    n_left_out = len(tokens) - n_special - len(heat)
    st.caption(
        f"{len(heat):,} tokens × {len(heat_layers)} layers: every token with at least "
        f"{params['self_similarity_min_samples']} sampled occurrences, none subsampled "
        f"({n_special} special tokens and {n_left_out:,} {'token' if n_left_out == 1 else 'tokens'} with fewer "
        "samples are not in the table). "
        f"Rows sorted by {sort_text}. Colour: {charts.VALUES[value].lower()}"
        + (" (red above the baseline, blue below)." if value == "corrected" else ".") + " Hover a cell for the token."
    )


def show_token() -> None:
    """One token: its curves against its group, its nearest tokens at a layer, sample genomic contexts."""
    st.subheader("One token")
    heat, _ = charts.heatmap_table(table, tokens, value=value, sort="frequency", repeat_column=repeat_column,
                                   first=first, last=last)  # the tokens with a value, whatever the heatmap's order
    by_frequency = heat.sort_values(["frequency", "token_id"], ascending=[False, True])
    token_ids = [int(t) for t in by_frequency["token_id"]]
    id_by_token = {strings[t]: t for t in token_ids}
    labels = {t: charts.token_label(strings[t], t, f) for t, f in zip(token_ids, by_frequency["frequency"])}


    def parse_token(text: str) -> int:
        """``?token=`` holds the token string (case-insensitive)."""
        key = text.strip().upper()
        if key not in id_by_token:
            raise ValueError(f"unknown token {text!r}")
        return id_by_token[key]


    linked_token = st.query_params.get(TOKEN_PARAM) if TOKEN_KEY not in st.session_state else None
    state.seed_choice(TOKEN_KEY, TOKEN_PARAM, token_ids, token_ids[0], parse=parse_token)
    if linked_token and linked_token.strip().upper() not in id_by_token:
        st.warning(f"`{linked_token}` (from the link) is not a token of this run with a self-similarity value; "
                   f"showing {strings[st.session_state[TOKEN_KEY]]} instead.")
    state.seed_choice(LAYER_KEY, LAYER_PARAM, layers, last, parse=int)
    token_col, layer_col = st.columns([2, 3])
    with token_col:
        token_id = st.selectbox("Token", token_ids, format_func=labels.get, key=TOKEN_KEY,
                                help="Type to search; most frequent first. Also opened by `?token=<sequence>` in "
                                "the link.")
    with layer_col:
        layer = widgets.layer_choice("Layer for nearest tokens (0 = input embeddings)", layers, key=LAYER_KEY,
                                     single_note="the only layer in this run")
    state.to_link(TOKEN_PARAM, strings[token_id])
    state.to_link(LAYER_PARAM, layer)

    token = strings[token_id]
    row = tokens.set_index("token_id").loc[token_id]
    curve = charts.token_curve(table, token_id)
    memberships = token_groups(tokens, repeat_share_column=repeat_column or "",
                               repeat_threshold=params["repeat_threshold"])
    group = charts.token_group(memberships, token_id, grouping)
    n_samples = int(curve["n_samples"].max())
    at = curve.set_index("layer")

    info_cols = st.columns(5)
    info_cols[0].metric("Sampled occurrences", f"{n_samples:,}",
                        help=f"Occurrences the extraction kept for this token (a uniform sample of its "
                        f"{int(row['frequency']):,} occurrences in the genome); self-similarity averages over their "
                        "pairs.")
    info_cols[1].metric(f"Group ({grouping_label.lower()})", group or "none")
    for column, name, label in ((info_cols[2], "self_similarity", "Raw"), (info_cols[3], "corrected", "Corrected")):
        start, end = at[name].get(first), at[name].get(last)
        column.metric(f"{label}, layer {last}", fmt(end), delta_color="off",
                      delta=f"{end - start:+.3f} since layer {first}" if pd.notna(start) and pd.notna(end) else None)
    in_repeats = row[repeat_column] if repeat_column else None
    info_cols[4].metric("In repeats", f"{in_repeats:.0%}" if in_repeats is not None and pd.notna(in_repeats) else "–",
                        help=f"Share of the token's genome occurrences inside `{params['repeat_annotation']}` "
                        "intervals.")

    group_raw = group_corrected = None
    if groups is not None and group is not None:
        group_raw = charts.group_curves(groups, grouping=grouping, value="self_similarity", band=band)
        group_raw = group_raw[group_raw["group"] == group]
        group_corrected = charts.group_curves(groups, grouping=grouping, value="corrected", band=band)
        group_corrected = group_corrected[group_corrected["group"] == group]
    token_fig = charts.token_curve_figure(
        curve, token=token, group_label=group, group_raw=group_raw, group_corrected=group_corrected, band=band,
        marked_layer=layer if len(layers) > 1 else None,
        title=f"{run_name} · {token} (id {token_id}) vs its {grouping_label.lower()} group"
        + (f" {group}" if group else ""))


    def token_curve_data() -> pd.DataFrame:
        data = curve.assign(token=token, token_id=token_id)
        for name, part in (("group_raw", group_raw), ("group_corrected", group_corrected)):
            if part is not None and not part.empty:
                data = data.merge(part.set_index("layer")[["centre", "low", "high"]].add_prefix(f"{name}_"),
                                  left_on="layer", right_index=True, how="left")
        return data


    exports.show_figure(token_fig, stem=f"{run_name}_self_similarity_{token}", key="ss_token_curve",
                        data_fn=token_curve_data)
    st.caption(
        f"Red: {token} over its {n_samples:,} sampled occurrences. Blue dashed: the mean curve of its group "
        f"({charts.BANDS[band][3]}). Grey dotted (left): the anisotropy baseline"
        + (f". Vertical line: layer {layer}, where the nearest tokens below are taken." if len(layers) > 1 else ".")
    )

    near_col, context_col = st.container(), st.container()  # full width each: the tables are wide
    with near_col:
        n_neighbours = titled_count(f"**Nearest tokens to {token} at layer {layer}** (cosine of mean embeddings)",
                                    "Neighbours", maximum=100, default=DEFAULT_NEIGHBOURS, key=NEIGHBOURS_KEY)
        try:
            means = loaders.load_token_means(run_dir)
        except run.RunNotFoundError as error:
            st.info(str(error))
            means = None
        except Exception as error:  # damaged safetensors file
            st.error(f"`{run.TOKEN_EMBEDDINGS}` in `{run_dir}` could not be read ({type(error).__name__}: {error}). "
                     f"Remake it with `{run.command_for(run_dir, run.TOKEN_EMBEDDINGS)}`.")
            means = None
        if means is not None and f"layer_{layer}" not in means:
            st.info(f"The token means hold no layer {layer}. Remake them with "
                    f"`{run.command_for(run_dir, run.TOKEN_EMBEDDINGS)}`.")
        elif means is not None:
            counts = means["count"]
            special = tokens.set_index("token_id")["is_special"].astype(bool)
            candidates = [t for t in range(len(counts)) if counts[t] > 0 and not special.get(t, True)]
            nearest = charts.nearest_tokens(means[f"layer_{layer}"], token_id, candidates=candidates,
                                            k=int(n_neighbours))
            near = charts.nearest_table(nearest, tokens, table, layer=layer, token_id=token_id,
                                        repeat_column=repeat_column)
            table_key = f"ss_nearest_{token_id}_{layer}"
            neighbour_ids = near["token_id"].tolist()

            def open_neighbour(key: str = table_key, ids: list = neighbour_ids) -> None:
                """Clicking a row opens that token in this drill-down."""
                selection = st.session_state.get(key)
                rows = selection.selection.rows if selection is not None else []
                if rows:
                    st.session_state[TOKEN_KEY] = int(ids[rows[0]])

            st.dataframe(
                near, hide_index=True, key=table_key, on_select=open_neighbour, selection_mode="single-row",
                column_config={
                    "cosine": st.column_config.NumberColumn(format="%.3f"),
                    "reverse_complement": st.column_config.CheckboxColumn(
                        "rev. comp.", help=f"The reverse complement of {token}"),
                    "frequency": st.column_config.NumberColumn(format="localized"),
                    "repeat_share": st.column_config.NumberColumn("in repeats", format="percent"),
                    "self_similarity": st.column_config.NumberColumn(f"raw (layer {layer})", format="%.3f"),
                    "corrected": st.column_config.NumberColumn(f"corrected (layer {layer})", format="%.3f"),
                },
            )
            st.caption(f"{len(near)} of {len(candidates) - 1:,} candidate tokens (seen in the genome, not special). "
                       "Click a row to open that token.")

    with context_col:
        n_contexts = titled_count(f"**Where {token} occurs** (sampled occurrences, {CONTEXT_WIDTH} tokens either side)",
                                  "Occurrences", maximum=500, default=DEFAULT_CONTEXTS, key=CONTEXTS_KEY)
        try:
            contexts = loaders.load_occurrence_contexts(run_dir, token_id, int(n_contexts), width=CONTEXT_WIDTH)
        except run.RunNotFoundError as error:
            st.info(str(error))
        except Exception as error:  # damaged extraction or tokenized genome
            st.error(f"The sampled occurrences of `{run_dir}` could not be read ({type(error).__name__}: {error}). "
                     f"Remake them with `{run.command_for(run_dir, run.EMBEDDINGS_DIR)}`.")
        else:
            by_id = strings.reindex(range(int(strings.index.max()) + 1)).fillna("").tolist()
            shown = charts.context_table(contexts, by_id)
            st.dataframe(
                shown.style.set_properties(subset=["token"], **{"font-weight": "bold", "background-color": "#fde2e2"}),
                hide_index=True, key="ss_contexts_table",
                column_config={
                    "start": st.column_config.NumberColumn("start (0-based)", format="%d"),
                    "end": st.column_config.NumberColumn(format="%d"),
                    "left": st.column_config.TextColumn(alignment="right"),
                    "token": st.column_config.TextColumn(alignment="center"),
                },
            )
            st.caption(f"{len(shown):,} of the {n_samples:,} sampled occurrences, a uniform random sample of the "
                       f"token's {int(row['frequency']):,} in the genome (taken during extraction). Start is 0-based; "
                       f"`{charts.GAP_MARK}` marks a jump in the genome (e.g. a run of N).")


# --- The views: lazy tabs, one drawn at a time (?view=) ---------------------------------------------
if TOKEN_PARAM in st.query_params and "view" not in st.query_params and VIEW_KEY not in st.session_state:
    st.session_state[VIEW_KEY] = charts.VIEWS["token"]  # a link naming a token opens on it
state.keep(SORT_KEY, TOKEN_KEY, LAYER_KEY, NEIGHBOURS_KEY, CONTEXTS_KEY)  # the closed tabs' choices
view, tabs = state.view_tabs(VIEW_KEY, charts.VIEWS)
with tabs[view]:
    {"groups": show_groups, "heatmap": show_heatmap, "token": show_token}[view]()
