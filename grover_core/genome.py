"""Reading genomes: FASTA (plain or gzip) or UCSC .2bit, one record at a time, split into runs of A/C/G/T.

GROVER uses only A, C, G and T. Every other letter (N runs, IUPAC codes) is a boundary that no token
crosses; lower case (soft-masked repeats) counts as upper case.

Formats are recognised by their first bytes, not by the file name:

* FASTA, plain or gzip (``.fa``, ``.fa.gz``, bgzip too). White space inside sequence lines is dropped,
  so Windows line endings (``\\r\\n``) read exactly as ``\\n``.
* UCSC ``.2bit`` (version 0, or 1 with 64-bit offsets; either byte order). A record decodes to the
  same letters ``twoBitToFa`` prints: N blocks become ``N`` (``n`` inside a mask block) and mask blocks
  lower case, and then goes through the same path as a FASTA record. ``.2bit`` stores only A/C/G/T/N,
  so IUPAC codes of the original FASTA arrive as N.

Sequence names must be unique within a file. Only one record is in memory at a time.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grover_core.atomic import atomic_path
from grover_core.errors import GroverInputError

NUCLEOTIDES = "ACGT"
#: Code for a letter that is not A/C/G/T (a boundary).
NOT_ACGT = 255

# Byte -> nucleotide code (A=0, C=1, G=2, T=3, anything else NOT_ACGT), case-insensitive.
_CODE_OF_BYTE = np.full(256, NOT_ACGT, dtype=np.uint8)
for _code, _letter in enumerate(NUCLEOTIDES):
    _CODE_OF_BYTE[ord(_letter)] = _code
    _CODE_OF_BYTE[ord(_letter.lower())] = _code

# Byte -> upper-case byte (ASCII letters only).
_UPPER = np.arange(256, dtype=np.uint8)
_UPPER[ord("a"):ord("z") + 1] -= 32

_GENOME_KINDS = "Give a FASTA (.fa, .fa.gz) or UCSC .2bit genome."
_TWOBIT_SIGNATURE = 0x1A412743
_TWOBIT_MAGICS = {struct.pack("<I", _TWOBIT_SIGNATURE): "<", struct.pack(">I", _TWOBIT_SIGNATURE): ">"}
# Other compressions people try: first bytes -> name.
_UNSUPPORTED_COMPRESSION = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip", b"\x28\xb5\x2f\xfd": "zstd"}


@dataclass
class GenomeStats:
    """What reading a genome saw: nucleotides kept and boundaries, per chromosome."""

    chromosome_lengths: dict[str, int] = field(default_factory=dict)
    acgt_nucleotides: int = 0
    other_nucleotides: int = 0  # N and IUPAC codes: boundaries, never inside a token
    gc_nucleotides: int = 0
    segments: int = 0  # runs of A/C/G/T
    other_letters: dict[str, int] = field(default_factory=dict)  # non-ACGT letter (upper case) -> count
    n_runs: int = 0  # maximal runs of N (gaps); other letters do not start or end one

    @property
    def gc_fraction(self) -> float:
        return self.gc_nucleotides / self.acgt_nucleotides if self.acgt_nucleotides else 0.0

    @property
    def n_nucleotides(self) -> int:
        return self.other_letters.get("N", 0)

    @property
    def iupac_nucleotides(self) -> int:
        """Non-ACGT letters other than N (IUPAC ambiguity codes, or anything else)."""
        return self.other_nucleotides - self.n_nucleotides

    def as_dict(self) -> dict:
        return {
            "chromosomes": dict(self.chromosome_lengths),
            "acgt_nucleotides": self.acgt_nucleotides,
            "other_nucleotides": self.other_nucleotides,
            "gc_fraction": round(self.gc_fraction, 6),
            "acgt_segments": self.segments,
            "n_nucleotides": self.n_nucleotides,
            "n_runs": self.n_runs,
            "iupac_nucleotides": self.iupac_nucleotides,
            "other_letters": dict(sorted(self.other_letters.items())),
        }


# --------------------------------------------------------------------------------------------------
# Format detection


def genome_format(path: str | os.PathLike) -> str:
    """Return ``"fasta"``, ``"fasta.gz"`` or ``"2bit"`` from the file's first bytes.

    Raises ``GroverInputError`` when the file is missing, empty, or compressed in a way we do not read.
    Anything else is reported as ``"fasta"``; reading it then says whether it is FASTA.
    """
    path = Path(path)
    if not path.is_file():
        raise GroverInputError(f"genome file not found: {path}. {_GENOME_KINDS}")
    with open(path, "rb") as probe:
        head = probe.read(8)
    if not head:
        raise GroverInputError(f"{path} is empty or not a FASTA file: it is 0 bytes long. {_GENOME_KINDS}")
    if head[:4] in _TWOBIT_MAGICS:
        return "2bit"
    if head[:2] == b"\x1f\x8b":
        return "fasta.gz"
    for magic, name in _UNSUPPORTED_COMPRESSION.items():
        if head.startswith(magic):
            raise GroverInputError(f"{path} is {name}-compressed, which is not read. Decompress it, or "
                                   "recompress it with gzip or bgzip.")
    return "fasta"


def _check_chromosomes(chromosomes: Collection[str] | None) -> set[str] | None:
    if chromosomes is None:
        return None
    if isinstance(chromosomes, str):
        chromosomes = [chromosomes]
    wanted = set(chromosomes)
    if not wanted:
        raise GroverInputError("no chromosomes were chosen. Name at least one, or choose none to read them all.")
    return wanted


def _missing_error(path: Path, missing: Iterable[str], present: list[str]) -> GroverInputError:
    shown = ", ".join(present[:8]) + (f" and {len(present) - 8} more" if len(present) > 8 else "")
    return GroverInputError(
        f"{path}: chromosome(s) {', '.join(sorted(missing))} not in the genome (it holds {shown or 'none'}). "
        "Check the names (e.g. 'chr1' vs '1')."
    )


# --------------------------------------------------------------------------------------------------
# FASTA


_WHITE_SPACE = b" \t\r\n\x0b\x0c"


def _iter_fasta_records(path: Path, gz: bool, wanted: set[str] | None) -> Iterator[tuple[str, bytes]]:
    """FASTA records ``(name, letters)``; stops reading once every wanted record was read."""
    names: dict[str, int] = {}  # name -> header line
    remaining = set(wanted) if wanted is not None else None
    name: str | None = None
    keep = False
    chunks: list[bytes] = []
    line_number = 0

    def record() -> bytes:
        # White space goes in one pass per record (also the \r of Windows line endings): the per-line
        # loop stays minimal, which keeps reading at ~100 MB/s.
        sequence = b"".join(chunks).translate(None, _WHITE_SPACE)
        chunks.clear()  # the lines are not kept while the consumer works on the record
        if b"\x00" in sequence:
            raise GroverInputError(f"{path} is not a FASTA file: binary data in record '{name}'. {_GENOME_KINDS}")
        if b">" in sequence:
            raise GroverInputError(f"{path}: record '{name}' holds a '>' inside its sequence (a header line "
                                   "indented with white space?). Start every header line with '>'.")
        return sequence

    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as handle:
            if gz and handle.peek(4)[:4] in _TWOBIT_MAGICS:
                raise GroverInputError(f"{path} is a gzip-compressed .2bit file, which is not read. "
                                       "Decompress it first (gunzip).")
            for line_number, line in enumerate(handle, start=1):
                if line[:1] == b">":
                    if keep:
                        yield name, record()
                        if remaining is not None:
                            remaining.discard(name)
                            if not remaining:
                                return
                    parts = line[1:].split()
                    if not parts:
                        raise GroverInputError(f"{path}: line {line_number} is a FASTA header without a name. "
                                               "Give every record a name ('>chr1').")
                    name = parts[0].decode("ascii", errors="replace")
                    if name in names:
                        raise GroverInputError(
                            f"{path}: sequence name '{name}' appears twice (lines {names[name]} and {line_number}). "
                            "Give every record a unique name."
                        )
                    names[name] = line_number
                    keep = wanted is None or name in wanted
                    chunks = []
                elif keep:
                    chunks.append(line)
                elif name is None and line.strip():
                    raise GroverInputError(
                        f"{path} is not a FASTA file: line {line_number} comes before any '>' header. "
                        f"{_GENOME_KINDS}"
                    )
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise GroverInputError(
            f"{path}: the gzip file is truncated or corrupt after line {line_number} ({error}). "
            "Download or compress it again; `gzip -t` checks a file."
        ) from None
    if name is None:
        raise GroverInputError(f"{path} is empty or not a FASTA file: no '>' header found. {_GENOME_KINDS}")
    if keep:
        yield name, record()
        if remaining is not None:
            remaining.discard(name)
    if remaining:
        raise _missing_error(path, remaining, list(names))


# --------------------------------------------------------------------------------------------------
# UCSC .2bit

# Packed byte -> its four letters; 2-bit codes T=0 C=1 A=2 G=3, first base in the high bits.
_TWOBIT_LETTERS = np.frombuffer(b"TCAG", dtype=np.uint8)[
    (np.arange(256)[:, None] >> np.array([6, 4, 2, 0])) & 3].astype(np.uint8)
# Upper-case letter byte -> 2-bit code (N and anything else packed as T, as faToTwoBit does).
_TWOBIT_CODE = np.zeros(256, dtype=np.uint8)
for _code, _letter in enumerate("TCAG"):
    _TWOBIT_CODE[ord(_letter)] = _code


@dataclass(frozen=True)
class _TwoBitEntry:
    name: str
    offset: int  # file offset of the record
    dna_size: int
    n_blocks: int
    mask_blocks: int


class _TwoBitReader:
    """Index of a .2bit file, checked against the file size when opened; records decoded on demand."""

    def __init__(self, path: Path):
        self.path = path
        self.size = path.stat().st_size
        self.handle = open(path, "rb")
        try:
            self._read_index()
        except BaseException:
            self.handle.close()
            raise

    def close(self) -> None:
        self.handle.close()

    def _corrupt(self, detail: str) -> GroverInputError:
        return GroverInputError(f"{self.path}: truncated or corrupt .2bit file ({detail}). "
                                "Create it again (faToTwoBit) or download it again.")

    def _read(self, n: int, what: str) -> bytes:
        data = self.handle.read(n)
        if len(data) != n:
            raise self._corrupt(f"file ends inside the {what}")
        return data

    def _read_index(self) -> None:
        header = self._read(16, "header")
        self.order = _TWOBIT_MAGICS[header[:4]]
        version, count, _reserved = struct.unpack(self.order + "III", header[4:])
        if version not in (0, 1):
            raise GroverInputError(f"{self.path}: .2bit version {version} is not read (only 0 and 1). "
                                   "Convert it with the current faToTwoBit.")
        offset_format = self.order + ("Q" if version == 1 else "I")
        offset_size = struct.calcsize(offset_format)
        if count * (1 + offset_size) > self.size:
            raise self._corrupt(f"the header announces {count} sequences, more than the file can hold")
        self.entries: list[_TwoBitEntry] = []
        seen: set[str] = set()
        offsets: list[tuple[str, int]] = []
        for _ in range(count):
            name_size = self._read(1, "sequence index")[0]
            name = self._read(name_size, "sequence index").decode("ascii", errors="replace")
            (offset,) = struct.unpack(offset_format, self._read(offset_size, "sequence index"))
            if name in seen:
                raise GroverInputError(f"{self.path}: sequence name '{name}' appears twice in the .2bit index. "
                                       "Give every record a unique name.")
            seen.add(name)
            offsets.append((name, offset))
        for name, offset in offsets:
            self.entries.append(self._check_record(name, offset))

    def _check_record(self, name: str, offset: int) -> _TwoBitEntry:
        """Read a record's block counts and check that its blocks and DNA fit inside the file."""
        where = f"record '{name}'"
        if offset + 12 > self.size:
            raise self._corrupt(f"{where} starts at byte {offset}, past the end of the file ({self.size} bytes)")
        self.handle.seek(offset)
        dna_size, n_blocks = struct.unpack(self.order + "II", self._read(8, where))
        self.handle.seek(offset + 8 + 8 * n_blocks)
        (mask_blocks,) = struct.unpack(self.order + "I", self._read(4, where))
        end = offset + 8 + 8 * n_blocks + 4 + 8 * mask_blocks + 4 + (dna_size + 3) // 4
        if end > self.size:
            raise self._corrupt(f"{where} needs {end - self.size} bytes more than the file holds")
        return _TwoBitEntry(name, offset, dna_size, n_blocks, mask_blocks)

    def _blocks(self, count: int, dna_size: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        dtype = np.dtype(self.order + "u4")
        starts = np.frombuffer(self._read(4 * count, what), dtype=dtype).astype(np.int64)
        sizes = np.frombuffer(self._read(4 * count, what), dtype=dtype).astype(np.int64)
        if count and int((starts + sizes).max()) > dna_size:
            raise self._corrupt(f"a {what} reaches past the end of its sequence")
        return starts, sizes

    def letters(self, entry: _TwoBitEntry) -> np.ndarray:
        """Decode one record to ASCII letters (uint8), as ``twoBitToFa`` prints them."""
        self.handle.seek(entry.offset + 8)
        n_starts, n_sizes = self._blocks(entry.n_blocks, entry.dna_size, f"N block of '{entry.name}'")
        self._read(4, entry.name)  # maskBlockCount, read when opened
        mask_starts, mask_sizes = self._blocks(entry.mask_blocks, entry.dna_size, f"mask block of '{entry.name}'")
        self._read(4, entry.name)  # reserved
        packed = np.frombuffer(self._read((entry.dna_size + 3) // 4, f"DNA of '{entry.name}'"), dtype=np.uint8)
        letters = _TWOBIT_LETTERS[packed].reshape(-1)[:entry.dna_size]
        for start, size in zip(n_starts.tolist(), n_sizes.tolist()):
            letters[start:start + size] = ord("N")
        for start, size in zip(mask_starts.tolist(), mask_sizes.tolist()):
            letters[start:start + size] |= 0x20  # ASCII upper -> lower case
        return letters


def _iter_twobit_records(path: Path, wanted: set[str] | None) -> Iterator[tuple[str, np.ndarray]]:
    reader = _TwoBitReader(path)
    try:
        names = [entry.name for entry in reader.entries]
        if wanted is not None and (missing := wanted - set(names)):
            raise _missing_error(path, missing, names)
        for entry in reader.entries:
            if wanted is None or entry.name in wanted:
                yield entry.name, reader.letters(entry)
    finally:
        reader.close()


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and sizes of the runs of True in a bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mask, [False])).astype(np.int8)))
    return edges[0::2], edges[1::2] - edges[0::2]


