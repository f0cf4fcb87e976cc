"""Flax ``finetune``: equal to the ``train_step`` loop, and the same run on 2 host devices (data-parallel and
FSDP) and on 2 processes through ``jax.distributed``; resuming, FSDP's layout, memory accounting, bad input.

This process's JAX has one CPU device, so the 2-device and 2-process runs are subprocesses (this file is
also their script: ``python test_flax_distributed.py devices OUT`` / ``process OUT PORT ID``). They are
compared with the 1-device run of the same global batches: token classification whose two halves hold
very different numbers of labelled tokens, so that a per-device mean of the loss would fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import assert_close, random_inputs, random_state, tiny_config

from distilbert.flax import (
    FlaxDistilBertForMaskedLM,
    FlaxDistilBertForMultipleChoice,
    FlaxDistilBertForQuestionAnswering,
    FlaxDistilBertForSequenceClassification,
    FlaxDistilBertForTokenClassification,
    FlaxDistilBertModel,
    canonical_state,
    load_canonical_state,
    training,
)
from distilbert.flax.pretrained import native_params

HEADS = {
    "sequence_classification": FlaxDistilBertForSequenceClassification,
    "token_classification": FlaxDistilBertForTokenClassification,
    "question_answering": FlaxDistilBertForQuestionAnswering,
    "multiple_choice": FlaxDistilBertForMultipleChoice,
    "masked_lm": FlaxDistilBertForMaskedLM,
}
CONFIG = tiny_config(n_layers=1)  # dropout 0
# max_grad_norm small enough that clipping acts: the global gradient's norm must be the same N-way.
RECIPE = dict(learning_rate=1e-2, weight_decay=0.01, warmup_steps=1, max_grad_norm=0.5)
STEPS = 3
HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 240  # s per subprocess: far above their ~20-40 s on a busy 2-core machine


def build(task, seed=2):
    model = HEADS[task](CONFIG, rngs=nnx.Rngs(params=0, dropout=1))
    load_canonical_state(model, random_state(CONFIG, task, seed=seed))
    return model


def task_batches(task, steps=STEPS):
    """``steps`` global batches of 4 rows x 8 tokens (multiple choice: 4 questions x 2 choices), padded."""
    batches = []
    for k in range(steps):
        rng = np.random.default_rng(k + 10)
        inputs = random_inputs(CONFIG, batch=4, seq=8, seed=k, choices=2 if task == "multiple_choice" else None)
        if task == "masked_lm":
            labels = np.where(rng.random((4, 8)) < 0.4, rng.integers(0, CONFIG.vocab_size, (4, 8)), -100)
            labels[:, 0] = rng.integers(0, CONFIG.vocab_size, 4)  # at least one label a row
            extra = {"labels": labels}
        elif task == "token_classification":
            extra = {"labels": np.where(inputs["attention_mask"] == 1, rng.integers(0, 2, (4, 8)), -100)}
        elif task == "question_answering":  # one answer past the end: clamped to T and ignored
            extra = {"start_positions": np.array([0, 3, 9, 5]), "end_positions": rng.integers(3, 8, (4,))}
        else:
            extra = {"labels": rng.integers(0, 2, (4,))}
        batches.append({**inputs, **extra})
    return batches


def uneven_token_batches():
    """Token batches whose first two rows hold 15-16 labelled tokens and the last two 2-3."""
    batches = task_batches("token_classification")
    for k, batch in enumerate(batches):
        batch["attention_mask"][:] = 1
        labels = np.random.default_rng(k).integers(0, 2, (4, 8))
        labels[2, 1:] = -100
        labels[3, 2 + k % 2 :] = -100
        batch["labels"] = labels
    return batches


def weights(model):
    """The model's weights by NNX path (the parameter paths of the optimiser state's moments)."""
    return {name: np.asarray(array) for name, array in native_params(model).items()}


def counting(record):
    return lambda step, logs: record.append((step, logs))


# ------------------------------------------------------------------------------ 1 process == train_step loop
@pytest.mark.parametrize("task", list(HEADS))
def test_finetune_equals_the_train_step_loop(task):
    batches = task_batches(task)
    reference = build(task)
    tx = training.adamw_with_warmup(total_steps=STEPS, **RECIPE)
    optimizer = nnx.Optimizer(reference, tx, wrt=nnx.Param)
    expected = [
        float(training.train_step(reference, optimizer, {k: jnp.asarray(v) for k, v in b.items()})) for b in batches
    ]

    model, logs = build(task), []
    before = canonical_state(model)
    returned = training.finetune(model, batches, on_step=counting(logs), **RECIPE)
    assert returned is model
    assert [step for step, _ in logs] == [1, 2, 3]
    assert all(log["examples"] == 4 for _, log in logs)
    assert_close([log["loss"] for _, log in logs], expected, name="losses")
    assert len(set(expected)) == STEPS
    got, want = canonical_state(model), canonical_state(reference)
    for name in want:
        assert_close(got[name], want[name], name=name)
    assert sum(not np.allclose(got[n], before[n]) for n in got) > 0.8 * len(got)


# ------------------------------------------------------------------------------ the 1-device reference run
@pytest.fixture(scope="module")
def single():
    """The uneven token batches on 1 device: losses, final weights and the state saved at step 2."""
    model, logs, saved = build("token_classification"), [], {}

    def on_save(step, state):
        saved[step] = {"state": state, "at_2": canonical_state(model)}

    training.finetune(model, uneven_token_batches(), on_step=counting(logs), save_every=1, on_save=on_save, **RECIPE)
    assert list(saved) == [1, 2, 3]
    losses = [log["loss"] for _, log in logs]
    return {"model": model, "losses": losses, "weights": weights(model), "final": saved[3]["state"], **saved[2]}


NOISE = 1e-6  # gradient RMS below which an element's gradient is rounding noise (real ones here: 1e-4 and up)
# What Adam's steps of about +-lr can add up to over the run (learning_rate_at of steps 0, 1, 2), twice.
BUDGET = 2 * RECIPE["learning_rate"] * (0 + 1 + 0.5)


def noise_driven(state, name):
    """Elements of parameter ``name`` whose gradients were rounding noise, from the final training state.

    Some true gradients are exactly 0: a bias that shifts every score of one softmax alike (the key
    projection's), which softmax ignores. Their computed gradients are rounding noise, which Adam divides by
    its own size into steps of +-lr, different for every order of summation (1 device, 2 devices, FSDP), so
    they are held to the learning-rate budget instead of 1e-5. A gradient of exactly 0 (an unused
    embedding row) is no noise: those stay at 1e-5.
    """
    nu = [v for k, v in state.items() if k.startswith("optimizer/") and k.endswith(f"/nu/{name}")]
    if not nu:  # not trained (a frozen table)
        return np.zeros((), bool)
    rms = np.sqrt(nu[0] / (1 - 0.999**STEPS))
    return (rms > 0) & (rms < NOISE)


def assert_same_run(losses, got, single):
    """Loss per step and every weight at 1e-5; elements driven by rounding noise within Adam's budget."""
    assert_close(losses, single["losses"], name="losses")
    assert sorted(got) == sorted(single["weights"])
    noisy = 0
    for name, want in single["weights"].items():
        noise = noise_driven(single["final"], name)
        assert_close(np.where(noise, want, got[name]), want, name=name)
        assert_close(np.where(noise, got[name], want), want, BUDGET, name=f"{name} (noise-driven)")
        noisy += int(noise.sum())
    assert noisy < 0.01 * sum(v.size for v in got.values())


def test_the_uneven_batches_would_fail_a_per_device_mean():
    """The test batches are what they claim: per-half means of the token loss differ from the global mean."""
    model = build("token_classification")
    batch = {k: jnp.asarray(v) for k, v in uneven_token_batches()[0].items()}
    halves = [training.eval_step(model, {k: v[i : i + 2] for k, v in batch.items()}).loss for i in (0, 2)]
    whole = training.eval_step(model, batch).loss
    assert abs(float(np.mean(halves)) - float(whole)) > 1e-3
    counts = (np.asarray(batch["labels"]) != -100).reshape(2, -1).sum(1)
    assert counts[0] > 4 * counts[1]


def test_the_result_is_an_ordinary_model_ready_to_save(single, tmp_path):
    model = single["model"]
    kernel = model.classifier.kernel[...]
    assert isinstance(kernel.sharding, jax.sharding.SingleDeviceSharding)
    assert model.classifier.kernel[...].device == jax.devices()[0]
    assert model.distilbert.transformer.layer[0].attention.dropout.deterministic  # eval mode
    model.save_pretrained(tmp_path)
    reloaded = FlaxDistilBertForTokenClassification.from_pretrained(tmp_path)
    for name, array in single["weights"].items():
        np.testing.assert_array_equal(weights(reloaded)[name], array, err_msg=name)


def test_resume_equals_the_uninterrupted_run(single):
    state, at_2 = single["state"], single["at_2"]
    assert int(state["step"]) == 2
    assert any(k.startswith("optimizer/") for k in state) and any(k.startswith("rng/") for k in state)
    model, logs = build("token_classification"), []
    load_canonical_state(model, at_2)
    training.finetune(model, uneven_token_batches(), start_step=2, state=state, on_step=counting(logs), **RECIPE)
    assert [step for step, _ in logs] == [3]
    assert_same_run(single["losses"][:2] + [logs[0][1]["loss"]], weights(model), single)


# ------------------------------------------------------------------------------ 2 host devices
def run_script(args, timeout=TIMEOUT, env=None):
    return subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args],
        env=env or worker_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def worker_env():
    env = dict(os.environ)
    root = os.path.dirname(HERE)
    env["PYTHONPATH"] = os.pathsep.join([root, HERE, env.get("PYTHONPATH", "")])
    env["JAX_PLATFORMS"] = "cpu"
    # Compiling dominates these tiny runs; XLA's unoptimised CPU code halves it and computes the same sums.
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
    return env


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("devices") / "result.npz"
    done = run_script(["devices", str(out)])
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(np.load(out, allow_pickle=False))


