"""GROVER's model: a BERT masked language model (transformers ``BertForMaskedLM``).

Presets name the shapes we use; any field can be overridden. ``grover-base`` is the paper's model.
Models are saved as Hugging Face folders (config.json + model.safetensors + tokenizer) and loaded from
any BERT MLM folder: ours, or the published GROVER's (config.json + pytorch_model.bin + tokenizer).

Loading never runs pickled code: safetensors files are read by ``safetensors``; a ``pytorch_model.bin``
is read here with ``torch.load(weights_only=True)`` (tensors and plain containers only; torch >= 2.6,
the first release without CVE-2025-32434) and handed to transformers as a state dict, so the result
does not depend on transformers' own ``.bin`` handling. A hub id (``"PoetschLab/GROVER"``) is tried
only when no local path of that name exists; the Hub copy is then loaded as a local folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase

from grover_core.errors import GroverInputError
from grover_core.tokenizer_folder import TokenizerFolder, load_any_tokenizer

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # read by safetensors: no code runs
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")  # read with weights_only=True
# What a Hub download fetches: config, weights and tokenizer, not the published GROVER's tokenized
# chromosomes (gigabytes of pickles that nothing here reads).
HUB_FILES = ("config.json", "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
             "pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "grover_vocabulary.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "owner/name" (or a bare legacy name)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a BERT MLM; the vocabulary size comes from the tokenizer."""

    num_hidden_layers: int = 12
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512  # 510 tokens + [CLS] + [SEP]
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    attn_implementation: str = "sdpa"  # fused attention; "eager" when attention maps are wanted
    initializer_range: float = 0.02  # std of the normal initialisation (BERT's 0.02)

    @property
    def max_window_tokens(self) -> int:
        """Longest window of genome tokens the model takes (positions minus [CLS] and [SEP])."""
        return self.max_position_embeddings - 2


PRESETS: dict[str, ModelConfig] = {
    # The paper's model: BERT-base, about 87M parameters.
    "grover-base": ModelConfig(),
    # A model a workstation CPU trains in an hour.
    "grover-small": ModelConfig(num_hidden_layers=6, hidden_size=256, num_attention_heads=4,
                                intermediate_size=1024, max_position_embeddings=512),
    # Trains in minutes on 2 CPU cores.
    "grover-tiny": ModelConfig(num_hidden_layers=4, hidden_size=128, num_attention_heads=4,
                               intermediate_size=512, max_position_embeddings=130,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    # The built-in demo's model: grover-tiny's width in 2 layers, which learns from context in the
    # demo's five CPU minutes (4 layers take twice as long a step and learn slower per step).
    "grover-demo": ModelConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=4,
                               intermediate_size=512, max_position_embeddings=130,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    # Tests: a save-load round trip in seconds.
    "grover-test": ModelConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=66,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
}


def model_config(preset: str = "grover-base", **overrides) -> ModelConfig:
    """Return a preset's ``ModelConfig`` with fields overridden."""
    if preset not in PRESETS:
        raise GroverInputError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    return dataclasses.replace(PRESETS[preset], **overrides)


def build_model(config: ModelConfig, tokenizer: PreTrainedTokenizerBase, *, seed: int = 0) -> BertForMaskedLM:
    """Return a freshly initialised ``BertForMaskedLM`` sized for ``tokenizer``'s vocabulary."""
    torch.manual_seed(seed)
    fields = dataclasses.asdict(config)
    attn_implementation = fields.pop("attn_implementation")
    bert_config = BertConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        type_vocab_size=1,
        **fields,
    )
    model = BertForMaskedLM._from_config(bert_config, attn_implementation=attn_implementation)
    with torch.no_grad():
        # One segment: the token-type vector is a constant that pretraining keeps frozen (see
        # grover_core.pretrain.trained_parameters); zero, it leaves the embeddings as word + position.
        model.bert.embeddings.token_type_embeddings.weight.zero_()
    return model


def model_config_from_bert(config: BertConfig) -> ModelConfig:
    """Return the ``ModelConfig`` of a transformers ``BertConfig`` (e.g. a loaded model's ``config``)."""
    return ModelConfig(
        num_hidden_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob,
        attn_implementation=getattr(config, "_attn_implementation", None) or "sdpa",
        initializer_range=config.initializer_range,
    )


