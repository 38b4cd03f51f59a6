//! The parallel path: worker threads share one queue of files and one bounded queue of jobs,
//! and the calling thread writes their output in input order.
//!
//! A worker takes the next file (at most 64 files per worker past the oldest one not yet written)
//! and reads up to [`WHOLE`] bytes of it, decompressed (a smaller gzip file in one libdeflate
//! call; anything libdeflate refuses through flate2's stream). A file that ends within that is scanned
//! there, whole: one document through serde_json from a slice, or its lines. A larger file
//! waits until every file before it is written (helping with jobs meanwhile), then its worker
//! becomes its reader: it cuts it into [`CHUNK`]-sized jobs of whole records (a document, by
//! the [`super::split`] scanner) or whole lines, and queues them for every worker. When the
//! queue is full the reader evaluates the oldest job itself rather than wait. Results carry
//! (file, sequence) and are written in that order; a document's first error drops what its
//! file yields after it, as the streaming parser stops there.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, mpsc};

use super::Stats;
use super::buffer::{fill, pieces, whole};
use super::emit::{Compiled, Emitter};
use super::inflate::Gunzip;
use super::input::{Input, Shape, head, lines_chunk, shape};
use super::records::{Cut, ReadError, cut};

/// A file up to this size (decompressed) is read whole and scanned by one worker.
const WHOLE: usize = 4 << 20;
/// The size of a job cut from a larger file.
const CHUNK: usize = 1 << 20;

/// A worker's means to read a small file in one go.
struct Small {
    /// The file as it is on disk.
    raw: Vec<u8>,
    gunzip: Gunzip,
}

impl Small {
    /// A regular file of fewer than [`WHOLE`] bytes, gzipped (inflated by libdeflate, to fewer
    /// than [`WHOLE`] bytes) or not, into `buf`; returns how many bytes. `None` for anything
    /// else (standard input, a named pipe or device, a larger file, damaged gzip, a read
    /// error): the file is then opened again and streamed, which reports what there is to
    /// report. Only a regular file can be read twice: what was read of a pipe is gone.
    fn read(&mut self, input: &Input, buf: &mut Vec<u8>) -> Option<usize> {
        let Input::File(path) = input else {
            return None;
        };
        // Told before opening: opening a named pipe waits for a writer, and a writer that
        // writes once would be gone when the stream opens it again.
        if !std::fs::metadata(path).ok()?.is_file() {
            return None;
        }
        let mut file = std::fs::File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() >= WHOLE as u64 {
            return None;
        }
        self.raw.clear();
        (&mut file).take(WHOLE as u64).read_to_end(&mut self.raw).ok()?;
        if self.raw.len() >= WHOLE {
            return None;
        }
        if self.raw.starts_with(&[0x1f, 0x8b]) {
            return self.gunzip.inflate(&self.raw, buf, WHOLE);
        }
        std::mem::swap(&mut self.raw, buf);
        Some(buf.len())
    }
}

enum Work {
    Lines { data: Vec<u8>, first_line: u64 },
    Pieces(Cut),
}

struct Job {
    file: usize,
    seq: u64,
    work: Work,
}

/// One piece of output, written when every piece before it has been.
struct Done {
    file: usize,
    seq: u64,
    /// The file's last piece.
    last: bool,
    out: Vec<u8>,
    stats: Stats,
    /// The file's document broke here: what the file yields after this is dropped.
    broken: bool,
}

/// A worker's results on their way to the writing thread, sent a few at a time: a send may
/// wake that thread, which costs more than the work for a small file. Sent before the worker
/// waits, and when it ends: what it holds may be what the others wait for.
struct Outbox {
    tx: mpsc::Sender<Vec<Done>>,
    batch: Vec<Done>,
}

impl Outbox {
    /// Results held before they are sent.
    const BATCH: usize = 8;

    fn send(&mut self, d: Done) {
        self.batch.push(d);
        if self.batch.len() >= Self::BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let _ = self.tx.send(std::mem::take(&mut self.batch));
        }
    }
}

struct Sched {
    next_file: usize,
    /// The oldest file not completely written.
    head: usize,
    /// Files being read.
    active: usize,
    jobs: VecDeque<Job>,
}

struct Ctx<'a, 'r> {
    c: &'a Compiled<'r>,
    inputs: &'a [Input],
    names: Vec<String>,
    sched: Mutex<Sched>,
    cv: Condvar,
    window: usize,
    queue: usize,
    pool: Mutex<Vec<Vec<u8>>>,
    /// A file whose document broke: its reader may stop (`usize::MAX`: none).
    broken: AtomicUsize,
}

enum Task {
    Job(Job),
    File(usize),
    Exit,
}

