"""Load any DNA tokenizer folder: our BPE and k-mer folders, and GROVER-shaped ones (the published model's).

``load_any_tokenizer`` returns a ``TokenizerFolder``: the Hugging Face tokenizer plus what our own
encoders need to segment a genome exactly as that tokenizer does (the BPE merge table parsed from
``tokenizer.json``, or k and the k-mer mode).

What the loader copes with, and how:

* The published GROVER ``tokenizer.json``: 610 vocabulary entries where id 609 is an empty string that
  is never emitted, and four identity merges ("A ", "C ", "G ", "T ": an empty second piece) before the
  600 real merges. ``tokenizers`` loads this as it is (the empty piece is in the vocabulary, and it
  never occurs in a word, so the identity merges never fire); our merge table leaves them out, and
  ``vocab_size`` counts only ids that can be emitted (609, the model's ``vocab_size``). Should a
  ``tokenizers`` version refuse the file, the loader drops the identity merges in memory and retries.
* ``AutoTokenizer`` in transformers 5 builds the tokenizer class named in ``tokenizer_config.json``
  (or implied by ``config.json``'s ``model_type``) from the vocabulary: for ``BertTokenizer`` or a bare
  ``config.json`` with ``model_type: bert`` it silently makes a WordPiece tokenizer that turns a DNA
  sequence into one [UNK]. The loader checks that the tokenizer it got runs the file's model, and
  otherwise loads ``tokenizer.json`` directly as a ``PreTrainedTokenizerFast``.
* Special tokens are found by name ([PAD] [UNK] [CLS] [SEP] [MASK]) wherever their ids are.
* Replaying the merges in rank order (``bpe.encode_codes``) is exactly the Hugging Face BPE when each
  merge makes a new token out of tokens made before it (true of learned merge lists, ours and GROVER's
  layout). A merge list that breaks this still loads; its runs are then segmented by the Hugging Face
  tokenizer itself, and ``notes`` says so.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from grover_core.bpe import BPEVocabulary, encode_codes
from grover_core.errors import GroverInputError
from grover_core.genome import NUCLEOTIDES
from grover_core.kmer import encode_kmers, kmer_starts, kmer_tokens
from grover_core.tokenizer import MODEL_MAX_LENGTH, SPECIAL_TOKENS

TOKENIZER_JSON = "tokenizer.json"
VOCABULARY_JSON = "grover_vocabulary.json"
_SPECIAL_ROLES = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"}


@dataclass(frozen=True)
class TokenizerFolder:
    """A loaded tokenizer folder and the exact segmentation rule behind it.

    Attributes
    ----------
    path
        The folder.
    kind
        ``"bpe"`` (a BPE ``tokenizer.json``: ours or another, e.g. GROVER's) or ``"kmer"`` (ours).
    tokenizer
        The Hugging Face tokenizer (``PreTrainedTokenizerFast``).
    ours
        True when ``grover_vocabulary.json`` says GROVER Lens wrote the folder.
    info
        ``grover_vocabulary.json`` (empty when absent).
    merges
        BPE merges in rank order, identity merges left out (empty for k-mers).
    k, overlapping
        The k-mer rule (``None``/False for BPE).
    vocab_size
        1 + the highest id the tokenizer can emit (an empty-string entry at the end does not count).
    notes
        What the loader noticed or worked around, one line each (e.g. GROVER's quirks).
    """

    path: Path
    kind: str
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    ours: bool
    info: dict = field(repr=False)
    merges: list[tuple[str, str]] = field(default_factory=list, repr=False)
    k: int | None = None
    overlapping: bool = False
    vocab_size: int = 0
    notes: tuple[str, ...] = ()
    # Internal: BPE merge table over internal ids (A, C, G, T = 0..3, then each distinct merge result),
    # and internal id -> tokenizer id / nucleotide length.
    _table: np.ndarray | None = field(default=None, repr=False)
    _token_ids: np.ndarray | None = field(default=None, repr=False)
    _lengths: np.ndarray | None = field(default=None, repr=False)

    @property
    def has_merge_table(self) -> bool:
        """True when runs are segmented by replaying the merges (``bpe.encode_codes``)."""
        return self._table is not None

    def bpe_vocabulary(self) -> BPEVocabulary:
        """The merges as a ``BPEVocabulary`` (merge counts from our folders, else empty)."""
        if self.kind != "bpe":
            raise ValueError(f"{self.path} holds a {self.kind} tokenizer, not BPE")
        return BPEVocabulary(list(self.merges), list(self.info.get("merge_counts", [])))

    def merge_table(self) -> np.ndarray:
        """``[merges, 3]`` int32 rows ``(left, right, new)`` in internal ids, for ``bpe.encode_codes``.

        Internal ids: A, C, G, T are 0..3; each distinct merge result gets the next id in merge order
        (the same ids as ``BPEVocabulary.merge_table`` when every merge makes a new token).
        """
        if self._table is None:
            raise ValueError(f"{self.path}: no merge table ({self.kind} tokenizer, or merges out of order; "
                             "see notes)")
        return self._table

    def internal_to_tokenizer_ids(self) -> np.ndarray:
        """Tokenizer id of each internal id of ``merge_table``."""
        if self._token_ids is None:
            raise ValueError(f"{self.path}: no merge table ({self.kind} tokenizer, or merges out of order; "
                             "see notes)")
        return self._token_ids

    def segment_run(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize one A/C/G/T run (codes 0..3) as the tokenizer does.

        Returns
        -------
        ids
            Tokenizer ids (int32).
        starts
            Each token's first nucleotide, 0-based within the run (int64).
        """
        if self.kind == "kmer":
            return (encode_kmers(codes, self.k, overlapping=self.overlapping),
                    kmer_starts(len(codes), self.k, overlapping=self.overlapping))
        if self._table is None:
            encoding = self.tokenizer.backend_tokenizer.encode(
                np.frombuffer(b"ACGT", dtype=np.uint8)[codes].tobytes().decode(), add_special_tokens=False)
            return (np.asarray(encoding.ids, dtype=np.int32),
                    np.asarray([start for start, _ in encoding.offsets], dtype=np.int64))
        internal = encode_codes(codes, self._table)
        lengths = self._lengths[internal]
        starts = np.zeros(internal.size, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        return self._token_ids[internal], starts


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GroverInputError(f"{path} is not a readable {what} ({error}). Write the folder again.") from None


def _parse_merges(raw_merges: list) -> list[tuple[str, str]]:
    """Merges as pairs, from either serialisation (``"A C"`` strings or ``["A", "C"]`` lists)."""
    merges = []
    for merge in raw_merges:
        if isinstance(merge, str):
            left, _, right = merge.partition(" ")
        else:
            left, right = merge
        merges.append((left, right))
    return merges


def clean_bpe_json(data: dict) -> tuple[dict, list[str]]:
    """Return a copy of a BPE ``tokenizer.json`` without identity merges (an empty piece), and notes."""
    data = json.loads(json.dumps(data))
    merges = data["model"]["merges"]
    kept = [m for m, pair in zip(merges, _parse_merges(merges)) if pair[0] and pair[1]]
    data["model"]["merges"] = kept
    return data, [f"dropped {len(merges) - len(kept)} identity merges (empty piece) from tokenizer.json in memory"]


def _special_tokens(folder: Path, data: dict) -> dict[str, str]:
    """Special-token roles from tokenizer_config.json / special_tokens_map.json, else by name."""
    added = {token["content"] for token in data.get("added_tokens", [])} | set(data["model"].get("vocab", {}))
    roles = {role: token for role, token in _SPECIAL_ROLES.items() if token in added}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            config = _read_json(folder / name, name)
            for role in _SPECIAL_ROLES:
                value = config.get(role)
                value = value.get("content") if isinstance(value, dict) else value
                if isinstance(value, str) and value in added:
                    roles[role] = value
    return roles


def _direct_tokenizer(folder: Path, data: dict, notes: list[str]) -> PreTrainedTokenizerFast:
    """``tokenizer.json`` as a ``PreTrainedTokenizerFast``, without AutoTokenizer's class machinery."""
    try:
        backend = Tokenizer.from_str(json.dumps(data))
    except Exception as error:  # tokenizers raises plain Exception subclasses from Rust
        if data["model"].get("type") != "BPE":
            raise GroverInputError(f"{folder / TOKENIZER_JSON} cannot be loaded by tokenizers ({error}). "
                                   "Give a tokenizer.json written by the tokenizers library.") from None
        cleaned, more = clean_bpe_json(data)
        try:
            backend = Tokenizer.from_str(json.dumps(cleaned))
        except Exception:
            raise GroverInputError(f"{folder / TOKENIZER_JSON} cannot be loaded by tokenizers ({error}), not even "
                                   "without its identity merges. Give a valid BPE tokenizer.json.") from None
        notes += more
    max_length = MODEL_MAX_LENGTH
    if (folder / "tokenizer_config.json").is_file():
        max_length = int(_read_json(folder / "tokenizer_config.json", "tokenizer config").get("model_max_length",
                                                                                              max_length))
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=min(max_length, 10**9),
                                   **_special_tokens(folder, data))


def _hf_tokenizer(folder: Path, data: dict, notes: list[str]) -> PreTrainedTokenizerBase:
    """AutoTokenizer when it runs the file's model; else the file loaded directly."""
    model_type = data["model"].get("type")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        backend = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
        got = backend.get("type")
        same = got == model_type and backend.get("vocab") == data["model"].get("vocab")
        reason = f"it built a {type(tokenizer).__name__} with a {got} model instead of the file's {model_type}"
    except Exception as error:  # whatever AutoTokenizer trips on, the file itself may still load
        same, reason = False, f"it failed ({type(error).__name__}: {str(error).splitlines()[0][:120]})"
    if same:
        return tokenizer
    notes.append(f"AutoTokenizer cannot load this folder as saved: {reason}; loaded tokenizer.json directly")
    return _direct_tokenizer(folder, data, notes)


def _bpe_table(folder: Path, vocab: dict[str, int], merges: list[tuple[str, str]], notes: list[str]):
    """Merge table over internal ids, internal -> tokenizer ids, nucleotide lengths; ``None`` for all
    three when the merge list cannot be replayed in order (then runs go through the HF tokenizer)."""
    missing = [letter for letter in NUCLEOTIDES if letter not in vocab]
    if missing:
        raise GroverInputError(f"{folder / TOKENIZER_JSON}: nucleotide token(s) {missing} not in the vocabulary. "
                               "Give a DNA tokenizer.")
    internal = {letter: i for i, letter in enumerate(NUCLEOTIDES)}
    rows = []
    skipped = 0
    for rank, (left, right) in enumerate(merges):
        merged = left + right
        if set(merged) - set(NUCLEOTIDES):
            skipped += 1  # e.g. a merge with N: it never fires inside an A/C/G/T run
            continue
        problem = None
        if left not in internal or right not in internal:
            problem = f"merge {rank} ({left!r}, {right!r}) uses a token that no earlier merge made"
        elif merged not in vocab:
            problem = f"merge {rank} makes {merged!r}, which is not in the vocabulary"
        elif merged in internal:
            problem = f"merge {rank} makes {merged!r} a second time"
        if problem:
            # Replaying merges in rank order equals the Hugging Face BPE only when each merge makes a new
            # token from tokens made before it.
            notes.append(f"{problem}: the merge list is not in learned order, so runs are segmented by the "
                         "Hugging Face tokenizer itself (slower, and memory-hungry on long runs)")
            return None, None, None
        internal[merged] = len(internal)
        rows.append((internal[left], internal[right], internal[merged]))
    if skipped:
        notes.append(f"{skipped} merges with letters other than A/C/G/T never fire inside a run; left out")
    strings = list(internal)
    table = np.asarray(rows, dtype=np.int32).reshape(-1, 3)
    token_ids = np.array([vocab[s] for s in strings], dtype=np.int32)
    return table, token_ids, np.array([len(s) for s in strings], dtype=np.int64)


def load_any_tokenizer(path: str | os.PathLike) -> TokenizerFolder:
    """Load a tokenizer folder (ours BPE or k-mer, or GROVER-shaped) from disk, never from the network.

    Raises
    ------
    GroverInputError
        When the folder has no ``tokenizer.json``, or holds a tokenizer that is neither BPE nor our k-mers,
        or a BPE without the four nucleotides or with options that make it non-deterministic.
    """
    folder = Path(path)
    if not (folder / TOKENIZER_JSON).is_file():
        raise GroverInputError(
            f"no tokenizer.json in {folder}. Give a tokenizer folder written by `grover vocab` or `grover demo`, "
            "or a Hugging Face model folder that holds its tokenizer (e.g. GROVER's)."
        )
    data = _read_json(folder / TOKENIZER_JSON, "tokenizer.json")
    if not isinstance(data.get("model"), dict):
        raise GroverInputError(f"{folder / TOKENIZER_JSON} has no model section. Give a Hugging Face tokenizer.json.")
    info = _read_json(folder / VOCABULARY_JSON, VOCABULARY_JSON) if (folder / VOCABULARY_JSON).is_file() else {}
    notes: list[str] = []
    model = data["model"]
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    for token in data.get("added_tokens", []):
        vocab.setdefault(token["content"], token["id"])
    emitted = [i for token, i in vocab.items() if token]
    vocab_size = max(emitted) + 1 if emitted else 0
    empties = sorted(i for token, i in vocab.items() if not token)
    if empties:
        notes.append(f"empty-string token at id(s) {empties}: never emitted; vocab_size counts {vocab_size} ids")

    if info.get("kind") == "kmer":
        k, overlapping = int(info["k"]), bool(info.get("overlapping", False))
        expected = {token: i for i, token in enumerate(list(SPECIAL_TOKENS) + kmer_tokens(k))}
        if vocab != expected:
            raise GroverInputError(f"{folder}: grover_vocabulary.json says k-mers with k={k}, but tokenizer.json "
                                   "holds another vocabulary. Write the folder again (grover vocab kmer).")
        tokenizer = _hf_tokenizer(folder, data, notes)
        return TokenizerFolder(folder, "kmer", tokenizer, True, info, k=k, overlapping=overlapping,
                               vocab_size=vocab_size, notes=tuple(notes))

    if model.get("type") != "BPE":
        raise GroverInputError(
            f"{folder / TOKENIZER_JSON} holds a {model.get('type')} model without grover_vocabulary.json. Give a "
            "BPE tokenizer folder, or a k-mer folder written by `grover vocab kmer`."
        )
    for option in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(option):
            raise GroverInputError(f"{folder / TOKENIZER_JSON}: BPE option {option}={model[option]!r} is not "
                                   "reproducible on a genome. Give a DNA BPE tokenizer without it.")
    if model.get("ignore_merges"):
        notes.append("ignore_merges is on: a whole input that is a token skips the merges in the Hugging Face "
                     "tokenizer; genome tokenization applies the merges")
    all_merges = _parse_merges(model.get("merges") or [])
    merges = [(left, right) for left, right in all_merges if left and right]
    if len(merges) < len(all_merges):
        identity = [left + " " for left, right in all_merges if not (left and right)]
        notes.append(f"{len(identity)} identity merges with an empty piece ({', '.join(map(repr, identity[:4]))}) "
                     "never fire; left out of the merge table")
    table, token_ids, lengths = _bpe_table(folder, vocab, merges, notes)
    tokenizer = _hf_tokenizer(folder, data, notes)
    return TokenizerFolder(folder, "bpe", tokenizer, info.get("kind") == "bpe", info, merges=merges,
                           vocab_size=vocab_size, notes=tuple(notes), _table=table, _token_ids=token_ids,
                           _lengths=lengths)
