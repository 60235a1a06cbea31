"""Token embedding map: every vocabulary token as a point at a chosen layer, from precomputed projections.

Colour by a token property, a clustering or an annotation share; search a motif; box or lasso
points to list them with their nearest tokens by cosine at this layer and export them (CSV, FASTA).
The view lives in the link: ``?layer=&method=&colour=&motif=&sel=12,40``.
"""
from __future__ import annotations

import streamlit as st

from analysis import run
from dashboard import exports, figures, loaders, state, widgets

# Widget keys; app.py keeps the map's widgets across page switches (KEPT_ACROSS_PAGES).
LAYER_KEY = "map_layer"
METHOD_KEY = "map_method"
COLOUR_KEY = "map_colour"
MOTIF_KEY = "map_motif"
CHART_KEY = "token_map"
SELECTION_KEY = "map_selection"  # session state: {run folder: figures.MapSelection}
GENERATION_KEY = "map_chart_generation"  # session state: bumped to give a fresh chart (clear selection)

PC_COLUMN_LABELS = {"gc": "GC", "ag": "AG", "ac": "AC"}


def clear_selection(run_key: str) -> None:
    """Forget the selection of this run and draw a fresh chart (a callback: runs before the page)."""
    selections = st.session_state.get(SELECTION_KEY) or {}
    selections[run_key] = selections.get(run_key, figures.MapSelection()).select(())
    st.session_state[SELECTION_KEY] = selections
    st.session_state[GENERATION_KEY] = st.session_state.get(GENERATION_KEY, 0) + 1


def chart_selection_ids() -> list[int] | None:
    """The map's selection as the browser last reported it, before the chart is drawn again (None: no chart yet)."""
    chart_state = st.session_state.get(CHART_KEY)
    if chart_state is None:
        return None
    selection = chart_state.get("selection") if hasattr(chart_state, "get") else getattr(chart_state, "selection", None)
    return figures.selected_token_ids(selection)


run_dir = loaders.require_run()
run_key = str(run_dir)
st.title("Token embedding map")
try:
    manifest = loaders.load_manifest(run_dir)
except (run.RunNotFoundError, ValueError) as error:  # no manifest, or another schema: the message names the fix
    st.info(str(error))
    st.stop()
tokens = loaders.table_or_stop(run_dir, run.TOKENS)
projections = loaders.table_or_stop(run_dir, run.TOKEN_PROJECTIONS)
if projections.empty:
    st.info(f"`{run.TOKEN_PROJECTIONS}` in `{run_dir}` is empty. Remake it with "
            f"`{run.command_for(run_dir, run.TOKEN_PROJECTIONS)}`.")
    st.stop()

clusters_note = None  # why cluster colours are not offered
try:
    token_clusters = loaders.load_table(run_dir, run.TOKEN_CLUSTERS)
except run.RunNotFoundError:
    token_clusters = None
    clusters_note = (f"Cluster colours need `{run.TOKEN_CLUSTERS}`: make it with "
                     f"`{run.command_for(run_dir, run.TOKEN_CLUSTERS)}`.")
except Exception as error:  # a damaged file: the map still works
    token_clusters = None
    clusters_note = (f"`{run.TOKEN_CLUSTERS}` could not be read ({type(error).__name__}); remake it with "
                     f"`{run.command_for(run_dir, run.TOKEN_CLUSTERS)}`.")

layers = run.layers_in(projections)
present = set(projections["method"].astype(str))
methods = [m for m in run.PROJECTION_METHODS if m in present] + sorted(present - set(run.PROJECTION_METHODS))
colours = figures.colour_options(tokens.columns, figures.cluster_methods_in(token_clusters))

