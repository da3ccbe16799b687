//! The exporter hub: the last stage. It writes every record with the `seq` the sequencer gave
//! it, stamps the wrapper (agent names, wall-clock `timestamp` of the kernel's time, `run_id`),
//! renders one JSON line and hands it to every sink. It flushes whenever its queue is empty, so a
//! quiet machine's records show at once and a busy one's (which come in batches) are written in
//! large writes. When its input closes it writes a `stop` record and flushes.

mod clock;
pub mod file;
pub mod remote;
pub mod stderr;

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use owo_common::render::LINE_MAX;
use serde_json::Value;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

pub use clock::BootClock;

use crate::{
    config::Config,
    pipeline::{
        record::{AgentRecord, Record},
        Batch, Identity, Outgoing,
    },
};

/// Records a sink lost, as its tasks tell the daemon (which makes a `loss` record of it).
#[derive(Debug)]
pub struct SinkLoss {
    /// The key that names the sink in the loss record: `remote` or `file`.
    pub sink: &'static str,
    /// Its name there: the remote (`http://host:port`) or the file's path.
    pub target: String,
    pub stage: &'static str,
    pub count: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

impl SinkLoss {
    /// The loss of the records `first..=last`.
    pub fn run(
        sink: &'static str,
        target: &str,
        stage: &'static str,
        (first, last): (u64, u64),
    ) -> SinkLoss {
        SinkLoss {
            sink,
            target: target.to_owned(),
            stage,
            count: last - first + 1,
            first_seq: Some(first),
            last_seq: Some(last),
        }
    }
}

/// Sinks for the hub, and the remotes' tasks.
pub type Outputs = (Vec<Box<dyn Sink>>, Vec<JoinHandle<()>>);

/// The outputs of a config: the file, stderr, and a sink per enabled remote (whose tasks are
/// returned, to be waited for at shutdown: they put what is still queued into their spools).
pub fn open_sinks(config: &Config, losses: &mpsc::Sender<SinkLoss>) -> anyhow::Result<Outputs> {
    let mut sinks = open_local_sinks(config, losses)?;
    let (remotes, tasks) = start_remotes(config, losses)?;
    sinks.extend(remotes);
    Ok((sinks, tasks))
}

/// The file and stderr sinks.
pub fn open_local_sinks(
    config: &Config,
    losses: &mpsc::Sender<SinkLoss>,
) -> anyhow::Result<Vec<Box<dyn Sink>>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if config.output.file.enabled {
        let file = file::file_sink(&config.output.file.path)?.telling(losses.clone());
        sinks.push(Box::new(file));
    }
    if config.output.stderr {
        sinks.push(Box::new(stderr::stderr_sink()));
    }
    Ok(sinks)
}

/// The remotes, each with its spool writer and sender tasks.
pub fn start_remotes(config: &Config, losses: &mpsc::Sender<SinkLoss>) -> anyhow::Result<Outputs> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let mut tasks = Vec::new();
    for remote in std::iter::once(&config.output.remote)
        .chain(&config.output.remotes)
        .filter(|r| r.enabled)
    {
        match remote::start(remote, losses.clone()) {
            Ok((sink, handles)) => {
                sinks.push(Box::new(sink));
                tasks.extend(handles);
            }
            Err(err) => {
                let name = remote::remote_name(remote);
                let why = format!("{:#}", anyhow::Error::from(err));
                tracing::error!(
                    "remote {name} cannot start ({why}): every record for it is counted as lost"
                );
                sinks.push(Box::new(remote::Unavailable::new(
                    name,
                    why,
                    losses.clone(),
                )));
            }
        }
    }
    Ok((sinks, tasks))
}

/// Where lines go. A sink that fails counts and logs it; it never blocks the others.
pub trait Sink: Send {
    fn name(&self) -> &'static str;
    fn write_line(&mut self, seq: u64, line: &str);
    fn flush(&mut self);
    fn errors(&self) -> u64;
    /// Where it writes, for status.
    fn target(&self) -> &str;
    /// Close and open again (a file renamed by logrotate); a no-op for streams.
    fn reopen(&mut self) -> io::Result<()>;
    /// More to say in status (a remote's connection state).
    fn status(&self) -> Option<Value> {
        None
    }
}

