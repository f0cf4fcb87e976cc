"""``distilbert finetune``: bad input, the five tasks end to end in each framework, resume, and the same
weights from the same command in PyTorch, TensorFlow and JAX/Flax."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_close, gradients, task_inputs, write_tiny_checkpoint

from distilbert import DistilBertConfig, cli, frameworks

FRAMEWORKS = ["pt", "tf", "flax"]
TASKS = {
    "text-classification": "sequence_classification",
    "token-classification": "token_classification",
    "question-answering": "question_answering",
    "multiple-choice": "multiple_choice",
    "fill-mask": "masked_lm",
}
METRICS = {
    "text-classification": {"loss", "accuracy"},
    "token-classification": {"loss", "precision", "recall", "f1", "accuracy"},
    "question-answering": {"loss", "exact_match", "f1"},
    "multiple-choice": {"loss", "accuracy"},
    "fill-mask": {"loss", "accuracy", "perplexity"},
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------ data
WORDS = "the a cat dog sat on mat is of city river red blue house car big small good bad day night".split()
PLACES = ["paris", "london", "france", "new york"]


def _sentences(rng, n):
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 8))) for _ in range(n)]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def make_data(root, task, n, seed):
    rng = np.random.default_rng(seed)
    path = root / f"{task}-{seed}.jsonl"
    if task == "text-classification":
        rows = [{"text": t, "label": ["bad", "good"][i % 2]} for i, t in enumerate(_sentences(rng, n))]
        rows[1]["text_pair"] = "the red car"
        return _write_jsonl(path, rows)
    if task == "token-classification":
        rows = []
        for i in range(n):
            words = list(rng.choice(WORDS, size=rng.integers(2, 5)))
            at = int(rng.integers(0, len(words) + 1))
            person = ["ada", "lovelace"] if i % 2 else ["john", "smith"]
            words[at:at] = person + ["lived", "in", PLACES[i % 3]]
            tags = ["O"] * len(words)
            tags[at : at + 2] = ["B-PER", "I-PER"]
            tags[at + 4] = "B-LOC"
            rows.append({"tokens": words, "tags": tags})
        return _write_jsonl(path, rows)
    if task == "question-answering":
        rows = []
        for i in range(n):
            place = PLACES[i % 4]
            before, after = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 12)))), " ".join(rng.choice(WORDS, 5))
            context = f"{before} ada lived in {place} . {after}"
            start = context.index(place, len(before))
            rows.append(
                {
                    "question": "where did ada live?",
                    "context": context,
                    "answers": {"text": [place], "answer_start": [start]},
                }
            )
        return _write_jsonl(path, rows)
    if task == "multiple-choice":
        rows = [
            {
                "question": "where is paris?",
                "choices": list(rng.permutation(["in france", "on the mat", "a red car"])),
                "label": 0,
            }
            for _ in range(n)
        ]
        for row in rows:
            row["label"] = row["choices"].index("in france")
        rows[0].pop("question")
        return _write_jsonl(path, rows)
    path = root / f"corpus-{seed}.txt"
    path.write_text("\n".join(_sentences(rng, n)) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    dirs = {}
    for task in ("base", "masked_lm", "sequence_classification"):
        dirs[task] = str(root / task)
        labels = {"id2label": {0: "bad", 1: "good"}} if task == "sequence_classification" else {}
        write_tiny_checkpoint(dirs[task], task, **labels)
    for task in TASKS:
        dirs[task] = make_data(root, task, 12, seed=0)
        dirs[task + ":eval"] = make_data(root, task, 6, seed=1)
    return dirs


def _run(args, capsys):
    code = cli.main(["finetune", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _command(tiny, task, out, fw, *extra, model=None):
    return [
        "--task",
        task,
        "--model",
        model or tiny["base"],
        "--train",
        tiny[task],
        "--out",
        str(out),
        "--framework",
        fw,
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--max-length",
        "24",
        "--lr",
        "1e-3",
        "--seed",
        "3",
        "-q",
        *(["--max-length", "32"] if task == "question-answering" else []),
        *extra,
    ]


def _weights(fw, task, out):
    return frameworks.canonical_state(fw, frameworks.from_pretrained(fw, TASKS[task], str(out)))


# ------------------------------------------------------------------------------------ bad input
BAD_INPUT = {
    "no train file": (["--train", "nope.jsonl"], r"no data file at 'nope.jsonl'"),
    "no eval file": (["--eval", "nope.jsonl"], r"no data file at 'nope.jsonl'"),
    "not json": ("bad.jsonl:2: not JSON", r"bad.jsonl:2: not JSON"),
    "label outside the label set": ("eval-label", r"eval.jsonl:2: label 'meh' is not in the label set \(bad, good\)"),
    "answer not in its context": ("answer", r"qa.jsonl:1: answer 'dog' is not in its context"),
    "missing field": ("missing", r"bad.jsonl:1: missing field 'label'"),
    "pt --devices": (["--devices", "2"], r"--devices is for --framework tf and flax.*torchrun --nproc-per-node N"),
    "tf --fsdp": (["--framework", "tf", "--fsdp"], r"tf.distribute has no fully sharded"),
    "pt --coordinator": (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "0"], r"jax"),
    "flax --coordinator alone": (["--framework", "flax", "--coordinator", "127.0.0.1:1"], r"together"),
    "uneven batch": (["--framework", "flax", "--devices", "3"], r"--batch-size 4 does not split over 3 workers"),
    "batch too big": (["--batch-size", "16"], r"the batch size 16 exceeds the 12 training rows"),
    "too long": (["--max-length", "65"], r"--max-length 65 exceeds the model's 64 positions"),
    "epochs": (["--epochs", "0"], r"--epochs must be a number of at least 1"),
    "warmup": (["--warmup-ratio", "1.5"], r"--warmup-ratio must be in \[0, 1\]"),
    "no model": (["--model", "no/such-model-here"], r"."),
    "one class": ("one-class", r"the labels hold one class only"),
}


@pytest.mark.parametrize("problem", list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_no_output(tiny, tmp_path, capsys, monkeypatch, problem):
    monkeypatch.chdir(tmp_path)
    extra, message = BAD_INPUT[problem]
    task = "text-classification"
    if extra == "bad.jsonl:2: not JSON":
        (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": "good"}\n{"text": \n')
        extra = ["--train", "bad.jsonl"]
    elif extra == "missing":
        (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n')
        extra = ["--train", "bad.jsonl"]
    elif extra == "eval-label":
        (tmp_path / "eval.jsonl").write_text('{"text": "a", "label": "good"}\n{"text": "b", "label": "meh"}\n')
        extra = ["--eval", "eval.jsonl"]
    elif extra == "one-class":
        (tmp_path / "one.jsonl").write_text('{"text": "a", "label": "good"}\n' * 12)
        extra = ["--train", "one.jsonl"]
    elif extra == "answer":
        row = {"question": "q", "context": "the cat sat", "answers": {"text": ["dog"], "answer_start": [4]}}
        (tmp_path / "qa.jsonl").write_text(json.dumps(row) + "\n")
        task, extra = "question-answering", ["--train", "qa.jsonl"]
    out = tmp_path / "out"
    args = _command(tiny, task, out, "pt")
    for i in range(0, len(extra), 2):  # later flags win in argparse, except store_true ones: appended
        args += extra[i : i + 2]
    code, stdout, err = _run(args, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("distilbert finetune: error: ")
    assert re.search(message, err), err
    assert not out.exists()


def test_an_existing_output_needs_resume(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = _run(_command(tiny, "text-classification", out, "pt"), capsys)
    assert code == 2 and "exists; choose a new --out, or pass --resume" in err
    assert os.listdir(out) == []


def test_python_m_distilbert_finetune_is_the_command(tiny, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "distilbert",
            "finetune",
            *_command(tiny, "text-classification", out, "pt", "--epochs", "0"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 2 and "--epochs must be a number of at least 1" in run.stderr, run.stderr
    assert not out.exists()
    help_text = subprocess.run(
        [sys.executable, "-m", "distilbert", "finetune", "--help"], capture_output=True, text=True, timeout=120, env=env
    ).stdout
    for flag in (
        "--task",
        "--train",
        "--eval",
        "--warmup-ratio",
        "--log",
        "--resume",
        "--devices",
        "--fsdp",
        "--coordinator",
    ):
        assert flag in help_text


# --------------------------------------------------------------------------------- end to end
def _end_to_end(tiny, tmp_path, capsys, fw, task):
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    args = _command(tiny, task, out, fw, "--eval", tiny[task + ":eval"], "--log", str(log), "--epochs", "2")
    code, stdout, err = _run(args, capsys)
    assert code == 0, err
    names = set(os.listdir(out))
    assert {
        "config.json",
        "vocab.txt",
        "tokenizer_config.json",
        "finetune.json",
        "eval_results.json",
        "checkpoint",
    } <= names
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results) == METRICS[task] and all(np.isfinite(v) for v in results.values()), results
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in entries] == list(range(1, 7))  # 12 rows / 4 per step, 2 epochs
    assert all(set(e) == {"step", "epoch", "loss", "learning_rate", "examples_per_second"} for e in entries)
    assert entries[-1]["epoch"] == 2.0 and np.isfinite([e["loss"] for e in entries]).all()
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 6
    config = json.loads((out / "config.json").read_text())
    if task == "text-classification":
        assert config["id2label"] == {"0": "bad", "1": "good"}
    if task == "token-classification":
        assert config["id2label"] == {"0": "B-LOC", "1": "B-PER", "2": "I-PER", "3": "O"}
    state = _weights(fw, task, out)
    start = frameworks.canonical_state("pt", frameworks.from_pretrained("pt", "base", tiny["base"]))
    name = "transformer.layer.0.ffn.lin1.weight"
    assert not np.allclose(state["distilbert." + name], start[name]), "the body was not trained"
    return out


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_every_task_end_to_end(tiny, tmp_path, capsys, fw, task):
    _end_to_end(tiny, tmp_path, capsys, fw, task)


def test_a_head_whose_labels_fit_is_kept_and_new_labels_make_a_new_head(tiny, tmp_path, capsys):
    model = tiny["sequence_classification"]
    original = _weights("pt", "text-classification", model)
    kept = tmp_path / "kept"
    args = _command(tiny, "text-classification", kept, "pt", "--lr", "0", model=model)
    code, stdout, err = _run([a for a in args if a != "-q"], capsys)
    assert code == 0, err
    assert "new head" not in stdout
    for name, array in _weights("pt", "text-classification", kept).items():
        np.testing.assert_array_equal(array, original[name], err_msg=name)  # lr 0: nothing moves
    renamed = tmp_path / "renamed.jsonl"
    rows = [json.loads(line) for line in open(tiny["text-classification"])]
    _write_jsonl(renamed, [{**r, "label": {"bad": "negative", "good": "positive"}[r["label"]]} for r in rows])
    new = tmp_path / "new"
    args = _command(tiny, "text-classification", new, "pt", "--lr", "0", "--train", str(renamed), model=model)
    code, stdout, err = _run([a for a in args if a != "-q"], capsys)
    assert code == 0, err
    assert "a new head for 2 labels" in stdout
    assert json.loads((new / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}
    got = _weights("pt", "text-classification", new)
    assert not np.array_equal(got["classifier.weight"], original["classifier.weight"])
    np.testing.assert_array_equal(
        got["distilbert.embeddings.word_embeddings.weight"], original["distilbert.embeddings.word_embeddings.weight"]
    )


# ------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_resume_continues_the_same_trajectory(tiny, tmp_path, capsys, monkeypatch, fw):
    from distilbert import finetune as command

    task = "token-classification"
    whole, log_whole = tmp_path / "whole", tmp_path / "whole.jsonl"
    args = ["--epochs", "3", "--warmup-ratio", "0.2", "--weight-decay", "0.01"]
    assert _run(_command(tiny, task, whole, fw, *args, "--log", str(log_whole)), capsys)[0] == 0

    class Stop(Exception):
        pass

    save = command.save_checkpoint

    def save_then_stop(out, model, step, state, arguments):
        save(out, model, step, state, arguments)
        if step == 3:
            raise Stop  # as if killed after the checkpoint of the first epoch

    interrupted, log = tmp_path / "interrupted", tmp_path / "interrupted.jsonl"
    monkeypatch.setattr(command, "save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        cli.main(["finetune", *_command(tiny, task, interrupted, fw, *args, "--log", str(log))])
    monkeypatch.setattr(command, "save_checkpoint", save)
    assert len(log.read_text().splitlines()) == 3
    code, _, err = _run(_command(tiny, task, interrupted, fw, *args, "--log", str(log), "--resume"), capsys)
    assert code == 0, err
    a, b = _weights(fw, task, whole), _weights(fw, task, interrupted)
    for name in a:
        assert_close(b[name], a[name], atol=1e-6, name=name)
    first = [json.loads(line) for line in log_whole.read_text().splitlines()]
    second = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in second] == list(range(1, 10))
    for x, y in zip(first, second):
        assert abs(x["loss"] - y["loss"]) <= 1e-6 and x["learning_rate"] == y["learning_rate"]
    code, _, err = _run(_command(tiny, task, interrupted, fw, "--epochs", "4", "--resume"), capsys)
    assert code == 2 and "other arguments (epochs" in err


# ------------------------------------------------------------------------ the same in every framework
# Keras' own Adam adds its epsilon to the uncorrected sqrt(v) ("epsilon hat"); on a first step with the small body
# gradients behind a new 0.02-initialised head that moved tf ~10% less than PyTorch and Flax. distilbert.tf.training's
# AdamW adds it as PyTorch and optax do, which this test pins.
_PT_WEIGHTS: dict = {}


def _assert_same_outputs(got, want, task, config, atol, fw):
    """Two weight sets compute the same log-probabilities (what the losses see; run in PyTorch on padded inputs).

    Log-softmax, not logits: some weights only shift every logit of a softmax by the same amount (the
    question-answering head's bias moves every token's start logit), which no loss can see or train.
    """
    inputs = task_inputs(config, TASKS[task], batch=6, seq=12)
    outputs = [frameworks.run("pt", frameworks.build("pt", TASKS[task], config, s), inputs) for s in (got, want)]
    for name in outputs[1]:
        a, b = (out[name] - np.log(np.exp(out[name]).sum(-1, keepdims=True)) for out in outputs)
        assert_close(a, b, atol=atol, name=f"{fw} log-softmax of {name}")


def _first_batch_gradient(tiny, train, task, before, config):
    """PyTorch's gradient at the start of the one-step run, by canonical name (the command's first batch)."""
    from distilbert import DistilBertTokenizerFast
    from distilbert.common import finetune as ft

    model_task = TASKS[task]
    tokenizer = DistilBertTokenizerFast.from_pretrained(tiny["base"])
    records = ft.read_records(train, model_task)
    label2id = config.label2id if model_task in ft.LABELLED else None
    examples = ft.encode(train, records, model_task, tokenizer, 32 if task == "question-answering" else 24, label2id)
    masking = None
    if model_task == "masked_lm":
        masking = ft.masking_for(examples, config.vocab_size, tokenizer.all_special_ids, tokenizer.mask_token_id)
    batch = ft.Batches(examples.arrays, 4, 1, seed=3, masking=masking)[0]
    model = frameworks.build("pt", model_task, config, before)
    return gradients("pt", model, batch, config, model_task)


def _final(tiny, out, capsys, fw, task, *extra):
    """The command's final weights in ``fw``, and the model's config."""
    code, _, err = _run(_command(tiny, task, out, fw, *extra), capsys)
    assert code == 0, err
    return _weights(fw, task, out), DistilBertConfig.from_pretrained(str(out))


def _pt_final(tiny, tmp_path, capsys, task, name, *extra):
    """PyTorch's final weights, run once per ``(name, task)`` and reused for tf and flax."""
    if (name, task) not in _PT_WEIGHTS:
        _PT_WEIGHTS[name, task] = _final(tiny, tmp_path / f"pt-{name}", capsys, "pt", task, *extra)[0]
    return _PT_WEIGHTS[name, task]


