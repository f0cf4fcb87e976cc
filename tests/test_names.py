"""The weight-name table covers exactly the reference's tensors, in every framework and task."""

import numpy as np
import pytest
from helpers import hf_config, oracle_class, tiny_config

from distilbert.common.names import (
    TASKS,
    WeightMismatchError,
    adapt_prefix,
    from_native,
    sinusoidal_table,
    to_native,
    weight_table,
)

CASES = [(task, sin) for task in TASKS for sin in (False, True)]


def _table_names(config, task, fmt):
    return {s.names[fmt] for s in weight_table(config, task) if s.names[fmt] is not None}


@pytest.mark.parametrize("task,sinusoidal", CASES)
def test_table_matches_reference_pytorch_state_dict(task, sinusoidal):
    config = tiny_config(sinusoidal_pos_embds=sinusoidal)
    model = oracle_class("pt", task)(hf_config(config))
    state = model.state_dict()
    assert set(state) == _table_names(config, task, "pt")
    for spec in weight_table(config, task):
        assert tuple(state[spec.name].shape) == spec.shape, spec.name


@pytest.mark.parametrize("task,sinusoidal", CASES)
def test_table_matches_reference_flax_params(task, sinusoidal):
    from flax.traverse_util import flatten_dict

    config = tiny_config(sinusoidal_pos_embds=sinusoidal)
    model = oracle_class("flax", task)(hf_config(config))
    params = flatten_dict(model.params, sep="/")
    assert set(params) == _table_names(config, task, "flax")
    for spec in weight_table(config, task):
        if spec.names["flax"]:
            assert params[spec.names["flax"]].shape == spec.native_shape("flax"), spec.name


@pytest.mark.parametrize("task,sinusoidal", CASES)
def test_table_matches_reference_tf_weights(task, sinusoidal):
    config = tiny_config(sinusoidal_pos_embds=sinusoidal)
    model = oracle_class("tf", task)(hf_config(config))
    model(model.dummy_inputs)
    # Keras 2 names start with the model's own name, which HF's loader ignores, and so does the table.
    weights = {"/".join(w.name.split("/")[1:]): tuple(w.shape) for w in model.weights}
    assert set(weights) == _table_names(config, task, "tf")
    for spec in weight_table(config, task):
        if spec.names["tf"]:
            assert weights[spec.names["tf"]] == spec.native_shape("tf"), spec.name


def test_untied_projector_rows():
    config = tiny_config(tie_word_embeddings=False)
    rows = {s.name: s for s in weight_table(config, "masked_lm")}
    projector = rows["vocab_projector.weight"]
    assert projector.kind == "linear" and projector.tied_to is None
    assert projector.names["flax"] == "vocab_projector/kernel"
    assert projector.names["tf"] is None  # HF's TF class has no untied projector
    tied = {s.name: s for s in weight_table(tiny_config(), "masked_lm")}["vocab_projector.weight"]
    assert tied.kind == "tied" and tied.tied_to == "distilbert.embeddings.word_embeddings.weight"
    assert [fmt for fmt, n in tied.names.items() if n] == ["pt"]


def test_native_round_trip_every_format():
    config = tiny_config()
    table = weight_table(config, "masked_lm")
    rng = np.random.default_rng(0)
    state = {s.name: rng.standard_normal(s.shape).astype(np.float32) for s in table if s.kind != "tied"}
    state["vocab_projector.weight"] = state["distilbert.embeddings.word_embeddings.weight"]
    for fmt in ("pt", "tf", "flax", "keras", "nnx"):
        native = to_native(state, fmt, table)
        if fmt != "pt":
            kernel = native[weight_table(config, "masked_lm")[4].names[fmt]]
            np.testing.assert_array_equal(kernel, state["distilbert.transformer.layer.0.attention.q_lin.weight"].T)
        back = from_native(native, fmt, table)
        assert set(back) == set(state)
        for name in state:
            np.testing.assert_array_equal(back[name], state[name])


def test_from_native_reports_every_problem_by_name():
    config = tiny_config()
    table = weight_table(config, "question_answering")
    native = to_native({s.name: np.zeros(s.shape, np.float32) for s in table}, "flax", table)
    del native["distilbert/embeddings/LayerNorm/scale"]
    native["distilbert/extra/kernel"] = np.zeros(3)
    native["qa_outputs/kernel"] = np.zeros((32, 3), np.float32)
    with pytest.raises(WeightMismatchError) as info:
        from_native(native, "flax", table)
    message = str(info.value)
    assert "distilbert.embeddings.LayerNorm.weight" in message
    assert "distilbert/extra/kernel" in message
    assert "qa_outputs.weight" in message and "(32, 3)" in message


def test_sinusoidal_rows_are_recomputed_when_not_stored():
    config = tiny_config(sinusoidal_pos_embds=True)
    table = weight_table(config, "base")
    state = {s.name: np.ones(s.shape, np.float32) for s in table}
    native = to_native(state, "flax", table)
    assert "embeddings/position_embeddings/embedding" not in native
    back = from_native(native, "flax", table)
    np.testing.assert_array_equal(back["embeddings.position_embeddings.weight"], sinusoidal_table(64, 32))
    table_values = sinusoidal_table(4, 6)
    assert table_values[1, 0] == pytest.approx(np.sin(1.0)) and table_values[1, 1] == pytest.approx(np.cos(1.0))


def test_prefix_added_and_dropped_between_base_and_heads():
    config = tiny_config()
    head = {s.name: np.zeros(s.shape) for s in weight_table(config, "token_classification")}
    base_table = weight_table(config, "base")
    state, dropped, new = adapt_prefix(head, "token_classification", "base", base_table)
    assert set(state) == {s.name for s in base_table}
    assert sorted(dropped) == ["classifier.bias", "classifier.weight"] and new == []
    qa_table = weight_table(config, "question_answering")
    state, dropped, new = adapt_prefix(state, "base", "question_answering", qa_table)
    assert dropped == [] and sorted(new) == ["qa_outputs.bias", "qa_outputs.weight"]
    assert "distilbert.embeddings.word_embeddings.weight" in state


def test_unknown_task_and_format_are_refused():
    with pytest.raises(ValueError, match="unknown task 'ner'"):
        weight_table(tiny_config(), "ner")
    with pytest.raises(ValueError, match="unknown weight format 'onnx'"):
        to_native({}, "onnx", [])
