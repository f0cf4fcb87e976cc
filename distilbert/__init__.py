"""DistilBERT in PyTorch (``distilbert.pt``), TensorFlow/Keras 3 (``distilbert.tf``) and JAX/Flax NNX
(``distilbert.flax``), reading and writing every Hugging Face checkpoint format.

Importing this package imports no ML framework; the backends import only their own.
"""

from distilbert.common.config import DistilBertConfig

__version__ = "0.1.0"
__all__ = ["DistilBertConfig", "DistilBertTokenizer", "DistilBertTokenizerFast", "__version__"]
__all__ += ["DistillationConfig"]


def __getattr__(name: str):
    if name == "pipeline":  # lazily too: distilbert.pipelines imports no framework until a model is built
        from distilbert.pipelines import pipeline

        return pipeline
    # Tokenizers load lazily so that `import distilbert` stays cheap.
    if name in ("DistilBertTokenizer", "DistilBertTokenizerFast"):
        from distilbert.common import tokenization

        return getattr(tokenization, name)
    if name == "keep_freed_memory":  # opt-in, process-wide: glibc's malloc keeps freed memory for reuse
        from distilbert.common.memory import keep_freed_memory

        return keep_freed_memory
    if name == "DistillationConfig":
        from distilbert.common.distillation import DistillationConfig

        return DistillationConfig
    raise AttributeError(f"module 'distilbert' has no attribute {name!r}")


__all__ += ["pipeline", "keep_freed_memory"]
