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
                                    "Give the path of a FASTA file (.fa, .fa.gz)."
