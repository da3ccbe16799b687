//! Process-level glue: logging setup and signals. SIGTERM and SIGINT stop the daemon cleanly;
//! SIGUSR1 prints the process tree. SIGHUP (reload) arrives with the control plane; until then it
//! is caught, so that its default action cannot kill the daemon without a flush, and logged.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Log to stderr; colour only on a terminal.
pub fn init_logging(level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OWO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The signals owod handles, installed before anything is loaded so that a stop request during
/// start-up still ends in a clean stop rather than the default action.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// The next signal that asks for something.
    pub async fn next(&mut self) -> SignalRequest {
        tokio::select! {
            _ = self.term.recv() => SignalRequest::Stop("SIGTERM"),
            _ = self.int.recv() => SignalRequest::Stop("SIGINT"),
            _ = self.hup.recv() => SignalRequest::Reload,
            _ = self.usr1.recv() => SignalRequest::DumpTree,
        }
    }
}

pub enum SignalRequest {
    Stop(&'static str),
    /// SIGHUP
    Reload,
    /// SIGUSR1
    DumpTree,
}
