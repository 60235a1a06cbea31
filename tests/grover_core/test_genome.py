import gzip

import pytest

from grover_core.errors import GroverInputError
from grover_core.genome import NOT_ACGT, GenomeStats, acgt_runs, encode_nucleotides, iter_fasta, iter_segments


def write(path, text):
    path.write_text(text)
    return path


def test_iter_fasta_reads_records_names_and_wrapped_lines(tmp_path):
    fasta = write(tmp_path / "g.fa", ">chr1 some description\nACGT\nacgt\n\n>chr2\nNNAC\n")
    assert list(iter_fasta(fasta)) == [("chr1", b"ACGTacgt"), ("chr2", b"NNAC")]


def test_iter_fasta_reads_gzip_and_filters_chromosomes(tmp_path):
    path = tmp_path / "g.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(">a\nAC\n>b\nGT\n>c\nTT\n")
    assert list(iter_fasta(path, chromosomes={"b", "c"})) == [("b", b"GT"), ("c", b"TT")]


def test_encode_is_case_insensitive_and_marks_other_letters():
    codes = encode_nucleotides("ACGTacgtNRy-")
    assert codes[:8].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert (codes[8:] == NOT_ACGT).all()


def test_acgt_runs_split_at_every_non_acgt_letter():
    codes = encode_nucleotides("NNACGNRTTAN")
    assert acgt_runs(codes) == [(2, 5), (7, 10)]
    assert acgt_runs(encode_nucleotides("NNN")) == []
    assert acgt_runs(encode_nucleotides("ACGT")) == [(0, 4)]


def test_iter_segments_reports_positions_and_stats(tmp_path):
    fasta = write(tmp_path / "g.fa", ">c1\nNNGGCCnnAT\n>c2\nRACGT\n")
    stats = GenomeStats()
    segments = list(iter_segments(fasta, stats=stats))
    assert [(s.chromosome, s.start, s.codes.tolist()) for s in segments] == [
        ("c1", 2, [2, 2, 1, 1]), ("c1", 8, [0, 3]), ("c2", 1, [0, 1, 2, 3])]
    assert stats.chromosome_lengths == {"c1": 10, "c2": 5}
    assert stats.acgt_nucleotides == 10 and stats.other_nucleotides == 5
    assert stats.gc_nucleotides == 6


@pytest.mark.parametrize("content, fragment", [
    (None, "not found"),
    ("hello world\nthis is text\n", "not a FASTA"),
    ("", "empty or not a FASTA"),
    (">chr1\nNNNNNNNN\n", "no A/C/G/T"),
], ids=["missing", "not-fasta", "empty", "only-n"])
def test_bad_genomes_raise_one_clear_error(tmp_path, content, fragment):
    path = tmp_path / "g.fa"
    if content is not None:
        path.write_text(content)
    with pytest.raises(GroverInputError, match=fragment):
        list(iter_segments(path))


def test_binary_file_is_not_a_fasta(tmp_path):
    path = tmp_path / "g.fa"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(GroverInputError, match="not a FASTA"):
        list(iter_fasta(path))