def count_parameters(model: torch.nn.Module) -> int:
    """Return the number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def load_model(path: str | os.PathLike, *, tokenizer: PreTrainedTokenizerBase | TokenizerFolder | None = None,
               attn_implementation: str = "sdpa") -> BertForMaskedLM:
    """Load a BERT MLM from a local Hugging Face folder (ours or the published GROVER's), in eval mode.

    Weights come from ``model.safetensors`` (sharded too) when present, else from ``pytorch_model.bin``
    (sharded too) read with ``torch.load(weights_only=True)``. With ``tokenizer`` (a Hugging Face tokenizer
    or a ``TokenizerFolder``) the model's embedding rows are checked against the ids it can emit.

    Raises
    ------
    GroverInputError
        When the folder is missing, has no ``config.json``, holds another model type than BERT, has no
        weights, weights that do not fit ``config.json`` or carry no masked-LM head, a ``.bin`` holding
        pickled objects other than tensors, or a tokenizer that can emit ids beyond the model's rows.
    """
    return load_bert_folder(path, tokenizer=tokenizer, attn_implementation=attn_implementation)


def load_bert_folder(path: str | os.PathLike, *, model_class: type[PreTrainedModel] = BertForMaskedLM,
                     config_changes: dict | None = None,
                     tokenizer: PreTrainedTokenizerBase | TokenizerFolder | None = None,
                     attn_implementation: str = "sdpa", loaded_as: str = "the model config.json describes",
                     fresh: tuple[str, ...] = ()) -> PreTrainedModel:
    """Load a BERT folder's weights into ``model_class`` (eval mode), by the rules of ``load_model``.

    ``config_changes`` set fields of the folder's ``config.json`` first (e.g. ``num_labels``);
    ``fresh`` names the prefixes of weights the checkpoint need not hold (a new head: they are drawn
    from the global torch generator); any other missing weight is an error. ``loaded_as`` finishes the
    sentence "<weights> cannot be loaded as ..." of the error a mismatch raises.
    """
    folder = Path(path)
    config = _read_bert_config(folder)
    for name, value in (config_changes or {}).items():
        setattr(config, name, value)
    source = _weights_file(folder)
    if tokenizer is not None:
        _check_sizes(config.vocab_size, _emitted_vocab_size(tokenizer), folder)
    model = _load_weights(source, config, attn_implementation, model_class=model_class, loaded_as=loaded_as,
                          fresh=fresh)
    if tokenizer is not None:
        check_vocab_sizes(model, tokenizer)
    return model


def load_model_and_tokenizer(path_or_hub_id: str | os.PathLike, *, tokenizer_path: str | os.PathLike | None = None,
                             attn_implementation: str = "sdpa") -> tuple[BertForMaskedLM, PreTrainedTokenizerBase]:
    """Load a BERT MLM and its tokenizer, checked against each other; return ``(model, tokenizer)``.

    ``path_or_hub_id`` is a local model folder (works offline), or, only when no local path of that
    name exists, a Hugging Face Hub id such as ``"PoetschLab/GROVER"`` (its config, weights and tokenizer
    are downloaded to the Hugging Face cache, or taken from it offline). The tokenizer comes from
    ``tokenizer_path``, else from the model folder, through ``load_any_tokenizer`` (which copes with the
    published GROVER tokenizer's quirks). The tokenizer returned is the Hugging Face one; call
    ``load_any_tokenizer(resolve_model_folder(...))`` for the ``TokenizerFolder`` (merge table, notes).

    Raises
    ------
    GroverInputError
        Everything ``load_model`` raises; a hub id that cannot be fetched (offline: download the folder
        and give its path); a model folder without a tokenizer when ``tokenizer_path`` is not given.
    """
    folder = resolve_model_folder(path_or_hub_id)
    config = _read_bert_config(folder)  # fail on a bad folder before reading any tokenizer
    source = _weights_file(folder)
    tokenizer_folder = Path(tokenizer_path) if tokenizer_path is not None else folder
    if tokenizer_path is None and not (folder / "tokenizer.json").is_file():
        raise GroverInputError(f"{folder} holds a model but no tokenizer.json. Pass tokenizer_path= (the folder "
                               "of the tokenizer this model was trained with).")
    tokenizer = load_any_tokenizer(tokenizer_folder)
    _check_sizes(config.vocab_size, tokenizer.vocab_size, folder, tokenizer_folder)
    model = _load_weights(source, config, attn_implementation)
    check_vocab_sizes(model, tokenizer)
    return model, tokenizer.tokenizer


def resolve_model_folder(path_or_hub_id: str | os.PathLike) -> Path:
    """Return the local folder for ``path_or_hub_id``: the path itself when it exists, else the Hugging Face
    Hub snapshot of that id (config, weights and tokenizer files only).

    Raises
    ------
    GroverInputError
        When the path does not exist and is not a hub id, or the Hub cannot provide it (e.g. offline).
    """
    text = os.fspath(path_or_hub_id)
    path = Path(text).expanduser()
    if path.exists() or isinstance(path_or_hub_id, os.PathLike) or not _HUB_ID.match(text):
        if not path.is_dir():
            raise GroverInputError(_not_a_folder(path))
        return path
    from huggingface_hub import constants, snapshot_download  # a transformers dependency

    try:
        return Path(snapshot_download(text, allow_patterns=list(HUB_FILES)))
    except Exception as error:  # offline, unknown repo, gated, network: all end the same way for the user
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else "no details"
        offline = ("HF_HUB_OFFLINE is set, so nothing is downloaded" if constants.HF_HUB_OFFLINE else
                   "HF_HUB_OFFLINE is not set; the Hub could not be reached")
        raise GroverInputError(
            f"{text!r} is not a local folder, and fetching it from the Hugging Face Hub failed ({offline}; "
            f"{type(error).__name__}: {reason}). Download the model folder on a machine with internet (e.g. "
            f"`hf download {text} --local-dir GROVER`) and give its local path."
        ) from None


def check_vocab_sizes(model: BertForMaskedLM, tokenizer: PreTrainedTokenizerBase | TokenizerFolder) -> None:
    """Raise ``GroverInputError`` when the tokenizer can emit an id beyond the model's embedding rows.

    Ids that are never emitted do not count: the published GROVER tokenizer has 610 entries, but id 609
    is an empty string, so it fits GROVER's 609-row model.
    """
    _check_sizes(model.get_input_embeddings().num_embeddings, _emitted_vocab_size(tokenizer))


def _emitted_vocab_size(tokenizer: PreTrainedTokenizerBase | TokenizerFolder) -> int:
    """1 + the highest id the tokenizer can emit (empty-string entries are never emitted)."""
    if isinstance(tokenizer, TokenizerFolder):
        return tokenizer.vocab_size
    emitted = [index for token, index in tokenizer.get_vocab().items() if token]
    return max(emitted) + 1 if emitted else 0


def _check_sizes(rows: int, emitted: int, model_folder: Path | None = None, tokenizer_folder: Path | None = None):
    if emitted > rows:
        where = f" ({model_folder})" if model_folder is not None else ""
        which = f" {tokenizer_folder}" if tokenizer_folder is not None else ""
        raise GroverInputError(
            f"tokenizer and model disagree: the tokenizer{which} can emit {emitted} ids (0-{emitted - 1}) but the "
            f"model{where} has {rows} embedding rows. Load the tokenizer that was saved with this model "
            "(tokenizer_path=), or train a model for this tokenizer."
        )


def _not_a_folder(path: Path) -> str:
    if path.is_file():
        return (f"{path} is a file; give the model folder that holds it (config.json + model.safetensors or "
                "pytorch_model.bin).")
    return (f"no model folder at {path}. Give the path of a Hugging Face BERT MLM folder (config.json + "
            "model.safetensors or pytorch_model.bin), e.g. a run's model/ or a downloaded PoetschLab/GROVER.")


def _read_bert_config(folder: Path) -> BertConfig:
    """The folder's ``config.json`` as a ``BertConfig``, after checking it describes a BERT model."""
    if not folder.is_dir():
        raise GroverInputError(_not_a_folder(folder))
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise GroverInputError(f"no config.json in {folder}: not a Hugging Face model folder. Give the folder "
                               "written by save_pretrained (or downloaded from the Hub) that holds config.json.")
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GroverInputError(f"{config_file} is not readable JSON ({error}). Restore the file.") from None
    if not isinstance(data, dict) or data.get("model_type") != "bert":
        found = data.get("model_type") if isinstance(data, dict) else None
        raise GroverInputError(f"{config_file} describes a {found or 'model without model_type'}, not BERT "
                               "(model_type 'bert'). GROVER Lens loads BERT masked language models "
                               "(BertForMaskedLM), such as GROVER.")
    # transformers_weights would make transformers read another file than the one checked here.
    data.pop("transformers_weights", None)
    try:
        return BertConfig.from_dict(data)
    except Exception as error:  # a config that transformers refuses (bad field types, ...)
        raise GroverInputError(f"{config_file} is not a valid BERT config ({error}).") from None


def _weights_file(folder: Path) -> Path:
    """The weights file to read: safetensors (single or index) first, else a ``.bin`` (single or index)."""
    for name in SAFE_WEIGHTS + PICKLE_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise GroverInputError(f"no weights in {folder}: expected model.safetensors or pytorch_model.bin beside "
                           "config.json. Copy the weights file into the folder.")


def _load_weights(source: Path, config: BertConfig, attn_implementation: str, *,
                  model_class: type[PreTrainedModel] = BertForMaskedLM,
                  loaded_as: str = "the model config.json describes", fresh: tuple[str, ...] = ()) -> PreTrainedModel:
    """The weights in ``source`` in a ``model_class``: safetensors through transformers, a ``.bin``
    read here (weights only) and handed over as a state dict."""
    folder = source.parent
    try:
        if source.name in SAFE_WEIGHTS:
            loaded = model_class.from_pretrained(str(folder), config=config, local_files_only=True,
                                                 use_safetensors=True, attn_implementation=attn_implementation,
                                                 output_loading_info=True)
        else:
            state_dict = _load_pickled_state_dict(folder, source)
            loaded = model_class.from_pretrained(None, config=config, state_dict=state_dict,
                                                 attn_implementation=attn_implementation,
                                                 output_loading_info=True)
    except GroverInputError:
        raise
    except Exception as error:  # size mismatches (RuntimeError), corrupt files (SafetensorError, OSError), ...
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise GroverInputError(f"{source} cannot be loaded as {loaded_as} ({first}). Check "
                               "that config.json and the weights come from the same model.") from None
    model, info = loaded
    missing = sorted(key for key in info.get("missing_keys") or [] if not key.startswith(fresh))
    if missing:
        head = [key for key in missing if key.startswith("cls.predictions")]
        what = "has no masked-LM head" if head else "lacks weights the model needs"
        raise GroverInputError(
            f"{source} {what} ({len(missing)} missing, e.g. {', '.join(missing[:3])}): not a "
            f"{model_class.__name__} checkpoint (config.json architectures: {config.architectures}). Give a "
            "masked-LM folder such as GROVER."
        )
    return model.eval()


def _load_pickled_state_dict(folder: Path, source: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``pytorch_model.bin`` (or its shards), never running pickled code."""
    if tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2]) < (2, 6):
        raise GroverInputError(f"{source} is a pickle, and torch {torch.__version__} cannot read pickles safely "
                               "(CVE-2025-32434). Upgrade torch to 2.6 or later, or convert the weights to "
                               "model.safetensors.")
    if source.name.endswith(".index.json"):
        try:
            weight_map = json.loads(source.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise GroverInputError(f"{source} is not a readable shard index ({error}).") from None
        files = [folder / name for name in shards]
        if any(file.resolve().parent != folder.resolve() for file in files):
            raise GroverInputError(f"{source} names shards outside {folder}; refusing to read them.")
    else:
        files = [source]
    state_dict: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            # weights_only=True: only tensors and plain containers are rebuilt; any other pickled object
            # (the way a malicious .bin runs code) stops the load. mmap avoids a second copy in memory.
            part = torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
        except pickle.UnpicklingError as error:
            culprit = re.search(r"GLOBAL (\S+)", str(error))
            found = f" (e.g. {culprit.group(1)})" if culprit else ""
            raise GroverInputError(f"{file} holds pickled objects other than tensors{found}; refused to load it. "
                                   "Get the weights from a trusted source, as model.safetensors if possible.") from None
        except (OSError, RuntimeError, EOFError, ValueError) as error:
            raise GroverInputError(f"{file} cannot be read as PyTorch weights ({str(error).splitlines()[0][:160]}). "
                                   "Download the file again.") from None
        if not isinstance(part, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in part.items()):
            raise GroverInputError(f"{file} is not a state dict (names -> tensors). Give a Hugging Face "
                                   "pytorch_model.bin or model.safetensors.")
        state_dict.update(part)
    return state_dict
