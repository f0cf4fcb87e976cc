"""Sentence embeddings without an ML framework: a sentence-transformers configuration, read strictly, and
the pooling and normalisation it describes, in numpy.

A sentence-transformers directory describes its pipeline in files beside the transformer's weights:

- ``modules.json``: the modules in order, here a ``Transformer`` at the root, then ``Pooling`` and
  optionally ``Normalize`` (other modules, ``Dense`` say, are refused: they have weights we do not run);
- ``<pooling folder>/config.json``: the pooling mode (``cls``, ``max``, ``mean``, ``mean_sqrt_len_tokens``,
  ``weightedmean``, ``lasttoken``; several are concatenated), in the old form (``pooling_mode_mean_tokens:
  true``, ...) or the new one (``pooling_mode: "mean"``);
- ``sentence_bert_config.json``: ``max_seq_length`` (texts are cut to it) and ``do_lower_case``.

Without ``modules.json`` the default is mean pooling over the real (non-padding) tokens, unnormalised.

Example:
    >>> import numpy as np
    >>> hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]], np.float32)  # (B=1, T=3, D=2)
    >>> mask = np.array([[1, 1, 0]])  # the third token is padding
    >>> pool(hidden, mask, ("mean", "max"))
    array([[2., 3., 3., 4.]], dtype=float32)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from distilbert.common.bert import ST_MODULES
from distilbert.common.config import ConfigError

# sentence-transformers' modes, in the order it concatenates them when several are on.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# The old form of the pooling config: one boolean per mode.
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
SENTENCE_BERT_CONFIG = "sentence_bert_config.json"
POOLING_CONFIG = "config.json"
SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class SentenceEmbeddingConfig:
    """How token vectors become one sentence vector.

    Attributes:
        pooling: Pooling modes, concatenated in this order (see :data:`POOLING_MODES`).
        normalize: Scale each sentence vector to unit L2 norm (a ``Normalize`` module).
        max_seq_length: Cut texts to this many tokens (special tokens included); None: the model's length.
        do_lower_case: Lower-case texts before tokenizing.
        dimension: The token-vector size the pooling expects (None: not stated).
        source: The directory read (None: the defaults).

    Example:
        >>> SentenceEmbeddingConfig(pooling=("cls",), normalize=True).output_dimension(384)
        384
    """

    pooling: tuple[str, ...] = ("mean",)
    normalize: bool = False
    max_seq_length: int | None = None
    do_lower_case: bool = False
    dimension: int | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pooling", check_pooling(self.pooling))

    def output_dimension(self, dim: int) -> int:
        """The sentence vector's size for token vectors of size ``dim``."""
        return dim * len(self.pooling)


def check_pooling(pooling: str | Sequence[str]) -> tuple[str, ...]:
    """A pooling mode or modes as a tuple; an unknown or empty one raises ValueError."""
    modes = (pooling,) if isinstance(pooling, str) else pooling
    if not isinstance(modes, (list, tuple)) or not modes:
        raise ValueError(
            f"pooling must be a mode or a non-empty list of modes ({', '.join(POOLING_MODES)}), got {pooling!r}"
        )
    for mode in modes:
        if mode not in POOLING_MODES:
            raise ValueError(f"unknown pooling mode {mode!r}; expected one of {', '.join(POOLING_MODES)}")
    return tuple(modes)


# ------------------------------------------------------------------------------------- reading
def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path!r} is not valid JSON ({what}): {exc}") from None


