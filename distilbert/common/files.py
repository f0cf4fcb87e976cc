"""Checkpoint files, framework-free: numpy arrays keyed by each format's own tensor names.

Openers return a :class:`LazyTensors` mapping ``{native_name: np.ndarray}`` whose tensors are read one
at a time, with dtypes as stored (bfloat16 through ``ml_dtypes``); writers take any such mapping, pull
one tensor at a time and write to a temporary name that is renamed into place, so a failure never
leaves a half-written file. :mod:`distilbert.common.names` maps native names to canonical ones.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)
import numpy as np

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PT_BIN = "pytorch_model.bin"
PT_BIN_INDEX = "pytorch_model.bin.index.json"
TF_H5 = "tf_model.h5"
TF_H5_INDEX = "tf_model.h5.index.json"
FLAX_MSGPACK = "flax_model.msgpack"
FLAX_MSGPACK_INDEX = "flax_model.msgpack.index.json"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupted or unsafe; the message names it."""


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_shape(value) -> bool:
    return isinstance(value, (list, tuple)) and all(_is_int(n) and n >= 0 for n in value)


def _short(value, limit: int = 80) -> str:
    """A value for an error message, cut short (a corrupted field can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _prod(shape) -> int:
    """Element count in Python ints (no overflow, whatever the shape claims)."""
    out = 1
    for n in shape:
        out *= int(n)
    return out


_ML_FLOATS = {np.dtype(getattr(ml_dtypes, name)) for name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")}


def is_float_dtype(dtype) -> bool:
    """Floating point, numpy's or ``ml_dtypes``' (bfloat16, float8): what a weight tensor may hold."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype in _ML_FLOATS


def read_json_object(path: str, what: str) -> dict:
    """A JSON file that must hold an object; a missing, invalid or non-object file raises :class:`CheckpointError`."""
    _require_file(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, nesting, int digits
        raise CheckpointError(f"{what} {path!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} {path!r} must hold a JSON object, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------ atomic writing
def public_mode(path: str | os.PathLike) -> None:
    """Gives ``path`` the mode a plain ``open``/``mkdir`` would (0666/0777 less the umask).

    ``tempfile.mkstemp``/``mkdtemp`` make their files and directories private to the user; a
    checkpoint or an export renamed into place from one must not stay that way.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` only if the block succeeds."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        public_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yields an empty work directory beside ``path``; it replaces ``path`` only if the block succeeds.

    On an error the work directory is removed and ``path`` is left as it was. Work directories that
    killed processes left behind (``.NAME.PID.RANDOM.tmp`` or ``.old``) are removed first.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_work(path)
    work = tempfile.mkdtemp(prefix=_work_prefix(path), suffix=".tmp", dir=parent)
    try:
        yield work
        public_mode(work)
        _replace_directory(work, path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _work_prefix(path: str) -> str:
    """Hidden work directories beside ``path`` are named ``.NAME.PID.RANDOM.tmp`` (or ``.old``)."""
    return f".{os.path.basename(path)}.{os.getpid()}."


def _remove_stale_work(path: str) -> None:
    """Removes work directories for ``path`` left by processes that are gone (killed with SIGKILL or by a
    power cut, when no clean-up could run); those of live processes stay."""
    prefix = f".{os.path.basename(path)}."
    parent = os.path.dirname(path)
    for name in os.listdir(parent):
        if not name.startswith(prefix):
            continue
        pid, _, rest = name[len(prefix) :].partition(".")  # "PID", "RANDOM.tmp"
        random_part, _, suffix = rest.partition(".")
        if not (pid.isdigit() and random_part and suffix in ("tmp", "old")):
            continue
        try:
            os.kill(int(pid), 0)  # signal 0 only asks whether the process exists
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except (PermissionError, OverflowError):
            pass  # alive under another user, or not a pid


def _replace_directory(work: str, path: str) -> None:
    """Renames the finished ``work`` directory to ``path``, moving an old one aside only at the end."""
    if not os.path.exists(path):
        os.rename(work, path)
        return
    old = tempfile.mkdtemp(prefix=_work_prefix(path), suffix=".old", dir=os.path.dirname(path))
    os.rmdir(old)
    os.rename(path, old)
    os.rename(work, path)
    if os.path.isdir(old):
        shutil.rmtree(old)
    else:
        os.remove(old)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path!r}")


class LazyTensors(Mapping):
    """``{name: array}`` whose arrays are read on access, one at a time; shapes and dtypes are known
    up front. Converters stream through it so that a checkpoint is never held twice in memory."""

    def __init__(
        self,
        meta: Mapping[str, tuple[tuple[int, ...], np.dtype]],
        load: Callable[[str], np.ndarray],
        close: Callable[[], None] | None = None,
        files: Mapping[str, str] | None = None,
    ):
        self.meta, self._load, self._close = dict(meta), load, close
        self._files = dict(files or {})

    def file_of(self, name: str) -> str | None:
        """The file holding ``name`` where the tensors come from several (a sharded checkpoint's shards)."""
        return self._files.get(name)

    @classmethod
    def from_dict(cls, arrays: Mapping[str, np.ndarray]) -> LazyTensors:
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        return cls({k: (v.shape, v.dtype) for k, v in arrays.items()}, arrays.__getitem__)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.meta:
            raise KeyError(name)
        return self._load(name)

    def __iter__(self):
        return iter(self.meta)

    def __len__(self) -> int:
        return len(self.meta)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.meta[name][0])

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self.meta[name][1])

    def nbytes(self, name: str) -> int:
        return int(np.prod(self.shape(name), dtype=np.int64)) * self.dtype(name).itemsize

    def subset(self, names) -> LazyTensors:
        return LazyTensors({n: self.meta[n] for n in names}, self._load)

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self) -> LazyTensors:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------- safetensors
_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_ST_CODES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


