//! CloudWatch Logs filter patterns for JSON log events, parsed into an expression over
//! selectors. Pure: no I/O.
//!
//! Supported, with CloudWatch Logs' semantics:
//! - selectors `$.a.b`, `$.a[0].b`, `$.a["quoted key"]`, `$."quoted key"`;
//! - `=` and `!=` on strings (with `*` wildcards anywhere, quoted or not) and numbers;
//!   `<`, `<=`, `>`, `>=` on numbers;
//! - `IS NULL`, `NOT EXISTS`, `IS TRUE`, `IS FALSE`;
//! - `&&`, `||`, parentheses; regular expressions between `%...%` (`= %re%`, `!= %re%`).
//!
//! Differences from CloudWatch Logs, all on the side of being explicit:
//! - a comparison on a field that is absent (or of another type) is false, `!=` included;
//!   use `NOT EXISTS` to match absence;
//! - regular expressions use Rust's `regex` syntax and match anywhere in the value (add `^`/`$`
//!   to anchor); CloudWatch accepts a smaller subset;
//! - `*` wildcards apply to string values only; a number compared with a wildcard string never
//!   matches;
//! - only JSON patterns (`{ ... }`) are supported, not space-delimited or plain-text patterns.

use std::fmt;

/// One step of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Key(String),
    Index(usize),
}

pub type Selector = Vec<Step>;

pub fn selector_text(s: &[Step]) -> String {
    let mut out = String::from("$");
    for step in s {
        match step {
            Step::Key(k)
                if k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                out.push('.');
                out.push_str(k);
            }
            Step::Key(k) => out.push_str(&format!("[\"{k}\"]")),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone)]
pub enum Literal {
    /// A string (quoted or not), possibly with `*` wildcards; `number` is set when the unquoted
    /// text is a number, so that it also compares numerically.
    Text {
        text: String,
        wildcard: bool,
        number: Option<f64>,
    },
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare {
        selector: Selector,
        op: Op,
        value: Literal,
    },
    IsNull(Selector),
    NotExists(Selector),
    IsBool(Selector, bool),
}

/// A pattern that does not parse: the column (1-based) and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for PatternError {}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

type R<T> = Result<T, PatternError>;

impl<'a> Parser<'a> {
    fn err<T>(&self, message: impl Into<String>) -> R<T> {
        let column = self.src[..self.pos.min(self.src.len())].chars().count() + 1;
        Err(PatternError {
            column,
            message: message.into(),
        })
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn ws(&mut self) {
        while let Some(c) = self.rest().chars().next() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        self.ws();
        let r = self.rest();
        if r.len() >= word.len() && r.as_bytes()[..word.len()].eq_ignore_ascii_case(word.as_bytes()) {
            // `word` is ASCII, so a match ends on a character boundary.
            let next = r[word.len()..].chars().next();
            if next.is_none_or(|c| !c.is_ascii_alphanumeric()) {
                self.pos += word.len();
                return true;
            }
        }
        false
    }

    fn found(&self) -> String {
        match self.rest().chars().next() {
            None => "the end of the pattern".into(),
            Some(_) => format!("`{}`", self.rest().chars().take(12).collect::<String>()),
        }
    }

    fn pattern(&mut self) -> R<Expr> {
        if !self.eat("{") {
            return self.err(format!(
                "expected `{{` to open a JSON filter pattern, found {}",
                self.found()
            ));
        }
        let e = self.or()?;
        if !self.eat("}") {
            return self.err(format!("expected `&&`, `||` or `}}`, found {}", self.found()));
        }
        self.ws();
        if !self.rest().is_empty() {
            return self.err(format!(
                "expected the end of the pattern after `}}`, found {}",
                self.found()
            ));
        }
        Ok(e)
    }

    fn or(&mut self) -> R<Expr> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> R<Expr> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> R<Expr> {
        if self.eat("(") {
            let e = self.or()?;
            if !self.eat(")") {
                return self.err(format!("expected `)`, found {}", self.found()));
            }
            return Ok(e);
        }
        self.comparison()
    }

    fn selector(&mut self) -> R<Selector> {
        self.ws();
        if !self.eat("$") {
            return self.err(format!(
                "expected a selector starting with `$` (like `$.eventName`), found {}",
                self.found()
            ));
        }
        let mut steps = Vec::new();
        loop {
            if self.rest().starts_with('.') {
                self.pos += 1;
                if self.rest().starts_with('"') {
                    steps.push(Step::Key(self.quoted()?));
                    continue;
                }
                let name: String = self
                    .rest()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '@')
                    .collect();
                if name.is_empty() {
                    return self.err("expected a field name after `.`");
                }
                self.pos += name.len();
                steps.push(Step::Key(name));
            } else if self.rest().starts_with('[') {
                self.pos += 1;
                if self.rest().starts_with('"') {
                    let k = self.quoted()?;
                    steps.push(Step::Key(k));
                } else {
                    let digits: String = self.rest().chars().take_while(|c| c.is_ascii_digit()).collect();
                    if digits.is_empty() {
                        return self.err("expected an array index or a quoted key after `[`");
                    }
                    self.pos += digits.len();
                    steps.push(Step::Index(digits.parse().map_err(|_| PatternError {
                        column: self.pos,
                        message: "index too large".into(),
                    })?));
                }
                if !self.rest().starts_with(']') {
                    return self.err("expected `]`");
                }
                self.pos += 1;
            } else {
                break;
            }
        }
        if steps.is_empty() {
            return self.err("expected `.field` or `[index]` after `$`");
        }
        Ok(steps)
    }

