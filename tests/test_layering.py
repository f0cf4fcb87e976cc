"""The package's shape: ``distilbert.common`` imports no framework and nothing above it, and the three
backends have the same modules with the same names for the same job (read from the sources, no imports)."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "distilbert"
BACKENDS = ("pt", "tf", "flax")
COMMON = sorted(p.stem for p in (PACKAGE / "common").glob("*.py") if p.stem != "__init__")
# Nothing of these may be imported by distilbert or distilbert.common.
FORBIDDEN = (
    "torch",
    "tensorflow",
    "keras",
    "tf_keras",
    "jax",
    "flax",
    "optax",
    "distilbert.pt",
    "distilbert.tf",
    "distilbert.flax",
    "distilbert.frameworks",
    "distilbert.pipelines",
    "distilbert.cli",
    "distilbert.conversion",
    "distilbert.verify",
    "distilbert.demo",
)


@pytest.mark.parametrize("module", ["distilbert", "distilbert.common"] + [f"distilbert.common.{m}" for m in COMMON])
def test_common_imports_no_framework_and_nothing_above_it(module):
    code = (
        f"import sys; import {module}; forbidden = {FORBIDDEN!r}; "
        "bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in forbidden)); "
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "", f"importing {module} imports {result.stdout.strip()}"


@pytest.mark.parametrize("module", COMMON)
def test_common_never_imports_a_backend_or_keras(module):
    """Not even inside a function: only the framework a file format or a tokenizer's ``return_tensors`` asks
    for (torch for pickles; torch, TensorFlow or JAX tensors out of a tokenizer) is imported, on demand."""
    imported = []
    for node in ast.walk(ast.parse((PACKAGE / "common" / f"{module}.py").read_text())):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    above = [
        m
        for m in imported
        if m.startswith("distilbert") and not m.startswith("distilbert.common") and m != "distilbert"
    ]
    assert not above, f"distilbert/common/{module}.py imports {above}"
    assert not [m for m in imported if m.split(".")[0] in ("keras", "tf_keras", "flax", "optax")], module


def _tree(backend: str, module: str) -> ast.Module:
    return ast.parse((PACKAGE / backend / f"{module}.py").read_text())


def _public_functions(backend: str, module: str) -> set[str]:
    return {
        n.name for n in _tree(backend, module).body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
    }


# Modules one backend has and the others do not, each with the reason. int8 inference in the library is
# PyTorch's (oneDNN int8 products, `distilbert.pt.quantize`); TensorFlow's int8 is the LiteRT export's
# (`distilbert export --format litert --quantize int8`), and Flax has none yet.
ONLY_IN = {"pt": {"quantize.py"}}


def test_backends_have_the_same_module_files():
    files = {
        b: sorted(p.name for p in (PACKAGE / b).glob("*.py") if p.name not in ONLY_IN.get(b, ())) for b in BACKENDS
    }
    assert files["pt"] == files["tf"] == files["flax"], files
    for backend, names in ONLY_IN.items():
        assert all((PACKAGE / backend / name).is_file() for name in names), (backend, names)
    for module in ("modeling.py", "pretrained.py", "inputs.py", "losses.py", "training.py", "ops.py"):
        assert module in files["pt"], module


def test_backends_use_the_same_names():
    losses = {b: _public_functions(b, "losses") for b in BACKENDS}
    assert (
        losses["pt"]
        == losses["tf"]
        == losses["flax"]
        == {
            "cross_entropy",
            "masked_lm_loss",
            "token_classification_loss",
            "sequence_classification_loss",
            "multiple_choice_loss",
            "question_answering_loss",
        }
    ), losses
    for b in BACKENDS:
        assert {"linear_schedule", "adamw_with_warmup", "loss_fn", "train_step", "eval_step"} <= _public_functions(
            b, "training"
        ), b
        assert {"canonical_state", "load_canonical_state"} <= _public_functions(b, "pretrained"), b
        ops = {
            t.id
            for n in _tree(b, "ops").body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        assert "ACTIVATIONS" in ops, b
        classes = {n.name: n for n in _tree(b, "modeling").body if isinstance(n, ast.ClassDef)}
        assert "_Head" in classes, b  # the base class of the five heads
        methods = {f.name for c in classes.values() for f in c.body if isinstance(f, ast.FunctionDef)}
        assert "_encode" in methods and "_head" in methods, b
