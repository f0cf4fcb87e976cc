"""DistilBERT in Keras 3 on TensorFlow: the bare model and five task heads.

The module tree mirrors the PyTorch backend (``embeddings.word_embeddings``,
``transformer.layer[i].attention.q_lin``, ``sa_layer_norm``, ``ffn.lin1``, ...), so the weight-name
table's ``keras`` column is an attribute path into these objects. Every variable is created in
``__init__``; nothing depends on the first call. Attention scores, softmax, LayerNorm statistics
and returned logits are float32 under mixed precision.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from distilbert.common.config import DistilBertConfig
from distilbert.common.names import sinusoidal_table
from distilbert.tf import losses
from distilbert.tf import outputs as out
from distilbert.tf.inputs import check_rank, unpack_inputs, validate
from distilbert.tf.loading import LoadingMixin
from distilbert.tf.training import TrainingMixin


def _dense(config, units, name, dtype):
    init = keras.initializers.RandomNormal(stddev=config.initializer_range)
    return keras.layers.Dense(units, kernel_initializer=init, name=name, dtype=dtype)


def _layer_norm(name, dtype):
    return keras.layers.LayerNormalization(epsilon=1e-12, name=name, dtype=dtype)


def _build(layer, shape):
    layer.build(shape)
    return layer


class SinusoidalPositions(keras.layers.Layer):
    """The fixed sin/cos position table: a constant, not a variable (nothing to train or save)."""

    def __init__(self, n_pos, dim, **kwargs):
        super().__init__(**kwargs)
        self.table = sinusoidal_table(n_pos, dim)  # (P, D) numpy

    def call(self, position_ids):
        return tf.gather(tf.constant(self.table, dtype=self.compute_dtype), position_ids)  # (B|1, T, D)


class Embeddings(keras.layers.Layer):
    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        d, init = self.dtype_policy, keras.initializers.RandomNormal(stddev=config.initializer_range)
        self.word_embeddings = keras.layers.Embedding(
            config.vocab_size, config.dim, embeddings_initializer=init, name="word_embeddings", dtype=d)
        if config.sinusoidal_pos_embds:
            self.position_embeddings = SinusoidalPositions(
                config.max_position_embeddings, config.dim, name="position_embeddings", dtype=d)
        else:
            self.position_embeddings = keras.layers.Embedding(
                config.max_position_embeddings, config.dim, embeddings_initializer=init,
                name="position_embeddings", dtype=d)
        self.LayerNorm = _build(_layer_norm("LayerNorm", d), (None, None, config.dim))
        self.dropout = keras.layers.Dropout(config.dropout, dtype=d)
        _build(self.word_embeddings, (None, None))
        _build(self.position_embeddings, (None, None))
        self.pad_token_id = config.pad_token_id
        if config.pad_token_id is not None:  # the reference's padding row starts at zero
            table = keras.ops.convert_to_numpy(self.word_embeddings.embeddings)
            table[config.pad_token_id] = 0
            self.word_embeddings.embeddings.assign(table)
        self.built = True

    def call(self, input_ids=None, inputs_embeds=None, position_ids=None, training=False):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, D)
            if training and self.pad_token_id is not None:  # like PyTorch's padding_idx: no gradient
                is_pad = tf.equal(input_ids, tf.cast(self.pad_token_id, input_ids.dtype))[..., None]
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
            setattr(self, name, _build(_dense(config, config.dim, name, d), (None, None, config.dim)))
        self.dropout = keras.layers.Dropout(config.attention_dropout, dtype=d)
        self.built = True

    def call(self, x, keep, head_mask=None, training=False):
        """``x`` (B, T, D), ``keep`` (B, 1, 1, T) bool; returns the output and the attention weights."""
        batch, length = tf.shape(x)[0], tf.shape(x)[1]

        def split(t):
            return tf.transpose(tf.reshape(t, (batch, length, self.n_heads, self.head_dim)), (0, 2, 1, 3))

        q = tf.cast(split(self.q_lin(x)), tf.float32) / math.sqrt(self.head_dim)  # (B, H, T, Dh)
        k = tf.cast(split(self.k_lin(x)), tf.float32)  # (B, H, T, Dh)
        v = split(self.v_lin(x))  # (B, H, T, Dh)
        scores = tf.matmul(q, k, transpose_b=True)  # (B, H, T, T)
        scores = tf.where(keep, scores, tf.float32.min)  # a fully masked row stays finite (uniform)
        weights = tf.nn.softmax(scores, axis=-1)  # (B, H, T, T)
        weights = self.dropout(weights, training=training)
        if head_mask is not None:
            weights = weights * tf.cast(head_mask, weights.dtype)  # (1, H, 1, 1)
        context = tf.matmul(tf.cast(weights, v.dtype), v)  # (B, H, T, Dh)
        context = tf.reshape(tf.transpose(context, (0, 2, 1, 3)), (batch, length, -1))  # (B, T, D)
        return self.out_lin(context), weights  # (B, T, D), (B, H, T, T)


class FFN(keras.layers.Layer):
    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        d = self.dtype_policy
        self.lin1 = _build(_dense(config, config.hidden_dim, "lin1", d), (None, None, config.dim))
        self.lin2 = _build(_dense(config, config.dim, "lin2", d), (None, None, config.hidden_dim))
        self.activation = activation(config.activation)
        self.dropout = keras.layers.Dropout(config.dropout, dtype=d)
        self.built = True

    def call(self, x, training=False):
        return self.dropout(self.lin2(self.activation(self.lin1(x))), training=training)  # (B, T, D)


def activation(name):
    if name == "gelu":
        return lambda x: tf.nn.gelu(x, approximate=False)  # the exact erf form
    return tf.nn.relu


class TransformerBlock(keras.layers.Layer):
    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        d = self.dtype_policy
        self.attention = MultiHeadSelfAttention(config, name="attention", dtype=d)
        self.sa_layer_norm = _build(_layer_norm("sa_layer_norm", d), (None, None, config.dim))
        self.ffn = FFN(config, name="ffn", dtype=d)
        self.output_layer_norm = _build(_layer_norm("output_layer_norm", d), (None, None, config.dim))
        self.built = True

    def call(self, x, keep, head_mask=None, training=False):
        attended, weights = self.attention(x, keep, head_mask, training=training)
        x = self.sa_layer_norm(attended + x)  # (B, T, D)
        return self.output_layer_norm(self.ffn(x, training=training) + x), weights  # (B, T, D)


class Transformer(keras.layers.Layer):
    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        self.layer = [TransformerBlock(config, name=f"layer_{i}", dtype=self.dtype_policy)
                      for i in range(config.n_layers)]
        self.built = True

    def call(self, x, keep, head_mask=None, output_attentions=False, output_hidden_states=False,
             training=False):
        hidden_states, attentions = (), ()
        for i, block in enumerate(self.layer):
            if output_hidden_states:
                hidden_states += (x,)
            x, weights = block(x, keep, None if head_mask is None else head_mask[i], training=training)
            if output_attentions:
                attentions += (weights,)
        if output_hidden_states:
            hidden_states += (x,)
        return x, hidden_states or None, attentions or None


class TFDistilBertPreTrainedModel(TrainingMixin, LoadingMixin, keras.Model):
    """Shared base: config handling, Keras serialisation, loading/saving and ``fit`` support.

    Args:
        config: A :class:`~distilbert.DistilBertConfig` (or its dict).
        **kwargs: Keras ``Model`` arguments (``name``, ``dtype`` policy such as ``"mixed_bfloat16"``).
    """

    task = "base"
    label_names = ("labels",)

    def __init__(self, config: DistilBertConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = DistilBertConfig()
        if isinstance(config, dict):
            config = DistilBertConfig.from_dict(config)
        if not isinstance(config, DistilBertConfig):
            raise TypeError(f"config must be a DistilBertConfig, got {type(config).__name__}")
        self.config = config
        # Inputs are converted by `unpack_inputs`; Keras must not cast float labels to float16.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(DistilBertConfig.from_dict(config.pop("config")), **config)

    def _output(self, cls, return_dict, **fields):
        result = cls(**fields)
        return result if return_dict in (None, True) else result.to_tuple()

    def _classifier_dropout_head(self, config, rate, names):
        d = self.dtype_policy
        self.dropout = keras.layers.Dropout(rate, dtype=d)
        for name, units in names:
            setattr(self, name, _build(_dense(config, units, name, d), (None, config.dim)))


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertModel(TFDistilBertPreTrainedModel):
    """The bare DistilBERT encoder, returning hidden states.

    Args:
        config: Model configuration.

    Example:
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.tf import TFDistilBertModel
        >>> model = TFDistilBertModel(DistilBertConfig(n_layers=1, dim=32, n_heads=2, hidden_dim=64))
        >>> model({"input_ids": [[5, 6, 7]]}).last_hidden_state.shape
        TensorShape([1, 3, 32])
    """

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self.embeddings = Embeddings(self.config, name="embeddings", dtype=self.dtype_policy)
        self.transformer = Transformer(self.config, name="transformer", dtype=self.dtype_policy)
        self.built = True

    def _head_mask(self, head_mask):
        if head_mask is None:
            return None
        c = self.config
        head_mask = tf.convert_to_tensor(head_mask)
        if tuple(head_mask.shape) == (c.n_heads,):
            head_mask = tf.tile(head_mask[None], (c.n_layers, 1))
        if tuple(head_mask.shape) != (c.n_layers, c.n_heads):
            raise ValueError(f"head_mask must have shape (n_heads,)=({c.n_heads},) or (n_layers, n_heads)="
                             f"({c.n_layers}, {c.n_heads}), got {tuple(head_mask.shape)}")
        return tf.reshape(head_mask, (c.n_layers, 1, c.n_heads, 1, 1))  # (L, 1, H, 1, 1)

    @unpack_inputs
    def call(self, input_ids=None, attention_mask=None, head_mask=None, inputs_embeds=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False,
             position_ids=None, token_type_ids=None):
        bad = validate(self.config, input_ids, attention_mask, inputs_embeds, position_ids, token_type_ids)
        x = self.embeddings(input_ids, inputs_embeds, position_ids, training=training)  # (B, T, D)
        if bad is not None:  # graph mode: a sequence with an invalid value gives NaN everywhere
            poisoned = tf.reduce_any(bad, axis=-1)[:, None, None]  # (B|1, 1, 1)
            x = tf.where(poisoned, tf.constant(np.nan, x.dtype), x)
        if attention_mask is None:
            keep = tf.ones(tf.shape(x)[:2], tf.bool)[:, None, None, :]  # (B, 1, 1, T)
        else:
            keep = tf.not_equal(attention_mask, 0)[:, None, None, :]  # (B, 1, 1, T)
        x, hidden_states, attentions = self.transformer(
            x, keep, self._head_mask(head_mask), output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states), training=training)
        return self._output(out.TFBaseModelOutput, return_dict, last_hidden_state=x,
                            hidden_states=hidden_states, attentions=attentions)


class VocabProjector(keras.layers.Layer):
    """The MLM output layer: a bias, and a kernel of its own only when untied from the embeddings."""

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(**kwargs)
        if not config.tie_word_embeddings:
            self.kernel = self.add_weight(shape=(config.dim, config.vocab_size), name="kernel",
                                          initializer=keras.initializers.RandomNormal(stddev=config.initializer_range))
        self.bias = self.add_weight(shape=(config.vocab_size,), name="bias", initializer="zeros")
        self.built = True

    def call(self, x, word_embeddings=None):
        if word_embeddings is not None:  # tied: logits against the (V, D) embedding table
            return tf.matmul(x, tf.cast(word_embeddings, x.dtype), transpose_b=True) + tf.cast(self.bias, x.dtype)
        return tf.matmul(x, tf.cast(self.kernel, x.dtype)) + tf.cast(self.bias, x.dtype)  # (B, T, V)


class _HeadModel(TFDistilBertPreTrainedModel):
    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self.distilbert = TFDistilBertModel(self.config, name="distilbert", dtype=self.dtype_policy)

    def _encode(self, input_ids, attention_mask, head_mask, inputs_embeds, output_attentions,
                output_hidden_states, training, position_ids, token_type_ids):
        return self.distilbert(input_ids, attention_mask=attention_mask, head_mask=head_mask,
                               inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states, return_dict=True,
                               training=training, position_ids=position_ids, token_type_ids=token_type_ids)


_CALL_DOC = """
    Args:
        config: Model configuration (``num_labels``, ``problem_type``, dropouts, ...).
        **kwargs: Keras ``Model`` arguments (``name``, ``dtype``).

    Call arguments are the reference's (``input_ids``, ``attention_mask``, ``head_mask``,
    ``inputs_embeds``, ``output_attentions``, ``output_hidden_states``, ``return_dict``, labels,
    ``training``) plus ``position_ids`` and ``token_type_ids`` (all zeros, or absent), as keywords
    or as a dict in the first argument.
