//! Evaluating records: the compiled rule sets, and turning matches into output lines and counts.
//! Shared by the single-threaded path and the workers.

use std::io::{self, Write};

use serde_json::json;

use super::Stats;
use super::check::Record;
use super::prefilter::Prefilter;
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

/// The rules compiled twice: with the fields a finding reports, and alone.
pub(crate) struct Compiled<'r> {
    pub rules: &'r RuleSet,
    pub policy: Option<&'r crate::plan::Policy>,
    /// The rules' fields and the output fields: for documents, and for records that matched.
    pub set: CompiledSet,
    /// The rules' fields alone: the first pass over each line or record, which most end with.
    pub rules_only: CompiledSet,
    fields: Vec<usize>,
    arns: Vec<usize>,
    prefilter: Prefilter,
}

impl<'r> Compiled<'r> {
    pub(crate) fn new(rules: &'r RuleSet, policy: Option<&'r crate::plan::Policy>) -> Self {
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
        Compiled {
            rules,
            policy,
            set,
            rules_only,
            fields,
            arns,
            prefilter: Prefilter::new(rules),
        }
    }
}

/// One thread's evaluator: writes findings to an output and counts into its own [`Stats`].
pub(crate) struct Emitter<'c, 'r> {
    pub c: &'c Compiled<'r>,
    pub stats: Stats,
    /// The records of the last log file cut by [`super::check::log_file`], kept for the next.
    pub records: Vec<Record>,
}

fn str_of<'a>(s: &'a Scalar<'_>) -> Option<&'a str> {
    match s {
        Scalar::Str(v) => Some(v.as_ref()),
        _ => None,
    }
}

impl<'c, 'r> Emitter<'c, 'r> {
    pub(crate) fn new(c: &'c Compiled<'r>) -> Self {
        Emitter {
            c,
            stats: Stats::default(),
            records: Vec::new(),
        }
    }

    /// The findings for one record's fields, as read with the full set.
    pub(crate) fn emit(&mut self, slots: &[Scalar<'_>], file: &str, out: &mut dyn Write) -> io::Result<()> {
        let c = self.c;
        for (i, rule) in c.rules.rules.iter().enumerate() {
            if !c.set.matches(i, slots) {
                continue;
            }
            let f = |n: usize| str_of(&slots[c.fields[n]]);
            let key = key_arn_of(&KeyFields {
                error_message: f(8),
                response_key_id: f(9),
                resource_arns: c.arns.iter().filter_map(|s| str_of(&slots[*s])).collect(),
                request_key_id: f(10),
                region: f(4),
                account: f(5).or(f(6)),
            });
            let mut actions: Vec<&str> = rule.actions.iter().map(|a| a.as_str()).collect();
            let mut policy = None;
            if let Some(p) = c.policy.filter(|p| !p.is_empty()) {
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
                    // Exemptions are judged on the event's day, as the daemon does.
                    f(3).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .unwrap_or_else(chrono::Utc::now),
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

    /// Every record of one JSON text (a line: a record, or a document of records), read with
    /// the rules alone first; only a text some rule matches is read again for the findings.
    /// Returns the parse error, if any (the records before it were counted and evaluated).
    fn two_pass(&mut self, text: &[u8], file: &str, out: &mut dyn Write) -> Option<serde_json::Error> {
        let c = self.c;
        let mut de = serde_json::Deserializer::from_slice(text);
        let (mut records, mut hit) = (0u64, false);
        let mut on_record = |slots: Vec<Scalar<'_>>| {
            records += 1;
            hit = hit || (0..c.rules_only.len()).any(|r| c.rules_only.matches(r, &slots));
        };
        let parsed = c
            .rules_only
            .scan_document(&mut de, &mut on_record)
            .and_then(|_| de.end());
        if let Err(e) = parsed {
            // What was read before the error still counts, as it does in a stream.
            self.stats.records += records;
            return Some(e);
        }
        self.stats.records += records;
        if hit {
            let mut emitted = Ok(());
            let mut de = serde_json::Deserializer::from_slice(text);
            let _ = c.set.scan_document(&mut de, &mut |slots| {
                if emitted.is_ok() {
                    emitted = self.emit(&slots, file, out);
                }
            });
            // Output goes to memory here; a failed write cannot happen.
            debug_assert!(emitted.is_ok());
        }
        None
    }

    /// One record of a document, read in one pass with the findings' fields as the stream
    /// reads a document's records: what serde_json refuses in a field a finding reports (a
    /// number out of f64's range, a string that is not UTF-8) is the record's error here too.
    fn read_record(&mut self, text: &[u8], file: &str, out: &mut dyn Write) -> Option<serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let slots = match self
            .c
            .set
            .extract_from(&mut de)
            .and_then(|s| de.end().map(|()| s))
        {
            Ok(slots) => slots,
            Err(e) => return Some(e),
        };
        self.stats.records += 1;
        let emitted = self.emit(&slots, file, out);
        // Output goes to memory here; a failed write cannot happen.
        debug_assert!(emitted.is_ok());
        None
    }

    /// One record of a `Records` array (its bytes, as cut by the splitter).
    /// A record no rule can match is only validated; a record that does not validate is read
    /// as any other, for its error.
    pub(crate) fn record(&mut self, text: &[u8], file: &str, out: &mut Vec<u8>) -> Option<serde_json::Error> {
        if self.c.prefilter.skips(text) {
            self.stats.records += 1;
            return None;
        }
        self.read_record(text, file, out)
    }

    /// Whether some records are only validated: when some rule needs no text, every record
    /// is read in full and validating first would only add work.
    pub(crate) fn prefilters(&self) -> bool {
        self.c.prefilter.active()
    }

    /// [`Emitter::record`] for a record that [`super::check::log_file`] found plain (and so
    /// valid): it is not validated again.
    pub(crate) fn checked_record(
        &mut self,
        text: &[u8],
        file: &str,
        out: &mut Vec<u8>,
    ) -> Option<serde_json::Error> {
        if self.c.prefilter.skips_checked(text) {
            self.stats.records += 1;
            return None;
        }
        self.read_record(text, file, out)
    }

    /// The first line of an input that may be lines: `None` when it is not complete JSON (the
    /// input is then one pretty-printed document, and nothing was counted); otherwise its
    /// findings, an error in it reported as line 1.
    pub(crate) fn first_line(&mut self, line: &[u8], file: &str) -> Option<Vec<u8>> {
        let saved = std::mem::take(&mut self.stats);
        let mut out = Vec::new();
        let error = self.two_pass(line, file, &mut out);
        if error.as_ref().is_some_and(|e| e.is_eof()) {
            self.stats = saved;
            return None;
        }
        if let Some(e) = error {
            self.stats.unreadable.push(format!("{file}:1: {e}"));
        }
        let own = std::mem::replace(&mut self.stats, saved);
        self.stats.merge(own);
        Some(out)
    }

    /// Newline-separated JSON texts, the first on line `first_line`. A line that does not
    /// parse is reported with its file and line, and the next line is read.
    pub(crate) fn lines(&mut self, chunk: &[u8], file: &str, first_line: u64, out: &mut Vec<u8>) {
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', chunk).chain(std::iter::once(chunk.len()));
        for (i, end) in ends.enumerate() {
            let line = &chunk[start..end.max(start)];
            start = end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if self.c.prefilter.skips_line(line) {
                self.stats.records += 1;
                continue;
            }
            if let Some(e) = self.two_pass(line, file, out) {
                let n = first_line + i as u64;
                self.stats.unreadable.push(format!("{file}:{n}: {e}"));
            }
        }
    }

    /// Every document of a stream, read in one pass with the full set, until its end or the
    /// first error, which is returned.
    pub(crate) fn documents<'de, R: serde_json::de::Read<'de>>(
        &mut self,
        de: &mut serde_json::Deserializer<R>,
        file: &str,
        out: &mut dyn Write,
    ) -> io::Result<Option<serde_json::Error>> {
        let c = self.c;
        loop {
            let mut emitted = Ok(());
            let result = c.set.scan_document(&mut *de, &mut |slots| {
                self.stats.records += 1;
                if emitted.is_ok() {
                    emitted = self.emit(&slots, file, out);
                }
            });
            emitted?;
            if let Err(e) = result {
                return Ok(Some(e));
            }
            match de.end() {
                Ok(()) => return Ok(None),
                // The stream failed after the document (a gzip checksum): that is the error,
                // not the missing next document.
                Err(e) if e.is_io() => return Ok(Some(e)),
                Err(_) => {}
            }
        }
    }
}
