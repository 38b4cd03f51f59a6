#!/usr/bin/env bash
# Measures what BENCHMARKS.md records under "Image": the release binary's size, the time from
# exec to /readyz answering 200 against the local sandbox (credentials resolved, identity known,
# state opened, every poller's first page read), and the resident memory after SECONDS idle.
#   deploy/container/measure.sh [SECONDS]     (default 60)
# Uses the release trailguard in $TRAILGUARD_RELEASE_TARGET_DIR (or the cargo target dir) and
# the sandbox from a debug build (cargo test --workspace --no-run builds it), or the release one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
secs="${1:-60}"
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
release="${TRAILGUARD_RELEASE_TARGET_DIR:-$target_dir}/release/trailguard"
# The sandbox from a debug build, or else from the release target directory.
sandbox="$target_dir/debug/trailguard-sandbox"
[ -x "$sandbox" ] || sandbox="${TRAILGUARD_RELEASE_TARGET_DIR:-$target_dir}/release/trailguard-sandbox"
[ -x "$release" ] || { echo "measure: build it first: cargo build --release -p trailguard" >&2; exit 1; }
[ -x "$sandbox" ] || { echo "measure: build the sandbox first: cargo test --workspace --no-run" >&2; exit 1; }
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sb_port="$(port_of)"; tg_port="$(port_of)"
"$sandbox" --listen "127.0.0.1:$sb_port" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$sb_port/_sandbox/health" >/dev/null && break; sleep 0.1; done
cat > "$work/trailguard.toml" <<TOML
[aws]
regions = ["us-east-1"]
[state]
dir = "$work/state"
[server]
listen = "127.0.0.1:$tg_port"
[log]
level = "warn"
TOML
start="$(date +%s.%N)"
env -i AWS_ENDPOINT_URL="http://127.0.0.1:$sb_port" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIAMEASURE \
  AWS_SECRET_ACCESS_KEY=x AWS_EC2_METADATA_DISABLED=true "$release" run --config "$work/trailguard.toml" 2>"$work/tg.log" &
tg=$!; pids+=($tg)
ready=""
for _ in $(seq 3000); do
  if curl -sf "http://127.0.0.1:$tg_port/readyz" >/dev/null 2>&1; then ready="$(date +%s.%N)"; break; fi
  sleep 0.01
done
[ -n "$ready" ] || { cat "$work/tg.log"; echo "measure: never ready" >&2; exit 1; }
sleep "$secs"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$tg/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$tg/status")
size=$(stat -c %s "$release")
python3 -c "print(f'binary {$size} bytes ({$size/1048576:.1f} MiB); start to ready {($ready-$start)*1000:.0f} ms; after {$secs}s idle: RSS {$rss/1024:.1f} MiB, peak {$hwm/1024:.1f} MiB')"
