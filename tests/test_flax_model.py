"""Flax NNX backend: outputs, losses and gradients against our PyTorch backend and the reference.

Every class runs on the same random weights and padded batches as the reference PyTorch model
(transformers 4.57.6), its Flax class, and ``distilbert.pt``; all outputs agree at atol=1e-5 in
float32, and the gradients of each head's loss equal ``distilbert.pt``'s (torch autograd).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from helpers import assert_close, hf_config, oracle_class, oracle_pt_model, random_inputs, random_state, tiny_config

from distilbert.common.names import TASKS, from_native, to_native, weight_table
from distilbert.flax import (
    FlaxDistilBertForMaskedLM,
    FlaxDistilBertForMultipleChoice,
    FlaxDistilBertForQuestionAnswering,
    FlaxDistilBertForSequenceClassification,
    FlaxDistilBertForTokenClassification,
    FlaxDistilBertModel,
    canonical_state,
    load_canonical_state,
)
from distilbert.flax.pretrained import native_params

CLASSES = {
    "base": FlaxDistilBertModel,
    "masked_lm": FlaxDistilBertForMaskedLM,
    "sequence_classification": FlaxDistilBertForSequenceClassification,
    "multiple_choice": FlaxDistilBertForMultipleChoice,
    "token_classification": FlaxDistilBertForTokenClassification,
    "question_answering": FlaxDistilBertForQuestionAnswering,
}


def ours(config, task, state, **kw):
    model = CLASSES[task](config, **kw)
    load_canonical_state(model, state)
    return model


def flax_oracle(config, task, state):
    """The reference's Flax class (flax.linen) holding ``state``."""
    from flax.traverse_util import unflatten_dict

    model = oracle_class("flax", task)(hf_config(config), seed=0)
    native = to_native(state, "flax", weight_table(config, task))
    model.params = unflatten_dict({tuple(k.split("/")): jnp.asarray(v) for k, v in native.items()})
    return model


def pt_backend(config, task, state):
    from distilbert.frameworks import build

    return build("pt", task, config, state)


def labels_for(task, config, inputs, seed=1):
    rng = np.random.default_rng(seed)
    ids = inputs["input_ids"]
    batch, seq = ids.shape[0], ids.shape[-1]
    if task in ("masked_lm", "token_classification"):
        n = config.vocab_size if task == "masked_lm" else config.num_labels
        labels = rng.integers(0, n, ids.shape)
        labels[inputs["attention_mask"] == 0] = -100
        labels[:, ::3] = -100
        return {"labels": labels}
    if task == "sequence_classification":
        return {"labels": rng.integers(0, config.num_labels, (batch,))}
    if task == "multiple_choice":
        return {"labels": np.array([2])}
    if task == "question_answering":  # one end position out of range: clamped to seq, then ignored
        return {
            "start_positions": rng.integers(0, seq, (batch,)),
            "end_positions": np.array([1, seq + 5, 2][:batch] + [0] * max(0, batch - 3)),
        }
    return {}


def inputs_for(task, config, seed=0):
    inputs = random_inputs(config, batch=3, seq=7, seed=seed)
    if task == "multiple_choice":  # one question, 3 differently padded choices: (1, 3, 7), folded to (3, 7)
        inputs = {k: v[None] for k, v in inputs.items()}
    return inputs


def to_torch(d):
    return {k: torch.from_numpy(np.asarray(v)) for k, v in d.items()}


def compare(out, ref, names, prefix=""):
    for name in names:
        a, b = getattr(out, name), ref[name]
        if isinstance(a, tuple):
            assert len(a) == len(b), f"{prefix}{name}: {len(a)} != {len(b)}"
            for i, (x, y) in enumerate(zip(a, b)):
                assert_close(x, y.detach().numpy() if hasattr(y, "detach") else y, name=f"{prefix}{name}[{i}]")
        else:
            assert_close(a, b.detach().numpy() if hasattr(b, "detach") else b, name=prefix + name)


OUT_NAMES = {
    "base": ["last_hidden_state"],
    "question_answering": ["start_logits", "end_logits"],
}


# ---------------------------------------------------------------------------------- parity
@pytest.fixture(scope="module", params=TASKS)
def case(request):
    task = request.param
    config = tiny_config()
    state = random_state(config, task, seed=3)
    inputs = inputs_for(task, config)
    return task, config, state, inputs


