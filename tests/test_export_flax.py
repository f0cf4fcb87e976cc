"""The Flax backend's export (``distilbert.flax.export``): ``model.stablehlo``, a serialized ``jax.export``
module run by ``jax.export.deserialize(...).call``, for every head, against the NNX model it came from."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ATOL, compare, random_inputs, random_state, run, task_inputs, tiny_config

from distilbert.common.names import TASKS
from distilbert.flax import export as flax_export
from distilbert.frameworks import build

CONFIG = tiny_config()
FIELDS = {
    "base": ["last_hidden_state"],
    "masked_lm": ["logits"],
    "sequence_classification": ["logits"],
    "multiple_choice": ["logits"],
    "token_classification": ["logits"],
    "question_answering": ["start_logits", "end_logits"],
}


def shapes(task: str) -> list[dict[str, np.ndarray]]:
    """Several shapes through one file: one token, padded rows, the full position table; choices 2 to 4."""
    if task == "multiple_choice":
        return [
            random_inputs(CONFIG, 1, 5, choices=2),
            task_inputs(CONFIG, task, 6, 19, seed=1),
            random_inputs(CONFIG, 2, CONFIG.max_position_embeddings, seed=2, choices=4),
        ]
    return [  # three shapes, not more: each is a compilation of the module and of the model's eager ops
        random_inputs(CONFIG, 1, 1),
        random_inputs(CONFIG, 3, 19, seed=1),
        random_inputs(CONFIG, 2, CONFIG.max_position_embeddings, seed=2),
    ]


def read(path: str):
    with open(path, "rb") as fh:
        return jax.export.deserialize(bytearray(fh.read()))


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``{task: (model, path)}``: every head exported once."""
    result = {}
    for i, task in enumerate(TASKS):
        model = build("flax", task, CONFIG, random_state(CONFIG, task, seed=i))
        path = flax_export.export(model, str(tmp_path_factory.mktemp(task)), format="stablehlo")
        result[task] = model, path
    return result


@pytest.mark.parametrize("task", TASKS)
def test_export_matches_model(exports, task):
    """One file, several shapes (padding included): the deserialized module gives the model's outputs."""
    model, path = exports[task]
    assert os.path.basename(path) == "model.stablehlo"
    runner = flax_export.load(path)
    for inputs in shapes(task):
        expected = {k: v for k, v in run("flax", model, inputs).items() if k != "loss"}
        out = runner(**inputs)  # int64 in, cast to the export's int32
        assert list(out) == FIELDS[task]
        compare(out, expected, ATOL, f"{task}{inputs['input_ids'].shape}")


@pytest.mark.parametrize("task", ["multiple_choice", "question_answering"])
def test_file_runs_on_its_own(exports, task):
    """``deserialize(...).call(input_ids, attention_mask)`` with nothing else: the parameters are constants of
    the module (two int32 inputs with symbolic axes), the outputs a dict keyed by field name."""
    model, path = exports[task]
    exported = read(path)
    rank = 3 if task == "multiple_choice" else 2
    assert len(exported.in_avals) == 2
    for aval in exported.in_avals:
        assert aval.dtype == jnp.int32 and aval.ndim == rank
        assert all(jax.export.is_symbolic_dim(d) for d in aval.shape)
    assert str(exported.in_avals[0].shape) == ("(b, c, t)" if rank == 3 else "(b, t)")
    assert exported.platforms == (jax.default_backend(),)
    inputs = shapes(task)[1]
    out = exported.call(*(jnp.asarray(inputs[k], jnp.int32) for k in ("input_ids", "attention_mask")))
    assert sorted(out) == sorted(FIELDS[task])
    compare({k: out[k] for k in FIELDS[task]}, {k: run("flax", model, inputs)[k] for k in FIELDS[task]}, ATOL)


def test_parameters_are_baked_in(tmp_path):
    """Changing the model after export leaves the export's outputs as they were."""
    model = build("flax", "sequence_classification", CONFIG, random_state(CONFIG, "sequence_classification"))
    inputs = random_inputs(CONFIG, 2, 9)
    before = run("flax", model, inputs)["logits"]
    runner = flax_export.load(flax_export.export(model, str(tmp_path), format="stablehlo"))
    model.classifier.bias[...] = model.classifier.bias[...] + 1.0
    assert not np.allclose(run("flax", model, inputs)["logits"], before)
    compare(runner(**inputs)["logits"], before, ATOL)


