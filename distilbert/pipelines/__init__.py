"""Task pipelines over the three backends: text in, answers out.

``pipeline(task, model=..., framework=...)`` loads a checkpoint into the PyTorch (``"pt"``),
TensorFlow (``"tf"``) or Flax (``"flax"``) class for the task and returns a callable:

==========================  =================================  ======================================
task (aliases)              checkpoint head                     result
==========================  =================================  ======================================
``fill-mask``               ``DistilBertForMaskedLM``           top tokens for each ``[MASK]``
``text-classification``     ``DistilBertForSequenceClass...``   label and score (``sentiment-analysis``)
``token-classification``    ``DistilBertForTokenClassif...``    entities with offsets (``ner``)
``question-answering``      ``DistilBertForQuestionAnswering``  answer span, offsets, score
``multiple-choice``         ``DistilBertForMultipleChoice``     score of each choice
``feature-extraction``      any (its encoder); a BERT too       token vectors, ``[1, T, dim]`` per text
``sentence-embedding``      any (its encoder); a BERT too       one ``(dim,)`` float32 vector per text
==========================  =================================  ======================================

Pre- and post-processing are numpy, written once; only a small runner per framework touches a
framework, and only the one asked for is imported. Results follow transformers 4.x's pipelines.

Example:
    >>> from distilbert.pipelines import pipeline
    >>> fill = pipeline("fill-mask", model="distilbert-base-uncased", framework="flax")  # doctest: +SKIP
    >>> fill("Paris is the [MASK] of France.")[0]["token_str"]  # doctest: +SKIP
    'capital'
"""

from __future__ import annotations

from distilbert.pipelines.base import Pipeline, build
from distilbert.pipelines.embeddings import FeatureExtractionPipeline, SentenceEmbeddingPipeline
from distilbert.pipelines.fill_mask import FillMaskPipeline
from distilbert.pipelines.multiple_choice import MultipleChoicePipeline
from distilbert.pipelines.question_answering import QuestionAnsweringPipeline
from distilbert.pipelines.text_classification import TextClassificationPipeline
from distilbert.pipelines.token_classification import TokenClassificationPipeline

PIPELINES = {
    cls.name: cls
    for cls in (
        FillMaskPipeline,
        TextClassificationPipeline,
        TokenClassificationPipeline,
        QuestionAnsweringPipeline,
        MultipleChoicePipeline,
        FeatureExtractionPipeline,
        SentenceEmbeddingPipeline,
    )
}
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}

__all__ = [
    "pipeline",
    "Pipeline",
    "FillMaskPipeline",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
    "QuestionAnsweringPipeline",
    "MultipleChoicePipeline",
    "FeatureExtractionPipeline",
    "SentenceEmbeddingPipeline",
    "PIPELINES",
]


def pipeline(
    task: str, model, framework: str | None = None, tokenizer=None, device=None, batch_size: int = 8, **kwargs
) -> Pipeline:
    """Builds the pipeline of ``task`` on ``model`` in one framework.

    Args:
        task: ``"fill-mask"``, ``"text-classification"`` (or ``"sentiment-analysis"``),
            ``"token-classification"`` (or ``"ner"``), ``"question-answering"``, ``"multiple-choice"``,
            ``"feature-extraction"`` or ``"sentence-embedding"``.
        model: A checkpoint directory or hub id (any format this package reads; for the encoder tasks a
            BERT checkpoint too), or an already loaded model of ``distilbert.pt``, ``distilbert.tf`` or
            ``distilbert.flax``.
        framework: ``"pt"``, ``"tf"`` or ``"flax"``; default ``"pt"`` for a checkpoint, the model's own
            framework for a model object.
        tokenizer: A tokenizer, or a directory or hub id to load ``DistilBertTokenizerFast`` from;
            default the checkpoint's own tokenizer files.
        device: Where to run: a PyTorch device (``"cuda:0"``, an index), a TensorFlow device name
            (``"/GPU:0"``) or a JAX platform (``"gpu"``, ``"gpu:1"``); default the framework's default.
        batch_size: Sequences per forward pass (windows of long texts count one each).
        **kwargs: Default call arguments of the task (``top_k=3``, ``aggregation_strategy="simple"``, ...).

    Returns:
        The task's :class:`Pipeline`; call it on texts.

    Raises:
        ValueError: an unknown task or framework, or a checkpoint without the task's head (a bare
            ``DistilBertModel`` given to ``fill-mask``, say).
        FileNotFoundError: no weights, or no tokenizer files and no ``tokenizer``.

    Example:
        >>> classify = pipeline("sentiment-analysis", model="my-sst2-checkpoint", framework="tf")  # doctest: +SKIP
        >>> classify(["Great food!", "Cold and bland."])  # doctest: +SKIP
        [{'label': 'POSITIVE', 'score': 0.99}, {'label': 'NEGATIVE', 'score': 0.97}]
    """
    name = ALIASES.get(task, task)
    if name not in PIPELINES:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join([*PIPELINES, *ALIASES])}")
    return build(PIPELINES[name], model, framework, tokenizer, device, batch_size, kwargs)
