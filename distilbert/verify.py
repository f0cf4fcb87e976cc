"""``distilbert convert --verify``: run the source and the converted model, compare every output."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from distilbert.common.checkpoint import available_formats, open_native, pick_format
from distilbert.common.config import DistilBertConfig
from distilbert.conversion import keras_path, load_keras_model
from distilbert.frameworks import FORMAT_FRAMEWORK, from_pretrained, run


@dataclass
class VerifyReport:
    """The largest absolute difference per output between two checkpoints' models."""

    source: str
    target: str
    diffs: dict[str, float] = field(default_factory=dict)
    atol: float = 1e-5

    @property
    def max_diff(self) -> float:
        return max(self.diffs.values(), default=0.0)

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.atol

    def lines(self) -> list[str]:
        out = [f"verify: {self.source} vs {self.target}"]
        out += [f"  {name:24s} max |diff| {diff:.3g}" for name, diff in self.diffs.items()]
        out.append(
            f"  {'OK' if self.ok else 'FAILED'}: largest difference {self.max_diff:.3g} (tolerance {self.atol:g})"
        )
        return out


def _task_of(directory: str, config: DistilBertConfig) -> str:
    fmt, path = pick_format(directory)
    native, naming, task, _ = open_native(path, config, fmt)
    native.close()
    return task


def load_any(directory: str, task: str):
    """Loads ``directory`` in the framework of its weight format; returns ``(framework, model, label)``."""
    keras_file = keras_path(directory)
    if keras_file and not available_formats(directory):
        return "tf", load_keras_model(directory, keras_file)[0], f"keras ({os.path.basename(keras_file)})"
    fmt, _ = pick_format(directory)
    framework = FORMAT_FRAMEWORK[fmt]
    return framework, from_pretrained(framework, task, directory, weight_format=fmt), f"{framework} ({fmt})"


def random_batch(config: DistilBertConfig, task: str, seed: int = 0) -> dict[str, np.ndarray]:
    """A padded batch of 2 x 8 random ids (3 x 2 choices for multiple choice)."""
    rng = np.random.default_rng(seed)
    seq = min(8, config.max_position_embeddings)
    shape = (2, 3, seq) if task == "multiple_choice" else (2, seq)
    ids = rng.integers(0, config.vocab_size, size=shape)
    mask = np.ones(shape, np.int64)
    mask[1, ..., seq // 2 :] = 0
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask}


def verify(src: str, dst: str, atol: float = 1e-5) -> VerifyReport:
    """Runs both checkpoints' models on the same random batch and reports each output's difference."""
    from distilbert.common.hub import resolve_dir

    src = resolve_dir(src)
    config = DistilBertConfig.from_pretrained(src)
    task = _task_of(src, config)
    src_fw, src_model, src_label = load_any(src, task)
    dst_fw, dst_model, dst_label = load_any(os.fspath(dst), task)
    inputs = random_batch(config, task)
    kwargs = dict(output_hidden_states=True, output_attentions=True)
    want = run(src_fw, src_model, inputs, **kwargs)
    got = run(dst_fw, dst_model, inputs, **kwargs)
    report = VerifyReport(src_label, dst_label, atol=atol)
    for name, value in want.items():
        pairs = zip(value, got[name]) if isinstance(value, tuple) else [(value, got[name])]
        report.diffs[name] = max(
            float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) for a, b in pairs
        )
    return report
