"""Every ```python block in docs/ and the README runs, on its own, offline."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 1
            yield pytest.param(match.group(1), id=f"{path.name}:{line}")


def test_docs_have_code():
    assert list(_blocks()), "no python blocks found in docs/"


@pytest.mark.parametrize("code", list(_blocks()))
def test_doc_block_runs(code, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3", TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
    env["TMPDIR"] = str(tmp_path)  # the blocks' tempfile.mkdtemp() folders go with the test's own
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"block failed:\n{code}\n--- stderr ---\n{result.stderr[-3000:]}"
