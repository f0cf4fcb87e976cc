"""Fine-tuning data, defined once for the three frameworks: reading, tokenising, batching, metrics.

The five tasks read these files (JSON Lines: one object per line; blank lines are skipped):

- ``text-classification``: ``{"text", "text_pair"?, "label"}``, or a CSV whose header names ``text``,
  ``label`` and optionally ``text_pair``;
- ``token-classification``: ``{"tokens": [words], "tags": [one tag per word]}``;
- ``question-answering``: SQuAD-style ``{"question", "context", "answers": {"text": [...],
  "answer_start": [...]}}`` (empty lists: no answer); training uses the first answer;
- ``multiple-choice``: ``{"question"?, "choices": [...], "label": index}``, or a CSV with ``question``
  (optional), ``choice0``, ``choice1``, ... and ``label``;
- ``fill-mask``: plain text, one text per line (or JSON Lines ``{"text"}`` in a ``.jsonl`` file).

A label (or tag) is a class id or a name from the model's ``id2label``. When the model has the task's
head and every training label is one of its classes, the head is kept; otherwise the training labels
are a new label set (their names, sorted; or ``LABEL_0..LABEL_{n-1}`` for ids ``0..n-1`` when the
model has no such head) and the command builds a new head for it.

Words are labelled on their first word piece; the other pieces, ``[CLS]``, ``[SEP]`` and padding get
-100 (not trained on, not scored), as transformers' token-classification examples do. A question and
its context are read in windows of ``max_length`` tokens sharing ``min(max_length // 2, 128)`` tokens,
exactly as :class:`distilbert.pipelines.question_answering.QuestionAnsweringPipeline` reads them;
each window is a training row whose answer positions are the tokens of the answer, or 0 (``[CLS]``)
when the answer is not wholly inside that window. Fill-mask rows are masked per optimiser step with
:func:`distilbert.common.distillation.mask_tokens` (the distillation recipe's 15% with 80/10/10).

Bad data raises ``ValueError("FILE:LINE: what is wrong")``.

Example:
    >>> from distilbert.common.finetune import Batches, shard
    >>> import numpy as np
    >>> batches = Batches({"input_ids": np.arange(10).reshape(5, 2), "labels": np.arange(5)}, 2, epochs=2, seed=0)
    >>> len(batches), batches[0]["labels"].shape, shard(batches[0], 1, 2)["labels"].shape
    (4, (2,), (1,))
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import string
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from distilbert.common.distillation import DistillationConfig, mask_tokens, token_counts, token_weights
from distilbert.common.losses import IGNORE_INDEX

# The command's task names and the heads they train.
TASKS = {
    "text-classification": "sequence_classification",
    "token-classification": "token_classification",
    "question-answering": "question_answering",
    "multiple-choice": "multiple_choice",
    "fill-mask": "masked_lm",
}
LABELLED = ("sequence_classification", "token_classification")  # tasks whose labels are the config's classes
CSV_TASKS = ("sequence_classification", "multiple_choice")
MAX_ANSWER_TOKENS = 30  # longest predicted answer span, in tokens (transformers' run_qa default)
EVAL_STREAM = 1  # spawn key of the generator that masks fill-mask evaluation data (steps use (seed, k))

Record = tuple[int, dict[str, Any]]  # (line number, fields)


def default_max_length(task: str, max_positions: int) -> int:
    """128 tokens (384 for question answering, as its pipeline), at most the model's positions."""
    return min(384 if task == "question_answering" else 128, max_positions)


