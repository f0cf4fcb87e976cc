"""DistilBERT in Flax NNX: the bare model and its five task heads.

The module tree and attribute names are the PyTorch backend's, so the NNX variable paths are the
weight table's ``"nnx"`` column. Inputs are checked by :mod:`distilbert.flax.inputs` before anything is
traced: shapes always (they are static), values when concrete. Inside ``jit`` values cannot be checked:
an id outside ``[0, vocab_size)`` (or a position outside the table) gives NaN embeddings, hence NaN
outputs, instead of JAX's silent clamping, and ``token_type_ids`` are ignored.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from distilbert.common import outputs as out_lib
from distilbert.common.config import DistilBertConfig
from distilbert.common.names import sinusoidal_table
from distilbert.common.validation import as_config, check_head_config
from distilbert.flax import inputs, losses, ops, pretrained


def _lookup(table: jax.Array, ids: jax.Array) -> jax.Array:
    """``table[ids]``, but ids outside ``[0, len(table))`` give NaN rows rather than clamped ones."""
    n = table.shape[0]
    return jnp.take(table, jnp.where((ids >= 0) & (ids < n), ids, n), axis=0, mode="fill", fill_value=jnp.nan)


class _Factory:
    """Builds the layers of one model with its dtypes, initialiser and RNG streams."""

    def __init__(self, config: DistilBertConfig, dtype, param_dtype, rngs: nnx.Rngs):
        self.dtype, self.param_dtype, self.rngs = dtype, param_dtype, rngs
        self.init = nnx.initializers.normal(config.initializer_range)
        self.kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def linear(self, n_in: int, n_out: int) -> nnx.Linear:
        # f32 accumulation and output, in the backward pass too (see ops): more accurate and faster under bf16.
        return nnx.Linear(
            n_in,
            n_out,
            kernel_init=self.init,
            preferred_element_type=jnp.float32,
            dot_general=ops.dot_general,
            **self.kw,
        )

    def norm(self, n: int) -> nnx.LayerNorm:
        return nnx.LayerNorm(n, epsilon=1e-12, use_fast_variance=False, **self.kw)

    def dropout(self, rate: float) -> nnx.Dropout:
        # Off after construction, as the reference (``train=False``); ``model.train()`` turns it on.
        return nnx.Dropout(rate, deterministic=True, rngs=self.rngs)


class Embeddings(nnx.Module):
    def __init__(self, config: DistilBertConfig, f: _Factory):
        self.word_embeddings = nnx.Embed(config.vocab_size, config.dim, embedding_init=f.init, **f.kw)
        if config.pad_token_id is not None:
            self.word_embeddings.embedding[config.pad_token_id] = 0
        n_pos, dim = config.max_position_embeddings, config.dim
        self.position_embeddings = nnx.Embed(n_pos, dim, embedding_init=f.init, **f.kw)
        if config.sinusoidal_pos_embds:  # stored and loaded as stored, never trained: Frozen, not a Param
            table = jnp.asarray(sinusoidal_table(n_pos, dim), f.param_dtype)  # (P, D)
            self.position_embeddings.embedding = pretrained.Frozen(table)
        self.LayerNorm = f.norm(config.dim)
        self.dropout = f.dropout(config.dropout)
        self.pad_token_id = -1 if config.pad_token_id is None else config.pad_token_id

    def __call__(self, input_ids, inputs_embeds, position_ids, deterministic):
        if inputs_embeds is None:  # the pad row gets no gradient, as with PyTorch's padding_idx
            words = _lookup(self.word_embeddings.embedding[...], input_ids)  # (B, T, D)
            pad = (input_ids == self.pad_token_id)[..., None]  # (B, T, 1)
            inputs_embeds = jnp.where(pad, jax.lax.stop_gradient(words), words)  # (B, T, D)
        table = self.position_embeddings.embedding[...]  # (P, D)
        T = inputs_embeds.shape[1]
        positions = table[None, :T] if position_ids is None else _lookup(table, position_ids)  # (B|1, T, D)
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

    def __call__(self, x, bias, head_mask, deterministic, output_attentions, queries=None, packing=None):
        """``queries`` (B, Tq, D): attend from these rows only (keys and values still from every row of ``x``);
        the output then has Tq rows. None: from every row of ``x``. ``packing`` (a :class:`Packing`): ``x``
        is the real tokens' rows (1, R, D), and so is the output (without ``queries``); the projections
        run on those rows, attention on the padded layout."""
        rows = (lambda t: t) if packing is None else packing.pad  # (B, T, C)
        per_head = lambda y: y.astype(self.dtype).reshape(y.shape[:2] + (self.n_heads, -1)).swapaxes(1, 2)  # noqa
        q = self.q_lin(x if queries is None else queries) / math.sqrt(self.head_dim)  # (B, Tq, D) or (1, R, D)
        q = per_head(q if queries is not None else rows(q))  # (B, H, Tq, Dh)
        k, v = per_head(rows(self.k_lin(x))), per_head(rows(self.v_lin(x)))  # (B, H, T, Dh) each
        scores = ops.einsum("bhqd,bhkd->bhqk", q, k)  # (B, H, Tq, T), float32
        if bias is not None:  # + 0 or finfo.min: where(mask, scores, min) exactly, and XLA fuses it better
            scores = scores + bias
        weights = self.dropout(jax.nn.softmax(scores, axis=-1), deterministic=deterministic)  # (B, H, Tq, T)
        if head_mask is not None:
            weights = weights * head_mask[None, :, None, None]
        context = ops.einsum("bhqk,bhkd->bhqd", weights.astype(self.dtype), v)  # (B, H, Tq, Dh)
        context = context.swapaxes(1, 2).reshape(q.shape[0], q.shape[2], -1)  # (B, Tq, D)
        if packing is not None and queries is None:
            context = packing.pack(context)  # (1, R, D): the real tokens' rows
        return self.out_lin(context), (weights if output_attentions else None)  # (B, Tq, D) or (1, R, D)


class FFN(nnx.Module):
    def __init__(self, config: DistilBertConfig, f: _Factory):
        self.lin1 = f.linear(config.dim, config.hidden_dim)
        self.lin2 = f.linear(config.hidden_dim, config.dim)
        self.dropout = f.dropout(config.dropout)
        self.activation = config.activation

    def __call__(self, x, deterministic):
        x = ops.ACTIVATIONS[self.activation](self.lin1(x))  # (B, T, F)
        return self.dropout(self.lin2(x), deterministic=deterministic)  # (B, T, D)


class TransformerBlock(nnx.Module):
    def __init__(self, config: DistilBertConfig, f: _Factory):
        self.attention = MultiHeadSelfAttention(config, f)
        self.sa_layer_norm = f.norm(config.dim)
        self.ffn = FFN(config, f)
        self.output_layer_norm = f.norm(config.dim)

    def __call__(self, x, bias, head_mask, deterministic, output_attentions, first_token_only=False, packing=None):
        """``first_token_only``: the output is the first token's row alone, (B, 1, D) (see ``Transformer``).
        ``packing``: ``x`` is the real tokens' rows (1, R, D), and so is the output (unless first-token)."""
        first = None
        if first_token_only:
            first = (x if packing is None else packing.pad(x))[:, :1]  # (B, 1, D)
        attn, weights = self.attention(x, bias, head_mask, deterministic, output_attentions, first, packing)
        x = self.sa_layer_norm(attn + (x if first is None else first))  # (B, T|1, D)
        x = self.output_layer_norm(self.ffn(x, deterministic) + x)  # (B, T|1, D)
        return x, weights


