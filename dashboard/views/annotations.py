"""Chromatin and annotations: window maps coloured by annotation, label composition per token cluster,
probe scores per layer beside the k-mer baseline, and a region view of tokens under annotation tracks.

Reads ``window_projections``, ``window_annotations``, ``tokens``, ``token_clusters``, ``probe_scores``,
the tokenized genome and the annotation files the manifest names; computes nothing but joins, means
over at most the vocabulary, and the slice of one genome interval. Each section says what it lacks
(and the command that makes it) without hiding the others. The four views sit in lazy tabs (``?view=``;
only the open one is drawn); a window clicked on the map opens in the region view's tab.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from analysis import run
from dashboard import exports, loaders, state, widgets
from dashboard.charts import annotations as charts
from dashboard.charts import clusters as cluster_charts
from grover_core.errors import GroverInputError
from grover_core.tokenized_genome import TokenizedGenome

# Widget keys (prefixed "an_") and the link parameters that reopen the view.
LAYER_KEY, LAYER_PARAM = "an_layer", "layer"
CLUSTER_METHOD_KEY, CLUSTER_METHOD_PARAM = "an_cluster_method", "cmethod"
PROJECTION_KEY, PROJECTION_PARAM = "an_method", "method"
COLOUR_KEY, COLOUR_PARAM = "an_colour", "colour"
COMPOSITION_KEY, COMPOSITION_PARAM = "an_composition", "comp"
METRIC_KEY, METRIC_PARAM = "an_metric", "metric"
CHROM_KEY, CHROM_PARAM = "an_chrom", "chrom"
START_KEY, START_PARAM = "an_start", "start"
END_KEY, END_PARAM = "an_end", "end"
WINDOW_MAP_KEY = "an_window_map"  # clickable: a window opens in the region view
CLICK_SEEN_KEY = "an_click_seen"  # signature of the last window click acted on
REGION_CHROM_SEEN_KEY = "an_region_chrom_seen"  # chromosome the interval belongs to (a new one resets it)
TOKEN_TEXT_KEY = "an_token_text"  # toggle: write each token's sequence in its block
TOKEN_TEXT_DEFAULT_SEEN_KEY = "an_token_text_default_seen"  # the toggle's default for the interval last drawn
CLICKED_WINDOW_KEY = "an_clicked_window"  # (chromosome, start, end) of a window clicked on the map, to open
VIEW_KEY = "an_view"  # tabs: the view drawn; ?view=<name> (windows, the first, is left out of the link)

PREFERRED_COMPOSITION = "chromatin_states"
PROBE_METRIC_CHOICES = ("mcc", "balanced_accuracy")


# The figures are built once per run and view (loaders.built_once: shared by every session, never modified):
# coming back to the page, or reloading it, only sends them again.
def window_map(window_projections, window_annotations, *, layer: int, method: str, colour_by: str, colour_title: str,
               title: str):
    points = charts.window_points(window_projections, window_annotations, layer=layer, method=method)
    return points, charts.window_map_figure(points, colour_by, method=method, colour_title=colour_title, title=title)


def composition_chart(members, annotation: str, title: str):
    composition = charts.label_composition(members, annotation)
    return composition, charts.composition_figure(composition, annotation=annotation, title=title)


def probe_chart(scores, *, metric: str, layer: int, title: str):
    fig = charts.probe_figure(scores, metric=metric, current_layer=layer, title=title)
    return fig, charts.probe_table(scores, metric=metric)


run_dir = loaders.require_run()
st.title("Chromatin and annotations")
try:
    manifest = loaders.load_manifest(run_dir)
except (run.RunNotFoundError, ValueError) as error:
    st.info(str(error))
    st.stop()
num_layers = (manifest.get("model") or {}).get("num_layers")
layers = list(range(int(num_layers) + 1)) if num_layers is not None else [0]
specs = (manifest.get("analysis_config") or {}).get("annotations") or []
spec_by_name = {spec.get("name"): spec for spec in specs}
analysis_params = ((manifest.get("analyses") or {}).get("window_projections") or {}).get("params") or {}
probe_params = ((manifest.get("analyses") or {}).get("probes") or {}).get("params") or {}

state.seed_choice(LAYER_KEY, LAYER_PARAM, layers, layers[-1], parse=int)
cluster_methods = list((manifest.get("analysis_config") or {}).get("cluster_methods") or ("kmeans", "hierarchical"))
state.seed_choice(CLUSTER_METHOD_KEY, CLUSTER_METHOD_PARAM, cluster_methods, cluster_methods[0])
layer_col, method_col = st.columns([3, 2])
with layer_col:
    layer = widgets.layer_choice("Layer (0 = input embeddings)", layers, key=LAYER_KEY,
                                 single_note="the only layer of this run's model",
                                 help="The layer of the window map, of the token clusters and of the region view's "
                                 "token colours.")
with method_col:
    cluster_method = st.radio("Token clusters", cluster_methods, horizontal=True, key=CLUSTER_METHOD_KEY,
                              help="Clustering whose clusters the composition and the region view show.")
state.to_link(LAYER_PARAM, layer)
state.to_link(CLUSTER_METHOD_PARAM, cluster_method)
stem = f"{run_dir.name}_layer{layer}"


def quiet_table(name: str):
    """An artifact table, or None when it is missing or unreadable (another tab says so)."""
    try:
        return loaders.load_table(run_dir, name)
    except Exception:  # missing (RunNotFoundError) or a damaged Parquet file: pyarrow raises many types
        return None


def clustered(tokens, token_clusters):
    """``(the tokens with their cluster at the chosen layer and clustering, None)``, or ``(None, why not)``."""
    try:
        return cluster_charts.clustered_tokens(tokens, token_clusters, layer=layer, method=cluster_method), None
    except ValueError as error:  # no such layer or clustering in the table
        return None, str(error)


def show_windows() -> None:
    """Windows as points (their mean embeddings' projection) coloured by an annotation; a click opens one."""
    st.subheader("Window map")
    window_projections = loaders.table_or_none(run_dir, run.WINDOW_PROJECTIONS)
    window_annotations = (loaders.table_or_none(run_dir, run.WINDOW_ANNOTATIONS)
                          if window_projections is not None else None)
    if window_projections is not None and window_annotations is not None:
        options = charts.colour_options(window_annotations)
        projections_present = set(window_projections["method"].astype(str))
        projection_methods = [m for m in run.PROJECTION_METHODS if m in projections_present] + sorted(
            projections_present - set(run.PROJECTION_METHODS))
        default_colour = PREFERRED_COMPOSITION if PREFERRED_COMPOSITION in options else next(iter(options), None)
        if not options or not projection_methods:
            st.info(f"`{run.WINDOW_ANNOTATIONS}` holds no annotation column. Make it with "
                    f"`{run.command_for(run_dir, run.WINDOW_ANNOTATIONS)}` after naming annotation files.")
        else:
            state.seed_choice(COLOUR_KEY, COLOUR_PARAM, list(options), default_colour)
            state.seed_choice(PROJECTION_KEY, PROJECTION_PARAM, projection_methods, projection_methods[0])
            colour_col, projection_col = st.columns([3, 2])
            with colour_col:
                colour_by = st.selectbox("Colour windows by", list(options), format_func=options.get, key=COLOUR_KEY)
            with projection_col:
                projection = st.radio("Projection", projection_methods, format_func=str.upper, horizontal=True,
                                      key=PROJECTION_KEY)
            state.to_link(COLOUR_PARAM, colour_by)
            state.to_link(PROJECTION_PARAM, projection)
            try:
                title = f"{run_dir.name} · windows · layer {layer} · {projection.upper()} · {options[colour_by]}"
                points, fig = loaders.built_once(
                    "an_window_map",
                    (str(run_dir), loaders.stamp(run_dir, run.WINDOW_PROJECTIONS, run.WINDOW_ANNOTATIONS),
                     layer, projection, colour_by, options[colour_by], title),
                    lambda: window_map(window_projections, window_annotations, layer=layer, method=projection,
                                       colour_by=colour_by, colour_title=options[colour_by], title=title))
            except ValueError as error:
                st.info(f"{error} Remake it with `{run.command_for(run_dir, run.WINDOW_PROJECTIONS)}`.")
            else:
                exports.show_figure(fig, stem=f"{stem}_{projection}_windows_{colour_by}", key=WINDOW_MAP_KEY,
                                    data=points, on_select="rerun", selection_mode="points")
                note = charts.sampling_note(len(points), len(window_annotations),
                                            cap=analysis_params.get("window_projection_max"))
                annotation_name = colour_by.removesuffix(charts.MEAN_SUFFIX)
                strand_note = (
                    " Windows are coloured by their majority repeat class: `window_annotations` holds class fractions "
                    "only, not strand. Strand is per token: see the composition below (hatched = minus strand) and the "
                    "strand lanes of the region view."
                    if (spec_by_name.get(annotation_name) or {}).get("strand_aware") else "")
                st.caption(f"{note} Each point is a window's mean embedding at layer {layer}. "
                           f"Click a window to open it in the region view.{strand_note}")


def show_composition() -> None:
    """Per token cluster, the mean share of its tokens' occurrences inside each label of an annotation."""
    st.subheader("Label composition per token cluster")
    tokens = loaders.table_or_none(run_dir, run.TOKENS)
    token_clusters = loaders.table_or_none(run_dir, run.TOKEN_CLUSTERS) if tokens is not None else None
    if tokens is not None and token_clusters is not None:
        members, problem = clustered(tokens, token_clusters)
        if problem:
            st.info(f"{problem} Remake them with `{run.command_for(run_dir, run.TOKEN_CLUSTERS)}`.")
        annotations = charts.share_annotations(tokens)
        if members is not None and not annotations:
            st.info(f"`{run.TOKENS}` holds no annotation shares: the run names no annotation files. Add them with "
                    f"`grover analyze {run_dir} --annotation NAME=PATH`.")
        elif members is not None:
            default = PREFERRED_COMPOSITION if PREFERRED_COMPOSITION in annotations else annotations[0]
            state.seed_choice(COMPOSITION_KEY, COMPOSITION_PARAM, annotations, default)
            annotation = st.selectbox("Annotation", annotations, format_func=cluster_charts.annotation_title,
                                      key=COMPOSITION_KEY)
            state.to_link(COMPOSITION_PARAM, annotation)
            title = (f"{run_dir.name} · {cluster_charts.annotation_title(annotation)} per {cluster_method} cluster "
                     f"· layer {layer}")
            composition, fig = loaders.built_once(
                "an_composition", (str(run_dir), loaders.stamp(run_dir, run.TOKENS, run.TOKEN_CLUSTERS), layer,
                                   cluster_method, annotation, title),
                lambda: composition_chart(members, annotation, title))
            exports.show_figure(fig, stem=f"{stem}_{cluster_method}_{annotation}_composition",
                                key="an_composition_chart", data=composition)
            n_clusters = composition["cluster"].dropna().nunique()
            stranded = (composition["strand"] != "").any()
            st.caption(
                f"{len(members):,} tokens in {n_clusters} {cluster_method} clusters at layer {layer}. Each segment "
                "is the mean, over the cluster's tokens, of the share of the token's genome occurrences inside that "
                "label; a bar's height is the share inside any label. Tokens never seen in the genome are left out."
                + (" Hatched segments: repeats on the minus strand." if stranded else "")
            )


def show_probes() -> None:
    """Linear probe scores per layer and annotation beside the k-mer count baseline."""
    st.subheader("Probe scores per layer")
    scores = loaders.table_or_none(run_dir, run.PROBE_SCORES)
    if scores is not None:
        if scores.empty:
            st.info(f"`{run.PROBE_SCORES}` is empty. Remake it with `{run.command_for(run_dir, run.PROBE_SCORES)}`.")
        else:
            metrics = [m for m in PROBE_METRIC_CHOICES if m in scores.columns]
            state.seed_choice(METRIC_KEY, METRIC_PARAM, metrics, metrics[0])
            metric = st.radio("Score", metrics, format_func=charts.PROBE_METRICS.get, horizontal=True, key=METRIC_KEY)
            state.to_link(METRIC_PARAM, metric)
            title = f"{run_dir.name} · probe {charts.PROBE_METRICS[metric]} per layer"
            fig, table = loaders.built_once(
                "an_probes", (str(run_dir), loaders.stamp(run_dir, run.PROBE_SCORES), metric, layer, title),
                lambda: probe_chart(scores, metric=metric, layer=layer, title=title))
            exports.show_figure(fig, stem=f"{run_dir.name}_probe_{metric}", key="an_probe_chart", data=scores)
            st.dataframe(table, hide_index=True, key="an_probe_table",
                         column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns
                                        if c.startswith("layer ") or c in ("k-mer baseline", "best - baseline")})
            k = probe_params.get("probe_kmer_k")
            chance = "0" if metric == "mcc" else "1 / classes"
            st.caption(
                f"{charts.PROBE_METRICS[metric]} of a linear probe on the windows' mean embeddings per layer, "
                f"held-out chromosomes ({int(table['folds'].max())} folds), {len(table)} annotations; dashed lines: "
                f"the same probe on {f'{k}-mer' if k else 'k-mer'} counts of the same windows. Chance level: {chance}. "
                f"The dotted line marks layer {layer}."
            )


