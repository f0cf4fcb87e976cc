"""``skip_padding``: the PyTorch encoder runs on a padded batch's real tokens only.

With ``skip_padding=True`` (a ``DistilBertModel`` call argument, or the ``skip_padding`` attribute of any
model) the products, LayerNorms and FFN see the real tokens packed into ``(1, N, dim)``, and attention runs
sequence by sequence. These tests check that the packed path is taken (the first FFN sees N rows), that
every output at a real token and every gradient equal the reference's (or the padded path's) at 1e-5,
and that the padded positions come out 0.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import (
    ATOL,
    assert_close,
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

from distilbert.common.names import TASK_CLASSES

CONFIG = tiny_config()
TOKEN_OUTPUTS = {"masked_lm": ("logits",), "token_classification": ("logits",), "question_answering": ()}
LABELLED = ("masked_lm", "token_classification", "sequence_classification", "multiple_choice")


def _inputs(task, batch=5, seq=9):
    inputs = task_inputs(CONFIG, task, batch=batch, seq=seq)
    labels = task_labels(CONFIG, task, inputs) if task in LABELLED else {}
    return inputs, labels


def _check_real_tokens(got: dict, want: dict, real: np.ndarray, task: str) -> None:
    """Every output equal at the real tokens (token-level ones there only), 0 at padded positions of the
    hidden states; the pooled heads' logits and every loss equal outright."""
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        if name == "last_hidden_state":
            assert_close(got[name][real], value[real], ATOL, name)
            assert not got[name][~real].any(), "padded positions are not 0"
        elif name in ("start_logits", "end_logits") or name in TOKEN_OUTPUTS.get(task, ()):
            assert_close(got[name][real], value[real], ATOL, name)
        else:
            assert_close(got[name], value, ATOL, name)


