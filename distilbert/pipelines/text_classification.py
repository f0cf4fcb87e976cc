"""The text-classification pipeline: labels and scores of whole texts (or text pairs)."""

from __future__ import annotations

from typing import Any

import numpy as np

from distilbert.pipelines.base import Pipeline, rows_of, softmax

FUNCTIONS = ("softmax", "sigmoid", "none")
# top_k not given: the reference's older output shape (see the class docs).
_UNSET = object()


class TextClassificationPipeline(Pipeline):
    """Classifies texts with a sequence-classification checkpoint, as transformers'
    text-classification pipeline does.

    Inputs: a text, a pair ``{"text": ..., "text_pair": ...}``, or a list of either. Scores are the
    softmax of the logits for single-label models, the sigmoid for ``problem_type ==
    "multi_label_classification"`` or one label, and the raw logits for regression; labels come from
    ``config.id2label``.

    Without ``top_k`` each input gives its best ``{"label", "score"}`` (and one text gives a list of
    one such dict, as in transformers). With ``top_k=k`` each input gives its ``k`` best labels,
    best first, and ``top_k=None`` gives every label.

    Call keyword arguments:
        top_k: Labels per input (``None``: all).
        function_to_apply: ``"softmax"``, ``"sigmoid"`` or ``"none"`` instead of the default above.
        truncation: Cut texts longer than the model's positions instead of raising.

    Example:
        >>> classify = pipeline("text-classification", model="my-sst2-checkpoint")  # doctest: +SKIP
        >>> classify("What a lovely day!")  # doctest: +SKIP
        [{'label': 'POSITIVE', 'score': 0.998}]
    """

    name = "text-classification"
    model_task = "sequence_classification"
    too_long_advice = "pass truncation=True to cut it to the model's length"

    def _call(self, inputs, *, top_k=_UNSET, function_to_apply: str | None = None, truncation: bool = False):
        if function_to_apply is not None and function_to_apply not in FUNCTIONS:
            raise ValueError(f"function_to_apply must be one of {FUNCTIONS}, got {function_to_apply!r}")
        if (
            top_k is not _UNSET
            and top_k is not None
            and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1)
        ):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        single = isinstance(inputs, (str, dict))
        items = [inputs] if single else inputs
        if not isinstance(items, (list, tuple)) or not items:
            raise TypeError(
                "inputs must be a text, a {'text': ..., 'text_pair': ...} dict, or a non-empty list of them"
            )
        rows = [row for item in items for row in self._encode(item, truncation)]
        function = function_to_apply or self._default_function()
        results = [self._labels(out["logits"], function, top_k) for out in self.run(rows)]
        if single and top_k is _UNSET:
            return results  # transformers gives [best] for one text
        return results[0] if single else results

    def _encode(self, item, truncation: bool):
        kwargs = {"truncation": True, "max_length": self.max_length} if truncation else {}
        if isinstance(item, str):
            return rows_of(self.tokenizer([item], **kwargs))
        if isinstance(item, dict) and set(item) <= {"text", "text_pair"} and isinstance(item.get("text"), str):
            pair = item.get("text_pair")  # an empty second text is left out, as transformers does
            return rows_of(self.tokenizer([item["text"]], text_pair=[pair] if pair else None, **kwargs))
        raise TypeError(f"each input must be a str or a dict with 'text' (and 'text_pair'), got {item!r:.80}")

    def _default_function(self) -> str:
        problem = self.config.problem_type
        if problem == "regression":
            return "none"
        if problem == "multi_label_classification" or self.config.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def _labels(self, logits: np.ndarray, function: str, top_k):
        logits = np.asarray(logits, np.float64)
        if function == "softmax":
            scores = softmax(logits)
        elif function == "sigmoid":
            scores = 1.0 / (1.0 + np.exp(-logits))
        else:
            scores = logits
        labels: list[dict[str, Any]] = [
            {"label": self.config.id2label[i], "score": float(s)} for i, s in enumerate(scores)
        ]
        if top_k is _UNSET:
            return labels[int(np.argmax(scores))]
        labels.sort(key=lambda label: label["score"], reverse=True)
        return labels if top_k is None else labels[:top_k]
