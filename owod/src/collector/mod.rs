//! The collector: loads the eBPF object (see [`loader`]), reads both ring buffers (the process
//! lane and the activity lane), decodes each record and puts the events of the two lanes back in
//! kernel-time order ([`LaneMerge`]) before it hands them to the process stage, in batches. Kernel-side
//! losses (ring buffer reservations that failed) are read from the per-CPU counter map once a
//! second and sent on as [`Loss`] messages. On shutdown it detaches every program first, then
//! drains what is left in the rings, so nothing already seen is lost.
//!
//! The programs do not wake owod for each record: below a fill level they commit with
//! `BPF_RB_NO_WAKEUP`, and the collector reads both rings every [`POLL`] (and whenever a ring
//! past that level wakes it), so a burst costs one wake-up, not one per record.

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

use crate::{
    config::Config,
    pipeline::merge::{Lane, LaneMerge},
};
use loader::{ACTIVITY_RING, DROPS_MAP, PROC_RING};

/// How often both rings are read when nothing wakes the collector (see the module doc). With
/// the merge's slack, this bounds how long an event waits before it goes on.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(10);

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
    hooks: loader::Hooks,
    proc_ring: RingBuf<MapData>,
    activity_ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    pub monitors: BTreeMap<&'static str, MonitorState>,
    /// Each monitor's hooks, what this kernel lacks of them, and their blind spots.
    pub coverage: BTreeMap<&'static str, loader::Coverage>,
    pub program_ids: Vec<u32>,
    pub kernel: loader::KernelChoice,
}

impl Collector {
    /// The monitors that could not load, with the reason for each.
    pub fn unavailable(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.monitors
            .iter()
            .filter_map(|(name, state)| match state {
                MonitorState::Unavailable(why) => Some((*name, why.as_str())),
                _ => None,
            })
    }
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
        /// `monitor.compat_syscalls`.
        compat: bool,
        reply: oneshot::Sender<Result<(), CollectorError>>,
    },
}

impl Collector {
    /// Load and attach; `guarded`: owod's own paths, watched beside the configured ones.
    pub fn load(config: &Config, guarded: &[String]) -> Result<Collector, CollectorError> {
        let loader::Loaded {
            mut ebpf,
            settings,
            hooks,
            monitors,
            coverage,
            program_ids,
            kernel,
        } = loader::load(config, guarded)?;
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
            hooks,
            proc_ring,
            activity_ring,
            drops,
            monitors,
            coverage,
            program_ids,
            kernel,
        })
    }

    /// Read until `shutdown` says stop, then detach and drain. Each turn reads both rings (at
    /// most [`BATCH`] records of each, so neither can starve the other or the commands), raises
    /// the lanes' watermarks and sends every event whose turn has come, as one batch. While the
    /// loop turns it pings systemd's watchdog (when one is set): a pipeline stuck downstream
    /// stops the loop, and with it the pings.
    pub async fn run(
        self,
        tx: mpsc::Sender<Vec<Collected>>,
        mut commands: mpsc::Receiver<CollectorCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), CollectorError> {
        let Collector {
            mut ebpf,
            mut settings,
            mut hooks,
            proc_ring,
            activity_ring,
            drops,
            ..
        } = self;
        let mut proc_ring = poll(proc_ring)?;
        let mut activity_ring = poll(activity_ring)?;
        let mut reader = Reader::default();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut poll_tick = tokio::time::interval(POLL);
        poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watchdog = crate::service::watchdog_interval();
        let mut pinged = std::time::Instant::now();
        let mut more = false;
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
                _ = tick.tick() => reader.losses.report(&drops, &mut reader.out),
                Some(command) = commands.recv() => match command {
                    CollectorCommand::SetMonitor { monitor, on, reply } => {
                        let _ = reply.send(switch(&mut ebpf, &mut settings, &mut hooks, monitor, on));
                    }
                    CollectorCommand::Reconfigure { monitors, watch_paths, all_paths, compat, reply } => {
                        let result = (|| {
                            settings.set_watch(&watch_paths, all_paths)?;
                            hooks.want_ia32(&mut ebpf, compat)?;
                            monitors.iter().try_for_each(|&(m, on)| {
                                switch(&mut ebpf, &mut settings, &mut hooks, m, on)
                            })
                        })();
                        let _ = reply.send(result);
                    }
                },
                _ = async {}, if more => {}
                guard = proc_ring.readable_mut() => guard.map_err(CollectorError::Poll)?.clear_ready(),
                guard = activity_ring.readable_mut() => guard.map_err(CollectorError::Poll)?.clear_ready(),
                _ = poll_tick.tick() => {}
            }
            // The process lane first: a flood of activity cannot delay exec and exit events.
            more = !reader.read(proc_ring.get_mut(), Lane::Process, BATCH);
            more |= !reader.read(activity_ring.get_mut(), Lane::Activity, BATCH);
            reader.send(&tx, false).await?;
        }
        // Detach first so that nothing new arrives, then take what is still in the rings.
        drop(ebpf);
        reader.read(proc_ring.get_mut(), Lane::Process, usize::MAX);
        reader.read(activity_ring.get_mut(), Lane::Activity, usize::MAX);
        reader.losses.report(&drops, &mut reader.out);
        reader.send(&tx, true).await
    }
}

