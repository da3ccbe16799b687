//! The D-Bus service (see owoctl(8)): `org.owo.Observer1.Manager` at `/org/owo/Observer1`. It holds
//! only a command sender and read-only snapshots; the daemon's event loop does the work and
//! owns the truth. Root-only members check the caller's uid themselves (a permissive bus policy
//! still cannot let a user switch monitoring off), and every control call is logged with the
//! caller's uid.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use owo_dbus::OwoError;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use zbus::{interface, message::Header, object_server::SignalEmitter, Connection};

use crate::{
    collector::loader::{Coverage, KernelChoice},
    export::HubStats,
    pipeline::Counters,
};

/// What the event loop is asked to do; each carries the caller's uid and a reply.
pub enum ControlCommand {
    SetMonitor {
        name: String,
        enabled: bool,
        reply: oneshot::Sender<Result<(), OwoError>>,
    },
    Reload {
        reply: oneshot::Sender<Result<(), OwoError>>,
    },
    ReopenLogs {
        reply: oneshot::Sender<Result<(), OwoError>>,
    },
    DumpTree {
        pid: u32,
        format: String,
        reply: oneshot::Sender<Result<String, OwoError>>,
    },
    /// Give every record to this end of a socket pair (`Watch` hands out the other).
    Watch {
        socket: std::os::unix::net::UnixStream,
        reply: oneshot::Sender<Result<(), OwoError>>,
    },
}

/// A monitor, as status shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MonitorView {
    pub on: bool,
    /// "attached" or "unavailable".
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its hooks, those this kernel lacks, and its blind spots.
    #[serde(flatten)]
    pub coverage: Coverage,
}

/// The event loop's view of itself, published for the service.
#[derive(Clone, Debug, Default)]
pub struct DaemonView {
    pub config_path: String,
    pub monitors: BTreeMap<String, MonitorView>,
    pub kernel: KernelChoice,
    pub started: Option<std::time::Instant>,
    pub run_id: String,
}

pub struct ControlService {
    commands: mpsc::Sender<ControlCommand>,
    daemon: watch::Receiver<DaemonView>,
    hub: watch::Receiver<HubStats>,
    counters: Arc<Counters>,
}

impl ControlService {
    pub fn new(
        commands: mpsc::Sender<ControlCommand>,
        daemon: watch::Receiver<DaemonView>,
        hub: watch::Receiver<HubStats>,
        counters: Arc<Counters>,
    ) -> ControlService {
        ControlService {
            commands,
            daemon,
            hub,
            counters,
        }
    }

    /// The caller's uid, from the bus daemon (not from anything the caller says).
    async fn caller_uid(conn: &Connection, hdr: &Header<'_>) -> Result<u32, OwoError> {
        let sender = hdr
            .sender()
            .ok_or_else(|| OwoError::Failed("the call has no sender".into()))?;
        let bus = zbus::fdo::DBusProxy::new(conn)
            .await
            .map_err(OwoError::ZBus)?;
        bus.get_connection_unix_user(sender.clone().into())
            .await
            .map_err(|e| OwoError::Failed(format!("cannot tell who is calling: {e}")))
    }

    /// Root only; logs the call either way.
    async fn authorize(conn: &Connection, hdr: &Header<'_>, call: &str) -> Result<u32, OwoError> {
        let uid = Self::caller_uid(conn, hdr).await?;
        if uid != 0 {
            tracing::warn!(
                uid,
                call,
                "refused D-Bus call `{call}` from uid {uid}: root only"
            );
            return Err(OwoError::AccessDenied(format!(
                "`{call}` is for root only (caller uid {uid})"
            )));
        }
        tracing::info!(uid, call, "D-Bus call `{call}` from uid {uid}");
        Ok(uid)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, OwoError>>) -> ControlCommand,
    ) -> Result<T, OwoError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| OwoError::Failed("owod is stopping".into()))?;
        answer
            .await
            .map_err(|_| OwoError::Failed("owod is stopping".into()))?
    }
}

