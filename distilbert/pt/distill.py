"""Distillation in PyTorch: the triple loss on torch tensors, and a plain training loop.

:func:`distillation_loss` is :func:`distilbert.common.distillation.distillation_loss_numpy`'s
definition on torch tensors (differentiable, no host synchronisation). :func:`distill` trains a
student against a frozen teacher: AdamW (betas 0.9/0.999, eps 1e-8, no weight decay on biases and
LayerNorm weights, i.e. on 1-D parameters), the linear warm-up and decay of
:func:`~distilbert.common.distillation.learning_rate_at`, gradient clipping by global norm and
gradient accumulation. ``distilbert.tf.distill`` and ``distilbert.flax.distill`` offer the same
functions with the same arguments.

Example:
    >>> from distilbert.pt.distill import distill  # doctest: +SKIP
    >>> student = distill(student, teacher, batches, DistillationConfig(), steps=1000)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from distilbert.common.distillation import COSINE_EPS, TERMS, DistillationConfig, learning_rate_at, plan_loss
from distilbert.common.losses import IGNORE_INDEX
from distilbert.pt.training import adamw


# ------------------------------------------------------------------------------------ the loss
def _mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``keep``; 0 when nothing is kept (no data-dependent branch)."""
    return torch.where(keep, values, 0.0).sum() / keep.sum().clamp(min=1)


def _counts(attention_mask, labels, config: DistillationConfig, per_token: bool) -> dict[str, torch.Tensor]:
    """How many positions (or examples) each term averages over: the accumulation weights."""
    selected = attention_mask == 1
    if config.restrict_ce_to_mask:
        selected = selected & (labels != IGNORE_INDEX)
    n_rows = selected.sum() if per_token else torch.tensor(attention_mask.shape[0], device=attention_mask.device)
    n_labels = (labels != IGNORE_INDEX).sum() if labels is not None else torch.zeros((), dtype=torch.int64)
    n_examples = (attention_mask == 1).any(-1).sum()  # those with a real token: the pooled term's
    return {"ce": n_rows, "mlm": n_labels, "cos": selected.sum(), "mse": n_rows, "pool": n_examples}


