"""GC/AG content clusters: token clusters per layer on the token map, in GC-AG space, and their profiles.

Reads ``token_clusters``, ``cluster_profiles``, ``cluster_enrichment`` (``grover analyze --only clusters``)
with ``tokens`` and ``token_projections``; computes nothing but joins. A cluster is chosen in the select
box or by clicking one of its tokens on either scatter; its tokens are then listed with a CSV download.
The two scatters and the two profiles sit in lazy tabs (``?view=``; only the open one is drawn).
"""
from __future__ import annotations

import streamlit as st

from analysis import run
from dashboard import exports, loaders, state, widgets
from dashboard.charts import clusters as charts

# Widget keys (prefixed "cl_") and the link parameters that reopen the view.
LAYER_KEY, LAYER_PARAM = "cl_layer", "layer"
METHOD_KEY, METHOD_PARAM = "cl_method", "method"
PROJECTION_KEY, PROJECTION_PARAM = "cl_projection", "proj"
CLUSTER_KEY, CLUSTER_PARAM = "cl_cluster", "cluster"
MAP_KEY, SCATTER_KEY = "cl_map", "cl_gc_ag"  # the two clickable charts
CLICK_SEEN_KEY = "cl_click_seen"  # signature of the last click acted on (a click is applied once)
VIEW_KEY = "cl_view"  # tabs: the view drawn; ?view=<name> (map, the first, is left out of the link)

CLUSTER_METHODS = ("kmeans", "hierarchical")  # preferred order; others the run holds follow
PROFILE_COLUMN_CONFIG = {
    "cluster": st.column_config.NumberColumn("cluster", format="%d"),
    "n_tokens": st.column_config.NumberColumn("tokens", format="%d"),
    "gc_mean": st.column_config.NumberColumn("GC", format="%.3f", help="Mean GC content of the cluster's tokens"),
    "ag_mean": st.column_config.NumberColumn("AG", format="%.3f", help="Mean AG content (a strand signal)"),
    "ac_mean": st.column_config.NumberColumn("AC", format="%.3f", help="Mean AC content"),
    "length_mean": st.column_config.NumberColumn("length mean", format="%.2f"),
    "length_median": st.column_config.NumberColumn("length median", format="%g"),
    "log10_frequency_mean": st.column_config.NumberColumn("log10 frequency", format="%.2f",
                                                          help="Mean of log10(1 + genome occurrences)"),
    "example_tokens": st.column_config.TextColumn("example tokens", help="The 5 most frequent tokens"),
}


def _ordered_methods(present: set[str]) -> list[str]:
    return [m for m in CLUSTER_METHODS if m in present] + sorted(present - set(CLUSTER_METHODS))


def _apply_click(options: list) -> None:
    """Choose the cluster of a token just clicked on the map or the GC-AG scatter (before the select box is drawn)."""
    for chart_key in (MAP_KEY, SCATTER_KEY):
        event = st.session_state.get(chart_key)
        selection = event.get("selection") if event else None
        signature = charts.selection_signature(selection)
        seen_key = f"{CLICK_SEEN_KEY}_{chart_key}"
        if signature is None:
            st.session_state.pop(seen_key, None)  # cleared: the same point may be clicked again later
            continue
        if signature != st.session_state.get(seen_key):
            st.session_state[seen_key] = signature
            cluster = charts.clicked_cluster(selection)
            if cluster in options:
                st.session_state[CLUSTER_KEY] = cluster


run_dir = loaders.require_run()
st.title("GC/AG content clusters")
cluster_table = loaders.table_or_stop(run_dir, run.TOKEN_CLUSTERS)
tokens = loaders.table_or_stop(run_dir, run.TOKENS)
profiles = loaders.table_or_stop(run_dir, run.CLUSTER_PROFILES)
projections = loaders.table_or_stop(run_dir, run.TOKEN_PROJECTIONS)
if cluster_table.empty:
    st.info(f"`{run.TOKEN_CLUSTERS}` in `{run_dir}` is empty. Remake it with "
            f"`{run.command_for(run_dir, run.TOKEN_CLUSTERS)}`.")
    st.stop()

layers = sorted(int(v) for v in cluster_table["layer"].unique())
methods = _ordered_methods(set(cluster_table["method"].astype(str)))
projection_methods = [m for m in run.PROJECTION_METHODS if m in set(projections["method"].astype(str))] or ["umap"]

