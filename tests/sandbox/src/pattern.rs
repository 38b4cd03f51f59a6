//! EventBridge event patterns, as the EventBridge User Guide defines them: a pattern is an
//! object whose leaves are arrays of matchers; an event matches when every field named matches
//! one of its matchers (an array field: any element). Matchers: exact values (numbers compared
//! as numbers), `prefix`, `suffix`, `equals-ignore-case`, `wildcard`, `exists`, `anything-but`
//! (a value, a list, or `prefix`/`suffix`/`wildcard`/`equals-ignore-case`), `numeric`; nested
//! objects (inside arrays of objects too), and `$or` at any level. `cidr` is not supported (never matches).

use serde_json::{Map, Value};

/// Whether `event` matches `pattern`.
pub fn matches(pattern: &Value, event: &Value) -> bool {
    pattern.as_object().is_some_and(|p| match_object(p, event))
}

fn match_object(pattern: &Map<String, Value>, event: &Value) -> bool {
    pattern.iter().all(|(key, p)| {
        if key == "$or" {
            return p.as_array().is_some_and(|alts| {
                alts.iter()
                    .any(|alt| alt.as_object().is_some_and(|a| match_object(a, event)))
            });
        }
        let field = event.get(key);
        match p {
            Value::Object(sub) => match field {
                Some(v @ Value::Object(_)) => match_object(sub, v),
                // An array of objects: any element may match.
                Some(Value::Array(items)) => items.iter().any(|i| i.is_object() && match_object(sub, i)),
                // An absent object: only `exists: false` leaves can match.
                _ => match_object(sub, &Value::Null),
            },
            Value::Array(matchers) => match_field(matchers, field),
            _ => false,
        }
    })
}

