//! `trailguard scan`: the rules over recorded CloudTrail events, without calling AWS.
//!
//! Inputs: CloudTrail log files (`{"Records": [...]}`, gzipped or not), JSON arrays of records,
//! NDJSON, `aws cloudtrail lookup-events` output, directories (recursively, in name order) and
//! `-` for stdin. Input is streamed: memory stays flat whatever the size. A file that starts
//! with `[` or `{"Records"`/`{"Events"` is read as one document; any other file line by line
//! (each line a record or any of the above), falling back to one document when its first line is
//! not complete JSON (a pretty-printed file). An unreadable line is reported with its file and
//! line and skipped; an unreadable document is reported where it breaks, after every record
//! before that point was scanned. Records are read with the compiled rule set
//! ([`crate::rules::compiled`]): only the fields rules and findings use are kept.
//!
//! Two paths give the same output:
//! - parallel (the default; `pipeline.rs`): files are spread over worker threads, each file of
//!   up to 4 MiB decompressed read and evaluated whole by one worker (a gzip file inflated in
//!   one libdeflate call, `inflate.rs`); a larger file is cut by one worker into 1 MiB buffers
//!   of whole records or lines (`records.rs`, `split.rs`) that every worker evaluates. Output is
//!   written in input order; every queue is bounded. A record (or single-record line) that no
//!   rule can match, told from its bytes (`prefilter.rs`), is only validated (`check.rs`, a
//!   SIMD validator; serde_json for what it does not settle), not read field by field.
//! - single-threaded (`TRAILGUARD_SCAN_THREADS=1`, and [`Scanner::scan_reader`]): each input in
//!   order through serde_json's streaming parser (`serial.rs`).
//!
//! [`for_each_record`] is the record reader on its own, for one object at a time.
//!
//! Output: one JSON object per finding on stdout; a summary on stderr; progress on stderr
//! when it is a terminal.

// NOTE: scan is an offline command: it times itself in wall time, and judges an exemption
// without an event time against the host's date.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use crate::rules::RuleSet;

mod buffer;
mod check;
mod classify;
mod emit;
mod inflate;
mod input;
mod pipeline;
mod prefilter;
mod records;
mod serial;
mod split;

pub use inflate::Gunzip;
pub use records::{RecordError, for_each_record};

#[derive(Debug, Default)]
pub struct Stats {
    pub files: u64,
    pub records: u64,
    pub bytes: u64,
    pub findings: BTreeMap<String, u64>,
    /// Unreadable input: "file:line: what".
    pub unreadable: Vec<String>,
}

pub struct Scanner<'r> {
    compiled: emit::Compiled<'r>,
    stats: Stats,
}

/// Worker threads: `TRAILGUARD_SCAN_THREADS`, or one per core.
fn threads() -> usize {
    std::env::var("TRAILGUARD_SCAN_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64)
}

impl<'r> Scanner<'r> {
    pub fn new(rules: &'r RuleSet, policy: Option<&'r crate::plan::Policy>) -> Self {
        Self {
            compiled: emit::Compiled::new(rules, policy),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Scans every path (files, directories, `-`).
    pub fn scan_paths(&mut self, paths: &[PathBuf], out: &mut dyn Write) -> io::Result<()> {
        let show = io::stderr().is_terminal();
        let started = Instant::now();
        let mut progress = |st: &Stats| {
            if show {
                let secs = started.elapsed().as_secs_f64().max(0.001);
                eprint!(
                    "\r  {} files, {} records, {:.0} MB ({:.0} MB/s), {} findings   ",
                    st.files,
                    st.records,
                    st.bytes as f64 / 1e6,
                    st.bytes as f64 / 1e6 / secs,
                    st.findings.values().sum::<u64>()
                );
            }
        };
        let inputs = input::expand(paths);
        let threads = threads();
        let result = if threads == 1 {
            let mut em = emit::Emitter {
                c: &self.compiled,
                stats: std::mem::take(&mut self.stats),
                records: Vec::new(),
            };
            let mut result = Ok(());
            for i in &inputs {
                result = match i.open() {
                    Ok(r) => serial::scan_reader(&mut em, r, &i.name(), out),
                    Err(message) => {
                        em.stats.unreadable.push(message);
                        Ok(())
                    }
                };
                progress(&em.stats);
                if result.is_err() {
                    break;
                }
            }
            self.stats = em.stats;
            result
        } else {
            pipeline::run(
                &self.compiled,
                &inputs,
                threads,
                out,
                &mut self.stats,
                &mut progress,
            )
        };
        if show {
            eprintln!();
        }
        result
    }

    /// Scans one input stream on the calling thread.
    pub fn scan_reader(
        &mut self,
        reader: Box<dyn Read + '_>,
        name: &str,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let mut em = emit::Emitter {
            c: &self.compiled,
            stats: std::mem::take(&mut self.stats),
            records: Vec::new(),
        };
        let result = serial::scan_reader(&mut em, reader, name, out);
        self.stats = em.stats;
        result
    }
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.records += o.records;
        for (k, v) in o.findings {
            *self.findings.entry(k).or_default() += v;
        }
        self.unreadable.extend(o.unreadable);
    }

    /// The summary line for stderr.
    pub fn summary(&self, secs: f64) -> String {
        let total: u64 = self.findings.values().sum();
        let per_rule: Vec<String> = self.findings.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!(
            "scanned {} input{}, {} records, {:.1} MB in {:.2}s ({:.0} MB/s): {} finding{}{}{}",
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.records,
            self.bytes as f64 / 1e6,
            secs,
            self.bytes as f64 / 1e6 / secs.max(1e-9),
            total,
            if total == 1 { "" } else { "s" },
            if per_rule.is_empty() {
                String::new()
            } else {
                format!(" ({})", per_rule.join(", "))
            },
            if self.unreadable.is_empty() {
                String::new()
            } else {
                format!("; {} unreadable", self.unreadable.len())
            },
        )
    }
}
