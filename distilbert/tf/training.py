"""Keras ``compile``/``fit``/``evaluate``/``predict`` support for the DistilBERT models.

Two ways to train, as with the reference TF classes:

- ``model.compile(optimizer)`` with no loss: the labels travel in the input dict (``labels``, or
  ``start_positions``/``end_positions``) and the model's own loss is minimised. Labels given as
  ``y`` (``fit(x, y)``) are moved into the input dict.
- ``model.compile(optimizer, loss=...)`` and ``fit(x, y)``: the standard Keras way; the compiled
  loss and metrics see the logits (``(start_logits, end_logits)`` for question answering, the last
  hidden state for the bare model).

``predict`` returns a dict of numpy arrays (the output fields except the loss).

For a custom loop, the pieces named and shaped as in the PyTorch and Flax backends:
:func:`linear_schedule` (linear warm-up, then linear decay to 0), :func:`adamw_with_warmup` (AdamW on
it, with global-norm clipping and weight decay on kernels and embeddings but not on biases and
LayerNorms; also the optimizer to ``compile`` with), :func:`loss_fn`, :func:`train_step` (with gradient
accumulation over ``accum_steps`` equal micro-batches) and :func:`eval_step`.

Fine-tuning on global batches (the ``distilbert finetune`` command's engine, with the same name and
arguments as in ``distilbert.pt.training`` and ``distilbert.flax.training``): :func:`finetune`,
:func:`training_state`, :func:`is_main_process` and :func:`configure_devices`. It trains with Keras
``compile`` + ``fit`` (an AdamW of :func:`adamw_with_warmup`), in one process or on
``tf.distribute``: ``devices=N`` is a ``MirroredStrategy`` over N GPUs (or N logical CPU devices),
``TF_CONFIG`` in the environment a ``MultiWorkerMirroredStrategy``. An N-way step makes the same
update as the 1-process step on the same global batch.

Example:
    >>> from distilbert.tf import training  # doctest: +SKIP
    >>> training.configure_devices(2)  # first thing: before TensorFlow starts  # doctest: +SKIP
    >>> model = training.finetune(model, batches, learning_rate=5e-5, devices=2)  # doctest: +SKIP
    >>> model.save_pretrained("out")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from distilbert.common import validation
from distilbert.common.finetune import loss_counts, shard
from distilbert.common.losses import IGNORE_INDEX, problem_type_for
from distilbert.common.outputs import ModelOutput

__all__ = [
    "TrainingMixin",
    "LinearSchedule",
    "linear_schedule",
    "AdamW",
    "adamw_with_warmup",
    "loss_fn",
    "train_step",
    "eval_step",
    "finetune",
    "training_state",
    "load_training_state",
    "is_main_process",
    "configure_devices",
]


class TrainingMixin:
    """Overrides of ``keras.Model``'s step methods; mixed into the DistilBERT models."""

    label_names: tuple[str, ...] = ("labels",)
    _compiled_with_loss = False  # set by compile: whether a Keras loss was given

    def compile(self, optimizer="rmsprop", loss=None, *args, **kwargs):
        """``keras.Model.compile``; without ``loss`` the model trains on its own loss (see the module docstring)."""
        self._compiled_with_loss = loss is not None
        super().compile(optimizer, loss, *args, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compile when loading a .keras file of a class that overrides it, unless the class
        # also overrides this (keras.Model.compile_from_config says so): the same steps, through our compile.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)  # the optimizer's variables, for its saved state

    def _keras_loss_compiled(self) -> bool:
        return self._compiled_with_loss

    def _labels_into_inputs(self, x, y):
        """Without a compiled loss, ``y`` holds the model's labels: move them into ``x``."""
        if y is None or self._keras_loss_compiled():
            return x, y
        x = dict(x) if isinstance(x, Mapping) else {"input_ids": x}
        if isinstance(y, Mapping):
            unknown = sorted(set(y) - set(self.label_names))
            if unknown:
                raise ValueError(
                    f"y has keys {unknown}; {type(self).__name__} takes labels named {list(self.label_names)}"
                )
            x.update(y)
        elif len(self.label_names) == 2:
            if not isinstance(y, (tuple, list)) or len(y) != 2:
                raise ValueError("question answering needs y = (start_positions, end_positions) or a dict of them")
            x.update(zip(self.label_names, y))
        else:
            x["labels"] = y
        return x, None

    def _prediction(self, y_pred):
        """What a compiled Keras loss or metric compares with ``y``."""
        if not isinstance(y_pred, ModelOutput):
            return y_pred
        if self.task == "question_answering":
            return y_pred.start_logits, y_pred.end_logits
        if self.task == "base":
            return y_pred.last_hidden_state
        return y_pred.logits

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y = self._labels_into_inputs(x, y)
        return super().train_step((x, y, sample_weight))

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y = self._labels_into_inputs(x, y)
        return super().test_step((x, y, sample_weight))

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, Mapping):
            x = {k: v for k, v in x.items() if k not in self.label_names}
        outputs = self(x, training=False)
        return {k: v for k, v in outputs.items() if k != "loss"}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self._keras_loss_compiled() and y is not None:
            return super().compute_loss(x, y, self._prediction(y_pred), sample_weight, training=training)
        loss = getattr(y_pred, "loss", None)
        if loss is None:
            names = " and ".join(repr(n) for n in self.label_names)
            raise ValueError(
                f"no loss to train on: put {names} in the input dict (or pass y), or compile(loss=...) and fit(x, y)"
            )
        for extra in self.losses:  # regularisers, add_loss
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if y is None and isinstance(x, Mapping):
            found = [x.get(name) for name in self.label_names]
            if all(v is not None for v in found):
                y = found[0] if len(found) == 1 else tuple(found)
        return super().compute_metrics(x, y, self._prediction(y_pred), sample_weight)


