"""The TensorFlow backend's helpers: layers Keras does not have as such, the activation table, and the
output dataclasses made nestable for ``tf.function``, XLA and Keras.

``tf.function`` only returns structures ``tf.nest`` understands, and Keras (``fit``'s symbolic
build, ``Layer.__call__``) walks outputs with its own ``keras.tree``. Each ``TF...Output`` class here
is a subclass of the matching :mod:`distilbert.common.outputs` dataclass (same fields, ``isinstance``
holds) that both understand, so ``model(x).logits`` works eagerly, inside ``tf.function`` and under XLA.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from distilbert.common import outputs as common
from distilbert.common.config import DistilBertConfig
from distilbert.common.names import sinusoidal_table


class SinusoidalPositions(keras.layers.Layer):
    """The fixed sin/cos position table: a constant, not a variable (nothing to train or save)."""

    def __init__(self, n_pos, dim, **kwargs):
        super().__init__(**kwargs)
        self.table = sinusoidal_table(n_pos, dim)  # (P, D) numpy

    def call(self, position_ids):
        return tf.gather(tf.constant(self.table, dtype=self.compute_dtype), position_ids)  # (B|1, T, D)


class VocabProjector(keras.layers.Layer):
    """The MLM output layer: a bias, and a kernel of its own only when untied from the embeddings."""

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        if not config.tie_word_embeddings:
            self.kernel = self.add_weight(shape=(config.dim, config.vocab_size), name="kernel",
                                          initializer=keras.initializers.RandomNormal(stddev=config.initializer_range))
        self.bias = self.add_weight(shape=(config.vocab_size,), name="bias", initializer="zeros")
        self.built = True

    def call(self, x, word_embeddings=None):
        if word_embeddings is not None:  # tied: logits against the (V, D) embedding table
            return tf.matmul(x, tf.cast(word_embeddings, x.dtype), transpose_b=True) + tf.cast(self.bias, x.dtype)
        return tf.matmul(x, tf.cast(self.kernel, x.dtype)) + tf.cast(self.bias, x.dtype)  # (B, T, V)


ACTIVATIONS = {"gelu": lambda x: tf.nn.gelu(x, approximate=False), "relu": tf.nn.relu}  # gelu: the exact erf form


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
    # keras.tree has no public registration hook yet; its implementation module has one.
    try:
        from keras.src.tree import tree_api

        tree_api.register_tree_node_class(cls)
    except (ImportError, AttributeError, ValueError):  # pragma: no cover - other Keras versions
        import optree

        try:
            optree.register_pytree_node_class(cls, namespace="keras")
        except ValueError:
            pass  # already registered (module reloaded)


def _nestable(base):
    cls = type("TF" + base.__name__, (_Nestable, base), {
        "__doc__": f"{base.__name__} (fields as the reference) that tf.function and Keras can return.",
        "__module__": __name__,
    })
    _register_with_keras_tree(cls)
    return cls


TFBaseModelOutput = _nestable(common.BaseModelOutput)
TFMaskedLMOutput = _nestable(common.MaskedLMOutput)
TFSequenceClassifierOutput = _nestable(common.SequenceClassifierOutput)
TFMultipleChoiceModelOutput = _nestable(common.MultipleChoiceModelOutput)
TFTokenClassifierOutput = _nestable(common.TokenClassifierOutput)
TFQuestionAnsweringModelOutput = _nestable(common.QuestionAnsweringModelOutput)
