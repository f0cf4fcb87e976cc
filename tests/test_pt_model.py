"""PyTorch backend: parity with transformers 4.57.6's classes, losses, gradients, bad input, init, compile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close, hf_config, oracle_class, random_inputs, random_state, tiny_config

import distilbert.pt as dpt
from distilbert.common.names import TASK_CLASSES, TASKS, sinusoidal_table, weight_table
from distilbert.common.outputs import SequenceClassifierOutput
from distilbert.pt.pretrained import canonical_state, load_canonical_state

CLASSES = {task: getattr(dpt, name) for task, name in TASK_CLASSES.items()}
IMPLS = ("eager", "sdpa")


def oracle_pt_model(config, task, state, impl="eager"):
    """The reference model holding ``state`` with attention implementation ``impl``, in eval mode."""
    hf = hf_config(config)
    hf._attn_implementation = impl  # the reference picks its attention classes at construction
    model = oracle_class("pt", task)(hf).eval()
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False
    )
    assert not unexpected and set(missing) <= {"vocab_projector.weight"}, (missing, unexpected)
    return model


def ours(config, task, state, impl="sdpa"):
    model = CLASSES[task](config, attn_implementation=impl).eval()
    load_canonical_state(model, state)
    return model


def inputs_for(config, task, batch=3, seq=7, seed=0):
    arrays = random_inputs(config, batch, seq, seed, choices=3 if task == "multiple_choice" else None)
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def labels_for(config, task, inputs, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = inputs["input_ids"]
    if task == "base":
        return {}
    if task == "masked_lm":
        labels = torch.randint(0, config.vocab_size, ids.shape, generator=g)
        labels[inputs["attention_mask"] == 0] = -100
        labels[:, 0] = -100
        return {"labels": labels}
    if task == "token_classification":
        labels = torch.randint(0, config.num_labels, ids.shape, generator=g)
        labels[inputs["attention_mask"] == 0] = -100
        return {"labels": labels}
    if task == "sequence_classification":
        return {"labels": torch.randint(0, config.num_labels, ids.shape[:1], generator=g)}
    if task == "multiple_choice":
        return {"labels": torch.randint(0, ids.shape[1], ids.shape[:1], generator=g)}
    seq = ids.shape[1]  # question answering: one position past the end and one negative, both clamped
    return {"start_positions": torch.tensor([1, seq + 3, 0]), "end_positions": torch.tensor([4, 2, -5])}


def compare_outputs(actual, expected, name=""):
    assert list(actual.keys()) == list(expected.keys()), (list(actual.keys()), list(expected.keys()))
    for key in expected.keys():
        a, e = actual[key], expected[key]
        if isinstance(e, tuple):
            assert len(a) == len(e), f"{name}.{key}: {len(a)} != {len(e)}"
            for i, (x, y) in enumerate(zip(a, e)):
                assert_close(x.detach(), y.detach(), name=f"{name}.{key}[{i}]")
        else:
            assert_close(a.detach(), e.detach(), name=f"{name}.{key}")


@pytest.fixture(scope="module")
def config():
    return tiny_config()


@pytest.fixture(scope="module")
def states(config):
    return {task: random_state(config, task, seed=i + 1) for i, task in enumerate(TASKS)}


@pytest.fixture(scope="module")
def oracles(config, states):
    return {(task, impl): oracle_pt_model(config, task, states[task], impl) for task in TASKS for impl in IMPLS}


# ----------------------------------------------------------------------------------- forward parity
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("task", TASKS)
def test_outputs_match_reference(config, states, oracles, task, impl):
    model = ours(config, task, states[task], impl)
    inputs = {**inputs_for(config, task), **labels_for(config, task, inputs_for(config, task))}
    with torch.no_grad():
        for flags in ({}, {"output_hidden_states": True}, {"output_hidden_states": True, "output_attentions": True}):
            compare_outputs(model(**inputs, **flags), oracles[task, impl](**inputs, **flags), f"{task}/{impl}/{flags}")


@pytest.mark.parametrize("task", TASKS)
def test_tuple_outputs_in_reference_order(config, states, oracles, task):
    model = ours(config, task, states[task])
    inputs = {**inputs_for(config, task), **labels_for(config, task, inputs_for(config, task))}
    with torch.no_grad():
        got = model(**inputs, output_hidden_states=True, output_attentions=True, return_dict=False)
        want = oracles[task, "eager"](**inputs, output_hidden_states=True, output_attentions=True, return_dict=False)
    assert isinstance(got, tuple) and len(got) == len(want)
    for a, e in zip(got, want):
        if isinstance(e, tuple):
            for x, y in zip(a, e):
                assert_close(x, y)
        else:
            assert_close(a, e)


@pytest.mark.parametrize("task", TASKS)
def test_loss_and_gradients_match_reference(config, states, task):
    model = ours(config, task, states[task], "sdpa")
    ref = oracle_pt_model(config, task, states[task], "sdpa")
    inputs = inputs_for(config, task)
    labels = labels_for(config, task, inputs)
    if task == "base":
        loss_ours = model(**inputs).last_hidden_state.square().mean()
        loss_ref = ref(**inputs).last_hidden_state.square().mean()
    else:
        loss_ours, loss_ref = model(**inputs, **labels).loss, ref(**inputs, **labels).loss
        assert loss_ours.ndim == 0 and torch.isfinite(loss_ours)
    assert_close(loss_ours.detach(), loss_ref.detach(), name="loss")
    loss_ours.backward()
    loss_ref.backward()
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        if p.grad is None:
            assert ref_params[name].grad is None, name
            continue
        assert_close(p.grad, ref_params[name].grad, name=f"grad {name}")
    if task != "masked_lm":  # the padding row learns only through the tied projector, as in the reference
        assert torch.all(model.get_input_embeddings().weight.grad[config.pad_token_id] == 0)


@pytest.mark.parametrize(
    "problem,num_labels,dtype",
    [
        ("regression", 1, torch.float32),
        ("regression", 3, torch.float32),
        ("single_label_classification", 3, torch.long),
        ("multi_label_classification", 3, torch.float32),
        (None, 1, torch.float32),
        (None, 3, torch.long),
        (None, 3, torch.int32),
        (None, 3, torch.float32),
    ],
)
def test_sequence_classification_problem_types(problem, num_labels, dtype):
    config = tiny_config(num_labels=num_labels, problem_type=problem)
    state = random_state(config, "sequence_classification", seed=7)
    model = ours(config, "sequence_classification", state)
    ref = oracle_pt_model(config, "sequence_classification", state)
    inputs = inputs_for(config, "sequence_classification")
    g = torch.Generator().manual_seed(3)
    if dtype == torch.float32:
        shape = (3,) if num_labels == 1 else (3, num_labels)
        labels = torch.rand(shape, generator=g)
        if problem != "regression" and num_labels > 1:
            labels = labels.round()
    else:
        labels = torch.randint(0, num_labels, (3,), generator=g).to(dtype)
    got = model(**inputs, labels=labels)
    want = ref(**inputs, labels=labels.long() if dtype == torch.int32 else labels)  # the reference rejects int32
    assert_close(got.loss.detach(), want.loss.detach(), name="loss")
    assert model.config.problem_type == ref.config.problem_type  # recorded, as the reference does
    got.loss.backward()
    want.loss.backward()
    assert_close(model.classifier.weight.grad, ref.classifier.weight.grad)
    assert_close(
        model.distilbert.embeddings.word_embeddings.weight.grad, ref.distilbert.embeddings.word_embeddings.weight.grad
    )


def test_head_mask_matches_reference(config, states, oracles):
    model = ours(config, "base", states["base"], "sdpa")  # sdpa falls back to eager for a head mask
    inputs = inputs_for(config, "base")
    for head_mask in (torch.tensor([1.0, 0.0, 0.5, 1.0]), torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.25, 1.0]])):
        with torch.no_grad():
            want = oracles["base", "eager"](**inputs, head_mask=head_mask, output_attentions=True)
            compare_outputs(model(**inputs, head_mask=head_mask, output_attentions=True), want, "head_mask")


def test_inputs_embeds_match_reference(config, states, oracles):
    model = ours(config, "masked_lm", states["masked_lm"])
    inputs = inputs_for(config, "masked_lm")
    embeds = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 7, config.dim)).astype(np.float32))
    with torch.no_grad():
        compare_outputs(
            model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]),
            oracles["masked_lm", "eager"](inputs_embeds=embeds, attention_mask=inputs["attention_mask"]),
        )


def test_position_ids(config, states, oracles):
    model = ours(config, "base", states["base"])
    inputs = inputs_for(config, "base")
    with torch.no_grad():
        default = model(**inputs).last_hidden_state
        explicit = model(**inputs, position_ids=torch.arange(7)[None]).last_hidden_state
        assert torch.equal(default, explicit)
        shifted = torch.arange(7)[None] + 5
        got = model(**inputs, position_ids=shifted).last_hidden_state
        emb = model.distilbert.embeddings if hasattr(model, "distilbert") else model.embeddings
        embeds = (
            emb.word_embeddings(inputs["input_ids"])
            + emb.position_embeddings(shifted)
            - emb.position_embeddings(torch.arange(7))[None]
        )
        want = oracles["base", "eager"](inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).last_hidden_state
    assert_close(got, want)
    assert not torch.allclose(got, default)


def test_sinusoidal_and_relu_configs_match_reference():
    config = tiny_config(sinusoidal_pos_embds=True, activation="relu")
    state = random_state(config, "masked_lm", seed=11)
    ref = oracle_pt_model(config, "masked_lm", state)
    inputs = inputs_for(config, "masked_lm")
    labels = labels_for(config, "masked_lm", inputs)
    for impl in IMPLS:
        model = ours(config, "masked_lm", state, impl)
        compare_outputs(
            model(**inputs, **labels, output_hidden_states=True),
            ref(**inputs, **labels, output_hidden_states=True),
            impl,
        )


def test_untied_projector_matches_reference():
    config = tiny_config(tie_word_embeddings=False)
    state = random_state(config, "masked_lm", seed=5)
    assert not np.array_equal(state["vocab_projector.weight"], state["distilbert.embeddings.word_embeddings.weight"])
    model = ours(config, "masked_lm", state)
    assert model.vocab_projector.weight is not model.distilbert.embeddings.word_embeddings.weight
    ref = oracle_pt_model(config, "masked_lm", state)
    inputs = inputs_for(config, "masked_lm")
    with torch.no_grad():
        compare_outputs(model(**inputs), ref(**inputs))


def test_all_implementations_agree_on_fully_masked_row(config, states, oracles):
    inputs = inputs_for(config, "base")
    inputs["attention_mask"][2] = 0
    outs = []
    for impl in IMPLS:
        model = ours(config, "base", states["base"], impl)
        with torch.no_grad():
            outs.append(model(**inputs).last_hidden_state)
        assert torch.isfinite(outs[-1]).all(), impl
    for impl in IMPLS:  # the reference too averages every value there, in both implementations
        with torch.no_grad():
            want = oracles["base", impl](**inputs).last_hidden_state
        for got in outs:
            assert_close(got, want)


# ---------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def base_model(config, states):
    return ours(config, "base", states["base"])


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"input_ids": torch.tensor([[1, 99]])}, ValueError, "vocab_size=99"),
        ({"input_ids": torch.tensor([[1, -1]])}, ValueError, "vocab_size"),
        ({"input_ids": torch.ones(1, 65, dtype=torch.long)}, ValueError, "max_position_embeddings=64"),
        (
            {"input_ids": torch.ones(1, 3, dtype=torch.long), "inputs_embeds": torch.ones(1, 3, 32)},
            ValueError,
            "not both",
        ),
        ({}, ValueError, "input_ids or inputs_embeds"),
        ({"input_ids": torch.ones(3, dtype=torch.long)}, ValueError, r"\(batch, seq_len\)"),
        ({"input_ids": torch.ones(1, 2, 3, dtype=torch.long)}, ValueError, r"\(batch, seq_len\)"),
        ({"input_ids": torch.ones(1, 3)}, TypeError, "integer token ids"),
        ({"input_ids": [[1, 2, 3]]}, TypeError, "torch.Tensor"),
        ({"inputs_embeds": torch.ones(1, 3, 31)}, ValueError, "dim=32"),
        ({"inputs_embeds": torch.ones(1, 3, 32, dtype=torch.long)}, TypeError, "floating"),
        (
            {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 4)},
            ValueError,
            "attention_mask",
        ),
        (
            {"input_ids": torch.ones(1, 3, dtype=torch.long), "token_type_ids": torch.tensor([[0, 1, 0]])},
            ValueError,
            "no segment embeddings",
        ),
        (
            {"input_ids": torch.ones(1, 3, dtype=torch.long), "position_ids": torch.tensor([[0, 1, 64]])},
            ValueError,
            "position_ids",
        ),
    ],
)
def test_bad_input_raises_clearly(base_model, kwargs, error, match):
    with pytest.raises(error, match=match):
        base_model(**kwargs)


def test_zero_token_type_ids_are_accepted(base_model):
    ids = torch.tensor([[1, 5, 7]])
    with torch.no_grad():
        assert torch.equal(
            base_model(ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state, base_model(ids).last_hidden_state
        )


def test_multiple_choice_wants_three_axes(config, states):
    model = ours(config, "multiple_choice", states["multiple_choice"])
    with pytest.raises(ValueError, match="num_choices"):
        model(torch.ones(2, 5, dtype=torch.long))


def test_question_answering_needs_two_labels():
    with pytest.raises(ValueError, match="num_labels=2"):
        dpt.DistilBertForQuestionAnswering(tiny_config(num_labels=3))


def test_flash_attention_without_package_or_gpu_is_a_clear_error(config):
    with pytest.raises((ImportError, ValueError), match="flash_attention_2.*(flash_attn|CUDA)"):
        dpt.DistilBertModel(config, attn_implementation="flash_attention_2")
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        dpt.DistilBertModel(config, attn_implementation="xformers")


# --------------------------------------------------------------------------------- initialisation
def test_initialisation_as_reference():
    config = tiny_config(vocab_size=500, dim=64, n_heads=4, hidden_dim=256)
    torch.manual_seed(0)
    model = dpt.DistilBertForMaskedLM(config)
    word = model.distilbert.embeddings.word_embeddings.weight
    assert torch.all(word[config.pad_token_id] == 0)
    assert abs(word[1:].std().item() - 0.02) < 0.002
    lin = model.distilbert.transformer.layer[0].ffn.lin1
    assert abs(lin.weight.std().item() - 0.02) < 0.002 and torch.all(lin.bias == 0)
    ln = model.distilbert.transformer.layer[1].output_layer_norm
    assert torch.all(ln.weight == 1) and torch.all(ln.bias == 0) and ln.eps == 1e-12
    assert model.vocab_projector.weight is word  # tied
    assert torch.all(model.vocab_projector.bias == 0)
    assert model.num_parameters() == sum(
        int(np.prod(s.shape)) for s in weight_table(config, "masked_lm") if s.kind != "tied"
    )


def test_sinusoidal_table_is_fixed():
    config = tiny_config(sinusoidal_pos_embds=True)
    model = dpt.DistilBertModel(config)
    pos = model.embeddings.position_embeddings.weight
    assert not pos.requires_grad
    assert_close(pos.detach(), sinusoidal_table(64, 32))
    model(torch.tensor([[1, 2, 3]])).last_hidden_state.sum().backward()
    assert pos.grad is None


def test_state_dict_keys_are_canonical_names(config):
    for task in TASKS:
        model = CLASSES[task](config)
        table = weight_table(config, task)
        assert list(model.state_dict()) == [s.names["pt"] for s in table]
        assert [tuple(v.shape) for v in model.state_dict().values()] == [s.shape for s in table]


def test_canonical_state_round_trip(config, states):
    model = ours(config, "question_answering", states["question_answering"])
    state = canonical_state(model)
    assert set(state) == set(states["question_answering"])
    for k, v in state.items():
        assert np.array_equal(v, states["question_answering"][k]), k
    broken = dict(state)
    broken.pop("qa_outputs.bias")
    broken["qa_outputs.extra"] = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="qa_outputs.bias.*\n.*qa_outputs.extra"):
        load_canonical_state(model, broken)


def test_output_dataclass_indexing(config, states):
    model = ours(config, "sequence_classification", states["sequence_classification"])
    out = model(**inputs_for(config, "sequence_classification"), output_hidden_states=True)
    assert isinstance(out, SequenceClassifierOutput)
    assert out[0] is out.logits and out["logits"] is out.logits and "loss" not in out
    assert len(out.hidden_states) == config.n_layers + 1


# ----------------------------------------------------------------------------- training features
def test_resize_token_embeddings(config, states):
    model = ours(config, "masked_lm", states["masked_lm"])
    old = model.get_input_embeddings().weight.detach().clone()
    old_bias = model.vocab_projector.bias.detach().clone()
    emb = model.resize_token_embeddings(120, pad_to_multiple_of=8)
    assert emb.weight.shape == (120, 32) and model.config.vocab_size == 120
    assert model.distilbert.config.vocab_size == 120
    assert torch.equal(emb.weight[:99], old)
    assert torch.allclose(emb.weight[99:].mean(0), old.mean(0), atol=1e-3)  # mean resizing
    assert model.vocab_projector.weight is emb.weight
    assert torch.equal(model.vocab_projector.bias[:99], old_bias) and torch.all(model.vocab_projector.bias[99:] == 0)
    logits = model(torch.tensor([[1, 110, 119]])).logits
    assert logits.shape == (1, 3, 120)
    model.resize_token_embeddings(50, mean_resizing=False)
    assert model.vocab_projector.weight.shape == (50, 32) and torch.equal(model.get_input_embeddings().weight, old[:50])
    with pytest.raises(ValueError, match="vocab_size=50"):
        model(torch.tensor([[1, 60]]))


def test_resize_untied_projector():
    config = tiny_config(tie_word_embeddings=False)
    model = ours(config, "masked_lm", random_state(config, "masked_lm", seed=3))
    old_w = model.vocab_projector.weight.detach().clone()
    old_b = model.vocab_projector.bias.detach().clone()
    model.resize_token_embeddings(103)
    w, b = model.vocab_projector.weight, model.vocab_projector.bias
    assert w is not model.get_input_embeddings().weight and w.shape == (103, 32)
    assert torch.equal(w[:99], old_w) and torch.equal(b[:99], old_b)
    assert torch.allclose(b[99:], old_b.mean().expand(4))  # mean resizing, as the reference
    assert torch.allclose(w[99:].mean(0), old_w.mean(0), atol=1e-3)


def test_gradient_checkpointing_gives_same_gradients(config, states):
    inputs = inputs_for(config, "sequence_classification")
    labels = labels_for(config, "sequence_classification", inputs)
    grads = []
    for enable in (False, True):
        model = ours(config, "sequence_classification", states["sequence_classification"]).train()
        if enable:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        model(**inputs, **labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert_close(grads[1][name], grads[0][name], name=name)


def test_dropout_only_in_training():
    config = tiny_config(dropout=0.3, attention_dropout=0.3, seq_classif_dropout=0.3)
    model = dpt.DistilBertForSequenceClassification(config)
    inputs = inputs_for(config, "sequence_classification")
    model.eval()
    a, b = model(**inputs).logits, model(**inputs).logits
    assert torch.equal(a, b)
    model.train()
    torch.manual_seed(0)
    c = model(**inputs).logits
    assert not torch.allclose(a, c)


def test_training_loop_reduces_loss(config):
    torch.manual_seed(0)
    model = dpt.DistilBertForSequenceClassification(config).train()
    inputs = inputs_for(config, "sequence_classification")
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
def test_half_precision_close_to_float32(config, states, oracles, dtype):
    model = ours(config, "masked_lm", states["masked_lm"]).to(dtype)
    inputs = inputs_for(config, "masked_lm")
    with torch.no_grad():
        got = model(**inputs, **labels_for(config, "masked_lm", inputs))
        want = oracles["masked_lm", "eager"](**inputs, **labels_for(config, "masked_lm", inputs))
    assert got.logits.dtype == dtype and got.loss.dtype == torch.float32
    assert torch.isfinite(got.logits).all()
    # a half-precision model is not float32: the bound is its rounding, not the parity tolerance
    tol = 0.1 if dtype == torch.bfloat16 else 0.02
    assert (got.logits.float() - want.logits).abs().max() < tol * want.logits.abs().max()
    assert abs(got.loss.item() - want.loss.item()) < tol * want.loss.item()


def test_bfloat16_autocast(config, states, oracles):
    model = ours(config, "base", states["base"])
    inputs = inputs_for(config, "base")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(**inputs, output_attentions=True)
    want = oracles["base", "eager"](**inputs).last_hidden_state
    assert torch.isfinite(got.last_hidden_state).all()
    assert (got.last_hidden_state.float() - want).abs().max() < 0.1 * want.abs().max()


def test_torch_compile_fullgraph(config, states, oracles):
    # backend "aot_eager": traces through dynamo and AOTAutograd (graph breaks fail fullgraph=True)
    # without inductor's C++ compile, which is too slow for CI on two cores.
    torch._dynamo.reset()
    model = ours(config, "sequence_classification", states["sequence_classification"])
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    inputs = inputs_for(config, "sequence_classification")
    with torch.no_grad():
        got = compiled(**inputs)
        want = oracles["sequence_classification", "eager"](**inputs)
    assert_close(got.logits, want.logits)
    labels = torch.tensor([0, 1, 1])
    loss = compiled(**inputs, labels=labels).loss  # training under compile too, still one graph
    loss.backward()
    assert model.classifier.weight.grad is not None


def test_torch_export(config, states, oracles):
    model = ours(config, "question_answering", states["question_answering"])
    inputs = inputs_for(config, "question_answering")
    program = torch.export.export(model, (), kwargs=dict(inputs))
    with torch.no_grad():
        got = program.module()(**inputs)
        want = oracles["question_answering", "eager"](**inputs)
    assert_close(got.start_logits, want.start_logits)
    assert_close(got.end_logits, want.end_logits)


def test_fused_cpu_inference_path_matches_plain_path(config, states, oracles, monkeypatch):
    from distilbert.pt import ops

    model = ours(config, "masked_lm", states["masked_lm"])
    inputs = inputs_for(config, "masked_lm")
    with torch.no_grad():
        assert ops.fusable(torch.ones(2, 32), model.vocab_transform) == ops.FUSED
        fused = model(**inputs, output_hidden_states=True)
        with monkeypatch.context() as patch:
            patch.setattr(ops, "FUSED", False)
            assert not ops.fusable(torch.ones(2, 32), model.vocab_transform)
            plain = model(**inputs, output_hidden_states=True)
    compare_outputs(fused, plain)
    compare_outputs(fused, oracles["masked_lm", "sdpa"](**inputs, output_hidden_states=True))
    assert ops.FUSED == ops._has_fused_kernel()
    with torch.enable_grad():  # autograd never takes the fused kernels (they have no backward)
        assert not ops.fusable(torch.ones(2, 32), model.vocab_transform)
    model.train()
    with torch.no_grad():
        assert not ops.fusable(torch.ones(2, 32), model.vocab_transform)  # dropout may be on in training
