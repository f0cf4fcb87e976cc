"""Loading and saving whole checkpoints as canonical numpy states, for every backend.

A backend's ``from_pretrained`` calls :func:`load_state` and copies the arrays into its variables;
its ``save_pretrained`` hands its canonical state to :func:`save_state`. Everything about files,
names, layouts, prefixes, ties and strictness is decided here, once.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from distilbert.common import files
from distilbert.common.config import DistilBertConfig
from distilbert.common.hub import resolve_dir
from distilbert.common.names import (
    SINUSOIDAL,
    TASK_CLASSES,
    TIED,
    WeightMismatchError,
    adapt_prefix,
    check_native,
    from_native,
    native_shapes,
    sinusoidal_table,
    task_from_architectures,
    to_native,
    weight_table,
)

logger = logging.getLogger("distilbert")

# Weight formats: file name, lazy opener, and the naming of the weight table they use.
FORMATS = {
    "safetensors": (files.SAFETENSORS, files.open_safetensors, "pt"),
    "safetensors-sharded": (files.SAFETENSORS_INDEX, lambda p: files.open_sharded(p, files.open_safetensors), "pt"),
    "pytorch": (files.PT_BIN, files.open_torch_bin, "pt"),
    "pytorch-sharded": (files.PT_BIN_INDEX, lambda p: files.open_sharded(p, files.open_torch_bin), "pt"),
    "tf": (files.TF_H5, files.open_tf_h5, "tf"),
    "tf-sharded": (files.TF_H5_INDEX, files.open_tf_h5_sharded, "tf"),
    "flax": (files.FLAX_MSGPACK, files.open_flax_msgpack, "flax"),
    "flax-sharded": (files.FLAX_MSGPACK_INDEX, lambda p: files.open_sharded(p, files.open_flax_msgpack), "flax"),
}
# Which format each framework writes by default and prefers to read after safetensors.
NATIVE = {"pt": "safetensors", "tf": "tf", "flax": "flax"}
CLASS_PREFIX = {"pt": "", "tf": "TF", "flax": "Flax"}


@dataclass
class LoadReport:
    """What a load did besides copying tensors: the file read, what was left behind, what is new.

    ``from_pretrained(..., output_loading_info=True)`` returns it in every backend. It also reads as the
    reference's loading-info dict: ``report["missing_keys"]`` (= ``new``), ``["unexpected_keys"]``
    (= ``dropped``), ``["mismatched_keys"]`` and ``["error_msgs"]`` (always empty: errors raise).
    """

    path: str
    format: str
    source_task: str
    dropped: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)

    def __getitem__(self, key: str) -> list:
        info: dict[str, list] = {
            "missing_keys": self.new,
            "unexpected_keys": self.dropped,
            "mismatched_keys": self.mismatched,
            "error_msgs": [],
        }
        if key not in info:
            raise KeyError(f"{key!r}; loading info has {', '.join(info)}")
        return list(info[key])

    def keys(self) -> list[str]:
        return ["missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"]


def available_formats(directory: str) -> list[str]:
    """Weight formats present in ``directory``, in the order :func:`load_state` tries them."""
    return [fmt for fmt, (fname, _, _) in FORMATS.items() if os.path.isfile(os.path.join(directory, fname))]


def source_framework(from_pt: bool = False, from_tf: bool = False, from_flax: bool = False) -> str | None:
    """The framework whose weight file the reference's ``from_pt`` / ``from_tf`` / ``from_flax`` flag asks for.

    Every backend's ``from_pretrained`` takes the three flags (for drop-in use; none reaches
    ``config.json``) and reads that framework's file first when the directory has several; every
    format loads without them.
    """
    given = [name for name, on in (("pt", from_pt), ("tf", from_tf), ("flax", from_flax)) if on]
    if len(given) > 1:
        raise ValueError(
            "pass at most one of from_pt, from_tf and from_flax, got " + ", ".join(f"from_{g}" for g in given)
        )
    return given[0] if given else None


def pick_format(directory: str, framework: str | None = None, fmt: str | None = None) -> tuple[str, str]:
    """The weight format to read in ``directory`` and its file: ``fmt`` if given (it must be there), else
    the first present of safetensors, ``framework``'s own format, the others, pickles last."""
    present = available_formats(directory)
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown weight format {fmt!r}; expected one of {sorted(FORMATS)}")
        if fmt not in present:
            raise FileNotFoundError(f"no {FORMATS[fmt][0]} in {directory!r} (found: {present or 'nothing'})")
        return fmt, os.path.join(directory, FORMATS[fmt][0])
    if not present:
        names = ", ".join(f[0] for f in FORMATS.values())
        raise FileNotFoundError(f"no weights in {directory!r}: expected one of {names}")
    # safetensors first (fast, safe), then the framework's own format, then the rest; pickles last.
    native = NATIVE.get(framework or "pt")
    order = [
        "safetensors",
        "safetensors-sharded",
        native,
        f"{native}-sharded",
        "tf",
        "tf-sharded",
        "flax",
        "flax-sharded",
        "pytorch",
        "pytorch-sharded",
    ]
    chosen = next(f for f in order if f in present)
    return chosen, os.path.join(directory, FORMATS[chosen][0])


