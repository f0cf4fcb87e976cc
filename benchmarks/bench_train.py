"""Training-step throughput of our three backends against their peers, 1 vs 2 torchrun workers, and memory.

One sequence-classification training step (AdamW, global-norm clipping, dropout as configured), distilbert-base
size with random weights (no downloads), float32 on CPU, padded as a tokenizer pads (row lengths down to 5/8 of
the sequence). Per framework, in its own process (so that their thread pools do not compete):

- ``pt``: ``distilbert.pt.training.train_step`` vs transformers 4.57.6's ``DistilBertForSequenceClassification``
  in a plain PyTorch loop, and KerasHub's ``DistilBertTextClassifier`` under ``fit`` on Keras' torch backend;
- ``tf``: our model under Keras ``compile``/``fit`` vs transformers' ``TFDistilBertForSequenceClassification``
  under tf-keras ``fit``, and KerasHub under ``fit`` on the TensorFlow backend;
- ``flax``: ``distilbert.flax.training.make_train_step`` (``jax.jit``, what ``finetune`` runs) and ``train_step``
  (``nnx.jit``) vs
  transformers' ``FlaxDistilBertForSequenceClassification`` with an optax ``jax.jit`` step, and KerasHub under
  ``fit`` on the JAX backend.

Within a framework the contenders run in turn, in a rotating order, ``--steps`` steps a run, so that load from
other processes hits all alike (a Keras ``fit`` run counts its steps' own time, from a callback:
:func:`step_timer`); tokens/s are medians of ``--repeats`` runs after ``--warmup``, and each peer's ratio is
the median of the paired ratios (ours/peer > 1: ours is faster). Then ``torchrun`` DDP with 1 and
with 2 workers runs ``distilbert.pt.training.finetune`` on the same global batches (the cores split between
the workers).

``--memory`` instead runs one distilbert-base step at a global batch of 32 x 128 under ``torchrun`` with 2
workers, DDP and then FSDP, and prints each worker's peak RSS and the bytes of parameters, gradients and
optimiser state it holds.

Usage::

    python benchmarks/bench_train.py [--frameworks pt,tf,flax] [--shapes 8x128,32x128] [--repeats 5]
        [--steps 2] [--warmup 2] [--layers 6] [--no-scaling] [--json out.json] [--plot out.png]
    python benchmarks/bench_train.py --memory [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
BACKEND = {"pt": "torch", "tf": "tensorflow", "flax": "jax"}  # Keras' backend in each framework's process
LR, WD, CLIP = 5e-5, 0.01, 1.0


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:  # noqa: BLE001 -- only a label
        return platform.processor() or "unknown CPU"


def make_batch(rows: int, seq: int, vocab: int = 30522, seed: int = 0) -> dict[str, np.ndarray]:
    """Random ids, row lengths from ``seq`` down to 5/8 of it (as a tokenizer pads), labels 0/1."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, (rows, seq)).astype(np.int64)
    mask = np.ones((rows, seq), np.int64)
    for i in range(rows):
        n = seq - (i % 8) * seq // 16
        ids[i, n:], mask[i, n:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask, "labels": (np.arange(rows) % 2).astype(np.int64)}


def config_dict(layers: int) -> dict:
    from distilbert import DistilBertConfig

    return DistilBertConfig(n_layers=layers).to_dict()


# ---------------------------------------------------------------------------------------------- contenders
def pt_contenders(batch, layers: int) -> dict:
    import torch
    import transformers

    import distilbert.pt as dpt
    from distilbert import DistilBertConfig
    from distilbert.pt.training import adamw_with_warmup, train_step

    torch.manual_seed(0)
    config = DistilBertConfig.from_dict(config_dict(layers))
    ours = dpt.DistilBertForSequenceClassification(config)
    opt = adamw_with_warmup(ours, LR, 10**6, 0, WD, CLIP)
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}

    hf_config = transformers.DistilBertConfig.from_dict(config.to_dict())
    ref = transformers.DistilBertForSequenceClassification(hf_config)
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    decay = [p for p in ref.parameters() if p.ndim >= 2]
    rest = [p for p in ref.parameters() if p.ndim < 2]
    ref_opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": rest, "weight_decay": 0.0}], lr=LR)
    ref_sched = transformers.get_linear_schedule_with_warmup(ref_opt, 0, 10**6)

    def ours_step():
        return float(train_step(ours, opt, tensors))

    def ref_step():
        ref.train()
        ref_opt.zero_grad(set_to_none=True)
        loss = ref(**tensors).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), CLIP)
        ref_opt.step()
        ref_sched.step()
        return float(loss.detach())

    return {
        "distilbert.pt train_step": ours_step,
        "transformers 4.57.6 PyTorch loop": ref_step,
        "KerasHub fit (torch backend)": kerashub_contender(batch, layers),
    }


