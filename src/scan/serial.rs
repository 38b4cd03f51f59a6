//! The single-threaded path (`TRAILGUARD_SCAN_THREADS=1`, and [`super::Scanner::scan_reader`]):
//! every input in order on the calling thread, a document through serde_json's streaming
//! parser, lines in newline-aligned chunks. The parallel path must give the same output; the
//! tests hold it to that.

use std::io::{self, BufRead, BufReader, Read, Write};

use super::emit::Emitter;
use super::input::{Counting, Shape, lines_chunk, shape};

/// Scans one stream.
pub(crate) fn scan_reader(
    em: &mut Emitter,
    reader: Box<dyn Read + '_>,
    name: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    em.stats.files += 1;
    let mut r = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: reader,
            bytes: 0,
            newlines: 0,
        },
    );
    let result = scan_buffered(em, &mut r, name, out);
    em.stats.bytes += r.get_ref().bytes;
    if let Err(e) = result {
        if !is_read_error(&e) {
            return Err(e);
        }
        let line = r.get_ref().newlines + 1;
        em.stats
            .unreadable
            .push(format!("{name}:{line}: cannot read: {}", strip(&e)));
    }
    Ok(())
}

/// A failed read is wrapped so that it can be told from a failed write.
struct ReadFailed(io::Error);

impl std::fmt::Debug for ReadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::fmt::Display for ReadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for ReadFailed {}

fn read_failed(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), ReadFailed(e))
}

fn is_read_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<ReadFailed>())
}

fn strip(e: &io::Error) -> String {
    e.get_ref().map_or_else(|| e.to_string(), |i| i.to_string())
}

fn scan_buffered(
    em: &mut Emitter,
    r: &mut BufReader<Counting<Box<dyn Read + '_>>>,
    name: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    // Peek past leading whitespace to choose between one document and lines.
    let head = loop {
        let buf = r.fill_buf().map_err(read_failed)?;
        if buf.is_empty() {
            return Ok(());
        }
        let skip = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if skip < buf.len() {
            break buf[skip..buf.len().min(skip + 64)].to_vec();
        }
        let len = buf.len();
        r.consume(len);
    };
    match shape(&head, name) {
        Shape::Empty => Ok(()),
        Shape::NotJson(message) => {
            em.stats.unreadable.push(message);
            Ok(())
        }
        Shape::Document => document(em, r, name, out),
        Shape::Lines => {
            // The first line decides: a complete JSON value means lines; otherwise one document.
            let mut first = Vec::new();
            r.read_until(b'\n', &mut first).map_err(read_failed)?;
            match em.first_line(&first, name) {
                None => {
                    let mut chained = io::Cursor::new(first).chain(&mut *r);
                    document(em, &mut chained, name, out)
                }
                Some(found) => {
                    out.write_all(&found)?;
                    lines(em, r, name, 2, out)
                }
            }
        }
    }
}

/// A document (or several, one after another), streamed.
fn document(em: &mut Emitter, r: &mut dyn Read, name: &str, out: &mut dyn Write) -> io::Result<()> {
    let mut de = serde_json::Deserializer::from_reader(r);
    match em.documents(&mut de, name, out)? {
        Some(e) if e.is_io() => Err(read_failed(io::Error::other(e.to_string()))),
        Some(e) => {
            em.stats.unreadable.push(format!("{name}:{}: {e}", e.line()));
            Ok(())
        }
        None => Ok(()),
    }
}

/// Lines, in newline-aligned chunks.
fn lines(
    em: &mut Emitter,
    r: &mut dyn BufRead,
    name: &str,
    first_line: u64,
    out: &mut dyn Write,
) -> io::Result<()> {
    let (mut line, mut chunk) = (first_line, Vec::new());
    loop {
        let error;
        (chunk, error) = lines_chunk(r, 1 << 20, chunk);
        if chunk.is_empty() && error.is_none() {
            return Ok(());
        }
        let mut buf = Vec::new();
        em.lines(&chunk, name, line, &mut buf);
        out.write_all(&buf)?;
        line += memchr::memchr_iter(b'\n', &chunk).count() as u64;
        if let Some(e) = error {
            return Err(read_failed(e));
        }
    }
}
