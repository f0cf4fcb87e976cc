"""The suite's own disk hygiene (tests/conftest.py, pyproject's tmp_path settings): what a passing test or
module wrote goes when it ends, so a full run never holds more than one module's files; a failure's stay."""

from __future__ import annotations

import re
from pathlib import Path

pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parent
PASSING = """
import pytest

@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    path = tmp_path_factory.mktemp("shared-{name}")
    (path / "weights").write_bytes(b"x" * 1000)
    return path

def test_one(shared, tmp_path):
    (tmp_path / "out").write_text("a")
    assert (shared / "weights").exists()

def test_two(shared, tmp_path):
    (tmp_path / "out").write_text("b")
"""
FAILING = PASSING.replace('(tmp_path / "out").write_text("b")', '(tmp_path / "out").write_text("b"); assert False')
LISTING = """
import os

def test_listing(tmp_path_factory):  # runs last: what the earlier modules left in the base folder
    base = tmp_path_factory.getbasetemp()
    folders = [name for name in os.listdir(base) if not os.path.islink(base / name)]  # not the *current links
    print("LEFT:" + ",".join(sorted(folders)))
"""


def test_passing_modules_leave_nothing_and_failing_ones_keep_their_folders(pytester):
    pyproject = (HERE.parent / "pyproject.toml").read_text(encoding="utf-8")
    settings = re.findall(r'^(tmp_path_retention_\w+) = "?(\w+)"?$', pyproject, re.M)  # the suite's own
    assert settings, "pyproject.toml sets no tmp_path_retention_* option"
    pytester.makeini("[pytest]\n" + "".join(f"{k} = {v}\n" for k, v in settings))
    pytester.makeconftest((HERE / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_a=PASSING.format(name="a"), test_b=FAILING.format(name="b"), test_z_listing=LISTING)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1)
    left = next(line for line in result.outlines if "LEFT:" in line).split("LEFT:")[1].split(",")
    # test_a's module folder and both its tests' folders are gone; test_b failed, so its module folder and
    # its failed test's folder stay (test_two1: test_a's test_two0 came first), and its passing test's goes
    assert sorted(left) == ["shared-b0", "test_two1"], left
