//! Loading: the eBPF object, the monitor flags and watched paths in the kernel's maps, and every
//! program attached to its tracepoint. A monitor whose tracepoints this kernel does not have (or
//! whose programs fail to attach) is reported unavailable, with the reason, and the others run.
//! The programs of an activity monitor that is switched off are loaded, attached once to show
//! that they can be, and detached: a hooked syscall costs every process something even when the
//! program returns at once. Switching the monitor on attaches them again. The process lane's
//! programs stay attached, because the process table needs them whether or not they report.

use std::{collections::BTreeMap, hash::Hasher, mem::size_of, path::Path};

use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap, Map, MapData, ProgramArray,
    },
    programs::{
        raw_trace_point::RawTracePointLinkId, trace_point::TracePointLinkId, ProgramError,
        ProgramType, RawTracePoint, TracePoint,
    },
    sys::{is_helper_supported, BpfHelper},
    Ebpf, EbpfLoader, VerifierLogLevel,
};
use owo_common::abi::{self, Monitor, Pod};
use owo_ebpf::Loops;

use super::{preflight, CollectorError, MonitorState};
use crate::config::Config;

pub const PROC_RING: &str = "owo_proc_events";
pub const ACTIVITY_RING: &str = "owo_activity_events";
pub const DROPS_MAP: &str = "owo_ringbuf_drops";
const CONFIG_MAP: &str = "owo_config";
const WATCH_MAP: &str = "owo_watch_paths";
const NAMES_MAP: &str = "owo_watch_names";
const SELF_MAP: &str = "owo_self_objects";
/// Each lane's ring buffer; a burst must fit while owod catches up.
const RING_BYTES: u32 = 16 << 20;

/// The syscalls each activity monitor hooks, at entry and exit.
const FILE_SYSCALLS: &[&str] = &[
    "open",
    "openat",
    "openat2",
    "creat",
    "unlink",
    "unlinkat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
];
/// Calls that move mounts: the file monitor's cache of unwatched directories forgets what it
/// knew at their exit.
const MOUNT_SYSCALLS: &[&str] = &["mount", "umount", "move_mount", "pivot_root"];
const NETWORK_SYSCALLS: &[&str] = &[
    "connect", "accept", "accept4", "sendto", "sendmsg", "sendmmsg",
];
const PRIVILEGE_SYSCALLS: &[&str] = &[
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
];
const MODULE_SYSCALLS: &[&str] = &["init_module", "finit_module"];

/// The monitors whose 32-bit compat calls the programs on raw_syscalls report (x86 only):
/// they are attached while any of these is on.
const IA32_MONITORS: &[Monitor] = &[
    Monitor::File,
    Monitor::Network,
    Monitor::Privilege,
    Monitor::Module,
    Monitor::Write,
];
const IA32_MAP: &str = "owo_ia32_calls";
/// The dispatchers, on raw_syscalls' sys_enter and sys_exit.
const IA32_HOOKS: [(&str, &str); 2] = [
    ("owo_ia32_enter", "sys_enter"),
    ("owo_ia32_exit", "sys_exit"),
];

/// Where a program is attached.
enum Hook {
    Tracepoint(&'static str, String),
    Raw(&'static str),
}

impl Hook {
    /// `category:event`, or `raw:event`.
    fn name(&self) -> String {
        match self {
            Hook::Tracepoint(category, event) => format!("{category}:{event}"),
            Hook::Raw(event) => format!("raw:{event}"),
        }
    }
}

/// io_uring's submission tracepoint, as this kernel names it: io_uring_submit_sqe until Linux
/// 5.18 (the fields the programs read, by CO-RE, are in both).
fn uring_submit() -> Hook {
    let event = ["io_uring_submit_req", "io_uring_submit_sqe"]
        .into_iter()
        .find(|event| tracepoint_exists("io_uring", event))
        .unwrap_or("io_uring_submit_req");
    Hook::Tracepoint("io_uring", event.to_owned())
}

/// What a monitor sees on this kernel: the hooks it attaches to, those of its hooks this
/// kernel lacks, and what none of its hooks can see.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Coverage {
    pub hooks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    pub blind_spots: Vec<&'static str>,
}

const COMPAT: &str =
    "32-bit compat syscalls (int 0x80, ia32 programs): no syscalls tracepoint sees them";
const COMPAT_OFF: &str =
    "32-bit compat syscalls (int 0x80, ia32 programs): monitor.compat_syscalls is off";

impl Coverage {
    /// This coverage with `monitor.compat_syscalls` off: the compat dispatchers' hooks are a
    /// blind spot.
    pub fn without_compat(&self) -> Coverage {
        let ia32: Vec<String> = IA32_HOOKS
            .iter()
            .map(|(_, e)| Hook::Raw(e).name())
            .collect();
        let mut seen = self.clone();
        seen.hooks.retain(|hook| !ia32.contains(hook));
        if seen.hooks.len() < self.hooks.len() {
            seen.blind_spots.insert(0, COMPAT_OFF);
        }
        seen
    }
}

/// Programs a monitor runs without where this kernel refuses them (the io_uring ones): what
/// else it sees does not depend on them.
const OPTIONAL: &[&str] = &["owo_uring_file", "owo_uring_network"];

/// What a monitor's hooks cannot see; `uring`: its io_uring program is attached.
fn blind_spots(monitor: Monitor, uring: bool) -> Vec<&'static str> {
    const URING_UNSEEN: &str =
        "io_uring requests: not seen (this kernel has no io_uring tracepoint, or refused the program)";
    match monitor {
        Monitor::Execve => vec!["failed execs: only a new program image is seen"],
        Monitor::Exit | Monitor::Fork => Vec::new(),
        Monitor::Tamper => vec![
            "SIGKILL and SIGSTOP: owod cannot report what stops it (a collector sees the heartbeats stop)",
            "pidfd_getfd: another process taking owod's descriptors",
            "writes to owod's binary, configuration and unit while the file monitor is off",
            "ptrace and process_vm calls that name one of owod's threads, and 32-bit calls while the compat dispatchers are detached",
        ],
        Monitor::File => vec![
            COMPAT,
            match uring {
                true => "io_uring opens are seen when submitted, without their result; io_uring unlinks and renames: no hook",
                false => URING_UNSEEN,
            },
            "mkdir, chmod, chown, setxattr, utimes, truncate, link and symlink: no hook",
        ],
        Monitor::Network => vec![
            COMPAT,
            match uring {
                true => "io_uring connects, accepts and sends are seen when submitted, without their result or an accept's peer, and accepts and sends on registered files not at all",
                false => URING_UNSEEN,
            },
            "bind and listen: no hook",
        ],
        Monitor::Privilege => vec![COMPAT, "setfsuid, setfsgid and capset: no hook"],
        Monitor::Module => vec![COMPAT],
        Monitor::Write => vec![
            COMPAT,
            "io_uring writes: no hook",
            "pwrite64, writev, pwritev, sendfile, splice, copy_file_range and writes through mmap: no hook",
        ],
    }
}

