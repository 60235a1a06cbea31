"""Next-k-mer prediction: examples that match the genome, train/test that never share a nucleotide, the
frequency baseline, and the whole experiment's result table."""
import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.run import NEXTKMER_RESULT_COLUMNS
from grover_core import nextkmer
from grover_core.demo_genome import DemoGenomeConfig, write_demo_genome
from grover_core.errors import GroverInputError
from grover_core.finetune import FinetuneConfig
from grover_core.genome import iter_fasta
from grover_core.kmer import build_kmer_tokenizer, write_kmer_tokenizer
from grover_core.model import build_model, model_config
from grover_core.nextkmer import (DATASET_COLUMNS, METHODS, NextKmerConfig, chance_accuracy, frequency_baseline_accuracy,
                                  frequency_baseline_predict, kmer_index, next_kmer_dataset, run_next_kmer,
                                  truncate_next_kmer)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    """The tiny demo genome: chr1 (160 kb) and chr2 (140 kb) with N gaps, repeats and biased composition."""
    return write_demo_genome(tmp_path_factory.mktemp("genome"), config=DemoGenomeConfig.tiny(seed=13))["fasta"]


@pytest.fixture(scope="module")
def genome(fasta):
    return {name: letters.decode().upper() for name, letters in iter_fasta(fasta)}


@pytest.fixture(scope="module")
def table(fasta):
    return next_kmer_dataset(fasta, chromosome=["chr1", "chr2"], k=3, n=3000, seed=1, block_nt=5000)


def test_examples_are_the_genome_and_its_next_nucleotides(table, genome):
    assert tuple(table.columns) == DATASET_COLUMNS
    assert table["split"].value_counts().to_dict() == {"train": 2400, "test": 600}
    assert set(table["chromosome"]) == {"chr1", "chr2"}
    order = {"".join(p): i for i, p in enumerate(itertools.product("ACGT", repeat=3))}
    for row in table.itertuples():
        chromosome = genome[row.chromosome]
        assert row.sequence == chromosome[row.start:row.end] and row.end - row.start == 50
        assert row.next_kmer == chromosome[row.end:row.end + 3]  # re-read: the actual next nucleotides
        assert row.label == order[row.next_kmer]
        assert set(row.sequence + row.next_kmer) <= set("ACGT")
    # Positions are distinct and spread over the chromosome, not bunched at its start.
    assert not table.duplicated(["chromosome", "start"]).any()
    assert table.loc[table["chromosome"] == "chr1", "start"].max() > 100_000


