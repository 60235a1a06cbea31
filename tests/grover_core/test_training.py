"""The training run: exact resume, checkpoints, splits, 2-process data parallelism, the GPU path."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from grover_core.checkpoint import latest_checkpoint, list_checkpoints
from grover_core.errors import GroverInputError
from grover_core.model import build_model, model_config
from grover_core.pretrain import (MaskingConfig, PretrainConfig, locality_attention_mask, locality_strength_at, pretrain,
                                  split_regions)

from .test_model_and_pretrain import make_genome

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    rng = np.random.default_rng(5)
    units = ["".join(rng.choice(list("ACGT"), size=29)) for _ in range(4)]
    sequences = {f"chr{i}": "".join(units[j] for j in rng.integers(0, 4, size=200)) for i in (1, 2, 3)}
    tokenizer, genome, _ = make_genome(tmp_path_factory.mktemp("train"), sequences, cycles=25)
    return tokenizer, genome


def config(**overrides):
    base = dict(steps=8, batch_size=4, gradient_accumulation_steps=2, max_window_tokens=40, learning_rate=3e-3,
                warmup_steps=2, masking=MaskingConfig(select_fraction=0.15), checkpoint_every=3, log_every=1)
    return PretrainConfig(**{**base, **overrides})


class Killed(Exception):
    pass


def weights(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_resume_after_a_kill_equals_an_uninterrupted_run(small, tmp_path):
    tokenizer, genome = small
    straight = build_model(model_config("grover-test"), tokenizer, seed=0)
    pretrain(straight, tokenizer, genome, config=config(), checkpoint_dir=tmp_path / "a")

    def kill_after_step_4(step):
        if step == 4:
            raise Killed

    interrupted = build_model(model_config("grover-test"), tokenizer, seed=0)
    with pytest.raises(Killed):
        pretrain(interrupted, tokenizer, genome, config=config(), checkpoint_dir=tmp_path / "b",
                 log_path=tmp_path / "b.jsonl", on_step=kill_after_step_4)
    assert latest_checkpoint(tmp_path / "b").step == 3
    resumed = build_model(model_config("grover-test"), tokenizer, seed=123)  # other init: overwritten
    result = pretrain(resumed, tokenizer, genome, config=config(), checkpoint_dir=tmp_path / "b",
                      log_path=tmp_path / "b.jsonl")
    assert result.resumed_from == 3
    expected, got = weights(straight), weights(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)
    logged = [json.loads(line)["step"] for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert logged == [0, 1, 2, 3, 4, 3, 4, 5, 6, 7]  # steps 3-4 redone after the kill, then on to the end


def test_only_complete_checkpoints_count_and_the_newest_k_are_kept(small, tmp_path):
    tokenizer, genome = small
    model = build_model(model_config("grover-test"), tokenizer, seed=0)
    pretrain(model, tokenizer, genome, config=config(checkpoint_every=2, keep_checkpoints=2),
             checkpoint_dir=tmp_path)
    assert [c.step for c in list_checkpoints(tmp_path)] == [6, 8]
    # A process killed while writing leaves a temporary folder, or a folder without its state file.
    (tmp_path / ".step_00000010.abc.tmp").mkdir()
    (tmp_path / "step_00000012" / "model").mkdir(parents=True)
    assert latest_checkpoint(tmp_path).step == 8
    again = build_model(model_config("grover-test"), tokenizer, seed=0)
    result = pretrain(again, tokenizer, genome, config=config(steps=9, checkpoint_every=2, keep_checkpoints=2),
                      checkpoint_dir=tmp_path)
    assert result.resumed_from == 8 and latest_checkpoint(tmp_path).step == 9


def test_resume_with_another_model_or_setup_is_refused(small, tmp_path):
    tokenizer, genome = small
    pretrain(build_model(model_config("grover-test"), tokenizer), tokenizer, genome, config=config(steps=3),
             checkpoint_dir=tmp_path)
    wider = build_model(model_config("grover-test", hidden_size=48), tokenizer)
    with pytest.raises(GroverInputError, match="different model"):
        pretrain(wider, tokenizer, genome, config=config(steps=6), checkpoint_dir=tmp_path)
    with pytest.raises(GroverInputError, match="different model"):
        pretrain(build_model(model_config("grover-test"), tokenizer), tokenizer, genome,
                 config=config(steps=6, learning_rate=1e-2), checkpoint_dir=tmp_path)


def test_random_split_holds_out_whole_blocks(small):
    _, genome = small
    train, held = split_regions(genome, PretrainConfig(split="random", split_block_tokens=50, seed=3))
    covered = sum(e - b for _, b, e in train + held)
    assert covered == genome.total_tokens
    share = sum(e - b for _, b, e in held) / covered
    assert 0.05 < share < 0.4
    assert not {(n, b) for n, b, _ in train} & {(n, b) for n, b, _ in held}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; the CPU tests run the same loop")
def test_training_on_gpu_uses_bf16_and_learns(small):
    tokenizer, genome = small
    model = build_model(model_config("grover-test"), tokenizer, seed=0)
    result = pretrain(model, tokenizer, genome, config=config(steps=30, checkpoint_every=0))
    assert next(model.parameters()).device.type == "cuda"
    assert result.log[-1]["loss"] < result.log[0]["loss"]


def _cli(*args, torchrun=0, env=None):
    prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"] \
        if torchrun else [sys.executable]
    command = prefix + ["-m", "grover_lens.cli", *map(str, args)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=full_env, cwd=REPO)


def test_two_processes_train_the_same_model_as_one(tmp_path):
    rng = np.random.default_rng(9)
    units = ["".join(rng.choice(list("ACGT"), size=31)) for _ in range(3)]
    fasta = tmp_path / "g.fa"
    fasta.write_text("".join(f">chr{i}\n" + "".join(units[j] for j in rng.integers(0, 3, size=120)) + "\n"
                             for i in (1, 2, 3)))
    learned = _cli("vocab", "learn", fasta, "--cycles", "20", "--out", tmp_path / "v", "--tokenized", "--quiet")
    assert learned.returncode == 0, learned.stderr
    common = ["pretrain", "--tokenized", tmp_path / "v" / "bpe_20" / "tokenized", "--tokenizer",
              tmp_path / "v" / "bpe_20", "--preset", "grover-test", "--steps", "6", "--batch-size", "8",
              "--window", "40", "--lr", "3e-3", "--warmup", "2", "--mask-fraction", "0.15", "--quiet",
              "--locality-warmup", "3"]  # the warm start's 4-D masks go through DDP too
    one = _cli(*common, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = _cli(*common, "--out", tmp_path / "two", torchrun=2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads((tmp_path / "one" / "pretrain_config.json").read_text())["pretrain"]["locality_warmup_steps"] == 3
    a = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    initial = build_model(model_config("grover-test"), __import__("grover_core.tokenizer", fromlist=["x"])
                          .load_tokenizer(tmp_path / "v" / "bpe_20"), seed=0).state_dict()
    moved = 0
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=2e-5, rtol=1e-4, msg=name)
        moved += int(not torch.allclose(a[name], initial[name]))
    assert moved > len(a) // 2  # they trained (weights moved), and moved alike
    log_two = [json.loads(line) for line in (tmp_path / "two" / "training_log.jsonl").read_text().splitlines()]
    log_one = [json.loads(line) for line in (tmp_path / "one" / "training_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log_two] == pytest.approx([r["loss"] for r in log_one], rel=1e-4)


def test_pretrain_without_a_tokenized_genome_names_the_command(tmp_path):
    result = _cli("pretrain", "--tokenized", tmp_path / "none", "--tokenizer", tmp_path, "--out", tmp_path / "o")
    assert result.returncode == 2
    assert "grover tokenize" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_compiled_training_matches_eager(small):
    """--compile (torch.compile, inductor on CPU here) trains the same model as eager mode."""
    tokenizer, genome = small
    settings = config(steps=3, checkpoint_every=0, gradient_accumulation_steps=1)
    eager = build_model(model_config("grover-test"), tokenizer, seed=0)
    pretrain(eager, tokenizer, genome, config=settings)
    compiled = build_model(model_config("grover-test"), tokenizer, seed=0)
    result = pretrain(compiled, tokenizer, genome, config=PretrainConfig(**{**settings.__dict__, "compile": True}))
    assert result.steps == 3
    for name, tensor in weights(eager).items():
        torch.testing.assert_close(weights(compiled)[name], tensor, atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_locality_mask_keeps_padding_and_favours_near_keys(small, implementation):
    tokenizer, _ = small
    model = build_model(model_config("grover-test", num_attention_heads=2), tokenizer, seed=0).eval()
    model.config._attn_implementation = implementation
    ids = torch.randint(5, len(tokenizer), (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 8:] = 0
    mask[2, 3:] = 0
    real = mask.bool()
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
        unbiased = model(input_ids=ids, attention_mask=locality_attention_mask(mask, heads=2, strength=0.0)).logits
        biased = model(input_ids=ids, attention_mask=locality_attention_mask(mask, heads=2, strength=2.0)).logits
    torch.testing.assert_close(unbiased[real], plain[real])  # strength 0: exactly BERT's padding mask
    assert (biased[real] - plain[real]).abs().max() > 1e-3  # the bias changes what the model computes

    bias = locality_attention_mask(mask, heads=2, strength=2.0)
    assert bias.shape == (3, 2, 12, 12)
    assert bias[0, 0, 5, 5] == 0 and bias[0, 0, 5, 7] == pytest.approx(-4.0) and bias[0, 1, 5, 7] == pytest.approx(-2.0)
    assert (bias[1, :, :, 8:] == torch.finfo(torch.float32).min).all()  # padded keys stay out
    if implementation == "eager":
        with torch.no_grad():
            weights_ = model(input_ids=ids, attention_mask=bias, output_attentions=True).attentions[0]
        row = weights_[0, 0, 5]  # head 0, query 5: weight falls off with distance on either side
        assert row[5] > row[4] > row[3] > row[2] and row[5] > row[6] > row[7] > row[8]
        assert weights_[1, :, :, 8:].max() < 1e-6


def test_locality_warm_start_fades_out_resumes_exactly_and_leaves_a_plain_bert(small, tmp_path):
    tokenizer, genome = small
    warm = config(locality_warmup_steps=6, locality_bias=2.0)
    assert [locality_strength_at(step, warm) for step in (0, 3, 6, 7)] == [2.0, 1.0, 0.0, 0.0]
    assert locality_strength_at(0, config()) == 0.0  # off by default

    masks_seen = []
    model = build_model(model_config("grover-test"), tokenizer, seed=0)
    hook = model.bert.register_forward_pre_hook(
        lambda module, args, kwargs: masks_seen.append(kwargs["attention_mask"].ndim), with_kwargs=True)
    pretrain(model, tokenizer, genome, config=warm, checkpoint_dir=tmp_path / "a")
    hook.remove()
    # Two micro-batches per step: steps 0-5 with the 4-D bias, steps 6-7 with BERT's own 2-D mask.
    assert masks_seen == [4] * 12 + [2] * 4

    def kill_after_step_4(step):
        if step == 4:
            raise Killed

    interrupted = build_model(model_config("grover-test"), tokenizer, seed=0)
    with pytest.raises(Killed):
        pretrain(interrupted, tokenizer, genome, config=warm, checkpoint_dir=tmp_path / "b", on_step=kill_after_step_4)
    resumed = build_model(model_config("grover-test"), tokenizer, seed=1)
    assert pretrain(resumed, tokenizer, genome, config=warm, checkpoint_dir=tmp_path / "b").resumed_from == 3
    expected, got = weights(model), weights(resumed)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)

    # The warm start is part of the run: resuming without it is refused.
    with pytest.raises(GroverInputError):
        pretrain(build_model(model_config("grover-test"), tokenizer, seed=0), tokenizer, genome,
                 config=config(steps=10), checkpoint_dir=tmp_path / "b")
    # What is saved is a plain BERT: it loads and runs with the ordinary 2-D mask only.
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert not any("locality" in key for key in saved)
