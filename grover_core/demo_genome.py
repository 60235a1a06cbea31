"""A deterministic, SYNTHETIC demo genome with planted biology and matching annotations.

This is not a real genome. It lets GROVER Lens run end to end (BPE vocabulary, MLM pretraining,
embeddings, dashboard) on a laptop, with every annotation the interpretability analyses need
(repeats, chromatin states, replication timing, genes, TSSs, CTCF sites) known exactly, because we
put it there. hg19 users bring the same file formats instead (see ``data/README.md``).

What is planted, per chromosome, in this order (each feature is written over plain background;
placement keeps later features off earlier ones):

1. GC domains (isochores) of 100 kb - 1 Mb with GC 35-55%, background sampled with homopolymer runs
   (AA/TT enriched) and CpG depletion by simulated methylcytosine deamination (CG -> TG / CA).
2. N runs: telomere gaps at both ends, a centromere gap flanked by alpha-satellite-like arrays,
   a few small gaps; (TTAGGG)n telomeric repeats just inside the telomere gaps.
3. Genes (BED12) with exons (GC-richer), GT..AG introns, CpG-island promoters for most, TATA box
   ~30 bp upstream for some, an initiator (YYANWYY) with its A at the TSS.
4. Orphan CpG islands (polycomb targets), enhancers (TF motifs in GC-rich domains), CTCF sites sampled
   from the real JASPAR MA0139.1 matrix, about half "bound".
5. Repeats, soft-masked (lower case): L1-like LINEs (mostly 5'-truncated), solo LTRs, AluSx SINEs
   from the real consensus, simple repeats; all diverged copies on both strands.
6. Chromatin states (ChromHMM names) painted from what lies where, and replication timing (early in
   GC-rich domains, late in GC-poor ones, with noise).

Everything derives from ``DemoGenomeConfig.seed`` through named random streams, so the same config
gives the same bytes on every run; every file is written atomically.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grover_core.atomic import atomic_path
from grover_core.errors import GroverInputError

# Nucleotide codes used throughout: A C G T N. Complement of code k (k < 4) is 3 - k.
ALPHABET = "ACGTN"
N_CODE = 4
_COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.uint8)
_TRANSITION = np.array([2, 3, 0, 1], dtype=np.uint8)  # A<->G, C<->T
_TRANSVERSIONS = np.array([[1, 3], [0, 2], [1, 3], [0, 2]], dtype=np.uint8)
_UPPER_LOWER = np.frombuffer(b"ACGTNacgtn", dtype=np.uint8)

# ChromHMM (Roadmap 15-state names, the 8 that a sequence-only demo can justify). Order = code.
CHROMATIN_STATES = ("TssA", "TssFlnk", "Tx", "Enh", "ZNF/Rpts", "Het", "ReprPC", "Quies")
_S = {name: code for code, name in enumerate(CHROMATIN_STATES)}

REPEATS_HEADER = "#chrom\tstart\tend\tname\tscore\tstrand\trepeat_class\trepeat_family"

# name -> (repeat_class, repeat_family), RepeatMasker conventions.
REPEAT_FAMILIES = {
    "AluSx": ("SINE/Alu", "Alu"),
    "L1_demo": ("LINE/L1", "L1"),
    "LTR_demo": ("LTR/ERV", "ERV"),
    "SAT_demo": ("Satellite", "centr"),
}
# Simple-repeat unit -> relative frequency (A/T-rich microsatellites dominate in mammals).
SIMPLE_REPEAT_UNITS = {"CA": 3.0, "TG": 3.0, "T": 2.5, "A": 2.5, "GAA": 1.0, "TTC": 1.0,
                       "TA": 1.0, "AAAT": 0.7, "GGAAT": 0.3}

# Transcription-factor motifs planted in enhancers (AP-1, ETS, GATA, E-box, CEBP).
ENHANCER_MOTIFS = ("TGACTCA", "CCGGAAGT", "AGATAA", "CACGTG", "TTGCGCAA")
# A CENP-B-box-like 17-mer in every alpha-satellite-like unit, as in real alpha satellite.
CENPB_BOX = "CTTCGTTGGAAACGGGA"
TELOMERE_UNIT = "TTAGGG"
# CpGs in transposon copies mutate this much faster than other bases (methylated, deaminated):
# old Alus have lost most of the CpGs of their consensus.
TRANSPOSON_CPG_FACTOR = 8.0
HET_REPLICATION_TIMING = -2.0  # replication-timing value of pure heterochromatin (very late)


@dataclass(frozen=True)
class DemoGenomeConfig:
    """Every knob of the demo genome; ``dataclasses.asdict`` of it is saved next to the genome."""

    seed: int = 13  # all randomness derives from this
    chromosome_lengths: tuple[int, ...] = (1_800_000, 1_500_000, 1_300_000, 1_000_000)  # 5.6 Mbp
    fasta_line_width: int = 60  # nucleotides per FASTA line
    # --- N runs and chromosome architecture ---
    telomere_gap: int = 10_000  # N run at each chromosome end (hg19 has 10 kb)
    telomeric_repeat_length: tuple[int, int] = (1_000, 3_000)  # (TTAGGG)n inside each telomere gap
    centromere_gap: int = 50_000  # N run standing for the unassembled centromere
    centromere_position: tuple[float, float] = (0.35, 0.6)  # fraction of the chromosome length
    satellite_array_length: tuple[int, int] = (20_000, 60_000)  # alpha-satellite array on each side
    small_gaps_per_chromosome: int = 3  # scattered assembly gaps
    small_gap_length: tuple[int, int] = (100, 2_000)
    # --- background: isochores, composition ---
    domain_length: tuple[int, int] = (100_000, 1_000_000)  # GC domain (isochore) sizes
    domain_gc: tuple[float, float] = (0.35, 0.55)  # domain GC, stratified so each chromosome spans it
    cpg_retention: float = 0.2  # fraction of background CpGs surviving deamination: o/e ~0.23 as in human
    homopolymer_extension: tuple[float, float] = (0.12, 0.06)  # P(run continues) for A/T, for C/G
    # --- genes and promoters ---
    genes_per_mb: float = 15.0  # human has ~7/Mb; denser so a small genome has enough promoters
    gene_length: tuple[int, int] = (3_000, 60_000)  # genomic span, clipped log-normal
    gene_length_median: int = 15_000
    gene_gc_bias: float = 1.5  # log placement weight per +0.1 domain GC (genes favour GC-rich isochores)
    exon_count: tuple[int, int] = (2, 12)
    exon_gc_boost: float = 0.05  # exons are GC-richer than their introns
    gene_spacing: int = 5_000  # minimum intergenic distance
    expressed_fraction: float = 0.75  # the rest are silent (ReprPC promoters)
    cgi_fraction: float = 0.7  # genes with a CpG-island promoter (~60-70% in human)
    cgi_length: tuple[int, int] = (500, 2_000)
    cgi_gc: float = 0.67  # CpG islands: GC > 60%, no CpG depletion (o/e ~1)
    tata_fraction_cgi: float = 0.1  # TATA boxes are rare in CpG-island promoters ...
    tata_fraction_no_cgi: float = 0.6  # ... and common in the others
    inr_fraction: float = 0.8  # initiator YYANWYY with its A at the TSS
    orphan_cgis_per_mb: float = 3.0  # intergenic CpG islands, polycomb-repressed
    enhancers_per_mb: float = 40.0
    enhancer_length: tuple[int, int] = (200, 2_000)
    enhancer_min_gc: float = 0.44  # enhancers only in domains at least this GC-rich
    # --- repeats (all soft-masked) ---
    repeat_gc_bias: float = 1.0  # log weight per 0.1 GC: Alus towards GC-rich, L1s towards GC-poor
    transposon_cpg_retention: float = 0.5  # CpGs surviving extra decay in Alu/L1/LTR copies
    alu_per_mb: float = 300.0  # ~300 bp each: ~9% of the genome (human ~10%)
    alu_divergence: tuple[float, float] = (0.05, 0.15)
    alu_tail_length: tuple[int, int] = (10, 30)  # extra poly-A beyond the consensus
    l1_consensus_length: int = 6_000  # synthetic full-length L1, made once from the seed
    l1_per_mb: float = 110.0
    l1_full_length_fraction: float = 0.05  # the rest are 5'-truncated, as in human
    l1_truncated_median: int = 900
    l1_divergence: tuple[float, float] = (0.05, 0.20)
    ltr_consensus_length: int = 600  # synthetic solo-LTR consensus (starts TG, ends CA)
    ltr_per_mb: float = 30.0
    ltr_divergence: tuple[float, float] = (0.05, 0.20)
    satellite_unit_length: int = 171  # alpha-satellite monomer length
    satellite_divergence: tuple[float, float] = (0.02, 0.05)  # per-array, monomers diverge independently
    simple_repeats_per_mb: float = 150.0
    simple_repeat_length: tuple[int, int] = (20, 200)
    simple_repeat_divergence: tuple[float, float] = (0.0, 0.08)
    # --- CTCF ---
    ctcf_per_mb: float = 200.0  # human ~30/Mb; denser so a bound/unbound task has examples
    ctcf_min_relative_score: float = 0.8  # (score - min) / (max - min) on MA0139.1 log-odds
    # --- chromatin states and replication timing ---
    repeat_cluster_window: int = 2_000  # ZNF/Rpts where a window this wide is ...
    repeat_cluster_fraction: float = 0.8  # ... at least this soft-masked
    het_l1_min_length: int = 3_000  # long (young, H3K9me3-marked) L1 copies are Het
    replication_bin: int = 50_000  # bedGraph bin size
    replication_noise: float = 0.3  # sd of the noise added before smoothing

    @classmethod
    def tiny(cls, seed: int = 13) -> "DemoGenomeConfig":
        """About 300 kb over 2 chromosomes with every feature of the default, for tests."""
        return cls(
            seed=seed,
            chromosome_lengths=(160_000, 140_000),
            telomere_gap=2_000,
            telomeric_repeat_length=(300, 800),
            centromere_gap=5_000,
            satellite_array_length=(4_000, 8_000),
            small_gaps_per_chromosome=2,
            small_gap_length=(50, 500),
            domain_length=(20_000, 60_000),
            genes_per_mb=40.0,
            gene_length=(2_000, 15_000),
            gene_length_median=6_000,
            gene_spacing=3_000,
            orphan_cgis_per_mb=10.0,
            ctcf_per_mb=300.0,
            replication_bin=10_000,
        )


# ----------------------------------------------------------------------------------------------
# Sequence primitives
# ----------------------------------------------------------------------------------------------

def encode(seq: str) -> np.ndarray:
    """Return uint8 codes (A0 C1 G2 T3 N4) for a DNA string; other letters become N."""
    lut = np.full(256, N_CODE, dtype=np.uint8)
    for code, base in enumerate("ACGT"):
        lut[ord(base)] = lut[ord(base.lower())] = code
    return lut[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]


def decode(codes: np.ndarray, *, lower: np.ndarray | None = None) -> str:
    """Return the DNA string for ``codes``; positions where ``lower`` is True come out lower case."""
    idx = codes.astype(np.intp) + (5 * lower.astype(np.intp) if lower is not None else 0)
    return _UPPER_LOWER[idx].tobytes().decode("ascii")


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Return the reverse complement of ``codes`` (N stays N)."""
    return _COMPLEMENT[codes[::-1]]


