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

Fine-tuning on many devices (:func:`finetune`, the function under ``distilbert finetune``): the
functional step under ``jax.jit`` on a 1-D :class:`jax.sharding.Mesh` (axis ``"data"``) of
``devices`` devices per process, over every process started by :func:`init_distributed`. The
global batch is sharded along the mesh (each process places only its own rows), parameters and
optimiser state are replicated, or with ``fsdp=True`` sharded along the same axis (FSDP: each array
on its largest axis that the mesh size divides, see :func:`fsdp_spec`). XLA's SPMD partitioner
inserts the collectives, and the loss is the model's loss of the whole global batch, so a token
loss is divided by the global count of labelled tokens and an N-way run takes the 1-device steps.
On a CPU, :func:`configure_devices` asks XLA for N host devices before JAX starts.

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
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from distilbert.common.finetune import shard
from distilbert.flax import inputs as inputs_lib

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
    "finetune",
    "training_state",
    "load_training_state",
    "is_main_process",
    "configure_devices",
    "init_distributed",
    "data_mesh",
    "fsdp_spec",
    "state_shardings",
    "place_state",
    "global_batch",
    "memory_per_device",
    "memory_report",
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
    mesh: Mesh | None = None,
    fsdp: bool = False,
):
    """A ``jax.jit`` step ``(TrainState, batch) -> (TrainState, loss)``; the input state is donated.

    With a ``mesh``, the new state keeps :func:`state_shardings`' layout (replicated, or FSDP-sharded
    with ``fsdp=True``), whatever XLA would have picked; the batch comes sharded (:func:`global_batch`).
    """

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state: TrainState, batch: Batch):
        model = nnx.merge(graphdef, state.params, state.rest)
        value, grads = value_and_grad(model, batch, accum_steps, loss)
        _, params, rest = nnx.split(model, nnx.Param, ...)
        updates, opt_state = tx.update(grads, state.opt_state, params)
        new = TrainState(optax.apply_updates(params, updates), rest, opt_state, state.step + 1)
        if mesh is not None:
            new = jax.lax.with_sharding_constraint(new, state_shardings(new, mesh, fsdp))
        return new, value

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


# ------------------------------------------------------------------------------- devices and processes
_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_HEADS = ("sequence_classification", "token_classification", "question_answering", "multiple_choice", "masked_lm")


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _jax_started() -> bool:
    from jax._src import xla_bridge  # no public API tells whether JAX's runtime has started

    return xla_bridge.backends_are_initialized()


def configure_devices(n: int) -> None:
    """Asks XLA for ``n`` host (CPU) devices, for ``finetune(devices=n)`` on a CPU; call it before JAX starts.

    Sets ``--xla_force_host_platform_device_count=n`` in ``XLA_FLAGS`` (other flags kept). It shapes
    only the CPU platform: on GPUs the GPUs are the devices. Nothing to do when JAX has already started
    with at least ``n`` devices.

    Raises:
        ValueError: ``n`` is not a positive integer.
        RuntimeError: JAX already runs with fewer than ``n`` devices (the flag is read once, at start).
    """
    n = _positive_int("the number of devices", n)
    if _jax_started():
        have = jax.local_device_count()
        if have < n:
            raise RuntimeError(
                f"JAX has already started with {have} device(s), fewer than the {n} asked: call "
                f"distilbert.flax.training.configure_devices({n}) before any JAX computation, or start Python "
                f"with XLA_FLAGS={_DEVICE_FLAG}={n}"
            )
        return
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_FLAG)]
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"{_DEVICE_FLAG}={n}"])