def open_safetensors(path: str | os.PathLike) -> LazyTensors:
    """Opens one ``.safetensors`` file lazily; a truncated or corrupted file raises :class:`CheckpointError`.

    Every header field is checked (dtype, shape, byte offsets within the file and matching the dtype and
    shape) and the ``safetensors`` package validates the header too; tensors are then read with plain
    file reads at their offsets, one at a time, so that converting never maps the whole file into memory.
    """
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    _require_file(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise ValueError(f"{size} bytes, shorter than the 8-byte header length")
            header_len = int.from_bytes(prefix, "little")
            if header_len > size - 8:
                raise ValueError(f"its header length {header_len} runs past the end of the file ({size} bytes)")
            header = json.loads(fh.read(header_len))
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"cannot read safetensors file {path!r} (truncated or corrupted?): {exc}") from None
    meta, offsets = _safetensors_header(header, size - 8 - header_len, f"safetensors file {path!r}")
    try:
        with safe_open(path, framework="numpy"):
            pass
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read safetensors file {path!r} (truncated or corrupted?): {exc}") from None
    offsets = {name: 8 + header_len + begin for name, begin in offsets.items()}

    def load(name):
        shape, dtype = meta[name]
        count = _prod(shape)
        array = np.fromfile(path, dtype=dtype.newbyteorder("<"), count=count, offset=offsets[name])
        if array.size != count:
            raise CheckpointError(f"safetensors file {path!r} ends inside {name!r} (truncated?)")
        return array.astype(dtype, copy=False).reshape(shape)

    return LazyTensors(meta, load)


def _safetensors_header(header, data_len: int, where: str):
    """Checks a parsed header's fields; returns ``({name: (shape, dtype)}, {name: data offset})``.

    The format: ``{name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__":
    {str: str}}``, the tensors tiling the data after the header exactly, without holes or overlaps.
    """
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: the header must be a JSON object, got {type(header).__name__}")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{where}: field '__metadata__' must map strings to strings, got {_short(metadata)}")
    meta, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        field = f"tensor {name!r}"
        if not isinstance(info, dict):
            raise CheckpointError(
                f"{where}: {field} must be an object with dtype, shape and data_offsets, got {_short(info)}"
            )
        dtype, shape, span = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
            raise CheckpointError(
                f"{where}: {field} has field 'dtype' {_short(dtype)}; expected one of {', '.join(_ST_DTYPES)}"
            )
        if not isinstance(shape, list) or not _is_shape(shape):
            raise CheckpointError(
                f"{where}: {field} has field 'shape' {_short(shape)}; expected a list of non-negative integers"
            )
        if not (
            isinstance(span, list) and len(span) == 2 and all(_is_int(n) for n in span) and 0 <= span[0] <= span[1]
        ):
            raise CheckpointError(
                f"{where}: {field} has field 'data_offsets' {_short(span)}; expected "
                "[begin, end] with 0 <= begin <= end"
            )
        nbytes = _prod(shape) * np.dtype(_ST_DTYPES[dtype]).itemsize
        if span[1] - span[0] != nbytes:
            raise CheckpointError(
                f"{where}: {field} has data_offsets {span} ({span[1] - span[0]} bytes) but its "
                f"dtype {dtype} and shape {shape} need {nbytes} bytes"
            )
        meta[name] = (tuple(shape), np.dtype(_ST_DTYPES[dtype]))
        spans.append((span[0], span[1], name))
    needed = max((stop for _, stop, _ in spans), default=0)
    if needed > data_len:
        raise CheckpointError(
            f"{where} is truncated or corrupted: its header's data_offsets need {needed} bytes of "
            f"data, the file holds {data_len}"
        )
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise CheckpointError(
                f"{where}: field 'data_offsets' of tensor {name!r} starts at {begin}, not at {end} "
                "(tensors overlap or leave a hole)"
            )
        end = stop
    if end != data_len:
        raise CheckpointError(f"{where}: the tensors end at byte {end} of the data, but it holds {data_len} bytes")
    return meta, {name: begin for begin, _, name in spans}


