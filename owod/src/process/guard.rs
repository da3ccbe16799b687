//! owod's own files and memory: its binary, its configuration file, its systemd unit, and its
//! `/proc/PID` directory. The kernel watches them beside the configured paths (whatever the
//! user's `file_watch_paths`), and what another process does to them is tampering: a write,
//! create, unlink or rename of one of the files, or an open of owod's memory. The file records
//! themselves are kept only if a configured path covers them.

use std::path::Path;

use owo_common::abi::GUARDED_PATHS;

use crate::pipeline::record::FileRecord;

/// Where owod's unit may be, with its drop-in directory.
const UNITS: [&str; 5] = [
    "/etc/systemd/system/owod.service",
    "/etc/systemd/system/owod.service.d",
    "/run/systemd/system/owod.service",
    "/lib/systemd/system/owod.service",
    "/usr/lib/systemd/system/owod.service",
];

const O_ACCMODE: u32 = 0o3;
const O_TRUNC: u32 = 0o1000;

/// Is `path` `dir` or below it (`dir` without a trailing "/")?
pub fn under(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && matches!(path.get(dir.len()), None | Some(b'/'))
}

#[derive(Clone, Debug, Default)]
pub struct Guard {
    /// The files (and a drop-in directory), absolute.
    files: Vec<Vec<u8>>,
    /// `/proc/PID` of owod.
    proc_dir: Vec<u8>,
}

impl Guard {
    /// The guard of this process, run from `binary` with the configuration file `config`.
    pub fn new(binary: &Path, config: &Path) -> Guard {
        let absolute = |path: &Path| {
            std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .into_os_string()
                .into_encoded_bytes()
        };
        let mut files = vec![absolute(binary), absolute(config)];
        files.extend(UNITS.iter().map(|unit| unit.as_bytes().to_vec()));
        Guard {
            files,
            proc_dir: format!("/proc/{}", std::process::id()).into_bytes(),
        }
    }

    /// The prefixes the kernel must watch (those that are text): at most
    /// [`GUARDED_PATHS`], for which its watch map has room beside the configured ones.
    pub fn prefixes(&self) -> Vec<String> {
        self.files
            .iter()
            .chain([&self.proc_dir])
            .filter_map(|p| String::from_utf8(p.clone()).ok())
            .take(GUARDED_PATHS as usize)
            .collect()
    }

    /// Is one of the record's paths a guarded one (so that the kernel sent it for the guard,
    /// perhaps only for it)?
    pub fn covers(&self, record: &FileRecord) -> bool {
        let mut paths = std::iter::once(&record.path).chain(record.path2.as_ref());
        paths.any(|path| self.covers_path(path))
    }

    /// Is `path` a guarded one?
    pub fn covers_path(&self, path: &[u8]) -> bool {
        under(path, &self.proc_dir) || self.files.iter().any(|file| under(path, file))
    }

    /// What a file record does to owod, if anything: `memory` (an open of its memory), or the
    /// record's type for one of its files (`write` for an open for writing).
    pub fn judge(&self, record: &FileRecord) -> Option<&'static str> {
        if under(&record.path, &self.proc_dir) && record.path.ends_with(b"/mem") {
            return Some("memory");
        }
        let mut paths = std::iter::once(&record.path).chain(record.path2.as_ref());
        if !paths.any(|path| self.files.iter().any(|file| under(path, file))) {
            return None;
        }
        match record.kind {
            "create" | "unlink" | "rename" => Some(record.kind),
            _ if record.flags & O_ACCMODE != 0 || record.flags & O_TRUNC != 0 => Some("write"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &'static str, path: &str, flags: u32) -> FileRecord {
        FileRecord {
            kind,
            path: path.as_bytes().to_vec(),
            flags,
            ..Default::default()
        }
    }

    #[test]
    fn writes_to_owods_files_and_opens_of_its_memory_are_tampering() {
        let guard = Guard::new(
            Path::new("/usr/sbin/owod"),
            Path::new("/etc/owo/config.yaml"),
        );
        let mem = format!("/proc/{}/mem", std::process::id());
        let task_mem = format!("/proc/{}/task/7/mem", std::process::id());
        for (kind, path, flags, verdict) in [
            ("open", "/etc/owo/config.yaml", 0o1, Some("write")),
            ("open", "/etc/owo/config.yaml", 0o1000, Some("write")),
            ("open", "/etc/owo/config.yaml", 0, None),
            ("unlink", "/usr/sbin/owod", 0, Some("unlink")),
            (
                "create",
                "/etc/systemd/system/owod.service.d/x.conf",
                0o101,
                Some("create"),
            ),
            ("open", mem.as_str(), 0, Some("memory")),
            ("open", task_mem.as_str(), 0, Some("memory")),
            ("open", "/usr/sbin/owodx", 0o1, None),
            ("open", "/etc/owo/config.yaml.bak", 0o1, None),
        ] {
            assert_eq!(
                guard.judge(&record(kind, path, flags)),
                verdict,
                "{kind} {path}"
            );
        }
        let mut renamed = record("rename", "/tmp/evil", 0);
        renamed.path2 = Some(b"/usr/sbin/owod".to_vec());
        assert_eq!(guard.judge(&renamed), Some("rename"));
        assert!(guard.prefixes().len() <= GUARDED_PATHS as usize);
    }
}