def show_region() -> None:
    """One genome interval: its tokens coloured by cluster under the annotation tracks."""
    st.subheader("Region view")
    genome_index = run_dir / run.TOKENIZED_DIR / "index.json"
    if not genome_index.is_file():
        st.info(f"Did not find the tokenized genome (`{run.TOKENIZED_DIR}/`) in {run_dir}. Make it with "
                f"`{run.command_for(run_dir, run.TOKENIZED_DIR)}`.")
        return
    tokens = loaders.table_or_none(run_dir, run.TOKENS)
    if tokens is None:
        st.info(f"The region view needs `{run.TOKENS}` (token lengths); make it with "
                f"`{run.command_for(run_dir, run.TOKENS)}`.")
        return
    # The window labels' order and the token clusters colour the view when present; the other tabs say what
    # is missing or damaged.
    window_annotations = quiet_table(run.WINDOW_ANNOTATIONS)
    token_clusters = quiet_table(run.TOKEN_CLUSTERS)
    members = clustered(tokens, token_clusters)[0] if token_clusters is not None else None
    genome_dir = run_dir / run.TOKENIZED_DIR
    genome = TokenizedGenome.open(genome_dir)
    chromosomes = genome.chromosomes
    if not chromosomes:
        st.info(f"The tokenized genome in {genome_dir} holds no chromosome. Remake it with "
                f"`{run.command_for(run_dir, run.TOKENIZED_DIR)}`.")
        return
    lengths_nt = {str(k): int(v) for k, v in ((manifest.get("genome") or {}).get("chromosomes") or {}).items()}
    token_lengths = np.zeros(max(genome.vocab_size, int(tokens["token_id"].max()) + 1), dtype=np.int64)
    token_lengths[tokens["token_id"].to_numpy()] = tokens["length"].to_numpy()


    def genome_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and starts of one chromosome, memory-mapped."""
        return genome.ids(name), genome.starts(name)


    def chromosome_length(name: str) -> int:
        if name in lengths_nt:
            return lengths_nt[name]
        starts = genome_arrays(name)[1]
        return int(starts[-1]) + int(token_lengths.max()) if len(starts) else 0


    # A window clicked on the map opens here (applied once, before the widgets are drawn).
    window = st.session_state.pop(CLICKED_WINDOW_KEY, None)
    if window and window[0] in chromosomes:
        st.session_state[CHROM_KEY] = window[0]
        st.session_state[START_KEY] = max(0, window[1] - charts.CLICK_PADDING)
        st.session_state[END_KEY] = min(chromosome_length(window[0]), window[2] + charts.CLICK_PADDING)
        st.session_state[REGION_CHROM_SEEN_KEY] = window[0]

    state.from_link(START_KEY, START_PARAM, parse=int, valid=lambda v: v >= 0)
    state.from_link(END_KEY, END_PARAM, parse=int, valid=lambda v: v > 0)
    state.seed_choice(CHROM_KEY, CHROM_PARAM, chromosomes, chromosomes[0])
    chrom_col, start_col, end_col = st.columns([2, 2, 2])
    with chrom_col:
        chrom = st.selectbox("Chromosome", chromosomes, key=CHROM_KEY)
    chrom_length = chromosome_length(chrom)
    seen = st.session_state.get(REGION_CHROM_SEEN_KEY)
    if (seen is not None and seen != chrom) or START_KEY not in st.session_state or END_KEY not in st.session_state:
        starts_of_chrom = genome_arrays(chrom)[1]
        first = int(starts_of_chrom[0]) if len(starts_of_chrom) else 0
        st.session_state[START_KEY], st.session_state[END_KEY] = charts.default_interval(chrom_length, first)
    st.session_state[REGION_CHROM_SEEN_KEY] = chrom
    with start_col:
        start_value = st.number_input("Start (bp, 0-based)", step=1000, key=START_KEY)
    with end_col:
        end_value = st.number_input("End (bp, exclusive)", step=1000, key=END_KEY,
                                    help=f"At most {charts.REGION_MAX_SPAN:,} bp are drawn.")
    state.to_link(CHROM_PARAM, chrom)
    state.to_link(START_PARAM, int(start_value))
    state.to_link(END_PARAM, int(end_value))

    interval = charts.clamp_interval(int(start_value), int(end_value), chrom_length)
    if interval.notes:
        st.warning(f"Interval {int(start_value):,}-{int(end_value):,}: " + "; ".join(interval.notes) + ".")

    interval_tokens = charts.tokens_in_interval(*genome_arrays(chrom), token_lengths, interval.start, interval.end)
    n_tokens = len(interval_tokens)
    # Sequences in the blocks: by default only for short intervals (at the default 5 kb a block is about one
    # pixel wide, so none shows before a zoom, yet writing them all costs the browser most of the page's time).
    text_default = n_tokens <= charts.TOKEN_TEXT_DEFAULT_MAX
    if st.session_state.get(TOKEN_TEXT_DEFAULT_SEEN_KEY) != text_default or TOKEN_TEXT_KEY not in st.session_state:
        st.session_state[TOKEN_TEXT_KEY] = text_default  # a new interval on the other side of the threshold resets it
    st.session_state[TOKEN_TEXT_DEFAULT_SEEN_KEY] = text_default
    write_text = st.toggle(
        "Write each token's sequence in its block (readable once zoomed in)", key=TOKEN_TEXT_KEY,
        disabled=n_tokens > charts.TOKEN_TEXT_MAX,
        help=f"On by default for intervals of at most {charts.TOKEN_TEXT_DEFAULT_MAX:,} tokens; possible up to "
             f"{charts.TOKEN_TEXT_MAX:,} tokens (this interval: {n_tokens:,}). Writing them takes the browser longer "
             "to draw the view; every token's sequence is on hover either way.",
    ) and n_tokens <= charts.TOKEN_TEXT_MAX


    def region_chart(chrom: str, interval: charts.Interval, title: str, write_text: bool):
        """The region view's figure, the interval's tokens (the CSV), a count per track and the tracks not drawn."""
        region_tokens = charts.region_tokens(interval_tokens, tokens, members)
        tracks, skipped, counts = [], [], []
        for spec in specs:
            name = spec.get("name", "?")
            kind = spec.get("kind", "labels")
            try:
                features = loaders.load_annotation_file(spec["path"], kind=kind,
                                                        label_column=spec.get("label_column", 3),
                                                        strand=bool(spec.get("strand_aware")))
            except (GroverInputError, KeyError, OSError) as error:
                skipped.append(f"{name}: {error}")
                continue
            order: tuple[str, ...] = ()
            if kind != "signal":
                if window_annotations is not None and name in window_annotations.columns:
                    order = tuple(charts.window_label_order(window_annotations, name))
                else:
                    order = tuple(dict.fromkeys(features["Label"].astype(str)))
            shown = charts.features_in_interval(features, chrom, interval.start, interval.end)
            tracks.append(charts.Track(name, kind, shown, order))
            counts.append(f"{len(shown):,} {cluster_charts.annotation_title(name)} intervals")
        fig = charts.region_figure(tracks, region_tokens, chromosome=chrom, start=interval.start, end=interval.end,
                                   title=title, text_max=charts.TOKEN_TEXT_MAX if write_text else -1)
        table = region_tokens.assign(chromosome=chrom)[["chromosome", "start", "end", "token_id", "token", "cluster"]]
        return table, fig, counts, skipped


    title = (f"{run_dir.name} · {chrom}:{interval.start:,}-{interval.end:,} · tokens by {cluster_method} cluster, "
             f"layer {layer}")
    track_files = tuple((str(spec.get("name")), str(spec.get("kind", "labels")), str(spec.get("path")),
                         spec.get("label_column", 3), bool(spec.get("strand_aware")),
                         loaders.file_stamp(spec.get("path") or "")) for spec in specs)
    region_files = loaders.stamp(run_dir, run.TOKENS, run.TOKEN_CLUSTERS, run.WINDOW_ANNOTATIONS,
                                 f"{run.TOKENIZED_DIR}/index.json")
    region_table, fig, counts, skipped = loaders.built_once(
        "an_region", (str(run_dir), region_files, track_files, members is None, window_annotations is None, layer,
                      cluster_method, chrom, interval.start, interval.end, title, write_text),
        lambda: region_chart(chrom, interval, title, write_text))
    exports.show_figure(fig, stem=f"{stem}_{chrom}_{interval.start}_{interval.end}_region", key="an_region_chart",
                        data=region_table)
    cluster_note = (f"coloured by their {cluster_method} cluster at layer {layer}" if members is not None
                    else "in grey (no token clusters to colour them by)")
    st.caption(
        f"{chrom}:{interval.start:,}-{interval.end:,} ({interval.span:,} bp): {len(region_table):,} tokens "
        f"{cluster_note}"
        + (f"; {', '.join(counts)}" if counts else "") + ". "
        + ("Zoom in (drag across the plot) to read the tokens in their blocks. " if write_text else
           "Token sequences are not written in the blocks (the switch above writes them, for intervals of at most "
           f"{charts.TOKEN_TEXT_MAX:,} tokens); hover a block to read it. " if n_tokens <= charts.TOKEN_TEXT_MAX else
           f"Token sequences are written in the blocks for intervals of at most {charts.TOKEN_TEXT_MAX:,} tokens; "
           "hover a block to read it here. ")
        + f"At most {charts.REGION_MAX_SPAN:,} bp are drawn; the CSV lists the interval's tokens."
    )
    if not specs:
        st.info(f"The run names no annotation files, so only tokens are drawn. Add them with "
                f"`grover analyze {run_dir} --annotation NAME=PATH`.")
    for problem in skipped:
        st.info(f"Track not drawn: {problem}")


# A window clicked on the map opens in the region view: remembered once per click (the map reports the
# click on the next run too), then the region tab opens on it.
event = st.session_state.get(WINDOW_MAP_KEY)
selection = event.get("selection") if event else None
signature = charts.selection_signature(selection)
if signature is None:
    st.session_state.pop(CLICK_SEEN_KEY, None)
elif signature != st.session_state.get(CLICK_SEEN_KEY):
    st.session_state[CLICK_SEEN_KEY] = signature
    clicked = charts.clicked_window(selection)
    if clicked:
        st.session_state[CLICKED_WINDOW_KEY] = clicked
        st.session_state[VIEW_KEY] = charts.VIEWS["region"]

# --- The views: lazy tabs, one drawn at a time (?view=) ---------------------------------------------
state.keep(COLOUR_KEY, PROJECTION_KEY, COMPOSITION_KEY, METRIC_KEY, CHROM_KEY, START_KEY, END_KEY,
           TOKEN_TEXT_KEY)  # the closed tabs' choices
view, tabs = state.view_tabs(VIEW_KEY, charts.VIEWS)
with tabs[view]:
    {"windows": show_windows, "composition": show_composition, "probes": show_probes, "region": show_region}[view]()
