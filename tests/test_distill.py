"""Distillation in the three frameworks: the triple loss, the training, and ``distilbert distill``."""

import importlib
import json
import os
import re

import numpy as np
import pytest
from helpers import PIPELINE_VOCAB, assert_close, random_inputs, random_state, tiny_config, write_tiny_checkpoint

from distilbert import cli, frameworks
from distilbert.common.distillation import (
    DistillationConfig,
    distillation_loss_numpy,
    mask_tokens,
    token_counts,
    token_weights,
)

FRAMEWORKS = ["pt", "tf", "flax"]
TERMS = ("loss", "ce", "mlm", "cos", "mse", "pool")


def backend(fw):
    return importlib.import_module(f"distilbert.{fw}.distill")


def tensor(fw, x):
    if x is None:
        return None
    if fw == "pt":
        import torch

        return torch.from_numpy(np.asarray(x))
    if fw == "tf":
        import tensorflow as tf

        return tf.constant(x)
    import jax.numpy as jnp

    return jnp.asarray(x)


def assert_terms(got, expected, name=""):
    """Terms at 1e-5, relative for the large ones (a logit MSE summed over the vocabulary reaches the
    hundreds, where float32 itself resolves only ~1e-5)."""
    assert set(got) == set(TERMS), got.keys()
    for term in TERMS:
        value, want = float(got[term]), float(expected[term])
        assert abs(value - want) <= 1e-5 * max(1.0, abs(want)), f"{name} {term}: {value} != {want}"


# -------------------------------------------------------------------------------------- the loss
def _arrays(seed=0, batch=3, seq=6, vocab=11, dim=8, classes=None, empty_row=False):
    rng = np.random.default_rng(seed)
    shape = (batch, classes) if classes else (batch, seq, vocab)
    s_logits, t_logits = (rng.normal(size=shape).astype(np.float32) for _ in range(2))
    s_hidden, t_hidden = (rng.normal(size=(batch, seq, dim)).astype(np.float32) for _ in range(2))
    mask = np.ones((batch, seq), np.int64)
    mask[1, 4:], mask[2, 2:] = 0, 0
    if empty_row:  # an example without a real token (all padding): nothing of it counts
        mask[1] = 0
    # Padded positions hold large values: they must not count.
    for array in (s_hidden, t_hidden) + (() if classes else (s_logits, t_logits)):
        array[mask == 0] = 50.0
    if classes:
        labels = np.array([1, -100, classes - 1][:batch])
    else:
        labels = np.full((batch, seq), -100)
        labels[0, 1], labels[0, 5], labels[1, 0], labels[2, 1] = 3, 0, vocab - 1, 7
    return s_logits, t_logits, s_hidden, t_hidden, mask, labels


