#!/usr/bin/env bash
# Load test of `mlnet-finetune-predict serve`, on this machine only (127.0.0.1), bounded and rerunnable:
# builds Release, trains a model on the committed sample (or takes the one given), measures cold start and
# in-process latency, starts the server on a free loopback port, drives POST /predict with the sample PNGs at
# each concurrency level, prints the table, then stops the server with SIGTERM.
#
# Then presses the server's memory: 64 concurrent uploads of a 9 MB PNG, and the decompression-bomb corpus among good
# images, printing the server's peak resident memory and every answer.
#
#   scripts/loadtest.sh [model.zip]        environment: REQUESTS (per level, default 200), CONCURRENCY (default 1,8,32),
#                                          UPLOADS (concurrent large uploads, default 64), UPLOAD_BYTES (default 9000000)
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${REQUESTS:-200}"
concurrency="${CONCURRENCY:-1,8,32}"
uploads="${UPLOADS:-64}"
upload_bytes="${UPLOAD_BYTES:-9000000}"
images=data/fashion-mnist-sample
# sed, not head: head would stop reading, and with pipefail sort's SIGPIPE would end the script.
sample="$(find "$images" -name '*.png' | sort | sed -n 1p)"
predict=src/Predictor/bin/Release/net10.0/mlnet-finetune-predict.dll
train=src/Trainer/bin/Release/net10.0/mlnet-finetune-train.dll
loadtest=tools/LoadTest/bin/Release/net10.0/mlnet-finetune-loadtest.dll

work="$(mktemp -d -t mlnetfinetune-loadtest-XXXXXX)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        wait "$server_pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo), $(dotnet --version) SDK"

echo "== build (Release)"
dotnet build MlNetFinetune.sln -c Release -v q -nologo -clp:ErrorsOnly

model="${1:-}"
if [[ -z "$model" ]]; then
    echo "== train on $images (features come from the bottleneck cache after the first run)"
    # 224 px and the last layer: the photo-sized model, the heaviest the Predictor serves (the sample's own default is 64 px).
    dotnet "$train" --data "$images" --output "$work/model" --image-size 224 --features s4 > "$work/train.log"
    model="$work/model/model.zip"
fi
echo "model: $model"

echo "== cold start: process start to first printed result, dotnet $predict --model <model> $sample"
for run in 1 2 3 4 5; do
    start=$(date +%s%N)
    dotnet "$predict" --model "$model" "$sample" > /dev/null
    echo "run $run: $(( ($(date +%s%N) - start) / 1000000 )) ms"
done

echo "== in-process latency, one image at a time"
dotnet "$loadtest" library --model "$model" --image "$sample" --calls "$requests"

echo "== memory per engine"
dotnet "$loadtest" memory --model "$model" --image "$sample" --engines 4

echo "== serve on a free loopback port"
dotnet "$predict" serve --model "$model" --urls http://127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.err" &
server_pid=$!
start=$(date +%s%N)
url=""
for _ in $(seq 1 240); do
    url="$(grep -m 1 -o 'http://127\.0\.0\.1:[0-9]*' "$work/serve.out" || true)"
    [[ -n "$url" ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "server exited:" >&2
        cat "$work/serve.err" >&2
        exit 1
    fi
    sleep 0.25
done
[[ -n "$url" ]] || { echo "server did not start within 60 s" >&2; exit 1; }
echo "$(cat "$work/serve.out") (ready after $(( ($(date +%s%N) - start) / 1000000 )) ms, pid $server_pid)"

echo "== load"
status=0
dotnet "$loadtest" http --url "$url" --images "$images" --concurrency "$concurrency" --requests "$requests" --server-pid "$server_pid" || status=$?

echo "== $uploads concurrent uploads of about $upload_bytes bytes"
dotnet "$loadtest" uploads --url "$url" --server-pid "$server_pid" --clients "$uploads" --bytes "$upload_bytes" || status=$?

echo "== decompression bombs among good images"
dotnet "$loadtest" bombs --url "$url" --server-pid "$server_pid" --images "$images" || status=$?

echo "== stop (SIGTERM)"
kill -TERM "$server_pid"
wait "$server_pid" && echo "server exited with 0" || { status=$?; echo "server exited with $status"; }
server_pid=""
if [[ -s "$work/serve.err" ]]; then
    echo "server log:"
    cat "$work/serve.err"
fi
exit "$status"
