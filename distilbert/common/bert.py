"""BERT checkpoints read as DistilBERT: the BERT weight-name table and the student's initialisation.

A BERT encoder is a DistilBERT encoder with token types, a pooler and other names. This module holds
the second declarative table of the package (beside :func:`distilbert.common.names.weight_table`):
for a BERT config it lists every tensor a BERT checkpoint stores, its shape and kind, its name in each
format we read, and what it becomes in DistilBERT form:

=============================================  ========================================  =============
BERT (PyTorch key, without the ``bert.`` root)  DistilBERT canonical name                 action
=============================================  ========================================  =============
``embeddings.word_embeddings``                 ``embeddings.word_embeddings``            copy
``embeddings.position_embeddings``             ``embeddings.position_embeddings``        copy
``embeddings.token_type_embeddings``           (row 0 added to every position row)       fold
``embeddings.LayerNorm``                       ``embeddings.LayerNorm``                  copy
``encoder.layer.{i}.attention.self.query``     ``transformer.layer.{j}.attention.q_lin`` copy (key, value:
                                                                                          ``k_lin``, ``v_lin``)
``encoder.layer.{i}.attention.output.dense``   ``transformer.layer.{j}.attention.out_lin`` copy
``encoder.layer.{i}.attention.output.LayerNorm`` ``transformer.layer.{j}.sa_layer_norm``  copy
``encoder.layer.{i}.intermediate.dense``       ``transformer.layer.{j}.ffn.lin1``        copy
``encoder.layer.{i}.output.dense``             ``transformer.layer.{j}.ffn.lin2``        copy
``encoder.layer.{i}.output.LayerNorm``         ``transformer.layer.{j}.output_layer_norm`` copy
``cls.predictions.transform.dense``            ``vocab_transform``                       copy
``cls.predictions.transform.LayerNorm``        ``vocab_layer_norm``                      copy
``cls.predictions.bias``                       ``vocab_projector.bias``                  copy
``cls.predictions.decoder``                    ``vocab_projector.weight`` (tied)         tied / copy
``pooler.dense``, ``cls.seq_relationship``     (no DistilBERT equivalent)                drop
=============================================  ========================================  =============

where student layer ``j`` is the ``j``-th entry of the chosen teacher layers. The formats' names:
PyTorch (``model.safetensors``, sharded, ``pytorch_model.bin``) keys as above, under ``bert.`` in
every class but ``BertModel`` (and sentence-transformers directories, which store a ``BertModel``);
HF TF (``tf_model.h5``) always under ``bert/`` with ``layer_._{i}``, transposed ``kernel:0``,
``gamma:0``/``beta:0``, heads under ``mlm___cls/`` and ``nsp___cls/``; HF Flax
(``flax_model.msgpack``) under ``bert/`` except in ``FlaxBertModel``, ``layer/{i}``, transposed
``kernel``, ``scale``, ``embedding``.

Folding ``token_type_embeddings[0]`` into the positions makes the converted model equal to the BERT
model for inputs whose token types are all 0 (every DistilBERT input); inputs with segment-B tokens
(``token_type_ids == 1``) have no DistilBERT equivalent.

Example:
    >>> from distilbert.common.bert import read_bert_checkpoint  # doctest: +SKIP
    >>> bert = read_bert_checkpoint("bert-dir", layers=[0, 2, 4])  # doctest: +SKIP
    >>> bert.config.n_layers, bert.task, bert.dropped_summary()  # doctest: +SKIP
    (3, 'masked_lm', 'the pooler (2 tensors) and the next-sentence head (2 tensors)')
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distilbert.common import files
from distilbert.common.checkpoint import FORMATS, pick_format
from distilbert.common.config import DistilBertConfig
from distilbert.common.hub import resolve_dir
from distilbert.common.names import EMBEDDING, LINEAR, NORM_BIAS, NORM_WEIGHT, TIED, VECTOR, task_prefix, weight_table

BERT_FORMATS = ("pt", "tf", "flax")
ROOT = "bert"

# What becomes of a BERT tensor in DistilBERT form.
COPY, FOLD, DROP, DUPLICATE, BUFFER = "copy", "fold", "drop", "duplicate", "buffer"

# Row groups: the encoder is always there; the others are present or not, as a whole, in a file.
BODY, POOLER, MLM, NSP = "body", "pooler", "masked-LM head", "next-sentence head"
GROUP_WORDS = {POOLER: "the pooler", MLM: "the masked-LM head", NSP: "the next-sentence head"}

# Heads of fine-tuned BERT classes (BertForSequenceClassification, ...): their sizes are the task's,
# and DistilBERT's heads differ (a ReLU pre-classifier instead of the tanh pooler), so they are dropped.
FINE_TUNED_HEADS = ("classifier", "qa_outputs")

# Activations DistilBERT implements, under BERT's names: "gelu" and "gelu_python" are both the exact erf form.
BERT_ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "relu": "relu"}

_LEAVES = {
    "pt": {LINEAR: "weight", VECTOR: "bias", EMBEDDING: "weight", NORM_WEIGHT: "weight", NORM_BIAS: "bias"},
    "tf": {
        LINEAR: "kernel:0",
        VECTOR: "bias:0",
        EMBEDDING: "embeddings:0",
        NORM_WEIGHT: "gamma:0",
        NORM_BIAS: "beta:0",
    },
    "flax": {LINEAR: "kernel", VECTOR: "bias", EMBEDDING: "embedding", NORM_WEIGHT: "scale", NORM_BIAS: "bias"},
}
# HF's TF heads live in Keras layers of their own names.
_TF_HEADS = {"cls.predictions": "mlm___cls/predictions", "cls.seq_relationship": "nsp___cls/seq_relationship"}
# Checkpoints converted from Google's TensorFlow BERT (bert-base-uncased's own files among them) name
# PyTorch LayerNorm parameters gamma/beta, which transformers renames when it loads them.
_PT_LEGACY_LEAVES = {"LayerNorm.gamma": "LayerNorm.weight", "LayerNorm.beta": "LayerNorm.bias"}

# DistilBERT's names for BERT's per-layer modules.
_LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}

# sentence-transformers files that describe the pipeline around the transformer (not its weights).
ST_MODULES = "modules.json"
ST_FILES = (ST_MODULES, "sentence_bert_config.json", "config_sentence_transformers.json")


# ----------------------------------------------------------------------------------- the config
@dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT ``config.json`` that conversion reads, with transformers' defaults.

    Only BERTs that DistilBERT can represent are accepted: absolute positions, an activation we
    implement, LayerNorm eps 1e-12, an encoder without cross-attention. Other fields are kept in
    ``extra``.

    Example:
        >>> bert = BertConfig.from_dict({"model_type": "bert", "hidden_size": 64, "num_attention_heads": 4,
        ...                              "intermediate_size": 128, "num_hidden_layers": 4})
        >>> bert.to_distilbert([0, 2]).n_layers
        2
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    position_embedding_type: str = "absolute"
    tie_word_embeddings: bool = True
    is_decoder: bool = False
    add_cross_attention: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        model_type = self.extra.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(f"config model_type is {model_type!r}, not 'bert'")
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"BERT config {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BERT config hidden_size ({self.hidden_size}) is not divisible by "
                f"num_attention_heads ({self.num_attention_heads}); DistilBERT cannot hold it"
            )
        if self.position_embedding_type != "absolute":
            raise ValueError(
                f"BERT config position_embedding_type is {self.position_embedding_type!r}: DistilBERT "
                "has absolute position embeddings only; convert a BERT with 'absolute' positions"
            )
        if self.hidden_act not in BERT_ACTIVATIONS:
            raise ValueError(
                f"BERT config hidden_act {self.hidden_act!r} is not implemented in DistilBERT; "
                f"supported: {', '.join(BERT_ACTIVATIONS)}"
            )
        if self.layer_norm_eps != 1e-12:
            raise ValueError(
                f"BERT config layer_norm_eps is {self.layer_norm_eps!r}: DistilBERT fixes it at 1e-12, "
                "so this model's outputs would change; only layer_norm_eps=1e-12 converts"
            )
        if self.is_decoder or self.add_cross_attention:
            raise ValueError(
                "BERT config is a decoder (is_decoder / add_cross_attention): DistilBERT is an "
                "encoder without cross-attention; convert an encoder"
            )
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"BERT config pad_token_id ({self.pad_token_id}) is outside the vocabulary "
                f"(vocab_size={self.vocab_size})"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BertConfig:
        """Builds the config from a ``config.json`` dict; unknown keys go to ``extra``."""
        if not isinstance(data, Mapping):
            raise TypeError(f"BertConfig.from_dict expects a dict, got {type(data).__name__}")
        data = dict(data)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: data.pop(k) for k in list(data) if k in names}
        return cls(**known, extra=data)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BertConfig:
        """Reads a ``config.json``; errors name the file."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise FileNotFoundError(f"no config file at {os.fspath(path)!r}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{os.fspath(path)!r} is not valid JSON: {exc}") from None
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{os.fspath(path)!r}: {exc}") from None

    def check_layers(self, layers: Iterable[int] | str | None) -> list[int]:
        """The teacher layers a student takes, in order (default: all); refuses a list that does not fit."""
        return check_layers(layers, self.num_hidden_layers)

    def to_distilbert(self, layers: Iterable[int] | None = None) -> DistilBertConfig:
        """The DistilBERT config of a student built from ``layers`` of this BERT (default: all)."""
        layers = self.check_layers(layers)
        data: dict[str, Any] = dict(
            vocab_size=self.vocab_size,
            max_position_embeddings=self.max_position_embeddings,
            sinusoidal_pos_embds=False,
            n_layers=len(layers),
            n_heads=self.num_attention_heads,
            dim=self.hidden_size,
            hidden_dim=self.intermediate_size,
            dropout=self.hidden_dropout_prob,
            attention_dropout=self.attention_probs_dropout_prob,
            activation=BERT_ACTIVATIONS[self.hidden_act],
            initializer_range=self.initializer_range,
            pad_token_id=self.pad_token_id,
            tie_word_embeddings=self.tie_word_embeddings,
        )
        # Labels and the tokenizer's hints travel along (a fine-tuned teacher's label names matter).
        for key in ("id2label", "label2id", "problem_type", "bos_token_id", "eos_token_id"):
            if self.extra.get(key) is not None:
                data[key] = self.extra[key]
        try:
            return DistilBertConfig.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"this BERT does not fit a DistilBERT config: {exc}") from None