CASES = {
    "mlm": (dict(), DistillationConfig()),
    "mlm-mse-restricted": (
        dict(),
        DistillationConfig(temperature=3.0, alpha_mse=0.5, alpha_pool=2.0, restrict_ce_to_mask=True),
    ),
    "mlm-no-labels": (dict(no_labels=True), DistillationConfig(temperature=1.0, alpha_mse=1.0, alpha_pool=0.5)),
    "classifier": (dict(classes=4), DistillationConfig(alpha_mse=0.3, alpha_pool=1.0)),
    "empty-row": (dict(empty_row=True), DistillationConfig(alpha_mse=0.3, alpha_pool=1.0)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_loss_equals_the_numpy_definition(fw, case):
    options, config = CASES[case]
    arrays = list(_arrays(classes=options.get("classes"), empty_row=options.get("empty_row", False)))
    if options.get("no_labels"):
        arrays[5] = np.full_like(arrays[5], -100)
    expected = distillation_loss_numpy(*arrays, config)
    got = backend(fw).distillation_loss(*(tensor(fw, a) for a in arrays), config)
    assert_terms(got, expected, case)
    assert all(expected[t] != 0 for t in ("ce", "cos", "mse")) and (expected["mlm"] == 0) == bool(
        options.get("no_labels")
    )
    assert expected["pool"] != 0  # computed whatever its weight, as every term whose inputs are there


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_loss_compiles_without_host_syncs(fw):
    """Under tf.function and jax.jit (values unknown while tracing) the loss is the same."""
    s_logits, t_logits, s_hidden, t_hidden, mask, labels = _arrays(seed=1)
    config = DistillationConfig(alpha_mse=1.0, alpha_pool=0.5, restrict_ce_to_mask=True)
    expected = distillation_loss_numpy(s_logits, t_logits, s_hidden, t_hidden, mask, labels, config)
    loss = backend(fw).distillation_loss
    if fw == "tf":
        import tensorflow as tf

        loss = tf.function(lambda *arrays: backend("tf").distillation_loss(*arrays, config))
        got = loss(*(tensor(fw, a) for a in (s_logits, t_logits, s_hidden, t_hidden, mask, labels)))
    elif fw == "flax":
        import jax

        got = jax.jit(loss, static_argnames="config")(
            s_logits, t_logits, s_hidden, t_hidden, mask, labels, config=config
        )
    else:
        import torch

        got = torch.compile(loss, backend="eager", fullgraph=True)(
            *(tensor(fw, a) for a in (s_logits, t_logits, s_hidden, t_hidden, mask, labels)), config
        )
    assert_terms(got, expected)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_a_teacher_without_logits_is_refused_unless_the_logit_terms_are_off(fw):
    s_logits, _, s_hidden, t_hidden, mask, labels = (tensor(fw, a) for a in _arrays(seed=2))
    with pytest.raises(ValueError, match="alpha_ce=5.0 needs teacher_logits .*bare encoder.*alpha_ce=0"):
        backend(fw).distillation_loss(s_logits, None, s_hidden, t_hidden, mask, labels, DistillationConfig())
    with pytest.raises(ValueError, match="alpha_mse=1.0 needs teacher_logits"):
        backend(fw).distillation_loss(
            s_logits, None, s_hidden, t_hidden, mask, labels, DistillationConfig(alpha_ce=0.0, alpha_mse=1.0)
        )
    with pytest.raises(ValueError, match="does not match attention_mask"):
        backend(fw).distillation_loss(
            s_logits, s_logits, s_hidden, t_hidden, mask[:, :-1], labels[:, :-1], DistillationConfig()
        )
    arrays = _arrays(seed=2)
    config = DistillationConfig(alpha_ce=0.0)
    got = backend(fw).distillation_loss(s_logits, None, s_hidden, t_hidden, mask, labels, config)
    expected = distillation_loss_numpy(arrays[0], None, *arrays[2:], config)
    assert float(got["ce"]) == 0.0 and float(got["mse"]) == 0.0
    assert_terms(got, expected)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_docstring_examples_run(fw):
    import doctest

    result = doctest.testmod(backend(fw))
    assert result.attempted >= 2 and result.failed == 0


# ---------------------------------------------------------------------------------- the training
TEACHER, STUDENT = tiny_config(), tiny_config(n_layers=1)
STEP = dict(learning_rate=1e-3, warmup_steps=1, weight_decay=0.1, max_grad_norm=0.5)
# The key bias gets an analytic gradient of 0 (softmax ignores a shift shared by all keys), so each
# framework's float rounding noise is what AdamW normalises: its updates are noise of size lr.
NOISE = "attention.k_lin.bias"


def _mlm_batch(seed=0):
    inputs = random_inputs(TEACHER, batch=4, seq=9, seed=seed)
    inputs["attention_mask"][0, 6:] = 0  # the two halves hold different numbers of tokens
    weights = token_weights(token_counts(inputs["input_ids"], TEACHER.vocab_size), [0], 0.7)
    config = DistillationConfig(mlm_mask_prop=0.3)
    ids, labels = mask_tokens(
        inputs["input_ids"], inputs["attention_mask"], weights, 4, config, np.random.default_rng(seed)
    )
    return {"input_ids": ids, "attention_mask": inputs["attention_mask"], "labels": labels}


def _class_batch(seed=0):
    inputs = random_inputs(TEACHER, batch=4, seq=9, seed=seed)
    return dict(inputs, labels=np.array([0, 1, -100, 1]))


TASK_SETUPS = {
    "masked_lm": (_mlm_batch, DistillationConfig(alpha_mse=0.01, alpha_pool=0.5)),
    "sequence_classification": (_class_batch, DistillationConfig(alpha_mse=0.1, alpha_pool=0.5)),
}


class Runs:
    """Training runs, made on first use and kept for the module (each framework compiles once per shape)."""

    def __init__(self):
        self.cache = {}

    def __call__(self, fw, task, steps=2, accumulation_steps=1):
        key = (fw, task, steps, accumulation_steps)
        if key not in self.cache:
            make_batch, config = TASK_SETUPS[task]
            teacher_state, student_state = random_state(TEACHER, task, 0), random_state(STUDENT, task, 1)
            teacher = frameworks.build(fw, task, TEACHER, teacher_state)
            student = frameworks.build(fw, task, STUDENT, student_state)
            batches = [make_batch(seed) for seed in range(steps)]
            first = frameworks.run(fw, student, batches[0], output_hidden_states=True)
            t_first = frameworks.run(fw, teacher, batches[0], output_hidden_states=True)
            reference = distillation_loss_numpy(
                first["logits"],
                t_first["logits"],
                first["hidden_states"][-1],
                t_first["hidden_states"][-1],
                batches[0]["attention_mask"],
                batches[0]["labels"],
                config,
            )
            log = []
            trained = backend(fw).distill(
                student,
                teacher,
                iter(batches),
                config,
                steps=steps,
                accumulation_steps=accumulation_steps,
                on_step=lambda step, terms: log.append((step, terms)),
                **STEP,
            )
            self.cache[key] = dict(
                log=log,
                reference=reference,
                before=student_state,
                teacher=teacher_state,
                after=frameworks.canonical_state(fw, trained),
                teacher_after=frameworks.canonical_state(fw, teacher),
            )
        return self.cache[key]


@pytest.fixture(scope="module")
def runs():
    return Runs()


@pytest.mark.parametrize("task", list(TASK_SETUPS))
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_training_reports_the_loss_and_leaves_the_teacher_alone(runs, fw, task):
    run = runs(fw, task)
    assert [step for step, _ in run["log"]] == [1, 2]
    assert_terms(run["log"][0][1], run["reference"], f"{fw} first step")
    for name, array in run["teacher"].items():
        np.testing.assert_array_equal(run["teacher_after"][name], array, err_msg=name)
    moved = max(float(np.abs(run["after"][n] - run["before"][n]).max()) for n in run["before"])
    assert moved > 5e-4, "the student did not train"


@pytest.mark.parametrize("task", list(TASK_SETUPS))
@pytest.mark.parametrize("fw", ["tf", "flax"])
def test_same_weights_after_the_same_updates_in_every_framework(runs, fw, task):
    """Two AdamW updates (warm-up, clipping, weight decay) from the same weights and batches."""
    ours, pt = runs(fw, task), runs("pt", task)
    for (_, got), (_, want) in zip(ours["log"], pt["log"]):
        assert_terms(got, want, fw)
    for name, want in pt["after"].items():
        if NOISE not in name:
            assert_close(ours["after"][name], want, name=f"{fw} {name}")


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_accumulating_two_half_batches_is_one_full_batch(runs, fw):
    whole, halves = runs(fw, "masked_lm"), runs(fw, "masked_lm", accumulation_steps=2)
    for (_, got), (_, want) in zip(halves["log"], whole["log"]):
        assert_terms(got, want, fw)
    for name, want in whole["after"].items():
        if NOISE not in name:
            assert_close(halves["after"][name], want, name=name)


def test_keras_distiller_trains_through_fit_with_callbacks():
    import keras

    from distilbert.tf.distill import Distiller, make_optimizer

    class Record(keras.callbacks.Callback):
        seen = []

        def on_train_batch_end(self, batch, logs=None):
            self.seen.append({k: float(v) for k, v in logs.items()})

    task = "masked_lm"
    teacher = frameworks.build("tf", task, TEACHER, random_state(TEACHER, task, 0))
    student = frameworks.build("tf", task, STUDENT, random_state(STUDENT, task, 1))
    distiller = Distiller(student, teacher, DistillationConfig())
    distiller.compile(optimizer=make_optimizer(student, 1e-3, steps=3))
    batch = _mlm_batch()
    history = distiller.fit(
        _repeat(batch, 3), steps_per_epoch=3, epochs=1, verbose=0, shuffle=False, callbacks=[Record()]
    )
    assert len(Record.seen) == 3 and set(TERMS) <= set(Record.seen[0])
    assert history.history["loss"] and int(distiller.optimizer.iterations) == 3
    assert not teacher.trainable and not distiller.teacher.trainable_variables


def _repeat(batch, n):
    for _ in range(n):
        yield (batch,)


# ---------------------------------------------------------------------------------- the command
WORDS = "the a cat dog sat on mat paris is capital of france london city river red blue house car good bad".split()


def _corpus(path, n=24, seed=0):
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(3, 10))) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    dirs = {task: str(root / task) for task in ("masked_lm", "base", "sequence_classification")}
    for task, directory in dirs.items():
        write_tiny_checkpoint(directory, task, n_layers=3, dropout=0.1)
    dirs["corpus"] = _corpus(root / "corpus.txt")
    tsv = root / "labelled.tsv"
    rng = np.random.default_rng(1)
    tsv.write_text(
        "label\tsentence\n"
        + "".join(f"{rng.integers(0, 2)}\t{' '.join(rng.choice(WORDS, size=5))}\n" for _ in range(12))
    )
    dirs["tsv"] = str(tsv)
    return dirs


