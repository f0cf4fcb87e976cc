"""Distillation, defined once: the recipe's configuration, the triple loss and the masking, in numpy.

The student learns from a frozen teacher through a weighted sum of five terms (Sanh et al., 2019:
"a triple loss combining language modeling, distillation and cosine-distance losses", plus an
optional logit MSE and an optional cosine of the mean-pooled hidden states). Positions S are the
real tokens (``attention_mask == 1``); with ``restrict_ce_to_mask`` only the masked ones
(``labels != -100``). With ``p = softmax(logits / T)``:

- ``ce``: the soft-target loss, ``T**2`` times the mean over S of ``KL(p_teacher || p_student)``
  (the ``T**2`` keeps its gradients on the scale of the hard loss's as ``T`` grows);
- ``mlm``: the hard loss, the mean cross-entropy of the student's logits (at temperature 1) over
  the positions whose label is not -100; 0 when there are none;
- ``cos``: the mean over S of ``1 - cosine(student_hidden, teacher_hidden)`` (last hidden states),
  each vector's norm clamped below at 1e-8;
- ``mse``: the sum over S and the vocabulary of ``(student_logits - teacher_logits)**2``, over ``|S|``;
- ``pool`` (off in the paper's recipe): the mean over the examples of ``1 - cosine(student_pooled,
  teacher_pooled)``, where ``x_pooled`` is the mean of an example's last hidden states over its real
  tokens (``attention_mask == 1``, whatever ``restrict_ce_to_mask`` says; examples without one do
  not count), the norms clamped as in ``cos``. It is the cosine of the sentence embeddings that
  mean pooling gives; unlike ``cos``, which aligns each token's direction alone, it also sees the
  tokens' norms, which weigh them in the mean;
- ``loss = alpha_ce * ce + alpha_mlm * mlm + alpha_cos * cos + alpha_mse * mse + alpha_pool * pool``.

A mean over an empty S is 0. A term whose inputs are not given is 0, which is allowed only when its
weight is 0 (a bare encoder teacher has no logits: ``alpha_ce`` and ``alpha_mse`` must then be 0).
For task-specific distillation (a classifier teacher) the logits are per sequence, ``(B, C)``: the
logit terms then run over the examples, ``mlm`` is the cross-entropy against the hard class labels
``(B,)``, and ``cos`` and ``pool`` still run over the real tokens.

Each backend's ``distill.py`` implements :func:`distillation_loss_numpy`'s definition in its own
framework under the name ``distillation_loss``, with the same arguments; this numpy version is the
reference the tests hold them to.

Masking follows the recipe: every batch is masked afresh; ``ceil(mlm_mask_prop * n)`` of the ``n``
maskable tokens (real, not special) are drawn without replacement, each with probability
proportional to ``count ** -mlm_smoothing`` (counts from the corpus, so frequent tokens are chosen
less often); of those, ``word_mask`` become ``[MASK]``, ``word_keep`` stay as they are and
``word_rand`` become a random non-special token. A seeded ``np.random.Generator`` makes the masks
the same in every framework.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from distilbert.common.losses import IGNORE_INDEX

COSINE_EPS = 1e-8
TERMS = ("ce", "mlm", "cos", "mse", "pool")


@dataclass(frozen=True)
class DistillationConfig:
    """The distillation recipe's hyper-parameters (defaults: the paper's).

    Args:
        temperature: Softmax temperature ``T`` of the soft targets (> 0).
        alpha_ce: Weight of the soft-target KL term.
        alpha_mlm: Weight of the masked-LM (or hard-label) cross-entropy.
        alpha_cos: Weight of the hidden-state cosine term.
        alpha_mse: Weight of the logit MSE term.
        alpha_pool: Weight of the cosine between mean-pooled hidden states (sentence embeddings);
            not in the paper (0).
        restrict_ce_to_mask: Compute the ``ce``, ``cos`` and ``mse`` terms on the masked positions
            only, instead of every real token.
        mlm_mask_prop: Fraction of the maskable tokens of a batch that are selected for prediction.
        word_mask: Of the selected tokens, the fraction replaced by ``[MASK]``.
        word_keep: ... the fraction left unchanged.
        word_rand: ... the fraction replaced by a random token (the three sum to 1).
        mlm_smoothing: Exponent ``s`` of the selection weights ``count ** -s`` (0: uniform).

    Example:
        >>> from distilbert import DistillationConfig
        >>> config = DistillationConfig(temperature=4.0)
        >>> config.alpha_ce, config.replace(alpha_mse=1.0).alpha_mse
        (5.0, 1.0)
    """

    temperature: float = 2.0
    alpha_ce: float = 5.0
    alpha_mlm: float = 2.0
    alpha_cos: float = 1.0
    alpha_mse: float = 0.0
    alpha_pool: float = 0.0
    restrict_ce_to_mask: bool = False
    mlm_mask_prop: float = 0.15
    word_mask: float = 0.8
    word_keep: float = 0.1
    word_rand: float = 0.1
    mlm_smoothing: float = 0.7

    def __post_init__(self) -> None:
        def number(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"DistillationConfig.{name} must be a finite number, got {value!r}")
            return float(value)

        if number("temperature") <= 0:
            raise ValueError(f"DistillationConfig.temperature must be > 0, got {self.temperature!r}")
        for name in (f"alpha_{term}" for term in TERMS):
            if number(name) < 0:
                raise ValueError(f"DistillationConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not any(getattr(self, f"alpha_{term}") for term in TERMS):
            raise ValueError(
                "DistillationConfig: every alpha_* is 0, so there is nothing to learn; "
                "give at least one term a positive weight"
            )
        if not isinstance(self.restrict_ce_to_mask, bool):
            raise ValueError(
                f"DistillationConfig.restrict_ce_to_mask must be True or False, got {self.restrict_ce_to_mask!r}"
            )
        if not 0 < number("mlm_mask_prop") <= 1:
            raise ValueError(f"DistillationConfig.mlm_mask_prop must be in (0, 1], got {self.mlm_mask_prop!r}")
        for name in ("word_mask", "word_keep", "word_rand"):
            if not 0 <= number(name) <= 1:
                raise ValueError(
                    f"DistillationConfig.{name} must be a probability in [0, 1], got {getattr(self, name)!r}"
                )
        total = self.word_mask + self.word_keep + self.word_rand
        if abs(total - 1) > 1e-6:
            raise ValueError(
                f"DistillationConfig.word_mask + word_keep + word_rand must be 1, got {total!r} "
                f"({self.word_mask!r} + {self.word_keep!r} + {self.word_rand!r})"
            )
        if number("mlm_smoothing") < 0:
            raise ValueError(f"DistillationConfig.mlm_smoothing must be >= 0, got {self.mlm_smoothing!r}")

    @property
    def needs_masking(self) -> bool:
        """Whether a term learns from masked inputs: the masked-LM loss, the logit terms (a masked-LM
        teacher's predictions are what they distil), or any term restricted to the masked positions.

        When False (the hidden-state terms alone, as for a teacher without a head) masking would only
        train the student on text unlike the clean text it will embed, so the batches are left unmasked.
        """
        return bool(self.alpha_mlm or self.alpha_ce or self.alpha_mse or self.restrict_ce_to_mask)

    @property
    def word_probs(self) -> tuple[float, float, float]:
        """``(word_mask, word_keep, word_rand)``."""
        return (self.word_mask, self.word_keep, self.word_rand)

    def replace(self, **changes: Any) -> DistillationConfig:
        """A copy with ``changes`` applied, validated again."""
        return DistillationConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistillationConfig:
        """Builds a config from a dict of its fields; an unknown key (a typo) is refused by name."""
        if not isinstance(data, Mapping):
            raise TypeError(f"DistillationConfig.from_dict expects a dict, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(
                f"DistillationConfig has no field(s) {', '.join(map(repr, unknown))}; its fields are {', '.join(names)}"
            )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> DistillationConfig:
        """Reads a JSON file of fields; errors name the file."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise FileNotFoundError(f"no distillation config at {os.fspath(path)!r}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{os.fspath(path)!r} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_json_file(self, path: str | os.PathLike) -> None:
        """Writes the fields as JSON, atomically (temporary name, then rename)."""
        from distilbert.common.files import atomic_write_json

        atomic_write_json(path, self.to_dict())


# ------------------------------------------------------------------------------------ the loss
def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy over the labels that are not -100 (0 when none are)."""
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return 0.0
    logits, labels = logits[keep], labels[keep]
    n_classes = logits.shape[-1]
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"labels must be -100 or in [0, {n_classes}), got values from {labels.min()} to {labels.max()}"
        )
    return float(-_log_softmax(logits)[np.arange(len(labels)), labels].mean())


def _require(term: str, weight: float, **inputs) -> bool:
    """Whether ``term`` can be computed; raises when it cannot but its weight asks for it."""
    absent = [name for name, value in inputs.items() if value is None]
    if absent and weight:
        hint = " (a bare encoder has no logits)" if any(n.endswith("logits") for n in absent) else ""
        raise ValueError(
            f"alpha_{term}={weight!r} needs {' and '.join(absent)}{hint}; "
            f"pass {'them' if len(absent) > 1 else 'it'} or set alpha_{term}=0"
        )
    return not absent


def distillation_loss_numpy(
    student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels, config: DistillationConfig
) -> dict[str, float]:
    """The triple loss (see the module docstring), in float64 numpy: the definition the backends follow.

    Args:
        student_logits: ``(B, T, V)`` masked-LM logits, or ``(B, C)`` class logits; or None.
        teacher_logits: Same shape as ``student_logits``; None for a teacher without a head.
        student_hidden: ``(B, T, D)`` last hidden states of the student; or None.
        teacher_hidden: ``(B, T, D)`` last hidden states of the teacher; or None.
        attention_mask: ``(B, T)``, 1 for real tokens.
        labels: ``(B, T)`` masked-LM labels (-100: not masked), or ``(B,)`` class labels; or None.
        config: The weights and temperature.

    Returns:
        ``{"loss", "ce", "mlm", "cos", "mse", "pool"}`` as Python floats.

    Raises:
        ValueError: Shapes that disagree, or a term with a positive weight whose inputs are missing.

    Example:
        >>> import numpy as np
        >>> logits, hidden, mask = np.zeros((1, 2, 5)), np.ones((1, 2, 3)), np.ones((1, 2), int)
        >>> out = distillation_loss_numpy(logits, logits, hidden, hidden, mask, np.array([[1, -100]]),
        ...                               DistillationConfig())
        >>> out["ce"] == 0, round(out["mlm"], 4), abs(out["cos"]) < 1e-12
        (True, 1.6094, True)
    """
    c = config
    arrays = {
        name: None if value is None else np.asarray(value)
        for name, value in dict(
            student_logits=student_logits,
            teacher_logits=teacher_logits,
            student_hidden=student_hidden,
            teacher_hidden=teacher_hidden,
            labels=labels,
        ).items()
    }
    s_logits, t_logits, s_hidden, t_hidden, labels = arrays.values()
    mask = np.asarray(attention_mask)
    if mask.ndim != 2:
        raise ValueError(f"attention_mask must be (batch, seq), got shape {mask.shape}")
    real = mask == 1

    per_token = s_logits is None or s_logits.ndim == 3
    if s_logits is not None and s_logits.ndim not in (2, 3):
        raise ValueError(f"student_logits must be (batch, seq, vocab) or (batch, classes), got {s_logits.shape}")
    if s_logits is not None and t_logits is not None and s_logits.shape != t_logits.shape:
        raise ValueError(f"student_logits {s_logits.shape} and teacher_logits {t_logits.shape} differ in shape")
    if s_hidden is not None and t_hidden is not None and s_hidden.shape != t_hidden.shape:
        raise ValueError(f"student_hidden {s_hidden.shape} and teacher_hidden {t_hidden.shape} differ in shape")
    for name in ("student_logits", "teacher_logits", "student_hidden", "teacher_hidden"):
        value = arrays[name]
        token_level = name.endswith("hidden") or per_token
        if value is not None and token_level and value.shape[:2] != mask.shape:
            raise ValueError(f"{name} {value.shape} does not match attention_mask {mask.shape}")
    if labels is not None:
        want = mask.shape if per_token else mask.shape[:1]
        if labels.shape != want:
            raise ValueError(f"labels must have shape {want}, got {labels.shape}")

    selected = real
    if c.restrict_ce_to_mask:
        if labels is None or not per_token:
            raise ValueError("restrict_ce_to_mask needs per-token labels (-100 where not masked)")
        selected = real & (labels != IGNORE_INDEX)
    n = int(selected.sum())

    out = dict.fromkeys(TERMS, 0.0)
    logit_rows = selected if per_token else np.ones(mask.shape[:1], bool)
    n_rows = int(logit_rows.sum())
    # _require raises for a weighted term whose inputs are missing: the asserts below only inform the type checker.
    if _require("ce", c.alpha_ce, student_logits=s_logits, teacher_logits=t_logits) and n_rows:
        assert s_logits is not None and t_logits is not None
        T = float(c.temperature)
        log_ps = _log_softmax(s_logits[logit_rows].astype(np.float64) / T)
        log_pt = _log_softmax(t_logits[logit_rows].astype(np.float64) / T)
        p_t = np.exp(log_pt)
        kl = np.where(p_t > 0, p_t * (log_pt - log_ps), 0.0).sum(axis=-1)
        out["ce"] = float(T * T * kl.mean())
    if _require("mlm", c.alpha_mlm, student_logits=s_logits, labels=labels):
        assert s_logits is not None and labels is not None
        out["mlm"] = _cross_entropy(s_logits.astype(np.float64), labels.astype(np.int64))
    if _require("cos", c.alpha_cos, student_hidden=s_hidden, teacher_hidden=t_hidden) and n:
        assert s_hidden is not None and t_hidden is not None
        s, t = s_hidden[selected].astype(np.float64), t_hidden[selected].astype(np.float64)
        norms = np.maximum(np.linalg.norm(s, axis=-1), COSINE_EPS) * np.maximum(np.linalg.norm(t, axis=-1), COSINE_EPS)
        out["cos"] = float((1.0 - (s * t).sum(axis=-1) / norms).mean())
    if _require("mse", c.alpha_mse, student_logits=s_logits, teacher_logits=t_logits) and n_rows:
        assert s_logits is not None and t_logits is not None
        diff = s_logits[logit_rows].astype(np.float64) - t_logits[logit_rows].astype(np.float64)
        out["mse"] = float((diff**2).sum() / n_rows)
    if _require("pool", c.alpha_pool, student_hidden=s_hidden, teacher_hidden=t_hidden) and real.any():
        assert s_hidden is not None and t_hidden is not None
        rows = real.any(axis=1)
        weights = real[rows][..., None].astype(np.float64)  # (B', T, 1)
        s = (s_hidden[rows].astype(np.float64) * weights).sum(axis=1) / weights.sum(axis=1)
        t = (t_hidden[rows].astype(np.float64) * weights).sum(axis=1) / weights.sum(axis=1)
        norms = np.maximum(np.linalg.norm(s, axis=-1), COSINE_EPS) * np.maximum(np.linalg.norm(t, axis=-1), COSINE_EPS)
        out["pool"] = float((1.0 - (s * t).sum(axis=-1) / norms).mean())
    out["loss"] = float(sum(getattr(c, f"alpha_{term}") * out[term] for term in TERMS))
    return {"loss": out["loss"], **{term: out[term] for term in TERMS}}


# --------------------------------------------------------------------------------------- masking
def token_counts(sequences: Iterable[Sequence[int]], vocab_size: int) -> np.ndarray:
    """How often each token id occurs in a corpus of id sequences: ``(vocab_size,)`` int64."""
    counts = np.zeros(vocab_size, np.int64)
    for sequence in sequences:
        ids = np.asarray(sequence, np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"token ids must be in [0, {vocab_size}), got values from {ids.min()} to {ids.max()}")
        counts += np.bincount(ids, minlength=vocab_size)
    return counts


def token_weights(counts, special_ids: Iterable[int], smoothing: float) -> np.ndarray:
    """Selection weights ``count ** -smoothing`` per token id, 0 for special tokens (never chosen).

    Tokens the corpus never shows count as seen once (their weight stays finite).
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("counts must be a 1-D array of non-negative token counts")
    weights = np.maximum(counts, 1).astype(np.float64) ** -float(smoothing)
    special = np.asarray(list(special_ids), np.int64)
    if special.size and (special.min() < 0 or special.max() >= len(weights)):
        raise ValueError(f"special token ids must be in [0, {len(weights)})")
    weights[special] = 0.0
    return weights


def mask_tokens(
    input_ids, attention_mask, weights, mask_token_id: int, config: DistillationConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Masks a batch for masked-LM distillation, as the recipe does (see the module docstring).

    Args:
        input_ids: ``(B, T)`` token ids.
        attention_mask: ``(B, T)``, 1 for real tokens (padding is never chosen).
        weights: ``(V,)`` selection weights from :func:`token_weights` (0: never chosen; the random
            replacements are drawn uniformly from the ids of positive weight).
        mask_token_id: The id of ``[MASK]``.
        config: ``mlm_mask_prop`` and ``word_mask``/``word_keep``/``word_rand``.
        rng: The generator; the same seed gives the same masks.

    Returns:
        ``(masked_ids, labels)``: int64 ``(B, T)`` arrays; ``labels`` holds the original id at the
        chosen positions and -100 elsewhere.

    Example:
        >>> import numpy as np
        >>> ids = np.array([[2, 5, 6, 7, 3]])
        >>> w = token_weights(np.ones(10), special_ids=[0, 1, 2, 3, 4], smoothing=0.7)
        >>> masked, labels = mask_tokens(ids, np.ones_like(ids), w, 4, DistillationConfig(), np.random.default_rng(0))
        >>> int((labels != -100).sum()), bool(labels[0, 0] == labels[0, -1] == -100)
        (1, True)
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    ids = np.asarray(input_ids)
    mask = np.asarray(attention_mask)
    weights = np.asarray(weights, np.float64)
    if ids.ndim != 2 or mask.shape != ids.shape:
        raise ValueError(f"input_ids and attention_mask must both be (batch, seq); got {ids.shape} and {mask.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"input_ids must be integers, got {ids.dtype}")
    vocab = len(weights)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        raise ValueError(f"input_ids must be in [0, {vocab}) (the weights' vocabulary)")
    if not 0 <= mask_token_id < vocab:
        raise ValueError(f"mask_token_id {mask_token_id} is outside the vocabulary [0, {vocab})")
    ids = ids.astype(np.int64)
    flat_ids = ids.ravel()
    candidates = np.flatnonzero((mask.ravel() == 1) & (weights[flat_ids] > 0))
    masked, labels = ids.copy(), np.full_like(ids, IGNORE_INDEX)
    n = min(math.ceil(config.mlm_mask_prop * len(candidates)), len(candidates))
    if n == 0:
        return masked, labels
    p = weights[flat_ids[candidates]]
    chosen = rng.choice(candidates, size=n, replace=False, p=p / p.sum())
    action = rng.choice(3, size=n, p=np.asarray(config.word_probs) / sum(config.word_probs))
    pool = np.flatnonzero(weights > 0)
    random_ids = rng.choice(pool, size=n)
    new = np.where(action == 0, mask_token_id, np.where(action == 1, flat_ids[chosen], random_ids))
    np.put(masked, chosen, new)
    np.put(labels, chosen, flat_ids[chosen])
    return masked, labels


# ------------------------------------------------------------------------- for the framework backends
def _same(a: Sequence, b: Sequence) -> bool:
    """Shapes equal, an unknown (None) dimension matching anything (graph-mode batch axes)."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def plan_loss(
    config: DistillationConfig, student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels
) -> tuple[bool, dict[str, bool]]:
    """The checks :func:`distillation_loss_numpy` makes, on shapes alone, for the framework backends.

    Every argument but ``config`` is a shape (a tuple, None for an unknown dimension) or None for an
    input not given. Nothing here reads a value, so the backends call it while tracing a graph.

    Returns:
        ``(per_token, computed)``: whether the logits are per token ``(B, T, V)`` (else per example
        ``(B, C)``), and for each term whether its inputs are there (it is then computed, whatever
        its weight).

    Raises:
        ValueError: The numpy definition's errors: shapes that disagree, a positive weight whose
            inputs are missing, ``restrict_ce_to_mask`` without per-token labels.
    """
    c = config
    shapes = dict(
        student_logits=student_logits,
        teacher_logits=teacher_logits,
        student_hidden=student_hidden,
        teacher_hidden=teacher_hidden,
        labels=labels,
    )
    shapes = {name: None if shape is None else tuple(shape) for name, shape in shapes.items()}
    s_logits, t_logits, s_hidden, t_hidden, labels = shapes.values()
    mask = tuple(attention_mask)
    if len(mask) != 2:
        raise ValueError(f"attention_mask must be (batch, seq), got shape {mask}")
    if s_logits is not None and len(s_logits) not in (2, 3):
        raise ValueError(f"student_logits must be (batch, seq, vocab) or (batch, classes), got {s_logits}")
    per_token = s_logits is None or len(s_logits) == 3
    if s_logits is not None and t_logits is not None and not _same(s_logits, t_logits):
        raise ValueError(f"student_logits {s_logits} and teacher_logits {t_logits} differ in shape")
    if s_hidden is not None and t_hidden is not None and not _same(s_hidden, t_hidden):
        raise ValueError(f"student_hidden {s_hidden} and teacher_hidden {t_hidden} differ in shape")
    for name, shape in shapes.items():
        token_level = name.endswith("hidden") or (per_token and name != "labels")
        if shape is not None and token_level and not _same(shape[:2], mask):
            raise ValueError(f"{name} {shape} does not match attention_mask {mask}")
    if labels is not None and not _same(labels, mask if per_token else mask[:1]):
        raise ValueError(f"labels must have shape {mask if per_token else mask[:1]}, got {labels}")
    if c.restrict_ce_to_mask and (labels is None or not per_token):
        raise ValueError("restrict_ce_to_mask needs per-token labels (-100 where not masked)")
    computed = {
        "ce": _require("ce", c.alpha_ce, student_logits=s_logits, teacher_logits=t_logits),
        "mlm": _require("mlm", c.alpha_mlm, student_logits=s_logits, labels=labels),
        "cos": _require("cos", c.alpha_cos, student_hidden=s_hidden, teacher_hidden=t_hidden),
        "mse": _require("mse", c.alpha_mse, student_logits=s_logits, teacher_logits=t_logits),
        "pool": _require("pool", c.alpha_pool, student_hidden=s_hidden, teacher_hidden=t_hidden),
    }
    return per_token, computed


def learning_rate_at(step: int, learning_rate: float, warmup_steps: int, total_steps: int) -> float:
    """The schedule every backend follows: linear warm-up from 0 over ``warmup_steps``, then linear decay to 0.

    ``step`` counts the optimiser updates already made (the first update uses ``step=0``, so with a
    warm-up it changes only the moments), as ``transformers.get_linear_schedule_with_warmup``.

    Example:
        >>> [learning_rate_at(k, 1.0, 2, 6) for k in range(7)]
        [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    if step < warmup_steps:
        return learning_rate * step / warmup_steps
    return learning_rate * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
