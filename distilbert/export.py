"""The ``distilbert export`` command: a checkpoint as a deployable file, verified in its own runtime.

Each format comes from the backend that writes it (the same ``export``/``load`` API in each
``distilbert/{pt,tf,flax}/export.py``): ``onnx`` from PyTorch, ``saved-model`` and ``litert`` from
TensorFlow, ``stablehlo`` (serialized ``jax.export``) from JAX/Flax. ``OUT`` is a new directory holding
the artefact, ``config.json`` and the tokenizer files, so that Optimum's
``ORTModelFor<Task>.from_pretrained(OUT)`` loads an ONNX export. It is built under a temporary name
beside ``OUT`` and renamed into place only when everything, verification included, succeeded.

Example:
    >>> from distilbert.export import export_command  # doctest: +SKIP
    >>> export_command("distilbert-base-uncased-finetuned-sst-2-english", "sst2-onnx", "onnx")
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from distilbert.common import files
from distilbert.common.checkpoint import available_formats, open_native, pick_format, write_config
from distilbert.common.config import DistilBertConfig
from distilbert.common.convert import copy_tokenizer
from distilbert.common.hub import resolve_dir
from distilbert.common.names import TASKS
from distilbert.frameworks import EXTRAS, NAMES, from_pretrained, run

# Each format, the backend that writes it and the runtime that runs it (the module verification imports).
FORMATS = {
    "onnx": ("pt", "onnxruntime"),
    "saved-model": ("tf", "tensorflow"),
    "litert": ("tf", "ai_edge_litert"),
    "stablehlo": ("flax", "jax"),
}
QUANTIZABLE = ("onnx", "litert")  # dynamic int8 weights exist in these runtimes
ATOL = 1e-4  # float32 export vs the backend's model: another runtime's kernels and fusions
SHAPES = ((1, 7), (3, 19))  # (batch, sequence) of the two verification batches
CHOICES = (2, 3)  # multiple choice: choices of each verification batch
INSTALL = 'pip install "distilbert[export]"'


class ExportError(ValueError):
    """The export could not be verified (its outputs differ from the model's)."""


@dataclass
class ExportResult:
    """What :func:`export_command` wrote and how the export compared with the model."""

    out: str
    artefact: str  # path inside ``out``
    format: str
    framework: str
    task: str
    quantize: str | None
    files: list[str] = field(default_factory=list)
    verified: bool = False
    max_diff: float | None = None  # largest |export - model| over the verification batches and outputs
    cosine: float | None = None  # smallest cosine similarity of an output row to the model's (int8)
    lines: list[str] = field(default_factory=list)  # the verification report, as printed


def _check_arguments(format: str, quantize: str | None, opset: int | None, framework_task: str | None) -> None:
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    if quantize is not None and quantize != "int8":
        raise ValueError(f"unknown quantization {quantize!r}; expected int8")
    if quantize is not None and format not in QUANTIZABLE:
        raise ValueError(f"--quantize int8 applies to {' and '.join(QUANTIZABLE)}, not {format}")
    if opset is not None and format != "onnx":
        raise ValueError(f"--opset applies to onnx only, not {format}")
    if framework_task is not None and framework_task not in TASKS:
        raise ValueError(f"unknown head {framework_task!r}; expected one of {', '.join(TASKS)}")


def _backend(framework: str, format: str, verify: bool, quantize: str | None):
    """The backend's export module, after checking that its framework and runtime are installed."""
    needed = [{"pt": "torch", "tf": "tensorflow", "flax": "flax"}[framework]]
    if format == "onnx":
        needed += ["onnx", "onnxscript"] + (["onnxruntime"] if verify or quantize else [])
    elif verify or format == "litert":
        needed.append(FORMATS[format][1])
    missing = [m for m in dict.fromkeys(needed) if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"exporting {format} needs {', '.join(missing)}: {INSTALL} "
            f"(and the {NAMES[framework]} backend: pip install 'distilbert[{EXTRAS[framework]}]')"
        )
    try:
        return importlib.import_module(f"distilbert.{framework}.export")
    except ModuleNotFoundError as exc:
        if exc.name == f"distilbert.{framework}.export":
            missing = f"distilbert.{framework}.export"
            raise ImportError(f"this version of distilbert cannot export {format} (no {missing})") from None
        raise


def checkpoint_task(directory: str, config: DistilBertConfig) -> str:
    """The head the checkpoint's weights hold (read from the tensor names)."""
    if not available_formats(directory):
        raise FileNotFoundError(
            f"no checkpoint in {directory!r}: expected model.safetensors, pytorch_model.bin, tf_model.h5 or "
            "flax_model.msgpack beside config.json"
        )
    fmt, path = pick_format(directory)
    native, _, task, _ = open_native(path, config, fmt)
    native.close()
    return task


def verification_inputs(config: DistilBertConfig, task: str, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Two padded batches of random ids (:data:`SHAPES`, cut to the position table; choices for multiple choice)."""
    rng = np.random.default_rng(seed)
    batches = []
    for (batch, seq), choices in zip(SHAPES, CHOICES):
        seq = min(seq, config.max_position_embeddings)
        shape = (batch, choices, seq) if task == "multiple_choice" else (batch, seq)
        ids = rng.integers(0, config.vocab_size, size=shape).astype(np.int64)
        mask = np.ones(shape, np.int64)
        for i in range(1, batch):  # row i has i * seq // (2 * batch) padding tokens
            n_pad = i * seq // (2 * batch)
            if n_pad:
                mask[i, ..., seq - n_pad :] = 0
                ids[i, ..., seq - n_pad :] = config.pad_token_id
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


def compare(runner, framework: str, model, batches: list[dict[str, np.ndarray]]) -> tuple[float, float, list[str]]:
    """Runs the export and the model on every batch: ``(max |diff|, min row cosine, output names)``."""
    max_diff, cosine, names = 0.0, 1.0, []
    for inputs in batches:
        got = runner(inputs["input_ids"], inputs["attention_mask"])
        want = run(framework, model, inputs)
        names = list(got)
        for name, value in got.items():
            a, b = np.asarray(value, np.float64), np.asarray(want[name], np.float64)
            if a.shape != b.shape:
                raise ExportError(f"the export's {name} has shape {a.shape}, the model's {b.shape}")
            max_diff = max(max_diff, float(np.max(np.abs(a - b))) if a.size else 0.0)
            rows_a, rows_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
            norms = np.linalg.norm(rows_a, axis=1) * np.linalg.norm(rows_b, axis=1)
            cos = np.sum(rows_a * rows_b, axis=1) / np.maximum(norms, 1e-30)
            cosine = min(cosine, float(np.min(cos)))
    return max_diff, cosine, names


def export_command(
    model: str | os.PathLike,
    out: str | os.PathLike,
    format: str,
    quantize: str | None = None,
    opset: int | None = None,
    verify: bool = True,
    force: bool = False,
    framework_task: str | None = None,
    log=sys.stderr,
) -> ExportResult:
    """Exports the checkpoint ``model`` into the new directory ``out`` and verifies the export.

    Args:
        model: Checkpoint directory or hub id (config.json and weights in any format we read).
        out: The directory to write: the artefact, config.json and the tokenizer files.
        format: ``onnx``, ``saved-model``, ``litert`` or ``stablehlo``.
        quantize: ``"int8"`` (onnx, litert) for dynamic int8 weights; None keeps float32.
        opset: ONNX opset (onnx only).
        verify: Run the export in its runtime on two shapes and compare with the model: float32 must
            agree to :data:`ATOL` (else :class:`ExportError`, nothing written); int8 reports the largest
            difference and the smallest cosine and does not fail.
        force: Replace an existing ``out``.
        framework_task: The head to export (a name of :data:`distilbert.common.names.TASKS`); default
            the one the checkpoint's weights hold.
        log: Where the verification report goes (None: nowhere).

    Returns:
        An :class:`ExportResult`.

    Raises:
        ValueError: An unknown format or quantization, an option that does not apply to the format.
        FileExistsError: ``out`` exists and ``force`` is False.
        FileNotFoundError: No checkpoint at ``model``.
        ImportError: The backend or the runtime is not installed.
        ExportError: The export's outputs differ from the model's.
    """
    _check_arguments(format, quantize, opset, framework_task)
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out) and not force:
        raise FileExistsError(f"{out!r} exists; pass --force (force=True) to replace it")
    framework = FORMATS[format][0]
    backend = _backend(framework, format, verify, quantize)
    directory = resolve_dir(model)
    if os.path.abspath(directory) == out:
        raise ValueError("the checkpoint and the export directory are the same; choose another OUT")
    config = DistilBertConfig.from_pretrained(directory)
    task = framework_task or checkpoint_task(directory, config)
    net = from_pretrained(framework, task, directory)
    if framework == "pt":
        net.eval()

    with files.atomic_directory(out) as work:
        artefact = backend.export(net, work, format=format, quantize=quantize, opset=opset)
        write_config(work, net.config, task, framework)
        copy_tokenizer(directory, work, is_bert=False)
        result = ExportResult(
            out, os.path.relpath(artefact, work), format, framework, task, quantize, sorted(os.listdir(work))
        )
        if verify:
            _verify(result, backend.load(artefact), framework, net, config, log)
    return result


def _verify(result: ExportResult, runner, framework: str, model, config: DistilBertConfig, log) -> None:
    batches = verification_inputs(config, result.task)
    shapes = " and ".join("x".join(map(str, b["input_ids"].shape)) for b in batches)
    max_diff, cosine, names = compare(runner, framework, model, batches)
    result.max_diff, result.cosine = max_diff, cosine
    runtime = FORMATS[result.format][1]
    head = f"verify: {result.format} in {runtime} vs the {NAMES[framework]} model on {shapes} ({', '.join(names)})"
    if result.quantize:
        result.lines = [head, f"  int8: max |diff| {max_diff:.3g}, smallest row cosine {cosine:.6f} (not a failure)"]
        result.verified = True
    else:
        ok = max_diff <= ATOL
        result.lines = [head, f"  {'OK' if ok else 'FAILED'}: max |diff| {max_diff:.3g} (tolerance {ATOL:g})"]
        result.verified = ok
    if log is not None:
        for line in result.lines:
            print(line, file=log)
    if not result.verified:
        raise ExportError(
            f"verification failed: the {result.format} export differs from the model by {max_diff:.3g} > {ATOL:g} "
            "(nothing written; --no-verify writes it anyway)"
        )
