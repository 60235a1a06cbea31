import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.vocabulary import (SUMMARY_FIELDS, VOCABULARY_COLUMNS, VOCABULARY_SUMMARY, VOCABULARY_TOKENS,
                                 compare_vocabularies, format_vocabulary_report, frequency_balance, gini_coefficient,
                                 read_vocabulary_report, shared_tokens, vocabulary_report_for, vocabulary_summary,
                                 vocabulary_token_table, write_vocabulary_report)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def table_of(tokens, frequencies=None, *, specials=SPECIALS):
    """A token table laid out as our tokenizers are: special tokens first, then nucleotide tokens."""
    frequencies = [1] * len(tokens) if frequencies is None else list(frequencies)
    return vocabulary_token_table(list(specials) + list(tokens), frequencies=[0] * len(specials) + frequencies,
                                  special=np.array([True] * len(specials) + [False] * len(tokens)))


def test_table_columns_dtypes_and_special_rows():
    table = table_of(["A", "C", "G", "T", "CG", "AAT"], [5, 1, 1, 5, 2, 3])
    assert tuple(table.columns) == VOCABULARY_COLUMNS
    assert table["token_id"].tolist() == list(range(11))
    special = table[table["is_special"]]
    assert len(special) == 5
    assert (special["length"] == 0).all() and special["gc"].isna().all()
    assert (special["reverse_complement_id"] == -1).all() and (special["frequency_rank"] == -1).all()
    assert not special["starts_with_at"].any()
    row = table.set_index("token").loc["AAT"]
    assert (row["length"], row["gc"], row["ag"], row["cpg"], row["starts_with_at"]) == (3, 0.0, 2 / 3, 0, True)
    assert table.set_index("token").loc["CG", "cpg"] == 1
    for column in ("token_id", "length", "frequency", "cpg", "reverse_complement_id", "frequency_rank"):
        assert table[column].dtype == np.int64, column


@pytest.mark.parametrize("tokens, expected", [
    (["A", "C", "G", "T"], {"A": "T", "C": "G", "G": "C", "T": "A"}),
    (["A", "T", "AT", "TA", "CG", "GC"], {"AT": "AT", "TA": "TA", "CG": "CG", "GC": "GC"}),
    (["A", "T", "AAC", "GTT", "AAG"], {"AAC": "GTT", "GTT": "AAC", "AAG": None}),
    (["A", "C", "AC", "TTTG"], {"A": None, "C": None, "AC": None, "TTTG": None}),
], ids=["nucleotides", "palindromes", "partner-and-missing", "all-missing"])
def test_reverse_complement_partner_ids(tokens, expected):
    table = table_of(tokens).set_index("token")
    for token, partner in expected.items():
        got = table.loc[token, "reverse_complement_id"]
        if partner is None:
            assert got == -1, token
        else:
            assert got == table.loc[partner, "token_id"], token
    assert table.loc["A", "reverse_complement"] == "T"


def test_default_special_mask_and_shape_checks():
    # The published GROVER tokenizer has an empty string at its last id: it counts as special.
    table = vocabulary_token_table(["[PAD]", "A", "T", ""], frequencies=[0, 2, 1, 0])
    assert table["is_special"].tolist() == [True, False, False, True]
    assert table["frequency_rank"].tolist() == [-1, 1, 2, -1]
    with pytest.raises(ValueError, match="one count per token"):
        vocabulary_token_table(["A", "T"], frequencies=[1, 2, 3])


def test_frequency_rank_ties_share_the_best_rank():
    table = table_of(["A", "C", "G", "T"], [7, 3, 7, 1])
    assert table.loc[~table["is_special"], "frequency_rank"].tolist() == [1, 3, 1, 4]


