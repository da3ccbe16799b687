//! `owo-vmtest guest`, run by the VM's /init: start the real owod with every monitor on, run each
//! scenario with real syscalls and unique markers, stop owod with SIGTERM, then check the records
//! file field by field and print one `VMTEST` line per check (see `verdict`). It never stops at a
//! failure: every monitor gets its line, so the host's table shows exactly what broke.

mod behavior;
mod compat;
mod files;
mod module;
mod network;
mod owod;
mod privilege;
mod process;
mod uring;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;

use crate::{
    records::Records,
    verdict::{end_line, CheckLine, Outcome, Verdict, MONITORS},
};
use owod::Owod;

#[derive(clap::Args)]
pub struct GuestArgs {
    /// The daemon under test.
    #[arg(long, default_value = "/usr/sbin/owod")]
    owod: PathBuf,
    /// Where owod writes its records (the config's output.file.path).
    #[arg(long, default_value = "/var/log/edr/alerts.jsonl")]
    records: PathBuf,
    /// owod's stdout and stderr.
    #[arg(long, default_value = "/var/log/owod.log")]
    log: PathBuf,
    /// A directory of at least two dependency-free kernel modules (`*.ko`) of this kernel.
    #[arg(long, default_value = "/lib/modules/vmtest")]
    modules: PathBuf,
    /// Scratch space outside every watched path.
    #[arg(long, default_value = "/opt/owo-vmtest")]
    work: PathBuf,
    /// The compat-syscall test program, built as an ia32 program ...
    #[arg(long, default_value = "/usr/bin/owo-ia32")]
    ia32: PathBuf,
    /// ... and as a 64-bit one that makes its calls with `int 0x80`.
    #[arg(long, default_value = "/usr/bin/owo-ia32-int80")]
    ia32_int80: PathBuf,
    /// The io_uring test program.
    #[arg(long, default_value = "/usr/bin/owo-uring")]
    uring: PathBuf,
}

/// What every scenario may use.
pub struct Context {
    /// This process, the parent of what the scenarios run.
    pub me: u32,
    pub my_exe: PathBuf,
    /// The image of pid 1, the top of every ancestry.
    pub init_exe: PathBuf,
    pub modules: PathBuf,
    pub work: PathBuf,
    pub ia32: PathBuf,
    pub ia32_int80: PathBuf,
    pub uring: PathBuf,
}

/// What the checks look at, once owod has stopped.
pub struct Finished<'a> {
    pub records: &'a Records,
    pub start: &'a Value,
    pub log: &'a str,
}

impl Finished<'_> {
    /// The state owod's `start` record gives a monitor: `on`, `off` or `unavailable`.
    pub fn monitor_state(&self, monitor: &str) -> &str {
        self.start["event"]["monitors"][monitor]
            .as_str()
            .unwrap_or("missing")
    }

    /// Why a failed check may have failed: the monitor it needs is not on, and owod's log says
    /// why. `None` when the monitor runs (or is not one of owod's).
    fn not_running(&self, monitor: &str) -> Option<String> {
        let state = self.start["event"]["monitors"].get(monitor)?.as_str()?;
        if state == "on" {
            return None;
        }
        let needle = format!("monitor `{monitor}` is unavailable: ");
        let why = self
            .log
            .lines()
            .find_map(|l| l.split_once(&needle).map(|(_, why)| why))
            .unwrap_or("owod's log says nothing more");
        Some(format!(
            "owod reports `{monitor}` {state} ({})",
            why.chars().take(200).collect::<String>()
        ))
    }
}

/// A scenario's expectations, checked once owod has stopped: `Err` is a failure with its reason.
pub type Check = Box<dyn FnOnce(&Finished) -> Result<Verdict, String>>;

struct Scenario {
    monitor: &'static str,
    name: &'static str,
    /// Do the real thing now; return what the records must show.
    act: fn(&Context) -> anyhow::Result<Check>,
}

impl Scenario {
    const fn new(
        monitor: &'static str,
        name: &'static str,
        act: fn(&Context) -> anyhow::Result<Check>,
    ) -> Scenario {
        Scenario { monitor, name, act }
    }
}

/// Every scenario, in the order they run. Each monitor of `verdict::MONITORS` but `owod` has at
/// least one; `owod` itself is checked by `owod::checks`.
const SCENARIOS: &[Scenario] = &[
    Scenario::new("execve", "exec with argv", process::exec_with_argv),
    Scenario::new("exit", "exit code", process::exit_code),
    Scenario::new("exit", "killed by SIGKILL", process::killed),
    Scenario::new("fork", "forked child", process::forked_child),
    Scenario::new("file", "create open rename unlink", files::lifecycle),
    Scenario::new("write", "writes to a watched file", files::writes),
    Scenario::new("network", "tcp ipv4", network::tcp_v4),
    Scenario::new("network", "tcp ipv6", network::tcp_v6),
    Scenario::new("network", "dns query", network::dns_query),
    Scenario::new(
        "privilege",
        "setresgid setresuid",
        privilege::drop_to_nobody,
    ),
    Scenario::new("module", "finit_module", module::finit),
    Scenario::new("module", "init_module", module::init),
    Scenario::new("compat", "int 0x80 from 64-bit code", compat::int80),
    Scenario::new("compat", "ia32 program", compat::ia32_program),
    Scenario::new("io_uring", "open connect accept send", uring::requests),
    Scenario::new("behavior", "download_and_run", behavior::download_and_run),
    Scenario::new("behavior", "written_then_run", behavior::written_then_run),
];

