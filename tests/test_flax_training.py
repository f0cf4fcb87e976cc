"""Flax NNX backend: jitted training steps (nnx.jit and split/merge), accumulation, schedules, Orbax resume.

Compilations are the expensive part here: the tests share one config, one batch shape and one
optax transformation per purpose so that ``jit`` caches are reused across tests.
"""

from __future__ import annotations

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx
from helpers import assert_close, random_inputs, random_state, tiny_config

from distilbert.flax import (
    FlaxDistilBertForMaskedLM,
    FlaxDistilBertForMultipleChoice,
    FlaxDistilBertForQuestionAnswering,
    FlaxDistilBertForSequenceClassification,
    FlaxDistilBertForTokenClassification,
    canonical_state,
    load_canonical_state,
    training,
)

HEADS = {
    "masked_lm": FlaxDistilBertForMaskedLM,
    "sequence_classification": FlaxDistilBertForSequenceClassification,
    "multiple_choice": FlaxDistilBertForMultipleChoice,
    "token_classification": FlaxDistilBertForTokenClassification,
    "question_answering": FlaxDistilBertForQuestionAnswering,
}
CONFIG = tiny_config(n_layers=1)
SGD = optax.sgd(0.1)  # one object: nnx.jit caches on it
LR = 0.1


def batch_for(task, seed=0, config=CONFIG):
    inputs = random_inputs(config, batch=4, seq=8, seed=seed, choices=2 if task == "multiple_choice" else None)
    rng = np.random.default_rng(seed + 1)
    if task == "masked_lm":
        labels = np.where(rng.random((4, 8)) < 0.5, rng.integers(0, config.vocab_size, (4, 8)), -100)
        extra = {"labels": labels}
    elif task == "token_classification":
        extra = {"labels": np.where(inputs["attention_mask"] == 1, rng.integers(0, 2, (4, 8)), -100)}
    elif task == "question_answering":
        extra = {"start_positions": rng.integers(0, 4, (4,)), "end_positions": rng.integers(3, 8, (4,))}
    else:
        extra = {"labels": rng.integers(0, 2, (4,))}
    return {k: jnp.asarray(v) for k, v in {**inputs, **extra}.items()}


def build(task, state=None, config=CONFIG, seed=0):
    # RBG keys: XLA compiles their dropout masks in half the time of threefry ones (the default)
    model = HEADS[task](config, rngs=nnx.Rngs(params=seed, dropout=jax.random.key(seed + 1, impl="rbg")))
    if state is not None:
        load_canonical_state(model, state)
    return model


@pytest.mark.parametrize("task", list(HEADS))
def test_jit_train_step_lowers_the_loss_of_every_head(task):
    batch = batch_for(task)
    model = build(task, random_state(CONFIG, task, seed=2))
    optimizer = nnx.Optimizer(model, SGD, wrt=nnx.Param)
    losses = [float(training.train_step(model, optimizer, batch)) for _ in range(4)]  # each before its update
    assert losses[-1] < losses[0] - 0.05, losses


@pytest.mark.parametrize("task", list(HEADS))
def test_sgd_step_equals_pytorch_backend(task):
    """One SGD step, dropout 0: every updated weight equals distilbert.pt's after torch.optim.SGD."""
    from distilbert.frameworks import build as build_pt

    state = random_state(CONFIG, task, seed=3)
    batch = batch_for(task)
    model = build(task, state)
    optimizer = nnx.Optimizer(model, SGD, wrt=nnx.Param)
    loss = training.train_step(model, optimizer, batch)

    reference = build_pt("pt", task, CONFIG, state)
    reference.train()
    torch_opt = torch.optim.SGD(reference.parameters(), lr=LR)
    out = reference(**{k: torch.from_numpy(np.array(v)).long() for k, v in batch.items()})
    out.loss.backward()
    torch_opt.step()
    assert_close(loss, out.loss.detach().numpy(), name="loss")
    updated = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    ours = canonical_state(model)
    for name, array in ours.items():
        assert_close(array, updated[name], name=name)
    changed = [n for n in ours if not np.allclose(ours[n], state[n])]
    assert len(changed) > 0.8 * len(ours)


