//! Which records no rule can match, told from their bytes: most records are then only
//! validated (by [`check`], in about half of serde_json's time), not read field by
//! field.
//!
//! A rule compares string fields with literal texts. A record whose JSON has no backslash
//! (escape) and only ASCII bytes holds each string value byte for byte as written, so a rule
//! that needs `$.eventName = "DisableKey"` cannot match a record in which the bytes
//! `DisableKey` appear nowhere. For each rule the needed texts are found (one of them must
//! appear: the rule's required alternatives); a record in which none of any rule's texts
//! appears matches nothing. A rule with a test that needs no text (`!=`, `NOT EXISTS`, numbers,
//! regular expressions) turns the filter off.

use aho_corasick::packed::Searcher;

use super::check;
use crate::rules::RuleSet;
use crate::rules::pattern::{self, Expr, Literal, Op};

pub(crate) struct Prefilter {
    /// Every needed text of every rule (a SIMD multi-substring search, Teddy); `None` when
    /// some rule needs none.
    texts: Option<Searcher>,
    /// The same, and the keys that make an object a document of records (`"Records"`,
    /// `"Events"`): for a line, which may be either.
    texts_or_wrappers: Option<Searcher>,
}

/// Texts of which one must appear for `e` to match, or `None` when it needs none.
fn needed(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Or(a, b) => {
            let mut v = needed(a)?;
            v.extend(needed(b)?);
            Some(v)
        }
        // Either side's texts will do: the rarer. A service name (`kms.amazonaws.com`) is in
        // every record of its service, so any other text is preferred; then the longer.
        Expr::And(a, b) => match (needed(a), needed(b)) {
            (Some(x), Some(y)) => {
                let score = |v: &Vec<String>| {
                    let service = v.iter().any(|t| t.ends_with(".amazonaws.com"));
                    (!service, v.iter().map(String::len).min().unwrap_or(0))
                };
                Some(if score(&y) > score(&x) { y } else { x })
            }
            (x, y) => x.or(y),
        },
        Expr::Compare {
            op: Op::Eq,
            value:
                Literal::Text {
                    text,
                    wildcard,
                    number: None,
                },
            ..
        } if !matches!(text.as_str(), "true" | "false" | "null") => {
            let longest = if *wildcard {
                text.split('*').max_by_key(|f| f.len()).unwrap_or("")
            } else {
                text.as_str()
            };
            (!longest.is_empty()).then(|| vec![longest.to_owned()])
        }
        _ => None,
    }
}

impl Prefilter {
    pub(crate) fn new(rules: &RuleSet) -> Self {
        let mut all = Vec::new();
        for r in &rules.rules {
            match pattern::parse(&r.pattern).ok().as_ref().and_then(needed) {
                Some(v) => all.extend(v),
                None => {
                    return Prefilter {
                        texts: None,
                        texts_or_wrappers: None,
                    };
                }
            }
        }
        let texts = Searcher::new(&all);
        all.extend(["\"Records\"".to_owned(), "\"Events\"".to_owned()]);
        Prefilter {
            texts,
            texts_or_wrappers: Searcher::new(&all),
        }
    }

    /// Whether `text` is a valid record no rule can match: it then needs nothing more.
    pub(crate) fn skips(&self, text: &[u8]) -> bool {
        Self::none_in(self.texts.as_ref(), text)
    }

    /// Whether `line` is a valid single record no rule can match: it holds no `Records` or
    /// `Events` key either.
    pub(crate) fn skips_line(&self, line: &[u8]) -> bool {
        Self::none_in(self.texts_or_wrappers.as_ref(), line)
    }

    /// Whether records can be skipped at all (every rule needs a text).
    pub(crate) fn active(&self) -> bool {
        self.texts.is_some()
    }

    /// [`Prefilter::skips`] for a record already known to be valid plain ASCII without
    /// escapes ([`check::log_file`]'s plain records): only the object and the texts are told.
    pub(crate) fn skips_checked(&self, text: &[u8]) -> bool {
        debug_assert!(check::valid(text), "{}", String::from_utf8_lossy(text));
        self.texts
            .as_ref()
            .is_some_and(|s| text.trim_ascii_start().first() == Some(&b'{') && s.find(text).is_none())
    }

    /// A valid record (an object) of plain ASCII without escapes, in which none of the texts
    /// appears: [`check::valid`] settles the first three at once.
    fn none_in(searcher: Option<&Searcher>, text: &[u8]) -> bool {
        searcher.is_some_and(|s| {
            text.trim_ascii_start().first() == Some(&b'{') && s.find(text).is_none() && check::valid(text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_need_texts_and_records_without_them_are_skipped() {
        let p = Prefilter::new(&RuleSet::builtin());
        assert!(p.texts.is_some());
        assert!(p.skips(br#"{"eventSource":"kms.amazonaws.com","eventName":"Decrypt"}"#));
        assert!(!p.skips(br#"{"eventSource":"kms.amazonaws.com","eventName":"DisableKey"}"#));
        // An escape could spell a needed text: never skipped.
        assert!(!p.skips(br#"{"eventSource":"kms.amazonaws.com","eventName":"Disable\u004bey"}"#));
        assert!(!p.skips("{\"eventName\":\"Décrypt\"}".as_bytes()));
        assert!(p.skips_line(br#"{"eventName":"Decrypt"}"#));
        assert!(!p.skips_line(br#"{"Records":[{"eventName":"Decrypt"}]}"#));
        assert!(!p.skips(b"[1]"));
        let e = |s: &str| needed(&pattern::parse(s).unwrap());
        assert_eq!(
            e("{ $.a = x* && ($.b = \"abc\" || $.b = abcd) }"),
            Some(vec!["abc".into(), "abcd".into()])
        );
        assert_eq!(
            e("{ $.a = kms.amazonaws.com && $.b = ab }"),
            Some(vec!["ab".into()])
        );
        assert_eq!(e("{ $.a = x || $.b != y }"), None);
        assert_eq!(e("{ $.a = 1 }"), None);
        assert_eq!(e("{ $.a = * }"), None);
    }
}
