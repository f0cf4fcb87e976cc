"""Pipelines against transformers 4.57.6's pipelines, in each framework, on tiny random checkpoints.

Each checkpoint is saved by the reference PyTorch class; the reference pipeline runs that model with
transformers' own tokenizer, ours loads the directory in PyTorch, TensorFlow and Flax. Scores must
agree to 1e-5 and everything else (labels, tokens, words, offsets, answers) exactly.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ATOL, oracle_pt_model, write_tiny_checkpoint

from distilbert.pipelines import pipeline

FRAMEWORKS = ["pt", "tf", "flax"]
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
LONG_TEXT = " ".join(["ada lovelace lived in london and visited the museum in new york."] * 8)
LONG_CONTEXT = " ".join(["the cat sat on the mat, and the dog lived in the red house in paris."] * 10)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Directory and reference model of each tiny checkpoint, built once."""
    root = tmp_path_factory.mktemp("pipelines")
    specs = {
        "masked_lm": ("masked_lm", {}),
        "softmax": ("sequence_classification", {"id2label": {0: "neg", 1: "neutral", 2: "pos"}}),
        "sigmoid": ("sequence_classification", {"num_labels": 3, "problem_type": "multi_label_classification"}),
        "regression": ("sequence_classification", {"num_labels": 1, "problem_type": "regression"}),
        "ner": ("token_classification", {"id2label": NER_LABELS}),
        "qa": ("question_answering", {}),
        "mc": ("multiple_choice", {}),
        "base": ("base", {}),
    }
    out = {}
    for i, (name, (task, overrides)) in enumerate(specs.items()):
        directory = str(root / name)
        config, state = write_tiny_checkpoint(directory, task, seed=i, **overrides)
        out[name] = (directory, oracle_pt_model(config, task, state))
    return out


@pytest.fixture(scope="module")
def reference(checkpoints):
    """transformers' pipeline of a checkpoint (PyTorch, its own tokenizer)."""
    import transformers

    cache = {}

    def get(name, task):
        if name not in cache:
            directory, model = checkpoints[name]
            tokenizer = transformers.DistilBertTokenizerFast.from_pretrained(directory)
            cache[name] = transformers.pipeline(task, model=model, tokenizer=tokenizer, framework="pt")
        return cache[name]

    return get


@pytest.fixture(scope="module")
def ours(checkpoints):
    cache = {}

    def get(name, task, framework):
        if (name, framework) not in cache:
            cache[name, framework] = pipeline(task, model=checkpoints[name][0], framework=framework)
        return cache[name, framework]

    return get


