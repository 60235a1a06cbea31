"""Fine-tuning task builders: each table follows the paper's design on the tiny demo genome."""
from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from grover_core.demo_genome import (DemoGenomeConfig, pwm_log_odds, read_jaspar_counts, relative_pwm_score,
                                     score_pwm, write_demo_genome)
from grover_core.errors import GroverInputError
from grover_core.genome import encode_nucleotides, iter_fasta
from grover_core.kmer import build_kmer_tokenizer
from grover_core.tasks import (DEFAULT_CTCF_JASPAR, TASK_COLUMNS, CtcfConfig, Prom300Config, PromScanConfig,
                               best_non_overlapping, build_ctcf, build_prom300, build_promscan, motif_log_odds,
                               read_jaspar, read_task_table, reverse_complement, scan_motif, split_chromosomes,
                               task_summary, write_task_table)

# Three chromosomes so the default split rule gives train, validation and test.
GENOME_CONFIG = dataclasses.replace(DemoGenomeConfig.tiny(seed=13), chromosome_lengths=(160_000, 140_000, 120_000))
CTCF_CONFIG = CtcfConfig(bound_column=7)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_genome(tmp_path_factory.mktemp("tasks_genome"), config=GENOME_CONFIG)


@pytest.fixture(scope="module")
def chromosomes(demo) -> dict[str, str]:
    return {name: seq.decode().upper() for name, seq in iter_fasta(demo["fasta"])}


@pytest.fixture(scope="module")
def tss(demo) -> pd.DataFrame:
    return pd.read_csv(demo["tss"], sep="\t", header=None,
                       names=["chromosome", "start", "end", "name", "score", "strand"])


@pytest.fixture(scope="module")
def sites(demo) -> pd.DataFrame:
    return pd.read_csv(demo["ctcf_sites"], sep="\t", header=None,
                       names=["chromosome", "start", "end", "name", "score", "strand", "bound"])


@pytest.fixture(scope="module")
def prom300(demo):
    return build_prom300(demo["fasta"], demo["tss"])


@pytest.fixture(scope="module")
def promscan(demo):
    return build_promscan(demo["fasta"], demo["tss"])


@pytest.fixture(scope="module")
def ctcf(demo):
    return build_ctcf(demo["fasta"], demo["ctcf_sites"], config=CTCF_CONFIG)


def _check_task_columns(df: pd.DataFrame) -> None:
    assert list(df.columns[:len(TASK_COLUMNS)]) == list(TASK_COLUMNS)
    assert df["sequence"].str.fullmatch("[ACGT]+").all()
    assert df["label"].dtype == np.int64 and set(df["label"]) <= {0, 1}
    assert set(df["split"]) <= {"train", "validation", "test"}
    assert (df["end"] - df["start"] == df["sequence"].str.len()).all()


# ---------------------------------------------------------------------------------------------- Prom300

def test_prom300_positives_are_the_tss_window_on_the_gene_strand(prom300, chromosomes, tss):
    _check_task_columns(prom300)
    pos = prom300[prom300["label"] == 1]
    assert len(pos) == len(tss) - sum(prom300.attrs["skipped"].values())
    assert (pos["sequence"].str.len() == 300).all()
    plus, minus = pos[pos["strand"] == "+"], pos[pos["strand"] == "-"]
    assert len(plus) and len(minus)
    # -249..+50 on the gene strand: + reads [p-249, p+51); - reads [p-50, p+250) reverse-complemented.
    assert (plus["start"] == plus["tss"] - 249).all() and (plus["end"] == plus["tss"] + 51).all()
    assert (minus["start"] == minus["tss"] - 50).all() and (minus["end"] == minus["tss"] + 250).all()
    for row in pos.itertuples():
        genomic = chromosomes[row.chromosome][row.start:row.end]
        assert row.sequence == (genomic if row.strand == "+" else reverse_complement(genomic))
    example = minus.iloc[0]
    assert example["sequence"] == reverse_complement(chromosomes[example["chromosome"]][example["tss"] - 50:
                                                                                        example["tss"] + 250])
    # Independent of our coordinates: the demo plants an initiator with its A on the TSS in 80% of
    # promoters, so index 249 (the TSS) reads A far more often than chance on both strands.
    assert (pos["sequence"].str[249] == "A").mean() >= 0.6
    assert (minus["sequence"].str[249] == "A").mean() >= 0.5


