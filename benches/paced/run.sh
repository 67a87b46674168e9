#!/usr/bin/env bash
# CPU of the service at a steady, moderate load (issue 12: at 2,000 events/s at most 40% of
# one core), on 127.0.0.1 only:
#
#   benches/paced/run.sh [--rate R] [--secs S] BINARY [BINARY...]
#
# Each BINARY runs `up` in turn, with the connector of benches/wrk (to the nginx sink of
# benches/wrk/nginx.conf) and a fresh SQLite file. pace.py publishes R events/s (default
# 2,000) over 16 keep-alive connections, each event with a record key of its own: 3 s to warm
# up, then S seconds (default 10) during which the service's CPU (user + system, /proc) is
# read. Prints the share of one core it used and the 202's p50 and p99 as the publishers saw
# them. The publishers run in another process than the service, so only the service is
# counted (`hms-sync bench` counts its sink and publishers too). Needs nginx, python3, curl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rate=2000 secs=10
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate="$2"; shift 2 ;;
    --secs) secs="$2"; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--rate R] [--secs S] BINARY [BINARY...]" >&2; exit 2; }
for tool in nginx python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install nginx-light python3 curl)" >&2; exit 1; }
done
work="$(mktemp -d /tmp/hms-sync-paced.XXXXXX)"
service=""
cleanup() {
  [ -n "$service" ] && kill "$service" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cp "$here/../wrk/nginx.conf" "$work/"
nginx -p "$work" -c "$work/nginx.conf"
port=17650
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for b in "$@"; do
  run="$work/run-$RANDOM"
  mkdir -p "$run" && cp -r "$here/../wrk/connectors" "$run/"
  "$(realpath "$b")" up --connectors "$run/connectors" --port "$port" --database "sqlite:$run/db.sqlite" >"$run/log" 2>&1 &
  service=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  python3 "$here/pace.py" "$port" "$rate" 16 3 >/dev/null
  c0=$(cpu "$service") t0=$(date +%s.%N)
  seen=$(python3 "$here/pace.py" "$port" "$rate" 16 "$secs")
  c1=$(cpu "$service") t1=$(date +%s.%N)
  share=$(awk -v a="$c0" -v z="$c1" -v k="$tick" -v s="$t0" -v e="$t1" 'BEGIN {printf "%.1f", 100 * (z - a) / k / (e - s)}')
  printf '%-30s %s/s: %s%% of a core; %s\n' "$(basename "$b")" "$rate" "$share" "$seen"
  kill "$service"; wait "$service" 2>/dev/null || true; service=""
done
