"""The TensorFlow backend's exports (``distilbert.tf.export``): a SavedModel run by ``tf.saved_model.load``
and LiteRT run by ``ai_edge_litert``'s interpreter, for every head, against the Keras model they came from."""

import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import ATOL, compare, random_inputs, random_state, run, task_inputs, tiny_config

from distilbert.common.names import TASKS
from distilbert.frameworks import build
from distilbert.tf import TFDistilBertModel
from distilbert.tf import export as tf_export

CONFIG = tiny_config()
FIELDS = {
    "base": ["last_hidden_state"],
    "masked_lm": ["logits"],
    "sequence_classification": ["logits"],
    "multiple_choice": ["logits"],
    "token_classification": ["logits"],
    "question_answering": ["start_logits", "end_logits"],
}


def shapes(task: str, config=CONFIG) -> list[dict[str, np.ndarray]]:
    """Several shapes through one file: padded rows, one token, the full position table; choices 2 to 4."""
    if task == "multiple_choice":
        return [
            random_inputs(config, 1, 5, choices=2),
            task_inputs(config, task, 6, 19, seed=1),
            random_inputs(config, 2, config.max_position_embeddings, seed=2, choices=4),
        ]
    return [
        random_inputs(config, 1, 5),
        random_inputs(config, 3, 19, seed=1),
        random_inputs(config, 2, config.max_position_embeddings, seed=2),
        random_inputs(config, 4, 1, seed=3),
    ]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``{task: (model, {format: path})}``: every head exported once in both formats (conversion is slow)."""
    result = {}
    for i, task in enumerate(TASKS):
        model = build("tf", task, CONFIG, random_state(CONFIG, task, seed=i))
        paths = {}
        for fmt in tf_export.FORMATS:
            directory = tmp_path_factory.mktemp(f"{task}-{fmt}")
            paths[fmt] = tf_export.export(model, str(directory), format=fmt)
        result[task] = model, paths
    return result


@pytest.mark.parametrize("fmt", tf_export.FORMATS)
@pytest.mark.parametrize("task", TASKS)
def test_export_matches_model(exports, task, fmt):
    """One file, several shapes (padding included): the runtime's outputs are the Keras model's."""
    model, paths = exports[task]
    runner = tf_export.load(paths[fmt])
    for inputs in shapes(task):
        expected = {k: v for k, v in run("tf", model, inputs).items() if k != "loss"}
        out = runner(**inputs)  # int64 in, cast to the export's int32
        assert list(out) == FIELDS[task]
        compare(out, expected, ATOL, f"{task}/{fmt}{inputs['input_ids'].shape}")


@pytest.mark.parametrize("task", ["multiple_choice", "question_answering"])
def test_saved_model_signature(exports, task):
    """The SavedModel's one signature: int32 inputs by name with every axis dynamic, outputs by field name."""
    _, paths = exports[task]
    assert os.path.basename(paths["saved-model"]) == "saved_model"
    loaded = tf.saved_model.load(paths["saved-model"])
    assert list(loaded.signatures) == ["serving_default"]
    signature = loaded.signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    rank = 3 if task == "multiple_choice" else 2
    assert sorted(inputs) == ["attention_mask", "input_ids"]
    for name, spec in inputs.items():
        assert spec.name == name and spec.dtype == tf.int32 and spec.shape.as_list() == [None] * rank
    assert sorted(signature.structured_outputs) == sorted(FIELDS[task])
    for spec in signature.structured_outputs.values():
        assert spec.dtype == tf.float32 and all(d is None for d in spec.shape.as_list())


@pytest.mark.parametrize("task", ["multiple_choice", "question_answering"])
def test_litert_signature(exports, task):
    """The LiteRT file's signature has the names, int32 inputs, and -1 (dynamic) for every input axis."""
    from ai_edge_litert.interpreter import Interpreter

    _, paths = exports[task]
    assert paths["litert"].endswith("model.tflite")
    interpreter = Interpreter(model_path=paths["litert"])
    signatures = interpreter.get_signature_list()
    assert list(signatures) == ["serving_default"]
    assert sorted(signatures["serving_default"]["inputs"]) == ["attention_mask", "input_ids"]
    assert sorted(signatures["serving_default"]["outputs"]) == sorted(FIELDS[task])
    details = interpreter.get_signature_runner("serving_default").get_input_details()
    rank = 3 if task == "multiple_choice" else 2
    for name in ("input_ids", "attention_mask"):
        assert details[name]["dtype"] == np.int32
        assert list(details[name]["shape_signature"]) == [-1] * rank
    assert tf_export.load(paths["litert"]).max_length == CONFIG.max_position_embeddings