def test_summary_counts_lengths_kmers_cg_and_starts():
    tokens = ["A", "C", "G", "T", "AA", "CG", "AAAAA", "TTTTT", "GAAAA", "ATATAT", "CCCCCC", "A" * 16]
    summary = vocabulary_summary(table_of(tokens), name="hand")
    assert tuple(summary) == SUMMARY_FIELDS
    assert summary["vocab_size"] == 12 and summary["special_tokens"] == 5
    assert summary["length_histogram"] == {1: 4, 2: 2, 5: 3, 6: 2, 16: 1}
    assert (summary["min_length"], summary["max_length"]) == (1, 16)
    assert summary["mean_length"] == pytest.approx(sum(map(len, tokens)) / 12)
    assert (summary["kmers_5"], summary["kmers_6"]) == (3, 2)
    assert summary["has_cg_token"]
    # Starting with A or T: A, T, AA, AAAAA, TTTTT, ATATAT, A16 -> 7 of 12.
    assert summary["share_starting_with_at"] == pytest.approx(7 / 12)
    # RC in the vocabulary: A, C, G, T, CG (palindrome), AAAAA<->TTTTT, ATATAT (palindrome) -> 8 of 12.
    assert summary["share_with_reverse_complement"] == pytest.approx(8 / 12)
    assert not vocabulary_summary(table_of(["A", "C", "G", "T", "GC", "CA"]), name="x")["has_cg_token"]


def test_summary_weighted_length_and_totals():
    table = table_of(["A", "C", "G", "T", "AT", "AAT"], [10, 0, 2, 4, 3, 1])
    summary = vocabulary_summary(table, name="w")
    assert summary["total_tokens"] == 20
    assert summary["total_nucleotides"] == 10 + 2 + 4 + 6 + 3
    assert summary["nucleotides_per_token"] == pytest.approx(25 / 20)
    assert summary["median_frequency"] == 2.5
    assert summary["unused_tokens"] == 1


@pytest.mark.parametrize("frequencies, sign", [
    ([1, 2, 3, 4, 5, 6], 1),      # longer tokens more frequent (GROVER's "frequency balanced")
    ([60, 50, 40, 30, 20, 10], -1),
], ids=["longer-more-frequent", "longer-rarer"])
def test_spearman_sign_follows_the_length_frequency_relation(frequencies, sign):
    tokens = ["A", "AT", "AAT", "AATT", "AAATT", "AAATTT"]
    rho = vocabulary_summary(table_of(tokens, frequencies), name="s")["spearman_length_frequency"]
    assert rho == pytest.approx(sign * 1.0)


def test_spearman_is_nan_when_frequencies_are_constant():
    summary = vocabulary_summary(table_of(["A", "AT", "AAT"], [4, 4, 4]), name="c")
    assert math.isnan(summary["spearman_length_frequency"])


def test_balance_is_one_for_equal_frequencies_and_lower_for_skewed():
    flat = vocabulary_summary(table_of(["A", "C", "G", "T", "AA", "TT"], [50] * 6), name="flat")
    skewed = vocabulary_summary(table_of(["A", "C", "G", "T", "AA", "TT"], [1000, 5, 5, 5, 5, 5]), name="skew")
    assert flat["frequency_balance"] == pytest.approx(1.0)
    assert flat["frequency_gini"] == pytest.approx(0.0)
    assert 0 < skewed["frequency_balance"] < 0.3
    assert skewed["frequency_gini"] > 0.7
    assert frequency_balance([1, 0, 0]) == 0.0 and gini_coefficient([0, 0, 1]) == pytest.approx(2 / 3)
    assert math.isnan(frequency_balance([3])) and math.isnan(frequency_balance([0, 0]))


def test_compare_and_shared_tokens():
    small = table_of(["A", "C", "G", "T", "AA"])
    large = table_of(["A", "C", "G", "T", "TT", "CG"])
    compared = compare_vocabularies({"small": small, "large": large})
    assert tuple(compared.columns) == SUMMARY_FIELDS
    assert compared["name"].tolist() == ["small", "large"]
    assert compared["vocab_size"].tolist() == [5, 6]
    assert compared["has_cg_token"].tolist() == [False, True]
    shared = shared_tokens(small, large)  # special rows of the tables are not tokens here
    assert (shared["shared"], shared["only_in_a"], shared["only_in_b"]) == (4, 1, 2)
    assert shared["shared_tokens"] == ["A", "C", "G", "T"]
    assert shared["only_in_a_tokens"] == ["AA"] and shared["only_in_b_tokens"] == ["CG", "TT"]
    assert shared["jaccard"] == pytest.approx(4 / 7)


def test_format_report_shows_numbers_and_histogram():
    summary = vocabulary_summary(table_of(["A", "C", "G", "T", "AA", "A" * 9], [5, 5, 5, 5, 2, 1]), name="fmt")
    text = format_vocabulary_report(summary)
    assert text.splitlines()[0] == "Vocabulary fmt"
    assert "CG is a token                no" in text
    assert "  1 | " + "#" * 40 + " 4" in text
    assert "3-8 | 0" in text  # lengths without tokens collapse into one line
    summary["spearman_length_frequency"] = math.nan
    assert "n/a" in format_vocabulary_report(summary)


