"""``distilbert.pt.quantize`` (int8) and the packed-weight inference path of ``distilbert.pt.ops``.

int8 outputs are compared with the float32 model by cosine (int8 is not float32: no 1e-5 here), on a
config small enough to be fast but wide enough (dim 64, 3 layers) that quantisation error shows.
"""

from __future__ import annotations

import copy
import inspect
import pickle

import numpy as np
import pytest
import torch
from helpers import SAME_ATOL, assert_close, random_state, task_inputs, tiny_config, to_torch, write_tiny_checkpoint

import distilbert.pt as dpt
from distilbert.common.names import TASK_CLASSES
from distilbert.pipelines import pipeline
from distilbert.pt import ops
from distilbert.pt.quantize import Int8Linear

TASKS = list(TASK_CLASSES)
CONFIG = dict(dim=64, n_layers=3, n_heads=4, hidden_dim=96, num_labels=3)


def build(task, seed=0, **overrides):
    labels = {"num_labels": 2} if task == "question_answering" else {}
    config = tiny_config(**{**CONFIG, **labels, **overrides})
    model = getattr(dpt, TASK_CLASSES[task])(config).eval()
    model.load_canonical_state(random_state(config, task, seed))
    return model


def outputs(model, inputs, **flags):
    with torch.inference_mode():
        out = model(**to_torch(inputs), **flags)
    return {k: v for k, v in out.items() if v is not None}


def cosine(a, b) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def models():
    """Each head's float32 model and its int8 copy."""
    out = {}
    for task in TASKS:
        model = build(task)
        out[task] = (model, dpt.quantize(model, "int8"))
    return out


@pytest.mark.parametrize("task", TASKS)
def test_int8_outputs_are_close_to_float32(task, models):
    model, q = models[task]
    inputs = task_inputs(model.config, task, batch=4, seq=11)
    expected, actual = outputs(model, inputs), outputs(q, inputs)
    assert list(actual) == list(expected)  # the same fields, in order
    for name, value in expected.items():
        assert actual[name].shape == value.shape and actual[name].dtype == torch.float32
        if name == "last_hidden_state":  # each token's vector, padded positions included
            per_token = torch.nn.functional.cosine_similarity(actual[name], value, dim=-1)
            assert per_token.min() > 0.99, per_token.min()
        else:
            assert cosine(actual[name], value) > 0.99, (name, cosine(actual[name], value))
        assert not torch.equal(actual[name], value)  # it does run something else than float32


