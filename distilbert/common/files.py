"""Checkpoint files, framework-free: numpy arrays keyed by each format's own tensor names.

Readers return ``{native_name: np.ndarray}`` with dtypes as stored (bfloat16 through ``ml_dtypes``);
writers take the same and write to a temporary name that is renamed into place, so a failure never
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
FLAX_MSGPACK = "flax_model.msgpack"
CONFIG = "config.json"


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
    """Opens one ``.safetensors`` file lazily; a truncated or corrupted file raises :class:`CheckpointError`."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    _require_file(path)

    def fail(exc):
        return CheckpointError(f"cannot read safetensors file {path!r} (truncated or corrupted?): {exc}")

    try:
        handle = safe_open(path, framework="numpy")
        meta = {}
        for name in handle.keys():
            part = handle.get_slice(name)
            meta[name] = (tuple(part.get_shape()), _ST_DTYPES[part.get_dtype()])
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise fail(exc) from None

    def load(name):
        try:
            return handle.get_tensor(name)
        except (SafetensorError, OSError, ValueError) as exc:
            raise fail(exc) from None

    return LazyTensors(meta, load)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads one ``.safetensors`` file into memory."""
    return dict(open_safetensors(path))


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
        size = int(np.prod(lazy.shape(name), dtype=np.int64)) * dtype.itemsize
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
                fh.write(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes())


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


def open_sharded(index_path: str | os.PathLike, open_one: Callable[[str], LazyTensors]) -> LazyTensors:
    """Opens every shard of an index lazily and checks the index's names are all there."""
    weight_map = read_index(index_path)
    directory = os.path.dirname(os.fspath(index_path))
    shards = {shard: open_one(os.path.join(directory, shard)) for shard in dict.fromkeys(weight_map.values())}
    owner = {name: shard for shard in shards.values() for name in shard}
    absent = sorted(set(weight_map) - set(owner))
    if absent:
        raise CheckpointError(f"shard index {os.fspath(index_path)!r} lists tensors no shard holds: {absent}")
    meta = {name: shard.meta[name] for name, shard in owner.items()}

    def close():
        for shard in shards.values():
            shard.close()

    return LazyTensors(meta, lambda name: owner[name][name], close)


def write_safetensors_sharded(directory: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                              max_shard_bytes: int) -> None:
    """Writes ``model-0000i-of-0000n.safetensors`` shards and their index, as ``save_pretrained`` does."""
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, array in tensors.items():
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = array
        size += array.nbytes
    if len(shards) == 1:
        write_safetensors(os.path.join(directory, SAFETENSORS), tensors)
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(os.path.join(directory, fname), shard)
        weight_map.update(dict.fromkeys(shard, fname))
    total = sum(a.nbytes for a in tensors.values())
    atomic_write_json(os.path.join(directory, SAFETENSORS_INDEX),
                      {"metadata": {"total_size": total}, "weight_map": weight_map})


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
    """Opens an HF ``tf_model.h5`` (Keras 2 ``save_weights`` layout) lazily.

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
            group = fh[layer]
            for weight_name in _str_list(group.attrs.get("weight_names", [])):
                datasets.setdefault("/".join(weight_name.split("/")[1:]), group[weight_name])
    except (OSError, KeyError) as exc:
        raise CheckpointError(f"cannot read TF h5 file {path!r} (truncated or corrupted?): {exc}") from None
    if not datasets:
        fh.close()
        raise CheckpointError(f"{path!r} holds no Keras weights (no 'layer_names' attribute)")
    meta = {name: (ds.shape, ml_dtypes.bfloat16 if ds.attrs.get("dtype") in ("bfloat16", b"bfloat16") else ds.dtype)
            for name, ds in datasets.items()}

    def load(name):
        try:
            return _h5_array(datasets[name])
        except OSError as exc:
            raise CheckpointError(f"cannot read {name!r} from {path!r} (truncated or corrupted?): {exc}") from None

    return LazyTensors(meta, load, fh.close)


def read_tf_h5(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads an HF ``tf_model.h5`` into memory (names as :func:`open_tf_h5` gives them)."""
    with open_tf_h5(path) as lazy:
        return dict(lazy)


def _h5_array(dataset) -> np.ndarray:
    array = np.asarray(dataset)
    # HDF5 has no bfloat16: it is stored opaque with a dtype attribute (Keras 3's convention too).
    if dataset.attrs.get("dtype") in ("bfloat16", b"bfloat16"):
        array = array.view(ml_dtypes.bfloat16)
    return array


