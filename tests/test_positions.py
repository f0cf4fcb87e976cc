"""A stored position table is the truth: every backend, loader, converter and writer keeps it.

The checkpoint here says ``sinusoidal_pos_embds: true`` but stores a table that is not the formula's
(as the original DistilBERT recipe does, starting the student from BERT's learned positions). The
reference PyTorch and TF classes use the stored table; the reference Flax class recomputes the
formula, so a ``flax_model.msgpack`` keeps the table as learned positions (flag false).
"""

import importlib
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_close, oracle_class, oracle_pt_model, random_inputs, random_state, tiny_config

import distilbert
from distilbert.common import files
from distilbert.common.checkpoint import init_state, load_state, save_state
from distilbert.common.config import DistilBertConfig
from distilbert.common.names import TASK_CLASSES, sinusoidal_table
from distilbert.conversion import convert  # Hugging Face formats and Keras 3 files

TASK = "masked_lm"
CONFIG = tiny_config(sinusoidal_pos_embds=True)
POSITIONS = "distilbert.embeddings.position_embeddings.weight"
FRAMEWORKS = ("pt", "tf", "flax")
READER = {"safetensors": "pt", "tf": "tf", "flax": "flax"}  # the reference class that reads each format
CLASS_PREFIX = {"pt": "", "tf": "TF", "flax": "Flax"}


def _bits(array):
    return np.ascontiguousarray(array).view(np.uint8)


def our_class(framework, task=TASK):
    module = importlib.import_module(f"distilbert.{framework}")
    return getattr(module, CLASS_PREFIX[framework] + TASK_CLASSES[task])


def our_logits(framework, model, inputs):
    if framework == "pt":
        import torch

        with torch.no_grad():
            return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
    if framework == "tf":
        return np.asarray(model(dict(inputs), training=False).logits)
    return np.asarray(model(**inputs).logits)


