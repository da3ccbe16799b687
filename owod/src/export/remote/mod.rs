//! Remote export: one long-lived connection per collector, fed from an on-disk [`spool`] so that
//! nothing waits on the collector and nothing is lost while it is away. The [`RemoteSink`] in the
//! hub only queues lines (it never blocks the file and stderr sinks); a writer appends them to
//! the spool, and a sender delivers batches, in `seq` order, reconnecting with capped exponential
//! backoff and jitter. Both run on threads of their own: a slow or stalled spool disk holds up
//! only them. Records still spooled at shutdown go out after the next start.

pub mod protocol;
pub mod spool;

use std::{
    io,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{Runs, Sink, SinkLoss};
use crate::{
    config::{Format, RemoteConfig},
    export::format::seq_of,
};
use spool::{Dropped, Position, SpoolReader, SpoolWriter};

/// Lines waiting for the writer task; past this the remote is too far behind, and they are
/// counted lost (the writer only appends to a file, so this is a disk that cannot keep up).
const QUEUE: usize = 65_536;
/// And the bytes of those lines at most.
const QUEUE_BYTES: usize = 16 << 20;
/// How often records that a full spool disk lost are named while it stays full.
const SPOOL_LOSS_EVERY: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A remote's state, for `GetStatus`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RemoteStatus {
    /// connecting, connected, backing_off, idle
    pub state: &'static str,
    /// Records delivered in this run.
    pub delivered: u64,
    /// Records the collector refused for what they are (dropped, each in a loss record).
    pub refused: u64,
    pub last_error: Option<String>,
}

pub struct RemoteSink {
    name: String,
    format: Format,
    /// The spool's bytes not yet delivered, as the spool's writer and sender last measured them
    /// (on their own threads: the hub never waits for the disk).
    backlog: Arc<AtomicU64>,
    lines: mpsc::Sender<(u64, String)>,
    status: watch::Receiver<RemoteStatus>,
    losses: mpsc::Sender<SinkLoss>,
    /// Records the hub could not hand to the spool writer.
    dropped: u64,
    /// Those that no loss record names yet, as runs of seqs (first, last). They are reported
    /// once the queue has room again, so that the loss record does not meet a full queue too.
    unreported: Runs,
    /// Records the spool writer could not write (a full disk).
    spool_lost: Arc<AtomicU64>,
    /// The bytes of the lines in the queue.
    queued: Arc<AtomicUsize>,
}

/// The remote's name in status, logs and loss records.
pub fn remote_name(remote: &RemoteConfig) -> String {
    format!("{}://{}", remote.protocol, remote.address)
}

fn spool_dir(remote: &RemoteConfig) -> PathBuf {
    if !remote.spool.dir.is_empty() {
        return PathBuf::from(&remote.spool.dir);
    }
    let safe: String = remote_name(remote)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    PathBuf::from("/var/lib/owo/spool").join(safe)
}