def _str_list(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def write_tf_h5(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], model_name: str,
                shared: Mapping[str, list[str]] | None = None) -> None:
    """Writes tensors named as :func:`read_tf_h5` returns them, in the layout HF's TF classes load.

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
            fh.attrs["layer_names"] = np.array([n.encode() for n in layers], dtype="S")
            for layer, names in layers.items():
                group = fh.create_group(layer)
                full = [f"{model_name}/{n}" for n in names]
                group.attrs["weight_names"] = np.array([n.encode() for n in full], dtype="S")
                for name, full_name in zip(names, full):
                    array = np.asarray(tensors[name])
                    dataset = group.create_dataset(full_name, data=array)
                    if array.dtype == ml_dtypes.bfloat16:
                        dataset.attrs["dtype"] = "bfloat16"


# ------------------------------------------------------------------------------ HF Flax msgpack
_EXT_NDARRAY, _EXT_COMPLEX, _EXT_NPSCALAR = 1, 2, 3


def _dtype(name: str) -> np.dtype:
    return np.dtype(getattr(ml_dtypes, name)) if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2") else np.dtype(name)


def _ext_hook(code: int, data: bytes):
    import msgpack

    if code == _EXT_NDARRAY:
        shape, dtype, buffer = msgpack.unpackb(data, raw=False)
        return np.frombuffer(buffer, dtype=_dtype(dtype)).reshape(shape)
    if code == _EXT_NPSCALAR:
        dtype, buffer = msgpack.unpackb(data, raw=False)
        return np.frombuffer(buffer, dtype=_dtype(dtype))[0]
    raise CheckpointError(f"unsupported msgpack extension type {code}")


def _flatten(tree, prefix: str, out: dict) -> None:
    if isinstance(tree, dict) and tree.get("__msgpack_chunked_array__"):
        # flax splits arrays over 2 GiB into chunks; join them back.
        chunks = [np.ravel(tree["chunks"][k]) for k in sorted(tree["chunks"], key=int)]
        out[prefix] = np.concatenate(chunks).reshape(tree["shape"])
    elif isinstance(tree, dict):
        for key, value in tree.items():
            _flatten(value, f"{prefix}/{key}" if prefix else str(key), out)
    elif isinstance(tree, np.ndarray) or np.isscalar(tree):
        out[prefix] = np.asarray(tree)
    else:
        raise CheckpointError(f"unexpected {type(tree).__name__} at {prefix!r} in msgpack checkpoint")


def open_flax_msgpack(path: str | os.PathLike) -> LazyTensors:
    """``flax_model.msgpack`` as a mapping (the arrays are views into the file's bytes: no copies)."""
    return LazyTensors.from_dict(read_flax_msgpack(path))


def read_flax_msgpack(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads ``flax_model.msgpack`` (``flax.serialization.to_bytes`` of the params tree) to ``a/b/c`` names."""
    import msgpack

    path = os.fspath(path)
    _require_file(path)
    try:
        with open(path, "rb") as fh:
            tree = msgpack.unpackb(fh.read(), ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except (msgpack.exceptions.ExtraData, msgpack.exceptions.UnpackException, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot read msgpack file {path!r} (truncated or corrupted?): {exc}") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path!r} does not hold a parameter tree")
    out: dict[str, np.ndarray] = {}
    _flatten(tree, "", out)
    return out


def write_flax_msgpack(path: str | os.PathLike, tensors: Mapping[str, np.ndarray]) -> None:
    """Writes ``a/b/c``-named tensors as the nested tree ``flax.serialization.from_bytes`` reads,
    packing one tensor at a time."""
    import msgpack

    tree: dict = {}
    for name in tensors:
        node = tree
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = name  # a placeholder: the tensor is read when packed
    packer = msgpack.Packer(use_bin_type=True)

    def write(fh, node):
        fh.write(packer.pack_map_header(len(node)))
        for key, value in node.items():
            fh.write(packer.pack(key))
            if isinstance(value, dict):
                write(fh, value)
                continue
            array = np.ascontiguousarray(tensors[value])
            payload = msgpack.packb((array.shape, array.dtype.name, array.tobytes()), use_bin_type=True)
            fh.write(packer.pack(msgpack.ExtType(_EXT_NDARRAY, payload)))

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            write(fh, tree)
