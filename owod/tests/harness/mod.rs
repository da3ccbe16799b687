//! Shared by the real-eBPF tests: start a real `owod` with a config of the test's own, read the
//! JSON lines it writes, wait for a record with a deadline, stop it with SIGTERM.

#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod bus;
pub mod receiver;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::Value;

pub const DEADLINE: Duration = Duration::from_secs(30);

/// The owod binary: this package's, or the one beside owoctl's (tests of the owoctl package).
pub fn owod_bin() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_owod") {
        return PathBuf::from(path);
    }
    let Some(owoctl) = option_env!("CARGO_BIN_EXE_owoctl") else {
        panic!("the harness serves the tests of owod and owoctl only");
    };
    let owod = Path::new(owoctl).with_file_name("owod");
    assert!(
        owod.exists(),
        "{} is not built: `cargo test --workspace` (make test) builds it",
        owod.display()
    );
    owod
}

/// How to start a daemon beyond its config.
#[derive(Default)]
pub struct Options {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Whether this machine can run the real eBPF tests. Without root or BTF they are skipped, and
/// said so, unless `OWO_REQUIRE_BPF=1` (CI), where that is a failure.
pub fn bpf_available(test: &str) -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("not root")
    } else if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        Some("the kernel has no BTF")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if std::env::var("OWO_REQUIRE_BPF").as_deref() == Ok("1") => {
            panic!("{test}: OWO_REQUIRE_BPF=1 but the real eBPF tests cannot run here: {why}")
        }
        Some(why) => {
            // Straight to fd 2: the test harness captures what passing tests print.
            let line = format!(
                "SKIPPED {test}: {why} (run as root, or set OWO_REQUIRE_BPF=1 to make this fail)\n"
            );
            let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
            false
        }
    }
}

pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub output: PathBuf,
    pub config: PathBuf,
    pub start: Value,
}

impl Daemon {
    /// Start owod with `extra` YAML appended to a config that writes to a temp file, and wait
    /// for its `start` record (written once every program is attached).
    pub fn start(extra: &str) -> Daemon {
        Daemon::start_with(
            extra,
            Options {
                args: vec!["--no-dbus".into()],
                env: Vec::new(),
            },
        )
    }

    /// As [`Daemon::start`], with more flags and environment.
    pub fn start_with(extra: &str, options: Options) -> Daemon {
        // Outside every default watched path: two daemons that each watch the other's output
        // with write events on would report each other's writes back and forth.
        std::fs::create_dir_all("/var/lib/owo-test").expect("create /var/lib/owo-test");
        let dir = tempfile::Builder::new()
            .prefix("owod-")
            .tempdir_in("/var/lib/owo-test")
            .expect("temp dir");
        let output = dir.path().join("out/records.jsonl");
        let config = dir.path().join("config.yaml");
        let mut text = format!("output:\n  file:\n    path: {}\n", output.display());
        text += extra;
        fs::write(&config, text).expect("write config");
        let log = fs::File::create(dir.path().join("owod.log")).expect("log file");
        let child = Command::new(owod_bin())
            .arg("--config")
            .arg(&config)
            .args(&options.args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn owod");
        let mut daemon = Daemon {
            child,
            dir,
            output,
            config,
            start: Value::Null,
        };
        daemon.start = daemon.wait_for("the start record", |r| r["event"]["type"] == "start");
        daemon
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("owod.log")).unwrap_or_default()
    }

    /// Wait, with a deadline, until owod's log says `needle`.
    pub fn wait_log(&mut self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.log().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "owod exited ({status}) before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log within {DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every record written so far; each line must be JSON within 64 KiB.
    pub fn records(&self) -> Vec<Value> {
        json_lines(&self.output)
    }

    /// Wait, with a deadline, until a record matches.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return r;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "owod exited ({status}) before {what} arrived; its log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no record for {what} within {DEADLINE:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// All records matching, once at least `n` of them have arrived.
    pub fn wait_for_n(
        &mut self,
        what: &str,
        n: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        self.wait_for(what, |_| true);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let found: Vec<Value> = self.records().into_iter().filter(|r| pred(r)).collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} records for {what}; log:\n{}",
                found.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGHUP, and wait for the reload record it brings (one more than there were).
    pub fn reload(&mut self) {
        let before = self
            .records()
            .iter()
            .filter(|r| r["event"]["type"] == "reload")
            .count();
        let pid = Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, Signal::SIGHUP).expect("signal owod");
        self.wait_for_n("the reload record", before + 1, |r| {
            r["event"]["type"] == "reload"
        });
    }

    /// Run `true MARKER` and wait for its record: records are written in order, so every record
    /// of something that happened before is written by then.
    pub fn barrier(&mut self) {
        let tag = marker("barrier");
        let status = std::process::Command::new("true")
            .arg(&tag)
            .status()
            .expect("run true");
        assert!(status.success());
        self.wait_for("the barrier exec", |r| {
            r["event"]["args"][1] == tag.as_str()
        });
    }

