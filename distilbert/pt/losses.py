"""The heads' losses in PyTorch, as :mod:`distilbert.common.losses` defines them and the reference computes them.

Logits are upcast to float32 first, so half-precision models get float32 losses. Labels equal to
``-100`` (:data:`IGNORE_INDEX`) are ignored by the cross-entropies and the mean is taken over the
remaining positions (``nan`` when every label is ignored, as in the reference).

Example:
    >>> import torch
    >>> from distilbert.pt.losses import cross_entropy
    >>> round(float(cross_entropy(torch.zeros(2, 4), torch.tensor([1, -100]))), 4)  # log(4)
    1.3863
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean softmax cross-entropy of ``(..., C)`` logits against ``(...)`` class ids, ``ignore_index`` left out."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=ignore_index)


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``(B, T, V)`` logits against ``(B, T)`` labels, ``-100`` ignored."""
    return cross_entropy(logits, labels)


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``(B, T, num_labels)`` logits against ``(B, T)`` labels, ``-100`` ignored."""
    return cross_entropy(logits, labels)


def multiple_choice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the choices: ``(B, C)`` logits, ``(B,)`` labels."""
    return cross_entropy(logits, labels)


def sequence_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None = None
) -> torch.Tensor:
    """The sequence-classification loss for ``problem_type``, inferred as the reference does if None.

    Args:
        logits: ``(B, num_labels)``.
        labels: ``(B,)`` integer classes (single label), ``(B, num_labels)`` 0/1 targets (multi label),
            or ``(B,)`` / ``(B, num_labels)`` targets (regression).
        problem_type: ``"regression"``, ``"single_label_classification"``, ``"multi_label_classification"``
            or None (chosen from ``num_labels`` and the labels' dtype).
    """
    num_labels = logits.shape[-1]
    kind = problem_type_for(problem_type, num_labels, labels.dtype in (torch.long, torch.int))
    z = logits.float()
    if kind == "regression":
        y = labels.to(z.dtype)
        return F.mse_loss(z.squeeze(), y.squeeze()) if num_labels == 1 else F.mse_loss(z, y)
    if kind == "single_label_classification":
        return F.cross_entropy(z.view(-1, num_labels), labels.view(-1).long())  # int32 labels too
    return F.binary_cross_entropy_with_logits(z, labels.to(z.dtype))


def question_answering_loss(
    start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor, end_positions: torch.Tensor
) -> torch.Tensor:
    """Mean of the start and end cross-entropies; positions clamped to ``[0, T]``, ``T`` (outside) ignored.

    Args:
        start_logits / end_logits: ``(B, T)``.
        start_positions / end_positions: ``(B,)`` (or ``(B, 1)``) integer token positions.
    """
    T = start_logits.shape[1]
    s = (start_positions.squeeze(-1) if start_positions.dim() > 1 else start_positions).clamp(0, T)
    e = (end_positions.squeeze(-1) if end_positions.dim() > 1 else end_positions).clamp(0, T)
    return (cross_entropy(start_logits, s, ignore_index=T) + cross_entropy(end_logits, e, ignore_index=T)) / 2