def test_longer_than_positions(exports):
    """A sequence longer than max_position_embeddings: each runtime's own failure, and the runners' message."""
    from ai_edge_litert.interpreter import Interpreter

    _, paths = exports["sequence_classification"]
    inputs = {k: v.astype(np.int32) for k, v in random_inputs(CONFIG, 2, CONFIG.max_position_embeddings + 1).items()}
    signature = tf.saved_model.load(paths["saved-model"]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="longer than max_position_embeddings"):
        signature(**{k: tf.constant(v) for k, v in inputs.items()})
    raw = Interpreter(model_path=paths["litert"]).get_signature_runner("serving_default")
    with pytest.raises(RuntimeError, match="gather index out of bounds"):
        raw(**inputs)
    with pytest.raises(ValueError, match=r"longer than max_position_embeddings \(64\)"):
        tf_export.load(paths["litert"])(**inputs)


def test_ids_outside_vocabulary(exports):
    """An id past the vocabulary: the SavedModel's assertion names it; LiteRT's gather refuses it."""
    _, paths = exports["base"]
    inputs = random_inputs(CONFIG, 2, 6)
    inputs["input_ids"][1, 2] = CONFIG.vocab_size
    with pytest.raises(tf.errors.InvalidArgumentError, match="vocab_size=99"):
        tf_export.load(paths["saved-model"])(**inputs)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tf_export.load(paths["litert"])(**inputs)


def test_sinusoidal_positions(tmp_path):
    """A stored sinusoidal position table (a non-trainable variable) exports and keeps its limit."""
    config = tiny_config(sinusoidal_pos_embds=True)
    model = build("tf", "token_classification", config, random_state(config, "token_classification"))
    path = tf_export.export(model, str(tmp_path), format="litert")
    runner = tf_export.load(path)
    assert runner.max_length == config.max_position_embeddings
    for inputs in shapes("token_classification", config)[:2]:
        compare(runner(**inputs), {"logits": run("tf", model, inputs)["logits"]}, ATOL)


def test_int8_litert(tmp_path):
    """int8: int8 weights (per output channel in the dense layers), about a quarter of the float32 file,
    outputs close to float32's (the cosine is printed)."""
    from ai_edge_litert.interpreter import Interpreter

    config = tiny_config(dim=128, hidden_dim=512, vocab_size=1000)  # weights large enough to be quantised
    model = build("tf", "base", config, random_state(config, "base"))
    (tmp_path / "f32").mkdir(), (tmp_path / "int8").mkdir()
    f32 = tf_export.export(model, str(tmp_path / "f32"), format="litert")
    int8 = tf_export.export(model, str(tmp_path / "int8"), format="litert", quantize="int8")
    ratio = os.path.getsize(int8) / os.path.getsize(f32)
    assert 0.2 < ratio < 0.3, ratio
    quantised = [d for d in Interpreter(model_path=int8).get_tensor_details() if d["dtype"] == np.int8]
    lin1 = [d for d in quantised if "lin1" in d["name"]]
    assert len(lin1) == config.n_layers
    for d in lin1:  # (out, in) kernels, one scale per output channel
        assert list(d["shape"]) == [config.hidden_dim, config.dim]
        assert len(d["quantization_parameters"]["scales"]) == config.hidden_dim
    inputs = random_inputs(config, 3, 21)
    a = tf_export.load(f32)(**inputs)["last_hidden_state"].ravel()
    b = tf_export.load(int8)(**inputs)["last_hidden_state"].ravel()
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    print(f"int8/float32 LiteRT: size ratio {ratio:.3f}, cosine {cosine:.5f}, max diff {np.abs(a - b).max():.3g}")
    assert cosine > 0.99
    assert not np.allclose(a, b, atol=1e-3)  # really quantised


@pytest.mark.parametrize(
    "fmt, options, message",
    [
        ("saved-model", {"quantize": "int8"}, "not supported for 'saved-model'"),
        ("litert", {"quantize": "int4"}, "unknown quantization 'int4'"),
        ("litert", {"opset": 17}, "opset applies to the onnx format only"),
        ("saved-model", {"opset": 17}, "opset applies to the onnx format only"),
        ("onnx", {}, "unknown TensorFlow export format 'onnx'"),
    ],
)
def test_bad_options(exports, tmp_path, fmt, options, message):
    model, _ = exports["base"]
    with pytest.raises(ValueError, match=message):
        tf_export.export(model, str(tmp_path), format=fmt, **options)
    assert os.listdir(tmp_path) == []  # nothing written


def test_bad_targets(exports, tmp_path):
    """Not a Keras model of ours, a missing directory, an artefact already there, a path that is no export,
    a LiteRT export of a bfloat16 model (the converter has no bfloat16 kernels)."""
    model, paths = exports["base"]
    with pytest.raises(TypeError, match="expected a distilbert.tf model"):
        tf_export.export(object(), str(tmp_path), format="litert")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tf_export.export(model, str(tmp_path / "missing"), format="litert")
    (tmp_path / "model.tflite").write_bytes(b"")
    with pytest.raises(FileExistsError, match="exists already"):
        tf_export.export(model, str(tmp_path), format="litert")
    with pytest.raises(FileNotFoundError, match="neither a SavedModel"):
        tf_export.load(str(tmp_path / "nothing.onnx"))
    with pytest.raises(TypeError, match="must hold integers"):
        tf_export.load(paths["litert"])(np.ones((1, 3), np.float32), np.ones((1, 3), np.int64))
    with pytest.raises(ValueError, match="LiteRT export needs a float32 model, not 'mixed_bfloat16'"):
        tf_export.export(TFDistilBertModel(CONFIG, dtype="mixed_bfloat16"), str(tmp_path), format="litert")


@pytest.mark.slow
def test_litert_on_minilm(tmp_path):
    """The real all-MiniLM-L6-v2 (converted by us) in LiteRT: float32 gives the Keras model's hidden states;
    int8 is about a quarter of the file with sentence embeddings (mean pooling) at cosine >= 0.99 to the
    model's, on the packaged sentences (the figures are printed)."""
    from distilbert import DistilBertTokenizerFast
    from distilbert.conversion import convert
    from distilbert.demo import load_search, load_sentiment, minilm_directory
    from distilbert.frameworks import from_pretrained

    source = minilm_directory()
    directory = os.fspath(convert(source, str(tmp_path / "tf"), to="tf").destination)
    model = from_pretrained("tf", "base", directory)
    documents, queries = load_search()
    train, _ = load_sentiment()
    sentences = documents + [q for q, _ in queries] + [s for s, _ in train[:96]]
    batch = DistilBertTokenizerFast.from_pretrained(source)(sentences, padding=True, return_tensors="np")
    ids, mask = batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)
    expected = run("tf", model, {"input_ids": ids, "attention_mask": mask})["last_hidden_state"]

    def embed(hidden):
        summed = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return summed / np.linalg.norm(summed, axis=-1, keepdims=True)

    paths = {}
    for name, quantize in (("float32", None), ("int8", "int8")):
        (tmp_path / name).mkdir()
        paths[name] = tf_export.export(model, str(tmp_path / name), format="litert", quantize=quantize)
    hidden = {name: tf_export.load(path)(ids, mask)["last_hidden_state"] for name, path in paths.items()}
    compare(hidden["float32"], expected, 1e-4)
    ratio = os.path.getsize(paths["int8"]) / os.path.getsize(paths["float32"])
    cosine = (embed(hidden["int8"]) * embed(expected)).sum(-1)
    print(f"MiniLM LiteRT int8: {ratio:.3f} of float32's size; cosine min {cosine.min():.4f} mean {cosine.mean():.4f}")
    assert 0.2 < ratio < 0.3
    assert cosine.min() >= 0.99