def reference_logits(framework, directory, inputs):
    model = oracle_class(framework, TASK).from_pretrained(directory)
    if framework == "pt":
        import torch

        with torch.no_grad():
            return model.eval()(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
    if framework == "tf":
        return model(dict(inputs), training=False).logits.numpy()
    return np.asarray(model(inputs["input_ids"], inputs["attention_mask"]).logits)


def perturbed_state(config=CONFIG, task=TASK, seed=0):
    state = random_state(config, task, seed=seed)
    name = next(n for n in state if n.endswith("position_embeddings.weight"))
    noise = 0.1 * np.random.default_rng(seed + 1).standard_normal(state[name].shape)
    state[name] = (sinusoidal_table(*state[name].shape) + noise).astype(np.float32)
    return state


def written_flag(directory):
    return json.loads((directory / "config.json").read_text())["sinusoidal_pos_embds"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The perturbed checkpoint in every format, written by the reference classes and by ours."""
    import transformers

    root = tmp_path_factory.mktemp("positions")
    state = perturbed_state()
    inputs = random_inputs(CONFIG)
    reference = oracle_pt_model(CONFIG, TASK, state)
    reference.save_pretrained(root / "ref-pt")
    dirs = {"ref-safetensors": root / "ref-pt"}
    transformers.TFDistilBertForMaskedLM.from_pretrained(root / "ref-pt", from_pt=True).save_pretrained(root / "ref-tf")
    dirs["ref-tf"] = root / "ref-tf"
    for fmt in ("safetensors", "tf", "flax"):
        save_state(root / f"ours-{fmt}", state, CONFIG, TASK, framework=READER[fmt], weight_format=fmt)
        dirs[f"ours-{fmt}"] = root / f"ours-{fmt}"
    # The reference Flax class can hold the table only as learned positions: it re-saves ours.
    transformers.FlaxDistilBertForMaskedLM.from_pretrained(root / "ours-flax").save_pretrained(root / "ref-flax")
    dirs["ref-flax"] = root / "ref-flax"
    want = our_logits("pt", reference, inputs)
    formula = {**state, POSITIONS: sinusoidal_table(*state[POSITIONS].shape)}
    assert np.abs(our_logits("pt", oracle_pt_model(CONFIG, TASK, formula), inputs) - want).max() > 1e-2
    return {"state": state, "inputs": inputs, "want": want, "dirs": dirs, "root": root}


def test_the_reference_flax_class_ignores_a_stored_table(source):
    """Why a Flax file cannot keep the flag: the reference Flax class recomputes the formula."""
    import transformers

    model = transformers.FlaxDistilBertForMaskedLM.from_pretrained(source["dirs"]["ref-safetensors"], from_pt=True)
    got = np.asarray(model(source["inputs"]["input_ids"], source["inputs"]["attention_mask"]).logits)
    assert np.abs(got - source["want"]).max() > 1e-2


@pytest.mark.parametrize("name", ["ref-safetensors", "ref-tf", "ref-flax", "ours-safetensors", "ours-tf", "ours-flax"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_backend_loads_every_format_as_stored(source, framework, name):
    directory = source["dirs"][name]
    model = our_class(framework).from_pretrained(directory)
    np.testing.assert_array_equal(model.canonical_state()[POSITIONS], source["state"][POSITIONS])
    assert_close(our_logits(framework, model, source["inputs"]), source["want"], name=f"{framework} {name}")


def test_the_reference_tf_class_loads_a_stored_table(source):
    """Our tf_model.h5 keeps the flag true: the reference TF class uses the stored table, as PyTorch's."""
    assert written_flag(source["dirs"]["ours-tf"]) is True
    for name in ("ours-tf", "ref-tf"):
        assert_close(reference_logits("tf", source["dirs"][name], source["inputs"]), source["want"], name=name)


@pytest.mark.parametrize("fmt", ["safetensors", "tf", "flax"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_reference_classes_read_what_we_write(source, tmp_path, caplog, framework, fmt):
    model = our_class(framework).from_pretrained(source["dirs"]["ref-safetensors"])
    with caplog.at_level(logging.WARNING, logger="distilbert"):
        model.save_pretrained(tmp_path / "out", weight_format=fmt)
    said = [r.getMessage() for r in caplog.records if "position table" in r.getMessage()]
    assert written_flag(tmp_path / "out") is (fmt != "flax")
    assert len(said) == (fmt == "flax") and all("\n" not in line for line in said)
    got = reference_logits(READER[fmt], tmp_path / "out", source["inputs"])
    assert_close(got, source["want"], name=f"{framework} -> {fmt} -> reference {READER[fmt]}")


def test_the_formula_table_is_written_to_flax_as_the_reference_writes_it(tmp_path, caplog):
    state = random_state(CONFIG, TASK, seed=3)  # the table is the formula's
    with caplog.at_level(logging.WARNING, logger="distilbert"):
        path = save_state(tmp_path / "flax", state, CONFIG, TASK, framework="flax", weight_format="flax")
    assert not [r for r in caplog.records if "position table" in r.getMessage()]
    assert written_flag(tmp_path / "flax") is True
    with files.open_flax_msgpack(path) as native:
        assert not [n for n in native if "position_embeddings" in n]
    back, _ = load_state(tmp_path / "flax", CONFIG, TASK)
    np.testing.assert_array_equal(back[POSITIONS], sinusoidal_table(*state[POSITIONS].shape))


def test_bare_model_positions_without_prefix_go_to_flax_as_learned(tmp_path):
    state = perturbed_state(task="base")
    convert_src = tmp_path / "pt"
    save_state(convert_src, state, CONFIG, "base")
    convert(convert_src, tmp_path / "flax", to="flax")
    assert written_flag(tmp_path / "flax") is False
    back, _ = load_state(tmp_path / "flax", DistilBertConfig.from_pretrained(tmp_path / "flax"), "base")
    np.testing.assert_array_equal(
        back["embeddings.position_embeddings.weight"], state["embeddings.position_embeddings.weight"]
    )


# ------------------------------------------------------------------------------------ converting
@pytest.mark.parametrize("to", ["pt", "tf", "flax"])
@pytest.mark.parametrize("name", ["ref-safetensors", "ref-tf", "ours-flax"])
def test_convert_keeps_the_table_in_every_direction(source, tmp_path, name, to):
    src = source["dirs"][name]
    convert(src, tmp_path / "out", to=to)
    assert written_flag(tmp_path / "out") is (written_flag(src) and to != "flax")
    back, _ = load_state(tmp_path / "out", DistilBertConfig.from_pretrained(tmp_path / "out"), TASK)
    for tensor, array in source["state"].items():
        np.testing.assert_array_equal(_bits(back[tensor]), _bits(array), err_msg=tensor)
    assert_close(reference_logits(to, tmp_path / "out", source["inputs"]), source["want"], name=f"{name} -> {to}")


def test_pt_tf_flax_pt_round_trip_is_bit_exact(source, tmp_path):
    start = source["dirs"]["ours-safetensors"]
    convert(start, tmp_path / "tf", to="tf")
    convert(tmp_path / "tf", tmp_path / "flax", to="flax")
    convert(tmp_path / "flax", tmp_path / "back", to="pt")
    assert (start / "model.safetensors").read_bytes() == (tmp_path / "back" / "model.safetensors").read_bytes()


def test_convert_to_keras_and_back_keeps_the_table(source, tmp_path):
    convert(source["dirs"]["ref-safetensors"], tmp_path / "keras", to="keras")
    convert(tmp_path / "keras", tmp_path / "back", to="pt")
    back, _ = load_state(tmp_path / "back", CONFIG, TASK)
    np.testing.assert_array_equal(back[POSITIONS], source["state"][POSITIONS])


def _cli_convert(src, dst):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(distilbert.__file__)), os.environ.get("PYTHONPATH", "")]
        ),
    )
    code = "import sys; from distilbert.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, "convert", str(src), str(dst), "--to", "flax", "-q"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_cli_says_so_in_one_line_when_it_writes_learned_positions(source, tmp_path):
    done = _cli_convert(source["dirs"]["ref-safetensors"], tmp_path / "flax")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "sinusoidal_pos_embds: false" in lines[0], done.stderr
    assert written_flag(tmp_path / "flax") is False
    save_state(tmp_path / "formula", random_state(CONFIG, TASK), CONFIG, TASK)
    quiet = _cli_convert(tmp_path / "formula", tmp_path / "flax-formula")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert written_flag(tmp_path / "flax-formula") is True


