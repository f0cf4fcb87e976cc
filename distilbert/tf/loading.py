"""Weights in and out of the Keras models: HF checkpoints, canonical states, SavedModel export.

One pair of functions, :func:`canonical_state` and :func:`load_canonical_state`, moves weights
between a model and a canonical numpy state (HF PyTorch names and layout), through the weight
table's ``keras`` column; :func:`variable_at` resolves a column entry by walking attributes
(digits index into the layer list). Every load, save and conversion path goes through them.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

import keras
import numpy as np
import tensorflow as tf

from distilbert.common.checkpoint import load_state, save_state, source_framework
from distilbert.common.config import DistilBertConfig
from distilbert.common.validation import as_config
from distilbert.common.names import WeightMismatchError, check_state, from_native, to_native, weight_table


def variable_at(model, path: str):
    """The ``keras.Variable`` at a table path such as ``distilbert/transformer/layer/0/ffn/lin1/kernel``."""
    obj = model
    for part in path.split("/"):
        try:
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        except (AttributeError, IndexError, TypeError):
            raise KeyError(f"{type(model).__name__} has no weight {path!r} (stuck at {part!r})") from None
    if not isinstance(obj, keras.Variable):
        raise KeyError(f"{path!r} names a {type(obj).__name__}, not a variable")
    return obj


def canonical_state(model) -> dict[str, np.ndarray]:
    """The model's weights as a canonical numpy state (tied rows filled in)."""
    table = weight_table(model.config, model.task)
    native = {spec.names["keras"]: keras.ops.convert_to_numpy(variable_at(model, spec.names["keras"]))
              for spec in table if spec.names["keras"] is not None}
    return from_native(native, "keras", table, where=type(model).__name__)


def load_canonical_state(model, state: Mapping[str, np.ndarray], skip: Iterable[str] = ()) -> None:
    """Assigns a canonical state to the model's variables, strictly.

    Args:
        state: Canonical names to arrays; every row of the model's table except ``skip``.
        skip: Canonical names to leave at their current value (a new head).
    """
    skip = set(skip)
    state = {name: np.asarray(array) for name, array in state.items()}
    full = weight_table(model.config, model.task)
    check_state({name: array.shape for name, array in state.items()}, full, skip)
    table = [spec for spec in full if spec.name not in skip]
    native = to_native(state, "keras", table)
    targets = {name: variable_at(model, name) for name in native}
    mismatched = [(name, np.shape(array), tuple(targets[name].shape)) for name, array in native.items()
                  if tuple(np.shape(array)) != tuple(targets[name].shape)]
    if mismatched:
        raise WeightMismatchError(mismatched=mismatched, where="state")
    for name, array in native.items():
        targets[name].assign(tf.cast(tf.convert_to_tensor(np.asarray(array)), targets[name].dtype))


class LoadingMixin:
    """``from_pretrained``, ``save_pretrained`` and ``export`` for the DistilBERT Keras models."""

    def canonical_state(self) -> dict[str, np.ndarray]:
        """See :func:`canonical_state`."""
        return canonical_state(self)

    def load_canonical_state(self, state: Mapping[str, np.ndarray], skip: Iterable[str] = ()) -> None:
        """See :func:`load_canonical_state`."""
        load_canonical_state(self, state, skip)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, config: DistilBertConfig | None = None,
                        weight_format: str | None = None, ignore_mismatched_sizes: bool = False,
                        dtype=None, from_pt: bool = False, from_tf: bool = False, from_flax: bool = False,
                        output_loading_info: bool = False, **overrides):
        """Builds the model from a checkpoint directory or hub id, in any format the package reads.

        Args:
            pretrained_model_name_or_path: Local directory or hub id.
            config: Use this config instead of the checkpoint's ``config.json``.
            weight_format: Read only this format (``"tf"``, ``"safetensors"``, ``"pytorch"``, ``"flax"``, ...).
            ignore_mismatched_sizes: Re-initialise head tensors whose shape differs (e.g. new ``num_labels``).
            dtype: Keras dtype policy (``"float32"``, ``"mixed_bfloat16"``, ``"mixed_float16"``, ...).
            from_pt / from_tf / from_flax: Read that framework's weight file first when the directory has
                several (every format loads without them; none reaches ``config.json``).
            output_loading_info: Also return the :class:`~distilbert.common.checkpoint.LoadReport` (file and
                format read, tensors newly initialised or left unused; indexable as the reference's dict).
            **overrides: Config fields to change (``num_labels``, ``id2label``, dropouts, ...).
        """
        path = os.fspath(pretrained_model_name_or_path)
        if config is None:
            config = DistilBertConfig.from_pretrained(path, **overrides)
        else:
            config = as_config(config)
            config = config.replace(**overrides) if overrides else config
        model = cls(config, **({"dtype": dtype} if dtype is not None else {}))
        state, report = load_state(path, config, cls.task, framework="tf", weight_format=weight_format,
                                   ignore_mismatched_sizes=ignore_mismatched_sizes,
                                   source=source_framework(from_pt, from_tf, from_flax))
        load_canonical_state(model, state, skip=report.new)
        return (model, report) if output_loading_info else model

    def save_pretrained(self, save_directory, weight_format: str | None = None,
                        safe_serialization: bool | None = None, max_shard_size: int | str | None = None) -> str:
        """Writes ``config.json`` and the weights in the Hugging Face layout; returns the weight file.

        Args:
            weight_format: ``"tf"`` (``tf_model.h5``, the default, as the reference TF classes),
                ``"safetensors"`` (``model.safetensors``) or ``"flax"``. A masked LM with an untied
                projector defaults to safetensors, since ``tf_model.h5`` cannot hold it.
            safe_serialization: ``True`` is the reference's way of asking for safetensors.
            max_shard_size: Split the weights into shards of at most this size (bytes or ``"200MB"``), with
                an index, as the reference TF classes do.
        """
        # tf_model.h5 has no place for an untied LM projector (save_state refuses to drop it): default around it.
        untied = self.task == "masked_lm" and not self.config.tie_word_embeddings
        if weight_format is None:
            weight_format = "safetensors" if safe_serialization or untied else "tf"
        return save_state(save_directory, canonical_state(self), self.config, self.task, framework="tf",
                          weight_format=weight_format, max_shard_size=max_shard_size)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Writes a SavedModel whose ``serving_default`` signature takes ``input_ids`` and ``attention_mask``.

        The signature returns a dict of the output fields (``logits``, ...). Reload it with
        ``tf.saved_model.load(filepath).signatures["serving_default"](input_ids=..., attention_mask=...)``.

        Args:
            filepath: Target directory.
            format: Only ``"tf_saved_model"``.
            input_signature: Two ``tf.TensorSpec`` (ids, mask); default int32 ``(None, None)``
                (``(None, None, None)`` for multiple choice).
        """
        if format != "tf_saved_model":
            raise ValueError(f"export format {format!r} is not supported; use format='tf_saved_model'")
        if kwargs:
            raise TypeError(f"unexpected export arguments: {sorted(kwargs)}")
        if input_signature is None:
            shape = (None,) * (3 if self.task == "multiple_choice" else 2)
            input_signature = [tf.TensorSpec(shape, tf.int32, name="input_ids"),
                               tf.TensorSpec(shape, tf.int32, name="attention_mask")]

        def serve(input_ids, attention_mask):
            outputs = self(input_ids, attention_mask=attention_mask, training=False)
            return dict(outputs.items())

        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint("serve", serve, input_signature=input_signature)
        archive.write_out(os.fspath(filepath), verbose=bool(verbose))
