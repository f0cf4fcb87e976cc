"""Flax NNX backend vs transformers 4.57.6's Flax classes: inference and a training step, same run.

distilbert-base size with random weights (no downloads), batch 8 x 128, on the default JAX device:

- inference under ``jax.jit``: float32, and bfloat16 compute over float32 parameters
  (``dtype=jnp.bfloat16``; the reference's ``dtype`` argument means the same);
- a jitted training step (sequence classification, AdamW, dropout on, float32 parameters; float32
  and bfloat16 compute): ours through the functional ``nnx.split`` + ``jax.jit`` path
  (:func:`distilbert.flax.training.make_train_step`) and through ``nnx.jit`` + ``nnx.Optimizer``;
  the reference through ``jax.jit`` over its params.

Median of several runs after warm-up (``block_until_ready``), in tokens per second.

Usage:
    python benchmarks/bench_flax.py [--runs 10] [--batch 8] [--seq 128] [--layers 6] [--plot out.png]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("USE_TF", "0")  # the reference's Flax classes need neither TF nor torch here
os.environ.setdefault("USE_TORCH", "0")

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from distilbert import DistilBertConfig
from distilbert.common.checkpoint import init_state
from distilbert.flax import FlaxDistilBertForSequenceClassification, FlaxDistilBertModel, load_canonical_state
from distilbert.flax.training import functional_state, make_train_step, train_step


def timed(fns, runs: int, warmup: int = 2) -> list[float]:
    """Median seconds of each ``fn()`` (which must block until its result is ready).

    The functions run in turn, round after round, so that they all see the same machine load.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(runs):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - start)
    return [statistics.median(ts) for ts in times]


def reference_flax(task_class: str, config: DistilBertConfig, dtype):
    import transformers

    hf = transformers.DistilBertConfig.from_dict(config.to_dict())
    return getattr(transformers, task_class)(hf, dtype=dtype, seed=0)


def time_training(config: DistilBertConfig, batch, dtype, runs: int) -> list[float]:
    """Seconds per AdamW step (sequence classification, dropout on, float32 parameters, ``dtype`` compute):
    ours functional, ours nnx.jit, reference."""
    tx = optax.adamw(2e-5)
    model = FlaxDistilBertForSequenceClassification(config, dtype=dtype, rngs=nnx.Rngs(params=0, dropout=1))
    graphdef, state = functional_state(model, tx)
    step = make_train_step(graphdef, tx)
    holder = {"state": state}

    def run_functional():
        holder["state"], loss = step(holder["state"], batch)
        loss.block_until_ready()

    model = FlaxDistilBertForSequenceClassification(config, dtype=dtype, rngs=nnx.Rngs(params=0, dropout=1))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    ref = reference_flax("FlaxDistilBertForSequenceClassification", config, dtype)

    def ref_loss(params, batch, dropout_rng):
        logits = ref(
            batch["input_ids"], batch["attention_mask"], params=params, dropout_rng=dropout_rng, train=True
        ).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["labels"]).mean()

    @jax.jit
    def ref_step(params, opt_state, batch, key):
        key, dropout_rng = jax.random.split(key)
        loss, grads = jax.value_and_grad(ref_loss)(params, batch, dropout_rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, key, loss

    ref_holder = {"p": ref.params, "o": tx.init(ref.params), "k": jax.random.key(0)}

    def run_ref():
        h = ref_holder
        h["p"], h["o"], h["k"], loss = ref_step(h["p"], h["o"], batch, h["k"])
        loss.block_until_ready()

    return timed([run_functional, lambda: train_step(model, optimizer, batch).block_until_ready(), run_ref], runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--plot", help="write a bar chart of the ratios to this PNG")
    args = parser.parse_args()

    config = DistilBertConfig(n_layers=args.layers)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(1, config.vocab_size, (args.batch, args.seq)), jnp.int32)
    mask = np.ones((args.batch, args.seq), np.int32)
    mask[1::2, args.seq * 3 // 4 :] = 0  # half the rows padded
    mask = jnp.asarray(mask)
    labels = jnp.asarray(rng.integers(0, 2, (args.batch,)), jnp.int32)
    tokens = args.batch * args.seq
    rows = []

    print(
        f"device: {jax.devices()[0]}, jax {jax.__version__}, batch {args.batch} x {args.seq}, "
        f"{args.layers} layers, median of {args.runs}"
    )
    base_state = init_state(config, "base", seed=0)
    for name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
        ours = FlaxDistilBertModel(config, dtype=dtype)
        load_canonical_state(ours, base_state)
        graphdef, state = nnx.split(ours)
        ours_fn = jax.jit(lambda s, i, m: nnx.merge(graphdef, s)(i, m).last_hidden_state)
        ref = reference_flax("FlaxDistilBertModel", config, dtype)
        ref_fn = jax.jit(lambda p, i, m: ref(i, m, params=p).last_hidden_state)
        t_ours, t_ref = timed(
            [
                lambda: ours_fn(state, ids, mask).block_until_ready(),
                lambda: ref_fn(ref.params, ids, mask).block_until_ready(),
            ],
            args.runs,
        )
        rows.append((f"inference {name}", tokens / t_ours, tokens / t_ref))
        print(rows[-1], flush=True)

    if not args.skip_train:
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        for name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
            t_fun, t_nnx, t_ref = time_training(config, batch, dtype, args.runs)
            rows.append((f"train step {name} (split/merge + jax.jit)", tokens / t_fun, tokens / t_ref))
            rows.append((f"train step {name} (nnx.jit + nnx.Optimizer)", tokens / t_nnx, tokens / t_ref))
            print(*rows[-2:], sep="\n", flush=True)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'workload':<{width}}  {'ours tok/s':>11}  {'reference tok/s':>15}  {'ratio':>6}")
    for name, ours_tps, ref_tps in rows:
        print(f"{name:<{width}}  {ours_tps:>11,.0f}  {ref_tps:>15,.0f}  {ours_tps / ref_tps:>5.2f}x")
    if args.plot:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3))
        ax.barh([r[0] for r in rows], [r[1] / r[2] for r in rows])
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xlabel("ours / transformers 4.57.6 Flax (tokens/s ratio)")
        fig.tight_layout()
        fig.savefig(args.plot)


if __name__ == "__main__":
    main()