/// Switch a monitor: its programs are attached before its flag goes on, and its flag goes off
/// before they are detached.
fn switch(
    ebpf: &mut Ebpf,
    settings: &mut loader::KernelSettings,
    hooks: &mut loader::Hooks,
    monitor: Monitor,
    on: bool,
) -> Result<(), CollectorError> {
    if on {
        hooks.switch(ebpf, monitor, true)?;
        settings.set_monitor(monitor, true)
    } else {
        settings.set_monitor(monitor, false)?;
        hooks.switch(ebpf, monitor, false)
    }
}

/// Records read from one ring in one turn, and about how many of their bytes at most: a batch
/// of execs with long argv costs memory in every queue it passes, so it is bounded in bytes too.
const BATCH: usize = 1024;
const READ_BYTES: usize = 512 << 10;

/// The boot-time clock, the one `bpf_ktime_get_boot_ns()` reads.
fn boottime_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

/// What the collector has read and not yet sent on.
#[derive(Default)]
struct Reader {
    merge: LaneMerge,
    losses: LossCounter,
    /// The next batch for the process stage.
    out: Vec<Collected>,
}

impl Reader {
    /// Read up to `max` records (and about `READ_BYTES`) of one lane into the merge; true if the
    /// ring was read to its end.
    fn read(&mut self, ring: &mut RingBuf<MapData>, lane: Lane, max: usize) -> bool {
        let now = boottime_ns();
        let mut last = None;
        let mut bytes = 0;
        for _ in 0..max {
            if bytes >= READ_BYTES {
                break;
            }
            let Some(item) = ring.next() else {
                self.merge.drained(lane, now);
                return true;
            };
            bytes += item.len();
            match decode(&item) {
                Ok(event) => {
                    last = Some(event.task().ktime_ns);
                    self.merge.push(lane, event);
                }
                Err(err) => self.losses.decode_error(err),
            }
        }
        if let Some(last) = last {
            self.merge.read_up_to(lane, last);
        }
        false
    }

    /// Send every event whose turn has come (every event held, when `all`), and the losses.
    async fn send(
        &mut self,
        tx: &mpsc::Sender<Vec<Collected>>,
        all: bool,
    ) -> Result<(), CollectorError> {
        loop {
            let next = match all {
                true => self.merge.pop_any(),
                false => self.merge.pop_ready(),
            };
            let Some(event) = next else { break };
            self.out.push(Collected::Event(event));
        }
        self.losses.out_of_order(self.merge.forced);
        if self.out.is_empty() {
            return Ok(());
        }
        // The next batch starts with room for one like this one.
        let capacity = self.out.len();
        tx.send(std::mem::replace(
            &mut self.out,
            Vec::with_capacity(capacity),
        ))
        .await
        .map_err(|_| CollectorError::PipelineClosed)
    }
}

/// Kernel drop counters and decode failures, reported as deltas.
#[derive(Default)]
struct LossCounter {
    kernel_seen: [u64; owo_common::abi::MONITOR_COUNT as usize],
    decode_errors: u64,
    decode_reported: u64,
    forced_reported: u64,
}

impl LossCounter {
    fn decode_error(&mut self, err: owo_common::DecodeError) {
        if self.decode_errors == 0 {
            tracing::warn!("dropping an undecodable ring buffer record: {err} (further ones are counted in `loss` records)");
        }
        self.decode_errors += 1;
    }

    /// Events the merge let go before their turn (it held too many): counted once, in the log.
    fn out_of_order(&mut self, forced: u64) {
        if forced > 0 && self.forced_reported == 0 {
            tracing::warn!("more events than the lane merge holds: some leave before an earlier event of the other lane (order is then best effort)");
        }
        self.forced_reported = forced;
    }

    /// New losses since the last report, logged and added to the batch `to`.
    fn report(&mut self, drops: &PerCpuArray<MapData, u64>, to: &mut Vec<Collected>) {
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
            to.push(Collected::Loss(loss));
        }
    }
}
