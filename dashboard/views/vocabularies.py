"""Vocabularies side by side (issue 6): the run's BPE vocabulary beside other cycle counts and k-mers.

Reads ``vocabularies/<name>/`` (token table + summary) and ``vocabularies/comparison/`` of the run,
written by the pipeline's vocabularies stage; figures come from ``dashboard.charts.vocabularies``.
The only live work is segmenting one short sequence (at most ``charts.MAX_PASTED`` nt) with each
chosen tokenizer. The figures sit in lazy tabs (only the open one is drawn: a page of six charts takes the
browser over 3 s to draw). Link parameters: ``vocabs``, ``view``, ``pair``, ``seq``, ``region``, ``span``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from analysis import run
from analysis.segmentation import segment_with_each
from dashboard import exports, loaders, state
from dashboard.charts import vocabularies as charts

NAMES_KEY = "voc_names"  # multiselect: vocabularies shown; ?vocabs=bpe_100,bpe_600
PAPER_KEY = "voc_paper"  # checkbox: add the paper's row to the summary table
PAIR_A_KEY, PAIR_B_KEY = "voc_pair_a", "voc_pair_b"  # select boxes: the pair compared; ?pair=a,b
SOURCE_KEY = "voc_source"  # radio: segment a genome region or a pasted sequence; ?seq=region|pasted
REGION_KEY = "voc_region"  # select box: index of the comparison region; ?region=<i>
PASTE_KEY = "voc_paste"  # text area: the pasted sequence (not in the link: up to 5 kb)
WINDOW_KEY = "voc_window"  # range slider: nucleotides shown; ?span=<start>-<end>
VIEW_KEY = "voc_view"  # tabs: the view drawn; ?view=<name> (lengths, the first, is left out of the link)
SOURCES = {"region": "A comparison region of the genome", "pasted": "A pasted sequence"}
COMPARISON = f"{run.VOCABULARIES_DIR}/comparison"

run_dir = loaders.require_run()
st.title("Vocabularies side by side")
try:
    manifest = loaders.load_manifest(run_dir)
except (run.RunNotFoundError, ValueError) as error:  # no manifest, or a newer schema
    st.info(str(error))
    st.stop()

names = run.vocabulary_names(run_dir)
remake = run.command_for(run_dir, run.VOCABULARIES_DIR)
if not names:
    st.info(f"This run holds no vocabularies to compare (no `{run.VOCABULARIES_DIR}/<name>/vocabulary_tokens.parquet` "
            f"in `{run_dir}`). Its vocabularies stage makes them: `{remake}`.")
    st.stop()
own = charts.own_vocabulary(manifest)
colours = charts.vocabulary_colours(names)
run_name = run_dir.name
# Every file the figures are drawn from: a key part of the figures built once (loaders.built_once), so a
# rewritten vocabulary or comparison table draws them again.
files_stamp = (str(run_dir), tuple(names), loaders.stamp(
    run_dir, *(f"{loaders.vocabulary_path(name)}/{file}" for name in names
               for file in ("vocabulary_tokens.parquet", "vocabulary_summary.json", "tokenizer.json")),
    *(f"{COMPARISON}/{table}.parquet" for table in run.VOCABULARY_COMPARISON_TABLES)))


def comparison_table(table: str) -> pd.DataFrame | None:
    """A ``vocabularies/comparison`` table, or None after saying why it is missing or unreadable."""
    return loaders.table_or_none(run_dir, f"{COMPARISON}/{table}.parquet")


def vocabulary_or_none(name: str) -> tuple[pd.DataFrame, dict] | None:
    """A vocabulary's (token table, summary), or None after saying why it cannot be read."""
    try:
        return loaders.load_vocabulary(run_dir, name)
    except run.RunNotFoundError as error:
        st.info(str(error))
    except Exception as error:  # damaged Parquet or JSON
        st.error(f"`{loaders.vocabulary_path(name)}` in `{run_dir}` could not be read "
                 f"({type(error).__name__}: {error}). Remake it with `{remake}`.")
    return None


