//! owoctl: control the OWO daemon over D-Bus (see owoctl(8)). Human-readable tables by default,
//! `--json` where it says so. A daemon that is not running, a caller without rights and an unknown
//! monitor each get one clear line and an exit code of their own:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done |
//! | 1 | any other failure |
//! | 2 | bad command line |
//! | 3 | owod is not running (or the bus is not reachable) |
//! | 4 | access denied (root only) |
//! | 5 | no such monitor |
//! | 6 | the config has problems (reload) |

mod terminal;
mod top;
mod tree;
mod watch;

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
};

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use owo_dbus::ManagerProxy;
use serde_json::Value;
use zbus::Connection;

#[derive(Parser)]
#[command(
    name = "owoctl",
    version,
    about = "Control owod, the OWO daemon, over D-Bus"
)]
struct Cli {
    /// The bus to use (default: the system bus, or DBUS_SYSTEM_BUS_ADDRESS).
    #[arg(long, global = true, value_name = "ADDR")]
    dbus_address: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon's state: monitors, counters, sinks.
    Status {
        /// The whole status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Each monitor and whether it is on.
    Monitors,
    /// Switch monitors on (root).
    Enable {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Switch monitors off (root).
    Disable {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Read the config file again; nothing changes if it has problems (root).
    Reload,
    /// Reopen the output file, after logrotate renamed it (root).
    Reopen,
    /// The process tree (root: command lines may hold secrets).
    Tree {
        /// Only the tree under this process.
        #[arg(long, default_value_t = 0)]
        pid: u32,
        #[arg(long)]
        json: bool,
    },
    /// Print behavior alerts as they happen, one JSON object a line, until interrupted.
    Alerts,
    /// Print records as they happen, one line each, until interrupted or owod stops (root).
    Watch {
        /// Only the records of this monitor (execve, exit, file, network, privilege, module,
        /// write), or alerts (behavior) or owod's own (agent); repeat for more.
        #[arg(long = "monitor", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(watch::NAMES))]
        monitors: Vec<String>,
        /// Only the records of this process.
        #[arg(long)]
        pid: Option<u32>,
        /// The records themselves, one JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// A screen of owod's work, refreshed every second: rates, losses, queues, CPU, memory,
    /// outputs, last alerts.
    Top {
        /// One screen (after a second, for the rates) to standard output, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Shell completions for bash, zsh or fish (or elvish, powershell).
    Completions { shell: Shell },
}

/// A failure, with its exit code.
struct Failure {
    code: u8,
    message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// Sort a D-Bus error into one clear line and its exit code.
fn explain(err: zbus::Error) -> Failure {
    if let zbus::Error::MethodError(name, detail, _) = &err {
        let detail = detail.clone().unwrap_or_default();
        return match name.as_str() {
            "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner" => fail(
                3,
                "owod is not running (nobody owns org.owo.Observer1 on this bus)",
            ),
            "org.freedesktop.DBus.Error.AccessDenied" | owo_dbus::ERROR_ACCESS_DENIED => {
                fail(4, "access denied: this needs root (try sudo)")
            }
            owo_dbus::ERROR_UNKNOWN_MONITOR => fail(5, detail),
            owo_dbus::ERROR_INVALID_CONFIG => fail(
                6,
                format!("the config has problems, nothing changed:\n{detail}"),
            ),
            owo_dbus::ERROR_NO_SUCH_PROCESS => fail(1, detail),
            _ => fail(1, format!("{name}: {detail}")),
        };
    }
    match err {
        zbus::Error::FDO(fdo) => match *fdo {
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => fail(
                3,
                "owod is not running (nobody owns org.owo.Observer1 on this bus)",
            ),
            zbus::fdo::Error::AccessDenied(_) => {
                fail(4, "access denied: this needs root (try sudo)")
            }
            other => fail(1, other.to_string()),
        },
        zbus::Error::InputOutput(e) => fail(
            3,
            format!("cannot reach the bus ({e}): is owod's bus running?"),
        ),
        zbus::Error::Address(e) => fail(1, format!("bad bus address: {e}")),
        other => fail(1, other.to_string()),
    }
}

async fn connect(cli: &Cli) -> Result<Connection, Failure> {
    let built = match &cli.dbus_address {
        Some(address) => {
            zbus::connection::Builder::address(address.as_str())
                .build()
                .await
        }
        None => Connection::system().await,
    };
    // Whatever stops us from connecting, the daemon cannot be reached.
    built.map_err(|e| {
        fail(
            3,
            format!("cannot reach the bus ({e}): is owod running, and on this bus?"),
        )
    })
}

fn print_table(rows: &[(String, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for (key, value) in rows {
        let _ = writeln!(out, "{key:width$}  {value}");
    }
}

async fn status(proxy: &ManagerProxy<'_>, json: bool) -> Result<(), Failure> {
    let text = proxy.get_status().await.map_err(explain)?;
    if json {
        println!("{text}");
        return Ok(());
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| fail(1, format!("owod sent a status that is not JSON: {e}")))?;
    let mut rows = vec![
        (
            "version".to_owned(),
            v["version"].as_str().unwrap_or("?").to_owned(),
        ),
        ("pid".to_owned(), v["pid"].to_string()),
        ("uptime".to_owned(), format!("{} s", v["uptime_seconds"])),
        (
            "kernel".to_owned(),
            format!(
                "{} (eBPF object: {}, with {})",
                v["kernel"].as_str().unwrap_or("?"),
                v["bpf_object"].as_str().unwrap_or("?"),
                v["bpf_loops"].as_str().unwrap_or("?")
            ),
        ),
        (
            "config".to_owned(),
            v["config_path"].as_str().unwrap_or("?").to_owned(),
        ),
        ("records".to_owned(), v["records"].to_string()),
    ];
    if let Some(monitors) = v["monitors"].as_object() {
        for (name, m) in monitors {
            let mut state = match (m["on"].as_bool(), m["state"].as_str()) {
                (_, Some("unavailable")) => {
                    format!("unavailable: {}", m["reason"].as_str().unwrap_or(""))
                }
                (Some(true), _) => "on".to_owned(),
                _ => "off".to_owned(),
            };
            let count = |key: &str| m[key].as_array().map_or(0, Vec::len);
            if count("hooks") > 0 {
                state += &format!(", {} hooks", count("hooks"));
            }
            if count("missing") > 0 {
                state += &format!(", {} missing on this kernel", count("missing"));
            }
            rows.push((format!("monitor {name}"), state));
            for spot in m["blind_spots"].as_array().into_iter().flatten() {
                let spot = terminal::printable(spot.as_str().unwrap_or_default());
                rows.push((format!("  blind spot {name}"), spot));
            }
        }
    }
    if let Some(by_type) = v["records_by_type"].as_object() {
        for (kind, n) in by_type {
            rows.push((format!("records {kind}"), n.to_string()));
        }
    }
    if let Some(lost) = v["lost"].as_object() {
        for (what, n) in lost {
            rows.push((format!("lost {what}"), n.to_string()));
        }
    }
    if let Some(counters) = v["counters"].as_object() {
        for (what, n) in counters {
            if n.as_u64().is_some_and(|n| n > 0) {
                rows.push((what.replace('_', " "), n.to_string()));
            }
        }
    }
    if let Some(sinks) = v["sinks"].as_array() {
        for s in sinks {
            let mut value = format!(
                "{} ({} write errors)",
                s["target"].as_str().unwrap_or("?"),
                s["write_errors"]
            );
            if let Some(remote) = s["remote"].as_object() {
                value += &format!(
                    ", {}, {} delivered",
                    remote["state"].as_str().unwrap_or("?"),
                    remote["delivered"]
                );
                let spool_lost = remote["spool_write_lost"].as_u64().unwrap_or(0);
                if spool_lost > 0 {
                    value += &format!(", {spool_lost} not written to the spool");
                }
                let refused = remote["refused"].as_u64().unwrap_or(0);
                if refused > 0 {
                    value += &format!(", {refused} refused by the collector");
                }
                if let Some(error) = remote["last_error"].as_str() {
                    value += &format!(", last error: {error}");
                }
            }
            rows.push((format!("sink {}", s["name"].as_str().unwrap_or("?")), value));
        }
    }
    print_table(&rows);
    Ok(())
}

async fn monitors(proxy: &ManagerProxy<'_>) -> Result<(), Failure> {
    let monitors = proxy.monitors().await.map_err(explain)?;
    let mut rows: Vec<(String, String)> = monitors
        .into_iter()
        .map(|(name, on)| (name, if on { "on" } else { "off" }.to_owned()))
        .collect();
    rows.sort();
    print_table(&rows);
    Ok(())
}

async fn switch(proxy: &ManagerProxy<'_>, names: &[String], on: bool) -> Result<(), Failure> {
    for name in names {
        proxy.set_monitor(name, on).await.map_err(explain)?;
        println!("{name}: {}", if on { "on" } else { "off" });
    }
    Ok(())
}

async fn alerts(proxy: &ManagerProxy<'_>) -> Result<(), Failure> {
    use futures_lite::StreamExt as _;
    // A signal stream waits forever on a bus where nobody sends: make sure owod is there.
    proxy.version().await.map_err(explain)?;
    let mut stream = proxy.receive_alert().await.map_err(explain)?;
    while let Some(signal) = stream.next().await {
        let args = signal.args().map_err(|e| fail(1, e.to_string()))?;
        println!("{}", args.json());
    }
    Ok(())
}

/// Alerts `owoctl top` shows at most.
const TOP_ALERTS: usize = 5;

async fn top(proxy: &ManagerProxy<'_>, once: bool) -> Result<(), Failure> {
    use futures_lite::StreamExt as _;
    let sample = || async {
        let text = proxy.get_status().await.map_err(explain)?;
        let status: Value = serde_json::from_str(&text)
            .map_err(|e| fail(1, format!("owod sent a status that is not JSON: {e}")))?;
        Ok::<_, Failure>(top::Sample::now(status))
    };
    let mut before = sample().await?;
    // The bus gives alerts to root only; others see none.
    let mut signals = proxy.receive_alert().await.map_err(explain)?;
    let mut alerts: std::collections::VecDeque<Value> = std::collections::VecDeque::new();
    let clear = std::io::stdout().is_terminal() && !once;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = sample().await?;
                let alerts: Vec<Value> = alerts.iter().cloned().collect();
                let screen = top::render(&before, &now, &alerts);
                let mut out = std::io::stdout().lock();
                let written = if clear {
                    write!(out, "\x1b[H\x1b[2J{screen}")
                } else {
                    writeln!(out, "{screen}")
                };
                if written.and_then(|()| out.flush()).is_err() || once {
                    return Ok(());
                }
                before = now;
            }
            Some(signal) = signals.next() => {
                let alert = signal.args().ok().and_then(|a| serde_json::from_str::<Value>(a.json()).ok());
                if let Some(alert) = alert {
                    alerts.push_front(alert);
                    alerts.truncate(TOP_ALERTS);
                }
            }
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completions { shell } = &cli.command {
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "owoctl",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    let conn = connect(&cli).await?;
    let proxy = ManagerProxy::new(&conn).await.map_err(explain)?;
    match &cli.command {
        Command::Status { json } => status(&proxy, *json).await,
        Command::Monitors => monitors(&proxy).await,
        Command::Enable { names } => switch(&proxy, names, true).await,
        Command::Disable { names } => switch(&proxy, names, false).await,
        Command::Reload => {
            proxy.reload().await.map_err(explain)?;
            println!("reloaded");
            Ok(())
        }
        Command::Reopen => {
            proxy.reopen_logs().await.map_err(explain)?;
            println!("reopened");
            Ok(())
        }
        Command::Tree { pid, json } => {
            // On a terminal the tree is drawn here, from the JSON answer; to a pipe or a file it
            // is owod's tab-separated text, for scripts.
            let drawn = !*json && std::io::stdout().is_terminal();
            let tree = proxy
                .dump_process_tree(*pid, if *json || drawn { "json" } else { "text" })
                .await
                .map_err(explain)?;
            if drawn {
                let answer: Value = serde_json::from_str(&tree)
                    .map_err(|e| fail(1, format!("owod's tree is not JSON: {e}")))?;
                print!("{}", tree::draw(&answer));
            } else {
                print!("{tree}");
            }
            if *json {
                println!();
            }
            Ok(())
        }
        Command::Alerts => alerts(&proxy).await,
        Command::Top { once } => top(&proxy, *once).await,
        Command::Watch {
            monitors,
            pid,
            json,
        } => {
            let socket = proxy.watch().await.map_err(explain)?;
            let filter = watch::Filter {
                monitors: monitors.clone(),
                pid: *pid,
            };
            let paint = terminal::Paint(terminal::colours());
            watch::run(socket.into(), &filter, *json, &paint)
                .map_err(|e| fail(1, format!("reading owod's records: {e}")))
        }
        Command::Completions { .. } => unreachable!("handled above"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("owoctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("owoctl: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
