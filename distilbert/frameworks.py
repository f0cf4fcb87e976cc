"""One way to build, load and run any backend from numpy: for ``--verify``, the demo and tests.

Each function imports only the framework it is asked for.

Example:
    >>> from distilbert.frameworks import build, run  # doctest: +SKIP
    >>> model = build("flax", "sequence_classification", config, state)
    >>> run("flax", model, {"input_ids": ids, "attention_mask": mask})["logits"]
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

import numpy as np

from distilbert.common.checkpoint import CLASS_PREFIX, FORMATS
from distilbert.common.config import DistilBertConfig
from distilbert.common.names import TASK_CLASSES

FRAMEWORKS = ("pt", "tf", "flax")
EXTRAS = {"pt": "torch", "tf": "tf", "flax": "flax"}  # the package extra that installs each framework
# Which framework reads each weight format natively (the Keras formats need the TF backend).
FORMAT_FRAMEWORK = {fmt: framework for fmt, (_, _, framework) in FORMATS.items()}


def check_framework(framework: str) -> None:
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")


def model_class(framework: str, task: str):
    """The class of ``task`` in ``framework`` (e.g. ``("tf", "masked_lm")`` -> ``TFDistilBertForMaskedLM``)."""
    check_framework(framework)
    try:
        module = importlib.import_module(f"distilbert.{framework}")
    except ImportError as exc:
        raise ImportError(f"framework {framework!r} is not available ({exc}); install it with "
                          f"pip install 'distilbert[{EXTRAS[framework]}]'") from exc
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


def from_pretrained(framework: str, task: str, path: str, **kwargs):
    """``from_pretrained`` of ``task``'s class in ``framework``."""
    return model_class(framework, task).from_pretrained(path, **kwargs)


def to_numpy(value: Any) -> Any:
    """Framework tensors (and tuples of them) to numpy arrays (float32 for half types)."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return tuple(to_numpy(v) for v in value)
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu()
        if value.dtype.is_floating_point and value.dtype.itemsize < 4:
            value = value.float()
        return value.numpy()
    array = np.asarray(value)
    if array.dtype.kind == "V" or (array.dtype.kind == "f" and array.dtype.itemsize < 4) or \
            str(array.dtype) == "bfloat16":
        array = array.astype(np.float32)
    return array


def run(framework: str, model, inputs: Mapping[str, np.ndarray], **kwargs) -> dict[str, Any]:
    """Runs ``model`` on numpy ``inputs`` (ids, mask, labels...) in inference mode; numpy outputs.

    Args:
        framework: ``"pt"``, ``"tf"`` or ``"flax"``.
        model: A model of that framework.
        inputs: Numpy arrays keyed by call argument name.
        **kwargs: Other call arguments (``output_hidden_states=True``, ...).

    Returns:
        The output's non-None fields as numpy arrays (tuples for hidden states and attentions).
    """
    check_framework(framework)
    kwargs = {**kwargs, "return_dict": True}
    if framework == "pt":
        import torch

        device = next(model.parameters()).device
        tensors = {k: torch.from_numpy(np.asarray(v)).to(device) for k, v in inputs.items()}
        with torch.no_grad():
            out = model(**tensors, **kwargs)
    elif framework == "tf":
        out = model(dict(inputs), training=False, **kwargs)
    else:
        import jax.numpy as jnp

        out = model(**{k: jnp.asarray(v) for k, v in inputs.items()}, deterministic=True, **kwargs)
    return {k: to_numpy(v) for k, v in out.items()}
