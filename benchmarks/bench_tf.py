"""TF/Keras 3 backend vs transformers 4.57.6's TF classes (tf-keras) vs KerasHub, on CPU, in one run.

distilbert-base size with random weights (no downloads), batch 8 x 128 tokens padded as a tokenizer
pads (row lengths 128 down to 72), float32. Ours and the reference hold the same weights and their
outputs are checked against each other before timing; KerasHub's ``DistilBertBackbone`` has the
same architecture and sizes with its own random weights. The implementations run alternately, so
that load from other processes hits all alike; each figure is the median of ``--repeats`` runs
after ``--warmup`` runs.

Rows:
- inference, ``tf.function`` graph and XLA (``jit_compile=True``), the bare encoder;
- one training step of sequence classification with ``model.fit`` (Adam, default dropout):
  ours and the reference train on their own loss (labels in the input dict), KerasHub's
  ``DistilBertTextClassifier`` on a compiled sparse cross-entropy; the time per step is measured
  by a callback around each batch; the models take turns, a few steps each, so that load from other
  processes hits all alike. ``--train-xla`` adds the same with ``compile(jit_compile=True)``.

Usage::

    python benchmarks/bench_tf.py [--repeats 10] [--warmup 3] [--train-rounds 4] [--steps-per-round 2]
                                  [--train-xla] [--skip-inference] [--skip-training] [--plot out.png]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("USE_TORCH", "0")

import keras  # noqa: E402  (Keras 3; the reference imports tf_keras on its own)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from distilbert import DistilBertConfig  # noqa: E402
from distilbert.common.checkpoint import save_state  # noqa: E402
from distilbert.tf import TFDistilBertForSequenceClassification, TFDistilBertModel  # noqa: E402

BATCH, SEQ = 8, 128
TOKENS = BATCH * SEQ


def make_inputs(vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, (BATCH, SEQ)).astype(np.int32)
    mask = np.ones((BATCH, SEQ), np.int32)
    for i in range(BATCH):
        n = SEQ - 8 * i  # 128, 120, ..., 72 real tokens
        mask[i, n:] = 0
        ids[i, n:] = 0
    return ids, mask


def reference(cls_name: str, ours, config: DistilBertConfig, task: str):
    """The reference TF class holding our model's weights (through a tf_model.h5)."""
    import transformers

    with tempfile.TemporaryDirectory() as directory:
        save_state(directory, ours.canonical_state(), config, task, framework="tf", weight_format="tf")
        return getattr(transformers, cls_name).from_pretrained(directory)


def keras_hub_backbone(config: DistilBertConfig):
    try:
        import keras_hub
    except ImportError:
        return None, "keras-hub not installed (pip install keras-hub)"
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=config.vocab_size,
        num_layers=config.n_layers,
        num_heads=config.n_heads,
        hidden_dim=config.dim,
        intermediate_dim=config.hidden_dim,
        dropout=config.dropout,
        max_sequence_length=config.max_position_embeddings,
    )
    return backbone, f"keras-hub {keras_hub.__version__}"


