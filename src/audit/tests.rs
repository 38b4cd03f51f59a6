use chrono::TimeZone;
use serde_json::json;

use super::*;

const ACCOUNT: &str = "111122223333";
const ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// AWS's default key policy (the one `CreateKey` gives without a policy).
fn default_policy() -> serde_json::Value {
    json!({"Version": "2012-10-17", "Id": "key-default-1", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"}]})
}

fn key(policy: serde_json::Value) -> KeyInfo {
    KeyInfo {
        arn: ARN.into(),
        account: ACCOUNT.into(),
        region: "eu-west-1".into(),
        state: "Enabled".into(),
        deletion_date: None,
        key_spec: "SYMMETRIC_DEFAULT".into(),
        origin: "AWS_KMS".into(),
        policy: Ok(policy.to_string()),
        rotation: Some(Ok(true)),
        aliases: Ok(vec!["alias/payments-prod".into()]),
        usage: None,
    }
}

fn with_statement(s: serde_json::Value) -> KeyInfo {
    let mut p = default_policy();
    p["Statement"].as_array_mut().unwrap().push(s);
    key(p)
}

fn ids(k: &KeyInfo) -> Vec<(&'static str, Severity, serde_json::Value)> {
    findings(k, &AuditPolicy::default())
        .into_iter()
        .map(|f| (f.id, f.severity, f.statement))
        .collect()
}

#[test]
fn the_default_key_policy_with_rotation_on_and_an_alias_has_no_findings() {
    assert_eq!(ids(&key(default_policy())), []);
    // The console's default, with key administrators and users, is clean too.
    let console = json!({"Version": "2012-10-17", "Statement": [
        default_policy()["Statement"][0].clone(),
        {"Sid": "Allow access for Key Administrators", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::111122223333:role/KeyAdmin"},
         "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                    "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
                    "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"], "Resource": "*"},
        {"Sid": "Allow use of the key", "Effect": "Allow",
         "Principal": {"AWS": ["arn:aws:iam::111122223333:role/billing-app"]},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*"},
        {"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::111122223333:role/billing-app"},
         "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*",
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}]});
    assert_eq!(ids(&key(console)), []);
}

#[test]
fn a_policy_without_the_account_root_can_make_the_key_unmanageable() {
    let k = key(json!({"Statement": [{"Sid": "Admins", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:role/KeyAdmin"}, "Action": "kms:*", "Resource": "*"}]}));
    assert_eq!(
        ids(&k),
        [(ids::NO_ROOT_STATEMENT, Severity::High, serde_json::Value::Null)]
    );
    let f = &findings(&k, &AuditPolicy::default())[0];
    assert!(
        f.message.contains("arn:aws:iam::111122223333:root"),
        "{}",
        f.message
    );
    // The account id alone names the root; a root allowed only to read does not keep it manageable.
    let bare = key(
        json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "kms:*", "Resource": "*"}}),
    );
    assert_eq!(ids(&bare), []);
    let read_only = key(json!({"Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": ["kms:Describe*", "kms:Get*"], "Resource": "*"}]}));
    assert_eq!(ids(&read_only)[0].0, ids::NO_ROOT_STATEMENT);
    // Another account's root is not this account's.
    let other = key(json!({"Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "kms:*", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}}]}));
    let found = ids(&other);
    assert!(found.iter().any(|f| f.0 == ids::NO_ROOT_STATEMENT), "{found:?}");
}

#[test]
fn a_public_principal_without_conditions_is_critical_with_its_statement() {
    let k = with_statement(
        json!({"Sid": "Public", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}),
    );
    assert_eq!(
        ids(&k),
        [(ids::PUBLIC_PRINCIPAL, Severity::Critical, json!("Public"))]
    );
    // {"AWS": "*"}, and a statement without a Sid is named by its index.
    let k = with_statement(
        json!({"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": "kms:Encrypt", "Resource": "*"}),
    );
    assert_eq!(ids(&k), [(ids::PUBLIC_PRINCIPAL, Severity::Critical, json!(1))]);
    // With conditions (AWS-managed keys' kms:CallerAccount), it is not a finding.
    let k = with_statement(
        json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
        "Condition": {"StringEquals": {"kms:CallerAccount": ACCOUNT, "kms:ViaService": "s3.eu-west-1.amazonaws.com"}}}),
    );
    assert_eq!(ids(&k), []);
    // NotPrincipal with Allow allows everyone else.
    let k = with_statement(
        json!({"Sid": "AllBut", "Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:role/x"},
        "Action": "kms:Decrypt", "Resource": "*"}),
    );
    assert_eq!(
        ids(&k)[0],
        (ids::PUBLIC_PRINCIPAL, Severity::Critical, json!("AllBut"))
    );
    // A Deny is never a grant.
    let k = with_statement(json!({"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*"}));
    assert_eq!(ids(&k), []);
}

#[test]
fn another_account_without_conditions_is_high() {
    let k = with_statement(json!({"Sid": "Partner", "Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam::444455556666:root", "arn:aws:iam::111122223333:role/app"]},
        "Action": ["kms:Decrypt"], "Resource": "*"}));
    assert_eq!(ids(&k), [(ids::CROSS_ACCOUNT, Severity::High, json!("Partner"))]);
    let msg = &findings(&k, &AuditPolicy::default())[0].message;
    assert!(msg.contains("444455556666") && !msg.contains("role/app"), "{msg}");
    let k = with_statement(
        json!({"Sid": "Partner", "Effect": "Allow", "Principal": {"AWS": "444455556666"},
        "Action": "kms:Decrypt", "Resource": "*", "Condition": {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}}),
    );
    assert_eq!(ids(&k), []);
}

