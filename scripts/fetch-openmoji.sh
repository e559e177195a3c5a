#!/usr/bin/env bash
# Fetches the npm package openmoji (about 4,500 emoji as SVG with group/subgroup labels, CC BY-SA 4.0) with
# `npm pack` and unpacks it into a cache folder, where `mlnet-finetune-train export-openmoji` looks by default.
# Usage: scripts/fetch-openmoji.sh [folder]   (default: ${XDG_CACHE_HOME:-~/.cache}/openmoji; prints the package folder)
# OPENMOJI_VERSION picks another version (default 17.0.0, the one the README's figures were measured on).
set -euo pipefail
version=${OPENMOJI_VERSION:-17.0.0}
folder=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/openmoji}
command -v npm > /dev/null || { echo "error: npm not found; install Node.js and npm (apt-get install -y npm)" >&2; exit 2; }

mkdir -p "$folder"
if [ -f "$folder/package/package.json" ] && grep -q "\"version\": \"$version\"" "$folder/package/package.json"; then
  echo "$folder/package"
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# npm pack checks the tarball against the registry's integrity hash; nothing of the package runs.
tarball=$(cd "$scratch" && npm pack --silent "openmoji@$version")
tar -xzf "$scratch/$tarball" -C "$scratch"
rm -rf "$folder/package"
mv "$scratch/package" "$folder/package"
cp "$scratch/$tarball" "$folder/"
echo "$folder/package"