class Transformer(nnx.Module):
    """The stack of blocks; ``first_token_only`` (the classifier heads) computes the last one for the first token.

    The last block's keys and values still come from every token, but its query, ``out_lin``, LayerNorms
    and FFN see the first token's row alone (about 2/12 of a block's FLOPs); the output is then (B, 1, D),
    the full pass's first row. Ignored when hidden states or attentions are asked for. A static choice,
    so each jit trace takes one path.

    ``packing`` (a :class:`Packing`, the models' ``skip_padding``): ``x`` holds R rows, the real tokens
    (and, past them, dummy rows whose results are dropped), (1, R, D); every block's products,
    LayerNorms and FFN run on them, and the outputs come back as (B, T, D) with zeros at the padding.
    """

    def __init__(self, config: DistilBertConfig, f: _Factory, remat: bool):
        self.layer = nnx.List([TransformerBlock(config, f) for _ in range(config.n_layers)])
        self.remat = remat

    def __call__(
        self,
        x,
        bias,
        head_mask,
        deterministic,
        output_attentions,
        output_hidden_states,
        first_token_only=False,
        packing=None,
    ):
        def runner(first: bool):
            def run(block, x, bias, head_mask):
                return block(x, bias, head_mask, deterministic, output_attentions, first, packing)

            return nnx.remat(run) if self.remat else run  # remat: recompute activations in the backward pass

        def state(t):  # a hidden state as returned, (B, T, D); padded back only when asked for
            return t if packing is None or not output_hidden_states else packing.pad(t)

        first_token_only = first_token_only and not (output_attentions or output_hidden_states)
        hidden, attentions = (state(x),), ()
        last = len(self.layer) - 1
        for i, block in enumerate(self.layer):
            first = first_token_only and i == last
            run = runner(first)
            x, weights = run(block, x, bias, head_mask if head_mask is None or head_mask.ndim == 1 else head_mask[i])
            if packing is not None and i == last:  # (B, T|1, D), 0 at the padding (a padded first token too)
                x = packing.finish(x * packing.first_is_real if first else packing.pad(x))
            hidden = hidden + (x if i == last else state(x),)
            attentions = attentions + (weights,)
        return out_lib.BaseModelOutput(
            x, hidden if output_hidden_states else None, attentions if output_attentions else None
        )


