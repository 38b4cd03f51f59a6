//! [`super::valid`] held to serde_json.

use super::*;
use proptest::prelude::*;

/// serde_json's verdict, its numbers read as f64 (as a field a rule or a finding reads is, in
/// every record of the single-threaded stream): one out of its range is refused.
fn serde_ok(text: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(text).is_ok()
}

/// Every classifier this processor has gives the same verdict.
fn verdicts(text: &[u8]) -> bool {
    let v = valid(text);
    assert_eq!(
        valid_with(text, classify_portable),
        v,
        "portable: {:?}",
        String::from_utf8_lossy(text)
    );
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        valid_with(text, classify_sse2),
        v,
        "SSE2: {:?}",
        String::from_utf8_lossy(text)
    );
    v
}

#[test]
fn valid_texts_are_valid_and_others_are_not() {
    let long = format!(
        "{{\"a\":\"{}\",\"b\":[{}1]}}",
        "x{[,:]}".repeat(40),
        "0,".repeat(100)
    );
    let deep_ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
    let long_integer = "9".repeat(400);
    let small = format!("0.{}1", "0".repeat(400));
    for good in [
        "{}",
        "[]",
        " { } ",
        "\t[\r\n]\n",
        "1",
        "-0",
        "0.5",
        "-12.25e+3",
        "1E-7",
        "true",
        "false",
        "null",
        "\"\"",
        "\"a b:{}[],\"",
        r#"{"a":1,"b":[true,false,null,{"c":"d"}],"e":{}}"#,
        r#"[1,[2,[3,[]]],{"x":[]}]"#,
        &long,
        &deep_ok,
        "1.7976931348623157e308",
        "-1e300",
        "1e-400",
        "0e99999999999",
        &small,
    ] {
        assert!(serde_ok(good.as_bytes()), "serde: {good}");
        assert!(verdicts(good.as_bytes()), "{good}");
    }
    let deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
    for bad in [
        "",
        " ",
        "{",
        "}",
        "[",
        "]",
        "{]",
        "[}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{1:2}",
        "{\"a\":1,}",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\":1 \"b\":2}",
        "\"a\" \"b\"",
        "1 2",
        "{}{}",
        "{},",
        "[]]",
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "--1",
        "0x1",
        "tru",
        "truee",
        "nul",
        "True",
        "1true",
        "\"abc",
        "\"a\"b",
        "a",
        "[\"a\tb\"]",
        "[\"\u{1}\"]",
        "[1]\u{0}",
        "[\"\\n\"]",
        "[\"é\"]",
        "{\"a\":1}\u{7f}",
        &deep,
        "[1]x",
        "{\"a\"::1}",
        "{:1}",
        // Out of f64's range.
        "1e400",
        "[-2e308]",
        "1e99999999999",
        &long_integer,
    ] {
        assert!(!verdicts(bad.as_bytes()), "{bad:?}");
    }
}

#[test]
fn real_cloudtrail_records_are_settled_and_their_prefixes_are_not() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cloudtrail");
    let (mut plain, mut others) = (0, 0);
    for source in std::fs::read_dir(dir).unwrap() {
        let source = source.unwrap().path();
        if !source.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(source).unwrap() {
            let text = std::fs::read(file.unwrap().path()).unwrap();
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text) else {
                continue;
            };
            let records = match &value {
                serde_json::Value::Object(o) if o.contains_key("Records") => {
                    o["Records"].as_array().cloned().unwrap_or_default()
                }
                serde_json::Value::Array(a) => a.clone(),
                v => vec![v.clone()],
            };
            for r in records {
                let compact = serde_json::to_vec(&r).unwrap();
                let pretty = serde_json::to_vec_pretty(&r).unwrap();
                for text in [&compact, &pretty] {
                    if text.is_ascii() && !text.contains(&b'\\') {
                        assert!(verdicts(text), "{}", String::from_utf8_lossy(text));
                        plain += 1;
                    } else {
                        assert!(!verdicts(text));
                        others += 1;
                    }
                }
                // Every prefix of the first records (quadratic: a few are enough).
                if plain < 40 && compact.is_ascii() && !compact.contains(&b'\\') {
                    for end in 0..compact.len() - 1 {
                        assert!(!verdicts(&compact[..end]), "prefix of {end}");
                    }
                }
            }
        }
    }
    assert!(
        plain > 500 && others > 0,
        "{plain} plain records, {others} others"
    );
}

