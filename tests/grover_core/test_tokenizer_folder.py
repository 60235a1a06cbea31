"""load_any_tokenizer on our BPE and k-mer folders and on a GROVER-shaped folder (the published quirks)."""
import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from grover_core.bpe import BPEVocabulary, encode_codes
from grover_core.errors import GroverInputError
from grover_core.genome import encode_nucleotides
from grover_core.kmer import kmer_text, write_kmer_tokenizer
from grover_core.tokenizer import SPECIAL_TOKENS, build_bpe_tokenizer, save_tokenizer
from grover_core.tokenizer_folder import clean_bpe_json, load_any_tokenizer

GROVER_SPECIALS = ("[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]")


def synthetic_merges(count=600, seed=0, max_length=16):
    """A made-up merge list shaped like a learned one: every piece exists before it is used, every
    merge makes a new token, short tokens are merged more often than long ones."""
    rng = np.random.default_rng(seed)
    tokens, merges = list("ACGT"), []
    while len(merges) < count:
        weights = np.array([1.0 / len(t) ** 2 for t in tokens])
        left, right = (tokens[i] for i in rng.choice(len(tokens), size=2, p=weights / weights.sum()))
        if len(left + right) <= max_length and left + right not in tokens:
            merges.append((left, right))
            tokens.append(left + right)
    return merges


