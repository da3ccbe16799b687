//! Benchmark (not a test): a loop of `getppid(2)`, a syscall no monitor reports, run without
//! owod, with owod, and without again, twice: with `monitor.compat_syscalls` on (the default)
//! and off. What owod costs a syscall it does not report: the syscall tracepoints every
//! activity monitor turns on, and, with compat syscalls on, the two programs on raw_syscalls
//! that look for 32-bit calls. Prints ns per syscall in each phase and the difference owod
//! makes. Needs root (it starts owod).
//!
//! `syscall-loop [--owod PATH] [--syscalls N]`

use anyhow::Result;
use owo_bench::{measure, ops_per_second, parse_args, require_root};

fn main() -> Result<()> {
    let mut syscalls = 5_000_000usize;
    let owod = parse_args(
        "syscall-loop [--owod PATH] [--syscalls N]",
        &mut [("--syscalls", &mut syscalls)],
    )?;
    require_root("syscall-loop")?;
    for compat in [true, false] {
        let config = format!("monitor:\n  compat_syscalls: {compat}\n");
        let m = measure(&owod, &config, |_| {
            ops_per_second(syscalls, || {
                // SAFETY: getppid takes nothing and cannot fail.
                unsafe { libc::syscall(libc::SYS_getppid) };
                Ok(())
            })
        })?;
        let ns = |rate: f64| 1e9 / rate;
        let without = (ns(m.before) + ns(m.after)) / 2.0;
        println!("monitor.compat_syscalls: {compat}");
        println!("  without owod (before): {:>8.1} ns/syscall", ns(m.before));
        println!("  with owod:             {:>8.1} ns/syscall", ns(m.with));
        println!("  without owod (after):  {:>8.1} ns/syscall", ns(m.after));
        println!(
            "  owod adds:             {:>8.1} ns/syscall",
            ns(m.with) - without
        );
    }
    Ok(())
}
