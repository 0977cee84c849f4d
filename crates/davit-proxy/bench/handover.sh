#!/usr/bin/env bash
# davit-proxy replacing itself over and over under load: counts the requests a handover loses.
#
#   crates/davit-proxy/bench/handover.sh             # the static release build from tests/setup.sh
#   PROXY_BIN=path/to/davit-proxy DURATION=30 CONNS=4 crates/davit-proxy/bench/handover.sh
#   HANDOVER=1 MIGRATE_REQ=0 crates/davit-proxy/bench/handover.sh   # listening sockets passed over
#
# In a network namespace of its own (net.ipv4.tcp_migrate_req=1 there, as the engine sets it on hosts):
# davit-demo as the upstream, one standalone davit-proxy, and wrk opening a new connection for every
# request (`Connection: close`), which puts connections in every state a handover can meet: queued on a
# listener, accepted with the request not yet read, in flight. In a loop until wrk ends: a new proxy
# binds the same port (SO_REUSEPORT), or with HANDOVER=1 takes the old one's listening socket over
# (--handover), its target turns active, the old one gets SIGTERM and exits.
# Prints wrk's totals (socket errors and non-2xx are the lost requests), every non-200 answer, the
# kernel's migration counters and the number of handovers. Not a performance claim: nothing is compared.
set -euo pipefail
cd "$(dirname "$0")/../../.."

PROXY_BIN=${PROXY_BIN:-target/static/x86_64-unknown-linux-gnu/release/davit-proxy}
DEMO_BIN=${DAVIT_DEMO_BIN:-target/static/x86_64-unknown-linux-gnu/release/davit-demo}
DURATION=${DURATION:-30}
CONNS=${CONNS:-4}
PAUSE=${PAUSE:-0.1}
HANDOVER=${HANDOVER:-0}
MIGRATE_REQ=${MIGRATE_REQ:-1}

if ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk curl >/dev/null
fi
for b in "$PROXY_BIN" "$DEMO_BIN"; do
  [ -x "$b" ] || { echo "no binary at $b (run tests/setup.sh, or set PROXY_BIN / DAVIT_DEMO_BIN)" >&2; exit 2; }
done

ns=davit-handover-$$
work=$(mktemp -d)
cleanup() {
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  sleep 0.2
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
in_ns() { ip netns exec "$ns" "$@"; }
in_ns sysctl -qw "net.ipv4.tcp_migrate_req=$MIGRATE_REQ"
handover_args=()
[ "$HANDOVER" = 1 ] && handover_args=(--handover "$work/handover.sock")

ip netns exec "$ns" "$DEMO_BIN" --listen 127.0.0.1:18401 --version v1 >/dev/null 2>&1 &
cat >"$work/status.lua" <<'EOF'
wrk.headers["Connection"] = "close"
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write(status .. " " .. (body or "") .. "\n") end
end
EOF

# Starts a proxy with its admin API on port $1 and waits until its target is active; sets $pid.
start() {
  # `ip netns exec` execs the program, so $! is the proxy itself (a backgrounded shell function would
  # be a subshell, which SIGTERM would not reach through).
  ip netns exec "$ns" "$PROXY_BIN" --listen 127.0.0.1:18400 --target 127.0.0.1:18401 --health /health \
    --admin "127.0.0.1:$1" "${handover_args[@]}" >>"$work/proxies.log" 2>&1 &
  pid=$!
  local deadline=$((SECONDS + 30))
  until in_ns curl -sf "http://127.0.0.1:$1/routes" 2>/dev/null | grep -q '"state":"active"'; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "the proxy on admin port $1 never served:" >&2; tail "$work/proxies.log" >&2; exit 1; }
    sleep 0.02
  done
}

start 18402
old=$pid port=18403
ip netns exec "$ns" wrk -t2 -c"$CONNS" -d"${DURATION}s" -s "$work/status.lua" http://127.0.0.1:18400/ \
  >"$work/wrk.txt" 2>"$work/status.txt" &
wrk=$!
handovers=0
while kill -0 "$wrk" 2>/dev/null; do
  start "$port"
  sleep "$PAUSE"
  kill -TERM "$old"
  wait "$old" || { echo "the old proxy did not exit 0" >&2; exit 1; }
  handovers=$((handovers + 1))
  old=$pid port=$((port == 18402 ? 18403 : 18402))
done
wait "$wrk" || true
grep -E "requests in|Socket errors|Non-2xx" "$work/wrk.txt" || true
grep -v "^$" "$work/status.txt" | sort | uniq -c || true
in_ns nstat -az 2>/dev/null | grep -E "TcpExtTCPMigrateReq(Success|Failure)" || true
echo "$handovers handovers (HANDOVER=$HANDOVER, tcp_migrate_req=$MIGRATE_REQ)"
[ "$HANDOVER" = 1 ] && echo "$(grep -c 'listening sockets taken over' "$work/proxies.log") proxies took the listening socket over"
true
