"""Keras ``compile``/``fit``/``evaluate``/``predict`` support for the DistilBERT models.

Two ways to train, as with the reference TF classes:

- ``model.compile(optimizer)`` with no loss: the labels travel in the input dict (``labels``, or
  ``start_positions``/``end_positions``) and the model's own loss is minimised. Labels given as
  ``y`` (``fit(x, y)``) are moved into the input dict.
- ``model.compile(optimizer, loss=...)`` and ``fit(x, y)``: the standard Keras way; the compiled
  loss and metrics see the logits (``(start_logits, end_logits)`` for question answering, the last
  hidden state for the bare model).

``predict`` returns a dict of numpy arrays (the output fields except the loss).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from distilbert.common.outputs import ModelOutput


class TrainingMixin:
    """Overrides of ``keras.Model``'s step methods; mixed into the DistilBERT models."""

    label_names: tuple[str, ...] = ("labels",)
    _compiled_with_loss = False  # set by compile: whether a Keras loss was given

    def compile(self, optimizer="rmsprop", loss=None, *args, **kwargs):
        """``keras.Model.compile``; without ``loss`` the model trains on its own loss (see the module docstring)."""
        self._compiled_with_loss = loss is not None
        super().compile(optimizer, loss, *args, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compile when loading a .keras file of a class that overrides it, unless the class
        # also overrides this (keras.Model.compile_from_config says so): the same steps, through our compile.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)  # the optimizer's variables, for its saved state

    def _keras_loss_compiled(self) -> bool:
        return self._compiled_with_loss

    def _labels_into_inputs(self, x, y):
        """Without a compiled loss, ``y`` holds the model's labels: move them into ``x``."""
        if y is None or self._keras_loss_compiled():
            return x, y
        x = dict(x) if isinstance(x, Mapping) else {"input_ids": x}
        if isinstance(y, Mapping):
            unknown = sorted(set(y) - set(self.label_names))
            if unknown:
                raise ValueError(f"y has keys {unknown}; {type(self).__name__} takes labels named "
                                 f"{list(self.label_names)}")
            x.update(y)
        elif len(self.label_names) == 2:
            if not isinstance(y, (tuple, list)) or len(y) != 2:
                raise ValueError("question answering needs y = (start_positions, end_positions) or a dict of them")
            x.update(zip(self.label_names, y))
        else:
            x["labels"] = y
        return x, None

    def _prediction(self, y_pred):
        """What a compiled Keras loss or metric compares with ``y``."""
        if not isinstance(y_pred, ModelOutput):
            return y_pred
        if self.task == "question_answering":
            return y_pred.start_logits, y_pred.end_logits
        if self.task == "base":
            return y_pred.last_hidden_state
        return y_pred.logits

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y = self._labels_into_inputs(x, y)
        return super().train_step((x, y, sample_weight))

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y = self._labels_into_inputs(x, y)
        return super().test_step((x, y, sample_weight))

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, Mapping):
            x = {k: v for k, v in x.items() if k not in self.label_names}
        outputs = self(x, training=False)
        return {k: v for k, v in outputs.items() if k != "loss"}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self._keras_loss_compiled() and y is not None:
            return super().compute_loss(x, y, self._prediction(y_pred), sample_weight, training=training)
        loss = getattr(y_pred, "loss", None)
        if loss is None:
            names = " and ".join(repr(n) for n in self.label_names)
            raise ValueError(f"no loss to train on: put {names} in the input dict (or pass y), "
                             "or compile(loss=...) and fit(x, y)")
        for extra in self.losses:  # regularisers, add_loss
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if y is None and isinstance(x, Mapping):
            found = [x.get(name) for name in self.label_names]
            if all(v is not None for v in found):
                y = found[0] if len(found) == 1 else tuple(found)
        return super().compute_metrics(x, y, self._prediction(y_pred), sample_weight)