def built(kind: str, key: tuple, build):
    """``build()`` once per run files, ``kind`` and ``key`` (shared by every session: never modify what it returns)."""
    return loaders.built_once(f"voc_{kind}", (files_stamp, *key), build)


def lengths_chart(tables: dict, title: str):
    lengths = charts.length_table(tables)
    return lengths, charts.length_histogram_figure(lengths, colours=colours, title=title)


def frequency_chart(tables: dict, summaries: dict, title: str):
    points = charts.frequency_length_points(tables)
    return points, charts.frequency_length_figure(points, summaries, colours=colours, title=title)


def gc_chart(tables: dict, genome_gc: float | None, title: str):
    gc = charts.gc_points(tables)
    return gc, charts.gc_figure(gc, genome_gc=genome_gc, colours=colours, title=title), charts.gc_summary(gc)


def cycles_chart(all_summaries: dict, segmentation: pd.DataFrame | None, chosen: list, title: str):
    cycles = charts.cycles_table(all_summaries, segmentation=segmentation)
    return cycles, charts.cycles_figure(cycles, selected=chosen, own=own, title=title)


def pair_chart(table_a: pd.DataFrame, table_b: pd.DataFrame, name_a: str, name_b: str, title: str):
    pair, counts = charts.pair_tokens(table_a, table_b)
    by_length = charts.pair_by_length(pair)
    return pair, counts, by_length, charts.pair_figure(by_length, name_a, name_b, colours=colours, title=title)


def segmentation_chart(blocks: pd.DataFrame, sequence: str, offset: int, window: tuple[int, int], axis_title: str,
                       title: str):
    fig = charts.segmentation_figure(blocks, sequence, colours=colours, offset=offset, window=window,
                                     axis_title=axis_title, title=title)
    return fig, charts.segmentation_stats(blocks)


# --- Which vocabularies -------------------------------------------------------------------------
state.from_link(NAMES_KEY, "vocabs", parse=lambda text: charts.in_run_order(charts.parse_names(text), names),
                valid=bool)
if st.session_state.get(NAMES_KEY) is not None and not set(st.session_state[NAMES_KEY]) <= set(names):
    st.session_state[NAMES_KEY] = charts.in_run_order(st.session_state[NAMES_KEY], names)  # another run
if not st.session_state.get(NAMES_KEY):
    st.session_state[NAMES_KEY] = charts.default_selection(names, own)
chosen = st.multiselect(
    "Vocabularies", names, key=NAMES_KEY, format_func=lambda n: f"{n} (this run's)" if n == own else n,
    help="Vocabularies of this run's genome: BPE after n merge cycles (bpe_<n>) and fixed k-mers (kmer_<k>). "
    "Each was used to tokenize the whole genome, so every token has its frequency.",
)
chosen = charts.in_run_order(chosen, names)
state.to_link("vocabs", ",".join(chosen))
if not chosen:
    st.info("Choose one or more vocabularies above (two or more to compare them).")
    st.stop()

reports = {name: vocabulary_or_none(name) for name in names}  # all: the cycles figure spans every BPE count
tables = {name: reports[name][0] for name in chosen if reports[name] is not None}
summaries = {name: reports[name][1] for name in chosen if reports[name] is not None}
chosen = list(tables)
if not chosen:
    st.stop()
st.caption(
    f"{len(names)} vocabularies in this run ({', '.join(names)}); the run's own is `{own}`. "
    "Frequencies count each token in the whole genome as that vocabulary tokenizes it; special tokens are left out."
)

