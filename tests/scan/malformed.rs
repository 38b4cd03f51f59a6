//! Malformed documents: every truncation and single-byte edit of small documents (a log file,
//! a records array, a log file with a tail and a second document, `lookup-events` output), and
//! junk next to records in small and large files, plain and gzipped. The parallel path must
//! find what the single-threaded one finds and report its error in the same words at the same
//! line and column.

use std::collections::BTreeMap;

use super::{gz, record, reports, same, write};
use crate::{Run, temp_dir, trailguard_threads};

/// A matching record (DisableKey, with brackets, commas and an escaped quote in strings and a
/// nested array).
const MATCHING: &str = concat!(
    r#"{"eventSource":"kms.amazonaws.com","eventName":"DisableKey","eventID":"e1","#,
    r#""n":[1,-2.5e3,{"k":"v\"]},["}],"t":true}"#
);
/// A record no rule matches (only validated), on two lines.
const OTHER: &str = concat!(
    r#"{"eventSource":"kms.amazonaws.com","#,
    "\n  ",
    r#""eventName":"Decrypt","eventID":"e2","z":null}"#
);

/// What a run gave for each file: its findings and its reports, in order.
fn by_file(r: &Run) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut files: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (line, f) in r.stdout.lines().zip(&r.findings) {
        let file = f["file"].as_str().unwrap().to_owned();
        files.entry(file).or_default().0.push(line.to_owned());
    }
    for l in r.stderr.lines() {
        if let Some(report) = l.strip_prefix("unreadable: ") {
            let file = report.split_once(':').map_or(report, |(f, _)| f).to_owned();
            files.entry(file).or_default().1.push(report.to_owned());
        }
    }
    files
}

/// Writes each case to its own file, scans the directory on both paths, and returns the
/// cases whose findings or reports differ, with what each path said.
fn differences(cases: &[(String, Vec<u8>)], gzip: bool) -> Vec<String> {
    let dir = temp_dir();
    for (i, (_, bytes)) in cases.iter().enumerate() {
        match gzip {
            true => write(&dir, &format!("{i:05}.json.gz"), &gz(bytes)),
            false => write(&dir, &format!("{i:05}.json"), bytes),
        }
    }
    let p = dir.to_str().unwrap();
    let one = trailguard_threads(&["scan", p], None, Some(1));
    let three = trailguard_threads(&["scan", p], None, Some(3));
    let (a, b) = (by_file(&one), by_file(&three));
    let mut found = Vec::new();
    for (i, (label, bytes)) in cases.iter().enumerate() {
        let name = dir
            .join(format!("{i:05}.json{}", if gzip { ".gz" } else { "" }))
            .display()
            .to_string();
        let (x, y) = (a.get(&name).cloned(), b.get(&name).cloned());
        if x != y {
            let (x, y) = (x.unwrap_or_default(), y.unwrap_or_default());
            let short = |v: &[String]| v.iter().map(|r| r.replace(&name, "")).collect::<Vec<_>>();
            let text = match bytes.len() {
                0..2000 => format!("{:?}", String::from_utf8_lossy(bytes)),
                n => format!("({n} bytes)"),
            };
            found.push(format!(
                "{label}: {text}\n    stream:   {} findings, {:?}\n    parallel: {} findings, {:?}",
                x.0.len(),
                short(&x.1),
                y.0.len(),
                short(&y.1),
            ));
        }
    }
    // The counts too (records read), which are not told per file.
    if found.is_empty() {
        assert_eq!(reports(&one), reports(&three));
    }
    let _ = std::fs::remove_dir_all(dir);
    found
}

/// Every truncation, deletion, replacement and insertion of one byte of `base`.
fn edits(kind: &str, base: &[u8]) -> Vec<(String, Vec<u8>)> {
    const BYTES: &[u8] = b"{}[],:\"\\ \n5xt-";
    let mut cases = Vec::new();
    let shown = |b: u8| (b as char).escape_default().to_string();
    for i in 0..=base.len() {
        cases.push((format!("{kind} cut at {i}"), base[..i].to_vec()));
        for &b in BYTES {
            let mut v = base.to_vec();
            v.insert(i, b);
            cases.push((format!("{kind} insert {} at {i}", shown(b)), v));
        }
        if i == base.len() {
            break;
        }
        let mut v = base.to_vec();
        v.remove(i);
        cases.push((format!("{kind} delete {i} ({})", shown(base[i])), v));
        for &b in BYTES.iter().filter(|&&b| b != base[i]) {
            let mut v = base.to_vec();
            v[i] = b;
            cases.push((
                format!("{kind} replace {i} ({}) by {}", shown(base[i]), shown(b)),
                v,
            ));
        }
    }
    cases
}

