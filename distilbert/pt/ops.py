"""The PyTorch backend's kernels: the fused ``linear`` layer and the three attention implementations.

``linear``: a Linear layer with its activation or residual add, fused into one kernel where it pays.

In CPU inference (no autograd, eval mode, eager, float32 or bfloat16 without autocast) PyTorch's
oneDNN ``mkldnn::_linear_pointwise`` computes ``act(x @ W.T + b)`` or ``x @ W.T + b + residual`` in
one pass: no separate bias broadcast, activation or add over the output. Measured on an AMX CPU it
makes a bfloat16 DistilBERT layer about 1.5x faster (``benchmarks/bench_pt.py``). Everywhere else
(training, CUDA, ``torch.compile``/``torch.export``, autocast) the plain ops run; both give the
reference's numbers (float32 differences ~1e-6, from oneDNN's accumulation order).

Attention comes in three kernels, ``eager``, ``sdpa`` and ``flash_attention_2``. Each takes queries,
keys and values of shape ``(B, H, T, D)`` and a boolean key mask ``(B, 1, 1, T)`` (True = attend,
None = attend everywhere) and returns the context ``(B, H, T, D)``; ``eager`` also returns the
attention probabilities. All three give the same numbers: a fully masked row attends
uniformly to every key in ``eager`` (every score is ``finfo.min``) and in ``sdpa`` (an additive
``finfo.min`` bias flattens the row the same way), never NaN.
"""

from __future__ import annotations

import importlib.util
import math

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


def linear(
    x: torch.Tensor, layer: nn.Linear, activation: str | None = None, residual: torch.Tensor | None = None
) -> torch.Tensor:
    """``activation(layer(x))`` or ``layer(x) + residual`` (not both), fused when :func:`fusable`."""
    if getattr(layer, "fuses_epilogue", False):  # distilbert.pt.quantize.Int8Linear: its own fused kernel
        return layer(x, activation=activation, residual=residual)
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


# ---------------------------------------------------------------------------------- attention
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
DEFAULT_ATTN = "sdpa"


def check_implementation(name: str | None) -> str:
    """Returns the implementation to use for ``name`` (None: the default), or raises a clear error."""
    name = DEFAULT_ATTN if name is None else name
    if name not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {name!r}")
    if name == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise ImportError(
                "attn_implementation='flash_attention_2' needs the flash_attn package "
                "(pip install flash-attn) and a CUDA GPU; use 'sdpa' (the default) otherwise"
            )
        if not torch.cuda.is_available():
            raise ValueError(
                "attn_implementation='flash_attention_2' needs a CUDA GPU and none is available; "
                "use 'sdpa' (the default) or 'eager'"
            )
    return name


def eager_attention(q, k, v, mask, dropout_p: float, head_mask=None):
    """Explicit softmax attention; returns ``(context, probabilities)``."""
    scores = (q / math.sqrt(q.size(-1))) @ k.transpose(-1, -2)  # (B, H, T, T)
    if mask is not None:
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)  # (B, H, T, T)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)  # (B, H, T, T)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    if head_mask is not None:
        weights = weights * head_mask  # (B, H, T, T)
    return weights @ v, weights  # (B, H, T, D), (B, H, T, T)


def sdpa_attention(q, k, v, mask, dropout_p: float):
    """PyTorch's fused ``scaled_dot_product_attention`` with an additive ``finfo.min`` key bias."""
    bias = None
    if mask is not None:
        # Additive rather than boolean: a fully masked row then averages every value, as eager does
        # (a boolean mask gives zeros there). Measured as fast as the boolean mask on CPU.
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(
            ~mask, torch.finfo(q.dtype).min
        )  # (B, 1, 1, T)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)  # (B, H, T, D)


def flash_attention(q, k, v, mask, dropout_p: float):
    """FlashAttention-2 (``flash_attn`` package; CUDA, float16/bfloat16), unpadding masked tokens."""
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    if q.device.type != "cuda" or q.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"flash_attention_2 runs on CUDA in float16 or bfloat16; got {q.dtype} on {q.device.type} "
            "(load with dtype=torch.bfloat16 and move the model to the GPU, or use attn_implementation='sdpa')"
        )
    B, H, T, D = q.shape
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # (B, T, H, D)
    if mask is None:
        return flash_attn_func(q, k, v, dropout_p=dropout_p).transpose(1, 2)  # (B, H, T, D)
    keep = mask.reshape(B * T)  # (B*T,)
    index = keep.nonzero().squeeze(1)  # (N,)
    lengths = mask.reshape(B, T).sum(-1, dtype=torch.int32)  # (B,)
    cu = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))  # (B+1,)
    longest = int(lengths.max())
    q, k, v = (x.reshape(B * T, H, D)[index] for x in (q, k, v))  # (N, H, D)
    out = flash_attn_varlen_func(q, k, v, cu, cu, longest, longest, dropout_p=dropout_p)  # (N, H, D)
    full = out.new_zeros(B * T, H, D).index_copy_(0, index, out)  # (B*T, H, D)
    return full.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