def test_prom300_negatives_are_shuffled_chunks_with_the_same_composition(prom300):
    assert (prom300["label"] == 1).sum() == (prom300["label"] == 0).sum()
    for _, pair in prom300.groupby("pair"):
        assert sorted(pair["label"]) == [0, 1]
        assert pair[["chromosome", "start", "end", "split", "tss"]].nunique().max() == 1
        positive = pair.loc[pair["label"] == 1, "sequence"].item()
        negative = pair.loc[pair["label"] == 0, "sequence"].item()
        assert negative != positive
        assert Counter(negative) == Counter(positive)
        # A permutation of the 6-nt chunks (the last one, 300 % 6 == 0 here, included).
        # A permutation of the 6-nt chunks (300 is a multiple of 6, so chunks stay aligned).
        def chunks(s):
            return sorted(s[i:i + 6] for i in range(0, 300, 6))
        assert chunks(negative) == chunks(positive)
    assert prom300.attrs["negatives"] == "shuffled 6-nt chunks"


def test_prom300_chunk_shuffle_keeps_a_partial_last_chunk(demo):
    df = build_prom300(demo["fasta"], demo["tss"], config=Prom300Config(shuffle_chunk=7))
    for _, pair in df.groupby("pair"):
        positive, negative = pair.sort_values("label", ascending=False)["sequence"]
        chunks = [positive[i:i + 7] for i in range(0, 300, 7)]
        assert len(chunks[-1]) == 300 % 7
        assert Counter(negative) == Counter(positive) and negative != positive

        # The negative is exactly these chunks in some order: for some slot of the short chunk, cutting
        # the negative there gives the same multiset of chunks.
        def cut(m):
            sizes = [7] * m + [300 % 7] + [7] * (len(chunks) - 1 - m)
            edges = np.concatenate(([0], np.cumsum(sizes)))
            return sorted(negative[a:b] for a, b in zip(edges[:-1], edges[1:]))
        assert any(cut(m) == sorted(chunks) for m in range(len(chunks)))


def test_prom300_with_a_tokenizer_shuffles_its_tokens(demo):
    tokenizer = build_kmer_tokenizer(3)
    df = build_prom300(demo["fasta"], demo["tss"], tokenizer=tokenizer, config=Prom300Config(seed=5))
    assert df.attrs["negatives"] == "shuffled tokens of the tokenizer"
    for _, pair in df.groupby("pair"):
        positive, negative = pair.sort_values("label", ascending=False)["sequence"]
        assert negative != positive
        assert sorted(tokenizer.tokenize(positive)) == sorted(negative[i:i + 3] for i in range(0, 300, 3))


def test_prom300_is_deterministic_given_the_seed(demo, prom300):
    again = build_prom300(demo["fasta"], demo["tss"])
    pd.testing.assert_frame_equal(again, prom300)
    other = build_prom300(demo["fasta"], demo["tss"], config=Prom300Config(seed=1))
    assert (other["sequence"] != prom300["sequence"]).any()
    assert (other.loc[other["label"] == 1, "sequence"].to_numpy()
            == prom300.loc[prom300["label"] == 1, "sequence"].to_numpy()).all()


