"""Fixed k-mer vocabularies: id layout, our vectorised encoder, and the Hugging Face tokenizer agreeing exactly."""
import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from grover_core.errors import GroverInputError
from grover_core.genome import encode_nucleotides
from grover_core.kmer import (build_kmer_tokenizer, encode_kmers, kmer_starts, kmer_text, kmer_tokens,
                              write_kmer_tokenizer)
from grover_core.tokenizer import SPECIAL_TOKENS


@pytest.mark.parametrize("overlapping", [False, True], ids=["cut", "overlapping"])
@pytest.mark.parametrize("k", range(1, 7))
def test_hf_tokenizer_matches_encode_kmers_on_every_length(k, overlapping):
    tokenizer = build_kmer_tokenizer(k, overlapping=overlapping)
    rng = np.random.default_rng(k)
    for n in range(1, 51):
        sequence = "".join(rng.choice(list("ACGT"), size=n))
        ids = encode_kmers(encode_nucleotides(sequence), k, overlapping=overlapping)
        text = kmer_text(sequence, k, overlapping=overlapping)
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids.tolist()
        if not overlapping:  # the cut tokenizer reads raw sequence too
            assert tokenizer(sequence, add_special_tokens=False)["input_ids"] == ids.tolist()
        expected_count = (n - k + 1 if n >= k else 1) if overlapping else -(-n // k)
        assert ids.size == expected_count
        # Each id names the letters it covers.
        tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
        starts = kmer_starts(n, k, overlapping=overlapping).tolist()
        assert [sequence[s:s + len(t)] for s, t in zip(starts, tokens)] == tokens


def test_id_layout_specials_then_kmers_then_shorter():
    tokenizer = build_kmer_tokenizer(3)
    vocab = tokenizer.get_vocab()
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(5)] == list(SPECIAL_TOKENS)
    assert vocab["AAA"] == 5 and vocab["AAC"] == 6 and vocab["TTT"] == 5 + 63
    assert vocab["A"] == 5 + 64 and vocab["T"] == 5 + 64 + 3
    assert vocab["AA"] == 5 + 64 + 4 and vocab["TT"] == 5 + 64 + 4 + 15
    assert len(tokenizer) == 5 + 64 + 4 + 16
    assert len(build_kmer_tokenizer(1)) == 5 + 4
    assert kmer_tokens(2)[:5] == ["AA", "AC", "AG", "AT", "CA"]


def test_cut_rule_remainder_becomes_one_shorter_token():
    ids = encode_kmers(encode_nucleotides("ACGTACG"), 3)
    tokenizer = build_kmer_tokenizer(3)
    assert tokenizer.convert_ids_to_tokens(ids.tolist()) == ["ACG", "TAC", "G"]
    overlapping = encode_kmers(encode_nucleotides("ACGTA"), 3, overlapping=True)
    tokens = build_kmer_tokenizer(3, overlapping=True).convert_ids_to_tokens(overlapping.tolist())
    assert tokens == ["ACG", "CGT", "GTA"]
    assert encode_kmers(np.zeros(0, dtype=np.uint8), 3).size == 0


def test_boundaries_and_lower_case():
    tokenizer = build_kmer_tokenizer(2)
    ids = tokenizer("acgTNa")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "AC", "GT", "[UNK]", "A", "[SEP]"]
    assert kmer_text("ACGTNRAC", 3, overlapping=True) == "ACG CGT N R AC"
    overlapping = build_kmer_tokenizer(3, overlapping=True)
    text_ids = overlapping(kmer_text("acgtNac", 3, overlapping=True), add_special_tokens=False)["input_ids"]
    assert overlapping.convert_ids_to_tokens(text_ids) == ["ACG", "CGT", "[UNK]", "AC"]
    # Documented: the overlapping tokenizer needs kmer_text input; raw sequence is one unknown word.
    assert overlapping("ACGTACGT", add_special_tokens=False)["input_ids"] == [overlapping.unk_token_id]


@pytest.mark.parametrize("overlapping", [False, True], ids=["cut", "overlapping"])
def test_saved_folder_loads_with_auto_tokenizer(tmp_path, overlapping):
    out = write_kmer_tokenizer(tmp_path / "kmer4", 4, overlapping=overlapping)
    info = json.loads((out / "grover_vocabulary.json").read_text())
    assert (info["kind"], info["k"], info["overlapping"]) == ("kmer", 4, overlapping)
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    sequence = "ACGTTGCAAC"
    expected = encode_kmers(encode_nucleotides(sequence), 4, overlapping=overlapping).tolist()
    text = kmer_text(sequence, 4, overlapping=overlapping)
    assert tokenizer(text)["input_ids"] == [2] + expected + [3]
    assert tokenizer.model_max_length == 512


def test_long_runs_encode_in_one_vectorised_pass():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, 200_003).astype(np.uint8)
    cut = encode_kmers(codes, 6)
    assert cut.size == 200_003 // 6 + 1
    values = (codes[:6].astype(int) * 4 ** np.arange(5, -1, -1)).sum()
    assert cut[0] == 5 + values
    overlapping = encode_kmers(codes, 6, overlapping=True)
    assert overlapping.size == 200_003 - 5 and np.array_equal(overlapping[::6][:cut.size - 1], cut[:-1])


def test_bad_k_and_bad_codes_are_refused():
    for k in (0, 9, 2.5):
        with pytest.raises(GroverInputError, match="k-mer length must be a whole number from 1 to 8"):
            build_kmer_tokenizer(k)
    with pytest.raises(ValueError, match="one A/C/G/T run"):
        encode_kmers(encode_nucleotides("ACNGT"), 2)
