"""Weights in and out of the Flax NNX models, through the canonical state of :mod:`distilbert.common`.

:func:`canonical_state` and :func:`load_canonical_state` are the one pair that every path uses:
``from_pretrained``, ``save_pretrained``, conversions and tests. The NNX variable paths are the
weight table's ``"nnx"`` column (``distilbert/transformer/layer/0/attention/q_lin/kernel``).
The output dataclasses are registered here as pytrees, so that jitted functions can return them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from distilbert.common import outputs
from distilbert.common.checkpoint import load_state, save_state, source_framework
from distilbert.common.config import DistilBertConfig
from distilbert.common.names import WeightMismatchError, check_state, from_native, to_native, weight_table
from distilbert.common.validation import as_config

__all__ = ["Frozen", "canonical_state", "from_pretrained", "load_canonical_state", "native_params", "save_pretrained"]


class Frozen(nnx.Variable):
    """A stored weight that training leaves alone (the sinusoidal position table).

    It is loaded and saved like an ``nnx.Param`` but is not one, so ``nnx.grad`` and
    ``nnx.Optimizer(..., wrt=nnx.Param)`` pass it by, as PyTorch's ``requires_grad=False``.
    """


WEIGHTS = (nnx.Param, Frozen)  # the NNX filter of what a checkpoint holds

for _cls in outputs.OUTPUT_CLASSES:  # pytrees, so that jitted functions can return them
    with contextlib.suppress(ValueError):  # already registered
        jax.tree_util.register_dataclass(_cls, [f.name for f in dataclasses.fields(_cls)], [])


def native_params(model: nnx.Module) -> dict[str, Any]:
    """The model's weights (parameters and frozen tables) keyed by '/'-joined NNX paths (arrays, not copies)."""
    flat = nnx.to_flat_state(nnx.state(model, WEIGHTS))
    return {"/".join(str(p) for p in path): var[...] for path, var in flat}


def canonical_state(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's weights as a canonical numpy state (HF PyTorch names and layout).

    Tied rows share the word-embedding array, so the state holds every row of
    ``weight_table(model.config, model.task)``.
    """
    native = {k: np.asarray(v) for k, v in native_params(model).items()}
    return from_native(native, "nnx", weight_table(model.config, model.task), where="model")


def load_canonical_state(model: nnx.Module, state: Mapping[str, np.ndarray], skip: Iterable[str] = ()) -> None:
    """Copies a canonical state into the model's parameters, in place, strictly.

    Args:
        model: One of the six ``FlaxDistilBert...`` models.
        state: Canonical numpy arrays (every row of the model's table but ``skip``).
        skip: Canonical names left as initialised (a new head).

    Raises:
        WeightMismatchError: a tensor is missing, unexpected or has the wrong shape.
    """
    skip = set(skip)
    full = weight_table(model.config, model.task)
    check_state({name: np.shape(array) for name, array in state.items()}, full, skip)
    table = [spec for spec in full if spec.name not in skip]
    native = to_native(state, "nnx", table)
    params = nnx.state(model, WEIGHTS)
    flat = dict(nnx.to_flat_state(params))
    by_name = {"/".join(str(p) for p in path): path for path in flat}
    mismatched = []
    for name, array in native.items():
        var = flat[by_name[name]]
        if tuple(array.shape) != tuple(var.shape):
            mismatched.append((name, array.shape, var.shape))
    if mismatched:
        raise WeightMismatchError(mismatched=mismatched, where="state")
    for name, array in native.items():
        var = flat[by_name[name]]
        var[...] = jnp.asarray(array, dtype=var.dtype)
    nnx.update(model, params)


def from_pretrained(
    cls,
    pretrained_model_name_or_path: str | os.PathLike,
    *,
    config: DistilBertConfig | None = None,
    weight_format: str | None = None,
    ignore_mismatched_sizes: bool = False,
    from_pt: bool = False,
    from_tf: bool = False,
    from_flax: bool = False,
    output_loading_info: bool = False,
    **kwargs,
):
    """Builds ``cls`` and loads a checkpoint of any Hugging Face format into it.

    ``kwargs`` are split between the model's constructor (``dtype``, ``param_dtype``, ``remat``,
    ``seed``, ``rngs``) and config overrides (``num_labels``, ``id2label``, ...). With
    ``output_loading_info`` the :class:`~distilbert.common.checkpoint.LoadReport` comes back too (as in the
    PyTorch and TensorFlow classes; it also reads as the reference's loading-info dict). ``from_pt`` /
    ``from_tf`` / ``from_flax`` read that framework's weight file first when the directory has several
    (every format loads without them; none reaches ``config.json``).
    """
    model_kw = {k: kwargs.pop(k) for k in ("dtype", "param_dtype", "remat", "seed", "rngs") if k in kwargs}
    if "torch_dtype" in kwargs:  # accepted for symmetry with the PyTorch classes: the compute dtype
        model_kw.setdefault("dtype", kwargs.pop("torch_dtype"))
    for k in ("dtype", "param_dtype"):
        if isinstance(model_kw.get(k), str):
            model_kw[k] = jnp.dtype(model_kw[k])
    if config is None:
        config = DistilBertConfig.from_pretrained(pretrained_model_name_or_path, **kwargs)
    else:
        config = as_config(config)
        config = config.replace(**kwargs) if kwargs else config
    model = cls(config, **model_kw)
    state, report = load_state(
        pretrained_model_name_or_path,
        config,
        cls.task,
        framework="flax",
        weight_format=weight_format,
        ignore_mismatched_sizes=ignore_mismatched_sizes,
        source=source_framework(from_pt, from_tf, from_flax),
    )
    load_canonical_state(model, state, skip=report.new)
    return (model, report) if output_loading_info else model


def save_pretrained(
    model: nnx.Module,
    save_directory: str | os.PathLike,
    weight_format: str | None = None,
    safe_serialization: bool | None = None,
    max_shard_size: int | str | None = None,
) -> str:
    """Writes ``config.json`` and the weights (``flax_model.msgpack`` by default); returns the file.

    ``safe_serialization=True`` (the reference's way of asking) writes ``model.safetensors`` when no
    ``weight_format`` is given. ``max_shard_size`` (bytes or ``"200MB"``) splits the weights into shards
    with an index, as the reference does."""
    if weight_format is None:
        weight_format = "safetensors" if safe_serialization else "flax"
    return save_state(
        save_directory,
        canonical_state(model),
        model.config,
        model.task,
        framework="flax",
        weight_format=weight_format,
        max_shard_size=max_shard_size,
    )
