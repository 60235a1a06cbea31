"""Genome formats (.2bit beside FASTA), boundary counts, and one clear error per kind of bad input."""
import gzip
import struct

import numpy as np
import pytest

from grover_core.errors import GroverInputError
from grover_core.genome import GenomeStats, genome_format, iter_fasta, iter_segments, write_2bit

RECORDS = [
    ("chr1", "NNNNacgtACGTTTGCAnnnnGGGCCCAAATTTNacgtnnACGT"),
    ("chr2", "ACGT" * 30 + "N" * 7 + "tttt" + "GATTACA"),
    ("chrM", "g"),  # shorter than one packed byte
    ("chrUn", "NNNN"),  # no A/C/G/T at all
]


def write_fasta(path, records, *, newline="\n", width=7):
    lines = []
    for name, sequence in records:
        lines.append(f">{name} description")
        lines += [sequence[i:i + width] for i in range(0, len(sequence), width)]
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    return path


def read_all(path, **kwargs):
    stats = GenomeStats()
    segments = [(s.chromosome, s.start, s.codes.tolist()) for s in iter_segments(path, stats=stats, **kwargs)]
    return segments, stats.as_dict()


@pytest.fixture
def random_records():
    rng = np.random.default_rng(5)
    records = []
    for i in range(3):
        letters = rng.choice(list("ACGTacgtN"), size=int(rng.integers(1, 3000)), p=[0.2] * 4 + [0.04] * 4 + [0.04])
        records.append((f"r{i}", "".join(letters)))
    return records


