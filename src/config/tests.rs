use std::time::Duration;

use super::*;
use crate::telemetry::LogFormat;

struct File(tempfile::NamedTempFile);

fn file(text: &str) -> File {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    File(f)
}

impl File {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn keys(e: &ConfigError) -> Vec<&str> {
    e.problems.iter().map(|p| p.key.as_str()).collect()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_shipped_example_is_valid() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/trailguard.toml"));
    let c = load_from(path, vec![]).unwrap();
    assert_eq!(c.cloudtrail.poll_interval, Duration::from_secs(15));
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:9464");
    assert!(!c.dry_run);
}

#[test]
fn minimal_file_gets_defaults() {
    let f = file("[aws]\nregions = [\"eu-west-1\"]\n");
    let c = load_from(f.path(), vec![]).unwrap();
    assert_eq!(c.cloudtrail.schedule.max_delivery_delay, Duration::from_secs(900));
    assert_eq!(c.cloudtrail.schedule.lookback_interval, Duration::from_secs(300));
    assert_eq!(c.cloudtrail.max_requests_per_second, 1.0);
    assert_eq!(c.cloudtrail.start_from, None);
    assert_eq!(c.notify.aggregation_window, Duration::from_secs(300));
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(!c.kms.enable_after_cancel);
    assert_eq!(c.notify.sns_topic_arn, None);
    assert_eq!(c.partition(), "aws");
}

#[test]
fn every_problem_is_listed_with_its_key() {
    let f = file(
        "dry_run = false\n[aws]\nregions = [\"eu-west-1\", \"Mars\"]\n[cloudtrail]\npoll_interval = \"1s\"\nmax_requests_per_second = 5.0\n\
         [notify]\nsns_topic_arn = \"topic\"\n[log]\nformat = \"xml\"\n[server]\nlisten = \"nowhere\"\n",
    );
    let e = load_from(f.path(), vec![]).unwrap_err();
    assert_eq!(
        keys(&e),
        [
            "aws.regions",
            "cloudtrail.poll_interval",
            "cloudtrail.max_requests_per_second",
            "notify.sns_topic_arn",
            "server.listen",
            "log.format"
        ]
    );
    let text = e.to_string();
    assert!(
        text.contains("cloudtrail.poll_interval: must be between 5s and 2m 30s, got 1s (LookupEvents allows 2 requests/s"),
        "{text}"
    );
}

#[test]
fn an_unknown_key_does_not_hide_the_bad_values_next_to_it() {
    let f =
        file("[aws]\nregions = [\"eu-west-1\"]\n[cloudtrail]\npoll_interval = \"banana\"\nno_such_key = 1\n");
    let e = load_from(f.path(), vec![]).unwrap_err();
    assert_eq!(
        keys(&e),
        ["cloudtrail.no_such_key", "cloudtrail.poll_interval"],
        "{e}"
    );
    assert!(e.problems[1].message.contains("\"banana\""), "{e}");
}

#[test]
fn a_value_of_the_wrong_type_does_not_hide_the_others() {
    let f = file(
        "[aws]\nregions = \"eu-west-1\"\n[cloudtrail]\npoll_interval = 15\nmax_requests_per_second = \"fast\"\n[kms]\nenable_after_cancel = \"yes\"\n",
    );
    let e = load_from(f.path(), vec![]).unwrap_err();
    assert_eq!(
        keys(&e),
        [
            "cloudtrail.poll_interval",
            "cloudtrail.max_requests_per_second",
            "kms.enable_after_cancel"
        ],
        "a single region as a string is accepted: {e}"
    );
}

#[test]
fn unknown_keys_are_rejected_with_a_hint() {
    let f =
        file("[aws]\nregions = [\"eu-west-1\"]\n[cloudtrail]\npoll_intervall = \"15s\"\n[extra]\nx = 1\n");
    let e = load_from(f.path(), vec![]).unwrap_err();
    assert_eq!(keys(&e), ["cloudtrail.poll_intervall", "extra"]);
    assert!(
        e.problems[0]
            .message
            .contains("did you mean `cloudtrail.poll_interval`"),
        "{e}"
    );
}

#[test]
fn environment_overrides_the_file() {
    let f = file(
        "[aws]\nregions = [\"eu-west-1\"]\n[notify]\nsns_topic_arn = \"arn:aws:sns:eu-west-1:111122223333:a\"\n",
    );
    let c = load_from(
        f.path(),
        env(&[
            ("TRAILGUARD__CLOUDTRAIL__POLL_INTERVAL", "30s"),
            ("TRAILGUARD__AWS__REGIONS", "us-east-1,eu-central-1"),
            ("TRAILGUARD__DRY_RUN", "true"),
            // An account id with a leading zero must stay a string.
            (
                "TRAILGUARD__NOTIFY__SNS_TOPIC_ARN",
                "arn:aws:sns:us-east-1:012345678901:alerts",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(c.cloudtrail.poll_interval, Duration::from_secs(30));
    assert_eq!(c.regions, ["us-east-1", "eu-central-1"]);
    assert!(c.dry_run);
    assert_eq!(
        c.notify.sns_topic_arn.as_deref(),
        Some("arn:aws:sns:us-east-1:012345678901:alerts")
    );
    let e = load_from(
        f.path(),
        env(&[("TRAILGUARD__CLOUDTRAIL__POLL_INTERVALL", "30s")]),
    )
    .unwrap_err();
    assert_eq!(keys(&e), ["cloudtrail.poll_intervall"]);
}

#[test]
fn the_whole_document_can_come_from_the_environment() {
    let c = load_from(
        Path::new("/nonexistent/trailguard.toml"),
        env(&[
            (DOCUMENT_ENV, "[aws]\nregions = [\"us-gov-west-1\"]\n[[rules]]\nid = \"x\"\npattern = '{$.eventName = X}'\n"),
            ("TRAILGUARD__DRY_RUN", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(c.partition(), "aws-us-gov");
    assert!(c.dry_run);
    assert!(c.rules.rules.iter().any(|r| r.id == "x"));
}

#[test]
fn iam_section_is_validated_and_off_by_default() {
    let f = file("[aws]\nregions = [\"eu-west-1\"]\n");
    assert!(load_from(f.path(), vec![]).unwrap().iam.is_none());
    let f = file(
        "[aws]\nregions = [\"eu-west-1\"]\n[iam]\nenabled = true\naction = \"deactivate\"\nmax_key_age = \"120d\"\n\
         [[iam.exemptions]]\nuser = \"ci-*\"\nexpires = \"2027-01-31\"\nreason = \"migration\"\n",
    );
    let iam = load_from(f.path(), vec![]).unwrap().iam.unwrap();
    assert_eq!(iam.policy.action, crate::iam::KeyAction::Deactivate);
    assert_eq!(iam.policy.max_key_age, Duration::from_secs(120 * 86400));
    assert_eq!(iam.policy.max_actions_per_sweep, 10);
    assert_eq!(
        iam.policy.exemptions[0].expires.unwrap().to_string(),
        "2027-01-31"
    );
    let f = file(
        "[aws]\nregions = [\"eu-west-1\"]\n[iam]\nenabled = true\naction = \"purge\"\n[[iam.exemptions]]\nreason = \"x\"\n",
    );
    let e = load_from(f.path(), vec![]).unwrap_err();
    assert_eq!(keys(&e), ["iam.action", "iam.exemptions[0]"]);
}

#[test]
fn start_from_takes_a_time_or_a_duration() {
    let f = file("[aws]\nregions = [\"eu-west-1\"]\n[cloudtrail]\nstart_from = \"2h\"\n");
    let c = load_from(f.path(), vec![]).unwrap();
    assert_eq!(
        c.cloudtrail.start_from,
        Some(crate::sources::config::StartFrom::Ago(Duration::from_secs(7200)))
    );
    let f = file("[aws]\nregions = [\"eu-west-1\"]\n[cloudtrail]\nstart_from = \"2026-11-25T08:00:00Z\"\n");
    assert!(matches!(
        load_from(f.path(), vec![]).unwrap().cloudtrail.start_from,
        Some(crate::sources::config::StartFrom::At(_))
    ));
    let f = file("[aws]\nregions = [\"eu-west-1\"]\n[cloudtrail]\nstart_from = \"yesterday\"\n");
    assert_eq!(
        keys(&load_from(f.path(), vec![]).unwrap_err()),
        ["cloudtrail.start_from"]
    );
}

#[test]
fn regions_of_two_partitions_are_refused() {
    let f = file("[aws]\nregions = [\"eu-west-1\", \"cn-north-1\"]\n");
    let e = load_from(f.path(), vec![]).unwrap_err();
    assert!(e.to_string().contains("mixes partitions"), "{e}");
}

#[test]
fn missing_file_is_a_problem() {
    let e = load_from(Path::new("/nonexistent/trailguard.toml"), vec![]).unwrap_err();
    assert_eq!(keys(&e), ["config"]);
}

#[test]
fn an_exemption_that_can_never_match_a_key_is_rejected() {
    // An alias ARN never names a key in CloudTrail or in KMS's alias list: this exemption
    // would never apply, and the approved deletion (crypto-shredding) would be fought.
    let f = file(
        "[aws]\nregions = [\"eu-west-1\"]\n[kms]\nprotected_keys = [\"alias/prod-*\"]\n\
         [[kms.exemptions]]\nkey = \"arn:aws:kms:eu-west-1:111122223333:alias/prod-legacy\"\n\
         expires = \"2026-12-31\"\nreason = \"decommissioning, CHG-42\"\n\
         [[kms.exemptions]]\nkey = \"tag:retired=true\"\nexpires = \"2026-12-31\"\nreason = \"CHG-43\"\n",
    );
    match load_from(f.path(), vec![]) {
        Ok(_) => panic!("kms.exemptions[0].key and [1].key can never match a key, and were accepted"),
        Err(e) => assert_eq!(keys(&e), ["kms.exemptions[0].key", "kms.exemptions[1].key"]),
    }
}