def _parts(
    student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels, config: DistillationConfig
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The five terms and the counts they average over."""
    shape = lambda x: None if x is None else tuple(x.shape)  # noqa: E731
    per_token, computed = plan_loss(
        config, *map(shape, (student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels))
    )
    real = attention_mask == 1
    selected = real & (labels != IGNORE_INDEX) if config.restrict_ce_to_mask else real  # (B, T)
    rows = selected if per_token else torch.ones(real.shape[:1], dtype=torch.bool, device=real.device)
    zero = torch.zeros((), dtype=torch.float32, device=attention_mask.device)
    terms = dict.fromkeys(TERMS, zero)
    if computed["ce"]:
        T = float(config.temperature)
        log_ps = F.log_softmax(student_logits.float() / T, dim=-1)
        log_pt = F.log_softmax(teacher_logits.float() / T, dim=-1)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)  # (B, T) or (B,)
        terms["ce"] = T * T * _mean(kl, rows)
    if computed["mlm"]:
        keep = labels != IGNORE_INDEX
        log_p = F.log_softmax(student_logits.float(), dim=-1)
        nll = -log_p.gather(-1, torch.where(keep, labels, 0).long().unsqueeze(-1)).squeeze(-1)  # (B, T) or (B,)
        terms["mlm"] = _mean(nll, keep)
    if computed["cos"]:
        s, t = student_hidden.float(), teacher_hidden.float()
        # sqrt(max(|x|^2, eps^2)) = max(|x|, eps), without sqrt's infinite gradient at 0.
        norms = (s * s).sum(-1).clamp(min=COSINE_EPS**2).sqrt() * (t * t).sum(-1).clamp(min=COSINE_EPS**2).sqrt()
        terms["cos"] = _mean(1.0 - (s * t).sum(-1) / norms, selected)
    if computed["mse"]:
        squares = ((student_logits.float() - teacher_logits.float()) ** 2).sum(-1)  # (B, T) or (B,)
        terms["mse"] = _mean(squares, rows)
    if computed["pool"]:
        weights = real.unsqueeze(-1).float()  # (B, T, 1)
        count = weights.sum(1).clamp(min=1)  # (B, 1): an example without real tokens pools to 0, and is not counted
        s, t = (student_hidden.float() * weights).sum(1) / count, (teacher_hidden.float() * weights).sum(1) / count
        norms = (s * s).sum(-1).clamp(min=COSINE_EPS**2).sqrt() * (t * t).sum(-1).clamp(min=COSINE_EPS**2).sqrt()
        terms["pool"] = _mean(1.0 - (s * t).sum(-1) / norms, real.any(-1))
    return terms, _counts(attention_mask, labels, config, per_token)


def _total(terms: Mapping[str, torch.Tensor], config: DistillationConfig) -> torch.Tensor:
    return sum(getattr(config, f"alpha_{term}") * terms[term] for term in TERMS)


def distillation_loss(
    student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels, config: DistillationConfig
) -> dict[str, torch.Tensor]:
    """The triple loss on torch tensors (see :mod:`distilbert.common.distillation` for the definition).

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
        ``{"loss", "ce", "mlm", "cos", "mse", "pool"}``: float32 scalar tensors (``loss`` differentiable).

    Raises:
        ValueError: Shapes that disagree, or a positive weight whose inputs are missing.

    Example:
        >>> import torch
        >>> from distilbert import DistillationConfig
        >>> logits, hidden = torch.zeros(1, 2, 5), torch.ones(1, 2, 3)
        >>> out = distillation_loss(logits, logits, hidden, hidden, torch.ones(1, 2), torch.tensor([[1, -100]]),
        ...                         DistillationConfig())
        >>> round(out["mlm"].item(), 4), out["ce"].item()
        (1.6094, 0.0)
    """
    terms, _ = _parts(student_logits, teacher_logits, student_hidden, teacher_hidden, attention_mask, labels, config)
    return {"loss": _total(terms, config), **terms}


# -------------------------------------------------------------------------------- the training
def _forward(model, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(logits or None, last hidden state)`` of a head model or of the bare encoder."""
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_hidden_states=True,
        return_dict=True,
    )
    if getattr(model, "task", "base") == "base":
        return None, out.last_hidden_state
    return out.logits, out.hidden_states[-1]


def _per_token(student) -> bool:
    return getattr(student, "task", "base") != "sequence_classification"


