import gzip

import numpy as np
import pandas as pd
import pytest

from analysis.annotations import (
    binned_timing,
    genome_label_fractions,
    read_bed,
    read_signal,
    token_occurrence_shares,
    window_label_fractions,
    window_signal_mean,
)
from grover_core.errors import GroverInputError
from grover_core.tokenized_genome import TokenizedGenome, write_tokenized_chromosomes


def _write(path, text):
    path.write_text(text)
    return path


# --- read_bed ------------------------------------------------------------------------------

def test_read_bed4_skips_headers_and_blank_lines(tmp_path):
    path = _write(tmp_path / "states.bed", "track name=states\nbrowser position chr1:1-100\n# comment\n"
                  "chr1\t0\t100\tTssA\n\nchr1\t100\t250\tZNF/Rpts\nchr2\t5\t5\tQuies\n")
    table = read_bed(path)
    assert list(table.columns) == ["Chromosome", "Start", "End", "Label"]  # BED4: no strand column
    assert table["Chromosome"].tolist() == ["chr1", "chr1", "chr2"]
    assert table["Start"].tolist() == [0, 100, 5] and table["End"].tolist() == [100, 250, 5]
    assert table["Label"].tolist() == ["TssA", "ZNF/Rpts", "Quies"]
    assert table["Start"].dtype == np.int64 and table["End"].dtype == np.int64


def test_read_bed6_with_class_column_strand_and_gzip(tmp_path):
    text = ("#chrom\tstart\tend\tname\tscore\tstrand\trepeat_class\trepeat_family\n"
            "chr1\t10\t40\tAluSx\t100\t-\tSINE/Alu\tAlu\n"
            "chr1\t50\t90\tL1_demo\t50\t+\tLINE/L1\tL1\n")
    path = tmp_path / "repeats.bed.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    table = read_bed(path, label_column=6)
    assert list(table.columns) == ["Chromosome", "Start", "End", "Label", "Strand"]
    assert table["Label"].tolist() == ["SINE/Alu", "LINE/L1"]
    assert table["Strand"].tolist() == ["-", "+"]
    assert read_bed(path)["Label"].tolist() == ["AluSx", "L1_demo"]
    assert "Strand" not in read_bed(path, strand=False).columns


def test_read_bed3_labels_with_file_name(tmp_path):
    path = _write(tmp_path / "cpg_islands.bed", "chr1 10 20\nchr1 30 45\n")  # spaces, not tabs
    table = read_bed(path, label_column=None)
    assert table["Label"].tolist() == ["cpg_islands", "cpg_islands"]
    assert table["End"].tolist() == [20, 45]


@pytest.mark.parametrize("text, kwargs, line, words", [
    ("chr1\t0\t10\tA\nchr1\t5\n", {}, 2, ["2 column", "at least 3"]),
    ("# head\nchr1\tzero\t10\tA\n", {}, 2, ["'zero'", "not integers"]),
    ("chr1\t0\t10\tA\nchr1\t1.5\t10\tA\n", {}, 2, ["not integers"]),
    ("chr1\t0\t10\tA\nchr1\t30\t20\tB\n", {}, 2, ["end 20 is before start 30", "start <= end"]),
    ("chr1\t-5\t10\tA\n", {}, 1, ["negative"]),
    ("chr1\t0\t10\tA\nchr1\t10\t20\n", {}, 2, ["no label column 3", "label_column=None"]),
    ("chr1\t0\t10\tA\t0\t+\tSINE\n", {"label_column": 7}, 1, ["no label column 7", "label_column="]),
    ("chr1\t0\t10\tA\t0\t+\nchr1\t10\t20\tB\t0\tplus\n", {}, 2, ["strand 'plus'", "strand=False"]),
], ids=["few-columns", "text-coordinate", "float-coordinate", "end-before-start", "negative",
        "label-missing", "class-column-missing", "bad-strand"])