/// Opens (again) what a [`LineSink`] writes to.
type Opener<W> = Box<dyn Fn() -> io::Result<W> + Send>;

/// Is what a [`LineSink`] writes to no longer at its path (renamed or removed)?
pub type Moved<W> = Box<dyn Fn(&W) -> bool + Send>;

/// How often a [`LineSink`] looks whether its file was moved away.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs a [`Runs`] keeps at most.
const RUNS_MAX: usize = 1024;

/// Runs of consecutive seqs, (first, last), in order: records a sink lost and has not yet named
/// in loss records. Bounded: past [`RUNS_MAX`] the two oldest runs become one, which names the
/// records between them as lost too rather than let the list grow.
#[derive(Debug, Default)]
pub struct Runs(Vec<(u64, u64)>);

impl Runs {
    pub fn add(&mut self, first: u64, last: u64) {
        match self.0.last_mut() {
            None => self.0.push((first, last)),
            // In order (the usual case): join the last run, or follow it.
            Some((start, end)) if first >= *start => {
                if first <= *end + 1 {
                    *end = (*end).max(last);
                } else {
                    self.0.push((first, last));
                }
            }
            // Out of order (runs told again): put it in place, and join what touches.
            Some(_) => {
                self.0.push((first, last));
                self.0.sort_unstable();
                let mut joined: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
                for (a, b) in self.0.drain(..) {
                    match joined.last_mut() {
                        Some((_, end)) if *end + 1 >= a => *end = (*end).max(b),
                        _ => joined.push((a, b)),
                    }
                }
                self.0 = joined;
            }
        }
        if self.0.len() > RUNS_MAX {
            let (_, last) = self.0.remove(1);
            self.0[0].1 = last;
        }
    }

    /// Send a loss record for each run, oldest first, as far as `losses` takes them; the rest
    /// wait for the next time.
    pub fn tell(
        &mut self,
        losses: &mpsc::Sender<SinkLoss>,
        sink: &'static str,
        target: &str,
        stage: &'static str,
    ) {
        let mut sent = 0;
        for &run in &self.0 {
            if losses
                .try_send(SinkLoss::run(sink, target, stage, run))
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        self.0.drain(..sent);
    }
}

/// What a [`LineSink`] writes to: a stream, or a file, which can be cut back to its last whole
/// line after a failed write (a full disk) so that the next line does not join a broken one.
pub trait Output: Write + Send {
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

/// A sink that writes whole lines to an [`Output`], buffered. A write that fails loses the
/// lines it held, which are counted, and named in `loss` records (stage `file_write`) once
/// writes work again (a loss record would meet a full disk too). Write errors are logged on the
/// first of a streak, then counted, and logged again when writes work again.
pub struct LineSink<W: Output> {
    name: &'static str,
    target: String,
    out: W,
    /// Whole lines not yet written, the runs of their seqs, and the runs that the loss records
    /// among them name (told again if those are lost too).
    pending: Vec<u8>,
    pending_seqs: Runs,
    pending_tells: Vec<(u64, u64)>,
    capacity: usize,
    /// The length of the output up to its last whole line, where it has a length.
    good: Option<u64>,
    opener: Option<Opener<W>>,
    /// With it, a file renamed or removed under owod (rotated with no `owoctl reopen`, or with
    /// no bus to send it on) is followed: a new one is opened at the path within a second.
    moved: Option<Moved<W>>,
    checked: std::time::Instant,
    /// Where losses are told, and the runs of seqs lost and not told yet.
    losses: Option<mpsc::Sender<SinkLoss>>,
    lost: Runs,
    errors: u64,
    failing: bool,
}

/// What a `file_write` loss record's line holds, and no other line (a record's strings are
/// escaped: their quotes cannot make it).
const FILE_WRITE_LOSS: &str = "\"stage\":\"file_write\"";

/// The seqs a loss record's line names.
fn named_run(line: &str) -> Option<(u64, u64)> {
    let record: Value = serde_json::from_str(line).ok()?;
    let event = &record["event"];
    Some((event["first_seq"].as_u64()?, event["last_seq"].as_u64()?))
}

impl<W: Output> LineSink<W> {
    pub fn new(
        name: &'static str,
        target: String,
        inner: W,
        buffer: usize,
        opener: Option<Opener<W>>,
    ) -> LineSink<W> {
        LineSink {
            name,
            target,
            good: inner.len(),
            out: inner,
            pending: Vec::with_capacity(buffer),
            pending_seqs: Runs::default(),
            pending_tells: Vec::new(),
            capacity: buffer,
            opener,
            moved: None,
            checked: std::time::Instant::now(),
            losses: None,
            lost: Runs::default(),
            errors: 0,
            failing: false,
        }
    }