def write_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Writes a ``.safetensors`` file, pulling one tensor at a time from ``tensors``.

    The format is an 8-byte header length, a JSON header of dtypes, shapes and byte offsets, then
    the raw little-endian tensors. The ``safetensors`` package has no streaming writer, so
    this one writes the header from shapes alone (a :class:`LazyTensors` gives them without
    reading) and then copies tensors one by one.
    """
    lazy = tensors if isinstance(tensors, LazyTensors) else LazyTensors.from_dict(tensors)
    header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name in lazy:
        dtype = lazy.dtype(name)
        if dtype not in _ST_CODES:
            raise TypeError(f"cannot write {name!r} of dtype {dtype} to safetensors")
        size = lazy.nbytes(name)
        header[name] = {
            "dtype": _ST_CODES[dtype],
            "shape": list(lazy.shape(name)),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(len(encoded).to_bytes(8, "little"))
            fh.write(encoded)
            for name in lazy:
                array = np.asarray(lazy[name])
                if array.shape != lazy.shape(name) or array.dtype != lazy.dtype(name):
                    raise CheckpointError(f"{name!r} changed shape or dtype while being written")
                _write_raw(fh, array.astype(array.dtype.newbyteorder("<"), copy=False))


def _write_raw(fh, array: np.ndarray) -> None:
    """Writes an array's bytes without copying them (a byte view of a contiguous array)."""
    fh.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def read_index(index_path: str | os.PathLike) -> dict[str, str]:
    """Reads a shard index (``{"metadata": {"total_size": bytes}, "weight_map": {tensor: shard file}}``).

    Every field is checked for type and range; shard names that point outside the index's directory are
    refused. Errors are :class:`CheckpointError` naming the file and the field.
    """
    index_path = os.fspath(index_path)
    index = read_json_object(index_path, "shard index")
    where = f"shard index {index_path!r}"
    if "metadata" in index:
        metadata = index["metadata"]
        if not isinstance(metadata, dict):
            raise CheckpointError(f"{where}: field 'metadata' must be an object, got {_short(metadata)}")
        total = metadata.get("total_size", 0)
        if not _is_int(total) or total < 0:
            raise CheckpointError(
                f"{where}: field 'metadata.total_size' must be a byte count (an integer >= 0), got {_short(total)}"
            )
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{where}: field 'weight_map' must be a non-empty object of tensor name -> shard "
            f"file, got {_short(weight_map)}"
        )
    directory = os.path.realpath(os.path.dirname(index_path))
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard.strip():
            raise CheckpointError(
                f"{where}: field 'weight_map' maps {name!r} to {_short(shard)}; expected the name of a shard file"
            )
        target = os.path.realpath(os.path.join(directory, shard))
        if os.path.isabs(shard) or os.path.dirname(target) != directory:
            raise CheckpointError(f"{where}: its weight_map maps {name!r} to {shard!r}, outside its directory; refused")
    return weight_map


def open_sharded(
    index_path: str | os.PathLike, open_one: Callable[[str], LazyTensors], index_name: Callable[[str], str] = str
) -> LazyTensors:
    """Opens every shard of an index lazily and checks that each shard holds the tensors the index puts there.

    ``index_name`` turns a name of the index into the shards' own name for it (HF's TF indexes keep the
    Keras model's name in front, which the shards drop).
    """
    index_path = os.fspath(index_path)
    weight_map = read_index(index_path)
    where = f"shard index {index_path!r}"
    directory = os.path.dirname(index_path)
    shards: dict[str, LazyTensors] = {}

    def close():
        for shard in shards.values():
            shard.close()

    try:
        for shard in dict.fromkeys(weight_map.values()):
            path = os.path.join(directory, shard)
            if not os.path.isfile(path):
                raise CheckpointError(f"{where}: a shard file its weight_map names is not found: {path!r}")
            shards[shard] = open_one(path)
        owner: dict[str, str] = {}
        for shard, tensors in shards.items():
            for name in tensors:
                if name in owner:
                    raise CheckpointError(f"{where}: tensor {name!r} is in two shards, {owner[name]} and {shard}")
                owner[name] = shard
        absent = sorted({index_name(name) for name in weight_map} - set(owner))
        if absent:
            raise CheckpointError(f"{where} lists tensors no shard holds: {absent}")
        misplaced = sorted(name for name, shard in weight_map.items() if owner[index_name(name)] != shard)
        if misplaced:
            raise CheckpointError(f"{where}: its weight_map puts {misplaced} in shards that do not hold them")
    except BaseException:
        close()
        raise
    meta = {name: shards[shard].meta[name] for name, shard in owner.items()}
    return LazyTensors(
        meta,
        lambda name: shards[owner[name]][name],
        close,
        files={name: os.path.join(directory, shard) for name, shard in owner.items()},
    )