@keras.saving.register_keras_serializable(package="distilbert")
class LinearSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``0 -> learning_rate`` linearly over ``warmup_steps``, then linearly down to 0 at ``total_steps``."""

    def __init__(self, learning_rate: float, total_steps: int, warmup_steps: int = 0):
        self.learning_rate, self.total_steps = float(learning_rate), int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr, warm = self.learning_rate, float(self.warmup_steps)
        rising = lr * step / max(warm, 1.0)
        falling = lr * tf.maximum(0.0, 1.0 - (step - warm) / max(self.total_steps - warm, 1.0))
        return tf.where(step < warm, rising, falling)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def linear_schedule(learning_rate: float, total_steps: int, warmup_steps: int = 0) -> LinearSchedule:
    """The Keras learning-rate schedule of linear warm-up then linear decay (see :class:`LinearSchedule`)."""
    return LinearSchedule(learning_rate, total_steps, warmup_steps)


@keras.saving.register_keras_serializable(package="distilbert")
class AdamW(keras.optimizers.AdamW):
    """Keras AdamW with eps added to the bias-corrected ``sqrt(v_hat)``, as ``torch.optim.AdamW`` and optax do.

    Keras adds eps to the uncorrected ``sqrt(v)`` ("epsilon hat"), which for eps 1e-8 shrinks the first
    updates of small gradients (by ~10% for gradients near 1e-6); this update is
    ``lr * m_hat / (sqrt(v_hat) + eps)``, so the three backends take the same steps. Weight decay is
    Keras's (decoupled, before the update), the same as torch's.
    """

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr, g = keras.ops.cast(learning_rate, dtype), keras.ops.cast(gradient, dtype)
        t = keras.ops.cast(self.iterations + 1, dtype)
        correction1 = 1 - keras.ops.power(keras.ops.cast(self.beta_1, dtype), t)
        correction2 = 1 - keras.ops.power(keras.ops.cast(self.beta_2, dtype), t)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        if not tf.distribute.has_strategy() and dtype == "float32":
            # TensorFlow's fused kernel: one pass over the tensor, not a dozen. It adds its epsilon to the
            # uncorrected sqrt(v), so eps * sqrt(1 - beta_2^t) there is eps on sqrt(v_hat) here.
            beta_1, beta_2 = keras.ops.cast(self.beta_1, dtype), keras.ops.cast(self.beta_2, dtype)
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=1 - correction1,
                beta2_power=1 - correction2,
                lr=lr,
                beta1=beta_1,
                beta2=beta_2,
                epsilon=self.epsilon * keras.ops.sqrt(correction2),
                grad=tf.convert_to_tensor(g),
            )
            return
        self.assign_add(m, (g - m) * (1 - self.beta_1))
        self.assign_add(v, (g * g - v) * (1 - self.beta_2))
        step = lr / correction1 * m / (keras.ops.sqrt(v) / keras.ops.sqrt(correction2) + self.epsilon)
        self.assign_sub(variable, step)


def adamw_with_warmup(
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.01,
    max_grad_norm: float | None = 1.0,
) -> AdamW:
    """:class:`AdamW` on :func:`linear_schedule`, clipping the global gradient norm to ``max_grad_norm``.

    Weight decay applies to kernels and embeddings, not to biases and LayerNorm ``gamma``/``beta``.
    """
    optimizer = AdamW(
        learning_rate=linear_schedule(learning_rate, total_steps, warmup_steps),
        weight_decay=weight_decay,
        epsilon=1e-8,
        global_clipnorm=max_grad_norm or None,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def loss_fn(model, batch: Mapping, training: bool = True):
    """The model's loss on ``batch`` (model inputs plus ``labels`` or QA positions), dropout on."""
    out = model(dict(batch), training=training)
    if out.loss is None:
        raise ValueError("the batch has no labels (or start_positions/end_positions): no loss to train on")
    return out.loss


