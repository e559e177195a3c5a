#!/usr/bin/env bash
# One-command GPU check: builds the CUDA variant, featurizes a few thousand real Fashion-MNIST images on the CPU and
# on the GPU, and prints images/s of each and the largest difference between their features.
# On a machine without an NVIDIA GPU it says "no GPU" and stops. Needs: apt-get install -y dataset-fashion-mnist,
# and for the GPU run the CUDA 12 and cuDNN 9 runtime libraries that ONNX Runtime 1.31's CUDA build loads.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L > /dev/null 2>&1; then
  echo "no GPU: nvidia-smi finds no NVIDIA GPU here; nothing to compare"
  exit 0
fi
nvidia-smi -L
images=${GPU_CHECK_IMAGES:-3000}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
dotnet build -c Release -p:UseGpu=true bench/MlNetFinetune.Benchmarks -nologo -v quiet > "$data/build.log" || { cat "$data/build.log"; exit 1; }
bench=bench/MlNetFinetune.Benchmarks/bin/Release/net10.0/mlnet-finetune-bench.dll
dotnet run -c Release -p:UseGpu=true --project src/Trainer -- export-fashion-mnist --output "$data" --per-class $((images / 10)) > /dev/null
for size in 224 64; do
  dotnet "$bench" compare-gpu --data "$data/train" --images "$images" --image-size "$size" --batch-size 64 --gpu 0
done
