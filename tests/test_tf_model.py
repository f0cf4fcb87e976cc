"""TF/Keras 3 backend: parity with the reference (PyTorch and TF classes) and our PyTorch backend,
call conventions, bad input (eager, tf.function, XLA), mixed precision."""

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from helpers import assert_close, oracle_class, oracle_pt_model, random_inputs, random_state, tiny_config

from distilbert.common.checkpoint import save_state
from distilbert.common.names import TASKS, weight_table
from distilbert.tf import TFDistilBertForMaskedLM, TFDistilBertForSequenceClassification, TFDistilBertModel
from distilbert.tf.modeling import TF_CLASSES

CONFIG = tiny_config()
CHOICES = 3


def inputs_for(task, config=CONFIG, batch=3, seq=7, seed=0):
    return random_inputs(config, batch, seq, seed, choices=CHOICES if task == "multiple_choice" else None)


def labels_for(task, config, inputs, seed=1):
    """Labels of each head, with ignored (-100) and out-of-range QA positions in them."""
    rng = np.random.default_rng(seed)
    ids = inputs["input_ids"]
    if task in ("masked_lm", "token_classification"):
        n = config.vocab_size if task == "masked_lm" else config.num_labels
        labels = rng.integers(0, n, ids.shape).astype(np.int64)
        labels[inputs["attention_mask"] == 0] = -100
        labels[:, 0] = -100
        return {"labels": labels}
    if task == "sequence_classification":
        return {"labels": rng.integers(0, config.num_labels, ids.shape[0]).astype(np.int64)}
    if task == "multiple_choice":
        return {"labels": rng.integers(0, CHOICES, ids.shape[0]).astype(np.int64)}
    if task == "question_answering":
        seq = ids.shape[1]
        return {
            "start_positions": np.array([1, seq + 5, 0][: ids.shape[0]], np.int64),  # one out of range
            "end_positions": np.array([3, 2, -4][: ids.shape[0]], np.int64),
        }
    return {}


def ours(task, config, state, **kwargs):
    model = TF_CLASSES[task](config, **kwargs)
    model.load_canonical_state(state)
    return model


def torch_inputs(batch):
    return {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}


def compare(actual, expected, fields=None):
    fields = fields or [k for k in expected.keys() if expected[k] is not None]
    for key in fields:
        a, e = actual[key], expected[key]
        assert (a is None) == (e is None), key
        if isinstance(e, tuple):
            assert len(a) == len(e), key
            for i, (x, y) in enumerate(zip(a, e)):
                assert_close(
                    np.asarray(x), y.detach().numpy() if hasattr(y, "detach") else np.asarray(y), name=f"{key}[{i}]"
                )
        else:
            assert_close(np.asarray(a), e.detach().numpy() if hasattr(e, "detach") else np.asarray(e), name=key)
    return fields


