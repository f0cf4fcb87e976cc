"""Shared test helpers: the tiny config, random canonical weights, inputs, the reference oracle."""

from __future__ import annotations

import os

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from distilbert import DistilBertConfig
from distilbert.common.names import TASK_CLASSES, TIED, weight_table

# Odd sizes make shape bugs visible.
TINY = dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64)
ATOL = 1e-5


def tiny_config(**overrides) -> DistilBertConfig:
    """The tiny test config, dropout 0 unless asked, with ``overrides`` applied."""
    kw = dict(TINY, dropout=0.0, attention_dropout=0.0, qa_dropout=0.0, seq_classif_dropout=0.0)
    kw.update(overrides)
    return DistilBertConfig.from_dict(kw)


def random_state(config: DistilBertConfig, task: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random canonical weights with non-trivial LayerNorms and biases (float32), ties respected."""
    rng = np.random.default_rng(seed)
    table = weight_table(config, task)
    state = {}
    for spec in table:
        if spec.kind == TIED:
            continue
        if spec.kind == "sinusoidal":
            from distilbert.common.names import sinusoidal_table

            state[spec.name] = sinusoidal_table(*spec.shape)
        elif spec.kind == "norm_weight":
            state[spec.name] = (1.0 + 0.1 * rng.standard_normal(spec.shape)).astype(np.float32)
        else:
            state[spec.name] = (0.2 * rng.standard_normal(spec.shape)).astype(np.float32)
    for spec in table:
        if spec.kind == TIED:
            state[spec.name] = state[spec.tied_to]
    return state


def random_inputs(
    config: DistilBertConfig, batch: int = 3, seq: int = 7, seed: int = 0, choices: int | None = None
) -> dict[str, np.ndarray]:
    """A padded batch: row i has ``seq - i`` real tokens (row 0 full), int64 ids and mask."""
    rng = np.random.default_rng(seed)
    shape = (batch, choices, seq) if choices else (batch, seq)
    ids = rng.integers(1, config.vocab_size, size=shape).astype(np.int64)
    mask = np.ones(shape, np.int64)
    for i in range(batch):
        n_pad = min(i, seq - 1)
        if n_pad:
            mask[i, ..., seq - n_pad :] = 0
            ids[i, ..., seq - n_pad :] = config.pad_token_id
    return {"input_ids": ids, "attention_mask": mask}


def assert_close(actual, expected, atol: float = ATOL, name: str = "") -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    diff = np.max(np.abs(actual - expected)) if actual.size else 0.0
    assert np.allclose(actual, expected, atol=atol, rtol=0), f"{name}: max abs diff {diff:.3g} > {atol}"


# ------------------------------------------------------------------------------ reference oracle
def hf_config(config: DistilBertConfig):
    import transformers

    return transformers.DistilBertConfig.from_dict(config.to_dict())


def oracle_class(framework: str, task: str):
    import transformers

    prefix = {"pt": "", "tf": "TF", "flax": "Flax"}[framework]
    return getattr(transformers, prefix + TASK_CLASSES[task])


def oracle_pt_model(config: DistilBertConfig, task: str, state: dict[str, np.ndarray]):
    """The reference PyTorch model of ``task`` holding ``state``, in eval mode, eager attention."""
    import torch

    model = oracle_class("pt", task)(hf_config(config)).eval()
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected and not [m for m in missing if m != "vocab_projector.weight"], (missing, unexpected)
    return model


def write_oracle_dirs(root: str, config: DistilBertConfig, task: str, state, frameworks=("pt", "tf", "flax")):
    """Files written by the reference's own ``save_pretrained`` in each framework, holding ``state``.

    The PyTorch model gets ``state`` by ``load_state_dict``; TF and Flax models come from it through
    the reference's own ``from_pt`` conversion. Returns ``{framework: directory}``.
    """
    pt_dir = os.path.join(root, "pt")
    oracle_pt_model(config, task, state).save_pretrained(pt_dir)
    dirs = {"pt": pt_dir}
    for fw in frameworks:
        if fw == "pt":
            continue
        model = oracle_class(fw, task).from_pretrained(pt_dir, from_pt=True)
        dirs[fw] = os.path.join(root, fw)
        model.save_pretrained(dirs[fw])
    return dirs


# ------------------------------------------------------------------------- tiny checkpoints with a tokenizer
# A small lowercase WordPiece vocabulary: whole words, every letter as a word start and as a "##"
# continuation (so any ASCII word tokenizes, often into several pieces), and no digits (so numbers
# become [UNK]).
PIPELINE_VOCAB = list(
    dict.fromkeys(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", "!", "'", "-"]
        + (
            "the a an is was of in on and to it this that cat dog sat mat paris france capital city london river "
            "lives lived ada love lace john smith new york visited museum big small red blue house car good bad "
            "movie film great terrible hate food day night where do does who what when why how she he they "
            "went came saw"
        ).split()
        + list("abcdefghijklmnopqrstuvwxyz")
        + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
        + ["##s", "##ed", "##ing", "##ly", "##er"]
    )
)


def write_tiny_checkpoint(directory: str, task: str, seed: int = 0, **config_overrides):
    """A tiny checkpoint for ``task`` with tokenizer files, as the reference PyTorch class saves it.

    The config is :func:`tiny_config` sized to :data:`PIPELINE_VOCAB`; the tokenizer's
    ``model_max_length`` is the model's position count, so the reference pipelines cut where ours do.
    Returns ``(config, state)``.
    """
    from distilbert import DistilBertTokenizerFast

    config = tiny_config(vocab_size=len(PIPELINE_VOCAB), **config_overrides)
    state = random_state(config, task, seed)
    oracle_pt_model(config, task, state).save_pretrained(directory)
    vocab_file = os.path.join(directory, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as fh:
        fh.write("\n".join(PIPELINE_VOCAB) + "\n")
    DistilBertTokenizerFast(vocab_file=vocab_file, model_max_length=config.max_position_embeddings).save_pretrained(
        directory
    )
    return config, state
