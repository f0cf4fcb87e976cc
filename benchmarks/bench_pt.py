"""PyTorch backend vs transformers 4.57.6 (``attn_implementation="sdpa"``) on CPU, in one run.

distilbert-base size with random weights (no downloads), batch 8 x 128 tokens padded as a tokenizer
pads (row lengths 128 down to 72). Both models hold the same weights; their outputs are checked
against each other before timing. Ours and the reference run alternately, so that load from other
processes hits both alike (in alternating order); tokens/s are medians of ``--repeats`` runs after
``--warmup`` runs, the ratio is the median of the paired ratios.

Rows: inference in float32, bfloat16 weights, and float32 weights under bfloat16 autocast; one
training step of sequence classification with AdamW (float32).

Usage::

    python benchmarks/bench_pt.py [--repeats 15] [--threads N] [--plot out.png]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("USE_TF", "0")  # the reference's PyTorch classes only: skip importing TensorFlow
os.environ.setdefault("USE_FLAX", "0")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402

import distilbert.pt as dpt  # noqa: E402
from distilbert import DistilBertConfig  # noqa: E402

BATCH, SEQ = 8, 128


def make_inputs(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (BATCH, SEQ), generator=g)
    mask = torch.ones(BATCH, SEQ, dtype=torch.long)
    for i in range(BATCH):
        n = SEQ - 8 * i  # 128, 120, ..., 72 real tokens
        mask[i, n:] = 0
        ids[i, n:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def build(task: str, seed: int = 0):
    """Ours and the reference's model of ``task``, distilbert-base size, holding the same random weights."""
    import transformers

    config = DistilBertConfig(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)
    torch.manual_seed(seed)
    name = {"base": "DistilBertModel", "sequence_classification": "DistilBertForSequenceClassification"}[task]
    ours = getattr(dpt, name)(config)
    hf_config = transformers.DistilBertConfig.from_dict(config.to_dict())
    hf_config._attn_implementation = "sdpa"
    ref = getattr(transformers, name)(hf_config)
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return ours, ref


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(fns: dict, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of ``ours`` and ``ref``, and the median of their paired ratios.

    The two run back to back, in alternating order (ours-ref, ref-ours, ...), so that a change in
    the machine's load between rounds hits both; the ratio of each pair cancels it.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for i in range(repeats):
        for k in ["ours", "ref"] if i % 2 == 0 else ["ref", "ours"]:
            times[k].append(timed(fns[k]))
    out = {k: statistics.median(v) for k, v in times.items()}
    out["ratio"] = statistics.median(r / o for o, r in zip(times["ours"], times["ref"]))
    return out


def inference_rows(warmup: int, repeats: int) -> list[tuple[str, float, float, float]]:
    ours, ref = build("base")
    ours.eval(), ref.eval()
    inputs = make_inputs(ours.config.vocab_size)
    rows = []
    with torch.inference_mode():
        diff = (ours(**inputs).last_hidden_state - ref(**inputs).last_hidden_state).abs().max().item()
        assert diff < 1e-4, f"outputs differ by {diff}"
        t = compare({"ours": lambda: ours(**inputs), "ref": lambda: ref(**inputs)}, warmup, repeats)
        rows.append(("inference float32", t["ours"], t["ref"], t["ratio"]))

        with torch.autocast("cpu", dtype=torch.bfloat16):
            t = compare({"ours": lambda: ours(**inputs), "ref": lambda: ref(**inputs)}, warmup, repeats)
        rows.append(("inference bf16 autocast", t["ours"], t["ref"], t["ratio"]))

        ours.to(torch.bfloat16), ref.to(torch.bfloat16)
        a, b = ours(**inputs).last_hidden_state.float(), ref(**inputs).last_hidden_state.float()
        assert (a - b).abs().max().item() < 0.1 * b.abs().max().item(), "bfloat16 outputs differ"
        t = compare({"ours": lambda: ours(**inputs), "ref": lambda: ref(**inputs)}, warmup, repeats)
        rows.append(("inference bf16 weights", t["ours"], t["ref"], t["ratio"]))
    return rows


def training_rows(warmup: int, repeats: int) -> list[tuple[str, float, float, float]]:
    ours, ref = build("sequence_classification")
    ours.train(), ref.train()
    inputs = make_inputs(ours.config.vocab_size)
    labels = torch.arange(BATCH) % 2
    opts = {"ours": torch.optim.AdamW(ours.parameters(), lr=1e-5), "ref": torch.optim.AdamW(ref.parameters(), lr=1e-5)}

    def step(model, opt):
        def run():
            loss = model(**inputs, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return run

    a, b = ours(**inputs, labels=labels).loss.item(), ref(**inputs, labels=labels).loss.item()
    assert abs(a - b) < 1e-4, f"losses differ: {a} vs {b}"
    t = compare({"ours": step(ours, opts["ours"]), "ref": step(ref, opts["ref"])}, warmup, repeats)
    return [("train step float32 (seq-cls, AdamW)", t["ours"], t["ref"], t["ratio"])]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--plot", default=None, help="write a bar chart of tokens/s to this PNG")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
        f"batch {BATCH} x {SEQ}, median of {args.repeats} after {args.warmup} warm-up runs"
    )
    rows = inference_rows(args.warmup, args.repeats)
    if not args.no_train:
        rows += training_rows(max(1, args.warmup - 1), args.repeats)
    tokens = BATCH * SEQ
    header = f"{'workload':38s} {'ours tok/s':>11s} {'ref tok/s':>11s} {'ours/ref':>9s}"
    print(header)
    print("-" * len(header))
    for name, t_ours, t_ref, ratio in rows:
        print(f"{name:38s} {tokens / t_ours:11.0f} {tokens / t_ref:11.0f} {ratio:8.2f}x")
    print("tok/s: median over runs; ours/ref: median of the paired (back-to-back) speed ratios")
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            print("--plot needs matplotlib (pip install matplotlib); table only")
            return

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3.5))
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [tokens / r[1] for r in rows], 0.4, label="distilbert.pt")
        ax.bar([x + 0.2 for x in xs], [tokens / r[2] for r in rows], 0.4, label="transformers 4.57.6 sdpa")
        ax.set_xticks(list(xs), [r[0] for r in rows], fontsize=7)
        ax.set_ylabel("tokens / s")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
