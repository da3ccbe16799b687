//! The collector: loads the eBPF object (see [`loader`]) and turns the records of both ring
//! buffers (the process lane and the activity lane) into [`Collected`] messages for the process
//! stage. Kernel-side losses (ring buffer reservations that failed) are read from the per-CPU
//! counter map once a second and sent on as [`Loss`] messages. On shutdown it detaches every
//! program first, then drains what is left in the rings, so nothing already seen is lost.

pub mod loader;
pub mod preflight;

use std::collections::BTreeMap;

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    Ebpf,
};
use owo_common::{abi::Monitor, decode, Event};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot, watch},
};

use crate::config::Config;
use loader::{ACTIVITY_RING, DROPS_MAP, PROC_RING};

/// What the collector hands to the process stage.
// Events are the common case and losses rare: boxing events would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Collected {
    Event(Event),
    Loss(Loss),
}

/// Records lost at one stage, since the last report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    pub monitor: Option<Monitor>,
    pub stage: &'static str,
    pub count: u64,
    pub total: u64,
}

/// How each monitor stands after loading.
#[derive(Clone, Debug)]
pub enum MonitorState {
    On,
    Off,
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("cannot read the eBPF object `{path}`")]
    ReadObject {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to load the eBPF object")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no program `{0}`")]
    NoProgram(String),
    #[error("the eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("this kernel has none of its tracepoints ({missing})")]
    NoTracepoints { missing: String },
    #[error("the kernel's verifier refused `{program}`: {reason}")]
    Refused { program: String, reason: String },
    #[error("owod cannot run on Linux {kernel}: its `{monitor}` monitor cannot be loaded")]
    Essential {
        kernel: String,
        monitor: &'static str,
        #[source]
        source: Box<CollectorError>,
    },
    #[error("failed to load program `{program}`")]
    LoadProgram {
        program: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("failed to attach `{tracepoint}`")]
    Attach {
        tracepoint: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("failed to use map `{map}`")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot poll the ring buffer")]
    Poll(#[source] std::io::Error),
    #[error("the process stage stopped, so nothing read can be delivered")]
    PipelineClosed,
}

/// Loaded and attached; not yet reading.
pub struct Collector {
    ebpf: Ebpf,
    settings: loader::KernelSettings,
    proc_ring: RingBuf<MapData>,
    activity_ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    pub monitors: BTreeMap<&'static str, MonitorState>,
    pub program_ids: Vec<u32>,
    pub kernel: loader::KernelChoice,
}

fn take_ring(ebpf: &mut Ebpf, name: &'static str) -> Result<RingBuf<MapData>, CollectorError> {
    let map = ebpf
        .take_map(name)
        .ok_or(CollectorError::MissingMap(name))?;
    RingBuf::try_from(map).map_err(|source| CollectorError::Map { map: name, source })
}

/// Register a ring buffer with the reactor.
fn poll(ring: RingBuf<MapData>) -> Result<AsyncFd<RingBuf<MapData>>, CollectorError> {
    // SAFETY: the ring buffer owns its map fd and keeps it open, unchanged, for as long as it
    // lives, and the AsyncFd owns the ring buffer.
    unsafe { AsyncFd::register(ring) }.map_err(|e| CollectorError::Poll(e.into()))
}

/// Requests to the collector (it owns the kernel's settings maps).
pub enum CollectorCommand {
    /// Switch a monitor's flag in the kernel.
    SetMonitor {
        monitor: Monitor,
        on: bool,
        reply: oneshot::Sender<Result<(), CollectorError>>,
    },
    /// Apply a reloaded config's monitor flags and watched paths.
    Reconfigure {
        monitors: Vec<(Monitor, bool)>,
        watch_paths: Vec<String>,
        all_paths: bool,
        reply: oneshot::Sender<Result<(), CollectorError>>,
    },
}

impl Collector {
    pub fn load(config: &Config) -> Result<Collector, CollectorError> {
        let loader::Loaded {
            mut ebpf,
            settings,
            monitors,
            program_ids,
            kernel,
        } = loader::load(config)?;
        let proc_ring = take_ring(&mut ebpf, PROC_RING)?;
        let activity_ring = take_ring(&mut ebpf, ACTIVITY_RING)?;
        let drops = ebpf
            .take_map(DROPS_MAP)
            .ok_or(CollectorError::MissingMap(DROPS_MAP))?;
        let drops = PerCpuArray::try_from(drops).map_err(|source| CollectorError::Map {
            map: DROPS_MAP,
            source,
        })?;
        Ok(Collector {
            ebpf,
            settings,
            proc_ring,
            activity_ring,
            drops,
            monitors,
            program_ids,
            kernel,
        })
    }

    /// Read until `shutdown` says stop, then detach and drain. The process lane is read first
    /// whenever both have records, so a flood of activity cannot delay exec and exit records.
    /// While the loop turns it pings systemd's watchdog (when one is set): a pipeline stuck
    /// downstream stops the loop, and with it the pings.
    pub async fn run(
        self,
        tx: mpsc::Sender<Collected>,
        mut commands: mpsc::Receiver<CollectorCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), CollectorError> {
        let Collector {
            ebpf,
            mut settings,
            proc_ring,
            activity_ring,
            drops,
            ..
        } = self;
        let mut proc_ring = poll(proc_ring)?;
        let mut activity_ring = poll(activity_ring)?;
        let mut losses = LossCounter::default();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let watchdog = crate::service::watchdog_interval();
        let mut pinged = std::time::Instant::now();
        loop {
            if let Some(interval) = watchdog {
                if pinged.elapsed() >= interval / 2 {
                    crate::service::notify_watchdog();
                    pinged = std::time::Instant::now();
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = tick.tick() => losses.report(&drops, &tx).await,
                Some(command) = commands.recv() => match command {
                    CollectorCommand::SetMonitor { monitor, on, reply } => {
                        let _ = reply.send(settings.set_monitor(monitor, on));
                    }
                    CollectorCommand::Reconfigure { monitors, watch_paths, all_paths, reply } => {
                        let result = (|| {
                            settings.set_watch_paths(&watch_paths)?;
                            settings.set_all_paths(all_paths)?;
                            monitors.iter().try_for_each(|&(m, on)| settings.set_monitor(m, on))
                        })();
                        let _ = reply.send(result);
                    }
                },
                guard = proc_ring.readable_mut() => {
                    let mut guard = guard.map_err(CollectorError::Poll)?;
                    if drain(guard.get_inner_mut(), &tx, &mut losses, BATCH).await? {
                        guard.clear_ready();
                    }
                }
                guard = activity_ring.readable_mut() => {
                    let mut guard = guard.map_err(CollectorError::Poll)?;
                    if drain(guard.get_inner_mut(), &tx, &mut losses, BATCH).await? {
                        guard.clear_ready();
                    }
                }
            }
        }
        // Detach first so that nothing new arrives, then take what is still in the rings.
        drop(ebpf);
        drain(proc_ring.get_mut(), &tx, &mut losses, usize::MAX).await?;
        drain(activity_ring.get_mut(), &tx, &mut losses, usize::MAX).await?;
        losses.report(&drops, &tx).await;
        Ok(())
    }
}

/// Records read from one ring before the other gets a turn: a ring that never empties (a flood
/// of file events) cannot keep the process lane from being read.
const BATCH: usize = 256;

/// Read up to `max` records; true if the ring is empty (its readiness may be cleared), false if
/// it has more (the ring stays ready, so it is read again on the next turn).
async fn drain(
    ring: &mut RingBuf<MapData>,
    tx: &mpsc::Sender<Collected>,
    losses: &mut LossCounter,
    max: usize,
) -> Result<bool, CollectorError> {
    for _ in 0..max {
        let decoded = match ring.next() {
            Some(item) => decode(&item),
            None => return Ok(true),
        };
        match decoded {
            Ok(event) => tx
                .send(Collected::Event(event))
                .await
                .map_err(|_| CollectorError::PipelineClosed)?,
            Err(err) => losses.decode_error(err),
        }
    }
    Ok(false)
}

/// Kernel drop counters and decode failures, reported as deltas.
#[derive(Default)]
struct LossCounter {
    kernel_seen: [u64; owo_common::abi::MONITOR_COUNT as usize],
    decode_errors: u64,
    decode_reported: u64,
}

impl LossCounter {
    fn decode_error(&mut self, err: owo_common::DecodeError) {
        if self.decode_errors == 0 {
            tracing::warn!("dropping an undecodable ring buffer record: {err} (further ones are counted in `loss` records)");
        }
        self.decode_errors += 1;
    }

    async fn report(&mut self, drops: &PerCpuArray<MapData, u64>, tx: &mpsc::Sender<Collected>) {
        let mut out = Vec::new();
        for monitor in Monitor::ALL {
            let Ok(per_cpu) = drops.get(&(monitor as u32), 0) else {
                continue;
            };
            let total: u64 = per_cpu.iter().sum();
            let seen = &mut self.kernel_seen[monitor as usize];
            if total > *seen {
                out.push(Loss {
                    monitor: Some(monitor),
                    stage: "ringbuf",
                    count: total - *seen,
                    total,
                });
                *seen = total;
            }
        }
        if self.decode_errors > self.decode_reported {
            out.push(Loss {
                monitor: None,
                stage: "decode",
                count: self.decode_errors - self.decode_reported,
                total: self.decode_errors,
            });
            self.decode_reported = self.decode_errors;
        }
        for loss in out {
            tracing::warn!(
                stage = loss.stage,
                count = loss.count,
                "lost {} records at stage `{}` (monitor `{}`)",
                loss.count,
                loss.stage,
                loss.monitor.map_or("-", Monitor::name)
            );
            let _ = tx.send(Collected::Loss(loss)).await;
        }
    }
}