/// The programs of one monitor: (program name, hook).
fn programs_of(monitor: Monitor) -> Vec<(String, Hook)> {
    let syscalls = |list: &[&str]| -> Vec<(String, Hook)> {
        list.iter()
            .flat_map(|s| {
                [
                    (
                        format!("owo_enter_{s}"),
                        Hook::Tracepoint("syscalls", format!("sys_enter_{s}")),
                    ),
                    (
                        format!("owo_exit_{s}"),
                        Hook::Tracepoint("syscalls", format!("sys_exit_{s}")),
                    ),
                ]
            })
            .collect()
    };
    match monitor {
        Monitor::Execve => vec![(
            "owo_exec".into(),
            Hook::Tracepoint("sched", "sched_process_exec".into()),
        )],
        Monitor::Exit => vec![(
            "owo_exit".into(),
            Hook::Tracepoint("sched", "sched_process_exit".into()),
        )],
        Monitor::Fork => vec![("owo_fork".into(), Hook::Raw("sched_process_fork"))],
        Monitor::Tamper => vec![
            (
                "owo_tamper_bpf".into(),
                Hook::Tracepoint("syscalls", "sys_enter_bpf".into()),
            ),
            (
                "owo_tamper_bpf_exit".into(),
                Hook::Tracepoint("syscalls", "sys_exit_bpf".into()),
            ),
            ("owo_tamper_signal".into(), Hook::Raw("signal_generate")),
            (
                "owo_tamper_ptrace".into(),
                Hook::Tracepoint("syscalls", "sys_enter_ptrace".into()),
            ),
            (
                "owo_tamper_vm_read".into(),
                Hook::Tracepoint("syscalls", "sys_enter_process_vm_readv".into()),
            ),
            (
                "owo_tamper_vm_write".into(),
                Hook::Tracepoint("syscalls", "sys_enter_process_vm_writev".into()),
            ),
        ],
        Monitor::File => {
            let mut programs = syscalls(FILE_SYSCALLS);
            programs.extend(MOUNT_SYSCALLS.iter().map(|s| {
                (
                    format!("owo_moved_{s}"),
                    Hook::Tracepoint("syscalls", format!("sys_exit_{s}")),
                )
            }));
            programs.push(("owo_uring_file".into(), uring_submit()));
            programs
        }
        Monitor::Network => {
            let mut programs = syscalls(NETWORK_SYSCALLS);
            programs.push(("owo_uring_network".into(), uring_submit()));
            programs
        }
        Monitor::Privilege => syscalls(PRIVILEGE_SYSCALLS),
        Monitor::Module => syscalls(MODULE_SYSCALLS),
        Monitor::Write => vec![
            (
                "owo_enter_write".into(),
                Hook::Tracepoint("syscalls", "sys_enter_write".into()),
            ),
            (
                "owo_enter_close".into(),
                Hook::Tracepoint("syscalls", "sys_enter_close".into()),
            ),
        ],
    }
}

pub struct Loaded {
    pub ebpf: Ebpf,
    pub settings: KernelSettings,
    pub hooks: Hooks,
    pub monitors: BTreeMap<&'static str, MonitorState>,
    pub coverage: BTreeMap<&'static str, Coverage>,
    pub program_ids: Vec<u32>,
    pub kernel: KernelChoice,
}

/// What owod chose for the running kernel: in the `start` record and in the status.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelChoice {
    /// The kernel's release (`uname -r`).
    pub kernel: String,
    /// How the programs loop: `bpf_loop` (Linux 5.17 and later) or `bounded_loops`.
    pub bpf_loops: &'static str,
    /// The eBPF object: `built-in`, or the file named by `monitor.ebpf_path`.
    pub bpf_object: String,
}

