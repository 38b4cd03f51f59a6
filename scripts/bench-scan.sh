#!/usr/bin/env bash
# `trailguard scan` throughput and memory against its baselines, all in one run, best of 3 each
# (RUNS=N for best of N):
#   NDJSON (one file), CloudTrail's own shape (1,000 gzip log files of {"Records":[...]}), and one
#   250 MB {"Records":[...]} document (plain and gzipped);
#   parse-only floors: every record into serde's IgnoredAny (examples/parse_only.rs), the files
#   decompressed as scan does (a small gzip file in one libdeflate call) and, for the log files,
#   also through flate2's zlib-rs stream (the zlib-rs floor), on every core;
#   jq with the equivalent filter (scripts/bench/builtin-rules.jq) on the NDJSON corpus;
#   DuckDB's read_json with a typed schema and the rules' predicates (scripts/bench/duckdb-rules.py)
#   on the log files. Both baselines' findings are checked against trailguard's first.
#
#   scripts/bench-scan.sh [WORKDIR] [RECORDS]     (default /tmp/trailguard-bench, 200000)
#
# Needs jq, GNU time and python3 (Debian: jq, time, python3-venv). DuckDB comes from PyPI, pinned
# in scripts/bench/requirements.txt, into a throwaway venv ($BENCH_VENV, default WORKDIR/venv).
# Builds in release (CARGO_TARGET_DIR is honoured). RUNS=5 takes the best of 5 instead of 3. BACKENDS="miniz zlib-rs" adds a row per
# inflate backend for the gzip shapes (each a separate build of trailguard and parse_only).
# BASELINE_BIN=/path/to/trailguard measures another trailguard (an earlier build) beside this one,
# in the same run: each `trailguard scan` row is followed by the same row for that binary, whose
# findings must be identical, and the ratios of the two are printed at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="${1:-/tmp/trailguard-bench}"; n="${2:-200000}"; runs="${RUNS:-3}"
mkdir -p "$work"
rm -f "$work"/*.secs
corpus="$work/corpus-$n.ndjson"; logs="$work/logs-$n"; doc="$work/document-250.json"
[ -f "$corpus" ] || python3 scripts/make-corpus.py "$corpus" "$n"
[ -f "$corpus.gz" ] || gzip -k -1 "$corpus"
[ -d "$logs" ] || python3 scripts/make-corpus.py --logs "$logs" "$n" 1000
[ -f "$doc.gz" ] || python3 scripts/make-corpus.py --document "$doc" 250
venv="${BENCH_VENV:-$work/venv}"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q -r scripts/bench/requirements.txt; }

target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release"
build() { # features → copies the binaries to $work/bin-LABEL
  local label="$1"; shift
  cargo build --quiet --release -p trailguard --bin trailguard --example parse_only "$@"
  mkdir -p "$work/bin-$label"
  cp "$target/trailguard" "$target/examples/parse_only" "$work/bin-$label/"
}
build default
tg="$work/bin-default/trailguard"; po="$work/bin-default/parse_only"
mb() { python3 -c "import os,sys; print(f'{sum(os.path.getsize(os.path.join(d,f)) for p in sys.argv[1:] for d,_,fs in (os.walk(p) if os.path.isdir(p) else [(os.path.dirname(p),0,[os.path.basename(p)])]) for f in fs)/1e6:.0f}')" "$@"; }
gunzipped() { python3 -c "import gzip,os,sys; print(f'{sum(len(gzip.open(os.path.join(d,f)).read()) for d,_,fs in os.walk(sys.argv[1]) for f in fs)/1e6:.0f}')" "$1"; }
nd_mb=$(mb "$corpus"); logs_mb=$(gunzipped "$logs"); doc_mb=$(mb "$doc")
echo "NDJSON:    $corpus ($n records, $nd_mb MB; gzip -1 $(mb "$corpus.gz") MB)"
echo "log files: $logs ($(find "$logs" -name '*.json.gz' | wc -l) gzip files, $n records, $logs_mb MB; $(mb "$logs") MB gzipped)"
echo "document:  $doc ($doc_mb MB; gzipped $(mb "$doc.gz") MB)"

# Same findings from trailguard, jq and DuckDB.
pairs() { jq -r '[.event_id, .rule_id] | @tsv' | sort; }
"$tg" scan "$corpus" 2>/dev/null | pairs > "$work/tg.tsv"
jq -c -f scripts/bench/builtin-rules.jq "$corpus" | pairs > "$work/jq.tsv"
cmp -s "$work/tg.tsv" "$work/jq.tsv" || { echo "findings differ between trailguard and jq"; diff "$work/tg.tsv" "$work/jq.tsv" | head; exit 1; }
"$tg" scan "$logs" 2>/dev/null | pairs > "$work/tg-logs.tsv"
duck_secs=$("$venv/bin/python" scripts/bench/duckdb-rules.py "$logs/**/*.json.gz" "$work/duck.tsv" "$runs")
sort -o "$work/duck.tsv" "$work/duck.tsv"
cmp -s "$work/tg-logs.tsv" "$work/duck.tsv" || { echo "findings differ between trailguard and DuckDB"; diff "$work/tg-logs.tsv" "$work/duck.tsv" | head; exit 1; }
cmp -s "$work/tg.tsv" "$work/tg-logs.tsv" || { echo "findings differ between the NDJSON corpus and the log files"; exit 1; }
echo "findings: $(wc -l < "$work/tg.tsv") from trailguard, jq (NDJSON) and DuckDB (log files), identical"
base="${BASELINE_BIN:-}"
if [ -n "$base" ]; then
  "$base" scan "$corpus" 2>/dev/null | pairs > "$work/base.tsv"
  "$base" scan "$logs" 2>/dev/null | pairs > "$work/base-logs.tsv"
  cmp -s "$work/tg.tsv" "$work/base.tsv" && cmp -s "$work/tg-logs.tsv" "$work/base-logs.tsv" \
    || { echo "findings differ between trailguard and BASELINE_BIN ($base)"; exit 1; }
  echo "baseline: $base, same findings"
