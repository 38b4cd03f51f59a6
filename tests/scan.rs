//! `trailguard scan` and `trailguard rules` from the command line, on real records.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Many gzip log files, huge documents, broken inputs: the parallel path against the
/// single-threaded one.
#[path = "scan/parallel.rs"]
mod parallel;

struct Run {
    code: i32,
    findings: Vec<Value>,
    stdout: String,
    stderr: String,
}

fn trailguard(args: &[&str], stdin: Option<&[u8]>) -> Run {
    trailguard_threads(args, stdin, None)
}

/// With `TRAILGUARD_SCAN_THREADS` set (or left to its default).
fn trailguard_threads(args: &[&str], stdin: Option<&[u8]>, threads: Option<usize>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trailguard"));
    if let Some(n) = threads {
        command.env("TRAILGUARD_SCAN_THREADS", n.to_string());
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or_default().to_vec();
    let mut pipe = child.stdin.take().unwrap();
    std::thread::spawn(move || pipe.write_all(&input));
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        findings: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("trailguard-scan-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Real records: the two KMS ones of elastic/integrations (DisableKey, ScheduleKeyDeletion),
/// a constructed pending-deletion failure, and some non-KMS records.
fn records() -> Vec<Value> {
    let line = |f: &str| -> Value {
        let text = std::fs::read_to_string(format!(
            "{FIXTURES}/cloudtrail/elastic-integrations-aws-cloudtrail/{f}"
        ))
        .unwrap();
        serde_json::from_str(text.lines().next().unwrap()).unwrap()
    };
    let samples: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/aws-sample-events.json")).unwrap())
            .unwrap();
    vec![
        line("test-disable-key-json.log"),
        line("test-add-permission-json.log"),
        line("test-schedule-key-deletion-json.log"),
        samples[18]["record"].clone(),
        line("test-get-caller-identity-json.log"),
    ]
}

fn rule_ids(r: &Run) -> Vec<String> {
    let mut ids: Vec<String> = r
        .findings
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

const EXPECTED: [&str; 3] = [
    "kms_key_deletion_scheduled",
    "kms_key_disabled",
    "kms_pending_deletion_use",
];

#[test]
fn every_input_form_gives_the_same_findings() {
    let dir = temp_dir();
    let recs = records();
    let log_file = json!({ "Records": recs }).to_string();
    std::fs::write(
        dir.join("111122223333_CloudTrail_us-east-1_20261123T1200Z_abc.json"),
        &log_file,
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(log_file.as_bytes()).unwrap();
    std::fs::create_dir_all(dir.join("nested/deeper")).unwrap();
    std::fs::write(dir.join("nested/deeper/log.json.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        dir.join("array.json"),
        serde_json::to_string_pretty(&recs).unwrap(),
    )
    .unwrap();
    let ndjson: String = recs.iter().map(|r| r.to_string() + "\n").collect();
    std::fs::write(dir.join("records.ndjson"), &ndjson).unwrap();
    let lookup = json!({ "Events": recs.iter().map(|r| json!({"EventId": r["eventID"], "CloudTrailEvent": r.to_string()})).collect::<Vec<_>>() });
    std::fs::write(
        dir.join("lookup-events.json"),
        serde_json::to_string_pretty(&lookup).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("pretty-record.json"),
        serde_json::to_string_pretty(&recs[0]).unwrap(),
    )
    .unwrap();

    for name in [
        "111122223333_CloudTrail_us-east-1_20261123T1200Z_abc.json",
        "nested/deeper/log.json.gz",
        "array.json",
        "records.ndjson",
        "lookup-events.json",
    ] {
        let r = trailguard(&["scan", dir.join(name).to_str().unwrap()], None);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(rule_ids(&r), EXPECTED, "{name}");
        assert!(r.stderr.contains("5 records"), "{name}: {}", r.stderr);
    }
    let r = trailguard(&["scan", dir.join("pretty-record.json").to_str().unwrap()], None);
    assert_eq!(rule_ids(&r), ["kms_key_disabled"]);

    // Standard input, and a whole directory tree.
    let r = trailguard(&["scan", "-"], Some(ndjson.as_bytes()));
    assert_eq!(rule_ids(&r), EXPECTED);
    let r = trailguard(&["scan", dir.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.findings.len(), 5 * 3 + 1, "{}", r.stderr);
    assert!(r.stderr.contains("scanned 6 inputs, 26 records"), "{}", r.stderr);

    // What a finding says.
    let r = trailguard(&["scan", dir.join("records.ndjson").to_str().unwrap()], None);
    let pending = r
        .findings
        .iter()
        .find(|f| f["rule_id"] == "kms_pending_deletion_use")
        .unwrap();
    assert_eq!(
        pending["key_arn"],
        "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    );
    assert_eq!(pending["principal_arn"], "arn:aws:iam::111122223333:user/Alice");
    assert_eq!(pending["event_name"], "Decrypt");
    assert_eq!(pending["actions"], json!(["cancel_key_deletion", "notify"]));
    let disabled = r
        .findings
        .iter()
        .find(|f| f["rule_id"] == "kms_key_disabled")
        .unwrap();
    assert_eq!(disabled["event_id"], recs[0]["eventID"]);
    assert_eq!(disabled["event_time"], recs[0]["eventTime"]);
    assert!(disabled["key_arn"].as_str().unwrap().starts_with("arn:aws:kms:"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unreadable_input_is_reported_with_file_and_line_after_scanning_the_rest() {
    let dir = temp_dir();
    let recs = records();
    let mut lines: Vec<String> = recs.iter().map(Value::to_string).collect();
    lines.insert(2, "{\"eventName\": \"Broken\", ".into());
    // Odd but valid records are still evaluated: no eventID, a non-ISO time, extra fields.
    lines.push(r#"{"eventSource":"kms.amazonaws.com","eventName":"DisableKey","eventTime":"yesterday","extra":[1,2]}"#.into());
    std::fs::write(dir.join("mixed.ndjson"), lines.join("\n")).unwrap();
    let truncated = json!({ "Records": recs }).to_string();
    std::fs::write(dir.join("truncated.json"), &truncated[..truncated.len() / 2]).unwrap();
    std::fs::write(dir.join("notes.txt"), "not json\n").unwrap();

    let r = trailguard(&["scan", dir.to_str().unwrap()], None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("mixed.ndjson:3:"), "{}", r.stderr);
    assert!(
        r.stderr.contains("notes.txt:1: not CloudTrail JSON"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("truncated.json:1:"), "{}", r.stderr);
    assert!(r.stderr.contains("3 unreadable"), "{}", r.stderr);
    let mixed: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f["file"].as_str().unwrap().ends_with("mixed.ndjson"))
        .collect();
    assert_eq!(
        mixed.len(),
        4,
        "every readable line was scanned, the odd one included"
    );
    let odd = mixed.iter().find(|f| f["event_time"] == "yesterday").unwrap();
    assert_eq!(odd["event_id"], Value::Null);
    assert_eq!(odd["key_arn"], Value::Null);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_rules_only_config_drives_scan_and_rules_test() {
    let dir = temp_dir();
    let config = dir.join("rules.toml");
    std::fs::write(
        &config,
        r#"
[[rules]]
id = "kms_key_disabled"
enabled = false

[[rules]]
id = "cis_4_7_kms_changes"
description = "CIS benchmark: disabling or scheduled deletion of customer managed keys"
severity = "medium"
pattern = '{($.eventSource = kms.amazonaws.com) && (($.eventName=DisableKey)||($.eventName=ScheduleKeyDeletion))}'
actions = ["notify"]

[[rules.tests]]
name = "real DisableKey"
must_match = true
event_file = "disable.json"
"#,
    )
    .unwrap();
    std::fs::write(dir.join("disable.json"), records()[0].to_string()).unwrap();
    let ndjson: String = records().iter().map(|r| r.to_string() + "\n").collect();
    let r = trailguard(
        &["scan", "--config", config.to_str().unwrap(), "-"],
        Some(ndjson.as_bytes()),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        rule_ids(&r),
        [
            "cis_4_7_kms_changes",
            "cis_4_7_kms_changes",
            "kms_key_deletion_scheduled",
            "kms_pending_deletion_use"
        ]
    );

    let t = Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .args(["rules", "test", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(t.status.success(), "{text}");
    assert!(
        text.contains("PASS cis_4_7_kms_changes: real DisableKey"),
        "{text}"
    );
    let list = Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .args(["rules", "list", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("kms_key_disabled\tdisabled"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("cis_4_7_kms_changes\tmedium\tnotify\tconfig\t1 test(s)")),
        "{list}"
    );

    // A failing case says which and why, and exits non-zero.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("must_match = true", "must_match = false"),
    )
    .unwrap();
    let t = Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .args(["rules", "test", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&t.stdout);
    assert_eq!(t.status.code(), Some(1));
    assert!(
        text.contains("FAIL cis_4_7_kms_changes: real DisableKey: expected no match, but"),
        "{text}"
    );

    // A malformed pattern: exit 64 with the rule id and the column.
    std::fs::write(
        &config,
        "[[rules]]\nid = \"x\"\npattern = '{ $.eventName = DisableKey && }'\n",
    )
    .unwrap();
    let r = trailguard(&["scan", "--config", config.to_str().unwrap(), "-"], Some(b""));
    assert_eq!(r.code, 64);
    assert!(
        r.stderr
            .contains("rules[0].pattern: rule x: column 31: expected a selector"),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn builtin_rules_pass_their_tests_from_the_cli() {
    let t = Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .args(["rules", "test"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(t.status.success(), "{text}");
    assert!(text.trim_end().ends_with("17 passed, 0 failed"), "{text}");
}

#[test]
fn scan_reports_what_the_protection_policy_would_do() {
    let dir = temp_dir();
    let config = dir.join("policy.toml");
    // The real DisableKey record's key, protected by id; its caller is not allowed.
    std::fs::write(
        &config,
        "[kms]\nprotected_keys = [\"65479477-67d5-4b84-b71c-d540f7a8f31f\"]\non_disable = \"enable_key\"\n\
         allowed_principals = [\"arn:aws:iam::*:user/key-admin\"]\n",
    )
    .unwrap();
    let ndjson: String = records().iter().map(|r| r.to_string() + "\n").collect();
    let r = trailguard(
        &["scan", "--config", config.to_str().unwrap(), "-"],
        Some(ndjson.as_bytes()),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let disabled = r
        .findings
        .iter()
        .find(|f| f["rule_id"] == "kms_key_disabled")
        .unwrap();
    assert_eq!(disabled["actions"], json!(["enable_key", "notify"]));
    assert_eq!(
        disabled["policy"],
        "kms.protected_keys[0] (65479477-67d5-4b84-b71c-d540f7a8f31f) protects the key and the caller is not allowed; kms.on_disable = \"enable_key\""
    );
    let scheduled = r
        .findings
        .iter()
        .find(|f| f["rule_id"] == "kms_key_deletion_scheduled")
        .unwrap();
    assert_eq!(
        scheduled["policy"],
        "the key is not protected by kms.protected_keys"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rules_come_from_a_rules_directory_too() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("rules.d")).unwrap();
    std::fs::write(dir.join("trailguard.toml"), "rules_dir = \"rules.d\"\n").unwrap();
    std::fs::write(
        dir.join("rules.d/10-iam.toml"),
        "[[rules]]\nid = \"iam_user_created\"\nseverity = \"low\"\npattern = '{ $.eventSource = iam.amazonaws.com && $.eventName = CreateUser }'\n\
         [[rules.tests]]\nmust_match = true\nevent = { eventSource = \"iam.amazonaws.com\", eventName = \"CreateUser\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rules.d/20-broken.toml"),
        "[[rules]]\nid = \"broken\"\npattern = '{ $.a = '\n",
    )
    .unwrap();
    let config = dir.join("trailguard.toml");
    let r = trailguard(&["rules", "list", "--config", config.to_str().unwrap()], None);
    assert_eq!(r.code, 64, "a broken file in the directory is an invalid config");
    assert!(r.stderr.contains("20-broken.toml: rules[0].pattern: rule broken: column 9: expected a value after the operator, found the end of the pattern"), "{}", r.stderr);
    std::fs::remove_file(dir.join("rules.d/20-broken.toml")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .args(["rules", "list", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("iam_user_created\tlow\tnotify\t") && l.contains("10-iam.toml")),
        "{list}"
    );
    let t = Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .args(["rules", "test", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stdout));
    let _ = std::fs::remove_dir_all(dir);
}
