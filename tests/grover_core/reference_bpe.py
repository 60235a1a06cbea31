"""A deliberately simple BPE, obviously right and slow: the reference the fast learner is checked against.

Same rules as grover_core.bpe: count every adjacent pair inside each segment; merge the most frequent
pair (ties: left token, then right token, alphabetically; a pair whose concatenation is already a
token is skipped) left to right without overlap; stop below ``min_pair_count``.
"""
from collections import Counter


def merge_left_to_right(tokens: list[str], left: str, right: str) -> list[str]:
    out, i = [], 0
    while i < len(tokens):
        if i + 1 < len(tokens) and tokens[i] == left and tokens[i + 1] == right:
            out.append(left + right)
            i += 2
        else:
            out.append(tokens[i])
            i += 1
    return out


def reference_bpe(segments: list[str], cycles: int, min_pair_count: int = 2):
    """Return (merges, counts, segmented segments)."""
    segmented = [list(s) for s in segments]
    known = set("ACGT")
    merges, merge_counts = [], []
    while len(merges) < cycles:
        pairs = Counter()
        for tokens in segmented:
            pairs.update(zip(tokens, tokens[1:]))
        candidates = [(-n, a, b) for (a, b), n in pairs.items() if a + b not in known]
        if not candidates:
            break
        negative_count, left, right = min(candidates)
        if -negative_count < min_pair_count:
            break
        segmented = [merge_left_to_right(tokens, left, right) for tokens in segmented]
        known.add(left + right)
        merges.append((left, right))
        merge_counts.append(-negative_count)
    return merges, merge_counts, segmented