def init_distributed(coordinator: str, num_processes: int, process_id: int, *, timeout_s: int = 300) -> None:
    """Starts ``jax.distributed`` in this process, one of ``num_processes`` (call it first, in every process).

    Args:
        coordinator: ``HOST:PORT`` where process 0 serves the coordinator (the same in every process).
        num_processes: How many processes take part (on one or several machines).
        process_id: This process's index, ``0 <= process_id < num_processes``.
        timeout_s: How long to wait for the other processes to connect.

    Raises:
        ValueError: A malformed coordinator address or process numbers.
        RuntimeError: JAX has already started, or ``jax.distributed`` is already initialised.
    """
    match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+):(\d{1,5})", str(coordinator))
    if match is None or not 0 < int(match[2]) < 65536:
        raise ValueError(f"the coordinator must be HOST:PORT (e.g. 127.0.0.1:29500), got {coordinator!r}")
    num_processes = _positive_int("num_processes", num_processes)
    process_id = _positive_int("process_id", process_id, minimum=0)
    if process_id >= num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}) for {num_processes} processes, got {process_id}")
    if jax.distributed.is_initialized():
        raise RuntimeError("jax.distributed is already initialised in this process: call init_distributed once")
    if _jax_started():
        raise RuntimeError(
            "JAX has already started in this process: call init_distributed(...) before any JAX computation"
        )
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=_positive_int("timeout_s", timeout_s),
    )


def is_main_process() -> bool:
    """Whether this is process 0 (the only one that logs and writes); True without ``jax.distributed``."""
    return jax.process_index() == 0


def data_mesh(devices: int | None = None) -> Mesh:
    """The 1-D mesh (axis ``"data"``) of the first ``devices`` (default 1) local devices of every process.

    Devices come process by process, so that process ``p`` holds rows ``[p*B/P, (p+1)*B/P)`` of a global
    batch of ``B`` rows over ``P`` processes (see :func:`global_batch`).
    """
    n = 1 if devices is None else _positive_int("devices", devices)
    have = jax.local_device_count()
    if n > have:
        raise ValueError(
            f"devices={n}, but this process has {have} JAX device(s) ({jax.default_backend()}): on a CPU call "
            f"distilbert.flax.training.configure_devices({n}) before JAX starts (or set XLA_FLAGS={_DEVICE_FLAG}={n})"
        )
    chosen = []
    for p in range(jax.process_count()):
        mine = sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)
        if len(mine) < n:
            raise ValueError(f"process {p} has {len(mine)} JAX device(s), fewer than devices={n}")
        chosen += mine[:n]
    return Mesh(np.array(chosen), ("data",))


# ------------------------------------------------------------------------------- sharding
def fsdp_spec(shape: Sequence[int], size: int) -> P:
    """The FSDP layout of an array over ``size`` devices: ``"data"`` on its largest axis that ``size``
    divides (the first of equal ones), or ``P()`` (replicated) when none does.

    Example:
        >>> fsdp_spec((99, 32), 2), fsdp_spec((37,), 2)
        (P(None, 'data'), P())
    """
    axes = [i for i, d in enumerate(shape) if d >= size and d % size == 0]
    if not axes:
        return P()
    best = max(axes, key=lambda i: (shape[i], -i))
    return P(*("data" if i == best else None for i in range(len(shape))))


def state_shardings(tree, mesh: Mesh, fsdp: bool = False):
    """A ``NamedSharding`` per leaf of ``tree``: replicated, or with ``fsdp`` :func:`fsdp_spec`'s layout."""
    size = mesh.shape["data"]
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, size) if fsdp else P()), tree)


def place_state(tree, mesh: Mesh, fsdp: bool = False):
    """``tree``'s arrays (the same values in every process) as global arrays laid out by :func:`state_shardings`.

    Each process copies only the slices its own devices hold.
    """

    def put(x, sharding):
        if _is_key(x):  # typed PRNG keys travel as their raw data, replicated
            raw = put(jax.random.key_data(x), NamedSharding(mesh, P()))
            return jax.random.wrap_key_data(raw, impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, host, host.shape)

    return jax.tree.map(put, tree, state_shardings(tree, mesh, fsdp))


def global_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """A global batch (numpy, the same in every process) as global arrays sharded along ``"data"``.

    Each process places only its own rows (:func:`~distilbert.common.finetune.shard` of its process
    index); the leading axis must be divisible by the mesh's size.
    """
    sharding = NamedSharding(mesh, P("data"))
    local = shard(batch, jax.process_index(), jax.process_count())
    return {k: jax.make_array_from_process_local_data(sharding, local[k], np.shape(batch[k])) for k in batch}


def _to_host(tree):
    """``tree`` as numpy arrays (typed keys as raw data); sharded and multi-process arrays gathered first.

    With several processes this is a collective: every process must call it.
    """
    tree = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)
    if any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in jax.tree.leaves(tree)):
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)


