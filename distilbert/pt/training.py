"""Fine-tuning pieces for the PyTorch models, named and shaped as in the TensorFlow and Flax backends.

- :func:`linear_schedule`: linear warm-up from 0 to the peak learning rate, then linear decay to 0.
- :func:`adamw_with_warmup`: AdamW on that schedule with gradient clipping, weight decay on the
  matrices (Linear weights, embeddings) and none on biases and LayerNorm parameters, the usual BERT
  recipe. A PyTorch optimizer is built over the parameters, so this one takes the model first; the
  schedule and the clipping run inside ``optimizer.step()``.
- :func:`loss_fn`, :func:`train_step` (with gradient accumulation over ``accum_steps`` equal
  micro-batches) and :func:`eval_step`.
- :func:`finetune`: the whole loop over a sequence of numpy *global batches* (one per optimiser
  step), with the same name and arguments as in ``distilbert.tf.training`` and
  ``distilbert.flax.training``; resumable with :func:`training_state` / ``start_step``.

Scaling out runs on PyTorch's own engine. Launch the same script with ``torchrun --nproc-per-node N``
(any ``--nnodes``) and call :func:`init_distributed` first: it reads ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` and starts ``torch.distributed`` (gloo on CPU,
NCCL on CUDA). :func:`finetune` then trains with DistributedDataParallel, or with FSDP2
(``torch.distributed.fsdp.fully_shard`` over each transformer layer and the root: parameters,
gradients and optimiser state sharded) when ``fsdp=True``. Every worker receives the same global
batch and trains on its rows ``shard(batch, rank, world)``; each worker's loss is its share of the
global batch's loss (sums over its items divided by the count on the *global* batch), so the update
is the one a single process makes on the whole batch. Only the main process (:func:`is_main_process`)
sees ``on_step``/``on_save``.

The pieces of that loop are public, for your own loop:

- :func:`init_distributed`, :func:`is_main_process`, :func:`rank_and_world`;
- :func:`shard`: one worker's rows of a global batch;
- :func:`global_counts` and :func:`loss_share`: the count of each loss term on the global batch, and
  one worker's share of the global loss (shares summed over the workers = the global-batch loss);
- :func:`distribute`: the module to train (the model itself, ``DistributedDataParallel`` over it, or
  a ``fully_shard``-ed copy of it);
- :func:`full_state_dict`: the gathered, unsharded weights of that module (a collective);
- :func:`training_state` / :func:`load_training_state`: the optimiser's state keyed by parameter name,
  gathered (so it resumes under any number of workers, with or without FSDP), and torch's RNG.

A custom loop::

    init_distributed()
    module = distribute(model, fsdp=True)
    optimizer = adamw_with_warmup(module, 5e-5, total_steps=len(batches))
    rank, world = rank_and_world()
    for batch in batches:
        counts = global_counts(model, batch)
        train_step(module, optimizer, shard(batch, rank, world),
                   loss=lambda m, b: loss_share(m, b, counts) * world)  # DDP/FSDP average over workers
    model.load_state_dict(full_state_dict(module))  # on every worker: it is a collective


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

import copy
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from distilbert.common.distillation import learning_rate_at
from distilbert.common.finetune import loss_counts, shard
from distilbert.common.losses import IGNORE_INDEX

__all__ = [
    "linear_schedule",
    "adamw",
    "adamw_with_warmup",
    "loss_fn",
    "train_step",
    "eval_step",
    "init_distributed",
    "is_main_process",
    "rank_and_world",
    "shard",
    "global_counts",
    "loss_share",
    "distribute",
    "full_state_dict",
    "training_state",
    "load_training_state",
    "finetune",
]

Batch = Mapping[str, torch.Tensor]


def linear_schedule(learning_rate: float, total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """The learning rate of each step: ``0 -> learning_rate`` linearly over ``warmup_steps``, then down to 0."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return learning_rate * step / max(warmup_steps, 1)
        return learning_rate * max(0.0, 1.0 - (step - warmup_steps) / max(total_steps - warmup_steps, 1))

    return schedule


def adamw(model: torch.nn.Module, learning_rate: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW (betas 0.9/0.999, eps 1e-8) over ``model``'s trainable parameters, PyTorch's fused kernel where
    it runs (CPU and CUDA, unsharded parameters).

    Weight decay applies to parameters of rank 2 and above (Linear weights, embeddings), not to biases
    and LayerNorm parameters.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    # The fused kernel updates each tensor in one pass (the default foreach path makes about ten); FSDP2's
    # sharded DTensor parameters keep the foreach path.
    fused = all(p.device.type in ("cpu", "cuda") and not isinstance(p, DTensor) for p in params)
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, fused=fused or None)