def random_genome(rng, lengths):
    return {f"chr{i + 1}": "".join(rng.choice(list("ACGT"), size=n)) for i, n in enumerate(lengths)}


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory):
    """A small random genome through the real vocabulary stage: BPE, tokenizer folder, tokenized genome."""
    from grover_core.bpe import BPEConfig, learn_bpe
    from grover_core.genome import Segment, encode_nucleotides
    from grover_core.tokenized_genome import write_tokenized_genome
    from grover_core.tokenizer import SPECIAL_TOKENS, build_bpe_tokenizer, save_tokenizer

    rng = np.random.default_rng(7)
    sequences = random_genome(rng, [6000, 4000])
    # An N run splits chr1 into two segments, as the genome reader does.
    segments = [Segment("chr1", 0, encode_nucleotides(sequences["chr1"][:2500])),
                Segment("chr1", 2600, encode_nucleotides(sequences["chr1"][2600:])),
                Segment("chr2", 0, encode_nucleotides(sequences["chr2"]))]
    vocabulary, tokenized = learn_bpe(segments, config=BPEConfig(cycles=40))
    tokenizer = build_bpe_tokenizer(vocabulary)
    run = tmp_path_factory.mktemp("vocab") / "myrun"
    save_tokenizer(tokenizer, run / "tokenizer")
    write_tokenized_genome(run / "tokenized", tokenized, id_offset=len(SPECIAL_TOKENS), vocab_size=len(tokenizer))
    acgt_length = sum(segment.codes.size for segment in segments)
    return run, vocabulary, acgt_length


def test_report_for_a_learned_vocabulary(learned_run, tmp_path):
    from grover_core.tokenized_genome import TokenizedGenome

    run, vocabulary, acgt_length = learned_run
    table, summary = vocabulary_report_for(run / "tokenizer", run / "tokenized")
    total = TokenizedGenome.open(run / "tokenized").total_tokens
    assert summary["name"] == "myrun"
    assert summary["vocab_size"] == 4 + vocabulary.cycles == 44
    assert summary["special_tokens"] == 5
    assert table.loc[~table["is_special"], "token"].tolist() == vocabulary.tokens
    assert table["frequency"].sum() == summary["total_tokens"] == total
    assert summary["total_nucleotides"] == acgt_length
    assert summary["nucleotides_per_token"] == pytest.approx(acgt_length / total)
    assert summary["tokenizer_dir"] == str((run / "tokenizer").resolve())

    paths = write_vocabulary_report(table, summary, tmp_path / "report")
    assert paths == {"tokens": tmp_path / "report" / VOCABULARY_TOKENS,
                     "summary": tmp_path / "report" / VOCABULARY_SUMMARY}
    assert all(p.is_file() for p in paths.values())
    assert not [p for p in (tmp_path / "report").iterdir() if p.name.startswith(".")]  # no temporary leftovers
    json.loads(paths["summary"].read_text())  # strict JSON
    table_back, summary_back = read_vocabulary_report(tmp_path / "report")
    pd.testing.assert_frame_equal(table_back, table)
    for key, value in summary.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(summary_back[key]), key
        else:
            assert summary_back[key] == value, key
    assert format_vocabulary_report(summary_back) == format_vocabulary_report(summary)


def test_report_for_refuses_a_genome_from_another_tokenizer(learned_run, tmp_path):
    from grover_core.bpe import TokenizedSegment
    from grover_core.errors import GroverInputError
    from grover_core.tokenized_genome import write_tokenized_genome

    run, _, _ = learned_run
    big = TokenizedSegment("chr1", np.array([0, 200], dtype=np.int32), np.array([0, 1], dtype=np.int64))
    write_tokenized_genome(tmp_path / "other", [big], id_offset=5, vocab_size=300)
    with pytest.raises(GroverInputError, match="Give the tokenizer that tokenized this genome"):
        vocabulary_report_for(run / "tokenizer", tmp_path / "other")
    with pytest.raises(GroverInputError, match="not a tokenized-genome folder"):
        vocabulary_report_for(run / "tokenizer", tmp_path)
