//! Globs on names and ARNs (`*` any run, `?` one character): the one place trailguard matches
//! them. Pure, and linear in practice: `wildmatch` backtracks only to the last `*`, so a
//! pattern with many stars cannot blow up the way naive recursive matching does.

use wildmatch::WildMatch;

/// A compiled glob, keeping its text for messages.
#[derive(Debug, Clone)]
pub struct Glob {
    text: String,
    matcher: WildMatch,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self {
            text: pattern.to_owned(),
            matcher: WildMatch::new(pattern),
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        self.matcher.matches(text)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Glob {}

/// One-off match of `pattern` against `text`.
pub fn matches(pattern: &str, text: &str) -> bool {
    WildMatch::new(pattern).matches(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("arn:aws:iam::*:user/svc/*", "arn:aws:iam::1:user/svc/a"));
        assert!(matches("ci-?", "ci-1"));
        assert!(!matches("ci-?", "ci-12"));
        assert!(Glob::new("alias/prod-*").matches("alias/prod-db"));
    }

    #[test]
    fn many_stars_do_not_backtrack_exponentially() {
        // A naive recursive matcher takes minutes on this; a linear one, microseconds.
        let pattern = "*a".repeat(30) + "b";
        let text = "a".repeat(200);
        assert!(!matches(&pattern, &text));
    }
}
