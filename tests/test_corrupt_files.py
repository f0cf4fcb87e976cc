"""Corrupted checkpoints, property-based: every format and every JSON file the readers touch.

Each example copies a tiny checkpoint written by our own writers, corrupts one file (truncation, byte
flips, a wrong-typed or out-of-range field) and reads it three ways: the API (``DistilBertConfig`` +
``load_state``), ``distilbert info`` and ``distilbert convert`` (in-process). A corruption that leaves
the file invalid must be refused with a ``ValueError`` subclass naming the file (and the field, for
JSON fields), and the commands must exit 2 with one line on stderr, leaving nothing at the destination.
Byte flips may also land in tensor data, which no format checksums: there, success is allowed too,
but never anything other than success or that clean refusal.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import msgpack
import numpy as np
import pytest
from helpers import random_state, tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distilbert.cli import main
from distilbert.common import files
from distilbert.common.checkpoint import load_state, save_state
from distilbert.common.config import DistilBertConfig

TASK = "masked_lm"
SHARD_BYTES = 20_000  # the tiny model's tensors split into several shards at this size
# Each format, how save_state writes it, and which target `convert` is asked for (one without a framework).
FORMATS = {
    "safetensors": ({"weight_format": "safetensors"}, "flax"),
    "safetensors-sharded": ({"weight_format": "safetensors", "max_shard_size": SHARD_BYTES}, "tf"),
    "tf": ({"framework": "tf"}, "pt"),
    "tf-sharded": ({"framework": "tf", "max_shard_size": SHARD_BYTES}, "flax"),
    "flax": ({"framework": "flax"}, "tf"),
    "flax-sharded": ({"framework": "flax", "max_shard_size": SHARD_BYTES}, "pt"),
}
SHARDED = [f for f in FORMATS if f.endswith("-sharded")]
INDEX = {
    "safetensors-sharded": files.SAFETENSORS_INDEX,
    "tf-sharded": files.TF_H5_INDEX,
    "flax-sharded": files.FLAX_MSGPACK_INDEX,
}
EXAMPLES = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
# Targeted corruptions run per kind (a pytest parameter, so that every kind runs), a few examples each.
PER_KIND = settings(EXAMPLES, max_examples=5)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One tiny checkpoint directory per format, written by our own writers (no ML framework)."""
    root = tmp_path_factory.mktemp("checkpoints")
    config = tiny_config()
    state = random_state(config, TASK)
    out = {}
    for fmt, (kwargs, _) in FORMATS.items():
        save_state(root / fmt, state, config, TASK, **kwargs)
        out[fmt] = str(root / fmt)
        assert load_state(out[fmt], config, TASK)[1].format == fmt
    return out


def weight_files(directory: str) -> list[str]:
    return sorted(f for f in os.listdir(directory) if not f.endswith(".json"))


# ------------------------------------------------------------------------------ running one case
@contextlib.contextmanager
def corrupted_copy(source: str):
    """A fresh copy of a checkpoint directory; ``(workdir, checkpoint dir, destination for convert)``."""
    with tempfile.TemporaryDirectory() as work:
        directory = os.path.join(work, "ckpt")
        shutil.copytree(source, directory)
        yield work, directory, os.path.join(work, "converted")


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, err.getvalue()


def read_api(directory: str) -> Exception | None:
    """Reads the checkpoint as a backend's ``from_pretrained`` does; returns the error, if any.

    Anything but a ``ValueError`` (a TypeError, AttributeError, ...) propagates and fails the test.
    """
    try:
        config = DistilBertConfig.from_pretrained(directory)
        load_state(directory, config, TASK)
    except ValueError as exc:
        return exc
    return None


def outcomes(work: str, directory: str, dst: str, target: str) -> dict:
    api = read_api(directory)
    info = run_cli(["info", directory])
    convert = run_cli(["convert", directory, dst, "--to", target, "-q"])
    return {"api": api, "info": info, "convert": convert, "leftovers": sorted(set(os.listdir(work)) - {"ckpt"})}