def unpack(result, prefix):
    weights = {k[len(prefix) + 1 :]: v for k, v in result.items() if k.startswith(prefix + "/")}
    return result[prefix + ".losses"].tolist(), weights


@pytest.mark.parametrize("mode", ["data_parallel", "fsdp", "fsdp_resumed"])
def test_two_host_devices_equal_one(two_devices, single, mode):
    assert_same_run(*unpack(two_devices, mode), single)


def test_fsdp_shards_parameters_and_optimiser_state(two_devices):
    """FSDP: each array lies on its largest axis that 2 divides, the optimiser's moments alike, before and
    after a step; replicated without FSDP. And the accounting says FSDP holds about half per device."""
    assert two_devices["checked_layout"] == 1
    assert two_devices["fsdp.parameters"] < 0.6 * two_devices["replicated.parameters"]
    assert two_devices["fsdp.optimizer"] < 0.6 * two_devices["replicated.optimizer"]
    assert two_devices["fsdp.arguments"] < two_devices["replicated.arguments"]  # XLA's count: state + batch
    assert two_devices["fsdp.peak"] > two_devices["fsdp.arguments"]


def strip(spec):
    """A partition spec without its trailing Nones (XLA drops them: ``P("data", None) == P("data")``)."""
    spec = tuple(spec)
    while spec and spec[-1] is None:
        spec = spec[:-1]
    return spec


