#!/bin/sh
# Build the embedded default model weights/pgat-synth-256 from scratch with the project's own scripts: about an hour
# on a 2-core CPU with native bf16 (52 min of training steps, then the flow and the evaluation). Safe to interrupt:
# run it again and it resumes from the latest checkpoint. More arguments go to train/progressive.py, e.g.
# `--mixed_precision no` on a CPU without native bf16 (about 1.7× slower there, by the step accounting).
#   sh train/make_default_model.sh [OUTPUT_DIR [progressive.py flags ...]]
set -e
OUT=${1:-weights/pgat-synth-256}
[ $# -gt 0 ] && shift
RESUME=""
ls -d "$OUT"/checkpoint-* >/dev/null 2>&1 && RESUME="--resume_from_checkpoint latest"
if [ ! -f "$OUT/README.md" ]; then
    accelerate launch train/progressive.py --config pgat-synth-256 --output_dir "$OUT" $RESUME "$@"
fi
# the flow trains in a folder of its own (its logs and checkpoints would mix with the stages' ones), then moves in
if [ ! -f "$OUT/flow/config.json" ]; then
    FLOW_RESUME=""
    ls -d "$OUT-flow"/checkpoint-* >/dev/null 2>&1 && FLOW_RESUME="--resume_from_checkpoint latest"
    accelerate launch train/flow.py --config flow-tryon-cpu --output_dir "$OUT-flow" $FLOW_RESUME
    cp -r "$OUT-flow/flow" "$OUT/flow"
    cp "$OUT-flow/validation.jsonl" "$OUT/flow/validation.jsonl"
    cp "$OUT-flow/training_config.json" "$OUT/flow/training_config.json"
    python -c "import sys; from pgat.hub import write_model_index; write_model_index(sys.argv[1], extra={'flow': ['pgat', 'AppearanceFlowModel']})" "$OUT"
fi
pgat evaluate --model "$OUT" --dataset synthhumans --num-pairs 200 --seed 0 --out "$OUT" --update-card
rm -rf "$OUT"/checkpoint-* "$OUT-flow"