def doc_stride(max_length: int) -> int:
    """Tokens shared by consecutive question-answering windows: the QA pipeline's default."""
    return min(max_length // 2, 128)


# ---------------------------------------------------------------------------------- reading files
def read_records(path: str, task: str) -> list[Record]:
    """The examples of ``path`` for ``task`` (canonical name), their fields checked; ``(line, fields)`` each.

    Raises:
        FileNotFoundError: No such file.
        ValueError: ``FILE:LINE: what is wrong`` (not JSON, a missing or mistyped field, an answer
            that is not in its context, a different number of choices), or a file with no example.
    """
    if task not in TASKS.values():
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS.values())}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no data file at {path!r}")
    with open(path, encoding="utf-8", newline="") as fh:
        text = fh.read()
    lower = path.lower()
    if task == "masked_lm" and not lower.endswith((".jsonl", ".json")):
        records = [(n, {"text": line}) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    elif lower.endswith((".csv", ".tsv")):
        if task not in CSV_TASKS:
            raise ValueError(f"{path}: {task} data is JSON Lines (a .jsonl file), not CSV")
        records = _csv_records(path, text, task)
    else:
        records = _jsonl_records(path, text)
    if not records:
        raise ValueError(f"{path}: the file holds no example")
    check = _CHECKS[task]
    for number, item in records:
        check(f"{path}:{number}", item)
    if task == "multiple_choice":
        first = len(records[0][1]["choices"])
        for number, item in records:
            if len(item["choices"]) != first:
                raise ValueError(
                    f"{path}:{number}: {len(item['choices'])} choices, but line {records[0][0]} has {first}; "
                    "every example of a file needs the same number of choices"
                )
    return records


def _jsonl_records(path: str, text: str) -> list[Record]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg}); each line holds one JSON object") from None
        if not isinstance(item, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object, got {type(item).__name__}")
        records.append((number, item))
    return records


def _csv_records(path: str, text: str, task: str) -> list[Record]:
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    header = reader.fieldnames or []
    if task == "sequence_classification":
        needed = ["text", "label"]
    else:
        needed = ["choice0", "choice1", "label"]
    missing = [name for name in needed if name not in header]
    if missing:
        raise ValueError(f"{path}:1: the header must name the columns {', '.join(needed)}; {missing[0]!r} is missing")
    choices = sorted((c for c in header if re.fullmatch(r"choice\d+", c)), key=lambda c: int(c[6:]))
    records = []
    for row in reader:
        number = reader.line_num
        if None in row or any(v is None for v in row.values()):
            raise ValueError(f"{path}:{number}: expected {len(header)} columns like the header")
        if not any(v.strip() for v in row.values()):
            continue
        if task == "sequence_classification":
            item: dict[str, Any] = {"text": row["text"], "label": row["label"]}
            if row.get("text_pair"):
                item["text_pair"] = row["text_pair"]
        else:
            item = {"choices": [row[c] for c in choices], "label": row["label"]}
            if row.get("question"):
                item["question"] = row["question"]
        records.append((number, item))
    return records


def _need(where: str, item: dict, name: str, kind: type | tuple, what: str, optional: bool = False):
    if name not in item or (optional and item[name] is None):
        if optional:
            return None
        raise ValueError(f"{where}: missing field {name!r} ({what})")
    value = item[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where}: field {name!r} must be {what}, got {value!r:.60}")
    return value


def _check_text(where: str, item: dict) -> None:
    if not _need(where, item, "text", str, "a string").strip():
        raise ValueError(f"{where}: field 'text' is empty")


def _check_classification(where: str, item: dict) -> None:
    _check_text(where, item)
    _need(where, item, "text_pair", str, "a string", optional=True)
    _need(where, item, "label", (int, str), "a class id or a label name")


def _check_tokens(where: str, item: dict) -> None:
    tokens = _need(where, item, "tokens", list, "a list of words")
    tags = _need(where, item, "tags", list, "a list of tags, one per word")
    if not tokens or not all(isinstance(t, str) for t in tokens):
        raise ValueError(f"{where}: field 'tokens' must be a non-empty list of strings")
    if len(tags) != len(tokens):
        raise ValueError(f"{where}: {len(tags)} tags for {len(tokens)} tokens; give one tag per token")
    for tag in tags:
        if isinstance(tag, bool) or not isinstance(tag, (int, str)):
            raise ValueError(f"{where}: tag {tag!r:.40} is neither a class id nor a label name")


def answers_of(item: dict) -> list[tuple[str, int]]:
    """``[(text, answer_start), ...]`` of a question-answering record (read with :func:`read_records`)."""
    answers = item["answers"]
    texts, starts = answers["text"], answers["answer_start"]
    if isinstance(texts, str):
        return [(texts, starts)]
    return list(zip(texts, starts))


def _check_qa(where: str, item: dict) -> None:
    for name in ("question", "context"):
        if not _need(where, item, name, str, "a string").strip():
            raise ValueError(f"{where}: field {name!r} is empty")
    answers = _need(where, item, "answers", dict, 'an object {"text": [...], "answer_start": [...]}')
    for name in ("text", "answer_start"):
        if name not in answers:
            raise ValueError(f"{where}: missing field 'answers.{name}'")
    texts, starts = answers["text"], answers["answer_start"]
    if isinstance(texts, str) and isinstance(starts, int) and not isinstance(starts, bool):
        texts, starts = [texts], [starts]
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        raise ValueError(f"{where}: 'answers.text' and 'answers.answer_start' must be lists of the same length")
    context = item["context"]
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int):
            raise ValueError(f"{where}: each answer is a non-empty text and an integer answer_start")
        if start < 0 or context[start : start + len(text)] != text:
            raise ValueError(f"{where}: answer {text!r:.40} is not in its context at answer_start {start}")


