use super::*;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn samples() -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/aws-sample-events.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn sample(i: usize) -> Record {
    Record::parse(&sample_json(i)).unwrap()
}

fn sample_json(i: usize) -> String {
    samples()[i]["record"].to_string()
}

fn evaluate(json: &str) -> Vec<Finding> {
    evaluate_json(json)
}

fn ids(json: &str) -> Vec<String> {
    evaluate(json).into_iter().map(|f| f.rule_id).collect()
}

/// Every record of the copied real datasets (JSON arrays, NDJSON, log files; gzip skipped).
fn dataset_records() -> Vec<Value> {
    fn walk(dir: &std::path::Path, out: &mut Vec<Value>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
                continue;
            }
            let name = p.to_string_lossy();
            if !(name.ends_with(".json") || name.ends_with(".log") || name.ends_with(".ndjson")) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let values: Vec<Value> = match serde_json::from_str::<Value>(&text) {
                Ok(v) => vec![v],
                Err(_) => text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect(),
            };
            for v in values {
                match v {
                    Value::Array(a) => out.extend(a),
                    Value::Object(mut o) if o.contains_key("Records") => {
                        out.extend(o.remove("Records").unwrap().as_array().unwrap().clone())
                    }
                    v => out.push(v),
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new(&format!("{FIXTURES}/cloudtrail")), &mut out);
    out
}

#[test]
fn pending_deletion_use_names_the_key_from_the_error_message() {
    // Constructed samples 18-20: Decrypt (KMSInvalidStateException), Encrypt (DisabledException),
    // S3's GenerateDataKey on behalf of a caller.
    for i in [18, 19, 20] {
        let r = sample(i);
        let f = evaluate(&sample_json(i));
        assert_eq!(f.len(), 1, "sample {i}");
        assert_eq!(f[0].rule_id, PENDING_DELETION_USE);
        let expected = r.error_message.as_deref().unwrap().split(' ').next().unwrap();
        assert_eq!(f[0].key_arn.as_deref(), Some(expected));
        assert_eq!(f[0].severity, Severity::Critical);
        assert!(f[0].actions.contains(&Action::CancelKeyDeletion));
    }
    let f = &evaluate(&sample_json(18))[0];
    assert_eq!(
        f.principal_arn.as_deref(),
        Some("arn:aws:iam::111122223333:user/Alice")
    );
    assert_eq!(f.source_ip.as_deref(), Some("192.0.2.0"));
}

#[test]
fn other_invalid_state_errors_are_not_pending_deletion() {
    // Sample 11: KMSInvalidStateException from an external key store, not pending deletion.
    assert!(ids(&sample_json(11)).is_empty());
    // Sample 10: a failed Decrypt with IncorrectKeyException.
    assert!(ids(&sample_json(10)).is_empty());
}

#[test]
fn pending_replica_deletion_message_matches() {
    let mut v: Value = serde_json::from_str(&sample_json(18)).unwrap();
    v["errorMessage"] = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234 is pending replica deletion.".into();
    assert_eq!(ids(&v.to_string()), [PENDING_DELETION_USE]);
    assert_eq!(
        key_arn(&Record::parse(&v.to_string()).unwrap()).as_deref(),
        Some("arn:aws:kms:us-west-2:111122223333:key/mrk-1234")
    );
}

#[test]
fn error_code_does_not_matter_but_source_does() {
    let mut v: Value = serde_json::from_str(&sample_json(18)).unwrap();
    v["errorCode"] = "SomethingNew".into();
    assert_eq!(ids(&v.to_string()), [PENDING_DELETION_USE]);
    v["eventSource"] = "s3.amazonaws.com".into();
    assert!(ids(&v.to_string()).is_empty());
}

#[test]
fn schedule_key_deletion_takes_the_key_from_the_response() {
    let r = sample(0);
    let f = evaluate(&sample_json(0));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule_id, KEY_DELETION_SCHEDULED);
    assert_eq!(f[0].key_arn.as_deref(), r.response_str("keyId"));
    assert!(f[0].deletion_date.is_some());
    // Multi-Region primary with replicas: PendingReplicaDeletion, no deletion date.
    let f = evaluate(&sample_json(1));
    assert_eq!(f[0].rule_id, KEY_DELETION_SCHEDULED);
    assert_eq!(f[0].key_state.as_deref(), Some("PendingReplicaDeletion"));
    assert_eq!(f[0].deletion_date, None);
}

#[test]
fn disable_key_from_a_2014_record_without_resource_types() {
    let f = evaluate(&sample_json(3));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule_id, KEY_DISABLED);
    assert!(
        f[0].key_arn.as_deref().unwrap().starts_with("arn:aws:kms:"),
        "{:?}",
        f[0].key_arn
    );
}

