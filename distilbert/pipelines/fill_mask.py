"""The fill-mask pipeline: the most likely tokens for each ``[MASK]``."""

from __future__ import annotations

import logging

import numpy as np

from distilbert.pipelines.base import Pipeline, as_texts, rows_of, softmax

logger = logging.getLogger("distilbert")


class FillMaskPipeline(Pipeline):
    """Predicts the tokens hidden behind ``[MASK]``, as transformers' fill-mask pipeline does.

    Call with one text or a list of texts, each holding at least one ``[MASK]``. Each prediction is a
    dict: ``score`` (softmax probability), ``token`` (id), ``token_str`` (the token as text) and
    ``sequence`` (the text with the prediction filled in). A text with one mask gives a list of
    ``top_k`` predictions; a text with several masks gives one such list per mask (and its sequences
    keep the special tokens, so that the other masks stay visible). A list of texts gives a list of
    results.

    Call keyword arguments:
        top_k: How many predictions per mask (default 5).
        targets: Score only these words (a str or a list); a word outside the vocabulary is replaced
            by its first WordPiece token, with a warning.

    Example:
        >>> fill = pipeline("fill-mask", model="distilbert-base-uncased")  # doctest: +SKIP
        >>> fill("Paris is the [MASK] of France.", top_k=1)[0]["token_str"]  # doctest: +SKIP
        'capital'
    """

    name = "fill-mask"
    model_task = "masked_lm"
    too_long_advice = "shorten the text around the mask"

    def _call(self, inputs, *, top_k: int = 5, targets=None):
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        single = isinstance(inputs, str)
        texts = [inputs] if single else as_texts(inputs)
        target_ids = None if targets is None else self._target_ids(targets)
        rows = rows_of(self.tokenizer(texts))
        mask_id = self.tokenizer.mask_token_id
        for text, row in zip(texts, rows):
            if not (row["input_ids"] == mask_id).any():
                raise ValueError(
                    f"no {self.tokenizer.mask_token} in the input {text!r}; "
                    f"write {self.tokenizer.mask_token} where a word should be predicted"
                )
        results = [
            self._predict(row["input_ids"], out["logits"], top_k, target_ids) for row, out in zip(rows, self.run(rows))
        ]
        return results[0] if single else results

    def _predict(self, ids: np.ndarray, logits: np.ndarray, top_k: int, target_ids):
        positions = np.flatnonzero(ids == self.tokenizer.mask_token_id)
        one_mask = len(positions) == 1
        probs = softmax(logits[positions])  # (M, V)
        candidates = np.arange(probs.shape[-1]) if target_ids is None else target_ids
        probs = probs[:, candidates]  # (M, K)
        keep = ids != self.tokenizer.pad_token_id
        per_mask = []
        for position, p in zip(positions, probs):
            best = np.argsort(-p, kind="stable")[:top_k]
            predictions = []
            for k in best:
                token = int(candidates[k])
                filled = ids.copy()
                filled[position] = token
                predictions.append(
                    {
                        "score": float(p[k]),
                        "token": token,
                        "token_str": self.tokenizer.decode([token]),
                        "sequence": self.tokenizer.decode(filled[keep], skip_special_tokens=one_mask),
                    }
                )
            per_mask.append(predictions)
        return per_mask[0] if one_mask else per_mask

    def _target_ids(self, targets) -> np.ndarray:
        targets = [targets] if isinstance(targets, str) else list(targets)
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            if not isinstance(target, str):
                raise TypeError(f"targets must be words (str), got {type(target).__name__}")
            token_id = vocab.get(target)
            if token_id is None:
                pieces = self.tokenizer(target, add_special_tokens=False)["input_ids"]
                if not pieces:
                    logger.warning("target %r gives no token at all; ignoring it", target)
                    continue
                token_id = pieces[0]
                logger.warning(
                    "target %r is not in the vocabulary; scoring its first token %r instead",
                    target,
                    self.tokenizer.convert_ids_to_tokens(token_id),
                )
            if token_id not in ids:
                ids.append(token_id)
        if not ids:
            raise ValueError(f"none of the targets {targets} gives a token to score")
        return np.array(ids)
