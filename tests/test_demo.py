"""The demo: its packaged data, the real sentiment demo end to end (train in Keras, convert, compare),
and the fill-mask demo of a checkpoint."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
from helpers import write_tiny_checkpoint

from distilbert import DistilBertTokenizerFast
from distilbert.cli import main
from distilbert.demo import build_vocab, format_sentiment, load_sentiment


def test_packaged_sentences_are_balanced_distinct_and_held_out_by_pair():
    train, held_out = load_sentiment()
    sentences = [s for s, _ in train + held_out]
    assert len(sentences) >= 300 and len(set(sentences)) == len(sentences)
    assert not {s for s, _ in train} & {s for s, _ in held_out}
    for split in (train, held_out):
        labels = [label for _, label in split]
        assert labels.count(0) == labels.count(1)
    assert all(3 <= len(s.split()) <= 15 for s in sentences)


def test_vocabulary_covers_every_sentence_and_splits_new_words(tmp_path):
    train, held_out = load_sentiment()
    vocab = build_vocab([s for s, _ in train + held_out])
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(set(vocab)) == len(vocab)
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = DistilBertTokenizerFast(vocab_file=tmp_path / "vocab.txt")
    for sentence, _ in train + held_out:
        assert tokenizer.unk_token not in tokenizer.tokenize(sentence)
    assert tokenizer.tokenize("zyxwv movies") == ["z", "##y", "##x", "##w", "##v", "movie", "##s"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The real default demo through the command, with its checkpoints kept."""
    output = tmp_path_factory.mktemp("demo") / "models"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["demo", "--json", "--output", str(output)]) == 0
    return json.loads(stdout.getvalue()), output


def test_demo_trains_converts_and_the_frameworks_agree(demo_run):
    report, output = demo_run
    assert list(report["frameworks"]) == ["tf", "pt", "flax"]
    n = report["held_out"]
    assert n == 62 and report["train_sentences"] == 242 and len(report["examples"]) == n
    for framework, row in report["frameworks"].items():
        assert row["agree"] == n, f"{framework} disagrees with tf on {n - row['agree']} sentences"
        assert row["max_abs_logit_diff"] < 1e-4
        assert row["accuracy"] >= 0.8, f"{framework}: held-out accuracy {row['accuracy']:.2f}"
        assert row["ms_per_batch"] > 0
        assert (output / framework / row["file"]).is_file()
    assert report["frameworks"]["tf"]["max_abs_logit_diff"] == 0
    for example in report["examples"]:
        assert example["tf"] == example["pt"] == example["flax"]


def test_demo_table(demo_run):
    report, _ = demo_run
    table = format_sentiment(report)
    lines = table.splitlines()
    assert any(
        line.startswith("held-out sentence") and line.split()[-3:] == ["TensorFlow", "PyTorch", "JAX/Flax"]
        for line in lines
    )
    header = next(line for line in lines if line.startswith("framework"))
    assert re.split(r"\s{2,}", header) == [
        "framework",
        "checkpoint",
        "accuracy",
        "agrees with TensorFlow",
        "max |logit - TensorFlow|",
        "ms per batch of 16",
    ]
    rows = {
        line.split()[0]: line
        for line in lines[lines.index(header) + 2 :]
        if line.strip() and not line.startswith("checkpoints kept")
    }
    assert set(rows) == {"TensorFlow", "PyTorch", "JAX/Flax"}
    assert "62/62" in rows["PyTorch"] and "model.safetensors" in rows["PyTorch"]
    assert "flax_model.msgpack" in rows["JAX/Flax"]


def test_demo_checkpoints_work_with_the_other_commands(demo_run, capsys):
    _, output = demo_run
    assert (
        main(
            [
                "classify",
                "What a wonderful and friendly place!",
                "--model",
                str(output / "flax"),
                "--framework",
                "flax",
                "--json",
            ]
        )
        == 0
    )
    labels = json.loads(capsys.readouterr().out)[0]["labels"]
    assert labels[0]["label"] == "positive"
    assert main(["demo", "--output", str(output)]) == 2
    assert "exists" in capsys.readouterr().err


def test_fill_mask_demo_of_a_checkpoint(tmp_path, capsys):
    write_tiny_checkpoint(str(tmp_path / "mlm"), "masked_lm")
    texts = ["the cat sat on the [MASK].", "paris is the [MASK] of france."]
    assert main(["demo", "--model", str(tmp_path / "mlm"), "--text", texts[0], "--text", texts[1]]) == 0
    out = capsys.readouterr().out
    assert texts[0] in out and texts[1] in out
    rows = [
        line.split()
        for line in out.splitlines()
        if line.split()[:1] in (["PyTorch"], ["TensorFlow"], ["JAX/Flax"]) and "yes" in line.split()
    ]
    assert [row[0] for row in rows] == ["PyTorch", "TensorFlow", "JAX/Flax"]
    assert main(["demo", "--model", str(tmp_path / "mlm"), "--framework", "flax", "--framework", "pt", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["frameworks"]) == ["flax", "pt"]
    assert report["frameworks"]["pt"]["same_predictions"]
    assert report["frameworks"]["pt"]["max_abs_score_diff"] < 1e-5
    assert main(["demo", "--model", str(tmp_path / "mlm"), "--text", "no mask"]) == 2
