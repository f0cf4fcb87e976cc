"""What the ``distill`` and ``finetune`` commands share: the model of a framework, seeding, the checkpoint a
run keeps in ``OUT/checkpoint``, the step log, and moving a finished result into ``OUT``.

A checkpoint is the model in its framework's format, the optimiser's state (``training_state.npz``) and
``trainer_state.json`` (the step and the run's arguments); ``--resume`` reads it back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from distilbert.common import files
from distilbert.common.config import DistilBertConfig

CHECKPOINT, STATE_FILE, TRAINER_FILE = "checkpoint", "training_state.npz", "trainer_state.json"


def build_model(framework: str, task: str, config: DistilBertConfig, state, seed: int):
    """The ``task`` model of ``framework`` holding the canonical ``state`` (Flax: dropout RNGs from ``seed``)."""
    from distilbert import frameworks

    if framework == "flax":
        model = frameworks.model_class("flax", task)(config, seed=seed)
        frameworks.load_canonical_state("flax", model, state)
        return model
    return frameworks.build(framework, task, config, state)


def seed_framework(framework: str, seed: int) -> None:
    """Seeds the framework's global generators (dropout in PyTorch and Keras; Flax's come from the model)."""
    if framework == "pt":
        import torch

        torch.manual_seed(seed)
    elif framework == "tf":
        import keras

        keras.utils.set_random_seed(seed)


def save_checkpoint(out: str, model, step: int, state: dict[str, np.ndarray], arguments: dict) -> None:
    """Writes ``OUT/checkpoint`` anew: built beside it, then swapped in (a crash leaves the old one or the new)."""
    work = tempfile.mkdtemp(prefix=".checkpoint-", suffix=".tmp", dir=out)
    try:
        model.save_pretrained(work)
        np.savez(os.path.join(work, STATE_FILE), **state)
        files.atomic_write_json(os.path.join(work, TRAINER_FILE), {"step": step, "arguments": arguments})
        files.public_mode(work)  # mkdtemp's 0700 would otherwise stay with the checkpoint
        target, old = os.path.join(out, CHECKPOINT), os.path.join(out, CHECKPOINT + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if os.path.isdir(target):
            os.rename(target, old)
        os.rename(work, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def find_checkpoint(out: str) -> str | None:
    """``OUT/checkpoint``, or ``OUT/checkpoint.old`` after a crash between :func:`save_checkpoint`'s renames."""
    for name in (CHECKPOINT, CHECKPOINT + ".old"):
        if os.path.isfile(os.path.join(out, name, TRAINER_FILE)):
            return os.path.join(out, name)
    return None


def trim_log(path: str, step: int) -> None:
    """Keeps the log's lines up to ``step`` (a resumed run writes the later ones again)."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as fh:
        kept = [line for line in fh if line.strip() and json.loads(line).get("step", 0) <= step]
    files.atomic_write_bytes(path, "".join(kept).encode("utf-8"))


@contextmanager
def result_directory(out: str) -> Iterator[str]:
    """Yields a work directory inside ``out``; if the block succeeds, each entry written there replaces the
    entry of that name in ``out`` (the checkpoint and the log stay). The work directory is always removed."""
    work = tempfile.mkdtemp(prefix=".result-", suffix=".tmp", dir=out)
    try:
        yield work
        for name in os.listdir(work):
            target = os.path.join(out, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(os.path.join(work, name), target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
