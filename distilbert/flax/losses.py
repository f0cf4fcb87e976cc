"""The heads' losses as pure JAX functions: usable inside ``jax.jit``, ``jax.grad`` and ``vmap``.

Each is the loss that :mod:`distilbert.common.losses` defines and that the PyTorch reference
computes; logits are upcast to float32 first, so bfloat16 models get float32 losses. Labels equal
to ``-100`` (:data:`IGNORE_INDEX`) are ignored by the cross-entropies, and the mean is taken over the
remaining positions; when every label is ignored the loss is ``nan`` (0 / 0), as in PyTorch.

Example:
    >>> import jax.numpy as jnp
    >>> from distilbert.flax.losses import cross_entropy
    >>> float(cross_entropy(jnp.zeros((2, 4)), jnp.array([1, -100])))  # log(4)
    1.3862943649291992
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from distilbert.common.losses import IGNORE_INDEX, problem_type_for

__all__ = [
    "IGNORE_INDEX",
    "cross_entropy",
    "masked_lm_loss",
    "token_classification_loss",
    "sequence_classification_loss",
    "multiple_choice_loss",
    "question_answering_loss",
]


def cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = IGNORE_INDEX) -> jax.Array:
    """Mean softmax cross-entropy over the labels that are not ``ignore_index``.

    Args:
        logits: ``(..., num_classes)`` scores.
        labels: ``(...)`` integer class ids; ``ignore_index`` marks positions left out.
        ignore_index: The label value to ignore.

    Returns:
        A float32 scalar.
    """
    logits = logits.astype(jnp.float32).reshape(-1, logits.shape[-1])  # (N, C)
    labels = labels.reshape(-1)  # (N,)
    keep = labels != ignore_index  # (N,)
    safe = jnp.where(keep, labels, 0).astype(jnp.int32)
    log_probs = jax.nn.log_softmax(logits, axis=-1)  # (N, C)
    nll = -jnp.take_along_axis(log_probs, safe[:, None], axis=-1)[:, 0]  # (N,)
    return jnp.sum(jnp.where(keep, nll, 0.0)) / jnp.sum(keep)


def masked_lm_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of ``(B, T, V)`` logits against ``(B, T)`` labels, ``-100`` ignored."""
    return cross_entropy(logits, labels)


def token_classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of ``(B, T, num_labels)`` logits against ``(B, T)`` labels, ``-100`` ignored."""
    return cross_entropy(logits, labels)


def multiple_choice_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy over the choices: ``(B, C)`` logits, ``(B,)`` labels."""
    return cross_entropy(logits, labels)


def sequence_classification_loss(logits: jax.Array, labels: jax.Array, problem_type: str | None = None) -> jax.Array:
    """The sequence-classification loss for ``problem_type``, inferred as the reference does if None.

    Args:
        logits: ``(B, num_labels)``.
        labels: ``(B,)`` integer classes (single label), ``(B, num_labels)`` floats in [0, 1]
            (multi label), or ``(B,)`` / ``(B, num_labels)`` targets (regression).
        problem_type: ``"regression"``, ``"single_label_classification"``,
            ``"multi_label_classification"`` or None (chosen from ``num_labels`` and the labels'
            dtype, which are static under ``jit``).
    """
    num_labels = logits.shape[-1]
    problem_type = problem_type_for(problem_type, num_labels, jnp.issubdtype(labels.dtype, jnp.integer))
    logits32 = logits.astype(jnp.float32)
    if problem_type == "regression":
        target = labels.astype(jnp.float32)
        if num_labels == 1:  # the reference squeezes both sides
            logits32, target = jnp.squeeze(logits32), jnp.squeeze(target)
        return jnp.mean((logits32 - target) ** 2)
    if problem_type == "single_label_classification":
        return cross_entropy(logits32, labels)
    if problem_type == "multi_label_classification":
        target = labels.astype(jnp.float32)
        # log(sigmoid(x)) and log(1 - sigmoid(x)) in their stable forms.
        per_item = jnp.maximum(logits32, 0) - logits32 * target + jnp.log1p(jnp.exp(-jnp.abs(logits32)))
        return jnp.mean(per_item)
    raise ValueError(f"unknown problem_type {problem_type!r}")


def question_answering_loss(
    start_logits: jax.Array, end_logits: jax.Array, start_positions: jax.Array, end_positions: jax.Array
) -> jax.Array:
    """Mean of the start and end cross-entropies, as the reference computes it.

    Positions are clamped to ``[0, T]``; the value ``T`` (an answer outside the sequence) is ignored.

    Args:
        start_logits / end_logits: ``(B, T)``.
        start_positions / end_positions: ``(B,)`` integer token positions.
    """
    seq_len = start_logits.shape[-1]
    start = jnp.clip(start_positions.reshape(-1), 0, seq_len)
    end = jnp.clip(end_positions.reshape(-1), 0, seq_len)
    start_loss = cross_entropy(start_logits, start, ignore_index=seq_len)
    end_loss = cross_entropy(end_logits, end, ignore_index=seq_len)
    return (start_loss + end_loss) / 2
