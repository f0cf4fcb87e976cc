"""Output containers shared by the three backends: dataclasses holding framework tensors.

Fields and their order are the reference's. An output is indexable by name (``out["logits"]``) and
by position over its non-None fields (``out[0]``), and :meth:`ModelOutput.to_tuple` gives what the
reference returns with ``return_dict=False``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class ModelOutput:
    """Base of every output: a dataclass that also reads like the reference's ordered dict."""

    def to_tuple(self) -> tuple:
        return tuple(v for v in (getattr(self, f.name) for f in dataclasses.fields(self)) if v is not None)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass
class BaseModelOutput(ModelOutput):
    last_hidden_state: Any = None
    hidden_states: Any = None
    attentions: Any = None


@dataclass
class MaskedLMOutput(ModelOutput):
    loss: Any = None
    logits: Any = None
    hidden_states: Any = None
    attentions: Any = None


@dataclass
class SequenceClassifierOutput(MaskedLMOutput):
    pass


@dataclass
class MultipleChoiceModelOutput(MaskedLMOutput):
    pass


@dataclass
class TokenClassifierOutput(MaskedLMOutput):
    pass


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: Any = None
    start_logits: Any = None
    end_logits: Any = None
    hidden_states: Any = None
    attentions: Any = None


OUTPUT_CLASSES = (
    BaseModelOutput,
    MaskedLMOutput,
    SequenceClassifierOutput,
    MultipleChoiceModelOutput,
    TokenClassifierOutput,
    QuestionAnsweringModelOutput,
)


def output_flags(config, output_attentions, output_hidden_states, return_dict) -> tuple[bool, bool, bool]:
    """A call's ``output_attentions``, ``output_hidden_states`` and ``return_dict``; ``None`` takes the
    config's value (``config.json`` may set them, as with the reference), else False, False, True."""
    extra = config.extra
    return (
        bool(extra.get("output_attentions", False) if output_attentions is None else output_attentions),
        bool(extra.get("output_hidden_states", False) if output_hidden_states is None else output_hidden_states),
        bool(extra.get("return_dict", True) if return_dict is None else return_dict),
    )