def train_step(
    model, optimizer: keras.optimizers.Optimizer, batch: Mapping, accum_steps: int = 1, loss: Callable = loss_fn
):
    """One optimiser update on ``batch`` (eager ``tf.GradientTape``); gradients averaged over ``accum_steps``.

    Returns:
        The loss before the update (mean over micro-batches).
    """
    batch = {k: tf.convert_to_tensor(v) for k, v in batch.items()}
    for name, x in batch.items():
        if x.shape[0] % accum_steps:
            raise ValueError(f"batch axis of {name!r} ({x.shape[0]}) is not divisible by accum_steps={accum_steps}")
    variables = model.trainable_variables
    total, grads = tf.zeros((), tf.float32), [None] * len(variables)
    for i in range(accum_steps):
        size = next(iter(batch.values())).shape[0] // accum_steps
        mb = {k: v[i * size : (i + 1) * size] for k, v in batch.items()}
        with tf.GradientTape() as tape:
            value = tf.cast(loss(model, mb), tf.float32) / accum_steps
        for j, g in enumerate(tape.gradient(value, variables)):
            if g is not None:
                g = tf.convert_to_tensor(g)  # embedding gradients come as IndexedSlices
                grads[j] = g if grads[j] is None else grads[j] + g
        total += value
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
    return total


def eval_step(model, batch: Mapping):
    """The model's output on ``batch`` with dropout off (loss included when the batch has labels)."""
    return model(dict(batch), training=False)


# ------------------------------------------------------------------- fine-tuning on global batches
LABEL_KEYS = ("labels", "start_positions", "end_positions")
_COUNTS = "_counts"  # (rows, 2) float32 added to each shard: the GLOBAL counts its loss parts divide by
_MULTI_WORKER: list[tf.distribute.Strategy] = []  # the MultiWorkerMirroredStrategy, made once at startup


def _tf_config() -> dict | None:
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not JSON ({exc}); see the MultiWorkerMirroredStrategy documentation") from None
    if not isinstance(config, dict) or "cluster" not in config or "task" not in config:
        raise ValueError(
            'TF_CONFIG needs "cluster" and "task", e.g. '
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        )
    return config


def is_main_process() -> bool:
    """Whether this process is the chief: True without ``TF_CONFIG``; else the ``chief`` task, or worker 0
    when the cluster has no chief. Only the chief logs and writes."""
    config = _tf_config()
    if config is None:
        return True
    task = config["task"]
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and not config["cluster"].get("chief")


