#!/bin/sh
# Every CPU result in benchmarks/results/ and the tables of BENCHMARKS.md, in one go (about an hour on 2 cores).
# Run it on a quiet machine: each script measures its own peak alongside, but a neighbour still adds noise.
#   sh benchmarks/run_cpu.sh [PYTHON]
set -eu
PY=${1:-python}
cd "$(dirname "$0")"
R=results
$PY model_cost.py --bottleneck-channels 1024 --out $R/model-cost-cpu.json
$PY model_cost.py --config ../weights/pgat-synth-256 --batches 64:1,8,32 128:1,8,32 256:1,8 512:1,4 1024:1 \
    --out $R/model-cost-embedded-cpu.json
# bf16 only where oneDNN has it natively (model_cost.py says so and stops elsewhere)
if $PY -c "import torch, sys; sys.exit(not torch.ops.mkldnn._is_mkldnn_bf16_supported())"; then
    $PY model_cost.py --bottleneck-channels 1024 --precision bf16 --batches 64:1 128:1 256:1 512:1 1024:1 \
        --out $R/model-cost-cpu-bf16.json
    $PY precision.py --out $R/precision-cpu.json
fi
$PY profile_forward.py --unfused --out $R/profile-cpu.json
$PY video.py --batch-sizes 1 8 --out $R/video-cpu.json
$PY fast_path.py --resolutions 128 256 512 1024 --poses 4 --out $R/fast-path-cpu.json
$PY train_step.py --out $R/train-step-cpu.json
$PY pose_aware.py --out $R/pose-aware-cpu.json
$PY pose_aware.py --bottleneck-channels 128 --resolutions 64 128 256 512 --out $R/pose-aware-embedded-cpu.json
$PY serve_memory.py --out $R/serve-memory-cpu.json
$PY report.py