def assert_clean_failure(result: dict, names: list[str], field: str | None = None) -> None:
    """Every path refused it: a ValueError naming one of ``names`` (and ``field``); exit 2, one line, no output."""
    api = result["api"]
    assert api is not None, "the API accepted a corrupted checkpoint"
    message = str(api)
    assert any(name in message for name in names), f"error does not name {names}: {message}"
    if field is not None:
        assert field in message, f"error does not name the field {field!r}: {message}"
    for command in ("info", "convert"):
        code, err = result[command]
        assert code == 2, f"{command} exited {code}: {err}"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"distilbert {command}: error: "), err
        assert any(name in lines[0] for name in names), lines[0]
    assert result["leftovers"] == [], f"convert left {result['leftovers']}"


def assert_clean(result: dict, names: list[str]) -> None:
    """Each path either succeeded or refused cleanly (a corruption of tensor data can go unnoticed)."""
    api = result["api"]
    if api is not None:
        assert any(name in str(api) for name in names), f"error does not name {names}: {api}"
    for command in ("info", "convert"):
        code, err = result[command]
        assert code in (0, 2), f"{command} exited {code}: {err}"
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"distilbert {command}: error: "), err
    code, _ = result["convert"]
    assert result["leftovers"] == (["converted"] if code == 0 else []), result["leftovers"]


def names_for(fmt: str, fname: str) -> list[str]:
    """What an error about ``fname`` may name: the file itself, or for a shard also its index."""
    return [fname] + ([INDEX[fmt]] if fmt in INDEX and fname != "config.json" else [])


# ------------------------------------------------------------------------------ truncation, flips
@pytest.mark.parametrize("fmt", FORMATS)
@EXAMPLES
@given(data=st.data())
def test_truncated_files_are_refused(checkpoints, fmt, data):
    source = checkpoints[fmt]
    fname = data.draw(st.sampled_from(sorted(os.listdir(source))), label="file")
    with corrupted_copy(source) as (work, directory, dst):
        path = os.path.join(directory, fname)
        content = Path(path).read_bytes()
        cut = data.draw(st.integers(0, len(content) - 1), label="cut")
        with open(path, "wb") as fh:
            fh.write(content[:cut])
        result = outcomes(work, directory, dst, FORMATS[fmt][1])
        if fname.endswith(".json") and content[:cut].strip() == content.strip():
            assert_clean(result, names_for(fmt, fname))  # only the final newline went
        else:
            assert_clean_failure(result, names_for(fmt, fname))


@pytest.mark.parametrize("fmt", FORMATS)
@EXAMPLES
@given(data=st.data())
def test_flipped_bytes_are_refused_or_harmless(checkpoints, fmt, data):
    source = checkpoints[fmt]
    fname = data.draw(st.sampled_from(sorted(os.listdir(source))), label="file")
    with corrupted_copy(source) as (work, directory, dst):
        path = os.path.join(directory, fname)
        content = bytearray(Path(path).read_bytes())
        # Structure sits at the start of the binary formats: draw positions there more often.
        head = min(len(content), 4096)
        positions = data.draw(
            st.lists(st.one_of(st.integers(0, head - 1), st.integers(0, len(content) - 1)), min_size=1, max_size=4),
            label="positions",
        )
        for pos in positions:
            content[pos] = data.draw(st.integers(0, 255).filter(lambda b, old=content[pos]: b != old), label="byte")
        with open(path, "wb") as fh:
            fh.write(content)
        names = list(os.listdir(directory))  # a flip in a JSON value can move the blame to any file
        assert_clean(outcomes(work, directory, dst, FORMATS[fmt][1]), names)


# ------------------------------------------------------------------------------ JSON fields
def wrong_type(expected: str):
    """JSON values of any type but ``expected`` ('int', 'number', 'bool', 'str', 'list', 'object')."""
    values = {
        "str": st.just("32"),
        "list": st.just([32]),
        "object": st.just({"value": 32}),
        "null": st.none(),
        "bool": st.booleans(),
        "float": st.just(32.5),
        "int": st.just(7),
    }
    allowed = {
        "int": ["int"],
        "number": ["int", "float"],
        "bool": ["bool"],
        "str": ["str"],
        "list": ["list"],
        "object": ["object"],
    }[expected]
    return st.one_of(*(v for k, v in values.items() if k not in allowed))


