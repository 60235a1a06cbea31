"""The analyses of a run (``grover analyze``): a registry of name -> function, inputs, outputs.

Each analysis reads what the run folder already holds (tokenizer, tokenized genome, the embedding
extraction in ``embeddings/``, annotation files named in the manifest) and returns tables; the
runner writes each table atomically as Parquet and records the analysis in ``manifest.json``
(function, parameters, inputs' fingerprints, seconds). The dashboard lists ``ANALYSES`` to show
what a run holds and which command makes what is missing.

Annotations are described by ``AnnotationSpec``: a BED of labels (ChromHMM states; repeats with
their class column and strand) or a signal (bedGraph/bigWig: replication timing, binned into
early/late for probes and colours). Column naming in the tables:

* ``tokens.parquet``: ``<annotation>.share_<label>`` = share of the token's genome occurrences inside
  the label (``repeats.share_SINE/Alu_plus``), ``<annotation>.share_any``.
* ``window_annotations.parquet``: ``<annotation>`` = majority label of the window,
  ``<annotation>.frac_<label>`` = share of its bp; for signals ``<annotation>.mean`` and the bin
  in ``<annotation>``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import analysis.run as run_format
from grover_core.atomic import atomic_path, atomic_write_text
from grover_core.errors import GroverInputError
from grover_core.extract import Extraction


@dataclass(frozen=True)
class AnnotationSpec:
    """One annotation file and how to read it."""

    name: str  # column prefix in the tables, e.g. "chromatin_states"
    path: str
    kind: str = "labels"  # "labels" (BED) or "signal" (bedGraph / bigWig)
    label_column: int = 3  # 0-based BED column of the label (3 = name; repeats.bed: 6 = repeat class)
    strand_aware: bool = False  # token shares split by the annotation's strand (repeats)
    timing_bins: str = "median"  # signals: "median" (late/early) or "tertiles"

    def __post_init__(self):
        if self.kind not in ("labels", "signal"):
            raise GroverInputError(f"annotation {self.name!r}: kind must be 'labels' or 'signal', not {self.kind!r}.")


def demo_annotations(genome_dir: str | Path) -> tuple[AnnotationSpec, ...]:
    """The demo genome's annotations: chromatin states, repeat classes (stranded), replication timing."""
    genome_dir = Path(genome_dir)
    return (
        AnnotationSpec("chromatin_states", str(genome_dir / "chromatin_states.bed")),
        AnnotationSpec("repeats", str(genome_dir / "repeats.bed"), label_column=6, strand_aware=True),
        AnnotationSpec("replication_timing", str(genome_dir / "replication_timing.bedGraph"), kind="signal"),
    )


@dataclass(frozen=True)
class AnalysisConfig:
    """Parameters of every analysis (saved in the manifest beside the outputs)."""

    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    pc_components: int = 5  # leading PCs correlated with token properties (the paper's table)
    window_projection_max: int = 5000  # windows projected per layer (evenly spread; the page says so)
    cluster_methods: tuple[str, ...] = ("kmeans", "hierarchical")
    n_clusters: int = 8
    self_similarity_min_samples: int = 2
    repeat_annotation: str = "repeats"  # whose share_any marks repeat-localised tokens
    repeat_threshold: float = 0.5
    probe_folds: int = 5
    probe_kmer_k: int = 4
    probe_max_windows: int = 20000
    probe_min_class_count: int = 10
    probe_classifier: str = "ridge"  # or "logistic" (slower; see analysis.probes.fit_predict_fold)
    seed: int = 0
    annotations: tuple[AnnotationSpec, ...] = ()