/// The running kernel's release (`uname -r`).
fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "(unknown)".to_owned())
}

/// Does this kernel have the `bpf_loop` helper (Linux 5.17)? Asked the way libbpf asks: the
/// verifier's answer to a program that calls it.
fn has_bpf_loop() -> bool {
    match is_helper_supported(ProgramType::TracePoint, BpfHelper::BPF_FUNC_loop) {
        Ok(supported) => supported,
        Err(err) => {
            tracing::warn!("cannot probe for `bpf_loop` ({err}); using bounded loops");
            false
        }
    }
}

/// The object to load, and what was chosen.
fn object(config: &Config) -> Result<(Vec<u8>, KernelChoice), CollectorError> {
    let path = &config.monitor.ebpf_path;
    let loops = if has_bpf_loop() {
        Loops::BpfLoop
    } else {
        Loops::Bounded
    };
    let mut choice = KernelChoice {
        kernel: kernel_release(),
        bpf_loops: loops.name(),
        bpf_object: "built-in".to_owned(),
    };
    if path.is_empty() {
        return Ok((owo_ebpf::object(loops).to_vec(), choice));
    }
    let bytes = std::fs::read(path).map_err(|source| CollectorError::ReadObject {
        path: path.clone(),
        source,
    })?;
    choice.bpf_object = path.clone();
    Ok((bytes, choice))
}

/// Load the object and attach every monitor's programs; `guarded`: owod's own paths, which the
/// file programs watch beside the configured ones.
pub fn load(config: &Config, guarded: &[String]) -> Result<Loaded, CollectorError> {
    let (object, kernel) = object(config)?;
    tracing::info!(
        "kernel {}: loading the {} eBPF object with {}",
        kernel.kernel,
        kernel.bpf_object,
        kernel.bpf_loops
    );
    // The verifier's statistics and its reason, not its trace of every instruction (which on a
    // kernel without bpf_loop can outgrow any log buffer), unless owod logs at debug level.
    let verifier_log = match tracing::enabled!(tracing::Level::DEBUG) {
        true => VerifierLogLevel::DEBUG | VerifierLogLevel::STATS,
        false => VerifierLogLevel::STATS,
    };
    let mut ebpf = EbpfLoader::new()
        .verifier_log_level(verifier_log)
        .map_max_entries(PROC_RING, RING_BYTES)
        .map_max_entries(ACTIVITY_RING, RING_BYTES)
        // The task storage that carries a syscall's arguments from entry to exit: aya has no
        // type for it, and owod never reads it.
        .allow_unsupported_maps()
        .load(&object)
        .map_err(CollectorError::Load)?;
    let maps = map_ids(&ebpf);
    let mut settings = KernelSettings::take(&mut ebpf)?;
    settings.set_watch(
        &[&config.monitor.file_watch_paths[..], guarded].concat(),
        config.monitor.file_watch_all_paths,
    )?;

    let mut monitors = BTreeMap::new();
    let mut coverage: BTreeMap<&'static str, Coverage> = BTreeMap::new();
    let mut program_ids = Vec::new();
    let mut hooks = Hooks::default();
    for monitor in Monitor::ALL {
        let attached = attach_monitor(&mut ebpf, monitor, &mut program_ids, &mut hooks);
        // The fork hook keeps the process table: it is the exec monitor's.
        let shown = match monitor {
            Monitor::Fork => Monitor::Execve.name(),
            other => other.name(),
        };
        let seen = coverage.entry(shown).or_default();
        match &attached {
            Ok(covered) => {
                seen.hooks.extend(covered.hooks.iter().cloned());
                seen.missing.extend(covered.missing.iter().cloned());
                seen.blind_spots.extend(covered.blind_spots.iter().copied());
            }
            Err(_) => {
                seen.missing
                    .extend(programs_of(monitor).iter().map(|(_, hook)| hook.name()));
                seen.blind_spots.extend(blind_spots(monitor, false));
            }
        }
        let state = match attached {
            Err(err) if matches!(monitor, Monitor::Execve | Monitor::Exit | Monitor::Fork) => {
                return Err(CollectorError::Essential {
                    kernel: kernel.kernel,
                    monitor: monitor.name(),
                    source: Box::new(err),
                })
            }
            Err(err) => {
                let why = format!("{:#}", anyhow::Error::from(err));
                tracing::warn!("monitor `{}` is unavailable: {why}", monitor.name());
                MonitorState::Unavailable(why)
            }
            Ok(_) if config.monitor.wants(monitor) => MonitorState::On,
            Ok(_) => MonitorState::Off,
        };
        if !matches!(monitor, Monitor::Fork | Monitor::Tamper) {
            monitors.insert(monitor.name(), state);
        }
    }
    match load_ia32(&mut ebpf, &mut program_ids) {
        Ok(mut ia32) => {
            ia32.wanted = config.monitor.compat_syscalls;
            hooks.ia32 = Some(ia32);
            for monitor in IA32_MONITORS {
                if let Some(seen) = coverage.get_mut(monitor.name()) {
                    if !matches!(
                        monitors.get(monitor.name()),
                        Some(MonitorState::Unavailable(_))
                    ) {
                        seen.hooks
                            .extend(IA32_HOOKS.iter().map(|(_, event)| Hook::Raw(event).name()));
                        seen.blind_spots.retain(|spot| *spot != COMPAT);
                    }
                }
            }
        }
        Err(err) => tracing::warn!(
            "32-bit compat syscalls will not be seen: {:#}",
            anyhow::Error::from(err)
        ),
    }
    for monitor in Monitor::ALL {
        let on = matches!(monitor, Monitor::Fork | Monitor::Tamper)
            || matches!(monitors.get(monitor.name()), Some(MonitorState::On));
        settings.set_monitor(monitor, on)?;
        hooks.switch(&mut ebpf, monitor, on)?;
    }
    settings.set(abi::CFG_SELF_TGID, std::process::id())?;
    settings.set(abi::CFG_WAKEUP_BYTES, wakeup_share())?;
    settings.mark_own(&ebpf, &maps)?;
    Ok(Loaded {
        ebpf,
        settings,
        hooks,
        monitors,
        coverage,
        program_ids,
        kernel,
    })
}