/// A JSON value without escapes or bytes over 0x7f once written, up to `depth` deep.
fn value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let text = "[ -!#-\\[\\]-~]{0,90}"; // printable ASCII but `"` and `\`
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text.prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 96, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[ -!#-\\[\\]-~]{0,20}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bytes a mutation may write: everything the automaton tells apart.
const ALPHABET: &[u8] = b"{}[]:,\" \t\n\r\\0123456789-+.eEtrufalsn\x01\x7f\xc3";

/// Up to a few edits of `text`: a byte of [`ALPHABET`] inserted, a byte removed or replaced.
type Edits = Vec<(prop::sample::Index, usize, u8)>;

fn edits(most: usize) -> impl Strategy<Value = Edits> {
    prop::collection::vec((any::<prop::sample::Index>(), 0..ALPHABET.len(), 0..3u8), 0..most)
}

fn edit(text: &mut Vec<u8>, edits: &Edits) {
    for (at, byte, how) in edits {
        let i = at.index(text.len() + 1);
        match how {
            0 => text.insert(i, ALPHABET[*byte]),
            1 if i < text.len() => {
                text.remove(i);
            }
            _ if i < text.len() => text[i] = ALPHABET[*byte],
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    /// Never valid where serde_json is not; valid wherever serde_json is and the text is
    /// plain (ASCII, no escape, 127 levels at most).
    #[test]
    fn agrees_with_serde_json(
        v in value(6),
        pretty in any::<bool>(),
        edits in edits(4),
    ) {
        let mut text = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap();
        edit(&mut text, &edits);
        let fast = verdicts(&text);
        let slow = serde_ok(&text);
        prop_assert!(!fast || slow, "valid here, not for serde_json: {:?}", String::from_utf8_lossy(&text));
        if slow && text.is_ascii() && !text.contains(&b'\\') {
            prop_assert!(fast, "not settled: {:?}", String::from_utf8_lossy(&text));
        }
    }
}

/// What the splitter cuts from `text`, a whole buffer.
fn split(text: &[u8]) -> Vec<crate::scan::split::Piece> {
    let mut pieces = Vec::new();
    crate::scan::split::Splitter::new().split(text, true, &mut |p| pieces.push(p));
    pieces
}

/// [`log_file`] on `text`, held to the splitter and to serde_json: when it takes the text,
/// its records are the splitter's pieces, each plain one is [`valid`], and the text is valid
/// JSON if every record is. Returns its records, or `None` when it did not take the text.
fn cut_checked(text: &[u8]) -> Option<Vec<Record>> {
    let mut records = vec![Record {
        range: 0..1,
        plain: true,
    }];
    let taken = log_file(text, &mut records);
    // Every classifier this processor has cuts the same.
    let with = |classify: fn(&[u8; 64]) -> Masks| {
        let mut cut = Vec::new();
        let taken = walk::<true>(text, &mut cut, classify);
        (taken, if taken { cut } else { Vec::new() })
    };
    let mine = (taken, if taken { records.clone() } else { Vec::new() });
    assert_eq!(
        with(classify_portable),
        mine,
        "portable: {:?}",
        String::from_utf8_lossy(text)
    );
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        with(classify_sse2),
        mine,
        "SSE2: {:?}",
        String::from_utf8_lossy(text)
    );
    if !taken {
        return None;
    }
    let pieces: Vec<_> = records
        .iter()
        .map(|r| crate::scan::split::Piece::Record(r.range.clone()))
        .collect();
    assert_eq!(split(text), pieces, "{:?}", String::from_utf8_lossy(text));
    for r in &records {
        if r.plain {
            assert!(
                verdicts(&text[r.range.clone()]),
                "{:?}",
                String::from_utf8_lossy(&text[r.range.clone()])
            );
        }
    }
    if records.iter().all(|r| serde_ok(&text[r.range.clone()])) {
        assert!(serde_ok(text), "{:?}", String::from_utf8_lossy(text));
    }
    Some(records)
}

#[test]
fn log_files_are_checked_and_cut_in_one_pass() {
    fn take(t: &str) -> Option<Vec<(&str, bool)>> {
        let records = cut_checked(t.as_bytes())?;
        Some(records.iter().map(|r| (&t[r.range.clone()], r.plain)).collect())
    }
    assert_eq!(take(r#"{"Records":[]}"#), Some(vec![]));
    assert_eq!(take(" {\n \"Records\" : [ \n ] } \n"), Some(vec![]));
    assert_eq!(
        take(r#"{"Records":[{"a":1}, {"b":"x\"y"} ,{"c":"é"},{"d":"\u0041"},[],"s",2]}"#),
        Some(vec![
            (r#"{"a":1}"#, true),
            (r#" {"b":"x\"y"} "#, false),
            (r#"{"c":"é"}"#, false),
            (r#"{"d":"\u0041"}"#, false),
            ("[]", true),
            (r#""s""#, true),
            ("2", true),
        ])
    );
    // A control byte in a string is the record's parser's to report; outside, the text is
    // not taken.
    assert_eq!(
        take("{\"Records\":[{\"a\":\"\t\"},{}]}"),
        Some(vec![("{\"a\":\"\t\"}", false), ("{}", true)])
    );
    // A backslash before a record's closing quote, and one at the end of a 64-byte block.
    let long = format!(
        r#"{{"Records":[{{"{}":"\\"}},{{"a":"{}\\\\"}}]}}"#,
        "k".repeat(40),
        "v".repeat(43)
    );
    assert_eq!(cut_checked(long.as_bytes()).map(|r| r.len()), Some(2));
    let deep = format!(r#"{{"Records":[{}{}]}}"#, "[".repeat(125), "]".repeat(125));
    assert!(take(&deep).is_some());
    for other in [
        "",
        "{}",
        "[]",
        "[{}]",
        r#"{"records":[]}"#,
        r#"{"Records":{}}"#,
        r#"{"Records":[],"x":1}"#,
        r#"{"x":1,"Records":[]}"#,
        r#"{"Records":[]}{"Records":[]}"#,
        r#"{"Records":[]} x"#,
        r#"{"Records":[1,]}"#,
        r#"{"Records":[,1]}"#,
        r#"{"Records":[1 2]}"#,
        r#"{"Records":[{"a":01}]}"#,
        r#"{"Records":[{"a":1}]"#,
        r#"{"Records":[{"a":"b}]}"#,
        "{\"Records\":[\u{1}]}",
        "{\"Records\":[{\"a\":1}\u{c3}]}",
        r#"{"Records":[\"a"]}"#,
        r#"{"Records":[{"a":1e400}]}"#,
        &format!(r#"{{"Records":[{}{}]}}"#, "[".repeat(126), "]".repeat(126)),
    ] {
        assert_eq!(take(other), None, "{other:?}");
    }
}

#[test]
fn real_log_files_are_taken_whole() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cloudtrail");
    let mut records = Vec::new();
    for source in std::fs::read_dir(dir).unwrap() {
        let source = source.unwrap().path();
        if !source.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(source).unwrap() {
            let text = std::fs::read(file.unwrap().path()).unwrap();
            // NDJSON, or documents of records.
            for value in serde_json::Deserializer::from_slice(&text).into_iter::<serde_json::Value>() {
                match value {
                    Ok(serde_json::Value::Object(mut o)) => match o.remove("Records") {
                        Some(serde_json::Value::Array(a)) => records.extend(a),
                        _ => records.push(serde_json::Value::Object(o)),
                    },
                    Ok(serde_json::Value::Array(a)) => records.extend(a),
                    _ => break,
                }
            }
        }
    }
    assert!(records.len() > 500, "{} records", records.len());
    let doc = serde_json::json!({ "Records": records });
    for text in [
        serde_json::to_vec(&doc).unwrap(),
        serde_json::to_vec_pretty(&doc).unwrap(),
    ] {
        let cut = cut_checked(&text).expect("a log file");
        assert_eq!(cut.len(), records.len());
        let mut plain = 0;
        for r in &cut {
            let bytes = &text[r.range.clone()];
            assert_eq!(r.plain, bytes.is_ascii() && !bytes.contains(&b'\\'));
            plain += usize::from(r.plain);
        }
        assert!(plain > 500 && plain < cut.len(), "{plain} of {}", cut.len());
    }
}

/// A record with strings that may need escapes or hold bytes over 0x7f.
fn record() -> impl Strategy<Value = serde_json::Value> {
    let any_text = "[ -~\"\\\\é\u{1}\t]{0,12}";
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i32>().prop_map(serde_json::Value::from),
        any_text.prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any_text, inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    /// Log files, some edited: whatever [`log_file`] takes is cut as the splitter cuts it,
    /// and checked (see `cut_checked`); a valid log file is always taken, its records plain
    /// exactly when they are ASCII without escapes.
    #[test]
    fn log_files_agree_with_the_splitter_and_serde_json(
        records in prop::collection::vec(record(), 0..6),
        pretty in any::<bool>(),
        edits in edits(3),
    ) {
        let doc = serde_json::json!({ "Records": records });
        let mut text = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }.unwrap();
        edit(&mut text, &edits);
        let cut = cut_checked(&text);
        let records_only = split(&text).iter().all(|p| matches!(p, crate::scan::split::Piece::Record(_)));
        if serde_ok(&text) && records_only && records_start(&text).is_some() {
            let cut = cut.ok_or_else(|| TestCaseError::fail(format!("not taken: {:?}", String::from_utf8_lossy(&text))))?;
            for r in &cut {
                let bytes = &text[r.range.clone()];
                prop_assert_eq!(r.plain, bytes.is_ascii() && !bytes.contains(&b'\\'));
            }
        }
    }
}
