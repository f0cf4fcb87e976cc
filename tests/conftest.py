import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The suite writes checkpoints, exports and converted copies of the real network: gigabytes if all of it
# stayed until the session ends. A passing test's tmp_path goes when the test ends (pyproject's
# tmp_path_retention_policy = "failed"); a module's tmp_path_factory folders go when the module ends,
# unless one of its tests failed. No fixture is session-scoped, so nothing a later module reads is removed.
_failed_modules: set[str] = set()


def pytest_runtest_logreport(report):
    if report.failed:
        _failed_modules.add(report.nodeid.split("::")[0])


@pytest.fixture(scope="module", autouse=True)
def _module_folders_removed(request, tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    yield
    if request.node.nodeid.split("::")[0] in _failed_modules:
        return
    for path in set(base.iterdir()) - before:
        shutil.rmtree(path, ignore_errors=True)
