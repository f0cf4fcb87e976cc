"""Call-argument handling for the Keras models: dict unpacking, conversion, validation.

Eagerly, bad values raise :class:`ValueError` with :mod:`distilbert.common.validation`'s messages
before any arithmetic. Inside ``tf.function`` shapes and dtypes are still checked while tracing;
value checks (ids outside the vocabulary, positions outside the table, non-zero
``token_type_ids``) become ``tf.debugging`` assertions that raise ``InvalidArgumentError`` with the
same advice. XLA compiles assertions away and clamps out-of-range gathers, so the model also
poisons such sequences: every output of a sequence with a bad value is NaN instead of a silent,
wrong number.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from distilbert.common.config import DistilBertConfig
from distilbert.common.validation import check_inputs, check_token_type_ids

# Arguments that carry arrays (converted to tensors); the rest are Python flags.
TENSOR_ARGS = ("input_ids", "attention_mask", "head_mask", "inputs_embeds", "labels", "position_ids",
               "token_type_ids", "start_positions", "end_positions")


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
                raise ValueError(f"unexpected input(s) {unknown} for {type(self).__name__}; "
                                 f"accepted names: {sorted(names - {'training'})}")
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


def _static_shape(x) -> tuple | None:
    return None if x is None or x.shape.rank is None else tuple(x.shape.as_list())


def _eager(*tensors) -> bool:
    return tf.executing_eagerly() and all(t is None or hasattr(t, "numpy") for t in tensors)


def check_rank(config: DistilBertConfig, input_ids, inputs_embeds, expect_rank: int) -> None:
    """Static checks only (ranks, sequence length, which inputs): for heads that reshape first."""
    shape = _static_shape(input_ids) if input_ids is not None else (
        None if _static_shape(inputs_embeds) is None else _static_shape(inputs_embeds)[:-1])
    check_inputs(config, shape, input_ids is not None, inputs_embeds is not None, expect_rank=expect_rank)


def validate(config: DistilBertConfig, input_ids, attention_mask, inputs_embeds, position_ids, token_type_ids):
    """Checks the base model's inputs; returns a ``(B, T)`` bool "bad token" tensor or None.

    Raises eagerly; in graph mode adds assertions and returns the mask of tokens to poison.
    """
    has_ids, has_embeds = input_ids is not None, inputs_embeds is not None
    if has_ids and not input_ids.dtype.is_integer:
        raise ValueError(f"input_ids must be integer token ids, got dtype {input_ids.dtype.name}; "
                         "pass the tokenizer's ids (or inputs_embeds for vectors)")
    if has_embeds and not inputs_embeds.dtype.is_floating:
        raise ValueError(f"inputs_embeds must be floating point, got dtype {inputs_embeds.dtype.name}")
    embeds_shape = _static_shape(inputs_embeds)
    shape = _static_shape(input_ids) if has_ids else (None if embeds_shape is None else embeds_shape[:-1])
    check_inputs(config, shape, has_ids, has_embeds, embeds_shape=embeds_shape)
    for name, t in (("attention_mask", attention_mask), ("position_ids", position_ids),
                    ("token_type_ids", token_type_ids)):
        if t is None:
            continue
        if name != "attention_mask" and not t.dtype.is_integer:
            raise ValueError(f"{name} must be integers, got dtype {t.dtype.name}")
        if name == "attention_mask" and not (t.dtype.is_integer or t.dtype.is_floating or t.dtype.is_bool):
            raise ValueError(f"attention_mask must be 0/1 numbers or booleans, got dtype {t.dtype.name}")
        t_shape = _static_shape(t)
        if shape is not None and t_shape is not None and len(t_shape) != len(shape):
            raise ValueError(f"{name} must have the shape of input_ids {shape}, got {t_shape}")
        if shape is not None and t_shape is not None and any(
                a is not None and b is not None and a != b and not (name == "position_ids" and a == 1)
                for a, b in zip(t_shape, shape)):
            raise ValueError(f"{name} must have the shape of input_ids {shape}, got {t_shape}")

    n_pos = config.max_position_embeddings
    if _eager(input_ids, position_ids, token_type_ids):
        if has_ids and int(tf.size(input_ids)):
            check_inputs(config, None, True, False, id_min=int(tf.reduce_min(input_ids)),
                         id_max=int(tf.reduce_max(input_ids)))
        if position_ids is not None and int(tf.size(position_ids)):
            lo, hi = int(tf.reduce_min(position_ids)), int(tf.reduce_max(position_ids))
            if lo < 0 or hi >= n_pos:
                raise ValueError(f"position_ids must be in [0, max_position_embeddings={n_pos}), got values "
                                 f"in [{lo}, {hi}]")
        if token_type_ids is not None:
            check_token_type_ids(bool(tf.reduce_any(token_type_ids != 0)))
        return None

    # Graph mode: assertions (effective outside XLA) and a poison mask (effective everywhere).
    bad, asserts = None, []

    def guard(condition, message, *data):
        nonlocal bad
        asserts.append(tf.debugging.Assert(tf.logical_not(tf.reduce_any(condition)), [message, *data]))
        bad = condition if bad is None else tf.logical_or(bad, condition)

    if has_ids:
        guard((input_ids < 0) | (input_ids >= config.vocab_size),
              f"input_ids must be in [0, vocab_size={config.vocab_size}); is the tokenizer's vocabulary the "
              "model's? smallest and largest id:", tf.reduce_min(input_ids), tf.reduce_max(input_ids))
    if position_ids is not None:
        guard((position_ids < 0) | (position_ids >= n_pos),
              f"position_ids must be in [0, max_position_embeddings={n_pos})")
    if token_type_ids is not None:
        guard(token_type_ids != 0, "token_type_ids has non-zero values, but DistilBERT has no segment "
              "embeddings; drop token_type_ids (or tokenize with return_token_type_ids=False)")
    if bad is None:
        return None
    with tf.control_dependencies(asserts):
        return tf.identity(bad)


def head_mask_for(config: DistilBertConfig, head_mask):
    """``head_mask`` of shape ``(n_heads,)`` or ``(n_layers, n_heads)`` as ``(L, 1, H, 1, 1)``; 1 keeps a head."""
    if head_mask is None:
        return None
    c = config
    head_mask = tf.convert_to_tensor(head_mask)
    if tuple(head_mask.shape) == (c.n_heads,):
        head_mask = tf.tile(head_mask[None], (c.n_layers, 1))
    if tuple(head_mask.shape) != (c.n_layers, c.n_heads):
        raise ValueError(f"head_mask must have shape (n_heads,)=({c.n_heads},) or (n_layers, n_heads)="
                         f"({c.n_layers}, {c.n_heads}), got {tuple(head_mask.shape)}")
    return tf.reshape(head_mask, (c.n_layers, 1, c.n_heads, 1, 1))  # (L, 1, H, 1, 1)
