//! The vocabulary of raw → validated configuration, shared by every section's conversion.
//! Pure.
//!
//! Each config section is read into a raw struct whose fields are [`Field`]s: a field that has
//! the wrong type does not stop the others from being read, so one run of `validate` reports
//! every problem, each with its key. A section's `TryFrom<Raw…>` lives with its domain and
//! pushes its problems into [`Problems`].

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Problems found so far, in the order they were found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }
}

/// A configuration value as written: absent, readable as `T`, or not (with serde's reason).
///
/// Values from the environment arrive as strings; a string that is not a `T` is read again as
/// a TOML scalar (`"true"`, `"2.5"`) and then as a comma-separated list, so
/// `TRAILGUARD__AWS__REGIONS=us-east-1,eu-west-1` works, while a string field keeps its text
/// exactly (an account id `012345678901` keeps its leading zero).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<T> {
    #[default]
    Missing,
    Value(T),
    Invalid(String),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = toml::Value::deserialize(d)?;
        Ok(Field::read(raw))
    }
}

impl<T> Serialize for Field<T> {
    /// Fields serialize as nothing: only the raw structs' shape (their keys) is ever serialized.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<T: DeserializeOwned> Field<T> {
    fn read(raw: toml::Value) -> Self {
        let first = match T::deserialize(raw.clone()) {
            Ok(v) => return Field::Value(v),
            Err(e) => e.to_string(),
        };
        if let toml::Value::String(s) = &raw {
            if let Ok(table) = format!("v = {s}").parse::<toml::Table>()
                && let Some(v) = table.get("v")
                && let Ok(t) = T::deserialize(v.clone())
            {
                return Field::Value(t);
            }
            let list = toml::Value::Array(
                s.split(',')
                    .map(|p| p.trim())
                    .filter(|p| !p.is_empty())
                    .map(|p| toml::Value::String(p.to_owned()))
                    .collect(),
            );
            if let Ok(t) = T::deserialize(list) {
                return Field::Value(t);
            }
        }
        Field::Invalid(first.trim().to_owned())
    }
}

impl<T> Field<T> {
    /// The value, if readable; an unreadable value is reported at `key`.
    pub fn get(self, key: &str, p: &mut Problems) -> Option<T> {
        match self {
            Field::Missing => None,
            Field::Value(v) => Some(v),
            Field::Invalid(e) => {
                p.push(key, e);
                None
            }
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, Field::Missing)
    }
}

/// Parses a humantime duration field within `range`; a problem (and the default) otherwise.
/// `why` is appended to the range message, to say where the range comes from.
pub fn duration(
    p: &mut Problems,
    key: &str,
    field: Field<String>,
    default: &str,
    range: (Duration, Duration),
    why: &str,
) -> Duration {
    let fallback = humantime::parse_duration(default).expect("defaults parse");
    let Some(text) = field.get(key, p) else {
        return fallback;
    };
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d >= range.0 && d <= range.1 => d,
        Ok(_) => {
            p.push(
                key,
                format!(
                    "must be between {} and {}, got {text}{why}",
                    humantime::format_duration(range.0),
                    humantime::format_duration(range.1)
                ),
            );
            fallback
        }
        Err(e) => {
            p.push(
                key,
                format!("not a duration like \"15s\" or \"5m\": {text:?} ({e})"),
            );
            fallback
        }
    }
}

/// A number field within an inclusive range.
pub fn number<T>(p: &mut Problems, key: &str, field: Field<T>, default: T, range: (T, T), why: &str) -> T
where
    T: PartialOrd + Copy + fmt::Display,
{
    match field.get(key, p) {
        None => default,
        Some(v) if v >= range.0 && v <= range.1 => v,
        Some(v) => {
            p.push(
                key,
                format!("must be between {} and {}, got {v}{why}", range.0, range.1),
            );
            default
        }
    }
}

/// One of a fixed set of names (`options`), or a problem listing them.
pub fn choice<T: Copy>(
    p: &mut Problems,
    key: &str,
    field: Field<String>,
    options: &[(&str, T)],
    default: T,
) -> T {
    let Some(text) = field.get(key, p) else {
        return default;
    };
    match options.iter().find(|(name, _)| *name == text) {
        Some((_, v)) => *v,
        None => {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            p.push(key, format!("must be {}, got {text:?}", names.join(" or ")));
            default
        }
    }
}

/// Implements `TryFrom<Raw>` for a section's validated type through its
/// `from_raw(raw, &mut Problems)`, which reports every problem (and keeps going with defaults).
#[macro_export]
macro_rules! validated {
    ($raw:ty => $out:ty, $from:path) => {
        impl TryFrom<$raw> for $out {
            type Error = $crate::validate::Problems;
            fn try_from(raw: $raw) -> Result<Self, Self::Error> {
                let mut p = $crate::validate::Problems::default();
                let v = $from(raw, &mut p);
                if p.is_empty() { Ok(v) } else { Err(p) }
            }
        }
    };
}

/// Keeps a section's value, or its problems.
pub fn section<T>(p: &mut Problems, r: Result<T, Problems>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(more) => {
            p.extend(more);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Raw {
        a: Field<bool>,
        b: Field<Vec<String>>,
        c: Field<String>,
        d: Field<f64>,
    }

    fn read(text: &str) -> Raw {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn each_field_is_read_on_its_own() {
        let r = read("a = \"maybe\"\nb = [\"x\"]\nc = 5\nd = 1");
        let mut p = Problems::default();
        assert_eq!(r.a.get("a", &mut p), None);
        assert_eq!(r.b.get("b", &mut p), Some(vec!["x".to_owned()]));
        assert_eq!(r.c.get("c", &mut p), None);
        assert_eq!(r.d.get("d", &mut p), Some(1.0));
        let keys: Vec<_> = p.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["a", "c"]);
    }

    #[test]
    fn environment_strings_become_scalars_and_lists_but_strings_stay_strings() {
        let r = read("a = \"true\"\nb = \"us-east-1, eu-west-1\"\nc = \"012345678901\"\nd = \"2.5\"");
        let mut p = Problems::default();
        assert_eq!(r.a.get("a", &mut p), Some(true));
        assert_eq!(r.b.get("b", &mut p).unwrap(), ["us-east-1", "eu-west-1"]);
        assert_eq!(r.c.get("c", &mut p).unwrap(), "012345678901");
        assert_eq!(r.d.get("d", &mut p), Some(2.5));
        assert!(p.is_empty());
    }

    #[test]
    fn durations_outside_their_range_say_why() {
        let mut p = Problems::default();
        let d = duration(
            &mut p,
            "x.poll",
            Field::Value("1s".into()),
            "15s",
            (Duration::from_secs(5), Duration::from_secs(60)),
            " (because)",
        );
        assert_eq!(d, Duration::from_secs(15));
        assert_eq!(
            p.0[0].to_string(),
            "x.poll: must be between 5s and 1m, got 1s (because)"
        );
        duration(
            &mut p,
            "x.poll",
            Field::Value("banana".into()),
            "15s",
            (Duration::ZERO, Duration::MAX),
            "",
        );
        assert!(p.0[1].message.starts_with("not a duration"), "{}", p.0[1]);
    }
}
