"""What the Flax NNX classes hand to :mod:`distilbert.common.validation`: shapes, dtypes and host values.

Shapes and dtypes are static, so they are checked inside ``jit`` too. Values are checked when they are
concrete (numpy, lists, jax arrays, constants closed over by a jitted function); on tracers they
cannot be, and the model gives NaN embeddings for an id or position outside its table instead of
JAX's silent clamping (see :mod:`distilbert.flax.modeling`), and ignores ``token_type_ids``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from distilbert.common import validation
from distilbert.common.config import DistilBertConfig
from distilbert.common.validation import ArrayInfo


def as_array(x):
    """Arrays (numpy, jax, tracers) as they are; lists and scalars as numpy arrays."""
    return x if x is None or hasattr(x, "dtype") else np.asarray(x)


def is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _kind(dtype) -> str:
    for kind, base in (
        ("b", jnp.bool_),
        ("i", jnp.signedinteger),
        ("u", jnp.unsignedinteger),
        ("f", jnp.floating),
        ("c", jnp.complexfloating),
    ):
        if jnp.issubdtype(dtype, base):
            return kind
    return "O"


def describe(x, values: str | None = None) -> ArrayInfo | None:
    """``x`` as an :class:`ArrayInfo`; ``values`` (``"range"`` or ``"nonzero"``) read on the host when concrete."""
    if x is None:
        return None
    kind, lo, hi, nonzero = _kind(x.dtype), None, None, None
    if values and kind in "iu" and not is_traced(x) and x.size:
        host = np.asarray(x)
        if values == "range":
            lo, hi = int(host.min()), int(host.max())
        else:
            nonzero = bool(np.any(host != 0))
    return ArrayInfo(tuple(x.shape), kind, str(x.dtype), lo, hi, nonzero)


def prepare(
    config: DistilBertConfig,
    rank: int,
    input_ids,
    inputs_embeds,
    attention_mask,
    position_ids,
    token_type_ids,
    head_mask,
):
    """Checks a call's inputs (values on the host when concrete); folds multiple choice into the batch.

    Returns:
        ``(ids, embeds, mask, positions, head_mask, shape)``: arrays as the encoder takes them, and the
        input's shape before folding (``(B, T)`` or ``(B, C, T)``).
    """
    ids, embeds, mask, pos, types, heads = (
        as_array(x) for x in (input_ids, inputs_embeds, attention_mask, position_ids, token_type_ids, head_mask)
    )
    shape = validation.check_inputs(
        config,
        input_ids=describe(ids, "range"),
        inputs_embeds=describe(embeds),
        attention_mask=describe(mask),
        position_ids=describe(pos, "range"),
        token_type_ids=describe(types, "nonzero"),
        head_mask=describe(heads),
        rank=rank,
    )
    if rank == 3:  # multiple choice: every choice is a sequence of the batch
        fold = lambda x: None if x is None else x.reshape((-1,) + tuple(x.shape[2:]))  # noqa: E731
        ids, embeds, mask = fold(ids), fold(embeds), fold(mask)
        pos = None if pos is None else fold(jnp.broadcast_to(pos, shape))
    return ids, embeds, mask, pos, heads, shape


def check_labels(config: DistilBertConfig, task: str, shape, labels=None, start_positions=None, end_positions=None):
    """Validates a head's labels (ranges when concrete); returns the sequence-classification ``problem_type``."""
    return validation.check_labels(
        config,
        task,
        shape,
        labels=describe(as_array(labels), "range"),
        start_positions=describe(as_array(start_positions)),
        end_positions=describe(as_array(end_positions)),
    )
