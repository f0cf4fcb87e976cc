"""CPU time of one sequence-classification training step with and without the first-token-only last block.

The classifier heads compute their last block for the first token alone (``first_token_only``, see the
backends' ``Transformer``). This times one training step of distilbert-base
``DistilBertForSequenceClassification`` (random weights, float32, padded as ``bench_train.make_batch``
pads) with the pruning on and off (the same model class, the attribute switched), in each framework's own
process, on one thread, as process CPU time (the machine may be shared: CPU time is what load disturbs
least). The two variants run in turns, ``--steps`` steps a run; the figure is the median of ``--repeats``
runs after a warm-up, and the ratio the median of the paired ratios (off / on > 1: pruning is faster).

Usage::

    python benchmarks/bench_first_token.py [--frameworks pt,tf,flax] [--shape 8x128] [--repeats 4] [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(HERE))

LR, WD, CLIP = 5e-5, 0.01, 1.0


def pt_steps(batch, pruned: bool):
    import torch

    torch.set_num_threads(1)
    from distilbert import DistilBertConfig
    from distilbert.pt import DistilBertForSequenceClassification
    from distilbert.pt.training import adamw_with_warmup, train_step

    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig())
    model.first_token_only = pruned
    opt = adamw_with_warmup(model, LR, 10**6, 0, WD, CLIP)
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}

    def run(steps):
        for _ in range(steps):
            train_step(model, opt, tensors)

    return run


def tf_steps(batch, pruned: bool):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from distilbert import DistilBertConfig
    from distilbert.tf import TFDistilBertForSequenceClassification
    from distilbert.tf.training import adamw_with_warmup

    model = TFDistilBertForSequenceClassification(DistilBertConfig())
    model.first_token_only = pruned
    model.compile(adamw_with_warmup(LR, 10**6, 0, WD, CLIP))
    data = tf.data.Dataset.from_tensors(batch).repeat()

    def run(steps):
        model.fit(data, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)

    return run


def flax_steps(batch, pruned: bool):
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from distilbert import DistilBertConfig
    from distilbert.flax import FlaxDistilBertForSequenceClassification
    from distilbert.flax.training import adamw_with_warmup, train_step

    arrays = {k: jnp.asarray(v.astype(np.int32)) for k, v in batch.items()}
    model = FlaxDistilBertForSequenceClassification(DistilBertConfig())
    model.first_token_only = pruned
    opt = nnx.Optimizer(model, adamw_with_warmup(LR, 10**6, 0, WD, CLIP), wrt=nnx.Param)

    def run(steps):
        for _ in range(steps):
            loss = train_step(model, opt, arrays)
        float(loss)  # wait for the last step

    return run


def child(framework: str, rows: int, seq: int, repeats: int, steps: int) -> dict:
    from bench_train import make_batch
    from tqdm import tqdm

    batch = make_batch(rows, seq)
    runners = {name: globals()[f"{framework}_steps"](batch, name == "pruned") for name in ("pruned", "full")}
    for run in runners.values():
        run(1)  # warm-up: compile, trace, allocate
    times: dict[str, list[float]] = {"pruned": [], "full": []}
    for r in tqdm(range(repeats), desc=f"{framework} {rows}x{seq}", file=sys.stderr):
        for name in ("pruned", "full") if r % 2 == 0 else ("full", "pruned"):
            start = time.process_time()
            runners[name](steps)
            times[name].append((time.process_time() - start) / steps)
    ratios = [f / p for f, p in zip(times["full"], times["pruned"])]
    return {
        "framework": framework,
        "pruned_s": statistics.median(times["pruned"]),
        "full_s": statistics.median(times["full"]),
        "full_over_pruned": statistics.median(ratios),
        "ratio_range": (min(ratios), max(ratios)),
        "runs": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", default="pt,tf,flax")
    parser.add_argument("--shape", default="8x128")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows, seq = (int(n) for n in args.shape.split("x"))
    if args.child:
        print(json.dumps(child(args.child, rows, seq, args.repeats, args.steps)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    print(f"one training step, distilbert-base sequence classification, {args.shape}, 1 thread, CPU seconds")
    print(f"{'framework':<10}{'pruned':>10}{'full':>10}{'full/pruned':>13}{'min..max':>16}")
    for framework in args.frameworks.split(","):
        cmd = [sys.executable, HERE, "--child", framework, "--shape", args.shape]
        cmd += ["--repeats", str(args.repeats), "--steps", str(args.steps)]
        out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        low, high = r["ratio_range"]
        ratio = f"{r['full_over_pruned']:>12.3f}x{low:>9.3f}..{high:.3f}"
        print(f"{framework:<10}{r['pruned_s']:>10.3f}{r['full_s']:>10.3f}{ratio}", flush=True)


if __name__ == "__main__":
    main()
