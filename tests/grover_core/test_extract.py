"""Genome-wide extraction into bounded summaries: exact sums, exact bottom-K samples, resume, shards."""
import dataclasses
import json

import numpy as np
import pytest
import torch

import grover_core.extract as extract_module
from grover_core.errors import GroverInputError
from grover_core.extract import (EMPTY_KEY, Extraction, ExtractionConfig, ExtractionShard, bottom_k_update,
                                 expected_sampled_share, extract_embeddings, merge_bottom_k, merge_extractions,
                                 occurrence_priority, resolve_dtype)
from grover_core.model import build_model, model_config
from grover_core.pretrain import collate_windows
from grover_core.tokenizer import special_token_mask

from .test_model_and_pretrain import make_genome


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    rng = np.random.default_rng(3)
    units = ["".join(rng.choice(list("ACGT"), size=29)) for _ in range(4)]
    sequences = {f"chr{i}": "".join(units[j] for j in rng.integers(0, 4, size=120)) for i in (1, 2, 3)}
    tokenizer, genome, _ = make_genome(tmp_path_factory.mktemp("extract"), sequences, cycles=25)
    model = build_model(model_config("grover-test"), tokenizer, seed=2).eval()
    return tokenizer, genome, model


# float32: the exactness tests compare with a float32 forward pass (bf16 has its own test below).
CONFIG = ExtractionConfig(window_tokens=40, max_windows=None, batch_size=5, reservoir_size=6, checkpoint_every=4,
                          dtype="float32")


@pytest.fixture(scope="module")
def extracted(setup, tmp_path_factory):
    tokenizer, genome, model = setup
    out = extract_embeddings(model, tokenizer, genome, tmp_path_factory.mktemp("x") / "emb", config=CONFIG)
    return Extraction.open(out)


def brute_bottom_k(tokens, keys, vocab, capacity):
    expected = np.full((vocab, capacity), EMPTY_KEY, dtype=np.uint64)
    for token in range(vocab):
        mine = np.sort(keys[tokens == token])[:capacity]
        expected[token, :mine.size] = mine
    return expected


@pytest.mark.parametrize("batch", [1, 7, 50, 1000])
def test_bottom_k_keeps_the_k_smallest_in_any_batching_and_fills_a_prefix(batch):
    rng = np.random.default_rng(batch)
    vocab, capacity, n = 9, 5, 600
    tokens = rng.integers(0, vocab - 1, size=n)  # the last token never occurs
    keys = rng.permutation(np.arange(n, dtype=np.uint64) * 7919 % 100003)
    held = np.full((vocab, capacity), EMPTY_KEY, dtype=np.uint64)
    owner = np.full((vocab, capacity), -1)
    for begin in range(0, n, batch):
        accepted, rows, slots = bottom_k_update(held, tokens[begin:begin + batch], keys[begin:begin + batch])
        assert np.array_equal(rows, tokens[begin:begin + batch][accepted])
        assert len(set(zip(rows.tolist(), slots.tolist()))) == rows.size  # a slot is written once per batch
        owner[rows, slots] = begin + accepted
        # Prefix property: the filled slots of each token are 0..filled-1.
        filled = (held != EMPTY_KEY).sum(axis=1)
        assert all((held[t, :filled[t]] != EMPTY_KEY).all() for t in range(vocab))
    assert np.array_equal(np.sort(held, axis=1), brute_bottom_k(tokens, keys, vocab, capacity))
    # Every slot points at the occurrence whose key it holds.
    valid = held != EMPTY_KEY
    assert np.array_equal(keys[owner[valid]], held[valid])
    assert (held[vocab - 1] == EMPTY_KEY).all()


def test_merging_partial_samples_equals_one_sample():
    rng = np.random.default_rng(0)
    vocab, capacity = 6, 4
    tokens = rng.integers(0, vocab, size=300)
    keys = rng.choice(10**9, size=300, replace=False).astype(np.uint64)
    parts = []
    for part in range(3):
        held = np.full((vocab, capacity), EMPTY_KEY, dtype=np.uint64)
        bottom_k_update(held, tokens[part::3], keys[part::3])
        parts.append((held, None))
    merged, source, slot = merge_bottom_k(parts)
    assert np.array_equal(merged, brute_bottom_k(tokens, keys, vocab, capacity))
    valid = source >= 0
    assert np.array_equal(np.stack([p[0] for p in parts])[source[valid], np.nonzero(valid)[0], slot[valid]],
                          merged[valid])


def test_priorities_depend_on_seed_chromosome_and_position_only():
    starts = np.arange(0, 1000, 7)
    a = occurrence_priority(0, starts, seed=1)
    assert np.array_equal(a, occurrence_priority(0, starts.copy(), seed=1))
    assert not np.array_equal(a, occurrence_priority(1, starts, seed=1))
    assert not np.array_equal(a, occurrence_priority(0, starts, seed=2))
    assert np.unique(a).size == a.size and (a < EMPTY_KEY).all()


