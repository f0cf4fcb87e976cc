"""Export of the Flax NNX models as StableHLO: a serialized ``jax.export.Exported`` (``model.stablehlo``).

The file is the forward pass in inference mode, lowered by ``jax.export`` for the platform it is exported
on (the default JAX backend, usually ``cpu``), with the parameters baked in as constants: it runs on its
own, with no model code and no checkpoint::

    exported = jax.export.deserialize(bytearray(open("model.stablehlo", "rb").read()))
    outputs = exported.call(input_ids, attention_mask)  # int32 arrays -> {"logits": ...}

Inputs ``input_ids`` and ``attention_mask`` are int32 (JAX's default integer type), ``(b, t)``, or
``(b, c, t)`` for multiple choice, with symbolic dimensions: one file serves every batch, sequence and
choice count. The sequence dimension carries the constraint ``t <= max_position_embeddings``. Outputs
are a dict keyed by the model's field names (``last_hidden_state`` | ``logits`` | ``start_logits``,
``end_logits``), float32.

A sequence longer than ``max_position_embeddings``: the module's shape assertion of the constraint
fails. Called on the ``Exported`` that ``jax.export.export`` returned, it raises ``ValueError`` naming the
constraint; on a deserialized one (the file) it fails while XLA specialises the module to the shape, as
``ValueError("Error refining shapes ...")``, naming nothing. :func:`load`'s runner checks the length first
and names the limit. An id outside the vocabulary gives NaN outputs for its sequence (the model's
embedding lookup), not an error.

int8 is not offered for StableHLO: ``jax.export`` lowers the computation the model does, and the Flax
backend has no int8 path to lower (the int8 exports are ONNX and LiteRT).
"""

from __future__ import annotations

import os
import re

import numpy as np

FORMATS = ("stablehlo",)
ARTEFACT = "model.stablehlo"
INPUTS = ("input_ids", "attention_mask")
FIELDS = ("last_hidden_state", "logits", "start_logits", "end_logits")  # the models' order


def _check(format: str, quantize: str | None = None, opset: int | None = None) -> None:
    """Raises ``ValueError`` for a format this backend does not write or an option it does not have."""
    if format not in FORMATS:
        raise ValueError(f"unknown JAX/Flax export format {format!r}; expected one of {', '.join(FORMATS)}")
    if opset is not None:
        raise ValueError(f"opset applies to the onnx format only, not {format!r}; leave it out")
    if quantize is not None:
        raise ValueError(f"quantize={quantize!r} is not supported for {format!r}; int8 export is for onnx and litert")


def export(model, directory: str, *, format: str, quantize: str | None = None, opset: int | None = None) -> str:
    """Writes ``model`` (any NNX head of this package) as ``model.stablehlo`` into the existing ``directory``.

    Args:
        model: A ``FlaxDistilBert...`` model of :mod:`distilbert.flax`.
        directory: An existing directory.
        format: ``"stablehlo"``.
        quantize: Must be None (not supported for StableHLO).
        opset: ONNX only; must be None.

    Returns:
        The path of ``model.stablehlo``.

    Raises:
        ValueError: an unknown format, or an option StableHLO does not have.
        TypeError: ``model`` is not a model of this backend.
        FileExistsError: ``model.stablehlo`` exists already in ``directory``.
    """
    _check(format, quantize, opset)
    if not hasattr(model, "task") or not type(model).__module__.startswith("distilbert.flax"):
        raise TypeError(f"expected a distilbert.flax model, got {type(model).__name__}")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"export directory {directory!r} does not exist; create it first")
    target = os.path.join(directory, ARTEFACT)
    if os.path.exists(target):
        raise FileExistsError(f"{target!r} exists already; export into an empty directory")
    blob = exported(model).serialize()
    partial = target + ".partial"
    with open(partial, "wb") as fh:
        fh.write(blob)
    os.replace(partial, target)
    return target


def exported(model):
    """The ``jax.export.Exported`` of ``model``'s inference forward pass (what :func:`export` serializes)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, state = nnx.split(model)  # closed over below: the parameters become constants of the module

    def forward(input_ids, attention_mask):
        out = nnx.merge(graphdef, state)(
            input_ids,
            attention_mask,
            output_attentions=False,
            output_hidden_states=False,
            return_dict=True,
            deterministic=True,
        )
        return {name: value.astype(jnp.float32) for name, value in out.items() if name != "loss"}

    dims = "b, c, t" if model.task == "multiple_choice" else "b, t"
    # The bound lets shape checks (and the position table's slice) decide `t <= max_position_embeddings`.
    shape = jax.export.symbolic_shape(dims, constraints=(f"t <= {model.config.max_position_embeddings}",))
    spec = jax.ShapeDtypeStruct(shape, jnp.int32)
    return jax.export.export(jax.jit(forward))(spec, spec)


class _Runner:
    """``runner(input_ids, attention_mask) -> {field: np.ndarray}``, executing the deserialized export."""

    def __init__(self, path: str):
        import jax

        with open(path, "rb") as fh:
            self.exported = jax.export.deserialize(bytearray(fh.read()))
        self.path = path
        self.max_length = _sequence_limit(self.exported)

    def __call__(self, input_ids, attention_mask) -> dict[str, np.ndarray]:
        ids, mask = _int32("input_ids", input_ids), _int32("attention_mask", attention_mask)
        expected = self.exported.in_avals[0].ndim
        if ids.ndim != expected or mask.shape != ids.shape:
            raise ValueError(
                f"input_ids and attention_mask must both have {expected} axes and one shape; "
                f"got {ids.shape} and {mask.shape}"
            )
        if self.max_length is not None and ids.shape[-1] > self.max_length:
            raise ValueError(
                f"sequence length {ids.shape[-1]} is longer than max_position_embeddings ({self.max_length}); "
                "truncate the input"
            )
        out = self.exported.call(ids, mask)
        return {name: np.asarray(out[name]) for name in FIELDS if name in out}

    def __repr__(self) -> str:
        return f"<stablehlo runner of {self.path} ({', '.join(self.exported.platforms)})>"


def _int32(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.size and array.dtype.kind != "b" and (array.min() < -(2**31) or array.max() >= 2**31):
        raise ValueError(f"{name} holds values outside int32, the export's input type")
    return np.ascontiguousarray(array, np.int32)


def _sequence_limit(exported) -> int | None:
    """The bound ``t <= N`` the module checks, read from its own shape assertion (None if it has none).

    The constraint is not among what ``deserialize`` restores to the symbolic shapes (their scope comes back
    empty), but the module keeps its check of it, whose message names the bound.
    """
    found = re.search(rb"symbolic shape constraint t <= (\d+)", bytes(exported.mlir_module_serialized))
    return None if found is None else int(found.group(1))


def load(path: str):
    """A runner of ``model.stablehlo`` at ``path``, executed by ``jax.export.deserialize(...).call``.

    Returns:
        A callable ``runner(input_ids, attention_mask) -> dict[str, np.ndarray]`` (integer numpy inputs, cast
        to int32), outputs keyed by the model's field names in the model's order.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no StableHLO export at {path!r}")
    return _Runner(path)