def _run(args, capsys):
    code = cli.main(["distill", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _command(tiny, out, fw, *extra):
    return [
        "--teacher",
        tiny["masked_lm"],
        "--data",
        tiny["corpus"],
        "--out",
        str(out),
        "--framework",
        fw,
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--seed",
        "3",
        "-q",
        *extra,
    ]


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_distill_command_writes_the_student_with_its_tokenizer_and_log(tiny, tmp_path, capsys, fw):
    out, log = tmp_path / "student", tmp_path / "log.jsonl"
    code, _, err = _run(_command(tiny, out, fw, "--log", str(log)), capsys)
    assert code == 0, err
    names = set(os.listdir(out))
    assert {"config.json", "vocab.txt", "tokenizer_config.json", "distillation.json"} <= names
    model = frameworks.from_pretrained(fw, "masked_lm", str(out))
    teacher = frameworks.from_pretrained("pt", "masked_lm", tiny["masked_lm"])
    assert model.config.n_layers == 2  # teacher layers 0 and 2 of 3
    state, teacher_state = frameworks.canonical_state(fw, model), frameworks.canonical_state("pt", teacher)
    assert (
        state["distilbert.transformer.layer.1.ffn.lin1.weight"].shape
        == teacher_state["distilbert.transformer.layer.2.ffn.lin1.weight"].shape
    )
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in entries] == [1, 2, 3]
    assert all(set(e) == {"step", *TERMS} and np.isfinite(e["loss"]) for e in entries)


def test_distill_command_starts_the_student_from_the_chosen_teacher_layers(tiny, tmp_path, capsys):
    out = tmp_path / "student"
    code, _, err = _run(_command(tiny, out, "pt", "--layers", "2,1", "--lr", "0"), capsys)
    assert code == 0, err
    got = frameworks.canonical_state("pt", frameworks.from_pretrained("pt", "masked_lm", str(out)))
    want = frameworks.canonical_state("pt", frameworks.from_pretrained("pt", "masked_lm", tiny["masked_lm"]))
    for name, array in got.items():
        source = name.replace("layer.0.", "layer.2.").replace("layer.1.", "layer.1.")
        np.testing.assert_array_equal(array, want[source], err_msg=name)  # lr 0 (weight decay times lr too)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_resume_continues_the_same_trajectory(tiny, tmp_path, capsys, monkeypatch, fw):
    """Dropout is on (0.1): the RNG state travels in the checkpoint too."""
    from distilbert import distill as command

    whole, log_whole = tmp_path / "whole", tmp_path / "whole.jsonl"
    args = ["--steps", "4", "--save-every", "2"]
    assert _run(_command(tiny, whole, fw, *args, "--log", str(log_whole)), capsys)[0] == 0

    class Stop(Exception):
        pass

    save = command.save_checkpoint

    def save_then_stop(out, student, step, state, arguments):
        save(out, student, step, state, arguments)
        raise Stop  # as if killed after the checkpoint of step 2

    interrupted, log = tmp_path / "interrupted", tmp_path / "interrupted.jsonl"
    monkeypatch.setattr(command, "save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        cli.main(["distill", *_command(tiny, interrupted, fw, *args, "--log", str(log))])
    monkeypatch.setattr(command, "save_checkpoint", save)
    assert len(log.read_text().splitlines()) == 2
    code, _, err = _run(_command(tiny, interrupted, fw, *args, "--log", str(log), "--resume"), capsys)
    assert code == 0, err
    a = frameworks.canonical_state(fw, frameworks.from_pretrained(fw, "masked_lm", str(whole)))
    b = frameworks.canonical_state(fw, frameworks.from_pretrained(fw, "masked_lm", str(interrupted)))
    for name in a:
        assert_close(b[name], a[name], atol=1e-6, name=name)
    first = [json.loads(line) for line in log_whole.read_text().splitlines()]
    second = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in second] == [1, 2, 3, 4]
    for x, y in zip(first, second):
        assert y.pop("step") == x.pop("step")
        assert_terms(y, x)
    # Other arguments cannot resume this checkpoint.
    code, _, err = _run(_command(tiny, interrupted, fw, "--steps", "6", "--resume"), capsys)
    assert code == 2 and "other arguments (steps)" in err


def test_bert_teacher_and_text_classification(tiny, tmp_path, capsys):
    import transformers

    bert_dir = tmp_path / "bert"
    bert = transformers.BertForMaskedLM(
        transformers.BertConfig(
            vocab_size=len(PIPELINE_VOCAB),
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=64,
        )
    )
    bert.save_pretrained(bert_dir)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        src = os.path.join(tiny["masked_lm"], name)
        if os.path.isfile(src):
            (bert_dir / name).write_bytes(open(src, "rb").read())
    out = tmp_path / "from-bert"
    code, _, err = _run(
        [
            "--teacher",
            str(bert_dir),
            "--data",
            tiny["corpus"],
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--seq-len",
            "12",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["n_layers"] == 2  # layers 0 and 2 of 4
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_input_names"] == ["input_ids", "attention_mask"]

    # A given student (here the one just made) instead of teacher layers.
    again = tmp_path / "again"
    code, _, err = _run(
        [
            "--teacher",
            tiny["masked_lm"],
            "--student",
            str(out),
            "--data",
            tiny["corpus"],
            "--out",
            str(again),
            "--steps",
            "1",
            "--batch-size",
            "4",
            "--seq-len",
            "12",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads((again / "config.json").read_text())["n_layers"] == 2

    out = tmp_path / "classifier"
    code, _, err = _run(
        [
            "--teacher",
            tiny["sequence_classification"],
            "--data",
            tiny["tsv"],
            "--out",
            str(out),
            "--task",
            "text-classification",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--seq-len",
            "12",
            "-q",
            "--framework",
            "pt",
        ],
        capsys,
    )
    assert code == 0, err
    model = frameworks.from_pretrained("pt", "sequence_classification", str(out))
    assert model.config.n_layers == 2 and model.config.num_labels == 2


@pytest.mark.parametrize(
    "problem", ["missing corpus", "empty corpus", "bare teacher", "layer out of range", "repeated layer", "bad label"]
)
def test_bad_input_is_one_line_exit_2_and_no_output(tiny, tmp_path, capsys, problem):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    bad_tsv = tmp_path / "bad.tsv"
    bad_tsv.write_text("label\ttext\n7\tthe cat\n")
    out = tmp_path / "out"
    args = {
        "missing corpus": (["--data", str(tmp_path / "nope.txt")], "no corpus at"),
        "empty corpus": (["--data", str(empty)], "holds no text"),
        "bare teacher": (["--teacher", tiny["base"]], "has no masked-LM head.*--alpha-ce 0 --alpha-mlm 0"),
        "layer out of range": (["--layers", "0,3"], "layer 3 does not exist: the teacher has layers 0..2"),
        "repeated layer": (["--layers", "1,1"], "more than once"),
        "bad label": (
            ["--teacher", tiny["sequence_classification"], "--task", "text-classification", "--data", str(bad_tsv)],
            "label 7 is neither",
        ),
    }[problem]
    base = {"--teacher": tiny["masked_lm"], "--data": tiny["corpus"]}
    extra, message = args
    for flag in ("--teacher", "--data"):
        if flag not in extra:
            extra = [flag, base[flag], *extra]
    code, stdout, err = _run([*extra, "--out", str(out), "--steps", "1", "--batch-size", "2", "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not out.exists()


def test_a_bare_teacher_distils_the_hidden_states_alone(tiny, tmp_path, capsys):
    out = tmp_path / "bare"
    code, _, err = _run(
        [
            "--teacher",
            tiny["base"],
            "--data",
            tiny["corpus"],
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--seq-len",
            "12",
            "--alpha-ce",
            "0",
            "--alpha-mlm",
            "0",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["architectures"] == ["DistilBertModel"]


def test_batches_without_masking_are_the_plain_text():
    from distilbert.distill import Batches

    ids = np.arange(5, 29).reshape(6, 4)
    batches = Batches(ids, np.ones_like(ids), None, batch_size=4, seed=0)
    first, again = batches[1], batches[1]
    assert first["labels"] is None and first["input_ids"].shape == (4, 4)
    assert all(any((row == ids).all(axis=1)) for row in first["input_ids"])  # rows of the corpus, unchanged
    np.testing.assert_array_equal(first["input_ids"], again["input_ids"])


def test_the_command_masks_only_for_terms_that_learn_from_masked_inputs(tiny, tmp_path, capsys, monkeypatch):
    from distilbert import distill as command

    calls = []
    real_mask_tokens = command.mask_tokens
    monkeypatch.setattr(command, "mask_tokens", lambda *a, **k: calls.append(1) or real_mask_tokens(*a, **k))
    code, _, err = _run(_command(tiny, tmp_path / "recipe", "pt", "--steps", "1"), capsys)
    assert code == 0 and calls, err  # the paper's recipe: masked-LM and soft targets on masked inputs
    calls.clear()
    out, log = tmp_path / "pooled", tmp_path / "log.jsonl"
    hidden_only = ["--alpha-ce", "0", "--alpha-mlm", "0", "--alpha-cos", "0", "--alpha-pool", "1", "--log", str(log)]
    code, _, err = _run(_command(tiny, out, "pt", *hidden_only), capsys)
    assert code == 0 and not calls, err
    assert json.loads((out / "distillation.json").read_text())["alpha_pool"] == 1.0
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(row["loss"] == row["pool"] > 0 for row in rows) and len(rows) == 3
