"""``distilbert finetune``: fine-tune a DistilBERT checkpoint for one of five tasks in PyTorch, TensorFlow or JAX/Flax.

What the command does, in order, before anything is written (every process of a distributed run
does the same checks, so none of them writes until all have passed: the launchers' start-up waits
for every process):

1. Reads the model: a DistilBERT-form checkpoint directory or hub id, in any of its formats, and its
   tokenizer (``DistilBertTokenizerFast``).
2. Reads the training (and ``--eval``) data of the task (see :mod:`distilbert.common.finetune` for the
   formats); bad data stops here with ``FILE:LINE: what is wrong``.
3. Decides the head: the checkpoint's own when it has the task's head and (classification) every
   training label is one of its classes; otherwise a new, randomly initialised head, whose labels
   go into ``config.json`` (``id2label``/``label2id``).

Then it trains in the chosen framework through ``distilbert.{pt,tf,flax}.training.finetune`` on the
global batches of :class:`distilbert.common.finetune.Batches` (the same in every framework and for
any number of workers), with AdamW on a linear warm-up and decay schedule and gradient clipping.
After each epoch a checkpoint (the model in the framework's format, the optimiser and RNG state,
the step) replaces ``OUT/checkpoint``; ``--resume`` continues from it on the same trajectory. The
result in ``OUT`` is the last model in the framework's Hugging Face format with ``config.json`` and
the tokenizer files, ``finetune.json`` (the arguments and the last loss) and, with ``--eval``,
``eval_results.json``. Only the main process writes.

Scaling out uses each framework's engine: PyTorch under ``torchrun`` (DDP, or FSDP2 with ``--fsdp``),
TensorFlow with ``--devices N`` (``MirroredStrategy``) or ``TF_CONFIG`` (``MultiWorkerMirroredStrategy``),
JAX with ``--devices N`` (a device mesh, ``--fsdp`` to shard the parameters) and ``--coordinator``
(``jax.distributed``). See ``docs/training.md``.

Example:
    >>> from distilbert.finetune import finetune_command  # doctest: +SKIP
    >>> finetune_command("text-classification", "distilbert-base-uncased", "train.jsonl", "out", "pt", epochs=2)
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from distilbert.common import files
from distilbert.common import finetune as data
from distilbert.common.bert import is_bert_checkpoint
from distilbert.common.checkpoint import FORMATS, available_formats, init_state, load_state, open_native
from distilbert.common.config import DistilBertConfig
from distilbert.common.distillation import learning_rate_at
from distilbert.common.hub import resolve_dir
from distilbert.common.logs import errors_only
from distilbert.common.names import TIED, task_prefix, weight_table

# Checkpoints and their resumption work as the distillation command's.
from distilbert.runs import (
    STATE_FILE,
    TRAINER_FILE,
    build_model,
    find_checkpoint,
    result_directory,
    save_checkpoint,
    seed_framework,
    trim_log,
)

TASKS = data.TASKS
RESULT_FILE, EVAL_FILE = "finetune.json", "eval_results.json"
# Arguments that may change between a run and its resumption: they do not change the trajectory
# (an N-worker run equals the 1-worker run on the same global batches).
RESUMABLE = ("out", "resume", "log", "progress", "devices", "fsdp", "coordinator", "num_processes", "process_id")


@dataclass
class FinetuneResult:
    """What a run did: where it wrote, the steps made, the last loss, the head's labels and the metrics."""

    out: str
    task: str
    steps: int
    start_step: int
    loss: float | None
    labels: list[str] | None
    new_head: bool
    eval_results: dict[str, float] | None
    main_process: bool


# ------------------------------------------------------------------------------------- the model
def _checkpoint_task(directory: str, config: DistilBertConfig) -> str:
    """The head a checkpoint's weights hold (read from the tensor names, nothing loaded)."""
    formats = available_formats(directory)
    if not formats:
        names = ", ".join(f[0] for f in FORMATS.values())
        raise FileNotFoundError(f"no weights in {directory!r}: expected one of {names}")
    native, _, task, _ = open_native(os.path.join(directory, FORMATS[formats[0]][0]), config, formats[0])
    native.close()
    return task


def _head_state(
    directory: str, config: DistilBertConfig, task: str, new_head: bool, seed: int
) -> tuple[dict[str, np.ndarray], bool]:
    """The canonical state of ``task``'s model: the checkpoint's, a missing (or ``new_head``) head initialised."""
    with errors_only("distilbert"):  # "newly initialised" warnings: the command reports the new head itself
        state, report = load_state(directory, config, task, ignore_mismatched_sizes=new_head)
    fresh = set(report.new)
    body = task_prefix(task)
    if new_head:
        fresh |= {name for name in state if not name.startswith(body)}
    state = {name: array for name, array in state.items() if name not in fresh}
    state.update(init_state(config, task, seed=seed, names=fresh))
    for spec in weight_table(config, task):
        if spec.kind == TIED and spec.name not in state and spec.tied_to is not None:
            state[spec.name] = state[spec.tied_to]
    return state, bool(fresh - {s.name for s in weight_table(config, task) if s.kind == TIED})