def test_train_and_test_never_share_a_nucleotide(table):
    k, block = 3, 5000
    first, last = table["start"].to_numpy(), table["end"].to_numpy() + k - 1
    assert np.array_equal(first // block, last // block)  # each example inside one block
    blocks = table.assign(block=first // block).groupby(["chromosome", "block"])["split"].nunique()
    assert (blocks == 1).all()  # each block feeds one split
    for chromosome, rows in table.groupby("chromosome"):
        train, test = rows[rows["split"] == "train"], rows[rows["split"] == "test"]
        overlap = ((train["start"].to_numpy()[:, None] < test["end"].to_numpy()[None, :] + k)
                   & (test["start"].to_numpy()[None, :] < train["end"].to_numpy()[:, None] + k))
        assert not overlap.any(), chromosome


def test_same_seed_same_table_and_only_the_chosen_chromosome(fasta, table):
    again = next_kmer_dataset(fasta, chromosome=["chr1", "chr2"], k=3, n=3000, seed=1, block_nt=5000)
    pd.testing.assert_frame_equal(table, again)
    other = next_kmer_dataset(fasta, chromosome=["chr1", "chr2"], k=3, n=3000, seed=2, block_nt=5000)
    assert not table["start"].equals(other["start"])
    chr2 = next_kmer_dataset(fasta, chromosome="chr2", k=2, n=200, seed=0, validation_fraction=0.1)
    assert set(chr2["chromosome"]) == {"chr2"}
    assert chr2["split"].value_counts().to_dict() == {"train": 140, "validation": 20, "test": 40}


def test_bad_requests_name_the_fix(fasta):
    with pytest.raises(GroverInputError, match=r"positions hold a clean example.*lower n"):
        next_kmer_dataset(fasta, chromosome="chr2", k=2, n=200_000)
    with pytest.raises(GroverInputError, match="chr21"):
        next_kmer_dataset(fasta, chromosome="chr21", k=2, n=10)
    with pytest.raises(GroverInputError, match="k must be"):
        next_kmer_dataset(fasta, chromosome="chr1", k=0, n=10)
    with pytest.raises(GroverInputError, match="block_nt"):
        next_kmer_dataset(fasta, chromosome="chr1", k=2, n=10, block_nt=40)
    with pytest.raises(GroverInputError, match="k_values"):
        NextKmerConfig(k_values=(2, 9))


def test_kmer_index_and_truncation(table):
    assert kmer_index(["AA", "AC", "CA", "TT"]).tolist() == [0, 1, 4, 15]
    with pytest.raises(GroverInputError, match="only A, C, G and T"):
        kmer_index(["AN"])
    two = truncate_next_kmer(table, k=2)
    assert (two["next_kmer"] == table["next_kmer"].str[:2]).all()
    assert (two["label"] == table["label"] // 4).all()  # dropping the last letter of a base-4 number
    assert (table["next_kmer"].str.len() == 3).all()  # the input is not changed
    with pytest.raises(GroverInputError, match="k >= 4"):
        truncate_next_kmer(table, k=4)


def test_frequency_baseline_on_a_hand_made_table():
    train = pd.DataFrame({"sequence": ["AAC", "GAC", "TAC", "CCG", "ACG", "TTT"],
                          "next_kmer": ["GT", "GT", "AA", "TT", "TT", "TT"]})
    test = pd.DataFrame({"sequence": ["CAC", "GCG", "GGG"], "next_kmer": ["GT", "AA", "TT"]})
    # "AC" was followed by GT twice and AA once; "CG" by TT; "GG" never seen: the overall commonest, TT.
    assert frequency_baseline_predict(train, test, k=2, context_nt=2).tolist() == [kmer_index(["GT"])[0], 15, 15]
    assert frequency_baseline_accuracy(train, test, k=2, context_nt=2) == pytest.approx(2 / 3)
    assert frequency_baseline_predict(train, test, k=2, context_nt=0).tolist() == [15, 15, 15]
    # k=1: G followed "AC" twice, A once; ties go to the lexicographically first letter.
    tied = pd.DataFrame({"sequence": ["AC", "AC"], "next_kmer": ["T", "G"]})
    assert frequency_baseline_predict(tied, test.head(1), k=1, context_nt=2).tolist() == [2]


def test_frequency_baseline_beats_chance_on_a_structured_genome(fasta):
    data = next_kmer_dataset(fasta, chromosome=["chr1", "chr2"], k=2, n=6000, seed=3)
    train, test = data[data["split"] == "train"], data[data["split"] == "test"]
    accuracy = frequency_baseline_accuracy(train, test, k=2, context_nt=3)
    assert chance_accuracy(2) == 1 / 16
    # 1,200 test rows: chance (6.25%) has a standard error of 0.7 points; repeats and CpG depletion give more.
    assert accuracy > chance_accuracy(2) + 0.025


def test_rejection_sampling_draws_distinct_allowed_positions():
    mask = np.zeros(3_000_000, dtype=bool)
    mask[::3] = True  # 1M allowed: more than the listing limit allows for 100 draws
    draws = [nextkmer._sample_positions(mask, 100, np.random.default_rng(7), split="train") for _ in range(2)]
    assert np.array_equal(draws[0], draws[1]) and np.unique(draws[0]).size == 100
    assert mask[draws[0]].all() and np.all(np.diff(draws[0]) > 0) and draws[0].max() > 1_000_000


def test_run_next_kmer_fills_the_result_table(fasta, tmp_path):
    model_dir = tmp_path / "model"
    write_kmer_tokenizer(model_dir, 3)
    build_model(model_config("grover-test"), build_kmer_tokenizer(3)).save_pretrained(str(model_dir))
    config = NextKmerConfig(k_values=(1, 2), n_train=160, n_test=64, chromosomes=("chr1",), block_nt=4000,
                            finetune=FinetuneConfig(epochs=1, batch_size=32, learning_rate=1e-3))
    results = run_next_kmer(model_dir, fasta, config=config, vocabulary="kmer_3", vocabulary_kind="kmer", kmer_size=3)
    assert tuple(results.columns) == NEXTKMER_RESULT_COLUMNS == nextkmer.NEXTKMER_RESULT_COLUMNS
    assert results[["k", "method"]].values.tolist() == [[k, m] for k in (1, 2) for m in nextkmer.METHODS]
    assert (results["vocabulary"] == "kmer_3").all() and (results["kmer_size"] == 3).all()
    assert results["bpe_cycles"].isna().all()
    assert (results["n_train"] == 160).all() and (results["n_test"] == 64).all()
    chance = results[results["method"] == "chance"]
    assert chance["accuracy"].tolist() == [0.25, 1 / 16]
    assert results["accuracy"].between(0, 1).all() and (results["seconds"] >= 0).all()
    with pytest.raises(GroverInputError, match="n_validation"):
        run_next_kmer(model_dir, fasta, vocabulary="kmer_3", vocabulary_kind="kmer",
                      config=dataclasses.replace(config, finetune=FinetuneConfig(early_stopping_patience=1)))


def test_method_names_are_the_results_schema_ones():
    from analysis import run

    assert METHODS == (run.FINE_TUNED, run.FREQUENCY_BASELINE, run.CHANCE)
