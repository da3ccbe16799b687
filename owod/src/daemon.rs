//! The daemon's control loop: it starts the pipeline ([`Stages`]), serves D-Bus, talks to
//! systemd, and owns the truth the control plane reads: the running config and each monitor's
//! state. Signals and D-Bus calls arrive here as requests; the stages do the work on their own
//! state, asked through their command channels ([`Handles`]).

use std::{collections::BTreeMap, time::Instant};

use anyhow::Context as _;
use owo_common::abi::Monitor;
use owo_dbus::OwoError;
use serde_json::{Map, Value};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::{
    behavior::{rules::Rule, rules_for},
    collector::{
        loader::{Coverage, KernelChoice},
        Collector, CollectorCommand, MonitorState,
    },
    config::{Config, ConfigFile},
    control::{self, ControlCommand, ControlService, DaemonView, MonitorView},
    export::{open_local_sinks, open_sinks, start_remotes, HubCommand, SinkLoss},
    pipeline::{
        record::AgentRecord,
        stages::{stop_record, Handles, Stages, Start},
        Identity, Outgoing,
    },
    process::{tree::TreeFormat, Guard, ProcessTable, StageCommand},
    service::{self, SignalRequest, Signals},
};

/// How owod reaches the bus.
pub enum Bus {
    /// The system bus (DBUS_SYSTEM_BUS_ADDRESS honoured); running without it is a warning.
    System,
    /// This address; failing to reach it is an error.
    Address(String),
    None,
}

fn loss_record(loss: &SinkLoss) -> AgentRecord {
    let mut record = AgentRecord::loss(loss.stage, None, loss.count);
    record.set(loss.sink, loss.target.as_str());
    if let (Some(first), Some(last)) = (loss.first_seq, loss.last_seq) {
        record.set("first_seq", first).set("last_seq", last);
    }
    if let Some(run_id) = &loss.lost_run_id {
        record.set("lost_run_id", run_id.as_str());
    }
    record
}

fn identity(config: &Config, run_id: &str) -> Identity {
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
    let agent_hostname = or_host(&config.agent.hostname);
    Identity {
        // As in the Go agent: no name is the hostname given, or else the machine's.
        agent_name: if config.agent.name.is_empty() {
            agent_hostname.clone()
        } else {
            config.agent.name.clone()
        },
        agent_hostname,
        agent_group: config.agent.group.clone(),
        run_id: run_id.to_owned(),
    }
}

struct Daemon {
    config_file: ConfigFile,
    config: Config,
    /// owod's own paths, which the kernel watches beside the configured ones.
    guarded: Vec<String>,
    monitors: BTreeMap<&'static str, MonitorState>,
    kernel: KernelChoice,
    coverage: BTreeMap<&'static str, Coverage>,
    run_id: String,
    view: watch::Sender<DaemonView>,
    stages: Handles,
    bus: Option<zbus::Connection>,
    losses: mpsc::Sender<SinkLoss>,
    /// Tasks of remotes opened by a reload.
    remote_tasks: Vec<JoinHandle<()>>,
    heartbeat: Heartbeat,
}

/// The last heartbeat: when the next is due (`None`: heartbeats are off), and the records and
/// losses counted then.
struct Heartbeat {
    next: Option<Instant>,
    records: u64,
    lost: u64,
}

impl Heartbeat {
    fn after(seconds: u64, records: u64, lost: u64) -> Heartbeat {
        Heartbeat {
            next: (seconds > 0).then(|| Instant::now() + std::time::Duration::from_secs(seconds)),
            records,
            lost,
        }
    }
}

