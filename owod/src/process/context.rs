//! Who and where: user names, terminal names, and what a process's cgroup says about it
//! (container, Kubernetes pod, systemd unit). The parsing is pure and tested on real-world
//! cgroup path shapes; the lookups are cached.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

pub use crate::pipeline::record::CgroupInfo;

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parse a cgroup v2 path (as in `/proc/PID/cgroup`'s `0::` line).
pub fn parse_cgroup(path: &str) -> CgroupInfo {
    let mut info = CgroupInfo::default();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let unit = part
            .strip_suffix(".scope")
            .or_else(|| part.strip_suffix(".service"));
        // systemd driver: docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, libpod-<id>.scope
        if let Some(stem) = part.strip_suffix(".scope") {
            for (prefix, runtime) in [
                ("docker-", "docker"),
                ("cri-containerd-", "containerd"),
                ("crio-", "cri-o"),
                ("libpod-", "podman"),
            ] {
                if let Some(id) = stem.strip_prefix(prefix).filter(|id| is_container_id(id)) {
                    info.container_id = Some(id.to_owned());
                    info.container_runtime = Some(runtime);
                }
            }
        }
        // cgroupfs driver with a prefix: crio-<id>, libpod-<id>
        for (prefix, runtime) in [
            ("crio-", "cri-o"),
            ("libpod-", "podman"),
            ("cri-containerd-", "containerd"),
        ] {
            if let Some(id) = part.strip_prefix(prefix).filter(|id| is_container_id(id)) {
                info.container_id = Some(id.to_owned());
                info.container_runtime = Some(runtime);
            }
        }
        // cgroupfs driver: /docker/<id>, /kubepods/<qos>/pod<uid>/<id>, /machine.slice/libpod-<id>...
        if is_container_id(part) && info.container_id.is_none() {
            info.container_id = Some((*part).to_owned());
            info.container_runtime = Some(match parts.get(i.wrapping_sub(1)).copied() {
                Some("docker") => "docker",
                _ if parts.iter().any(|p| p.starts_with("kubepods")) => "containerd",
                _ => "unknown",
            });
        }
        // Kubernetes pods: pod<uid> (cgroupfs) or kubepods-<qos>-pod<uid_with_underscores>.slice
        let pod = part
            .strip_suffix(".slice")
            .and_then(|s| s.rsplit_once("-pod").map(|(_, uid)| uid))
            .or_else(|| part.strip_prefix("pod"));
        if let Some(uid) = pod.filter(|u| {
            u.len() >= 32
                && u.bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
        }) {
            info.pod_uid = Some(uid.replace('_', "-"));
        }
        if let Some(stem) = unit {
            if !stem.is_empty() {
                info.systemd_unit = Some((*part).to_owned());
            }
        }
    }
    if info.pod_uid.is_some() && info.container_runtime == Some("unknown") {
        info.container_runtime = Some("containerd");
    }
    info
}

/// `pts3` is `pts/3`, as `tty(1)` and `ps` show it; other names stay as the kernel gives them.
pub fn tty_name(kernel: &[u8]) -> String {
    let name = String::from_utf8_lossy(kernel);
    match name.strip_prefix("pts") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => format!("pts/{n}"),
        _ => name.into_owned(),
    }
}

/// User names by uid, looked up once each (the answer "no such user" included).
#[derive(Default)]
pub struct UserNames(HashMap<u32, Option<Arc<str>>>);

impl UserNames {
    pub fn name(&mut self, uid: u32) -> Option<Arc<str>> {
        if self.0.len() > 4096 {
            self.0.clear();
        }
        self.0
            .entry(uid)
            .or_insert_with(|| {
                // NSS may ask a directory server: a lookup blocks.
                crate::pipeline::blocking(|| nix::unistd::User::from_uid(uid.into()))
                    .ok()
                    .flatten()
                    .map(|u| Arc::from(u.name))
            })
            .clone()
    }
}

/// Cgroup ids (as the kernel reports them) to cgroup v2 paths. A cgroup v2 id is the inode
/// number of its directory, so a scan of the hierarchy maps them; it is scanned again when an id
/// is unknown, once per unknown id a minute.
pub struct CgroupPaths {
    root: Option<PathBuf>,
    paths: HashMap<u64, String>,
    missed: HashMap<u64, Instant>,
}

impl CgroupPaths {
    pub fn new() -> CgroupPaths {
        CgroupPaths {
            root: cgroup2_mount(),
            paths: HashMap::new(),
            missed: HashMap::new(),
        }
    }