def time_interleaved(fns: dict, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each function, the functions taking turns."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def inference_rows(config, repeats, warmup):
    ids, mask = make_inputs(config.vocab_size)
    ids_t, mask_t = tf.constant(ids), tf.constant(mask)
    ours = TFDistilBertModel(config)
    ref = reference("TFDistilBertModel", ours, config, "base")
    hub, hub_note = keras_hub_backbone(config)

    def fn(call, xla):
        compiled = tf.function(call, jit_compile=xla)
        return lambda: compiled(ids_t, mask_t).numpy()

    calls = {
        "ours": lambda i, m: ours(i, attention_mask=m).last_hidden_state,
        "transformers TF": lambda i, m: ref(i, attention_mask=m, training=False).last_hidden_state,
    }
    if hub is not None:
        calls["KerasHub"] = lambda i, m: hub({"token_ids": i, "padding_mask": m}, training=False)
    # Same weights, same numbers (graph mode) before any timing.
    got = tf.function(calls["ours"])(ids_t, mask_t).numpy()
    want = tf.function(calls["transformers TF"])(ids_t, mask_t).numpy()
    diff = float(np.abs(got - want).max())
    assert diff < 1e-4, f"ours and the reference disagree: max abs diff {diff}"
    rows = {}
    for xla in (False, True):
        label = "inference XLA" if xla else "inference graph"
        print(f"timing {label} ...", file=sys.stderr, flush=True)
        rows[label] = time_interleaved({k: fn(c, xla) for k, c in calls.items()}, repeats, warmup)
    return rows, hub_note, diff


class StepTimer:
    """Seconds of each training batch (``begin``/``end`` hooked into a Keras or tf-keras callback)."""

    def __init__(self):
        self.times, self._start = [], None

    def begin(self):
        self._start = time.perf_counter()

    def end(self):
        self.times.append(time.perf_counter() - self._start)


def timer_callback(base, timer: StepTimer):
    return type(
        "Timer",
        (base,),
        {
            "on_train_batch_begin": lambda self, b, logs=None: timer.begin(),
            "on_train_batch_end": lambda self, b, logs=None: timer.end(),
        },
    )()


def training_rows(config, rounds, steps_per_round, xla):
    """Median seconds per ``fit`` step; the models take turns, ``steps_per_round`` steps each.

    The first round of each model (tracing, optimizer slots) is warm-up and not counted.
    """
    ids, mask = make_inputs(config.vocab_size)
    labels = (np.arange(BATCH) % 2).astype(np.int32)
    k = steps_per_round
    x = {"input_ids": np.tile(ids, (k, 1)), "attention_mask": np.tile(mask, (k, 1))}
    y = np.tile(labels, k)
    fits = {}

    ours = TFDistilBertForSequenceClassification(config)
    ours.compile(optimizer=keras.optimizers.Adam(1e-5), jit_compile=xla)
    fits["ours"] = (
        lambda cb: ours.fit(dict(x, labels=y), batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[cb]),
        keras.callbacks.Callback,
    )

    import tf_keras

    ref = reference("TFDistilBertForSequenceClassification", ours, config, "sequence_classification")
    ref.compile(optimizer=tf_keras.optimizers.Adam(1e-5), jit_compile=xla)
    fits["transformers TF"] = (
        lambda cb: ref.fit(dict(x, labels=y), batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[cb]),
        tf_keras.callbacks.Callback,
    )

    backbone, _ = keras_hub_backbone(config)
    if backbone is not None:
        import keras_hub

        hub = keras_hub.models.DistilBertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
        hub.compile(
            optimizer=keras.optimizers.Adam(1e-5),
            jit_compile=xla,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        hub_x = {"token_ids": x["input_ids"], "padding_mask": x["attention_mask"]}
        fits["KerasHub"] = (
            lambda cb: hub.fit(hub_x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[cb]),
            keras.callbacks.Callback,
        )
    timers = {name: StepTimer() for name in fits}
    for r in range(rounds + 1):
        print(f"timing training ({'XLA' if xla else 'graph'}) round {r}/{rounds} ...", file=sys.stderr, flush=True)
        for name, (fit, callback_base) in fits.items():
            if r == 0:  # warm-up
                fit(callback_base())
            else:
                fit(timer_callback(callback_base, timers[name]))
    return {name: statistics.median(timer.times) for name, timer in timers.items()}


def print_table(rows: dict[str, dict[str, float]]) -> None:
    names = list(next(iter(rows.values())))
    header = f"{'workload':<22}" + "".join(f"{n + ' tok/s':>22}" for n in names) + f"{'ours / best peer':>18}"
    print(header)
    print("-" * len(header))
    for label, times in rows.items():
        speeds = {n: TOKENS / t for n, t in times.items()}
        peers = [s for n, s in speeds.items() if n != "ours"]
        ratio = speeds["ours"] / max(peers) if peers else float("nan")
        print(f"{label:<22}" + "".join(f"{speeds[n]:>22,.0f}" for n in names) + f"{ratio:>17.2f}x")


def plot(rows, path):
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed; no plot written to {path}", file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, names = list(rows), list(next(iter(rows.values())))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, name in enumerate(names):
        ax.bar([j + i * width for j in range(len(labels))], [TOKENS / rows[l][name] for l in labels], width, label=name)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(labels))], labels)
    ax.set_ylabel("tokens / s")
    ax.set_title(f"DistilBERT-base, batch {BATCH} x {SEQ}, float32, CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--train-rounds", type=int, default=4, help="training rounds after one warm-up round")
    parser.add_argument("--steps-per-round", type=int, default=2)
    parser.add_argument("--train-xla", action="store_true", help="also time fit with jit_compile=True")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--plot", help="write a bar chart PNG here")
    args = parser.parse_args(argv)

    config = DistilBertConfig()
    rows, hub_note, diff = {}, keras_hub_backbone(config)[1], float("nan")
    if not args.skip_inference:
        rows, hub_note, diff = inference_rows(config, args.repeats, args.warmup)
    if not args.skip_training:
        rows["training fit"] = training_rows(config, args.train_rounds, args.steps_per_round, xla=False)
        if args.train_xla:
            rows["training fit XLA"] = training_rows(config, args.train_rounds, args.steps_per_round, xla=True)
    print(
        f"\nDistilBERT-base, batch {BATCH} x {SEQ} (padded), float32, TF {tf.__version__}, Keras {keras.__version__}, "
        f"{hub_note}, {os.cpu_count()} CPUs; ours vs reference max abs diff {diff:.1e}"
    )
    print(
        f"median of {args.repeats} runs after {args.warmup} warm-up runs "
        f"(training: median of {args.train_rounds} x {args.steps_per_round} fit steps, taking turns, "
        "after a warm-up round)\n"
    )
    print_table(rows)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
