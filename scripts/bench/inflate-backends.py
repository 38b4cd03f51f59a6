#!/usr/bin/env python3
"""Inflate backends compared on CloudTrail log files, outside trailguard: ISA-L (`isal`),
libdeflate (`deflate`) and zlib, each file inflated whole in one call, CPU time per pass.

    pip install isal==1.9.1 deflate==0.9.0       # into a throwaway venv
    taskset -c 1 python3 inflate-backends.py DIR [RUNS]

Passes are interleaved (RUNS rounds of the three, default 5); each line is
`round backend bytes cpu_seconds`. BENCHMARKS.md, "Inflate backend", has a run."""
import glob, sys, time, zlib

from isal import isal_zlib
import deflate

files = [open(f, "rb").read() for f in glob.glob(f"{sys.argv[1]}/**/*.json.gz", recursive=True)]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
backends = [
    ("isal", lambda d: isal_zlib.decompress(d, wbits=31)),
    ("libdeflate", deflate.gzip_decompress),
    ("zlib", lambda d: zlib.decompress(d, wbits=31)),
]
print(f"{len(files)} files, {sum(map(len, files))} bytes compressed")
for r in range(runs):
    for name, inflate in backends:
        started = time.process_time()
        n = sum(len(inflate(d)) for d in files)
        print(r, name, n, round(time.process_time() - started, 3))