state.from_link(LAYER_KEY, LAYER_PARAM, parse=int, valid=lambda v: v in layers)
state.from_link(METHOD_KEY, METHOD_PARAM, valid=lambda v: v in methods)
state.from_link(PROJECTION_KEY, PROJECTION_PARAM, valid=lambda v: v in projection_methods)
if st.session_state.get(LAYER_KEY) not in layers:  # first visit, or a run without the layer chosen before
    st.session_state[LAYER_KEY] = layers[-1]
if st.session_state.get(METHOD_KEY) not in methods:
    st.session_state[METHOD_KEY] = methods[0]
if st.session_state.get(PROJECTION_KEY) not in projection_methods:
    st.session_state[PROJECTION_KEY] = projection_methods[0]

layer_col, method_col, projection_col, cluster_col = st.columns([3, 1.6, 1.2, 1.6])
with layer_col:
    layer = widgets.layer_choice("Layer (0 = input embeddings)", layers, key=LAYER_KEY,
                                 single_note="the only layer clustered in this run",
                                 help="Clusters of the tokens' mean embeddings at this layer.")
with method_col:
    method = st.radio("Clustering", methods, horizontal=True, key=METHOD_KEY,
                      help="k-means or Ward hierarchical clustering of L2-normalised embeddings; "
                      "cluster 0 is the largest.")
with projection_col:
    projection = st.radio("Map", projection_methods, format_func=str.upper, horizontal=True, key=PROJECTION_KEY)
state.to_link(LAYER_PARAM, layer)
state.to_link(METHOD_PARAM, method)
state.to_link(PROJECTION_PARAM, projection)

members = charts.clustered_tokens(tokens, cluster_table, layer=layer, method=method)
cluster_ids = sorted(int(c) for c in members["cluster"].unique())
options = [None, *cluster_ids]
state.from_link(CLUSTER_KEY, CLUSTER_PARAM, parse=int, valid=lambda v: v in cluster_ids)
_apply_click(options)
if st.session_state.get(CLUSTER_KEY) not in options:  # that cluster does not exist at this layer / method
    st.session_state[CLUSTER_KEY] = None
with cluster_col:
    chosen = st.selectbox("Cluster", options, key=CLUSTER_KEY,
                          format_func=lambda c: "All clusters" if c is None else charts.cluster_name(c),
                          help="Lists its tokens below and dims the other clusters. Clicking a token on "
                          "either scatter chooses its cluster too.")
state.to_link(CLUSTER_PARAM, chosen)

manifest = loaders.load_manifest(run_dir)
made = (manifest.get("analyses") or {}).get("clusters") or {}
params = made.get("params") or {}
stem = f"{run_dir.name}_layer{layer}_{method}"
title_tail = f"layer {layer} · {method}" + ("" if chosen is None else f" · {charts.cluster_name(chosen)}")

def show_map() -> None:
    """The cluster map and GC against AG, both coloured by cluster; a click on a token chooses its cluster."""
    try:
        points = charts.cluster_points(members, projections, layer=layer, method=projection)
    except ValueError as error:
        points = None
        map_problem = str(error)
    map_col, scatter_col = st.columns(2)
    with map_col:
        st.subheader("Cluster map")
        if points is None:
            st.info(f"{map_problem} Remake the projections with "
                    f"`{run.command_for(run_dir, run.TOKEN_PROJECTIONS)}`.")
        else:
            fig = charts.cluster_map_figure(points, method=projection, selected=chosen,
                                            title=f"{run_dir.name} · token map ({projection.upper()}) · {title_tail}")
            exports.show_figure(fig, stem=f"{stem}_{projection}_cluster_map", key=MAP_KEY,
                                data_fn=lambda: points.drop(columns=[c for c in points.columns if ".share_" in c]),
                                on_select="rerun", selection_mode="points")
            unprojected = len(members) - len(points)
            st.caption(
                f"{len(points):,} tokens drawn: every clustered token at layer {layer} on the {projection.upper()} "
                "token map, no subsampling"
                + (f" ({unprojected:,} clustered tokens have no projection)" if unprojected else "")
                + ". Point size grows with log frequency. Click a token to choose its cluster."
            )
    with scatter_col:
        st.subheader("GC against AG")
        fig = charts.gc_ag_figure(members, selected=chosen, title=f"{run_dir.name} · GC vs AG · {title_tail}")
        composition_known = int((members["gc"].notna() & members["ag"].notna()).sum())
        exports.show_figure(fig, stem=f"{stem}_gc_ag", key=SCATTER_KEY,
                            data_fn=lambda: members[[c for c in charts.MEMBER_COLUMNS if c in members.columns]],
                            on_select="rerun", selection_mode="points")
        st.caption(f"{composition_known:,} tokens drawn, coloured by their {method} cluster at layer {layer}. "
                   "Short tokens share few compositions, so points overlap; hover or choose the cluster to list them.")