def _runtime_started() -> bool:
    from tensorflow.python.eager import context  # no public API tells whether the eager context exists

    return getattr(context.context(), "_context_handle", None) is not None


def _multi_worker_strategy() -> tf.distribute.Strategy:
    """The process's ``MultiWorkerMirroredStrategy`` (made on the first call, which must precede TF's start)."""
    if not _MULTI_WORKER:
        if _runtime_started():
            raise RuntimeError(
                "TF_CONFIG is set, but TensorFlow has started already: MultiWorkerMirroredStrategy must configure "
                "its collectives at program startup. Call distilbert.tf.training.configure_devices() first thing in "
                "the program, before any TensorFlow op or model is made"
            )
        _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
    return _MULTI_WORKER[0]


def configure_devices(n: int | None = None) -> None:
    """Prepares TensorFlow for :func:`finetune`'s ``devices=n``; call it first thing, before TensorFlow starts.

    With ``TF_CONFIG`` set it makes the ``MultiWorkerMirroredStrategy`` now (its collectives must be
    configured at program startup) and ``n`` must be None or 1. Else, when there are fewer than ``n``
    GPUs, it splits the CPU into ``n`` logical devices for ``MirroredStrategy``.

    Raises:
        RuntimeError: TensorFlow has initialised its runtime already (and lacks the devices).
        ValueError: ``n`` below 1, or ``n > 1`` together with ``TF_CONFIG``.
    """
    if n is not None and n < 1:
        raise ValueError(f"configure_devices needs a device count of at least 1, got {n}")
    if _tf_config() is not None:
        if n not in (None, 1):
            raise ValueError(
                f"devices={n} with TF_CONFIG: MultiWorkerMirroredStrategy uses every GPU of each worker (or its "
                "CPU); leave devices unset and start one process per worker"
            )
        _multi_worker_strategy()
        return
    if n is None or n == 1 or len(tf.config.list_physical_devices("GPU")) >= n:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) >= n:
            return
        raise RuntimeError(
            f"configure_devices({n}) came after TensorFlow initialised its runtime with "
            f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s): call it first thing in the program, "
            "before any TensorFlow op or model is made"
        ) from None


def _strategy(devices: int | None) -> tf.distribute.Strategy | None:
    """None (one process, one device), a MirroredStrategy over ``devices``, or the multi-worker strategy."""
    if devices is not None and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise ValueError(f"devices must be a positive integer or None, got {devices!r}")
    if _tf_config() is not None:
        if devices not in (None, 1):
            raise ValueError(
                f"devices={devices} with TF_CONFIG: MultiWorkerMirroredStrategy uses every GPU of each worker (or "
                "its CPU); leave devices unset and start one process per worker"
            )
        return _multi_worker_strategy()
    if devices is None or devices == 1:
        return None
    gpus, cpus = tf.config.list_logical_devices("GPU"), tf.config.list_logical_devices("CPU")
    chosen = gpus if len(gpus) >= devices else cpus
    if len(chosen) < devices:
        raise ValueError(
            f"devices={devices}, but TensorFlow sees {len(gpus)} GPU(s) and {len(cpus)} CPU device(s): call "
            f"distilbert.tf.training.configure_devices({devices}) first thing in the program, before TensorFlow starts"
        )
    return tf.distribute.MirroredStrategy([d.name for d in chosen[:devices]])


def _replicas(strategy) -> tuple[list[int], int]:
    """The global indices of this process's replicas (in the order the strategy feeds them) and their total."""
    if strategy is None:
        return [0], 1
    total, local = strategy.num_replicas_in_sync, len(strategy.extended.worker_devices)
    worker = 0
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type is not None:
        has_chief = bool(resolver.cluster_spec().as_dict().get("chief"))
        worker = 0 if resolver.task_type == "chief" else int(resolver.task_id) + has_chief
    return [worker * local + j for j in range(local)], total


