"""Convert a DistilBERT checkpoint (any supported format) to Keras 3 (model.weights.h5 or model.keras).

Usage: python conversion/to_keras.py SRC DST [--dtype ...] [--force] [--verify]
Same as: distilbert convert SRC DST --to keras [...]
"""

import sys

from distilbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:], "--to", "keras"]))
