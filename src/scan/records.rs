//! The record reader: any stream of CloudTrail documents cut into buffers of whole records,
//! with bounded memory. `scan` hands those buffers to its workers; [`for_each_record`] is the
//! same reader for one object at a time (an S3 source).

use std::fmt;
use std::io::{self, Read};
use std::ops::ControlFlow;

use super::split::{Piece, Splitter};

/// Where byte 0 of a buffer lies in its input: its line (from 1) and how many bytes of that
/// line come before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Origin {
    pub line: u64,
    pub before: u64,
}

impl Origin {
    pub(crate) const START: Origin = Origin { line: 1, before: 0 };

    /// The origin of the byte that follows `bytes` (which start at `self`).
    pub(crate) fn after(self, bytes: &[u8]) -> Origin {
        match memchr::memrchr(b'\n', bytes) {
            None => Origin {
                line: self.line,
                before: self.before + bytes.len() as u64,
            },
            Some(last) => Origin {
                line: self.line + memchr::memchr_iter(b'\n', bytes).count() as u64,
                before: (bytes.len() - last - 1) as u64,
            },
        }
    }

    /// Line and column of byte `at` of `buf` (which starts at `self`), as serde_json counts
    /// them: a byte's own column from 1, or at the end of the input the bytes on its line.
    pub(crate) fn locate(self, buf: &[u8], at: usize, eof: bool) -> (u64, u64) {
        let o = self.after(&buf[..at]);
        (o.line, o.before + u64::from(!eof))
    }
}

/// A buffer of whole pieces.
pub(crate) struct Cut {
    pub data: Vec<u8>,
    pub pieces: Vec<Piece>,
    pub origin: Origin,
}

/// Why reading stopped early: the line the stream had reached, and the error.
pub(crate) struct ReadError {
    pub line: u64,
    pub error: io::Error,
    /// Bytes read before it.
    pub bytes: u64,
}

