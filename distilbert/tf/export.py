"""Export of the Keras models: a TensorFlow SavedModel, and LiteRT (``.tflite``, optionally int8).

Both formats hold one signature, ``serving_default``, with the inputs ``input_ids`` and ``attention_mask``
(int32, ``(batch, sequence)``, or ``(batch, choices, sequence)`` for multiple choice, every axis dynamic)
and the model's output fields as its outputs (``last_hidden_state`` | ``logits`` | ``start_logits``,
``end_logits``; float32). The SavedModel is written by Keras' ``ExportArchive`` (the model's variables and
one traced ``tf.function``); the LiteRT file is converted from it by ``tf.lite.TFLiteConverter`` using
only the runtime's built-in ops, so ``ai_edge_litert`` runs it without the TF-ops (Flex) delegate. The
signature runner resizes its inputs to each call's shape.

``quantize="int8"`` (LiteRT only) is the converter's dynamic-range quantisation: weights stored as int8
(per output channel for the fully connected layers, per tensor for the embedding tables), activations
float32, quantised on the fly inside the int8 kernels.

A sequence longer than ``max_position_embeddings``: the SavedModel raises ``InvalidArgumentError`` naming
the limit (an assertion in the signature). The LiteRT converter drops assertions; there the positions'
``GATHER`` kernel refuses the index past the table and ``invoke`` raises ``RuntimeError("gather index out of
bounds")``, naming no limit, so :func:`load`'s runner checks the length first (the table's row count) and
raises ``ValueError``. An id outside the vocabulary: the SavedModel's assertion names the vocabulary size;
LiteRT's ``GATHER`` refuses it as above (the runner raises ``ValueError``).

Example:
    >>> path = export(model, "out", format="litert")  # doctest: +SKIP
    >>> load(path)(ids, mask)["logits"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

FORMATS = ("saved-model", "litert")
QUANTIZE = ("int8",)
ARTEFACTS = {"saved-model": "saved_model", "litert": "model.tflite"}
SIGNATURE = "serving_default"
INPUTS = ("input_ids", "attention_mask")
# Every output field a head can have, in the models' order (LiteRT and SavedModel list outputs sorted by name).
FIELDS = ("last_hidden_state", "logits", "start_logits", "end_logits")
INSTALL = 'pip install "distilbert[export]"'


def _check(format: str, quantize: str | None = None, opset: int | None = None) -> None:
    """Raises ``ValueError`` for a format this backend does not write or an option it does not have."""
    if format not in FORMATS:
        raise ValueError(f"unknown TensorFlow export format {format!r}; expected one of {', '.join(FORMATS)}")
    if opset is not None:
        raise ValueError(f"opset applies to the onnx format only, not {format!r}; leave it out")
    if quantize is not None and quantize not in QUANTIZE:
        raise ValueError(f"unknown quantization {quantize!r}; expected one of {', '.join(QUANTIZE)}")
    if quantize is not None and format != "litert":
        raise ValueError(f"quantize={quantize!r} is not supported for {format!r}; it is for litert (and onnx)")


def export(model, directory: str, *, format: str, quantize: str | None = None, opset: int | None = None) -> str:
    """Writes ``model`` (any Keras head of this package) in ``format`` into the existing ``directory``.

    Args:
        model: A ``TFDistilBert...`` model of :mod:`distilbert.tf`.
        directory: An existing directory; the artefact is written into it.
        format: ``"saved-model"`` (the SavedModel directory ``saved_model``) or ``"litert"`` (``model.tflite``).
        quantize: ``"int8"`` for dynamic-range int8 weights (LiteRT only).
        opset: ONNX only; must be None here.

    Returns:
        The artefact's path.

    Raises:
        ValueError: an unknown format, an option the format does not have, a LiteRT export of a model that
            does not compute in float32.
        TypeError: ``model`` is not a model of this backend.
        FileExistsError: the artefact already exists in ``directory``.
    """
    _check(format, quantize, opset)
    if not hasattr(model, "task") or not type(model).__module__.startswith("distilbert.tf"):
        raise TypeError(f"expected a distilbert.tf model, got {type(model).__name__}")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"export directory {directory!r} does not exist; create it first")
    if format == "litert" and model.dtype_policy.compute_dtype != "float32":  # the converter has no bf16 kernels
        raise ValueError(
            f"LiteRT export needs a float32 model, not {model.dtype_policy.name!r}; build or load the model in "
            "float32 (quantize='int8' makes the file smaller)"
        )
    target = os.path.join(directory, ARTEFACTS[format])
    if os.path.exists(target):
        raise FileExistsError(f"{target!r} exists already; export into an empty directory")
    if format == "saved-model":
        _write_saved_model(model, target)
        return target
    with tempfile.TemporaryDirectory(dir=directory) as tmp:  # the SavedModel the converter reads
        saved = os.path.join(tmp, "saved_model")
        _write_saved_model(model, saved)
        flatbuffer = _convert(saved, quantize)
        partial = os.path.join(tmp, ARTEFACTS[format])
        with open(partial, "wb") as fh:
            fh.write(flatbuffer)
        os.replace(partial, target)
    return target


def _serving_function(model):
    """The forward pass on int32 ``input_ids`` and ``attention_mask``, outputs by field name, float32."""
    import tensorflow as tf

    rank = 3 if model.task == "multiple_choice" else 2
    limit = model.config.max_position_embeddings
    signature = [tf.TensorSpec((None,) * rank, tf.int32, name=name) for name in INPUTS]

    def serve(input_ids, attention_mask):
        checks = [  # effective in the SavedModel; the LiteRT converter drops assertions
            tf.debugging.assert_less_equal(
                tf.shape(input_ids)[-1],
                limit,
                message=f"sequence longer than max_position_embeddings ({limit}); truncate the input",
            ),
            tf.debugging.assert_equal(
                tf.shape(attention_mask),
                tf.shape(input_ids),
                message="attention_mask must have the shape of input_ids",
            ),
        ]
        with tf.control_dependencies(checks):
            input_ids = tf.identity(input_ids)
        out = model(
            input_ids,
            attention_mask=attention_mask,
            output_attentions=False,
            output_hidden_states=False,
            return_dict=True,
            training=False,
        )
        return {name: tf.cast(value, tf.float32) for name, value in out.items() if name != "loss"}

    return serve, signature


def _write_saved_model(model, path: str) -> None:
    import keras

    serve, signature = _serving_function(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serve, input_signature=signature)
    archive.write_out(path, verbose=False)


def _convert(saved_model: str, quantize: str | None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex: ai_edge_litert lacks it
    if quantize == "int8":  # no representative dataset: dynamic-range quantisation of the weights
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


# --------------------------------------------------------------------------------------------- running
def _int32(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.size and array.dtype.kind != "b" and (array.min() < -(2**31) or array.max() >= 2**31):
        raise ValueError(f"{name} holds values outside int32, the export's input type")
    return np.ascontiguousarray(array, np.int32)


def _ordered(outputs) -> dict[str, np.ndarray]:
    return {name: np.asarray(outputs[name]) for name in FIELDS if name in outputs}


class _Runner:
    """Runs an exported model in its runtime: ``runner(input_ids, attention_mask) -> {field: array}``."""

    def __init__(self, path: str, format: str, max_length: int | None):
        self.path, self.format, self.max_length = path, format, max_length

    def __call__(self, input_ids, attention_mask) -> dict[str, np.ndarray]:
        ids, mask = _int32("input_ids", input_ids), _int32("attention_mask", attention_mask)
        if ids.shape != mask.shape:
            raise ValueError(f"attention_mask shape {mask.shape} differs from input_ids shape {ids.shape}")
        if self.max_length is not None and ids.ndim and ids.shape[-1] > self.max_length:
            raise ValueError(
                f"sequence length {ids.shape[-1]} is longer than max_position_embeddings ({self.max_length}); "
                "truncate the input"
            )
        return _ordered(self._run(input_ids=ids, attention_mask=mask))

    def __repr__(self) -> str:
        return f"<{self.format} runner of {self.path}>"


class _SavedModelRunner(_Runner):
    def __init__(self, path: str):
        import tensorflow as tf

        super().__init__(path, "saved-model", None)  # the signature checks the length itself
        self._tf = tf
        self._loaded = tf.saved_model.load(path)  # kept alive: the signature holds only weak references
        self._fn = self._loaded.signatures[SIGNATURE]

    def _run(self, **inputs):
        return {k: v.numpy() for k, v in self._fn(**{k: self._tf.constant(v) for k, v in inputs.items()}).items()}


class _LiteRTRunner(_Runner):
    def __init__(self, path: str):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ImportError(f"running a LiteRT export needs ai-edge-litert ({exc}); {INSTALL}") from exc
        self.interpreter = Interpreter(model_path=path)
        self._signature = self.interpreter.get_signature_runner(SIGNATURE)  # resizes inputs on every call
        super().__init__(path, "litert", _position_count(self.interpreter))

    def _run(self, **inputs):
        try:
            return self._signature(**inputs)
        except RuntimeError as exc:
            if "gather index out of bounds" not in str(exc):
                raise
            raise ValueError(
                f"LiteRT refused an index ({exc}): an id outside the vocabulary, or a sequence longer than "
                "max_position_embeddings; check the tokenizer and truncate the input"
            ) from exc


def _position_count(interpreter) -> int | None:
    """``max_position_embeddings`` of a converted model: the rows of its position table, or None when no
    single tensor is recognisably that table.

    The converter names a frozen variable's constant after the op that read it, so the table is the 2-D
    tensor read by the ``position_embeddings`` layer (``.../position_embeddings_1/GatherV2/ReadVariableOp``).
    """
    rows = {
        int(d["shape"][0])
        for d in interpreter.get_tensor_details()
        if len(d["shape"]) == 2 and "position_embeddings" in d["name"] and d["name"].endswith("ReadVariableOp")
    }
    return rows.pop() if len(rows) == 1 else None


def load(path: str):
    """A runner of the export at ``path``, executed in its own runtime.

    Args:
        path: What :func:`export` returned: a SavedModel directory (run by ``tf.saved_model.load``) or a
            ``.tflite`` file (run by ``ai_edge_litert``'s interpreter, signature ``serving_default``).

    Returns:
        A callable ``runner(input_ids, attention_mask) -> dict[str, np.ndarray]`` (integer numpy inputs,
        cast to int32), outputs keyed by the model's field names, in the model's order.
    """
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        return _SavedModelRunner(path)
    if os.path.isfile(path) and path.endswith(".tflite"):
        return _LiteRTRunner(path)
    raise FileNotFoundError(f"{path!r} is neither a SavedModel directory nor a .tflite file")