def test_read_bed_errors_name_file_line_and_fix(tmp_path, text, kwargs, line, words):
    path = _write(tmp_path / "bad.bed", text)
    with pytest.raises(GroverInputError) as info:
        read_bed(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and f"line {line}:" in message
    for word in words:
        assert word in message


def test_read_bed_missing_and_empty_files(tmp_path):
    with pytest.raises(GroverInputError, match="nowhere.bed: file not found; check the path"):
        read_bed(tmp_path / "nowhere.bed")
    with pytest.raises(GroverInputError, match="no intervals"):
        read_bed(_write(tmp_path / "empty.bed", "track name=x\n# nothing\n"))


# --- read_signal ---------------------------------------------------------------------------

BEDGRAPH = "track type=bedGraph\nchr1\t0\t100\t1.5\nchr1\t100\t250\t-2.0\nchr2\t10\t20\t0.25\n"


def test_read_bedgraph(tmp_path):
    table = read_signal(_write(tmp_path / "timing.bedGraph", BEDGRAPH))
    assert list(table.columns) == ["Chromosome", "Start", "End", "Value"]
    assert table["Value"].tolist() == [1.5, -2.0, 0.25]
    assert table["Start"].tolist() == [0, 100, 10] and table["End"].tolist() == [100, 250, 20]


def test_bigwig_reads_back_equal_to_bedgraph(tmp_path):
    import pyBigWig

    expected = read_signal(_write(tmp_path / "timing.bedGraph", BEDGRAPH))
    path = str(tmp_path / "timing.bw")
    bw = pyBigWig.open(path, "w")
    bw.addHeader([("chr1", 1000), ("chr2", 500), ("chr3", 50)])  # chr3 holds no data
    bw.addEntries(expected["Chromosome"].tolist(), expected["Start"].tolist(), ends=expected["End"].tolist(),
                  values=expected["Value"].tolist())
    bw.close()
    pd.testing.assert_frame_equal(read_signal(path), expected)
    # Format comes from the magic bytes, not the name.
    renamed = tmp_path / "timing_bigwig.data"
    renamed.write_bytes((tmp_path / "timing.bw").read_bytes())
    pd.testing.assert_frame_equal(read_signal(renamed), expected)


@pytest.mark.parametrize("name, text, words", [
    ("fake.bw", BEDGRAPH, ["named like a bigWig", "rename it"]),
    ("short.bedGraph", "chr1\t0\t10\n", ["line 1:", "needs 4"]),
    ("word.bedGraph", "chr1\t0\t10\t1\nchr1\t10\t20\thigh\n", ["line 2:", "'high' is not a number"]),
], ids=["not-bigwig", "no-value", "text-value"])
def test_read_signal_errors(tmp_path, name, text, words):
    path = _write(tmp_path / name, text)
    with pytest.raises(GroverInputError) as info:
        read_signal(path)
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)


# --- windows -------------------------------------------------------------------------------

ANNOTATION = pd.DataFrame({
    "Chromosome": ["chr1", "chr1", "chr1", "chr1", "chr3"],
    "Start": [0, 40, 60, 150, 0],
    "End": [50, 80, 120, 160, 100],
    "Label": ["A", "A", "B", "C/D", "B"],  # the two A intervals overlap: 0-80 counts once
})
WINDOWS = pd.DataFrame({"Chromosome": ["chr1", "chr1", "chr1", "chr2"], "Start": [0, 100, 200, 0],
                        "End": [100, 200, 300, 10], "name": ["w0", "w1", "w2", "w3"]}, index=[10, 11, 12, 13])


def test_window_label_fractions_known_answer():
    before = WINDOWS.copy()
    out = window_label_fractions(WINDOWS, ANNOTATION)
    pd.testing.assert_frame_equal(WINDOWS, before)  # input untouched
    assert list(out.columns) == ["Chromosome", "Start", "End", "name", "frac_A", "frac_B", "frac_C/D",
                                 "majority_label", "covered_fraction"]
    assert out.index.tolist() == [10, 11, 12, 13] and out["name"].tolist() == ["w0", "w1", "w2", "w3"]
    np.testing.assert_allclose(out["frac_A"], [0.8, 0, 0, 0])
    np.testing.assert_allclose(out["frac_B"], [0.4, 0.2, 0, 0])  # 60-100, then 100-120
    np.testing.assert_allclose(out["frac_C/D"], [0, 0.1, 0, 0])
    np.testing.assert_allclose(out["covered_fraction"], [1.0, 0.3, 0, 0])  # union 0-120 and 150-160
    assert out["majority_label"].tolist() == ["A", "B", "none", "none"]
    assert out.attrs["label_columns"] == {"A": "frac_A", "B": "frac_B", "C/D": "frac_C/D"}


def test_window_majority_needs_min_fraction_and_follows_category_order():
    out = window_label_fractions(WINDOWS, ANNOTATION, min_fraction=0.5)
    assert out["majority_label"].tolist() == ["A", "none", "none", "none"]
    ordered = ANNOTATION.assign(Label=pd.Categorical(ANNOTATION["Label"], categories=["C/D", "B", "A", "E"]))
    out = window_label_fractions(WINDOWS, ordered)
    assert [c for c in out.columns if c.startswith("frac_")] == ["frac_C/D", "frac_B", "frac_A", "frac_E"]
    assert out["frac_E"].tolist() == [0, 0, 0, 0]