# The link seeds the widgets on the page's first visit; defaults go through session state (the
# widgets take no value=) so app.py can keep the choices across pages. Another run may lack the
# layer, method or colour chosen before: fall back then.
state.from_link(LAYER_KEY, "layer", parse=int, valid=lambda v: v in layers)
state.from_link(METHOD_KEY, "method", valid=lambda v: v in methods)
state.from_link(COLOUR_KEY, "colour", valid=lambda v: v in colours)
state.from_link(MOTIF_KEY, "motif")
state.from_link(SELECTION_KEY, "sel",  # ?sel=12,40: the selection of the run the link opens
                parse=lambda text: {run_key: figures.MapSelection().select(figures.parse_id_list(text))})
if st.session_state.get(LAYER_KEY) not in layers:
    st.session_state[LAYER_KEY] = layers[-1]
if st.session_state.get(METHOD_KEY) not in methods:
    st.session_state[METHOD_KEY] = methods[0]
if st.session_state.get(COLOUR_KEY) not in colours:
    st.session_state[COLOUR_KEY] = colours[0]

layer_col, method_col, colour_col, motif_col = st.columns([3, 1.2, 1.8, 1.6])
with layer_col:
    layer = widgets.layer_choice(
        "Layer (0 = input embeddings)", layers, key=LAYER_KEY,
        single_note="the only layer projected in this run; 0 = input embeddings",
        help="0 is the input embedding table; 1..L are the outputs of the transformer layers, "
        "averaged over each token's occurrences in the genome.",
    )
with method_col:
    method = st.radio("Projection", methods, format_func=str.upper, horizontal=True, key=METHOD_KEY)
with colour_col:
    colour_by = st.selectbox(
        "Colour by", colours, format_func=figures.colour_label, key=COLOUR_KEY,
        help="Token properties; the cluster of each token at this layer (token_clusters.parquet); or the share "
        "of the token's genome occurrences inside a label of an annotation, grouped by annotation.",
    )
with motif_col:
    motif = figures.normalise_motif(
        st.text_input("Highlight tokens containing", key=MOTIF_KEY, placeholder="motif, e.g. CG or TATA")
    )
for param, value in (("layer", layer), ("method", method), ("colour", colour_by), ("motif", motif)):
    state.to_link(param, value)

points = figures.token_points(tokens, projections, layer=layer, method=method)
if figures.is_cluster_colour(colour_by):
    points = figures.with_clusters(points, token_clusters, layer=layer)
mask = figures.motif_mask(points["token"], motif)
n = len(points)

# The selection: what the chart reports, or what the link / another layer held (drawn as rings).
selections = st.session_state.setdefault(SELECTION_KEY, {})
generation = st.session_state.get(GENERATION_KEY, 0)
view = (layer, method, colour_by, motif, exports.presenting(), generation)
selection = selections.get(run_key, figures.MapSelection()).before_drawing(chart_ids=chart_selection_ids(), view=view)

run_name = run_dir.name
title = f"{run_name} · layer {layer} · {method.upper()} · colour: {figures.colour_label(colour_by)}"
if motif:
    title += f" · highlight: {motif}"
fig = figures.token_map_figure(points, colour_by=colour_by, motif=motif, method=method, title=title,
                               selected_ids=selection.drawn)
fig.update_layout(meta={"generation": generation})  # a new generation is a new chart (cleared selection)
file_stem = exports.slug(f"{run_name}_layer{layer}_{method}_{colour_by}")  # share columns hold "/"