/// The map behind one of the object's maps (of the kinds it has).
fn map_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::Array(data)
        | Map::HashMap(data)
        | Map::LpmTrie(data)
        | Map::LruHashMap(data)
        | Map::PerCpuArray(data)
        | Map::ProgramArray(data)
        | Map::RingBuf(data)
        | Map::Unsupported(data) => Some(data),
        _ => None,
    }
}

/// The kernel ids of the object's maps (before any is taken out of `ebpf`).
fn map_ids(ebpf: &Ebpf) -> Vec<u32> {
    ebpf.maps()
        .filter_map(|(_, map)| Some(map_data(map)?.info().ok()?.id()))
        .collect()
}

/// Freeze a map that must not change while owod runs: no bpf(2) call can write it any more,
/// owod's own included (its programs still can). aya freezes only read-only data sections, so
/// this is the call itself, BPF_MAP_FREEZE, whose `union bpf_attr` holds only the map's fd.
fn freeze(map: &Map, name: &'static str) -> Result<(), CollectorError> {
    use std::os::fd::{AsFd, AsRawFd};
    const BPF_MAP_FREEZE: libc::c_long = 22;
    let data = map_data(map).ok_or(CollectorError::MissingMap(name))?;
    let mut attr = [0u32; 16];
    attr[0] = data.fd().as_fd().as_raw_fd() as u32;
    // SAFETY: `attr` is valid for the size the kernel is given, and outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_FREEZE,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if ret < 0 {
        return Err(CollectorError::Map {
            map: name,
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_freeze",
                io_error: std::io::Error::last_os_error(),
            }),
        });
    }
    Ok(())
}

/// What one CPU sends before it wakes owod: a share of the bound on unread data, so that all of
/// them together wake it by then. At least a page, so that a wake-up is never per record.
fn wakeup_share() -> u32 {
    let cpus = aya::util::nr_cpus().map_or(1, |n| n.max(1)) as u32;
    (abi::WAKEUP_BYTES / cpus).max(4096)
}

/// Load and attach every program of a monitor whose tracepoint exists. A monitor none of whose
/// tracepoints exist is unavailable; so is one with a program that fails.
fn attach_monitor(
    ebpf: &mut Ebpf,
    monitor: Monitor,
    ids: &mut Vec<u32>,
    hooks: &mut Hooks,
) -> Result<Coverage, CollectorError> {
    let programs = programs_of(monitor);
    let mut attached = Vec::new();
    let mut missing = Vec::new();
    for (name, hook) in &programs {
        if let Hook::Tracepoint(category, event) = hook {
            if !tracepoint_exists(category, event) {
                missing.push(format!("{category}:{event}"));
                continue;
            }
        }
        match attach_program(ebpf, monitor, name, hook, hooks) {
            Ok(id) => {
                ids.push(id);
                attached.push(hook.name());
            }
            Err(err) if OPTIONAL.contains(&name.as_str()) => {
                tracing::warn!(
                    "monitor `{}` runs without `{name}`: {:#}",
                    monitor.name(),
                    anyhow::Error::from(err)
                );
                missing.push(hook.name());
            }
            Err(err) => return Err(err),
        }
    }
    if attached.is_empty() {
        return Err(CollectorError::NoTracepoints {
            missing: missing.join(", "),
        });
    }
    if !missing.is_empty() {
        tracing::debug!(
            "monitor `{}`: this kernel has no {}",
            monitor.name(),
            missing.join(", ")
        );
    }
    let uring = programs
        .iter()
        .any(|(name, hook)| OPTIONAL.contains(&name.as_str()) && attached.contains(&hook.name()));
    Ok(Coverage {
        hooks: attached,
        missing,
        blind_spots: blind_spots(monitor, uring),
    })
}

/// Load a program and attach it; its id.
fn attach_program(
    ebpf: &mut Ebpf,
    monitor: Monitor,
    name: &str,
    hook: &Hook,
    hooks: &mut Hooks,
) -> Result<u32, CollectorError> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| CollectorError::NoProgram(name.to_owned()))?;
    let load_err = |source| refused(name, source);
    match hook {
        Hook::Tracepoint(category, event) => {
            let tp: &mut TracePoint = program.try_into().map_err(load_err)?;
            tp.load().map_err(load_err)?;
            let link = tp
                .attach(category, event)
                .map_err(|source| CollectorError::Attach {
                    tracepoint: format!("{category}:{event}"),
                    source,
                })?;
            hooks.attached(monitor, name, category, event, link);
            Ok(tp.info().map_err(load_err)?.id())
        }
        Hook::Raw(event) => {
            let tp: &mut RawTracePoint = program.try_into().map_err(load_err)?;
            tp.load().map_err(load_err)?;
            tp.attach(event).map_err(|source| CollectorError::Attach {
                tracepoint: format!("raw:{event}"),
                source,
            })?;
            Ok(tp.info().map_err(load_err)?.id())
        }
    }
}