def test_forward_matches_references(case):
    """Every output (incl. hidden states and attentions) of every class, padded batch, three references."""
    task, config, state, inputs = case
    labels = labels_for(task, config, inputs)
    model = ours(config, task, state)
    out = model(**inputs, **labels, output_hidden_states=True, output_attentions=True)
    names = OUT_NAMES.get(task, ["logits"]) + ["hidden_states", "attentions"] + (["loss"] if labels else [])
    assert len(out.hidden_states) == config.n_layers + 1 and len(out.attentions) == config.n_layers

    with torch.no_grad():
        ref_pt = oracle_pt_model(config, task, state)(
            **to_torch(inputs), **to_torch(labels), output_hidden_states=True, output_attentions=True
        )
        our_pt = pt_backend(config, task, state)(
            **to_torch(inputs), **to_torch(labels), output_hidden_states=True, output_attentions=True
        )
    compare(out, ref_pt, names, "reference pt: ")
    compare(out, our_pt, names, "distilbert.pt: ")
    # The reference Flax classes have no losses; their multiple-choice tuple output is also odd, use fields.
    ref_flax = flax_oracle(config, task, state)(
        inputs["input_ids"], inputs["attention_mask"], output_hidden_states=True, output_attentions=True
    )
    compare(out, ref_flax, [n for n in names if n != "loss"], "reference flax: ")


def test_gradients_match_pytorch_backend(case):
    """d(loss)/d(every weight) equals torch autograd through distilbert.pt (and the reference)."""
    task, config, state, inputs = case
    labels = labels_for(task, config, inputs)
    model = ours(config, task, state)
    table = weight_table(config, task)

    def loss_of(m):
        out = m(**inputs, **labels)
        return out.loss if task != "base" else jnp.sum(out.last_hidden_state * jnp.arange(config.dim) / config.dim)

    grads = nnx.grad(loss_of)(model)
    flat = {"/".join(map(str, path)): np.asarray(v[...]) for path, v in nnx.to_flat_state(grads)}
    ours_grads = from_native(flat, "nnx", table)

    for reference in (pt_backend(config, task, state), oracle_pt_model(config, task, state)):
        reference.zero_grad()
        out = reference(**to_torch(inputs), **to_torch(labels))
        if task == "base":
            loss = (out.last_hidden_state * torch.arange(config.dim) / config.dim).sum()
        else:
            loss = out.loss
        loss.backward()
        seen = 0
        for name, param in reference.named_parameters():
            assert_close(ours_grads[name], param.grad.numpy(), name=f"grad {name}")
            seen += 1
        assert seen >= len([s for s in table if s.kind not in ("tied", "sinusoidal")])


@pytest.mark.parametrize(
    "variant", [dict(tie_word_embeddings=False), dict(sinusoidal_pos_embds=True), dict(activation="relu")]
)
def test_config_variants_match_reference(variant):
    """Untied projector, sinusoidal positions and ReLU: masked LM against the reference PT and Flax."""
    config = tiny_config(**variant)
    state = random_state(config, "masked_lm", seed=5)
    inputs = inputs_for("masked_lm", config)
    model = ours(config, "masked_lm", state)
    out = model(**inputs, output_hidden_states=True)
    with torch.no_grad():
        ref = oracle_pt_model(config, "masked_lm", state)(**to_torch(inputs), output_hidden_states=True)
    compare(out, ref, ["logits", "hidden_states"])
    ref_flax = flax_oracle(config, "masked_lm", state)(inputs["input_ids"], inputs["attention_mask"])
    assert_close(out.logits, ref_flax.logits)
    if variant.get("sinusoidal_pos_embds"):
        # a constant, not a parameter: nothing to train, nothing in the NNX parameter state
        assert not any("position_embeddings" in k for k in native_params(model))
        grads = nnx.grad(lambda m: jnp.sum(m(**inputs).logits))(model)
        assert not any("position_embeddings" in "/".join(map(str, p)) for p, _ in nnx.to_flat_state(grads))