def show_profiles() -> None:
    """Each cluster's length, frequency and composition profile, and its enrichment for annotation labels."""
    st.subheader("Cluster profiles")
    profile = charts.profile_table(profiles, layer=layer, method=method)
    if profile.empty:
        st.info(f"`{run.CLUSTER_PROFILES}` holds no row for layer {layer} ({method}). Remake it with "
                f"`{run.command_for(run_dir, run.CLUSTER_PROFILES)}`.")
    else:
        fig = charts.profile_figure(profile, title=f"{run_dir.name} · cluster profiles · layer {layer} · {method}")
        exports.show_figure(fig, stem=f"{stem}_profiles", key="cl_profile_chart", data=profile)
        st.dataframe(profile, hide_index=True, key="cl_profile_table", column_config=PROFILE_COLUMN_CONFIG)
        st.caption(f"{len(profile)} clusters of {int(profile['n_tokens'].sum()):,} tokens at layer {layer} ({method})"
                   + (f"; asked for {params['n_clusters']} clusters" if "n_clusters" in params else "")
                   + (f", made by `{made['produced_by']}`" if made.get("produced_by") else "") + ".")

    # --- annotation profile -------------------------------------------------------------------------
    st.subheader("Annotation profile")
    if not run.has_artifact(run_dir, run.CLUSTER_ENRICHMENT):
        st.info(f"`{run.CLUSTER_ENRICHMENT}` is missing: the run was clustered without annotations. Make it with "
                f"`{run.command_for(run_dir, run.CLUSTER_ENRICHMENT)}` after naming annotation files "
                "(`--annotation NAME=PATH`).")
    else:
        try:
            enrichment = loaders.load_table(run_dir, run.CLUSTER_ENRICHMENT)
        except Exception as error:  # a damaged Parquet file: say so, keep the rest of the page
            enrichment = None
            st.error(f"`{run.CLUSTER_ENRICHMENT}` in `{run_dir}` could not be read ({type(error).__name__}: {error}). "
                     f"Remake it with `{run.command_for(run_dir, run.CLUSTER_ENRICHMENT)}`.")
        matrix = None if enrichment is None else charts.enrichment_matrix(enrichment, layer=layer, method=method)
        if enrichment is None:
            pass
        elif matrix is None:
            st.info(f"`{run.CLUSTER_ENRICHMENT}` holds no row for layer {layer} ({method}).")
        else:
            fig = charts.enrichment_figure(
                matrix, title=f"{run_dir.name} · annotation enrichment · layer {layer} · {method}")
            at = enrichment[(enrichment["layer"] == layer) & (enrichment["method"] == method)]
            exports.show_figure(fig, stem=f"{stem}_enrichment", key="cl_enrichment_chart", data=at)
            n_significant = int(matrix.significant().to_numpy().sum())
            st.caption(
                f"log2 of the cluster's mean share of token occurrences inside each label over the share of all "
                f"clustered tokens (pseudocount 0.001). {charts.SIGNIFICANT_MARK} marks q < {charts.Q_THRESHOLD} "
                f"(two-sided Mann-Whitney U, Benjamini-Hochberg): {n_significant} of {matrix.log2.size} cells. "
                "Repeat labels are split by the strand of the repeat: (+) and (−)."
            )


# --- The views: lazy tabs, one drawn at a time (?view=) ---------------------------------------------
view, tabs = state.view_tabs(VIEW_KEY, charts.VIEWS)
with tabs[view]:
    {"map": show_map, "profiles": show_profiles}[view]()

# --- the chosen cluster's tokens --------------------------------------------------------------------
if chosen is None:
    st.caption("Choose a cluster above, or click a token on either scatter, to list the cluster's tokens "
               "with a CSV download.")
else:
    listed = charts.cluster_members(members, chosen)
    st.subheader(f"Tokens of {charts.cluster_name(chosen)} ({len(listed):,})")
    st.dataframe(listed, hide_index=True, key="cl_members_table")
    st.caption(f"{len(listed):,} tokens in {charts.cluster_name(chosen)} at layer {layer} ({method}), "
               "most frequent first.")
    st.download_button("Tokens (CSV)", listed.to_csv(index=False), file_name=f"{stem}_cluster{chosen}_tokens.csv",
                       mime="text/csv", key="cl_members_csv", on_click="ignore", icon=":material/table:")