fn assert_none(found: &[String]) {
    assert!(
        found.is_empty(),
        "{} cases differ:\n{}",
        found.len(),
        found.iter().take(60).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn every_edit_of_a_small_log_file_reports_what_the_stream_reports() {
    let event = serde_json::to_string(MATCHING).unwrap();
    let bases = [
        ("log", format!("{{\"Records\":[{MATCHING},\n {OTHER}]}}\n")),
        ("array", format!("[{MATCHING},\n {OTHER}]\n")),
        // A tail after the records, then a second document.
        (
            "two",
            format!("{{\"Records\":[{MATCHING}],\"k\":[1,{{\"a\":\"]\"}}]}}\n[{OTHER}]"),
        ),
        // Taken whole.
        (
            "events",
            format!("{{\"Events\":[{{\"EventId\":\"e1\",\"CloudTrailEvent\":{event}}}]}}"),
        ),
    ];
    let mut cases = Vec::new();
    for (kind, base) in &bases {
        let mut de = serde_json::Deserializer::from_str(base).into_iter::<serde_json::Value>();
        assert!(de.all(|v| v.is_ok()), "{base}");
        cases.extend(edits(kind, base.as_bytes()));
    }
    assert_none(&differences(&cases, false));
}

/// A complete record followed by junk, or by the wrong bracket, or by nothing, in a log file
/// of `n` records (`n % 5 == 4`: the last but one matches, as does the one before `mid`): the
/// stream evaluates the record, then reports where the list breaks.
fn junk_cases(n: usize) -> Vec<(String, Vec<u8>)> {
    assert_eq!(n % 5, 4);
    let records: Vec<String> = (0..n).map(|i| record(i).to_string()).collect();
    let (body, last) = (records[..n - 1].join(","), &records[n - 1]);
    let k = n / 10 * 5 + 1;
    let (mid, rest) = (records[..k].join(","), records[k..].join(","));
    let mut cases = Vec::new();
    for (label, doc) in [
        ("junk after a record", format!("{body}  5 ,{last}]}}")),
        ("junk in the middle", format!("{mid} x,{rest}]}}")),
        ("junk after the last record", format!("{body},{last}  5 ]}}")),
        ("a brace closes the list", format!("{body},{last}}}")),
        ("a brace after a comma", format!("{body},}}")),
        ("the end after a record", format!("{body},{last}")),
        ("the end after a comma", format!("{body},")),
        ("two records without a comma", format!("{body} {last}]}}")),
        (
            "two records without a comma in the middle",
            format!("{mid}{rest}]}}"),
        ),
        ("a string after a record", format!("{body} \"x]\",{last}]}}")),
        ("a number glued to a record", format!("{body}7,{last}]}}")),
        ("junk after the document", format!("{body},{last}]}}\n x")),
        ("a number after the document", format!("{body},{last}]}} 12")),
        ("a comma after the document", format!("{body},{last}]}},")),
        ("a bracket after the document", format!("{body},{last}]}}]")),
        ("a literal after the document", format!("{body},{last}]}} nul")),
        (
            "a string after the document",
            format!("{body},{last}]}} \"a{{\" {{}}"),
        ),
    ] {
        cases.push((label.to_owned(), format!("{{\"Records\":[{doc}").into_bytes()));
    }
    cases
}

/// Small files are read whole; larger than 4 MiB, they are cut into jobs. The matching record
/// before the junk must be found on both.
#[test]
fn a_record_followed_by_junk_is_evaluated_before_the_error() {
    // Large ones (each a scan of megabytes) for the kinds of break, not every variant.
    let all = junk_cases(4599);
    let large = |kinds: &[&str]| -> Vec<(String, Vec<u8>)> {
        all.iter()
            .filter(|(label, _)| kinds.contains(&label.as_str()))
            .map(|(label, doc)| {
                assert!(doc.len() > 4 << 20, "{label}");
                (format!("large: {label}"), doc.clone())
            })
            .collect()
    };
    let small = junk_cases(9);
    let plain = large(&[
        "junk after a record",
        "junk after the last record",
        "a brace closes the list",
        "the end after a record",
        "two records without a comma in the middle",
        "junk after the document",
    ]);
    assert_none(&differences(&[&small[..], &plain[..]].concat(), false));
    // Gzipped: inflated by libdeflate when small, by the stream when large.
    let gzipped = large(&["junk after a record", "a brace closes the list"]);
    assert_none(&differences(&[small, gzipped].concat(), true));
    // The finding before the junk is there, and the junk's place.
    let dir = temp_dir();
    let doc = format!("{{\"Records\":[{}  5 ]}}", record(0));
    write(&dir, "junk.json", doc.as_bytes());
    let r = same(&dir.join("junk.json"));
    assert_eq!(r.findings.len(), 1, "{}", r.stderr);
    let column = doc.find(" 5").unwrap() + 2;
    assert!(
        r.stderr.contains(&format!(
            "junk.json:1: expected `,` or `]` at line 1 column {column}\n"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("scanned 1 input, 1 records"), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(dir);
}
