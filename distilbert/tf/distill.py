"""Distillation in TensorFlow/Keras: the triple loss on tensors, and a ``keras.Model`` trained with ``fit``.

:func:`distillation_loss` is :func:`distilbert.common.distillation.distillation_loss_numpy`'s
definition in TensorFlow (graph-safe: shapes are checked while tracing, values never read).
:class:`Distiller` wraps a student and a frozen teacher; its ``train_step`` computes the triple loss,
so the Keras way works: ``compile(optimizer=...)``, then ``fit(...)`` with callbacks.
:func:`distill` does that with :func:`make_optimizer`'s AdamW (betas 0.9/0.999, eps 1e-8 placed as
torch and optax place it, no weight decay on 1-D variables: biases and LayerNorm weights), the linear
warm-up and decay of :func:`~distilbert.common.distillation.learning_rate_at`, clipping by global
norm and gradient accumulation. ``distilbert.pt.distill`` and ``distilbert.flax.distill`` offer the
same functions with the same arguments.

Example:
    >>> from distilbert.tf.distill import Distiller, make_optimizer  # doctest: +SKIP
    >>> distiller = Distiller(student, teacher, DistillationConfig())  # doctest: +SKIP
    >>> distiller.compile(optimizer=make_optimizer(student, 5e-4, steps=1000))  # doctest: +SKIP
    >>> distiller.fit(batches, steps_per_epoch=1000, callbacks=[...])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import keras
import numpy as np
import tensorflow as tf

from distilbert.common.distillation import COSINE_EPS, TERMS, DistillationConfig, plan_loss
from distilbert.common.losses import IGNORE_INDEX
from distilbert.tf.training import AdamW

BETAS, EPS = (0.9, 0.999), 1e-8


# ------------------------------------------------------------------------------------ the loss
def _mean(values, keep):
    """Mean of ``values`` where ``keep``; 0 when nothing is kept (no data-dependent branch)."""
    return tf.reduce_sum(tf.where(keep, values, 0.0)) / tf.maximum(tf.reduce_sum(tf.cast(keep, tf.float32)), 1.0)


def _counts(attention_mask, labels, config: DistillationConfig, per_token: bool) -> dict[str, tf.Tensor]:
    """How many positions (or examples) each term averages over: the accumulation weights."""
    selected = tf.equal(attention_mask, 1)
    if config.restrict_ce_to_mask:
        selected = selected & tf.not_equal(labels, IGNORE_INDEX)
    count = lambda x: tf.reduce_sum(tf.cast(x, tf.float32))  # noqa: E731
    n_rows = count(selected) if per_token else tf.cast(tf.shape(attention_mask)[0], tf.float32)
    n_labels = count(tf.not_equal(labels, IGNORE_INDEX)) if labels is not None else tf.zeros(())
    n_examples = count(tf.reduce_any(tf.equal(attention_mask, 1), -1))  # those with a real token: the pooled term's
    return {"ce": n_rows, "mlm": n_labels, "cos": count(selected), "mse": n_rows, "pool": n_examples}


def _parts(
    student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels, config: DistillationConfig
) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
    """The five terms and the counts they average over."""
    shape = lambda x: None if x is None else tuple(x.shape)  # noqa: E731
    per_token, computed = plan_loss(
        config, *map(shape, (student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels))
    )
    real = tf.equal(attention_mask, 1)
    selected = real & tf.not_equal(labels, IGNORE_INDEX) if config.restrict_ce_to_mask else real  # (B, T)
    rows = selected if per_token else tf.ones(tf.shape(real)[:1], tf.bool)
    terms = dict.fromkeys(TERMS, tf.zeros((), tf.float32))
    if computed["ce"]:
        T = float(config.temperature)
        log_ps = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / T, axis=-1)
        log_pt = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / T, axis=-1)
        kl = tf.reduce_sum(tf.exp(log_pt) * (log_pt - log_ps), axis=-1)  # (B, T) or (B,)
        terms["ce"] = T * T * _mean(kl, rows)
    if computed["mlm"]:
        keep = tf.not_equal(labels, IGNORE_INDEX)
        log_p = tf.nn.log_softmax(tf.cast(student_logits, tf.float32), axis=-1)
        safe = tf.where(keep, labels, tf.zeros_like(labels))
        nll = -tf.gather(log_p, tf.cast(safe, tf.int32), batch_dims=len(labels.shape))  # (B, T) or (B,)
        terms["mlm"] = _mean(nll, keep)
    if computed["cos"]:
        s, t = tf.cast(student_hidden, tf.float32), tf.cast(teacher_hidden, tf.float32)
        # sqrt(max(|x|^2, eps^2)) = max(|x|, eps), without sqrt's infinite gradient at 0.
        norm = lambda x: tf.sqrt(tf.maximum(tf.reduce_sum(x * x, -1), COSINE_EPS**2))  # noqa: E731
        terms["cos"] = _mean(1.0 - tf.reduce_sum(s * t, -1) / (norm(s) * norm(t)), selected)
    if computed["mse"]:
        diff = tf.cast(student_logits, tf.float32) - tf.cast(teacher_logits, tf.float32)
        terms["mse"] = _mean(tf.reduce_sum(diff * diff, -1), rows)
    if computed["pool"]:
        weights = tf.cast(real, tf.float32)[..., None]  # (B, T, 1)
        count = tf.maximum(tf.reduce_sum(weights, 1), 1.0)  # (B, 1): an example without real tokens is not counted
        s = tf.reduce_sum(tf.cast(student_hidden, tf.float32) * weights, 1) / count  # (B, D)
        t = tf.reduce_sum(tf.cast(teacher_hidden, tf.float32) * weights, 1) / count
        norm = lambda x: tf.sqrt(tf.maximum(tf.reduce_sum(x * x, -1), COSINE_EPS**2))  # noqa: E731
        terms["pool"] = _mean(1.0 - tf.reduce_sum(s * t, -1) / (norm(s) * norm(t)), tf.reduce_any(real, -1))
    return terms, _counts(attention_mask, labels, config, per_token)


def _total(terms: Mapping[str, tf.Tensor], config: DistillationConfig) -> tf.Tensor:
    return tf.add_n([getattr(config, f"alpha_{term}") * terms[term] for term in TERMS])


def distillation_loss(
    student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels, config: DistillationConfig
) -> dict[str, tf.Tensor]:
    """The triple loss on TensorFlow tensors (see :mod:`distilbert.common.distillation` for the definition).

    Args:
        student_logits: ``(B, T, V)`` masked-LM logits or ``(B, C)`` class logits; or None.
        teacher_logits: Same shape; None for a teacher without a head (then ``alpha_ce`` and
            ``alpha_mse`` must be 0).
        student_hidden: ``(B, T, D)`` last hidden states; or None.
        teacher_hidden: ``(B, T, D)``; or None.
        attention_mask: ``(B, T)``, 1 for real tokens.
        labels: ``(B, T)`` masked-LM labels (-100: not masked) or ``(B,)`` class labels; or None.
        config: The weights and the temperature.

    Returns:
        ``{"loss", "ce", "mlm", "cos", "mse", "pool"}``: float32 scalar tensors.

    Raises:
        ValueError: Shapes that disagree, or a positive weight whose inputs are missing.

    Example:
        >>> import tensorflow as tf
        >>> from distilbert import DistillationConfig
        >>> logits, hidden = tf.zeros((1, 2, 5)), tf.ones((1, 2, 3))
        >>> out = distillation_loss(logits, logits, hidden, hidden, tf.ones((1, 2), tf.int32),
        ...                         tf.constant([[1, -100]]), DistillationConfig())
        >>> round(float(out["mlm"]), 4), float(out["ce"])
        (1.6094, 0.0)
    """
    terms, _ = _parts(student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels, config)
    return {"loss": _total(terms, config), **terms}


# ------------------------------------------------------------------------------- the optimiser
@keras.saving.register_keras_serializable(package="distilbert")
class LinearWarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """:func:`~distilbert.common.distillation.learning_rate_at` as a Keras schedule (of the update count)."""

    def __init__(self, learning_rate: float, warmup_steps: int, total_steps: int):
        self.learning_rate, self.warmup_steps, self.total_steps = (
            float(learning_rate),
            int(warmup_steps),
            int(total_steps),
        )

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        decay = (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps)
        factor = keras.ops.minimum(step / self.warmup_steps, decay) if self.warmup_steps else decay
        return self.learning_rate * keras.ops.maximum(factor, 0.0)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def make_optimizer(
    student,
    learning_rate: float,
    *,
    steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.01,
    max_grad_norm: float | None = 5.0,
) -> AdamW:
    """The distillation optimiser for ``student``: :class:`AdamW` on :class:`LinearWarmupDecay`, clipped.

    1-D variables (biases, LayerNorm weights) are excluded from the weight decay.
    """
    optimizer = AdamW(
        LinearWarmupDecay(learning_rate, warmup_steps, steps),
        weight_decay=weight_decay,
        beta_1=BETAS[0],
        beta_2=BETAS[1],
        epsilon=EPS,
        global_clipnorm=max_grad_norm or None,
    )
    optimizer.exclude_from_weight_decay(var_list=[v for v in student.trainable_variables if len(v.shape) < 2])
    return optimizer


# -------------------------------------------------------------------------------- the training
def _forward(model, batch, training: bool):
    """``(logits or None, last hidden state)`` of a head model or of the bare encoder."""
    out = model(
        {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
        training=training,
        output_hidden_states=True,
        return_dict=True,
    )
    if getattr(model, "task", "base") == "base":
        return None, out.last_hidden_state
    return out.logits, out.hidden_states[-1]


class Distiller(keras.Model):
    """A student learning from a frozen teacher, trained with ``compile``/``fit``.

    ``train_step`` runs the teacher in inference mode, the student in training mode, and minimises
    :func:`distillation_loss`; it returns the terms (``loss``, ``ce``, ``mlm``, ``cos``, ``mse``, ``pool``), which
    ``fit`` hands to callbacks in ``logs``. Each batch is a dict of ``input_ids``, ``attention_mask``
    and ``labels``; with ``accumulation_steps`` it is cut into that many micro-batches, each weighted
    by its share of the positions a term averages over, before one optimiser update. Calling the
    distiller runs the student.

    Args:
        student: A DistilBERT Keras model (masked-LM, sequence classification or bare).
        teacher: A model of the same task and hidden size, or a bare encoder (then ``alpha_ce`` and
            ``alpha_mse`` must be 0); set non-trainable.
        config: The loss's weights and temperature.
        accumulation_steps: Micro-batches per batch.
    """

    def __init__(self, student, teacher, config: DistillationConfig, accumulation_steps: int = 1, **kwargs):
        super().__init__(**kwargs)
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be at least 1, got {accumulation_steps}")
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        self.distillation = config
        self.accumulation_steps = int(accumulation_steps)

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def train_step(self, data):
        batch, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = batch.get("labels")
        variables = self.student.trainable_variables
        n = self.accumulation_steps
        size = batch["input_ids"].shape[0]
        if size is not None and size % n:
            raise ValueError(f"a batch of {size} does not split into accumulation_steps={n} equal micro-batches")
        per_token = getattr(self.student, "task", "base") != "sequence_classification"
        totals = _counts(batch["attention_mask"], labels, self.distillation, per_token)
        shares = {term: 1.0 / tf.maximum(count, 1.0) for term, count in totals.items()}
        micro = {k: tf.split(v, n, axis=0) for k, v in batch.items()}
        grads = [tf.zeros_like(v) for v in variables]
        report = dict.fromkeys(TERMS, tf.zeros(()))
        for i in range(n):
            mb = {k: v[i] for k, v in micro.items()}
            t_logits, t_hidden = _forward(self.teacher, mb, training=False)
            t_logits = None if t_logits is None else tf.stop_gradient(t_logits)
            with tf.GradientTape() as tape:
                s_logits, s_hidden = _forward(self.student, mb, training=True)
                terms, counts = _parts(
                    s_logits,
                    t_logits,
                    s_hidden,
                    tf.stop_gradient(t_hidden),
                    mb["attention_mask"],
                    mb.get("labels"),
                    self.distillation,
                )
                weighted = {term: terms[term] * counts[term] * shares[term] for term in TERMS}
                loss = _total(weighted, self.distillation)
            for j, g in enumerate(tape.gradient(loss, variables)):
                if g is not None:
                    grads[j] = grads[j] + tf.convert_to_tensor(g)  # embedding rows come as IndexedSlices
            report = {term: report[term] + weighted[term] for term in TERMS}
        self.optimizer.apply(grads, variables)
        return {"loss": _total(report, self.distillation), **report}


def training_state(student, optimizer) -> dict[str, np.ndarray]:
    """The optimiser's variables (step, moments) and the student's dropout seeds, as numpy arrays."""
    state = {f"optimizer/{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)}
    state.update({f"rng/{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(student.non_trainable_variables)})
    return state


def load_training_state(student, optimizer, state: Mapping[str, np.ndarray]) -> None:
    """Restores :func:`training_state` into a :func:`make_optimizer` optimiser (built here) and the student."""
    optimizer.build(student.trainable_variables)
    for prefix, variables in (("optimizer", optimizer.variables), ("rng", student.non_trainable_variables)):
        saved = sorted((int(k.split("/")[1]), v) for k, v in state.items() if k.startswith(prefix + "/"))
        if len(saved) != len(variables):
            raise ValueError(
                f"the checkpoint holds {len(saved)} {prefix} variables, this student's training "
                f"{len(variables)}: was it saved from another student?"
            )
        for (_, value), variable in zip(saved, variables):
            variable.assign(value)


class _StepCallback(keras.callbacks.Callback):
    def __init__(self, start, on_step, save_every, on_save, student, optimizer):
        super().__init__()
        self.start, self.on_step, self.save_every, self.on_save = start, on_step, save_every, on_save
        self.student, self.opt = student, optimizer

    def on_train_batch_end(self, batch, logs=None):
        step = self.start + batch + 1
        if self.on_step is not None:
            self.on_step(step, {k: float(logs[k]) for k in ("loss", *TERMS)})
        if self.save_every and self.on_save is not None and step % self.save_every == 0:
            self.on_save(step, training_state(self.student, self.opt))


def distill(
    student,
    teacher,
    batches: Iterable[Mapping[str, np.ndarray]],
    config: DistillationConfig,
    *,
    steps: int,
    learning_rate: float = 5e-4,
    warmup_steps: int = 0,
    weight_decay: float = 0.01,
    max_grad_norm: float | None = 5.0,
    accumulation_steps: int = 1,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    state: Mapping[str, np.ndarray] | None = None,
    start_step: int = 0,
    save_every: int = 0,
    on_save: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    callbacks=(),
):
    """Trains ``student`` to imitate the frozen ``teacher`` with :class:`Distiller` and ``fit``.

    The arguments are those of ``distilbert.pt.distill.distill`` (see there), plus ``callbacks``:
    more Keras callbacks for ``fit``.

    Returns:
        The student, trained.
    """
    optimizer = make_optimizer(
        student,
        learning_rate,
        steps=steps,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
    )
    if state is not None:
        load_training_state(student, optimizer, state)
    if steps <= start_step:
        return student
    distiller = Distiller(student, teacher, config, accumulation_steps)
    distiller.compile(optimizer=optimizer)
    iterator = iter(batches)

    def feed():
        for _ in range(steps - start_step):
            try:
                batch = next(iterator)
            except StopIteration:
                raise ValueError(f"the batches ran out before {steps - start_step} steps") from None
            yield ({k: np.asarray(v) for k, v in batch.items() if v is not None},)  # Keras takes (x,) tuples

    step_callback = _StepCallback(start_step, on_step, save_every, on_save, student, optimizer)
    distiller.fit(
        feed(),
        steps_per_epoch=steps - start_step,
        epochs=1,
        verbose=0,
        shuffle=False,
        callbacks=[step_callback, *callbacks],
    )
    return student
