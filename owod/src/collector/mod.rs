//! The collector: loads the eBPF object, sets the monitor flags in the kernel, attaches the
//! programs and turns ring buffer records into [`Collected`] messages for the process stage.
//! Kernel-side losses (ring buffer reservations that failed) are read from the per-CPU counter
//! map once a second and sent on as [`Loss`] messages. On shutdown it detaches every program
//! first, then drains what is left in the ring buffer, so nothing already seen is lost.

pub mod preflight;

use std::collections::BTreeMap;

use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use owo_common::{abi::Monitor, decode, Event};
use tokio::{io::unix::AsyncFd, sync::mpsc, sync::watch};

use crate::config::Config;

/// What the collector hands to the process stage.
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
    MissingProgram(&'static str),
    #[error("the eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("failed to load program `{program}`")]
    LoadProgram {
        program: &'static str,
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

const PROC_RING: &str = "owo_proc_events";
const CONFIG_MAP: &str = "owo_config";
const DROPS_MAP: &str = "owo_ringbuf_drops";
/// Size of the process lane; a burst of execs must fit while owod catches up.
const PROC_RING_BYTES: u32 = 16 << 20;

enum Hook {
    Tracepoint(&'static str, &'static str),
    Raw(&'static str),
}

/// The programs of the process lane and where they attach.
const PROGRAMS: [(&str, Hook); 3] = [
    ("owo_exec", Hook::Tracepoint("sched", "sched_process_exec")),
    ("owo_exit", Hook::Tracepoint("sched", "sched_process_exit")),
    ("owo_fork", Hook::Raw("sched_process_fork")),
];

/// Loaded and attached; not yet reading.
pub struct Collector {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    pub monitors: BTreeMap<&'static str, MonitorState>,
    pub program_ids: Vec<u32>,
}

impl Collector {
    pub fn load(config: &Config) -> Result<Collector, CollectorError> {
        let object = if config.monitor.ebpf_path.is_empty() {
            owo_ebpf::object().to_vec()
        } else {
            std::fs::read(&config.monitor.ebpf_path).map_err(|source| {
                CollectorError::ReadObject {
                    path: config.monitor.ebpf_path.clone(),
                    source,
                }
            })?
        };
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(PROC_RING, PROC_RING_BYTES)
            .load(&object)
            .map_err(CollectorError::Load)?;

        let monitors = monitor_states(config);
        {
            let map = ebpf
                .map_mut(CONFIG_MAP)
                .ok_or(CollectorError::MissingMap(CONFIG_MAP))?;
            let mut flags: Array<&mut MapData, u32> =
                Array::try_from(map).map_err(|source| CollectorError::Map {
                    map: CONFIG_MAP,
                    source,
                })?;
            let set = |flags: &mut Array<&mut MapData, u32>, key: u32, value: u32| {
                flags
                    .set(key, value, 0)
                    .map_err(|source| CollectorError::Map {
                        map: CONFIG_MAP,
                        source,
                    })
            };
            for monitor in Monitor::ALL {
                let on = monitor == Monitor::Fork
                    || matches!(monitors.get(monitor.name()), Some(MonitorState::On));
                set(&mut flags, monitor as u32, on.into())?;
            }
            set(
                &mut flags,
                owo_common::abi::CFG_SELF_TGID,
                std::process::id(),
            )?;
        }

        let mut program_ids = Vec::new();
        for (name, hook) in PROGRAMS {
            let program = ebpf
                .program_mut(name)
                .ok_or(CollectorError::MissingProgram(name))?;
            let load_err = |source| CollectorError::LoadProgram {
                program: name,
                source,
            };
            match hook {
                Hook::Tracepoint(category, event) => {
                    let tp: &mut TracePoint = program.try_into().map_err(load_err)?;
                    tp.load().map_err(load_err)?;
                    tp.attach(category, event)
                        .map_err(|source| CollectorError::Attach {
                            tracepoint: format!("{category}:{event}"),
                            source,
                        })?;
                    program_ids.push(tp.info().map_err(load_err)?.id());
                }
                Hook::Raw(event) => {
                    let tp: &mut RawTracePoint = program.try_into().map_err(load_err)?;
                    tp.load().map_err(load_err)?;
                    tp.attach(event).map_err(|source| CollectorError::Attach {
                        tracepoint: format!("raw:{event}"),
                        source,
                    })?;
                    program_ids.push(tp.info().map_err(load_err)?.id());
                }
            }
        }

        let ring = ebpf
            .take_map(PROC_RING)
            .ok_or(CollectorError::MissingMap(PROC_RING))?;
        let ring = RingBuf::try_from(ring).map_err(|source| CollectorError::Map {
            map: PROC_RING,
            source,
        })?;
        let drops = ebpf
            .take_map(DROPS_MAP)
            .ok_or(CollectorError::MissingMap(DROPS_MAP))?;
        let drops = PerCpuArray::try_from(drops).map_err(|source| CollectorError::Map {
            map: DROPS_MAP,
            source,
        })?;
        Ok(Collector {
            ebpf,
            ring,
            drops,
            monitors,
            program_ids,
        })
    }

    /// Read until `shutdown` says stop, then detach and drain.
    pub async fn run(
        self,
        tx: mpsc::Sender<Collected>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), CollectorError> {
        let Collector {
            ebpf, ring, drops, ..
        } = self;
        // SAFETY: the ring buffer owns its map fd and keeps it open, unchanged, for as long as it
        // lives, and the AsyncFd owns the ring buffer.
        let mut ring =
            unsafe { AsyncFd::register(ring) }.map_err(|e| CollectorError::Poll(e.into()))?;
        let mut losses = LossCounter::default();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(CollectorError::Poll)?;
                    drain(guard.get_inner_mut(), &tx, &mut losses).await?;
                    guard.clear_ready();
                }
                _ = tick.tick() => losses.report(&drops, &tx).await,
            }
        }
        // Detach first so that nothing new arrives, then take what is still in the ring.
        drop(ebpf);
        drain(ring.get_mut(), &tx, &mut losses).await?;
        losses.report(&drops, &tx).await;
        Ok(())
    }
}

fn monitor_states(config: &Config) -> BTreeMap<&'static str, MonitorState> {
    let m = &config.monitor;
    let state = |on: bool| {
        if on {
            MonitorState::On
        } else {
            MonitorState::Off
        }
    };
    let later = |on: bool, issue: &str| {
        if on {
            MonitorState::Unavailable(format!("not in this build yet, see {issue}"))
        } else {
            MonitorState::Off
        }
    };
    BTreeMap::from([
        ("execve", state(m.execve)),
        ("exit", state(m.exit_events)),
        ("file", later(m.file_events, "the monitors issue")),
        ("network", later(m.network_events, "the monitors issue")),
        ("privilege", later(m.privilege_events, "the monitors issue")),
        ("write", later(m.write_events, "the monitors issue")),
        ("module", later(m.module_events, "the monitors issue")),
    ])
}

async fn drain(
    ring: &mut RingBuf<MapData>,
    tx: &mpsc::Sender<Collected>,
    losses: &mut LossCounter,
) -> Result<(), CollectorError> {
    loop {
        let decoded = match ring.next() {
            Some(item) => decode(&item),
            None => return Ok(()),
        };
        match decoded {
            Ok(event) => tx
                .send(Collected::Event(event))
                .await
                .map_err(|_| CollectorError::PipelineClosed)?,
            Err(err) => losses.decode_error(err),
        }
    }
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
