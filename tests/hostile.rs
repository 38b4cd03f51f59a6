//! Hostile input never crashes trailguard: property-based tests (proptest, on stable Rust) over
//! the record reader (the poller's evaluation and the rules' compiled extraction), the pattern
//! compiler, and the configuration loader. A malformed record is counted and skipped; a
//! malformed pattern or configuration is an error with its key, never a panic.
//!
//! `cargo test --test hostile` runs a few thousand cases of each; the long run is
//! `PROPTEST_CASES=1000000 cargo test --release --test hostile` (see RELIABILITY.md).

use proptest::prelude::*;
use serde_json::{Value, json};

const KEYS: &[&str] = &[
    "eventID",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "errorCode",
    "errorMessage",
    "userIdentity",
    "arn",
    "accountId",
    "type",
    "sessionContext",
    "sessionIssuer",
    "requestParameters",
    "responseElements",
    "keyId",
    "aliasName",
    "tagKeys",
    "tags",
    "tagKey",
    "tagValue",
    "resources",
    "ARN",
    "recipientAccountId",
    "userAgent",
    "sourceIPAddress",
    "readOnly",
    "accessKeyId",
    "userName",
    "status",
    "Records",
    "Events",
    "CloudTrailEvent",
];

/// JSON values shaped like CloudTrail records: the keys trailguard reads, any values.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("kms.amazonaws.com")),
        Just(json!(
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab is pending deletion."
        )),
        Just(json!("2026-11-25T12:00:00Z")),
        Just(json!("arn:aws:sts::111122223333:assumed-role/r/s")),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(KEYS)
                        .prop_map(str::to_owned)
                        .boxed()
                        .prop_union(".{0,8}".boxed()),
                    inner
                ),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Text that is JSON-ish: a value, cut or with bytes flipped.
fn record_text() -> impl Strategy<Value = String> {
    (value(), any::<prop::sample::Index>(), any::<u8>(), 0..3u8).prop_map(|(v, at, byte, how)| {
        let mut s = v.to_string();
        match how {
            0 => s,
            1 => {
                let mut cut = at.index(s.len() + 1);
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s
            }
            _ => {
                let mut b = s.into_bytes();
                if !b.is_empty() {
                    let i = at.index(b.len());
                    b[i] = byte;
                }
                String::from_utf8_lossy(&b).into_owned()
            }
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1000), ..ProptestConfig::default() })]

    #[test]
    fn any_record_is_evaluated_or_counted_malformed_never_a_panic(texts in prop::collection::vec(record_text(), 1..8)) {
        let rules = trailguard::rules::RuleSet::builtin();
        let seen = trailguard::cursor::Seen::default();
        let batch = trailguard::pipeline::evaluate("p", &rules, &seen, &texts, chrono::DateTime::UNIX_EPOCH, true);
        prop_assert_eq!(batch.new_ids.len() as u64 + batch.duplicates + batch.malformed, texts.len() as u64);
        for t in &texts {
            let _ = trailguard::event::Record::parse(t);
            let _ = rules.findings(t);
            let _ = trailguard::rules::evaluate_json(t);
        }
    }

    #[test]
    fn any_pattern_compiles_or_is_refused_never_a_panic(
        src in prop_oneof![
            ".{0,80}",
            "[{}()$.a-zA-Z0-9_ =!<>&|*\"%\\[\\]-]{0,80}",
            prop::sample::select(vec![
                r#"{ $.eventSource = kms* && $.errorMessage = "* is pending deletion."}"#,
                r#"{($.eventSource = kms.amazonaws.com) && (($.eventName=DisableKey)||($.eventName=ScheduleKeyDeletion))}"#,
                r#"{ $.userIdentity.type = "Root" && $.errorCode NOT EXISTS && $.a[0].b >= 3.5 && $.c = %ab+c% }"#,
            ]).prop_flat_map(|p| (Just(p.to_owned()), any::<prop::sample::Index>(), ".{0,3}")).prop_map(|(p, at, ins)| {
                let mut i = at.index(p.len() + 1);
                while !p.is_char_boundary(i) { i -= 1; }
                format!("{}{}{}", &p[..i], ins, &p[i..])
            }),
        ],
        record in record_text(),
    ) {
        if let Ok(expr) = trailguard::rules::pattern::parse(&src) {
            let set = trailguard::rules::compiled::CompiledSet::new(&[&expr]);
            if let Ok(slots) = set.extract(record.as_bytes()) {
                let _ = set.matches(0, &slots);
            }
        }
    }

    #[test]
    fn any_configuration_is_valid_or_lists_its_problems_never_a_panic(
        doc in prop_oneof![
            ".{0,200}",
            prop::collection::vec(
                (
                    prop::sample::select(vec!["", "aws", "cloudtrail", "kms", "notify", "iam", "server", "log", "state", "x"]),
                    prop::sample::select(vec!["regions", "poll_interval", "start_from", "protected_keys", "max_requests_per_second",
                        "exemptions", "action", "listen", "format", "sns_topic_arn", "message_format", "dir", "enabled", "nope"]),
                    prop::sample::select(vec!["\"15s\"", "5", "-1", "1e999", "true", "[\"us-east-1\"]", "[\"Mars\", 3]", "\"\"",
                        "\"arn:aws:kms:eu-west-1:1:alias/x\"", "\"tag:\"", "{ a = 1 }", "[[1]]", "\"2026-13-45T99:00:00Z\"", "\"0.0.0.0:99999\""]),
                ),
                0..10,
            )
            .prop_map(|lines| {
                let mut out = String::from("[aws]\nregions = [\"eu-west-1\"]\n");
                for (section, key, value) in lines {
                    if !section.is_empty() {
                        out.push_str(&format!("[{section}]\n"));
                    }
                    out.push_str(&format!("{key} = {value}\n"));
                }
                out
            }),
        ],
        env in prop::collection::vec(
            (prop::sample::select(vec!["TRAILGUARD__CLOUDTRAIL__POLL_INTERVAL", "TRAILGUARD__AWS__REGIONS", "TRAILGUARD__DRY_RUN",
                "TRAILGUARD__KMS", "TRAILGUARD__X__Y__Z", "TRAILGUARD__"]), ".{0,20}"),
            0..3,
        ),
    ) {
        let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Err(e) = trailguard::config::load_text(&doc, env) {
            prop_assert!(!e.problems.is_empty());
            for p in &e.problems {
                prop_assert!(!p.key.is_empty() && !p.message.is_empty(), "{:?}", p);
            }
        }
    }
}
