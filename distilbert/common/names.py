"""The weight-name table: every tensor of a DistilBERT model, named in every format.

The canonical name of a tensor is its Hugging Face PyTorch state-dict key and its canonical layout
is PyTorch's (a Linear weight is ``[out, in]``). For a config and a task, :func:`weight_table` lists
each tensor once, with its name in each format:

==========  ================================================  =========================================
format      example name                                      layout
==========  ================================================  =========================================
``pt``      ``distilbert.transformer.layer.0.ffn.lin1.weight`` canonical
``tf``      ``distilbert/transformer/layer_._0/ffn/lin1/kernel:0`` (HF ``tf_model.h5``)  kernels transposed
``flax``    ``distilbert/transformer/layer/0/ffn/lin1/kernel`` (HF ``flax_model.msgpack``) kernels transposed
``keras``   ``distilbert/transformer/layer/0/ffn/lin1/kernel`` (our Keras 3 model)  kernels transposed
``nnx``     ``distilbert/transformer/layer/0/ffn/lin1/kernel`` (our Flax NNX model) kernels transposed
==========  ================================================  =========================================

The tied masked-LM projector and the sinusoidal position table are rows of their own kind. Loaders,
savers, converters and tests all go through :func:`to_native` and :func:`from_native`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from distilbert.common.config import DistilBertConfig

TASKS = (
    "base",
    "masked_lm",
    "sequence_classification",
    "multiple_choice",
    "token_classification",
    "question_answering",
)
FORMATS = ("pt", "tf", "flax", "keras", "nnx")
PREFIX = "distilbert"

# The class name of each task in the reference (PyTorch names; TF adds "TF", Flax adds "Flax").
TASK_CLASSES = {
    "base": "DistilBertModel",
    "masked_lm": "DistilBertForMaskedLM",
    "sequence_classification": "DistilBertForSequenceClassification",
    "multiple_choice": "DistilBertForMultipleChoice",
    "token_classification": "DistilBertForTokenClassification",
    "question_answering": "DistilBertForQuestionAnswering",
}

# Kinds of rows. "linear" kernels are stored transposed outside PyTorch; "tied" rows share the
# storage of another row and are absent from files that do not store them; "sinusoidal" rows are
# position tables that training leaves alone: loaded as stored, and filled from the formula only
# where a file does not store them (the reference Flax class writes none).
LINEAR, VECTOR, EMBEDDING, NORM_WEIGHT, NORM_BIAS, TIED, SINUSOIDAL = (
    "linear",
    "vector",
    "embedding",
    "norm_weight",
    "norm_bias",
    "tied",
    "sinusoidal",
)

# Leaf names of each kind per format: (weight-like leaf, bias leaf).
_LEAVES = {
    "pt": {LINEAR: "weight", VECTOR: "bias", EMBEDDING: "weight", NORM_WEIGHT: "weight", NORM_BIAS: "bias"},
    "tf": {LINEAR: "kernel:0", VECTOR: "bias:0", EMBEDDING: "weight:0", NORM_WEIGHT: "gamma:0", NORM_BIAS: "beta:0"},
    "flax": {LINEAR: "kernel", VECTOR: "bias", EMBEDDING: "embedding", NORM_WEIGHT: "scale", NORM_BIAS: "bias"},
    "keras": {LINEAR: "kernel", VECTOR: "bias", EMBEDDING: "embeddings", NORM_WEIGHT: "gamma", NORM_BIAS: "beta"},
    "nnx": {LINEAR: "kernel", VECTOR: "bias", EMBEDDING: "embedding", NORM_WEIGHT: "scale", NORM_BIAS: "bias"},
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: canonical name and shape, and its name in each format (None: not stored there)."""

    name: str
    shape: tuple[int, ...]
    kind: str
    names: Mapping[str, str | None] = field(repr=False)
    tied_to: str | None = None

    @property
    def transposed(self) -> bool:
        return self.kind == LINEAR

    def native_shape(self, fmt: str) -> tuple[int, ...]:
        return self.shape[::-1] if self.transposed and fmt != "pt" else self.shape


