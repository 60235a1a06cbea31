"""Shared fixtures: one tiny demo run built once per test session, through the real pipeline."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach the network: the Hugging Face stack must work from local folders alone.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_genome_dir(tmp_path_factory) -> Path:
    """The tiny demo genome (about 300 kb) with its annotation files."""
    from grover_core.demo_genome import DemoGenomeConfig, write_demo_genome

    out = tmp_path_factory.mktemp("genome")
    write_demo_genome(out, config=DemoGenomeConfig.tiny())
    return out


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory, tiny_genome_dir) -> Path:
    """A runs folder holding one real run, ``tiny``, built by the pipeline (UMAP compiles once here)."""
    from grover_lens.pipeline import DemoConfig, build_demo

    runs = tmp_path_factory.mktemp("runs")
    build_demo(runs / "tiny", genome_dir=tiny_genome_dir, config=DemoConfig.tiny(), progress=False)
    return runs


@pytest.fixture(scope="session")
def tiny_run(runs_dir) -> Path:
    """Path of the tiny run folder (manifest, tokenizer, model, tables)."""
    return runs_dir / "tiny"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and two threads fight on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
