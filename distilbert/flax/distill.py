"""Distillation in JAX/Flax NNX: the triple loss on jax arrays, and an ``nnx.jit`` step with optax.

:func:`distillation_loss` is :func:`distilbert.common.distillation.distillation_loss_numpy`'s
definition in ``jax.numpy`` (jit-safe: shapes are checked while tracing, values never read).
:func:`train_step` is one ``nnx.jit`` update of a student against a frozen teacher; :func:`distill`
loops it with :func:`make_optimizer`'s optax AdamW (betas 0.9/0.999, eps 1e-8, no weight decay on 1-D
parameters: biases and LayerNorm scales), the linear warm-up and decay of
:func:`~distilbert.common.distillation.learning_rate_at`, clipping by global norm and gradient
accumulation. ``distilbert.pt.distill`` and ``distilbert.tf.distill`` offer the same functions with
the same arguments.

Example:
    >>> from distilbert.flax.distill import distill  # doctest: +SKIP
    >>> student = distill(student, teacher, batches, DistillationConfig(), steps=1000)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from distilbert.common.distillation import COSINE_EPS, TERMS, DistillationConfig, plan_loss
from distilbert.common.losses import IGNORE_INDEX

BETAS, EPS = (0.9, 0.999), 1e-8


# ------------------------------------------------------------------------------------ the loss
def _mean(values, keep):
    """Mean of ``values`` where ``keep``; 0 when nothing is kept (no data-dependent branch)."""
    return jnp.where(keep, values, 0.0).sum() / jnp.maximum(keep.sum(), 1)


def _counts(attention_mask, labels, config: DistillationConfig, per_token: bool) -> dict[str, jax.Array]:
    """How many positions (or examples) each term averages over: the accumulation weights."""
    selected = attention_mask == 1
    if config.restrict_ce_to_mask:
        selected = selected & (labels != IGNORE_INDEX)
    n_rows = selected.sum() if per_token else jnp.asarray(attention_mask.shape[0])
    n_labels = (labels != IGNORE_INDEX).sum() if labels is not None else jnp.zeros((), jnp.int32)
    n_examples = (attention_mask == 1).any(-1).sum()  # those with a real token: the pooled term's
    return {"ce": n_rows, "mlm": n_labels, "cos": selected.sum(), "mse": n_rows, "pool": n_examples}


def _parts(
    student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels, config: DistillationConfig
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """The five terms and the counts they average over."""
    arrays = [
        None if x is None else jnp.asarray(x)
        for x in (student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels)
    ]
    s_logits, t_logits, s_hidden, t_hidden, attention_mask, labels = arrays
    per_token, computed = plan_loss(config, *(None if x is None else x.shape for x in arrays))
    real = attention_mask == 1
    selected = real & (labels != IGNORE_INDEX) if config.restrict_ce_to_mask else real  # (B, T)
    rows = selected if per_token else jnp.ones(real.shape[:1], bool)
    terms = dict.fromkeys(TERMS, jnp.zeros((), jnp.float32))
    if computed["ce"]:
        T = float(config.temperature)
        log_ps = jax.nn.log_softmax(s_logits.astype(jnp.float32) / T, axis=-1)
        log_pt = jax.nn.log_softmax(t_logits.astype(jnp.float32) / T, axis=-1)
        kl = (jnp.exp(log_pt) * (log_pt - log_ps)).sum(-1)  # (B, T) or (B,)
        terms["ce"] = T * T * _mean(kl, rows)
    if computed["mlm"]:
        keep = labels != IGNORE_INDEX
        log_p = jax.nn.log_softmax(s_logits.astype(jnp.float32), axis=-1)
        nll = -jnp.take_along_axis(log_p, jnp.where(keep, labels, 0)[..., None], axis=-1)[..., 0]  # (B, T) or (B,)
        terms["mlm"] = _mean(nll, keep)
    if computed["cos"]:
        s, t = s_hidden.astype(jnp.float32), t_hidden.astype(jnp.float32)
        # sqrt(max(|x|^2, eps^2)) = max(|x|, eps), without sqrt's infinite gradient at 0.
        norm = lambda x: jnp.sqrt(jnp.maximum((x * x).sum(-1), COSINE_EPS**2))  # noqa: E731
        terms["cos"] = _mean(1.0 - (s * t).sum(-1) / (norm(s) * norm(t)), selected)
    if computed["mse"]:
        diff = s_logits.astype(jnp.float32) - t_logits.astype(jnp.float32)
        terms["mse"] = _mean((diff * diff).sum(-1), rows)
    if computed["pool"]:
        weights = real[..., None].astype(jnp.float32)  # (B, T, 1)
        count = jnp.maximum(weights.sum(1), 1.0)  # (B, 1): an example without real tokens is not counted
        s = (s_hidden.astype(jnp.float32) * weights).sum(1) / count  # (B, D)
        t = (t_hidden.astype(jnp.float32) * weights).sum(1) / count
        norm = lambda x: jnp.sqrt(jnp.maximum((x * x).sum(-1), COSINE_EPS**2))  # noqa: E731
        terms["pool"] = _mean(1.0 - (s * t).sum(-1) / (norm(s) * norm(t)), real.any(-1))
    return terms, _counts(attention_mask, labels, config, per_token)


def _total(terms: Mapping[str, jax.Array], config: DistillationConfig) -> jax.Array:
    return sum(getattr(config, f"alpha_{term}") * terms[term] for term in TERMS)


def distillation_loss(
    student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels, config: DistillationConfig
) -> dict[str, jax.Array]:
    """The triple loss on jax arrays (see :mod:`distilbert.common.distillation` for the definition).

    Args:
        student_logits: ``(B, T, V)`` masked-LM logits or ``(B, C)`` class logits; or None.
        teacher_logits: Same shape; None for a teacher without a head (then ``alpha_ce`` and
            ``alpha_mse`` must be 0).
        student_hidden: ``(B, T, D)`` last hidden states; or None.
        teacher_hidden: ``(B, T, D)``; or None.
        attention_mask: ``(B, T)``, 1 for real tokens.
        labels: ``(B, T)`` masked-LM labels (-100: not masked) or ``(B,)`` class labels; or None.
        config: The weights and the temperature (static under ``jit``: it is hashable).

    Returns:
        ``{"loss", "ce", "mlm", "cos", "mse", "pool"}``: float32 scalars.

    Raises:
        ValueError: Shapes that disagree, or a positive weight whose inputs are missing.

    Example:
        >>> import jax.numpy as jnp
        >>> from distilbert import DistillationConfig
        >>> logits, hidden = jnp.zeros((1, 2, 5)), jnp.ones((1, 2, 3))
        >>> out = distillation_loss(logits, logits, hidden, hidden, jnp.ones((1, 2)), jnp.array([[1, -100]]),
        ...                         DistillationConfig())
        >>> round(float(out["mlm"]), 4), float(out["ce"])
        (1.6094, 0.0)
    """
    terms, _ = _parts(student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels, config)
    return {"loss": _total(terms, config), **terms}


# ------------------------------------------------------------------------------- the optimiser
def _schedule(learning_rate: float, warmup_steps: int, total_steps: int):
    """:func:`~distilbert.common.distillation.learning_rate_at` as an optax schedule of the update count."""

    def schedule(count):
        count = jnp.asarray(count, jnp.float32)
        decay = (total_steps - count) / max(1, total_steps - warmup_steps)
        factor = jnp.minimum(count / warmup_steps, decay) if warmup_steps else decay
        return learning_rate * jnp.maximum(factor, 0.0)

    return schedule


def make_optimizer(
    student,
    learning_rate: float,
    *,
    steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.01,
    max_grad_norm: float | None = 5.0,
) -> nnx.Optimizer:
    """An ``nnx.Optimizer`` over the student's ``nnx.Param`` s: optax AdamW on the schedule, after clipping.

    1-D parameters (biases, LayerNorm scales) are excluded from the weight decay.
    """
    decayed = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    tx = optax.adamw(
        _schedule(learning_rate, warmup_steps, steps),
        b1=BETAS[0],
        b2=BETAS[1],
        eps=EPS,
        weight_decay=weight_decay,
        mask=decayed,
    )
    if max_grad_norm:
        tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
    return nnx.Optimizer(student, tx, wrt=nnx.Param)


# -------------------------------------------------------------------------------- the training
def _forward(model, batch, deterministic: bool):
    """``(logits or None, last hidden state)`` of a head model or of the bare encoder."""
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_hidden_states=True,
        return_dict=True,
        deterministic=deterministic,
    )
    if getattr(model, "task", "base") == "base":
        return None, out.last_hidden_state
    return out.logits, out.hidden_states[-1]


@functools.partial(nnx.jit, static_argnames=("config", "accumulation_steps"))
def _step(student, teacher, optimizer, batch, config: DistillationConfig, accumulation_steps: int):
    per_token = getattr(student, "task", "base") != "sequence_classification"
    totals = _counts(batch["attention_mask"], batch.get("labels"), config, per_token)
    shares = {term: 1.0 / jnp.maximum(count, 1) for term, count in totals.items()}
    size = batch["input_ids"].shape[0] // accumulation_steps
    grads, report = None, dict.fromkeys(TERMS, jnp.zeros((), jnp.float32))
    for start in range(0, batch["input_ids"].shape[0], size):
        mb = {k: v[start : start + size] for k, v in batch.items()}
        t_logits, t_hidden = jax.lax.stop_gradient(_forward(teacher, mb, deterministic=True))

        def loss_fn(model, mb=mb, t_logits=t_logits, t_hidden=t_hidden):
            s_logits, s_hidden = _forward(model, mb, deterministic=False)
            terms, counts = _parts(
                s_logits, t_logits, s_hidden, t_hidden, mb["attention_mask"], mb.get("labels"), config
            )
            weighted = {term: terms[term] * counts[term] * shares[term] for term in TERMS}
            return _total(weighted, config), weighted

        (_, weighted), g = nnx.value_and_grad(loss_fn, has_aux=True)(student)
        grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
        report = {term: report[term] + weighted[term] for term in TERMS}
    optimizer.update(student, grads)
    return {"loss": _total(report, config), **report}


def train_step(
    student,
    teacher,
    optimizer,
    batch: Mapping[str, np.ndarray],
    config: DistillationConfig,
    accumulation_steps: int = 1,
) -> dict[str, jax.Array]:
    """One optimiser update on ``batch`` (numpy ``input_ids``, ``attention_mask``, ``labels``), ``nnx.jit`` ed.

    The batch is cut into ``accumulation_steps`` micro-batches along its first axis; each one's terms
    are weighted by its share of the positions (or labels) the term averages over, so the update is
    the one the whole batch would give. The teacher runs with dropout off and no gradient; the
    student with dropout on. Returns the batch's terms.
    """
    size = np.shape(batch["input_ids"])[0]
    if accumulation_steps < 1 or size % accumulation_steps:
        raise ValueError(
            f"a batch of {size} does not split into accumulation_steps={accumulation_steps} equal micro-batches"
        )
    arrays = {k: jnp.asarray(v) for k, v in batch.items() if v is not None}
    return _step(student, teacher, optimizer, arrays, config, accumulation_steps)


def _leaves(tree) -> list[np.ndarray]:
    keys = lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x  # noqa: E731
    return [np.asarray(keys(x)) for x in jax.tree.leaves(tree)]


def training_state(student, optimizer) -> dict[str, np.ndarray]:
    """The optimiser's state (step, moments) and the student's dropout RNG state, as numpy arrays."""
    state = {f"optimizer/{i}": x for i, x in enumerate(_leaves(nnx.state(optimizer)))}
    state.update({f"rng/{i}": x for i, x in enumerate(_leaves(nnx.state(student, nnx.RngState)))})
    return state


def load_training_state(student, optimizer, state: Mapping[str, np.ndarray]) -> None:
    """Restores :func:`training_state` into ``optimizer`` (from :func:`make_optimizer`) and the student."""
    for prefix, target in (("optimizer", optimizer), ("rng", student)):
        current = nnx.state(target) if prefix == "optimizer" else nnx.state(target, nnx.RngState)
        leaves, treedef = jax.tree.flatten(current)
        saved = sorted((int(k.split("/")[1]), v) for k, v in state.items() if k.startswith(prefix + "/"))
        if len(saved) != len(leaves):
            raise ValueError(
                f"the checkpoint holds {len(saved)} {prefix} arrays, this student's training "
                f"{len(leaves)}: was it saved from another student?"
            )
        new = [
            jax.random.wrap_key_data(jnp.asarray(v), impl=jax.random.key_impl(old))
            if jnp.issubdtype(old.dtype, jax.dtypes.prng_key)
            else jnp.asarray(v, old.dtype)
            for (_, v), old in zip(saved, leaves)
        ]
        nnx.update(target, jax.tree.unflatten(treedef, new))


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
):
    """Trains ``student`` to imitate the frozen ``teacher`` with :func:`train_step`.

    The arguments are those of ``distilbert.pt.distill.distill`` (see there).

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
    iterator = iter(batches)
    for step in range(start_step, steps):
        try:
            batch = next(iterator)
        except StopIteration:
            raise ValueError(f"the batches ran out after {step - start_step} of {steps - start_step} steps") from None
        terms = train_step(student, teacher, optimizer, batch, config, accumulation_steps)
        if on_step is not None:
            on_step(step + 1, {k: float(terms[k]) for k in ("loss", *TERMS)})
        if save_every and on_save is not None and (step + 1) % save_every == 0:
            on_save(step + 1, training_state(student, optimizer))
    return student
