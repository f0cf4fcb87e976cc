"""Training the Flax NNX models the JAX way: jitted steps with optax, and Orbax checkpoints.

Two paths to the same step:

- **NNX** (:func:`train_step`): ``nnx.jit`` over the model and an ``nnx.Optimizer``, which are
  updated in place. The simplest; NNX walks the object graph on every call.
- **Functional** (:func:`functional_state` + :func:`make_train_step`): ``nnx.split`` once into a
  static graph definition and pytrees of parameters, the rest of the state (dropout RNG counters)
  and the optax state, then a plain ``jax.jit`` with donated buffers. The lowest overhead.

Both compute the batch's loss with dropout on (``deterministic=False``, RNGs from the model's
``nnx.Rngs``), and accumulate gradients over ``accum_steps`` micro-batches (a ``lax.scan``; the
batch's leading axis must divide evenly) before one optimiser update: the loss and gradients are
then the means over the micro-batches. Learning-rate schedules are optax schedules
(:func:`adamw_with_warmup`).

Checkpoints (:func:`save_checkpoint` / :func:`restore_checkpoint`, or :func:`save_train_state` /
:func:`restore_train_state` for the functional path) hold parameters, optimiser state, RNG state and
the step, so a restored run continues on the same loss trajectory.

Example:
    >>> import jax.numpy as jnp, optax
    >>> from flax import nnx
    >>> from distilbert import DistilBertConfig
    >>> from distilbert.flax import FlaxDistilBertForSequenceClassification
    >>> from distilbert.flax.training import train_step
    >>> model = FlaxDistilBertForSequenceClassification(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37))
    >>> optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
    >>> batch = {"input_ids": jnp.ones((4, 8), jnp.int32), "labels": jnp.array([0, 1, 0, 1])}
    >>> loss = train_step(model, optimizer, batch)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = [
    "loss_fn",
    "value_and_grad",
    "train_step",
    "eval_step",
    "linear_schedule",
    "adamw_with_warmup",
    "TrainState",
    "functional_state",
    "make_train_step",
    "merge_model",
    "save_checkpoint",
    "restore_checkpoint",
    "save_train_state",
    "restore_train_state",
]

Batch = Mapping[str, jax.Array]


def loss_fn(model: nnx.Module, batch: Batch) -> jax.Array:
    """The model's loss on ``batch`` (model inputs plus ``labels`` or QA positions), dropout on."""
    out = model(**batch, deterministic=False)
    if out.loss is None:
        raise ValueError("the batch has no labels (or start_positions/end_positions): no loss to train on")
    return out.loss


def value_and_grad(
    model: nnx.Module, batch: Batch, accum_steps: int = 1, loss: Callable[[nnx.Module, Batch], jax.Array] = loss_fn
) -> tuple[jax.Array, nnx.State]:
    """Loss and gradients w.r.t. the ``nnx.Param`` s, averaged over ``accum_steps`` micro-batches.

    Call it inside ``nnx.jit`` (or on a model merged inside ``jax.jit``); RNG state advances in place.
    """
    if accum_steps == 1:
        return nnx.value_and_grad(loss)(model, batch)
    for name, x in batch.items():
        if x.shape[0] % accum_steps:
            raise ValueError(f"batch axis of {name!r} ({x.shape[0]}) is not divisible by accum_steps={accum_steps}")
    micro = jax.tree.map(lambda x: x.reshape((accum_steps, x.shape[0] // accum_steps) + x.shape[1:]), dict(batch))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def one(carry, mb):
        grads, total, rest = carry

        def f(p):
            m = nnx.merge(graphdef, p, rest, copy=True)
            return loss(m, mb), nnx.state(m, nnx.Not(nnx.Param))

        (value, rest), g = jax.value_and_grad(f, has_aux=True)(params)
        return (jax.tree.map(jnp.add, grads, g), total + value, rest), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (grads, total, rest), _ = jax.lax.scan(one, (zeros, jnp.zeros((), jnp.float32), rest), micro)
    nnx.update(model, rest)
    return total / accum_steps, jax.tree.map(lambda g: g / accum_steps, grads)


@functools.partial(nnx.jit, static_argnames=("accum_steps",))
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, batch: Batch, accum_steps: int = 1) -> jax.Array:
    """One optimiser update on ``batch`` (``nnx.jit``; model and optimizer updated in place).

    Returns:
        The loss before the update (mean over micro-batches).
    """
    value, grads = value_and_grad(model, batch, accum_steps)
    optimizer.update(model, grads)
    return value


@nnx.jit
def eval_step(model: nnx.Module, batch: Batch):
    """The model's output on ``batch`` with dropout off (loss included when the batch has labels)."""
    return model(**batch, deterministic=True)


def linear_schedule(learning_rate: float, total_steps: int, warmup_steps: int = 0) -> optax.Schedule:
    """``0 -> learning_rate`` linearly over ``warmup_steps``, then linearly down to 0 at ``total_steps``."""
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1)),
            optax.linear_schedule(learning_rate, 0.0, max(total_steps - warmup_steps, 1)),
        ],
        [warmup_steps],
    )