def write_2bit(path: str | os.PathLike, records: Iterable[tuple[str, str | bytes]], *, byte_order: str = "<") -> Path:
    """Write ``(name, sequence)`` records as a UCSC .2bit file (atomically); return its path.

    Letters other than A/C/G/T (any case) are stored as N blocks, as ``faToTwoBit`` does; lower case is
    stored as mask blocks. ``byte_order`` is ``"<"`` (little-endian, what UCSC tools write) or ``">"``.
    Meant for tests and benchmarks: the packed records are held in memory.
    """
    if byte_order not in ("<", ">"):
        raise ValueError(f"byte_order must be '<' or '>', got {byte_order!r}")
    names: list[bytes] = []
    bodies: list[bytes] = []
    for name, sequence in records:
        encoded_name = name.encode("ascii")
        if not 0 < len(encoded_name) < 256 or encoded_name in names:
            raise ValueError(f"sequence names must be unique and 1-255 ASCII bytes long, got {name!r}")
        raw = np.frombuffer(sequence.encode("ascii") if isinstance(sequence, str) else bytes(sequence), dtype=np.uint8)
        upper = _UPPER[raw]
        n_starts, n_sizes = _runs(_CODE_OF_BYTE[raw] == NOT_ACGT)
        mask_starts, mask_sizes = _runs(raw != upper)
        codes = _TWOBIT_CODE[upper]
        codes = np.concatenate((codes, np.zeros(-codes.size % 4, dtype=np.uint8))).reshape(-1, 4)
        packed = (codes[:, 0] << 6) | (codes[:, 1] << 4) | (codes[:, 2] << 2) | codes[:, 3]
        u32 = np.dtype(byte_order + "u4")
        bodies.append(b"".join([
            struct.pack(byte_order + "II", raw.size, n_starts.size),
            n_starts.astype(u32).tobytes(), n_sizes.astype(u32).tobytes(),
            struct.pack(byte_order + "I", mask_starts.size),
            mask_starts.astype(u32).tobytes(), mask_sizes.astype(u32).tobytes(),
            struct.pack(byte_order + "I", 0),
            packed.astype(np.uint8).tobytes(),
        ]))
        names.append(encoded_name)
    version = 0 if 16 + sum(len(n) + 5 for n in names) + sum(len(b) for b in bodies) < 2**32 else 1
    offset_format = byte_order + ("Q" if version else "I")
    offset = 16 + sum(1 + len(n) + struct.calcsize(offset_format) for n in names)
    index = []
    for name, body in zip(names, bodies):
        index.append(bytes([len(name)]) + name + struct.pack(offset_format, offset))
        offset += len(body)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(struct.pack(byte_order + "IIII", _TWOBIT_SIGNATURE, version, len(names), 0))
        out.writelines(index)
        out.writelines(bodies)
    return path