#[interface(name = "org.owo.Observer1.Manager")]
impl ControlService {
    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    #[zbus(property)]
    fn monitors(&self) -> HashMap<String, bool> {
        self.daemon
            .borrow()
            .monitors
            .iter()
            .map(|(name, m)| (name.clone(), m.on))
            .collect()
    }

    async fn get_status(&self) -> String {
        let daemon = self.daemon.borrow().clone();
        let hub = self.hub.borrow().clone();
        let uptime = daemon.started.map_or(0, |t| t.elapsed().as_secs());
        let mut status = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "run_id": daemon.run_id,
            "uptime_seconds": uptime,
            "config_path": daemon.config_path,
            "monitors": daemon.monitors,
            "records": hub.records,
            "records_by_type": hub.by_type,
            "lost": hub.lost,
            "hub_queue_batches": hub.queue_batches,
            "counters": self.counters.snapshot(),
            "sinks": hub.sinks,
        });
        // What was chosen for the kernel, with the names the start record gives it.
        if let (Some(status), Ok(serde_json::Value::Object(kernel))) =
            (status.as_object_mut(), serde_json::to_value(&daemon.kernel))
        {
            status.extend(kernel);
        }
        status.to_string()
    }

    async fn set_monitor(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
        enabled: bool,
    ) -> Result<(), OwoError> {
        // The name is the caller's: escaped, it cannot forge a log line.
        let call = format!("SetMonitor({}, {enabled})", name.escape_debug());
        Self::authorize(conn, &hdr, &call).await?;
        self.ask(|reply| ControlCommand::SetMonitor {
            name,
            enabled,
            reply,
        })
        .await
    }

    async fn reload(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), OwoError> {
        Self::authorize(conn, &hdr, "Reload").await?;
        self.ask(|reply| ControlCommand::Reload { reply }).await
    }

    async fn reopen_logs(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), OwoError> {
        Self::authorize(conn, &hdr, "ReopenLogs").await?;
        self.ask(|reply| ControlCommand::ReopenLogs { reply }).await
    }

    async fn dump_process_tree(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        pid: u32,
        format: String,
    ) -> Result<String, OwoError> {
        Self::authorize(conn, &hdr, "DumpProcessTree").await?;
        self.ask(|reply| ControlCommand::DumpTree { pid, format, reply })
            .await
    }

    /// A socket on which every record comes as it is written, one `owo` JSON line each
    /// (see owoctl(8), watch). Root only: records carry command lines.
    async fn watch(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<zbus::OwnedFd, OwoError> {
        Self::authorize(conn, &hdr, "Watch").await?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| OwoError::Failed(format!("cannot make a socket pair: {e}")))?;
        self.ask(|reply| ControlCommand::Watch {
            socket: ours,
            reply,
        })
        .await?;
        Ok(std::os::fd::OwnedFd::from(theirs).into())
    }

    /// A behavior rule matched.
    #[zbus(signal)]
    pub async fn alert(emitter: &SignalEmitter<'_>, rule: &str, json: &str) -> zbus::Result<()>;
}

/// Connect to the bus (`address`, else the system bus, which honours DBUS_SYSTEM_BUS_ADDRESS),
/// serve the object, then own the name.
pub async fn start(address: Option<&str>, service: ControlService) -> zbus::Result<Connection> {
    let builder = match address {
        Some(address) => zbus::connection::Builder::address(address),
        None => zbus::connection::Builder::system(),
    };
    let conn = builder
        .serve_at(owo_dbus::OBJECT_PATH, service)
        .build()
        .await?;
    conn.request_name(owo_dbus::BUS_NAME).await?;
    Ok(conn)
}

/// Tell listeners that `Monitors` changed.
pub async fn monitors_changed(conn: &Connection) {
    let result = async {
        let iface = conn
            .object_server()
            .interface::<_, ControlService>(owo_dbus::OBJECT_PATH)
            .await?;
        let service = iface.get().await;
        service.monitors_changed(iface.signal_emitter()).await
    }
    .await;
    if let Err(err) = result {
        tracing::warn!("cannot signal the change of `Monitors`: {err}");
    }
}