def test_prom300_skips_windows_off_the_chromosome_or_with_n(tmp_path, demo, chromosomes):
    chrom = "chr1"
    seq = chromosomes[chrom]
    n_at = next(i for i in range(1000, len(seq)) if seq[i] == "N")
    bed = tmp_path / "tss.bed"
    bed.write_text(f"{chrom}\t10\t11\toff\t0\t+\n"            # runs off the left end
                   f"{chrom}\t{n_at + 10}\t{n_at + 11}\tgap\t0\t+\n"  # holds an N
                   f"{chrom}\t5000\t5001\tok\t0\t-\n"
                   f"{chrom}\t5000\t5001\tagain\t0\t-\n"      # duplicate
                   f"chrUn\t5000\t5001\tlost\t0\t+\n")
    df = build_prom300(demo["fasta"], bed)
    assert df.attrs["skipped"] == {"duplicate": 1, "non_acgt": 1, "off_chromosome": 1, "unknown_chromosome": 1,
                                   "unshuffleable": 0}
    assert list(df["name"]) == ["ok", "ok"]


def test_prom300_names_a_chromosome_naming_mismatch(tmp_path, demo):
    bed = tmp_path / "tss.bed"
    bed.write_text("1\t5000\t5001\tg\t0\t+\n")
    with pytest.raises(GroverInputError, match="names must match"):
        build_prom300(demo["fasta"], bed)
    bed.write_text("chr1\t5000\t5001\tg\t0\t.\n")
    with pytest.raises(GroverInputError, match="strand"):
        build_prom300(demo["fasta"], bed)


# ---------------------------------------------------------------------------------------------- PromScan

def test_promscan_tiles_ten_contiguous_1kb_windows_per_tss(promscan, tss, chromosomes):
    _check_task_columns(promscan)
    assert (promscan["end"] - promscan["start"] == 1000).all()
    assert (promscan["start"] == promscan["tss"] - 5000 + 1000 * promscan["tile"]).all()
    assert set(promscan["tile"]) <= set(range(10))
    assert len(promscan) + sum(promscan.attrs["skipped"].values()) == 10 * len(tss)
    for (chrom, p), region in promscan.groupby(["chromosome", "tss"]):
        tiles = region.sort_values("start")
        assert (np.diff(tiles["start"]) % 1000 == 0).all()  # contiguous unless a tile was skipped
        if len(tiles) == 10:
            assert tiles["start"].iloc[0] == p - 5000 and tiles["end"].iloc[-1] == p + 5000
    for row in promscan.itertuples():
        assert row.sequence == chromosomes[row.chromosome][row.start:row.end]


def test_promscan_label_is_one_exactly_where_a_tss_lies(promscan, tss):
    positions = tss.groupby("chromosome")["start"].apply(np.asarray).to_dict()
    expected = [int(((positions[r.chromosome] >= r.start) & (positions[r.chromosome] < r.end)).any())
                for r in promscan.itertuples()]
    assert promscan["label"].tolist() == expected
    # The region's own TSS sits in tile 5 ([p, p + 1000)); the data are unbalanced as in the paper.
    assert (promscan.loc[promscan["tile"] == 5, "label"] == 1).all()
    assert 0.05 < promscan["label"].mean() < 0.3


def test_promscan_deduplicates_tiles_of_nearby_tss(tmp_path, demo):
    bed = tmp_path / "tss.bed"
    # Two TSSs 2 kb apart: their 1 kb tiles coincide for 8 of 10 windows.
    bed.write_text("chr1\t30000\t30001\ta\t0\t+\nchr1\t32000\t32001\tb\t0\t-\n")
    df = build_promscan(demo["fasta"], bed)
    assert not df.duplicated(["chromosome", "start"]).any()
    assert len(df) + df.attrs["skipped"]["non_acgt"] == 12
    assert df.attrs["skipped"]["duplicate"] == 8
    assert df["label"].sum() == 2 and set(df.loc[df["label"] == 1, "start"]) == {30000, 32000}


def test_promscan_stride_gives_overlapping_tiles(demo, tss):
    df = build_promscan(demo["fasta"], demo["tss"], config=PromScanConfig(region_bp=4000, window_bp=1000,
                                                                          stride_bp=500))
    assert set(df["tile"]) <= set(range(7))
    assert (df["start"] == df["tss"] - 2000 + 500 * df["tile"]).all()


# ---------------------------------------------------------------------------------------------- CTCF