/// Load the programs that report 32-bit compat syscalls and put each handler in its place in
/// the dispatchers' jump table; the dispatchers are loaded, and attached by [`Hooks::switch`].
/// An error leaves the compat calls unseen, and everything else as it is.
fn load_ia32(ebpf: &mut Ebpf, ids: &mut Vec<u32>) -> Result<Ia32, CollectorError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(CollectorError::NoProgram(
            "owo_ia32_enter (x86 only)".to_owned(),
        ));
    }
    let mut map = ebpf
        .take_map(IA32_MAP)
        .ok_or(CollectorError::MissingMap(IA32_MAP))?;
    let mut calls = ProgramArray::try_from(&mut map).map_err(|source| CollectorError::Map {
        map: IA32_MAP,
        source,
    })?;
    for (key, name) in abi::IA32_CALLS {
        let program = raw_tracepoint(ebpf, name)?;
        program.load().map_err(|source| refused(name, source))?;
        let fd = program.fd().map_err(|source| refused(name, source))?;
        calls
            .set(key, fd, 0)
            .map_err(|source| CollectorError::Map {
                map: IA32_MAP,
                source,
            })?;
        ids.push(program.info().map_err(|source| refused(name, source))?.id());
    }
    freeze(&map, IA32_MAP)?;
    for (name, _) in IA32_HOOKS {
        let program = raw_tracepoint(ebpf, name)?;
        program.load().map_err(|source| refused(name, source))?;
        ids.push(program.info().map_err(|source| refused(name, source))?.id());
    }
    Ok(Ia32 {
        _calls: map,
        wanted: true,
        links: None,
    })
}

/// The compat-call programs: the jump table (frozen, and held, not read: the kernel empties it
/// when owod lets go of it), whether `monitor.compat_syscalls` wants them, and, while attached, the
/// dispatchers' links.
pub struct Ia32 {
    _calls: Map,
    wanted: bool,
    links: Option<Vec<(&'static str, RawTracePointLinkId)>>,
}

/// The links of the activity monitors, which are detached while their monitor is off.
#[derive(Default)]
pub struct Hooks {
    /// Every tracepoint a monitor's programs attach to: (program, category, event).
    hooks: BTreeMap<Monitor, Vec<(String, &'static str, String)>>,
    /// The links of the monitors whose programs are attached now.
    links: BTreeMap<Monitor, Vec<(String, TracePointLinkId)>>,
    /// The compat-call programs, if they loaded: attached while one of [`IA32_MONITORS`] is.
    ia32: Option<Ia32>,
}

impl Hooks {
    /// The process lane's monitors (exec, exit, fork) are never detached.
    fn switchable(monitor: Monitor) -> bool {
        !matches!(
            monitor,
            Monitor::Execve | Monitor::Exit | Monitor::Fork | Monitor::Tamper
        )
    }

    fn attached(
        &mut self,
        monitor: Monitor,
        program: &str,
        category: &'static str,
        event: &str,
        link: TracePointLinkId,
    ) {
        if Self::switchable(monitor) {
            self.hooks.entry(monitor).or_default().push((
                program.to_owned(),
                category,
                event.to_owned(),
            ));
            self.links
                .entry(monitor)
                .or_default()
                .push((program.to_owned(), link));
        }
    }

    /// Attach a monitor's programs, or detach them; nothing if they already are. The compat
    /// dispatchers follow.
    pub fn switch(
        &mut self,
        ebpf: &mut Ebpf,
        monitor: Monitor,
        on: bool,
    ) -> Result<(), CollectorError> {
        self.switch_monitor(ebpf, monitor, on)?;
        self.switch_ia32(ebpf)
    }

    /// `monitor.compat_syscalls`: may the compat dispatchers be attached?
    pub fn want_ia32(&mut self, ebpf: &mut Ebpf, wanted: bool) -> Result<(), CollectorError> {
        if let Some(ia32) = &mut self.ia32 {
            ia32.wanted = wanted;
        }
        self.switch_ia32(ebpf)
    }