map_col, side_col = st.columns([3, 1.4])
with map_col:
    if motif:
        if mask.any():
            st.markdown(f"**{int(mask.sum()):,}** of {n:,} tokens contain `{motif}` "
                        "(highlighted; the others are dimmed).")
        else:
            st.warning(f"No token contains `{motif}`; all {n:,} tokens are dimmed.")
    event = exports.show_figure(
        fig, stem=file_stem, key=CHART_KEY, on_select="rerun", selection_mode=("box", "lasso", "points"),
        data_fn=lambda: points.assign(highlighted=mask, selected=points["token_id"].isin(selection.held)),
    )
    selection = selection.after_drawing(figures.selected_token_ids(event.selection) if event else None)
    selections[run_key] = selection
    st.caption(
        f"{n:,} points drawn: every projected token at layer {layer} ({method.upper()}), no subsampling "
        "(special tokens and tokens never seen are not projected). Point size grows with log frequency. "
        "Drag to box-select, or pick the lasso in the toolbar. PNG and SVG are rendered on the server "
        "(in the SVG the points are an image: WebGL); CSV holds every point."
    )
    if figures.is_cluster_colour(colour_by):
        n_clusters = points[colour_by].nunique()
        method_name = figures.CLUSTER_METHODS.get(colour_by[len(figures.CLUSTER_COLOUR_PREFIX):], colour_by)
        st.caption(f"Colour: {n_clusters} {method_name} clusters of the token embeddings at layer {layer} "
                   f"(`{run.TOKEN_CLUSTERS}`); click a legend entry to hide a cluster.")
    elif figures.is_share_column(colour_by):
        annotation, label = colour_by.split(figures.SHARE_MARKER, 1)
        top = figures.colour_scale(points, colour_by).cmax
        st.caption(f"Colour: share of each token's genome occurrences inside `{label}` of the `{annotation}` "
                   f"annotation (`{colour_by}` in `{run.TOKENS}`). The scale runs from 0 to {top:.3g}, the "
                   f"{100 * figures.SHARE_SCALE_QUANTILE:.0f}th percentile of the shares; larger shares take the "
                   "top colour.")
    if len(fig.data) and any(t.name == "no value" for t in fig.data):
        n_missing = sum(len(t.x) for t in fig.data if t.name == "no value")
        st.caption(f"{n_missing:,} tokens have no value for this colour (dark grey).")
    made_by = figures.artifact_provenance(manifest, run.TOKEN_PROJECTIONS)
    if made_by:
        st.caption(f"Projections made by `{made_by}`.")

with side_col:
    st.markdown(f"**Leading principal components at layer {layer} vs token properties** (Spearman)")
    try:
        pc_correlations = loaders.load_pc_correlations(run_dir)
    except run.RunNotFoundError as error:  # the map is still useful without it: say so, do not stop
        st.info(str(error))
    except Exception as error:
        st.error(f"`{run.PC_CORRELATIONS}` could not be read ({type(error).__name__}); remake it with "
                 f"`{run.command_for(run_dir, run.PC_CORRELATIONS)}`.")
    else:
        table = figures.pc_property_table(pc_correlations, layer)
        if table.empty:
            st.info(f"`{run.PC_CORRELATIONS}` holds no row for layer {layer}.")
        else:
            st.dataframe(
                table, key="map_pc_table",
                column_config={
                    c: st.column_config.NumberColumn(
                        PC_COLUMN_LABELS.get(c, c), format="%.2f",
                        help="Share of this layer's embedding variance the component carries"
                        if c == "explained variance" else f"Spearman correlation of the component with {c}",
                    )
                    for c in table.columns
                },
            )
            st.caption("Frequency is correlated as log10. A property that tracks PC1 dominates the map's layout.")
    if clusters_note:
        st.caption(clusters_note)
    st.markdown("**More exports**")
    html_config = figures.export_config(image_format="png", filename=file_stem)
    st.download_button(
        "Interactive HTML", lambda: fig.to_html(include_plotlyjs=True, full_html=True, config=html_config),
        file_name=f"{file_stem}.html", mime="text/html", key="map_figure_html", on_click="ignore",
        icon=":material/code:", help="A standalone page (works offline) with hover, zoom and the camera button.",
    )
    if exports.chromium_available():
        st.download_button(
            "SVG, vector points",
            lambda: exports.image_bytes(figures.token_map_figure(
                points, colour_by=colour_by, motif=motif, method=method, title=title, renderer="svg"), "svg"),
            file_name=f"{file_stem}_vector.svg", mime="image/svg+xml", key="map_vector_svg", on_click="ignore",
            icon=":material/image:",
            help="Every point a vector circle (the SVG button under the map draws them as an image). "
            "Slow and large with many thousands of points.",
        )

# --- the selection -----------------------------------------------------------------------------------