/// Scans `inputs` on `threads` workers, writing to `out` in input order.
pub(crate) fn run(
    c: &Compiled,
    inputs: &[Input],
    threads: usize,
    out: &mut dyn Write,
    total: &mut Stats,
    progress: &mut dyn FnMut(&Stats),
) -> io::Result<()> {
    let ctx = Ctx {
        c,
        inputs,
        names: inputs.iter().map(Input::name).collect(),
        sched: Mutex::new(Sched {
            next_file: 0,
            head: 0,
            active: 0,
            jobs: VecDeque::new(),
        }),
        cv: Condvar::new(),
        window: 64 * threads,
        queue: 2 * threads,
        pool: Mutex::new(Vec::new()),
        broken: AtomicUsize::new(usize::MAX),
    };
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Vec<Done>>();
        for _ in 0..threads {
            let (ctx, tx) = (&ctx, tx.clone());
            scope.spawn(move || {
                ctx.worker(&mut Outbox {
                    tx,
                    batch: Vec::new(),
                })
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let (mut head, mut seq, mut broken) = (0usize, 0u64, false);
        let mut result = Ok(());
        for d in rx.into_iter().flatten() {
            pending.insert((d.file, d.seq), d);
            while let Some(d) = pending.remove(&(head, seq)) {
                if broken {
                    total.files += d.stats.files;
                    total.bytes += d.stats.bytes;
                } else {
                    if result.is_ok() {
                        result = out.write_all(&d.out);
                        if result.is_err() {
                            ctx.cancel();
                        }
                    }
                    total.merge(d.stats);
                    broken = d.broken;
                }
                if !d.last {
                    seq += 1;
                    continue;
                }
                (head, seq, broken) = (head + 1, 0, false);
                progress(total);
                ctx.lock().head = head;
                ctx.cv.notify_all();
            }
        }
        result
    })
}

impl Ctx<'_, '_> {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a change; first sends what this worker holds, which may be what the others
    /// wait for (the files before a larger file are written only once sent).
    fn wait<'a>(&'a self, s: MutexGuard<'a, Sched>, tx: &mut Outbox) -> MutexGuard<'a, Sched> {
        if tx.batch.is_empty() {
            return self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        drop(s);
        tx.flush();
        self.lock()
    }

    /// Output failed: start nothing more.
    fn cancel(&self) {
        let mut s = self.lock();
        s.next_file = self.inputs.len();
        s.jobs.clear();
        self.broken.store(usize::MAX - 1, Ordering::Relaxed);
        self.cv.notify_all();
    }

    fn worker(&self, tx: &mut Outbox) {
        let mut em = Emitter::new(self.c);
        let mut buf = Vec::new();
        let mut small = Small {
            raw: Vec::new(),
            gunzip: Gunzip::new(),
        };
        loop {
            let task = {
                let mut s = self.lock();
                loop {
                    if let Some(j) = s.jobs.pop_front() {
                        break Task::Job(j);
                    }
                    if s.next_file < self.inputs.len() && s.next_file < s.head + self.window {
                        s.next_file += 1;
                        s.active += 1;
                        break Task::File(s.next_file - 1);
                    }
                    if s.next_file >= self.inputs.len() && s.active == 0 {
                        break Task::Exit;
                    }
                    s = self.wait(s, tx);
                }
            };
            match task {
                Task::Job(j) => self.run(j, &mut em, tx),
                Task::File(f) => {
                    self.file(f, &mut em, &mut buf, &mut small, tx);
                    self.lock().active -= 1;
                    self.cv.notify_all();
                }
                Task::Exit => return tx.flush(),
            }
        }
    }

    fn stopped(&self, f: usize) -> bool {
        let b = self.broken.load(Ordering::Relaxed);
        b == f || b == usize::MAX - 1
    }

    /// Queues a job; with the queue full, evaluates the oldest one first.
    fn push(&self, job: Job, em: &mut Emitter, tx: &mut Outbox) {
        let mut s = self.lock();
        while s.jobs.len() >= self.queue {
            let oldest = s.jobs.pop_front().expect("the queue is full");
            drop(s);
            self.run(oldest, em, tx);
            s = self.lock();
        }
        s.jobs.push_back(job);
        self.cv.notify_all();
    }

    /// Waits until every file before `f` is written, evaluating jobs meanwhile.
    fn wait_for_turn(&self, f: usize, em: &mut Emitter, tx: &mut Outbox) {
        let mut s = self.lock();
        while s.head != f {
            match s.jobs.pop_front() {
                Some(j) => {
                    drop(s);
                    self.run(j, em, tx);
                    s = self.lock();
                }
                None => s = self.wait(s, tx),
            }
        }
    }

    fn new_buffer(&self) -> Vec<u8> {
        let mut b = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(b) = &mut b {
            b.clear();
        }
        b.unwrap_or_else(|| Vec::with_capacity(CHUNK + CHUNK / 4))
    }

    fn recycle(&self, data: Vec<u8>) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 2 * self.queue + 4 && data.capacity() <= 2 * CHUNK {
            pool.push(data);
        }
    }

    /// Evaluates one job and sends its output.
    fn run(&self, job: Job, em: &mut Emitter, tx: &mut Outbox) {
        let name = &self.names[job.file];
        let mut out = Vec::new();
        let mut broken = false;
        match job.work {
            Work::Lines { data, first_line } => {
                em.lines(&data, name, first_line, &mut out);
                self.recycle(data);
            }
            Work::Pieces(c) => {
                broken = pieces(em, &c, name, &mut out);
                self.recycle(c.data);
            }
        }
        if broken {
            self.broken.store(job.file, Ordering::Relaxed);
        }
        tx.send(Done {
            file: job.file,
            seq: job.seq,
            last: false,
            out,
            stats: std::mem::take(&mut em.stats),
            broken,
        });
    }

    /// Reads file `f`: whole, or as the reader of its jobs.
    fn file(&self, f: usize, em: &mut Emitter, buf: &mut Vec<u8>, small: &mut Small, tx: &mut Outbox) {
        let name = &self.names[f];
        let mut out = Vec::new();
        let done = |tx: &mut Outbox, em: &mut Emitter, out, seq| {
            tx.send(Done {
                file: f,
                seq,
                last: true,
                out,
                stats: std::mem::take(&mut em.stats),
                broken: false,
            });
        };
        if let Some(used) = small.read(&self.inputs[f], buf) {
            em.stats.files = 1;
            em.stats.bytes = used as u64;
            whole(em, &buf[..used], name, &mut out, None);
            return done(tx, em, out, 0);
        }
        let mut r = match self.inputs[f].open() {
            Ok(r) => r,
            Err(message) => {
                em.stats.unreadable.push(message);
                return done(tx, em, out, 0);
            }
        };
        let (used, error) = fill(&mut r, buf, WHOLE);
        em.stats.files = 1;
        em.stats.bytes = used as u64;
        if used < WHOLE || error.is_some() {
            whole(em, &buf[..used], name, &mut out, error);
            return done(tx, em, out, 0);
        }
        // A large file: read it in jobs, once every file before it is written. What this
        // worker evaluates meanwhile is sent with its own job, so the file's counts wait.
        em.stats = Stats::default();
        self.wait_for_turn(f, em, tx);
        let mut data = std::mem::take(buf);
        data.truncate(used);
        let mut seq = 1;
        let first_end = memchr::memchr(b'\n', &data).map(|i| i + 1);
        let first = match (shape(head(&data), name), first_end) {
            (Shape::NotJson(message), _) => {
                em.stats.files = 1;
                em.stats.bytes = data.len() as u64;
                em.stats.unreadable.push(message);
                return done(tx, em, out, 0);
            }
            (Shape::Lines, Some(end)) => em.first_line(&data[..end], name).map(|found| (found, end)),
            _ => None,
        };
        // The first line's findings and counts come first, then the jobs, then the file's.
        let (found, end) = first.map_or((Vec::new(), None), |(found, end)| (found, Some(end)));
        tx.send(Done {
            file: f,
            seq: 0,
            last: false,
            out: found,
            stats: std::mem::take(&mut em.stats),
            broken: false,
        });
        let (bytes, error) = match end {
            Some(end) => self.lines(f, &data[end..], r, &mut seq, em, tx),
            None => self.documents(f, data, r, &mut seq, em, tx),
        };
        em.stats.files = 1;
        em.stats.bytes = bytes;
        if let Some(e) = error {
            em.stats
                .unreadable
                .push(format!("{name}:{}: cannot read: {}", e.line, e.error));
        }
        done(tx, em, out, seq);
    }

    /// Cuts a document into jobs of whole records. Returns the bytes read, and a read error.
    fn documents(
        &self,
        f: usize,
        data: Vec<u8>,
        mut r: Box<dyn Read + Send>,
        seq: &mut u64,
        em: &mut Emitter,
        tx: &mut Outbox,
    ) -> (u64, Option<ReadError>) {
        let result = cut(&mut r, data, CHUNK, &mut || self.new_buffer(), &mut |c| {
            self.push(
                Job {
                    file: f,
                    seq: *seq,
                    work: Work::Pieces(c),
                },
                em,
                tx,
            );
            *seq += 1;
            !self.stopped(f)
        });
        match result {
            Ok(n) => (n, None),
            Err(e) => (e.bytes, Some(e)),
        }
    }

    /// Cuts lines (from line 2) into jobs of whole lines.
    fn lines(
        &self,
        f: usize,
        rest: &[u8],
        r: Box<dyn Read + Send>,
        seq: &mut u64,
        em: &mut Emitter,
        tx: &mut Outbox,
    ) -> (u64, Option<ReadError>) {
        let mut r = BufReader::with_capacity(256 * 1024, io::Cursor::new(rest.to_vec()).chain(r));
        let (mut line, mut bytes) = (2u64, (WHOLE - rest.len()) as u64);
        loop {
            let (data, error) = lines_chunk(&mut r, CHUNK, self.new_buffer());
            if data.is_empty() && error.is_none() {
                return (bytes, None);
            }
            let n = memchr::memchr_iter(b'\n', &data).count() as u64;
            bytes += data.len() as u64;
            let job = Job {
                file: f,
                seq: *seq,
                work: Work::Lines {
                    data,
                    first_line: line,
                },
            };
            self.push(job, em, tx);
            *seq += 1;
            line += n;
            if let Some(error) = error {
                return (bytes, Some(ReadError { line, error, bytes }));
            }
            if self.stopped(f) {
                return (bytes, None);
            }
        }
    }
}
