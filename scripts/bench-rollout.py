#!/usr/bin/env python3
"""Rollout benchmarks on the lab (docs/BENCHMARKS.md, "Rolling deploy").

Usage:
  scripts/bench-rollout.py compose LAB_JSON DAVIT HOST_INDEX [RUNS]
      `docker compose up -d` vs `davit deploy` (rolling) on the same lab host, v1 -> v2 under the same
      load (one client sending GET / on a new connection every ~5 ms), runs interleaved. Prints per run:
      wall time, requests served and failed, and for davit the batch's time split and davit's overhead
      (the batch's wall time minus the container's own start-to-healthy time and the configured
      min_healthy_time).
  scripts/bench-rollout.py hosts LAB_JSON DAVIT [RUNS] [MAX_PARALLEL]
      The same project deployed to 1 host (the lab's 11th) and to 10 hosts (the lab's 1st to 10th),
      `--strategy rolling --max-parallel MAX_PARALLEL` (default 10: one batch), alternating v1 -> v2 and
      v2 -> v1 rolling updates, runs interleaved; plus the floor of the same Docker work done straight
      on the engines (start the new version until it answers, hold min_healthy_time, stop the old
      one; on 1 vs 10 engines at once). Medians and ratios.

Needs the lab up (`davit lab up --hosts 11 --registry --json > LAB_JSON`; `hosts` needs 11 hosts),
`docker` and `docker compose` on PATH, DAVIT_PROXY_BIN set to a static davit-proxy. Every line also
shows the 1-minute load average when the run started (the machine is shared).
"""
import datetime, http.client, json, os, statistics, subprocess, sys, tempfile, threading, time

MIN_HEALTHY = 2.0  # davit's default --min-healthy-time, a gate the batch holds on purpose


def ts(s):
    """Docker's RFC 3339 timestamp (nanoseconds) as unix seconds."""
    s = s.rstrip("Z")
    base, _, frac = s.partition(".")
    t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + float("0." + (frac or "0"))


def pairs(kv):
    """JSON object with duplicate keys kept apart: older builds put a driver event under a second
    `event` key (now it is under `observed`); the second one is kept as `payload`."""
    out = {}
    for k, v in kv:
        out["payload" if k in out else k] = v
    return out


def load1():
    return os.getloadavg()[0]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


class Lab:
    def __init__(self, path):
        self.lab = json.load(open(path))
        self.reg = self.lab["registry"]
        self.env = dict(os.environ, REGISTRY=self.reg, DAVIT_IDENTITY=self.lab["identity"],
                        DAVIT_KNOWN_HOSTS=self.lab["known_hosts"], DAVIT_INSECURE_REGISTRIES="10.77.0.0/16")
        self.work = tempfile.mkdtemp()

    def host(self, i):
        return self.lab["hosts"][i - 1]

    def write(self, name, text):
        open(f"{self.work}/{name}", "w").write(text)

    def run(self, cmd, version, extra=None):
        e = dict(self.env, VERSION=version, **(extra or {}))
        t = time.monotonic()
        subprocess.run(cmd, cwd=self.work, env=e, check=True, stdout=subprocess.DEVNULL)
        return time.monotonic() - t

    def deploy_json(self, cmd, version):
        """Runs `davit deploy --json`; returns (wall seconds, [(unix time read, event)])."""
        e = dict(self.env, VERSION=version)
        t = time.monotonic()
        p = subprocess.Popen(cmd + ["--json"], cwd=self.work, env=e, stdout=subprocess.PIPE, text=True)
        events = [(time.time(), json.loads(line, object_pairs_hook=pairs)) for line in p.stdout
                  if line.startswith("{")]
        if p.wait() != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {events[-1] if events else ''}")
        return time.monotonic() - t, events

    def docker(self, host, *args):
        e = dict(os.environ, DOCKER_HOST=host["docker_host"])
        return subprocess.run(["docker", *args], env=e, check=True, capture_output=True, text=True).stdout


def batches(lab, events, project):
    """Per host of a davit rollout: the batch's steps from the --json stream, and the new container's
    own times from its engine (created, started, and when the app said it listens, from its log)."""
    out = {}
    for t, e in events:
        if e.get("event") != "service":
            continue
        if e.get("kind") == "action" and e["action"].get("action") == "do":
            a = e["action"]
            out.setdefault(a["host"], {})[f"{a['step']['step']}>"] = t
        elif e.get("kind") == "event":
            ev = e.get("observed") or e["payload"]
            if ev.get("event") == "completed":
                out.setdefault(ev["host"], {})[f"{ev['step']['step']}<"] = t
            elif ev.get("event") == "healthy" and ev.get("version") == "new":
                out.setdefault(ev["host"], {})["healthy"] = t
    release = next(e["release"] for _, e in events if e.get("event") == "recorded")
    by_url = {h["url"]: h for h in lab.lab["hosts"]}
    short = release.replace("-", "")[-10:]
    for url, b in out.items():
        c = json.loads(lab.docker(by_url[url], "inspect", f"{project}-web-{short}-1"))[0]
        b["created"] = ts(c["Created"])
        b["started"] = ts(c["State"]["StartedAt"])
        logs = subprocess.run(["docker", "logs", "--timestamps", c["Id"]], capture_output=True, text=True,
                              env=dict(os.environ, DOCKER_HOST=by_url[url]["docker_host"])).stderr
        b["listening"] = next(ts(line.split()[0]) for line in logs.splitlines() if "listening" in line)
    return out


