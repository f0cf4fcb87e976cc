"""DistilBERT in Keras 3 on TensorFlow: the bare model and five task heads.

The module tree mirrors the PyTorch backend, so the weight table's ``keras`` column is an attribute
path into it. Every variable is created in ``__init__``. Attention scores, softmax, LayerNorm
statistics and returned logits are float32 under mixed precision.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from distilbert.common.config import DistilBertConfig
from distilbert.common.losses import problem_type_for
from distilbert.common.validation import check_head_config
from distilbert.tf import losses
from distilbert.tf import pretrained as out  # the nestable output classes
from distilbert.tf.inputs import check_labels, check_shapes, head_mask_for, unpack_inputs, validate
from distilbert.tf.ops import ACTIVATIONS, SinusoidalPositions, VocabProjector
from distilbert.tf.pretrained import TFDistilBertPreTrainedModel


def _built(layer, shape):
    layer.build(shape)
    return layer


def _dense(config, units, name, dtype, n_in, rank=3):
    dense = keras.layers.Dense(
        units,
        kernel_initializer=keras.initializers.RandomNormal(stddev=config.initializer_range),
        name=name,
        dtype=dtype,
    )
    return _built(dense, (None,) * (rank - 1) + (n_in,))


def _layer_norm(name, dtype, dim):
    return _built(keras.layers.LayerNormalization(epsilon=1e-12, name=name, dtype=dtype), (None, None, dim))


class Embeddings(keras.layers.Layer):
    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        d, init = self.dtype_policy, keras.initializers.RandomNormal(stddev=config.initializer_range)
        self.word_embeddings = keras.layers.Embedding(
            config.vocab_size, config.dim, embeddings_initializer=init, name="word_embeddings", dtype=d
        )
        if config.sinusoidal_pos_embds:  # a variable that training leaves alone, loaded as stored
            self.position_embeddings = SinusoidalPositions(
                config.max_position_embeddings, config.dim, name="position_embeddings", dtype=d
            )
        else:
            self.position_embeddings = keras.layers.Embedding(
                config.max_position_embeddings,
                config.dim,
                embeddings_initializer=init,
                name="position_embeddings",
                dtype=d,
            )
        self.LayerNorm = _layer_norm("LayerNorm", d, config.dim)
        self.dropout = keras.layers.Dropout(config.dropout, dtype=d)
        _built(self.word_embeddings, (None, None)), _built(self.position_embeddings, (None, None))
        self.pad_token_id = config.pad_token_id
        if config.pad_token_id is not None:  # the reference's padding row starts at zero
            table = keras.ops.convert_to_numpy(self.word_embeddings.embeddings)
            table[config.pad_token_id] = 0
            self.word_embeddings.embeddings.assign(table)
        self.built = True

    def call(self, input_ids=None, inputs_embeds=None, position_ids=None, training=False):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, D)
            if self.pad_token_id is not None:  # like PyTorch's padding_idx: the pad row gets no gradient
                is_pad = tf.equal(input_ids, tf.cast(self.pad_token_id, input_ids.dtype))
                is_pad = tf.expand_dims(is_pad, -1)  # (B, T, 1); `[..., None]` has no TFLite kernel here
                inputs_embeds = tf.where(is_pad, tf.stop_gradient(inputs_embeds), inputs_embeds)
        inputs_embeds = tf.cast(inputs_embeds, self.compute_dtype)
        if position_ids is None:
            position_ids = tf.range(tf.shape(inputs_embeds)[1])[None]  # (1, T)
        x = inputs_embeds + self.position_embeddings(position_ids)  # (B, T, D)
        return self.dropout(self.LayerNorm(x), training=training)  # (B, T, D)


class MultiHeadSelfAttention(keras.layers.Layer):
    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        self.n_heads, self.head_dim, d = config.n_heads, config.head_dim, self.dtype_policy
        for name in ("q_lin", "k_lin", "v_lin", "out_lin"):
            setattr(self, name, _dense(config, config.dim, name, d, config.dim))
        self.dropout = keras.layers.Dropout(config.attention_dropout, dtype=d)
        self.built = True

    def call(self, x, keep, head_mask=None, training=False, queries=None, packing=None):
        """``x`` (B * T, D), ``keep`` (B, 1, 1, T) bool; returns the output and the attention weights.

        ``queries`` (B * Tq, D): attend from these rows only (keys and values still from every row of ``x``);
        the output is then (B * Tq, D). None: from every row of ``x``. ``packing`` (a :class:`Packing`):
        ``x`` holds the real tokens only, (N, D), and so does the output (without ``queries``); the
        projections run on those rows and attention on the padded layout.
        """
        batch = tf.shape(keep)[0]

        def split(t):  # (B*T, D) -> (B, H, T, Dh)
            return tf.transpose(tf.reshape(t, (batch, -1, self.n_heads, self.head_dim)), (0, 2, 1, 3))

        def rows(t):  # the padded layout's rows (B*T, D), zeros at the padded positions
            return t if packing is None else packing.pad(t)

        q = self.q_lin(x if queries is None else queries)  # (B*Tq, D) (packed: (N, D))
        q = tf.cast(split(q if queries is not None else rows(q)), tf.float32) / math.sqrt(self.head_dim)
        k = tf.cast(split(rows(self.k_lin(x))), tf.float32)  # (B, H, T, Dh)
        v = split(rows(self.v_lin(x)))  # (B, H, T, Dh)
        scores = tf.matmul(q, k, transpose_b=True)  # (B, H, Tq, T)
        scores = tf.where(keep, scores, tf.float32.min)  # a fully masked row stays finite (uniform)
        weights = tf.nn.softmax(scores, axis=-1)  # (B, H, Tq, T)
        weights = self.dropout(weights, training=training)
        if head_mask is not None:
            weights = weights * tf.cast(head_mask, weights.dtype)  # (1, H, 1, 1)
        context = tf.matmul(tf.cast(weights, v.dtype), v)  # (B, H, Tq, Dh)
        context = tf.reshape(tf.transpose(context, (0, 2, 1, 3)), (-1, self.n_heads * self.head_dim))  # (B*Tq, D)
        if packing is not None and queries is None:
            context = packing.pack(context)  # (N, D): the real tokens' rows
        return self.out_lin(context), weights  # (B*Tq, D) or (N, D), (B, H, Tq, T)


class FFN(keras.layers.Layer):
    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        d = self.dtype_policy
        self.lin1 = _dense(config, config.hidden_dim, "lin1", d, config.dim)
        self.lin2 = _dense(config, config.dim, "lin2", d, config.hidden_dim)
        self.activation = ACTIVATIONS[config.activation]
        self.dropout = keras.layers.Dropout(config.dropout, dtype=d)
        self.built = True

    def call(self, x, training=False):
        return self.dropout(self.lin2(self.activation(self.lin1(x))), training=training)  # (B*T, D)


class TransformerBlock(keras.layers.Layer):
    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        d = self.dtype_policy
        self.attention = MultiHeadSelfAttention(config, name="attention", dtype=d)
        self.sa_layer_norm = _layer_norm("sa_layer_norm", d, config.dim)
        self.ffn = FFN(config, name="ffn", dtype=d)
        self.output_layer_norm = _layer_norm("output_layer_norm", d, config.dim)
        self.built = True

    def call(self, x, keep, head_mask=None, training=False, first_token_only=False, packing=None):
        """``first_token_only``: the output is each sequence's first row alone, (B, D) (see ``Transformer``).

        ``packing``: ``x`` is the real tokens' rows (N, D), and so is the output (unless ``first_token_only``).
        """
        first = None
        if first_token_only:
            shape = tf.shape(keep)  # [B, 1, 1, T]
            padded = x if packing is None else packing.pad(x)  # (B*T, D)
            first = tf.reshape(padded, (shape[0], shape[3], -1))[:, 0]  # (B, D)
        attended, weights = self.attention(x, keep, head_mask, training=training, queries=first, packing=packing)
        x = self.sa_layer_norm(attended + (x if first is None else first))  # (B*T|B, D)
        return self.output_layer_norm(self.ffn(x, training=training) + x), weights  # (B*T|B, D)


class Transformer(keras.layers.Layer):
    """The stack of blocks; ``first_token_only`` (the classifier heads) computes the last one for the first token.

    The last block's keys and values still come from every token, but its query, ``out_lin``, LayerNorms
    and FFN see the first token's row alone (about 2/12 of a block's FLOPs); the output is then (B, D),
    the full pass's first rows. Ignored when hidden states or attentions are asked for.

    ``packing`` (``TFDistilBertModel``'s ``skip_padding``): ``x`` holds the real tokens' rows only, (N, D);
    every block's products, LayerNorms and FFN run on them, and the outputs come back as (B*T, D) rows
    with zeros at the padded positions.
    """

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        self.layer = [
            TransformerBlock(config, name=f"layer_{i}", dtype=self.dtype_policy) for i in range(config.n_layers)
        ]
        self.built = True

    def call(
        self,
        x,
        keep,
        head_mask=None,
        output_attentions=False,
        output_hidden_states=False,
        training=False,
        first_token_only=False,
        packing=None,
    ):
        def rows(t):  # (B*T, D)
            return t if packing is None else packing.pad(t)

        hidden_states, attentions = (), ()
        first_token_only = first_token_only and not (output_attentions or output_hidden_states)
        for i, block in enumerate(self.layer):
            if output_hidden_states:
                hidden_states += (rows(x),)
            first = first_token_only and i == len(self.layer) - 1
            hm = None if head_mask is None else head_mask[i]
            x, weights = block(x, keep, hm, training=training, first_token_only=first, packing=packing)
            if output_attentions:
                attentions += (weights,)
        if packing is not None:  # padded positions 0 (the first token's, too, where it is padding)
            x = x * packing.first_is_real(x.dtype) if first_token_only else rows(x)  # (B|B*T, D)
        if output_hidden_states:
            hidden_states += (x,)
        return x, hidden_states or None, attentions or None


class Packing:
    """Where a padded batch's real tokens sit among its ``B * T`` rows: ``pack`` takes them out (N, C),
    ``pad`` puts them back (B*T, C) with zeros at the padded positions (both differentiable)."""

    def __init__(self, mask):
        self.mask = mask  # (B, T) bool
        shape = tf.shape(mask, out_type=tf.int64)
        self.size = shape[0] * shape[1]
        self.rows = tf.where(tf.reshape(mask, (-1,)))  # (N, 1) int64

    def pack(self, t):
        return tf.gather_nd(t, self.rows)  # (N, C)

    def pad(self, t):
        return tf.scatter_nd(self.rows, t, tf.stack([self.size, tf.shape(t, out_type=tf.int64)[1]]))  # (B*T, C)

    def first_is_real(self, dtype):
        return tf.cast(self.mask[:, :1], dtype)  # (B, 1): whether each sequence's first token is real


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertModel(TFDistilBertPreTrainedModel):
    """The bare DistilBERT encoder, returning hidden states.

    Args:
        config: Model configuration.

    Example:
        >>> model = TFDistilBertModel(DistilBertConfig(n_layers=1, dim=32, n_heads=2, hidden_dim=64))
        >>> model({"input_ids": [[5, 6, 7]]}).last_hidden_state.shape
        TensorShape([1, 3, 32])
    """

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self.embeddings = Embeddings(self.config, name="embeddings", dtype=self.dtype_policy)
        self.transformer = Transformer(self.config, name="transformer", dtype=self.dtype_policy)
        self.built = True

    @unpack_inputs
    def call(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        training=False,
        position_ids=None,
        token_type_ids=None,
        first_token_only=False,
        skip_padding=None,
    ):
        """Encodes a batch (arguments as the reference's).

        ``first_token_only=True`` computes only the first token's row in the last block (fewer FLOPs, the
        same numbers): ``last_hidden_state`` is then (B, 1, D). Ignored when hidden states or attentions
        are asked for.

        ``skip_padding=True`` runs the blocks' products, LayerNorms and FFN on the real tokens only
        (where ``attention_mask`` is not 0; attention itself runs on the padded layout): the real tokens'
        outputs are the same as without it (to float rounding), and the outputs at padded positions are 0.
        None: the model's ``skip_padding`` attribute. The number of real tokens is data, so it does not
        go into an XLA graph (``jit_compile``); graph mode (``tf.function``, ``fit``, ``predict``) takes it.
        """
        output_attentions, output_hidden_states, _ = self._flags(output_attentions, output_hidden_states, None)
        bad = validate(self.config, input_ids, attention_mask, inputs_embeds, position_ids, token_type_ids, head_mask)
        if bad is not None:  # graph mode: the assertions run before the gathers that would fail on bad ids
            with tf.control_dependencies([bad]):
                input_ids, position_ids = (None if t is None else tf.identity(t) for t in (input_ids, position_ids))
        x = self.embeddings(input_ids, inputs_embeds, position_ids, training=training)  # (B, T, D)
        if bad is not None:  # graph mode: a sequence with an invalid value gives NaN everywhere
            poisoned = tf.reduce_any(bad, axis=-1)[:, None, None]  # (B|1, 1, 1)
            x = tf.where(poisoned, tf.constant(np.nan, x.dtype), x)
        mask = tf.ones(tf.shape(x)[:2], tf.bool) if attention_mask is None else tf.not_equal(attention_mask, 0)
        shape = tf.shape(x)  # [B, T, D]
        keep = tf.reshape(mask, (shape[0], 1, 1, shape[1]))  # (B, 1, 1, T); not mask[:, None, None]: TFLite
        skip = self.skip_padding if skip_padding is None else skip_padding
        packing = Packing(mask) if skip and attention_mask is not None else None
        # Tokens as rows (B * T, D) through the blocks: no reshape between a matmul and its bias, activation
        # and residual, which TF's CPU graph optimiser then fuses (measured faster).
        rows = tf.reshape(x, (-1, self.config.dim))  # (B*T, D)
        x, hidden, attentions = self.transformer(
            rows if packing is None else packing.pack(rows),  # (B*T | N, D)
            keep,
            head_mask_for(self.config, head_mask),
            training=training,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            first_token_only=first_token_only,
            packing=packing,
        )
        pruned = first_token_only and not (output_attentions or output_hidden_states)
        return self._output(
            out.TFBaseModelOutput,
            return_dict,
            last_hidden_state=tf.reshape(x, (shape[0], 1, shape[2]) if pruned else shape),
            hidden_states=hidden and tuple(tf.reshape(h, shape) for h in hidden),
            attentions=attentions,
        )


def _classifier(model, rate, rank=2, **layers):
    """A head's dropout and Dense layers (``name=units``, in order), built for rank-``rank`` inputs."""
    model.dropout = keras.layers.Dropout(rate, dtype=model.dtype_policy)
    for name, units in layers.items():
        setattr(model, name, _dense(model.config, units, name, model.dtype_policy, model.config.dim, rank))
    model.built = True


class _Head(TFDistilBertPreTrainedModel):
    """A head over ``self.distilbert``; subclasses give ``_head(hidden, labels, training) -> (loss, logits)``."""

    output_class = None
    first_token_only = False  # True: the head reads the first token alone, so the last block computes only it

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self.distilbert = TFDistilBertModel(self.config, name="distilbert", dtype=self.dtype_policy)

    def _encode(self, ids, mask, head_mask, embeds, attentions, hidden, training, positions, token_types):
        return self.distilbert(
            ids,
            attention_mask=mask,
            head_mask=head_mask,
            inputs_embeds=embeds,
            output_attentions=attentions,
            output_hidden_states=hidden,
            return_dict=True,
            training=training,
            position_ids=positions,
            token_type_ids=token_types,
            first_token_only=self.first_token_only,
            skip_padding=True if self.skip_padding else None,  # None: the encoder's own setting
        )

    @unpack_inputs
    def call(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        labels=None,
        training=False,
        position_ids=None,
        token_type_ids=None,
    ):
        """Runs the encoder and the head; ``labels`` add the loss."""
        o = self._encode(
            input_ids,
            attention_mask,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            training,
            position_ids,
            token_type_ids,
        )
        # (B, 1) when the last block computed the first token only: the pooled heads' labels read only B
        check_labels(self.config, self.task, o.last_hidden_state.shape[:2], labels)
        loss, logits = self._head(o.last_hidden_state, labels, training)
        return self._output(
            self.output_class,
            return_dict,
            loss=loss,
            logits=logits,
            hidden_states=o.hidden_states,
            attentions=o.attentions,
        )

    def _pool(self, hidden, training):  # the classification heads' first-token pooler
        pooled = tf.nn.relu(self.pre_classifier(hidden[:, 0]))  # (B, D)
        return self.dropout(pooled, training=training)


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertForMaskedLM(_Head):
    """DistilBERT with the masked-language-modelling head; the loss ignores labels of -100.

    Args:
        config: Model configuration (``tie_word_embeddings`` shares the projector with the embeddings).

    Example:
        >>> model = TFDistilBertForMaskedLM(DistilBertConfig(vocab_size=50, n_layers=1, dim=32, n_heads=2))
        >>> model({"input_ids": [[5, 6, 7]], "labels": [[-100, 6, -100]]}).logits.shape
        TensorShape([1, 3, 50])
    """

    task, output_class = "masked_lm", out.TFMaskedLMOutput

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c, d = self.config, self.dtype_policy
        self.vocab_transform = _dense(c, c.dim, "vocab_transform", d, c.dim)
        self.activation = ACTIVATIONS[c.activation]
        self.vocab_layer_norm = _layer_norm("vocab_layer_norm", d, c.dim)
        self.vocab_projector = VocabProjector(c, name="vocab_projector", dtype=d)
        self.built = True

    def _head(self, hidden, labels, training):
        x = self.vocab_layer_norm(self.activation(self.vocab_transform(hidden)))  # (B, T, D)
        tied = self.distilbert.embeddings.word_embeddings.embeddings if self.config.tie_word_embeddings else None
        logits = tf.cast(self.vocab_projector(x, tied), tf.float32)  # (B, T, V)
        return None if labels is None else losses.masked_lm_loss(logits, labels), logits


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertForSequenceClassification(_Head):
    """DistilBERT with a classifier (or regressor) on the first token.

    The loss follows ``config.problem_type`` (regression, single- or multi-label), inferred from
    ``num_labels`` and the label dtype when unset and then recorded, as the reference does.

    Args:
        config: Model configuration (``num_labels``, ``problem_type``, ``seq_classif_dropout``).

    Example:
        >>> model = TFDistilBertForSequenceClassification(DistilBertConfig(n_layers=1, dim=32, n_heads=2))
        >>> model({"input_ids": [[5, 6, 7]], "labels": [1]}).logits.shape
        TensorShape([1, 2])
    """

    task, output_class = "sequence_classification", out.TFSequenceClassifierOutput
    first_token_only = True

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        _classifier(self, c.seq_classif_dropout, pre_classifier=c.dim, classifier=c.num_labels)

    def _head(self, hidden, labels, training):
        logits = tf.cast(self.classifier(self._pool(hidden, training)), tf.float32)  # (B, C)
        if labels is None:
            return None, logits
        c = self.config
        problem_type = problem_type_for(c.problem_type, c.num_labels, labels.dtype.is_integer)
        loss = losses.sequence_classification_loss(logits, labels, problem_type)
        if c.problem_type is None:  # recorded on the model and its encoder, as the reference's shared config
            self.config = self.distilbert.config = c.replace(problem_type=problem_type)
        return loss, logits


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertForMultipleChoice(_Head):
    """DistilBERT scoring each of several choices; inputs are ``(batch, num_choices, seq_len)``.

    Args:
        config: Model configuration.

    Example:
        >>> model = TFDistilBertForMultipleChoice(DistilBertConfig(n_layers=1, dim=32, n_heads=2))
        >>> model({"input_ids": [[[5, 6], [7, 8], [9, 10]]], "labels": [2]}).logits.shape
        TensorShape([1, 3])
    """

    task, output_class = "multiple_choice", out.TFMultipleChoiceModelOutput
    first_token_only = True

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        _classifier(self, self.config.seq_classif_dropout, pre_classifier=self.config.dim, classifier=1)

    @unpack_inputs
    def call(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        labels=None,
        training=False,
        position_ids=None,
        token_type_ids=None,
    ):
        """Scores every choice; ``labels`` ``(B,)`` (the right choice) add the loss."""
        shape = check_shapes(
            self.config, input_ids, attention_mask, inputs_embeds, position_ids, token_type_ids, head_mask, rank=3
        )  # values: once the choices are folded into the batch
        check_labels(self.config, self.task, shape, labels)
        full = tf.shape(input_ids if input_ids is not None else inputs_embeds)[:3]  # [B, C, T]
        num_choices = full[1]
        if position_ids is not None:  # any shape that broadcasts to (B, C, T)
            position_ids = tf.broadcast_to(position_ids, full)

        def flat(t):  # (B, C, T[, D]) -> (B * C, T[, D])
            return None if t is None else tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))

        result = super().call(
            flat(input_ids),
            flat(attention_mask),
            head_mask,
            flat(inputs_embeds),
            output_attentions,
            output_hidden_states,
            True,
            None,
            training,
            flat(position_ids),
            flat(token_type_ids),
        )
        result.logits = tf.reshape(result.logits, (-1, num_choices))  # (B, C)
        result.loss = None if labels is None else losses.multiple_choice_loss(result.logits, labels)
        return result if self._flags(None, None, return_dict)[2] else result.to_tuple()

    def _head(self, hidden, labels, training):
        return None, tf.cast(self.classifier(self._pool(hidden, training)), tf.float32)  # (B * C, 1)


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertForTokenClassification(_Head):
    """DistilBERT with a per-token classifier (NER); the loss ignores labels of -100.

    Args:
        config: Model configuration (``num_labels``).

    Example:
        >>> model = TFDistilBertForTokenClassification(DistilBertConfig(n_layers=1, dim=32, n_heads=2, num_labels=5))
        >>> model({"input_ids": [[5, 6, 7]]}).logits.shape
        TensorShape([1, 3, 5])
    """

    task, output_class = "token_classification", out.TFTokenClassifierOutput

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        _classifier(self, self.config.dropout, rank=3, classifier=self.config.num_labels)

    def _head(self, hidden, labels, training):
        logits = tf.cast(self.classifier(self.dropout(hidden, training=training)), tf.float32)  # (B, T, C)
        return None if labels is None else losses.token_classification_loss(logits, labels), logits


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertForQuestionAnswering(_Head):
    """DistilBERT predicting answer start and end positions (extractive QA).

    The loss averages start and end cross-entropies; positions outside the sequence are clamped
    and ignored, as the reference PyTorch class does.

    Args:
        config: Model configuration (``qa_dropout``).

    Example:
        >>> model = TFDistilBertForQuestionAnswering(DistilBertConfig(n_layers=1, dim=32, n_heads=2))
        >>> model({"input_ids": [[5, 6, 7]]}).start_logits.shape
        TensorShape([1, 3])
    """

    task, label_names = "question_answering", ("start_positions", "end_positions")

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        check_head_config(self.config, self.task)
        _classifier(self, self.config.qa_dropout, rank=3, qa_outputs=2)

    @unpack_inputs
    def call(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        start_positions=None,
        end_positions=None,
        training=False,
        position_ids=None,
        token_type_ids=None,
    ):
        """Runs the encoder and the span head; ``start_positions`` and ``end_positions`` add the loss."""
        o = self._encode(
            input_ids,
            attention_mask,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            training,
            position_ids,
            token_type_ids,
        )
        check_labels(self.config, self.task, o.last_hidden_state.shape[:2], None, start_positions, end_positions)
        logits = self.qa_outputs(self.dropout(o.last_hidden_state, training=training))  # (B, T, 2)
        start_logits, end_logits = tf.unstack(tf.cast(logits, tf.float32), axis=-1)  # (B, T), (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = losses.question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return self._output(
            out.TFQuestionAnsweringModelOutput,
            return_dict,
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=o.hidden_states,
            attentions=o.attentions,
        )


TF_CLASSES = {
    cls.task: cls
    for cls in (
        TFDistilBertModel,
        TFDistilBertForMaskedLM,
        TFDistilBertForSequenceClassification,
        TFDistilBertForMultipleChoice,
        TFDistilBertForTokenClassification,
        TFDistilBertForQuestionAnswering,
    )
}
