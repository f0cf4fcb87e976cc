"""Exporting the PyTorch models: ONNX (``model.onnx``), float32 or with dynamic int8 weights.

The graph comes from ``torch.onnx.export(..., dynamo=True)``: ``torch.export`` traces the model with
symbolic batch, sequence (and choices) sizes, and onnxscript translates the traced program. It is the
exporter PyTorch develops (the TorchScript one, ``dynamo=False``, is deprecated), and it gives every
head a graph whose axes stay dynamic, so one file serves every shape. Tracing runs the plain ops (the
fused oneDNN kernels of :mod:`distilbert.pt.ops` step aside under ``torch.compiler.is_compiling()``).

Interface of the file: inputs ``input_ids`` and ``attention_mask``, int64, ``(batch, sequence)``
(``(batch, choices, sequence)`` for multiple choice); outputs named as the model's fields
(``last_hidden_state``; ``logits``; ``start_logits`` and ``end_logits``). A sequence longer than the
position table fails in onnxruntime itself (the position embeddings of ``sequence`` tokens do not
broadcast against the ``max_position_embeddings`` rows); :func:`load` checks it first and says so.

``quantize="int8"``: int8 weights in every MatMul with a constant weight, as onnxruntime's
``MatMulNBits`` (``bits=8``, symmetric, one scale per output channel and block of 128 inputs,
``accuracy_level=4``: the input is quantized to int8 at run time, each row and block with its own
scale, and the product runs in int8); the embedding tables (Gathers) as ``quantize_dynamic``'s
per-row int8. About a quarter of the float32 file.

Example:
    >>> from distilbert.pt.export import export, load  # doctest: +SKIP
    >>> path = export(model, "out", format="onnx")
    >>> load(path)(input_ids, attention_mask)["logits"]
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from distilbert.common.config import DistilBertConfig
from distilbert.common.logs import errors_only, errors_only_everywhere

FORMATS: tuple[str, ...] = ("onnx",)
QUANTIZE = ("int8",)
INPUTS = ("input_ids", "attention_mask")
ARTEFACT = "model.onnx"
INSTALL = 'pip install "distilbert[export]"'
# int8 MatMulNBits weights: one float scale per output channel and block of this many inputs (the
# file grows 3% over int8 alone); onnxruntime quantizes each row of the input in the same blocks.
INT8_BLOCK = 128
# The ONNX file records the longest sequence in its metadata, so that load() can refuse longer ones clearly.
MAX_LENGTH_KEY = "max_position_embeddings"


def output_names(task: str) -> tuple[str, ...]:
    """The output fields a head's export has, in order."""
    return {"base": ("last_hidden_state",), "question_answering": ("start_logits", "end_logits")}.get(task, ("logits",))


