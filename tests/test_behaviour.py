"""One behaviour for every input, in every backend: the rules of :mod:`distilbert.common.validation`.

Each rule is tested once, parametrised over PyTorch, TensorFlow and JAX/Flax: the same input gets the
same result, or the same exception type with the same message. The last section covers what only
traced code has (TF graph mode and XLA, Flax ``jit``), where values cannot be checked on the host.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_close, random_inputs, random_state, tiny_config

from distilbert.common import checkpoint
from distilbert.common.names import TASKS, WeightMismatchError
from distilbert.frameworks import FRAMEWORKS, build, load_canonical_state, model_class, run

CHOICES = 2
HEADS = [t for t in TASKS if t != "base"]


@pytest.fixture(scope="module")
def config():
    return tiny_config()


@pytest.fixture(scope="module")
def models(config):
    """Built models, one per (framework, task), built on first use."""
    cache = {}

    def get(framework, task):
        if (framework, task) not in cache:
            cache[framework, task] = build(framework, task, config, random_state(config, task, seed=3))
        return cache[framework, task]

    return get


def inputs_for(config, task, batch=3, seq=7):
    return random_inputs(config, batch, seq, choices=CHOICES if task == "multiple_choice" else None)


def raises_same(fn, error, match):
    """``fn()`` raises ``error`` whose message contains the validator's message ``match`` (a regex)."""
    with pytest.raises(error, match=match) as info:
        fn()
    return str(info.value)


# --------------------------------------------------------------------------------- token_type_ids
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_token_type_ids_zero_accepted_nonzero_refused(framework, task, models, config):
    model, inputs = models(framework, task), inputs_for(config, task)
    plain = run(framework, model, inputs)
    zeros = run(framework, model, {**inputs, "token_type_ids": np.zeros_like(inputs["input_ids"])})
    for name in plain:
        assert_close(
            zeros[name] if not isinstance(zeros[name], tuple) else zeros[name][0],
            plain[name] if not isinstance(plain[name], tuple) else plain[name][0],
            atol=1e-6,
            name=name,
        )
    ones = np.zeros_like(inputs["input_ids"])
    ones[0, ..., 1] = 1
    with pytest.raises(ValueError, match="non-zero values, but DistilBERT has no segment embeddings"):
        run(framework, model, {**inputs, "token_type_ids": ones})


