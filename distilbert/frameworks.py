"""One way to build, load and run any backend from numpy: for the pipelines, ``--verify``, the demo and tests.

Each function imports only the framework it is asked for. Running is one small runner per framework
(:func:`make_runner`): numpy arrays in, numpy arrays out (float32 for half-precision outputs). A
compiled runner (the pipelines') traces the forward pass once per input layout (``tf.function``,
``nnx.jit``) and places the model on a device; :func:`run` is a one-off, uncompiled call of the same
runner.

Example:
    >>> from distilbert.frameworks import build, run  # doctest: +SKIP
    >>> model = build("flax", "sequence_classification", config, state)
    >>> run("flax", model, {"input_ids": ids, "attention_mask": mask})["logits"]
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from distilbert.common.checkpoint import CLASS_PREFIX, FORMATS
from distilbert.common.config import DistilBertConfig
from distilbert.common.names import TASK_CLASSES

FRAMEWORKS = ("pt", "tf", "flax")
NAMES = {"pt": "PyTorch", "tf": "TensorFlow", "flax": "JAX/Flax"}  # what user-facing text calls each framework
EXTRAS = {"pt": "torch", "tf": "tf", "flax": "flax"}  # the package extra that installs each framework
# Which framework reads each weight format natively (the Keras formats need the TF backend).
FORMAT_FRAMEWORK = {fmt: framework for fmt, (_, _, framework) in FORMATS.items()}
# Tasks whose outputs have a token axis (B, T, ...); the others give one row per sequence.
TOKEN_LEVEL_TASKS = ("base", "masked_lm", "token_classification", "question_answering")


def framework_of(model) -> str | None:
    """``"pt"``, ``"tf"`` or ``"flax"`` for a model of this package, else ``None``."""
    parts = type(model).__module__.split(".")
    if len(parts) >= 2 and parts[0] == "distilbert" and parts[1] in FRAMEWORKS:
        return parts[1]
    return None


def check_framework(framework: str) -> None:
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")


def model_class(framework: str, task: str):
    """The class of ``task`` in ``framework`` (e.g. ``("tf", "masked_lm")`` -> ``TFDistilBertForMaskedLM``)."""
    check_framework(framework)
    try:
        module = importlib.import_module(f"distilbert.{framework}")
    except ImportError as exc:
        raise ImportError(
            f"framework {framework!r} is not available ({exc}); install it with "
            f"pip install 'distilbert[{EXTRAS[framework]}]'"
        ) from exc
    return getattr(module, CLASS_PREFIX[framework] + TASK_CLASSES[task])


def build(framework: str, task: str, config: DistilBertConfig, state: Mapping[str, np.ndarray] | None = None):
    """A model of ``task`` holding the canonical ``state`` (fresh weights without one), in inference mode."""
    model = model_class(framework, task)(config)
    if state is not None:
        load_canonical_state(framework, model, state)
    if framework == "pt":
        model.eval()
    return model


def canonical_state(framework: str, model) -> dict[str, np.ndarray]:
    """The model's weights as canonical numpy arrays (the backend's ``pretrained.canonical_state``)."""
    check_framework(framework)
    return importlib.import_module(f"distilbert.{framework}.pretrained").canonical_state(model)


def load_canonical_state(framework: str, model, state: Mapping[str, np.ndarray]) -> None:
    """Copies a canonical numpy state into the model, strictly (the backend's ``pretrained.load_canonical_state``)."""
    check_framework(framework)
    importlib.import_module(f"distilbert.{framework}.pretrained").load_canonical_state(model, dict(state))


def from_pretrained(framework: str, task: str, path: str | os.PathLike, **kwargs):
    """``from_pretrained`` of ``task``'s class in ``framework``."""
    return model_class(framework, task).from_pretrained(os.fspath(path), **kwargs)


def to_numpy(value: Any) -> Any:
    """Framework tensors (and tuples of them) to numpy arrays, half-precision ones as float32."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return tuple(to_numpy(v) for v in value)
    if hasattr(value, "detach"):  # torch: the backend's exact copy (bfloat16 as ml_dtypes.bfloat16)
        from distilbert.pt.pretrained import to_numpy as torch_to_numpy

        value = torch_to_numpy(value)
    array = np.asarray(value)
    if (
        array.dtype.kind == "V"
        or (array.dtype.kind == "f" and array.dtype.itemsize < 4)
        or str(array.dtype) == "bfloat16"
    ):
        array = array.astype(np.float32)
    return array


def run(framework: str, model, inputs: Mapping[str, np.ndarray], **kwargs) -> dict[str, Any]:
    """Runs ``model`` on numpy ``inputs`` (ids, mask, labels...) in inference mode; numpy outputs.

    Args:
        framework: ``"pt"``, ``"tf"`` or ``"flax"``.
        model: A model of that framework.
        inputs: Numpy arrays keyed by call argument name.
        **kwargs: Output flags of the call (``output_hidden_states=True``, ...).

    Returns:
        The output's non-None fields as numpy arrays (tuples for hidden states and attentions).
    """
    return make_runner(model, framework, compiled=False, **kwargs)(**inputs)


def make_runner(
    model, framework: str, outputs: tuple[str, ...] | None = None, device=None, compiled: bool = True, **flags
):
    """The runner of ``model`` (a model of ``framework``).

    Args:
        outputs: The output fields to return (None: every field that is not None).
        device: Where to run (see each runner); None leaves the model where it is.
        compiled: Trace the forward pass once per input layout (TensorFlow, Flax) and reuse it.
        **flags: Output flags passed to every call (``output_hidden_states=True``, ...).
    """
    check_framework(framework)
    runner = {"pt": TorchRunner, "tf": KerasRunner, "flax": FlaxRunner}[framework]
    return runner(model, outputs, device, compiled, **flags)


class _Runner:
    """Numpy in, numpy out: ``runner(input_ids, attention_mask, **other_inputs) -> {field: array}``."""

    framework = ""
    skip_padding = False  # every runner takes skip_padding=True (pipelines: their results never read the padding)

    def __init__(self, model, outputs: tuple[str, ...] | None = None, device=None, compiled: bool = True, **flags):
        self.model, self.outputs, self.compiled = model, outputs, compiled
        self.flags = {**flags, "return_dict": True}

    def __call__(self, input_ids=None, attention_mask=None, **inputs) -> dict[str, Any]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **inputs}
        return {
            k: to_numpy(v)
            for k, v in self._forward({k: np.asarray(v) for k, v in inputs.items() if v is not None}).items()
        }

    def _fields(self, out) -> dict[str, Any]:
        if self.outputs is None:
            return {k: v for k, v in out.items() if v is not None}
        return {name: out[name] for name in self.outputs}

    @contextlib.contextmanager
    def _skipping_padding(self):
        """The model's ``skip_padding`` on for the call (PyTorch, TensorFlow; for runners made with
        ``skip_padding=True``), its own setting back afterwards."""
        own = self.model.skip_padding
        self.model.skip_padding = own or self.skip_padding
        try:
            yield
        finally:
            self.model.skip_padding = own

    @staticmethod
    def _int32(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Integer inputs as int32 (one traced signature, the fast gather)."""
        return {k: v.astype(np.int32) if v.dtype.kind in "iu" else v for k, v in inputs.items()}