def tf_contenders(batch, layers: int) -> dict:
    import keras
    import tensorflow as tf
    import transformers

    import distilbert.tf as dtf
    from distilbert import DistilBertConfig
    from distilbert.tf.training import adamw_with_warmup

    config = DistilBertConfig.from_dict(config_dict(layers))
    ours = dtf.TFDistilBertForSequenceClassification(config)
    ours.compile(adamw_with_warmup(LR, 10**6, 0, WD, CLIP))
    data = tf.data.Dataset.from_tensors(batch).repeat()

    import tf_keras

    hf = transformers.TFDistilBertForSequenceClassification(transformers.DistilBertConfig.from_dict(config.to_dict()))
    hf_opt = tf_keras.optimizers.AdamW(learning_rate=LR, weight_decay=WD, epsilon=1e-8, global_clipnorm=CLIP)
    hf.compile(optimizer=hf_opt)  # no loss: the model's own, labels in the input dict
    hf_data = tf.data.Dataset.from_tensors({k: tf.constant(v) for k, v in batch.items()}).repeat()

    def fit(model, ds, callback_class):
        def run(steps: int):
            timer = step_timer(callback_class)
            history = model.fit(ds, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
            return float(history.history["loss"][-1]), timer.seconds

        return run

    return {
        "distilbert.tf Keras fit": fit(ours, data, keras.callbacks.Callback),
        "transformers 4.57.6 TF (tf-keras) fit": fit(hf, hf_data, tf_keras.callbacks.Callback),
        "KerasHub fit (tensorflow backend)": kerashub_contender(batch, layers),
    }


def flax_contenders(batch, layers: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    import transformers
    from flax import nnx

    import distilbert.flax as dfx
    from distilbert import DistilBertConfig
    from distilbert.flax.training import adamw_with_warmup, functional_state, make_train_step, train_step

    config = DistilBertConfig.from_dict(config_dict(layers))
    arrays = {k: jnp.asarray(v.astype(np.int32)) for k, v in batch.items()}
    ours = dfx.FlaxDistilBertForSequenceClassification(config)
    opt = nnx.Optimizer(ours, adamw_with_warmup(LR, 10**6, 0, WD, CLIP), wrt=nnx.Param)
    other = dfx.FlaxDistilBertForSequenceClassification(config)
    tx = adamw_with_warmup(LR, 10**6, 0, WD, CLIP)
    graphdef, state = functional_state(other, tx)
    step = make_train_step(graphdef, tx)
    box = {"state": state}

    hf = transformers.FlaxDistilBertForSequenceClassification(
        transformers.DistilBertConfig.from_dict(config.to_dict()), seed=0
    )
    hf_tx = optax.chain(
        optax.clip_by_global_norm(CLIP),
        optax.adamw(LR, eps=1e-8, weight_decay=WD, mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)),
    )
    inputs = {k: arrays[k] for k in ("input_ids", "attention_mask")}

    @jax.jit
    def hf_step(params, opt_state, rng):
        rng, dropout_rng = jax.random.split(rng)

        def loss_of(p):
            logits = hf(**inputs, params=p, dropout_rng=dropout_rng, train=True).logits
            return optax.softmax_cross_entropy_with_integer_labels(logits, arrays["labels"]).mean()

        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = hf_tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, rng, loss

    hf_box = {"params": hf.params, "opt": hf_tx.init(hf.params), "rng": jax.random.PRNGKey(0)}

    def ours_nnx():
        return float(train_step(ours, opt, arrays))

    def ours_functional():
        box["state"], loss = step(box["state"], arrays)
        return float(loss)

    def ref():
        hf_box["params"], hf_box["opt"], hf_box["rng"], loss = hf_step(hf_box["params"], hf_box["opt"], hf_box["rng"])
        return float(loss)

    return {
        "distilbert.flax make_train_step (jax.jit)": ours_functional,
        "distilbert.flax train_step (nnx.jit)": ours_nnx,
        "transformers 4.57.6 Flax jax.jit step": ref,
        "KerasHub fit (jax backend)": kerashub_contender(batch, layers),
    }


def kerashub_contender(batch, layers: int):
    """KerasHub's DistilBertTextClassifier (random weights, built from a config) under ``fit``, on this
    process's Keras backend; a function of ``steps``."""
    import keras
    import keras_hub

    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=30522, num_layers=layers, num_heads=12, hidden_dim=768, intermediate_dim=3072,
        max_sequence_length=512,
    )  # fmt: skip
    model = keras_hub.models.DistilBertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    optimizer = keras.optimizers.AdamW(learning_rate=LR, weight_decay=WD, epsilon=1e-8, global_clipnorm=CLIP)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = {"token_ids": batch["input_ids"].astype(np.int32), "padding_mask": batch["attention_mask"].astype(bool)}
    y = batch["labels"]
    rows = len(y)

    def run(steps: int):
        xs = {k: np.concatenate([v] * steps) for k, v in x.items()}
        timer = step_timer(keras.callbacks.Callback)
        history = model.fit(
            xs, np.concatenate([y] * steps), batch_size=rows, epochs=1, shuffle=False, verbose=0, callbacks=[timer]
        )
        return float(history.history["loss"][-1]), timer.seconds

    return run


