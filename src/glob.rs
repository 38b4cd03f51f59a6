//! Globs on names and ARNs (`*` any run, `?` one character), and the CloudWatch Logs
//! wildcard of the pattern language (`*` only): the one place trailguard matches them. Pure, and linear in practice: `wildmatch` backtracks only to the last `*`, so a
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

/// CloudWatch Logs' wildcard: `*` is any run of characters, everything else (`?` included) is
/// literal, case-sensitive. Linear: each literal part is found leftmost, after the previous.
pub fn stars(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

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
