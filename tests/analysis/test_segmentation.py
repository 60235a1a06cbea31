"""Segmentation comparison on real tokenizers: a small learned BPE vocabulary and k-mer tokenizers."""
import doctest
import math

import numpy as np
import pandas as pd
import pytest

import analysis.segmentation as segmentation
from analysis.segmentation import (AGREEMENT_COLUMNS, LENGTH_COLUMNS, REGION_COLUMNS, SEGMENT_COLUMNS,
                                   SHARED_COLUMNS, SUMMARY_COLUMNS, boundary_agreement, compare_vocabulary_folders,
                                   length_distribution, pairwise_boundary_agreement, sample_regions, segment,
                                   segment_with_each, segmentation_summary, token_boundaries)
from analysis.vocabulary import vocabulary_token_table
from grover_core.bpe import BPEConfig, learn_bpe
from grover_core.errors import GroverInputError
from grover_core.genome import Segment, encode_nucleotides
from grover_core.kmer import build_kmer_tokenizer, write_kmer_tokenizer
from grover_core.tokenizer import build_bpe_tokenizer, save_tokenizer, special_token_mask, token_strings


def random_dna(seed, length):
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list("ACGT"), size=length, p=[0.3, 0.2, 0.2, 0.3]))


@pytest.fixture(scope="module")
def bpe_vocabulary():
    genome = random_dna(3, 8_000) + "CA" * 100 + "A" * 40
    learned, _ = learn_bpe([Segment("c", 0, encode_nucleotides(genome))], config=BPEConfig(cycles=40))
    return learned


@pytest.fixture(scope="module")
def tokenizers(bpe_vocabulary):
    return {"bpe": build_bpe_tokenizer(bpe_vocabulary), "k1": build_kmer_tokenizer(1), "k3": build_kmer_tokenizer(3)}


@pytest.mark.parametrize("name", ["bpe", "k1", "k3"])
def test_spans_tile_an_acgt_sequence(tokenizers, name):
    sequence = random_dna(7, 301)
    table = segment(tokenizers[name], sequence)
    assert tuple(table.columns) == SEGMENT_COLUMNS
    for column in ("token_id", "start", "end", "length"):
        assert table[column].dtype == np.int64, column
    assert "".join(sequence[s:e] for s, e in zip(table["start"], table["end"])) == sequence
    assert table["length"].sum() == len(sequence)
    assert (table["start"].iloc[1:].to_numpy() == table["end"].iloc[:-1].to_numpy()).all()
    assert [sequence[s:e] for s, e in zip(table["start"], table["end"])] == table["token"].tolist()
    assert table["token_id"].tolist() == tokenizers[name].convert_tokens_to_ids(table["token"].tolist())


@pytest.mark.parametrize("name", ["bpe", "k1", "k3"])
def test_n_runs_keep_their_span_and_case_and_white_space_do_not_matter(tokenizers, name):
    table = segment(tokenizers[name], "ACGNNNNTTAC")
    unk = table[~table["token"].str.fullmatch("[ACGT]+")]
    assert set(unk["token"]) == {"[UNK]"}
    covered = sorted(p for s, e in zip(unk["start"], unk["end"]) for p in range(s, e))
    assert covered == [3, 4, 5, 6]
    assert table["length"].sum() == 11 and table["end"].max() == 11
    pd.testing.assert_frame_equal(segment(tokenizers[name], "acgNN\nNNtt ac"), table)


def test_k3_segmentation_and_boundaries(tokenizers):
    table = segment(tokenizers["k3"], "ACGTACGTA")
    assert table["token"].tolist() == ["ACG", "TAC", "GTA"]
    assert token_boundaries(table) == {3, 6}
    assert segment(tokenizers["k3"], "ACGTACGTAC")["token"].tolist() == ["ACG", "TAC", "GTA", "C"]
    assert segment(tokenizers["k3"], "").empty and token_boundaries(segment(tokenizers["k3"], "")) == set()


def test_segment_rejects_a_tokenizer_that_does_not_read_raw_sequence():
    with pytest.raises(GroverInputError, match="kmer_text"):
        segment(build_kmer_tokenizer(3, overlapping=True), "ACGTACGT")


