//! owod, the OWO daemon: parse the flags, read the config, build the pipeline
//! (collector → process stage → exporter hub → sinks), run until SIGTERM/SIGINT, then detach,
//! drain, flush and exit 0.

mod collector;
mod config;
mod export;
mod process;
mod service;

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    collector::{Collector, MonitorState},
    config::Config,
    export::{file::file_sink, stderr::stderr_sink, Hub, Identity, Outgoing, Sink},
    process::{tree::TreeFormat, ProcessStage, ProcessTable, StageCommand, StageStats},
    service::SignalRequest,
};

const DEFAULT_CONFIG: &str = "/etc/owo/config.yaml";
/// Bounded queues between stages: when full, the stage before waits, and the kernel ring buffer
/// takes the burst (its overflow is counted).
const QUEUE: usize = 4096;

#[derive(Parser, Debug)]
#[command(
    name = "owod",
    version,
    about = "OWO, the Open Workstation Observer: eBPF endpoint visibility"
)]
struct Args {
    /// The config file.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Check the config file, report every problem, and exit.
    #[arg(long)]
    check_config: bool,
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

fn main() -> ExitCode {
    let args = Args::parse_from(normalize_args(std::env::args_os()));
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("owod: {:#}", anyhow::Error::from(err));
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        let file = &config.output.file;
        if file.enabled {
            println!(
                "{}: ok; records go to {}",
                args.config.display(),
                file.path.display()
            );
        } else {
            println!("{}: ok", args.config.display());
        }
        return ExitCode::SUCCESS;
    }
    service::init_logging(&config.logging.level);
    match run(&args, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Logging goes to stderr: one line, with the whole chain of causes.
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, config: Config) -> anyhow::Result<()> {
    collector::preflight::check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, config))
}

async fn serve(args: &Args, config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut signals = service::Signals::install().context("cannot install signal handlers")?;
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if config.output.file.enabled {
        sinks.push(Box::new(file_sink(&config.output.file.path)?));
    }
    if config.output.stderr {
        sinks.push(Box::new(stderr_sink()));
    }
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let or_host = |s: &str| {
        if s.is_empty() {
            hostname.clone()
        } else {
            s.to_owned()
        }
    };
    let run_id = uuid::Uuid::new_v4().to_string();
    let identity = Identity {
        agent_name: or_host(&config.agent.name),
        agent_hostname: or_host(&config.agent.hostname),
        agent_group: config.agent.group.clone(),
        run_id: run_id.clone(),
    };

    // Attach first, then read /proc: a process that starts in between is in both, and the
    // queued events applied after the seed bring it up to date.
    let collector = Collector::load(&config)?;
    let mut table = ProcessTable::new(
        config
            .enrich
            .process_table_max
            .try_into()
            .unwrap_or(usize::MAX),
    );
    let seeded = table.seed_from_proc();
    let unavailable: Vec<String> = collector
        .monitors
        .iter()
        .filter_map(|(name, state)| match state {
            MonitorState::Unavailable(why) => Some(format!("{name} ({why})")),
            _ => None,
        })
        .collect();
    if !unavailable.is_empty() {
        tracing::warn!(
            "monitors enabled in the config but unavailable: {}",
            unavailable.join(", ")
        );
    }
    let start = start_fields(args, &config, &collector, seeded);
    tracing::info!(run_id, programs = ?collector.program_ids, "owod {} attached; {seeded} processes seeded from /proc", env!("CARGO_PKG_VERSION"));

    let (hub_tx, hub_rx) = mpsc::channel(QUEUE);
    let (proc_tx, proc_rx) = mpsc::channel(QUEUE);
    let (stop_tx, stop_rx) = watch::channel(false);
    hub_tx
        .send(Outgoing::agent(start))
        .await
        .context("the exporter is gone")?;
    let (stats_tx, mut stats_rx) = oneshot::channel::<StageStats>();
    let hub = tokio::spawn(Hub::new(identity, sinks).run(hub_rx, move |seq| {
        stop_fields(seq, started, stats_rx.try_recv().ok())
    }));
    let (command_tx, command_rx) = mpsc::channel(16);
    let process = tokio::spawn(
        ProcessStage::new(table, &config.enrich, &config.monitor)
            .run(proc_rx, hub_tx, command_rx, stats_tx),
    );
    let mut collector = tokio::spawn(collector.run(proc_tx, stop_rx));

    // The collector is the head of the pipeline: if any later stage dies, its sends fail and it
    // ends too, so watching it catches a pipeline that stopped by itself.
    let early = loop {
        tokio::select! {
            request = signals.next() => match request {
                SignalRequest::Stop(signal) => {
                    tracing::info!("{signal}: stopping");
                    break None;
                }
                SignalRequest::Reload => tracing::warn!("SIGHUP: reloading the config is not in this build yet; the running config stays"),
                SignalRequest::DumpTree => print_tree(&command_tx).await,
            },
            result = &mut collector => break Some(result),
        }
    };
    let stopped_by_itself = early.is_some();
    let _ = stop_tx.send(true);
    let collected = match early {
        Some(result) => result,
        None => collector.await,
    };
    let processed = process.await;
    let exported = hub.await;
    collected.context("the collector panicked")??;
    processed.context("the process stage panicked")?;
    exported.context("the exporter panicked")?;
    anyhow::ensure!(
        !stopped_by_itself,
        "the event pipeline stopped without being asked to"
    );
    tracing::info!("stopped; every program detached");
    Ok(())
}

