"""PyTorch backend: checkpoints written by the reference load into ours and back, in every format."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from helpers import (
    SAME_ATOL,
    assert_close,
    oracle_class,
    oracle_pt_model,
    random_inputs,
    random_state,
    tiny_config,
    write_oracle_dirs,
)

import distilbert.pt as dpt
from distilbert import DistilBertConfig
from distilbert.common.checkpoint import save_state
from distilbert.common.files import CheckpointError
from distilbert.common.names import TASK_CLASSES, TASKS, WeightMismatchError
from distilbert.pt.pretrained import canonical_state, resolve_dtype, to_numpy, to_torch

CLASSES = {task: getattr(dpt, name) for task, name in TASK_CLASSES.items()}
# Every format for three tasks (the base model, a tied LM head, a span head); PyTorch files for all six.
ALL_FORMAT_TASKS = ("base", "masked_lm", "question_answering")


def inputs_for(config, task):
    arrays = random_inputs(config, 3, 7, 0, choices=3 if task == "multiple_choice" else None)
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def first_output(out):
    return out.start_logits if hasattr(out, "start_logits") else out[0]


@pytest.fixture(scope="module")
def config():
    return tiny_config()


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory):
    """Per task: the state, the reference model and its outputs, and the reference's own checkpoint dirs."""
    root = tmp_path_factory.mktemp("oracle")
    out = {}
    for i, task in enumerate(TASKS):
        state = random_state(config, task, seed=20 + i)
        model = oracle_pt_model(config, task, state)
        frameworks = ("pt", "tf", "flax") if task in ALL_FORMAT_TASKS else ("pt",)
        dirs = write_oracle_dirs(str(root / task), config, task, state, frameworks)
        with torch.no_grad():
            expected = first_output(model(**inputs_for(config, task)))
        out[task] = {"state": state, "model": model, "dirs": dirs, "expected": expected}
    return out


@pytest.mark.parametrize("task", TASKS)
def test_reference_pytorch_checkpoint_loads(config, reference, task):
    model = CLASSES[task].from_pretrained(reference[task]["dirs"]["pt"])
    assert not model.training and model.dtype == torch.float32
    with torch.no_grad():
        assert_close(first_output(model(**inputs_for(config, task))), reference[task]["expected"])
    if task == "masked_lm":
        assert model.vocab_projector.weight is model.distilbert.embeddings.word_embeddings.weight


@pytest.mark.parametrize("fmt", ["tf", "flax"])
@pytest.mark.parametrize("task", ALL_FORMAT_TASKS)
def test_reference_tf_and_flax_checkpoints_load(config, reference, task, fmt):
    model = CLASSES[task].from_pretrained(reference[task]["dirs"][fmt])
    with torch.no_grad():
        assert_close(first_output(model(**inputs_for(config, task))), reference[task]["expected"])


def test_reference_pickle_checkpoint_loads(config, reference, tmp_path):
    reference["base"]["model"].save_pretrained(tmp_path, safe_serialization=False)
    assert os.path.isfile(tmp_path / "pytorch_model.bin")
    model = dpt.DistilBertModel.from_pretrained(tmp_path)
    with torch.no_grad():
        assert_close(model(**inputs_for(config, "base"))[0], reference["base"]["expected"])


@pytest.mark.parametrize("task", TASKS)
def test_our_checkpoint_loads_into_reference(config, reference, task, tmp_path):
    ours = CLASSES[task].from_pretrained(reference[task]["dirs"]["pt"])
    path = ours.save_pretrained(tmp_path)
    assert path.endswith("model.safetensors")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [TASK_CLASSES[task]] and saved["dtype"] == "float32"
    theirs = oracle_class("pt", task).from_pretrained(tmp_path)
    with torch.no_grad():
        assert_close(first_output(theirs(**inputs_for(config, task))), reference[task]["expected"])


@pytest.mark.parametrize("fmt", ["tf", "flax"])
def test_save_in_tf_and_flax_formats_round_trips(config, reference, fmt, tmp_path):
    ours = dpt.DistilBertForMaskedLM.from_pretrained(reference["masked_lm"]["dirs"]["pt"])
    path = ours.save_pretrained(tmp_path, weight_format=fmt)
    assert os.path.basename(path) == {"tf": "tf_model.h5", "flax": "flax_model.msgpack"}[fmt]
    again = dpt.DistilBertForMaskedLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert_close(again(**inputs_for(config, "masked_lm")).logits, reference["masked_lm"]["expected"])