    /// Attach the compat dispatchers while any of [`IA32_MONITORS`] is attached (and they are
    /// wanted), else detach them.
    fn switch_ia32(&mut self, ebpf: &mut Ebpf) -> Result<(), CollectorError> {
        let Some(ia32) = &mut self.ia32 else {
            return Ok(());
        };
        let wanted = ia32.wanted && IA32_MONITORS.iter().any(|m| self.links.contains_key(m));
        match (&ia32.links, wanted) {
            (None, true) => {
                let mut links = Vec::new();
                for (name, event) in IA32_HOOKS {
                    let link = raw_tracepoint(ebpf, name)?.attach(event).map_err(|source| {
                        CollectorError::Attach {
                            tracepoint: Hook::Raw(event).name(),
                            source,
                        }
                    });
                    match link {
                        Ok(link) => links.push((name, link)),
                        Err(err) => {
                            // The compat calls go unseen; everything else runs.
                            for (name, link) in links {
                                let _ = raw_tracepoint(ebpf, name).map(|tp| tp.detach(link));
                            }
                            tracing::warn!(
                                "32-bit compat syscalls are not seen: {:#}",
                                anyhow::Error::from(err)
                            );
                            return Ok(());
                        }
                    }
                }
                ia32.links = Some(links);
            }
            (Some(_), false) => {
                for (name, link) in ia32.links.take().unwrap_or_default() {
                    raw_tracepoint(ebpf, name)?
                        .detach(link)
                        .map_err(|source| refused(name, source))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn switch_monitor(
        &mut self,
        ebpf: &mut Ebpf,
        monitor: Monitor,
        on: bool,
    ) -> Result<(), CollectorError> {
        if !on {
            for (name, link) in self.links.remove(&monitor).unwrap_or_default() {
                tracepoint(ebpf, &name)?
                    .detach(link)
                    .map_err(|source| refused(&name, source))?;
            }
            return Ok(());
        }
        if self.links.contains_key(&monitor) {
            return Ok(());
        }
        let mut links = Vec::new();
        for (name, category, event) in self.hooks.get(&monitor).into_iter().flatten() {
            let link = tracepoint(ebpf, name)?
                .attach(category, event)
                .map_err(|source| CollectorError::Attach {
                    tracepoint: format!("{category}:{event}"),
                    source,
                });
            match link {
                Ok(link) => links.push((name.clone(), link)),
                Err(err) => {
                    // All or nothing: what did attach comes off again.
                    for (name, link) in links {
                        let _ = tracepoint(ebpf, &name).map(|tp| tp.detach(link));
                    }
                    return Err(err);
                }
            }
        }
        self.links.insert(monitor, links);
        Ok(())
    }
}

fn tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut TracePoint, CollectorError> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| CollectorError::NoProgram(name.to_owned()))?;
    program.try_into().map_err(|source| refused(name, source))
}

fn raw_tracepoint<'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> Result<&'a mut RawTracePoint, CollectorError> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| CollectorError::NoProgram(name.to_owned()))?;
    program.try_into().map_err(|source| refused(name, source))
}

/// A program that failed to load. The verifier's log can run to thousands of lines: its last
/// words are the reason, and the whole log goes to the debug log.
fn refused(program: &str, source: ProgramError) -> CollectorError {
    match source {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            tracing::debug!("the verifier's log for `{program}`:\n{log}");
            CollectorError::Refused {
                program: program.to_owned(),
                reason: verifier_reason(&log, &io_error),
            }
        }
        source => CollectorError::LoadProgram {
            program: program.to_owned(),
            source,
        },
    }
}

/// The line of a verifier log that says why: the last one before the statistics the verifier
/// appends ("processed N insns ...").
fn verifier_reason(log: &str, io_error: &std::io::Error) -> String {
    const STATISTICS: &[&str] = &[
        "processed ",
        "verification time",
        "stack depth",
        "max_states_per_insn",
        "peak_states",
        "mark_read",
    ];
    let last = log
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !STATISTICS.iter().any(|s| line.starts_with(s)));
    match last {
        Some(line) => format!("{line} ({io_error})"),
        None => io_error.to_string(),
    }
}

fn tracepoint_exists(category: &str, event: &str) -> bool {
    [preflight::TRACEFS, "/sys/kernel/debug/tracing"]
        .iter()
        .any(|root| {
            Path::new(root)
                .join("events")
                .join(category)
                .join(event)
                .is_dir()
        })
}

/// The LPM trie key of a watched prefix: the path with one trailing "/", so that `/etc` matches
/// `/etc` and `/etc/passwd` but not `/etcetera` (the kernel adds a "/" to the path it looks up).
pub fn watch_key(prefix: &str) -> Option<([u8; abi::WATCH_MAX], u32)> {
    let trimmed = prefix.trim_end_matches('/');
    let with_slash = format!("{trimmed}/");
    if !with_slash.starts_with('/') || with_slash.len() > abi::WATCH_MAX {
        return None;
    }
    let mut data = [0u8; abi::WATCH_MAX];
    data[..with_slash.len()].copy_from_slice(with_slash.as_bytes());
    Some((data, with_slash.len() as u32 * 8))
}

/// The name filter's entries for watched prefixes (see `struct owo_watch_name`): for each
/// component, the node above it and its first `WATCH_NAME - 1` bytes, to the node it leads to
/// and whether a prefix ends there. A node is named by a hash of the keys on its way from the
/// root, so that the same prefix has the same nodes in every config (a reload swaps entries in
/// place), and names cut to the same bytes share one node (the filter then lets through more,
/// never less). `/` has no components: it is every path, set as such.
pub fn watch_names(prefixes: &[String]) -> BTreeMap<abi::WatchName, abi::WatchNode> {
    let mut names: BTreeMap<abi::WatchName, abi::WatchNode> = BTreeMap::new();
    for prefix in prefixes {
        let components: Vec<&str> = prefix.split('/').filter(|c| !c.is_empty()).collect();
        let mut parent = 0u64;
        for (depth, component) in components.iter().enumerate() {
            let mut key = abi::WatchName {
                parent,
                ..Default::default()
            };
            let bytes = &component.as_bytes()[..component.len().min(abi::WATCH_NAME - 1)];
            key.name[..bytes.len()].copy_from_slice(bytes);
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&key, &mut hasher);
            let node = hasher.finish().max(1); // 0 is the root
            let last = depth + 1 == components.len() || depth + 1 == abi::WATCH_DEPTH;
            let entry = names.entry(key).or_insert(abi::WatchNode {
                node,
                ..Default::default()
            });
            entry.watched |= u32::from(last);
            if last {
                break;
            }
            parent = node;
        }
    }
    names
}

