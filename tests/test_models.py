"""The six classes of every backend against the reference (transformers 4.57.6), written once.

Each test is parametrised over ``pt``, ``tf`` and ``flax``: outputs (every output flag, padded batches,
every loss), tuple outputs, gradients, ``head_mask``, ``inputs_embeds``, ``position_ids``, fully masked
rows, the output containers and initialisation. The reference is its PyTorch class for every backend,
and for TF and Flax also the reference class of their own framework. Behaviour only one framework
has lives in ``test_{pt,tf,flax}_specific.py``; bad input in ``test_behaviour.py``; backend against
backend in ``test_equivalence.py``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import (
    SAME_ATOL,
    assert_close,
    call,
    compare,
    gradients,
    numpy_outputs,
    oracle_model,
    oracle_pt_model,
    oracle_run,
    random_state,
    run,
    task_inputs,
    task_labels,
    tiny_config,
)

from distilbert.common.names import SINUSOIDAL, TASKS, TIED, sinusoidal_table, weight_table
from distilbert.common.outputs import SequenceClassifierOutput
from distilbert.frameworks import FRAMEWORKS, build, canonical_state

CONFIG = tiny_config()
FLAGS = ({}, {"output_hidden_states": True}, {"output_hidden_states": True, "output_attentions": True})
ALL = {"output_hidden_states": True, "output_attentions": True}
VARIANTS = {
    "sinusoidal": dict(sinusoidal_pos_embds=True),
    "relu": dict(activation="relu"),
    "untied": dict(tie_word_embeddings=False),
}


def state_of(task):
    return random_state(CONFIG, task, seed=TASKS.index(task) + 1)


def inputs_and_labels(task, config=CONFIG, batch=3):
    inputs = task_inputs(config, task, batch)
    return {**inputs, **task_labels(config, task, inputs)}


# Built once per module: our models and the reference's, and the reference PyTorch outputs.
@functools.cache
def model_of(framework, task):
    """Our model of ``task`` with the task's weights, built once."""
    return build(framework, task, CONFIG, state_of(task))


@functools.cache
def reference_pt(task, impl="eager"):
    return oracle_pt_model(CONFIG, task, state_of(task), impl)


@functools.cache
def reference_pt_outputs(task, flag_items=(), return_dict=True, batch=3):
    out = call(
        "pt", reference_pt(task), inputs_and_labels(task, batch=batch), **dict(flag_items), return_dict=return_dict
    )
    return numpy_outputs(out) if return_dict else out


def frozen(flags):
    return tuple(sorted(flags.items()))


# ----------------------------------------------------------------------------------- forward parity
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_outputs_match_reference_pytorch(framework, task):
    """Every field of every class under every output flag, loss included, on a padded batch."""
    batch = inputs_and_labels(task)
    for flags in FLAGS:
        got = run(framework, model_of(framework, task), batch, **flags)
        compare(got, reference_pt_outputs(task, frozen(flags)), name=f"{framework}/{task}/{flags}")
        assert ("loss" in got) == (task != "base")
        if flags.get("output_hidden_states"):
            assert len(got["hidden_states"]) == CONFIG.n_layers + 1
        if flags.get("output_attentions"):
            assert len(got["attentions"]) == CONFIG.n_layers
    if task == "multiple_choice":  # the batch above is one question: three, to see them folded in order
        got = run(framework, model_of(framework, task), inputs_and_labels(task, batch=9), **ALL)
        compare(got, reference_pt_outputs(task, frozen(ALL), batch=9), name=f"{framework}/{task}/3 questions")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("framework", ["tf", "flax"])  # PyTorch's own reference is the test above
