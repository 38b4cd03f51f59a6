#!/usr/bin/env bash
# IAM sweep on a large account (release build, local sandbox): USERS users with one access key
# each (1 in 100 backdated 120 days), then one sweep with iam.action = "notify".
#   scripts/bench-iam.sh [USERS] [MIN_USERS_FOR_REPORT] [IAM_RPS]
# Prints the sweep's IAM calls and duration, as trailguard logs them.
set -euo pipefail
users="${1:-2000}"; min_users="${2:-500}"; rps="${3:-5}"
source "$(dirname "${BASH_SOURCE[0]}")/bench-sandbox.sh"
"$root/.venv/bin/python" - "$endpoint" "$users" <<'PY'
import sys, json, datetime, urllib.request, boto3
endpoint, n = sys.argv[1], int(sys.argv[2])
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIABENCH", aws_secret_access_key="x")
old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=120)).isoformat()
for i in range(n):
    name = f"user-{i:05d}"
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
    if i % 100 == 0:
        req = urllib.request.Request(f"{endpoint}/_sandbox/iam/access-keys/{key}", method="POST",
                                     data=json.dumps({"create_date": old, "last_used": None}).encode())
        urllib.request.urlopen(req).read()
PY
curl -sf -XDELETE "$endpoint/_sandbox/counters" >/dev/null
cat > "$work/trailguard.toml" <<TOML
[aws]
regions = ["us-east-1"]
[state]
dir = "$work/state"
[server]
listen = "127.0.0.1:$tg_port"
[iam]
enabled = true
action = "notify"
credential_report_min_users = $min_users
max_requests_per_second = $rps
TOML
export AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIABENCHGUARD AWS_SECRET_ACCESS_KEY=x AWS_EC2_METADATA_DISABLED=true
start=$(date +%s.%N)
"$bin/trailguard" run --config "$work/trailguard.toml" 2>"$work/tg.log" &
tg=$!; pids+=($tg)
until grep -q "IAM sweep" "$work/tg.log"; do sleep 0.2; done
end=$(date +%s.%N)
grep "IAM sweep" "$work/tg.log" | sed 's/\x1b\[[0-9;]*m//g'
counters=$(curl -sf "$endpoint/_sandbox/counters")
python3 -c "
import json; c=json.loads('$counters'); iam={k:v for k,v in c.items() if k.startswith('iam.')}
print(f'users=$users report_from=$min_users rps=$rps: sweep took {$end-$start:.1f}s (from process start), IAM calls={sum(iam.values())} {iam}')"
