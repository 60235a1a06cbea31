"""Property tests: on any input the fast learner equals the obviously-right reference BPE."""
from hypothesis import given, settings
from hypothesis import strategies as st

from grover_core.bpe import BPEConfig, BPELearner, encode_codes
from grover_core.genome import encode_nucleotides

from .reference_bpe import reference_bpe
from .test_bpe import genome_segments

# Low-entropy alphabets make repeats, homopolymers and ties common: where BPE rules matter.
chromosome = st.text(alphabet=st.sampled_from("AACGTTN"), min_size=0, max_size=120)
genome = st.dictionaries(st.sampled_from(["chr1", "chr2", "chr3"]), chromosome, min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(genome=genome, cycles=st.integers(min_value=1, max_value=30))
def test_learner_equals_reference(genome, cycles):
    segments = genome_segments(genome)
    if not segments:
        return
    learner = BPELearner.from_segments(segments, max_cycles=cycles)
    vocabulary = learner.learn(BPEConfig(cycles=cycles))
    texts = ["".join("ACGT"[c] for c in s.codes) for s in segments]
    merges, counts, segmented = reference_bpe(texts, cycles)
    assert vocabulary.merges == merges
    assert vocabulary.merge_counts == counts
    tokens = vocabulary.tokens
    assert [[tokens[i] for i in t.ids] for t in learner.iter_segments()] == segmented
    table = vocabulary.merge_table()
    assert [[tokens[i] for i in encode_codes(encode_nucleotides(t), table)] for t in texts] == segmented