def test_token_means_and_counts_cover_every_token_once(setup, extracted):
    tokenizer, genome, model = setup
    means = extracted.token_means()
    assert np.array_equal(means["count"], genome.token_counts())  # whole genome, every token once
    windows = extracted.windows
    assert windows.groupby("chromosome")["n_tokens"].sum().to_dict() == genome.tokens_per_chromosome
    layers = model.config.num_hidden_layers + 1
    sums = np.zeros((layers, len(tokenizer), model.config.hidden_size))
    for window in windows.itertuples():
        ids, hidden = _window_hidden(model, tokenizer, genome, window)
        for layer in range(layers):
            np.add.at(sums[layer], ids, hidden[layer])
    expected = sums / np.maximum(means["count"], 1)[None, :, None]
    for layer in range(layers):
        assert np.allclose(means[f"layer_{layer}"], expected[layer], atol=1e-5)


def _window_hidden(model, tokenizer, genome, window):
    ids = np.asarray(genome.ids(window.chromosome)[window.first_token:window.first_token + window.n_tokens],
                     dtype=np.int64)
    with torch.no_grad():
        out = model(**collate_windows([ids], tokenizer), output_hidden_states=True)
    return ids, torch.stack(out.hidden_states)[:, 0, 1:-1].numpy()  # [layers, tokens, hidden]


def test_samples_are_the_embeddings_of_the_occurrences_they_name(setup, extracted):
    tokenizer, genome, model = setup
    samples, filled = extracted.samples(), extracted.filled()
    counts = extracted.token_means()["count"]
    assert np.array_equal(filled, np.minimum(counts, CONFIG.reservoir_size))
    positions = extracted.sample_positions()
    assert len(positions) == filled.sum()
    assert (positions["slot"] < filled[positions["token_id"]]).all()
    windows = extracted.windows
    checked = 0
    for row in positions.sample(12, random_state=0).itertuples():
        chromosome_windows = windows[windows["chromosome"] == row.chromosome]
        window = chromosome_windows[chromosome_windows["start"] <= row.start].iloc[-1]
        ids, hidden = _window_hidden(model, tokenizer, genome, window)
        starts = np.asarray(genome.starts(row.chromosome)[window.first_token:window.first_token + window.n_tokens])
        offset = int(np.flatnonzero(starts == row.start)[0])
        assert ids[offset] == row.token_id
        assert np.allclose(samples[:, row.token_id, row.slot].astype(np.float32), hidden[:, offset], atol=2e-2,
                           rtol=1e-2)
        checked += 1
    assert checked == 12


def test_window_summaries_equal_a_direct_computation(setup, extracted):
    tokenizer, genome, model = setup
    cls, mean, similarity = extracted.window_arrays()
    windows = extracted.windows
    assert len(windows) == cls.shape[0] == mean.shape[0] == similarity.shape[0]
    assert (windows["end"] > windows["start"]).all()
    for index in (0, len(windows) // 2, len(windows) - 1):
        window = windows.iloc[index]
        ids, hidden = _window_hidden(model, tokenizer, genome, window)
        assert np.allclose(mean[index].astype(np.float32), hidden.mean(axis=1), atol=1e-2)
        unit = hidden / np.linalg.norm(hidden, axis=-1, keepdims=True)
        n = unit.shape[1]
        pairwise = np.einsum("lih,ljh->lij", unit, unit)
        expected = (pairwise.sum(axis=(1, 2)) - np.trace(pairwise, axis1=1, axis2=2)) / (n * (n - 1))
        assert np.allclose(similarity[index], expected, atol=1e-4)
    with torch.no_grad():
        window = windows.iloc[0]
        ids = np.asarray(genome.ids(window.chromosome)[window.first_token:window.first_token + window.n_tokens],
                         dtype=np.int64)
        out = model(**collate_windows([ids], tokenizer), output_hidden_states=True)
    assert np.allclose(cls[0].astype(np.float32), torch.stack(out.hidden_states)[:, 0, 0].numpy(), atol=1e-2)


def _same_extraction(a: Extraction, b: Extraction, *, atol=1e-6, windows=True):
    assert np.array_equal(a.sample_keys(), b.sample_keys())
    assert a.sample_positions().equals(b.sample_positions())
    assert np.array_equal(a.samples(), b.samples())
    ma, mb = a.token_means(), b.token_means()
    assert set(ma) == set(mb)
    for key in ma:
        assert np.allclose(ma[key], mb[key], atol=atol), key
    if not windows:
        return
    for x, y in zip(a.window_arrays(), b.window_arrays()):
        assert np.allclose(np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32), atol=1e-3,
                           equal_nan=True)


