//! A fast answer to "is this one JSON value?" for records that are plain ASCII without escapes,
//! the shape of almost every CloudTrail record no rule can match (see `prefilter.rs`), and the
//! same check cutting a whole log file into its records ([`log_file`]).
//!
//! In the manner of simdjson: each 64-byte block is classified into bit masks (quotes,
//! whitespace, structural characters, control bytes: `classify.rs`); string interiors are found
//! with a prefix XOR of the quotes; the tokens left (brackets, colons, commas, string starts,
//! scalar starts) are visited in order by a small table-driven grammar automaton, and each
//! scalar is checked against JSON's number and literal grammar.
//!
//! [`valid`] answers true only for a text that is exactly one JSON value (surrounding
//! whitespace allowed), as `serde_json::from_slice::<IgnoredAny>` would accept it. It answers
//! false for anything it does not settle: a backslash, a byte over 0x7f, nesting deeper than
//! 127, a number near or past f64's range (which serde_json refuses where it reads it as a
//! number), or an invalid text. A caller falls back to serde_json then, which gives the verdict
//! and the error's position. The tests hold it to serde_json on generated and mutated texts.
//!
//! On CloudTrail records it takes under half of serde_json's time (BENCHMARKS.md).

use std::ops::Range;

use super::classify::Masks;
#[cfg(any(test, not(target_arch = "x86_64")))]
use super::classify::classify_portable;
#[cfg(target_arch = "x86_64")]
use super::classify::{classify_avx2, classify_sse2};
use super::split::{escaped, prefix_xor};

// Token classes.
const QUOTE: u8 = 0;
const OPEN_OBJECT: u8 = 1;
const OPEN_ARRAY: u8 = 2;
const CLOSE_OBJECT: u8 = 3;
const CLOSE_ARRAY: u8 = 4;
const COLON: u8 = 5;
const COMMA: u8 = 6;
const SCALAR: u8 = 7;

const CLASS: [u8; 256] = {
    let mut t = [SCALAR; 256];
    t[b'"' as usize] = QUOTE;
    t[b'{' as usize] = OPEN_OBJECT;
    t[b'[' as usize] = OPEN_ARRAY;
    t[b'}' as usize] = CLOSE_OBJECT;
    t[b']' as usize] = CLOSE_ARRAY;
    t[b':' as usize] = COLON;
    t[b',' as usize] = COMMA;
    t
};

// States: what the next token may be.
/// A value (the start, after `:`, after `,` in an array).
const VALUE: u8 = 0;
/// A value or `]` (just after `[`).
const FIRST_ELEMENT: u8 = 1;
/// A key or `}` (just after `{`).
const FIRST_KEY: u8 = 2;
/// A key (after `,` in an object).
const KEY: u8 = 3;
/// `:` after a key.
const COLON_NEXT: u8 = 4;
/// `,` or the end of the container (at the top: nothing more).
const NEXT: u8 = 5;
/// Not JSON; stays so.
const ERROR: u8 = 6;

/// Contexts: the innermost open container.
const IN_ARRAY: u8 = 0;
const IN_OBJECT: u8 = 1;
const AT_TOP: u8 = 2;

/// The automaton's state with its context, as one index into [`STEP`]:
/// `context * 64 + state * 8` (the token's class is added to it).
const fn at(context: u8, state: u8) -> u8 {
    context * 64 + state * 8
}

