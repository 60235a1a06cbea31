"""Tokenize a whole genome with any tokenizer folder: the engine of ``grover tokenize``.

The genome (FASTA or .2bit) is streamed one record at a time. Each A/C/G/T run is tokenized on its own,
so no token crosses an N or any other non-ACGT letter, with our exact encoders:

* BPE folders (ours or GROVER-shaped): the merges of ``tokenizer.json`` applied in order
  (``bpe.encode_codes``), which is the segmentation ``learn_bpe`` ends with and what the Hugging
  Face tokenizer gives for the run.
* k-mer folders: ``kmer.encode_kmers``.

The output is a tokenized-genome folder (see ``grover_core.tokenized_genome``): the same
``index.json`` and ``<chrom>.ids.npy`` / ``<chrom>.starts.npy`` layout, ids are tokenizer ids and
starts chromosome coordinates, written by ``tokenized_genome.write_tokenized_chromosomes``. One
chromosome's tokens are held in memory at a time, and the folder appears atomically when everything
is written.
"""
from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from grover_core.atomic import atomic_path
from grover_core.errors import GroverInputError
from grover_core.genome import GenomeStats, iter_segments
from grover_core.tokenized_genome import INDEX, write_tokenized_chromosomes
from grover_core.tokenizer_folder import load_any_tokenizer


def _check_file_name(path: Path, chromosome: str) -> None:
    if "/" in chromosome or "\\" in chromosome or chromosome in (".", "..") or "\x00" in chromosome:
        raise GroverInputError(f"{path}: chromosome name {chromosome!r} cannot be a file name in the tokenized "
                               "genome. Rename the record (e.g. replace '/' by '_').")


def tokenize_genome(
    genome_path: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    chromosomes: Collection[str] | None = None,
    progress: bool = False,
) -> Path:
    """Tokenize a genome with a tokenizer folder and write a tokenized-genome folder; return it.

    Parameters
    ----------
    genome_path
        FASTA (plain or gzip) or .2bit genome.
    tokenizer_dir
        Any folder ``load_any_tokenizer`` reads: our BPE or k-mer vocabularies, or GROVER's.
    out_dir
        Folder to write (replaced atomically if it exists).
    chromosomes
        Only these records (all when None); a name absent from the genome is an error.
    progress
        Show a progress bar over nucleotides.

    Returns
    -------
    The folder, holding ``index.json`` (``vocab_size``, ``id_dtype``, ``chromosomes`` -> ``tokens``,
    plus provenance: ``produced_by``, ``params``, ``tokenizer`` and ``genome_stats``) and per
    chromosome with at least one A/C/G/T ``<chrom>.ids.npy`` (tokenizer ids) and
    ``<chrom>.starts.npy`` (0-based chromosome position of each token's first nucleotide).

    Raises
    ------
    GroverInputError
        For a bad genome or tokenizer folder (see ``iter_segments`` and ``load_any_tokenizer``).
    """
    genome_path, out_dir = Path(genome_path), Path(out_dir)
    folder = load_any_tokenizer(tokenizer_dir)
    stats = GenomeStats()
    bar = tqdm(desc="tokenizing", unit="nt", unit_scale=True, disable=not progress)
    # Runs are kept in compact dtypes until their chromosome is written (about 6 bytes per token).
    id_dtype = np.uint16 if folder.vocab_size <= 2**16 else np.uint32

    def chromosomes_tokenized() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        # Runs of one chromosome are consecutive; each chromosome is handed on as soon as it is complete.
        current, ids, starts = None, [], []
        for segment in iter_segments(genome_path, chromosomes=chromosomes, stats=stats):
            if segment.chromosome != current:
                if current is not None:
                    yield current, np.concatenate(ids), np.concatenate(starts)
                current, ids, starts = segment.chromosome, [], []
                _check_file_name(genome_path, current)
                start_dtype = np.uint32 if stats.chromosome_lengths[current] <= 2**32 else np.int64
                bar.set_postfix_str(current)
            run_ids, run_starts = folder.segment_run(segment.codes)
            ids.append(run_ids.astype(id_dtype))
            starts.append((run_starts + segment.start).astype(start_dtype))
            bar.update(segment.codes.size)
        if current is not None:
            yield current, np.concatenate(ids), np.concatenate(starts)

    with atomic_path(out_dir, is_dir=True) as tmp:
        write_tokenized_chromosomes(tmp, chromosomes_tokenized(), id_offset=0, vocab_size=folder.vocab_size)
        bar.close()
        index = json.loads((tmp / INDEX).read_text())
        index.update({
            "produced_by": "grover_core.tokenize_genome.tokenize_genome",
            "params": {"genome": str(genome_path), "tokenizer": str(tokenizer_dir),
                       "chromosomes": sorted(chromosomes) if chromosomes is not None else None},
            "tokenizer": {"kind": folder.kind, "k": folder.k, "overlapping": folder.overlapping,
                          "merges": len(folder.merges), "notes": list(folder.notes)},
            "genome_stats": stats.as_dict(),
        })
        (tmp / INDEX).write_text(json.dumps(index, indent=2))
    return out_dir