    /// Follow the file to its path when it is moved away (see [`LineSink::moved`]).
    pub fn following(mut self, moved: Moved<W>) -> LineSink<W> {
        self.moved = Some(moved);
        self
    }

    /// Tell lost records to the daemon, for loss records.
    pub fn telling(mut self, losses: mpsc::Sender<SinkLoss>) -> LineSink<W> {
        self.losses = Some(losses);
        self
    }

    /// Write what is pending, whole, or lose it whole: a partly written line is cut off again.
    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let result = self.out.write_all(&self.pending);
        match &result {
            Ok(()) => {
                self.good = self.good.map(|g| g + self.pending.len() as u64);
                self.tell_lost();
            }
            Err(_) => {
                if let Some(good) = self.good {
                    if self.out.cut(good).is_err() {
                        // Where the file ends is no longer known: ask it again next time.
                        self.good = self.out.len();
                    }
                }
                // And a loss record of this sink lost with them: what it named is told again.
                let runs = std::mem::take(&mut self.pending_seqs).0;
                for (first, last) in runs.into_iter().chain(self.pending_tells.drain(..)) {
                    self.lost.add(first, last);
                }
            }
        }
        self.pending.clear();
        self.pending_seqs = Runs::default();
        self.pending_tells.clear();
        self.record(result);
    }

    /// Name what was lost in loss records.
    fn tell_lost(&mut self) {
        match &self.losses {
            Some(losses) => self.lost.tell(losses, "file", &self.target, "file_write"),
            None => self.lost = Runs::default(),
        }
    }

    fn record(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) if self.failing => {
                tracing::info!(
                    "sink `{}` writes to {} again ({} failed writes)",
                    self.name,
                    self.target,
                    self.errors
                );
                self.failing = false;
            }
            Ok(()) => {}
            Err(err) => {
                if !self.failing {
                    tracing::error!(
                        "sink `{}` cannot write to {}: {err} (counting until it recovers)",
                        self.name,
                        self.target
                    );
                    self.failing = true;
                }
                self.errors += 1;
            }
        }
    }

    fn follow(&mut self) {
        let Some(moved) = &self.moved else { return };
        if self.checked.elapsed() < FOLLOW_EVERY {
            return;
        }
        self.checked = std::time::Instant::now();
        if !moved(&self.out) {
            return;
        }
        match self.reopen() {
            Ok(()) => tracing::info!(
                "sink `{}`: {} was moved or removed; writing to a new file there",
                self.name,
                self.target
            ),
            Err(err) => self.record(Err(err)),
        }
    }
}

impl<W: Output> Sink for LineSink<W> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn write_line(&mut self, seq: u64, line: &str) {
        if self.losses.is_some() && line.contains(FILE_WRITE_LOSS) {
            if let Some(run) = named_run(line) {
                self.pending_tells.push(run);
            }
        }
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
        self.pending_seqs.add(seq, seq);
        if self.pending.len() >= self.capacity {
            self.write_pending();
        }
    }

    fn flush(&mut self) {
        self.write_pending();
        if let Err(err) = self.out.flush() {
            self.record(Err(err));
        }
        self.follow();
    }

    fn errors(&self) -> u64 {
        self.errors
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn reopen(&mut self) -> io::Result<()> {
        let Some(opener) = self.opener.take() else {
            return Ok(());
        };
        // Everything written so far goes to the old file (renamed by logrotate): nothing is
        // lost, nothing written twice.
        self.write_pending();
        let fresh = self.out.flush().and_then(|()| opener());
        self.opener = Some(opener);
        let fresh = fresh?;
        self.good = fresh.len();
        self.out = fresh;
        Ok(())
    }
}

