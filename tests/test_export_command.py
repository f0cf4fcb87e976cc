"""The ``distilbert export`` command end to end (ONNX), its verification, and bad input: one line, exit code 2,
nothing written."""

from __future__ import annotations

import importlib.util
import os
import sys
import types

import numpy as np
import pytest
from helpers import ATOL, assert_close, oracle_pt_model, to_torch, write_tiny_checkpoint

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import torch  # noqa: E402

from distilbert import export as export_module  # noqa: E402
from distilbert.cli import main  # noqa: E402
from distilbert.pt.export import load  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny sequence classifier with tokenizer files: ``(directory, config, state)``."""
    directory = str(tmp_path_factory.mktemp("ckpt") / "classifier")
    config, state = write_tiny_checkpoint(directory, "sequence_classification", num_labels=3)
    return directory, config, state


def cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _leftovers(parent) -> list[str]:
    return sorted(os.listdir(parent))


def test_onnx_export_end_to_end(checkpoint, tmp_path, capsys):
    ckpt, config, state = checkpoint
    out = tmp_path / "onnx"
    code, stdout, stderr = cli(["export", ckpt, out, "--format", "onnx"], capsys)
    assert code == 0, stderr
    assert "verify: onnx in onnxruntime vs the PyTorch model on 1x7 and 3x19 (logits)" in stderr
    assert "OK: max |diff|" in stderr
    assert f"wrote onnx (sequence_classification, from pt) to {out}" in stdout
    files = set(os.listdir(out))
    assert {"model.onnx", "config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= files
    assert _leftovers(tmp_path) == ["onnx"]  # no work directory left beside OUT
    with open(out / "config.json") as fh:
        assert '"DistilBertForSequenceClassification"' in fh.read()
    # The file gives the reference's numbers.
    rng = np.random.default_rng(0)
    ids = rng.integers(0, config.vocab_size, (2, 13))
    mask = np.ones_like(ids)
    mask[1, 9:] = 0
    with torch.no_grad():
        want = oracle_pt_model(config, "sequence_classification", state)(
            **to_torch({"input_ids": ids, "attention_mask": mask})
        ).logits
    assert_close(load(str(out / "model.onnx"))(ids, mask)["logits"], want, ATOL)


def test_int8_reports_the_difference_and_the_cosine(checkpoint, tmp_path, capsys):
    out = tmp_path / "int8"
    code, stdout, stderr = cli(["export", checkpoint[0], out, "--format", "onnx", "--quantize", "int8"], capsys)
    assert code == 0, stderr
    assert "int8: max |diff|" in stderr and "smallest row cosine" in stderr
    assert "wrote onnx int8" in stdout


def test_no_verify_skips_the_runtime_and_force_replaces(checkpoint, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    calls = []
    monkeypatch.setattr("distilbert.pt.export.load", lambda path: calls.append(path))
    code, _, stderr = cli(["export", checkpoint[0], out, "--format", "onnx", "--no-verify", "--force"], capsys)
    assert code == 0, stderr
    assert calls == [] and "verify" not in stderr
    assert "old.txt" not in os.listdir(out) and "model.onnx" in os.listdir(out)
    assert _leftovers(tmp_path) == ["out"]


def test_quiet_prints_nothing(checkpoint, tmp_path, capsys):
    code, stdout, stderr = cli(["export", checkpoint[0], tmp_path / "q", "--format", "onnx", "-q"], capsys)
    assert code == 0 and stdout == "" and stderr == ""


def test_the_api_returns_what_it_wrote(checkpoint, tmp_path):
    result = export_module.export_command(checkpoint[0], tmp_path / "api", "onnx", log=None)
    assert (result.format, result.framework, result.task, result.artefact) == (
        "onnx",
        "pt",
        "sequence_classification",
        "model.onnx",
    )
    assert result.verified and result.max_diff <= export_module.ATOL and result.cosine > 0.9999
    assert "model.onnx" in result.files


def test_the_head_can_be_chosen(checkpoint, tmp_path):
    result = export_module.export_command(checkpoint[0], tmp_path / "base", "onnx", framework_task="base", log=None)
    assert result.task == "base"
    assert list(load(os.path.join(result.out, "model.onnx"))(np.array([[2, 7, 3]]))) == ["last_hidden_state"]


# ----------------------------------------------------------------------------------------------- bad input
def _bad(capsys, tmp_path, args):
    """Runs a command that must fail: returns its one stderr line, after checking nothing was written."""
    before = _leftovers(tmp_path)
    code, stdout, stderr = cli(args, capsys)
    assert code == 2, (code, stderr)
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distilbert export: error: "), stderr
    assert _leftovers(tmp_path) == before  # no OUT, no work directory
    return lines[0]


def test_no_checkpoint(tmp_path, capsys):
    line = _bad(capsys, tmp_path, ["export", tmp_path / "missing", tmp_path / "out", "--format", "onnx"])
    assert "no directory" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text('{"model_type": "distilbert"}')
    line = _bad(capsys, tmp_path, ["export", empty, tmp_path / "out", "--format", "onnx"])
    assert "no checkpoint" in line


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--format", "tflite"],
            "unknown export format 'tflite'; expected one of onnx, saved-model, litert, stablehlo",
        ),
        (["--format", "onnx", "--quantize", "int4"], "unknown quantization 'int4'"),
        (["--format", "stablehlo", "--quantize", "int8"], "--quantize int8 applies to onnx and litert, not stablehlo"),
        (["--format", "litert", "--opset", "18"], "--opset applies to onnx only"),
    ],
)
def test_bad_options(extra, message, checkpoint, tmp_path, capsys):
    assert message in _bad(capsys, tmp_path, ["export", checkpoint[0], tmp_path / "out", *extra])


def test_existing_out_without_force_is_left_alone(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert "exists; pass --force" in _bad(capsys, tmp_path, ["export", checkpoint[0], out, "--format", "onnx"])
    assert os.listdir(out) == ["keep.txt"]


def test_a_missing_runtime(checkpoint, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    line = _bad(capsys, tmp_path, ["export", checkpoint[0], tmp_path / "out", "--format", "onnx"])
    assert "needs onnxruntime" in line and 'pip install "distilbert[export]"' in line


def test_a_failed_verification_writes_nothing(checkpoint, tmp_path, capsys, monkeypatch):
    real_load = load

    def off_by_a_bit(path):
        runner = real_load(path)
        return lambda ids, mask: {k: v + 1e-3 for k, v in runner(ids, mask).items()}

    monkeypatch.setattr("distilbert.pt.export.load", off_by_a_bit)
    code, stdout, stderr = cli(["export", checkpoint[0], tmp_path / "out", "--format", "onnx"], capsys)
    assert code == 2 and stdout == ""
    assert "FAILED: max |diff| 0.001" in stderr
    assert stderr.strip().splitlines()[-1].startswith("distilbert export: error: verification failed")
    assert _leftovers(tmp_path) == []


def test_a_failing_export_writes_nothing(checkpoint, tmp_path, capsys, monkeypatch):
    def broken(model, directory, **kwargs):
        with open(os.path.join(directory, "model.onnx"), "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr("distilbert.pt.export.export", broken)
    assert "disk full" in _bad(capsys, tmp_path, ["export", checkpoint[0], tmp_path / "out", "--format", "onnx"])


# ------------------------------------------------------------------------------ dispatch to the other backends
@pytest.mark.parametrize("format, framework", [("saved-model", "tf"), ("litert", "tf"), ("stablehlo", "flax")])
def test_each_format_goes_to_its_backend(format, framework, checkpoint, tmp_path, monkeypatch):
    """The TensorFlow and Flax exporters (distilbert/tf/export.py, distilbert/flax/export.py) share the PyTorch
    one's API; stand-ins for them record what the command asks, and run the PyTorch model as their runtime."""
    from distilbert.frameworks import from_pretrained as real_from_pretrained
    from distilbert.frameworks import run as run_any

    asked = {}
    fake = types.ModuleType(f"distilbert.{framework}.export")

    def fake_export(model, directory, *, format, quantize=None, opset=None):
        asked.update(format=format, quantize=quantize, opset=opset)
        path = os.path.join(directory, "artefact")
        open(path, "w").close()
        return path

    fake.export = fake_export
    fake.load = lambda path: lambda ids, mask: run_any("pt", asked["model"], {"input_ids": ids, "attention_mask": mask})
    monkeypatch.setitem(sys.modules, f"distilbert.{framework}.export", fake)

    def fake_from_pretrained(fw, task, directory):
        asked.update(framework=fw, task=task, model=real_from_pretrained("pt", task, directory).eval())
        return asked["model"]

    monkeypatch.setattr(export_module, "from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(export_module, "run", lambda fw, model, inputs: run_any("pt", model, inputs))
    real_find_spec = importlib.util.find_spec
    # Every runtime "installed" (TensorFlow, LiteRT, JAX need not be, for stand-ins).
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: real_find_spec(name, *a) or object())
    quantize = "int8" if format == "litert" else None
    result = export_module.export_command(checkpoint[0], tmp_path / "out", format, quantize=quantize, log=None)
    assert asked["framework"] == framework and asked["task"] == "sequence_classification"
    assert (asked["format"], asked["quantize"], asked["opset"]) == (format, quantize, None)
    assert result.framework == framework and result.verified
    assert sorted(os.listdir(tmp_path / "out"))[:2] == ["artefact", "config.json"]