def _spy_rows(model):
    """The first block's FFN input shapes, as the model runs."""
    seen = []
    model.distilbert.transformer.layer[0].ffn.register_forward_hook(lambda m, a, o: seen.append(tuple(a[0].shape)))
    return seen


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("task", sorted(TASK_CLASSES))
def test_pt_skip_padding_matches_the_reference_at_real_tokens(task, impl):
    state = random_state(CONFIG, task)
    model = ours("pt", task, CONFIG, state, attn_implementation=impl).eval()
    model.skip_padding = True
    inputs, labels = _inputs(task)
    real = inputs["attention_mask"].astype(bool)
    encoder = model if task == "base" else model.distilbert
    seen = []
    encoder.transformer.layer[0].ffn.register_forward_hook(lambda m, a, o: seen.append(tuple(a[0].shape)))
    with torch.no_grad():
        got = numpy_outputs(model(**to_torch({**inputs, **labels})))
        want = numpy_outputs(oracle_pt_model(CONFIG, task, state)(**to_torch({**inputs, **labels})))
    assert seen == [(1, int(real.sum()), CONFIG.dim)], seen  # the packed rows, not B * T
    _check_real_tokens(got, want, real, task)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_pt_skip_padding_attends_neighbours_of_one_length_together(impl, monkeypatch):
    """Neighbouring sequences of one length are one attention call (lengths 5, 5, 3, 0, 5, 5: three
    calls per block), with the reference's numbers at the real tokens."""
    from distilbert.pt import modeling

    state = random_state(CONFIG, "base")
    model = ours("pt", "base", CONFIG, state, attn_implementation=impl).eval()
    inputs = task_inputs(CONFIG, "base", batch=6, seq=7)
    lengths = [5, 5, 3, 0, 5, 5]
    inputs["attention_mask"] = (np.arange(7)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    real = inputs["attention_mask"].astype(bool)
    batches = []
    kernel = modeling.eager_attention if impl == "eager" else modeling.F.scaled_dot_product_attention

    def spy(q, *args, **kwargs):
        batches.append(q.shape[0])
        return kernel(q, *args, **kwargs)

    if impl == "eager":
        monkeypatch.setattr(modeling, "eager_attention", spy)
    else:
        monkeypatch.setattr(modeling.F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        got = numpy_outputs(model(**to_torch(inputs), skip_padding=True))
    monkeypatch.undo()
    with torch.no_grad():
        want = numpy_outputs(oracle_pt_model(CONFIG, "base", state)(**to_torch(inputs)))
    assert batches == [2, 1, 2] * CONFIG.n_layers, batches
    _check_real_tokens(got, want, real, "base")


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("task", ["sequence_classification", "masked_lm", "multiple_choice"])
def test_pt_skip_padding_gradients_equal_the_padded_path(task, checkpointing):
    state = random_state(CONFIG, task)
    model = ours("pt", task, CONFIG, state).train()  # dropout 0 in the tiny config: the two paths compare
    if checkpointing:
        model.gradient_checkpointing_enable()
    inputs, labels = _inputs(task)
    args = to_torch({**inputs, **labels})
    seen = _spy_rows(model)

    def step(skip):
        model.skip_padding = skip
        model.zero_grad()
        out = model(**args)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    (loss_s, grads_s), (loss_p, grads_p) = step(True), step(False)
    mask = inputs["attention_mask"]
    assert seen[0] == (1, int(mask.sum()), CONFIG.dim)  # packed
    assert seen[-1][0] == mask.size // mask.shape[-1]  # padded: one row per sequence
    assert_close(loss_s, loss_p, ATOL, "loss")
    assert sorted(grads_s) == sorted(grads_p)
    for name in grads_p:
        assert_close(grads_s[name], grads_p[name], ATOL, name)
    assert any(g.abs().max() > 0 for g in grads_p.values())


def test_pt_skip_padding_hidden_states_attentions_and_head_mask():
    state = random_state(CONFIG, "base")
    model = ours("pt", "base", CONFIG, state).eval()
    inputs, _ = _inputs("base")
    args = to_torch(inputs)
    real = inputs["attention_mask"].astype(bool)
    head_mask = torch.tensor([[1.0, 0.0, 1.0, 0.5], [0.5, 1.0, 0.0, 1.0]])
    with torch.no_grad():
        got = model(**args, output_hidden_states=True, output_attentions=True, head_mask=head_mask, skip_padding=True)
        want = oracle_pt_model(CONFIG, "base", state)(
            **args, output_hidden_states=True, output_attentions=True, head_mask=head_mask
        )
    assert len(got.hidden_states) == len(want.hidden_states) == CONFIG.n_layers + 1
    for i, (g, w) in enumerate(zip(got.hidden_states, want.hidden_states)):
        assert_close(g.numpy()[real], w.numpy()[real], ATOL, f"hidden_states[{i}]")
        assert not g.numpy()[~real].any(), f"hidden_states[{i}] at padded positions"
    for i, (g, w) in enumerate(zip(got.attentions, want.attentions)):  # (B, H, T, T): the real query rows
        rows = np.broadcast_to(real[:, None, :], g.shape[:3])
        assert_close(g.numpy()[rows], w.numpy()[rows], ATOL, f"attentions[{i}]")


def test_pt_skip_padding_edge_cases():
    model = ours("pt", "base", CONFIG, random_state(CONFIG, "base")).eval()
    inputs, _ = _inputs("base")
    args = to_torch(inputs)
    with torch.no_grad():
        full = model(**args).last_hidden_state
        ones = torch.ones_like(args["attention_mask"])  # no padding: the plain path, the same numbers
        assert torch.equal(model(args["input_ids"], ones, skip_padding=True)[0], model(args["input_ids"], ones)[0])
        assert torch.equal(model(args["input_ids"], skip_padding=True)[0], model(args["input_ids"])[0])
        mask = args["attention_mask"].clone()
        mask[2] = 0  # one sequence with no real token at all
        skipped = model(args["input_ids"], mask, skip_padding=True).last_hidden_state
        plain = model(args["input_ids"], mask).last_hidden_state
        keep = mask.bool()
        assert_close(skipped[keep], plain[keep], ATOL, "the other rows")
        assert not skipped[2].any() and torch.isfinite(skipped).all()
        assert_close(skipped[keep], full[keep], ATOL, "rows unchanged by row 2's mask")

    classifier = ours("pt", "sequence_classification", CONFIG, random_state(CONFIG, "sequence_classification"))
    classifier.eval().skip_padding = True
    left = args["attention_mask"].clone()
    left[1, :3] = 0  # left padding: row 1's first token is padding
    with torch.no_grad():
        got = classifier(args["input_ids"], left).logits
        classifier.skip_padding = False
        want = classifier(args["input_ids"], left).logits
    others = [0, 2, 3, 4]
    assert_close(got[others], want[others], ATOL, "rows whose first token is real")
    assert torch.isfinite(got).all()


def test_pt_skip_padding_in_the_inference_kernels_and_int8(monkeypatch):
    """No-grad eval (the fused oneDNN kernels, packed weights) and the int8 copy take the packed rows too."""
    from distilbert.pt import ops, quantize

    monkeypatch.setattr(ops, "PACK_WEIGHTS", True)
    config = tiny_config(dim=64, hidden_dim=96, n_layers=3)
    model = ours("pt", "base", config, random_state(config, "base")).eval()
    inputs, _ = _inputs("base", batch=6, seq=12)
    args = to_torch(inputs)
    keep = args["attention_mask"].bool()
    fast = quantize(model, "int8")
    with torch.inference_mode():
        assert_close(model(**args, skip_padding=True)[0][keep], model(**args)[0][keep], ATOL, "float32")
        a, b = fast(**args, skip_padding=True)[0], fast(**args)[0]
    # int8: the rows are quantised one by one, so only attention's rounding differs between the two
    cosine = torch.nn.functional.cosine_similarity(a[keep], b[keep], dim=-1)
    assert float(cosine.min()) > 0.9999 and not a[~keep].any()
    # a first-token head: the int8 joint q/k/v product's query rows come from the packed rows
    head = ours("pt", "sequence_classification", config, random_state(config, "sequence_classification"))
    fast_head = quantize(head.eval(), "int8")
    with torch.inference_mode():
        plain = fast_head(**args).logits
        fast_head.skip_padding = True
        packed = fast_head(**args).logits
    assert_close(packed, plain, 1e-3 * float(plain.abs().max()), "int8 logits")


def test_pt_skip_padding_is_off_in_a_traced_graph():
    """A graph would fix the number of real tokens to the example's; traced, the padded path runs."""
    model = ours("pt", "base", CONFIG, random_state(CONFIG, "base")).eval()
    model.skip_padding = True
    inputs, _ = _inputs("base")
    args = to_torch(inputs)
    with torch.no_grad():
        # check_trace off: it reruns the model untraced, which skips the padding (0 there), and warns
        traced = torch.jit.trace(first_output(model), (args["input_ids"], args["attention_mask"]), check_trace=False)
        other = args["attention_mask"].clone()
        other[0, 4:] = 0  # another number of real tokens than the example's
        got = traced(args["input_ids"], other)
        model.skip_padding = False
        want = model(args["input_ids"], other)[0]
    assert_close(got, want, ATOL, "traced")


@pytest.mark.parametrize(
    "task,name,call",
    [
        ("masked_lm", "fill-mask", lambda p: p(["the [MASK] sat.", "a cat sat on the red [MASK] in paris."], top_k=3)),
        ("token_classification", "token-classification", lambda p: p(["a cat", "the red house in paris sat"])),
        ("sequence_classification", "text-classification", lambda p: p(["a good day", "the red house in paris"])),
    ],
)
def test_pt_pipelines_skip_the_padding_of_their_batches(task, name, call, tmp_path):
    from helpers import write_tiny_checkpoint

    import distilbert.pt as dpt
    from distilbert.pipelines import pipeline

    write_tiny_checkpoint(str(tmp_path), task, seed=5)
    model = getattr(dpt, TASK_CLASSES[task]).from_pretrained(str(tmp_path))
    seen = _spy_rows(model)
    got = call(pipeline(name, model=model, tokenizer=str(tmp_path), batch_size=2))
    assert seen and seen[0][0] == 1, seen  # packed rows: the batch had padding
    assert model.skip_padding is False  # the model's own setting is left alone
    one_by_one = call(pipeline(name, model=model, tokenizer=str(tmp_path), batch_size=1))  # no padding
    assert repr(got) == repr(one_by_one) or _close(got, one_by_one)


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_tf_and_flax_pipelines_skip_the_padding_of_their_batches(framework, tmp_path, monkeypatch):
    import importlib

    from helpers import write_tiny_checkpoint

    from distilbert.frameworks import from_pretrained
    from distilbert.pipelines import pipeline

    modeling = importlib.import_module(f"distilbert.{framework}.modeling")
    made = []

    class Counted(modeling.Packing):
        def __init__(self, *args):
            made.append(1)
            super().__init__(*args)

    monkeypatch.setattr(modeling, "Packing", Counted)
    write_tiny_checkpoint(str(tmp_path), "token_classification", seed=5)
    model = from_pretrained(framework, "token_classification", str(tmp_path))
    texts = ["a cat", "the red house in paris sat", "a dog"]
    got = pipeline("token-classification", model=model, tokenizer=str(tmp_path), batch_size=4)(texts)
    assert made and model.skip_padding is False  # packed (traced with it); the model's setting left alone
    one_by_one = pipeline("token-classification", model=model, tokenizer=str(tmp_path), batch_size=1)(texts)
    assert repr(got) == repr(one_by_one) or _close(got, one_by_one)


def _close(a, b):
    if isinstance(a, dict):
        return sorted(a) == sorted(b) and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= 1e-5
    return a == b


# ------------------------------------------------------------------------------ TensorFlow
def _tf_spy_rows(encoder):
    """The first block's FFN input shapes, as the TF model runs (eager)."""
    ffn = encoder.transformer.layer[0].ffn
    seen, call = [], ffn.call

    def spy(x, *args, **kwargs):
        seen.append(tuple(x.shape))
        return call(x, *args, **kwargs)

    ffn.call = spy
    return seen


@pytest.mark.parametrize("task", sorted(TASK_CLASSES))
def test_tf_skip_padding_matches_the_padded_path_at_real_tokens(task):
    """Against our own padded TF path (whose parity with the reference is ``test_models.py``'s)."""
    from helpers import call

    state = random_state(CONFIG, task)
    model = ours("tf", task, CONFIG, state)
    inputs, labels = _inputs(task)
    real = inputs["attention_mask"].astype(bool)
    seen = _tf_spy_rows(model if task == "base" else model.distilbert)
    want = numpy_outputs(call("tf", model, {**inputs, **labels}))
    model.skip_padding = True
    got = numpy_outputs(call("tf", model, {**inputs, **labels}))
    assert seen[-1] == (int(real.sum()), CONFIG.dim), seen  # the packed rows, not B * T
    _check_real_tokens(got, want, real, task)


@pytest.mark.parametrize("task", ["sequence_classification", "masked_lm"])
def test_tf_skip_padding_gradients_equal_the_padded_path(task):
    import tensorflow as tf

    model = ours("tf", task, CONFIG, random_state(CONFIG, task))
    inputs, labels = _inputs(task)

    def grads(skip):
        model.skip_padding = skip
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model({**inputs, **labels}, training=True).loss)
        grads = tape.gradient(loss, model.trainable_variables)
        return loss, {v.path: tf.convert_to_tensor(g) for v, g in zip(model.trainable_variables, grads)}

    (loss_s, g_s), (loss_p, g_p) = grads(True), grads(False)
    assert_close(loss_s, loss_p, ATOL, "loss")
    for name, g in g_p.items():
        assert_close(g_s[name], g, ATOL, name)
    assert any(np.abs(np.asarray(g)).max() > 0 for g in g_p.values())


def test_tf_skip_padding_in_a_graph_hidden_states_and_fully_padded_rows():
    """One traced graph serves masks with different numbers of real tokens; hidden states are 0 at padding."""
    import tensorflow as tf

    model = ours("tf", "base", CONFIG, random_state(CONFIG, "base"))
    inputs, _ = _inputs("base")
    traces = []

    def encode(ids, mask):
        traces.append(1)  # runs once per trace
        return model(ids, attention_mask=mask, skip_padding=True).last_hidden_state

    graph = tf.function(encode)
    other = inputs["attention_mask"].copy()
    other[0, 3:] = 0
    other[2] = 0  # a sequence with no real token at all
    for mask in (inputs["attention_mask"], other):
        got = graph(inputs["input_ids"], mask).numpy()
        want = model(inputs["input_ids"], attention_mask=mask).last_hidden_state.numpy()
        keep = mask.astype(bool)
        assert_close(got[keep], want[keep], ATOL, "graph")
        assert not got[~keep].any() and np.isfinite(got).all()
    assert len(traces) == 1  # one graph, whatever the number of real tokens
    out = model(inputs["input_ids"], attention_mask=inputs["attention_mask"], output_hidden_states=True)
    packed = model(
        inputs["input_ids"], attention_mask=inputs["attention_mask"], output_hidden_states=True, skip_padding=True
    )
    real = inputs["attention_mask"].astype(bool)
    for i, (g, w) in enumerate(zip(packed.hidden_states, out.hidden_states)):
        assert_close(g.numpy()[real], w.numpy()[real], ATOL, f"hidden_states[{i}]")
        assert not g.numpy()[~real].any()


# ------------------------------------------------------------------------------ JAX/Flax
@pytest.mark.parametrize("task", sorted(TASK_CLASSES))
def test_flax_skip_padding_matches_the_padded_path_at_real_tokens(task):
    """Against our own padded Flax path (whose parity with the reference is ``test_models.py``'s)."""
    from helpers import call

    model = ours("flax", task, CONFIG, random_state(CONFIG, task))
    inputs, labels = _inputs(task)
    real = inputs["attention_mask"].astype(bool)
    want = numpy_outputs(call("flax", model, {**inputs, **labels}))
    model.skip_padding = True
    got = numpy_outputs(call("flax", model, {**inputs, **labels}))
    _check_real_tokens(got, want, real, task)


def test_flax_skip_padding_packs_the_rows_under_jit_with_a_static_count(monkeypatch):
    import jax.numpy as jnp
    from flax import nnx

    from distilbert.flax import modeling

    model = ours("flax", "base", CONFIG, random_state(CONFIG, "base"))
    inputs, _ = _inputs("base")
    ids, mask = jnp.asarray(inputs["input_ids"]), jnp.asarray(inputs["attention_mask"])
    real = inputs["attention_mask"].astype(bool)
    want = np.asarray(model(ids, attention_mask=mask).last_hidden_state)
    packed = []
    monkeypatch.setattr(
        modeling.Packing, "pack", lambda self, t, f=modeling.Packing.pack: packed.append(1) or f(self, t)
    )

    @nnx.jit
    def encode(model, ids, mask):
        return model(ids, attention_mask=mask).last_hidden_state

    rows = int(real.sum()) + 5  # room for a few more tokens: 5 dummy rows
    model.skip_padding = rows
    got = np.asarray(encode(model, ids, mask))
    assert packed, "the packed path was not taken"
    assert_close(got[real], want[real], ATOL, "jit")
    assert not got[~real].any()
    model.skip_padding = real.size + 10  # more rows than the batch has: packed into B * T, still 0 at padding
    roomy = np.asarray(encode(model, ids, mask))
    assert_close(roomy[real], want[real], ATOL, "roomy")
    assert not roomy[~real].any()
    model.skip_padding = int(real.sum()) - 1  # too few rows: under jit the outputs are NaN, not wrong
    assert np.isnan(np.asarray(encode(model, ids, mask))).all()
    model.skip_padding = True  # counting needs a concrete mask
    with pytest.raises(ValueError, match="static number of rows"):
        encode(model, ids, mask)
    with pytest.raises(ValueError, match="real tokens; give a larger"):  # eager: checked
        model(ids, attention_mask=mask, skip_padding=3)
    with pytest.raises(ValueError, match="skip_padding takes"):
        model(ids, attention_mask=mask, skip_padding=-2)


@pytest.mark.parametrize("remat", [False, True])
@pytest.mark.parametrize("task", ["sequence_classification", "masked_lm"])
def test_flax_skip_padding_gradients_and_hidden_states_equal_the_padded_path(task, remat):
    from helpers import gradients

    model = ours("flax", task, CONFIG, random_state(CONFIG, task), remat=remat)
    inputs, labels = _inputs(task)
    want = gradients("flax", model, {**inputs, **labels}, CONFIG, task)
    model.skip_padding = True
    got = gradients("flax", model, {**inputs, **labels}, CONFIG, task)
    for name, g in want.items():
        assert_close(got[name], g, ATOL, name)
    real = inputs["attention_mask"].astype(bool)
    full = model(**inputs, output_hidden_states=True, skip_padding=False).hidden_states
    packed = model(**inputs, output_hidden_states=True).hidden_states
    for i, (g, w) in enumerate(zip(packed, full)):
        assert_close(np.asarray(g)[real], np.asarray(w)[real], ATOL, f"hidden_states[{i}]")
        assert not np.asarray(g)[~real].any()
