use super::*;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn samples() -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/aws-sample-events.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn sample(i: usize) -> Record {
    Record::parse(&samples()[i]["record"].to_string()).unwrap()
}

fn ids(r: &Record) -> Vec<String> {
    evaluate(r).into_iter().map(|f| f.rule_id).collect()
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
        let f = evaluate(&r);
        assert_eq!(f.len(), 1, "sample {i}");
        assert_eq!(f[0].rule_id, PENDING_DELETION_USE);
        let expected = r.error_message.as_deref().unwrap().split(' ').next().unwrap();
        assert_eq!(f[0].key_arn.as_deref(), Some(expected));
        assert_eq!(f[0].severity, Severity::Critical);
        assert!(f[0].actions.contains(&Action::CancelKeyDeletion));
    }
    let s = sample(18);
    let f = &evaluate(&s)[0];
    assert_eq!(
        f.principal_arn.as_deref(),
        Some("arn:aws:iam::111122223333:user/Alice")
    );
    assert_eq!(f.source_ip.as_deref(), Some("192.0.2.0"));
}

#[test]
fn other_invalid_state_errors_are_not_pending_deletion() {
    // Sample 11: KMSInvalidStateException from an external key store, not pending deletion.
    assert!(ids(&sample(11)).is_empty());
    // Sample 10: a failed Decrypt with IncorrectKeyException.
    assert!(ids(&sample(10)).is_empty());
}

#[test]
fn pending_replica_deletion_message_matches() {
    let mut r = sample(18);
    r.error_message =
        Some("arn:aws:kms:us-west-2:111122223333:key/mrk-1234 is pending replica deletion.".into());
    assert_eq!(ids(&r), [PENDING_DELETION_USE]);
    assert_eq!(
        key_arn(&r).as_deref(),
        Some("arn:aws:kms:us-west-2:111122223333:key/mrk-1234")
    );
}

#[test]
fn error_code_does_not_matter_but_source_does() {
    let mut r = sample(18);
    r.error_code = Some("SomethingNew".into());
    assert_eq!(ids(&r), [PENDING_DELETION_USE]);
    r.event_source = Some("s3.amazonaws.com".into());
    assert!(ids(&r).is_empty());
}

#[test]
fn schedule_key_deletion_takes_the_key_from_the_response() {
    let r = sample(0);
    let f = evaluate(&r);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule_id, KEY_DELETION_SCHEDULED);
    assert_eq!(f[0].key_arn.as_deref(), r.response_str("keyId"));
    assert!(f[0].deletion_date.is_some());
    // Multi-Region primary with replicas: PendingReplicaDeletion, no deletion date.
    let r = sample(1);
    let f = evaluate(&r);
    assert_eq!(f[0].rule_id, KEY_DELETION_SCHEDULED);
    assert_eq!(f[0].key_state.as_deref(), Some("PendingReplicaDeletion"));
    assert_eq!(f[0].deletion_date, None);
}

#[test]
fn disable_key_from_a_2014_record_without_resource_types() {
    let r = sample(3);
    let f = evaluate(&r);
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
    let aliased = Record::parse(
        r#"{"eventID":"e2","eventSource":"kms.amazonaws.com","eventName":"Encrypt","awsRegion":"eu-west-1",
            "errorMessage":"arn:aws:kms:eu-west-1:012345678901:key/k1 is pending deletion.",
            "requestParameters":{"keyId":"alias/payments"}}"#,
    )
    .unwrap();
    let f = &evaluate(&aliased)[0];
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
            Ok(r) => {
                for f in evaluate(&r) {
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
    let r = Record::parse(
        r#"{"eventID":"x","eventSource":"kms.amazonaws.com","eventName":"DisableKey","extra":{"a":1}}"#,
    )
    .unwrap();
    assert_eq!(ids(&r), [KEY_DISABLED]);
    assert_eq!(key_arn(&r), None);
    assert!(Record::parse("{not json").is_err());
    assert!(
        Record::parse("{}").is_ok(),
        "an empty object is a record with every field missing"
    );
    assert!(Record::parse("[1]").is_err());
}

#[test]
fn iam_reactivation_and_root_keys() {
    let reactivated = Record::parse(
        r#"{"eventID":"r1","eventSource":"iam.amazonaws.com","eventName":"UpdateAccessKey","awsRegion":"us-east-1",
            "userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/mallory"},
            "requestParameters":{"userName":"alice","accessKeyId":"AKIAOLD","status":"Active"}}"#,
    )
    .unwrap();
    let f = evaluate(&reactivated);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule_id, ACCESS_KEY_REACTIVATED);
    assert_eq!(f[0].access_key_id.as_deref(), Some("AKIAOLD"));
    assert_eq!(f[0].user_name.as_deref(), Some("alice"));
    assert_eq!(f[0].key_arn, None);
    let deactivated = Record::parse(&reactivated_text().replace("\"Active\"", "\"Inactive\"")).unwrap();
    assert!(evaluate(&deactivated).is_empty());

    let root = Record::parse(
        r#"{"eventID":"r2","eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","awsRegion":"us-east-1",
            "userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root"},"requestParameters":null,
            "responseElements":{"accessKey":{"accessKeyId":"AKIAROOT","status":"Active"}}}"#,
    )
    .unwrap();
    let f = evaluate(&root);
    assert_eq!(f[0].rule_id, ROOT_ACCESS_KEY_CREATED);
    assert_eq!(f[0].severity, Severity::Critical);
    assert_eq!(f[0].access_key_id.as_deref(), Some("AKIAROOT"));
    // The real CreateAccessKey records in the datasets are made by IAM users for users.
    for v in dataset_records() {
        if v["eventName"] == "CreateAccessKey" {
            let r = Record::parse(&v.to_string()).unwrap();
            assert!(evaluate(&r).iter().all(|f| f.rule_id != ROOT_ACCESS_KEY_CREATED));
        }
    }
}

fn reactivated_text() -> String {
    r#"{"eventID":"r1","eventSource":"iam.amazonaws.com","eventName":"UpdateAccessKey","requestParameters":{"userName":"alice","accessKeyId":"AKIAOLD","status":"Active"}}"#.to_owned()
}
