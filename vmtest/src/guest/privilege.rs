//! The privilege monitor: a forked child drops to nobody with setresgid and setresuid, then
//! tries to get root back with setuid(0) and is refused.

use anyhow::ensure;
use nix::{
    sys::wait::{waitpid, WaitStatus},
    unistd::Pid,
};
use serde_json::json;

use super::{Check, Context};
use crate::{records::Expect, verdict::Verdict};

const NOBODY: u32 = 65534;

pub fn drop_to_nobody(cx: &Context) -> anyhow::Result<Check> {
    // SAFETY: this process has one thread; the child only makes raw syscalls, then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: raw id syscalls (glibc's wrappers would signal threads this child does not
        // have) and _exit, all async-signal-safe.
        unsafe {
            let n = libc::c_long::from(NOBODY);
            let gid = libc::syscall(libc::SYS_setresgid, n, n, n);
            let uid = libc::syscall(libc::SYS_setresuid, n, n, n);
            let back = libc::syscall(libc::SYS_setuid, 0);
            libc::_exit(if gid == 0 && uid == 0 && back == -1 {
                0
            } else {
                1
            });
        }
    }
    ensure!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    let status = waitpid(Pid::from_raw(pid), None)?;
    ensure!(
        status == WaitStatus::Exited(Pid::from_raw(pid), 0),
        "the child's setresgid, setresuid and refused setuid(0): {status:?}"
    );
    let pid = pid as u32;
    let me = cx.me;
    Ok(Box::new(move |run| {
        let of_child = run
            .records
            .filter(|e| e["event_type"] == "privilege" && e["pid"] == pid);
        let kinds: Vec<_> = of_child.iter().map(|r| &r["event"]["type"]).collect();
        if kinds != ["setresgid", "setresuid", "setuid"] {
            return Err(format!(
                "the privilege records of pid {pid} are {kinds:?}, not setresgid, setresuid, setuid"
            ));
        }
        let nobody = json!([NOBODY, NOBODY, NOBODY]);
        Expect::new("the setresgid", of_child[0])
            .eq("ppid", me)
            .eq("uid", 0)
            .eq("gid", 0)
            .eq("egid", 0)
            .eq("new_gid", NOBODY)
            .eq("new_egid", NOBODY)
            .eq("args", nobody.clone())
            .eq("ret", 0)
            .done()?;
        Expect::new("the setresuid", of_child[1])
            .eq("uid", 0)
            .eq("euid", 0)
            .eq("new_uid", NOBODY)
            .eq("new_euid", NOBODY)
            .eq("args", nobody)
            .eq("ret", 0)
            .done()?;
        Expect::new("the refused setuid(0)", of_child[2])
            .eq("uid", NOBODY)
            .eq("new_uid", NOBODY)
            .eq("args", json!([0]))
            .eq("ret", -libc::EPERM)
            .done()?;
        Ok(Verdict::pass(format!(
            "pid {pid}: 0 to {NOBODY}, setuid(0) refused"
        )))
    }))
}
