//! Cuts a stream of JSON documents into record-sized pieces without parsing them.
//!
//! A string- and bracket-aware scanner in the manner of simdjson's first stage: each 64-byte
//! block is classified with SSE2 into bit masks (quotes, backslashes, brackets, commas), escaped
//! quotes and string interiors are removed with carry-less bit arithmetic, and only the
//! structural characters left are visited. It only counts brackets: the pieces it cuts are
//! parsed (and so validated) by serde_json afterwards, which reports any error in them.
//!
//! Pieces: each element of a top-level array or of the top-level object's first key `Records`
//! (CloudTrail's log files) is a [`Piece::Record`]; any other top-level value (a single record,
//! `lookup-events` output, a digest file) is a [`Piece::Document`], taken whole; what follows
//! the `Records` array inside its object is a [`Piece::Tail`].

use std::ops::Range;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    Record(Range<usize>),
    Document(Range<usize>),
    /// The rest of a `{"Records": [...] ...}` object after its array, closing brace included.
    Tail(Range<usize>),
    /// The stream is not JSON at this byte (`eof`: it ended there); nothing follows.
    Error {
        at: usize,
        eof: bool,
        what: &'static str,
        /// Between top-level values, not a document: serde_json reading a value from `at`
        /// says what is wrong there (the stream's words); `what` is the splitter's.
        junk: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Between top-level values; `start` is the end of the last one.
    Top,
    /// Inside a top-level `{` before anything decided whether it holds `Records`.
    Header,
    /// Inside the records array, which is at depth `level`; `start` is the current element's.
    Records { level: u32, first: bool },
    /// In the top-level object after its `Records` array; `start` is just after the array.
    AfterRecords,
    /// Inside a top-level value taken whole; `start` is its first byte.
    Whole,
}

/// The scanner's state between buffers. Offsets are into the caller's buffer; after moving
/// the bytes from [`Splitter::keep`] on to the front of a buffer, call [`Splitter::shift`].
#[derive(Debug)]
pub(crate) struct Splitter {
    in_string: u64,
    escaped: u64,
    depth: u32,
    state: State,
    scanned: usize,
    start: usize,
    stopped: bool,
    /// AVX2 is there: blocks are classified 32 bytes at a time.
    wide: bool,
}

const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// Bit i set where byte i follows a backslash that escapes it (one not itself escaped), given
/// `backslash`, a block's backslashes, and `carry`, whether the block before ended with an
/// escaping backslash (updated for the next block).
#[inline(always)]
pub(super) fn escaped(backslash: u64, carry: &mut u64) -> u64 {
    if backslash == 0 {
        return std::mem::take(carry);
    }
    let potential = backslash & !*carry;
    let code = (((potential << 1) | ODD_BITS).wrapping_sub(potential)) ^ ODD_BITS;
    let escaped = code ^ (backslash | *carry);
    *carry = (code & backslash) >> 63;
    escaped
}

/// Bit i set where byte i is `"`, `\`, `{`/`[`, `}`/`]` and `,`.
#[cfg(target_arch = "x86_64")]
fn classify(block: &[u8; 64]) -> [u64; 5] {
    use std::arch::x86_64::*;
    let mut m = [0u64; 5];
    // SAFETY: SSE2 is part of the x86_64 baseline; the loads read 16 bytes inside `block`.
    unsafe {
        for i in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * i).cast::<__m128i>());
            let low = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let eq = |x: __m128i, c: u8| _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(c as i8))) as u16;
            let bits = [
                eq(v, b'"'),
                eq(v, b'\\'),
                eq(low, b'{'), // `{` or `[`
                eq(low, b'}'), // `}` or `]`
                eq(v, b','),
            ];
            for (k, b) in bits.into_iter().enumerate() {
                m[k] |= (b as u64) << (16 * i);
            }
        }
    }
    m
}

/// [`classify`] with AVX2: two 32-byte halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn classify_avx2(block: &[u8; 64]) -> [u64; 5] {
    use std::arch::x86_64::*;
    let mut m = [0u64; 5];
    for half in 0..2 {
        // SAFETY: the load reads 32 bytes inside `block`.
        let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(32 * half).cast::<__m256i>()) };
        let low = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
        let bits = [
            _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8)),
            _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8)),
            _mm256_cmpeq_epi8(low, _mm256_set1_epi8(b'{' as i8)),
            _mm256_cmpeq_epi8(low, _mm256_set1_epi8(b'}' as i8)),
            _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b',' as i8)),
        ];
        for (k, b) in bits.into_iter().enumerate() {
            m[k] |= (_mm256_movemask_epi8(b) as u32 as u64) << (32 * half);
        }
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
fn classify(block: &[u8; 64]) -> [u64; 5] {
    let mut m = [0u64; 5];
    for (i, &b) in block.iter().enumerate() {
        let k = match b {
            b'"' => 0,
            b'\\' => 1,
            b'{' | b'[' => 2,
            b'}' | b']' => 3,
            b',' => 4,
            _ => continue,
        };
        m[k] |= 1 << i;
    }
    m
}

