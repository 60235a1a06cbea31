"""The vocabulary report: what a BPE vocabulary holds and how it cuts the genome.

GROVER (Sanabria et al. 2024) describes its 600-cycle vocabulary by a handful of numbers: token
lengths from 1 to 16 nt with mean 4.07, 213 five-mers and 224 six-mers, "CG" never a token, 97% of
tokens starting with A or T, and token length correlating positively with token frequency (a
"frequency balanced" vocabulary). This module computes the same numbers for any vocabulary, so a
re-learned one can be set beside the paper's, and several vocabularies beside each other.

Three steps, each a pure function: ``vocabulary_token_table`` (one row per token),
``vocabulary_summary`` (one dict per vocabulary), ``compare_vocabularies`` / ``shared_tokens``
(several vocabularies). ``vocabulary_report_for`` runs the first two on a tokenizer folder and a
tokenized-genome folder; ``write_vocabulary_report`` and ``format_vocabulary_report`` save and print
the result.

Definitions (over non-special tokens; special rows are kept in the table but never counted):

* frequency: occurrences of the token in the tokenized genome.
* nucleotides per token: the frequency-weighted mean token length, i.e. ACGT nucleotides of the
  tokenized genome divided by its tokens. GROVER's "mean length 4.07 nt" is most likely this number:
  with 437 of 601 tokens being 5- or 6-mers, the unweighted mean (``mean_length``) must exceed 4.5.
  The run manifest's ``vocabulary.mean_token_length`` is this number too.
* frequency balance: the normalised Shannon entropy ``H / log(V)`` of the token frequency
  distribution ``p_i = f_i / sum(f)`` (``0 log 0 = 0``), ``V`` the number of tokens. It lies in
  [0, 1]; 1 means every token is equally frequent, 0 that one token takes every occurrence.
* frequency Gini: the Gini coefficient of the token frequencies, in [0, 1 - 1/V]; 0 means every token
  is equally frequent, larger means occurrences concentrate on fewer tokens.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.token_properties import composition

VOCABULARY_TOKENS = "vocabulary_tokens.parquet"
VOCABULARY_SUMMARY = "vocabulary_summary.json"

# vocabulary_tokens.parquet: one row per tokenizer id, special tokens included (is_special=True).
VOCABULARY_COLUMNS = (
    "token_id",               # int: id in the tokenizer
    "token",                  # str: nucleotides (or the special token's name; "" for an unused id)
    "is_special",             # bool: special token, or an id that is not an A/C/G/T string
    "length",                 # int: nucleotides (0 for special rows)
    "frequency",              # int: occurrences in the tokenized genome
    "gc",                     # float in [0, 1]: (G + C) / length (NaN for special rows)
    "ag",                     # float in [0, 1]: (A + G) / length
    "ac",                     # float in [0, 1]: (A + C) / length
    "cpg",                    # int: CG dinucleotides inside the token
    "starts_with_at",         # bool: first nucleotide is A or T (False for special rows)
    "reverse_complement",     # str: reverse complement of the token ("" for special rows)
    "reverse_complement_id",  # int: id of the reverse complement if it is a token, else -1
    "frequency_rank",         # int: 1 = most frequent non-special token, ties share the best rank; -1 special
)

# vocabulary_summary.json: the fields of ``vocabulary_summary``, in order.
SUMMARY_FIELDS = (
    "name",                         # str: label of the vocabulary
    "vocab_size",                   # int: non-special tokens
    "special_tokens",               # int: special rows (special tokens and unused ids)
    "length_histogram",             # dict int -> int: tokens per length in nt
    "min_length",                   # int: nt
    "max_length",                   # int: nt
    "mean_length",                  # float: unweighted mean token length in nt
    "nucleotides_per_token",        # float: frequency-weighted mean length
    "spearman_length_frequency",    # float: Spearman rho of length against frequency
    "kmers_5",                      # int: tokens of length 5
    "kmers_6",                      # int: tokens of length 6
    "share_starting_with_at",       # float in [0, 1]
    "has_cg_token",                 # bool: "CG" is a token
    "share_with_reverse_complement",  # float in [0, 1]: tokens whose RC is a token (palindromes included)
    "median_frequency",             # float
    "unused_tokens",                # int: tokens that never occur in the tokenized genome
    "frequency_balance",            # float in [0, 1]: H / log(V), 1 = flat
    "frequency_gini",               # float: Gini coefficient of frequencies, 0 = flat
    "total_tokens",                 # int: tokens in the tokenized genome (sum of frequencies)
    "total_nucleotides",            # int: nucleotides they cover (sum of frequency * length)
)

_COMPLEMENT = str.maketrans("ACGT", "TGCA")
_NUCLEOTIDES = frozenset("ACGT")
_HISTOGRAM_WIDTH = 40  # characters of the longest bar in the text length histogram


def reverse_complement(token: str) -> str:
    """Return the reverse complement of an A/C/G/T string.

    >>> reverse_complement("AAC"), reverse_complement("AT")
    ('GTT', 'AT')
    """
    return token.translate(_COMPLEMENT)[::-1]


def vocabulary_token_table(tokens: Sequence[str], *, frequencies: np.ndarray | Sequence[int],
                           special: np.ndarray | Sequence[bool] | None = None) -> pd.DataFrame:
    """Return one row per token id with its composition, reverse-complement partner and frequency rank.

    Parameters
    ----------
    tokens
        ``tokens[i]`` is the string of tokenizer id ``i``.
    frequencies
        Occurrences of each id in the tokenized genome, same length as ``tokens``.
    special
        True for special tokens. Default: any token that is empty or not made of A/C/G/T only.

    Returns
    -------
    DataFrame with the columns in ``VOCABULARY_COLUMNS``, one row per id in id order:
    ``token_id``, ``token``, ``is_special``, ``length``, ``frequency``, ``gc``, ``ag``, ``ac``, ``cpg``,
    ``starts_with_at``, ``reverse_complement``, ``reverse_complement_id`` (-1 when the reverse
    complement is not a token; a palindrome such as AT maps to itself) and ``frequency_rank``
    (1 = most frequent; -1 on special rows).

    Examples
    --------
    >>> table = vocabulary_token_table(["[PAD]", "A", "T", "AT", "AAC"], frequencies=[0, 5, 4, 3, 1])
    >>> table[["token", "reverse_complement", "reverse_complement_id", "frequency_rank"]]
       token reverse_complement  reverse_complement_id  frequency_rank
    0  [PAD]                                        -1              -1
    1      A                  T                      2               1
    2      T                  A                      1               2
    3     AT                 AT                      3               3
    4    AAC                GTT                     -1               4
    """
    tokens = [str(t) for t in tokens]
    frequencies = np.asarray(frequencies, dtype=np.int64)
    if frequencies.shape != (len(tokens),):
        raise ValueError(f"frequencies has shape {frequencies.shape}; expected ({len(tokens)},), one count per token")
    if special is None:
        special = np.array([not t or not set(t) <= _NUCLEOTIDES for t in tokens], dtype=bool)
    special = np.asarray(special, dtype=bool)
    if special.shape != (len(tokens),):
        raise ValueError(f"special has shape {special.shape}; expected ({len(tokens)},), one flag per token")

    id_of = {t: i for i, t in enumerate(tokens) if not special[i]}
    rows = []
    for token_id, token in enumerate(tokens):
        if special[token_id]:
            rows.append({"token_id": token_id, "token": token, "is_special": True, "length": 0,
                         **composition(""), "starts_with_at": False, "reverse_complement": "",
                         "reverse_complement_id": -1})
            continue
        rc = reverse_complement(token)
        rows.append({"token_id": token_id, "token": token, "is_special": False, "length": len(token),
                     **composition(token), "starts_with_at": token[0] in "AT", "reverse_complement": rc,
                     "reverse_complement_id": id_of.get(rc, -1)})
    table = pd.DataFrame(rows, columns=[c for c in VOCABULARY_COLUMNS if c not in ("frequency", "frequency_rank")])
    table["frequency"] = frequencies
    rank = pd.Series(frequencies[~special]).rank(method="min", ascending=False).to_numpy(dtype=np.int64)
    ranks = np.full(len(tokens), -1, dtype=np.int64)
    ranks[~special] = rank
    table["frequency_rank"] = ranks
    table = table.astype({"token_id": np.int64, "length": np.int64, "cpg": np.int64, "is_special": bool,
                          "starts_with_at": bool, "reverse_complement_id": np.int64,
                          "gc": float, "ag": float, "ac": float})
    return table[list(VOCABULARY_COLUMNS)]


def frequency_balance(frequencies: np.ndarray | Sequence[int]) -> float:
    """Return the normalised Shannon entropy ``H / log(V)`` of a frequency distribution, in [0, 1].

    1 means all ``V`` values are equal (a perfectly flat distribution), 0 that one value holds every
    occurrence. NaN when there are fewer than two values or no occurrences.

    >>> frequency_balance([5, 5, 5, 5]), frequency_balance([1, 0, 0, 0])
    (1.0, 0.0)
    """
    f = np.asarray(frequencies, dtype=float)
    total = f.sum()
    if f.size < 2 or total <= 0:
        return math.nan
    p = f[f > 0] / total
    entropy = -(p * np.log(p)).sum()
    return float(min(1.0, max(0.0, entropy / math.log(f.size)))) + 0.0  # + 0.0 turns -0.0 into 0.0


def gini_coefficient(frequencies: np.ndarray | Sequence[int]) -> float:
    """Return the Gini coefficient of non-negative values: 0 when all are equal, up to ``1 - 1/n``.

    NaN when there are no values or no occurrences.

    >>> gini_coefficient([3, 3, 3]), gini_coefficient([0, 0, 0, 8])
    (0.0, 0.75)
    """
    x = np.sort(np.asarray(frequencies, dtype=float))
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return math.nan
    i = np.arange(1, n + 1)
    return float(max(0.0, 2 * (i * x).sum() / (n * total) - (n + 1) / n))


def vocabulary_summary(table: pd.DataFrame, *, name: str) -> dict[str, Any]:
    """Return the numbers GROVER reports for its vocabulary, computed from a ``vocabulary_token_table``.

    Special rows are left out of every number but ``special_tokens``.

    Returns
    -------
    dict with the keys in ``SUMMARY_FIELDS`` (plain Python values, NaN where undefined):
    ``name``; ``vocab_size`` (non-special tokens); ``special_tokens``; ``length_histogram``
    ({length: tokens}, ascending); ``min_length``, ``max_length``, ``mean_length`` (unweighted, nt);
    ``nucleotides_per_token`` (frequency-weighted mean length); ``spearman_length_frequency``;
    ``kmers_5``, ``kmers_6`` (tokens of length 5 and 6); ``share_starting_with_at``;
    ``has_cg_token``; ``share_with_reverse_complement``; ``median_frequency``; ``unused_tokens``
    (frequency 0); ``frequency_balance`` (H / log V, 1 = flat); ``frequency_gini`` (0 = flat);
    ``total_tokens`` (sum of frequencies); ``total_nucleotides`` (sum of frequency x length).

    Examples
    --------
    >>> table = vocabulary_token_table(["A", "C", "G", "T", "AA", "TT", "AAT"], frequencies=[4, 2, 2, 4, 3, 3, 1])
    >>> summary = vocabulary_summary(table, name="toy")
    >>> summary["vocab_size"], summary["length_histogram"], summary["has_cg_token"]
    (7, {1: 4, 2: 2, 3: 1}, False)
    >>> summary["total_tokens"], summary["total_nucleotides"], round(summary["nucleotides_per_token"], 3)
    (19, 27, 1.421)
    """
    tokens = table.loc[~table["is_special"].to_numpy(dtype=bool)]
    lengths = tokens["length"].to_numpy(dtype=np.int64)
    freqs = tokens["frequency"].to_numpy(dtype=np.int64)
    size = int(len(tokens))
    total_tokens = int(freqs.sum())
    total_nucleotides = int((freqs * lengths).sum())
    lengths_seen, counts = np.unique(lengths, return_counts=True)
    if size >= 2 and np.ptp(lengths) > 0 and np.ptp(freqs) > 0:
        rho = float(spearmanr(lengths, freqs).statistic)
    else:
        rho = math.nan  # a constant length or frequency has no rank correlation
    summary = {
        "name": str(name),
        "vocab_size": size,
        "special_tokens": int(len(table) - size),
        "length_histogram": {int(k): int(v) for k, v in zip(lengths_seen, counts)},
        "min_length": int(lengths.min()) if size else 0,
        "max_length": int(lengths.max()) if size else 0,
        "mean_length": float(lengths.mean()) if size else math.nan,
        "nucleotides_per_token": total_nucleotides / total_tokens if total_tokens else math.nan,
        "spearman_length_frequency": rho,
        "kmers_5": int((lengths == 5).sum()),
        "kmers_6": int((lengths == 6).sum()),
        "share_starting_with_at": float(tokens["starts_with_at"].mean()) if size else math.nan,
        "has_cg_token": bool((tokens["token"] == "CG").any()),
        "share_with_reverse_complement": float((tokens["reverse_complement_id"] >= 0).mean()) if size else math.nan,
        "median_frequency": float(np.median(freqs)) if size else math.nan,
        "unused_tokens": int((freqs == 0).sum()),
        "frequency_balance": frequency_balance(freqs),
        "frequency_gini": gini_coefficient(freqs),
        "total_tokens": total_tokens,
        "total_nucleotides": total_nucleotides,
    }
    return {key: summary[key] for key in SUMMARY_FIELDS}


def compare_vocabularies(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Return one row per vocabulary (in the order given) with the ``vocabulary_summary`` fields.

    Returns
    -------
    DataFrame with the columns in ``SUMMARY_FIELDS``; ``name`` is the key of ``tables`` and
    ``length_histogram`` holds a {length: tokens} dict per row.

    Examples
    --------
    >>> small = vocabulary_token_table(["A", "C", "G", "T"], frequencies=[1, 1, 1, 1])
    >>> large = vocabulary_token_table(["A", "C", "G", "T", "AT", "CG"], frequencies=[1, 1, 1, 1, 2, 2])
    >>> compare_vocabularies({"4": small, "6": large})[["name", "vocab_size", "mean_length", "has_cg_token"]]
      name  vocab_size  mean_length  has_cg_token
    0    4           4     1.000000         False
    1    6           6     1.333333          True
    """
    rows = [vocabulary_summary(table, name=name) for name, table in tables.items()]
    return pd.DataFrame(rows, columns=list(SUMMARY_FIELDS))