def _field(data: dict, key: str, types, path: str, what: str, required: bool = False, default=None):
    """``data[key]`` if it has one of ``types`` (booleans are not integers), else a ConfigError naming the file."""
    if key not in data:
        if required:
            raise ConfigError(f"{path!r} has no {key!r} field ({what})")
        return default
    value = data[key]
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in _as_tuple(types))
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in _as_tuple(types))
        raise ConfigError(f"{path!r}: field {key!r} must be {names}, got {value!r:.60}")
    return value


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def read_sentence_embedding_config(directory: str | os.PathLike) -> SentenceEmbeddingConfig:
    """The sentence-transformers configuration of ``directory`` (the defaults when it has no ``modules.json``).

    Raises:
        distilbert.common.config.ConfigError: A file that is not valid JSON, a field of the wrong type
            or value (the message names the file and the field), a module this package does not run, a
            pooling folder without its ``config.json``.
    """
    directory = os.fspath(directory)
    modules_path = os.path.join(directory, ST_MODULES)
    if not os.path.isfile(modules_path):
        return SentenceEmbeddingConfig()
    modules = _read_json(modules_path, "the sentence-transformers module list")
    if not isinstance(modules, list) or not modules:
        raise ConfigError(f"{modules_path!r} must be a non-empty JSON list of modules, got {modules!r:.60}")
    pooling, normalize, dimension = None, False, None
    for i, module in enumerate(modules):
        what = f"module {i}"
        if not isinstance(module, dict):
            raise ConfigError(f"{modules_path!r}: module {i} must be a JSON object, got {module!r:.60}")
        _field(module, "idx", int, modules_path, what)
        _field(module, "name", str, modules_path, what)
        path = _field(module, "path", str, modules_path, what, required=True)
        kind = _field(module, "type", str, modules_path, what, required=True).rsplit(".", 1)[-1]
        if kind not in SUPPORTED_MODULES:
            raise ConfigError(
                f"{modules_path!r}: module {i} is a {kind} module, which this package does not run "
                f"(it runs {', '.join(SUPPORTED_MODULES)}); use sentence-transformers for this model"
            )
        if (kind == "Transformer") != (i == 0):
            raise ConfigError(
                f"{modules_path!r}: the Transformer must be module 0, and the only one; module {i} is a {kind}"
            )
        if kind == "Transformer" and path.strip("/."):
            raise ConfigError(
                f"{modules_path!r} keeps its Transformer in {path!r}; only directories with the "
                "transformer at the root are read (point at that folder)"
            )
        if kind == "Pooling":
            if pooling is not None:
                raise ConfigError(f"{modules_path!r} lists more than one Pooling module")
            pooling, dimension = _read_pooling(directory, path, modules_path)
        if kind == "Normalize":
            if pooling is None:
                raise ConfigError(f"{modules_path!r}: Normalize (module {i}) comes before any Pooling module")
            normalize = True
    if pooling is None:
        raise ConfigError(f"{modules_path!r} lists no Pooling module, so the model gives no sentence vector")
    max_seq_length, lower = _read_sentence_bert_config(directory)
    return SentenceEmbeddingConfig(pooling, normalize, max_seq_length, lower, dimension, directory)


def _read_pooling(directory: str, folder: str, modules_path: str) -> tuple[tuple[str, ...], int | None]:
    full = os.path.realpath(os.path.join(directory, folder))
    if not folder.strip("/.") or os.path.dirname(full) != os.path.realpath(directory):
        raise ConfigError(f"{modules_path!r}: the Pooling module's path {folder!r} is not a folder of the directory")
    path = os.path.join(full, POOLING_CONFIG)
    if not os.path.isfile(path):
        raise ConfigError(f"the Pooling module has no {os.path.join(folder, POOLING_CONFIG)!r} in {directory!r}")
    data = _read_json(path, "the pooling config")
    what = "the pooling config"
    if not isinstance(data, dict):
        raise ConfigError(f"{path!r} must be a JSON object, got {data!r:.60}")
    known = {"word_embedding_dimension", "embedding_dimension", "pooling_mode", "include_prompt", *LEGACY_POOLING_KEYS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{path!r}: unknown field(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(sorted(known))}"
        )
    dimension = None
    for key in ("word_embedding_dimension", "embedding_dimension"):
        value = _field(data, key, int, path, what)
        if value is not None and value <= 0:
            raise ConfigError(f"{path!r}: field {key!r} must be a positive integer, got {value!r}")
        dimension = value if value is not None else dimension
    _field(data, "include_prompt", bool, path, what)  # no prompts here, so it changes nothing
    legacy = [mode for key, mode in LEGACY_POOLING_KEYS.items() if _field(data, key, bool, path, what)]
    mode = _field(data, "pooling_mode", (str, list), path, what)
    if mode is not None:
        modes = [mode] if isinstance(mode, str) else mode
        try:
            return check_pooling(modes), dimension
        except ValueError as exc:
            raise ConfigError(f"{path!r}: field 'pooling_mode': {exc}") from None
    # The old form: every mode switched on, in sentence-transformers' order; none means mean, as there.
    return tuple(legacy) or ("mean",), dimension


