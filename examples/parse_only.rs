//! The practical limit for `trailguard scan`: read every record with serde_json into
//! `serde::de::IgnoredAny` (validates the JSON, builds nothing), and nothing else.
//!
//!     cargo run --release --example parse_only -- FILE...
//!         NDJSON, line by line on one thread, with the same buffer as `scan` (256 KiB).
//!     cargo run --release --example parse_only -- --documents [--threads N] [--pipelined] PATH...
//!         Documents (CloudTrail log files, gzipped or not; directories are walked), each
//!         decompressed as `scan` does and parsed whole:
//!         - default: N threads (one per core) take files in turn; each inflates a file into
//!           memory (a gzip file under 4 MiB in one libdeflate call, as `scan`; `--flate2`:
//!           every file through flate2's streaming decoder) and parses it from the slice;
//!         - `--pipelined`: one file at a time, one thread inflating into 1 MiB blocks while
//!           another parses the stream (both cores on one document).

#![allow(clippy::disallowed_methods)] // NOTE: a benchmark baseline timed in wall time.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

fn files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(p)
            .expect("directory lists")
            .map(|e| e.expect("entry").path())
            .collect();
        children.sort();
        for c in children {
            files(&c, out);
        }
    } else {
        out.push(p.to_path_buf());
    }
}

fn open(path: &Path) -> Box<dyn Read + Send> {
    let file = std::fs::File::open(path).expect("input file opens");
    if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(file)
    }
}

/// A reader over blocks sent by another thread.
struct Blocks {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    block: std::io::Cursor<Vec<u8>>,
}

impl Read for Blocks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.block.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(b) => self.block = std::io::Cursor::new(b),
                Err(_) => return Ok(0),
            }
        }
    }
}

fn pipelined(path: &Path, bytes: &AtomicU64) -> bool {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut r = open(path);
            loop {
                let mut block = Vec::with_capacity(1 << 20);
                let n = r.by_ref().take(1 << 20).read_to_end(&mut block).expect("read");
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                if n == 0 || tx.send(block).is_err() {
                    return;
                }
            }
        });
        let r = std::io::BufReader::with_capacity(
            256 * 1024,
            Blocks {
                rx,
                block: std::io::Cursor::new(Vec::new()),
            },
        );
        let mut de = serde_json::Deserializer::from_reader(r);
        serde::Deserialize::deserialize(&mut de)
            .map(|_: serde::de::IgnoredAny| ())
            .is_ok()
    })
}

fn documents(args: &[String]) -> (u64, u64) {
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut paths, mut pipe, mut stream) = (Vec::new(), false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = it.next().and_then(|n| n.parse().ok()).expect("--threads N"),
            "--pipelined" => pipe = true,
            "--flate2" => stream = true,
            p => files(Path::new(p), &mut paths),
        }
    }
    let (next, ok, bytes) = (AtomicUsize::new(0), AtomicU64::new(0), AtomicU64::new(0));
    if pipe {
        for p in &paths {
            ok.fetch_add(pipelined(p, &bytes) as u64, Ordering::Relaxed);
        }
        return (ok.into_inner(), bytes.into_inner());
    }
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let (mut buf, mut raw, mut gunzip) =
                    (Vec::new(), Vec::new(), trailguard::scan::Gunzip::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = paths.get(i) else { return };
                    // As `scan` reads a small gzip file: whole, inflated in one call.
                    raw.clear();
                    std::fs::File::open(p)
                        .and_then(|mut f| f.read_to_end(&mut raw))
                        .expect("read");
                    let gzip = raw.starts_with(&[0x1f, 0x8b]);
                    let inflated = (gzip && !stream).then(|| gunzip.inflate(&raw, &mut buf, 4 << 20));
                    let text = match (gzip, inflated.flatten()) {
                        (false, _) => &raw[..],
                        (true, Some(n)) => &buf[..n],
                        (true, None) => {
                            buf.clear();
                            open(p).read_to_end(&mut buf).expect("read");
                            &buf[..]
                        }
                    };
                    bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                    let parsed = serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok();
                    ok.fetch_add(parsed as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (ok.into_inner(), bytes.into_inner())
}

fn lines(paths: &[String]) -> (u64, u64) {
    let (mut records, mut bytes) = (0u64, 0u64);
    for path in paths {
        let file = std::fs::File::open(path).expect("input file opens");
        let mut r = std::io::BufReader::with_capacity(256 * 1024, file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line).expect("read");
            if n == 0 {
                break;
            }
            bytes += n as u64;
            if serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok() {
                records += 1;
            }
        }
    }
    (records, bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let started = std::time::Instant::now();
    let (what, (n, bytes)) = match args.first().map(String::as_str) {
        Some("--documents") => ("documents", documents(&args[1..])),
        _ => ("records", lines(&args)),
    };
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "parse-only: {n} {what}, {:.0} MB in {secs:.2}s ({:.0} MB/s)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs
    );
}