def _token_set(vocabulary: pd.DataFrame | Iterable[str]) -> set[str]:
    if isinstance(vocabulary, pd.DataFrame):
        return set(vocabulary.loc[~vocabulary["is_special"].to_numpy(dtype=bool), "token"])
    return set(vocabulary)


def _by_length(tokens: set[str]) -> list[str]:
    return sorted(tokens, key=lambda t: (len(t), t))


def shared_tokens(a: pd.DataFrame | Iterable[str], b: pd.DataFrame | Iterable[str]) -> dict[str, Any]:
    """Return which tokens two vocabularies share.

    ``a`` and ``b`` are token tables (special rows are ignored) or collections of token strings.

    Returns
    -------
    dict with ``shared``, ``only_in_a``, ``only_in_b`` (counts), ``jaccard`` (shared / union, NaN
    when both are empty) and ``shared_tokens``, ``only_in_a_tokens``, ``only_in_b_tokens`` (lists
    sorted by length, then alphabetically).

    Examples
    --------
    >>> result = shared_tokens(["A", "C", "AA", "TTT"], ["A", "C", "AC"])
    >>> result["shared"], result["only_in_a_tokens"], result["only_in_b_tokens"], result["jaccard"]
    (2, ['AA', 'TTT'], ['AC'], 0.4)
    """
    set_a, set_b = _token_set(a), _token_set(b)
    union = set_a | set_b
    return {
        "shared": len(set_a & set_b),
        "only_in_a": len(set_a - set_b),
        "only_in_b": len(set_b - set_a),
        "jaccard": len(set_a & set_b) / len(union) if union else math.nan,
        "shared_tokens": _by_length(set_a & set_b),
        "only_in_a_tokens": _by_length(set_a - set_b),
        "only_in_b_tokens": _by_length(set_b - set_a),
    }