@dataclass
class RunInputs:
    """What the analyses read from a run folder, loaded once and shared."""

    run_dir: Path
    config: AnalysisConfig
    _cache: dict = field(default_factory=dict)

    def cached(self, key: str, make: Callable):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def extraction(self) -> Extraction:
        return self.cached("extraction", lambda: Extraction.open(self.run_dir / run_format.EMBEDDINGS_DIR))

    @property
    def tokenizer(self):
        from grover_core.tokenizer import load_tokenizer

        return self.cached("tokenizer", lambda: load_tokenizer(self.run_dir / run_format.TOKENIZER_DIR))

    @property
    def genome(self):
        from grover_core.tokenized_genome import TokenizedGenome

        return self.cached("genome", lambda: TokenizedGenome.open(self.run_dir / run_format.TOKENIZED_DIR))

    @property
    def token_strings(self) -> list[str]:
        from grover_core.tokenizer import token_strings

        return self.cached("strings", lambda: token_strings(self.tokenizer))

    @property
    def special(self) -> np.ndarray:
        from grover_core.tokenizer import special_token_mask

        return self.cached("special", lambda: special_token_mask(self.tokenizer))

    @property
    def token_lengths(self) -> np.ndarray:
        return self.cached("lengths", lambda: np.array(
            [0 if s else len(t) for t, s in zip(self.token_strings, self.special)], dtype=np.int64))

    def annotation(self, spec: AnnotationSpec) -> pd.DataFrame:
        from analysis.annotations import read_bed, read_signal

        if not Path(spec.path).is_file():
            raise GroverInputError(f"annotation {spec.name!r}: file not found: {spec.path}. Fix the path with "
                                   f"`grover analyze {self.run_dir} --annotation {spec.name}=PATH`.")
        if spec.kind == "signal":
            return self.cached(f"annotation:{spec.name}", lambda: read_signal(spec.path))
        return self.cached(f"annotation:{spec.name}", lambda: read_bed(spec.path, label_column=spec.label_column,
                                                                        strand=spec.strand_aware))

    def table(self, name: str) -> pd.DataFrame:
        return self.cached(f"table:{name}", lambda: pd.read_parquet(run_format.artifact_path(self.run_dir, name)))

    def window_sequences(self, windows: pd.DataFrame) -> list[str]:
        """Each window's nucleotides, rebuilt from its tokens (N gaps between ACGT runs are not included)."""
        strings = np.asarray(self.token_strings, dtype=object)
        out = []
        for name, first, count in zip(windows["chromosome"], windows["first_token"], windows["n_tokens"]):
            ids = np.asarray(self.genome.ids(name)[first:first + count])
            out.append("".join(strings[ids]))
        return out


# --- the analyses: each returns {artifact file: table} -------------------------------------------------


def token_table(inputs: RunInputs) -> dict[str, pd.DataFrame]:
    """tokens.parquet: properties of every token plus its occurrences' shares in each annotation label."""
    from analysis.annotations import token_occurrence_shares
    from analysis.token_properties import token_property_table
    from analysis.vocabulary import reverse_complement

    counts = inputs.extraction.token_means()["count"]
    tokens = token_property_table(inputs.token_strings, frequencies=inputs.genome.token_counts(),
                                  special=inputs.special, embedding_counts=counts)
    index = {t: i for i, t in enumerate(inputs.token_strings)}
    tokens["reverse_complement_id"] = [-1 if s else index.get(reverse_complement(t), -1)
                                       for t, s in zip(tokens["token"], tokens["is_special"])]
    for spec in inputs.config.annotations:
        if spec.kind != "labels":
            continue
        shares = token_occurrence_shares(inputs.genome, inputs.annotation(spec), token_lengths=inputs.token_lengths,
                                         strand_aware=spec.strand_aware)
        columns = [c for c in shares.columns if c.startswith("share_")]
        tokens = tokens.join(shares[columns].rename(columns=lambda c: f"{spec.name}.{c}"), on="token_id")
    return {run_format.TOKENS: tokens}


def _seen_tokens(inputs: RunInputs) -> pd.DataFrame:
    tokens = inputs.table(run_format.TOKENS)
    return tokens[(~tokens["is_special"]) & (tokens["embedding_count"] > 0)]


def _layers(inputs: RunInputs) -> list[int]:
    return list(range(int(inputs.extraction.info["layers"])))


def token_projections(inputs: RunInputs) -> dict[str, pd.DataFrame]:
    """Token maps per layer (PCA, UMAP) and the Spearman table of leading PCs with token properties."""
    from analysis.projections import pc_property_correlations, pca_projection, umap_projection

    config = inputs.config
    seen = _seen_tokens(inputs)
    ids = seen["token_id"].to_numpy()
    properties = seen.assign(frequency=np.log10(seen["frequency"].clip(lower=1)))
    means = inputs.extraction.token_means()
    projections, correlations = [], []
    for layer in _layers(inputs):
        matrix = means[f"layer_{layer}"][ids]
        pca_xy, _ = pca_projection(matrix, n_components=2, seed=config.seed)
        umap_xy = umap_projection(matrix, n_neighbors=config.umap_n_neighbors, min_dist=config.umap_min_dist,
                                  seed=config.seed)
        for method, xy in (("pca", pca_xy), ("umap", umap_xy)):
            projections.append(pd.DataFrame({"layer": layer, "method": method, "token_id": ids,
                                             "x": xy[:, 0].astype(np.float32), "y": xy[:, 1].astype(np.float32)}))
        table = pc_property_correlations(matrix, properties, columns=run_format.TOKEN_PROPERTIES,
                                         n_components=config.pc_components, seed=config.seed)
        correlations.append(table.assign(layer=layer))
    return {run_format.TOKEN_PROJECTIONS: pd.concat(projections, ignore_index=True),
            run_format.PC_CORRELATIONS: pd.concat(correlations, ignore_index=True)[
                list(run_format.PC_CORRELATION_COLUMNS)]}