# config.json: field -> (expected JSON type, out-of-range values)
CONFIG_FIELDS = {
    "vocab_size": ("int", [0, -1]),
    "max_position_embeddings": ("int", [0, -5]),
    "n_layers": ("int", [0, -2, 2**40]),
    "n_heads": ("int", [0, -4, 5]),  # 5 does not divide dim 32
    "dim": ("int", [0, -32, 30]),  # 30 is not divisible by 4 heads
    "hidden_dim": ("int", [0, -1]),
    "dropout": ("number", [1.0, -0.5, float("inf")]),
    "attention_dropout": ("number", [1.5]),
    "qa_dropout": ("number", [-0.1]),
    "seq_classif_dropout": ("number", [2]),
    "initializer_range": ("number", [0, -0.02, float("inf")]),
    "activation": ("str", ["swish"]),
    "sinusoidal_pos_embds": ("bool", []),
    "tie_word_embeddings": ("bool", []),
    "pad_token_id": ("int", [-1, 99]),
    "num_labels": ("int", [0, -2]),
    "id2label": ("object", [{"x": "a", "y": "b"}, {"0": 5, "1": 6}, {"0": "a", "2": "b"}]),
    "label2id": ("object", [{"a": "0", "b": "1"}, {"a": None, "b": 1}]),
    "problem_type": ("str", ["ranking"]),
    "architectures": ("list", [[5], [None], [["DistilBertForMaskedLM"]]]),
    "model_type": ("str", ["bert"]),
    "output_hidden_states": ("bool", []),
    "output_attentions": ("bool", []),
    "return_dict": ("bool", []),
    "torch_dtype": ("str", []),
}
NULLABLE = {"pad_token_id", "num_labels", "id2label", "label2id", "problem_type", "architectures", "torch_dtype"}
TOP_LEVEL = st.one_of(st.just([]), st.just("config"), st.just(3), st.none(), st.just([{"dim": 32}]))


def bad_config_value(field: str):
    """Values of a config field that are of the wrong JSON type or out of range."""
    expected, out_of_range = CONFIG_FIELDS[field]
    bad = wrong_type(expected)
    if field in NULLABLE:
        bad = bad.filter(lambda v: v is not None)
    if out_of_range:
        bad = st.one_of(bad, st.sampled_from(out_of_range))
    return bad


@pytest.mark.parametrize("field", sorted(CONFIG_FIELDS))
@PER_KIND
@given(data=st.data())
def test_wrong_typed_or_out_of_range_config_field_is_named(checkpoints, field, data):
    value = data.draw(bad_config_value(field), label="value")
    with corrupted_copy(checkpoints["safetensors"]) as (work, directory, dst):
        path = os.path.join(directory, "config.json")
        config = json.loads(Path(path).read_text())
        config[field] = value
        if field in ("id2label", "label2id"):
            config.pop("label2id" if field == "id2label" else "id2label")
            config.pop("num_labels")
        with open(path, "w") as fh:
            json.dump(config, fh)
        assert_clean_failure(outcomes(work, directory, dst, "flax"), ["config.json"], field)


@EXAMPLES
@given(value=TOP_LEVEL)
def test_config_that_is_not_an_object_is_named(checkpoints, value):
    with corrupted_copy(checkpoints["safetensors"]) as (work, directory, dst):
        with open(os.path.join(directory, "config.json"), "w") as fh:
            json.dump(value, fh)
        assert_clean_failure(outcomes(work, directory, dst, "flax"), ["config.json"])


INDEX_KINDS = ["top", "weight_map", "entry", "entry_range", "metadata", "total_size"]


@st.composite
def bad_index(draw, kind: str):
    """``(mutate(index dict), field)``: a shard index with one field wrong-typed or out of range."""
    if kind == "top":
        value = draw(TOP_LEVEL)
        return (lambda index: value), None
    if kind == "weight_map":
        value = draw(st.one_of(wrong_type("object"), st.just({})))
        return (lambda index: dict(index, weight_map=value)), "weight_map"
    if kind in ("entry", "entry_range"):
        value = draw(wrong_type("str") if kind == "entry" else st.sampled_from(["", "no-such-shard.bin", "."]))
        position = draw(st.integers(0, 1000))

        def mutate(index):
            name = sorted(index["weight_map"])[position % len(index["weight_map"])]
            return dict(index, weight_map=dict(index["weight_map"], **{name: value}))

        return mutate, "weight_map"
    if kind == "metadata":
        value = draw(wrong_type("object"))
        return (lambda index: dict(index, metadata=value)), "metadata"
    value = draw(st.one_of(wrong_type("int"), st.just(-1)))
    return (lambda index: dict(index, metadata={"total_size": value})), "total_size"