# --- The GROVER paper's numbers -----------------------------------------------------------------
st.subheader("The GROVER paper's numbers, per vocabulary")
segmentation = comparison_table("summary")
show_paper = st.checkbox("Add the GROVER paper's 600-cycle vocabulary (hg19)", value=True, key=PAPER_KEY)
summary = charts.summary_table(summaries, segmentation=segmentation, include_paper=show_paper)
st.dataframe(
    summary.rename(columns=charts.SUMMARY_LABELS), hide_index=True, key="voc_summary_table",
    column_config={
        "vocabulary": st.column_config.TextColumn(width="medium", pinned=True),
        charts.SUMMARY_LABELS["nt_per_token"]: st.column_config.NumberColumn(
            format="%.2f", help="Frequency-weighted mean token length: the genome's A/C/G/T letters over its tokens. "
            "The paper's 'mean length 4.07 nt' is read as this number."),
        charts.SUMMARY_LABELS["nt_per_token_regions"]: st.column_config.NumberColumn(
            format="%.2f", help="Nucleotides over tokens in the 1-kb comparison regions (the same regions for all)."),
        charts.SUMMARY_LABELS["mean_length"]: st.column_config.NumberColumn(
            format="%.2f", help="Each token counted once."),
        charts.SUMMARY_LABELS["starts_with_at"]: st.column_config.NumberColumn(format="percent"),
        charts.SUMMARY_LABELS["frequency_balance"]: st.column_config.NumberColumn(
            format="%.3f",
            help="Normalised entropy of the token frequencies, H / log V: 1 = every token equally frequent."),
        charts.SUMMARY_LABELS["spearman_length_frequency"]: st.column_config.NumberColumn(
            format="%+.2f", help="Spearman rho of token length against frequency (the paper: positive)."),
        charts.SUMMARY_LABELS["unused_tokens"]: st.column_config.NumberColumn(
            format="%d", help="Tokens the genome never uses."),
    },
)
caption = f"{len(chosen)} vocabularies of this run"
if show_paper:
    caption += ("; the paper's row gives what it reports (601 tokens, 1–16 nt, 213 five-mers, 224 six-mers, "
                "97% start with A or T, no CG token, length correlating positively with frequency); "
                "None where it gives no number")
st.caption(caption + ".")


def show_lengths() -> None:
    """Token length histograms and frequency against length of the chosen vocabularies."""
    st.subheader("Token lengths")
    lengths, fig = built("lengths", (tuple(chosen),), lambda: lengths_chart(tables, f"{run_name} · token lengths"))
    exports.show_figure(
        fig, stem=f"{run_name}_vocabulary_lengths", key="voc_lengths_chart", data=lengths,
    )
    st.caption("Left: how the vocabulary's tokens spread over lengths. Right: the same weighted by how often the "
               "genome uses each token. Token counts on hover.")

    # --- Frequency against length -----------------------------------------------------------------
    st.subheader("Frequency against length")
    points, fig = built("frequency", (tuple(chosen),), lambda: frequency_chart(
        tables, summaries, f"{run_name} · token frequency against length"))
    exports.show_figure(
        fig, stem=f"{run_name}_vocabulary_frequency_length", key="voc_frequency_chart", data=points,
    )
    unused = points.loc[~points["drawn"]].groupby("vocabulary", sort=False).size()
    caption = (f"{int(points['drawn'].sum()):,} tokens drawn: every token of the chosen vocabularies with a frequency "
               "above zero, no subsampling. Diamonds join the median frequency per length; within a length the "
               "vocabularies stand side by side and tokens are spread sideways so they do not hide each other.")
    if len(unused):
        caption += (" Left out (never used, no place on a log axis): "
                    + ", ".join(f"{count:,} of {name}" for name, count in unused.items()) + ".")
    st.caption(caption)


def show_gc() -> None:
    """GC content of each vocabulary's tokens, per token and per genome occurrence."""
    st.subheader("GC content of the tokens")
    genome_gc = (manifest.get("genome") or {}).get("gc_fraction")
    gc, fig, gc_means = built("gc", (tuple(chosen), genome_gc), lambda: gc_chart(
        tables, genome_gc, f"{run_name} · token GC content"))
    exports.show_figure(fig, stem=f"{run_name}_vocabulary_gc", key="voc_gc_chart", data=gc)
    st.caption("Violins: GC of each token counted once (box and mean line inside); black diamonds: mean GC of the "
               "tokens as the genome uses them (weighted by frequency); dashed: the genome's GC. "
               + "; ".join(f"{row.vocabulary}: {row.mean_gc:.3f} per token, {row.occurrence_gc:.3f} per occurrence"
                           for row in gc_means.itertuples()) + ".")


