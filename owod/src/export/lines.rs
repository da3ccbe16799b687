//! Sinks of JSON lines to a file or a stream (stderr), each written by a thread of its own. The
//! hub hands over each batch's lines (batches the collector gathered for up to 10 ms), waking
//! the writer if it waits; what comes while it writes goes in its next write. A write that
//! blocks (a stalled mount, a pipe nobody reads) holds up that writer alone, never the hub, the
//! other sinks or the async workers. Lines that cannot wait (the writer is [`QUEUE_MAX`] behind)
//! are dropped.
//!
//! Lines go out whole or not at all: a write that fails is cut back to the last whole line. What
//! is lost, by a failed write or a full queue, is counted and named in `loss` records (stage
//! `file_write`) once the output takes lines again.

use std::{
    io::{self, Write},
    mem,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{Runs, Sink, SinkLoss};
use crate::config::Format;

/// What a writer writes to: a stream, or a file, which can be cut back to its last whole line
/// after a failed write (a full disk) so that the next line does not join a broken one.
pub trait Output: Write + Send + 'static {
    /// Its length, where it has one.
    fn len(&self) -> Option<u64> {
        None
    }

    /// Cut it back to `len` bytes.
    fn cut(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

impl Output for std::fs::File {
    fn len(&self) -> Option<u64> {
        self.metadata().ok().map(|m| m.len())
    }

    fn cut(&self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

impl Output for io::Stderr {}

/// `write_all`, counting in `written` the bytes that went out, also when it fails.
fn write_counting(out: &mut impl Write, mut bytes: &[u8], written: &mut u64) -> io::Result<()> {
    while !bytes.is_empty() {
        match out.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *written += n as u64;
                bytes = &bytes[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens (again) what a writer writes to.
pub type Opener<W> = Box<dyn Fn() -> io::Result<W> + Send>;

/// Is what a writer writes to no longer at its path (renamed or removed)?
pub type Moved<W> = Box<dyn Fn(&W) -> bool + Send>;

/// The most bytes handed over and not yet written.
const QUEUE_MAX: usize = 16 << 20;

/// How long a closing sink waits for its writer, and a reopen for its answer.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How often a writer looks whether its file was moved away.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// What a `file_write` loss record's line holds, and no other line (a record's strings are
/// escaped: their quotes cannot make it).
const FILE_WRITE_LOSS: &str = "\"stage\":\"file_write\"";

/// The seqs a loss record's line names, in any format (ECS and OCSF keep them by their names
/// under `owo` and `unmapped`).
pub(super) fn named_run(line: &str) -> Option<(u64, u64)> {
    let record: Value = serde_json::from_str(line).ok()?;
    let fields = ["event", "owo", "unmapped"]
        .iter()
        .find_map(|key| record.get(key).filter(|f| f.get("first_seq").is_some()))?;
    Some((fields["first_seq"].as_u64()?, fields["last_seq"].as_u64()?))
}

/// Whole lines, the runs of their seqs, and the runs that the loss records among them name
/// (lost with them, those are told again).
#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    seqs: Runs,
    tells: Vec<(u64, u64)>,
}

impl Lines {
    fn append(&mut self, mut other: Lines) {
        if self.bytes.is_empty() {
            *self = other;
            return;
        }
        self.bytes.append(&mut other.bytes);
        for (first, last) in other.seqs.0 {
            self.seqs.add(first, last);
        }
        self.tells.append(&mut other.tells);
    }

    /// Lost: what they were and what they named goes to `lost`.
    fn lose(self, lost: &mut Runs) {
        for (first, last) in self.seqs.0.into_iter().chain(self.tells) {
            lost.add(first, last);
        }
    }
}

/// Between a sink and its writer.
#[derive(Default)]
struct Shared {
    /// Handed over, not yet taken by the writer.
    queue: Lines,
    /// The seqs of what the writer is writing.
    writing: Runs,
    reopen: Option<oneshot::Sender<io::Result<()>>>,
    /// The writer waits for lines (to be woken).
    waiting: bool,
    closed: bool,
    done: bool,
    /// Writes that failed.
    errors: u64,
}

#[derive(Default)]
struct Link {
    shared: Mutex<Shared>,
    changed: Condvar,
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The thread that writes a sink's lines.
pub struct Writer<W: Output> {
    name: &'static str,
    target: String,
    out: W,
    opener: Option<Opener<W>>,
    /// With it, a file renamed or removed under owod (rotated with no `owoctl reopen`, or with
    /// no bus to send it on) is followed: a new one is opened at the path within a second.
    moved: Option<Moved<W>>,
    checked: Instant,
    /// Where losses are told, and the runs of seqs lost and not told yet.
    losses: Option<mpsc::Sender<SinkLoss>>,
    lost: Runs,
    failing: bool,
    link: Arc<Link>,
}

impl<W: Output> Writer<W> {
    pub fn new(name: &'static str, target: String, out: W, opener: Option<Opener<W>>) -> Self {
        Writer {
            name,
            target,
            out,
            opener,
            moved: None,
            checked: Instant::now(),
            losses: None,
            lost: Runs::default(),
            failing: false,
            link: Arc::default(),
        }
    }

    /// Follow the file to its path when it is moved away.
    pub fn following(mut self, moved: Moved<W>) -> Self {
        self.moved = Some(moved);
        self
    }

    /// Tell lost records to the daemon, for loss records.
    pub fn telling(mut self, losses: mpsc::Sender<SinkLoss>) -> Self {
        self.losses = Some(losses);
        self
    }

    /// Start the thread; the sink goes to the hub. Lines are handed over in `buffer` bytes at
    /// most.
    pub fn start(self, buffer: usize, format: Format) -> io::Result<LineSink> {
        let (name, target) = (self.name, self.target.clone());
        let (link, losses) = (self.link.clone(), self.losses.clone());
        std::thread::Builder::new()
            .name(format!("owod-{name}"))
            .spawn(move || self.run())?;
        Ok(LineSink {
            name,
            format,
            target,
            pending: Lines::default(),
            capacity: buffer,
            link,
            losses,
            dropped: Runs::default(),
            drops: 0,
            behind: false,
        })
    }

    fn run(mut self) {
        loop {
            let mut shared = self.link.lock();
            while shared.queue.bytes.is_empty() && shared.reopen.is_none() && !shared.closed {
                shared.waiting = true;
                shared = self.wait(shared);
            }
            shared.waiting = false;
            let lines = mem::take(&mut shared.queue);
            shared.writing = Runs(lines.seqs.0.clone());
            let (reopen, closed) = (shared.reopen.take(), shared.closed);
            drop(shared);
            // Moved away while quiet? Then these lines go to the new file, not the old.
            self.follow();
            self.write(lines);
            if let Some(reply) = reopen {
                let _ = reply.send(self.reopen());
            }
            if closed {
                break;
            }
        }
        self.tell_lost();
        self.link.lock().done = true;
        self.link.changed.notify_all();
    }

    fn wait<'a>(&self, shared: MutexGuard<'a, Shared>) -> MutexGuard<'a, Shared> {
        self.link
            .changed
            .wait(shared)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Write whole lines, or lose them whole: a partly written line is cut off again.
    fn write(&mut self, lines: Lines) {
        if lines.bytes.is_empty() {
            return;
        }
        let mut written = 0;
        let result = write_counting(&mut self.out, &lines.bytes, &mut written)
            .and_then(|()| self.out.flush());
        let mut shared = self.link.lock();
        shared.writing = Runs::default();
        match result {
            Ok(()) => {
                drop(shared);
                if self.failing {
                    tracing::info!("sink `{}` writes to {} again", self.name, self.target);
                    self.failing = false;
                }
                self.tell_lost();
            }
            Err(err) => {
                shared.errors += 1;
                drop(shared);
                // What this batch wrote is at the end (the file is opened to append): cut back
                // from there, so that a file truncated under owod (logrotate's copytruncate) is
                // never stretched back to its old length.
                // (An output with no length, a pipe, cannot be cut.)
                if let Some(len) = self.out.len().filter(|_| written > 0) {
                    if let Err(e) = self.out.cut(len.saturating_sub(written)) {
                        tracing::error!(
                            "sink `{}`: the part of a line written to {} cannot be cut off ({e}): \
                             the next line follows it on the same line",
                            self.name,
                            self.target
                        );
                    }
                }
                lines.lose(&mut self.lost);
                if !self.failing {
                    tracing::error!(
                        "sink `{}` cannot write to {}: {err} (counting until it recovers)",
                        self.name,
                        self.target
                    );
                    self.failing = true;
                }
            }
        }
    }

    /// Name what was lost in loss records.
    fn tell_lost(&mut self) {
        match &self.losses {
            Some(losses) => self.lost.tell(losses, "file", &self.target, "file_write"),
            None => self.lost = Runs::default(),
        }
    }

    fn follow(&mut self) {
        let Some(moved) = &self.moved else { return };
        if self.checked.elapsed() < FOLLOW_EVERY {
            return;
        }
        self.checked = Instant::now();
        if !moved(&self.out) {
            return;
        }
        match self.reopen() {
            Ok(()) => tracing::info!(
                "sink `{}`: {} was moved or removed; writing to a new file there",
                self.name,
                self.target
            ),
            Err(err) => tracing::error!(
                "sink `{}`: {} was moved or removed, and cannot be opened again: {err}",
                self.name,
                self.target
            ),
        }
    }

    /// Everything written so far went to the old file (renamed by logrotate): nothing is lost,
    /// nothing written twice.
    fn reopen(&mut self) -> io::Result<()> {
        let Some(opener) = &self.opener else {
            return Ok(());
        };
        self.out = opener()?;
        Ok(())
    }
}

/// The hub's side of a line sink: it gathers lines and hands them to the [`Writer`].
pub struct LineSink {
    name: &'static str,
    format: Format,
    target: String,
    pending: Lines,
    capacity: usize,
    link: Arc<Link>,
    losses: Option<mpsc::Sender<SinkLoss>>,
    /// Lines the writer's queue could not take, not told yet, and how many times.
    dropped: Runs,
    drops: u64,
    behind: bool,
}

impl LineSink {
    fn hand_over(&mut self) {
        if self.pending.bytes.is_empty() {
            return;
        }
        let lines = mem::take(&mut self.pending);
        let mut shared = self.link.lock();
        if shared.queue.bytes.len() + lines.bytes.len() > QUEUE_MAX {
            drop(shared);
            self.drops += 1;
            if !self.behind {
                tracing::error!(
                    "sink `{}`: {} takes lines slower than they come (a stalled mount, or a pipe \
                     nobody reads); what does not fit is dropped, counted and named",
                    self.name,
                    self.target
                );
                self.behind = true;
            }
            lines.lose(&mut self.dropped);
            return;
        }
        shared.queue.append(lines);
        if mem::take(&mut shared.waiting) {
            drop(shared);
            self.link.changed.notify_all();
        }
    }

    /// Name what the queue dropped, once it has room again.
    fn tell_dropped(&mut self) {
        if self.dropped.0.is_empty() || self.link.lock().queue.bytes.len() > QUEUE_MAX / 2 {
            return;
        }
        if self.behind {
            tracing::info!("sink `{}`: {} keeps up again", self.name, self.target);
            self.behind = false;
        }
        match &self.losses {
            Some(losses) => self
                .dropped
                .tell(losses, "file", &self.target, "file_write"),
            None => self.dropped = Runs::default(),
        }
    }
}

impl Sink for LineSink {
    fn name(&self) -> &'static str {
        self.name
    }

    fn format(&self) -> Format {
        self.format
    }

    fn write_line(&mut self, seq: u64, line: &str) {
        if self.losses.is_some() && line.contains(FILE_WRITE_LOSS) {
            if let Some(run) = named_run(line) {
                self.pending.tells.push(run);
            }
        }
        self.pending.bytes.extend_from_slice(line.as_bytes());
        self.pending.bytes.push(b'\n');
        self.pending.seqs.add(seq, seq);
        if self.pending.bytes.len() >= self.capacity {
            self.hand_over();
        }
    }

    fn flush(&mut self) {
        self.hand_over();
        self.tell_dropped();
    }

    fn errors(&self) -> u64 {
        self.link.lock().errors + self.drops
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn reopen(&mut self) -> Option<oneshot::Receiver<io::Result<()>>> {
        self.hand_over();
        let (reply, answer) = oneshot::channel();
        self.link.lock().reopen = Some(reply);
        self.link.changed.notify_all();
        Some(answer)
    }
}

impl Drop for LineSink {
    /// Hand over what is left and wait for the writer to write it, for [`CLOSE_WAIT`] at most:
    /// what it has not written by then is named lost.
    fn drop(&mut self) {
        self.hand_over();
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut shared = self.link.lock();
        shared.closed = true;
        self.link.changed.notify_all();
        while !shared.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            shared = self
                .link
                .changed
                .wait_timeout(shared, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if !shared.done {
            tracing::error!(
                "sink `{}`: {} has not taken a write for {} s; the lines it still held are lost",
                self.name,
                self.target,
                CLOSE_WAIT.as_secs()
            );
            mem::take(&mut shared.queue).lose(&mut self.dropped);
            for (first, last) in mem::take(&mut shared.writing).0 {
                self.dropped.add(first, last);
            }
        }
        drop(shared);
        if let Some(losses) = &self.losses {
            self.dropped
                .tell(losses, "file", &self.target, "file_write");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A disk that takes `room` bytes more, then says it is full, and that another program may
    /// truncate (logrotate's copytruncate).
    #[derive(Clone, Default)]
    struct Disk {
        bytes: Arc<Mutex<Vec<u8>>>,
        room: Arc<Mutex<usize>>,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(*room);
            *room -= n;
            self.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Output for Disk {
        fn len(&self) -> Option<u64> {
            Some(self.bytes.lock().unwrap().len() as u64)
        }

        fn cut(&self, len: u64) -> io::Result<()> {
            self.bytes.lock().unwrap().resize(len as usize, 0);
            Ok(())
        }
    }

    fn lines(text: &str, first: u64) -> Lines {
        let mut seqs = Runs::default();
        seqs.add(first, first + text.lines().count() as u64 - 1);
        Lines {
            bytes: text.as_bytes().to_vec(),
            seqs,
            tells: Vec::new(),
        }
    }

    /// A batch cut short by a full disk is cut off again from the file's end, also after the file
    /// was truncated under owod: no line is left half written, no hole of zeros appears.
    #[test]
    fn a_failed_write_after_a_truncation_leaves_whole_lines_and_no_hole() {
        let disk = Disk::default();
        *disk.room.lock().unwrap() = 1 << 20;
        let mut writer = Writer::new("file", "disk".to_owned(), disk.clone(), None);
        writer.write(lines("{\"seq\":1}\n{\"seq\":2}\n", 1));
        disk.bytes.lock().unwrap().clear();
        *disk.room.lock().unwrap() = 14;
        writer.write(lines("{\"seq\":3}\n{\"seq\":4}\n", 3));
        assert_eq!(&disk.bytes.lock().unwrap()[..], b"");
        assert_eq!(
            writer.lost.0,
            vec![(3, 4)],
            "the batch that failed is lost, named"
        );
        *disk.room.lock().unwrap() = 1 << 20;
        writer.write(lines("{\"seq\":5}\n", 5));
        assert_eq!(&disk.bytes.lock().unwrap()[..], b"{\"seq\":5}\n");
    }
}