/// The next [`at`] for `at(context, state) + class`. An opening bracket enters its container's
/// context (the caller pushes it on the stack); a closing one leaves the context as it is, for
/// the caller to pop the stack and set the outer one. Errors are `ERROR` in any context.
const STEP: [u8; 256] = {
    // 256 entries, so that a `u8` index needs no bounds check; the last 64 are never used.
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 3 {
        let mut i = 0;
        while i < 64 {
            t[c * 64 + i] = at(c as u8, ERROR);
            i += 1;
        }
        let cc = c as u8;
        let mut v = 0;
        while v < 2 {
            // VALUE and FIRST_ELEMENT.
            let row = at(cc, v) as usize;
            t[row + QUOTE as usize] = at(cc, NEXT);
            t[row + SCALAR as usize] = at(cc, NEXT);
            t[row + OPEN_OBJECT as usize] = at(IN_OBJECT, FIRST_KEY);
            t[row + OPEN_ARRAY as usize] = at(IN_ARRAY, FIRST_ELEMENT);
            v += 1;
        }
        t[at(cc, FIRST_KEY) as usize + QUOTE as usize] = at(cc, COLON_NEXT);
        t[at(cc, KEY) as usize + QUOTE as usize] = at(cc, COLON_NEXT);
        t[at(cc, COLON_NEXT) as usize + COLON as usize] = at(cc, VALUE);
        c += 1;
    }
    // Closing: the state after the pop is NEXT whatever the outer context.
    let (a, o) = (IN_ARRAY, IN_OBJECT);
    t[at(a, FIRST_ELEMENT) as usize + CLOSE_ARRAY as usize] = at(a, NEXT);
    t[at(a, NEXT) as usize + CLOSE_ARRAY as usize] = at(a, NEXT);
    t[at(a, NEXT) as usize + COMMA as usize] = at(a, VALUE);
    t[at(o, FIRST_KEY) as usize + CLOSE_OBJECT as usize] = at(o, NEXT);
    t[at(o, NEXT) as usize + CLOSE_OBJECT as usize] = at(o, NEXT);
    t[at(o, NEXT) as usize + COMMA as usize] = at(o, KEY);
    t
};

/// The state part of an [`at`].
const STATE: u8 = 0b111_000;

/// Classes that need more than a table step: brackets (the stack).
const BRACKETS: u8 = 1 << OPEN_OBJECT | 1 << OPEN_ARRAY | 1 << CLOSE_OBJECT | 1 << CLOSE_ARRAY;

/// Whether `text` is exactly one JSON value with optional surrounding whitespace; false also
/// when it holds a backslash, a byte over 0x7f or nesting deeper than 127 (not settled here).
pub(crate) fn valid(text: &[u8]) -> bool {
    walk_any::<false>(text, &mut Vec::new())
}

/// One record of a log file, as [`log_file`] cut it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// Its bytes in the document: between the `[` or `,` before it and the `,` or `]` after.
    pub(crate) range: Range<usize>,
    /// Plain ASCII without escapes or control bytes in its strings: [`valid`] holds for it, and
    /// it was checked here. A record that is not plain was only cut; its strings are unread.
    pub(crate) plain: bool,
}

/// CloudTrail's log file shape, `{"Records":[...]}` and nothing else (surrounding whitespace
/// allowed), checked and cut into its records in one pass: the splitter's cut and the
/// checker's verdict at once. Fills `records` and returns true when `text` has that shape and
/// is valid JSON but for what the records that are not plain hold in their strings (escapes,
/// bytes over 0x7f, control bytes: the caller's parser reads those). Returns false for
/// anything else, including nesting deeper than 127; the caller cuts it with the splitter
/// then, whose parser reports what is wrong.
pub(crate) fn log_file(text: &[u8], records: &mut Vec<Record>) -> bool {
    records.clear();
    walk_any::<true>(text, records)
}

fn walk_any<const CUT: bool>(text: &[u8], records: &mut Vec<Record>) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected at run time.
            return unsafe { walk_avx2::<CUT>(text, records) };
        }
        walk::<CUT>(text, records, classify_sse2)
    }
    #[cfg(not(target_arch = "x86_64"))]
    walk::<CUT>(text, records, classify_portable)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn walk_avx2<const CUT: bool>(text: &[u8], records: &mut Vec<Record>) -> bool {
    // SAFETY: this function runs only where AVX2 is.
    walk::<CUT>(text, records, |b| unsafe { classify_avx2(b) })
}

#[cfg(test)]
fn valid_with(text: &[u8], classify: impl Fn(&[u8; 64]) -> Masks) -> bool {
    walk::<false>(text, &mut Vec::new(), classify)
}

/// Where the records of a `{"Records":[` document start: just after its `[`.
fn records_start(text: &[u8]) -> Option<usize> {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut at = 0;
    let mut expect = |what: &[u8]| {
        at += text[at..].iter().take_while(|b| blank(b)).count();
        text[at..].starts_with(what).then(|| at += what.len())
    };
    expect(b"{")?;
    expect(b"\"Records\"")?;
    expect(b":")?;
    expect(b"[")?;
    Some(at)
}