def detect_task(shapes: Mapping[str, tuple[int, ...]], naming: str, config: DistilBertConfig) -> tuple[str, int | None]:
    """The task a file was saved from (by its head tensors), and its classifier's output count."""
    heads, classifier_out = set(), None
    for name, shape in shapes.items():
        top = name.replace(".", "/").split("/")[0]
        heads.add(top)
        if top == "classifier" and len(shape) == 2:
            classifier_out = shape[0] if naming == "pt" else shape[1]
    if "qa_outputs" in heads:
        return "question_answering", classifier_out
    if "vocab_transform" in heads:
        return "masked_lm", classifier_out
    if "pre_classifier" in heads:
        declared = task_from_architectures(config.architectures)
        if declared == "multiple_choice" or (
            declared != "sequence_classification" and classifier_out == 1 and config.num_labels != 1
        ):
            return "multiple_choice", classifier_out
        return "sequence_classification", classifier_out
    if "classifier" in heads:
        return "token_classification", classifier_out
    return "base", None


def open_native(path: str, config: DistilBertConfig, fmt: str):
    """Opens a weight file lazily and works out what it holds.

    Returns:
        ``(native, naming, task, table)``: the lazy tensors, the table column they are named by,
        the task they were saved from, and that task's table (with the file's label count), which
        :func:`~distilbert.common.names.check_native` has already checked them against.
    """
    _, opener, naming = FORMATS[fmt]
    native = opener(path)
    try:
        if config.n_layers > len(native):  # before building a table that large (a corrupted config.json)
            raise files.CheckpointError(
                f"{path!r} holds {len(native)} tensors, too few for the n_layers={config.n_layers} of its config.json"
            )
        shapes = native_shapes(native)
        task, n_out = detect_task(shapes, naming, config)
        source_config = config
        if (
            n_out is not None
            and task in ("sequence_classification", "token_classification")
            and n_out != config.num_labels
        ):
            source_config = config.replace(num_labels=n_out)
        table = weight_table(source_config, task)
        check_native(shapes, naming, table, where=repr(path))
        for name in native:
            if not files.is_float_dtype(native.dtype(name)):
                raise files.CheckpointError(
                    f"{native.file_of(name) or path!r}: weights must be floating point, but "
                    f"{name!r} holds {native.dtype(name)}"
                )
    except BaseException:
        native.close()
        raise
    return native, naming, task, table


def read_state(path: str, config: DistilBertConfig, fmt: str) -> tuple[dict[str, np.ndarray], str]:
    """Reads a weight file of format ``fmt`` to a canonical state; returns it and its task."""
    native, naming, task, table = open_native(path, config, fmt)
    with native:
        return from_native(native, naming, table, where=repr(path)), task


def load_state(
    name_or_path: str | os.PathLike,
    config: DistilBertConfig,
    task: str,
    framework: str | None = None,
    weight_format: str | None = None,
    ignore_mismatched_sizes: bool = False,
    source: str | None = None,
) -> tuple[dict[str, np.ndarray], LoadReport]:
    """Reads a checkpoint directory (or hub id) into a canonical state for ``task``'s model.

    Args:
        name_or_path: Local directory or hub id.
        config: The target model's config (its sizes decide the expected shapes).
        task: The target model's task (see :data:`distilbert.common.names.TASKS`).
        framework: ``"pt"``, ``"tf"`` or ``"flax"``: which native format to prefer after safetensors.
        weight_format: Read this format only (a key of :data:`FORMATS`).
        ignore_mismatched_sizes: Leave tensors whose shape differs out (to be initialised) instead
            of raising.
        source: ``"pt"``, ``"tf"`` or ``"flax"`` (see :func:`source_framework`): read that framework's
            weight file when there is one and ``weight_format`` is None.

    Returns:
        ``(state, report)``. ``state`` holds every tensor of the target table except
        ``report.new`` (a new head: the caller initialises those).

    Raises:
        WeightMismatchError: missing, unexpected or mis-shaped tensors, each named.
        files.CheckpointError: unreadable, truncated or unsafe files.
    """
    directory = resolve_dir(name_or_path)
    if source is not None and weight_format is None:
        weight_format = next((f for f in available_formats(directory) if FORMATS[f][2] == source), None)
    fmt, path = pick_format(directory, framework, weight_format)
    state, source_task = read_state(path, config, fmt)
    table = weight_table(config, task)
    state, dropped, new = adapt_prefix(state, source_task, task, table)
    mismatched = []
    for spec in table:
        if spec.name in state and tuple(state[spec.name].shape) != spec.shape:
            mismatched.append((spec.name, tuple(state[spec.name].shape), spec.shape))
    if mismatched and not ignore_mismatched_sizes:
        raise WeightMismatchError(mismatched=mismatched, where=repr(path))
    for name, _, _ in mismatched:
        del state[name]
        new.append(name)
    report = LoadReport(path, fmt, source_task, dropped, new, mismatched)
    if dropped:
        logger.warning("%s: unused tensors of the %s checkpoint: %s", path, source_task, ", ".join(dropped))
    if new:
        logger.warning("%s: newly initialised (not in the checkpoint; train them): %s", path, ", ".join(new))
    return state, report


