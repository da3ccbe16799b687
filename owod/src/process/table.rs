//! The process table: what each live process is (executable, command line, parent, user), so
//! that a record can name its ancestry, even for a parent that started before owod or has just
//! exited. Seeded from /proc, then kept by fork, exec and exit events. Entries carry their start
//! time, so a reused pid never inherits a dead process's identity. Bounded in entries and in
//! bytes: exited processes leave after a grace period, and at either cap the exited ones go
//! first, then the newest down to seven eighths of it, counted (in one sweep, so a fork storm at
//! the cap costs no more than one sweep per eighth).

use std::{
    os::unix::ffi::OsStrExt,
    sync::Arc,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt as _};
use owo_common::event::{Argv, Comm};

/// How long an exited process stays, for records that still name it as their parent.
pub const EXIT_GRACE: Duration = Duration::from_secs(10);
/// Ancestry stops here, whatever the table says (a loop is a bug, not a reason to hang).
const MAX_ANCESTORS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub ppid: u32,
    pub uid: u32,
    pub comm: Comm,
    /// Start time in clock ticks since boot, as /proc/PID/stat has it.
    pub start_ticks: u64,
    pub exe: Option<Arc<[u8]>>,
    pub args: Argv,
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
    /// What the entries cost ([`cost`]), and the most they may.
    bytes: usize,
    bytes_max: usize,
    pub evictions: u64,
}

