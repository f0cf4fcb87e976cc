"""DistilBertConfig: reference defaults, aliases, real config.json round trips, validation."""

import dataclasses
import json

import pytest
from helpers import hf_config

from distilbert import DistilBertConfig

# The config.json of distilbert-base-uncased-finetuned-sst-2-english as published on the hub.
SST2_CONFIG = {
    "activation": "gelu",
    "architectures": ["DistilBertForSequenceClassification"],
    "attention_dropout": 0.1,
    "dim": 768,
    "dropout": 0.1,
    "finetuning_task": "sst-2",
    "hidden_dim": 3072,
    "id2label": {"0": "NEGATIVE", "1": "POSITIVE"},
    "initializer_range": 0.02,
    "label2id": {"NEGATIVE": 0, "POSITIVE": 1},
    "max_position_embeddings": 512,
    "model_type": "distilbert",
    "n_heads": 12,
    "n_layers": 6,
    "output_past": True,
    "pad_token_id": 0,
    "qa_dropout": 0.1,
    "seq_classif_dropout": 0.2,
    "sinusoidal_pos_embds": False,
    "tie_weights_": True,
    "vocab_size": 30522,
}

FIELDS = [
    "vocab_size",
    "max_position_embeddings",
    "sinusoidal_pos_embds",
    "n_layers",
    "n_heads",
    "dim",
    "hidden_dim",
    "dropout",
    "attention_dropout",
    "activation",
    "initializer_range",
    "qa_dropout",
    "seq_classif_dropout",
    "pad_token_id",
    "tie_word_embeddings",
    "num_labels",
    "id2label",
    "label2id",
    "problem_type",
]


def test_defaults_equal_the_reference():
    import transformers

    ours, ref = DistilBertConfig(), transformers.DistilBertConfig()
    for name in FIELDS:
        assert getattr(ours, name) == getattr(ref, name), name
    assert ours.head_dim == 64


def test_aliases_are_read_and_exposed():
    config = DistilBertConfig.from_dict({"hidden_size": 64, "num_attention_heads": 8, "num_hidden_layers": 3})
    assert (config.dim, config.n_heads, config.n_layers) == (64, 8, 3)
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (64, 8, 3)
    with pytest.raises(ValueError, match="hidden_size=64 but dim=32"):
        DistilBertConfig.from_dict({"hidden_size": 64, "dim": 32})


def test_real_config_round_trips_with_unknown_fields_kept(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(SST2_CONFIG))
    config = DistilBertConfig.from_json_file(path)
    assert config.id2label == {0: "NEGATIVE", 1: "POSITIVE"} and config.num_labels == 2
    assert config.extra["finetuning_task"] == "sst-2" and config.architectures[0].endswith("Classification")
    config.save_pretrained(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    for key, value in SST2_CONFIG.items():
        assert written[key] == value, key
    assert DistilBertConfig.from_pretrained(tmp_path / "out") == config


def test_written_config_is_read_back_equal_by_the_reference(tmp_path):
    import transformers

    config = DistilBertConfig(
        dim=48,
        n_heads=6,
        n_layers=3,
        activation="relu",
        sinusoidal_pos_embds=True,
        id2label={0: "neg", 1: "neu", 2: "pos"},
        problem_type="single_label_classification",
        tie_word_embeddings=False,
    )
    config.save_pretrained(tmp_path)
    ref = transformers.DistilBertConfig.from_pretrained(tmp_path)
    for name in FIELDS:
        assert getattr(ref, name) == getattr(config, name), name
    # and the reference's own file reads back equal here
    hf_config(config).save_pretrained(tmp_path / "ref")
    assert DistilBertConfig.from_pretrained(tmp_path / "ref") == config


def test_overrides_and_replace():
    config = DistilBertConfig(id2label={0: "a", 1: "b"})
    bigger = config.replace(num_labels=5)
    assert bigger.num_labels == 5 and len(bigger.id2label) == 5 and bigger.id2label[4] == "LABEL_4"
    assert config.num_labels == 2  # frozen: replace makes a copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dim = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(dim=30, n_heads=4), "dim"),
        (dict(activation="swish"), "activation"),
        (dict(n_layers=0), "n_layers"),
        (dict(vocab_size=-1), "vocab_size"),
        (dict(hidden_dim=2.5), "hidden_dim"),
        (dict(dropout=1.0), "dropout"),
        (dict(attention_dropout=-0.1), "attention_dropout"),
        (dict(problem_type="ranking"), "problem_type"),
        (dict(num_labels=3, id2label={0: "a", 1: "b"}), "id2label"),
        (dict(pad_token_id=40000), "pad_token_id"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DistilBertConfig(**kwargs)


def test_other_model_types_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
    with pytest.raises(ValueError, match="model_type is 'bert'"):
        DistilBertConfig.from_pretrained(tmp_path)


def test_missing_and_broken_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        DistilBertConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        DistilBertConfig.from_pretrained(tmp_path)


def test_import_loads_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, distilbert, distilbert.common.checkpoint, distilbert.common.names;"
        "bad=[m for m in ('torch','tensorflow','jax','flax','keras') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