#[test]
fn bare_key_id_is_completed_with_region_and_account() {
    let r = Record::parse(
        r#"{"eventID":"e1","eventSource":"kms.amazonaws.com","eventName":"DisableKey","awsRegion":"eu-west-1",
            "recipientAccountId":"012345678901","requestParameters":{"keyId":"1234abcd-12ab-34cd-56ef-1234567890ab"}}"#,
    )
    .unwrap();
    assert_eq!(
        key_arn(&r).as_deref(),
        Some("arn:aws:kms:eu-west-1:012345678901:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        "account ids keep their leading zero"
    );
    let aliased = r#"{"eventID":"e2","eventSource":"kms.amazonaws.com","eventName":"Encrypt","awsRegion":"eu-west-1",
            "errorMessage":"arn:aws:kms:eu-west-1:012345678901:key/k1 is pending deletion.",
            "requestParameters":{"keyId":"alias/payments"}}"#;
    let f = &evaluate(aliased)[0];
    assert_eq!(f.key_alias.as_deref(), Some("alias/payments"));
    assert_eq!(
        f.key_arn.as_deref(),
        Some("arn:aws:kms:eu-west-1:012345678901:key/k1")
    );
}

#[test]
fn real_datasets_give_the_documented_counts() {
    let records = dataset_records();
    assert!(records.len() > 500, "{}", records.len());
    let mut counts = std::collections::BTreeMap::new();
    let mut unreadable = 0;
    for v in &records {
        match Record::parse(&v.to_string()) {
            Ok(_) => {
                for f in evaluate(&v.to_string()) {
                    if f.rule_id.starts_with("kms") {
                        assert!(f.key_arn.is_some(), "finding without a key: {v}");
                    }
                    *counts.entry(f.rule_id).or_insert(0) += 1;
                }
            }
            Err(_) => unreadable += 1,
        }
    }
    // PROVENANCE.md: 2 DisableKey, 4 ScheduleKeyDeletion, no pending-deletion failure.
    assert_eq!(counts.get(KEY_DISABLED), Some(&2));
    assert_eq!(counts.get(KEY_DELETION_SCHEDULED), Some(&4));
    assert_eq!(counts.get(PENDING_DELETION_USE), None);
    assert_eq!(unreadable, 0, "every record is readable, even without an eventID");
}

#[test]
fn odd_records_are_still_evaluated() {
    let text =
        r#"{"eventID":"x","eventSource":"kms.amazonaws.com","eventName":"DisableKey","extra":{"a":1}}"#;
    assert_eq!(ids(text), [KEY_DISABLED]);
    assert_eq!(key_arn(&Record::parse(text).unwrap()), None);
    assert!(Record::parse("{not json").is_err());
    assert!(
        Record::parse("{}").is_ok(),
        "an empty object is a record with every field missing"
    );
    assert!(Record::parse("[1]").is_err());
}

#[test]
fn iam_reactivation_and_root_keys() {
    let reactivated = r#"{"eventID":"r1","eventSource":"iam.amazonaws.com","eventName":"UpdateAccessKey","awsRegion":"us-east-1",
            "userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/mallory"},
            "requestParameters":{"userName":"alice","accessKeyId":"AKIAOLD","status":"Active"}}"#;
    let f = evaluate(reactivated);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule_id, ACCESS_KEY_REACTIVATED);
    assert_eq!(f[0].access_key_id.as_deref(), Some("AKIAOLD"));
    assert_eq!(f[0].user_name.as_deref(), Some("alice"));
    assert_eq!(f[0].key_arn, None);
    assert!(evaluate(&reactivated_text().replace("\"Active\"", "\"Inactive\"")).is_empty());

    let root = r#"{"eventID":"r2","eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","awsRegion":"us-east-1",
            "userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root"},"requestParameters":null,
            "responseElements":{"accessKey":{"accessKeyId":"AKIAROOT","status":"Active"}}}"#;
    let f = evaluate(root);
    assert_eq!(f[0].rule_id, ROOT_ACCESS_KEY_CREATED);
    assert_eq!(f[0].severity, Severity::Critical);
    assert_eq!(f[0].access_key_id.as_deref(), Some("AKIAROOT"));
    // The real CreateAccessKey records in the datasets are made by IAM users for users.
    for v in dataset_records() {
        if v["eventName"] == "CreateAccessKey" {
            assert!(
                evaluate(&v.to_string())
                    .iter()
                    .all(|f| f.rule_id != ROOT_ACCESS_KEY_CREATED)
            );
        }
    }
}

fn reactivated_text() -> String {
    r#"{"eventID":"r1","eventSource":"iam.amazonaws.com","eventName":"UpdateAccessKey","requestParameters":{"userName":"alice","accessKeyId":"AKIAOLD","status":"Active"}}"#.to_owned()
}

#[test]
fn builtin_rules_pass_their_own_tests() {
    let set = RuleSet::builtin();
    let results = set.run_tests();
    assert!(results.len() >= 12, "{}", results.len());
    for (rule, case, failure) in &results {
        assert!(failure.is_none(), "{rule} / {case}: {failure:?}");
    }
    for rule in &set.rules {
        let matching = rule.tests.iter().filter(|t| t.must_match).count();
        assert!(
            matching >= 1 && matching < rule.tests.len(),
            "{} needs cases that match and cases that do not",
            rule.id
        );
    }
}