/// Bit i set where an odd number of bits 0..=i of `x` are: from an opening quote up to (not
/// including) its closing quote, when `x` is a block's quotes.
#[inline]
pub(super) fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

fn blank(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
}

/// Whether `b` (what lies between a top-level `{` and the next `[`) is `"Records" :`.
fn records_key(b: &[u8]) -> bool {
    let b = b.trim_ascii();
    b.strip_prefix(b"\"Records\"")
        .is_some_and(|rest| rest.trim_ascii() == b":")
}

impl Splitter {
    pub(crate) fn new() -> Self {
        Splitter {
            in_string: 0,
            escaped: 0,
            depth: 0,
            state: State::Top,
            scanned: 0,
            start: 0,
            stopped: false,
            #[cfg(target_arch = "x86_64")]
            wide: std::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            wide: false,
        }
    }

    /// The first byte still needed: everything before it has been handed out.
    pub(crate) fn keep(&self) -> usize {
        self.start
    }

    /// The caller dropped the first `n` bytes of its buffer (`n <= keep()`).
    pub(crate) fn shift(&mut self, n: usize) {
        self.start -= n;
        self.scanned -= n;
    }

    /// Scans `buf` from where the last call stopped, calling `out` with each complete piece.
    /// Without `eof`, a last partial block of under 64 bytes waits for more input. Returns
    /// false once an error piece has been given (the rest is not looked at).
    pub(crate) fn split(&mut self, buf: &[u8], eof: bool, out: &mut dyn FnMut(Piece)) -> bool {
        self.scan(buf, eof, out);
        if eof && !self.stopped {
            self.finish(buf, out);
        }
        !self.stopped
    }

    /// Hands out every piece complete in `buf`, which is all there will be (reading failed):
    /// what is open at its end is not handed out.
    pub(crate) fn split_complete(&mut self, buf: &[u8], out: &mut dyn FnMut(Piece)) -> bool {
        self.scan(buf, true, out);
        !self.stopped
    }