    /// The same for the activity lane (its records are ordered apart from the process lane's):
    /// create a marker file in `dir`, which must be watched, and wait for its record.
    pub fn file_barrier(&mut self, dir: &Path) {
        let path = dir.join(marker("file-barrier"));
        fs::write(&path, b"").expect("create the barrier file");
        let want = path.to_str().expect("UTF-8 temp path").to_owned();
        self.wait_for("the barrier file", |r| {
            r["event"]["event_type"] == "file" && r["event"]["path"] == want.as_str()
        });
    }

    /// SIGTERM, and wait for the exit with a deadline.
    pub fn stop(&mut self) -> ExitStatus {
        nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)
            .expect("signal owod");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait owod") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "owod did not stop within {DEADLINE:?} of SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn program_ids(&self) -> Vec<u32> {
        self.start["event"]["bpf_prog_ids"]
            .as_array()
            .expect("the start record lists its programs")
            .iter()
            .map(|v| v.as_u64().expect("a program id") as u32)
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The complete lines of a JSON-lines file that something is still appending to, each parsed;
/// each must be JSON within 64 KiB. A line still being written has no newline yet (and may end
/// inside a character): it is left for the next read. Blank lines (syslog framing) are skipped.
pub fn json_lines(path: &Path) -> Vec<Value> {
    let bytes = fs::read(path).unwrap_or_default();
    let complete = &bytes[..bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)];
    let complete = std::str::from_utf8(complete).expect("the output is valid UTF-8");
    complete
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            assert!(line.len() <= 64 * 1024, "a line of {} bytes", line.len());
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .collect()
}

/// Wait, with a deadline, until `done` holds; `what` names what is awaited.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run a Python snippet; it must succeed.
pub fn python(code: &str) {
    let status = Command::new("python3").args(["-c", code]).status().unwrap();
    assert!(status.success(), "python failed: {code}");
}

/// Copy an executable to `to` (mode 0755), as a dropped binary would be.
pub fn copy_exe(from: impl AsRef<Path>, to: &Path) -> PathBuf {
    fs::copy(from, to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
    to.to_path_buf()
}

/// A fresh directory under /tmp, which the default config watches.
pub fn watched_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("owo-watched-")
        .tempdir_in("/tmp")
        .expect("a temp dir under /tmp")
}

/// A DNS query (RFC 1035 §4.1) for `name`, type A.
pub fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x4f, 0x57, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// A path as the `&str` records compare against.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// A name no other test or process uses.
pub fn marker(prefix: &str) -> String {
    format!("owo-{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The `event` object of a record.
pub fn event(r: &Value) -> &Value {
    &r["event"]
}

/// A small tmpfs, to fill up; unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "owo-test"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs at {}", at.display());
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A FUSE file system of owod's tests (a script in `tests/support`, on Debian's python3-fusepy,
/// a module of the system's Python), run in the foreground; killed and unmounted when dropped,
/// which fails whatever it holds up.
pub struct Fuse {
    child: Child,
    mount: PathBuf,
}

impl Fuse {
    /// Run `script` with `args` and wait until it is mounted at `at`.
    pub fn mount(script: &str, args: &[&std::ffi::OsStr], at: &Path) -> Fuse {
        fs::create_dir_all(at).unwrap();
        let child = Command::new("/usr/bin/python3")
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/support")
                    .join(script),
            )
            .args(args)
            .spawn()
            .expect("python3 (apt-get install python3-fusepy fuse3)");
        let fs = Fuse {
            child,
            mount: at.to_owned(),
        };
        let at = at.to_str().expect("UTF-8 mount point").to_owned();
        wait_until(&format!("{script} to be mounted"), || {
            fs::read_to_string("/proc/self/mounts")
                .unwrap()
                .lines()
                .any(|l| l.split(' ').nth(1) == Some(at.as_str()) && l.contains("fuse"))
        });
        fs
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// The runs of seqs, (first, last), that the loss records among `records` of these `stages`
/// name.
pub fn loss_runs<'a>(
    records: impl IntoIterator<Item = &'a Value>,
    stages: &[&str],
) -> Vec<(u64, u64)> {
    records
        .into_iter()
        .filter(|r| event(r)["type"] == "loss" && stages.iter().any(|s| event(r)["stage"] == *s))
        .map(|r| {
            let e = event(r);
            (
                e["first_seq"].as_u64().expect("a loss record's first_seq"),
                e["last_seq"].as_u64().expect("a loss record's last_seq"),
            )
        })
        .collect()
}

/// A C program of `tests/support`, built with `flags` under a name of its own (tests build the
/// same one at the same time).
pub fn c_program(source: &str, flags: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(source);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(marker("program"));
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&source)
        .args(flags)
        .status()
        .expect("run cc");
    assert!(
        status.success(),
        "cc {} {flags:?} failed: `make deps` installs what it needs",
        source.display()
    );
    out
}