@pytest.fixture(scope="module")
def one_batch(tiny, tmp_path_factory):
    """Each task's training file cut to one global batch of 4 rows: a run of one step."""
    root = tmp_path_factory.mktemp("one-batch")
    files = {}
    for task in TASKS:
        lines = open(tiny[task]).read().splitlines()[:4]
        files[task] = root / os.path.basename(tiny[task])
        files[task].write_text("\n".join(lines) + "\n")
    return {task: str(path) for task, path in files.items()}


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("fw", ["tf", "flax"])
def test_one_step_gives_the_same_weights_in_every_framework(tiny, one_batch, tmp_path, capsys, fw, task):
    """Dropout 0 (the tiny checkpoints'), the same global batch, the same new head: the same weights and outputs
    at 1e-5 (lr 1e-3: a wrong update is off by ~1e-3)."""
    extra = ("--train", one_batch[task], "--lr", "1e-3")
    got, config = _final(tiny, tmp_path / fw, capsys, fw, task, *extra)
    want = _pt_final(tiny, tmp_path, capsys, task, "one-step", *extra)
    before = _pt_final(tiny, tmp_path, capsys, task, "no-step", "--train", one_batch[task], "--lr", "0")
    # Adam's first update is lr * g / (|g| + eps): a gradient that is 0 but for rounding (the key biases, whose
    # constant a softmax over the keys ignores; the question-answering bias; ...) becomes an arbitrary step of up
    # to lr, different in every framework. Those elements are left out of the weights (the outputs cover them).
    grads = _first_batch_gradient(tiny, one_batch[task], task, before, config)
    scale = max(float(np.abs(g).max()) for g in grads.values())
    compared = 0
    for name, array in want.items():
        if name not in grads:  # tied and fixed rows
            continue
        sure = np.abs(grads[name]) > 1e-4 * scale
        compared += int(sure.sum())
        assert_close(got[name][sure], array[sure], atol=1e-5, name=f"{fw} {name}")
    assert compared > 0.5 * sum(g.size for g in grads.values()), "most weights must have a gradient"
    _assert_same_outputs(got, want, task, config, 1e-5, fw)


