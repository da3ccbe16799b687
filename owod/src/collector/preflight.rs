//! Before anything is loaded: can this process load eBPF here? Each check says exactly what is
//! missing and what to do about it.

use std::path::Path;

use nix::mount::{mount, MsFlags};

pub const TRACEFS: &str = "/sys/kernel/tracing";
const BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("owod needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) to load its eBPF programs; run it with sudo or as the owod.service unit")]
    NotPrivileged,
    #[error("this kernel has no BTF (`{BTF}` is missing): owod needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf,
    #[error("tracefs is not mounted and could not be mounted at `{TRACEFS}`; mount it with `mount -t tracefs tracefs {TRACEFS}`")]
    NoTracefs(#[source] nix::Error),
    #[error("cannot give up the capabilities owod does not need")]
    Capabilities(#[source] caps::errors::CapsError),
}

/// Run every check, mounting tracefs if it is missing (aya looks it up once, at the first attach,
/// and remembers the answer).
pub fn check() -> Result<(), PreflightError> {
    if !privileged() {
        return Err(PreflightError::NotPrivileged);
    }
    if !Path::new(BTF).exists() {
        return Err(PreflightError::NoBtf);
    }
    ensure_tracefs()?;
    raise_memlock();
    Ok(())
}

/// Keep only the capabilities owod needs for the rest of its run, before any thread starts (each
/// thread has its own set, and inherits it): CAP_BPF and CAP_PERFMON to load and attach eBPF (a
/// monitor switched on at run time attaches its programs then), CAP_SYS_PTRACE for every
/// process's `/proc` entries and executable, and CAP_DAC_READ_SEARCH to read any binary for its
/// hash; CAP_SYS_ADMIN only on a kernel older than CAP_BPF, or one that keeps perf events to it.
/// Everything else goes from the
/// effective, permitted, inheritable, ambient and bounding sets: root's power to load kernel
/// modules, write any file, kill, or change its ids is gone. The unit's
/// `CapabilityBoundingSet=` says the same.
pub fn drop_capabilities() -> Result<(), PreflightError> {
    use caps::{CapSet, Capability, CapsHashSet};
    let supported = caps::runtime::thread_all_supported();
    let mut kept: CapsHashSet = [
        Capability::CAP_BPF,
        Capability::CAP_PERFMON,
        Capability::CAP_SYS_PTRACE,
        Capability::CAP_DAC_READ_SEARCH,
    ]
    .into_iter()
    .collect();
    // Debian's and Ubuntu's kernels, at perf_event_paranoid 3 or more, open perf events (which
    // attach tracepoints) to CAP_SYS_ADMIN only.
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(2);
    if !supported.contains(&Capability::CAP_BPF) || paranoid > 2 {
        kept.insert(Capability::CAP_SYS_ADMIN);
    }
    let held = caps::read(None, CapSet::Permitted).map_err(PreflightError::Capabilities)?;
    let kept: CapsHashSet = kept.intersection(&held).copied().collect();
    // The bounding set first: dropping from it takes CAP_SETPCAP, which goes next.
    for cap in supported.difference(&kept) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(PreflightError::Capabilities)?;
    }
    caps::clear(None, CapSet::Ambient).map_err(PreflightError::Capabilities)?;
    caps::clear(None, CapSet::Inheritable).map_err(PreflightError::Capabilities)?;
    caps::set(None, CapSet::Effective, &kept).map_err(PreflightError::Capabilities)?;
    caps::set(None, CapSet::Permitted, &kept).map_err(PreflightError::Capabilities)?;
    Ok(())
}

/// Effective capabilities from /proc/self/status: CAP_SYS_ADMIN (21), or CAP_PERFMON (38) and
/// CAP_BPF (39) together.
fn privileged() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return nix::unistd::geteuid().is_root();
    };
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    has(21) || (has(38) && has(39))
}

fn ensure_tracefs() -> Result<(), PreflightError> {
    let events = Path::new(TRACEFS).join("events");
    if events.is_dir() || Path::new("/sys/kernel/debug/tracing/events").is_dir() {
        return Ok(());
    }
    mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(PreflightError::NoTracefs)?;
    tracing::info!("mounted tracefs at `{TRACEFS}`");
    Ok(())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones ignore it. Best effort.
fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}