    pub fn path(&mut self, id: u64) -> Option<&str> {
        // An id never looked for before (a new container's cgroup) is worth a scan at once; one
        // that a scan did not find is not looked for again for a while.
        if !self.paths.contains_key(&id)
            && self
                .missed
                .get(&id)
                .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
        {
            crate::pipeline::blocking(|| self.scan());
            if !self.paths.contains_key(&id) {
                if self.missed.len() > 4096 {
                    self.missed.clear();
                }
                self.missed.insert(id, Instant::now());
            }
        }
        self.paths.get(&id).map(String::as_str)
    }

    fn scan(&mut self) {
        let Some(root) = self.root.clone() else {
            return;
        };
        self.paths.clear();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let rel = dir
                .strip_prefix(&root)
                .map(|p| format!("/{}", p.display()))
                .unwrap_or_default();
            self.paths.insert(
                meta.ino(),
                if rel == "/" {
                    rel
                } else {
                    rel.trim_end_matches('/').to_owned()
                },
            );
            if self.paths.len() > 100_000 {
                break;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`).
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        (right.split(' ').next() == Some("cgroup2")).then(|| Path::new(mount_point).to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1e2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";

    #[test]
    fn docker_with_the_systemd_and_the_cgroupfs_drivers() {
        let info = parse_cgroup(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(
            (info.container_id.as_deref(), info.container_runtime),
            (Some(ID), Some("docker"))
        );
        let info = parse_cgroup(&format!("/docker/{ID}"));
        assert_eq!(
            (info.container_id.as_deref(), info.container_runtime),
            (Some(ID), Some("docker"))
        );
    }

    #[test]
    fn kubernetes_pods_with_containerd_and_cri_o() {
        let uid = "0a1b2c3d_4e5f_6071_8293_a4b5c6d7e8f9";
        let info = parse_cgroup(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(
            (info.container_id.as_deref(), info.container_runtime),
            (Some(ID), Some("containerd"))
        );
        assert_eq!(
            info.pod_uid.as_deref(),
            Some("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9")
        );
        let info = parse_cgroup(&format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/crio-{ID}.scope"));
        assert_eq!(info.container_runtime, Some("cri-o"));
        let info = parse_cgroup(&format!(
            "/kubepods/besteffort/pod0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9/{ID}"
        ));
        assert_eq!(
            (info.container_id.as_deref(), info.container_runtime),
            (Some(ID), Some("containerd"))
        );
        assert_eq!(
            info.pod_uid.as_deref(),
            Some("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9")
        );
    }

    #[test]
    fn podman_rootful_and_rootless() {
        let info = parse_cgroup(&format!("/machine.slice/libpod-{ID}.scope/container"));
        assert_eq!(
            (info.container_id.as_deref(), info.container_runtime),
            (Some(ID), Some("podman"))
        );
        let info = parse_cgroup(&format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
        ));
        assert_eq!(
            (info.container_id.as_deref(), info.container_runtime),
            (Some(ID), Some("podman"))
        );
    }

    #[test]
    fn systemd_units_and_plain_sessions() {
        let info = parse_cgroup("/system.slice/ssh.service");
        assert_eq!(
            (info.systemd_unit.as_deref(), info.container_id),
            (Some("ssh.service"), None)
        );
        let info = parse_cgroup("/user.slice/user-1000.slice/session-3.scope");
        assert_eq!(info.systemd_unit.as_deref(), Some("session-3.scope"));
        assert_eq!(parse_cgroup("/"), CgroupInfo::default());
        assert_eq!(parse_cgroup("/docker/not-an-id").container_id, None);
    }

    #[test]
    fn terminal_names_read_as_tty_prints_them() {
        assert_eq!(tty_name(b"pts3"), "pts/3");
        assert_eq!(tty_name(b"tty1"), "tty1");
        assert_eq!(tty_name(b"ttyS0"), "ttyS0");
        assert_eq!(tty_name(b"pts"), "pts");
    }

    #[test]
    fn root_is_a_user_and_the_cgroup_root_is_slash() {
        assert_eq!(UserNames::default().name(0).as_deref(), Some("root"));
        let mut paths = CgroupPaths::new();
        if let Some(root) = paths.root.clone() {
            let ino = std::fs::metadata(&root).unwrap().ino();
            assert_eq!(paths.path(ino), Some("/"));
        }
    }
}
