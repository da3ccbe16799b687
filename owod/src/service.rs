//! Process-level glue: logging (journald when its socket exists, else stderr), systemd's
//! notify protocol (Type=notify: READY, STATUS, RELOADING, STOPPING, WATCHDOG), and signals.
//! SIGTERM and SIGINT stop the daemon cleanly, SIGHUP reloads (and reopens the outputs), SIGUSR1
//! prints the process tree, SIGUSR2 reopens the outputs.

use std::{path::Path, time::Duration};

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Log to journald (structured fields) when it is there, else to stderr (colour only on a
/// terminal). `OWO_LOG` overrides the level (an `EnvFilter` directive).
pub fn init_logging(level: &str) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_env("OWO_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let registry = tracing_subscriber::registry().with(filter);
    if Path::new(JOURNAL_SOCKET).exists() {
        match tracing_journald::layer() {
            Ok(journal) => {
                registry
                    .with(journal.with_syslog_identifier("owod".to_owned()))
                    .init();
                return;
            }
            Err(err) => eprintln!("owod: journald is not usable ({err}); logging to stderr"),
        }
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    registry.with(stderr).init();
}

/// Tell systemd something; without NOTIFY_SOCKET (not under systemd) this does nothing.
fn notify(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {err}");
    }
}

pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn notify_status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// RELOADING=1 with MONOTONIC_USEC, as systemd wants for Type=notify-reload and reload jobs.
pub fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

pub fn notify_stopping() {
    notify(&[NotifyState::Stopping]);
}

pub fn notify_watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// `WatchdogSec=` of the unit, when it is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// The signals owod handles, installed before anything is loaded so that a stop request during
/// start-up still ends in a clean stop rather than the default action.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

pub enum SignalRequest {
    Stop(&'static str),
    /// SIGHUP
    Reload,
    /// SIGUSR1
    DumpTree,
    /// SIGUSR2
    Reopen,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next signal that asks for something.
    pub async fn next(&mut self) -> SignalRequest {
        tokio::select! {
            _ = self.term.recv() => SignalRequest::Stop("SIGTERM"),
            _ = self.int.recv() => SignalRequest::Stop("SIGINT"),
            _ = self.hup.recv() => SignalRequest::Reload,
            _ = self.usr1.recv() => SignalRequest::DumpTree,
            _ = self.usr2.recv() => SignalRequest::Reopen,
        }
    }
}
