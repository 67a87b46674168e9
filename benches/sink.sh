# What benches/callgrind/run.sh and benches/layout/run.sh share, sourced with `name` and `port`
# set: a work folder of their own (removed at exit, with a service still running killed), the
# nginx sink of benches/wrk/nginx.conf started in it, and the waits on the service at
# 127.0.0.1:$port, each bounded. Set `service` to the service's pid while it runs.
work="$(mktemp -d "/tmp/hms-sync-$name.XXXXXX")"
service=""
cleanup() {
  [ -n "$service" ] && kill -9 "$service" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cp "$(dirname "${BASH_SOURCE[0]}")/wrk/nginx.conf" "$work/"
nginx -p "$work" -c "$work/nginx.conf"

# Events the service has delivered (its sync_ok_total).
delivered() { curl -sf "http://127.0.0.1:$port/metrics" | awk '/^sync_ok_total/ {s += $2} END {printf "%d", s}'; }

# Waits up to 2 minutes for the service to answer (under valgrind it starts slowly).
wait_up() { for _ in $(seq 1 600); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.2; done; }

# Waits up to 5 minutes until the service has delivered $1 events; says so and fails if not,
# naming $2.
wait_delivered() {
  for _ in $(seq 1 1500); do [ "$(delivered)" -ge "$1" ] && return 0; sleep 0.2; done
  echo "$2: only $(delivered) of $1 delivered" >&2
  return 1
}