def test_sharded_safetensors_round_trip(config, reference, tmp_path):
    ours = dpt.DistilBertForQuestionAnswering.from_pretrained(reference["question_answering"]["dirs"]["pt"])
    ours.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    again = dpt.DistilBertForQuestionAnswering.from_pretrained(tmp_path)
    with torch.no_grad():
        assert_close(
            again(**inputs_for(config, "question_answering")).start_logits, reference["question_answering"]["expected"]
        )
    theirs = oracle_class("pt", "question_answering").from_pretrained(tmp_path)  # the reference reads our shards
    with torch.no_grad():
        assert_close(
            theirs(**inputs_for(config, "question_answering")).start_logits, reference["question_answering"]["expected"]
        )


# ------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, "bfloat16"])
def test_dtype_on_load_and_round_trip(reference, dtype, tmp_path):
    model = dpt.DistilBertModel.from_pretrained(reference["base"]["dirs"]["pt"], dtype=dtype)
    want = resolve_dtype(dtype)
    assert all(p.dtype == want for p in model.parameters())
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == str(want).removeprefix("torch.")
    auto = dpt.DistilBertModel.from_pretrained(tmp_path, torch_dtype="auto")
    assert auto.dtype == want
    for (name, a), b in zip(model.state_dict().items(), auto.state_dict().values()):
        assert torch.equal(a, b), name
    upcast = dpt.DistilBertModel.from_pretrained(tmp_path)  # no dtype: float32, as the reference
    assert upcast.dtype == torch.float32
    theirs = oracle_class("pt", "base").from_pretrained(tmp_path, dtype="auto")
    assert theirs.dtype == want
    assert torch.equal(theirs.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight)


def test_bfloat16_numpy_conversion():
    t = torch.randn(3, 4).to(torch.bfloat16)
    a = to_numpy(t)
    assert a.dtype.name == "bfloat16"
    assert torch.equal(to_torch(a), t)
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8")


# -------------------------------------------------------------------------- heads and prefixes
def test_base_checkpoint_into_head_keeps_fresh_head(config, reference):
    torch.manual_seed(0)
    model, info = dpt.DistilBertForSequenceClassification.from_pretrained(
        reference["base"]["dirs"]["pt"], num_labels=4, output_loading_info=True
    )
    assert model.config.num_labels == 4 and model.classifier.weight.shape == (4, 32)
    assert set(info["missing_keys"]) == {
        "pre_classifier.weight",
        "pre_classifier.bias",
        "classifier.weight",
        "classifier.bias",
    }
    assert abs(model.classifier.weight.std().item() - 0.02) < 0.01 and torch.all(model.classifier.bias == 0)
    with torch.no_grad():
        hidden = model.distilbert(**inputs_for(config, "base")).last_hidden_state
    assert_close(hidden, reference["base"]["expected"])


def test_head_checkpoint_into_base_drops_head(config, reference):
    model, info = dpt.DistilBertModel.from_pretrained(reference["masked_lm"]["dirs"]["pt"], output_loading_info=True)
    assert "vocab_transform.weight" in info["unexpected_keys"] and info.format == "safetensors"
    assert info["error_msgs"] == [] and info.keys() == [
        "missing_keys",
        "unexpected_keys",
        "mismatched_keys",
        "error_msgs",
    ]
    with pytest.raises(KeyError, match="missing_keys"):
        info["missing"]
    state = reference["masked_lm"]["state"]
    assert np.array_equal(
        canonical_state(model)["transformer.layer.1.ffn.lin2.weight"],
        state["distilbert.transformer.layer.1.ffn.lin2.weight"],
    )


