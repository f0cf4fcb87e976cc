"""``distilbert distill``: distil a teacher (BERT or DistilBERT) into a smaller DistilBERT student.

What the command does, in order, before anything is written:

1. Reads the teacher: a BERT checkpoint (converted on the fly by :mod:`distilbert.common.bert`) or a
   DistilBERT-form one, with the head the task needs (the masked-LM head, or a sequence classifier)
   when the loss needs the teacher's logits; a bare encoder (a BERT without its head, a
   sentence-transformers model) can teach the cosine term alone.
2. Builds the student: ``--student DIR``, or the teacher's embeddings, the teacher layers of
   ``--layers`` (default: one in two, starting with the first: 0, 2, 4, ...) and its head.
3. Reads the corpus: one text per line for ``masked-lm``; a TSV (with a header naming ``text`` or
   ``sentence`` and ``label``) or JSONL (``{"text": ..., "label": ...}``) for ``text-classification``.
   Texts are tokenised with the teacher's tokenizer, cut and padded to ``--seq-len``.

Then it trains in the chosen framework (``distilbert.{pt,tf,flax}.distill.distill``). Batch ``k`` is
a pure function of the seed and ``k``: the examples come in a seeded order (a fresh permutation per
epoch) and masked-LM batches are masked by :func:`distilbert.common.distillation.mask_tokens` with a
generator seeded by ``(seed, k)``, so every framework sees the same batches and a resumed run the
batches it would have seen. A loss without a term that learns from masked inputs (the hidden-state
terms alone, ``DistillationConfig.needs_masking`` False) gets the text unmasked. Every
``--save-every`` steps a checkpoint (the student in the framework's format, the optimiser and RNG
state, the step) replaces ``OUT/checkpoint``;
``--resume`` continues from it. The result is the student in the framework's Hugging Face format in
``OUT``, with ``config.json``, the tokenizer files and ``distillation.json``.

Example:
    >>> from distilbert.distill import distill_command  # doctest: +SKIP
    >>> distill_command("teacher-dir", "corpus.txt", "student-dir", "pt", steps=1000)
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from distilbert.common.bert import (
    check_layers,
    is_bert_checkpoint,
    read_bert_checkpoint,
)
from distilbert.common.checkpoint import init_state, load_state
from distilbert.common.config import DistilBertConfig
from distilbert.common.convert import copy_sentence_transformers_files, copy_tokenizer
from distilbert.common.distillation import DistillationConfig, mask_tokens, token_counts, token_weights
from distilbert.common.hub import resolve_dir
from distilbert.common.logs import errors_only
from distilbert.common.names import TIED, task_prefix, weight_table
from distilbert.runs import (
    STATE_FILE,
    TRAINER_FILE,
    build_model,
    find_checkpoint,
    result_directory,
    save_checkpoint,
    seed_framework,
    trim_log,
)

TASKS = {"masked-lm": "masked_lm", "text-classification": "sequence_classification"}
DEFAULT_SEQ_LEN = 128
# Arguments that may change between a run and its resumption (they do not change the trajectory).
RESUMABLE = ("out", "resume", "log", "save_every", "progress", "log_every")


@dataclass
class DistillResult:
    """What a run did: the output directory, the steps made, the last step's terms, the student's size."""

    out: str
    steps: int
    start_step: int
    terms: dict[str, float]
    task: str
    layers: list[int] | None
    parameters: int


# --------------------------------------------------------------------------------- the teacher
@dataclass
class _Model:
    config: DistilBertConfig
    state: dict[str, np.ndarray]
    task: str  # what the state holds: "base", "masked_lm" or "sequence_classification"
    is_bert: bool
    directory: str


def _read_model(name_or_path: str, wanted: str, what: str) -> _Model:
    """A checkpoint (BERT or DistilBERT form) as a canonical state of task ``wanted``, or ``base`` without it."""
    directory = resolve_dir(name_or_path)
    if is_bert_checkpoint(directory):
        # A BERT's masked-LM head converts (kept when the file has it); its fine-tuned heads do not.
        source = read_bert_checkpoint(directory, task=None if wanted == "masked_lm" else "base")
        return _Model(source.config, dict(source.tensors), source.task, True, directory)
    config = DistilBertConfig.from_pretrained(directory)
    with errors_only("distilbert"):  # probing for a head: its "newly initialised" warnings are noise
        state, report = load_state(directory, config, wanted)
        if report.new:  # the file has no such head: read it as the bare encoder
            state, report = load_state(directory, config, "base")
            wanted = "base"
    if report.new:
        raise ValueError(f"the {what} {directory!r} lacks {', '.join(report.new)}")
    return _Model(config, state, wanted, False, directory)


def _needs_logits(config: DistillationConfig) -> bool:
    return bool(config.alpha_ce or config.alpha_mse)


def _check_teacher(teacher: _Model, task: str, config: DistillationConfig) -> None:
    """Refuses a teacher without the head the loss needs, naming the flags to set to 0."""
    if teacher.task != "base":
        return
    head = "masked-LM head" if task == "masked_lm" else "sequence-classification head"
    # Masked-LM: a student built from a headless teacher would have an untrained head for the mlm term.
    flags = ["ce", "mse"] + (["mlm"] if task == "masked_lm" else [])
    set_ = [f"--alpha-{f} 0" for f in flags if getattr(config, f"alpha_{f}")]
    if set_:
        bert = (
            " (a BERT's fine-tuned classifier has no DistilBERT equivalent)"
            if teacher.is_bert and task != "masked_lm"
            else ""
        )
        raise ValueError(
            f"the teacher {teacher.directory!r} has no {head}{bert}, so it gives no logits to "
            f"distil; set {' '.join(set_)} (the cosine term alone distils a bare encoder)"
        )


# --------------------------------------------------------------------------------- the student
def select_layers(state: dict[str, np.ndarray], task: str, layers: list[int]) -> dict[str, np.ndarray]:
    """The canonical state of a student made of the embeddings, ``layers`` (renumbered 0, 1, ...) and the head."""
    position = {teacher: student for student, teacher in enumerate(layers)}
    pattern = re.compile(rf"^{re.escape(task_prefix(task))}transformer\.layer\.(\d+)\.(.*)$")
    out = {}
    for name, array in state.items():
        match = pattern.match(name)
        if match is None:
            out[name] = array
        elif int(match[1]) in position:
            out[f"{task_prefix(task)}transformer.layer.{position[int(match[1])]}.{match[2]}"] = array
    return out


def _as_task(model: _Model, task: str, seed: int) -> tuple[DistilBertConfig, dict[str, np.ndarray]]:
    """The model's state for ``task``: the body moved under the head's prefix, a missing head initialised."""
    fresh = init_state(model.config, task, seed=seed)
    body = {
        name.removeprefix(task_prefix(model.task)): a
        for name, a in model.state.items()
        if name.startswith(task_prefix(model.task))
    }
    state = {}
    for name, array in fresh.items():
        if model.task == task and name in model.state:
            state[name] = model.state[name]
        elif name.startswith(task_prefix(task)) and name.removeprefix(task_prefix(task)) in body:
            state[name] = body[name.removeprefix(task_prefix(task))]
        else:
            state[name] = array  # a new head
    return model.config, state


# ------------------------------------------------------------------------------------ the data
def read_corpus(path: str, task: str, tokenizer, seq_len: int, label2id: dict[str, int], num_labels: int):
    """Tokenised examples: ``(input_ids, attention_mask, labels or None)``, int64, ``(N, seq_len)``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no corpus at {path!r}")
    with open(path, encoding="utf-8") as fh:
        lines = [line.rstrip("\n") for line in fh]
    if task == "masked_lm":
        texts, labels = [line for line in lines if line.strip()], None
    else:
        texts, labels = _labelled(path, lines, label2id, num_labels)
    if not texts:
        raise ValueError(
            f"the corpus {path!r} holds no text; give one text per line"
            + ("" if task == "masked_lm" else " (with a label)")
        )
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    ids, mask = (np.asarray(encoded[k], np.int64) for k in ("input_ids", "attention_mask"))
    return ids, mask, None if labels is None else np.asarray(labels, np.int64)