def bert_config_to_distilbert(bert_config: Mapping[str, Any], layers: Iterable[int] | None = None) -> DistilBertConfig:
    """The DistilBERT config of a student made of ``layers`` (default: all) of the BERT ``bert_config``.

    Args:
        bert_config: A BERT ``config.json`` as a dict (``model_type: "bert"``).
        layers: Teacher layer indices, in the student's order; no repeats, none missing from the teacher.

    Raises:
        ValueError: A BERT DistilBERT cannot represent (relative positions, another activation,
            ``layer_norm_eps`` other than 1e-12, sizes that do not fit) or a layer list that does not fit.

    Example:
        >>> cfg = bert_config_to_distilbert({"model_type": "bert", "num_hidden_layers": 12}, [0, 2, 4, 7, 9, 11])
        >>> cfg.n_layers, cfg.dim, cfg.hidden_dim
        (6, 768, 3072)
    """
    return BertConfig.from_dict(bert_config).to_distilbert(layers)


def check_layers(layers: Iterable[int] | str | None, n_layers: int) -> list[int]:
    """The layers of an ``n_layers`` teacher that a student takes, in order (None: all of them).

    Raises:
        ValueError: An empty list, a layer the teacher lacks, a repeated layer or a non-integer.
    """
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, str):
        layers = parse_layers(layers)
    layers = list(layers)
    if not layers:
        raise ValueError("the layer list is empty; name at least one teacher layer (e.g. 0,2,4)")
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ValueError(f"layer {i!r} is not an integer")
        if not 0 <= i < n_layers:
            raise ValueError(f"layer {i} does not exist: the teacher has layers 0..{n_layers - 1}")
    repeated = sorted({i for i in layers if layers.count(i) > 1})
    if repeated:
        raise ValueError(
            f"the layer list names layer(s) {', '.join(map(str, repeated))} more than once; "
            "name each teacher layer at most once"
        )
    return [int(i) for i in layers]


