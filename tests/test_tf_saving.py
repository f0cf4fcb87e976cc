"""TF/Keras 3 backend: HF checkpoints both ways with the reference, Keras-native saving, SavedModel export."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from helpers import (
    assert_close,
    oracle_class,
    oracle_pt_model,
    ours,
    random_state,
    task_inputs,
    tiny_config,
    to_torch,
    write_oracle_dirs,
)

from distilbert.common.names import TASKS, WeightMismatchError
from distilbert.tf import (
    TFDistilBertForMaskedLM,
    TFDistilBertForQuestionAnswering,
    TFDistilBertForSequenceClassification,
    TFDistilBertModel,
)
from distilbert.tf.modeling import TF_CLASSES
from distilbert.tf.pretrained import variable_at

CONFIG = tiny_config()


def reference_tf(directory, task, batch):
    ref = oracle_class("tf", task).from_pretrained(directory)
    return ref, ref(batch, training=False)


@pytest.mark.parametrize("task", TASKS)
def test_tf_model_h5_both_ways_with_reference_tf_classes(task, tmp_path):
    state = random_state(CONFIG, task, seed=30)
    batch = task_inputs(CONFIG, task)
    model = ours("tf", task, CONFIG, state)
    expected = model(batch)
    key = "start_logits" if task == "question_answering" else ("last_hidden_state" if task == "base" else "logits")
    # ours -> reference
    path = model.save_pretrained(tmp_path / "ours")
    assert os.path.basename(path) == "tf_model.h5"
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["architectures"] == ["TF" + oracle_class("pt", task).__name__]
    ref, got = reference_tf(tmp_path / "ours", task, batch)
    assert_close(got[key].numpy(), expected[key])
    # reference -> ours
    ref.save_pretrained(tmp_path / "ref")
    loaded, report = TF_CLASSES[task].from_pretrained(tmp_path / "ref", output_loading_info=True)
    assert_close(loaded(batch)[key], expected[key])
    assert report.format == "tf" and not report.new


def test_safetensors_and_every_reference_format_load(tmp_path):
    task = "question_answering"
    state = random_state(CONFIG, task, seed=31)
    batch = task_inputs(CONFIG, task)
    with torch.no_grad():
        want = oracle_pt_model(CONFIG, task, state)(**to_torch(batch))
    dirs = write_oracle_dirs(str(tmp_path / "oracle"), CONFIG, task, state)
    for framework, directory in dirs.items():
        model = TFDistilBertForQuestionAnswering.from_pretrained(directory)
        assert_close(model(batch).end_logits, want.end_logits.numpy(), name=framework)
    ours_dir = tmp_path / "ours"
    path = ours("tf", task, CONFIG, state).save_pretrained(ours_dir, weight_format="safetensors")
    assert os.path.basename(path) == "model.safetensors"
    ref = oracle_class("pt", task).from_pretrained(str(ours_dir)).eval()
    with torch.no_grad():
        assert_close(ref(**to_torch(batch)).start_logits.numpy(), want.start_logits.numpy())
    again = TFDistilBertForQuestionAnswering.from_pretrained(ours_dir, weight_format="safetensors")
    assert_close(again(batch).start_logits, want.start_logits.numpy())
    ours("tf", task, CONFIG, state).save_pretrained(tmp_path / "safe", safe_serialization=True)
    assert os.path.isfile(tmp_path / "safe" / "model.safetensors")


def test_new_head_from_base_checkpoint_and_mismatched_sizes(tmp_path):
    state = random_state(CONFIG, "base", seed=32)
    ours("tf", "base", CONFIG, state).save_pretrained(tmp_path / "base")
    model, report = TFDistilBertForSequenceClassification.from_pretrained(
        tmp_path / "base", num_labels=3, output_loading_info=True
    )
    assert model.config.num_labels == 3 and model.classifier.kernel.shape == (32, 3)
    assert (
        sorted(report.new)
        == sorted(report["missing_keys"])
        == ["classifier.bias", "classifier.weight", "pre_classifier.bias", "pre_classifier.weight"]
    )
    assert_close(
        model.distilbert.embeddings.word_embeddings.embeddings.numpy(), state["embeddings.word_embeddings.weight"]
    )
    assert (model.classifier.bias.numpy() == 0).all()  # the fresh head keeps its initialisation
    model.save_pretrained(tmp_path / "three")
    with pytest.raises(WeightMismatchError, match="classifier"):
        TFDistilBertForSequenceClassification.from_pretrained(tmp_path / "three", num_labels=5)
    five = TFDistilBertForSequenceClassification.from_pretrained(
        tmp_path / "three", num_labels=5, ignore_mismatched_sizes=True
    )
    assert five.classifier.kernel.shape == (32, 5)
    assert_close(five.pre_classifier.kernel.numpy(), model.pre_classifier.kernel.numpy())
    # A head checkpoint into the bare model drops the head.
    base, report = TFDistilBertModel.from_pretrained(tmp_path / "three", output_loading_info=True)
    assert "classifier.weight" in report.dropped and "classifier.weight" in report["unexpected_keys"]


def test_sinusoidal_and_untied_round_trips(tmp_path):
    for variant in (dict(sinusoidal_pos_embds=True), dict(tie_word_embeddings=False)):
        config = tiny_config(**variant)
        state = random_state(config, "masked_lm", seed=33)
        model = ours("tf", "masked_lm", config, state)
        batch = task_inputs(config, "masked_lm")
        for fmt in ("tf", "safetensors", None):
            directory = tmp_path / f"{fmt}-{list(variant)[0]}"
            if fmt == "tf" and not config.tie_word_embeddings:
                with pytest.raises(ValueError, match="untied vocab_projector"):
                    model.save_pretrained(directory, weight_format=fmt)
                continue
            path = model.save_pretrained(directory, weight_format=fmt)
            if fmt is None:  # the default: tf_model.h5 unless it cannot hold the model
                assert path.endswith("model.safetensors" if not config.tie_word_embeddings else "tf_model.h5")
            again, report = TFDistilBertForMaskedLM.from_pretrained(directory, output_loading_info=True)
            assert not report.new
            assert_close(again(batch).logits, model(batch).logits)
        if not config.tie_word_embeddings:
            assert tuple(model.vocab_projector.kernel.shape) == (32, 99)


def test_keras_native_save_and_load_model(tmp_path):
    config = tiny_config(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"})
    model = ours("tf", "sequence_classification", config, random_state(config, "sequence_classification", seed=34))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
    batch = task_inputs(config, "sequence_classification")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is TFDistilBertForSequenceClassification
    assert loaded.config == config and loaded.config.id2label[2] == "pos"
    assert_close(loaded(batch).logits, model(batch).logits)
    assert loaded.compiled and isinstance(loaded.optimizer, keras.optimizers.SGD)
    mlm = ours("tf", "masked_lm", CONFIG, random_state(CONFIG, "masked_lm", seed=35))
    mlm.save(str(tmp_path / "mlm.keras"))
    again = keras.models.load_model(str(tmp_path / "mlm.keras"))
    batch = task_inputs(CONFIG, "masked_lm")
    assert_close(again(batch).logits, mlm(batch).logits)
    clone = TFDistilBertForMaskedLM.from_config(mlm.get_config())
    assert clone.config == mlm.config and clone.name == mlm.name


@pytest.mark.parametrize("task", ["sequence_classification", "multiple_choice"])
def test_export_saved_model_serving_signature(task, tmp_path):
    model = ours("tf", task, CONFIG, random_state(CONFIG, task, seed=36))
    model.export(str(tmp_path / "served"))
    reloaded = tf.saved_model.load(str(tmp_path / "served"))
    serve = reloaded.signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == {"input_ids", "attention_mask"}
    for seq in (5, 9):
        batch = task_inputs(CONFIG, task, seq=seq)
        outputs = serve(
            input_ids=tf.constant(batch["input_ids"], tf.int32),
            attention_mask=tf.constant(batch["attention_mask"], tf.int32),
        )
        assert set(outputs) == {"logits"}
        assert_close(outputs["logits"], model(batch).logits)


def test_canonical_state_round_trip_and_strictness():
    state = random_state(CONFIG, "masked_lm", seed=37)
    model = ours("tf", "masked_lm", CONFIG, state)
    back = model.canonical_state()
    assert set(back) == set(state)
    for name in state:
        assert_close(back[name], state[name], name=name)
    assert variable_at(model, "distilbert/transformer/layer/1/ffn/lin2/kernel").shape == (37, 32)
    with pytest.raises(KeyError, match="no weight"):
        variable_at(model, "distilbert/transformer/layer/7/ffn/lin2/kernel")
    bad = dict(state, **{"distilbert.transformer.layer.0.ffn.lin1.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(WeightMismatchError, match="lin1"):
        model.load_canonical_state(bad)
    with pytest.raises(WeightMismatchError, match="unexpected"):
        model.load_canonical_state(dict(state, extra=np.zeros(1, np.float32)))
    missing = dict(state)
    del missing["vocab_transform.bias"]
    with pytest.raises(WeightMismatchError, match="vocab_transform.bias"):
        model.load_canonical_state(missing)


def test_sharded_save_pretrained_round_trips(tmp_path):
    task = "masked_lm"
    state = random_state(CONFIG, task, seed=34)
    model = ours("tf", task, CONFIG, state)
    path = model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert os.path.basename(path) == "tf_model.h5.index.json" and not os.path.exists(tmp_path / "tf_model.h5")
    again, report = TFDistilBertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert report.format == "tf-sharded" and not report.new
    batch = task_inputs(CONFIG, task)
    assert_close(again(batch).logits, model(batch).logits)