class Packing:
    """Where a padded batch's real tokens sit among its B * T rows, packed into a static R rows.

    ``index`` (R,): the real tokens' flat positions, then ``B * T`` (no row) for the R - N dummy rows;
    ``pack`` (B, T, C) -> (1, R, C) (dummy rows 0); ``pad`` (1, R, C) -> (B, T, C) (zeros at the padding,
    dummy rows dropped). Both differentiable. A batch with more than R real tokens cannot be packed, and
    under ``jit`` cannot raise: ``finish`` makes its outputs NaN.
    """

    def __init__(self, attention_mask, rows: int):
        self.batch, self.length = attention_mask.shape
        real = attention_mask.reshape(-1) != 0  # (B*T,)
        self.index = jnp.nonzero(real, size=rows, fill_value=self.batch * self.length)[0]  # (R,)
        self.overflow = jnp.sum(real) > rows  # () bool
        self.first_is_real = real.reshape(self.batch, self.length)[:, :1, None]  # (B, 1, 1)

    def pack(self, t):
        flat = t.reshape(self.batch * self.length, t.shape[-1])  # (B*T, C)
        return flat.at[self.index].get(mode="fill", fill_value=0)[None]  # (1, R, C)

    def pad(self, t):
        flat = jnp.zeros((self.batch * self.length, t.shape[-1]), t.dtype).at[self.index].set(t[0], mode="drop")
        return flat.reshape(self.batch, self.length, -1)  # (B, T, C)

    def finish(self, t):
        return jnp.where(self.overflow, jnp.nan, t)


def packed_rows(attention_mask, setting) -> int | None:
    """The R of a :class:`Packing` for ``skip_padding=setting`` (None: no packing).

    ``True`` counts the real tokens, which needs a concrete mask (not under ``jit``); an int is R itself,
    static under ``jit`` (at least the batch's real tokens; checked when the mask is concrete).
    """
    if not setting or attention_mask is None:
        return None
    size = int(attention_mask.size)
    concrete = not isinstance(attention_mask, jax.core.Tracer)
    real = int(jnp.count_nonzero(attention_mask)) if concrete else None
    if setting is True:
        if real is None:
            raise ValueError(
                "skip_padding=True counts the batch's real tokens, which jax.jit cannot; give skip_padding=R, "
                "a static number of rows at least the real tokens (for example model.skip_padding = 512)"
            )
        rows = real
    elif isinstance(setting, int) and setting > 0:
        rows = setting
        if real is not None and real > rows:
            raise ValueError(f"skip_padding={rows} rows, but the batch has {real} real tokens; give a larger number")
    else:
        raise ValueError(f"skip_padding takes True, False or a number of rows > 0, got {setting!r}")
    # No padding at all: the plain path (the same numbers). Otherwise pack, into at most B * T rows, so that
    # the padded positions are 0 whenever skip_padding is on.
    return None if real == size else min(rows, size)


