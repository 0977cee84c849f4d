#!/bin/sh
# Registry push: davit vs skopeo, same image, same registry (docs/BENCHMARKS.md, "Registry push vs skopeo").
#
#   crates/davit-registry/bench/push-vs-skopeo.sh REGISTRY [RUNS]
#
# REGISTRY is host:port of a plain-HTTP registry (e.g. the lab's, `davit lab up --hosts 0 --registry`).
# Needs: a release davit (`cargo build --release --bin davit`, or DAVIT=path), skopeo, docker, busybox-static.
# Builds `davit-bench:1` in the local engine: busybox, a copy of /usr/lib/python3 (real files), 32 MiB random.
# Each "first push" goes to a fresh repository with skopeo's blob-info cache removed, so neither tool can
# skip or mount anything; each "re-push" pushes the unchanged image again to the same repository.
set -eu
REG=${1:?usage: $0 REGISTRY [RUNS]}
RUNS=${2:-5}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
DAVIT=${DAVIT:-${CARGO_TARGET_DIR:-$ROOT/target}/release/davit}
IMG=davit-bench:1

if ! docker image inspect $IMG >/dev/null 2>&1; then
  ctx=$(mktemp -d)
  cp /bin/busybox "$ctx/busybox"
  tar -C /usr/lib -cf "$ctx/py.tar" "$(basename "$(ls -d /usr/lib/python3* | head -1)")"
  head -c 33554432 /dev/urandom > "$ctx/random"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nADD py.tar /usr/lib/\nCOPY random /random\n' > "$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t $IMG "$ctx" >/dev/null
  rm -rf "$ctx"
fi
echo "image $IMG: $(docker image inspect -f '{{.Size}}' $IMG) bytes, $(docker image inspect -f '{{len .RootFS.Layers}}' $IMG) layers"

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
clear_skopeo_cache() { rm -rf /var/lib/containers/cache "${HOME:-/root}/.local/share/containers/cache"; }

for run in $(seq 1 "$RUNS"); do
  id="$(date +%s%N)"
  clear_skopeo_cache
  t0=$(now); skopeo copy -q --dest-tls-verify=false docker-daemon:$IMG "docker://$REG/bench-skopeo-$id:1" >/dev/null; t1=$(now)
  skopeo_first=$(secs "$t0" "$t1")
  t0=$(now); skopeo copy -q --dest-tls-verify=false docker-daemon:$IMG "docker://$REG/bench-skopeo-$id:1" >/dev/null; t1=$(now)
  skopeo_again=$(secs "$t0" "$t1")
  t0=$(now); "$DAVIT" push $IMG "$REG/bench-davit-$id" --tag 1 --insecure-registry "$REG" >/dev/null 2>&1; t1=$(now)
  davit_first=$(secs "$t0" "$t1")
  t0=$(now); "$DAVIT" push $IMG "$REG/bench-davit-$id" --tag 1 --insecure-registry "$REG" >/dev/null 2>&1; t1=$(now)
  davit_again=$(secs "$t0" "$t1")
  echo "run $run: first push skopeo ${skopeo_first}s davit ${davit_first}s | re-push skopeo ${skopeo_again}s davit ${davit_again}s"
done