pub async fn serve(
    config_file: ConfigFile,
    config: Config,
    rules: Option<Vec<Rule>>,
    bus: Bus,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut signals = Signals::install().context("cannot install signal handlers")?;
    let (losses_tx, mut losses_rx) = mpsc::channel::<SinkLoss>(1024);
    let (sinks, mut remote_tasks) = open_sinks(&config, &losses_tx)?;
    let run_id = uuid::Uuid::new_v4().to_string();

    // Attach first, then read /proc: a process that starts in between is in both, and the
    // queued events applied after the seed bring it up to date.
    let binary = std::env::current_exe().context("cannot find owod's own binary")?;
    let guard = Guard::new(&binary, &config_file.path);
    let guarded = guard.prefixes();
    let collector = Collector::load(&config, &guarded)?;
    let mut table = ProcessTable::new(
        config
            .enrich
            .process_table_max
            .try_into()
            .unwrap_or(usize::MAX),
        (config.enrich.process_table_max_mb as usize) << 20,
    );
    let seeded = table.seed_from_proc();
    let unavailable: Vec<String> = collector
        .unavailable()
        .map(|(name, why)| format!("{name} ({why})"))
        .collect();
    if !unavailable.is_empty() {
        tracing::warn!(
            "monitors enabled in the config but unavailable: {}",
            unavailable.join(", ")
        );
    }
    let start = start_record(&config_file.path, &config, &collector, seeded);
    tracing::info!(run_id, programs = ?collector.program_ids, "owod {} attached; {seeded} processes seeded from /proc", env!("CARGO_PKG_VERSION"));

    let monitors = collector.monitors.clone();
    let kernel = collector.kernel.clone();
    let coverage = collector.coverage.clone();
    let start = Start {
        collector,
        table,
        guard,
        rules,
        sinks,
        identity: identity(&config, &run_id),
        start,
        stop: Box::new(move |seq, stats| stop_record(seq, started, stats)),
    };
    let (mut stages, handles, mut alert_rx) = Stages::start(start, &config).await?;

    let (view_tx, view_rx) = watch::channel(DaemonView::default());
    let (control_tx, mut control_rx) = mpsc::channel(16);
    let mut daemon = Daemon {
        config_file,
        config,
        guarded,
        monitors,
        kernel,
        coverage,
        run_id,
        view: view_tx,
        stages: handles,
        bus: None,
        losses: losses_tx,
        remote_tasks: Vec::new(),
        heartbeat: Heartbeat::after(0, 0, 0),
    };
    daemon.heartbeat = Heartbeat::after(daemon.config.agent.heartbeat_seconds, 0, 0);
    daemon.publish_view(started);
    let service = ControlService::new(
        control_tx,
        view_rx,
        daemon.stages.hub_stats.clone(),
        daemon.stages.counters.clone(),
    );
    daemon.bus = match bus {
        Bus::None => None,
        Bus::System => match control::start(None, service).await {
            Ok(conn) => Some(conn),
            Err(err) => {
                tracing::warn!("D-Bus control is unavailable ({err}): owoctl cannot reach this daemon; running without it");
                None
            }
        },
        Bus::Address(address) => Some(
            control::start(Some(&address), service)
                .await
                .with_context(|| format!("cannot serve D-Bus at `{address}`"))?,
        ),
    };
    daemon.tell_coverage().await;
    // Programs attached, outputs open, the name owned.
    service::notify_ready(&daemon.status_line());

    let mut status_tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            request = signals.next() => match request {
                SignalRequest::Stop(signal) => {
                    tracing::info!("{signal}: stopping");
                    break;
                }
                SignalRequest::Reload => {
                    if let Err(err) = daemon.reload().await {
                        tracing::error!("SIGHUP: reload refused, the running config stays: {err}");
                    }
                    daemon.reopen_in_background("SIGHUP");
                }
                SignalRequest::Reopen => daemon.reopen_in_background("SIGUSR2"),
                SignalRequest::DumpTree => {
                    // Off the loop: a busy stage must not hold up SIGTERM.
                    let stage = daemon.stages.process.clone();
                    tokio::spawn(async move { print_tree(&stage).await });
                }
            },
            Some(command) = control_rx.recv() => daemon.control(command).await,
            Some((rule, json)) = alert_rx.recv() => daemon.signal_alert(&rule, &json).await,
            Some(loss) = losses_rx.recv() => {
                let _ = daemon.stages.records.send(vec![Outgoing::agent(loss_record(&loss))]).await;
            }
            _ = status_tick.tick() => service::notify_status(&daemon.status_line()),
            () = sleep_until(daemon.heartbeat.next) => daemon.beat(started).await,
            () = stages.ended_by_itself() => break,
        }
    }
    service::notify_stopping();
    // No loss record can be made from here on: what waits to tell one must not wait for ever.
    drop(losses_rx);
    // The hub ends when every sender of records is gone, the daemon's included.
    let mut daemon_remote_tasks = std::mem::take(&mut daemon.remote_tasks);
    drop(daemon);
    let finished = stages.finish().await;
    // The hub dropped its sinks: the remotes' writers spool what was queued, then end.
    remote_tasks.append(&mut daemon_remote_tasks);
    for task in remote_tasks {
        if tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .is_err()
        {
            tracing::warn!("a remote did not finish within 10 s");
        }
    }
    finished?;
    tracing::info!("stopped; every program detached");
    Ok(())
}

