//! The exporter hub: the last stage. It passes every record through the [`Sequencer`] (which
//! numbers it and shows it to the rule engine, adding the alerts it completes), stamps the
//! wrapper (agent names, wall-clock `timestamp` of the kernel's time, `run_id`), renders one JSON
//! line and hands it to every sink. It flushes whenever its queue is empty, so a
//! quiet machine's records show at once and a busy one's (which come in batches) are written in
//! large writes. When its input closes it writes a `stop` record and flushes.

mod clock;
pub mod file;
pub mod format;
mod lines;
pub mod live;
pub mod remote;
pub mod stderr;

use std::{collections::BTreeMap, io};

use anyhow::Context as _;

use owo_common::render::LINE_MAX;
use serde_json::Value;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

pub use clock::BootClock;
pub use lines::{LineSink, Writer};

use crate::{
    behavior::rules::Rule,
    config::{Config, Format},
    pipeline::{
        record::{AgentRecord, Record},
        sequencer::Sequencer,
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
    /// The run those seqs are of, where it may be an earlier one (lines of a spool).
    pub lost_run_id: Option<String>,
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
            lost_run_id: None,
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
        let file = file::file_sink(
            &config.output.file.path,
            config.output.file.format,
            Some(losses.clone()),
        )?;
        sinks.push(Box::new(file));
    }
    if config.output.stderr {
        let stderr = stderr::stderr_sink(config.output.stderr_format)
            .context("cannot start the stderr sink's writer")?;
        sinks.push(Box::new(stderr));
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
                    remote.format,
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
    /// The schema its lines are in.
    fn format(&self) -> Format;
    fn write_line(&mut self, seq: u64, line: &str);
    /// A batch ended: pass on what waits.
    fn flush(&mut self);
    fn errors(&self) -> u64;
    /// Where it writes, for status.
    fn target(&self) -> &str;
    /// Close and open again (a file renamed by logrotate), with the answer to come; `None`
    /// where there is nothing to reopen.
    fn reopen(&mut self) -> Option<oneshot::Receiver<io::Result<()>>> {
        None
    }
    /// More to say in status (a remote's connection state).
    fn status(&self) -> Option<Value> {
        None
    }
}

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

pub struct Hub {
    identity: Identity,
    /// The start of every line: `{` and the identity's fields, written once.
    head: String,
    /// Records wait: outputs are being replaced (see [`HubCommand::Sinks`]).
    held: bool,
    sinks: Vec<Box<dyn Sink>>,
    /// The formats the sinks and watchers take, each once.
    formats: Vec<Format>,
    /// `owoctl watch`es, which take `owo` lines.
    watchers: Vec<live::Watcher>,
    clock: BootClock,
    sequencer: Sequencer,
    /// The records of a batch and the alerts they complete, kept for its capacity.
    passed: Batch,
    oversize: u64,
    stats: HubStats,
    published: Option<std::time::Instant>,
    /// The line being written, and its timestamp, kept for their capacity.
    line: String,
    timestamp: String,
}

/// The formats `sinks` and `watchers` take, each once.
fn formats(sinks: &[Box<dyn Sink>], watchers: &[live::Watcher]) -> Vec<Format> {
    let watched = (!watchers.is_empty()).then_some(Format::Owo);
    let mut formats: Vec<Format> = sinks.iter().map(|s| s.format()).chain(watched).collect();
    formats.sort_unstable_by_key(|f| f.name());
    formats.dedup();
    formats
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
    /// Batches from the process stage waiting for the hub.
    pub queue_batches: usize,
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
    /// New rules (already checked), from a reload; `None` switches the engine off.
    Rules {
        rules: Option<Vec<Rule>>,
        reply: oneshot::Sender<()>,
    },
    /// A watcher on this end of a socket pair (`owoctl watch` has the other).
    Watch {
        socket: std::os::unix::net::UnixStream,
        reply: oneshot::Sender<Result<(), String>>,
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
    pub fn new(identity: Identity, sinks: Vec<Box<dyn Sink>>, sequencer: Sequencer) -> Hub {
        Hub {
            held: false,
            head: head(&identity),
            identity,
            formats: formats(&sinks, &[]),
            watchers: Vec::new(),
            sinks,
            clock: BootClock::new(),
            sequencer,
            passed: Vec::new(),
            oversize: 0,
            stats: HubStats::default(),
            published: None,
            line: String::new(),
            timestamp: String::new(),
        }
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Batch>,
        mut commands: mpsc::Receiver<HubCommand>,
        stats: watch::Sender<HubStats>,
        stop: impl FnOnce(u64) -> AgentRecord,
    ) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                Some(command) = commands.recv() => self.command(command),
                first = rx.recv(), if !self.held => {
                    let Some(first) = first else { break };
                    self.write_batch(first);
                    while let Ok(next) = rx.try_recv() {
                        self.write_batch(next);
                    }
                    self.flush();
                    self.publish(&stats, false, rx.len());
                }
                _ = tick.tick() => {
                    self.sequencer.expire();
                    self.publish(&stats, false, rx.len());
                    // Sinks that tell their losses at most once a second tell them on a quiet
                    // machine too.
                    self.flush();
                }
            }
        }
        let mut record = stop(self.sequencer.seq() + 1);
        let errors: serde_json::Map<String, Value> = self
            .sinks
            .iter()
            .map(|s| (s.name().to_owned(), s.errors().into()))
            .collect();
        record.set("sink_write_errors", errors);
        self.write_batch(vec![Outgoing::agent(record)]);
        self.flush();
        // Watchers get what waits for them, and what they missed, within a second.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        for watcher in &mut self.watchers {
            watcher.finish(deadline);
        }
        self.publish(&stats, true, 0);
    }

    fn command(&mut self, command: HubCommand) {
        match command {
            HubCommand::Reopen { reply } => {
                let answers: Vec<_> = self.sinks.iter_mut().filter_map(|s| s.reopen()).collect();
                // Answered by the writers, not waited for here: a stalled one holds up no record.
                tokio::spawn(async move {
                    let mut result = Ok(());
                    for answer in answers {
                        let answer = match tokio::time::timeout(lines::CLOSE_WAIT, answer).await {
                            Ok(Ok(answer)) => answer,
                            Ok(Err(_)) => Err(io::Error::other("its writer has stopped")),
                            Err(_) => Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!(
                                    "it has not answered for {} s: its writes do not return",
                                    lines::CLOSE_WAIT.as_secs()
                                ),
                            )),
                        };
                        result = result.and(answer);
                    }
                    let _ = reply.send(result);
                });
            }
            HubCommand::Sinks { sinks, hold, reply } => {
                self.flush();
                self.sinks = sinks;
                self.formats = formats(&self.sinks, &self.watchers);
                self.held = hold;
                let _ = reply.send(());
            }
            HubCommand::Resume { sinks, reply } => {
                self.sinks.extend(sinks);
                self.formats = formats(&self.sinks, &self.watchers);
                self.held = false;
                let _ = reply.send(());
            }
            HubCommand::Rules { rules, reply } => {
                self.sequencer.set_rules(rules);
                let _ = reply.send(());
            }
            HubCommand::Watch { socket, reply } => {
                let result = if self.watchers.len() >= live::WATCHERS_MAX {
                    Err(format!(
                        "{} watchers already; that is the most",
                        live::WATCHERS_MAX
                    ))
                } else {
                    live::Watcher::new(socket)
                        .map(|watcher| {
                            self.watchers.push(watcher);
                            self.formats = formats(&self.sinks, &self.watchers);
                        })
                        .map_err(|e| format!("cannot use the socket: {e}"))
                };
                let _ = reply.send(result);
            }
        }
    }

    /// At most four times a second, unless `now`; `queued`: the batches waiting.
    fn publish(&mut self, stats: &watch::Sender<HubStats>, now: bool, queued: usize) {
        if !now
            && self
                .published
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(250))
        {
            return;
        }
        self.published = Some(std::time::Instant::now());
        self.stats.records = self.sequencer.seq();
        self.stats.queue_batches = queued;
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

    /// Number the batch's records, add the alerts they complete, and write them all.
    fn write_batch(&mut self, batch: Batch) {
        let mut passed = std::mem::take(&mut self.passed);
        for out in batch {
            self.sequencer.pass(out, &mut passed);
        }
        for out in passed.drain(..) {
            self.write(out);
        }
        self.passed = passed;
    }

    fn write(&mut self, mut out: Outgoing) {
        if let Some(identity) = out.identity.take() {
            self.head = head(&identity);
            self.identity = identity;
        }
        self.count(&out.record);
        let mut timestamp = std::mem::take(&mut self.timestamp);
        let unix_ns = match out.ktime_ns {
            Some(ns) => self.clock.wall_clock(ns, &mut timestamp),
            None => self.clock.now(&mut timestamp),
        };
        let mut line = std::mem::take(&mut self.line);
        let mut oversize = false;
        for i in 0..self.formats.len() {
            let format = self.formats[i];
            let wrapper = format::Wrapper {
                identity: &self.identity,
                seq: out.seq,
                timestamp: &timestamp,
                unix_ns,
            };
            self.render(format, &wrapper, &out.record, &mut line);
            if line.len() > LINE_MAX {
                // Budgets make this unreachable for our own records; if it happens, say so in
                // place (counted once, whatever the formats it overflows in).
                if !oversize {
                    oversize = true;
                    self.oversize += 1;
                }
                tracing::error!(
                    seq = out.seq,
                    "a record of {} bytes in format {} exceeds {LINE_MAX}; replaced by a loss record",
                    line.len(),
                    format.name()
                );
                let mut loss = AgentRecord::loss("render", None, 1);
                loss.set("lost_event_type", out.record.event_type())
                    .set("total", self.oversize);
                self.render(format, &wrapper, &Record::Agent(loss), &mut line);
            }
            for sink in self.sinks.iter_mut().filter(|s| s.format() == format) {
                sink.write_line(out.seq, &line);
            }
            if format == Format::Owo {
                for watcher in &mut self.watchers {
                    watcher.push(&line);
                }
            }
        }
        self.timestamp = timestamp;
        // A rare huge line does not keep its memory.
        if line.capacity() > 4 * LINE_MAX {
            line = String::new();
        }
        self.line = line;
    }

    /// A record in `format`, as one JSON line (without its newline) in `line`.
    fn render(
        &self,
        format: Format,
        wrapper: &format::Wrapper,
        record: &Record,
        line: &mut String,
    ) {
        use crate::pipeline::record::{Json, Visit};
        line.clear();
        match format {
            Format::Owo => {
                line.push_str(&self.head);
                let mut json = Json {
                    out: line,
                    first: false,
                };
                json.str("timestamp", wrapper.timestamp);
                json.uint("seq", wrapper.seq);
                json.str("run_id", &wrapper.identity.run_id);
                line.push_str(",\"event\":");
                record.write_json(line);
                line.push('}');
            }
            Format::Ecs => format::ecs::render(wrapper, record, line),
            Format::Ocsf => format::ocsf::render(wrapper, record, line),
        }
    }

    fn flush(&mut self) {
        for sink in &mut self.sinks {
            sink.flush();
        }
        for watcher in &mut self.watchers {
            watcher.flush();
        }
        if self.watchers.iter().any(live::Watcher::gone) {
            self.watchers.retain(|w| !w.gone());
            self.formats = formats(&self.sinks, &self.watchers);
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