# The torch path (a GPU's) leaves each batch's writes to the next one: resuming must not lose them.
BOTH_PATHS = pytest.mark.parametrize("fused", [True, False], ids=["compiled", "torch"])


@BOTH_PATHS
def test_a_killed_extraction_resumes_to_the_same_result(setup, extracted, tmp_path, monkeypatch, fused):
    monkeypatch.setattr(extract_module, "FUSED_CPU_PASS", fused)
    tokenizer, genome, model = setup
    out = tmp_path / "emb"
    extract_embeddings(model, tokenizer, genome, out, config=CONFIG, stop_after_windows=6)
    with pytest.raises(GroverInputError, match="unfinished"):
        Extraction.open(out)
    assert (out / "checkpoint.npz").is_file()
    extract_embeddings(model, tokenizer, genome, out, config=CONFIG, stop_after_windows=5)
    extract_embeddings(model, tokenizer, genome, out, config=CONFIG)
    resumed = Extraction.open(out)
    assert not (out / "checkpoint.npz").exists()
    assert resumed.info["windows_done"] == len(resumed.windows)
    _same_extraction(resumed, extracted, atol=1e-6 if fused else 1e-5)  # torch: float32 sums within a batch


@pytest.mark.parametrize("block_bytes", [extract_module.MERGE_BLOCK_BYTES, 700])
def test_shards_merge_exactly_into_the_single_process_result(setup, extracted, tmp_path, monkeypatch, block_bytes):
    """Also when the merge copies a few samples and window rows at a time (700 bytes: blocks of 1-3)."""
    monkeypatch.setattr(extract_module, "MERGE_BLOCK_BYTES", block_bytes)
    tokenizer, genome, model = setup
    parts = [extract_embeddings(model, tokenizer, genome, tmp_path / f"shard{i}", config=CONFIG,
                                shard=ExtractionShard(i, 3)) for i in range(3)]
    merged = Extraction.open(merge_extractions(parts, tmp_path / "merged"))
    _same_extraction(merged, extracted, atol=1e-5)
    with pytest.raises(GroverInputError, match="shards 0..2"):
        merge_extractions(parts[:2], tmp_path / "bad")


@pytest.mark.parametrize("window_embeddings", [True, False])
def test_the_torch_path_gpus_take_gives_the_compiled_cpu_result(setup, extracted, tmp_path, monkeypatch,
                                                                 window_embeddings):
    tokenizer, genome, model = setup
    config = dataclasses.replace(CONFIG, window_embeddings=window_embeddings)
    runs = {}
    for fused in (True, False):
        monkeypatch.setattr(extract_module, "FUSED_CPU_PASS", fused)
        runs[fused] = Extraction.open(extract_embeddings(model, tokenizer, genome, tmp_path / f"fused{fused}",
                                                         config=config))
    if window_embeddings:
        _same_extraction(runs[True], extracted)  # the module's reference run took the compiled path
    else:
        assert not runs[True].has_window_embeddings()
    # The torch path sums in float32 within a batch, the compiled one in float64: equal but for rounding;
    # the float16 samples are the same bits.
    _same_extraction(runs[False], runs[True], atol=1e-5, windows=window_embeddings)


def _close_extraction(a: Extraction, b: Extraction, *, tolerance: float):
    """The same occurrences, counts and windows; embeddings within ``tolerance`` of the largest value."""
    assert np.array_equal(a.sample_keys(), b.sample_keys())
    assert a.sample_positions().equals(b.sample_positions())
    assert a.windows.equals(b.windows)
    ma, mb = a.token_means(), b.token_means()
    assert np.array_equal(ma["count"], mb["count"])
    arrays = [(a.samples(), b.samples())] + [(ma[k], mb[k]) for k in ma if k != "count"] + \
        list(zip(a.window_arrays(), b.window_arrays()))
    for x, y in arrays:
        x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
        assert np.array_equal(np.isnan(x), np.isnan(y))
        scale = np.nanmax(np.abs(y))
        assert np.nanmax(np.abs(x - y)) <= tolerance * scale, (np.nanmax(np.abs(x - y)), scale)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA GPU; the torch path it takes runs on the CPU in "
                           "test_the_torch_path_gpus_take_gives_the_compiled_cpu_result")