def write_sharded(
    directory: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    max_shard_bytes: int,
    filename: str,
    write_one: Callable[[str, LazyTensors], None],
    index_name: Callable[[str], str] = str,
) -> str:
    """Writes ``tensors`` as ``save_pretrained(max_shard_size=...)`` does: one file ``filename`` when they
    fit in ``max_shard_bytes``, else shards ``stem-0000i-of-0000n.ext`` and the index ``filename.index.json``.

    ``write_one(path, subset)`` writes one file; ``index_name`` gives a tensor's name in the index.
    Returns the single file's or the index's path.
    """
    directory = os.fspath(directory)
    lazy = tensors if isinstance(tensors, LazyTensors) else LazyTensors.from_dict(tensors)
    shards: list[list[str]] = [[]]
    size = 0
    for name in lazy:
        nbytes = lazy.nbytes(name)
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    if len(shards) == 1:
        write_one(os.path.join(directory, filename), lazy)
        return os.path.join(directory, filename)
    stem, ext = os.path.splitext(filename)
    weight_map = {}
    for i, names in enumerate(shards, 1):
        shard = f"{stem}-{i:05d}-of-{len(shards):05d}{ext}"
        write_one(os.path.join(directory, shard), lazy.subset(names))
        weight_map.update(dict.fromkeys(map(index_name, names), shard))
    total = sum(lazy.nbytes(name) for name in lazy)
    index = os.path.join(directory, filename + ".index.json")
    atomic_write_json(index, {"metadata": {"total_size": total}, "weight_map": weight_map})
    return index


def write_safetensors_sharded(
    directory: str | os.PathLike, tensors: Mapping[str, np.ndarray], max_shard_bytes: int
) -> str:
    """Writes ``model-0000i-of-0000n.safetensors`` shards and their index, as ``save_pretrained`` does."""
    return write_sharded(directory, tensors, max_shard_bytes, SAFETENSORS, write_safetensors)


# ------------------------------------------------------------------------------ pytorch pickle
def open_torch_bin(path: str | os.PathLike) -> LazyTensors:
    """``pytorch_model.bin`` (a pickle: read whole, with ``weights_only=True``), as a mapping."""
    return LazyTensors.from_dict(read_torch_bin(path))