/// The checker (`CUT` false: [`valid`]) and the log file's cut (`CUT` true: [`log_file`]) in
/// one automaton. Cutting, strings are found past escapes (as the splitter finds them), and
/// what a string holds decides only whether its record is plain.
#[inline(always)]
fn walk<const CUT: bool>(
    text: &[u8],
    records: &mut Vec<Record>,
    classify: impl Fn(&[u8; 64]) -> Masks,
) -> bool {
    let mut auto = Automaton {
        state: at(AT_TOP, VALUE),
        stack: 0,
        depth: 0,
        special: BRACKETS | if CUT { 1 << COMMA } else { 0 },
    };
    // Whether the previous block ended inside a string, in a scalar, or after a backslash
    // that escapes the next byte.
    let mut in_string = 0u64;
    let mut in_scalar = 0u64;
    let mut escape = 0u64;
    let mut cutter = Cutter {
        records,
        start: 0,
        last_dirty: None,
        base: 0,
        dirty: 0,
    };
    if CUT {
        match records_start(text) {
            Some(at) => cutter.start = at,
            None => return false,
        }
    }
    let mut base = 0;
    while base < text.len() {
        let n = (text.len() - base).min(64);
        let mut padded = [b' '; 64];
        let block = match text[base..].first_chunk::<64>() {
            Some(block) => block,
            None => {
                padded[..n].copy_from_slice(&text[base..]);
                &padded
            }
        };
        let m = classify(block);
        // Cutting, quotes that a backslash escapes are not quotes (as the splitter finds them).
        let quote = if CUT {
            m.quote & !escaped(m.backslash, &mut escape)
        } else {
            m.quote
        };
        // Set from an opening quote up to (not including) its closing quote.
        let string = prefix_xor(quote) ^ in_string;
        in_string = ((string as i64) >> 63) as u64;
        let outside = !(string | quote);
        // Checking, no backslash (not settled here); control bytes (and bytes over 0x7f):
        // none in strings, only blanks outside. Cutting, what is in strings only makes the
        // record not plain.
        let dirty = if CUT {
            if m.control & outside & !m.blank != 0 {
                return false;
            }
            m.backslash | (m.control & string)
        } else {
            if m.backslash | (m.control & (string | !m.blank)) != 0 {
                return false;
            }
            0
        };
        let scalar = outside & !m.blank & !m.structural;
        let scalar_starts = scalar & !((scalar << 1) | in_scalar);
        in_scalar = scalar >> 63;
        // Each scalar's text, apart: the automaton only places it.
        let mut s = scalar_starts;
        while s != 0 {
            let at = s.trailing_zeros() as usize;
            s &= s - 1;
            if !scalar_ok(&text[base + at..]) {
                return false;
            }
        }
        (cutter.base, cutter.dirty) = (base, dirty);
        let tokens = (m.structural & outside) | (quote & string) | scalar_starts;
        if !auto.run::<CUT>(block, tokens, &mut cutter) {
            return false;
        }
        if CUT && dirty != 0 {
            cutter.last_dirty = Some(base + 63 - dirty.leading_zeros() as usize);
        }
        base += n;
    }
    auto.state == at(AT_TOP, NEXT) && in_string == 0
}

/// The grammar automaton between two tokens.
struct Automaton {
    /// [`at`] its context and state.
    state: u8,
    /// Open containers, innermost in bit 0: 1 for an object, 0 for an array.
    stack: u128,
    depth: u32,
    /// The classes that take more than a table step: brackets (the stack), and cutting,
    /// commas up to depth 2 (between records, or after them).
    special: u8,
}

impl Automaton {
    /// Steps through one block's `tokens`; false when the text is not JSON, or not settled.
    /// The loop holds only what each token needs: the rest is in [`Automaton::special`].
    #[inline(always)]
    fn run<const CUT: bool>(&mut self, block: &[u8; 64], mut tokens: u64, cutter: &mut Cutter) -> bool {
        let (mut state, mut special) = (self.state, self.special);
        while tokens != 0 {
            let at = tokens.trailing_zeros() as usize;
            tokens &= tokens - 1;
            let class = CLASS[block[at & 63] as usize];
            let next = STEP[state.wrapping_add(class) as usize];
            if special >> class & 1 != 0 {
                self.state = state;
                match self.special::<CUT>(class, next, at, cutter) {
                    Some(n) => (state, special) = (n, self.special),
                    None => return false,
                }
            } else {
                state = next;
            }
        }
        self.state = state;
        state & STATE != ERROR * 8
    }