fi

measure() { # key, label, MB, command...
  local key="$1" label="$2" size="$3"; shift 3
  local best=999999 rss=0
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" > /dev/null 2>&1 || true
    read -r secs kb < "$work/time.txt"
    best=$(python3 -c "print(min($best, $secs))"); rss=$(python3 -c "print(max($rss, $kb))")
  done
  python3 -c "print(f'{\"$label\":<52} {$best:6.2f} s  {$size/$best:6.0f} MB/s  max RSS {$rss/1024:6.1f} MiB')"
  echo "$best" > "$work/$key.secs"
}
measure_tg() { # key, label, MB, scan arguments...: this trailguard, then BASELINE_BIN's if set
  local key="$1" label="$2" size="$3"; shift 3
  measure "$key" "$label" "$size" "$tg" "$@"
  [ -z "$base" ] || measure "base-$key" "$label [baseline]" "$size" "$base" "$@"
}
echo
echo "NDJSON, one file"
measure_tg scan "trailguard scan" "$nd_mb" scan "$corpus"
TRAILGUARD_SCAN_THREADS=1 measure_tg scan1 "trailguard scan, 1 thread" "$nd_mb" scan "$corpus"
measure_tg scangz "trailguard scan (gzip -1)" "$nd_mb" scan "$corpus.gz"
measure po "parse-only, 1 thread" "$nd_mb" "$po" "$corpus"
measure jq "jq -c -f builtin-rules.jq" "$nd_mb" jq -c -f scripts/bench/builtin-rules.jq "$corpus"
echo
echo "CloudTrail log files: 1,000 gzip files of {\"Records\":[...]}"
measure_tg logs "trailguard scan" "$logs_mb" scan "$logs"
TRAILGUARD_SCAN_THREADS=1 measure_tg logs1 "trailguard scan, 1 thread" "$logs_mb" scan "$logs"
measure logspo "parse-only floor (libdeflate + IgnoredAny, all cores)" "$logs_mb" "$po" --documents "$logs"
measure logspoz "parse-only floor (zlib-rs stream + IgnoredAny, all cores)" "$logs_mb" "$po" --documents --flate2 "$logs"
echo "$duck_secs" > "$work/duck.secs"
python3 -c "print(f'{\"DuckDB read_json, typed (query time)\":<52} {$duck_secs:6.2f} s  {$logs_mb/$duck_secs:6.0f} MB/s')"
echo
echo "One 250 MB {\"Records\":[...]} document"
measure_tg doc "trailguard scan" "$doc_mb" scan "$doc"
measure docpo "parse-only floor, read whole (1 core)" "$doc_mb" "$po" --documents "$doc"
measure_tg docgz "trailguard scan (gzipped)" "$doc_mb" scan "$doc.gz"
measure docgzpo "parse-only floor, gzipped, read whole (1 core)" "$doc_mb" "$po" --documents "$doc.gz"
measure docgzpp "parse-only floor, gzipped, pipelined (2 threads)" "$doc_mb" "$po" --documents --pipelined "$doc.gz"

for b in ${BACKENDS:-}; do
  case "$b" in
    miniz) build miniz --no-default-features ;;
    zlib-ng) build zlib-ng --features zlib-ng ;;
    *) build "$b" --no-default-features --features "$b" ;;
  esac
  echo
  echo "inflate backend: $b"
  measure "logs-$b" "trailguard scan, log files" "$logs_mb" "$work/bin-$b/trailguard" scan "$logs"
  measure "logspo-$b" "parse-only floor, log files" "$logs_mb" "$work/bin-$b/parse_only" --documents "$logs"
  measure "docgz-$b" "trailguard scan, gzipped document" "$doc_mb" "$work/bin-$b/trailguard" scan "$doc.gz"
done
[ -z "${BACKENDS:-}" ] || cargo build --quiet --release -p trailguard --bin trailguard --example parse_only

echo
python3 - "$work" <<'PY'
import sys, glob, os
w = sys.argv[1]
t = {os.path.basename(p)[:-5]: float(open(p).read()) for p in glob.glob(f"{w}/*.secs")}
print(f"NDJSON:    {t['jq']/t['scan']:.1f}x jq; {t['po']/t['scan']*100:.0f}% of parse-only (1 thread) throughput")
print(f"log files: {t['duck']/t['logs']:.1f}x DuckDB; {t['logspo']/t['logs']:.2f} of the parse-only floor inflating as scan does (libdeflate), {t['logspoz']/t['logs']:.2f} of the zlib-rs streaming floor")
floor = min(t['docgzpo'], t['docgzpp'])
print(f"document:  plain {t['docpo']/t['doc']:.2f} of the parse-only floor; gzipped {floor/t['docgz']:.2f} of the floor (the faster of whole and pipelined)")
for k in sorted(k for k in t if f"base-{k}" in t):
    print(f"baseline/this ({k}): {t[f'base-{k}']:.2f} s / {t[k]:.2f} s = {t[f'base-{k}']/t[k]:.2f}")
PY