@pytest.mark.parametrize("task", ["text-classification", "token-classification", "question-answering"])
@pytest.mark.parametrize("fw", ["tf", "flax"])
def test_a_few_epochs_give_the_same_outputs_in_every_framework(tiny, tmp_path, capsys, fw, task):
    extra = ("--epochs", "4", "--warmup-ratio", "0.25", "--weight-decay", "0.01")
    got, config = _final(tiny, tmp_path / fw, capsys, fw, task, *extra)
    want = _pt_final(tiny, tmp_path, capsys, task, "epochs", *extra)
    _assert_same_outputs(got, want, task, config, 1e-4, fw)


# ------------------------------------------------------------------ the frameworks' engines, from the command
def _subprocess(args, timeout=300, env=None):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.path.join(ROOT, "tests"), **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)


def _assert_same_run(got, want, task, out, what):
    """An N-way run's weights are the 1-process run's at 1e-5, but for the attention key biases (their gradient is
    0 but for rounding, which the all-reduce changes, and Adam scales it up to the learning rate): the outputs,
    which they cannot change, are compared instead."""
    for name, array in want.items():
        if not name.endswith("attention.k_lin.bias"):
            assert_close(got[name], array, atol=1e-5, name=f"{what} {name}")
    _assert_same_outputs(got, want, task, DistilBertConfig.from_pretrained(str(out)), 1e-5, what)


@pytest.mark.parametrize("fw", ["tf", "flax"])
def test_two_devices_end_with_the_weights_of_one(tiny, tmp_path, capsys, fw):
    task = "token-classification"
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run(_command(tiny, task, one, fw), capsys)[0] == 0
    run = _subprocess(
        [sys.executable, "-m", "distilbert", "finetune", *_command(tiny, task, two, fw, "--devices", "2")]
    )
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_same_run(_weights(fw, task, two), _weights(fw, task, one), task, one, fw)


def test_torchrun_two_processes_end_with_the_weights_of_one(tiny, tmp_path, capsys):
    import socket

    task = "token-classification"
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run(_command(tiny, task, one, "pt"), capsys)[0] == 0
    for fsdp, out in ((False, two), (True, tmp_path / "fsdp")):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
        ]
        command = ["-m", "distilbert", "finetune", *_command(tiny, task, out, "pt", *(["--fsdp"] if fsdp else []))]
        run = _subprocess([*launcher, "--master-port", str(port), *command])
        assert run.returncode == 0, run.stderr[-3000:]
        _assert_same_run(_weights("pt", task, out), _weights("pt", task, one), task, one, f"fsdp={fsdp}")
