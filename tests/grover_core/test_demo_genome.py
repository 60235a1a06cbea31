"""The synthetic demo genome: deterministic, well-formed, and carrying the biology it claims to plant."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from grover_core.demo_genome import (
    CHROMATIN_STATES,
    DemoGenomeConfig,
    default_reference_dir,
    pwm_log_odds,
    read_jaspar_counts,
    relative_pwm_score,
    score_pwm,
    write_demo_genome,
)
from grover_core.errors import GroverInputError

CFG = DemoGenomeConfig.tiny()
FILE_KEYS = ("fasta", "fai", "chromatin_states", "repeats", "replication_timing", "genes", "tss",
             "ctcf_sites", "cpg_islands", "gc_domains", "config")
_LUT = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    _LUT[ord(_b)] = _LUT[ord(_b.lower())] = _i


def read_fasta(path) -> dict[str, str]:
    out, name, parts = {}, None, []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            if name:
                out[name] = "".join(parts)
            name, parts = line[1:].split()[0], []
        else:
            parts.append(line)
    out[name] = "".join(parts)
    return out


def codes(seq: str) -> np.ndarray:
    return _LUT[np.frombuffer(seq.encode(), dtype=np.uint8)]


def revcomp(c: np.ndarray) -> np.ndarray:
    return np.where(c < 4, 3 - c, 4)[::-1]


def bed(path, names) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, names=names, comment="#")


def gc_of(c: np.ndarray) -> float:
    c = c[c < 4]
    return float(np.isin(c, (1, 2)).mean())


def cpg_obs_exp(c: np.ndarray, mask: np.ndarray) -> float:
    """CpG observed/expected over positions in ``mask`` (pairs with both bases in the mask)."""
    both = mask[:-1] & mask[1:]
    n = mask.sum()
    cg = ((c[:-1] == 1) & (c[1:] == 2) & both).sum()
    return float(cg / ((c[mask] == 1).sum() * (c[mask] == 2).sum() / n))


def mask_of(df: pd.DataFrame, chrom: str, length: int) -> np.ndarray:
    m = np.zeros(length, dtype=bool)
    for s, e in zip(df.loc[df.chrom == chrom, "start"], df.loc[df.chrom == chrom, "end"]):
        m[s:e] = True
    return m


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    paths = write_demo_genome(tmp_path_factory.mktemp("demo"), config=CFG)
    seqs = read_fasta(paths["fasta"])
    return {
        "paths": paths,
        "seqs": seqs,
        "codes": {k: codes(v) for k, v in seqs.items()},
        "lower": {k: np.frombuffer(v.encode(), dtype=np.uint8) >= ord("a") for k, v in seqs.items()},
        "repeats": pd.read_csv(paths["repeats"], sep="\t").rename(columns={"#chrom": "chrom"}),
        "states": bed(paths["chromatin_states"], ["chrom", "start", "end", "state"]),
        "genes": bed(paths["genes"], ["chrom", "start", "end", "name", "score", "strand", "thick_start",
                                      "thick_end", "rgb", "block_count", "block_sizes", "block_starts"]),
        "tss": bed(paths["tss"], ["chrom", "start", "end", "name", "score", "strand"]),
        "ctcf": bed(paths["ctcf_sites"], ["chrom", "start", "end", "name", "score", "strand", "bound"]),
        "cgi": bed(paths["cpg_islands"], ["chrom", "start", "end", "name"]),
        "domains": bed(paths["gc_domains"], ["chrom", "start", "end", "gc"]),
        "rt": bed(paths["replication_timing"], ["chrom", "start", "end", "value"]),
        "meta": json.loads(paths["config"].read_text()),
    }


def background_mask(demo, chrom: str) -> np.ndarray:
    """Quiescent, unmasked, non-N positions away from planted CTCF sites: the plain background."""
    c = demo["codes"][chrom]
    quies = mask_of(demo["states"][demo["states"].state == "Quies"], chrom, c.size)
    return quies & ~demo["lower"][chrom] & (c < 4) & ~mask_of(demo["ctcf"], chrom, c.size)


# --- determinism and files -------------------------------------------------------------------------

def test_same_seed_gives_identical_bytes_and_other_seed_differs(demo, tmp_path):
    again = write_demo_genome(tmp_path / "again", config=CFG)
    for key in FILE_KEYS:
        assert again[key].read_bytes() == demo["paths"][key].read_bytes(), key
    other = write_demo_genome(tmp_path / "other", config=DemoGenomeConfig.tiny(seed=CFG.seed + 1))
    assert other["fasta"].read_bytes() != demo["paths"]["fasta"].read_bytes()
    assert other["repeats"].read_bytes() != demo["paths"]["repeats"].read_bytes()


def test_writes_every_file_and_no_temporaries(demo):
    paths = demo["paths"]
    assert set(FILE_KEYS) <= set(paths)
    folder = paths["fasta"].parent
    assert all(paths[k].is_file() and paths[k].parent == folder for k in FILE_KEYS)
    assert not [p for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_fasta_lengths_match_config_and_fai(demo, tmp_path):
    seqs = demo["seqs"]
    assert list(seqs) == [f"chr{i + 1}" for i in range(len(CFG.chromosome_lengths))]
    assert [len(s) for s in seqs.values()] == list(CFG.chromosome_lengths)
    lines = demo["paths"]["fasta"].read_text().splitlines()
    assert max(len(x) for x in lines if not x.startswith(">")) == CFG.fasta_line_width
    assert set("".join(seqs.values())) <= set("ACGTNacgt")
    fai = bed(demo["paths"]["fai"], ["name", "length", "offset", "linebases", "linewidth"])
    assert fai.name.tolist() == list(seqs) and fai.length.tolist() == list(CFG.chromosome_lengths)
    # pyfaidx builds the same samtools-style index from scratch, and reads bases back at the offsets.
    pyfaidx = pytest.importorskip("pyfaidx")
    copy = tmp_path / "genome.fa"
    shutil.copy(demo["paths"]["fasta"], copy)
    fa = pyfaidx.Fasta(str(copy), sequence_always_upper=False)
    assert (tmp_path / "genome.fa.fai").read_text() == demo["paths"]["fai"].read_text()
    assert str(fa["chr2"][12_345:12_400]) == seqs["chr2"][12_345:12_400]


def test_n_runs_at_telomeres_centromere_and_small_gaps(demo):
    for chrom, c in demo["codes"].items():
        isn = c == 4
        tg = CFG.telomere_gap
        assert isn[:tg].all() and isn[-tg:].all() and not isn[tg] and not isn[-tg - 1]
        edges = np.flatnonzero(np.diff(isn.astype(np.int8)))
        runs = np.diff(np.concatenate([[0], edges + 1, [c.size]]))[int(not isn[0])::2]  # N-run lengths
        assert (runs >= CFG.centromere_gap).sum() >= 1, chrom
        assert len(runs) >= 3 + 1, f"{chrom}: telomeres, centromere and at least one small gap"


# --- repeats ----------------------------------------------------------------------------------------

def test_lower_case_is_exactly_the_repeats(demo):
    rep = demo["repeats"]
    assert list(rep.columns) == ["chrom", "start", "end", "name", "score", "strand", "repeat_class",
                                 "repeat_family"]
    for chrom, low in demo["lower"].items():
        r = rep[rep.chrom == chrom].sort_values("start")
        assert (r.start.values[1:] >= r.end.values[:-1]).all(), "repeats overlap"
        assert np.array_equal(mask_of(r, chrom, low.size), low), chrom


def test_repeat_families_classes_strands_and_fraction(demo):
    rep = demo["repeats"]
    classes = dict(zip(rep.name, rep.repeat_class))
    assert classes["AluSx"] == "SINE/Alu" and classes["L1_demo"] == "LINE/L1"
    assert classes["LTR_demo"] == "LTR/ERV" and classes["SAT_demo"] == "Satellite"
    assert {"(CA)n", "(T)n"} <= set(rep.name) and classes["(CA)n"] == "Simple_repeat"
    for fam in ("AluSx", "L1_demo", "LTR_demo"):
        assert set(rep.loc[rep.name == fam, "strand"]) == {"+", "-"}, fam
    l1 = rep[rep.name == "L1_demo"]
    assert (l1.end - l1.start).median() < 0.5 * CFG.l1_consensus_length, "L1s are mostly 5'-truncated"
    sat = rep[rep.name == "SAT_demo"]
    assert ((sat.end - sat.start) >= CFG.satellite_array_length[0]).all()
    acgt = sum(int((c < 4).sum()) for c in demo["codes"].values())
    assert 0.2 < (rep.end - rep.start).sum() / acgt < 0.5


def test_alu_copies_resemble_the_alusx_consensus_on_their_strand(demo):
    ref = codes("".join(default_reference_dir().joinpath("AluSx_U14574.fa").read_text().splitlines()[1:]))
    alus = demo["repeats"][demo["repeats"].name == "AluSx"]
    assert len(alus) >= 20
    same, flipped = [], []
    for chrom, s, e, strand in zip(alus.chrom, alus.start, alus.end, alus.strand):
        copy = demo["codes"][chrom][s:e]
        oriented = copy if strand == "+" else revcomp(copy)
        wrong = revcomp(copy) if strand == "+" else copy
        same.append((oriented[:ref.size] == ref).mean())
        flipped.append((wrong[:ref.size] == ref).mean())
    assert min(same) > 0.75
    assert 0.8 < np.median(same) < 0.97, "5-15% divergence"
    assert max(flipped) < 0.5, "strand column must say which way the copy runs"


# --- background composition -------------------------------------------------------------------------

def test_cpg_depleted_in_background_and_rich_in_islands(demo):
    oe = [cpg_obs_exp(demo["codes"][c], background_mask(demo, c)) for c in demo["codes"]]
    assert all(0.1 < x < 0.35 for x in oe), oe
    cgi = demo["cgi"]
    assert len(cgi) >= 5
    for chrom, s, e in zip(cgi.chrom, cgi.start, cgi.end):
        c = demo["codes"][chrom][s:e]
        assert gc_of(c) > 0.6
        assert cpg_obs_exp(c, np.ones(c.size, dtype=bool)) > 0.6


def test_tpg_and_cpa_are_enriched_genome_wide(demo):
    dn = demo["meta"]["summary"]["dinucleotide_obs_exp"]
    assert dn["TG"] > 1.1 and dn["CA"] > 1.1 and dn["CG"] < 0.5 and dn["TA"] < 0.9


def test_gc_domains_follow_their_targets_and_span_the_range(demo):
    lo, hi = CFG.domain_gc
    all_targets = demo["domains"].gc
    assert all_targets.min() < lo + 0.05 and all_targets.max() > hi - 0.05
    assert ((all_targets >= lo) & (all_targets <= hi)).all()
    # The plain background of each domain (enough of it to measure) has the domain's GC.
    measured, targets = [], []
    for chrom, s, e, target in demo["domains"].itertuples(index=False):
        m = background_mask(demo, chrom)[s:e]
        if m.sum() < 5_000:
            continue
        measured.append(gc_of(demo["codes"][chrom][s:e][m]))
        targets.append(target)
    measured, targets = np.array(measured), np.array(targets)
    assert len(measured) >= 4
    assert np.abs(measured - targets).max() < 0.03
    assert measured.max() - measured.min() > 0.08


# --- genes and promoters -----------------------------------------------------------------------------

def test_genes_are_bed12_with_gt_ag_introns_and_matching_tss(demo):
    genes, tss = demo["genes"], demo["tss"]
    assert len(genes) >= 5 and set(genes.strand) == {"+", "-"}
    assert tss.name.tolist() == genes.name.tolist()
    comp = str.maketrans("ACGTacgt", "TGCAtgca")
    n_introns = 0
    for g, t in zip(genes.itertuples(), tss.itertuples()):
        sizes = [int(x) for x in g.block_sizes.rstrip(",").split(",")]
        starts = [int(x) for x in g.block_starts.rstrip(",").split(",")]
        assert len(sizes) == g.block_count >= 2 and starts[0] == 0
        assert starts[-1] + sizes[-1] == g.end - g.start
        assert g.start <= g.thick_start < g.thick_end <= g.end
        assert t.start == (g.start if g.strand == "+" else g.end - 1) and t.end == t.start + 1
        seq = demo["seqs"][g.chrom]
        for (a, la), (b, _) in zip(zip(starts, sizes), zip(starts[1:], sizes[1:])):
            assert b > a + la, "exons overlap"
            intron = seq[g.start + a + la:g.start + b].upper()
            if g.strand == "-":
                intron = intron.translate(comp)[::-1]
            assert intron[:2] == "GT" and intron[-2:] == "AG"
            n_introns += 1
    assert n_introns >= len(genes)


def test_promoters_carry_cpg_islands_initiators_and_tata_boxes(demo):
    genes, cgi = demo["genes"], demo["cgi"]
    in_cgi, inr_a, tata = 0, 0, 0
    for g in genes.itertuples():
        tss = g.start if g.strand == "+" else g.end - 1
        c = demo["codes"][g.chrom]
        # gene-oriented window from -40 to +9 around the TSS (TSS at index 40)
        win = c[tss - 40:tss + 10] if g.strand == "+" else revcomp(c[tss - 9:tss + 41])
        inr_a += win[40] == 0 and win[38] in (1, 3) and win[39] in (1, 3)
        tata += "".join("ACGT"[x] for x in win[9:15]) == "TATAAA"
        here = cgi[(cgi.chrom == g.chrom) & (cgi.start <= tss) & (cgi.end > tss)]
        in_cgi += len(here) > 0
    n = len(genes)
    assert in_cgi >= 0.5 * n, "most TSSs sit in a CpG island"
    assert inr_a >= 0.6 * n, "initiator YYA with its A on the TSS"
    assert tata >= 1


# --- chromatin states, replication timing -----------------------------------------------------------

def test_chromatin_states_tile_the_non_n_genome(demo):
    st = demo["states"]
    assert set(st.state) == set(CHROMATIN_STATES)
    for chrom, c in demo["codes"].items():
        s = st[st.chrom == chrom]
        assert (s.start.values[1:] >= s.end.values[:-1]).all(), "overlapping states"
        assert (s.end > s.start).all()
        assert np.array_equal(mask_of(s, chrom, c.size), c < 4), "states must cover exactly the non-N bases"


def test_tssa_intervals_overlap_tsss_and_states_fit_what_lies_there(demo):
    st, tss, rep = demo["states"], demo["tss"], demo["repeats"]
    tssa = st[st.state == "TssA"]
    assert len(tssa) >= 3
    for chrom, s, e in zip(tssa.chrom, tssa.start, tssa.end):
        assert ((tss.chrom == chrom) & (tss.start >= s) & (tss.start < e)).any()
    for chrom, s, e in zip(rep.chrom, rep.start, rep.end):
        if rep.loc[(rep.chrom == chrom) & (rep.start == s), "name"].iloc[0] == "SAT_demo":
            here = st[(st.chrom == chrom) & (st.start < e) & (st.end > s)]
            assert set(here.state) == {"Het"}
    expressed = demo["genes"][demo["genes"].score == 1000]
    for chrom, s, e in zip(expressed.chrom, expressed.start, expressed.end):
        here = st[(st.chrom == chrom) & (st.start < e) & (st.end > s)]
        assert "Tx" in set(here.state) and not {"Quies", "ReprPC"} & set(here.state)


def test_replication_timing_rises_with_local_gc(demo):
    rt = demo["rt"]
    assert (rt.end - rt.start).max() == CFG.replication_bin
    gc = [gc_of(demo["codes"][c][s:e]) for c, s, e in zip(rt.chrom, rt.start, rt.end)]
    assert np.corrcoef(gc, rt.value)[0, 1] > 0.5
    assert rt.value.min() < 0 < rt.value.max()


# --- CTCF ---------------------------------------------------------------------------------------------

def test_ctcf_sites_match_the_jaspar_matrix_on_their_strand(demo):
    counts = read_jaspar_counts(default_reference_dir() / "MA0139.1_CTCF.jaspar")
    lod = pwm_log_odds(counts)
    ctcf = demo["ctcf"]
    assert len(ctcf) >= 50 and set(ctcf.strand) == {"+", "-"}
    assert (ctcf.end - ctcf.start == counts.shape[1]).all()
    own, other = [], []
    for chrom, s, e, strand in zip(ctcf.chrom, ctcf.start, ctcf.end, ctcf.strand):
        w = demo["codes"][chrom][s:e]
        fwd, rev = (w, revcomp(w)) if strand == "+" else (revcomp(w), w)
        own.append(fwd)
        other.append(rev)
    rel_own = relative_pwm_score(score_pwm(np.array(own), lod), lod)
    rel_other = relative_pwm_score(score_pwm(np.array(other), lod), lod)
    assert rel_own.min() >= CFG.ctcf_min_relative_score - 1e-9
    assert np.median(rel_other) < np.median(rel_own) - 0.2
    np.testing.assert_allclose(ctcf.score, np.round(1000 * rel_own), atol=1)
    # Random background windows rarely look like CTCF.
    c = demo["codes"]["chr1"]
    starts = np.random.default_rng(0).integers(10_000, c.size - 10_000, 500)
    rand = np.array([c[s:s + counts.shape[1]] for s in starts])
    assert np.median(relative_pwm_score(score_pwm(rand, lod), lod)) < 0.6


def test_ctcf_bound_and_unbound_both_present(demo):
    bound = demo["ctcf"].bound
    assert set(bound) == {0, 1}
    assert 0.25 < bound.mean() < 0.75


# --- json summary and errors --------------------------------------------------------------------------

def test_json_holds_config_and_counts_that_match_the_files(demo):
    meta = demo["meta"]
    assert meta["config"] == json.loads(json.dumps(dataclasses.asdict(CFG)))
    assert DemoGenomeConfig(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in meta["config"].items()}) == CFG
    summ = meta["summary"]
    assert summ["genes"] == len(demo["genes"])
    assert summ["ctcf_sites"] == {"bound": int(demo["ctcf"].bound.sum()),
                                  "unbound": int((demo["ctcf"].bound == 0).sum())}
    assert summ["repeat_families"]["AluSx"]["copies"] == int((demo["repeats"].name == "AluSx").sum())
    for chrom, c in demo["codes"].items():
        info = summ["chromosomes"][chrom]
        assert info["n"] == int((c == 4).sum()) and info["acgt"] + info["n"] == c.size
        assert info["gc_fraction"] == pytest.approx(gc_of(c), abs=1e-4)


def test_bad_inputs_raise_messages_that_name_the_fix(tmp_path):
    with pytest.raises(GroverInputError, match="chromosome_lengths"):
        write_demo_genome(tmp_path / "x", config=dataclasses.replace(CFG, chromosome_lengths=(20_000,)))
    with pytest.raises(GroverInputError, match="reference"):
        write_demo_genome(tmp_path / "y", config=CFG, reference_dir=tmp_path / "nowhere")
    assert not (tmp_path / "x" / "genome.fa").exists()