# ----------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("task", TASKS)
def test_parity_with_reference_pytorch(task):
    state = random_state(CONFIG, task, seed=3)
    batch = inputs_for(task)
    labels = labels_for(task, CONFIG, batch)
    model, ref = ours(task, CONFIG, state), oracle_pt_model(CONFIG, task, state)
    got = model(dict(batch, **labels), output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        want = ref(**torch_inputs(batch), **torch_inputs(labels), output_hidden_states=True, output_attentions=True)
    fields = compare(got, want)
    assert "hidden_states" in fields and "attentions" in fields
    assert ("loss" in fields) == (task != "base")
    assert len(got.hidden_states) == CONFIG.n_layers + 1


@pytest.mark.parametrize("problem", ["regression", "single_label_classification", "multi_label_classification"])
def test_sequence_classification_problem_types(problem):
    num_labels = 1 if problem == "regression" else 3
    config = tiny_config(num_labels=num_labels)
    state = random_state(config, "sequence_classification", seed=4)
    batch = inputs_for("sequence_classification", config)
    rng = np.random.default_rng(0)
    if problem == "regression":
        labels = rng.standard_normal(3).astype(np.float32)
    elif problem == "single_label_classification":
        labels = np.array([2, -100, 0], np.int64)  # -100 is ignored, as in the reference
    else:
        labels = rng.integers(0, 2, (3, 3)).astype(np.float32)
    model = ours("sequence_classification", config, state)
    got = model(batch, labels=labels)
    ref = oracle_pt_model(config, "sequence_classification", state)
    with torch.no_grad():
        want = ref(**torch_inputs(batch), labels=torch.from_numpy(labels))
    compare(got, want, ["loss", "logits"])
    assert model.config.problem_type == ref.config.problem_type == problem


@pytest.mark.parametrize(
    "variant", [dict(sinusoidal_pos_embds=True), dict(tie_word_embeddings=False), dict(activation="relu")]
)
def test_config_variants_match_reference_pytorch(variant):
    config = tiny_config(**variant)
    state = random_state(config, "masked_lm", seed=5)
    batch = inputs_for("masked_lm", config)
    labels = labels_for("masked_lm", config, batch)
    model = ours("masked_lm", config, state)
    with torch.no_grad():
        want = oracle_pt_model(config, "masked_lm", state)(**torch_inputs(batch), **torch_inputs(labels))
    compare(model(batch, **labels), want, ["loss", "logits"])
    names = {v.path for v in model.weights}
    if config.sinusoidal_pos_embds:  # a constant, not a variable
        assert not any("position_embeddings" in n for n in names)
        assert len(model.weights) == len([s for s in weight_table(config, "masked_lm") if s.names["keras"]])


@pytest.fixture(scope="module")
def reference_tf_dir():
    """tf_model.h5 files written for each task, read by the reference TF classes."""
    root = tempfile.mkdtemp()
    return root


@pytest.mark.parametrize("task", TASKS)
def test_parity_with_reference_tf_classes(task, reference_tf_dir):
    """The reference TF classes (tf-keras) on the same tf_model.h5 give our outputs."""
    state = random_state(CONFIG, task, seed=6)
    directory = os.path.join(reference_tf_dir, task)
    save_state(directory, state, CONFIG, task, framework="tf", weight_format="tf")
    ref = oracle_class("tf", task).from_pretrained(directory)
    batch = inputs_for(task)
    got = ours(task, CONFIG, state)(batch, output_hidden_states=True, output_attentions=True)
    want = ref(batch, output_hidden_states=True, output_attentions=True, training=False)
    fields = compare(
        got, {k: v.numpy() if hasattr(v, "numpy") else tuple(t.numpy() for t in v) for k, v in want.items()}
    )
    assert "attentions" in fields and len(fields) >= 3
    # Keras 3 still works after transformers loaded tf-keras in this process.
    assert keras.__version__.startswith("3.") and keras.config.backend() == "tensorflow"


def test_parity_with_our_pytorch_backend():
    import distilbert.pt as pt

    classes = {
        "base": pt.DistilBertModel,
        "masked_lm": pt.DistilBertForMaskedLM,
        "sequence_classification": pt.DistilBertForSequenceClassification,
        "multiple_choice": pt.DistilBertForMultipleChoice,
        "token_classification": pt.DistilBertForTokenClassification,
        "question_answering": pt.DistilBertForQuestionAnswering,
    }
    for task in TASKS:
        state = random_state(CONFIG, task, seed=7)
        batch = inputs_for(task)
        labels = labels_for(task, CONFIG, batch)
        theirs = classes[task](CONFIG).eval()
        theirs.load_canonical_state(state)
        positions = np.tile(np.arange(6, -1, -1), (3, 1)).astype(np.int64)  # reversed positions
        if task == "multiple_choice":
            positions = np.repeat(positions[:, None], CHOICES, 1)
        with torch.no_grad():
            want = theirs(
                **torch_inputs(batch),
                **torch_inputs(labels),
                position_ids=torch.from_numpy(positions),
                output_hidden_states=True,
            )
        got = ours(task, CONFIG, state)(batch, **labels, position_ids=positions, output_hidden_states=True)
        compare(got, want)


def test_head_mask_matches_reference_pytorch():
    state = random_state(CONFIG, "base", seed=8)
    batch = inputs_for("base")
    model, ref = ours("base", CONFIG, state), oracle_pt_model(CONFIG, "base", state)
    for head_mask in (np.array([1.0, 0.0, 1.0, 0.5], np.float32), np.array([[1, 1, 0, 1], [0, 1, 1, 1]], np.float32)):
        got = model(batch, head_mask=head_mask, output_attentions=True)
        with torch.no_grad():
            want = ref(**torch_inputs(batch), head_mask=torch.from_numpy(head_mask), output_attentions=True)
        compare(got, want)
    with pytest.raises(ValueError, match="head_mask must have shape"):
        model(batch, head_mask=np.ones(3, np.float32))


# -------------------------------------------------------------------------------- call conventions
@pytest.fixture(scope="module")
def seq_model():
    state = random_state(CONFIG, "sequence_classification", seed=9)
    return ours("sequence_classification", CONFIG, state), state


def test_input_forms_agree(seq_model):
    model, _ = seq_model
    batch = inputs_for("sequence_classification")
    expected = model(batch).logits.numpy()
    forms = [
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]),
        model(tf.constant(batch["input_ids"], tf.int32), attention_mask=tf.constant(batch["attention_mask"])),
        model(batch["input_ids"].tolist(), attention_mask=batch["attention_mask"].tolist()),
        model({k: tf.constant(v) for k, v in batch.items()}),
        model(dict(batch, token_type_ids=np.zeros_like(batch["input_ids"]))),
        model(batch, position_ids=np.arange(7)[None]),
    ]
    for out in forms:
        assert_close(out.logits, expected)
    table = model.distilbert.embeddings.word_embeddings.embeddings.numpy()
    embeds = table[batch["input_ids"]]
    assert_close(model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits, expected)