class FlaxDistilBertPreTrainedModel(nnx.Module):
    """Shared constructor, input checks and ``from_pretrained``/``save_pretrained`` of the six models.

    Args:
        config: The model's :class:`~distilbert.DistilBertConfig` (or its dict, or a transformers config).
        dtype: Compute dtype (``jnp.bfloat16`` for mixed precision).
        param_dtype: Parameter dtype (float32 by default).
        remat: Recompute each transformer block in the backward pass (gradient checkpointing).
        seed: Seed of the default ``nnx.Rngs`` when ``rngs`` is not given.
        rngs: ``nnx.Rngs`` for initialisation and dropout (its ``"dropout"`` stream if it has one).

    ``dtype`` is the compute dtype; softmax, LayerNorm statistics and matmul accumulation stay float32.
    Call arguments (one of ``input_ids`` / ``inputs_embeds``): ``input_ids`` (B, T) ints,
    ``attention_mask`` (B, T) (non-zero: attend), ``head_mask`` (H,) or (L, H) multiplying the
    attention weights, ``inputs_embeds`` (B, T, D), ``position_ids`` (T,), (1, T) or (B, T), ``token_type_ids`` (all
    zeros: accepted for BERT tokenizers' output), ``output_attentions``, ``output_hidden_states``,
    ``return_dict`` (None: the config's value) and ``deterministic`` (None: dropout as set by
    ``model.train()`` / ``model.eval()``, eval after construction). Heads add ``labels`` (QA:
    ``start_positions``, ``end_positions``). The bare encoder adds ``first_token_only``: compute only the
    first token's row in the last block (fewer FLOPs, the same numbers), ``last_hidden_state`` then (B, 1, D);
    ignored when hidden states or attentions are asked for.
    """

    task = "base"
    rank = 2  # of input_ids: (B, T); multiple choice: (B, C, T)
    first_token_only = False  # True: the head reads the first token alone, so the last block computes only it
    # True or a number of rows R: the encoder runs on the batch's real tokens only (``skip_padding``)
    skip_padding: bool | int = False

    def __init__(
        self,
        config: DistilBertConfig,
        *,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        remat: bool = False,
        seed: int = 0,
        rngs: nnx.Rngs | None = None,
    ):
        config = as_config(config)
        self.config, self.dtype, self.param_dtype, self.remat = config, dtype, param_dtype, remat
        self._build(config, _Factory(config, dtype, param_dtype, rngs if rngs is not None else nnx.Rngs(seed)))

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        raise NotImplementedError  # the encoder's layers (FlaxDistilBertModel) or a head's (_Head)

    from_pretrained = classmethod(pretrained.from_pretrained)
    save_pretrained = pretrained.save_pretrained
    canonical_state = pretrained.canonical_state
    load_canonical_state = pretrained.load_canonical_state

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        position_ids=None,
        token_type_ids=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        deterministic=None,
        start_positions=None,
        end_positions=None,
        skip_padding=None,
        first_token_only=False,
    ):
        if first_token_only and self.task != "base":
            raise ValueError(
                f"first_token_only is an argument of the bare encoder (FlaxDistilBertModel); {type(self).__name__} "
                "decides it itself (the classifier heads compute only the first token's row already)"
            )
        ids, embeds, mask, pos, heads, shape = inputs.prepare(
            self.config, self.rank, input_ids, inputs_embeds, attention_mask, position_ids, token_type_ids, head_mask
        )
        problem_type = inputs.check_labels(self.config, self.task, shape, labels, start_positions, end_positions)
        if problem_type is not None and self.config.problem_type is None:  # decided by the labels' static dtype
            # recorded on the model and its encoder, as the reference's shared config
            self.config = self.distilbert.config = self.config.replace(problem_type=problem_type)
        if start_positions is not None:
            labels = (jnp.asarray(start_positions), jnp.asarray(end_positions))
        output_attentions, output_hidden_states, return_dict = out_lib.output_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        encoder = self if self.task == "base" else self.distilbert
        flags = (output_attentions, output_hidden_states, deterministic, self.first_token_only or first_token_only)
        rows = packed_rows(mask, self.skip_padding if skip_padding is None else skip_padding)
        base = encoder._encode(ids, embeds, mask, pos, heads, *flags, packed_rows=rows)
        out = self._head(base, deterministic, labels, shape)
        return out if return_dict else out.to_tuple()


