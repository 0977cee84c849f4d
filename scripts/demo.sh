#!/usr/bin/env bash
# The main job, end to end on the lab: 2 simulated servers, davit-demo:v1 deployed behind davit's proxy,
# then v2 rolled out while a client hammers both servers; prints requests served and failed, and exits
# non-zero if any request failed or a server does not answer v2 at the end.
#
# The test suite runs this script too (bins/davit/tests/cli/demo.rs): it passes its own build in
# DAVIT_BIN (then setup and the release build are the caller's) and a lab instance of its own in
# DAVIT_LAB_INSTANCE.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -z "${DAVIT_BIN:-}" ]; then
  # Installs Docker, sshd and the registry when missing, and builds the static davit-proxy and
  # davit-demo that run in empty images on each server.
  bash tests/setup.sh
  cargo build -q --release --locked --bin davit
  export DAVIT_DEMO_BIN="$root/target/static/x86_64-unknown-linux-gnu/release/davit-demo"
  export DAVIT_PROXY_BIN="$root/target/static/x86_64-unknown-linux-gnu/release/davit-proxy"
fi
davit="${DAVIT_BIN:-$root/target/release/davit}"

work=$(mktemp -d)
load=""
trap '[ -z "$load" ] || kill "$load" 2>/dev/null || true; rm -rf "$work"' EXIT
$davit lab up --hosts 2 --registry --json > "$work/lab.json"
eval "$(python3 - "$work/lab.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f'export DAVIT_IDENTITY={d["identity"]} DAVIT_KNOWN_HOSTS={d["known_hosts"]} REGISTRY={d["registry"]}')
print('HOSTS="' + " ".join("--host " + h["url"] for h in d["hosts"]) + '"')
print('ADDRS="' + " ".join(h["address"] for h in d["hosts"]) + '"')
PY
)"
export DAVIT_INSECURE_REGISTRIES=10.77.0.0/16
cat > "$work/compose.yaml" <<'YAML'
name: demo
services:
  web:
    image: ${REGISTRY}/davit-demo:${VERSION}
    x-davit:
      proxy:
        port: 8080
        health: /health
        publish: 80
YAML
cd "$work"
echo "== deploying davit-demo:v1"
VERSION=v1 $davit deploy $HOSTS
echo "== rolling out davit-demo:v2 under load"
python3 - "$work/stop" $ADDRS <<'PY' &
import http.client, sys, threading, time, os
served = failed = 0
lock = threading.Lock()
def hammer(addr):
    global served, failed
    while not os.path.exists(sys.argv[1]):
        try:
            c = http.client.HTTPConnection(addr, 80, timeout=5)
            c.request("GET", "/")
            r = c.getresponse(); r.read(); c.close()
            ok = r.status == 200
        except Exception:
            ok = False
        with lock:
            if ok: served += 1
            else: failed += 1
        time.sleep(0.005)
ts = [threading.Thread(target=hammer, args=(a,)) for a in sys.argv[2:]]
for t in ts: t.start()
for t in ts: t.join()
print(f"requests served: {served}, failed: {failed}")
sys.exit(1 if failed or not served else 0)
PY
load=$!
sleep 1
VERSION=v2 $davit deploy $HOSTS
sleep 1
touch "$work/stop"
wait $load
load=""
for a in $ADDRS; do
  answer=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://$a/').read().decode().strip())")
  echo "$a answers: $answer"
  case $answer in *v2*) ;; *) echo "$a does not serve v2" >&2; exit 1 ;; esac
done
VERSION=v2 $davit releases $HOSTS
