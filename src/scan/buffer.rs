//! Evaluating a buffer held in memory: a file read whole, or a job's buffer of pieces.

use std::io::{self, Read};

use super::check;
use super::emit::Emitter;
use super::input::{Shape, head, shape};
use super::records::{Cut, Origin};
use super::split::{Piece, Splitter};

/// Reads `r` into `buf` until its end or `limit` bytes; returns how many, and a read error.
/// `buf` stays initialized between files: its memory is zeroed once, not for every file.
pub(crate) fn fill(r: &mut dyn Read, buf: &mut Vec<u8>, limit: usize) -> (usize, Option<io::Error>) {
    let mut used = 0;
    loop {
        if used == buf.len() {
            if used >= limit {
                return (used, None);
            }
            buf.resize((used * 2).clamp(256 * 1024, limit), 0);
        }
        match r.read(&mut buf[used..]) {
            Ok(0) => return (used, None),
            Ok(n) => used += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (used, Some(e)),
        }
    }
}

/// A file read whole: scanned as the single-threaded path would stream it.
pub(crate) fn whole(em: &mut Emitter, buf: &[u8], name: &str, out: &mut Vec<u8>, error: Option<io::Error>) {
    let document = |em: &mut Emitter, out: &mut Vec<u8>| {
        // A log file, whole and valid: checked and cut in one pass.
        if error.is_none() && em.prefilters() {
            let mut records = std::mem::take(&mut em.records);
            let log_file = check::log_file(buf, &mut records);
            let broke = log_file
                && records.iter().any(|r| {
                    one(
                        em,
                        buf,
                        &Piece::Record(r.range.clone()),
                        r.plain,
                        Origin::START,
                        name,
                        out,
                    )
                });
            em.records = records;
            if log_file {
                return !broke;
            }
        }
        // Otherwise cut like a larger file's jobs, and evaluated here. After a read error,
        // what is open at the end of the buffer is left out: the read error is the one
        // reported.
        let mut splitter = Splitter::new();
        let mut found = Vec::new();
        match error {
            Some(_) => splitter.split_complete(buf, &mut |p| found.push(p)),
            None => splitter.split(buf, true, &mut |p| found.push(p)),
        };
        !evaluate(em, buf, &found, Origin::START, name, out)
    };
    let read_error_counts = match shape(head(buf), name) {
        Shape::Empty => true,
        Shape::NotJson(message) => {
            em.stats.unreadable.push(message);
            false
        }
        Shape::Document => document(em, out),
        Shape::Lines => {
            let end = memchr::memchr(b'\n', buf).map_or(buf.len(), |i| i + 1);
            match em.first_line(&buf[..end], name) {
                None => document(em, out),
                Some(found) => {
                    out.extend(found);
                    let rest = &buf[end..];
                    // After a read error, only whole lines count.
                    let rest = match error {
                        Some(_) => &rest[..memchr::memrchr(b'\n', rest).map_or(0, |i| i + 1)],
                        None => rest,
                    };
                    em.lines(rest, name, 2, out);
                    true
                }
            }
        }
    };
    if let Some(e) = error
        && read_error_counts
    {
        let line = memchr::memchr_iter(b'\n', buf).count() + 1;
        em.stats
            .unreadable
            .push(format!("{name}:{line}: cannot read: {e}"));
    }
}

/// Evaluates the pieces of one buffer; true when the document broke in it.
pub(crate) fn pieces(em: &mut Emitter, c: &Cut, name: &str, out: &mut Vec<u8>) -> bool {
    evaluate(em, &c.data, &c.pieces, c.origin, name, out)
}

/// Evaluates pieces cut from `data`, which starts at `origin`; true when the document broke.
fn evaluate(
    em: &mut Emitter,
    data: &[u8],
    pieces: &[Piece],
    origin: Origin,
    name: &str,
    out: &mut Vec<u8>,
) -> bool {
    pieces.iter().any(|p| one(em, data, p, false, origin, name, out))
}

