"""The classifier heads' last block computes the first token's row only (``first_token_only``).

DistilBertForSequenceClassification and DistilBertForMultipleChoice read the first token alone, so
their last block runs its query, ``out_lin``, LayerNorms and FFN on that row. These tests check, per
backend, that the pruned path is taken (the last FFN sees one row per sequence) and that logits, loss
and every parameter gradient equal the full path's (forced by ``output_hidden_states=True``), with
padding and a head mask. Reference parity of the heads is tested in ``test_models.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ATOL, assert_close, ours, random_state, task_inputs, task_labels, tiny_config, to_torch

TASKS = ("sequence_classification", "multiple_choice")
CONFIG = tiny_config()
# Per layer and head, including a masked head and a fraction: every path of the head mask is exercised.
HEAD_MASK = np.array([[1.0, 0.0, 1.0, 0.5], [0.5, 1.0, 0.0, 1.0]], np.float32)


def _batch(task):
    inputs = task_inputs(CONFIG, task, batch=6)  # padded rows, different lengths
    rows = inputs["input_ids"].size // inputs["input_ids"].shape[-1]
    return {**inputs, **task_labels(CONFIG, task, inputs)}, rows, inputs["input_ids"].shape[-1]


def _check_equal(pruned, full):
    # ATOL, not exact: one row and T rows through a matmul may take differently blocked kernels.
    (loss_p, logits_p, grads_p), (loss_f, logits_f, grads_f) = pruned, full
    assert_close(logits_p, logits_f, ATOL, "logits")
    assert_close(loss_p, loss_f, ATOL, "loss")
    assert sorted(grads_p) == sorted(grads_f)
    for name in grads_f:
        assert_close(grads_p[name], grads_f[name], ATOL, name)
    assert any(np.abs(g).max() > 0 for g in grads_f.values())


# ------------------------------------------------------------------------------ PyTorch
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    "impl, head_mask, checkpointing",
    [("sdpa", False, False), ("eager", True, False), ("sdpa", True, True)],
)
def test_pt_first_token_only(task, impl, head_mask, checkpointing):
    import torch

    model = ours("pt", task, CONFIG, random_state(CONFIG, task), attn_implementation=impl).train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    batch, rows, seq = _batch(task)
    args = to_torch(batch)
    if head_mask:
        args["head_mask"] = torch.from_numpy(HEAD_MASK)
    seen = []
    for i, block in enumerate(model.distilbert.transformer.layer):
        block.ffn.register_forward_hook(lambda m, a, o, i=i: seen.append((i, tuple(a[0].shape))))

    def step(full):
        model.zero_grad()
        out = model(**args, output_hidden_states=full)
        out.loss.backward()
        grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
        return out.loss.detach(), out.logits.detach(), grads

    pruned = step(False)
    assert seen[:2] == [(0, (rows, seq, CONFIG.dim)), (1, (rows, 1, CONFIG.dim))]  # recomputation may add more
    seen.clear()
    full = step(True)
    assert seen[:2] == [(0, (rows, seq, CONFIG.dim)), (1, (rows, seq, CONFIG.dim))]
    _check_equal(pruned, full)


@pytest.mark.parametrize("pack", [False, True])
def test_pt_first_token_only_inference(monkeypatch, pack):
    """No-grad eval takes the fused oneDNN kernels (with packed weights or not) on the pruned rows too."""
    import torch

    from distilbert.pt import ops

    monkeypatch.setattr(ops, "PACK_WEIGHTS", pack)
    task = "sequence_classification"
    model = ours("pt", task, CONFIG, random_state(CONFIG, task))
    args = to_torch(task_inputs(CONFIG, task, batch=6))
    with torch.no_grad():
        pruned = model(**args).logits
        full = model(**args, output_hidden_states=True).logits
        base = model.distilbert(**args, first_token_only=True).last_hidden_state
        every = model.distilbert(**args).last_hidden_state
    assert_close(pruned, full, ATOL, "logits")
    assert base.shape == (6, 1, CONFIG.dim)
    assert_close(base, every[:, :1], ATOL, "first row")


def test_pt_other_heads_keep_every_row():
    """Heads that read every token (and the bare model by default) are not pruned."""
    import torch

    for task in ("base", "masked_lm", "token_classification", "question_answering"):
        model = ours("pt", task, CONFIG, random_state(CONFIG, task))
        encoder = model if task == "base" else model.distilbert
        seen = []
        encoder.transformer.layer[-1].ffn.register_forward_hook(lambda m, a, o: seen.append(tuple(a[0].shape)))
        with torch.no_grad():
            model(**to_torch(task_inputs(CONFIG, task, batch=3)))
        assert seen == [(3, 7, CONFIG.dim)], task


# ------------------------------------------------------------------------------ TensorFlow
@pytest.mark.parametrize("task", TASKS)
def test_tf_first_token_only(task, monkeypatch):
    import tensorflow as tf

    from distilbert.tf import modeling

    model = ours("tf", task, CONFIG, random_state(CONFIG, task))
    batch, rows, seq = _batch(task)
    seen = []
    original = modeling.FFN.call

    def spy(self, x, training=False):
        seen.append(tuple(x.shape))
        return original(self, x, training=training)

    monkeypatch.setattr(modeling.FFN, "call", spy)

    def step(full):
        with tf.GradientTape() as tape:
            out = model(dict(batch), head_mask=HEAD_MASK, output_hidden_states=full, training=True)
        variables = model.trainable_variables
        grads = tape.gradient(out.loss, variables)
        grads = {v.path: tf.convert_to_tensor(g).numpy() for v, g in zip(variables, grads) if g is not None}
        return out.loss, out.logits, grads

    pruned = step(False)
    assert seen == [(rows * seq, CONFIG.dim), (rows, CONFIG.dim)]
    seen.clear()
    full = step(True)
    assert seen == [(rows * seq, CONFIG.dim)] * 2
    _check_equal(pruned, full)


def test_tf_first_token_only_graph():
    """Under tf.function (as in Keras fit) the pruned path traces and gives the eager numbers."""
    import tensorflow as tf

    task = "sequence_classification"
    model = ours("tf", task, CONFIG, random_state(CONFIG, task))
    inputs = task_inputs(CONFIG, task, batch=6)
    graph = tf.function(lambda x: model(x, training=False).logits)
    assert_close(graph(dict(inputs)), model(dict(inputs), output_hidden_states=True).logits, ATOL, "logits")
    base = model.distilbert(dict(inputs), first_token_only=True).last_hidden_state
    assert_close(base, model.distilbert(dict(inputs)).last_hidden_state[:, :1], ATOL, "first row")


# ------------------------------------------------------------------------------ Flax
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("remat", [False, True])
def test_flax_first_token_only(task, remat, monkeypatch):

    import jax.numpy as jnp
    from flax import nnx

    from distilbert.flax import modeling

    model = ours("flax", task, CONFIG, random_state(CONFIG, task), remat=remat)
    batch, rows, seq = _batch(task)
    args = {k: jnp.asarray(v) for k, v in batch.items()}
    seen = []
    original = modeling.FFN.__call__

    def spy(self, x, deterministic):
        seen.append(tuple(x.shape))
        return original(self, x, deterministic)

    monkeypatch.setattr(modeling.FFN, "__call__", spy)

    def step(full):
        def loss_fn(m):
            out = m(**args, head_mask=jnp.asarray(HEAD_MASK), output_hidden_states=full)
            return out.loss, out.logits

        (loss, logits), grads = nnx.jit(nnx.value_and_grad(loss_fn, has_aux=True))(model)
        flat = {"/".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(grads)}
        return loss, logits, flat

    pruned = step(False)
    assert seen == [(rows, seq, CONFIG.dim), (rows, 1, CONFIG.dim)]  # traced once each
    seen.clear()
    full = step(True)
    assert seen == [(rows, seq, CONFIG.dim)] * 2
    _check_equal(pruned, full)


def test_flax_bare_model_first_token_only():
    """The bare encoder's call argument, eagerly and under jit, as in pt and tf; a head refuses it."""
    import jax.numpy as jnp
    from flax import nnx

    model = ours("flax", "base", CONFIG, random_state(CONFIG, "base"))
    args = {k: jnp.asarray(v) for k, v in task_inputs(CONFIG, "base", batch=6).items()}
    every = model(**args).last_hidden_state
    base = model(**args, first_token_only=True).last_hidden_state
    assert base.shape == (6, 1, CONFIG.dim)
    assert_close(base, every[:, :1], ATOL, "first row")
    jitted = nnx.jit(lambda m, a: m(**a, first_token_only=True).last_hidden_state)(model, args)
    assert_close(jitted, every[:, :1], ATOL, "first row under jit")
    skipped = model(**args, first_token_only=True, skip_padding=True).last_hidden_state
    assert_close(skipped, every[:, :1], ATOL, "first row, padding skipped")
    assert model(**args, first_token_only=True, output_hidden_states=True).last_hidden_state.shape == every.shape
    head = ours("flax", "sequence_classification", CONFIG, random_state(CONFIG, "sequence_classification"))
    with pytest.raises(ValueError, match="first_token_only is an argument of the bare encoder"):
        head(**args, first_token_only=True)