    fn quoted(&mut self) -> R<String> {
        // At a `"`.
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c => out.push(c),
            }
        }
        self.pos = self.src.len();
        self.err("unterminated string: expected a closing `\"`")
    }

    fn comparison(&mut self) -> R<Expr> {
        let selector = self.selector()?;
        if self.eat_word("IS") {
            if self.eat_word("NULL") {
                return Ok(Expr::IsNull(selector));
            }
            if self.eat_word("TRUE") {
                return Ok(Expr::IsBool(selector, true));
            }
            if self.eat_word("FALSE") {
                return Ok(Expr::IsBool(selector, false));
            }
            return self.err(format!(
                "expected NULL, TRUE or FALSE after IS, found {}",
                self.found()
            ));
        }
        if self.eat_word("NOT") {
            if self.eat_word("EXISTS") {
                return Ok(Expr::NotExists(selector));
            }
            return self.err(format!("expected EXISTS after NOT, found {}", self.found()));
        }
        self.ws();
        let op = if self.eat("!=") {
            Op::Ne
        } else if self.eat("<=") {
            Op::Le
        } else if self.eat(">=") {
            Op::Ge
        } else if self.eat("=") {
            Op::Eq
        } else if self.eat("<") {
            Op::Lt
        } else if self.eat(">") {
            Op::Gt
        } else {
            return self.err(format!(
                "expected an operator (=, !=, <, <=, >, >=, IS, NOT EXISTS) after {}, found {}",
                selector_text(&selector),
                self.found()
            ));
        };
        self.ws();
        let start_col = self.pos;
        let value = if self.rest().starts_with('"') {
            let text = self.quoted()?;
            Literal::Text {
                wildcard: text.contains('*'),
                number: None,
                text,
            }
        } else if self.rest().starts_with('%') {
            self.pos += 1;
            let Some(end) = self.rest().find('%') else {
                return self.err("unterminated regular expression: expected a closing `%`");
            };
            let re = &self.rest()[..end];
            let compiled = regex::Regex::new(re).map_err(|e| PatternError {
                column: self.src[..start_col].chars().count() + 1,
                message: format!("invalid regular expression: {e}"),
            })?;
            self.pos += end + 1;
            Literal::Regex(compiled)
        } else {
            let text: String = self
                .rest()
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, ')' | '(' | '&' | '|' | '}' | '"'))
                .collect();
            if text.is_empty() {
                return self.err(format!(
                    "expected a value after the operator, found {}",
                    self.found()
                ));
            }
            self.pos += text.len();
            Literal::Text {
                wildcard: text.contains('*'),
                number: text.parse::<f64>().ok(),
                text,
            }
        };
        if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) {
            let numeric = matches!(&value, Literal::Text { number: Some(_), .. });
            if !numeric {
                self.pos = start_col;
                return self.err("expected a number: <, <=, > and >= compare numbers");
            }
        }
        Ok(Expr::Compare { selector, op, value })
    }
}

/// Parses a JSON filter pattern.
pub fn parse(src: &str) -> Result<Expr, PatternError> {
    Parser { src, pos: 0 }.pattern()
}

/// Every selector an expression reads, in order of first use.
pub fn selectors(e: &Expr, out: &mut Vec<Selector>) {
    let mut add = |s: &Selector| {
        if !out.contains(s) {
            out.push(s.clone());
        }
    };
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            selectors(a, out);
            selectors(b, out);
        }
        Expr::Compare { selector, .. }
        | Expr::IsNull(selector)
        | Expr::NotExists(selector)
        | Expr::IsBool(selector, _) => add(selector),
    }
}

/// `*` wildcard match (any run of characters), case-sensitive: see [`crate::glob::stars`].
pub use crate::glob::stars as wildcard;
