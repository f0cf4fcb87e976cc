"""TF/Keras 3 backend: training the Keras way (compile/fit/evaluate/predict), equal to PyTorch steps."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from helpers import assert_close, ours, random_inputs, random_state, tiny_config, to_torch

from distilbert.common.names import TASKS, weight_table

CONFIG = tiny_config()
CHOICES = 3
HEADS = [t for t in TASKS if t != "base"]


def dataset(task, n=16, seq=8, seed=0, config=CONFIG):
    """``n`` padded examples with learnable labels, as a dict of numpy arrays."""
    batch = random_inputs(config, n, seq, seed, choices=CHOICES if task == "multiple_choice" else None)
    rng = np.random.default_rng(seed)
    ids = batch["input_ids"]
    if task in ("masked_lm", "token_classification"):
        labels = (ids % (config.vocab_size if task == "masked_lm" else config.num_labels)).astype(np.int64)
        labels[batch["attention_mask"] == 0] = -100
        return dict(batch, labels=labels)
    if task == "sequence_classification":
        return dict(batch, labels=(ids[:, 0] % 2).astype(np.int64))
    if task == "multiple_choice":
        return dict(batch, labels=rng.integers(0, CHOICES, n).astype(np.int64))
    if task == "question_answering":
        return dict(
            batch, start_positions=(ids[:, 0] % 4).astype(np.int64), end_positions=(ids[:, 1] % 4 + 2).astype(np.int64)
        )
    return batch


def pt_model(task, state):
    import distilbert.pt as pt

    cls = {
        "masked_lm": pt.DistilBertForMaskedLM,
        "sequence_classification": pt.DistilBertForSequenceClassification,
        "multiple_choice": pt.DistilBertForMultipleChoice,
        "token_classification": pt.DistilBertForTokenClassification,
        "question_answering": pt.DistilBertForQuestionAnswering,
    }[task]
    model = cls(CONFIG)
    model.load_canonical_state(state)
    return model.train()


@pytest.mark.parametrize("task", HEADS)
def test_sgd_step_matches_pytorch_backend_and_fit_lowers_the_loss(task):
    """One ``fit`` step with SGD (dropout 0) updates every weight as one PyTorch SGD step does;
    more epochs lower the loss."""
    state = random_state(CONFIG, task, seed=20)
    data = dataset(task)
    model = ours("tf", task, CONFIG, state)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.2), jit_compile=False)
    first = model.fit(data, batch_size=16, epochs=1, shuffle=False, verbose=0).history["loss"]

    theirs = pt_model(task, state)
    optimizer = torch.optim.SGD(theirs.parameters(), lr=0.2)
    loss = theirs(**to_torch(data)).loss
    loss.backward()
    optimizer.step()

    assert_close(first[0], loss.item(), name="loss")
    got, want = model.canonical_state(), theirs.canonical_state()
    changed = 0
    for spec in weight_table(CONFIG, task):
        assert_close(got[spec.name], want[spec.name], name=spec.name)
        changed += not np.array_equal(got[spec.name], state[spec.name])
    assert changed > len(got) // 2
    pad = "distilbert.embeddings.word_embeddings.weight"
    if task != "masked_lm":  # (the tied LM projector does train the padding row, in PyTorch too)
        assert np.array_equal(got[pad][CONFIG.pad_token_id], state[pad][CONFIG.pad_token_id])

    losses = first + model.fit(data, batch_size=16, epochs=5, verbose=0, shuffle=False).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def test_compiled_loss_metrics_validation_evaluate_predict():
    """``compile(optimizer, loss, metrics)`` + ``fit(x, y)``: the standard Keras way."""
    data = dataset("sequence_classification", n=24)
    y = data.pop("labels")
    model = ours("tf", "sequence_classification", CONFIG, random_state(CONFIG, "sequence_classification", seed=22))
    model.compile(
        optimizer=keras.optimizers.SGD(0.2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(data, y, batch_size=8, epochs=3, validation_data=(data, y), verbose=0, shuffle=False)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    result = model.evaluate(data, y, batch_size=8, verbose=0, return_dict=True)
    want = model(data, labels=y).loss.numpy()  # the model's own loss is the same cross-entropy
    assert abs(result["loss"] - want) < 1e-4
    predictions = model.predict(data, batch_size=8, verbose=0)
    assert isinstance(predictions, dict) and set(predictions) == {"logits"}
    assert isinstance(predictions["logits"], np.ndarray) and predictions["logits"].shape == (24, 2)
    assert_close(predictions["logits"], model(data).logits)
    accuracy = (predictions["logits"].argmax(-1) == y).mean()
    assert abs(accuracy - result["accuracy"]) < 1e-6


def test_labels_as_y_without_compiled_loss():
    """``compile(optimizer)`` + ``fit(x, y)``: y is the model's labels (QA: a pair of positions)."""
    data = dataset("question_answering")
    y = (data.pop("start_positions"), data.pop("end_positions"))
    model = ours("tf", "question_answering", CONFIG, random_state(CONFIG, "question_answering", seed=23))
    model.compile(optimizer=keras.optimizers.SGD(0.2))
    before = model(data, start_positions=y[0], end_positions=y[1]).loss.numpy()
    losses = model.fit(data, y, batch_size=16, epochs=4, verbose=0, shuffle=False).history["loss"]
    assert abs(losses[0] - before) < 1e-5 and losses[-1] < losses[0], losses
    predictions = model.predict(data, verbose=0)
    assert set(predictions) == {"start_logits", "end_logits"}
    assert predictions["start_logits"].shape == (16, 8)
    with pytest.raises(ValueError, match="no loss to train on"):
        model.fit(data, batch_size=8, epochs=1, verbose=0, shuffle=False)


