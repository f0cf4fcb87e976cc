"""The base class of the Keras DistilBERT models: config, Keras serialisation, loading, saving and training.

Weights move between a model and a canonical numpy state (HF PyTorch names and layout) through one
pair of functions, :func:`canonical_state` and :func:`load_canonical_state`, via the weight table's
``keras`` column; :func:`variable_at` resolves a column entry by walking attributes (digits index into
the layer list). Every load, save and conversion path goes through them.

The output dataclasses are made nestable here: ``tf.function`` only returns structures ``tf.nest``
understands, and Keras (``fit``'s symbolic build, ``Layer.__call__``) walks outputs with its own
``keras.tree``. Each ``TF...Output`` class is a subclass of the matching :mod:`distilbert.common.outputs`
dataclass (same fields, ``isinstance`` holds) that both understand, so ``model(x).logits`` works
eagerly, inside ``tf.function`` and under XLA alike.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping

import keras
import numpy as np
import optree
import tensorflow as tf

from distilbert.common import outputs as common
from distilbert.common.checkpoint import load_state, save_state, source_framework
from distilbert.common.config import DistilBertConfig
from distilbert.common.files import CheckpointError
from distilbert.common.names import (
    WeightMismatchError,
    check_state,
    from_native,
    task_from_architectures,
    to_native,
    weight_table,
)
from distilbert.common.validation import as_config
from distilbert.tf.training import TrainingMixin


# ------------------------------------------------------------------------------ output classes
class _Nestable:
    """Flattening protocols: ``tf.nest`` (``__tf_flatten__``) and optree (``tree_flatten``)."""

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))

    def __tf_flatten__(self):
        names = self._names()
        return names, tuple(getattr(self, n) for n in names)

    @classmethod
    def __tf_unflatten__(cls, names, values):
        return cls(**dict(zip(names, values)))

    def tree_flatten(self):
        names = self._names()
        return tuple(getattr(self, n) for n in names), names, names

    @classmethod
    def tree_unflatten(cls, names, values):
        return cls(**dict(zip(names, values)))


def _register_with_keras_tree(cls) -> None:
    # With the TensorFlow backend keras.tree walks structures with optree (a Keras dependency) in its
    # "keras" namespace; keras.tree has no public registration hook, so register there as Keras registers
    # its own containers.
    try:
        optree.register_pytree_node_class(cls, namespace="keras")
    except ValueError:
        pass  # already registered (module reloaded)


def _nestable(base):
    cls = type(
        "TF" + base.__name__,
        (_Nestable, base),
        {
            "__doc__": f"{base.__name__} (fields as the reference) that tf.function and Keras can return.",
            "__module__": __name__,
        },
    )
    _register_with_keras_tree(cls)
    return cls


TFBaseModelOutput = _nestable(common.BaseModelOutput)
TFMaskedLMOutput = _nestable(common.MaskedLMOutput)
TFSequenceClassifierOutput = _nestable(common.SequenceClassifierOutput)
TFMultipleChoiceModelOutput = _nestable(common.MultipleChoiceModelOutput)
TFTokenClassifierOutput = _nestable(common.TokenClassifierOutput)
TFQuestionAnsweringModelOutput = _nestable(common.QuestionAnsweringModelOutput)


# ------------------------------------------------------------------------------- canonical state
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
    native = {
        spec.names["keras"]: keras.ops.convert_to_numpy(variable_at(model, spec.names["keras"]))
        for spec in table
        if spec.names["keras"] is not None
    }
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
    mismatched = [
        (name, np.shape(array), tuple(targets[name].shape))
        for name, array in native.items()
        if tuple(np.shape(array)) != tuple(targets[name].shape)
    ]
    if mismatched:
        raise WeightMismatchError(mismatched=mismatched, where="state")
    for name, array in native.items():
        targets[name].assign(tf.cast(tf.convert_to_tensor(np.asarray(array)), targets[name].dtype))


# ------------------------------------------------------------------------------- Keras 3 files
def load_keras_file(path: str | os.PathLike, config_dir: str | os.PathLike | None = None):
    """A model from a Keras 3 file: ``model.keras`` (holds its config), or ``model.weights.h5`` built from
    the ``config.json`` in ``config_dir`` (default: the file's directory), whose ``architectures`` name the head.

    Raises:
        CheckpointError: the file is missing or Keras cannot read it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no Keras file at {path!r}")
    if path.endswith(".keras"):
        import distilbert.tf.modeling  # noqa: F401  (registers the classes with Keras)

        try:
            return keras.saving.load_model(path)
        except Exception as exc:
            raise CheckpointError(f"cannot read Keras file {path!r}: {exc}") from None
    from distilbert.tf.modeling import TF_CLASSES

    config_dir = os.path.dirname(os.path.abspath(path)) if config_dir is None else os.fspath(config_dir)
    config = DistilBertConfig.from_pretrained(config_dir)
    task = task_from_architectures(config.architectures)
    if task is None:
        raise ValueError(
            f"config.json in {config_dir!r} names no DistilBERT class in 'architectures'; "
            f"cannot tell which head {os.path.basename(path)} holds"
        )
    model = TF_CLASSES[task](config)
    try:
        model.load_weights(path)
    except Exception as exc:
        raise CheckpointError(f"cannot read Keras weights {path!r}: {exc}") from None
    return model


def save_keras_file(model, path: str | os.PathLike) -> None:
    """Writes ``model`` as Keras 3 writes it: the whole model for ``*.keras``, else the weights (``*.weights.h5``)."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        model.save(path)
    else:
        model.save_weights(path)


class TFDistilBertPreTrainedModel(TrainingMixin, keras.Model):
    """Shared base: config handling, Keras serialisation, loading/saving and ``fit`` support.

    Args:
        config: A :class:`~distilbert.DistilBertConfig`, its dict, or a transformers config.
        **kwargs: Keras ``Model`` arguments (``name``, ``dtype`` policy such as ``"mixed_bfloat16"``).
    """

    task = "base"
    label_names = ("labels",)
    # True: the encoder runs on the real tokens of a padded batch only (TFDistilBertModel.call's
    # ``skip_padding``); the outputs at padded positions are then 0. A head hands its setting to its encoder.
    skip_padding = False

    def __init__(self, config: DistilBertConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = as_config(config)
        # Inputs are converted by `unpack_inputs`; Keras must not cast float labels to float16.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(DistilBertConfig.from_dict(config.pop("config")), **config)

    def _flags(self, output_attentions, output_hidden_states, return_dict) -> tuple[bool, bool, bool]:
        """The call's output flags, unset ones from the config (as the reference)."""
        return common.output_flags(self.config, output_attentions, output_hidden_states, return_dict)

    def _output(self, cls, return_dict, **fields):
        result = cls(**fields)
        return result if self._flags(None, None, return_dict)[2] else result.to_tuple()

    def canonical_state(self) -> dict[str, np.ndarray]:
        """See :func:`canonical_state`."""
        return canonical_state(self)

    def load_canonical_state(self, state: Mapping[str, np.ndarray], skip: Iterable[str] = ()) -> None:
        """See :func:`load_canonical_state`."""
        load_canonical_state(self, state, skip)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *,
        config: DistilBertConfig | None = None,
        weight_format: str | None = None,
        ignore_mismatched_sizes: bool = False,
        dtype=None,
        from_pt: bool = False,
        from_tf: bool = False,
        from_flax: bool = False,
        output_loading_info: bool = False,
        **overrides,
    ):
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
        state, report = load_state(
            path,
            config,
            cls.task,
            framework="tf",
            weight_format=weight_format,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            source=source_framework(from_pt, from_tf, from_flax),
        )
        load_canonical_state(model, state, skip=report.new)
        return (model, report) if output_loading_info else model

    def save_pretrained(
        self,
        save_directory,
        weight_format: str | None = None,
        safe_serialization: bool | None = None,
        max_shard_size: int | str | None = None,
    ) -> str:
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
        return save_state(
            save_directory,
            canonical_state(self),
            self.config,
            self.task,
            framework="tf",
            weight_format=weight_format,
            max_shard_size=max_shard_size,
        )

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
            input_signature = [
                tf.TensorSpec(shape, tf.int32, name="input_ids"),
                tf.TensorSpec(shape, tf.int32, name="attention_mask"),
            ]

        def serve(input_ids, attention_mask):
            outputs = self(input_ids, attention_mask=attention_mask, training=False)
            return dict(outputs.items())

        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint("serve", serve, input_signature=input_signature)
        archive.write_out(os.fspath(filepath), verbose=bool(verbose))
