#!/usr/bin/env bash
# The main job, end to end on the lab: 2 simulated servers, davit-demo:v1 deployed behind davit's proxy,
# then v2 rolled out while a client hammers both servers; prints requests served and failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# Installs Docker, sshd and the registry when missing, and builds the static davit-proxy and davit-demo
# that run in empty images on each server.
bash tests/setup.sh
cargo build -q --release --locked --bin davit
export DAVIT_DEMO_BIN="$root/target/static/x86_64-unknown-linux-gnu/release/davit-demo"
export DAVIT_PROXY_BIN="$root/target/static/x86_64-unknown-linux-gnu/release/davit-proxy"
davit="$root/target/release/davit"

$davit lab up --hosts 2 --registry --json > target/lab.json
eval "$(python3 - target/lab.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f'export DAVIT_IDENTITY={d["identity"]} DAVIT_KNOWN_HOSTS={d["known_hosts"]} REGISTRY={d["registry"]}')
print('HOSTS="' + " ".join("--host " + h["url"] for h in d["hosts"]) + '"')
print('ADDRS="' + " ".join(h["address"] for h in d["hosts"]) + '"')
PY
)"
export DAVIT_INSECURE_REGISTRIES=10.77.0.0/16
work=$(mktemp -d)
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
rm -f /tmp/davit-demo-stop
python3 - $ADDRS <<'PY' &
import http.client, sys, threading, time, os
stop = time.time() + 3600
served = failed = 0
lock = threading.Lock()
def hammer(addr):
    global served, failed
    while not os.path.exists("/tmp/davit-demo-stop"):
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
ts = [threading.Thread(target=hammer, args=(a,)) for a in sys.argv[1:]]
for t in ts: t.start()
for t in ts: t.join()
print(f"requests served: {served}, failed: {failed}")
PY
load=$!
sleep 1
VERSION=v2 $davit deploy $HOSTS
sleep 1
touch /tmp/davit-demo-stop
wait $load
rm -f /tmp/davit-demo-stop
for a in $ADDRS; do echo "$a answers: $(python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://$a/').read().decode().strip())")"; done
VERSION=v2 $davit releases $HOSTS
