"""Running a loaded model on numpy batches, one small runner per framework.

A runner takes ``input_ids`` and ``attention_mask`` as numpy arrays (``(B, T)``, or ``(B, C, T)`` for
multiple choice) and returns the asked-for output fields as float32 numpy arrays. Everything before
and after (tokenizing, padding, scores, spans) is framework-free and lives in the task pipelines.
Each runner imports only its own framework, and only when it is built.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from distilbert.frameworks import FRAMEWORKS, check_framework, model_class  # noqa: F401 (re-exported)

# Tasks whose outputs have a token axis (B, T, ...); the others give one row per sequence.
TOKEN_LEVEL_TASKS = ("masked_lm", "token_classification", "question_answering")


def framework_of(model) -> str | None:
    """``"pt"``, ``"tf"`` or ``"flax"`` for a model of this package, else ``None``."""
    parts = type(model).__module__.split(".")
    if len(parts) >= 2 and parts[0] == "distilbert" and parts[1] in FRAMEWORKS:
        return parts[1]
    return None


def make_runner(model, framework: str, outputs: tuple[str, ...], device=None):
    """The runner of ``model`` (a model of ``framework``) returning the fields ``outputs``."""
    runner = {"pt": TorchRunner, "tf": KerasRunner, "flax": FlaxRunner}[framework]
    return runner(model, outputs, device)


class TorchRunner:
    """PyTorch: ``eval()`` mode and ``torch.inference_mode``, inputs moved to the model's device.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``, or an index (CUDA
            device, -1 for the CPU); ``None`` leaves the model where it is.
    """

    framework = "pt"

    def __init__(self, model, outputs: tuple[str, ...], device=None):
        import torch

        self._torch = torch
        if isinstance(device, int):  # transformers' convention: -1 is the CPU, 0, 1, ... CUDA devices
            device = "cpu" if device < 0 else f"cuda:{device}"
        if device is not None:
            model.to(device)
        self.model = model.eval()
        self.outputs = outputs

    @property
    def device(self) -> str:
        return str(self.model.device)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        device = self.model.device
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(input_ids).to(device),
                             attention_mask=torch.from_numpy(attention_mask).to(device), return_dict=True)
            return {name: getattr(out, name).float().cpu().numpy() for name in self.outputs}


class KerasRunner:
    """TensorFlow/Keras: one ``tf.function`` per input rank (traced once, any batch and length),
    called with ``training=False``.

    Args:
        device: A TensorFlow device name (``"/GPU:0"``, ``"cpu"``) or an index (GPU, -1 for the CPU);
            ``None`` lets TensorFlow place ops.
    """

    framework = "tf"

    def __init__(self, model, outputs: tuple[str, ...], device=None):
        import tensorflow as tf

        self._tf = tf
        self.model = model
        self.outputs = outputs
        if isinstance(device, int):  # -1 is the CPU, 0, 1, ... GPUs
            device = "/CPU:0" if device < 0 else f"/GPU:{device}"
        self._device = device
        self._functions = {}

    @property
    def device(self) -> str:
        return self._device or "default"

    def _function(self, rank: int):
        if rank not in self._functions:
            tf = self._tf
            spec = tf.TensorSpec((None,) * rank, tf.int32)

            @tf.function(input_signature=[spec, spec])
            def forward(input_ids, attention_mask):
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, training=False)
                return {name: out[name] for name in self.outputs}

            self._functions[rank] = forward
        return self._functions[rank]

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        tf = self._tf
        forward = self._function(input_ids.ndim)
        with tf.device(self._device) if self._device else contextlib.nullcontext():
            out = forward(tf.constant(input_ids, tf.int32), tf.constant(attention_mask, tf.int32))
        return {name: np.asarray(value.numpy(), np.float32) for name, value in out.items()}


class FlaxRunner:
    """JAX/Flax NNX: the forward pass compiled with ``nnx.jit``, the model bound once with
    ``nnx.cached_partial`` (which skips re-walking the module on every call, yet sees later changes to
    its weights).

    ``jit`` compiles once per input shape, so batches are padded up to a power of two and sequences up to
    a multiple of 8 tokens (within the position table) to keep the number of compilations small;
    padding is masked and cut off again.

    Args:
        device: ``"cpu"``, ``"gpu"``, ``"gpu:1"``, ``"tpu"``, a ``jax.Device``, or an index (-1 for the CPU);
            the model's weights are moved there. ``None`` leaves them where they are.
    """

    framework = "flax"
    BUCKET = 8

    def __init__(self, model, outputs: tuple[str, ...], device=None):
        import jax
        from flax import nnx

        self._jax = jax
        self.model = model
        self.max_length = model.config.max_position_embeddings
        self.pad_id = model.config.pad_token_id or 0
        self._device = _jax_device(jax, device)
        if self._device is not None:
            nnx.update(model, jax.device_put(nnx.state(model), self._device))

        @nnx.jit
        def forward(model, input_ids, attention_mask):
            out = model(input_ids=input_ids, attention_mask=attention_mask)
            return {name: getattr(out, name) for name in outputs}

        self._forward = nnx.cached_partial(forward, model)

    @property
    def device(self) -> str:
        return str(self._device or self._jax.devices()[0])

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        batch, length = input_ids.shape[0], input_ids.shape[-1]
        padded_batch = 1 << (batch - 1).bit_length()  # the next power of two
        padded = max(length, min(-(-length // self.BUCKET) * self.BUCKET, self.max_length))
        if (padded_batch, padded) != (batch, length):
            # Extra rows are all padding (fully masked rows give finite outputs) and are dropped below.
            widths = [(0, padded_batch - batch)] + [(0, 0)] * (input_ids.ndim - 2) + [(0, padded - length)]
            input_ids = np.pad(input_ids, widths, constant_values=self.pad_id)
            attention_mask = np.pad(attention_mask, widths, constant_values=0)
        ids, mask = input_ids.astype(np.int32), attention_mask.astype(np.int32)
        if self._device is not None:
            ids, mask = self._jax.device_put(ids, self._device), self._jax.device_put(mask, self._device)
        out = {name: np.asarray(value, np.float32)[:batch] for name, value in self._forward(ids, mask).items()}
        if self.model.task in TOKEN_LEVEL_TASKS:  # (B, T_padded, ...) -> (B, T, ...)
            out = {name: value[:, :length] for name, value in out.items()}
        return out


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


def load_model(framework: str, task: str, directory: str | os.PathLike, **kwargs):
    """``from_pretrained`` of ``framework``'s class for ``task``, on a local checkpoint directory."""
    return model_class(framework, task).from_pretrained(os.fspath(directory), **kwargs)