def _rng(seed: int, *stream: int) -> np.random.Generator:
    # One named stream per (chromosome, stage): changing one stage leaves the others' draws intact.
    return np.random.default_rng([seed, *stream])


def _deaminate_cpg(rng: np.random.Generator, codes: np.ndarray, *, retention: float) -> np.ndarray:
    """Return a copy where each CG survives with probability ``retention``, else becomes TG or CA.

    Methylated CpGs deaminate to TpG on either strand (CA on the top strand when the bottom-strand C
    deaminates), which is why mammalian genomes are CpG-poor and TpG/CpA-rich. Two CGs never share a
    base, so all conversions can be applied at once without creating new CGs.
    """
    out = codes.copy()
    cg = np.flatnonzero((out[:-1] == 1) & (out[1:] == 2))
    hit = cg[rng.random(cg.size) >= retention]
    top = rng.random(hit.size) < 0.5
    out[hit[top]] = 3  # C -> T: TG
    out[hit[~top] + 1] = 0  # G -> A: CA
    return out


def _precompensated_gc(gc: float, *, retention: float) -> float:
    # Deamination turns a fraction (1 - r) of CG dinucleotides (~(g/2)^2 of positions) into TG/CA,
    # losing one G/C each; sample a slightly richer sequence so the result lands on ``gc``.
    loss = (1.0 - retention) / 4.0
    if loss <= 0:
        return gc
    return float((1.0 - np.sqrt(1.0 - 4.0 * loss * gc)) / (2.0 * loss))


def sample_background(
    rng: np.random.Generator,
    *,
    length: int,
    gc: float,
    cpg_retention: float,
    homopolymer_extension: tuple[float, float] = (0.12, 0.06),
) -> np.ndarray:
    """Return ``length`` codes with GC fraction ~``gc``, homopolymer runs and CpG depletion.

    Bases are drawn independently, each extended into a run with geometric length (A/T runs longer,
    giving the AA/TT enrichment of real genomes), then CpGs are depleted by ``_deaminate_cpg``.
    """
    if length <= 0:
        return np.zeros(0, dtype=np.uint8)
    g = _precompensated_gc(gc, retention=cpg_retention)
    p_at, p_gc = homopolymer_extension
    mean_at, mean_gc = 1.0 / (1.0 - p_at), 1.0 / (1.0 - p_gc)
    # Probability of drawing a G/C run start so that, after runs, a fraction g of bases are G/C.
    q = g * mean_at / (g * mean_at + (1.0 - g) * mean_gc)
    probs = np.array([(1 - q) / 2, q / 2, q / 2, (1 - q) / 2])
    n_runs = int(length / ((1 - q) * mean_at + q * mean_gc) * 1.1) + 64
    chunks, total = [], 0
    while total < length:
        bases = rng.choice(4, size=n_runs, p=probs).astype(np.uint8)
        extend = np.where((bases == 0) | (bases == 3), p_at, p_gc)
        runs = rng.geometric(1.0 - extend)
        chunks.append(np.repeat(bases, runs))
        total += chunks[-1].size
    seq = np.concatenate(chunks)[:length]
    return _deaminate_cpg(rng, seq, retention=cpg_retention)


def mutate(
    rng: np.random.Generator,
    codes: np.ndarray,
    *,
    rate: float | np.ndarray,
    cpg_factor: float = 4.0,
    transition_fraction: float = 2.0 / 3.0,
) -> np.ndarray:
    """Return a diverged copy of ``codes``: substitutions at ~``rate`` per base (scalar or per base).

    CpG positions mutate ``cpg_factor`` times faster (the rate is renormalised so the mean stays
    ``rate``), and two thirds of substitutions are transitions, as in real repeat copies.
    """
    codes = np.asarray(codes, dtype=np.uint8)
    n = codes.size
    if n == 0:
        return codes.copy()
    cpg = np.zeros(n, dtype=bool)
    cg = (codes[:-1] == 1) & (codes[1:] == 2)
    cpg[:-1] |= cg
    cpg[1:] |= cg
    weight = np.where(cpg, cpg_factor, 1.0)
    per_base = np.clip(np.asarray(rate, dtype=float) * weight / weight.mean(), 0.0, 0.75)
    hit = np.flatnonzero((rng.random(n) < per_base) & (codes < N_CODE))
    old = codes[hit]
    transition = rng.random(hit.size) < transition_fraction
    new = np.where(transition, _TRANSITION[old], _TRANSVERSIONS[old, rng.integers(0, 2, hit.size)])
    out = codes.copy()
    out[hit] = new
    return out


