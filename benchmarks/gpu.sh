#!/usr/bin/env bash
# GPU check (issue 9): train the shapes model on one GPU with its shipped config and print images/s, then
# sampling throughput. Run on a machine with a CUDA GPU, from the repository root, after `make install`:
#     bash benchmarks/gpu.sh [STEPS]          # default: the config's 10,316 steps; e.g. 2000 for a quick look
# Prints the card's name with every figure; copy them into BENCHMARKS.md ("GPU check") with the card named.
set -euo pipefail
PY=${PY:-.venv/bin/python}
STEPS=${1:-}
OUT=${OUT:-runs/gpu-shapes}
"$PY" - <<'PYEOF'
import torch
if not torch.cuda.is_available():
    raise SystemExit("benchmarks/gpu.sh needs a CUDA GPU (torch.cuda.is_available() is False)")
print(f"card: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PYEOF
args=(configs/shapes.toml --out "$OUT" --no-progress)
if [ -n "$STEPS" ]; then args+=(--steps "$STEPS"); fi
rm -rf "$OUT"
start=$(date +%s.%N)
"$PY" -m diffsight train "${args[@]}"
end=$(date +%s.%N)
"$PY" - "$OUT" "$start" "$end" <<'PYEOF'
import json, sys
from pathlib import Path
info = json.loads((Path(sys.argv[1]) / "model" / "diffsight.json").read_text())
steps = info["training"]["steps"]
images = info["training"]["images_seen"]
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"training: {steps} steps, {images} images in {wall:.0f} s wall (with start-up): {images / wall:.0f} images/s")
PYEOF
"$PY" benchmarks/gpu_throughput.py "$OUT/model" --steps 20
"$PY" -m diffsight eval "$OUT/model" --n 2000
