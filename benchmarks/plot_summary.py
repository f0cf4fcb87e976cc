"""Draws docs/benchmarks.png from the summary table in docs/benchmarks.md.

The table is the record of what the benchmark scripts printed; this script only pictures it, so the
plot and the text can never disagree.

Usage: python benchmarks/plot_summary.py [docs/benchmarks.md] [docs/benchmarks.png]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\|\s*(pt|tf|flax|tokenizer)\s*\|([^|]+)\|([^|]+)\|([^|]+)\|([^|]+)\|\s*([\d.]+)x\s*\|\s*$")


def read_rows(markdown: Path) -> list[tuple[str, str, float]]:
    """``(backend, workload, ratio)`` for each row of the summary table."""
    rows = []
    for line in markdown.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line.strip())
        if match:
            rows.append((match.group(1), match.group(2).strip(), float(match.group(6))))
    if not rows:
        raise SystemExit(f"no summary rows found in {markdown}")
    return rows


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markdown = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "benchmarks.md"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs" / "benchmarks.png"
    rows = read_rows(markdown)
    colors = {"pt": "#ee4c2c", "tf": "#ff8f00", "flax": "#4285f4", "tokenizer": "#888888"}
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.2))
    labels = [f"{backend}: {workload}" for backend, workload, _ in rows]
    # log scale: the pure-Python tokenizer's ratio is tens of times the others'
    ax.barh(labels, [r - 0.5 for _, _, r in rows], left=0.5, color=[colors[b] for b, _, _ in rows])
    ax.set_xscale("log")
    ax.set_xlim(0.5, max(r for _, _, r in rows) * 2)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("speed relative to the fastest peer (x, log scale, higher is better)")
    ax.set_title("distilbert vs peers, distilbert-base, batch 8 x 128, CPU (2 cores)")
    for i, (_, _, ratio) in enumerate(rows):
        ax.text(ratio, i, f" {ratio:.2f}x", va="center")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
