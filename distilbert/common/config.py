"""`DistilBertConfig`: one frozen, framework-free configuration for all three backends."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

ACTIVATIONS = ("gelu", "relu")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# Names that Hugging Face's generic configs use for the same fields.
ALIASES = {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}
SIZES = ("vocab_size", "max_position_embeddings", "n_layers", "n_heads", "dim", "hidden_dim")
# Fields of ``extra`` that the package reads, and the JSON types they must have when present.
EXTRA_TYPES = {
    "model_type": str,
    "architectures": list,
    "torch_dtype": str,
    "dtype": str,
    "output_attentions": bool,
    "output_hidden_states": bool,
    "return_dict": bool,
}
EXTRA_NULLABLE = ("architectures", "torch_dtype", "dtype")


class ConfigError(ValueError):
    """A config field (or ``config.json``) of the wrong type or out of range; the message names it."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_index(key) -> bool:
    """A label index: an int, or its decimal string (JSON object keys are strings)."""
    return _is_int(key) or (isinstance(key, str) and re.fullmatch(r"-?[0-9]+", key) is not None)


def _is_map(value, key_ok, value_ok) -> bool:
    return isinstance(value, dict) and all(key_ok(k) and value_ok(v) for k, v in value.items())


def _shown(value, limit: int = 80) -> str:
    """A value for an error message, cut short (a corrupted field can be long)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class DistilBertConfig:
    """Hyper-parameters of a DistilBERT model, equal in meaning and defaults to transformers'.

    Fields unknown to this class (``architectures``, ``torch_dtype``, ...) are kept in ``extra``
    and written back, so a real ``config.json`` round-trips.

    Args:
        vocab_size: Number of token ids.
        max_position_embeddings: Longest sequence the position table covers.
        sinusoidal_pos_embds: Use fixed sinusoidal position embeddings instead of learned ones.
        n_layers: Number of transformer blocks.
        n_heads: Attention heads per block; must divide ``dim``.
        dim: Hidden size.
        hidden_dim: Feed-forward inner size.
        dropout: Dropout on embeddings, attention output and feed-forward output.
        attention_dropout: Dropout on attention probabilities.
        activation: ``"gelu"`` (exact erf form) or ``"relu"``.
        initializer_range: Standard deviation of the normal initialiser.
        qa_dropout: Dropout before the question-answering head.
        seq_classif_dropout: Dropout before the classifier of the classification heads.
        pad_token_id: Id of ``[PAD]``; its embedding row is initialised to zero.
        tie_word_embeddings: Share the masked-LM projector with the word embeddings.
        num_labels: Classifier outputs; defaults to ``len(id2label)`` or 2.
        id2label: Label names by index.
        label2id: Index by label name.
        problem_type: Loss of the sequence-classification head, or None to infer it.
        extra: Other ``config.json`` fields, kept verbatim.

    Example:
        >>> from distilbert import DistilBertConfig
        >>> config = DistilBertConfig(dim=64, n_heads=4, hidden_dim=128)
        >>> config.head_dim
        16
    """

    vocab_size: int = 30522
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False
    n_layers: int = 6
    n_heads: int = 12
    dim: int = 768
    hidden_dim: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    initializer_range: float = 0.02
    qa_dropout: float = 0.1
    seq_classif_dropout: float = 0.2
    pad_token_id: int = 0
    tie_word_embeddings: bool = True
    # None (the default) means "derive it from the others"; __post_init__ sets all three, so they are typed as set.
    num_labels: int = None  # type: ignore[assignment]
    id2label: dict[int, str] = None  # type: ignore[assignment]
    label2id: dict[str, int] = None  # type: ignore[assignment]
    problem_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._check_types()
        # Normalise labels first: json gives string keys, and either mapping may imply the other.
        id2label = self.id2label
        if id2label is not None:
            id2label = {int(k): v for k, v in id2label.items()}
        label2id = self.label2id
        if label2id is not None:
            label2id = dict(label2id)
        num_labels = self.num_labels
        if num_labels is None:
            num_labels = len(id2label) if id2label else (len(label2id) if label2id else 2)
        if id2label is None:
            id2label = {v: k for k, v in label2id.items()} if label2id else {i: f"LABEL_{i}" for i in range(num_labels)}
        if label2id is None:
            label2id = {v: k for k, v in id2label.items()}
        object.__setattr__(self, "num_labels", int(num_labels))
        object.__setattr__(self, "id2label", id2label)
        object.__setattr__(self, "label2id", label2id)
        object.__setattr__(self, "extra", dict(self.extra))
        self._validate()

    def _check_types(self) -> None:
        """The types ``__post_init__`` relies on (a ``config.json`` may hold any JSON value anywhere)."""
        for name in SIZES:
            value = getattr(self, name)
            if not _is_int(value):
                raise ConfigError(f"DistilBertConfig.{name} must be a positive integer, got {_shown(value)}")
        for name in ("num_labels", "pad_token_id"):
            value = getattr(self, name)
            if value is not None and not _is_int(value):
                raise ConfigError(f"DistilBertConfig.{name} must be an integer or null, got {_shown(value)}")
        for name in ("sinusoidal_pos_embds", "tie_word_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"DistilBertConfig.{name} must be true or false, got {_shown(value)}")
        if self.id2label is not None and not _is_map(self.id2label, _is_index, lambda v: isinstance(v, str)):
            raise ConfigError(
                "DistilBertConfig.id2label must map label indices to label names "
                f"({{0: 'NEGATIVE', ...}}), got {_shown(self.id2label)}"
            )
        if self.label2id is not None and not _is_map(self.label2id, lambda k: isinstance(k, str), _is_int):
            raise ConfigError(
                "DistilBertConfig.label2id must map label names to label indices "
                f"({{'NEGATIVE': 0, ...}}), got {_shown(self.label2id)}"
            )
        if not isinstance(self.extra, dict):
            raise ConfigError(f"DistilBertConfig.extra must be a dict, got {type(self.extra).__name__}")
        for name, kind in EXTRA_TYPES.items():
            value = self.extra.get(name)
            if name in self.extra and not isinstance(value, kind) and not (value is None and name in EXTRA_NULLABLE):
                null = " or null" if name in EXTRA_NULLABLE else ""
                raise ConfigError(f"config field {name} must be a {kind.__name__}{null}, got {_shown(value)}")
        architectures = self.extra.get("architectures")
        if architectures is not None and not all(isinstance(a, str) for a in architectures):
            raise ConfigError(f"config field architectures must be a list of class names, got {_shown(architectures)}")

    def _validate(self) -> None:
        for name in (*SIZES, "num_labels"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ConfigError(f"DistilBertConfig.{name} must be a positive integer, got {_shown(value)}")
        if self.dim % self.n_heads:
            raise ConfigError(f"DistilBertConfig.dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        for name in ("dropout", "attention_dropout", "qa_dropout", "seq_classif_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"DistilBertConfig.{name} must be a probability in [0, 1), got {_shown(value)}")
        if isinstance(self.initializer_range, bool) or not (
            isinstance(self.initializer_range, (int, float)) and 0 < self.initializer_range < math.inf
        ):
            raise ConfigError(
                f"DistilBertConfig.initializer_range must be a positive number, got {_shown(self.initializer_range)}"
            )
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"DistilBertConfig.activation must be one of {ACTIVATIONS}, got {_shown(self.activation)}"
            )
        if self.problem_type is not None and (
            not isinstance(self.problem_type, str) or self.problem_type not in PROBLEM_TYPES
        ):
            raise ConfigError(
                f"DistilBertConfig.problem_type must be one of {PROBLEM_TYPES} or None, got {_shown(self.problem_type)}"
            )
        labels = sorted(self.id2label or {})  # set by __post_init__
        if len(labels) != self.num_labels:
            raise ConfigError(f"DistilBertConfig.id2label has {len(labels)} labels but num_labels is {self.num_labels}")
        if labels != list(range(self.num_labels)):
            raise ConfigError(f"DistilBertConfig.id2label keys must be 0..{self.num_labels - 1}, got {labels}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(
                f"DistilBertConfig.pad_token_id ({self.pad_token_id}) must be in [0, vocab_size={self.vocab_size})"
            )
        model_type = self.extra.get("model_type", "distilbert")
        if model_type != "distilbert":
            raise ConfigError(f"config model_type is {model_type!r}; this package reads DistilBERT configs only")

    # ----------------------------------------------------------------------------------- derived
    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def hidden_size(self) -> int:
        return self.dim

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def architectures(self) -> list[str] | None:
        return self.extra.get("architectures")

    def replace(self, **changes: Any) -> DistilBertConfig:
        """Returns a copy with ``changes`` applied (aliases accepted), validated again."""
        data = self.to_dict()
        data.update(changes)
        if "num_labels" in changes and "id2label" not in changes:
            data.pop("id2label", None)
            data.pop("label2id", None)
        # New labels imply their count and inverse, as in transformers (stale ones would contradict them).
        for given, derived in (("id2label", "label2id"), ("label2id", "id2label")):
            if given in changes and changes[given] is not None:
                if derived not in changes:
                    data.pop(derived, None)
                if "num_labels" not in changes:
                    data.pop("num_labels", None)
        return DistilBertConfig.from_dict(data)

    # ------------------------------------------------------------------------------ (de)serialise
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistilBertConfig:
        """Builds a config from a ``config.json``-style dict; unknown keys go to ``extra``."""
        if not isinstance(data, dict):
            raise TypeError(f"DistilBertConfig.from_dict expects a dict, got {type(data).__name__}")
        data = dict(data)
        for alias, name in ALIASES.items():
            if alias in data:
                value = data.pop(alias)
                if name in data and data[name] != value:
                    raise ConfigError(f"config gives {alias}={value!r} but {name}={data[name]!r}")
                data[name] = value
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: data.pop(k) for k in list(data) if k in names}
        extra = data.pop("extra", None) or {}
        if not isinstance(extra, dict):
            raise ConfigError(f"DistilBertConfig.extra must be an object, got {_shown(extra)}")
        extra = dict(extra)
        extra.update(data)
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` content: every field, ``extra`` merged back, ``model_type`` set."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = getattr(self, f.name)
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["model_type"] = "distilbert"
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> DistilBertConfig:
        """Reads a ``config.json``.

        Raises:
            FileNotFoundError: no such file.
            ConfigError: not JSON, not an object, or a field of the wrong type or out of range; the
                message names the file and the field.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise FileNotFoundError(f"no config file at {path!r}") from None
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, too deep, too long ints
            raise ConfigError(f"{path!r} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path!r} must hold a JSON object of config fields, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ConfigError(f"config file {path!r}: {exc}") from None

    def to_json_file(self, path: str | os.PathLike) -> None:
        """Writes ``config.json`` atomically (temporary name, then rename)."""
        from distilbert.common.files import atomic_write_bytes

        atomic_write_bytes(path, self.to_json_string().encode("utf-8"))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **overrides: Any) -> DistilBertConfig:
        """Reads ``config.json`` from a local directory or hub id, then applies ``overrides``."""
        from distilbert.common.hub import resolve_file

        config = cls.from_json_file(resolve_file(name_or_path, "config.json"))
        return config.replace(**overrides) if overrides else config

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        os.makedirs(directory, exist_ok=True)
        self.to_json_file(os.path.join(directory, "config.json"))