def devices_worker(out):
    training.configure_devices(2)
    assert len(jax.devices()) == 2, jax.devices()
    with pytest.raises(RuntimeError, match="already started with 2 device"):
        training.configure_devices(3)
    result = {}
    for mode in ("data_parallel", "fsdp"):
        model, logs, saved = build("token_classification"), [], {}

        def on_save(step, state, model=model, saved=saved):
            saved.update(state=state, weights=canonical_state(model))

        training.finetune(model, uneven_token_batches(), devices=2, fsdp=mode == "fsdp", on_step=counting(logs),
                          save_every=2, on_save=on_save, **RECIPE)  # fmt: skip
        result[f"{mode}.losses"] = np.array([log["loss"] for _, log in logs])
        result.update({f"{mode}/{k}": v for k, v in weights(model).items()})

    # resumed FSDP: a new run from the weights and training state saved at step 2 (sharded when saved)
    resumed, more = build("token_classification"), []
    load_canonical_state(resumed, saved["weights"])
    training.finetune(resumed, uneven_token_batches(), start_step=2, state=saved["state"], devices=2, fsdp=True,
                      on_step=counting(more), **RECIPE)  # fmt: skip
    result["fsdp_resumed.losses"] = np.concatenate([result["fsdp.losses"][:2], [more[0][1]["loss"]]])
    result.update({f"fsdp_resumed/{k}": v for k, v in weights(resumed).items()})

    # the layout finetune's step keeps: placed, and after one step of the same jitted function
    mesh = training.data_mesh(2)
    model = build("token_classification")
    tx = training.adamw_with_warmup(total_steps=STEPS, **RECIPE)
    graphdef, host = training.functional_state(model, tx)
    for fsdp in (False, True):
        state = training.place_state(host, mesh, fsdp=fsdp)
        if fsdp:
            batch = {k: v.astype(np.int32) for k, v in uneven_token_batches()[0].items()}
            state, _ = training.make_train_step(graphdef, tx, mesh=mesh, fsdp=True)(
                state, training.global_batch(batch, mesh)
            )
        word = state.params["distilbert"]["embeddings"]["word_embeddings"]["embedding"][...]  # (99, 32)
        lin1 = state.params["distilbert"]["transformer"]["layer"][0]["ffn"]["lin1"]
        mu = state.opt_state[1][0].mu["distilbert"]["embeddings"]["word_embeddings"]["embedding"][...]
        for array, spec, shard in (
            (word, (None, "data"), (99, 16)),  # 99 is odd: the second axis
            (lin1["kernel"][...], ("data", None), (16, 37)),  # (32, 37)
            (lin1["bias"][...], (), (37,)),  # nothing divides: replicated
            (mu, (None, "data"), (99, 16)),
        ):
            if not fsdp:
                spec, shard = (), array.shape
            assert strip(array.sharding.spec) == strip(spec), (fsdp, array.sharding)
            assert [s.data.shape for s in array.addressable_shards] == [shard, shard]
    result["checked_layout"] = np.array(1)
    for mode in ("replicated", "fsdp"):
        memory = training.memory_per_device(
            CONFIG, task="token_classification", fsdp=mode == "fsdp", batch_size=4, seq_len=8
        )
        result.update({f"{mode}.{k}": np.array(v) for k, v in memory.items()})
    np.savez(out, **result)