def _labelled(path: str, lines: list[str], label2id: dict[str, int], num_labels: int):
    rows: list[tuple[str, Any, int]] = []
    if path.endswith((".jsonl", ".json")):
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                rows.append((item["text"], item["label"], number))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: expected a JSON object with 'text' and 'label'") from None
    else:
        header = lines[0].split("\t") if lines else []
        text_col = next((header.index(n) for n in ("text", "sentence") if n in header), None)
        if text_col is None or "label" not in header:
            raise ValueError(
                f"{path!r}: a TSV corpus starts with a header naming its 'text' (or 'sentence') and 'label' columns"
            )
        label_col = header.index("label")
        for number, line in enumerate(lines[1:], 2):
            if line.strip():
                cells = line.split("\t")
                if len(cells) != len(header):
                    raise ValueError(f"{path}:{number}: expected {len(header)} tab-separated columns")
                rows.append((cells[text_col], cells[label_col], number))
    texts, labels = [], []
    for text, label, number in rows:
        if isinstance(label, str) and label in label2id:
            label = label2id[label]
        elif isinstance(label, str) and label.strip().lstrip("-").isdigit():
            label = int(label)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_labels:
            names = ", ".join(label2id) or "none"
            raise ValueError(
                f"{path}:{number}: label {label!r} is neither a class number in [0, {num_labels}) "
                f"nor one of the teacher's label names ({names})"
            )
        texts.append(text)
        labels.append(label)
    return texts, labels


