#!/usr/bin/env bash
# The full Fashion-MNIST (60,000 train / 10,000 test) end to end through the Trainer, from a cold bottleneck cache:
# prints held-out accuracy, wall time, featurization images/s and peak memory. Extra arguments go to the Trainer
# (e.g. --image-size 224 --features s4 for the classic last-layer baseline).
# Needs: apt-get install -y dataset-fashion-mnist
set -euo pipefail
cd "$(dirname "$0")/.."
data=${FASHION_MNIST_DIR:-/tmp/fashion-mnist}
out=${BENCHMARK_OUT:-out/benchmark-fashion-mnist}
workspace=$(mktemp -d)
trap 'rm -rf "$workspace"' EXIT

dotnet build -c Release src/Trainer -nologo > "$workspace/build.log" || { cat "$workspace/build.log"; exit 1; }
trainer=src/Trainer/bin/Release/net10.0/mlnet-finetune-train.dll
if [ ! -d "$data/test" ]; then
  dotnet "$trainer" export-fashion-mnist --output "$data"
fi

mkdir -p "$out"
/usr/bin/time -v -o "$out/time.txt" dotnet "$trainer" --data "$data/train" --test "$data/test" \
  --output "$out" --workspace "$workspace" "$@" > "$out/trainer.log"

field() { grep -m1 "\"$1\"" "$out/report.json" | sed 's/.*: *//; s/,$//; s/"//g'; }
echo "Fashion-MNIST full, arguments: ${*:-(defaults)}"
grep -m1 "^Data:" "$out/trainer.log" || true
echo "backbone:              $(field backbone)"
echo "held-out accuracy:     $(field microAccuracy) (macro $(field macroAccuracy), log-loss $(field logLoss))"
echo "train/validation/test: $(field trainImages) / $(field validationImages) / $(field heldOutImages)"
echo "featurization:         $(field featuresComputed) vectors at $(field featurizationImagesPerSecond) images/s in $(field featurizationSeconds) s"
echo "head training:         $(field headTrainingSeconds) s, L2 $(field l2Regularization)"
echo "wall time:             $(grep 'Elapsed (wall clock)' "$out/time.txt" | sed 's/.*): //')"
echo "peak memory (RSS):     $(grep 'Maximum resident' "$out/time.txt" | sed 's/.*: //') KB"
echo "cores:                 $(nproc)"