def task_prefix(task: str) -> str:
    """``"distilbert."`` for a head, ``""`` for the bare model (its tensors have no prefix)."""
    _check_task(task)
    return "" if task == "base" else PREFIX + "."


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def _names(module: str, leaf_kind: str, task: str, tf_leaf: str | None, stored: Iterable[str]) -> dict[str, str | None]:
    """Each format's name for the ``leaf_kind`` tensor of ``module`` (a dotted PyTorch module path)."""
    in_body = module.split(".")[0] in ("embeddings", "transformer")
    head = in_body and task != "base"
    names: dict[str, str | None] = {}
    for fmt in FORMATS:
        leaf = _LEAVES[fmt][leaf_kind]
        if fmt not in stored:
            names[fmt] = None
        elif fmt == "pt":
            names[fmt] = f"{PREFIX + '.' if head else ''}{module}.{leaf}"
        elif fmt == "tf":
            # HF's TF blocks are named "layer_._{i}", and its main layer is "distilbert" in every class.
            tf_module = module.replace(".", "/").replace("layer/", "layer_._")
            names[fmt] = f"{PREFIX + '/' if in_body else ''}{tf_module}/{tf_leaf or leaf}"
        else:
            names[fmt] = f"{PREFIX + '/' if head else ''}{module.replace('.', '/')}/{leaf}"
    return names


def weight_table(config: DistilBertConfig, task: str = "base") -> list[TensorSpec]:
    """Every tensor of ``task``'s model for ``config``, in the order PyTorch registers them.

    Args:
        config: The model's configuration (sizes, tying, sinusoidal positions).
        task: One of :data:`TASKS`.

    Returns:
        A list of :class:`TensorSpec`.

    Example:
        >>> from distilbert import DistilBertConfig
        >>> rows = weight_table(DistilBertConfig(n_layers=1), "question_answering")
        >>> rows[-1].name, rows[-1].names["tf"], rows[-1].shape
        ('qa_outputs.bias', 'qa_outputs/bias:0', (2,))
    """
    _check_task(task)
    c = config
    rows: list[TensorSpec] = []
    p = task_prefix(task)

    def add(module, shape, kind, leaf_kind=None, tf_leaf=None, tied_to=None, stored=FORMATS):
        names = _names(module, leaf_kind or kind, task, tf_leaf, stored)
        rows.append(TensorSpec(names["pt"], tuple(shape), kind, names, tied_to))

    def linear(module, n_out, n_in):
        add(module, (n_out, n_in), LINEAR)
        add(module, (n_out,), VECTOR)

    def norm(module, n):
        add(module, (n,), NORM_WEIGHT)
        add(module, (n,), NORM_BIAS)

    add("embeddings.word_embeddings", (c.vocab_size, c.dim), EMBEDDING)
    if c.sinusoidal_pos_embds:
        # HF PyTorch and TF store the table (and load it as stored); HF Flax stores none and recomputes
        # it. Our Keras and NNX models hold it as a non-trainable variable, so a stored table survives.
        add(
            "embeddings.position_embeddings",
            (c.max_position_embeddings, c.dim),
            SINUSOIDAL,
            EMBEDDING,
            tf_leaf="embeddings:0",
            stored=("pt", "tf", "keras", "nnx"),
        )
    else:
        add("embeddings.position_embeddings", (c.max_position_embeddings, c.dim), EMBEDDING, tf_leaf="embeddings:0")
    norm("embeddings.LayerNorm", c.dim)
    for i in range(c.n_layers):
        layer = f"transformer.layer.{i}"
        for lin in ("q_lin", "k_lin", "v_lin", "out_lin"):
            linear(f"{layer}.attention.{lin}", c.dim, c.dim)
        norm(f"{layer}.sa_layer_norm", c.dim)
        linear(f"{layer}.ffn.lin1", c.hidden_dim, c.dim)
        linear(f"{layer}.ffn.lin2", c.dim, c.hidden_dim)
        norm(f"{layer}.output_layer_norm", c.dim)

    if task == "masked_lm":
        linear("vocab_transform", c.dim, c.dim)
        norm("vocab_layer_norm", c.dim)
        word = p + "embeddings.word_embeddings.weight"
        if c.tie_word_embeddings:
            add("vocab_projector", (c.vocab_size, c.dim), TIED, LINEAR, tied_to=word, stored=("pt",))
        else:
            # HF's TF class has no untied projector weight at all; Flax and ours store a kernel.
            add("vocab_projector", (c.vocab_size, c.dim), LINEAR, stored=("pt", "flax", "keras", "nnx"))
        add("vocab_projector", (c.vocab_size,), VECTOR)
    elif task == "sequence_classification":
        linear("pre_classifier", c.dim, c.dim)
        linear("classifier", c.num_labels, c.dim)
    elif task == "multiple_choice":
        linear("pre_classifier", c.dim, c.dim)
        linear("classifier", 1, c.dim)
    elif task == "token_classification":
        linear("classifier", c.num_labels, c.dim)
    elif task == "question_answering":
        linear("qa_outputs", 2, c.dim)
    return rows


