#!/usr/bin/env bash
# A shared fleet on one machine: one cloud_trainer (fleet.mode: shared) and N
# edge_trainers on 127.0.0.1, each edge on its own shard of the data, with its own CURVE
# key and its own emulated link (traces taken in turn from a list).
#   scripts/fleet.sh 3                                  # 3 edges, 1 epoch of mlp
#   scripts/fleet.sh 4 --traces 4g,wifi --set run.epochs=2
#   scripts/fleet.sh 2 --splits 1,3 --config configs/fashion_mnist_cnn.yaml
# Options: --config FILE (default configs/fashion_mnist_mlp.yaml), --traces a,b,...
# (files in benchmarks/traces without .csv, or `none`; default none), --splits p,q,...
# (split point per edge, in turn; default the config's), --out DIR (default runs/fleet);
# every other argument goes to all trainers (e.g. --set data.shard.scheme=dirichlet).
# Builds nothing: run scripts/build.sh first.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${TANDEM_BUILD_DIR:-$root/build}
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
[[ $# -ge 1 && "$1" =~ ^[0-9]+$ ]] || { usage >&2; exit 2; }
edges=$1
shift
[[ $edges -ge 1 ]] || { echo "fleet: at least one edge" >&2; exit 2; }
config=configs/fashion_mnist_mlp.yaml
traces=none
splits=
out=runs/fleet
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --traces) traces=$2; shift 2 ;;
    --splits) splits=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) extra+=("$1"); shift ;;
  esac
done
for tool in cloud_trainer edge_trainer tandem_keygen; do
  [[ -x "$build/trainers/$tool" ]] || { echo "fleet: $build/trainers/$tool is missing: run scripts/build.sh" >&2; exit 1; }
done
IFS=, read -r -a trace_list <<<"$traces"
IFS=, read -r -a split_list <<<"$splits"
cd "$root"
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# One key pair for the cloud and one per edge; the cloud accepts exactly the edges' keys.
keys="$out/keys"
names=(cloud)
for ((i = 0; i < edges; i++)); do names+=("edge$i"); done
"$build/trainers/tandem_keygen" --out "$keys" --force "${names[@]}" >/dev/null
: >"$keys/authorized_edges"
for ((i = 0; i < edges; i++)); do cat "$keys/edge$i.pub" >>"$keys/authorized_edges"; done

echo "fleet: cloud for $edges edge(s) (log: $out/cloud.log)"
"$build/trainers/cloud_trainer" --config "$config" --set run.output_dir="$out" \
  --set link.endpoint='tcp://127.0.0.1:*' --set link.accept_timeout_s=120 \
  --set fleet.mode=shared --set fleet.min_edges="$edges" --set run.threads=1 \
  --set security.mode=curve --set security.key_file="$keys/cloud.key" \
  --set security.authorized_keys="$keys/authorized_edges" \
  --endpoint-file "$work/endpoint" "${extra[@]}" >"$out/cloud.log" 2>&1 &
cloud_pid=$!
pids+=("$cloud_pid")
for _ in $(seq 1 600); do
  [[ -s "$work/endpoint" ]] && break
  if ! kill -0 "$cloud_pid" 2>/dev/null; then cat "$out/cloud.log"; echo "fleet: cloud_trainer failed" >&2; exit 1; fi
  sleep 0.1
done
endpoint=$(cat "$work/endpoint")
edge_pids=()
for ((i = 0; i < edges; i++)); do
  trace=${trace_list[$((i % ${#trace_list[@]}))]}
  args=(--set run.name="edge$i" --set run.output_dir="$out/edge$i" --set link.endpoint="$endpoint"
    --set run.threads=1 --set data.shard.count="$edges" --set data.shard.index="$i"
    --set security.mode=curve --set security.key_file="$keys/edge$i.key"
    --set security.cloud_public_key_file="$keys/cloud.pub")
  if [[ "$trace" != none ]]; then args+=(--set link.emulate.trace="benchmarks/traces/$trace.csv"); fi
  if [[ -n "$splits" ]]; then args+=(--set split.point="${split_list[$((i % ${#split_list[@]}))]}"); fi
  echo "fleet: edge$i (shard $i of $edges, link ${trace}${splits:+, split ${split_list[$((i % ${#split_list[@]}))]}}; log: $out/edge$i.log)"
  "$build/trainers/edge_trainer" --config "$config" "${args[@]}" "${extra[@]}" >"$out/edge$i.log" 2>&1 &
  edge_pids+=($!)
  pids+=($!)
done
failed=0
for ((i = 0; i < edges; i++)); do
  if ! wait "${edge_pids[$i]}"; then
    echo "fleet: edge$i failed (exit $?); the end of its log:" >&2
    tail -5 "$out/edge$i.log" >&2
    failed=1
  fi
done
wait "$cloud_pid" || failed=1
pids=()
python3 - "$out" "$edges" <<'PY'
import json, sys
from pathlib import Path

out, edges = Path(sys.argv[1]), int(sys.argv[2])
print(f"{'edge':<8} {'split':>5} {'steps':>6} {'samples/s':>10} {'test acc':>9}")
for i in range(edges):
    path = out / f"edge{i}" / "summary-edge.json"
    if not path.exists():
        print(f"edge{i:<4} (no summary)")
        continue
    s = json.loads(path.read_text())
    acc = s.get("final_test_accuracy")
    print(f"edge{i:<4} {s['split_points'][-1] if s['split_points'] else '-':>5} {s['steps']:>6} "
          f"{s['train_samples_per_second']:>10.0f} {'-' if acc is None else f'{100 * acc:.2f} %':>9}")
PY
exit $failed