def adamw_with_warmup(
    model: torch.nn.Module,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.01,
    max_grad_norm: float | None = 1.0,
) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters with :func:`linear_schedule` and global-norm clipping.

    The optimiser is :func:`adamw`'s. Each ``optimizer.step()`` first clips the gradients' global norm to
    ``max_grad_norm`` (None: no clipping), then updates, then advances the schedule
    (``optimizer.lr_scheduler``, saved with ``optimizer.lr_scheduler.state_dict()``).
    """
    optimizer = adamw(model, learning_rate, weight_decay)
    params = [p for group in optimizer.param_groups for p in group["params"]]
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


# ------------------------------------------------------------------------------ distributed set-up
def init_distributed() -> bool:
    """Starts ``torch.distributed`` from torchrun's environment; False (nothing done) outside a launcher.

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` (set by
    ``torchrun``); the backend is NCCL when CUDA is available (each process then uses the GPU
    ``LOCAL_RANK``) and gloo otherwise. Calling it again is harmless.

    Returns:
        True when a process group is running (this call started it or it already was).

    Raises:
        ValueError: ``WORLD_SIZE`` is set but ``RANK``, ``MASTER_ADDR`` or ``MASTER_PORT`` is not.
    """
    if dist.is_available() and dist.is_initialized():
        return True
    if "WORLD_SIZE" not in os.environ:
        return False
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE is set but not {', '.join(missing)}: launch with torchrun --nproc-per-node N")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl", init_method="env://")
    else:
        dist.init_process_group("gloo", init_method="env://")
    return True


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` without ``torch.distributed``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one process that logs and writes files."""
    return rank_and_world()[0] == 0


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


def _qa_targets(positions, seq_len: int):
    positions = positions.reshape(positions.shape[0], -1)[:, 0] if positions.ndim > 1 else positions
    return positions.clip(0, seq_len)  # seq_len itself: outside the sequence, ignored


def global_counts(model: torch.nn.Module, batch: Mapping[str, np.ndarray]) -> dict[str, int]:
    """How many items each term of ``model``'s loss averages over, counted on the whole global ``batch``
    (:func:`distilbert.common.finetune.loss_counts` for the model's task)."""
    task = getattr(_unwrap(model), "task", "base")
    if task == "base":
        raise ValueError("the bare DistilBertModel has no loss: fine-tune a model with a task head")
    return loss_counts(task, batch)


def _summed_ce(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=ignore_index, reduction="sum"
    )


def loss_share(model: torch.nn.Module, batch: Mapping, counts: Mapping[str, int]) -> torch.Tensor:
    """This worker's share of the global batch's loss: its items' summed losses over the global counts.

    The shares of all workers add up to the model's own loss on the global batch (its mean over the
    global batch's examples or labelled positions), whatever the split: a worker whose rows hold no
    labelled token adds 0, and a worker with many adds more, where a per-worker mean would weigh
    them alike.

    Args:
        model: The model (or its DDP/FSDP module) in the mode to run it in.
        batch: This worker's rows (numpy or torch), inputs and labels.
        counts: :func:`global_counts` of the global batch.
    """
    task = getattr(_unwrap(model), "task", "base")
    tensors = _as_tensors(model, batch)
    if "examples" in counts:  # one loss per example whatever the problem type: weigh the model's mean by rows
        out = model(**tensors, return_dict=True)
        return out.loss * (len(tensors["input_ids"]) / counts["examples"])
    if task == "question_answering":
        starts, ends = tensors.pop("start_positions"), tensors.pop("end_positions")
        out = model(**tensors, return_dict=True)
        T = out.start_logits.shape[1]
        start = _summed_ce(out.start_logits, _qa_targets(starts, T), T) / max(counts["start"], 1)
        end = _summed_ce(out.end_logits, _qa_targets(ends, T), T) / max(counts["end"], 1)
        return (start + end) / 2
    labels = tensors.pop("labels")
    out = model(**tensors, return_dict=True)
    return _summed_ce(out.logits, labels, IGNORE_INDEX) / max(counts["labels"], 1)


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    from distilbert.pt.modeling import TransformerBlock

    return [m for m in model.modules() if isinstance(m, TransformerBlock)]


def distribute(model: torch.nn.Module, fsdp: bool = False) -> torch.nn.Module:
    """The module to train ``model`` through under the running process group.

    Without ``torch.distributed``: ``model`` itself. Otherwise ``DistributedDataParallel(model)``
    (it trains ``model``'s own parameters), or with ``fsdp=True`` a copy of ``model`` with
    ``fully_shard`` applied to each transformer layer and to the root, so each worker holds
    ``1/world`` of the parameters, gradients and optimiser state (``model`` is left as it was; get
    the trained weights back with :func:`full_state_dict`). Under NCCL ``model`` is first moved to
    this process's GPU.

    Raises:
        ValueError: ``fsdp=True`` without a process group.
    """
    if not (dist.is_available() and dist.is_initialized()):
        if fsdp:
            raise ValueError(
                "fsdp=True needs torch.distributed: launch with torchrun --nproc-per-node N "
                "and call distilbert.pt.training.init_distributed() first"
            )
        return model
    if dist.get_backend() == "nccl" and next(model.parameters()).device.type != "cuda":
        model.to(torch.device("cuda", torch.cuda.current_device()))
    if not fsdp:
        on_gpu = next(model.parameters()).device.type == "cuda"
        ids = [torch.cuda.current_device()] if on_gpu else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard

    working = copy.deepcopy(model)
    for layer in _layers(working):
        fully_shard(layer)
    fully_shard(working)
    return working


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded state dict of a module from :func:`distribute` (a collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(_unwrap(module), options=StateDictOptions(full_state_dict=True))


def training_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    """The optimiser's state by parameter name, gathered whole, and torch's RNG state, as numpy arrays.

    A collective under DDP/FSDP (run it on every worker). The names do not depend on the number of
    workers or on FSDP, so a run can resume under another launch. Keys: ``optimizer/<parameter
    name>.<exp_avg|exp_avg_sq|step>`` and ``rng/torch``.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    nested = get_optimizer_state_dict(_unwrap(module), optimizer, options=StateDictOptions(full_state_dict=True))
    state = {"rng/torch": torch.get_rng_state().numpy()}
    for name, values in nested["state"].items():
        for key, value in values.items():
            state[f"optimizer/{name}.{key}"] = value.detach().cpu().numpy()
    return state


def load_training_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer, state: Mapping) -> None:
    """Restores :func:`training_state` into ``optimizer`` (over ``module``'s parameters) and torch's RNG.

    Raises:
        ValueError: The state's parameter names or shapes are not this model's.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    optimizer.zero_grad(set_to_none=True)  # torch initialises the moments to fill only where no gradient is left
    nested = get_optimizer_state_dict(_unwrap(module), optimizer, options=options)
    ours = {f"{name}.{key}": v for name, values in nested["state"].items() for key, v in values.items()}
    theirs = {k[len("optimizer/") :]: v for k, v in state.items() if k.startswith("optimizer/")}
    problems = [f"missing {k}" for k in sorted(ours.keys() - theirs.keys())]
    problems += [f"unexpected {k}" for k in sorted(theirs.keys() - ours.keys())]
    problems += [
        f"{k} has shape {np.shape(theirs[k])}, the model {tuple(ours[k].shape)}"
        for k in sorted(ours.keys() & theirs.keys())
        if tuple(np.shape(theirs[k])) != tuple(ours[k].shape)
    ]
    if problems:
        raise ValueError(
            "the training state does not fit this model's optimizer (saved from another model?): "
            + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        )
    for full_key, value in theirs.items():
        name, key = full_key.rsplit(".", 1)
        nested["state"][name][key] = torch.from_numpy(np.array(value)).to(ours[full_key].dtype)
    set_optimizer_state_dict(_unwrap(module), optimizer, optim_state_dict=nested, options=options)
    if "rng/torch" in state:
        torch.set_rng_state(torch.from_numpy(np.array(state["rng/torch"], np.uint8)))


# ------------------------------------------------------------------------------------ the loop
def finetune(
    model: torch.nn.Module,
    batches: Sequence[Mapping[str, np.ndarray]],
    *,
    learning_rate: float = 5e-5,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
    start_step: int = 0,
    state: Mapping[str, np.ndarray] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    save_every: int = 0,
    on_save: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    devices: int | None = None,
    fsdp: bool = False,
) -> torch.nn.Module:
    """Fine-tunes ``model`` on ``batches``, one AdamW update per global batch, on one or many workers.

    AdamW (betas 0.9/0.999, eps 1e-8; decoupled weight decay on matrices only) on the linear
    schedule of :func:`~distilbert.common.distillation.learning_rate_at`, the global gradient clipped
    to ``max_grad_norm``: :func:`adamw_with_warmup`. Dropout is as ``model``'s config says. Under
    ``torch.distributed`` (see :func:`init_distributed`) each worker trains on its rows of every global
    batch with DDP, or FSDP2 with ``fsdp=True``; the loss and the update equal the single-process
    ones on the same batches.

    Args:
        model: A DistilBERT model with a task head (its labels' arrays name the loss).
        batches: The global batches, ``batches[k]`` for step ``k``; numpy dicts of the model's inputs
            and labels (``labels``, or ``start_positions``/``end_positions``). ``len(batches)`` is the
            schedule's length. Every worker must see the same batches.
        learning_rate: Peak learning rate.
        weight_decay: AdamW's decoupled weight decay of the matrices (never of biases and LayerNorms).
        warmup_steps: Linear warm-up from 0 over this many steps, then linear decay to 0.
        max_grad_norm: Clip the global gradient norm to this (None or 0: no clipping).
        start_step: Steps already made (resume); training runs ``batches[start_step:]``.
        state: A :func:`training_state` to resume from (with ``start_step``).
        on_step: Called on the main process after every step with the step (1-based) and
            ``{"loss": the global batch's loss, "examples": its rows}``.
        save_every: Call ``on_save`` every this many steps (0: never).
        on_save: ``on_save(step, training_state)``, on the main process only, once ``model`` holds the
            step's weights (gathered from every worker first).
        devices: Must be None: PyTorch scales out with ``torchrun --nproc-per-node N``.
        fsdp: Shard parameters, gradients and optimiser state over the workers (needs torchrun).

    Under FSDP the workers train a sharded copy, and ``model`` stays an ordinary model on every worker,
    refilled with the gathered weights at each ``on_save`` and at the end (so each worker holds one
    unsharded copy of the weights besides its shards of the parameters, gradients and optimiser state).

    Returns:
        ``model`` itself, trained, unwrapped and unsharded, in eval mode (on every worker).

    Raises:
        ValueError: ``devices`` given, ``fsdp`` without torchrun, a ``start_step`` outside the
            batches, a global batch whose rows the workers cannot split evenly.

    Example:
        >>> import numpy as np
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.pt import DistilBertForSequenceClassification
        >>> model = DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_heads=4, hidden_dim=37, n_layers=1))
        >>> batch = {"input_ids": np.ones((4, 8), np.int64), "attention_mask": np.ones((4, 8), np.int64),
        ...          "labels": np.array([0, 1, 0, 1])}
        >>> model = finetune(model, [batch, batch], learning_rate=1e-3)
    """
    if devices is not None:
        raise ValueError(
            f"devices={devices} is not used by PyTorch: launch with torchrun --nproc-per-node N "
            "(the command's --devices is for tf and flax)"
        )
    total = len(batches)
    if not 0 <= start_step <= total:
        raise ValueError(f"start_step={start_step} is outside the {total} steps of the batches")
    rank, world = rank_and_world()
    module = distribute(model, fsdp)
    optimizer = adamw_with_warmup(module, learning_rate, total, warmup_steps, weight_decay, max_grad_norm)
    if state is not None:
        load_training_state(module, optimizer, state)
    device = next(module.parameters()).device
    sharded = module is not model and not isinstance(module, torch.nn.parallel.DistributedDataParallel)

    def gather() -> None:  # model <- the trained weights (a collective under FSDP)
        if sharded:
            model.load_state_dict(full_state_dict(module))

    for step in range(start_step, total):
        batch = batches[step]
        counts = global_counts(model, batch)
        part = shard(batch, rank, world)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, learning_rate, warmup_steps, total)
        # DDP and FSDP average the workers' gradients: scale each share by the world so they add up.
        loss = train_step(module, optimizer, part, loss=lambda m, b: loss_share(m, b, counts) * world) / world
        if world > 1:
            loss = loss.to(device)  # NCCL reduces CUDA tensors only
            dist.all_reduce(loss)
        if on_step is not None and rank == 0:
            on_step(step + 1, {"loss": float(loss), "examples": len(batch["input_ids"])})
        if save_every and on_save is not None and (step + 1) % save_every == 0:
            snapshot = training_state(module, optimizer)
            gather()
            if rank == 0:
                model.eval()
                on_save(step + 1, snapshot)
    gather()
    return model.eval()