def step_timer(callback_class):
    """A ``fit`` callback adding up the seconds of the training steps alone. A ``fit`` call also sets up
    and tears down (several seconds on these machines, at random, in tf-keras and Keras alike), which a
    real epoch of thousands of steps pays once; timing whole calls of a few steps measured that instead."""

    class StepTimer(callback_class):
        seconds = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float((logs or {}).get("loss", 0.0))  # waits for the step (JAX dispatches asynchronously)
            self.seconds += time.perf_counter() - self.start

    return StepTimer()


CONTENDERS = {"pt": pt_contenders, "tf": tf_contenders, "flax": flax_contenders}


def takes_steps(fn) -> bool:
    import inspect

    return len(inspect.signature(fn).parameters) == 1


def section(framework: str, shapes: list[tuple[int, int]], layers: int, warmup: int, repeats: int, steps: int):
    """Times every contender of ``framework`` at every shape, in rotating order; returns table rows."""
    from tqdm import tqdm

    rows = []
    for batch_size, seq in shapes:
        batch = make_batch(batch_size, seq)
        built, runners = {}, {}
        for name, fn in CONTENDERS[framework](batch, layers).items():
            built[name] = fn
            runners[name] = (lambda f: (lambda: f(steps)))(fn) if takes_steps(fn) else (
                lambda f: (lambda: [f() for _ in range(steps)][-1])
            )(fn)  # fmt: skip
        names = list(runners)
        times: dict[str, list[float]] = {n: [] for n in names}
        errors: dict[str, str] = {}
        total = (warmup + repeats) * len(names)
        bar = tqdm(total=total, desc=f"{framework} {batch_size}x{seq}", file=sys.stderr, leave=False)
        for r in range(warmup + repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                if name in errors:
                    bar.update()
                    continue
                try:
                    start = time.perf_counter()
                    loss = runners[name]()
                    elapsed = time.perf_counter() - start
                    if isinstance(loss, tuple):  # (loss, seconds of the steps themselves), from a fit
                        loss, elapsed = loss
                    if not np.isfinite(loss):
                        raise FloatingPointError(f"loss {loss}")
                except Exception as exc:  # noqa: BLE001 -- a peer that fails is reported, not fatal
                    errors[name] = f"{type(exc).__name__}: {exc}"[:200]
                    bar.update()
                    continue
                if r >= warmup:
                    times[name].append(elapsed / steps)
                bar.update()
        bar.close()
        ours = names[0]
        for name in names:
            row = {"framework": framework, "contender": name, "batch": batch_size, "seq": seq}
            if name in errors or not times[name]:
                row["error"] = errors.get(name, "no timed run")
            else:
                row["seconds_per_step"] = statistics.median(times[name])
                row["tokens_per_s"] = batch_size * seq / row["seconds_per_step"]
                if ours not in errors and times[ours]:
                    row["ours_over_this"] = statistics.median(t / o for o, t in zip(times[ours], times[name]))
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------- torchrun workers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(workers: int, worker_args: list[str], threads: int, timeout: int) -> dict:
    """Runs this file as a worker on ``workers`` processes; returns what rank 0 wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": ""}
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the workers talk over loopback only
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(workers)]
        command += ["--master-addr", "127.0.0.1", "--master-port", str(free_port()), HERE]
        command += ["--worker-out", out, *worker_args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"torchrun failed ({done.returncode}):\n{done.stderr[-3000:]}")
        with open(out) as f:
            return json.load(f)


def scaling_worker(args) -> None:
    """``finetune`` on ``--warmup + --steps`` copies of one global batch; rank 0 writes tokens/s of the timed steps."""
    import torch

    from distilbert import DistilBertConfig
    from distilbert.pt import DistilBertForSequenceClassification
    from distilbert.pt.training import finetune, init_distributed, is_main_process

    init_distributed()
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig.from_dict(config_dict(args.layers)))
    batch_size, seq = args.scaling_shape
    batch = make_batch(batch_size, seq)
    stamps: list[float] = []
    finetune(model, [batch] * (args.warmup + args.steps), learning_rate=LR, on_step=lambda k, m: stamps.append(
        time.perf_counter()))  # fmt: skip
    if is_main_process():
        elapsed = stamps[-1] - stamps[args.warmup - 1] if args.warmup else stamps[-1] - stamps[0]
        timed = args.steps if args.warmup else args.steps - 1
        with open(args.worker_out, "w") as f:
            json.dump({"tokens_per_s": batch_size * seq * timed / elapsed, "threads": torch.get_num_threads()}, f)


def memory_worker(args) -> None:
    """One (two: the second shows the steady state) distilbert-base step at 32 x 128 through the public pieces
    of ``distilbert.pt.training``; every worker's peak RSS and the bytes it holds, gathered on rank 0."""
    import resource

    import torch
    import torch.distributed as dist

    from distilbert import DistilBertConfig
    from distilbert.pt import DistilBertForSequenceClassification
    from distilbert.pt.training import (
        adamw_with_warmup,
        distribute,
        global_counts,
        init_distributed,
        loss_share,
        rank_and_world,
        shard,
        train_step,
    )

    init_distributed()
    rank, world = rank_and_world()
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig())
    module = distribute(model, fsdp=args.fsdp)
    optimizer = adamw_with_warmup(module, LR, 10, 0, WD, CLIP)
    batch = make_batch(32, 128)
    counts = global_counts(model, batch)
    start = time.perf_counter()
    for _ in range(2):
        train_step(module, optimizer, shard(batch, rank, world), loss=lambda m, b: loss_share(m, b, counts) * world)
    seconds = (time.perf_counter() - start) / 2

    def local_bytes(tensors) -> int:
        total = 0
        for t in tensors:
            t = t.to_local() if hasattr(t, "to_local") else t
            total += t.numel() * t.element_size()
        return total

    params = list(module.parameters())
    report = {
        "rank": rank,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
        "parameter_bytes": local_bytes(params),
        "gradient_bytes": local_bytes(p.grad for p in params if p.grad is not None),
        "optimizer_bytes": local_bytes(
            v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0
        ),
        # FSDP trains a sharded copy; finetune keeps the model itself to return and save (DDP trains the model)
        "unsharded_model_bytes": local_bytes(model.parameters()) if args.fsdp else 0,
        "seconds_per_step": seconds,
    }
    reports = [None] * world
    dist.all_gather_object(reports, report)
    if rank == 0:
        with open(args.worker_out, "w") as f:
            json.dump(reports, f)


