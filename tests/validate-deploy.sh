#!/usr/bin/env bash
# Validates everything in systemd/ and deploy/ with the tools the ecosystem uses, and tests the
# container image: its daemon runs against the sandbox and answers its own health check.
# Run by tests/test.sh after the cargo tests (which build the debug binaries it uses).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${TRAILGUARD_DEPLOY_VENV:-$root/.venv-deploy}/bin"
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
passed=0
fail() { echo "validate-deploy: FAILED: $*" >&2; echo "validate-deploy: $passed passed, 1 failed"; exit 1; }
ok() { echo "validate-deploy: ok: $*"; passed=$((passed + 1)); }

# systemd: verify must print nothing (it exits 0 on unknown keys), alone and with each
# credentials drop-in; exposure at most 1.5. (No restart loop on a bad config: tests/deploy.rs
# checks the unit's settings, tests/cli.rs the exit statuses they rely on.)
sed "s|/usr/local/bin/trailguard|$target_dir/debug/trailguard|g" systemd/trailguard.service > "$work/trailguard.service"
out="$(systemd-analyze verify "$work/trailguard.service" 2>&1)" || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify printed: $out"
mkdir -p "$work/trailguard.service.d"
for dropin in systemd/credentials-file.conf systemd/roles-anywhere.conf; do
  rm -f "$work/trailguard.service.d/"*; cp "$dropin" "$work/trailguard.service.d/"
  out="$(systemd-analyze verify "$work/trailguard.service" 2>&1)" || fail "systemd-analyze verify with $dropin: $out"
  [ -z "$out" ] || fail "systemd-analyze verify with $dropin printed: $out"
done
rm -rf "$work/trailguard.service.d"
exposure="$(systemd-analyze security --offline=true "$work/trailguard.service" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
python3 -c "import sys; sys.exit(0 if float('$exposure') <= 1.5 else 1)" || fail "systemd exposure $exposure > 1.5"
ok "systemd-analyze verify (silent, also with each credentials drop-in), security exposure $exposure"

# Prometheus alert rules: syntax and unit tests.
(cd deploy/prometheus && promtool check rules trailguard-alerts.yml >/dev/null && promtool test rules trailguard-alerts.test.yml >/dev/null) \
  || fail "promtool check/test rules"
ok "promtool check rules, promtool test rules"

