"""The one input validator of the three backends: shapes, dtypes and value ranges in, one set of exceptions out.

A backend describes each call argument as an :class:`ArrayInfo` (its shape, its dtype kind and, when
the values are concrete on the host, their range or whether any is non-zero) and calls
:func:`check_inputs` and :func:`check_labels`; every rule and every message is written here, once.
Under compilation (``jax.jit``, ``tf.function``, ``torch.compile``) values are not concrete: the
backend passes no range, the shape and dtype rules still apply, and the backend does what it
documents for values (TensorFlow asserts with :func:`ids_range_message` and friends).

Exceptions, the same in PyTorch, TensorFlow and JAX/Flax:

- ``TypeError``: a wrong dtype (float ``input_ids``, integer ``inputs_embeds``, float class labels, ...).
- ``ValueError``: everything else (shape, rank, length, a value outside its range, non-zero
  ``token_type_ids``, a config the head cannot use).

Accepted shapes (``B`` batch, ``C`` choices, ``T`` tokens; multiple choice adds ``C`` after ``B``):

- ``input_ids`` ``(B, T)`` integers, or ``inputs_embeds`` ``(B, T, dim)`` floats; ``0 < T <= max_position_embeddings``;
- ``attention_mask`` and ``token_type_ids``: the input's shape;
- ``position_ids``: integers broadcasting to the input's shape with the whole ``T`` axis: ``(T,)``,
  ``(1, T)``, ``(B, T)``; for multiple choice also ``(C, T)``, ``(1, 1, T)``, ``(B, 1, T)``,
  ``(1, C, T)``, ``(B, C, T)``;
- ``head_mask``: ``(n_heads,)`` or ``(n_layers, n_heads)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from distilbert.common.config import DistilBertConfig
from distilbert.common.losses import IGNORE_INDEX, problem_type_for

INTEGER, FLOAT, BOOL = "iu", "f", "b"


@dataclass(frozen=True)
class ArrayInfo:
    """What the validator needs to know of one array, in framework-free terms.

    Args:
        shape: The shape (``None`` for an axis unknown while tracing), or None when the rank is unknown.
        kind: The numpy dtype kind: ``"i"``/``"u"`` integers, ``"f"`` floats, ``"b"`` booleans, ``"c"``
            complex, anything else for other dtypes.
        dtype: The dtype's name, for messages.
        lo / hi: Smallest and largest value, when concrete (and the array is not empty).
        nonzero: Whether any value is non-zero, when concrete.
    """

    shape: tuple[int | None, ...] | None
    kind: str
    dtype: str
    lo: float | None = None
    hi: float | None = None
    nonzero: bool | None = None


# ------------------------------------------------------------------------------------- messages
def ids_range_message(vocab_size: int) -> str:
    return f"input_ids must be in [0, vocab_size={vocab_size}) (is the tokenizer's vocabulary the model's?)"


def positions_range_message(max_position_embeddings: int) -> str:
    return f"position_ids must be in [0, max_position_embeddings={max_position_embeddings})"


TOKEN_TYPES_MESSAGE = (
    "token_type_ids has non-zero values, but DistilBERT has no segment embeddings; "
    "drop token_type_ids (or tokenize with return_token_type_ids=False)"
)


def _got_range(info: ArrayInfo) -> str:
    return f"; got values in [{info.lo:g}, {info.hi:g}]"


def _layout(rank: int) -> str:
    return "(batch, seq_len)" if rank == 2 else "(batch, num_choices, seq_len)"


def _shape(shape) -> str:
    return "(?)" if shape is None else str(tuple(shape))


def _check_kind(name: str, info: ArrayInfo, kinds: str, what: str) -> None:
    if info.kind not in kinds:
        raise TypeError(f"{name} must be {what}, got dtype {info.dtype}")


def _same(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


def _matches(shape, expected) -> bool:
    return (
        shape is None
        or expected is None
        or (len(shape) == len(expected) and all(_same(a, b) for a, b in zip(shape, expected)))
    )


# ---------------------------------------------------------------------------------------- config
def as_config(config: Any) -> DistilBertConfig:
    """The constructors' ``config`` argument: a :class:`DistilBertConfig`, its dict, or a transformers config.

    Raises:
        TypeError: anything else (None included: there is no implicit default size).
    """
    if isinstance(config, DistilBertConfig):
        return config
    if isinstance(config, Mapping):
        return DistilBertConfig.from_dict(dict(config))
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):  # a transformers DistilBertConfig, for drop-in use
        data = to_dict()
        if isinstance(data, Mapping):
            return DistilBertConfig.from_dict(dict(data))
    raise TypeError(
        f"config must be a distilbert.DistilBertConfig, its dict or a transformers DistilBertConfig, "
        f"got {type(config).__name__} (DistilBertConfig() gives distilbert-base's sizes)"
    )


def check_head_config(config: DistilBertConfig, task: str) -> None:
    """Refuses, at construction, a config that ``task``'s head cannot use."""
    if task == "question_answering" and config.num_labels != 2:
        raise ValueError(
            f"question answering predicts a start and an end logit: it needs num_labels=2, got "
            f"num_labels={config.num_labels}; leave num_labels at 2 for this head"
        )