def test_window_majority_ties_go_to_the_first_label():
    annotation = pd.DataFrame({"Chromosome": ["chr1", "chr1"], "Start": [0, 5], "End": [5, 10],
                               "Label": ["x", "y"]})
    windows = pd.DataFrame({"Chromosome": ["chr1"], "Start": [0], "End": [10]})
    assert window_label_fractions(windows, annotation)["majority_label"].tolist() == ["x"]


def test_window_signal_mean_is_bp_weighted():
    signal = pd.DataFrame({"Chromosome": ["chr1", "chr1", "chr2"], "Start": [0, 10, 0], "End": [10, 30, 5],
                           "Value": [1.0, 4.0, np.nan]})
    windows = pd.DataFrame({"Chromosome": ["chr1", "chr1", "chr1", "chr2"], "Start": [5, 0, 100, 0],
                            "End": [25, 40, 200, 5]})
    # 5 bp at 1 and 15 bp at 4; then 10 bp at 1 and 20 at 4 (uncovered bp do not dilute); no coverage; NaN only.
    np.testing.assert_allclose(window_signal_mean(windows, signal), [65 / 20, 90 / 30, np.nan, np.nan])


def test_window_errors_name_the_fix():
    with pytest.raises(GroverInputError, match="annotation lacks column.*Label.*read_bed"):
        window_label_fractions(WINDOWS, ANNOTATION.drop(columns="Label"))
    with pytest.raises(GroverInputError, match="windows lacks column.*End"):
        window_label_fractions(WINDOWS.drop(columns="End"), ANNOTATION)


# --- replication timing --------------------------------------------------------------------

def test_binned_timing():
    values = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    assert binned_timing(values).tolist() == ["late", "late", "early", "early", "none"]
    assert binned_timing(values, high_is_early=False).tolist() == ["early", "early", "late", "late", "none"]
    assert binned_timing(values, labels=("L", "E")).tolist() == ["L", "L", "E", "E", "none"]
    tertiles = binned_timing(np.arange(1.0, 7.0), method="tertiles")
    assert tertiles.tolist() == ["late", "late", "mid", "mid", "early", "early"]
    with pytest.raises(GroverInputError, match="3 bins but 2 labels"):
        binned_timing(values, method="tertiles", labels=("late", "early"))
    with pytest.raises(GroverInputError, match="unknown"):
        binned_timing(values, method="quartiles")


# --- tokens --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hand_genome(tmp_path_factory):
    """Two chromosomes of random tokens with gaps between some, ids 3..19 (0..2 special, never placed)."""
    rng = np.random.default_rng(7)
    vocab_size = 20
    lengths = np.r_[np.zeros(3, dtype=np.int64), rng.integers(1, 9, size=vocab_size - 3)]
    chromosomes = []
    for name, n_tokens in [("chr1", 400), ("chr2", 250)]:
        ids = rng.integers(3, vocab_size, size=n_tokens)
        gaps = np.where(rng.random(n_tokens) < 0.1, rng.integers(1, 30, size=n_tokens), 0)
        starts = np.cumsum(np.r_[0, lengths[ids[:-1]]] + gaps)
        chromosomes.append((name, ids, starts))
    path = write_tokenized_chromosomes(tmp_path_factory.mktemp("tok") / "genome", chromosomes, id_offset=0,
                                       vocab_size=vocab_size)
    return TokenizedGenome.open(path), lengths


def _random_annotation(seed):
    rng = np.random.default_rng(seed)
    n = 60
    starts = rng.integers(0, 1500, size=n)
    return pd.DataFrame({"Chromosome": rng.choice(["chr1", "chr2", "chrX"], size=n), "Start": starts,
                         "End": starts + rng.integers(0, 120, size=n),  # overlaps and empty intervals
                         "Label": rng.choice(["SINE/Alu", "LINE/L1", "Simple"], size=n),
                         "Strand": rng.choice(["+", "-", "."], size=n, p=[0.45, 0.45, 0.1])})


