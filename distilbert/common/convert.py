"""Converting checkpoints between formats: renames and transposes in numpy, one tensor at a time.

Hugging Face's three formats (``model.safetensors``, ``tf_model.h5``, ``flax_model.msgpack``) differ
only in names and layouts, so converting between them needs no ML framework: every tensor is read,
re-laid-out through the weight-name table and written before the next is read. Formats that need
an ML framework (Keras 3's ``.weights.h5`` and ``.keras``, which Keras itself reads and writes) come in
as :class:`ExternalFormat` s from above ``common/``: :func:`distilbert.conversion.convert` passes them.

Example:
    >>> from distilbert.common.convert import convert
    >>> convert("my-model", "my-model-flax", to="flax")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple, cast

import ml_dtypes
import numpy as np

from distilbert.common import files
from distilbert.common.bert import (
    BertConfig,
    check_layers,
    is_bert_checkpoint,
    open_bert_checkpoint,
    sentence_transformers_files,
    tokenizer_config_for_distilbert,
)
from distilbert.common.checkpoint import (
    WEIGHT_NAMING,
    available_formats,
    config_for_positions,
    open_native,
    pick_format,
    stored_rows,
    write_config,
    write_weights,
)
from distilbert.common.config import DistilBertConfig
from distilbert.common.hub import resolve_dir
from distilbert.common.names import (
    SINUSOIDAL,
    TIED,
    from_native,
    sinusoidal_table,
    to_native,
    weight_table,
)

# --to: target framework -> its formats (first = default).
TARGETS = {
    "pt": ("safetensors", "safetensors-sharded"),
    "tf": ("tf", "tf-sharded"),
    "flax": ("flax", "flax-sharded"),
}
DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
TOKENIZER_CONFIG = "tokenizer_config.json"


@dataclass(frozen=True)
class ExternalFormat:
    """A checkpoint format that needs an ML framework to read and write, handed to :func:`convert` from above.

    Attributes:
        name: The ``to`` target and ``source_format`` that select it (``"keras"``).
        formats: Its weight formats, the default first (``"keras-weights"``, ``"keras"``).
        find: ``find(path)`` -> its file at ``path`` (the file itself, or inside the directory), or None.
        read: ``read(directory, file)`` -> ``(canonical state, config, task)``.
        write: ``write(state, config, task, directory, weight_format)`` writes the weights into ``directory``.
        framework: The framework whose class names go into the written ``config.json``.
    """

    name: str
    formats: tuple[str, ...]
    find: Callable[[str], str | None]
    read: Callable[[str, str], tuple[dict, DistilBertConfig, str]]
    write: Callable[[dict, DistilBertConfig, str, str, str], None]
    framework: str


@dataclass
class Conversion:
    """What a conversion did: source file and format, task, destination files, tensor count, and what
    of a BERT source has no DistilBERT equivalent (``dropped``, in words; ``""`` when nothing was)."""

    source: str
    source_format: str
    task: str
    destination: str
    files: list[str]
    tensors: int
    dropped: str = ""


class _Source(NamedTuple):
    """An opened source: lazy tensors named by ``naming``, what they are, and what was left behind."""

    native: files.LazyTensors
    naming: str
    task: str
    table: list
    config: DistilBertConfig
    path: str
    fmt: str
    is_bert: bool = False
    dropped: str = ""


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: str,
    *,
    weight_format: str | None = None,
    source_format: str | None = None,
    dtype: str | None = None,
    force: bool = False,
    max_shard_size: int | None = None,
    progress: bool = False,
    layers: Iterable[int] | str | None = None,
    external: tuple[ExternalFormat, ...] = (),
) -> Conversion:
    """Converts the checkpoint directory (or hub id) ``src`` into a new directory ``dst``.

    ``config.json`` (with ``architectures`` naming the target framework's class) and the tokenizer
    files go along, and so do a sentence-transformers directory's own files (``modules.json``, the
    pooling folder, ...), so the destination stays one. Nothing appears at ``dst`` unless the whole
    conversion succeeds: it is built under a temporary name and renamed into place.

    A BERT checkpoint (``model_type: "bert"``: ``BertModel``, ``BertForMaskedLM``, ``BertForPreTraining``,
    a sentence-transformers BERT) becomes a DistilBERT (see :mod:`distilbert.common.bert`): its token
    type 0 is folded into the positions, its pooler and next-sentence head are dropped (reported in
    :attr:`Conversion.dropped`), and its tokenizer stops emitting ``token_type_ids``.

    Args:
        src: Source directory or hub id.
        dst: Destination directory; must not exist unless ``force``.
        to: ``"pt"``, ``"tf"``, ``"flax"`` (or the name of one of ``external``).
        weight_format: One of ``TARGETS[to]`` (default: the first).
        source_format: Read this format of ``src`` when it holds several (a key of ``FORMATS``).
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` to cast floating tensors; default: as stored.
        force: Replace an existing ``dst``.
        max_shard_size: Bytes per shard for the ``*-sharded`` formats.
        progress: Show a progress bar (tqdm) on standard error.
        layers: Build the destination from these source layers, in this order (``[0, 2, 4]`` or
            ``"0,2,4"``), renumbered 0, 1, ...; default all. For BERT and DistilBERT sources alike.
        external: Formats beyond the Hugging Face ones, as source or target (see :class:`ExternalFormat`).

    Raises:
        ValueError: A layer list that does not fit the source (empty, repeated, a layer it lacks), a BERT
            that DistilBERT cannot represent; checked before anything is written.
        distilbert.common.bert.BertWeightError: A BERT whose tensors do not match its config.
    """
    others = {e.name: e for e in external}
    targets = {**TARGETS, **{name: e.formats for name, e in others.items()}}
    if to not in targets:
        hint = "" if others else " (Keras 3 files: distilbert.conversion.convert)"
        raise ValueError(f"unknown target {to!r}; expected one of {sorted(targets)}{hint}")
    weight_format = weight_format or targets[to][0]
    if weight_format not in targets[to]:
        raise ValueError(f"--to {to} writes {', '.join(targets[to])}, not {weight_format!r}")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
    dst = os.path.abspath(os.fspath(dst))
    if os.path.exists(dst) and not force:
        raise FileExistsError(f"{dst!r} exists; pass force=True (--force) to replace it")
    src_file = os.fspath(src) if os.path.isfile(src) and any(e.find(os.fspath(src)) for e in external) else None
    src_dir = os.path.dirname(os.path.abspath(src_file)) if src_file else resolve_dir(src)
    if os.path.abspath(src_dir) == dst:
        raise ValueError("source and destination are the same directory")
    # Checked before the work directory exists, so that a bad list or modules.json writes nothing.
    is_bert = src_file is None and is_bert_checkpoint(src_dir)
    if is_bert:
        BertConfig.from_json_file(os.path.join(src_dir, "config.json")).check_layers(layers)
    elif layers is not None:
        check_layers(layers, DistilBertConfig.from_pretrained(src_dir).n_layers)
    carried = sentence_transformers_files(src_dir)

    with files.atomic_directory(dst) as work:
        source = _open_source(src_dir, src_file, to, source_format, external, is_bert, layers)
        native, naming, task, table, config, path, fmt = source[:7]
        with native:
            if to in others:
                count = _write_external(others[to], native, naming, table, config, task, work, weight_format, dtype)
            else:
                target = weight_format.removesuffix("-sharded")
                written = config_for_positions(config, target, _source_positions(native, naming, table))
                rows = stored_rows(table if written is config else weight_table(written, task), target)
                config = written
                view = _converted_view(native, naming, WEIGHT_NAMING[target], rows, table, dtype, progress)
                write_weights(
                    work, view, table, task, target, max_shard_size if weight_format.endswith("sharded") else None
                )
                count = len(rows)
        write_config(work, config, task, others[to].framework if to in others else to)
        copy_tokenizer(src_dir, work, source.is_bert)
        copy_sentence_transformers_files(src_dir, work, carried)
    return Conversion(path, fmt, task, dst, sorted(os.listdir(dst)), count, source.dropped)


def copy_tokenizer(src_dir: str, work: str, is_bert: bool) -> None:
    """Copies the tokenizer files that ``src_dir`` has into ``work``; a BERT's ``tokenizer_config.json``
    stops asking for ``token_type_ids`` (DistilBERT takes none, and sentence-transformers passes the model
    whatever the tokenizer emits)."""
    for name in TOKENIZER_FILES:
        path = os.path.join(src_dir, name)
        if not os.path.isfile(path):
            continue
        if is_bert and name == TOKENIZER_CONFIG:
            try:
                with open(path, encoding="utf-8") as fh:
                    tokenizer_config = json.load(fh)
                if not isinstance(tokenizer_config, dict):
                    raise ValueError(f"a JSON object was expected, got {type(tokenizer_config).__name__}")
            except (UnicodeDecodeError, ValueError) as exc:
                raise ValueError(f"{path!r} is not a valid tokenizer config: {exc}") from None
            files.atomic_write_json(os.path.join(work, name), tokenizer_config_for_distilbert(tokenizer_config))
        else:
            shutil.copy2(path, os.path.join(work, name))


def copy_sentence_transformers_files(src_dir: str, work: str, names: list[str] | None = None) -> None:
    """Copies a sentence-transformers directory's own files and folders (``modules.json``, the pooling
    module, ...: ``names``, by default :func:`sentence_transformers_files` of ``src_dir``) into ``work``,
    so that the copy stays a sentence-transformers directory."""
    for name in sentence_transformers_files(src_dir) if names is None else names:
        src, dst = os.path.join(src_dir, name), os.path.join(work, name)
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


def _open_source(
    src_dir: str,
    src_file: str | None,
    to: str,
    source_format: str | None,
    external: tuple[ExternalFormat, ...],
    is_bert: bool = False,
    layers: Iterable[int] | str | None = None,
) -> _Source:
    """The source's tensors (lazy), their naming, task, table, config, file and format.

    Hugging Face formats are opened lazily in numpy; an external format is read by its ``read`` (when
    asked for, given as the source file, or the only weights in the directory). A BERT is opened as
    the canonical state of a DistilBERT (:func:`distilbert.common.bert.open_bert_checkpoint`), which
    also picks its layers; a DistilBERT's ``layers`` are picked by :func:`_select_layers`.
    """
    if is_bert:
        bert = open_bert_checkpoint(
            src_dir, layers, weight_format=source_format, framework=to if to in TARGETS else "tf"
        )
        return _Source(
            cast(files.LazyTensors, bert.tensors),  # open_bert_checkpoint's tensors are lazy
            "pt",
            bert.task,
            weight_table(bert.config, bert.task),
            bert.config,
            bert.path,
            bert.weight_format,
            True,
            bert.dropped_summary(),
        )
    source = _open_distilbert(src_dir, src_file, to, source_format, external)
    return source if layers is None else _select_layers(source, check_layers(layers, source.config.n_layers))


def _open_distilbert(
    src_dir: str, src_file: str | None, to: str, source_format: str | None, external: tuple[ExternalFormat, ...]
) -> _Source:
    for e in external:
        found = e.find(src_file or src_dir)
        only = source_format is None and not available_formats(src_dir)
        if found and (source_format == e.name or src_file or only):
            state, config, task = e.read(src_dir, found)
            table = weight_table(config, task)
            native = files.LazyTensors.from_dict(to_native(state, "pt", table))
            return _Source(native, "pt", task, table, config, found, e.name)
    config = DistilBertConfig.from_pretrained(src_dir)
    fmt, path = pick_format(src_dir, to if to in ("pt", "tf", "flax") else "tf", source_format)
    native, naming, task, table = open_native(path, config, fmt)
    num_labels = _file_num_labels(table, config)
    if config.num_labels != num_labels:
        config = config.replace(num_labels=num_labels)
    return _Source(native, naming, task, table, config, path, fmt)


def _select_layers(source: _Source, layers: list[int]) -> _Source:
    """The source seen as a DistilBERT of ``layers`` (renumbered 0, 1, ...): a lazy renaming, nothing copied.

    Student layer ``j`` reads the tensors of source layer ``layers[j]``; the embeddings and the head
    are read as they are."""
    config = source.config.replace(n_layers=len(layers))
    table = weight_table(config, source.task)
    by_name = {spec.name: spec for spec in source.table}
    native = source.native
    renamed = {}  # the student's name in the source's naming -> the teacher's
    for spec in table:
        name = spec.names[source.naming]
        teacher = by_name[_teacher_layer_name(spec.name, layers)].names[source.naming]
        if name is not None and teacher is not None and teacher in native:
            renamed[name] = teacher
    view = files.LazyTensors(
        {name: (native.shape(t), native.dtype(t)) for name, t in renamed.items()},
        lambda name: native[renamed[name]],
        native.close,
    )
    return source._replace(native=view, table=table, config=config)


def _teacher_layer_name(name: str, layers: list[int]) -> str:
    """``...transformer.layer.{j}.rest`` -> ``...transformer.layer.{layers[j]}.rest``; other names unchanged."""
    parts = name.split(".")
    for i in range(len(parts) - 2):
        if parts[i] == "transformer" and parts[i + 1] == "layer":
            parts[i + 2] = str(layers[int(parts[i + 2])])
            return ".".join(parts)
    return name


def _file_num_labels(table, config: DistilBertConfig) -> int:
    for spec in table:
        if spec.name == "classifier.weight" and spec.shape[0] != 1:
            return spec.shape[0]
    return config.num_labels


def _source_positions(native: files.LazyTensors, naming: str, table) -> np.ndarray | None:
    """The source's stored sinusoidal position table (None: not sinusoidal, or not stored)."""
    spec = next((s for s in table if s.kind == SINUSOIDAL), None)
    name = spec.names[naming] if spec is not None else None
    return native[name] if name is not None and name in native else None


def _converted_view(native: files.LazyTensors, naming_in: str, naming_out: str, rows, table, dtype, progress):
    """A lazy mapping of the target's tensors, each read and re-laid-out only when the writer asks."""
    by_name = {spec.name: spec for spec in table}
    reference_dtype = native.dtype(next(iter(native)))
    cast = DTYPES[dtype] if dtype else None

    def source(spec) -> tuple[np.ndarray, bool]:
        """The canonical-or-source-layout array and whether it is in canonical (PyTorch) layout.

        Stored tensors are taken as stored; the formula fills a sinusoidal table only where the
        source does not store one (the reference's ``flax_model.msgpack``)."""
        name = spec.names[naming_in]
        if name is not None and name in native:
            return native[name], naming_in == "pt"
        if spec.kind == TIED:
            return source(by_name[spec.tied_to])
        if spec.kind == SINUSOIDAL:
            return sinusoidal_table(*spec.shape).astype(reference_dtype), True
        raise KeyError(spec.name)  # unreachable: check_native has vouched for every stored row

    def out_dtype(spec):
        name = spec.names[naming_in]
        stored = native.dtype(name) if name is not None and name in native else reference_dtype
        return np.dtype(cast) if cast is not None and _is_float(stored) else stored

    bar = _progress_bar(sum(int(np.prod(s.shape)) * out_dtype(s).itemsize for s in rows)) if progress else None

    def load(native_out_name):
        spec = by_out[native_out_name]
        array, canonical = source(spec)
        want_canonical = naming_out == "pt"
        if spec.transposed and canonical != want_canonical:
            array = array.T
        array = np.ascontiguousarray(array, dtype=out_dtype(spec))
        if bar is not None:
            bar.update(array.nbytes)
        return array

    by_out = {spec.names[naming_out]: spec for spec in rows}
    meta = {name: (spec.native_shape(naming_out), out_dtype(spec)) for name, spec in by_out.items()}
    return files.LazyTensors(meta, load, bar.close if bar is not None else None)


def _progress_bar(total_bytes: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with huggingface_hub; without it, no bar
        return None
    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc="converting", leave=False)


def _write_external(fmt: ExternalFormat, native, naming, table, config, task, work, weight_format, dtype) -> int:
    """An external format's writer gets the whole canonical state (cast to ``dtype``)."""
    state = from_native(native, naming, table)
    if dtype:
        state = {k: v.astype(DTYPES[dtype]) if _is_float(v.dtype) else v for k, v in state.items()}
    fmt.write(state, config, task, work, weight_format)
    return len(state)


def _is_float(dtype) -> bool:
    return np.issubdtype(dtype, np.floating) or dtype == ml_dtypes.bfloat16