def assert_same(actual, expected, where="result"):
    """Scores (floats) to ATOL, everything else exactly; our results are plain JSON types."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), f"{where}: {actual} != {expected}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual} != {expected}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, (float, np.floating)):
        assert type(actual) is float and abs(actual - float(expected)) <= ATOL, f"{where}: {actual} != {expected}"
    else:
        assert type(actual) is type(expected) and actual == expected, f"{where}: {actual!r} != {expected!r}"


def check(ours_result, reference_result):
    assert_same(ours_result, reference_result)
    json.dumps(ours_result)


# ------------------------------------------------------------------------------------ fill-mask
FILL_CASES = [
    ("the cat sat on the [MASK].", {}),
    (["paris is the [MASK] of france.", "the [MASK] sat on the [MASK] in london."], {}),
    (["she went to the [MASK].", "a [MASK] day"], {"top_k": 2}),
    ("the [MASK] lived in the house.", {"targets": ["cat", "dog", "zebra"]}),
    ("[MASK] [MASK] [MASK]", {"top_k": 1}),
]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", range(len(FILL_CASES)))
def test_fill_mask_matches_reference(framework, case, ours, reference):
    inputs, kwargs = FILL_CASES[case]
    check(
        ours("masked_lm", "fill-mask", framework)(inputs, **kwargs),
        reference("masked_lm", "fill-mask")(inputs, **kwargs),
    )


# -------------------------------------------------------------------------- text classification
TEXTS = ["a great movie!", "terrible food, bad day.", "the dog sat on the red car in london"]
CLASSIFY_CASES = [
    ("softmax", TEXTS[0], {}),
    ("softmax", TEXTS, {}),
    ("softmax", TEXTS, {"top_k": 2}),
    ("softmax", TEXTS[1], {"top_k": None}),
    ("softmax", {"text": "who went to paris?", "text_pair": "john went to paris."}, {"top_k": None}),
    ("softmax", TEXTS, {"function_to_apply": "sigmoid", "top_k": 1}),
    ("sigmoid", TEXTS, {}),
    ("sigmoid", TEXTS[2], {"top_k": None}),
    ("regression", TEXTS, {}),
]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", range(len(CLASSIFY_CASES)))
def test_text_classification_matches_reference(framework, case, ours, reference):
    name, inputs, kwargs = CLASSIFY_CASES[case]
    check(
        ours(name, "text-classification", framework)(inputs, **kwargs),
        reference(name, "text-classification")(inputs, **kwargs),
    )


def test_sentiment_analysis_is_text_classification(checkpoints):
    pipe = pipeline("sentiment-analysis", model=checkpoints["softmax"][0])
    assert type(pipe).__name__ == "TextClassificationPipeline"


# ------------------------------------------------------------------------- token classification
NER_TEXTS = ["Ada Lovelace lived in London.", "John Smith visited the museum in New York on 2024 day!"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_matches_reference(framework, strategy, ours, reference):
    pipe = ours("ner", "token-classification", framework)
    expected = reference("ner", "token-classification")(NER_TEXTS, aggregation_strategy=strategy)
    check(pipe(NER_TEXTS, aggregation_strategy=strategy), expected)
    check(
        pipe(NER_TEXTS[0], aggregation_strategy=strategy, ignore_labels=[]),
        reference("ner", "token-classification")(NER_TEXTS[0], aggregation_strategy=strategy, ignore_labels=[]),
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("strategy", ["simple", "first", "max"])
def test_token_classification_stride_windows_match_reference(framework, strategy, ours, reference):
    pipe = ours("ner", "token-classification", framework)
    assert len(pipe.tokenizer(LONG_TEXT)["input_ids"]) > pipe.max_length  # really needs windows
    check(
        pipe(LONG_TEXT, aggregation_strategy=strategy, stride=16),
        reference("ner", "token-classification")(LONG_TEXT, aggregation_strategy=strategy, stride=16),
    )


def test_token_classification_offsets_point_into_the_text(ours):
    for entity in ours("ner", "ner", "pt")(NER_TEXTS[1], aggregation_strategy="first", ignore_labels=[]):
        assert NER_TEXTS[1][entity["start"] : entity["end"]].lower().replace(" ", "") == entity["word"].replace(" ", "")


# --------------------------------------------------------------------------- question answering
QA_CASES = [
    ({"question": "where does ada live?", "context": "Ada lives in London. John lives in Paris."}, {}),
    ({"question": "who lived in the house?", "context": LONG_CONTEXT}, {}),
    ({"question": "who lived in the house?", "context": LONG_CONTEXT}, {"top_k": 3, "handle_impossible_answer": True}),
    ({"question": "what sat?", "context": LONG_CONTEXT}, {"doc_stride": 10, "max_answer_len": 4, "top_k": 2}),
    ({"question": "where?", "context": "The cat sat on the mat."}, {"handle_impossible_answer": True, "top_k": 20}),
    ({"question": "where did she go?", "context": "She went to Paris, France."}, {"align_to_words": False, "top_k": 2}),
    ([{"question": "what?", "context": "A big red car."}, {"question": "who?", "context": LONG_CONTEXT}], {}),
]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", range(len(QA_CASES)))
def test_question_answering_matches_reference(framework, case, ours, reference):
    inputs, kwargs = QA_CASES[case]
    pipe = ours("qa", "question-answering", framework)
    if isinstance(inputs, dict) and len(pipe.tokenizer(inputs["question"], inputs["context"])["input_ids"]) > 64:
        assert inputs["context"] is LONG_CONTEXT  # the long context does need several windows
    check(pipe(inputs, **kwargs), reference("qa", "question-answering")(inputs, **kwargs))


def test_question_answering_keyword_forms(ours, reference):
    pipe, ref = ours("qa", "question-answering", "pt"), reference("qa", "question-answering")
    check(
        pipe(question="where is the cat?", context="The cat is in Paris."),
        ref(question="where is the cat?", context="The cat is in Paris."),
    )
    questions = ["who?", "where?"]
    check(pipe(question=questions, context=LONG_CONTEXT), ref(question=questions, context=LONG_CONTEXT))


# ------------------------------------------------------------------------------ multiple choice
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_multiple_choice_scores_are_the_reference_models_softmax(framework, checkpoints, ours):
    import torch
    import transformers

    directory, model = checkpoints["mc"]
    prompt, choices = "the cat sat on the", ["mat.", "red car in london.", "dog"]
    results = ours("mc", "multiple-choice", framework)(prompt, choices=choices)
    tokenizer = transformers.DistilBertTokenizerFast.from_pretrained(directory)
    encoded = tokenizer([prompt] * 3, choices, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=encoded["input_ids"][None], attention_mask=encoded["attention_mask"][None]).logits[0]
    expected = torch.softmax(logits, -1).numpy()
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for r in results:
        assert r["choice"] == choices[r["index"]]
        assert abs(r["score"] - expected[r["index"]]) <= ATOL
    batch = ours("mc", "multiple-choice", framework)([{"question": prompt, "choices": choices}] * 2)
    assert_same(batch, [results, results])


# ------------------------------------------------------------------------ batching and loading
def test_batch_size_does_not_change_results(checkpoints, ours):
    one = pipeline("ner", model=checkpoints["ner"][0], batch_size=1)
    texts = NER_TEXTS + [LONG_TEXT[:50]]
    batched = ours("ner", "ner", "pt")(texts, aggregation_strategy="simple")
    assert_same(one(texts, aggregation_strategy="simple"), batched)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_model_object_and_device(framework, checkpoints, ours):
    from distilbert.frameworks import model_class

    directory = checkpoints["masked_lm"][0]
    model = model_class(framework, "masked_lm").from_pretrained(directory)
    pipe = pipeline("fill-mask", model=model, tokenizer=directory, device="cpu")
    assert pipe.framework == framework and "cpu" in pipe.device.lower()
    text = "the cat sat on the [MASK]."
    assert_same(pipe(text), ours("masked_lm", "fill-mask", framework)(text))


def test_importing_and_using_one_framework_imports_no_other(checkpoints):
    code = (
        "import sys\n"
        "import distilbert.pipelines as p\n"
        "assert not {'torch', 'tensorflow', 'jax'} & set(sys.modules), 'import pulled a framework'\n"
        f"pipe = p.pipeline('fill-mask', model={checkpoints['masked_lm'][0]!r}, framework='flax')\n"
        "pipe('the [MASK] sat.')\n"
        "assert not {'torch', 'tensorflow'} & set(sys.modules), 'flax pipeline pulled another framework'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert result.returncode == 0, result.stderr[-2000:]


# ------------------------------------------------------------------------------------ bad input
def test_checkpoint_without_the_head_is_refused(checkpoints):
    with pytest.raises(ValueError, match="bare encoder.*fill-mask pipeline needs a masked-language-model head"):
        pipeline("fill-mask", model=checkpoints["base"][0])
    with pytest.raises(ValueError, match="sequence-classification head.*question-answering"):
        pipeline("question-answering", model=checkpoints["softmax"][0], framework="flax")
    from distilbert.pt import DistilBertForMaskedLM

    model = DistilBertForMaskedLM.from_pretrained(checkpoints["masked_lm"][0])
    with pytest.raises(ValueError, match="DistilBertForMaskedLM.*needs a token-classification head"):
        pipeline("ner", model=model, tokenizer=checkpoints["masked_lm"][0])


def test_bad_arguments_are_named(checkpoints, ours):
    directory = checkpoints["masked_lm"][0]
    with pytest.raises(ValueError, match="unknown task 'summarization'"):
        pipeline("summarization", model=directory)
    with pytest.raises(ValueError, match="unknown framework 'jax'"):
        pipeline("fill-mask", model=directory, framework="jax")
    with pytest.raises(TypeError, match="takes no argument topk"):
        pipeline("fill-mask", model=directory, topk=3)
    fill = ours("masked_lm", "fill-mask", "pt")
    with pytest.raises(ValueError, match=r"no \[MASK\] in the input 'no mask here'"):
        fill(["the [MASK].", "no mask here"])
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        fill("the [MASK].", top_k=0)
    with pytest.raises(TypeError, match="non-empty list of str"):
        fill([])
    with pytest.raises(ValueError, match="more than the model's 64 positions; pass truncation=True"):
        ours("softmax", "text-classification", "pt")(LONG_TEXT)
    truncated = ours("softmax", "text-classification", "pt")(LONG_TEXT, truncation=True)
    assert truncated[0]["label"] in {"neg", "neutral", "pos"}
    ner = ours("ner", "ner", "pt")
    with pytest.raises(ValueError, match="aggregation_strategy must be one of"):
        ner("ada", aggregation_strategy="mean")
    with pytest.raises(ValueError, match="stride .* aggregation_strategy"):
        ner("ada", stride=4)
    qa = ours("qa", "question-answering", "pt")
    with pytest.raises(ValueError, match="each context must be a non-empty str"):
        qa(question="who?", context="")
    with pytest.raises(ValueError, match="2 questions but 3 contexts"):
        qa(question=["a", "b"], context=["x", "y", "z"])
    with pytest.raises(TypeError, match="choices must be a list of at least two str"):
        ours("mc", "multiple-choice", "pt")("the cat", choices=["only one"])


def test_missing_tokenizer_and_weights_are_named(tmp_path, checkpoints):
    import shutil

    weights_only = tmp_path / "weights-only"
    shutil.copytree(checkpoints["masked_lm"][0], weights_only)
    for name in ("vocab.txt", "tokenizer.json"):
        (weights_only / name).unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        pipeline("fill-mask", model=str(weights_only))
    assert pipeline("fill-mask", model=str(weights_only), tokenizer=checkpoints["masked_lm"][0])("a [MASK]")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text((weights_only / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights in"):
        pipeline("fill-mask", model=str(tmp_path / "empty"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_pipeline_sees_later_changes_to_its_model(framework, checkpoints):
    from distilbert.frameworks import model_class

    directory = checkpoints["softmax"][0]
    model = model_class(framework, "sequence_classification").from_pretrained(directory)
    classify = pipeline("text-classification", model=model, tokenizer=directory)
    before = classify("a great movie!", top_k=None)
    # PyTorch and Keras models have these as methods, the Flax backend as functions of the model.
    backend = importlib.import_module(f"distilbert.{framework}")
    get = model.canonical_state if hasattr(model, "canonical_state") else lambda: backend.canonical_state(model)
    state = get()
    bias = np.zeros_like(state["classifier.bias"])
    bias[0] = 50.0  # make "neg" win whatever the input
    changed = {**state, "classifier.bias": state["classifier.bias"] + bias}
    if hasattr(model, "load_canonical_state"):
        model.load_canonical_state(changed)
    else:
        backend.load_canonical_state(model, changed)
    after = classify("a great movie!", top_k=None)
    assert after[0]["label"] == "neg" and after[0]["score"] > 0.99 and after != before
