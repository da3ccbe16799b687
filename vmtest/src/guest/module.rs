//! The module monitor: one module loaded with finit_module, another with init_module, each
//! removed again. On a kernel without module support the checks are SKIP, provided owod says
//! the monitor is unavailable.

use std::{
    ffi::CString,
    fs, io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};

use super::{text, Check, Context, Finished};
use crate::{records::Expect, verdict::Verdict};

/// The modules the host put in the guest, sorted: the first for finit_module, the second for
/// init_module.
fn module(dir: &Path, index: usize) -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
        .collect();
    found.sort();
    match found.get(index) {
        Some(path) => Ok(path.clone()),
        None => bail!(
            "{} modules in {}, the scenarios need two",
            found.len(),
            dir.display()
        ),
    }
}

/// The name the kernel knows a module by: its file name, `-` read as `_`.
fn name(path: &Path) -> String {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    stem.replace('-', "_")
}

/// The check where the kernel cannot load modules: owod must say the monitor is unavailable.
fn unsupported(why: String) -> Check {
    Box::new(move |run: &Finished| {
        let state = &run.start["event"]["monitors"]["module"];
        if state != "unavailable" {
            return Err(format!(
                "{why}, yet owod's start record says module is {state}"
            ));
        }
        if !run.log.contains("monitor `module` is unavailable") {
            return Err(format!(
                "{why}, and owod's log does not say the monitor is unavailable"
            ));
        }
        Ok(Verdict::skip(format!(
            "{why}; owod reports the monitor unavailable"
        )))
    })
}

/// Remove a module loaded by a scenario, so a second run in the same guest could load it again.
fn remove(name: &str) -> anyhow::Result<()> {
    let c_name = CString::new(name)?;
    // SAFETY: a valid C string; delete_module reads it only.
    let ret = unsafe { libc::syscall(libc::SYS_delete_module, c_name.as_ptr(), libc::O_NONBLOCK) };
    if ret != 0 {
        bail!("delete_module({name}): {}", io::Error::last_os_error());
    }
    Ok(())
}

/// The check of a load that succeeded: a `module` record of this process with `type`.
fn loaded(cx: &Context, kind: &'static str, path: Option<String>) -> Check {
    let me = cx.me;
    Box::new(move |run: &Finished| {
        let r = run
            .records
            .find(|e| e["event_type"] == "module" && e["pid"] == me && e["type"] == kind)
            .ok_or_else(|| format!("no {kind} record of pid {me}"))?;
        let mut x = Expect::new(format!("the {kind}"), r);
        x.eq("ret", 0);
        match &path {
            Some(path) => x.eq("path", path.as_str()),
            None => x.absent("path"),
        };
        x.done()?;
        Ok(Verdict::pass(format!(
            "{kind} {}",
            path.as_deref().unwrap_or("from memory")
        )))
    })
}

/// Load the `index`th module with `syscall`, remove it again, and check its record; on a kernel
/// without module support, the check that owod says so.
fn load_and_remove(
    cx: &Context,
    kind: &'static str,
    index: usize,
    syscall: impl FnOnce(&Path) -> io::Result<()>,
) -> anyhow::Result<Check> {
    if !Path::new("/proc/modules").exists() {
        return Ok(unsupported("the kernel has no /proc/modules".into()));
    }
    let ko = module(&cx.modules, index)?;
    if let Err(err) = syscall(&ko) {
        if err.raw_os_error() == Some(libc::ENOSYS) {
            return Ok(unsupported(format!("{kind} gives ENOSYS")));
        }
        bail!("{kind}({}): {err}", ko.display());
    }
    remove(&name(&ko))?;
    let path = (kind == "finit_module").then(|| text(&ko));
    Ok(loaded(cx, kind, path))
}

pub fn finit(cx: &Context) -> anyhow::Result<Check> {
    load_and_remove(cx, "finit_module", 0, |ko| {
        let file = fs::File::open(ko)?;
        // SAFETY: a valid fd and an empty C string of parameters.
        let ret =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
        errno_result(ret)
    })
}

pub fn init(cx: &Context) -> anyhow::Result<Check> {
    load_and_remove(cx, "init_module", 1, |ko| {
        let image = fs::read(ko)?;
        // SAFETY: the image is valid for its length; the parameters are an empty C string.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_init_module,
                image.as_ptr(),
                image.len(),
                c"".as_ptr(),
            )
        };
        errno_result(ret)
    })
}

/// A raw syscall's return: 0, or the error in errno (read before anything else can change it).
fn errno_result(ret: libc::c_long) -> io::Result<()> {
    match ret {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_read_dashes_as_underscores() {
        assert_eq!(
            name(Path::new("/lib/modules/vmtest/crc-itu-t.ko")),
            "crc_itu_t"
        );
        assert_eq!(name(Path::new("crc8.ko")), "crc8");
    }
}