@pytest.mark.parametrize(
    "problem_type,num_labels",
    [
        ("regression", 1),
        ("regression", 3),
        ("multi_label_classification", 3),
        ("single_label_classification", 3),
        (None, 1),
        (None, 3),
    ],
)
def test_sequence_classification_losses(problem_type, num_labels):
    config = tiny_config(num_labels=num_labels, problem_type=problem_type)
    state = random_state(config, "sequence_classification", seed=7)
    inputs = inputs_for("sequence_classification", config)
    rng = np.random.default_rng(0)
    if problem_type == "single_label_classification" or (problem_type is None and num_labels > 1):
        labels = rng.integers(0, num_labels, (3,))
    elif problem_type == "multi_label_classification":
        labels = rng.integers(0, 2, (3, num_labels)).astype(np.float32)
    else:
        labels = rng.standard_normal((3, num_labels) if num_labels > 1 else (3,)).astype(np.float32)
    out = ours(config, "sequence_classification", state)(**inputs, labels=labels)
    with torch.no_grad():
        ref = oracle_pt_model(config, "sequence_classification", state)(
            **to_torch(inputs), labels=torch.from_numpy(labels)
        )
    assert_close(out.loss, ref.loss.numpy(), name="loss")
    assert_close(out.logits, ref.logits.numpy(), name="logits")


def test_loss_functions_under_jit():
    """The pure losses jit, and ignore -100 / out-of-range positions as the reference does."""
    from distilbert.flax import losses

    t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731
    logits = np.random.default_rng(0).standard_normal((2, 5, 11)).astype(np.float32)
    labels = np.array([[1, -100, 3, 4, -100], [-100, -100, 0, 10, 2]])
    value = jax.jit(losses.masked_lm_loss)(logits, labels)
    assert_close(value, torch.nn.functional.cross_entropy(t(logits).reshape(-1, 11), t(labels).reshape(-1)).numpy())
    start, end = logits[:, :, 0], logits[:, :, 1]
    qa = jax.jit(losses.question_answering_loss)(start, end, np.array([1, 9]), np.array([-3, 4]))
    ce = torch.nn.CrossEntropyLoss(ignore_index=5)
    want = (ce(t(start), t(np.array([1, 5]))) + ce(t(end), t(np.array([0, 4])))) / 2
    assert_close(qa, want.numpy())


# ------------------------------------------------------------------------------ call options
@pytest.fixture(scope="module")
def base_case():
    config = tiny_config()
    state = random_state(config, "base", seed=11)
    return config, state, inputs_for("base", config), ours(config, "base", state)


@pytest.mark.parametrize("shape", ["heads", "layers_heads"])
def test_head_mask_matches_reference(base_case, shape):
    config, state, inputs, model = base_case
    rng = np.random.default_rng(2)
    head_mask = rng.integers(0, 2, (config.n_heads,) if shape == "heads" else (config.n_layers, config.n_heads))
    head_mask = head_mask.astype(np.float32)
    out = model(**inputs, head_mask=head_mask, output_attentions=True)
    with torch.no_grad():
        ref = oracle_pt_model(config, "base", state)(
            **to_torch(inputs), head_mask=torch.from_numpy(head_mask), output_attentions=True
        )
    compare(out, ref, ["last_hidden_state", "attentions"])
    assert not np.allclose(out.last_hidden_state, model(**inputs).last_hidden_state, atol=1e-3)


def test_inputs_embeds_and_position_ids(base_case):
    config, state, inputs, model = base_case
    embeds = np.asarray(state["embeddings.word_embeddings.weight"])[inputs["input_ids"]]
    out = model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])
    with torch.no_grad():
        ref = oracle_pt_model(config, "base", state)(
            inputs_embeds=torch.from_numpy(embeds), attention_mask=torch.from_numpy(inputs["attention_mask"])
        )
    assert_close(out.last_hidden_state, ref.last_hidden_state.numpy())
    default = model(**inputs).last_hidden_state
    explicit = model(**inputs, position_ids=np.arange(7)[None]).last_hidden_state
    assert_close(explicit, default)
    shifted = model(**inputs, position_ids=np.arange(7)[None] + 3).last_hidden_state
    assert not np.allclose(shifted, default, atol=1e-3)


