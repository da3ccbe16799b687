//! The exporter hub: the last stage. It writes every record with the `seq` the behavior stage gave it, stamps
//! the wrapper of DESIGN §3 (agent names, wall-clock `timestamp` of the kernel's time, `run_id`),
//! renders one JSON line and hands it to every sink. It flushes whenever its queue is empty, so a
//! quiet machine's records show at once and a busy one's (which come in batches) are written in
//! large writes. When its input closes it writes a `stop` record and flushes.

mod clock;
pub mod file;
pub mod remote;
pub mod stderr;

use std::{
    collections::BTreeMap,
    io::{self, BufWriter, Write},
};

use owo_common::render::LINE_MAX;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

pub use clock::BootClock;

/// A record on its way out: the `event` object, and the kernel time it happened (boot clock),
/// or `None` for the agent's own records (stamped with the time they are written).
/// Records handed from one stage to the next together: one wake-up for all that was ready.
pub type Batch = Vec<Outgoing>;

#[derive(Debug)]
pub struct Outgoing {
    pub ktime_ns: Option<u64>,
    pub fields: Map<String, Value>,
    /// Given by the behavior stage (0 until then).
    pub seq: u64,
    /// New wrapper names, from this record on (a reload).
    pub identity: Option<Identity>,
}

impl Outgoing {
    pub fn event(ktime_ns: u64, fields: Map<String, Value>) -> Outgoing {
        Outgoing {
            ktime_ns: Some(ktime_ns),
            fields,
            seq: 0,
            identity: None,
        }
    }

    pub fn agent(fields: Map<String, Value>) -> Outgoing {
        Outgoing {
            ktime_ns: None,
            fields,
            seq: 0,
            identity: None,
        }
    }
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

/// A sink that writes lines to anything `Write`, buffered. Write errors are logged on the first
/// of a streak, then counted, and logged again when writes work again.
pub struct LineSink<W: Write> {
    name: &'static str,
    target: String,
    out: BufWriter<W>,
    opener: Option<Opener<W>>,
    errors: u64,
    failing: bool,
}

impl<W: Write> LineSink<W> {
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
            out: BufWriter::with_capacity(buffer, inner),
            opener,
            errors: 0,
            failing: false,
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
}

impl<W: Write + Send> Sink for LineSink<W> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn write_line(&mut self, _seq: u64, line: &str) {
        let result = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        self.record(result);
    }

    fn flush(&mut self) {
        let result = self.out.flush();
        self.record(result);
    }

    fn errors(&self) -> u64 {
        self.errors
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn reopen(&mut self) -> io::Result<()> {
        let Some(opener) = &self.opener else {
            return Ok(());
        };
        // Everything written so far goes to the old file (renamed by logrotate): nothing is
        // lost, nothing written twice.
        self.out.flush()?;
        let fresh = opener()?;
        let capacity = self.out.capacity();
        drop(std::mem::replace(
            &mut self.out,
            BufWriter::with_capacity(capacity, fresh),
        ));
        Ok(())
    }
}

/// The wrapper's fixed part.
#[derive(Clone, Debug)]
pub struct Identity {
    pub agent_name: String,
    pub agent_hostname: String,
    pub agent_group: String,
    pub run_id: String,
}

pub struct Hub {
    identity: Identity,
    sinks: Vec<Box<dyn Sink>>,
    clock: BootClock,
    seq: u64,
    oversize: u64,
    stats: HubStats,
    published: Option<std::time::Instant>,
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
    /// the running ones).
    Sinks {
        sinks: Vec<Box<dyn Sink>>,
        reply: oneshot::Sender<()>,
    },
}

impl Hub {
    pub fn new(identity: Identity, sinks: Vec<Box<dyn Sink>>) -> Hub {
        Hub {
            identity,
            sinks,
            clock: BootClock::new(),
            seq: 0,
            oversize: 0,
            stats: HubStats::default(),
            published: None,
        }
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Batch>,
        mut commands: mpsc::Receiver<HubCommand>,
        stats: watch::Sender<HubStats>,
        stop: impl FnOnce(u64) -> Map<String, Value>,
    ) {
        loop {
            tokio::select! {
                biased;
                Some(command) = commands.recv() => self.command(command),
                first = rx.recv() => {
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
        let mut fields = stop(self.seq + 1);
        let errors: Map<String, Value> = self
            .sinks
            .iter()
            .map(|s| (s.name().to_owned(), s.errors().into()))
            .collect();
        fields.insert("sink_write_errors".into(), Value::Object(errors));
        self.write(Outgoing::agent(fields));
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
            HubCommand::Sinks { sinks, reply } => {
                self.flush();
                self.sinks = sinks;
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
    fn count(&mut self, fields: &Map<String, Value>) {
        let event_type = fields
            .get("event_type")
            .and_then(Value::as_str)
            .unwrap_or("?");
        *self.stats.by_type.entry(event_type.to_owned()).or_default() += 1;
        if fields.get("type").and_then(Value::as_str) == Some("loss") {
            let monitor = fields.get("monitor").and_then(Value::as_str).unwrap_or("-");
            let stage = fields.get("stage").and_then(Value::as_str).unwrap_or("-");
            let count = fields.get("count").and_then(Value::as_u64).unwrap_or(0);
            *self
                .stats
                .lost
                .entry(format!("{monitor}/{stage}"))
                .or_default() += count;
        }
    }

    fn write(&mut self, mut out: Outgoing) {
        if let Some(identity) = out.identity.take() {
            self.identity = identity;
        }
        // Numbered by the behavior stage; the hub's own last record follows the last one.
        self.seq = if out.seq == 0 { self.seq + 1 } else { out.seq };
        self.count(&out.fields);
        let event_type = out.fields.get("event_type").cloned().unwrap_or(Value::Null);
        let ktime_ns = out.ktime_ns;
        let mut line = self.render(out);
        if line.len() > LINE_MAX {
            // Budgets make this unreachable for our own records; if it happens, say so in place.
            self.oversize += 1;
            tracing::error!(
                seq = self.seq,
                "a record of {} bytes exceeds {LINE_MAX}; replaced by a loss record",
                line.len()
            );
            let mut loss = Map::new();
            loss.insert("event_type".into(), "agent".into());
            loss.insert("type".into(), "loss".into());
            loss.insert("stage".into(), "render".into());
            loss.insert("lost_event_type".into(), event_type);
            loss.insert("count".into(), 1.into());
            loss.insert("total".into(), self.oversize.into());
            line = self.render(Outgoing {
                ktime_ns,
                fields: loss,
                seq: self.seq,
                identity: None,
            });
        }
        for sink in &mut self.sinks {
            sink.write_line(self.seq, &line);
        }
    }

    fn render(&mut self, out: Outgoing) -> String {
        let timestamp = match out.ktime_ns {
            Some(ns) => self.clock.wall_clock(ns),
            None => self.clock.now(),
        };
        let id = &self.identity;
        let mut record = Map::new();
        record.insert("agent_name".into(), id.agent_name.as_str().into());
        record.insert("agent_hostname".into(), id.agent_hostname.as_str().into());
        record.insert("agent_group".into(), id.agent_group.as_str().into());
        record.insert("timestamp".into(), timestamp.into());
        record.insert("seq".into(), self.seq.into());
        record.insert("run_id".into(), id.run_id.as_str().into());
        record.insert("event".into(), Value::Object(out.fields));
        serde_json::to_string(&record).expect("a JSON map always serializes")
    }

    fn flush(&mut self) {
        for sink in &mut self.sinks {
            sink.flush();
        }
    }
}