def _spread(n_total: int, n_keep: int) -> np.ndarray:
    if n_total <= n_keep:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n_keep).round().astype(int))


def window_projections(inputs: RunInputs) -> dict[str, pd.DataFrame]:
    """Window maps per layer: PCA and UMAP of the windows' mean embeddings (evenly thinned past a cap)."""
    from analysis.projections import pca_projection, umap_projection

    config = inputs.config
    _, mean, _ = inputs.extraction.window_arrays()
    keep = _spread(mean.shape[0], config.window_projection_max)
    parts = []
    for layer in _layers(inputs):
        matrix = np.asarray(mean[keep, layer], dtype=np.float32)
        pca_xy, _ = pca_projection(matrix, n_components=2, seed=config.seed)
        umap_xy = umap_projection(matrix, n_neighbors=config.umap_n_neighbors, min_dist=config.umap_min_dist,
                                  seed=config.seed)
        for method, xy in (("pca", pca_xy), ("umap", umap_xy)):
            parts.append(pd.DataFrame({"layer": layer, "method": method, "window_index": keep,
                                       "x": xy[:, 0].astype(np.float32), "y": xy[:, 1].astype(np.float32)}))
    return {run_format.WINDOW_PROJECTIONS: pd.concat(parts, ignore_index=True)}


def self_similarity(inputs: RunInputs) -> dict[str, pd.DataFrame]:
    """Self-similarity per token and layer, the anisotropy baseline, group summaries, intra-window similarity."""
    from analysis.self_similarity import (intra_window_summary, self_similarity_table, summarise_by_group,
                                          token_groups)

    config = inputs.config
    extraction = inputs.extraction
    table = self_similarity_table(extraction.samples(), extraction.filled(),
                                  min_samples=config.self_similarity_min_samples)
    tokens = inputs.table(run_format.TOKENS)
    repeat_column = f"{config.repeat_annotation}.share_any"
    groups = token_groups(tokens, repeat_share_column=repeat_column, repeat_threshold=config.repeat_threshold)
    baseline = table.groupby("layer", as_index=False)["baseline"].first()
    out = {run_format.SELF_SIMILARITY: table, run_format.SELF_SIMILARITY_BASELINE: baseline,
           run_format.SELF_SIMILARITY_GROUPS: summarise_by_group(table, groups)}
    if extraction.has_window_embeddings():
        out[run_format.INTRA_WINDOW_SIMILARITY] = intra_window_summary(np.asarray(extraction.window_arrays()[2]))
    return out


def clusters(inputs: RunInputs) -> dict[str, pd.DataFrame]:
    """Clusters of token embeddings per layer and method, their profiles and annotation enrichment."""
    from analysis.clusters import cluster_enrichment, cluster_profiles, cluster_table

    config = inputs.config
    seen = _seen_tokens(inputs).reset_index(drop=True)
    ids = seen["token_id"].to_numpy()
    means = inputs.extraction.token_means()
    by_layer = {layer: means[f"layer_{layer}"][ids] for layer in _layers(inputs)}
    n_clusters = min(config.n_clusters, len(seen))
    table = cluster_table(by_layer, seen, methods=config.cluster_methods, n_clusters=n_clusters, seed=config.seed)
    share_columns = [c for c in seen.columns if ".share_" in c]
    profiles, enrichments = [], []
    for (layer, method), part in table.groupby(["layer", "method"], sort=True):
        labels = part.set_index("token_id").loc[ids, "cluster"].to_numpy()
        profiles.append(cluster_profiles(labels, seen).assign(layer=layer, method=method))
        if share_columns:
            enrichments.append(cluster_enrichment(labels, seen[share_columns]).assign(layer=layer, method=method))
    out = {run_format.TOKEN_CLUSTERS: table, run_format.CLUSTER_PROFILES: pd.concat(profiles, ignore_index=True)}
    if enrichments:
        out[run_format.CLUSTER_ENRICHMENT] = pd.concat(enrichments, ignore_index=True)
    return out


