#!/usr/bin/env python3
"""Builds benchmark corpora for `trailguard scan` by tiling the real records of
tests/fixtures/cloudtrail (and the documented samples) until N records, each copy with a fresh
eventID (and its copy number in requestID). Three shapes:

    scripts/make-corpus.py OUT.ndjson [N]            # NDJSON, one record a line (default N = 200000)
    scripts/make-corpus.py --logs DIR [N] [FILES]    # CloudTrail's own shape: FILES gzip log files
                                                     # (default 1000) of {"Records":[...]}
    scripts/make-corpus.py --document OUT.json MB    # one {"Records":[...]} document of about MB
                                                     # megabytes, and OUT.json.gz beside it

Log files are laid out as CloudTrail writes them to S3
(AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_ID.json.gz),
compact JSON on one line, gzip level 6, and of various sizes: record counts drawn uniformly
between 1 and twice the mean, adding up to exactly N (seeded, so every run builds the same files).

The corpora are not shipped (they are large and only repeat the fixtures); this script is.
The mix is the fixtures' mix: skewed towards security test scenarios (EC2, SSM, IAM, KMS),
not a production account's mix of read-only calls.
"""
import gzip, json, os, random, sys, uuid

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

def tiled(base, i):
    """Record i of the corpus, as compact JSON."""
    r = dict(base[i % len(base)])
    r["eventID"] = str(uuid.UUID(int=i + 1))
    if "requestID" in r:
        r["requestID"] = f"{r['requestID']}-{i // len(base)}"
    return json.dumps(r, separators=(",", ":"))

def ndjson(path, n, base):
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            out.write(tiled(base, i) + "\n")
    print(f"{path}: {n} records tiled from {len(base)} real/documented records, {os.path.getsize(path) / 1e6:.0f} MB")

def logs(top, n, files, base):
    rng = random.Random(42)
    mean = n / files
    sizes = [rng.randint(1, max(1, int(2 * mean - 1))) for _ in range(files)]
    # Scale to exactly n, keeping every file at least one record.
    scale = n / sum(sizes)
    sizes = [max(1, int(s * scale)) for s in sizes]
    for k in range(n - sum(sizes)):
        sizes[k % files] += 1
    while sum(sizes) > n:
        k = max(range(files), key=lambda j: sizes[j])
        sizes[k] -= 1
    account, region = "111122223333", "us-east-1"
    i, raw, packed = 0, 0, 0
    for f, size in enumerate(sizes):
        minute = f * 5
        day, hhmm = 1 + minute // 1440, f"{minute % 1440 // 60:02d}{minute % 60:02d}"
        d = os.path.join(top, "AWSLogs", account, "CloudTrail", region, "2026", "11", f"{day:02d}")
        os.makedirs(d, exist_ok=True)
        name = f"{account}_CloudTrail_{region}_202611{day:02d}T{hhmm}Z_{rng.getrandbits(64):016X}.json.gz"
        body = ('{"Records":[' + ",".join(tiled(base, j) for j in range(i, i + size)) + "]}").encode()
        i += size
        data = gzip.compress(body, compresslevel=6, mtime=0)
        with open(os.path.join(d, name), "wb") as out:
            out.write(data)
        raw, packed = raw + len(body), packed + len(data)
    print(f"{top}: {n} records in {files} gzip log files ({min(sizes)}-{max(sizes)} records each), "
          f"{raw / 1e6:.0f} MB ({packed / 1e6:.0f} MB gzipped)")

def document(path, mb, base):
    target, i, size = mb * 1_000_000, 0, 0
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"Records":[')
        size += 12
        while size < target:
            line = ("," if i else "") + tiled(base, i)
            out.write(line)
            size += len(line)
            i += 1
        out.write("]}")
    with open(path, "rb") as src, open(path + ".gz", "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0) as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    print(f"{path}: {i} records, {os.path.getsize(path) / 1e6:.0f} MB "
          f"({os.path.getsize(path + '.gz') / 1e6:.0f} MB gzipped as {path}.gz)")

def main():
    args, base = sys.argv[1:], records()
    if args[0] == "--logs":
        logs(args[1], int(args[2]) if len(args) > 2 else 200_000, int(args[3]) if len(args) > 3 else 1000, base)
    elif args[0] == "--document":
        document(args[1], int(args[2]) if len(args) > 2 else 250, base)
    else:
        ndjson(args[0], int(args[1]) if len(args) > 1 else 200_000, base)

if __name__ == "__main__":
    main()
