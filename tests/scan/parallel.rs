//! The parallel path gives what the single-threaded one gives: the same findings in the same
//! order, the same unreadable reports, the same counts, on every shape of input.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use super::{Run, records, temp_dir, trailguard_threads};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Record `i` of a tiled corpus: the five real records with fresh event ids.
fn record(i: usize) -> Value {
    let base = records();
    let mut r = base[i % base.len()].clone();
    r["eventID"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
    r
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The summary's counts and every unreadable report.
fn reports(r: &Run) -> Vec<String> {
    r.stderr
        .lines()
        .map(|l| match l.split_once(" records, ") {
            // Bytes read may differ: a broken document's reader can have read further.
            Some((counts, _)) => counts.to_owned(),
            None => l.to_owned(),
        })
        .collect()
}

/// Scans `path` single-threaded and on three workers; both must agree in every byte of
/// output and every report. Returns the parallel run.
fn same(path: &Path) -> Run {
    let p = path.to_str().unwrap();
    let one = trailguard_threads(&["scan", p], None, Some(1));
    let three = trailguard_threads(&["scan", p], None, Some(3));
    assert_eq!(one.code, three.code, "{}\n{}", one.stderr, three.stderr);
    assert_eq!(reports(&one), reports(&three));
    assert!(
        one.stdout == three.stdout,
        "findings differ from the single-threaded path"
    );
    three
}

fn ids(r: &Run) -> Vec<String> {
    r.findings
        .iter()
        .map(|f| f["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A `{"Records": [...]}` log file of records `from..to`.
fn log_file(from: usize, to: usize) -> Vec<u8> {
    json!({ "Records": (from..to).map(record).collect::<Vec<_>>() })
        .to_string()
        .into_bytes()
}

#[test]
fn many_gzip_log_files_give_the_single_threaded_findings_in_order() {
    let dir = temp_dir();
    let mut next = 0;
    for f in 0..150 {
        let n = (f * 37) % 61;
        let name = format!(
            "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/{:02}/111122223333_CloudTrail_us-east-1_20261123T{f:04}Z_x.json.gz",
            1 + f / 50
        );
        write(&dir, &name, &gz(&log_file(next, next + n)));
        next += n;
    }
    let r = same(&dir);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.findings.len(), next / 5 * 3 + [0, 1, 1, 2, 3][next % 5]);
    let ids = ids(&r);
    assert!(
        ids.windows(2).all(|w| w[0] <= w[1]),
        "findings come in input order"
    );
    assert!(
        r.stderr.contains(&format!("scanned 150 inputs, {next} records")),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Records `0..n` as one document larger than what a worker reads whole (4 MiB).
fn huge(n: usize, pretty: bool) -> String {
    let doc =
        json!({ "Records": (0..n).map(record).collect::<Vec<_>>(), "nextToken": {"a": [1, {"b": "]}"}]} });
    if pretty {
        serde_json::to_string_pretty(&doc).unwrap()
    } else {
        doc.to_string()
    }
}

#[test]
fn a_huge_document_is_split_across_workers() {
    let dir = temp_dir();
    let compact = huge(6000, false);
    assert!(compact.len() > 5 << 20, "{}", compact.len());
    write(&dir, "huge.json", compact.as_bytes());
    write(&dir, "huge.json.gz", &gz(compact.as_bytes()));
    for name in ["huge.json", "huge.json.gz"] {
        let r = same(&dir.join(name));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.findings.len(), 6000 / 5 * 3);
        assert!(r.stderr.contains("6000 records"), "{}", r.stderr);
    }
    // Pretty-printed, with one broken record in the middle: reported at the same line and
    // column, after every record before it.
    let pretty = huge(6000, true);
    let id = "\"eventID\": \"00000000-0000-4000-8000-000000003000\"";
    assert!(pretty.contains(id));
    let broken = pretty.replacen(id, "\"eventID\" \"x\"", 1);
    write(&dir, "broken.json", broken.as_bytes());
    let r = same(&dir.join("broken.json"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("3000 records"), "{}", r.stderr);
    assert!(r.stderr.contains("broken.json:"), "{}", r.stderr);
    // Truncated, plain and gzipped.
    write(&dir, "cut.json", &compact.as_bytes()[..compact.len() * 2 / 3]);
    write(
        &dir,
        "cut.json.gz",
        &gz(&compact.as_bytes()[..compact.len() * 2 / 3]),
    );
    for name in ["cut.json", "cut.json.gz"] {
        let r = same(&dir.join(name));
        assert_eq!(r.code, 1);
        assert!(
            r.stderr.contains(&format!("{name}:1: EOF while parsing")),
            "{}",
            r.stderr
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_corrupt_gzip_member_in_the_middle_of_a_directory() {
    let dir = temp_dir();
    write(&dir, "a.json.gz", &gz(&log_file(0, 50)));
    // A good member, then one whose header is not gzip's.
    let mut second = gz(&log_file(100, 150));
    second[0] ^= 0xff;
    let mut bad = gz(&log_file(50, 100));
    bad.extend(&second);
    write(&dir, "b.json.gz", &bad);
    // The same past the size a worker reads whole.
    let mut big = gz(&log_file(150, 5150));
    big.extend(&second);
    write(&dir, "c.json.gz", &big);
    write(&dir, "d.json.gz", &gz(&log_file(5150, 5200)));
    let r = same(&dir);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for f in ["b.json.gz", "c.json.gz"] {
        assert!(
            r.stderr.contains(&format!("{f}:1: cannot read: ")),
            "{}",
            r.stderr
        );
    }
    assert!(
        r.stderr.contains("scanned 4 inputs, 5150 records"),
        "{}",
        r.stderr
    );
    assert_eq!(r.findings.len(), 5150 / 5 * 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn digest_files_and_other_json_next_to_log_files() {
    let dir = temp_dir();
    let day = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/23";
    write(&dir, &format!("{day}/log.json.gz"), &gz(&log_file(0, 20)));
    let digest = json!({"awsAccountId": "111122223333", "digestStartTime": "2026-11-23T11:00:00Z",
        "logFiles": [{"s3Bucket": "b", "s3Object": format!("{day}/log.json.gz"), "hashValue": "ab"}]});
    write(
        &dir,
        "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/23/digest.json.gz",
        &gz(digest.to_string().as_bytes()),
    );
    write(&dir, "config.json", br#"{"foo": {"bar": [1, 2]}}"#);
    write(&dir, "empty.json", b"");
    write(&dir, "notes.txt", b"not json\n");
    // Larger than a worker reads whole: a document that is not a log file, and lines with a
    // broken one in the middle.
    let files: Vec<Value> = (0..40_000)
        .map(|i| json!({"s3Object": format!("o{i}"), "hashValue": "ab"}))
        .collect();
    write(
        &dir,
        "big-digest.json",
        json!({"logFiles": files}).to_string().as_bytes(),
    );
    let mut lines: Vec<String> = (20..6020).map(|i| record(i).to_string()).collect();
    lines[3000] = "{\"eventName\": ".into();
    write(&dir, "big.ndjson", lines.join("\n").as_bytes());
    let r = same(&dir);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("big.ndjson:3001: EOF while parsing"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("notes.txt:1: not CloudTrail JSON"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("2 unreadable"), "{}", r.stderr);
    assert_eq!(r.findings.len(), 6000 / 5 * 3 + 20 / 5 * 3 - 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// Small gzip files are inflated in one call (libdeflate) and their records validated by the
/// fast checker; what either does not settle goes the streaming way. The reports must be those
/// of the single-threaded path, which streams everything through flate2 and serde_json.
#[test]
fn small_gzip_files_read_in_one_go_report_what_the_stream_reports() {
    let dir = temp_dir();
    // Several members, one of them empty.
    let members = [gz(&log_file(0, 30)), gz(b""), gz(&log_file(30, 60))].concat();
    write(&dir, "a-members.json.gz", &members);
    // Damaged: the body, the checksum, the size; trailing bytes; cut short.
    let good = gz(&log_file(60, 90));
    let n = good.len();
    let flip = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x55;
        b
    };
    write(&dir, "b-body.json.gz", &flip(n / 2));
    write(&dir, "c-crc.json.gz", &flip(n - 6));
    write(&dir, "d-size.json.gz", &flip(n - 2));
    write(
        &dir,
        "e-trailing.json.gz",
        &[good.clone(), b"\n\n".to_vec()].concat(),
    );
    write(&dir, "f-cut.json.gz", &good[..n - 9]);
    // Records the fast checker leaves to serde_json: malformed inside balanced brackets (a
    // bad literal, a raw tab in a string), and matching records spelt with an escape or a
    // byte over 0x7f.
    let text = String::from_utf8(log_file(90, 95)).unwrap();
    let id = "\"eventID\":\"00000000-0000-4000-8000-000000000091\"";
    assert!(text.contains(id));
    write(
        &dir,
        "g-literal.json.gz",
        &gz(text.replacen(id, "\"eventID\":tru", 1).as_bytes()),
    );
    write(
        &dir,
        "h-tab.json.gz",
        &gz(text.replacen(id, "\"eventID\":\"a\tb\"", 1).as_bytes()),
    );
    let escaped = text
        .replace("\"DisableKey\"", "\"Disable\\u004bey\"")
        .replace("\"userAgent\":\"", "\"userAgent\":\"caf\u{e9} ");
    assert_ne!(escaped, text);
    write(&dir, "i-escaped.json.gz", &gz(escaped.as_bytes()));
    write(&dir, "j-plain.json", escaped.as_bytes());
    let r = same(&dir);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for f in [
        "b-body",
        "c-crc",
        "d-size",
        "e-trailing",
        "f-cut",
        "g-literal",
        "h-tab",
    ] {
        assert!(
            r.stderr.contains(&format!("{f}.json.gz:1: ")),
            "{f}: {}",
            r.stderr
        );
    }
    assert!(r.stderr.contains("7 unreadable"), "{}", r.stderr);
    // A bad checksum or size is the error, not the end of the text it stopped.
    for f in ["c-crc", "d-size"] {
        assert!(
            r.stderr
                .contains(&format!("{f}.json.gz:1: cannot read: corrupt gzip stream")),
            "{f}: {}",
            r.stderr
        );
    }
    // The tab's own column, whether serde_json skipped that string or read it.
    let tab = text.replacen(id, "\"eventID\":\"a\tb\"", 1).find('\t').unwrap() + 1;
    assert!(
        r.stderr.contains(&format!("h-tab.json.gz:1: control character (\\u0000-\\u001F) found while parsing a string at line 1 column {tab}")),
        "{}",
        r.stderr
    );
    let named = text.replacen("\"eventName\":\"", "\"eventName\":\"\t", 1);
    let tab = named.find('\t').unwrap() + 1;
    write(&dir, "k-read-field.json.gz", &gz(named.as_bytes()));
    let k = same(&dir.join("k-read-field.json.gz"));
    assert!(k.stderr.contains(&format!("column {tab}\n")), "{}", k.stderr);
    let found = |name: &str| {
        r.findings
            .iter()
            .filter(|f| f["file"].as_str().unwrap().ends_with(name))
            .count()
    };
    assert_eq!(found("a-members.json.gz"), 60 / 5 * 3, "every member read");
    // The escaped DisableKey still matches, in the gzip file and the plain one.
    assert_eq!(found("i-escaped.json.gz"), 3);
    assert_eq!(found("j-plain.json"), 3);
    let _ = std::fs::remove_dir_all(dir);
}

/// Sets FHCRC in a one-member gzip file from [`gz`] and inserts a header CRC-16, the right one
/// (the low 16 bits of the header's CRC-32) or a wrong one.
fn with_header_crc(gz: &[u8], right: bool) -> Vec<u8> {
    let mut header = gz[..10].to_vec();
    header[3] |= 0x02;
    let mut crc = flate2::Crc::new();
    crc.update(&header);
    let sum = (crc.sum() as u16) ^ if right { 0 } else { 0x5a5a };
    [&header[..], &sum.to_le_bytes(), &gz[10..]].concat()
}

/// A header CRC (FHCRC) is checked by flate2's stream, not by libdeflate: a file whose header
/// CRC is wrong must be reported on both paths, not read by the parallel one alone.
#[test]
fn a_gzip_header_crc_is_checked_on_both_paths() {
    let dir = temp_dir();
    let good = gz(&log_file(0, 20));
    write(&dir, "a-right.json.gz", &with_header_crc(&good, true));
    write(&dir, "b-wrong.json.gz", &with_header_crc(&good, false));
    // A wrong header CRC in the second member: the first member's records are read.
    let second = with_header_crc(&gz(&log_file(20, 40)), false);
    write(&dir, "c-second.json.gz", &[good.clone(), second].concat());
    let r = same(&dir);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("b-wrong.json.gz:1: cannot read: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("2 unreadable"), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

/// A named pipe given as a path: what a worker reads of it cannot be read again, so it must
/// take the stream's way (which reports it as the single-threaded path does), not be read
/// whole by the small-file path.
#[test]
fn a_named_pipe_is_read_as_the_single_threaded_path_reads_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = temp_dir();
    let fifo = dir.join("pipe.json");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let stop = Arc::new(AtomicBool::new(false));
    // Every open of the pipe for reading gets the whole log file, then its end.
    let writer = {
        let (fifo, stop) = (fifo.clone(), stop.clone());
        let data = log_file(0, 20);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) {
                    let _ = f.write_all(&data);
                }
            }
        })
    };
    let r = same(&fifo);
    stop.store(true, Ordering::SeqCst);
    // Release the writer if it waits for a reader (without waiting for a writer).
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    drop(
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo),
    );
    writer.join().unwrap();
    assert!(r.stderr.contains("pipe.json:1: cannot read: "), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

/// A raw newline in a string: the stream reader places it at the start of the next line
/// (column 0), where serde_json's slice reader also places it in a string it reads; in a string
/// it skips, the slice reader placed it before the newline. Both paths give the same place.
#[test]
fn a_raw_newline_in_a_string_is_placed_as_the_stream_places_it() {
    let dir = temp_dir();
    let text = String::from_utf8(log_file(0, 5)).unwrap();
    let id = "\"eventID\":\"00000000-0000-4000-8000-000000000001\"";
    assert!(text.contains(id));
    // In a field no rule reads (skipped by serde_json), and in one they read.
    write(
        &dir,
        "a-skipped.json",
        text.replacen(id, "\"eventID\":\"a\nb\"", 1).as_bytes(),
    );
    write(
        &dir,
        "b-read.json",
        text.replacen("\"eventName\":\"", "\"eventName\":\"\n", 1)
            .as_bytes(),
    );
    // On a later line of a pretty document.
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
    let id = "\"eventID\": \"00000000-0000-4000-8000-000000000001\"";
    assert!(pretty.contains(id));
    write(
        &dir,
        "c-pretty.json",
        pretty.replacen(id, "\"eventID\": \"a\nb\"", 1).as_bytes(),
    );
    let r = same(&dir);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("3 unreadable"), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

/// What the stream refuses in a record's fields, a finding's fields included (a number out of
/// f64's range, a byte that is not UTF-8, a lone surrogate), is reported as the stream reports
/// it, in a record skipped by the prefilter as in one a rule matches; not counted as read.
#[test]
fn fields_the_stream_refuses_are_reported_as_it_reports_them() {
    let dir = temp_dir();
    let text = String::from_utf8(log_file(0, 5)).unwrap();
    let time = text.find("\"eventTime\":\"").unwrap();
    let time = &text[time..time + text[time..].find("Z\"").unwrap() + 2];
    // Record 0 is a DisableKey one (a finding); record 1 matches no rule.
    let id = |i: usize| format!("\"eventID\":\"00000000-0000-4000-8000-{i:012}\"");
    let swap = |name: &str, from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        write(&dir, name, text.replacen(from, to, 1).as_bytes());
    };
    swap("a-skipped.json", &id(1), "\"eventID\":1e400");
    swap("b-time-found.json", time, "\"eventTime\":1e400");
    swap(
        "c-long-integer.json",
        &id(1),
        &format!("\"eventID\":{}", "9".repeat(400)),
    );
    let mut not_utf8 = text.clone().into_bytes();
    not_utf8.insert(text.find(&id(0)).unwrap() + 11, 0xc3);
    write(&dir, "d-not-utf8.json", &not_utf8);
    swap("e-surrogate.json", &id(0), "\"eventID\":\"\\ud800\"");
    write(
        &dir,
        "f-array.json",
        format!(
            "[{}]",
            serde_json::to_string(&record(1))
                .unwrap()
                .replacen(&id(1), "\"eventID\":-2e308", 1)
        )
        .as_bytes(),
    );
    // An exponent past i32 (placed at its digit), and a number before a newline.
    swap("g-exponent.json", &id(1), "\"eventID\":1e99999999999");
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
    let spaced = id(1).replace(':', ": ");
    assert!(pretty.contains(&spaced));
    write(
        &dir,
        "h-pretty.json",
        pretty.replacen(&spaced, "\"eventID\": 1e400\n", 1).as_bytes(),
    );
    let r = same(&dir);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("8 unreadable"), "{}", r.stderr);
    assert!(r.stderr.contains("number out of range"), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

/// Every edit of a small document, junk after records: the two paths' error path.
#[path = "malformed.rs"]
mod malformed;