@pytest.mark.parametrize("kind", INDEX_KINDS)
@pytest.mark.parametrize("fmt", SHARDED)
@PER_KIND
@given(data=st.data())
def test_wrong_typed_or_out_of_range_index_field_is_named(checkpoints, fmt, kind, data):
    mutate, field = data.draw(bad_index(kind), label="corruption")
    with corrupted_copy(checkpoints[fmt]) as (work, directory, dst):
        path = os.path.join(directory, INDEX[fmt])
        index = mutate(json.loads(Path(path).read_text()))
        with open(path, "w") as fh:
            json.dump(index, fh)
        assert_clean_failure(outcomes(work, directory, dst, FORMATS[fmt][1]), [INDEX[fmt]], field)


KNOWN = {  # the failures issue 11 reported: a traceback and exit 1 from info and convert
    "weight_map is a string": (
        "safetensors-sharded",
        files.SAFETENSORS_INDEX,
        lambda index: dict(index, weight_map="model-00001-of-00005.safetensors"),
        "weight_map",
    ),
    "total_size is an object": (
        "tf-sharded",
        files.TF_H5_INDEX,
        lambda index: dict(index, metadata={"total_size": {"bytes": 1}}),
        "total_size",
    ),
    "dim is an object": ("flax", "config.json", lambda config: dict(config, dim={"value": 32}), "dim"),
    "num_labels is a list": ("tf", "config.json", lambda config: dict(config, num_labels=[2]), "num_labels"),
}


@pytest.mark.parametrize("case", KNOWN)
def test_reported_wrong_typed_fields_are_named(checkpoints, case):
    fmt, fname, mutate, field = KNOWN[case]
    with corrupted_copy(checkpoints[fmt]) as (work, directory, dst):
        path = os.path.join(directory, fname)
        data = mutate(json.loads(Path(path).read_text()))
        with open(path, "w") as fh:
            json.dump(data, fh)
        assert_clean_failure(outcomes(work, directory, dst, FORMATS[fmt][1]), [fname], field)


# ------------------------------------------------------------------------------ safetensors headers
def read_safetensors_raw(path: str) -> tuple[dict, bytes]:
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_safetensors_raw(path: str, header, data: bytes) -> None:
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as fh:
        fh.write(len(encoded).to_bytes(8, "little") + encoded + data)


SAFETENSORS_KINDS = [
    "top",
    "entry",
    "dtype",
    "shape",
    "shape_item",
    "shape_range",
    "offsets",
    "offsets_item",
    "offsets_range",
    "metadata",
]


@st.composite
def bad_safetensors_header(draw, kind: str):
    """A function mutating a safetensors header (a dict) in place, or returning a replacement."""
    pick = draw(st.integers(0, 1000))
    value = draw(
        {
            "top": st.one_of(st.just([]), st.just("header"), st.just(1)),
            "entry": wrong_type("object"),
            "dtype": st.one_of(wrong_type("str"), st.sampled_from(["F31", "f32", "I32", "BOOL", "U8", "F8_E4M3", ""])),
            "shape": wrong_type("list"),
            "shape_item": st.one_of(wrong_type("int"), st.just(-1)),
            "shape_range": st.sampled_from([[], [3, 3, 3], [10**12, 10**12], [-1]]),
            "offsets": st.one_of(wrong_type("list"), st.just([0]), st.just([0, 4, 8])),
            "offsets_item": wrong_type("int"),
            "offsets_range": st.sampled_from([(-4, 0), (0, 1 << 20), (1 << 40, 1 << 40), (8, -8)]),
            "metadata": st.one_of(wrong_type("object"), st.just({"format": 5}), st.just({"format": ["pt"]})),
        }[kind]
    )

    def mutate(header):
        if kind == "top":
            return value
        if kind == "metadata":
            header["__metadata__"] = value
            return header
        name = sorted(k for k in header if k != "__metadata__")[pick % (len(header) - 1)]
        entry = header[name]
        if kind == "entry":
            header[name] = value
        elif kind == "dtype":
            entry["dtype"] = value
        elif kind == "shape":
            entry["shape"] = value
        elif kind == "shape_item":
            entry["shape"] = list(entry["shape"]) or [1]
            entry["shape"][pick % len(entry["shape"])] = value
        elif kind == "shape_range":
            entry["shape"] = value
        elif kind == "offsets":
            entry["data_offsets"] = value
        elif kind == "offsets_item":
            entry["data_offsets"][pick % 2] = value
        else:
            begin, end = entry["data_offsets"]
            entry["data_offsets"] = [begin + value[0], end + value[1]]
        return header

    return mutate