@pytest.mark.parametrize("byte_order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_2bit_round_trip_reads_like_fasta(tmp_path, byte_order, random_records):
    records = RECORDS + random_records
    fasta = write_fasta(tmp_path / "g.fa", records)
    twobit = write_2bit(tmp_path / "g.2bit", records, byte_order=byte_order)
    assert genome_format(twobit) == "2bit" and genome_format(fasta) == "fasta"
    # Same letters, case and N blocks included, as twoBitToFa would print them.
    assert list(iter_fasta(twobit)) == [(name, seq.encode()) for name, seq in records]
    assert read_all(twobit) == read_all(fasta)


def test_2bit_is_detected_by_content_not_name(tmp_path):
    odd = write_2bit(tmp_path / "genome.fa", [("c", "ACGTNNAC")])
    assert [(s.start, s.codes.tolist()) for s in iter_segments(odd)] == [(0, [0, 1, 2, 3]), (6, [0, 1])]


def test_stats_count_n_and_iupac_letters_and_n_runs(tmp_path):
    fasta = write_fasta(tmp_path / "g.fa", [("a", "NNACGnnRyNAC"), ("b", "ACNNNN")])
    stats = GenomeStats()
    list(iter_segments(fasta, stats=stats))
    report = stats.as_dict()
    assert report["other_letters"] == {"N": 9, "R": 1, "Y": 1}
    assert report["n_nucleotides"] == 9 and report["iupac_nucleotides"] == 2
    assert report["other_nucleotides"] == 11
    assert report["n_runs"] == 4  # NN | nn+ (R y breaks) | N | NNNN
    assert report["acgt_segments"] == 3  # ACG, AC | AC


def test_windows_line_endings_read_as_unix(tmp_path):
    unix = write_fasta(tmp_path / "u.fa", RECORDS)
    windows = write_fasta(tmp_path / "w.fa", RECORDS, newline="\r\n")
    assert b"\r\n" in windows.read_bytes()
    assert list(iter_fasta(windows)) == list(iter_fasta(unix))
    assert read_all(windows) == read_all(unix)


def test_chosen_chromosomes_are_read_in_file_order_from_both_formats(tmp_path):
    fasta = write_fasta(tmp_path / "g.fa", RECORDS)
    twobit = write_2bit(tmp_path / "g.2bit", RECORDS)
    for path in (fasta, twobit):
        assert [name for name, _ in iter_fasta(path, chromosomes={"chrM", "chr1"})] == ["chr1", "chrM"]


@pytest.mark.parametrize("kind", ["fasta", "2bit"])
def test_missing_chromosome_is_named(tmp_path, kind):
    path = (write_fasta(tmp_path / "g.fa", RECORDS) if kind == "fasta"
            else write_2bit(tmp_path / "g.2bit", RECORDS))
    with pytest.raises(GroverInputError, match=r"chromosome\(s\) chr9 not in the genome \(it holds chr1, chr2"):
        list(iter_segments(path, chromosomes={"chr1", "chr9"}))


def test_duplicate_names_are_an_error(tmp_path):
    fasta = write_fasta(tmp_path / "g.fa", [("a", "ACGT"), ("b", "GG"), ("a", "TT")])
    with pytest.raises(GroverInputError, match="'a' appears twice .*unique name"):
        list(iter_fasta(fasta))
    twobit = write_2bit(tmp_path / "g.2bit", [("a", "ACGT"), ("b", "GG")])
    data = bytearray(twobit.read_bytes())
    data[data.index(b"\x01b")+1] = ord("a")  # rename b -> a in the index
    twobit.write_bytes(bytes(data))
    with pytest.raises(GroverInputError, match="'a' appears twice in the .2bit index"):
        list(iter_fasta(twobit))


def test_truncated_gzip_is_named(tmp_path):
    path = tmp_path / "g.fa.gz"
    rng = np.random.default_rng(0)
    text = ">c\n" + "\n".join("".join(rng.choice(list("ACGT"), 60)) for _ in range(2000)) + "\n"
    data = gzip.compress(text.encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GroverInputError, match="gzip file is truncated or corrupt.*gzip -t"):
        list(iter_segments(path))
    path.write_bytes(data[:10] + b"\xff" * 50 + data[60:])
    with pytest.raises(GroverInputError, match="gzip file is truncated or corrupt"):
        list(iter_segments(path))


def test_gzip_fasta_is_read(tmp_path):
    path = tmp_path / "g.fa.gz"
    path.write_bytes(gzip.compress(write_fasta(tmp_path / "g.fa", RECORDS, newline="\r\n").read_bytes()))
    assert genome_format(path) == "fasta.gz"
    assert read_all(path) == read_all(tmp_path / "g.fa")


@pytest.mark.parametrize("cut", [10, 30, -1], ids=["header", "index", "dna"])
def test_truncated_2bit_is_named(tmp_path, cut):
    twobit = write_2bit(tmp_path / "g.2bit", RECORDS)
    twobit.write_bytes(twobit.read_bytes()[:cut])
    with pytest.raises(GroverInputError, match=r"truncated or corrupt \.2bit file .*faToTwoBit"):
        list(iter_fasta(twobit))


def test_corrupt_2bit_blocks_and_offsets_are_named(tmp_path):
    twobit = write_2bit(tmp_path / "g.2bit", [("a", "ACGTNNNNACGT")])
    data = bytearray(twobit.read_bytes())
    record = struct.unpack("<I", data[16 + 2:16 + 6])[0]  # offset of record "a"
    data[record + 8:record + 12] = struct.pack("<I", 11)  # N block start 11 + size 4 > 12 nt
    twobit.write_bytes(bytes(data))
    with pytest.raises(GroverInputError, match="N block of 'a' reaches past the end"):
        list(iter_fasta(twobit))
    data[16 + 2:16 + 6] = struct.pack("<I", 10**6)
    twobit.write_bytes(bytes(data))
    with pytest.raises(GroverInputError, match="past the end of the file"):
        list(iter_fasta(twobit))


def test_unsupported_2bit_version_is_named(tmp_path):
    twobit = write_2bit(tmp_path / "g.2bit", [("a", "ACGT")])
    data = bytearray(twobit.read_bytes())
    data[4:8] = struct.pack("<I", 7)
    twobit.write_bytes(bytes(data))
    with pytest.raises(GroverInputError, match="version 7 is not read"):
        list(iter_fasta(twobit))


@pytest.mark.parametrize("content, fragment", [
    (b"", "is empty or not a FASTA file: it is 0 bytes long"),
    (b"\n\n  \n", "is empty or not a FASTA file: no '>' header"),
    (b"chrom\tstart\tend\nchr1\t1\t5\n", "is not a FASTA file: line 1 comes before any '>' header"),
    (b"BZh91AY&SY", "bzip2-compressed"),
    (b">c\nACGT\n>c2\nAC\x00\x01GT\n", "binary data in record 'c2'"),
    (b">c\nNNNN\nnnRY\n", "holds no A/C/G/T"),
    (b">\nACGT\n", "header without a name"),
    (b">a\nAC\n  >b\nGT\n", "holds a '>' inside its sequence"),
], ids=["empty", "blank", "bed", "bzip2", "binary", "only-n", "no-name", "indented-header"])
def test_bad_genomes_each_raise_one_clear_line(tmp_path, content, fragment):
    path = tmp_path / "g.fa"
    path.write_bytes(content)
    with pytest.raises(GroverInputError, match=fragment) as error:
        list(iter_segments(path))
    assert "\n" not in str(error.value)


def test_gzipped_2bit_is_named(tmp_path):
    twobit = write_2bit(tmp_path / "g.2bit", [("a", "ACGT")])
    path = tmp_path / "g.2bit.gz"
    path.write_bytes(gzip.compress(twobit.read_bytes()))
    with pytest.raises(GroverInputError, match="gzip-compressed .2bit.*gunzip"):
        list(iter_fasta(path))


def test_reading_stops_after_the_chosen_chromosomes(tmp_path):
    # Garbage after the last chosen record is never read: a chromosome subset of a big genome is quick.
    path = tmp_path / "g.fa"
    path.write_bytes(b">a\nACGT\n>b\nGG\n>c\n" + b"\x00" * 100)
    assert list(iter_fasta(path, chromosomes=["a", "b"])) == [("a", b"ACGT"), ("b", b"GG")]
    with pytest.raises(GroverInputError, match="binary data"):
        list(iter_fasta(path))


def test_2bit_reader_decodes_a_hand_packed_file(tmp_path):
    # Built from the UCSC format description, not by write_2bit: T=00 C=01 A=10 G=11, first base in the
    # high bits, so TCAG packs to 0x1B; N blocks and mask blocks are (start, size) lists.
    record = struct.pack("<II", 6, 1) + struct.pack("<II", 4, 1) + struct.pack("<I", 1) + struct.pack("<II", 0, 2)
    record += struct.pack("<I", 0) + bytes([0x1B, 0b1110_0000])  # TCAG, then G A + padding
    header = struct.pack("<IIII", 0x1A412743, 0, 1, 0)
    index = bytes([1]) + b"x" + struct.pack("<I", len(header) + 6)
    path = tmp_path / "hand.2bit"
    path.write_bytes(header + index + record)
    assert list(iter_fasta(path)) == [("x", b"tcAGNA")]