def read_torch_bin(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads ``pytorch_model.bin`` with ``torch.load(weights_only=True)``: a pickle carrying code is refused."""
    path = os.fspath(path)
    _require_file(path)
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path!r} is a PyTorch pickle; reading it needs torch (pip install 'distilbert[torch]'), "
            "or convert it to safetensors"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(
            f"cannot read {path!r} safely (weights_only=True): {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path!r} does not hold a state dict")
    out = {}
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"{path!r} maps {_short(name)} to a {type(tensor).__name__}; a state dict maps tensor names to tensors"
            )
        tensor = tensor.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            out[name] = tensor.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
        else:
            try:
                out[name] = tensor.numpy()
            except TypeError as exc:  # a dtype numpy has no equivalent of
                raise CheckpointError(f"{path!r}: tensor {name!r} has dtype {tensor.dtype}: {exc}") from None
    return out


# ------------------------------------------------------------------------------ HF TF (Keras 2 h5)
def open_tf_h5(path: str | os.PathLike) -> LazyTensors:
    """Opens an HF ``tf_model.h5`` (Keras 2 ``save_weights`` layout), or one shard of a sharded one, lazily.

    Names lose their first component (the Keras model's own name, which varies), e.g.
    ``distilbert/embeddings/word_embeddings/weight:0``. The attributes naming the weights are checked for
    type, every name they list must be a numeric dataset in the file, and a bfloat16 marker must sit on
    2-byte data; anything else raises :class:`CheckpointError` naming the file and the attribute.
    """
    import h5py

    path = os.fspath(path)
    _require_file(path)
    h5_errors = (OSError, KeyError, ValueError, TypeError, RuntimeError)  # what h5py raises on a bad file
    try:
        fh = h5py.File(path, "r")
    except h5_errors as exc:
        raise CheckpointError(f"cannot read TF h5 file {path!r} (truncated or corrupted?): {exc}") from None
    try:
        datasets, copies = _h5_weights(h5py, fh, path)
        meta = {name: _h5_meta(ds, name, path) for name, ds in datasets.items()}
        for name, dataset in copies:  # a weight that several layers share is stored once per layer
            if _h5_meta(dataset, name, path) != meta[name]:
                raise CheckpointError(
                    f"{path!r}: weight {name!r} is stored twice with different shapes or dtypes "
                    f"({dataset.name!r} and {datasets[name].name!r})"
                )
    except CheckpointError:
        fh.close()
        raise
    except h5_errors as exc:
        fh.close()
        raise CheckpointError(f"cannot read TF h5 file {path!r} (truncated or corrupted?): {exc}") from None

    def load(name):
        try:
            array = np.asarray(datasets[name])
        except h5_errors as exc:
            raise CheckpointError(f"cannot read {name!r} from {path!r} (truncated or corrupted?): {exc}") from None
        return array.view(ml_dtypes.bfloat16) if meta[name][1] == ml_dtypes.bfloat16 else array

    return LazyTensors(meta, load, fh.close)


def _h5_weights(h5py, fh, path: str) -> tuple[dict, list]:
    """``{name: dataset}`` of a Keras 2 weights file, and the further copies of shared weights as
    ``[(name, dataset)]``: ``layer_names`` lists groups whose ``weight_names`` list their datasets (a shard's
    ``layer_names`` lists the datasets themselves)."""
    if "layer_names" not in fh.attrs:
        raise CheckpointError(f"{path!r} holds no Keras weights (no 'layer_names' attribute)")
    datasets, copies = {}, []
    for layer in _h5_name_list(fh.attrs["layer_names"], f"{path!r}: attribute 'layer_names'"):
        entry = fh.get(layer)
        if isinstance(entry, h5py.Dataset):
            if layer in datasets:
                copies.append((layer, entry))
            else:
                datasets[layer] = entry
            continue
        if not isinstance(entry, h5py.Group):
            raise CheckpointError(
                f"{path!r}: attribute 'layer_names' lists {layer!r}, which is not a layer or weight of the file"
            )
        where = f"{path!r}: attribute 'weight_names' of layer {layer!r}"
        for weight_name in _h5_name_list(entry.attrs.get("weight_names", np.array([], "S")), where):
            dataset = entry.get(weight_name)
            if not isinstance(dataset, h5py.Dataset):
                raise CheckpointError(f"{where} lists {weight_name!r}, which is not a weight of the file")
            name = "/".join(weight_name.split("/")[1:])
            if name in datasets:
                copies.append((name, dataset))
            else:
                datasets[name] = dataset
    if not datasets:
        raise CheckpointError(f"{path!r} holds no Keras weights (its 'layer_names' attribute lists none)")
    return datasets, copies


def _h5_name_list(value, where: str) -> list[str]:
    """An h5 attribute that must be a list of names (bytes or str, as Keras and h5py write them)."""
    values = np.asarray(value)
    if values.ndim != 1 or not all(isinstance(v, (bytes, str)) for v in values.tolist()):
        raise CheckpointError(f"{where} must be a list of names, got {_short(value)}")
    try:
        names = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values.tolist()]
    except UnicodeDecodeError:
        raise CheckpointError(f"{where} holds a name that is not UTF-8") from None
    if not all(names):
        raise CheckpointError(f"{where} holds an empty name")
    return names


def _h5_meta(dataset, name: str, path: str) -> tuple[tuple[int, ...], np.dtype]:
    """A dataset's shape and dtype, checked: numbers, or 2-byte data marked ``dtype="bfloat16"``."""
    if dataset.shape is None:
        raise CheckpointError(f"{path!r}: weight {name!r} has no data (an empty dataspace)")
    dtype = dataset.dtype
    if _h5_is_bf16(dataset, f"{path!r}: weight {name!r}"):
        if dtype.itemsize != 2:
            raise CheckpointError(
                f"{path!r}: weight {name!r} is marked bfloat16 but holds {dtype.itemsize}-byte elements ({dtype})"
            )
        return tuple(dataset.shape), np.dtype(ml_dtypes.bfloat16)
    if dtype.kind not in "biuf":
        raise CheckpointError(f"{path!r}: weight {name!r} holds {dtype} data, not numbers")
    return tuple(dataset.shape), dtype


def open_tf_h5_sharded(index_path: str | os.PathLike) -> LazyTensors:
    """Opens HF's sharded ``tf_model.h5`` (``tf_model.h5.index.json`` + ``tf_model-0000i-of-0000n.h5``)."""
    return open_sharded(index_path, open_tf_h5, index_name=lambda name: name.split("/", 1)[-1])


def write_tf_h5_sharded(
    directory: str | os.PathLike, tensors: Mapping[str, np.ndarray], model_name: str, max_shard_bytes: int
) -> str:
    """Writes HF's sharded ``tf_model.h5`` (or one ``tf_model.h5`` when the tensors fit in one shard)."""
    return write_sharded(
        directory, tensors, max_shard_bytes, TF_H5, _write_tf_h5_shard, index_name=lambda name: f"{model_name}/{name}"
    )


def _write_tf_h5_shard(path: str, tensors: LazyTensors) -> None:
    """One shard as HF's TF ``save_pretrained`` writes it: ``layer_names`` lists the datasets themselves."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.attrs["layer_names"] = _h5_names(tensors)
            for name in tensors:
                _h5_write(fh, name, tensors[name])


# HDF5 has no bfloat16: it is stored opaque with a dtype attribute (Keras 3's convention too).
def _h5_is_bf16(dataset, where: str) -> bool:
    marker = dataset.attrs.get("dtype")
    if marker is None:
        return False
    if not isinstance(marker, (str, bytes)):
        raise CheckpointError(f"{where}: attribute 'dtype' must be a string, got {_short(marker)}")
    return marker in ("bfloat16", b"bfloat16")


def _h5_write(parent, name: str, array) -> None:
    array = np.asarray(array)
    dataset = parent.create_dataset(name, data=array)
    if array.dtype == ml_dtypes.bfloat16:
        dataset.attrs["dtype"] = "bfloat16"


def _h5_names(names) -> np.ndarray:
    return np.array([n.encode() for n in names], dtype="S")


def write_tf_h5(
    path: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    model_name: str,
    shared: Mapping[str, list[str]] | None = None,
) -> None:
    """Writes tensors named as :func:`open_tf_h5` gives them, in the layout HF's TF classes load.

    Each top-level layer (the first name component) is a group whose ``weight_names`` are the full
    Keras names ``{model_name}/{name}``, and the datasets sit at those names inside the group.
    ``shared`` lists, per layer, other layers' tensors that it also holds (Keras saves a shared
    variable under every layer that owns it, e.g. HF's TF masked-LM head owns the embeddings).
    """
    import h5py

    layers: dict[str, list[str]] = {}
    for name in tensors:
        layers.setdefault(name.split("/")[0], []).append(name)
    for layer, names in (shared or {}).items():
        layers.setdefault(layer, []).extend(names)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.attrs["backend"] = b"tensorflow"
            fh.attrs["keras_version"] = b"2.21.0"
            fh.attrs["layer_names"] = _h5_names(layers)
            for layer, names in layers.items():
                group = fh.create_group(layer)
                full = [f"{model_name}/{n}" for n in names]
                group.attrs["weight_names"] = _h5_names(full)
                for name, full_name in zip(names, full):
                    _h5_write(group, full_name, tensors[name])


# ------------------------------------------------------------------------------ HF Flax msgpack
_EXT_NDARRAY, _EXT_NPSCALAR = 1, 3
# Array dtypes a parameter file may name (flax.serialization writes numpy's dtype names).
_MSGPACK_DTYPES = {
    name: np.dtype(name)
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
}
_MSGPACK_DTYPES.update({str(dtype): dtype for dtype in _ML_FLOATS})
_MAX_DEPTH = 64  # a parameter tree is a few levels deep; deeper nesting is corruption (and would overflow the stack)


def _dtype(name) -> np.dtype:
    if not isinstance(name, str) or name not in _MSGPACK_DTYPES:
        raise ValueError(f"array dtype {_short(name)} is not one of {', '.join(_MSGPACK_DTYPES)}")
    return _MSGPACK_DTYPES[name]


class _ArrayRef:
    """Where an array's bytes sit in a msgpack file: read on demand."""

    def __init__(self, shape, dtype, offset, nbytes):
        self.shape, self.dtype, self.offset, self.nbytes = tuple(shape), dtype, offset, nbytes


class _MsgpackScanner:
    """Walks a msgpack file's structure without reading array data: ``flax.serialization`` stores
    each array as extension type 1 holding ``[shape, dtype name, raw bytes]``; we note offsets.

    Every length, shape and dtype is checked against the file as it is read; a bad one raises ValueError.
    """

    def __init__(self, fh, size: int):
        self.fh, self.size = fh, size

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise ValueError("unexpected end of data")
        return data

    def uint(self, n: int) -> int:
        return int.from_bytes(self.read(n), "big")

    def value(self, depth: int = 0):
        if depth > _MAX_DEPTH:
            raise ValueError(f"structure nested deeper than {_MAX_DEPTH} levels")
        b = self.read(1)[0]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return self.map(b & 0x0F, depth)
        if 0x90 <= b <= 0x9F:
            return [self.value(depth + 1) for _ in range(b & 0x0F)]
        if 0xA0 <= b <= 0xBF:
            return self.read(b & 0x1F).decode("utf-8")
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b]
        sizes = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
        if b in sizes:
            data = self.read(self.uint(sizes[b]))
            return data if b <= 0xC6 else data.decode("utf-8")
        if b in (0xDE, 0xDF):
            return self.map(self.uint(2 if b == 0xDE else 4), depth)
        if b in (0xDC, 0xDD):
            return [self.value(depth + 1) for _ in range(self.uint(2 if b == 0xDC else 4))]
        if 0xCC <= b <= 0xCF:
            return self.uint(1 << (b - 0xCC))
        if 0xD0 <= b <= 0xD3:
            n = 1 << (b - 0xD0)
            return int.from_bytes(self.read(n), "big", signed=True)
        if b in (0xCA, 0xCB):
            return float(np.frombuffer(self.read(4 if b == 0xCA else 8), ">f4" if b == 0xCA else ">f8")[0])
        if 0xD4 <= b <= 0xD8:
            return self.ext(1 << (b - 0xD4), depth)
        if 0xC7 <= b <= 0xC9:
            return self.ext(self.uint(1 << (b - 0xC7)), depth)
        raise ValueError(f"unsupported msgpack byte 0x{b:02x}")

    def map(self, n: int, depth: int) -> dict:
        out = {}
        for _ in range(n):
            key = self.value(depth + 1)
            if not isinstance(key, str) or not key or "/" in key:
                raise ValueError(f"parameter name {_short(key)} is not a non-empty string without '/'")
            out[key] = self.value(depth + 1)
        return out

    def ext(self, length: int, depth: int):
        code = self.read(1)[0]
        end = self.fh.tell() + length
        if end > self.size:
            raise ValueError("an extension runs past the end of the file")
        if code == _EXT_NPSCALAR:  # [dtype name, raw bytes]
            inner = _MsgpackScanner(io.BytesIO(self.read(length)), length)
            item = inner.value(depth + 1)
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], bytes)) or inner.fh.read(1):
                raise ValueError("a scalar extension is not [dtype, data]")
            dtype = _dtype(item[0])
            if len(item[1]) != dtype.itemsize:
                raise ValueError(f"a {dtype} scalar holds {len(item[1])} bytes")
            return np.frombuffer(item[1], dtype=dtype)[0]
        if code != _EXT_NDARRAY:
            raise ValueError(f"unsupported msgpack extension type {code}")
        header = self.read(1)[0]
        if header != 0x93:
            raise ValueError("an array extension is not [shape, dtype, data]")
        shape, dtype = self.value(depth + 1), _dtype(self.value(depth + 1))
        if not isinstance(shape, list) or not _is_shape(shape):
            raise ValueError(f"array shape {_short(shape)} is not a list of non-negative integers")
        b = self.read(1)[0]
        if b not in (0xC4, 0xC5, 0xC6):
            raise ValueError("array data is not binary")
        nbytes = self.uint({0xC4: 1, 0xC5: 2, 0xC6: 4}[b])
        ref = _ArrayRef(shape, dtype, self.fh.tell(), nbytes)
        if ref.offset + nbytes != end:
            raise ValueError("array data runs past its extension")
        if _prod(shape) * dtype.itemsize != nbytes:
            raise ValueError(f"array of shape {shape} and dtype {dtype} holds {nbytes} bytes")
        self.fh.seek(nbytes, os.SEEK_CUR)
        return ref


