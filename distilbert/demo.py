"""``distilbert demo``: one model, three frameworks, the same numbers.

The default demo runs offline on what ships with the package. It trains a small DistilBERT sentiment
classifier from scratch with Keras ``model.fit`` on ``distilbert/data/sentiment.tsv`` (304 short
sentences, written for this package; every fifth pair of sentences is held out), saves it as a
Hugging Face ``tf_model.h5``, converts it to PyTorch (``model.safetensors``) and Flax
(``flax_model.msgpack``) with :func:`distilbert.common.convert.convert`, loads each file in its
framework's classes and runs the held-out sentences through all three with the text-classification
pipeline's runners. It reports each framework's accuracy, whether its predictions agree with
TensorFlow's, the largest logit difference from TensorFlow and the time per batch.

With a checkpoint (``model=``), it instead runs the fill-mask pipeline of that checkpoint in the three
frameworks on a few sentences and compares their predictions.

Example:
    >>> from distilbert.demo import sentiment_demo, format_sentiment
    >>> print(format_sentiment(sentiment_demo()))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from importlib import resources

import numpy as np

from distilbert.frameworks import NAMES

LABELS = ("negative", "positive")
FRAMEWORKS = ("tf", "pt", "flax")
CHECKPOINT_FILES = {"tf": "tf_model.h5", "pt": "model.safetensors", "flax": "flax_model.msgpack"}
DEFAULT_EPOCHS = 20
BATCH_SIZE = 16
SEED = 0
HELD_OUT_EVERY = 5  # every fifth pair (a sentence and its opposite) is held out
HIDE_FRACTION = 0.25  # of the words, replaced by [MASK] afresh in every epoch of training
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SUFFIXES = ["##s", "##es", "##ed", "##ing", "##ly", "##er", "##est", "##ful", "##ness", "##y"]
FILL_MASK_TEXTS = [
    "The capital of France is [MASK].",
    "I drink a cup of [MASK] every morning.",
    "She plays the [MASK] in a rock band.",
    "The [MASK] barked at the postman.",
]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- the data
def load_sentiment() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The packaged sentiment sentences as ``(train, held_out)`` lists of ``(sentence, label)``,
    label 0 negative and 1 positive.

    The file pairs each sentence with one of opposite sentiment; whole pairs are held out, so no
    held-out sentence has a near-copy in training.

    Example:
        >>> train, held_out = load_sentiment()
        >>> len(train), len(held_out), held_out[0]
        (242, 62, ('The soup was warm and full of flavour.', 1))
    """
    text = resources.files("distilbert").joinpath("data", "sentiment.tsv").read_text(encoding="utf-8")
    lines = text.splitlines()
    if lines[0] != "label\tsentence":
        raise ValueError("distilbert/data/sentiment.tsv must start with the header 'label<TAB>sentence'")
    examples = []
    for number, line in enumerate(lines[1:], start=2):
        label, _, sentence = line.partition("\t")
        if label not in LABELS or not sentence:
            raise ValueError(f"sentiment.tsv line {number}: expected 'positive' or 'negative', a tab and a sentence")
        examples.append((sentence, LABELS.index(label)))
    train = [ex for i, ex in enumerate(examples) if (i // 2) % HELD_OUT_EVERY != 0]
    held_out = [ex for i, ex in enumerate(examples) if (i // 2) % HELD_OUT_EVERY == 0]
    return train, held_out


def build_vocab(texts: list[str]) -> list[str]:
    """A WordPiece vocabulary for ``texts``: the special tokens, every lowercased word and punctuation
    mark of the texts, each letter and digit as a word start and as a ``##`` continuation (so that
    any word tokenizes, if only letter by letter) and a few common suffixes.

    Example:
        >>> build_vocab(["Good food!"])[5:9]
        ['!', 'food', 'good', '0']
    """
    words = sorted({piece for text in texts for piece in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())})
    characters = list("0123456789abcdefghijklmnopqrstuvwxyz")
    pieces = characters + ["##" + c for c in characters] + SUFFIXES
    return list(dict.fromkeys(SPECIAL_TOKENS + words + pieces))


def demo_config(vocab_size: int):
    """The small model the demo trains: 2 layers, dim 64, 4 heads, 64 positions, dropout 0.2."""
    from distilbert import DistilBertConfig

    return DistilBertConfig(
        vocab_size=vocab_size,
        dim=64,
        n_layers=2,
        n_heads=4,
        hidden_dim=128,
        max_position_embeddings=64,
        dropout=0.2,
        attention_dropout=0.2,
        seq_classif_dropout=0.2,
        id2label=dict(enumerate(LABELS)),
    )


# ------------------------------------------------------------------------------ training (Keras)
def train_sentiment(
    directory: str, train: list[tuple[str, int]], vocab: list[str], epochs: int = DEFAULT_EPOCHS, seed: int = SEED
) -> dict:
    """Trains the demo classifier with Keras ``model.fit`` and saves it (``tf_model.h5`` and tokenizer
    files) in ``directory``; returns the training time and final loss.

    Args:
        directory: Where the checkpoint goes (created).
        train: ``(sentence, label)`` pairs.
        vocab: The tokenizer's vocabulary (:func:`build_vocab`).
        epochs: Passes over the data.
        seed: Seeds Python, numpy and TensorFlow (weights, shuffling, hidden words).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from distilbert import DistilBertTokenizerFast
    from distilbert.tf import TFDistilBertForSequenceClassification

    os.makedirs(directory, exist_ok=True)
    vocab_file = os.path.join(directory, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as fh:
        fh.write("\n".join(vocab) + "\n")
    config = demo_config(len(vocab))
    tokenizer = DistilBertTokenizerFast(vocab_file=vocab_file, model_max_length=config.max_position_embeddings)
    keras.utils.set_random_seed(seed)
    encoded = tokenizer([sentence for sentence, _ in train], padding=True, truncation=True, return_tensors="np")
    labels = np.array([label for _, label in train])
    words = ~np.isin(encoded["input_ids"], tokenizer.all_special_ids)  # (N, T)
    mask_id = tokenizer.mask_token_id

    # Hiding a quarter of the words anew in every epoch (as masked-LM pre-training does) keeps this
    # small, randomly initialised model from memorising 242 sentences: it has to learn what the
    # sentiment words mean instead.
    def hide_words(inputs, label):
        hidden = inputs["words"] & (tf.random.uniform(tf.shape(inputs["input_ids"])) < HIDE_FRACTION)
        ids = tf.where(hidden, tf.constant(mask_id, inputs["input_ids"].dtype), inputs["input_ids"])
        return {"input_ids": ids, "attention_mask": inputs["attention_mask"]}, label

    dataset = (
        tf.data.Dataset.from_tensor_slices(
            ({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "words": words}, labels)
        )
        .shuffle(len(labels), seed=seed)
        .batch(BATCH_SIZE)
        .map(hide_words)
    )
    model = TFDistilBertForSequenceClassification(config)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01))
    start = time.perf_counter()
    history = model.fit(dataset, epochs=epochs, shuffle=False, verbose=0)  # the dataset shuffles itself
    seconds = time.perf_counter() - start
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return {"seconds": seconds, "final_loss": float(history.history["loss"][-1])}


# -------------------------------------------------------------------------------- comparing
def _time_batches(pipe, batches: list[list[dict]], repeats: int = 3) -> tuple[list[dict], float]:
    """Each row's outputs, and the median milliseconds per batch (after a warm-up pass that pays for
    tracing and compilation)."""
    outputs = [out for batch in batches for out in pipe.run(batch)]
    times = []
    for _ in range(repeats):
        for batch in batches:
            start = time.perf_counter()
            pipe.run(batch)
            times.append(time.perf_counter() - start)
    return outputs, 1000 * statistics.median(times)


def _batches(rows: list, size: int = BATCH_SIZE) -> list[list]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def sentiment_demo(epochs: int = DEFAULT_EPOCHS, frameworks=FRAMEWORKS, output: str | None = None) -> dict:
    """Trains in TensorFlow, converts, and compares the frameworks on the held-out sentences.

    Args:
        epochs: Training epochs.
        frameworks: Frameworks to compare; TensorFlow, which trains the model, is always one.
        output: Keep the checkpoints in ``output/tf``, ``output/pt`` and ``output/flax`` (must not
            exist yet); default a temporary directory, removed afterwards.

    Returns:
        A JSON-able report: data sizes, training, and per framework its file, accuracy, agreement
        with TensorFlow, largest logit difference and milliseconds per batch, plus each held-out
        sentence with its label and every framework's prediction.
    """
    from distilbert.common.convert import convert
    from distilbert.pipelines import pipeline
    from distilbert.pipelines.base import rows_of

    frameworks = ["tf"] + [fw for fw in dict.fromkeys(frameworks) if fw != "tf"]
    unknown = [fw for fw in frameworks if fw not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"unknown framework(s) {unknown}; expected some of {', '.join(FRAMEWORKS)}")
    if output is not None and os.path.exists(output):
        raise FileExistsError(f"{output!r} exists; pass a new directory for the demo's checkpoints")
    root = output or tempfile.mkdtemp(prefix="distilbert-demo-")
    try:
        train, held_out = load_sentiment()
        vocab = build_vocab([sentence for sentence, _ in train + held_out])
        dirs = {fw: os.path.join(root, fw) for fw in frameworks}
        _log(
            f"training a 2-layer DistilBERT (dim 64, vocab {len(vocab)}) with Keras model.fit: "
            f"{len(train)} sentences, {epochs} epochs ..."
        )
        training = train_sentiment(dirs["tf"], train, vocab, epochs)
        _log(f"  trained in {training['seconds']:.1f} s, final loss {training['final_loss']:.3f}")
        for fw in frameworks[1:]:
            convert(dirs["tf"], dirs[fw], to=fw)
            _log(f"converted tf_model.h5 -> {fw}/{CHECKPOINT_FILES[fw]}")

        gold = np.array([label for _, label in held_out])
        results, reference = {}, None
        for fw in frameworks:
            pipe = pipeline("text-classification", model=dirs[fw], framework=fw, batch_size=BATCH_SIZE)
            rows = rows_of(pipe.tokenizer([sentence for sentence, _ in held_out]))
            outputs, ms = _time_batches(pipe, _batches(rows))
            logits = np.stack([out["logits"] for out in outputs])  # (N, 2)
            if reference is None:
                reference = logits
            predictions = logits.argmax(-1)
            results[fw] = {
                "file": CHECKPOINT_FILES[fw],
                "accuracy": float((predictions == gold).mean()),
                "agree": int((predictions == reference.argmax(-1)).sum()),
                "max_abs_logit_diff": float(np.abs(logits - reference).max()),
                "ms_per_batch": ms,
                "predictions": predictions.tolist(),
            }
            _log(f"ran {len(held_out)} held-out sentences in {fw} on {pipe.device}")
        return {
            "task": "sentiment",
            "epochs": epochs,
            "train_sentences": len(train),
            "held_out": len(held_out),
            "batch_size": BATCH_SIZE,
            "training_seconds": training["seconds"],
            "final_loss": training["final_loss"],
            "checkpoints": root if output is not None else None,
            "frameworks": {fw: {k: v for k, v in r.items() if k != "predictions"} for fw, r in results.items()},
            "examples": [
                {
                    "sentence": sentence,
                    "label": LABELS[label],
                    **{fw: LABELS[results[fw]["predictions"][i]] for fw in frameworks},
                }
                for i, (sentence, label) in enumerate(held_out)
            ],
        }
    finally:
        if output is None:
            shutil.rmtree(root, ignore_errors=True)


def fill_mask_demo(model: str, frameworks=("pt", "tf", "flax"), texts=None, top_k: int = 3) -> dict:
    """Runs the fill-mask pipeline of checkpoint ``model`` in each framework on ``texts``.

    Args:
        model: A masked-LM checkpoint directory or hub id.
        frameworks: The frameworks to compare; the first is the reference.
        texts: Sentences with one mask each, written ``[MASK]``; default a few general ones.
        top_k: Predictions shown per sentence.

    Returns:
        A JSON-able report: per framework whether its top predictions match the reference's, the
        largest difference of their scores, and milliseconds per batch; per text each framework's
        top ``top_k`` tokens and scores.
    """
    from distilbert.pipelines import pipeline
    from distilbert.pipelines.base import rows_of

    frameworks = list(dict.fromkeys(frameworks))
    texts = list(texts or FILL_MASK_TEXTS)
    results, reference = {}, None
    for fw in frameworks:
        pipe = pipeline("fill-mask", model=model, framework=fw, batch_size=len(texts))
        mask = pipe.tokenizer.mask_token
        inputs = [text.replace("[MASK]", mask) for text in texts]
        for text in inputs:
            if text.count(mask) != 1:
                raise ValueError(f"each demo text needs exactly one {mask}: {text!r}")
        predictions = pipe(inputs, top_k=top_k)
        _, ms = _time_batches(pipe, [rows_of(pipe.tokenizer(inputs))])
        tokens = [[p["token"] for p in prediction] for prediction in predictions]
        scores = np.array([[p["score"] for p in prediction] for prediction in predictions])
        if reference is None:
            reference = (tokens, scores)
        results[fw] = {
            "same_predictions": tokens == reference[0],
            "max_abs_score_diff": float(np.abs(scores - reference[1]).max()),
            "ms_per_batch": ms,
            "device": pipe.device,
            "top": [[{"token": p["token_str"], "score": p["score"]} for p in prediction] for prediction in predictions],
        }
        _log(f"ran {len(texts)} sentences in {fw} on {pipe.device}")
    return {
        "task": "fill-mask",
        "model": os.fspath(model),
        "texts": texts,
        "batch_size": len(texts),
        "frameworks": results,
    }


# -------------------------------------------------------------------------------- tables
def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def format_sentiment(report: dict, examples: int = 8) -> str:
    """The sentiment report as text: a few held-out sentences with every framework's prediction,
    then one row per framework."""
    frameworks = list(report["frameworks"])
    shown = report["examples"][:examples]
    sample = _table(
        ["held-out sentence", "label", *(NAMES[fw] for fw in frameworks)],
        [[ex["sentence"], ex["label"], *(ex[fw] for fw in frameworks)] for ex in shown],
    )
    n = report["held_out"]
    rows = [
        [
            NAMES[fw],
            r["file"],
            f"{100 * r['accuracy']:.1f}%",
            f"{r['agree']}/{n}",
            f"{r['max_abs_logit_diff']:.1e}",
            f"{r['ms_per_batch']:.2f}",
        ]
        for fw, r in report["frameworks"].items()
    ]
    summary = _table(
        [
            "framework",
            "checkpoint",
            "accuracy",
            "agrees with TensorFlow",
            "max |logit - TensorFlow|",
            f"ms per batch of {report['batch_size']}",
        ],
        rows,
    )
    intro = (
        f"DistilBERT sentiment classifier trained from scratch with Keras model.fit on "
        f"{report['train_sentences']} sentences ({report['epochs']} epochs, {report['training_seconds']:.0f} s), "
        f"converted to {' and '.join(NAMES[fw] for fw in frameworks[1:]) or 'no other framework'}; "
        f"{n} held-out sentences ({len(shown)} shown):"
    )
    text = f"{intro}\n\n{sample}\n\n{summary}\n"
    if report.get("checkpoints"):
        text += f"\ncheckpoints kept in {report['checkpoints']}/{{{','.join(frameworks)}}}\n"
    return text


def format_fill_mask(report: dict) -> str:
    """The fill-mask report as text: each sentence's top tokens per framework, then one row per framework."""
    frameworks = list(report["frameworks"])
    reference = NAMES[frameworks[0]]
    blocks = []
    for i, text in enumerate(report["texts"]):
        lines = [text]
        for fw in frameworks:
            top = ", ".join(f"{p['token']} ({p['score']:.3f})" for p in report["frameworks"][fw]["top"][i])
            lines.append(f"  {NAMES[fw]:10s} {top}")
        blocks.append("\n".join(lines))
    rows = [
        [
            NAMES[fw],
            r["device"],
            "yes" if r["same_predictions"] else "NO",
            f"{r['max_abs_score_diff']:.1e}",
            f"{r['ms_per_batch']:.2f}",
        ]
        for fw, r in report["frameworks"].items()
    ]
    summary = _table(
        [
            "framework",
            "device",
            f"same top tokens as {reference}",
            f"max |score - {reference}|",
            f"ms per batch of {report['batch_size']}",
        ],
        rows,
    )
    return f"fill-mask with {report['model']}:\n\n" + "\n\n".join(blocks) + f"\n\n{summary}\n"
