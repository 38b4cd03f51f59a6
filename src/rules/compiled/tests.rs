use super::*;

fn check(pattern: &str, json: &str) -> bool {
    let e = pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    let set = CompiledSet::new(&[&e]);
    let slots = set.extract(json.as_bytes()).unwrap();
    set.matches(0, &slots)
}

const REC: &str = r#"{"eventSource":"kms.amazonaws.com","eventName":"Decrypt","readOnly":true,"n":42,"nul":null,
    "errorMessage":"arn:aws:kms:us-east-1:1:key/k is pending deletion.","resources":[{"ARN":"arn:1","type":"AWS::KMS::Key"},{"ARN":"arn:2"}],
    "with space":{"a b":"x"},"esc":"a\"b","requestParameters":null}"#;

#[test]
fn aws_and_cis_patterns_pasted_unchanged() {
    assert!(check(
        r#"{ $.eventSource = kms* && $.errorMessage = "* is pending deletion."}"#,
        REC
    ));
    assert!(!check(
        r#"{ ($.eventName = "DisableKey") || ($.eventName = "ScheduleKeyDeletion") }"#,
        REC
    ));
    assert!(check(
        r#"{ ($.eventName = "DisableKey") || ($.eventName = "Decrypt") }"#,
        REC
    ));
    assert!(!check(
        r#"{($.eventSource = kms.amazonaws.com) && (($.eventName=DisableKey)||($.eventName=ScheduleKeyDeletion))}"#,
        REC
    ));
    assert!(check(
        r#"{($.eventSource = kms.amazonaws.com) && (($.eventName=DisableKey)||($.eventName=Decrypt))}"#,
        REC
    ));
}

#[test]
fn operators_and_types() {
    assert!(check("{ $.n = 42 }", REC));
    assert!(check("{ $.n >= 42 && $.n < 43 && $.n > 41.5 && $.n <= 42 }", REC));
    assert!(!check("{ $.n > 42 }", REC));
    assert!(check("{ $.n != 41 }", REC));
    assert!(check("{ $.eventName != Encrypt }", REC));
    assert!(
        !check("{ $.absent != Encrypt }", REC),
        "a comparison on an absent field is false"
    );
    assert!(check("{ $.nul IS NULL }", REC));
    assert!(!check("{ $.eventName IS NULL }", REC));
    assert!(check("{ $.absent NOT EXISTS }", REC));
    assert!(!check("{ $.nul NOT EXISTS }", REC));
    assert!(
        check("{ $.requestParameters.keyId NOT EXISTS }", REC),
        "below a null parent"
    );
    assert!(check("{ $.readOnly IS TRUE }", REC));
    assert!(!check("{ $.readOnly IS FALSE }", REC));
    assert!(check("{ $.eventName = *crypt }", REC));
    assert!(check(r#"{ $.errorMessage = "arn:*:key/*pending*" }"#, REC));
    assert!(!check(r#"{ $.errorMessage = "*pending" }"#, REC));
    assert!(check("{ $.eventName = %^De.*t$% }", REC));
    assert!(check("{ $.eventName != %^En% }", REC));
    assert!(check(r#"{ $.esc = "a\"b" }"#, REC));
}

#[test]
fn selectors_with_indexes_and_quoted_keys() {
    assert!(check(r#"{ $.resources[0].ARN = "arn:1" }"#, REC));
    assert!(check(
        r#"{ $.resources[1].ARN = "arn:2" && $.resources[1].type NOT EXISTS }"#,
        REC
    ));
    assert!(check(r#"{ $.resources[5].ARN NOT EXISTS }"#, REC));
    assert!(check(r#"{ $["with space"]["a b"] = x }"#, REC));
    assert!(check(r#"{ $."with space"."a b" = x }"#, REC));
}

#[test]
fn malformed_patterns_say_where_and_what() {
    let e = |p: &str| pattern::parse(p).unwrap_err().to_string();
    assert_eq!(
        e("$.a = 1"),
        "column 1: expected `{` to open a JSON filter pattern, found `$.a = 1`"
    );
    assert_eq!(
        e("{ $.a = }"),
        "column 9: expected a value after the operator, found `}`"
    );
    assert_eq!(
        e("{ $.a = 1 && }"),
        "column 14: expected a selector starting with `$` (like `$.eventName`), found `}`"
    );
    assert_eq!(
        e("{ $.a ~ 1 }"),
        "column 7: expected an operator (=, !=, <, <=, >, >=, IS, NOT EXISTS) after $.a, found `~ 1 }`"
    );
    assert_eq!(e("{ ($.a = 1 }"), "column 12: expected `)`, found `}`");
    assert_eq!(
        e("{ $.a = \"x }"),
        "column 13: unterminated string: expected a closing `\"`"
    );
    assert_eq!(
        e("{ $.a > abc }"),
        "column 9: expected a number: <, <=, > and >= compare numbers"
    );
    assert_eq!(
        e("{ $.a IS MAYBE }"),
        "column 10: expected NULL, TRUE or FALSE after IS, found `MAYBE }`"
    );
    assert!(e("{ $.a = %(% }").starts_with("column 9: invalid regular expression"));
}

#[test]
fn one_pass_serves_every_rule() {
    let a = pattern::parse("{ $.eventName = Decrypt }").unwrap();
    let b = pattern::parse("{ $.eventName = Encrypt || $.n = 42 }").unwrap();
    let set = CompiledSet::new(&[&a, &b]);
    assert_eq!(set.selectors().len(), 2, "shared selectors are read once");
    let slots = set.extract(REC.as_bytes()).unwrap();
    assert!(set.matches(0, &slots) && set.matches(1, &slots));
    assert!(set.extract(b"[1,2]").is_err());
    assert!(set.extract(b"{\"a\":").is_err());
}
