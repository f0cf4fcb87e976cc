"""DistilBERT in JAX / Flax NNX: the six ``FlaxDistilBert...`` classes of transformers 4.x as NNX modules.

Example:
    >>> import jax.numpy as jnp
    >>> from distilbert import DistilBertConfig
    >>> from distilbert.flax import FlaxDistilBertForSequenceClassification
    >>> model = FlaxDistilBertForSequenceClassification(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37))
    >>> model(jnp.array([[1, 5, 2]])).logits.shape
    (1, 2)
"""

from distilbert.common.config import DistilBertConfig
from distilbert.flax.modeling import (
    FlaxDistilBertForMaskedLM,
    FlaxDistilBertForMultipleChoice,
    FlaxDistilBertForQuestionAnswering,
    FlaxDistilBertForSequenceClassification,
    FlaxDistilBertForTokenClassification,
    FlaxDistilBertModel,
    FlaxDistilBertPreTrainedModel,
)
from distilbert.flax.pretrained import canonical_state, load_canonical_state

__all__ = [
    "DistilBertConfig",
    "FlaxDistilBertModel",
    "FlaxDistilBertForMaskedLM",
    "FlaxDistilBertForSequenceClassification",
    "FlaxDistilBertForMultipleChoice",
    "FlaxDistilBertForTokenClassification",
    "FlaxDistilBertForQuestionAnswering",
    "FlaxDistilBertPreTrainedModel",
    "canonical_state",
    "load_canonical_state",
]