# ----------------------------------------------------------------------------------------------
# Reference inputs and synthetic consensus sequences
# ----------------------------------------------------------------------------------------------

def default_reference_dir() -> Path:
    """Return the repository's ``data/reference`` folder."""
    return Path(__file__).resolve().parents[1] / "data" / "reference"


def read_alu_consensus(reference_dir: str | Path) -> np.ndarray:
    """Return the AluSx consensus (``AluSx_U14574.fa``) as codes."""
    path = Path(reference_dir) / "AluSx_U14574.fa"
    if not path.is_file():
        raise GroverInputError(f"missing {path}: restore data/reference/ from the repository "
                               "or pass reference_dir= pointing at a folder that has it")
    seq = "".join(line.strip() for line in path.read_text().splitlines() if not line.startswith(">"))
    codes = encode(seq)
    if codes.size < 250 or (codes == N_CODE).any():
        raise GroverInputError(f"{path} does not hold a clean ~290 bp Alu consensus")
    return codes


def read_jaspar_counts(path: str | Path) -> np.ndarray:
    """Return a JASPAR count matrix as a float (4, width) array, rows A C G T."""
    path = Path(path)
    if not path.is_file():
        raise GroverInputError(f"missing {path}: restore data/reference/ from the repository "
                               "or pass reference_dir= pointing at a folder that has it")
    rows = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*([ACGT])\s*\[([^\]]*)\]", line)
        if m:
            rows[m.group(1)] = [float(x) for x in m.group(2).split()]
    if set(rows) != set("ACGT") or len({len(v) for v in rows.values()}) != 1:
        raise GroverInputError(f"{path} is not a JASPAR count matrix with rows A, C, G, T")
    return np.array([rows[b] for b in "ACGT"])


def pwm_log_odds(counts: np.ndarray, *, pseudocount: float = 1.0) -> np.ndarray:
    """Return the (4, width) log2-odds matrix against a uniform background."""
    probs = (counts + pseudocount / 4.0) / (counts.sum(axis=0) + pseudocount)
    return np.log2(probs / 0.25)


def score_pwm(windows: np.ndarray, log_odds: np.ndarray) -> np.ndarray:
    """Return the log-odds score of each row of ``windows`` ((n, width) codes); N scores 0."""
    width = log_odds.shape[1]
    padded = np.vstack([log_odds, np.zeros((1, width))])
    return padded[windows.astype(np.intp), np.arange(width)].sum(axis=1)


def relative_pwm_score(scores: np.ndarray, log_odds: np.ndarray) -> np.ndarray:
    """Return (score - min) / (max - min), the usual 0..1 motif score."""
    lo, hi = log_odds.min(axis=0).sum(), log_odds.max(axis=0).sum()
    return (scores - lo) / (hi - lo)