def test_a_gpu_extraction_gives_the_cpu_result_and_resumes(setup, extracted, tmp_path):
    tokenizer, genome, model = setup
    gpu_model = build_model(model_config("grover-test"), tokenizer, seed=2).eval()
    gpu_model.load_state_dict(model.state_dict())
    gpu_model.to("cuda")
    # float32 on the GPU: the CPU's result but for the order of float additions (TF32 is off by default).
    on_gpu = Extraction.open(extract_embeddings(gpu_model, tokenizer, genome, tmp_path / "f32", config=CONFIG))
    _close_extraction(on_gpu, extracted, tolerance=1e-3)
    # "auto" is bf16 on a GPU: the same occurrences, embeddings within bf16's precision.
    auto = dataclasses.replace(CONFIG, dtype="auto")
    bf16 = Extraction.open(extract_embeddings(gpu_model, tokenizer, genome, tmp_path / "bf16", config=auto))
    assert bf16.info["dtype"] == "bfloat16"
    _close_extraction(bf16, extracted, tolerance=3e-2)
    # Killed twice and resumed: the bookkeeping exact, the embeddings those of the uninterrupted GPU run.
    out = tmp_path / "resumed"
    extract_embeddings(gpu_model, tokenizer, genome, out, config=auto, stop_after_windows=6)
    extract_embeddings(gpu_model, tokenizer, genome, out, config=auto, stop_after_windows=5)
    _close_extraction(Extraction.open(extract_embeddings(gpu_model, tokenizer, genome, out, config=auto)), bf16,
                      tolerance=1e-6)


def test_another_model_starts_over_instead_of_resuming(setup, tmp_path):
    tokenizer, genome, model = setup
    out = tmp_path / "emb"
    extract_embeddings(model, tokenizer, genome, out, config=CONFIG, stop_after_windows=5)
    other = build_model(model_config("grover-test"), tokenizer, seed=9).eval()
    extract_embeddings(other, tokenizer, genome, out, config=CONFIG)
    fresh = extract_embeddings(other, tokenizer, genome, tmp_path / "fresh", config=CONFIG)
    _same_extraction(Extraction.open(out), Extraction.open(fresh))


def test_unknown_chromosome_and_missing_folder_are_named(setup, tmp_path):
    tokenizer, genome, model = setup
    with pytest.raises(GroverInputError, match="chrX"):
        extract_embeddings(model, tokenizer, genome, tmp_path / "e",
                           config=ExtractionConfig(chromosomes=("chrX",), window_tokens=40))
    with pytest.raises(GroverInputError, match="grover embed"):
        Extraction.open(tmp_path / "nothing")


def test_regions_from_a_bed_limit_the_windows_to_their_tokens(setup, tmp_path):
    tokenizer, genome, model = setup
    bed = tmp_path / "regions.bed"
    bed.write_text("# two regions\nchr2\t100\t900\tfirst\nchr3\t0\t150\n")
    config = ExtractionConfig(window_tokens=16, batch_size=4, reservoir_size=3, regions=str(bed))
    extraction = Extraction.open(extract_embeddings(model, tokenizer, genome, tmp_path / "e", config=config))
    windows = extraction.windows
    assert set(windows["chromosome"]) == {"chr2", "chr3"} and (windows["n_tokens"] <= 16).all()
    expected = 0
    for chromosome, start, end in (("chr2", 100, 900), ("chr3", 0, 150)):
        starts = np.asarray(genome.starts(chromosome))
        expected += int(((starts >= start) & (starts < end)).sum())
    assert windows["n_tokens"].sum() == expected == extraction.token_means()["count"].sum()
    positions = extraction.sample_positions()
    inside = ((positions.chromosome == "chr2") & positions.start.between(100, 899)) | \
        ((positions.chromosome == "chr3") & positions.start.between(0, 149))
    assert inside.all()
    bad = tmp_path / "bad.bed"
    bad.write_text("chr2\tten\t20\n")
    with pytest.raises(GroverInputError, match="line 1"):
        extract_embeddings(model, tokenizer, genome, tmp_path / "f",
                           config=ExtractionConfig(window_tokens=16, regions=str(bad)))


def _forward_windows(model) -> list[int]:
    """Record the batch sizes the encoder sees (the extractor runs ``model.base_model``)."""
    seen = []
    model.base_model.register_forward_hook(lambda module, args, kwargs, out: seen.append(kwargs["input_ids"].shape[0]),
                                           with_kwargs=True)
    return seen


def test_checkpoints_follow_wall_time_and_a_changed_cadence_resumes(setup, extracted, tmp_path, monkeypatch):
    tokenizer, genome, model = setup
    clock = iter(range(0, 10**6, 30))  # every look at the clock: 30 s later
    monkeypatch.setattr(extract_module.time, "monotonic", lambda: next(clock))
    saved = []
    checkpoint = extract_module._checkpoint
    monkeypatch.setattr(extract_module, "_checkpoint", lambda out_dir, state, *args: (
        saved.append(state.windows_done), checkpoint(out_dir, state, *args)))
    timed = dataclasses.replace(CONFIG, checkpoint_every=None, checkpoint_seconds=60)
    out = tmp_path / "emb"
    extract_embeddings(model, tokenizer, genome, out, config=timed, stop_after_windows=30)
    # One look at the clock at the start and one per batch: 30, 60, 90 ... s, so a checkpoint every
    # second batch (10 windows), and one more where the run stops.
    assert saved == [10, 20, 30]
    assert json.loads((out / "extraction.json").read_text())["windows_done"] == 30
    # Another cadence is not another job: the run resumes at window 30 instead of starting over.
    copy = build_model(model_config("grover-test"), tokenizer, seed=2).eval()
    copy.load_state_dict(model.state_dict())
    seen = _forward_windows(copy)
    saved.clear()
    extract_embeddings(copy, tokenizer, genome, out, config=dataclasses.replace(timed, checkpoint_seconds=None))
    assert sum(seen) == len(extracted.windows) - 30 and saved == []
    resumed = Extraction.open(out)
    assert resumed.info["config"]["checkpoint_seconds"] is None
    _same_extraction(resumed, extracted)