# ---------------------------------------------------------------------------------------------------- main
def print_table(rows: list[dict]) -> None:
    header = f"{'framework':9s} {'contender':44s} {'shape':>8s} {'tokens/s':>9s} {'ours/this':>9s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        shape = f"{row['batch']}x{row['seq']}"
        if "error" in row:
            print(f"{row['framework']:9s} {row['contender']:44s} {shape:>8s}   failed: {row['error']}")
            continue
        ratio = f"{row['ours_over_this']:8.2f}x" if "ours_over_this" in row else ""
        print(f"{row['framework']:9s} {row['contender']:44s} {shape:>8s} {row['tokens_per_s']:9.0f} {ratio:>9s}")


def print_memory(results: dict[str, list[dict]]) -> None:
    mib = 2.0**20
    columns = ("peak_rss_bytes", "parameter_bytes", "gradient_bytes", "optimizer_bytes", "unsharded_model_bytes")
    names = ("peak RSS", "params", "grads", "optimizer", "copy")
    header = f"{'mode':5s} {'rank':>4s}" + "".join(f"{c:>12s}" for c in names) + f"{'s/step':>8s}"
    print(header)
    print("-" * len(header))
    for mode, reports in results.items():
        for r in reports:
            sizes = "".join(f"{r[c] / mib:8.0f} MiB" for c in columns)
            print(f"{mode:5s} {r['rank']:4d}{sizes} {r['seconds_per_step']:7.1f}")


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    good = [r for r in rows if "tokens_per_s" in r]
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(good) + 1.5))
    labels = [f"{r['framework']} {r['batch']}x{r['seq']}: {r['contender']}" for r in good]
    ax.barh(range(len(good)), [r["tokens_per_s"] for r in good])
    ax.set_yticks(range(len(good)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("tokens / s (training step, float32, CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def parse_shapes(text: str) -> list[tuple[int, int]]:
    try:
        return [tuple(int(x) for x in part.lower().split("x")) for part in text.split(",")]  # type: ignore[misc]
    except ValueError:
        raise SystemExit(f"--shapes: expected e.g. 8x128,32x128, got {text!r}") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="pt,tf,flax")
    parser.add_argument("--shapes", default="8x128,32x128", help="batch x sequence length, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs (nnx.jit compiles twice)")
    parser.add_argument("--steps", type=int, default=2, help="training steps a timed run")
    parser.add_argument("--layers", type=int, default=6, help="transformer layers (6: distilbert-base)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1-vs-2 torchrun workers")
    parser.add_argument("--scaling-shape", default="8x128", help="global batch of the 1-vs-2-worker runs")
    parser.add_argument("--memory", action="store_true", help="only the DDP-vs-FSDP memory run (2 workers)")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument("--plot", default=None, help="write a bar chart of tokens/s to this PNG")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds for each subprocess")
    parser.add_argument("--section", default=None, help=argparse.SUPPRESS)  # internal: one framework's process
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)  # internal: a torchrun worker
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--fsdp", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shapes = parse_shapes(args.shapes)
    args.scaling_shape_text, args.scaling_shape = args.scaling_shape, parse_shapes(args.scaling_shape)[0]

    if args.worker == "scaling":
        return scaling_worker(args)
    if args.worker == "memory":
        return memory_worker(args)
    if args.section:
        rows = section(args.section, shapes, args.layers, args.warmup, args.repeats, args.steps)
        with open(args.worker_out, "w") as f:
            json.dump(rows, f)
        return None

    cores = os.cpu_count() or 1
    print(f"{cpu_name()}, {cores} cores; float32; sequence classification, AdamW, clip {CLIP}")
    if args.memory:
        results = {}
        for mode in ("ddp", "fsdp"):
            flags = ["--worker", "memory"] + (["--fsdp"] if mode == "fsdp" else [])
            results[mode] = torchrun(2, flags, max(1, cores // 2), args.timeout)
        print("distilbert-base (66M parameters), global batch 32 x 128 (16 x 128 a worker), 2 torchrun workers")
        print_memory(results)
        print("params/grads/optimizer: what the worker's training module holds; copy: the unsharded model that")
        print("finetune keeps beside an FSDP module to return and save (DDP trains the model itself)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"cpu": cpu_name(), "memory": results}, f, indent=1)
        return None

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for framework in args.frameworks.split(","):
            out = os.path.join(tmp, f"{framework}.json")
            command = [sys.executable, HERE, "--section", framework, "--worker-out", out, "--shapes", args.shapes]
            command += ["--layers", str(args.layers), "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
            command += ["--steps", str(args.steps)]
            env = {**os.environ, "KERAS_BACKEND": BACKEND[framework], "PYTHONPATH": ROOT}
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            env.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
            done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=None, timeout=args.timeout)
            if done.returncode:
                rows.append({"framework": framework, "contender": "(section)", "batch": 0, "seq": 0, "error": "failed"})
                continue
            with open(out) as f:
                rows += json.load(f)
    scaling = {}
    if not args.no_scaling:
        worker = ["--worker", "scaling", "--layers", str(args.layers), "--scaling-shape", args.scaling_shape_text]
        worker += ["--warmup", str(max(args.warmup, 1)), "--steps", str(max(args.steps, 2))]
        for n in (1, 2):
            scaling[n] = torchrun(n, worker, max(1, cores // n), args.timeout)["tokens_per_s"]
    print_table(rows)
    print("tokens/s: median of the timed runs; ours/this: median of the paired ratios (> 1: ours is faster)")
    if scaling:
        batch_size, seq = args.scaling_shape
        print(
            f"torchrun DDP, finetune, global batch {batch_size}x{seq}: 1 worker ({cores} threads) "
            f"{scaling[1]:.0f} tokens/s, 2 workers ({max(1, cores // 2)} threads each) {scaling[2]:.0f} tokens/s "
            f"({scaling[2] / scaling[1]:.2f}x)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "cores": cores, "rows": rows, "scaling": scaling}, f, indent=1)
    if args.plot:
        plot(rows, args.plot)
    return None


if __name__ == "__main__":
    sys.exit(main())