# ----------------------------------------------------------------------------------- bad inputs
def _bad_cases(config):
    ids = np.ones((2, 5), np.int64)
    out_of_vocab = ids.copy()
    out_of_vocab[1, 2] = 99
    negative = ids.copy()
    negative[0, 0] = -1
    embeds = np.zeros((2, 5, config.dim), np.float32)
    return {
        "id_too_large": (
            {"input_ids": out_of_vocab},
            ValueError,
            r"input_ids must be in \[0, vocab_size=99\) .*got values in \[1, 99\]",
        ),
        "id_negative": ({"input_ids": negative}, ValueError, r"input_ids must be in \[0, vocab_size=99\)"),
        "too_long": (
            {"input_ids": np.ones((1, 65), np.int64)},
            ValueError,
            "sequence length 65 exceeds max_position_embeddings=64",
        ),
        "empty": ({"input_ids": np.ones((1, 0), np.int64)}, ValueError, "empty sequence axis"),
        "both": (
            {"input_ids": ids, "inputs_embeds": embeds},
            ValueError,
            "either input_ids or inputs_embeds, not both",
        ),
        "neither": ({"attention_mask": ids}, ValueError, "pass input_ids or inputs_embeds"),
        "rank_1": ({"input_ids": np.ones((5,), np.int64)}, ValueError, r"shape \(batch, seq_len\), got \(5,\)"),
        "rank_3": ({"input_ids": np.ones((1, 2, 5), np.int64)}, ValueError, r"shape \(batch, seq_len\)"),
        "float_ids": ({"input_ids": ids.astype(np.float32)}, TypeError, "input_ids must be integer token ids"),
        "int_embeds": ({"inputs_embeds": embeds.astype(np.int32)}, TypeError, "inputs_embeds must be floating point"),
        "embeds_dim": ({"inputs_embeds": np.zeros((2, 5, 31), np.float32)}, ValueError, "last axis must be dim=32"),
        "mask_shape": (
            {"input_ids": ids, "attention_mask": np.ones((2, 4), np.int64)},
            ValueError,
            r"attention_mask must have the shape of input_ids \(2, 5\), got \(2, 4\)",
        ),
        "types_shape": (
            {"input_ids": ids, "token_type_ids": np.zeros((2, 4), np.int64)},
            ValueError,
            "token_type_ids must have the shape of input_ids",
        ),
        "position_too_large": (
            {"input_ids": ids, "position_ids": np.arange(5)[None] + 60},
            ValueError,
            r"position_ids must be in \[0, max_position_embeddings=64\); got values in \[60, 64\]",
        ),
        "position_negative": (
            {"input_ids": ids, "position_ids": np.arange(5)[None] - 1},
            ValueError,
            r"position_ids must be in \[0, max_position_embeddings=64\)",
        ),
        "position_float": (
            {"input_ids": ids, "position_ids": np.arange(5, dtype=np.float32)},
            TypeError,
            "position_ids must be integer positions",
        ),
        "position_short": (
            {"input_ids": ids, "position_ids": np.arange(4)},
            ValueError,
            r"position_ids must broadcast to the input's shape \(2, 5\)",
        ),
        "position_batch": (
            {"input_ids": ids, "position_ids": np.zeros((3, 5), np.int64)},
            ValueError,
            "position_ids must broadcast",
        ),
        "head_mask_short": (
            {"input_ids": ids, "head_mask": np.ones((3,), np.float32)},
            ValueError,
            r"head_mask must have shape \(n_heads,\)=\(4,\) or \(n_layers, n_heads\)=\(2, 4\), "
            r"got \(3,\)",
        ),
        "head_mask_layers": (
            {"input_ids": ids, "head_mask": np.ones((3, 4), np.float32)},
            ValueError,
            "head_mask must have shape",
        ),
    }


BAD = list(_bad_cases(tiny_config()))


