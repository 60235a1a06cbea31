import numpy as np
import pytest
from transformers import AutoTokenizer

from grover_core.bpe import BPEConfig, encode_codes, learn_bpe
from grover_core.errors import GroverInputError
from grover_core.genome import Segment, encode_nucleotides
from grover_core.tokenizer import (SPECIAL_TOKENS, build_bpe_tokenizer, load_tokenizer, save_tokenizer,
                                   special_token_mask, token_strings)


@pytest.fixture(scope="module")
def vocabulary():
    rng = np.random.default_rng(3)
    genome = "".join(rng.choice(list("ACGT"), size=40_000, p=[0.3, 0.2, 0.2, 0.3])) + "CA" * 200 + "A" * 50
    learned, _ = learn_bpe([Segment("c", 0, encode_nucleotides(genome))], config=BPEConfig(cycles=120))
    return learned


@pytest.fixture(scope="module")
def saved(vocabulary, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(build_bpe_tokenizer(vocabulary), out, extra={"cycles": vocabulary.cycles})
    return out


def test_folder_loads_with_auto_tokenizer_and_has_grover_layout(saved, vocabulary):
    tokenizer = AutoTokenizer.from_pretrained(str(saved), local_files_only=True)
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(5)] == list(SPECIAL_TOKENS)
    assert len(tokenizer) == len(SPECIAL_TOKENS) + len(vocabulary.tokens)
    assert tokenizer.model_max_length == 512
    assert (saved / "grover_vocabulary.json").is_file()


def test_hf_tokenizer_segments_exactly_as_our_encoder(saved, vocabulary):
    tokenizer = load_tokenizer(saved)
    table = vocabulary.merge_table()
    rng = np.random.default_rng(11)
    for _ in range(150):
        n = int(rng.integers(1, 600))
        sequence = "".join(rng.choice(list("ACGT"), size=n, p=[0.3, 0.2, 0.2, 0.3]))
        expected = (encode_codes(encode_nucleotides(sequence), table) + len(SPECIAL_TOKENS)).tolist()
        assert tokenizer(sequence, add_special_tokens=False)["input_ids"] == expected


def test_lower_case_is_upper_case_and_n_is_unknown(saved):
    tokenizer = load_tokenizer(saved)
    assert tokenizer("acgtacgt")["input_ids"] == tokenizer("ACGTACGT")["input_ids"]
    ids = tokenizer("ACGNACG")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id in ids


def test_special_mask_and_strings(saved):
    tokenizer = load_tokenizer(saved)
    mask = special_token_mask(tokenizer)
    assert mask[:5].all() and not mask[5:].any()
    assert token_strings(tokenizer)[5:9] == ["A", "C", "G", "T"]


def test_missing_tokenizer_folder_names_the_fix(tmp_path):
    with pytest.raises(GroverInputError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
