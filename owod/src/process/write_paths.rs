//! The paths of files being written, by (process, fd). The kernel sends a path with the first
//! write on an open file only (and again when the fd is reused for another file); this keeps it
//! for the writes after, until the process leaves the process table (not at its exit: its last
//! writes may still be on their way). Bounded: past the cap it starts over, counted, and writes
//! whose path it no longer knows say so rather than guess.

use std::collections::HashMap;

use crate::pipeline::record::SharedPath;

const CAP: usize = 65_536;

#[derive(Default)]
pub struct WritePaths {
    by_pid: HashMap<u32, HashMap<u32, SharedPath>>,
    len: usize,
    pub resets: u64,
}

impl WritePaths {
    /// Take the path the kernel sent (if any) and say what the path of this write is, with
    /// whether it was cut; `None` when it is no longer known.
    pub fn resolve(
        &mut self,
        pid: u32,
        fd: u32,
        sent: Option<Vec<u8>>,
        truncated: bool,
    ) -> Option<SharedPath> {
        match sent {
            Some(path) => {
                if self.len >= CAP {
                    self.by_pid.clear();
                    self.len = 0;
                    self.resets += 1;
                    tracing::warn!(
                        "write path cache full: starting over ({} times so far)",
                        self.resets
                    );
                }
                let path: std::sync::Arc<[u8]> = path.into();
                let fds = self.by_pid.entry(pid).or_default();
                if fds.insert(fd, (path.clone(), truncated)).is_none() {
                    self.len += 1;
                }
                Some((path, truncated))
            }
            None => self.by_pid.get(&pid).and_then(|fds| fds.get(&fd)).cloned(),
        }
    }

    pub fn forget_process(&mut self, pid: u32) {
        if let Some(fds) = self.by_pid.remove(&pid) {
            self.len -= fds.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(
        paths: &mut WritePaths,
        pid: u32,
        sent: Option<&[u8]>,
        cut: bool,
    ) -> Option<(Vec<u8>, bool)> {
        paths
            .resolve(pid, 3, sent.map(<[u8]>::to_vec), cut)
            .map(|(path, cut)| (path.to_vec(), cut))
    }

    #[test]
    fn a_path_is_kept_per_process_and_fd_until_the_process_is_forgotten() {
        let mut paths = WritePaths::default();
        let path = |p: &[u8], cut| Some((p.to_vec(), cut));
        assert_eq!(
            known(&mut paths, 1, Some(b"/tmp/a"), false),
            path(b"/tmp/a", false)
        );
        assert_eq!(known(&mut paths, 1, None, false), path(b"/tmp/a", false));
        assert_eq!(known(&mut paths, 2, None, false), None);
        // The fd reused for another file: the kernel sends the new path (here, cut short).
        assert_eq!(
            known(&mut paths, 1, Some(b"/tmp/b"), true),
            path(b"/tmp/b", true)
        );
        assert_eq!(known(&mut paths, 1, None, false), path(b"/tmp/b", true));
        paths.forget_process(1);
        assert_eq!(known(&mut paths, 1, None, false), None);
        assert_eq!(paths.len, 0);
    }
}