def test_return_dict_false_gives_reference_tuple(seq_model):
    model, _ = seq_model
    batch = inputs_for("sequence_classification")
    out = model(batch, labels=np.array([0, 1, 1]), output_attentions=True)
    tup = model(batch, labels=np.array([0, 1, 1]), output_attentions=True, return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == 3  # loss, logits, attentions
    assert_close(tup[0], out.loss)
    assert_close(tup[1], out.logits)
    assert out[0] is out.loss and out["logits"] is out.logits
    assert isinstance(out, __import__("distilbert.common.outputs", fromlist=["x"]).SequenceClassifierOutput)


def test_fully_masked_row_is_finite_and_matches_reference():
    state = random_state(CONFIG, "base", seed=10)
    batch = inputs_for("base")
    batch["attention_mask"][1] = 0
    got = ours("base", CONFIG, state)(batch)
    assert np.isfinite(got.last_hidden_state.numpy()).all()
    with torch.no_grad():
        want = oracle_pt_model(CONFIG, "base", state)(**torch_inputs(batch))
    compare(got, want)


# ------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def base_model():
    return ours("base", CONFIG, random_state(CONFIG, "base", seed=11))


BAD_EAGER = [
    (dict(input_ids=[[1, 2, 200]]), "vocab_size=99"),
    (dict(input_ids=[[1, -2, 3]]), "vocab_size=99"),
    (dict(input_ids=np.ones((1, 65), np.int64)), "max_position_embeddings=64"),
    (dict(input_ids=[1, 2, 3]), r"\(batch, seq_len\)"),
    (dict(input_ids=np.ones((1, 2, 3), np.int64)), r"\(batch, seq_len\)"),
    (dict(input_ids=[[1, 2]], inputs_embeds=np.zeros((1, 2, 32), np.float32)), "not both"),
    (dict(), "pass input_ids or inputs_embeds"),
    (dict(inputs_embeds=np.zeros((1, 2, 31), np.float32)), "dim=32"),
    (dict(input_ids=[[1, 2]], token_type_ids=[[0, 1]]), "no segment embeddings"),
    (dict(input_ids=[[1, 2]], attention_mask=[[1, 1, 1]]), "attention_mask must have the shape"),
    (dict(input_ids=[[1, 2]], position_ids=[[0, 64]]), "max_position_embeddings=64"),
]


@pytest.mark.parametrize("kwargs,match", BAD_EAGER)
def test_bad_input_eager(base_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        base_model(**kwargs)


def test_bad_dict_keys(base_model):
    with pytest.raises(TypeError, match="unexpected input"):
        base_model({"input_ids": [[1, 2]], "segment_ids": [[0, 0]]})
    with pytest.raises(ValueError, match="both in the input dict"):
        base_model({"input_ids": [[1, 2]], "attention_mask": [[1, 1]]}, attention_mask=[[1, 1]])
    with pytest.raises(ValueError, match="rectangular"):
        base_model([[1, 2], [3]])


def test_bad_input_in_graph_mode_and_xla(base_model):
    good = tf.constant([[1, 2, 3]], tf.int64)
    bad = tf.constant([[1, 2, 120]], tf.int64)
    graph = tf.function(lambda ids: base_model(ids).last_hidden_state)
    xla = tf.function(lambda ids: base_model(ids).last_hidden_state, jit_compile=True)
    assert np.isfinite(graph(good).numpy()).all()
    # The assertion must run before the embedding gather (which would fail first, with a bare message):
    # repeated on a wide batch, a race between them shows up almost surely.
    for _ in range(10):
        with pytest.raises(tf.errors.InvalidArgumentError, match="vocab_size=99"):
            graph(tf.tile(bad, (64, 1)))
    positions = tf.function(lambda ids, pos: base_model(ids, position_ids=pos).last_hidden_state)
    for _ in range(10):
        with pytest.raises(tf.errors.InvalidArgumentError, match="max_position_embeddings=64"):
            positions(tf.tile(good, (64, 1)), tf.constant([[0, 1, 70]] * 64, tf.int64))
    # XLA drops assertions and clamps gathers; the model poisons the sequence instead.
    assert_close(xla(good), graph(good))
    assert np.isnan(xla(bad).numpy()).all()
    two = tf.constant([[1, 2, 3], [4, 5, 300]], tf.int64)
    out = xla(two).numpy()
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    tt = tf.function(lambda ids, t: base_model(ids, token_type_ids=t).last_hidden_state)
    with pytest.raises(tf.errors.InvalidArgumentError, match="no segment embeddings"):
        tt(good, tf.constant([[0, 1, 0]], tf.int64))
    # Static problems are caught while tracing, with or without XLA.
    for fn in (graph, xla):
        with pytest.raises(ValueError, match="max_position_embeddings=64"):
            fn(tf.ones((1, 65), tf.int64))
        with pytest.raises(TypeError, match="integer token ids"):
            fn(tf.ones((1, 3), tf.float32))


def test_xla_with_varying_sequence_lengths(seq_model):
    model, _ = seq_model
    xla = tf.function(lambda ids, mask: model(ids, attention_mask=mask).logits, jit_compile=True)
    for seq in (5, 9, 16):
        batch = random_inputs(CONFIG, 3, seq, seed=seq)
        assert_close(xla(batch["input_ids"], batch["attention_mask"]), model(batch).logits)
    whole = tf.function(lambda b: model(b), jit_compile=True)(inputs_for("sequence_classification"))
    assert whole.logits.shape == (3, 2)  # the output dataclass crosses tf.function


# --------------------------------------------------------------------------------- mixed precision
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_inference(policy):
    config = tiny_config()
    state = random_state(config, "masked_lm", seed=12)
    # Huge query/key weights: scores far beyond float16's range (65504) unless computed in float32.
    for i in range(config.n_layers):
        for lin in ("q_lin", "k_lin"):
            state[f"distilbert.transformer.layer.{i}.attention.{lin}.weight"] *= 200.0  # scores ~1.7e5
    batch = inputs_for("masked_lm", config)
    full = ours("masked_lm", config, state)(batch, output_attentions=True)
    mixed_model = ours("masked_lm", config, state, dtype=policy)
    assert mixed_model.distilbert.transformer.layer[0].ffn.lin1.compute_dtype == policy.split("_")[1]
    assert mixed_model.distilbert.transformer.layer[0].ffn.lin1.kernel.dtype == "float32"
    mixed = mixed_model(batch, output_attentions=True)
    assert mixed.logits.dtype == tf.float32  # logits in float32; attentions in the compute dtype
    assert np.isfinite(mixed.attentions[0].numpy().astype(np.float32)).all()
    assert np.isfinite(mixed.logits.numpy()).all()
    assert np.isfinite(full.logits.numpy()).all()
    # Reduced precision: same predictions, not the same digits.
    agree = (mixed.logits.numpy().argmax(-1) == full.logits.numpy().argmax(-1)).mean()
    assert agree > 0.9, agree


def test_global_mixed_policy_is_picked_up():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = TFDistilBertForSequenceClassification(CONFIG)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.pre_classifier.compute_dtype == "bfloat16"
    assert model(inputs_for("sequence_classification")).logits.dtype == tf.float32


def test_initialisation_as_reference():
    model = TFDistilBertForMaskedLM(tiny_config(initializer_range=0.05))
    emb = model.distilbert.embeddings.word_embeddings.embeddings.numpy()
    assert (emb[0] == 0).all() and abs(emb[1:].std() - 0.05) < 0.01
    layer = model.distilbert.transformer.layer[0]
    assert (layer.sa_layer_norm.gamma.numpy() == 1).all() and (layer.attention.q_lin.bias.numpy() == 0).all()
    assert (model.vocab_projector.bias.numpy() == 0).all()
    assert isinstance(TFDistilBertModel(CONFIG).get_config()["config"], dict)