def save_state(
    directory: str | os.PathLike,
    state: Mapping[str, np.ndarray],
    config: DistilBertConfig,
    task: str,
    framework: str = "pt",
    weight_format: str | None = None,
    max_shard_size: int | str | None = None,
) -> str:
    """Writes ``config.json`` and the weights in the Hugging Face layout; returns the weight file.

    Args:
        directory: Target directory (created if needed).
        state: Canonical state (every row of the table).
        config: The model's config; ``architectures`` is set to the class that saved it.
        task: The model's task.
        framework: Which class name goes in ``architectures`` and the default format.
        weight_format: ``"safetensors"`` (default for PyTorch), ``"tf"`` (``tf_model.h5``) or
            ``"flax"`` (``flax_model.msgpack``).
        max_shard_size: Split the weights into shards of at most this size (bytes, or ``"200MB"``), in
            any format, as transformers' ``save_pretrained(max_shard_size=...)`` does.
    """
    max_shard_size = parse_size(max_shard_size)
    directory = os.fspath(directory)
    weight_format = weight_format or NATIVE[framework]
    naming = WEIGHT_NAMING.get(weight_format)
    if naming is None:
        raise ValueError(f"cannot write weight format {weight_format!r}; use 'safetensors', 'tf' or 'flax'")
    config = config_for_positions(config, weight_format, _stored_positions(state, weight_table(config, task)))
    table = weight_table(config, task)
    native = to_native(state, naming, stored_rows(table, weight_format))
    path = write_weights(directory, native, table, task, weight_format, max_shard_size)
    write_config(directory, config, task, framework)
    return path


# The table column each writable format is named by.
WEIGHT_NAMING = {"safetensors": "pt", "tf": "tf", "flax": "flax"}


def _stored_positions(state: Mapping[str, np.ndarray], table) -> np.ndarray | None:
    """The sinusoidal position table of a canonical state, if its config has one."""
    spec = next((s for s in table if s.kind == SINUSOIDAL), None)
    return None if spec is None else state.get(spec.name)


def config_for_positions(
    config: DistilBertConfig, weight_format: str, positions: np.ndarray | None
) -> DistilBertConfig:
    """The config to write beside ``weight_format`` so that the reference class keeps a stored position table.

    The reference Flax class ignores a stored table when ``sinusoidal_pos_embds`` is true and recomputes
    the formula. So a ``flax_model.msgpack`` whose table is not exactly the formula's (the original
    DistilBERT recipe starts the student from BERT's learned table; any fine-tuned or perturbed checkpoint)
    is written with the table as learned positions and ``sinusoidal_pos_embds: false``, which is said on
    standard error: every class then gives the source's numbers. The formula's own table is left out, as
    the reference writes it. Other formats store the table and keep the config.

    Args:
        config: The source's config.
        weight_format: The format about to be written (``"flax"`` for the sharded one too).
        positions: The source's position table (None: it has none, or the formula fills it).
    """
    if weight_format != "flax" or not config.sinusoidal_pos_embds or positions is None:
        return config
    positions = np.asarray(positions)
    if np.array_equal(positions, sinusoidal_table(*positions.shape).astype(positions.dtype)):
        return config
    logger.warning(
        "%s: the stored position table is not the sinusoidal formula, which the reference Flax "
        "class would recompute; writing it as learned positions (sinusoidal_pos_embds: false)",
        files.FLAX_MSGPACK,
    )
    return config.replace(sinusoidal_pos_embds=False)


def parse_size(size: int | str | None) -> int | None:
    """``max_shard_size`` as bytes: an int, or a string such as ``"200MB"`` / ``"5GiB"``."""
    if size is None or isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]I?B)\s*", str(size).upper())
    if not match:
        raise ValueError(f"max_shard_size must be bytes or a size like '500MB', got {size!r}")
    unit = match.group(2)
    base = 1024 if "I" in unit else 1000
    return int(float(match.group(1)) * base ** ("KMG".index(unit[0]) + 1))