def split(b):
    """One batch: (wall, own start-to-healthy, overhead, parts) in seconds. The gate probes the
    route's health path over HTTP itself (x-davit.proxy.health, through davit-health), so the
    container's own start-to-healthy is from its start to the app's `listening` line: from then on
    it answers. (Builds before the gate went through davit-health waited for the image's Docker
    healthcheck instead, which passes at the earliest one interval, 2 s, after the start.)"""
    wall = b["stop-old<"] - b["start-new>"]
    own = max(b["listening"] - b["started"], 0.0)
    parts = {
        "start-new (create+start)": b["start-new<"] - b["start-new>"],
        "  of which Docker create->started": b["started"] - b["created"],
        "the app listens after its start": b["listening"] - b["started"],
        "healthy seen after the app listens": b["healthy"] - b["listening"],
        "healthy seen after start-new completed": b["healthy"] - b["start-new<"],
        "route new=100%": b["route<"] - b["route>"],
        "drain-old": b["drain-old<"] - b["drain-old>"],
        "stop-old": b["stop-old<"] - b["stop-old>"],
    }
    return wall, own, wall - own - MIN_HEALTHY, parts


class Load:
    def __init__(self, addr, port):
        self.addr, self.port, self.stop, self.ok, self.failed = addr, port, False, 0, 0
        self.t = threading.Thread(target=self.loop)
        self.t.start()

    def loop(self):
        while not self.stop:
            try:
                c = http.client.HTTPConnection(self.addr, self.port, timeout=5)
                c.request("GET", "/"); r = c.getresponse(); r.read(); c.close()
                good = r.status == 200
            except Exception:
                good = False
            if good: self.ok += 1
            else: self.failed += 1
            time.sleep(0.005)

    def end(self):
        self.stop = True; self.t.join(); return self.ok, self.failed