def test_segment_with_each_stacks_vocabularies_with_block_index(tokenizers):
    sequence = random_dna(5, 60)
    table = segment_with_each(tokenizers, sequence)
    assert list(table.columns) == ["vocabulary", "block", *SEGMENT_COLUMNS]
    assert list(dict.fromkeys(table["vocabulary"])) == ["bpe", "k1", "k3"]
    for name, part in table.groupby("vocabulary", sort=False):
        assert part["block"].tolist() == list(range(len(part)))
        expected = segment(tokenizers[name], sequence)
        assert part[list(SEGMENT_COLUMNS)].reset_index(drop=True).equals(expected)
    assert len(table[table["vocabulary"] == "k1"]) == 60 and len(table[table["vocabulary"] == "k3"]) == 20
    assert list(segment_with_each({}, sequence).columns) == ["vocabulary", "block", *SEGMENT_COLUMNS]


def test_boundary_agreement_known_answers(tokenizers):
    sequence = random_dna(11, 200)
    tables = {name: segment(tok, sequence) for name, tok in tokenizers.items()}
    for name, table in tables.items():
        itself = boundary_agreement(table, table)
        assert itself["jaccard"] == 1.0 and itself["share_of_a_in_b"] == 1.0, name
        # k=1 cuts between every two nucleotides: every other vocabulary's cut is one of them.
        assert boundary_agreement(tables["k1"], table)["share_of_b_in_a"] == 1.0, name
    k3_k1 = boundary_agreement(segment(tokenizers["k3"], "ACGTACGTA"), segment(tokenizers["k1"], "ACGTACGTA"))
    assert k3_k1 == {"boundaries_a": 2, "boundaries_b": 8, "shared": 2, "jaccard": 0.25,
                     "share_of_a_in_b": 1.0, "share_of_b_in_a": 0.25}


def test_boundary_agreement_edge_cases(tokenizers):
    one_token = segment(tokenizers["k3"], "ACG")
    result = boundary_agreement(one_token, one_token)
    assert result["boundaries_a"] == 0 and math.isnan(result["jaccard"]) and math.isnan(result["share_of_a_in_b"])
    with pytest.raises(ValueError, match="same sequence"):
        boundary_agreement(segment(tokenizers["k3"], "ACGT"), segment(tokenizers["k3"], "ACGTA"))


def test_segmentation_summary_known_answers(tokenizers):
    sequences = [random_dna(seed, 3 * (10 + seed)) for seed in range(5)]
    summary = segmentation_summary(tokenizers, sequences).set_index("vocabulary")
    assert tuple(summary.reset_index().columns) == SUMMARY_COLUMNS
    assert summary.index.tolist() == ["bpe", "k1", "k3"]
    total = sum(map(len, sequences))
    assert (summary["n_sequences"] == 5).all() and (summary["nucleotides"] == total).all()
    assert summary.loc["k3", "nucleotides_per_token"] == 3.0 and summary.loc["k3", "tokens"] == total // 3
    assert summary.loc["k1", "nucleotides_per_token"] == 1.0 and summary.loc["k1", "mean_token_length"] == 1.0
    assert 1.0 < summary.loc["bpe", "nucleotides_per_token"] < 3.0
    assert (summary["unk_tokens"] == 0).all()
    assert summary.loc["k1", "vocab_size"] == 4 and summary.loc["k3", "vocab_size"] == 4 + 16 + 64
    assert summary.loc["bpe", "vocab_size"] == 4 + 40


def test_segmentation_summary_counts_unk_and_takes_named_sequences(tokenizers):
    named = [("r1", "ACGTTTNNNACG"), ("r2", "chr1", "ACGACG")]  # a pair and a sample_regions-style triple
    summary = segmentation_summary({"k3": tokenizers["k3"]}, named).iloc[0]
    # ACG TTT [UNK]x3 ACG, then ACG ACG: 5 nucleotide tokens of 3 nt and 3 [UNK] for 18 letters.
    assert (summary["nucleotides"], summary["tokens"], summary["unk_tokens"]) == (18, 8, 3)
    assert summary["mean_token_length"] == 3.0 and summary["nucleotides_per_token"] == 18 / 8