def _brute_force_shares(genome, lengths, annotation, *, strand_aware):
    keys = {}
    for row in annotation.itertuples():
        if strand_aware:
            if row.Strand == ".":
                key = None
            else:
                key = row.Label + ("_plus" if row.Strand == "+" else "_minus")
        else:
            key = row.Label
        keys.setdefault(key, []).append((row.Chromosome, row.Start, row.End))
    occurrences = np.zeros(genome.vocab_size)
    inside = {key: np.zeros(genome.vocab_size) for key in [*keys, "any"]}
    for chrom in genome.chromosomes:
        for token_id, start in zip(genome.ids(chrom).tolist(), genome.starts(chrom).tolist()):
            midpoint = start + lengths[token_id] // 2
            occurrences[token_id] += 1
            for key, intervals in keys.items():
                hit = any(c == chrom and s <= midpoint < e for c, s, e in intervals)
                if key is not None:
                    inside[key][token_id] += hit
            inside["any"][token_id] += any(
                c == chrom and s <= midpoint < e for intervals in keys.values() for c, s, e in intervals)
    with np.errstate(invalid="ignore"):
        return occurrences, {key: counts / occurrences for key, counts in inside.items()}


@pytest.mark.parametrize("strand_aware", [False, True], ids=["labels", "strand-aware"])
@pytest.mark.parametrize("chunk_tokens", [7, 10_000_000], ids=["small-chunks", "one-chunk"])
def test_token_occurrence_shares_match_brute_force(hand_genome, strand_aware, chunk_tokens):
    genome, lengths = hand_genome
    annotation = _random_annotation(3)
    table = token_occurrence_shares(genome, annotation, token_lengths=lengths, strand_aware=strand_aware,
                                    chunk_tokens=chunk_tokens)
    occurrences, shares = _brute_force_shares(genome, lengths, annotation, strand_aware=strand_aware)
    labels = ["SINE/Alu", "LINE/L1", "Simple"]
    ordered = pd.unique(annotation["Label"]).tolist()
    expected_labels = [f"{label}{suffix}" for label in ordered for suffix in ("_plus", "_minus")] \
        if strand_aware else ordered
    assert sorted(ordered) == sorted(labels)
    assert list(table.columns) == ["token_id", "occurrences", *[f"share_{k}" for k in expected_labels], "share_any"]
    assert table.index.tolist() == list(range(genome.vocab_size)) == table["token_id"].tolist()
    np.testing.assert_array_equal(table["occurrences"], occurrences)
    assert table["occurrences"].sum() == genome.total_tokens
    for key in expected_labels:
        np.testing.assert_allclose(table[f"share_{key}"], shares.get(key, np.where(occurrences > 0, 0.0, np.nan)),
                                   equal_nan=True, err_msg=key)
    np.testing.assert_allclose(table["share_any"], shares["any"], equal_nan=True)
    assert table.loc[:2, "share_any"].isna().all()  # special tokens never occur
    assert table.attrs["label_columns"] == {k: f"share_{k}" for k in expected_labels}


def test_token_occurrence_shares_errors(hand_genome):
    genome, lengths = hand_genome
    annotation = _random_annotation(3)
    with pytest.raises(GroverInputError, match="lacks column.*Strand"):
        token_occurrence_shares(genome, annotation.drop(columns="Strand"), token_lengths=lengths, strand_aware=True)
    with pytest.raises(GroverInputError, match="one length per token id"):
        token_occurrence_shares(genome, annotation, token_lengths=lengths[:5])
    with pytest.raises(GroverInputError, match="overwrite share_any"):
        token_occurrence_shares(genome, annotation.assign(Label="any"), token_lengths=lengths)


def test_genome_label_fractions_merges_and_clips():
    annotation = pd.DataFrame({"Chromosome": ["chr1", "chr1", "chr2", "chr2", "chrUn"],
                               "Start": [0, 50, 90, 10, 0], "End": [100, 150, 130, 20, 50],
                               "Label": ["A", "A", "B", "A", "B"], "Strand": ["+", "+", "-", "-", "+"]})
    sizes = {"chr1": 200, "chr2": 100}
    # A: 0-150 on chr1 + 10 on chr2; B: 90-100 after clipping to chr2's end; chrUn is not in the genome.
    fractions = genome_label_fractions(annotation, sizes)
    assert fractions.name == "genome_fraction" and fractions.index.tolist() == ["A", "B"]
    np.testing.assert_allclose(fractions, [160 / 300, 10 / 300])
    stranded = genome_label_fractions(annotation, sizes, strand_aware=True)
    assert stranded.index.tolist() == ["A_plus", "A_minus", "B_plus", "B_minus"]
    np.testing.assert_allclose(stranded, [150 / 300, 10 / 300, 0, 10 / 300])


# --- the demo genome's own files -----------------------------------------------------------

