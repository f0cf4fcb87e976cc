"""DistilBERT in TensorFlow on Keras 3: the six TF classes of transformers 4.x, without ``tf-keras``.

Migrating from transformers is a change of import::

    from distilbert.tf import TFDistilBertForSequenceClassification  # was: from transformers import ...
"""

from distilbert.tf.modeling import (
    TFDistilBertForMaskedLM,
    TFDistilBertForMultipleChoice,
    TFDistilBertForQuestionAnswering,
    TFDistilBertForSequenceClassification,
    TFDistilBertForTokenClassification,
    TFDistilBertModel,
)
from distilbert.tf.pretrained import TFDistilBertPreTrainedModel, canonical_state, load_canonical_state

__all__ = [
    "TFDistilBertPreTrainedModel",
    "TFDistilBertModel",
    "TFDistilBertForMaskedLM",
    "TFDistilBertForSequenceClassification",
    "TFDistilBertForMultipleChoice",
    "TFDistilBertForTokenClassification",
    "TFDistilBertForQuestionAnswering",
    "canonical_state",
    "load_canonical_state",
]
