//! The process lane: an exec with distinctive argv (and its hash, user and ancestry), an exit
//! with a code, a process killed by SIGKILL, and a forked child that never execs.

use std::{
    ffi::CString,
    fs,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::Path,
    process::Command,
};

use anyhow::{bail, ensure, Context as _};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{marker, text, wait_until, Check, Context, DEADLINE};
use crate::{records::Expect, verdict::Verdict};

/// A user of the guest's /etc/passwd besides root and nobody.
const USER: (u32, &str) = (1000, "vmtest");

fn sha256_hex(path: &Path) -> anyhow::Result<String> {
    let bytes = fs::read(path).with_context(|| format!("read {}", path.display()))?;
    Ok(Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A copy of busybox, run as `true` with marked arguments, as user 1000, in a directory of its
/// own (outside the watched paths, so no behavior rule is involved).
pub fn exec_with_argv(cx: &Context) -> anyhow::Result<Check> {
    let dir = cx.work.join(marker("cwd"));
    fs::create_dir_all(&dir)?;
    let bin = dir.join(marker("exec"));
    fs::copy("/bin/busybox", &bin).context("copy busybox")?;
    let tag = marker("arg");
    let argv: Vec<String> = ["true", tag.as_str(), "with space", "quote\"s"]
        .map(String::from)
        .into();
    let mut child = Command::new(&bin)
        .arg0(&argv[0])
        .args(&argv[1..])
        .current_dir(&dir)
        .uid(USER.0)
        .gid(USER.0)
        .spawn()
        .with_context(|| format!("run {}", bin.display()))?;
    let pid = child.id();
    ensure!(child.wait()?.success(), "{} failed", bin.display());
    let sha256 = sha256_hex(&bin)?;
    // The kernel names a task after the file it ran, cut to 15 bytes.
    let comm: String = bin
        .file_name()
        .unwrap()
        .to_string_lossy()
        .chars()
        .take(15)
        .collect();
    let ancestors = format!("{}|{}", cx.init_exe.display(), cx.my_exe.display());
    let me = cx.me;
    Ok(Box::new(move |run| {
        let r = run
            .records
            .find(|e| e["event_type"] == "execve" && e["pid"] == pid)
            .ok_or_else(|| format!("no execve record for pid {pid} ({})", bin.display()))?;
        Expect::new(format!("the execve of pid {pid}"), r)
            .eq("path", text(&bin))
            .eq("exe", text(&bin))
            .eq("args", json!(argv))
            .eq("cmdline", argv.join(" "))
            .eq("cwd", text(&dir))
            .eq("ppid", me)
            .eq("uid", USER.0)
            .eq("user", USER.1)
            .eq("gid", USER.0)
            .eq("comm", comm.as_str())
            .eq("sha256", sha256.as_str())
            .eq("ancestors", ancestors.as_str())
            .absent_or("ret", 0)
            .done()?;
        Ok(Verdict::pass(format!(
            "pid {pid} {tag}, sha256 {}…",
            &sha256[..12]
        )))
    }))
}

/// `sh -c 'exit 7' MARKER`: the exit record has code 7 and no signal.
pub fn exit_code(cx: &Context) -> anyhow::Result<Check> {
    let tag = marker("exit7");
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 7", &tag])
        .spawn()?;
    let pid = child.id();
    let status = child.wait()?;
    ensure!(status.code() == Some(7), "sh -c 'exit 7' gave {status}");
    let me = cx.me;
    Ok(Box::new(move |run| {
        run.records
            .find(|e| {
                e["event_type"] == "execve" && e["pid"] == pid && e["args"][3] == tag.as_str()
            })
            .ok_or_else(|| format!("no execve record for pid {pid} with {tag}"))?;
        let r = run.records.of("exit", pid)?;
        Expect::new(format!("the exit of pid {pid}"), r)
            .eq("exit_code", 7)
            .absent("signal")
            .eq("ppid", me)
            .eq("exe", "/bin/busybox")
            .eq("comm", "sh")
            .done()?;
        Ok(Verdict::pass(format!("pid {pid} exit_code 7")))
    }))
}

/// `sleep 1000`, killed with SIGKILL once it runs sleep: the exit record has signal 9.
pub fn killed(cx: &Context) -> anyhow::Result<Check> {
    let mut child = Command::new("/bin/sleep").arg("1000").spawn()?;
    let pid = child.id();
    let comm = format!("/proc/{pid}/comm");
    let started = wait_until("exec of sleep", DEADLINE, || {
        fs::read_to_string(&comm).is_ok_and(|c| c.trim_end() == "sleep")
    });
    child.kill()?;
    let status = child.wait()?;
    if let Err(why) = started {
        bail!("{why}");
    }
    ensure!(status.signal() == Some(9), "sleep ended with {status}");
    let me = cx.me;
    Ok(Box::new(move |run| {
        let exec = run.records.of("execve", pid)?;
        Expect::new(format!("the execve of pid {pid}"), exec)
            .eq("args", json!(["/bin/sleep", "1000"]))
            .done()?;
        let r = run.records.of("exit", pid)?;
        Expect::new(format!("the exit of pid {pid}"), r)
            .eq("signal", 9)
            .eq("comm", "sleep")
            .eq("ppid", me)
            .done()?;
        Ok(Verdict::pass(format!("pid {pid} signal 9")))
    }))
}

/// A forked child, no exec, creates a watched file and exits 3: its records carry its own pid,
/// this process as parent and this process's image.
pub fn forked_child(cx: &Context) -> anyhow::Result<Check> {
    let path = Path::new("/tmp").join(marker("fork"));
    let c_path = CString::new(text(&path))?;
    // SAFETY: this process has one thread; the child only makes raw syscalls, then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `c_path` is a valid C string; open, close and _exit are async-signal-safe.
        unsafe {
            let fd = libc::open(
                c_path.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            libc::close(fd);
            libc::_exit(if fd >= 0 { 3 } else { 1 });
        }
    }
    ensure!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)?;
    ensure!(
        status == nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 3),
        "the forked child: {status:?}"
    );
    let (me, my_exe) = (cx.me, text(&cx.my_exe));
    let pid = pid as u32;
    Ok(Box::new(move |run| {
        if let Some(exec) = run
            .records
            .find(|e| e["event_type"] == "execve" && e["pid"] == pid)
        {
            return Err(format!("the child never exec'd, yet: {exec}"));
        }
        let exit = run
            .records
            .find(|e| e["event_type"] == "exit" && e["pid"] == pid)
            .ok_or_else(|| format!("no exit record for the forked pid {pid}"))?;
        Expect::new(format!("the exit of pid {pid}"), exit)
            .eq("exit_code", 3)
            .eq("ppid", me)
            .eq("exe", my_exe.as_str())
            .done()?;
        // The child's activity, where the file monitor runs (the file column says if not).
        if run.monitor_state("file") != "on" {
            return Ok(Verdict::pass(format!(
                "pid {pid}, child of {me}: its exit (no file monitor for its create)"
            )));
        }
        let r = run
            .records
            .find(|e| e["event_type"] == "file" && e["path"] == text(&path).as_str())
            .ok_or_else(|| format!("no file record for {}", path.display()))?;
        Expect::new(format!("the create of {}", path.display()), r)
            .eq("type", "create")
            .eq("pid", pid)
            .eq("ppid", me)
            .eq("exe", my_exe.as_str())
            .done()?;
        Ok(Verdict::pass(format!(
            "pid {pid}, child of {me}: its create and exit"
        )))
    }))
}
