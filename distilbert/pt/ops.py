"""The PyTorch backend's kernels: the fused ``linear`` layer and the three attention implementations.

``linear``: a Linear layer with its activation or residual add, fused into one kernel where it pays.

In CPU inference (no autograd, eval mode, eager, float32 or bfloat16 without autocast) PyTorch's
oneDNN ``mkldnn::_linear_pointwise`` computes ``act(x @ W.T + b)`` or ``x @ W.T + b + residual`` in
one pass: no separate bias broadcast, activation or add over the output. Measured on an AMX CPU it
makes a bfloat16 DistilBERT layer about 1.5x faster (``benchmarks/bench_pt.py``). Everywhere else
(training, CUDA, ``torch.compile``/``torch.export``/ONNX export, autocast) the plain ops run; both
give the reference's numbers (float32 differences ~1e-6, from oneDNN's accumulation order).

The fused kernel reads its weight in oneDNN's blocked layout. Given a plain ``[out, in]`` weight it
reorders it on every call, which at a few tokens (1 x 16) costs as much as the product itself. With
``PACK_WEIGHTS = True`` (opt-in, for inference-only processes) the first inference call packs each
weight once (:func:`packed`) and later calls reuse it, until the weight changes (an optimizer step,
``load_state_dict``, ``.to(dtype)``: the pack is keyed by the weight's storage and version counter),
and the query, key and value weights are packed as one ``[3 * dim, dim]`` matrix, so the three
projections are one product (:func:`project_qkv`). The packs live outside the modules (``state_dict``
and the parameters are unchanged) and cost one more copy of the Linear weights in memory. It is off
by default because an in-place edit through ``param.data`` (``p.data.copy_(...)``, common in user
code) does not advance the version counter, so a pack would silently keep the old weights. Weights made
under ``torch.inference_mode`` have no version counter and are never packed.

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
import weakref

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


PACK_WEIGHTS = False  # opt-in: pack the fused kernel's weights once per weight version (module docstring)
_PACKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # owner module -> (key, sources, weight, bias)


def in_graph() -> bool:
    """Whether this call is being recorded as a graph (tracing, ``torch.onnx`` export, ``torch.compile``,
    ``torch.export``): a graph must not depend on its example's values, and runs only standard ops."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def fusable(x: torch.Tensor, layer: nn.Linear) -> bool:
    """Whether ``x`` through ``layer`` may take the fused oneDNN kernel (see the module docstring)."""
    if not FUSED or layer.training or torch.is_grad_enabled() or in_graph():
        return False
    if x.device.type != "cpu" or x.dtype != layer.weight.dtype or layer.bias is None:
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    return x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _BF16)


def linear(
    x: torch.Tensor,
    layer: nn.Linear,
    activation: str | None = None,
    residual: torch.Tensor | None = None,
    consume: bool = False,
) -> torch.Tensor:
    """``activation(layer(x))`` or ``layer(x) + residual`` (not both), fused when :func:`fusable`.

    ``consume=True``: nothing reads ``x`` after this call, so the layer may overwrite it (the int8 layer
    quantises it in place rather than into a new buffer).
    """
    if getattr(layer, "fuses_epilogue", False):  # distilbert.pt.quantize.Int8Linear: its own fused kernel
        return layer(x, activation=activation, residual=residual, consume=consume)
    if fusable(x, layer):
        weight, bias = packed(layer, (layer,))
        return _fused(x, weight, bias, activation, residual)
    y = layer(x)
    if activation is not None:
        y = ACTIVATIONS[activation](y)
    return y if residual is None else y + residual


def _fused(x, weight, bias, activation=None, residual=None):
    if residual is not None:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
    attr = activation or "none"
    algorithm = "none" if attr == "gelu" else ""  # "none": the exact erf GELU
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], algorithm)


def packable(layers: tuple[nn.Linear, ...]) -> bool:
    """Whether ``layers`` get packed weights: ``PACK_WEIGHTS`` is on and no weight or bias is an
    inference tensor (made under ``torch.inference_mode``: no version counter to key a pack on, so an
    in-place load under inference mode would go unseen)."""
    return PACK_WEIGHTS and not any(t.is_inference() for lin in layers for t in (lin.weight, lin.bias))


def packed(owner: nn.Module, layers: tuple[nn.Linear, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight of ``layers`` (concatenated along the outputs) in oneDNN's layout, and their bias.

    Packed on first use and again whenever any weight or bias changes; where not :func:`packable`, the
    plain (concatenated) tensors.
    """
    tensors = [t for lin in layers for t in (lin.weight, lin.bias)]
    pack = packable(layers)
    if pack:
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
        entry = _PACKS.get(owner)
        if entry is not None and entry[0] == key:
            return entry[2], entry[3]
    weight = torch.cat(tensors[0::2]) if len(layers) > 1 else tensors[0]  # (out, in)
    bias = torch.cat(tensors[1::2]) if len(layers) > 1 else tensors[1]  # (out,)
    if not pack:
        return weight, bias
    weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)  # opaque, (out, in) blocked
    # Keeping the source tensors alive keeps their storage from being reused by another tensor,
    # which could otherwise come back with the same address and version and pass for this one.
    _PACKS[owner] = (key, [t.detach() for t in tensors], weight, bias)
    return weight, bias


def project_qkv(owner: nn.Module, x: torch.Tensor, layers: tuple[nn.Linear, nn.Linear, nn.Linear]):
    """``q_lin(x)``, ``k_lin(x)``, ``v_lin(x)`` (``(B, T, dim)`` each); one packed product where the
    three are :func:`fusable` and :func:`packable`, else three products (no concatenation every call)."""
    if all(fusable(x, lin) for lin in layers) and packable(layers):
        weight, bias = packed(owner, layers)
        return _fused(x, weight, bias).split(layers[0].out_features, dim=-1)  # views of (B, T, 3 * dim)
    return tuple(linear(x, lin) for lin in layers)


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