def test_pairwise_agreement_pools_the_per_sequence_counts(tokenizers):
    sequences = [random_dna(seed, 50 + 17 * seed) for seed in range(4)]
    table = pairwise_boundary_agreement(tokenizers, sequences)
    assert tuple(table.columns) == AGREEMENT_COLUMNS
    assert list(zip(table["vocabulary_a"], table["vocabulary_b"])) == [("bpe", "k1"), ("bpe", "k3"), ("k1", "k3")]
    rows = table.set_index(["vocabulary_a", "vocabulary_b"])
    assert rows.loc[("bpe", "k1"), "share_of_a_in_b"] == 1.0 and rows.loc[("k1", "k3"), "share_of_b_in_a"] == 1.0
    per_sequence = [boundary_agreement(segment(tokenizers["bpe"], s), segment(tokenizers["k3"], s)) for s in sequences]
    pooled = rows.loc[("bpe", "k3")]
    for key in ("boundaries_a", "boundaries_b", "shared"):
        assert pooled[key] == sum(result[key] for result in per_sequence), key
    assert pooled["jaccard"] == pytest.approx(pooled["shared"] / (pooled["boundaries_a"] + pooled["boundaries_b"]
                                                                   - pooled["shared"]))


def test_length_distribution_from_tables_and_tokenizers(tokenizers):
    sequence = random_dna(13, 3_000)
    tables = {}
    for name, tok in tokenizers.items():
        counts = np.bincount(segment(tok, sequence)["token_id"], minlength=len(tok))
        tables[name] = vocabulary_token_table(token_strings(tok), frequencies=counts, special=special_token_mask(tok))
    result = length_distribution(tables)
    assert tuple(result.columns) == LENGTH_COLUMNS
    sums = result.groupby("vocabulary")[["token_share", "occurrence_share"]].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)
    k3 = result[result["vocabulary"] == "k3"].set_index("length")
    assert k3["n_tokens"].to_dict() == {1: 4, 2: 16, 3: 64}
    assert k3.loc[3, "occurrence_share"] == 1.0  # 3,000 nt cut into 3-mers only
    assert result.loc[result["vocabulary"] == "k1", "n_tokens"].tolist() == [4]

    from_tokenizer = length_distribution({"k3": tokenizers["k3"]})
    assert from_tokenizer["n_tokens"].tolist() == [4, 16, 64] and from_tokenizer["occurrence_share"].isna().all()
    assert list(length_distribution({}).columns) == list(LENGTH_COLUMNS)


def write_fasta(path, records, width=60):
    with open(path, "w") as handle:
        for name, sequence in records:
            handle.write(f">{name} test record\n")
            for i in range(0, len(sequence), width):
                handle.write(sequence[i:i + width] + "\n")
    return path


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    chr1 = random_dna(21, 4_000).lower()[:1_000] + random_dna(22, 3_000)  # soft-masked start
    chr2 = random_dna(23, 600) + "N" * 600 + random_dna(24, 600) + "N" * 200
    records = [("chr1", chr1), ("chr2", chr2), ("short", "ACGT" * 10)]
    return write_fasta(tmp_path_factory.mktemp("fasta") / "genome.fa", records), dict(records)


def test_sample_regions_reproducible_in_bounds_and_n_filtered(fasta):
    path, records = fasta
    regions = sample_regions(path, n_regions=40, length=100, seed=1)
    assert regions == sample_regions(path, n_regions=40, length=100, seed=1)
    assert regions != sample_regions(path, n_regions=40, length=100, seed=2)
    assert len(regions) == 40 and len({(c, s) for c, s, _ in regions}) == 40
    assert regions == sorted(regions, key=lambda r: (["chr1", "chr2", "short"].index(r[0]), r[1]))
    for chromosome, start, sequence in regions:
        assert chromosome in ("chr1", "chr2")  # "short" (40 nt) holds no 100 nt window
        assert len(sequence) == 100 and sequence == records[chromosome][start:start + 100].upper()
        assert sequence.count("N") <= 10
    regions_with_n = sample_regions(path, n_regions=300, length=100, seed=1, chromosomes=["chr2"], max_n_fraction=1.0)
    assert {c for c, _, _ in regions_with_n} == {"chr2"}
    assert max(s.count("N") for _, _, s in regions_with_n) > 10
    strict = sample_regions(path, n_regions=300, length=100, seed=1, chromosomes=["chr2"], max_n_fraction=0.0)
    assert all("N" not in s for _, _, s in strict)


