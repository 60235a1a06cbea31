"""Loading BERT MLM folders: the published GROVER layout (pytorch_model.bin), ours (model.safetensors),
vocabulary checks against the tokenizer, and the errors for folders that cannot be loaded."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel

from grover_core.errors import GroverInputError
from grover_core.model import (PRESETS, check_vocab_sizes, count_parameters, load_model, load_model_and_tokenizer,
                               model_config_from_bert, resolve_model_folder)
from grover_core.tokenizer_folder import load_any_tokenizer
from tests.grover_core.test_tokenizer_folder import synthetic_merges, write_grover_shaped_folder

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# config.json as transformers 4.x wrote it for a BertForMaskedLM of GROVER's shape (vocab_size 609).
PUBLISHED_CONFIG = {
    "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "classifier_dropout": None,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
    "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
    "torch_dtype": "float32", "transformers_version": "4.35.2", "type_vocab_size": 2, "use_cache": True,
    "vocab_size": 609,
}


def _touch_marker(path):
    """What the malicious pickle below would run: harmless, but it leaves a trace."""
    Path(path).write_text("pickled code ran")
    return torch.zeros(1)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling calls _touch_marker(marker)
        return (_touch_marker, (self.marker,))


def dna(seed, length=300):
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), size=length))


def save_tiny_model(folder, vocab_size, *, head=True, tokenizer_from=None):
    """A 2-layer BERT (MLM, or without its head) saved by save_pretrained, optionally with tokenizer files."""
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=66)
    torch.manual_seed(0)
    (BertForMaskedLM if head else BertModel)(config).save_pretrained(str(folder))
    for name in TOKENIZER_FILES if tokenizer_from else ():
        shutil.copy(tokenizer_from / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def merges():
    return synthetic_merges()


@pytest.fixture(scope="module")
def grover_dir(merges, tmp_path_factory):
    """A randomly initialised GROVER in the published layout: config.json + pytorch_model.bin (torch.save of
    a state dict, tied decoder and old position_ids buffer included) + the GROVER-shaped tokenizer files."""
    folder = write_grover_shaped_folder(tmp_path_factory.mktemp("published") / "GROVER", merges)
    (folder / "config.json").write_text(json.dumps(PUBLISHED_CONFIG))
    torch.manual_seed(0)
    state_dict = BertForMaskedLM(BertConfig.from_dict(PUBLISHED_CONFIG)).state_dict()
    state_dict["bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)  # saved by transformers < 4.31
    torch.save(state_dict, folder / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="module")
def loaded(grover_dir):
    return load_model_and_tokenizer(str(grover_dir))


def test_published_layout_loads_with_its_tokenizer(grover_dir, loaded):
    model, tokenizer = loaded
    assert not (grover_dir / "model.safetensors").exists()
    assert 86e6 < count_parameters(model) < 88e6
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size,
            config.max_position_embeddings, config.vocab_size) == (12, 768, 12, 3072, 512, 609)
    assert model_config_from_bert(config) == PRESETS["grover-base"]
    assert config._attn_implementation == "sdpa" and not model.training
    assert model.get_input_embeddings().num_embeddings == 609
    assert model.cls.predictions.decoder.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    stored = torch.load(grover_dir / "pytorch_model.bin", weights_only=True, mmap=True)
    name = "bert.encoder.layer.11.output.dense.weight"
    assert torch.equal(model.get_parameter(name), stored[name])

    assert len(tokenizer) == 610 and tokenizer.convert_ids_to_tokens(609) == ""
    check_vocab_sizes(model, tokenizer)  # 610 entries, but the empty id 609 is never emitted
    ids = tokenizer(dna(1), return_tensors="pt")["input_ids"]
    assert ids[0, 0] == tokenizer.cls_token_id and ids[0, -1] == tokenizer.sep_token_id
    assert int(ids.max()) < 609 and tokenizer.unk_token_id not in ids
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    assert out.logits.shape == (1, ids.shape[1], 609)
    assert len(out.hidden_states) == 13 and out.hidden_states[-1].shape == (1, ids.shape[1], 768)
    assert torch.isfinite(out.logits).all()


def test_safetensors_folder_gives_the_same_model(grover_dir, loaded, tmp_path):
    model, tokenizer = loaded
    model.save_pretrained(str(tmp_path / "ours"))
    for name in TOKENIZER_FILES:
        shutil.copy(grover_dir / name, tmp_path / "ours" / name)
    assert (tmp_path / "ours" / "model.safetensors").is_file()
    again, tokenizer_again = load_model_and_tokenizer(tmp_path / "ours", attn_implementation="eager")
    assert again.config._attn_implementation == "eager"
    ids = tokenizer_again(dna(2), return_tensors="pt")["input_ids"]
    assert torch.equal(ids, tokenizer(dna(2), return_tensors="pt")["input_ids"])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, again(input_ids=ids).logits, atol=1e-4)
    # load_model alone, checked against a TokenizerFolder (vocab_size 609)
    assert load_model(tmp_path / "ours", tokenizer=load_any_tokenizer(grover_dir)).config.vocab_size == 609


def test_vocab_mismatch_names_both_sizes_and_the_fix(grover_dir, tmp_path):
    small = save_tiny_model(tmp_path / "small", 500, tokenizer_from=grover_dir)
    with pytest.raises(GroverInputError, match=r"can emit 609 ids .* has 500 embedding rows.*tokenizer_path="):
        load_model_and_tokenizer(small)
    with pytest.raises(GroverInputError, match="disagree"):
        load_model(small, tokenizer=load_any_tokenizer(grover_dir))
    # The same model folder with a tokenizer that fits it, given explicitly.
    fits = write_grover_shaped_folder(tmp_path / "fits", synthetic_merges(400))  # 5 + 4 + 400 ids
    model, tokenizer = load_model_and_tokenizer(small, tokenizer_path=fits)
    assert model.config.vocab_size == 500 and max(tokenizer.get_vocab().values()) == 409
    # A tiny GROVER-sized model passes with the GROVER tokenizer (the old check counted the empty id 609).
    exact = save_tiny_model(tmp_path / "exact", 609)
    with pytest.raises(GroverInputError, match="no tokenizer.json.*tokenizer_path="):
        load_model_and_tokenizer(exact)
    assert load_model_and_tokenizer(exact, tokenizer_path=grover_dir)[0].config.vocab_size == 609


def _folder_without_config(tmp_path, tokenizer_dir):
    (tmp_path / "m").mkdir()
    return tmp_path / "m"


def _gpt2_config(tmp_path, tokenizer_dir):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 609}))
    return tmp_path / "m"


def _no_weights(tmp_path, tokenizer_dir):
    BertConfig(vocab_size=609).save_pretrained(str(tmp_path / "m"))
    return tmp_path / "m"


def _encoder_without_head(tmp_path, tokenizer_dir):
    return save_tiny_model(tmp_path / "m", 609, head=False, tokenizer_from=tokenizer_dir)


def _weights_of_another_shape(tmp_path, tokenizer_dir):
    folder = save_tiny_model(tmp_path / "m", 609, tokenizer_from=tokenizer_dir)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    return folder


@pytest.mark.parametrize("make, message", [
    (lambda tmp_path, _: tmp_path / "missing", "no model folder at"),
    (lambda tmp_path, _: Path(shutil.copy(__file__, tmp_path / "weights.bin")), "is a file"),
    (_folder_without_config, "no config.json in"),
    (_gpt2_config, "describes a gpt2, not BERT"),
    (_no_weights, "no weights in"),
    (_encoder_without_head, "has no masked-LM head"),
    (_weights_of_another_shape, "cannot be loaded as the model config.json describes"),
], ids=["missing", "file", "no-config", "not-bert", "no-weights", "no-mlm-head", "shape-mismatch"])
def test_bad_folders_raise_one_line(tmp_path, grover_dir, make, message):
    folder = make(tmp_path, grover_dir)
    for load in (load_model, load_model_and_tokenizer):
        with pytest.raises(GroverInputError, match=message) as error:
            load(str(folder))
        assert "\n" not in str(error.value)


def test_bin_with_a_pickled_object_is_refused(tmp_path):
    folder = save_tiny_model(tmp_path / "evil", 609)
    state_dict = BertForMaskedLM.from_pretrained(str(folder)).state_dict()
    (folder / "model.safetensors").rename(tmp_path / "model.safetensors")
    marker = tmp_path / "marker.txt"
    torch.save({**state_dict, "payload": _Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(GroverInputError, match=r"pickled objects other than tensors \(e\.g\. .*_touch_marker\)"):
        load_model(folder)
    assert not marker.exists()
    # Beside a safetensors file the .bin is never opened.
    (tmp_path / "model.safetensors").rename(folder / "model.safetensors")
    assert load_model(folder).config.vocab_size == 609 and not marker.exists()
    # The payload is live: an unsafe load would have run it.
    torch.load(folder / "pytorch_model.bin", weights_only=False)
    assert marker.read_text() == "pickled code ran"


def test_hub_id_is_tried_only_without_a_local_folder(grover_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GroverInputError, match=r"'PoetschLab/GROVER' is not a local folder.*HF_HUB_OFFLINE is set.*"
                                               r"give its local path"):
        load_model_and_tokenizer("PoetschLab/GROVER")
    # A local folder of the same name wins, offline.
    save_tiny_model(tmp_path / "PoetschLab" / "GROVER", 609, tokenizer_from=grover_dir)
    assert resolve_model_folder("PoetschLab/GROVER") == Path("PoetschLab/GROVER")
    model, tokenizer = load_model_and_tokenizer("PoetschLab/GROVER")
    assert model.config.hidden_size == 32 and len(tokenizer) == 610
