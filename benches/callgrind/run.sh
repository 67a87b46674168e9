#!/usr/bin/env bash
# Instructions per delivered event, counted by valgrind's callgrind: a measure of the
# service's own (user-space) work that a shared VM's noise does not move. On 127.0.0.1 only:
#
#   benches/callgrind/run.sh [--events N] [--conns C] [--files] BINARY [BINARY...]
#
# Each BINARY runs `up` under callgrind twice, with the connector of benches/wrk (to the nginx
# sink of benches/wrk/nginx.conf), a fresh SQLite file each time: once for 200 events and once
# for 200 + N (default 2,000), published over C connections (default 1: one event at a time)
# and waited for until all are delivered. The difference of the two runs' instruction counts
# over N is the work of one event (start-up and shutdown cancel out). With one connection each
# event is its own commit and two runs of one binary agreed within 0.5% here (2026-12-03:
# 439.9k and 441.5k instructions per event), where wrk's CPU per event spread by a third on
# the same machine that day. With more (`--conns 32`) commits group as under load, but how
# much depends on timing, and runs of one binary spread by 8% (371k to 402k).
#
# `--files` also lists, per BINARY, the project's source files whose code ran for each event
# (instructions per event by file, from the two runs' profiles): the walk of one event as the
# CPU took it, each instruction counted at the source line it came from (inlined code at its
# own file, so a helper that the compiler folded into its caller still counts). Needs a build
# with line tables (the release profile has them) made from this checkout: they name the files
# by their absolute paths, and those under this checkout's src/ are listed. See
# docs/architecture.md.
#
# What it does not show: the kernel (a third of a delivery's CPU, see README), waiting, and
# the cost of an instruction. valgrind counts each byte of a `rep stos`/`rep movs` (large
# memset and memcpy) as an instruction, and hides the CPU's SHA extensions (the ticket chain's
# hash runs in software under it), so those weigh more here than on the CPU. Compare builds
# with it; measure CPU with benches/wrk. Needs valgrind, nginx, python3 and curl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
events=2000 conns=1 files=""
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events="$2"; shift 2 ;;
    --conns) conns="$2"; shift 2 ;;
    --files) files=1; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--events N] [--conns C] [--files] BINARY [BINARY...]" >&2; exit 2; }
for tool in valgrind nginx python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install valgrind nginx-light python3 curl)" >&2; exit 1; }
done
name=callgrind port=17620
source "$here/../sink.sh"

# Instructions of one life of BINARY that delivers $2 events; its profile is kept as $work/$3.
count() {
  local run="$work/run-$RANDOM"
  mkdir -p "$run" && cp -r "$here/../wrk/connectors" "$run/"
  valgrind --tool=callgrind --callgrind-out-file="$run/out" "$1" up --connectors "$run/connectors" --port "$port" --database "sqlite:$run/db.sqlite" >"$run/log" 2>&1 &
  service=$!
  wait_up
  python3 "$here/publish.py" "$port" "$2" "$conns"
  wait_delivered "$2" "$1" || exit 1
  kill -INT "$service"; wait "$service" 2>/dev/null || true; service=""
  cp "$run/out" "$work/$3"
  awk '/^summary:/ {print $2}' "$run/out"
}

printf '%-40s %16s\n' binary "instructions/event"
for b in "$@"; do
  small=$(count "$(realpath "$b")" 200 small.out)
  large=$(count "$(realpath "$b")" $((200 + events)) large.out)
  printf '%-40s %16.0f\n' "$(basename "$b")" "$(awk -v a="$small" -v z="$large" -v n="$events" 'BEGIN {print (z - a) / n}')"
  if [ -n "$files" ]; then
    for run in small large; do
      callgrind_annotate --inclusive=no --threshold=100 --auto=no "$work/$run.out" >"$work/$run.txt" 2>/dev/null
    done
    python3 "$here/per_file.py" "$(cd "$here/../.." && pwd)/src/" "$work/small.txt" "$work/large.txt" "$events"
  fi
done
