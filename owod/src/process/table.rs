//! The process table: what each live process is (executable, command line, parent), so that a
//! record can name a parent that started before owod, or that has just exited. Seeded from
//! /proc, then kept by fork, exec and exit events. Entries carry their start time, so a reused
//! pid never inherits a dead process's identity. Bounded: exited processes leave after a grace
//! period, and past the cap the longest-exited (else the oldest) entry goes, counted.

use std::{
    collections::HashMap,
    os::unix::ffi::OsStrExt,
    time::{Duration, Instant},
};

/// How long an exited process stays, for records that still name it as their parent.
pub const EXIT_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_CAP: usize = 65_536;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub ppid: u32,
    /// Start time in clock ticks since boot, as /proc/PID/stat has it.
    pub start_ticks: u64,
    pub exe: Option<Vec<u8>>,
    pub args: Vec<Vec<u8>>,
    pub exited_at: Option<Instant>,
}

/// What an exit did to the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Exited {
    Now,
    /// This process had already exited: a duplicate.
    Again,
    /// Not in the table (or a different process under that pid).
    Unknown,
}

pub struct ProcessTable {
    entries: HashMap<u32, ProcessInfo>,
    cap: usize,
    pub evictions: u64,
}

/// Boot-time nanoseconds to the clock ticks of /proc/PID/stat.
pub fn ns_to_ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / ticks_per_second())
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

impl ProcessTable {
    pub fn new(cap: usize) -> ProcessTable {
        ProcessTable {
            entries: HashMap::new(),
            cap,
            evictions: 0,
        }
    }

    /// Every process that /proc shows now. Processes that vanish meanwhile are skipped.
    pub fn seed_from_proc(&mut self) -> usize {
        let Ok(all) = procfs::process::all_processes() else {
            return 0;
        };
        let mut n = 0;
        for process in all.flatten() {
            let Ok(stat) = process.stat() else { continue };
            let dir = format!("/proc/{}", stat.pid);
            let exe = std::fs::read_link(format!("{dir}/exe"))
                .ok()
                .map(|p| p.as_os_str().as_bytes().to_vec());
            let args = std::fs::read(format!("{dir}/cmdline"))
                .map(|raw| owo_common::decode::split_args(&raw))
                .unwrap_or_default();
            self.insert(
                stat.pid as u32,
                ProcessInfo {
                    ppid: stat.ppid as u32,
                    start_ticks: stat.starttime,
                    exe,
                    args,
                    exited_at: None,
                },
            );
            n += 1;
        }
        n
    }

    pub fn get(&self, pid: u32) -> Option<&ProcessInfo> {
        self.entries.get(&pid)
    }

    pub fn insert(&mut self, pid: u32, info: ProcessInfo) {
        if self.entries.len() >= self.cap && !self.entries.contains_key(&pid) {
            self.evict_one();
        }
        self.entries.insert(pid, info);
    }

    /// A process forked: the child starts as a copy of its parent's image.
    pub fn fork(&mut self, parent: u32, child: u32, child_start_ticks: u64) {
        let (exe, args) = self
            .get(parent)
            .map(|p| (p.exe.clone(), p.args.clone()))
            .unwrap_or_default();
        self.insert(
            child,
            ProcessInfo {
                ppid: parent,
                start_ticks: child_start_ticks,
                exe,
                args,
                exited_at: None,
            },
        );
    }

    /// A process executed a new image; its parent link stays as the kernel reported it.
    pub fn exec(
        &mut self,
        pid: u32,
        ppid: u32,
        start_ticks: u64,
        exe: Option<Vec<u8>>,
        args: Vec<Vec<u8>>,
    ) {
        self.insert(
            pid,
            ProcessInfo {
                ppid,
                start_ticks,
                exe,
                args,
                exited_at: None,
            },
        );
    }

    /// The process with this identity ended; it stays for [`EXIT_GRACE`].
    pub fn exit(&mut self, pid: u32, start_ticks: u64, now: Instant) -> Exited {
        match self.entries.get_mut(&pid) {
            Some(p) if p.start_ticks == start_ticks => match p.exited_at {
                Some(_) => Exited::Again,
                None => {
                    p.exited_at = Some(now);
                    Exited::Now
                }
            },
            _ => Exited::Unknown,
        }
    }

    /// Forget processes that exited more than [`EXIT_GRACE`] ago.
    pub fn expire(&mut self, now: Instant) {
        self.entries.retain(|_, p| {
            p.exited_at
                .is_none_or(|t| now.duration_since(t) < EXIT_GRACE)
        });
    }

    fn evict_one(&mut self) {
        let victim = self
            .entries
            .iter()
            .min_by_key(|(_, p)| (p.exited_at.is_none(), p.exited_at, p.start_ticks))
            .map(|(pid, _)| *pid);
        if let Some(pid) = victim {
            self.entries.remove(&pid);
            self.evictions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_knows_this_process_and_its_parent() {
        let mut table = ProcessTable::new(DEFAULT_CAP);
        assert!(table.seed_from_proc() > 1);
        let me = table
            .get(std::process::id())
            .expect("this test process is in /proc");
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(me.exe.is_some());
    }

    #[test]
    fn fork_copies_the_image_and_exit_expires_after_grace() {
        let mut table = ProcessTable::new(DEFAULT_CAP);
        table.exec(10, 1, 5, Some(b"/bin/sh".to_vec()), vec![b"sh".to_vec()]);
        table.fork(10, 11, 6);
        assert_eq!(table.get(11).unwrap().exe.as_deref(), Some(&b"/bin/sh"[..]));
        assert_eq!(table.get(11).unwrap().ppid, 10);
        let t0 = Instant::now();
        assert_eq!(table.exit(11, 999, t0), Exited::Unknown); // another process that once had pid 11
        assert!(table.get(11).unwrap().exited_at.is_none());
        assert_eq!(table.exit(11, 6, t0), Exited::Now);
        assert_eq!(table.exit(11, 6, t0), Exited::Again);
        table.expire(t0 + EXIT_GRACE / 2);
        assert!(table.get(11).is_some());
        table.expire(t0 + EXIT_GRACE);
        assert!(table.get(11).is_none());
    }

    #[test]
    fn the_cap_holds_and_evicts_exited_first() {
        let mut table = ProcessTable::new(3);
        for pid in 1..=3 {
            table.exec(pid, 0, pid as u64, None, vec![]);
        }
        table.exit(2, 2, Instant::now());
        table.exec(4, 0, 4, None, vec![]);
        assert_eq!(table.entries.len(), 3);
        assert!(table.get(2).is_none());
        assert_eq!(table.evictions, 1);
        table.exec(5, 0, 5, None, vec![]);
        assert!(table.get(1).is_none(), "then the oldest");
        assert_eq!(table.evictions, 2);
    }
}