class TorchRunner(_Runner):
    """PyTorch: ``eval()`` mode and ``torch.inference_mode``, inputs moved to the model's device.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``, or an index (CUDA
            device, -1 for the CPU); ``None`` leaves the model where it is.
        skip_padding: Run the encoder on the real tokens only (``distilbert.pt`` models'
            ``skip_padding``; the outputs at padded positions are then 0), for callers that never read
            them, such as the pipelines. The model's own setting is left as it is.
    """

    framework = "pt"

    def __init__(self, model, outputs=None, device=None, compiled=True, skip_padding=False, **flags):
        import torch

        super().__init__(model, outputs, device, compiled, **flags)
        self._torch = torch
        self.skip_padding = skip_padding
        if isinstance(device, int):  # transformers' convention: -1 is the CPU, 0, 1, ... CUDA devices
            device = "cpu" if device < 0 else f"cuda:{device}"
        if device is not None:
            model.to(device)
        model.eval()

    @property
    def device(self) -> str:
        return str(next(self.model.parameters()).device)

    def _forward(self, inputs):
        torch = self._torch
        device = next(self.model.parameters()).device
        with torch.inference_mode(), self._skipping_padding():
            return self._fields(
                self.model(**{k: torch.from_numpy(v).to(device) for k, v in inputs.items()}, **self.flags)
            )


class KerasRunner(_Runner):
    """TensorFlow/Keras, called with ``training=False``; compiled: one ``tf.function`` per input layout
    (names, ranks, dtypes: traced once, any batch and length).

    Args:
        device: A TensorFlow device name (``"/GPU:0"``, ``"cpu"``) or an index (GPU, -1 for the CPU);
            ``None`` lets TensorFlow place ops.
        skip_padding: As :class:`TorchRunner`'s (the compiled graphs are traced with it).
    """

    framework = "tf"

    def __init__(self, model, outputs=None, device=None, compiled=True, skip_padding=False, **flags):
        import tensorflow as tf

        super().__init__(model, outputs, device, compiled, **flags)
        self._tf = tf
        self.skip_padding = skip_padding
        if isinstance(device, int):  # -1 is the CPU, 0, 1, ... GPUs
            device = "/CPU:0" if device < 0 else f"/GPU:{device}"
        self._device = device
        self._functions = {}

    @property
    def device(self) -> str:
        return self._device or "default"

    def _call(self, inputs):
        with self._skipping_padding():  # eager, or while the graph is traced
            return self._fields(self.model(dict(inputs), training=False, **self.flags))

    def _function(self, inputs):
        tf = self._tf
        key = tuple((k, v.ndim, v.dtype.str) for k, v in inputs.items())
        if key not in self._functions:
            specs = {k: tf.TensorSpec((None,) * v.ndim, tf.as_dtype(v.dtype)) for k, v in inputs.items()}
            self._functions[key] = tf.function(self._call, input_signature=[specs])
        return self._functions[key]

    def _forward(self, inputs):
        tf = self._tf
        with tf.device(self._device) if self._device else contextlib.nullcontext():
            if not self.compiled:
                return self._call({k: tf.constant(v) for k, v in inputs.items()})
            inputs = self._int32(inputs)
            return self._function(inputs)({k: tf.constant(v) for k, v in inputs.items()})


