//! OWO's D-Bus contract (owoctl(8) is its user's guide): the bus name, object path and interface, the error names,
//! and the proxy that `owoctl` uses. `owod` implements the interface; this crate has no aya in it.
//!
//! | member | who may call |
//! | --- | --- |
//! | `Version`, `Monitors` (properties), `GetStatus` | anyone |
//! | `SetMonitor`, `Reload`, `ReopenLogs`, `DumpProcessTree`, `Watch` | root (checked by the bus policy and by owod) |
//! | `Alert` (signal) | — |

use std::collections::HashMap;

pub const BUS_NAME: &str = "org.owo.Observer1";
pub const OBJECT_PATH: &str = "/org/owo/Observer1";
pub const INTERFACE: &str = "org.owo.Observer1.Manager";
/// What the bus returns when its policy refuses a call.
pub const ERROR_BUS_ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
/// What owod returns when it refuses a caller itself.
pub const ERROR_ACCESS_DENIED: &str = "org.owo.Observer1.Error.AccessDenied";
pub const ERROR_INVALID_CONFIG: &str = "org.owo.Observer1.Error.InvalidConfig";
pub const ERROR_UNKNOWN_MONITOR: &str = "org.owo.Observer1.Error.UnknownMonitor";
pub const ERROR_NO_SUCH_PROCESS: &str = "org.owo.Observer1.Error.NoSuchProcess";
pub const ERROR_FAILED: &str = "org.owo.Observer1.Error.Failed";

/// The errors owod's methods return, by D-Bus error name.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.owo.Observer1.Error")]
pub enum OwoError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The new config has problems (every one of them, one a line); the running config stays.
    InvalidConfig(String),
    UnknownMonitor(String),
    NoSuchProcess(String),
    /// The caller may not do this (owod checks the caller's uid itself, whatever the policy).
    AccessDenied(String),
    /// The daemon could not do it (the message says why).
    Failed(String),
}

/// `org.owo.Observer1.Manager`.
#[zbus::proxy(
    interface = "org.owo.Observer1.Manager",
    default_service = "org.owo.Observer1",
    default_path = "/org/owo/Observer1"
)]
pub trait Manager {
    /// owod's version.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;

    /// Each monitor and whether it is on (an unavailable monitor is off).
    #[zbus(property)]
    fn monitors(&self) -> zbus::Result<HashMap<String, bool>>;

    /// The daemon's state as JSON: version, uptime, config, monitors, counters, sinks.
    fn get_status(&self) -> zbus::Result<String>;

    /// Switch a monitor on or off: a flag in the kernel, no program is reloaded. Root only.
    fn set_monitor(&self, name: &str, enabled: bool) -> zbus::Result<()>;

    /// Read the config file again; on error nothing changes. Root only.
    fn reload(&self) -> zbus::Result<()>;

    /// Close and reopen the output file (after logrotate renamed it). Root only.
    fn reopen_logs(&self) -> zbus::Result<()>;

    /// The process tree under `pid` (0 = all), `format` "text" or "json". Root only.
    fn dump_process_tree(&self, pid: u32, format: &str) -> zbus::Result<String>;

    /// A socket on which every record comes as owod writes it, one `owo` JSON line each; a line
    /// `{"watch":{"dropped":N}}` says that N records were dropped before the next one, because
    /// the reader was too slow. Root only.
    fn watch(&self) -> zbus::Result<zbus::OwnedFd>;

    /// A behavior rule matched: its name and the alert record as JSON.
    #[zbus(signal)]
    fn alert(&self, rule: &str, json: &str) -> zbus::Result<()>;
}
