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
//! Output: one JSON object per finding on stdout; a summary on stderr; progress on stderr
//! when it is a terminal.

// NOTE: scan is an offline command: it times itself in wall time and judges exemption dates
// against the host's date.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::rules::compiled::{CompiledSet, Scalar};
use crate::rules::pattern::{self, Step};
use crate::rules::{KeyFields, RuleSet, key_arn_of};

/// The fields a finding reports, read alongside the rules' own.
const FIELDS: [&str; 11] = [
    "eventID",
    "eventName",
    "eventSource",
    "eventTime",
    "awsRegion",
    "recipientAccountId",
    "userIdentity.accountId",
    "userIdentity.arn",
    "errorMessage",
    "responseElements.keyId",
    "requestParameters.keyId",
];
/// How many `resources[i].ARN` are read to find a key.
const RESOURCE_ARNS: usize = 4;

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
    /// The rules' fields and the output fields: for documents, and for lines that matched.
    set: CompiledSet,
    /// The rules' fields alone: the first pass over each line, which most lines end with.
    rules_only: CompiledSet,
    em: Emitter<'r>,
}

/// Turns matched records into output lines and counts; kept apart from the compiled set so
/// both can be borrowed while a document streams.
struct Emitter<'r> {
    rules: &'r RuleSet,
    policy: Option<&'r crate::plan::Policy>,
    fields: Vec<usize>,
    arns: Vec<usize>,
    stats: Stats,
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

fn str_of<'a>(s: &'a Scalar<'_>) -> Option<&'a str> {
    match s {
        Scalar::Str(v) => Some(v.as_ref()),
        _ => None,
    }
}

impl Emitter<'_> {
    fn emit(
        &mut self,
        slots: &[Scalar<'_>],
        set: &CompiledSet,
        file: &str,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        for (i, rule) in self.rules.rules.iter().enumerate() {
            if !set.matches(i, slots) {
                continue;
            }
            let f = |n: usize| str_of(&slots[self.fields[n]]);
            let key = key_arn_of(&KeyFields {
                error_message: f(8),
                response_key_id: f(9),
                resource_arns: self.arns.iter().filter_map(|s| str_of(&slots[*s])).collect(),
                request_key_id: f(10),
                region: f(4),
                account: f(5).or(f(6)),
            });
            let mut actions: Vec<&str> = rule.actions.iter().map(|a| a.as_str()).collect();
            let mut policy = None;
            if let Some(p) = self.policy.filter(|p| !p.is_empty()) {
                // Offline, a key's aliases are only those the record names; tags are unknown.
                let alias = f(10).filter(|k| k.starts_with("alias/"));
                let facts = crate::plan::KeyFacts {
                    aliases: alias.into_iter().map(str::to_owned).collect(),
                    tags: vec![],
                };
                let decision = crate::plan::decide_for(
                    p,
                    &rule.id,
                    &rule.actions,
                    key.as_deref(),
                    f(7),
                    &facts,
                    chrono::Utc::now(),
                );
                if let Some(d) = decision {
                    actions = d.actions.iter().map(|a| a.as_str()).collect();
                    let offline = if p.needs_aliases() || p.needs_tags() {
                        " (scan cannot resolve aliases and tags through KMS: only an alias the record names counts)"
                    } else {
                        ""
                    };
                    policy = Some(format!("{}{offline}", d.reason));
                }
            }
            let line = json!({
                "rule_id": rule.id,
                "severity": rule.severity.as_str(),
                "event_id": f(0),
                "event_name": f(1),
                "event_source": f(2),
                "event_time": f(3),
                "region": f(4),
                "account": f(5).or(f(6)),
                "key_arn": key,
                "principal_arn": f(7),
                "actions": actions,
                "policy": policy,
                "file": file,
            });
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
            *self.stats.findings.entry(rule.id.clone()).or_default() += 1;
        }
        Ok(())
    }
}