class FlaxRunner(_Runner):
    """JAX/Flax NNX, dropout off; compiled: the forward pass under ``nnx.jit``, the model bound once with
    ``nnx.cached_partial`` (which skips re-walking the module on every call, yet sees later changes to
    its weights).

    ``jit`` compiles once per input shape, so a compiled runner given only ``input_ids`` and
    ``attention_mask`` pads batches up to a power of two and sequences up to a multiple of 8 tokens
    (within the position table) to keep the number of compilations small; padding is masked and cut
    off again.

    Args:
        device: ``"cpu"``, ``"gpu"``, ``"gpu:1"``, ``"tpu"``, a ``jax.Device``, or an index (-1 for the CPU);
            the model's weights are moved there. ``None`` leaves them where they are.
        skip_padding: As :class:`TorchRunner`'s. Under ``jit`` the number of rows the real tokens are
            packed into is a shape, so a compiled runner rounds it up to a quarter of the padded
            batch's ``B * T`` (at most four compilations per shape; none of them when nothing would be
            skipped).
    """

    framework = "flax"
    BUCKET = 8
    ROW_BUCKETS = 4  # skip_padding: the packed rows, rounded up to this fraction of B * T

    def __init__(self, model, outputs=None, device=None, compiled=True, skip_padding=False, **flags):
        import jax
        from flax import nnx

        super().__init__(model, outputs, device, compiled, **flags)
        self.skip_padding = skip_padding
        self._jax = jax
        self.max_length = model.config.max_position_embeddings
        self.pad_id = model.config.pad_token_id or 0
        self._device = _jax_device(jax, device)
        if self._device is not None:
            nnx.update(model, jax.device_put(nnx.state(model), self._device))

        def forward(model, inputs, rows):  # rows: skip_padding's static number of rows (False: none)
            return self._fields(model(**inputs, deterministic=True, skip_padding=rows, **self.flags))

        self._jitted = nnx.cached_partial(nnx.jit(forward, static_argnames=("rows",)), model)

    @property
    def device(self) -> str:
        return str(self._device or self._jax.devices()[0])

    def _forward(self, inputs):
        jnp = self._jax.numpy
        if not self.compiled:
            return self._fields(
                self.model(**{k: jnp.asarray(v) for k, v in inputs.items()}, deterministic=True, **self.flags)
            )
        inputs = self._int32(inputs)
        ids = inputs["input_ids"]
        batch, length = ids.shape[0], ids.shape[-1]
        bucketed = set(inputs) <= {"input_ids", "attention_mask"} and self.flags == {"return_dict": True}
        if bucketed:
            padded_batch = 1 << (batch - 1).bit_length()  # the next power of two
            padded = max(length, min(-(-length // self.BUCKET) * self.BUCKET, self.max_length))
            if (padded_batch, padded) != (batch, length):
                # Extra rows are all padding (fully masked rows give finite outputs) and are dropped below.
                widths = [(0, padded_batch - batch)] + [(0, 0)] * (ids.ndim - 2) + [(0, padded - length)]
                mask = inputs.get("attention_mask", np.ones_like(ids))
                inputs = {
                    "input_ids": np.pad(ids, widths, constant_values=self.pad_id),
                    "attention_mask": np.pad(mask, widths, constant_values=0),
                }
        rows = self._bucketed_rows(inputs.get("attention_mask"))
        if self._device is not None:
            inputs = {k: self._jax.device_put(v, self._device) for k, v in inputs.items()}
        out = self._jitted(inputs, rows=rows)
        if not bucketed:
            return out
        out = {name: np.asarray(value)[:batch] for name, value in out.items()}
        if self.model.task in TOKEN_LEVEL_TASKS:  # (B, T_padded, ...) -> (B, T, ...)
            out = {name: value[:, :length] for name, value in out.items()}
        return out

    def _bucketed_rows(self, mask) -> int | bool:
        """skip_padding's rows for this (numpy) mask: the real tokens rounded up to a bucket; False: none."""
        if not (self.skip_padding or self.model.skip_padding) or mask is None:
            return False
        size = mask.size
        step = -(-size // self.ROW_BUCKETS)
        rows = -(-int(np.count_nonzero(mask)) // step) * step
        return rows if 0 < rows < size else False


def _jax_device(jax, device):
    if device is None or not isinstance(device, (str, int)):
        return device
    try:
        if isinstance(device, int):  # -1 is the CPU, 0, 1, ... the default backend's devices
            return jax.devices("cpu")[0] if device < 0 else jax.devices()[device]
        platform, _, index = device.partition(":")
        return jax.devices(platform)[int(index or 0)]
    except (RuntimeError, IndexError, ValueError) as exc:
        raise ValueError(f"no JAX device {device!r} ({exc}); available: {jax.devices()}") from None