def _fasta_n_mask(path):
    """Return {chromosome: bool array, True at N} of a FASTA file."""
    sequences, name, parts = {}, None, []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            if name is not None:
                sequences[name] = "".join(parts)
            name, parts = line[1:].split()[0], []
        else:
            parts.append(line.strip())
    sequences[name] = "".join(parts)
    return {chrom: np.frombuffer(seq.upper().encode(), dtype=np.uint8) == ord("N") for chrom, seq in sequences.items()}


def _tiles(sizes, width):
    rows = [(chrom, start, min(start + width, size)) for chrom, size in sizes.items() for start in range(0, size, width)]
    return pd.DataFrame(rows, columns=["Chromosome", "Start", "End"])


def test_demo_chromatin_states_partition_the_sequenced_genome(tiny_genome_dir):
    states = read_bed(tiny_genome_dir / "chromatin_states.bed")
    assert set(states["Label"]) <= {"TssA", "TssFlnk", "Tx", "Enh", "ZNF/Rpts", "Het", "ReprPC", "Quies"}
    n_mask = _fasta_n_mask(tiny_genome_dir / "genome.fa")
    windows = _tiles({chrom: mask.size for chrom, mask in n_mask.items()}, 1000)
    out = window_label_fractions(windows, states)
    fraction_columns = list(out.attrs["label_columns"].values())
    # States do not overlap, and they cover every base except the N runs (telomeres, centromere, gaps).
    acgt_fraction = np.array([1 - n_mask[row.Chromosome][row.Start:row.End].mean()
                              for row in windows.itertuples()])
    np.testing.assert_allclose(out[fraction_columns].sum(axis=1), acgt_fraction, atol=1e-12)
    np.testing.assert_allclose(out["covered_fraction"], acgt_fraction, atol=1e-12)
    assert (out["majority_label"] == "none").sum() == (acgt_fraction == 0).sum() > 0
    assert (out.loc[acgt_fraction == 1, fraction_columns].sum(axis=1) == 1).all()


def test_demo_repeats_class_column_gives_sine_coverage_at_alu_copies(tiny_genome_dir):
    repeats = read_bed(tiny_genome_dir / "repeats.bed", label_column=6)
    assert {"SINE/Alu", "LINE/L1", "Simple_repeat"} <= set(repeats["Label"])
    assert set(repeats["Strand"]) <= {"+", "-"}
    alus = read_bed(tiny_genome_dir / "repeats.bed").query("Label == 'AluSx'")
    windows = _tiles({"chr1": 160_000, "chr2": 140_000}, 2000)
    out = window_label_fractions(windows, repeats)
    hits_alu = np.array([((alus["Chromosome"] == row.Chromosome) & (alus["Start"] < row.End)
                          & (alus["End"] > row.Start)).any() for row in windows.itertuples()])
    assert hits_alu.sum() > 10
    assert (out.loc[hits_alu, "frac_SINE/Alu"] > 0).all()
    assert (out.loc[~hits_alu, "frac_SINE/Alu"] == 0).all()  # AluSx is the demo's only SINE
    # Windows cut exactly on Alu copies are wholly SINE.
    on_alu = window_label_fractions(alus[["Chromosome", "Start", "End"]], repeats)
    np.testing.assert_allclose(on_alu["frac_SINE/Alu"], 1.0)


@pytest.mark.parametrize("name, label_column", [
    ("genes.bed", 3), ("tss.bed", 3), ("ctcf_sites.bed", 6), ("cpg_islands.bed", None), ("gc_domains.bed", 3)])
def test_demo_annotation_files_read(tiny_genome_dir, name, label_column):
    table = read_bed(tiny_genome_dir / name, label_column=label_column)
    assert len(table) > 0 and (table["End"] >= table["Start"]).all()
    # Labels depend on the demo's seed, so the first line is checked against the file itself.
    first_line = (tiny_genome_dir / name).read_text().splitlines()[0].split("\t")
    assert table.loc[0, "Label"] == (first_line[label_column] if label_column is not None else "cpg_islands")


def test_demo_replication_timing_bins(tiny_genome_dir):
    timing = read_signal(tiny_genome_dir / "replication_timing.bedGraph")
    windows = _tiles({"chr1": 160_000, "chr2": 140_000}, 10_000)
    means = window_signal_mean(windows, timing)
    assert not np.isnan(means).any()
    bins = binned_timing(means)
    assert set(bins) == {"early", "late"} and (bins == "early").sum() == (means > np.median(means)).sum()