def _json_ready(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Summary as strict JSON values: NaN becomes null, histogram keys become strings."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, Mapping):
            value = {str(k): v for k, v in value.items()}
        elif isinstance(value, float) and math.isnan(value):
            value = None
        out[key] = value
    return out


def write_vocabulary_report(table: pd.DataFrame, summary: Mapping[str, Any],
                            out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the token table and the summary into ``out_dir``, each file atomically.

    Returns
    -------
    dict with ``tokens`` (path of ``vocabulary_tokens.parquet``) and ``summary`` (path of
    ``vocabulary_summary.json``; NaN is written as null). Read them back with
    ``read_vocabulary_report``.
    """
    from grover_core.atomic import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"tokens": out_dir / VOCABULARY_TOKENS, "summary": out_dir / VOCABULARY_SUMMARY}
    with atomic_path(paths["tokens"]) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(paths["summary"]) as tmp:
        tmp.write_text(json.dumps(_json_ready(summary), indent=2, allow_nan=False) + "\n")
    return paths


def read_vocabulary_report(out_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the token table and summary that ``write_vocabulary_report`` wrote into ``out_dir``.

    The summary comes back as it was written: null becomes NaN, histogram keys become ints.
    """
    out_dir = Path(out_dir)
    for name in (VOCABULARY_TOKENS, VOCABULARY_SUMMARY):
        if not (out_dir / name).is_file():
            raise FileNotFoundError(f"Did not find {name} in {out_dir}. Write it with `write_vocabulary_report` first.")
    table = pd.read_parquet(out_dir / VOCABULARY_TOKENS)
    summary = json.loads((out_dir / VOCABULARY_SUMMARY).read_text())
    for key, value in summary.items():
        if value is None:
            summary[key] = math.nan
    summary["length_histogram"] = {int(k): int(v) for k, v in summary.get("length_histogram", {}).items()}
    return table, summary


def _number(value: float, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def format_vocabulary_report(summary: Mapping[str, Any]) -> str:
    """Return a plain-text report of a ``vocabulary_summary`` for the terminal: aligned lines and a length histogram.

    Examples
    --------
    >>> table = vocabulary_token_table(["A", "C", "G", "T", "AA", "TT", "AAT"], frequencies=[4, 2, 2, 4, 3, 3, 1])
    >>> print(format_vocabulary_report(vocabulary_summary(table, name="toy")))  # doctest: +NORMALIZE_WHITESPACE
    Vocabulary toy
      tokens (non-special)         7  (+0 special)
      token length                 1-3 nt, mean 1.57 nt
      nucleotides per token        1.421  (frequency-weighted mean length)
      5-mers / 6-mers              0 / 0
      start with A or T            71.4%
      CG is a token                no
      reverse complement is token  85.7%
      median token frequency       3
      tokens never used            0
      Spearman length~frequency    -0.430
      frequency balance            0.960  (H/log V, 1 = flat); Gini 0.211 (0 = flat)
      tokens in genome             19  (27 nt)
    Token lengths (tokens per length; a run of lengths without tokens shows as one line)
      1 | ######################################## 4
      2 | #################### 2
      3 | ########## 1
    """
    s = summary
    lines = [
        f"Vocabulary {s['name']}",
        ("tokens (non-special)", f"{s['vocab_size']:,}  (+{s['special_tokens']} special)"),
        ("token length", f"{s['min_length']}-{s['max_length']} nt, mean {_number(s['mean_length'], '.2f')} nt"),
        ("nucleotides per token", f"{_number(s['nucleotides_per_token'], '.3f')}  (frequency-weighted mean length)"),
        ("5-mers / 6-mers", f"{s['kmers_5']} / {s['kmers_6']}"),
        ("start with A or T", _number(s["share_starting_with_at"], ".1%")),
        ("CG is a token", "yes" if s["has_cg_token"] else "no"),
        ("reverse complement is token", _number(s["share_with_reverse_complement"], ".1%")),
        ("median token frequency", _number(s["median_frequency"], ",.1f").removesuffix(".0")),
        ("tokens never used", f"{s['unused_tokens']:,}"),
        ("Spearman length~frequency", _number(s["spearman_length_frequency"], "+.3f")),
        ("frequency balance", f"{_number(s['frequency_balance'], '.3f')}  (H/log V, 1 = flat); "
                              f"Gini {_number(s['frequency_gini'], '.3f')} (0 = flat)"),
        ("tokens in genome", f"{s['total_tokens']:,}  ({s['total_nucleotides']:,} nt)"),
    ]
    label_width = max(len(line[0]) for line in lines[1:])
    text = [lines[0]] + [f"  {label:<{label_width}}  {value}" for label, value in lines[1:]]
    histogram = {int(k): int(v) for k, v in s["length_histogram"].items()}
    if histogram:
        text.append("Token lengths (tokens per length; a run of lengths without tokens shows as one line)")
        peak = max(histogram.values())
        rows: list[tuple[str, int]] = []
        length = min(histogram)
        while length <= max(histogram):
            if length in histogram:
                rows.append((str(length), histogram[length]))
                length += 1
                continue
            end = length
            while end + 1 not in histogram:
                end += 1
            rows.append((str(length) if end == length else f"{length}-{end}", 0))
            length = end + 1
        key_width = max(len(key) for key, _ in rows)
        for key, count in rows:
            bar = "#" * math.ceil(_HISTOGRAM_WIDTH * count / peak) + " " if count else ""
            text.append(f"  {key:>{key_width}} | {bar}{count}")
    return "\n".join(text)


def _default_name(tokenizer_dir: Path) -> str:
    # A run folder keeps its tokenizer in <run>/tokenizer: name the vocabulary after the run.
    resolved = tokenizer_dir.resolve()
    return resolved.parent.name if resolved.name == "tokenizer" else resolved.name


def vocabulary_report_for(tokenizer_dir: str | os.PathLike, tokenized_dir: str | os.PathLike, *,
                          name: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the token table and summary of a tokenizer folder, with frequencies from a tokenized genome.

    Parameters
    ----------
    tokenizer_dir
        A tokenizer folder (``tokenizer.json``), e.g. ``<run>/tokenizer``.
    tokenized_dir
        A tokenized-genome folder written with that tokenizer, e.g. ``<run>/tokenized``.
    name
        Label of the vocabulary. Default: the run folder's name for ``<run>/tokenizer``, else the
        tokenizer folder's name.

    Returns
    -------
    table
        ``vocabulary_token_table`` of every tokenizer id (columns ``VOCABULARY_COLUMNS``).
    summary
        ``vocabulary_summary`` of that table, plus ``tokenizer_dir`` and ``tokenized_dir``
        (absolute paths, the provenance of the numbers).

    Raises
    ------
    GroverInputError
        When the tokenized genome holds ids the tokenizer does not have (another tokenizer wrote it).
    """
    from grover_core.errors import GroverInputError
    from grover_core.tokenized_genome import TokenizedGenome
    from grover_core.tokenizer import load_tokenizer, special_token_mask, token_strings

    tokenizer_dir, tokenized_dir = Path(tokenizer_dir), Path(tokenized_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    tokens = token_strings(tokenizer)
    if not (tokenized_dir / "index.json").is_file():
        raise GroverInputError(
            f"no index.json in {tokenized_dir}: not a tokenized-genome folder. Give a run's tokenized/ "
            "folder (written by `grover demo` or `grover build`)."
        )
    counts = TokenizedGenome.open(tokenized_dir).token_counts()
    if counts.size > len(tokens):
        if counts[len(tokens):].any():
            raise GroverInputError(
                f"{tokenized_dir} holds token ids up to {int(np.flatnonzero(counts).max())} but the tokenizer in "
                f"{tokenizer_dir} has only {len(tokens)} ids. Give the tokenizer that tokenized this genome."
            )
        counts = counts[: len(tokens)]
    frequencies = np.zeros(len(tokens), dtype=np.int64)
    frequencies[: counts.size] = counts
    table = vocabulary_token_table(tokens, frequencies=frequencies, special=special_token_mask(tokenizer))
    summary = vocabulary_summary(table, name=name if name is not None else _default_name(tokenizer_dir))
    summary["tokenizer_dir"] = str(tokenizer_dir.resolve())
    summary["tokenized_dir"] = str(tokenized_dir.resolve())
    return table, summary
