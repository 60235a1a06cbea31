import numpy as np
import pytest
import torch

from grover_core.embed import embed_sequences, window_starts
from grover_core.model import build_model, model_config
from grover_core.pretrain import collate_windows

from .test_model_and_pretrain import make_genome


def test_window_starts_cover_every_token():
    for n in range(1, 60):
        starts = window_starts(n, window=8, stride=5)
        covered = set()
        for s in starts:
            covered |= set(range(s, min(n, s + 8)))
        assert covered == set(range(n)) and starts[0] == 0 and starts[-1] + 8 >= n


def test_embeddings_match_a_direct_forward_and_spans_map_back(tmp_path):
    rng = np.random.default_rng(2)
    tokenizer, _, _ = make_genome(tmp_path, {"c": "".join(rng.choice(list("ACGT"), size=4000))}, cycles=30)
    model = build_model(model_config("grover-test"), tokenizer, seed=0).eval()
    short = "".join(rng.choice(list("ACGT"), size=60))
    long = "".join(rng.choice(list("ACGT"), size=900))  # many more tokens than the 64-token window
    result_short, result_long = embed_sequences(model, tokenizer, [short, long], stride=16)
    # Short: one window, identical to running the model directly.
    ids = np.asarray(tokenizer(short, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        states = model(**collate_windows([ids], tokenizer), output_hidden_states=True).hidden_states
    direct = torch.stack(states)[:, 0, 1:-1].numpy()
    assert result_short.hidden.shape == (3, ids.size, 32)
    assert np.allclose(result_short.hidden, direct, atol=1e-5)
    assert np.allclose(result_short.mean, direct.mean(axis=1), atol=1e-5)
    assert np.allclose(result_short.cls, torch.stack(states)[:, 0, 0].numpy(), atol=1e-5)
    # Long: every token has an embedding and its span is its nucleotides.
    assert result_long.ids.size > 64
    assert (np.abs(result_long.hidden).sum(axis=2) > 0).all()
    assert all(long[s:e] == t for (s, e), t in zip(result_long.spans, result_long.tokens))
    assert result_long.spans[0, 0] == 0 and result_long.spans[-1, 1] == len(long)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA GPU; test_embeddings_match_a_direct_forward_and_spans_map_back runs this on the CPU")
def test_embeddings_on_a_gpu_are_the_cpu_ones_within_bf16(tmp_path):
    rng = np.random.default_rng(5)
    tokenizer, _, _ = make_genome(tmp_path, {"c": "".join(rng.choice(list("ACGT"), size=4000))}, cycles=30)
    model = build_model(model_config("grover-test"), tokenizer, seed=0).eval()
    sequences = ["".join(rng.choice(list("ACGT"), size=n)) for n in (60, 900)]
    on_cpu = embed_sequences(model, tokenizer, sequences, stride=16)
    on_gpu = embed_sequences(model.to("cuda"), tokenizer, sequences, stride=16)
    for a, b in zip(on_gpu, on_cpu):
        assert a.tokens == b.tokens and np.array_equal(a.spans, b.spans)
        for x, y in ((a.hidden, b.hidden), (a.mean, b.mean), (a.cls, b.cls)):
            assert x.dtype == np.float32 and x.shape == y.shape
            assert np.abs(x - y).max() <= 3e-2 * np.abs(y).max()  # bf16 autocast on the GPU
