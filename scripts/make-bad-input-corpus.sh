#!/usr/bin/env bash
# Writes the bad-input corpus into <folder> (new or empty): class-folder data sets of real Fashion-MNIST images from
# data/fashion-mnist-sample with hostile entries among them (decompression bombs, truncations with fake end markers,
# a JPEG trailer, EXIF-rotated JPEGs, a FIFO, symbolic link loops, a dangling link, a folder named y.jpg, a name that
# is not UTF-8, hidden folders, duplicates, odd class names) and <folder>/manifest.json saying what the Trainer, the
# Predictor and the server must do with each entry. Linux (it makes a FIFO and a raw-byte file name).
#   scripts/make-bad-input-corpus.sh /tmp/corpus
#   scripts/make-bad-input-corpus.sh --decode /tmp/corpus/train/Ankle-boot/*.gif   # outcome and peak memory of each decode
set -euo pipefail
project="$(cd "$(dirname "$0")/.." && pwd)/tools/BadInputCorpus"
if [ "${1:-}" = "--decode" ] && [ $# -ge 2 ]; then
  shift
  files=()
  for file in "$@"; do files+=("$(realpath -s -- "$file")"); done
  exec dotnet run -c Release --project "$project" -- decode "${files[@]}"
fi
if [ $# -ne 1 ] || [ "$1" = "--decode" ]; then
  echo "usage: $0 <folder> | --decode <file>..." >&2
  exit 2
fi
dotnet run -c Release --project "$project" -- write "$(realpath -m -- "$1")"
