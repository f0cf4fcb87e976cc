"""``distilbert.pt.training.finetune``: one process equals the ``train_step`` loop, two torchrun workers (DDP
and FSDP2) equal one process on the same global batches, resuming equals not stopping, bad input is refused.

The two-worker runs start ``python -m torch.distributed.run --nproc-per-node 2`` on a small worker script
written into ``tmp_path``; the workers pass their results back in npz files.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import assert_close, random_state, task_inputs, task_labels, tiny_config

from distilbert.common.distillation import learning_rate_at
from distilbert.frameworks import canonical_state, load_canonical_state, model_class
from distilbert.pt import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = tiny_config()
TASKS = ["sequence_classification", "token_classification", "question_answering", "multiple_choice", "masked_lm"]
STEPS, ROWS, SEQ = 3, 6, 7  # multiple choice: ROWS questions of 3 choices
HYPER = dict(learning_rate=1e-4, weight_decay=0.01, warmup_steps=1, max_grad_norm=1.0)


NOISE = 1e-6  # gradient RMS below which an element's gradient is rounding noise (real ones here: 1e-4 to 1)


def noise_driven(state: dict[str, np.ndarray], name: str, steps: int) -> np.ndarray:
    """Elements whose gradients were rounding noise, from a training state after ``steps`` steps.

    Some true gradients are exactly 0: a bias that shifts every logit of one softmax alike (the key
    projection's, the span head's, the multiple-choice scorer's, ...), which softmax ignores. Their computed
    gradients are noise that Adam divides by its own size into steps of +-lr, different for every order of
    summation, so they are held to the learning-rate budget instead of 1e-5. An unused embedding row has a
    gradient of exactly 0 (no noise) and stays at 1e-5.
    """
    v = state.get(f"optimizer/{name}.exp_avg_sq")
    if v is None:  # a tied weight: no optimiser state of its own
        return np.zeros((), bool)
    rms = np.sqrt(v / (1 - 0.999**steps))
    return (rms > 0) & (rms < NOISE)


def global_batches(task: str, steps: int = STEPS, rows: int = ROWS) -> list[dict[str, np.ndarray]]:
    """``steps`` global batches of ``rows`` examples; token classification labels 4x more tokens in the
    first half of each batch than in the second, so a per-worker mean would weigh the halves wrongly."""
    out = []
    for k in range(steps):
        inputs = task_inputs(CONFIG, task, batch=3 * rows if task == "multiple_choice" else rows, seq=SEQ, seed=k)
        labels = task_labels(CONFIG, task, inputs, seed=10 + k)
        if task == "token_classification":
            keep = np.zeros(labels["labels"].shape, bool)
            keep[: rows // 2, :4] = True  # 4 labelled tokens a row in the first half (row 2 has 5 real tokens)
            keep[rows // 2 :, 0] = True  # 1 in the second
            values = np.random.default_rng(k).integers(0, CONFIG.num_labels, keep.shape)
            labels = {"labels": np.where(keep, values, -100).astype(np.int64)}
        batch = {**inputs, **{name: np.asarray(v, np.int64) for name, v in labels.items()}}
        assert len(batch["input_ids"]) == rows
        out.append(batch)
    return out


def fresh(task: str):
    model = model_class("pt", task)(CONFIG)
    load_canonical_state("pt", model, random_state(CONFIG, task))
    return model


def one_process(task: str, batches, **kwargs):
    losses: list[float] = []
    model = training.finetune(fresh(task), batches, on_step=lambda k, m: losses.append(m["loss"]), **HYPER, **kwargs)
    return model, losses


# ------------------------------------------------------------------------------------------ 1 process
@pytest.mark.parametrize("task", TASKS)
def test_finetune_equals_the_train_step_loop(task):
    batches = global_batches(task)
    model, losses = one_process(task, batches)
    expected = fresh(task)
    optimizer = training.adamw_with_warmup(expected, HYPER["learning_rate"], STEPS, **_rest(HYPER))
    expected_losses = [float(training.train_step(expected, optimizer, b)) for b in batches]
    assert not model.training
    assert_close(losses, expected_losses, name="loss per step")
    for name, value in canonical_state("pt", expected).items():
        assert_close(canonical_state("pt", model)[name], value, name=name)


def _rest(hyper):
    return {k: v for k, v in hyper.items() if k != "learning_rate"}


def test_loss_shares_add_up_to_the_global_loss_whatever_the_split():
    batch = global_batches("token_classification", steps=1)[0]
    model = fresh("token_classification")
    counts = training.global_counts(model, batch)
    with torch.no_grad():
        whole = training.loss_fn(model, batch)
        shares = [training.loss_share(model, training.shard(batch, r, 2), counts) for r in range(2)]
        halves = [training.loss_fn(model, training.shard(batch, r, 2)) for r in range(2)]
    assert_close(sum(shares), whole, name="sum of shares")
    assert abs(float(sum(halves) / 2 - whole)) > 1e-3  # the per-worker mean this split is built to catch


def test_resume_equals_the_uninterrupted_run():
    task = "token_classification"
    batches = global_batches(task, steps=4)
    straight = training.finetune(fresh(task), batches, **HYPER)
    saved: dict[str, np.ndarray] = {}
    first = fresh(task)

    class Stop(Exception):
        pass

    def stop(step, state):  # the run is killed right after its checkpoint of step 2
        saved.update(state)
        raise Stop

    with pytest.raises(Stop):
        training.finetune(first, batches, save_every=2, on_save=stop, **HYPER)
    resumed = training.finetune(first, batches, start_step=2, state=saved, **HYPER)
    for name, value in canonical_state("pt", straight).items():
        assert_close(canonical_state("pt", resumed)[name], value, atol=1e-6, name=name)


def test_init_distributed_outside_a_launcher(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert training.init_distributed() is False
    assert training.rank_and_world() == (0, 1) and training.is_main_process()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="but not RANK, MASTER_ADDR, MASTER_PORT: launch with torchrun"):
        training.init_distributed()


def test_bad_input_is_refused():
    task = "sequence_classification"
    batches = global_batches(task, steps=1)
    with pytest.raises(ValueError, match="torchrun --nproc-per-node"):
        training.finetune(fresh(task), batches, devices=2)
    with pytest.raises(ValueError, match="fsdp=True needs torch.distributed"):
        training.finetune(fresh(task), batches, fsdp=True)
    with pytest.raises(ValueError, match="start_step=5"):
        training.finetune(fresh(task), batches, start_step=5)
    with pytest.raises(ValueError, match="6 rows does not split over 4 workers"):
        training.shard(batches[0], 0, 4)
    other = fresh("token_classification")
    state = training.training_state(other, training.adamw_with_warmup(other, 1e-3, 1))
    with pytest.raises(ValueError, match="does not fit this model's optimizer"):
        training.finetune(fresh(task), batches, state=state)
    with pytest.raises(ValueError, match="has no loss"):
        training.finetune(model_class("pt", "base")(CONFIG), batches)


# ------------------------------------------------------------------------------------------ 2 workers
WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch
    from distilbert import DistilBertConfig
    from distilbert.frameworks import canonical_state, load_canonical_state, model_class
    from distilbert.pt import training

    args = json.load(open(sys.argv[1]))
    assert training.init_distributed()
    rank, world = training.rank_and_world()
    config = DistilBertConfig.from_dict(args["config"])
    result = {}


    def load(task):
        data = np.load(f"{args['dir']}/{task}.npz")
        steps = sorted({int(k.split("/")[0]) for k in data.files})
        batches = [{k.split("/")[1]: data[k] for k in data.files if k.startswith(f"{s}/")} for s in steps]
        model = model_class("pt", task)(config)
        load_canonical_state("pt", model, dict(np.load(f"{args['dir']}/{task}.init.npz")))
        return model, batches

    for task in args["tasks"]:
        model, batches = load(task)
        losses, saves = [], []
        def on_save(step, state):
            saves.append(step)
            result.update({f"{task}/state/{k}": v for k, v in state.items()})
        trained = training.finetune(
            model, batches, on_step=lambda k, m: losses.append(m["loss"]), save_every=1, on_save=on_save,
            fsdp=args["fsdp"], **args["hyper"],
        )
        assert trained is model and not model.training and type(model).__name__ == args["classes"][task]
        result[f"{task}/losses"] = np.array(losses)
        result[f"{task}/saves"] = np.array(saves)
        result.update({f"{task}/weights/{k}": v for k, v in canonical_state("pt", trained).items()})
    # resume: stopped after the checkpoint of step 2 (on every worker alike), restarted from the file
    model, batches = load("token_classification")

    class Stop(Exception):
        pass

    class Interrupted:
        def __len__(self):
            return len(batches)

        def __getitem__(self, k):
            if k >= 2:
                raise Stop
            return batches[k]

    def keep(step, state):
        np.savez(f"{args['dir']}/resume.npz", **state)

    try:
        training.finetune(model, Interrupted(), save_every=2, on_save=keep, fsdp=args["fsdp"], **args["hyper"])
    except Stop:
        pass
    torch.distributed.barrier()
    state = dict(np.load(f"{args['dir']}/resume.npz"))
    model = training.finetune(model, batches, start_step=2, state=state, fsdp=args["fsdp"], **args["hyper"])
    result.update({f"resumed/weights/{k}": v for k, v in canonical_state("pt", model).items()})

    try:  # 7 rows over 2 workers
        odd = {k: v[:7] for k, v in batches[0].items()}  # token classification
        training.finetune(model, [odd], fsdp=args["fsdp"])
    except ValueError as exc:
        result["odd"] = np.array(str(exc))
    result["main"] = np.array(training.is_main_process())
    np.savez(f"{args['dir']}/rank{rank}.npz", **result)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp_path, fsdp: bool, tasks=TASKS, rows: int = 2 * ROWS) -> list[dict[str, np.ndarray]]:
    """Runs the worker on 2 processes and returns each rank's results."""
    for task in tasks:
        batches = global_batches(task, rows=rows)
        np.savez(tmp_path / f"{task}.npz", **{f"{k}/{n}": v for k, b in enumerate(batches) for n, v in b.items()})
        np.savez(tmp_path / f"{task}.init.npz", **random_state(CONFIG, task))
    classes = {task: model_class("pt", task).__name__ for task in tasks}
    args = dict(config=CONFIG.to_dict(), tasks=tasks, dir=str(tmp_path), fsdp=fsdp, hyper=HYPER, classes=classes)
    (tmp_path / "args.json").write_text(json.dumps(args))
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo connects the workers over loopback only
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    command += ["--master-port", str(free_port()), str(tmp_path / "worker.py"), str(tmp_path / "args.json")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_workers_equal_one_process(tmp_path, fsdp):
    results = torchrun(tmp_path, fsdp)
    assert [bool(r["main"]) for r in results] == [True, False]
    assert "does not split over 2 workers" in str(results[0]["odd"])
    main, other = results
    for task in TASKS:
        batches = global_batches(task, rows=2 * ROWS)
        states: list[dict[str, np.ndarray]] = []
        model, losses = one_process(task, batches, save_every=1, on_save=lambda k, s: states.append(s))
        assert_close(main[f"{task}/losses"], losses, name=f"{task}: loss per step")
        assert list(main[f"{task}/saves"]) == list(range(1, STEPS + 1))
        assert len(other[f"{task}/losses"]) == len(other[f"{task}/saves"]) == 0  # callbacks on rank 0 only
        for name, value in states[-1].items():  # the gathered optimiser state: the moments are sums of gradients
            if name.startswith("optimizer/"):
                assert_close(main[f"{task}/state/{name}"], value, name=f"{task}: {name}")
        budget = sum(learning_rate_at(k, HYPER["learning_rate"], HYPER["warmup_steps"], STEPS) for k in range(STEPS))
        noisy = 0
        for name, value in canonical_state("pt", model).items():
            ours, noise = main[f"{task}/weights/{name}"], noise_driven(states[-1], name, STEPS)
            assert_close(np.where(noise, value, ours), value, name=f"{task}: {name}")
            assert_close(np.where(noise, ours, value), value, 2 * budget, name=f"{task}: {name} (noise-driven)")
            assert_close(other[f"{task}/weights/{name}"], ours, 0, name=f"{task}: rank 1")
            noisy += int(noise.sum())
        assert noisy < 0.01 * sum(v.size for v in canonical_state("pt", model).values())
        if task == "token_classification":  # the run stopped after step 2 and resumed from its checkpoint
            for name, value in canonical_state("pt", model).items():
                ours, noise = main[f"resumed/weights/{name}"], noise_driven(states[-1], name, STEPS)
                assert_close(np.where(noise, value, ours), value, name=f"resumed: {name}")
                assert_close(np.where(noise, ours, value), value, 2 * budget, name=f"resumed: {name} (noise-driven)")