def test_outputs_match_reference_of_own_framework(framework, task, tmp_path):
    """The reference TF class (tf-keras, reading the tf_model.h5 we write) and Flax class give our outputs."""
    reference = oracle_model(framework, CONFIG, task, state_of(task), str(tmp_path))
    batch = task_inputs(CONFIG, task)
    want = oracle_run(framework, reference, batch, **ALL)
    compare(run(framework, model_of(framework, task), batch, **ALL), want, name=f"{framework}/{task}")
    assert list(want) == (
        ["start_logits", "end_logits"]
        if task == "question_answering"
        else ["last_hidden_state" if task == "base" else "logits"]
    ) + ["hidden_states", "attentions"]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_tuple_outputs_in_reference_order(framework, task):
    got = call(framework, model_of(framework, task), inputs_and_labels(task), **ALL, return_dict=False)
    want = reference_pt_outputs(task, frozen(ALL), return_dict=False)
    assert isinstance(got, tuple) and len(got) == len(want) == 3 + (task != "base") + (task == "question_answering")
    compare(got, want, name=f"{framework}/{task}")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_output_container(framework):
    """Fields by name and by position (over the non-None ones), as the reference's ModelOutput."""
    model = model_of(framework, "sequence_classification")
    inputs = task_inputs(CONFIG, "sequence_classification")
    out = call(framework, model, inputs, output_hidden_states=True)
    assert isinstance(out, SequenceClassifierOutput)
    assert out[0] is out.logits and out["logits"] is out.logits and "loss" not in out
    assert len(out.hidden_states) == CONFIG.n_layers + 1 and out[1] is out.hidden_states
    labelled = call(framework, model, inputs_and_labels("sequence_classification"))
    assert labelled[0] is labelled.loss and labelled["logits"] is labelled.logits
    assert list(labelled) == ["loss", "logits"]


# ------------------------------------------------------------------------------ losses, gradients
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_loss_and_gradients_match_reference(framework, task):
    """d(loss)/d(every weight) equals torch autograd through the reference (the bare model: a weighted sum)."""
    batch = inputs_and_labels(task)
    got = gradients(framework, model_of(framework, task), batch, CONFIG, task)
    want = gradients("pt", reference_pt(task), batch, CONFIG, task)
    assert list(got) == list(want) and len(want) == len(
        [s for s in weight_table(CONFIG, task) if s.kind not in (TIED, SINUSOIDAL)]
    )
    for name in want:
        assert_close(got[name], want[name], name=f"grad {name}")
    if task != "masked_lm":  # the padding row learns only through the tied projector, as in the reference
        words = ("" if task == "base" else "distilbert.") + "embeddings.word_embeddings.weight"
        assert np.all(got[words][CONFIG.pad_token_id] == 0)
    if task != "base":
        loss = run(framework, model_of(framework, task), batch)["loss"]
        assert loss.shape == () and np.isfinite(loss)


# (problem_type, num_labels, labels): every loss of sequence classification, set or inferred.
PROBLEMS = {
    "regression-1": ("regression", 1, "float"),
    "regression-3": ("regression", 3, "float"),
    "single_label": ("single_label_classification", 3, "int64"),
    "multi_label": ("multi_label_classification", 3, "binary"),
    "inferred-regression": (None, 1, "float"),
    "inferred-single_label": (None, 3, "ignored"),
    "inferred-single_label-int32": (None, 3, "int32"),
    "inferred-multi_label": (None, 3, "binary"),
}

# One case per loss function (MSE on one or several outputs, cross-entropy with an ignored label and from
# int32 labels, binary cross-entropy): the others pick one of these, which their loss values show.
GRADIENT_CASES = (
    "inferred-regression",
    "regression-3",
    "inferred-single_label",
    "inferred-single_label-int32",
    "inferred-multi_label",
)


