#!/usr/bin/env bash
# Installs what is missing, builds, and trains `cnn` on Fashion-MNIST split in two: a
# cloud_trainer and an edge_trainer on 127.0.0.1 (configs/fashion_mnist_cnn.yaml).
#   scripts/demo.sh                         # the full demo (3 epochs, a few minutes)
#   scripts/demo.sh --set run.epochs=1      # extra arguments go to both trainers
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${TANDEM_BUILD_DIR:-$root/build}
export TANDEM_BUILD_DIR=$build

"$root/scripts/setup.sh"
"$root/scripts/build.sh"
cd "$root"
config=configs/fashion_mnist_cnn.yaml
out=runs/demo
work=$(mktemp -d)
cloud_pid=
cleanup() {
  if [[ -n "$cloud_pid" ]] && kill -0 "$cloud_pid" 2>/dev/null; then kill "$cloud_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$out"
# The link is encrypted and authenticated with CURVE: one key pair per side, and the cloud
# accepts only the edge's public key.
keys="$out/keys"
if [[ ! -f "$keys/cloud.key" || ! -f "$keys/edge.key" ]]; then
  "$build/trainers/tandem_keygen" --out "$keys" --force cloud edge >/dev/null
fi
cp "$keys/edge.pub" "$keys/authorized_edges"

echo "demo: starting cloud_trainer on 127.0.0.1, CURVE-encrypted (log: $out/cloud.log)"
"$build/trainers/cloud_trainer" --config "$config" --set run.output_dir="$out" \
  --set link.endpoint='tcp://127.0.0.1:*' --set link.accept_timeout_s=120 \
  --set security.mode=curve --set security.key_file="$keys/cloud.key" \
  --set security.authorized_keys="$keys/authorized_edges" \
  --endpoint-file "$work/endpoint" "$@" >"$out/cloud.log" 2>&1 &
cloud_pid=$!
for _ in $(seq 1 600); do
  [[ -s "$work/endpoint" ]] && break
  if ! kill -0 "$cloud_pid" 2>/dev/null; then cat "$out/cloud.log"; echo "demo: cloud_trainer failed" >&2; exit 1; fi
  sleep 0.1
done
endpoint=$(cat "$work/endpoint")
echo "demo: cloud listening at $endpoint; starting edge_trainer"
"$build/trainers/edge_trainer" --config "$config" --set run.output_dir="$out" --set link.endpoint="$endpoint" \
  --set security.mode=curve --set security.key_file="$keys/edge.key" \
  --set security.cloud_public_key_file="$keys/cloud.pub" "$@"
wait "$cloud_pid"
cloud_pid=
echo
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
s = json.loads((out / "summary-edge.json").read_text())


def size(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


state = "interrupted" if s["interrupted"] else "done"
print(f"demo: {state}: {s['epochs']} of {s['epochs_planned']} epoch(s) of {s['model']} on {s['dataset']}, "
      f"split point(s) {s['split_points']}")
accuracy = s.get("final_test_accuracy")  # null when no epoch was evaluated
print(f"  final test accuracy  {'not measured' if accuracy is None else f'{100 * accuracy:.2f} %'}")
print(f"  wall time            {s['wall_seconds']:.1f} s")
print(f"  training throughput  {s['train_samples_per_second']:.0f} samples/s")
print(f"  link traffic         {size(s['bytes_uplink'])} up, {size(s['bytes_downlink'])} down")
print(f"files in {out}/:")
for name, what in (("summary-edge.json", "the run, per-epoch history"), ("summary-cloud.json", "the cloud's view"),
                   ("timeline-edge.csv", "one row per step"), ("decisions.jsonl", "the planner's decisions"),
                   ("cloud.log", "the cloud's log"), ("keys", "the CURVE key pairs")):
    if (out / name).exists():
        print(f"  {name:19} {what}")
PY
