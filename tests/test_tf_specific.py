"""What only the TF/Keras 3 backend has: Keras call conventions, its variables, graph mode and XLA,
mixed-precision policies, Keras 3 beside tf-keras. Shared behaviour is tested once in ``test_models.py``;
``compile``/``fit`` in ``test_tf_training.py``."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_close, oracle_model, random_inputs, random_state, task_inputs, tiny_config

from distilbert.common.names import weight_table
from distilbert.frameworks import build
from distilbert.tf import TFDistilBertForMaskedLM, TFDistilBertForSequenceClassification, TFDistilBertModel

CONFIG = tiny_config()


@pytest.fixture(scope="module")
def seq_model():
    return build("tf", "sequence_classification", CONFIG, random_state(CONFIG, "sequence_classification", seed=9))


def test_input_forms_agree(seq_model):
    """A dict, keyword tensors, tf/np arrays of any int type and nested lists are the same call."""
    model = seq_model
    batch = task_inputs(CONFIG, "sequence_classification")
    expected = model(batch).logits.numpy()
    forms = [
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]),
        model(tf.constant(batch["input_ids"], tf.int32), attention_mask=tf.constant(batch["attention_mask"])),
        model(batch["input_ids"].tolist(), attention_mask=batch["attention_mask"].tolist()),
        model({k: tf.constant(v) for k, v in batch.items()}),
        model(batch, position_ids=np.arange(7)[None]),
    ]
    for out in forms:  # the same numbers through the same kernels: conversions only
        assert_close(out.logits, expected)
    table = model.distilbert.embeddings.word_embeddings.embeddings.numpy()
    assert_close(
        model(inputs_embeds=table[batch["input_ids"]], attention_mask=batch["attention_mask"]).logits, expected
    )


def test_graph_mode_and_xla_match_eager(seq_model):
    model = seq_model
    xla = tf.function(lambda ids, mask: model(ids, attention_mask=mask).logits, jit_compile=True)
    graph = tf.function(lambda ids, mask: model(ids, attention_mask=mask).logits)
    for seq in (5, 9, 16):  # XLA retraces per shape
        batch = random_inputs(CONFIG, 3, seq, seed=seq)
        eager = model(batch).logits
        assert_close(xla(batch["input_ids"], batch["attention_mask"]), eager)
        if seq == 5:
            assert_close(graph(batch["input_ids"], batch["attention_mask"]), eager)
    whole = tf.function(lambda b: model(b), jit_compile=True)(task_inputs(CONFIG, "sequence_classification"))
    assert whole.logits.shape == (3, 2)  # the output dataclass crosses tf.function


@pytest.mark.parametrize("variant", [{}, dict(sinusoidal_pos_embds=True), dict(tie_word_embeddings=False)])
def test_variables_are_the_table_keras_column(variant):
    config = tiny_config(**variant)
    model = build("tf", "masked_lm", config)
    want = [s.names["keras"] for s in weight_table(config, "masked_lm") if s.names["keras"]]
    assert len(model.weights) == len(want)
    if config.sinusoidal_pos_embds:  # a variable (a stored table loads as stored), never trained
        positions = [v for v in model.weights if "position_embeddings" in v.path]
        assert len(positions) == 1 and not positions[0].trainable
        assert not any("position_embeddings" in v.path for v in model.trainable_weights)


def test_keras_3_beside_the_reference_tf_keras(tmp_path):
    """Loading transformers' TF classes (tf-keras, Keras 2) leaves Keras 3 and our models working."""
    state = random_state(CONFIG, "base", seed=6)
    oracle_model("tf", CONFIG, "base", state, str(tmp_path))
    assert keras.__version__.startswith("3.") and keras.config.backend() == "tensorflow"
    model = build("tf", "base", CONFIG, state)
    assert np.isfinite(model(task_inputs(CONFIG, "base")).last_hidden_state.numpy()).all()


def test_get_config_is_a_dict():
    assert isinstance(TFDistilBertModel(CONFIG).get_config()["config"], dict)


# --------------------------------------------------------------------------------- mixed precision
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_inference(policy):
    config = tiny_config()
    state = random_state(config, "masked_lm", seed=12)
    # Huge query/key weights: scores far beyond float16's range (65504) unless computed in float32.
    for i in range(config.n_layers):
        for lin in ("q_lin", "k_lin"):
            state[f"distilbert.transformer.layer.{i}.attention.{lin}.weight"] *= 200.0  # scores ~1.7e5
    batch = task_inputs(config, "masked_lm")
    full = build("tf", "masked_lm", config, state)(batch, output_attentions=True)
    mixed_model = TFDistilBertForMaskedLM(config, dtype=policy)
    mixed_model.load_canonical_state(state)
    assert mixed_model.distilbert.transformer.layer[0].ffn.lin1.compute_dtype == policy.split("_")[1]
    assert mixed_model.distilbert.transformer.layer[0].ffn.lin1.kernel.dtype == "float32"
    mixed = mixed_model(batch, output_attentions=True)
    assert mixed.logits.dtype == tf.float32  # logits in float32; attentions in the compute dtype
    assert np.isfinite(mixed.attentions[0].numpy().astype(np.float32)).all()
    assert np.isfinite(mixed.logits.numpy()).all()
    assert np.isfinite(full.logits.numpy()).all()
    # Reduced precision: same predictions, not the same digits.
    agree = (mixed.logits.numpy().argmax(-1) == full.logits.numpy().argmax(-1)).mean()
    assert agree > 0.9, agree


def test_global_mixed_policy_is_picked_up():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = TFDistilBertForSequenceClassification(CONFIG)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.pre_classifier.compute_dtype == "bfloat16"
    assert model(task_inputs(CONFIG, "sequence_classification")).logits.dtype == tf.float32
