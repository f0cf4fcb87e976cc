"""Dynamic int8 quantisation of the PyTorch backend, for inference on the CPU.

``quantize(model, "int8")`` returns a copy of ``model`` whose matrix products run in int8: each
Linear layer of the encoder (and of the masked-LM head) keeps its weight as int8, one symmetric
scale per output channel, and at every call the layer's input is quantised to uint8 row by row
(token by token): each row gets the scale and zero point that span its own range and 0 (dynamic
quantisation, as LiteRT's kernels do it; one scale over the whole input, as onnxruntime's
``quantize_dynamic`` takes, loses too much on real networks, docs/export.md "int8 accuracy"). The
product accumulates in int32 in oneDNN (``onednn::qlinear_pointwise``); the rows' zero points and
scales, the bias and the GELU or residual add that follows come after it, in place on its output. The
query, key and value projections become one product, so a layer's input is quantised once for the
three. Embeddings, LayerNorms, softmax attention and the small output layers (``pre_classifier``,
``classifier``, ``qa_outputs``) stay float32: they hold little of the work and much of the accuracy.

The copy has the class, call signature and output fields of the original, so pipelines and any code
that calls the model take it as they are; the original is not changed. It is for inference: it has
no gradients, and it cannot be saved as a checkpoint (save the float model instead).
"""

from __future__ import annotations

import copy

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
    """A Linear layer with int8 weights (symmetric, per output channel) and dynamic uint8 inputs (per row).

    ``forward(x, activation=None, residual=None)`` computes ``activation(x @ W.T + b)`` or
    ``x @ W.T + b + residual`` in float32 (the epilogue runs in place on the kernel's output); called as
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
        self._sums: torch.Tensor | None = None

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

    def _column_sums(self) -> torch.Tensor:
        if self._sums is None:
            self._sums = self.weight_int8.float().sum(dim=1) * self.weight_scale  # (out,)
        return self._sums

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_packed"] = None  # an opaque oneDNN tensor: neither copied nor pickled, repacked on use
        state["_sums"] = None  # derived from the buffers, recomputed on use
        return state

    def __deepcopy__(self, memo):
        new = copy.copy(self)
        new.__dict__ = copy.deepcopy(self.__getstate__(), memo)
        return new

    def forward(
        self,
        x: torch.Tensor,
        activation: str | None = None,
        residual: torch.Tensor | None = None,
        consume: bool = False,
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
        # consume: the caller reads x no more, so its codes are made in its own memory (a new float
        # buffer of its size costs page faults as long as the quantisation itself)
        qx, row_scale, row_zero = _quantize_rows(x2, in_place=consume and x2.dtype == torch.float32)
        # oneDNN takes one input scale per tensor, so the product runs with scale 1 and each row's own
        # scale comes after it, with the bias (as PyTorch's own compiler lowers per-token int8 products).
        y = torch.ops.onednn.qlinear_pointwise(
            qx,
            1.0,
            0,
            self._packed,
            self.weight_scale,
            self.weight_zero_point,
            None,
            1.0,
            0,
            torch.float32,
            "none",
            [],
            "",
        )  # (N, out): the int32 sums times the weight scales
        # In place on the kernel's output (new (N, out) buffers cost page faults as large as the work here).
        y.addr_(row_zero[:, 0], self._column_sums(), alpha=-1.0)  # the rows' zero points taken out
        if self.bias is not None:
            torch.addcmul(self.bias, y, row_scale, out=y)
        else:
            y.mul_(row_scale)
        if residual is not None:
            y.add_(residual.reshape(-1, self.out_features))
        elif activation == "gelu":
            torch.ops.aten.gelu_(y)  # the exact erf GELU, as the float model's
        elif activation == "relu":
            y.relu_()
        return y.view(*lead, self.out_features)


def _quantize_rows(x: torch.Tensor, in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` (N, in) as uint8 codes, with the scales and zero points (N, 1) of its rows (``in_place``:
    overwriting ``x`` on the way).

    Each row (token) gets its own scale and zero point spanning its range and 0: a few tokens of a real
    network carry activations many times larger than the rest, and one scale over the tensor leaves
    the others a handful of levels (docs/export.md, "int8 accuracy"). The codes are uint8 because
    oneDNN's int8 products on CPUs without AMX take uint8 inputs at full speed and int8 ones only
    through a slow reference kernel. The range is spread over 254 steps, so that every code lands in
    0..255 without a clamp: the zero point is rounded from the very product the row's least value gets.

    Rounding and the conversion to uint8 come from one float add: ``v + 1.5 * 2**23`` (``_ROUNDER``)
    rounds ``v`` (0 <= v < 2**22) to the nearest integer, ties to even, and leaves it in the low bits
    of the float's representation, whose lowest byte is the code. That is a third of the time of
    ``round_`` and a float-to-uint8 conversion (PyTorch's is not vectorised), and an ``addcmul`` with
    two per-row operands is not vectorised either, so the codes are ``x * (1 / scale)`` then the add.
    """
    low = x.amin(dim=1, keepdim=True).clamp_(max=0.0)
    high = x.amax(dim=1, keepdim=True).clamp_(min=0.0)
    scale = (high - low).div_(254.0).clamp_(min=1e-12)  # (N, 1); a zero row keeps a usable scale
    inverse = scale.reciprocal()
    zero = torch.mul(low, inverse).neg_().round_()  # (N, 1): the code of 0.0
    shifted = (x.mul_(inverse) if in_place else torch.mul(x, inverse)).add_(zero + _ROUNDER)  # codes in low bits
    return shifted.view(torch.int32).to(torch.uint8), scale, zero


_ROUNDER = 1.5 * 2.0**23  # adding it to a float in [0, 2**22) rounds it to an integer held in the low bits