impl<'r> Scanner<'r> {
    pub fn new(rules: &'r RuleSet, policy: Option<&'r crate::plan::Policy>) -> Self {
        let exprs: Vec<_> = rules
            .rules
            .iter()
            .map(|r| pattern::parse(&r.pattern).expect("rules are validated"))
            .collect();
        let rules_only = CompiledSet::new(&exprs.iter().collect::<Vec<_>>());
        let mut set = CompiledSet::new(&exprs.iter().collect::<Vec<_>>());
        let path = |p: &str| p.split('.').map(|k| Step::Key(k.to_owned())).collect::<Vec<_>>();
        let fields = FIELDS.iter().map(|f| set.add_field(&path(f))).collect();
        let arns = (0..RESOURCE_ARNS)
            .map(|i| {
                set.add_field(&vec![
                    Step::Key("resources".into()),
                    Step::Index(i),
                    Step::Key("ARN".into()),
                ])
            })
            .collect();
        Self {
            set,
            rules_only,
            em: Emitter {
                rules,
                policy,
                fields,
                arns,
                stats: Stats::default(),
            },
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.em.stats
    }

    /// Scans every path (files, directories, `-`).
    pub fn scan_paths(&mut self, paths: &[PathBuf], out: &mut dyn Write) -> io::Result<()> {
        let progress = io::stderr().is_terminal();
        let started = Instant::now();
        for p in paths {
            if p.as_os_str() == "-" {
                self.scan_reader(Box::new(io::stdin().lock()), "-", out)?;
                continue;
            }
            let mut files = Vec::new();
            collect(p, &mut files, &mut self.em.stats.unreadable);
            for f in files {
                self.scan_file(&f, out)?;
                if progress {
                    let st = &self.em.stats;
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
            }
        }
        if progress {
            eprintln!();
        }
        Ok(())
    }

    fn scan_file(&mut self, path: &Path, out: &mut dyn Write) -> io::Result<()> {
        let name = path.display().to_string();
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.em.stats.unreadable.push(format!("{name}: cannot open: {e}"));
                return Ok(());
            }
        };
        let mut magic = [0u8; 2];
        let n = file.read(&mut magic)?;
        let file = File::open(path)?;
        let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        self.scan_reader(reader, &name, out)
    }

