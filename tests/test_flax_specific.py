"""What only the Flax NNX backend has: its pure loss functions, ``nnx.jit``/``jax.jit``, ``dtype`` and
``param_dtype``, ``remat``, dropout from ``nnx.Rngs``, parameter paths and seeds. Shared behaviour is
tested once in ``test_models.py``."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from helpers import assert_close, ours, random_state, task_inputs, task_labels, tiny_config

from distilbert.common.names import TASKS, weight_table
from distilbert.flax import FlaxDistilBertForMaskedLM, canonical_state
from distilbert.flax.pretrained import native_params
from distilbert.frameworks import build, model_class

CONFIG = tiny_config()


def test_loss_functions_under_jit():
    """The pure losses jit, and ignore -100 / out-of-range positions as the reference does."""
    from distilbert.flax import losses

    t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731
    logits = np.random.default_rng(0).standard_normal((2, 5, 11)).astype(np.float32)
    labels = np.array([[1, -100, 3, 4, -100], [-100, -100, 0, 10, 2]])
    value = jax.jit(losses.masked_lm_loss)(logits, labels)
    assert_close(value, torch.nn.functional.cross_entropy(t(logits).reshape(-1, 11), t(labels).reshape(-1)).numpy())
    start, end = logits[:, :, 0], logits[:, :, 1]
    qa = jax.jit(losses.question_answering_loss)(start, end, np.array([1, 9]), np.array([-3, 4]))
    ce = torch.nn.CrossEntropyLoss(ignore_index=5)
    want = (ce(t(start), t(np.array([1, 5]))) + ce(t(end), t(np.array([0, 4])))) / 2
    assert_close(qa, want.numpy())


def test_jit_paths_match_eager():
    model = build("flax", "base", CONFIG, random_state(CONFIG, "base", seed=11))
    inputs = task_inputs(CONFIG, "base")
    eager = model(**inputs).last_hidden_state
    by_nnx_jit = nnx.jit(lambda m, i, a: m(i, a))(model, inputs["input_ids"], inputs["attention_mask"])
    assert_close(by_nnx_jit.last_hidden_state, eager)
    graphdef, params = nnx.split(model)
    fn = jax.jit(lambda p, i, a: nnx.merge(graphdef, p)(i, a).last_hidden_state)
    assert_close(fn(params, inputs["input_ids"], inputs["attention_mask"]), eager)


def test_bfloat16_compute_with_float32_params():
    state = random_state(CONFIG, "sequence_classification", seed=2)
    inputs = task_inputs(CONFIG, "sequence_classification")
    f32 = ours("flax", "sequence_classification", CONFIG, state)
    bf16 = ours("flax", "sequence_classification", CONFIG, state, dtype=jnp.bfloat16)
    assert all(v.dtype == jnp.float32 for v in native_params(bf16).values())
    out = bf16(**inputs, labels=np.array([0, 1, 1]), output_hidden_states=True)
    assert out.hidden_states[-1].dtype == jnp.bfloat16
    assert out.loss.dtype == jnp.float32
    ref = f32(**inputs, labels=np.array([0, 1, 1]))
    assert np.allclose(np.asarray(out.logits, np.float32), ref.logits, atol=0.1)
    assert not np.allclose(np.asarray(out.logits, np.float32), ref.logits, atol=1e-6)  # it did compute in bf16
    half = ours("flax", "sequence_classification", CONFIG, state, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert all(v.dtype == jnp.bfloat16 for v in native_params(half).values())
    assert np.allclose(np.asarray(half(**inputs).logits, np.float32), ref.logits, atol=0.1)


def test_mixed_precision_backward_matmuls_stay_bfloat16():
    """Every matmul of a bf16 model's gradient, backward included, is bf16 x bf16 -> f32 (see ops.py)."""
    from distilbert.flax import ops

    inputs = task_inputs(CONFIG, "masked_lm")
    model = ours("flax", "masked_lm", CONFIG, random_state(CONFIG, "masked_lm", seed=6), dtype=jnp.bfloat16)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    labels = task_labels(CONFIG, "masked_lm", inputs)["labels"]

    def loss(p):
        return nnx.merge(graphdef, p, rest, copy=True)(**inputs, labels=labels).loss

    grad_fn = jax.jit(jax.grad(loss))
    text = grad_fn.lower(params).as_text()
    grads = grad_fn(params)  # runs: XLA:CPU lacks bf16 x bf16 -> f32 kernels for some layouts (ops.py)
    assert all(v.dtype == jnp.float32 and np.all(np.isfinite(v[...])) for _, v in nnx.to_flat_state(grads))
    dots = re.findall(r"dot_general.*\(tensor<[^>]*x(\w+)>, tensor<[^>]*x(\w+)>\) -> tensor<[^>]*x(\w+)>", text)
    assert len(dots) >= 3 * 6 * CONFIG.n_layers
    assert set(dots) == {("bf16", "bf16", "f32")}, set(dots)
    # and the custom backward is the gradient of the same function (float32 check on a small contraction)
    a = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4)), jnp.bfloat16)
    b = jnp.asarray(np.random.default_rng(1).standard_normal((4, 5)), jnp.bfloat16)
    ours_grads = jax.grad(lambda a, b: jnp.sum(jnp.sin(ops.einsum("btd,dv->btv", a, b))), (0, 1))(a, b)
    a32, b32 = a.astype(jnp.float32), b.astype(jnp.float32)
    want = jax.grad(lambda a, b: jnp.sum(jnp.sin(jnp.einsum("btd,dv->btv", a, b))), (0, 1))(a32, b32)
    for x, y in zip(ours_grads, want):
        assert x.dtype == jnp.bfloat16 and np.allclose(np.asarray(x, np.float32), y, rtol=0.02, atol=0.02)


