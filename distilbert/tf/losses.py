"""The heads' losses in TensorFlow, as :mod:`distilbert.common.losses` defines them.

They follow the reference PyTorch classes (scalar means, ``-100`` ignored, ``problem_type``),
not the reference TF classes, which return unreduced per-example losses, have no regression or
multi-label loss and fail on out-of-range question-answering positions. Logits are cast to float32
first, so losses are float32 under mixed precision. Labels are checked before, by
:mod:`distilbert.common.validation` (dtypes, shapes, ranges), as in the other backends.
"""

from __future__ import annotations

import tensorflow as tf

from distilbert.common.losses import IGNORE_INDEX, problem_type_for


def cross_entropy(logits, labels, ignore_index=IGNORE_INDEX):
    """Mean cross-entropy over the labels that are not ``ignore_index`` (NaN if there are none).

    Args:
        logits: ``(N, C)``.
        labels: ``(N,)`` integers.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    keep = tf.not_equal(labels, tf.cast(ignore_index, tf.int32))  # (N,)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(keep, labels, tf.zeros_like(labels)), logits=logits
    )  # (N,)
    per_example = tf.where(keep, per_example, tf.zeros_like(per_example))
    return tf.reduce_sum(per_example) / tf.reduce_sum(tf.cast(keep, tf.float32))


def _token_loss(logits, labels):
    """Cross-entropy of ``(B, T, C)`` logits against ``(B, T)`` labels, ``-100`` ignored."""
    n_classes = tf.shape(logits)[-1]
    return cross_entropy(tf.reshape(logits, (-1, n_classes)), tf.reshape(labels, (-1,)))


def masked_lm_loss(logits, labels):
    """Cross-entropy of ``(B, T, V)`` logits against ``(B, T)`` labels, ``-100`` ignored."""
    return _token_loss(logits, labels)


def token_classification_loss(logits, labels):
    """Cross-entropy of ``(B, T, num_labels)`` logits against ``(B, T)`` labels, ``-100`` ignored."""
    return _token_loss(logits, labels)


def sequence_classification_loss(logits, labels, problem_type=None):
    """The loss for ``problem_type`` (inferred as the reference does if None); logits ``(B, num_labels)``."""
    num_labels = logits.shape[-1]
    problem_type = problem_type_for(problem_type, num_labels, labels.dtype.is_integer)
    logits = tf.cast(logits, tf.float32)
    if problem_type == "regression":
        labels = tf.cast(labels, tf.float32)
        if num_labels == 1:
            logits, labels = tf.squeeze(logits), tf.squeeze(labels)
        return tf.reduce_mean(tf.square(logits - labels))
    if problem_type == "single_label_classification":
        return cross_entropy(tf.reshape(logits, (-1, num_labels)), tf.reshape(labels, (-1,)))
    labels = tf.cast(labels, tf.float32)
    loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(loss)


def multiple_choice_loss(logits, labels):
    """Cross-entropy over the choices: logits ``(B, C)``, labels ``(B,)``."""
    return cross_entropy(logits, tf.reshape(labels, (-1,)))


def question_answering_loss(start_logits, end_logits, start_positions, end_positions):
    """Mean of start and end cross-entropies; positions clamped to ``[0, T]``, ``T`` ignored."""
    seq_len = tf.shape(start_logits)[1]

    def prepare(positions):
        positions = tf.cast(positions, tf.int32)
        if positions.shape.rank is not None and positions.shape.rank > 1:
            positions = tf.squeeze(positions, -1)
        return tf.clip_by_value(positions, 0, seq_len)

    start = cross_entropy(start_logits, prepare(start_positions), ignore_index=seq_len)
    end = cross_entropy(end_logits, prepare(end_positions), ignore_index=seq_len)
    return (start + end) / 2
