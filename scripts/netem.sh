#!/usr/bin/env bash
# Shapes a link in the kernel instead of the trainers' emulator: two network namespaces
# (tandem-edge 10.77.0.1, tandem-cloud 10.77.0.2) joined by a veth pair, with tc netem
# delay (RTT/2 each way) and a token-bucket rate on each side's egress. Needs root and
# iproute2.
#
#   scripts/netem.sh up --uplink 10 --downlink 50 --rtt 20   # create (or reshape) the link
#   scripts/netem.sh cloud <command...>                      # run in the cloud namespace
#   scripts/netem.sh edge <command...>                       # run in the edge namespace
#   scripts/netem.sh trace benchmarks/traces/4g.csv [--rtt 50]  # replay a trace (foreground)
#   scripts/netem.sh show | down
#
# Example:
#   scripts/netem.sh up --uplink 10 --downlink 50 --rtt 20
#   scripts/netem.sh cloud build/trainers/cloud_trainer --config C --set link.endpoint=tcp://10.77.0.2:5555 &
#   scripts/netem.sh edge  build/trainers/edge_trainer  --config C --set link.endpoint=tcp://10.77.0.2:5555
set -euo pipefail

EDGE_NS=tandem-edge
CLOUD_NS=tandem-cloud
EDGE_IF=tdm-edge
CLOUD_IF=tdm-cloud

need_root() {
  if [[ $(id -u) -ne 0 ]]; then echo "netem.sh: needs root (network namespaces and tc)" >&2; exit 1; fi
  command -v ip >/dev/null || { echo "netem.sh: 'ip' not found (apt-get install iproute2)" >&2; exit 1; }
}

# shape NS IF RATE_MBPS DELAY_MS
shape() {
  local ns=$1 dev=$2 rate=$3 delay=$4
  ip netns exec "$ns" tc qdisc del dev "$dev" root 2>/dev/null || true
  # netem adds the one-way delay; tbf below it limits the rate (burst: 10 ms at the rate,
  # at least 32 KiB; queue: up to 1 s of data so bursts of activations are not dropped).
  local burst=$(awk -v r="$rate" 'BEGIN { b = r * 1e6 / 8 * 0.01; if (b < 32768) b = 32768; printf "%d", b }')
  local limit=$(awk -v r="$rate" 'BEGIN { l = r * 1e6 / 8; if (l < 65536) l = 65536; printf "%d", l }')
  if ip netns exec "$ns" tc qdisc add dev "$dev" root handle 1: netem delay "${delay}ms" 2>/dev/null; then
    ip netns exec "$ns" tc qdisc add dev "$dev" parent 1: handle 2: tbf rate "${rate}mbit" burst "$burst" limit "$limit"
  else
    # Some kernels (containers, micro-VMs) ship without sch_netem: shape the rate only.
    echo "netem.sh: this kernel has no netem qdisc; shaping the rate only (no added delay on $dev)." \
      "Use link.emulate.rtt_ms for the RTT." >&2
    ip netns exec "$ns" tc qdisc add dev "$dev" root handle 2: tbf rate "${rate}mbit" burst "$burst" limit "$limit"
  fi
}

up() {
  local uplink=10 downlink=50 rtt=20
  while (($#)); do
    case $1 in
      --uplink) uplink=$2; shift 2 ;;
      --downlink) downlink=$2; shift 2 ;;
      --rtt) rtt=$2; shift 2 ;;
      *) echo "netem.sh up: unknown option $1" >&2; exit 2 ;;
    esac
  done
  if ! ip netns list | grep -q "^$EDGE_NS"; then
    ip netns add "$EDGE_NS"
    ip netns add "$CLOUD_NS"
    ip link add "$EDGE_IF" type veth peer name "$CLOUD_IF"
    ip link set "$EDGE_IF" netns "$EDGE_NS"
    ip link set "$CLOUD_IF" netns "$CLOUD_NS"
    ip netns exec "$EDGE_NS" ip addr add 10.77.0.1/24 dev "$EDGE_IF"
    ip netns exec "$CLOUD_NS" ip addr add 10.77.0.2/24 dev "$CLOUD_IF"
    for ns in "$EDGE_NS" "$CLOUD_NS"; do ip netns exec "$ns" ip link set lo up; done
    ip netns exec "$EDGE_NS" ip link set "$EDGE_IF" up
    ip netns exec "$CLOUD_NS" ip link set "$CLOUD_IF" up
  fi
  local half=$(awk -v r="$rtt" 'BEGIN { printf "%g", r / 2 }')
  shape "$EDGE_NS" "$EDGE_IF" "$uplink" "$half"
  shape "$CLOUD_NS" "$CLOUD_IF" "$downlink" "$half"
  echo "netem.sh: edge 10.77.0.1 → cloud 10.77.0.2: uplink ${uplink} Mbit/s, downlink ${downlink} Mbit/s, rtt ${rtt} ms"
}

trace() {
  local file=$1 rtt=20
  shift
  if [[ ${1:-} == --rtt ]]; then rtt=$2; fi
  local start=$(date +%s.%N)
  grep -v '^#' "$file" | tail -n +2 | while IFS=, read -r t uplink downlink; do
    local now=$(date +%s.%N)
    local wait=$(awk -v s="$start" -v t="$t" -v n="$now" 'BEGIN { w = s + t - n; if (w < 0) w = 0; printf "%f", w }')
    sleep "$wait"
    up --uplink "$uplink" --downlink "$downlink" --rtt "$rtt" >/dev/null
    echo "netem.sh: t=${t}s uplink ${uplink} downlink ${downlink}"
  done
}

down() {
  ip netns del "$EDGE_NS" 2>/dev/null || true
  ip netns del "$CLOUD_NS" 2>/dev/null || true
  echo "netem.sh: link removed"
}

cmd=${1:-}
shift || true
case $cmd in
  up) need_root; up "$@" ;;
  down) need_root; down ;;
  edge) need_root; exec ip netns exec "$EDGE_NS" "$@" ;;
  cloud) need_root; exec ip netns exec "$CLOUD_NS" "$@" ;;
  trace) need_root; trace "$@" ;;
  show) need_root; for ns in "$EDGE_NS" "$CLOUD_NS"; do echo "[$ns]"; ip netns exec "$ns" tc qdisc show; done ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