def _check(format: str, quantize: str | None, opset: int | None) -> None:
    if format not in FORMATS:
        raise ValueError(f"the PyTorch backend exports {', '.join(FORMATS)}, not {format!r}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ValueError(f"unknown quantization {quantize!r}; expected one of {', '.join(QUANTIZE)} (or None)")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 18):
        # The dynamo exporter writes opset 18 and newer (older ones need the version converter, which
        # does not handle every op of this graph).
        raise ValueError(f"opset must be an integer >= 18, got {opset!r}")


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: {INSTALL}")


def export(
    model, directory: str, *, format: str = "onnx", quantize: str | None = None, opset: int | None = None
) -> str:
    """Writes ``model`` (any head of :mod:`distilbert.pt`) as ``directory/model.onnx``.

    Args:
        model: A model of this backend; exported in eval mode (its mode is restored after).
        directory: An existing directory.
        format: ``"onnx"``.
        quantize: ``None`` (float32) or ``"int8"`` (int8 weights, inputs quantized per row at run time).
        opset: The ONNX opset (>= 18); ``None`` takes the exporter's default.

    Returns:
        The path of ``model.onnx``.

    Raises:
        ValueError: An unknown format or quantization, a bad opset.
        ImportError: onnx, onnxscript (or, for int8, onnxruntime) is not installed.
    """
    _check(format, quantize, opset)
    _require("onnx", "onnxscript", *(("onnxruntime",) if quantize else ()))
    import onnx

    if not os.path.isdir(directory):
        raise NotADirectoryError(f"{directory!r} is not an existing directory")
    config, task = model.config, model.task
    names = output_names(task)
    example = _example_inputs(config, task)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = {0: batch, 1: sequence}
    if task == "multiple_choice":  # (batch, choices, sequence)
        axes = {0: batch, 1: torch.export.Dim("choices"), 2: sequence}
    path = os.path.join(directory, ARTEFACT)
    float_path = os.path.join(directory, "model.float32.onnx") if quantize else path
    training = model.training
    model.eval()
    try:
        # The exporter's notes (no torchvision, axis renames, pytree deprecations) are not the user's concern.
        with errors_only("torch.onnx"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _Fields(model, names).eval(),
                tuple(torch.from_numpy(example[k]) for k in INPUTS),
                dynamo=True,
                input_names=list(INPUTS),
                output_names=list(names),
                dynamic_shapes={k: axes for k in INPUTS},
                opset_version=opset,
                external_data=False,
                optimize=True,
                verbose=False,
            )
    finally:
        model.train(training)
    proto = program.model_proto
    for node in proto.graph.node:  # the exporter's per-node stack traces hold this machine's paths; drop them
        del node.metadata_props[:]
    _set_metadata(proto, config, task)
    onnx.save_model(proto, float_path)
    if quantize:
        try:
            _quantize_int8(float_path, path)
        finally:
            os.remove(float_path)
    return path


def _quantize_int8(float_path: str, path: str) -> None:
    """``float_path`` with int8 weights, written to ``path`` (see the module docstring)."""
    import onnx

    # onnxruntime's quantizers log every node at INFO, partly through the root logger, and importing them
    # configures the root logger at INFO: hundreds of lines per export, and the user's logging changed after.
    with errors_only_everywhere():
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        # The MatMuls: onnxruntime's own dynamic quantization (DynamicQuantizeLinear + MatMulInteger) gives
        # each input one scale over the whole tensor, which costs too much on real networks (docs/export.md,
        # "int8 accuracy"); MatMulNBits quantizes its input per row and block instead (accuracy_level 4).
        proto = onnx.load(float_path)
        _gemms_as_matmuls(proto)  # the heads' 2-D Linear layers, which MatMulNBits does not take as Gemm
        nbits = MatMulNBitsQuantizer(
            proto, bits=8, block_size=INT8_BLOCK, is_symmetric=True, accuracy_level=4, op_types_to_quantize=("MatMul",)
        )
        nbits.process()
        matmuls_path = path + ".matmuls"
        nbits.model.save_model_to_file(matmuls_path, False)
        try:  # the embedding tables (Gathers), as before; no MatMul with a constant weight is left
            quantize_dynamic(matmuls_path, path, per_channel=True, weight_type=QuantType.QInt8)
        finally:
            os.remove(matmuls_path)
    quantized = onnx.load(path)  # the quantizers keep the graph's metadata; say what it holds
    onnx.helper.set_model_props(
        quantized, {**{p.key: p.value for p in quantized.metadata_props}, "quantization": "int8 dynamic"}
    )
    onnx.save_model(quantized, path)


def _gemms_as_matmuls(proto) -> None:
    """Rewrites each ``Gemm(x, W, b)`` with a constant ``W`` (no transposed ``x``, unit alpha and beta) as
    ``MatMul(x, W') + b``, ``W'`` the weight as (in, out), in place."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in weights:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]])
        name = f"{node.input[1]}_in_out"
        graph.initializer.append(numpy_helper.from_array(w.T.copy() if attrs.get("transB", 0) else w, name))
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        product = f"{node.output[0]}_product" if bias else node.output[0]
        nodes.append(onnx.helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}_matmul"))
        if bias:
            nodes.append(onnx.helper.make_node("Add", [product, bias], [node.output[0]], name=f"{node.name}_bias"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]  # the (out, in) copies go
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _set_metadata(proto, config: DistilBertConfig, task: str) -> None:
    import onnx

    onnx.helper.set_model_props(
        proto, {MAX_LENGTH_KEY: str(config.max_position_embeddings), "task": task, "producer": "distilbert"}
    )


def _example_inputs(config: DistilBertConfig, task: str) -> dict[str, np.ndarray]:
    """Inputs to trace with: no axis of size 1 (torch.export would specialise it), padding in row 1."""
    seq = max(2, min(8, config.max_position_embeddings))
    shape = (2, 3, seq) if task == "multiple_choice" else (2, seq)
    ids = np.random.default_rng(0).integers(0, config.vocab_size, size=shape).astype(np.int64)
    mask = np.ones(shape, np.int64)
    mask[1, ..., seq // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


class _Fields(torch.nn.Module):
    """The model called with ids and mask, returning its output fields as a tuple (what ONNX names)."""

    def __init__(self, model, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return tuple(out[name] for name in self.names)


class OnnxRunner:
    """``runner(input_ids, attention_mask) -> {field: array}`` over an onnxruntime session.

    Ids and mask are passed as int64; a mask of ones is used when none is given. A sequence longer
    than the model's position table is refused with a ValueError before onnxruntime runs (onnxruntime
    itself stops with a broadcasting error in the embeddings' Add node).
    """

    def __init__(self, session, max_length: int | None):
        self.session, self.max_length = session, max_length
        self.output_names = tuple(o.name for o in session.get_outputs())

    def __call__(self, input_ids, attention_mask=None) -> dict[str, np.ndarray]:
        ids = np.asarray(input_ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"input_ids must be integers, got {ids.dtype}")
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask shape {mask.shape} != input_ids shape {ids.shape}")
        if self.max_length is not None and ids.shape[-1] > self.max_length:
            raise ValueError(
                f"sequence length {ids.shape[-1]} exceeds max_position_embeddings={self.max_length}; truncate the input"
            )
        feeds = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
        return dict(zip(self.output_names, self.session.run(None, feeds)))


def load(path: str, providers: list[str] | None = None) -> OnnxRunner:
    """A runner executing ``path`` (``model.onnx``) in onnxruntime.

    Args:
        path: The ONNX file (or the directory holding ``model.onnx``).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).

    Returns:
        ``runner(input_ids, attention_mask) -> {field: np.ndarray}``.
    """
    _require("onnxruntime")
    import onnxruntime as ort

    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, ARTEFACT)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no ONNX file {path!r}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors reach the caller as exceptions; no duplicate log lines
    session = ort.InferenceSession(path, options, providers=providers or ["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    max_length = int(meta[MAX_LENGTH_KEY]) if meta.get(MAX_LENGTH_KEY, "").isdigit() else None
    return OnnxRunner(session, max_length)
