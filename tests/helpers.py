"""Shared test helpers: the tiny config, random canonical weights, inputs and labels, running any backend
(``ours``, ``run``, ``call``, ``gradients``), comparing (``assert_close``, ``compare``), the reference oracle."""

from __future__ import annotations

import os

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Mapping
from typing import Any

import numpy as np

from distilbert import DistilBertConfig
from distilbert.common.names import SINUSOIDAL, TASK_CLASSES, TIED, weight_table
from distilbert.frameworks import run, to_numpy  # noqa: F401  (run: the one numpy-in/numpy-out runner)

# Odd sizes make shape bugs visible.
TINY = dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64)
ATOL = 1e-5  # float32 parity with another implementation (the reference, another backend)
# The same weights run twice on the same inputs. Not 0: the kernels differ by CPU, and two paths that
# agree bit for bit on one CPU can differ by an ulp on another (docs/numerics.md).
SAME_ATOL = 1e-6


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


def task_inputs(config: DistilBertConfig, task: str, batch: int = 3, seq: int = 7, seed: int = 0):
    """:func:`random_inputs` for ``task``; ``batch`` counts sequences.

    Multiple choice: ``batch // 3`` questions (at least one) of 3 choices each, padded differently within a
    question, so its encoder sees the same shapes as the other tasks' (jax compiles per shape).
    """
    if task != "multiple_choice":
        return random_inputs(config, batch, seq, seed)
    questions = max(1, batch // 3)
    inputs = random_inputs(config, questions, seq, seed, choices=3)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    for i in range(questions):
        for c in range(3):
            n_pad = min((i + c) % 3, seq - 1)
            real = slice(0, seq - n_pad)
            ids[i, c, real] = np.where(ids[i, c, real] == config.pad_token_id, 1, ids[i, c, real])
            mask[i, c, real] = 1
            ids[i, c, seq - n_pad :] = config.pad_token_id
            mask[i, c, seq - n_pad :] = 0
    return inputs


def task_labels(config: DistilBertConfig, task: str, inputs, seed: int = 1) -> dict[str, np.ndarray]:
    """Labels of each head, numpy int64: ignored (-100) ones, and question-answering positions past the end
    and negative (both clamped, the first then ignored, as the reference does). ``{}`` for the bare model."""
    rng = np.random.default_rng(seed)
    ids = inputs["input_ids"]
    if task in ("masked_lm", "token_classification"):
        labels = rng.integers(0, config.vocab_size if task == "masked_lm" else config.num_labels, ids.shape)
        labels[inputs["attention_mask"] == 0] = -100
        labels[:, ::3] = -100
        return {"labels": labels}
    if task == "sequence_classification":
        return {"labels": rng.integers(0, config.num_labels, ids.shape[:1])}
    if task == "multiple_choice":
        return {"labels": rng.integers(0, ids.shape[1], ids.shape[:1])}
    if task == "question_answering":
        seq = ids.shape[1]
        start, end = np.array([1, seq + 3, 0]), np.array([4, 2, -5])
        return {"start_positions": np.resize(start, ids.shape[:1]), "end_positions": np.resize(end, ids.shape[:1])}
    return {}


def assert_close(actual, expected, atol: float = ATOL, name: str = "") -> None:
    """Same shape and every element within ``atol`` (absolute); framework tensors are converted."""
    actual, expected = np.asarray(to_numpy(actual), np.float64), np.asarray(to_numpy(expected), np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    diff = np.max(np.abs(actual - expected)) if actual.size else 0.0
    assert np.allclose(actual, expected, atol=atol, rtol=0), f"{name}: max abs diff {diff:.3g} > {atol}"


def compare(actual, expected, atol: float = ATOL, name: str = "output") -> None:
    """``actual`` matches ``expected``: outputs (the same fields in the same order), tuples or tensors."""
    if hasattr(expected, "keys"):
        assert list(actual.keys()) == list(expected.keys()), f"{name}: {list(actual.keys())} != {list(expected.keys())}"
        for key in expected.keys():
            compare(actual[key], expected[key], atol, f"{name}.{key}")
    elif isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)), f"{name}: {type(actual).__name__} is not a tuple"
        assert len(actual) == len(expected), f"{name}: {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            compare(a, e, atol, f"{name}[{i}]")
    else:
        assert_close(actual, expected, atol, name)


# ------------------------------------------------------------------------------ calling any backend
def ours(framework: str, task: str, config: DistilBertConfig, state=None, **kwargs):
    """Our model of ``task`` in ``framework`` holding ``state`` (fresh weights without one), in inference mode;
    ``kwargs`` go to the constructor (``attn_implementation=``, ``dtype=``, ``remat=``, ...)."""
    from distilbert.frameworks import load_canonical_state, model_class

    model = model_class(framework, task)(config, **kwargs)
    if state is not None:
        load_canonical_state(framework, model, state)
    if framework == "pt":
        model.eval()
    return model


def call(framework: str, model, inputs: Mapping[str, np.ndarray], **kwargs) -> Any:
    """``model`` (ours or the reference's, of ``framework``) on numpy ``inputs``, in inference mode: its own
    output object (or tuple). :func:`run` gives numpy outputs instead."""
    if framework == "pt":
        import torch

        with torch.no_grad():
            return model(**to_torch(inputs), **kwargs)
    if framework == "tf":
        return model(dict(inputs), training=False, **kwargs)
    import jax.numpy as jnp

    return model(**{k: jnp.asarray(v) for k, v in inputs.items()}, **kwargs)