@pytest.mark.parametrize("kind", SAFETENSORS_KINDS)
@pytest.mark.parametrize("fmt", ["safetensors", "safetensors-sharded"])
@PER_KIND
@given(data=st.data())
def test_bad_safetensors_header_field_is_refused(checkpoints, fmt, kind, data):
    mutate = data.draw(bad_safetensors_header(kind), label="corruption")
    source = checkpoints[fmt]
    fname = data.draw(st.sampled_from(weight_files(source)), label="file")
    with corrupted_copy(source) as (work, directory, dst):
        path = os.path.join(directory, fname)
        header, raw = read_safetensors_raw(path)
        write_safetensors_raw(path, mutate(header), raw)
        assert_clean_failure(outcomes(work, directory, dst, FORMATS[fmt][1]), [fname])


# ------------------------------------------------------------------------------ h5 attributes
H5_KINDS = [
    "layer_names",
    "layer_names_missing_entry",
    "layer_names_dangling",
    "weight_names",
    "weight_names_dangling",
    "dataset_kind",
    "bf16_marker",
    "dtype_marker",
    "dataset_shape",
    "no_layer_names",
]


@st.composite
def bad_h5(draw, kind: str):
    """A function corrupting an open ``h5py.File`` of HF's TF layout: attributes, datasets, markers."""
    pick = draw(st.integers(0, 1000))
    bad_attr = draw(
        st.sampled_from(
            [
                np.int64(3),
                np.float32(1.5),
                np.array([1.0, 2.0]),
                np.array([[b"a"]]),
                np.bool_(True),
                np.array([b"bfloat16", b"bfloat16"]),
            ]
        )
    )

    def datasets(fh):
        found = []
        fh.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
        return sorted(found)

    def mutate(fh):
        layers = [n.decode() for n in fh.attrs["layer_names"]]
        layer = layers[pick % len(layers)]
        if kind == "layer_names":
            fh.attrs["layer_names"] = bad_attr
        elif kind == "no_layer_names":
            del fh.attrs["layer_names"]
        elif kind == "layer_names_missing_entry":
            fh.attrs["layer_names"] = np.array([n.encode() for n in layers if n != layer] or [b"x"], dtype="S")
        elif kind == "layer_names_dangling":
            fh.attrs["layer_names"] = np.array([n.encode() for n in layers] + [b"no_such_layer"], dtype="S")
        elif kind in ("weight_names", "weight_names_dangling"):
            groups = [n for n in layers if isinstance(fh[n], h5py.Group)]
            if not groups:  # a shard: its datasets are listed directly
                fh.attrs["layer_names"] = (
                    bad_attr
                    if kind == "weight_names"
                    else np.array([n.encode() for n in layers] + [b"distilbert/nothing:0"], dtype="S")
                )
                return
            group = fh[groups[pick % len(groups)]]
            names = list(group.attrs["weight_names"])
            group.attrs["weight_names"] = (
                bad_attr if kind == "weight_names" else np.array(names + [names[0] + b"_gone"], dtype="S")
            )
        else:
            name = datasets(fh)[pick % len(datasets(fh))]
            old = fh[name]
            array = np.asarray(old)
            if kind == "bf16_marker":  # marked bfloat16 but 4 bytes an element
                old.attrs["dtype"] = "bfloat16"
                return
            if kind == "dtype_marker":  # a marker that is not a string
                old.attrs["dtype"] = bad_attr
                return
            del fh[name]
            if kind == "dataset_kind":
                replacement = draw(st.sampled_from(["group", "string", "compound", "object-ref"]))
                if replacement == "group":
                    fh.create_group(name)
                elif replacement == "string":
                    fh.create_dataset(name, data=np.array([b"abc"] * 3))
                elif replacement == "compound":
                    fh.create_dataset(name, data=np.zeros(3, dtype=[("a", "f4"), ("b", "i4")]))
                else:
                    fh.create_dataset(name, data=np.array([fh.ref]), dtype=h5py.ref_dtype)
            else:  # dataset_shape
                fh.create_dataset(name, data=np.zeros(array.shape + (2,), array.dtype))

    return mutate


