#!/usr/bin/env bash
# Sets up .venv with the package, all three frameworks, the test tools and the demo's network, on the CPU.
# torch is pinned: an unpinned torch pulls several GB of CUDA packages (see README, "GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0" -e ".[all,test,demo]"
