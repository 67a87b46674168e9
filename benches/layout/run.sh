#!/usr/bin/env bash
# Writes benches/layout/symbols.txt: the functions of the release binary that a service runs
# when it starts, idles and delivers, in the order of their addresses. build.rs hands the file
# to the linker (LLD's --symbol-ordering-file), which places those functions first and
# together, so that the pages of code a running service has mapped are mostly code it runs.
# On 127.0.0.1 only:
#
#   benches/layout/run.sh [BINARY]      (default: the release build in $CARGO_TARGET_DIR or target/)
#
# BINARY runs `up` under valgrind's callgrind (which names every function that ran), with the
# connector of benches/wrk to the nginx sink of benches/wrk/nginx.conf, 100 idle connectors
# (as `bench --idle-connectors` makes them) and a fresh SQLite file: it starts, takes 200
# events over 4 connections, delivers them, is read by `/metrics`,
# `/connectors` and `/healthz`, idles for 35 s (past the lanes' idle poll), and stops.
#
# Why: the kernel maps a program's code 64 KiB at a time around each page it runs (fault-
# around), so a few functions spread over 14 MB of code map most of it. Measured on
# 2026-12-04 with one idle connector: 11.6-12.2 MiB of the code resident, 19.3-20.4 MiB in all;
# with the layout, see the README (Performance, "The code a service runs, together").
#
# Run it again after a dependency or the toolchain changes (Cargo.lock, rust-toolchain):
# their functions' symbols then carry new hashes, the linker does not find them (it says
# nothing: --no-warn-symbol-ordering), and those functions are laid out as without the file.
# It says first how many of the functions the file lists now the binary has (the file's
# staleness). A change of the service's own code keeps the symbols of the functions it does
# not rename. Then rebuild: `cargo build --release`. Needs valgrind, nginx, python3, curl, nm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-$here/../../target}/release/hms-sync}"
for tool in valgrind nginx python3 curl nm; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install valgrind nginx-light python3 curl binutils)" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first, or name one" >&2; exit 1; }
name=layout port=17630 events=200
source "$here/../sink.sh"

cp -r "$here/../wrk/connectors" "$work/"
for i in $(seq 0 99); do
  printf 'id: idle-%d\ntype: outbound\ntrigger: { topic: idle.%d }\nkey: "{{ n }}"\nmap:\n  to:\n    url: "http://127.0.0.1:9/x"\n    method: POST\n' "$i" "$i" >"$work/connectors/idle-$i.yaml"
done
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/out" "$bin" up --connectors "$work/connectors" --port "$port" --database "sqlite:$work/db.sqlite" >"$work/log" 2>&1 &
service=$!
wait_up
python3 "$here/../callgrind/publish.py" "$port" "$events" 4
wait_delivered "$events" "$bin" || { tail "$work/log" >&2; exit 1; }
curl -sf -o /dev/null "http://127.0.0.1:$port/connectors"
curl -sf -o /dev/null "http://127.0.0.1:$port/healthz"
sleep 35
kill -INT "$service"; wait "$service" 2>/dev/null || true; service=""

# Every function callgrind named (a name is given at its first mention, `fn=(id) name` or
# `cfn=(id) name`), kept if the binary has it, in the binary's own address order.
grep -E '^c?fn=\([0-9]+\) ' "$work/out" | sed -E 's/^c?fn=\([0-9]+\) //' | sort -u >"$work/ran"
nm "$bin" | awk '$2 ~ /^[tTwW]$/ {print $1, $3}' | sort >"$work/symbols"
if [ -f "$here/symbols.txt" ]; then
  found=$(awk 'NR == FNR {have[$2] = 1; next} ($1 in have) {n++} END {print n + 0}' "$work/symbols" "$here/symbols.txt")
  echo "the list before: $found of its $(wc -l <"$here/symbols.txt") functions are in $bin"
fi
awk 'NR == FNR {ran[$1] = 1; next} ($2 in ran) {print $2}' "$work/ran" "$work/symbols" >"$here/symbols.txt"
size=$(nm -S "$bin" | python3 -c '
import sys
want = set(open(sys.argv[1]).read().split())
print("%.1f" % (sum(int(f[1], 16) for f in map(str.split, sys.stdin) if len(f) == 4 and f[3] in want) / 1048576))' "$here/symbols.txt")
echo "$(wc -l <"$here/symbols.txt") functions ($size MiB of code) written to $here/symbols.txt; rebuild with cargo build --release"