def _flatten(tree, prefix: str, out: dict, where: str) -> None:
    if isinstance(tree, dict) and "__msgpack_chunked_array__" in tree:
        out[prefix] = _chunked(tree, f"{where}: chunked array {prefix!r}")
    elif isinstance(tree, dict):
        for key, value in tree.items():
            _flatten(value, f"{prefix}/{key}" if prefix else key, out, where)
    elif isinstance(tree, (_ArrayRef, np.generic)):
        out[prefix] = tree
    else:
        raise CheckpointError(f"{where}: unexpected {type(tree).__name__} at {prefix!r}; expected an array")


def _chunked(tree: dict, where: str) -> tuple[tuple[int, ...], list[_ArrayRef]]:
    """flax splits arrays over 2 GiB into 1-D chunks: ``{"__msgpack_chunked_array__": True, "shape": {"0": n,
    ...}, "chunks": {"0": array, ...}}``; returns the shape and the chunks in order, checked."""
    shape, chunks = tree.get("shape"), tree.get("chunks")
    if isinstance(shape, dict) and sorted(shape) == [str(i) for i in range(len(shape))]:
        shape = [shape[str(i)] for i in range(len(shape))]
    if not isinstance(shape, list) or not _is_shape(shape):
        raise CheckpointError(f"{where}: field 'shape' {_short(tree.get('shape'))} is not a shape")
    if not (isinstance(chunks, dict) and chunks and sorted(chunks) == sorted(str(i) for i in range(len(chunks)))):
        raise CheckpointError(f"{where}: field 'chunks' must map '0', '1', ... to arrays")
    ordered = [chunks[str(i)] for i in range(len(chunks))]
    if not all(isinstance(c, _ArrayRef) and len(c.shape) == 1 and c.dtype == ordered[0].dtype for c in ordered):
        raise CheckpointError(f"{where}: field 'chunks' must hold 1-D arrays of one dtype")
    if sum(c.shape[0] for c in ordered) != _prod(shape):
        raise CheckpointError(
            f"{where}: its chunks hold {sum(c.shape[0] for c in ordered)} elements, "
            f"its shape {tuple(shape)} needs {_prod(shape)}"
        )
    return tuple(shape), ordered