def show_cycles() -> None:
    """Nucleotides per token across every BPE merge-cycle count of the run."""
    st.subheader("Nucleotides per token across BPE merge cycles")
    all_summaries = {name: report[1] for name, report in reports.items() if report is not None}
    cycles, fig = built("cycles", (tuple(chosen), tuple(all_summaries), own, segmentation is None),
                        lambda: cycles_chart(all_summaries, segmentation, chosen,
                                             f"{run_name} · nucleotides per token by merge cycles"))
    exports.show_figure(
        fig, stem=f"{run_name}_vocabulary_cycles", key="voc_cycles_chart", data=cycles,
    )
    n_bpe = int((cycles["kind"] == "bpe").sum())
    st.caption(f"Every vocabulary of the run: {n_bpe} BPE cycle counts as a line (chosen ones with larger markers), "
               "k-mer vocabularies as red reference lines. More merges make longer tokens and fewer of them per kb: "
               "the paper compared 100 to 5,000 cycles and chose 600.")


def show_pair() -> None:
    """Shared and unique tokens of a pair of the chosen vocabularies, with the token lists."""
    st.subheader("Shared and unique tokens of a pair")
    if len(chosen) < 2:
        st.info("Choose two or more vocabularies above to compare their tokens.")
        state.to_link("pair", None)
    else:
        def _parse_pair(index: int):
            return lambda text: (charts.parse_names(text) + [None, None])[index]

        state.from_link(PAIR_A_KEY, "pair", parse=_parse_pair(0), valid=lambda v: v in chosen)
        state.from_link(PAIR_B_KEY, "pair", parse=_parse_pair(1), valid=lambda v: v in chosen)
        if st.session_state.get(PAIR_A_KEY) not in chosen:
            st.session_state[PAIR_A_KEY] = chosen[0]
        if (st.session_state.get(PAIR_B_KEY) not in chosen
                or st.session_state[PAIR_B_KEY] == st.session_state[PAIR_A_KEY]):
            st.session_state[PAIR_B_KEY] = next(n for n in reversed(chosen) if n != st.session_state[PAIR_A_KEY])
        left, right = st.columns(2)
        name_a = left.selectbox("Vocabulary A", chosen, key=PAIR_A_KEY)
        name_b = right.selectbox("Vocabulary B", chosen, key=PAIR_B_KEY)
        state.to_link("pair", f"{name_a},{name_b}")
        if name_a == name_b:
            st.info("Pick two different vocabularies.")
        else:
            pair, counts, by_length, fig = built("pair", (name_a, name_b), lambda: pair_chart(
                tables[name_a], tables[name_b], name_a, name_b,
                f"{run_name} · tokens of {name_a} and {name_b} by length"))
            agreement = charts.pair_agreement(comparison_table("agreement"), name_a, name_b)
            cols = st.columns(5)
            cols[0].metric("Shared tokens", f"{counts['shared']:,}")
            cols[1].metric(f"Only in {name_a}", f"{counts['only_in_a']:,}")
            cols[2].metric(f"Only in {name_b}", f"{counts['only_in_b']:,}")
            cols[3].metric("Token Jaccard", f"{counts['jaccard']:.3f}", help="Shared tokens over tokens in either.")
            if agreement is not None:
                cols[4].metric(
                    "Boundary agreement", f"{agreement['jaccard']:.3f}",
                    help=f"Jaccard of the positions where each cuts the 1-kb comparison regions: "
                    f"{agreement['shared']:,} shared of {agreement['boundaries_a']:,} ({name_a}) and "
                    f"{agreement['boundaries_b']:,} ({name_b}) cuts. {agreement['share_of_a_in_b']:.1%} of "
                    f"{name_a}'s cuts are also {name_b}'s; {agreement['share_of_b_in_a']:.1%} of {name_b}'s "
                    f"are {name_a}'s.",
                )
                st.caption(f"Where they cut the same 1-kb regions: {agreement['share_of_a_in_b']:.1%} of {name_a}'s "
                           f"token boundaries are also {name_b}'s, {agreement['share_of_b_in_a']:.1%} of {name_b}'s "
                           f"are {name_a}'s.")
            exports.show_figure(
                fig, stem=f"{run_name}_{name_a}_vs_{name_b}_tokens", key="voc_pair_chart", data=by_length,
            )
            listed = pair.rename(columns={"frequency_a": f"frequency in {name_a}",
                                          "frequency_b": f"frequency in {name_b}"})
            label = {"shared": "Shared", "only in A": f"Only in {name_a}", "only in B": f"Only in {name_b}"}
            for column, membership in zip(st.columns(3), charts.MEMBERSHIP):
                rows = listed.loc[listed["membership"] == membership].drop(columns="membership")
                with column:
                    st.markdown(f"**{label[membership]}** ({len(rows):,})")
                    st.dataframe(rows, hide_index=True, height=260, key=f"voc_pair_{membership.replace(' ', '_')}")
            st.download_button(
                "Token lists (CSV)",
                lambda: pair.assign(membership=pair["membership"].map(
                    {"shared": "shared", "only in A": f"only in {name_a}", "only in B": f"only in {name_b}"}),
                ).to_csv(index=False),
                file_name=f"{exports.slug(f'{run_name}_{name_a}_vs_{name_b}_tokens')}.csv", mime="text/csv",
                key="voc_pair_csv", on_click="ignore", icon=":material/table:",
                help="Every token of the pair, with where it is found, its length and its frequency in each.",
            )