def _check_choice(where: str, item: dict) -> None:
    question = _need(where, item, "question", str, "a string", optional=True)
    if question is not None and not question.strip():
        raise ValueError(f"{where}: field 'question' is empty")
    choices = _need(where, item, "choices", list, "a list of at least two strings")
    if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise ValueError(f"{where}: field 'choices' must be a list of at least two non-empty strings")
    label = _need(where, item, "label", (int, str), "the index of the right choice")
    index = _as_id(label)
    if index is None or not 0 <= index < len(choices):
        raise ValueError(f"{where}: label {label!r} is not a choice index in [0, {len(choices)})")
    item["label"] = index


_CHECKS = {
    "sequence_classification": _check_classification,
    "token_classification": _check_tokens,
    "question_answering": _check_qa,
    "multiple_choice": _check_choice,
    "masked_lm": _check_text,
}


# ------------------------------------------------------------------------------------------ labels
def _as_id(value) -> int | None:
    """A class id given as an int or its decimal string; None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    return None


def label_values(records: Sequence[Record], task: str) -> list[tuple[int, Any]]:
    """``(line, label)`` for every label of the records: one per example, or one per word (tags)."""
    if task == "token_classification":
        return [(n, tag) for n, item in records for tag in item["tags"]]
    return [(n, item["label"]) for n, item in records]


def choose_labels(
    path: str, values: Sequence[tuple[int, Any]], known: Mapping[str, int] | None
) -> tuple[dict[str, int], bool]:
    """The label set of a training file: ``(label2id, new)``.

    Args:
        path: The file (for messages).
        values: ``(line, label)`` pairs from :func:`label_values`.
        known: The model head's ``label2id``, or None when the model has no head for the task.

    Returns:
        The model's own label set (``new`` False) when every label is one of its names or ids;
        else a new one: the label names sorted, or ``LABEL_i`` for ids ``0..max`` without a head.

    Raises:
        ValueError: An id outside the model's classes, a negative id, or ids mixed with names.
    """
    if known is not None and all(_resolve(v, known) is not None for _, v in values):
        return dict(known), False
    names = [(n, v) for n, v in values if not (isinstance(v, str) and known and v in known) and _as_id(v) is None]
    if not names:  # ids only, outside the known classes or with no head to hold them
        for number, value in values:
            index = _as_id(value)
            if known is not None and _resolve(value, known) is not None:
                continue
            if known is not None or index is None or index < 0:
                classes = f"[0, {len(known)})" if known is not None else "ids from 0"
                raise ValueError(
                    f"{path}:{number}: label {value!r} is not a class of the model ({classes}"
                    f"{' or one of ' + ', '.join(map(str, known)) if known else ''}); give the labels as names "
                    "to train a new label set"
                )
        count = max(int(_as_id(v)) for _, v in values) + 1  # type: ignore[arg-type]
        return {f"LABEL_{i}": i for i in range(count)}, True
    for number, value in values:
        if not isinstance(value, str):
            raise ValueError(
                f"{path}:{number}: label {value!r} is a class id, but the file's labels are names "
                f"(line {names[0][0]}: {names[0][1]!r}); give every label as a name"
            )
    return {name: i for i, name in enumerate(sorted({str(v) for _, v in values}))}, True


def _resolve(value, label2id: Mapping[str, int]) -> int | None:
    if isinstance(value, str) and value in label2id:
        return label2id[value]
    index = _as_id(value)
    return index if index is not None and 0 <= index < len(label2id) else None


def label_id(where: str, value, label2id: Mapping[str, int]) -> int:
    """The id of a label (a name of ``label2id`` or an id in range); ValueError ``where: ...`` otherwise."""
    index = _resolve(value, label2id)
    if index is None:
        shown = ", ".join(list(label2id)[:20]) + (", ..." if len(label2id) > 20 else "")
        raise ValueError(f"{where}: label {value!r:.40} is not in the label set ({shown})")
    return index


# ------------------------------------------------------------------------------------- tokenising
@dataclass
class Examples:
    """A task's tokenised data: ``arrays`` holds the model inputs and labels, one row per example
    (question answering: per window), as in CONTRACT_14 §1; the rest is what evaluation needs.

    Attributes:
        task: The head (``sequence_classification``, ...).
        arrays: ``input_ids``, ``attention_mask`` and the labels (``labels`` or ``start_positions``
            and ``end_positions``), int64, padded to the same length.
        label_names: Class names by id (classification tasks).
        example_of: Question answering: the example each window reads.
        offsets: Question answering: ``(N, T, 2)`` context characters of each token, -1 outside the context.
        contexts, answers: Question answering: each example's context and gold answer texts.
    """

    task: str
    arrays: dict[str, np.ndarray]
    label_names: list[str] | None = None
    example_of: np.ndarray | None = None
    offsets: np.ndarray | None = None
    contexts: list[str] = field(default_factory=list)
    answers: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.arrays["input_ids"])


def encode(
    path: str,
    records: Sequence[Record],
    task: str,
    tokenizer,
    max_length: int,
    label2id: Mapping[str, int] | None = None,
) -> Examples:
    """Tokenises ``records`` (from :func:`read_records`) for ``task`` into padded int64 rows.

    Args:
        path: The file they came from (for messages).
        records: ``(line, fields)`` pairs.
        task: The head (canonical name).
        tokenizer: A ``DistilBertTokenizerFast`` (word ids and offsets are needed).
        max_length: Tokens per row (cut and padded to it); question answering: per window.
        label2id: The label set (classification tasks).
    """
    if task in LABELLED and label2id is None:
        raise ValueError(f"{task} needs the label set (label2id)")
    names = None if label2id is None else [n for n, _ in sorted(label2id.items(), key=lambda kv: kv[1])]
    options = dict(truncation=True, max_length=max_length, padding="max_length")
    if task in ("sequence_classification", "masked_lm"):
        firsts = [item["text"] for _, item in records]
        seconds = [item.get("text_pair") for _, item in records]
        ids, mask = _encode_pairs(tokenizer, firsts, seconds, options)
        arrays = {"input_ids": ids, "attention_mask": mask}
        if task == "sequence_classification":
            assert label2id is not None
            arrays["labels"] = np.array(
                [label_id(f"{path}:{n}", item["label"], label2id) for n, item in records], np.int64
            )
        return Examples(task, arrays, names if task != "masked_lm" else None)
    if task == "multiple_choice":
        count = len(records[0][1]["choices"])
        firsts, seconds = [], []
        for _, item in records:
            for choice in item["choices"]:
                question = item.get("question")
                firsts.append(choice if question is None else question)
                seconds.append(None if question is None else choice)
        ids, mask = _encode_pairs(tokenizer, firsts, seconds, options)
        shape = (len(records), count, ids.shape[-1])
        labels = np.array([item["label"] for _, item in records], np.int64)
        arrays = {"input_ids": ids.reshape(shape), "attention_mask": mask.reshape(shape), "labels": labels}
        return Examples(task, arrays)
    if task == "token_classification":
        assert label2id is not None
        encoding = tokenizer([item["tokens"] for _, item in records], is_split_into_words=True, **options)
        labels = np.full((len(records), max_length), IGNORE_INDEX, np.int64)
        for row, (number, item) in enumerate(records):
            tags = [label_id(f"{path}:{number}", tag, label2id) for tag in item["tags"]]
            previous = None
            for position, word in enumerate(encoding.word_ids(row)):
                if word is not None and word != previous:  # the word's first piece
                    labels[row, position] = tags[word]
                previous = word
        arrays = {k: np.asarray(encoding[k], np.int64) for k in ("input_ids", "attention_mask")}
        return Examples(task, {**arrays, "labels": labels}, names)
    if task == "question_answering":
        return _encode_qa(path, records, tokenizer, max_length)
    raise ValueError(f"unknown task {task!r}")


def _encode_pairs(tokenizer, firsts: list[str], seconds: list[str | None], options: dict):
    """Token ids and masks of texts, paired where a second text is given (single and pairs tokenised apart)."""
    ids = np.zeros((len(firsts), options["max_length"]), np.int64)
    mask = np.zeros_like(ids)
    single = [i for i, s in enumerate(seconds) if s is None]
    paired = [i for i, s in enumerate(seconds) if s is not None]
    for rows, args in (
        (single, ([firsts[i] for i in single],)),
        (paired, ([firsts[i] for i in paired], [seconds[i] for i in paired])),
    ):
        if rows:
            encoding = tokenizer(*args, **options)
            ids[rows] = np.asarray(encoding["input_ids"], np.int64)
            mask[rows] = np.asarray(encoding["attention_mask"], np.int64)
    return ids, mask


def qa_windows(tokenizer, questions: list[str], contexts: list[str], max_length: int, padding: bool = True):
    """The tokenizer's windows of question/context pairs, exactly as the question-answering pipeline reads them."""
    return tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride(max_length),
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if padding else False,
    )