pub struct Hub {
    identity: Identity,
    /// The start of every line: `{` and the identity's fields, written once.
    head: String,
    /// Records wait: outputs are being replaced (see [`HubCommand::Sinks`]).
    held: bool,
    sinks: Vec<Box<dyn Sink>>,
    clock: BootClock,
    seq: u64,
    oversize: u64,
    stats: HubStats,
    published: Option<std::time::Instant>,
    /// The line being written, kept for its capacity.
    line: String,
}

/// What the hub has written, for `GetStatus`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HubStats {
    /// Records written (the last `seq`).
    pub records: u64,
    /// Records by `event_type`.
    pub by_type: BTreeMap<String, u64>,
    /// Records reported lost, by `monitor/stage` (from the `loss` records).
    pub lost: BTreeMap<String, u64>,
    pub sinks: Vec<SinkState>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct SinkState {
    pub name: &'static str,
    pub target: String,
    pub write_errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<Value>,
}

/// Requests to the hub.
pub enum HubCommand {
    /// Reopen the output file (logrotate's `postrotate`).
    Reopen {
        reply: oneshot::Sender<io::Result<()>>,
    },
    /// A reloaded config's outputs (opened before the old ones are let go, so a failure leaves
    /// the running ones). With `hold`, records wait in the queue until [`HubCommand::Resume`]:
    /// the old remotes must have closed their spools before the new ones open them.
    Sinks {
        sinks: Vec<Box<dyn Sink>>,
        hold: bool,
        reply: oneshot::Sender<()>,
    },
    /// Add these sinks and take records again.
    Resume {
        sinks: Vec<Box<dyn Sink>>,
        reply: oneshot::Sender<()>,
    },
}

/// `{"agent_name":…,"agent_hostname":…,"agent_group":…`: what every line starts with.
fn head(id: &Identity) -> String {
    use crate::pipeline::record::{Json, Visit};
    let mut head = String::from("{");
    let mut json = Json {
        out: &mut head,
        first: true,
    };
    json.str("agent_name", &id.agent_name);
    json.str("agent_hostname", &id.agent_hostname);
    json.str("agent_group", &id.agent_group);
    head
}

impl Hub {
    pub fn new(identity: Identity, sinks: Vec<Box<dyn Sink>>) -> Hub {
        Hub {
            held: false,
            head: head(&identity),
            identity,
            sinks,
            clock: BootClock::new(),
            seq: 0,
            oversize: 0,
            stats: HubStats::default(),
            published: None,
            line: String::new(),
        }
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Batch>,
        mut commands: mpsc::Receiver<HubCommand>,
        stats: watch::Sender<HubStats>,
        stop: impl FnOnce(u64) -> AgentRecord,
    ) {
        loop {
            tokio::select! {
                biased;
                Some(command) = commands.recv() => self.command(command),
                first = rx.recv(), if !self.held => {
                    let Some(first) = first else { break };
                    first.into_iter().for_each(|out| self.write(out));
                    while let Ok(next) = rx.try_recv() {
                        next.into_iter().for_each(|out| self.write(out));
                    }
                    self.flush();
                    self.publish(&stats, false);
                }
            }
        }
        let mut record = stop(self.seq + 1);
        let errors: serde_json::Map<String, Value> = self
            .sinks
            .iter()
            .map(|s| (s.name().to_owned(), s.errors().into()))
            .collect();
        record.set("sink_write_errors", errors);
        self.write(Outgoing::agent(record));
        self.flush();
        self.publish(&stats, true);
    }

    fn command(&mut self, command: HubCommand) {
        match command {
            HubCommand::Reopen { reply } => {
                self.flush();
                let result = self.sinks.iter_mut().try_for_each(|s| s.reopen());
                let _ = reply.send(result);
            }
            HubCommand::Sinks { sinks, hold, reply } => {
                self.flush();
                self.sinks = sinks;
                self.held = hold;
                let _ = reply.send(());
            }
            HubCommand::Resume { sinks, reply } => {
                self.sinks.extend(sinks);
                self.held = false;
                let _ = reply.send(());
            }
        }
    }