def make_optimizer(student, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the student's trainable parameters; matrices decay, 1-D parameters (biases, LayerNorm) do not
    (:func:`distilbert.pt.training.adamw`)."""
    return adamw(student, learning_rate, weight_decay)


def train_step(
    student,
    teacher,
    optimizer,
    batch: Mapping[str, np.ndarray],
    config: DistillationConfig,
    max_grad_norm: float | None = None,
    accumulation_steps: int = 1,
) -> dict[str, torch.Tensor]:
    """One optimiser update on ``batch`` (numpy ``input_ids``, ``attention_mask``, ``labels``).

    The batch is cut into ``accumulation_steps`` micro-batches along its first axis; each one's terms
    are weighted by its share of the positions (or labels) the term averages over, so the update is
    the one the whole batch would give. Returns the batch's terms (detached).
    """
    device = next(student.parameters()).device
    tensors = {k: torch.as_tensor(np.asarray(v), device=device) for k, v in batch.items() if v is not None}
    size = tensors["input_ids"].shape[0]
    if accumulation_steps < 1 or size % accumulation_steps:
        raise ValueError(
            f"a batch of {size} does not split into accumulation_steps={accumulation_steps} equal micro-batches"
        )
    labels = tensors.get("labels")
    totals = _counts(tensors["attention_mask"], labels, config, _per_token(student))
    shares = {term: 1.0 / count.clamp(min=1) for term, count in totals.items()}
    optimizer.zero_grad(set_to_none=True)
    report = dict.fromkeys(TERMS, 0.0)
    micro = size // accumulation_steps
    for start in range(0, size, micro):
        mb = {k: v[start : start + micro] for k, v in tensors.items()}
        with torch.no_grad():
            t_logits, t_hidden = _forward(teacher, mb)
        s_logits, s_hidden = _forward(student, mb)
        terms, counts = _parts(s_logits, t_logits, s_hidden, t_hidden, mb["attention_mask"], mb.get("labels"), config)
        weighted = {term: terms[term] * counts[term] * shares[term] for term in TERMS}
        _total(weighted, config).backward()
        report = {term: report[term] + weighted[term].detach() for term in TERMS}
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], max_grad_norm)
    optimizer.step()
    return {"loss": _total(report, config), **report}


def training_state(optimizer) -> dict[str, np.ndarray]:
    """The optimiser's moments and step counts and torch's RNG state, as numpy arrays (for a checkpoint)."""
    state = {"rng/torch": torch.get_rng_state().numpy()}
    for index, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            state[f"optimizer/{index}/{key}"] = value.detach().cpu().numpy()
    return state


def load_training_state(optimizer, state: Mapping[str, np.ndarray]) -> None:
    """Restores :func:`training_state` into ``optimizer`` (built by :func:`make_optimizer`) and torch's RNG."""
    saved = optimizer.state_dict()
    params = {p: g for g in saved["param_groups"] for p in g["params"]}
    device = optimizer.param_groups[0]["params"][0].device
    restored: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in state.items():
        if name.startswith("optimizer/"):
            _, index, key = name.split("/")
            if int(index) not in params:
                raise ValueError(
                    f"the checkpoint's optimizer state has parameter {index}; this student has "
                    f"{len(params)}: was it saved from another student?"
                )
            tensor = torch.from_numpy(np.array(value))
            restored.setdefault(int(index), {})[key] = tensor if key == "step" else tensor.to(device)
    saved["state"] = restored
    optimizer.load_state_dict(saved)
    if "rng/torch" in state:
        torch.set_rng_state(torch.from_numpy(np.array(state["rng/torch"], np.uint8)))


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
    """Trains ``student`` to imitate the frozen ``teacher`` for ``steps`` optimiser updates.

    Args:
        student: A DistilBERT model (masked-LM, sequence classification or bare); trained in place.
        teacher: A model of the same task and hidden size (or a bare encoder when the loss needs no
            teacher logits); put in eval mode and frozen.
        batches: Yields numpy dicts ``input_ids``, ``attention_mask``, ``labels`` (masked already,
            the same in every framework); one per optimiser update.
        config: The loss's weights and temperature.
        steps: Total optimiser updates (the schedule's length), counting those before ``start_step``.
        learning_rate: Peak learning rate.
        warmup_steps: Updates of linear warm-up from 0.
        weight_decay: AdamW's decoupled weight decay of the matrices.
        max_grad_norm: Clip the gradients' global norm to this (None or 0: no clipping).
        accumulation_steps: Micro-batches per batch (the batch axis must split evenly).
        on_step: Called after every update with the update's number (1-based) and its loss terms
            as floats.
        state: A :func:`training_state` to resume from (with ``start_step``).
        start_step: Updates already made; ``batches`` then yields the batches from there on.
        save_every: Call ``on_save(step, training_state)`` every this many updates (0: never).
        on_save: See ``save_every``; the student holds the step's weights when it is called.

    Returns:
        The student, trained, in eval mode.
    """
    teacher.eval()
    teacher.requires_grad_(False)
    optimizer = make_optimizer(student, learning_rate, weight_decay)
    if state is not None:
        load_training_state(optimizer, state)
    student.train()
    iterator = iter(batches)
    for step in range(start_step, steps):
        try:
            batch = next(iterator)
        except StopIteration:
            raise ValueError(f"the batches ran out after {step - start_step} of {steps - start_step} steps") from None
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, learning_rate, warmup_steps, steps)
        terms = train_step(student, teacher, optimizer, batch, config, max_grad_norm, accumulation_steps)
        if on_step is not None:
            on_step(step + 1, {k: float(terms[k]) for k in ("loss", *TERMS)})
        if save_every and on_save is not None and (step + 1) % save_every == 0:
            student.eval()
            on_save(step + 1, training_state(optimizer))
            student.train()
    return student.eval()