def _encode_qa(path: str, records: Sequence[Record], tokenizer, max_length: int) -> Examples:
    questions = [item["question"] for _, item in records]
    contexts = [item["context"] for _, item in records]
    # A window holds [CLS] question [SEP] context [SEP]; its context part must be longer than the stride.
    room = max_length - 3 - doc_stride(max_length)
    for (number, _), ids in zip(records, tokenizer(questions, add_special_tokens=False)["input_ids"]):
        if len(ids) >= room:
            raise ValueError(
                f"{path}:{number}: the question takes {len(ids)} tokens; windows of {max_length} tokens "
                f"(sharing {doc_stride(max_length)}) leave it fewer than {room}: raise --max-length or shorten it"
            )
    encoding = qa_windows(tokenizer, questions, contexts, max_length)
    owner = np.asarray(encoding["overflow_to_sample_mapping"], np.int64)
    n = len(owner)
    offsets = np.full((n, max_length, 2), -1, np.int64)
    starts, ends = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for w in range(n):
        in_context = np.array([s == 1 for s in encoding.sequence_ids(w)])
        offsets[w][in_context] = np.asarray(encoding["offset_mapping"][w], np.int64)[in_context]
        answers = answers_of(records[owner[w]][1])
        if not answers:
            continue  # no answer: [CLS]
        text, first = answers[0]
        last = first + len(text)  # one past the answer's last character
        tokens = np.flatnonzero(in_context)
        if tokens.size and offsets[w, tokens[0], 0] <= first and offsets[w, tokens[-1], 1] >= last:
            starts[w] = tokens[offsets[w, tokens, 0] <= first][-1]
            ends[w] = tokens[offsets[w, tokens, 1] >= last][0]
    arrays = {
        "input_ids": np.asarray(encoding["input_ids"], np.int64),
        "attention_mask": np.asarray(encoding["attention_mask"], np.int64),
        "start_positions": starts,
        "end_positions": ends,
    }
    gold = [[text for text, _ in answers_of(item)] for _, item in records]
    return Examples("question_answering", arrays, None, owner, offsets, contexts, gold)


