"""The base class of the Keras DistilBERT models: config, Keras serialisation, loading and training."""

from __future__ import annotations

import keras

from distilbert.common.config import DistilBertConfig
from distilbert.common.outputs import output_flags
from distilbert.common.validation import as_config
from distilbert.tf.loading import LoadingMixin
from distilbert.tf.training import TrainingMixin


class TFDistilBertPreTrainedModel(TrainingMixin, LoadingMixin, keras.Model):
    """Shared base: config handling, Keras serialisation, loading/saving and ``fit`` support.

    Args:
        config: A :class:`~distilbert.DistilBertConfig`, its dict, or a transformers config.
        **kwargs: Keras ``Model`` arguments (``name``, ``dtype`` policy such as ``"mixed_bfloat16"``).
    """

    task = "base"
    label_names = ("labels",)

    def __init__(self, config: DistilBertConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = as_config(config)
        # Inputs are converted by `unpack_inputs`; Keras must not cast float labels to float16.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(DistilBertConfig.from_dict(config.pop("config")), **config)

    def _flags(self, output_attentions, output_hidden_states, return_dict) -> tuple[bool, bool, bool]:
        """The call's output flags, unset ones from the config (as the reference)."""
        return output_flags(self.config, output_attentions, output_hidden_states, return_dict)

    def _output(self, cls, return_dict, **fields):
        result = cls(**fields)
        return result if self._flags(None, None, return_dict)[2] else result.to_tuple()