def _broadcast(tree):
    """Process 0's values of ``tree`` in every process (models built alike could still differ: a new head)."""
    from jax.experimental import multihost_utils

    raw = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else np.asarray(x), tree)
    return _decode(multihost_utils.broadcast_one_to_all(raw), tree)


# ------------------------------------------------------------------------------- resumable state
def _rng_and_rest(rest: nnx.State) -> tuple[nnx.State, nnx.State]:
    """The dropout RNG state (saved for resuming) and the rest (the frozen tables, saved with the weights)."""
    return nnx.split_state(rest, nnx.RngState, ...)


def _named_leaves(tree) -> list[tuple[str, Any]]:
    """``tree``'s leaves keyed by their '/'-joined paths (``1/0/mu/classifier/bias``: the optax chain's
    positions, then the NNX path of the parameter)."""
    named = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        named.append((name.removesuffix("/value"), leaf))
    return named


def training_state(state: TrainState) -> dict[str, np.ndarray]:
    """What :func:`finetune` needs to resume exactly, as numpy arrays: ``"step"`` (updates made), the
    optax state's leaves as ``"optimizer/<path>"`` (Adam's moments ``.../mu/<parameter path>`` and
    ``.../nu/<parameter path>``, and counts) and the dropout RNG state as ``"rng/<path>"`` (keys as
    raw data, and counters). The weights are not in it (the model's ``save_pretrained`` holds them).

    A sharded or multi-process state is gathered first: with several processes call it in every one.
    """
    host = _to_host(state)
    rngs, _ = _rng_and_rest(host.rest)
    out = {"step": np.asarray(host.step, np.int64)}
    out.update({f"optimizer/{name}": x for name, x in _named_leaves(host.opt_state)})
    out.update({f"rng/{name}": x for name, x in _named_leaves(rngs)})
    return out


def load_training_state(saved: Mapping[str, np.ndarray], like: TrainState) -> TrainState:
    """``like`` (a :func:`functional_state` of the model and optimiser) with :func:`training_state`'s
    optimiser state, RNG state and step.

    Raises:
        ValueError: The saved state does not fit: another model, head or optimiser setting
            (``max_grad_norm`` on or off), or a file that is not a training state.
    """
    if "step" not in saved:
        raise ValueError("the training state has no 'step': it is not a distilbert.flax training_state()")
    rngs, others = _rng_and_rest(like.rest)
    parts = {}
    for prefix, tree in (("optimizer", like.opt_state), ("rng", rngs)):
        named = _named_leaves(tree)
        expected = {f"{prefix}/{name}" for name, _ in named}
        present = {k for k in saved if k.startswith(prefix + "/")}
        if present != expected:
            odd = sorted(present - expected)[:3] or sorted(expected - present)[:3]
            raise ValueError(
                f"the training state holds {len(present)} {prefix} arrays, this model's training {len(expected)} "
                f"(first differences: {odd}): was it saved for another model, head or optimiser setting "
                "(max_grad_norm on or off)?"
            )
        new = []
        for name, old in named:
            value, key = np.asarray(saved[f"{prefix}/{name}"]), f"{prefix}/{name}"
            shape = tuple(jax.random.key_data(old).shape if _is_key(old) else old.shape)
            if value.shape != shape:
                raise ValueError(f"{key} has shape {value.shape}, this model's {shape}")
            if _is_key(old):
                new.append(jax.random.wrap_key_data(jnp.asarray(value), impl=jax.random.key_impl(old)))
            else:
                new.append(jnp.asarray(value, old.dtype))
        parts[prefix] = jax.tree.unflatten(jax.tree.structure(tree), new)
    rest = nnx.merge_state(parts["rng"], others)
    return TrainState(like.params, rest, parts["optimizer"], jnp.asarray(int(saved["step"]), jnp.int32))


# ------------------------------------------------------------------------------- finetune
def _label_keys(task: str) -> tuple[str, ...]:
    return ("start_positions", "end_positions") if task == "question_answering" else ("labels",)


