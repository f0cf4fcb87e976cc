"""The three backends are one model: same weights give the same outputs, losses, gradients and steps.

One matrix: framework pair x the six classes x configs x inputs. Each framework's results are
computed once per (class, config, input) and cached for the module; every pair is then compared.
"""

import functools

import numpy as np
import pytest
from helpers import ATOL, assert_close, gradients, random_inputs, random_state, tiny_config

from distilbert.common.names import TASKS
from distilbert.frameworks import FRAMEWORKS, build, canonical_state, run

PAIRS = [("pt", "tf"), ("pt", "flax"), ("tf", "flax")]
CONFIGS = {
    "default": {},
    "sinusoidal": dict(sinusoidal_pos_embds=True),
    "relu": dict(activation="relu"),
    "untied": dict(tie_word_embeddings=False),
    "one_head": dict(n_heads=1),
    "one_layer": dict(n_layers=1),
}
INPUTS = ["padded", "fully_masked", "batch1", "length1"]
LR = 0.5


def _config(name):
    return tiny_config(**CONFIGS[name])


def _inputs(config, task, name):
    choices = 2 if task == "multiple_choice" else None
    batch, seq = {"padded": (3, 7), "fully_masked": (3, 7), "batch1": (1, 5), "length1": (2, 1)}[name]
    inputs = random_inputs(config, batch=batch, seq=seq, seed=1, choices=choices)
    if name == "fully_masked":
        inputs["attention_mask"][1] = 0
    rng = np.random.default_rng(2)
    shape = inputs["input_ids"].shape
    if task == "masked_lm":
        labels = rng.integers(0, config.vocab_size, size=shape)
        labels[rng.random(shape) < 0.3] = -100
        inputs["labels"] = labels
    elif task == "token_classification":
        labels = rng.integers(0, config.num_labels, size=shape)
        labels[inputs["attention_mask"] == 0] = -100
        inputs["labels"] = labels
    elif task == "sequence_classification":
        inputs["labels"] = rng.integers(0, config.num_labels, size=batch)
    elif task == "multiple_choice":
        inputs["labels"] = rng.integers(0, choices, size=batch)
    elif task == "question_answering":
        inputs["start_positions"] = rng.integers(0, seq, size=batch)
        end = rng.integers(0, seq, size=batch)
        if batch > 1:  # out of range: clamped and ignored (a batch of only ignored positions has a nan loss)
            end[0] = seq + 3
        inputs["end_positions"] = end
    return inputs


@functools.cache
def _model(framework, task, config_name):
    config = _config(config_name)
    return build(framework, task, config, random_state(config, task, seed=TASKS.index(task)))


@functools.cache
def _outputs(framework, task, config_name, input_name):
    config = _config(config_name)
    inputs = _inputs(config, task, input_name)
    return run(
        framework, _model(framework, task, config_name), inputs, output_hidden_states=True, output_attentions=True
    )


def _compare(a, b, what):
    assert set(a) == set(b), f"{what}: fields differ: {sorted(a)} vs {sorted(b)}"
    for key in a:
        left, right = a[key], b[key]
        if isinstance(left, tuple):
            assert len(left) == len(right), f"{what} {key}: {len(left)} vs {len(right)}"
            for i, (x, y) in enumerate(zip(left, right)):
                assert_close(x, y, name=f"{what} {key}[{i}]")
        else:
            assert np.all(np.isfinite(left)), f"{what} {key} not finite"
            assert_close(left, right, name=f"{what} {key}")


@pytest.mark.parametrize("input_name", INPUTS)
@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
def test_outputs_agree(pair, task, config_name, input_name):
    a, b = (_outputs(fw, task, config_name, input_name) for fw in pair)
    _compare(a, b, f"{pair} {task} {config_name} {input_name}")
    if task != "base":
        assert "loss" in a


# ----------------------------------------------------------------------------- gradients, steps
def _sgd_step(framework, model, inputs):
    """One SGD step (lr 0.5) with the framework's own optimizer; returns the new canonical state."""
    if framework == "pt":
        import torch

        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        optimizer.zero_grad()
        model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).loss.backward()
        optimizer.step()
    elif framework == "tf":
        import keras
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = model(dict(inputs), training=True).loss
        variables = model.trainable_variables
        keras.optimizers.SGD(learning_rate=LR).apply_gradients(zip(tape.gradient(loss, variables), variables))
    else:
        import jax.numpy as jnp
        import optax
        from flax import nnx

        optimizer = nnx.Optimizer(model, optax.sgd(LR), wrt=nnx.Param)
        grads = nnx.grad(lambda m: m(**{k: jnp.asarray(v) for k, v in inputs.items()}, deterministic=False).loss)(model)
        optimizer.update(model, grads)
    return canonical_state(framework, model)


HEADS = [t for t in TASKS if t != "base"]


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("task", HEADS)
def test_gradients_agree(task, config_name):
    config = _config(config_name)
    inputs = _inputs(config, task, "padded")
    grads = {fw: gradients(fw, _model(fw, task, config_name), inputs, config, task) for fw in FRAMEWORKS}
    for a, b in PAIRS:
        for name in grads[a]:
            assert_close(grads[a][name], grads[b][name], name=f"{a}-{b} grad {name}")
    assert any(np.abs(g).max() > 0 for g in grads["pt"].values())


@pytest.mark.parametrize("task", HEADS)
def test_one_sgd_step_gives_the_same_weights(task):
    config = _config("default")
    state = random_state(config, task, seed=7)
    inputs = _inputs(config, task, "padded")
    after = {fw: _sgd_step(fw, build(fw, task, config, state), inputs) for fw in FRAMEWORKS}
    moved = [n for n in state if not np.array_equal(after["pt"][n], state[n])]
    assert moved, "the step changed nothing"
    for a, b in PAIRS:
        for name in state:
            assert_close(after[a][name], after[b][name], atol=ATOL, name=f"{a}-{b} {name} after one step")


def test_the_matrix_is_complete():
    assert len(PAIRS) * len(TASKS) * len(CONFIGS) * len(INPUTS) == 432


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_output_flags_default_to_the_config(framework):
    """``output_attentions`` / ``output_hidden_states`` / ``return_dict`` left unset come from config.json,
    as in the reference, in every backend."""
    from distilbert import DistilBertConfig

    config = DistilBertConfig.from_dict(
        {**tiny_config().to_dict(), "output_hidden_states": True, "output_attentions": True, "return_dict": False}
    )
    model = build(framework, "sequence_classification", config, random_state(config, "sequence_classification"))
    inputs = random_inputs(config)
    assert run(framework, model, inputs).keys() == {"logits", "hidden_states", "attentions"}
    assert run(framework, model, inputs, output_attentions=False, output_hidden_states=False).keys() == {"logits"}
    if framework == "pt":
        import torch

        inputs = {k: torch.from_numpy(v) for k, v in inputs.items()}
    result = model(**inputs)  # return_dict=False from the config: the reference's tuple
    assert isinstance(result, tuple) and len(result) == 3
    assert len(result[1]) == config.n_layers + 1 and len(result[2]) == config.n_layers
