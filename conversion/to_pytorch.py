"""Convert a DistilBERT checkpoint (any supported format) to HF PyTorch (model.safetensors).

Usage: python conversion/to_pytorch.py SRC DST [--dtype ...] [--force] [--verify]
Same as: distilbert convert SRC DST --to pt [...]
"""

import sys

from distilbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:], "--to", "pt"]))