def open_flax_msgpack(path: str | os.PathLike) -> LazyTensors:
    """Opens ``flax_model.msgpack`` (``flax.serialization.to_bytes`` of the params tree) lazily,
    with ``a/b/c`` names; a truncated or corrupted file raises :class:`CheckpointError`."""
    path = os.fspath(path)
    _require_file(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            tree = _MsgpackScanner(fh, size).value()
            if fh.tell() != size:
                raise ValueError("extra data after the parameter tree")
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        raise CheckpointError(f"cannot read msgpack file {path!r} (truncated or corrupted?): {exc}") from None
    if not isinstance(tree, dict) or "__msgpack_chunked_array__" in tree:
        raise CheckpointError(f"{path!r} does not hold a parameter tree")
    leaves: dict = {}
    _flatten(tree, "", leaves, f"msgpack file {path!r}")

    def read(ref: _ArrayRef) -> np.ndarray:
        count = ref.nbytes // ref.dtype.itemsize
        array = np.fromfile(path, dtype=ref.dtype, count=count, offset=ref.offset)
        if array.size != count:
            raise CheckpointError(f"msgpack file {path!r} ends inside an array (truncated?)")
        return array.reshape(ref.shape)

    def load(name):
        leaf = leaves[name]
        if isinstance(leaf, _ArrayRef):
            return read(leaf)
        if isinstance(leaf, tuple):
            shape, chunks = leaf
            return np.concatenate([read(c) for c in chunks]).reshape(shape)
        return np.asarray(leaf)

    def describe(leaf):
        if isinstance(leaf, _ArrayRef):
            return leaf.shape, leaf.dtype
        if isinstance(leaf, tuple):
            return leaf[0], leaf[1][0].dtype
        return (), np.asarray(leaf).dtype

    return LazyTensors({name: describe(leaf) for name, leaf in leaves.items()}, load)


def write_flax_msgpack(path: str | os.PathLike, tensors: Mapping[str, np.ndarray]) -> None:
    """Writes ``a/b/c``-named tensors as the nested tree ``flax.serialization.from_bytes`` reads,
    one tensor at a time, with no copy of its bytes."""
    import msgpack

    tree: dict = {}
    for name in tensors:
        node = tree
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = name  # a placeholder: the tensor is read when written
    packer = msgpack.Packer(use_bin_type=True)

    def write_array(fh, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        head = b"\x93" + packer.pack(list(array.shape)) + packer.pack(array.dtype.name)
        n = array.nbytes
        head += (
            b"\xc4" + n.to_bytes(1, "big")
            if n < 1 << 8
            else b"\xc5" + n.to_bytes(2, "big")
            if n < 1 << 16
            else b"\xc6" + n.to_bytes(4, "big")
        )
        length = len(head) + n
        fixext = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
        if length in fixext:
            fh.write(bytes([fixext[length]]))
        elif length < 1 << 8:
            fh.write(b"\xc7" + length.to_bytes(1, "big"))
        elif length < 1 << 16:
            fh.write(b"\xc8" + length.to_bytes(2, "big"))
        else:
            fh.write(b"\xc9" + length.to_bytes(4, "big"))
        fh.write(bytes([_EXT_NDARRAY]) + head)
        _write_raw(fh, array)

    def write(fh, node):
        fh.write(packer.pack_map_header(len(node)))
        for key, value in node.items():
            fh.write(packer.pack(key))
            if isinstance(value, dict):
                write(fh, value)
            else:
                write_array(fh, tensors[value])

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            write(fh, tree)
