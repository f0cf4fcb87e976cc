"""The pipelines of the bare encoder: ``feature-extraction`` (token vectors) and ``sentence-embedding``.

Both take any checkpoint: a DistilBERT with any head (its encoder is loaded), or a BERT, converted on the
fly as ``distilbert convert`` would (:func:`distilbert.common.bert.open_bert_checkpoint`).
"""

from __future__ import annotations

import numpy as np

from distilbert.common.bert import is_bert_checkpoint, open_bert_checkpoint
from distilbert.common.embedding import (
    SentenceEmbeddingConfig,
    check_pooling,
    pool,
    read_sentence_embedding_config,
)
from distilbert.common.embedding import normalize as l2_normalize
from distilbert.frameworks import build as build_model
from distilbert.frameworks import from_pretrained
from distilbert.pipelines.base import Pipeline, as_texts, rows_of

# Tokenizer arguments that feature-extraction passes on (padding and tensors are the pipeline's business).
TOKENIZE_KWARGS = ("truncation", "max_length", "add_special_tokens")


class _EncoderPipeline(Pipeline):
    model_task = "base"
    outputs = ("last_hidden_state",)
    too_long_advice = "pass truncation=True to cut it to the model's length"

    @classmethod
    def load(cls, directory: str, framework: str, what: str):
        """The encoder of any checkpoint: a DistilBERT's (whatever its head) or a BERT's, converted in memory."""
        if is_bert_checkpoint(directory):
            with open_bert_checkpoint(directory, task="base", framework=framework) as source:
                return build_model(framework, "base", source.config, source.tensors)
        return from_pretrained(framework, "base", directory)

    def _texts(self, inputs) -> tuple[list[str], bool]:
        single = isinstance(inputs, str)
        return ([inputs] if single else as_texts(inputs)), single


class FeatureExtractionPipeline(_EncoderPipeline):
    """The encoder's last hidden states, token by token, as transformers' feature-extraction pipeline gives them.

    One text gives a nested list of shape ``[1, T, dim]`` (T tokens, ``[CLS]`` and ``[SEP]`` included); a
    list of texts gives a list of those. With ``return_tensors=True``, numpy arrays ``(1, T, dim)`` instead.

    Call keyword arguments:
        truncation: Cut texts longer than the model instead of raising.
        tokenize_kwargs: Tokenizer arguments (``truncation``, ``max_length``, ``add_special_tokens``).
        return_tensors: Numpy arrays instead of lists.

    Example:
        >>> extract = pipeline("feature-extraction", model="distilbert-base-uncased")  # doctest: +SKIP
        >>> np.array(extract("Hello world")).shape  # doctest: +SKIP
        (1, 4, 768)
    """

    name = "feature-extraction"

    def _call(
        self,
        inputs,
        *,
        truncation: bool | None = None,
        tokenize_kwargs: dict | None = None,
        return_tensors: bool = False,
    ):
        texts, single = self._texts(inputs)
        kwargs = dict(tokenize_kwargs or {})
        unknown = sorted(set(kwargs) - set(TOKENIZE_KWARGS))
        if unknown:
            raise TypeError(f"tokenize_kwargs takes {', '.join(TOKENIZE_KWARGS)}, not {', '.join(unknown)}")
        if truncation is not None:
            if "truncation" in kwargs:
                raise ValueError("truncation is given twice (as an argument and in tokenize_kwargs); give it once")
            kwargs["truncation"] = truncation
        if kwargs.get("truncation") and "max_length" not in kwargs:
            kwargs["max_length"] = self.max_length
        features = [out["last_hidden_state"][None] for out in self.run(rows_of(self.tokenizer(texts, **kwargs)))]
        results = features if return_tensors else [f.tolist() for f in features]  # (1, T, dim) each
        return results[0] if single else results


class SentenceEmbeddingPipeline(_EncoderPipeline):
    """One vector per text, as sentence-transformers' ``encode`` computes it for the checkpoint.

    The checkpoint's sentence-transformers files decide the pooling (``cls``, ``max``, ``mean``,
    ``mean_sqrt_len_tokens``, ``weightedmean``, ``lasttoken``), whether vectors are normalised, the
    length texts are cut to (``max_seq_length``) and lower-casing (see :mod:`distilbert.common.embedding`);
    without them: mean pooling over the real tokens, not normalised, texts cut to the model's length.

    A list of texts gives a float32 array ``(N, dim)``; one text gives ``(dim,)``, as ``encode`` does.

    Call keyword arguments:
        pooling: A pooling mode or list of modes instead of the configured one.
        normalize: Normalise (True) or not (False) instead of as configured.
        progress: Show a progress bar (tqdm) on standard error.

    Example:
        >>> embed = pipeline("sentence-embedding", model="minilm-distilbert", framework="flax")  # doctest: +SKIP
        >>> vectors = embed(["A cat sits.", "A dog runs."])  # doctest: +SKIP
        >>> vectors.shape, float(vectors[0] @ vectors[1])  # doctest: +SKIP
        ((2, 384), 0.31)
    """

    name = "sentence-embedding"

    def __init__(self, model, tokenizer, runner, batch_size: int = 8, directory: str | None = None, **defaults):
        super().__init__(model, tokenizer, runner, batch_size, directory, **defaults)
        config = read_sentence_embedding_config(directory) if directory else SentenceEmbeddingConfig()
        if config.dimension is not None and config.dimension != self.config.dim:
            raise ValueError(
                f"the pooling config of {directory!r} expects token vectors of size {config.dimension}, "
                f"but the model's are {self.config.dim}"
            )
        self.embedding_config = config
        # sentence-transformers cuts at max_seq_length; the position table is the hard limit.
        self.max_seq_length = min(config.max_seq_length or self.max_length, self.config.max_position_embeddings)

    def _call(self, inputs, *, pooling=None, normalize: bool | None = None, progress: bool = False):
        texts, single = self._texts(inputs)
        modes = self.embedding_config.pooling if pooling is None else check_pooling(pooling)
        if normalize is not None and not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True, False or None, got {normalize!r}")
        if self.embedding_config.do_lower_case:
            texts = [text.lower() for text in texts]
        rows = rows_of(self.tokenizer(texts, truncation=True, max_length=self.max_seq_length))
        vectors = self._pool(rows, modes, progress)
        if self.embedding_config.normalize if normalize is None else normalize:
            vectors = l2_normalize(vectors)
        return vectors[0] if single else vectors

    def _pool(self, rows, modes, progress: bool) -> np.ndarray:
        # Rows of similar length batch together (less padding), as sentence-transformers does.
        order = sorted(range(len(rows)), key=lambda i: rows[i]["input_ids"].shape[-1])
        out = np.zeros((len(rows), self.config.dim * len(modes)), np.float32)
        bar = _progress_bar(len(rows)) if progress else None
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, result in zip(chunk, self.run([rows[i] for i in chunk])):
                hidden = result["last_hidden_state"][None]  # (1, T, dim): the row's own tokens, all real
                out[i] = pool(hidden, np.ones(hidden.shape[:2], np.int64), modes)[0]
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return out


def _progress_bar(total: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with huggingface_hub; without it, no bar
        return None
    return tqdm(total=total, unit="text", desc="embedding", leave=False)
