#!/usr/bin/env bash
# The full-size training step on one CUDA GPU (benchmarks/gpu_step.py): installs, checks the GPU, then prints
# samples/s and peak memory in bf16 with SDPA, next to fVLM's published 46.5 samples/s (RTX 5090, 135M).
#
#   bash benchmarks/gpu.sh                  # on a GPU machine with a package index: pip-installs the checkout
#   bash benchmarks/gpu.sh --fetch-wheels   # here, beforehand, for a GPU machine that reaches no index: downloads
#                                           # into .whl/ the wheels such an image lacks (CPython 3.12, x86-64)
#
# With .whl/ present (carried beside the checkout) the wheels are installed offline into /tmp/site and the checkout
# is imported from its own folder; the machine's torch stays. Results also go to $OUT/gpu_step.json when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."

# What a CUDA image with torch, accelerate, peft and pyarrow already installed lacks to import foveated_vlm.
WHEELS=(transformers==5.23.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 av==18.1.0 decord==0.6.0)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p .whl
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux2010_x86_64 -d .whl "${WHEELS[@]}"
    du -sh .whl
    exit 0
fi

PYTHON=${PYTHON:-python3}
# Before installing anything: the machine's own torch must see a GPU.
"$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu.sh: no CUDA device here; \
on a CPU, check the path with: python benchmarks/gpu_step.py --device cpu --tiny')"
if [[ -d .whl ]]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    "$PYTHON" -m pip install -q -e .
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
"$PYTHON" benchmarks/gpu_step.py --device cuda --dtype bf16 --steps "${STEPS:-20}" --warmup 3 \
    ${OUT:+--json "$OUT/gpu_step.json"}