class FlaxDistilBertModel(FlaxDistilBertPreTrainedModel):
    """The bare DistilBERT encoder, returning hidden states (call arguments: see the base class).

    Example:
        >>> from distilbert.flax import DistilBertConfig, FlaxDistilBertModel
        >>> model = FlaxDistilBertModel(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37, n_layers=2))
        >>> model([[101, 7592, 102]], attention_mask=[[1, 1, 1]]).last_hidden_state.shape
        (1, 3, 32)
    """

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        self.embeddings = Embeddings(config, f)
        self.transformer = Transformer(config, f, self.remat)

    def _head(self, base, deterministic, labels, shape):
        return base

    def _encode(
        self,
        input_ids,
        inputs_embeds,
        attention_mask,
        position_ids,
        head_mask=None,
        output_attentions=False,
        output_hidden_states=False,
        deterministic=None,
        first_token_only=False,
        packed_rows=None,
    ) -> out_lib.BaseModelOutput:
        """The forward pass on checked inputs (the heads call this; see ``Transformer`` for ``first_token_only``;
        ``packed_rows``: run the blocks on the real tokens packed into that many rows, :class:`Packing`)."""
        bias = (
            None
            if attention_mask is None
            else jnp.where(attention_mask[:, None, None, :] != 0, 0.0, jnp.finfo(jnp.float32).min)
        )  # (B, 1, 1, T)
        x = self.embeddings(input_ids, inputs_embeds, position_ids, deterministic)  # (B, T, D)
        flags = (output_attentions, output_hidden_states, first_token_only)
        packing = None if packed_rows is None else Packing(attention_mask, packed_rows)
        x = x if packing is None else packing.pack(x)  # (B, T, D) or (1, R, D)
        return self.transformer(x, bias, head_mask, deterministic, *flags, packing)


class _Head(FlaxDistilBertPreTrainedModel):
    """A task head over ``self.distilbert``; subclasses add their layers in ``_build`` and define ``_head``."""

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:  # the encoder, then the head's layers
        self.distilbert = FlaxDistilBertModel(
            config, dtype=self.dtype, param_dtype=self.param_dtype, remat=self.remat, rngs=f.rngs
        )


class VocabProjector(nnx.Module):
    """The MLM output layer: the word embeddings transposed (tied) or its own ``kernel``, plus ``bias``."""

    def __init__(self, config: DistilBertConfig, f: _Factory):
        self.dtype = f.dtype
        self.bias = nnx.Param(jnp.zeros((config.vocab_size,), f.param_dtype))
        self.kernel = (
            None
            if config.tie_word_embeddings
            else nnx.Param(f.init(f.rngs.params(), (config.dim, config.vocab_size), f.param_dtype))
        )

    def __call__(self, x, word_embeddings):
        dtype = self.dtype or x.dtype
        kernel = word_embeddings.T if self.kernel is None else self.kernel[...]  # (D, V)
        return ops.einsum("btd,dv->btv", x.astype(dtype), kernel.astype(dtype)) + self.bias[...]  # (B, T, V)


class FlaxDistilBertForMaskedLM(_Head):
    """DistilBERT with its masked-language-modelling head; ``labels`` (B, T), -100 ignored.

    Example:
        >>> from distilbert.flax import DistilBertConfig, FlaxDistilBertForMaskedLM
        >>> model = FlaxDistilBertForMaskedLM(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37, vocab_size=99))
        >>> model([[1, 5, 2]], labels=[[-100, 7, -100]]).logits.shape
        (1, 3, 99)
    """

    task = "masked_lm"

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        super()._build(config, f)
        self.vocab_transform = f.linear(config.dim, config.dim)
        self.vocab_layer_norm = f.norm(config.dim)
        self.vocab_projector = VocabProjector(config, f)

    def _head(self, base, deterministic, labels, shape):
        x = self.vocab_transform(base.last_hidden_state)  # (B, T, D)
        x = self.vocab_layer_norm(ops.ACTIVATIONS[self.config.activation](x))  # (B, T, D)
        logits = self.vocab_projector(x, self.distilbert.embeddings.word_embeddings.embedding[...])  # (B, T, V)
        loss = None if labels is None else losses.masked_lm_loss(logits, jnp.asarray(labels))
        return out_lib.MaskedLMOutput(loss, logits, base.hidden_states, base.attentions)