@pytest.mark.parametrize("case", BAD)
def test_bad_input_same_exception_and_message(case, models, config):
    """Every backend raises the same type with the validator's message (Keras adds its call context)."""
    kwargs, error, match = _bad_cases(config)[case]
    messages = {fw: raises_same(lambda fw=fw: run(fw, models(fw, "base"), kwargs), error, match) for fw in FRAMEWORKS}
    assert messages["pt"] == messages["flax"]
    assert messages["pt"] in messages["tf"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_limits_are_inclusive(framework, models, config):
    """A sequence of exactly max_position_embeddings tokens, the last id and the last position are fine."""
    ids = np.full((1, config.max_position_embeddings), config.vocab_size - 1, np.int64)
    positions = np.arange(config.max_position_embeddings)[None]
    out = run(framework, models(framework, "base"), {"input_ids": ids, "position_ids": positions})
    assert np.isfinite(out["last_hidden_state"]).all()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_multiple_choice_wants_three_axes(framework, models, config):
    model = models(framework, "multiple_choice")
    with pytest.raises(ValueError, match=r"input_ids must have shape \(batch, num_choices, seq_len\), got \(2, 5\)"):
        run(framework, model, {"input_ids": np.ones((2, 5), np.int64)})
    bad = np.ones((2, CHOICES, 5), np.int64)
    bad[1, 1, 1] = 500
    with pytest.raises(ValueError, match=r"vocab_size=99\).*got values in \[1, 500\]"):
        run(framework, model, {"input_ids": bad})


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_labels_for_the_wrong_head(framework, models, config):
    inputs, labels = inputs_for(config, "base"), np.zeros((3,), np.int64)
    qa = {"start_positions": labels, "end_positions": labels}
    for task, extra in (
        ("base", {"labels": labels}),
        ("question_answering", {"labels": labels}),
        ("sequence_classification", qa),
    ):
        with pytest.raises(TypeError):
            run(framework, models(framework, task), {**inputs, **extra})


# ----------------------------------------------------------------------------------- accepted shapes
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_position_ids_shapes(framework, models, config):
    """position_ids broadcast to the input along the whole sequence axis: the same set in every backend."""
    T = 7
    for task, forms in (
        ("base", [(T,), (1, T), (3, T)]),
        ("multiple_choice", [(T,), (1, T), (CHOICES, T), (1, 1, T), (3, 1, T), (1, CHOICES, T), (3, CHOICES, T)]),
    ):
        model, inputs = models(framework, task), inputs_for(config, task)
        key = "last_hidden_state" if task == "base" else "logits"
        default = run(framework, model, inputs)[key]
        for shape in forms:
            positions = np.broadcast_to(np.arange(T), shape).astype(np.int64)
            assert_close(
                run(framework, model, {**inputs, "position_ids": positions})[key],
                default,
                atol=1e-6,
                name=f"{task} {shape}",
            )
        shifted = run(framework, model, {**inputs, "position_ids": np.arange(T)[None] + 2})[key]
        assert not np.allclose(shifted, default, atol=1e-4)
        for shape in ((T - 1,), (2, T), (3, T, 1)) if task == "base" else ((3, T), (2, CHOICES, T)):
            with pytest.raises(ValueError, match="position_ids must broadcast"):
                run(framework, model, {**inputs, "position_ids": np.zeros(shape, np.int64)})


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_head_mask_shapes(framework, models, config):
    model, inputs = models(framework, "base"), inputs_for(config, "base")
    per_head = np.array([1, 0, 1, 1], np.float32)
    a = run(framework, model, {**inputs, "head_mask": per_head})["last_hidden_state"]
    b = run(framework, model, {**inputs, "head_mask": np.stack([per_head] * config.n_layers)})["last_hidden_state"]
    assert_close(a, b, atol=1e-6)
    assert not np.allclose(a, run(framework, model, inputs)["last_hidden_state"], atol=1e-4)
    for shape in ((config.n_heads + 1,), (config.n_layers, config.n_heads, 1), (1, config.n_heads)):
        with pytest.raises(ValueError, match="head_mask must have shape"):
            run(framework, model, {**inputs, "head_mask": np.ones(shape, np.float32)})


# ------------------------------------------------------------------------------------- the heads
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_question_answering_needs_two_labels(framework):
    with pytest.raises(ValueError, match="it needs num_labels=2, got num_labels=3"):
        model_class(framework, "question_answering")(tiny_config(num_labels=3))


@pytest.mark.parametrize(
    "num_labels,dtype,expected",
    [
        (1, np.float32, "regression"),
        (3, np.int64, "single_label_classification"),
        (3, np.int32, "single_label_classification"),
        (3, np.float32, "multi_label_classification"),
    ],
)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_problem_type_is_inferred_and_recorded(framework, num_labels, dtype, expected):
    """Unset, it is inferred as the reference does and recorded on the model's config and its encoder's."""
    config = tiny_config(num_labels=num_labels)
    model = build(framework, "sequence_classification", config, random_state(config, "sequence_classification"))
    inputs = inputs_for(config, "sequence_classification")
    rng = np.random.default_rng(0)
    if expected == "single_label_classification":
        labels = rng.integers(0, num_labels, (3,)).astype(dtype)
    else:
        labels = rng.integers(0, 2, (3,) if num_labels == 1 else (3, num_labels)).astype(dtype)
    assert model.config.problem_type is None
    loss = run(framework, model, {**inputs, "labels": labels})["loss"]
    assert np.isfinite(loss)
    assert model.config.problem_type == expected
    assert model.distilbert.config.problem_type == expected


LABEL_CASES = {
    # task, labels (given the input shape (3, 7) or (3, 2, 7)), config overrides, error, message
    "single_label_float": (
        "sequence_classification",
        {"labels": np.zeros((3,), np.float32)},
        {"problem_type": "single_label_classification"},
        TypeError,
        "labels must be integer class",
    ),
    "single_label_shape": (
        "sequence_classification",
        {"labels": np.zeros((4,), np.int64)},
        {},
        ValueError,
        r"labels must have shape \(3,\) or \(3, 1\), got \(4,\)",
    ),
    "single_label_range": (
        "sequence_classification",
        {"labels": np.array([0, 2, 1])},
        {},
        ValueError,
        r"class ids in \[0, 2\) or -100 \(ignored\); got values in \[0, 2\]",
    ),
    "multi_label_shape": (
        "sequence_classification",
        {"labels": np.zeros((3,), np.float32)},
        {},
        ValueError,
        r"labels must have shape \(3, 2\)",
    ),
    "regression_shape": (
        "sequence_classification",
        {"labels": np.zeros((3,), np.float32)},
        {"problem_type": "regression"},
        ValueError,
        r"labels must have shape \(3, 2\)",
    ),
    "token_float": (
        "token_classification",
        {"labels": np.zeros((3, 7), np.float32)},
        {},
        TypeError,
        "labels must be integer token labels",
    ),
    "token_shape": (
        "token_classification",
        {"labels": np.zeros((3, 8), np.int64)},
        {},
        ValueError,
        r"labels must have shape \(3, 7\), got \(3, 8\)",
    ),
    "mlm_range": ("masked_lm", {"labels": np.full((3, 7), 99)}, {}, ValueError, r"in \[0, 99\) or -100"),
    "choice_float": (
        "multiple_choice",
        {"labels": np.zeros((3,), np.float32)},
        {},
        TypeError,
        "labels must be integer choice indices",
    ),
    "choice_range": ("multiple_choice", {"labels": np.array([0, 1, 2])}, {}, ValueError, r"in \[0, 2\)"),
    "qa_float": (
        "question_answering",
        {"start_positions": np.zeros(3, np.float32), "end_positions": np.zeros(3, int)},
        {},
        TypeError,
        "start_positions must be integer token positions",
    ),
    "qa_shape": (
        "question_answering",
        {"start_positions": np.zeros((3, 2), int), "end_positions": np.zeros(3, int)},
        {},
        ValueError,
        r"start_positions must have shape \(3,\) or \(3, 1\)",
    ),
    "qa_one": (
        "question_answering",
        {"start_positions": np.zeros(3, int)},
        {},
        ValueError,
        "pass both start_positions and end_positions",
    ),
}


@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_bad_labels_same_exception_and_message(case, models, config):
    task, labels, overrides, error, match = LABEL_CASES[case]
    messages = {}
    for fw in FRAMEWORKS:
        model = models(fw, task) if not overrides else build(fw, task, tiny_config(**overrides))
        messages[fw] = raises_same(lambda: run(fw, model, {**inputs_for(config, task), **labels}), error, match)
    assert messages["pt"] == messages["flax"] and messages["pt"] in messages["tf"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_ignored_labels_and_clamped_positions_are_accepted(framework, models, config):
    inputs = inputs_for(config, "token_classification")
    labels = np.where(inputs["attention_mask"] == 1, 1, -100)
    assert np.isfinite(run(framework, models(framework, "token_classification"), {**inputs, "labels": labels})["loss"])
    far = {"start_positions": np.array([0, 50, -3]), "end_positions": np.array([[1], [2], [100]])}
    assert np.isfinite(run(framework, models(framework, "question_answering"), {**inputs, **far})["loss"])


# ------------------------------------------------------------------------------ config and loading
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_config_argument_forms(framework, config):
    import transformers

    cls = model_class(framework, "sequence_classification")
    for form in (config, config.to_dict(), transformers.DistilBertConfig.from_dict(config.to_dict())):
        assert cls(form).config == config
    for bad in (None, "distilbert-base-uncased", 3):
        with pytest.raises(
            TypeError, match="config must be a distilbert.DistilBertConfig, its dict or a transformers DistilBertConfig"
        ):
            cls(bad)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_load_canonical_state_names_every_problem(framework, models, config):
    state = dict(random_state(config, "question_answering"))
    del state["qa_outputs.bias"]
    state["qa_outputs.extra"] = np.zeros(2, np.float32)
    state["distilbert.transformer.layer.1.ffn.lin1.weight"] = np.zeros((5, 32), np.float32)
    with pytest.raises(WeightMismatchError) as info:
        load_canonical_state(framework, models(framework, "question_answering"), state)
    message = str(info.value)
    for expected in (
        "missing (1): qa_outputs.bias",
        "unexpected (1): qa_outputs.extra",
        "shape of distilbert.transformer.layer.1.ffn.lin1.weight: file has (5, 32), model expects (37, 32)",
    ):
        assert expected in message


@pytest.fixture(scope="module")
def broken_checkpoint(tmp_path_factory, config):
    """A safetensors checkpoint with one missing, one unexpected and one mis-shaped tensor."""
    from distilbert.common import files
    from distilbert.common.names import to_native, weight_table

    path = tmp_path_factory.mktemp("broken")
    native = to_native(random_state(config, "base"), "pt", weight_table(config, "base"))
    del native["transformer.layer.0.attention.q_lin.bias"]
    native["transformer.layer.0.attention.extra"] = np.zeros(3, np.float32)
    native["transformer.layer.1.ffn.lin2.weight"] = np.zeros((32, 5), np.float32)
    files.write_safetensors(path / files.SAFETENSORS, native)
    config.to_json_file(path / "config.json")
    return path


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_from_pretrained_names_every_problem(framework, broken_checkpoint):
    with pytest.raises(WeightMismatchError) as info:
        model_class(framework, "base").from_pretrained(broken_checkpoint)
    message = str(info.value)
    for name in (
        "transformer.layer.0.attention.q_lin.bias",
        "transformer.layer.0.attention.extra",
        "transformer.layer.1.ffn.lin2.weight",
    ):
        assert name in message


@pytest.fixture(scope="module")
def three_formats(tmp_path_factory, config):
    """One directory holding model.safetensors, tf_model.h5 and flax_model.msgpack (different weights each)."""
    path = tmp_path_factory.mktemp("three")
    for seed, fmt in enumerate(("safetensors", "tf", "flax")):
        checkpoint.save_state(path, random_state(config, "base", seed=seed), config, "base", weight_format=fmt)
    return path


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_from_flags_pick_that_frameworks_file_and_stay_out_of_config(framework, three_formats, tmp_path):
    cls = model_class(framework, "base")
    for flags, fmt in (
        ({}, "safetensors"),
        ({"from_pt": True}, "safetensors"),
        ({"from_tf": True}, "tf"),
        ({"from_flax": True}, "flax"),
    ):
        model, report = cls.from_pretrained(three_formats, output_loading_info=True, **flags)
        assert report.format == fmt, flags
        model.save_pretrained(tmp_path / fmt)
        written = json.loads((tmp_path / fmt / "config.json").read_text())
        assert not {"from_pt", "from_tf", "from_flax"} & set(written)
        assert not {"from_pt", "from_tf", "from_flax"} & set(model.config.to_dict())
    with pytest.raises(ValueError, match="at most one of from_pt, from_tf and from_flax"):
        cls.from_pretrained(three_formats, from_pt=True, from_tf=True)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_same_loading_signatures(framework):
    cls = model_class(framework, "sequence_classification")
    load = list(inspect.signature(cls.from_pretrained).parameters)
    save = list(inspect.signature(cls.save_pretrained).parameters)
    assert load[0] == "pretrained_model_name_or_path"
    assert save[1] == "save_directory"  # after self
    for name in (
        "config",
        "weight_format",
        "ignore_mismatched_sizes",
        "output_loading_info",
        "from_pt",
        "from_tf",
        "from_flax",
    ):
        assert name in load, name
    for name in ("weight_format", "max_shard_size", "safe_serialization"):
        assert name in save, name


# ----------------------------------------------------------------------------------- the package
def test_pipeline_imports_lazily_without_a_framework():
    code = (
        "import sys, distilbert\n"
        "frameworks = ('torch', 'tensorflow', 'jax', 'keras', 'flax')\n"
        "assert not [m for m in frameworks if m in sys.modules], 'import distilbert imported a framework'\n"
        "from distilbert import pipeline\n"
        "from distilbert.pipelines import pipeline as real\n"
        "assert pipeline is real\n"
        "assert not [m for m in frameworks if m in sys.modules], 'importing pipeline imported a framework'\n"
        "assert 'pipeline' in distilbert.__all__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------ traced code
def test_tf_graph_mode_asserts_and_xla_poisons(models):
    """In graph mode the values are asserted with the validator's messages; XLA drops assertions and
    clamps gathers, so the model poisons the sequence (NaN) instead."""
    import tensorflow as tf

    from distilbert.common.validation import TOKEN_TYPES_MESSAGE

    model = models("tf", "base")
    good, bad = tf.constant([[1, 2, 3]], tf.int64), tf.constant([[1, 2, 120]], tf.int64)
    graph = tf.function(lambda ids: model(ids).last_hidden_state)
    xla = tf.function(lambda ids: model(ids).last_hidden_state, jit_compile=True)
    assert np.isfinite(graph(good).numpy()).all()
    # The assertion must run before the embedding gather (which would fail first, with a bare message):
    # repeated on a wide batch, a race between them shows up almost surely.
    for _ in range(10):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"input_ids must be in \[0, vocab_size=99\)"):
            graph(tf.tile(bad, (64, 1)))
    positions = tf.function(lambda ids, pos: model(ids, position_ids=pos).last_hidden_state)
    for _ in range(10):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"position_ids must be in \[0, max_position"):
            positions(tf.tile(good, (64, 1)), tf.constant([[0, 1, 70]] * 64, tf.int64))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"position_ids must be in"):
        positions(good, tf.constant([0, 1, 70], tf.int64))  # a (T,) row
    assert_close(xla(good), graph(good))
    assert np.isnan(xla(bad).numpy()).all()
    out = xla(tf.constant([[1, 2, 3], [4, 5, 300]], tf.int64)).numpy()
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    types = tf.function(lambda ids, t: model(ids, token_type_ids=t).last_hidden_state)
    with pytest.raises(tf.errors.InvalidArgumentError, match=TOKEN_TYPES_MESSAGE.split(",")[0]):
        types(good, tf.constant([[0, 1, 0]], tf.int64))
    for fn in (graph, xla):  # static problems are caught while tracing, with or without XLA
        with pytest.raises(ValueError, match="max_position_embeddings=64"):
            fn(tf.ones((1, 65), tf.int64))
        with pytest.raises(TypeError, match="input_ids must be integer token ids"):
            fn(tf.ones((1, 3), tf.float32))