def test_dataset_of_dicts_with_callbacks(tmp_path):
    data = dataset("token_classification", n=16)
    train = tf.data.Dataset.from_tensor_slices(data).batch(8)
    val_data = dataset("token_classification", n=8, seed=1)
    val = tf.data.Dataset.from_tensor_slices(val_data).batch(8)
    model = ours("tf", "token_classification", CONFIG, random_state(CONFIG, "token_classification", seed=24))
    model.compile(optimizer=keras.optimizers.SGD(0.2))
    path = str(tmp_path / "ckpt.weights.h5")
    callbacks = [
        keras.callbacks.ModelCheckpoint(path, save_weights_only=True),
        # min_delta that nothing reaches: stops after patience + 1 epochs
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0),
    ]
    history = model.fit(train, validation_data=val, epochs=6, callbacks=callbacks, verbose=0, shuffle=False)
    assert len(history.history["val_loss"]) == 2 and history.history["loss"][1] < history.history["loss"][0]
    assert os.path.isfile(path)
    fresh = ours("tf", "token_classification", CONFIG, random_state(CONFIG, "token_classification", seed=0))
    fresh.load_weights(path)
    assert_close(fresh(val_data).logits, model(val_data).logits)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_fit_and_predict(policy):
    task = "masked_lm" if policy == "mixed_bfloat16" else "sequence_classification"
    data = dataset(task)
    model = ours("tf", task, CONFIG, random_state(CONFIG, task, seed=25), dtype=policy)
    model.compile(optimizer=keras.optimizers.SGD(0.2))
    if policy == "mixed_float16":  # Keras adds dynamic loss scaling for float16
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(data, batch_size=8, epochs=3, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    if policy == "mixed_float16":
        logits = model.predict(data, verbose=0)["logits"]
    else:
        logits = model(data).logits.numpy()
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    assert model.distilbert.embeddings.word_embeddings.embeddings.dtype == "float32"  # master weights


def test_xla_fit_and_predict_with_varying_lengths():
    model = ours("tf", "sequence_classification", CONFIG, random_state(CONFIG, "sequence_classification", seed=26))
    model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=True)
    assert model.jit_compile
    data = dataset("sequence_classification", n=16, seq=6)
    losses = model.fit(data, batch_size=8, epochs=3, verbose=0, shuffle=False).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    longer = dataset("sequence_classification", n=16, seq=11, seed=11)
    assert_close(model.predict(longer, batch_size=16, verbose=0)["logits"], model(longer).logits)