/// Prints check lines and remembers whether any failed.
struct Printer {
    kernel: String,
    failed: bool,
}

impl Printer {
    fn print(&mut self, monitor: &str, scenario: &str, verdict: Verdict) {
        self.failed |= verdict.outcome == Outcome::Fail;
        let line = CheckLine {
            kernel: self.kernel.clone(),
            monitor: monitor.into(),
            scenario: scenario.into(),
            verdict,
        };
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
}

pub fn run(args: GuestArgs) -> anyhow::Result<()> {
    let kernel = nix::sys::utsname::uname()
        .context("uname")?
        .release()
        .to_string_lossy()
        .into_owned();
    let mut out = Printer {
        kernel: kernel.clone(),
        failed: false,
    };
    let config = Path::new("/etc/owo/config.yaml");
    fs::create_dir_all("/etc/owo")?;
    fs::write(config, owod::config(&args.records)).context("write the owod config")?;
    fs::create_dir_all(&args.work)?;

    let mut owod = Owod::start(&args.owod, config, &args.records, &args.log)?;
    let start = match owod.wait_start() {
        Ok(start) => start,
        Err(why) => {
            for monitor in MONITORS {
                out.print(monitor, "owod start", Verdict::fail(why.clone()));
            }
            print_log(&owod.log());
            println!("{}", end_line(&kernel));
            return Ok(());
        }
    };
    let cx = Context {
        me: std::process::id(),
        my_exe: fs::read_link("/proc/self/exe")?,
        init_exe: fs::read_link("/proc/1/exe")?,
        modules: args.modules,
        work: args.work,
        ia32: args.ia32,
        ia32_int80: args.ia32_int80,
        uring: args.uring,
    };

    let mut pending = Vec::new();
    for scenario in SCENARIOS {
        match (scenario.act)(&cx) {
            Ok(check) => pending.push((scenario, check)),
            Err(e) => out.print(
                scenario.monitor,
                scenario.name,
                Verdict::fail(format!("the scenario itself failed: {e:#}")),
            ),
        }
    }
    let flowing = owod.barrier(start["event"]["monitors"]["file"] == "on");
    let status = owod.stop();
    let records = owod.records();
    let log = owod.log();
    let finished = Finished {
        records: &records,
        start: &start,
        log: &log,
    };
    for (scenario, check) in pending {
        let mut verdict = check(&finished).unwrap_or_else(Verdict::fail);
        if verdict.outcome == Outcome::Fail {
            if let Some(why) = finished.not_running(scenario.monitor) {
                verdict.detail = format!("{why}; {}", verdict.detail);
            }
        }
        out.print(scenario.monitor, scenario.name, verdict);
    }
    for (name, verdict) in owod::checks(&finished, &kernel, flowing, status) {
        out.print("owod", name, verdict);
    }
    if out.failed {
        print_log(&log);
    }
    println!("{}", end_line(&kernel));
    Ok(())
}

/// owod's log on the console, bounded: a verifier log can run to thousands of lines.
fn print_log(log: &str) {
    const MAX_LINES: usize = 200;
    let lines: Vec<&str> = log.lines().collect();
    println!("---- owod log ({} lines) ----", lines.len());
    for line in lines.iter().take(MAX_LINES) {
        println!("owod.log| {}", line.chars().take(400).collect::<String>());
    }
    if lines.len() > MAX_LINES {
        println!("owod.log| ... {} more lines", lines.len() - MAX_LINES);
    }
    println!("---- end of owod log ----");
}

/// How long anything in the guest may take. Generous: under TCG a syscall costs ten times more.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Wait, with a deadline, until `done` holds; `what` names what is awaited.
pub fn wait_until(
    what: &str,
    deadline: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    let end = Instant::now() + deadline;
    while !done() {
        if Instant::now() >= end {
            return Err(format!("no {what} within {deadline:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A name no other scenario or run uses.
pub fn marker(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: the buffer is valid for its length; getrandom writes at most that many bytes.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    assert_eq!(n, bytes.len() as isize, "getrandom");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("owo-{prefix}-{hex}")
}

/// A path as the records carry it.
pub fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failure_on_a_monitor_owod_could_not_run_says_why() {
        let records = Records::parse("");
        let start = json!({"event": {"monitors": {"write": "unavailable", "file": "on"}}});
        let log = "x WARN owod::collector::loader: monitor `write` is unavailable: the kernel's verifier refused `owo_enter_write`\n";
        let run = Finished {
            records: &records,
            start: &start,
            log,
        };
        assert_eq!(
            run.not_running("write").as_deref(),
            Some("owod reports `write` unavailable (the kernel's verifier refused `owo_enter_write`)")
        );
        assert_eq!(run.not_running("file"), None);
        assert_eq!(
            run.not_running("behavior"),
            None,
            "not one of owod's monitors"
        );
        assert_eq!(run.monitor_state("file"), "on");
    }
}