"""


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertForMaskedLM(_HeadModel):
    __doc__ = """DistilBERT with the masked-language-modelling head; loss ignores labels of -100.
    """ + _CALL_DOC + """
    Example:
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.tf import TFDistilBertForMaskedLM
        >>> model = TFDistilBertForMaskedLM(DistilBertConfig(vocab_size=50, n_layers=1, dim=32, n_heads=2))
        >>> model({"input_ids": [[5, 6, 7]], "labels": [[-100, 6, -100]]}).logits.shape
        TensorShape([1, 3, 50])
    """
    task = "masked_lm"

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c, d = self.config, self.dtype_policy
        self.vocab_transform = _build(_dense(c, c.dim, "vocab_transform", d), (None, None, c.dim))
        self.activation = activation(c.activation)
        self.vocab_layer_norm = _build(_layer_norm("vocab_layer_norm", d), (None, None, c.dim))
        self.vocab_projector = VocabProjector(c, name="vocab_projector", dtype=d)
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, attention_mask=None, head_mask=None, inputs_embeds=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, labels=None, training=False,
             position_ids=None, token_type_ids=None):
        o = self._encode(input_ids, attention_mask, head_mask, inputs_embeds, output_attentions,
                         output_hidden_states, training, position_ids, token_type_ids)
        x = self.vocab_layer_norm(self.activation(self.vocab_transform(o.last_hidden_state)))  # (B, T, D)
        tied = self.distilbert.embeddings.word_embeddings.embeddings if self.config.tie_word_embeddings else None
        logits = tf.cast(self.vocab_projector(x, tied), tf.float32)  # (B, T, V)
        loss = None if labels is None else losses.token_loss(logits, labels)
        return self._output(out.TFMaskedLMOutput, return_dict, loss=loss, logits=logits,
                            hidden_states=o.hidden_states, attentions=o.attentions)


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertForSequenceClassification(_HeadModel):
    __doc__ = """DistilBERT with a classifier (or regressor) on the first token.

    The loss follows ``config.problem_type`` (regression, single- or multi-label), inferred from
    ``num_labels`` and the label dtype when unset, and recorded in ``config`` as the reference does.
    """ + _CALL_DOC + """
    Example:
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.tf import TFDistilBertForSequenceClassification
        >>> model = TFDistilBertForSequenceClassification(DistilBertConfig(n_layers=1, dim=32, n_heads=2))
        >>> model({"input_ids": [[5, 6, 7]], "labels": [1]}).logits.shape
        TensorShape([1, 2])
    """
    task = "sequence_classification"

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self._classifier_dropout_head(c, c.seq_classif_dropout, (("pre_classifier", c.dim),
                                                                  ("classifier", c.num_labels)))
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, attention_mask=None, head_mask=None, inputs_embeds=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, labels=None, training=False,
             position_ids=None, token_type_ids=None):
        o = self._encode(input_ids, attention_mask, head_mask, inputs_embeds, output_attentions,
                         output_hidden_states, training, position_ids, token_type_ids)
        pooled = tf.nn.relu(self.pre_classifier(o.last_hidden_state[:, 0]))  # (B, D)
        logits = tf.cast(self.classifier(self.dropout(pooled, training=training)), tf.float32)  # (B, C)
        loss = None
        if labels is not None:
            loss, problem_type = losses.sequence_classification_loss(
                logits, labels, self.config.problem_type, self.config.num_labels)
            if self.config.problem_type is None:
                self.config = self.config.replace(problem_type=problem_type)
        return self._output(out.TFSequenceClassifierOutput, return_dict, loss=loss, logits=logits,
                            hidden_states=o.hidden_states, attentions=o.attentions)


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertForMultipleChoice(_HeadModel):
    __doc__ = """DistilBERT scoring each of several choices; inputs are ``(batch, num_choices, seq_len)``.
    """ + _CALL_DOC + """
    Example:
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.tf import TFDistilBertForMultipleChoice
        >>> model = TFDistilBertForMultipleChoice(DistilBertConfig(n_layers=1, dim=32, n_heads=2))
        >>> model({"input_ids": [[[5, 6], [7, 8], [9, 10]]], "labels": [2]}).logits.shape
        TensorShape([1, 3])
    """
    task = "multiple_choice"

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self._classifier_dropout_head(c, c.seq_classif_dropout, (("pre_classifier", c.dim), ("classifier", 1)))
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, attention_mask=None, head_mask=None, inputs_embeds=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, labels=None, training=False,
             position_ids=None, token_type_ids=None):
        check_rank(self.config, input_ids, inputs_embeds, expect_rank=3)
        first = input_ids if input_ids is not None else inputs_embeds
        num_choices = tf.shape(first)[1]

        def flat(t, rank=2):  # (B, C, T[, D]) -> (B * C, T[, D])
            if t is None or t.shape.rank is None or t.shape.rank < rank + 1:
                return t
            return tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))

        o = self._encode(flat(input_ids), flat(attention_mask), head_mask, flat(inputs_embeds),
                         output_attentions, output_hidden_states, training, flat(position_ids),
                         flat(token_type_ids))
        pooled = tf.nn.relu(self.pre_classifier(o.last_hidden_state[:, 0]))  # (B * C, D)
        logits = self.classifier(self.dropout(pooled, training=training))  # (B * C, 1)
        logits = tf.cast(tf.reshape(logits, (-1, num_choices)), tf.float32)  # (B, C)
        loss = None if labels is None else losses.multiple_choice_loss(logits, labels)
        return self._output(out.TFMultipleChoiceModelOutput, return_dict, loss=loss, logits=logits,
                            hidden_states=o.hidden_states, attentions=o.attentions)


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertForTokenClassification(_HeadModel):
    __doc__ = """DistilBERT with a per-token classifier (NER); loss ignores labels of -100.
    """ + _CALL_DOC + """
    Example:
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.tf import TFDistilBertForTokenClassification
        >>> model = TFDistilBertForTokenClassification(DistilBertConfig(n_layers=1, dim=32, n_heads=2, num_labels=5))
        >>> model({"input_ids": [[5, 6, 7]]}).logits.shape
        TensorShape([1, 3, 5])
    """
    task = "token_classification"

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self._classifier_dropout_head(c, c.dropout, ())
        self.classifier = _build(_dense(c, c.num_labels, "classifier", self.dtype_policy), (None, None, c.dim))
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, attention_mask=None, head_mask=None, inputs_embeds=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, labels=None, training=False,
             position_ids=None, token_type_ids=None):
        o = self._encode(input_ids, attention_mask, head_mask, inputs_embeds, output_attentions,
                         output_hidden_states, training, position_ids, token_type_ids)
        x = self.dropout(o.last_hidden_state, training=training)  # (B, T, D)
        logits = tf.cast(self.classifier(x), tf.float32)  # (B, T, C)
        loss = None if labels is None else losses.token_loss(logits, labels)
        return self._output(out.TFTokenClassifierOutput, return_dict, loss=loss, logits=logits,
                            hidden_states=o.hidden_states, attentions=o.attentions)


@keras.saving.register_keras_serializable(package="distilbert")
class TFDistilBertForQuestionAnswering(_HeadModel):
    __doc__ = """DistilBERT predicting answer start and end positions (extractive QA).

    The loss averages start and end cross-entropies; positions outside the sequence are clamped
    and ignored, as the reference PyTorch class does.
    """ + _CALL_DOC + """
    Example:
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.tf import TFDistilBertForQuestionAnswering
        >>> model = TFDistilBertForQuestionAnswering(DistilBertConfig(n_layers=1, dim=32, n_heads=2))
        >>> model({"input_ids": [[5, 6, 7]]}).start_logits.shape
        TensorShape([1, 3])
    """
    task = "question_answering"
    label_names = ("start_positions", "end_positions")

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self._classifier_dropout_head(c, c.qa_dropout, ())
        self.qa_outputs = _build(_dense(c, 2, "qa_outputs", self.dtype_policy), (None, None, c.dim))
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, attention_mask=None, head_mask=None, inputs_embeds=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, start_positions=None,
             end_positions=None, training=False, position_ids=None, token_type_ids=None):
        o = self._encode(input_ids, attention_mask, head_mask, inputs_embeds, output_attentions,
                         output_hidden_states, training, position_ids, token_type_ids)
        logits = self.qa_outputs(self.dropout(o.last_hidden_state, training=training))  # (B, T, 2)
        logits = tf.cast(logits, tf.float32)
        start_logits, end_logits = logits[..., 0], logits[..., 1]  # (B, T), (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = losses.question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return self._output(out.TFQuestionAnsweringModelOutput, return_dict, loss=loss,
                            start_logits=start_logits, end_logits=end_logits,
                            hidden_states=o.hidden_states, attentions=o.attentions)


TF_CLASSES = {cls.task: cls for cls in (
    TFDistilBertModel, TFDistilBertForMaskedLM, TFDistilBertForSequenceClassification,
    TFDistilBertForMultipleChoice, TFDistilBertForTokenClassification, TFDistilBertForQuestionAnswering)}