@pytest.mark.parametrize("task", TASKS)
def test_int8_model_keeps_class_signature_and_flags(task, models):
    model, q = models[task]
    assert type(q) is type(model) and q.task == model.task and q.quantized == "int8"
    assert inspect.signature(q.forward) == inspect.signature(model.forward)
    assert not any(p.requires_grad for p in q.parameters())
    inputs = task_inputs(model.config, task, batch=2, seq=5)
    flags = dict(output_hidden_states=True, output_attentions=True)
    expected, actual = outputs(model, inputs, **flags), outputs(q, inputs, **flags)
    assert list(actual) == list(expected)
    for a, e in zip(actual["attentions"], expected["attentions"]):
        assert a.shape == e.shape and cosine(a, e) > 0.99
    with torch.inference_mode():
        as_tuple = q(**to_torch(inputs), return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(outputs(q, inputs))


def test_int8_layers_are_the_products_only(models):
    model, q = models["masked_lm"]
    kinds = {name: type(m).__name__ for name, m in q.named_modules()}
    layer = q.distilbert.transformer.layer[0]
    assert isinstance(layer.attention.qkv, Int8Linear) and layer.attention.qkv.out_features == 3 * model.config.dim
    assert not hasattr(layer.attention, "q_lin")
    for name in ("attention.out_lin", "ffn.lin1", "ffn.lin2"):
        assert kinds[f"distilbert.transformer.layer.0.{name}"] == "Int8Linear"
    assert isinstance(q.vocab_projector, Int8Linear)
    assert kinds["distilbert.embeddings.LayerNorm"] == "LayerNorm" and kinds["vocab_layer_norm"] == "LayerNorm"
    assert isinstance(models["sequence_classification"][1].classifier, torch.nn.Linear)  # the logits stay float


def test_int8_inputs_are_quantized_row_by_row():
    """One row of huge activations does not cost the small rows their precision (a scale over the
    whole input, as before, leaves the small row a level or two and fails this)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    layer = Int8Linear(linear)
    x = torch.randn(3, 64)
    x[0] *= 1000.0  # e.g. a [SEP] token of a real network
    x[2] = x[2].abs()  # all positive, as after a ReLU: the row's zero point moves
    with torch.inference_mode():
        got, want = layer(x), linear(x)
    for row in range(3):
        error = (got[row] - want[row]).norm() / want[row].norm()
        assert error < 0.02, (row, float(error))
    with torch.inference_mode():  # and each row's output does not depend on the others
        torch.testing.assert_close(layer(x[1:2]), got[1:2], atol=1e-6, rtol=0)


def test_int8_row_codes_round_to_nearest_and_span_0_to_255():
    """Every code is the nearest level of its value (within a rounding tie), the row's least value
    maps near 0 and its greatest near 254, and nothing wraps past 255 (a code off by 256 would show
    as an error of ~255 scales), for mixed, one-signed, zero, tiny and huge rows."""
    from distilbert.pt.quantize import _quantize_rows

    g = torch.Generator().manual_seed(3)
    rows = [
        torch.randn(200, generator=g),
        torch.rand(200, generator=g),  # all positive: zero point 0
        -torch.rand(200, generator=g),  # all negative: zero point 254
        torch.zeros(200),
        torch.randn(200, generator=g) * 1e-30,
        torch.randn(200, generator=g) * 1e30,
        torch.linspace(-3.0, 5.0, 200),  # the extremes and many ties in between
    ]
    x = torch.stack(rows)  # (7, 200)
    codes, scale, zero = _quantize_rows(x)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape and scale.shape == zero.shape == (7, 1)
    back = (codes.double() - zero.double()) * scale.double()  # (7, 200)
    error = (back - x.double()).abs() / scale.double()  # in levels
    assert float(error.max()) <= 0.5 + 1e-3, float(error.max())
    spread = codes.amax(dim=1).int() - codes.amin(dim=1).int()  # (7,)
    assert spread[[0, 5, 6]].tolist() == [254] * 3, spread.tolist()  # rows spanning 0: the full range
    assert int(codes[1].max()) == 254 and int(zero[1]) == 0 and int(codes[2].min()) == 0 and int(zero[2]) == 254
    assert codes[3].eq(codes[3, 0]).all()


def test_int8_consumed_inputs_are_quantised_in_place_with_the_same_result():
    """``consume=True`` (the caller reads its input no more) quantises in the input's own memory; without
    it the input is left as it was. Both give the same numbers."""
    torch.manual_seed(2)
    layer, x = Int8Linear(torch.nn.Linear(32, 40)), torch.randn(2, 5, 32)
    before = x.clone()
    with torch.inference_mode():
        kept = layer(x, activation="gelu")
        assert torch.equal(x, before)  # not consumed: untouched
        consumed = layer(x, activation="gelu", consume=True)
    assert torch.equal(consumed, kept)
    assert not torch.equal(x, before)  # the in-place path was taken


def test_int8_fused_epilogues_match_their_float_forms():
    torch.manual_seed(1)
    linear = torch.nn.Linear(32, 40)
    layer, x, residual = Int8Linear(linear), torch.randn(2, 5, 32), torch.randn(2, 5, 40)
    with torch.inference_mode():
        plain = layer(x)
        torch.testing.assert_close(layer(x, activation="gelu"), torch.nn.functional.gelu(plain), atol=1e-6, rtol=0)
        torch.testing.assert_close(layer(x, activation="relu"), plain.relu(), atol=1e-6, rtol=0)
        torch.testing.assert_close(layer(x, residual=residual), plain + residual, atol=1e-6, rtol=0)
        assert (layer(x) - linear(x)).abs().max() < 0.02 * linear(x).abs().max()
        assert layer(torch.zeros(0, 32)).shape == (0, 40)
        torch.testing.assert_close(layer(torch.zeros(1, 32)), linear.bias[None].expand(1, 40), atol=1e-6, rtol=0)


def test_quantize_leaves_the_original_unchanged():
    model = build("sequence_classification", seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = task_inputs(model.config, "sequence_classification")
    expected = outputs(model, inputs)["logits"]
    dpt.quantize(model, "int8")
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], v) for k, v in before.items())
    assert isinstance(model.distilbert.transformer.layer[0].attention.q_lin, torch.nn.Linear)
    assert_close(outputs(model, inputs)["logits"].numpy(), expected.numpy(), SAME_ATOL)


def test_quantize_takes_bfloat16_and_training_models():
    model = build("base", seed=4)
    inputs = task_inputs(model.config, "base")
    expected = outputs(model, inputs)["last_hidden_state"]
    bf16 = copy.deepcopy(model).to(torch.bfloat16).train()
    q = dpt.quantize(bf16, "int8")
    assert not q.training and bf16.training and next(bf16.parameters()).dtype == torch.bfloat16
    assert cosine(outputs(q, inputs)["last_hidden_state"], expected) > 0.99


def test_int8_model_copies_and_pickles(models):
    _, q = models["token_classification"]
    inputs = task_inputs(q.config, "token_classification")
    expected = outputs(q, inputs)["logits"]
    for clone in (copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
        assert_close(outputs(clone, inputs)["logits"].numpy(), expected.numpy(), SAME_ATOL)
    with torch.no_grad():  # no_grad as well as inference_mode
        assert_close(q(**to_torch(inputs)).logits.numpy(), expected.numpy(), SAME_ATOL)


def test_int8_model_cannot_be_saved_as_a_checkpoint(models, tmp_path):
    with pytest.raises(RuntimeError, match="does not list"):
        models["base"][1].save_pretrained(str(tmp_path / "out"))


def test_bad_quantize_arguments_are_named(models):
    model = models["base"][0]
    with pytest.raises(ValueError, match=r"unknown quantisation 'foo'.*'int8'"):
        dpt.quantize(model, "foo")
    with pytest.raises(ValueError, match="'int8'"):
        dpt.quantize(model, "int4")
    with pytest.raises(TypeError, match="distilbert.pt"):
        dpt.quantize(torch.nn.Linear(3, 3), "int8")
    with pytest.raises(ValueError, match="'gelu' or 'relu'"):
        models["base"][1].transformer.layer[0].ffn.lin1(torch.zeros(1, 64), activation="tanh")


@pytest.fixture(scope="module")
def checkpoint_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantized_pipelines")
    out = {}
    for task in ("masked_lm", "sequence_classification", "question_answering"):
        directory = str(root / task)
        write_tiny_checkpoint(directory, task, seed=5, **{k: v for k, v in CONFIG.items() if k != "num_labels"})
        out[task] = directory
    return out


@pytest.mark.parametrize(
    "task,name,call",
    [
        ("masked_lm", "fill-mask", lambda p: p("the cat sat on the [MASK].", top_k=3)),
        ("sequence_classification", "text-classification", lambda p: p(["a good day", "the red house in paris"])),
        ("question_answering", "question-answering", lambda p: p(question="who sat?", context="the cat sat.")),
    ],
)
def test_pipelines_run_on_an_int8_model(task, name, call, checkpoint_dirs):
    directory = checkpoint_dirs[task]
    model = getattr(dpt, TASK_CLASSES[task]).from_pretrained(directory)
    expected = call(pipeline(name, model=model, tokenizer=directory))
    actual = call(pipeline(name, model=dpt.quantize(model, "int8"), tokenizer=directory))
    assert type(actual) is type(expected)
    flat_a = actual if isinstance(actual, list) else [actual]
    flat_e = expected if isinstance(expected, list) else [expected]
    assert [sorted(r) for r in flat_a] == [sorted(r) for r in flat_e]
    scores_a = np.array([r["score"] for r in flat_a])
    scores_e = np.array([r["score"] for r in flat_e])
    assert np.abs(scores_a - scores_e).max() < 0.05  # near, not equal: int8


# ------------------------------------------------------- float path: weights packed once for oneDNN
def fresh(model):
    """A new model holding ``model``'s current weights (no packs yet)."""
    other = type(model)(model.config).eval()
    other.load_state_dict(model.state_dict())
    return other


def hidden(model, inputs):
    return outputs(model, inputs)["last_hidden_state"].float().numpy()


@pytest.fixture
def packing(monkeypatch):
    monkeypatch.setattr(ops, "PACK_WEIGHTS", True)


def test_packing_is_off_by_default_so_edits_through_data_are_seen():
    # p.data.mul_ does not advance p's version counter: a pack keyed on it would keep the old weight.
    assert ops.PACK_WEIGHTS is False
    model = build("masked_lm", seed=9)
    inputs = task_inputs(model.config, "masked_lm")
    before = outputs(model, inputs)["logits"].numpy()
    with torch.no_grad():
        model.distilbert.transformer.layer[0].ffn.lin1.weight.data.mul_(2.0)
    after = outputs(model, inputs)["logits"].numpy()
    assert_close(after, outputs(fresh(model), inputs)["logits"].numpy(), SAME_ATOL, "after an edit through .data")
    assert not np.allclose(after, before, atol=1e-3)


def test_packed_weights_follow_load_state_dict_and_optimizer_steps(packing):
    model = build("base", seed=6)
    inputs = task_inputs(model.config, "base")
    hidden(model, inputs)  # packs the weights
    model.load_state_dict(build("base", seed=7).state_dict())  # in-place copies into the same tensors
    assert_close(hidden(model, inputs), hidden(fresh(model), inputs), SAME_ATOL, "after load_state_dict")
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(**to_torch(inputs)).last_hidden_state.square().mean().backward()
    opt.step()
    model.eval()
    assert_close(hidden(model, inputs), hidden(fresh(model), inputs), SAME_ATOL, "after an optimizer step")


def test_packed_weights_follow_dtype_changes(packing):
    model = build("base", seed=8)
    inputs = task_inputs(model.config, "base")
    hidden(model, inputs)
    model.to(torch.bfloat16)
    hidden(model, inputs)
    model.to(torch.float32)  # the bfloat16-rounded weights, perhaps at the old addresses
    assert_close(hidden(model, inputs), hidden(fresh(model), inputs), SAME_ATOL, "after bfloat16 and back")


def test_packing_leaves_a_model_made_under_inference_mode_unpacked(packing):
    """Inference tensors have no version counter: such a model runs, unpacked, and sees an in-place load."""
    inputs = to_torch(task_inputs(tiny_config(**CONFIG), "base"))
    with torch.inference_mode():
        model = build("base", seed=6)
        first = model(**inputs).last_hidden_state
        model.load_state_dict(build("base", seed=7).state_dict())
        got = model(**inputs).last_hidden_state
        want = fresh(model)(**inputs).last_hidden_state
    assert_close(got, want, SAME_ATOL, "after an in-place load under inference mode")
    assert not torch.allclose(got, first, atol=1e-3)


def test_packing_does_not_change_the_numbers_or_the_state(monkeypatch):
    monkeypatch.setattr(ops, "PACK_WEIGHTS", True)
    model = build("masked_lm", seed=9)
    names = list(model.state_dict())
    inputs = task_inputs(model.config, "masked_lm")
    packed = outputs(model, inputs)["logits"].numpy()
    monkeypatch.setattr(ops, "PACK_WEIGHTS", False)
    assert_close(outputs(model, inputs)["logits"].numpy(), packed, 1e-5, "packed vs plain weights")
    assert list(model.state_dict()) == names
    copy.deepcopy(model)  # the packs live outside the module