/// Evaluates one piece of `data` (`checked`: a record [`check::log_file`] found plain); true
/// when the document broke there.
fn one(
    em: &mut Emitter,
    data: &[u8],
    p: &Piece,
    checked: bool,
    origin: Origin,
    name: &str,
    out: &mut Vec<u8>,
) -> bool {
    const TAIL: &[u8] = b"{\"Records\":[]";
    // The first read's error (or the splitter's words), and what is read again through the
    // stream's reader on an error: from where, after what, and whether what it reads before
    // the error counts (see [`restream`]).
    let (error, start, prefix, again, counts) = match p {
        Piece::Record(r) => {
            let text = &data[r.clone()];
            let error = if checked {
                em.checked_record(text, name, out)
            } else {
                em.record(text, name, out)
            };
            // As an element of a list, on past the record: a value before junk is a record.
            (error.map(Ok), r.start, &b"["[..], &data[r.start..], true)
        }
        Piece::Document(r) => {
            let mut de = serde_json::Deserializer::from_slice(&data[r.clone()]);
            let error = em.documents(&mut de, name, out).unwrap_or(None);
            (error.map(Ok), r.start, &b""[..], &data[r.clone()], false)
        }
        Piece::Tail(r) => {
            let tail = [TAIL, &data[r.clone()]].concat();
            let mut de = serde_json::Deserializer::from_slice(&tail);
            let error = em.documents(&mut de, name, out).unwrap_or(None);
            (error.map(Ok), r.start, TAIL, &data[r.clone()], false)
        }
        Piece::Error { at, eof, what, junk } => {
            let (line, column) = origin.locate(data, *at, *eof);
            let said = format!("{name}:{line}: {what} at line {line} column {column}");
            if !*junk {
                em.stats.unreadable.push(said);
                return true;
            }
            (Some(Err(said)), *at, &b""[..], &data[*at..], false)
        }
    };
    let Some(first) = error else {
        return false;
    };
    let origin = origin.after(&data[..start]);
    let message = match (restream(em, prefix, again, counts, name, out), first) {
        (Some(e), _) | (None, Ok(e)) => located(name, &e, origin, prefix.len() as u64),
        // Not found again (it always is): what the first read said.
        (None, Err(said)) => said,
    };
    em.stats.unreadable.push(message);
    true
}

/// The error path: `text` after `prefix` read again as the single-threaded path reads it,
/// through serde_json's stream reader, for its error in its words and at its place (the slice
/// reader places some a byte earlier: one it peeked at, a number's end, a control character
/// in a string it skips). With `counts`, what is read before the error counts and gives its
/// findings (a record before junk in a list, which the first read did not take); otherwise
/// the first read counted it.
fn restream(
    em: &mut Emitter,
    prefix: &[u8],
    text: &[u8],
    counts: bool,
    name: &str,
    out: &mut Vec<u8>,
) -> Option<serde_json::Error> {
    let mut de = serde_json::Deserializer::from_reader(prefix.chain(text));
    if counts {
        return em.documents(&mut de, name, out).unwrap_or(None);
    }
    let saved = std::mem::take(&mut em.stats);
    let error = em.documents(&mut de, name, &mut io::sink()).unwrap_or(None);
    em.stats = saved;
    error
}

/// A parse error in `prefix` and then a piece that starts at `origin` (the prefix `prefix`
/// bytes long, all on the first line), with its line and column in the input.
fn located(name: &str, e: &serde_json::Error, origin: Origin, prefix: u64) -> String {
    let (l, col) = (e.line() as u64, e.column() as u64);
    if l == 0 {
        // No place (as the stream reports it).
        return format!("{name}:0: {e}");
    }
    let line = origin.line + l.saturating_sub(1);
    let column = if l <= 1 {
        (origin.before + col).saturating_sub(prefix)
    } else {
        col
    };
    let message = e.to_string();
    let what = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(w, _)| w);
    format!("{name}:{line}: {what} at line {line} column {column}")
}