held = list(selection.held)
too_long = len(held) > figures.MAX_LINK_SELECTION
state.to_link("sel", figures.format_id_list(held) if held and not too_long else None)
selected = figures.selected_tokens(points, held, extra=[colour_by])
if not held:
    st.caption("Select points on the map (box or lasso) to list them here with their nearest tokens, "
               "and a CSV or FASTA download. The selection is kept in the link and follows the layer slider.")
    st.stop()

st.subheader(f"Selected tokens ({len(selected):,})")
notes = []
if selection.drawn and tuple(held) == selection.drawn:
    notes.append("Marked with black rings on the map (a selection from the link or another view).")
if len(selected) < len(held):
    missing = len(held) - len(selected)
    notes.append(f"{missing:,} selected id{' is' if missing == 1 else 's are'} not on this map.")
if too_long:
    notes.append(f"The link keeps selections of up to {figures.MAX_LINK_SELECTION:,} tokens; this one is not in it.")
if notes:
    st.caption(" ".join(notes))
st.dataframe(selected, hide_index=True, key="map_selection_table",
             column_config={"gc": st.column_config.NumberColumn("GC", format="%.2f"),
                            "ag": st.column_config.NumberColumn("AG", format="%.2f"),
                            "ac": st.column_config.NumberColumn("AC", format="%.2f")})
csv_col, fasta_col, clear_col = st.columns(3)
with csv_col:
    st.download_button(
        "Selected tokens (CSV)", lambda: selected.to_csv(index=False), file_name=f"{file_stem}_selection.csv",
        mime="text/csv", key="map_selection_csv", on_click="ignore", icon=":material/table:",
    )
with fasta_col:
    st.download_button(
        "Selected tokens (FASTA)", lambda: figures.selection_fasta(selected), file_name=f"{file_stem}_selection.fa",
        mime="text/x-fasta", key="map_selection_fasta", on_click="ignore", icon=":material/genetics:",
        help="One record per token: >token_<id> id=<id> frequency=<n> gc=<GC>",
    )
with clear_col:
    st.button("Clear selection", key="map_clear_selection", on_click=clear_selection, args=(run_key,),
              icon=":material/deselect:")

st.subheader(f"Nearest tokens at layer {layer} (cosine)")
try:
    means = loaders.load_token_means(run_dir)
except run.RunNotFoundError as error:
    st.info(str(error))
    st.stop()
except Exception as error:
    st.error(f"`{run.TOKEN_EMBEDDINGS}` could not be read ({type(error).__name__}); remake it with "
             f"`{run.command_for(run_dir, run.TOKEN_EMBEDDINGS)}`.")
    st.stop()
matrix = means.get(f"layer_{layer}")
if matrix is None:
    st.info(f"`{run.TOKEN_EMBEDDINGS}` holds no layer {layer}; remake it with "
            f"`{run.command_for(run_dir, run.TOKEN_EMBEDDINGS)}`.")
    st.stop()
queries = list(selected["token_id"])[: figures.MAX_NEIGHBOUR_QUERIES]
neighbours = figures.neighbour_table(
    figures.nearest_tokens(matrix, queries, points["token_id"], k=figures.NEIGHBOURS_K), points)
st.caption(
    f"The {figures.NEIGHBOURS_K} nearest other tokens on this map of "
    + ("each selected token" if len(selected) <= len(queries)
       else f"the first {len(queries):,} of the {len(selected):,} selected tokens (table order)")
    + f", by cosine similarity of their mean embeddings at layer {layer} (`{run.TOKEN_EMBEDDINGS}`)."
)
st.dataframe(neighbours, hide_index=True, key="map_neighbours_table",
             column_config={"cosine": st.column_config.NumberColumn("cosine", format="%.3f")})
st.download_button(
    "Nearest tokens (CSV)", lambda: neighbours.to_csv(index=False), file_name=f"{file_stem}_neighbours.csv",
    mime="text/csv", key="map_neighbours_csv", on_click="ignore", icon=":material/table:",
)
