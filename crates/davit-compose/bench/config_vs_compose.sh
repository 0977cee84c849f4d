#!/usr/bin/env bash
# Times `davit config --format json` against the reference Compose v2 binary, process for process, over
# every YAML file of ../shared/corpus (each run from the file's directory, as the differential test does).
# Reports wall time and CPU time (user+sys of the child processes) per file and their ratios.
# Usage: bench/config_vs_compose.sh [DAVIT_BIN] [ROUNDS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
davit="${1:-$here/../../../target/release/davit}"
rounds="${2:-5}"
ref="${DAVIT_COMPOSE_BIN:-davit-reference-compose}"
corpus="${DAVIT_CORPUS:-}"
if [ -z "$corpus" ]; then # ../shared/corpus from the workspace root, or from any ancestor (worktrees)
  d="$here"
  while [ "$d" != "/" ] && [ ! -d "$d/shared/corpus" ]; do d="$(dirname "$d")"; done
  corpus="$d/shared/corpus"
fi
mapfile -t files < <(find "$corpus" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
dirs=(); bases=()
for f in "${files[@]}"; do dirs+=("${f%/*}"); bases+=("${f##*/}"); done
run_all() { # $1 = davit|ref; no forks besides the measured processes
  local r i
  for ((r = 0; r < rounds; r++)); do
    for ((i = 0; i < ${#files[@]}; i++)); do
      cd "${dirs[$i]}"
      if [ "$1" = davit ]; then
        "$davit" config -f "${bases[$i]}" --format json >/dev/null 2>&1 || true
      else
        "$ref" -f "${bases[$i]}" config --format json >/dev/null 2>&1 || true
      fi
    done
  done
}
measure() { # prints "wall_s cpu_s"
  local TIMEFORMAT="%R %U %S"
  { time run_all "$1"; } 2>&1 | awk '{ printf "%s %s\n", $1, $2 + $3 }'
}
read -r dw dc < <(measure davit)
read -r rw rc < <(measure ref)
n=$(( ${#files[@]} * rounds ))
awk -v n="$n" -v dw="$dw" -v dc="$dc" -v rw="$rw" -v rc="$rc" -v files="${#files[@]}" -v rounds="$rounds" 'BEGIN {
  printf "files: %d, rounds: %d (%d runs per tool)\n", files, rounds, n
  printf "%-24s %10s %10s\n", "", "wall/file", "cpu/file"
  printf "%-24s %8.2f ms %8.2f ms\n", "davit config", dw / n * 1000, dc / n * 1000
  printf "%-24s %8.2f ms %8.2f ms\n", "docker compose config", rw / n * 1000, rc / n * 1000
  printf "ratio (compose / davit): wall %.1fx, cpu %.1fx\n", rw / dw, rc / dc
}'
