"""distilbert.common.logs: quieting other code's log records for one call, and leaving logging as it was."""

from __future__ import annotations

import logging

from distilbert.common.logs import errors_only, errors_only_everywhere


def test_errors_only_passes_errors_and_restores_the_level(caplog):
    logger = logging.getLogger("distilbert.test.quiet")
    logger.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO, logger="distilbert.test"), errors_only("distilbert.test.quiet"):
        logger.warning("hidden")
        logger.error("shown")
    assert [r.getMessage() for r in caplog.records] == ["shown"]
    assert logger.level == logging.INFO


def test_errors_only_everywhere_undoes_a_basic_config_made_inside():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    with errors_only_everywhere():
        root.addHandler(Keep())  # what a basicConfig at INFO does (importing onnxruntime's quantizers makes one)
        root.setLevel(logging.INFO)
        logging.getLogger("x").info("hidden")
        logging.getLogger("x").warning("hidden too")
        logging.getLogger("x").error("shown")
    assert seen == ["shown"]
    assert root.handlers == handlers and root.level == level
    assert logging.root.manager.disable == logging.NOTSET