@BOTH_PATHS
def test_a_kill_between_checkpoints_resumes_to_the_same_result(setup, extracted, tmp_path, monkeypatch, fused):
    """Samples go into samples.npy before the next checkpoint; the replayed batches rewrite them exactly."""
    monkeypatch.setattr(extract_module, "FUSED_CPU_PASS", fused)
    tokenizer, genome, model = setup
    config = dataclasses.replace(CONFIG, checkpoint_every=None, checkpoint_seconds=None)
    out = tmp_path / "emb"
    extract_embeddings(model, tokenizer, genome, out, config=config, stop_after_windows=10)
    before = np.load(out / "samples.npy").copy()
    stream, calls = extract_module._stream_batch, []

    class Killed(Exception):
        pass

    def killed_after_three_batches(*args, **kwargs):
        writes = stream(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            raise Killed
        return writes

    monkeypatch.setattr(extract_module, "_stream_batch", killed_after_three_batches)
    with pytest.raises(Killed):
        extract_embeddings(model, tokenizer, genome, out, config=config)
    # The kill came 15 windows after the checkpoint, whose samples are already in the file.
    assert json.loads((out / "extraction.json").read_text())["windows_done"] == 10
    assert not np.array_equal(np.load(out / "samples.npy"), before)
    calls.clear()
    monkeypatch.setattr(extract_module, "_stream_batch",
                        lambda *args, **kwargs: (calls.append(1), stream(*args, **kwargs))[1])
    extract_embeddings(model, tokenizer, genome, out, config=config)
    assert len(calls) * CONFIG.batch_size == len(extracted.windows) - 10  # resumed at the checkpoint
    _same_extraction(Extraction.open(out), extracted, atol=1e-6 if fused else 1e-5)


@BOTH_PATHS
def test_a_kill_right_after_a_checkpoint_loses_nothing_it_counted(setup, extracted, tmp_path, monkeypatch, fused):
    """A checkpoint after every batch, a kill while the next one streams: the torch path's pending writes of
    the batch the checkpoint counted must be in the files already, since the resumed run starts after it."""
    monkeypatch.setattr(extract_module, "FUSED_CPU_PASS", fused)
    tokenizer, genome, model = setup
    config = dataclasses.replace(CONFIG, checkpoint_every=CONFIG.batch_size, checkpoint_seconds=None)
    stream, calls = extract_module._stream_batch, []

    class Killed(Exception):
        pass

    def killed_in_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Killed
        return stream(*args, **kwargs)

    out = tmp_path / "emb"
    monkeypatch.setattr(extract_module, "_stream_batch", killed_in_the_third_batch)
    with pytest.raises(Killed):
        extract_embeddings(model, tokenizer, genome, out, config=config)
    assert json.loads((out / "extraction.json").read_text())["windows_done"] == 2 * CONFIG.batch_size
    monkeypatch.setattr(extract_module, "_stream_batch", stream)
    extract_embeddings(model, tokenizer, genome, out, config=config)
    _same_extraction(Extraction.open(out), extracted, atol=1e-6 if fused else 1e-5)


def test_bf16_extraction_is_close_to_float32_and_samples_the_same_occurrences(setup, tmp_path):
    tokenizer, genome, _ = setup
    model = build_model(model_config("grover-tiny"), tokenizer, seed=2).eval()
    runs = {dtype: Extraction.open(extract_embeddings(model, tokenizer, genome, tmp_path / dtype,
                                                      config=dataclasses.replace(CONFIG, dtype=dtype)))
            for dtype in ("float32", "bfloat16")}
    bf16, reference = runs["bfloat16"], runs["float32"]
    assert bf16.info["dtype"] == "bfloat16" and reference.info["dtype"] == "float32"
    # The bookkeeping depends on positions only: the same occurrences, counts and windows.
    assert np.array_equal(bf16.sample_keys(), reference.sample_keys())
    assert bf16.sample_positions().equals(reference.sample_positions())
    ours, theirs = bf16.token_means(), reference.token_means()
    assert np.array_equal(ours["count"], theirs["count"])
    seen = theirs["count"] > 0
    for layer in range(model.config.num_hidden_layers + 1):
        a, b = ours[f"layer_{layer}"][seen], theirs[f"layer_{layer}"][seen]
        # Stated tolerance: 1e-3 of the largest value, cosine > 0.9999 for every token (measured on this
        # randomly initialised model: up to 3e-4; a trained model's larger layer outputs err more).
        error = np.abs(a - b).max() / np.abs(b).max()
        assert error < 1e-3, (layer, error)
        if layer > 0:
            assert error > 0  # the encoder layers did run in bf16 (layer 0, the embeddings, stays float32)
        cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() > 0.9999, (layer, cosine.min())


def test_dtype_auto_means_bf16_on_a_gpu_or_a_cpu_with_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(extract_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_dtype("auto", cpu) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float32", torch.device("cuda")) == torch.float32
    monkeypatch.setattr(extract_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(GroverInputError, match="float16"):
        resolve_dtype("float16", cpu)


def test_expected_sampled_share_matches_bottom_k_sampling():
    rng = np.random.default_rng(11)
    counts = np.array([3, 40, 300, 0])
    capacity, trials = 10, 120
    written = {1: 0, 16: 0}
    for _ in range(trials):
        tokens = rng.permutation(np.repeat(np.arange(counts.size), counts))
        keys = rng.integers(0, 2**63, size=tokens.size, dtype=np.uint64)
        for batch in written:
            held = np.full((counts.size, capacity), EMPTY_KEY, dtype=np.uint64)
            for begin in range(0, tokens.size, batch):
                written[batch] += bottom_k_update(held, tokens[begin:begin + batch], keys[begin:begin + batch])[0].size
    expected = expected_sampled_share(counts, capacity)
    assert written[1] / (trials * counts.sum()) == pytest.approx(expected, rel=0.03)  # offered one at a time
    # In batches an offer beaten within its own batch is never written: fewer writes, never more.
    assert written[16] < written[1]
    # What it says about scale: below K every occurrence is written; a long stream writes a small share.
    assert expected_sampled_share([5, 9], capacity) == 1.0
    assert expected_sampled_share([10**9], 500) < 0.01
    assert expected_sampled_share([], 500) == 0.0


LINUX_ONLY = pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                                reason="/proc/self/smaps, mincore and madvise are Linux")


def _resident(array: np.ndarray) -> np.ndarray:
    """Per page of a memory-mapped array: whether it is in memory (Linux ``mincore``)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    start = array.ctypes.data - array.ctypes.data % page
    pages = (array.ctypes.data + array.nbytes - start + page - 1) // page
    vector = (ctypes.c_ubyte * pages)()
    assert libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(pages * page), vector) == 0
    return np.frombuffer(vector, dtype=np.uint8) & 1 == 1


def _sample_rows(tmp_path, layers=2, vocab=6, capacity=64, hidden=64):
    """A fresh sparse ``samples.npy``; a row (one token of one layer) is 8 KiB: two whole pages."""
    path = tmp_path / "samples.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(layers, vocab, capacity, hidden))
    return np.load(path, mmap_mode="r+")


def _filled_pages(samples, held) -> np.ndarray:
    """Per page of ``samples`` (as in ``_resident``): whether it holds a byte of a filled slot."""
    page = 4096
    first = samples.ctypes.data - samples.ctypes.data % page
    filled = np.zeros(_resident(samples).size, dtype=bool)
    for layer in range(samples.shape[0]):
        for token, count in enumerate(held):
            if count:
                begin = samples[layer, token].ctypes.data - first
                end = begin + count * samples.strides[2]
                filled[begin // page:(end - 1) // page + 1] = True
    return filled


@LINUX_ONLY
def test_prefault_maps_in_the_slots_a_run_will_fill_and_nothing_else(tmp_path):
    samples = _sample_rows(tmp_path)
    held = np.array([0, 3, 64, 64, 0, 1])
    extract_module._prefault(samples, held)
    resident, filled = _resident(samples), _filled_pages(samples, held)
    assert resident[filled].all()
    # Apart from the first page (the .npy header) and the last (numpy sizes a new file by writing its last byte):
    assert not resident[1:-1][~filled[1:-1]].any()
    assert (~filled).sum() > 4  # the free rows span pages of their own
    # Its short ranges went with read-ahead off, yet the mapping is still one kernel area, read-ahead on
    # ("rr": random reads): one area per range would add up to vm.max_map_count on a large vocabulary.
    areas = _areas(samples)
    assert len(areas) == 1 and "rr" not in areas[0]


def test_expected_held_is_what_an_extraction_fills(setup, extracted):
    tokenizer, genome, model = setup
    windows = extracted.windows
    arrays = {name: (genome.ids(name), genome.starts(name)) for name in windows["chromosome"].unique()}
    skip = special_token_mask(tokenizer)
    empty = np.full((len(tokenizer), CONFIG.reservoir_size), EMPTY_KEY, dtype=np.uint64)
    assert np.array_equal(extract_module._expected_held(windows, arrays, empty, skip), extracted.filled())
    # Read in pieces of 7 tokens (runs cut; the gaps of every other window gathered): the same counts.
    # K above any count, so the counts themselves show:
    large = np.full((len(tokenizer), int(windows["n_tokens"].sum()) + 1), EMPTY_KEY, dtype=np.uint64)
    for todo in (windows, windows.iloc[::2]):
        whole = extract_module._expected_held(todo, arrays, large, skip)
        assert np.array_equal(extract_module._expected_held(todo, arrays, large, skip, chunk_tokens=7), whole)
        direct = np.bincount(np.concatenate([genome.ids(c)[f:f + n] for c, f, n in
                                             zip(todo["chromosome"], todo["first_token"], todo["n_tokens"])]),
                             minlength=len(tokenizer))
        assert np.array_equal(whole, np.where(skip, 0, direct))
    # Resuming half-way: what is held counts, and a full token stays at K.
    half = windows.iloc[len(windows) // 2:]
    held = extract_module._expected_held(windows.iloc[:len(windows) // 2], arrays, empty, skip)
    keys = np.where(np.arange(CONFIG.reservoir_size)[None, :] < held[:, None], np.uint64(1), EMPTY_KEY)
    assert np.array_equal(extract_module._expected_held(half, arrays, keys, skip), extracted.filled())


@LINUX_ONLY
@pytest.mark.parametrize("limit_mb", [None, 20 / 1024])
def test_sorting_the_slots_orders_each_token_by_key_and_leaves_free_slots_unmapped(tmp_path, limit_mb):
    samples = _sample_rows(tmp_path)
    layers, vocab, capacity, hidden = samples.shape
    rng = np.random.default_rng(5)
    held = np.array([0, 5, 64, 2, 0, 40])
    mapped = extract_module._MappedPages(store=[samples], limit_mb=limit_mb)
    extract_module._prefault(samples, held, mapped)  # as an extraction does before its samples land
    keys = np.full((vocab, capacity), EMPTY_KEY, dtype=np.uint64)
    for token, count in enumerate(held):
        keys[token, :count] = rng.permutation(count).astype(np.uint64) * 7 + 1
        # Each slot holds one value (from layer, token and key) repeated: where a vector came from shows.
        for layer in range(layers if count else 0):
            samples[layer, token, :count] = np.stack([np.full(hidden, layer * 1000 + token * 100 + k % 100)
                                                      for k in keys[token, :count]]).astype(np.float16)
    state = extract_module._State(sums=torch.zeros(1), counts=held.copy(), keys=keys.copy(),
                                  sample_chromosome=np.where(keys == EMPTY_KEY, -1, 0).astype(np.int32),
                                  sample_start=np.where(keys == EMPTY_KEY, 0, keys).astype(np.int64),
                                  windows_done=0)
    mapped.release()
    extract_module._sort_slots_by_key(samples, state, mapped)
    if limit_mb is not None:  # sorted in blocks of at most half the limit, released past it
        assert _mapped_rss(samples) <= 20 * 2**10 + 16 * 2**10
    for token, count in enumerate(held):
        assert np.array_equal(state.keys[token, :count], np.sort(keys[token, :count]))
        assert (state.keys[token, count:] == EMPTY_KEY).all()
        assert np.array_equal(state.sample_start[token, :count], state.keys[token, :count].astype(np.int64))
        for layer in range(layers):
            expected = layer * 1000 + token * 100 + state.keys[token, :count].astype(np.int64) % 100
            assert np.array_equal(samples[layer, token, :count, 0].astype(np.int64), expected)
            assert (samples[layer, token, :count] == samples[layer, token, :count, :1]).all()
    resident, filled = _resident(samples), _filled_pages(samples, held)
    assert not resident[1:-1][~filled[1:-1]].any()  # first page: the .npy header; last: numpy's sizing byte


def _smaps(array: np.ndarray, field: str) -> list[list[str]]:
    """``field`` (``Rss:``, ``VmFlags:``...) of each kernel memory area over ``array``'s bytes (``/proc/self/smaps``):
    the words after it, one list per area."""
    begin, end = array.ctypes.data, array.ctypes.data + array.nbytes
    values, inside = [], False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                low, high = (int(x, 16) for x in head.split("-"))
                inside = low < end and high > begin
            elif head == field and inside:
                values.append(line.split()[1:])
    return values


def _areas(array: np.ndarray) -> list[list[str]]:
    """The ``VmFlags`` of each kernel memory area over ``array``'s bytes."""
    return _smaps(array, "VmFlags:")


def _mapped_rss(array: np.ndarray) -> int:
    """Bytes of ``array``'s pages mapped into this process (the Rss of the memory areas over it).

    Unlike ``_resident`` (page cache), this drops when the process lets go of a page that stays cached.
    """
    return sum(int(kb) * 1024 for kb, _unit in _smaps(array, "Rss:"))


@LINUX_ONLY
@pytest.mark.parametrize("role, limit_mb", [("store", None), ("store", 1.0), ("streamed", None)])
def test_mapped_pages_stay_under_the_limit_and_keep_what_was_written(tmp_path, role, limit_mb):
    path = tmp_path / "big.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(16 * 2**20,))
    array = np.load(path, mmap_mode="r+")
    mapped = extract_module._MappedPages(**{role: [array]}, limit_mb=limit_mb)
    chunk, peak = 256 * 2**10, 0
    for begin in range(0, array.size, chunk):
        array[begin:begin + chunk] = (begin // chunk) % 251 + 1
        peak = max(peak, _mapped_rss(array))
        mapped.check()
    if role == "streamed":  # let go after every check, whatever the limit
        assert peak <= 2 * chunk and _mapped_rss(array) == 0
    elif limit_mb is None:
        assert peak >= 15 * 2**20 and mapped.releases == 0  # without a limit every page written stays mapped
    else:
        assert peak <= 2**20 + chunk and mapped.releases >= 14
    expected = (np.arange(array.size) // chunk) % 251 + 1
    assert np.array_equal(array, expected)  # released pages come back from the page cache, unchanged
    array.flush()
    del array
    assert np.array_equal(np.load(path), expected)  # and reach the file


@LINUX_ONLY
def test_prefault_over_the_limit_populates_the_page_cache_in_rounds(tmp_path):
    samples = _sample_rows(tmp_path, vocab=12)  # 24 rows of 8 KiB
    held = np.array([0, 3, 64, 64, 0, 1, 64, 64, 64, 20, 64, 64])
    limit_mb = 32 / 1024  # 32 KiB: rounds of at most 16 KiB
    extract_module._prefault(samples, held, extract_module._MappedPages(store=[samples], limit_mb=limit_mb))
    resident, filled = _resident(samples), _filled_pages(samples, held)
    assert resident[filled].all()  # every page a slot will use is in the page cache,
    assert not resident[1:-1][~filled[1:-1]].any()
    assert _mapped_rss(samples) <= 32 * 2**10  # and at most the limit of them is mapped


@LINUX_ONLY
def test_an_extraction_under_a_tiny_mapped_memory_limit_gives_the_same_files(setup, extracted, tmp_path,
                                                                             monkeypatch):
    """Pages are let go after every batch (and while sorting); killed there and resumed without a limit."""
    tokenizer, genome, model = setup
    releases = []
    release = extract_module._MappedPages.release
    monkeypatch.setattr(extract_module._MappedPages, "release",
                        lambda self: (releases.append(1), release(self)))
    limited = dataclasses.replace(CONFIG, mapped_memory_mb=1e-3)
    out = tmp_path / "emb"
    extract_embeddings(model, tokenizer, genome, out, config=limited, stop_after_windows=10)
    assert len(releases) >= 2
    extract_embeddings(model, tokenizer, genome, out, config=dataclasses.replace(limited, mapped_memory_mb=None))
    _same_extraction(Extraction.open(out), extracted)
    releases.clear()
    whole = Extraction.open(extract_embeddings(model, tokenizer, genome, tmp_path / "whole", config=limited))
    _same_extraction(whole, extracted)
    assert len(releases) >= len(extracted.windows) // CONFIG.batch_size  # at least one per batch


@pytest.mark.parametrize("setting", [{"reservoir_size": 0}, {"batch_size": -1}, {"mapped_memory_mb": 0},
                                     {"checkpoint_seconds": -5.0}])
def test_a_setting_that_is_not_positive_is_named(setting):
    (name, value), = setting.items()
    with pytest.raises(GroverInputError, match=f"{name} = {value!r}: it must be positive"):
        ExtractionConfig(**setting)


@LINUX_ONLY
def test_the_window_arrays_written_are_let_go_after_every_batch(setup, extracted, tmp_path, monkeypatch):
    tokenizer, genome, model = setup
    stream, mapped_before = extract_module._stream_batch, []

    def measured(*args, **kwargs):
        mapped_before.append(sum(_mapped_rss(array) for array in kwargs["window_arrays"]))
        assert stream(*args, **kwargs) is None  # the CPU path writes before it returns
        assert sum(_mapped_rss(array) for array in kwargs["window_arrays"]) > 0  # this batch's rows

    monkeypatch.setattr(extract_module, "_stream_batch", measured)
    out = extract_embeddings(model, tokenizer, genome, tmp_path / "emb", config=CONFIG)
    assert len(mapped_before) > 3 and not any(mapped_before)
    _same_extraction(Extraction.open(out), extracted)
