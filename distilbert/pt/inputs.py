"""What the PyTorch classes hand to :mod:`distilbert.common.validation`: their tensors' shapes, dtypes and values.

Values (ids and positions in range, token types all zero, label ranges) are read only outside
``torch.compile``, where reading them would break the graph; shapes and dtypes are checked always.
"""

from __future__ import annotations

import torch

from distilbert.common import validation
from distilbert.common.validation import ArrayInfo


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "b"
    if dtype.is_complex:
        return "c"
    if dtype.is_floating_point:
        return "f"
    return "u" if dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64) else "i"


def describe(name: str, x, values: str | None = None) -> ArrayInfo | None:
    """``x`` as an :class:`ArrayInfo`; ``values`` ``"range"`` or ``"nonzero"`` reads them (outside compilation)."""
    if x is None:
        return None
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    kind, lo, hi, nonzero = _kind(x.dtype), None, None, None
    if values and kind in "iu" and x.numel() and not torch.compiler.is_compiling():
        if values == "range":
            lo, hi = (int(v) for v in torch.aminmax(x))
        else:
            nonzero = bool(x.any())
    return ArrayInfo(tuple(x.shape), kind, str(x.dtype).removeprefix("torch."), lo, hi, nonzero)


def check_inputs(
    config,
    input_ids=None,
    inputs_embeds=None,
    attention_mask=None,
    token_type_ids=None,
    position_ids=None,
    head_mask=None,
    rank=2,
    values=True,
):
    """Validates a call's inputs; returns the input's shape. ``values=False``: shapes and dtypes only."""
    v = values or None
    return validation.check_inputs(
        config,
        input_ids=describe("input_ids", input_ids, v and "range"),
        inputs_embeds=describe("inputs_embeds", inputs_embeds),
        attention_mask=describe("attention_mask", attention_mask),
        position_ids=describe("position_ids", position_ids, v and "range"),
        token_type_ids=describe("token_type_ids", token_type_ids, v and "nonzero"),
        head_mask=describe("head_mask", head_mask),
        rank=rank,
    )


def check_labels(config, task, shape, labels=None, start_positions=None, end_positions=None):
    """Validates a head's labels; returns the sequence-classification ``problem_type`` (else None)."""
    return validation.check_labels(
        config,
        task,
        shape,
        labels=describe("labels", labels, "range"),
        start_positions=describe("start_positions", start_positions),
        end_positions=describe("end_positions", end_positions),
    )