#[test]
fn rules_can_be_added_overridden_and_disabled() {
    let user: RuleFile = toml::from_str(
        r#"
        [[rules]]
        id = "kms_key_disabled"
        enabled = false

        [[rules]]
        id = "kms_key_deletion_scheduled"
        severity = "critical"

        [[rules]]
        id = "cis_kms_changes"
        description = "CIS 4.7, pasted as it is"
        severity = "medium"
        pattern = '{($.eventSource = kms.amazonaws.com) && (($.eventName=DisableKey)||($.eventName=ScheduleKeyDeletion))}'
        actions = ["notify"]
        [[rules.tests]]
        must_match = true
        event = { eventSource = "kms.amazonaws.com", eventName = "DisableKey" }
        "#,
    )
    .unwrap();
    let set = RuleSet::load(vec![RuleSource {
        name: "test".into(),
        key_prefix: "rules".into(),
        base_dir: None,
        rules: user.rules,
    }])
    .unwrap();
    let ids: Vec<&str> = set.rules.iter().map(|r| r.id.as_str()).collect();
    assert!(!ids.contains(&KEY_DISABLED));
    assert_eq!(set.disabled, [(KEY_DISABLED.to_owned(), "test".to_owned())]);
    let scheduled = set.rules.iter().find(|r| r.id == KEY_DELETION_SCHEDULED).unwrap();
    assert_eq!(scheduled.severity, Severity::Critical);
    assert!(
        scheduled.pattern.contains("ScheduleKeyDeletion"),
        "fields left out are kept"
    );
    assert_eq!(scheduled.source, "test");
    assert!(set.run_tests().iter().all(|(_, _, f)| f.is_none()));
    let found = set
        .findings(r#"{"eventSource":"kms.amazonaws.com","eventName":"DisableKey"}"#)
        .unwrap();
    assert_eq!(
        found.iter().map(|f| f.rule_id.as_str()).collect::<Vec<_>>(),
        ["cis_kms_changes"]
    );
}

#[test]
fn a_malformed_pattern_is_rejected_with_rule_id_and_column() {
    let bad: RuleFile =
        toml::from_str("[[rules]]\nid = \"broken\"\npattern = '{ $.eventName = }'\n").unwrap();
    let e = RuleSet::load(vec![RuleSource {
        name: "f".into(),
        key_prefix: "rules".into(),
        base_dir: None,
        rules: bad.rules,
    }])
    .unwrap_err();
    assert_eq!(e[0].key, "rules[0].pattern");
    assert_eq!(
        e[0].message,
        "rule broken: column 17: expected a value after the operator, found `}`"
    );
}

/// AWS's and CIS's patterns give, on the real records, the matches CloudWatch Logs would give
/// (computed independently here on the parsed JSON).
#[test]
fn pasted_patterns_match_the_real_records_as_cloudwatch_would() {
    let patterns = [
        (
            "aws",
            r#"{ $.eventSource = kms* && $.errorMessage = "* is pending deletion."}"#,
        ),
        (
            "cis_a",
            r#"{ ($.eventName = "DisableKey") || ($.eventName = "ScheduleKeyDeletion") }"#,
        ),
        (
            "cis_b",
            r#"{($.eventSource = kms.amazonaws.com) && (($.eventName=DisableKey)||($.eventName=ScheduleKeyDeletion))}"#,
        ),
    ];
    let exprs: Vec<_> = patterns.iter().map(|(_, p)| pattern::parse(p).unwrap()).collect();
    let set = compiled::CompiledSet::new(&exprs.iter().collect::<Vec<_>>());
    let mut records: Vec<Value> = dataset_records();
    records.extend(samples().into_iter().map(|s| s["record"].clone()));
    let mut counts = [0usize; 3];
    for v in &records {
        let text = v.to_string();
        let slots = set.extract(text.as_bytes()).unwrap();
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let expected = [
            s("eventSource").is_some_and(|x| x.starts_with("kms"))
                && s("errorMessage").is_some_and(|m| m.ends_with(" is pending deletion.")),
            matches!(s("eventName"), Some("DisableKey" | "ScheduleKeyDeletion")),
            s("eventSource") == Some("kms.amazonaws.com")
                && matches!(s("eventName"), Some("DisableKey" | "ScheduleKeyDeletion")),
        ];
        for i in 0..3 {
            assert_eq!(set.matches(i, &slots), expected[i], "{} on {text}", patterns[i].0);
            counts[i] += usize::from(expected[i]);
        }
    }
    // The constructed pending-deletion samples (18-20), and the real DisableKey/Schedule records.
    assert_eq!(counts[0], 3);
    assert!(counts[1] >= 6 && counts[2] == counts[1], "{counts:?}");
}