def window_annotations(inputs: RunInputs) -> dict[str, pd.DataFrame]:
    """Every window's majority label and label fractions per annotation; signal means and bins."""
    from analysis.annotations import binned_timing, window_label_fractions, window_signal_mean

    windows = inputs.extraction.windows
    table = windows.copy()
    regions = windows.rename(columns={"chromosome": "Chromosome", "start": "Start", "end": "End"})[
        ["Chromosome", "Start", "End"]]
    for spec in inputs.config.annotations:
        annotation = inputs.annotation(spec)
        if spec.kind == "signal":
            values = window_signal_mean(regions, annotation)
            table[f"{spec.name}.mean"] = values
            table[spec.name] = binned_timing(values, method=spec.timing_bins)
            continue
        labelled = annotation.drop(columns=["Strand"], errors="ignore")
        fractions = window_label_fractions(regions, labelled)
        table[spec.name] = fractions["majority_label"].to_numpy()
        table[f"{spec.name}.covered_fraction"] = fractions["covered_fraction"].to_numpy()
        for column in fractions.columns:
            if column.startswith("frac_"):
                table[f"{spec.name}.{column}"] = fractions[column].to_numpy()
    return {run_format.WINDOW_ANNOTATIONS: table}


def probes(inputs: RunInputs) -> dict[str, pd.DataFrame]:
    """Per layer, a linear probe per annotation on window embeddings (held-out chromosomes), beside a
    k-mer-count probe on the same windows."""
    from analysis.probes import kmer_count_features, probe_layers

    config = inputs.config
    annotated = inputs.table(run_format.WINDOW_ANNOTATIONS)
    _, mean, _ = inputs.extraction.window_arrays()
    keep = _spread(len(annotated), config.probe_max_windows)
    windows = annotated.iloc[keep]
    embeddings = np.asarray(mean[keep], dtype=np.float32)
    groups = windows["chromosome"].to_numpy()
    if np.unique(groups).size < 2:
        raise GroverInputError("probes need windows on at least 2 chromosomes (they hold chromosomes out); "
                               "embed more chromosomes.")
    baseline = kmer_count_features(inputs.window_sequences(windows), k=config.probe_kmer_k)
    parts = []
    for spec in config.annotations:
        labels = windows[spec.name].astype(str).to_numpy()
        parts.append(probe_layers(embeddings, labels, groups, baseline_features=baseline, annotation=spec.name,
                                  n_folds=config.probe_folds, seed=config.seed,
                                  min_class_count=config.probe_min_class_count,
                                  classifier=config.probe_classifier))
    if not parts:
        raise GroverInputError("probes need at least one annotation; give one with --annotation NAME=PATH.")
    return {run_format.PROBE_SCORES: pd.concat(parts, ignore_index=True)}


@dataclass(frozen=True)
class Analysis:
    """One registered analysis: what it needs, what it writes, and the function that does it."""

    name: str
    function: Callable[[RunInputs], dict[str, pd.DataFrame]]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    description: str
    needs_annotations: bool = False


