"""What only the PyTorch backend has: attention implementations, its module tree, resizing, gradient
checkpointing, dropout in ``train()``, half precision and autocast, ``torch.compile``/``torch.export``,
and the fused oneDNN inference path. Shared behaviour is tested once in ``test_models.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import (
    SAME_ATOL,
    assert_close,
    call,
    compare,
    first_output,
    numpy_outputs,
    oracle_pt_model,
    ours,
    random_state,
    task_inputs,
    task_labels,
    tiny_config,
    to_torch,
)

import distilbert.pt as dpt
from distilbert.common.names import TASK_CLASSES, TASKS, weight_table
from distilbert.pt.pretrained import canonical_state, load_canonical_state

CLASSES = {task: getattr(dpt, name) for task, name in TASK_CLASSES.items()}
IMPLS = ("eager", "sdpa")
CONFIG = tiny_config()


def pt(config, task, state, impl="sdpa"):
    return ours("pt", task, config, state, attn_implementation=impl)


def batch_for(config, task):
    inputs = task_inputs(config, task)
    return {**inputs, **task_labels(config, task, inputs)}


@pytest.fixture(scope="module")
def states():
    return {task: random_state(CONFIG, task, seed=i + 1) for i, task in enumerate(TASKS)}


# ------------------------------------------------------------------------- attention implementations
@pytest.mark.parametrize("task", TASKS)
def test_eager_attention_matches_reference(states, task):
    """attn_implementation="eager" against the reference's eager attention under the output flags (the
    default, sdpa, and gradients are tested in test_models.py)."""
    model, ref = pt(CONFIG, task, states[task], "eager"), oracle_pt_model(CONFIG, task, states[task], "eager")
    batch = batch_for(CONFIG, task)
    for flags in ({}, {"output_hidden_states": True}, {"output_hidden_states": True, "output_attentions": True}):
        compare(
            numpy_outputs(call("pt", model, batch, **flags)),
            numpy_outputs(call("pt", ref, batch, **flags)),
            name=f"{task}/eager/{flags}",
        )


@pytest.mark.parametrize("impl", IMPLS)
def test_unpadded_batch_attends_without_a_mask(states, impl, monkeypatch):
    """Where no token is padding, attention gets no key mask (it masks nothing; the kernels run faster
    without one); with padding it gets the mask. Both match the reference."""
    from distilbert.pt import modeling

    seen = []

    def spy(kernel):
        return lambda q, k, v, mask, *rest: seen.append(mask) or kernel(q, k, v, mask, *rest)

    for name in ("sdpa_attention", "eager_attention"):
        monkeypatch.setattr(modeling, name, spy(getattr(modeling, name)))
    task = "sequence_classification"
    model, ref = pt(CONFIG, task, states[task], impl), oracle_pt_model(CONFIG, task, states[task], impl)
    padded = task_inputs(CONFIG, task)
    assert (padded["attention_mask"] == 0).any()
    dense = {**padded, "attention_mask": np.ones_like(padded["attention_mask"])}
    for inputs, masked in ((dense, False), (padded, True)):
        seen.clear()
        got = numpy_outputs(call("pt", model, inputs, output_hidden_states=True))
        assert len(seen) == CONFIG.n_layers and all((m is not None) == masked for m in seen), (masked, seen)
        compare(got, numpy_outputs(call("pt", ref, inputs, output_hidden_states=True)), name=f"{impl}/{masked}")


def test_traced_graph_keeps_the_mask_of_an_unpadded_example(states):
    """Traced on a batch without padding, the graph still masks the padding of later batches."""
    task = "sequence_classification"
    model = pt(CONFIG, task, states[task]).eval()
    inputs = to_torch(task_inputs(CONFIG, task))
    dense = torch.ones_like(inputs["attention_mask"])
    with torch.no_grad():
        traced = torch.jit.trace(first_output(model), (inputs["input_ids"], dense))
        got = traced(inputs["input_ids"], inputs["attention_mask"])
        want = model(inputs["input_ids"], inputs["attention_mask"]).logits
    assert_close(got, want)


def test_sinusoidal_and_relu_configs_match_reference():
    config = tiny_config(sinusoidal_pos_embds=True, activation="relu")
    state = random_state(config, "masked_lm", seed=11)
    batch = batch_for(config, "masked_lm")
    for impl in IMPLS:
        want = numpy_outputs(
            call("pt", oracle_pt_model(config, "masked_lm", state, impl), batch, output_hidden_states=True)
        )
        compare(
            numpy_outputs(call("pt", pt(config, "masked_lm", state, impl), batch, output_hidden_states=True)),
            want,
            name=impl,
        )


def test_all_implementations_agree_on_fully_masked_row(states):
    inputs = task_inputs(CONFIG, "base")
    inputs["attention_mask"][2] = 0
    outs = []
    for impl in IMPLS:
        outs.append(call("pt", pt(CONFIG, "base", states["base"], impl), inputs).last_hidden_state)
        assert torch.isfinite(outs[-1]).all(), impl
    for impl in IMPLS:  # the reference too averages every value there, in both implementations
        want = call("pt", oracle_pt_model(CONFIG, "base", states["base"], impl), inputs).last_hidden_state
        for got in outs:
            assert_close(got, want)


def test_head_mask_falls_back_to_eager_attention(states):
    """sdpa exposes no weights: a head mask (or output_attentions) takes the eager path, as the reference."""
    inputs = {**task_inputs(CONFIG, "base"), "head_mask": np.array([1.0, 0.0, 0.5, 1.0], np.float32)}
    sdpa = numpy_outputs(call("pt", pt(CONFIG, "base", states["base"], "sdpa"), inputs, output_attentions=True))
    eager = numpy_outputs(call("pt", pt(CONFIG, "base", states["base"], "eager"), inputs, output_attentions=True))
    compare(sdpa, eager, atol=SAME_ATOL)


def test_flash_attention_without_package_or_gpu_is_a_clear_error():
    with pytest.raises((ImportError, ValueError), match="flash_attention_2.*(flash_attn|CUDA)"):
        dpt.DistilBertModel(CONFIG, attn_implementation="flash_attention_2")
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        dpt.DistilBertModel(CONFIG, attn_implementation="xformers")


# ------------------------------------------------------------------------------------ module tree
def test_state_dict_keys_are_canonical_names():
    for task in TASKS:
        model = CLASSES[task](CONFIG)
        table = weight_table(CONFIG, task)
        assert list(model.state_dict()) == [s.names["pt"] for s in table]
        assert [tuple(v.shape) for v in model.state_dict().values()] == [s.shape for s in table]


def test_initialisation_details():
    config = tiny_config(vocab_size=500, dim=64, n_heads=4, hidden_dim=256)
    torch.manual_seed(0)
    model = dpt.DistilBertForMaskedLM(config)
    word = model.distilbert.embeddings.word_embeddings.weight
    assert abs(word[1:].std().item() - 0.02) < 0.002  # the default initializer_range
    assert model.distilbert.transformer.layer[1].output_layer_norm.eps == 1e-12
    assert model.vocab_projector.weight is word  # tied: one Parameter
    assert model.num_parameters() == sum(
        int(np.prod(s.shape)) for s in weight_table(config, "masked_lm") if s.kind != "tied"
    )


def test_untied_projector_is_its_own_parameter():
    config = tiny_config(tie_word_embeddings=False)
    model = pt(config, "masked_lm", random_state(config, "masked_lm", seed=5))
    assert model.vocab_projector.weight is not model.distilbert.embeddings.word_embeddings.weight


def test_sinusoidal_table_gets_no_gradient():
    model = dpt.DistilBertModel(tiny_config(sinusoidal_pos_embds=True))
    pos = model.embeddings.position_embeddings.weight
    assert not pos.requires_grad
    model(torch.tensor([[1, 2, 3]])).last_hidden_state.sum().backward()
    assert pos.grad is None


def test_load_canonical_state_names_every_problem(states):
    model = pt(CONFIG, "question_answering", states["question_answering"])
    broken = canonical_state(model)
    broken.pop("qa_outputs.bias")
    broken["qa_outputs.extra"] = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="qa_outputs.bias.*\n.*qa_outputs.extra"):
        load_canonical_state(model, broken)


# ----------------------------------------------------------------------------- training features
def test_resize_token_embeddings(states):
    model = pt(CONFIG, "masked_lm", states["masked_lm"])
    old = model.get_input_embeddings().weight.detach().clone()
    old_bias = model.vocab_projector.bias.detach().clone()
    emb = model.resize_token_embeddings(120, pad_to_multiple_of=8)
    assert emb.weight.shape == (120, 32) and model.config.vocab_size == 120
    assert not any(m.training for m in model.modules())  # the new modules keep eval mode (and its kernels)
    assert model.distilbert.config.vocab_size == 120
    assert torch.equal(emb.weight[:99], old)  # copied rows
    assert torch.allclose(emb.weight[99:].mean(0), old.mean(0), atol=1e-3)  # mean resizing
    assert model.vocab_projector.weight is emb.weight
    assert torch.equal(model.vocab_projector.bias[:99], old_bias) and torch.all(model.vocab_projector.bias[99:] == 0)
    with torch.no_grad():
        assert model(torch.tensor([[1, 110, 119]])).logits.shape == (1, 3, 120)
    model.resize_token_embeddings(50, mean_resizing=False)
    assert model.vocab_projector.weight.shape == (50, 32) and torch.equal(model.get_input_embeddings().weight, old[:50])
    with pytest.raises(ValueError, match="vocab_size=50"):
        model(torch.tensor([[1, 60]]))


def test_resize_untied_projector():
    config = tiny_config(tie_word_embeddings=False)
    model = pt(config, "masked_lm", random_state(config, "masked_lm", seed=3))
    old_w = model.vocab_projector.weight.detach().clone()
    old_b = model.vocab_projector.bias.detach().clone()
    model.resize_token_embeddings(103)
    w, b = model.vocab_projector.weight, model.vocab_projector.bias
    assert w is not model.get_input_embeddings().weight and w.shape == (103, 32)
    assert torch.equal(w[:99], old_w) and torch.equal(b[:99], old_b)
    assert torch.allclose(b[99:], old_b.mean().expand(4))  # mean resizing, as the reference
    assert torch.allclose(w[99:].mean(0), old_w.mean(0), atol=1e-3)


def test_gradient_checkpointing_gives_same_gradients(states):
    batch = to_torch(batch_for(CONFIG, "sequence_classification"))
    grads = []
    for enable in (False, True):
        model = pt(CONFIG, "sequence_classification", states["sequence_classification"]).train()
        if enable:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert_close(grads[1][name], grads[0][name], name=name)


def test_dropout_only_in_training():
    config = tiny_config(dropout=0.3, attention_dropout=0.3, seq_classif_dropout=0.3)
    model = dpt.DistilBertForSequenceClassification(config)
    inputs = to_torch(task_inputs(config, "sequence_classification"))
    model.eval()
    with torch.no_grad():
        a, b = model(**inputs).logits, model(**inputs).logits
    assert_close(a, b, atol=SAME_ATOL)  # no dropout: the same model twice
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        c = model(**inputs).logits
    assert not torch.allclose(a, c)


def test_training_loop_reduces_loss():
    torch.manual_seed(0)
    model = dpt.DistilBertForSequenceClassification(CONFIG).train()
    inputs = to_torch(task_inputs(CONFIG, "sequence_classification"))
    labels = torch.tensor([0, 1, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss = model(**inputs, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5


# ------------------------------------------------------------------------------ dtypes and graphs
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_close_to_float32(states, dtype):
    model = pt(CONFIG, "masked_lm", states["masked_lm"]).to(dtype)
    batch = batch_for(CONFIG, "masked_lm")
    got = call("pt", model, batch)
    want = call("pt", oracle_pt_model(CONFIG, "masked_lm", states["masked_lm"]), batch)
    assert got.logits.dtype == dtype and got.loss.dtype == torch.float32
    assert torch.isfinite(got.logits).all()
    # a half-precision model is not float32: the bound is its rounding, not the parity tolerance
    tol = 0.1 if dtype == torch.bfloat16 else 0.02
    assert (got.logits.float() - want.logits).abs().max() < tol * want.logits.abs().max()
    assert abs(got.loss.item() - want.loss.item()) < tol * want.loss.item()


def test_bfloat16_autocast(states):
    model = pt(CONFIG, "base", states["base"])
    inputs = to_torch(task_inputs(CONFIG, "base"))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(**inputs, output_attentions=True)
    want = call("pt", oracle_pt_model(CONFIG, "base", states["base"]), task_inputs(CONFIG, "base")).last_hidden_state
    assert torch.isfinite(got.last_hidden_state).all()
    assert (got.last_hidden_state.float() - want).abs().max() < 0.1 * want.abs().max()


def test_torch_compile_fullgraph(states):
    # backend "aot_eager": traces through dynamo and AOTAutograd (graph breaks fail fullgraph=True)
    # without inductor's C++ compile, which is too slow for CI on two cores.
    torch._dynamo.reset()
    model = pt(CONFIG, "sequence_classification", states["sequence_classification"])
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    inputs = to_torch(task_inputs(CONFIG, "sequence_classification"))
    with torch.no_grad():
        got = compiled(**inputs)
    want = call(
        "pt",
        oracle_pt_model(CONFIG, "sequence_classification", states["sequence_classification"]),
        task_inputs(CONFIG, "sequence_classification"),
    )
    assert_close(got.logits, want.logits)
    loss = compiled(**inputs, labels=torch.tensor([0, 1, 1])).loss  # training under compile too, still one graph
    loss.backward()
    assert model.classifier.weight.grad is not None


def test_torch_export(states):
    model = pt(CONFIG, "question_answering", states["question_answering"])
    inputs = to_torch(task_inputs(CONFIG, "question_answering"))
    program = torch.export.export(model, (), kwargs=dict(inputs))
    with torch.no_grad():
        got = program.module()(**inputs)
    want = call(
        "pt",
        oracle_pt_model(CONFIG, "question_answering", states["question_answering"]),
        task_inputs(CONFIG, "question_answering"),
    )
    assert_close(got.start_logits, want.start_logits)
    assert_close(got.end_logits, want.end_logits)


def test_fused_cpu_inference_path_matches_plain_path(states, monkeypatch):
    from distilbert.pt import ops

    model = pt(CONFIG, "masked_lm", states["masked_lm"])
    batch = batch_for(CONFIG, "masked_lm")
    with torch.no_grad():
        assert ops.fusable(torch.ones(2, 32), model.vocab_transform) == ops.FUSED
    fused = numpy_outputs(call("pt", model, batch, output_hidden_states=True))
    with monkeypatch.context() as patch:
        patch.setattr(ops, "FUSED", False)
        with torch.no_grad():
            assert not ops.fusable(torch.ones(2, 32), model.vocab_transform)
        plain = numpy_outputs(call("pt", model, batch, output_hidden_states=True))
    compare(fused, plain)  # oneDNN's fused kernels sum in their own order (docs/numerics.md)
    ref = oracle_pt_model(CONFIG, "masked_lm", states["masked_lm"], "sdpa")
    compare(fused, numpy_outputs(call("pt", ref, batch, output_hidden_states=True)))
    assert ops.FUSED == ops._has_fused_kernel()
    with torch.enable_grad():  # autograd never takes the fused kernels (they have no backward)
        assert not ops.fusable(torch.ones(2, 32), model.vocab_transform)
    model.train()
    with torch.no_grad():
        assert not ops.fusable(torch.ones(2, 32), model.vocab_transform)  # dropout may be on in training