@pytest.mark.parametrize("kind", H5_KINDS)
@pytest.mark.parametrize("fmt", ["tf", "tf-sharded"])
@PER_KIND
@given(data=st.data())
def test_bad_h5_attribute_or_dataset_is_refused(checkpoints, fmt, kind, data):
    mutate = data.draw(bad_h5(kind), label="corruption")
    source = checkpoints[fmt]
    fname = data.draw(st.sampled_from(weight_files(source)), label="file")
    with corrupted_copy(source) as (work, directory, dst):
        with h5py.File(os.path.join(directory, fname), "r+") as fh:
            mutate(fh)
        assert_clean_failure(outcomes(work, directory, dst, FORMATS[fmt][1]), names_for(fmt, fname))


# ------------------------------------------------------------------------------ msgpack structure
def unpack_tree(raw: bytes):
    return msgpack.unpackb(raw, raw=False, strict_map_key=False, ext_hook=msgpack.ExtType)


def array_ext(shape, dtype, data) -> msgpack.ExtType:
    return msgpack.ExtType(1, msgpack.packb([shape, dtype, data], use_bin_type=True))


def chunked_form(shape, dtype, data: bytes, pieces: int = 1) -> dict:
    """An array as flax.serialization chunks one over 2 GiB: shape and chunks as {"0": ..., "1": ...}."""
    flat = np.frombuffer(data, dtype=files._dtype(dtype))
    parts = np.array_split(flat, pieces)
    return {
        "__msgpack_chunked_array__": True,
        "shape": {str(i): n for i, n in enumerate(shape)},
        "chunks": {str(i): array_ext([part.size], dtype, part.tobytes()) for i, part in enumerate(parts)},
    }


def test_chunked_flax_arrays_are_read(checkpoints, tmp_path):
    """The chunked form flax writes for arrays over 2 GiB reads back as the array (shape given as a dict)."""
    directory = str(tmp_path / "ckpt")
    shutil.copytree(checkpoints["flax"], directory)
    path = os.path.join(directory, files.FLAX_MSGPACK)
    tree = unpack_tree(Path(path).read_bytes())
    embeddings = tree["distilbert"]["embeddings"]["word_embeddings"]
    shape, dtype, data = msgpack.unpackb(embeddings["embedding"].data, raw=False)
    embeddings["embedding"] = chunked_form(shape, dtype, data, pieces=3)
    with open(path, "wb") as fh:
        fh.write(msgpack.packb(tree, use_bin_type=True))
    config = tiny_config()
    got, _ = load_state(directory, config, TASK)
    want, _ = load_state(checkpoints["flax"], config, TASK)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


MSGPACK_KINDS = [
    "top",
    "leaf",
    "subtree",
    "key",
    "shape",
    "shape_item",
    "shape_size",
    "dtype",
    "data",
    "ext_code",
    "ext_arity",
    "chunked",
    "deep",
]