def show_segmentation() -> None:
    """One genome region or pasted sequence segmented by each chosen vocabulary."""
    st.subheader("One sequence, segmented by each vocabulary")
    regions = comparison_table("regions")
    fasta = (manifest.get("genome") or {}).get("fasta")
    sequence, offset, axis_title, where = "", 0, "", ""
    if regions is not None and len(regions) and not (fasta and Path(fasta).is_file()):
        st.info(f"The run's genome `{fasta}` is not here any more, so its regions cannot be shown. Paste a sequence.")
        regions = None
    sources = list(SOURCES) if regions is not None and len(regions) else ["pasted"]
    state.from_link(SOURCE_KEY, "seq", valid=lambda v: v in sources)
    if st.session_state.get(SOURCE_KEY) not in sources:
        st.session_state[SOURCE_KEY] = sources[0]
    source = st.radio("Sequence", sources, format_func=SOURCES.get, horizontal=True, key=SOURCE_KEY,
                      help="The comparison regions are the 1-kb windows of the genome every vocabulary segmented "
                      "for the numbers above.")
    state.to_link("seq", source)
    if source == "region":
        labels = [charts.region_label(r.chromosome, r.start, r.end) for r in regions.itertuples()]
        state.from_link(REGION_KEY, "region", parse=int, valid=lambda v: 0 <= v < len(regions))
        stored_region = st.session_state.get(REGION_KEY)
        if not isinstance(stored_region, int) or not 0 <= stored_region < len(regions):
            st.session_state[REGION_KEY] = 0
        index = st.selectbox(f"Region ({len(regions)} comparison regions)", range(len(regions)), key=REGION_KEY,
                             format_func=lambda i: labels[i])
        state.to_link("region", index)
        chromosome, start, end = regions.iloc[index][["chromosome", "start", "end"]]
        try:
            sequence = loaders.load_genome_slice(fasta, chromosome, int(start), int(end))
        except Exception as error:  # moved or damaged genome: the page goes on with a pasted sequence
            st.info(f"The run's genome `{fasta}` could not be read here ({error}). Paste a sequence instead.")
        offset, where = int(start), labels[index]
        axis_title = f"{chromosome} position (0-based)"
    else:
        state.to_link("region", None)
        text = st.text_area(f"DNA sequence (at most {charts.MAX_PASTED:,} nt; A, C, G, T, N; FASTA headers skipped)",
                            key=PASTE_KEY, height=100, placeholder="ACGT…")
        sequence, problem = charts.clean_sequence(text)
        if problem and text.strip():
            st.warning(problem)
        elif problem:
            st.caption(problem)
        where = "pasted sequence"

    if sequence:
        blocks, skipped = [], []
        for name in chosen:
            try:
                blocks.append(segment_with_each({name: loaders.load_vocabulary_tokenizer(run_dir, name)}, sequence))
            except Exception as error:  # missing folder, or a tokenizer that does not read raw sequence
                skipped.append(f"{name} ({error})")
        if skipped:
            st.warning("Not segmented: " + "; ".join(skipped))
        if blocks:
            blocks = pd.concat(blocks, ignore_index=True)
            n = len(sequence)
            default = (0, min(n, charts.DEFAULT_WINDOW))
            state.from_link(WINDOW_KEY, "span", parse=charts.parse_span, valid=lambda v: v[1] <= n)
            stored = st.session_state.get(WINDOW_KEY)
            if not (isinstance(stored, (tuple, list)) and len(stored) == 2 and 0 <= stored[0] < stored[1] <= n):
                st.session_state[WINDOW_KEY] = default
            window = default
            if n > 1:
                window = st.slider("Nucleotides shown (drag the chart to pan, scroll or box to zoom)", 0, n,
                                   key=WINDOW_KEY,
                                   help="Positions within the sequence; the whole sequence is drawn either way.")
                window = (int(window[0]), int(window[1])) if window[1] > window[0] else default
                state.to_link("span", f"{window[0]}-{window[1]}")
            segmented = tuple(dict.fromkeys(blocks["vocabulary"].astype(str)))
            fig, stats = built("segmentation", (segmented, sequence, offset, window, axis_title, where),
                               lambda: segmentation_chart(blocks, sequence, offset, window, axis_title,
                                                          f"{run_name} · {where} segmented by each vocabulary"))
            exports.show_figure(fig, stem=f"{run_name}_segmentation_{where}", key="voc_segmentation_chart", data=blocks,
                                config={"scrollZoom": True})
            st.caption(f"{n:,} nt ({where}); top row: the nucleotides; below, one row per vocabulary with its tokens "
                       "as blocks of alternating shade (grey: [UNK] for N). Every token is drawn, with its text on "
                       "hover; inside its block when the block is wide enough and near the nucleotides chosen above.")
            st.dataframe(stats, hide_index=True, key="voc_segmentation_table", column_config={
                "nt_per_token": st.column_config.NumberColumn("nt per token", format="%.2f"),
                "unk_tokens": st.column_config.NumberColumn("[UNK] tokens"),
                "cuts": st.column_config.NumberColumn("token boundaries"),
                "cut_jaccard_with_first": st.column_config.NumberColumn(
                    f"boundary Jaccard with {chosen[0]}", format="%.3f",
                    help="Positions where both cut the sequence, over positions where either does."),
            })


# --- The views: lazy tabs, one drawn at a time (?view=) ------------------------------------------
state.keep(PAIR_A_KEY, PAIR_B_KEY, SOURCE_KEY, REGION_KEY, PASTE_KEY, WINDOW_KEY)  # the closed tabs' choices
view, tabs = state.view_tabs(VIEW_KEY, charts.VIEWS)
with tabs[view]:
    {"lengths": show_lengths, "gc": show_gc, "cycles": show_cycles, "pair": show_pair,
     "segmentation": show_segmentation}[view]()
