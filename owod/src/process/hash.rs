//! SHA-256 of executables, off the event path. Hashes are cached by the file's identity
//! (device, inode, size, ctime) as the kernel saw it at exec, so an unchanged binary is hashed
//! once and a rewritten one again. A miss starts a job on a bounded pool of blocking threads;
//! the record waits for it (records stay in order) while later events keep flowing in.
//!
//! The file is read through `/proc/PID/exe` while the process lives (which also reaches deleted
//! files and memfds), else through its path, and the hash is trusted only if the opened file
//! still has the identity the kernel reported, before and after the read.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read},
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use owo_common::event::FileId;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Semaphore};

/// What became of a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOutcome {
    Hash(String),
    /// Larger than `enrich.sha256_max_file_mb`.
    TooLarge,
    /// The process and the file were both gone.
    Gone,
    /// The file found no longer has the identity the kernel saw.
    Changed,
    Error(String),
}

impl HashOutcome {
    /// Cached outcomes describe the file itself, not one moment of reading it.
    fn cacheable(&self) -> bool {
        matches!(self, HashOutcome::Hash(_) | HashOutcome::TooLarge)
    }

    pub fn status(&self) -> &'static str {
        match self {
            HashOutcome::Hash(_) => "ok",
            HashOutcome::TooLarge => "too_large",
            HashOutcome::Gone => "gone",
            HashOutcome::Changed => "changed",
            HashOutcome::Error(_) => "error",
        }
    }
}

/// A hash that may still be running.
pub type PendingHash = watch::Receiver<Option<HashOutcome>>;

pub enum Lookup {
    Done(HashOutcome),
    Pending(PendingHash),
}

const CACHE_MAX: usize = 16_384;
/// Hashing threads: enough to keep a burst of new binaries moving, few enough not to starve
/// the machine's real work.
const WORKERS: usize = 2;
/// A hash that takes longer (a file on a hung network or FUSE mount) is given up on, and its
/// record goes out without it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads given up on whose threads are still stuck in the kernel. Each such thread keeps its
/// worker's place, and a new worker takes it; past this many, no new file is hashed until one
/// of them returns (a record then says why), so hung reads cannot pile up threads.
const STUCK_MAX: usize = 4;
/// How long a failed hash is remembered: another exec of the same file does not try again
/// (and wait again) at once.
const FAILED_FOR: Duration = Duration::from_secs(60);

pub struct Hasher {
    max_bytes: u64,
    done: HashMap<FileId, HashOutcome>,
    failed: HashMap<FileId, (Instant, HashOutcome)>,
    running: HashMap<FileId, PendingHash>,
    workers: Arc<Semaphore>,
    stuck: Arc<AtomicUsize>,
    pub hashed: u64,
    pub cache_hits: u64,
}

impl Hasher {
    pub fn new(max_mb: u64) -> Hasher {
        Hasher {
            max_bytes: max_mb.saturating_mul(1 << 20),
            done: HashMap::new(),
            failed: HashMap::new(),
            running: HashMap::new(),
            workers: Arc::new(Semaphore::new(WORKERS)),
            stuck: Arc::new(AtomicUsize::new(0)),
            hashed: 0,
            cache_hits: 0,
        }
    }

    /// The hash of the executable of `pid` with identity `id` (at `path`): from the cache, or
    /// from a job started now (or already running for the same file).
    pub fn lookup(&mut self, pid: u32, path: &[u8], id: FileId) -> Lookup {
        if let Some(done) = self.done.get(&id) {
            self.cache_hits += 1;
            return Lookup::Done(done.clone());
        }
        if let Some((at, outcome)) = self.failed.get(&id) {
            if at.elapsed() < FAILED_FOR {
                self.cache_hits += 1;
                return Lookup::Done(outcome.clone());
            }
        }
        if id.size < 0 || id.size as u64 > self.max_bytes {
            return Lookup::Done(HashOutcome::TooLarge);
        }
        if let Some(running) = self.running.get(&id) {
            return Lookup::Pending(running.clone());
        }
        if let Some(stalled) = stalled(&self.stuck) {
            return Lookup::Done(stalled);
        }
        let (tx, rx) = watch::channel(None);
        let workers = self.workers.clone();
        let stuck = self.stuck.clone();
        let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(path));
        tokio::spawn(async move {
            let permit = workers
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            // Hung reads may have piled up while this job waited for a worker.
            if let Some(stalled) = stalled(&stuck) {
                let _ = tx.send(Some(stalled));
                return;
            }
            let mut job = tokio::task::spawn_blocking(move || hash_exe(pid, &path, id));
            let outcome = match tokio::time::timeout(READ_TIMEOUT, &mut job).await {
                Ok(joined) => joined.unwrap_or_else(|e| {
                    HashOutcome::Error(format!("the hashing thread failed: {e}"))
                }),
                Err(_) => {
                    // The thread cannot be stopped in its read: a new worker takes its place,
                    // and when the read returns, its own place goes with it.
                    stuck.fetch_add(1, Ordering::SeqCst);
                    workers.add_permits(1);
                    tokio::spawn(async move {
                        let _ = job.await;
                        permit.forget();
                        stuck.fetch_sub(1, Ordering::SeqCst);
                    });
                    HashOutcome::Error(format!(
                        "no hash within {} s (the read hangs)",
                        READ_TIMEOUT.as_secs()
                    ))
                }
            };
            let _ = tx.send(Some(outcome));
        });
        self.running.insert(id, rx.clone());
        self.hashed += 1;
        Lookup::Pending(rx)
    }

    /// A job finished (seen when its record reached the head of the queue).
    pub fn finished(&mut self, id: FileId, outcome: &HashOutcome) {
        self.running.remove(&id);
        if outcome.cacheable() {
            if self.done.len() >= CACHE_MAX {
                self.done.clear();
            }
            self.done.insert(id, outcome.clone());
        } else if matches!(outcome, HashOutcome::Error(_)) {
            if self.failed.len() >= CACHE_MAX {
                self.failed.retain(|_, (at, _)| at.elapsed() < FAILED_FOR);
            }
            if self.failed.len() >= CACHE_MAX {
                self.failed.clear();
            }
            self.failed.insert(id, (Instant::now(), outcome.clone()));
        }
    }
}