def _info(array: np.ndarray) -> validation.ArrayInfo:
    array = np.asarray(array)
    integer = array.dtype.kind in "iu" and array.size
    lo, hi = (int(array.min()), int(array.max())) if integer else (None, None)
    return validation.ArrayInfo(array.shape, array.dtype.kind, array.dtype.name, lo, hi)


def _loss_kind(net, batch: Mapping[str, np.ndarray]) -> str:
    """The task, or for sequence classification its ``problem_type``: what :func:`_shard_loss` computes."""
    if net.task != "sequence_classification":
        return net.task
    labels = np.asarray(batch["labels"])
    return problem_type_for(net.config.problem_type, net.config.num_labels, labels.dtype.kind in "iu")


def _prepare(net, batch: Mapping[str, np.ndarray], step: int, world: int) -> dict[str, np.ndarray]:
    """Checks a global batch and adds the global counts that every replica's loss divides by."""
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise ValueError(f"global batch {step} must be a dict of numpy arrays with input_ids (and the labels)")
    batch = {name: np.asarray(array) for name, array in batch.items() if array is not None}
    wanted = ("start_positions", "end_positions") if net.task == "question_answering" else ("labels",)
    missing = [name for name in wanted if name not in batch]
    if net.task == "base" or missing:
        names = " and ".join(missing or wanted)
        raise ValueError(f"global batch {step} has no {names}: nothing to train {type(net).__name__} on")
    rows = {name: len(array) if array.ndim else 0 for name, array in batch.items()}
    if len(set(rows.values())) != 1:
        raise ValueError(f"the arrays of global batch {step} have different numbers of rows: {rows}")
    if rows["input_ids"] % world:
        raise ValueError(
            f"global batch {step} has {rows['input_ids']} rows, which do not split over {world} replicas: "
            f"pick a batch size divisible by {world}"
        )
    rank = 3 if net.task == "multiple_choice" else 2
    infos = {name: _info(batch[name]) for name in batch if name not in LABEL_KEYS}
    shape = validation.check_inputs(net.config, rank=rank, **infos)
    validation.check_labels(net.config, net.task, shape, **{k: _info(batch[k]) for k in LABEL_KEYS if k in batch})
    if _loss_kind(net, batch) in ("regression", "multi_label_classification"):
        counts = [batch["labels"].size] * 2  # a mean over every label value
    else:  # (start, end) for QA, else one count twice
        counts = (list(loss_counts(net.task, batch).values()) * 2)[:2]
    # No labelled token in the whole batch: a loss and gradient of 0 (the model's own mean would be NaN).
    batch[_COUNTS] = np.tile(np.maximum(np.asarray(counts, np.float32), 1.0), (rows["input_ids"], 1))
    return batch


def _summed_ce(logits, labels, ignore):
    """Sum of the cross-entropies of ``(N, C)`` logits against ``(N,)`` labels, ``ignore`` skipped."""
    labels = tf.cast(labels, tf.int32)
    keep = tf.not_equal(labels, ignore)
    per_item = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(keep, labels, tf.zeros_like(labels)), logits=tf.cast(logits, tf.float32)
    )  # (N,)
    return tf.reduce_sum(tf.where(keep, per_item, tf.zeros_like(per_item)))


def _shard_loss(kind: str, out, batch):
    """This replica's share of the global-batch loss: its summed per-item losses / the global counts.

    Summed over the replicas it is :mod:`distilbert.common.losses`'s loss of the global batch, so the
    summed gradients are the 1-process gradient (never a mean of per-replica means).
    """
    counts = batch[_COUNTS][0]  # (2,)
    if kind == "question_answering":
        length = tf.shape(out.start_logits)[1]

        def part(logits, positions, count):
            positions = tf.clip_by_value(tf.cast(tf.reshape(positions, (-1,)), tf.int32), 0, length)
            return _summed_ce(logits, positions, length) / count

        start = part(out.start_logits, batch["start_positions"], counts[0])
        return (start + part(out.end_logits, batch["end_positions"], counts[1])) / 2
    logits, labels = tf.cast(out.logits, tf.float32), batch["labels"]
    if kind == "regression":
        diff = tf.reshape(logits, (-1,)) - tf.reshape(tf.cast(labels, tf.float32), (-1,))
        return tf.reduce_sum(diff * diff) / counts[0]
    if kind == "multi_label_classification":
        loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32), logits=logits)
        return tf.reduce_sum(loss) / counts[0]
    classes = tf.shape(logits)[-1]
    return _summed_ce(tf.reshape(logits, (-1, classes)), tf.reshape(labels, (-1,)), IGNORE_INDEX) / counts[0]


