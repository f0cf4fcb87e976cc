"""Keras ``compile``/``fit``/``evaluate``/``predict`` support for the DistilBERT models.

Two ways to train, as with the reference TF classes:

- ``model.compile(optimizer)`` with no loss: the labels travel in the input dict (``labels``, or
  ``start_positions``/``end_positions``) and the model's own loss is minimised. Labels given as
  ``y`` (``fit(x, y)``) are moved into the input dict.
- ``model.compile(optimizer, loss=...)`` and ``fit(x, y)``: the standard Keras way; the compiled
  loss and metrics see the logits (``(start_logits, end_logits)`` for question answering, the last
  hidden state for the bare model).

``predict`` returns a dict of numpy arrays (the output fields except the loss).

For a custom loop, the pieces named and shaped as in the PyTorch and Flax backends:
:func:`linear_schedule` (linear warm-up, then linear decay to 0), :func:`adamw_with_warmup` (AdamW on
it, with global-norm clipping and weight decay on kernels and embeddings but not on biases and
LayerNorms; also the optimizer to ``compile`` with), :func:`loss_fn`, :func:`train_step` (with gradient
accumulation over ``accum_steps`` equal micro-batches) and :func:`eval_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
import tensorflow as tf

from distilbert.common.outputs import ModelOutput

__all__ = [
    "TrainingMixin",
    "LinearSchedule",
    "linear_schedule",
    "adamw_with_warmup",
    "loss_fn",
    "train_step",
    "eval_step",
]


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
                raise ValueError(
                    f"y has keys {unknown}; {type(self).__name__} takes labels named {list(self.label_names)}"
                )
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
            raise ValueError(
                f"no loss to train on: put {names} in the input dict (or pass y), or compile(loss=...) and fit(x, y)"
            )
        for extra in self.losses:  # regularisers, add_loss
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if y is None and isinstance(x, Mapping):
            found = [x.get(name) for name in self.label_names]
            if all(v is not None for v in found):
                y = found[0] if len(found) == 1 else tuple(found)
        return super().compute_metrics(x, y, self._prediction(y_pred), sample_weight)


@keras.saving.register_keras_serializable(package="distilbert")
class LinearSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``0 -> learning_rate`` linearly over ``warmup_steps``, then linearly down to 0 at ``total_steps``."""

    def __init__(self, learning_rate: float, total_steps: int, warmup_steps: int = 0):
        self.learning_rate, self.total_steps = float(learning_rate), int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr, warm = self.learning_rate, float(self.warmup_steps)
        rising = lr * step / max(warm, 1.0)
        falling = lr * tf.maximum(0.0, 1.0 - (step - warm) / max(self.total_steps - warm, 1.0))
        return tf.where(step < warm, rising, falling)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def linear_schedule(learning_rate: float, total_steps: int, warmup_steps: int = 0) -> LinearSchedule:
    """The Keras learning-rate schedule of linear warm-up then linear decay (see :class:`LinearSchedule`)."""
    return LinearSchedule(learning_rate, total_steps, warmup_steps)


def adamw_with_warmup(
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.01,
    max_grad_norm: float | None = 1.0,
) -> keras.optimizers.AdamW:
    """Keras AdamW on :func:`linear_schedule`, clipping the global gradient norm to ``max_grad_norm``.

    Weight decay applies to kernels and embeddings, not to biases and LayerNorm ``gamma``/``beta``.
    """
    optimizer = keras.optimizers.AdamW(
        learning_rate=linear_schedule(learning_rate, total_steps, warmup_steps),
        weight_decay=weight_decay,
        epsilon=1e-8,
        global_clipnorm=max_grad_norm or None,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def loss_fn(model, batch: Mapping, training: bool = True):
    """The model's loss on ``batch`` (model inputs plus ``labels`` or QA positions), dropout on."""
    out = model(dict(batch), training=training)
    if out.loss is None:
        raise ValueError("the batch has no labels (or start_positions/end_positions): no loss to train on")
    return out.loss


def train_step(
    model, optimizer: keras.optimizers.Optimizer, batch: Mapping, accum_steps: int = 1, loss: Callable = loss_fn
):
    """One optimiser update on ``batch`` (eager ``tf.GradientTape``); gradients averaged over ``accum_steps``.

    Returns:
        The loss before the update (mean over micro-batches).
    """
    batch = {k: tf.convert_to_tensor(v) for k, v in batch.items()}
    for name, x in batch.items():
        if x.shape[0] % accum_steps:
            raise ValueError(f"batch axis of {name!r} ({x.shape[0]}) is not divisible by accum_steps={accum_steps}")
    variables = model.trainable_variables
    total, grads = tf.zeros((), tf.float32), [None] * len(variables)
    for i in range(accum_steps):
        size = next(iter(batch.values())).shape[0] // accum_steps
        mb = {k: v[i * size : (i + 1) * size] for k, v in batch.items()}
        with tf.GradientTape() as tape:
            value = tf.cast(loss(model, mb), tf.float32) / accum_steps
        for j, g in enumerate(tape.gradient(value, variables)):
            if g is not None:
                g = tf.convert_to_tensor(g)  # embedding gradients come as IndexedSlices
                grads[j] = g if grads[j] is None else grads[j] + g
        total += value
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
    return total


def eval_step(model, batch: Mapping):
    """The model's output on ``batch`` with dropout off (loss included when the batch has labels)."""
    return model(dict(batch), training=False)