def test_sample_regions_are_uniform_over_windows(fasta):
    path, _ = fasta
    regions = sample_regions(path, n_regions=400, length=100, seed=5)
    share_chr1 = sum(c == "chr1" for c, _, _ in regions) / len(regions)
    # chr1 has 3,901 windows of 100 nt; chr2 has 1,901, of which 1,000 or so pass the N filter.
    assert 0.7 < share_chr1 < 0.85


def test_sample_regions_errors(fasta, tmp_path):
    path, _ = fasta
    with pytest.raises(GroverInputError, match="shorter"):
        sample_regions(path, n_regions=3, length=50_000)
    all_n = write_fasta(tmp_path / "n.fa", [("chrN", "N" * 2_000)])
    with pytest.raises(GroverInputError, match="max_n_fraction"):
        sample_regions(all_n, n_regions=3, length=100)
    assert sample_regions(path, n_regions=0, length=100) == []


def test_compare_vocabulary_folders_returns_the_tables(bpe_vocabulary, fasta, tmp_path):
    path, _ = fasta
    folders = {"bpe": save_tokenizer(build_bpe_tokenizer(bpe_vocabulary), tmp_path / "bpe"),
               "k1": write_kmer_tokenizer(tmp_path / "k1", 1), "k3": write_kmer_tokenizer(tmp_path / "k3", 3)}
    result = compare_vocabulary_folders(folders, fasta=path, n_regions=12, region_length=99, seed=3)
    assert set(result) == {"summary", "agreement", "shared", "lengths", "regions"}
    assert tuple(result["summary"].columns) == SUMMARY_COLUMNS
    assert tuple(result["agreement"].columns) == AGREEMENT_COLUMNS
    assert tuple(result["shared"].columns) == SHARED_COLUMNS
    assert tuple(result["regions"].columns) == REGION_COLUMNS
    summary = result["summary"].set_index("vocabulary")
    assert (summary["n_sequences"] == 12).all() and (summary["nucleotides"] == 12 * 99).all()
    regions = sample_regions(path, n_regions=12, length=99, seed=3)
    assert result["regions"]["start"].tolist() == [start for _, start, _ in regions]
    pd.testing.assert_frame_equal(result["summary"], segmentation_summary(
        {name: build_kmer_tokenizer(k) if name != "bpe" else build_bpe_tokenizer(bpe_vocabulary)
         for name, k in (("bpe", 0), ("k1", 1), ("k3", 3))}, regions))
    shared = result["shared"].set_index(["vocabulary_a", "vocabulary_b"])
    assert shared.loc[("k1", "k3")].to_dict() == {"shared": 4, "only_in_a": 0, "only_in_b": 80, "jaccard": 4 / 84}
    assert shared.loc[("bpe", "k3"), "shared"] >= 4
    agreement = result["agreement"].set_index(["vocabulary_a", "vocabulary_b"])
    assert agreement.loc[("k1", "k3"), "share_of_b_in_a"] == 1.0
    # Token lengths weighted by their occurrences in the regions: k3 cuts 99 nt into 33 three-mers each.
    lengths = result["lengths"].set_index(["vocabulary", "length"])
    assert lengths.loc[("k3", 3), "occurrence_share"] == pytest.approx(1.0)
    assert lengths.loc[("k1", 1), "occurrence_share"] == pytest.approx(1.0)
    assert result["lengths"].groupby("vocabulary")["occurrence_share"].sum().round(9).eq(1.0).all()


def test_compare_vocabulary_folders_rejects_overlapping_kmers(fasta, tmp_path):
    path, _ = fasta
    folders = {"k1": write_kmer_tokenizer(tmp_path / "k1", 1),
               "k3o": write_kmer_tokenizer(tmp_path / "k3o", 3, overlapping=True)}
    with pytest.raises(GroverInputError, match="overlapping"):
        compare_vocabulary_folders(folders, fasta=path, n_regions=2, region_length=50)


def test_docstring_examples_run():
    result = doctest.testmod(segmentation, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