def numpy_outputs(out) -> dict[str, Any]:
    """An output object's non-None fields as numpy arrays (tuples of them for hidden states, attentions)."""
    return {k: to_numpy(v) for k, v in out.items() if v is not None}


def to_torch(arrays: Mapping[str, np.ndarray]) -> dict:
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def first_output(model):
    """A PyTorch ``model(ids, mask)`` as a module returning its first output as a tensor, for
    ``torch.jit.trace`` (a traced graph returns tensors, not output classes)."""
    import torch

    class FirstOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids, mask):
            return self.model(ids, mask, return_dict=False)[0]

    return FirstOutput()


def base_loss_weights(config: DistilBertConfig, batch: int) -> np.ndarray:
    """The bare model has no loss: tests differentiate ``sum(last_hidden_state * w)`` with these ``w``, a
    weighted sum over tokens and features averaged over the batch (a mean, as the heads' losses are)."""
    return (np.arange(config.dim) / config.dim / batch).astype(np.float32)


def gradients(
    framework: str, model, inputs: Mapping[str, np.ndarray], config: DistilBertConfig, task: str
) -> dict[str, np.ndarray]:
    """d(loss)/d(every trained tensor) by canonical name (tied and sinusoidal rows left out), canonical layout.

    ``model`` is ours or the reference's (PyTorch); the loss is the head's own (labels in ``inputs``), or
    ``sum(last_hidden_state * base_loss_weights)`` for the bare model.
    """
    rows = [s for s in weight_table(config, task) if s.kind not in (TIED, SINUSOIDAL)]
    w = base_loss_weights(config, len(inputs["input_ids" if "input_ids" in inputs else "inputs_embeds"]))
    if framework == "pt":
        import torch

        model.zero_grad()
        out = model(**to_torch(inputs))
        loss = (out.last_hidden_state * torch.from_numpy(w)).sum() if task == "base" else out.loss
        loss.backward()
        params = dict(model.named_parameters())
        return {s.name: params[s.name].grad.numpy() for s in rows}
    if framework == "tf":
        import tensorflow as tf

        from distilbert.tf.pretrained import variable_at

        variables = [variable_at(model, s.names["keras"]) for s in rows]
        with tf.GradientTape() as tape:
            out = model(dict(inputs), training=False)
            loss = tf.reduce_sum(out.last_hidden_state * w) if task == "base" else out.loss
        grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, variables)]  # IndexedSlices too
        return {s.name: (g.T if s.transposed else g) for s, g in zip(rows, grads)}
    import jax.numpy as jnp
    from flax import nnx

    def loss_fn(m):
        out = m(**{k: jnp.asarray(v) for k, v in inputs.items()}, deterministic=True)
        return jnp.sum(out.last_hidden_state * w) if task == "base" else out.loss

    flat = {"/".join(map(str, path)): np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.grad(loss_fn)(model))}
    return {s.name: (flat[s.names["nnx"]].T if s.transposed else flat[s.names["nnx"]]) for s in rows}


# ------------------------------------------------------------------------------ reference oracle
def hf_config(config: DistilBertConfig):
    import transformers

    return transformers.DistilBertConfig.from_dict(config.to_dict())


def oracle_class(framework: str, task: str):
    import transformers

    prefix = {"pt": "", "tf": "TF", "flax": "Flax"}[framework]
    return getattr(transformers, prefix + TASK_CLASSES[task])


def oracle_pt_model(config: DistilBertConfig, task: str, state: dict[str, np.ndarray], impl: str = "eager"):
    """The reference PyTorch model of ``task`` holding ``state``, in eval mode, attention ``impl``."""
    import torch

    hf = hf_config(config)
    hf._attn_implementation = impl  # the reference picks its attention classes at construction
    model = oracle_class("pt", task)(hf).eval()
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected and not [m for m in missing if m != "vocab_projector.weight"], (missing, unexpected)
    return model


def oracle_model(framework: str, config: DistilBertConfig, task: str, state, directory: str | None = None):
    """The reference class of ``task`` in ``framework`` holding ``state``.

    PyTorch: :func:`oracle_pt_model`. TF: loaded by the reference from a ``tf_model.h5`` we write into
    ``directory``. Flax: the model called with ``state`` as its parameters (the reference Flax classes compute
    no loss).
    """
    if framework == "pt":
        return oracle_pt_model(config, task, state)
    if framework == "tf":
        from distilbert.common.checkpoint import save_state

        save_state(directory, state, config, task, framework="tf", weight_format="tf")
        return oracle_class("tf", task).from_pretrained(directory)
    import functools

    import jax.numpy as jnp
    from flax.traverse_util import unflatten_dict

    from distilbert.common.names import to_native

    model = oracle_class("flax", task)(hf_config(config), _do_init=False)  # no random init to compile and drop
    native = to_native(state, "flax", weight_table(config, task))
    params = unflatten_dict({tuple(k.split("/")): jnp.asarray(v) for k, v in native.items()})
    return functools.partial(model, params=params)


def oracle_run(framework: str, model, inputs: Mapping[str, np.ndarray], **flags) -> dict[str, Any]:
    """The reference ``model`` of ``framework`` on numpy ``inputs``: numpy outputs (non-None fields)."""
    if framework == "flax":  # positional ids and mask; no labels, no training flag
        out = model(inputs["input_ids"], inputs.get("attention_mask"), **flags)
    else:
        out = call(framework, model, inputs, **flags)
    return numpy_outputs(out)


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
