//! The exporter hub: the last stage. It numbers every record (`seq`, from 1, no gaps), stamps
//! the wrapper of DESIGN §3 (agent names, wall-clock `timestamp` of the kernel's time, `run_id`),
//! renders one JSON line and hands it to every sink. It flushes whenever its queue is empty, so a
//! quiet machine's records show at once and a busy one's are written in batches. When its input
//! closes it writes a `stop` record and flushes.

mod clock;
pub mod file;
pub mod stderr;

use std::io::{self, BufWriter, Write};

use owo_common::render::LINE_MAX;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

pub use clock::BootClock;

/// A record on its way out: the `event` object, and the kernel time it happened (boot clock),
/// or `None` for the agent's own records (stamped with the time they are written).
#[derive(Debug)]
pub struct Outgoing {
    pub ktime_ns: Option<u64>,
    pub fields: Map<String, Value>,
}

impl Outgoing {
    pub fn event(ktime_ns: u64, fields: Map<String, Value>) -> Outgoing {
        Outgoing {
            ktime_ns: Some(ktime_ns),
            fields,
        }
    }

    pub fn agent(fields: Map<String, Value>) -> Outgoing {
        Outgoing {
            ktime_ns: None,
            fields,
        }
    }
}

/// Where lines go. A sink that fails counts and logs it; it never blocks the others.
pub trait Sink: Send {
    fn name(&self) -> &'static str;
    fn write_line(&mut self, line: &str);
    fn flush(&mut self);
    fn errors(&self) -> u64;
}

/// A sink that writes lines to anything `Write`, buffered. Write errors are logged on the first
/// of a streak, then counted, and logged again when writes work again.
pub struct LineSink<W: Write> {
    name: &'static str,
    target: String,
    out: BufWriter<W>,
    errors: u64,
    failing: bool,
}

impl<W: Write> LineSink<W> {
    pub fn new(name: &'static str, target: String, inner: W, buffer: usize) -> LineSink<W> {
        LineSink {
            name,
            target,
            out: BufWriter::with_capacity(buffer, inner),
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

    fn write_line(&mut self, line: &str) {
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
}

/// The wrapper's fixed part.
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
}

impl Hub {
    pub fn new(identity: Identity, sinks: Vec<Box<dyn Sink>>) -> Hub {
        Hub {
            identity,
            sinks,
            clock: BootClock::new(),
            seq: 0,
            oversize: 0,
        }
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Outgoing>,
        stop: impl FnOnce(u64) -> Map<String, Value>,
    ) {
        while let Some(first) = rx.recv().await {
            self.write(first);
            while let Ok(next) = rx.try_recv() {
                self.write(next);
            }
            self.flush();
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
    }

    fn write(&mut self, out: Outgoing) {
        self.seq += 1;
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
            });
        }
        for sink in &mut self.sinks {
            sink.write_line(&line);
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