def test_read_jaspar_reads_the_shipped_ctcf_matrix(tmp_path):
    counts = read_jaspar(DEFAULT_CTCF_JASPAR)
    assert counts.shape == (4, 19)
    np.testing.assert_array_equal(counts, read_jaspar_counts(DEFAULT_CTCF_JASPAR))
    bare = tmp_path / "m.pfm"
    bare.write_text("\n".join(" ".join(str(int(x)) for x in row) for row in counts) + "\n")
    np.testing.assert_array_equal(read_jaspar(bare), counts)
    bad = tmp_path / "bad.jaspar"
    bad.write_text(">X\nA [ 1 2 ]\nC [ 1 2 ]\nG [ 1 2 ]\n")
    with pytest.raises(GroverInputError, match="four rows"):
        read_jaspar(bad)


def test_motif_log_odds_matches_the_demo_definition():
    counts = read_jaspar(DEFAULT_CTCF_JASPAR)
    np.testing.assert_allclose(motif_log_odds(counts), pwm_log_odds(counts))
    gc_rich = motif_log_odds(counts, background=[0.2, 0.3, 0.3, 0.2])
    assert gc_rich[1].sum() < motif_log_odds(counts)[1].sum()  # C is less surprising on a GC-rich background


def _slow_scan(codes: np.ndarray, pwm: np.ndarray, threshold: float):
    # Reference: score every position on both strands with plain Python loops.
    width = pwm.shape[1]
    lo, hi = pwm.min(axis=0).sum(), pwm.max(axis=0).sum()
    hits = {}
    for i in range(len(codes) - width + 1):
        window = codes[i:i + width]
        if (window > 3).any():
            continue
        plus = sum(pwm[window[j], j] for j in range(width))
        rc = 3 - window[::-1]
        minus = sum(pwm[rc[j], j] for j in range(width))
        for strand, score in (("+", plus), ("-", minus)):
            if (score - lo) / (hi - lo) >= threshold:
                hits[(i, strand)] = score
    return hits


@pytest.mark.parametrize("chunk_bp", [1 << 20, 97], ids=["one-chunk", "many-chunks"])
def test_scan_motif_matches_a_slow_reference_loop(chunk_bp):
    rng = np.random.default_rng(3)
    letters = rng.choice(list("ACGT"), size=4000)
    letters[1000:1010] = "N"
    letters[2500] = "R"
    sequence = "".join(letters)
    pwm = motif_log_odds(read_jaspar(DEFAULT_CTCF_JASPAR))
    expected = _slow_scan(encode_nucleotides(sequence), pwm, 0.65)
    found = scan_motif(sequence, pwm, threshold=0.65, chunk_bp=chunk_bp)
    assert len(expected) > 20  # the threshold is low enough for the comparison to mean something
    assert set(zip(found["start"], found["strand"])) == set(expected)
    np.testing.assert_allclose(found["motif_score"], [expected[k] for k in zip(found["start"], found["strand"])])
    assert (found["end"] - found["start"] == 19).all() and (found["relative_score"] >= 0.65 - 1e-9).all()
    # Same answer from codes as from text, and a planted motif is found on the strand it was written on.
    pd.testing.assert_frame_equal(scan_motif(encode_nucleotides(sequence), pwm, threshold=0.65), found)
    best = "".join("ACGT"[i] for i in pwm.argmax(axis=0))
    hit = scan_motif("A" * 30 + reverse_complement(best) + "A" * 30, pwm, threshold=0.99)
    assert hit[["start", "strand"]].values.tolist() == [[30, "-"]] and hit["relative_score"].item() == pytest.approx(1)


def test_best_non_overlapping_keeps_the_best_of_each_site():
    matches = pd.DataFrame({"start": [0, 0, 10, 25, 100], "end": [19, 19, 29, 44, 119],
                            "strand": ["+", "-", "+", "-", "+"], "motif_score": [5.0, 7.0, 6.0, 4.0, 1.0]})
    kept = best_non_overlapping(matches)
    # 0/- beats 0/+ and 10/+ (overlapping it); 25/- does not overlap 0/- and survives; 100 alone.
    assert kept[["start", "strand"]].values.tolist() == [[0, "-"], [25, "-"], [100, "+"]]


