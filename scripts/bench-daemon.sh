#!/usr/bin/env bash
# Daemon benchmarks on the local sandbox (release build). Prints the figures BENCHMARKS.md records.
#   scripts/bench-daemon.sh latency [N]        time from a failed call becoming visible in
#                                              LookupEvents to the verified rescue, N rescues
#   scripts/bench-daemon.sh idle [SECONDS]     LookupEvents calls and resident memory after
#                                              SECONDS idle (default 600) at the default 15s poll
#   SNS_HANG=1 scripts/bench-daemon.sh latency [N]
#                                              the same latency while SNS accepts connections and
#                                              never answers (notifications wait; rescues must not)
set -euo pipefail
mode="${1:-latency}"
source "$(dirname "${BASH_SOURCE[0]}")/bench-sandbox.sh"
poll="15s"; [ "$mode" = latency ] && poll="${POLL:-5s}"
topic="$(AWS_ACCESS_KEY_ID=AKIABENCHADMIN AWS_SECRET_ACCESS_KEY=x "$root/.venv/bin/python" -c "
import boto3; print(boto3.client('sns', endpoint_url='$endpoint', region_name='us-east-1').create_topic(Name='bench')['TopicArn'])")"
if [ "${SNS_HANG:-0}" = 1 ]; then
  curl -sf -XPOST "$endpoint/_sandbox/faults/sns" -d '{"operations": ["Publish"], "hang": true}' >/dev/null
fi
cat > "$work/trailguard.toml" <<TOML
[aws]
regions = ["us-east-1"]
[cloudtrail]
poll_interval = "$poll"
[notify]
sns_topic_arn = "$topic"
[state]
dir = "$work/state"
[server]
listen = "127.0.0.1:$tg_port"
[log]
level = "warn"
TOML
export AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true
AWS_ACCESS_KEY_ID=AKIABENCHGUARD "$tg_bin" run --config "$work/trailguard.toml" 2>"$work/tg.log" &
tg=$!; pids+=($tg)
for _ in $(seq 150); do curl -sf "http://127.0.0.1:$tg_port/readyz" >/dev/null && break; sleep 0.1; done

case "$mode" in
idle)
  secs="${2:-600}"
  curl -sf -XDELETE "$endpoint/_sandbox/counters" >/dev/null
  sleep "$secs"
  calls=$(curl -sf "$endpoint/_sandbox/counters" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("cloudtrail.LookupEvents",0))')
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$tg/status")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$tg/status")
  python3 -c "print(f'idle {$secs}s: LookupEvents calls={$calls} (= {$calls*3600/$secs:.0f}/hour), RSS={$rss/1024:.1f} MiB, peak RSS={$hwm/1024:.1f} MiB')"
  ;;
latency)
  n="${2:-20}"
  "$root/.venv/bin/python" - "$endpoint" "$n" "$poll" "$tg_port" <<'PY'
import sys, time, boto3, statistics, urllib.request
endpoint, n, poll, tg_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
SERIES = 'trailguard_remediations_total{action="cancel_key_deletion",outcome="applied"}'
def rescued():
    # trailguard counts a rescue only after DescribeKey has verified the key is Disabled.
    # Watching the counter (not DescribeKey) keeps the harness out of CloudTrail.
    body = urllib.request.urlopen(f"http://127.0.0.1:{tg_port}/metrics").read().decode()
    return next((float(l.rsplit(" ", 1)[1]) for l in body.splitlines() if l.startswith(SERIES + " ")), 0.0)
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_secret_access_key="x")
admin = boto3.client("kms", aws_access_key_id="AKIABENCHADMIN", **kw)
app = boto3.client("kms", aws_access_key_id="AKIABENCHAPP", **kw)
lat = []
for i in range(n):
    arn = admin.create_key()["KeyMetadata"]["Arn"]
    admin.schedule_key_deletion(KeyId=arn, PendingWindowInDays=7)
    # Spread the failed calls over the poll cycle.
    time.sleep((i * 0.37) % 5)
    try:
        app.encrypt(KeyId=arn, Plaintext=b"x")
    except app.exceptions.KMSInvalidStateException:
        pass
    visible = time.monotonic()  # the sandbox makes the record visible at once
    while rescued() < i + 1:
        time.sleep(0.01)
    lat.append(time.monotonic() - visible)
assert admin.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "Disabled"
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]
print(f"latency over {n} rescues at poll_interval={poll}: p50={p(0.5):.2f}s p99={p(0.99):.2f}s max={lat[-1]:.2f}s mean={statistics.mean(lat):.2f}s")
PY
  ;;
*) echo "usage: $0 latency [N] | idle [SECONDS]" >&2; exit 2 ;;
esac
kill -TERM "$tg"; wait "$tg" || true