/// Start a remote's tasks; the sink goes to the hub, the handles to whoever waits at shutdown.
pub fn start(
    remote: &RemoteConfig,
    losses: mpsc::Sender<SinkLoss>,
) -> io::Result<(RemoteSink, Vec<JoinHandle<()>>)> {
    let name = remote_name(remote);
    let dir = spool_dir(remote);
    let writer = SpoolWriter::open(&dir, remote.spool.max_mb.saturating_mul(1 << 20))?;
    let reader = SpoolReader::open(&dir)?;
    let tls = if remote.uses_tls() {
        Some(
            protocol::tls_config(remote)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        )
    } else {
        None
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let (end_tx, end_rx) = watch::channel(Position::default());
    let (done_tx, done_rx) = watch::channel(reader.at);
    let (status_tx, status_rx) = watch::channel(RemoteStatus {
        state: "idle",
        ..Default::default()
    });
    let spool_lost = Arc::new(AtomicU64::new(0));
    let backlog = Arc::new(AtomicU64::new(0));
    let queued = Arc::new(AtomicUsize::new(0));
    let writing = crate::pipeline::on_own_thread(write_spool(
        writer,
        (rx, queued.clone()),
        end_tx,
        done_rx.clone(),
        losses.clone(),
        (spool_lost.clone(), backlog.clone()),
        name.clone(),
    ));
    let sending = crate::pipeline::on_own_thread(send_spool(
        remote.clone(),
        tls,
        reader,
        end_rx,
        Reports {
            delivered: done_tx,
            status: status_tx,
            losses: losses.clone(),
            backlog: backlog.clone(),
        },
        name.clone(),
    ));
    Ok((
        RemoteSink {
            name,
            format: remote.format,
            backlog: backlog.clone(),
            lines: tx,
            status: status_rx,
            losses,
            dropped: 0,
            unreported: Runs::default(),
            spool_lost,
            queued,
        },
        vec![writing, sending],
    ))
}

impl RemoteSink {
    /// Name the records the queue dropped in loss records.
    fn report_dropped(&mut self) {
        self.unreported
            .tell(&self.losses, "remote", &self.name, "remote_queue");
    }
}

/// A remote that could not start (its spool cannot be made, its TLS files cannot be read): owod
/// runs without it, and every record it would have sent is lost, counted in status and named in
/// `remote_unavailable` loss records, at most one a second. Its own loss records are not
/// counted: it could not have them either, and counting them would make one more each time.
pub struct Unavailable {
    name: String,
    /// `"remote":NAME`, which its own loss records hold (and no other's).
    own: String,
    format: Format,
    why: String,
    losses: mpsc::Sender<SinkLoss>,
    lost: Runs,
    count: u64,
    told: Instant,
}

impl Unavailable {
    pub fn new(
        name: String,
        format: Format,
        why: String,
        losses: mpsc::Sender<SinkLoss>,
    ) -> Unavailable {
        Unavailable {
            own: format!("\"remote\":{}", serde_json::Value::from(name.as_str())),
            name,
            format,
            why,
            losses,
            lost: Runs::default(),
            count: 0,
            told: Instant::now(),
        }
    }
}

impl Sink for Unavailable {
    fn name(&self) -> &'static str {
        "remote"
    }

    fn format(&self) -> Format {
        self.format
    }

    fn write_line(&mut self, seq: u64, line: &str) {
        if line.contains("\"stage\":\"remote_unavailable\"") && line.contains(&self.own) {
            return;
        }
        self.lost.add(seq, seq);
        self.count += 1;
    }

    fn flush(&mut self) {
        if self.told.elapsed() >= Duration::from_secs(1) {
            self.told = Instant::now();
            self.lost
                .tell(&self.losses, "remote", &self.name, "remote_unavailable");
        }
    }

    fn errors(&self) -> u64 {
        self.count
    }

    fn target(&self) -> &str {
        &self.name
    }

    fn status(&self) -> Option<Value> {
        Some(json!({
            "state": "unavailable",
            "delivered": 0,
            "last_error": self.why,
            "queue_lost": self.count,
        }))
    }
}

impl Sink for RemoteSink {
    fn name(&self) -> &'static str {
        "remote"
    }

    fn format(&self) -> Format {
        self.format
    }

    fn write_line(&mut self, seq: u64, line: &str) {
        // Counted before it is sent: the writer may take it, and count it out, at once.
        let before = self.queued.fetch_add(line.len(), Ordering::Relaxed);
        if before + line.len() <= QUEUE_BYTES && self.lines.try_send((seq, line.to_owned())).is_ok()
        {
            self.report_dropped();
            return;
        }
        self.queued.fetch_sub(line.len(), Ordering::Relaxed);
        self.dropped += 1;
        if self.dropped == 1 || self.dropped.is_multiple_of(10_000) {
            tracing::error!(
                "remote {}: its spool writer cannot keep up; {} records lost so far",
                self.name,
                self.dropped
            );
        }
        self.unreported.add(seq, seq);
    }

    fn flush(&mut self) {
        if self.lines.capacity() > 0 && self.queued.load(Ordering::Relaxed) <= QUEUE_BYTES / 2 {
            self.report_dropped();
        }
    }

    fn errors(&self) -> u64 {
        self.dropped
    }

    fn target(&self) -> &str {
        &self.name
    }

    fn status(&self) -> Option<Value> {
        let mut status = json!(*self.status.borrow());
        status["queue_lost"] = json!(self.dropped);
        status["spool_write_lost"] = json!(self.spool_lost.load(Ordering::Relaxed));
        status["backlog_bytes"] = json!(self.backlog.load(Ordering::Relaxed));
        Some(status)
    }
}