/// What an entry costs: itself and its names and argv, counted whole even where a forked child
/// shares them with its parent (so the bound holds whatever is shared).
fn cost(p: &ProcessInfo) -> usize {
    std::mem::size_of::<(u32, ProcessInfo)>()
        + p.comm.len()
        + p.exe.as_ref().map_or(0, |e| e.len())
        + p.args.len()
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
    pub fn new(cap: usize, bytes_max: usize) -> ProcessTable {
        ProcessTable {
            entries: HashMap::new(),
            cap: cap.max(8),
            bytes: 0,
            bytes_max,
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
            // A binary replaced since the process started reads as "… (deleted)".
            let exe = std::fs::read_link(format!("{dir}/exe")).ok().map(|p| {
                let bytes = p.as_os_str().as_bytes();
                Arc::from(bytes.strip_suffix(b" (deleted)").unwrap_or(bytes))
            });
            let args = std::fs::read(format!("{dir}/cmdline"))
                .map(|raw| Argv::from_section(&raw))
                .unwrap_or_default();
            let info = ProcessInfo {
                ppid: stat.ppid as u32,
                uid: process.uid().unwrap_or(0),
                comm: Comm::new(stat.comm.as_bytes()),
                start_ticks: stat.starttime,
                exe,
                args,
                exited_at: None,
            };
            self.insert(stat.pid as u32, info);
            n += 1;
        }
        n
    }

    pub fn get(&self, pid: u32) -> Option<&ProcessInfo> {
        self.entries.get(&pid)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Live processes (not exited), for the tree.
    pub fn live(&self) -> impl Iterator<Item = (u32, &ProcessInfo)> {
        self.entries
            .iter()
            .filter(|(_, p)| p.exited_at.is_none())
            .map(|(pid, p)| (*pid, p))
    }

    pub fn insert(&mut self, pid: u32, info: ProcessInfo) {
        let new = cost(&info);
        let old = self.entries.get(&pid).map_or(0, cost);
        let full = self.entries.len() >= self.cap && !self.entries.contains_key(&pid);
        if full || self.bytes - old + new > self.bytes_max {
            self.make_room(new);
        }
        self.bytes = self.bytes - self.entries.get(&pid).map_or(0, cost) + new;
        self.entries.insert(pid, info);
    }

    /// What the entries cost now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A process forked: the child starts as a copy of its parent's image and user (sharing
    /// its image path and argv).
    pub fn fork(&mut self, parent: u32, child: u32, child_start_ticks: u64) {
        let copy = self.get(parent).cloned();
        let info = match copy {
            Some(p) => ProcessInfo {
                ppid: parent,
                start_ticks: child_start_ticks,
                exited_at: None,
                ..p
            },
            None => ProcessInfo {
                ppid: parent,
                uid: 0,
                comm: Comm::default(),
                start_ticks: child_start_ticks,
                exe: None,
                args: Argv::default(),
                exited_at: None,
            },
        };
        self.insert(child, info);
    }

    /// A process executed a new image; its parent link stays as the kernel reported it.
    pub fn exec(&mut self, pid: u32, info: ProcessInfo) {
        self.insert(pid, info);
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

    /// Forget processes that exited more than [`EXIT_GRACE`] ago; returns their pids.
    pub fn expire(&mut self, now: Instant) -> Vec<u32> {
        let mut gone = Vec::new();
        let mut freed = 0;
        self.entries.retain(|pid, p| {
            let keep = p
                .exited_at
                .is_none_or(|t| now.duration_since(t) < EXIT_GRACE);
            if !keep {
                gone.push(*pid);
                freed += cost(p);
            }
            keep
        });
        self.bytes -= freed;
        gone
    }

    /// The executables from pid 1 down to `pid`'s parent (`pid` itself excluded), joined by `|`.
    pub fn ancestors(&self, ppid: u32) -> Vec<&[u8]> {
        let mut chain = Vec::with_capacity(16);
        let mut pid = ppid;
        let mut child_start = u64::MAX;
        while pid != 0 && chain.len() < MAX_ANCESTORS {
            let Some(p) = self.entries.get(&pid) else {
                break;
            };
            // A parent starts before its child: a later process under a reused pid is not it.
            if p.start_ticks > child_start {
                break;
            }
            chain.push(p.exe.as_deref().unwrap_or(&p.comm[..]));
            if pid == 1 || p.ppid == pid {
                break;
            }
            child_start = p.start_ticks;
            pid = p.ppid;
        }
        chain.reverse();
        chain
    }

    /// At a cap, with an entry of `incoming` bytes to come: drop the exited, and if that is not
    /// enough, the newest (in a fork storm they are the storm, and the old ones are the ancestry
    /// every later record names: init, sshd, the user's shell) down to seven eighths of the caps.
    fn make_room(&mut self, incoming: usize) {
        let before = self.entries.len();
        self.entries.retain(|_, p| p.exited_at.is_none());
        self.bytes = self.entries.values().map(cost).sum();
        if self.entries.len() >= self.cap || self.bytes + incoming > self.bytes_max {
            let keep_entries = self.cap - (self.cap / 8).max(1);
            let keep_bytes = self.bytes_max - self.bytes_max / 8;
            let mut newest: Vec<(u64, u32)> = self
                .entries
                .iter()
                .filter(|(pid, _)| **pid != 1)
                .map(|(pid, p)| (p.start_ticks, *pid))
                .collect();
            newest.sort_unstable_by(|a, b| b.cmp(a));
            for (_, pid) in newest {
                if self.entries.len() <= keep_entries && self.bytes + incoming <= keep_bytes {
                    break;
                }
                if let Some(p) = self.entries.remove(&pid) {
                    self.bytes -= cost(&p);
                }
            }
        }
        self.evictions += (before - self.entries.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ppid: u32, start: u64, exe: &str) -> ProcessInfo {
        ProcessInfo {
            ppid,
            uid: 0,
            comm: Comm::new(b"c"),
            start_ticks: start,
            exe: Some(exe.as_bytes().into()),
            args: Argv::from_args([exe]),
            exited_at: None,
        }
    }

    #[test]
    fn seeding_knows_this_process_and_its_parent() {
        let mut table = ProcessTable::new(65_536, 1 << 30);
        assert!(table.seed_from_proc() > 1);
        let me = table
            .get(std::process::id())
            .expect("this test process is in /proc");
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(me.exe.is_some());
        assert_eq!(me.uid, nix::unistd::getuid().as_raw());
    }

    #[test]
    fn fork_copies_the_image_and_exit_expires_after_grace() {
        let mut table = ProcessTable::new(65_536, 1 << 30);
        table.exec(10, info(1, 5, "/bin/sh"));
        table.fork(10, 11, 6);
        assert_eq!(table.get(11).unwrap().exe.as_deref(), Some(&b"/bin/sh"[..]));
        assert_eq!(table.get(11).unwrap().ppid, 10);
        let t0 = Instant::now();
        assert_eq!(table.exit(11, 999, t0), Exited::Unknown); // another process that once had pid 11
        assert_eq!(table.exit(11, 6, t0), Exited::Now);
        assert_eq!(table.exit(11, 6, t0), Exited::Again);
        table.expire(t0 + EXIT_GRACE / 2);
        assert!(table.get(11).is_some());
        table.expire(t0 + EXIT_GRACE);
        assert!(table.get(11).is_none());
    }

    #[test]
    fn the_cap_holds_and_evicts_exited_first_then_the_newest() {
        let mut table = ProcessTable::new(16, 1 << 30);
        for pid in 1..=16 {
            table.exec(pid, info(1, u64::from(pid), "/x"));
        }
        table.exit(2, 2, Instant::now());
        table.exec(17, info(1, 17, "/x"));
        assert_eq!(table.len(), 16);
        assert!(table.get(2).is_none());
        assert_eq!(table.evictions, 1);
        table.exec(18, info(1, 18, "/x"));
        assert!(
            table.get(1).is_some() && table.get(3).is_some(),
            "the oldest stay"
        );
        assert!(table.get(17).is_none(), "the newest go");
        assert!(table.get(18).is_some(), "the one inserted");
        for pid in 19..10_000 {
            table.exec(pid, info(1, u64::from(pid), "/x"));
            assert!(table.len() <= 16);
        }
    }

    #[test]
    fn the_byte_budget_holds_whatever_the_argv() {
        let mut long = info(1, 1, "/x");
        long.args = Argv::from_section(&[0u8; 16 << 10]);
        let budget = 10 * cost(&long);
        let mut table = ProcessTable::new(65_536, budget);
        for pid in 1..=1000 {
            table.exec(
                pid,
                ProcessInfo {
                    start_ticks: u64::from(pid),
                    ..long.clone()
                },
            );
            assert!(table.bytes() <= budget, "{} > {budget}", table.bytes());
        }
        assert_eq!(
            table.bytes(),
            table.entries.values().map(cost).sum::<usize>(),
            "kept in step"
        );
        assert!(
            table.get(1).is_some() && table.get(2).is_some(),
            "the oldest stay"
        );
        assert!(table.evictions >= 990, "{}", table.evictions);
        table.expire(Instant::now());
    }

    #[test]
    fn ancestry_runs_from_pid_1_to_the_parent() {
        let mut table = ProcessTable::new(64, 1 << 30);
        table.exec(1, info(0, 1, "/sbin/init"));
        table.exec(50, info(1, 2, "/usr/sbin/sshd"));
        table.exec(60, info(50, 3, "/usr/bin/bash"));
        assert_eq!(
            table.ancestors(60),
            [&b"/sbin/init"[..], b"/usr/sbin/sshd", b"/usr/bin/bash"]
        );
        // A loop in the table (a bug elsewhere) still ends.
        table.exec(70, info(71, 4, "/a"));
        table.exec(71, info(70, 5, "/b"));
        assert!(table.ancestors(70).len() <= MAX_ANCESTORS);
    }
}