class FlaxDistilBertForSequenceClassification(_Head):
    """DistilBERT with a classifier (or regressor) on the first token; ``labels`` (B,) or (B, num_labels),
    the loss chosen by ``config.problem_type`` or as the reference infers it (:mod:`distilbert.flax.losses`).

    Example:
        >>> from distilbert.flax import DistilBertConfig, FlaxDistilBertForSequenceClassification
        >>> model = FlaxDistilBertForSequenceClassification(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37))
        >>> model([[1, 5, 2]], labels=[1]).logits.shape
        (1, 2)
    """

    task = "sequence_classification"
    first_token_only = True  # and multiple choice, its subclass

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        super()._build(config, f)
        self.pre_classifier = f.linear(config.dim, config.dim)
        self.classifier = f.linear(config.dim, 1 if self.task == "multiple_choice" else config.num_labels)
        self.dropout = f.dropout(config.seq_classif_dropout)

    def _head(self, base, deterministic, labels, shape):
        pooled = jax.nn.relu(self.pre_classifier(base.last_hidden_state[:, 0]))  # (B, D)
        logits = self.classifier(self.dropout(pooled, deterministic=deterministic))  # (B, num_labels)
        if self.task == "multiple_choice":
            logits = logits.reshape(shape[:2])  # (B, C)
            loss = None if labels is None else losses.multiple_choice_loss(logits, jnp.asarray(labels))
            return out_lib.MultipleChoiceModelOutput(loss, logits, base.hidden_states, base.attentions)
        loss = (
            None
            if labels is None
            else losses.sequence_classification_loss(logits, jnp.asarray(labels), self.config.problem_type)
        )
        return out_lib.SequenceClassifierOutput(loss, logits, base.hidden_states, base.attentions)


class FlaxDistilBertForMultipleChoice(FlaxDistilBertForSequenceClassification):
    """DistilBERT scoring each of C choices: inputs (B, C, T), logits (B, C), ``labels`` (B,).

    Example:
        >>> from distilbert.flax import DistilBertConfig, FlaxDistilBertForMultipleChoice
        >>> model = FlaxDistilBertForMultipleChoice(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37))
        >>> model([[[1, 5, 2], [1, 6, 2]]], labels=[0]).logits.shape
        (1, 2)
    """

    task = "multiple_choice"
    rank = 3


class FlaxDistilBertForTokenClassification(_Head):
    """DistilBERT with a per-token classifier; ``labels`` (B, T), -100 ignored.

    Example:
        >>> from distilbert.flax import DistilBertConfig, FlaxDistilBertForTokenClassification
        >>> model = FlaxDistilBertForTokenClassification(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37))
        >>> model([[1, 5, 2]], labels=[[-100, 1, 0]]).logits.shape
        (1, 3, 2)
    """

    task = "token_classification"

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        super()._build(config, f)
        self.dropout = f.dropout(config.dropout)
        self.classifier = f.linear(config.dim, config.num_labels)

    def _head(self, base, deterministic, labels, shape):
        logits = self.classifier(self.dropout(base.last_hidden_state, deterministic=deterministic))  # (B, T, N)
        loss = None if labels is None else losses.token_classification_loss(logits, jnp.asarray(labels))
        return out_lib.TokenClassifierOutput(loss, logits, base.hidden_states, base.attentions)


class FlaxDistilBertForQuestionAnswering(_Head):
    """DistilBERT predicting answer spans (``start_logits``, ``end_logits``); loss from ``start/end_positions``.

    Example:
        >>> from distilbert.flax import DistilBertConfig, FlaxDistilBertForQuestionAnswering
        >>> model = FlaxDistilBertForQuestionAnswering(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37))
        >>> model([[1, 5, 2]], start_positions=[1], end_positions=[2]).start_logits.shape
        (1, 3)
    """

    task = "question_answering"

    def _build(self, config: DistilBertConfig, f: _Factory) -> None:
        check_head_config(config, self.task)
        super()._build(config, f)
        self.dropout = f.dropout(config.qa_dropout)
        self.qa_outputs = f.linear(config.dim, 2)

    def _head(self, base, deterministic, labels, shape):
        logits = self.qa_outputs(self.dropout(base.last_hidden_state, deterministic=deterministic))  # (B, T, 2)
        start, end = logits[..., 0], logits[..., 1]  # (B, T) each
        loss = None if labels is None else losses.question_answering_loss(start, end, *labels)
        return out_lib.QuestionAnsweringModelOutput(loss, start, end, base.hidden_states, base.attentions)
