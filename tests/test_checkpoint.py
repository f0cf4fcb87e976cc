"""Checkpoint files: what the reference writes we read exactly; what we write the reference reads exactly."""

import json
import os
import pickle

import ml_dtypes
import numpy as np
import pytest
from helpers import oracle_class, random_state, tiny_config, write_oracle_dirs

from distilbert.common import files
from distilbert.common.checkpoint import available_formats, init_state, load_state, save_state
from distilbert.common.names import TASKS, WeightMismatchError, to_native, weight_table

CONFIG = tiny_config()


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """Per task: the canonical state and the reference's own save_pretrained directory per framework."""
    out = {}
    for i, task in enumerate(TASKS):
        state = random_state(CONFIG, task, seed=i)
        out[task] = state, write_oracle_dirs(str(tmp_path_factory.mktemp(task)), CONFIG, task, state)
    return out


def assert_states_equal(got, want):
    assert set(got) == set(want), set(got) ^ set(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("framework", ["pt", "tf", "flax"])
@pytest.mark.parametrize("task", TASKS)
def test_reads_reference_files_exactly(oracle, task, framework):
    state, dirs = oracle[task]
    got, report = load_state(dirs[framework], CONFIG, task)
    assert report.format == {"pt": "safetensors", "tf": "tf", "flax": "flax"}[framework]
    assert report.source_task == task and report.new == [] and report.dropped == []
    assert_states_equal(got, state)


@pytest.mark.parametrize("task", TASKS)
def test_reference_reads_our_files_exactly(oracle, task, tmp_path):
    from flax.traverse_util import flatten_dict

    state, _ = oracle[task]
    table = weight_table(CONFIG, task)
    for fmt, framework in [("safetensors", "pt"), ("tf", "tf"), ("flax", "flax")]:
        directory = tmp_path / fmt
        save_state(directory, state, CONFIG, task, framework=framework, weight_format=fmt)
        model = oracle_class(framework, task).from_pretrained(directory)
        if framework == "pt":
            ref = {k: v.numpy() for k, v in model.state_dict().items()}
            expected = to_native(state, "pt", table)
        elif framework == "tf":
            ref = {"/".join(w.name.split("/")[1:]): w.numpy() for w in model.weights}
            expected = to_native(state, "tf", table)
        else:
            ref = {k: np.asarray(v) for k, v in flatten_dict(model.params, sep="/").items()}
            expected = to_native(state, "flax", table)
        assert set(ref) == set(expected), (fmt, set(ref) ^ set(expected))
        for name in expected:
            np.testing.assert_array_equal(ref[name], expected[name], err_msg=f"{fmt}: {name}")
        config = json.loads((directory / "config.json").read_text())
        assert config["architectures"] == [oracle_class(framework, task).__name__]


def test_head_checkpoint_into_base_and_base_into_head(oracle):
    state, dirs = oracle["masked_lm"]
    base, report = load_state(dirs["flax"], CONFIG, "base")
    assert set(report.dropped) >= {"vocab_transform.weight", "vocab_projector.bias"}
    np.testing.assert_array_equal(
        base["embeddings.word_embeddings.weight"], state["distilbert.embeddings.word_embeddings.weight"]
    )
    base_state, base_dirs = oracle["base"]
    head, report = load_state(base_dirs["tf"], CONFIG, "question_answering")
    assert sorted(report.new) == ["qa_outputs.bias", "qa_outputs.weight"]
    np.testing.assert_array_equal(
        head["distilbert.transformer.layer.1.ffn.lin2.weight"], base_state["transformer.layer.1.ffn.lin2.weight"]
    )


def test_new_label_count_needs_ignore_mismatched_sizes(oracle):
    _, dirs = oracle["sequence_classification"]
    five = CONFIG.replace(num_labels=5)
    with pytest.raises(WeightMismatchError, match="classifier.weight"):
        load_state(dirs["pt"], five, "sequence_classification")
    state, report = load_state(dirs["pt"], five, "sequence_classification", ignore_mismatched_sizes=True)
    assert sorted(report.new) == ["classifier.bias", "classifier.weight"]
    assert "classifier.weight" not in state and "pre_classifier.weight" in state


def test_missing_tensor_is_named(tmp_path):
    state = random_state(CONFIG, "base")
    native = to_native(state, "pt", weight_table(CONFIG, "base"))
    del native["transformer.layer.1.sa_layer_norm.bias"]
    files.write_safetensors(tmp_path / files.SAFETENSORS, native)
    with pytest.raises(WeightMismatchError, match=r"transformer\.layer\.1\.sa_layer_norm\.bias"):
        load_state(tmp_path, CONFIG, "base")


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("fmt", ["safetensors", "tf", "flax"])
def test_half_precision_kept_as_stored(tmp_path, dtype, fmt):
    state = {k: v.astype(dtype) for k, v in random_state(CONFIG, "masked_lm").items()}
    framework = {"safetensors": "pt", "tf": "tf", "flax": "flax"}[fmt]
    save_state(tmp_path, state, CONFIG, "masked_lm", framework=framework, weight_format=fmt)
    got, _ = load_state(tmp_path, CONFIG, "masked_lm")
    assert_states_equal(got, state)


def test_sharded_safetensors_round_trip(tmp_path):
    state = random_state(CONFIG, "token_classification")
    save_state(tmp_path, state, CONFIG, "token_classification", max_shard_size=20_000)
    index = json.loads((tmp_path / files.SAFETENSORS_INDEX).read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert available_formats(str(tmp_path)) == ["safetensors-sharded"]
    got, _ = load_state(tmp_path, CONFIG, "token_classification")
    assert_states_equal(got, state)


@pytest.mark.parametrize("framework", ["tf", "flax"])
@pytest.mark.parametrize("task", ["masked_lm", "question_answering"])
def test_reads_reference_sharded_files_exactly(oracle, tmp_path, framework, task):
    """The reference's save_pretrained(max_shard_size=...) in TF and Flax: an index and several shards."""
    state, dirs = oracle[task]
    model = oracle_class(framework, task).from_pretrained(dirs["pt"], from_pt=True)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    index_path = tmp_path / (files.TF_H5_INDEX if framework == "tf" else files.FLAX_MSGPACK_INDEX)
    index = json.loads(index_path.read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert available_formats(str(tmp_path)) == [f"{framework}-sharded"]
    got, report = load_state(tmp_path, CONFIG, task)
    assert report.format == f"{framework}-sharded" and report.source_task == task and not report.new
    assert_states_equal(got, state)
    # A tensor the index lists but no shard holds is named; so is a shard gone missing.
    last_shard = sorted(set(index["weight_map"].values()))[-1]
    index["weight_map"]["distilbert/extra/kernel"] = last_shard
    index_path.write_text(json.dumps(index))
    with pytest.raises(files.CheckpointError, match="no shard holds.*extra"):
        load_state(tmp_path, CONFIG, task)
    os.remove(tmp_path / last_shard)
    with pytest.raises(files.CheckpointError, match=f"not found.*{last_shard}"):
        load_state(tmp_path, CONFIG, task)


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_reference_reads_our_sharded_files(oracle, tmp_path, framework):
    """save_state(max_shard_size=...) in TF and Flax formats: shards + index that the reference loads."""
    import torch

    task = "masked_lm"
    state, dirs = oracle[task]
    path = save_state(tmp_path, state, CONFIG, task, framework=framework, max_shard_size="20KB")
    index_name = files.TF_H5_INDEX if framework == "tf" else files.FLAX_MSGPACK_INDEX
    assert os.path.basename(path) == index_name
    assert len(set(json.loads((tmp_path / index_name).read_text())["weight_map"].values())) > 1
    got, report = load_state(tmp_path, CONFIG, task)
    assert report.format == f"{framework}-sharded"
    assert_states_equal(got, state)
    ids = np.array([[2, 5, 7, 9, 3]])
    theirs = oracle_class(framework, task).from_pretrained(str(tmp_path))
    pt = oracle_class("pt", task).from_pretrained(dirs["pt"]).eval()
    with torch.no_grad():
        want = pt(input_ids=torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(theirs(ids).logits), want, atol=1e-5)
    # Everything fits in one shard: the plain file, as the reference writes it.
    one = save_state(tmp_path / "one", state, CONFIG, task, framework=framework, max_shard_size="1GB")
    assert os.path.basename(one) == (files.TF_H5 if framework == "tf" else files.FLAX_MSGPACK)
    with pytest.raises(ValueError, match="max_shard_size"):
        save_state(tmp_path / "bad", state, CONFIG, task, framework=framework, max_shard_size="lots")


def test_shard_index_pointing_outside_is_refused(tmp_path):
    (tmp_path / files.SAFETENSORS_INDEX).write_text(json.dumps({"weight_map": {"a": "../evil.safetensors"}}))
    with pytest.raises(files.CheckpointError, match="outside its directory"):
        load_state(tmp_path, CONFIG, "base")


def test_pytorch_bin_read_with_weights_only(oracle, tmp_path):
    import torch

    state, _ = oracle["multiple_choice"]
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / files.PT_BIN)
    got, report = load_state(tmp_path, CONFIG, "multiple_choice")
    assert report.format == "pytorch"
    assert_states_equal(got, state)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_carrying_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / files.PT_BIN, "wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    with pytest.raises(files.CheckpointError, match="weights_only=True"):
        load_state(tmp_path, CONFIG, "base")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "framework,fname", [("pt", files.SAFETENSORS), ("tf", files.TF_H5), ("flax", files.FLAX_MSGPACK)]
)
def test_truncated_and_corrupted_files_give_clear_errors(oracle, tmp_path, framework, fname):
    _, dirs = oracle["base"]
    data = open(os.path.join(dirs[framework], fname), "rb").read()
    (tmp_path / "config.json").write_text(open(os.path.join(dirs[framework], "config.json")).read())
    for broken in (data[: len(data) // 2], b"\x00garbage" * 10):
        (tmp_path / fname).write_bytes(broken)
        with pytest.raises((files.CheckpointError, WeightMismatchError), match=fname.replace(".", r"\.")):
            load_state(tmp_path, CONFIG, "base")


def test_no_weights_and_unknown_format_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_state(tmp_path, CONFIG, "base")
    with pytest.raises(ValueError, match="unknown weight format 'onnx'"):
        load_state(tmp_path, CONFIG, "base", weight_format="onnx")
    with pytest.raises(FileNotFoundError, match="no directory"):
        load_state(str(tmp_path / "nope" / "deeper"), CONFIG, "base")


def test_bad_state_is_refused_before_anything_is_written(tmp_path):
    state = random_state(CONFIG, "base")
    state["embeddings.LayerNorm.weight"] = np.ones(5, np.float32)
    for fmt in ("safetensors", "flax", "tf"):
        with pytest.raises(WeightMismatchError, match=r"embeddings\.LayerNorm\.weight.*\(5,\)"):
            save_state(tmp_path, state, CONFIG, "base", weight_format=fmt)
    assert os.listdir(tmp_path) == []


def test_write_failing_mid_way_leaves_no_file(tmp_path, monkeypatch):
    import h5py

    calls = []

    def failing_create_dataset(self, name, **kwargs):
        calls.append(name)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(self, name, **kwargs)

    original = h5py.Group.create_dataset
    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create_dataset)
    with pytest.raises(OSError, match="disk full"):
        save_state(tmp_path, random_state(CONFIG, "base"), CONFIG, "base", weight_format="tf")
    assert os.listdir(tmp_path) == []


def test_hub_id_resolves_from_a_local_cache_in_hub_layout(oracle, tmp_path, monkeypatch):
    import shutil

    state, dirs = oracle["question_answering"]
    repo = tmp_path / "hub" / "models--acme--tiny-distilbert"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(dirs["pt"], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    got, _ = load_state("acme/tiny-distilbert", CONFIG, "question_answering")
    assert_states_equal(got, state)
    with pytest.raises(OSError, match="pass a local directory"):
        load_state("acme/not-cached", CONFIG, "base")


def test_init_state_follows_the_reference_scheme():
    config = tiny_config(pad_token_id=3)
    state = init_state(config, "masked_lm", seed=1)
    assert set(state) == {s.name for s in weight_table(config, "masked_lm")}
    words = state["distilbert.embeddings.word_embeddings.weight"]
    assert np.all(words[3] == 0) and abs(words.std() - 0.02) < 0.003
    assert np.all(state["distilbert.embeddings.LayerNorm.weight"] == 1)
    assert np.all(state["vocab_projector.bias"] == 0)
    assert state["vocab_projector.weight"] is words
