#!/usr/bin/env bash
# trailguard's main job, end to end, on the local sandbox (no AWS account needed):
# a KMS key is scheduled for deletion while an application still uses it; trailguard sees the
# failed call in CloudTrail, cancels the deletion of exactly that key, and notifies through SNS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tests/setup.sh
echo "demo: building trailguard and the sandbox"
cargo build --quiet -p trailguard -p trailguard-sandbox
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"

work="$(mktemp -d)"
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sb_port="${SANDBOX_PORT:-$(port_of)}"
tg_port="$(port_of)"
endpoint="http://127.0.0.1:$sb_port"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin/trailguard-sandbox" --listen "127.0.0.1:$sb_port" 2>"$work/sandbox.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf "$endpoint/_sandbox/health" >/dev/null && break; sleep 0.1; done
echo "demo: sandbox on $endpoint"

export AWS_ENDPOINT_URL="$endpoint" AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true
aws() { AWS_ACCESS_KEY_ID="${AS:-AKIADEMOADMIN}" "$root/.venv/bin/aws" --endpoint-url "$endpoint" "$@"; }
# Who is who in CloudTrail: an operator (IAM user) and an application (assumed role).
curl -sf -XPOST "$endpoint/_sandbox/identities" -d '{"access_key_id":"AKIADEMOADMIN","identity":{"type":"IAMUser","user_name":"ops-admin"}}' >/dev/null
curl -sf -XPOST "$endpoint/_sandbox/identities" -d '{"access_key_id":"AKIADEMOAPP","identity":{"type":"AssumedRole","role_name":"billing-app","session_name":"i-0abc123"}}' >/dev/null

topic=$(aws sns create-topic --name trailguard-alerts --query TopicArn --output text)
queue=$(aws sqs create-queue --queue-name alerts --query QueueUrl --output text)
qarn=$(aws sqs get-queue-attributes --queue-url "$queue" --attribute-names QueueArn --query Attributes.QueueArn --output text)
aws sns subscribe --topic-arn "$topic" --protocol sqs --notification-endpoint "$qarn" >/dev/null

key=$(aws kms create-key --description "payments data key" --query KeyMetadata.Arn --output text)
aws kms create-alias --alias-name alias/payments-prod --target-key-id "$key"
blob="$work/secret.bin"
AS=AKIADEMOAPP aws kms encrypt --key-id alias/payments-prod --plaintext "$(printf 'card data' | base64)" --query CiphertextBlob --output text | base64 -d > "$blob"
aws kms schedule-key-deletion --key-id "$key" --pending-window-in-days 7 >/dev/null
echo "demo: key $key (alias/payments-prod) is scheduled for deletion by ops-admin"

cat > "$work/trailguard.toml" <<TOML
[aws]
regions = ["us-east-1"]
[cloudtrail]
poll_interval = "5s"
[notify]
sns_topic_arn = "$topic"
[state]
dir = "$work/state"
[server]
listen = "127.0.0.1:$tg_port"
TOML
AWS_ACCESS_KEY_ID=AKIADEMOGUARD "$bin/trailguard" run --config "$work/trailguard.toml" 2>"$work/trailguard.log" &
tg=$!
pids+=($tg)
for _ in $(seq 150); do curl -sf "http://127.0.0.1:$tg_port/readyz" >/dev/null && break; sleep 0.1; done
echo "demo: trailguard is polling CloudTrail (metrics on http://127.0.0.1:$tg_port/metrics)"

echo "demo: billing-app still decrypts with the key:"
AS=AKIADEMOAPP aws kms decrypt --ciphertext-blob "fileb://$blob" 2>&1 | sed 's/^/    /' || true

for _ in $(seq 100); do
  state=$(aws kms describe-key --key-id "$key" --query KeyMetadata.KeyState --output text)
  [ "$state" = Disabled ] && break
  sleep 0.2
done
echo "demo: key state is now: $state (deletion cancelled; left Disabled, as AWS does)"
[ "$state" = Disabled ] || { echo "demo: FAILED, trailguard log:"; cat "$work/trailguard.log"; exit 1; }

sleep 1
echo "demo: notifications received on the SQS queue subscribed to the topic:"
aws sqs receive-message --queue-url "$queue" --max-number-of-messages 10 --output json |
  python3 -c '
import json, sys
for m in json.load(sys.stdin).get("Messages", []):
    env = json.loads(m["Body"]); body = json.loads(env["Message"])
    f, r = body["finding"], body.get("remediation") or {}
    print("  ---", env.get("Subject"))
    print("      rule:", body["rule_id"], "| caller:", f.get("principal_arn"), "| operation:", f.get("event_name"))
    print("      key:", f.get("key_arn"), "| alias:", f.get("key_alias"))
    if r: print("      action:", r.get("action"), "->", r.get("outcome"), "|", r.get("detail"))
'
echo "demo: metrics:"
curl -sf "http://127.0.0.1:$tg_port/metrics" | grep -E '^trailguard_(findings|remediations|notifications)_total' | sed 's/^/    /'
kill -TERM "$tg"; wait "$tg" && echo "demo: trailguard stopped cleanly (exit 0)"
