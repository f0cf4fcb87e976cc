"""DistilBERT in Flax NNX: the bare model and its five task heads.

The module tree and attribute names are the PyTorch backend's, so the NNX variable paths are the
weight table's ``"nnx"`` column. ``dtype`` is the compute dtype and ``param_dtype`` the storage
dtype (bfloat16 compute over float32 parameters); softmax and LayerNorm statistics stay float32.

Inputs are checked before anything is traced. Out-of-vocabulary ids and over-long sequences raise
when the values are concrete (eager calls, and ``model(...)`` outside ``jit``). Inside ``jit`` the
shapes are still checked (they are static) but the values are not: an id outside
``[0, vocab_size)`` (or a ``position_ids`` value outside the position table) gives NaN embeddings,
hence NaN outputs, instead of JAX's silent clamping, and ``token_type_ids`` are ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from distilbert.common import outputs as out_lib
from distilbert.common.config import DistilBertConfig
from distilbert.common.names import sinusoidal_table
from distilbert.common.validation import check_inputs, check_token_type_ids
from distilbert.flax import loading, losses

# The shared output dataclasses become pytrees, so jitted functions can return them.
for _cls in out_lib.OUTPUT_CLASSES:
    try:
        jax.tree_util.register_dataclass(_cls, [f.name for f in dataclasses.fields(_cls)], [])
    except ValueError:  # already registered (module reloaded)
        pass


def _concrete(x) -> bool:
    return x is not None and not isinstance(x, jax.core.Tracer)


def _as_array(x):
    return x if x is None or hasattr(x, "dtype") else np.asarray(x)


def _broadcasts(shape, target) -> bool:
    try:
        return np.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except ValueError:
        return False


def _lookup(table: jax.Array, ids: jax.Array) -> jax.Array:
    """``table[ids]``, but ids outside ``[0, len(table))`` give NaN rows rather than clamped ones."""
    n = table.shape[0]
    ids = jnp.where((ids >= 0) & (ids < n), ids, n)
    return jnp.take(table, ids, axis=0, mode="fill", fill_value=jnp.nan)


@functools.lru_cache(maxsize=8)
def _sinusoids(n_pos: int, dim: int) -> np.ndarray:
    return sinusoidal_table(n_pos, dim)


class _Factory:
    """Builds the layers of one model with its dtypes, initialiser and RNG streams."""

    def __init__(self, config: DistilBertConfig, dtype, param_dtype, rngs: nnx.Rngs):
        self.config, self.dtype, self.param_dtype, self.rngs = config, dtype, param_dtype, rngs
        self.init = nnx.initializers.normal(config.initializer_range)

    def linear(self, n_in: int, n_out: int) -> nnx.Linear:
        # float32 accumulation and output: more accurate under bfloat16, and on CPU XLA's bf16 x bf16
        # -> f32 matmul is several times faster than bf16 -> bf16.
        return nnx.Linear(n_in, n_out, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=self.init,
                          preferred_element_type=jnp.float32, rngs=self.rngs)

    def norm(self, n: int) -> nnx.LayerNorm:
        return nnx.LayerNorm(n, epsilon=1e-12, dtype=self.dtype, param_dtype=self.param_dtype,
                             use_fast_variance=False, rngs=self.rngs)

    def embed(self, n: int, dim: int) -> nnx.Embed:
        return nnx.Embed(n, dim, dtype=self.dtype, param_dtype=self.param_dtype, embedding_init=self.init,
                         rngs=self.rngs)

    def dropout(self, rate: float) -> nnx.Dropout:
        # Inference by default, as the reference (``train=False``); ``model.train()`` turns it on.
        return nnx.Dropout(rate, deterministic=True, rngs=self.rngs)


def _activation(name: str):
    return functools.partial(jax.nn.gelu, approximate=False) if name == "gelu" else jax.nn.relu


class SinusoidalPositions(nnx.Module):
    """The fixed sin/cos position table: a constant of the computation, not a parameter."""

    def __init__(self, n_pos: int, dim: int):
        self.n_pos, self.dim = n_pos, dim

    @property
    def embedding(self) -> jax.Array:
        return jnp.asarray(_sinusoids(self.n_pos, self.dim))


class Embeddings(nnx.Module):
    def __init__(self, config: DistilBertConfig, f: _Factory):
        self.word_embeddings = f.embed(config.vocab_size, config.dim)
        if config.pad_token_id is not None:
            table = self.word_embeddings.embedding
            table[...] = table[...].at[config.pad_token_id].set(0)
        if config.sinusoidal_pos_embds:
            self.position_embeddings = SinusoidalPositions(config.max_position_embeddings, config.dim)
        else:
            self.position_embeddings = f.embed(config.max_position_embeddings, config.dim)
        self.LayerNorm = f.norm(config.dim)
        self.dropout = f.dropout(config.dropout)

    def __call__(self, input_ids, inputs_embeds, position_ids, deterministic):
        if inputs_embeds is None:
            inputs_embeds = _lookup(self.word_embeddings.embedding[...], input_ids)  # (B, T, D)
        positions = self.position_embeddings.embedding[...]  # (P, D)
        if position_ids is None:
            positions = positions[None, : inputs_embeds.shape[1]]  # (1, T, D)
        else:
            positions = _lookup(positions, position_ids)  # (B, T, D)
        hidden = self.LayerNorm(inputs_embeds + positions.astype(inputs_embeds.dtype))  # (B, T, D)
        return self.dropout(hidden, deterministic=deterministic)


class MultiHeadSelfAttention(nnx.Module):
    def __init__(self, config: DistilBertConfig, f: _Factory):
        self.n_heads, self.head_dim, self.dtype = config.n_heads, config.head_dim, f.dtype or jnp.float32
        self.q_lin = f.linear(config.dim, config.dim)
        self.k_lin = f.linear(config.dim, config.dim)
        self.v_lin = f.linear(config.dim, config.dim)
        self.out_lin = f.linear(config.dim, config.dim)
        self.dropout = f.dropout(config.attention_dropout)

    def __call__(self, x, keep, head_mask, deterministic, output_attentions):
        B, T, _ = x.shape
        split = (B, T, self.n_heads, self.head_dim)
        q = (self.q_lin(x) / math.sqrt(self.head_dim)).astype(self.dtype).reshape(split)  # (B, T, H, Dh)
        k = self.k_lin(x).astype(self.dtype).reshape(split)  # (B, T, H, Dh)
        v = self.v_lin(x).astype(self.dtype).reshape(split)  # (B, T, H, Dh)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)  # (B, H, T, T)
        if keep is not None:
            scores = jnp.where(keep[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1)  # (B, H, T, T)
        weights = self.dropout(weights, deterministic=deterministic)
        if head_mask is not None:
            weights = weights * head_mask[None, :, None, None]
        context = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), v,
                             preferred_element_type=jnp.float32)  # (B, T, H, Dh)
        out = self.out_lin(context.reshape(B, T, -1))  # (B, T, D)
        return out, (weights if output_attentions else None)


class FFN(nnx.Module):
    def __init__(self, config: DistilBertConfig, f: _Factory):
        self.lin1 = f.linear(config.dim, config.hidden_dim)
        self.lin2 = f.linear(config.hidden_dim, config.dim)
        self.dropout = f.dropout(config.dropout)
        self.activation = config.activation

    def __call__(self, x, deterministic):
        x = _activation(self.activation)(self.lin1(x))  # (B, T, F)
        return self.dropout(self.lin2(x), deterministic=deterministic)  # (B, T, D)


class TransformerBlock(nnx.Module):
    def __init__(self, config: DistilBertConfig, f: _Factory):
        self.attention = MultiHeadSelfAttention(config, f)
        self.sa_layer_norm = f.norm(config.dim)
        self.ffn = FFN(config, f)
        self.output_layer_norm = f.norm(config.dim)

    def __call__(self, x, keep, head_mask, deterministic, output_attentions):
        attn, weights = self.attention(x, keep, head_mask, deterministic, output_attentions)
        x = self.sa_layer_norm(attn + x)  # (B, T, D)
        x = self.output_layer_norm(self.ffn(x, deterministic) + x)  # (B, T, D)
        return x, weights


class Transformer(nnx.Module):
    def __init__(self, config: DistilBertConfig, f: _Factory, remat: bool):
        self.layer = nnx.List([TransformerBlock(config, f) for _ in range(config.n_layers)])
        self.remat = remat

    def __call__(self, x, keep, head_mask, deterministic, output_attentions, output_hidden_states):
        def run(block, x, keep, head_mask):
            return block(x, keep, head_mask, deterministic, output_attentions)

        if self.remat:  # recompute each block's activations in the backward pass
            run = nnx.remat(run)
        hidden, attentions = (x,), ()
        for i, block in enumerate(self.layer):
            x, weights = run(block, x, keep, None if head_mask is None else head_mask[i])
            hidden += (x,)
            attentions += (weights,)
        return out_lib.BaseModelOutput(x, hidden if output_hidden_states else None,
                                       attentions if output_attentions else None)


class FlaxDistilBertPreTrainedModel(nnx.Module):
    """Shared constructor arguments, input checks and ``from_pretrained``/``save_pretrained``.

    Args:
        config: The model's :class:`~distilbert.DistilBertConfig`.
        dtype: Compute dtype (``jnp.bfloat16`` for mixed precision).
        param_dtype: Parameter dtype (float32 by default).
        remat: Recompute each transformer block in the backward pass (gradient checkpointing).
        seed: Seed of the default ``nnx.Rngs`` when ``rngs`` is not given.
        rngs: ``nnx.Rngs`` for initialisation and dropout (a ``"dropout"`` stream if present).
    """

    task = "base"
    rank = 2  # of input_ids: (B, T); multiple choice: (B, C, T)

    def __init__(self, config: DistilBertConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 remat: bool = False, seed: int = 0, rngs: nnx.Rngs | None = None):
        if not isinstance(config, DistilBertConfig):
            raise TypeError(f"config must be a distilbert.DistilBertConfig, got {type(config).__name__}")
        self.config, self.dtype, self.param_dtype, self.remat = config, dtype, param_dtype, remat
        self._build(config, _Factory(config, dtype, param_dtype, rngs if rngs is not None else nnx.Rngs(seed)))

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        raise NotImplementedError

    from_pretrained = classmethod(loading.from_pretrained)
    save_pretrained = loading.save_pretrained

    def _check(self, input_ids, inputs_embeds, attention_mask, position_ids, token_type_ids, head_mask,
               rank: int = 2) -> None:
        config = self.config
        has_ids, has_embeds = input_ids is not None, inputs_embeds is not None
        shape, embeds_shape, lo, hi = None, None, None, None
        if has_ids and not has_embeds:
            if not jnp.issubdtype(input_ids.dtype, jnp.integer):
                raise TypeError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
            shape = tuple(input_ids.shape)
            if _concrete(input_ids) and input_ids.size:
                values = np.asarray(input_ids)
                lo, hi = int(values.min()), int(values.max())
        elif has_embeds and not has_ids:
            if not jnp.issubdtype(inputs_embeds.dtype, jnp.floating):
                raise TypeError(f"inputs_embeds must be floating point, got dtype {inputs_embeds.dtype}")
            shape, embeds_shape = tuple(inputs_embeds.shape[:-1]), tuple(inputs_embeds.shape)
        check_inputs(config, shape, has_ids, has_embeds, lo, hi, embeds_shape, expect_rank=rank)
        for name, value in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids),
                            ("position_ids", position_ids)):
            if value is not None and tuple(value.shape) != shape and not (
                    name == "position_ids" and _broadcasts(value.shape, shape)):
                raise ValueError(f"{name} must have the shape of the input ids {shape}, got {tuple(value.shape)}")
        if _concrete(token_type_ids):
            check_token_type_ids(bool(np.any(np.asarray(token_type_ids) != 0)))
        if _concrete(position_ids) and position_ids.size:
            values = np.asarray(position_ids)
            if values.min() < 0 or values.max() >= config.max_position_embeddings:
                raise ValueError(f"position_ids must be in [0, max_position_embeddings="
                                 f"{config.max_position_embeddings}), got [{values.min()}, {values.max()}]")
        if head_mask is not None and tuple(head_mask.shape) not in ((config.n_heads,),
                                                                    (config.n_layers, config.n_heads)):
            raise ValueError(f"head_mask must have shape (n_heads,) = ({config.n_heads},) or (n_layers, n_heads) = "
                             f"({config.n_layers}, {config.n_heads}), got {tuple(head_mask.shape)}")


class FlaxDistilBertModel(FlaxDistilBertPreTrainedModel):
    """The bare DistilBERT encoder, returning hidden states.

    Call arguments (all optional but one of ``input_ids``/``inputs_embeds``): ``input_ids`` (B, T)
    ints, ``attention_mask`` (B, T) (non-zero = attend), ``head_mask`` (H,) or (L, H) multiplying
    the attention weights, ``inputs_embeds`` (B, T, D), ``position_ids`` (B, T), ``token_type_ids``
    (all zeros), ``output_attentions``, ``output_hidden_states``, ``return_dict`` and
    ``deterministic`` (None: dropout follows ``model.train()``/``model.eval()``; default eval).

    Example:
        >>> import jax.numpy as jnp
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.flax import FlaxDistilBertModel
        >>> model = FlaxDistilBertModel(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37, n_layers=2))
        >>> model(jnp.array([[101, 7592, 102]])).last_hidden_state.shape
        (1, 3, 32)
    """

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        self.embeddings = Embeddings(config, f)
        self.transformer = Transformer(config, f, self.remat)

    def __call__(self, input_ids=None, attention_mask=None, head_mask=None, inputs_embeds=None, position_ids=None,
                 token_type_ids=None, output_attentions=False, output_hidden_states=False, return_dict=True,
                 deterministic=None):
        args = [_as_array(a) for a in (input_ids, inputs_embeds, attention_mask, position_ids, token_type_ids,
                                       head_mask)]
        self._check(*args)
        out = self.encode(*args[:5], head_mask=args[5], output_attentions=output_attentions,
                          output_hidden_states=output_hidden_states, deterministic=deterministic)
        return out if return_dict else out.to_tuple()

    def encode(self, input_ids, inputs_embeds, attention_mask, position_ids, token_type_ids=None, head_mask=None,
               output_attentions=False, output_hidden_states=False, deterministic=None) -> out_lib.BaseModelOutput:
        """The forward pass on checked inputs (the heads call this)."""
        keep = None if attention_mask is None else attention_mask != 0  # (B, T)
        if head_mask is not None:
            head_mask = jnp.broadcast_to(jnp.asarray(head_mask, jnp.float32),
                                         (self.config.n_layers, self.config.n_heads))  # (L, H)
        x = self.embeddings(input_ids, inputs_embeds, position_ids, deterministic)  # (B, T, D)
        return self.transformer(x, keep, head_mask, deterministic, output_attentions, output_hidden_states)


def _fold(a, shape=None):
    """(B, C, ...) -> (B * C, ...): multiple choice runs every choice as a sequence of the batch."""
    if a is None:
        return None
    a = a if shape is None else jnp.broadcast_to(a, shape)
    return a.reshape((-1,) + tuple(a.shape[2:]))


class _Head(FlaxDistilBertPreTrainedModel):
    """A task head over ``self.distilbert``; subclasses add layers and define ``_head``."""

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        self.distilbert = FlaxDistilBertModel(config, dtype=self.dtype, param_dtype=self.param_dtype,
                                              remat=self.remat, rngs=f.rngs)

    def __call__(self, input_ids=None, attention_mask=None, head_mask=None, inputs_embeds=None, position_ids=None,
                 token_type_ids=None, labels=None, output_attentions=False, output_hidden_states=False,
                 return_dict=True, deterministic=None, start_positions=None, end_positions=None):
        args = [_as_array(a) for a in (input_ids, inputs_embeds, attention_mask, position_ids, token_type_ids,
                                       head_mask)]
        self._check(*args, rank=self.rank)
        input_ids, inputs_embeds, attention_mask, position_ids = args[:4]
        if self.task == "question_answering":
            if labels is not None:
                raise TypeError("question answering takes start_positions and end_positions, not labels")
            if start_positions is not None and end_positions is not None:
                labels = (jnp.asarray(start_positions), jnp.asarray(end_positions))
        elif start_positions is not None or end_positions is not None:
            raise TypeError(f"start_positions/end_positions are for question answering; {type(self).__name__} "
                            "takes labels")
        lead = None
        if self.rank == 3:
            lead = (input_ids if input_ids is not None else inputs_embeds).shape[:2]  # (B, C)
            shape = lead + (input_ids if input_ids is not None else inputs_embeds).shape[2:3]  # (B, C, T)
            input_ids, inputs_embeds, attention_mask = _fold(input_ids), _fold(inputs_embeds), _fold(attention_mask)
            position_ids = _fold(position_ids, shape)
        base = self.distilbert.encode(input_ids, inputs_embeds, attention_mask, position_ids, None, args[5],
                                      output_attentions, output_hidden_states, deterministic)
        out = self._head(base, deterministic, None if labels is None else labels, lead)
        return out if return_dict else out.to_tuple()


class FlaxDistilBertForMaskedLM(_Head):
    """DistilBERT with its masked-language-modelling head; ``labels`` (B, T), -100 ignored.

    Example:
        >>> import jax.numpy as jnp
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.flax import FlaxDistilBertForMaskedLM
        >>> model = FlaxDistilBertForMaskedLM(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37, vocab_size=99))
        >>> model(jnp.array([[1, 5, 2]])).logits.shape
        (1, 3, 99)
    """

    task = "masked_lm"

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        super()._build(config, f)
        self.vocab_transform = f.linear(config.dim, config.dim)
        self.vocab_layer_norm = f.norm(config.dim)
        self.vocab_projector = VocabProjector(config, f)

    def _head(self, base, deterministic, labels=None, lead=None):
        x = _activation(self.config.activation)(self.vocab_transform(base.last_hidden_state))  # (B, T, D)
        x = self.vocab_layer_norm(x)  # (B, T, D)
        logits = self.vocab_projector(x, self.distilbert.embeddings.word_embeddings.embedding[...])  # (B, T, V)
        loss = None if labels is None else losses.masked_lm_loss(logits, jnp.asarray(labels))
        return out_lib.MaskedLMOutput(loss, logits, base.hidden_states, base.attentions)


class VocabProjector(nnx.Module):
    """The MLM output layer: the word embeddings transposed (tied) or its own ``kernel``, plus ``bias``."""

    def __init__(self, config: DistilBertConfig, f: _Factory):
        self.dtype = f.dtype
        self.bias = nnx.Param(jnp.zeros((config.vocab_size,), f.param_dtype))
        self.kernel = None if config.tie_word_embeddings else nnx.Param(
            f.init(f.rngs.params(), (config.dim, config.vocab_size), f.param_dtype))

    def __call__(self, x, word_embeddings):
        dtype = self.dtype or x.dtype
        if self.kernel is None:
            logits = jnp.einsum("btd,vd->btv", x.astype(dtype), word_embeddings.astype(dtype),
                                preferred_element_type=jnp.float32)  # (B, T, V)
        else:
            logits = jnp.einsum("btd,dv->btv", x.astype(dtype), self.kernel[...].astype(dtype),
                                preferred_element_type=jnp.float32)  # (B, T, V)
        return logits + self.bias[...].astype(dtype)


class FlaxDistilBertForSequenceClassification(_Head):
    """DistilBERT with a classifier (or regressor) on the first token; ``labels`` (B,) or (B, num_labels).

    The loss follows ``config.problem_type``, or is inferred from ``num_labels`` and the labels'
    dtype as the reference does (see :func:`distilbert.flax.losses.sequence_classification_loss`).

    Example:
        >>> import jax.numpy as jnp
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.flax import FlaxDistilBertForSequenceClassification
        >>> config = DistilBertConfig(dim=32, n_heads=4, hidden_dim=37, num_labels=3)
        >>> model = FlaxDistilBertForSequenceClassification(config)
        >>> model(jnp.array([[1, 5, 2]]), labels=jnp.array([2])).logits.shape
        (1, 3)
    """

    task = "sequence_classification"

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        super()._build(config, f)
        self.pre_classifier = f.linear(config.dim, config.dim)
        self.classifier = f.linear(config.dim, self._n_out())
        self.dropout = f.dropout(config.seq_classif_dropout)

    def _n_out(self):
        return self.config.num_labels

    def _logits(self, base, deterministic):
        pooled = jax.nn.relu(self.pre_classifier(base.last_hidden_state[:, 0]))  # (B, D)
        return self.classifier(self.dropout(pooled, deterministic=deterministic))  # (B, num_labels)

    def _head(self, base, deterministic, labels=None, lead=None):
        logits = self._logits(base, deterministic)
        loss = None if labels is None else losses.sequence_classification_loss(
            logits, jnp.asarray(labels), self.config.problem_type)
        return out_lib.SequenceClassifierOutput(loss, logits, base.hidden_states, base.attentions)


class FlaxDistilBertForMultipleChoice(FlaxDistilBertForSequenceClassification):
    """DistilBERT scoring each of C choices: inputs (B, C, T), logits (B, C), ``labels`` (B,).

    Example:
        >>> import jax.numpy as jnp
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.flax import FlaxDistilBertForMultipleChoice
        >>> model = FlaxDistilBertForMultipleChoice(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37))
        >>> model(jnp.ones((2, 4, 5), jnp.int32)).logits.shape
        (2, 4)
    """

    task = "multiple_choice"
    rank = 3

    def _n_out(self):
        return 1

    def _head(self, base, deterministic, labels=None, lead=None):
        logits = self._logits(base, deterministic).reshape(lead)  # (B, C)
        loss = None if labels is None else losses.multiple_choice_loss(logits, jnp.asarray(labels))
        return out_lib.MultipleChoiceModelOutput(loss, logits, base.hidden_states, base.attentions)


class FlaxDistilBertForTokenClassification(_Head):
    """DistilBERT with a per-token classifier; ``labels`` (B, T), -100 ignored.

    Example:
        >>> import jax.numpy as jnp
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.flax import FlaxDistilBertForTokenClassification
        >>> model = FlaxDistilBertForTokenClassification(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37))
        >>> model(jnp.array([[1, 5, 2]])).logits.shape
        (1, 3, 2)
    """

    task = "token_classification"

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        super()._build(config, f)
        self.dropout = f.dropout(config.dropout)
        self.classifier = f.linear(config.dim, config.num_labels)

    def _head(self, base, deterministic, labels=None, lead=None):
        logits = self.classifier(self.dropout(base.last_hidden_state, deterministic=deterministic))  # (B, T, N)
        loss = None if labels is None else losses.token_classification_loss(logits, jnp.asarray(labels))
        return out_lib.TokenClassifierOutput(loss, logits, base.hidden_states, base.attentions)


class FlaxDistilBertForQuestionAnswering(_Head):
    """DistilBERT predicting answer spans: ``start_logits``/``end_logits`` (B, T); loss from
    ``start_positions`` and ``end_positions`` (B,).

    Example:
        >>> import jax.numpy as jnp
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.flax import FlaxDistilBertForQuestionAnswering
        >>> model = FlaxDistilBertForQuestionAnswering(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37))
        >>> model(jnp.array([[1, 5, 2]])).start_logits.shape
        (1, 3)
    """

    task = "question_answering"

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        if config.num_labels != 2:
            raise ValueError(f"question answering needs config.num_labels == 2 (start, end), got {config.num_labels}")
        super()._build(config, f)
        self.dropout = f.dropout(config.qa_dropout)
        self.qa_outputs = f.linear(config.dim, 2)

    def _head(self, base, deterministic, labels=None, lead=None):
        hidden = self.dropout(base.last_hidden_state, deterministic=deterministic)  # (B, T, D)
        logits = self.qa_outputs(hidden)  # (B, T, 2)
        start, end = logits[..., 0], logits[..., 1]  # (B, T) each
        loss = None if labels is None else losses.question_answering_loss(start, end, *labels)
        return out_lib.QuestionAnsweringModelOutput(loss, start, end, base.hidden_states, base.attentions)
