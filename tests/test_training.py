"""The fine-tuning pieces every backend's ``training.py`` has under the same names: the schedule, AdamW's
decay mask, and the train step (lowers the loss; gradient accumulation equals the full batch)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from helpers import assert_close, random_inputs, random_state, tiny_config

from distilbert.frameworks import FRAMEWORKS, build, canonical_state

CONFIG = tiny_config(n_layers=1)
TASK = "sequence_classification"


def training(framework):
    return importlib.import_module(f"distilbert.{framework}.training")


def batch(seed=0, n=4):
    inputs = random_inputs(CONFIG, batch=n, seq=6, seed=seed)
    labels = np.random.default_rng(seed).integers(0, CONFIG.num_labels, n)
    return {
        "input_ids": inputs["input_ids"].astype(np.int64),
        "attention_mask": inputs["attention_mask"],
        "labels": labels.astype(np.int64),
    }


def as_framework(framework, b):
    if framework == "pt":
        import torch

        return {k: torch.from_numpy(np.asarray(v)) for k, v in b.items()}
    if framework == "flax":
        import jax.numpy as jnp

        return {k: jnp.asarray(v.astype(np.int32)) for k, v in b.items()}
    return b


def optimizer_for(framework, model, *args, **kwargs):
    t = training(framework)
    if framework == "pt":
        return t.adamw_with_warmup(model, *args, **kwargs)
    if framework == "flax":
        from flax import nnx

        return nnx.Optimizer(model, t.adamw_with_warmup(*args, **kwargs), wrt=nnx.Param)
    return t.adamw_with_warmup(*args, **kwargs)


def sgd(framework, model, lr=0.1):
    if framework == "pt":
        import torch

        return torch.optim.SGD(model.parameters(), lr=lr)
    if framework == "flax":
        import optax
        from flax import nnx

        return nnx.Optimizer(model, optax.sgd(lr), wrt=nnx.Param)
    import keras

    return keras.optimizers.SGD(learning_rate=lr)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_linear_schedule_is_the_same_in_every_backend(framework):
    schedule = training(framework).linear_schedule(2.0, total_steps=10, warmup_steps=4)
    got = [float(np.asarray(schedule(step))) for step in range(13)]
    want = [0.0, 0.5, 1.0, 1.5, 2.0, 5 / 3, 4 / 3, 1.0, 2 / 3, 1 / 3, 0.0, 0.0, 0.0]
    assert_close(got, want, atol=1e-6)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_weight_decay_skips_biases_and_layer_norms(framework):
    """With zero gradients only weight decay moves a weight: exactly the matrices move, by lr * decay."""
    state = random_state(CONFIG, TASK, seed=1)
    model = build(framework, TASK, CONFIG, state)
    lr, decay = 0.1, 0.5
    optimizer = optimizer_for(framework, model, lr, total_steps=10, weight_decay=decay)
    if framework == "pt":
        import torch

        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
    elif framework == "tf":
        import tensorflow as tf

        optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    else:
        import jax
        import jax.numpy as jnp
        from flax import nnx

        optimizer.update(model, jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param)))
    after = canonical_state(framework, model)
    moved = sorted(n for n in state if not np.array_equal(after[n], state[n]))
    assert not CONFIG.sinusoidal_pos_embds  # (a fixed table is not trained, so never decayed)
    want = sorted(n for n in state if state[n].ndim >= 2)
    assert moved == want
    name = "pre_classifier.weight"
    assert_close(after[name], state[name] * (1 - lr * decay), atol=1e-6, name=name)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_train_step_lowers_the_loss_and_accumulates_exactly(framework):
    t = training(framework)
    state = random_state(CONFIG, TASK, seed=2)
    b = as_framework(framework, batch())
    model = build(framework, TASK, CONFIG, state)
    optimizer = optimizer_for(framework, model, 1e-2, total_steps=20)
    losses = [float(np.asarray(t.train_step(model, optimizer, b))) for _ in range(4)]
    assert losses[-1] < losses[0] - 0.05, losses

    # dropout off, SGD (Adam would magnify rounding in gradients that are zero in exact arithmetic, such as
    # k_lin.bias's): two micro-batches of two give the update of the batch of four
    config = CONFIG.replace(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)
    full, accumulated = (build(framework, TASK, config, state) for _ in range(2))
    opt_full, opt_acc = sgd(framework, full), sgd(framework, accumulated)
    want = float(np.asarray(t.train_step(full, opt_full, b)))
    got = float(np.asarray(t.train_step(accumulated, opt_acc, b, accum_steps=2)))
    assert_close(got, want, atol=1e-6)
    a, f = canonical_state(framework, accumulated), canonical_state(framework, full)
    for name in f:
        assert_close(a[name], f[name], atol=1e-5, name=name)
    with pytest.raises(ValueError, match="not divisible by accum_steps=3"):
        t.train_step(accumulated, opt_acc, b, accum_steps=3)
    out = t.eval_step(full, b)
    assert out.loss is not None and np.asarray(out.logits).shape == (4, CONFIG.num_labels)


def test_pt_adamw_runs_the_fused_kernel_and_matches_the_foreach_update():
    import torch

    from distilbert.pt import DistilBertForSequenceClassification

    torch.manual_seed(0)
    fused_model = DistilBertForSequenceClassification(CONFIG)
    plain_model = DistilBertForSequenceClassification(CONFIG)
    plain_model.load_state_dict(fused_model.state_dict())
    fused = training("pt").adamw_with_warmup(fused_model, 1e-2, total_steps=4, weight_decay=0.1)
    assert fused.defaults["fused"]
    decay = [p for p in plain_model.parameters() if p.ndim >= 2]
    rest = [p for p in plain_model.parameters() if p.ndim < 2]
    plain = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}])
    tensors = as_framework("pt", batch())
    for model, optimizer in ((fused_model, fused), (plain_model, plain)):
        for group in optimizer.param_groups:
            group["lr"], group["eps"] = 1e-3, 1e-8  # the same step size in both
        model.train(False)
        model(**tensors).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    for (name, a), b in zip(fused_model.state_dict().items(), plain_model.state_dict().values()):
        assert_close(a, b, atol=1e-6, name=name)
