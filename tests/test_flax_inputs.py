"""Flax NNX backend: bad input meets a clear error before anything is traced; defined behaviour in jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import random_inputs, tiny_config

from distilbert.flax import (
    FlaxDistilBertForMultipleChoice,
    FlaxDistilBertForQuestionAnswering,
    FlaxDistilBertForSequenceClassification,
    FlaxDistilBertModel,
)


@pytest.fixture(scope="module")
def config():
    return tiny_config()


@pytest.fixture(scope="module")
def model(config):
    return FlaxDistilBertForSequenceClassification(config)


@pytest.fixture(scope="module")
def inputs(config):
    return random_inputs(config, batch=3, seq=7)


@pytest.mark.parametrize("bad", [99, 1000, -1])
def test_ids_outside_vocabulary(model, inputs, bad):
    ids = inputs["input_ids"].copy()
    ids[0, 2] = bad
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, vocab_size=99\)"):
        model(ids, inputs["attention_mask"])
    with pytest.raises(ValueError, match="vocab_size"):
        model(jnp.asarray(ids))  # jax arrays are checked too when concrete


def test_sequence_longer_than_position_table(model, config):
    ids = np.ones((2, config.max_position_embeddings + 1), np.int32)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=64"):
        model(ids)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=64"):  # shapes are static: also in jit
        nnx.jit(lambda m, i: m(i).logits)(model, ids)
    model(ids[:, :-1])  # exactly the table's length is fine


def test_input_ids_and_inputs_embeds(model, inputs, config):
    embeds = np.zeros((3, 7, config.dim), np.float32)
    with pytest.raises(ValueError, match="either input_ids or inputs_embeds, not both"):
        model(inputs["input_ids"], inputs_embeds=embeds)
    with pytest.raises(ValueError, match="pass input_ids or inputs_embeds"):
        model(attention_mask=inputs["attention_mask"])
    with pytest.raises(ValueError, match="last axis must be dim=32"):
        model(inputs_embeds=np.zeros((3, 7, 5), np.float32))


def test_wrong_ranks(model, config, inputs):
    with pytest.raises(ValueError, match=r"shape \(batch, seq_len\)"):
        model(np.ones((7,), np.int32))
    with pytest.raises(ValueError, match=r"shape \(batch, seq_len\)"):
        model(np.ones((2, 3, 7), np.int32))
    mc = FlaxDistilBertForMultipleChoice(config)
    with pytest.raises(ValueError, match=r"\(batch, num_choices, seq_len\)"):
        mc(inputs["input_ids"])
    with pytest.raises(ValueError, match="attention_mask must have the shape of the input ids"):
        model(inputs["input_ids"], np.ones((3, 6), np.int32))
    with pytest.raises(ValueError, match="head_mask must have shape"):
        model(inputs["input_ids"], head_mask=np.ones((3,), np.float32))
    with pytest.raises(ValueError, match="position_ids must have the shape"):
        model(inputs["input_ids"], position_ids=np.arange(6))
    with pytest.raises(ValueError, match=r"position_ids must be in \[0, max_position_embeddings=64\)"):
        model(inputs["input_ids"], position_ids=np.arange(7) + 60)


def test_wrong_dtypes(model, inputs):
    with pytest.raises(TypeError, match="input_ids must be integer ids, got float32"):
        model(inputs["input_ids"].astype(np.float32))
    with pytest.raises(TypeError, match="inputs_embeds must be floats"):
        model(inputs_embeds=np.zeros((3, 7, 32), np.int32))
    with pytest.raises(TypeError, match="distilbert.DistilBertConfig"):
        FlaxDistilBertModel({"dim": 32})


def test_token_type_ids(model, inputs):
    types = np.zeros_like(inputs["input_ids"])
    model(**inputs, token_type_ids=types)  # all zeros: accepted (BERT tokenizers return them)
    types[1, 2] = 1
    with pytest.raises(ValueError, match="DistilBERT has no segment embeddings"):
        model(**inputs, token_type_ids=types)


def test_labels_for_the_wrong_class(config, model, inputs):
    with pytest.raises(TypeError, match="no labels"):
        FlaxDistilBertModel(config)(**inputs, labels=np.zeros((3,), np.int32))
    with pytest.raises(TypeError, match="start_positions and end_positions, not labels"):
        FlaxDistilBertForQuestionAnswering(config)(**inputs, labels=np.zeros((3,), np.int32))
    with pytest.raises(TypeError, match="takes labels"):
        model(**inputs, start_positions=np.zeros((3,), np.int32), end_positions=np.zeros((3,), np.int32))


def test_inside_jit_bad_ids_give_nan_not_clamped_rows(model, inputs):
    """Values cannot be checked on tracers: out-of-vocabulary ids make NaN outputs (documented)."""
    fn = nnx.jit(lambda m, i, a: m(i, a).logits)
    good = np.asarray(fn(model, inputs["input_ids"], inputs["attention_mask"]))
    assert np.all(np.isfinite(good))
    for bad in (99, -1):
        ids = inputs["input_ids"].copy()
        ids[1, 3] = bad
        out = np.asarray(fn(model, ids, inputs["attention_mask"]))
        assert np.all(np.isnan(out[1])), bad  # the row with the bad id
        assert np.array_equal(out[[0, 2]], good[[0, 2]])  # other rows untouched


def test_concrete_inputs_closed_over_inside_jit(model, inputs):
    """Constant ids captured by a jitted function are still checked (on the host) and run."""
    ids, mask = jnp.asarray(inputs["input_ids"]), jnp.asarray(inputs["attention_mask"])
    logits = jax.jit(lambda: model(ids, mask, token_type_ids=jnp.zeros_like(ids)).logits)()
    assert np.allclose(logits, model(ids, mask).logits, atol=1e-6)
    bad = ids.at[0, 1].set(500)
    with pytest.raises(ValueError, match="vocab_size"):
        jax.jit(lambda: model(bad, mask).logits)()
