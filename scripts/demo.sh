#!/usr/bin/env bash
# The main job on the lab: simulated servers on this machine, davit-demo:v1 running on each, answering.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo build -q --release --locked --bin davit
export DAVIT_DEMO_BIN="$PWD/target/static/x86_64-unknown-linux-gnu/release/davit-demo"
davit=target/release/davit

$davit lab up --hosts 2 --registry --json > target/lab.json
read -r identity known registry < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["identity"], d["known_hosts"], d["registry"])' target/lab.json)
for address in $(python3 -c 'import json,sys; print(" ".join(h["address"] for h in json.load(open(sys.argv[1]))["hosts"]))' target/lab.json); do
  ssh -i "$identity" -o UserKnownHostsFile="$known" -o StrictHostKeyChecking=yes -o BatchMode=yes "root@$address" \
    "docker rm -f demo >/dev/null 2>&1; docker run -d --name demo -p 8080:8080 $registry/davit-demo:v1 >/dev/null"
  for _ in $(seq 1 100); do body=$(curl -fsS "http://$address:8080/" 2>/dev/null) && break; sleep 0.2; done
  echo "$address answers: ${body:-nothing}"
done
