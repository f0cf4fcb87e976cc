"""What every task pipeline shares: loading the model and tokenizer, checking the head, batching.

A pipeline tokenizes its inputs into rows (numpy ``input_ids`` and ``attention_mask`` per sequence),
:meth:`Pipeline.run` pads them into batches and hands each batch to the framework's runner, and the
task turns the per-row outputs into results. Only the runner knows the framework.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from distilbert.common.checkpoint import FORMATS, available_formats, open_native
from distilbert.common.config import DistilBertConfig
from distilbert.common.hub import resolve_dir
from distilbert.common.names import TASK_CLASSES
from distilbert.frameworks import TOKEN_LEVEL_TASKS, check_framework, framework_of, from_pretrained, make_runner

# What each head does, for error messages.
HEAD_DESCRIPTIONS = {
    "base": "the bare encoder, without any task head",
    "masked_lm": "a masked-language-model head",
    "sequence_classification": "a sequence-classification head",
    "multiple_choice": "a multiple-choice head",
    "token_classification": "a token-classification head",
    "question_answering": "a question-answering head",
}


class Pipeline:
    """Base of the task pipelines; build them with :func:`distilbert.pipelines.pipeline`.

    Args:
        model: A loaded model of this package (``distilbert.pt``/``tf``/``flax``) for :attr:`model_task`.
        tokenizer: A ``DistilBertTokenizerFast`` (or ``DistilBertTokenizer`` where offsets are not needed).
        runner: The framework's runner (:func:`distilbert.frameworks.make_runner`).
        batch_size: Sequences per forward pass.
        directory: The checkpoint directory the model came from (None for a model object), for tasks that
            read more of it than the weights.
        **defaults: Default values of the call's keyword arguments (e.g. ``top_k=3``).

    Example:
        >>> fill = pipeline("fill-mask", model="distilbert-base-uncased", top_k=3)  # doctest: +SKIP
        >>> rows = rows_of(fill.tokenizer(["a [MASK] day"]))  # doctest: +SKIP
        >>> fill.run(rows)[0]["logits"].shape  # raw outputs, no post-processing  # doctest: +SKIP
        (5, 30522)
    """

    name = ""  # the task name given to pipeline()
    model_task = ""  # the head it needs (a key of distilbert.common.names.TASK_CLASSES)
    outputs: tuple[str, ...] = ("logits",)
    needs_offsets = False  # token-level pipelines map tokens back to characters
    too_long_advice = "shorten it"  # what to do about an input longer than the position table

    def __init__(self, model, tokenizer, runner, batch_size: int = 8, directory: str | None = None, **defaults):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model, self.tokenizer, self.runner = model, tokenizer, runner
        self.config: DistilBertConfig = model.config
        self.batch_size, self.directory = batch_size, directory
        if self.needs_offsets and not getattr(tokenizer, "is_fast", True):
            raise ValueError(
                f"the {self.name} pipeline maps tokens back to characters, which needs "
                "DistilBertTokenizerFast; pass tokenizer=DistilBertTokenizerFast.from_pretrained(...)"
            )
        if len(tokenizer) > self.config.vocab_size:
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} tokens but the model only {self.config.vocab_size}; "
                "use the tokenizer that belongs to the checkpoint"
            )
        # The longest sequence both the tokenizer and the position table allow.
        self.max_length = min(tokenizer.model_max_length, self.config.max_position_embeddings)
        self.defaults = self._check_params(defaults)

    @property
    def framework(self) -> str:
        return self.runner.framework

    @property
    def device(self) -> str:
        return self.runner.device

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(task={self.name!r}, framework={self.framework!r}, "
            f"model={type(self.model).__name__}, device={self.device!r})"
        )

    def __call__(self, *args, **params):
        return self._call(*args, **{**self.defaults, **self._check_params(params)})

    # Each task's ``_call(inputs, *, its keyword-only parameters)``; ``_check_params`` reads its signature.
    _call: Callable[..., Any]

    def _check_params(self, params: dict) -> dict:
        accepted = [name for name, p in inspect.signature(self._call).parameters.items() if p.kind == p.KEYWORD_ONLY]
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise TypeError(
                f"the {self.name} pipeline takes no argument {', '.join(unknown)}; it takes {', '.join(accepted)}"
            )
        return params

    @classmethod
    def load(cls, directory: str, framework: str, what: str):
        """The model of this task from a checkpoint directory, after checking that it holds the task's head."""
        found = checkpoint_task(directory, DistilBertConfig.from_pretrained(directory))
        _check_head(found, cls, what)
        return from_pretrained(framework, cls.model_task, directory)

    # ------------------------------------------------------------------------------ running
    def run(self, rows: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Runs the model on ``rows`` (each ``input_ids`` and ``attention_mask`` of shape ``(T,)``, or
        ``(C, T)`` for multiple choice) in padded batches; returns each row's outputs, token-level
        ones cut to the row's own length."""
        for row in rows:
            n = row["input_ids"].shape[-1]
            if n > self.config.max_position_embeddings:
                raise ValueError(
                    f"an input has {n} tokens, more than the model's "
                    f"{self.config.max_position_embeddings} positions; {self.too_long_advice}"
                )
        results = []
        start = 0
        while start < len(rows):
            # A batch holds rows of one leading shape (multiple choice: the same number of choices).
            lead = rows[start]["input_ids"].shape[:-1]
            stop = start + 1
            while stop < len(rows) and stop - start < self.batch_size and rows[stop]["input_ids"].shape[:-1] == lead:
                stop += 1
            results.extend(self._run_batch(rows[start:stop]))
            start = stop
        return results

    def _run_batch(self, rows):
        lengths = [row["input_ids"].shape[-1] for row in rows]
        lead = rows[0]["input_ids"].shape[:-1]
        pad = self.config.pad_token_id or 0
        input_ids = np.full((len(rows), *lead, max(lengths)), pad, np.int64)  # (B, [C,] T)
        attention_mask = np.zeros_like(input_ids)  # (B, [C,] T)
        for i, (row, n) in enumerate(zip(rows, lengths)):
            input_ids[i, ..., :n] = row["input_ids"]
            attention_mask[i, ..., :n] = row["attention_mask"]
        out = self.runner(input_ids, attention_mask)
        token_level = self.model_task in TOKEN_LEVEL_TASKS
        return [
            {name: value[i, :n] if token_level else value[i] for name, value in out.items()}
            for i, n in enumerate(lengths)
        ]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """A numerically stable softmax, in float64."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def as_texts(inputs) -> list[str]:
    """A non-empty list or tuple of strings as a list; anything else is a :class:`TypeError`."""
    if not isinstance(inputs, (list, tuple)) or not inputs or not all(isinstance(t, str) for t in inputs):
        raise TypeError(f"inputs must be a str or a non-empty list of str, got {inputs!r:.80}")
    return list(inputs)


def rows_of(encoding, keys=("input_ids", "attention_mask")) -> list[dict[str, np.ndarray]]:
    """A batched, unpadded tokenizer output as a list of per-sequence numpy rows."""
    return [{key: np.asarray(encoding[key][i], np.int64) for key in keys} for i in range(len(encoding["input_ids"]))]


# ---------------------------------------------------------------------------------- loading
def checkpoint_task(directory: str, config: DistilBertConfig) -> str:
    """The head a checkpoint directory's weights hold (read from the tensor names, nothing loaded)."""
    formats = available_formats(directory)
    if not formats:
        names = ", ".join(f[0] for f in FORMATS.values())
        raise FileNotFoundError(f"no weights in {directory!r}: expected one of {names}")
    native, _, task, _ = open_native(os.path.join(directory, FORMATS[formats[0]][0]), config, formats[0])
    native.close()
    return task


def build(cls, model, framework: str | None, tokenizer, device, batch_size: int, kwargs: dict) -> Pipeline:
    """Loads what a pipeline class needs and builds it (see :func:`distilbert.pipelines.pipeline`)."""
    directory = None
    if isinstance(model, (str, os.PathLike)):
        framework = "pt" if framework is None else framework
        check_framework(framework)
        directory = resolve_dir(model)
        model = cls.load(directory, framework, repr(os.fspath(model)))
    else:
        own = framework_of(model)
        if own is None:
            raise TypeError(
                f"model must be a checkpoint directory, a hub id, or a model of distilbert.pt, "
                f"distilbert.tf or distilbert.flax; got {type(model).__name__}"
            )
        if framework is not None and framework != own:
            raise ValueError(f"framework={framework!r} but the model is a {own} model ({type(model).__name__})")
        framework = own
        _check_head(model.task, cls, type(model).__name__)
    return cls(
        model,
        _tokenizer(tokenizer, directory),
        # The encoder skips the padding of a batch (the results cut each row to its own tokens)
        make_runner(model, framework, cls.outputs, device, skip_padding=True),
        batch_size=batch_size,
        directory=directory,
        **kwargs,
    )


def _check_head(found: str, cls, what: str) -> None:
    if found == cls.model_task:
        return
    raise ValueError(
        f"{what} holds {HEAD_DESCRIPTIONS[found]} ({TASK_CLASSES[found]}), but the {cls.name} pipeline needs "
        f"{HEAD_DESCRIPTIONS[cls.model_task]} ({TASK_CLASSES[cls.model_task]}); use a checkpoint trained for "
        f"{cls.name}, or fine-tune one from this checkpoint first"
    )


def _tokenizer(tokenizer, directory: str | None):
    from distilbert.common.tokenization import DistilBertTokenizerFast

    if tokenizer is None:
        if directory is None:
            raise ValueError(
                "pass tokenizer=... with a model object (or give the model as a checkpoint directory "
                "that holds the tokenizer files)"
            )
        if not any(os.path.isfile(os.path.join(directory, f)) for f in ("tokenizer.json", "vocab.txt")):
            raise FileNotFoundError(
                f"no tokenizer files (tokenizer.json or vocab.txt) in {directory!r}; "
                "pass tokenizer=DIR_OR_HUB_ID of the checkpoint's tokenizer"
            )
        return DistilBertTokenizerFast.from_pretrained(directory)
    if isinstance(tokenizer, (str, os.PathLike)):
        return DistilBertTokenizerFast.from_pretrained(tokenizer)
    return tokenizer