    /// Scans one input stream.
    pub fn scan_reader(
        &mut self,
        reader: Box<dyn Read + '_>,
        name: &str,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        self.em.stats.files += 1;
        let mut r = BufReader::with_capacity(256 * 1024, Counting { inner: reader, n: 0 });
        // Peek past leading whitespace to choose between one document and lines.
        let head: Vec<u8> = loop {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) => {
                    self.em.stats.unreadable.push(format!("{name}: cannot read: {e}"));
                    return Ok(());
                }
            };
            if buf.is_empty() {
                return Ok(());
            }
            let skip = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            if skip < buf.len() {
                break buf[skip..]
                    .iter()
                    .take(48)
                    .filter(|b| !b.is_ascii_whitespace())
                    .copied()
                    .collect();
            }
            let len = buf.len();
            r.consume(len);
        };
        if !matches!(head.first(), Some(b'{' | b'[')) {
            let start = String::from_utf8_lossy(&head[..head.len().min(16)]).into_owned();
            self.em
                .stats
                .unreadable
                .push(format!("{name}:1: not CloudTrail JSON (starts with {start:?})"));
            return Ok(());
        }
        let document =
            head.starts_with(b"[") || head.starts_with(b"{\"Records\"") || head.starts_with(b"{\"Events\"");
        if document {
            self.scan_document(&mut r, name, out)?;
        } else {
            // The first line decides: a complete JSON value means lines; otherwise one document.
            let mut first = Vec::new();
            r.read_until(b'\n', &mut first)?;
            let mut de = serde_json::Deserializer::from_slice(&first);
            let (set, em) = (&self.set, &mut self.em);
            let mut emitted = Ok(());
            let parsed = set
                .scan_document(&mut de, &mut |slots| {
                    em.stats.records += 1;
                    if emitted.is_ok() {
                        emitted = em.emit(&slots, set, name, out);
                    }
                })
                .and_then(|_| de.end());
            emitted?;
            match parsed {
                Err(e) if e.is_eof() => {
                    let mut chained = io::Cursor::new(first).chain(&mut r);
                    self.scan_document(&mut chained, name, out)?;
                }
                other => {
                    if let Err(e) = other {
                        self.em.stats.unreadable.push(format!("{name}:1: {e}"));
                    }
                    self.scan_lines(&mut r, name, 2, out)?;
                }
            }
        }
        self.em.stats.bytes += r.get_ref().n;
        Ok(())
    }

    /// Lines, in parallel: the reader cuts newline-aligned chunks, workers evaluate them, and
    /// their output is written in input order. Channels are bounded, so memory stays flat.
    fn scan_lines(
        &mut self,
        r: &mut dyn BufRead,
        name: &str,
        first_line: u64,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        use std::sync::mpsc;
        const CHUNK: usize = 1 << 20;
        // TRAILGUARD_SCAN_THREADS overrides the worker count (benchmarks).
        let workers = std::env::var("TRAILGUARD_SCAN_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, 16);
        let set = &self.set;
        let rules_only = &self.rules_only;
        let rules = self.em.rules;
        let policy = self.em.policy;
        let (fields, arns) = (self.em.fields.clone(), self.em.arns.clone());
        std::thread::scope(|scope| -> io::Result<()> {
            let (work_tx, work_rx) = mpsc::sync_channel::<(u64, u64, Vec<u8>)>(workers * 2);
            let work_rx = std::sync::Arc::new(std::sync::Mutex::new(work_rx));
            // Unbounded, but only ever holds the chunks in flight: the reader drains it after
            // every send, and the work queue is bounded.
            let (done_tx, done_rx) = mpsc::channel::<(u64, Vec<u8>, Stats)>();
            for _ in 0..workers {
                let work_rx = work_rx.clone();
                let done_tx = done_tx.clone();
                let (fields, arns) = (fields.clone(), arns.clone());
                scope.spawn(move || {
                    let mut em = Emitter {
                        rules,
                        policy,
                        fields,
                        arns,
                        stats: Stats::default(),
                    };
                    loop {
                        let job = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((index, start_line, chunk)) = job else {
                            return;
                        };
                        let mut buf = Vec::new();
                        let mut start = 0;
                        let ends = memchr::memchr_iter(b'\n', &chunk).chain(std::iter::once(chunk.len()));
                        for (i, end) in ends.enumerate() {
                            let line = &chunk[start..end];
                            start = end + 1;
                            if line.iter().all(u8::is_ascii_whitespace) {
                                continue;
                            }
                            let mut de = serde_json::Deserializer::from_slice(line);
                            let (mut records, mut hit) = (0u64, false);
                            let parsed = rules_only
                                .scan_document(&mut de, &mut |slots| {
                                    records += 1;
                                    hit = hit || (0..rules_only.len()).any(|r| rules_only.matches(r, &slots));
                                })
                                .and_then(|_| de.end());
                            em.stats.records += records;
                            match parsed {
                                Err(e) => em
                                    .stats
                                    .unreadable
                                    .push(format!("{name}:{}: {e}", start_line + i as u64)),
                                Ok(()) if hit => {
                                    // A match: read the line again, for the fields a finding reports.
                                    let mut de = serde_json::Deserializer::from_slice(line);
                                    let mut emitted = Ok(());
                                    let _ = set.scan_document(&mut de, &mut |slots| {
                                        if emitted.is_ok() {
                                            emitted = em.emit(&slots, set, name, &mut buf);
                                        }
                                    });
                                }
                                Ok(()) => {}
                            }
                        }
                        let stats = std::mem::take(&mut em.stats);
                        if done_tx.send((index, buf, stats)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(done_tx);
            let mut pending = std::collections::BTreeMap::new();
            let mut next = 0u64;
            let mut total = Stats::default();
            let mut write_ready = |pending: &mut std::collections::BTreeMap<u64, (Vec<u8>, Stats)>,
                                   next: &mut u64,
                                   total: &mut Stats|
             -> io::Result<()> {
                while let Some((buf, stats)) = pending.remove(next) {
                    out.write_all(&buf)?;
                    total.merge(stats);
                    *next += 1;
                }
                Ok(())
            };
            let mut index = 0u64;
            let mut line = first_line;
            loop {
                // One block copy, then up to the next newline.
                let mut chunk = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    match r.read(&mut chunk[filled..])? {
                        0 => break,
                        n => filled += n,
                    }
                }
                chunk.truncate(filled);
                if filled == CHUNK {
                    r.read_until(b'\n', &mut chunk)?;
                }
                if chunk.is_empty() {
                    break;
                }
                let lines = memchr::memchr_iter(b'\n', &chunk).count() as u64;
                if work_tx.send((index, line, chunk)).is_err() {
                    break;
                }
                index += 1;
                line += lines;
                while let Ok((i, buf, stats)) = done_rx.try_recv() {
                    pending.insert(i, (buf, stats));
                }
                write_ready(&mut pending, &mut next, &mut total)?;
            }
            drop(work_tx);
            for (i, buf, stats) in done_rx {
                pending.insert(i, (buf, stats));
                write_ready(&mut pending, &mut next, &mut total)?;
            }
            if next != index {
                return Err(io::Error::other("a scan worker stopped early"));
            }
            self.em.stats.merge(total);
            Ok(())
        })
    }

    fn scan_document(&mut self, r: &mut dyn Read, name: &str, out: &mut dyn Write) -> io::Result<()> {
        let mut de = serde_json::Deserializer::from_reader(r);
        loop {
            let (set, em) = (&self.set, &mut self.em);
            let mut emitted = Ok(());
            let result = set.scan_document(&mut de, &mut |slots| {
                em.stats.records += 1;
                if emitted.is_ok() {
                    emitted = em.emit(&slots, set, name, out);
                }
            });
            emitted?;
            if let Err(e) = result {
                self.em.stats.unreadable.push(format!("{name}:{}: {e}", e.line()));
                return Ok(());
            }
            if de.end().is_ok() {
                return Ok(());
            }
        }
    }
}

/// Every file under `p` (itself if a file), in name order.
fn collect(p: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => match std::fs::read_dir(p) {
            Ok(entries) => {
                let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                children.sort();
                for c in children {
                    collect(&c, out, errors);
                }
            }
            Err(e) => errors.push(format!("{}: cannot list: {e}", p.display())),
        },
        Ok(_) => out.push(p.to_path_buf()),
        Err(e) => errors.push(format!("{}: {e}", p.display())),
    }
}

impl Stats {
    fn merge(&mut self, o: Stats) {
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