def test_ctcf_every_window_carries_the_motif_centred_on_its_strand(ctcf, chromosomes):
    _check_task_columns(ctcf)
    assert (ctcf["end"] - ctcf["start"] == 200).all()
    pwm = pwm_log_odds(read_jaspar_counts(DEFAULT_CTCF_JASPAR))
    motifs = [row.sequence[row.motif_offset:row.motif_offset + 19] for row in ctcf.itertuples()]
    oriented = [m if s == "+" else reverse_complement(m) for m, s in zip(motifs, ctcf["strand"])]
    codes = np.stack([encode_nucleotides(m) for m in oriented])
    rel = relative_pwm_score(score_pwm(codes, pwm), pwm)
    assert (rel >= 0.8 - 1e-9).all()
    np.testing.assert_allclose(rel, ctcf["relative_score"])
    # The motif's middle base is the window's middle base.
    assert ((ctcf["motif_start"] + 9) - ctcf["start"] == 100).all()
    for row in ctcf.head(50).itertuples():
        assert row.sequence == chromosomes[row.chromosome][row.start:row.end]
    assert not ctcf.duplicated(["chromosome", "motif_start"]).any()


def test_ctcf_scan_finds_the_planted_sites_and_labels_them_by_bound(ctcf, sites):
    found = ctcf.set_index(["chromosome", "motif_start"])
    keys = list(zip(sites["chromosome"], sites["start"]))
    hit = [k in found.index for k in keys]
    assert np.mean(hit) >= 0.95
    matched = sites[hit]
    rows = found.loc[list(zip(matched["chromosome"], matched["start"]))]
    assert (rows["strand"].to_numpy() == matched["strand"].to_numpy()).all()
    assert (rows["label"].to_numpy() == matched["bound"].to_numpy()).all()
    # Background matches are not peaks: every positive is a planted bound site.
    assert ctcf["label"].sum() == matched["bound"].sum()


def test_ctcf_without_bound_column_takes_every_row_as_a_peak(demo, sites):
    df = build_ctcf(demo["fasta"], demo["ctcf_sites"], config=CtcfConfig(chromosomes=("chr3",)))
    on3 = sites[sites["chromosome"] == "chr3"]
    assert set(df["chromosome"]) == {"chr3"}
    found = df.set_index("motif_start").loc[lambda d: d.index.isin(on3["start"])]
    assert (found["label"] == 1).all() and len(found) >= 0.95 * len(on3)
    # Labelling by window marks background matches next to a site as positive too.
    by_window = build_ctcf(demo["fasta"], demo["ctcf_sites"], config=CtcfConfig(chromosomes=("chr3",),
                                                                                label_by="window"))
    assert by_window["label"].sum() >= df["label"].sum()


def test_ctcf_background_from_the_genome_or_a_gc_fraction(demo, ctcf):
    genome_bg = build_ctcf(demo["fasta"], demo["ctcf_sites"],
                           config=CtcfConfig(bound_column=7, background="genome", chromosomes=("chr3",)))
    bg = np.array(genome_bg.attrs["motif"]["background"])
    assert bg.sum() == pytest.approx(1) and bg[0] == pytest.approx(bg[3]) and 0.35 < bg[1] + bg[2] < 0.55
    gc = build_ctcf(demo["fasta"], demo["ctcf_sites"], config=CtcfConfig(background=0.5, chromosomes=("chr3",)))
    uniform = ctcf[ctcf["chromosome"] == "chr3"]
    assert gc["motif_start"].tolist() == uniform["motif_start"].tolist()  # GC 0.5 is the uniform background
    with pytest.raises(GroverInputError, match="background"):
        CtcfConfig(background="flat")