/// An ABI value as the byte array of its size.
fn bytes<T: Pod, const N: usize>(value: &T) -> [u8; N] {
    value.as_bytes().try_into().expect("N is the size of T")
}

/// Is every path watched: all paths asked for, or `/` among the prefixes?
fn every_path(prefixes: &[String], all_paths: bool) -> bool {
    all_paths || prefixes.iter().any(|p| p.trim_end_matches('/').is_empty())
}

/// The kernel's view of the settings: monitor flags, owod's pid, watched path prefixes (as an
/// LPM trie of whole paths, and as the name filter). Owned by the collector after loading, so
/// that a monitor switched at run time is one map write.
pub struct KernelSettings {
    config: Array<MapData, u32>,
    watch: LpmTrie<MapData, [u8; abi::WATCH_MAX], u32>,
    /// aya's maps take its own `Pod` types, which byte arrays are.
    names: HashMap<MapData, [u8; size_of::<abi::WatchName>()], [u8; size_of::<abi::WatchNode>()]>,
    watched: Vec<String>,
    /// OWO_CFG_WATCH_GEN: a change makes the kernel forget which directories it found unwatched.
    generation: u32,
    /// owod's own programs and maps, which the tamper programs guard (frozen once filled).
    own: Option<Map>,
}

impl KernelSettings {
    fn take(ebpf: &mut Ebpf) -> Result<KernelSettings, CollectorError> {
        fn map<T>(
            ebpf: &mut Ebpf,
            name: &'static str,
            convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
        ) -> Result<T, CollectorError> {
            let map = ebpf
                .take_map(name)
                .ok_or(CollectorError::MissingMap(name))?;
            convert(map).map_err(|source| CollectorError::Map { map: name, source })
        }
        Ok(KernelSettings {
            config: map(ebpf, CONFIG_MAP, Array::try_from)?,
            watch: map(ebpf, WATCH_MAP, LpmTrie::try_from)?,
            names: map(ebpf, NAMES_MAP, HashMap::try_from)?,
            watched: Vec::new(),
            generation: 0,
            own: Some(map(ebpf, SELF_MAP, Ok)?),
        })
    }

    /// Tell the tamper programs which objects are owod's: its loaded programs and its `maps`
    /// (a link is known by its program). Read from owod's own descriptors: listing every
    /// object of the system needs CAP_SYS_ADMIN, which owod has given up.
    fn mark_own(&mut self, ebpf: &Ebpf, maps: &[u32]) -> Result<(), CollectorError> {
        let map_err = |source| CollectorError::Map {
            map: SELF_MAP,
            source,
        };
        let Some(map) = &mut self.own else {
            return Ok(()); // marked already, and frozen
        };
        let mut table: HashMap<&mut MapData, [u8; size_of::<abi::SelfObject>()], u32> =
            HashMap::try_from(&mut *map).map_err(map_err)?;
        let object = |kind, id| abi::SelfObject { kind, id };
        let programs = ebpf.programs().filter_map(|(_, p)| p.info().ok()); // the loaded ones
        let own = programs
            .map(|info| object(abi::OBJECT_PROG, info.id()))
            .chain(maps.iter().map(|&id| object(abi::OBJECT_MAP, id)));
        for key in own {
            table.insert(bytes(&key), 1, 0).map_err(map_err)?;
        }
        freeze(map, SELF_MAP)?;
        // Frozen: the kernel keeps it for the programs; owod needs no handle on it.
        self.own = None;
        Ok(())
    }

    fn set(&mut self, key: u32, value: u32) -> Result<(), CollectorError> {
        self.config
            .set(key, value, 0)
            .map_err(|source| CollectorError::Map {
                map: CONFIG_MAP,
                source,
            })
    }

    pub fn set_monitor(&mut self, monitor: Monitor, on: bool) -> Result<(), CollectorError> {
        // While the file monitor was off, nothing told its cache of directories that one moved.
        if monitor == Monitor::File && on {
            self.forget_unwatched_dirs()?;
        }
        self.set(monitor as u32, on.into())
    }

    fn forget_unwatched_dirs(&mut self) -> Result<(), CollectorError> {
        self.generation = self.generation.wrapping_add(1);
        self.set(abi::CFG_WATCH_GEN, self.generation)
    }

