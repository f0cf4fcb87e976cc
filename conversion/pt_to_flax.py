"""Convert a DistilBERT checkpoint (any supported format) to HF Flax (flax_model.msgpack).

Usage: python conversion/pt_to_flax.py SRC DST [--dtype ...] [--force] [--verify]
Same as: distilbert convert SRC DST --to flax [...]
"""

import sys

from distilbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:], "--to", "flax"]))