def problem_labels(kind, num_labels, batch=3):
    rng = np.random.default_rng(3)
    if kind == "float":
        return rng.standard_normal((batch, num_labels) if num_labels > 1 else (batch,)).astype(np.float32)
    if kind == "binary":
        return rng.integers(0, 2, (batch, num_labels)).astype(np.float32)
    if kind == "ignored":
        return np.array([2, -100, 0])  # -100 is ignored, as in the reference
    return rng.integers(0, num_labels, batch).astype(kind)


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sequence_classification_losses(framework, problem):
    problem_type, num_labels, kind = PROBLEMS[problem]
    config = tiny_config(num_labels=num_labels, problem_type=problem_type)
    state = random_state(config, "sequence_classification", seed=7)
    inputs = task_inputs(config, "sequence_classification")
    labels = problem_labels(kind, num_labels)
    model, ref = (
        build(framework, "sequence_classification", config, state),
        oracle_pt_model(config, "sequence_classification", state),
    )
    batch = {**inputs, "labels": labels}
    ref_batch = {**inputs, "labels": labels.astype(np.int64) if kind == "int32" else labels}  # the reference: no int32
    compare(run(framework, model, batch), numpy_outputs(call("pt", ref, ref_batch)), name=problem)
    if problem not in GRADIENT_CASES:
        return
    got = gradients(framework, model, batch, config, "sequence_classification")
    want = gradients("pt", ref, ref_batch, config, "sequence_classification")
    for name in ("classifier.weight", "pre_classifier.bias", "distilbert.embeddings.word_embeddings.weight"):
        assert_close(got[name], want[name], name=f"grad {name}")


# --------------------------------------------------------------------------------- config variants
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_config_variants_match_reference(framework, variant, tmp_path):
    """Sinusoidal positions, ReLU and an untied projector: the masked LM against the reference PyTorch class
    (and the reference Flax class). Their gradients: ``test_equivalence.py``."""
    config = tiny_config(**VARIANTS[variant])
    state = random_state(config, "masked_lm", seed=5)
    if variant == "untied":
        assert not np.array_equal(
            state["vocab_projector.weight"], state["distilbert.embeddings.word_embeddings.weight"]
        )
    inputs = task_inputs(config, "masked_lm")
    batch = {**inputs, **task_labels(config, "masked_lm", inputs)}
    model, ref = build(framework, "masked_lm", config, state), oracle_pt_model(config, "masked_lm", state)
    compare(
        run(framework, model, batch, output_hidden_states=True),
        numpy_outputs(call("pt", ref, batch, output_hidden_states=True)),
        name=variant,
    )
    if framework == "flax":  # and the reference Flax class (TF's reads only what test_tf_saving.py covers)
        own = oracle_model(framework, config, "masked_lm", state, str(tmp_path))
        assert_close(run(framework, model, inputs)["logits"], oracle_run(framework, own, inputs)["logits"])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sinusoidal_table_is_fixed(framework):
    """A fresh sinusoidal model holds the formula's table and never trains it."""
    config = tiny_config(sinusoidal_pos_embds=True)
    model = build(framework, "base", config)
    assert_close(canonical_state(framework, model)["embeddings.position_embeddings.weight"], sinusoidal_table(64, 32))
    if framework == "pt":
        trained = [n for n, p in model.named_parameters() if p.requires_grad]
    elif framework == "tf":
        trained = [v.path for v in model.trainable_variables]
    else:
        from flax import nnx

        trained = ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]
    assert trained and not [n for n in trained if "position_embeddings" in n]


