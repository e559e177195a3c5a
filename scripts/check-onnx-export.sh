#!/usr/bin/env bash
# Checks `mlnet-finetune-predict export-onnx` outside .NET: trains on the committed sample (or takes the given model
# and images), exports the model, lets the Predictor write the held-out images' resized pixels and its own
# probabilities (`--examples`, which also checks the export with ONNX Runtime in .NET), then runs the exported file
# with ONNX Runtime for Node.js and checks the same top class on every image and probabilities within 1e-4.
# Usage: scripts/check-onnx-export.sh [model.zip image-or-folder...]
# Needs node and npm; onnxruntime-node is installed by npm into ORT_NODE_PREFIX (default
# ${XDG_CACHE_HOME:-~/.cache}/mlnetfinetune/onnxruntime-node), never into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
out=${CHECK_ONNX_OUT:-out/check-onnx-export}
prefix=${ORT_NODE_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/mlnetfinetune/onnxruntime-node}
ort_version=${ORT_NODE_VERSION:-1.30.0}
command -v node > /dev/null && command -v npm > /dev/null || { echo "error: node and npm are needed (apt-get install -y nodejs npm)" >&2; exit 2; }

mkdir -p "$out"
dotnet build -c Release src/Trainer -nologo > "$out/build.log" && dotnet build -c Release src/Predictor -nologo >> "$out/build.log" \
  || { cat "$out/build.log"; exit 1; }
trainer=src/Trainer/bin/Release/net10.0/mlnet-finetune-train.dll
predictor=src/Predictor/bin/Release/net10.0/mlnet-finetune-predict.dll

if [ $# -ge 2 ]; then
  model=$1
  shift
  images=("$@")
else
  echo "training on the committed sample (data/fashion-mnist-sample) into $out/model"
  dotnet "$trainer" --output "$out/model" > "$out/train.log"
  model=$out/model/model.zip
  # the held-out images: the first column of the Trainer's held-out predictions
  mapfile -t images < <(tail -n +2 "$out/model/heldout-predictions.csv" | cut -d, -f1)
fi

if [ ! -d "$prefix/node_modules/onnxruntime-node" ]; then
  echo "installing onnxruntime-node $ort_version into $prefix"
  mkdir -p "$prefix"
  (cd "$prefix" && npm install --no-save --no-audit --no-fund --silent "onnxruntime-node@$ort_version" > /dev/null)
fi

dotnet "$predictor" export-onnx --model "$model" --output "$out/model.onnx" --examples "${images[@]}"
ORT_NODE_PREFIX=$prefix node scripts/check-onnx-export.mjs "$out/model.onnx" "$out/model.examples"
echo "check-onnx-export: $(( $(date +%s) - started )) s in all"
