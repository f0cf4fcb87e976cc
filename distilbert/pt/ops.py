"""``linear``: a Linear layer with its activation or residual add, fused into one kernel where it pays.

In CPU inference (no autograd, eval mode, eager, float32 or bfloat16 without autocast) PyTorch's
oneDNN ``mkldnn::_linear_pointwise`` computes ``act(x @ W.T + b)`` or ``x @ W.T + b + residual`` in
one pass: no separate bias broadcast, activation or add over the output. Measured on an AMX CPU it
makes a bfloat16 DistilBERT layer about 1.5x faster (``benchmarks/bench_pt.py``). Everywhere else
(training, CUDA, ``torch.compile``/``torch.export``, autocast) the plain ops run; both give the
reference's numbers (float32 differences ~1e-6, from oneDNN's accumulation order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}  # F.gelu is the exact erf form


def _has_fused_kernel() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


FUSED = _has_fused_kernel()
_BF16 = FUSED and bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())


def fusable(x: torch.Tensor, layer: nn.Linear) -> bool:
    """Whether ``x`` through ``layer`` may take the fused oneDNN kernel (see the module docstring)."""
    if not FUSED or layer.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    if x.device.type != "cpu" or x.dtype != layer.weight.dtype or layer.bias is None:
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    return x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _BF16)


def linear(x: torch.Tensor, layer: nn.Linear, activation: str | None = None,
           residual: torch.Tensor | None = None) -> torch.Tensor:
    """``activation(layer(x))`` or ``layer(x) + residual`` (not both), fused when :func:`fusable`."""
    if fusable(x, layer):
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, layer.weight, layer.bias, "add")
        attr = activation or "none"
        algorithm = "none" if attr == "gelu" else ""  # "none": the exact erf GELU
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, attr, [], algorithm)
    y = layer(x)
    if activation is not None:
        y = ACTIVATIONS[activation](y)
    return y if residual is None else y + residual