def parse_layers(text: str) -> list[int]:
    """``"0,2,4"`` -> ``[0, 2, 4]`` (the ``--layers`` flag); a malformed list raises ValueError."""
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise ValueError("the layer list is empty; name at least one teacher layer (e.g. 0,2,4)")
    try:
        return [int(item) for item in items]
    except ValueError:
        raise ValueError(f"--layers must be comma-separated layer numbers such as 0,2,4, got {text!r}") from None


def is_bert_config(data: Mapping[str, Any]) -> bool:
    """Whether a ``config.json`` dict describes a BERT."""
    return isinstance(data, Mapping) and data.get("model_type") == "bert"


# ------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class BertTensorSpec:
    """One tensor of a BERT checkpoint: its name and shape, its names per format, and its fate.

    Attributes:
        name: The PyTorch key (with the ``bert.`` root when the table has one).
        shape: Shape in PyTorch layout.
        kind: A kind of :mod:`distilbert.common.names` (``linear`` kernels are transposed outside PyTorch).
        names: Name per format (``pt``, ``tf``, ``flax``); None where that format does not store it.
        group: :data:`BODY`, :data:`POOLER`, :data:`MLM` or :data:`NSP`.
        action: :data:`COPY`, :data:`FOLD` (row 0 added to ``target``), :data:`DROP`, :data:`DUPLICATE`
            (another name of a tensor that is copied; optional) or :data:`BUFFER` (not a weight; optional).
        target: DistilBERT canonical name (without the ``distilbert.`` prefix), teacher layer numbering.
        layer: The teacher layer the tensor belongs to, or None.
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    names: Mapping[str, str | None] = field(repr=False)
    group: str = BODY
    action: str = COPY
    target: str | None = None
    layer: int | None = None

    @property
    def transposed(self) -> bool:
        return self.kind == LINEAR

    @property
    def optional(self) -> bool:
        return self.action in (DUPLICATE, BUFFER)

    def native_shape(self, fmt: str) -> tuple[int, ...]:
        return self.shape[::-1] if self.transposed and fmt != "pt" else self.shape


def bert_weight_table(bert: BertConfig, rooted: bool) -> list[BertTensorSpec]:
    """Every tensor a BERT checkpoint may store, with each format's name and its DistilBERT target.

    Args:
        bert: The BERT's config.
        rooted: Whether the encoder is stored under ``bert.`` (every class but ``BertModel``). HF TF
            files always root it (their main layer is ``bert`` in every class); this decides the
            PyTorch and Flax names.

    Returns:
        A list of :class:`BertTensorSpec`: the encoder, then the pooler, masked-LM and next-sentence
        rows (a file holds each group whole or not at all).

    Example:
        >>> rows = bert_weight_table(BertConfig(num_hidden_layers=1), rooted=True)
        >>> spec = next(r for r in rows if r.name.endswith("self.query.weight"))
        >>> spec.name, spec.names["tf"], spec.target
        ('bert.encoder.layer.0.attention.self.query.weight', \
'bert/encoder/layer_._0/attention/self/query/kernel:0', 'transformer.layer.0.attention.q_lin.weight')
    """
    b = bert
    rows: list[BertTensorSpec] = []

    def add(module, shape, kind, target=None, group=BODY, action=COPY, layer=None, stored=BERT_FORMATS):
        names = {fmt: _native_name(module, kind, fmt, rooted) if fmt in stored else None for fmt in BERT_FORMATS}
        full_target = f"{target}.{_LEAVES['pt'][kind]}" if target is not None else None
        rows.append(BertTensorSpec(names["pt"], tuple(shape), kind, names, group, action, full_target, layer))

    def linear(module, n_out, n_in, target=None, group=BODY, action=COPY, layer=None):
        add(module, (n_out, n_in), LINEAR, target, group, action, layer)
        add(module, (n_out,), VECTOR, target, group, action, layer)

    def norm(module, n, target=None, group=BODY, layer=None):
        add(module, (n,), NORM_WEIGHT, target, group, layer=layer)
        add(module, (n,), NORM_BIAS, target, group, layer=layer)

    d = b.hidden_size
    add("embeddings.word_embeddings", (b.vocab_size, d), EMBEDDING, "embeddings.word_embeddings")
    add("embeddings.position_embeddings", (b.max_position_embeddings, d), EMBEDDING, "embeddings.position_embeddings")
    add(
        "embeddings.token_type_embeddings",
        (b.type_vocab_size, d),
        EMBEDDING,
        "embeddings.position_embeddings",
        action=FOLD,
    )
    norm("embeddings.LayerNorm", d, "embeddings.LayerNorm")
    # Older PyTorch files store the position-id buffer; it is not a weight.
    add("embeddings.position_ids", (1, b.max_position_embeddings), BUFFER, action=BUFFER, stored=("pt",))
    for i in range(b.num_hidden_layers):
        for module, target in _LAYER_MAP.items():
            bert_module, distil_module = f"encoder.layer.{i}.{module}", f"transformer.layer.{i}.{target}"
            if module.endswith("LayerNorm"):
                norm(bert_module, d, distil_module, layer=i)
            else:
                n_out, n_in = {
                    "intermediate.dense": (b.intermediate_size, d),
                    "output.dense": (d, b.intermediate_size),
                }.get(module, (d, d))
                linear(bert_module, n_out, n_in, distil_module, layer=i)

    linear("pooler.dense", d, d, group=POOLER, action=DROP)

    linear("cls.predictions.transform.dense", d, d, "vocab_transform", group=MLM)
    norm("cls.predictions.transform.LayerNorm", d, "vocab_layer_norm", group=MLM)
    add("cls.predictions", (b.vocab_size,), VECTOR, "vocab_projector", group=MLM)  # the head's own bias
    if b.tie_word_embeddings:
        # Tied to the word embeddings: pytorch_model.bin still stores a copy, safetensors and Flax do not.
        add("cls.predictions.decoder", (b.vocab_size, d), LINEAR, group=MLM, action=DUPLICATE, stored=("pt",))
    else:
        # HF's TF head always uses the word embeddings, so an untied decoder has no TF name.
        add("cls.predictions.decoder", (b.vocab_size, d), LINEAR, "vocab_projector", group=MLM, stored=("pt", "flax"))
    # PyTorch's decoder bias is the same parameter as cls.predictions.bias, saved twice in pickles.
    add("cls.predictions.decoder", (b.vocab_size,), VECTOR, group=MLM, action=DUPLICATE, stored=("pt",))

    linear("cls.seq_relationship", 2, d, group=NSP, action=DROP)
    return rows


def _native_name(module: str, kind: str, fmt: str, rooted: bool) -> str:
    """``module`` (a PyTorch module path without the root) named in ``fmt``."""
    in_body = module.split(".")[0] in ("embeddings", "encoder", "pooler")
    if kind == BUFFER:  # a PyTorch buffer is named by its module path alone
        return f"{ROOT + '.' if rooted else ''}{module}"
    leaf = _LEAVES[fmt][kind]
    if fmt == "pt":
        return f"{ROOT + '.' if rooted and in_body else ''}{module}.{leaf}"
    if fmt == "tf":
        if module == "embeddings.word_embeddings":
            leaf = "weight:0"  # HF's TF word embeddings are a bare variable named "weight"
        if not in_body:
            head = next(h for h in _TF_HEADS if module.startswith(h))
            return f"{_TF_HEADS[head]}{module[len(head) :].replace('.', '/')}/{leaf}"
        return f"{ROOT}/{module.replace('.', '/').replace('layer/', 'layer_._')}/{leaf}"
    return f"{ROOT + '/' if rooted and in_body else ''}{module.replace('.', '/')}/{leaf}"


# ------------------------------------------------------------------------------ reading a checkpoint
class BertWeightError(ValueError):
    """A BERT checkpoint whose tensors do not match its config; lists every problem by name."""

    def __init__(self, where: str, missing=(), unexpected=(), mismatched=()):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        lines = [f"{where} is not the BERT its config.json describes:"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        for name, got, want in self.mismatched:
            lines.append(f"  shape of {name}: file has {tuple(got)}, config implies {tuple(want)}")
        super().__init__("\n".join(lines))


@dataclass
class BertSource:
    """A BERT checkpoint opened as a DistilBERT state: lazy tensors and what was left behind.

    Attributes:
        tensors: Lazy ``{canonical DistilBERT name: array}`` of the student's whole table (tied rows
            included), in the dtype stored; each read when asked. Close it (or use ``with``).
        config: The student's :class:`DistilBertConfig`.
        bert: The teacher's :class:`BertConfig`.
        task: ``"masked_lm"`` when the masked-LM head is kept, else ``"base"``.
        layers: The teacher layers the student took, in order.
        dropped: BERT tensor names left behind (pooler, next-sentence head, fine-tuned heads, the
            masked-LM head when ``task="base"`` was asked), the unchosen layers not included.
        dropped_groups: The same, as words (``"the pooler"``, ...), for a one-line report.
        path: The weight file read (the index for sharded checkpoints).
        weight_format: Its key in :data:`distilbert.common.checkpoint.FORMATS`.
        sentence_transformers: Files and folders (relative paths) of a sentence-transformers
            directory that a destination must carry to keep working as one; empty for plain checkpoints.
    """

    tensors: files.LazyTensors | dict[str, np.ndarray]  # a dict once read_bert_checkpoint has read it
    config: DistilBertConfig
    bert: BertConfig
    task: str
    layers: list[int]
    dropped: list[str]
    dropped_groups: list[str]
    path: str
    weight_format: str
    sentence_transformers: list[str]

    def dropped_summary(self) -> str:
        """``"the pooler (2 tensors) and the next-sentence head (2 tensors)"``, or ``""`` when none."""
        return _join_words(self.dropped_groups)

    def close(self) -> None:
        if isinstance(self.tensors, files.LazyTensors):  # read_bert_checkpoint's plain dict has nothing open
            self.tensors.close()

    def __enter__(self) -> BertSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_bert_checkpoint(directory: str | os.PathLike) -> bool:
    """Whether ``directory``'s ``config.json`` describes a BERT (a readable config is not checked further)."""
    path = os.path.join(os.fspath(directory), "config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return is_bert_config(json.load(fh))
    except (OSError, ValueError):
        return False


def open_bert_checkpoint(
    name_or_path: str | os.PathLike,
    layers: Iterable[int] | str | None = None,
    task: str | None = None,
    weight_format: str | None = None,
    framework: str | None = None,
) -> BertSource:
    """Opens a BERT checkpoint directory as the canonical state of a DistilBERT student, lazily.

    Reads ``BertModel``, ``BertForMaskedLM``, ``BertForPreTraining`` (and the encoder of fine-tuned
    classes) in every format we read, and sentence-transformers directories (``modules.json``, a BERT
    at the root). The file is checked strictly against the table before anything is returned.

    Args:
        name_or_path: Directory (or hub id) with a BERT ``config.json`` and weights.
        layers: Teacher layers for the student, in order (default: all); ``"0,2,4"`` is accepted.
        task: ``"masked_lm"`` (requires the masked-LM head), ``"base"`` (drops it when present) or
            None (``"masked_lm"`` when the file has the head, else ``"base"``).
        weight_format: Read this format only (a key of :data:`distilbert.common.checkpoint.FORMATS`).
        framework: Prefer this framework's format after safetensors when several are present.

    Returns:
        A :class:`BertSource`; close it when done.

    Raises:
        ValueError: A BERT that cannot become a DistilBERT, a layer list that does not fit, or a
            ``task`` the checkpoint cannot give.
        BertWeightError: Tensors missing, unexpected or mis-shaped for the config.
        distilbert.common.files.CheckpointError: Unreadable, truncated or unsafe files.
    """
    if task not in (None, "base", "masked_lm"):
        raise ValueError(f"a BERT converts to task 'base' or 'masked_lm', not {task!r}")
    directory = resolve_dir(name_or_path)
    bert = BertConfig.from_json_file(os.path.join(directory, "config.json"))
    layers = bert.check_layers(layers)
    config = bert.to_distilbert(layers)
    carried = sentence_transformers_files(directory)
    fmt, path = pick_format(directory, framework, weight_format)
    _, opener, naming = FORMATS[fmt]
    native = opener(path)
    try:
        source = _plan(native, naming, bert, config, layers, task, path)
    except BaseException:
        native.close()
        raise
    tensors, dropped, groups, out_task = source
    return BertSource(tensors, config, bert, out_task, layers, dropped, groups, path, fmt, carried)


def read_bert_checkpoint(
    name_or_path: str | os.PathLike,
    layers: Iterable[int] | str | None = None,
    task: str | None = None,
    weight_format: str | None = None,
    framework: str | None = None,
) -> BertSource:
    """:func:`open_bert_checkpoint`, with every tensor read into memory (``tensors`` becomes a plain dict)."""
    source = open_bert_checkpoint(name_or_path, layers, task, weight_format, framework)
    with source:
        state = {name: source.tensors[name] for name in source.tensors}
    return dataclasses.replace(source, tensors=state)


def _plan(
    native: files.LazyTensors,
    naming: str,
    bert: BertConfig,
    config: DistilBertConfig,
    layers: Sequence[int],
    task: str | None,
    where: str,
):
    """Checks a file against the table; returns the lazy student state, the dropped names and groups, the task."""
    names = {_legacy_pt_name(n) if naming == "pt" else n: n for n in native}
    sep = "." if naming == "pt" else "/"
    rooted = naming == "tf" or any(n.startswith(ROOT + sep) for n in names)
    table = bert_weight_table(bert, rooted)
    present = {spec.group for spec in table if spec.names[naming] in names}
    has_mlm = MLM in present
    if task == "masked_lm" and not has_mlm:
        raise ValueError(
            f"{where!r} has no masked-LM head (cls.predictions): it cannot give a masked-LM "
            "DistilBERT; convert it as a base model"
        )
    out_task = task or ("masked_lm" if has_mlm else "base")
    rows = [spec for spec in table if spec.group == BODY or spec.group in present]
    by_native = {spec.names[naming]: spec for spec in rows if spec.names[naming] is not None}
    fine_tuned = [n for n in names if n.split(sep)[0] in FINE_TUNED_HEADS]
    unexpected = sorted(set(names) - set(by_native) - set(fine_tuned))
    missing = [spec.name for name, spec in by_native.items() if name not in names and not spec.optional]
    mismatched = [
        (spec.name, native.shape(names[name]), spec.native_shape(naming))
        for name, spec in by_native.items()
        if name in names and spec.action != BUFFER and native.shape(names[name]) != spec.native_shape(naming)
    ]
    if missing or unexpected or mismatched:
        raise BertWeightError(repr(where), missing, unexpected, mismatched)

    keep_mlm = out_task == "masked_lm"
    dropped = [
        spec.name
        for spec in rows
        if spec.names[naming] in names
        and (spec.action == DROP or (spec.group == MLM and not keep_mlm and spec.action != DUPLICATE))
    ]
    dropped += sorted(names[n] for n in fine_tuned)
    groups = [
        f"{GROUP_WORDS[g]} ({sum(1 for s in rows if s.group == g and s.action != DUPLICATE)} tensors)"
        for g in (POOLER, MLM, NSP)
        if g in present and (g != MLM or not keep_mlm)
    ]
    if fine_tuned:
        groups.append(
            f"the fine-tuned head ({', '.join(sorted({n.split(sep)[0] for n in fine_tuned}))}, "
            f"{len(fine_tuned)} tensors)"
        )

    # The student's sources: target name -> (BERT spec, token-type spec to fold in or None).
    student_layer = {teacher: j for j, teacher in enumerate(layers)}
    prefix = task_prefix(out_task)
    sources: dict[str, tuple[BertTensorSpec, BertTensorSpec | None]] = {}
    fold = next(spec for spec in rows if spec.action == FOLD)
    for spec in rows:
        if spec.action != COPY or (spec.group == MLM and not keep_mlm):
            continue
        if spec.layer is not None and spec.layer not in student_layer:
            continue
        target = spec.target
        if target is None:  # COPY rows always name their target
            continue
        if spec.layer is not None:
            teacher, student_index = f"transformer.layer.{spec.layer}.", student_layer[spec.layer]
            target = target.replace(teacher, f"transformer.layer.{student_index}.", 1)
        if spec.group == BODY:
            target = prefix + target
        sources[target] = (spec, fold if spec.target == fold.target else None)

    student = weight_table(config, out_task)
    for row in student:  # a tied projector reads the word embeddings
        if row.kind == TIED and row.tied_to is not None and row.name not in sources:
            sources[row.name] = sources[row.tied_to]
    lost = [row.name for row in student if row.name not in sources]
    if lost:  # unreachable while the two tables agree; guards them against drifting apart
        raise AssertionError(f"BERT table gives no source for {lost}")

    def read(spec: BertTensorSpec) -> np.ndarray:
        array = native[names[spec.names[naming]]]
        return np.ascontiguousarray(array.T) if spec.transposed and naming != "pt" else array

    def load(name: str) -> np.ndarray:
        spec, folded = sources[name]
        array = read(spec)
        if folded is not None:
            # Every DistilBERT input has token type 0: its embedding becomes part of each position's.
            token_type = read(folded)[0]
            array = (array.astype(np.float32) + token_type.astype(np.float32)).astype(array.dtype)
        return array

    meta = {spec.name: (spec.shape, native.dtype(names[sources[spec.name][0].names[naming]])) for spec in student}
    return files.LazyTensors(meta, load, native.close), dropped, groups, out_task


def _legacy_pt_name(name: str) -> str:
    for old, new in _PT_LEGACY_LEAVES.items():
        if name.endswith(old):
            return name[: -len(old)] + new
    return name


def _join_words(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


# ------------------------------------------------------------------------ sentence-transformers
def tokenizer_config_for_distilbert(tokenizer_config: Mapping[str, Any]) -> dict[str, Any]:
    """A BERT ``tokenizer_config.json`` (as a dict) for the converted model: it stops emitting ``token_type_ids``.

    DistilBERT takes no token types, and sentence-transformers passes every tensor the tokenizer emits
    to the model, so a converted directory whose tokenizer still emits them fails in
    ``SentenceTransformer(...).encode``. The vocabulary and every other setting are unchanged.
    """
    return {**dict(tokenizer_config), "model_input_names": ["input_ids", "attention_mask"]}


def sentence_transformers_files(directory: str | os.PathLike) -> list[str]:
    """The files and folders a sentence-transformers directory needs beside its transformer's weights.

    ``modules.json``, ``sentence_bert_config.json``, ``config_sentence_transformers.json`` and the
    folder of every module that ``modules.json`` lists (``1_Pooling``, ``2_Normalize``, ``2_Dense``...),
    where present, as paths relative to ``directory``; ``[]`` when it is not a sentence-transformers
    directory.

    Raises:
        ValueError: An unreadable ``modules.json``, or one whose transformer is not at the root.
    """
    directory = os.fspath(directory)
    modules_path = os.path.join(directory, ST_MODULES)
    if not os.path.isfile(modules_path):
        return []
    try:
        with open(modules_path, encoding="utf-8") as fh:
            modules = json.load(fh)
        entries = [(str(m.get("path", "")), str(m.get("type", ""))) for m in modules]
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{modules_path!r} is not a valid sentence-transformers modules.json: {exc}") from None
    out = [name for name in ST_FILES if os.path.isfile(os.path.join(directory, name))]
    for path, kind in entries:
        if kind.endswith(".Transformer"):
            if path.strip("/."):
                raise ValueError(
                    f"{modules_path!r} keeps its transformer in {path!r}; only sentence-transformers "
                    "directories with the transformer at the root are read (point at that folder)"
                )
            continue
        full = os.path.realpath(os.path.join(directory, path))
        if not path or os.path.dirname(full) != os.path.realpath(directory):
            raise ValueError(f"{modules_path!r} lists module folder {path!r}, outside the directory; refused")
        if os.path.exists(full):
            out.append(path)
    return out