def _host_batch(model: nnx.Module, batch, k: int, world: int) -> tuple[dict[str, np.ndarray], str | None]:
    """Step ``k``'s batch checked on the host as the model checks concrete inputs (under ``jit`` values
    cannot be read, and JAX would clamp a bad id), in the dtypes JAX uses; and the loss's ``problem_type``."""
    if not isinstance(batch, Mapping):
        raise TypeError(f"batch {k} is a {type(batch).__name__}, not a dict of arrays")
    labels = _label_keys(model.task)
    allowed = ("input_ids", "attention_mask", "token_type_ids", *labels)
    unknown = sorted(set(batch) - set(allowed))
    if unknown:
        raise ValueError(f"batch {k} has unknown key(s) {unknown}: a {model.task} batch holds {list(allowed)}")
    missing = [key for key in ("input_ids", *labels) if batch.get(key) is None]
    if missing:
        raise ValueError(f"batch {k} has no {missing}: a {model.task} batch needs input_ids and {list(labels)}")
    arrays = {key: np.asarray(value) for key, value in batch.items() if value is not None}
    rows = {key: (a.shape[0] if a.ndim else None) for key, a in arrays.items()}
    if len(set(rows.values())) != 1 or None in rows.values():
        raise ValueError(f"batch {k}: the arrays' first axes (the examples) disagree: {rows}")
    n = rows["input_ids"]
    if n % world:
        raise ValueError(
            f"batch {k} has {n} examples, which {world} devices cannot share evenly: use a global batch size "
            f"that is a multiple of {world}"
        )
    try:
        shape = inputs_lib.prepare(
            model.config,
            model.rank,
            arrays["input_ids"],
            None,
            arrays.get("attention_mask"),
            None,
            arrays.get("token_type_ids"),
            None,
        )[-1]
        problem_type = inputs_lib.check_labels(
            model.config,
            model.task,
            shape,
            arrays.get("labels"),
            arrays.get("start_positions"),
            arrays.get("end_positions"),
        )
    except (TypeError, ValueError) as e:
        raise type(e)(f"batch {k}: {e}") from e
    info = np.iinfo(np.int32)
    host = {
        key: np.clip(a, info.min, info.max).astype(np.int32) if a.dtype.kind in "iub" else a.astype(np.float32)
        for key, a in arrays.items()
    }
    return host, problem_type


def _update_model(model: nnx.Module, host: TrainState, like_rest: nnx.State) -> None:
    """Puts a host state's weights and RNG state into ``model`` (ordinary arrays on the default device)."""
    nnx.update(model, jax.tree.map(jnp.asarray, host.params), _decode(jax.tree.map(jnp.asarray, host.rest), like_rest))