class Batches:
    """Batch ``k`` of a run, a pure function of the seed and ``k`` (so runs and resumptions agree).

    Args:
        ids, mask, labels: The tokenised corpus (``labels``: class labels, or None for masked-LM).
        batch_size: Examples per batch.
        seed: Orders the examples (a permutation per epoch) and seeds each batch's masking.
        masking: ``(weights, mask_token_id, config)`` for masked-LM batches; None for class-label
            batches, or for text left unmasked (``labels`` None: batches without labels, for a
            loss that needs no masked inputs, see ``DistillationConfig.needs_masking``).
    """

    def __init__(self, ids, mask, labels, batch_size: int, seed: int, masking=None):
        self.ids, self.mask, self.labels = ids, mask, labels
        self.batch_size, self.seed, self.masking = batch_size, seed, masking
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.ids))}
        return self._orders[epoch]

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        n = len(self.ids)
        positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        index = np.array([self._order(int(p // n))[p % n] for p in positions])
        ids, mask = self.ids[index], self.mask[index]
        if self.masking is None:  # class labels, or none: unmasked text for the hidden-state terms alone
            labels = None if self.labels is None else self.labels[index]
            return {"input_ids": ids, "attention_mask": mask, "labels": labels}
        weights, mask_id, config = self.masking
        masked, labels = mask_tokens(ids, mask, weights, mask_id, config, np.random.default_rng([self.seed, 1, step]))
        return {"input_ids": masked, "attention_mask": mask, "labels": labels}

    def iterate(self, start: int) -> Iterator[dict[str, np.ndarray]]:
        step = start
        while True:
            yield self[step]
            step += 1


# ----------------------------------------------------------------------------- the framework side
def _parameters(config: DistilBertConfig, task: str) -> int:
    return sum(int(np.prod(spec.shape)) for spec in weight_table(config, task) if spec.kind != TIED)


# -------------------------------------------------------------------------------------- the run
def distill_command(
    teacher: str,
    data: str,
    out: str,
    framework: str,
    *,
    student: str | None = None,
    layers: str | list[int] | None = None,
    task: str = "masked-lm",
    steps: int = 1000,
    batch_size: int = 8,
    seq_len: int | None = None,
    learning_rate: float = 5e-4,
    seed: int = 0,
    warmup_steps: int = 0,
    weight_decay: float = 0.01,
    max_grad_norm: float = 5.0,
    accumulation_steps: int = 1,
    log: str | None = None,
    log_every: int = 1,
    save_every: int = 0,
    resume: bool = False,
    progress: bool = True,
    distillation: DistillationConfig | None = None,
) -> DistillResult:
    """Runs a distillation (see the module docstring); every argument is a flag of ``distilbert distill``.

    Raises:
        ValueError, FileNotFoundError, FileExistsError: Bad input, found before anything is written.
    """
    from distilbert import DistilBertTokenizerFast
    from distilbert.frameworks import check_framework

    arguments = {k: v for k, v in locals().items() if k not in ("DistilBertTokenizerFast", "check_framework")}
    config = distillation or DistillationConfig()
    arguments["distillation"] = config.to_dict()
    check_framework(framework)
    if task not in TASKS:
        raise ValueError(f"unknown --task {task!r}; expected one of {', '.join(TASKS)}")
    for name, value, low in (
        ("--steps", steps, 1),
        ("--batch-size", batch_size, 1),
        ("--seq-len", seq_len or 3, 3),
        ("--accumulation-steps", accumulation_steps, 1),
        ("--warmup-steps", warmup_steps, 0),
        ("--seed", seed, 0),
        ("--save-every", save_every, 0),
        ("--log-every", log_every, 1),
    ):
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    if batch_size % accumulation_steps:
        raise ValueError(f"--batch-size {batch_size} does not split into --accumulation-steps {accumulation_steps}")
    if student is not None and layers is not None:
        raise ValueError("give --student DIR or --layers LIST, not both")
    out = os.path.abspath(out)
    if os.path.exists(out) and not resume:
        raise FileExistsError(f"{out!r} exists; choose a new --out, or pass --resume to continue its checkpoint")
    model_task = TASKS[task]

    # The teacher, the student, the corpus: everything is checked before anything is written.
    if not os.path.isfile(data):
        raise FileNotFoundError(f"no corpus at {data!r}")
    teacher_model = _read_model(teacher, model_task, "teacher")
    _check_teacher(teacher_model, model_task, config)
    tc = teacher_model.config
    seq_len = seq_len or min(DEFAULT_SEQ_LEN, tc.max_position_embeddings)
    if seq_len > tc.max_position_embeddings:
        raise ValueError(f"--seq-len {seq_len} exceeds the teacher's {tc.max_position_embeddings} positions")
    student_task = model_task if model_task != "masked_lm" or config.alpha_mlm or _needs_logits(config) else "base"
    teacher_task = teacher_model.task if _needs_logits(config) else "base"
    t_config, t_state = _as_task(teacher_model, teacher_task, seed)
    if student is not None:
        source = _read_model(student, student_task, "student")
        s_config, s_state = _as_task(source, student_task, seed)
        if (s_config.dim, s_config.vocab_size) != (tc.dim, tc.vocab_size):
            raise ValueError(
                f"the student {source.directory!r} has dim {s_config.dim} and vocabulary "
                f"{s_config.vocab_size}; the teacher's are {tc.dim} and {tc.vocab_size}"
            )
        chosen = None
    else:
        chosen = check_layers(range(0, tc.n_layers, 2) if layers is None else layers, tc.n_layers)
        s_config, s_state = _as_task(teacher_model, student_task, seed)
        s_state = select_layers(s_state, student_task, chosen)
        s_config = s_config.replace(n_layers=len(chosen))
    if model_task == "sequence_classification" and s_config.num_labels != tc.num_labels:
        raise ValueError(f"the student has {s_config.num_labels} labels, the teacher {tc.num_labels}")
    tokenizer = DistilBertTokenizerFast.from_pretrained(teacher_model.directory)
    ids, mask, labels = read_corpus(data, model_task, tokenizer, seq_len, dict(tc.label2id or {}), tc.num_labels)
    masking = None
    if model_task == "masked_lm" and config.needs_masking:  # else the hidden-state terms see the plain text
        weights = token_weights(
            token_counts(ids[mask == 1][None], tc.vocab_size), tokenizer.all_special_ids, config.mlm_smoothing
        )
        masking = (weights, tokenizer.mask_token_id, config)
    batches = Batches(ids, mask, labels, batch_size, seed, masking)

    checkpoint = find_checkpoint(out) if resume and os.path.isdir(out) else None
    start, state = 0, None
    if checkpoint is not None:
        with open(os.path.join(checkpoint, TRAINER_FILE), encoding="utf-8") as fh:
            saved = json.load(fh)
        changed = sorted(
            k
            for k in set(saved["arguments"]) | set(arguments)
            if k not in RESUMABLE and saved["arguments"].get(k) != json.loads(json.dumps(arguments.get(k)))
        )
        if changed:
            raise ValueError(
                f"the checkpoint in {checkpoint!r} was made with other arguments ({', '.join(changed)}); "
                "resume with the same ones"
            )
        start = int(saved["step"])
        with np.load(os.path.join(checkpoint, STATE_FILE)) as npz:
            state = {k: npz[k] for k in npz.files}
        from distilbert import frameworks

        s_state = frameworks.canonical_state(framework, frameworks.from_pretrained(framework, student_task, checkpoint))

    # Training.
    import importlib

    backend = importlib.import_module(f"distilbert.{framework}.distill")
    seed_framework(framework, seed)
    teacher_net = build_model(framework, teacher_task, t_config, t_state, seed)
    student_net = build_model(framework, student_task, s_config, s_state, seed)
    os.makedirs(out, exist_ok=True)
    if log is not None:
        if start:
            trim_log(log, start)
        elif os.path.exists(log):
            os.remove(log)
    bar = _progress(steps, start, progress)
    last: dict[str, float] = {}

    def on_step(step: int, terms: dict[str, float]) -> None:
        last.update(terms)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in terms.items()}, refresh=False)
        if log is not None and (step % log_every == 0 or step == steps):
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, **terms}) + "\n")

    def on_save(step: int, training_state: dict[str, np.ndarray]) -> None:
        save_checkpoint(out, student_net, step, training_state, json.loads(json.dumps(arguments)))

    try:
        backend.distill(
            student_net,
            teacher_net,
            batches.iterate(start),
            config,
            steps=steps,
            learning_rate=learning_rate,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
            max_grad_norm=max_grad_norm,
            accumulation_steps=accumulation_steps,
            on_step=on_step,
            state=state,
            start_step=start,
            save_every=save_every,
            on_save=on_save,
        )
    finally:
        bar.close()

    # The result: the framework's format, the tokenizer and the recipe, moved into OUT when complete.
    with result_directory(out) as work:
        student_net.save_pretrained(work)
        copy_tokenizer(teacher_model.directory, work, teacher_model.is_bert)
        config.to_json_file(os.path.join(work, "distillation.json"))
        copy_sentence_transformers_files(teacher_model.directory, work)
    return DistillResult(out, steps, start, last, student_task, chosen, _parameters(s_config, student_task))


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc="distil",
        unit="step",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )
