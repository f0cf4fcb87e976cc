"""Checkpoint files, framework-free: numpy arrays keyed by each format's own tensor names.

Openers return a :class:`LazyTensors` mapping ``{native_name: np.ndarray}`` whose tensors are read one
at a time, with dtypes as stored (bfloat16 through ``ml_dtypes``); writers take any such mapping, pull
one tensor at a time and write to a temporary name that is renamed into place, so a failure never
leaves a half-written file. :mod:`distilbert.common.names` maps native names to canonical ones.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

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


# ------------------------------------------------------------------------------ atomic writing
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
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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

    def __init__(self, meta: Mapping[str, tuple[tuple[int, ...], np.dtype]], load: Callable[[str], np.ndarray],
                 close: Callable[[], None] | None = None):
        self.meta, self._load, self._close = dict(meta), load, close

    @classmethod
    def from_dict(cls, arrays: Mapping[str, np.ndarray]) -> "LazyTensors":
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

    def subset(self, names) -> "LazyTensors":
        return LazyTensors({n: self.meta[n] for n in names}, self._load)

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self) -> "LazyTensors":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------- safetensors
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_ST_CODES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


def open_safetensors(path: str | os.PathLike) -> LazyTensors:
    """Opens one ``.safetensors`` file lazily; a truncated or corrupted file raises :class:`CheckpointError`.

    The ``safetensors`` package validates the header; tensors are then read with plain file reads at
    their offsets, one at a time, so that converting never maps the whole file into memory.
    """
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    _require_file(path)
    try:
        with safe_open(path, framework="numpy"):
            pass
        with open(path, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(header_len))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read safetensors file {path!r} (truncated or corrupted?): {exc}") from None
    header.pop("__metadata__", None)
    meta, offsets = {}, {}
    for name, info in header.items():
        meta[name] = (tuple(info["shape"]), np.dtype(_ST_DTYPES[info["dtype"]]))
        offsets[name] = 8 + header_len + info["data_offsets"][0]

    def load(name):
        shape, dtype = meta[name]
        count = int(np.prod(shape, dtype=np.int64))
        array = np.fromfile(path, dtype=dtype.newbyteorder("<"), count=count, offset=offsets[name])
        if array.size != count:
            raise CheckpointError(f"safetensors file {path!r} ends inside {name!r} (truncated?)")
        return array.astype(dtype, copy=False).reshape(shape)

    return LazyTensors(meta, load)


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> None:
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
        header[name] = {"dtype": _ST_CODES[dtype], "shape": list(lazy.shape(name)),
                        "data_offsets": [offset, offset + size]}
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
    """Reads a shard index; refuses shard names that point outside the index's directory."""
    index_path = os.fspath(index_path)
    _require_file(index_path)
    try:
        with open(index_path, encoding="utf-8") as fh:
            weight_map = json.load(fh)["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"shard index {index_path!r} is not a valid index: {exc}") from None
    directory = os.path.realpath(os.path.dirname(index_path))
    for name, shard in weight_map.items():
        target = os.path.realpath(os.path.join(directory, str(shard)))
        if os.path.isabs(str(shard)) or os.path.dirname(target) != directory:
            raise CheckpointError(
                f"shard index {index_path!r} maps {name!r} to {shard!r}, outside its directory; refused"
            )
    return weight_map


def open_sharded(index_path: str | os.PathLike, open_one: Callable[[str], LazyTensors],
                 index_name: Callable[[str], str] = str) -> LazyTensors:
    """Opens every shard of an index lazily and checks the index's names are all there.

    ``index_name`` turns a name of the index into the shards' own name for it (HF's TF indexes keep the
    Keras model's name in front, which the shards drop).
    """
    weight_map = read_index(index_path)
    directory = os.path.dirname(os.fspath(index_path))
    shards = {shard: open_one(os.path.join(directory, shard)) for shard in dict.fromkeys(weight_map.values())}
    owner = {name: shard for shard in shards.values() for name in shard}
    absent = sorted({index_name(name) for name in weight_map} - set(owner))
    if absent:
        raise CheckpointError(f"shard index {os.fspath(index_path)!r} lists tensors no shard holds: {absent}")
    meta = {name: shard.meta[name] for name, shard in owner.items()}

    def close():
        for shard in shards.values():
            shard.close()

    return LazyTensors(meta, lambda name: owner[name][name], close)


def write_sharded(directory: str | os.PathLike, tensors: Mapping[str, np.ndarray], max_shard_bytes: int,
                  filename: str, write_one: Callable[[str, LazyTensors], None],
                  index_name: Callable[[str], str] = str) -> str:
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


def write_safetensors_sharded(directory: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                              max_shard_bytes: int) -> str:
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
        tensor = tensor.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            out[name] = tensor.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
        else:
            out[name] = tensor.numpy()
    return out


# ------------------------------------------------------------------------------ HF TF (Keras 2 h5)
def open_tf_h5(path: str | os.PathLike) -> LazyTensors:
    """Opens an HF ``tf_model.h5`` (Keras 2 ``save_weights`` layout), or one shard of a sharded one, lazily.

    Names lose their first component (the Keras model's own name, which varies), e.g.
    ``distilbert/embeddings/word_embeddings/weight:0``.
    """
    import h5py

    path = os.fspath(path)
    _require_file(path)
    datasets = {}
    try:
        fh = h5py.File(path, "r")
        for layer in _str_list(fh.attrs.get("layer_names", [])):
            entry = fh[layer]
            if isinstance(entry, h5py.Dataset):  # a shard: "layer_names" lists the weights themselves
                datasets[layer] = entry
                continue
            for weight_name in _str_list(entry.attrs.get("weight_names", [])):
                datasets.setdefault("/".join(weight_name.split("/")[1:]), entry[weight_name])
    except (OSError, KeyError) as exc:
        raise CheckpointError(f"cannot read TF h5 file {path!r} (truncated or corrupted?): {exc}") from None
    if not datasets:
        fh.close()
        raise CheckpointError(f"{path!r} holds no Keras weights (no 'layer_names' attribute)")
    meta = {name: (ds.shape, ml_dtypes.bfloat16 if _h5_is_bf16(ds) else ds.dtype) for name, ds in datasets.items()}

    def load(name):
        try:
            return _h5_array(datasets[name])
        except OSError as exc:
            raise CheckpointError(f"cannot read {name!r} from {path!r} (truncated or corrupted?): {exc}") from None

    return LazyTensors(meta, load, fh.close)


def open_tf_h5_sharded(index_path: str | os.PathLike) -> LazyTensors:
    """Opens HF's sharded ``tf_model.h5`` (``tf_model.h5.index.json`` + ``tf_model-0000i-of-0000n.h5``)."""
    return open_sharded(index_path, open_tf_h5, index_name=lambda name: name.split("/", 1)[-1])


def write_tf_h5_sharded(directory: str | os.PathLike, tensors: Mapping[str, np.ndarray], model_name: str,
                       max_shard_bytes: int) -> str:
    """Writes HF's sharded ``tf_model.h5`` (or one ``tf_model.h5`` when the tensors fit in one shard)."""
    return write_sharded(directory, tensors, max_shard_bytes, TF_H5, _write_tf_h5_shard,
                         index_name=lambda name: f"{model_name}/{name}")


def _write_tf_h5_shard(path: str, tensors: LazyTensors) -> None:
    """One shard as HF's TF ``save_pretrained`` writes it: ``layer_names`` lists the datasets themselves."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.attrs["layer_names"] = _h5_names(tensors)
            for name in tensors:
                _h5_write(fh, name, tensors[name])


# HDF5 has no bfloat16: it is stored opaque with a dtype attribute (Keras 3's convention too).
def _h5_is_bf16(dataset) -> bool:
    return dataset.attrs.get("dtype") in ("bfloat16", b"bfloat16")


def _h5_array(dataset) -> np.ndarray:
    array = np.asarray(dataset)
    return array.view(ml_dtypes.bfloat16) if _h5_is_bf16(dataset) else array


def _h5_write(parent, name: str, array) -> None:
    array = np.asarray(array)
    dataset = parent.create_dataset(name, data=array)
    if array.dtype == ml_dtypes.bfloat16:
        dataset.attrs["dtype"] = "bfloat16"


def _h5_names(names) -> np.ndarray:
    return np.array([n.encode() for n in names], dtype="S")


def _str_list(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def write_tf_h5(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], model_name: str,
                shared: Mapping[str, list[str]] | None = None) -> None:
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


def _dtype(name: str) -> np.dtype:
    return np.dtype(getattr(ml_dtypes, name)) if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2") else np.dtype(name)


class _ArrayRef:
    """Where an array's bytes sit in a msgpack file: read on demand."""

    def __init__(self, shape, dtype, offset, nbytes):
        self.shape, self.dtype, self.offset, self.nbytes = tuple(shape), dtype, offset, nbytes


class _MsgpackScanner:
    """Walks a msgpack file's structure without reading array data: ``flax.serialization`` stores
    each array as extension type 1 holding ``[shape, dtype name, raw bytes]``; we note offsets."""

    def __init__(self, fh, size: int):
        self.fh, self.size = fh, size

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise ValueError("unexpected end of data")
        return data

    def uint(self, n: int) -> int:
        return int.from_bytes(self.read(n), "big")

    def value(self):
        b = self.read(1)[0]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return self.map(b & 0x0F)
        if 0x90 <= b <= 0x9F:
            return [self.value() for _ in range(b & 0x0F)]
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
            return self.map(self.uint(2 if b == 0xDE else 4))
        if b in (0xDC, 0xDD):
            return [self.value() for _ in range(self.uint(2 if b == 0xDC else 4))]
        if 0xCC <= b <= 0xCF:
            return self.uint(1 << (b - 0xCC))
        if 0xD0 <= b <= 0xD3:
            n = 1 << (b - 0xD0)
            return int.from_bytes(self.read(n), "big", signed=True)
        if b in (0xCA, 0xCB):
            return float(np.frombuffer(self.read(4 if b == 0xCA else 8), ">f4" if b == 0xCA else ">f8")[0])
        if 0xD4 <= b <= 0xD8:
            return self.ext(1 << (b - 0xD4))
        if 0xC7 <= b <= 0xC9:
            return self.ext(self.uint(1 << (b - 0xC7)))
        raise ValueError(f"unsupported msgpack byte 0x{b:02x}")

    def map(self, n: int) -> dict:
        return {self.value(): self.value() for _ in range(n)}

    def ext(self, length: int):
        code = self.read(1)[0]
        if code != _EXT_NDARRAY:
            import msgpack

            if code == _EXT_NPSCALAR:
                dtype, buffer = msgpack.unpackb(self.read(length), raw=False)
                return np.frombuffer(buffer, dtype=_dtype(dtype))[0]
            raise ValueError(f"unsupported msgpack extension type {code}")
        end = self.fh.tell() + length
        header = self.read(1)[0]
        if header != 0x93:
            raise ValueError("array extension is not [shape, dtype, data]")
        shape, dtype = self.value(), self.value()
        b = self.read(1)[0]
        if b not in (0xC4, 0xC5, 0xC6):
            raise ValueError("array data is not binary")
        nbytes = self.uint({0xC4: 1, 0xC5: 2, 0xC6: 4}[b])
        ref = _ArrayRef(shape, _dtype(dtype), self.fh.tell(), nbytes)
        if ref.offset + nbytes != end or end > self.size:
            raise ValueError("array data runs past its extension or the file")
        self.fh.seek(nbytes, os.SEEK_CUR)
        return ref


def _flatten(tree, prefix: str, out: dict) -> None:
    if isinstance(tree, dict) and tree.get("__msgpack_chunked_array__"):
        # flax splits arrays over 2 GiB into chunks: keep the pieces, join them when read.
        chunks = [tree["chunks"][k] for k in sorted(tree["chunks"], key=int)]
        out[prefix] = (tuple(tree["shape"]), chunks)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            _flatten(value, f"{prefix}/{key}" if prefix else str(key), out)
    elif isinstance(tree, (_ArrayRef, np.generic)):
        out[prefix] = tree
    else:
        raise CheckpointError(f"unexpected {type(tree).__name__} at {prefix!r} in msgpack checkpoint")


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
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise CheckpointError(f"cannot read msgpack file {path!r} (truncated or corrupted?): {exc}") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path!r} does not hold a parameter tree")
    leaves: dict = {}
    _flatten(tree, "", leaves)

    def read(ref: _ArrayRef) -> np.ndarray:
        count = ref.nbytes // ref.dtype.itemsize
        return np.fromfile(path, dtype=ref.dtype, count=count, offset=ref.offset).reshape(ref.shape)

    def load(name):
        leaf = leaves[name]
        if isinstance(leaf, _ArrayRef):
            return read(leaf)
        if isinstance(leaf, tuple):
            shape, chunks = leaf
            return np.concatenate([read(c).ravel() for c in chunks]).reshape(shape)
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
        head += (b"\xc4" + n.to_bytes(1, "big") if n < 1 << 8 else
                 b"\xc5" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xc6" + n.to_bytes(4, "big"))
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