/// Until `at`, or for ever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// What a monitor sees, as the config has it now.
    fn coverage_of(&self, monitor: &str) -> Option<Coverage> {
        let coverage = self.coverage.get(monitor)?;
        Some(match self.config.monitor.compat_syscalls {
            true => coverage.clone(),
            false => coverage.without_compat(),
        })
    }

    /// A `coverage` record: each monitor's state, the hooks it attaches to, those this kernel
    /// lacks, and its blind spots. At start, and whenever a monitor is switched.
    async fn tell_coverage(&self) {
        let states = monitor_states(&self.monitors);
        let monitors: Map<String, Value> = states
            .into_iter()
            .map(|(name, state)| {
                let mut entry = Map::new();
                entry.insert("state".into(), state);
                if let Some(Value::Object(coverage)) = self
                    .coverage_of(name.as_str())
                    .and_then(|c| serde_json::to_value(c).ok())
                {
                    entry.extend(coverage);
                }
                (name, Value::Object(entry))
            })
            .collect();
        let mut record = AgentRecord::new("coverage");
        record.set("monitors", monitors);
        let _ = self
            .stages
            .records
            .send(vec![Outgoing::agent(record)])
            .await;
    }

    /// A `heartbeat` record: owod's uptime, the records and losses since the last one, and
    /// each monitor's state. A collector that gets none for longer than the interval knows
    /// that owod, or the way from it, is gone.
    async fn beat(&mut self, started: Instant) {
        let (records, lost) = {
            let stats = self.stages.hub_stats.borrow();
            (stats.records, stats.lost.values().sum::<u64>())
        };
        let mut record = AgentRecord::new("heartbeat");
        record
            .set("uptime_seconds", started.elapsed().as_secs())
            .set("interval_seconds", self.config.agent.heartbeat_seconds)
            .set("records", records.saturating_sub(self.heartbeat.records))
            .set("lost", lost.saturating_sub(self.heartbeat.lost))
            .set("monitors", monitor_states(&self.monitors));
        let _ = self
            .stages
            .records
            .send(vec![Outgoing::agent(record)])
            .await;
        self.heartbeat = Heartbeat::after(self.config.agent.heartbeat_seconds, records, lost);
    }

    /// The D-Bus `Alert` signal (the record itself is already on its way to the outputs).
    async fn signal_alert(&self, rule: &str, json: &str) {
        let Some(bus) = &self.bus else { return };
        let emitted = async {
            let iface = bus
                .object_server()
                .interface::<_, ControlService>(owo_dbus::OBJECT_PATH)
                .await?;
            ControlService::alert(iface.signal_emitter(), rule, json).await
        }
        .await;
        if let Err(err) = emitted {
            tracing::warn!("cannot send the D-Bus Alert signal: {err}");
        }
    }

    fn publish_view(&self, started: Instant) {
        let monitors = self
            .monitors
            .iter()
            .map(|(name, state)| {
                let (on, state, reason) = match state {
                    MonitorState::On => (true, "attached", None),
                    MonitorState::Off => (false, "attached", None),
                    MonitorState::Unavailable(why) => (false, "unavailable", Some(why.clone())),
                };
                let view = MonitorView {
                    on,
                    state,
                    reason,
                    coverage: self.coverage_of(name).unwrap_or_default(),
                };
                ((*name).to_owned(), view)
            })
            .collect();
        self.view.send_replace(DaemonView {
            config_path: self.config_file.path.display().to_string(),
            monitors,
            kernel: self.kernel.clone(),
            started: Some(started),
            run_id: self.run_id.clone(),
        });
    }

    fn started(&self) -> Instant {
        self.view.borrow().started.unwrap_or_else(Instant::now)
    }

    /// One line for systemd's STATUS=.
    fn status_line(&self) -> String {
        let on: Vec<&str> = self
            .monitors
            .iter()
            .filter(|(_, s)| matches!(s, MonitorState::On))
            .map(|(n, _)| *n)
            .collect();
        let stats = self.stages.hub_stats.borrow();
        let lost: u64 = stats.lost.values().sum();
        format!(
            "monitoring {}; {} records, {lost} lost",
            on.join(", "),
            stats.records
        )
    }

    async fn control(&mut self, command: ControlCommand) {
        match command {
            ControlCommand::SetMonitor {
                name,
                enabled,
                reply,
            } => {
                let _ = reply.send(self.set_monitor(&name, enabled).await);
            }
            ControlCommand::Reload { reply } => {
                let _ = reply.send(self.reload().await);
            }
            ControlCommand::ReopenLogs { reply } => {
                let hub = self.stages.hub.clone();
                // Answered off the loop: a writer stalled on a hung disk holds up nothing else.
                tokio::spawn(async move {
                    let _ = reply.send(reopen(&hub).await);
                });
            }
            ControlCommand::Watch { socket, reply } => {
                let hub = self.stages.hub.clone();
                tokio::spawn(async move {
                    let result = ask(&hub, "the exporter is gone", |reply| HubCommand::Watch {
                        socket,
                        reply,
                    })
                    .await
                    .and_then(|added| added.map_err(OwoError::Failed));
                    let _ = reply.send(result);
                });
            }
            ControlCommand::DumpTree { pid, format, reply } => {
                let stage = self.stages.process.clone();
                // Answered off the loop; the stage replies when it gets to it.
                tokio::spawn(async move {
                    let result = async {
                        let format: TreeFormat = format.parse().map_err(OwoError::Failed)?;
                        let tree = ask(&stage, "owod is stopping", |reply| {
                            StageCommand::DumpTree { pid, format, reply }
                        })
                        .await?;
                        tree.map_err(|e| OwoError::NoSuchProcess(e.to_string()))
                    }
                    .await;
                    let _ = reply.send(result);
                });
            }
        }
    }

    async fn set_monitor(&mut self, name: &str, enabled: bool) -> Result<(), OwoError> {
        let monitor = Monitor::named(name).ok_or_else(|| {
            OwoError::UnknownMonitor(format!(
                "no monitor `{name}` (monitors: {})",
                Monitor::names()
            ))
        })?;
        let key = monitor.name();
        if let Some(MonitorState::Unavailable(why)) = self.monitors.get(key) {
            return Err(OwoError::Failed(format!(
                "monitor `{key}` is unavailable: {why}"
            )));
        }
        ask(&self.stages.collector, "the collector is gone", |reply| {
            CollectorCommand::SetMonitor {
                monitor,
                on: enabled,
                reply,
            }
        })
        .await?
        .map_err(|e| OwoError::Failed(format!("{:#}", anyhow::Error::from(e))))?;
        self.monitors.insert(
            key,
            if enabled {
                MonitorState::On
            } else {
                MonitorState::Off
            },
        );
        tracing::info!(
            "monitor `{key}` switched {}",
            if enabled { "on" } else { "off" }
        );
        self.changed().await;
        Ok(())
    }

    async fn changed(&self) {
        self.publish_view(self.started());
        self.tell_coverage().await;
        if let Some(bus) = &self.bus {
            control::monitors_changed(bus).await;
        }
        service::notify_status(&self.status_line());
    }

    /// Reopen the outputs, as `owoctl reopen` does, for a signal: the outcome goes to the log.
    fn reopen_in_background(&self, signal: &'static str) {
        let hub = self.stages.hub.clone();
        tokio::spawn(async move {
            if let Err(err) = reopen(&hub).await {
                tracing::error!("{signal}: {err}");
            }
        });
    }

    /// Validate the file first; apply only a config without problems. What needs a restart
    /// (`monitor.ebpf_path`, `logging.level`) is said in the log.
    async fn reload(&mut self) -> Result<(), OwoError> {
        let loaded = self.config_file.load(rules_for).map_err(|err| {
            let text = match &err {
                crate::config::ConfigError::Invalid { problems, .. } => problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => format!("{:#}", anyhow::Error::msg(other.to_string())),
            };
            OwoError::InvalidConfig(text)
        })?;
        self.config_file.log_warnings(&loaded.warnings);
        let (new, rules) = (loaded.config, loaded.built);
        service::notify_reloading();
        let result = self.apply(&new, rules).await;
        service::notify_ready(&self.status_line());
        result?;
        for (key, changed) in [
            (
                "monitor.ebpf_path",
                new.monitor.ebpf_path != self.config.monitor.ebpf_path,
            ),
            (
                "logging.level",
                new.logging.level != self.config.logging.level,
            ),
            ("enrich", new.enrich != self.config.enrich),
        ] {
            if changed {
                tracing::warn!("`{key}` changed: it takes effect when owod restarts");
            }
        }
        if new.agent.heartbeat_seconds != self.config.agent.heartbeat_seconds {
            let (records, lost) = (self.heartbeat.records, self.heartbeat.lost);
            self.heartbeat = Heartbeat::after(new.agent.heartbeat_seconds, records, lost);
        }
        self.config = new;
        let mut reload = AgentRecord::new("reload");
        reload.set("config_path", self.config_file.path.display().to_string());
        // The new names take effect with this record: records already on their way keep the old.
        let mut record = Outgoing::agent(reload);
        record.identity = Some(identity(&self.config, &self.run_id));
        let _ = self.stages.records.send(vec![record]).await;
        tracing::info!("config reloaded from `{}`", self.config_file.path.display());
        self.changed().await;
        Ok(())
    }

    /// Everything that can fail is built first (the rules came with the config; the outputs are
    /// opened here); only then does anything change.
    async fn apply(&mut self, new: &Config, rules: Option<Vec<Rule>>) -> Result<(), OwoError> {
        // Outputs: if a new file cannot be opened, nothing changes.
        let locals = if new.output != self.config.output {
            Some(
                open_local_sinks(new, &self.losses)
                    .map_err(|e| OwoError::Failed(format!("{e:#}")))?,
            )
        } else {
            None
        };
        let mut monitors = Vec::new();
        for &monitor in Monitor::SWITCHABLE {
            if matches!(
                self.monitors.get(monitor.name()),
                Some(MonitorState::Unavailable(_))
            ) {
                continue;
            }
            monitors.push((monitor, new.monitor.wants(monitor)));
        }
        ask(&self.stages.collector, "the collector is gone", |reply| {
            CollectorCommand::Reconfigure {
                monitors: monitors.clone(),
                watch_paths: [&new.monitor.file_watch_paths[..], &self.guarded].concat(),
                all_paths: new.monitor.file_watch_all_paths,
                compat: new.monitor.compat_syscalls,
                reply,
            }
        })
        .await?
        .map_err(|e| OwoError::Failed(format!("{:#}", anyhow::Error::from(e))))?;
        // The names the kernel cannot judge (given with "/." or "//") are judged in the stage.
        ask(&self.stages.process, "the process stage is gone", |reply| {
            StageCommand::Watch {
                monitor: new.monitor.clone(),
                reply,
            }
        })
        .await?;
        for (monitor, on) in monitors {
            self.monitors.insert(
                monitor.name(),
                if on {
                    MonitorState::On
                } else {
                    MonitorState::Off
                },
            );
        }
        ask(&self.stages.hub, "the exporter is gone", |reply| {
            HubCommand::Rules { rules, reply }
        })
        .await?;
        match locals {
            Some(locals) => self.replace_outputs(new, locals).await,
            None => Ok(()),
        }
    }

    /// Give the hub the new outputs. A remote's spool has one writer and one reader at a time:
    /// the hub holds records while the old remotes put what they queued into their spools and
    /// close them, and only then do the new remotes open theirs.
    async fn replace_outputs(
        &mut self,
        new: &Config,
        locals: Vec<Box<dyn crate::export::Sink>>,
    ) -> Result<(), OwoError> {
        ask(&self.stages.hub, "the exporter is gone", |reply| {
            HubCommand::Sinks {
                sinks: locals,
                hold: true,
                reply,
            }
        })
        .await?;
        for task in std::mem::take(&mut self.remote_tasks) {
            if tokio::time::timeout(std::time::Duration::from_secs(10), task)
                .await
                .is_err()
            {
                tracing::warn!("a remote did not finish within 10 s");
            }
        }
        // A remote of the new config that cannot start leaves the old ones running.
        let (remotes, tasks, result) = match start_remotes(new, &self.losses) {
            Ok((remotes, tasks)) => (remotes, tasks, Ok(())),
            Err(err) => match start_remotes(&self.config, &self.losses) {
                Ok((remotes, tasks)) => (
                    remotes,
                    tasks,
                    Err(OwoError::Failed(format!(
                        "{err:#}; the remotes of the running config go on"
                    ))),
                ),
                Err(again) => (
                    Vec::new(),
                    Vec::new(),
                    Err(OwoError::Failed(format!(
                        "{err:#}; and the running config's remotes could not start again: {again:#}"
                    ))),
                ),
            },
        };
        self.remote_tasks = tasks;
        ask(&self.stages.hub, "the exporter is gone", |reply| {
            HubCommand::Resume {
                sinks: remotes,
                reply,
            }
        })
        .await?;
        result
    }
}

