#!/usr/bin/env bash
# Saturated delivery against the nginx ceiling (issue 12), side by side, on 127.0.0.1 only:
#
#   benches/wrk/run.sh [--rounds N] [--secs S] BINARY [BINARY...]
#
# Every BINARY runs `up` at once, each on its own port with a fresh SQLite file and the
# connector of connectors/ (to the nginx sink), and stays up. Each round then loads, one after
# another: the nginx relay (nginx.conf), BINARY 1, the relay, BINARY 2, ..., the relay, with
# `wrk -t1 -c50` posting the event of event.lua for S seconds (default 10), each service
# after a 2 s warm-up in its first round. Reported per load of a service: events delivered
# per second (the service's own `sync_ok_total`), the service's CPU per delivered event
# (user + system, /proc), what it wrote to disk per event (/proc/PID/io), delivered/s as a
# fraction of the mean of the relay's requests/s just before and just after it, and the share
# of the machine's CPU the hypervisor took meanwhile (`st`, /proc/stat). The last lines give
# each binary's medians.
#
# Why alternate within a round, against the relay on both sides: on a shared VM the machine's
# speed drifts within minutes (measured here: the relay at 7k, 21k and 40k requests/s in three
# loads a minute apart), so a relay measured once per round flattered or sank the runs further
# from it. A run with a large steal share measured another machine; compare medians.
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light).
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
services=()
cleanup() {
  for pid in "${services[@]}"; do kill "$pid" 2>/dev/null || true; done
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
delivered() { curl -sf "http://127.0.0.1:$1/metrics" | awk '/^sync_ok_total/ {s += $2} END {printf "%d", s}'; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
written() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
# Steal and total jiffies of the whole machine.
steal() { awk '/^cpu / {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

# Each binary up on a port of its own (17500, 17501, ...), warmed up.
for i in "${!bins[@]}"; do
  port=$((17500 + i)) run="$work/run$i"
  mkdir -p "$run" && cp -r "$here/connectors" "$run/"
  "${bins[$i]}" up --connectors "$run/connectors" --port "$port" --database "sqlite:$run/db.sqlite" >"$run/service.log" 2>&1 &
  services+=($!)
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" || { echo "${bins[$i]} did not start:" >&2; tail "$run/service.log" >&2; exit 1; }
  load 2 "http://127.0.0.1:$port" >/dev/null
done
sleep 1

results="$work/results"
printf '%-6s %-40s %12s %14s %12s %8s %7s\n' round run "delivered/s" "CPU ms/event" "KiB/event" "x relay" "steal%"
relay=$(load "$secs" http://127.0.0.1:18080 | rate)
printf '%-6s %-40s %12s\n' 1 "nginx relay (requests/s)" "$relay"
for round in $(seq 1 "$rounds"); do
  for i in "${!bins[@]}"; do
    port=$((17500 + i)) pid="${services[$i]}"
    d0=$(delivered "$port") c0=$(cpu "$pid") w0=$(written "$pid") s0=$(steal) t0=$(date +%s.%N)
    load "$secs" "http://127.0.0.1:$port" >/dev/null
    d1=$(delivered "$port") c1=$(cpu "$pid") w1=$(written "$pid") s1=$(steal) t1=$(date +%s.%N)
    after=$(load "$secs" http://127.0.0.1:18080 | rate)
    awk -v r="$round" -v b="$(basename "${bins[$i]}")" -v d="$((d1 - d0))" -v c="$((c1 - c0))" -v w="$((w1 - w0))" \
        -v t0="$t0" -v t1="$t1" -v tick="$tick" -v before="$relay" -v after="$after" -v s0="$s0" -v s1="$s1" 'BEGIN {
      n = (d > 0) ? d : 1; per = d / (t1 - t0)
      split(s0, a, " "); split(s1, z, " "); st = (z[2] > a[2]) ? 100 * (z[1] - a[1]) / (z[2] - a[2]) : 0
      printf "%-6s %-40s %12.0f %14.4f %12.2f %8.3f %7.1f\n", r, b, per, c * 1000 / tick / n, w / 1024 / n, per / ((before + after) / 2), st
    }' | tee -a "$results"
    printf '%-6s %-40s %12s\n' "$round" "nginx relay (requests/s)" "$after"
    relay=$after
  done
done
echo
printf '%-47s %12s %14s %12s %8s\n' "median of $rounds rounds" "delivered/s" "CPU ms/event" "KiB/event" "x relay"
for b in "${bins[@]}"; do
  name="$(basename "$b")"
  median() { awk -v b="$name" -v col="$1" '$2 == b {print $col}' "$results" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
  printf '%-47s %12.0f %14.4f %12.2f %8.3f\n' "$name" "$(median 3)" "$(median 4)" "$(median 5)" "$(median 6)"
done