# ------------------------------------------------------------------------------ 2 processes (jax.distributed)
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(single, tmp_path):
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "process", str(tmp_path / f"{i}.npz"), str(port), str(i)],
            env=worker_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    results = [dict(np.load(tmp_path / f"{i}.npz")) for i in range(2)]
    assert results[0]["steps_logged"] == STEPS and results[1]["steps_logged"] == 0  # process 0 alone reports
    assert results[0]["saves"] == 1 and results[1]["saves"] == 0
    for result in results:  # every process ends with the whole, unsharded model
        assert_same_run(single["losses"], unpack(result, "run")[1], single)
    assert_close(results[0]["run.losses"], single["losses"], name="losses")


def process_worker(out, port, process_id):
    training.init_distributed(f"127.0.0.1:{port}", 2, int(process_id), timeout_s=60)
    assert jax.process_count() == 2 and training.is_main_process() == (process_id == "0")
    model, logs, saves = build("token_classification"), [], []
    training.finetune(
        model,
        uneven_token_batches(),
        on_step=counting(logs),
        save_every=2,
        on_save=lambda step, state: saves.append(step),
        **RECIPE,
    )
    result = {"steps_logged": np.array(len(logs)), "saves": np.array(len(saves))}
    result["run.losses"] = np.array([log["loss"] for _, log in logs])
    result.update({f"run/{k}": v for k, v in weights(model).items()})
    np.savez(out, **result)
    jax.distributed.shutdown()