def test_return_dict_false_and_token_type_ids(base_case):
    config, state, inputs, model = base_case
    out = model(**inputs, output_hidden_states=True, return_dict=False)
    with torch.no_grad():
        ref = oracle_pt_model(config, "base", state)(**to_torch(inputs), output_hidden_states=True, return_dict=False)
    assert isinstance(out, tuple) and len(out) == len(ref) == 2
    assert_close(out[0], ref[0].numpy())
    for a, b in zip(out[1], ref[1]):
        assert_close(a, b.numpy())
    zeros = model(**inputs, token_type_ids=np.zeros_like(inputs["input_ids"]))
    assert_close(zeros.last_hidden_state, out[0])


def test_fully_masked_row_is_finite(base_case):
    config, state, inputs, model = base_case
    mask = inputs["attention_mask"].copy()
    mask[1] = 0
    out = model(input_ids=inputs["input_ids"], attention_mask=mask, output_attentions=True)
    assert np.all(np.isfinite(out.last_hidden_state))
    with torch.no_grad():
        ref = oracle_pt_model(config, "base", state)(
            input_ids=torch.from_numpy(inputs["input_ids"]), attention_mask=torch.from_numpy(mask)
        )
    assert_close(out.last_hidden_state, ref.last_hidden_state.numpy())


def test_jit_paths_match_eager(base_case):
    config, state, inputs, model = base_case
    eager = model(**inputs).last_hidden_state
    by_nnx_jit = nnx.jit(lambda m, i, a: m(i, a))(model, inputs["input_ids"], inputs["attention_mask"])
    assert_close(by_nnx_jit.last_hidden_state, eager)
    graphdef, params = nnx.split(model)
    fn = jax.jit(lambda p, i, a: nnx.merge(graphdef, p)(i, a).last_hidden_state)
    assert_close(fn(params, inputs["input_ids"], inputs["attention_mask"]), eager)


def test_bfloat16_compute_with_float32_params():
    config = tiny_config()
    state = random_state(config, "sequence_classification", seed=2)
    inputs = inputs_for("sequence_classification", config)
    f32 = ours(config, "sequence_classification", state)
    bf16 = ours(config, "sequence_classification", state, dtype=jnp.bfloat16)
    assert all(v.dtype == jnp.float32 for v in native_params(bf16).values())
    out = bf16(**inputs, labels=np.array([0, 1, 1]), output_hidden_states=True)
    assert out.hidden_states[-1].dtype == jnp.bfloat16
    assert out.loss.dtype == jnp.float32
    ref = f32(**inputs, labels=np.array([0, 1, 1]))
    assert np.allclose(np.asarray(out.logits, np.float32), ref.logits, atol=0.1)
    assert not np.allclose(np.asarray(out.logits, np.float32), ref.logits, atol=1e-6)
    half = ours(config, "sequence_classification", state, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert all(v.dtype == jnp.bfloat16 for v in native_params(half).values())
    assert np.allclose(np.asarray(half(**inputs).logits, np.float32), ref.logits, atol=0.1)


def test_mixed_precision_backward_matmuls_stay_bfloat16():
    """Every matmul of a bf16 model's gradient, backward included, is bf16 x bf16 -> f32 (see ops.py)."""
    import re

    from distilbert.flax import ops

    config = tiny_config()
    inputs = inputs_for("masked_lm", config)
    model = FlaxDistilBertForMaskedLM(config, dtype=jnp.bfloat16)
    load_canonical_state(model, random_state(config, "masked_lm", seed=6))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    labels = labels_for("masked_lm", config, inputs)["labels"]

    def loss(p):
        return nnx.merge(graphdef, p, rest, copy=True)(**inputs, labels=labels).loss

    grad_fn = jax.jit(jax.grad(loss))
    text = grad_fn.lower(params).as_text()
    grads = grad_fn(params)  # runs: XLA:CPU lacks bf16 x bf16 -> f32 kernels for some layouts (ops.py)
    assert all(v.dtype == jnp.float32 and np.all(np.isfinite(v[...])) for _, v in nnx.to_flat_state(grads))
    dots = re.findall(r"dot_general.*\(tensor<[^>]*x(\w+)>, tensor<[^>]*x(\w+)>\) -> tensor<[^>]*x(\w+)>", text)
    assert len(dots) >= 3 * 6 * config.n_layers
    assert set(dots) == {("bf16", "bf16", "f32")}, set(dots)
    # and the custom backward is the gradient of the same function (float32 check on a small contraction)
    a = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4)), jnp.bfloat16)
    b = jnp.asarray(np.random.default_rng(1).standard_normal((4, 5)), jnp.bfloat16)
    ours_grads = jax.grad(lambda a, b: jnp.sum(jnp.sin(ops.einsum("btd,dv->btv", a, b))), (0, 1))(a, b)
    a32, b32 = a.astype(jnp.float32), b.astype(jnp.float32)
    want = jax.grad(lambda a, b: jnp.sum(jnp.sin(jnp.einsum("btd,dv->btv", a, b))), (0, 1))(a32, b32)
    for x, y in zip(ours_grads, want):
        assert x.dtype == jnp.bfloat16 and np.allclose(np.asarray(x, np.float32), y, rtol=0.02, atol=0.02)