def write_weights(
    directory: str,
    native: Mapping[str, np.ndarray],
    table,
    task: str,
    weight_format: str,
    max_shard_size: int | None = None,
) -> str:
    """Writes tensors already named and laid out for ``weight_format``; returns the file written
    (the index when ``max_shard_size`` split them into shards).

    ``native`` may be lazy (:class:`~distilbert.common.files.LazyTensors`): each writer pulls one
    tensor at a time.
    """
    if weight_format == "safetensors":
        if max_shard_size:
            return files.write_safetensors_sharded(directory, native, max_shard_size)
        files.write_safetensors(os.path.join(directory, files.SAFETENSORS), native)
        return os.path.join(directory, files.SAFETENSORS)
    if weight_format == "tf":
        model_name = _keras2_name("TF" + TASK_CLASSES[task])
        if max_shard_size:
            return files.write_tf_h5_sharded(directory, native, model_name, max_shard_size)
        path = os.path.join(directory, files.TF_H5)
        # HF's TF LM head holds the whole embeddings layer, so Keras lists its weights there too.
        shared = {
            spec.names["pt"].split(".")[0]: [n for n in native if n.startswith("distilbert/embeddings/")]
            for spec in table
            if spec.kind == TIED
        }
        files.write_tf_h5(path, native, model_name, shared)
        return path
    if max_shard_size:
        return files.write_sharded(directory, native, max_shard_size, files.FLAX_MSGPACK, files.write_flax_msgpack)
    path = os.path.join(directory, files.FLAX_MSGPACK)
    files.write_flax_msgpack(path, native)
    return path


def stored_rows(table, weight_format: str):
    """The rows a weight format stores; refuses a format that would silently drop a tensor.

    Tied rows share storage (safetensors leaves them out, as the reference does) and the reference
    Flax format has no sinusoidal table (:func:`config_for_positions` decides when that loses nothing),
    so a format may omit those; any other omission would lose weights (the reference's ``tf_model.h5``
    has no place for an untied masked-LM projector).
    """
    naming = WEIGHT_NAMING[weight_format]
    lost = [s.name for s in table if s.names[naming] is None and s.kind not in (TIED, SINUSOIDAL)]
    if lost:
        raise ValueError(
            f"the {weight_format} format cannot hold {', '.join(lost)}: an untied vocab_projector "
            "has no place in tf_model.h5 (the reference TF class has none); save as safetensors or flax"
        )
    return [s for s in table if s.names[naming] is not None and not (weight_format == "safetensors" and s.kind == TIED)]


def write_config(directory: str, config: DistilBertConfig, task: str, framework: str) -> None:
    """Writes ``config.json`` naming the class (of ``framework``) that the weights belong to."""
    data = config.to_dict()
    data["architectures"] = [CLASS_PREFIX.get(framework, "") + TASK_CLASSES[task]]
    DistilBertConfig.from_dict(data).save_pretrained(directory)


def _keras2_name(class_name: str) -> str:
    """The name Keras 2 gives an unnamed model of ``class_name`` (TFDistilBertModel -> tf_distil_bert_model)."""
    out = []
    for i, ch in enumerate(class_name):
        if (
            ch.isupper()
            and i
            and (not class_name[i - 1].isupper() or (i + 1 < len(class_name) and class_name[i + 1].islower()))
        ):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def init_state(config: DistilBertConfig, task: str, seed: int = 0, names=None) -> dict[str, np.ndarray]:
    """A freshly initialised canonical state as the reference initialises it (float32).

    Linear and embedding weights ~ N(0, initializer_range), biases 0, LayerNorm 1/0, the padding
    row of the word embeddings 0, sinusoidal tables fixed, tied rows shared.

    Args:
        names: Initialise only these canonical names (e.g. a new head); default all.
    """
    from distilbert.common.names import EMBEDDING, LINEAR, NORM_WEIGHT

    rng = np.random.default_rng(seed)
    table = weight_table(config, task)
    out: dict[str, np.ndarray] = {}
    for spec in table:
        if names is not None and spec.name not in names:
            continue
        if spec.kind in (LINEAR, EMBEDDING):
            array = rng.normal(0.0, config.initializer_range, spec.shape).astype(np.float32)
            if (
                spec.kind == EMBEDDING
                and spec.name.endswith("word_embeddings.weight")
                and config.pad_token_id is not None
            ):
                array[config.pad_token_id] = 0.0
        elif spec.kind == NORM_WEIGHT:
            array = np.ones(spec.shape, np.float32)
        elif spec.kind == SINUSOIDAL:
            array = sinusoidal_table(*spec.shape)
        elif spec.kind == TIED:
            continue
        else:
            array = np.zeros(spec.shape, np.float32)
        out[spec.name] = array
    for spec in table:
        if spec.kind == TIED and spec.name not in out and (names is None or spec.name in names):
            if spec.tied_to in out:
                out[spec.name] = out[spec.tied_to]
    return out
