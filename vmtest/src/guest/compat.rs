//! 32-bit compat syscalls: the ia32 test program (`owod/tests/support/ia32.c`), built static as
//! a 64-bit program that makes its calls with `int 0x80` and as an ia32 program, creates, writes
//! and unlinks a file under /tmp, connects to a listener here, calls setuid and execs
//! /bin/true. Each of those records must be there, marked `via: ia32`.

use std::{net::TcpListener, path::Path, process::Command};

use anyhow::ensure;

use super::{marker, text, Check, Context};
use crate::{records::Expect, verdict::Verdict};

fn run(program: &Path, connects: usize, setuid_calls: usize) -> anyhow::Result<Check> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let path = Path::new("/tmp").join(marker("ia32"));
    let mut child = Command::new(program)
        .arg(&path)
        .arg(port.to_string())
        .spawn()?;
    let pid = child.id();
    let status = child.wait()?;
    ensure!(status.success(), "{} failed: {status}", program.display());
    let path = text(&path);
    Ok(Box::new(move |run| {
        let of_child = |what: &str, pred: &dyn Fn(&serde_json::Value) -> bool| {
            let found = run.records.filter(|e| e["pid"] == pid && pred(e));
            if found.is_empty() {
                return Err(format!("no {what} record of pid {pid}"));
            }
            for r in &found {
                Expect::new(what, r).eq("via", "ia32").done()?;
            }
            Ok(found)
        };
        let file = of_child("file", &|e| {
            e["event_type"] == "file" && e["path"] == path.as_str()
        })?;
        let kinds: Vec<_> = file.iter().map(|r| &r["event"]["type"]).collect();
        if kinds != ["create", "unlink"] {
            return Err(format!(
                "the file records of {path} are {kinds:?}, not create, unlink"
            ));
        }
        of_child("write", &|e| {
            e["event_type"] == "write" && e["path"] == path.as_str()
        })?;
        let connected = of_child("connect", &|e| {
            e["event_type"] == "network" && e["type"] == "connect" && e["dport"] == port
        })?;
        if connected.len() != connects {
            return Err(format!(
                "{} connect records to port {port}, not {connects}",
                connected.len()
            ));
        }
        let setuid = of_child("setuid", &|e| e["event_type"] == "privilege")?;
        if setuid.len() != setuid_calls {
            return Err(format!(
                "{} setuid records, not {setuid_calls}",
                setuid.len()
            ));
        }
        of_child("exec of /bin/true", &|e| {
            e["event_type"] == "execve" && e["path"] == "/bin/true"
        })?;
        Ok(Verdict::pass(format!(
            "create, write, unlink, {connects} connect, {setuid_calls} setuid, exec"
        )))
    }))
}

/// Two connects (connect, then socketcall) and two setuid calls (setuid32, and the 16-bit one).
pub fn int80(cx: &Context) -> anyhow::Result<Check> {
    run(&cx.ia32_int80, 2, 2)
}

/// The C library connects through socketcall.
pub fn ia32_program(cx: &Context) -> anyhow::Result<Check> {
    run(&cx.ia32, 1, 1)
}