    /// A bracket, or cutting, a comma up to depth 2, at `at` in the block; `next` is the table's
    /// next state. Returns the state after it, or `None` to stop.
    #[inline(never)]
    fn special<const CUT: bool>(
        &mut self,
        class: u8,
        next: u8,
        at: usize,
        cutter: &mut Cutter,
    ) -> Option<u8> {
        let next = match class {
            OPEN_OBJECT | OPEN_ARRAY => {
                if self.depth == 127 {
                    return None;
                }
                self.stack = (self.stack << 1) | u128::from(class == OPEN_OBJECT);
                self.depth += 1;
                next
            }
            CLOSE_OBJECT | CLOSE_ARRAY => {
                // A close allowed in its context matches it (the table says so).
                if self.depth == 0 {
                    return None;
                }
                // The records' array ends (the only array at depth 2): its last record,
                // unless it is empty.
                if CUT && self.depth == 2 && self.state & STATE != FIRST_ELEMENT * 8 {
                    cutter.cut(at);
                }
                self.stack >>= 1;
                self.depth -= 1;
                let outer = if self.depth == 0 {
                    AT_TOP
                } else {
                    (self.stack & 1) as u8
                };
                outer * 64 + (next & STATE)
            }
            // Cutting, a comma up to depth 2.
            _ => {
                match self.depth {
                    2 => {
                        cutter.cut(at);
                        cutter.start = cutter.base + at + 1;
                    }
                    // A key after the records: not a log file's shape.
                    1 => return None,
                    _ => {}
                }
                next
            }
        };
        self.special = BRACKETS | if CUT && self.depth <= 2 { 1 << COMMA } else { 0 };
        Some(next)
    }
}

/// Cutting: the records so far, and where the next starts.
struct Cutter<'a> {
    records: &'a mut Vec<Record>,
    start: usize,
    /// The last byte before the current block that makes its record not plain.
    last_dirty: Option<usize>,
    /// The current block: where it starts, and its bytes that make a record not plain.
    base: usize,
    dirty: u64,
}

impl Cutter<'_> {
    /// The current record ends at byte `at` of the block: it is plain if no dirty byte is in it.
    fn cut(&mut self, at: usize) {
        let from = self.start.saturating_sub(self.base);
        let within = (u64::MAX << from) & !(u64::MAX << at);
        self.records.push(Record {
            range: self.start..self.base + at,
            plain: self.last_dirty.is_none_or(|d| d < self.start) && self.dirty & within == 0,
        });
    }
}

/// Whether the scalar at the start of `s` (up to the next blank, structural character or quote,
/// or the end) is a JSON number, `true`, `false` or `null`.
fn scalar_ok(s: &[u8]) -> bool {
    let end = s
        .iter()
        .position(|c| {
            matches!(
                c,
                b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'}' | b'[' | b']' | b':' | b',' | b'"'
            )
        })
        .unwrap_or(s.len());
    let s = &s[..end];
    match s {
        b"true" | b"false" | b"null" => true,
        _ => number(s),
    }
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, the whole of `s`.
fn number(s: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(s.first() == Some(&b'-'));
    // The number is under 10 to this power.
    let mut magnitude: i64 = 0;
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            let d = digits(&s[i..]);
            magnitude = d as i64;
            i += d;
        }
        _ => return false,
    }
    if s.get(i) == Some(&b'.') {
        let d = digits(&s[i + 1..]);
        if d == 0 {
            return false;
        }
        i += 1 + d;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        let negative = s.get(i) == Some(&b'-');
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let d = digits(&s[i..]);
        if d == 0 {
            return false;
        }
        let exponent = s[i..i + d]
            .iter()
            .fold(0i64, |e, c| (e * 10 + i64::from(c - b'0')).min(1 << 32));
        magnitude += if negative { -exponent } else { exponent };
        i += d;
    }
    // A number near or past f64's range: serde_json refuses one that is past it where it reads
    // it as a number (a field a rule or a finding reads, which the single-threaded stream
    // reads in every record), and so decides.
    i == s.len() && (magnitude <= 300 || serde_json::from_slice::<f64>(s).is_ok())
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