/// Too many reads hang: the outcome for a file not hashed because of them.
fn stalled(stuck: &AtomicUsize) -> Option<HashOutcome> {
    let n = stuck.load(Ordering::SeqCst);
    (n >= STUCK_MAX).then(|| {
        HashOutcome::Error(format!(
            "not hashed: {n} earlier reads still hang (a stalled mount?)"
        ))
    })
}

/// Is this the file the kernel ran? Through `/proc/PID/exe` the inode is the process's own, and
/// only size and ctime can have changed; the device is not compared there (btrfs shows a
/// subvolume's device to stat, not the superblock's).
fn matches(meta: &std::fs::Metadata, id: FileId, check_dev: bool) -> bool {
    (!check_dev || meta.dev() == id.dev)
        && meta.ino() == id.ino
        && meta.size() as i64 == id.size
        // A ctime of 0 (the kernel's inode had no ctime field we know): dev, inode and size decide.
        && (id.ctime_sec == 0 || (meta.ctime() == id.ctime_sec && meta.ctime_nsec() as u32 == id.ctime_nsec))
}

/// Read and hash; runs on a blocking thread.
fn hash_exe(pid: u32, path: &std::path::Path, id: FileId) -> HashOutcome {
    // The process's own view first: it reaches deleted files and memfds, and cannot be swapped
    // under us by a rename.
    if let Ok(file) = File::open(format!("/proc/{pid}/exe")) {
        if let Some(outcome) = hash_if_same(file, id, false) {
            return outcome;
        }
    }
    match File::open(path) {
        Ok(file) => hash_if_same(file, id, true).unwrap_or(HashOutcome::Changed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => HashOutcome::Gone,
        Err(e) => HashOutcome::Error(e.to_string()),
    }
}

/// `None` if this is not the file the kernel saw.
fn hash_if_same(file: File, id: FileId, check_dev: bool) -> Option<HashOutcome> {
    match file.metadata() {
        Ok(meta) if matches(&meta, id, check_dev) => {}
        Ok(meta) => {
            tracing::debug!(?id, seen = ?file_identity(&meta), "not the file the kernel ran");
            return None;
        }
        Err(e) => return Some(HashOutcome::Error(e.to_string())),
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    // No further than the size the kernel saw (and one byte to notice growth).
    let mut reader = (&file).take(id.size as u64 + 1);
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(HashOutcome::Error(e.to_string())),
        }
    }
    // Rewritten while we read: what we hashed is not what ran.
    match file.metadata() {
        Ok(meta) if matches(&meta, id, check_dev) => {}
        Ok(_) => return Some(HashOutcome::Changed),
        Err(e) => return Some(HashOutcome::Error(e.to_string())),
    }
    let digest = hasher.finalize();
    Some(HashOutcome::Hash(
        digest.iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

/// The identity of a file as user space sees it.
fn file_identity(meta: &std::fs::Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size() as i64,
        ctime_sec: meta.ctime(),
        ctime_nsec: meta.ctime_nsec() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_sha256sum_and_identity_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let id = file_identity(&std::fs::metadata(&path).unwrap());
        // sha256("abc"), FIPS 180-2 appendix B.1
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            hash_exe(u32::MAX, &path, id),
            HashOutcome::Hash(expected.into())
        );
        std::fs::write(&path, b"abcd").unwrap();
        assert_eq!(hash_exe(u32::MAX, &path, id), HashOutcome::Changed);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(hash_exe(u32::MAX, &path, id), HashOutcome::Gone);
    }

    #[tokio::test]
    async fn the_cache_hashes_a_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let id = file_identity(&std::fs::metadata(&path).unwrap());
        let mut hasher = Hasher::new(1);
        let Lookup::Pending(mut rx) = hasher.lookup(u32::MAX, path.as_os_str().as_bytes(), id)
        else {
            panic!("a first lookup starts a job")
        };
        // A second exec of the same file while the job runs shares it.
        assert!(matches!(
            hasher.lookup(u32::MAX, path.as_os_str().as_bytes(), id),
            Lookup::Pending(_)
        ));
        let outcome = rx.wait_for(Option::is_some).await.unwrap().clone().unwrap();
        hasher.finished(id, &outcome);
        assert!(matches!(
            hasher.lookup(u32::MAX, b"/elsewhere", id),
            Lookup::Done(HashOutcome::Hash(_))
        ));
        assert_eq!((hasher.hashed, hasher.cache_hits), (1, 1));
        let big = FileId {
            size: 2 << 20,
            ..id
        };
        assert!(matches!(
            hasher.lookup(1, b"/x", big),
            Lookup::Done(HashOutcome::TooLarge)
        ));
    }
}
