#!/usr/bin/env bash
# The main job: set up the environment, then train. With no arguments, the embedded default
# (offline synthetic video, a small model, CPU minutes); any train.py / TrainingArguments flag may follow.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
exec python train.py "$@"