def check_inputs(
    config: DistilBertConfig,
    *,
    input_ids: ArrayInfo | None = None,
    inputs_embeds: ArrayInfo | None = None,
    attention_mask: ArrayInfo | None = None,
    position_ids: ArrayInfo | None = None,
    token_type_ids: ArrayInfo | None = None,
    head_mask: ArrayInfo | None = None,
    rank: int = 2,
) -> tuple[int | None, ...] | None:
    """Checks a call's inputs; returns the input's shape (``(B, T)``, or ``(B, C, T)`` when ``rank`` is 3).

    Args:
        config: The model's config.
        input_ids ... head_mask: The call's arrays (None when not given).
        rank: 2, or 3 for multiple choice.

    Raises:
        TypeError: an array has the wrong dtype.
        ValueError: anything else (see the module docstring).
    """
    if input_ids is not None and inputs_embeds is not None:
        raise ValueError("pass either input_ids or inputs_embeds, not both")
    if input_ids is not None:
        _check_kind("input_ids", input_ids, INTEGER, "integer token ids (pass inputs_embeds for vectors)")
        shape = input_ids.shape
        if shape is not None and len(shape) != rank:
            raise ValueError(f"input_ids must have shape {_layout(rank)}, got {_shape(shape)}")
        what = "input_ids"
    elif inputs_embeds is None:
        raise ValueError("pass input_ids or inputs_embeds")
    else:
        _check_kind("inputs_embeds", inputs_embeds, FLOAT, "floating point")
        full = inputs_embeds.shape
        if full is not None and len(full) != rank + 1:
            raise ValueError(f"inputs_embeds must have shape {_layout(rank)[:-1]}, dim), got {_shape(full)}")
        if full is not None and not _same(full[-1], config.dim):
            raise ValueError(f"inputs_embeds last axis must be dim={config.dim}, got {full[-1]}")
        shape = None if full is None else full[:-1]
        what = "inputs_embeds"
    seq_len = None if shape is None else shape[-1]
    if seq_len is not None and seq_len > config.max_position_embeddings:
        raise ValueError(
            f"sequence length {seq_len} exceeds max_position_embeddings={config.max_position_embeddings}; "
            "truncate the input (tokenizer truncation=True, max_length=...)"
        )
    if seq_len == 0:
        raise ValueError(f"{what} has an empty sequence axis")

    if attention_mask is not None:
        _check_kind("attention_mask", attention_mask, INTEGER + FLOAT + BOOL, "0/1 numbers or booleans")
        if not _matches(attention_mask.shape, shape):
            raise ValueError(
                f"attention_mask must have the shape of {what} {_shape(shape)}, got {_shape(attention_mask.shape)}"
            )
    if token_type_ids is not None:
        _check_kind("token_type_ids", token_type_ids, INTEGER + BOOL, "integers")
        if not _matches(token_type_ids.shape, shape):
            raise ValueError(
                f"token_type_ids must have the shape of {what} {_shape(shape)}, got {_shape(token_type_ids.shape)}"
            )
        if token_type_ids.nonzero:
            raise ValueError(TOKEN_TYPES_MESSAGE)
    if position_ids is not None:
        _check_position_ids(config, position_ids, shape, rank)
    if head_mask is not None:
        _check_kind("head_mask", head_mask, INTEGER + FLOAT + BOOL, "numbers (1 keeps a head, 0 masks it)")
        allowed = ((config.n_heads,), (config.n_layers, config.n_heads))
        if head_mask.shape is not None and not any(_matches(head_mask.shape, a) for a in allowed):
            raise ValueError(
                f"head_mask must have shape (n_heads,)=({config.n_heads},) or (n_layers, n_heads)="
                f"({config.n_layers}, {config.n_heads}), got {_shape(head_mask.shape)}"
            )
    if input_ids is not None and _outside(input_ids, 0, config.vocab_size):
        raise ValueError(ids_range_message(config.vocab_size) + _got_range(input_ids))
    return shape


def _check_position_ids(config: DistilBertConfig, info: ArrayInfo, shape, rank: int) -> None:
    _check_kind("position_ids", info, INTEGER, "integer positions")
    p = info.shape
    if p is not None and shape is not None:
        ok = (
            1 <= len(p) <= rank
            and _same(p[-1], shape[-1])
            and all(a is None or a == 1 or _same(a, b) for a, b in zip(p[-2::-1], shape[-2::-1]))
        )
        if not ok:
            forms = (
                "(T,), (1, T) or (B, T)" if rank == 2 else "(T,), (C, T), (1, 1, T), (B, 1, T), (1, C, T) or (B, C, T)"
            )
            raise ValueError(
                f"position_ids must broadcast to the input's shape {_shape(shape)} along its whole "
                f"sequence axis: {forms}; got {_shape(p)}"
            )
    if _outside(info, 0, config.max_position_embeddings):
        raise ValueError(positions_range_message(config.max_position_embeddings) + _got_range(info))


