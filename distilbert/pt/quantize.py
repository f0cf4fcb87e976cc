"""Dynamic int8 quantisation of the PyTorch backend, for inference on the CPU.

``quantize(model, "int8")`` returns a copy of ``model`` whose matrix products run in int8: each
Linear layer of the encoder (and of the masked-LM head) keeps its weight as int8, one symmetric
scale per output channel, and at every call the layer's input is quantised to uint8 with one scale
and zero point measured on that input (dynamic quantisation, as onnxruntime's ``quantize_dynamic``
does). The product accumulates in int32 and comes back to float32 with the bias, and with the GELU
or the residual add that follows it, in one oneDNN kernel (``onednn::qlinear_pointwise``). The
query, key and value projections become one product, so a layer's input is quantised once for the
three. Embeddings, LayerNorms, softmax attention and the small output layers (``pre_classifier``,
``classifier``, ``qa_outputs``) stay float32: they hold little of the work and much of the accuracy.

The copy has the class, call signature and output fields of the original, so pipelines and any code
that calls the model take it as they are; the original is not changed. It is for inference: it has
no gradients, and it cannot be saved as a checkpoint (save the float model instead).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

OPTIONS = ("int8",)
# Layers left in float32: tiny products whose outputs are the logits themselves.
FLOAT_LAYERS = ("pre_classifier", "classifier", "qa_outputs")


def quantize(model: nn.Module, dtype: str = "int8") -> nn.Module:
    """A copy of ``model`` running its matrix products in int8 on the CPU (see the module docstring).

    Args:
        model: A model of ``distilbert.pt`` (the encoder or any head), in any float dtype.
        dtype: ``"int8"``.

    Returns:
        The quantised copy, in eval mode; ``model`` itself is unchanged.

    Raises:
        ValueError: an unknown ``dtype``, or a model not on the CPU.
        TypeError: ``model`` is not a ``distilbert.pt`` model.
        RuntimeError: this PyTorch has no oneDNN int8 kernels (a build without oneDNN).

    Example:
        >>> import torch
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.pt import DistilBertModel, quantize
        >>> model = DistilBertModel(DistilBertConfig(n_layers=2, dim=32, n_heads=4, hidden_dim=64)).eval()
        >>> fast = quantize(model, "int8")
        >>> fast(torch.tensor([[101, 7592, 102]])).last_hidden_state.shape
        torch.Size([1, 3, 32])
    """
    from distilbert.pt.pretrained import DistilBertPreTrainedModel

    if dtype not in OPTIONS:
        raise ValueError(f"unknown quantisation {dtype!r}; the options are {', '.join(map(repr, OPTIONS))}")
    if not isinstance(model, DistilBertPreTrainedModel):
        raise TypeError(f"quantize takes a model of distilbert.pt, got {type(model).__name__}")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("int8 quantisation runs on the CPU; move the model there first (model.to('cpu'))")
    if not available():
        raise RuntimeError(
            "this PyTorch build has no oneDNN int8 kernels (torch.ops.onednn.qlinear_pointwise); "
            "use an x86-64 build of PyTorch with oneDNN (the default Linux and Windows wheels)"
        )
    # The activations are quantised with torch.quantize_per_tensor_dynamic, whose quantised-tensor
    # type PyTorch has deprecated; the warning is about that type, which never leaves this module.
    warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
    q = copy.deepcopy(model).float().eval()
    for p in q.parameters():
        p.requires_grad_(False)
    for module in list(q.modules()):
        if hasattr(module, "q_lin") and isinstance(module.q_lin, nn.Linear):  # MultiHeadSelfAttention
            module.qkv = Int8Linear.concatenated([module.q_lin, module.k_lin, module.v_lin])
            del module.q_lin, module.k_lin, module.v_lin
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and name not in FLOAT_LAYERS:
                setattr(module, name, Int8Linear(child))
    q.quantized = dtype
    return q


def available() -> bool:
    """Whether this PyTorch has the oneDNN int8 matrix product :class:`Int8Linear` runs on."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")
    except (AttributeError, RuntimeError):
        return False


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights (symmetric, per output channel) and dynamic uint8 inputs.

    ``forward(x, activation=None, residual=None)`` computes ``activation(x @ W.T + b)`` or
    ``x @ W.T + b + residual`` in float32 (the epilogue runs inside the int8 kernel); called as
    ``layer(x)`` it is a drop-in for the ``nn.Linear`` it was made from. The buffers
    ``weight_int8``, ``weight_scale`` and ``bias`` are its state; the kernel's packed copy of the
    weight is rebuilt from them after copying or unpickling.
    """

    fuses_epilogue = True  # distilbert.pt.ops.linear hands it the activation and the residual

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()  # (out, in)
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)  # (out,): a zero row keeps a usable scale
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero_point", torch.zeros(self.out_features, dtype=torch.long))
        bias = linear.bias.detach().float() if linear.bias is not None else None
        self.register_buffer("bias", bias)
        self._packed: torch.Tensor | None = None

    @classmethod
    def concatenated(cls, linears: list[nn.Linear]) -> Int8Linear:
        """One layer computing the outputs of ``linears`` (same input size), concatenated in order."""
        first = linears[0]
        joined = nn.Linear(first.in_features, sum(lin.out_features for lin in linears), bias=first.bias is not None)
        with torch.no_grad():
            joined.weight.copy_(torch.cat([lin.weight for lin in linears]))
            if joined.bias is not None:
                joined.bias.copy_(torch.cat([lin.bias for lin in linears]))
        return cls(joined)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel weights"

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_packed"] = None  # an opaque oneDNN tensor: neither copied nor pickled, repacked on use
        return state

    def __deepcopy__(self, memo):
        new = copy.copy(self)
        new.__dict__ = copy.deepcopy(self.__getstate__(), memo)
        return new

    def forward(
        self, x: torch.Tensor, activation: str | None = None, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        if activation not in (None, "gelu", "relu"):
            raise ValueError(f"Int8Linear fuses 'gelu' or 'relu', not {activation!r}")
        if x.device.type != "cpu":
            raise ValueError("an int8-quantised model runs on the CPU; keep it and its inputs there")
        if self._packed is None:
            self._packed = torch.ops.onednn.qlinear_prepack(self.weight_int8, None)  # (in, out), opaque
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).float()  # (N, in)
        if x2.shape[0] == 0:
            return x.new_zeros(*lead, self.out_features, dtype=torch.float32)
        qx, x_scale, x_zero = _quantize_input(x2)  # (N, in) uint8
        args = (qx, x_scale, x_zero, self._packed, self.weight_scale, self.weight_zero_point)
        if residual is not None:
            other = residual.reshape(-1, self.out_features).float()  # (N, out)
            y = torch.ops.onednn.qlinear_pointwise.binary(
                *args, other, self.bias, 1.0, 0, torch.float32, 1.0, 0, "add", 1.0, "none", [], ""
            )  # (N, out)
        else:
            post = activation or "none"
            algorithm = "none" if post == "gelu" else ""  # "none": the exact erf GELU
            y = torch.ops.onednn.qlinear_pointwise(
                *args, self.bias, 1.0, 0, torch.float32, post, [], algorithm
            )  # (N, out)
        return y.view(*lead, self.out_features)


def _quantize_input(x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """``x`` as uint8 with one scale and zero point spanning its range and zero (asymmetric, 8 bits)."""
    qt = torch.quantize_per_tensor_dynamic(x, torch.quint8, False)  # one fused pass over x
    try:  # the same bytes seen as a plain uint8 tensor, without the copy int_repr() makes
        qx = torch.empty(0, dtype=torch.uint8).set_(qt.untyped_storage(), 0, qt.shape, qt.stride())
    except (RuntimeError, TypeError):
        qx = qt.int_repr()
    return qx, qt.q_scale(), qt.q_zero_point()