def test_gradient_accumulation_matches_the_full_batch():
    """2 micro-batches of 2 give the update of the batch of 4 (dropout 0, equal-size micro-batches)."""
    task = "sequence_classification"
    state = random_state(CONFIG, task, seed=4)
    batches = [batch_for(task, seed=s) for s in range(3)]
    model = build(task, state)
    optimizer = nnx.Optimizer(model, SGD, wrt=nnx.Param)
    nnx_losses = [float(training.train_step(model, optimizer, b)) for b in batches]
    accumulated = build(task, state)
    acc_opt = nnx.Optimizer(accumulated, SGD, wrt=nnx.Param)
    acc_losses = [float(training.train_step(accumulated, acc_opt, b, accum_steps=2)) for b in batches]
    assert_close(acc_losses, nnx_losses)
    for name, array in canonical_state(model).items():
        assert_close(canonical_state(accumulated)[name], array, name=name)
    with pytest.raises(ValueError, match="not divisible by accum_steps=3"):
        training.train_step(accumulated, acc_opt, batches[0], accum_steps=3)


DROPOUT = tiny_config(n_layers=1, dropout=0.1, attention_dropout=0.1, seq_classif_dropout=0.2)
ADAMW = training.adamw_with_warmup(1e-2, total_steps=8, warmup_steps=2)


def test_warmup_schedule_starts_at_zero():
    model = build("sequence_classification", config=DROPOUT)
    optimizer = nnx.Optimizer(model, ADAMW, wrt=nnx.Param)
    before = canonical_state(model)
    batch = batch_for("sequence_classification", config=DROPOUT)
    training.train_step(model, optimizer, batch)  # learning rate 0 at step 0 (weight decay scaled by it too)
    after = canonical_state(model)
    assert all(np.array_equal(after[n], before[n]) for n in before)
    training.train_step(model, optimizer, batch)
    assert not np.allclose(canonical_state(model)["classifier.weight"], before["classifier.weight"])


def test_orbax_resume_continues_the_same_loss_trajectory(tmp_path):
    """Params + optimizer state + RNG state + step: a restored run repeats the uninterrupted losses.

    The functional split/merge + jax.jit path follows the same trajectory as nnx.jit, dropout on.
    """
    task = "sequence_classification"
    batches = [batch_for(task, seed=s, config=DROPOUT) for s in range(6)]

    def fresh():
        model = build(task, config=DROPOUT)
        return model, nnx.Optimizer(model, ADAMW, wrt=nnx.Param)

    model, optimizer = fresh()
    straight = [float(training.train_step(model, optimizer, b)) for b in batches]
    model, optimizer = fresh()
    first = [float(training.train_step(model, optimizer, b)) for b in batches[:3]]
    assert training.save_checkpoint(tmp_path / "nnx", model, optimizer) == 3
    model, optimizer = fresh()  # a new process would start like this
    assert training.restore_checkpoint(tmp_path / "nnx", model, optimizer) == 3
    resumed = [float(training.train_step(model, optimizer, b)) for b in batches[3:]]
    assert first + resumed == straight
    assert len(set(straight)) == len(straight)

    graphdef, state = training.functional_state(fresh()[0], ADAMW)
    step = training.make_train_step(graphdef, ADAMW)
    fun = []
    for b in batches[:3]:
        state, loss = step(state, b)
        fun.append(float(loss))
    assert training.save_train_state(tmp_path / "fun", state) == 3
    restored = training.restore_train_state(tmp_path / "fun", training.functional_state(fresh()[0], ADAMW)[1])
    for b in batches[3:]:
        restored, loss = step(restored, b)
        fun.append(float(loss))
    assert_close(fun, straight)
    assert int(restored.step) == 6
    final = canonical_state(training.merge_model(graphdef, restored))
    for name, array in canonical_state(model).items():
        assert_close(final[name], array, name=name)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        training.restore_checkpoint(tmp_path / "empty", *fresh())


def test_example_fine_tunes_a_classifier(tmp_path):
    path = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "flax_finetune_classifier.py")
    spec = importlib.util.spec_from_file_location("flax_finetune_classifier", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--output-dir", str(tmp_path)])
    assert np.mean(result["losses"][-5:]) < np.mean(result["losses"][:5]) - 0.1
    assert result["accuracy"] > 0.9
    assert os.path.isfile(tmp_path / "model" / "flax_model.msgpack")
    assert os.listdir(tmp_path / "checkpoints") == ["80"]
    reloaded = FlaxDistilBertForSequenceClassification.from_pretrained(tmp_path / "model")
    assert reloaded.config.num_labels == 2
    assert all(np.all(np.isfinite(v)) for v in canonical_state(reloaded).values())