def test_remat_gives_same_loss_and_gradients_with_dropout():
    config = tiny_config(dropout=0.2, attention_dropout=0.2)
    state = random_state(config, "token_classification", seed=4)
    inputs = inputs_for("token_classification", config)
    labels = labels_for("token_classification", config, inputs)

    def loss_and_grads(remat):
        rngs = nnx.Rngs(params=0, dropout=jax.random.key(9, impl="rbg"))
        model = ours(config, "token_classification", state, remat=remat, rngs=rngs)
        return nnx.value_and_grad(lambda m: m(**inputs, **labels, deterministic=False).loss)(model)

    (l0, g0), (l1, g1) = loss_and_grads(False), loss_and_grads(True)
    assert_close(l1, l0)
    for (p, a), (_, b) in zip(nnx.to_flat_state(g0), nnx.to_flat_state(g1)):
        assert_close(b[...], a[...], name="/".join(map(str, p)))


def test_dropout_follows_rngs_and_train_eval():
    config = tiny_config(dropout=0.3, attention_dropout=0.3, seq_classif_dropout=0.3)
    state = random_state(config, "sequence_classification", seed=4)
    inputs = inputs_for("sequence_classification", config)
    model = ours(config, "sequence_classification", state, rngs=nnx.Rngs(params=0, dropout=1))
    evaluated = model(**inputs).logits
    a = model(**inputs, deterministic=False).logits
    b = model(**inputs, deterministic=False).logits
    assert not np.allclose(a, evaluated) and not np.allclose(a, b)  # the RNG stream advances
    again = ours(config, "sequence_classification", state, rngs=nnx.Rngs(params=0, dropout=1))
    assert_close(again(**inputs, deterministic=False).logits, a)  # same seed, same masks
    model.train()
    assert not np.allclose(model(**inputs).logits, evaluated)
    model.eval()
    assert_close(model(**inputs).logits, evaluated)


def test_parameter_paths_are_the_table_nnx_column():
    for variant in ({}, {"tie_word_embeddings": False}, {"sinusoidal_pos_embds": True}):
        config = tiny_config(**variant)
        for task in TASKS:
            model = CLASSES[task](config)
            want = {s.names["nnx"]: s.native_shape("nnx") for s in weight_table(config, task) if s.names["nnx"]}
            got = {k: tuple(v.shape) for k, v in native_params(model).items()}
            assert got == want, (task, variant)


def test_initialisation_as_reference():
    config = tiny_config(initializer_range=0.05)
    model = FlaxDistilBertForMaskedLM(config, seed=3)
    state = canonical_state(model)
    word = state["distilbert.embeddings.word_embeddings.weight"]
    assert np.all(word[config.pad_token_id] == 0)
    assert abs(float(np.std(word[1:])) - 0.05) < 0.005
    assert np.all(state["distilbert.transformer.layer.0.sa_layer_norm.weight"] == 1)
    assert np.all(state["vocab_projector.bias"] == 0)
    assert state["vocab_projector.weight"] is state["distilbert.embeddings.word_embeddings.weight"] or np.array_equal(
        state["vocab_projector.weight"], word
    )
    other = canonical_state(FlaxDistilBertForMaskedLM(config, seed=4))
    assert not np.allclose(other["vocab_transform.weight"], state["vocab_transform.weight"])
