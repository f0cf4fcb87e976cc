"""Flax NNX backend: from_pretrained / save_pretrained in the Hugging Face layout, both ways with the reference."""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from helpers import (
    assert_close,
    oracle_class,
    oracle_pt_model,
    random_inputs,
    random_state,
    tiny_config,
    write_oracle_dirs,
)

from distilbert.common.names import WeightMismatchError
from distilbert.flax import (
    FlaxDistilBertForMaskedLM,
    FlaxDistilBertForQuestionAnswering,
    FlaxDistilBertForSequenceClassification,
    FlaxDistilBertForTokenClassification,
    FlaxDistilBertModel,
    canonical_state,
    load_canonical_state,
)

CLASSES = {
    "masked_lm": FlaxDistilBertForMaskedLM,
    "sequence_classification": FlaxDistilBertForSequenceClassification,
    "question_answering": FlaxDistilBertForQuestionAnswering,
    "base": FlaxDistilBertModel,
}
MAIN = {
    "masked_lm": "logits",
    "sequence_classification": "logits",
    "question_answering": "start_logits",
    "base": "last_hidden_state",
}


def reference_output(config, task, state, inputs):
    with torch.no_grad():
        out = oracle_pt_model(config, task, state)(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return out[MAIN[task]].numpy()


@pytest.fixture(scope="module")
def reference_dirs(tmp_path_factory):
    """safetensors, tf_model.h5 and flax_model.msgpack written by the reference's own save_pretrained."""
    config = tiny_config()
    state = random_state(config, "sequence_classification", seed=21)
    dirs = write_oracle_dirs(str(tmp_path_factory.mktemp("ref")), config, "sequence_classification", state)
    return config, state, dirs


@pytest.mark.parametrize("framework", ["pt", "tf", "flax"])
def test_loads_reference_checkpoints(reference_dirs, framework):
    config, state, dirs = reference_dirs
    inputs = random_inputs(config)
    model, report = FlaxDistilBertForSequenceClassification.from_pretrained(dirs[framework], output_loading_info=True)
    assert report.new == [] and report.dropped == []
    assert report.format == {"pt": "safetensors", "tf": "tf", "flax": "flax"}[framework]
    assert_close(model(**inputs).logits, reference_output(config, "sequence_classification", state, inputs))
    # a head checkpoint into the bare model: the head is left behind, the encoder is the same
    base = FlaxDistilBertModel.from_pretrained(dirs[framework])
    assert_close(base(**inputs).last_hidden_state, model.distilbert(**inputs).last_hidden_state)


def test_loads_pytorch_model_bin(tmp_path, reference_dirs):
    """The legacy pickle format (read with torch.load(weights_only=True) by the foundation)."""
    config, state, _ = reference_dirs
    oracle_pt_model(config, "sequence_classification", state).save_pretrained(tmp_path, safe_serialization=False)
    assert os.path.isfile(tmp_path / "pytorch_model.bin")
    model, report = FlaxDistilBertForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert report.format == "pytorch"
    inputs = random_inputs(config)
    assert_close(model(**inputs).logits, reference_output(config, "sequence_classification", state, inputs))


@pytest.mark.parametrize("task", ["masked_lm", "question_answering"])
def test_msgpack_both_ways_with_reference_flax(tmp_path, task):
    """Our flax_model.msgpack loads into the reference Flax class and the reference's loads into ours."""
    config = tiny_config(sinusoidal_pos_embds=task == "question_answering")
    state = random_state(config, task, seed=8)
    inputs = random_inputs(config)
    ours = CLASSES[task](config)
    load_canonical_state(ours, state)
    path = ours.save_pretrained(tmp_path / "ours")
    assert os.path.basename(path) == "flax_model.msgpack"
    with open(tmp_path / "ours" / "config.json") as fh:
        assert json.load(fh)["architectures"] == ["Flax" + type(ours).__name__.removeprefix("Flax")]
    ref = oracle_class("flax", task).from_pretrained(tmp_path / "ours")
    expected = reference_output(config, task, state, inputs)
    assert_close(getattr(ref(inputs["input_ids"], inputs["attention_mask"]), MAIN[task]), expected)
    ref.save_pretrained(tmp_path / "ref")
    back = CLASSES[task].from_pretrained(tmp_path / "ref")
    assert_close(getattr(back(**inputs), MAIN[task]), expected)


@pytest.mark.parametrize("weight_format", ["safetensors", "tf", "flax"])
def test_save_and_reload_every_format(tmp_path, weight_format):
    config = tiny_config(tie_word_embeddings=weight_format == "tf")  # HF TF has no untied projector
    state = random_state(config, "masked_lm", seed=9)
    model = FlaxDistilBertForMaskedLM(config)
    load_canonical_state(model, state)
    model.save_pretrained(tmp_path, weight_format=weight_format)
    again = FlaxDistilBertForMaskedLM.from_pretrained(tmp_path)
    for name, array in canonical_state(again).items():
        assert np.array_equal(array, state[name]), name
    if weight_format == "safetensors":  # and the reference PyTorch class reads ours
        ref = oracle_class("pt", "masked_lm").from_pretrained(tmp_path).eval()
        inputs = random_inputs(config)
        with torch.no_grad():
            logits = ref(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
        assert_close(model(**inputs).logits, logits)


def test_new_head_and_label_overrides(tmp_path):
    config = tiny_config()
    state = random_state(config, "base", seed=10)
    base = FlaxDistilBertModel(config)
    load_canonical_state(base, state)
    base.save_pretrained(tmp_path / "base", weight_format="safetensors")
    model, report = FlaxDistilBertForTokenClassification.from_pretrained(
        tmp_path / "base", num_labels=5, output_loading_info=True
    )
    assert sorted(report.new) == ["classifier.bias", "classifier.weight"]
    assert model.config.num_labels == 5 and model.classifier.kernel.shape == (32, 5)
    assert float(jnp.std(model.classifier.kernel[...])) > 0  # freshly initialised, not zeros
    loaded = canonical_state(model)
    for name, array in state.items():
        assert np.array_equal(loaded["distilbert." + name], array)
    model.save_pretrained(tmp_path / "tok")
    with pytest.raises(WeightMismatchError, match="classifier"):
        FlaxDistilBertForTokenClassification.from_pretrained(tmp_path / "tok", num_labels=3)
    resized, report = FlaxDistilBertForTokenClassification.from_pretrained(
        tmp_path / "tok", num_labels=3, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert resized.classifier.kernel.shape == (32, 3) and "classifier.weight" in report.new
    assert np.array_equal(
        canonical_state(resized)["distilbert.embeddings.word_embeddings.weight"],
        state["embeddings.word_embeddings.weight"],
    )


def test_from_pretrained_dtypes(tmp_path):
    config = tiny_config()
    state = random_state(config, "question_answering", seed=12)
    model = FlaxDistilBertForQuestionAnswering(config)
    load_canonical_state(model, state)
    model.save_pretrained(tmp_path)
    mixed = FlaxDistilBertForQuestionAnswering.from_pretrained(tmp_path, dtype="bfloat16")
    assert mixed.dtype == jnp.bfloat16 and mixed.qa_outputs.kernel.dtype == jnp.float32
    half = FlaxDistilBertForQuestionAnswering.from_pretrained(tmp_path, param_dtype=jnp.bfloat16)
    assert half.qa_outputs.kernel.dtype == jnp.bfloat16
    saved = half.save_pretrained(tmp_path / "half", weight_format="safetensors")
    from safetensors.numpy import load_file

    assert str(load_file(saved)["qa_outputs.weight"].dtype) == "bfloat16"


def test_load_canonical_state_is_strict():
    config = tiny_config()
    model = FlaxDistilBertForSequenceClassification(config)
    state = random_state(config, "sequence_classification")
    missing = {k: v for k, v in state.items() if k != "classifier.bias"}
    with pytest.raises(WeightMismatchError, match="missing.*classifier.bias"):
        load_canonical_state(model, missing)
    with pytest.raises(WeightMismatchError, match="unexpected.*qa_outputs.weight"):
        load_canonical_state(model, dict(state, **{"qa_outputs.weight": np.zeros((2, 32), np.float32)}))
    bad = dict(state, **{"pre_classifier.weight": np.zeros((32, 31), np.float32)})
    with pytest.raises(WeightMismatchError, match="pre_classifier"):
        load_canonical_state(model, bad)
    before = canonical_state(model)
    load_canonical_state(model, missing, skip=["classifier.bias"])  # a new head keeps its init
    after = canonical_state(model)
    assert np.array_equal(after["classifier.bias"], before["classifier.bias"])
    assert np.array_equal(after["classifier.weight"], state["classifier.weight"])


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        FlaxDistilBertModel.from_pretrained(tmp_path / "nowhere")


def test_reference_switches_are_accepted_and_not_saved(tmp_path):
    from distilbert.common.checkpoint import save_state

    config = tiny_config()
    state = random_state(config, "masked_lm")
    save_state(tmp_path / "src", state, config, "masked_lm")
    model = FlaxDistilBertForMaskedLM.from_pretrained(tmp_path / "src", from_pt=True)
    model.save_pretrained(tmp_path / "out")
    assert "from_pt" not in json.loads((tmp_path / "out" / "config.json").read_text())
    assert set(model.canonical_state()) == set(state)  # the same methods as the PT and TF models


def test_sharded_save_pretrained_round_trips(tmp_path):
    config = tiny_config()
    state = random_state(config, "question_answering", seed=13)
    model = FlaxDistilBertForQuestionAnswering(config)
    load_canonical_state(model, state)
    path = model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert os.path.basename(path) == "flax_model.msgpack.index.json"
    again, report = FlaxDistilBertForQuestionAnswering.from_pretrained(tmp_path, output_loading_info=True)
    assert report.format == "flax-sharded" and not report.new
    inputs = random_inputs(config)
    assert_close(again(**inputs).start_logits, model(**inputs).start_logits)