def test_ctcf_bad_bound_column_names_the_fix(demo):
    with pytest.raises(GroverInputError, match="bound_column=9 does not exist"):
        build_ctcf(demo["fasta"], demo["ctcf_sites"], config=CtcfConfig(bound_column=9))
    with pytest.raises(GroverInputError, match="1-based"):
        CtcfConfig(bound_column=2)


# ---------------------------------------------------------------------------------------------- splits

@pytest.mark.parametrize("task", ["prom300", "promscan", "ctcf"])
def test_splits_are_by_chromosome_last_is_test(task, request):
    df = request.getfixturevalue(task)
    per_chrom = df.groupby("chromosome")["split"].nunique()
    assert (per_chrom == 1).all()
    assert df.groupby("split")["chromosome"].unique().map(list).to_dict() == {
        "train": ["chr1"], "validation": ["chr2"], "test": ["chr3"]}
    assert df.attrs["splits"] == {"rule": "chromosome", "train": ["chr1"], "validation": ["chr2"], "test": ["chr3"]}


def test_named_split_chromosomes_and_their_errors(demo):
    df = build_promscan(demo["fasta"], demo["tss"], config=PromScanConfig(test_chromosomes=("chr1",)))
    assert df.attrs["splits"] == {"rule": "chromosome", "train": ["chr2"], "validation": ["chr3"], "test": ["chr1"]}
    with pytest.raises(GroverInputError, match="genome lacks"):
        build_promscan(demo["fasta"], demo["tss"], config=PromScanConfig(test_chromosomes=("chr9",)))
    with pytest.raises(GroverInputError, match="both test and validation"):
        PromScanConfig(test_chromosomes=("chr1",), validation_chromosomes=["chr1"])


def test_split_rule_for_few_chromosomes(tmp_path, chromosomes, tss):
    assert split_chromosomes(["a", "b"]) == {"a": "train", "b": "test"}
    assert split_chromosomes(["a"]) == {"a": "train"}
    assert split_chromosomes(["a", "b", "c"], validation_chromosomes=["a"]) == {"a": "validation", "b": "train",
                                                                                "c": "test"}
    # One chromosome: contiguous position blocks, 80/10/10 of the distinct starts.
    fasta = tmp_path / "one.fa"
    fasta.write_text(">chr1\n" + chromosomes["chr1"] + "\n")
    bed = tmp_path / "tss.bed"
    tss[tss["chromosome"] == "chr1"].to_csv(bed, sep="\t", header=False, index=False)
    df = build_promscan(fasta, bed)
    assert df.attrs["splits"]["rule"] == "position"
    order = df.sort_values("start")["split"].drop_duplicates().tolist()
    assert order == ["train", "validation", "test"]
    assert df["split"].value_counts()["train"] == pytest.approx(0.8 * len(df), abs=1)
    pairs = build_prom300(fasta, bed)
    assert pairs.attrs["splits"]["rule"] == "position"
    assert pairs.groupby("pair")["split"].nunique().max() == 1  # a promoter and its twin stay together


def test_task_summary_counts_per_split(promscan):
    summary = task_summary(promscan)
    assert summary["split"].tolist() == ["train", "validation", "test"]
    assert summary["n"].sum() == len(promscan)
    test = promscan[promscan["split"] == "test"]
    assert summary.set_index("split").loc["test", "positive_fraction"] == pytest.approx(test["label"].mean())


# ---------------------------------------------------------------------------------------------- user tables