def test_tf_bad_dict_keys(models):
    model = models("tf", "base")
    with pytest.raises(TypeError, match="unexpected input"):
        model({"input_ids": [[1, 2]], "segment_ids": [[0, 0]]})
    with pytest.raises(ValueError, match="both in the input dict"):
        model({"input_ids": [[1, 2]], "attention_mask": [[1, 1]]}, attention_mask=[[1, 1]])
    with pytest.raises(ValueError, match="rectangular"):
        model([[1, 2], [3]])


def test_flax_jit_checks_shapes_and_gives_nan_for_bad_ids(models, config):
    """Shapes are static (checked in jit); values on tracers are not: bad ids give NaN rows, not clamped ones."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    model, inputs = models("flax", "sequence_classification"), inputs_for(config, "sequence_classification")
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=64"):
        nnx.jit(lambda m, i: m(i).logits)(model, np.ones((2, 65), np.int32))
    fn = nnx.jit(lambda m, i, a: m(i, a).logits)
    good = np.asarray(fn(model, inputs["input_ids"], inputs["attention_mask"]))
    assert np.all(np.isfinite(good))
    for bad in (99, -1):
        ids = inputs["input_ids"].copy()
        ids[1, 3] = bad
        out = np.asarray(fn(model, ids, inputs["attention_mask"]))
        assert np.all(np.isnan(out[1])), bad  # the row with the bad id
        assert np.array_equal(out[[0, 2]], good[[0, 2]])  # other rows untouched
    # Constants closed over by a jitted function are concrete: still checked on the host.
    ids, mask = jnp.asarray(inputs["input_ids"]), jnp.asarray(inputs["attention_mask"])
    logits = jax.jit(lambda: model(ids, mask, token_type_ids=jnp.zeros_like(ids)).logits)()
    assert_close(logits, model(ids, mask).logits, atol=1e-6)
    bad = ids.at[0, 1].set(500)
    with pytest.raises(ValueError, match="vocab_size=99"):
        jax.jit(lambda: model(bad, mask).logits)()
