"""The multiple-choice pipeline: how well each of several endings or answers fits a prompt."""

from __future__ import annotations

import numpy as np

from distilbert.pipelines.base import Pipeline, softmax


class MultipleChoicePipeline(Pipeline):
    """Scores the choices of multiple-choice questions with a multiple-choice checkpoint.

    transformers has no such pipeline; this one encodes the prompt with each choice as a pair
    (``[CLS] prompt [SEP] choice [SEP]``), runs all choices of a question as one ``(1, C, T)`` input
    and takes the softmax over the choices' logits. Each question gives a list of ``{"choice",
    "index", "score"}``, best first (``index`` is the choice's position in the input).

    Call as ``mc(prompt, choices=[...])``, or with ``{"question": ..., "choices": [...]}`` or a list
    of such dicts (which gives a list of results).

    Call keyword arguments:
        choices: The choices, when the first argument is the prompt.
        truncation: Cut prompts too long for the model instead of raising.

    Example:
        >>> mc = pipeline("multiple-choice", model="my-swag-checkpoint")  # doctest: +SKIP
        >>> best = mc("The glass fell off the table and", choices=["shattered.", "sang."])[0]  # doctest: +SKIP
        >>> best["choice"]  # doctest: +SKIP
        'shattered.'
    """

    name = "multiple-choice"
    model_task = "multiple_choice"
    too_long_advice = "pass truncation=True to cut the prompt"

    def _call(self, inputs, *, choices=None, truncation: bool = False):
        if isinstance(inputs, str):
            single, items = True, [{"question": inputs, "choices": choices}]
        elif choices is not None:
            raise TypeError("choices= goes with a prompt string; a dict input carries its own 'choices'")
        else:
            single = isinstance(inputs, dict)
            items = [inputs] if single else inputs
            if not isinstance(items, (list, tuple)) or not items or not all(isinstance(i, dict) for i in items):
                raise TypeError(
                    "inputs must be a prompt with choices=[...], a {'question', 'choices'} dict, "
                    "or a non-empty list of such dicts"
                )
        rows = [self._encode(item, truncation) for item in items]
        results = []
        for item, out in zip(items, self.run(rows)):
            scores = softmax(out["logits"])  # (C,)
            order = np.argsort(-scores, kind="stable")
            results.append([{"choice": item["choices"][i], "index": int(i), "score": float(scores[i])} for i in order])
        return results[0] if single else results

    def _encode(self, item: dict, truncation: bool) -> dict[str, np.ndarray]:
        question, choices = item.get("question"), item.get("choices")
        if not isinstance(question, str):
            raise TypeError(f"the question (prompt) must be a str, got {question!r:.80}")
        if not isinstance(choices, (list, tuple)) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise TypeError(f"choices must be a list of at least two str, got {choices!r:.80}")
        kwargs = {"truncation": "only_first", "max_length": self.max_length} if truncation else {}
        encoding = self.tokenizer([question] * len(choices), list(choices), padding=True, **kwargs)
        return {key: np.asarray(encoding[key], np.int64) for key in ("input_ids", "attention_mask")}  # (C, T)