def write_grover_shaped_folder(folder, merges, *, specials=GROVER_SPECIALS,
                               tokenizer_class="PreTrainedTokenizerFast"):
    """A tokenizer folder in the published GROVER layout (see GROVER.md, "Quirks"): ids 0-4 special
    tokens, then A C G T and one token per merge, then an empty-string token (id 609 for 600 merges);
    merges as legacy "left right" strings, starting with the identity merges "A ", "C ", "G ", "T "."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(specials)}
    for token in list("ACGT") + [left + right for left, right in merges]:
        vocab[token] = len(vocab)
    vocab[""] = len(vocab)
    data = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for t in specials],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", vocab["[SEP]"]],
                           "cls": ["[CLS]", vocab["[CLS]"]]},
        "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": "[UNK]", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "vocab": vocab,
                  "merges": [f"{n} " for n in "ACGT"] + [f"{left} {right}" for left, right in merges]},
    }
    (folder / "tokenizer.json").write_text(json.dumps(data))
    roles = dict(zip(["pad_token", "unk_token", "cls_token", "sep_token", "mask_token"],
                     ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    (folder / "special_tokens_map.json").write_text(json.dumps(roles))
    if tokenizer_class:
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": tokenizer_class, "model_max_length": 512, "do_lower_case": False, **roles}))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": len(vocab) - 1,
                                                    "architectures": ["BertForMaskedLM"]}))
    return folder


def random_sequences(seed, count=120, longest=400):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        bias = rng.dirichlet(np.ones(4))
        yield "".join(rng.choice(list("ACGT"), size=int(rng.integers(1, longest)), p=bias))


@pytest.fixture(scope="module")
def merges():
    return synthetic_merges()


@pytest.fixture(scope="module")
def grover_folder(merges, tmp_path_factory):
    return write_grover_shaped_folder(tmp_path_factory.mktemp("grover") / "GROVER", merges)


def test_fixture_has_the_published_quirks(grover_folder):
    data = json.loads((grover_folder / "tokenizer.json").read_text())
    vocab, raw_merges = data["model"]["vocab"], data["model"]["merges"]
    assert len(vocab) == 610 and vocab[""] == 609
    assert [t for t, i in sorted(vocab.items(), key=lambda x: x[1])][:5] == list(GROVER_SPECIALS)
    assert raw_merges[:4] == ["A ", "C ", "G ", "T "] and len(raw_merges) == 604


def test_auto_tokenizer_loads_the_grover_shaped_folder(grover_folder):
    tokenizer = AutoTokenizer.from_pretrained(str(grover_folder), local_files_only=True)
    ids = tokenizer("ACGTTTAAAC")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id == 2 and ids[-1] == tokenizer.sep_token_id == 3
    assert tokenizer.unk_token_id not in ids and len(ids) > 2


def test_our_merge_table_matches_the_hf_tokenizer_on_grover_layout(grover_folder, merges):
    folder = load_any_tokenizer(grover_folder)
    assert folder.kind == "bpe" and not folder.ours
    assert folder.merges == merges  # identity merges left out
    assert folder.vocab_size == 609  # the model's vocab_size: the empty token 609 is never emitted
    assert any("identity merges" in note for note in folder.notes)
    assert any("empty-string token at id(s) [609]" in note for note in folder.notes)
    # Every merge makes a new token here, so the BPEVocabulary view gives the same table.
    vocabulary = folder.bpe_vocabulary()
    assert np.array_equal(vocabulary.merge_table(), folder.merge_table())
    to_id = folder.internal_to_tokenizer_ids()
    hf = folder.tokenizer
    for sequence in random_sequences(1):
        expected = hf(sequence, add_special_tokens=False)["input_ids"]
        ids, starts = folder.segment_run(encode_nucleotides(sequence))
        assert ids.tolist() == expected
        assert to_id[encode_codes(encode_nucleotides(sequence), vocabulary.merge_table())].tolist() == expected
        assert 609 not in expected
        pieces = hf.convert_ids_to_tokens(expected)
        assert starts.tolist() == np.cumsum([0] + [len(p) for p in pieces[:-1]]).tolist()


def test_bert_config_without_tokenizer_class_is_repaired(merges, tmp_path):
    # transformers 5 builds a WordPiece BertTokenizer from config.json's model_type: DNA becomes [UNK].
    folder = write_grover_shaped_folder(tmp_path / "g", merges, tokenizer_class=None)
    auto = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert auto("ACGTACGT", add_special_tokens=False)["input_ids"] == [auto.unk_token_id]
    loaded = load_any_tokenizer(folder)
    assert any("AutoTokenizer cannot load this folder" in note for note in loaded.notes)
    sequence = "ACGTTTTAAAGGCATTA"
    ids, _ = loaded.segment_run(encode_nucleotides(sequence))
    assert loaded.tokenizer(sequence)["input_ids"] == [2] + ids.tolist() + [3]
    assert loaded.tokenizer.pad_token_id == 1 and loaded.tokenizer.mask_token_id == 4


@pytest.mark.parametrize("specials", [GROVER_SPECIALS, SPECIAL_TOKENS], ids=["unk-first", "pad-first"])
def test_special_tokens_are_found_by_name(merges, tmp_path, specials):
    folder = load_any_tokenizer(write_grover_shaped_folder(tmp_path / "g", merges[:50], specials=specials))
    tokenizer = folder.tokenizer
    assert [tokenizer.pad_token_id, tokenizer.unk_token_id] == [specials.index("[PAD]"), specials.index("[UNK]")]
    assert tokenizer("ACNGT")["input_ids"].count(tokenizer.unk_token_id) == 1


def test_cleaned_json_without_identity_merges_encodes_the_same(grover_folder):
    from tokenizers import Tokenizer

    data = json.loads((grover_folder / "tokenizer.json").read_text())
    cleaned, notes = clean_bpe_json(data)
    assert len(cleaned["model"]["merges"]) == 600 and "4 identity merges" in notes[0]
    original, repaired = Tokenizer.from_str(json.dumps(data)), Tokenizer.from_str(json.dumps(cleaned))
    for sequence in random_sequences(2, count=30):
        assert original.encode(sequence).ids == repaired.encode(sequence).ids


def test_our_bpe_folder_keeps_our_ids(merges, tmp_path):
    vocabulary = BPEVocabulary(merges[:200], list(range(200, 0, -1)))
    out = save_tokenizer(build_bpe_tokenizer(vocabulary), tmp_path / "bpe", extra={
        "kind": "bpe", "cycles": 200, "merges": [list(m) for m in vocabulary.merges],
        "merge_counts": vocabulary.merge_counts})
    folder = load_any_tokenizer(out)
    assert folder.ours and folder.kind == "bpe" and folder.notes == ()
    assert folder.vocab_size == len(folder.tokenizer) == 5 + 4 + 200
    assert folder.internal_to_tokenizer_ids().tolist() == list(range(5, 209))
    assert folder.bpe_vocabulary().merge_counts == vocabulary.merge_counts
    for sequence in random_sequences(3, count=40):
        codes = encode_nucleotides(sequence)
        ids, _ = folder.segment_run(codes)
        assert ids.tolist() == (encode_codes(codes, vocabulary.merge_table()) + 5).tolist()
        assert ids.tolist() == folder.tokenizer(sequence, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("overlapping", [False, True], ids=["cut", "overlapping"])
def test_kmer_folder_loads_and_segments_like_its_tokenizer(tmp_path, overlapping):
    folder = load_any_tokenizer(write_kmer_tokenizer(tmp_path / "k", 4, overlapping=overlapping))
    assert (folder.kind, folder.k, folder.overlapping, folder.ours) == ("kmer", 4, overlapping, True)
    assert folder.vocab_size == 5 + 256 + 4 + 16 + 64
    for sequence in random_sequences(4, count=20, longest=60):
        ids, starts = folder.segment_run(encode_nucleotides(sequence))
        text = kmer_text(sequence, 4, overlapping=overlapping)
        assert ids.tolist() == folder.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert [sequence[s:s + 4] for s in starts.tolist()] == [w[:4] for w in text.split()]


def test_bad_folders_name_the_fix(tmp_path):
    with pytest.raises(GroverInputError, match="no tokenizer.json in"):
        load_any_tokenizer(tmp_path)
    kmer = write_kmer_tokenizer(tmp_path / "k", 2)
    (kmer / "grover_vocabulary.json").unlink()
    with pytest.raises(GroverInputError, match="WordLevel model without grover_vocabulary.json"):
        load_any_tokenizer(kmer)
    folder = write_grover_shaped_folder(tmp_path / "g", [("A", "A")])
    data = json.loads((folder / "tokenizer.json").read_text())
    del data["model"]["vocab"]["G"]
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(GroverInputError, match=r"nucleotide token\(s\) \['G'\] not in the vocabulary"):
        load_any_tokenizer(folder)


def test_merges_out_of_order_fall_back_to_the_hf_tokenizer(tmp_path):
    folder = write_grover_shaped_folder(tmp_path / "g", [("A", "A"), ("AA", "T"), ("T", "T"), ("C", "G")])
    data = json.loads((folder / "tokenizer.json").read_text())
    data["model"]["merges"] = ["AA T", "T T", "A A", "C G"]  # AA T ranks first but needs A A, made later
    (folder / "tokenizer.json").write_text(json.dumps(data))
    loaded = load_any_tokenizer(folder)
    assert not loaded.has_merge_table
    assert any("uses a token that no earlier merge made" in note for note in loaded.notes)
    hf = loaded.tokenizer
    for sequence in ["AAT", "AATTAAAT", *random_sequences(5, count=20, longest=80)]:
        ids, starts = loaded.segment_run(encode_nucleotides(sequence))
        assert ids.tolist() == hf(sequence, add_special_tokens=False)["input_ids"]
        pieces = hf.convert_ids_to_tokens(ids.tolist())
        assert "".join(sequence[s:s + len(p)] for s, p in zip(starts.tolist(), pieces)) == sequence


def test_identity_merges_without_the_empty_token_are_repaired_in_memory(merges, tmp_path):
    # Without the empty-string entry, tokenizers refuses the identity merges ("" is out of vocabulary);
    # the loader drops them in memory and loads the rest.
    folder = write_grover_shaped_folder(tmp_path / "g", merges[:100])
    data = json.loads((folder / "tokenizer.json").read_text())
    del data["model"]["vocab"][""]
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(Exception):
        AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    loaded = load_any_tokenizer(folder)
    assert any("dropped 4 identity merges" in note for note in loaded.notes)
    assert any("AutoTokenizer cannot load this folder" in note for note in loaded.notes)
    for sequence in random_sequences(6, count=20):
        ids, _ = loaded.segment_run(encode_nucleotides(sequence))
        assert ids.tolist() == loaded.tokenizer(sequence, add_special_tokens=False)["input_ids"]