def test_new_num_labels_needs_ignore_mismatched_sizes(config, reference):
    path = reference["sequence_classification"]["dirs"]["pt"]
    with pytest.raises(WeightMismatchError, match="classifier.weight"):
        dpt.DistilBertForSequenceClassification.from_pretrained(path, num_labels=5)
    id2label = {i: f"class{i}" for i in range(5)}
    model = dpt.DistilBertForSequenceClassification.from_pretrained(
        path, id2label=id2label, ignore_mismatched_sizes=True
    )
    assert model.config.num_labels == 5 and model.config.label2id["class3"] == 3
    assert model.classifier.weight.shape == (5, 32)
    state = reference["sequence_classification"]["state"]
    assert np.array_equal(model.pre_classifier.weight.detach().numpy(), state["pre_classifier.weight"])


def test_config_argument_and_attn_implementation(config, reference):
    path = reference["base"]["dirs"]["pt"]
    model = dpt.DistilBertModel.from_pretrained(
        path, config=DistilBertConfig.from_pretrained(path), attn_implementation="eager"
    )
    assert model.attn_implementation == "eager"
    assert all(layer.attention.attn_implementation == "eager" for layer in model.transformer.layer)
    with torch.no_grad():
        assert_close(model(**inputs_for(config, "base"))[0], reference["base"]["expected"])


def test_save_load_after_resize(config, reference, tmp_path):
    model = dpt.DistilBertForMaskedLM.from_pretrained(reference["masked_lm"]["dirs"]["pt"])
    model.resize_token_embeddings(104)
    model.save_pretrained(tmp_path)
    again = dpt.DistilBertForMaskedLM.from_pretrained(tmp_path)
    assert again.config.vocab_size == 104
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name  # a lossless round trip: the same numbers
    ids = torch.tensor([[1, 100, 103]])
    with torch.no_grad():  # the same model twice (not bit-equal on every CPU: docs/numerics.md)
        assert_close(again(ids).logits, model(ids).logits, atol=SAME_ATOL)


# ------------------------------------------------------------------------------------ bad files
def test_missing_directory_and_weights(tmp_path):
    with pytest.raises((FileNotFoundError, OSError)):
        dpt.DistilBertModel.from_pretrained(str(tmp_path / "nope"))
    tiny_config().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights"):
        dpt.DistilBertModel.from_pretrained(tmp_path)


def test_truncated_checkpoint_is_refused(reference, tmp_path):
    model = dpt.DistilBertModel.from_pretrained(reference["base"]["dirs"]["pt"])
    model.save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        dpt.DistilBertModel.from_pretrained(tmp_path)


def test_checkpoint_missing_a_tensor_is_refused(config, reference, tmp_path):
    state = dict(reference["base"]["state"])
    del state["transformer.layer.0.attention.k_lin.bias"]
    with pytest.raises(WeightMismatchError, match="k_lin.bias"):
        save_state(tmp_path, state, config, "base")
    full = dict(reference["base"]["state"])
    full["transformer.layer.0.attention.k_lin.bias"] = np.zeros(3, np.float32)  # wrong shape on disk
    from distilbert.common import files

    files.write_safetensors(tmp_path / "model.safetensors", full)
    config.save_pretrained(tmp_path)
    with pytest.raises(WeightMismatchError, match=r"k_lin.bias: file has \(3,\)"):
        dpt.DistilBertModel.from_pretrained(tmp_path)


def test_save_refuses_pickle_and_files(reference, tmp_path):
    model = dpt.DistilBertModel.from_pretrained(reference["base"]["dirs"]["pt"])
    with pytest.raises(ValueError, match="pickle"):
        model.save_pretrained(tmp_path, safe_serialization=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        model.save_pretrained(tmp_path / "file")
    with pytest.raises(ValueError, match="max_shard_size"):
        model.save_pretrained(tmp_path / "d", max_shard_size="big")


def test_config_replace_with_new_labels():
    """Regression test for a fix in common/config.py: new labels imply their count and inverse."""
    config = tiny_config()
    assert config.replace(id2label={0: "a", 1: "b", 2: "c"}).num_labels == 3
    assert config.replace(id2label={0: "a", 1: "b", 2: "c"}).label2id == {"a": 0, "b": 1, "c": 2}
    assert config.replace(label2id={"x": 0, "y": 1, "z": 2}).id2label == {0: "x", 1: "y", 2: "z"}
    assert config.replace(num_labels=4).id2label[3] == "LABEL_3"
