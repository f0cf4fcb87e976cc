"""Small pieces of the Keras model that Keras does not have as such, and the activation table."""

from __future__ import annotations

import keras
import tensorflow as tf

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
