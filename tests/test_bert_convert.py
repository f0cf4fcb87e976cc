"""``distilbert convert`` of BERT checkpoints: every target framework, ``--layers``, the dropped-parts line,
refusals that write nothing; ``--layers`` on a DistilBERT source."""

import copy
import json
import os

import numpy as np
import pytest
from helpers import assert_close, random_state, tiny_config
from test_bert import TINY_BERT, _inputs, _random_bert, _reference, _save_all

from distilbert import frameworks
from distilbert.cli import main
from distilbert.common.checkpoint import save_state
from distilbert.conversion import convert


@pytest.fixture(scope="module")
def pretraining(tmp_path_factory):
    """A tiny BertForPreTraining as the reference saves it (safetensors and tf_model.h5), with a BERT tokenizer."""
    import transformers

    model = _random_bert("BertForPreTraining", seed=11)
    dirs = _save_all(model, "BertForPreTraining", str(tmp_path_factory.mktemp("bert")), saves=("safetensors", "tf"))
    vocab = os.path.join(dirs["safetensors"], "vocab.txt")
    with open(vocab, "w", encoding="utf-8") as fh:
        fh.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(94)]) + "\n")
    transformers.BertTokenizerFast(vocab_file=vocab).save_pretrained(dirs["safetensors"])
    return model, dirs


def _teacher_with(model, layers):
    import torch

    teacher = copy.deepcopy(model)
    teacher.bert.encoder.layer = torch.nn.ModuleList([model.bert.encoder.layer[i] for i in layers])
    return teacher


def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("framework", ["pt", "tf", "flax"])
def test_cli_converts_a_bert_with_layers_and_reports_what_it_drops(pretraining, tmp_path, capsys, framework):
    model, dirs = pretraining
    dst = tmp_path / "student"
    code, out, err = _run(["convert", dirs["safetensors"], dst, "--to", framework, "--layers", "3,0", "-q"], capsys)
    assert code == 0 and out == ""
    assert err.splitlines()[-1] == (
        "distilbert convert: dropped the pooler (2 tensors) and the next-sentence head "
        "(2 tensors) (no DistilBERT equivalent)"
    )
    config = json.loads((dst / "config.json").read_text())
    assert config["model_type"] == "distilbert" and config["n_layers"] == 2
    with open(dst / "tokenizer_config.json", encoding="utf-8") as fh:
        assert json.load(fh)["model_input_names"] == ["input_ids", "attention_mask"]  # no token types any more
    student = frameworks.from_pretrained(framework, "masked_lm", dst)
    inputs = _inputs(seed=7)
    assert_close(
        frameworks.run(framework, student, inputs)["logits"],
        _reference(_teacher_with(model, [3, 0]), inputs, "prediction_logits"),
        name=f"{framework} student",
    )


def test_library_convert_from_tf_h5_to_keras(pretraining, tmp_path):
    model, dirs = pretraining
    result = convert(dirs["tf"], tmp_path / "keras", to="keras", layers=[1, 2])
    assert result.source_format == "tf" and result.task == "masked_lm"
    assert result.dropped == "the pooler (2 tensors) and the next-sentence head (2 tensors)"
    from distilbert.conversion import keras_path, load_keras_model

    student = load_keras_model(str(tmp_path / "keras"), keras_path(tmp_path / "keras"))[0]
    inputs = _inputs(seed=8)
    assert_close(
        frameworks.run("tf", student, inputs)["logits"],
        _reference(_teacher_with(model, [1, 2]), inputs, "prediction_logits"),
        name="keras student",
    )


@pytest.mark.parametrize(
    "layers, message",
    [
        ("0,0", "more than once"),
        ("7", "layer 7 does not exist"),
        ("", "empty"),
        ("1,x", "comma-separated"),
    ],
)
def test_bad_layers_exit_2_and_write_nothing(pretraining, tmp_path, capsys, layers, message):
    src = pretraining[1]["safetensors"]
    code, out, err = _run(["convert", src, tmp_path / "out", "--to", "flax", "--layers", layers], capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert os.listdir(tmp_path) == []  # no destination, no work directory


def test_a_bert_distilbert_cannot_hold_exits_2_and_writes_nothing(pretraining, tmp_path, capsys):
    import shutil

    src = shutil.copytree(pretraining[1]["safetensors"], tmp_path / "src")
    (src / "config.json").write_text(json.dumps({**TINY_BERT, "layer_norm_eps": 1e-6}))
    code, _, err = _run(["convert", src, tmp_path / "out", "--to", "pt"], capsys)
    assert code == 2 and "layer_norm_eps" in err
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_verify_is_refused_for_a_bert_source(pretraining, tmp_path, capsys):
    code, _, err = _run(["convert", pretraining[1]["safetensors"], tmp_path / "out", "--to", "pt", "--verify"], capsys)
    assert code == 2 and "--verify" in err and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- DistilBERT sources
def test_layers_of_a_distilbert_source(tmp_path):
    config = tiny_config(n_layers=3)
    state = random_state(config, "sequence_classification", seed=5)
    save_state(tmp_path / "src", state, config, "sequence_classification")
    result = convert(tmp_path / "src", tmp_path / "dst", to="flax", layers="2,0")
    assert result.dropped == "" and result.task == "sequence_classification"
    student = frameworks.from_pretrained("flax", "sequence_classification", tmp_path / "dst")
    assert student.config.n_layers == 2
    got = frameworks.canonical_state("flax", student)
    for name, array in got.items():
        # student layer 0 is source layer 2, student layer 1 source layer 0
        source = name.replace("layer.0.", "layer.2.") if "layer.0." in name else name.replace("layer.1.", "layer.0.")
        np.testing.assert_array_equal(array, state[source], err_msg=name)
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        convert(tmp_path / "src", tmp_path / "bad", to="pt", layers=[3])
    assert not (tmp_path / "bad").exists()