fn start_fields(
    args: &Args,
    config: &Config,
    collector: &Collector,
    seeded: usize,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event_type".into(), "agent".into());
    m.insert("type".into(), "start".into());
    m.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    m.insert("pid".into(), std::process::id().into());
    m.insert(
        "config_path".into(),
        args.config.display().to_string().into(),
    );
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    m.insert("kernel".into(), kernel.into());
    let mut monitors = Map::new();
    for (name, state) in &collector.monitors {
        let state = match state {
            MonitorState::On => "on",
            MonitorState::Off => "off",
            MonitorState::Unavailable(_) => "unavailable",
        };
        monitors.insert((*name).into(), state.into());
    }
    m.insert("monitors".into(), Value::Object(monitors));
    m.insert("bpf_prog_ids".into(), collector.program_ids.clone().into());
    m.insert("processes_seeded".into(), seeded.into());
    m.insert(
        "output_file".into(),
        config
            .output
            .file
            .enabled
            .then(|| config.output.file.path.display().to_string())
            .into(),
    );
    m
}

/// SIGUSR1: the process tree on stdout, as the original agent printed it.
async fn print_tree(commands: &mpsc::Sender<StageCommand>) {
    let (reply, answer) = oneshot::channel();
    let command = StageCommand::DumpTree {
        pid: 0,
        format: TreeFormat::Text,
        reply,
    };
    if commands.send(command).await.is_err() {
        tracing::warn!("SIGUSR1: the process stage is gone; no tree to print");
        return;
    }
    match answer.await {
        Ok(Ok(tree)) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(tree.as_bytes()).and_then(|()| out.flush());
        }
        Ok(Err(err)) => tracing::warn!("SIGUSR1: {err}"),
        Err(_) => tracing::warn!("SIGUSR1: the process stage did not answer"),
    }
}

fn stop_fields(
    records: u64,
    started: std::time::Instant,
    stats: Option<StageStats>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event_type".into(), "agent".into());
    m.insert("type".into(), "stop".into());
    m.insert("records".into(), records.into());
    m.insert("uptime_seconds".into(), started.elapsed().as_secs().into());
    if let Some(stats) = stats {
        m.insert("process_table_entries".into(), stats.table_entries.into());
        m.insert(
            "process_table_evictions".into(),
            stats.table_evictions.into(),
        );
        m.insert("executables_hashed".into(), stats.hashed.into());
        m.insert("hash_cache_hits".into(), stats.hash_cache_hits.into());
    }
    m
}
