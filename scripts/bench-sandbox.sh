# Sourced by the benchmark scripts: release builds of trailguard and its sandbox, a sandbox on a
# free loopback port, and cleanup on exit. Sets: root, bin, tg_bin, work, endpoint, sb_port,
# tg_port, pids (append every background process to it). TRAILGUARD_BIN runs another trailguard
# binary (e.g. an earlier build, to compare before and after in the same run); SANDBOX_BIN another
# sandbox binary.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tests/setup.sh >/dev/null
# SANDBOX_BIN runs a sandbox built elsewhere; with both it and TRAILGUARD_BIN, nothing is built.
[ -n "${TRAILGUARD_BIN:-}" ] && [ -n "${SANDBOX_BIN:-}" ] || cargo build --quiet --release -p trailguard -p trailguard-sandbox
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release"
tg_bin="${TRAILGUARD_BIN:-$bin/trailguard}"
sb_bin="${SANDBOX_BIN:-$bin/trailguard-sandbox}"
work="$(mktemp -d)"
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sb_port="$(port_of)"; tg_port="$(port_of)"
endpoint="http://127.0.0.1:$sb_port"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$sb_bin" --listen "127.0.0.1:$sb_port" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do curl -sf "$endpoint/_sandbox/health" >/dev/null && break; sleep 0.1; done
