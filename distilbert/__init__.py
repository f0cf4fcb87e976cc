"""DistilBERT in PyTorch (``distilbert.pt``), TensorFlow/Keras 3 (``distilbert.tf``) and JAX/Flax NNX
(``distilbert.flax``), reading and writing every Hugging Face checkpoint format.

Importing this package imports no ML framework; the backends import only their own.
"""

from distilbert.common.config import DistilBertConfig

__version__ = "0.1.0"
__all__ = ["DistilBertConfig", "DistilBertTokenizer", "DistilBertTokenizerFast", "pipeline", "__version__"]


def __getattr__(name: str):
    # Tokenizers and pipeline() load lazily so that `import distilbert` stays cheap (and framework-free).
    if name in ("DistilBertTokenizer", "DistilBertTokenizerFast"):
        from distilbert.common import tokenization

        return getattr(tokenization, name)
    if name == "pipeline":
        from distilbert.pipelines import pipeline

        return pipeline
    raise AttributeError(f"module 'distilbert' has no attribute {name!r}")