def finetune(
    model: nnx.Module,
    batches: Sequence[Mapping[str, np.ndarray]],
    *,
    learning_rate: float = 5e-5,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
    start_step: int = 0,
    state: Mapping[str, np.ndarray] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    save_every: int = 0,
    on_save: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    devices: int | None = None,
    fsdp: bool = False,
) -> nnx.Module:
    """Fine-tunes a Flax DistilBERT head on global batches, on one device or sharded over many.

    One ``jax.jit`` step per batch (:func:`make_train_step`): the model's loss with dropout as
    configured, AdamW (betas 0.9/0.999, eps 1e-8, decoupled weight decay on rank >= 2 parameters only)
    on the linear warm-up and decay of ``distilbert.common.distillation.learning_rate_at`` after
    clipping the global gradient's norm (:func:`adamw_with_warmup`). The same arguments as
    ``distilbert.pt.training.finetune`` and ``distilbert.tf.training.finetune``.

    Args:
        model: A ``FlaxDistilBertFor...`` head; it is updated in place and returned.
        batches: Global batches, ``len(batches)`` = total steps: dicts of numpy arrays (``input_ids``,
            ``attention_mask``, and ``labels``, or ``start_positions``/``end_positions`` for QA), the
            same in every process.
        learning_rate, weight_decay, warmup_steps, max_grad_norm: The optimiser (None or 0: no clipping).
        start_step: Steps already made (resuming): ``batches[start_step:]`` remain; needs ``state``.
        state: The :func:`training_state` saved at ``start_step``.
        on_step: Called after each step, on process 0 only, with the 1-based step and
            ``{"loss": the global batch's loss, "examples": its rows}``.
        save_every: Every that many steps, the model gets the step's weights and ``on_save`` (process 0
            only) gets ``(step, training_state)``. Must be the same in every process (a collective).
        devices: Local devices per process in the mesh (default 1); the mesh spans every process.
        fsdp: Shard parameters and optimiser state along the mesh too (else replicated).

    Returns:
        ``model``, holding the trained weights as ordinary single-device arrays, in eval mode.

    Raises:
        TypeError / ValueError: A model without a head, bad arguments or a bad batch (named by its step).

    Example:
        >>> import numpy as np
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.flax import FlaxDistilBertForSequenceClassification
        >>> model = FlaxDistilBertForSequenceClassification(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37))
        >>> batch = {"input_ids": np.ones((4, 8), np.int64), "labels": np.array([0, 1, 0, 1])}
        >>> model = finetune(model, [batch, batch], learning_rate=1e-3)
    """
    if not isinstance(model, nnx.Module) or getattr(model, "task", None) not in _HEADS:
        raise TypeError(
            f"finetune trains a Flax DistilBERT head (FlaxDistilBertFor...), not {type(model).__name__}: "
            "a bare encoder has no loss"
        )
    if not isinstance(batches, Sequence):
        raise TypeError(f"batches must be a sequence of global batches (len = total steps), got {type(batches)}")
    total = len(batches)
    start_step = _positive_int("start_step", start_step, minimum=0)
    warmup_steps = _positive_int("warmup_steps", warmup_steps, minimum=0)
    save_every = _positive_int("save_every", save_every, minimum=0)
    if start_step > total:
        raise ValueError(f"start_step={start_step} is past the {total} steps of the batches")
    if start_step and state is None:
        raise ValueError(f"start_step={start_step} needs the training state saved at that step (state=...)")
    for name, value in (("learning_rate", learning_rate), ("weight_decay", weight_decay)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if max_grad_norm is not None and (not np.isfinite(max_grad_norm) or max_grad_norm < 0):
        raise ValueError(f"max_grad_norm must be None or a finite number >= 0, got {max_grad_norm!r}")
    mesh = data_mesh(devices)
    tx = adamw_with_warmup(learning_rate, total, warmup_steps, weight_decay, max_grad_norm or None)
    if start_step < total:  # the first batch fixes the loss's problem_type, as the model's first call does
        first, problem_type = _host_batch(model, batches[start_step], start_step, mesh.size)
        if problem_type is not None and model.config.problem_type is None:
            model.config = model.distilbert.config = model.config.replace(problem_type=problem_type)

    graphdef, host = functional_state(model, tx)
    host = host._replace(step=jnp.asarray(start_step, jnp.int32))
    like_rest = host.rest
    if state is not None:
        host = load_training_state(state, host)
        if int(host.step) != start_step:
            raise ValueError(f"the training state was saved at step {int(host.step)}, not at start_step={start_step}")
    if jax.process_count() > 1:
        host = _broadcast(host)
    train_state = place_state(host, mesh, fsdp)
    del host
    step_fn = make_train_step(graphdef, tx, mesh=mesh, fsdp=bool(fsdp))
    main = is_main_process()
    for k in range(start_step, total):
        arrays = first if k == start_step else _host_batch(model, batches[k], k, mesh.size)[0]
        train_state, loss = step_fn(train_state, global_batch(arrays, mesh))
        if on_step is not None and main:
            n = int(arrays["input_ids"].shape[0])
            on_step(k + 1, {"loss": float(np.asarray(loss.addressable_data(0))), "examples": n})
        if save_every and (k + 1) % save_every == 0:
            saved = _to_host(train_state)
            _update_model(model, saved, like_rest)
            if on_save is not None and main:
                on_save(k + 1, training_state(saved))
    _update_model(model, _to_host(train_state), like_rest)
    model.eval()
    return model


# ------------------------------------------------------------------------------- memory
def _abstract_batch(task: str, batch_size: int, seq_len: int, mesh: Mesh) -> dict[str, jax.ShapeDtypeStruct]:
    sharded = NamedSharding(mesh, P("data"))
    tokens = (batch_size, 4, seq_len) if task == "multiple_choice" else (batch_size, seq_len)
    per_token = task in ("token_classification", "masked_lm")
    shapes = {"input_ids": tokens, "attention_mask": tokens}
    shapes.update({key: tokens[:2] if per_token else (batch_size,) for key in _label_keys(task)})
    return {k: jax.ShapeDtypeStruct(s, jnp.int32, sharding=sharded) for k, s in shapes.items()}


def _bytes_per_device(tree, shardings) -> int:
    def size(x, sharding):
        return int(np.prod(sharding.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize

    return sum(jax.tree.leaves(jax.tree.map(size, tree, shardings)))


def memory_per_device(
    config=None,
    *,
    task: str = "sequence_classification",
    devices: int = 2,
    fsdp: bool = False,
    batch_size: int = 32,
    seq_len: int = 128,
    compile: bool = True,
) -> dict[str, int]:
    """Bytes per device of :func:`finetune`'s step on a mesh of ``devices`` devices (nothing is allocated).

    Args:
        config: A :class:`~distilbert.DistilBertConfig` (default: distilbert-base size).
        task: The head.
        devices: Devices in the mesh (on a CPU, :func:`configure_devices` first).
        fsdp: Shard parameters and optimiser state (else replicated).
        batch_size, seq_len: The global batch's shape (``compile`` only).
        compile: Also compile the step (abstractly) and report XLA's own per-device accounting.

    Returns:
        ``{"parameters", "optimizer"}``: bytes each device holds between steps; with ``compile``
        also ``"arguments"``, ``"temporaries"`` (activations, gradients, gathered FSDP weights) and
        ``"peak"`` (arguments + temporaries + outputs not aliased to donated arguments).
    """
    from distilbert.common.config import DistilBertConfig
    from distilbert.flax import modeling

    heads = {
        cls.task: cls
        for cls in (
            modeling.FlaxDistilBertForSequenceClassification,
            modeling.FlaxDistilBertForTokenClassification,
            modeling.FlaxDistilBertForQuestionAnswering,
            modeling.FlaxDistilBertForMultipleChoice,
            modeling.FlaxDistilBertForMaskedLM,
        )
    }
    if task not in _HEADS:
        raise ValueError(f"unknown task {task!r}: one of {list(_HEADS)}")
    config = DistilBertConfig() if config is None else config
    abstract = nnx.eval_shape(lambda: heads[task](config, rngs=nnx.Rngs(0)))
    tx = adamw_with_warmup(5e-5, 1000, 100, 0.01, 1.0)
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    opt_state = jax.eval_shape(tx.init, params)
    mesh = data_mesh(devices)
    state = TrainState(params, rest, opt_state, jax.ShapeDtypeStruct((), jnp.int32))
    shardings = state_shardings(state, mesh, fsdp)
    out = {
        "parameters": _bytes_per_device(params, shardings.params),
        "optimizer": _bytes_per_device(opt_state, shardings.opt_state),
    }
    if compile:
        args = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
        step = make_train_step(graphdef, tx, mesh=mesh, fsdp=fsdp)
        stats = step.lower(args, _abstract_batch(task, batch_size, seq_len, mesh)).compile().memory_analysis()
        out["arguments"] = int(stats.argument_size_in_bytes)
        out["temporaries"] = int(stats.temp_size_in_bytes)
        unaliased = int(stats.output_size_in_bytes) - int(stats.alias_size_in_bytes)
        out["peak"] = out["arguments"] + out["temporaries"] + max(unaliased, 0)
    return out


def memory_report(config=None, *, devices: int = 2, batch_size: int = 32, seq_len: int = 128, compile: bool = True):
    """Prints :func:`memory_per_device` replicated vs FSDP (MiB per device), and returns both.

    Example (a CPU with 2 host devices):
        >>> from distilbert.flax import training  # doctest: +SKIP
        >>> training.configure_devices(2); training.memory_report()  # doctest: +SKIP
    """
    rows = {
        mode: memory_per_device(
            config, devices=devices, fsdp=mode == "fsdp", batch_size=batch_size, seq_len=seq_len, compile=compile
        )
        for mode in ("replicated", "fsdp")
    }
    keys = list(rows["replicated"])
    mib = 2.0**20
    print(f"per-device MiB, {devices} devices, global batch {batch_size} x {seq_len}, {jax.default_backend()}")
    print(f"{'':<11}" + "".join(f"{k:>13}" for k in keys))
    for mode, row in rows.items():
        print(f"{mode:<11}" + "".join(f"{row[k] / mib:>13.1f}" for k in keys))
    return rows
