"""Quieting other code's log records for the length of one call (the library never configures logging).

:func:`errors_only` lowers one logger (and its children) to errors; :func:`errors_only_everywhere` does so
for every logger and also undoes what the call did to the root logger, for libraries that configure it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def errors_only(name: str) -> Iterator[None]:
    """Inside, the logger ``name`` (and its children without a level of their own) passes errors only;
    after, its level is what it was."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def errors_only_everywhere() -> Iterator[None]:
    """Inside, every logger passes errors only (``logging.disable``, which outranks any logger's level,
    even one a ``logging.basicConfig`` inside sets); after, the root logger's handlers and level are what
    they were, so a ``basicConfig`` made inside (importing onnxruntime's ``matmul_nbits_quantizer`` makes
    one, at INFO) does not outlive the call."""
    root = logging.getLogger()
    handlers, level, disabled = root.handlers[:], root.level, root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(disabled)
        root.handlers[:] = handlers
        root.setLevel(level)