class _Finetuner(keras.Model):
    """Wraps a DistilBERT head for ``fit``: the global-batch loss, gradients all-reduced, then clipped.

    Keras's own step would not do: its optimiser clips each replica's gradient *before* summing them
    over the replicas (``global_clipnorm`` would clip the wrong norm), and a head's own loss is a mean
    over the replica's shard. Here each replica sums its items' losses over the global count, the
    gradients are summed over the replicas first and clipped by their global norm, and the optimiser
    gets them from replica 0 only (zeros from the others) because it sums over the replicas again.
    """

    def __init__(self, net, kind: str, max_grad_norm: float | None):
        super().__init__(name="finetuner")
        self.net, self.kind, self.max_grad_norm = net, kind, max_grad_norm or None
        self.built = True  # the net is built; no symbolic build (it would cast the ids to floats)

    def call(self, inputs, training=False):
        return self.net({k: v for k, v in inputs.items() if k not in (*LABEL_KEYS, _COUNTS)}, training=training)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras's fit (TF backend, under a strategy) draws a batch and all-reduces it to build the model
        # symbolically; the net and the optimiser are built already, and MultiWorkerMirroredStrategy cannot
        # reduce a dict of per-replica arrays, so there is nothing to do.
        return None

    def train_step(self, data):
        batch, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.net.trainable_variables
        with tf.GradientTape() as tape:
            loss = _shard_loss(self.kind, self.call(batch, training=True), batch)
        grads = [  # embedding gradients come as IndexedSlices; a variable the loss does not use gets zeros
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(tape.gradient(loss, variables), variables)
        ]
        context = tf.distribute.get_replica_context()
        if self.max_grad_norm is None:  # the optimiser's own all-reduce sums the replicas' gradients
            self.optimizer.apply(grads, variables)
            return self._logs(context.all_reduce(tf.distribute.ReduceOp.SUM, loss))
        loss, *grads = context.all_reduce(tf.distribute.ReduceOp.SUM, [loss, *grads])
        grads, _ = tf.clip_by_global_norm(grads, self.max_grad_norm)
        first = tf.cast(tf.equal(context.replica_id_in_sync_group, 0), tf.float32)
        self.optimizer.apply([g * tf.cast(first, g.dtype) for g in grads], variables)
        return self._logs(loss)

    @staticmethod
    def _logs(loss):
        # (1,), not a scalar: with several workers Keras averages the replicas' logs along axis 0. Every
        # replica holds the same all-reduced loss, so that mean is the loss.
        return {"loss": tf.reshape(loss, (1,))}


