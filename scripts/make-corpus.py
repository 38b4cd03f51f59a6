#!/usr/bin/env python3
"""Builds a benchmark corpus for `trailguard scan` by tiling the real records of
tests/fixtures/cloudtrail (and the documented samples) until N records, each copy with a fresh
eventID (and its copy number in requestID), written as NDJSON.

    scripts/make-corpus.py OUT.ndjson [N]        # default N = 200000

The corpus is not shipped (it is large and only repeats the fixtures); this script is.
The mix is the fixtures' mix: skewed towards security test scenarios (EC2, SSM, IAM, KMS),
not a production account's mix of read-only calls.
"""
import json, os, sys, uuid

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

def records():
    out = []
    for dirpath, _, files in sorted(os.walk(os.path.join(root, "cloudtrail"))):
        for f in sorted(files):
            if not f.endswith((".json", ".log", ".ndjson")):
                continue
            text = open(os.path.join(dirpath, f), encoding="utf-8").read()
            try:
                values = [json.loads(text)]
            except ValueError:
                values = [json.loads(l) for l in text.splitlines() if l.strip()]
            for v in values:
                if isinstance(v, list):
                    out.extend(v)
                elif isinstance(v, dict) and "Records" in v:
                    out.extend(v["Records"])
                else:
                    out.append(v)
    samples = json.load(open(os.path.join(root, "aws-sample-events.json"), encoding="utf-8"))
    out.extend(s["record"] for s in samples)
    return [r for r in out if isinstance(r, dict) and ("eventName" in r or "eventSource" in r)]

def main():
    path, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    base = records()
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            r = dict(base[i % len(base)])
            r["eventID"] = str(uuid.UUID(int=i + 1))
            if "requestID" in r:
                r["requestID"] = f"{r['requestID']}-{i // len(base)}"
            out.write(json.dumps(r, separators=(",", ":")) + "\n")
    print(f"{path}: {n} records tiled from {len(base)} real/documented records, {os.path.getsize(path) / 1e6:.0f} MB")

main()