# CloudFormation, Dockerfile, IAM policies.
# trailguard.yaml (one account) and org-*.yaml (an organization: ORGANIZATION.md); warnings fail too.
"$venv/cfn-lint" deploy/cloudformation/*.yaml || fail "cfn-lint"
ok "cfn-lint $("$venv/cfn-lint" --version | awk '{print $2}') ($(ls deploy/cloudformation/*.yaml | wc -l) templates)"
"$venv/checkov" -d deploy --framework cloudformation dockerfile --quiet --compact --skip-download > "$work/checkov.txt" 2>&1 \
  || { cat "$work/checkov.txt"; fail "checkov"; }
ok "checkov ($(grep -o 'Passed checks: [0-9]*, Failed checks: 0, Skipped checks: [0-9]*' "$work/checkov.txt" | paste -sd ';'))"
"$venv/hadolint" deploy/container/Dockerfile || fail "hadolint"
ok "hadolint"
# The per-feature policies as shipped, and rendered for the other partitions (no arn:aws left,
# IAM's home region derived).
deploy/iam/render.py --account 123456789012 --regions us-gov-west-1,us-gov-east-1 \
  --topic-arn arn:aws-us-gov:sns:us-gov-west-1:123456789012:tg \
  --topic-key-arn arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab \
  --lease-table-arn arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/tg-lease --out "$work/iam-gov" >/dev/null
deploy/iam/render.py --account 123456789012 --regions cn-northwest-1 \
  --topic-arn arn:aws-cn:sns:cn-northwest-1:123456789012:tg \
  --topic-key-arn arn:aws-cn:kms:cn-northwest-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab \
  --lease-table-arn arn:aws-cn:dynamodb:cn-northwest-1:123456789012:table/tg-lease --out "$work/iam-cn" >/dev/null
! grep -l 'arn:aws:\|111122223333\|"us-east-1"' "$work"/iam-gov/*.json "$work"/iam-cn/*.json || fail "render.py left the example partition, account or region"
grep -q '"us-gov-west-1"' "$work/iam-gov/trailguard-iam-sweep-read.json" || fail "render.py: IAM home region of aws-us-gov"
grep -q '"cn-north-1"' "$work/iam-cn/trailguard-iam-sweep-read.json" || fail "render.py: IAM home region of aws-cn"
n=0
for policy in deploy/iam/*.json "$work"/iam-gov/*.json "$work"/iam-cn/*.json; do
  out="$("$venv/parliament" --string "$(cat "$policy")" < /dev/null)" || fail "parliament $policy"
  [ -z "$out" ] || fail "parliament $policy: $out"
  n=$((n + 1))
done
[ "$n" -ge 30 ] || fail "only $n policies checked"
ok "parliament ($n policies: deploy/iam/*.json, and rendered for aws-us-gov and aws-cn)"
python3 -m json.tool deploy/grafana/trailguard-dashboard.json >/dev/null || fail "dashboard is not JSON"

# The container image, assembled without a Docker engine, then run as its user against the sandbox.
release_dir="${TRAILGUARD_RELEASE_TARGET_DIR:-$target_dir}"
CARGO_TARGET_DIR="$release_dir" deploy/container/build-image.sh "$work/image" > "$work/image.log" 2>&1 \
  || { tail -20 "$work/image.log"; fail "image build"; }
umoci unpack --image "$work/image/oci:$("$target_dir/debug/trailguard" --version | awk '{print $2}')" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
size="$(stat -c %s "$rootfs/trailguard")"
[ "$size" -lt 25000000 ] || fail "the release binary is $size bytes (limit 25 MB)"
ok "release binary $size bytes (< 25 MB)"
python3 - "$work/bundle/config.json" <<'PY' || fail "image config"
import json, sys
c = json.load(open(sys.argv[1]))["process"]
assert c["user"]["uid"] == 65532 and c["user"]["gid"] == 65532, c["user"]
assert c["args"][:2] == ["/trailguard", "run"], c["args"]
PY
chroot_bin="$(command -v chroot)"
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sb_port="$(port_of)"; tg_port="$(port_of)"
"$target_dir/debug/trailguard-sandbox" --listen "127.0.0.1:$sb_port" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$sb_port/_sandbox/health" >/dev/null && break; sleep 0.1; done
# The whole configuration as ECS passes it from the SSM parameter: a document with a rule of its
# own, which the image's file does not have.
doc='[aws]
regions = ["us-east-1"]
[cloudtrail]
poll_interval = "5s"
[[rules]]
id = "from_the_document"
description = "injected through TRAILGUARD_CONFIG_TOML"
severity = "low"
pattern = "{ $.eventName = ScheduleKeyDeletion }"
actions = ["notify"]'
env -i AWS_ENDPOINT_URL="http://127.0.0.1:$sb_port" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIAIMAGE AWS_SECRET_ACCESS_KEY=x \
  AWS_EC2_METADATA_DISABLED=true TRAILGUARD__SERVER__LISTEN="0.0.0.0:$tg_port" TRAILGUARD__STATE__DIR=/var/lib/trailguard \
  TRAILGUARD_CONFIG_TOML="$doc" \
  "$chroot_bin" --userspec=65532:65532 "$rootfs" /trailguard run --config /etc/trailguard/trailguard.toml 2>"$work/image-run.log" &
tg=$!; pids+=($tg)
healthy=0
for _ in $(seq 100); do
  if env -i TRAILGUARD__SERVER__LISTEN="0.0.0.0:$tg_port" "$chroot_bin" --userspec=65532:65532 "$rootfs" /trailguard health >/dev/null 2>&1; then healthy=1; break; fi
  sleep 0.2
done
[ "$healthy" = 1 ] || { cat "$work/image-run.log"; fail "the image's daemon never became ready"; }
# The task definition's probe: liveness, in the exec form ECS runs.
env -i TRAILGUARD__SERVER__LISTEN="0.0.0.0:$tg_port" "$chroot_bin" --userspec=65532:65532 "$rootfs" /trailguard health --live >/dev/null \
  || fail "the image's daemon is ready but not alive (health --live)"
metrics="$(curl -sf "http://127.0.0.1:$tg_port/metrics")" || fail "no /metrics from the image's daemon"
grep -q 'trailguard_findings_total{rule_id="from_the_document"}' <<<"$metrics" \
  || fail "the document in TRAILGUARD_CONFIG_TOML was not used"
kill -TERM "$tg"; wait "$tg" || fail "the image's daemon did not exit 0 on SIGTERM"
ok "container image: runs as 65532, configured by TRAILGUARD_CONFIG_TOML, ready and alive by its own health checks, exit 0 on SIGTERM"
echo "validate-deploy: $passed passed, 0 failed"
