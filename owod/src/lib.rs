//! owod, the OWO daemon, as a library: the binary's [`main`], the [`Counting`] allocator it
//! installs, and the parsers of what the network and the config files hand owod, in
//! [`untrusted`], for the fuzz targets. Every stage stays private to the crate.

mod allocations;
mod behavior;
mod collector;
mod config;
mod control;
mod daemon;
mod export;
mod pipeline;
mod process;
mod service;
pub mod untrusted;

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;

pub use crate::allocations::Counting;
use crate::{
    behavior::rules::Rule,
    config::{Config, ConfigFile},
};

const DEFAULT_CONFIG: &str = "/etc/owo/config.yaml";
#[derive(Parser, Debug)]
#[command(
    name = "owod",
    version,
    about = "OWO, the Open Workstation Observer: eBPF endpoint visibility"
)]
struct Args {
    /// The config file [default: /etc/owo/config.yaml, or the built-in defaults if it is missing]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Check the config file, report every problem, and exit.
    #[arg(long)]
    check_config: bool,
    /// Serve D-Bus on this bus instead of the system bus.
    #[arg(long, value_name = "ADDR", conflicts_with = "no_dbus")]
    dbus_address: Option<String>,
    /// Do not serve D-Bus at all.
    #[arg(long)]
    no_dbus: bool,
}

/// The original agent spelled its flags with one dash (`-config PATH`, `-version`).
fn normalize_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    args.map(|a| match a.to_str() {
        Some("-config" | "-version" | "-check-config") => {
            let mut long = OsString::from("-");
            long.push(&a);
            long
        }
        Some(s) if s.starts_with("-config=") => format!("-{s}").into(),
        _ => a,
    })
    .collect()
}

/// The command line: parse the flags, read the config, then check it or run the daemon.
pub fn main() -> ExitCode {
    let args = Args::parse_from(normalize_args(std::env::args_os()));
    let file = ConfigFile {
        named: args.config.is_some(),
        path: args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into()),
    };
    let loaded = match file.load(behavior::rules_for) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("owod: {:#}", anyhow::Error::from(err));
            return ExitCode::from(2);
        }
    };
    let origin = if loaded.defaults {
        format!(
            "no config file at {}: the built-in defaults",
            file.path.display()
        )
    } else {
        file.path.display().to_string()
    };
    if args.check_config {
        for warning in &loaded.warnings {
            println!("{}: warning: {warning}", file.path.display());
        }
        let out = &loaded.config.output.file;
        if out.enabled {
            println!("{origin}: ok; records go to {}", out.path.display());
        } else {
            println!("{origin}: ok");
        }
        return ExitCode::SUCCESS;
    }
    service::init_logging(&loaded.config.logging.level);
    if loaded.defaults {
        tracing::info!("{origin}; owo.yaml(5) describes the file");
    }
    file.log_warnings(&loaded.warnings);
    match run(&args, file, loaded.config, loaded.built) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Logging goes to stderr: one line, with the whole chain of causes.
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    args: &Args,
    file: ConfigFile,
    config: Config,
    rules: Option<Vec<Rule>>,
) -> anyhow::Result<()> {
    collector::preflight::check()?;
    collector::preflight::drop_capabilities()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bus = match (&args.dbus_address, args.no_dbus) {
        (_, true) => daemon::Bus::None,
        (Some(address), false) => daemon::Bus::Address(address.clone()),
        (None, false) => daemon::Bus::System,
    };
    let result = runtime.block_on(daemon::serve(file, config, rules, bus));
    // A hashing thread stuck on a hung mount must not keep the process from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}
