import numpy as np
import pytest
import torch

from grover_core.bpe import BPEConfig, learn_bpe
from grover_core.errors import GroverInputError
from grover_core.genome import Segment, encode_nucleotides
from grover_core.model import PRESETS, build_model, check_vocab_sizes, count_parameters, load_model, model_config
from grover_core.pretrain import (IGNORE_INDEX, MaskingConfig, PretrainConfig, WindowSampler, collate_windows,
                                  evaluate_masked_lm, learning_rate_at, mask_tokens, pretrain, split_chromosomes)
from grover_core.tokenized_genome import TokenizedGenome, write_tokenized_genome
from grover_core.tokenizer import SPECIAL_TOKENS, build_bpe_tokenizer


def make_genome(tmp_path, sequences: dict[str, str], cycles: int = 20):
    segments = [Segment(name, 0, encode_nucleotides(seq)) for name, seq in sequences.items()]
    vocabulary, tokenized = learn_bpe(segments, config=BPEConfig(cycles=cycles))
    tokenizer = build_bpe_tokenizer(vocabulary)
    write_tokenized_genome(tmp_path / "tokenized", tokenized, id_offset=len(SPECIAL_TOKENS), vocab_size=len(tokenizer))
    return tokenizer, TokenizedGenome.open(tmp_path / "tokenized"), vocabulary


@pytest.fixture(scope="module")
def repetitive(tmp_path_factory):
    """A genome of copies of a few units: a masked token is predictable from its context."""
    rng = np.random.default_rng(0)
    units = ["".join(rng.choice(list("ACGT"), size=37)) for _ in range(3)]
    sequences = {f"chr{i}": "".join(units[j] for j in rng.integers(0, 3, size=300)) for i in (1, 2, 3)}
    return (*make_genome(tmp_path_factory.mktemp("rep"), sequences, cycles=30), sequences)


def test_tokenized_genome_maps_every_token_back_to_the_sequence(repetitive):
    tokenizer, genome, vocabulary, sequences = repetitive
    strings = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    for name in genome.chromosomes:
        ids, starts = genome.ids(name), genome.starts(name)
        assert ids.dtype == np.uint16
        rebuilt = "".join(strings[i] for i in ids)
        assert rebuilt == sequences[name]
        assert all(sequences[name][s:s + len(strings[i])] == strings[i] for s, i in zip(starts[:200], ids[:200]))
    assert genome.token_counts().sum() == genome.total_tokens


def test_presets_and_the_paper_shape():
    base = PRESETS["grover-base"]
    assert (base.num_hidden_layers, base.hidden_size, base.num_attention_heads, base.intermediate_size,
            base.max_position_embeddings) == (12, 768, 12, 3072, 512)
    assert model_config("grover-test", num_hidden_layers=3).num_hidden_layers == 3
    with pytest.raises(GroverInputError, match="unknown model preset"):
        model_config("gpt-5")


def test_paper_model_has_about_87m_parameters(repetitive):
    tokenizer = repetitive[0]
    model = build_model(model_config("grover-base"), tokenizer)
    # 86M at this small vocabulary; GROVER's 609 tokens add about 0.4M.
    assert 85e6 < count_parameters(model) < 88e6
    assert model.config._attn_implementation == "sdpa"


def test_save_load_round_trip_and_vocab_check(repetitive, tmp_path):
    tokenizer = repetitive[0]
    model = build_model(model_config("grover-test"), tokenizer).eval()
    model.save_pretrained(str(tmp_path / "m"))
    assert (tmp_path / "m" / "model.safetensors").is_file()
    loaded = load_model(tmp_path / "m", tokenizer=tokenizer).eval()
    ids = torch.tensor([[2, 5, 6, 7, 8, 3]])
    assert torch.allclose(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
    small = build_model(model_config("grover-test"), tokenizer)
    small.resize_token_embeddings(len(tokenizer) - 3)
    with pytest.raises(GroverInputError, match="disagree"):
        check_vocab_sizes(small, tokenizer)


def test_grover_masking_proportions_and_specials():
    generator = torch.Generator().manual_seed(0)
    special = torch.zeros(50, dtype=torch.bool)
    special[:5] = True
    ids = torch.randint(5, 50, (400, 500), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3
    masked, labels = mask_tokens(ids, special=special, mask_token_id=4, config=MaskingConfig(), generator=generator)
    selected = labels != IGNORE_INDEX
    assert abs(selected.float().mean().item() - 0.022 * 498 / 500) < 0.002
    assert not selected[:, 0].any() and not selected[:, -1].any()
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])  # nothing outside the selection changes
    to_mask = (masked[selected] == 4).float().mean().item()
    unchanged = (masked[selected] == ids[selected]).float().mean().item()
    assert abs(to_mask - 0.8) < 0.02
    assert abs(unchanged - 0.2 / 45) < 0.01  # GROVER keeps none: only random draws that hit the original
    assert not special[masked[selected & (masked != 4)]].any()  # random replacements are never special
    # BERT's rule, as an option: 10% of the selection stays as it was.
    masked, labels = mask_tokens(ids, special=special, mask_token_id=4, config=MaskingConfig.bert(0.022),
                                 generator=generator)
    selected = labels != IGNORE_INDEX
    assert abs((masked[selected] == ids[selected]).float().mean().item() - (0.1 + 0.1 / 45)) < 0.02


