//! The practical limit for `trailguard scan`: read every record of NDJSON files with serde_json
//! into `serde::de::IgnoredAny` (validates the JSON, builds nothing). Reads exactly as `scan`
//! does (a 256 KiB buffer, line by line).
//!
//!     cargo run --release --example parse_only -- FILE...

#![allow(clippy::disallowed_methods)] // NOTE: a benchmark baseline timed in wall time.

use std::io::BufRead;

fn main() {
    let mut records = 0u64;
    let mut bytes = 0u64;
    let started = std::time::Instant::now();
    for path in std::env::args().skip(1) {
        let file = std::fs::File::open(&path).expect("input file opens");
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
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "parse-only: {records} records, {:.0} MB in {secs:.2}s ({:.0} MB/s)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs
    );
}
