#!/usr/bin/env bash
# davit-proxy vs nginx as a reverse proxy to the same backend, under the same wrk load, in one run.
#
#   crates/davit-proxy/bench/vs-nginx.sh            # uses the static release build from tests/setup.sh
#   PROXY_BIN=path/to/davit-proxy DURATION=20s CONNS=64 ROUNDS=3 crates/davit-proxy/bench/vs-nginx.sh
#   BASELINE_BIN=path/to/older/davit-proxy ...   # a third contender in the same rounds (before/after)
#
# The backend is a one-worker nginx answering a fixed body (fast enough that neither proxy waits on it).
# Both proxies keep pooled HTTP/1.1 keep-alive connections upstream and add X-Forwarded-*; nginx runs
# `worker_processes auto`, davit-proxy its default runtime (one thread per core). Prints a Markdown table
# for docs/BENCHMARKS.md, and davit-proxy's resident memory idle and after the load.
set -euo pipefail
cd "$(dirname "$0")/../../.."

PROXY_BIN=${PROXY_BIN:-target/static/x86_64-unknown-linux-gnu/release/davit-proxy}
DURATION=${DURATION:-15s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
BASELINE_BIN=${BASELINE_BIN:-}
BACKEND=127.0.0.1:18181 NGINX=127.0.0.1:18182 DAVIT=127.0.0.1:18183 BASE=127.0.0.1:18184

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk curl >/dev/null
fi
[ -x "$PROXY_BIN" ] || { echo "no davit-proxy binary at $PROXY_BIN (run tests/setup.sh, or set PROXY_BIN)" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/backend.conf" <<CONF
daemon off; worker_processes 1; pid $work/backend.pid; error_log $work/backend.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen $BACKEND; location / { return 200 "hello from the backend\n"; } } }
CONF
cat >"$work/nginx.conf" <<CONF
daemon off; worker_processes auto; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy;
  upstream backend { server $BACKEND; keepalive 256; }
  server { listen $NGINX;
    location / {
      proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$host; } } }
CONF

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; exit 1; }

nginx -e "$work/backend.err" -p "$work" -c "$work/backend.conf" & pids+=($!)
wait_port $BACKEND
nginx -e "$work/nginx.err" -p "$work" -c "$work/nginx.conf" & nginx_pid=$!; pids+=($nginx_pid)
DAVIT_LOG=warn "$PROXY_BIN" --listen $DAVIT --target $BACKEND & davit_pid=$!; pids+=($davit_pid)
if [ -n "$BASELINE_BIN" ]; then
  DAVIT_LOG=warn "$BASELINE_BIN" --listen $BASE --target $BACKEND & base_pid=$!; pids+=($base_pid)
  wait_port $BASE
fi
wait_port $NGINX
wait_port $DAVIT
sleep 1
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
idle_rss=$(rss_kb "$davit_pid")
curl -sf "http://$DAVIT/" >/dev/null
curl -sf "http://$NGINX/" >/dev/null

# CPU time (user + system, clock ticks) of a process and its children (nginx's workers).
cpu_ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
# wrk's --latency output -> "requests_per_sec p50 p99 load cpu_us_per_request errors"; the CPU time per
# request (the proxy's own, from /proc) says much less about the neighbours than throughput does.
run() {
  wrk -t"$THREADS" -c"$CONNS" -d3s "http://$1/" >/dev/null # warm-up
  local before after
  before=$(cpu_ticks "$3")
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://$1/" >"$work/$2.txt"
  after=$(cpu_ticks "$3")
  local rps p50 p99 errs reqs cpu
  reqs=$(awk '/requests in/ {print $1}' "$work/$2.txt")
  cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$2.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/$2.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/$2.txt")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' "$work/$2.txt" | tr '\n' ' ' | tr ' ' '_')
  echo "$rps $p50 $p99 load=$(cut -d' ' -f1 /proc/loadavg) ${cpu}us/req ${errs:-none}"
}
# Alternate the two, ROUNDS times each, and keep each one's median round (by throughput): the machine is
# shared, so a single round of each says more about the neighbours than about the proxies.
: >"$work/nginx.rounds"; : >"$work/davit.rounds"; : >"$work/base.rounds"
for _ in $(seq 1 "$ROUNDS"); do
  run $NGINX nginx "$nginx_pid" >>"$work/nginx.rounds"
  run $DAVIT davit "$davit_pid" >>"$work/davit.rounds"
  [ -z "$BASELINE_BIN" ] || run $BASE base "$base_pid" >>"$work/base.rounds"
done
median() { sort -n -k1,1 "$1" | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)'; }
read -r n_rps n_p50 n_p99 _ _ n_err <<<"$(median "$work/nginx.rounds")"
read -r d_rps d_p50 d_p99 _ _ d_err <<<"$(median "$work/davit.rounds")"
loaded_rss=$(rss_kb "$davit_pid")
ratio=$(awk -v d="$d_rps" -v n="$n_rps" 'BEGIN { printf "%.2f", d / n }')

echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, median of $ROUNDS alternating rounds, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); backend: one-worker nginx returning a fixed body"
echo "all rounds in order (requests/s p50 p99 load-average-at-end proxy-CPU-per-request):"
echo "  nginx:       $(awk '{printf "%s %s %s %s %s; ", $1, $2, $3, $4, $5}' "$work/nginx.rounds")"
echo "  davit-proxy: $(awk '{printf "%s %s %s %s %s; ", $1, $2, $3, $4, $5}' "$work/davit.rounds")"
[ -z "$BASELINE_BIN" ] || echo "  baseline:    $(awk '{printf "%s %s %s %s %s; ", $1, $2, $3, $4, $5}' "$work/base.rounds")"
mcpu() { awk '{print $5+0}' "$1" | sort -n | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)'; }
# p99 of every round in ms (wrk prints us, ms or s), then the median: a steadier p99 than the one round
# that had the median throughput.
mp99() {
  awk '{v=$3; u=v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; print v}' "$1" |
    sort -n | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) {printf "%.2f", $1}'
}
echo "median p99 over the rounds: nginx $(mp99 "$work/nginx.rounds") ms, davit-proxy $(mp99 "$work/davit.rounds") ms$([ -z "$BASELINE_BIN" ] || echo ", baseline $(mp99 "$work/base.rounds") ms")"
echo "median proxy CPU per request: nginx $(mcpu "$work/nginx.rounds") us, davit-proxy $(mcpu "$work/davit.rounds") us$([ -z "$BASELINE_BIN" ] || echo ", baseline $(mcpu "$work/base.rounds") us")"
echo
echo "| proxy | requests/s | p50 | p99 | errors |"
echo "| --- | --- | --- | --- | --- |"
echo "| nginx $(nginx -v 2>&1 | sed 's|.*/||') | $n_rps | $n_p50 | $n_p99 | $n_err |"
echo "| davit-proxy | $d_rps | $d_p50 | $d_p99 | $d_err |"
if [ -n "$BASELINE_BIN" ]; then
  read -r b_rps b_p50 b_p99 _ _ b_err <<<"$(median "$work/base.rounds")"
  echo "| davit-proxy baseline ($BASELINE_BIN) | $b_rps | $b_p50 | $b_p99 | $b_err |"
fi
echo
echo "throughput ratio davit-proxy / nginx: $ratio"
echo "davit-proxy resident memory: idle $((idle_rss / 1024)) MiB ($idle_rss kB), after the load $((loaded_rss / 1024)) MiB ($loaded_rss kB)"