    /// Replace the watched prefixes, and whether every path is wanted: the new entries go in
    /// before the old ones come out, so a prefix in both is never unwatched for a moment.
    pub fn set_watch(
        &mut self,
        prefixes: &[String],
        all_paths: bool,
    ) -> Result<(), CollectorError> {
        let map_err = |map| move |source| CollectorError::Map { map, source };
        // The config's validation has refused prefixes that have no key.
        let new_keys: Vec<_> = prefixes.iter().filter_map(|p| watch_key(p)).collect();
        for (data, bits) in &new_keys {
            self.watch
                .insert(&Key::new(*bits, *data), 1, 0)
                .map_err(map_err(WATCH_MAP))?;
        }
        let new_names = watch_names(prefixes);
        for (key, node) in &new_names {
            self.names
                .insert(bytes(key), bytes(node), 0)
                .map_err(map_err(NAMES_MAP))?;
        }
        self.set(
            abi::CFG_FILE_ALL_PATHS,
            every_path(prefixes, all_paths).into(),
        )?;
        self.forget_unwatched_dirs()?;
        let old = std::mem::replace(&mut self.watched, prefixes.to_vec());
        for key in old.iter().filter_map(|p| watch_key(p)) {
            if !new_keys.contains(&key) {
                self.watch
                    .remove(&Key::new(key.1, key.0))
                    .map_err(map_err(WATCH_MAP))?;
            }
        }
        for key in watch_names(&old).keys() {
            if !new_names.contains_key(key) {
                self.names.remove(&bytes(key)).map_err(map_err(NAMES_MAP))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_keys_end_in_one_slash() {
        let (data, bits) = watch_key("/etc/").unwrap();
        assert_eq!((&data[..5], bits), (&b"/etc/"[..], 40));
        assert_eq!(watch_key("/").unwrap().1, 8);
        assert!(watch_key("relative").is_none());
        assert!(watch_key(&format!("/{}", "x".repeat(300))).is_none());
    }

    #[test]
    fn the_name_filter_follows_each_prefix_and_marks_where_it_ends() {
        let prefixes = [
            "/etc",
            "/etc/ssh/",
            "/home/a-name-longer-than-fifteen/x",
            "/",
        ]
        .map(String::from);
        let names = watch_names(&prefixes);
        let find = |parent: u64, name: &str| {
            names
                .iter()
                .find(|(k, _)| k.parent == parent && k.name.starts_with(name.as_bytes()))
                .map(|(k, v)| (*k, *v))
        };
        let (key, etc) = find(0, "etc").unwrap();
        assert_eq!(
            (key.name[3], etc.watched),
            (0, 1),
            "NUL-padded, a prefix ends there"
        );
        let (_, ssh) = find(etc.node, "ssh").unwrap();
        assert_eq!(ssh.watched, 1);
        let (_, home) = find(0, "home").unwrap();
        assert_eq!(home.watched, 0, "only on the way");
        let (key, long) = find(home.node, "a-name-longer-t").unwrap();
        assert_eq!(&key.name[..], b"a-name-longer-t\0", "15 bytes and a NUL");
        assert_eq!(find(long.node, "x").unwrap().1.watched, 1);
        assert_eq!(names.len(), 5, "`/` has no components: {names:?}");
        assert!(every_path(&prefixes, false));
        assert!(!every_path(&prefixes[..3], false));
        // The same prefix has the same nodes in every config, for a reload in place.
        assert_eq!(
            watch_names(&prefixes[1..2])[&key_of(etc.node, "ssh")].node,
            ssh.node
        );
        let deep = format!("/{}", ["d"; 20].join("/"));
        let deep = watch_names(&[deep]);
        assert_eq!(
            deep.len(),
            abi::WATCH_DEPTH,
            "followed as deep as the kernel looks"
        );
        assert_eq!(deep.values().filter(|n| n.watched == 1).count(), 1);
    }

    fn key_of(parent: u64, name: &str) -> abi::WatchName {
        let mut key = abi::WatchName {
            parent,
            ..Default::default()
        };
        key.name[..name.len()].copy_from_slice(name.as_bytes());
        key
    }

    #[test]
    fn every_monitor_names_programs_that_the_object_has() {
        let object = aya_obj_names();
        for monitor in Monitor::ALL {
            for (name, _) in programs_of(monitor) {
                assert!(
                    object.contains(&name),
                    "program `{name}` of `{}` is not in the object",
                    monitor.name()
                );
            }
        }
        let ia32 = abi::IA32_CALLS.iter().map(|(_, name)| *name);
        for name in ia32.chain(IA32_HOOKS.iter().map(|(name, _)| *name)) {
            assert!(
                object.iter().any(|n| n == name),
                "`{name}` is not in the object"
            );
        }
    }

    /// Program names in both built objects' symbol tables (no kernel needed).
    fn aya_obj_names() -> Vec<String> {
        let names = |loops| -> Vec<String> {
            let text = String::from_utf8_lossy(owo_ebpf::object(loops)).into_owned();
            text.split('\0')
                .filter(|s| s.starts_with("owo_"))
                .map(str::to_owned)
                .collect()
        };
        let (with_loop, bounded) = (names(Loops::BpfLoop), names(Loops::Bounded));
        for name in &with_loop {
            assert!(
                bounded.contains(name),
                "`{name}` is missing from the bounded-loops object"
            );
        }
        with_loop
    }

    #[test]
    fn the_verifier_reason_is_its_last_words_before_the_statistics() {
        let log = "0: R1=ctx() R10=fp0\n; int owo_exec(...)\n\
                   1234: (85) call bpf_probe_read_user#112\n\
                   R1 unbounded memory access, make sure to bounds check any such access\n\
                   processed 1577 insns (limit 1000000) max_states_per_insn 4 total_states 93\n\
                   \n";
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(
            verifier_reason(log, &io),
            format!("R1 unbounded memory access, make sure to bounds check any such access ({io})")
        );
        assert_eq!(verifier_reason("", &io), io.to_string());
    }
}