# ------------------------------------------------------------------------------------ call options
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_head_mask_matches_reference(framework):
    model, inputs = model_of(framework, "base"), task_inputs(CONFIG, "base")
    plain = run(framework, model, inputs)["last_hidden_state"]
    for head_mask in (
        np.array([1.0, 0.0, 0.5, 1.0], np.float32),
        np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.25, 1.0]], np.float32),
    ):
        batch = {**inputs, "head_mask": head_mask}
        got = run(framework, model, batch, output_attentions=True)
        compare(got, numpy_outputs(call("pt", reference_pt("base"), batch, output_attentions=True)), name="head_mask")
        assert not np.allclose(got["last_hidden_state"], plain, atol=1e-3)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_inputs_embeds_match_reference(framework):
    model, inputs = model_of(framework, "masked_lm"), task_inputs(CONFIG, "masked_lm")
    embeds = np.random.default_rng(0).standard_normal((3, 7, CONFIG.dim)).astype(np.float32)
    batch = {"inputs_embeds": embeds, "attention_mask": inputs["attention_mask"]}
    compare(run(framework, model, batch, **ALL), numpy_outputs(call("pt", reference_pt("masked_lm"), batch, **ALL)))
    # the word vectors of the ids as inputs_embeds: the ids' outputs (the same model twice)
    words = state_of("masked_lm")["distilbert.embeddings.word_embeddings.weight"][inputs["input_ids"]]
    assert_close(
        run(framework, model, {**batch, "inputs_embeds": words})["logits"],
        run(framework, model, inputs)["logits"],
        atol=SAME_ATOL,
    )


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_position_ids_match_reference(framework, task):
    """Explicit positions 0..T-1 are the default; reversed ones match the reference given the same vectors
    as ``inputs_embeds`` (its call takes no position_ids)."""
    model, batch = model_of(framework, task), inputs_and_labels(task)
    ids = batch["input_ids"]
    seq = ids.shape[-1]
    default = run(framework, model, batch, output_hidden_states=True)
    arange = np.broadcast_to(np.arange(seq), ids.shape).astype(np.int64)
    explicit = run(framework, model, {**batch, "position_ids": arange}, output_hidden_states=True)
    compare(explicit, default, atol=SAME_ATOL, name="position_ids=arange")
    reversed_positions = np.broadcast_to(np.arange(seq)[::-1], ids.shape).astype(np.int64)
    got = run(framework, model, {**batch, "position_ids": reversed_positions}, output_hidden_states=True)
    state = state_of(task)
    prefix = "" if task == "base" else "distilbert."
    words = state[prefix + "embeddings.word_embeddings.weight"]
    positions = state[prefix + "embeddings.position_embeddings.weight"]
    embeds = words[ids] + positions[reversed_positions] - positions[np.arange(seq)]  # the reference adds arange
    ref_batch = {k: v for k, v in batch.items() if k != "input_ids"}
    want = numpy_outputs(
        call("pt", reference_pt(task), {**ref_batch, "inputs_embeds": embeds}, output_hidden_states=True)
    )
    compare(got, want, name=f"{task} reversed positions")
    first = "start_logits" if task == "question_answering" else list(default)[task != "base"]
    assert not np.allclose(got[first], default[first], atol=1e-3)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_fully_masked_row_is_finite_and_matches_reference(framework):
    inputs = task_inputs(CONFIG, "base")
    inputs["attention_mask"][2] = 0
    got = run(framework, model_of(framework, "base"), inputs, output_attentions=True)
    assert np.isfinite(got["last_hidden_state"]).all()
    for impl in ("eager", "sdpa"):  # the reference averages every value there, in both implementations
        compare(got, numpy_outputs(call("pt", reference_pt("base", impl), inputs, output_attentions=True)), name=impl)


# ---------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_initialisation_as_reference(framework):
    """Normal(0, initializer_range) weights, a zero padding row, zero biases, unit LayerNorms, a tied projector."""
    config = tiny_config(initializer_range=0.05)  # 3000 and 1000 draws: the std within 10% by far
    if framework == "pt":
        import torch

        torch.manual_seed(0)
    state = canonical_state(framework, build(framework, "masked_lm", config))
    word = state["distilbert.embeddings.word_embeddings.weight"]
    assert np.all(word[config.pad_token_id] == 0)
    assert abs(word[1:].std() - 0.05) < 0.005
    lin = "distilbert.transformer.layer.0.ffn.lin1."
    assert abs(state[lin + "weight"].std() - 0.05) < 0.005 and np.all(state[lin + "bias"] == 0)
    norm = "distilbert.transformer.layer.1.output_layer_norm."
    assert np.all(state[norm + "weight"] == 1) and np.all(state[norm + "bias"] == 0)
    assert np.all(state["distilbert.transformer.layer.0.attention.q_lin.bias"] == 0)
    assert np.all(state["vocab_projector.bias"] == 0)
    assert np.array_equal(state["vocab_projector.weight"], word)  # tied: one tensor
    assert set(state) == {s.name for s in weight_table(config, "masked_lm")}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_canonical_state_round_trip(framework):
    """What load_canonical_state put in, canonical_state gives back bit for bit (the same numbers, copied)."""
    state = state_of("question_answering")
    got = canonical_state(framework, build(framework, "question_answering", CONFIG, state))
    assert set(got) == set(state)
    for name, array in got.items():
        assert array.dtype == np.float32 and np.array_equal(array, state[name]), name