# ------------------------------------------------------------------------------ training, fresh models
def _labels(inputs):
    return np.where(inputs["attention_mask"] == 1, inputs["input_ids"], -100)


def _train_one_step(framework, model, inputs):
    labels = _labels(inputs)
    if framework == "pt":
        import torch

        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        batch = {k: torch.from_numpy(v) for k, v in inputs.items()}
        model(**batch, labels=torch.from_numpy(labels)).loss.backward()
        optimizer.step()
    elif framework == "tf":
        import keras

        model.trainable = True  # the usual un-freezing after a frozen phase must not switch the table on
        assert not [v for v in model.trainable_weights if "position_embeddings" in v.path]
        model.compile(optimizer=keras.optimizers.AdamW(1e-2, weight_decay=0.1))
        model.fit(dict(inputs, labels=labels), batch_size=len(labels), epochs=1, verbose=0)
    else:
        import jax.numpy as jnp
        import optax
        from flax import nnx

        from distilbert.flax.training import train_step

        optimizer = nnx.Optimizer(model, optax.adamw(1e-2, weight_decay=0.1), wrt=nnx.Param)
        train_step(model, optimizer, {k: jnp.asarray(v) for k, v in dict(inputs, labels=labels).items()})


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_training_step_leaves_the_table_alone(source, framework):
    model = our_class(framework).from_pretrained(source["dirs"]["ref-safetensors"])
    before = model.canonical_state()
    _train_one_step(framework, model, source["inputs"])
    after = model.canonical_state()
    np.testing.assert_array_equal(after[POSITIONS], before[POSITIONS])
    np.testing.assert_array_equal(after[POSITIONS], source["state"][POSITIONS])
    word = "distilbert.embeddings.word_embeddings.weight"
    assert not np.array_equal(after[word], before[word])  # the step did train the rest


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_fresh_model_gets_the_formula(framework):
    model = our_class(framework)(CONFIG)
    np.testing.assert_array_equal(model.canonical_state()[POSITIONS], sinusoidal_table(64, 32))
    np.testing.assert_array_equal(init_state(CONFIG, TASK)[POSITIONS], sinusoidal_table(64, 32))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_file_without_the_table_gets_the_formula(tmp_path, framework):
    """The reference Flax class writes no table: the formula fills it, as the reference Flax computes it."""
    import transformers

    root = tmp_path
    state = random_state(CONFIG, TASK, seed=4)
    inputs = random_inputs(CONFIG)
    oracle_pt_model(CONFIG, TASK, state).save_pretrained(root / "pt")
    transformers.FlaxDistilBertForMaskedLM.from_pretrained(root / "pt", from_pt=True).save_pretrained(root / "flax")
    with files.open_flax_msgpack(str(root / "flax" / files.FLAX_MSGPACK)) as native:
        assert not [n for n in native if "position_embeddings" in n]
    model = our_class(framework).from_pretrained(root / "flax")
    np.testing.assert_array_equal(model.canonical_state()[POSITIONS], sinusoidal_table(64, 32))
    assert_close(our_logits(framework, model, inputs), reference_logits("flax", root / "flax", inputs))