#[test]
fn destructive_actions_for_others_than_admins_are_found_however_they_are_written() {
    for action in [
        json!("kms:*"),
        json!("*"),
        json!(["kms:Disable*"]),
        json!("KMS:schedulekeydeletion"),
        json!("kms:Put*"),
    ] {
        let k = with_statement(json!({"Sid": "Ops", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:role/deployer"}, "Action": action, "Resource": "*"}));
        assert_eq!(
            ids(&k),
            [(ids::DESTRUCTIVE_ACTIONS, Severity::Medium, json!("Ops"))],
            "{action}"
        );
    }
    // NotAction grants everything it does not name.
    let k = with_statement(json!({"Sid": "Ops", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:user/bob"}, "NotAction": ["kms:ScheduleKeyDeletion"], "Resource": "*"}));
    let f = findings(&k, &AuditPolicy::default());
    assert_eq!(f.len(), 1);
    assert!(
        f[0].message.contains("kms:DisableKey, kms:PutKeyPolicy") && !f[0].message.contains("Schedule"),
        "{}",
        f[0].message
    );
    // Admins (the default globs, or configured ones) may.
    let k = with_statement(
        json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/platform/KeyAdmins"},
        "Action": "kms:*", "Resource": "*"}),
    );
    assert_eq!(ids(&k), []);
    let custom = AuditPolicy {
        admins: vec!["arn:aws:iam::111122223333:role/deployer".into()],
        ..AuditPolicy::default()
    };
    let k = with_statement(
        json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/deployer"},
        "Action": "kms:DisableKey", "Resource": "*"}),
    );
    assert!(findings(&k, &custom).is_empty());
    // Public and destructive: both, the destructive one critical too.
    let k = with_statement(
        json!({"Sid": "Oops", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}),
    );
    assert_eq!(
        ids(&k),
        [
            (ids::PUBLIC_PRINCIPAL, Severity::Critical, json!("Oops")),
            (ids::DESTRUCTIVE_ACTIONS, Severity::Critical, json!("Oops"))
        ]
    );
}

#[test]
fn state_rotation_and_alias_findings() {
    let mut k = key(default_policy());
    k.rotation = Some(Ok(false));
    k.aliases = Ok(vec![]);
    k.state = "Disabled".into();
    assert_eq!(
        ids(&k),
        [
            (ids::ROTATION_DISABLED, Severity::Medium, serde_json::Value::Null),
            (ids::DISABLED, Severity::Low, serde_json::Value::Null),
            (ids::NO_ALIAS, Severity::Low, serde_json::Value::Null)
        ]
    );
    assert!(!KeyInfo::rotates("RSA_2048", "AWS_KMS") && !KeyInfo::rotates("SYMMETRIC_DEFAULT", "EXTERNAL"));

    let mut k = key(default_policy());
    k.state = "PendingDeletion".into();
    k.rotation = None;
    k.deletion_date = Some(Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap());
    let from = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
    k.usage = Some(Usage::unknown(from, to, "LookupEvents failed: timeout"));
    let f = findings(&k, &AuditPolicy::default());
    assert_eq!(
        (f[0].id, f[0].severity),
        (ids::PENDING_DELETION, Severity::Critical),
        "unknown use is not unused"
    );
    assert!(
        f[0].message.contains(
            "alias/payments-prod is scheduled for deletion on 2026-12-02T12:00:00+00:00; usage unknown"
        ),
        "{}",
        f[0].message
    );
    k.usage = Some(crate::usage::Tally::new(ARN, from, to, Default::default()).finish(None));
    assert_eq!(findings(&k, &AuditPolicy::default())[0].severity, Severity::High);
}

#[test]
fn what_cannot_be_read_is_a_finding_never_silence() {
    let mut k = key(default_policy());
    k.policy = Err("AccessDeniedException: not allowed".into());
    k.rotation = Some(Err("ThrottlingException: slow down".into()));
    let f = ids(&k);
    assert_eq!(f.len(), 2);
    assert!(f.iter().all(|x| x.0 == ids::UNREADABLE && x.1 == Severity::High));
    let garbage = KeyInfo {
        policy: Ok("{not json".into()),
        ..key(default_policy())
    };
    assert_eq!(
        ids(&garbage),
        [(ids::UNREADABLE, Severity::High, serde_json::Value::Null)]
    );
}

#[test]
fn a_finding_is_one_json_line_with_the_documented_fields() {
    let k = with_statement(
        json!({"Sid": "Public", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}),
    );
    let line = serde_json::to_value(&findings(&k, &AuditPolicy::default())[0]).unwrap();
    let mut keys: Vec<&String> = line.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "key_arn", "message", "severity", "statement"]);
    assert_eq!(line["severity"], "critical");
    assert_eq!(line["statement"], "Public");
}

#[test]
fn another_accounts_role_named_admin_is_not_this_keys_administrator() {
    // The default audit.admin_principals (arn:aws:iam::*:role/*Admin*) must not make a role of
    // an attacker's account an administrator of this key: a conditioned statement (so no
    // cross-account finding) granting it kms:ScheduleKeyDeletion must still be reported.
    let k = with_statement(json!({"Sid": "Partner", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::999988887777:role/Admin"},
        "Action": ["kms:ScheduleKeyDeletion", "kms:PutKeyPolicy"], "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "true"}}}));
    assert_eq!(
        ids(&k),
        [(ids::DESTRUCTIVE_ACTIONS, Severity::Medium, json!("Partner"))]
    );
}