# --------------------------------------------------------------------------------------------------
# Records and segments


def _iter_letters(
    path: str | os.PathLike, chromosomes: Collection[str] | None
) -> Iterator[tuple[str, bytes | np.ndarray]]:
    """Records as ``(name, letters)``: bytes from FASTA, a uint8 array from .2bit (no copy to bytes)."""
    path = Path(path)
    wanted = _check_chromosomes(chromosomes)
    kind = genome_format(path)
    if kind == "2bit":
        return _iter_twobit_records(path, wanted)
    return _iter_fasta_records(path, kind == "fasta.gz", wanted)


def iter_fasta(path: str | os.PathLike, *, chromosomes: Collection[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, sequence)`` for each record of a FASTA or .2bit genome, one record in memory at a time.

    ``name`` is the header up to the first white space; ``sequence`` is the raw bytes (case kept, white
    space dropped). Only records named in ``chromosomes`` are yielded when it is given; reading stops
    once all of them were read.

    Raises
    ------
    GroverInputError
        When the file is missing, empty, not FASTA or .2bit, truncated or corrupt (gzip or .2bit), has two
        records of the same name, or lacks a chosen chromosome.
    """
    for name, letters in _iter_letters(path, chromosomes):
        yield name, letters if isinstance(letters, bytes) else letters.tobytes()


def encode_nucleotides(sequence: bytes | str | np.ndarray) -> np.ndarray:
    """Return the sequence as uint8 codes (A=0, C=1, G=2, T=3, other letters ``NOT_ACGT``), case-insensitive.

    ``sequence`` is text, bytes, or a uint8 array of ASCII letters.
    """
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii", errors="replace")
    if isinstance(sequence, np.ndarray):
        return _CODE_OF_BYTE[sequence]
    return _CODE_OF_BYTE[np.frombuffer(sequence, dtype=np.uint8)]


def acgt_runs(codes: np.ndarray) -> list[tuple[int, int]]:
    """Return the ``(start, end)`` half-open intervals of maximal A/C/G/T runs in a code array."""
    is_acgt = np.concatenate(([False], codes != NOT_ACGT, [False]))
    edges = np.flatnonzero(is_acgt[1:] != is_acgt[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


@dataclass(frozen=True)
class Segment:
    """A maximal run of A/C/G/T on one chromosome: nucleotide codes and where they sit."""

    chromosome: str
    start: int  # 0-based position of codes[0] on the chromosome
    codes: np.ndarray  # uint8, values 0..3


def _count_boundaries(letters: np.ndarray, codes: np.ndarray, stats: GenomeStats) -> int:
    """Add the record's non-ACGT letters and N runs to ``stats``; return how many letters are not ACGT."""
    other = letters[codes == NOT_ACGT]
    if not other.size:
        return 0
    counts = Counter(stats.other_letters)
    per_byte = np.bincount(_UPPER[other], minlength=256)
    for byte in np.flatnonzero(per_byte).tolist():
        counts[chr(byte)] += int(per_byte[byte])
    stats.other_letters = dict(counts)
    is_n = _UPPER[letters] == ord("N")
    stats.n_runs += int(is_n[0]) + int(np.count_nonzero(is_n[1:] & ~is_n[:-1]))
    return int(other.size)


def iter_segments(
    path: str | os.PathLike, *, chromosomes: Collection[str] | None = None, stats: GenomeStats | None = None
) -> Iterator[Segment]:
    """Yield every A/C/G/T run of the genome (FASTA or .2bit) in file order, updating ``stats`` when given.

    Raises ``GroverInputError`` when the genome holds no A/C/G/T at all, and for every error of
    ``iter_fasta``.
    """
    stats = stats if stats is not None else GenomeStats()
    wanted = _check_chromosomes(chromosomes)
    for name, letters in _iter_letters(path, wanted):
        if isinstance(letters, bytes):
            letters = np.frombuffer(letters, dtype=np.uint8)
        codes = _CODE_OF_BYTE[letters]
        stats.chromosome_lengths[name] = int(codes.size)
        stats.other_nucleotides += _count_boundaries(letters, codes, stats)
        del letters
        for start, end in acgt_runs(codes):
            run = codes[start:end]
            stats.acgt_nucleotides += int(run.size)
            stats.gc_nucleotides += int(np.count_nonzero((run == 1) | (run == 2)))
            stats.segments += 1
            yield Segment(name, start, run)
    if stats.acgt_nucleotides == 0:
        where = f" in chromosomes {sorted(wanted)}" if wanted else ""
        raise GroverInputError(
            f"{path}: the genome holds no A/C/G/T nucleotides{where} (empty, or only N). Give a genome with sequence."
        )