@st.composite
def bad_msgpack(draw, kind: str):
    """A function corrupting a Flax parameter tree (ExtType leaves) in place, or returning a replacement."""
    pick = draw(st.integers(0, 1000))
    value = draw(
        {
            "top": st.one_of(st.just([]), st.just("params"), st.just(1), st.none()),
            "leaf": st.one_of(st.just("x"), st.just(3), st.none(), st.booleans(), st.just(1.5), st.just([1, 2])),
            "subtree": st.one_of(st.just([]), st.just("x"), st.none(), st.just(2)),
            "key": st.sampled_from([5, None, True, 1.5, b"bytes", "a/b", ""]),
            "shape": st.one_of(wrong_type("list"), st.just([[1]])),
            "shape_item": st.one_of(wrong_type("int"), st.just(-1)),
            "shape_size": st.sampled_from([[1], [], [10**6, 10**6], [2, -3]]),
            "dtype": st.one_of(
                wrong_type("str"), st.sampled_from(["object", "U4", "float31", "", "V4", "complex64", "datetime64"])
            ),
            "data": st.one_of(st.just("text"), st.just(5), st.none(), st.just([1, 2])),
            "ext_code": st.sampled_from([0, 2, 3, 4, 127]),
            "ext_arity": st.sampled_from([1, 2, 4]),
            "chunked": st.sampled_from(["no_chunks", "bad_index", "bad_shape", "wrong_size", "chunk_leaf"]),
            "deep": st.integers(65, 400),
        }[kind]
    )

    def leaves(tree, prefix=()):
        for key, sub in tree.items():
            if isinstance(sub, dict):
                yield from leaves(sub, prefix + (key,))
            else:
                yield prefix + (key,)

    def mutate(tree):
        if kind == "top":
            return value
        if kind == "deep":
            nested = 0
            for _ in range(value):
                nested = [nested]
            tree["deep"] = nested
            return tree
        paths = sorted(leaves(tree))
        path = paths[pick % len(paths)]
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        leaf = path[-1]
        ext = parent[leaf]
        shape, dtype, data = msgpack.unpackb(ext.data, raw=False)
        if kind == "leaf":
            parent[leaf] = value
        elif kind == "subtree":
            tree[path[0]] = value
        elif kind == "key":
            parent[value] = parent.pop(leaf)
        elif kind == "shape":
            parent[leaf] = array_ext(value, dtype, data)
        elif kind == "shape_item":
            parent[leaf] = array_ext([value] + list(shape[1:]), dtype, data)
        elif kind == "shape_size":
            parent[leaf] = array_ext(value, dtype, data)
        elif kind == "dtype":
            parent[leaf] = array_ext(shape, value, data)
        elif kind == "data":
            parent[leaf] = array_ext(shape, dtype, value)
        elif kind == "ext_code":
            parent[leaf] = msgpack.ExtType(value, ext.data)
        elif kind == "ext_arity":
            parent[leaf] = msgpack.ExtType(1, msgpack.packb(([shape, dtype, data] * 2)[:value], use_bin_type=True))
        else:  # flax's chunked form of arrays over 2 GiB, broken
            chunked = chunked_form(shape, dtype, data)
            if value == "no_chunks":
                del chunked["chunks"]
            elif value == "bad_index":
                chunked["chunks"] = {"first": chunked["chunks"]["0"]}
            elif value == "bad_shape":
                chunked["shape"] = "big"
            elif value == "wrong_size":
                chunked["shape"] = {"0": int(np.prod(shape)) + 1}
            else:
                chunked["chunks"]["0"] = 7
            parent[leaf] = chunked
        return tree

    return mutate


@pytest.mark.parametrize("kind", MSGPACK_KINDS)
@pytest.mark.parametrize("fmt", ["flax", "flax-sharded"])
@PER_KIND
@given(data=st.data())
def test_bad_msgpack_structure_is_refused(checkpoints, fmt, kind, data):
    mutate = data.draw(bad_msgpack(kind), label="corruption")
    source = checkpoints[fmt]
    fname = data.draw(st.sampled_from(weight_files(source)), label="file")
    with corrupted_copy(source) as (work, directory, dst):
        path = os.path.join(directory, fname)
        tree = mutate(unpack_tree(Path(path).read_bytes()))
        with open(path, "wb") as fh:
            fh.write(msgpack.packb(tree, use_bin_type=True, strict_types=False))
        assert_clean_failure(outcomes(work, directory, dst, FORMATS[fmt][1]), names_for(fmt, fname))


# ------------------------------------------------------------------------------ PyTorch pickles
BIN_CASES = {  # what a pytorch_model.bin may hold instead of {name: tensor}
    "a list": lambda state, torch: list(state.values()),
    "numbers": lambda state, torch: {name: 1.5 for name in state},
    "a nested dict": lambda state, torch: {"state_dict": state},
    "integer keys": lambda state, torch: dict(enumerate(state.values())),
    "an integer weight": lambda state, torch: {name: t.to(torch.int32) for name, t in state.items()},
    "a complex weight": lambda state, torch: {name: t.to(torch.complex64) for name, t in state.items()},
}


@pytest.mark.parametrize("case", BIN_CASES)
def test_pytorch_bin_that_is_not_a_state_dict_of_weights_is_named(checkpoints, case):
    """The package writes no pickles, but reads them (with weights_only=True): their content is checked too."""
    import torch

    with corrupted_copy(checkpoints["safetensors"]) as (work, directory, dst):
        lazy = files.open_safetensors(os.path.join(directory, files.SAFETENSORS))
        state = {name: torch.from_numpy(np.array(lazy[name])) for name in lazy}
        os.remove(os.path.join(directory, files.SAFETENSORS))
        torch.save(BIN_CASES[case](state, torch), os.path.join(directory, files.PT_BIN))
        assert_clean_failure(outcomes(work, directory, dst, "flax"), [files.PT_BIN])