fn match_field(matchers: &[Value], field: Option<&Value>) -> bool {
    match field {
        None => matchers
            .iter()
            .any(|m| m.get("exists") == Some(&Value::Bool(false))),
        Some(Value::Array(items)) => items.iter().any(|v| matchers.iter().any(|m| match_one(m, v))),
        Some(v) => matchers.iter().any(|m| match_one(m, v)),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

fn match_one(m: &Value, v: &Value) -> bool {
    let Some(obj) = m.as_object() else {
        return same(m, v);
    };
    let Some((op, arg)) = obj.iter().next() else {
        return false;
    };
    let s = v.as_str();
    match op.as_str() {
        "exists" => arg.as_bool() == Some(true) && !v.is_object(),
        "prefix" => affix(arg, s, |s, p| s.starts_with(p)),
        "suffix" => affix(arg, s, |s, p| s.ends_with(p)),
        "equals-ignore-case" => {
            matches!((arg.as_str(), s), (Some(a), Some(s)) if a.to_lowercase() == s.to_lowercase())
        }
        "wildcard" => matches!((arg.as_str(), s), (Some(p), Some(s)) if wildcard(p, s)),
        "anything-but" => (s.is_some() || v.is_number()) && !anything_but_hits(arg, v),
        "numeric" => v.as_f64().is_some_and(|x| numeric(arg, x)),
        _ => false,
    }
}

/// `prefix`/`suffix`, plain or `{"equals-ignore-case": ...}`.
fn affix(arg: &Value, s: Option<&str>, f: fn(&str, &str) -> bool) -> bool {
    let Some(s) = s else { return false };
    match arg {
        Value::String(p) => f(s, p),
        Value::Object(o) => o
            .get("equals-ignore-case")
            .and_then(Value::as_str)
            .is_some_and(|p| f(&s.to_lowercase(), &p.to_lowercase())),
        _ => false,
    }
}

fn anything_but_hits(arg: &Value, v: &Value) -> bool {
    match arg {
        Value::Array(items) => items.iter().any(|i| same(i, v)),
        Value::Object(_) => match_one(arg, v),
        scalar => same(scalar, v),
    }
}

fn numeric(arg: &Value, x: f64) -> bool {
    let Some(parts) = arg.as_array() else { return false };
    parts.chunks(2).all(|c| {
        let (Some(op), Some(n)) = (c[0].as_str(), c.get(1).and_then(Value::as_f64)) else {
            return false;
        };
        match op {
            "=" => x == n,
            "<" => x < n,
            "<=" => x <= n,
            ">" => x > n,
            ">=" => x >= n,
            _ => false,
        }
    })
}

/// `*` matches any run of characters (`\*` a literal star); everything else matches itself.
pub fn wildcard(pattern: &str, s: &str) -> bool {
    let mut tokens: Vec<Option<char>> = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => tokens.push(Some(chars.next().unwrap_or('\\'))),
            '*' => tokens.push(None),
            c => tokens.push(Some(c)),
        }
    }
    let text: Vec<char> = s.chars().collect();
    // reachable[j]: the tokens so far can match text[..j].
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for t in &tokens {
        let mut next = vec![false; text.len() + 1];
        match t {
            None => {
                let mut any = false;
                for j in 0..=text.len() {
                    any |= reachable[j];
                    next[j] = any;
                }
            }
            Some(c) => {
                for j in 0..text.len() {
                    next[j + 1] = reachable[j] && text[j] == *c;
                }
            }
        }
        reachable = next;
    }
    reachable[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"source": "aws.kms", "detail-type": "AWS API Call via CloudTrail", "account": "111122223333",
               "detail": {"eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "readOnly": true,
                          "errorMessage": "arn:aws:kms:us-east-1:111122223333:key/k is pending deletion.",
                          "requestParameters": {"pendingWindowInDays": 7},
                          "resources": [{"ARN": "arn:aws:kms:us-east-1:111122223333:key/k"}]}})
    }

    #[test]
    fn operators() {
        let e = event();
        let yes = [
            json!({"source": ["aws.kms"]}),
            json!({"detail": {"eventName": ["DisableKey", "Decrypt"]}}),
            json!({"detail": {"errorMessage": [{"suffix": "is pending deletion."}]}}),
            json!({"detail": {"errorMessage": [{"wildcard": "*is pending deletion."}]}}),
            json!({"detail": {"eventSource": [{"prefix": "kms."}]}}),
            json!({"detail": {"eventSource": [{"prefix": {"equals-ignore-case": "KMS."}}]}}),
            json!({"detail": {"errorCode": [{"exists": false}]}}),
            json!({"detail": {"eventName": [{"exists": true}]}}),
            json!({"detail": {"eventName": [{"anything-but": ["DisableKey", "ScheduleKeyDeletion"]}]}}),
            json!({"detail": {"eventName": [{"anything-but": {"prefix": "Get"}}]}}),
            json!({"detail": {"readOnly": [true]}}),
            json!({"detail": {"requestParameters": {"pendingWindowInDays": [{"numeric": [">=", 7, "<", 8]}]}}}),
            json!({"detail": {"resources": {"ARN": [{"suffix": ":key/k"}]}}}),
            json!({"account": ["111122223333"], "detail": {"$or": [{"eventName": ["Nope"]}, {"errorMessage": [{"suffix": "deletion."}]}]}}),
            json!({"detail": {"addendum": {"reason": [{"exists": false}]}}}),
        ];
        for p in yes {
            assert!(matches(&p, &e), "{p}");
        }
        let no = [
            json!({"source": ["aws.iam"]}),
            json!({"detail": {"eventName": ["decrypt"]}}),
            json!({"detail": {"errorCode": [{"exists": true}]}}),
            json!({"detail": {"eventName": [{"anything-but": "Decrypt"}]}}),
            json!({"detail": {"readOnly": [false]}}),
            json!({"detail": {"requestParameters": {"pendingWindowInDays": [{"numeric": [">", 7]}]}}}),
            json!({"detail": {"$or": [{"eventName": ["Nope"]}, {"errorCode": [{"exists": true}]}]}}),
            json!({"detail": {"missing": {"deeper": ["x"]}}}),
        ];
        for p in no {
            assert!(!matches(&p, &e), "{p}");
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*is pending deletion.", "arn:x is pending deletion."));
        assert!(wildcard("a*b*c", "axxbyyc"));
        assert!(!wildcard("a*b*c", "axxbyy"));
        assert!(wildcard("a\\*b", "a*b"));
        assert!(!wildcard("a\\*b", "axb"));
        assert!(wildcard("*", ""));
    }
}
