"""tokenize_genome: the learner's segmentation, k-mers and GROVER-shaped folders, written as a tokenized genome."""
import json

import numpy as np
import pytest

from grover_core.bpe import BPEConfig, learn_bpe
from grover_core.errors import GroverInputError
from grover_core.genome import acgt_runs, encode_nucleotides, iter_fasta, iter_segments, write_2bit
from grover_core.kmer import encode_kmers, write_kmer_tokenizer
from grover_core.tokenize_genome import tokenize_genome
from grover_core.tokenized_genome import TokenizedGenome, write_tokenized_genome
from grover_core.tokenizer import SPECIAL_TOKENS, build_bpe_tokenizer, load_tokenizer, save_tokenizer, token_strings
from grover_core.tokenizer_folder import load_any_tokenizer

from .test_tokenizer_folder import synthetic_merges, write_grover_shaped_folder


def make_records(seed=7):
    rng = np.random.default_rng(seed)
    records = []
    for i, length in enumerate([9000, 5000, 3000]):
        bias = rng.dirichlet(np.ones(4) * 2)
        letters = rng.choice(list("ACGT"), size=length, p=bias)
        letters[rng.integers(0, length, 40)] = "N"  # single Ns and short gaps
        letters[100:400] = "N"
        sequence = "".join(letters)
        repeat = "GGTTACATTACA" * 20
        sequence = sequence[:2000] + repeat.lower() + sequence[2000:] + "AC" * 50  # soft-masked repeat
        records.append((f"chr{i + 1}", sequence))
    records.append(("chrN", "N" * 500))  # no A/C/G/T: no files for it
    return records


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    root = tmp_path_factory.mktemp("genome")
    records = make_records()
    fasta = root / "genome.fa"
    fasta.write_text("".join(f">{name}\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n"
                             for name, seq in records))
    return {"fasta": fasta, "twobit": write_2bit(root / "genome.2bit", records), "root": root}


@pytest.fixture(scope="module")
def learned(genome):
    vocabulary, tokenized = learn_bpe(iter_segments(genome["fasta"]), config=BPEConfig(cycles=150))
    tokenizer = build_bpe_tokenizer(vocabulary)
    folder = save_tokenizer(tokenizer, genome["root"] / "bpe", extra={
        "kind": "bpe", "cycles": vocabulary.cycles, "merges": [list(m) for m in vocabulary.merges]})
    reference = write_tokenized_genome(genome["root"] / "reference", tokenized, id_offset=len(SPECIAL_TOKENS),
                                       vocab_size=len(tokenizer))
    return {"vocabulary": vocabulary, "folder": folder, "reference": reference}


def assert_same_tokenized_genome(path, reference):
    got, want = TokenizedGenome.open(path), TokenizedGenome.open(reference)
    assert got.tokens_per_chromosome == want.tokens_per_chromosome and got.vocab_size == want.vocab_size
    for name in want.chromosomes:
        for read in (TokenizedGenome.ids, TokenizedGenome.starts):
            a, b = read(got, name), read(want, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), (name, read.__name__)


def test_bpe_segmentation_equals_what_the_learner_ended_with(genome, learned, tmp_path):
    out = tokenize_genome(genome["fasta"], learned["folder"], tmp_path / "tok")
    assert_same_tokenized_genome(out, learned["reference"])
    index = json.loads((out / "index.json").read_text())
    assert index["id_dtype"] == "uint16" and "chrN" not in index["chromosomes"]
    assert index["genome_stats"]["n_runs"] > 3 and index["tokenizer"]["kind"] == "bpe"
    assert index["params"]["tokenizer"] == str(learned["folder"])


def test_2bit_genome_tokenizes_like_its_fasta(genome, learned, tmp_path):
    out = tokenize_genome(genome["twobit"], learned["folder"], tmp_path / "tok")
    assert_same_tokenized_genome(out, learned["reference"])


def test_tokens_spell_the_genome_and_never_cross_a_boundary(genome, learned, tmp_path):
    out = TokenizedGenome.open(tokenize_genome(genome["fasta"], learned["folder"], tmp_path / "tok"))
    strings = token_strings(load_tokenizer(learned["folder"]))
    for name, sequence in iter_fasta(genome["fasta"], chromosomes={"chr1", "chr2"}):
        upper = sequence.decode().upper()
        ids, starts = np.asarray(out.ids(name)), np.asarray(out.starts(name)).astype(np.int64)
        assert np.all(np.diff(starts) > 0)
        assert all(upper[s:s + len(strings[i])] == strings[i] for s, i in zip(starts.tolist(), ids.tolist()))
        covered = np.zeros(len(upper), dtype=int)
        for s, i in zip(starts.tolist(), ids.tolist()):
            covered[s:s + len(strings[i])] += 1
        is_acgt = encode_nucleotides(sequence) != 255
        assert np.array_equal(covered, is_acgt.astype(int))  # every A/C/G/T once, nothing else


@pytest.mark.parametrize("overlapping", [False, True], ids=["cut", "overlapping"])
def test_kmer_folders_use_encode_kmers_per_run(genome, tmp_path, overlapping):
    folder = write_kmer_tokenizer(tmp_path / "k5", 5, overlapping=overlapping)
    out = TokenizedGenome.open(tokenize_genome(genome["twobit"], folder, tmp_path / "tok", chromosomes=["chr2"]))
    assert out.chromosomes == ["chr2"] and out.vocab_size == 5 + 4**5 + 4 + 16 + 64 + 256
    (_, sequence), = iter_fasta(genome["fasta"], chromosomes=["chr2"])
    codes = encode_nucleotides(sequence)
    runs = acgt_runs(codes)
    expected = np.concatenate([encode_kmers(codes[s:e], 5, overlapping=overlapping) for s, e in runs])
    assert np.array_equal(out.ids("chr2"), expected)
    first_starts = [s for s, _ in runs]
    assert set(first_starts) <= set(np.asarray(out.starts("chr2")).tolist())


def test_grover_shaped_folder_tokenizes_like_its_hf_tokenizer(genome, tmp_path):
    folder = write_grover_shaped_folder(tmp_path / "GROVER", synthetic_merges(seed=3))
    out = tokenize_genome(genome["fasta"], folder, tmp_path / "tok", chromosomes={"chr3"})
    tokenized = TokenizedGenome.open(out)
    assert tokenized.vocab_size == 609
    hf = load_any_tokenizer(folder).tokenizer
    (_, sequence), = iter_fasta(genome["fasta"], chromosomes=["chr3"])
    upper = sequence.decode().upper()
    codes = encode_nucleotides(upper)
    expected = [i for s, e in acgt_runs(codes) for i in hf(upper[s:e], add_special_tokens=False)["input_ids"]]
    assert tokenized.ids("chr3").tolist() == expected
    assert max(expected) < 609


def test_missing_chromosome_fails_and_keeps_the_old_output(genome, learned, tmp_path):
    out = tokenize_genome(genome["fasta"], learned["folder"], tmp_path / "tok", chromosomes={"chr1"})
    with pytest.raises(GroverInputError, match=r"chromosome\(s\) chr9 not in the genome"):
        tokenize_genome(genome["fasta"], learned["folder"], out, chromosomes={"chr1", "chr9"})
    assert TokenizedGenome.open(out).chromosomes == ["chr1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no temporary folder left behind


def test_chromosome_names_that_cannot_be_file_names_are_refused(learned, tmp_path):
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1/alt\nACGTACGT\n")
    with pytest.raises(GroverInputError, match="cannot be a file name"):
        tokenize_genome(fasta, learned["folder"], tmp_path / "tok")
