"""The task subcommands of the ``distilbert`` command: help, output, JSON, frameworks, bad input, and
every ``distilbert`` command line of docs/pipelines.md."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_tiny_checkpoint

from distilbert.cli import main
from distilbert.pipelines import pipeline

NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "pipelines.md"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny checkpoints under the names docs/pipelines.md uses."""
    root = tmp_path_factory.mktemp("cli")
    specs = {
        "mlm-model": ("masked_lm", {}),
        "sentiment-model": ("sequence_classification", {"id2label": {0: "negative", 1: "positive"}}),
        "ner-model": ("token_classification", {"id2label": NER_LABELS}),
        "qa-model": ("question_answering", {}),
        "base-model": ("base", {}),
    }
    for seed, (name, (task, overrides)) in enumerate(specs.items()):
        write_tiny_checkpoint(str(root / name), task, seed=seed, **overrides)
    (root / "context.txt").write_text("Ada Lovelace lived in London. She wrote the first program.\n")
    return root


def run(args, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["fill-mask", "classify", "ner", "qa", "demo"])
def test_every_subcommand_has_help_with_the_shared_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--model", "--framework", "--json"):
        assert option in out, f"{command} --help lacks {option}"


@pytest.mark.parametrize("framework", ["pt", "tf", "flax"])
def test_json_output_is_the_pipelines_result(framework, models, capsys):
    texts = ["the cat sat on the [MASK].", "paris is the [MASK] of france."]
    code, out, _ = run(
        ["fill-mask", *texts, "--model", models / "mlm-model", "--framework", framework, "--top-k", 2, "--json"], capsys
    )
    assert code == 0
    expected = pipeline("fill-mask", model=str(models / "mlm-model"), framework=framework)(texts, top_k=2)
    got = json.loads(out)
    assert [item["text"] for item in got] == texts
    for item, predictions in zip(got, expected):
        assert [p["token"] for p in item["predictions"]] == [p["token"] for p in predictions]
        assert [p["score"] for p in item["predictions"]] == pytest.approx([p["score"] for p in predictions], abs=1e-6)


