"""Fine-tuning pieces for the PyTorch models, named and shaped as in the TensorFlow and Flax backends.

- :func:`linear_schedule`: linear warm-up from 0 to the peak learning rate, then linear decay to 0.
- :func:`adamw_with_warmup`: AdamW on that schedule with gradient clipping, weight decay on the
  matrices (Linear weights, embeddings) and none on biases and LayerNorm parameters, the usual BERT
  recipe. A PyTorch optimizer is built over the parameters, so this one takes the model first; the
  schedule and the clipping run inside ``optimizer.step()``.
- :func:`loss_fn`, :func:`train_step` (with gradient accumulation over ``accum_steps`` equal
  micro-batches) and :func:`eval_step`.

Example:
    >>> import torch
    >>> from distilbert import DistilBertConfig
    >>> from distilbert.pt import DistilBertForSequenceClassification
    >>> from distilbert.pt.training import adamw_with_warmup, train_step
    >>> model = DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37, n_layers=1))
    >>> optimizer = adamw_with_warmup(model, 1e-3, total_steps=10, warmup_steps=1)
    >>> batch = {"input_ids": torch.ones(4, 8, dtype=torch.long), "labels": torch.tensor([0, 1, 0, 1])}
    >>> loss = train_step(model, optimizer, batch)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

__all__ = ["linear_schedule", "adamw_with_warmup", "loss_fn", "train_step", "eval_step"]

Batch = Mapping[str, torch.Tensor]


def linear_schedule(learning_rate: float, total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """The learning rate of each step: ``0 -> learning_rate`` linearly over ``warmup_steps``, then down to 0."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return learning_rate * step / max(warmup_steps, 1)
        return learning_rate * max(0.0, 1.0 - (step - warmup_steps) / max(total_steps - warmup_steps, 1))

    return schedule


def adamw_with_warmup(
    model: torch.nn.Module,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.01,
    max_grad_norm: float | None = 1.0,
) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters with :func:`linear_schedule` and global-norm clipping.

    Weight decay applies to parameters of rank 2 and above (Linear weights, embeddings), not to biases
    and LayerNorm parameters. Each ``optimizer.step()`` first clips the gradients' global norm to
    ``max_grad_norm`` (None: no clipping), then updates, then advances the schedule
    (``optimizer.lr_scheduler``, saved with ``optimizer.lr_scheduler.state_dict()``).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=learning_rate, eps=1e-8)
    schedule = linear_schedule(learning_rate, total_steps, warmup_steps)
    optimizer.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule(step) / learning_rate if learning_rate else 0.0
    )
    if max_grad_norm:

        def clip(*_) -> None:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)

        optimizer.register_step_pre_hook(clip)

    def advance(*_) -> None:
        optimizer.lr_scheduler.step()

    optimizer.register_step_post_hook(advance)
    return optimizer


def _as_tensors(model: torch.nn.Module, batch: Mapping) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    return {k: torch.as_tensor(v, device=device) for k, v in batch.items()}


def loss_fn(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The model's loss on ``batch`` (model inputs plus ``labels`` or QA positions), in the model's mode."""
    out = model(**_as_tensors(model, batch), return_dict=True)
    if out.loss is None:
        raise ValueError("the batch has no labels (or start_positions/end_positions): no loss to train on")
    return out.loss


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    accum_steps: int = 1,
    loss: Callable[[torch.nn.Module, Batch], torch.Tensor] = loss_fn,
) -> torch.Tensor:
    """One optimiser update on ``batch`` with dropout on; gradients averaged over ``accum_steps`` micro-batches.

    Returns:
        The loss before the update (mean over micro-batches), detached.
    """
    batch = _as_tensors(model, batch)
    for name, x in batch.items():
        if x.shape[0] % accum_steps:
            raise ValueError(f"batch axis of {name!r} ({x.shape[0]}) is not divisible by accum_steps={accum_steps}")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros(())
    micro = [dict(zip(batch, parts)) for parts in zip(*(x.chunk(accum_steps) for x in batch.values()))]
    for mb in micro:
        value = loss(model, mb) / accum_steps
        value.backward()
        total = total + value.detach().float().cpu()
    optimizer.step()
    return total


@torch.no_grad()
def eval_step(model: torch.nn.Module, batch: Batch):
    """The model's output on ``batch`` with dropout off (loss included when the batch has labels)."""
    model.eval()
    return model(**_as_tensors(model, batch), return_dict=True)
