//! The paths of files being written, by (process, fd). The kernel sends a path with the first
//! write on an open file only (and again when the fd is reused for another file); this keeps it
//! for the writes after, until the process leaves the process table (not at its exit: its last
//! writes may still be on their way). Bounded: past the cap it starts over, counted, and writes
//! whose path it no longer knows say so rather than guess.

use std::collections::HashMap;

const CAP: usize = 65_536;

#[derive(Default)]
pub struct WritePaths {
    by_pid: HashMap<u32, HashMap<u32, (Vec<u8>, bool)>>,
    len: usize,
    pub resets: u64,
}

/// What is known of a write's path.
pub enum WritePath<'a> {
    /// Sent by the kernel with this write.
    Fresh(&'a [u8]),
    /// Remembered from an earlier write on the same open file (with its truncation flag).
    Cached(&'a [u8], bool),
    Unknown,
}

impl WritePaths {
    /// Take the path the kernel sent (if any) and say what the path of this write is.
    pub fn resolve(
        &mut self,
        pid: u32,
        fd: u32,
        sent: Option<Vec<u8>>,
        truncated: bool,
    ) -> WritePath<'_> {
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
                let fds = self.by_pid.entry(pid).or_default();
                if fds.insert(fd, (path, truncated)).is_none() {
                    self.len += 1;
                }
                WritePath::Fresh(&fds[&fd].0)
            }
            None => match self.by_pid.get(&pid).and_then(|fds| fds.get(&fd)) {
                Some((path, truncated)) => WritePath::Cached(path, *truncated),
                None => WritePath::Unknown,
            },
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

    #[test]
    fn a_path_is_kept_per_process_and_fd_until_the_process_is_forgotten() {
        let mut paths = WritePaths::default();
        assert!(matches!(
            paths.resolve(1, 3, Some(b"/tmp/a".to_vec()), false),
            WritePath::Fresh(b"/tmp/a")
        ));
        assert!(matches!(
            paths.resolve(1, 3, None, false),
            WritePath::Cached(b"/tmp/a", false)
        ));
        assert!(matches!(
            paths.resolve(2, 3, None, false),
            WritePath::Unknown
        ));
        // The fd reused for another file: the kernel sends the new path (here, cut short).
        assert!(matches!(
            paths.resolve(1, 3, Some(b"/tmp/b".to_vec()), true),
            WritePath::Fresh(b"/tmp/b")
        ));
        assert!(matches!(
            paths.resolve(1, 3, None, false),
            WritePath::Cached(b"/tmp/b", true)
        ));
        paths.forget_process(1);
        assert!(matches!(
            paths.resolve(1, 3, None, false),
            WritePath::Unknown
        ));
        assert_eq!(paths.len, 0);
    }
}