def test_read_task_table_csv_and_tsv(tmp_path):
    rng = np.random.default_rng(0)
    n = 100
    table = pd.DataFrame({"seq": ["".join(rng.choice(list("acgtN"), 20)) for _ in range(n)],
                          "y": rng.choice(["promoter", "background"], n)})
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    table.to_csv(tmp_path / "t.txt", sep="\t", index=False)  # sniffed
    for name in ("t.csv", "t.tsv", "t.txt"):
        df = read_task_table(tmp_path / name, sequence_column="seq", label_column="y")
        assert list(df.columns) == list(TASK_COLUMNS)
        assert df["sequence"].tolist() == table["seq"].str.upper().tolist()
        assert df.attrs["label_names"] == ["background", "promoter"]
        assert (df["label"] == (table["y"] == "promoter").astype(int)).all()
        assert df["chromosome"].isna().all() and (df["start"] == -1).all() and (df["end"] == -1).all()
        counts = df["split"].value_counts()
        assert 76 <= counts["train"] <= 84 and 8 <= counts["validation"] <= 12 and 8 <= counts["test"] <= 12
        for _, part in df.groupby("label"):  # stratified: each class split 80/10/10
            assert abs((part["split"] == "test").mean() - 0.1) < 0.05
    again = read_task_table(tmp_path / "t.csv", sequence_column="seq", label_column="y")
    pd.testing.assert_series_equal(again["split"], df["split"])


def test_read_task_table_keeps_given_columns(tmp_path):
    path = tmp_path / "given.csv"
    path.write_text("sequence,label,split,chromosome,start,end,score\n"
                    "ACGT,1,train,chr1,0,4,0.5\nacgg,0,test,chr2,10,14,0.1\n")
    df = read_task_table(path)
    assert df["split"].tolist() == ["train", "test"] and df["start"].tolist() == [0, 10]
    assert df["label"].tolist() == [1, 0] and "label_names" not in df.attrs and "score" in df.columns


@pytest.mark.parametrize("text, kwargs, message", [
    ("seq,label\nACGT,1\n", {}, "no column 'sequence'; columns found: seq, label"),
    ("sequence,label\nACGT,1\nACXT,0\n", {}, "row 2 of column 'sequence' is 'ACXT'"),
    ("sequence,label\nACGT,1\n,0\n", {}, "row 2 of column 'sequence'"),
    ("sequence,label\nACGT,1\nACGT,0.5\n", {}, "row 2 has label 0.5"),
    ("sequence,label\nACGT,1\nACGT,\n", {}, "row 2 has no value in label column"),
    ("sequence,label,split\nACGT,1,train\nACGT,0,dev\n", {}, "row 2 has split 'dev'"),
    ("sequence,label\n", {}, "no rows"),
], ids=["missing-column", "bad-letter", "empty-sequence", "float-label", "missing-label", "bad-split", "empty"])
def test_read_task_table_bad_input_names_the_problem(tmp_path, text, kwargs, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(GroverInputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_task_table(path, **kwargs)


def test_read_task_table_missing_file(tmp_path):
    with pytest.raises(GroverInputError, match="does not exist"):
        read_task_table(tmp_path / "nope.csv")


def test_write_task_table_is_atomic_and_saves_the_config(tmp_path, prom300):
    out = tmp_path / "tasks" / "prom300.parquet"
    assert write_task_table(prom300, out, config=Prom300Config()) == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["prom300.json", "prom300.parquet"]
    back = pd.read_parquet(out)
    pd.testing.assert_frame_equal(back, prom300.reset_index(drop=True), check_dtype=False)
    assert back.attrs["skipped"] == prom300.attrs["skipped"]
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["task"] == "prom300" and record["rows"] == len(prom300)
    assert record["config"] == json.loads(json.dumps(dataclasses.asdict(Prom300Config())))
    assert [s["split"] for s in record["summary"]] == ["train", "validation", "test"]
    # A parquet round trip reads back as a user table too.
    table = read_task_table(out)
    assert table["label"].tolist() == prom300["label"].tolist()
    # A failed write leaves neither a temporary file nor a half table.
    broken = prom300.assign(bad=[object()] * len(prom300))
    with pytest.raises(Exception):
        write_task_table(broken, tmp_path / "tasks" / "broken.parquet")
    assert sorted(p.name for p in out.parent.iterdir()) == ["prom300.json", "prom300.parquet"]
    with pytest.raises(GroverInputError, match="lacks column"):
        write_task_table(prom300.drop(columns="split"), tmp_path / "x.parquet")