def serves(addr, port, version, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection(addr, port, timeout=2); c.request("GET", "/")
            if f"davit-demo {version}".encode() in c.getresponse().read(): return True
        except Exception:
            pass
        time.sleep(0.05)
    return False


def bench_compose(lab, davit, index, runs):
    host = lab.host(index)
    addr = host["address"]
    lab.write("compose.yaml", f"""name: benchc
services:
  web:
    image: {lab.reg}/davit-demo:${{VERSION}}
    ports: ["8090:8080"]
""")
    lab.write("davit.yaml", f"""name: benchd
services:
  web:
    image: {lab.reg}/davit-demo:${{VERSION}}
    x-davit:
      proxy: {{port: 8080, health: /health, publish: 8091}}
""")
    compose = ["docker", "compose", "-f", "compose.yaml", "up", "-d"]
    docker_env = {"DOCKER_HOST": host["docker_host"]}
    deploy = [davit, "deploy", "-f", "davit.yaml", "--host", host["url"]]
    # Warm both: images pulled, v1 serving.
    for v in ("v2", "v1"):
        lab.run(compose, v, docker_env); serves(addr, 8090, v)
        lab.run(deploy, v); serves(addr, 8091, v)
    rows = {"docker compose up -d": [], "davit deploy (rolling)": []}
    overheads, parts_all = [], []
    for i in range(runs):
        for name, port in (("docker compose up -d", 8090), ("davit deploy (rolling)", 8091)):
            if name.startswith("docker"):
                lab.run(compose, "v1", docker_env)
            else:
                lab.run(deploy, "v1")
            serves(addr, port, "v1")
            la = load1()
            load = Load(addr, port); time.sleep(1)
            if name.startswith("docker"):
                wall = lab.run(compose, "v2", docker_env); extra = ""
            else:
                wall, events = lab.deploy_json(deploy, "v2")
                (b,) = batches(lab, events, "benchd").values()
                bw, own, over, parts = split(b)
                overheads.append(over); parts_all.append(parts)
                extra = f"; batch {bw:.2f}s = own start-to-healthy {own:.2f}s + min_healthy_time {MIN_HEALTHY:.0f}s + overhead {over:.2f}s"
            serves(addr, port, "v2")
            time.sleep(1)
            ok, failed = load.end()
            rows[name].append((wall, ok, failed))
            print(f"run {i + 1} {name}: {wall:.2f}s, {ok} served, {failed} failed (load {la:.1f}){extra}", flush=True)
    for name, rs in rows.items():
        print(f"median {name}: {med([r[0] for r in rs]):.2f}s, failed {[r[2] for r in rs]}")
    print(f"median davit overhead per batch: {med(overheads):.2f}s")
    for k in parts_all[0]:
        print(f"  median {k}: {med([p[k] for p in parts_all]):.3f}s")


def bench_hosts(lab, davit, runs, max_parallel):
    one = [lab.host(11)]
    ten = [lab.host(i) for i in range(1, 11)]
    for n in ("1", "10"):
        lab.write(f"scale{n}.yaml", f"""name: scale{n}
services:
  web:
    image: {lab.reg}/davit-demo:${{VERSION}}
    x-davit:
      proxy: {{port: 8080, health: /health, publish: 8093}}
""")

    def cmd(n, hosts):
        c = [davit, "deploy", "-f", f"scale{n}.yaml", "--strategy", "rolling", "--max-parallel", str(max_parallel)]
        for h in hosts:
            c += ["--host", h["url"]]
        return c

    def floor(hosts):
        """The same Docker work as a rolling batch, straight on the engines and without davit, on
        every engine at once: with the old version running, start the new one, wait until it answers
        its health path, hold it for min_healthy_time, stop the old one."""
        def sh(h, *args):
            subprocess.run(["docker", *args], env=dict(os.environ, DOCKER_HOST=h["docker_host"]),
                           capture_output=True)
        for h in hosts:
            sh(h, "rm", "-f", "floor-old", "floor-new")
            sh(h, "run", "-d", "--name", "floor-old", f"{lab.reg}/davit-demo:v1")
        t = time.monotonic()

        def one_engine(h):
            lab.docker(h, "run", "-d", "--name", "floor-new", "-p", "18095:8080", f"{lab.reg}/davit-demo:v2")
            end = time.monotonic() + 60
            while time.monotonic() < end:
                try:
                    c = http.client.HTTPConnection(h["address"], 18095, timeout=2)
                    c.request("GET", "/health")
                    if c.getresponse().status == 200:
                        break
                except Exception:
                    pass
                time.sleep(0.05)
            time.sleep(MIN_HEALTHY)
            lab.docker(h, "stop", "floor-old")

        ths = [threading.Thread(target=one_engine, args=(h,)) for h in hosts]
        for x in ths: x.start()
        for x in ths: x.join()
        took = time.monotonic() - t
        for h in hosts:
            sh(h, "rm", "-f", "floor-old", "floor-new")
        return took

    for h in one + ten:  # the floor runs the tag, which the deploys pin by digest
        lab.docker(h, "pull", f"{lab.reg}/davit-demo:v1"); lab.docker(h, "pull", f"{lab.reg}/davit-demo:v2")
    # Warm: v1 everywhere (proxy started, images pulled).
    for n, hosts in (("1", one), ("10", ten)):
        lab.run(cmd(n, hosts), "v2"); lab.run(cmd(n, hosts), "v1")
    walls = {"1": [], "10": []}
    noops = {"1": [], "10": []}
    floors = {"1": [], "10": []}
    overheads = {"1": [], "10": []}
    for i in range(runs):
        for v in ("v2", "v1"):
            for n, hosts in (("1", one), ("10", ten)):
                la = load1()
                wall, events = lab.deploy_json(cmd(n, hosts), v)
                bs = batches(lab, events, f"scale{n}")
                over = [split(b)[2] for b in bs.values()]
                walls[n].append(wall); overheads[n] += over
                print(f"run {i + 1} -> {v}, {n:>2} host(s): {wall:.2f}s, overhead per batch "
                      f"median {med(over):.2f}s max {max(over):.2f}s (load {la:.1f})", flush=True)
        # The fan-out alone: the same deploy again, with nothing to change (connect, pin, lock,
        # read every host's containers, plan, unlock).
        for n, hosts in (("1", one), ("10", ten)):
            la = load1()
            t = lab.run(cmd(n, hosts), "v1")
            noops[n].append(t)
            print(f"run {i + 1} no-op re-deploy, {n:>2} host(s): {t:.2f}s (load {la:.1f})", flush=True)
        for n, hosts in (("1", one), ("10", ten)):
            la = load1()
            f = floor(hosts)
            floors[n].append(f)
            print(f"run {i + 1} floor (same Docker work without davit), {n:>2} engine(s): {f:.2f}s (load {la:.1f})", flush=True)
    m1, m10 = med(walls["1"]), med(walls["10"])
    f1, f10 = med(floors["1"]), med(floors["10"])
    print(f"median davit deploy: 1 host {m1:.2f}s, 10 hosts {m10:.2f}s: {m10 / m1:.2f}x")
    n1, n10 = med(noops["1"]), med(noops["10"])
    print(f"median no-op re-deploy: 1 host {n1:.2f}s, 10 hosts {n10:.2f}s: {n10 / n1:.2f}x")
    print(f"median floor: 1 engine {f1:.2f}s, 10 engines {f10:.2f}s: {f10 / f1:.2f}x")
    print(f"median overhead per batch: 1 host {med(overheads['1']):.2f}s, 10 hosts {med(overheads['10']):.2f}s")


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("compose", "hosts"):
        raise SystemExit(__doc__)
    lab = Lab(sys.argv[2])
    davit = os.path.abspath(sys.argv[3])
    if sys.argv[1] == "compose":
        bench_compose(lab, davit, int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 3)
    else:
        bench_hosts(lab, davit, int(sys.argv[4]) if len(sys.argv) > 4 else 3,
                    int(sys.argv[5]) if len(sys.argv) > 5 else 10)


main()