/// Append what comes in, sync per batch, publish how far the sender may read, and keep the
/// spool within its size.
async fn write_spool(
    mut spool: SpoolWriter,
    (mut rx, queued): (mpsc::Receiver<(u64, String)>, Arc<AtomicUsize>),
    end: watch::Sender<Position>,
    delivered: watch::Receiver<Position>,
    losses: mpsc::Sender<SinkLoss>,
    (spool_lost, backlog): (Arc<AtomicU64>, Arc<AtomicU64>),
    name: String,
) {
    let mut failing = false;
    let mut measured = Backlog::new(backlog);
    // Records that could not be written, as runs of seqs, named in loss records once the spool
    // takes a write again: a loss record made now would meet the full disk too, and its own
    // loss another one, for as long as the disk is full.
    // While it stays full, they are named every few seconds all the same (one loss record
    // each time, not one for each batch).
    let mut lost = Runs::default();
    let mut told = Instant::now();
    while let Some(first) = rx.recv().await {
        // Every record of the batch is tried: one that cannot be written is counted and named in
        // a loss record, and the ones after it still get their chance.
        let (mut error, mut written) = (None, 0u64);
        let mut next = Some(first);
        while let Some((seq, line)) = next {
            queued.fetch_sub(line.len(), Ordering::Relaxed);
            match spool.append(&line) {
                Ok(()) => written += 1,
                Err(err) => {
                    spool_lost.fetch_add(1, Ordering::Relaxed);
                    lost.add(seq, seq);
                    error = Some(err);
                }
            }
            next = rx.try_recv().ok();
        }
        // Not durable when the sync fails, yet written: the sender may still read it.
        if let Err(err) = spool.sync() {
            error.get_or_insert(err);
        }
        end.send_replace(spool.position());
        match error {
            Some(err) if !failing => {
                failing = true;
                tracing::error!("remote {name}: cannot write its spool: {err}");
            }
            Some(_) => {}
            None => failing = false,
        }
        if (!failing && written > 0) || told.elapsed() >= SPOOL_LOSS_EVERY {
            lost.tell(&losses, "remote", &name, "spool_write");
            told = Instant::now();
        }
        let delivered_to = *delivered.borrow();
        match spool.enforce_limit(delivered_to) {
            Ok(Some(Dropped {
                count,
                first_seq,
                last_seq,
            })) => {
                tracing::warn!("remote {name}: spool full, dropped {count} undelivered records (seq {first_seq:?} to {last_seq:?})");
                let _ = losses
                    .send(SinkLoss {
                        sink: "remote",
                        target: name.clone(),
                        stage: "spool_full",
                        count,
                        first_seq,
                        last_seq,
                        lost_run_id: None,
                    })
                    .await;
            }
            Ok(None) => {}
            Err(err) => tracing::error!("remote {name}: cannot trim its spool: {err}"),
        }
        // While the collector is away, records still come: the backlog is measured here.
        measured.measure(false, || spool.backlog_bytes(delivered_to));
    }
    if let Ok(position) = spool.sync() {
        end.send_replace(position);
    }
}