ANALYSES: tuple[Analysis, ...] = (
    Analysis("tokens", token_table, (run_format.TOKENIZER_DIR, run_format.TOKENIZED_DIR, run_format.EMBEDDINGS_DIR),
             (run_format.TOKENS,), "token properties and shares of occurrences in each annotation label"),
    Analysis("token_projections", token_projections, (run_format.EMBEDDINGS_DIR, run_format.TOKENS),
             (run_format.TOKEN_PROJECTIONS, run_format.PC_CORRELATIONS),
             "token maps per layer (PCA, UMAP) and the PC-property Spearman table"),
    Analysis("self_similarity", self_similarity, (run_format.EMBEDDINGS_DIR, run_format.TOKENS),
             (run_format.SELF_SIMILARITY, run_format.SELF_SIMILARITY_BASELINE, run_format.SELF_SIMILARITY_GROUPS,
              run_format.INTRA_WINDOW_SIMILARITY),
             "self-similarity per token and layer with the anisotropy baseline; by token group; intra-window"),
    Analysis("clusters", clusters, (run_format.EMBEDDINGS_DIR, run_format.TOKENS),
             (run_format.TOKEN_CLUSTERS, run_format.CLUSTER_PROFILES, run_format.CLUSTER_ENRICHMENT),
             "k-means / hierarchical clusters of token embeddings, profiles, annotation enrichment"),
    Analysis("window_projections", window_projections, (run_format.EMBEDDINGS_DIR,),
             (run_format.WINDOW_PROJECTIONS,), "window maps per layer (PCA, UMAP of window mean embeddings)"),
    Analysis("window_annotations", window_annotations, (run_format.EMBEDDINGS_DIR,),
             (run_format.WINDOW_ANNOTATIONS,), "majority label and label fractions of every window",
             needs_annotations=True),
    Analysis("probes", probes, (run_format.EMBEDDINGS_DIR, run_format.WINDOW_ANNOTATIONS),
             (run_format.PROBE_SCORES,), "linear probes per layer and annotation vs a k-mer-count baseline",
             needs_annotations=True),
)
ANALYSIS_NAMES = tuple(a.name for a in ANALYSES)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries an artifact depends on (the manifest's provenance)."""
    import importlib.metadata
    import platform

    versions = {"python": platform.python_version()}
    for package in ("grover-lens", "torch", "transformers", "tokenizers", "numpy", "pandas", "scikit-learn",
                    "umap-learn", "pyranges"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def jsonable(value):
    """``value`` as plain JSON types (dataclasses as dicts, anything else unknown as its string)."""
    return json.loads(json.dumps(value, default=lambda o: asdict(o) if dataclasses.is_dataclass(o) else str(o)))


def run_analyses(run_dir: str | Path, *, config: AnalysisConfig, only: tuple[str, ...] = (),
                 progress: bool = False, command: str | None = None) -> dict[str, dict]:
    """Run the registered analyses (all, or ``only`` these) on a run folder; return their manifest records.

    Each output is written atomically; the manifest, when present, is updated (also atomically)
    with one record per analysis (``command``: the command line that asked for it, recorded as
    provenance; default: this Python call). Analyses that need annotations are skipped, and say so in the
    record, when the config names none.
    """
    run_dir = Path(run_dir)
    unknown = sorted(set(only) - set(ANALYSIS_NAMES))
    if unknown:
        raise GroverInputError(f"unknown analyses {', '.join(unknown)}; choose from {', '.join(ANALYSIS_NAMES)}.")
    inputs = RunInputs(run_dir, config)
    records: dict[str, dict] = {}
    for analysis in ANALYSES:
        if only and analysis.name not in only:
            continue
        if analysis.needs_annotations and not config.annotations:
            records[analysis.name] = {"skipped": "no annotations given (--annotation NAME=PATH)"}
            continue
        if progress:
            print(f"  analysis: {analysis.name}", flush=True)
        started = time.perf_counter()
        tables = analysis.function(inputs)
        for file, table in tables.items():
            with atomic_path(run_dir / file) as tmp:
                table.to_parquet(tmp, index=False)
            inputs._cache[f"table:{file}"] = table
        records[analysis.name] = {
            "produced_by": f"{analysis.function.__module__}.{analysis.function.__name__}",
            "outputs": sorted(tables), "inputs": list(analysis.inputs), "description": analysis.description,
            "params": jsonable(config), "seconds": round(time.perf_counter() - started, 2),
            "command": command or f"grover_lens.analyze.run_analyses({str(run_dir)!r})",
            "versions": library_versions(),
            "model_fingerprint": inputs.extraction.info["model_fingerprint"],
            "tokenizer_fingerprint": inputs.extraction.info["tokenizer_fingerprint"],
        }
    manifest_path = run_dir / run_format.MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        manifest.setdefault("analyses", {}).update(records)
        saved = jsonable(config)
        if not config.annotations:  # a run without annotations given keeps the ones the run already names
            saved["annotations"] = (manifest.get("analysis_config") or {}).get("annotations", [])
        manifest["analysis_config"] = saved
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
    return records


def analysis_config_from_manifest(manifest: dict) -> AnalysisConfig:
    """Rebuild the ``AnalysisConfig`` a run was analysed with (its annotations included)."""
    saved = dict(manifest.get("analysis_config") or {})
    saved["annotations"] = tuple(AnnotationSpec(**spec) for spec in saved.get("annotations", ()))
    for key in ("cluster_methods",):
        if key in saved:
            saved[key] = tuple(saved[key])
    known = {f.name for f in dataclasses.fields(AnalysisConfig)}
    return AnalysisConfig(**{k: v for k, v in saved.items() if k in known})
