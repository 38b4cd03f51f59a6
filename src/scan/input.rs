//! Inputs: paths expanded to files in order, opening them (gzip or not), and telling a
//! document from lines by the first bytes.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek};
use std::path::{Path, PathBuf};

/// One input of a scan, in the order given.
pub(crate) enum Input {
    File(PathBuf),
    Stdin,
    /// A path that could not be listed or read: reported in its place.
    Unreadable(String),
}

impl Input {
    pub(crate) fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "-".into(),
            Input::Unreadable(_) => String::new(),
        }
    }

    /// The decompressed stream, or why it cannot be opened.
    pub(crate) fn open(&self) -> Result<Box<dyn Read + Send>, String> {
        match self {
            Input::Stdin => Ok(Box::new(io::stdin())),
            Input::Unreadable(e) => Err(e.clone()),
            Input::File(p) => {
                let name = p.display();
                let mut file = File::open(p).map_err(|e| format!("{name}: cannot open: {e}"))?;
                let mut magic = [0u8; 2];
                let mut n = 0;
                while n < 2 {
                    match file.read(&mut magic[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("{name}:1: cannot read: {e}")),
                    }
                }
                file.seek(io::SeekFrom::Start(0))
                    .map_err(|e| format!("{name}:1: cannot read: {e}"))?;
                Ok(if n == 2 && magic == [0x1f, 0x8b] {
                    Box::new(flate2::read::MultiGzDecoder::new(file))
                } else {
                    Box::new(file)
                })
            }
        }
    }
}

/// Every path expanded: files as they are, directories recursively in name order, `-` for
/// standard input.
pub(crate) fn expand(paths: &[PathBuf]) -> Vec<Input> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(Input::Stdin);
        } else {
            collect(p, &mut out);
        }
    }
    out
}

fn collect(p: &Path, out: &mut Vec<Input>) {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => match std::fs::read_dir(p) {
            Ok(entries) => {
                let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                children.sort();
                for c in children {
                    collect(&c, out);
                }
            }
            Err(e) => out.push(Input::Unreadable(format!("{}: cannot list: {e}", p.display()))),
        },
        Ok(_) => out.push(Input::File(p.to_path_buf())),
        Err(e) => out.push(Input::Unreadable(format!("{}: {e}", p.display()))),
    }
}

/// What an input holds, from its first bytes.
#[derive(Debug, PartialEq)]
pub(crate) enum Shape {
    /// Nothing but whitespace.
    Empty,
    /// Not JSON: the message for it.
    NotJson(String),
    /// One document (or several): `[`, `{"Records"`, `{"Events"`.
    Document,
    /// Lines, unless the first line turns out not to be complete JSON (a pretty document).
    Lines,
}

/// The shape of an input from its first bytes, leading whitespace skipped (`head`: at least
/// 64 bytes of them when the input has that many).
pub(crate) fn shape(head: &[u8], name: &str) -> Shape {
    let head: Vec<u8> = head
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(48)
        .filter(|b| !b.is_ascii_whitespace())
        .copied()
        .collect();
    match head.first() {
        None => Shape::Empty,
        Some(b'{' | b'[') => {
            if head.starts_with(b"[") || head.starts_with(b"{\"Records\"") || head.starts_with(b"{\"Events\"")
            {
                Shape::Document
            } else {
                Shape::Lines
            }
        }
        Some(_) => {
            let start = String::from_utf8_lossy(&head[..head.len().min(16)]).into_owned();
            Shape::NotJson(format!("{name}:1: not CloudTrail JSON (starts with {start:?})"))
        }
    }
}

/// The first bytes of a buffer from its first non-whitespace byte, for [`shape`].
pub(crate) fn head(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(buf.len());
    &buf[start..buf.len().min(start + 64)]
}

/// Counts the bytes and newlines a stream gave, for the summary and for where reading failed.
pub(crate) struct Counting<R> {
    pub inner: R,
    pub bytes: u64,
    pub newlines: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.bytes += k as u64;
        self.newlines += memchr::memchr_iter(b'\n', &buf[..k]).count() as u64;
        Ok(k)
    }
}

/// The next newline-aligned chunk of about `size` bytes into `chunk` (emptied first): whole
/// lines only (the last without its newline at the end of the input). Empty at the end. On a
/// read error, the whole lines read so far and the error.
pub(crate) fn lines_chunk(
    r: &mut dyn BufRead,
    size: usize,
    mut chunk: Vec<u8>,
) -> (Vec<u8>, Option<io::Error>) {
    chunk.clear();
    let result = (&mut *r).take(size as u64).read_to_end(&mut chunk).and_then(|n| {
        if n == size {
            r.read_until(b'\n', &mut chunk).map(|_| ())
        } else {
            Ok(())
        }
    });
    match result {
        Ok(()) => (chunk, None),
        Err(e) => {
            let whole = memchr::memrchr(b'\n', &chunk).map_or(0, |i| i + 1);
            chunk.truncate(whole);
            (chunk, Some(e))
        }
    }
}