/// A small xorshift for jitter: no need for a crate's worth of randomness.
fn jitter(seed: &mut u64, base: Duration) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let spread = (*seed % 400) as f64 / 1000.0 - 0.2; // ±20%
    base.mul_f64(1.0 + spread)
}

/// Where the sender says what it did: how far it delivered, its state, what it dropped, and
/// what is left.
struct Reports {
    delivered: watch::Sender<Position>,
    status: watch::Sender<RemoteStatus>,
    losses: mpsc::Sender<SinkLoss>,
    backlog: Arc<AtomicU64>,
}

/// The spool's backlog for status, measured (from the segments' sizes) at most once a second,
/// by the writer as records come and by the sender as it delivers them.
struct Backlog {
    bytes: Arc<AtomicU64>,
    measured: Option<Instant>,
}

impl Backlog {
    fn new(bytes: Arc<AtomicU64>) -> Backlog {
        Backlog {
            bytes,
            measured: None,
        }
    }

    /// Measure with `bytes` if a second has passed, or `now`.
    fn measure(&mut self, now: bool, bytes: impl FnOnce() -> u64) {
        if now
            || self
                .measured
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.bytes.store(bytes(), Ordering::Relaxed);
            self.measured = Some(Instant::now());
        }
    }
}

/// Deliver from the spool, in order, until the writer is done (shutdown): what is left stays
/// in the spool for the next start.
async fn send_spool(
    remote: RemoteConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    mut spool: SpoolReader,
    mut end: watch::Receiver<Position>,
    reports: Reports,
    name: String,
) {
    let Reports {
        delivered,
        status,
        losses,
        backlog,
    } = reports;
    let mut backlog = Backlog::new(backlog);
    let mut connection: Option<protocol::Connection> = None;
    let mut retry = Retry::new(Duration::from_secs(remote.retry_interval_seconds.max(1)));
    let flush_every = Duration::from_millis(remote.flush_interval_ms);
    loop {
        let until = *end.borrow();
        let batch = spool.read_batch(
            until,
            remote.batch_max_events as usize,
            remote.batch_max_bytes as usize,
        );
        let (lines, to) = match batch {
            Ok(b) => b,
            Err(err) => {
                tracing::error!("remote {name}: cannot read its spool: {err}");
                (Vec::new(), spool.at)
            }
        };
        // Caught up: measured now, so that status does not show what was just delivered.
        backlog.measure(lines.is_empty(), || spool.backlog_bytes());
        for skipped in std::mem::take(&mut spool.skipped) {
            tracing::warn!(
                "remote {name}: {} corrupt lines in its spool were skipped (between seq {:?} and {:?})",
                skipped.lines,
                skipped.first_seq,
                skipped.last_seq
            );
            let _ = losses
                .send(SinkLoss {
                    sink: "remote",
                    target: name.clone(),
                    stage: "spool_corrupt",
                    count: skipped.lines,
                    first_seq: skipped.first_seq,
                    last_seq: skipped.last_seq,
                    lost_run_id: skipped.run_id,
                })
                .await;
        }
        if lines.is_empty() {
            status.send_modify(|s| {
                if s.state == "connected" {
                    s.state = "idle";
                }
            });
            // Wait for more (a batch forms for up to flush_interval_ms) or the end of the run.
            if end.changed().await.is_err() {
                return;
            }
            tokio::time::sleep(flush_every).await;
            continue;
        }
        if connection.is_none() {
            status.send_modify(|s| s.state = "connecting");
            let limit = Duration::from_secs(remote.timeout_seconds);
            match with_timeout(&remote, limit, protocol::connect(&remote, tls.as_ref())).await {
                Ok(c) => {
                    retry.succeeded(&name);
                    connection = Some(c);
                }
                Err(err) => {
                    if !retry.failed(&name, &err, &status, &mut end).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let c = connection.as_mut().expect("connected above");
        match with_timeout(
            &remote,
            remote.send_timeout(lines.len()),
            c.send(&remote, &lines),
        )
        .await
        {
            Ok(()) => {
                retry.succeeded(&name);
                if let Err(err) = spool.commit(to) {
                    tracing::error!("remote {name}: cannot save its spool cursor: {err}");
                }
                delivered.send_replace(to);
                status.send_modify(|s| {
                    s.state = "connected";
                    s.delivered += lines.len() as u64;
                    s.last_error = None;
                });
            }
            Err(protocol::SendError::Refused(why)) => {
                // Sent again it would be refused again: it goes, and the loss says which.
                retry.succeeded(&name);
                tracing::warn!(
                    "remote {name}: {why}: a batch of {} records is dropped, as it would be refused again",
                    lines.len()
                );
                refused(&name, &lines, &losses, &status, why).await;
                if let Err(err) = spool.commit(to) {
                    tracing::error!("remote {name}: cannot save its spool cursor: {err}");
                }
                delivered.send_replace(to);
            }
            Err(protocol::SendError::Partly(at, why)) => {
                retry.succeeded(&name);
                tracing::warn!(
                    "remote {name}: {why}: {} of a batch of {} records are dropped",
                    at.len(),
                    lines.len()
                );
                let dropped: Vec<String> =
                    at.iter().filter_map(|&i| lines.get(i).cloned()).collect();
                refused(&name, &dropped, &losses, &status, why).await;
                if let Err(err) = spool.commit(to) {
                    tracing::error!("remote {name}: cannot save its spool cursor: {err}");
                }
                delivered.send_replace(to);
                status.send_modify(|s| s.delivered += (lines.len() - dropped.len()) as u64);
            }
            Err(protocol::SendError::Retry(err)) => {
                connection = None;
                if !retry.failed(&name, &err, &status, &mut end).await {
                    return;
                }
            }
        }
    }
}

/// Records a collector refused for what they are: in status, and in loss records, one for each
/// run of consecutive seqs, so that each names exactly the records it counts. Its own loss
/// records of refusals, refused in turn, are counted and not named again: a collector that
/// refuses everything would otherwise get a new one for each, for ever.
async fn refused(
    name: &str,
    lines: &[String],
    losses: &mpsc::Sender<SinkLoss>,
    status: &watch::Sender<RemoteStatus>,
    why: String,
) {
    // A record's strings are escaped: their quotes cannot make these.
    let own = format!("\"remote\":{}", serde_json::Value::from(name));
    let mut seqs: Vec<u64> = lines
        .iter()
        .filter(|l| !(l.contains("\"stage\":\"remote_refused\"") && l.contains(&own)))
        .filter_map(|l| seq_of(l))
        .collect();
    seqs.sort_unstable();
    let mut runs = Runs::default();
    for seq in seqs {
        runs.add(seq, seq);
    }
    // Waited for, not tried: the sender has time, and these must not be dropped.
    for run in runs.0 {
        let _ = losses
            .send(SinkLoss::run("remote", name, "remote_refused", run))
            .await;
    }
    status.send_modify(|s| {
        s.refused += lines.len() as u64;
        s.last_error = Some(why);
    });
}

/// `work`, given up after `limit`: a peer that stops answering costs a reconnection, not the
/// sender.
async fn with_timeout<T, E: From<String>>(
    remote: &RemoteConfig,
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(format!(
            "{} did not answer within {} s",
            remote.address,
            limit.as_secs()
        )
        .into())
    })
}

/// Failures in a row: logged once per streak, waited out with capped exponential backoff and
/// jitter.
struct Retry {
    first: Duration,
    next: Duration,
    since: Option<Instant>,
    seed: u64,
}

impl Retry {
    fn new(first: Duration) -> Retry {
        Retry {
            first,
            next: first,
            since: None,
            seed: u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn succeeded(&mut self, name: &str) {
        self.next = self.first;
        if self.since.take().is_some() {
            tracing::info!("remote {name}: connected again");
        }
    }

    /// Log, back off, and say whether to go on (false: the run is ending).
    async fn failed(
        &mut self,
        name: &str,
        err: &str,
        status: &watch::Sender<RemoteStatus>,
        end: &mut watch::Receiver<Position>,
    ) -> bool {
        if self.since.is_none() {
            tracing::warn!("remote {name}: {err}; spooling and retrying");
            self.since = Some(Instant::now());
        }
        status.send_modify(|s| {
            s.state = "backing_off";
            s.last_error = Some(err.to_owned());
        });
        let wait = jitter(&mut self.seed, self.next);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // Sleep, but not past shutdown.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                changed = end.changed() => if changed.is_err() { return false },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink for `http://collector` whose queue and losses the test holds the other ends of.
    fn sink(lines: mpsc::Sender<(u64, String)>, losses: mpsc::Sender<SinkLoss>) -> RemoteSink {
        RemoteSink {
            name: "http://collector".into(),
            format: Format::Owo,
            backlog: Arc::new(AtomicU64::new(0)),
            lines,
            status: watch::channel(RemoteStatus::default()).1,
            losses,
            dropped: 0,
            unreported: Runs::default(),
            spool_lost: Arc::new(AtomicU64::new(0)),
            queued: Arc::default(),
        }
    }

    #[test]
    fn records_a_full_queue_drops_are_named_once_it_has_room() {
        let (lines, mut queue) = mpsc::channel(2);
        let (losses, mut reported) = mpsc::channel(16);
        let mut sink = sink(lines, losses);
        for seq in 1..=5 {
            sink.write_line(seq, "{}");
        }
        sink.flush();
        assert!(
            reported.try_recv().is_err(),
            "no loss record while the queue is full: it would be dropped too"
        );
        // The writer catches up.
        while queue.try_recv().is_ok() {}
        sink.write_line(6, "{}");
        let loss = reported.try_recv().expect("the loss, now");
        assert_eq!(
            (loss.stage, loss.count, loss.first_seq, loss.last_seq),
            ("remote_queue", 3, Some(3), Some(5))
        );
        assert!(reported.try_recv().is_err(), "one loss record for the run");
        assert_eq!(sink.errors(), 3);
    }

    #[tokio::test]
    async fn the_loss_records_of_refusals_refused_in_turn_are_not_named_again() {
        let (losses, mut reported) = mpsc::channel(16);
        let (status, status_rx) = watch::channel(RemoteStatus::default());
        let name = "http://collector";
        let lines = [
            r#"{"seq":7,"event":{"event_type":"execve"}}"#.to_owned(),
            r#"{"seq":8,"event":{"event_type":"agent","type":"loss","stage":"remote_refused","count":1,"remote":"http://collector","first_seq":3,"last_seq":3}}"#.to_owned(),
            r#"{"seq":9,"event":{"event_type":"agent","type":"loss","stage":"remote_refused","count":1,"remote":"http://other","first_seq":4,"last_seq":4}}"#.to_owned(),
        ];
        refused(name, &lines, &losses, &status, "HTTP 400".into()).await;
        let mut named = Vec::new();
        while let Ok(loss) = reported.try_recv() {
            named.push((loss.first_seq, loss.last_seq));
        }
        assert_eq!(named, [(Some(7), Some(7)), (Some(9), Some(9))]);
        assert_eq!(status_rx.borrow().refused, 3, "all counted");
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let (lines, _queue) = mpsc::channel(QUEUE);
        let (losses, _reported) = mpsc::channel(16);
        let mut sink = sink(lines, losses);
        let line = "x".repeat(60_000);
        for seq in 1..=1000 {
            sink.write_line(seq, &line);
        }
        let kept = (QUEUE_BYTES / line.len()) as u64;
        assert_eq!(
            sink.errors(),
            1000 - kept,
            "past {QUEUE_BYTES} bytes, dropped"
        );
        assert!(sink.queued.load(Ordering::Relaxed) <= QUEUE_BYTES);
    }
}