def training_state(model, optimizer: keras.optimizers.Optimizer) -> dict[str, np.ndarray]:
    """What resuming needs exactly: the optimiser's variables (update count, moments) and the model's
    non-trainable ones (dropout seed states), as numpy arrays (``optimizer/i``, ``rng/i``)."""
    state = {f"optimizer/{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)}
    state.update({f"rng/{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.non_trainable_variables)})
    return state


def load_training_state(model, optimizer: keras.optimizers.Optimizer, state: Mapping[str, np.ndarray]) -> None:
    """Restores :func:`training_state` into ``optimizer`` (built here on ``model``) and ``model``."""
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    for prefix, variables in (("optimizer", optimizer.variables), ("rng", model.non_trainable_variables)):
        saved = sorted((int(k.split("/")[1]), v) for k, v in state.items() if k.startswith(prefix + "/"))
        if len(saved) != len(variables) or any(
            tuple(np.shape(value)) != tuple(v.shape) for (_, value), v in zip(saved, variables)
        ):
            raise ValueError(
                f"the training state holds {len(saved)} {prefix} arrays that do not fit this {type(model).__name__}'s "
                f"{len(variables)}: was it saved from another model or optimiser?"
            )
        for (_, value), variable in zip(saved, variables):
            variable.assign(value)


def _copy_weights(source, target) -> None:
    """``source``'s weights and seed states into ``target`` (another object of the same class)."""
    target.load_canonical_state(source.canonical_state())
    if len(source.non_trainable_variables) == len(target.non_trainable_variables):
        for a, b in zip(source.non_trainable_variables, target.non_trainable_variables):
            b.assign(keras.ops.convert_to_numpy(a))


def _from_chief(strategy, variables) -> None:
    """Every worker takes worker 0's values (a new head may be initialised differently per process)."""
    floats = [v for v in variables if v.dtype in ("float16", "bfloat16", "float32", "float64")]

    @tf.function
    def gather():
        def replica():
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group, 0)
            values = [tf.where(first, v.value, tf.zeros_like(v.value)) for v in floats]
            return context.all_reduce(tf.distribute.ReduceOp.SUM, values)

        return strategy.run(replica)

    for variable, value in zip(floats, gather()):
        variable.assign(strategy.experimental_local_results(value)[0])


class _Steps(keras.callbacks.Callback):
    """Calls ``on_step`` and (every ``save_every`` steps) ``on_save`` on the chief only."""

    def __init__(self, start, examples, on_step, save_every, on_save, net, model, optimizer):
        super().__init__()
        self.start, self.examples, self.on_step = start, examples, on_step
        self.save_every, self.on_save, self.net, self.model_, self.opt = save_every, on_save, net, model, optimizer
        self.main = is_main_process()

    def on_train_batch_end(self, batch, logs=None):
        step = self.start + batch + 1
        if not self.main:
            return
        if self.on_step is not None:
            loss = float(np.asarray(logs["loss"]).reshape(-1)[0])
            self.on_step(step, {"loss": loss, "examples": self.examples})
        if self.save_every and self.on_save is not None and step % self.save_every == 0:
            if self.net is not self.model_:  # the caller saves the model it passed: give it this step's weights
                _copy_weights(self.net, self.model_)
            self.on_save(step, training_state(self.net, self.opt))


def finetune(
    model,
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
):
    """Fine-tunes a DistilBERT head on global batches with Keras ``fit``, in one process or on ``tf.distribute``.

    Step k trains on ``batches[k]`` with :func:`adamw_with_warmup`'s AdamW (betas 0.9/0.999, eps 1e-8,
    decoupled weight decay on kernels and embeddings only) at the linear schedule's rate for k
    (:func:`~distilbert.common.distillation.learning_rate_at`). The loss is the head's loss of the whole
    global batch (means over its examples, or over its labelled tokens), whatever the number of
    replicas: each replica sums its shard's per-item losses and divides by the global batch's count,
    and the gradients are summed over the replicas, then clipped by their global norm.

    ``devices=N`` trains on a ``MirroredStrategy`` over N GPUs, or N logical CPU devices when there are
    fewer GPUs (:func:`configure_devices` must make them before TensorFlow starts); ``TF_CONFIG`` in
    the environment selects ``MultiWorkerMirroredStrategy`` (call :func:`configure_devices` first
    thing in every worker), each worker feeding its rows of every global batch and starting from
    worker 0's weights. Under a strategy the model is rebuilt inside ``strategy.scope()``; the
    trained weights go back into ``model``.

    Args:
        model: A DistilBERT head model of this backend (its dropout as configured is used).
        batches: The global batches (dicts of numpy arrays: inputs and labels); ``len(batches)`` is the
            total number of steps. Every one must have a number of rows divisible by the replicas.
        learning_rate: The peak learning rate.
        weight_decay: AdamW's decoupled weight decay (never on biases and LayerNorms).
        warmup_steps: Steps of linear warm-up from 0; then linear decay to 0 at ``len(batches)``.
        max_grad_norm: Clips the global gradient's norm to this (None or 0: no clipping).
        start_step: Steps already made (resuming): ``batches[start_step:]`` remain.
        state: A :func:`training_state` dict to resume from (optimiser moments, seeds).
        on_step: ``on_step(step, {"loss", "examples"})`` after each step (1-based), on the chief only.
        save_every: Calls ``on_save`` every this many steps (0: never).
        on_save: ``on_save(step, training_state)`` on the chief only; ``model`` holds the step's weights.
        devices: Replicas on this machine (None: one process, one device).
        fsdp: Not available: ``tf.distribute`` has no fully sharded data parallelism.

    Returns:
        ``model``, trained: an ordinary Keras model of its class (not tied to a strategy), ready for
        ``save_pretrained``.

    Raises:
        ValueError: ``fsdp=True``, a bad batch (missing labels, wrong shapes, ids or labels out of range,
            rows not divisible by the replicas), a ``state`` from another model, a bad ``devices``.
        RuntimeError: the devices or the multi-worker strategy were asked for after TensorFlow started.
    """
    if fsdp:
        raise ValueError(
            "fsdp=True: tf.distribute has no FSDP (fully sharded data parallelism); TensorFlow trains "
            "data-parallel (devices=N or TF_CONFIG). Use --framework pt or flax for FSDP"
        )
    total = len(batches)
    if not 0 <= start_step <= total:
        raise ValueError(f"start_step={start_step} is outside the {total} steps of the batches")
    if save_every < 0:
        raise ValueError(f"save_every must be 0 (never) or positive, got {save_every}")
    strategy = _strategy(devices)
    local, world = _replicas(strategy)
    if start_step == total:
        return model
    first = _prepare(model, batches[start_step], start_step, world)
    kind = _loss_kind(model, first)
    examples = len(first["input_ids"])
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        net = model
        if strategy is not None:  # variables made in the scope are mirrored over the replicas
            net = type(model)(model.config, dtype=model.dtype_policy)
            _copy_weights(model, net)
        optimizer = adamw_with_warmup(learning_rate, total, warmup_steps, weight_decay, max_grad_norm=None)
        optimizer.build(net.trainable_variables)
        if state is not None:
            load_training_state(net, optimizer, state)
            done = int(keras.ops.convert_to_numpy(optimizer.iterations))
            if done != start_step:
                raise ValueError(f"the training state was saved after {done} steps, but start_step={start_step}")
        else:
            optimizer.iterations.assign(start_step)  # the schedule goes on from start_step
        trainer = _Finetuner(net, kind, max_grad_norm)
        trainer.compile(optimizer=optimizer, jit_compile=False)
    if world > len(local):  # several workers
        _from_chief(strategy, [*net.trainable_variables, *optimizer.variables])

    failures: list[Exception] = []

    def per_replica():  # each of this process's replicas gets its rows of every global batch, in turn
        for k in range(start_step, total):
            try:
                batch = first if k == start_step else _prepare(model, batches[k], k, world)
            except (ValueError, TypeError) as exc:  # tf.data would bury it in an InvalidArgumentError
                failures.append(exc)
                raise
            for replica in local:
                yield shard(batch, replica, world)

    signature = {name: tf.TensorSpec((None,) * array.ndim, tf.as_dtype(array.dtype)) for name, array in first.items()}

    def dataset(_context=None):
        return tf.data.Dataset.from_generator(per_replica, output_signature=signature)

    data = dataset() if strategy is None else strategy.distribute_datasets_from_function(dataset)
    steps = _Steps(start_step, examples, on_step, save_every, on_save, net, model, optimizer)
    try:
        trainer.fit(data, steps_per_epoch=total - start_step, epochs=1, verbose=0, shuffle=False, callbacks=[steps])
    except Exception:
        if failures:
            raise failures[0] from None
        raise
    if net is not model:
        _copy_weights(net, model)
    return model
