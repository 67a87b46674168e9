#!/usr/bin/env bash
# Saturated delivery against the nginx ceiling (issue 12), side by side, on 127.0.0.1 only:
#
#   benches/wrk/run.sh [--rounds N] [--secs S] BINARY [BINARY...]
#
# Each round measures the nginx relay (nginx.conf) and then each binary, alternating, so
# that binaries built before and after a change meet the same machine: `wrk -t1 -c50` posts
# the event of event.lua for S seconds (default 10) to `POST /events/bench.event` of
# `BINARY up` (a fresh SQLite file, the connector of connectors/, to the nginx sink), after a
# 2 s warm-up. Reported per run: events delivered per second (the service's own
# `sync_ok_total`), the service's CPU per delivered event (user + system, /proc), what it
# wrote to disk per event (/proc/PID/io), and delivered/s as a fraction of the relay's
# requests/s in the same round. Needs wrk and nginx (Debian: apt-get install wrk nginx-light).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rounds=3 secs=10
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --secs) secs="$2"; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--rounds N] [--secs S] BINARY [BINARY...]" >&2; exit 2; }
for tool in wrk nginx curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install wrk nginx-light curl)" >&2; exit 1; }
done
bins=()
for b in "$@"; do bins+=("$(realpath "$b")"); done

work="$(mktemp -d /tmp/hms-sync-wrk.XXXXXX)"
service=""
cleanup() {
  [ -n "$service" ] && kill "$service" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cp "$here/nginx.conf" "$work/"
nginx -p "$work" -c "$work/nginx.conf"
for _ in $(seq 1 50); do curl -sf -o /dev/null http://127.0.0.1:18081/ && break; sleep 0.1; done

tick=$(getconf CLK_TCK)
load() { wrk -t1 -c50 -d"$1"s -s "$here/event.lua" "$2"; }
rate() { awk '/^Requests\/sec:/ {printf "%.0f", $2}'; }
delivered() { curl -sf http://127.0.0.1:17500/metrics | awk '/^sync_ok_total/ {s += $2} END {printf "%d", s}'; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
written() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }

printf '%-6s %-40s %12s %14s %12s %8s\n' round run "delivered/s" "CPU ms/event" "KiB/event" "x relay"
for round in $(seq 1 "$rounds"); do
  relay=$(load "$secs" http://127.0.0.1:18080 | rate)
  printf '%-6s %-40s %12s\n' "$round" "nginx relay (requests/s)" "$relay"
  for bin in "${bins[@]}"; do
    run="$work/run"
    rm -rf "$run" && mkdir -p "$run" && cp -r "$here/connectors" "$run/"
    "$bin" up --connectors "$run/connectors" --port 17500 --database "sqlite:$run/db.sqlite" >"$run/service.log" 2>&1 &
    service=$!
    for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:17500/healthz && break; sleep 0.1; done
    curl -sf -o /dev/null http://127.0.0.1:17500/healthz || { echo "$bin did not start:" >&2; tail "$run/service.log" >&2; exit 1; }
    load 2 http://127.0.0.1:17500 >/dev/null
    sleep 1
    d0=$(delivered) c0=$(cpu "$service") w0=$(written "$service") t0=$(date +%s.%N)
    load "$secs" http://127.0.0.1:17500 >/dev/null
    d1=$(delivered) c1=$(cpu "$service") w1=$(written "$service") t1=$(date +%s.%N)
    kill "$service"; wait "$service" 2>/dev/null || true; service=""
    awk -v r="$round" -v b="$(basename "$bin")" -v d="$((d1 - d0))" -v c="$((c1 - c0))" -v w="$((w1 - w0))" \
        -v t0="$t0" -v t1="$t1" -v tick="$tick" -v relay="$relay" 'BEGIN {
      n = (d > 0) ? d : 1; per = d / (t1 - t0)
      printf "%-6s %-40s %12.0f %14.4f %12.2f %8.3f\n", r, b, per, c * 1000 / tick / n, w / 1024 / n, per / relay
    }'
  done
done
