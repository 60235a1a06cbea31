import numpy as np
import pytest

from grover_core.bpe import BPEConfig, BPELearner, encode_codes, learn_bpe
from grover_core.genome import Segment, encode_nucleotides

from .reference_bpe import reference_bpe


def segments_of(*sequences, chromosome="c"):
    return [Segment(chromosome, 0, encode_nucleotides(s)) for s in sequences]


def random_sequences(seed):
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(rng.integers(1, 5)):
        bias = rng.dirichlet(np.ones(4) * 0.5)
        s = "".join(rng.choice(list("ACGT"), size=int(rng.integers(1, 250)), p=bias))
        if rng.random() < 0.5:  # homopolymers and tandem copies: where overlap rules matter
            s += "A" * int(rng.integers(1, 12)) + s[:30] + "CA" * int(rng.integers(1, 8))
        sequences.append(s)
    return sequences


@pytest.mark.parametrize("seed", range(25))
def test_learner_matches_the_reference_bpe(seed):
    sequences = random_sequences(seed)
    cycles = 5 + seed * 3
    vocabulary, tokenized = learn_bpe(segments_of(*sequences), config=BPEConfig(cycles=cycles))
    merges, counts, segmented = reference_bpe(sequences, cycles)
    assert vocabulary.merges == merges
    assert vocabulary.merge_counts == counts
    tokens = vocabulary.tokens
    assert [[tokens[i] for i in t.ids] for t in tokenized] == segmented


def test_overlapping_pairs_are_counted_and_merged_left_to_right():
    vocabulary, tokenized = learn_bpe(segments_of("AAA"), config=BPEConfig(cycles=1))
    assert vocabulary.merges == [("A", "A")] and vocabulary.merge_counts == [2]  # AAA holds two AA pairs
    assert [vocabulary.tokens[i] for i in tokenized[0].ids] == ["AA", "A"]
    assert encode_codes(encode_nucleotides("AAAAA"), vocabulary.merge_table()).tolist() == [4, 4, 0]


def test_ties_go_to_the_alphabetically_first_pair():
    # AC, CG, GT each occur twice ... and TA, too: AC wins the tie.
    vocabulary, _ = learn_bpe(segments_of("ACGTACGT"), config=BPEConfig(cycles=1))
    assert vocabulary.merges == [("A", "C")]


def test_no_token_crosses_a_boundary_and_lower_case_counts_as_upper():
    genome = [Segment("c", 0, encode_nucleotides("acgtac")), Segment("c", 7, encode_nucleotides("GTACGT"))]
    vocabulary, tokenized = learn_bpe(genome, config=BPEConfig(cycles=10))
    upper, _ = learn_bpe(segments_of("ACGTAC", "GTACGT"), config=BPEConfig(cycles=10))
    assert vocabulary.merges == upper.merges
    assert tokenized[0].starts[0] == 0 and tokenized[1].starts[0] == 7
    spans = [(int(s), int(s) + len(vocabulary.tokens[i])) for t in tokenized for s, i in zip(t.starts, t.ids)]
    assert all(end <= 6 or start >= 7 for start, end in spans)


def test_a_longer_run_extends_a_shorter_one():
    sequences = random_sequences(7)
    long_vocabulary, _ = learn_bpe(segments_of(*sequences), config=BPEConfig(cycles=30))
    short_vocabulary, _ = learn_bpe(segments_of(*sequences), config=BPEConfig(cycles=12))
    assert long_vocabulary.prefix(12).merges == short_vocabulary.merges
    with pytest.raises(ValueError, match="only"):
        short_vocabulary.prefix(13)


def test_tokens_are_unique_and_learning_stops_at_min_count():
    vocabulary, _ = learn_bpe(segments_of("ACGT" * 3), config=BPEConfig(cycles=50, min_pair_count=2))
    assert len(set(vocabulary.tokens)) == len(vocabulary.tokens)
    assert min(vocabulary.merge_counts) >= 2
    assert vocabulary.cycles < 50


@pytest.mark.parametrize("seed", range(5))
def test_encode_codes_reproduces_the_learned_segmentation(seed):
    sequences = random_sequences(100 + seed)
    vocabulary, tokenized = learn_bpe(segments_of(*sequences), config=BPEConfig(cycles=40))
    table = vocabulary.merge_table()
    for sequence, tokens in zip(sequences, tokenized):
        assert encode_codes(encode_nucleotides(sequence), table).tolist() == tokens.ids.tolist()


def genome_segments(text_by_chromosome: dict[str, str]):
    """Split chromosomes at non-ACGT letters the way the genome reader does."""
    from grover_core.genome import acgt_runs

    segments = []
    for name, text in text_by_chromosome.items():
        codes = encode_nucleotides(text)
        segments += [Segment(name, start, codes[start:end]) for start, end in acgt_runs(codes)]
    return segments


@pytest.mark.parametrize("seed", range(6))
def test_many_chromosomes_learn_in_parallel_like_the_reference(seed):
    rng = np.random.default_rng(500 + seed)
    chromosomes = {}
    for k in range(int(rng.integers(2, 7))):
        parts = ["".join(rng.choice(list("ACGTN"), size=int(rng.integers(1, 400)), p=[.27, .2, .2, .27, .06]))
                 for _ in range(int(rng.integers(1, 4)))]
        chromosomes[f"chr{k}"] = "NN".join(parts)
    segments = genome_segments(chromosomes)
    learner = BPELearner.from_segments(segments, max_cycles=40)
    vocabulary = learner.learn(BPEConfig(cycles=40))
    merges, counts, segmented = reference_bpe(["".join("ACGT"[c] for c in s.codes) for s in segments], 40)
    assert vocabulary.merges == merges and vocabulary.merge_counts == counts
    tokens = vocabulary.tokens
    learned = list(learner.iter_segments())
    assert [[tokens[i] for i in t.ids] for t in learned] == segmented
    for name, ids, starts in learner.iter_chromosomes():  # every token sits where its nucleotides are
        assert all(chromosomes[name][s:s + len(tokens[i])] == tokens[i] for s, i in zip(starts, ids))
        assert learner.names.count(name) == 1


def test_memory_is_two_bytes_per_nucleotide():
    segments = segments_of("ACGT" * 1000)
    learner = BPELearner.from_segments(segments, max_cycles=600)
    assert learner.arrays[0].dtype == np.uint16 and learner.arrays[0].nbytes == 2 * (4000 + 1)
    assert BPELearner.from_segments(segments, max_cycles=70_000).arrays[0].dtype == np.uint32