    /// At most four times a second, unless `now`.
    fn publish(&mut self, stats: &watch::Sender<HubStats>, now: bool) {
        if !now
            && self
                .published
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(250))
        {
            return;
        }
        self.published = Some(std::time::Instant::now());
        self.stats.records = self.seq;
        self.stats.sinks = self
            .sinks
            .iter()
            .map(|s| SinkState {
                name: s.name(),
                target: s.target().to_owned(),
                write_errors: s.errors(),
                remote: s.status(),
            })
            .collect();
        stats.send_replace(self.stats.clone());
    }

    /// Count what goes out, for status.
    fn count(&mut self, record: &Record) {
        let event_type = record.event_type();
        match self.stats.by_type.get_mut(event_type) {
            Some(n) => *n += 1,
            None => {
                self.stats.by_type.insert(event_type.to_owned(), 1);
            }
        }
        if let Record::Agent(agent) = record {
            if agent.kind == "loss" {
                let name = |key| agent.get(key).and_then(Value::as_str).unwrap_or("-");
                let count = agent.get("count").and_then(Value::as_u64).unwrap_or(0);
                let key = format!("{}/{}", name("monitor"), name("stage"));
                *self.stats.lost.entry(key).or_default() += count;
            }
        }
    }

    fn write(&mut self, mut out: Outgoing) {
        if let Some(identity) = out.identity.take() {
            self.head = head(&identity);
            self.identity = identity;
        }
        // Numbered by the sequencer; the hub's own last record follows the last one.
        self.seq = if out.seq == 0 { self.seq + 1 } else { out.seq };
        self.count(&out.record);
        let mut line = std::mem::take(&mut self.line);
        self.render(&mut line, out.ktime_ns, &out.record);
        if line.len() > LINE_MAX {
            // Budgets make this unreachable for our own records; if it happens, say so in place.
            self.oversize += 1;
            tracing::error!(
                seq = self.seq,
                "a record of {} bytes exceeds {LINE_MAX}; replaced by a loss record",
                line.len()
            );
            let mut loss = AgentRecord::loss("render", None, 1);
            loss.set("lost_event_type", out.record.event_type())
                .set("total", self.oversize);
            self.render(&mut line, out.ktime_ns, &Record::Agent(loss));
        }
        for sink in &mut self.sinks {
            sink.write_line(self.seq, &line);
        }
        // A rare huge line does not keep its memory.
        if line.capacity() > 4 * LINE_MAX {
            line = String::new();
        }
        self.line = line;
    }

    /// The wrapper and the record, as one JSON line (without its newline) in `line`.
    fn render(&mut self, line: &mut String, ktime_ns: Option<u64>, record: &Record) {
        use crate::pipeline::record::{Json, Visit};
        let timestamp = match ktime_ns {
            Some(ns) => self.clock.wall_clock(ns),
            None => self.clock.now(),
        };
        let id = &self.identity;
        line.clear();
        line.push_str(&self.head);
        let mut json = Json {
            out: line,
            first: false,
        };
        json.str("timestamp", &timestamp);
        json.uint("seq", self.seq);
        json.str("run_id", &id.run_id);
        line.push_str(",\"event\":");
        record.write_json(line);
        line.push('}');
    }

    fn flush(&mut self) {
        for sink in &mut self.sinks {
            sink.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_join_what_touches_in_any_order_and_stay_bounded() {
        let mut runs = Runs::default();
        for seq in [3, 4, 5, 8, 9] {
            runs.add(seq, seq);
        }
        assert_eq!(runs.0, [(3, 5), (8, 9)]);
        runs.add(1, 2); // told again, out of order
        runs.add(6, 7);
        assert_eq!(runs.0, [(1, 9)]);
        runs.add(20, 30);
        runs.add(25, 26); // already in
        assert_eq!(runs.0, [(1, 9), (20, 30)]);
        let mut many = Runs::default();
        for i in 0..(RUNS_MAX as u64 + 10) {
            many.add(3 * i, 3 * i);
        }
        assert_eq!(many.0.len(), RUNS_MAX);
        assert_eq!(
            many.0[0],
            (0, 30),
            "the oldest joined, the records between named too"
        );
    }
}
