"""What each head's loss is, decided once for all three backends (the arithmetic is per framework).

- masked LM and token classification: mean cross-entropy over positions whose label is not -100;
- sequence classification: by ``problem_type`` (see :func:`problem_type_for`): mean squared error
  (``regression``), cross-entropy (``single_label_classification``) or mean binary cross-entropy
  with logits (``multi_label_classification``);
- multiple choice: cross-entropy over the choices;
- question answering: the mean of start and end cross-entropies, positions clamped to
  ``[0, seq_len]`` and the out-of-range value ``seq_len`` ignored.
"""

from __future__ import annotations

IGNORE_INDEX = -100


def problem_type_for(problem_type: str | None, num_labels: int, labels_are_integers: bool) -> str:
    """The sequence-classification loss to use, as the reference infers it when it is unset."""
    if problem_type is not None:
        return problem_type
    if num_labels == 1:
        return "regression"
    return "single_label_classification" if labels_are_integers else "multi_label_classification"
