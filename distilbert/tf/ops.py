"""Small pieces of the Keras model that Keras does not have as such, and the activation table."""

from __future__ import annotations

import keras
import tensorflow as tf

from distilbert.common.config import DistilBertConfig
from distilbert.common.names import sinusoidal_table


class SinusoidalPositions(keras.layers.Layer):
    """The ``sinusoidal_pos_embds`` position table: a variable that training never updates.

    A variable rather than a constant, so that a stored table (which need not be the formula's) loads
    as stored; the formula fills it only for a fresh model. It is created non-trainable, so even
    ``model.trainable = True`` leaves it out of ``trainable_weights`` (a frozen ``Embedding`` would be
    switched back on).
    """

    def __init__(self, n_pos: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.embeddings = self.add_weight(shape=(n_pos, dim), name="embeddings", initializer="zeros", trainable=False)
        self.embeddings.assign(sinusoidal_table(n_pos, dim))
        self.built = True

    def call(self, position_ids):
        return tf.cast(tf.gather(self.embeddings, position_ids), self.compute_dtype)  # (B|1, T, D)


class VocabProjector(keras.layers.Layer):
    """The MLM output layer: a bias, and a kernel of its own only when untied from the embeddings."""

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        if not config.tie_word_embeddings:
            self.kernel = self.add_weight(
                shape=(config.dim, config.vocab_size),
                name="kernel",
                initializer=keras.initializers.RandomNormal(stddev=config.initializer_range),
            )
        self.bias = self.add_weight(shape=(config.vocab_size,), name="bias", initializer="zeros")
        self.built = True

    def call(self, x, word_embeddings=None):
        if word_embeddings is not None:  # tied: logits against the (V, D) embedding table
            return tf.matmul(x, tf.cast(word_embeddings, x.dtype), transpose_b=True) + tf.cast(self.bias, x.dtype)
        return tf.matmul(x, tf.cast(self.kernel, x.dtype)) + tf.cast(self.bias, x.dtype)  # (B, T, V)


ACTIVATIONS = {"gelu": lambda x: tf.nn.gelu(x, approximate=False), "relu": tf.nn.relu}  # gelu: the exact erf form