def test_remat_gives_same_loss_and_gradients_with_dropout():
    config = tiny_config(dropout=0.2, attention_dropout=0.2)
    state = random_state(config, "token_classification", seed=4)
    inputs = task_inputs(config, "token_classification")
    labels = task_labels(config, "token_classification", inputs)

    def loss_and_grads(remat):
        rngs = nnx.Rngs(params=0, dropout=jax.random.key(9, impl="rbg"))
        model = ours("flax", "token_classification", config, state, remat=remat, rngs=rngs)
        return nnx.value_and_grad(lambda m: m(**inputs, **labels, deterministic=False).loss)(model)

    (l0, g0), (l1, g1) = loss_and_grads(False), loss_and_grads(True)
    assert_close(l1, l0)
    for (p, a), (_, b) in zip(nnx.to_flat_state(g0), nnx.to_flat_state(g1)):
        assert_close(b[...], a[...], name="/".join(map(str, p)))


def test_dropout_follows_rngs_and_train_eval():
    config = tiny_config(dropout=0.3, attention_dropout=0.3, seq_classif_dropout=0.3)
    state = random_state(config, "sequence_classification", seed=4)
    inputs = task_inputs(config, "sequence_classification")
    model = ours("flax", "sequence_classification", config, state, rngs=nnx.Rngs(params=0, dropout=1))
    evaluated = model(**inputs).logits
    a = model(**inputs, deterministic=False).logits
    b = model(**inputs, deterministic=False).logits
    assert not np.allclose(a, evaluated) and not np.allclose(a, b)  # the RNG stream advances
    again = ours("flax", "sequence_classification", config, state, rngs=nnx.Rngs(params=0, dropout=1))
    assert_close(again(**inputs, deterministic=False).logits, a)  # same seed, same masks
    model.train()
    assert not np.allclose(model(**inputs).logits, evaluated)
    model.eval()
    assert_close(model(**inputs).logits, evaluated)


def test_parameter_paths_are_the_table_nnx_column():
    for variant in ({}, {"tie_word_embeddings": False}, {"sinusoidal_pos_embds": True}):
        config = tiny_config(**variant)
        for task in TASKS:
            model = model_class("flax", task)(config)
            want = {s.names["nnx"]: s.native_shape("nnx") for s in weight_table(config, task) if s.names["nnx"]}
            got = {k: tuple(v.shape) for k, v in native_params(model).items()}
            assert got == want, (task, variant)
            if config.sinusoidal_pos_embds:  # held (a stored table loads as stored), but not an nnx.Param
                assert any("position_embeddings" in k for k in got)
                params = nnx.state(model, nnx.Param).flat_state()
                assert not any("position_embeddings" in ".".join(map(str, path)) for path, _ in params)


def test_seed_sets_the_initialisation():
    config = tiny_config(initializer_range=0.05)
    state = canonical_state(FlaxDistilBertForMaskedLM(config, seed=3))
    again = canonical_state(FlaxDistilBertForMaskedLM(config, seed=3))
    other = canonical_state(FlaxDistilBertForMaskedLM(config, seed=4))
    assert all(np.array_equal(again[n], state[n]) for n in state)  # the same seed draws the same numbers
    assert not np.allclose(other["vocab_transform.weight"], state["vocab_transform.weight"])
