"""Framework-free parts: config, weight-name table, checkpoint files, outputs, hub resolution."""

from distilbert.common.config import DistilBertConfig

__all__ = ["DistilBertConfig"]
