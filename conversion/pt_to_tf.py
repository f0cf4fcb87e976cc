"""Convert a DistilBERT checkpoint (any supported format) to HF TensorFlow (tf_model.h5).

Usage: python conversion/pt_to_tf.py SRC DST [--dtype ...] [--force] [--verify]
Same as: distilbert convert SRC DST --to tf [...]
"""

import sys

from distilbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:], "--to", "tf"]))