# --------------------------------------------------------------------------------------- masking
@dataclass(frozen=True)
class Masking:
    """How fill-mask rows are masked: :func:`distilbert.common.distillation.mask_tokens`'s arguments."""

    weights: np.ndarray
    mask_token_id: int
    config: DistillationConfig = DistillationConfig()

    def __call__(self, ids: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return mask_tokens(ids, mask, self.weights, self.mask_token_id, self.config, rng)


def masking_for(examples: Examples, vocab_size: int, special_ids, mask_token_id: int) -> Masking:
    """The fill-mask masking of a training set: tokens chosen by their smoothed frequency in it."""
    config = DistillationConfig()
    ids, mask = examples.arrays["input_ids"], examples.arrays["attention_mask"]
    counts = token_counts(ids[mask == 1][None], vocab_size)
    return Masking(token_weights(counts, special_ids, config.mlm_smoothing), int(mask_token_id), config)


def mask_once(examples: Examples, masking: Masking, seed: int) -> Examples:
    """Fill-mask evaluation data masked once, by a generator of its own (the same for every run of ``seed``)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(EVAL_STREAM,)))
    ids, labels = masking(examples.arrays["input_ids"], examples.arrays["attention_mask"], rng)
    return replace(examples, arrays={**examples.arrays, "input_ids": ids, "labels": labels})


# -------------------------------------------------------------------------------------- batching
class Batches(Sequence):
    """The global batches of a run: ``batches[k]`` is optimiser step ``k``'s batch (CONTRACT_14 §1).

    A pure function of the seed and ``k``, whatever the framework or the number of workers: epoch
    ``e`` visits the rows in the order of ``np.random.default_rng([seed, e]).permutation(N)``, in
    batches of exactly ``batch_size`` rows (the last partial batch of each epoch is dropped), so
    ``len(batches) == epochs * (N // batch_size)``. With ``masking``, step ``k``'s batch is masked
    by a generator seeded by ``[seed, k]`` (``input_ids`` masked, ``labels`` -100 where not masked).
    Slicing gives the same batches (``batches[start:]``).

    Args:
        arrays: Row-aligned arrays (``Examples.arrays``).
        batch_size: Rows per batch (the global batch).
        epochs: Passes over the rows.
        seed: Orders the rows and seeds the masks.
        masking: A :class:`Masking` for fill-mask, else None.
    """

    def __init__(
        self, arrays: Mapping[str, np.ndarray], batch_size: int, epochs: int, seed: int, masking: Masking | None = None
    ):
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"the arrays have different numbers of rows: {sorted(lengths)}")
        self.rows = lengths.pop()
        if batch_size < 1 or epochs < 1:
            raise ValueError(f"batch_size and epochs must be at least 1, got {batch_size} and {epochs}")
        if batch_size > self.rows:
            raise ValueError(f"the batch size {batch_size} exceeds the {self.rows} training rows; lower --batch-size")
        self.arrays, self.batch_size, self.epochs, self.seed = dict(arrays), batch_size, epochs, seed
        self.masking = masking
        self.steps_per_epoch = self.rows // batch_size
        self._steps = range(epochs * self.steps_per_epoch)
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._steps)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            view = object.__new__(Batches)
            view.__dict__.update(self.__dict__)
            view._steps = self._steps[index]
            return view
        step = self._steps[index]  # IndexError past the end
        epoch, j = divmod(step, self.steps_per_epoch)
        rows = self.order(epoch)[j * self.batch_size : (j + 1) * self.batch_size]
        batch = {name: array[rows] for name, array in self.arrays.items()}
        if self.masking is not None:
            rng = np.random.default_rng([self.seed, step])
            batch["input_ids"], batch["labels"] = self.masking(batch["input_ids"], batch["attention_mask"], rng)
        return batch

    def order(self, epoch: int) -> np.ndarray:
        """The rows of ``epoch`` in the order they are visited."""
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.rows))
        return self._order[1]

    def epoch_of(self, step: int) -> float:
        """How many epochs ``step`` optimiser steps make."""
        return step / self.steps_per_epoch


def shard(batch: Mapping[str, np.ndarray], rank: int, world: int) -> dict[str, np.ndarray]:
    """Rows ``[rank*B/world, (rank+1)*B/world)`` of every array of a global batch.

    Raises:
        ValueError: ``world`` does not divide the batch, or ``rank`` is not in ``[0, world)``.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    sizes = {len(a) for a in batch.values()}
    if len(sizes) != 1:
        raise ValueError(f"the batch's arrays have different numbers of rows: {sorted(sizes)}")
    (size,) = sizes
    if size % world:
        raise ValueError(f"a global batch of {size} rows does not split over {world} workers; use a multiple of it")
    part = size // world
    return {name: np.asarray(a)[rank * part : (rank + 1) * part] for name, a in batch.items()}


def loss_counts(task: str, batch: Mapping[str, np.ndarray]) -> dict[str, int]:
    """How many items each term of a ``task`` model's loss averages over, counted on a whole global batch.

    Each worker divides its rows' summed losses by these counts, so that the workers' shares add up to
    the loss of the global batch however it is split. Examples for sequence classification and multiple
    choice; labelled positions (``!= -100``) for token classification and masked LM; for question
    answering, the start and the end positions inside the sequence (one clamped to the sequence length
    is ignored, as the model's loss ignores it).
    """
    if task in ("token_classification", "masked_lm"):
        return {"labels": int((np.asarray(batch["labels"]) != IGNORE_INDEX).sum())}
    rows = len(batch["input_ids"])
    if task == "question_answering":
        length = np.asarray(batch["input_ids"]).shape[-1]
        first = {k: np.asarray(batch[f"{k}_positions"]).reshape(rows, -1)[:, 0] for k in ("start", "end")}
        return {k: int((np.clip(p, 0, length) != length).sum()) for k, p in first.items()}
    return {"examples": rows}


def in_order(
    arrays: Mapping[str, np.ndarray], batch_size: int, names: Sequence[str]
) -> Iterator[dict[str, np.ndarray]]:
    """The rows in file order, ``batch_size`` at a time (the last batch may be smaller): for evaluation."""
    rows = len(next(iter(arrays.values())))
    for start in range(0, rows, batch_size):
        yield {name: arrays[name][start : start + batch_size] for name in names}


# --------------------------------------------------------------------------------------- metrics
def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy over the labels that are not -100 (0 when there are none), in float64."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return 0.0
    log_p = _log_softmax(logits[keep])
    return float(-log_p[np.arange(len(log_p)), labels[keep]].mean())


def accuracy(predictions, labels) -> float:
    """The fraction of predictions equal to their label (labels -100 left out)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    keep = labels != IGNORE_INDEX
    return float((predictions[keep] == labels[keep]).mean()) if keep.any() else 0.0


_PREFIXED = re.compile(r"^([BIESLU])[-_](.+)$")


def _tag_parts(tag: str) -> tuple[str, str]:
    """``(prefix, type)``: ``B-PER`` -> ``(B, PER)``; ``O`` -> ``(O, "")``; an unprefixed ``PER`` -> ``(I, PER)``."""
    if tag == "O":
        return "O", ""
    match = _PREFIXED.match(tag)
    if match is None:
        return "I", tag  # consecutive equal unprefixed tags form one entity
    prefix = {"L": "E", "U": "S"}.get(match[1], match[1])  # BILOU spelled as IOBES
    return prefix, match[2]


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entities ``(type, first, last)`` of a tag sequence, chunked as seqeval's default (conlleval) mode.

    Example:
        >>> sorted(entities(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "O"]))
        [('LOC', 3, 3), ('LOC', 4, 4), ('PER', 0, 1)]
    """
    found = set()
    start, previous, previous_type = None, "O", ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, type_ = _tag_parts(tag)
        ends = previous in ("E", "S") or (previous != "O" and (prefix in ("B", "S", "O") or type_ != previous_type))
        if start is not None and ends:
            found.add((previous_type, start, i - 1))
            start = None
        begins = prefix in ("B", "S") or (
            prefix in ("I", "E") and (previous in ("E", "S", "O") or type_ != previous_type)
        )
        if begins:
            start = i
        previous, previous_type = prefix, type_
    return found


def entity_scores(true: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 (micro-averaged, as seqeval) and tag accuracy.

    Args:
        true: Each sentence's gold tags.
        predicted: Each sentence's predicted tags (the same lengths).
    """
    if len(true) != len(predicted) or any(len(t) != len(p) for t, p in zip(true, predicted)):
        raise ValueError("true and predicted tags must have the same sentences and lengths")
    gold = {(s, *e) for s, tags in enumerate(true) for e in entities(tags)}
    guess = {(s, *e) for s, tags in enumerate(predicted) for e in entities(tags)}
    hits = len(gold & guess)
    precision = hits / len(guess) if guess else 0.0
    recall = hits / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    flat_true = [t for tags in true for t in tags]
    same = sum(t == p for tags, guesses in zip(true, predicted) for t, p in zip(tags, guesses))
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": same / len(flat_true) if flat_true else 0.0,
    }


_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _answer_f1(prediction: str, gold: str) -> float:
    guess, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not guess or not truth:
        return float(guess == truth)
    common = sum((Counter(guess) & Counter(truth)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(guess), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """SQuAD exact match and F1, in percent: each prediction against its best gold answer (no answer: "")."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} questions")
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    exact = f1 = 0.0
    for prediction, gold in zip(predictions, answers):
        gold = list(gold) or [""]
        exact += max(float(normalize_answer(prediction) == normalize_answer(g)) for g in gold)
        f1 += max(_answer_f1(prediction, g) for g in gold)
    return {"exact_match": 100.0 * exact / len(predictions), "f1": 100.0 * f1 / len(predictions)}


def best_answers(examples: Examples, start_logits: np.ndarray, end_logits: np.ndarray) -> list[str]:
    """Each question's answer: the context span with the highest start + end logit over all its windows,
    at most :data:`MAX_ANSWER_TOKENS` tokens long ("" when no window holds any of its context)."""
    assert examples.example_of is not None and examples.offsets is not None
    best: list[tuple[float, str]] = [(-math.inf, "") for _ in examples.contexts]
    for w, owner in enumerate(examples.example_of):
        offsets = examples.offsets[w]
        tokens = np.flatnonzero(offsets[:, 0] >= 0)
        if not tokens.size:
            continue
        scores = start_logits[w, tokens][:, None].astype(np.float64) + end_logits[w, tokens][None, :]  # (N, N)
        length = tokens[None, :] - tokens[:, None]
        scores = np.where((length >= 0) & (length < MAX_ANSWER_TOKENS), scores, -np.inf)
        i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[i, j] > best[owner][0]:
            context = examples.contexts[owner]
            best[owner] = (float(scores[i, j]), context[offsets[tokens[i], 0] : offsets[tokens[j], 1]])
    return [text for _, text in best]


def evaluate(examples: Examples, outputs: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The task's metrics from the model's outputs on every row of ``examples`` (in order).

    - classification and multiple choice: ``accuracy`` (a fraction);
    - token classification: entity ``precision``, ``recall``, ``f1`` and tag ``accuracy`` over the
      labelled (first-piece) positions, as seqeval computes them on the tag names;
    - question answering: ``exact_match`` and ``f1`` in percent (SQuAD), from :func:`best_answers`;
    - fill-mask: ``accuracy`` of the masked tokens and ``perplexity``;

    and each task's ``loss`` (its head's loss over all rows, as :mod:`distilbert.common.losses` says).
    """
    arrays, task = examples.arrays, examples.task
    if task == "question_answering":
        start, end = np.asarray(outputs["start_logits"]), np.asarray(outputs["end_logits"])
        loss = (cross_entropy(start, arrays["start_positions"]) + cross_entropy(end, arrays["end_positions"])) / 2
        return {"loss": loss, **squad_scores(best_answers(examples, start, end), examples.answers)}
    logits, labels = np.asarray(outputs["logits"]), arrays["labels"]
    loss = cross_entropy(logits, labels)
    predictions = logits.argmax(-1)
    if task == "token_classification":
        assert examples.label_names is not None
        names = examples.label_names
        keep = labels != IGNORE_INDEX
        true = [[names[t] for t in row[k]] for row, k in zip(labels, keep)]
        guess = [[names[t] for t in row[k]] for row, k in zip(predictions, keep)]
        return {"loss": loss, **entity_scores(true, guess)}
    out = {"loss": loss, "accuracy": accuracy(predictions, labels)}
    if task == "masked_lm":
        out["perplexity"] = float(math.exp(min(loss, 700.0)))
    return out