/// Cuts a stream into buffers of whole pieces of about `size` bytes (more when one piece is
/// larger), starting with `data` (bytes already read from it). Each buffer is handed to
/// `ship`, which returns false to stop. Returns the bytes read, `data` included. After an
/// error piece nothing more is read. On a read error, the pieces complete before it have been
/// shipped.
pub(crate) fn cut(
    r: &mut dyn Read,
    mut data: Vec<u8>,
    size: usize,
    new_buffer: &mut dyn FnMut() -> Vec<u8>,
    ship: &mut dyn FnMut(Cut) -> bool,
) -> Result<u64, ReadError> {
    let mut splitter = Splitter::new();
    let mut origin = Origin::START;
    let mut total = data.len() as u64;
    let mut want = size;
    let mut eof = false;
    let mut failed = None;
    loop {
        if !eof && data.len() < want {
            let before = data.len();
            let read = (&mut *r).take((want - before) as u64).read_to_end(&mut data);
            total += (data.len() - before) as u64;
            match read {
                Ok(n) => eof = before + n < want,
                // What was read before the error is still cut: its whole pieces count.
                Err(error) => {
                    let line = origin.after(&data).line;
                    failed = Some(ReadError {
                        line,
                        error,
                        bytes: total,
                    });
                }
            }
        }
        let mut pieces = Vec::new();
        let going = match failed {
            Some(_) => splitter.split_complete(&data, &mut |p| pieces.push(p)),
            None => splitter.split(&data, eof, &mut |p| pieces.push(p)),
        };
        let keep = if going && !eof {
            splitter.keep()
        } else {
            data.len()
        };
        if keep == 0 && !eof && failed.is_none() {
            // One piece is larger than the buffer: read more into it.
            want = data.len() * 2;
            continue;
        }
        want = size;
        let done = eof || !going || failed.is_some();
        let mut next = Vec::new();
        let next_origin = origin.after(&data[..keep]);
        if !done {
            next = new_buffer();
            next.extend_from_slice(&data[keep..]);
            splitter.shift(keep);
        }
        if !pieces.is_empty() && !ship(Cut { data, pieces, origin }) {
            return Ok(total);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if done {
            return Ok(total);
        }
        data = next;
        origin = next_origin;
    }
}

/// Where a CloudTrail log file stops being readable.
#[derive(Debug)]
pub struct RecordError {
    /// Line (from 1) and column (from 1) in the decompressed text.
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for RecordError {}

/// Calls `f` with the bytes of each record of one CloudTrail log file, in order, with memory
/// bounded by the largest record (not the file): the reader `trailguard scan` uses.
///
/// `reader` is the object's content, gzipped (detected by its magic bytes, any number of
/// members) or not. Records are the elements of the top-level object's `Records` array
/// (CloudTrail's `{"Records": [...]}`) or of a top-level array; any other top-level value (a
/// single record, a digest file) is handed over whole. A stream may hold several documents one
/// after another. The bytes are one JSON value each, found by counting brackets outside strings
/// and not yet validated: parse them, for example with
/// [`RuleSet::matching`](crate::rules::RuleSet::matching), which reports a malformed record.
///
/// `f` returns [`ControlFlow::Break`] to stop early. Returns the number of pieces handed over,
/// or where the stream stopped being JSON or could not be read (after handing over every
/// record before that point).
///
/// ```
/// use std::ops::ControlFlow;
/// let rules = trailguard::rules::RuleSet::builtin();
/// let log = br#"{"Records":[{"eventSource":"kms.amazonaws.com","eventName":"DisableKey"},{"eventName":"Decrypt"}]}"#;
/// let mut hits = Vec::new();
/// let n = trailguard::scan::for_each_record(&log[..], |record| {
///     hits.extend(rules.matching(record).unwrap_or_default());
///     ControlFlow::Continue(())
/// })
/// .unwrap();
/// assert_eq!((n, hits.len()), (2, 1));
/// ```
pub fn for_each_record<R: Read>(
    mut reader: R,
    mut f: impl FnMut(&[u8]) -> ControlFlow<()>,
) -> Result<u64, RecordError> {
    let io_error = |line, e: io::Error| RecordError {
        line,
        column: 0,
        message: format!("cannot read: {e}"),
    };
    let mut magic = Vec::with_capacity(2);
    reader
        .by_ref()
        .take(2)
        .read_to_end(&mut magic)
        .map_err(|e| io_error(1, e))?;
    let mut stream: Box<dyn Read + '_> = if magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(
            io::Cursor::new(magic).chain(reader),
        ))
    } else {
        Box::new(io::Cursor::new(magic).chain(reader))
    };
    let (mut count, mut failed) = (0u64, None);
    let result = cut(&mut stream, Vec::new(), 1 << 20, &mut Vec::<u8>::new, &mut |c| {
        for p in &c.pieces {
            let range = match p {
                Piece::Record(r) | Piece::Document(r) => r.clone(),
                Piece::Tail(_) => continue,
                Piece::Error { at, eof, what, .. } => {
                    let (line, column) = c.origin.locate(&c.data, *at, *eof);
                    failed = Some(RecordError {
                        line,
                        column,
                        message: (*what).to_owned(),
                    });
                    return false;
                }
            };
            count += 1;
            if f(c.data[range].trim_ascii()).is_break() {
                return false;
            }
        }
        true
    });
    match (result, failed) {
        (Err(e), _) => Err(io_error(e.line, e.error)),
        (Ok(_), Some(e)) => Err(e),
        (Ok(_), None) => Ok(count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn records(input: &[u8]) -> (Vec<String>, Option<String>) {
        let mut got = Vec::new();
        let r = for_each_record(input, |b| {
            got.push(String::from_utf8_lossy(b).into_owned());
            ControlFlow::Continue(())
        });
        (got, r.err().map(|e| e.to_string()))
    }

    #[test]
    fn records_of_plain_and_gzipped_log_files() {
        let rec = |i: usize| format!(r#"{{"eventID":"{i}","eventName":"a]}},\"[{{","x":[{{"y":"\\"}}]}}"#);
        let all: Vec<String> = (0..40_000).map(rec).collect();
        let doc = format!("{{\"Records\":[{}]}}", all.join(",\n "));
        assert!(doc.len() > 2 << 20, "spans several buffers");
        assert_eq!(records(doc.as_bytes()), (all.clone(), None));
        // Two gzip members, as concatenated log files are.
        let mut gz = Vec::new();
        for part in [&doc, &format!("{{\"Records\":[{}]}}", rec(7))] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part.as_bytes()).unwrap();
            gz.extend(e.finish().unwrap());
        }
        let (got, err) = records(&gz);
        assert_eq!((got.len(), err), (40_001, None));
        assert_eq!(got[40_000], rec(7));
        // Every record's bytes parse, and stopping early stops.
        assert!(
            got.iter()
                .all(|r| serde_json::from_str::<serde_json::Value>(r).is_ok())
        );
        let mut n = 0;
        let stopped = for_each_record(&gz[..], |_| {
            n += 1;
            if n == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!((stopped.unwrap(), n), (3, 3));
    }

    #[test]
    fn other_documents_whole_and_errors_where_they_are() {
        let digest = r#"{"awsAccountId":"1","logFiles":[{"s3Object":"a"}]}"#;
        assert_eq!(records(digest.as_bytes()), (vec![digest.to_owned()], None));
        let (got, err) = records(b"{\"Records\":[{\"a\":1},\n{\"a\":2},]}");
        assert_eq!(got, [r#"{"a":1}"#, r#"{"a":2}"#]);
        assert_eq!(err.as_deref(), Some("line 2 column 9: trailing comma"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"Records\":[{\"a\":1}]}").unwrap();
        let mut bytes = gz.finish().unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        let (_, err) = records(&bytes);
        assert!(err.unwrap().contains("cannot read"));
    }
}
