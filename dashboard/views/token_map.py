"""Token embedding map: every vocabulary token as a point, at a chosen layer, from precomputed projections."""
from __future__ import annotations

import streamlit as st

from analysis import run
from dashboard import figures, loaders

# Widget keys; app.py keeps the first five across page switches (KEPT_ACROSS_PAGES).
LAYER_KEY = "map_layer"
METHOD_KEY = "map_method"
COLOUR_KEY = "map_colour"
MOTIF_KEY = "map_motif"
EXPORT_KEY = "map_export"
CHART_KEY = "token_map"

PC_COLUMN_LABELS = {"gc": "GC", "ag": "AG", "ac": "AC"}
EXPORT_FORMATS = {
    "png": "PNG (WebGL, fast)",
    "svg": "SVG (vector; SVG renderer, slower with many points)",
}

run_dir = loaders.require_run()
st.title("Token embedding map")
try:
    manifest = loaders.load_manifest(run_dir)
    tokens = loaders.load_tokens(run_dir)
    projections = loaders.load_token_projections(run_dir)
except (run.RunNotFoundError, ValueError) as error:  # missing file or newer schema: the message names the fix
    st.info(str(error))
    st.stop()
if projections.empty:
    st.info(f"`{run.TOKEN_PROJECTIONS}` in `{run_dir}` is empty. Rebuild it with `{loaders.build_command(run_dir)}`.")
    st.stop()

layers = run.layers_in(projections)
present = set(projections["method"].astype(str))
methods = [m for m in run.PROJECTION_METHODS if m in present] + sorted(present - set(run.PROJECTION_METHODS))
# Defaults go through session state (the widgets take no value=), so app.py can keep these choices
# across page switches. Another run may lack the layer or method chosen before: fall back then.
if st.session_state.get(LAYER_KEY) not in layers:
    st.session_state[LAYER_KEY] = layers[-1]
if st.session_state.get(METHOD_KEY) not in methods:
    st.session_state[METHOD_KEY] = methods[0]

layer_col, method_col, colour_col, motif_col = st.columns([3, 1.2, 1.6, 1.6])
with layer_col:
    if len(layers) > 1:
        layer = st.select_slider(
            "Layer (0 = input embeddings)", options=layers, key=LAYER_KEY,
            help="0 is the input embedding table; 1..L are the outputs of the transformer layers, "
            "averaged over each token's occurrences in the genome.",
        )
    else:
        layer = layers[0]
        st.markdown(f"**Layer {layer}** (the only layer projected in this run; 0 = input embeddings)")
with method_col:
    method = st.radio("Projection", methods, format_func=str.upper, horizontal=True, key=METHOD_KEY)
with colour_col:
    colour_by = st.selectbox("Colour by", list(figures.COLOUR_BY), format_func=figures.COLOUR_BY.get, key=COLOUR_KEY)
with motif_col:
    motif = figures.normalise_motif(
        st.text_input("Highlight tokens containing", key=MOTIF_KEY, placeholder="motif, e.g. CG or TATA")
    )

points = figures.token_points(tokens, projections, layer=layer, method=method)
mask = figures.motif_mask(points["token"], motif)
n = len(points)

map_col, side_col = st.columns([4, 1])
with side_col:
    image_format = st.radio(
        "Camera button saves", list(EXPORT_FORMATS), format_func=EXPORT_FORMATS.get, key=EXPORT_KEY,
        help="The camera icon in the chart's toolbar saves the figure. WebGL points are raster even "
        "inside an SVG, so SVG redraws the map with the SVG renderer.",
    )
run_name = run_dir.name
title = f"{run_name} · layer {layer} · {method.upper()} · colour: {figures.COLOUR_BY[colour_by]}"
if motif:
    title += f" · highlight: {motif}"
fig = figures.token_map_figure(
    points, colour_by=colour_by, motif=motif, method=method, title=title,
    renderer="webgl" if image_format == "png" else "svg",
)
file_stem = f"{run_name}_layer{layer}_{method}_{colour_by}"

with map_col:
    if motif:
        if mask.any():
            st.markdown(f"**{int(mask.sum()):,}** of {n:,} tokens contain `{motif}` (highlighted; the others are dimmed).")
        else:
            st.warning(f"No token contains `{motif}`; all {n:,} tokens are dimmed.")
    event = st.plotly_chart(
        fig, key=CHART_KEY, on_select="rerun", selection_mode=("box", "lasso", "points"),
        config=figures.export_config(image_format=image_format, filename=file_stem),
    )
    st.caption(
        f"{n:,} points drawn: every projected token at layer {layer} ({method.upper()}), no subsampling "
        "(special tokens are not projected). Point size grows with log frequency. "
        "Drag to box-select, or pick the lasso in the toolbar."
    )
    made_by = figures.artifact_provenance(manifest, run.TOKEN_PROJECTIONS)
    if made_by:
        st.caption(f"Projections made by `{made_by}`.")

with side_col:
    st.download_button(
        "Points (CSV)", lambda: points.assign(highlighted=mask).to_csv(index=False),
        file_name=f"{file_stem}_points.csv", mime="text/csv", key="map_points_csv", on_click="ignore",
        help="The data behind the map: coordinates and properties of every point drawn.",
    )
    st.download_button(
        "Figure (interactive HTML)",
        lambda: fig.to_html(include_plotlyjs=True, full_html=True,
                            config=figures.export_config(image_format=image_format, filename=file_stem)),
        file_name=f"{file_stem}.html", mime="text/html", key="map_figure_html", on_click="ignore",
        help="A standalone page (works offline) with hover, zoom and the camera button.",
    )

st.markdown(f"**Leading principal components at layer {layer} vs token properties** (Spearman)")
try:
    pc_correlations = loaders.load_pc_correlations(run_dir)
except run.RunNotFoundError as error:  # the map is still useful without it: say so, do not stop
    st.info(str(error))
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

selected_ids = figures.selected_token_ids(event.selection if event else None)
if selected_ids:
    selected = figures.selected_tokens(points, selected_ids)
    st.subheader(f"Selected tokens ({len(selected):,})")
    st.dataframe(selected, hide_index=True, key="map_selection_table")
    st.download_button(
        "Selected tokens (CSV)", selected.to_csv(index=False), file_name=f"{file_stem}_selection.csv",
        mime="text/csv", key="map_selection_csv", on_click="ignore",
    )
else:
    st.caption("Select points on the map (box or lasso) to list them here with a CSV download.")
