"""``distilbert convert``: every checkpoint format to every other, Keras 3's own files included.

The Hugging Face formats convert in numpy (:mod:`distilbert.common.convert`, no ML framework); Keras 3's
``model.weights.h5`` and ``model.keras`` are read and written by Keras through the TensorFlow backend
(:func:`distilbert.tf.pretrained.load_keras_file` / :func:`~distilbert.tf.pretrained.save_keras_file`),
imported only when a Keras file is involved.

Example:
    >>> from distilbert.conversion import convert
    >>> convert("my-model", "my-model-keras", to="keras")  # doctest: +SKIP
"""

from __future__ import annotations

import os

from distilbert.common import convert as hf
from distilbert.common.convert import Conversion, ExternalFormat

KERAS_WEIGHTS, KERAS_FILE = "model.weights.h5", "model.keras"
__all__ = ["convert", "Conversion", "TARGETS", "KERAS", "keras_path", "load_keras_model"]


def keras_path(path: str | os.PathLike) -> str | None:
    """The Keras 3 file at ``path``: a ``.keras`` file itself, or in a directory ``model.weights.h5`` (first)
    or ``model.keras``; None if there is none."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return path if path.endswith(".keras") else None
    for name in (KERAS_WEIGHTS, KERAS_FILE):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    return None


def load_keras_model(directory: str, path: str):
    """Our TF backend's model from the Keras 3 file ``path`` (its config from ``directory``);
    returns ``(model, config, task)``."""
    from distilbert.tf.pretrained import load_keras_file

    model = load_keras_file(path, directory)
    return model, model.config, model.task


def _read_keras(directory: str, path: str):
    from distilbert.tf.pretrained import canonical_state

    model, config, task = load_keras_model(directory, path)
    return canonical_state(model), config, task


def _write_keras(state, config, task: str, directory: str, weight_format: str) -> None:
    from distilbert.tf.modeling import TF_CLASSES
    from distilbert.tf.pretrained import load_canonical_state, save_keras_file

    model = TF_CLASSES[task](config)
    load_canonical_state(model, state)
    save_keras_file(model, os.path.join(directory, KERAS_FILE if weight_format == "keras" else KERAS_WEIGHTS))


KERAS = ExternalFormat(
    name="keras",
    formats=("keras-weights", "keras"),
    find=keras_path,
    read=_read_keras,
    write=_write_keras,
    framework="tf",
)
# --to: target framework -> its formats (first = default).
TARGETS = {**hf.TARGETS, KERAS.name: KERAS.formats}


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str, **kwargs) -> Conversion:
    """Converts the checkpoint ``src`` (directory, hub id or ``.keras`` file) into the new directory ``dst``.

    As :func:`distilbert.common.convert.convert` (same arguments), with Keras 3 files as a source and
    ``to="keras"`` (``weight_format="keras-weights"``, the default, or ``"keras"``) as a target.
    """
    return hf.convert(src, dst, to, external=(KERAS,), **kwargs)