# ------------------------------------------------------------------------------------ the workers
def _world_size(framework: str, devices: int | None, num_processes: int | None) -> int:
    """How many ways the global batch is split, as far as the command can tell before the framework starts."""
    if framework == "pt":
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    if framework == "tf" and os.environ.get("TF_CONFIG"):
        try:
            cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
        except json.JSONDecodeError:
            raise ValueError("TF_CONFIG is not JSON; see the TensorFlow multi-worker guide for its form") from None
        return max(1, sum(len(cluster.get(role, [])) for role in ("chief", "worker"))) * (devices or 1)
    return (devices or 1) * (num_processes or 1)  # JAX: --devices counts each process's devices


def _check_arguments(framework: str, task: str, numbers: dict[str, Any], distributed: dict[str, Any]) -> None:
    from distilbert.frameworks import check_framework

    check_framework(framework)
    if task not in TASKS:
        raise ValueError(f"unknown --task {task!r}; expected one of {', '.join(TASKS)}")
    for flag, (value, low, kind) in numbers.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or value < low:
            raise ValueError(f"{flag} must be a number of at least {low}, got {value!r}")
    if not numbers["--warmup-ratio"][0] <= 1:
        raise ValueError(f"--warmup-ratio must be in [0, 1], got {numbers['--warmup-ratio'][0]}")
    devices, fsdp = distributed["devices"], distributed["fsdp"]
    if framework == "pt" and devices is not None:
        raise ValueError(
            "--devices is for --framework tf and flax; with PyTorch launch the command under "
            "torchrun --nproc-per-node N (one process per device)"
        )
    if framework == "tf" and fsdp:
        raise ValueError("--fsdp: tf.distribute has no fully sharded data parallelism; use --framework pt or flax")
    given = [name for name in ("coordinator", "num_processes", "process_id") if distributed[name] is not None]
    if given and framework != "flax":
        raise ValueError(
            "--coordinator, --num-processes and --process-id start jax.distributed (--framework flax); "
            "PyTorch uses torchrun, TensorFlow TF_CONFIG"
        )
    if given and len(given) != 3:
        raise ValueError("give --coordinator HOST:PORT, --num-processes P and --process-id I together")
    if given and not 0 <= distributed["process_id"] < distributed["num_processes"]:
        raise ValueError(f"--process-id must be in [0, {distributed['num_processes']})")


def _start_framework(framework: str, devices: int | None, distributed: dict[str, Any]):
    """Sets the framework's devices up (before it initialises) and returns its ``training`` module."""
    if framework == "tf" and (devices is not None or os.environ.get("TF_CONFIG")):
        # Logical CPU devices, or the multi-worker strategy's collectives, must be set before TensorFlow starts.
        importlib.import_module("distilbert.tf.training").configure_devices(devices)
    if framework == "flax":
        # Asks XLA for host devices before JAX starts; distilbert.flax.training imports JAX itself.
        training = importlib.import_module("distilbert.flax.training")
        if devices is not None:
            training.configure_devices(devices)
        if distributed["coordinator"] is not None:
            training.init_distributed(
                distributed["coordinator"], distributed["num_processes"], distributed["process_id"]
            )
        return training
    training = importlib.import_module(f"distilbert.{framework}.training")
    if framework == "pt":
        training.init_distributed()  # under torchrun: the process group from its environment; else nothing
    return training