    fn scan(&mut self, buf: &[u8], last: bool, out: &mut dyn FnMut(Piece)) {
        #[cfg(target_arch = "x86_64")]
        if self.wide {
            // SAFETY: AVX2 was detected at run time.
            return unsafe { self.scan_avx2(buf, last, out) };
        }
        self.scan_with(buf, last, out, classify)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn scan_avx2(&mut self, buf: &[u8], last: bool, out: &mut dyn FnMut(Piece)) {
        // SAFETY: this function runs only where AVX2 is.
        self.scan_with(buf, last, out, |b| unsafe { classify_avx2(b) })
    }

    #[inline(always)]
    fn scan_with(
        &mut self,
        buf: &[u8],
        last: bool,
        out: &mut dyn FnMut(Piece),
        classify: impl Fn(&[u8; 64]) -> [u64; 5],
    ) {
        while !self.stopped && self.scanned < buf.len() {
            let base = self.scanned;
            let n = (buf.len() - base).min(64);
            if n < 64 && !last {
                break;
            }
            let (mut brackets, mut commas) = match buf[base..].first_chunk::<64>() {
                Some(block) => self.structural(classify(block)),
                None => {
                    let mut block = [b' '; 64];
                    block[..n].copy_from_slice(&buf[base..]);
                    self.structural(classify(&block))
                }
            };
            self.scanned = base + n;
            // Commas matter only between records (and at the top): inside a record, only
            // brackets are visited, and the commas passed over are dropped.
            loop {
                let m = if self.wants_commas() {
                    brackets | commas
                } else {
                    brackets
                };
                if m == 0 {
                    break;
                }
                let i = m.trailing_zeros();
                let upto = u64::MAX >> (63 - i);
                brackets &= !upto;
                commas &= !upto;
                self.event(buf, base + i as usize, out);
                if self.stopped {
                    return;
                }
            }
        }
    }

    #[inline]
    fn wants_commas(&self) -> bool {
        match self.state {
            State::Records { level, .. } => self.depth == level,
            State::Top | State::Header => true,
            State::AfterRecords | State::Whole => false,
        }
    }

    /// The brackets and the commas of one block outside strings, carrying string and escape
    /// state over from the block before.
    #[inline(always)]
    fn structural(&mut self, masks: [u64; 5]) -> (u64, u64) {
        let [quote, backslash, open, close, comma] = masks;
        let escaped = escaped(backslash, &mut self.escaped);
        let inside = prefix_xor(quote & !escaped) ^ self.in_string;
        self.in_string = ((inside as i64) >> 63) as u64;
        ((open | close) & !inside, comma & !inside)
    }

    fn stop(&mut self, out: &mut dyn FnMut(Piece), at: usize, eof: bool, what: &'static str) {
        self.stopped = true;
        out(Piece::Error {
            at,
            eof,
            what,
            junk: false,
        });
    }

    /// Something other than a document between top-level values: at its first byte before
    /// `p`, else at `p`.
    fn junk(&mut self, buf: &[u8], out: &mut dyn FnMut(Piece), p: usize) {
        let at = buf[self.start..p]
            .iter()
            .position(|b| !b" \n\r\t".contains(b))
            .map_or(p, |k| self.start + k);
        self.stopped = true;
        out(Piece::Error {
            at,
            eof: false,
            what: "expected `{` or `[`",
            junk: true,
        });
    }

    fn event(&mut self, buf: &[u8], p: usize, out: &mut dyn FnMut(Piece)) {
        let c = buf[p];
        match c {
            b'{' | b'[' => {
                self.depth += 1;
                match self.state {
                    State::Top => {
                        if !blank(&buf[self.start..p]) {
                            return self.junk(buf, out, p);
                        }
                        if c == b'[' {
                            self.state = State::Records {
                                level: 1,
                                first: true,
                            };
                            self.start = p + 1;
                        } else {
                            self.state = State::Header;
                            self.start = p;
                        }
                    }
                    State::Header => {
                        if c == b'[' && records_key(&buf[self.start + 1..p]) {
                            self.state = State::Records {
                                level: 2,
                                first: true,
                            };
                            self.start = p + 1;
                        } else {
                            self.state = State::Whole;
                        }
                    }
                    _ => {}
                }
            }
            b',' => match self.state {
                State::Records { level, .. } if self.depth == level => {
                    if blank(&buf[self.start..p]) {
                        return self.stop(out, p, false, "expected value");
                    }
                    out(Piece::Record(self.start..p));
                    self.state = State::Records { level, first: false };
                    self.start = p + 1;
                }
                State::Header if self.depth == 1 => self.state = State::Whole,
                State::Top => self.junk(buf, out, p),
                _ => {}
            },
            _ => {
                if self.depth == 0 {
                    return self.junk(buf, out, p);
                }
                let depth = self.depth;
                self.depth -= 1;
                match self.state {
                    State::Records { level, first } if depth == level => {
                        // A `}` does not close a list: the stream reads it as the next element
                        // (after a comma or `[`) or as junk after one.
                        let element = &buf[self.start..p];
                        if !blank(element) {
                            out(Piece::Record(self.start..p));
                        } else if c == b'}' {
                            return self.stop(out, p, false, "expected value");
                        } else if !first {
                            return self.stop(out, p, false, "trailing comma");
                        }
                        if c == b'}' {
                            return self.stop(out, p, false, "expected `,` or `]`");
                        }
                        self.state = if level == 1 {
                            State::Top
                        } else {
                            State::AfterRecords
                        };
                        self.start = p + 1;
                    }
                    State::AfterRecords if depth == 1 => {
                        // Not a bare `}`: serde_json reads the tail (a `]` is an error there).
                        if c != b'}' || !blank(&buf[self.start..p]) {
                            out(Piece::Tail(self.start..p + 1));
                        }
                        self.state = State::Top;
                        self.start = p + 1;
                    }
                    State::Header | State::Whole if depth == 1 => {
                        out(Piece::Document(self.start..p + 1));
                        self.state = State::Top;
                        self.start = p + 1;
                    }
                    _ => {}
                }
            }
        }
    }

    /// The end of the stream: whatever is open is handed out, for its parser to report.
    fn finish(&mut self, buf: &[u8], out: &mut dyn FnMut(Piece)) {
        let end = buf.len();
        match self.state {
            State::Top => {
                if !blank(&buf[self.start..end]) {
                    return self.junk(buf, out, end);
                }
            }
            State::Records { first, .. } => {
                let element = &buf[self.start..end];
                if !blank(element) {
                    out(Piece::Record(self.start..end));
                    return self.stop(out, end, true, "EOF while parsing a list");
                }
                let what = if first {
                    "EOF while parsing a list"
                } else {
                    "EOF while parsing a value"
                };
                return self.stop(out, end, true, what);
            }
            State::AfterRecords => out(Piece::Tail(self.start..end)),
            State::Header | State::Whole => out(Piece::Document(self.start..end)),
        }
        self.start = end;
        if self.state != State::Top {
            self.stopped = true;
        }
    }
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
