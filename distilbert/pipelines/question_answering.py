"""The question-answering pipeline: the best answer spans of a context, read in stride windows."""

from __future__ import annotations

import numpy as np

from distilbert.pipelines.base import Pipeline, rows_of, softmax

# Logit given to tokens that cannot be part of an answer (the question, separators, padding).
EXCLUDED = -10000.0


class QuestionAnsweringPipeline(Pipeline):
    """Extracts answers to questions from contexts with a question-answering checkpoint, as
    transformers' question-answering pipeline does (with a fast tokenizer).

    Call as ``qa(question=..., context=...)`` (strings, or a list of questions with one context or a
    list of contexts), or with a dict ``{"question": ..., "context": ...}`` or a list of such dicts.
    Each answer is a dict: ``answer`` (``context[start:end]``), ``start`` and ``end`` (character
    offsets in the context) and ``score``. One example gives one dict (or a list when ``top_k`` > 1
    finds several answers); several examples give a list.

    The question and the context are tokenized as a pair. A context too long for ``max_seq_len``
    tokens is read in windows that share ``doc_stride`` tokens. In each window, start and end
    probabilities are a softmax over the context tokens and ``[CLS]``; a span's score is the product
    of its start and end probabilities, spans longer than ``max_answer_len`` tokens are not
    considered, and the best ``2 * top_k + 10`` spans of each window (``top_k`` without
    ``align_to_words``) become candidates. Candidates with the same (case-insensitive) text add up
    their scores. With ``handle_impossible_answer`` the "no answer" candidate ``{"answer": "",
    "start": 0, "end": 0}`` competes with the score of ``[CLS]`` as start and end (its lowest over
    the windows).

    Call keyword arguments:
        question / context: The question(s) and context(s).
        top_k: How many answers per example (default 1).
        doc_stride: Tokens shared by consecutive windows (default ``min(max_seq_len // 2, 128)``).
        max_answer_len: Longest answer in tokens (default 15).
        max_seq_len: Tokens per window, question included (default ``min(model length, 384)``).
        handle_impossible_answer: Let "no answer" compete (default False).
        align_to_words: Widen spans to whole words (default True); else use the tokens' characters.

    Example:
        >>> qa = pipeline("question-answering", model="my-squad-checkpoint")  # doctest: +SKIP
        >>> context = "Most penguins live in the southern hemisphere."
        >>> qa(question="Where do penguins live?", context=context)  # doctest: +SKIP
        {'score': 0.71, 'start': 22, 'end': 45, 'answer': 'the southern hemisphere'}
    """

    name = "question-answering"
    model_task = "question_answering"
    outputs = ("start_logits", "end_logits")
    needs_offsets = True

    def _call(
        self,
        inputs=None,
        *,
        question=None,
        context=None,
        top_k: int = 1,
        doc_stride: int | None = None,
        max_answer_len: int = 15,
        max_seq_len: int | None = None,
        handle_impossible_answer: bool = False,
        align_to_words: bool = True,
    ):
        single, examples = _examples(inputs, question, context)
        for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        max_seq_len = min(self.max_length, 384) if max_seq_len is None else max_seq_len
        if not 4 <= max_seq_len <= self.config.max_position_embeddings:
            raise ValueError(
                f"max_seq_len must be in [4, {self.config.max_position_embeddings}] (the model's "
                f"positions), got {max_seq_len}"
            )
        doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
        if doc_stride > max_seq_len:
            raise ValueError(f"doc_stride ({doc_stride}) must not exceed max_seq_len ({max_seq_len})")
        encoding = self.tokenizer(
            [q for q, _ in examples],
            [c for _, c in examples],
            truncation="only_second",
            max_length=max_seq_len,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        owner = encoding["overflow_to_sample_mapping"]
        outputs = self.run(rows_of(encoding))
        candidates = top_k * 2 + 10 if align_to_words else top_k
        results = []
        for index, (_, text) in enumerate(examples):
            answers: list[dict] = []
            null_score = np.inf
            for row in (i for i, o in enumerate(owner) if o == index):
                spans, null = self._window(encoding, row, outputs[row], candidates, max_answer_len)
                null_score = min(null_score, null)
                for start, end, score in spans:
                    first, last = _characters(encoding[row], start, end, align_to_words)
                    answer = text[first:last]
                    same = next((a for a in answers if a["answer"].lower() == answer.lower()), None)
                    if same is not None:
                        same["score"] += score
                    else:
                        answers.append({"score": score, "start": first, "end": last, "answer": answer})
            if handle_impossible_answer:
                answers.append({"score": float(null_score), "start": 0, "end": 0, "answer": ""})
            answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
            results.append(answers[0] if len(answers) == 1 else answers)
        return results[0] if single else results

    def _window(self, encoding, row: int, out: dict, candidates: int, max_answer_len: int):
        """The best spans ``(start, end, score)`` of one window, and its "no answer" score."""
        ids = np.asarray(encoding["input_ids"][row])
        in_context = np.array([s == 1 for s in encoding.sequence_ids(row)])
        allowed = in_context | (ids == self.tokenizer.cls_token_id)
        p_start = softmax(np.where(allowed, out["start_logits"], EXCLUDED))  # (T,)
        p_end = softmax(np.where(allowed, out["end_logits"], EXCLUDED))  # (T,)
        null = float(p_start[0] * p_end[0])  # [CLS] as both start and end
        positions = np.flatnonzero(in_context)  # (N,)
        scores = p_start[positions, None] * p_end[None, positions]  # (N, N)
        length = positions[None, :] - positions[:, None]  # end - start, in tokens
        valid = (length >= 0) & (length < max_answer_len)
        starts, ends = np.nonzero(valid)
        flat = scores[starts, ends]
        best = np.argsort(-flat, kind="stable")[:candidates]
        return [(int(positions[starts[k]]), int(positions[ends[k]]), float(flat[k])) for k in best], null


def _characters(encoding, start: int, end: int, align_to_words: bool) -> tuple[int, int]:
    """The context characters of tokens ``start..end``, widened to whole words when asked."""
    if align_to_words:
        first_word, last_word = encoding.token_to_word(start), encoding.token_to_word(end)
        if first_word is not None and last_word is not None:
            first = encoding.word_to_chars(first_word, sequence_index=1)
            last = encoding.word_to_chars(last_word, sequence_index=1)
            if first is not None and last is not None:
                return first[0], last[1]
    return encoding.offsets[start][0], encoding.offsets[end][1]


def _examples(inputs, question, context) -> tuple[bool, list[tuple[str, str]]]:
    """``(single, [(question, context), ...])`` from the call's arguments."""
    if inputs is not None:
        if question is not None or context is not None:
            raise TypeError("pass either a {'question', 'context'} dict (or a list of them) or question= and context=")
        single = isinstance(inputs, dict)
        items = [inputs] if single else inputs
        if not isinstance(items, (list, tuple)) or not items or not all(isinstance(i, dict) for i in items):
            raise TypeError("inputs must be a {'question': ..., 'context': ...} dict or a non-empty list of them")
        pairs = [(item.get("question"), item.get("context")) for item in items]
    else:
        if question is None or context is None:
            raise TypeError("question answering needs question= and context=")
        single = isinstance(question, str) and isinstance(context, str)
        questions = [question] if isinstance(question, str) else question
        contexts = [context] * len(questions) if isinstance(context, str) else context
        if not isinstance(questions, (list, tuple)) or not isinstance(contexts, (list, tuple)):
            raise TypeError("question and context must be str or lists of str")
        if len(questions) != len(contexts):
            raise ValueError(
                f"{len(questions)} questions but {len(contexts)} contexts; give one context per "
                "question, or one context for all"
            )
        pairs = list(zip(questions, contexts))
    for q, c in pairs:
        for name, value in (("question", q), ("context", c)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"each {name} must be a non-empty str, got {value!r:.80}")
    return single, pairs
