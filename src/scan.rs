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
    set: CompiledSet,
    em: Emitter<'r>,
}

/// Turns matched records into output lines and counts; kept apart from the compiled set so
/// both can be borrowed while a document streams.
struct Emitter<'r> {
    rules: &'r RuleSet,
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
        self.stats.records += 1;
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
                "actions": rule.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
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
    pub fn new(rules: &'r RuleSet) -> Self {
        let exprs: Vec<_> = rules
            .rules
            .iter()
            .map(|r| pattern::parse(&r.pattern).expect("rules are validated"))
            .collect();
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
            em: Emitter {
                rules,
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
            let mut line = Vec::new();
            let mut number = 0u64;
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                number += 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let mut de = serde_json::Deserializer::from_slice(&line);
                let (set, em) = (&self.set, &mut self.em);
                let mut emitted = Ok(());
                let parsed = set
                    .scan_document(&mut de, &mut |slots| {
                        if emitted.is_ok() {
                            emitted = em.emit(&slots, set, name, out);
                        }
                    })
                    .and_then(|_| de.end());
                emitted?;
                match parsed {
                    Ok(()) => {}
                    Err(e) if number == 1 && e.is_eof() => {
                        // A pretty-printed document: read it whole from its start.
                        let first = std::mem::take(&mut line);
                        let mut chained = io::Cursor::new(first).chain(&mut r);
                        self.scan_document(&mut chained, name, out)?;
                        break;
                    }
                    Err(e) => self.em.stats.unreadable.push(format!("{name}:{number}: {e}")),
                }
            }
        }
        self.em.stats.bytes += r.get_ref().n;
        Ok(())
    }

    fn scan_document(&mut self, r: &mut dyn Read, name: &str, out: &mut dyn Write) -> io::Result<()> {
        let mut de = serde_json::Deserializer::from_reader(r);
        loop {
            let (set, em) = (&self.set, &mut self.em);
            let mut emitted = Ok(());
            let result = set.scan_document(&mut de, &mut |slots| {
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