def sinusoidal_table(n_pos: int, dim: int, dtype=np.float32) -> np.ndarray:
    """The fixed position table of ``sinusoidal_pos_embds``: sin on even columns, cos on odd ones."""
    position_enc = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(n_pos)])
    out = np.zeros((n_pos, dim), dtype=np.float64)
    out[:, 0::2] = np.sin(position_enc[:, 0::2])
    out[:, 1::2] = np.cos(position_enc[:, 1::2])
    return out.astype(dtype)


# --------------------------------------------------------------------------- canonical <-> native
class WeightMismatchError(ValueError):
    """Raised when a checkpoint's tensors do not match the model's table; lists every problem."""

    def __init__(self, missing=(), unexpected=(), mismatched=(), where: str = "checkpoint"):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        lines = [f"{where} does not match the model:"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        for name, got, want in self.mismatched:
            lines.append(f"  shape of {name}: file has {tuple(got)}, model expects {tuple(want)}")
        lines.append("  (pass ignore_mismatched_sizes=True to re-initialise mis-shaped tensors of a new head)")
        super().__init__("\n".join(lines))


def to_native(state: Mapping[str, np.ndarray], fmt: str, table: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Renames and re-lays-out a canonical state for ``fmt``; rows ``fmt`` does not store are left out."""
    _check_format(fmt)
    out = {}
    for spec in table:
        native = spec.names[fmt]
        if native is None:
            continue
        if spec.name not in state:
            raise WeightMismatchError(missing=[spec.name], where="state to convert")
        array = state[spec.name]
        if not isinstance(array, np.ndarray) or tuple(array.shape) != spec.shape:
            got = tuple(array.shape) if isinstance(array, np.ndarray) else type(array).__name__
            raise WeightMismatchError(mismatched=[(spec.name, got, spec.shape)], where="state to convert")
        out[native] = np.ascontiguousarray(array.T) if spec.transposed and fmt != "pt" else array
    return out


def native_shapes(native: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Shapes of a mapping's tensors, without reading them when it is lazy (has ``shape(name)``)."""
    shape = getattr(native, "shape", None)
    return {name: tuple(shape(name)) if callable(shape) else np.shape(native[name]) for name in native}


def check_native(
    shapes: Mapping[str, tuple[int, ...]],
    fmt: str,
    table: list[TensorSpec],
    where: str = "checkpoint",
    allow_missing: Iterable[str] = (),
) -> None:
    """Raises one :class:`WeightMismatchError` listing every missing, unexpected and mis-shaped tensor.

    Tied rows may be absent (they are filled from the row they are tied to), sinusoidal tables too
    (filled from the formula), and so may canonical names in ``allow_missing``.
    """
    _check_format(fmt)
    allow = set(allow_missing)
    by_native = {name: spec for spec in table if (name := spec.names[fmt]) is not None}
    unexpected = sorted(set(shapes) - set(by_native))
    missing = [
        spec.name
        for name, spec in by_native.items()
        if name not in shapes and spec.kind not in (TIED, SINUSOIDAL) and spec.name not in allow
    ]
    mismatched = [
        (spec.name, tuple(shapes[name]), spec.native_shape(fmt))
        for name, spec in by_native.items()
        if name in shapes and tuple(shapes[name]) != spec.native_shape(fmt)
    ]
    if missing or unexpected or mismatched:
        raise WeightMismatchError(missing, unexpected, mismatched, where)


def check_state(
    shapes: Mapping[str, tuple[int, ...]], table: list[TensorSpec], skip: Iterable[str] = (), where: str = "state"
) -> None:
    """Like :func:`check_native` for a canonical state: every backend's ``load_canonical_state`` calls it first.

    Raises one :class:`WeightMismatchError` listing every missing (but tied or in ``skip``), unexpected
    and mis-shaped tensor, by canonical name.
    """
    allow = set(skip)
    missing = [s.name for s in table if s.name not in shapes and s.kind != TIED and s.name not in allow]
    unexpected = sorted(set(shapes) - {s.name for s in table})
    mismatched = [
        (s.name, tuple(shapes[s.name]), s.shape) for s in table if s.name in shapes and tuple(shapes[s.name]) != s.shape
    ]
    if missing or unexpected or mismatched:
        raise WeightMismatchError(missing, unexpected, mismatched, where)


def from_native(
    native: Mapping[str, np.ndarray],
    fmt: str,
    table: list[TensorSpec],
    where: str = "checkpoint",
    allow_missing: Iterable[str] = (),
) -> dict[str, np.ndarray]:
    """Maps a format's tensors to canonical names and layout, strictly (see :func:`check_native`).

    Tied rows are filled from the row they are tied to. A stored sinusoidal table is taken as
    stored; the formula fills one only where the file does not store it.
    """
    check_native(native_shapes(native), fmt, table, where, allow_missing)
    out: dict[str, np.ndarray] = {}
    for spec in table:
        name = spec.names[fmt]
        if name is not None and name in native:
            array = np.asarray(native[name])
            out[spec.name] = np.ascontiguousarray(array.T) if spec.transposed and fmt != "pt" else array
    for spec in table:
        if spec.name in out:
            continue
        if spec.kind == TIED and spec.tied_to in out:
            out[spec.name] = out[spec.tied_to]
        elif spec.kind == SINUSOIDAL:
            dtype = out[table[0].name].dtype
            out[spec.name] = sinusoidal_table(*spec.shape).astype(dtype)
    return {spec.name: out[spec.name] for spec in table if spec.name in out}


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; expected one of {FORMATS}")


# ------------------------------------------------------------------------------- task and prefix
def task_from_architectures(architectures: Iterable[str] | None) -> str | None:
    """The task of a config's ``architectures`` entry (PT, TF or Flax class name), if it names one."""
    for arch in architectures or ():
        bare = arch.removeprefix("TF").removeprefix("Flax")
        for task, cls in TASK_CLASSES.items():
            if bare == cls:
                return task
    return None


def adapt_prefix(
    state: Mapping[str, np.ndarray], source_task: str, target_task: str, target_table: list[TensorSpec]
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Moves a canonical state between a head model and the base model.

    A head checkpoint loading into the base model drops its ``distilbert.`` prefix and its head
    tensors; a base checkpoint loading into a head model gains the prefix and lacks the head.

    Returns:
        ``(state, dropped, new)``: the adapted state, the names left behind (head tensors), and the
        target's names that the source cannot provide (a new head, to be initialised).
    """
    src_prefix, dst_prefix = task_prefix(source_task), task_prefix(target_task)
    wanted = {spec.name for spec in target_table}
    out, dropped = {}, []
    for name, array in state.items():
        if src_prefix and name.startswith(src_prefix):
            body = name[len(src_prefix) :]
        elif src_prefix:
            body = None  # a head tensor of the source
        else:
            body = name
        new_name = dst_prefix + body if body is not None else (name if source_task == target_task else None)
        if new_name is not None and new_name in wanted:
            out[new_name] = array
        else:
            dropped.append(name)
    new = [spec.name for spec in target_table if spec.name not in out]
    return out, dropped, new