def test_fill_mask_text_output(models, capsys):
    code, out, _ = run(
        ["fill-mask", "the [MASK] sat.", "a [MASK] [MASK]", "--model", models / "mlm-model", "--top-k", 3], capsys
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "the [MASK] sat."
    assert all(re.match(r"  0\.\d{4}  ", line) for line in lines[1:4])
    assert "  mask 1:" in lines and "  mask 2:" in lines


def test_classify_reads_stdin_and_prints_labels(models, capsys, monkeypatch):
    code, out, _ = run(
        ["classify", "-", "--model", models / "sentiment-model", "--all", "--framework", "flax"],
        capsys,
        stdin="great food\n\nbad day\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].endswith("great food") and lines[1].endswith("bad day")
    assert all(re.match(r"(negative|positive) \d\.\d{4}  (negative|positive) \d\.\d{4}  ", line) for line in lines)


def test_ner_prints_entities_with_offsets(models, capsys):
    text = "Ada Lovelace lived in London."
    code, out, _ = run(["ner", text, "--model", models / "ner-model", "--json"], capsys)
    assert code == 0
    entities = json.loads(out)[0]["entities"]
    assert entities == pipeline("ner", model=str(models / "ner-model"))(text, aggregation_strategy="simple")
    code, out, _ = run(["ner", text, "--model", models / "ner-model", "--aggregation", "none"], capsys)
    lines = out.splitlines()
    assert lines[0] == text and len(lines) > 1
    for line in lines[1:]:
        assert re.fullmatch(r"  [BI]-(PER|LOC) +\d\.\d{4}  \[\d+:\d+\]  \S+", line), line


def test_qa_answers_each_question_from_a_context_file(models, capsys):
    code, out, _ = run(
        [
            "qa",
            "--model",
            models / "qa-model",
            "--question",
            "who?",
            "--question",
            "where?",
            "--context-file",
            models / "context.txt",
            "--top-k",
            2,
            "--handle-impossible",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    got = json.loads(out)
    context = (models / "context.txt").read_text()
    assert [item["question"] for item in got] == ["who?", "where?"]
    for item in got:
        assert len(item["answers"]) == 2
        for answer in item["answers"]:
            assert context[answer["start"] : answer["end"]] == answer["answer"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["fill-mask", "a [MASK]", "--model", "{base-model}"], "bare encoder, without any task head"),
        (["fill-mask", "no mask", "--model", "{mlm-model}"], r"no \[MASK\] in the input 'no mask'"),
        (["classify", "x", "--model", "{missing}"], "no directory"),
        (["ner", "x", "--model", "{ner-model}", "--aggregation", "none", "--stride", "4"], "stride"),
        (["qa", "--model", "{qa-model}", "--question", "who?"], "give the context as --context TEXT or --context-file"),
        (["qa", "--model", "{qa-model}", "--question", "who?", "--context-file", "{missing}"], "No such file"),
        (["demo", "--text", "a [MASK]"], "--text goes with --model"),
        (["demo", "--epochs", "0"], "--epochs must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, models, capsys):
    args = [
        a.format(
            **{
                "base-model": models / "base-model",
                "mlm-model": models / "mlm-model",
                "ner-model": models / "ner-model",
                "qa-model": models / "qa-model",
                "missing": models / "missing" / "x",
            }
        )
        for a in args
    ]
    code, out, err = run(args, capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"distilbert {args[0]}: error: ")
    assert re.search(message, err), err


def test_bad_option_values_are_refused_by_argparse(models, capsys):
    for args in (
        ["classify", "x", "--model", "m", "--framework", "jax"],
        ["fill-mask", "x", "--model", "m", "--top-k", "0"],
        ["classify", "x"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
    capsys.readouterr()


def _doc_commands() -> list[str]:
    """The ``distilbert`` command lines of docs/pipelines.md's bash blocks; of the demo only the fill-mask
    demo of a checkpoint (test_demo.py runs the training demo)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", DOCS.read_text(encoding="utf-8"), re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("distilbert ") and (not line.startswith("distilbert demo") or "--model" in line):
                commands.append(line.split("  #")[0].strip())
    return commands


def test_docs_have_command_examples():
    commands = _doc_commands()
    for sub in ("fill-mask", "classify", "ner", "qa", "embed", "demo"):
        assert any(c.startswith(f"distilbert {sub} ") for c in commands), f"docs/pipelines.md shows no {sub}"


@pytest.mark.parametrize("command", _doc_commands())
def test_docs_command_runs(command, models, capsys, monkeypatch):
    monkeypatch.chdir(models)
    code, out, err = run(shlex.split(command)[1:], capsys)
    assert code == 0, err
    assert out.strip()


def test_a_missing_framework_names_the_extra_to_install(models):
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if PyTorch were not installed\n"
        "from distilbert.cli import main\n"
        f"sys.exit(main(['classify', 'x', '--model', {str(models / 'sentiment-model')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "framework 'pt' is not available" in result.stderr and "pip install 'distilbert[torch]'" in result.stderr


def test_python_dash_m_runs_the_command(tmp_path):
    """``python -m distilbert`` is the command (launchers such as torchrun start modules)."""
    result = subprocess.run(
        [sys.executable, "-m", "distilbert", "info", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"distilbert info: error: no directory '{tmp_path / 'missing'}'"]


@pytest.mark.parametrize("given, kept", [(None, "2"), ("0", "0")])
def test_the_command_quiets_tensorflows_notes_unless_a_level_is_set(given, kept, tmp_path, monkeypatch, capsys):
    write_tiny_checkpoint(str(tmp_path), "base")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    if given is not None:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", given)
    assert main(["info", str(tmp_path)]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == kept
