"""Converters: lossless in every direction and dtype, read by the reference, strict and atomic."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import ml_dtypes
import numpy as np
import pytest
from helpers import assert_close, oracle_class, oracle_pt_model, random_inputs, random_state, tiny_config

from distilbert.cli import main
from distilbert.common import files
from distilbert.common.checkpoint import load_state, save_state
from distilbert.common.names import TASKS
from distilbert.conversion import convert

CONFIG = tiny_config()


def _bits(array):
    return np.ascontiguousarray(array).view(np.uint8)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("task", ["masked_lm", "sequence_classification", "question_answering"])
def test_pt_tf_flax_pt_is_bit_exact(tmp_path, task, dtype):
    config = tiny_config(sinusoidal_pos_embds=task == "masked_lm")
    state = {k: v.astype(dtype) for k, v in random_state(config, task).items()}
    save_state(tmp_path / "pt", state, config, task)
    convert(tmp_path / "pt", tmp_path / "tf", to="tf")
    convert(tmp_path / "tf", tmp_path / "flax", to="flax")
    result = convert(tmp_path / "flax", tmp_path / "back", to="pt")
    assert result.task == task and result.source_format == "flax"
    got, _ = load_state(tmp_path / "back", config, task)
    for name, array in state.items():
        assert got[name].dtype == array.dtype, name
        np.testing.assert_array_equal(_bits(got[name]), _bits(array), err_msg=name)
    assert (tmp_path / "pt" / "model.safetensors").read_bytes() == (
        tmp_path / "back" / "model.safetensors"
    ).read_bytes()


def test_dtype_changes_only_when_asked(tmp_path):
    state = random_state(CONFIG, "base")
    save_state(tmp_path / "pt", state, CONFIG, "base")
    convert(tmp_path / "pt", tmp_path / "half", to="flax", dtype="bfloat16")
    got, _ = load_state(tmp_path / "half", CONFIG, "base")
    assert {a.dtype for a in got.values()} == {np.dtype(ml_dtypes.bfloat16)}
    np.testing.assert_array_equal(
        got["embeddings.LayerNorm.bias"], state["embeddings.LayerNorm.bias"].astype(ml_dtypes.bfloat16)
    )


@pytest.mark.parametrize("task", TASKS)
def test_converted_files_give_the_reference_its_outputs(tmp_path, task):
    """Source outputs from the reference PyTorch class; targets run in the reference TF and Flax classes."""
    import torch

    state = random_state(CONFIG, task, seed=3)
    choices = 2 if task == "multiple_choice" else None
    inputs = random_inputs(CONFIG, batch=2, seq=6, choices=choices)
    with torch.no_grad():
        want = oracle_pt_model(CONFIG, task, state)(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    key = "start_logits" if task == "question_answering" else ("last_hidden_state" if task == "base" else "logits")
    save_state(tmp_path / "src", state, CONFIG, task)
    for to in ("tf", "flax"):
        convert(tmp_path / "src", tmp_path / to, to=to)
        model = oracle_class(to, task).from_pretrained(tmp_path / to)
        got = model(**inputs) if to == "flax" else model(inputs, training=False)
        assert_close(np.asarray(got[key]), want[key].numpy(), name=f"{to} {key}")
    convert(tmp_path / "flax", tmp_path / "pt", to="pt")
    model = oracle_class("pt", task).from_pretrained(tmp_path / "pt").eval()
    with torch.no_grad():
        got = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    assert_close(got[key].numpy(), want[key].numpy(), name=f"pt {key}")


def test_config_and_tokenizer_files_travel(tmp_path):
    save_state(
        tmp_path / "src",
        random_state(CONFIG, "token_classification"),
        CONFIG.replace(id2label={0: "O", 1: "B-PER"}),
        "token_classification",
    )
    (tmp_path / "src" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    convert(tmp_path / "src", tmp_path / "tf", to="tf")
    config = json.loads((tmp_path / "tf" / "config.json").read_text())
    assert config["architectures"] == ["TFDistilBertForTokenClassification"]
    assert config["id2label"] == {"0": "O", "1": "B-PER"}
    assert (tmp_path / "tf" / "vocab.txt").read_text() == "[PAD]\n[UNK]\n"


def test_sharded_output(tmp_path):
    save_state(tmp_path / "src", random_state(CONFIG, "base"), CONFIG, "base", weight_format="flax")
    assert (
        main(
            [
                "convert",
                str(tmp_path / "src"),
                str(tmp_path / "out"),
                "--to",
                "pt",
                "--format",
                "safetensors-sharded",
                "--max-shard-size",
                "0.02",
                "-q",
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / files.SAFETENSORS_INDEX).exists()
    load_state(tmp_path / "out", CONFIG, "base")


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_reference_sharded_source(tmp_path, capsys, framework):
    """A sharded tf_model.h5 / flax_model.msgpack, as the reference saves it, converts and verifies."""
    task = "token_classification"
    state = random_state(CONFIG, task, seed=7)
    oracle_pt_model(CONFIG, task, state).save_pretrained(tmp_path / "pt")
    model = oracle_class(framework, task).from_pretrained(tmp_path / "pt", from_pt=True)
    model.save_pretrained(tmp_path / "src", max_shard_size="20KB")
    target = "flax" if framework == "tf" else "tf"
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out"), "--to", target, "--verify", "-q"]) == 0
    assert "OK" in capsys.readouterr().out
    got, report = load_state(tmp_path / "out", CONFIG, task)
    assert report.format == target
    for name, array in state.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)


@pytest.mark.parametrize("fmt", ["tf-sharded", "flax-sharded"])
def test_sharded_tf_and_flax_output(tmp_path, fmt):
    state = random_state(CONFIG, "sequence_classification", seed=3)
    save_state(tmp_path / "src", state, CONFIG, "sequence_classification")
    to = fmt.split("-")[0]
    assert (
        main(
            [
                "convert",
                str(tmp_path / "src"),
                str(tmp_path / "out"),
                "--to",
                to,
                "--format",
                fmt,
                "--max-shard-size",
                "0.02",
                "-q",
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / f"{files.TF_H5 if to == 'tf' else files.FLAX_MSGPACK}.index.json").exists()
    got, report = load_state(tmp_path / "out", CONFIG, "sequence_classification")
    assert report.format == fmt
    for name, array in state.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_conversion_imports_no_ml_framework(tmp_path):
    save_state(tmp_path / "src", random_state(CONFIG, "masked_lm"), CONFIG, "masked_lm")
    code = (
        f"import sys; from distilbert.cli import main; "
        f"assert main(['convert', {str(tmp_path / 'src')!r}, {str(tmp_path / 'out')!r}, '--to', 'flax', '-q']) == 0; "
        f"assert main(['convert', {str(tmp_path / 'out')!r}, {str(tmp_path / 'tf')!r}, '--to', 'tf', '-q']) == 0; "
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------- bad input
def _run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture
def source(tmp_path):
    save_state(tmp_path / "src", random_state(CONFIG, "question_answering"), CONFIG, "question_answering")
    return tmp_path / "src"


def test_missing_source(tmp_path, capsys):
    code, err = _run(["convert", str(tmp_path / "nope"), str(tmp_path / "out"), "--to", "tf"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "no directory" in err
    assert not (tmp_path / "out").exists()


def test_existing_destination_needs_force(source, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    code, err = _run(["convert", str(source), str(tmp_path / "out"), "--to", "flax"], capsys)
    assert code == 2 and "--force" in err and (tmp_path / "out" / "keep").exists()
    assert main(["convert", str(source), str(tmp_path / "out"), "--to", "flax", "--force", "-q"]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "flax_model.msgpack"]


def test_unknown_format(source, tmp_path, capsys):
    code, err = _run(["convert", str(source), str(tmp_path / "out"), "--to", "pt", "--format", "onnx"], capsys)
    assert code == 2 and "onnx" in err and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as info:
        main(["convert", str(source), str(tmp_path / "out"), "--to", "caffe"])
    assert info.value.code == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
@pytest.mark.parametrize("fmt", ["safetensors", "tf", "flax"])
def test_truncated_or_corrupted_source(tmp_path, capsys, damage, fmt):
    framework = {"safetensors": "pt", "tf": "tf", "flax": "flax"}[fmt]
    path = save_state(tmp_path / "src", random_state(CONFIG, "base"), CONFIG, "base", framework, fmt)
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) * 2 // 3] if damage == "truncate" else data[:8] + b"\x17" * 64 + data[72:])
    code, err = _run(
        ["convert", str(tmp_path / "src"), str(tmp_path / "out"), "--to", "pt" if fmt != "safetensors" else "flax"],
        capsys,
    )
    assert code == 2 and len(err.splitlines()) == 1, err
    assert os.path.basename(path) in err
    assert not (tmp_path / "out").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".out")] == []


def test_config_weights_mismatch(source, tmp_path, capsys):
    config = json.loads((source / "config.json").read_text())
    config["dim"], config["hidden_dim"] = 48, 40
    (source / "config.json").write_text(json.dumps(config))
    code, err = _run(["convert", str(source), str(tmp_path / "out"), "--to", "tf"], capsys)
    assert code == 2 and "shape of" in err and "(48" in err
    assert not (tmp_path / "out").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_carrying_code(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    CONFIG.save_pretrained(tmp_path / "src")
    with open(tmp_path / "src" / files.PT_BIN, "wb") as fh:
        pickle.dump({"embeddings.word_embeddings.weight": _Payload()}, fh)
    code, err = _run(["convert", str(tmp_path / "src"), str(tmp_path / "out"), "--to", "flax"], capsys)
    assert code == 2 and "weights_only" in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


def test_shard_index_outside_directory(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    CONFIG.save_pretrained(tmp_path / "src")
    (tmp_path / "src" / files.SAFETENSORS_INDEX).write_text(
        json.dumps({"weight_map": {"embeddings.word_embeddings.weight": "/etc/passwd"}})
    )
    code, err = _run(["convert", str(tmp_path / "src"), str(tmp_path / "out"), "--to", "tf"], capsys)
    assert code == 2 and "outside its directory" in err and not (tmp_path / "out").exists()


def test_killed_conversion_leaves_no_destination(tmp_path):
    """A conversion killed mid-way (SIGKILL: no clean-up runs) leaves no destination directory."""
    big = tiny_config(vocab_size=30000, dim=256, n_heads=4, hidden_dim=1024, n_layers=6)
    save_state(tmp_path / "src", random_state(big, "masked_lm"), big, "masked_lm")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distilbert.cli",
            "convert",
            str(tmp_path / "src"),
            str(tmp_path / "out"),
            "--to",
            "flax",
            "-q",
        ]
    )
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.startswith(".out") for p in os.listdir(tmp_path)):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out").exists()
    # The killed process's hidden work directory is still there; the next conversion removes it, but
    # not the work directory of a conversion still running (this process stands in for one).
    leftover = [p for p in os.listdir(tmp_path) if p.startswith(f".out.{proc.pid}.")]
    assert leftover
    live = tmp_path / f".out.{os.getpid()}.abc123.tmp"
    live.mkdir()
    convert(tmp_path / "src", tmp_path / "out", to="tf")
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith(".out.")) == [live.name]


# ------------------------------------------------------------------------- Keras files, --verify
@pytest.mark.parametrize("fmt", ["keras-weights", "keras"])
def test_keras_formats_round_trip_exactly(tmp_path, fmt):
    state = random_state(CONFIG, "token_classification", seed=5)
    save_state(tmp_path / "src", state, CONFIG, "token_classification")
    convert(tmp_path / "src", tmp_path / "keras", to="keras", weight_format=fmt)
    assert (tmp_path / "keras" / ("model.keras" if fmt == "keras" else "model.weights.h5")).exists()
    result = convert(tmp_path / "keras", tmp_path / "back", to="pt")
    assert result.source_format == "keras" and result.task == "token_classification"
    got, _ = load_state(tmp_path / "back", CONFIG, "token_classification")
    for name in state:
        np.testing.assert_array_equal(got[name], state[name], err_msg=name)


def test_verify_reports_every_output_and_catches_a_bad_conversion(tmp_path, capsys):
    save_state(tmp_path / "src", random_state(CONFIG, "masked_lm"), CONFIG, "masked_lm")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "flax"), "--to", "flax", "--verify", "-q"]) == 0
    out = capsys.readouterr().out
    assert "logits" in out and "hidden_states" in out and "attentions" in out and "OK" in out

    from distilbert.verify import verify

    # damage one tensor of the converted checkpoint: verify must notice
    broken, _ = load_state(tmp_path / "flax", CONFIG, "masked_lm")
    name = "distilbert.transformer.layer.1.ffn.lin2.weight"
    broken[name] = broken[name] + np.random.default_rng(0).normal(0, 0.1, broken[name].shape).astype(np.float32)
    save_state(tmp_path / "broken", broken, CONFIG, "masked_lm", framework="flax", weight_format="flax")
    report = verify(str(tmp_path / "src"), str(tmp_path / "broken"))
    assert not report.ok and report.diffs["logits"] > 1e-3


def test_untied_projector_is_never_dropped_silently(tmp_path, capsys):
    config = tiny_config(tie_word_embeddings=False)
    save_state(tmp_path / "src", random_state(config, "masked_lm"), config, "masked_lm")
    code, err = _run(["convert", str(tmp_path / "src"), str(tmp_path / "tf"), "--to", "tf"], capsys)
    assert code == 2 and "vocab_projector.weight" in err and not (tmp_path / "tf").exists()
    convert(tmp_path / "src", tmp_path / "flax", to="flax")  # Flax stores an untied kernel
    got, _ = load_state(tmp_path / "flax", config, "masked_lm")
    assert not np.array_equal(got["vocab_projector.weight"], got["distilbert.embeddings.word_embeddings.weight"])


def test_written_files_get_the_umask_mode_not_private_temporary_ones(tmp_path):
    # mkstemp/mkdtemp create 0600/0700 entries; what is renamed into place must read like a plain write.
    state = random_state(CONFIG, "masked_lm")
    old = os.umask(0o022)
    try:
        save_state(tmp_path / "pt", state, CONFIG, "masked_lm")
        convert(tmp_path / "pt", tmp_path / "tf", to="tf")
    finally:
        os.umask(old)
    for path in [tmp_path / "pt" / "config.json", tmp_path / "tf", *(tmp_path / "tf").iterdir()]:
        expected = 0o755 if path.is_dir() else 0o644
        assert path.stat().st_mode & 0o777 == expected, path