def test_masking_selects_at_least_one_token():
    special = torch.zeros(10, dtype=torch.bool)
    special[:5] = True
    _, labels = mask_tokens(torch.tensor([[2, 6, 7, 3]]), special=special, mask_token_id=4,
                            config=MaskingConfig(select_fraction=1e-9), generator=torch.Generator().manual_seed(0))
    assert (labels != IGNORE_INDEX).sum() == 1


def test_learning_rate_warms_up_then_decays():
    config = PretrainConfig(steps=100, warmup_steps=10, learning_rate=1e-3, min_learning_rate_ratio=0.1)
    rates = [learning_rate_at(s, config) for s in range(100)]
    assert rates[0] < rates[9] == pytest.approx(1e-3)
    assert rates[99] == pytest.approx(1e-4, rel=0.05)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))


def test_windows_are_seeded_and_within_bounds(repetitive):
    _, genome, _, _ = repetitive
    train, held = split_chromosomes(genome)
    assert held == ["chr3"] and train == ["chr1", "chr2"]
    draw = lambda: WindowSampler(genome, train, min_tokens=20, max_tokens=60, full_window_fraction=0.5, seed=4).sample(50)
    first, second = draw(), draw()
    assert all(a[1] == b[1] and np.array_equal(a[2], b[2]) for a, b in zip(first, second))
    lengths = [w.size for _, _, w in first]
    assert min(lengths) >= 20 and max(lengths) == 60 and sum(n == 60 for n in lengths) >= 15
    batch = collate_windows([np.array([5, 6]), np.array([7])], type("T", (), {"pad_token_id": 0, "cls_token_id": 2,
                                                                               "sep_token_id": 3})())
    assert batch["input_ids"].tolist() == [[2, 5, 6, 3], [2, 7, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    with pytest.raises(ValueError, match="not in the genome"):
        split_chromosomes(genome, ["chrX"])


def test_pretraining_learns_a_repetitive_genome_and_beats_the_frequency_baseline(repetitive, tmp_path):
    tokenizer, genome, _, _ = repetitive
    model = build_model(model_config("grover-test"), tokenizer, seed=0)
    # BERT's rule (10% of selected tokens left unchanged): under GROVER's 80/20 rule this 2-layer,
    # 32-wide model stayed at the frequency baseline on hidden tokens after 1,200 steps (measured).
    config = PretrainConfig(steps=1200, batch_size=16, max_window_tokens=64, learning_rate=3e-3, warmup_steps=10,
                            masking=MaskingConfig.bert(0.15), log_every=10)
    result = pretrain(model, tokenizer, genome, config=config, log_path=tmp_path / "log.jsonl")
    first, last = result.log[0]["loss"], np.mean([r["loss"] for r in result.log[-3:]])
    assert last < first - 0.5
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == len(result.log)
    evaluation = evaluate_masked_lm(model, tokenizer, genome, chromosomes=["chr3"],
                                    baseline_counts=genome.token_counts(chromosomes=["chr1", "chr2"]),
                                    windows=64, masking=MaskingConfig.bert(0.15))
    assert evaluation["n_masked_tokens"] > 100
    assert evaluation["masked_top1_accuracy"] > evaluation["frequency_baseline_top1_accuracy"] + 0.05
    assert evaluation["perplexity"] < 0.9 * evaluation["frequency_baseline_perplexity"]
    # Scored on [MASK] positions only (no unchanged token to copy) the repeats must still make it predictable;
    # at 400 steps it was not yet (mask-only top-1 equal to the baseline's), hence the longer run.
    assert 0.7 * evaluation["n_masked_tokens"] < evaluation["n_mask_only_tokens"] < 0.9 * evaluation["n_masked_tokens"]
    assert evaluation["mask_only_top1_accuracy"] > evaluation["frequency_baseline_mask_only_top1_accuracy"] + 0.04




def test_the_token_type_vector_starts_at_zero_and_pretraining_leaves_it_there(repetitive):
    tokenizer, genome, _, _ = repetitive
    model = build_model(model_config("grover-test"), tokenizer, seed=0)
    token_type = model.bert.embeddings.token_type_embeddings.weight
    assert torch.count_nonzero(token_type) == 0
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    pretrain(model, tokenizer, genome, config=PretrainConfig(steps=5, batch_size=4, max_window_tokens=32,
                                                             warmup_steps=1, masking=MaskingConfig(0.15)))
    # Trained, this one vector grows into a bias that drowns the position embeddings
    # (benchmarks/mlm_learning.py); everything else must have moved.
    assert torch.count_nonzero(model.bert.embeddings.token_type_embeddings.weight) == 0
    moved = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert "bert.embeddings.position_embeddings.weight" in moved
    assert "bert.encoder.layer.0.attention.self.query.weight" in moved
    assert "bert.embeddings.token_type_embeddings.weight" not in moved
