#!/usr/bin/env bash
# Packs the library and the two tools into a local folder feed, then uses them as an outsider would:
#   1. a fresh console project outside the repository that references only the MlNetFinetune package runs ML.NET's
#      image-classification sample, ported by changing its using (tests/Packaging/VisionSamplePort): fit on real
#      Fashion-MNIST images, evaluate, save; then a second process loads the model and predicts the same images;
#   2. `dotnet tool install --add-source <feed>` installs both tools, which train on real images and predict.
# Everything runs in a temporary folder with its own NuGet package folder (the machine's one serves as a read-only
# fallback, so nothing already cached is downloaded again) and its own bottleneck cache; the repository and the
# user's caches are left as they were.
#
#   scripts/package-test.sh            # the tools are packed for linux-x64 only (the platform under test)
#   TOOL_RIDS='linux-x64;linux-arm64;osx-arm64;win-x64' scripts/package-test.sh   # as released
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d /tmp/mlnetfinetune-package-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
feed=$work/feed
rids=${TOOL_RIDS:-linux-x64}
version=$(dotnet msbuild src/MlNetFinetune -getProperty:Version)
shared_packages=$(dotnet nuget locals global-packages --list | sed 's/^global-packages: //')
step() { printf '\n== %s (%s s)\n' "$1" "$SECONDS"; }

step "pack MlNetFinetune $version and the tools ($rids) into $feed"
dotnet pack src/MlNetFinetune -c Release -o "$feed" --nologo -v:q
for tool in Trainer Predictor; do
    # Only the tool's RID list is overridden: a global RuntimeIdentifiers would reach the library too and pull other
    # platforms' natives into the package.
    dotnet pack "src/$tool" -c Release -o "$feed" --nologo -v:q -p:ToolPackageRuntimeIdentifiers=\"$rids\"
done
ls -l "$feed"

# The package must hold each pretrained ONNX file exactly once.
onnx=$(unzip -Z1 "$feed/MlNetFinetune.$version.nupkg" | grep -c '\.onnx$')
[ "$onnx" -eq 2 ] || { echo "FAIL: $onnx ONNX entries in MlNetFinetune.$version.nupkg, expected 2"; exit 1; }

cat > "$work/NuGet.config" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="local" value="$feed" />
  </packageSources>
  <config>
    <add key="globalPackagesFolder" value="$work/packages" />
  </config>
  <fallbackPackageFolders>
    <add key="machine" value="$shared_packages" />
  </fallbackPackageFolders>
</configuration>
EOF
export XDG_CACHE_HOME=$work/cache NUGET_PACKAGES=$work/packages DOTNET_CLI_TELEMETRY_OPTOUT=1

# Real Fashion-MNIST images: the committed sample (500 PNGs, 10 classes), and one image per class to predict.
data=$repo/data/fashion-mnist-sample
mkdir -p "$work/predict"
for class in "$data"/*/; do
    cp "$(find "$class" -name '*.png' | sort | tail -n 1)" "$work/predict/$(basename "$class").png"
done

step "build the ported sample against the package only"
cp -r tests/Packaging/VisionSamplePort "$work/consumer"
cp "$work/NuGet.config" "$work/consumer/"
dotnet build "$work/consumer" -c Release --nologo -v:q -p:MlNetFinetuneVersion="$version" -o "$work/consumer/out"
[ -f "$work/consumer/out/DnnImageModels/ResNet18Onnx/ResNet18.onnx" ] \
    || { echo "FAIL: the package did not put the pretrained backbone next to the consumer"; exit 1; }

step "fit, evaluate, save and predict (process 1)"
dotnet "$work/consumer/out/VisionSamplePort.dll" train "$data" "$work/model.zip" "$work/predict" | tee "$work/train.log"
accuracy=$(sed -n 's/^MicroAccuracy: \([0-9.]*\).*/\1/p' "$work/train.log")
awk -v a="$accuracy" 'BEGIN { exit !(a > 0.6) }' || { echo "FAIL: held-out accuracy $accuracy, expected above 0.6"; exit 1; }

step "load and predict in a fresh process (process 2)"
dotnet "$work/consumer/out/VisionSamplePort.dll" predict "$work/model.zip" "$work/predict" | tee "$work/predict.log"
diff <(grep '^PREDICTION' "$work/train.log") <(grep '^PREDICTION' "$work/predict.log") \
    || { echo "FAIL: the reloaded model predicts differently"; exit 1; }
[ "$(grep -c '^PREDICTION' "$work/predict.log")" -eq 10 ] || { echo "FAIL: expected 10 predictions"; exit 1; }

step "install the tools from the feed and run them"
for tool in mlnet-finetune-train mlnet-finetune-predict; do
    dotnet tool install --tool-path "$work/tools" --add-source "$feed" --configfile "$work/NuGet.config" "$tool" --version "$version"
done
installed=$(find "$work/tools/.store" -mindepth 3 -maxdepth 3 -type d -name 'mlnet-finetune-*' -printf '%f\n' | sort | tr '\n' ' ')
echo "installed packages: $installed"
case "$installed" in
    *linux-arm64*|*osx-arm64*|*win-x64*) echo "FAIL: another platform's package was installed"; exit 1 ;;
esac
"$work/tools/mlnet-finetune-train" --data "$data" --output "$work/tool-model" | tail -n 3
"$work/tools/mlnet-finetune-predict" --model "$work/tool-model/model.zip" "$work/predict" | tee "$work/tool-predict.log"
[ "$(wc -l < "$work/tool-predict.log")" -eq 10 ] || { echo "FAIL: expected 10 tool predictions"; exit 1; }

step "package sizes"
ls -l "$feed" | awk 'NR > 1 { if ($5 < 1e6) printf "%8.1f kB  %s\n", $5 / 1e3, $9; else printf "%8.1f MB  %s\n", $5 / 1e6, $9 }'
echo "PASS package test in $SECONDS s"
