#!/usr/bin/env bash
# `trailguard scan` throughput and memory against two baselines, in one run:
#   jq with the equivalent filter (scripts/bench/builtin-rules.jq), producing the same findings;
#   parse-only: every record into serde's IgnoredAny (examples/parse_only.rs), the practical limit.
#   scripts/bench-scan.sh [WORKDIR] [RECORDS]     (default /tmp/trailguard-bench, 200000)
# Needs jq and GNU time (Debian: jq, time). Builds in release.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="${1:-/tmp/trailguard-bench}"; n="${2:-200000}"
mkdir -p "$work"
corpus="$work/corpus-$n.ndjson"
[ -f "$corpus" ] || python3 scripts/make-corpus.py "$corpus" "$n"
[ -f "$corpus.gz" ] || gzip -k -1 "$corpus"
cargo build --quiet --release -p trailguard --bin trailguard --example parse_only
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release"
tg="$target/trailguard"; po="$target/examples/parse_only"
mb=$(python3 -c "import os; print(f'{os.path.getsize(\"$corpus\")/1e6:.0f}')")
echo "corpus: $corpus ($n records, $mb MB; gzip $(python3 -c "import os; print(f'{os.path.getsize(\"$corpus.gz\")/1e6:.0f}')") MB)"

# Same findings from trailguard and jq.
"$tg" scan "$corpus" 2>/dev/null | jq -r '[.event_id, .rule_id] | @tsv' | sort > "$work/tg.tsv"
jq -c -f scripts/bench/builtin-rules.jq "$corpus" | jq -r '[.event_id, .rule_id] | @tsv' | sort > "$work/jq.tsv"
cmp -s "$work/tg.tsv" "$work/jq.tsv" || { echo "findings differ between trailguard and jq"; diff "$work/tg.tsv" "$work/jq.tsv" | head; exit 1; }
echo "findings: $(wc -l < "$work/tg.tsv") from trailguard and jq, identical"

measure() { # label, command...
  local label="$1"; shift
  local best=999999 rss=0
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" > /dev/null 2>&1
    read -r secs kb < "$work/time.txt"
    best=$(python3 -c "print(min($best, $secs))"); rss=$kb
  done
  python3 -c "print(f'{\"$label\":<34} best of 3: {$best:6.2f} s  {$mb/$best:7.0f} MB/s  max RSS {$rss/1024:6.1f} MiB')"
  echo "$best" > "$work/$(echo "$label" | tr -c 'a-z0-9' _ | sed 's/_*$//').secs"
}
measure "trailguard scan" "$tg" scan "$corpus"
TRAILGUARD_SCAN_THREADS=1 measure "trailguard scan, 1 thread" "$tg" scan "$corpus"
measure "trailguard scan (gzip)" "$tg" scan "$corpus.gz"
measure "parse-only (IgnoredAny)" "$po" "$corpus"
measure "jq -c -f builtin-rules.jq" jq -c -f scripts/bench/builtin-rules.jq "$corpus"
python3 - "$work" <<'PY'
import sys, glob, os
w = sys.argv[1]
t = {os.path.basename(p)[:-5]: float(open(p).read()) for p in glob.glob(f"{w}/*.secs")}
scan = t["trailguard_scan"]
po = next(v for k, v in t.items() if k.startswith("parse_only"))
jq = next(v for k, v in t.items() if k.startswith("jq"))
print(f"trailguard vs jq: {jq/scan:.1f}x faster; vs parse-only: {po/scan*100:.0f}% of its throughput")
PY