/// Each monitor's state by name, as `start` and `heartbeat` records give it.
fn monitor_states(monitors: &BTreeMap<&'static str, MonitorState>) -> Map<String, Value> {
    monitors
        .iter()
        .map(|(name, state)| {
            let state = match state {
                MonitorState::On => "on",
                MonitorState::Off => "off",
                MonitorState::Unavailable(_) => "unavailable",
            };
            ((*name).to_owned(), state.into())
        })
        .collect()
}

fn start_record(
    config_path: &std::path::Path,
    config: &Config,
    collector: &Collector,
    seeded: usize,
) -> AgentRecord {
    let mut record = AgentRecord::new("start");
    record
        .set("version", env!("CARGO_PKG_VERSION"))
        .set("pid", std::process::id())
        .set("config_path", config_path.display().to_string());
    if let Ok(Value::Object(kernel)) = serde_json::to_value(&collector.kernel) {
        for (key, value) in kernel {
            record.set(&key, value);
        }
    }
    record.set("monitors", monitor_states(&collector.monitors));
    let unavailable: Map<String, Value> = collector
        .unavailable()
        .map(|(name, why)| (name.into(), why.into()))
        .collect();
    if !unavailable.is_empty() {
        record.set("unavailable", unavailable);
    }
    record
        .set("bpf_prog_ids", collector.program_ids.clone())
        .set("processes_seeded", seeded)
        .set("heap_allocations", crate::allocations::count())
        .set(
            "output_file",
            config
                .output
                .file
                .enabled
                .then(|| config.output.file.path.display().to_string()),
        );
    record
}
/// Send a stage a command that carries a reply channel, and wait for the answer; a stage that
/// has gone away is `Failed(gone)`.
async fn ask<C, R>(
    to: &mpsc::Sender<C>,
    gone: &str,
    command: impl FnOnce(oneshot::Sender<R>) -> C,
) -> Result<R, OwoError> {
    let (reply, answer) = oneshot::channel();
    to.send(command(reply))
        .await
        .map_err(|_| OwoError::Failed(gone.into()))?;
    answer.await.map_err(|_| OwoError::Failed(gone.into()))
}

/// Reopen every output (their files, after logrotate renamed them).
async fn reopen(hub: &mpsc::Sender<HubCommand>) -> Result<(), OwoError> {
    ask(hub, "the exporter is gone", |reply| HubCommand::Reopen {
        reply,
    })
    .await?
    .map_err(|e| OwoError::Failed(format!("cannot reopen the output file: {e}")))?;
    tracing::info!("outputs reopened");
    Ok(())
}

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