def test_longer_than_positions(exports):
    """Past max_position_embeddings: the deserialized module cannot be specialised to the shape (JAX's own
    ValueError names nothing); the runner says what is wrong first."""
    _, path = exports["base"]
    inputs = random_inputs(CONFIG, 2, CONFIG.max_position_embeddings + 1)
    with pytest.raises(ValueError, match="Error refining shapes"):
        read(path).call(*(jnp.asarray(inputs[k], jnp.int32) for k in ("input_ids", "attention_mask")))
    runner = flax_export.load(path)
    assert runner.max_length == CONFIG.max_position_embeddings
    with pytest.raises(ValueError, match=r"longer than max_position_embeddings \(64\)"):
        runner(**inputs)


def test_ids_outside_vocabulary(exports):
    """An id past the vocabulary is no error inside the module: its sequence's outputs are NaN, the others'
    untouched."""
    model, path = exports["base"]
    inputs = random_inputs(CONFIG, 3, 6)
    inputs["input_ids"][1, 2] = CONFIG.vocab_size
    out = flax_export.load(path)(**inputs)["last_hidden_state"]
    assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()
    rows = {k: v[[0, 2]] for k, v in inputs.items()}
    compare(out[[0, 2]], run("flax", model, rows)["last_hidden_state"], ATOL)


@pytest.mark.parametrize(
    "fmt, options, message",
    [
        ("stablehlo", {"quantize": "int8"}, "not supported for 'stablehlo'"),
        ("stablehlo", {"opset": 17}, "opset applies to the onnx format only"),
        ("litert", {}, "unknown JAX/Flax export format 'litert'"),
    ],
)
def test_bad_options(exports, tmp_path, fmt, options, message):
    model, _ = exports["base"]
    with pytest.raises(ValueError, match=message):
        flax_export.export(model, str(tmp_path), format=fmt, **options)
    assert os.listdir(tmp_path) == []  # nothing written


def test_bad_targets(exports, tmp_path):
    """Not an NNX model of ours, a missing directory, an artefact already there, bad runner inputs."""
    model, path = exports["base"]
    with pytest.raises(TypeError, match="expected a distilbert.flax model"):
        flax_export.export(object(), str(tmp_path), format="stablehlo")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        flax_export.export(model, str(tmp_path / "missing"), format="stablehlo")
    (tmp_path / "model.stablehlo").write_bytes(b"")
    with pytest.raises(FileExistsError, match="exists already"):
        flax_export.export(model, str(tmp_path), format="stablehlo")
    with pytest.raises(FileNotFoundError, match="no StableHLO export"):
        flax_export.load(str(tmp_path / "other.stablehlo"))
    runner = flax_export.load(path)
    with pytest.raises(TypeError, match="must hold integers"):
        runner(np.ones((1, 3), np.float32), np.ones((1, 3), np.int64))
    with pytest.raises(ValueError, match="one shape"):
        runner(np.ones((1, 3), np.int64), np.ones((1, 4), np.int64))


@pytest.mark.slow
def test_stablehlo_on_minilm(tmp_path):
    """The real all-MiniLM-L6-v2 (converted by us) as StableHLO gives the NNX model's hidden states, padded
    positions included, on the packaged sentences."""
    from distilbert import DistilBertTokenizerFast
    from distilbert.conversion import convert
    from distilbert.demo import load_search, minilm_directory
    from distilbert.frameworks import from_pretrained

    source = minilm_directory()
    model = from_pretrained("flax", "base", os.fspath(convert(source, str(tmp_path / "flax"), to="flax").destination))
    documents, queries = load_search()
    batch = DistilBertTokenizerFast.from_pretrained(source)(
        documents + [q for q, _ in queries], padding=True, return_tensors="np"
    )
    inputs = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    (tmp_path / "export").mkdir()
    runner = flax_export.load(flax_export.export(model, str(tmp_path / "export"), format="stablehlo"))
    compare(runner(**inputs)["last_hidden_state"], run("flax", model, inputs)["last_hidden_state"], 1e-4)
