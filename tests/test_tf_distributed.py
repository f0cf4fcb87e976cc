"""TF/Keras backend: ``distilbert.tf.training.finetune`` on global batches equals a loop of ``train_step`` in one
process, and the 1-process run on ``tf.distribute``: MirroredStrategy over 2 logical CPU devices and
MultiWorkerMirroredStrategy with 2 local worker processes (loss per step and final weights, 1e-5).

Logical devices and the multi-worker strategy must exist before TensorFlow starts, and this test process has
started it, so those runs are subprocesses: this file run as a script (``python test_tf_distributed.py
mirrored|worker OUT``) is the worker. Every subprocess has a timeout and ends by itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_close, random_state, task_inputs, task_labels, tiny_config

from distilbert.common.distillation import learning_rate_at

CONFIG = tiny_config()
TASKS = ("sequence_classification", "token_classification", "question_answering", "multiple_choice", "masked_lm")
# A clip norm below the gradients' norm keeps clipping active, and keeps Adam from magnifying the rounding in
# gradients that are zero in exact arithmetic (classifier.bias of multiple choice, k_lin.bias) up to 1e-5.
HYPER = dict(learning_rate=5e-4, warmup_steps=1, weight_decay=0.01, max_grad_norm=0.05)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240  # seconds for one subprocess run on a loaded 2-core machine


def global_batches(task: str, steps: int = 3, rows: int = 4, seq: int = 8) -> list[dict[str, np.ndarray]]:
    """``steps`` global batches of ``rows`` examples: padded inputs and labels (ignored ones, QA positions
    past the end), int64 as the command makes them."""
    batches = []
    for k in range(steps):
        inputs = task_inputs(CONFIG, task, batch=3 * rows if task == "multiple_choice" else rows, seq=seq, seed=k)
        batch = {**inputs, **task_labels(CONFIG, task, inputs, seed=k)}
        batches.append({name: np.asarray(v, np.int64) for name, v in batch.items()})
    return batches


def uneven_token_batches(steps: int = 3) -> list[dict[str, np.ndarray]]:
    """Token-classification batches whose first half (replica 0's rows) has many labelled tokens and the
    second half one each: a mean per replica is not the mean over the global batch."""
    batches = global_batches("token_classification", steps)
    for batch in batches:
        labels = batch["labels"]
        labels[:2] = np.where(batch["attention_mask"][:2] == 1, np.abs(labels[:2]) % CONFIG.num_labels, -100)
        labels[2:] = -100
        labels[2:, 0] = 1
    return batches


def build(task: str, state):
    from distilbert.frameworks import build as build_model

    return build_model("tf", task, CONFIG, state)


def reference(task, state, batches):
    """The 1-process loop of the existing ``train_step`` with ``adamw_with_warmup``: losses and weights."""
    from distilbert.tf import training

    model = build(task, state)
    hyper = dict(HYPER)
    optimizer = training.adamw_with_warmup(hyper.pop("learning_rate"), len(batches), **hyper)
    losses = [float(training.train_step(model, optimizer, batch)) for batch in batches]
    return losses, model.canonical_state()


def run_finetune(task, weights, batches, **kwargs):
    from distilbert.tf import training

    model, logs = build(task, weights), []
    trained = training.finetune(model, batches, on_step=lambda step, log: logs.append((step, log)), **HYPER, **kwargs)
    return trained, logs


# ------------------------------------------------------------------------------------------- one process
ZERO_GRADIENT = {
    "question_answering": (
        f"distilbert.transformer.layer.{CONFIG.n_layers - 1}.output_layer_norm.bias",
        "qa_outputs.bias",
    ),
    "multiple_choice": ("classifier.bias",),
}


@pytest.mark.parametrize("task", TASKS)
def test_finetune_equals_a_train_step_loop(task):
    """``finetune`` (Keras ``fit``) == the same AdamW, schedule and clipping through ``train_step``, per task."""
    state, batches = random_state(CONFIG, task, seed=3), global_batches(task)
    want_losses, want = reference(task, state, batches)
    model, logs = run_finetune(task, state, batches)
    assert [step for step, _ in logs] == [1, 2, 3]
    assert all(log["examples"] == 4 for _, log in logs)
    assert_close([log["loss"] for _, log in logs], want_losses, name="loss per step")
    got = model.canonical_state()
    # Some biases have a gradient of 0 in exact arithmetic, because a softmax ignores the constant they add: the
    # key projection's (softmax over the keys), and for question answering the last LayerNorm's and the head's
    # (softmax over the positions), for multiple choice the classifier's (softmax over the choices). What reaches
    # AdamW there is rounding noise, summed in another order by fit's global step than by train_step; Adam (eps
    # added to sqrt(v_hat), as PyTorch does) turns it into steps of up to +-lr. Those are held to the run's
    # learning-rate budget; every other weight to 1e-5.
    budget = 2 * sum(learning_rate_at(k, HYPER["learning_rate"], HYPER["warmup_steps"], 3) for k in range(3))
    moved = 0
    for name in want:
        noise_only = name.endswith("attention.k_lin.bias") or name in ZERO_GRADIENT.get(task, ())
        assert_close(got[name], want[name], atol=budget if noise_only else 1e-5, name=name)
        moved += not np.array_equal(got[name], state[name])
    assert moved > len(want) // 2  # it trained


def test_finetune_resumes_exactly(tmp_path):
    """2 steps, the training state saved there, then ``start_step=2`` from it == 4 steps uninterrupted; the
    returned model is an ordinary one that ``save_pretrained`` writes."""
    task = "token_classification"
    state, batches = random_state(CONFIG, task, seed=4), uneven_token_batches(4)
    saved = {}

    def on_save(step, training_state):
        saved[step] = (model.canonical_state(), training_state)

    model = build(task, state)
    from distilbert.tf import training

    whole = training.finetune(model, batches, save_every=2, on_save=on_save, **HYPER)
    assert sorted(saved) == [2, 4] and whole is model
    weights, training_state = saved[2]
    resumed, logs = run_finetune(task, weights, batches, start_step=2, state=training_state)
    assert [step for step, _ in logs] == [3, 4]
    got, want = resumed.canonical_state(), whole.canonical_state()
    for name in want:
        assert_close(got[name], want[name], atol=1e-6, name=name)
    assert not all(np.array_equal(weights[n], want[n]) for n in want)  # steps 3 and 4 did move the weights
    with pytest.raises(ValueError, match="saved after 2 steps, but start_step=1"):
        run_finetune(task, weights, batches, start_step=1, state=training_state)
    resumed.save_pretrained(str(tmp_path / "out"))
    from distilbert.tf import TFDistilBertForTokenClassification

    again = TFDistilBertForTokenClassification.from_pretrained(str(tmp_path / "out")).canonical_state()
    for name in want:
        assert_close(again[name], want[name], atol=0, name=name)


def test_bad_input_gives_clear_errors(monkeypatch):
    from distilbert.tf import training

    task = "token_classification"
    model, batches = build(task, random_state(CONFIG, task, seed=5)), global_batches(task, steps=1)
    with pytest.raises(ValueError, match="tf.distribute has no FSDP"):
        training.finetune(model, batches, fsdp=True)
    with pytest.raises(ValueError, match=r"configure_devices\(2\) first thing"):
        training.finetune(model, batches, devices=2)  # this process has one CPU device
    with pytest.raises(RuntimeError, match="first thing in the program"):
        training.configure_devices(2)  # TensorFlow has started
    with pytest.raises(ValueError, match="has no labels"):
        training.finetune(model, [{k: v for k, v in batches[0].items() if k != "labels"}])
    bad = dict(batches[0], labels=np.full_like(batches[0]["labels"], CONFIG.num_labels))
    with pytest.raises(ValueError, match="labels"):
        training.finetune(model, [bad])
    with pytest.raises(ValueError, match="start_step=5"):
        training.finetune(model, batches, start_step=5)
    with pytest.raises(ValueError, match="labels") as caught:  # found while training, from tf.data's generator
        training.finetune(model, [batches[0], bad])
    assert type(caught.value) is ValueError, caught.value
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker"}}))
    with pytest.raises(RuntimeError, match="configure_devices\\(\\) first thing"):
        training.finetune(model, batches)
    with pytest.raises(ValueError, match="leave devices unset"):
        training.finetune(model, batches, devices=2)


@pytest.mark.parametrize(
    "tf_config, main",
    [
        (None, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
    ],
)
def test_is_main_process_follows_tf_config(monkeypatch, tf_config, main):
    from distilbert.tf import training

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert training.is_main_process() is main


# ------------------------------------------------------------------------------------- tf.distribute
def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def environment(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    tests = os.path.dirname(os.path.abspath(__file__))
    env.update(PYTHONPATH=os.pathsep.join([ROOT, tests]), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def launch(mode: str, out: str, count: int = 1) -> list[dict]:
    """Runs ``count`` worker processes of ``mode``; each writes ``out.<index>.npz``; returns their results."""
    ports = free_ports(count)
    workers = []
    for index in range(count):
        extra = {}
        if mode == "worker":
            cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
            extra = dict(
                TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                TF_NUM_INTRAOP_THREADS="1",
                TF_NUM_INTEROP_THREADS="2",
            )
        command = [sys.executable, os.path.abspath(__file__), mode, f"{out}.{index}.npz"]
        log = open(f"{out}.{index}.log", "wb")  # a file, not a pipe: a worker never blocks on a full pipe
        workers.append((subprocess.Popen(command, env=environment(**extra), stdout=log, stderr=log), log))
    try:
        for worker, _ in workers:
            worker.wait(timeout=TIMEOUT)
    finally:
        for worker, log in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            log.close()
    for index, (worker, _) in enumerate(workers):
        with open(f"{out}.{index}.log", errors="replace") as log:
            assert worker.returncode == 0, f"worker {index} failed:\n" + log.read()[-4000:]
    return [dict(np.load(f"{out}.{index}.npz")) for index in range(count)]


def check_against_one_process(result, task, seed, batches):
    want_losses, want = reference(task, random_state(CONFIG, task, seed=seed), batches)
    assert_close(result["losses"], want_losses, name="loss per step")
    for name in want:
        assert_close(result["weights/" + name], want[name], name=name)


def test_mirrored_strategy_over_two_logical_cpus_equals_one_process(tmp_path):
    """devices=2: the same losses and weights as one process, on batches where a per-replica mean differs."""
    batches = uneven_token_batches()
    model = build("token_classification", random_state(CONFIG, "token_classification", seed=6))
    whole = float(model(batches[0], training=False).loss)
    halves = [float(model({k: v[i : i + 2] for k, v in batches[0].items()}, training=False).loss) for i in (0, 2)]
    assert abs(np.mean(halves) - whole) > 0.05  # so the comparison below can tell the two apart
    (result,) = launch("mirrored", str(tmp_path / "mirrored"))
    assert int(result["replicas"]) == 2
    check_against_one_process(result, "token_classification", 6, batches)
    assert str(result["odd_batch_error"]).startswith("global batch 0 has 3 rows")
    assert "divisible by 2" in str(result["odd_batch_error"])


def test_multi_worker_mirrored_strategy_with_two_workers_equals_one_process(tmp_path):
    """TF_CONFIG with 2 local workers: both end with worker 0's 1-process result (worker 1 starts from other
    weights: they are taken from worker 0), and only worker 0 reports steps."""
    chief, other = launch("worker", str(tmp_path / "worker"), count=2)
    batches = uneven_token_batches()
    check_against_one_process(chief, "token_classification", 6, batches)
    assert [int(chief["reports"]), int(other["reports"])] == [3, 0]
    for name in (k for k in chief if k.startswith("weights/")):
        assert_close(other[name], chief[name], atol=1e-6, name=name)


# ----------------------------------------------------------------------------------- worker processes
def _worker(mode: str, out: str) -> None:
    from distilbert.tf import training

    training.configure_devices(2 if mode == "mirrored" else None)  # first thing: before TensorFlow starts
    import tensorflow as tf

    task = "token_classification"
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"] if mode == "worker" else 0
    model = build(task, random_state(CONFIG, task, seed=6 if index == 0 else 99))
    losses = []
    devices = 2 if mode == "mirrored" else None
    trained = training.finetune(
        model, uneven_token_batches(), on_step=lambda step, log: losses.append(log["loss"]), devices=devices, **HYPER
    )
    result = {"losses": np.asarray(losses), "reports": np.asarray(len(losses))}
    result.update({"weights/" + k: v for k, v in trained.canonical_state().items()})
    if mode == "mirrored":
        result["replicas"] = np.asarray(len(tf.config.list_logical_devices("CPU")))
        odd = [{k: v[:3] for k, v in uneven_token_batches(1)[0].items()}]
        try:
            training.finetune(build(task, None), odd, devices=2)
            result["odd_batch_error"] = np.asarray("no error")
        except ValueError as exc:
            result["odd_batch_error"] = np.asarray(str(exc))
    np.savez(out, **result)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
