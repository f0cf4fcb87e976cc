"""DistilBERT in PyTorch: the six classes of transformers 4.x, same names, arguments and outputs.

Migrating from transformers is a change of import::

    from distilbert.pt import DistilBertForSequenceClassification  # was: from transformers import ...
"""

from distilbert.pt.modeling import (
    DistilBertForMaskedLM,
    DistilBertForMultipleChoice,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
)
from distilbert.pt.pretrained import DistilBertPreTrainedModel, canonical_state, load_canonical_state
from distilbert.pt.quantize import quantize

__all__ = [
    "DistilBertPreTrainedModel",
    "DistilBertModel",
    "DistilBertForMaskedLM",
    "DistilBertForSequenceClassification",
    "DistilBertForMultipleChoice",
    "DistilBertForTokenClassification",
    "DistilBertForQuestionAnswering",
    "canonical_state",
    "load_canonical_state",
    "quantize",
]
