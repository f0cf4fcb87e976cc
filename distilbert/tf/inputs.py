"""Call-argument handling for the Keras models: dict unpacking, conversion, and what they hand to the validator.

Every rule and message is :mod:`distilbert.common.validation`'s. Eagerly, bad values raise its
exceptions before any arithmetic. Inside ``tf.function`` shapes and dtypes are still checked while
tracing; value checks (ids outside the vocabulary, positions outside the table, non-zero
``token_type_ids``) become ``tf.debugging`` assertions that raise ``InvalidArgumentError`` with the
same messages. XLA compiles assertions away and clamps out-of-range gathers, so the model also
poisons such sequences: every output of a sequence with a bad value is NaN instead of a silent,
wrong number.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from distilbert.common import validation
from distilbert.common.config import DistilBertConfig
from distilbert.common.validation import ArrayInfo

# Arguments that carry arrays (converted to tensors); the rest are Python flags.
TENSOR_ARGS = (
    "input_ids",
    "attention_mask",
    "head_mask",
    "inputs_embeds",
    "labels",
    "position_ids",
    "token_type_ids",
    "start_positions",
    "end_positions",
)


def to_tensor(value):
    """Tensors pass through; numpy arrays and (nested) lists become tensors."""
    if value is None or tf.is_tensor(value):
        return value
    try:
        array = np.asarray(value)
    except ValueError:
        array = np.empty(0, object)
    if array.dtype == object:
        raise ValueError("inputs must be rectangular arrays; pad the batch (tokenizer padding=True)")
    return tf.convert_to_tensor(array)


def unpack_inputs(call):
    """Lets ``call`` take its arguments as keywords or as a dict in the first argument.

    Keys of the dict must be ``call``'s argument names; a key given both ways is an error.
    Array arguments are converted to tensors.
    """
    names = set(inspect.signature(call).parameters) - {"self"}

    @functools.wraps(call)
    def wrapper(self, input_ids=None, *args, **kwargs):
        if isinstance(input_ids, Mapping):
            given = dict(input_ids)
            unknown = sorted(set(given) - names)
            if unknown:
                raise TypeError(
                    f"unexpected input(s) {unknown} for {type(self).__name__}; "
                    f"accepted names: {sorted(names - {'training'})}"
                )
            clash = sorted(k for k in given if kwargs.get(k) is not None)
            if clash:
                raise ValueError(f"{clash} given both in the input dict and as keyword arguments; give each once")
            kwargs.update(given)
            input_ids = kwargs.pop("input_ids", None)
        input_ids = to_tensor(input_ids)
        for key in TENSOR_ARGS:
            if key in kwargs:
                kwargs[key] = to_tensor(kwargs[key])
        return call(self, input_ids, *args, **kwargs)

    return wrapper


def _kind(dtype: tf.DType) -> str:
    if dtype.is_bool:
        return "b"
    if dtype.is_complex:
        return "c"
    if dtype.is_floating:
        return "f"
    if dtype.is_integer:
        return "u" if dtype.is_unsigned else "i"
    return "O"


def _eager(*tensors) -> bool:
    return tf.executing_eagerly() and all(t is None or hasattr(t, "numpy") for t in tensors)


def describe(x, values: str | None = None) -> ArrayInfo | None:
    """``x`` as an :class:`ArrayInfo`: its static shape, and (eagerly) ``values`` ``"range"`` or ``"nonzero"``."""
    if x is None:
        return None
    shape = None if x.shape.rank is None else tuple(x.shape.as_list())
    kind, lo, hi, nonzero = _kind(x.dtype), None, None, None
    if values and kind in "iu" and _eager(x) and int(tf.size(x)):
        if values == "range":
            lo, hi = int(tf.reduce_min(x)), int(tf.reduce_max(x))
        else:
            nonzero = bool(tf.reduce_any(x != 0))
    return ArrayInfo(shape, kind, x.dtype.name, lo, hi, nonzero)


def check_shapes(
    config: DistilBertConfig,
    input_ids=None,
    attention_mask=None,
    inputs_embeds=None,
    position_ids=None,
    token_type_ids=None,
    head_mask=None,
    rank: int = 2,
    values: bool = False,
):
    """The validator on the inputs' static shapes and dtypes (and eager values); returns the input's shape."""
    v = values or None
    return validation.check_inputs(
        config,
        input_ids=describe(input_ids, v and "range"),
        inputs_embeds=describe(inputs_embeds),
        attention_mask=describe(attention_mask),
        position_ids=describe(position_ids, v and "range"),
        token_type_ids=describe(token_type_ids, v and "nonzero"),
        head_mask=describe(head_mask),
        rank=rank,
    )


def validate(
    config: DistilBertConfig, input_ids, attention_mask, inputs_embeds, position_ids, token_type_ids, head_mask=None
):
    """Checks the base model's inputs; returns a ``(B, T)`` bool "bad token" tensor or None.

    Raises eagerly; in graph mode adds assertions and returns the mask of tokens to poison.
    """
    eager = _eager(input_ids, position_ids, token_type_ids)
    check_shapes(
        config, input_ids, attention_mask, inputs_embeds, position_ids, token_type_ids, head_mask, values=eager
    )
    if eager:
        return None

    # Graph mode: assertions (effective outside XLA) and a poison mask (effective everywhere).
    bad, asserts = None, []
    shape = tf.shape(input_ids) if input_ids is not None else tf.shape(inputs_embeds)[:-1]  # [B, T]

    def guard(condition, message, *data):
        nonlocal bad
        asserts.append(tf.debugging.Assert(tf.logical_not(tf.reduce_any(condition)), [message, *data]))
        bad = condition if bad is None else tf.logical_or(bad, condition)

    if input_ids is not None:
        guard(
            (input_ids < 0) | (input_ids >= config.vocab_size),
            validation.ids_range_message(config.vocab_size) + "; smallest and largest id:",
            tf.reduce_min(input_ids),
            tf.reduce_max(input_ids),
        )
    if position_ids is not None:
        guard(
            (position_ids < 0) | (position_ids >= config.max_position_embeddings),
            validation.positions_range_message(config.max_position_embeddings),
        )
    if token_type_ids is not None:
        guard(token_type_ids != 0, validation.TOKEN_TYPES_MESSAGE)
    if bad is None:
        return None
    with tf.control_dependencies(asserts):
        return tf.identity(tf.broadcast_to(bad, shape))  # position_ids may be (T,) or (1, T)


def check_labels(config: DistilBertConfig, task: str, shape, labels=None, start_positions=None, end_positions=None):
    """Validates a head's labels (ranges eagerly); returns the sequence-classification ``problem_type``."""
    shape = tuple(shape.as_list()) if isinstance(shape, tf.TensorShape) else shape
    return validation.check_labels(
        config,
        task,
        shape,
        labels=describe(labels, "range"),
        start_positions=describe(start_positions),
        end_positions=describe(end_positions),
    )


def head_mask_for(config: DistilBertConfig, head_mask):
    """``head_mask`` of shape ``(n_heads,)`` or ``(n_layers, n_heads)`` (checked) as ``(L, 1, H, 1, 1)``."""
    if head_mask is None:
        return None
    c = config
    head_mask = tf.convert_to_tensor(head_mask)
    if head_mask.shape.rank == 1:
        head_mask = tf.tile(head_mask[None], (c.n_layers, 1))
    return tf.reshape(head_mask, (c.n_layers, 1, c.n_heads, 1, 1))  # (L, 1, H, 1, 1)
