import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grover_lens.cli import main


@pytest.mark.parametrize("content, fragment", [
    (None, "genome file not found"),
    ("this is not a genome\n", "not a FASTA file"),
    ("", "empty or not a FASTA"),
    (">chr1\nNNNN\n>chr2\n\n", "no A/C/G/T"),
], ids=["missing", "not-fasta", "empty-file", "empty-genome"])
@pytest.mark.parametrize("command", [["build", "{fasta}", "--out", "{out}", "--tiny", "--quiet"],
                                     ["vocab", "learn", "{fasta}", "--cycles", "5", "--out", "{out}", "--quiet"]],
                         ids=["build", "vocab-learn"])
def test_bad_genome_ends_with_one_clear_line(tmp_path, capsys, content, fragment, command):
    fasta = tmp_path / "genome.fa"
    if content is not None:
        fasta.write_text(content)
    argv = [a.format(fasta=fasta, out=tmp_path / "out") for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grover: error:") and fragment in err[0]
    assert "Traceback" not in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_vocab_learn_exports_every_cycle_count(tmp_path, capsys):
    fasta = tmp_path / "g.fa.gz"
    with gzip.open(fasta, "wt") as handle:
        handle.write(">c1\n" + "ACGTTGCAAACCGGTT" * 200 + "\n>c2\n" + "acgtnnnTTGACA" * 100 + "\n")
    assert main(["vocab", "learn", str(fasta), "--cycles", "4", "12", "--out", str(tmp_path / "v"), "--quiet"]) == 0
    from grover_core.tokenizer import load_tokenizer

    small, large = load_tokenizer(tmp_path / "v" / "bpe_4"), load_tokenizer(tmp_path / "v" / "bpe_12")
    assert len(small) == 5 + 4 + 4 and len(large) == 5 + 4 + 12
    assert set(small.get_vocab()) <= set(large.get_vocab())


def test_console_script_is_installed_and_reports_errors(tmp_path):
    grover = shutil.which("grover", path=str(Path(sys.executable).parent))
    assert grover, "the grover console script is not installed in this environment"
    result = subprocess.run([grover, "build", str(tmp_path / "missing.fa"), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"grover: error: genome file not found: {tmp_path / 'missing.fa'}. " \
                                    "Give the path of a FASTA (.fa, .fa.gz) or 2bit genome file."


def test_vocabulary_workflow_learn_tokenize_kmer_report(tmp_path, capsys):
    """learn (with the tokenized genome) -> report; k-mer folder -> tokenize -> report."""
    import numpy as np

    from grover_core.tokenized_genome import TokenizedGenome

    rng = np.random.default_rng(0)
    body = "".join(rng.choice(list("ACGT"), size=3000)) + "NNNN" + "acgt" * 50
    fasta = tmp_path / "g.fa"
    fasta.write_text(f">chrA\n{body}\n>chrB\n{body[::-1]}\n")
    out = tmp_path / "v"
    assert main(["vocab", "learn", str(fasta), "--cycles", "10", "30", "--out", str(out), "--tokenized",
                 "--quiet"]) == 0
    learned = TokenizedGenome.open(out / "bpe_30" / "tokenized")
    assert learned.chromosomes == ["chrA", "chrB"] and not (out / "bpe_10" / "tokenized").exists()
    # `grover tokenize` with the same folder gives the learner's own segmentation.
    assert main(["tokenize", str(fasta), str(out / "bpe_30"), "--out", str(tmp_path / "t30"), "--quiet"]) == 0
    again = TokenizedGenome.open(tmp_path / "t30")
    for name in learned.chromosomes:
        assert np.array_equal(learned.ids(name), again.ids(name))
        assert np.array_equal(learned.starts(name), again.starts(name))
    assert main(["vocab", "kmer", "--k", "3", "--out", str(out)]) == 0
    assert main(["tokenize", str(fasta), str(out / "kmer_3"), "--out", str(tmp_path / "t3"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["vocab", "report", str(out / "kmer_3"), str(tmp_path / "t3"), "--out", str(tmp_path / "r")]) == 0
    report = capsys.readouterr().out
    assert "nucleotides per token" in report
    assert (tmp_path / "r" / "vocabulary_tokens.parquet").is_file()
    assert (tmp_path / "r" / "vocabulary_summary.json").is_file()


def test_report_on_missing_folders_is_one_line(tmp_path, capsys):
    assert main(["vocab", "report", str(tmp_path / "nope"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "folder not found" in err[0]


def test_eval_reports_model_and_baseline_on_the_held_out_chromosome(tiny_run, tmp_path, capsys):
    import json

    out = tmp_path / "eval.json"
    assert main(["eval", str(tiny_run / "model"), "--tokenized", str(tiny_run / "tokenized"), "--windows", "16",
                 "--mask-fraction", "0.15", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["chromosomes"] == ["chr2"] and printed["n_masked_tokens"] > 0
    for key in ("masked_top1_accuracy", "frequency_baseline_top1_accuracy", "perplexity_per_nucleotide",
                "frequency_baseline_perplexity_per_nucleotide"):
        assert key in printed