# ------------------------------------------------------------------------------ bad input
def test_bad_input_is_refused_with_a_clear_error():
    model = build("token_classification")
    good = uneven_token_batches()
    cases = [
        (TypeError, "bare encoder", dict(model=FlaxDistilBertModel(CONFIG), batches=good)),
        (TypeError, "sequence of global batches", dict(batches=iter(good))),
        (ValueError, "needs the training state", dict(start_step=1)),
        (ValueError, "past the 3 steps", dict(start_step=4, state={})),
        (ValueError, "learning_rate must be", dict(learning_rate=float("nan"))),
        (ValueError, "devices must be an integer >= 1", dict(devices=0)),
        (ValueError, "devices=2, but this process has 1 JAX device", dict(devices=2)),
        (ValueError, "unknown key.*'label'", dict(batches=[{"input_ids": good[0]["input_ids"], "label": 1}])),
        (ValueError, "batch 0 has no \\['labels'\\]", dict(batches=[{"input_ids": good[0]["input_ids"]}])),
        (ValueError, "batch 0: the arrays' first axes", dict(batches=[{**good[0], "labels": good[0]["labels"][:3]}])),
        (ValueError, "batch 0: .*vocab", dict(batches=[{**good[0], "input_ids": good[0]["input_ids"] + 1000}])),
        (
            ValueError,
            "batch 0: .*max_position_embeddings|batch 0: .*longer",
            dict(batches=[{k: np.tile(v, (1, 9)) for k, v in good[0].items()}]),
        ),  # fmt: skip
        (ValueError, "the training state has no 'step'", dict(start_step=1, state={"x": np.zeros(1)})),
        (
            ValueError,
            "saved at step 2, not at start_step=1",
            dict(start_step=1, state={**training_state_of(model), "step": np.array(2)}),
        ),  # fmt: skip
        (ValueError, "holds 0 optimizer arrays", dict(start_step=1, state={"step": np.array(1)})),
    ]
    for error, message, kwargs in cases:
        kwargs = {"model": model, "batches": good, **kwargs}
        with pytest.raises(error, match=message):
            training.finetune(kwargs.pop("model"), kwargs.pop("batches"), **kwargs)
    # a bad batch later in the run is named by its step, before anything is trained on it
    bad_later = good[:1] + [{**good[1], "labels": np.full((4, 8), 7)}]
    with pytest.raises(ValueError, match="batch 1: .*labels"):
        training.finetune(build("token_classification"), bad_later, devices=1, **RECIPE)


def training_state_of(model):
    tx = training.adamw_with_warmup(total_steps=STEPS, **RECIPE)
    return training.training_state(training.functional_state(model, tx)[1])


def test_device_and_process_set_up_is_checked():
    assert training.is_main_process()
    training.configure_devices(1)  # JAX runs here already with 1 device: enough
    with pytest.raises(RuntimeError, match="already started with 1 device.*configure_devices\\(2\\) before"):
        training.configure_devices(2)
    with pytest.raises(ValueError, match="positive|integer"):
        training.configure_devices(0)
    for args, message in (
        (("localhost", 2, 0), "HOST:PORT"),
        (("127.0.0.1:99999", 2, 0), "HOST:PORT"),
        (("127.0.0.1:1234", 0, 0), "num_processes"),
        (("127.0.0.1:1234", 2, 2), "process_id must be in \\[0, 2\\)"),
        (("127.0.0.1:1234", 2, 0), "JAX has already started"),
    ):
        with pytest.raises((ValueError, RuntimeError), match=message):
            training.init_distributed(*args)


def test_configure_devices_keeps_other_xla_flags():
    env = worker_env()
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=5"
    code = (
        "import os; from distilbert.flax import training; training.configure_devices(3); "
        "print(os.environ['XLA_FLAGS']); import jax; print(jax.device_count())"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    flags, count = done.stdout.split("\n")[:2]
    assert flags == "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=3"
    assert count == "3"


if __name__ == "__main__":  # the subprocesses' entry points
    {"devices": devices_worker, "process": process_worker}[sys.argv[1]](*sys.argv[2:])
