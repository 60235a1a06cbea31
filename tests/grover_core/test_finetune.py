"""Fine-tuning a BERT MLM for sequence classification: loading a classifier from our folders and the
published GROVER layout, learning a planted motif (and nothing from shuffled labels), metrics, saving."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import precision_score
from transformers import BertConfig, BertForMaskedLM

from grover_core.errors import GroverInputError
from grover_core.finetune import (FinetuneConfig, classification_metrics, evaluate_classifier, finetune_classifier,
                                  learning_rate_at, load_classifier, predict, save_finetuned, tokenize_sequences)
from grover_core.kmer import build_kmer_tokenizer, kmer_vocabulary_info, write_kmer_tokenizer
from grover_core.model import build_model, model_config
from tests.grover_core.test_tokenizer_folder import synthetic_merges, write_grover_shaped_folder

MOTIF = "CGCGCGCGCGCG"  # a CpG run: 3-mer tokens CGC/GCG whatever its phase
FAST = FinetuneConfig(epochs=5, batch_size=32, learning_rate=1e-3, log_every=5)  # tiny models need a high rate


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def motif_table(n, seed, *, length=60, motif=MOTIF):
    """Random sequences; label 1 ones carry the motif at a random place."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    sequences = []
    for label in labels:
        sequence = "".join(rng.choice(list("ACGT"), length))
        if label:
            at = int(rng.integers(0, length - len(motif)))
            sequence = sequence[:at] + motif + sequence[at + len(motif):]
        sequences.append(sequence)
    return pd.DataFrame({"sequence": sequences, "label": labels.astype(np.int64)})


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
    """Our layout: a 2-layer 32-wide BertForMaskedLM (safetensors) with a 3-mer tokenizer folder."""
    folder = tmp_path_factory.mktemp("ours") / "model"
    write_kmer_tokenizer(folder, 3)
    build_model(model_config("grover-test"), build_kmer_tokenizer(3)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def grover_dir(tmp_path_factory):
    """The published GROVER layout, tiny: GROVER-shaped tokenizer files, config.json as transformers 4 wrote
    it (type_vocab_size 2), pytorch_model.bin with the old position_ids buffer."""
    merges = synthetic_merges(count=40)
    folder = write_grover_shaped_folder(tmp_path_factory.mktemp("published") / "GROVER", merges)
    config = BertConfig(vocab_size=5 + 4 + len(merges), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=66, type_vocab_size=2, pad_token_id=0,
                        architectures=["BertForMaskedLM"])
    (folder / "config.json").write_text(config.to_json_string())
    torch.manual_seed(0)
    state_dict = BertForMaskedLM(config).state_dict()
    state_dict["bert.embeddings.position_ids"] = torch.arange(66).unsqueeze(0)
    torch.save(state_dict, folder / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="module")
def tasks():
    return {"train": motif_table(400, 1), "validation": motif_table(100, 2), "test": motif_table(200, 3)}


def test_metrics_match_a_hand_checked_case():
    # TP 3, FN 1, FP 2, TN 4.
    y_true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    metrics = classification_metrics(y_true, y_pred)
    assert metrics["accuracy"] == pytest.approx(0.7)
    assert metrics["precision"] == pytest.approx(3 / 5)  # binary: of class 1
    assert metrics["recall"] == pytest.approx(3 / 4)
    assert metrics["mcc"] == pytest.approx((3 * 4 - 2 * 1) / np.sqrt(5 * 4 * 6 * 5))
    f1_positive, f1_negative = 2 * 0.6 * 0.75 / 1.35, 2 * 0.8 * (4 / 6) / (0.8 + 4 / 6)
    assert metrics["macro_f1"] == pytest.approx((f1_positive + f1_negative) / 2)
    # Three classes: macro averages.
    y_true, y_pred = [0, 1, 2, 2, 1, 0, 2], [0, 2, 2, 1, 1, 0, 0]
    metrics = classification_metrics(y_true, y_pred)
    assert metrics["precision"] == pytest.approx(precision_score(y_true, y_pred, average="macro"))
    assert metrics["precision"] != pytest.approx(precision_score(y_true, y_pred, average="micro"))
    with pytest.raises(GroverInputError, match="equally long"):
        classification_metrics([0, 1], [0])


def test_learning_rate_warms_up_then_decays_to_zero():
    rates = [learning_rate_at(step, total_steps=10, warmup_steps=2, peak=1.0) for step in range(10)]
    assert rates[:2] == [0.5, 1.0] and rates[2] == 1.0
    assert all(a > b for a, b in zip(rates[2:], rates[3:])) and rates[-1] == pytest.approx(0.125)


def test_classifier_from_our_folder_keeps_the_encoder_and_seeds_the_head(mlm_dir):
    model, tokenizer = load_classifier(mlm_dir, num_labels=3, seed=0)
    assert model.training and model.config.num_labels == 3
    assert model.classifier.out_features == 3
    stored = load_file(str(mlm_dir / "model.safetensors"))
    for name in ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.1.output.dense.weight"):
        assert torch.equal(model.get_parameter(name), stored[name])
    assert tokenizer.convert_ids_to_tokens(5) == "AAA"
    again, _ = load_classifier(mlm_dir, num_labels=3, seed=0)
    other, _ = load_classifier(mlm_dir, num_labels=3, seed=1)
    assert torch.equal(again.classifier.weight, model.classifier.weight)
    assert torch.equal(again.bert.pooler.dense.weight, model.bert.pooler.dense.weight)
    assert not torch.equal(other.classifier.weight, model.classifier.weight)


def test_classifier_from_the_published_layout(grover_dir):
    assert not (grover_dir / "model.safetensors").exists()
    model, tokenizer = load_classifier(str(grover_dir), num_labels=2)
    stored = torch.load(grover_dir / "pytorch_model.bin", weights_only=True)
    name = "bert.encoder.layer.1.attention.self.query.weight"
    assert torch.equal(model.get_parameter(name), stored[name])
    assert tokenizer.pad_token_id == 1  # GROVER's specials start with [UNK]
    probabilities = predict(model, tokenizer, ["ACGTTGCA" * 8, "GATTACA"])
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_loading_errors_name_the_fix(mlm_dir, tmp_path):
    with pytest.raises(GroverInputError, match=r"disagree.*can emit \d+ ids"):
        load_classifier(mlm_dir, num_labels=2, tokenizer=build_kmer_tokenizer(4))
    with pytest.raises(GroverInputError, match="at least 2"):
        load_classifier(mlm_dir, num_labels=1)
    bare = tmp_path / "bare"
    build_model(model_config("grover-test"), build_kmer_tokenizer(3)).save_pretrained(str(bare))
    with pytest.raises(GroverInputError, match="no tokenizer.json.*tokenizer="):
        load_classifier(bare, num_labels=2)
    model, _ = load_classifier(bare, num_labels=2, tokenizer=mlm_dir)  # a tokenizer folder path
    assert model.config.num_labels == 2
    with pytest.raises(GroverInputError, match="no model folder"):
        load_classifier(tmp_path / "missing", num_labels=2)


def test_finetuning_learns_a_motif_and_not_shuffled_labels(mlm_dir, tasks):
    model, tokenizer = load_classifier(mlm_dir, num_labels=2)
    result = finetune_classifier(model, tokenizer, tasks["train"], config=FAST)
    assert result.steps == 5 * 13 and result.epochs_run == 5 and not model.training
    assert [entry["step"] for entry in result.log if not entry["epoch_end"]][:3] == [5, 10, 15]
    assert [entry["step"] for entry in result.log if entry["epoch_end"]] == [13, 26, 39, 52, 65]
    assert result.final_loss == result.log[-1]["loss"] < result.log[0]["loss"]
    learned = evaluate_classifier(model, tokenizer, tasks["test"], split=None)
    assert learned["mcc"] > 0.8 and learned["n"] == 200

    # The same data with labels shuffled (train and test alike): nothing links sequence and label, so the
    # same recipe must score near 0.
    rng = np.random.default_rng(5)
    train, test = (table.assign(label=rng.permutation(table["label"].to_numpy()))
                   for table in (tasks["train"], tasks["test"]))
    control, tokenizer = load_classifier(mlm_dir, num_labels=2)
    finetune_classifier(control, tokenizer, train, config=FAST)
    assert abs(evaluate_classifier(control, tokenizer, test, split=None)["mcc"]) < 0.25


def test_frozen_encoder_trains_only_the_head_and_scores_worse(mlm_dir, tasks):
    model, tokenizer = load_classifier(mlm_dir, num_labels=2)
    encoder = {k: v.clone() for k, v in model.bert.state_dict().items()}
    head = model.classifier.weight.detach().clone()
    finetune_classifier(model, tokenizer, tasks["train"],
                        config=dataclasses.replace(FAST, freeze_encoder=True, learning_rate=3e-3))
    assert all(torch.equal(encoder[k], v) for k, v in model.bert.state_dict().items())
    assert not torch.equal(head, model.classifier.weight)
    # A linear probe on a random encoder's [CLS] cannot see the motif as fine-tuning does (MCC > 0.8 above).
    assert evaluate_classifier(model, tokenizer, tasks["test"], split=None)["mcc"] < 0.5


def test_same_seed_same_model(mlm_dir, tasks):
    config = dataclasses.replace(FAST, epochs=1)
    runs = []
    for _ in range(2):
        model, tokenizer = load_classifier(mlm_dir, num_labels=2, seed=3)
        finetune_classifier(model, tokenizer, tasks["train"].head(96), config=config)
        runs.append(predict(model, tokenizer, tasks["test"]["sequence"].head(20)))
    assert np.array_equal(runs[0], runs[1])


def test_early_stopping_puts_the_best_validation_epoch_back(mlm_dir, tasks):
    # Validation labels inverted: the better the model learns the motif, the worse it scores there, so
    # the best epoch is an early one and its weights must come back after later epochs moved on.
    inverted = tasks["validation"].assign(label=1 - tasks["validation"]["label"])
    model, tokenizer = load_classifier(mlm_dir, num_labels=2)
    config = dataclasses.replace(FAST, epochs=6, learning_rate=3e-3, early_stopping_patience=1)
    result = finetune_classifier(model, tokenizer, tasks["train"], inverted, config=config)
    assert [entry["epoch"] for entry in result.validation] == list(range(1, result.epochs_run + 1))
    scores = [entry["mcc"] for entry in result.validation]
    assert result.best_epoch == 1 + int(np.argmax(scores)) and result.best_validation_mcc == max(scores)
    assert result.epochs_run == result.best_epoch + 1 < 6  # stopped one epoch after the best
    assert scores[-1] < result.best_validation_mcc - 0.3
    assert evaluate_classifier(model, tokenizer, inverted, split=None)["mcc"] == pytest.approx(
        result.best_validation_mcc)
    # Without early stopping the last epoch's weights stay, and validation is still scored each epoch.
    model, tokenizer = load_classifier(mlm_dir, num_labels=2)
    result = finetune_classifier(model, tokenizer, tasks["train"], inverted,
                                 config=dataclasses.replace(config, epochs=2, early_stopping_patience=0))
    assert result.best_epoch == 2 and result.best_validation_mcc == result.validation[-1]["mcc"]
    with pytest.raises(GroverInputError, match="no validation table"):
        finetune_classifier(model, tokenizer, tasks["train"], config=config)


def test_predict_keeps_the_input_order_across_lengths(mlm_dir):
    model, tokenizer = load_classifier(mlm_dir, num_labels=3)
    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACGT"), int(n))) for n in rng.integers(5, 300, 11)]
    batched = predict(model, tokenizer, sequences, batch_size=4)
    alone = np.concatenate([predict(model, tokenizer, [s], batch_size=1) for s in sequences])
    assert batched.shape == (11, 3) and np.allclose(batched.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(batched, alone, atol=1e-5)
    # Sequences longer than the model's 66 positions are truncated, not refused.
    assert max(len(ids) for ids in tokenize_sequences(tokenizer, sequences, max_length=66)) == 66


def test_table_errors_name_the_problem(mlm_dir, tasks):
    model, tokenizer = load_classifier(mlm_dir, num_labels=2)
    with pytest.raises(GroverInputError, match="labels span 0..2 .* 2 classes"):
        finetune_classifier(model, tokenizer, tasks["train"].assign(label=tasks["train"]["label"] * 2), config=FAST)
    with pytest.raises(GroverInputError, match="lacks column.*label"):
        finetune_classifier(model, tokenizer, tasks["train"][["sequence"]], config=FAST)
    with pytest.raises(GroverInputError, match="int column"):
        finetune_classifier(model, tokenizer, tasks["train"].assign(label=0.5), config=FAST)
    with pytest.raises(GroverInputError, match=r"no 'test' rows \(splits present: train\)"):
        evaluate_classifier(model, tokenizer, tasks["train"].assign(split="train"))
    with pytest.raises(GroverInputError, match="kmer_text"):
        predict(model, build_kmer_tokenizer(3, overlapping=True), ["ACGTACGTAC"])
    with pytest.raises(GroverInputError, match="epochs"):
        FinetuneConfig(epochs=0)
    with pytest.raises(GroverInputError, match="not a torch device"):
        finetune_classifier(model, tokenizer, tasks["train"], config=dataclasses.replace(FAST, device="gpu"))


def test_saved_model_reloads_with_its_head(mlm_dir, tasks, tmp_path):
    model, tokenizer = load_classifier(mlm_dir, num_labels=2)
    config = dataclasses.replace(FAST, epochs=1)
    finetune_classifier(model, tokenizer, tasks["train"].head(64), config=config)
    metrics = evaluate_classifier(model, tokenizer, tasks["test"], split=None)
    out = save_finetuned(model, tokenizer, tmp_path / "finetuned", config=config, metrics=metrics,
                         vocabulary_info=kmer_vocabulary_info(3))
    assert (out / "model.safetensors").is_file() and not (out / "pytorch_model.bin").exists()
    assert json.loads((out / "finetune_config.json").read_text()) == dataclasses.asdict(config)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert [p.name for p in tmp_path.iterdir()] == ["finetuned"]  # no temporary folder left behind
    loaded, loaded_tokenizer = load_classifier(out, num_labels=2, seed=99)  # the head is read, not drawn
    sequences = tasks["test"]["sequence"].head(10).tolist()
    assert np.allclose(predict(loaded, loaded_tokenizer, sequences), predict(model, tokenizer, sequences), atol=1e-5)
    with pytest.raises(GroverInputError, match="3-class classifier"):
        load_classifier(out, num_labels=3)