def _decays(params):
    """Weight decay on rank >= 2 parameters (kernels, embeddings), not on biases and LayerNorm scales."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def adamw_with_warmup(
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.01,
    max_grad_norm: float | None = 1.0,
) -> optax.GradientTransformation:
    """AdamW on :func:`linear_schedule` (the usual BERT fine-tuning recipe), after global-norm clipping
    to ``max_grad_norm`` (None: none); weight decay on kernels and embeddings, not on biases and LayerNorms."""
    tx = optax.adamw(linear_schedule(learning_rate, total_steps, warmup_steps), weight_decay=weight_decay, mask=_decays)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), tx) if max_grad_norm else tx


# ------------------------------------------------------------------------------- functional path
class TrainState(NamedTuple):
    """Everything the functional step updates: pure pytrees, donated to ``jax.jit``."""

    params: nnx.State
    rest: nnx.State  # non-parameter state: dropout RNG keys and counters
    opt_state: Any
    step: jax.Array


def functional_state(model: nnx.Module, tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
    """Splits ``model`` into its static graph definition and a :class:`TrainState` for ``tx``."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32))


def merge_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    """The NNX model holding ``state``'s parameters (for evaluation or ``save_pretrained``)."""
    return nnx.merge(graphdef, state.params, state.rest)


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    accum_steps: int = 1,
    loss: Callable[[nnx.Module, Batch], jax.Array] = loss_fn,
):
    """A ``jax.jit`` step ``(TrainState, batch) -> (TrainState, loss)``; the input state is donated."""

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state: TrainState, batch: Batch):
        model = nnx.merge(graphdef, state.params, state.rest)
        value, grads = value_and_grad(model, batch, accum_steps, loss)
        _, params, rest = nnx.split(model, nnx.Param, ...)
        updates, opt_state = tx.update(grads, state.opt_state, params)
        return TrainState(optax.apply_updates(params, updates), rest, opt_state, state.step + 1), value

    return step


# ------------------------------------------------------------------------------- Orbax checkpoints
def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _encode(tree):
    """Typed PRNG keys as their raw uint32 data (what Orbax can store)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _decode(restored, like):
    return jax.tree.map(
        lambda r, l: jax.random.wrap_key_data(r, impl=jax.random.key_impl(l)) if _is_key(l) else r, restored, like
    )


def _manager(directory, max_to_keep: int | None = None):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def _save(directory, step: int, tree, max_to_keep: int | None) -> None:
    import orbax.checkpoint as ocp

    with _manager(directory, max_to_keep) as manager:
        manager.save(int(step), args=ocp.args.StandardSave(_encode(tree)), force=True)
        manager.wait_until_finished()


def _restore(directory, like, step: int | None):
    import orbax.checkpoint as ocp

    with _manager(directory) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {os.fspath(directory)!r}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _encode(like))
        restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    # Orbax returns arrays committed to a device; fresh ones are not, and jit would compile again for them.
    restored = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), restored)
    return _decode(restored, like), step


def save_checkpoint(
    directory: str | os.PathLike,
    model: nnx.Module,
    optimizer: nnx.Optimizer,
    step: int | None = None,
    max_to_keep: int | None = None,
) -> int:
    """Saves parameters, RNG state and optimiser state under ``directory/<step>`` with Orbax.

    Args:
        step: The checkpoint's step; default the optimiser's update count.
        max_to_keep: Keep only the newest checkpoints (None: all).

    Returns:
        The step saved.
    """
    step = int(optimizer.step[...]) if step is None else int(step)
    tree = {"model": nnx.to_pure_dict(nnx.state(model)), "optimizer": nnx.to_pure_dict(nnx.state(optimizer))}
    _save(directory, step, tree, max_to_keep)
    return step


def restore_checkpoint(
    directory: str | os.PathLike, model: nnx.Module, optimizer: nnx.Optimizer, step: int | None = None
) -> int:
    """Restores :func:`save_checkpoint` 's state into ``model`` and ``optimizer`` in place.

    Args:
        step: Which checkpoint; default the newest.

    Returns:
        The step restored.
    """
    model_state, opt_state = nnx.state(model), nnx.state(optimizer)
    like = {"model": nnx.to_pure_dict(model_state), "optimizer": nnx.to_pure_dict(opt_state)}
    restored, step = _restore(directory, like, step)
    nnx.replace_by_pure_dict(model_state, restored["model"])
    nnx.replace_by_pure_dict(opt_state, restored["optimizer"])
    nnx.update(model, model_state)
    nnx.update(optimizer, opt_state)
    return step


def save_train_state(directory: str | os.PathLike, state: TrainState, max_to_keep: int | None = None) -> int:
    """Saves a functional :class:`TrainState` under ``directory/<state.step>``; returns the step."""
    step = int(state.step)
    _save(directory, step, state, max_to_keep)
    return step


def restore_train_state(directory: str | os.PathLike, like: TrainState, step: int | None = None) -> TrainState:
    """Restores a :class:`TrainState` shaped like ``like`` (e.g. a fresh :func:`functional_state`)."""
    return _restore(directory, like, step)[0]