def check_token_type_ids(any_nonzero: bool) -> None:
    """``token_type_ids`` are accepted for BERT tokenizers' sake, but DistilBERT has no segments."""
    if any_nonzero:
        raise ValueError(TOKEN_TYPES_MESSAGE)


def _outside(info: ArrayInfo, low: int, high: int, allowed: int | None = None) -> bool:
    """Whether concrete values fall outside ``[low, high)`` (``allowed`` is accepted below ``low``)."""
    if info.lo is None or info.hi is None:
        return False
    return (info.lo < low and info.lo != allowed) or info.hi >= high


# ---------------------------------------------------------------------------------------- labels
def _check_class_ids(name: str, info: ArrayInfo, n_classes: int, what: str) -> None:
    """Integer class ids in ``[0, n_classes)``, ``-100`` ignored (range checked when concrete)."""
    _check_kind(name, info, INTEGER, f"integer {what} (got floats? cast them, or set problem_type)")
    if _outside(info, 0, n_classes, allowed=IGNORE_INDEX):
        raise ValueError(f"{name} must be {what} in [0, {n_classes}) or {IGNORE_INDEX} (ignored)" + _got_range(info))


def _check_shape(name: str, info: ArrayInfo, *allowed: tuple) -> None:
    if info.shape is not None and not any(_matches(info.shape, a) for a in allowed):
        forms = " or ".join(str(a).replace("None", "?") for a in allowed)
        raise ValueError(f"{name} must have shape {forms}, got {_shape(info.shape)}")


def check_labels(
    config: DistilBertConfig,
    task: str,
    input_shape,
    *,
    labels: ArrayInfo | None = None,
    start_positions: ArrayInfo | None = None,
    end_positions: ArrayInfo | None = None,
) -> str | None:
    """Checks a head's labels against its task and the input's shape.

    Args:
        config: The model's config.
        task: The head's task.
        input_shape: What :func:`check_inputs` returned (``(B, T)``, or ``(B, C, T)`` for multiple choice).
        labels / start_positions / end_positions: The call's label arrays (None when not given).

    Returns:
        For sequence classification with labels, the loss's ``problem_type`` (``config.problem_type``,
        or inferred from ``num_labels`` and the labels' dtype as the reference does); else None. When
        the config has none, every backend records it on ``model.config`` and ``model.distilbert.config``
        (the reference shares one config object between them); ``torch.compile`` graphs do not record it.
    """
    if start_positions is not None or end_positions is not None:
        if task != "question_answering":
            raise TypeError(f"the {task} head takes labels, not start_positions/end_positions")
        if start_positions is None or end_positions is None:
            raise ValueError("pass both start_positions and end_positions (or neither)")
    if labels is not None and task in ("base", "question_answering"):
        raise TypeError(
            "the bare model takes no labels (use a head class)"
            if task == "base"
            else "question answering takes start_positions and end_positions, not labels"
        )
    shape = input_shape if input_shape is not None else (None, None)
    batch = shape[0]
    if task == "question_answering":
        for name, info in (("start_positions", start_positions), ("end_positions", end_positions)):
            if info is not None:
                _check_kind(name, info, INTEGER, "integer token positions")
                _check_shape(name, info, (batch,), (batch, 1))
        return None
    if labels is None:
        return None
    if task in ("masked_lm", "token_classification"):
        n = config.vocab_size if task == "masked_lm" else config.num_labels
        _check_class_ids("labels", labels, n, "token labels")
        _check_shape("labels", labels, tuple(shape))
        return None
    if task == "multiple_choice":
        _check_class_ids("labels", labels, shape[1] if shape[1] is not None else 2**62, "choice indices")
        _check_shape("labels", labels, (batch,))
        return None
    n = config.num_labels
    kind = problem_type_for(config.problem_type, n, labels.kind in INTEGER)
    if kind == "single_label_classification":
        _check_class_ids("labels", labels, n, "class ids")
        _check_shape("labels", labels, (batch,), (batch, 1))
    elif kind == "multi_label_classification":
        _check_kind("labels", labels, INTEGER + FLOAT + BOOL, "0/1 targets")
        _check_shape("labels", labels, (batch, n))
    else:  # regression
        _check_kind("labels", labels, INTEGER + FLOAT, "numbers")
        _check_shape("labels", labels, *(((batch,), (batch, 1)) if n == 1 else ((batch, n),)))
    return kind
