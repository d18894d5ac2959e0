#!/usr/bin/env bash
# The GPU check and the verifier benchmarks on a CUDA machine with no model hub and no network,
# whose Python has torch and transformers but not the project's other packages.
#
#   infra/gpu/check.sh CONFIG_DIR [OUT_DIR]
#
# CONFIG_DIR: config.json + tokenizer files of a model (no weights; random weights are built).
# PRMF_WHEELS (default .gpu-wheels): cp312 wheels of what the machine lacks, installed with
# --no-index into a private folder (how to download them: ../shared/GPU.md, "Wheels").
# Writes doctor.txt, bench-score.txt and bench-train.txt (a 1.5B-shaped model) into OUT_DIR.
set -euo pipefail
CONFIG=${1:?usage: infra/gpu/check.sh CONFIG_DIR [OUT_DIR]}
OUT=${2:-gpu-check-out}
WHEELS=${PRMF_WHEELS:-.gpu-wheels}
SITE=${PRMF_GPU_SITE:-/tmp/prmf-gpu-site}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    $PY -m pip install --quiet --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PREFECT_HOME=${PREFECT_HOME:-/tmp/prmf-gpu-prefect} TOKENIZERS_PARALLELISM=true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || true

status=0
$PY -m flows.cli doctor --gpu --gpu-model-config "$CONFIG" 2>&1 | tee "$OUT/doctor.txt" || status=1

# A 1.5B-shaped model (Qwen2.5-1.5B's layer shapes, this tokenizer's vocabulary) for the benchmarks.
BIG="$OUT/config-1.5b"
mkdir -p "$BIG"
cp "$CONFIG"/* "$BIG"/
$PY - "$BIG/config.json" <<'PYEOF'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
config.update(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
              num_key_value_heads=2, head_dim=128, max_position_embeddings=4096, tie_word_embeddings=True)
json.dump(config, open(path, "w"), indent=1)
PYEOF
$PY -m flows.cli bench score --model-config "$BIG" --samples 512 \
    --variants count-8,count-32,sorted-8,tokens-16k,tokens-32k 2>&1 | tee "$OUT/bench-score.txt" || status=1
$PY -m flows.cli bench train --model-config "$BIG" --samples 96 --batch-size 8 \
    --variants shuffled,grouped,bf16,micro-2,checkpointing 2>&1 | tee "$OUT/bench-train.txt" || status=1
exit $status