# -------------------------------------------------------------------------------------- the run
def finetune_command(
    task: str,
    model: str,
    train_file: str,
    out: str,
    framework: str = "pt",
    *,
    eval_file: str | None = None,
    epochs: int = 3,
    batch_size: int = 8,
    learning_rate: float = 5e-5,
    weight_decay: float = 0.0,
    warmup_ratio: float = 0.0,
    max_grad_norm: float = 1.0,
    max_length: int | None = None,
    seed: int = 0,
    log: str | None = None,
    resume: bool = False,
    devices: int | None = None,
    fsdp: bool = False,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Runs a fine-tuning (see the module docstring); every argument is a flag of ``distilbert finetune``.

    Args:
        task: ``text-classification``, ``token-classification``, ``question-answering``,
            ``multiple-choice`` or ``fill-mask``.
        model: A DistilBERT-form checkpoint directory or hub id (with its tokenizer files).
        train_file, eval_file: The data (:mod:`distilbert.common.finetune` describes the formats).
        out: A new directory for the result (with ``resume``: the directory of the run to continue).
        framework: ``pt``, ``tf`` or ``flax``.
        epochs, batch_size: Passes over the training rows; rows per optimiser step over all workers.
        learning_rate, weight_decay, warmup_ratio, max_grad_norm: AdamW (betas 0.9/0.999, eps 1e-8;
            no decay on biases and LayerNorms), the share of the steps spent warming up, and the
            global-norm clipping (0: off).
        max_length: Tokens per row (default 128, question answering 384, at most the model's positions).
        seed: Data order, masks, new heads and dropout.
        log: A JSON Lines file: one object per step.
        devices, fsdp, coordinator, num_processes, process_id: Scaling out (docs/training.md).
        progress: A tqdm bar on standard error.

    Raises:
        ValueError, FileNotFoundError, FileExistsError: Bad input, found before anything is written.
    """
    from distilbert import DistilBertTokenizerFast

    arguments = {k: v for k, v in locals().items() if k != "DistilBertTokenizerFast"}
    distributed = dict(
        devices=devices, fsdp=fsdp, coordinator=coordinator, num_processes=num_processes, process_id=process_id
    )
    real = (int, float)
    _check_arguments(
        framework,
        task,
        {
            "--epochs": (epochs, 1, int),
            "--batch-size": (batch_size, 1, int),
            "--lr": (learning_rate, 0, real),
            "--weight-decay": (weight_decay, 0, real),
            "--warmup-ratio": (warmup_ratio, 0, real),
            "--max-grad-norm": (max_grad_norm, 0, real),
            "--max-length": (max_length, 8, int),
            "--seed": (seed, 0, int),
            "--devices": (devices, 1, int),
            "--num-processes": (num_processes, 1, int),
        },
        distributed,
    )
    world = _world_size(framework, devices, num_processes)
    if batch_size % world:
        raise ValueError(f"--batch-size {batch_size} does not split over {world} workers; use a multiple of {world}")
    out = os.path.abspath(out)
    if os.path.exists(out) and not resume:
        raise FileExistsError(f"{out!r} exists; choose a new --out, or pass --resume to continue its checkpoint")
    model_task = TASKS[task]
    for path in (train_file, eval_file):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"no data file at {path!r}")

    # The model, the tokenizer, the data: everything is checked before anything is written.
    directory = resolve_dir(model)
    if is_bert_checkpoint(directory):
        raise ValueError(
            f"{directory!r} is a BERT checkpoint; convert it to DistilBERT form first "
            "(distilbert convert SRC DST --to pt), or distil it (distilbert distill)"
        )
    config = DistilBertConfig.from_pretrained(directory)
    source_task = _checkpoint_task(directory, config)
    if not any(os.path.isfile(os.path.join(directory, f)) for f in ("tokenizer.json", "vocab.txt")):
        raise FileNotFoundError(f"no tokenizer files (tokenizer.json or vocab.txt) in {directory!r}")
    tokenizer = DistilBertTokenizerFast.from_pretrained(directory)
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model only {config.vocab_size}")
    max_length = max_length or data.default_max_length(model_task, config.max_position_embeddings)
    if max_length > config.max_position_embeddings:
        raise ValueError(f"--max-length {max_length} exceeds the model's {config.max_position_embeddings} positions")

    train_records = data.read_records(train_file, model_task)
    eval_records = None if eval_file is None else data.read_records(eval_file, model_task)
    label2id, new_head = None, False
    if model_task in data.LABELLED:
        known = dict(config.label2id) if source_task == model_task else None
        label2id, new_head = data.choose_labels(train_file, data.label_values(train_records, model_task), known)
        if model_task == "sequence_classification":
            if len(label2id) < 2:
                raise ValueError(f"{train_file}: the labels hold one class only; a classifier needs two or more")
            if not new_head and config.problem_type not in (None, "single_label_classification"):
                raise ValueError(
                    f"the model's head is for {config.problem_type}; fine-tuning trains single-label "
                    "classification (give the labels as names to train a new head)"
                )
        if new_head:
            config = config.replace(
                id2label={i: name for name, i in label2id.items()}, label2id=label2id, num_labels=len(label2id)
            )
        if model_task == "sequence_classification":
            config = config.replace(problem_type="single_label_classification")
    train = data.encode(train_file, train_records, model_task, tokenizer, max_length, label2id)
    evaluation = None
    if eval_file is not None and eval_records is not None:
        evaluation = data.encode(eval_file, eval_records, model_task, tokenizer, max_length, label2id)
    masking = None
    if model_task == "masked_lm":
        masking = data.masking_for(train, config.vocab_size, tokenizer.all_special_ids, tokenizer.mask_token_id)
        if evaluation is not None:
            evaluation = data.mask_once(evaluation, masking, seed)
    batches = data.Batches(train.arrays, batch_size, epochs, seed, masking)
    total = len(batches)
    warmup_steps = math.ceil(warmup_ratio * total)
    state, fresh = _head_state(directory, config, model_task, new_head, seed)
    new_head = new_head or fresh

    checkpoint = find_checkpoint(out) if resume and os.path.isdir(out) else None
    start, training_state = 0, None
    if checkpoint is not None:
        with open(os.path.join(checkpoint, TRAINER_FILE), encoding="utf-8") as fh:
            saved = json.load(fh)
        recorded = json.loads(json.dumps(arguments))
        changed = sorted(
            k
            for k in set(saved["arguments"]) | set(recorded)
            if k not in RESUMABLE and saved["arguments"].get(k) != recorded.get(k)
        )
        if changed:
            raise ValueError(
                f"the checkpoint in {checkpoint!r} was made with other arguments ({', '.join(changed)}); "
                "resume with the same ones"
            )
        start = int(saved["step"])
        with np.load(os.path.join(checkpoint, STATE_FILE)) as npz:
            training_state = {k: npz[k] for k in npz.files}
        state, _ = load_state(checkpoint, config, model_task)

    # Training: the framework starts here (device set-up first), the main process writes.
    training = _start_framework(framework, devices, distributed)
    if not hasattr(training, "finetune"):
        raise ImportError(f"distilbert.{framework}.training has no finetune(); this installation predates it")
    main = bool(training.is_main_process())
    seed_framework(framework, seed)
    net = build_model(framework, model_task, config, state, seed)
    if main:
        os.makedirs(out, exist_ok=True)
        if log is not None:
            if start:
                trim_log(log, start)
            elif os.path.exists(log):
                os.remove(log)
    bar = _progress(total, start, progress and main)
    last: dict[str, float] = {}
    clock = [time.perf_counter()]

    def on_step(step: int, values: dict[str, float]) -> None:
        now = time.perf_counter()
        rate = float(values.get("examples", batch_size)) / max(now - clock[0], 1e-9)
        clock[0] = now
        loss = float(values["loss"])
        last["loss"] = loss
        bar.update(1)
        bar.set_postfix({"loss": f"{loss:.4g}", "ex/s": f"{rate:.1f}"}, refresh=False)
        if log is not None and main:
            entry = {
                "step": step,
                "epoch": round(batches.epoch_of(step), 6),
                "loss": loss,
                "learning_rate": learning_rate_at(step - 1, learning_rate, warmup_steps, total),
                "examples_per_second": rate,
            }
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    recorded = json.loads(json.dumps(arguments))

    def on_save(step: int, values: dict[str, np.ndarray]) -> None:
        if main:
            save_checkpoint(out, net, step, values, recorded)

    try:
        net = training.finetune(
            net,
            batches,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            max_grad_norm=max_grad_norm or None,
            start_step=start,
            state=training_state,
            on_step=on_step,
            save_every=batches.steps_per_epoch,
            on_save=on_save,
            devices=devices,
            fsdp=fsdp,
        )
    finally:
        bar.close()
    labels = None if label2id is None else [n for n, _ in sorted(label2id.items(), key=lambda kv: kv[1])]
    result = FinetuneResult(out, model_task, total, start, last.get("loss"), labels, new_head, None, main)
    if not main:
        return result
    if evaluation is not None:
        result.eval_results = evaluate(framework, net, evaluation, batch_size)

    # The result: the framework's format, the tokenizer and the record, moved into OUT when complete.
    with result_directory(out) as work:
        net.save_pretrained(work)
        tokenizer.save_pretrained(work)
        record = {"arguments": recorded, "steps": total, "loss": result.loss, "labels": labels, "new_head": new_head}
        files.atomic_write_json(os.path.join(work, RESULT_FILE), record)
        if result.eval_results is not None:
            files.atomic_write_json(os.path.join(work, EVAL_FILE), result.eval_results)
    return result


def evaluate(framework: str, model, examples: data.Examples, batch_size: int) -> dict[str, float]:
    """The task's metrics (:func:`distilbert.common.finetune.evaluate`) of ``model`` on ``examples``."""
    from distilbert.frameworks import make_runner

    fields = ("start_logits", "end_logits") if examples.task == "question_answering" else ("logits",)
    runner = make_runner(model, framework, fields)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fields}
    for batch in data.in_order(examples.arrays, batch_size, ("input_ids", "attention_mask")):
        out = runner(**batch)
        for name in fields:
            parts[name].append(np.asarray(out[name], np.float32))
    return data.evaluate(examples, {name: np.concatenate(arrays) for name, arrays in parts.items()})


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc="finetune",
        unit="step",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )
