"""ONNX export of the PyTorch backend (``distilbert.pt.export``): every head in onnxruntime against our model and
the reference, one file for every shape, int8, and Optimum's ORTModel classes loading the command's output."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    ATOL,
    assert_close,
    oracle_pt_model,
    ours,
    random_inputs,
    random_state,
    run,
    task_inputs,
    tiny_config,
    to_torch,
    write_tiny_checkpoint,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from distilbert.common.checkpoint import init_state  # noqa: E402
from distilbert.common.names import TASKS  # noqa: E402
from distilbert.pt.export import FORMATS, export, load, output_names  # noqa: E402

# (batch, sequence): one token, padding (task_inputs pads row i by i tokens), odd lengths, the full position table.
SHAPES = [(1, 1), (3, 7), (4, 19), (2, 64)]


def _config(task: str, **overrides):
    return tiny_config(num_labels=2 if task == "question_answering" else 3, **overrides)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``distilbert export CKPT OUT --format onnx`` of each head's tiny checkpoint (random weights, a tokenizer):
    ``{task: (config, state, our model, model.onnx, OUT)}``."""
    from distilbert.export import export_command

    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for seed, task in enumerate(TASKS):
        ckpt = str(root / f"{task}-ckpt")
        config, state = write_tiny_checkpoint(
            ckpt, task, seed=seed, num_labels=2 if task == "question_answering" else 3
        )
        result = export_command(ckpt, str(root / task), "onnx", log=None)
        model = ours("pt", task, config, state)
        out[task] = (config, state, model, os.path.join(result.out, result.artefact), result.out)
    return out


def _inputs(config, task, batch, seq, seed=0):
    return task_inputs(config, task, batch * 3 if task == "multiple_choice" else batch, seq, seed)


@pytest.mark.parametrize("task", TASKS)
def test_every_head_matches_our_model_and_the_reference_on_every_shape(task, exported):
    config, state, model, path, _ = exported[task]
    runner = load(path)
    oracle = oracle_pt_model(config, task, state)
    for batch, seq in SHAPES:
        inputs = _inputs(config, task, batch, seq, seed=batch + seq)
        got = runner(inputs["input_ids"], inputs["attention_mask"])
        want = run("pt", model, inputs)
        with torch.no_grad():
            reference = oracle(**to_torch(inputs))
        assert list(got) == list(output_names(task))
        for name, value in got.items():
            assert value.dtype == np.float32
            assert_close(value, want[name], ATOL, f"{task} {batch}x{seq} {name} vs ours")
            assert_close(value, reference[name], ATOL, f"{task} {batch}x{seq} {name} vs the reference")


def test_multiple_choice_has_a_dynamic_choices_axis(exported):
    config, _, model, path, _ = exported["multiple_choice"]
    runner = load(path)
    for choices in (1, 2, 5):
        inputs = random_inputs(config, batch=2, seq=9, seed=choices, choices=choices)
        got = runner(**inputs)["logits"]
        assert got.shape == (2, choices)
        assert_close(got, run("pt", model, inputs)["logits"], ATOL, f"{choices} choices")


@pytest.mark.parametrize("task", TASKS)
def test_graph_interface_is_named_int64_and_dynamic(task, exported):
    path = exported[task][3]
    graph = onnx.load(path).graph
    dims = {"multiple_choice": ["batch", "choices", "sequence"]}.get(task, ["batch", "sequence"])
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    for tensor in graph.input:
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in tensor.type.tensor_type.shape.dim] == dims  # symbolic, not fixed sizes
    assert [o.name for o in graph.output] == list(output_names(task))
    for output in graph.output:
        assert output.type.tensor_type.shape.dim[0].dim_param == "batch"
    # No exporter stack traces (they would carry this machine's file paths).
    assert not any(node.metadata_props for node in graph.node)


def test_a_sequence_longer_than_the_position_table_fails(exported):
    config, _, _, path, _ = exported["base"]
    inputs = random_inputs(config, batch=1, seq=config.max_position_embeddings + 1)
    # onnxruntime itself refuses it (the position embeddings do not broadcast against the tokens)...
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="broadcast"):
        session.run(None, inputs)
    # ...and our runner says why before it runs.
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        load(path)(**inputs)


def test_export_restores_training_mode_and_runs_on_a_model_in_training_mode(tmp_path):
    config = _config("sequence_classification", dropout=0.1, seq_classif_dropout=0.2)
    model = ours("pt", "sequence_classification", config, random_state(config, "sequence_classification"))
    model.train()
    path = export(model, str(tmp_path), format="onnx")
    assert model.training
    inputs = random_inputs(config)
    model.eval()  # exported without dropout: the numbers of eval mode
    assert_close(load(path)(**inputs)["logits"], run("pt", model, inputs)["logits"])


def test_opset_is_written(tmp_path):
    config = _config("base")
    model = ours("pt", "base", config, random_state(config, "base"))
    path = export(model, str(tmp_path), format="onnx", opset=18)
    assert {o.domain: o.version for o in onnx.load(path).opset_import}[""] == 18
    inputs = random_inputs(config)
    assert_close(load(path)(**inputs)["last_hidden_state"], run("pt", model, inputs)["last_hidden_state"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "tflite"}, "exports onnx, not 'tflite'"),
        ({"format": "onnx", "quantize": "int4"}, "unknown quantization 'int4'"),
        ({"format": "onnx", "opset": 13}, "opset must be an integer >= 18"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(kwargs, message, exported, tmp_path):
    with pytest.raises(ValueError, match=message):
        export(exported["base"][2], str(tmp_path), **kwargs)
    assert os.listdir(tmp_path) == []
    assert FORMATS == ("onnx",)


def test_load_refuses_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ONNX file"):
        load(str(tmp_path / "model.onnx"))


# ------------------------------------------------------------------------------------------------- int8
@pytest.fixture(scope="module")
def int8_pair(tmp_path_factory):
    """A model whose weights dominate its file (dim 128, vocab 1000), initialised as the reference initialises
    (std 0.02; random 0.2-scale weights are not what int8 is for), exported in float32 and in int8."""
    task = "sequence_classification"
    config = _config(task, vocab_size=1000, dim=128, hidden_dim=512, max_position_embeddings=128)
    model = ours("pt", task, config, init_state(config, task, seed=3))
    paths = {
        q: export(model, str(tmp_path_factory.mktemp(f"int8-{q}")), format="onnx", quantize=q) for q in (None, "int8")
    }
    return config, model, paths


def test_int8_file_is_about_a_quarter_and_quantizes_every_matmul_weight(int8_pair):
    _, _, paths = int8_pair
    ratio = os.path.getsize(paths["int8"]) / os.path.getsize(paths[None])
    assert 0.2 < ratio < 0.3, ratio
    proto = onnx.load(paths["int8"])
    weights = {init.name: init for init in proto.graph.initializer}
    nbits = [n for n in proto.graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 6 * 2 + 2  # each layer's q, k, v, out, lin1, lin2; pre_classifier and classifier
    for node in nbits:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["bits"] == 8 and attrs["accuracy_level"] == 4, attrs  # int8 products, inputs per row
        assert onnx.numpy_helper.to_array(weights[node.input[2]]).size >= attrs["N"]  # scales per channel
    assert not [n.name for n in proto.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    tables = [weights[n.input[0]] for n in proto.graph.node if n.op_type == "Gather" and n.input[0] in weights]
    assert len(tables) >= 2 and all(t.data_type == onnx.TensorProto.UINT8 for t in tables)  # words, positions
    assert {p.key: p.value for p in proto.metadata_props}["quantization"] == "int8 dynamic"


def test_int8_outputs_are_close_to_float32(int8_pair):
    config, model, paths = int8_pair
    inputs = random_inputs(config, batch=4, seq=40, seed=5)
    got = load(paths["int8"])(**inputs)["logits"]
    want = run("pt", model, inputs)["logits"]
    assert not np.allclose(got, want, atol=1e-6, rtol=0)  # it is quantized...
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())  # ...and close


def test_int8_hidden_states_keep_their_direction(tmp_path):
    config = _config("base", vocab_size=1000, dim=128, hidden_dim=512)
    model = ours("pt", "base", config, init_state(config, "base", seed=4))
    path = export(model, str(tmp_path), format="onnx", quantize="int8")
    inputs = random_inputs(config, batch=3, seq=30, seed=6)
    got = load(path)(**inputs)["last_hidden_state"]
    want = run("pt", model, inputs)["last_hidden_state"]
    real = inputs["attention_mask"].astype(bool)
    a, b = got[real], want[real]  # (tokens, dim)
    cosine = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cosine.min() > 0.99, cosine.min()


def test_int8_sentence_does_not_depend_on_the_rest_of_the_batch(int8_pair):
    """Inputs are quantized row by row: a sentence's int8 output is the same alone and next to another
    sentence whose activations span another range (one scale over the batch, as quantize_dynamic's
    DynamicQuantizeLinear takes, fails this)."""
    config, _, paths = int8_pair
    runner = load(paths["int8"])
    inputs = random_inputs(config, batch=2, seq=24, seed=8)
    inputs["attention_mask"][:] = 1
    together = runner(**inputs)["logits"]
    alone = runner(**{k: v[:1] for k, v in inputs.items()})["logits"]
    # One scale over the batch moves the logits here by 1.5% of their size; per row they agree to float
    # rounding (1e-7), or to a code rounded the other way by it in a later layer.
    np.testing.assert_allclose(alone, together[:1], atol=1e-3 * np.abs(together).max(), rtol=0)


_QUIET_INT8 = """
import logging, sys
sys.path.insert(0, {tests!r})
from helpers import ours, tiny_config
from distilbert.pt.export import export
root = logging.getLogger()
if sys.argv[1] == "configured":  # the user's own root logger, at INFO
    logging.basicConfig(level=logging.INFO, format="user: %(message)s")
before = (root.handlers[:], root.level)
config = tiny_config(num_labels=2)
export(ours("pt", "sequence_classification", config), {out!r}, format="onnx", quantize="int8")
assert (root.handlers, root.level) == before, ((root.handlers, root.level), before)
logging.getLogger("distilbert.test").info("after the export")
"""


@pytest.mark.parametrize("logger", ["unconfigured", "configured"])
def test_int8_export_is_quiet_and_leaves_the_root_logger_as_it_was(logger, tmp_path):
    """onnxruntime's quantizers log every node at INFO and configure the root logger when imported: the
    export prints none of it, and the root logger (the user's at INFO, or none) is the same after."""
    code = _QUIET_INT8.format(tests=os.path.dirname(__file__), out=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code, logger], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "quantiz" not in result.stderr and "MatMul" not in result.stderr, result.stderr[-3000:]
    # the user's configuration still prints their INFO lines; without one, nothing prints them
    assert ("user: after the export" in result.stderr) == (logger == "configured"), result.stderr[-3000:]


def test_optimum_loads_an_int8_export(tmp_path):
    optimum = pytest.importorskip("optimum.onnxruntime")
    from distilbert.export import export_command

    config, state = write_tiny_checkpoint(str(tmp_path / "ckpt"), "sequence_classification", seed=9, num_labels=3)
    result = export_command(str(tmp_path / "ckpt"), str(tmp_path / "out"), "onnx", quantize="int8", log=None)
    inputs = _inputs(config, "sequence_classification", 2, 9, seed=10)
    got = optimum.ORTModelForSequenceClassification.from_pretrained(result.out)(**to_torch(inputs)).logits
    want = load(os.path.join(result.out, result.artefact))(**inputs)["logits"]
    assert_close(got, want, ATOL, "Optimum on the int8 export")


# ------------------------------------------------------------------------------------------------ Optimum
ORT_CLASSES = {
    "base": "ORTModelForFeatureExtraction",
    "masked_lm": "ORTModelForMaskedLM",
    "sequence_classification": "ORTModelForSequenceClassification",
    "multiple_choice": "ORTModelForMultipleChoice",
    "token_classification": "ORTModelForTokenClassification",
    "question_answering": "ORTModelForQuestionAnswering",
}


@pytest.mark.parametrize("task", TASKS)
def test_optimum_ortmodel_loads_the_export_and_gives_our_numbers(task, exported):
    optimum = pytest.importorskip("optimum.onnxruntime")
    config, _, model, _, out = exported[task]
    ort_model = getattr(optimum, ORT_CLASSES[task]).from_pretrained(out)
    inputs = _inputs(config, task, 3, 11, seed=7)
    got = ort_model(**to_torch(inputs))
    want = run("pt", model, inputs)
    for name in output_names(task):
        assert_close(got[name], want[name], ATOL, f"Optimum {ORT_CLASSES[task]} {name}")


def test_optimum_runs_the_export_with_the_copied_tokenizer(exported):
    optimum = pytest.importorskip("optimum.onnxruntime")
    from transformers import AutoTokenizer

    _, _, model, _, out = exported["sequence_classification"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    encoded = tokenizer(["the cat sat on the mat.", "a big red car"], padding=True, return_tensors="pt")
    logits = optimum.ORTModelForSequenceClassification.from_pretrained(out)(**encoded).logits
    want = run("pt", model, {k: v.numpy() for k, v in encoded.items()})
    assert_close(logits, want["logits"], ATOL, "logits from text")
