"""Canonical numpy state <-> PyTorch module: the one pair of functions every load, save and convert uses.

PyTorch's state-dict keys and layouts *are* the canonical ones (the ``pt`` column of the weight
table), so the mapping is a strict copy. bfloat16 travels through numpy as ``ml_dtypes.bfloat16``.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import ml_dtypes
import numpy as np
import torch

from distilbert.common.names import TIED, check_state, weight_table

DTYPES = {
    "float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "half": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def resolve_dtype(dtype, config=None) -> torch.dtype | None:
    """A ``torch.dtype`` from a dtype, its name, or ``"auto"`` (the config's ``torch_dtype``/``dtype``)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        return dtype
    if dtype == "auto":
        extra = config.extra if config is not None else {}
        name = extra.get("dtype") or extra.get("torch_dtype")
        return resolve_dtype(name) if name else None
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use torch.float32, torch.float16, torch.bfloat16 or 'auto'")
    return DTYPES[name]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A CPU numpy copy of ``tensor``; bfloat16 becomes ``ml_dtypes.bfloat16``."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.uint16).numpy().view(ml_dtypes.bfloat16).copy()
    return tensor.numpy().copy()


def to_torch(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s data where it can; ``ml_dtypes.bfloat16`` becomes ``torch.bfloat16``."""
    array = np.ascontiguousarray(array)
    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(array.view(np.uint16)).view(torch.bfloat16)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def canonical_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Every tensor of the weight table, canonical names, as numpy arrays (tied rows share one array)."""
    table = weight_table(model.config, model.task)
    params = model.state_dict(keep_vars=True)
    extra = sorted(set(params) - {spec.names["pt"] for spec in table})
    if extra:
        raise RuntimeError(f"model holds tensors the weight table does not list: {extra}")
    out: dict[str, np.ndarray] = {}
    for spec in table:
        if spec.kind == TIED and spec.tied_to in out:
            out[spec.name] = out[spec.tied_to]
        else:
            out[spec.name] = to_numpy(params[spec.names["pt"]])
    return out


def load_canonical_state(model: torch.nn.Module, state: Mapping[str, np.ndarray],
                         skip: Iterable[str] = ()) -> None:
    """Copies a canonical state into ``model``'s tensors (cast to their dtype), strictly.

    Args:
        model: A ``DistilBertPreTrainedModel``.
        state: Canonical name -> array, as :func:`distilbert.common.checkpoint.load_state` returns.
        skip: Names left as they are (a new head): absent from ``state``, they keep their current values.

    Raises:
        WeightMismatchError: naming every missing, unexpected and mis-shaped tensor; nothing is copied.
    """
    table = weight_table(model.config, model.task)
    params = model.state_dict(keep_vars=True)
    check_state({name: np.shape(array) for name, array in state.items()}, table, skip)
    with torch.no_grad():
        for spec in table:
            if spec.name not in state or spec.kind == TIED:  # a tied row shares its target's storage
                continue
            params[spec.names["pt"]].copy_(to_torch(state[spec.name]))
