#!/usr/bin/env python3
"""Rolling deploy vs `docker compose up -d`: the same lab host, the same load, v1 -> v2.

Usage: scripts/bench-rollout.py LAB_JSON DAVIT HOST_INDEX
Needs the lab up (`davit lab up --hosts N --registry --json > LAB_JSON`), `docker compose` on PATH,
DAVIT_PROXY_BIN set to a static davit-proxy. Prints one line per tool: wall time, served, failed.
"""
import http.client, json, os, subprocess, sys, tempfile, threading, time

lab = json.load(open(sys.argv[1]))
davit = sys.argv[2]
host = lab["hosts"][int(sys.argv[3]) - 1]
addr, reg = host["address"], lab["registry"]
env = dict(os.environ, REGISTRY=reg, DAVIT_IDENTITY=lab["identity"], DAVIT_KNOWN_HOSTS=lab["known_hosts"],
           DAVIT_INSECURE_REGISTRIES="10.77.0.0/16")
work = tempfile.mkdtemp()
open(f"{work}/compose.yaml", "w").write(f"""name: benchc
services:
  web:
    image: {reg}/davit-demo:${{VERSION}}
    ports: ["8090:8080"]
""")
open(f"{work}/davit.yaml", "w").write(f"""name: benchd
services:
  web:
    image: {reg}/davit-demo:${{VERSION}}
    x-davit:
      proxy: {{port: 8080, health: /health, publish: 8091}}
""")

def run(cmd, version, extra=None):
    e = dict(env, VERSION=version, **(extra or {}))
    t = time.monotonic()
    subprocess.run(cmd, cwd=work, env=e, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t

class Load:
    def __init__(self, port):
        self.port, self.stop, self.ok, self.failed = port, False, 0, 0
        self.t = threading.Thread(target=self.loop); self.t.start()
    def loop(self):
        while not self.stop:
            try:
                c = http.client.HTTPConnection(addr, self.port, timeout=5)
                c.request("GET", "/"); r = c.getresponse(); r.read(); c.close()
                good = r.status == 200
            except Exception:
                good = False
            if good: self.ok += 1
            else: self.failed += 1
            time.sleep(0.005)
    def end(self):
        self.stop = True; self.t.join(); return self.ok, self.failed

def serves(port, version, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection(addr, port, timeout=2); c.request("GET", "/")
            if f"davit-demo {version}".encode() in c.getresponse().read(): return True
        except Exception:
            pass
        time.sleep(0.05)
    return False

compose = ["docker", "compose", "-f", "compose.yaml", "up", "-d"]
docker_env = {"DOCKER_HOST": host["docker_host"]}
deploy = [davit, "deploy", "-f", "davit.yaml", "--host", host["url"]]
# Warm both: images pulled, v1 serving.
for v in ("v2", "v1"):
    run(compose, v, docker_env); serves(8090, v)
    run(deploy, v); serves(8091, v)
results = {}
for name, cmd, port, extra in (("docker compose up -d", compose, 8090, docker_env), ("davit deploy (rolling)", deploy, 8091, None)):
    for _ in range(3):
        run(cmd, "v1", extra); serves(port, "v1")
        load = Load(port); time.sleep(1)
        t0 = time.monotonic()
        wall = run(cmd, "v2", extra)
        serves(port, "v2")
        to_v2 = time.monotonic() - t0
        time.sleep(1)
        ok, failed = load.end()
        results.setdefault(name, []).append((wall, to_v2, ok, failed))
for name, rs in results.items():
    for wall, to_v2, ok, failed in rs:
        print(f"{name}: command {wall:.2f}s, serving v2 after {to_v2:.2f}s, {ok} served, {failed} failed")