def sample_pwm_sites(
    rng: np.random.Generator, counts: np.ndarray, *, n: int, min_relative_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return (n, width) codes drawn column by column from the matrix, and their relative scores.

    Draws are kept only if they reach ``min_relative_score`` so every planted site is a good match.
    """
    probs = (counts + 0.25) / (counts.sum(axis=0) + 1.0)
    cum = np.cumsum(probs, axis=0)  # (4, width)
    log_odds = pwm_log_odds(counts)
    kept, rel_kept, have = [], [], 0
    while have < n:
        u = rng.random((max(4 * n, 64), counts.shape[1]))
        draws = (u[:, None, :] > cum[None, :3, :]).sum(axis=1).astype(np.uint8)
        rel = relative_pwm_score(score_pwm(draws, log_odds), log_odds)
        ok = rel >= min_relative_score
        kept.append(draws[ok])
        rel_kept.append(rel[ok])
        have += int(ok.sum())
    return np.concatenate(kept)[:n], np.concatenate(rel_kept)[:n]


def make_consensus_sequences(seed: int, config: DemoGenomeConfig) -> dict[str, np.ndarray]:
    """Return the synthetic L1, LTR and satellite-unit consensus sequences (codes), made from the seed."""
    # L1: A-rich sense strand (~40% A) and CpG-poor, like the human L1 ORFs.
    rng = _rng(seed, 1000, 0)
    l1 = rng.choice(4, size=config.l1_consensus_length, p=[0.40, 0.17, 0.21, 0.22]).astype(np.uint8)
    l1 = _deaminate_cpg(rng, l1, retention=0.15)
    # Solo LTR: starts TG, ends CA, carries a TATA box and a polyadenylation signal as real LTRs do.
    rng = _rng(seed, 1000, 1)
    ltr = rng.choice(4, size=config.ltr_consensus_length, p=[0.26, 0.24, 0.24, 0.26]).astype(np.uint8)
    ltr = _deaminate_cpg(rng, ltr, retention=0.4)
    n = ltr.size
    for pos, motif in ((0, "TGT"), (int(n * 0.55), "TATAAA"), (int(n * 0.75), "AATAAA"), (n - 3, "ACA")):
        ltr[pos:pos + len(motif)] = encode(motif)
    # Alpha-satellite-like monomer: AT-rich (~62%) with a CENP-B-box-like 17-mer.
    rng = _rng(seed, 1000, 2)
    sat = rng.choice(4, size=config.satellite_unit_length, p=[0.31, 0.19, 0.19, 0.31]).astype(np.uint8)
    sat = _deaminate_cpg(rng, sat, retention=0.2)
    box = min(120, max(0, sat.size - len(CENPB_BOX)))
    sat[box:box + len(CENPB_BOX)] = encode(CENPB_BOX)[: sat.size - box]
    return {"L1_demo": l1, "LTR_demo": ltr, "SAT_demo": sat}


# ----------------------------------------------------------------------------------------------
# Placement
# ----------------------------------------------------------------------------------------------

def make_domains(
    rng: np.random.Generator, *, length: int, length_range: tuple[int, int], gc_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (starts, ends, gc) of GC domains tiling ``[0, length)``.

    Lengths are log-uniform in ``length_range``; GC values are stratified over ``gc_range`` (one draw
    per equal slice, shuffled) so that every chromosome spans the whole range.
    """
    lo, hi = np.log(length_range[0]), np.log(length_range[1])
    sizes = []
    while sum(sizes) < length:
        sizes.append(int(np.exp(rng.uniform(lo, hi))))
    ends = np.minimum(np.cumsum(sizes), length)
    # A tiny last domain would be a meaningless isochore: merge it into its neighbour.
    if len(ends) > 1 and ends[-1] - ends[-2] < length_range[0] // 2:
        ends = np.append(ends[:-2], length)
    starts = np.concatenate([[0], ends[:-1]])
    n = ends.size
    slices = (rng.permutation(n) + rng.uniform(size=n)) / n
    gc = gc_range[0] + (gc_range[1] - gc_range[0]) * slices
    return starts.astype(np.int64), ends.astype(np.int64), gc


def sample_positions(
    rng: np.random.Generator, *, n: int, starts: np.ndarray, ends: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Return ``n`` positions: a domain with probability ~ length x weight, then uniform inside it."""
    mass = (ends - starts) * np.asarray(weights, dtype=float)
    if n == 0 or mass.sum() <= 0:
        return np.zeros(n, dtype=np.int64)
    d = rng.choice(starts.size, size=n, p=mass / mass.sum())
    return starts[d] + (rng.random(n) * (ends - starts)[d]).astype(np.int64)


def place_intervals(
    rng: np.random.Generator,
    occupied: np.ndarray,
    *,
    lengths: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    weights: np.ndarray,
    pad: int = 0,
    tries: int = 12,
) -> tuple[np.ndarray, np.ndarray]:
    """Place intervals of ``lengths`` on free positions, favouring domains by ``weights``.

    Returns (interval starts, -1 where no free spot was found in ``tries`` draws; the updated
    occupancy mask, a new array with the placed intervals marked). Intervals keep ``pad`` free bases
    from anything already occupied. The loop is over intervals, never over bases.
    """
    occ = occupied.copy()
    lengths = np.asarray(lengths, dtype=np.int64)
    cand = sample_positions(rng, n=lengths.size * tries, starts=starts, ends=ends, weights=weights)
    cand = cand.reshape(lengths.size, tries)
    out = np.full(lengths.size, -1, dtype=np.int64)
    size = occ.size
    for i, length in enumerate(lengths):
        for s in cand[i]:
            s = int(s)
            lo, hi = s - pad, s + int(length) + pad
            if lo < 0 or hi > size or occ[lo:hi].any():
                continue
            occ[s:s + int(length)] = True
            out[i] = s
            break
    return out, occ


def _log_uniform_ints(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi + 1), size=n)).astype(np.int64).clip(lo, hi)


def _count(rate_per_mb: float, length: int) -> int:
    return int(round(rate_per_mb * length / 1e6))


# ----------------------------------------------------------------------------------------------
# One chromosome
# ----------------------------------------------------------------------------------------------

@dataclass
class _Chromosome:
    """Everything built for one chromosome (internal; the writers turn it into files)."""

    name: str
    codes: np.ndarray  # uint8 A0 C1 G2 T3 N4
    lower: np.ndarray  # bool, soft-masked (repeat) positions
    domains: list  # (start, end, gc)
    repeats: list  # (start, end, name, score, strand)
    genes: list  # dicts: start end name strand expressed exons [(s, e)] thick cgi tss
    cpg_islands: list  # (start, end, name)
    enhancers: list  # (start, end)
    ctcf: list  # (start, end, strand, relative score, bound)
    states: np.ndarray | None = None  # uint8 chromatin state per base
    replication: list | None = None  # (start, end, value)


def _write(codes: np.ndarray, start: int, seq: np.ndarray, strand: str) -> None:
    # In-place write of a build buffer, reverse-complemented on the minus strand.
    codes[start:start + seq.size] = seq if strand == "+" else reverse_complement(seq)


def _tx_to_genome(tss: int, strand: str, a: int, b: int) -> tuple[int, int]:
    """Map transcript coordinates [a, b) (0 = TSS, negative = upstream) to a genome interval."""
    return (tss + a, tss + b) if strand == "+" else (tss - b + 1, tss - a + 1)


def _write_tx_motif(codes: np.ndarray, motif: str, *, tss: int, strand: str, offset: int) -> None:
    # Write a motif given in gene orientation at transcript offset ``offset``.
    s, _ = _tx_to_genome(tss, strand, offset, offset + len(motif))
    _write(codes, s, encode(motif), strand)


def _random_inr(rng: np.random.Generator) -> str:
    # Initiator YYANWYY; the A (index 2) sits on the TSS.
    y, w = "CT", "AT"
    return (y[rng.integers(2)] + y[rng.integers(2)] + "A" + "ACGT"[rng.integers(4)]
            + w[rng.integers(2)] + y[rng.integers(2)] + y[rng.integers(2)])


def _exon_layout(rng: np.random.Generator, *, gene_length: int, exon_count: tuple[int, int]) -> list:
    """Return exons as transcript intervals [(a, b), ...] from 0 to ``gene_length``."""
    k = int(np.clip(round(gene_length / 5_000) + rng.integers(1, 4), *exon_count))
    while True:
        first = int(rng.integers(100, 400))
        last = int(rng.integers(300, 1_500))
        inner = rng.integers(80, 250, size=max(k - 2, 0))
        sizes = np.concatenate([[first], inner, [last]]).astype(np.int64)
        intron_total = gene_length - int(sizes.sum())
        if intron_total >= 150 * (k - 1) or k <= 2:
            break
        k -= 1
    if intron_total < 150 * (k - 1):  # very short gene: one intron, shrink the last exon
        sizes[-1] = max(50, gene_length - sizes[0] - 150)
        intron_total = gene_length - int(sizes.sum())
    split = rng.dirichlet(np.full(k - 1, 1.5)) * (intron_total - 150 * (k - 1))
    introns = (150 + np.floor(split)).astype(np.int64)
    introns[-1] += intron_total - int(introns.sum())  # exact total
    exons, pos = [], 0
    for i in range(k):
        exons.append((pos, pos + int(sizes[i])))
        pos += int(sizes[i]) + (int(introns[i]) if i < k - 1 else 0)
    return exons


def _exact_flags(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """Return ``n`` booleans, exactly round(fraction * n) True, in random order.

    Exact counts keep small genomes faithful to the configured fractions (no unlucky draws)."""
    flags = np.zeros(n, dtype=bool)
    flags[: int(round(fraction * n))] = True
    return rng.permutation(flags)


def _plant_genes(rng, cfg, chrom: _Chromosome, occ_place, occ_repeat, *, dstarts, dends, dgc, first_index):
    """Plant genes with promoters; return (new placement mask, new repeat-exclusion mask)."""
    length = chrom.codes.size
    n = _count(cfg.genes_per_mb, length)
    glen = np.exp(rng.normal(np.log(cfg.gene_length_median), 0.8, size=n)).astype(np.int64)
    glen = glen.clip(*cfg.gene_length)
    upstream = 2_000  # promoter room kept free upstream of every TSS
    weights = np.exp(cfg.gene_gc_bias * (dgc - 0.45) / 0.1)
    fstarts, occ_place = place_intervals(rng, occ_place, lengths=glen + upstream, starts=dstarts,
                                         ends=dends, weights=weights, pad=cfg.gene_spacing // 2)
    occ_repeat = occ_repeat.copy()
    placed = [int(i) for i in np.argsort(fstarts, kind="stable") if fstarts[i] >= 0]
    m = len(placed)
    minus = _exact_flags(rng, m, 0.5)
    expressed = _exact_flags(rng, m, cfg.expressed_fraction)
    cgis = _exact_flags(rng, m, cfg.cgi_fraction)
    inrs = _exact_flags(rng, m, cfg.inr_fraction)
    tatas = np.zeros(m, dtype=bool)
    tatas[cgis] = _exact_flags(rng, int(cgis.sum()), cfg.tata_fraction_cgi)
    tatas[~cgis] = _exact_flags(rng, int((~cgis).sum()), cfg.tata_fraction_no_cgi)
    for k, i in enumerate(placed):
        g = int(glen[i])
        strand = "-" if minus[k] else "+"
        if strand == "+":
            start = int(fstarts[i]) + upstream
            tss = start
        else:
            start = int(fstarts[i])
            tss = start + g - 1
        end = start + g
        tx_exons = _exon_layout(rng, gene_length=g, exon_count=cfg.exon_count)
        exons = sorted(_tx_to_genome(tss, strand, a, b) for a, b in tx_exons)
        dom = int(np.searchsorted(dends, tss, side="right"))
        gc = float(dgc[min(dom, dgc.size - 1)])
        for s, e in exons:  # exons are GC-richer than introns
            chrom.codes[s:e] = sample_background(rng, length=e - s, gc=min(gc + cfg.exon_gc_boost, 0.7),
                                                 cpg_retention=cfg.cpg_retention,
                                                 homopolymer_extension=cfg.homopolymer_extension)
            occ_repeat[max(s - 10, 0):e + 10] = True  # keeps splice sites free of repeats
        name = f"DG{first_index + len(chrom.genes) + 1:04d}"
        cgi = None
        if cgis[k]:
            clen = int(rng.integers(cfg.cgi_length[0], cfg.cgi_length[1] + 1))
            up = int(clen * rng.uniform(0.3, 0.7))
            cs, ce = _tx_to_genome(tss, strand, -up, clen - up)
            chrom.codes[cs:ce] = sample_background(rng, length=ce - cs, gc=cfg.cgi_gc, cpg_retention=1.0,
                                                   homopolymer_extension=cfg.homopolymer_extension)
            occ_repeat[cs:ce] = True
            cgi = (cs, ce)
            chrom.cpg_islands.append((cs, ce, f"CGI_{name}"))
        if tatas[k]:
            _write_tx_motif(chrom.codes, "TATAAA", tss=tss, strand=strand, offset=-31)
        if inrs[k]:
            _write_tx_motif(chrom.codes, _random_inr(rng), tss=tss, strand=strand, offset=-2)
        for (_, a), (b, _) in zip(tx_exons[:-1], tx_exons[1:]):  # introns: GT ... AG
            _write_tx_motif(chrom.codes, "GT", tss=tss, strand=strand, offset=a)
            _write_tx_motif(chrom.codes, "AG", tss=tss, strand=strand, offset=b - 2)
        ps, pe = _tx_to_genome(tss, strand, -100, 50)
        occ_repeat[ps:pe] = True
        # CDS: inside the first and last exons, leaving UTRs.
        t5, t3 = tx_exons[0], tx_exons[-1]
        cds_tx = (t5[0] + (t5[1] - t5[0]) // 3, t3[0] + (t3[1] - t3[0]) // 3)
        thick = tuple(sorted(_tx_to_genome(tss, strand, cds_tx[0], cds_tx[1])))
        chrom.genes.append({"start": start, "end": end, "name": name, "strand": strand, "tss": tss,
                            "expressed": bool(expressed[k]),
                            "exons": exons, "thick": thick, "cgi": cgi})
    return occ_place, occ_repeat


def _plant_repeat_family(rng, chrom, occ, *, name, seqs, rates, strands, starts_dom, ends_dom, weights,
                         cpg_factor=TRANSPOSON_CPG_FACTOR, cpg_retention=1.0):
    """Mutate copies (one batch), place them, write them soft-masked; return the updated mask.

    ``cpg_retention`` < 1 lets CpGs left after mutation decay further (methylated transposons).
    """
    if not seqs:
        return occ
    lengths = np.array([s.size for s in seqs], dtype=np.int64)
    flat = np.concatenate(seqs)
    mutated = mutate(rng, flat, rate=np.repeat(rates, lengths), cpg_factor=cpg_factor)
    if cpg_retention < 1.0:
        mutated = _deaminate_cpg(rng, mutated, retention=cpg_retention)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    mism = np.add.reduceat((mutated != flat).astype(np.int64), offsets[:-1])
    starts, occ = place_intervals(rng, occ, lengths=lengths, starts=starts_dom, ends=ends_dom,
                                  weights=weights, pad=1)
    for i in np.flatnonzero(starts >= 0):
        s, e = int(starts[i]), int(starts[i] + lengths[i])
        _write(chrom.codes, s, mutated[offsets[i]:offsets[i + 1]], strands[i])
        chrom.lower[s:e] = True
        label = name if isinstance(name, str) else name[i]
        chrom.repeats.append((s, e, label, int(round(1000 * mism[i] / lengths[i])), strands[i]))
    return occ


def build_chromosome(
    cfg: DemoGenomeConfig, *, index: int, alu: np.ndarray, consensus: dict, ctcf_counts: np.ndarray,
    first_gene_index: int,
) -> _Chromosome:
    """Return one chromosome with every planted feature and its annotations (in memory)."""
    length = int(cfg.chromosome_lengths[index])
    name = f"chr{index + 1}"
    seed = cfg.seed
    rng = _rng(seed, index, 0)
    dstarts, dends, dgc = make_domains(rng, length=length, length_range=cfg.domain_length,
                                       gc_range=cfg.domain_gc)
    rng = _rng(seed, index, 1)
    codes = np.concatenate([
        sample_background(rng, length=int(e - s), gc=float(g), cpg_retention=cfg.cpg_retention,
                          homopolymer_extension=cfg.homopolymer_extension)
        for s, e, g in zip(dstarts, dends, dgc)])
    chrom = _Chromosome(name=name, codes=codes, lower=np.zeros(length, dtype=bool),
                        domains=[(int(s), int(e), float(g)) for s, e, g in zip(dstarts, dends, dgc)],
                        repeats=[], genes=[], cpg_islands=[], enhancers=[], ctcf=[])
    occ = np.zeros(length, dtype=bool)  # anything planted (no repeat may land here)

    # --- N runs, telomeric repeats, centromere with satellite arrays ---
    rng = _rng(seed, index, 2)
    tg = cfg.telomere_gap
    codes[:tg] = N_CODE
    codes[length - tg:] = N_CODE
    occ[:tg] = occ[length - tg:] = True
    for side in ("left", "right"):
        tl = int(rng.integers(cfg.telomeric_repeat_length[0], cfg.telomeric_repeat_length[1] + 1))
        unit = TELOMERE_UNIT if side == "left" else "CCCTAA"  # G-rich strand runs 5'->3' outwards
        plain = np.tile(encode(unit), tl // len(unit) + 1)[:tl]
        arr = mutate(rng, plain, rate=0.02, cpg_factor=1.0)
        s = tg if side == "left" else length - tg - tl
        codes[s:s + tl] = arr
        chrom.lower[s:s + tl] = occ[s:s + tl] = True
        chrom.repeats.append((s, s + tl, f"({unit})n", int(round(1000 * np.mean(arr != plain))), "+"))
    cen = int(length * rng.uniform(*cfg.centromere_position))
    cen_s, cen_e = cen - cfg.centromere_gap // 2, cen - cfg.centromere_gap // 2 + cfg.centromere_gap
    codes[cen_s:cen_e] = N_CODE
    occ[cen_s:cen_e] = True
    sat_unit = consensus["SAT_demo"]
    for side in ("left", "right"):
        sl = int(rng.integers(cfg.satellite_array_length[0], cfg.satellite_array_length[1] + 1))
        s = cen_s - sl if side == "left" else cen_e
        rate = rng.uniform(*cfg.satellite_divergence)
        plain = np.tile(sat_unit, sl // sat_unit.size + 1)[:sl]
        arr = mutate(rng, plain, rate=rate)
        strand = "+" if rng.random() < 0.5 else "-"
        _write(codes, s, arr, strand)
        chrom.lower[s:s + sl] = occ[s:s + sl] = True
        chrom.repeats.append((s, s + sl, "SAT_demo", int(round(1000 * np.mean(arr != plain))), strand))
    gap_len = _log_uniform_ints(rng, cfg.small_gaps_per_chromosome, *cfg.small_gap_length)
    gstarts, occ = place_intervals(rng, occ, lengths=gap_len, starts=dstarts, ends=dends,
                                   weights=np.ones(dgc.size), pad=5_000)
    for s, gl in zip(gstarts, gap_len):
        if s >= 0:
            codes[s:s + gl] = N_CODE

    # --- genes, then orphan CpG islands, enhancers and CTCF sites (all upper case) ---
    rng = _rng(seed, index, 3)
    occ_genes, occ = _plant_genes(rng, cfg, chrom, occ, occ, dstarts=dstarts, dends=dends, dgc=dgc,
                                  first_index=first_gene_index)
    # Repeats may land in introns, so the repeat mask gets only what _plant_genes marked plus
    # the already occupied; occ_genes (whole gene footprints) guides the other features.
    rng = _rng(seed, index, 4)
    gc_rich = np.where(dgc >= cfg.enhancer_min_gc, np.exp((dgc - 0.45) / 0.05), 0.0)
    if gc_rich.sum() == 0:
        gc_rich = np.exp((dgc - 0.45) / 0.05)
    n_orphan = _count(cfg.orphan_cgis_per_mb, length)
    olen = rng.integers(cfg.cgi_length[0], cfg.cgi_length[1] + 1, size=n_orphan)
    ostarts, occ_genes = place_intervals(rng, occ_genes, lengths=olen, starts=dstarts, ends=dends,
                                         weights=gc_rich, pad=3_000)
    for j, (s, ol) in enumerate(zip(ostarts, olen)):
        if s >= 0:
            codes[s:s + ol] = sample_background(rng, length=int(ol), gc=cfg.cgi_gc, cpg_retention=1.0,
                                                homopolymer_extension=cfg.homopolymer_extension)
            occ[s:s + ol] = True
            chrom.cpg_islands.append((int(s), int(s + ol), f"CGI_orphan_{name}_{j + 1}"))
    n_enh = _count(cfg.enhancers_per_mb, length)
    elen = _log_uniform_ints(rng, n_enh, *cfg.enhancer_length)
    # Enhancers may sit in introns but not on exons or promoters: place against occ (not occ_genes).
    estarts, occ = place_intervals(rng, occ, lengths=elen, starts=dstarts, ends=dends, weights=gc_rich,
                                   pad=200)
    for s, el in zip(estarts, elen):
        if s < 0:
            continue
        for _ in range(int(rng.integers(2, 6))):
            motif = encode(ENHANCER_MOTIFS[rng.integers(len(ENHANCER_MOTIFS))])
            at = int(s + rng.integers(0, max(int(el) - motif.size, 1)))
            _write(codes, at, motif, "+" if rng.random() < 0.5 else "-")
        chrom.enhancers.append((int(s), int(s + el)))
    chrom.enhancers.sort()

    rng = _rng(seed, index, 5)
    n_ctcf = _count(cfg.ctcf_per_mb, length)
    sites, rel = sample_pwm_sites(rng, ctcf_counts, n=n_ctcf, min_relative_score=cfg.ctcf_min_relative_score)
    width = ctcf_counts.shape[1]
    cstarts, occ = place_intervals(rng, occ, lengths=np.full(n_ctcf, width), starts=dstarts, ends=dends,
                                   weights=np.ones(dgc.size), pad=20)
    tss = np.array(sorted(g["tss"] for g in chrom.genes if g["expressed"]), dtype=np.int64)
    ok = np.flatnonzero(cstarts >= 0)
    strands = np.where(rng.random(n_ctcf) < 0.5, "+", "-")
    # Binding odds rise with domain GC, with an expressed gene within 20 kb, and with motif score,
    # so "bound" is learnable from sequence context but not trivially.
    dom = np.clip(np.searchsorted(dends, cstarts, side="right"), 0, dgc.size - 1)
    if tss.size:
        j = np.clip(np.searchsorted(tss, cstarts), 1, tss.size) - 1
        near = np.minimum(np.abs(cstarts - tss[j]), np.abs(cstarts - tss[np.minimum(j + 1, tss.size - 1)]))
        near = (near < 20_000).astype(float)
    else:
        near = np.zeros(n_ctcf)
    logit = 1.2 * (dgc[dom] - 0.45) / 0.1 + 1.0 * near + 8.0 * (rel - rel.mean())
    logit -= np.median(logit[ok]) if ok.size else 0.0
    bound = rng.random(n_ctcf) < 1.0 / (1.0 + np.exp(-logit))
    for i in ok:
        s = int(cstarts[i])
        _write(codes, s, sites[i], strands[i])
        chrom.ctcf.append((s, s + width, str(strands[i]), float(rel[i]), int(bound[i])))
    chrom.ctcf.sort()

    # --- repeats: long ones first so they find room, all soft-masked ---
    rng = _rng(seed, index, 6)
    l1 = consensus["L1_demo"]
    n = _count(cfg.l1_per_mb, length)
    full = rng.random(n) < cfg.l1_full_length_fraction
    tl = np.exp(rng.normal(np.log(cfg.l1_truncated_median), 0.7, size=n)).astype(np.int64)
    tl = np.where(full, l1.size, tl.clip(150, l1.size))
    tails = rng.integers(10, 40, size=n)
    seqs = [np.concatenate([l1[l1.size - t:], np.zeros(a, dtype=np.uint8)]) for t, a in zip(tl, tails)]
    poor = np.exp(-cfg.repeat_gc_bias * (dgc - 0.45) / 0.1)
    rich = np.exp(cfg.repeat_gc_bias * (dgc - 0.45) / 0.1)
    strands = ["+" if x else "-" for x in rng.random(n) < 0.5]
    occ = _plant_repeat_family(rng, chrom, occ, name="L1_demo", seqs=seqs,
                               cpg_retention=cfg.transposon_cpg_retention,
                               rates=rng.uniform(*cfg.l1_divergence, size=n), strands=strands,
                               starts_dom=dstarts, ends_dom=dends, weights=poor)
    rng = _rng(seed, index, 7)
    n = _count(cfg.ltr_per_mb, length)
    seqs = [consensus["LTR_demo"]] * n
    strands = ["+" if x else "-" for x in rng.random(n) < 0.5]
    occ = _plant_repeat_family(rng, chrom, occ, name="LTR_demo", seqs=seqs,
                               cpg_retention=cfg.transposon_cpg_retention,
                               rates=rng.uniform(*cfg.ltr_divergence, size=n), strands=strands,
                               starts_dom=dstarts, ends_dom=dends, weights=np.ones(dgc.size))
    rng = _rng(seed, index, 8)
    n = _count(cfg.alu_per_mb, length)
    tails = rng.integers(cfg.alu_tail_length[0], cfg.alu_tail_length[1] + 1, size=n)
    seqs = [np.concatenate([alu, np.zeros(a, dtype=np.uint8)]) for a in tails]
    strands = ["+" if x else "-" for x in rng.random(n) < 0.5]
    occ = _plant_repeat_family(rng, chrom, occ, name="AluSx", seqs=seqs,
                               cpg_retention=cfg.transposon_cpg_retention,
                               rates=rng.uniform(*cfg.alu_divergence, size=n), strands=strands,
                               starts_dom=dstarts, ends_dom=dends, weights=rich)
    rng = _rng(seed, index, 9)
    n = _count(cfg.simple_repeats_per_mb, length)
    units = list(SIMPLE_REPEAT_UNITS)
    p = np.array([SIMPLE_REPEAT_UNITS[u] for u in units])
    picks = rng.choice(len(units), size=n, p=p / p.sum())
    slen = _log_uniform_ints(rng, n, *cfg.simple_repeat_length)
    seqs = [np.tile(encode(units[k]), int(sl) // len(units[k]) + 1)[:sl] for k, sl in zip(picks, slen)]
    occ = _plant_repeat_family(rng, chrom, occ, name=[f"({units[k]})n" for k in picks], seqs=seqs,
                               rates=rng.uniform(*cfg.simple_repeat_divergence, size=n), strands=["+"] * n,
                               starts_dom=dstarts, ends_dom=dends, weights=np.ones(dgc.size), cpg_factor=1.0)
    chrom.repeats.sort()
    chrom.cpg_islands.sort()
    chrom.states = paint_chromatin_states(chrom, cfg=cfg)
    chrom.replication = replication_timing(_rng(seed, index, 10), chrom, cfg=cfg)
    return chrom


# ----------------------------------------------------------------------------------------------
# Chromatin states and replication timing
# ----------------------------------------------------------------------------------------------

def paint_chromatin_states(chrom: _Chromosome, *, cfg: DemoGenomeConfig) -> np.ndarray:
    """Return a uint8 state code per base (``CHROMATIN_STATES`` order), painted from what lies where.

    Painting order, later wins: Quies background; ZNF/Rpts over dense repeat clusters; Het over
    satellites, telomeric repeats and long L1s; Tx over expressed gene bodies; Enh; ReprPC over
    silent-gene promoters and orphan CpG islands; TssFlnk around expressed TSSs (3 kb upstream, up to
    3 kb downstream); TssA over their
    CpG island (or TSS +-1 kb without one).
    """
    n = chrom.codes.size
    st = np.full(n, _S["Quies"], dtype=np.uint8)
    w = cfg.repeat_cluster_window
    cs = np.concatenate([[0], np.cumsum(chrom.lower, dtype=np.int64)])
    if n > w:
        frac = (cs[w:] - cs[:-w]) / w  # fraction masked in [i, i + w)
        dense = np.flatnonzero(frac >= cfg.repeat_cluster_fraction)
        # Mark every base covered by a dense window (difference array over window starts).
        diff = np.zeros(n + 1, dtype=np.int64)
        np.add.at(diff, dense, 1)
        np.add.at(diff, dense + w, -1)
        st[np.cumsum(diff[:-1]) > 0] = _S["ZNF/Rpts"]
    het_names = ("SAT_demo", f"({TELOMERE_UNIT})n", "(CCCTAA)n")
    for s, e, name, _, _ in chrom.repeats:
        if name in het_names or (name == "L1_demo" and e - s >= cfg.het_l1_min_length):
            st[s:e] = _S["Het"]
    for g in chrom.genes:
        if g["expressed"]:
            st[g["start"]:g["end"]] = _S["Tx"]
    for s, e in chrom.enhancers:
        st[s:e] = _S["Enh"]
    for g in chrom.genes:
        if not g["expressed"]:
            st[max(g["tss"] - 2_000, 0):g["tss"] + 2_000] = _S["ReprPC"]
    for s, e, label in chrom.cpg_islands:
        if "orphan" in label:
            st[max(s - 1_000, 0):e + 1_000] = _S["ReprPC"]
    for g in chrom.genes:
        if g["expressed"]:
            # 3 kb upstream; downstream at most a third of the gene, so short genes keep their Tx.
            down = min(3_000, (g["end"] - g["start"]) // 3)
            s, e = _tx_to_genome(g["tss"], g["strand"], -3_000, down)
            st[max(s, 0):e] = _S["TssFlnk"]
    for g in chrom.genes:
        if g["expressed"]:
            s, e = g["cgi"] if g["cgi"] else (g["tss"] - 1_000, g["tss"] + 1_000)
            st[max(s, 0):e] = _S["TssA"]
    return st


def state_intervals(states: np.ndarray, codes: np.ndarray) -> list[tuple[int, int, str]]:
    """Return (start, end, state name) runs of ``states``, skipping N positions."""
    x = states.astype(np.int16)
    x[codes == N_CODE] = -1
    cut = np.flatnonzero(x[1:] != x[:-1]) + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [x.size]])
    return [(int(s), int(e), CHROMATIN_STATES[x[s]]) for s, e in zip(starts, ends) if x[s] >= 0]


def replication_timing(rng: np.random.Generator, chrom: _Chromosome, *, cfg: DemoGenomeConfig) -> list:
    """Return (start, end, value) bins; value ~ log2(early/late): high in GC-rich, gene-rich domains.

    Bins entirely of N are left out. The signal is the domain GC (pulled to late where a bin is
    heterochromatin), plus a bonus for expressed genes, plus Gaussian noise, smoothed over
    neighbouring bins (replication domains are broad).
    """
    n = chrom.codes.size
    b = cfg.replication_bin
    gc = np.concatenate([np.full(e - s, g, dtype=np.float32) for s, e, g in chrom.domains])
    acgt = chrom.codes != N_CODE
    edges = np.arange(0, n, b)
    sums = np.add.reduceat(np.where(acgt, gc, 0.0), edges)
    counts = np.add.reduceat(acgt.astype(np.int64), edges)
    mid = 0.5 * (cfg.domain_gc[0] + cfg.domain_gc[1])
    half = 0.5 * (cfg.domain_gc[1] - cfg.domain_gc[0])
    signal = (sums / np.maximum(counts, 1) - mid) / half * 1.5
    # Heterochromatin (satellites, long L1s) replicates late whatever its isochore.
    het = np.add.reduceat((chrom.states == _S["Het"]) & acgt, edges) / np.maximum(counts, 1)
    signal = (1.0 - het) * signal + het * HET_REPLICATION_TIMING
    tx = np.zeros(n + 1, dtype=np.int64)
    for g in chrom.genes:
        if g["expressed"]:
            tx[g["start"]] += 1
            tx[g["end"]] -= 1
    active = np.add.reduceat((np.cumsum(tx[:-1]) > 0).astype(np.float64), edges) / b
    signal = signal + 0.5 * active + rng.normal(0.0, cfg.replication_noise, size=edges.size)
    smooth = np.convolve(np.pad(signal, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    ends = np.minimum(edges + b, n)
    return [(int(s), int(e), round(float(v), 4)) for s, e, v, c in zip(edges, ends, smooth, counts) if c > 0]


# ----------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------

def fasta_bytes(name: str, codes: np.ndarray, lower: np.ndarray, *, width: int) -> bytes:
    """Return one FASTA record (header + sequence wrapped at ``width``), vectorised."""
    seq = _UPPER_LOWER[codes.astype(np.intp) + 5 * lower.astype(np.intp)]
    full = seq.size // width
    body = np.empty((full, width + 1), dtype=np.uint8)
    body[:, :width] = seq[:full * width].reshape(full, width)
    body[:, width] = ord("\n")
    tail = seq[full * width:]
    out = f">{name}\n".encode() + body.tobytes()
    if tail.size:
        out += tail.tobytes() + b"\n"
    return out


def _write_file(path: Path, data: str | bytes) -> None:
    """Write ``data`` atomically; readable by all (temporary files are created owner-only)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)


def _bed_text(rows, header: str | None = None) -> str:
    lines = [header] if header else []
    lines += ["\t".join(str(x) for x in row) for row in rows]
    return "\n".join(lines) + "\n"


def _dinucleotide_obs_exp(chroms: list[_Chromosome]) -> dict[str, float]:
    counts = np.zeros(25, dtype=np.int64)
    mono = np.zeros(5, dtype=np.int64)
    for c in chroms:
        counts += np.bincount(c.codes[:-1].astype(np.int64) * 5 + c.codes[1:], minlength=25)
        mono += np.bincount(c.codes, minlength=5)
    pairs = counts.reshape(5, 5)[:4, :4]
    freq = mono[:4] / mono[:4].sum()
    exp = np.outer(freq, freq) * pairs.sum()
    return {a + b: round(float(pairs[i, j] / exp[i, j]), 4)
            for i, a in enumerate("ACGT") for j, b in enumerate("ACGT")}


def summarise(chroms: list[_Chromosome]) -> dict:
    """Return the summary counts saved in ``demo_genome.json``."""
    per_chrom, fam = {}, {}
    tot = np.zeros(5, dtype=np.int64)
    masked = 0
    for c in chroms:
        b = np.bincount(c.codes, minlength=5)
        tot += b
        acgt = int(b[:4].sum())
        masked += int(c.lower.sum())
        per_chrom[c.name] = {"length": int(c.codes.size), "acgt": acgt, "n": int(b[4]),
                             "gc_fraction": round(float((b[1] + b[2]) / acgt), 4),
                             "soft_masked": int(c.lower.sum())}
        for s, e, name, _, _ in c.repeats:
            cls, family = _repeat_class(name)
            f = fam.setdefault(name, {"repeat_class": cls, "repeat_family": family, "copies": 0, "bp": 0})
            f["copies"] += 1
            f["bp"] += e - s
    acgt = int(tot[:4].sum())
    genes = [g for c in chroms for g in c.genes]
    ctcf = [s for c in chroms for s in c.ctcf]
    states = np.zeros(len(CHROMATIN_STATES), dtype=np.int64)
    for c in chroms:
        states += np.bincount(c.states[c.codes != N_CODE], minlength=len(CHROMATIN_STATES))
    return {
        "chromosomes": per_chrom,
        "total_length": int(tot.sum()),
        "acgt": acgt,
        "base_counts": {b: int(tot[i]) for i, b in enumerate(ALPHABET)},
        "n": int(tot[4]),
        "gc_fraction": round(float((tot[1] + tot[2]) / acgt), 4),
        "repeat_fraction": round(masked / acgt, 4),
        "dinucleotide_obs_exp": _dinucleotide_obs_exp(chroms),
        "repeat_families": dict(sorted(fam.items())),
        "genes": len(genes),
        "genes_expressed": sum(g["expressed"] for g in genes),
        "genes_with_cpg_island": sum(g["cgi"] is not None for g in genes),
        "cpg_islands": sum(len(c.cpg_islands) for c in chroms),
        "enhancers": sum(len(c.enhancers) for c in chroms),
        "ctcf_sites": {"bound": sum(s[4] for s in ctcf), "unbound": sum(1 - s[4] for s in ctcf)},
        "chromatin_state_bp": {name: int(states[i]) for i, name in enumerate(CHROMATIN_STATES)},
    }


def _repeat_class(name: str) -> tuple[str, str]:
    return REPEAT_FAMILIES.get(name, ("Simple_repeat", "Simple_repeat"))


def validate_config(cfg: DemoGenomeConfig) -> None:
    """Raise ``GroverInputError`` naming the knob to fix when ``cfg`` cannot make a genome."""
    if not cfg.chromosome_lengths:
        raise GroverInputError("DemoGenomeConfig.chromosome_lengths is empty: give at least one length")
    need = 2 * (cfg.telomere_gap + cfg.telomeric_repeat_length[1]) + cfg.centromere_gap \
        + 2 * cfg.satellite_array_length[1] + 4 * cfg.domain_length[0]
    for length in cfg.chromosome_lengths:
        if length < need:
            raise GroverInputError(f"chromosome length {length} is too short for the configured gaps, "
                                   f"satellites and domains (need >= {need}); raise chromosome_lengths "
                                   "or use DemoGenomeConfig.tiny()-like smaller features")
    lo, hi = cfg.domain_gc
    if not 0.2 <= lo <= hi <= 0.7:
        raise GroverInputError(f"domain_gc {cfg.domain_gc} must satisfy 0.2 <= low <= high <= 0.7")
    if cfg.exon_count[0] < 2:
        raise GroverInputError("exon_count must start at 2 or more: every demo gene has an intron")
    if cfg.fasta_line_width < 1:
        raise GroverInputError("fasta_line_width must be positive")
    for knob in ("telomeric_repeat_length", "satellite_array_length", "small_gap_length", "domain_length",
                 "gene_length", "exon_count", "cgi_length", "enhancer_length", "alu_tail_length",
                 "simple_repeat_length", "alu_divergence", "l1_divergence", "ltr_divergence",
                 "satellite_divergence", "simple_repeat_divergence", "centromere_position"):
        a, b = getattr(cfg, knob)
        if a > b or a < 0:
            raise GroverInputError(f"DemoGenomeConfig.{knob}={getattr(cfg, knob)} must be (low, high) "
                                   "with 0 <= low <= high")


def build_demo_genome(
    *, config: DemoGenomeConfig = DemoGenomeConfig(), reference_dir: str | Path | None = None
) -> list[_Chromosome]:
    """Return the built chromosomes (sequence, soft mask and annotations) without writing anything."""
    validate_config(config)
    ref = Path(reference_dir) if reference_dir is not None else default_reference_dir()
    alu = read_alu_consensus(ref)
    ctcf_counts = read_jaspar_counts(ref / "MA0139.1_CTCF.jaspar")
    consensus = make_consensus_sequences(config.seed, config)
    chroms, genes = [], 0
    for i in range(len(config.chromosome_lengths)):
        c = build_chromosome(config, index=i, alu=alu, consensus=consensus, ctcf_counts=ctcf_counts,
                             first_gene_index=genes)
        genes += len(c.genes)
        chroms.append(c)
    return chroms


def write_demo_genome(
    out_dir: str | Path,
    *,
    config: DemoGenomeConfig = DemoGenomeConfig(),
    reference_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Write the demo genome and its annotations into ``out_dir``.

    Returns
    -------
    dict[str, Path]
        ``fasta`` (genome.fa, soft-masked), ``fai`` (genome.fa.fai), ``chromatin_states``,
        ``repeats``, ``replication_timing`` (bedGraph), ``genes`` (BED12), ``tss``, ``ctcf_sites``,
        ``cpg_islands``, ``gc_domains`` and ``config`` (demo_genome.json: config + summary counts).
        Each file is written to a temporary name and renamed, so readers never see half a file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chroms = build_demo_genome(config=config, reference_dir=reference_dir)
    paths = {
        "fasta": out / "genome.fa",
        "fai": out / "genome.fa.fai",
        "chromatin_states": out / "chromatin_states.bed",
        "repeats": out / "repeats.bed",
        "replication_timing": out / "replication_timing.bedGraph",
        "genes": out / "genes.bed",
        "tss": out / "tss.bed",
        "ctcf_sites": out / "ctcf_sites.bed",
        "cpg_islands": out / "cpg_islands.bed",
        "gc_domains": out / "gc_domains.bed",
        "config": out / "demo_genome.json",
    }
    width = config.fasta_line_width
    fai_rows, offset = [], 0
    records = []
    for c in chroms:
        records.append(fasta_bytes(c.name, c.codes, c.lower, width=width))
        # samtools faidx columns: name, length, offset of first base, bases per line, bytes per line.
        fai_rows.append((c.name, c.codes.size, offset + len(c.name) + 2, width, width + 1))
        offset += len(records[-1])
    _write_file(paths["fasta"], b"".join(records))
    _write_file(paths["fai"], _bed_text(fai_rows))

    _write_file(paths["chromatin_states"], _bed_text(
        (c.name, s, e, st) for c in chroms for s, e, st in state_intervals(c.states, c.codes)))
    _write_file(paths["repeats"], _bed_text(
        ((c.name, s, e, name, score, strand, *_repeat_class(name))
         for c in chroms for s, e, name, score, strand in c.repeats), header=REPEATS_HEADER))
    _write_file(paths["replication_timing"], _bed_text(
        (c.name, s, e, f"{v:.4f}") for c in chroms for s, e, v in c.replication))
    gene_rows, tss_rows = [], []
    for c in chroms:
        for g in sorted(c.genes, key=lambda g: g["start"]):
            score = 1000 if g["expressed"] else 0
            sizes = ",".join(str(e - s) for s, e in g["exons"]) + ","
            starts = ",".join(str(s - g["start"]) for s, _ in g["exons"]) + ","
            gene_rows.append((c.name, g["start"], g["end"], g["name"], score, g["strand"], g["thick"][0],
                              g["thick"][1], "0", len(g["exons"]), sizes, starts))
            tss_rows.append((c.name, g["tss"], g["tss"] + 1, g["name"], score, g["strand"]))
    _write_file(paths["genes"], _bed_text(gene_rows))
    _write_file(paths["tss"], _bed_text(tss_rows))
    ctcf_rows, k = [], 0
    for c in chroms:
        for s, e, strand, rel, bound in c.ctcf:
            k += 1
            ctcf_rows.append((c.name, s, e, f"CTCF_{k:05d}", int(round(1000 * rel)), strand, bound))
    _write_file(paths["ctcf_sites"], _bed_text(ctcf_rows))
    _write_file(paths["cpg_islands"], _bed_text(
        (c.name, s, e, label) for c in chroms for s, e, label in c.cpg_islands))
    _write_file(paths["gc_domains"], _bed_text(
        (c.name, s, e, f"{g:.4f}") for c in chroms for s, e, g in c.domains))
    meta = {
        "what": "SYNTHETIC demo genome made by grover_core.demo_genome; not a real genome",
        "config": dataclasses.asdict(config),
        "summary": summarise(chroms),
        "files": {k: p.name for k, p in paths.items()},
    }
    _write_file(paths["config"], json.dumps(meta, indent=2) + "\n")
    return paths