def _read_sentence_bert_config(directory: str) -> tuple[int | None, bool]:
    path = os.path.join(directory, SENTENCE_BERT_CONFIG)
    if not os.path.isfile(path):
        return None, False
    data = _read_json(path, "the transformer's settings")
    if not isinstance(data, dict):
        raise ConfigError(f"{path!r} must be a JSON object, got {data!r:.60}")
    what = "the transformer's settings"
    max_seq_length = _field(data, "max_seq_length", (int, type(None)), path, what)
    if max_seq_length is not None and max_seq_length <= 0:
        raise ConfigError(
            f"{path!r}: field 'max_seq_length' must be a positive integer or null, got {max_seq_length!r}"
        )
    task = _field(data, "transformer_task", str, path, what, default="feature-extraction")
    if task != "feature-extraction":
        raise ConfigError(
            f"{path!r}: field 'transformer_task' is {task!r}; only 'feature-extraction' "
            "(token vectors for pooling) gives sentence embeddings"
        )
    return max_seq_length, _field(data, "do_lower_case", bool, path, what, default=False)


# ------------------------------------------------------------------------------------- pooling
def pool(hidden: np.ndarray, attention_mask: np.ndarray, modes: Sequence[str] = ("mean",)) -> np.ndarray:
    """Sentence vectors from token vectors, as sentence-transformers' ``Pooling`` computes them.

    Args:
        hidden: Token vectors ``(B, T, D)``.
        attention_mask: ``(B, T)``, 1 for real tokens, 0 for padding (which no mode reads).
        modes: Pooling modes (:data:`POOLING_MODES`), concatenated in order.

    Returns:
        ``(B, len(modes) * D)`` float32.
    """
    hidden = np.asarray(hidden, np.float32)  # (B, T, D)
    mask = np.asarray(attention_mask) != 0  # (B, T)
    weights = mask[..., None].astype(np.float32)  # (B, T, 1)
    rows = np.arange(hidden.shape[0])
    out = []
    for mode in check_pooling(modes):
        if mode == "cls":  # the first real token (index 0 unless the padding is on the left)
            out.append(hidden[rows, np.argmax(mask, axis=1)])
        elif mode == "max":
            out.append(np.where(weights > 0, hidden, -np.inf).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = np.maximum(weights.sum(axis=1), 1e-9)  # (B, 1); an all-padding row gives zeros
            total = (hidden * weights).sum(axis=1)  # (B, D)
            out.append(total / count if mode == "mean" else total / np.sqrt(count))
        elif mode == "weightedmean":  # position t (from 1) weighs t
            position = np.arange(1, hidden.shape[1] + 1, dtype=np.float32)[None, :, None] * weights  # (B, T, 1)
            out.append((hidden * position).sum(axis=1) / np.maximum(position.sum(axis=1), 1e-9))
        else:  # lasttoken: the last real token (zeros for a row without one)
            last = hidden.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
            out.append((hidden * weights)[rows, np.where(mask.any(axis=1), last, 0)])
    return np.concatenate(out, axis=-1).astype(np.float32)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm (a zero row stays zero), as ``torch.nn.functional.normalize``."""
    vectors = np.asarray(vectors, np.float32)
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norm, 1e-12)).astype(np.float32)
